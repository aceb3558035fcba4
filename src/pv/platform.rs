//! `platform_op` and `mca`: the machine-wide calls of the control domain
//! (Xen: `arch/x86/platform_hypercall.c`, `arch/x86/cpu/mcheck/mce.c`).
//!
//! Both are Xen's XSM_PRIV calls: only the initial domain may make them
//! (any other gets `-EPERM`, after the argument was read and, for
//! `platform_op`, its interface version checked). ringvisor runs on one
//! CPU, drives no firmware services (no EDD, EDID or EFI data are
//! collected at boot, no CPU frequency or idle-state control, no CPU or
//! memory hot-plug), so each sub-op answers as Xen does on such a machine:
//!
//! | sub-op | answer |
//! |---|---|
//! | `settime32`, `settime64` | the wall clock of every domain set, 0 (`settime64` with `mbz` set: `-EINVAL`) |
//! | `firmware_info` | disk info, MBR signature, EDID: `-ESRCH` (none collected); EFI: `-ENOSYS` (not booted by EFI); keyboard shift flags: the BIOS data area's byte (index 0, else `-ESRCH`); other types `-EINVAL` |
//! | `get_cpuinfo` | CPU 0: online, its APIC id, ACPI id ~0 (ringvisor reads no MADT); others: `XEN_PCPU_FLAGS_INVALID`; `max_present` 0 |
//! | `get_cpu_version` | CPU 0: vendor, family, model, stepping; others zero; `max_present` 0 |
//! | `cpu_online` / `cpu_offline` | CPU 0: 0 / `-EOPNOTSUPP`; others `-EINVAL` |
//! | `platform_quirk` | known quirks 0, others `-EINVAL` |
//! | `change_freq`, `getidletime` | `-ENOSYS` (the hypervisor, not dom0, would control frequencies) |
//! | `efi_runtime_call` | `-ENOSYS` (not booted by EFI) |
//! | `enter_acpi_sleep` | S3 `-EOPNOTSUPP`, unknown flags `-EINVAL`, else `-EPERM` (no FADT sleep registers known) |
//! | `set_processor_pminfo` | Px, Cx, Tx: `-ENOSYS` (no power management); PDC: `-ENOSYS` too (ringvisor keeps no ACPI processor state: Xen would filter the bits); other types `-EINVAL` |
//! | others | `-ENOSYS` (Xen's answer for an unknown one; memtype, microcode, hot-plug, core parking, resource_op and get_symbol are not implemented) |

use ringvisor_abi::errno::*;
use ringvisor_abi::platform::*;

use crate::domain::Domain;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};

/// `platform_op` with no domain lock held by the caller: under the
/// caller's lock; a new wall clock then goes to every domain, one lock at
/// a time (no `HV`: the domains are found through `sched`'s table).
pub fn platform_op_on(me: &crate::sync::DomainLock, arg: u64) -> Ret {
    let mut time = None;
    let r = {
        let d = me.lock();
        platform_op_locked(&d, d.v().space(), arg, &mut time)
    };
    if let Some((secs, nsecs, system_time)) = time {
        settime(secs, nsecs, system_time);
    }
    r
}

