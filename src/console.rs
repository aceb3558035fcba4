//! The serial console (COM1) and the hypervisor's log macros. Every line
//! also goes to the framebuffer console when there is one (`fbcon`).
//!
//! Every hypervisor line starts with `(RV) ` so that guest output, which
//! starts with `(dN) `, is easy to tell apart. `loglvl=` on the command
//! line sets how much is printed.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550, Uart16550Tty};

use crate::cmdline::LogLevel;

const COM1: u16 = 0x3f8;

/// The tag in front of every hypervisor line.
pub const TAG: &str = "(RV) ";

static SERIAL: Mutex<Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);
static LOGLVL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

pub fn init() {
    // SAFETY: COM1's eight ports belong to the hypervisor alone; no guest
    // is ever given access to them.
    let tty = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.or_else(|_| {
        // Some real UARTs fail the loopback self-test but still send.
        // SAFETY: as above.
        let mut u = unsafe { Uart16550::new_port(COM1) }.map_err(|_| ())?;
        u.init(Config::default()).map_err(|_| ())?;
        Ok::<_, ()>(Uart16550Tty::from_inner(u))
    });
    *SERIAL.lock() = tty.ok();
}

pub fn set_level(l: LogLevel) {
    LOGLVL.store(l as u8, Ordering::Relaxed);
}

pub fn enabled(l: LogLevel) -> bool {
    l as u8 <= LOGLVL.load(Ordering::Relaxed)
}

/// The serial line (when there is a UART) and the framebuffer console
/// (when there is one), text in `.1`'s colour there.
struct Sink<'a>(&'a mut Option<Uart16550Tty<PioBackend>>, crate::fbcon::Rgb);

impl Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::fbcon::write(s, self.1);
        match self.0 {
            Some(tty) => tty.write_str(s),
            None => Ok(()),
        }
    }
}

use crate::fbcon::{GUEST, HYPERVISOR};

/// No guest line is open on the serial line.
const NO_LINE: u32 = u32::MAX;
/// The domain whose unfinished line (a shell's prompt) is on the serial
/// line, written by [`guest_partial`]; `NO_LINE` when none is.
static OPEN: AtomicU32 = AtomicU32::new(NO_LINE);

/// Ends an unfinished guest line, if one is open (the lock is held).
fn close_open_line(s: &mut Option<Uart16550Tty<PioBackend>>) {
    if OPEN.swap(NO_LINE, Ordering::Relaxed) != NO_LINE {
        let _ = Sink(s, GUEST).write_str("\n");
    }
}

/// Print one whole line (the tag is the caller's): the lock is held for the
/// whole line so lines never interleave. An unfinished guest line on the
/// serial line is ended first.
pub fn print(args: fmt::Arguments) {
    let mut s = SERIAL.lock();
    close_open_line(&mut s);
    let _ = Sink(&mut s, HYPERVISOR).write_fmt(args);
}

/// The rest of domain `dom`'s line and its end: `(dN) text`, or only
/// `text` when it continues the unfinished line [`guest_partial`] left.
pub fn guest_line(dom: u16, text: &str) {
    let mut s = SERIAL.lock();
    if OPEN.load(Ordering::Relaxed) == dom as u32 {
        OPEN.store(NO_LINE, Ordering::Relaxed);
        let _ = writeln!(Sink(&mut s, GUEST), "{text}");
    } else {
        close_open_line(&mut s);
        let _ = writeln!(Sink(&mut s, GUEST), "(d{dom}) {text}");
    }
}

/// The start of a line of domain `dom` now, before its end: a shell's
/// prompt and the echo of what is typed show at once (console_in.rs: the
/// domain with the serial input). The line stays open until the domain's
/// next [`guest_line`] or any other line.
pub fn guest_partial(dom: u16, text: &str) {
    let mut s = SERIAL.lock();
    if OPEN.load(Ordering::Relaxed) != dom as u32 {
        close_open_line(&mut s);
        let _ = write!(Sink(&mut s, GUEST), "(d{dom}) ");
        OPEN.store(dom as u32, Ordering::Relaxed);
    }
    let _ = Sink(&mut s, GUEST).write_str(text);
}

/// A byte typed on the serial line, if one is waiting.
pub fn try_read() -> Option<u8> {
    SERIAL.lock().as_mut()?.inner_mut().try_receive_byte().ok()
}

/// For the fatal path: take the console even if the faulting code held it.
pub fn print_emergency(args: fmt::Arguments) {
    if SERIAL.is_locked() {
        // SAFETY: only called on the way to stopping the machine, with
        // interrupts off: a holder on this CPU never runs again; one on
        // another CPU may still finish its line, which can at worst mix
        // characters into ours (the UART takes bytes one at a time).
        unsafe { SERIAL.force_unlock() };
    }
    crate::fbcon::take_over();
    print(args);
}

/// `log!(Info, "...")`: one hypervisor line at a level.
#[macro_export]
macro_rules! log {
    ($lvl:ident, $($arg:tt)*) => {
        if $crate::console::enabled($crate::cmdline::LogLevel::$lvl) {
            $crate::console::print(format_args!("{}{}\n", $crate::console::TAG, format_args!($($arg)*)));
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
