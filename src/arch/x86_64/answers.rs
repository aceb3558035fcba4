//! What the guest entry decides before any policy code runs (entry.S,
//! bounce.S and idt.rs): the hypercalls it answers itself, the numbers it
//! offers the quick hook, the exception vectors it offers the quick
//! bounce, and the forced-emulation prefix it recognises. All of it is
//! Xen's ABI; `pv::fast` and `pv::fast_trap` take these sets from here
//! and handle exactly them (their own constants are these).

use ringvisor_abi::xen::*;

/// The Xen version ringvisor implements (`XENVER_version`'s answer,
/// which entry.S gives itself): the ABI level of Xen 4.17.
pub const XEN_MAJOR: u64 = 4;
pub const XEN_MINOR: u64 = 17;

/// Hypercall numbers Xen's x86 ABI gives to nothing (`xen.h`: 11, 43-47,
/// `arch_2`..`arch_7` = 50-55, 56-63; every number from 64 up is past
/// `NR_hypercalls`): no handler can exist for them, so their `-ENOSYS`
/// needs no lookup of anything.
pub const UNASSIGNED: u64 = 1 << 11 | 0x1f << 43 | 0xff << 56 | 0x3f << 50;

/// The numbers below 64 the quick hook (`pv::fast::quick`) may answer
/// (bit N: number N; every number from 64 up is `-ENOSYS`, also
/// answered): `syscall_entry` sends the others the full way without
/// asking.
pub const QUICK_NRS: u64 = UNASSIGNED
    | 1 << HYPERVISOR_XEN_VERSION
    | 1 << HYPERVISOR_CONSOLE_IO
    | 1 << HYPERVISOR_UPDATE_VA_MAPPING
    | 1 << HYPERVISOR_MMU_UPDATE
    | 1 << HYPERVISOR_IRET
    | 1 << HYPERVISOR_FPU_TASKSWITCH;

/// The numbers below 64 `syscall_entry` and `int82_entry` (entry.S) may
/// answer themselves, with no Rust at all: the unassigned ones
/// (`-ENOSYS`), `xen_version` (`XENVER_version` only) and `console_io`
/// (a write of 0 bytes, 64-bit guests, while the domain's
/// `console_quiet` says it does nothing). Every number from 64 up is
/// `-ENOSYS` too. The asm sends anything it is unsure of to the quick
/// hook (or the full way) before it changed anything.
pub const ASM_NRS: u64 = UNASSIGNED | 1 << HYPERVISOR_XEN_VERSION | 1 << HYPERVISOR_CONSOLE_IO;
const _: () = assert!(QUICK_NRS & ASM_NRS == ASM_NRS);
/// The answers the asm gives. It reads and writes of the vCPU
/// `kernel_mode` (the call must be its kernel's; a 32-bit guest's
/// `int $0x82` from ring 1 sets it), `in_failsafe` (cleared: a hypercall
/// is progress) and the upcall bytes of its `vcpu_info`.
pub const ASM_ENOSYS: i64 = -(ringvisor_abi::errno::ENOSYS as i64);
pub const ASM_VERSION: i64 = (XEN_MAJOR << 16 | XEN_MINOR) as i64;
/// `evtchn_upcall_pending` in a `vcpu_info`, `evtchn_upcall_mask` the
/// byte after it (the asm reads both as one word).
pub const VI_UPCALL: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_pending);
const _: () = assert!(core::mem::offset_of!(VcpuInfo, evtchn_upcall_mask) == VI_UPCALL + 1);
// entry.S tests the first argument against 0 (`test`) for both.
const _: () = assert!(ringvisor_abi::version::XENVER_VERSION == 0 && CONSOLEIO_WRITE == 0);

/// Exception vectors the bounce paths name.
pub const VEC_BP: u8 = 3;
pub const VEC_OF: u8 = 4;
pub const VEC_UD: u8 = 6;
pub const VEC_PF: u8 = 14;

/// The vectors the quick bounce hook (`pv::fast_trap::exception`) takes
/// (bit N: vector N): entry.S sends only these to it.
pub const QUICK_VECTORS: u64 =
    1 << VEC_BP as u64 | 1 << VEC_OF as u64 | 1 << VEC_UD as u64 | 1 << VEC_PF as u64;

/// Xen's forced-emulation prefix before `cpuid`: `ud2a; .ascii "xen";
/// cpuid` (bounce.S recognises it; `pv::emulate` too).
pub const FORCED_CPUID: [u8; 7] = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
