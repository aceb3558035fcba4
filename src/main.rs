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
// `unsafe` only in `arch` and `mm` (and, for now, `pv::fast`), behind
// small named safe functions; the policy above them is checked safe.
// `cargo xtask lint` says the same in words (xtask/src/layers.rs).
#![deny(unsafe_code)]
// Dead code is an error to look at, not to hide: the hypervisor build
// (x86_64-unknown-none) is checked with the default lints. On the host only
// the pure-logic modules build, for their unit tests, and their callers (the
// hardware modules) are cfg'd out, so there most of them look unused.
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

extern crate alloc;

#[macro_use]
mod log;

mod bench;
mod boot_info;
mod calendar;
mod cmdline;
#[cfg(target_os = "none")]
mod console_in;
#[cfg(target_os = "none")]
mod debugkeys;
mod domain;
mod fbcon;
mod firmware;
#[allow(unsafe_code)]
mod mm;
mod pv;
#[cfg(target_os = "none")]
mod sync;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
mod arch;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod start;
#[cfg(target_os = "none")]
mod trace;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ringvisor is a bare-metal hypervisor: build it with `cargo xtask build`.");
    std::process::exit(2);
}
