//! `xen/include/public/memory.h`: `HYPERVISOR_memory_op(cmd, arg)` — the
//! subset a PV guest uses at boot (reservations, the memory map, where the
//! M2P is), plus the e820 entry the memory map is made of.
//!
//! Most `memory.h` structures contain `xen_ulong_t` or guest handles, so
//! 32-bit guests have their own layouts (Xen translates them, `!` in
//! `xlat.lst`).

use super::xen::DomId;
use super::{layout, pod_struct};

/// `arg` = reservation; OUT: MFN bases of the extents allocated.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `arg` = reservation; IN: GMFN bases of the extents to free.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `arg` = NULL; returns the highest machine frame of RAM (never fails).
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `arg` = [`XenMemoryDomain`]; returns the current reservation in pages.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `arg` = [`XenMemoryDomain`]; returns the maximum reservation in pages.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `arg` = `xen_machphys_mfn_list`: the MFNs of the M2P's 2 MB extents.
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// `arg` = reservation; populate GPFNs with memory.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
// 8 was XENMEM_translate_gpfn_list (removed).
/// `arg` = [`XenMemoryMap`]: the domain's pseudo-physical e820 map.
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `arg` = [`XenMemoryMap`]: the machine e820 map (privileged).
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
pub const XENMEM_EXCHANGE: u32 = 11;
/// `arg` = [`XenMachphysMapping`]: where the M2P is mapped.
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// `arg` = [`XenMemoryDomain`]; returns the highest GFN in use.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
pub const XENMEM_SET_POD_TARGET: u32 = 16;
pub const XENMEM_GET_POD_TARGET: u32 = 17;
pub const XENMEM_GET_SHARING_FREED_PAGES: u32 = 18;
pub const XENMEM_GET_SHARING_SHARED_PAGES: u32 = 19;
pub const XENMEM_PAGING_OP: u32 = 20;
pub const XENMEM_ACCESS_OP: u32 = 21;
pub const XENMEM_SHARING_OP: u32 = 22;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
pub const XENMEM_CLAIM_PAGES: u32 = 24;
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// The command is in bits 0-5 of `cmd`; the rest (`cmd >> 6`) is a
/// continuation start extent (`MEMOP_EXTENT_SHIFT`, `xen/include/xen/hypercall.h`
/// — Xen-internal, but visible in the guest's `cmd` after a preemption).
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
pub const MEMOP_CMD_MASK: u32 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// Xen's name for a `XENMEM_*` command (low 6 bits), for traces.
pub fn xenmem_name(cmd: u32) -> &'static str {
    match cmd & MEMOP_CMD_MASK {
        XENMEM_INCREASE_RESERVATION => "increase_reservation",
        XENMEM_DECREASE_RESERVATION => "decrease_reservation",
        XENMEM_MAXIMUM_RAM_PAGE => "maximum_ram_page",
        XENMEM_CURRENT_RESERVATION => "current_reservation",
        XENMEM_MAXIMUM_RESERVATION => "maximum_reservation",
        XENMEM_MACHPHYS_MFN_LIST => "machphys_mfn_list",
        XENMEM_POPULATE_PHYSMAP => "populate_physmap",
        XENMEM_ADD_TO_PHYSMAP => "add_to_physmap",
        XENMEM_MEMORY_MAP => "memory_map",
        XENMEM_MACHINE_MEMORY_MAP => "machine_memory_map",
        XENMEM_EXCHANGE => "exchange",
        XENMEM_MACHPHYS_MAPPING => "machphys_mapping",
        XENMEM_SET_MEMORY_MAP => "set_memory_map",
        XENMEM_MAXIMUM_GPFN => "maximum_gpfn",
        XENMEM_REMOVE_FROM_PHYSMAP => "remove_from_physmap",
        XENMEM_SET_POD_TARGET => "set_pod_target",
        XENMEM_GET_POD_TARGET => "get_pod_target",
        XENMEM_GET_SHARING_FREED_PAGES => "get_sharing_freed_pages",
        XENMEM_GET_SHARING_SHARED_PAGES => "get_sharing_shared_pages",
        XENMEM_PAGING_OP => "paging_op",
        XENMEM_ACCESS_OP => "access_op",
        XENMEM_SHARING_OP => "sharing_op",
        XENMEM_ADD_TO_PHYSMAP_BATCH => "add_to_physmap_batch",
        XENMEM_CLAIM_PAGES => "claim_pages",
        XENMEM_MACHPHYS_COMPAT_MFN_LIST => "machphys_compat_mfn_list",
        XENMEM_GET_VNUMAINFO => "get_vnumainfo",
        XENMEM_RESERVED_DEVICE_MEMORY_MAP => "reserved_device_memory_map",
        XENMEM_ACQUIRE_RESOURCE => "acquire_resource",
        _ => "unknown",
    }
}

/// `mem_flags`: bits 0-7 are the maximum address width of the extents.
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits
}
pub const fn xenmemf_get_address_bits(flags: u32) -> u32 {
    flags & 0xff
}
/// `mem_flags`: NUMA node + 1 in bits 8-15.
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}
pub const fn xenmemf_get_node(flags: u32) -> u32 {
    ((flags >> 8).wrapping_sub(1)) & 0xff
}
/// `mem_flags`: populate on demand.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `mem_flags`: the node request is strict.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `mem_flags`: the node is a virtual node.
pub const XENMEMF_VNODE: u32 = 1 << 18;

