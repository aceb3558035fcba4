//! `pvguest`: the runtime of ringvisor's 64-bit Xen PV test guests.
//!
//! A test guest is an ordinary Xen PV kernel image: it boots unmodified on
//! real Xen (as dom0) and on ringvisor (as any domain). This crate gives it
//!
//! - the image itself: Xen ELF notes, the hypercall page and `_start`
//!   ([`head`], `head.S`, `guest.ld`);
//! - hypercall wrappers over the hypercall page ([`hypercall`]);
//! - `print!`/`println!` over `console_io` ([`console`]);
//! - start-of-day information and the mapped `shared_info` ([`start_info`]);
//! - XTF-style results: `TEST:`, `PASS:`/`FAIL:` lines and one final
//!   `RESULT:` line, then shutdown ([`report`]);
//! - trap bounces: entry points for vectors 0-31, `0x80` and the callbacks,
//!   a recorded [`traps::Trap`] per bounce, inline expected faults
//!   ([`traps::catch`], [`traps::expect_fault`]) and user mode
//!   ([`traps::run_user`]);
//! - events: the upcall handler (2-level scan, every delivery recorded),
//!   masking, `event_channel_op` and `sched_op` block/poll wrappers
//!   ([`events`]);
//! - time: the pvclock read of `vcpu_info.time` and the wall clock
//!   ([`time`]);
//! - more vCPUs: which vCPU is running, a `vcpu_guest_context` for starting
//!   another ([`smp`]);
//! - the guest's command line as `key=value` words ([`start_info::arg`]),
//!   and the console through a console ring instead of `console_io`
//!   ([`console::use_ring`]);
//! - a few instructions PV kernels expect Xen to emulate ([`cpu`]).
//!
//! The console line buffer, the report lines and [`cell::GuestCell`] are
//! `pvguest-common`'s (`guests/rt-common`), shared with the 32-bit runtime
//! and re-exported here.
//!
//! A guest crate is `#![no_std] #![no_main]` on the bare-metal target and
//! names its test with [`guest_main!`]; its build script is
//! `build-guest.rs` (`build = "../rt/build-guest.rs"`), which passes
//! `guest.ld` to the linker. On the host everything here still compiles (so
//! `cargo test --workspace` builds the guests), but only the pure parts are
//! meaningful there.
//!
//! Most guests run on vCPU 0 with one thread of control; the only
//! "concurrency" is a trap handler running between two instructions of the
//! code it interrupted. [`cell::GuestCell`] is built for exactly that.
//! State that a second vCPU ([`smp`]) or the upcall handler shares with
//! the main code is kept in atomics.
#![no_std]

pub use ringvisor_abi as abi;

/// The hypercall table of `docs/abi.md` (the hello guests check it).
pub use pvguest_common::abitable;
pub use pvguest_common::{print, println};

pub mod cell;
pub mod console;
pub mod cpu;
pub mod events;
pub mod head;
pub mod hypercall;
pub mod report;
pub mod smp;
pub mod start_info;
pub mod time;
pub mod traps;

/// `sched_op(SCHEDOP_shutdown)` for `pvguest-common` (its `report::finish`,
/// `skip` and `error`); the console write it calls is in [`console`].
#[no_mangle]
fn pvguest_shutdown(reason: u32) -> ! {
    hypercall::shutdown(reason)
}

/// Where the image is linked and `XEN_ELFNOTE_VIRT_BASE`: the top 2 GiB,
/// like a Linux PV kernel. Must match `VIRT_BASE` in `guest.ld`.
pub const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Bytes per page.
pub const PAGE_SIZE: usize = 4096;

/// Defines the guest's entry: `guest_main!("name", run)` runs
/// `fn run(&'static StartInfo)` after printing `TEST: name`, then prints the
/// `RESULT:` line from the checks it reported and shuts down.
///
/// On the host (where guests are only compiled, never run) it defines a
/// `fn main` that says so; hence the test function cannot be called
/// `main`.
#[macro_export]
macro_rules! guest_main {
    ($name:literal, $main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        static PVGUEST_TEST_NAME: &str = $name;

        #[cfg(target_os = "none")]
        #[no_mangle]
        fn pvguest_main(si: &'static $crate::abi::StartInfo) {
            $main(si)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            ::std::eprintln!(
                "{} is a Xen PV guest kernel: build it with --target x86_64-unknown-none \
                 and boot it on Xen or ringvisor",
                $name
            );
        }
    };
}
