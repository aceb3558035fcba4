//! The hypervisor's log lines, for every layer: the level (`loglvl=`),
//! the `(RV) ` tag and the log macros. Where a line goes is registered at
//! boot by the console (`console::init`: serial line and framebuffer), so
//! the low layers (`arch`, `mm`) print without depending on it. Before
//! that, a line goes nowhere (there is no console yet to take it).

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::cmdline::LogLevel;

/// The tag in front of every hypervisor line.
pub const TAG: &str = "(RV) ";

static LOGLVL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Where lines go: one whole line at a time, and the fatal path's way
/// (which takes the console even if the faulting code held it).
pub struct Sinks {
    pub print: fn(fmt::Arguments),
    pub emergency: fn(fmt::Arguments),
}

static SINKS: spin::Once<Sinks> = spin::Once::new();

/// Send lines to `s` from now on (once, at boot; later calls are ignored).
pub fn set_sinks(s: Sinks) {
    SINKS.call_once(|| s);
}

pub fn set_level(l: LogLevel) {
    LOGLVL.store(l as u8, Ordering::Relaxed);
}

pub fn enabled(l: LogLevel) -> bool {
    l as u8 <= LOGLVL.load(Ordering::Relaxed)
}

/// Print one whole line (the tag is the caller's).
pub fn print(args: fmt::Arguments) {
    if let Some(s) = SINKS.get() {
        (s.print)(args);
    }
}

/// Print one line on the way to stopping the machine.
pub fn print_emergency(args: fmt::Arguments) {
    if let Some(s) = SINKS.get() {
        (s.emergency)(args);
    }
}

/// `log!(Info, "...")`: one hypervisor line at a level.
#[macro_export]
macro_rules! log {
    ($lvl:ident, $($arg:tt)*) => {
        if $crate::log::enabled($crate::cmdline::LogLevel::$lvl) {
            $crate::log::print(format_args!("{}{}\n", $crate::log::TAG, format_args!($($arg)*)));
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log!(Error, $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log!(Warn, $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log!(Info, $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log!(Debug, $($arg)*) }; }
