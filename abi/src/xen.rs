//! `xen/include/public/xen.h` and the width-independent parts of
//! `arch-x86/xen.h`: hypercall numbers, virtual IRQs, MMU commands, domain
//! ids, and the native (64-bit guest) layouts of `start_info`,
//! `shared_info`, `vcpu_info`, `trap_info`, `mmuext_op` and friends.
//!
//! The 32-bit guest layouts of the same structures are in
//! [`super::x86_32`].

use super::x86_64::ArchVcpuInfo;
use super::{layout, pod_struct};

/// `domid_t`.
pub type DomId = u16;

/// `xen_pfn_t` for a 64-bit guest (`unsigned long`).
pub type XenPfn = u64;

// ---------------------------------------------------------------------------
// Hypercall numbers (`enum hypercall_num`, `__HYPERVISOR_*`).
// ---------------------------------------------------------------------------

pub const HYPERVISOR_SET_TRAP_TABLE: u32 = 0;
pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
pub const HYPERVISOR_SET_GDT: u32 = 2;
pub const HYPERVISOR_STACK_SWITCH: u32 = 3;
pub const HYPERVISOR_SET_CALLBACKS: u32 = 4;
pub const HYPERVISOR_FPU_TASKSWITCH: u32 = 5;
/// Legacy `sched_op` (since interface 0x00030101 use [`HYPERVISOR_SCHED_OP`]).
pub const HYPERVISOR_SCHED_OP_COMPAT: u32 = 6;
/// Was `dom0_op` before interface 0x00030204.
pub const HYPERVISOR_PLATFORM_OP: u32 = 7;
pub const HYPERVISOR_SET_DEBUGREG: u32 = 8;
pub const HYPERVISOR_GET_DEBUGREG: u32 = 9;
pub const HYPERVISOR_UPDATE_DESCRIPTOR: u32 = 10;
// 11 is unassigned.
pub const HYPERVISOR_MEMORY_OP: u32 = 12;
pub const HYPERVISOR_MULTICALL: u32 = 13;
pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
pub const HYPERVISOR_SET_TIMER_OP: u32 = 15;
/// Legacy `event_channel_op` taking a whole `evtchn_op` (before 0x00030202).
pub const HYPERVISOR_EVENT_CHANNEL_OP_COMPAT: u32 = 16;
pub const HYPERVISOR_XEN_VERSION: u32 = 17;
pub const HYPERVISOR_CONSOLE_IO: u32 = 18;
/// Legacy `physdev_op` taking a whole `physdev_op` (before 0x00030202).
pub const HYPERVISOR_PHYSDEV_OP_COMPAT: u32 = 19;
pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
pub const HYPERVISOR_VM_ASSIST: u32 = 21;
pub const HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN: u32 = 22;
/// x86 only. Jumped to, not called: see [`super::hypercall_page`].
pub const HYPERVISOR_IRET: u32 = 23;
pub const HYPERVISOR_VCPU_OP: u32 = 24;
/// x86-64 only.
pub const HYPERVISOR_SET_SEGMENT_BASE: u32 = 25;
pub const HYPERVISOR_MMUEXT_OP: u32 = 26;
pub const HYPERVISOR_XSM_OP: u32 = 27;
pub const HYPERVISOR_NMI_OP: u32 = 28;
pub const HYPERVISOR_SCHED_OP: u32 = 29;
pub const HYPERVISOR_CALLBACK_OP: u32 = 30;
/// Dropped in Xen 4.22 (still present in 4.17).
pub const HYPERVISOR_XENOPROF_OP: u32 = 31;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;
pub const HYPERVISOR_PHYSDEV_OP: u32 = 33;
pub const HYPERVISOR_HVM_OP: u32 = 34;
pub const HYPERVISOR_SYSCTL: u32 = 35;
pub const HYPERVISOR_DOMCTL: u32 = 36;
pub const HYPERVISOR_KEXEC_OP: u32 = 37;
pub const HYPERVISOR_TMEM_OP: u32 = 38;
pub const HYPERVISOR_ARGO_OP: u32 = 39;
pub const HYPERVISOR_XENPMU_OP: u32 = 40;
pub const HYPERVISOR_DM_OP: u32 = 41;
pub const HYPERVISOR_HYPFS_OP: u32 = 42;
/// Architecture-specific hypercalls 48..=55 (`__HYPERVISOR_arch_0..7`).
pub const HYPERVISOR_ARCH_0: u32 = 48;
pub const HYPERVISOR_ARCH_1: u32 = 49;
pub const HYPERVISOR_ARCH_2: u32 = 50;
pub const HYPERVISOR_ARCH_3: u32 = 51;
pub const HYPERVISOR_ARCH_4: u32 = 52;
pub const HYPERVISOR_ARCH_5: u32 = 53;
pub const HYPERVISOR_ARCH_6: u32 = 54;
pub const HYPERVISOR_ARCH_7: u32 = 55;
/// x86: `__HYPERVISOR_mca` is `__HYPERVISOR_arch_0` (`arch-x86/xen-mca.h`).
pub const HYPERVISOR_MCA: u32 = HYPERVISOR_ARCH_0;
/// x86, Xen-internal (`asm/hypercall.h`, not a public header):
/// `__HYPERVISOR_paging_domctl_cont` is `__HYPERVISOR_arch_1`.
pub const HYPERVISOR_PAGING_DOMCTL_CONT: u32 = HYPERVISOR_ARCH_1;

