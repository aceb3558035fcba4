//! `xen/include/public/arch-x86/xen-x86_32.h` and the 32-bit layouts of the
//! `xen.h` / `arch-x86/xen.h` structures: what a 32-bit PAE PV guest (its
//! kernel in ring 1) sees, as 64-bit Xen presents it to "compat" guests.
//!
//! Hypercall registers: arguments in `%ebx, %ecx, %edx, %esi, %edi`,
//! result in `%eax`; argument registers are clobbered.
//!
//! # Where 64-bit Xen and `xen-x86_32.h` agree, and where they do not
//!
//! - **Selectors**: Xen's compat selectors (`FLAT_COMPAT_*` in
//!   `xen/arch/x86/include/asm/desc.h`) have the same values as this
//!   header's `FLAT_RING1_*`/`FLAT_RING3_*`. But they live in a *different
//!   GDT* from the 64-bit guests' one (`boot_compat_gdt` vs `boot_gdt` in
//!   `xen/arch/x86/desc.c`): `0xe02b` is ring-3 *code* for a 32-bit guest
//!   and ring-3 *data* for a 64-bit one, `0xe033` is ring-3 *data* here and
//!   64-bit *code* there, and `0xe019`/`0xe021` (ring 1) exist only in the
//!   compat GDT. The hypervisor needs a reserved-GDT variant per guest width.
//! - **Hypervisor hole**: the header's `HYPERVISOR_VIRT_START_PAE`
//!   (`0xF5800000`) is only the default and upper bound. 64-bit Xen keeps a
//!   per-domain start (`hv_compat_vstart`), which a guest's
//!   `XEN_ELFNOTE_HV_START_LOW` may lower (rounded up to 2 MiB), and maps
//!   the compat M2P from there up to `0xFFE00000`
//!   ([`MACH2PHYS_COMPAT_VIRT_END`]), not to the header's
//!   `MACH2PHYS_VIRT_END_PAE` (`0xF6800000`, the old 32-bit Xen's).
//! - **8-byte fields** are 4-byte aligned (i386 C ABI; compat headers do
//!   the same), see the note in [`super`].

use super::xen::{VcpuTimeInfo, XEN_LEGACY_MAX_VCPUS};
use super::{layout, pod_struct};

/// `xen_pfn_t` for a 32-bit guest (`unsigned long`).
pub type XenPfn32 = u32;

// ---------------------------------------------------------------------------
// Flat selectors (xen-x86_32.h; = FLAT_COMPAT_* in 64-bit Xen).
// ---------------------------------------------------------------------------

/// Ring 1 code (GDT index 259): the guest kernel's `%cs`.
pub const FLAT_RING1_CS: u16 = 0xe019;
/// Ring 1 data (GDT index 260).
pub const FLAT_RING1_DS: u16 = 0xe021;
/// Ring 1 stack (GDT index 260).
pub const FLAT_RING1_SS: u16 = 0xe021;
/// Ring 3 code (GDT index 261).
pub const FLAT_RING3_CS: u16 = 0xe02b;
/// Ring 3 data (GDT index 262).
pub const FLAT_RING3_DS: u16 = 0xe033;
/// Ring 3 stack (GDT index 262).
pub const FLAT_RING3_SS: u16 = 0xe033;

pub const FLAT_KERNEL_CS: u16 = FLAT_RING1_CS;
pub const FLAT_KERNEL_DS: u16 = FLAT_RING1_DS;
pub const FLAT_KERNEL_SS: u16 = FLAT_RING1_SS;
pub const FLAT_USER_CS: u16 = FLAT_RING3_CS;
pub const FLAT_USER_DS: u16 = FLAT_RING3_DS;
pub const FLAT_USER_SS: u16 = FLAT_RING3_SS;

// ---------------------------------------------------------------------------
// The hypervisor hole at the top of a 32-bit PAE address space.
// ---------------------------------------------------------------------------

pub const HYPERVISOR_VIRT_START_PAE: u32 = 0xF580_0000;
pub const MACH2PHYS_VIRT_START_PAE: u32 = 0xF580_0000;
/// The public header's end of the PAE M2P (32-bit Xen's); 64-bit Xen uses
/// [`MACH2PHYS_COMPAT_VIRT_END`].
pub const MACH2PHYS_VIRT_END_PAE: u32 = 0xF680_0000;
/// Non-PAE bounds: obsolete (non-PAE 32-bit guests are not supported).
pub const HYPERVISOR_VIRT_START_NONPAE: u32 = 0xFC00_0000;
pub const MACH2PHYS_VIRT_START_NONPAE: u32 = 0xFC00_0000;
pub const MACH2PHYS_VIRT_END_NONPAE: u32 = 0xFC40_0000;

