//! The TSC: its frequency (from CPUID leaf 0x15/0x16, else measured against
//! the HPET or the ACPI PM timer, the PIT only when neither is there: many
//! new PCs gate the PIT) and a nanosecond clock built on it.

use core::sync::atomic::{AtomicU64, Ordering};

use x86::io::{inb, outb};
use x86::time::rdtsc;

use super::cpu::Features;
use super::firmware::{self, RefClock};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscSource {
    Cpuid,
    Hpet,
    PmTimer,
    Pit,
}

impl TscSource {
    pub fn name(self) -> &'static str {
        match self {
            TscSource::Cpuid => "CPUID",
            TscSource::Hpet => "HPET calibration",
            TscSource::PmTimer => "ACPI PM timer calibration",
            TscSource::Pit => "PIT calibration",
        }
    }
}

pub fn tsc() -> u64 {
    // SAFETY: rdtsc only reads the time stamp counter (CR4.TSD is clear).
    unsafe { rdtsc() }
}

/// The PIT's input clock, in Hz.
const PIT_HZ: u64 = 1_193_182;

/// Measure the TSC over ~10 ms of PIT channel 2 (the speaker channel, whose
/// gate we control through port 0x61 and whose output we can poll).
fn calibrate_with_pit() -> u64 {
    const TICKS: u64 = PIT_HZ / 100;
    // SAFETY: the PIT and port 0x61 belong to the hypervisor; channel 2
    // drives only the PC speaker, which we keep disconnected (bit 1 clear).
    unsafe {
        let p61 = inb(0x61);
        outb(0x61, (p61 & !0x02) | 0x01); // gate on, speaker off
        outb(0x43, 0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        outb(0x42, (TICKS & 0xff) as u8);
        outb(0x42, (TICKS >> 8) as u8);
        let t0 = tsc();
        // Mode 0: OUT2 (port 0x61 bit 5) goes high when the count ends.
        let mut spins = 0u64;
        while inb(0x61) & 0x20 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                break; // no PIT: fall back to a made-up 1 GHz below
            }
        }
        let t1 = tsc();
        outb(0x61, p61);
        if spins > 100_000_000 {
            return 1_000_000_000;
        }
        (t1 - t0) * PIT_HZ / TICKS
    }
}

/// Count `sample` (a counter that only goes up) over about `ns` of the
/// reference clock; returns the counter's rate in Hz. `None` when the
/// reference does not advance in time (a broken clock: fall back).
pub fn rate_against(clock: &RefClock, ns: u64, mut sample: impl FnMut() -> u64) -> Option<u64> {
    let want = (clock.hz() as u128 * ns as u128 / 1_000_000_000) as u64;
    let mask = clock.mask();
    // Start on a tick edge so the window is whole ticks.
    let r0 = clock.read();
    let mut spins = 0u64;
    let mut r = r0;
    while r == r0 {
        r = clock.read();
        spins += 1;
        if spins > 10_000_000 {
            return None;
        }
    }
    let (start_ref, start) = (r, sample());
    loop {
        let now = clock.read();
        let s = sample();
        let d = now.wrapping_sub(start_ref) & mask;
        if d >= want {
            return Some((s.wrapping_sub(start) as u128 * clock.hz() as u128 / d as u128) as u64);
        }
        spins += 1;
        if spins > 1_000_000_000 {
            return None;
        }
    }
}

/// [`rate_against`] over three windows of a third of `ns` each, the
/// median: a window that a stall of the host stretched on one side only
/// does not decide. (Seen once under TCG on a loaded host: the TSC taken
/// as 9 MHz instead of 2.6 GHz, every timeout after it 280 times too
/// long.)
pub fn rate_median(clock: &RefClock, ns: u64, mut sample: impl FnMut() -> u64) -> Option<u64> {
    let mut r = [0u64; 3];
    for x in &mut r {
        *x = rate_against(clock, ns / 3, &mut sample)?;
    }
    r.sort_unstable();
    Some(r[1])
}

