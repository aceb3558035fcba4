//! The domain builder: from a multiboot module (a Xen PV ELF) to a domain
//! whose vCPU 0 is ready to run its first instruction.
//!
//! The start-of-day layout (image, initrd, P2M list, start_info, page
//! tables, stack) is decided by [`super::layout`], as Xen's dom0_build.c.
//!
//! Registers on entry: rip = entry, rsp = stack top, rsi = start_info,
//! cs/ss = FLAT_KERNEL_CS/SS, events masked (`evtchn_upcall_mask` = 1).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ringvisor_abi::hypercall_page::fill_hypercall_page64;
use ringvisor_abi::x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};
use ringvisor_abi::xen::{StartInfo, SIF_INITDOMAIN, SIF_MOD_START_PFN, SIF_PRIVILEGED};
use ringvisor_abi::Pod;

use super::bzimage;
use super::elf::{self, ElfClass};
use super::layout::{self, PAGE};
use super::vcpu::Vcpu;
use super::{DomId, Domain, State};
use crate::arch::x86_64::pte::{PTE_A, PTE_ADDR, PTE_D, PTE_P, PTE_RW, PTE_US};
use crate::cmdline::ModuleCmdline;
use crate::mm::frametable::{FrameTable, Kind};
use crate::mm::paging;
use crate::mm::view::{FrameBuf, FrameView};

/// A frame of the domain being built: the frame table records it as the
/// domain's from the start (`ft.assign` before any write), and the builder
/// is the only code touching the domain until its vCPU first runs.
fn frame(ft: &FrameTable, mfn: u64) -> FrameView {
    FrameView::owned(ft, mfn).expect("the builder writes only the domain's own frames")
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

/// Contiguous frames for `bytes`, or why there are none now.
fn frame_buf(bytes: usize, what: &str) -> Result<FrameBuf, BuildError> {
    let pages = (bytes as u64).div_ceil(PAGE).max(1);
    FrameBuf::new(pages).ok_or_else(|| {
        BuildError::NoMemory(format!(
            "out of memory: no {} KiB of contiguous memory for {what}",
            pages * 4
        ))
    })
}

/// If `image` is a bzImage, decompress its kernel (an ELF) into frames of
/// its own, freed once the domain is built (the module itself is left as
/// the loader gave it). Prints a line every 16 MiB: Debian's 63 MiB kernel
/// takes seconds under TCG.
fn unpack_bzimage(
    id: DomId,
    name: &str,
    image: &[u8],
) -> Result<Option<(FrameBuf, usize)>, BuildError> {
    let Some(p) = bzimage::probe(image).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let t0 = crate::arch::x86_64::time::tsc();
    let mut out = frame_buf(p.out_len, "the decompressed kernel")?;
    let total = p.out_len;
    let mut progress = |done: usize| {
        crate::info!(
            "d{id}: {name}: decompressing, {} of {} MiB",
            done >> 20,
            total >> 20
        )
    };
    let n = bzimage::decompress(&p, out.bytes(), bzimage::PROGRESS_STEP, &mut progress).map_err(
        |e| {
            format!(
                "bzImage (boot protocol {}.{:02}): {e}",
                p.version >> 8,
                p.version & 0xff
            )
        },
    )?;
    let ns = crate::arch::x86_64::time::tsc_to_ns(crate::arch::x86_64::time::tsc() - t0);
    crate::info!(
        "d{id}: {name}: bzImage {}.{:02}, {} payload {} KiB -> {} KiB in {}.{:03} s",
        p.version >> 8,
        p.version & 0xff,
        p.format.name(),
        p.bytes.len() >> 10,
        n >> 10,
        ns / 1_000_000_000,
        ns / 1_000_000 % 1_000
    );
    Ok(Some((out, n)))
}

/// How much memory a domain gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// `rv.mem`, or the 32 MiB default.
    Bytes(u64),
    /// The initial domain without `rv.mem`: Xen's dom0 default of what is
    /// free once the kernel is unpacked, `others` bytes being kept for the
    /// other modules' domains (`cmdline::initial_domain_mem`).
    InitialDefault { others: u64 },
}

