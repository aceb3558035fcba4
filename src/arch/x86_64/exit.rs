//! Leaving: QEMU's `isa-debug-exit` turns our verdict into its exit status
//! (used only when the device is there: `firmware::debug_exit_present`);
//! otherwise the machine halts, powers off through ACPI S5 or resets, as
//! `on_exit=` says.
//!
//! | verdict | byte written to port 0xf4 | QEMU exit status |
//! |---|---|---|
//! | success: every domain powered off, or nothing to run | 0x10 | 33 |
//! | failure: a domain crashed or could not be built | 0x11 | 35 |
//! | panic: hypervisor panic or fault in the hypervisor | 0x12 | 37 |

use core::sync::atomic::{AtomicU8, Ordering};

use x86::io::outb;

use crate::cmdline::OnExit;

const DEBUG_EXIT_PORT: u16 = 0xf4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    Success = 0x10,
    Failure = 0x11,
    Panic = 0x12,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::Panic => "panic",
        }
    }
}

static ON_EXIT: AtomicU8 = AtomicU8::new(OnExit::Halt as u8);

pub fn set_on_exit(o: OnExit) {
    ON_EXIT.store(o as u8, Ordering::Relaxed);
}

/// Print the verdict line and stop the machine.
pub fn exit(v: Verdict, why: core::fmt::Arguments) -> ! {
    crate::log::print_emergency(format_args!(
        "{}exit: {} ({})\n",
        crate::log::TAG,
        v.name(),
        why
    ));
    if super::firmware::debug_exit_present() {
        // SAFETY: port 0xf4 is QEMU's isa-debug-exit (checked): the write
        // ends QEMU with status (v << 1) | 1.
        unsafe { outb(DEBUG_EXIT_PORT, v as u8) };
    }
    let on_exit = ON_EXIT.load(Ordering::Relaxed);
    if on_exit == OnExit::Poweroff as u8 {
        crate::log::print_emergency(format_args!(
            "{}power: off through ACPI S5\n",
            crate::log::TAG
        ));
        if let Err(why) = super::firmware::poweroff() {
            crate::log::print_emergency(format_args!(
                "{}power: cannot power off: {why}; halting\n",
                crate::log::TAG
            ));
        }
    } else if on_exit == OnExit::Reboot as u8 {
        crate::log::print_emergency(format_args!("{}power: resetting\n", crate::log::TAG));
        super::firmware::reboot();
    }
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU with interrupts off is always sound.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Take `m` even if its holder never lets go: for the fatal path only
/// (`console::print_emergency`, `fbcon::take_over`), which prints its last
/// lines with interrupts off: a holder on this CPU never runs again.
pub fn break_lock<T>(m: &spin::Mutex<T>) {
    if m.is_locked() {
        // SAFETY: see above; a holder on another CPU may still finish its
        // write, which the callers accept (a few mixed characters at worst:
        // the devices take bytes and pixels one at a time, no allocation).
        unsafe { m.force_unlock() };
    }
}

/// Interrupts off on this CPU (the panic handler, on its way out).
pub fn interrupts_off() {
    // SAFETY: stopping interrupts on the way out is always sound.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
}

/// `selftest=divide`: divide by zero in the hypervisor, on purpose, to
/// show the fatal path (#DE stops the machine; this does not return).
pub fn selftest_divide_by_zero() {
    // SAFETY: `div` by zero raises #DE, whose handler stops the machine.
    unsafe {
        core::arch::asm!("xor edx, edx", "xor ecx, ecx", "div ecx", out("eax") _, out("edx") _, out("ecx") _)
    };
}