pub const HYPERVISOR_VIRT_START: u32 = HYPERVISOR_VIRT_START_PAE;
pub const MACH2PHYS_VIRT_START: u32 = MACH2PHYS_VIRT_START_PAE;
pub const MACH2PHYS_VIRT_END: u32 = MACH2PHYS_VIRT_END_PAE;
/// Entries (4 bytes each) in the header's PAE M2P window.
pub const MACH2PHYS_NR_ENTRIES: u32 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 2;

/// 64-bit Xen (`asm/config.h`, `__HYPERVISOR_COMPAT_VIRT_START`): the
/// default — and highest allowed — start of the hypervisor hole of a
/// compat domain. "Not a fixed value, just a lower limit": a guest's
/// `HV_START_LOW` note can move it down.
pub const HYPERVISOR_COMPAT_VIRT_START: u32 = 0xF580_0000;
/// 64-bit Xen (`asm/config.h`): end of the compat M2P window, which starts
/// at the domain's hypervisor start.
pub const MACH2PHYS_COMPAT_VIRT_END: u32 = 0xFFE0_0000;

/// `xen_pfn_to_cr3` (32-bit): page directories above 4GB do not fit in an
/// architectural `%cr3`, so the MFN's top 12 bits are folded into the low
/// 12 bits: `(pfn << 12) | (pfn >> 20)`, i.e. a rotation.
pub const fn xen_pfn_to_cr3(pfn: u32) -> u32 {
    pfn.rotate_left(12)
}

/// `xen_cr3_to_pfn` (32-bit): the inverse of [`xen_pfn_to_cr3`].
/// `(cr3 >> 12) | (cr3 << 20)`.
pub const fn xen_cr3_to_pfn(cr3: u32) -> u32 {
    cr3.rotate_right(12)
}

/// Ports of the 2-level event-channel ABI for a 32-bit guest
/// (`EVTCHN_2L_NR_CHANNELS`: `sizeof(xen_ulong_t)^2 * 64`).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 1024;
/// Words in each of `shared_info.evtchn_pending`/`evtchn_mask`.
pub const EVTCHN_WORDS: usize = 32;

// ---------------------------------------------------------------------------
// Structures.
// ---------------------------------------------------------------------------

pod_struct! {
    /// `struct cpu_user_regs` (public, 32-bit).
    pub struct CpuUserRegs32 {
        pub ebx: u32,
        pub ecx: u32,
        pub edx: u32,
        pub esi: u32,
        pub edi: u32,
        pub ebp: u32,
        pub eax: u32,
        /// Private to Xen.
        pub error_code: u16,
        /// Private to Xen.
        pub entry_vector: u16,
        pub eip: u32,
        pub cs: u16,
        pub saved_upcall_mask: u8,
        pub _pad0: u8,
        /// `eflags.IF == !saved_upcall_mask`.
        pub eflags: u32,
        pub esp: u32,
        pub ss: u16,
        pub _pad1: u16,
        pub es: u16,
        pub _pad2: u16,
        pub ds: u16,
        pub _pad3: u16,
        pub fs: u16,
        pub _pad4: u16,
        pub gs: u16,
        pub _pad5: u16,
    }
}
layout!(CpuUserRegs32, 68; ebx @ 0, eax @ 24, error_code @ 28, entry_vector @ 30,
        eip @ 32, cs @ 36, saved_upcall_mask @ 38, eflags @ 40, esp @ 44, ss @ 48,
        es @ 52, ds @ 56, fs @ 60, gs @ 64);

pod_struct! {
    /// `struct arch_vcpu_info` (32-bit). Padded so `sizeof(vcpu_info) == 64`.
    pub struct ArchVcpuInfo32 {
        pub cr2: u32,
        pub pad: [u32; 5],
    }
}
layout!(ArchVcpuInfo32, 24; cr2 @ 0);