pub fn init(f: &Features) -> (u64, TscSource) {
    let measured = || {
        let c = firmware::ref_clock()?;
        let hz = rate_median(&c, 12_000_000, tsc)?;
        Some((
            hz,
            match c {
                RefClock::Hpet { .. } => TscSource::Hpet,
                RefClock::PmTimer { .. } => TscSource::PmTimer,
            },
        ))
    };
    let (hz, src) = match f.tsc_hz {
        Some(hz) => (hz, TscSource::Cpuid),
        None => measured().unwrap_or_else(|| (calibrate_with_pit(), TscSource::Pit)),
    };
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    TSC_AT_BOOT.store(tsc(), Ordering::Relaxed);
    BOOT_EPOCH.store(read_rtc(), Ordering::Relaxed);
    (hz, src)
}

/// A byte access of the initial domain to PIT channel 2 or port 0x61, as
/// Xen's `hwdom_pit_access` passes them to the hardware domain when Xen
/// does not use channel 2 itself (neither do we after `calibrate_with_pit`
/// at boot): the channel 2 counter (0x42) both ways; on the mode port
/// (0x43) a control word for counter 2, or a read-back with the other
/// counters' select bits dropped (Xen emulates those on the domain's
/// virtual PIT; here they select nothing); on port 0x61 reads, and writes
/// of the gate and speaker bits only. `write`: the byte written. Returns
/// the byte read, or `None` when the access is not passed on (a read of
/// the mode port, a control word for counter 0 or 1).
pub fn pit_ch2_access(port: u16, write: Option<u8>) -> Option<u8> {
    // SAFETY: channel 2 and port 0x61 are not used by the hypervisor after
    // boot; only counter 2's control words and 0x61's low two bits are
    // written, so channels 0 and 1 and the rest of 0x61 stay as they are.
    unsafe {
        match (port, write) {
            (0x42, None) => Some(inb(0x42)),
            (0x42, Some(v)) => {
                outb(0x42, v);
                Some(0)
            }
            (0x43, Some(v)) if v & 0xc0 == 0x80 => {
                outb(0x43, v);
                Some(0)
            }
            (0x43, Some(v)) if v & 0xc0 == 0xc0 && v & 0x08 != 0 => {
                outb(0x43, v & 0xf8);
                Some(0)
            }
            (0x61, None) => Some(inb(0x61)),
            (0x61, Some(v)) => {
                outb(0x61, (inb(0x61) & !3) | (v & 3));
                Some(0)
            }
            _ => None,
        }
    }
}

/// Wall-clock seconds since 1970 when the hypervisor started its clock,
/// from the CMOS real-time clock.
static BOOT_EPOCH: AtomicU64 = AtomicU64::new(0);

pub fn boot_epoch() -> u64 {
    BOOT_EPOCH.load(Ordering::Relaxed)
}

/// The initial domain set the wall clock (`XENPF_settime`): seconds since
/// 1970 at system time 0, for domains built from now on.
pub fn set_wallclock(sec: u64, _nsec: u32) {
    BOOT_EPOCH.store(sec, Ordering::Relaxed);
}

fn cmos(reg: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 (the CMOS) belong to the hypervisor; bit 7
    // of the index keeps NMIs enabled as they were (0).
    unsafe {
        outb(0x70, reg);
        inb(0x71)
    }
}

/// A CMOS register for the initial domain (`pv::emulate`'s port 0x71, as
/// Xen's `rtc_guest_read`): the index's bit 7 stays 0 (NMIs as they were).
pub fn cmos_read(reg: u8) -> u8 {
    cmos(reg & 0x7f)
}

/// Write a CMOS register for the initial domain (Xen's `rtc_guest_write`);
/// the caller decides which registers it may write.
pub fn cmos_write(reg: u8, val: u8) {
    // SAFETY: as `cmos`; one index/data pair, nothing of the hypervisor's
    // depends on the CMOS after boot (the RTC is read once, `read_rtc`).
    unsafe {
        outb(0x70, reg & 0x7f);
        outb(0x71, val);
    }
}

