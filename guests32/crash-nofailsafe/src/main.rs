//! `guest32-crash-nofailsafe`: a bounce frame that cannot be written, and no
//! failsafe callback: the hypervisor must crash this 32-bit domain (and
//! only it).
//!
//! The guest installs its trap table, the event callback (`callback_op`;
//! `set_callbacks` would register a failsafe too) and a ring-1 stack
//! (`stack_switch`), registers *no* failsafe callback, prints
//! `EXPECT-CRASH`, points `%esp` at an unmapped address and executes
//! `ud2`. The #UD bounce frame cannot be written, so the domain must be
//! crashed: the run has no `RESULT:` line, and a harness checks the
//! hypervisor's crash message for this domain and that other domains go
//! on.
//!
//! If the hypervisor delivers the #UD anyway (on some other stack), the
//! handler reports `RESULT: FAILURE`.
//!
//! Xen, by its source (no 32-bit PV to run here): `compat_create_bounce_frame`
//! faults writing the frame and crashes the domain
//! (`compat_crash_page_fault` -> `domain_crash_sync`).
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

pvguest32::guest_main!("crash-nofailsafe32", run);

#[cfg(target_arch = "x86")]
use case::run;

#[cfg(target_arch = "x86")]
mod case {
    use core::arch::asm;

    use pvguest32::abi::{self, x86_32::StartInfo32};
    use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_DS};
    use pvguest32::println;
    use pvguest32::report::{self, check_rc};
    use pvguest32::traps::{self, KERNEL_STACK};

    /// Unmapped: every write of a bounce frame there faults.
    const BAD_STACK: u32 = 0x5ead_c000;

    pub fn run(_si: &StartInfo32) {
        traps::install_default_trap_table();
        check_rc(
            "callback_op register event",
            traps::register_callback(abi::CALLBACKTYPE_EVENT, 0, FLAT_RING1_CS.into()),
            0,
        );
        // SAFETY: KERNEL_STACK is unused otherwise.
        let rc =
            unsafe { pvguest32::hypercall::stack_switch(FLAT_RING1_DS.into(), KERNEL_STACK.top()) };
        check_rc("stack_switch", rc, 0);

        println!("EXPECT-CRASH");
        // SAFETY: the hypervisor is expected to crash the domain at the
        // ud2. If it does not, a handler that runs never returns here: it
        // reports FAILURE and shuts down (a catch-less fault is fatal).
        unsafe {
            asm!(
                "mov {saved}, esp",
                "mov esp, {bad}",
                "ud2",
                "mov esp, {saved}",
                bad = in(reg) BAD_STACK,
                saved = out(reg) _,
            );
        }
        report::fail(
            "domain crashed",
            format_args!("execution went on after the ud2"),
        );
    }
}
