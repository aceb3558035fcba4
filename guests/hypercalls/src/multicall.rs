//! `multicall` (13): 64-byte entries `{op, result, args[6]}`. Only the
//! `result` fields are checked (Xen's debug builds scribble over the rest
//! of each entry).

use core::arch::asm;

use pvguest::abi::{self, MulticallEntry};
use pvguest::cell::GuestCell;
use pvguest::hypercall as hc;
use pvguest::report::{check, check_rc, Rc};
use pvguest::start_info;
use pvguest::traps::KERNEL_CS_RPL0;

use crate::{EFAULT, EINVAL, ENOSYS, UNMAPPED};

/// What a result field holds before the hypervisor writes it.
const PRESET: u64 = 0x5a5a_5a5a_5a5a_5a5a;
/// `%rax` in the iret entry's frame.
const IRET_RAX: u64 = 0xdead;

const fn entry(op: u32, args: [u64; 6]) -> MulticallEntry {
    MulticallEntry {
        op: op as u64,
        result: PRESET,
        args,
    }
}

const fn xen_version() -> MulticallEntry {
    entry(
        abi::HYPERVISOR_XEN_VERSION,
        [abi::XENVER_VERSION as u64, 0, 0, 0, 0, 0],
    )
}

fn multicall(list: u64, n: u64) -> i64 {
    // SAFETY: every list here holds harmless calls (queries, a refused
    // call) or is refused as a whole.
    unsafe { hc::hypercall5(abi::HYPERVISOR_MULTICALL, list, n, 0, 0, 0) }
}

static LONG: GuestCell<[MulticallEntry; 200]> = GuestCell::new([xen_version(); 200]);
static INNER: GuestCell<[MulticallEntry; 1]> = GuestCell::new([xen_version()]);

pub fn run() {
    // SAFETY: xen_version(version) has no buffer.
    let version = unsafe { hc::xen_version(abi::XENVER_VERSION, 0) };

    let mut list = [
        xen_version(),
        entry(
            abi::HYPERVISOR_VCPU_OP,
            [abi::VCPUOP_IS_UP as u64, 0, 0, 0, 0, 0],
        ),
        entry(63, [0; 6]),
        entry(
            abi::HYPERVISOR_VCPU_OP,
            [abi::VCPUOP_IS_UP as u64, 31, 0, 0, 0, 0],
        ),
    ];
    let rc = multicall(list.as_mut_ptr() as u64, list.len() as u64);
    check_rc("multicall of 4 harmless calls: 0", rc, 0);
    let r = list.map(|e| e.result as i64);
    check(
        "  ... results: xen_version, is_up(0) 1, op 63 -ENOSYS, is_up(31) -ENOENT",
        r == [version, 1, ENOSYS, crate::ENOENT],
        format_args!(
            "{} {} {} {} (version {:#x})",
            Rc(r[0]),
            Rc(r[1]),
            Rc(r[2]),
            Rc(r[3]),
            version
        ),
    );

    // A multicall entry inside a multicall: -EINVAL in its result, the
    // inner list not run, the entries after it run.
    let mut inner = INNER.get();
    inner[0].result = PRESET;
    INNER.set(inner);
    let mut list = [
        entry(
            abi::HYPERVISOR_MULTICALL,
            [INNER.as_ptr() as u64, 1, 0, 0, 0, 0],
        ),
        xen_version(),
    ];
    let rc = multicall(list.as_mut_ptr() as u64, 2);
    check(
        "multicall with a nested multicall entry: 0, that entry -EINVAL, the next run",
        rc == 0 && list[0].result as i64 == EINVAL && list[1].result as i64 == version,
        format_args!(
            "rc {} results {} {}",
            Rc(rc),
            Rc(list[0].result as i64),
            Rc(list[1].result as i64)
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
        "multicall of 0 entries with an unmapped list: 0",
        multicall(UNMAPPED, 0),
        0,
    );

    // 200 entries: continuations every 64 on ringvisor (Xen: whenever
    // preemption is due); every result written.
    let rc = multicall(LONG.as_ptr() as u64, 200);
    let long = LONG.get();
    let written = long.iter().filter(|e| e.result as i64 == version).count();
    check(
        "multicall of 200 xen_version entries: 0, every result written",
        rc == 0 && written == 200,
        format_args!("rc {} results written {}", Rc(rc), written),
    );

    iret_entry(version);
}

/// XSA-213: an `iret` entry ends the batch. The iret takes its frame from
/// the stack as the `syscall` of the multicall left it (as XTF's xsa-213
/// does), so the call is made here with `syscall` directly, below an iret
/// frame that returns to the next instruction in kernel mode with `%rax`
/// = IRET_RAX and the stack as it was.
fn iret_entry(version: i64) {
    let mut list = [entry(abi::HYPERVISOR_IRET, [0; 6]), xen_version()];
    let masked = start_info::upcall_mask() != 0;
    let rflags = pvguest::cpu::RFLAGS_RSVD1 | if masked { 0 } else { pvguest::cpu::RFLAGS_IF };
    let rax: u64;
    // SAFETY: the iret frame returns to label 2 with the stack pointer as
    // it was before the pushes (kept in r12 too, in case the iret did not
    // happen); every register the hypercall or the iret may change is
    // declared clobbered.
    unsafe {
        asm!(
            "mov r12, rsp",
            "push {ss}",
            "push r12",
            "push {fl}",
            "push {cs}",
            "lea {t}, [rip + 2f]",
            "push {t}",
            "push 0", // flags
            "push 0", // rcx
            "push 0", // r11
            "push {rax_in}",
            "mov eax, {op}",
            "syscall",
            "2:",
            "mov rsp, r12",
            ss = const abi::FLAT_KERNEL_SS & !3,
            fl = in(reg) rflags,
            cs = const KERNEL_CS_RPL0,
            rax_in = const IRET_RAX,
            t = out(reg) _,
            op = const abi::HYPERVISOR_MULTICALL,
            inout("rdi") list.as_mut_ptr() as u64 => _,
            inout("rsi") 2u64 => _,
            out("rax") rax,
            out("rdx") _,
            out("r10") _,
            out("r8") _,
            out("r9") _,
            out("rcx") _,
            out("r11") _,
            out("r12") _,
        );
    }
    check(
        "multicall [iret, xen_version]: the iret returns through its frame (rax from it)",
        rax == IRET_RAX,
        format_args!("rax {:#x}", rax),
    );
    check(
        "  ... the entry after the iret not run (XSA-213)",
        list[1].result == PRESET,
        format_args!("result {:#x} (xen_version {:#x})", list[1].result, version),
    );
    check(
        "  ... the iret entry's result is the iret's return value, the frame's rax (Xen's do_iret)",
        list[0].result == IRET_RAX,
        format_args!("result {:#x}", list[0].result),
    );
    start_info::set_upcall_mask(u8::from(masked));
}
