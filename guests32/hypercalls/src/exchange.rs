//! `memory_op(XENMEM_exchange)` with the 32-bit layouts: the 20-byte
//! reservation, the 44-byte exchange and 4-byte frame lists.

use core::ptr::{read_volatile, write_volatile};

use pvguest32::abi::{self, MmuUpdate, XenMemoryExchange32, XenMemoryReservation32};
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_rc, fail, info, Rc};
use pvguest32::start_info;
use pvguest32::va;
use pvguest32::VIRT_BASE;

use crate::common::*;

fn resv(list: u32, n: u32, order: u32) -> XenMemoryReservation32 {
    XenMemoryReservation32 {
        extent_start: list,
        nr_extents: n,
        extent_order: order,
        mem_flags: 0,
        domid: abi::DOMID_SELF,
        _pad0: 0,
    }
}

fn exchange(e: &mut XenMemoryExchange32) -> i32 {
    // SAFETY: the only frame given is one nothing maps; the hypervisor
    // writes the out list and nr_exchanged, both the caller's.
    unsafe { hc::memory_op(abi::XENMEM_EXCHANGE, va(e as *mut XenMemoryExchange32)) }
}

fn machphys(mfn: u32, pfn: u32) -> i32 {
    let req = MmuUpdate {
        ptr: u64::from(mfn) << 12 | abi::MMU_MACHPHYS_UPDATE,
        val: pfn.into(),
    };
    // SAFETY: the M2P entry of a frame of ours (or refused).
    unsafe { hc::mmu_update(va(&req), 1, 0, abi::DOMID_SELF) }
}

/// A page of ours mapped nowhere, below the top five (mm.rs uses the top
/// three, its reservation round trip the top one).
fn free_pfn(nr_pages: u32) -> Option<u32> {
    (0..nr_pages.saturating_sub(5)).rev().find(|&pfn| {
        let v = VIRT_BASE + pfn * 4096;
        v < HV_START && start_info::walk(v)[2].is_none_or(|e| e.val & PTE_PRESENT == 0)
    })
}

pub fn run(nr_pages: u32) {
    let Some(pfn) = free_pfn(nr_pages) else {
        fail(
            "XENMEM_exchange (32-bit): a free frame",
            format_args!("none"),
        );
        return;
    };
    let p2m = start_info::start_info().mfn_list as usize as *mut u32;
    // SAFETY: the P2M list is mapped, nr_pages 4-byte entries.
    let old = unsafe { read_volatile(p2m.add(pfn as usize)) };
    let mut inl = [old, 0x5a5a];
    let mut outl = [pfn, 0x5a5a];
    let mut e = XenMemoryExchange32 {
        in_: resv(va(inl.as_mut_ptr()), 1, 0),
        out: resv(va(outl.as_mut_ptr()), 1, 0),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    let new = outl[0];
    if !check(
        "XENMEM_exchange (44-byte struct, 4-byte lists) of a free frame: 0, nr_exchanged 1, a new frame written as 4 bytes",
        rc == 0 && e.nr_exchanged == 1 && new != pfn && new != old && outl[1] == 0x5a5a,
        format_args!("rc {} nr_exchanged {} out {:#x} {:#x} old {:#x}", Rc(rc), e.nr_exchanged, outl[0], outl[1], old),
    ) {
        return;
    }
    let e = crate::m2p::entry(new);
    check(
        "  ... the compat M2P maps the new frame to the out list's page",
        e == Ok(pfn),
        format_args!("new {new:#x} pfn {pfn:#x}: {e:x?}"),
    );
    let e = crate::m2p::entry(old);
    check(
        "  ... and the old frame to nothing (0xffffffff)",
        e == Ok(u32::MAX),
        format_args!("old {old:#x}: {e:x?}"),
    );
    check_rc(
        "  ... MMU_MACHPHYS_UPDATE of the new frame: 0 (it is ours)",
        machphys(new, pfn),
        0,
    );
    check_rc(
        "  ... MMU_MACHPHYS_UPDATE of the old frame: -EPERM (not ours; Xen: -EINVAL)",
        machphys(old, pfn),
        EPERM,
    );
    if pvguest32::traps::catch(|| {
        // SAFETY: the P2M entry of the page exchanged.
        unsafe { write_volatile(p2m.add(pfn as usize), new) }
    })
    .is_err()
    {
        info(format_args!(
            "the P2M list is read-only: entry {:#x} not updated",
            pfn
        ));
    }

    let mut e = XenMemoryExchange32 {
        in_: resv(UNMAPPED, 1, 0),
        out: resv(UNMAPPED, 1, 0),
        nr_exchanged: 1,
    };
    check_rc(
        "XENMEM_exchange with nr_exchanged == nr_extents: 0 (lists unmapped, not read)",
        exchange(&mut e),
        0,
    );
    let mut inl = [new];
    let mut outl = [pfn, pfn];
    let mut e = XenMemoryExchange32 {
        in_: resv(va(inl.as_mut_ptr()), 1, 0),
        out: resv(va(outl.as_mut_ptr()), 2, 0),
        nr_exchanged: 0,
    };
    check_rc(
        "XENMEM_exchange with in.nr_extents 1, out.nr_extents 2: -EINVAL",
        exchange(&mut e),
        EINVAL,
    );
    let mut e = XenMemoryExchange32 {
        in_: resv(va(inl.as_mut_ptr()), 1, 0),
        out: resv(HV_START, 1, 0),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    check(
        "XENMEM_exchange with the out list at 0xF5800000: -EFAULT, nr_exchanged 0",
        rc == EFAULT && e.nr_exchanged == 0,
        format_args!("rc {} nr_exchanged {}", Rc(rc), e.nr_exchanged),
    );
    let mut e = XenMemoryExchange32 {
        in_: resv(va(inl.as_mut_ptr()), 1, 1),
        out: resv(va(outl.as_mut_ptr()), 1, 1),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    check(
        "XENMEM_exchange of an order-1 extent at our new frame: -EINVAL (the frame after it, from the pool, is not ours: Xen's steal_page), nr_exchanged 0",
        rc == EINVAL && e.nr_exchanged == 0,
        format_args!("rc {} nr_exchanged {}", Rc(rc), e.nr_exchanged),
    );
    check_rc(
        "  ... the new frame is still ours (MMU_MACHPHYS_UPDATE: 0)",
        machphys(new, pfn),
        0,
    );
}