/// The op under the caller's lock; a time to set is left in `time`.
fn platform_op_locked(
    d: &Domain,
    space: GuestSpace,
    arg: u64,
    time: &mut Option<(u64, u32, u64)>,
) -> Ret {
    let Ok(op) = space.read::<XenPlatformOp>(arg) else {
        return err(EFAULT);
    };
    // The trace line of the call shows only the pointer: name the sub-op.
    crate::trace!(
        crate::trace::TRACE_HYPERCALL,
        "d{} platform_op cmd {} (version {:#x})",
        d.id,
        op.cmd,
        op.interface_version
    );
    if op.interface_version != XENPF_INTERFACE_VERSION {
        return err(EACCES);
    }
    if !d.privileged {
        return err(EPERM);
    }
    let u = &op.u;
    let word = |u: &[u64; 16], i: usize| u[i];
    match op.cmd {
        XENPF_SETTIME32 => {
            // { u32 secs, u32 nsecs, u64 system_time }
            *time = Some((
                word(u, 0) as u32 as u64,
                (word(u, 0) >> 32) as u32,
                word(u, 1),
            ));
            0
        }
        XENPF_SETTIME64 => {
            // { u64 secs, u32 nsecs, u32 mbz, u64 system_time }
            if word(u, 1) >> 32 != 0 {
                return err(EINVAL);
            }
            *time = Some((word(u, 0), word(u, 1) as u32, word(u, 2)));
            0
        }
        XENPF_FIRMWARE_INFO => {
            // { u32 type, u32 index, union at byte 8 }
            let (type_, index) = (word(u, 0) as u32, (word(u, 0) >> 32) as u32);
            match type_ {
                XEN_FW_DISK_INFO | XEN_FW_DISK_MBR_SIGNATURE | XEN_FW_VBEDDC_INFO => err(ESRCH),
                XEN_FW_EFI_INFO => err(ENOSYS),
                XEN_FW_KBD_SHIFT_FLAGS if index != 0 => err(ESRCH),
                XEN_FW_KBD_SHIFT_FLAGS => {
                    let flags = kbd_shift_flags();
                    // xen_platform_op.u.firmware_info.u.kbd_shift_flags.
                    space.write(arg + 8 + 8, &flags).map_or(err(EFAULT), |()| 0)
                }
                _ => err(EINVAL),
            }
        }
        XENPF_GET_CPUINFO => {
            let mut i = XenpfPcpuinfo {
                xen_cpuid: word(u, 0) as u32,
                ..ringvisor_abi::Pod::zeroed()
            };
            if i.xen_cpuid == 0 {
                i.apic_id = apic_id();
                i.acpi_id = u32::MAX;
                i.flags = XEN_PCPU_FLAGS_ONLINE;
            } else {
                i.flags = XEN_PCPU_FLAGS_INVALID;
            }
            i.max_present = 0;
            space.write(arg + 8, &i).map_or(err(EFAULT), |()| 0)
        }
        XENPF_GET_CPU_VERSION => {
            let cpu = word(u, 0) as u32;
            let mut v = XenpfPcpuVersion {
                xen_cpuid: cpu,
                ..ringvisor_abi::Pod::zeroed()
            };
            if cpu == 0 {
                let f = crate::arch::x86_64::cpu::detect();
                let vendor = f.vendor.as_str().as_bytes();
                let n = vendor.len().min(12);
                v.vendor_id[..n].copy_from_slice(&vendor[..n]);
                (v.family, v.model, v.stepping) =
                    (f.family as u32, f.model as u32, f.stepping as u32);
            }
            space.write(arg + 8, &v).map_or(err(EFAULT), |()| 0)
        }
        XENPF_CPU_ONLINE => match word(u, 0) as u32 {
            0 => 0,
            _ => err(EINVAL),
        },
        XENPF_CPU_OFFLINE => match word(u, 0) as u32 {
            0 => err(EOPNOTSUPP),
            _ => err(EINVAL),
        },
        XENPF_PLATFORM_QUIRK => match word(u, 0) as u32 {
            QUIRK_NOIRQBALANCING | QUIRK_IOAPIC_BAD_REGSEL | QUIRK_IOAPIC_GOOD_REGSEL => 0,
            _ => err(EINVAL),
        },
        XENPF_CHANGE_FREQ | XENPF_GETIDLETIME | XENPF_EFI_RUNTIME_CALL => err(ENOSYS),
        // { u16 val_a, u16 val_b, u32 sleep_state, u32 flags }: Xen's
        // acpi_enter_sleep without the FADT's registers (ringvisor reads no
        // ACPI tables): S3 without a wakeup vector -EOPNOTSUPP, unknown
        // flags -EINVAL, then no PM1a control block (or sleep control
        // register) -EPERM. Linux asks at ACPI power-off, then shuts down
        // with sched_op.
        XENPF_ENTER_ACPI_SLEEP => {
            const ACPI_STATE_S3: u32 = 3;
            const XENPF_ACPI_SLEEP_EXTENDED: u32 = 1;
            if (word(u, 0) >> 32) as u32 == ACPI_STATE_S3 {
                err(EOPNOTSUPP)
            } else if word(u, 1) as u32 & !XENPF_ACPI_SLEEP_EXTENDED != 0 {
                err(EINVAL)
            } else {
                err(EPERM)
            }
        }
        // { u32 id, u32 type, union }
        XENPF_SET_PROCESSOR_PMINFO => match (word(u, 0) >> 32) as u32 {
            XEN_PM_CX | XEN_PM_PX | XEN_PM_TX | XEN_PM_PDC => err(ENOSYS),
            _ => err(EINVAL),
        },
        _ => err(ENOSYS),
    }
}

