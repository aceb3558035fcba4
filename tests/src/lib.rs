//! ringvisor's host-side harness: one QEMU runner, shared by `cargo xtask`
//! and the integration tests in `tests/tests/`.
//!
//! - [`bench`]: read a `cargo xtask bench` run, combine runs, print the
//!   table and JSON.
//! - [`bzimage`]: wrap a kernel ELF as a minimal gzip bzImage (std only).
//! - [`build`]: build the hypervisor (`cargo build -p ringvisor --target
//!   x86_64-unknown-none`), copy it to `target/ringvisor.elf`, make a GRUB
//!   ISO (`target/ringvisor.iso`).
//! - [`guest`]: the `GUEST[@KEY=VAL,...][:ARGS]` syntax and the module
//!   command line the hypervisor sees (`PATH rv.KEY=VAL ... -- ARGS`).
//! - [`grub`]: `grub.cfg` generation from the `qemu/grub.cfg` template.
//! - [`qemu`]: spawn QEMU, stream and timestamp the serial console, enforce
//!   a timeout, turn the exit status into a [`qemu::Verdict`].
//! - [`tools`]: find (or, as root, install) QEMU, GRUB and friends.
//! - [`cmd`]: run a command, printing it first (`$ ...`).
//! - [`debian`]: Debian packages fetched with `apt-get download` into
//!   `target/` (Xen 4.17, the stock kernel, busybox-static).
//! - [`cpio`]: a newc cpio writer (the initramfs format).
//! - [`linux`]: Debian's stock Linux on ringvisor and on Xen: files,
//!   initramfs, QEMU runs, boot times, failed hypercalls.
//! - [`docs`]: link checks for the Markdown documents.
//!
//! Every command the harness runs is printed to stderr before it runs.

pub mod bench;
pub mod build;
pub mod bzimage;
pub mod cmd;
pub mod cpio;
pub mod debian;
pub mod docs;
pub mod fuzz;
pub mod grub;
pub mod guest;
pub mod linux;
pub mod qemu;
pub mod tools;

use std::fmt;

/// A harness error: one line that says what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `return Err(Error(format!(...)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::Error(format!($($arg)*))) };
}

pub use build::Profile;
pub use guest::GuestSpec;
pub use qemu::{Accel, Qemu, RunOutput, Verdict};
