//! `guest-traps`: exceptions raised in guest kernel mode bounce to the
//! trap table with Xen's 64-bit PV frame.
//!
//! Set-up cases: `set_trap_table` (vectors 0-31, 0x80, 0x41) and
//! `callback_op` register of the event, failsafe and syscall callbacks
//! all return 0.
//!
//! Cases (each fault is caught inline and its frame compared):
//! - #DE (`div` by zero): vector 0, rip at the `div`.
//! - #BP (`int3`, DPL 3 entry): vector 3, rip *after* the `int3`; the
//!   handler returns with `HYPERVISOR_iret` and execution goes on there
//!   with rcx, r11 and rdx as they were (the frame's rcx/r11 slots hold the
//!   interrupted values).
//! - #UD (`ud2`): vector 6, rip at the `ud2`, rsp = the interrupted rsp,
//!   cs = 0xe030 (FLAT_KERNEL_CS with RPL 0: interrupted in kernel mode),
//!   ss = 0xe02b, frame rcx/r11 = the interrupted values.
//! - #GP from a bad selector (`mov %ax, %fs` with LDT selector 0x404, no
//!   LDT): vector 13, error code 0x404.
//! - #GP from `int $0` through the DPL-0 #DE entry: error code 2.
//! - #GP from `int $0x41` through a DPL-0 entry: error code
//!   `(0x41 << 3) | 2` = 0x20a (docs/design.md; real Xen under QEMU TCG reports
//!   0x412, TCG's `(N << 4) | 2`, see guests/README.md).
//! - `int $0x80` through a DPL-3 entry: delivered as vector 0x80, rip after
//!   the `int`.
//! - #PF, read of an unmapped address: vector 14, error code 0 (the U bit
//!   is cleared: the fault happened in guest kernel mode), cr2 (from
//!   `vcpu_info.arch.cr2`) = the address.
//! - #PF, write of an unmapped address: error code 2.
//! - #PF, instruction fetch from an unmapped address: error code 0x10
//!   (I/D; NX is on), rip = cr2 = the address.
//! - #PF, write to the guest's own L4 (mapped read-only): error code 3,
//!   cr2 = pt_base.
//! - Upcall mask: with events masked, the frame's saved mask (cs bits
//!   32-39) is 1 and rflags.IF is 0; with events unmasked it is 0 and IF is
//!   1; a trap entry with `TI_IF` masks events on entry, one without leaves
//!   them unmasked; `HYPERVISOR_iret` restores the mask from rflags.IF.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]
// `Trap` (the whole bounce frame) is the point of every `Err` here.
#![allow(clippy::result_large_err)]

use core::arch::asm;

use pvguest::abi::{self, StartInfo};
use pvguest::cell::GuestCell;
use pvguest::report::{check, check_eq, check_rc, fail, info, pass};
use pvguest::start_info::{set_upcall_mask, upcall_mask};
use pvguest::traps::{self, catch, expect_fault, trap_info, Trap, TRAP_TABLE_END};

pvguest::guest_main!("traps", run);

/// An address no builder maps (low half, far below anything it lays out).
const UNMAPPED: u64 = 0x0000_0000_dead_b000;
/// An LDT selector (TI = 1, index 0x80); the guest has no LDT.
const BAD_SELECTOR: u64 = 0x404;

/// Written by the asm right before the instruction under test: [rip of
/// the instruction (or of the one after, for traps), rsp].
static AT: GuestCell<[u64; 2]> = GuestCell::new([0; 2]);

fn at() -> (u64, u64) {
    let a = AT.get();
    (a[0], a[1])
}

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    pass("set_trap_table");
    check_rc(
        "callback_op register event",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0),
        0,
    );
    check_rc(
        "callback_op register failsafe",
        traps::register_callback(abi::CALLBACKTYPE_FAILSAFE, abi::CALLBACKF_MASK_EVENTS),
        0,
    );
    check_rc(
        "callback_op register syscall",
        traps::register_callback(abi::CALLBACKTYPE_SYSCALL, abi::CALLBACKF_MASK_EVENTS),
        0,
    );

    divide_error();
    breakpoint();
    invalid_opcode();
    general_protection();
    int80();
    page_faults();
    upcall_mask_cases();
}

