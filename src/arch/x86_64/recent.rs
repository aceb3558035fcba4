//! The trace flags and the recent-calls ring: per-CPU memory that
//! entry.S writes (its constant answers record their hypercalls) and the
//! per-CPU block points at, so it lives with them; `trace` (the policy:
//! what is traced, the `trace!` lines) and the `r` debug key use it.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The `trace=` bits and [`RECENT`]; also read by entry.S's constant
/// answers (`syscall_entry`, `int82_entry`), which go to Rust unless it is
/// exactly [`RECENT`].
pub(crate) static FLAGS: AtomicU32 = AtomicU32::new(RECENT);

/// The `trace=` bits (`trace::set`); the recent-calls ring stays on.
pub fn set_flags(flags: u32) {
    FLAGS.store(flags | RECENT, Ordering::Relaxed);
}

/// All the bits: `trace=` ones and [`RECENT`] (one load for both).
#[inline]
pub fn flags() -> u32 {
    FLAGS.load(Ordering::Relaxed)
}

/// Is any of the bits `what` on?
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

/// One CPU's ring: written only by that CPU, with interrupts off (every
/// hypervisor entry runs so), so it needs no lock; `PerCpu::ring` points
/// at it (entry.S writes the constant answers' records there). The `r`
/// debug key reads every CPU's ring, perhaps while another CPU writes its
/// own: each slot has a sequence number, odd while the record is written
/// (the writer's stores are seen in order: x86 keeps stores in order),
/// and a copy read between two equal, even numbers is whole; any other is
/// dropped unused (a torn record could hold half of one name's address
/// and half of another's length).
pub(crate) struct Ring {
    slots: core::cell::UnsafeCell<[Slot; RING]>,
    next: core::sync::atomic::AtomicUsize,
}

/// A record and its sequence number (48 bytes: entry.S multiplies by 3
/// and 16).
#[repr(C)]
struct Slot {
    rec: Record,
    seq: AtomicU64,
}

// SAFETY: a ring's slots are written only by its CPU (`put`, entry.S),
// and read elsewhere only through the sequence check (`recent`), which
// uses no copy that overlapped a write.
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
    slots: core::cell::UnsafeCell::new(
        [const {
            Slot {
                rec: EMPTY,
                seq: AtomicU64::new(0),
            }
        }; RING],
    ),
    next: core::sync::atomic::AtomicUsize::new(0),
};
static RINGS: [Ring; super::smp::MAX_CPUS] = [EMPTY_RING; super::smp::MAX_CPUS];

/// CPU `cpu`'s ring, for its `PerCpu::ring`.
pub fn ring_of(cpu: u64) -> u64 {
    &RINGS[cpu as usize % RINGS.len()] as *const Ring as u64
}

/// Where entry.S writes a hypercall's record (`syscall_entry`'s and
/// `int82_entry`'s constant answers): this CPU's ring (`PerCpu::ring`),
/// its next index and slots (48 bytes each), a slot's sequence number,
/// and in a record the two words of `What::Hypercall(nr)` (the number,
/// and the other word's fixed value: the `&str`'s pointer, null, is the
/// variant's niche), the ids (domain and vCPU as one 32-bit word:
/// `PerCpu::ids`' low half), the first argument and the result. Read off
/// the compiler's own layout, here, so a change of it fails the build.
pub const RING_NEXT: usize = core::mem::offset_of!(Ring, next);
pub const RING_RECS: usize = core::mem::offset_of!(Ring, slots);
pub const RING_MASK: usize = RING - 1;
pub const SLOT_SEQ: usize = core::mem::offset_of!(Slot, seq);
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
    assert!(core::mem::size_of::<Slot>() == 48 && SLOT_SEQ == 40);
};

/// Keep `r` in this CPU's ring (when [`RECENT`] is on): one record's
/// stores, no lock.
#[inline]
pub fn record(r: Record) {
    if FLAGS.load(Ordering::Relaxed) & RECENT == 0 {
        return;
    }
    put(r);
}

/// [`record`] for a caller that has seen [`RECENT`] on (in the flags it
/// read once for its other tests): the record's stores only.
#[inline(always)]
pub fn record_seen(r: Record) {
    put(r);
}

#[inline(always)]
fn put(r: Record) {
    let ring = super::percpu::this().ring as *const Ring;
    // SAFETY: `PerCpu::ring` is this CPU's ring (`ring_of`), a static.
    let ring = unsafe { &*ring };
    let at = ring.next.load(Ordering::Relaxed);
    ring.next.store(at.wrapping_add(1), Ordering::Relaxed);
    // SAFETY: this CPU's ring, written only by this CPU (see `Ring`);
    // readers check the slot's sequence number around their copy, so a
    // plain store (no `&mut` made) is enough.
    unsafe {
        let slot = core::ptr::addr_of_mut!((*ring.slots.get())[at % RING]);
        let seq = &(*slot).seq;
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        core::sync::atomic::fence(Ordering::Release);
        core::ptr::addr_of_mut!((*slot).rec).write(r);
        seq.store(s.wrapping_add(2), Ordering::Release);
    }
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
            // SAFETY: a shared look at the slot's atomic, and a copy of
            // plain data used only if the slot's sequence number shows no
            // write overlapped it (`Ring`).
            let (s, r, again) = unsafe {
                let slot = core::ptr::addr_of!((*ring.slots.get())[i]);
                let s = (*slot).seq.load(Ordering::Acquire);
                let r = core::ptr::addr_of!((*slot).rec).read_volatile();
                core::sync::atomic::fence(Ordering::Acquire);
                (s, r, (*slot).seq.load(Ordering::Relaxed))
            };
            if s & 1 != 0 || s != again {
                continue;
            }
            if !r.what.name().is_empty() {
                f(cpu, &r);
            }
        }
    }
}