/// Xen's do_settime: the wall clock reads `secs`.`nsecs` at system time
/// `system_time`; every domain's shared_info gets the new base (no lock
/// held by the caller but perhaps `HV`).
fn settime(secs: u64, nsecs: u32, system_time: u64) {
    let x = secs
        .wrapping_mul(1_000_000_000)
        .wrapping_add(nsecs as u64)
        .wrapping_sub(system_time);
    let (sec, nsec) = (x / 1_000_000_000, (x % 1_000_000_000) as u32);
    crate::arch::x86_64::time::set_wallclock(sec, nsec);
    crate::sched::for_each_domain_lock(|d| {
        let d = d.lock();
        if d.shared_info_mfn != 0 {
            write_wallclock(d.shared_info_mfn, d.is_32bit(), sec, nsec);
        }
    });
}

/// Xen's update_domain_wallclock_time: version odd while it changes.
pub fn write_wallclock(shared_info_mfn: u64, compat: bool, sec: u64, nsec: u32) {
    use core::mem::offset_of;
    use core::sync::atomic::{fence, Ordering::*};
    let (ver, s, ns, hi) = if compat {
        use ringvisor_abi::x86_32::{ArchSharedInfo32, SharedInfo32};
        (
            offset_of!(SharedInfo32, wc_version),
            offset_of!(SharedInfo32, wc_sec),
            offset_of!(SharedInfo32, wc_nsec),
            offset_of!(SharedInfo32, arch) + offset_of!(ArchSharedInfo32, wc_sec_hi),
        )
    } else {
        use ringvisor_abi::xen::SharedInfo;
        (
            offset_of!(SharedInfo, wc_version),
            offset_of!(SharedInfo, wc_sec),
            offset_of!(SharedInfo, wc_nsec),
            offset_of!(SharedInfo, wc_sec_hi),
        )
    };
    // The domain's shared_info frame; every offset is a u32 field inside
    // its 4 KiB (offset_of! on the ABI struct). The guest may read it
    // meanwhile: the version tells it.
    let si = crate::mm::view::FrameView::domain_shared(shared_info_mfn);
    let at = |off: usize| si.atomic_u32(off);
    let v = at(ver).load(Relaxed);
    at(ver).store(v.wrapping_add(1) | 1, Relaxed);
    fence(SeqCst);
    at(s).store(sec as u32, Relaxed);
    at(ns).store(nsec, Relaxed);
    at(hi).store((sec >> 32) as u32, Relaxed);
    fence(SeqCst);
    at(ver).store((v.wrapping_add(1) | 1).wrapping_add(1), Relaxed);
}

/// The BIOS keyboard shift flags (BIOS data area 0x417, what int 16h
/// AH=02 returns and Xen reads at boot).
fn kbd_shift_flags() -> u8 {
    crate::mm::view::bios_data_byte(0x417)
}

/// The highest basic CPUID leaf (CPUID 0, EAX).
fn max_basic_leaf() -> u32 {
    core::arch::x86_64::__cpuid(0).eax
}

/// This CPU's initial APIC id (CPUID leaf 1, EBX[31:24]).
fn apic_id() -> u32 {
    raw_cpuid::CpuId::new()
        .get_feature_info()
        .map_or(0, |f| f.initial_local_apic_id() as u32)
}

/// `mca` (Xen's do_mca): the control domain only (`-EPERM`, before the
/// argument is read), the interface version (`-EACCES`). `fetch`: Xen's
/// flag checks, then "no data" (ringvisor collects no machine-check
/// telemetry); `physcpuinfo`: one CPU, its `mcinfo_logical_cpu` written
/// when a buffer is given; `notifydomain` `-EINVAL` ("unsupported", as
/// Xen); the injection commands `-EINVAL` (Xen checks and injects; not
/// implemented: ringvisor shows guests no machine-check architecture).
///
/// Called with no domain lock held: it concerns only the caller, under
/// its lock.
pub fn mca_on(me: &crate::sync::DomainLock, arg: u64) -> Ret {
    let d = me.lock();
    mca_locked(d.privileged, d.is_32bit(), d.v().space(), arg)
}

