//! The hypervisor's own page tables.
//!
//! Layout inside the range the PV ABI reserves for the hypervisor
//! (0xffff800000000000..0xffff880000000000), as Xen lays out its own:
//!
//! | virtual address | what |
//! |---|---|
//! | 0xffff82c000000000 | fixmap: device registers (local APIC), uncached |
//! | 0xffff82c800000000 | the other CPUs' stacks, 1 MiB each, unmapped guard pages between |
//! | 0xffff82d080000000 | the hypervisor image, 4 KiB pages, W^X |
//! | 0xffff830000000000 | direct map of all RAM (2 MiB or 1 GiB pages, no-execute) |
//!
//! Nothing is mapped in the lower half: that belongs to guests.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use x86::controlregs::cr3_write;

use super::frame::{bitmap_bytes, find_hole, FrameAllocator, PAGE_SIZE};
use crate::arch::x86_64::cpu::Features;
use crate::boot_info::{BootInfo, RegionKind};

// The layout and the read side of the hypervisor's tables are arch's
// (arch/x86_64/vm.rs); this module edits the tables and owns the frames.
use crate::arch::x86_64::vm;
pub use crate::arch::x86_64::vm::{
    hypervisor_l4_slots, is_ram, max_ram, phys_to_virt, root, BootPhysMem, BOOT_DIRECTMAP,
    DIRECTMAP_BASE, FIXMAP_BASE, HV_FIRST_SLOT, HV_SLOTS, KERNEL_VMA,
};

const _: () = assert!(PAGE_SIZE == vm::PAGE_SIZE);

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX_BIT: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);
/// NX when the CPU has it, else 0 (the bit is reserved without EFER.NXE).
static NX: AtomicU64 = AtomicU64::new(0);
static NEXT_FIXMAP: AtomicU64 = AtomicU64::new(FIXMAP_BASE);

extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static boot_stack_guard: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

pub fn image_phys_range() -> (u64, u64) {
    // SAFETY: linker-script symbols; only their addresses are used.
    let (s, e) = unsafe { (sym(&__image_start), sym(&__image_end)) };
    (s - KERNEL_VMA, e - KERNEL_VMA)
}

pub fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator<'static>) -> R) -> R {
    f(FRAMES
        .lock()
        .as_mut()
        .expect("frame allocator used before mm::init"))
}

/// A page table through the direct map.
fn table(phys: u64) -> &'static mut [u64; 512] {
    debug_assert!(phys < vm::max_ram());
    // SAFETY: `phys` is a page-table frame the hypervisor allocated (or the
    // CPU's CR3 chain points at), inside the direct map; page tables are
    // only edited with the frame allocator's lock or during single-threaded
    // boot, so no other reference is live.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

fn alloc_table() -> u64 {
    let f = with_frames(|fa| fa.alloc()).expect("out of memory building hypervisor page tables");
    table(f.addr()).fill(0);
    f.addr()
}

/// The table below `parent[idx]`, created if absent.
fn next(parent: u64, idx: usize) -> u64 {
    let t = table(parent);
    if t[idx] & P == 0 {
        t[idx] = alloc_table() | P | RW;
    }
    t[idx] & ADDR
}

