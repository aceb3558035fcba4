//! What a dom0 Linux asks on its way to `/init` beyond the everyday calls
//! (Xen 4.17's answers, `xen/arch/x86/platform_hypercall.c`, `physdev.c`,
//! `cpu/mcheck/mce.c`, `cpu/vpmu.c`, `common/event_channel.c`), as the
//! initial domain and as another one.

use core::ptr::read_volatile;

use pvguest::abi;
use pvguest::hypercall::{self as hc, hypercall};
use pvguest::report::{check, check_rc, info, Rc};
use pvguest::start_info;

use crate::{EFAULT, EINVAL, ENOSYS, EPERM, UNMAPPED};

const EACCES: i64 = abi::neg(abi::EACCES);
const ESRCH: i64 = abi::neg(abi::ESRCH);
const EBUSY: i64 = abi::neg(abi::EBUSY);
const ENODEV: i64 = abi::neg(abi::ENODEV);
const EOPNOTSUPP: i64 = abi::neg(abi::EOPNOTSUPP);

/// `struct xen_platform_op`: cmd, interface_version, 128-byte union.
#[repr(C)]
#[derive(Clone, Copy)]
struct PlatformOp {
    cmd: u32,
    version: u32,
    u: [u64; 16],
}

fn op(cmd: u32, words: &[u64]) -> PlatformOp {
    let mut o = PlatformOp {
        cmd,
        version: 0x0300_0001,
        u: [0; 16],
    };
    o.u[..words.len()].copy_from_slice(words);
    o
}

fn platform(o: &mut PlatformOp) -> i64 {
    // SAFETY: `o` is ours; the hypervisor reads it and writes its union.
    unsafe { hypercall(abi::HYPERVISOR_PLATFORM_OP, &[o as *mut _ as u64]) }
}

fn d0() -> bool {
    start_info::start_info().flags & abi::SIF_INITDOMAIN != 0
}

pub fn run() {
    platform_op();
    mca();
    physdev();
    // SAFETY: Xen 4.17 reads nothing for XENPMU_init without a vPMU.
    let rc = unsafe { hypercall(abi::HYPERVISOR_XENPMU_OP, &[4, UNMAPPED]) };
    check_rc(
        "xenpmu_op(XENPMU_init): -EOPNOTSUPP (Xen 4.17 without vpmu=)",
        rc,
        EOPNOTSUPP,
    );
    set_priority();
}

