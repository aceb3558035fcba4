//! `guest-user`: guest user mode, and bounces from it.
//!
//! Set-up (as XTF's 64-bit PV): trap table, event and syscall callbacks
//! (`callback_op`), a kernel stack (`stack_switch`) and the kernel's own
//! L4 as the user page table (`MMUEXT_NEW_USER_BASEPTR`). User mode is
//! entered with `HYPERVISOR_iret` (cs `FLAT_USER_CS` 0xe033, rflags.IF set)
//! and left with `int3` (DPL 3).
//!
//! Cases:
//! - Enter user mode and come back: the `int3` frame has cs 0xe033 (RPL 3),
//!   ss 0xe02b, the user rsp, saved mask 0, and lies on the `stack_switch`
//!   stack.
//! - `syscall` from user mode bounces to the syscall callback on the
//!   kernel stack: frame `rcx, r11, rip, cs, rflags, rsp, ss` with rcx = rip
//!   = the user return address, r11 = rflags = the user rflags, cs 0xe033,
//!   the user rsp, events masked on entry (`CALLBACKF_mask_events`);
//!   `HYPERVISOR_iret` with `VGCF_in_syscall` returns to user mode after
//!   the `syscall` with the rax the handler chose.
//! - The same, returning without `VGCF_in_syscall`: rcx and r11 come back
//!   from the iret context.
//! - `int $0x80` from user mode through a DPL-3 entry: vector 0x80, user
//!   frame, rip after the `int`; iret back to user mode goes on there.
//! - `int $0` (DPL 0) from user mode: #GP, error code 2.
//! - `int $0x41` (DPL 0) from user mode: #GP, error code
//!   `(0x41 << 3) | 2` = 0x20a (docs/design.md; real Xen under QEMU TCG reports
//!   0x412).
//! - `mov %cr3, %rax` in user mode: #GP(0) (not emulated outside kernel
//!   mode).
//! - #PF from user mode, read: error code 4 (U); write: 6; cr2 = address.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]
// `Trap` (the whole bounce frame) is the point of every `Err` here.
#![allow(clippy::result_large_err)]

use core::arch::asm;

use pvguest::abi::{self, StartInfo};
use pvguest::cell::GuestCell;
use pvguest::report::{self, check, check_eq, check_rc, fail, info, pass};
use pvguest::traps::{self, run_user, Action, Trap, TrapFrame, KERNEL_STACK, USER_STACK};

pvguest::guest_main!("user", run);

const UNMAPPED: u64 = 0x0000_0000_dead_b000;

/// Values user mode stores for the kernel to check: [rip, rsp, result, ..].
static USER_OUT: GuestCell<[u64; 4]> = GuestCell::new([0; 4]);
/// How the syscall handler returns: with VGCF_in_syscall or a full iret.
static SYSRET: GuestCell<bool> = GuestCell::new(true);
static SYSCALL_SEEN: GuestCell<Option<Trap>> = GuestCell::new(None);

fn out() -> [u64; 4] {
    USER_OUT.get()
}

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    check_rc(
        "callback_op register event",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0),
        0,
    );
    check_rc(
        "callback_op register syscall",
        traps::register_callback(abi::CALLBACKTYPE_SYSCALL, abi::CALLBACKF_MASK_EVENTS),
        0,
    );
    if let Err((what, rc)) = traps::setup_user_mode() {
        report::error(format_args!("{what} = {}", report::Rc(rc)));
    }
    pass("stack_switch and NEW_USER_BASEPTR");

    enter_and_leave();
    syscall_cases();
    int80();
    refused_softints();
    privileged();
    page_faults();
}

