//! `pvguest32`: the runtime of ringvisor's 32-bit PAE Xen PV test guests.
//!
//! A 32-bit PV guest kernel runs in **ring 1** of a compatibility-mode code
//! segment, exactly as 64-bit Xen runs "x86_32p" guests. Everything here
//! is written against Xen's public headers only
//! (`xen/include/public/arch-x86/xen-x86_32.h`, `xen.h`, `callback.h`,
//! `sched.h`, `vcpu.h`, `event_channel.h`) and Xen's compat entry code
//! (`xen/arch/x86/x86_64/compat/entry.S`, `xen/arch/x86/pv/`) for the
//! bounce frames. Debian's Xen is built without 32-bit PV (`CONFIG_PV32`
//! unset), so unlike the 64-bit guests (`guests/`) there is no real-Xen run
//! to compare against: the expected values follow the headers and Xen's
//! source, and say so where they are checked.
//!
//! This crate gives a guest
//!
//! - the image: Xen ELF notes (`PAE_MODE` `yes`), the hypercall page and
//!   `_start` ([`head`], `head.S`, `guest.ld`);
//! - hypercall wrappers over the hypercall page, `int $0x82` stubs with
//!   arguments in `ebx, ecx, edx, esi, edi` ([`hypercall`]);
//! - `print!`/`println!` over `console_io` ([`console`]);
//! - the 32-bit `start_info` and the mapped 32-bit `shared_info`
//!   ([`start_info`]);
//! - XTF-style results: `TEST:`, `PASS:`/`FAIL:` lines and one final
//!   `RESULT:` line, then shutdown ([`report`]);
//! - trap bounces with the 32-bit frame: entry points for vectors 0-31,
//!   `0x80`, `0x41` and the event/failsafe callbacks, a recorded
//!   [`traps::Trap`] per bounce, native `iret` or `HYPERVISOR_iret` on the
//!   way out, inline expected faults ([`traps::catch`],
//!   [`traps::expect_fault`]) and guest user mode in ring 3
//!   ([`traps::run_user`]);
//! - `memcpy` and friends, which the `i686-unknown-linux-gnu` target
//!   expects from a C library ([`mem`]).
//!
//! The console line buffer, the report lines and [`cell::GuestCell`] are
//! `pvguest-common`'s (`guests/rt-common`), shared with the 64-bit runtime
//! and re-exported here.
//!
//! A guest crate is `#![no_std] #![no_main]` on the 32-bit target and names
//! its test with [`guest_main!`]; the crate's `build.rs` passes `guest.ld`
//! to the linker. On the host (`cargo test --workspace`) everything here
//! still compiles, with the hypercalls and asm replaced by stubs, but only
//! the pure parts are meaningful there. "The 32-bit target" is spelled
//! `target_arch = "x86"` throughout.
//!
//! Everything runs on vCPU 0 with one thread of control; the only
//! "concurrency" is a trap handler running between two instructions of the
//! code it interrupted. [`cell::GuestCell`] is built for exactly that.
#![no_std]

pub use ringvisor_abi as abi;
pub use ringvisor_abi::x86_32 as abi32;

/// The hypercall table of `docs/abi.md` (the hello guests check it).
pub use pvguest_common::abitable;
pub use pvguest_common::{print, println};

pub mod cell;
pub mod console;
pub mod cpu;
pub mod events;
pub mod head;
pub mod hypercall;
pub mod mem;
pub mod report;
pub mod start_info;
pub mod traps;

/// `sched_op(SCHEDOP_shutdown)` for `pvguest-common` (its `report::finish`,
/// `skip` and `error`); the console write it calls is in [`console`].
#[no_mangle]
fn pvguest_shutdown(reason: u32) -> ! {
    hypercall::shutdown(reason)
}

/// Where the image is linked and `XEN_ELFNOTE_VIRT_BASE`: 3 GiB, a Linux
/// i386 kernel's `PAGE_OFFSET`. Must match `VIRT_BASE` in `guest.ld`.
pub const VIRT_BASE: u32 = 0xC000_0000;

/// Bytes per page.
pub const PAGE_SIZE: u32 = 4096;

/// A guest-virtual address as the 32-bit guest sees it (on the host, where
/// nothing runs, pointers are simply truncated).
#[inline(always)]
pub fn va<T: ?Sized>(p: *const T) -> u32 {
    p.cast::<u8>() as usize as u32
}

/// Defines the guest's entry: `guest_main!("name", run)` runs
/// `fn run(&'static StartInfo32)` after printing `TEST: name`, then prints
/// the `RESULT:` line from the checks it reported and shuts down.
///
/// On the host (where guests are only compiled, never run) it defines a
/// `fn main` that says so; hence the test function cannot be called
/// `main`.
#[macro_export]
macro_rules! guest_main {
    ($name:literal, $main:path) => {
        #[cfg(target_arch = "x86")]
        #[no_mangle]
        static PVGUEST32_TEST_NAME: &str = $name;

        #[cfg(target_arch = "x86")]
        #[no_mangle]
        fn pvguest32_main(si: &'static $crate::abi32::StartInfo32) {
            $main(si)
        }

        #[cfg(not(target_arch = "x86"))]
        fn main() {
            ::std::eprintln!(
                "{} is a 32-bit Xen PV guest kernel: build it with --target \
                 i686-unknown-linux-gnu and boot it on ringvisor",
                $name
            );
        }
    };
}
