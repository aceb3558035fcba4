//! `console_io` and a domain's console line (Xen: `drivers/char/console.c`,
//! `do_console_io` and the guest output it prints): each domain's lines go
//! to the serial console as `(dN) `, a domU's at a limited rate.

use ringvisor_abi::errno::*;
use ringvisor_abi::xen::*;

use crate::domain::Domain;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};

const CONSOLE_IO_MAX: u64 = 64 << 10;

/// `console_io`: the guest's lines go to the serial console as `(dN) `.
pub(crate) fn console_io(d: &mut Domain, space: GuestSpace, cmd: u64, count: u64, buf: u64) -> Ret {
    match cmd as u32 {
        CONSOLEIO_WRITE => {
            // One call writes at most 64 KiB (the rest is dropped), and a
            // domU at most its budget: a guest cannot hold the CPU (and a
            // slow serial line) for long with a huge count.
            if count == 0 {
                return console_write_nothing(d);
            }
            console_refill(d);
            if console_write(d, space, count.min(CONSOLE_IO_MAX), buf).is_err() {
                console_settled(d);
                return err(EFAULT);
            }
            console_show_partial(d);
            0
        }
        // What was typed for this domain (console_in.rs): up to `count`
        // bytes, the number read returned, as Xen's do_console_io.
        CONSOLEIO_READ => {
            let n = (count as usize).min(d.console_in.len()).min(1024);
            let bytes: alloc::vec::Vec<u8> = d.console_in.iter().take(n).copied().collect();
            if space.write_bytes(buf, &bytes).is_err() {
                return err(EFAULT);
            }
            d.console_in.drain(..n);
            n as Ret
        }
        _ => err(ENOSYS),
    }
}

/// `console_io(CONSOLEIO_write)` of 0 bytes (the buffer is never read):
/// what a write does besides its bytes.
#[inline]
pub(crate) fn console_write_nothing(d: &mut Domain) -> Ret {
    console_refill(d);
    console_show_partial(d);
    0
}

/// `count` bytes at `buf` to the domain's console, a chunk at a time (out
/// of line: a write of 0 bytes needs no chunk).
#[inline(never)]
fn console_write(d: &mut Domain, space: GuestSpace, count: u64, buf: u64) -> Result<(), ()> {
    let mut chunk = [0u8; 256];
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(chunk.len() as u64) as usize;
        space
            .read_bytes(buf.wrapping_add(done), &mut chunk[..n])
            .map_err(|_| ())?;
        let mut rest = &chunk[..n];
        while let Some(&b) = rest.first() {
            // A run of printable ASCII goes onto the line in one step.
            let run = rest
                .iter()
                .position(|b| !(0x20..=0x7e).contains(b))
                .unwrap_or(rest.len());
            if run == 0 {
                console_byte(d, b);
                rest = &rest[1..];
            } else {
                console_text(d, &rest[..run]);
                rest = &rest[run..];
            }
        }
        done += n as u64;
    }
    Ok(())
}

pub use crate::domain::CONSOLE_BURST;

const CONSOLE_RATE: u64 = 32 << 10;

/// Top up a domU's console budget for the time since the last top-up, and
/// say once what was dropped while it was empty.
#[inline]
pub fn console_refill(d: &mut Domain) {
    if d.id != 0 {
        console_refill_domu(d);
    }
}

#[inline(never)]
fn console_refill_domu(d: &mut Domain) {
    let now = crate::arch::x86_64::time::now_ns();
    let earned = (now.saturating_sub(d.console_refilled) as u128 * CONSOLE_RATE as u128
        / 1_000_000_000) as u64;
    if earned == 0 {
        return;
    }
    d.console_refilled = now;
    d.console_budget = d.console_budget.saturating_add(earned).min(CONSOLE_BURST);
    if d.console_dropped != 0 {
        crate::warn!(
            "d{}: {} bytes of console output dropped (rate limit)",
            d.id,
            d.console_dropped
        );
        d.console_dropped = 0;
    }
}

/// One byte of guest console output (console_io or the console ring).
pub fn console_byte(d: &mut Domain, b: u8) {
    if d.id != 0 {
        if d.console_budget == 0 {
            d.console_dropped += 1;
            return;
        }
        d.console_budget -= 1;
    }
    match b {
        b'\n' => flush_console_line(d),
        0x20..=0x7e => d.console_line.push(b as char),
        // The domain with the serial input is a terminal's (a shell): its
        // line editing (carriage return, backspace, escape sequences, bell,
        // tab) reaches the terminal.
        b'\r' | 0x08 | 0x1b | 0x07 | b'\t' if crate::console::has_input(d.id) => {
            d.console_line.push(b as char)
        }
        b'\r' => {}
        // Keep control characters off the hypervisor's console.
        _ => d.console_line.push('?'),
    }
    if d.console_line.len() >= LINE_MAX {
        flush_console_line(d);
    }
}

/// Printable ASCII (0x20-0x7e) of guest console output: what
/// [`console_byte`] does with each byte, a run at a time.
fn console_text(d: &mut Domain, mut text: &[u8]) {
    debug_assert!(text.iter().all(|b| (0x20..=0x7e).contains(b)));
    if d.id != 0 {
        let take = d.console_budget.min(text.len() as u64);
        d.console_dropped += text.len() as u64 - take;
        d.console_budget -= take;
        text = &text[..take as usize];
    }
    while !text.is_empty() {
        let room = LINE_MAX.saturating_sub(d.console_line.len()).max(1);
        let (part, more) = text.split_at(room.min(text.len()));
        // ASCII: always UTF-8.
        d.console_line
            .push_str(core::str::from_utf8(part).unwrap_or_default());
        text = more;
        if d.console_line.len() >= LINE_MAX {
            flush_console_line(d);
        }
    }
}

/// The longest console line kept before it is written out unfinished.
const LINE_MAX: usize = 200;

pub fn flush_console_line(d: &mut Domain) {
    crate::console::guest_line(d.id, &d.console_line);
    d.console_line.clear();
    console_settled(d);
}

/// After a console write: the domain with the serial input shows its
/// unfinished line (a prompt, the echo of a key) at once rather than at
/// its newline, as Xen's console shows dom0's output as it comes.
pub fn console_show_partial(d: &mut Domain) {
    if !d.console_line.is_empty() && crate::console::has_input(d.id) {
        crate::console::guest_partial(d.id, &d.console_line);
        d.console_line.clear();
    }
    console_settled(d);
}

/// The end of every change to the console line (each ends in
/// `console_show_partial`, `flush_console_line` or here): say whether a
/// write of 0 bytes would now do nothing at all (`Domain::console_quiet`):
/// no budget to top up (the initial domain) and no partial line to show.
/// In between, under the lock, the flag still says what was true before
/// the change began: a reader without the lock sees one or the other.
pub fn console_settled(d: &mut Domain) {
    d.console_quiet.store(
        d.id == 0 && d.console_line.is_empty(),
        core::sync::atomic::Ordering::Relaxed,
    );
}
