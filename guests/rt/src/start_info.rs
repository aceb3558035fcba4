//! Start-of-day information (`start_info`) and the `shared_info` page.
//!
//! The builder passes `start_info` in `%rsi`. `shared_info` is *not* mapped
//! by Xen's builder: `start_info.shared_info` is its machine address, and
//! the guest maps it itself. Like XTF, the runtime maps it with
//! `update_va_mapping` over a page of its own `.bss` ([`SHARED_INFO`]).

use core::ptr::{addr_of, addr_of_mut};

use crate::abi::{self, SharedInfo, StartInfo};
use crate::cell::{GuestCell, Page};

/// The page `shared_info` is mapped over (its original frame is simply no
/// longer mapped there).
pub static SHARED_INFO: Page = Page::new();

static START_INFO: GuestCell<usize> = GuestCell::new(0);

/// What `start_info.magic` starts with for a 64-bit PV guest.
pub const MAGIC_PREFIX: &[u8] = b"xen-3.0-x86_64";

/// x86 page-table entry bits (architectural, not Xen ABI, so not in
/// ringvisor-abi).
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_RW: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_ACCESSED: u64 = 1 << 5;
pub const PTE_DIRTY: u64 = 1 << 6;

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn init(si: &'static StartInfo) {
    START_INFO.set(si as *const StartInfo as usize);
}

/// The `start_info` the builder passed.
pub fn start_info() -> &'static StartInfo {
    let p = START_INFO.get() as *const StartInfo;
    assert!(!p.is_null(), "start_info used before _start");
    // SAFETY: set once in `init` from the builder's pointer, which stays
    // mapped and unchanged for the life of the guest.
    unsafe { &*p }
}

/// `Ok` if `magic` starts with `xen-3.0-x86_64`.
pub fn check_magic(si: &StartInfo) -> Result<(), &'static str> {
    if si.magic.starts_with(MAGIC_PREFIX) {
        Ok(())
    } else {
        Err("magic does not start with xen-3.0-x86_64")
    }
}

/// `start_info.cmd_line` up to its NUL.
pub fn cmd_line(si: &StartInfo) -> &[u8] {
    crate::console::until_nul(&si.cmd_line)
}

/// Maps `shared_info` at [`SHARED_INFO`] (present, writable), as XTF does.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn map_shared_info(si: &StartInfo) -> Result<(), i64> {
    let pte = si.shared_info | PTE_PRESENT | PTE_RW;
    // SAFETY: the page belongs to the runtime and nothing else refers to
    // its old contents.
    let rc =
        unsafe { crate::hypercall::update_va_mapping(SHARED_INFO.addr(), pte, abi::UVMF_INVLPG) };
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

/// The mapped `shared_info`.
pub fn shared_info() -> *mut SharedInfo {
    SHARED_INFO.addr() as *mut SharedInfo
}

fn vcpu0() -> *mut abi::VcpuInfo {
    // SAFETY: in bounds of the mapped page; no reference is created.
    unsafe { addr_of_mut!((*shared_info()).vcpu_info[0]) }
}

/// `vcpu_info[0].evtchn_upcall_mask`.
pub fn upcall_mask() -> u8 {
    // SAFETY: mapped page; volatile because the hypervisor writes it.
    unsafe { addr_of!((*vcpu0()).evtchn_upcall_mask).read_volatile() }
}

/// Sets `vcpu_info[0].evtchn_upcall_mask` (1: events masked). Unmasking
/// does not check for pending events: nothing here binds any.
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

/// Clears `evtchn_upcall_pending` and the selector word (an event callback
/// that handles nothing).
pub fn clear_upcall_pending() {
    // SAFETY: guest-owned fields of the mapped page.
    unsafe {
        addr_of_mut!((*vcpu0()).evtchn_upcall_pending).write_volatile(0);
        addr_of_mut!((*vcpu0()).evtchn_pending_sel).write_volatile(0);
    }
}

/// `vcpu_info[0].arch.cr2`: the address of the last page fault bounced.
pub fn cr2() -> u64 {
    // SAFETY: as `upcall_mask`.
    unsafe { addr_of!((*vcpu0()).arch.cr2).read_volatile() }
}

/// The machine frame behind `va`, for an address in the bootstrap region
/// (image, start_info, page tables...): pseudo-physical frame
/// `(va - VIRT_BASE) / 4096` looked up in the P2M list (`mfn_list`).
pub fn virt_to_mfn(va: u64) -> Option<u64> {
    let si = start_info();
    let pfn = va.checked_sub(crate::VIRT_BASE)? >> 12;
    if pfn >= si.nr_pages {
        return None;
    }
    let list = si.mfn_list as *const u64;
    // SAFETY: the builder maps the P2M list, nr_pages entries long, in the
    // bootstrap region; pfn < nr_pages.
    Some(unsafe { list.add(pfn as usize).read_volatile() })
}

/// The value of `key=value` in the guest's command line (words separated
/// by spaces), if there.
pub fn arg(key: &str) -> Option<&'static str> {
    let line = core::str::from_utf8(cmd_line(start_info())).ok()?;
    arg_in(line, key)
}

/// [`arg`] on a given command line.
pub fn arg_in<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// [`arg`] as a number (decimal, or hex with `0x`).
pub fn arg_u32(key: &str) -> Option<u32> {
    let v = arg(key)?;
    match v.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_by_key() {
        let l = "role=client peer=0 port=0x10 x";
        assert_eq!(arg_in(l, "role"), Some("client"));
        assert_eq!(arg_in(l, "peer"), Some("0"));
        assert_eq!(arg_in(l, "port"), Some("0x10"));
        assert_eq!(arg_in(l, "x"), None);
        assert_eq!(arg_in("", "role"), None);
    }
}