fn enter_and_leave() {
    let r = run_user(|| {
        let cs: u64;
        // SAFETY: reads cs into a register.
        unsafe { asm!("mov {0}, cs", out(reg) cs) };
        USER_OUT.set([cs, 0, 0, 0]);
    });
    if let Err(t) = r {
        return fail("enter user mode", format_args!("trap in user mode: {}", t));
    }
    let t = traps::last();
    if !check(
        "enter user mode and return (int3)",
        t.vector == 3,
        format_args!("last bounce {}", t),
    ) {
        return;
    }
    check_eq("int3 from user: cs 0xe033", t.cs_sel(), 0xe033);
    check_eq("int3 from user: ss 0xe02b", t.ss, 0xe02b);
    check(
        "int3 from user: rsp on the user stack",
        t.rsp > USER_STACK.bottom() && t.rsp <= USER_STACK.top(),
        format_args!("rsp {:#x}", t.rsp),
    );
    check_eq(
        "int3 from user: saved mask 0 (user ran with IF)",
        t.saved_mask(),
        0,
    );
    check_eq(
        "int3 from user: frame on the stack_switch stack",
        t.frame_top,
        KERNEL_STACK.top(),
    );
    info(format_args!(
        "%cs read in user mode = {:#x}; int3 frame cs slot {:#x} rflags {:#x}",
        out()[0],
        t.cs,
        t.rflags
    ));
}

/// The syscall callback: records, checks rax, answers 0x600d.
fn on_syscall(frame: &mut TrapFrame, t: &Trap) -> Action {
    SYSCALL_SEEN.set(Some(*t));
    frame.rax = if frame.rax == 0x5ca11 { 0x600d } else { 0xbad };
    if SYSRET.get() {
        frame.iret_flags = abi::VGCF_IN_SYSCALL;
    } else {
        frame.iret_flags = 0;
        frame.rcx = 0xc1c1;
        frame.r11 = 0x1111_0202;
    }
    Action::Resume
}

fn user_syscall() -> Result<(), Trap> {
    USER_OUT.set([0; 4]);
    SYSCALL_SEEN.set(None);
    // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through the
    // runtime's handler; it writes only declared registers and USER_OUT/OUT5.
    run_user(|| unsafe {
        asm!(
            "lea rcx, [rip + 2f]",
            "mov [{o}], rcx",
            "mov [{o} + 8], rsp",
            "mov eax, 0x5ca11",
            "syscall",
            "2:",
            "mov [{o} + 16], rax",
            "mov [{o} + 24], rcx",
            "mov [{o} + 32], r11",
            o = in(reg) OUT5.as_ptr(),
            out("rax") _, out("rcx") _, out("r11") _,
        )
    })
}

/// user_syscall's [rip, rsp, rax, rcx, r11] after the syscall.
static OUT5: GuestCell<[u64; 5]> = GuestCell::new([0; 5]);

fn syscall_cases() {
    traps::set_handler(traps::VEC_SYSCALL, Some(on_syscall));

    SYSRET.set(true);
    let r = user_syscall();
    let o = OUT5.get();
    match (r, SYSCALL_SEEN.get()) {
        (Ok(()), Some(t)) => {
            pass("syscall from user reaches the syscall callback");
            check_eq("syscall frame rip = user return address", t.rip, o[0]);
            check_eq("syscall frame rcx = user return address", t.rcx, o[0]);
            check_eq("syscall frame r11 = rflags", t.r11, t.rflags);
            check_eq("syscall frame cs 0xe033", t.cs_sel(), 0xe033);
            check_eq("syscall frame ss 0xe02b", t.ss, 0xe02b);
            check_eq("syscall frame rsp = user rsp", t.rsp, o[1]);
            check(
                "syscall frame rflags.IF (user ran unmasked)",
                t.rflags & pvguest::cpu::RFLAGS_IF != 0,
                format_args!("rflags {:#x}", t.rflags),
            );
            check_eq(
                "syscall: CALLBACKF_mask_events masks on entry",
                t.mask_on_entry,
                1,
            );
            check_eq("syscall: saved mask 0", t.saved_mask(), 0);
            check_eq(
                "syscall frame on the stack_switch stack",
                t.frame_top,
                KERNEL_STACK.top(),
            );
            check_eq("iret VGCF_in_syscall back to user: rax", o[2], 0x600d);
            info(format_args!(
                "syscall frame: cs slot {:#x} rflags {:#x}; after sysret rcx {:#x} r11 {:#x}",
                t.cs, t.rflags, o[3], o[4]
            ));
        }
        (r, seen) => fail(
            "syscall from user reaches the syscall callback",
            format_args!("run_user {:?}, callback saw {:?}", r.err(), seen),
        ),
    }

    SYSRET.set(false);
    let r = user_syscall();
    let o = OUT5.get();
    if check(
        "syscall, full iret back to user",
        r.is_ok() && SYSCALL_SEEN.get().is_some() && o[2] == 0x600d,
        format_args!("run_user {:?}, rax {:#x}", r.err(), o[2]),
    ) {
        check_eq("full iret restores rcx", o[3], 0xc1c1);
        check_eq("full iret restores r11", o[4], 0x1111_0202);
    }
    traps::set_handler(traps::VEC_SYSCALL, None);
}

