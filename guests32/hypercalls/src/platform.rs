//! The dom0 calls of guest-hypercalls' platform.rs with the 32-bit layouts
//! (Xen's compat platform_op, mca, physdev_op): the same answers, with
//! 4-byte `unsigned long`s and handles where the 32-bit structures have
//! them.

use core::ptr::read_volatile;

use pvguest32::abi;
use pvguest32::hypercall::{self as hc, hypercall};
use pvguest32::report::{check, check_rc, neg, Rc};
use pvguest32::start_info;
use pvguest32::va;

use crate::common::*;

const EACCES: i32 = neg(abi::EACCES);
const EBUSY: i32 = neg(abi::EBUSY);
const EOPNOTSUPP: i32 = neg(abi::EOPNOTSUPP);

fn d0() -> bool {
    start_info::start_info().flags & abi::SIF_INITDOMAIN != 0
}

/// `struct xen_platform_op`: cmd, interface_version, the union (8-byte
/// aligned in both widths), as 32-bit words.
fn platform(words: &mut [u32; 34]) -> i32 {
    // SAFETY: `words` is ours; the hypervisor reads it and writes its union.
    unsafe { hypercall(abi::HYPERVISOR_PLATFORM_OP, &[va(words.as_ptr())]) }
}

pub fn run() {
    let mut o = [0u32; 34];
    o[0] = 62; // settime64
    check_rc(
        "platform_op with interface version 0: -EACCES",
        platform(&mut o),
        EACCES,
    );
    let si = start_info::shared_info();
    // SAFETY: our shared_info, mapped by the runtime; plain reads.
    let (sec, nsec) = unsafe { (read_volatile(&(*si).wc_sec), read_volatile(&(*si).wc_nsec)) };
    o = [0; 34];
    // settime64 { u64 secs, u32 nsecs, u32 mbz, u64 system_time }
    (o[0], o[1], o[2], o[4]) = (62, 0x0300_0001, sec, nsec);
    let rc = platform(&mut o);
    if d0() {
        // SAFETY: as above.
        let (s2, v) = unsafe {
            (
                read_volatile(&(*si).wc_sec),
                read_volatile(&(*si).wc_version),
            )
        };
        check(
            "platform_op(settime64) with the current time: 0, wall clock kept, version even",
            rc == 0 && s2 == sec && v % 2 == 0,
            format_args!("rc {} wc_sec {s2} version {v}", Rc(rc)),
        );
        // get_cpuinfo { xen_cpuid, max_present, flags, apic_id, acpi_id }
        o = [0; 34];
        (o[0], o[1], o[2]) = (55, 0x0300_0001, 0);
        let rc = platform(&mut o);
        check(
            "platform_op(get_cpuinfo) CPU 0: 0, online",
            rc == 0 && o[4] == 1,
            format_args!("rc {} flags {:#x}", Rc(rc), o[4]),
        );
    } else {
        check_rc("platform_op(settime64) from a domU: -EPERM", rc, EPERM);
    }
    // mca { cmd, version, physcpuinfo { ncpus, pad, 4-byte handle } }
    let mut m = [3u32, 0x01ec_c003, 0, 0, 0, 0, 0, 0];
    // SAFETY: `m` is ours; the hypervisor writes ncpus.
    let rc = unsafe { hypercall(abi::HYPERVISOR_MCA, &[va(m.as_mut_ptr())]) };
    if d0() {
        check(
            "mca(physcpuinfo) without a buffer: 0, one CPU",
            rc == 0 && m[2] == 1,
            format_args!("rc {} ncpus {}", Rc(rc), m[2]),
        );
    } else {
        check_rc("mca(physcpuinfo) from a domU: -EPERM", rc, EPERM);
    }
    // SAFETY: Xen 4.17 reads nothing for XENPMU_init without a vPMU.
    let rc = unsafe { hypercall(abi::HYPERVISOR_XENPMU_OP, &[4, UNMAPPED]) };
    check_rc("xenpmu_op(XENPMU_init): -EOPNOTSUPP", rc, EOPNOTSUPP);
    // apic_read { u32 apic_physbase; u32 reg; u32 value } (12 bytes)
    let mut a = [0xfec0_0000u32, 1, 0];
    // SAFETY: `a` is ours; refused.
    let rc = unsafe {
        hypercall(
            abi::HYPERVISOR_PHYSDEV_OP,
            &[abi::PHYSDEVOP_APIC_READ, va(a.as_mut_ptr())],
        )
    };
    check_rc(
        "physdev_op(apic_read), 12-byte argument: -EINVAL as d0, -EPERM otherwise",
        rc,
        if d0() { EINVAL } else { EPERM },
    );
    // pirq_eoi_gmfn_v2 { u32 gmfn }: the third page from the end, ours,
    // mapped nowhere.
    let s = start_info::start_info();
    // SAFETY: the 32-bit P2M list is mapped, nr_pages entries.
    let mfn = unsafe { read_volatile((s.mfn_list as *const u32).add(s.nr_pages as usize - 3)) };
    let g = [mfn];
    // SAFETY: `g` is ours, read only.
    let rc = unsafe {
        hypercall(
            abi::HYPERVISOR_PHYSDEV_OP,
            &[abi::PHYSDEVOP_PIRQ_EOI_GMFN_V2, va(g.as_ptr())],
        )
    };
    check_rc(
        "physdev_op(pirq_eoi_gmfn_v2), 4-byte frame number: 0",
        rc,
        0,
    );
    // SAFETY: as above.
    let rc = unsafe {
        hypercall(
            abi::HYPERVISOR_PHYSDEV_OP,
            &[abi::PHYSDEVOP_PIRQ_EOI_GMFN_V2, va(g.as_ptr())],
        )
    };
    check_rc("physdev_op(pirq_eoi_gmfn_v2) again: -EBUSY", rc, EBUSY);
    let b = [0xffffu32, 1];
    // SAFETY: `b` is ours, read only.
    let rc = unsafe { hc::event_channel_op(abi::EVTCHNOP_SET_PRIORITY, va(b.as_ptr())) };
    check_rc(
        "event_channel_op(set_priority) of port 0xffff: -EINVAL",
        rc,
        EINVAL,
    );
}
