//! `xen/include/public/physdev.h`: `HYPERVISOR_physdev_op(cmd, arg)`. For
//! a PV guest without devices the part that matters is the virtual I/O
//! privilege level (`set_iopl`) and I/O bitmap (`set_iobitmap`).

use super::{layout, pod_struct};

/// Legacy "PIRQ-bound event channels were unmasked": obsolete since
/// interface 0x00030202, unsupported by newer Xen.
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;
/// `arg` = `physdev_irq_status_query`.
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// `arg` = [`PhysdevSetIopl`].
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
/// `arg` = [`PhysdevSetIobitmap`] / [`PhysdevSetIobitmap32`].
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
pub const PHYSDEVOP_APIC_READ: u32 = 8;
pub const PHYSDEVOP_APIC_WRITE: u32 = 9;
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u32 = 10;
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u32 = 11;
pub const PHYSDEVOP_EOI: u32 = 12;
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
pub const PHYSDEVOP_MANAGE_PCI_ADD: u32 = 15;
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u32 = 16;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u32 = 17;
// 18 is unassigned.
pub const PHYSDEVOP_RESTORE_MSI: u32 = 19;
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u32 = 20;
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
// 22 is unassigned.
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
pub const PHYSDEVOP_RESTORE_MSI_EXT: u32 = 27;
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;
pub const PHYSDEVOP_DBGP_OP: u32 = 29;
pub const PHYSDEVOP_PREPARE_MSIX: u32 = 30;
pub const PHYSDEVOP_RELEASE_MSIX: u32 = 31;
pub const PHYSDEVOP_PCI_DEVICE_RESET: u32 = 32;

/// Xen's name for a `PHYSDEVOP_*`, for traces.
pub fn physdevop_name(cmd: u32) -> &'static str {
    match cmd {
        PHYSDEVOP_IRQ_UNMASK_NOTIFY => "IRQ_UNMASK_NOTIFY",
        PHYSDEVOP_IRQ_STATUS_QUERY => "irq_status_query",
        PHYSDEVOP_SET_IOPL => "set_iopl",
        PHYSDEVOP_SET_IOBITMAP => "set_iobitmap",
        PHYSDEVOP_APIC_READ => "apic_read",
        PHYSDEVOP_APIC_WRITE => "apic_write",
        PHYSDEVOP_ALLOC_IRQ_VECTOR => "alloc_irq_vector",
        PHYSDEVOP_FREE_IRQ_VECTOR => "free_irq_vector",
        PHYSDEVOP_EOI => "eoi",
        PHYSDEVOP_MAP_PIRQ => "map_pirq",
        PHYSDEVOP_UNMAP_PIRQ => "unmap_pirq",
        PHYSDEVOP_MANAGE_PCI_ADD => "manage_pci_add",
        PHYSDEVOP_MANAGE_PCI_REMOVE => "manage_pci_remove",
        PHYSDEVOP_PIRQ_EOI_GMFN_V1 => "pirq_eoi_gmfn_v1",
        PHYSDEVOP_RESTORE_MSI => "restore_msi",
        PHYSDEVOP_MANAGE_PCI_ADD_EXT => "manage_pci_add_ext",
        PHYSDEVOP_SETUP_GSI => "setup_gsi",
        PHYSDEVOP_GET_FREE_PIRQ => "get_free_pirq",
        PHYSDEVOP_PCI_MMCFG_RESERVED => "pci_mmcfg_reserved",
        PHYSDEVOP_PCI_DEVICE_ADD => "pci_device_add",
        PHYSDEVOP_PCI_DEVICE_REMOVE => "pci_device_remove",
        PHYSDEVOP_RESTORE_MSI_EXT => "restore_msi_ext",
        PHYSDEVOP_PIRQ_EOI_GMFN_V2 => "pirq_eoi_gmfn_v2",
        PHYSDEVOP_DBGP_OP => "dbgp_op",
        PHYSDEVOP_PREPARE_MSIX => "prepare_msix",
        PHYSDEVOP_RELEASE_MSIX => "release_msix",
        PHYSDEVOP_PCI_DEVICE_RESET => "pci_device_reset",
        _ => "unknown",
    }
}

pod_struct! {
    /// `struct physdev_set_iopl` (both widths): the current vCPU's virtual
    /// I/O privilege level.
    pub struct PhysdevSetIopl {
        /// IN: 0-3.
        pub iopl: u32,
    }
}
layout!(PhysdevSetIopl, 4);

pod_struct! {
    /// `struct physdev_set_iobitmap` (64-bit guest). With a non-zero
    /// `nr_ports` Xen always reads 2 bytes of the bitmap, like the TSS IOPB.
    pub struct PhysdevSetIobitmap {
        /// IN: guest handle to the bitmap.
        pub bitmap: u64,
        /// IN.
        pub nr_ports: u32,
        pub _pad0: u32,
    }
}
layout!(PhysdevSetIobitmap, 16; bitmap @ 0, nr_ports @ 8);

pod_struct! {
    /// `struct physdev_set_iobitmap` (32-bit guest).
    pub struct PhysdevSetIobitmap32 {
        pub bitmap: u32,
        pub nr_ports: u32,
    }
}
layout!(PhysdevSetIobitmap32, 8);

pod_struct! {
    /// `struct physdev_irq_status_query` (both widths).
    pub struct PhysdevIrqStatusQuery {
        /// IN.
        pub irq: u32,
        /// OUT: `XENIRQSTAT_*`.
        pub flags: u32,
    }
}
layout!(PhysdevIrqStatusQuery, 8);

/// `physdev_irq_status_query.flags`: call `PHYSDEVOP_eoi` when serviced.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// `physdev_irq_status_query.flags`: the IRQ is shared.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;
