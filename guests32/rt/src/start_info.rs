//! The 32-bit `start_info`, the mapped 32-bit `shared_info`, and the
//! guest's own PAE page tables (read-only walks).
//!
//! The builder passes `start_info` in `%esi` (`struct start_info` with the
//! 32-bit layout: `unsigned long` fields are 4 bytes). `shared_info` is
//! *not* mapped by Xen's builder: `start_info.shared_info` is its machine
//! address, and the guest maps it itself. Like XTF, the runtime maps it
//! with `update_va_mapping` over a page of its own `.bss` ([`SHARED_INFO`]).
//! Its layout is the 32-bit one (`SharedInfo32`/`VcpuInfo32`:
//! `evtchn_pending_sel` is 4 bytes, `arch.cr2` at offset 8).

use core::ptr::{addr_of, addr_of_mut};

use crate::abi::{self, x86_32::SharedInfo32, x86_32::StartInfo32, x86_32::VcpuInfo32};
use crate::cell::{GuestCell, Page};

/// The page `shared_info` is mapped over (its original frame is simply no
/// longer mapped there).
pub static SHARED_INFO: Page = Page::new();

static START_INFO: GuestCell<usize> = GuestCell::new(0);

/// `start_info.magic` of a 32-bit PAE PV guest: Xen writes
/// `"xen-3.0-x86_%d%s"` with 32 and `"p"` for PAE (`dom0_build.c`).
pub const MAGIC: &[u8] = b"xen-3.0-x86_32p";

/// x86 PAE page-table entry bits (architectural, not Xen ABI, so not in
/// ringvisor-abi).
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;
pub const PTE_PSE: u64 = 1 << 7;
pub const PTE_NX: u64 = 1 << 63;
/// The frame-address bits of a PAE entry (bits 12-51).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

#[cfg_attr(not(target_arch = "x86"), allow(dead_code))]
pub(crate) fn init(si: &'static StartInfo32) {
    START_INFO.set(si as *const StartInfo32 as usize);
}

/// The `start_info` the builder passed.
pub fn start_info() -> &'static StartInfo32 {
    let p = START_INFO.get() as *const StartInfo32;
    assert!(!p.is_null(), "start_info used before _start");
    // SAFETY: set once in `init` from the builder's pointer, which stays
    // mapped and unchanged for the life of the guest.
    unsafe { &*p }
}

/// `Ok` if `magic` is `xen-3.0-x86_32p` (NUL-terminated).
pub fn check_magic(si: &StartInfo32) -> Result<(), &'static str> {
    if crate::console::until_nul(&si.magic) == MAGIC {
        Ok(())
    } else {
        Err("magic is not xen-3.0-x86_32p")
    }
}

/// `start_info.cmd_line` up to its NUL.
pub fn cmd_line(si: &StartInfo32) -> &[u8] {
    crate::console::until_nul(&si.cmd_line)
}

