//! `syscall` and `sysenter` from ring 3 reaching the callbacks registered
//! with `callback_op` (Xen: `compat_syscall`, `compat_sysenter` in
//! `xen/arch/x86/x86_64/compat/entry.S`). Both callbacks are registered
//! at the runtime's VEC_SOFTINT entry (no error code), whose handler here
//! unwinds to `run_user`.

use pvguest32::abi;
use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING3_CS};
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_rc, fail, info};
use pvguest32::traps::{self, Action, Trap, TrapFrame, KERNEL_STACK, USER_STACK, VEC_SOFTINT};

pvguest32::user_fn!(fn user_syscall() { "syscall", "ret" });
pvguest32::user_fn!(fn user_sysenter() { "sysenter", "ret" });

fn unwind(_f: &mut TrapFrame, _t: &Trap) -> Action {
    Action::Unwind
}

fn register(type_: u16) -> i32 {
    let addr = traps::entry_address(VEC_SOFTINT).unwrap_or(0);
    // SAFETY: one of the runtime's entry points.
    unsafe {
        hc::register_callback(
            type_,
            abi::CALLBACKF_MASK_EVENTS,
            FLAT_RING1_CS.into(),
            addr,
        )
    }
}

pub fn run() {
    check_rc(
        "callback_op register syscall32 at a second entry: 0",
        register(abi::CALLBACKTYPE_SYSCALL32),
        0,
    );
    check_rc(
        "callback_op register sysenter at a second entry: 0",
        register(abi::CALLBACKTYPE_SYSENTER),
        0,
    );
    traps::set_handler(VEC_SOFTINT, Some(unwind));

    let at = user_syscall as *const () as usize as u32;
    match traps::run_user(user_syscall) {
        Err(t) if t.vector == VEC_SOFTINT => {
            check(
            "syscall from ring 3: the syscall32 callback, eip after it, cs 0xe02b, user esp, on the kernel stack, events masked",
            t.eip == at + 2
                && t.cs_sel() == FLAT_RING3_CS
                && t.outer
                && t.esp > USER_STACK.bottom()
                && t.esp <= USER_STACK.top()
                && t.frame_top == KERNEL_STACK.top()
                && t.mask_on_entry == 1,
            format_args!("{} (syscall at {:#x})", t, at),
            );
        }
        r => fail(
            "syscall from ring 3: the syscall32 callback",
            format_args!("{:?}", r),
        ),
    };

    let at = user_sysenter as *const () as usize as u32;
    match traps::run_user(user_sysenter) {
        Err(t) if t.vector == VEC_SOFTINT => {
            check(
            "sysenter from ring 3: the sysenter callback with Xen's frame: eip 0, cs 3, esp 0, on the kernel stack",
            t.eip == 0 && t.cs_sel() == 3 && t.outer && t.esp == 0 && t.frame_top == KERNEL_STACK.top(),
            format_args!("{}", t),
            );
        }
        // AMD CPUs (QEMU's -cpu max under TCG is AuthenticAMD) refuse
        // sysenter in compatibility mode with #UD; Xen on AMD bounces it.
        Err(t) if t.vector == 6 => {
            info(format_args!(
                "sysenter from ring 3 raised #UD (an AMD CPU: no sysenter in compatibility mode)"
            ));
            check(
                "sysenter from ring 3 on this CPU: #UD bounced, eip at the sysenter, cs 0xe02b",
                t.eip == at && t.cs_sel() == FLAT_RING3_CS && t.outer,
                format_args!("{} (sysenter at {:#x})", t, at),
            );
        }
        r => fail(
            "sysenter from ring 3: the sysenter callback",
            format_args!("{:?}", r),
        ),
    };
    traps::set_handler(VEC_SOFTINT, None);
}
