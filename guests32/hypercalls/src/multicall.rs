//! `multicall` (13) with 32-byte entries `{op, result, args[6]}`, every
//! field 4 bytes. Only the `result` fields are checked.

use core::arch::asm;

use pvguest32::abi::{self, x86_32::MulticallEntry32};
use pvguest32::abi32::FLAT_RING1_CS;
use pvguest32::cell::GuestCell;
use pvguest32::cpu::{EFLAGS_IF, EFLAGS_RSVD1};
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_rc, Rc};
use pvguest32::start_info::{set_upcall_mask, upcall_mask};
use pvguest32::va;

use crate::common::*;

const PRESET: u32 = 0x5a5a_5a5a;
/// `%eax` in the iret entry's frame.
const IRET_EAX: u32 = 0xdead;

const fn entry(op: u32, args: [u32; 6]) -> MulticallEntry32 {
    MulticallEntry32 {
        op,
        result: PRESET,
        args,
    }
}

const fn xen_version() -> MulticallEntry32 {
    entry(
        abi::HYPERVISOR_XEN_VERSION,
        [abi::XENVER_VERSION, 0, 0, 0, 0, 0],
    )
}

fn multicall(list: u32, n: u32) -> i32 {
    // SAFETY: every list here holds harmless calls or is refused.
    unsafe { hc::hypercall(abi::HYPERVISOR_MULTICALL, &[list, n]) }
}

static LONG: GuestCell<[MulticallEntry32; 200]> = GuestCell::new([xen_version(); 200]);
static INNER: GuestCell<[MulticallEntry32; 1]> = GuestCell::new([xen_version()]);

pub fn run() {
    // SAFETY: no buffer.
    let version = unsafe { hc::xen_version(abi::XENVER_VERSION, 0) };
    let mut list = [
        xen_version(),
        entry(abi::HYPERVISOR_VCPU_OP, [abi::VCPUOP_IS_UP, 0, 0, 0, 0, 0]),
        entry(63, [0; 6]),
        entry(abi::HYPERVISOR_VCPU_OP, [abi::VCPUOP_IS_UP, 31, 0, 0, 0, 0]),
    ];
    let rc = multicall(va(list.as_mut_ptr()), 4);
    check_rc("multicall (32-byte entries) of 4 harmless calls: 0", rc, 0);
    let r = list.map(|e| e.result as i32);
    check(
        "  ... results: xen_version, is_up(0) 1, op 63 -ENOSYS, is_up(31) -ENOENT",
        r == [version, 1, ENOSYS, ENOENT],
        format_args!(
            "{} {} {} {} (version {:#x})",
            Rc(r[0]),
            Rc(r[1]),
            Rc(r[2]),
            Rc(r[3]),
            version
        ),
    );

    let mut list = [
        entry(
            abi::HYPERVISOR_MULTICALL,
            [va(INNER.as_ptr()), 1, 0, 0, 0, 0],
        ),
        xen_version(),
    ];
    let rc = multicall(va(list.as_mut_ptr()), 2);
    check(
        "multicall with a nested multicall entry: 0, that entry -EINVAL, the next run",
        rc == 0 && list[0].result as i32 == EINVAL && list[1].result as i32 == version,
        format_args!(
            "rc {} results {} {}",
            Rc(rc),
            Rc(list[0].result as i32),
            Rc(list[1].result as i32)
        ),
    );
    check(
        "  ... the nested list not run",
        INNER.get()[0].result == PRESET,
        format_args!("inner result {:#x}", INNER.get()[0].result),
    );
    check_rc(
        "multicall with an unmapped list: -EFAULT",
        multicall(UNMAPPED, 1),
        EFAULT,
    );
    check_rc(
        "multicall with a list in the hypervisor hole: -EFAULT",
        multicall(HV_START, 1),
        EFAULT,
    );

    let rc = multicall(va(LONG.as_ptr()), 200);
    let written = LONG
        .get()
        .iter()
        .filter(|e| e.result as i32 == version)
        .count();
    check(
        "multicall of 200 xen_version entries: 0, every result written",
        rc == 0 && written == 200,
        format_args!("rc {} results written {}", Rc(rc), written),
    );
    iret_entry(version);
}

/// XSA-213: [iret, xen_version], made with a bare `int $0x82` below an
/// iret frame `{eax, eip, cs, eflags}` that returns to ring 1 right after
/// it (as XTF's xsa-213); the stack pointer is kept in %edi in case the
/// iret does not happen.
fn iret_entry(version: i32) {
    let mut list = [entry(abi::HYPERVISOR_IRET, [0; 6]), xen_version()];
    let mask = upcall_mask();
    let eflags = EFLAGS_RSVD1 | if mask != 0 { 0 } else { EFLAGS_IF };
    let eax: u32;
    // SAFETY: the frame returns to label 2 in ring 1 with the stack as it
    // was; the registers the hypercall may change are declared.
    unsafe {
        asm!(
            "mov %esp, %edi",
            "push {fl}",
            "push ${cs}",
            "push $2f",
            "push ${eax_in}",
            "mov ${op}, %eax",
            "int $0x82",
            "2:",
            "mov %edi, %esp",
            fl = in(reg) eflags,
            cs = const FLAT_RING1_CS as u32,
            eax_in = const IRET_EAX,
            op = const abi::HYPERVISOR_MULTICALL,
            inout("ebx") va(list.as_mut_ptr()) => _,
            inout("ecx") 2u32 => _,
            out("eax") eax,
            out("edx") _,
            out("edi") _,
            options(att_syntax),
        );
    }
    set_upcall_mask(mask);
    check(
        "multicall [iret, xen_version]: the iret returns through its frame (eax from it)",
        eax == IRET_EAX,
        format_args!("eax {:#x}", eax),
    );
    check(
        "  ... the entry after the iret not run (XSA-213)",
        list[1].result == PRESET,
        format_args!("result {:#x} (xen_version {:#x})", list[1].result, version),
    );
    check(
        "  ... the iret entry's result is the iret's return value, the frame's eax (Xen's compat_iret)",
        list[0].result == IRET_EAX,
        format_args!("result {:#x}", list[0].result),
    );
}
