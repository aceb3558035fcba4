//! `set_debugreg` (8), `get_debugreg` (9) and `mov` to/from `%drN` from
//! ring 1, with Xen's checks: breakpoints below the hypervisor hole
//! (0xF5800000), DR6/DR7 reserved bits forced, GD and I/O breakpoints
//! refused. (The value is 32 bits here: no upper half to refuse.)

use core::arch::asm;

use pvguest32::abi;
use pvguest32::cell::GuestCell;
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_eq, check_rc, neg, Rc};
use pvguest32::traps::{catch, expect_fault};
use pvguest32::va;

use crate::common::*;

const ENODEV: i32 = neg(abi::ENODEV);

static TARGET: GuestCell<u32> = GuestCell::new(0);

fn set(reg: u32, value: u32) -> i32 {
    // SAFETY: armed as Xen arms them, on TARGET, which nothing touches
    // (or executes): they never fire.
    unsafe { hc::hypercall(abi::HYPERVISOR_SET_DEBUGREG, &[reg, value]) }
}

fn get(reg: u32) -> u32 {
    // SAFETY: a read.
    unsafe { hc::hypercall(abi::HYPERVISOR_GET_DEBUGREG, &[reg]) as u32 }
}

pub fn run() {
    let addr = va(TARGET.as_ptr());
    for reg in 0..4u32 {
        let rc = set(reg, addr + reg);
        let back = get(reg);
        check(
            &join(
                "set_debugreg of a guest address: 0, read back: DR",
                ["0", "1", "2", "3"][reg as usize],
            ),
            rc == 0 && back == addr + reg,
            format_args!("rc {} read {:#x}", Rc(rc), back),
        );
    }
    check_rc(
        "set_debugreg DR0 = 0xF5800000 (hypervisor hole): -EPERM",
        set(0, HV_START),
        EPERM,
    );
    check_rc(
        "set_debugreg DR1 = 0xFFFFF000: -EPERM",
        set(1, 0xffff_f000),
        EPERM,
    );
    check_eq("  ... DR0 unchanged", get(0), addr);
    check_rc("set_debugreg DR6 = 0: 0", set(6, 0), 0);
    check_eq(
        "  ... get_debugreg DR6 reads 0xffff0ff0",
        get(6),
        0xffff_0ff0,
    );
    check_rc("set_debugreg DR7 = 0x1 (L0, execute): 0", set(7, 1), 0);
    check_eq(
        "  ... get_debugreg DR7 = 0x401 (bit 10 forced)",
        get(7),
        0x401,
    );
    check_rc(
        "set_debugreg DR7 with GD (bit 13): -EPERM",
        set(7, 1 | 1 << 13),
        EPERM,
    );
    check_rc(
        "set_debugreg DR7 with an I/O breakpoint (L1, R/W1 = 10b): -EPERM",
        set(7, 1 << 2 | 2 << 20),
        EPERM,
    );
    check_eq("  ... DR7 unchanged", get(7), 0x401);
    check_rc("set_debugreg register 8: -ENODEV", set(8, 0), ENODEV);
    check_rc("get_debugreg register 8: -EINVAL", get(8) as i32, EINVAL);
    check_rc("set_debugreg DR7 = 0: 0", set(7, 0), 0);

    let v = addr + 0x10;
    // SAFETY: emulated (or faults into the handler, unwound by the catch).
    let r = catch(|| unsafe { asm!("mov %eax, %dr1", in("eax") v, options(att_syntax)) });
    check(
        "mov %eax,%dr1 of a guest address runs (ring 1)",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    check_eq("  ... get_debugreg DR1 reads it", get(1), v);
    static OUT: GuestCell<u32> = GuestCell::new(0);
    // SAFETY: as above.
    let r = catch(|| unsafe {
        let x: u32;
        asm!("mov %dr1, %eax", out("eax") x, options(att_syntax));
        OUT.set(x);
    });
    check(
        "mov %dr1,%eax reads it",
        r.is_ok() && OUT.get() == v,
        format_args!("{:?} read {:#x}", r.err(), OUT.get()),
    );
    // SAFETY: as above.
    let r = catch(|| unsafe {
        let x: u32;
        asm!("mov %dr6, %eax", out("eax") x, options(att_syntax));
        OUT.set(x);
    });
    check(
        "mov %dr6,%eax reads 0xffff0ff0",
        r.is_ok() && OUT.get() == 0xffff_0ff0,
        format_args!("{:?} read {:#x}", r.err(), OUT.get()),
    );
    // SAFETY: refused: #GP, unwound by the catch.
    expect_fault(
        "mov of 0xF5800000 to %dr0: #GP(0)",
        13,
        Some(0),
        || unsafe { asm!("mov %eax, %dr0", in("eax") HV_START, options(att_syntax)) },
    );
    check_eq("  ... DR0 unchanged", get(0), addr);
    // SAFETY: as above.
    expect_fault(
        "mov of DR7 with GD to %dr7: #GP(0)",
        13,
        Some(0),
        || unsafe { asm!("mov %eax, %dr7", in("eax") 1u32 << 13, options(att_syntax)) },
    );
    for reg in 0..4 {
        set(reg, 0);
    }
}
