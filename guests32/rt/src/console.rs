//! `print!`/`println!` over `console_io(CONSOLEIO_write)`.
//!
//! Each `print!` formats into a 256-byte buffer on the stack and writes it
//! with one hypercall (more only for longer output), so a line usually
//! reaches the hypervisor whole. ringvisor prefixes each domain's lines
//! with `(dN) `.

pub use pvguest_common::console::{_print, contains, until_nul, CStr, LineWriter};

/// Where the shared [`LineWriter`] writes.
#[no_mangle]
fn pvguest_console_write(bytes: &[u8]) {
    // Nothing useful can be done if the console refuses.
    let _ = crate::hypercall::console_write(bytes);
}
