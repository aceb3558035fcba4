//! The domain builder: from a multiboot module (a Xen PV ELF) to a domain
//! whose vCPU 0 is ready to run its first instruction.
//!
//! Start-of-day layout, as Xen builds an x86-64 PV domain (dom0_build.c):
//!
//! ```text
//! v_start = VIRT_BASE     pseudo-physical page 0 is mapped here, and every
//!                         page of the bootstrap region at v_start + pfn*4K
//! [virt_kstart, kend)     the kernel image (PT_LOAD segments)
//! vphysmap                the P2M list: one u64 MFN per pseudo-physical page
//! vstartinfo              start_info_t (rsi points here)
//! vconsole                the console ring (domains other than 0; its
//!                         frame and event channel are in start_info)
//! vpt                     the initial page tables: L4, L3s, L2s, L1s,
//!                         mapped read-only (the guest changes them only
//!                         through hypercalls)
//! vstack                  one page of boot stack (rsp = its top)
//! v_end                   rounded up to 4 MiB, at least 512 KiB past the
//!                         stack, all of it mapped
//! ```
//!
//! Registers on entry: rip = entry, rsp = stack top, rsi = start_info,
//! cs/ss = FLAT_KERNEL_CS/SS, events masked (`evtchn_upcall_mask` = 1).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ringvisor_abi::hypercall_page::fill_hypercall_page64;
use ringvisor_abi::x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
use ringvisor_abi::xen::{StartInfo, SIF_INITDOMAIN, SIF_PRIVILEGED};
use ringvisor_abi::Pod;

use super::elf::{self, ElfClass};
use super::vcpu::Vcpu;
use super::{DomId, Domain, State};
use crate::cmdline::ModuleCmdline;
use crate::mm::frametable::{FrameTable, Kind};
use crate::mm::paging::{self, phys_to_virt};
use crate::pv::guest_mem::{PTE_A, PTE_D, PTE_P, PTE_RW, PTE_US};

const PAGE: u64 = 4096;

fn frame_bytes(mfn: u64) -> &'static mut [u8; 4096] {
    // SAFETY: `mfn` was just allocated to the domain being built (so no
    // one else uses it) and lies in the direct map; the builder is the only
    // code touching the domain until its vCPU first runs.
    unsafe { &mut *(phys_to_virt(mfn << 12) as *mut [u8; 4096]) }
}

fn frame_u64s(mfn: u64) -> &'static mut [u64; 512] {
    // SAFETY: as frame_bytes; a 4 KiB aligned frame is 512 aligned u64s.
    unsafe { &mut *(phys_to_virt(mfn << 12) as *mut [u64; 512]) }
}

/// Page-table frames needed to map [start, end) with 4 KiB pages: an L4
/// and the L3s, L2s, L1s below it; for a 32-bit PAE guest its L3 (the
/// top) and the L2s and L1s.
fn tables_needed(start: u64, end: u64, compat: bool) -> u64 {
    let span = |shift: u32| ((end - 1) >> shift) - (start >> shift) + 1;
    1 + if compat { 0 } else { span(39) } + span(30) + span(21)
}

struct Layout {
    v_start: u64,
    vphysmap: u64,
    vstartinfo: u64,
    vconsole: Option<u64>,
    vpt: u64,
    nr_pt: u64,
    vstack_end: u64,
    v_end: u64,
}