/// Size of Xen's hypercall dispatch table (`NR_hypercalls`): every number
/// at or above this is `-ENOSYS`.
pub const NR_HYPERCALLS: u32 = 64;

/// Xen's name for hypercall `nr` (without `__HYPERVISOR_`), for traces;
/// `"unknown"` for an unassigned number.
pub fn hypercall_name(nr: u64) -> &'static str {
    const NAMES: [&str; 56] = [
        "set_trap_table",                // 0
        "mmu_update",                    // 1
        "set_gdt",                       // 2
        "stack_switch",                  // 3
        "set_callbacks",                 // 4
        "fpu_taskswitch",                // 5
        "sched_op_compat",               // 6
        "platform_op",                   // 7
        "set_debugreg",                  // 8
        "get_debugreg",                  // 9
        "update_descriptor",             // 10
        "unknown",                       // 11
        "memory_op",                     // 12
        "multicall",                     // 13
        "update_va_mapping",             // 14
        "set_timer_op",                  // 15
        "event_channel_op_compat",       // 16
        "xen_version",                   // 17
        "console_io",                    // 18
        "physdev_op_compat",             // 19
        "grant_table_op",                // 20
        "vm_assist",                     // 21
        "update_va_mapping_otherdomain", // 22
        "iret",                          // 23
        "vcpu_op",                       // 24
        "set_segment_base",              // 25
        "mmuext_op",                     // 26
        "xsm_op",                        // 27
        "nmi_op",                        // 28
        "sched_op",                      // 29
        "callback_op",                   // 30
        "xenoprof_op",                   // 31
        "event_channel_op",              // 32
        "physdev_op",                    // 33
        "hvm_op",                        // 34
        "sysctl",                        // 35
        "domctl",                        // 36
        "kexec_op",                      // 37
        "tmem_op",                       // 38
        "argo_op",                       // 39
        "xenpmu_op",                     // 40
        "dm_op",                         // 41
        "hypfs_op",                      // 42
        "unknown",                       // 43
        "unknown",                       // 44
        "unknown",                       // 45
        "unknown",                       // 46
        "unknown",                       // 47
        "mca",                           // 48 (arch_0)
        "paging_domctl_cont",            // 49 (arch_1)
        "arch_2",                        // 50
        "arch_3",                        // 51
        "arch_4",                        // 52
        "arch_5",                        // 53
        "arch_6",                        // 54
        "arch_7",                        // 55
    ];
    match usize::try_from(nr) {
        Ok(i) if i < NAMES.len() => NAMES[i],
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------
// Virtual interrupts (`enum virq`). V = per vCPU, D = per domain, G = global.
// ---------------------------------------------------------------------------

/// V. Timebase update, and/or requested timeout.
pub const VIRQ_TIMER: u32 = 0;
/// V. Request guest to dump debug info.
pub const VIRQ_DEBUG: u32 = 1;
/// G. Bytes received on emergency console.
pub const VIRQ_CONSOLE: u32 = 2;
/// G. Exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// G. Trace buffer has records available.
pub const VIRQ_TBUF: u32 = 4;
/// G. A domain has paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// V. XenOprofile interrupt: new sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// G. Bytes received on console.
pub const VIRQ_CON_RING: u32 = 8;
/// G. PCPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// G. A memory event has occurred.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// D. Argo interdomain message notification.
pub const VIRQ_ARGO: u32 = 11;
/// G. Low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// V. PMC interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// Architecture-specific VIRQs 16..=23.
pub const VIRQ_ARCH_0: u32 = 16;
pub const VIRQ_ARCH_1: u32 = 17;
pub const VIRQ_ARCH_2: u32 = 18;
pub const VIRQ_ARCH_3: u32 = 19;
pub const VIRQ_ARCH_4: u32 = 20;
pub const VIRQ_ARCH_5: u32 = 21;
pub const VIRQ_ARCH_6: u32 = 22;
pub const VIRQ_ARCH_7: u32 = 23;
/// x86: machine-check (`VIRQ_MCA_CMCI`, `arch-x86/xen-mca.h`).
pub const VIRQ_MCA: u32 = VIRQ_ARCH_0;
pub const NR_VIRQS: u32 = 24;

// ---------------------------------------------------------------------------
// mmu_update: the command is in ptr[1:0].
// ---------------------------------------------------------------------------

/// Checked `*ptr = val`; `ptr` is a machine address.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr` = machine address of the frame whose M2P entry becomes `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// Atomically `*ptr = val | (*ptr & (A|D))`.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// Checked `*ptr = val`; `val` never translated.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;

pod_struct! {
    /// `struct mmu_update`: one request to `HYPERVISOR_mmu_update`. Same
    /// layout for 32-bit guests.
    pub struct MmuUpdate {
        /// Machine address of the PTE; bits 1:0 are the `MMU_*` command.
        pub ptr: u64,
        /// New contents of the PTE.
        pub val: u64,
    }
}
layout!(MmuUpdate, 16; ptr @ 0, val @ 8);

// ---------------------------------------------------------------------------
// mmuext_op (`enum mmuext_cmd`).
// ---------------------------------------------------------------------------

pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
pub const MMUEXT_INVLPG_ALL: u32 = 11;
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
pub const MMUEXT_SET_LDT: u32 = 13;
// 14 is unassigned.
/// x86-64 only.
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
pub const MMUEXT_COPY_PAGE: u32 = 17;
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
pub const MMUEXT_MARK_SUPER: u32 = 19;
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

pod_struct! {
    /// `struct mmuext_op` (64-bit guest): one request to
    /// `HYPERVISOR_mmuext_op`. 32-bit: [`super::x86_32::MmuExtOp32`].
    pub struct MmuExtOp {
        /// `MMUEXT_*`.
        pub cmd: u32,
        pub _pad0: u32,
        /// Union `arg1`: `mfn` (`PIN_*_TABLE`, `UNPIN_TABLE`, `NEW_BASEPTR`,
        /// `NEW_USER_BASEPTR`, `CLEAR_PAGE`, `COPY_PAGE`, `[UN]MARK_SUPER`)
        /// or `linear_addr` (`INVLPG_LOCAL`, `INVLPG_ALL`, `SET_LDT`).
        pub arg1: u64,
        /// Union `arg2`: `nr_ents` (`SET_LDT`, low 32 bits), `vcpumask`
        /// (guest pointer; `TLB_FLUSH_MULTI`, `INVLPG_MULTI`) or `src_mfn`
        /// (`COPY_PAGE`).
        pub arg2: u64,
    }
}
layout!(MmuExtOp, 24; cmd @ 0, arg1 @ 8, arg2 @ 16);

impl MmuExtOp {
    /// `arg1.mfn`.
    pub fn mfn(&self) -> u64 {
        self.arg1
    }
    /// `arg1.linear_addr`.
    pub fn linear_addr(&self) -> u64 {
        self.arg1
    }
    /// `arg2.nr_ents` (an `unsigned int`: the low half of `arg2`).
    pub fn nr_ents(&self) -> u32 {
        self.arg2 as u32
    }
    /// `arg2.vcpumask` (guest virtual address of a vCPU bitmap).
    pub fn vcpumask(&self) -> u64 {
        self.arg2
    }
    /// `arg2.src_mfn`.
    pub fn src_mfn(&self) -> u64 {
        self.arg2
    }
}

// ---------------------------------------------------------------------------
// update_va_mapping flags (`enum uvm_flags`).
// ---------------------------------------------------------------------------

/// No flushing at all.
pub const UVMF_NONE: u64 = 0;
/// Flush entire TLB(s).
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Flush only one entry.
pub const UVMF_INVLPG: u64 = 2;
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush a subset of TLBs: OR in a pointer to a vCPU bitmap.
pub const UVMF_MULTI: u64 = 0;
/// Flush the local TLB (`UVMF_MULTI` with a NULL bitmap).
pub const UVMF_LOCAL: u64 = 0;
/// Flush all TLBs.
pub const UVMF_ALL: u64 = 1 << 2;

// ---------------------------------------------------------------------------
// console_io commands.
// ---------------------------------------------------------------------------

/// Write `count` bytes from the guest buffer to the Xen console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// Read up to `count` bytes of console input.
pub const CONSOLEIO_READ: u32 = 1;

// ---------------------------------------------------------------------------
// vm_assist.
// ---------------------------------------------------------------------------

pub const VMASST_CMD_ENABLE: u32 = 0;
pub const VMASST_CMD_DISABLE: u32 = 1;
/// x86/32 guests: simulate full 4GB segment limits.
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// x86/32 guests: trap (vector 15) whenever the above is used.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// x86 guests: support writes to bottom-level PTEs.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// x86/PAE guests: support PDPTs above 4GB.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// x86 guests: sane behaviour for virtual IOPL (updated by `iret`,
/// reported in bounce frames, kernel treated as level 0).
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// All guests: set `XEN_RUNSTATE_UPDATE` while updating the runstate area.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// x86/64 guests: strictly hide the M2P from user mode.
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

// ---------------------------------------------------------------------------
// Domain ids.
// ---------------------------------------------------------------------------

/// Ids at or above this cannot be used for ordinary domains.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// Oneself.
pub const DOMID_SELF: DomId = 0x7FF0;
/// Restricts page-table updates to mapping I/O memory.
pub const DOMID_IO: DomId = 0x7FF1;
/// Lets privileged domains map restricted parts of Xen's heap.
pub const DOMID_XEN: DomId = 0x7FF2;
/// Owner of sharable pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// Pages with unknown owner.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// No specific domain requested (added after 4.17).
pub const DOMID_ANY: DomId = 0x7FF5;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask for valid domain id values.
pub const DOMID_MASK: DomId = 0x7FFF;

// ---------------------------------------------------------------------------
// multicall.
// ---------------------------------------------------------------------------

pod_struct! {
    /// `struct multicall_entry` (64-bit guest). 32-bit:
    /// [`super::x86_32::MulticallEntry32`].
    pub struct MulticallEntry {
        pub op: u64,
        pub result: u64,
        /// Guests may fill six; Xen only ever passes five.
        pub args: [u64; 6],
    }
}
layout!(MulticallEntry, 64; op @ 0, result @ 8, args @ 16);

// ---------------------------------------------------------------------------
// Time, vcpu_info, shared_info.
// ---------------------------------------------------------------------------

pod_struct! {
    /// `struct vcpu_time_info`: per-vCPU system time, updated under a
    /// seqlock-like `version` (odd while an update is in progress).
    /// Same layout for 32-bit guests ("/* 32 bytes */" in xen.h).
    ///
    /// system time = `system_time +
    /// ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)`
    /// (a negative `tsc_shift` shifts right).
    pub struct VcpuTimeInfo {
        pub version: u32,
        pub pad0: u32,
        /// TSC at the last update of the time values.
        pub tsc_timestamp: u64,
        /// Time, in nanoseconds, since boot.
        pub system_time: u64,
        pub tsc_to_system_mul: u32,
        pub tsc_shift: i8,
        /// `XEN_PVCLOCK_*`.
        pub flags: u8,
        pub pad1: [u8; 2],
    }
}
layout!(VcpuTimeInfo, 32; version @ 0, tsc_timestamp @ 8, system_time @ 16,
        tsc_to_system_mul @ 24, tsc_shift @ 28, flags @ 29);

/// `vcpu_time_info.flags`: the TSC is stable across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `vcpu_time_info.flags`: the guest was stopped.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `XEN_LEGACY_MAX_VCPUS`: vCPUs with a `vcpu_info` slot in `shared_info`
/// (older headers: `MAX_VIRT_CPUS`).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// The old name of [`XEN_LEGACY_MAX_VCPUS`].
pub const MAX_VIRT_CPUS: usize = XEN_LEGACY_MAX_VCPUS;

pod_struct! {
    /// `struct vcpu_info` (64-bit guest): per-vCPU event state and time, in
    /// `shared_info` or where `VCPUOP_register_vcpu_info` put it.
    /// "64 bytes (x86)". 32-bit: [`super::x86_32::VcpuInfo32`].
    pub struct VcpuInfo {
        /// Written non-zero by Xen when an event is pending; cleared by the
        /// guest before it checks for work.
        pub evtchn_upcall_pending: u8,
        /// Non-zero: no upcall. Only touched by the guest and by Xen on the
        /// CPU hosting the vCPU.
        pub evtchn_upcall_mask: u8,
        pub _pad0: [u8; 6],
        /// One bit per word of `shared_info.evtchn_pending` with something
        /// pending and unmasked.
        pub evtchn_pending_sel: u64,
        pub arch: ArchVcpuInfo,
        pub time: VcpuTimeInfo,
    }
}
layout!(VcpuInfo, 64; evtchn_upcall_pending @ 0, evtchn_upcall_mask @ 1,
        evtchn_pending_sel @ 8, arch @ 16, arch.cr2 @ 16, time @ 32);

/// Words in each of `shared_info.evtchn_pending`/`evtchn_mask` for a
/// 64-bit guest: `sizeof(xen_ulong_t) * 8`.
pub const EVTCHN_WORDS: usize = 64;

pod_struct! {
    /// `struct arch_shared_info` (64-bit guest). 32-bit:
    /// [`super::x86_32::ArchSharedInfo32`].
    pub struct ArchSharedInfo {
        /// Number of valid entries in the p2m table(s).
        pub max_pfn: u64,
        /// Frame of the list of frames of the list of p2m frames; 0 = not
        /// set up, !0 = invalid (use `p2m_vaddr`).
        pub pfn_to_mfn_frame_list_list: u64,
        pub nmi_reason: u64,
        /// cr3 of the address space where `p2m_vaddr` is valid (0: the
        /// next two fields are unused).
        pub p2m_cr3: u64,
        /// Virtual address of the linear p2m list.
        pub p2m_vaddr: u64,
        /// Incremented by the guest around each p2m mapping change.
        pub p2m_generation: u64,
    }
}
layout!(ArchSharedInfo, 48);

pod_struct! {
    /// `struct shared_info` (64-bit guest): the page shared between Xen and
    /// the guest, machine address in `start_info.shared_info`. 32-bit:
    /// [`super::x86_32::SharedInfo32`].
    pub struct SharedInfo {
        pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
        /// Event-channel PENDING bits, one per port (2-level ABI).
        pub evtchn_pending: [u64; EVTCHN_WORDS],
        /// Event-channel MASK bits: a set bit stops the upcall.
        pub evtchn_mask: [u64; EVTCHN_WORDS],
        /// Wallclock: version counter as in `vcpu_time_info`.
        pub wc_version: u32,
        pub wc_sec: u32,
        pub wc_nsec: u32,
        /// Upper 32 bits of the wallclock seconds.
        pub wc_sec_hi: u32,
        pub arch: ArchSharedInfo,
    }
}
layout!(SharedInfo, 3136; vcpu_info @ 0, evtchn_pending @ 2048, evtchn_mask @ 2560,
        wc_version @ 3072, wc_sec @ 3076, wc_nsec @ 3080, wc_sec_hi @ 3084, arch @ 3088,
        arch.max_pfn @ 3088, arch.p2m_generation @ 3128);

// ---------------------------------------------------------------------------
// start_info.
// ---------------------------------------------------------------------------

/// `start_info.flags`: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `start_info.flags`: the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `start_info.flags`: `mod_start` is a multiboot module package.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `start_info.flags`: `mod_start` is a PFN, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `start_info.flags`: tools understand a virtually mapped P2M.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `start_info.flags`: one byte reserved for xen-pm options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// Length of `start_info.cmd_line`.
pub const MAX_GUEST_CMDLINE: usize = 1024;

pod_struct! {
    /// `start_info.console` (64-bit guest), a union of
    /// `domU { xen_pfn_t mfn; uint32_t evtchn; }` and
    /// `dom0 { uint32_t info_off; uint32_t info_size; }`.
    /// The fields are the domU view; the dom0 view overlays `mfn`.
    pub struct StartInfoConsole {
        /// domU: machine frame of the console ring page.
        pub mfn: u64,
        /// domU: event channel of the console ring.
        pub evtchn: u32,
        pub _pad0: u32,
    }
}
layout!(StartInfoConsole, 16; mfn @ 0, evtchn @ 8);

impl StartInfoConsole {
    /// The dom0 view: offset of the `dom0_vga_console_info` within the
    /// start-info page, and its size (both 0: no VGA console info).
    pub fn dom0(info_off: u32, info_size: u32) -> Self {
        Self {
            mfn: u64::from(info_off) | (u64::from(info_size) << 32),
            evtchn: 0,
            _pad0: 0,
        }
    }
    /// `dom0.info_off`.
    pub fn info_off(&self) -> u32 {
        self.mfn as u32
    }
    /// `dom0.info_size`.
    pub fn info_size(&self) -> u32 {
        (self.mfn >> 32) as u32
    }
}

pod_struct! {
    /// `struct start_info` (64-bit guest): what the domain builder hands a
    /// PV guest in `%rsi`. 32-bit: [`super::x86_32::StartInfo32`].
    pub struct StartInfo {
        /// `"xen-<version>-<platform>"`, e.g. `"xen-3.0-x86_64"`.
        pub magic: [u8; 32],
        /// Total pages allocated to this domain.
        pub nr_pages: u64,
        /// MACHINE address of the shared info page.
        pub shared_info: u64,
        /// `SIF_*`.
        pub flags: u32,
        pub _pad0: u32,
        /// MACHINE frame of the xenstore page.
        pub store_mfn: u64,
        /// Event channel for xenstore.
        pub store_evtchn: u32,
        pub _pad1: u32,
        pub console: StartInfoConsole,
        /// VIRTUAL address of the top-level page table.
        pub pt_base: u64,
        /// Number of bootstrap page-table frames.
        pub nr_pt_frames: u64,
        /// VIRTUAL address of the page-frame list (P2M).
        pub mfn_list: u64,
        /// VIRTUAL address (or PFN with `SIF_MOD_START_PFN`) of the module.
        pub mod_start: u64,
        /// Size in bytes of the module.
        pub mod_len: u64,
        /// NUL-terminated command line.
        pub cmd_line: [u8; MAX_GUEST_CMDLINE],
        /// First PFN of the initial P->M table (page-table frames included).
        pub first_p2m_pfn: u64,
        /// Number of PFNs of the initial P->M table.
        pub nr_p2m_frames: u64,
    }
}
layout!(StartInfo, 1168; magic @ 0, nr_pages @ 32, shared_info @ 40, flags @ 48,
        store_mfn @ 56, store_evtchn @ 64, console @ 72, console.evtchn @ 80,
        pt_base @ 88, nr_pt_frames @ 96, mfn_list @ 104, mod_start @ 112, mod_len @ 120,
        cmd_line @ 128, first_p2m_pfn @ 1152, nr_p2m_frames @ 1160);

pod_struct! {
    /// `struct xen_multiboot_mod_list`: one descriptor of a multiboot
    /// module package (`SIF_MULTIBOOT_MOD`); a zero `mod_start` ends the
    /// array. Addresses are relative to the start of the package.
    pub struct XenMultibootModList {
        pub mod_start: u32,
        /// Address of the last byte (inclusive).
        pub mod_end: u32,
        /// Address of a NUL-terminated command line.
        pub cmdline: u32,
        pub pad: u32,
    }
}
layout!(XenMultibootModList, 16);

// ---------------------------------------------------------------------------
// arch-x86/xen.h: GDT reservation, trap_info, vcpu_guest_context flags.
// ---------------------------------------------------------------------------

/// Xen reserves GDT entries from this page on (entries 0xe000/8 = 3584..).
pub const FIRST_RESERVED_GDT_PAGE: usize = 14;
pub const FIRST_RESERVED_GDT_BYTE: usize = FIRST_RESERVED_GDT_PAGE * 4096;
pub const FIRST_RESERVED_GDT_ENTRY: usize = FIRST_RESERVED_GDT_BYTE / 8;

/// `trap_info.flags` bits 0-1: the privilege level allowed to raise the
/// vector with `int n` (64-bit: 0 = nobody, 1-2 = kernel, 3 = everyone).
pub const TI_DPL_MASK: u8 = 3;
/// `trap_info.flags` bit 2: mask events (like an interrupt gate clears IF).
pub const TI_IF: u8 = 4;

pod_struct! {
    /// `struct trap_info` (64-bit guest): one virtual IDT entry passed to
    /// `HYPERVISOR_set_trap_table`; an entry with `address == 0` ends the
    /// list. 32-bit: [`super::x86_32::TrapInfo32`].
    pub struct TrapInfo {
        /// Exception vector.
        pub vector: u8,
        /// Bits 0-1: DPL; bit 2: disable events on entry.
        pub flags: u8,
        /// Code selector.
        pub cs: u16,
        pub _pad0: u32,
        /// Code offset.
        pub address: u64,
    }
}
layout!(TrapInfo, 16; vector @ 0, flags @ 1, cs @ 2, address @ 8);

impl TrapInfo {
    /// `TI_GET_DPL`.
    pub fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// `TI_GET_IF`: whether entering the handler masks events.
    pub fn masks_events(&self) -> bool {
        self.flags & TI_IF != 0
    }
}

/// `vcpu_guest_context.flags`: `fpu_ctxt` is valid.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// `vcpu_guest_context.flags`: the vCPU is in (guest) kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `vcpu_guest_context.flags`: the failsafe callback masks events.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// `vcpu_guest_context.flags`: the syscall callback masks events.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// `vcpu_guest_context.flags`: the vCPU is online.
pub const VGCF_ONLINE: u64 = 1 << 5;

/// `XEN_EMULATE_PREFIX`: `ud2a; .ascii "xen"`, followed by an instruction
/// the guest wants emulated (only `cpuid`).
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];
/// `XEN_CPUID`: the forced-emulation prefix and `cpuid`.
pub const XEN_CPUID: [u8; 7] = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_names() {
        assert_eq!(hypercall_name(0), "set_trap_table");
        assert_eq!(hypercall_name(u64::from(HYPERVISOR_IRET)), "iret");
        assert_eq!(hypercall_name(u64::from(HYPERVISOR_SCHED_OP)), "sched_op");
        assert_eq!(
            hypercall_name(u64::from(HYPERVISOR_CALLBACK_OP)),
            "callback_op"
        );
        assert_eq!(hypercall_name(u64::from(HYPERVISOR_HYPFS_OP)), "hypfs_op");
        assert_eq!(hypercall_name(11), "unknown");
        assert_eq!(hypercall_name(56), "unknown");
        assert_eq!(hypercall_name(u64::MAX), "unknown");
    }

    #[test]
    fn trap_info_flags() {
        let t = TrapInfo {
            vector: 0x80,
            flags: 3 | TI_IF,
            cs: 0xe033,
            _pad0: 0,
            address: 1,
        };
        assert_eq!(t.dpl(), 3);
        assert!(t.masks_events());
    }

    #[test]
    fn dom0_console_view() {
        let c = StartInfoConsole::dom0(0x100, 0x28);
        assert_eq!((c.info_off(), c.info_size()), (0x100, 0x28));
        // In C the dom0 view overlays the first 8 bytes of the domU view.
        let b = crate::as_bytes(&c);
        assert_eq!(&b[0..4], &0x100u32.to_le_bytes());
        assert_eq!(&b[4..8], &0x28u32.to_le_bytes());
    }
}
