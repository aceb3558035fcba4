//! The trace: one line per bounce, hypercall or emulated instruction, when
//! `trace=` asks for it. Off by default; when off it costs one load and a
//! branch per event. Beside it, the recent-calls ring (`record`), kept in
//! per-CPU memory entry.S writes too (arch/x86_64/recent.rs).

pub use crate::arch::x86_64::recent::{
    flags, on, recent, record, record_call, record_seen, Record, What, RECENT,
};
pub use crate::cmdline::{TRACE_BOUNCE, TRACE_EMULATE, TRACE_HYPERCALL};

/// The `trace=` bits; the recent-calls ring stays on.
pub fn set(flags: u32) {
    crate::arch::x86_64::recent::set_flags(flags);
}

/// `trace!(TRACE_BOUNCE, "...")`: a `(RV) trace: ...` line when enabled.
#[macro_export]
macro_rules! trace {
    ($what:expr, $($arg:tt)*) => {
        if $crate::trace::on($what) {
            $crate::log::print(format_args!("{}trace: {}\n", $crate::log::TAG, format_args!($($arg)*)));
        }
    };
}
