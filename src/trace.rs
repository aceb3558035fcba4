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

/// `trace!(TRACE_BOUNCE, "...")`: a `(RV) trace: ...` line when enabled.
#[macro_export]
macro_rules! trace {
    ($what:expr, $($arg:tt)*) => {
        if $crate::trace::on($what) {
            $crate::console::print(format_args!("{}trace: {}\n", $crate::console::TAG, format_args!($($arg)*)));
        }
    };
}
