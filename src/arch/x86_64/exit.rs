//! Leaving: QEMU's `isa-debug-exit` turns our verdict into its exit status;
//! real hardware halts or reboots (`on_exit=`).
//!
//! | verdict | byte written to port 0xf4 | QEMU exit status |
//! |---|---|---|
//! | success: every domain powered off, or nothing to run | 0x10 | 33 |
//! | failure: a domain crashed or could not be built | 0x11 | 35 |
//! | panic: hypervisor panic or fault in the hypervisor | 0x12 | 37 |

use core::sync::atomic::{AtomicBool, Ordering};

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

static REBOOT: AtomicBool = AtomicBool::new(false);

pub fn set_on_exit(o: OnExit) {
    REBOOT.store(o == OnExit::Reboot, Ordering::Relaxed);
}

/// Print the verdict line and stop the machine.
pub fn exit(v: Verdict, why: core::fmt::Arguments) -> ! {
    crate::console::print_emergency(format_args!(
        "{}exit: {} ({})\n",
        crate::console::TAG,
        v.name(),
        why
    ));
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit when present; on real
    // machines it is an unused legacy port, and writing it is harmless.
    unsafe { outb(DEBUG_EXIT_PORT, v as u8) };
    if REBOOT.load(Ordering::Relaxed) {
        // SAFETY: pulsing the keyboard controller's reset line only resets
        // the machine, which is what was asked for.
        unsafe { outb(0x64, 0xfe) };
    }
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU with interrupts off is always sound.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}
