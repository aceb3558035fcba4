//! Where the parts of a PV domain's start of day go, in guest-virtual and
//! pseudo-physical space, as Xen's x86 PV domain builder places them
//! (`dom0_construct_pv` in `xen/arch/x86/pv/dom0_build.c`). Pure
//! arithmetic: [`super::builder`] does the copying and mapping.
//!
//! ```text
//! v_start = VIRT_BASE     pseudo-physical page 0 is mapped here, and every
//!                         page of the bootstrap region at v_start + pfn*4K
//! [virt_kstart, kend)     the kernel image (PT_LOAD segments)
//! vinitrd                 the initrd, when the kernel has no MOD_START_PFN
//!                         note (start_info.mod_start = this address)
//! vphysmap                the P2M list: one MFN per pseudo-physical page
//!                         (u64; u32 for a 32-bit guest), unless the kernel's
//!                         INIT_P2M note puts it elsewhere (below)
//! vstartinfo              start_info_t (rsi points here)
//! vconsole                the console ring (domains other than 0)
//! vpt                     the initial page tables, mapped read-only
//! vstack                  one page of boot stack (rsp = its top)
//! v_end                   rounded up to 4 MiB, at least 512 KiB past the
//!                         stack, all of it mapped
//! ```
//!
//! Past the bootstrap region, in pseudo-physical space only:
//!
//! - with `MOD_START_PFN` the initrd is not mapped: it starts at the first
//!   page after the power-of-two chunk Xen allocates for the bootstrap
//!   region (`get_order_from_bytes(v_end - v_start)`), `mod_start` is
//!   that PFN and `SIF_MOD_START_PFN` is set;
//! - with `INIT_P2M` the P2M list lives in the pages after that (after the
//!   chunk, or after the unmapped initrd) and is mapped at the note's
//!   address with page tables of its own, which follow the list pages:
//!   `first_p2m_pfn` / `nr_p2m_frames` name all of them, as Xen's
//!   `setup_pv_physmap` does (Xen maps with 1 GiB/2 MiB pages where it
//!   can; 4 KiB pages here, so there are more table frames).

use alloc::format;
use alloc::string::{String, ToString};

pub const PAGE: u64 = 4096;

/// What the layout depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// `VIRT_BASE`: where the bootstrap region starts.
    pub virt_base: u64,
    /// End of the kernel image (guest-virtual, exclusive).
    pub virt_kend: u64,
    /// Pages of the domain.
    pub nr_pages: u64,
    /// A console ring page (domains other than 0).
    pub console: bool,
    /// A 32-bit (PAE) guest: 4-byte P2M entries, no L4, below 4 GiB.
    pub compat: bool,
    /// Bytes of the initrd (0: none).
    pub initrd_len: u64,
    /// The kernel's `MOD_START_PFN` note is non-zero: the initrd is not
    /// mapped (libelf's `unmapped_initrd`).
    pub unmapped_initrd: bool,
    /// The kernel's `INIT_P2M` note (64-bit only).
    pub p2m_base: Option<u64>,
}

/// The P2M list outside the bootstrap region (`INIT_P2M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2mArea {
    /// Where it is mapped (`start_info.mfn_list`).
    pub va: u64,
    /// First pseudo-physical page of the list, then its tables.
    pub first_pfn: u64,
    /// Pages of the list itself.
    pub list_pages: u64,
    /// Page-table frames mapping it (L3s, L2s, L1s not shared with the
    /// bootstrap region's tables), right after the list.
    pub table_pages: u64,
}

impl P2mArea {
    /// `start_info.nr_p2m_frames`.
    pub fn frames(&self) -> u64 {
        self.list_pages + self.table_pages
    }
}

