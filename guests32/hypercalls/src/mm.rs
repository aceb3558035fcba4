//! mmu_update, update_va_mapping (the PTE in two halves) and mmuext_op
//! (12-byte entries), on frames of the guest's own that nothing maps.
//!
//! The walk-through: three free frames L, A, B (pseudo-physical pages
//! past the bootstrap region: in the P2M, mapped nowhere). L is mapped at
//! a scratch page, zeroed, unmapped, pinned as an L1 and linked into the
//! L2 at the free address `FREE_VA` with `mmu_update`; A and B are then
//! mapped through it with `mmu_update` (L1 entry by machine address) and
//! `update_va_mapping`, read and written, and everything is taken apart
//! again.

use core::ptr::{read_volatile, write_bytes, write_volatile};

use pvguest32::abi::{self, MmuExtOp32, MmuUpdate};
use pvguest32::cell::{GuestCell, Page};
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info, Rc};
use pvguest32::start_info;
use pvguest32::traps::{catch, expect_fault};
use pvguest32::{va, VIRT_BASE};

use crate::common::*;

/// Mapped over by other frames for a while (its own frame is put back).
static SCRATCH: Page = Page::new();
/// Where page-table frames are mapped read-only to read them.
static SCRATCH2: Page = Page::new();

/// Free: L2 slot 128 of the top quarter, far above the bootstrap region
/// (0xC0000000 + a few MiB) and below the hypervisor hole.
const FREE_VA: u32 = 0xD000_0000;

/// The local APIC's page (0xFEE00000): MMIO, no domain's memory. Xen
/// refuses a domain's mapping of it with -EPERM (get_page_from_l1e: "non-
/// privileged attempt to map MMIO space"; dom0 too: dom0_setup_permissions
/// denies the local APIC).
const LAPIC_MFN: u32 = 0xfee00;

fn uvm(va: u32, pte: u64) -> i32 {
    // SAFETY: every caller maps a scratch page or FREE_VA..+4 pages, which
    // nothing else uses, or makes a call that is refused.
    unsafe { hc::update_va_mapping(va, pte, abi::UVMF_INVLPG as u32) }
}

fn ext1(cmd: u32, arg1: u32) -> i32 {
    // SAFETY: pins, unpins and flushes of the guest's own frames.
    unsafe { hc::mmuext1(cmd, arg1, 0) }
}

fn rd(va: u32) -> u32 {
    // SAFETY: callers read pages mapped at that moment (or catch the #PF).
    unsafe { read_volatile(va as usize as *const u32) }
}

fn wr(va: u32, v: u32) {
    // SAFETY: callers write pages mapped writable at that moment (or catch
    // the #PF).
    unsafe { write_volatile(va as usize as *mut u32, v) }
}

/// Entry `i` of the page table mapped read-only at SCRATCH2.
fn entry(i: u32) -> u64 {
    // SAFETY: SCRATCH2 maps a page table while callers use this.
    unsafe { read_volatile((SCRATCH2.addr() as usize as *const u64).add(i as usize)) }
}

/// Three frames of the domain that nothing maps: pseudo-physical pages
/// from the top down whose own address (VIRT_BASE + pfn * 4096) has no
/// L1 entry.
fn free_frames(nr_pages: u32) -> Option<[u32; 3]> {
    let mut out = [0u32; 3];
    let mut n = 0;
    let mut pfn = nr_pages;
    while n < 3 && pfn > 0 {
        pfn -= 1;
        let va = VIRT_BASE + pfn * 4096;
        if va >= HV_START {
            continue;
        }
        let [_, _, l1] = start_info::walk(va);
        if l1.is_some_and(|e| e.val & PTE_PRESENT != 0) {
            return None; // the bootstrap region reaches the top: no luck
        }
        out[n] = start_info::virt_to_mfn(va)?;
        n += 1;
    }
    (n == 3).then_some(out)
}