fn mca_locked(privileged: bool, compat: bool, space: GuestSpace, arg: u64) -> Ret {
    if !privileged {
        return err(EPERM);
    }
    let Ok(mut op) = space.read::<XenMcPhyscpuinfo>(arg) else {
        return err(EFAULT);
    };
    if op.interface_version != XEN_MCA_INTERFACE_VERSION {
        return err(EACCES);
    }
    let handle = |at: u64| {
        if compat {
            space.read::<u32>(at).map(u64::from)
        } else {
            space.read::<u64>(at)
        }
    };
    match op.cmd {
        XEN_MC_FETCH => {
            // { u32 flags (IN/OUT), pad, u64 fetch_id, handle data }
            const XEN_MC_NONURGENT: u32 = 1;
            const XEN_MC_URGENT: u32 = 2;
            const XEN_MC_ACK: u32 = 4;
            const XEN_MC_NODATA: u32 = 2;
            let flags = op.ncpus;
            if !matches!(
                flags & (XEN_MC_NONURGENT | XEN_MC_URGENT),
                XEN_MC_NONURGENT | XEN_MC_URGENT
            ) {
                return err(EINVAL);
            }
            if flags & XEN_MC_ACK != 0 {
                // Nothing was handed out, so nothing to acknowledge.
                return space.write(arg + 8, &0u32).map_or(err(EFAULT), |()| 0);
            }
            // Past the 24 bytes read: the address may wrap (-EFAULT).
            match arg
                .checked_add(24)
                .ok_or(())
                .and_then(|at| handle(at).map_err(|_| ()))
            {
                Err(_) => return err(EFAULT),
                Ok(0) => return err(EINVAL),
                Ok(_) => {}
            }
            let w = space
                .write(arg + 8, &XEN_MC_NODATA)
                .and_then(|()| space.write(arg + 16, &0u64));
            w.map_or(err(EFAULT), |()| 0)
        }
        XEN_MC_PHYSCPUINFO => {
            let Ok(info) = handle(arg + 16) else {
                return err(EFAULT);
            };
            if info != 0 {
                if op.ncpus as i32 <= 0 {
                    return err(EINVAL);
                }
                if space.write_bytes(info, &logical_cpu0()).is_err() {
                    return err(EFAULT);
                }
            }
            op.ncpus = 1;
            space.write(arg + 8, &op.ncpus).map_or(err(EFAULT), |()| 0)
        }
        _ => err(EINVAL),
    }
}

/// Xen's `struct mcinfo_logical_cpu` for CPU 0 (do_mc_get_cpu_info), 304
/// bytes: ids, CPUID family/model/stepping, vendor and brand strings, and
/// MCG_CAP as its one MSR value (0: ringvisor shows guests no MCA).
fn logical_cpu0() -> [u8; 304] {
    let mut b = [0u8; 304];
    let f = crate::arch::x86_64::cpu::detect();
    let put32 =
        |b: &mut [u8; 304], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    // mc_cpunr 0, mc_chipid 0, mc_coreid/threadid 0, mc_apicid @12
    put32(&mut b, 12, apic_id());
    put32(&mut b, 16, apic_id()); // mc_clusterid: CPUID.1 EBX[31:24]
    put32(&mut b, 20, 1); // mc_ncores
    put32(&mut b, 24, 1); // mc_ncores_active
    put32(&mut b, 28, 1); // mc_nthreads
    put32(&mut b, 32, max_basic_leaf()); // mc_cpuid_level
    put32(&mut b, 36, f.family as u32);
    put32(&mut b, 44, f.model as u32);
    put32(&mut b, 48, f.stepping as u32);
    let vendor = f.vendor.as_str().as_bytes();
    b[52..52 + vendor.len().min(16)].copy_from_slice(&vendor[..vendor.len().min(16)]);
    let brand = f.brand.as_str().as_bytes();
    b[68..68 + brand.len().min(63)].copy_from_slice(&brand[..brand.len().min(63)]);
    // mc_cpu_caps[7] @132, cache size @160, alignment @164 left 0.
    put32(&mut b, 168, 1); // mc_nmsrvals
    b[176..184].copy_from_slice(&0x179u64.to_le_bytes()); // MSR_IA32_MCG_CAP, value 0
    b
}