// Tour 01: where the parts of the bootstrap region go
fn layout(img: &elf::GuestImage, nr_pages: u64, console: bool, compat: bool) -> Result<Layout, String> {
    let v_start = img.virt_base;
    if v_start % PAGE != 0 {
        return Err(format!("VIRT_BASE {v_start:#x} is not page aligned"));
    }
    // Every step checked: the ELF parser leaves the image's end to us, and
    // an image ending near 2^64 must be refused, not wrapped round to 0.
    let wraps = || "the bootstrap region wraps around the address space".to_string();
    let round = |x: u64| x.checked_next_multiple_of(PAGE).ok_or_else(wraps);
    let add = |a: u64, b: u64| a.checked_add(b).ok_or_else(wraps);
    let vphysmap = round(img.virt_kend)?;
    let vstartinfo = round(add(vphysmap, nr_pages.checked_mul(if compat { 4 } else { 8 }).ok_or_else(wraps)?)?)?;
    let vconsole = if console { Some(add(vstartinfo, PAGE)?) } else { None };
    let vpt = add(vstartinfo, PAGE + if console { PAGE } else { 0 })?;
    let mut nr_pt = 1;
    loop {
        let vstack_end = add(vpt, nr_pt * PAGE + PAGE)?;
        let mut v_end = add(vstack_end, (4 << 20) - 1)? & !((4 << 20) - 1);
        if v_end - vstack_end < 512 << 10 {
            v_end = add(v_end, 4 << 20)?;
        }
        if v_end < v_start || v_end.wrapping_sub(1) < v_start {
            return Err("the bootstrap region wraps around the address space".to_string());
        }
        if compat && v_end > ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START as u64 {
            return Err(format!(
                "the bootstrap region ends at {v_end:#x}, in the hypervisor's part of a 32-bit address space"
            ));
        }
        if tables_needed(v_start, v_end, compat) <= nr_pt {
            if (v_end - v_start) / PAGE > nr_pages {
                return Err(format!(
                    "{} MiB is too little memory: the bootstrap region alone needs {} MiB",
                    nr_pages * PAGE >> 20,
                    (v_end - v_start) >> 20
                ));
            }
            return Ok(Layout { v_start, vphysmap, vstartinfo, vconsole, vpt, nr_pt, vstack_end, v_end });
        }
        nr_pt += 1;
    }
}

/// Why a domain was not built.
#[derive(Debug)]
pub enum BuildError {
    /// Not enough free memory now (it may be later, when a domain ends).
    NoMemory(String),
    /// The image or its options are wrong: it will never build.
    Bad(String),
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::NoMemory(s) | BuildError::Bad(s) => f.write_str(s),
        }
    }
}

impl From<String> for BuildError {
    fn from(s: String) -> Self {
        BuildError::Bad(s)
    }
}

impl From<&str> for BuildError {
    fn from(s: &str) -> Self {
        BuildError::Bad(s.to_string())
    }
}

