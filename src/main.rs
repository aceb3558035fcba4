//! ringvisor: a small, readable x86-64 type-1 hypervisor for Xen-style PV guests.
//!
//! The crate builds two ways:
//! - for `x86_64-unknown-none` it is the hypervisor (`rust_start` is entered
//!   from `boot/boot.S` in long mode);
//! - for the host, only the pure-logic modules build, and `cargo test` runs
//!   their unit tests. Everything that touches hardware is
//!   `#[cfg(target_os = "none")]`.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(dead_code)]

extern crate alloc;

pub use ringvisor_abi as abi;
pub mod bench;
pub mod boot_info;
pub mod calendar;
pub mod cmdline;
#[cfg(target_os = "none")]
pub mod debugkeys;
pub mod domain;
pub mod mm;
pub mod pv;

#[cfg(target_os = "none")]
#[macro_use]
pub mod console;
#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod sched;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
pub mod trace;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ringvisor is a bare-metal hypervisor: build it with `cargo xtask build`.");
    std::process::exit(2);
}
