//! The trace: one line per bounce, hypercall or emulated instruction, when
//! `trace=` asks for it. Off by default; when off it costs one load and a
//! branch per event. Beside it, the recent-calls ring (`record`).

use core::sync::atomic::{AtomicU32, Ordering};

pub use crate::cmdline::{TRACE_BOUNCE, TRACE_EMULATE, TRACE_HYPERCALL};

static FLAGS: AtomicU32 = AtomicU32::new(RECENT);

/// The `trace=` bits; the recent-calls ring stays on.
pub fn set(flags: u32) {
    FLAGS.store(flags | RECENT, Ordering::Relaxed);
}

/// All the bits: `trace=` ones and [`RECENT`] (one load for both).
#[inline]
pub fn flags() -> u32 {
    FLAGS.load(Ordering::Relaxed)
}

#[inline]
pub fn on(what: u32) -> bool {
    FLAGS.load(Ordering::Relaxed) & what != 0
}

/// The recent-calls ring is kept (the `r` debug key reads it); on from
/// the start, with the `trace=` bits in the same word, so an entry tests
/// one flag for both.
pub const RECENT: u32 = 1 << 31;

/// The last few bounces and hypercalls, kept while [`RECENT`] is on (the
/// default), for the `r` debug key.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub what: What,
    pub dom: u16,
    pub vcpu: u16,
    pub a: u64,
    pub b: u64,
}

/// What a [`Record`] is: a bounce's name, or a hypercall's number (named
/// when read, so that keeping one is a store, not a lookup).
#[derive(Clone, Copy, Debug)]
pub enum What {
    Named(&'static str),
    Hypercall(u64),
}

impl What {
    pub fn name(&self) -> &'static str {
        match *self {
            What::Named(s) => s,
            What::Hypercall(nr) => ringvisor_abi::xen::hypercall_name(nr),
        }
    }
}

const RING: usize = 32;

/// One CPU's ring: written only by that CPU, with interrupts off (every
/// hypervisor entry runs so), so it needs no lock. The `r` debug key
/// reads every CPU's ring, perhaps while another CPU writes its own:
/// each slot has a sequence number (odd while it is written), and a copy
/// read between two equal, even numbers is whole; any other is dropped
/// unused (a torn record could hold half of one name's address and half
/// of another's length).
struct Ring {
    recs: core::cell::UnsafeCell<[Record; RING]>,
    seq: [AtomicU32; RING],
    next: core::sync::atomic::AtomicUsize,
}

// SAFETY: a ring's slots are written only by its CPU (`record`), and read
// elsewhere only through the sequence check (`recent`), which uses no
// copy that overlapped a write.
unsafe impl Sync for Ring {}

const EMPTY: Record = Record {
    what: What::Named(""),
    dom: 0,
    vcpu: 0,
    a: 0,
    b: 0,
};
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_RING: Ring = Ring {
    recs: core::cell::UnsafeCell::new([EMPTY; RING]),
    seq: [const { AtomicU32::new(0) }; RING],
    next: core::sync::atomic::AtomicUsize::new(0),
};
static RINGS: [Ring; crate::arch::x86_64::smp::MAX_CPUS] =
    [EMPTY_RING; crate::arch::x86_64::smp::MAX_CPUS];

/// Keep `r` in this CPU's ring (when [`RECENT`] is on): one record's
/// stores, no lock.
#[inline]
pub fn record(r: Record) {
    if FLAGS.load(Ordering::Relaxed) & RECENT == 0 {
        return;
    }
    put(r);
}

#[inline(always)]
fn put(r: Record) {
    let ring = &RINGS[crate::arch::x86_64::percpu::this().cpu as usize];
    let at = ring.next.load(Ordering::Relaxed);
    ring.next.store(at.wrapping_add(1), Ordering::Relaxed);
    let i = at % RING;
    let s = ring.seq[i].load(Ordering::Relaxed);
    ring.seq[i].store(s.wrapping_add(1), Ordering::Relaxed);
    core::sync::atomic::fence(Ordering::Release);
    // SAFETY: this CPU's ring, written only here (see `Ring`); readers
    // check the slot's sequence number around their copy, so a plain
    // store (no `&mut` made) is enough.
    unsafe { core::ptr::addr_of_mut!((*ring.recs.get())[i]).write(r) };
    ring.seq[i].store(s.wrapping_add(2), Ordering::Release);
}

/// [`record`] of hypercall `nr` by the vCPU `ids` names (a per-CPU
/// block's `ids`: domain in bits 0-15, vCPU in 16-31), its first argument
/// and result, for a caller that has seen [`RECENT`] on.
#[inline(always)]
pub fn record_call(nr: u64, ids: u64, a: u64, b: u64) {
    put(Record {
        what: What::Hypercall(nr),
        dom: ids as u16,
        vcpu: (ids >> 16) as u16,
        a,
        b,
    });
}

/// Every CPU's ring, CPU by CPU, oldest first (`f(cpu, record)`).
pub fn recent(mut f: impl FnMut(usize, &Record)) {
    for (cpu, ring) in RINGS.iter().enumerate() {
        let next = ring.next.load(Ordering::Acquire);
        for k in 0..RING {
            let i = (next + k) % RING;
            let s = ring.seq[i].load(Ordering::Acquire);
            if s & 1 != 0 {
                continue; // being written
            }
            // SAFETY: a copy of plain data, used only if the slot's
            // sequence number shows no write overlapped it (`Ring`).
            let r = unsafe { core::ptr::addr_of!((*ring.recs.get())[i]).read_volatile() };
            core::sync::atomic::fence(Ordering::Acquire);
            if ring.seq[i].load(Ordering::Relaxed) != s {
                continue;
            }
            if !r.what.name().is_empty() {
                f(cpu, &r);
            }
        }
    }
}

/// `trace!(TRACE_BOUNCE, "...")`: a `(RV) trace: ...` line when enabled.
#[macro_export]
macro_rules! trace {
    ($what:expr, $($arg:tt)*) => {
        if $crate::trace::on($what) {
            $crate::console::print(format_args!("{}trace: {}\n", $crate::console::TAG, format_args!($($arg)*)));
        }
    };
}
