//! `xen/include/public/grant_table.h`: `HYPERVISOR_grant_table_op(cmd,
//! args, count)`, grant entries v1 and v2, and the operations ringvisor
//! implements. Layouts are the native (64-bit) ones; the 32-bit ones that
//! differ carry a `32` suffix (a guest handle is 4 bytes there).

use super::{layout, pod_struct};

pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
pub const GNTTABOP_TRANSFER: u32 = 4;
pub const GNTTABOP_COPY: u32 = 5;
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
pub const GNTTABOP_SET_VERSION: u32 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
pub const GNTTABOP_GET_VERSION: u32 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// Grant entry flags (`GTF_*`): the type in the low two bits, then
/// permissions and, in a v1 entry, the status bits Xen sets.
pub const GTF_INVALID: u16 = 0;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
pub const GTF_TRANSITIVE: u16 = 3;
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_READONLY: u16 = 1 << 2;
pub const GTF_READING: u16 = 1 << 3;
pub const GTF_WRITING: u16 = 1 << 4;
pub const GTF_SUB_PAGE: u16 = 1 << 8;

/// `GNTMAP_*` flags of a map request.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// `GNTST_*`: the status an operation leaves in its struct.
pub const GNTST_OKAY: i16 = 0;
pub const GNTST_GENERAL_ERROR: i16 = -1;
pub const GNTST_BAD_DOMAIN: i16 = -2;
pub const GNTST_BAD_GNTREF: i16 = -3;
pub const GNTST_BAD_HANDLE: i16 = -4;
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
pub const GNTST_PERMISSION_DENIED: i16 = -8;
pub const GNTST_BAD_PAGE: i16 = -9;
pub const GNTST_BAD_COPY_ARG: i16 = -10;
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
pub const GNTST_EAGAIN: i16 = -12;
pub const GNTST_NO_SPACE: i16 = -13;

/// Entries a grant frame holds: 8-byte v1 entries, 16-byte v2 entries,
/// 2-byte v2 status words.
pub const V1_PER_FRAME: usize = 4096 / 8;
pub const V2_PER_FRAME: usize = 4096 / 16;
pub const STATUS_PER_FRAME: usize = 4096 / 2;

pod_struct! {
    /// `grant_entry_v1_t`.
    pub struct GrantEntryV1 {
        pub flags: u16,
        pub domid: u16,
        pub frame: u32,
    }
}
layout!(GrantEntryV1, 8; flags @ 0, domid @ 2, frame @ 4);

pod_struct! {
    /// `grant_entry_v2_t` as a full-page grant (`full_page`: the header,
    /// padding, the frame).
    pub struct GrantEntryV2 {
        pub flags: u16,
        pub domid: u16,
        pub _pad0: u32,
        pub frame: u64,
    }
}
layout!(GrantEntryV2, 16; flags @ 0, domid @ 2, frame @ 8);

pod_struct! {
    /// `struct gnttab_map_grant_ref` (the same for both widths).
    pub struct GnttabMapGrantRef {
        pub host_addr: u64,
        pub flags: u32,
        pub ref_: u32,
        pub dom: u16,
        pub status: i16,
        pub handle: u32,
        pub dev_bus_addr: u64,
    }
}
layout!(GnttabMapGrantRef, 32; host_addr @ 0, flags @ 8, ref_ @ 12, dom @ 16, status @ 18, handle @ 20, dev_bus_addr @ 24);

pod_struct! {
    /// `struct gnttab_unmap_grant_ref` (the same for both widths).
    pub struct GnttabUnmapGrantRef {
        pub host_addr: u64,
        pub dev_bus_addr: u64,
        pub handle: u32,
        pub status: i16,
        pub _pad0: u16,
    }
}
layout!(GnttabUnmapGrantRef, 24; host_addr @ 0, dev_bus_addr @ 8, handle @ 16, status @ 20);

pod_struct! {
    /// `struct gnttab_unmap_and_replace` (the same for both widths).
    pub struct GnttabUnmapAndReplace {
        pub host_addr: u64,
        pub new_addr: u64,
        pub handle: u32,
        pub status: i16,
        pub _pad0: u16,
    }
}
layout!(GnttabUnmapAndReplace, 24; host_addr @ 0, new_addr @ 8, handle @ 16, status @ 20);

pod_struct! {
    /// `struct gnttab_setup_table` (64-bit: `frame_list` an 8-byte handle
    /// to 8-byte `xen_pfn_t`s).
    pub struct GnttabSetupTable {
        pub dom: u16,
        pub _pad0: u16,
        pub nr_frames: u32,
        pub status: i16,
        pub _pad1: [u16; 3],
        pub frame_list: u64,
    }
}
layout!(GnttabSetupTable, 24; dom @ 0, nr_frames @ 4, status @ 8, frame_list @ 16);

pod_struct! {
    /// `struct gnttab_setup_table` (32-bit: a 4-byte handle to 4-byte
    /// frame numbers).
    pub struct GnttabSetupTable32 {
        pub dom: u16,
        pub _pad0: u16,
        pub nr_frames: u32,
        pub status: i16,
        pub _pad1: u16,
        pub frame_list: u32,
    }
}
layout!(GnttabSetupTable32, 16; dom @ 0, nr_frames @ 4, status @ 8, frame_list @ 12);

pod_struct! {
    /// `struct gnttab_query_size` (both widths).
    pub struct GnttabQuerySize {
        pub dom: u16,
        pub _pad0: u16,
        pub nr_frames: u32,
        pub max_nr_frames: u32,
        pub status: i16,
        pub _pad1: u16,
    }
}
layout!(GnttabQuerySize, 16; dom @ 0, nr_frames @ 4, max_nr_frames @ 8, status @ 12);

pod_struct! {
    /// `struct gnttab_set_version` (both widths): in, and out the version
    /// in force.
    pub struct GnttabSetVersion {
        pub version: u32,
    }
}
layout!(GnttabSetVersion, 4);

pod_struct! {
    /// `struct gnttab_get_version` (both widths).
    pub struct GnttabGetVersion {
        pub dom: u16,
        pub _pad0: u16,
        pub version: u32,
    }
}
layout!(GnttabGetVersion, 8; dom @ 0, version @ 4);

pod_struct! {
    /// `struct gnttab_get_status_frames` (64-bit: an 8-byte handle to
    /// 8-byte frame numbers).
    pub struct GnttabGetStatusFrames {
        pub nr_frames: u32,
        pub dom: u16,
        pub status: i16,
        pub frame_list: u64,
    }
}
layout!(GnttabGetStatusFrames, 16; nr_frames @ 0, dom @ 4, status @ 6, frame_list @ 8);

pod_struct! {
    /// `struct gnttab_get_status_frames` (32-bit; the frame numbers are
    /// `uint64_t` in both widths).
    pub struct GnttabGetStatusFrames32 {
        pub nr_frames: u32,
        pub dom: u16,
        pub status: i16,
        pub frame_list: u32,
    }
}
layout!(GnttabGetStatusFrames32, 12; nr_frames @ 0, dom @ 4, status @ 6, frame_list @ 8);
