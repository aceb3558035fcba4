//! The trace: one line per bounce, hypercall or emulated instruction, when
//! `trace=` asks for it. Off by default; when off it costs one load and a
//! branch per event. Beside it, the recent-calls ring (`record`).

use core::sync::atomic::{AtomicU32, Ordering};

pub use crate::cmdline::{TRACE_BOUNCE, TRACE_EMULATE, TRACE_HYPERCALL};

/// The `trace=` bits and [`RECENT`]; also read by entry.S's constant
/// answers (`syscall_entry`, `int82_entry`), which go to Rust unless it is
/// exactly [`RECENT`].
pub(crate) static FLAGS: AtomicU32 = AtomicU32::new(RECENT);

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
/// default), for the `r` debug key. entry.S's constant answers write a
/// hypercall's record themselves, where the `REC_*` constants below say.
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

/// This CPU's ring (`RECENT_RING`): written only by this CPU, with interrupts off (every
/// hypervisor entry runs so), so it needs no lock; read by the `r` debug
/// key on the same CPU. (One ring per CPU when there are more: index it
/// by `percpu::this().cpu`.)
pub(crate) struct Ring {
    recs: core::cell::UnsafeCell<[Record; RING]>,
    next: core::sync::atomic::AtomicUsize,
}

// SAFETY: one CPU, interrupts off while the hypervisor runs: `record`
// and `recent` never overlap (see `Ring`).
unsafe impl Sync for Ring {}

const EMPTY: Record = Record {
    what: What::Named(""),
    dom: 0,
    vcpu: 0,
    a: 0,
    b: 0,
};
pub(crate) static RECENT_RING: Ring = Ring {
    recs: core::cell::UnsafeCell::new([EMPTY; RING]),
    next: core::sync::atomic::AtomicUsize::new(0),
};

/// Where entry.S writes a hypercall's record (`syscall_entry`'s and
/// `int82_entry`'s constant answers): `RECENT_RING`'s next index and
/// records (40 bytes each: entry.S multiplies by 5 and 8), and in a
/// record the two words of `What::Hypercall(nr)` (the number, and the
/// other word's fixed value: the `&str`'s pointer, null, is the
/// variant's niche), the ids (domain and vCPU as one 32-bit word:
/// `PerCpu::ids`' low half), the first argument and the result. Read off
/// the compiler's own layout, here, so a change of it fails the build.
pub const RING_NEXT: usize = core::mem::offset_of!(Ring, next);
pub const RING_RECS: usize = core::mem::offset_of!(Ring, recs);
pub const RING_MASK: usize = RING - 1;
pub const REC_NR: usize = core::mem::offset_of!(Record, what) + WHAT_LAYOUT.0;
pub const REC_TAG: usize = core::mem::offset_of!(Record, what) + WHAT_LAYOUT.1;
pub const REC_TAG_HYPERCALL: u64 = WHAT_LAYOUT.2;
pub const REC_IDS: usize = core::mem::offset_of!(Record, dom);
pub const REC_A: usize = core::mem::offset_of!(Record, a);
pub const REC_B: usize = core::mem::offset_of!(Record, b);
/// `What::Hypercall`'s two words: where the number is, where the other
/// is, and the other's value.
const WHAT_LAYOUT: (usize, usize, u64) = {
    const A: u64 = 0x1234_5678_9abc;
    const B: u64 = 0x0fed_cba9_8765;
    type Words = [core::mem::MaybeUninit<u64>; 2];
    // SAFETY: `What` is two words (the transmute checks the size); a
    // variant's every word is initialised or `assume_init` fails the
    // build (const evaluation rejects reading uninitialised bytes).
    let (a, b) = unsafe {
        (
            core::mem::transmute::<What, Words>(What::Hypercall(A)),
            core::mem::transmute::<What, Words>(What::Hypercall(B)),
        )
    };
    // SAFETY: as above.
    let (a0, a1, b0, b1) = unsafe {
        (
            a[0].assume_init(),
            a[1].assume_init(),
            b[0].assume_init(),
            b[1].assume_init(),
        )
    };
    if a0 == A && b0 == B && a1 == b1 {
        (0, 8, a1)
    } else if a1 == A && b1 == B && a0 == b0 {
        (8, 0, a0)
    } else {
        panic!("What::Hypercall is not a number word and a fixed word")
    }
};
const _: () = {
    assert!(core::mem::size_of::<Record>() == 40 && RING.is_power_of_two());
    assert!(core::mem::offset_of!(Record, vcpu) == REC_IDS + 2);
};

/// Keep `r` in the ring (when [`RECENT`] is on): one record's stores, no
/// lock.
#[inline]
pub fn record(r: Record) {
    if FLAGS.load(Ordering::Relaxed) & RECENT == 0 {
        return;
    }
    let at = RECENT_RING.next.load(Ordering::Relaxed);
    RECENT_RING
        .next
        .store(at.wrapping_add(1), Ordering::Relaxed);
    // SAFETY: this CPU's ring, no reference into it is alive (`Ring`).
    unsafe { (*RECENT_RING.recs.get())[at % RING] = r };
}

/// [`record`] of hypercall `nr` by the vCPU `ids` names (a per-CPU
/// block's `ids`: domain in bits 0-15, vCPU in 16-31), its first argument
/// and result, for a caller that has seen [`RECENT`] on.
#[inline(always)]
pub fn record_call(nr: u64, ids: u64, a: u64, b: u64) {
    let at = RECENT_RING.next.load(Ordering::Relaxed);
    RECENT_RING
        .next
        .store(at.wrapping_add(1), Ordering::Relaxed);
    // SAFETY: as in `record`.
    unsafe {
        (*RECENT_RING.recs.get())[at % RING] = Record {
            what: What::Hypercall(nr),
            dom: ids as u16,
            vcpu: (ids >> 16) as u16,
            a,
            b,
        }
    };
}

/// Oldest first.
pub fn recent(mut f: impl FnMut(&Record)) {
    let next = RECENT_RING.next.load(Ordering::Relaxed);
    for i in 0..RING {
        // SAFETY: as in `record`; a copy is taken, nothing is held.
        let r = unsafe { (*RECENT_RING.recs.get())[(next + i) % RING] };
        if !r.what.name().is_empty() {
            f(&r);
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