pod_struct! {
    /// `struct xen_memory_reservation` (64-bit guest).
    pub struct XenMemoryReservation {
        /// Guest handle: array of `xen_pfn_t` (see each command).
        pub extent_start: u64,
        /// Number of extents.
        pub nr_extents: u64,
        /// Each extent is `2^extent_order` pages.
        pub extent_order: u32,
        /// `XENMEMF_*`.
        pub mem_flags: u32,
        /// Only `DOMID_SELF` for unprivileged domains.
        pub domid: DomId,
        pub _pad0: [u16; 3],
    }
}
layout!(XenMemoryReservation, 32; extent_start @ 0, nr_extents @ 8, extent_order @ 16,
        mem_flags @ 20, domid @ 24);

pod_struct! {
    /// `struct xen_memory_reservation` (32-bit guest).
    pub struct XenMemoryReservation32 {
        pub extent_start: u32,
        pub nr_extents: u32,
        pub extent_order: u32,
        pub mem_flags: u32,
        pub domid: DomId,
        pub _pad0: u16,
    }
}
layout!(XenMemoryReservation32, 20; extent_start @ 0, nr_extents @ 4, extent_order @ 8,
        mem_flags @ 12, domid @ 16);

pod_struct! {
    /// `struct xen_memory_exchange` (64-bit guest): `in` extents given
    /// back for `out` extents; `nr_exchanged` is how far it got (in and
    /// out).
    pub struct XenMemoryExchange {
        pub in_: XenMemoryReservation,
        pub out: XenMemoryReservation,
        pub nr_exchanged: u64,
    }
}
layout!(XenMemoryExchange, 72; out @ 32, nr_exchanged @ 64);

pod_struct! {
    /// `struct xen_memory_exchange` (32-bit guest).
    pub struct XenMemoryExchange32 {
        pub in_: XenMemoryReservation32,
        pub out: XenMemoryReservation32,
        pub nr_exchanged: u32,
    }
}
layout!(XenMemoryExchange32, 44; out @ 20, nr_exchanged @ 40);

pod_struct! {
    /// `struct xen_memory_domain` (both widths).
    pub struct XenMemoryDomain {
        pub domid: DomId,
    }
}
layout!(XenMemoryDomain, 2);

pod_struct! {
    /// `struct xen_memory_map` (64-bit guest).
    pub struct XenMemoryMap {
        /// IN: capacity of `buffer` in entries; OUT: entries stored.
        pub nr_entries: u32,
        pub _pad0: u32,
        /// Guest handle: array of [`E820Entry`].
        pub buffer: u64,
    }
}
layout!(XenMemoryMap, 16; nr_entries @ 0, buffer @ 8);

pod_struct! {
    /// `struct xen_memory_map` (32-bit guest).
    pub struct XenMemoryMap32 {
        pub nr_entries: u32,
        pub buffer: u32,
    }
}
layout!(XenMemoryMap32, 8);

pod_struct! {
    /// `struct xen_machphys_mapping` (64-bit guest).
    pub struct XenMachphysMapping {
        /// Start and end virtual addresses of the M2P.
        pub v_start: u64,
        pub v_end: u64,
        /// Highest MFN that can be looked up.
        pub max_mfn: u64,
    }
}
layout!(XenMachphysMapping, 24);

pod_struct! {
    /// `struct xen_machphys_mapping` (32-bit guest).
    pub struct XenMachphysMapping32 {
        pub v_start: u32,
        pub v_end: u32,
        pub max_mfn: u32,
    }
}
layout!(XenMachphysMapping32, 12);

pod_struct! {
    /// `struct xen_machphys_mfn_list` (64-bit guest).
    pub struct XenMachphysMfnList {
        /// IN: size of `extent_start`.
        pub max_extents: u32,
        pub _pad0: u32,
        /// Guest handle: array of `xen_pfn_t`.
        pub extent_start: u64,
        /// OUT: extents written.
        pub nr_extents: u32,
        pub _pad1: u32,
    }
}
layout!(XenMachphysMfnList, 24; max_extents @ 0, extent_start @ 8, nr_extents @ 16);

pod_struct! {
    /// `struct xen_machphys_mfn_list` (32-bit guest).
    pub struct XenMachphysMfnList32 {
        pub max_extents: u32,
        pub extent_start: u32,
        pub nr_extents: u32,
    }
}
layout!(XenMachphysMfnList32, 12);

// ---------------------------------------------------------------------------
// e820 (not a Xen public structure: "the same format as returned by the
// BIOS INT 0x15 EAX=0xE820 call").
// ---------------------------------------------------------------------------

/// Usable RAM.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;
pub const E820_NVS: u32 = 4;
pub const E820_UNUSABLE: u32 = 5;

pod_struct! {
    /// One BIOS e820 entry, as `XENMEM_memory_map` returns them: 20 bytes,
    /// packed (Xen's and Linux's `struct e820entry` are `__packed`).
    #[repr(packed)]
    pub struct E820Entry {
        pub addr: u64,
        pub size: u64,
        /// `E820_*`.
        pub type_: u32,
    }
}
layout!(E820Entry, 20; addr @ 0, size @ 8, type_ @ 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_flags() {
        assert_eq!(xenmemf_get_node(xenmemf_node(3)), 3);
        assert_eq!(
            xenmemf_get_address_bits(xenmemf_address_bits(32) | xenmemf_node(1)),
            32
        );
    }

    #[test]
    fn cmd_names() {
        assert_eq!(xenmem_name(XENMEM_MEMORY_MAP), "memory_map");
        assert_eq!(
            xenmem_name(XENMEM_POPULATE_PHYSMAP | (5 << MEMOP_EXTENT_SHIFT)),
            "populate_physmap"
        );
    }
}
