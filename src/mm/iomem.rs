//! I/O memory: machine frames that are not RAM, and which of them the
//! initial domain may map (Xen: `arch_init_memory` gives them to `dom_io`,
//! `dom0_setup_permissions` sets the hardware domain's `iomem_caps`, and
//! `get_page_from_l1e` checks both).
//!
//! Xen's rules, as ringvisor applies them:
//!
//! - **I/O frames**: the first MiB (all of it, RAM or not: "historically
//!   marked as I/O": BIOS data, EBDA, VGA, option ROMs, the BIOS at
//!   0xF0000 that Linux's DMI scan reads) and every frame the e820 map
//!   does not list as RAM or unusable (reserved, ACPI tables and NVS,
//!   holes), as far as the physical address width reaches.
//! - **Who may map them**: a domain with I/O memory capabilities, which is
//!   the initial domain only (`SIF_INITDOMAIN`); it gets every I/O frame
//!   but the local APIC, the I/O APICs, the MSI range (0xFEE00000-
//!   0xFEEFFFFF) and, on AMD, the HyperTransport range below 1 TiB. Any
//!   other domain: `-EPERM` ("non-privileged attempt to map MMIO space").
//! - **RAM is never I/O** above the first MiB: a frame of RAM that is not
//!   the domain's own (the hypervisor's image, heap, M2P, free frames,
//!   other domains' frames) stays refused to every domain, the initial one
//!   included.
//!
//! Where ringvisor is stricter than Xen, because the hypervisor itself is
//! at stake (docs/abi.md):
//!
//! - the I/O APIC range is the chipset's whole 0xFEC00000-0xFECFFFFF
//!   (Xen denies the pages of the I/O APICs its MP/MADT tables name;
//!   ringvisor does not read those tables);
//! - the HPET's architectural page 0xFED00000 is mapped read-only (Xen's
//!   default `ro_hpet` does the same to the HPET its ACPI table names);
//! - a frame holding a boot module (a guest image the hypervisor still
//!   reads) is never I/O, wherever the loader put it;
//! - the first MiB holds nothing of ringvisor's after boot but the
//!   application processors' real-mode trampoline and its page tables
//!   (`arch::x86_64::smp`), which no domain may map; the frame pool never
//!   hands the first MiB out and boot information is copied, so
//!   elsewhere there Xen's rule is kept as it is.

use alloc::vec::Vec;

/// e820 types (`xen/include/public/arch-x86/xen.h` / ACPI).
const E820_RAM: u32 = 1;
const E820_UNUSABLE: u32 = 5;

/// Frames below this are I/O whatever the e820 says (Xen: 0x100).
const LOW_IO_FRAMES: u64 = 0x100;

/// A frame range `[first, last]`, inclusive (as Xen's rangesets).
type Range = (u64, u64);

/// What decides the answers: the machine's memory map and the frames the
/// initial domain is denied. Built once at boot (`init`).
pub struct Policy {
    /// `(start, size, e820 type)` as the loader gave them.
    map: Vec<(u64, u64, u32)>,
    /// Frames that are never I/O (boot modules).
    never_io: Vec<Range>,
    /// Frames the initial domain may not map (Xen: iomem_deny_access).
    denied: Vec<Range>,
    /// Frames mapped read-only only (Xen: mmio_ro_ranges).
    read_only: Vec<Range>,
    /// One past the last frame the physical address width reaches.
    end: u64,
}

/// How an I/O frame may be mapped by the initial domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Not I/O memory: RAM, the ownership rules apply.
    NotIo,
    /// I/O memory the domain may not map.
    Denied,
    /// I/O memory, read and write.
    ReadWrite,
    /// I/O memory, read-only: a writable mapping is made read-only.
    ReadOnly,
}

fn contains(ranges: &[Range], mfn: u64) -> bool {
    ranges.iter().any(|&(a, b)| a <= mfn && mfn <= b)
}

impl Policy {
    /// `map`: the e820 map; `modules`: the boot modules' byte ranges;
    /// `lapic`: the local APIC's physical address; `amd_family`: the CPU
    /// family on AMD/Hygon (None elsewhere); `phys_bits`: the physical
    /// address width.
    pub fn new(
        map: &[(u64, u64, u32)],
        modules: &[(u64, u64)],
        lapic: u64,
        amd_family: Option<u8>,
        phys_bits: u32,
    ) -> Policy {
        let frames = |start: u64, end: u64| (start >> 12, end.saturating_sub(1) >> 12);
        let never_io = modules
            .iter()
            .filter(|(s, e)| e > s)
            .map(|&(s, e)| frames(s, e))
            .collect();
        let end = 1u64 << (phys_bits.clamp(32, 52) - 12);
        let mut denied = alloc::vec![
            (lapic >> 12, lapic >> 12),
            // The MSI range (Xen: MSI_ADDR_BASE_LO .. + MSI_ADDR_DEST_ID_MASK).
            (0xfee00, 0xfeeff),
            // Every I/O APIC of the chipset (stricter than Xen, see above).
            (0xfec00, 0xfecff),
        ];
        if let Some(family) = amd_family {
            // HyperTransport (Xen: the 12 GiB below 1 TiB, or below the
            // physical address width from family 0x17 on).
            let top = if family < 0x17 {
                1u64 << (40 - 12)
            } else {
                end
            };
            denied.push((top - (3 << 20), top - 1));
        }
        Policy {
            map: map.to_vec(),
            never_io,
            denied,
            read_only: alloc::vec![(0xfed00, 0xfed00)],
            end,
        }
    }