fn platform_op() {
    let mut o = op(62, &[0, 0, 0]);
    o.version = 0x0300_0000;
    check_rc(
        "platform_op with another interface version: -EACCES",
        platform(&mut o),
        EACCES,
    );
    // SAFETY: an unmapped pointer: refused.
    let rc = unsafe { hypercall(abi::HYPERVISOR_PLATFORM_OP, &[UNMAPPED]) };
    check_rc("platform_op with an unmapped argument: -EFAULT", rc, EFAULT);
    let si = start_info::shared_info();
    // SAFETY: our shared_info, mapped by the runtime; plain reads.
    let (wc_sec, wc_nsec) =
        unsafe { (read_volatile(&(*si).wc_sec), read_volatile(&(*si).wc_nsec)) };
    if !d0() {
        let mut o = op(62, &[u64::from(wc_sec), u64::from(wc_nsec), 0]);
        check_rc(
            "platform_op(settime64) from a domain other than the initial one: -EPERM",
            platform(&mut o),
            EPERM,
        );
        return;
    }
    // settime64: the wall clock reads secs.nsecs at system time 0 — moved
    // 1000 s on, then back.
    let mut o = op(62, &[u64::from(wc_sec) + 1000, 5 | 1 << 32, 0]);
    check_rc(
        "platform_op(settime64) with mbz set: -EINVAL",
        platform(&mut o),
        EINVAL,
    );
    let mut o = op(62, &[u64::from(wc_sec) + 1000, 5, 0]);
    let rc = platform(&mut o);
    // SAFETY: as above.
    let (s2, ns2, ver) = unsafe {
        (
            read_volatile(&(*si).wc_sec),
            read_volatile(&(*si).wc_nsec),
            read_volatile(&(*si).wc_version),
        )
    };
    check(
        "platform_op(settime64): 0, shared_info's wall clock moved, its version even",
        rc == 0 && s2 == wc_sec + 1000 && ns2 == 5 && ver % 2 == 0,
        format_args!(
            "rc {} wc {s2}.{ns2} (was {wc_sec}.{wc_nsec}) version {ver}",
            Rc(rc)
        ),
    );
    // settime32 { u32 secs, u32 nsecs, u64 system_time }: back.
    let mut o = op(17, &[u64::from(wc_sec) | u64::from(wc_nsec) << 32, 0]);
    let rc = platform(&mut o);
    // SAFETY: as above.
    let s3 = unsafe { read_volatile(&(*si).wc_sec) };
    check(
        "platform_op(settime32): 0, the wall clock back",
        rc == 0 && s3 == wc_sec,
        format_args!("rc {} wc_sec {s3}", Rc(rc)),
    );
    // firmware_info { u32 type, u32 index, union }.
    for (ty, idx, want, what) in [
        (
            1u64,
            0u64,
            ESRCH,
            "platform_op(firmware_info) disk info: -ESRCH (no EDD data collected)",
        ),
        (
            2,
            0,
            ESRCH,
            "platform_op(firmware_info) MBR signature: -ESRCH",
        ),
        (3, 0, ESRCH, "platform_op(firmware_info) EDID: -ESRCH"),
        (
            4,
            0,
            ENOSYS,
            "platform_op(firmware_info) EFI: -ENOSYS (not booted by EFI)",
        ),
        (
            5,
            1,
            ESRCH,
            "platform_op(firmware_info) keyboard shift flags, index 1: -ESRCH",
        ),
        (
            5,
            0,
            0,
            "platform_op(firmware_info) keyboard shift flags: 0",
        ),
        (99, 0, EINVAL, "platform_op(firmware_info) type 99: -EINVAL"),
    ] {
        let mut o = op(50, &[ty | idx << 32]);
        let rc = platform(&mut o);
        check_rc(what, rc, want);
    }
    // get_cpuinfo { u32 xen_cpuid, max_present, flags, apic_id, acpi_id }.
    let mut o = op(55, &[0]);
    let rc = platform(&mut o);
    let (max_present, flags) = ((o.u[0] >> 32) as u32, o.u[1] as u32);
    check(
        "platform_op(get_cpuinfo) CPU 0: 0, online, max_present 0",
        rc == 0 && flags == 1 && max_present == 0,
        format_args!("rc {} flags {flags:#x} max_present {max_present}", Rc(rc)),
    );
    let mut o = op(55, &[1]);
    let rc = platform(&mut o);
    check(
        "platform_op(get_cpuinfo) CPU 1: 0, XEN_PCPU_FLAGS_INVALID",
        rc == 0 && o.u[1] as u32 == 2,
        format_args!("rc {} flags {:#x}", Rc(rc), o.u[1] as u32),
    );
    // get_cpu_version { u32 xen_cpuid, max_present, char vendor_id[12], family, ... }.
    let mut o = op(48, &[0]);
    let rc = platform(&mut o);
    // The vendor string as CPUID leaf 0 gives it: ebx, edx, ecx.
    let l0 = core::arch::x86_64::__cpuid(0);
    let want = [l0.ebx, l0.edx, l0.ecx];
    let got = [o.u[1] as u32, (o.u[1] >> 32) as u32, o.u[2] as u32];
    let vendor_ok = want == got;
    let family = (o.u[2] >> 32) as u32;
    check(
        "platform_op(get_cpu_version) CPU 0: 0, the CPU's vendor and family",
        rc == 0 && vendor_ok && family != 0,
        format_args!("rc {} family {family}", Rc(rc)),
    );
    for (cmd, arg, want, what) in [
        (56u32, 0u64, 0, "platform_op cpu_online(0): 0"),
        (56, 7, EINVAL, "platform_op cpu_online(7): -EINVAL"),
        (57, 0, EOPNOTSUPP, "platform_op cpu_offline(0): -EOPNOTSUPP"),
        (52, 0, ENOSYS, "platform_op change_freq: -ENOSYS"),
        (53, 0, ENOSYS, "platform_op getidletime: -ENOSYS"),
        (
            51,
            5 << 32,
            EPERM,
            "platform_op enter_acpi_sleep(S5): -EPERM (no ACPI sleep registers known)",
        ),
        (
            51,
            3 << 32,
            EOPNOTSUPP,
            "platform_op enter_acpi_sleep(S3): -EOPNOTSUPP (no wakeup vector)",
        ),
        (39, 1, 0, "platform_op platform_quirk(NOIRQBALANCING): 0"),
        (39, 9, EINVAL, "platform_op platform_quirk(9): -EINVAL"),
        (99, 0, ENOSYS, "platform_op command 99: -ENOSYS"),
    ] {
        let mut o = op(cmd, &[arg]);
        check_rc(what, platform(&mut o), want);
    }
}

