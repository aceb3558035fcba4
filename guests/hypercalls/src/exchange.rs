//! `memory_op(XENMEM_exchange)` (12/11) with Xen 4.17's checks in Xen's
//! order (`xen/common/memory.c`, `memory_exchange`): one frame of the
//! domain's that nothing maps given for a new one; the early answers.

use core::ptr::{read_volatile, write_volatile};

use pvguest::abi::{self, MmuUpdate, XenMemoryExchange, XenMemoryReservation};
use pvguest::hypercall as hc;
use pvguest::report::{check, check_rc, fail, info, Rc};
use pvguest::start_info;
use pvguest::traps::catch;

use crate::{EFAULT, EINVAL, EPERM, HV_ADDR, UNMAPPED};

fn resv(list: u64, n: u64, order: u32) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: list,
        nr_extents: n,
        extent_order: order,
        mem_flags: 0,
        domid: abi::DOMID_SELF,
        _pad0: [0; 3],
    }
}

fn exchange(e: &mut XenMemoryExchange) -> i64 {
    // SAFETY: the only frame given is one nothing maps; the hypervisor
    // writes the out list and nr_exchanged, both the caller's.
    unsafe { hc::memory_op(abi::XENMEM_EXCHANGE, e as *mut _ as u64) }
}

fn machphys(mfn: u64, pfn: u64) -> i64 {
    let req = MmuUpdate {
        ptr: mfn << 12 | abi::MMU_MACHPHYS_UPDATE,
        val: pfn,
    };
    // SAFETY: the M2P entry of a frame of ours (or refused).
    unsafe { hc::mmu_update(&req as *const _ as u64, 1, 0, abi::DOMID_SELF) }
}

fn m2p(mfn: u64) -> u64 {
    // SAFETY: the read-only M2P covers every frame of the domain.
    unsafe { read_volatile((abi::MACH2PHYS_VIRT_START + mfn * 8) as *const u64) }
}