pod_struct! {
    /// `struct vcpu_info` (32-bit guest). Same size as the native one (64),
    /// different inside: `evtchn_pending_sel` is 4 bytes, `cr2` at 8.
    pub struct VcpuInfo32 {
        pub evtchn_upcall_pending: u8,
        pub evtchn_upcall_mask: u8,
        pub _pad0: [u8; 2],
        pub evtchn_pending_sel: u32,
        pub arch: ArchVcpuInfo32,
        /// Same layout as the native one (all its fields are naturally
        /// aligned at offset 32 either way).
        pub time: VcpuTimeInfo,
    }
}
layout!(VcpuInfo32, 64; evtchn_upcall_pending @ 0, evtchn_upcall_mask @ 1,
        evtchn_pending_sel @ 4, arch @ 8, arch.cr2 @ 8, time @ 32);

pod_struct! {
    /// `struct arch_shared_info` (32-bit). `wc_sec_hi` lives here because
    /// "there's no room for this field in the generic structure".
    pub struct ArchSharedInfo32 {
        pub max_pfn: u32,
        pub pfn_to_mfn_frame_list_list: u32,
        pub nmi_reason: u32,
        pub p2m_cr3: u32,
        pub p2m_vaddr: u32,
        pub p2m_generation: u32,
        pub wc_sec_hi: u32,
    }
}
layout!(ArchSharedInfo32, 28; wc_sec_hi @ 24);

pod_struct! {
    /// `struct shared_info` (32-bit guest).
    pub struct SharedInfo32 {
        pub vcpu_info: [VcpuInfo32; XEN_LEGACY_MAX_VCPUS],
        pub evtchn_pending: [u32; EVTCHN_WORDS],
        pub evtchn_mask: [u32; EVTCHN_WORDS],
        pub wc_version: u32,
        pub wc_sec: u32,
        pub wc_nsec: u32,
        pub arch: ArchSharedInfo32,
    }
}
layout!(SharedInfo32, 2344; vcpu_info @ 0, evtchn_pending @ 2048, evtchn_mask @ 2176,
        wc_version @ 2304, wc_sec @ 2308, wc_nsec @ 2312, arch @ 2316,
        arch.wc_sec_hi @ 2340);

pod_struct! {
    /// `start_info.console` (32-bit): `domU { mfn; evtchn; }` overlaid by
    /// `dom0 { info_off; info_size; }` — both 8 bytes here.
    pub struct StartInfoConsole32 {
        /// domU: console ring frame. dom0: `info_off`.
        pub mfn: u32,
        /// domU: console event channel. dom0: `info_size`.
        pub evtchn: u32,
    }
}
layout!(StartInfoConsole32, 8);

pod_struct! {
    /// `struct start_info` (32-bit guest): handed over in `%esi`.
    pub struct StartInfo32 {
        /// e.g. `"xen-3.0-x86_32p"`.
        pub magic: [u8; 32],
        pub nr_pages: u32,
        pub shared_info: u32,
        pub flags: u32,
        pub store_mfn: u32,
        pub store_evtchn: u32,
        pub console: StartInfoConsole32,
        pub pt_base: u32,
        pub nr_pt_frames: u32,
        pub mfn_list: u32,
        pub mod_start: u32,
        pub mod_len: u32,
        pub cmd_line: [u8; super::xen::MAX_GUEST_CMDLINE],
        pub first_p2m_pfn: u32,
        pub nr_p2m_frames: u32,
    }
}
layout!(StartInfo32, 1112; nr_pages @ 32, shared_info @ 36, flags @ 40, store_mfn @ 44,
        store_evtchn @ 48, console @ 52, pt_base @ 60, nr_pt_frames @ 64, mfn_list @ 68,
        mod_start @ 72, mod_len @ 76, cmd_line @ 80, first_p2m_pfn @ 1104,
        nr_p2m_frames @ 1108);

pod_struct! {
    /// `struct trap_info` (32-bit): one virtual IDT entry. The code
    /// selector must have RPL 1 (Xen fixes it up).
    pub struct TrapInfo32 {
        pub vector: u8,
        /// Bits 0-1: DPL; bit 2: disable events on entry.
        pub flags: u8,
        pub cs: u16,
        pub address: u32,
    }
}
layout!(TrapInfo32, 8; vector @ 0, flags @ 1, cs @ 2, address @ 4);

impl TrapInfo32 {
    /// `TI_GET_DPL`.
    pub fn dpl(&self) -> u8 {
        self.flags & super::xen::TI_DPL_MASK
    }
    /// `TI_GET_IF`.
    pub fn masks_events(&self) -> bool {
        self.flags & super::xen::TI_IF != 0
    }
}