fn mca() {
    // { u32 cmd, u32 interface_version, union } (xen_mc_physcpuinfo: ncpus, pad, info)
    let call = |b: &mut [u64; 8]| {
        // SAFETY: `b` is ours; the hypervisor reads and writes its union.
        unsafe { hypercall(abi::HYPERVISOR_MCA, &[b.as_mut_ptr() as u64]) }
    };
    const VERSION: u64 = 0x01ec_c003 << 32;
    let mut b = [3 | VERSION, 0, 0, 0, 0, 0, 0, 0];
    if !d0() {
        check_rc(
            "mca(physcpuinfo) from a domain other than the initial one: -EPERM",
            call(&mut b),
            EPERM,
        );
        return;
    }
    let mut bad = [3u64, 0, 0, 0, 0, 0, 0, 0];
    check_rc(
        "mca with another interface version: -EACCES",
        call(&mut bad),
        EACCES,
    );
    let rc = call(&mut b);
    check(
        "mca(physcpuinfo) without a buffer: 0, one CPU",
        rc == 0 && b[1] as u32 == 1,
        format_args!("rc {} ncpus {}", Rc(rc), b[1] as u32),
    );
    let mut cpu = [0u64; 38]; // struct mcinfo_logical_cpu: 304 bytes
    let mut b = [3 | VERSION, 1, cpu.as_mut_ptr() as u64, 0, 0, 0, 0, 0];
    let rc = call(&mut b);
    check(
        "mca(physcpuinfo) with a buffer: 0, one MSR value, MCG_CAP",
        rc == 0 && cpu[21] as u32 == 1 && cpu[22] == 0x179,
        format_args!(
            "rc {} nmsrvals {} msr {:#x}",
            Rc(rc),
            cpu[21] as u32,
            cpu[22]
        ),
    );
    let mut b = [1 | VERSION, 0, 0, 0, 0, 0, 0, 0];
    check_rc(
        "mca(fetch) with neither urgent nor non-urgent: -EINVAL",
        call(&mut b),
        EINVAL,
    );
    let mut b = [1 | VERSION, 2, 0, 0, 0, 0, 0, 0];
    check_rc(
        "mca(fetch) urgent without a buffer: -EINVAL",
        call(&mut b),
        EINVAL,
    );
    let mut data = [0u64; 8];
    let mut b = [1 | VERSION, 2, 7, data.as_mut_ptr() as u64, 0, 0, 0, 0];
    let rc = call(&mut b);
    check(
        "mca(fetch) urgent: 0, XEN_MC_NODATA, fetch_id 0",
        rc == 0 && b[1] as u32 == 2 && b[2] == 0,
        format_args!("rc {} flags {:#x} id {}", Rc(rc), b[1] as u32, b[2]),
    );
    let mut b = [2 | VERSION, 0, 0, 0, 0, 0, 0, 0];
    check_rc(
        "mca(notifydomain): -EINVAL (unsupported, as Xen)",
        call(&mut b),
        EINVAL,
    );
}