/// Where everything goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub v_start: u64,
    /// The initrd's first pseudo-physical page (mapped or not) and what
    /// `start_info.mod_start` says: its address when mapped, else its PFN.
    pub initrd_pfn: Option<u64>,
    pub mod_start: u64,
    /// The P2M list's address (`start_info.mfn_list`).
    pub vphysmap: u64,
    pub vstartinfo: u64,
    pub vconsole: Option<u64>,
    pub vpt: u64,
    pub nr_pt: u64,
    pub vstack_end: u64,
    pub v_end: u64,
    /// `INIT_P2M`: the list outside the bootstrap region.
    pub p2m: Option<P2mArea>,
    /// Pseudo-physical pages [0, laid_out_pages) hold everything placed:
    /// the bootstrap region, and past it (after the rest of its
    /// power-of-two chunk) an unmapped initrd and the `INIT_P2M` list.
    pub laid_out_pages: u64,
}

impl Layout {
    /// Pages of the bootstrap region, [v_start, v_end).
    #[cfg(test)]
    pub fn bootstrap_pages(&self) -> u64 {
        (self.v_end - self.v_start) / PAGE
    }
}

/// Page-table frames needed to map [start, end) with 4 KiB pages: an L4
/// and the L3s, L2s, L1s below it; for a 32-bit PAE guest its L3 (the
/// top) and the L2s and L1s, and the L2 of L3 slot 3 (the hypervisor's
/// slots are there) when the range does not reach it.
pub fn tables_needed(start: u64, end: u64, compat: bool) -> u64 {
    let span = |shift: u32| ((end - 1) >> shift) - (start >> shift) + 1;
    let slot3 = compat && (end - 1) >> 30 < 3;
    1 + if compat { 0 } else { span(39) } + span(30) + span(21) + slot3 as u64
}

/// Tables (L3, L2, L1) needed to map [start, end) with 4 KiB pages beyond
/// those that already map [have_start, have_end) under the same L4.
pub fn extra_tables(start: u64, end: u64, have_start: u64, have_end: u64) -> u64 {
    let mut n = 0;
    for shift in [39u32, 30, 21] {
        let (first, last) = (start >> shift, (end - 1) >> shift);
        let (hf, hl) = (have_start >> shift, (have_end - 1) >> shift);
        // Distinct table slots in [first, last] minus those in [hf, hl].
        let overlap = if hl < first || last < hf {
            0
        } else {
            last.min(hl) - first.max(hf) + 1
        };
        n += last - first + 1 - overlap;
    }
    n
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE)
}