pub fn run() {
    let si = start_info::start_info();
    // The last page: above the bootstrap region, mapped nowhere.
    let pfn = si.nr_pages - 1;
    let va = pvguest::VIRT_BASE + pfn * 4096;
    // SAFETY: a read that must fault (the page is not mapped).
    if catch(|| unsafe {
        read_volatile(va as *const u8);
    })
    .is_ok()
    {
        fail(
            "XENMEM_exchange: a free frame",
            format_args!("pfn {:#x} is mapped", pfn),
        );
        return;
    }
    let p2m = si.mfn_list as *mut u64;
    // SAFETY: the P2M list is mapped, nr_pages entries.
    let old = unsafe { read_volatile(p2m.add(pfn as usize)) };

    let mut inl = [old];
    let mut outl = [pfn, 0x5a5a];
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 1, 0),
        out: resv(outl.as_mut_ptr() as u64, 1, 0),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    let new = outl[0];
    if check(
        "XENMEM_exchange of a free frame: 0, nr_exchanged 1, a new frame in the out list",
        rc == 0 && e.nr_exchanged == 1 && new != pfn && new != old && outl[1] == 0x5a5a,
        format_args!(
            "rc {} nr_exchanged {} out {:#x} {:#x} old {:#x}",
            Rc(rc),
            e.nr_exchanged,
            outl[0],
            outl[1],
            old
        ),
    ) {
        check(
            "  ... the M2P maps the new frame to the out list's pfn",
            m2p(new) == pfn,
            format_args!("m2p[{:#x}] = {:#x}", new, m2p(new)),
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
        // SAFETY: the P2M entry of the page exchanged.
        if catch(|| unsafe { write_volatile(p2m.add(pfn as usize), new) }).is_err() {
            info(format_args!(
                "the P2M list is read-only: entry {:#x} not updated",
                pfn
            ));
        }
    } else {
        return;
    }

    // nr_exchanged == nr_extents: done at once, the lists not read.
    let mut e = XenMemoryExchange {
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
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 1, 0),
        out: resv(outl.as_mut_ptr() as u64, 2, 0),
        nr_exchanged: 0,
    };
    check_rc(
        "XENMEM_exchange with in.nr_extents 1, out.nr_extents 2: -EINVAL",
        exchange(&mut e),
        EINVAL,
    );
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 1, 0),
        out: resv(outl.as_mut_ptr() as u64, 1, 0),
        nr_exchanged: 2,
    };
    check_rc(
        "XENMEM_exchange with nr_exchanged > nr_extents: -EINVAL",
        exchange(&mut e),
        EINVAL,
    );
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 1, 0),
        out: resv(HV_ADDR, 1, 0),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    check(
        "XENMEM_exchange with the out list in the hypervisor's range: -EFAULT, nr_exchanged 0 (XSA-212)",
        rc == EFAULT && e.nr_exchanged == 0,
        format_args!("rc {} nr_exchanged {}", Rc(rc), e.nr_exchanged),
    );
    // Larger extents, as Linux's swiotlb asks (xen_create_contiguous_region):
    // two free pages for one order-1 extent below 4 GiB, and back.
    let pfn2 = pfn - 1;
    let va2 = pvguest::VIRT_BASE + pfn2 * 4096;
    // SAFETY: a read that must fault (the page is not mapped).
    if catch(|| unsafe {
        read_volatile(va2 as *const u8);
    })
    .is_ok()
    {
        fail(
            "XENMEM_exchange: a second free frame",
            format_args!("pfn {:#x} is mapped", pfn2),
        );
        return;
    }
    // SAFETY: the P2M list is mapped, nr_pages entries.
    let old2 = unsafe { read_volatile(p2m.add(pfn2 as usize)) };
    let mut inl = [new, old2];
    let mut outl = [pfn2, 0x5a5a];
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 2, 0),
        out: XenMemoryReservation {
            mem_flags: 32,
            ..resv(outl.as_mut_ptr() as u64, 1, 1)
        },
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    let big = outl[0];
    let ok = check(
        "XENMEM_exchange of 2 pages for an order-1 extent below 4 GiB: 0, nr_exchanged 2, an aligned pair of frames",
        rc == 0 && e.nr_exchanged == 2 && big.is_multiple_of(2) && big + 1 < 1 << 20 && outl[1] == 0x5a5a,
        format_args!("rc {} nr_exchanged {} out {:#x} {:#x}", Rc(rc), e.nr_exchanged, outl[0], outl[1]),
    );
    if !ok {
        return;
    }
    check(
        "  ... the M2P maps the pair to the out list's pages (as Xen: gpfn + k)",
        m2p(big) == pfn2 && m2p(big + 1) == pfn,
        format_args!("m2p {:#x} {:#x}", m2p(big), m2p(big + 1)),
    );
    check_rc(
        "  ... the frames given are no longer ours (MMU_MACHPHYS_UPDATE: -EPERM)",
        machphys(old2, pfn2),
        EPERM,
    );
    check_rc(
        "  ... the second frame of the pair is ours (MMU_MACHPHYS_UPDATE: 0)",
        machphys(big + 1, pfn),
        0,
    );
    let mut inl = [big];
    let mut outl = [pfn2, pfn];
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 1, 1),
        out: resv(outl.as_mut_ptr() as u64, 2, 0),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    let (a, b) = (outl[0], outl[1]);
    if !check(
        "XENMEM_exchange of the order-1 extent for 2 pages: 0, nr_exchanged 1",
        rc == 0 && e.nr_exchanged == 1 && a != pfn2 && b != pfn && a != b,
        format_args!(
            "rc {} nr_exchanged {} out {:#x} {:#x}",
            Rc(rc),
            e.nr_exchanged,
            a,
            b
        ),
    ) {
        return;
    }
    check(
        "  ... the M2P maps them to their pages",
        m2p(a) == pfn2 && m2p(b) == pfn,
        format_args!("m2p {:#x} {:#x}", m2p(a), m2p(b)),
    );
    // SAFETY: the P2M entries of the pages exchanged (ignored if read-only).
    let _ = catch(|| unsafe {
        write_volatile(p2m.add(pfn2 as usize), a);
        write_volatile(p2m.add(pfn as usize), b);
    });
    // The same frame twice in a chunk: the second time it is no longer
    // ours (Xen's steal_page), the chunk undone.
    let mut inl = [a, a];
    let mut outl = [pfn2];
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 2, 0),
        out: resv(outl.as_mut_ptr() as u64, 1, 1),
        nr_exchanged: 0,
    };
    let rc = exchange(&mut e);
    check(
        "XENMEM_exchange naming one frame twice: -EINVAL, nr_exchanged 0",
        rc == EINVAL && e.nr_exchanged == 0,
        format_args!("rc {} nr_exchanged {}", Rc(rc), e.nr_exchanged),
    );
    check_rc(
        "  ... the frame is still ours (MMU_MACHPHYS_UPDATE: 0)",
        machphys(a, pfn2),
        0,
    );
    let mut e = XenMemoryExchange {
        in_: resv(inl.as_mut_ptr() as u64, 1, 13),
        out: resv(outl.as_mut_ptr() as u64, 1, 13),
        nr_exchanged: 0,
    };
    check_rc(
        "XENMEM_exchange of order-13 extents: -EPERM (past max_order, as Xen)",
        exchange(&mut e),
        EPERM,
    );

    // populate_physmap takes any page number, as Xen for a PV guest (Linux
    // remaps pages above its initial ones): give one page back, then ask
    // for a page past nr_pages.
    let resv_op = |cmd: u32, list: &mut [u64]| {
        let r = resv(list.as_mut_ptr() as u64, list.len() as u64, 0);
        // SAFETY: `r` names our list; the frames are ours or refused.
        unsafe { hc::memory_op(cmd, &r as *const _ as u64) }
    };
    let mut l = [b];
    check_rc(
        "XENMEM_decrease_reservation of a free page: 1 done",
        resv_op(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        1,
    );
    let beyond = si.nr_pages + 5;
    let mut l = [beyond];
    let rc = resv_op(abi::XENMEM_POPULATE_PHYSMAP, &mut l);
    let m = l[0];
    if check(
        "XENMEM_populate_physmap of page nr_pages + 5: 1 done, a new frame",
        rc == 1 && m != beyond,
        format_args!("rc {} list {:#x}", Rc(rc), m),
    ) {
        check(
            "  ... the M2P maps it to that page",
            m2p(m) == beyond,
            format_args!("m2p {:#x}", m2p(m)),
        );
        check_rc(
            "  ... it is ours (MMU_MACHPHYS_UPDATE: 0)",
            machphys(m, beyond),
            0,
        );
        let mut l = [beyond + 1];
        check_rc(
            "XENMEM_populate_physmap with the reservation full: 0 done",
            resv_op(abi::XENMEM_POPULATE_PHYSMAP, &mut l),
            0,
        );
        let mut l = [m];
        check_rc(
            "XENMEM_decrease_reservation of it: 1 done",
            resv_op(abi::XENMEM_DECREASE_RESERVATION, &mut l),
            1,
        );
        let mut l = [pfn];
        check_rc(
            "XENMEM_populate_physmap of the page given back: 1 done",
            resv_op(abi::XENMEM_POPULATE_PHYSMAP, &mut l),
            1,
        );
        // SAFETY: the P2M entry of that page (ignored if read-only).
        let _ = catch(|| unsafe { write_volatile(p2m.add(pfn as usize), l[0]) });
    }
}
