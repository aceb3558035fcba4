//! `print!`/`println!` over the runtime's console write
//! (`pvguest_console_write`: `console_io(CONSOLEIO_write)`, or a console
//! ring).
//!
//! Each `print!` formats into a 256-byte buffer on the stack and writes it
//! with one call (more only for longer output), so a line usually reaches
//! the hypervisor whole.

use core::fmt::{self, Write};

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
            crate::console_write(&self.buf[..self.len]);
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

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
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

    #[derive(Default)]
    struct Probe([u8; 16], usize);
    impl Write for Probe {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0[self.1..self.1 + s.len()].copy_from_slice(s.as_bytes());
            self.1 += s.len();
            Ok(())
        }
    }

    #[test]
    fn cstr_stops_at_nul_and_hides_control_bytes() {
        let mut s = [0u8; 8];
        s[..4].copy_from_slice(b"a\x01b\n");
        assert_eq!(CStr(&s).bytes(), b"a\x01b\n");
        let mut out = Probe::default();
        write!(out, "{}", CStr(&s)).unwrap();
        assert_eq!(&out.0[..out.1], b"a.b.");
        assert_eq!(CStr(b"xyz").bytes(), b"xyz");
    }

    #[test]
    fn contains_finds_magic() {
        assert!(contains(
            b"xen-3.0-x86_64 xen-3.0-x86_32p",
            b"xen-3.0-x86_32p"
        ));
        assert!(!contains(b"xen-3.0-x86_64", b"xen-3.0-x86_32p"));
    }
}