fn idx(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

fn map_4k(root: u64, va: u64, pa: u64, flags: u64) {
    let pdpt = next(root, idx(va, 3));
    let pd = next(pdpt, idx(va, 2));
    let pt = next(pd, idx(va, 1));
    table(pt)[idx(va, 0)] = pa | flags;
}

pub struct Summary {
    pub usable: u64,
    pub free_after: u64,
    pub directmap_end: u64,
    pub gbpages: bool,
}

/// Set up the frame pool, build the hypervisor's page tables, switch to them.
pub fn init(bi: &BootInfo, f: &Features) -> Summary {
    NX.store(if f.nx { NX_BIT } else { 0 }, Ordering::Relaxed);
    let nx = NX.load(Ordering::Relaxed);

    // --- the frame pool ---
    let mut usable = [(0u64, 0u64); crate::boot_info::MAX_REGIONS];
    let mut n = 0;
    for r in bi.regions().iter().filter(|r| r.kind == RegionKind::Usable) {
        usable[n] = (r.start, r.end);
        n += 1;
    }
    let usable = &usable[..n];
    let mut reserved = [(0u64, 0u64); crate::boot_info::MAX_MODULES + 2];
    // Below 1 MiB: BIOS data, option ROMs, and later real-mode trampolines.
    reserved[0] = (0, 1 << 20);
    reserved[1] = image_phys_range();
    for (i, m) in bi.modules().iter().enumerate() {
        reserved[2 + i] = (m.start, m.end);
    }
    let reserved = &reserved[..2 + bi.modules().len()];
    let max = bi.max_usable();
    let bytes = bitmap_bytes(max);
    let hole = find_hole(usable, reserved, bytes)
        .filter(|h| h + bytes <= BOOT_DIRECTMAP)
        .unwrap_or_else(|| panic!("no room for the frame bitmap ({bytes} bytes) in low RAM"));
    // SAFETY: [hole, hole+bytes) is usable RAM that nothing else uses (it
    // avoids the image, modules and low memory), reachable through the
    // boot direct map, and reserved in the pool below, so it is never
    // handed out: this is the only reference to it, forever.
    let bits = unsafe {
        core::slice::from_raw_parts_mut(phys_to_virt(hole) as *mut u64, (bytes / 8) as usize)
    };
    let mut fa = FrameAllocator::new(bits, max);
    for &(s, e) in usable {
        fa.add_free(s, e);
    }
    for &(s, e) in reserved {
        fa.reserve(s, e);
    }
    fa.reserve(hole, hole + bytes);
    *FRAMES.lock() = Some(fa);

    // --- the page tables ---
    let root = alloc_table();
    // Direct map: all RAM and at least the low 4 GiB (device holes are
    // uncached through the MTRRs), rounded up to whole GiB.
    let dm_end = max.max(BOOT_DIRECTMAP).next_multiple_of(1 << 30);
    let mut pa = 0;
    while pa < dm_end {
        let va = phys_to_virt(pa);
        let pdpt = next(root, idx(va, 3));
        if f.gbpages {
            table(pdpt)[idx(va, 2)] = pa | P | RW | PS | G | nx;
        } else {
            let pd = next(pdpt, idx(va, 2));
            for i in 0..512 {
                table(pd)[i] = (pa + i as u64 * (2 << 20)) | P | RW | PS | G | nx;
            }
        }
        pa += 1 << 30;
    }

    // Every PML4 slot of the hypervisor's range gets its PDPT now, so guest
    // top-level tables can share these entries and see every later
    // hypervisor mapping.
    for slot in HV_FIRST_SLOT..HV_FIRST_SLOT + HV_SLOTS {
        next(root, slot);
    }

    // The image, W^X: text read+execute, rodata read-only, data/bss
    // read+write no-execute; the boot stack's guard page stays unmapped.
    // SAFETY: linker-script symbols; only their addresses are used.
    let (start, text_end, ro_end, end, guard) = unsafe {
        (
            sym(&__image_start),
            sym(&__text_end),
            sym(&__rodata_end),
            sym(&__image_end),
            sym(&boot_stack_guard),
        )
    };
    let mut va = start;
    while va < end {
        let flags = if va < text_end {
            P | G
        } else if va < ro_end {
            P | G | nx
        } else {
            P | RW | G | nx
        };
        if va != guard {
            map_4k(root, va, va - KERNEL_VMA, flags);
        }
        va += PAGE_SIZE;
    }

    // SAFETY: the new tables map everything the hypervisor uses from here
    // on: its image (code, stacks, statics) and RAM through the direct map,
    // which is where every pointer we hold points. The identity map goes.
    unsafe { cr3_write(root) };
    vm::set_root(root, dm_end);
    vm::set_mapper(vm::Mapper {
        map_mmio,
        map_stack,
        alloc_contiguous: |pages| with_frames(|fa| fa.alloc_contiguous(pages, 1)).map(|f| f.addr()),
    });

    Summary {
        usable: usable.iter().map(|(s, e)| e - s).sum(),
        free_after: with_frames(|fa| fa.free_frames()) * PAGE_SIZE,
        directmap_end: dm_end,
        gbpages: f.gbpages,
    }
}

/// The machine-to-physical table: one u64 per machine frame, the guest's
/// pseudo-physical frame for frames a guest owns, else `M2P_INVALID`.
/// Guests read it at its public address (`MACH2PHYS_VIRT_START`, mapped
/// read-only and user-accessible: their kernels run in ring 3); the
/// hypervisor writes it through the direct map.
pub const M2P_INVALID: u64 = !0;
static M2P: AtomicU64 = AtomicU64::new(0);
static M2P_ENTRIES: AtomicU64 = AtomicU64::new(0);

pub fn init_m2p(nframes: u64) -> Option<()> {
    let pages = (nframes * 8).div_ceil(PAGE_SIZE);
    let first = with_frames(|fa| fa.alloc_contiguous(pages, 1))?;
    let base = phys_to_virt(first.addr());
    // SAFETY: freshly allocated frames, ours for good, in the direct map.
    unsafe {
        core::slice::from_raw_parts_mut(base as *mut u64, (pages * 512) as usize).fill(M2P_INVALID)
    };
    let root = vm::root();
    let nx = NX.load(Ordering::Relaxed);
    let va0 = ringvisor_abi::x86_64::MACH2PHYS_VIRT_START;
    for i in 0..pages {
        map_4k(
            root,
            va0 + i * PAGE_SIZE,
            first.addr() + i * PAGE_SIZE,
            P | US | G | nx,
        );
    }
    // The upper levels on the way must allow user access too.
    let mut t = root;
    for level in (1..=3).rev() {
        let e = &mut table(t)[idx(va0, level)];
        *e |= US;
        t = *e & ADDR;
    }
    M2P.store(base, Ordering::Relaxed);
    M2P_ENTRIES.store(pages * 512, Ordering::Relaxed);
    init_compat_m2p(nframes)
}

/// The compat M2P (Xen: `compat_machine_to_phys_mapping`, built by
/// `subarch_init_memory` / `setup_compat_m2p_table`): the same table in
/// 4-byte entries for 32-bit guests, which find it in their own address
/// space at the domain's hypervisor start (`MACH2PHYS_COMPAT_VIRT_START(d)`,
/// 0xF5800000) up to `MACH2PHYS_COMPAT_VIRT_END`. Only the frames that fit
/// that window have an entry (Xen's limit too). Allocated in 2 MiB chunks,
/// mapped by 2 MiB pages: [`COMPAT_M2P_L2`] holds those L2 entries (Xen's
/// `compat_idle_pg_table_l2`), which `init_xen_pae_l2_slots` copies into
/// the L2 a guest's PAE L3 slot 3 points at.
static COMPAT_M2P: AtomicU64 = AtomicU64::new(0);
static COMPAT_M2P_ENTRIES: AtomicU64 = AtomicU64::new(0);
/// Most entries the compat window holds (at the default start, the
/// highest: a guest's `HV_START_LOW` can only lower it).
pub const COMPAT_M2P_MAX_ENTRIES: u64 = (ringvisor_abi::x86_32::MACH2PHYS_COMPAT_VIRT_END
    - ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START)
    as u64
    / 4;
/// L2 slots from the hypervisor start to the top of 4 GiB (Xen's
/// `COMPAT_L2_PAGETABLE_XEN_SLOTS(d)`, 428..=511 at the default start).
pub const COMPAT_L2_XEN_SLOTS: usize =
    512 - ((ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START >> 21) & 511) as usize;
static COMPAT_M2P_L2: spin::Once<[u64; COMPAT_L2_XEN_SLOTS]> = spin::Once::new();

fn init_compat_m2p(nframes: u64) -> Option<()> {
    let entries = nframes.min(COMPAT_M2P_MAX_ENTRIES);
    let chunks = (entries * 4).div_ceil(2 << 20);
    let first = with_frames(|fa| fa.alloc_contiguous(chunks * 512, 512))?;
    let base = phys_to_virt(first.addr());
    // SAFETY: freshly allocated frames, ours for good, in the direct map.
    unsafe {
        core::slice::from_raw_parts_mut(base as *mut u32, (chunks * 512 * 1024) as usize)
            .fill(u32::MAX)
    };
    // Xen's entries: present, 2 MiB, read-only, supervisor (a 32-bit
    // kernel runs in ring 1; its user space cannot read them), not global
    // (they are copied into each guest's tables).
    let mut l2 = [0u64; COMPAT_L2_XEN_SLOTS];
    for (i, e) in l2.iter_mut().take(chunks as usize).enumerate() {
        *e = (first.addr() + i as u64 * (2 << 20)) | P | PS;
    }
    COMPAT_M2P_L2.call_once(|| l2);
    COMPAT_M2P.store(base, Ordering::Relaxed);
    COMPAT_M2P_ENTRIES.store(entries, Ordering::Relaxed);
    Some(())
}

/// The hypervisor's L2 entries for a 32-bit guest's slot-3 L2, from its
/// hypervisor start up (Xen's `compat_idle_pg_table_l2`).
pub fn compat_m2p_l2_slots() -> &'static [u64] {
    COMPAT_M2P_L2.get().map_or(&[], |s| &s[..])
}