fn divide_error() {
    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    let t = expect_fault("#DE div by zero", 0, None, || unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "xor edx, edx",
            "mov eax, 1",
            "xor ecx, ecx",
            "2: div ecx",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            out("eax") _, out("ecx") _, out("edx") _,
        )
    });
    if let Some(t) = t {
        check_eq("#DE rip at the div", t.rip, at().0);
    }
}

fn breakpoint() {
    let before = traps::count();
    let (rcx, r11, rdx): (u64, u64, u64);
    // SAFETY: int3 bounces to our #BP entry, which resumes after it.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "mov rcx, 0x1111",
            "mov r11, 0x2222",
            "mov rdx, 0x3333",
            "int3",
            "2:",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            out("rcx") rcx, out("r11") r11, out("rdx") rdx,
        );
    }
    let out = [rcx, r11, rdx];
    let t = traps::last();
    if traps::count() != before + 1 || t.vector != 3 {
        fail("#BP int3", format_args!("no #BP bounce (last: {})", t));
        return;
    }
    pass("#BP int3");
    check_eq("#BP rip after the int3", t.rip, at().0);
    check_eq("#BP frame rcx = interrupted rcx", t.rcx, 0x1111);
    check_eq("#BP frame r11 = interrupted r11", t.r11, 0x2222);
    check(
        "iret back to kernel keeps rcx, r11, rdx",
        out == [0x1111, 0x2222, 0x3333],
        format_args!("rcx {:#x} r11 {:#x} rdx {:#x}", out[0], out[1], out[2]),
    );
}

fn ud2() -> Result<(), Trap> {
    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    catch(|| unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "mov [{at} + 8], rsp",
            "mov rcx, 0x4444",
            "mov r11, 0x5555",
            "2: ud2",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            out("rcx") _, out("r11") _,
        )
    })
}

fn invalid_opcode() {
    let t = match ud2() {
        Ok(()) => return fail("#UD ud2", format_args!("no fault")),
        Err(t) => t,
    };
    if !check_eq("#UD ud2", t.vector, 6) {
        return;
    }
    let (rip, rsp) = at();
    check_eq("#UD rip at the ud2", t.rip, rip);
    check_eq("#UD rsp = interrupted rsp", t.rsp, rsp);
    check_eq("#UD cs = 0xe030 (kernel, RPL 0)", t.cs_sel(), 0xe030);
    check_eq("#UD ss = 0xe02b", t.ss, 0xe02b);
    check_eq("#UD frame rcx", t.rcx, 0x4444);
    check_eq("#UD frame r11", t.r11, 0x5555);
    info(format_args!(
        "#UD frame: cs slot {:#x}, rflags {:#x}, frame top {:#x} (rsp {:#x})",
        t.cs, t.rflags, t.frame_top, rsp
    ));
}

fn general_protection() {
    expect_fault(
        "#GP bad selector ec 0x404",
        13,
        Some(BAD_SELECTOR),
        // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
        // catch; it writes only registers it declares and AT.
        || unsafe { asm!("mov fs, ax", in("rax") BAD_SELECTOR) },
    );

    // int $0 through the (DPL-0) #DE entry: error code 2 whichever way the
    // CPU computes it, so this one holds under QEMU's TCG as well.
    expect_fault(
        "#GP int $0 through a DPL-0 entry, ec 2",
        13,
        Some(2),
        // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
        // catch; it writes only registers it declares and AT.
        || unsafe { asm!("int 0") },
    );

    let v = u64::from(traps::VEC_SOFTINT);
    let t = expect_fault(
        "#GP int $0x41 through a DPL-0 entry, ec (0x41<<3)|2",
        13,
        Some((v << 3) | 2),
        // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
        // catch; it writes only registers it declares and AT.
        || unsafe {
            asm!(
                "lea {t}, [rip + 2f]",
                "mov [{at}], {t}",
                "2: int 0x41",
                t = out(reg) _,
                at = in(reg) AT.as_ptr(),
            )
        },
    );
    if let Some(t) = t {
        check_eq("#GP int $0x41 rip at the int", t.rip, at().0);
    }
}

