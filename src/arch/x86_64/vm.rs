//! The hypervisor's virtual address space as the CPU sees it: its layout,
//! the direct map of physical memory, its own top-level table and a walk
//! of it, read only. Editing the tables and the frames they are made of
//! is `mm::paging`'s, above: it sets the root here once it has built the
//! tables (`set_root`) and registers the two edits arch itself needs, a
//! device-register page and a CPU's stacks (`set_mapper`).

use core::sync::atomic::{AtomicU64, Ordering};

pub const KERNEL_VMA: u64 = 0xffff_82d0_8000_0000;
pub const DIRECTMAP_BASE: u64 = 0xffff_8300_0000_0000;
pub const FIXMAP_BASE: u64 = 0xffff_82c0_0000_0000;
/// Application processors' stacks: CPU n's in the MiB at `+ n << 20`.
pub const CPU_STACKS_BASE: u64 = 0xffff_82c8_0000_0000;
/// The boot page tables direct-map this much (boot/boot.S).
pub const BOOT_DIRECTMAP: u64 = 4 << 30;
/// Bytes in a page (`mm::frame::PAGE_SIZE`, which is checked equal).
pub const PAGE_SIZE: u64 = 4096;

const P: u64 = 1 << 0;
const PS: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Physical address of our PML4 (0 until `mm::paging::init` switches to it).
static ROOT: AtomicU64 = AtomicU64::new(0);
static DIRECTMAP_END: AtomicU64 = AtomicU64::new(BOOT_DIRECTMAP);

pub fn phys_to_virt(p: u64) -> u64 {
    DIRECTMAP_BASE + p
}

/// The hypervisor's tables are live (`mm::paging::init`, after its
/// `cr3` write): `root` is their PML4, and the direct map covers
/// `[0, directmap_end)`.
pub fn set_root(root: u64, directmap_end: u64) {
    ROOT.store(root, Ordering::Relaxed);
    DIRECTMAP_END.store(directmap_end, Ordering::Relaxed);
}

/// Entry `i` of the page table at `phys`, read through the direct map.
fn entry(phys: u64, i: usize) -> u64 {
    debug_assert!(phys < max_ram() && i < 512);
    // SAFETY: `phys` is a page-table frame of the hypervisor's own tables
    // (the root, or an entry of one), inside the direct map; an aligned
    // word read, as the CPU's own walk reads it (no reference is made:
    // `mm::paging` may be editing the table).
    unsafe { (phys_to_virt(phys) as *const u64).add(i).read_volatile() }
}

fn idx(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

/// PML4 slots 256..272: 0xffff800000000000..0xffff880000000000.
pub const HV_FIRST_SLOT: usize = 256;
pub const HV_SLOTS: usize = 16;

/// The hypervisor's PML4 entries for its range, to copy into every guest
/// top-level table (without the user bit: the guest cannot touch them).
pub fn hypervisor_l4_slots() -> [u64; HV_SLOTS] {
    let root = ROOT.load(Ordering::Relaxed);
    core::array::from_fn(|i| entry(root, HV_FIRST_SLOT + i))
}

/// The hypervisor's own top-level table (for running with no guest).
pub fn root() -> u64 {
    ROOT.load(Ordering::Relaxed)
}

/// The end of the direct-mapped physical space (all RAM).
pub fn max_ram() -> u64 {
    DIRECTMAP_END.load(Ordering::Relaxed)
}

/// Is `pa` RAM reachable through the direct map?
pub fn is_ram(pa: u64) -> bool {
    pa < DIRECTMAP_END.load(Ordering::Relaxed)
}
/// Where `va` is mapped in the hypervisor's tables, if it is.
pub fn translate(va: u64) -> Option<u64> {
    let mut t = root();
    if t == 0 {
        return None;
    }
    for level in (0..4).rev() {
        let e = entry(t, idx(va, level));
        if e & P == 0 {
            return None;
        }
        if level == 0 || (e & PS != 0 && level <= 2) {
            let size = 1u64 << (12 + 9 * level);
            return Some((e & ADDR & !(size - 1)) | (va & (size - 1)));
        }
        t = e & ADDR;
    }
    None
}

/// Read a word of hypervisor memory if it is mapped (the fault dump uses it
/// so a wild stack pointer cannot fault again).
pub fn read_hypervisor_u64(va: u64) -> Option<u64> {
    if !va.is_multiple_of(8) {
        return None;
    }
    let pa = translate(va)?;
    if pa + 8 > max_ram() {
        return None;
    }
    // SAFETY: `pa` is mapped RAM (translate walked our own tables), read
    // through the direct map; an aligned u64 read of it cannot fault.
    Some(unsafe { (phys_to_virt(pa) as *const u64).read_volatile() })
}

/// Physical memory through the boot direct map, for parsing the loader's
/// structures before `init`.
pub struct BootPhysMem;

impl crate::boot_info::PhysMem for BootPhysMem {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if end > BOOT_DIRECTMAP {
            return None;
        }
        // SAFETY: the boot page tables map [0, 4 GiB) at the direct map;
        // the loader's structures are read-only input that nobody writes
        // while we parse them.
        Some(unsafe { core::slice::from_raw_parts(phys_to_virt(addr) as *const u8, len) })
    }
}

/// All RAM through the direct map, for reading firmware tables (ACPI)
/// once `init` has mapped everything up to [`max_ram`].
pub struct DirectMapMem;

impl crate::boot_info::PhysMem for DirectMapMem {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if end > max_ram() {
            return None;
        }
        // SAFETY: [addr, end) is inside the direct map, which maps all of
        // it (RAM, firmware tables, holes: uncached through the MTRRs);
        // what is read is firmware data nobody writes while we parse it.
        Some(unsafe { core::slice::from_raw_parts(phys_to_virt(addr) as *const u8, len) })
    }
}

/// The table edits arch needs from `mm::paging` (registered there at
/// init, before any of them is used: the APIC, the firmware's registers,
/// the application processors come after it).
pub struct Mapper {
    /// Map one page of device registers, uncached; returns its address.
    pub map_mmio: fn(u64) -> u64,
    /// Map `pages` frames from `phys` at `va` (in [`CPU_STACKS_BASE`]'s
    /// range), writable, no-execute: a stack.
    pub map_stack: fn(u64, u64, u64),
    /// `pages` contiguous free frames (their physical address).
    pub alloc_contiguous: fn(u64) -> Option<u64>,
}

static MAPPER: spin::Once<Mapper> = spin::Once::new();

pub fn set_mapper(m: Mapper) {
    MAPPER.call_once(|| m);
}

fn mapper() -> &'static Mapper {
    MAPPER
        .get()
        .expect("mm::paging::init registers the mapper first")
}

/// Map one page of device registers at `phys`, uncached.
pub fn map_mmio(phys: u64) -> u64 {
    (mapper().map_mmio)(phys)
}

/// Map a stack of `pages` frames from `phys` at `va`.
pub fn map_stack(va: u64, phys: u64, pages: u64) {
    (mapper().map_stack)(va, phys, pages)
}

/// `pages` contiguous free frames, or `None`.
pub fn alloc_contiguous(pages: u64) -> Option<u64> {
    (mapper().alloc_contiguous)(pages)
}