    /// Deny the initial domain the frames of bytes `[start, end)` too
    /// (the hypervisor's own memory in the first MiB).
    pub fn deny(mut self, start: u64, end: u64) -> Policy {
        if end > start {
            self.denied.push((start >> 12, (end - 1) >> 12));
        }
        self
    }

    /// Is `mfn` I/O memory (Xen: owned by `dom_io`, or past the frame
    /// table)? A frame even partly RAM above the first MiB is not.
    pub fn is_io(&self, mfn: u64) -> bool {
        if mfn >= self.end || contains(&self.never_io, mfn) {
            return false;
        }
        if mfn < LOW_IO_FRAMES {
            return true;
        }
        let (lo, hi) = (mfn << 12, (mfn << 12) + 4096);
        !self.map.iter().any(|&(s, size, t)| {
            (t == E820_RAM || t == E820_UNUSABLE) && s < hi && s.saturating_add(size) > lo
        })
    }

    /// How the initial domain may map `mfn`.
    pub fn dom0_access(&self, mfn: u64) -> Access {
        if !self.is_io(mfn) {
            Access::NotIo
        } else if contains(&self.denied, mfn) {
            Access::Denied
        } else if contains(&self.read_only, mfn) {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        }
    }

    /// Is `mfn` past the physical address width (no such frame at all)?
    pub fn beyond(&self, mfn: u64) -> bool {
        mfn >= self.end
    }
}

#[cfg(target_os = "none")]
static POLICY: spin::Once<Policy> = spin::Once::new();

/// Record the policy at boot, before the first domain is built.
#[cfg(target_os = "none")]
pub fn init(p: Policy) {
    POLICY.call_once(|| p);
}

/// The policy (before `init`: nothing is I/O).
#[cfg(target_os = "none")]
pub fn policy() -> Option<&'static Policy> {
    POLICY.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's e820 with 1 GiB, as ringvisor sees it.
    fn qemu() -> Policy {
        let map = [
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (0x100000, 0x3fee0000, 1),
            (0x3ffe0000, 0x20000, 2),
            (0xfffc0000, 0x40000, 2),
            (0xfd_0000_0000, 0x3_0000_0000, 2),
        ];
        Policy::new(&map, &[(0x400000, 0x500000)], 0xfee00000, Some(0xf), 48)
    }

    #[test]
    fn low_mib_is_io_ram_above_is_not() {
        let p = qemu();
        assert!(p.is_io(0) && p.is_io(0x9e) && p.is_io(0x9f) && p.is_io(0xf0) && p.is_io(0xff));
        assert!(!p.is_io(0x100) && !p.is_io(0x3ffdf), "RAM above 1 MiB");
        assert!(p.is_io(0x3ffe0) && p.is_io(0x3ffff), "ACPI (reserved)");
        assert!(p.is_io(0x40000) && p.is_io(0xfebff), "a hole");
        assert!(
            !p.is_io(0x400) && !p.is_io(0x4ff),
            "a boot module is never I/O"
        );
        assert!(!p.is_io(1 << 36), "past 48 bits of physical address");
    }

    #[test]
    fn dom0_denials() {
        let p = qemu();
        assert_eq!(p.dom0_access(0xf0), Access::ReadWrite);
        assert_eq!(p.dom0_access(0x3ffe0), Access::ReadWrite);
        assert_eq!(p.dom0_access(0xfee00), Access::Denied, "local APIC");
        assert_eq!(p.dom0_access(0xfeeff), Access::Denied, "MSI range");
        assert_eq!(p.dom0_access(0xfec00), Access::Denied, "I/O APIC");
        assert_eq!(p.dom0_access(0xfed00), Access::ReadOnly, "HPET");
        assert_eq!(
            p.dom0_access(0xfd_0000_0000 >> 12),
            Access::Denied,
            "HyperTransport"
        );
        assert_eq!(
            p.dom0_access(0xff_ffff_ffff >> 12),
            Access::Denied,
            "HyperTransport"
        );
        assert_eq!(p.dom0_access(0x100), Access::NotIo);
        // The SMP trampoline's pages in the first MiB.
        let p = qemu().deny(0x9b000, 0x9f000);
        assert_eq!(p.dom0_access(0x9a), Access::ReadWrite);
        assert_eq!(p.dom0_access(0x9b), Access::Denied);
        assert_eq!(p.dom0_access(0x9e), Access::Denied);
        assert_eq!(p.dom0_access(0x9f), Access::ReadWrite);
    }

    #[test]
    fn partial_ram_frame_is_not_io() {
        let p = Policy::new(&[(0x100000, 0x1800, 1)], &[], 0xfee00000, None, 36);
        assert!(!p.is_io(0x101), "half RAM");
        assert!(p.is_io(0x102));
        assert!(!p.is_io(1 << 24) && p.beyond(1 << 24));
    }
}
