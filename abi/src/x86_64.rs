//! `xen/include/public/arch-x86/xen-x86_64.h`: what a 64-bit PV guest
//! sees — flat selectors, the hypervisor hole, `cpu_user_regs`, the
//! `HYPERVISOR_iret` frame — and the 64-bit `vcpu_guest_context` from
//! `arch-x86/xen.h`.
//!
//! Hypercall registers: arguments in `%rdi, %rsi, %rdx, %r10, %r8`, result
//! in `%rax`; the argument registers are clobbered (a 2-argument hypercall
//! clobbers `%rdi, %rsi`).

use super::xen::TrapInfo;
use super::{layout, pod_struct};

// ---------------------------------------------------------------------------
// Flat segment selectors in Xen's reserved GDT page (every GDT has them).
// The guest kernel runs in ring 3 too, so kernel and user selectors are the
// same ring-3 ones.
// ---------------------------------------------------------------------------

/// Ring 3, 32-bit code (GDT index 260), for 32-bit user mode.
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Ring 3, 64-bit code (GDT index 262).
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Ring 3 data (GDT index 261).
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// The NULL selector: 64-bit code needs no data segment.
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// Ring 3 stack (GDT index 261).
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// Ring 3 stack (GDT index 261).
pub const FLAT_RING3_SS64: u16 = 0xe02b;

pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;

pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

// ---------------------------------------------------------------------------
// The hypervisor's hole in every 64-bit guest address space.
// ---------------------------------------------------------------------------

/// Start of the range reserved for the hypervisor (PML4 slot 256).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the hypervisor range (PML4 slots 256..272).
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// The read-only machine-to-physical table guests see.
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// Entries (8 bytes each) the M2P window can hold.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

// ---------------------------------------------------------------------------
// set_segment_base.
// ---------------------------------------------------------------------------

pub const SEGBASE_FS: u32 = 0;
pub const SEGBASE_GS_USER: u32 = 1;
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// Load the user `%gs` selector given in `base[15:0]`.
pub const SEGBASE_GS_USER_SEL: u32 = 3;

// ---------------------------------------------------------------------------
// HYPERVISOR_iret.
// ---------------------------------------------------------------------------

/// `iret_context.flags`: the guest left user mode by `syscall`; return with
/// `sysret` semantics: restore RAX, RIP, RFLAGS, RSP, discard R11, RCX, CS,
/// SS. Without it: restore RAX, R11, RCX, CS:RIP, RFLAGS, SS:RSP.
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

pod_struct! {
    /// `struct iret_context`: what `HYPERVISOR_iret` finds on the guest
    /// kernel stack, lowest address (`%rsp` at the `syscall`) first. The
    /// iret stub pushed `rcx, r11, rax` on top of the frame the guest built.
    ///
    /// Saved `cs` RPL maps: 0, 1, 2 -> ring-3 kernel mode; 3 -> user mode.
    // Tour 05: what HYPERVISOR_iret reads (docs/frames/iret64.svg)
    pub struct IretContext {
        pub rax: u64,
        pub r11: u64,
        pub rcx: u64,
        /// `VGCF_IN_SYSCALL` or 0.
        pub flags: u64,
        pub rip: u64,
        pub cs: u64,
        pub rflags: u64,
        pub rsp: u64,
        pub ss: u64,
    }
}
layout!(IretContext, 72; rax @ 0, r11 @ 8, rcx @ 16, flags @ 24, rip @ 32, cs @ 40,
        rflags @ 48, rsp @ 56, ss @ 64);

// ---------------------------------------------------------------------------
// Registers and per-vCPU arch state.
// ---------------------------------------------------------------------------

pod_struct! {
    /// `struct cpu_user_regs` (public, 64-bit): the guest register file as
    /// the ABI presents it (in `vcpu_guest_context`). Xen's own internal
    /// frame differs; this is only the guest-visible one.
    pub struct CpuUserRegs {
        pub r15: u64,
        pub r14: u64,
        pub r13: u64,
        pub r12: u64,
        pub rbp: u64,
        pub rbx: u64,
        pub r11: u64,
        pub r10: u64,
        pub r9: u64,
        pub r8: u64,
        pub rax: u64,
        pub rcx: u64,
        pub rdx: u64,
        pub rsi: u64,
        pub rdi: u64,
        /// Private to Xen.
        pub error_code: u32,
        /// Private to Xen.
        pub entry_vector: u32,
        pub rip: u64,
        pub cs: u16,
        pub _pad0: u16,
        pub saved_upcall_mask: u8,
        pub _pad1: [u8; 3],
        /// `rflags.IF == !saved_upcall_mask`.
        pub rflags: u64,
        pub rsp: u64,
        pub ss: u16,
        pub _pad2: [u16; 3],
        pub es: u16,
        pub _pad3: [u16; 3],
        pub ds: u16,
        pub _pad4: [u16; 3],
        pub fs: u16,
        pub _pad5: [u16; 3],
        pub gs: u16,
        pub _pad6: [u16; 3],
    }
}
layout!(CpuUserRegs, 200; r15 @ 0, rbp @ 32, rbx @ 40, r11 @ 48, r8 @ 72, rax @ 80,
        rcx @ 88, rdx @ 96, rsi @ 104, rdi @ 112, error_code @ 120, entry_vector @ 124,
        rip @ 128, cs @ 136, saved_upcall_mask @ 140, rflags @ 144, rsp @ 152, ss @ 160,
        es @ 168, ds @ 176, fs @ 184, gs @ 192);