/// Read the RTC (waiting out an update in progress) as Unix seconds.
fn read_rtc() -> u64 {
    let mut spins = 0;
    while cmos(0x0a) & 0x80 != 0 && spins < 1_000_000 {
        spins += 1;
    }
    let bcd = cmos(0x0b) & 0x04 == 0;
    let h24 = cmos(0x0b) & 0x02 != 0;
    let conv = |v: u8| if bcd { (v & 0x0f) + (v >> 4) * 10 } else { v } as u64;
    let sec = conv(cmos(0x00));
    let min = conv(cmos(0x02));
    let raw_hour = cmos(0x04);
    let pm = raw_hour & 0x80 != 0;
    let mut hour = conv(raw_hour & 0x7f);
    if !h24 {
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let day = conv(cmos(0x07));
    let month = conv(cmos(0x08));
    let year = 2000 + conv(cmos(0x09));
    crate::calendar::unix_seconds(year, month, day, hour, min, sec)
}

pub fn tsc_at_boot() -> u64 {
    TSC_AT_BOOT.load(Ordering::Relaxed)
}

/// The `vcpu_time_info` scale: ns = ((ticks << shift) * mul) >> 32, with
/// a negative shift meaning a right shift (Xen's tsc_to_system_mul and
/// tsc_shift).
pub fn scale() -> (u32, i8) {
    let hz = tsc_hz();
    let mut shift: i8 = 0;
    // Bring the ratio 1e9 / hz into [0.5, 1) with a power of two, so the
    // 32-bit fraction keeps the most precision.
    let (mut num, mut den) = (1_000_000_000u128, hz as u128);
    while num >= den {
        den <<= 1;
        shift += 1;
    }
    while num * 2 < den {
        num <<= 1;
        shift -= 1;
    }
    (((num << 32) / den).min(u32::MAX as u128) as u32, shift)
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

pub fn tsc_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / tsc_hz() as u128) as u64
}

pub fn ns_to_tsc(ns: u64) -> u64 {
    (ns as u128 * tsc_hz() as u128 / 1_000_000_000) as u64
}

/// Nanoseconds since the hypervisor started its clock.
pub fn now_ns() -> u64 {
    tsc_to_ns(tsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed)))
}

/// Busy-wait (used only during boot).
pub fn spin_ns(ns: u64) {
    let end = tsc() + ns_to_tsc(ns);
    while tsc() < end {
        core::hint::spin_loop();
    }
}

/// `scale()` (the TSC's frequency, set once at boot before any guest
/// runs), worked out once: its loops and division cost ~80 instructions
/// on every vCPU switch. Kept as `mul << 8 | shift`, with bit 40 saying
/// it is there.
#[inline(always)]
fn scale_cached() -> (u32, i8) {
    static SCALE: AtomicU64 = AtomicU64::new(0);
    let s = SCALE.load(Ordering::Relaxed);
    if s != 0 {
        return ((s >> 8) as u32, s as u8 as i8);
    }
    let (mul, shift) = scale();
    SCALE.store(
        1 << 40 | (mul as u64) << 8 | shift as u8 as u64,
        Ordering::Relaxed,
    );
    (mul, shift)
}

/// Write the time now into the guest's `vcpu_time_info` at direct-map
/// address `va` (Xen: `__update_vcpu_system_time`), the version odd
/// while the fields change, as the ABI asks.
///
/// Contract (the caller's; it knows which domain and checked it alive):
/// `va` is the record inside a frame of a live domain's, its shared_info
/// or a registered vcpu_info frame, which the domain keeps until it is
/// torn down; the guest may write there too (only its own clock suffers).
#[inline(always)]
pub fn publish_vcpu_time(va: u64) {
    let (mul, shift) = scale_cached();
    let tsc = tsc();
    let sys = tsc_to_ns(tsc - tsc_at_boot());
    let t = va as *mut ringvisor_abi::xen::VcpuTimeInfo;
    // SAFETY: by the contract, RAM of the domain's in the direct map that
    // no Rust reference covers; written with volatile stores only.
    unsafe {
        let v = core::ptr::addr_of_mut!((*t).version);
        let ver = v.read_volatile();
        v.write_volatile(ver.wrapping_add(1) | 1);
        core::sync::atomic::fence(Ordering::SeqCst);
        core::ptr::addr_of_mut!((*t).tsc_timestamp).write_volatile(tsc);
        core::ptr::addr_of_mut!((*t).system_time).write_volatile(sys);
        core::ptr::addr_of_mut!((*t).tsc_to_system_mul).write_volatile(mul);
        core::ptr::addr_of_mut!((*t).tsc_shift).write_volatile(shift);
        core::sync::atomic::fence(Ordering::SeqCst);
        v.write_volatile((ver | 1).wrapping_add(1));
    }
}
