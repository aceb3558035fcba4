//! The serial console (COM1): where the hypervisor's log lines (`log`,
//! registered here at boot) and the guests' console lines go. Every line
//! also goes to the framebuffer console when there is one (`fbcon`).
//!
//! Every hypervisor line starts with `(RV) ` so that guest output, which
//! starts with `(dN) `, is easy to tell apart. `loglvl=` on the command
//! line sets how much is printed.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::Uart16550Tty;

pub use crate::log::{set_level, TAG};

static SERIAL: Mutex<Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);

/// Take COM1 and send the hypervisor's log lines here from now on.
pub fn init() {
    *SERIAL.lock() = crate::arch::x86_64::uart::com1();
    crate::log::set_sinks(crate::log::Sinks {
        print,
        emergency: print_emergency,
    });
}

/// The serial line (when there is a UART) and the framebuffer console
/// (when there is one), text in `.1`'s colour there.
struct Sink<'a>(&'a mut Option<Uart16550Tty<PioBackend>>, crate::fbcon::Rgb);

impl Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::fbcon::write(s, self.1);
        let Some(tty) = self.0 else {
            return Ok(());
        };
        // What `Uart16550Tty::write_str` sends (a newline as CR LF, a
        // backspace or DEL as "\x08 \x08"), with the bytes between those
        // sent as one run: the UART's FIFO takes up to 16 of them for each
        // look at its status register, where the tty's own `write_str` looks
        // once a byte.
        let u = tty.inner_mut();
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let run = rest
                .iter()
                .position(|&b| matches!(b, b'\n' | 8 | 0x7f))
                .unwrap_or(rest.len());
            u.send_bytes_exact(&rest[..run]);
            match rest.get(run) {
                Some(b'\n') => u.send_bytes_exact(b"\r\n"),
                Some(_) => u.send_bytes_exact(b"\x08 \x08"),
                None => break,
            }
            rest = &rest[run + 1..];
        }
        Ok(())
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

/// The id of the domain with the serial input (`u32::MAX`: the
/// hypervisor), set by `console_in.rs` as the input moves; kept here, on
/// the output side, which knows domains by id.
static INPUT_OWNER: AtomicU32 = AtomicU32::new(0);

pub fn set_input_owner(id: u32) {
    INPUT_OWNER.store(id, Ordering::Relaxed);
}

/// Whether domain `id` has the serial input: its console output is then a
/// terminal's (pv::console_io::console_byte: shown as it comes, its
/// control characters kept).
pub fn has_input(id: u16) -> bool {
    INPUT_OWNER.load(Ordering::Relaxed) == id as u32
}

/// A byte typed on the serial line, if one is waiting.
pub fn try_read() -> Option<u8> {
    SERIAL.lock().as_mut()?.inner_mut().try_receive_byte().ok()
}

/// For the fatal path: take the console even if the faulting code held it.
pub fn print_emergency(args: fmt::Arguments) {
    // A holder on another CPU may still finish its line, which can at
    // worst mix characters into ours (the UART takes bytes one at a time).
    crate::arch::x86_64::exit::break_lock(&SERIAL);
    crate::fbcon::take_over();
    print(args);
}
