//! The builder's page tables stay counted as mapped: the bootstrap region
//! maps every page-table frame read-only, and those mappings are counted.
//! Moved off (`MMUEXT_NEW_BASEPTR` to a new PAE L3: a copy of slots 0-2
//! and a fresh slot-3 L2 holding the guest part of the old one) and
//! unpinned, the builder's L3 and its slot-3 L2 are ordinary memory still
//! mapped read-only there: `decrease_reservation` refuses both (0 done).
//! The builder once typed its tables with a fresh frame record, which
//! forgot those mappings: the L3 was given back while still readable.
//! Run last: the guest stays on the new tables.
use core::ptr::read_volatile;

use pvguest32::abi;
use pvguest32::hypercall as hc;
use pvguest32::report::{check, fail};
use pvguest32::start_info;
use pvguest32::{va, VIRT_BASE};

use crate::common::*;

fn read64(a: u32) -> u64 {
    // SAFETY: an address of our own mapped tables (read-only for us).
    unsafe { read_volatile(a as usize as *const u64) }
}

fn decrease(mfn: u32) -> i32 {
    let mut list = [mfn];
    let r = abi::XenMemoryReservation32 {
        extent_start: va(list.as_mut_ptr()),
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: abi::DOMID_SELF,
        _pad0: 0,
    };
    // SAFETY: gives back (or not) one frame of ours named in `list`.
    unsafe { hc::memory_op(abi::XENMEM_DECREASE_RESERVATION, va(&r)) }
}

pub fn run(nr_pages: u32) {
    let si = start_info::start_info();
    let Some(old_top) = start_info::virt_to_mfn(si.pt_base) else {
        return fail("old top: its frame", format_args!("pt_base unmapped"));
    };
    let Some(l3e) = start_info::walk(HV_START)[0] else {
        return fail("old top: its slot-3 L2", format_args!("no L3 entry"));
    };
    let old_l2 = ((l3e.val & PTE_ADDR) >> 12) as u32;
    let Some(old_l2_va) = start_info::mfn_to_virt(u64::from(old_l2)) else {
        return fail("old top: its slot-3 L2", format_args!("not mapped"));
    };
    // Two frames of ours from the top of memory, past the bootstrap
    // region (mapped nowhere, so they may become tables); an mmu_update of
    // an ordinary frame of ours writes it (as Xen), which also clears the
    // entry it starts with.
    let mut got = [0u32; 2];
    let mut n = 0;
    let mut pfn = nr_pages;
    while n < 2 && pfn > nr_pages.saturating_sub(200) {
        pfn -= 1;
        let v = VIRT_BASE + pfn * 4096;
        if v >= HV_START || start_info::walk(v)[2].is_some_and(|e| e.val & PTE_PRESENT != 0) {
            continue;
        }
        let Some(m) = start_info::virt_to_mfn(v) else {
            continue;
        };
        if mmu1(u64::from(m) << 12, 0) != 0 {
            continue;
        }
        got[n] = m;
        n += 1;
    }
    if n < 2 {
        return fail("old top: two spare frames", format_args!("found {n}"));
    }
    let (l3, l2) = (u64::from(got[0]), u64::from(got[1]));
    // The new slot-3 L2: the guest part of the old one.
    for i in 0..428u32 {
        mmu1((l2 << 12) + u64::from(i) * 8, read64(old_l2_va + i * 8));
    }
    // The new L3: slots 0-2 as the old one's, slot 3 the new L2.
    for i in 0..3u32 {
        mmu1((l3 << 12) + u64::from(i) * 8, read64(si.pt_base + i * 8));
    }
    mmu1((l3 << 12) + 3 * 8, l2 << 12 | PTE_PRESENT);
    // SAFETY: the new tables map what the old ones did.
    let rc = unsafe { hc::mmuext1(abi::MMUEXT_NEW_BASEPTR, l3 as u32, 0) };
    if !check(
        "old top: NEW_BASEPTR to a copy of the builder's L3",
        rc == 0,
        format_args!("rc {rc}"),
    ) {
        return;
    }
    // SAFETY: unpins the builder's L3, which we no longer run on.
    let rc = unsafe { hc::mmuext1(abi::MMUEXT_UNPIN_TABLE, old_top, 0) };
    check(
        "old top: unpin the builder's L3",
        rc == 0,
        format_args!("rc {rc}"),
    );
    let rc = decrease(old_l2);
    check(
        "old top: the builder's slot-3 L2, still mapped read-only, is not given back (0 done)",
        rc == 0,
        format_args!("rc {rc}"),
    );
    let rc = decrease(old_top);
    check(
        "old top: the builder's L3, still mapped read-only at pt_base, is not given back (0 done)",
        rc == 0,
        format_args!("rc {rc}"),
    );
}