/// The machine's memory map as the loader gave it, e820-style `(start,
/// length, type)`, for the initial domain's XENMEM_machine_memory_map.
static MACHINE_MAP: spin::Once<alloc::vec::Vec<(u64, u64, u32)>> = spin::Once::new();

pub fn record_machine_map(regions: impl Iterator<Item = (u64, u64, u32)>) {
    MACHINE_MAP.call_once(|| regions.collect());
}

pub fn machine_map() -> &'static [(u64, u64, u32)] {
    MACHINE_MAP.get().map_or(&[], |v| v.as_slice())
}

/// The pseudo-physical frame machine frame `mfn` is (M2P_INVALID if none).
pub fn m2p_get(mfn: u64) -> u64 {
    if mfn < M2P_ENTRIES.load(Ordering::Relaxed) {
        // SAFETY: inside the table init_m2p allocated; a u64 load.
        unsafe {
            (M2P.load(Ordering::Relaxed) as *const u64)
                .add(mfn as usize)
                .read_volatile()
        }
    } else {
        M2P_INVALID
    }
}

/// Record that machine frame `mfn` is pseudo-physical frame `pfn`.
pub fn m2p_set(mfn: u64, pfn: u64) {
    if mfn < M2P_ENTRIES.load(Ordering::Relaxed) {
        // SAFETY: inside the table init_m2p allocated; a u64 store.
        unsafe {
            (M2P.load(Ordering::Relaxed) as *mut u64)
                .add(mfn as usize)
                .write_volatile(pfn)
        };
    }
    // Xen's set_gpfn_from_mfn keeps the compat M2P in step: the same
    // entry truncated to 4 bytes (M2P_INVALID becomes 0xffffffff).
    if mfn < COMPAT_M2P_ENTRIES.load(Ordering::Relaxed) {
        // SAFETY: inside the table init_compat_m2p allocated; a u32 store.
        unsafe {
            (COMPAT_M2P.load(Ordering::Relaxed) as *mut u32)
                .add(mfn as usize)
                .write_volatile(pfn as u32)
        };
    }
}