fn physdev() {
    let call = |cmd: u32, b: &mut [u64; 6]| {
        // SAFETY: `b` is ours; refused or read only (the EOI page below).
        unsafe { hc::physdev_op(cmd, b.as_mut_ptr() as u64) }
    };
    let me = d0();
    let priv_ = |want: i64| if me { want } else { EPERM };
    // apic_read { unsigned long apic_physbase; u32 reg; u32 value; }
    let mut b = [0xfec0_0000, 1, 0, 0, 0, 0];
    check_rc("physdev_op(apic_read) of the usual I/O APIC address: -EINVAL (no I/O APIC known), others -EPERM", call(abi::PHYSDEVOP_APIC_READ, &mut b), priv_(EINVAL));
    // SAFETY: an unmapped argument: refused.
    let rc = unsafe { hc::physdev_op(abi::PHYSDEVOP_APIC_READ, UNMAPPED) };
    check_rc(
        "physdev_op(apic_read) with an unmapped argument: -EFAULT",
        rc,
        EFAULT,
    );
    // setup_gsi { int gsi; u8 triggering; u8 polarity; }
    let mut b = [9, 0, 0, 0, 0, 0];
    check_rc(
        "physdev_op(setup_gsi 9): -EINVAL (no I/O APIC), others -EPERM",
        call(abi::PHYSDEVOP_SETUP_GSI, &mut b),
        priv_(EINVAL),
    );
    // map_pirq { domid_t domid; int type; int index; int pirq; ... }
    let gsi = u64::from(abi::DOMID_SELF) | 1 << 32;
    let mut b = [gsi, 9 | 9 << 32, 0, 0, 0, 0];
    check_rc(
        "physdev_op(map_pirq) of GSI 9: -EINVAL (no GSI routed), others -EPERM",
        call(abi::PHYSDEVOP_MAP_PIRQ, &mut b),
        priv_(EINVAL),
    );
    let mut b = [u64::from(abi::DOMID_SELF), 0, 0, 0, 0, 0];
    check_rc(
        "physdev_op(map_pirq) of an MSI: -ENODEV (no PCI device), others -EPERM",
        call(abi::PHYSDEVOP_MAP_PIRQ, &mut b),
        priv_(ENODEV),
    );
    let mut b = [999 | 1 << 32, 9, 0, 0, 0, 0];
    check_rc(
        "physdev_op(map_pirq) for domain 999: -ESRCH",
        call(abi::PHYSDEVOP_MAP_PIRQ, &mut b),
        ESRCH,
    );
    // pirq_eoi_gmfn_v2 { xen_pfn_t gmfn; }: a frame of ours mapped
    // nowhere (the third page from the end).
    let si = start_info::start_info();
    // SAFETY: the P2M list is mapped, nr_pages entries.
    let mfn = unsafe { read_volatile((si.mfn_list as *const u64).add(si.nr_pages as usize - 3)) };
    let mut b = [0x100, 0, 0, 0, 0, 0];
    check_rc(
        "physdev_op(pirq_eoi_gmfn_v2) of a frame not ours: -EINVAL",
        call(abi::PHYSDEVOP_PIRQ_EOI_GMFN_V2, &mut b),
        EINVAL,
    );
    let mut b = [mfn, 0, 0, 0, 0, 0];
    check_rc(
        "physdev_op(pirq_eoi_gmfn_v2) of a free page of ours: 0",
        call(abi::PHYSDEVOP_PIRQ_EOI_GMFN_V2, &mut b),
        0,
    );
    check_rc(
        "physdev_op(pirq_eoi_gmfn_v1) again: -EBUSY",
        call(abi::PHYSDEVOP_PIRQ_EOI_GMFN_V1, &mut b),
        EBUSY,
    );
    info(format_args!("EOI page: frame {mfn:#x}"));
}

fn set_priority() {
    let set = |port: u32| {
        let b = [port, 1u32];
        // SAFETY: `b` is ours, read only.
        unsafe { hc::event_channel_op(abi::EVTCHNOP_SET_PRIORITY, b.as_ptr() as u64) }
    };
    check_rc(
        "event_channel_op(set_priority) of port 0xffff: -EINVAL (not a valid port)",
        set(0xffff),
        EINVAL,
    );
    match pvguest::events::alloc_unbound(abi::DOMID_SELF, abi::DOMID_SELF) {
        Ok(port) => {
            check_rc(
                "event_channel_op(set_priority) of a port of ours: -ENOSYS (2-level ABI)",
                set(port),
                ENOSYS,
            );
            let _ = pvguest::events::close(port);
        }
        Err(rc) => {
            check_rc("alloc_unbound for set_priority", rc, 0);
        }
    }
}