/// Read at `va` inside a catch: the value, or the #PF's error code.
fn try_rd(va: u32) -> Result<u32, u32> {
    static V: GuestCell<u32> = GuestCell::new(0);
    catch(|| V.set(rd(va)))
        .map(|()| V.get())
        .map_err(|t| t.error_code)
}

/// A frame given back and one taken, with the 32-bit reservation and its
/// 4-byte frame list: the one given back is no longer ours, the new one is
/// ours and written where the list says, nothing past it.
pub fn reservation_round_trip(nr_pages: u32) {
    let Some([f, ..]) = free_frames(nr_pages) else {
        fail(
            "reservation round trip: a free frame",
            format_args!("none found"),
        );
        return;
    };
    let mut list = [f, 0x5a5a_5a5a];
    let mut r = abi::XenMemoryReservation32 {
        extent_start: va(list.as_mut_ptr()),
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: abi::DOMID_SELF,
        _pad0: 0,
    };
    // SAFETY: the frame is one nothing maps; the list is ours.
    let rc = unsafe { hc::memory_op(abi::XENMEM_DECREASE_RESERVATION, va(&r)) };
    check_rc(
        "XENMEM_decrease_reservation of a free frame (4-byte list): 1 done",
        rc,
        1,
    );
    let u = MmuUpdate {
        ptr: (f as u64) << 12 | abi::MMU_MACHPHYS_UPDATE,
        val: 0,
    };
    // SAFETY: refused: the frame is no longer ours.
    let rc = unsafe { hc::mmu_update(va(&u), 1, 0, abi::DOMID_SELF) };
    check_rc(
        "  ... the frame given back is not ours (MACHPHYS_UPDATE -EPERM)",
        rc,
        EPERM,
    );
    let e = crate::m2p::entry(f);
    check(
        "  ... the compat M2P maps the frame given back to nothing (0xffffffff)",
        e == Ok(u32::MAX),
        format_args!("{f:#x}: {e:x?}"),
    );
    list[0] = 0;
    r.extent_start = va(list.as_mut_ptr());
    // SAFETY: one page taken back, within the reservation.
    let rc = unsafe { hc::memory_op(abi::XENMEM_INCREASE_RESERVATION, va(&r)) };
    check_rc("XENMEM_increase_reservation of one page: 1 done", rc, 1);
    check(
        "  ... its frame number written in 4 bytes, nothing after it",
        list[0] != 0 && list[1] == 0x5a5a_5a5a,
        format_args!("list {:#x} {:#x}", list[0], list[1]),
    );
    let u = MmuUpdate {
        ptr: (list[0] as u64) << 12 | abi::MMU_MACHPHYS_UPDATE,
        val: 0,
    };
    let e = crate::m2p::entry(list[0]);
    check(
        "  ... the new frame to a page of ours",
        e.is_ok_and(|p| p < nr_pages),
        format_args!("{:#x}: {e:x?}", list[0]),
    );
    // SAFETY: pfn 0's M2P entry for a frame of ours that nothing maps.
    let rc = unsafe { hc::mmu_update(va(&u), 1, 0, abi::DOMID_SELF) };
    check_rc("  ... and it is ours (MACHPHYS_UPDATE 0)", rc, 0);
    let e = crate::m2p::entry(list[0]);
    check(
        "  ... the compat M2P follows MACHPHYS_UPDATE (0)",
        e == Ok(0),
        format_args!("{:#x}: {e:x?}", list[0]),
    );
}