/// Maps `shared_info` at [`SHARED_INFO`] (present, writable), as XTF does.
#[cfg_attr(not(target_arch = "x86"), allow(dead_code))]
pub(crate) fn map_shared_info(si: &StartInfo32) -> Result<(), i32> {
    let pte = u64::from(si.shared_info) | PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY;
    // SAFETY: the page belongs to the runtime and nothing else refers to
    // its old contents.
    let rc = unsafe {
        crate::hypercall::update_va_mapping(SHARED_INFO.addr(), pte, abi::UVMF_INVLPG as u32)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

/// The mapped `shared_info` (32-bit layout).
pub fn shared_info() -> *mut SharedInfo32 {
    SHARED_INFO.0.get().cast()
}

fn vcpu0() -> *mut VcpuInfo32 {
    // SAFETY: in bounds of the mapped page; no reference is created.
    unsafe { addr_of_mut!((*shared_info()).vcpu_info[0]) }
}

/// `vcpu_info[0].evtchn_upcall_mask`.
pub fn upcall_mask() -> u8 {
    // SAFETY: mapped page; volatile because the hypervisor writes it.
    unsafe { addr_of!((*vcpu0()).evtchn_upcall_mask).read_volatile() }
}

/// Sets `vcpu_info[0].evtchn_upcall_mask` (1: events masked). Unmasking
/// does not deliver what is pending: see
/// [`crate::hypercall::force_event_check`].
pub fn set_upcall_mask(mask: u8) {
    // SAFETY: mapped page, a byte the guest owns (xen.h: "only touched by
    // the guest and by Xen on the CPU hosting the vCPU").
    unsafe { addr_of_mut!((*vcpu0()).evtchn_upcall_mask).write_volatile(mask) }
}

/// `vcpu_info[0].evtchn_upcall_pending`.
pub fn upcall_pending() -> u8 {
    // SAFETY: as `upcall_mask`.
    unsafe { addr_of!((*vcpu0()).evtchn_upcall_pending).read_volatile() }
}

/// `vcpu_info[0].arch.cr2` (32 bits at offset 8 of the 32-bit
/// `vcpu_info`): the address of the last page fault bounced.
pub fn cr2() -> u32 {
    // SAFETY: as `upcall_mask`.
    unsafe { addr_of!((*vcpu0()).arch.cr2).read_volatile() }
}

/// The P2M list: `nr_pages` 32-bit MFNs (`xen_pfn_t` is `unsigned long`).
fn p2m(pfn: u32) -> u32 {
    let list = start_info().mfn_list as usize as *const u32;
    // SAFETY: the builder maps the P2M list, nr_pages entries long, in
    // the bootstrap region; callers check pfn < nr_pages.
    unsafe { list.add(pfn as usize).read_volatile() }
}

/// The machine frame behind `va`, for an address in the bootstrap region
/// (image, start_info, page tables...): pseudo-physical frame
/// `(va - VIRT_BASE) / 4096` looked up in the P2M list (`mfn_list`).
pub fn virt_to_mfn(va: u32) -> Option<u32> {
    let pfn = va.checked_sub(crate::VIRT_BASE)? >> 12;
    (pfn < start_info().nr_pages).then(|| p2m(pfn))
}

/// Where the bootstrap region maps machine frame `mfn` (a linear search
/// of the P2M list: only for the page tables, a handful of frames).
pub fn mfn_to_virt(mfn: u64) -> Option<u32> {
    let si = start_info();
    (0..si.nr_pages)
        .find(|&pfn| u64::from(p2m(pfn)) == mfn)
        .map(|pfn| crate::VIRT_BASE + pfn * crate::PAGE_SIZE)
}

/// One entry of the guest's page tables: its machine address (for
/// `mmu_update`) and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtEntry {
    pub maddr: u64,
    pub val: u64,
}

fn read_entry(table_mfn: u64, index: u32) -> Option<PtEntry> {
    let va = mfn_to_virt(table_mfn)?;
    let p = (va + index * 8) as usize as *const u64;
    // SAFETY: the page tables are mapped read-only in the bootstrap
    // region; index < 512.
    let val = unsafe { p.read_volatile() };
    Some(PtEntry {
        maddr: (table_mfn << 12) + u64::from(index) * 8,
        val,
    })
}

/// The PAE walk of `va` in the guest's own tables, top first: the L3
/// entry (in the page at `start_info.pt_base`, the "page directory" of
/// `xen.h`, which for PAE is the 4-entry L3), the L2 entry and, if both
/// are present and the L2 entry is not a superpage, the L1 entry.
pub fn walk(va: u32) -> [Option<PtEntry>; 3] {
    let l3_mfn = match virt_to_mfn(start_info().pt_base) {
        Some(m) => u64::from(m),
        None => return [None; 3],
    };
    let l3 = read_entry(l3_mfn, va >> 30);
    let l2 = l3
        .filter(|e| e.val & PTE_PRESENT != 0)
        .and_then(|e| read_entry((e.val & PTE_ADDR) >> 12, (va >> 21) & 511));
    let l1 = l2
        .filter(|e| e.val & PTE_PRESENT != 0 && e.val & PTE_PSE == 0)
        .and_then(|e| read_entry((e.val & PTE_ADDR) >> 12, (va >> 12) & 511));
    [l3, l2, l1]
}