/// Map one page of device registers, uncached; returns its address.
pub fn map_mmio(phys: u64) -> u64 {
    let va = NEXT_FIXMAP.fetch_add(PAGE_SIZE, Ordering::Relaxed);
    let nx = NX.load(Ordering::Relaxed);
    map_4k(vm::root(), va, phys & ADDR, P | RW | PCD | PWT | G | nx);
    // SAFETY: invalidating a TLB entry is always sound.
    unsafe { x86::tlb::flush(va as usize) };
    va
}

/// Map `pages` frames from `phys` at `va` (inside [`CPU_STACKS_BASE`]'s
/// range), writable, no-execute: a stack, whose neighbouring pages the
/// caller leaves unmapped as guards. Boot only (single-threaded page
/// table edits).
pub fn map_stack(va: u64, phys: u64, pages: u64) {
    let nx = NX.load(Ordering::Relaxed);
    let root = vm::root();
    for i in 0..pages {
        map_4k(
            root,
            va + i * PAGE_SIZE,
            phys + i * PAGE_SIZE,
            P | RW | G | nx,
        );
    }
}

/// Reading `addr` would fault: used by `selftest=pagefault`.
pub const UNMAPPED_HYPERVISOR_ADDRESS: u64 = 0xffff_8100_dead_0000;

/// `selftest=pagefault`: read [`UNMAPPED_HYPERVISOR_ADDRESS`], on purpose,
/// to show the fatal path (the #PF stops the machine; no value comes back).
pub fn selftest_read_unmapped() -> u64 {
    // SAFETY: deliberately faults: nothing is mapped there, and the page
    // fault handler stops the machine; the value is never used.
    unsafe { (UNMAPPED_HYPERVISOR_ADDRESS as *const u64).read_volatile() }
}