pod_struct! {
    /// `struct arch_vcpu_info` (64-bit): the part of `vcpu_info` that is
    /// x86-specific. Padded so `sizeof(vcpu_info) == 64`.
    pub struct ArchVcpuInfo {
        /// The faulting address of the last page fault bounced to the vCPU.
        pub cr2: u64,
        pub pad: u64,
    }
}
layout!(ArchVcpuInfo, 16; cr2 @ 0);

/// `xen_callback_t` for a 64-bit guest: just the address (the code
/// selector is implied).
pub type XenCallback = u64;

/// `xen_pfn_to_cr3` (64-bit): a frame number as a `%cr3` value.
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << 12
}

/// `xen_cr3_to_pfn` (64-bit).
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> 12
}

pod_struct! {
    /// `struct vcpu_guest_context` (64-bit guest, `arch-x86/xen.h`): the
    /// whole state of a vCPU, given to `VCPUOP_initialise`. 32-bit:
    /// [`super::x86_32::VcpuGuestContext32`].
    pub struct VcpuGuestContext {
        /// FXSAVE image (valid with `VGCF_I387_VALID`).
        pub fpu_ctxt: [u8; 512],
        /// `VGCF_*`.
        pub flags: u64,
        pub user_regs: CpuUserRegs,
        /// Virtual IDT.
        pub trap_ctxt: [TrapInfo; 256],
        /// LDT linear address.
        pub ldt_base: u64,
        /// LDT entries.
        pub ldt_ents: u64,
        /// GDT machine frames.
        pub gdt_frames: [u64; 16],
        /// GDT entries.
        pub gdt_ents: u64,
        /// Virtual TSS (only SS1/SP1 in the 32-bit sense).
        pub kernel_ss: u64,
        pub kernel_sp: u64,
        /// CR0-CR7. `ctrlreg[3]` is the kernel page table (`xen_pfn_to_cr3`);
        /// on x86-64 the user page table is in `ctrlreg[1]`.
        pub ctrlreg: [u64; 8],
        /// DR0-DR7.
        pub debugreg: [u64; 8],
        pub event_callback_eip: u64,
        pub failsafe_callback_eip: u64,
        pub syscall_callback_eip: u64,
        /// `VMASST_TYPE_*` bitmap.
        pub vm_assist: u64,
        pub fs_base: u64,
        pub gs_base_kernel: u64,
        pub gs_base_user: u64,
    }
}
layout!(VcpuGuestContext, 5168; fpu_ctxt @ 0, flags @ 512, user_regs @ 520,
        trap_ctxt @ 720, ldt_base @ 4816, ldt_ents @ 4824, gdt_frames @ 4832,
        gdt_ents @ 4960, kernel_ss @ 4968, kernel_sp @ 4976, ctrlreg @ 4984,
        debugreg @ 5048, event_callback_eip @ 5112, failsafe_callback_eip @ 5120,
        syscall_callback_eip @ 5128, vm_assist @ 5136, fs_base @ 5144,
        gs_base_kernel @ 5152, gs_base_user @ 5160);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_ring3() {
        for sel in [
            FLAT_RING3_CS32,
            FLAT_RING3_CS64,
            FLAT_RING3_DS32,
            FLAT_RING3_SS64,
        ] {
            assert_eq!(sel & 3, 3);
            // In Xen's reserved GDT page.
            assert!(usize::from(sel >> 3) >= crate::FIRST_RESERVED_GDT_ENTRY);
        }
        assert_eq!(FLAT_KERNEL_CS, 0xe033);
        assert_eq!(FLAT_KERNEL_SS, 0xe02b);
    }

    const _: () = assert!(MACH2PHYS_NR_ENTRIES == 1 << 35);
    const _: () = assert!(MACH2PHYS_VIRT_END <= HYPERVISOR_VIRT_END);

    #[test]
    fn cr3_round_trip() {
        assert_eq!(xen_cr3_to_pfn(xen_pfn_to_cr3(0x1234)), 0x1234);
    }
}
