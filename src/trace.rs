//! The trace: one line per bounce, hypercall or emulated instruction, when
//! `trace=` asks for it. Off by default; when off it costs one load and a
//! branch per event.

use core::sync::atomic::{AtomicU32, Ordering};

pub use crate::cmdline::{TRACE_BOUNCE, TRACE_EMULATE, TRACE_HYPERCALL};

static FLAGS: AtomicU32 = AtomicU32::new(0);

pub fn set(flags: u32) {
    FLAGS.store(flags, Ordering::Relaxed);
}

#[inline]
pub fn on(what: u32) -> bool {
    FLAGS.load(Ordering::Relaxed) & what != 0
}

/// The last few bounces and hypercalls, kept whether or not `trace=` is
/// on (a few stores each), for the `r` debug key.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub what: &'static str,
    pub dom: u16,
    pub vcpu: u16,
    pub a: u64,
    pub b: u64,
}

const RING: usize = 32;

struct Ring {
    recs: [Option<Record>; RING],
    next: usize,
}

static RECENT: spin::Mutex<Ring> = spin::Mutex::new(Ring { recs: [None; RING], next: 0 });

pub fn record(r: Record) {
    let mut ring = RECENT.lock();
    let at = ring.next % RING;
    ring.recs[at] = Some(r);
    ring.next = ring.next.wrapping_add(1);
}

/// Oldest first.
pub fn recent(mut f: impl FnMut(&Record)) {
    let ring = RECENT.lock();
    for i in 0..RING {
        if let Some(r) = &ring.recs[(ring.next + i) % RING] {
            f(r);
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