fn int80() {
    let before = traps::count();
    // SAFETY: int $0x80 bounces to our DPL-3 entry, which resumes after it.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "int 0x80",
            "2:",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
        );
    }
    let t = traps::last();
    if check(
        "int $0x80 (DPL 3) delivered",
        traps::count() == before + 1 && t.vector == 0x80,
        format_args!("last bounce: {}", t),
    ) {
        check_eq("int $0x80 rip after the int", t.rip, at().0);
        check_eq("int $0x80 no error code", t.error_code, 0);
    }
}

fn page_faults() {
    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    let t = expect_fault("#PF read unmapped, ec 0", 14, Some(0), || unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "2: mov {t}, [{p}]",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            p = in(reg) UNMAPPED,
        )
    });
    if let Some(t) = t {
        check_eq("#PF read cr2", t.cr2, UNMAPPED);
        check_eq("#PF read rip", t.rip, at().0);
        check_eq("#PF cs = 0xe030", t.cs_sel(), 0xe030);
    }

    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    let t = expect_fault("#PF write unmapped, ec 2", 14, Some(2), || unsafe {
        asm!("mov qword ptr [{p}], 1", p = in(reg) UNMAPPED + 8)
    });
    if let Some(t) = t {
        check_eq("#PF write cr2", t.cr2, UNMAPPED + 8);
    }

    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    let t = expect_fault("#PF fetch unmapped, ec 0x10", 14, Some(0x10), || unsafe {
        asm!("call {p}", p = in(reg) UNMAPPED + 0x10, clobber_abi("C"))
    });
    if let Some(t) = t {
        check_eq("#PF fetch cr2", t.cr2, UNMAPPED + 0x10);
        check_eq("#PF fetch rip", t.rip, UNMAPPED + 0x10);
    }

    let l4 = pvguest::start_info::start_info().pt_base;
    let t = expect_fault(
        "#PF write to own L4 (read-only), ec 3",
        14,
        Some(3),
        // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
        // catch; it writes only registers it declares and AT.
        || unsafe {
            // Writes back the value already there, in case it is allowed.
            asm!("mov {t}, [{p}]", "mov [{p}], {t}", p = in(reg) l4, t = out(reg) _)
        },
    );
    if let Some(t) = t {
        check_eq("#PF L4 write cr2", t.cr2, l4);
    }
}

fn upcall_mask_cases() {
    const IF: u64 = pvguest::cpu::RFLAGS_IF;

    // Events masked (start of day).
    match ud2() {
        Err(t) if t.vector == 6 => {
            check_eq("masked: saved mask in cs[39:32] = 1", t.saved_mask(), 1);
            check_eq("masked: frame rflags.IF = 0", t.rflags & IF, 0);
            check_eq("masked: mask on entry = 1", t.mask_on_entry, 1);
        }
        r => fail("masked: #UD", format_args!("{:?}", r)),
    }
    check_eq("masked: mask after iret = 1", upcall_mask(), 1);

    // Events unmasked; the #UD entry has TI_IF.
    set_upcall_mask(0);
    match ud2() {
        Err(t) if t.vector == 6 => {
            check_eq("unmasked: saved mask in cs[39:32] = 0", t.saved_mask(), 0);
            check_eq("unmasked: frame rflags.IF = 1", t.rflags & IF, IF);
            check_eq("unmasked: TI_IF entry masks events", t.mask_on_entry, 1);
        }
        r => fail("unmasked: #UD", format_args!("{:?}", r)),
    }
    check_eq(
        "unmasked: iret restores mask 0 from rflags.IF",
        upcall_mask(),
        0,
    );

    // The same with a #UD entry without TI_IF.
    let rc = traps::set_trap_table(&[trap_info(6, 0, false), TRAP_TABLE_END]);
    check_rc("set_trap_table #UD without TI_IF", rc, 0);
    match ud2() {
        Err(t) if t.vector == 6 => {
            check_eq(
                "entry without TI_IF leaves events unmasked",
                t.mask_on_entry,
                0,
            );
        }
        r => fail("unmasked, no TI_IF: #UD", format_args!("{:?}", r)),
    }
    let rc = traps::set_trap_table(&[trap_info(6, 0, true), TRAP_TABLE_END]);
    check_rc("set_trap_table #UD with TI_IF again", rc, 0);
    set_upcall_mask(1);
}
