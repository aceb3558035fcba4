//! `guest-crash-nofailsafe`: a bounce that cannot be written, and no
//! failsafe callback: the hypervisor must crash this domain (and only it).
//!
//! The guest installs its trap table and a kernel stack (`stack_switch`),
//! registers *no* failsafe callback, prints `EXPECT-CRASH`, points `%rsp`
//! at an unmapped address and executes `ud2`. The #UD bounce frame cannot
//! be written, so the domain must be crashed: the run has no `RESULT:`
//! line, and the harness checks the hypervisor's crash message for this
//! domain and that other domains go on.
//!
//! If the hypervisor delivers the #UD anyway (on some other stack), the
//! handler reports `RESULT: FAILURE`.
//!
//! `case=user-syscall`: the same from guest user mode: a syscall callback
//! (events masked), user mode set up, then the `stack_switch` stack
//! pointed at the unmapped address and a `syscall` from user mode: the
//! callback's frame cannot be written there (the user `syscall`'s bounce,
//! asm or Rust, refused by the CPU's walk and then by the software walk),
//! so the domain is crashed.
//!
//! Real Xen 4.17 (dom0): crashes the domain with `domain_crash_sync called
//! from entry.S: fault at ... domain_crash_page_fault_6x8` (see
//! guests/README.md).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use core::arch::asm;

use pvguest::abi::{self, StartInfo};
use pvguest::println;
use pvguest::report::{self, check_rc};
use pvguest::traps::{self, KERNEL_STACK};

pvguest::guest_main!("crash-nofailsafe", run);

/// Canonical, unmapped: every write of a bounce frame there faults.
const BAD_STACK: u64 = 0x0000_0000_dead_c000;

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    check_rc(
        "callback_op register event",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0),
        0,
    );
    // SAFETY: KERNEL_STACK is unused otherwise.
    let rc =
        unsafe { pvguest::hypercall::stack_switch(abi::FLAT_KERNEL_SS.into(), KERNEL_STACK.top()) };
    check_rc("stack_switch", rc, 0);

    if pvguest::start_info::arg("case") == Some("user-syscall") {
        return user_syscall();
    }
    println!("EXPECT-CRASH");
    // SAFETY: the hypervisor is expected to crash the domain at the ud2.
    // If it does not, rsp is restored from rbx... which a handler that
    // *does* run never returns to: it reports FAILURE and shuts down.
    unsafe {
        asm!(
            "mov {saved}, rsp",
            "mov rsp, {bad}",
            "ud2",
            "mov rsp, {saved}",
            bad = in(reg) BAD_STACK,
            saved = out(reg) _,
        );
    }
    report::fail(
        "domain crashed",
        format_args!("execution went on after the ud2"),
    );
}

/// `case=user-syscall`: a user `syscall` whose callback frame cannot be
/// written (the `stack_switch` stack unmapped).
fn user_syscall() {
    check_rc(
        "callback_op register syscall",
        traps::register_callback(abi::CALLBACKTYPE_SYSCALL, abi::CALLBACKF_MASK_EVENTS),
        0,
    );
    if let Err((what, rc)) = traps::setup_user_mode() {
        report::fail("user mode", format_args!("{what} = {rc}"));
        return;
    }
    // SAFETY: nothing runs on the kernel stack from here but the bounce
    // the hypervisor must refuse.
    let rc = unsafe { pvguest::hypercall::stack_switch(abi::FLAT_KERNEL_SS.into(), BAD_STACK) };
    check_rc("stack_switch to an unmapped stack", rc, 0);
    println!("EXPECT-CRASH");
    // SAFETY: runs in guest user mode; the `syscall` must end the domain.
    let r = traps::run_user(|| unsafe {
        asm!("syscall", out("rax") _, out("rcx") _, out("r11") _);
    });
    report::fail(
        "domain crashed",
        format_args!("execution went on after the user syscall: {}", r.is_ok()),
    );
}
