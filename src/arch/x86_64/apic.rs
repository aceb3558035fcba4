//! The local APIC (xAPIC, memory mapped) and its timer in one-shot mode.
//!
//! The timer's rate is unknown until measured: we count it at boot against
//! the firmware's reference clock (HPET or ACPI PM timer), else against
//! the TSC. Where CPUID offers TSC-deadline mode the timer is armed with an
//! absolute TSC value instead (no rate to measure, no drift). The legacy 8259 PICs are remapped away from the exception
//! vectors and masked, so only the APIC interrupts us.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86::io::outb;
use x86::msr::{rdmsr, IA32_APIC_BASE};

use super::time;

pub const TIMER_VECTOR: u64 = 0xf0;
pub const SPURIOUS_VECTOR: u64 = 0xff;

const REG_ID: usize = 0x20;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

/// Virtual address of the APIC's registers (0 until `init`).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Timer ticks per second at divide-by-16.
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken (the boot self-check waits for one).
static FIRED: AtomicU64 = AtomicU64::new(0);

fn reg(off: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) + off) as *mut u32
}

fn read(off: usize) -> u32 {
    // SAFETY: BASE maps the APIC's 4 KiB register page uncached (see
    // init); `off` is one of the register offsets above.
    unsafe { reg(off).read_volatile() }
}

fn write(off: usize, v: u32) {
    // SAFETY: as in `read`.
    unsafe { reg(off).write_volatile(v) }
}

fn mask_legacy_pics() {
    // SAFETY: the 8259 PICs belong to the hypervisor. The ICW sequence
    // moves their vectors to 0x20-0x2f (away from exceptions), then all
    // lines are masked.
    unsafe {
        outb(0x20, 0x11);
        outb(0xa0, 0x11);
        outb(0x21, 0x20);
        outb(0xa1, 0x28);
        outb(0x21, 4);
        outb(0xa1, 2);
        outb(0x21, 1);
        outb(0xa1, 1);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

pub struct ApicInfo {
    pub id: u32,
    pub phys: u64,
    pub timer_hz: u64,
    /// What the timer's rate was counted against.
    pub counted_against: &'static str,
    /// One-shot timers are TSC-deadline ones.
    pub tsc_deadline: bool,
}

const LVT_TSC_DEADLINE: u32 = 0b10 << 17;
/// Whether `oneshot` arms the TSC deadline (CPUID.01H:ECX[24]).
static DEADLINE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn init(tsc_deadline: bool) -> ApicInfo {
    mask_legacy_pics();
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; we set only the
    // global enable bit and keep its address.
    let base_msr = unsafe { rdmsr(IA32_APIC_BASE) };
    if base_msr & APIC_GLOBAL_ENABLE == 0 {
        // SAFETY: as above.
        unsafe { x86::msr::wrmsr(IA32_APIC_BASE, base_msr | APIC_GLOBAL_ENABLE) };
    }
    let phys = base_msr & 0x000f_ffff_ffff_f000;
    BASE.store(
        crate::mm::paging::map_mmio(phys) as usize,
        Ordering::Relaxed,
    );

    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32); // software enable
    write(REG_TIMER_DIVIDE, 0b0011); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);

    // Count the timer for 10 ms of the reference clock, else of the TSC.
    write(REG_TIMER_INIT, u32::MAX);
    let counter = || (u32::MAX - read(REG_TIMER_CURRENT)) as u64;
    let by_ref = super::firmware::ref_clock()
        .and_then(|c| Some((time::rate_against(&c, 10_000_000, counter)?, c.name())));
    let (hz, counted_against) = by_ref.unwrap_or_else(|| {
        write(REG_TIMER_INIT, u32::MAX);
        time::spin_ns(10_000_000);
        (counter() * 100, "the TSC")
    });
    write(REG_TIMER_INIT, 0);
    TIMER_HZ.store(hz.max(1), Ordering::Relaxed);
    DEADLINE.store(tsc_deadline, Ordering::Relaxed);
    ApicInfo {
        id: read(REG_ID) >> 24,
        phys,
        timer_hz: hz,
        counted_against,
        tsc_deadline,
    }
}

/// Interrupt once, `ns` from now (one-shot mode, vector TIMER_VECTOR).
pub fn oneshot(ns: u64) {
    if DEADLINE.load(Ordering::Relaxed) {
        write(REG_LVT_TIMER, LVT_TSC_DEADLINE | TIMER_VECTOR as u32);
        let at = time::tsc().saturating_add(time::ns_to_tsc(ns).max(1));
        // SAFETY: IA32_TSC_DEADLINE exists when CPUID says TSC-deadline
        // mode does (checked before DEADLINE was set). SDM 11.5.4.1: the
        // MFENCE orders the LVT write before the MSR write.
        unsafe {
            core::arch::asm!("mfence", options(nostack));
            x86::msr::wrmsr(x86::msr::IA32_TSC_DEADLINE, at);
        }
        return;
    }
    let ticks = (ns as u128 * TIMER_HZ.load(Ordering::Relaxed) as u128 / 1_000_000_000)
        .clamp(1, u32::MAX as u128);
    write(REG_LVT_TIMER, TIMER_VECTOR as u32);
    write(REG_TIMER_INIT, ticks as u32);
}

pub fn timer_interrupt() {
    FIRED.fetch_add(1, Ordering::Relaxed);
    write(REG_EOI, 0);
    crate::sched::request_resched();
    crate::debugkeys::tick();
}

pub fn timer_fired() -> u64 {
    FIRED.load(Ordering::Relaxed)
}

/// Boot check: arm a one-shot and wait for it with interrupts on. Returns
/// the delay observed, or None if it never came within 1 s.
pub fn selfcheck(ns: u64) -> Option<u64> {
    let before = timer_fired();
    let t0 = time::now_ns();
    oneshot(ns);
    // Poll rather than `hlt`: if the timer never fires, we still time out.
    // SAFETY: the IDT is loaded and the timer handler is ready.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    let seen = loop {
        if timer_fired() != before {
            break Some(time::now_ns() - t0);
        }
        if time::now_ns() - t0 > 1_000_000_000 {
            break None;
        }
        core::hint::spin_loop();
    };
    // SAFETY: turning interrupts off is always sound.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    seen
}
