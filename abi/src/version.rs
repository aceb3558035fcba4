//! `xen/include/public/version.h` and `features.h`:
//! `HYPERVISOR_xen_version(cmd, arg)` and the `XENFEAT_*` bits.
//!
//! All commands return 0 on success except `XENVER_version` (major:minor
//! as 16:16), `XENVER_pagesize`, and the `*2`/`build_id` ones (bytes
//! written, or the size needed when `arg` is NULL).

use super::{layout, pod_struct};

/// `arg` = NULL; returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// `arg` = [`XenExtraversion`].
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `arg` = [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// `arg` = [`XenCapabilitiesInfo`].
pub const XENVER_CAPABILITIES: u32 = 3;
/// `arg` = [`XenChangesetInfo`].
pub const XENVER_CHANGESET: u32 = 4;
/// `arg` = [`XenPlatformParameters`] (or `XenPlatformParameters32`).
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// `arg` = [`XenFeatureInfo`].
pub const XENVER_GET_FEATURES: u32 = 6;
/// `arg` = NULL; returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
/// `arg` = [`XenDomainHandle`].
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// `arg` = [`XenCommandline`].
pub const XENVER_COMMANDLINE: u32 = 9;
/// `arg` = [`XenVarbuf`] header + buffer.
pub const XENVER_BUILD_ID: u32 = 10;
/// Non-truncating variants taking a [`XenVarbuf`] (added after 4.17).
pub const XENVER_EXTRAVERSION2: u32 = 11;
pub const XENVER_CAPABILITIES2: u32 = 12;
pub const XENVER_CHANGESET2: u32 = 13;
pub const XENVER_COMMANDLINE2: u32 = 14;

/// `xen_extraversion_t`: e.g. `".0"`, NUL-padded.
pub type XenExtraversion = [u8; 16];
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `xen_capabilities_info_t`: space-separated, e.g. `"xen-3.0-x86_64
/// xen-3.0-x86_32p"`.
pub type XenCapabilitiesInfo = [u8; 1024];
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `xen_changeset_info_t`.
pub type XenChangesetInfo = [u8; 64];
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// `xen_commandline_t`.
pub type XenCommandline = [u8; 1024];
/// `xen_domain_handle_t`: the guest's UUID as the toolstack set it.
pub type XenDomainHandle = [u8; 16];

pod_struct! {
    /// `struct xen_compile_info` (both widths).
    pub struct XenCompileInfo {
        pub compiler: [u8; 64],
        pub compile_by: [u8; 16],
        pub compile_domain: [u8; 32],
        pub compile_date: [u8; 32],
    }
}
layout!(XenCompileInfo, 144; compile_by @ 64, compile_domain @ 80, compile_date @ 112);

pod_struct! {
    /// `struct xen_platform_parameters` (64-bit guest): where the
    /// hypervisor's part of the address space starts.
    pub struct XenPlatformParameters {
        pub virt_start: u64,
    }
}
layout!(XenPlatformParameters, 8);

pod_struct! {
    /// `struct xen_platform_parameters` (32-bit guest).
    pub struct XenPlatformParameters32 {
        pub virt_start: u32,
    }
}
layout!(XenPlatformParameters32, 4);

pod_struct! {
    /// `struct xen_feature_info` (both widths).
    pub struct XenFeatureInfo {
        /// IN: which 32-bit submap to return.
        pub submap_idx: u32,
        /// OUT: the submap (`1 << XENFEAT_x` set when supported).
        pub submap: u32,
    }
}
layout!(XenFeatureInfo, 8);

pod_struct! {
    /// `struct xen_varbuf` / `struct xen_build_id`: a length, followed in
    /// guest memory by that many bytes (a flexible array in C; only the
    /// fixed header is modelled).
    pub struct XenVarbuf {
        /// IN: size of the buffer that follows.
        pub len: u32,
    }
}
layout!(XenVarbuf, 4);

// ---------------------------------------------------------------------------
// features.h
// ---------------------------------------------------------------------------

/// The guest may write its page tables directly (Xen traps and emulates).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// The guest may write its descriptor tables directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The guest's page tables hold pseudo-physical frames (Xen translates).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directories may be above 4GB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is available.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// x86: `highmem_assist` (obsolete).
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant mappings have available PTE bits.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// HVM: callback vector for events.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// HVM: safe pvclock.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// HVM: PIRQs.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain is the initial domain (dom0).
pub const XENFEAT_DOM0: u32 = 11;
/// Grant maps are identity-mapped.
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENMEM_get_vnumainfo` is supported.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// ARM: SMCCC supported.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// x86 PVH: the RSDP may be anywhere.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// ARM: not direct-mapped.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// ARM: direct-mapped.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `VCPUOP_register_runstate_phys_area` exists (after 4.17).
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// `VCPUOP_register_vcpu_time_phys_area` exists (after 4.17).
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
/// Device model: all MSI-X writes forwarded (after 4.17).
pub const XENFEAT_DM_MSIX_ALL_WRITES: u32 = 20;
/// Number of 32-bit feature submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// Feature names as written in `XEN_ELFNOTE_FEATURES` (without `XENFEAT_`;
/// a leading `!` in the note marks a required feature), with their bits.
pub const XENFEAT_NAMES: [(&str, u32); 21] = [
    ("writable_page_tables", XENFEAT_WRITABLE_PAGE_TABLES),
    (
        "writable_descriptor_tables",
        XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
    ),
    ("auto_translated_physmap", XENFEAT_AUTO_TRANSLATED_PHYSMAP),
    ("supervisor_mode_kernel", XENFEAT_SUPERVISOR_MODE_KERNEL),
    ("pae_pgdir_above_4gb", XENFEAT_PAE_PGDIR_ABOVE_4GB),
    (
        "mmu_pt_update_preserve_ad",
        XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
    ),
    ("highmem_assist", XENFEAT_HIGHMEM_ASSIST),
    ("gnttab_map_avail_bits", XENFEAT_GNTTAB_MAP_AVAIL_BITS),
    ("hvm_callback_vector", XENFEAT_HVM_CALLBACK_VECTOR),
    ("hvm_safe_pvclock", XENFEAT_HVM_SAFE_PVCLOCK),
    ("hvm_pirqs", XENFEAT_HVM_PIRQS),
    ("dom0", XENFEAT_DOM0),
    ("grant_map_identity", XENFEAT_GRANT_MAP_IDENTITY),
    (
        "memory_op_vnode_supported",
        XENFEAT_MEMORY_OP_VNODE_SUPPORTED,
    ),
    ("ARM_SMCCC_supported", XENFEAT_ARM_SMCCC_SUPPORTED),
    ("linux_rsdp_unrestricted", XENFEAT_LINUX_RSDP_UNRESTRICTED),
    ("not_direct_mapped", XENFEAT_NOT_DIRECT_MAPPED),
    ("direct_mapped", XENFEAT_DIRECT_MAPPED),
    ("runstate_phys_area", XENFEAT_RUNSTATE_PHYS_AREA),
    ("vcpu_time_phys_area", XENFEAT_VCPU_TIME_PHYS_AREA),
    ("dm_msix_all_writes", XENFEAT_DM_MSIX_ALL_WRITES),
];

/// The `XENFEAT_*` bit for a feature name from the FEATURES note.
pub fn xenfeat_from_name(name: &str) -> Option<u32> {
    XENFEAT_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, bit)| bit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names() {
        assert_eq!(xenfeat_from_name("writable_page_tables"), Some(0));
        assert_eq!(xenfeat_from_name("dom0"), Some(XENFEAT_DOM0));
        assert_eq!(xenfeat_from_name("nonsense"), None);
        for (i, (_, bit)) in XENFEAT_NAMES.iter().enumerate() {
            assert_eq!(*bit as usize, i);
        }
    }
}