// Tour 01: where the parts of the bootstrap region go
pub fn layout(i: &Input) -> Result<Layout, String> {
    let v_start = i.virt_base;
    if !v_start.is_multiple_of(PAGE) {
        return Err(format!("VIRT_BASE {v_start:#x} is not page aligned"));
    }
    // Every step checked: the ELF parser leaves the image's end to us, and
    // an image ending near 2^64 must be refused, not wrapped round to 0.
    let wraps = || "the bootstrap region wraps around the address space".to_string();
    let round = |x: u64| x.checked_next_multiple_of(PAGE).ok_or_else(wraps);
    let add = |a: u64, b: u64| a.checked_add(b).ok_or_else(wraps);
    let has_initrd = i.initrd_len > 0;
    let kend = round(i.virt_kend)?;
    // A mapped initrd comes right after the image (Xen: vinitrd_start).
    let (vinitrd, vphysmap) = if has_initrd && !i.unmapped_initrd {
        (Some(kend), round(add(kend, i.initrd_len)?)?)
    } else {
        (None, kend)
    };
    let entry_size = if i.compat { 4 } else { 8 };
    let p2m_bytes = i.nr_pages.checked_mul(entry_size).ok_or_else(wraps)?;
    // With INIT_P2M the list takes no room here (Xen: vphysmap_end =
    // vphysmap_start).
    let in_region = if i.p2m_base.is_some() { 0 } else { p2m_bytes };
    let vstartinfo = round(add(vphysmap, in_region)?)?;
    let vconsole = if i.console {
        Some(add(vstartinfo, PAGE)?)
    } else {
        None
    };
    let vpt = add(vstartinfo, PAGE + if i.console { PAGE } else { 0 })?;
    let mut nr_pt = 1;
    let (vstack_end, v_end) = loop {
        let vstack_end = add(vpt, nr_pt * PAGE + PAGE)?;
        let mut v_end = add(vstack_end, (4 << 20) - 1)? & !((4 << 20) - 1);
        if v_end - vstack_end < 512 << 10 {
            v_end = add(v_end, 4 << 20)?;
        }
        if v_end < v_start || v_end.wrapping_sub(1) < v_start {
            return Err(wraps());
        }
        if i.compat && v_end > ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START as u64 {
            return Err(format!(
                "the bootstrap region ends at {v_end:#x}, in the hypervisor's part of a 32-bit address space"
            ));
        }
        if tables_needed(v_start, v_end, i.compat) <= nr_pt {
            break (vstack_end, v_end);
        }
        nr_pt += 1;
    };
    let boot_pages = (v_end - v_start) / PAGE;
    let too_little = |need: u64, what: &str| {
        format!(
            "{} MiB is too little memory: {what} {} MiB",
            (i.nr_pages * PAGE) >> 20,
            (need * PAGE).div_ceil(1 << 20)
        )
    };
    if boot_pages > i.nr_pages {
        return Err(too_little(boot_pages, "the bootstrap region alone needs"));
    }
    // Xen allocates the bootstrap region as one power-of-two chunk; what
    // Xen places past the region starts after that chunk.
    let chunk = boot_pages.next_power_of_two();
    let (initrd_pfn, mod_start, mut next_pfn) = match vinitrd {
        Some(va) => (Some((va - v_start) / PAGE), va, chunk),
        None if has_initrd => (Some(chunk), chunk, chunk + pages(i.initrd_len)),
        None => (None, 0, chunk),
    };
    let p2m = match i.p2m_base {
        Some(va) => {
            let list_pages = pages(p2m_bytes);
            let end = va
                .checked_add(list_pages * PAGE)
                .filter(|&e| {
                    e <= crate::domain::elf::HYPERVISOR_RESERVED.start
                        || va >= crate::domain::elf::HYPERVISOR_RESERVED.end
                })
                .ok_or_else(|| {
                    format!(
                        "INIT_P2M {va:#x}: the P2M list would wrap or reach the hypervisor's range"
                    )
                })?;
            if va % PAGE != 0 {
                return Err(format!("INIT_P2M {va:#x} is not page aligned"));
            }
            if va < v_end && end > v_start {
                return Err(format!(
                    "INIT_P2M {va:#x}..{end:#x} overlaps the bootstrap region {v_start:#x}..{v_end:#x}"
                ));
            }
            let area = P2mArea {
                va,
                first_pfn: next_pfn,
                list_pages,
                table_pages: extra_tables(va, end, v_start, v_end),
            };
            next_pfn += area.frames();
            Some(area)
        }
        None => None,
    };
    // Only what lies past the region needs the chunk to fit too.
    let past_region = (has_initrd && vinitrd.is_none()) || p2m.is_some();
    if past_region && next_pfn > i.nr_pages {
        return Err(too_little(
            next_pfn,
            match (has_initrd, p2m.is_some()) {
                (true, true) => "the bootstrap region, initrd and P2M list need",
                (true, false) => "the bootstrap region and initrd need",
                _ => "the bootstrap region and P2M list need",
            },
        ));
    }
    Ok(Layout {
        v_start,
        initrd_pfn,
        mod_start,
        vphysmap: p2m.map_or(vphysmap, |p| p.va),
        vstartinfo,
        vconsole,
        vpt,
        nr_pt,
        vstack_end,
        v_end,
        p2m,
        laid_out_pages: if past_region { next_pfn } else { boot_pages },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;
    const KBASE: u64 = 0xffff_ffff_8000_0000;

    fn input() -> Input {
        Input {
            virt_base: KBASE,
            virt_kend: KBASE + 0x1c000,
            nr_pages: 32 * MB / PAGE,
            console: false,
            compat: false,
            initrd_len: 0,
            unmapped_initrd: false,
            p2m_base: None,
        }
    }

    #[test]
    fn plain_image() {
        let l = layout(&input()).unwrap();
        assert_eq!(l.vphysmap, KBASE + 0x1c000);
        assert_eq!(
            l.vstartinfo,
            KBASE + 0x1c000 + 0x10000,
            "8192 pages * 8 bytes"
        );
        assert_eq!(l.initrd_pfn, None);
        assert_eq!(l.mod_start, 0);
        assert_eq!(l.p2m, None);
        assert_eq!(l.v_end, KBASE + 4 * MB);
        assert_eq!(l.nr_pt, tables_needed(l.v_start, l.v_end, false));
        assert_eq!(l.laid_out_pages, 1024);
    }

    #[test]
    fn mapped_initrd_follows_the_image() {
        let l = layout(&Input {
            initrd_len: 5000,
            ..input()
        })
        .unwrap();
        // Image ends at +0x1c000; the initrd (2 pages) right after it.
        assert_eq!(l.mod_start, KBASE + 0x1c000);
        assert_eq!(l.initrd_pfn, Some(0x1c));
        assert_eq!(l.vphysmap, KBASE + 0x1e000);
        assert_eq!(l.vstartinfo, KBASE + 0x1e000 + 0x10000);
    }

    #[test]
    fn unmapped_initrd_after_the_power_of_two_chunk() {
        let l = layout(&Input {
            initrd_len: 5000,
            unmapped_initrd: true,
            ..input()
        })
        .unwrap();
        // Region: 4 MiB = 1024 pages, already a power of two.
        assert_eq!(l.bootstrap_pages(), 1024);
        assert_eq!(l.initrd_pfn, Some(1024));
        assert_eq!(l.mod_start, 1024);
        assert_eq!(l.vphysmap, KBASE + 0x1c000, "nothing mapped in between");
        assert_eq!(l.laid_out_pages, 1024 + 2);
        // A 6 MiB image makes an 8 MiB region (2048 pages): the same chunk.
        let big = Input {
            virt_kend: KBASE + 6 * MB,
            initrd_len: 1,
            unmapped_initrd: true,
            ..input()
        };
        let l = layout(&big).unwrap();
        assert_eq!(l.bootstrap_pages(), 2048);
        assert_eq!(l.mod_start, 2048);
        // A 9 MiB image: a 12 MiB region, in a 16 MiB chunk (Linux on Xen:
        // a 65 MiB region puts its RAMDISK at 128 MiB).
        let l = layout(&Input {
            virt_kend: KBASE + 9 * MB,
            ..big
        })
        .unwrap();
        assert_eq!(l.bootstrap_pages(), 3072);
        assert_eq!(l.mod_start, 4096);
    }

    #[test]
    fn mapped_initrd_needs_no_room_past_the_region() {
        // A 12 MiB region (3072 pages) in 14 MiB: its 16 MiB chunk does not
        // fit, which matters only for what goes past the region.
        let i = Input {
            virt_kend: KBASE + 9 * MB,
            nr_pages: 14 * MB / PAGE,
            initrd_len: 100,
            ..input()
        };
        assert!(layout(&i).is_ok());
        let e = layout(&Input {
            unmapped_initrd: true,
            ..i
        })
        .unwrap_err();
        assert!(e.contains("bootstrap region and initrd need 17 MiB"), "{e}");
    }

    #[test]
    fn initrd_must_fit() {
        let e = layout(&Input {
            initrd_len: 40 * MB,
            unmapped_initrd: true,
            ..input()
        })
        .unwrap_err();
        assert!(
            e.contains("too little memory") && e.contains("initrd"),
            "{e}"
        );
        let e = layout(&Input {
            initrd_len: 40 * MB,
            ..input()
        })
        .unwrap_err();
        assert!(
            e.contains("too little memory") && e.contains("bootstrap region"),
            "{e}"
        );
    }

    #[test]
    fn init_p2m_outside_the_region() {
        // Linux: INIT_P2M = 512 GiB (L4 slot 1), MOD_START_PFN set.
        let base = 1 << 39;
        let i = Input {
            nr_pages: 256 * MB / PAGE,
            initrd_len: 3 * PAGE,
            unmapped_initrd: true,
            p2m_base: Some(base),
            ..input()
        };
        let l = layout(&i).unwrap();
        assert_eq!(l.vphysmap, base);
        // Nothing of the list in the region: start_info right after the image.
        assert_eq!(l.vstartinfo, KBASE + 0x1c000);
        let p = l.p2m.unwrap();
        assert_eq!(p.first_pfn, 1024 + 3, "after the chunk and the initrd");
        assert_eq!(p.list_pages, 65536 * 8 / PAGE);
        // 128 pages in one 2 MiB: one L3, one L2, one L1 of its own.
        assert_eq!(p.table_pages, 3);
        assert_eq!(p.frames(), 131);
        assert_eq!(l.laid_out_pages, 1024 + 3 + 131);
        // Without an initrd it starts right after the chunk.
        let l = layout(&Input { initrd_len: 0, ..i }).unwrap();
        assert_eq!(l.p2m.unwrap().first_pfn, 1024);
    }

    #[test]
    fn init_p2m_shares_tables_with_the_region() {
        // The list 8 MiB above the region, same L3 and L2: only L1s new.
        let i = Input {
            nr_pages: 1 << 20,
            p2m_base: Some(KBASE + 64 * MB),
            ..input()
        };
        let l = layout(&i).unwrap();
        let p = l.p2m.unwrap();
        assert_eq!(p.list_pages, 2048); // 8 MiB of list: four 2 MiB L1s
        assert_eq!(p.table_pages, 4);
        assert_eq!(extra_tables(0x1000, 0x2000, 0x1000, 0x2000), 0);
        assert_eq!(
            extra_tables(0, 1 << 30, 1 << 40, (1 << 40) + 4096),
            1 + 1 + 512
        );
    }

    #[test]
    fn init_p2m_overlap_and_memory() {
        let e = layout(&Input {
            p2m_base: Some(KBASE + 4096),
            ..input()
        })
        .unwrap_err();
        assert!(e.contains("overlaps the bootstrap region"), "{e}");
        let e = layout(&Input {
            p2m_base: Some(0x1234),
            ..input()
        })
        .unwrap_err();
        assert!(e.contains("not page aligned"), "{e}");
        let e = layout(&Input {
            p2m_base: Some(0xffff_7fff_ffff_f000),
            ..input()
        })
        .unwrap_err();
        assert!(e.contains("hypervisor"), "{e}");
        // 1024 pages of region in 1024 pages of memory: no room for the list.
        let e = layout(&Input {
            nr_pages: 1024,
            p2m_base: Some(1 << 39),
            ..input()
        })
        .unwrap_err();
        assert!(e.contains("P2M list"), "{e}");
    }

    #[test]
    fn too_little_memory_and_wrapping() {
        let e = layout(&Input {
            nr_pages: 512,
            ..input()
        })
        .unwrap_err();
        assert!(e.contains("bootstrap region alone needs 4 MiB"), "{e}");
        assert!(layout(&Input {
            virt_base: 0xffff_ffff_ffff_f000,
            virt_kend: u64::MAX,
            ..input()
        })
        .is_err());
        assert!(layout(&Input {
            virt_base: 0x1001,
            ..input()
        })
        .is_err());
    }
}