pub fn run(nr_pages: u32) {
    let Some([fl, fa, fb]) = free_frames(nr_pages) else {
        fail("mm: three free frames", format_args!("none found"));
        return;
    };
    info(format_args!(
        "free frames: L1 {:#x}, A {:#x}, B {:#x}",
        fl, fa, fb
    ));
    let s = SCRATCH.addr();
    let s2 = SCRATCH2.addr();
    let (Some(orig), Some(orig2)) = (start_info::walk(s)[2], start_info::walk(s2)[2]) else {
        fail(
            "mm: the scratch pages' L1 entries",
            format_args!("not found"),
        );
        return;
    };
    // The bootstrap L1 that maps SCRATCH, and the top-level L3.
    let l1_of_s = (orig.maddr >> 12) as u32;
    let l3 = mfn_of(start_info::start_info().pt_base);
    wr(s, 0x5c5c_0001);

    // --- update_va_mapping: an own free frame at the scratch page.
    check_rc(
        "update_va_mapping: own free frame at a scratch page (pte lo, hi)",
        uvm(s, pte(fl, KERNEL_RW)),
        0,
    );
    check(
        "the scratch page now shows the other frame",
        rd(s) != 0x5c5c_0001,
        format_args!("still the old contents"),
    );
    wr(s + 8, 0xfeed_f00d);
    check_eq(
        "write and read back through the new mapping",
        rd(s + 8),
        0xfeed_f00d,
    );
    // SAFETY: the page maps frame L, which becomes an L1: all entries 0.
    unsafe { write_bytes(s as usize as *mut u8, 0, 4096) };

    // --- refused: a foreign frame, a writable mapping of a page table.
    check_rc(
        "update_va_mapping of a foreign frame (local APIC MMIO) -EPERM",
        uvm(s, pte(LAPIC_MFN, KERNEL_RO)),
        EPERM,
    );
    check_rc(
        "update_va_mapping of its own L1, writable -EINVAL",
        uvm(s, pte(l1_of_s, KERNEL_RW)),
        EINVAL,
    );
    check_rc(
        "update_va_mapping of its own L3 (pt_base), writable -EINVAL",
        uvm(s, pte(l3, KERNEL_RW)),
        EINVAL,
    );
    check_rc(
        "mmu_update of the scratch page's L1 entry, own L1 writable -EINVAL",
        mmu1(orig.maddr, pte(l1_of_s, KERNEL_RW)),
        EINVAL,
    );
    check_eq("refused updates left the mapping alone", rd(s + 8), 0);
    check_rc(
        "update_va_mapping of its own L1, read-only",
        uvm(s2, pte(l1_of_s, KERNEL_RO)),
        0,
    );
    let e = entry((s >> 12) & 511);
    check_same(
        "its L1 read through the read-only mapping: the scratch entry maps frame L",
        (((e & PTE_ADDR) >> 12) as u32, e & (PTE_PRESENT | PTE_RW)),
        (fl, PTE_PRESENT | PTE_RW),
    );
    check_rc(
        "update_va_mapping: scratch page 2 back",
        uvm(s2, orig2.val),
        0,
    );
    check_rc("update_va_mapping: scratch page back", uvm(s, orig.val), 0);
    check_eq("the scratch page's own contents again", rd(s), 0x5c5c_0001);

    // --- mmuext_op: 12-byte entries, pin / unpin.
    let ops = [
        MmuExtOp32 {
            cmd: abi::MMUEXT_PIN_L1_TABLE,
            arg1: fl,
            arg2: 0,
        },
        MmuExtOp32 {
            cmd: abi::MMUEXT_UNPIN_TABLE,
            arg1: fl,
            arg2: 0,
        },
        MmuExtOp32 {
            cmd: abi::MMUEXT_TLB_FLUSH_LOCAL,
            arg1: 0,
            arg2: 0,
        },
    ];
    let mut done = 0xffff_ffffu32;
    // SAFETY: pins and unpins frame L, which nothing maps; a TLB flush.
    let rc = unsafe {
        hc::mmuext_op(
            va(ops.as_ptr()),
            3,
            va(core::ptr::addr_of_mut!(done)),
            abi::DOMID_SELF,
        )
    };
    check_same(
        "mmuext_op batch [pin L1, unpin, TLB flush] (12-byte entries): 0, done 3",
        (rc, done),
        (0, 3),
    );
    check_rc(
        "mmuext_op pin L1 of a page mapped writable (scratch page 2) -EINVAL",
        ext1(abi::MMUEXT_PIN_L1_TABLE, mfn_of(s2)),
        EINVAL,
    );
    check_rc(
        "mmuext_op pin L1 (frame L)",
        ext1(abi::MMUEXT_PIN_L1_TABLE, fl),
        0,
    );
    check_rc(
        "mmuext_op pin L1 again -EINVAL",
        ext1(abi::MMUEXT_PIN_L1_TABLE, fl),
        EINVAL,
    );
    check_rc(
        "update_va_mapping of the pinned L1, writable -EINVAL",
        uvm(s, pte(fl, KERNEL_RW)),
        EINVAL,
    );

    // --- mmu_update: link L at FREE_VA, map A through it.
    let Some(l2e) = start_info::walk(FREE_VA)[1] else {
        fail("mm: the L2 entry of FREE_VA", format_args!("no L2"));
        return;
    };
    if l2e.val & PTE_PRESENT != 0 {
        fail(
            "mm: FREE_VA is free",
            format_args!("L2 entry {:#x}", l2e.val),
        );
        return;
    }
    check_rc(
        "mmu_update: L2 entry of a free address -> the pinned L1",
        mmu1(l2e.maddr, pte(fl, PTE_PRESENT | PTE_RW | PTE_ACCESSED)),
        0,
    );
    let l1e = |i: u32| (u64::from(fl) << 12) + u64::from(i) * 8;
    check_rc(
        "mmu_update: L1 entry (by machine address) -> own free frame A",
        mmu1(l1e(0), pte(fa, KERNEL_RW)),
        0,
    );
    let r = catch(|| wr(FREE_VA, 0x0bad_cafe));
    check(
        "write through the new mapping at the free address",
        r.is_ok(),
        format_args!("{:?}", r),
    );
    check_same(
        "read back at the free address",
        try_rd(FREE_VA),
        Ok(0x0bad_cafe),
    );

    // --- update_va_mapping through the new L1; the PTE in two halves.
    check_rc(
        "update_va_mapping: frame A at the free address + 4 KiB",
        uvm(FREE_VA + 4096, pte(fa, KERNEL_RW)),
        0,
    );
    check_same(
        "the second mapping shows what the first wrote (same frame)",
        try_rd(FREE_VA + 4096),
        Ok(0x0bad_cafe),
    );
    let nx_ro = pte(fb, KERNEL_RO | PTE_NX);
    check_rc(
        "update_va_mapping: frame B read-only + NX (hi half 0x80000000)",
        uvm(FREE_VA + 2 * 4096, nx_ro),
        0,
    );
    check_rc(
        "update_va_mapping: bit 62 (Xen's _PAGE_GNTTAB) in the hi half -EINVAL",
        uvm(FREE_VA + 3 * 4096, pte(fb, KERNEL_RO) | 1 << 62),
        EINVAL,
    );
    // A domain with I/O memory (the initial one) chooses cache
    // attributes, as Xen's l1_disallow_mask; any other: -EINVAL.
    let d0 = start_info::start_info().flags & abi::SIF_INITDOMAIN != 0;
    check_rc(
        if d0 {
            "update_va_mapping: PCD as the initial domain: 0 (it may choose cache attributes)"
        } else {
            "update_va_mapping: PCD (a second memory type) -EINVAL"
        },
        uvm(FREE_VA + 3 * 4096, pte(fb, KERNEL_RO) | 1 << 4),
        if d0 { 0 } else { EINVAL },
    );
    check_rc(
        "update_va_mapping: software bit 52 in the hi half is the guest's: 0",
        uvm(FREE_VA + 3 * 4096, pte(fb, KERNEL_RO) | 1 << 52),
        0,
    );
    check_rc("and unmapped again", uvm(FREE_VA + 3 * 4096, 0), 0);
    check_rc(
        "update_va_mapping of L read-only at scratch page 2",
        uvm(s2, pte(fl, KERNEL_RO)),
        0,
    );
    let e2 = entry(2);
    check_same(
        "L entry 2: frame B, NX from the hi half, read-only",
        (
            ((e2 & PTE_ADDR) >> 12) as u32,
            e2 & (PTE_NX | PTE_RW | PTE_PRESENT),
        ),
        (fb, PTE_NX | PTE_PRESENT),
    );
    check_eq("L entry 3: the refused one left empty", entry(3), 0);
    check(
        "read at the read-only mapping",
        try_rd(FREE_VA + 2 * 4096).is_ok(),
        format_args!("faulted"),
    );
    expect_fault(
        "write at the read-only mapping: #PF ec 3 (P|W)",
        14,
        Some(3),
        || wr(FREE_VA + 2 * 4096, 1),
    );

    // --- mmu_update refusals and batches.
    check_rc(
        "mmu_update: L1 entry -> foreign frame (local APIC MMIO) -EPERM",
        mmu1(l1e(4), pte(LAPIC_MFN, KERNEL_RO)),
        EPERM,
    );
    check_rc(
        "mmu_update: L1 entry -> the L1 itself, writable -EINVAL",
        mmu1(l1e(4), pte(fl, KERNEL_RW)),
        EINVAL,
    );
    let reqs = [
        MmuUpdate {
            ptr: l1e(5) | abi::MMU_NORMAL_PT_UPDATE,
            val: pte(fb, KERNEL_RO),
        },
        MmuUpdate {
            ptr: l1e(6) | abi::MMU_NORMAL_PT_UPDATE,
            val: pte(LAPIC_MFN, KERNEL_RO),
        },
    ];
    let mut done = 0xffff_ffffu32;
    // SAFETY: maps frame B read-only at FREE_VA + 5 pages; the second is
    // refused.
    let rc = unsafe {
        hc::mmu_update(
            va(reqs.as_ptr()),
            2,
            va(core::ptr::addr_of_mut!(done)),
            abi::DOMID_SELF,
        )
    };
    check_same(
        "mmu_update batch [good, foreign]: -EPERM, done 1",
        (rc, done),
        (EPERM, 1),
    );
    check_same(
        "L entries 4, 5, 6 after the refusals and the batch",
        (entry(4), ((entry(5) & PTE_ADDR) >> 12) as u32, entry(6)),
        (0, fb, 0),
    );
    check_rc(
        "update_va_mapping in the hypervisor hole (0xF5800000) -EINVAL",
        uvm(HV_START, pte(fb, KERNEL_RO)),
        EINVAL,
    );
    check_rc(
        "mmuext_op TLB_FLUSH_LOCAL",
        ext1(abi::MMUEXT_TLB_FLUSH_LOCAL, 0),
        0,
    );
    check_rc(
        "mmuext_op INVLPG_LOCAL of the free address",
        ext1(abi::MMUEXT_INVLPG_LOCAL, FREE_VA),
        0,
    );
    check_rc("mmuext_op command 99 -ENOSYS", ext1(99, 0), ENOSYS);

    // --- taken apart again.
    check_rc("scratch page 2 back", uvm(s2, orig2.val), 0);
    let mut zapped = true;
    for i in [0u32, 1, 2, 5] {
        zapped &= uvm(FREE_VA + i * 4096, 0) == 0;
    }
    check(
        "update_va_mapping(.., 0) unmaps the free addresses",
        zapped,
        format_args!("refused"),
    );
    expect_fault(
        "read at the unmapped free address: #PF ec 0",
        14,
        Some(0),
        || {
            rd(FREE_VA);
        },
    );
    check_rc(
        "mmu_update: L2 entry of the free address -> 0",
        mmu1(l2e.maddr, 0),
        0,
    );
    check_rc("mmuext_op unpin L", ext1(abi::MMUEXT_UNPIN_TABLE, fl), 0);
    check_rc(
        "mmuext_op unpin again -EINVAL",
        ext1(abi::MMUEXT_UNPIN_TABLE, fl),
        EINVAL,
    );
    check_rc(
        "frame L, no longer a page table, maps writable again",
        uvm(s, pte(fl, KERNEL_RW)),
        0,
    );
    let back = uvm(s, orig.val);
    check(
        "scratch page back at the end",
        back == 0 && rd(s) == 0x5c5c_0001,
        format_args!("returned {}", Rc(back)),
    );
}