/// Build domain `id` from a module's bytes and command line.
///
/// `initrd` is the module after the kernel when that is not a kernel
/// itself (Xen's dom0 initrd): it is copied into the domain and named by
/// `start_info.mod_start` / `mod_len`. `label` names the module in
/// messages (its file name, or "module N" where the loader gives none).
// Tour 01: from module bytes to a vCPU ready to run
pub fn build(
    id: DomId,
    label: &str,
    image: &[u8],
    initrd: Option<&[u8]>,
    mc: &ModuleCmdline,
    memory: Memory,
    ft: &FrameTable,
) -> Result<Domain, BuildError> {
    // A bzImage's kernel lives in `unpacked` until the build is over.
    let mut unpacked = unpack_bzimage(id, label, image)?;
    let image: &[u8] = match unpacked.as_mut() {
        Some((buf, n)) => &buf.bytes()[..*n],
        None => image,
    };
    let img = elf::parse(image).map_err(|e| e.to_string())?;
    // A 32-bit (PAE: the parser refuses others) image runs in ring 1 with
    // the 32-bit layouts; the differences are marked `compat` below.
    let compat = img.class == ElfClass::Elf32;
    // What Xen's dom0 builder refuses (dom0 support, supervisor mode).
    elf::check_for_builder(&img, id == 0)?;
    let mem = match memory {
        Memory::Bytes(m) => m,
        Memory::InitialDefault { others } => {
            let free = paging::with_frames(|fa| fa.free_frames()) * PAGE;
            // The P2M below lives on the hypervisor heap (8 bytes a page):
            // the default takes at most what half the free heap can list.
            let heap_cap = crate::mm::heap::free_bytes() / 2 / 8 * PAGE;
            let m = crate::cmdline::initial_domain_mem(free, others).min(heap_cap);
            crate::info!(
                "d{id}: {} MiB, the initial domain's default ({} MiB free, {} MiB kept for the other domains)",
                m >> 20,
                free >> 20,
                others >> 20
            );
            m
        }
    };
    let nr_pages = mem / PAGE;
    let initrd = initrd.unwrap_or(&[]);
    // libelf's unmapped_initrd: a non-zero MOD_START_PFN note.
    let unmapped_initrd = img.notes.mod_start_pfn.is_some_and(|v| v != 0);
    // Domain 0 writes its console with console_io; the others get a ring.
    let l = layout::layout(&layout::Input {
        virt_base: img.virt_base,
        virt_kend: img.virt_kend,
        nr_pages,
        console: id != 0,
        compat,
        initrd_len: initrd.len() as u64,
        unmapped_initrd,
        p2m_base: img.p2m_base,
    })?;

    // Memory: nr_pages frames, all zeroed, owned by the domain.
    // The P2M lives on the hypervisor heap (8 bytes a page): more than the
    // machine has, or than the heap holds, is refused here, not a panic.
    if nr_pages > paging::max_ram() >> 12 {
        return Err(BuildError::Bad(format!(
            "rv.mem={} MiB is more than this machine's {} MiB",
            mem >> 20,
            paging::max_ram() >> 20
        )));
    }
    let mut p2m = Vec::new();
    if p2m.try_reserve_exact(nr_pages as usize).is_err() {
        return Err(BuildError::Bad(format!(
            "rv.mem={} MiB needs a {} KiB P2M the hypervisor heap cannot hold",
            mem >> 20,
            (nr_pages * 8) >> 10
        )));
    }
    for _ in 0..nr_pages {
        match paging::with_frames(|fa| fa.alloc()) {
            Some(f) => p2m.push(f.0),
            None => {
                release_frames(&p2m, ft);
                return Err(BuildError::NoMemory(format!(
                    "out of memory: could not give it {} MiB",
                    mem >> 20
                )));
            }
        }
    }
    let Some(shared) = paging::with_frames(|fa| fa.alloc()) else {
        release_frames(&p2m, ft);
        return Err(BuildError::NoMemory(
            "out of memory for shared_info".to_string(),
        ));
    };
    // Every page the builder lays out starts zeroed (bss tails, page
    // tables, start_info, the console ring rely on it): the bootstrap
    // region, an unmapped initrd, an INIT_P2M list and its tables. The
    // rest of the initial domain's memory is not scrubbed, as Xen's dom0
    // builder allocates with MEMF_no_scrub: it is built at boot, before
    // any guest ran, so those frames hold only what firmware, the loader
    // and the hypervisor's own boot left. That includes the gap between
    // the bootstrap region and what Xen places after its power-of-two
    // chunk (54 MiB for Debian's kernel). Every other domain's memory is
    // zeroed whole (it may be frames an ended domain gave back). Pages the
    // image's file bytes or the initrd fill whole are written below, so
    // are not zeroed first (58 MiB of Debian's kernel). Zeroing is most of
    // a build under TCG: 941 MiB took 2.3 s, the rest of the build 0.05 s.
    let scrub_all = id != 0;
    let pages_of = |pa: u64, len: u64| (pa / PAGE, (pa + len).div_ceil(PAGE));
    let whole_pages = |pa: u64, len: usize| (pa.div_ceil(PAGE), (pa + len as u64) / PAGE);
    let mut placed = alloc::vec![(0, (l.v_end - l.v_start) / PAGE)];
    let mut filled: Vec<(u64, u64)> = img
        .load_chunks()
        .map(|c| whole_pages(c.guest_va - l.v_start, c.bytes.len()))
        .collect();
    if let Some(pfn) = l.initrd_pfn {
        placed.push(pages_of(pfn * PAGE, initrd.len() as u64));
        filled.push(whole_pages(pfn * PAGE, initrd.len()));
    }
    if let Some(a) = l.p2m {
        placed.push((a.first_pfn, a.first_pfn + a.frames()));
    }
    let within =
        |ranges: &[(u64, u64)], pfn: u64| ranges.iter().any(|&(a, b)| (a..b).contains(&pfn));
    for (pfn, &mfn) in p2m.iter().enumerate() {
        let pfn = pfn as u64;
        ft.assign(mfn, id, Kind::Normal);
        if (scrub_all || within(&placed, pfn)) && !within(&filled, pfn) {
            frame(ft, mfn).zero();
        }
    }
    ft.assign(shared.0, id, Kind::Normal);
    frame(ft, shared.0).zero();
    for (pfn, &mfn) in p2m.iter().enumerate() {
        paging::m2p_set(mfn, pfn as u64);
    }
    ft.assign(shared.0, id, Kind::SharedInfo);
    // The wall clock at system time 0 (version even: stable).
    let si_frame = frame(ft, shared.0);
    let (wc, wc_hi) = if compat {
        use ringvisor_abi::x86_32::{ArchSharedInfo32, SharedInfo32};
        (
            core::mem::offset_of!(SharedInfo32, wc_sec),
            core::mem::offset_of!(SharedInfo32, arch)
                + core::mem::offset_of!(ArchSharedInfo32, wc_sec_hi),
        )
    } else {
        use ringvisor_abi::xen::SharedInfo;
        (
            core::mem::offset_of!(SharedInfo, wc_sec),
            core::mem::offset_of!(SharedInfo, wc_sec_hi),
        )
    };
    let epoch = crate::arch::x86_64::time::boot_epoch();
    si_frame.write_bytes(wc, &(epoch as u32).to_le_bytes());
    si_frame.write_bytes(wc_hi, &((epoch >> 32) as u32).to_le_bytes());
    // Events start masked on every vCPU (evtchn_upcall_mask = 1).
    let nr_vcpus = (mc.options.vcpus as usize).min(super::evtchn::MAX_VCPUS);
    for vi in 0..nr_vcpus {
        let off = core::mem::offset_of!(ringvisor_abi::xen::SharedInfo, vcpu_info)
            + vi * core::mem::size_of::<ringvisor_abi::xen::VcpuInfo>()
            + core::mem::offset_of!(ringvisor_abi::xen::VcpuInfo, evtchn_upcall_mask);
        si_frame.write_bytes(off, &[1]);
    }

    let pfn_of = |va: u64| (va - l.v_start) / PAGE;
    let mfn_of = |va: u64| p2m[pfn_of(va) as usize];

    // Copy to a pseudo-physical address (the layout keeps it below
    // nr_pages), and to a virtual address in the bootstrap region.
    let write_pa = |pa: u64, bytes: &[u8]| {
        let mut done = 0;
        while done < bytes.len() {
            let at = pa + done as u64;
            let off = (at % PAGE) as usize;
            let n = (PAGE as usize - off).min(bytes.len() - done);
            frame(ft, p2m[(at / PAGE) as usize]).write_bulk(off, &bytes[done..done + n]);
            done += n;
        }
    };
    let write = |va: u64, bytes: &[u8]| write_pa(va - l.v_start, bytes);

    // The image.
    for c in img.load_chunks() {
        write(c.guest_va, c.bytes); // the zero-filled tail is already zero
    }
    // BSD_SYMTAB: the whole area, its padding zeroes included (fresh
    // frames are zero too; written anyway, the blob is the one truth).
    if let Some(b) = &img.bsd_symtab {
        write(b.guest_va, &b.blob);
    }
    if let Some(hp) = img.hypercall_page {
        let mut page = [0u8; PAGE as usize];
        if compat {
            ringvisor_abi::hypercall_page::fill_hypercall_page32(&mut page);
        } else {
            fill_hypercall_page64(&mut page);
        }
        frame(ft, mfn_of(hp)).write_bytes(0, &page);
    }

    // The initrd: mapped after the image, or (MOD_START_PFN) only in
    // pseudo-physical memory after the bootstrap region's chunk.
    if let Some(pfn) = l.initrd_pfn {
        write_pa(pfn * PAGE, initrd);
    }

    // The P2M list (32-bit entries for a 32-bit guest): in the bootstrap
    // region, or (INIT_P2M) in its own pages past it.
    let p2m_pa = match l.p2m {
        Some(a) => a.first_pfn * PAGE,
        None => l.vphysmap - l.v_start,
    };
    // A page's worth of entries at a time: each write looks its frame up.
    let width = if compat { 4 } else { 8 };
    let mut buf = [0u8; PAGE as usize];
    for (i, chunk) in p2m.chunks(PAGE as usize / width).enumerate() {
        for (e, &mfn) in buf.chunks_exact_mut(width).zip(chunk) {
            e.copy_from_slice(&mfn.to_le_bytes()[..width]);
        }
        write_pa(
            p2m_pa + (i * PAGE as usize) as u64,
            &buf[..chunk.len() * width],
        );
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
        let t = frame(ft, top);
        for (i, &e) in paging::hypervisor_l4_slots().iter().enumerate() {
            t.write(paging::HV_FIRST_SLOT + i, e);
        }
    }
    // Upper levels: user and writable (the leaf decides); a 32-bit
    // kernel's own pages are supervisor (it runs in ring 1), a 64-bit
    // kernel's must be user (it runs in ring 3). Leaves carry no NX bit,
    // as Xen's L1_PROT: the kernel sets its own protections later.
    let table_flags = PTE_P | PTE_RW | PTE_US | PTE_A;
    let leaf_user = if compat { 0 } else { PTE_US };
    // Map `va` to `mfn`; missing tables come from pseudo-physical pages
    // `*next_table`, `*next_table + 1`, ...
    // The L1 table of the last 2 MiB mapped, so a run of pages looks up
    // its tables once (each lookup takes the frame's record lock).
    let mut last_l1: Option<(u64, FrameView)> = None;
    let mut map = |ft: &FrameTable, next_table: &mut u64, va: u64, mfn: u64, rw: u64| {
        let leaf = ((va >> 12) & 511) as usize;
        let entry = mfn << 12 | PTE_P | leaf_user | PTE_A | PTE_D | rw;
        let count = || {
            ft.with(mfn, |info| {
                info.mapped += 1;
                info.writable += (rw != 0) as u32;
            })
        };
        if let Some((_, l1)) = last_l1.filter(|&(at, _)| at == va >> 21) {
            l1.write(leaf, entry);
            count();
            return;
        }
        let mut t = top;
        for level in (2..=top_level).rev() {
            let idx = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            let table = frame(ft, t);
            if table.read(idx) & PTE_P == 0 {
                let child = p2m[*next_table as usize];
                *next_table += 1;
                // Typed, its counts kept: the bootstrap region maps the
                // page-table frames read-only, and this one may be mapped
                // (and counted) already.
                ft.set_kind(child, Kind::Table(level as u8 - 1));
                ft.with(child, |i| i.table_refs = 1);
                table.write(idx, child << 12 | table_flags);
            }
            t = (table.read(idx) & PTE_ADDR) >> 12;
        }
        let l1 = frame(ft, t);
        l1.write(leaf, entry);
        count();
        last_l1 = Some((va >> 21, l1));
    };
    let mut va = l.v_start;
    while va < l.v_end {
        let pfn = pfn_of(va);
        let rw = if (pt_first..pt_last).contains(&pfn) {
            0
        } else {
            PTE_RW
        };
        map(ft, &mut next_pt, va, p2m[pfn as usize], rw);
        va += PAGE;
    }
    // INIT_P2M: the list pages mapped at the note's address, writable,
    // with tables of their own from the pages right after the list
    // (Xen's setup_pv_physmap; it uses 2 MiB / 1 GiB pages where it can).
    if let Some(a) = l.p2m {
        let (tables_first, tables_end) = (a.first_pfn + a.list_pages, a.first_pfn + a.frames());
        let mut next_table = tables_first;
        for i in 0..a.list_pages {
            map(
                ft,
                &mut next_table,
                a.va + i * PAGE,
                p2m[(a.first_pfn + i) as usize],
                PTE_RW,
            );
        }
        debug_assert!(next_table == tables_end);
    }
    if compat {
        // Slot 3 of the PAE L3 always has an L2, typed pae_xen_l2, with
        // the compat M2P in its hypervisor slots (Xen's dom0 builder:
        // "Ensure the first four L3 entries are all populated", then
        // init_xen_pae_l2_slots).
        let l3 = frame(ft, top);
        if l3.read(3) & PTE_P == 0 {
            let l2 = p2m[next_pt as usize];
            next_pt += 1;
            ft.set_kind(l2, Kind::Table(2));
            ft.with(l2, |i| i.table_refs = 1);
            l3.write(3, l2 << 12 | table_flags);
        }
        let l2 = (l3.read(3) & PTE_ADDR) >> 12;
        ft.with(l2, |i| i.pae_xen_l2 = true);
        let t = frame(ft, l2);
        let first = 512 - paging::COMPAT_L2_XEN_SLOTS;
        for (i, &e) in paging::compat_m2p_l2_slots().iter().enumerate() {
            t.write(first + i, e);
        }
    }
    debug_assert!(next_pt <= pt_last);
    // Typed, its counts kept (as the tables in `map`): the bootstrap
    // mapping of the page-table frames counted it.
    ft.set_kind(top, Kind::Table(top_level as u8));
    // Two references, as in Xen: the pin, and the vCPU's CR3 (so unpinning
    // the live top table leaves it a page table).
    ft.with(top, |i| (i.pinned, i.table_refs) = (true, 2));

    // Event channels; the console ring's port is the first one.
    let mut ports = super::evtchn::Ports::new();
    let console = match l.vconsole {
        Some(va) => {
            let port = ports
                .alloc(super::evtchn::Channel::Console)
                .map_err(|_| "no event channel for the console")?;
            // The hypervisor reads and writes the ring for the domain's
            // whole life: it holds the page as a writable mapping would, so
            // the guest can neither give it back nor make it a page table.
            ft.with(mfn_of(va), |info| {
                info.mapped += 1;
                info.writable += 1;
            });
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
    si.flags = if id == 0 {
        SIF_PRIVILEGED | SIF_INITDOMAIN
    } else {
        0
    };
    if l.initrd_pfn.is_some() {
        si.mod_start = l.mod_start;
        si.mod_len = initrd.len() as u64;
        if unmapped_initrd {
            si.flags |= SIF_MOD_START_PFN;
        }
    }
    si.pt_base = l.vpt;
    si.nr_pt_frames = l.nr_pt;
    si.mfn_list = l.vphysmap;
    if let Some(a) = l.p2m {
        si.first_p2m_pfn = a.first_pfn;
        si.nr_p2m_frames = a.frames();
    }
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
                return Err(BuildError::NoMemory(
                    "out of memory for the vCPU's top-level table".to_string(),
                ));
            }
        };
    } else {
        v.regs.cs = FLAT_KERNEL_CS64 as u64;
        v.regs.ss = FLAT_KERNEL_SS64 as u64;
    }

    // Its name: the module's file name where the loader gives one, else
    // the kernel's GUEST_OS note (Linux: "linux"), else dN.
    let name = match (mc.name(), img.notes.guest_os) {
        (Some(n), _) => n.to_string(),
        (None, Some(os)) if !os.is_empty() => os.to_string(),
        _ => format!("d{id}"),
    };
    crate::info!(
        "d{id}: built {} ({}-bit, {} MiB): image {:#x}-{:#x} entry {:#x}; start_info {:#x}, {} page-table frames at {:#x}, stack top {:#x}",
        name,
        if compat { 32 } else { 64 },
        (nr_pages * PAGE) >> 20,
        img.virt_kstart,
        img.virt_kend,
        img.entry,
        l.vstartinfo,
        l.nr_pt,
        l.vpt,
        l.vstack_end
    );
    if let Some(a) = l.p2m {
        crate::info!(
            "d{id}: P2M list at {:#x} (INIT_P2M): pfns {:#x}.., {} frames with its page tables",
            a.va,
            a.first_pfn,
            a.frames()
        );
    }
    if let Some(pfn) = l.initrd_pfn {
        crate::info!(
            "d{id}: initrd of {} bytes at pfn {pfn:#x}, mod_start {:#x}{}",
            initrd.len(),
            l.mod_start,
            if unmapped_initrd {
                " (a PFN: MOD_START_PFN)"
            } else {
                " (mapped)"
            }
        );
    }
    Ok(Domain {
        id,
        name,
        max_pages: nr_pages,
        p2m,
        p2m_moved: alloc::collections::BTreeMap::new(),
        pirq_eoi_mfn: 0,
        shared_info_mfn: shared.0,
        privileged: id == 0,
        cmos_idx: 0,
        width: if compat {
            super::Width::W32
        } else {
            super::Width::W64
        },
        vm_assist: 0,
        vcpus: core::iter::once(v)
            .chain((1..nr_vcpus as u32).map(Vcpu::new))
            .collect(),
        cur: 0,
        max_running: 0,
        running: 0,
        state: State::Running,
        console_line: String::new(),
        console_in: alloc::collections::VecDeque::new(),
        gnttab: super::grant::GrantTable::new(),
        watchdogs: [None; 2],
        console_budget: super::CONSOLE_BURST,
        console_refilled: 0,
        console_dropped: 0,
        console_quiet: Default::default(),
        iopl_assist: Default::default(),
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
    s.mod_start = si.mod_start as u32;
    s.mod_len = si.mod_len as u32;
    s.cmd_line = si.cmd_line;
    s
}

/// A 32-bit guest runs under a top-level table of the hypervisor's: slot
/// 0 maps the guest's PAE L3 (its 4 GiB), slots 256-271 the hypervisor.
/// (Xen's compat L4; the guest never sees it.)
pub fn compat_l4(guest_l3: u64) -> Option<u64> {
    let t = FrameView::alloc_zeroed()?;
    t.write(0, guest_l3 << 12 | PTE_P | PTE_RW | PTE_US | PTE_A);
    for (i, &e) in paging::hypervisor_l4_slots().iter().enumerate() {
        t.write(paging::HV_FIRST_SLOT + i, e);
    }
    Some(t.mfn())
}

pub use super::INVALID_MFN;

fn release_frames(mfns: &[u64], ft: &FrameTable) {
    for &mfn in mfns {
        ft.release(mfn);
        paging::m2p_set(mfn, paging::M2P_INVALID);
        let _ = paging::with_frames(|fa| fa.free(crate::mm::frame::Frame(mfn)));
    }
}

/// Give every frame of a finished domain back to the pool.
pub fn teardown(d: &mut Domain, ft: &FrameTable) {
    if d.p2m.is_empty() {
        return; // already done
    }
    super::grant::teardown(d, ft);
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
