//! `set_debugreg` (8), `get_debugreg` (9) and `mov` to/from `%drN`, with
//! Xen 4.17's checks (`xen/arch/x86/pv/misc-hypercalls.c`): breakpoint
//! addresses outside the hypervisor's range, DR6/DR7 reserved bits forced,
//! GD and I/O breakpoints refused, upper halves refused.

use core::arch::asm;

use pvguest::abi;
use pvguest::cell::GuestCell;
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc};
use pvguest::traps::{catch, expect_fault};

use crate::{EINVAL, EPERM, HV_ADDR};

const ENODEV: i64 = abi::neg(abi::ENODEV);

static TARGET: GuestCell<u64> = GuestCell::new(0);

fn set(reg: u64, value: u64) -> i64 {
    // SAFETY: the breakpoints set here watch TARGET, which nothing
    // touches (or execute there, where nothing runs): armed, they never
    // fire.
    unsafe { hc::hypercall5(abi::HYPERVISOR_SET_DEBUGREG, reg, value, 0, 0, 0) }
}

fn get(reg: u64) -> i64 {
    // SAFETY: a read.
    unsafe { hc::hypercall5(abi::HYPERVISOR_GET_DEBUGREG, reg, 0, 0, 0, 0) }
}

pub fn run() {
    let addr = TARGET.as_ptr() as u64;
    for reg in 0..4u64 {
        let rc = set(reg, addr + reg);
        let back = get(reg) as u64;
        check(
            crate::name_case(
                "set_debugreg of a guest address: 0, read back: DR",
                ["0", "1", "2", "3"][reg as usize],
            )
            .as_str(),
            rc == 0 && back == addr + reg,
            format_args!("rc {} read {:#x}", pvguest::report::Rc(rc), back),
        );
    }
    check_rc(
        "set_debugreg DR0 = hypervisor address: -EPERM",
        set(0, HV_ADDR),
        EPERM,
    );
    check_eq("  ... DR0 unchanged", get(0) as u64, addr);

    check_rc("set_debugreg DR6 = 0: 0", set(6, 0), 0);
    check_eq(
        "  ... get_debugreg DR6 reads the reserved bits 0xffff0ff0",
        get(6) as u64,
        0xffff_0ff0,
    );
    check_rc(
        "set_debugreg DR6 upper half set: -EINVAL",
        set(6, 1 << 32),
        EINVAL,
    );

    // L0 enabled, an execution breakpoint: kept with bit 10 forced on.
    check_rc("set_debugreg DR7 = 0x1 (L0, execute): 0", set(7, 1), 0);
    check_eq(
        "  ... get_debugreg DR7 = 0x401 (bit 10 forced)",
        get(7) as u64,
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
    check_rc(
        "set_debugreg DR7 upper half set: -EINVAL",
        set(7, 1 << 32 | 1),
        EINVAL,
    );
    check_eq(
        "  ... DR7 unchanged by the refused values",
        get(7) as u64,
        0x401,
    );
    check_rc("set_debugreg register 8: -ENODEV", set(8, 0), ENODEV);
    check_rc("get_debugreg register 8: -EINVAL", get(8), EINVAL);
    check_rc("set_debugreg DR7 = 0: 0", set(7, 0), 0);

    // mov to/from %drN from the guest kernel: emulated as the hypercalls.
    let v = addr + 0x10;
    // SAFETY: the mov is emulated (or faults into the handler, which
    // unwinds to the catch); it writes only the registers it declares.
    let r = catch(|| unsafe { asm!("mov dr1, {}", in(reg) v) });
    check(
        "mov %rax,%dr1 of a guest address runs",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    check_eq("  ... get_debugreg DR1 reads it", get(1) as u64, v);
    static OUT: GuestCell<u64> = GuestCell::new(0);
    // SAFETY: as above.
    let r = catch(|| unsafe {
        let x: u64;
        asm!("mov {}, dr1", out(reg) x);
        OUT.set(x);
    });
    check(
        "mov %dr1,%rax reads what set_debugreg/mov wrote",
        r.is_ok() && OUT.get() == v,
        format_args!("{:?} read {:#x}", r.err(), OUT.get()),
    );
    // SAFETY: as above.
    let r = catch(|| unsafe {
        let x: u64;
        asm!("mov {}, dr6", out(reg) x);
        OUT.set(x);
    });
    check(
        "mov %dr6,%rax reads 0xffff0ff0",
        r.is_ok() && OUT.get() == 0xffff_0ff0,
        format_args!("{:?} read {:#x}", r.err(), OUT.get()),
    );
    // SAFETY: refused: #GP, unwound by the catch.
    expect_fault(
        "mov of a hypervisor address to %dr0: #GP(0)",
        13,
        Some(0),
        || unsafe { asm!("mov dr0, {}", in(reg) HV_ADDR) },
    );
    check_eq("  ... DR0 unchanged", get(0) as u64, addr);
    // SAFETY: as above.
    expect_fault(
        "mov of DR7 with GD to %dr7: #GP(0)",
        13,
        Some(0),
        || unsafe { asm!("mov dr7, {}", in(reg) 1u64 << 13) },
    );
    for reg in 0..4 {
        set(reg, 0);
    }
}