pod_struct! {
    /// `struct mmuext_op` (32-bit): the unions `arg1`/`arg2` are 4 bytes.
    pub struct MmuExtOp32 {
        pub cmd: u32,
        /// `mfn` or `linear_addr`.
        pub arg1: u32,
        /// `nr_ents`, `vcpumask` or `src_mfn`.
        pub arg2: u32,
    }
}
layout!(MmuExtOp32, 12; cmd @ 0, arg1 @ 4, arg2 @ 8);

pod_struct! {
    /// `struct multicall_entry` (32-bit).
    pub struct MulticallEntry32 {
        pub op: u32,
        pub result: u32,
        pub args: [u32; 6],
    }
}
layout!(MulticallEntry32, 32; args @ 8);

pod_struct! {
    /// `struct xen_callback` (`xen_callback_t`, 32-bit): a far pointer.
    pub struct XenCallback32 {
        pub cs: u32,
        pub eip: u32,
    }
}
layout!(XenCallback32, 8);

pod_struct! {
    /// `struct vcpu_guest_context` (32-bit guest).
    pub struct VcpuGuestContext32 {
        pub fpu_ctxt: [u8; 512],
        /// `VGCF_*` (low 32 bits).
        pub flags: u32,
        pub user_regs: CpuUserRegs32,
        pub trap_ctxt: [TrapInfo32; 256],
        pub ldt_base: u32,
        pub ldt_ents: u32,
        pub gdt_frames: [u32; 16],
        pub gdt_ents: u32,
        /// Virtual TSS: ring-1 SS:ESP.
        pub kernel_ss: u32,
        pub kernel_sp: u32,
        /// CR0-CR7; `ctrlreg[3]` uses the folded `xen_pfn_to_cr3` format.
        pub ctrlreg: [u32; 8],
        pub debugreg: [u32; 8],
        pub event_callback_cs: u32,
        pub event_callback_eip: u32,
        pub failsafe_callback_cs: u32,
        pub failsafe_callback_eip: u32,
        pub vm_assist: u32,
    }
}
layout!(VcpuGuestContext32, 2800; flags @ 512, user_regs @ 516, trap_ctxt @ 584,
        ldt_base @ 2632, ldt_ents @ 2636, gdt_frames @ 2640, gdt_ents @ 2704,
        kernel_ss @ 2708, kernel_sp @ 2712, ctrlreg @ 2716, debugreg @ 2748,
        event_callback_cs @ 2780, event_callback_eip @ 2784,
        failsafe_callback_cs @ 2788, failsafe_callback_eip @ 2792, vm_assist @ 2796);

pod_struct! {
    /// The guest-stack frame `HYPERVISOR_iret` reads for a 32-bit guest,
    /// lowest address first. Not a public-header struct: it is what Xen's
    /// `compat_iret()` (`xen/arch/x86/pv/iret.c`) reads. The iret stub
    /// pushed `eax` on top of an ordinary `iret` frame. `esp`/`ss` are only
    /// read when returning to ring 2/3; returning to ring 1 consumes just
    /// the first four words.
    pub struct IretContext32 {
        pub eax: u32,
        pub eip: u32,
        pub cs: u32,
        pub eflags: u32,
        pub esp: u32,
        pub ss: u32,
    }
}
layout!(IretContext32, 24; eax @ 0, eip @ 4, cs @ 8, eflags @ 12, esp @ 16, ss @ 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_selectors() {
        assert_eq!(FLAT_KERNEL_CS & 3, 1);
        assert_eq!(FLAT_KERNEL_SS & 3, 1);
        assert_eq!(FLAT_USER_CS & 3, 3);
        // Same numbers, different descriptors from the 64-bit GDT.
        assert_eq!(FLAT_RING3_CS, crate::x86_64::FLAT_RING3_DS32);
        assert_eq!(FLAT_RING3_DS, crate::x86_64::FLAT_RING3_CS64);
    }

    #[test]
    fn folded_cr3() {
        // An MFN above 4 GiB of machine memory survives the round trip.
        let mfn = 0x0012_3456;
        assert_eq!(xen_cr3_to_pfn(xen_pfn_to_cr3(mfn)), mfn);
        assert_eq!(xen_pfn_to_cr3(0x1000), 0x0100_0000);
    }

    const _: () = assert!(MACH2PHYS_NR_ENTRIES == 1 << 22);
    const _: () = assert!(HYPERVISOR_COMPAT_VIRT_START < MACH2PHYS_COMPAT_VIRT_END);
}
