//! Instructions a PV kernel runs and expects the hypervisor to emulate
//! (the guest kernel runs in ring 3, so each of them faults into the
//! hypervisor first), and a few plain ones.

use core::arch::asm;

use crate::abi;

// `xen_cpuid` spells the prefix out as bytes.
const _: () = assert!(
    abi::XEN_CPUID[0] == 0x0f
        && abi::XEN_CPUID[1] == 0x0b
        && abi::XEN_CPUID[2] == b'x'
        && abi::XEN_CPUID[3] == b'e'
        && abi::XEN_CPUID[4] == b'n'
        && abi::XEN_CPUID[5] == 0x0f
        && abi::XEN_CPUID[6] == 0xa2
);

/// `XEN_CPUID_FIRST_LEAF` (`arch-x86/cpuid.h`): the first hypervisor leaf
/// (Xen may move its leaves up by 0x100 steps when it also offers
/// Viridian). Not in ringvisor-abi yet.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// `XEN_CPUID_SIGNATURE_{EBX,ECX,EDX}` as bytes: "XenVMMXenVMM". Not in
/// ringvisor-abi yet.
pub const XEN_CPUID_SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";

/// CPUID through the forced-emulation prefix (`ud2a; .ascii "xen"; cpuid`,
/// bytes `0f 0b 78 65 6e 0f a2`): the hypervisor's CPUID policy, not the
/// hardware's. Returns `[eax, ebx, ecx, edx]`.
pub fn xen_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u64, u32, u32);
    // SAFETY: the hypervisor emulates the sequence and advances rip by 7;
    // rbx (reserved by LLVM) is saved and restored around it.
    unsafe {
        asm!(
            "mov {b}, rbx",
            ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e",
            "cpuid",
            "xchg {b}, rbx",
            b = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(nostack),
        );
    }
    [a, b as u32, c, d]
}

/// `mov %cr0, %rax` (emulated: the hypervisor's CR0 with the guest's
/// virtual TS).
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: a read the hypervisor emulates; no side effect.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nostack, nomem)) };
    v
}

/// `mov %cr2, %rax` (emulated: the address of the last #PF bounced).
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: as `read_cr0`.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nostack, nomem)) };
    v
}

/// `mov %cr3, %rax` (emulated: `mfn << 12` of the current top-level page
/// table).
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: as `read_cr0`.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nostack, nomem)) };
    v
}

/// `pushfq; pop`: the hardware RFLAGS (IF is always 1 for a PV guest; the
/// virtual IF is `!evtchn_upcall_mask`).
pub fn rflags() -> u64 {
    let v: u64;
    // SAFETY: reads RFLAGS through the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) v) };
    v
}

/// CR0.TS.
pub const CR0_TS: u64 = 1 << 3;
/// CR0.PE.
pub const CR0_PE: u64 = 1 << 0;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS bit 1, always set.
pub const RFLAGS_RSVD1: u64 = 1 << 1;