/// Build domain `id` from a module's bytes and command line.
// Tour 01: from module bytes to a vCPU ready to run
pub fn build(id: DomId, image: &[u8], mc: &ModuleCmdline, ft: &mut FrameTable) -> Result<Domain, BuildError> {
    let img = elf::parse(image).map_err(|e| e.to_string())?;
    // A 32-bit (PAE: the parser refuses others) image runs in ring 1 with
    // the 32-bit layouts; the differences are marked `compat` below.
    let compat = img.class == ElfClass::Elf32;
    let nr_pages = mc.options.mem / PAGE;
    // Domain 0 writes its console with console_io; the others get a ring.
    let l = layout(&img, nr_pages, id != 0, compat)?;

    // Memory: nr_pages frames, all zeroed, owned by the domain.
    // The P2M lives on the hypervisor heap (8 bytes a page): more than the
    // machine has, or than the heap holds, is refused here, not a panic.
    if nr_pages > paging::max_ram() >> 12 {
        return Err(BuildError::Bad(format!(
            "rv.mem={} MiB is more than this machine's {} MiB",
            mc.options.mem >> 20,
            paging::max_ram() >> 20
        )));
    }
    let mut p2m = Vec::new();
    if p2m.try_reserve_exact(nr_pages as usize).is_err() {
        return Err(BuildError::Bad(format!(
            "rv.mem={} MiB needs a {} KiB P2M the hypervisor heap cannot hold",
            mc.options.mem >> 20,
            nr_pages * 8 >> 10
        )));
    }
    for _ in 0..nr_pages {
        match paging::with_frames(|fa| fa.alloc()) {
            Some(f) => p2m.push(f.0),
            None => {
                release_frames(&p2m, ft);
                return Err(BuildError::NoMemory(format!("out of memory: could not give it {} MiB", mc.options.mem >> 20)));
            }
        }
    }
    let Some(shared) = paging::with_frames(|fa| fa.alloc()) else {
        release_frames(&p2m, ft);
        return Err(BuildError::NoMemory("out of memory for shared_info".to_string()));
    };
    for &mfn in p2m.iter().chain([&shared.0]) {
        frame_bytes(mfn).fill(0);
        ft.assign(mfn, id, Kind::Normal);
    }
    for (pfn, &mfn) in p2m.iter().enumerate() {
        paging::m2p_set(mfn, pfn as u64);
    }
    ft.assign(shared.0, id, Kind::SharedInfo);
    // The wall clock at system time 0 (version even: stable).
    let si_words = frame_bytes(shared.0);
    let (wc, wc_hi) = if compat {
        use ringvisor_abi::x86_32::{ArchSharedInfo32, SharedInfo32};
        (
            core::mem::offset_of!(SharedInfo32, wc_sec),
            core::mem::offset_of!(SharedInfo32, arch) + core::mem::offset_of!(ArchSharedInfo32, wc_sec_hi),
        )
    } else {
        use ringvisor_abi::xen::SharedInfo;
        (core::mem::offset_of!(SharedInfo, wc_sec), core::mem::offset_of!(SharedInfo, wc_sec_hi))
    };
    si_words[wc..wc + 4].copy_from_slice(&(crate::arch::x86_64::time::boot_epoch() as u32).to_le_bytes());
    si_words[wc_hi..wc_hi + 4].copy_from_slice(&((crate::arch::x86_64::time::boot_epoch() >> 32) as u32).to_le_bytes());
    // Events start masked on every vCPU (evtchn_upcall_mask = 1).
    let nr_vcpus = (mc.options.vcpus as usize).min(crate::pv::evtchn::MAX_VCPUS);
    for vi in 0..nr_vcpus {
        let off = core::mem::offset_of!(ringvisor_abi::xen::SharedInfo, vcpu_info)
            + vi * core::mem::size_of::<ringvisor_abi::xen::VcpuInfo>()
            + core::mem::offset_of!(ringvisor_abi::xen::VcpuInfo, evtchn_upcall_mask);
        frame_bytes(shared.0)[off] = 1;
    }

    let pfn_of = |va: u64| (va - l.v_start) / PAGE;
    let mfn_of = |va: u64| p2m[pfn_of(va) as usize];

    // The image.
    let write = |va: u64, bytes: &[u8]| {
        let mut done = 0;
        while done < bytes.len() {
            let at = va + done as u64;
            let off = (at % PAGE) as usize;
            let n = (PAGE as usize - off).min(bytes.len() - done);
            frame_bytes(mfn_of(at))[off..off + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    };
    for c in img.load_chunks() {
        write(c.guest_va, c.bytes); // the zero-filled tail is already zero
    }
    if let Some(hp) = img.hypercall_page {
        if compat {
            ringvisor_abi::hypercall_page::fill_hypercall_page32(frame_bytes(mfn_of(hp)));
        } else {
            fill_hypercall_page64(frame_bytes(mfn_of(hp)));
        }
    }

    // The P2M list (32-bit entries for a 32-bit guest).
    for (pfn, &mfn) in p2m.iter().enumerate() {
        if compat {
            write(l.vphysmap + pfn as u64 * 4, &(mfn as u32).to_le_bytes());
        } else {
            write(l.vphysmap + pfn as u64 * 8, &mfn.to_le_bytes());
        }
    }

    // The initial page tables, allocated in order from the vpt region.
    let pt_first = pfn_of(l.vpt);
    let pt_last = pt_first + l.nr_pt;
    let mut next_pt = pt_first;
    // The top: an L4 with the hypervisor's slots, or a 32-bit guest's L3.
    let top_level = if compat { 3 } else { 4 };
    let top = p2m[next_pt as usize];
    next_pt += 1;
    if !compat {
        let slots = paging::hypervisor_l4_slots();
        frame_u64s(top)[paging::HV_FIRST_SLOT..paging::HV_FIRST_SLOT + paging::HV_SLOTS].copy_from_slice(&slots);
    }
    // Upper levels: user and writable (the leaf decides); a 32-bit
    // kernel's own pages are supervisor (it runs in ring 1), a 64-bit
    // kernel's must be user (it runs in ring 3).
    let table_flags = PTE_P | PTE_RW | PTE_US | PTE_A;
    let leaf_user = if compat { 0 } else { PTE_US };
    let mut va = l.v_start;
    while va < l.v_end {
        let mut t = top;
        for level in (2..=top_level).rev() {
            let idx = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            if frame_u64s(t)[idx] & PTE_P == 0 {
                let child = p2m[next_pt as usize];
                next_pt += 1;
                ft.assign(child, id, Kind::Table(level as u8 - 1));
                ft.get_mut(child).unwrap().table_refs = 1;
                frame_u64s(t)[idx] = child << 12 | table_flags;
            }
            t = (frame_u64s(t)[idx] & crate::pv::guest_mem::PTE_ADDR) >> 12;
        }
        let pfn = pfn_of(va);
        let mfn = p2m[pfn as usize];
        let rw = if (pt_first..pt_last).contains(&pfn) { 0 } else { PTE_RW };
        frame_u64s(t)[((va >> 12) & 511) as usize] = mfn << 12 | PTE_P | leaf_user | PTE_A | PTE_D | rw;
        let info = ft.get_mut(mfn).unwrap();
        info.mapped += 1;
        info.writable += (rw != 0) as u32;
        va += PAGE;
    }
    debug_assert!(next_pt <= pt_last);
    ft.assign(top, id, Kind::Table(top_level as u8));
    let top_info = ft.get_mut(top).unwrap();
    // Two references, as in Xen: the pin, and the vCPU's CR3 (so unpinning
    // the live top table leaves it a page table).
    top_info.pinned = true;
    top_info.table_refs = 2;

    // Event channels; the console ring's port is the first one.
    let mut ports = crate::pv::evtchn::Ports::new();
    let console = match l.vconsole {
        Some(va) => {
            let port = ports.alloc(crate::pv::evtchn::Channel::Console).map_err(|_| "no event channel for the console")?;
            // The hypervisor reads and writes the ring for the domain's
            // whole life: it holds the page as a writable mapping would, so
            // the guest can neither give it back nor make it a page table.
            let info = ft.get_mut(mfn_of(va)).unwrap();
            info.mapped += 1;
            info.writable += 1;
            Some((mfn_of(va), port))
        }
        None => None,
    };

    // start_info.
    let mut si = StartInfo::zeroed();
    if let Some((mfn, port)) = console {
        si.console.mfn = mfn;
        si.console.evtchn = port;
    }
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.nr_pages = nr_pages;
    si.shared_info = shared.0 << 12;
    si.flags = if id == 0 { SIF_PRIVILEGED | SIF_INITDOMAIN } else { 0 };
    si.pt_base = l.vpt;
    si.nr_pt_frames = l.nr_pt;
    si.mfn_list = l.vphysmap;
    let args = mc.guest_args.as_bytes();
    let n = args.len().min(si.cmd_line.len() - 1);
    si.cmd_line[..n].copy_from_slice(&args[..n]);
    if compat {
        write(l.vstartinfo, ringvisor_abi::as_bytes(&start_info32(&si)));
    } else {
        write(l.vstartinfo, ringvisor_abi::as_bytes(&si));
    }

    let mut v = Vcpu::new(0);
    v.up = true;
    v.initialised = true;
    v.guest_table = top;
    v.regs.rip = img.entry;
    v.regs.rsp = l.vstack_end;
    v.regs.rsi = l.vstartinfo;
    v.regs.rflags = 0x202;
    if compat {
        use ringvisor_abi::x86_32::{FLAT_RING1_CS, FLAT_RING1_DS};
        v.regs.cs = FLAT_RING1_CS as u64;
        v.regs.ss = FLAT_RING1_DS as u64;
        v.data_sels = [FLAT_RING1_DS, FLAT_RING1_DS, 0, 0];
        v.compat_l4 = match compat_l4(top) {
            Some(l4) => l4,
            None => {
                release_frames(&p2m, ft);
                release_frames(&[shared.0], ft);
                return Err(BuildError::NoMemory("out of memory for the vCPU's top-level table".to_string()));
            }
        };
    } else {
        v.regs.cs = FLAT_KERNEL_CS64 as u64;
        v.regs.ss = FLAT_KERNEL_SS64 as u64;
    }

    crate::info!(
        "d{id}: built {} ({}-bit, {} MiB): image {:#x}-{:#x} entry {:#x}; start_info {:#x}, {} page-table frames at {:#x}, stack top {:#x}",
        mc.name(),
        if compat { 32 } else { 64 },
        nr_pages * PAGE >> 20,
        img.virt_kstart,
        img.virt_kend,
        img.entry,
        l.vstartinfo,
        l.nr_pt,
        l.vpt,
        l.vstack_end
    );
    Ok(Domain {
        id,
        name: mc.name().to_string(),
        max_pages: nr_pages,
        p2m,
        p2m_moved: alloc::collections::BTreeMap::new(),
        pirq_eoi_mfn: 0,
        shared_info_mfn: shared.0,
        privileged: id == 0,
        compat,
        vm_assist: 0,
        vcpus: core::iter::once(v).chain((1..nr_vcpus as u32).map(Vcpu::new)).collect(),
        cur: 0,
        state: State::Running,
        console_line: String::new(),
        console_in: alloc::collections::VecDeque::new(),
        gnttab: crate::pv::grant::GrantTable::new(),
        watchdogs: [None; 2],
        console_budget: crate::pv::hypercall::CONSOLE_BURST,
        console_refilled: 0,
        console_dropped: 0,
        ports,
        console,
    })
}

/// start_info for a 32-bit guest, from the native one.
fn start_info32(si: &StartInfo) -> ringvisor_abi::x86_32::StartInfo32 {
    let mut s = ringvisor_abi::x86_32::StartInfo32::zeroed();
    s.magic[..15].copy_from_slice(b"xen-3.0-x86_32p");
    s.nr_pages = si.nr_pages as u32;
    s.shared_info = si.shared_info as u32;
    s.flags = si.flags;
    s.console.mfn = si.console.mfn as u32;
    s.console.evtchn = si.console.evtchn;
    s.pt_base = si.pt_base as u32;
    s.nr_pt_frames = si.nr_pt_frames as u32;
    s.mfn_list = si.mfn_list as u32;
    s.cmd_line = si.cmd_line;
    s
}

/// A 32-bit guest runs under a top-level table of the hypervisor's: slot
/// 0 maps the guest's PAE L3 (its 4 GiB), slots 256-271 the hypervisor.
/// (Xen's compat L4; the guest never sees it.)
pub fn compat_l4(guest_l3: u64) -> Option<u64> {
    let f = paging::with_frames(|fa| fa.alloc())?;
    let t = frame_u64s(f.0);
    t.fill(0);
    t[0] = guest_l3 << 12 | PTE_P | PTE_RW | PTE_US | PTE_A;
    t[paging::HV_FIRST_SLOT..paging::HV_FIRST_SLOT + paging::HV_SLOTS].copy_from_slice(&paging::hypervisor_l4_slots());
    Some(f.0)
}

/// A pseudo-physical page with no machine frame (given back).
pub const INVALID_MFN: u64 = !0;

fn release_frames(mfns: &[u64], ft: &mut FrameTable) {
    for &mfn in mfns {
        ft.release(mfn);
        paging::m2p_set(mfn, paging::M2P_INVALID);
        let _ = paging::with_frames(|fa| fa.free(crate::mm::frame::Frame(mfn)));
    }
}

/// Give every frame of a finished domain back to the pool.
pub fn teardown(d: &mut Domain, ft: &mut FrameTable) {
    if d.p2m.is_empty() {
        return; // already done
    }
    crate::pv::grant::teardown(d, ft);
    // Pages the guest gave back are INVALID_MFN in its P2M.
    d.p2m.retain(|&m| m != INVALID_MFN);
    release_frames(&d.p2m, ft);
    release_frames(&[d.shared_info_mfn], ft);
    for v in &mut d.vcpus {
        if v.compat_l4 != 0 {
            let _ = paging::with_frames(|fa| fa.free(crate::mm::frame::Frame(v.compat_l4)));
            v.compat_l4 = 0;
        }
    }
    d.p2m = Vec::new();
    d.p2m_moved.clear();
    d.shared_info_mfn = 0;
}
