//! `xen/include/public/platform.h` (`HYPERVISOR_platform_op`) and the
//! parts of `arch-x86/xen-mca.h` (`HYPERVISOR_mca`) a dom0 kernel uses at
//! boot. Both are for the control domain only (Xen's XSM_PRIV).

use super::{layout, pod_struct};

/// `xen_platform_op.interface_version` must be this (else `-EACCES`).
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;

pub const XENPF_SETTIME32: u32 = 17;
pub const XENPF_ADD_MEMTYPE: u32 = 31;
pub const XENPF_DEL_MEMTYPE: u32 = 32;
pub const XENPF_READ_MEMTYPE: u32 = 33;
pub const XENPF_MICROCODE_UPDATE: u32 = 35;
pub const XENPF_PLATFORM_QUIRK: u32 = 39;
pub const XENPF_GET_CPU_VERSION: u32 = 48;
pub const XENPF_EFI_RUNTIME_CALL: u32 = 49;
pub const XENPF_FIRMWARE_INFO: u32 = 50;
pub const XENPF_ENTER_ACPI_SLEEP: u32 = 51;
pub const XENPF_CHANGE_FREQ: u32 = 52;
pub const XENPF_GETIDLETIME: u32 = 53;
pub const XENPF_SET_PROCESSOR_PMINFO: u32 = 54;
pub const XENPF_GET_CPUINFO: u32 = 55;
pub const XENPF_CPU_ONLINE: u32 = 56;
pub const XENPF_CPU_OFFLINE: u32 = 57;
pub const XENPF_CPU_HOTADD: u32 = 58;
pub const XENPF_MEM_HOTADD: u32 = 59;
pub const XENPF_CORE_PARKING: u32 = 60;
pub const XENPF_RESOURCE_OP: u32 = 61;
pub const XENPF_SETTIME64: u32 = 62;
pub const XENPF_GET_SYMBOL: u32 = 63;

/// `xenpf_firmware_info.type`.
pub const XEN_FW_DISK_INFO: u32 = 1;
pub const XEN_FW_DISK_MBR_SIGNATURE: u32 = 2;
pub const XEN_FW_VBEDDC_INFO: u32 = 3;
pub const XEN_FW_EFI_INFO: u32 = 4;
pub const XEN_FW_KBD_SHIFT_FLAGS: u32 = 5;

/// `xenpf_platform_quirk.quirk_id`.
pub const QUIRK_NOIRQBALANCING: u32 = 1;
pub const QUIRK_IOAPIC_BAD_REGSEL: u32 = 2;
pub const QUIRK_IOAPIC_GOOD_REGSEL: u32 = 3;

/// `xenpf_set_processor_pminfo.type`.
pub const XEN_PM_CX: u32 = 0;
pub const XEN_PM_PX: u32 = 1;
pub const XEN_PM_TX: u32 = 2;
pub const XEN_PM_PDC: u32 = 3;

/// `xenpf_pcpuinfo.flags`.
pub const XEN_PCPU_FLAGS_ONLINE: u32 = 1;
pub const XEN_PCPU_FLAGS_INVALID: u32 = 2;

pod_struct! {
    /// `struct xen_platform_op` (the same in both widths): the command,
    /// the interface version, and a 128-byte union of the commands'
    /// arguments, 8-byte aligned.
    pub struct XenPlatformOp {
        pub cmd: u32,
        pub interface_version: u32,
        pub u: [u64; 16],
    }
}
layout!(XenPlatformOp, 136; cmd @ 0, interface_version @ 4, u @ 8);

pod_struct! {
    /// `struct xenpf_settime64` (`XENPF_settime32` has `secs` and `nsecs`
    /// as two u32 in the first word, `system_time` in the second).
    pub struct XenpfSettime64 {
        pub secs: u64,
        pub nsecs: u32,
        /// Must be zero (`-EINVAL`).
        pub mbz: u32,
        pub system_time: u64,
    }
}
layout!(XenpfSettime64, 24; secs @ 0, nsecs @ 8, mbz @ 12, system_time @ 16);

pod_struct! {
    /// `struct xenpf_pcpuinfo` (`XENPF_get_cpuinfo`).
    pub struct XenpfPcpuinfo {
        /// IN.
        pub xen_cpuid: u32,
        /// OUT: the highest present CPU.
        pub max_present: u32,
        pub flags: u32,
        pub apic_id: u32,
        pub acpi_id: u32,
    }
}
layout!(XenpfPcpuinfo, 20; flags @ 8, acpi_id @ 16);

pod_struct! {
    /// `struct xenpf_pcpu_version` (`XENPF_get_cpu_version`).
    pub struct XenpfPcpuVersion {
        pub xen_cpuid: u32,
        pub max_present: u32,
        pub vendor_id: [u8; 12],
        pub family: u32,
        pub model: u32,
        pub stepping: u32,
    }
}
layout!(XenpfPcpuVersion, 32; vendor_id @ 8, family @ 20, stepping @ 28);

/// `HYPERVISOR_mca`: `xen_mc.interface_version` must be this.
pub const XEN_MCA_INTERFACE_VERSION: u32 = 0x01ec_c003;
pub const XEN_MC_FETCH: u32 = 1;
pub const XEN_MC_NOTIFYDOMAIN: u32 = 2;
pub const XEN_MC_PHYSCPUINFO: u32 = 3;
pub const XEN_MC_MSRINJECT: u32 = 4;
pub const XEN_MC_MCEINJECT: u32 = 5;
pub const XEN_MC_INJECT_V2: u32 = 6;

pod_struct! {
    /// The head of `struct xen_mc` and its `xen_mc_physcpuinfo` arm: `{cmd,
    /// interface_version, union}`; `ncpus` (IN/OUT) and the `info` handle
    /// (8 bytes in both widths: `XEN_GUEST_HANDLE` of the 64-bit layout
    /// in arch-x86/xen-mca.h is a pointer, `uint64_aligned_t` there).
    pub struct XenMcPhyscpuinfo {
        pub cmd: u32,
        pub interface_version: u32,
        pub ncpus: u32,
        pub _pad0: u32,
        pub info: u64,
    }
}
layout!(XenMcPhyscpuinfo, 24; ncpus @ 8, info @ 16);