fn int80() {
    USER_OUT.set([0; 4]);
    SEEN80.set(None);
    traps::set_handler(traps::VEC_INT80, Some(on_int80));
    // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through the
    // runtime's handler; it writes only declared registers and USER_OUT/OUT5.
    let r = run_user(|| unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{o}], {t}",
            "mov [{o} + 8], rsp",
            "int 0x80",
            "2:",
            "mov qword ptr [{o} + 16], 0x80",
            o = in(reg) USER_OUT.as_ptr(),
            t = out(reg) _,
        )
    });
    traps::set_handler(traps::VEC_INT80, None);
    let o = out();
    if r.is_err() {
        return fail("int $0x80 from user", format_args!("{:?}", r.err()));
    }
    check_eq(
        "int $0x80 from user: resumed in user mode after it",
        o[2],
        0x80,
    );
    match SEEN80.get() {
        Some(t) => {
            check_eq("int $0x80 from user: vector", t.vector, 0x80);
            check_eq("int $0x80 from user: rip after the int", t.rip, o[0]);
            check_eq("int $0x80 from user: cs 0xe033", t.cs_sel(), 0xe033);
            check_eq("int $0x80 from user: rsp = user rsp", t.rsp, o[1]);
        }
        None => fail("int $0x80 from user: vector", format_args!("not seen")),
    }
}

static SEEN80: GuestCell<Option<Trap>> = GuestCell::new(None);

fn on_int80(_frame: &mut TrapFrame, t: &Trap) -> Action {
    SEEN80.set(Some(*t));
    Action::Resume
}

fn expect_user_fault(case: &str, vector: u32, ec: u64, f: impl FnOnce()) -> Option<Trap> {
    match run_user(f) {
        Ok(()) => {
            fail(case, format_args!("no fault"));
            None
        }
        Err(t) => {
            check(
                case,
                t.vector == vector && t.error_code == ec && t.from_user(),
                format_args!("want vec {:#x} ec {:#x} from user, got {}", vector, ec, t),
            );
            Some(t)
        }
    }
}

fn refused_softints() {
    // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through the
    // runtime's handler; it writes only declared registers and USER_OUT/OUT5.
    expect_user_fault("int $0 (DPL 0) from user: #GP ec 2", 13, 2, || unsafe {
        asm!("int 0")
    });
    let v = u64::from(traps::VEC_SOFTINT);
    expect_user_fault(
        "int $0x41 (DPL 0) from user: #GP ec (0x41<<3)|2",
        13,
        (v << 3) | 2,
        // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through
        // the runtime's handler; it writes only declared registers and USER_OUT/OUT5.
        || unsafe { asm!("int 0x41") },
    );
}

fn privileged() {
    // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through the
    // runtime's handler; it writes only declared registers and USER_OUT/OUT5.
    expect_user_fault("mov %cr3 in user mode: #GP(0)", 13, 0, || unsafe {
        asm!("mov {}, cr3", out(reg) _)
    });
}

fn page_faults() {
    // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through the
    // runtime's handler; it writes only declared registers and USER_OUT/OUT5.
    if let Some(t) = expect_user_fault("#PF from user, read: ec 4", 14, 4, || unsafe {
        asm!("mov {t}, [{p}]", p = in(reg) UNMAPPED, t = out(reg) _)
    }) {
        check_eq("#PF from user, read: cr2", t.cr2, UNMAPPED);
        check_eq("#PF from user: cs 0xe033", t.cs_sel(), 0xe033);
    }
    // SAFETY: runs in guest user mode under run_user; a fault returns to the kernel through the
    // runtime's handler; it writes only declared registers and USER_OUT/OUT5.
    if let Some(t) = expect_user_fault("#PF from user, write: ec 6", 14, 6, || unsafe {
        asm!("mov qword ptr [{p}], 1", p = in(reg) UNMAPPED + 16)
    }) {
        check_eq("#PF from user, write: cr2", t.cr2, UNMAPPED + 16);
    }
}
