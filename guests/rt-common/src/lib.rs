//! `pvguest-common`: the architecture-independent part of ringvisor's test
//! guest runtimes, shared by the 64-bit `pvguest` (`guests/rt`) and the
//! 32-bit `pvguest32` (`guests32/rt`), which re-export it so that guests
//! keep naming everything through their own runtime.
//!
//! - the `print!` line buffer, [`console::LineWriter`], and
//!   [`console::CStr`] ([`console`]);
//! - XTF-style `TEST:`/`PASS:`/`FAIL:`/`INFO:`/`RESULT:` lines and the
//!   counts behind them ([`report`]);
//! - [`cell::GuestCell`] ([`cell`]).
//!
//! Two things differ per runtime and are provided by it, as `#[no_mangle]`
//! functions the common code calls (each guest image links exactly one
//! runtime):
//!
//! - `pvguest_console_write(bytes: &[u8])`: write bytes to the console
//!   (`console_io`, or the 64-bit runtime's console ring);
//! - `pvguest_shutdown(reason: u32) -> !`: `SCHEDOP_shutdown`.
//!
//! Both build for `x86_64-unknown-none` and `i686-unknown-linux-gnu` (and
//! the host, where only the pure parts are meaningful).
#![no_std]

pub mod abitable;
pub mod cell;
pub mod console;
pub mod fuzz;
pub mod report;

mod hooks {
    extern "Rust" {
        /// Writes `bytes` to the console; errors are ignored (nothing
        /// useful can be done if the console refuses).
        pub fn pvguest_console_write(bytes: &[u8]);
        /// `sched_op(SCHEDOP_shutdown, { reason })`; never returns.
        pub fn pvguest_shutdown(reason: u32) -> !;
    }
}

pub(crate) fn console_write(bytes: &[u8]) {
    // SAFETY: the runtime defines it with this signature (see the crate
    // documentation); it only reads `bytes`.
    unsafe { hooks::pvguest_console_write(bytes) }
}

pub(crate) fn shutdown(reason: u32) -> ! {
    // SAFETY: as in `console_write`.
    unsafe { hooks::pvguest_shutdown(reason) }
}

// Unit tests on the host link no runtime: stand-ins for the hooks.
#[cfg(test)]
mod test_hooks {
    #[no_mangle]
    fn pvguest_console_write(_bytes: &[u8]) {}

    #[no_mangle]
    fn pvguest_shutdown(_reason: u32) -> ! {
        panic!("shutdown")
    }
}
