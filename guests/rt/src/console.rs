//! `print!`/`println!` over `console_io(CONSOLEIO_write)`.
//!
//! Each `print!` formats into a 256-byte buffer on the stack and writes it
//! with one hypercall (more only for longer output), so a line usually
//! reaches the hypervisor whole. Xen writes dom0's console straight to the
//! serial line; ringvisor prefixes each domain's lines with `(dN) `.
//!
//! After [`use_ring`] the same output goes through a console ring page
//! instead (`struct xencons_interface`, the `out` half), the way a domU
//! kernel writes its console: bytes at `out[MASK(out_prod)]`, then
//! `out_prod` advanced, then the ring's event channel notified.

use core::fmt::{self, Write};
use core::mem::offset_of;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::abi::{self, XenconsInterface};

/// The ring's virtual address (0: write with `console_io`).
static RING: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// From now on, write the console through the ring mapped at `va`,
/// notifying event channel `port`.
pub fn use_ring(va: u64, port: u32) {
    RING_PORT.store(port, Ordering::SeqCst);
    RING.store(va, Ordering::SeqCst);
}

fn ring_index(ring: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: `use_ring`'s caller mapped the ring page at `ring`; the
    // index is an aligned u32 inside it, shared with the hypervisor.
    unsafe { AtomicU32::from_ptr((ring + off as u64) as *mut u32) }
}

/// Writes `bytes` into the ring at `ring`, notifying `port` after the
/// last byte (and whenever the ring is full, then waiting for the reader).
pub fn ring_write(ring: u64, port: u32, bytes: &[u8]) {
    let prod_ix = ring_index(ring, offset_of!(XenconsInterface, out_prod));
    let cons_ix = ring_index(ring, offset_of!(XenconsInterface, out_cons));
    let out = ring + offset_of!(XenconsInterface, out) as u64;
    let mut prod = prod_ix.load(Ordering::Relaxed);
    for &b in bytes {
        while prod.wrapping_sub(cons_ix.load(Ordering::Acquire)) as usize >= abi::XENCONS_OUT_SIZE {
            prod_ix.store(prod, Ordering::Release);
            crate::events::send(port);
            crate::events::yield_now();
        }
        // SAFETY: inside the ring's `out` array (index masked).
        unsafe { ((out + abi::mask_xencons_out(prod) as u64) as *mut u8).write_volatile(b) };
        prod = prod.wrapping_add(1);
    }
    fence(Ordering::Release);
    prod_ix.store(prod, Ordering::Release);
    crate::events::send(port);
}

/// Formats into a stack buffer, flushing to the console when full and on
/// drop.
pub struct LineWriter {
    buf: [u8; 256],
    len: usize,
}

impl LineWriter {
    pub const fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    pub fn flush(&mut self) {
        if self.len > 0 {
            let ring = RING.load(Ordering::SeqCst);
            if ring != 0 {
                ring_write(
                    ring,
                    RING_PORT.load(Ordering::SeqCst),
                    &self.buf[..self.len],
                );
            } else {
                // Nothing useful can be done if the console refuses.
                let _ = crate::hypercall::console_write(&self.buf[..self.len]);
            }
            self.len = 0;
        }
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut w = LineWriter::new();
    let _ = w.write_fmt(args);
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the hypervisor console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// A NUL-terminated byte string as text (up to the first NUL; bytes that
/// are not printable ASCII are shown as `.`), for printing fixed-size
/// buffers such as `start_info.magic`.
pub struct CStr<'a>(pub &'a [u8]);

impl CStr<'_> {
    /// The bytes before the first NUL.
    pub fn bytes(&self) -> &[u8] {
        until_nul(self.0)
    }
}

/// The bytes of `s` before its first NUL (all of `s` if none).
pub fn until_nul(s: &[u8]) -> &[u8] {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    &s[..end]
}

impl fmt::Display for CStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.bytes() {
            let c = if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            };
            f.write_char(c)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_stops_at_nul_and_hides_control_bytes() {
        let mut s = [0u8; 8];
        s[..4].copy_from_slice(b"a\x01b\n");
        assert_eq!(CStr(&s).bytes(), b"a\x01b\n");
        let mut out = LineWriterProbe::default();
        write!(out, "{}", CStr(&s)).unwrap();
        assert_eq!(&out.0[..out.1], b"a.b.");
        assert_eq!(CStr(b"xyz").bytes(), b"xyz");
    }

    #[derive(Default)]
    struct LineWriterProbe([u8; 16], usize);
    impl Write for LineWriterProbe {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0[self.1..self.1 + s.len()].copy_from_slice(s.as_bytes());
            self.1 += s.len();
            Ok(())
        }
    }
}
