//! Time: the pvclock read of `vcpu_info.time` (system time), the wall
//! clock in `shared_info`, and waiting.
//!
//! System time is nanoseconds since the hypervisor booted. Each vCPU's
//! `vcpu_time_info` holds a snapshot (`system_time` at TSC
//! `tsc_timestamp`) and the TSC-to-ns scale; the guest extrapolates:
//!
//! ```text
//! delta = rdtsc() - tsc_timestamp
//! delta = shift >= 0 ? delta << shift : delta >> -shift
//! now   = system_time + (delta * tsc_to_system_mul) >> 32
//! ```
//!
//! `version` is odd while the hypervisor rewrites the snapshot: read it
//! before and after, and retry if it was odd or changed (Linux's
//! `pvclock_clocksource_read`).

use core::arch::asm;
use core::ptr::addr_of;
use core::sync::atomic::{fence, Ordering};

use crate::abi::VcpuTimeInfo;
use crate::start_info::shared_info;

/// `lfence; rdtsc`: the TSC, not read early.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the TSC (a PV guest may: Xen and ringvisor
    // leave CR4.TSD clear).
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// One consistent copy of a vCPU's `vcpu_time_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeInfo {
    pub version: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
}

impl TimeInfo {
    /// System time at TSC value `tsc`.
    pub fn at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        let delta = if self.tsc_shift >= 0 {
            delta << self.tsc_shift
        } else {
            delta >> -self.tsc_shift
        };
        self.system_time
            .wrapping_add(((u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32) as u64)
    }
}

fn raw(vcpu: u32) -> *const VcpuTimeInfo {
    // SAFETY: in bounds of the mapped shared_info page (vcpu < 32 is
    // checked by the index); no reference is created.
    unsafe { addr_of!((*shared_info()).vcpu_info[vcpu as usize].time) }
}

/// `vcpu_info[vcpu].time.version` as it is now (odd: being updated).
pub fn version(vcpu: u32) -> u32 {
    // SAFETY: mapped page; volatile because the hypervisor writes it.
    unsafe { addr_of!((*raw(vcpu)).version).read_volatile() }
}

/// A consistent snapshot of `vcpu_info[vcpu].time` and the TSC read
/// inside the same version window.
pub fn snapshot(vcpu: u32) -> (TimeInfo, u64) {
    let t = raw(vcpu);
    loop {
        // SAFETY: mapped page; every field is read volatile (the
        // hypervisor may rewrite them between our reads, which the version
        // check detects).
        let (ti, tsc, v2) = unsafe {
            let v1 = addr_of!((*t).version).read_volatile();
            fence(Ordering::Acquire);
            let ti = TimeInfo {
                version: v1,
                tsc_timestamp: addr_of!((*t).tsc_timestamp).read_volatile(),
                system_time: addr_of!((*t).system_time).read_volatile(),
                tsc_to_system_mul: addr_of!((*t).tsc_to_system_mul).read_volatile(),
                tsc_shift: addr_of!((*t).tsc_shift).read_volatile(),
                flags: addr_of!((*t).flags).read_volatile(),
            };
            let tsc = rdtsc();
            fence(Ordering::Acquire);
            (ti, tsc, addr_of!((*t).version).read_volatile())
        };
        if ti.version & 1 == 0 && ti.version == v2 {
            return (ti, tsc);
        }
    }
}

/// System time (ns) as the running vCPU sees it.
pub fn now_ns() -> u64 {
    let (ti, tsc) = snapshot(crate::smp::this_vcpu());
    ti.at(tsc)
}

/// The wall clock at system time 0: `(seconds, nanoseconds)` since the
/// epoch, from `shared_info` (`wc_sec_hi:wc_sec`, `wc_nsec`), read under
/// `wc_version` like the vCPU time.
pub fn wallclock() -> (u64, u32, u32) {
    let si = shared_info();
    loop {
        // SAFETY: mapped page; volatile reads under the version protocol.
        let (v1, sec, hi, nsec, v2) = unsafe {
            let v1 = addr_of!((*si).wc_version).read_volatile();
            fence(Ordering::Acquire);
            let sec = addr_of!((*si).wc_sec).read_volatile();
            let hi = addr_of!((*si).wc_sec_hi).read_volatile();
            let nsec = addr_of!((*si).wc_nsec).read_volatile();
            fence(Ordering::Acquire);
            (
                v1,
                sec,
                hi,
                nsec,
                addr_of!((*si).wc_version).read_volatile(),
            )
        };
        if v1 & 1 == 0 && v1 == v2 {
            return (u64::from(hi) << 32 | u64::from(sec), nsec, v1);
        }
    }
}

/// Milliseconds / microseconds in ns.
pub const MS: u64 = 1_000_000;
pub const US: u64 = 1_000;

/// Spins (yielding the CPU each time round) until system time `t`.
/// Events keep arriving meanwhile if they are unmasked.
pub fn spin_until(t: u64) {
    while now_ns() < t {
        crate::events::yield_now();
    }
}

/// Spins (yielding) for `ns` nanoseconds.
pub fn spin_for(ns: u64) {
    spin_until(now_ns() + ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_shifts_and_multiplies() {
        let t = TimeInfo {
            tsc_timestamp: 1000,
            system_time: 5,
            // 0.5 ns per tick after a shift left by 1: 1 ns per tick.
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 1,
            ..TimeInfo::default()
        };
        assert_eq!(t.at(1000), 5);
        assert_eq!(t.at(1100), 105);
        let t = TimeInfo { tsc_shift: -1, ..t };
        assert_eq!(t.at(1100), 5 + 25);
    }
}
