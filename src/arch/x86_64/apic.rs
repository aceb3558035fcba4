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
/// The IPI that wakes a CPU from `hlt` (smp.rs).
pub const WAKE_VECTOR: u64 = 0xf1;
/// The IPI that asks a CPU to flush its TLB (smp.rs).
pub const FLUSH_VECTOR: u64 = 0xf2;
pub const SPURIOUS_VECTOR: u64 = 0xff;

const REG_ID: usize = 0x20;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
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

/// Switch this CPU's APIC on (globally in the MSR, then in software) and
/// its timer to a masked one-shot at divide-by-16. Returns the MSR's
/// physical address.
fn enable() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; we set only the
    // global enable bit and keep its address.
    let base_msr = unsafe { rdmsr(IA32_APIC_BASE) };
    if base_msr & APIC_X2APIC_MODE != 0 {
        leave_x2apic(base_msr);
    } else if base_msr & APIC_GLOBAL_ENABLE == 0 {
        // SAFETY: as above.
        unsafe { x86::msr::wrmsr(IA32_APIC_BASE, base_msr | APIC_GLOBAL_ENABLE) };
    }
    base_msr & 0x000f_ffff_ffff_f000
}

/// IA32_APIC_BASE.EXTD: the APIC is in x2APIC mode (registers are MSRs).
const APIC_X2APIC_MODE: u64 = 1 << 10;
/// Set once `leave_x2apic` ran on the boot CPU (reported at boot).
static LEFT_X2APIC: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Firmware (UEFI, often) handed over in x2APIC mode, where the memory
/// registers this driver uses do not answer. Go back to xAPIC through
/// the disabled state, the only allowed way (SDM Vol. 3A, 11.12.5: x2APIC
/// to xAPIC directly is an invalid transition); at boot, with interrupts
/// off and nothing armed, what the APIC forgets does not matter. Where
/// the CPU locks x2APIC on (IA32_XAPIC_DISABLE_STATUS), stop with a
/// message instead of a #GP.
fn leave_x2apic(base_msr: u64) {
    const MSR_ARCH_CAPABILITIES: u32 = 0x10a;
    const ARCH_CAPS_XAPIC_DISABLE_STATUS: u64 = 1 << 21;
    const MSR_XAPIC_DISABLE_STATUS: u32 = 0xbd;
    // CPUID.(7,0):EDX bit 29: IA32_ARCH_CAPABILITIES exists (the crate
    // has no name for it).
    let has_arch_caps =
        raw_cpuid::cpuid!(0).eax >= 7 && raw_cpuid::cpuid!(7, 0).edx & (1 << 29) != 0;
    // SAFETY: IA32_ARCH_CAPABILITIES exists when CPUID says so, and its
    // XAPIC_DISABLE_STATUS bit says MSR 0xbd exists; reads only.
    let locked = has_arch_caps
        && unsafe {
            rdmsr(MSR_ARCH_CAPABILITIES) & ARCH_CAPS_XAPIC_DISABLE_STATUS != 0
                && rdmsr(MSR_XAPIC_DISABLE_STATUS) & 1 != 0
        };
    if locked {
        super::exit::exit(
            super::exit::Verdict::Failure,
            format_args!(
                "the local APIC is locked in x2APIC mode, which ringvisor does not drive yet"
            ),
        );
    }
    // SAFETY: x2APIC -> disabled -> xAPIC, as the SDM allows; the address
    // bits are kept.
    unsafe {
        x86::msr::wrmsr(
            IA32_APIC_BASE,
            base_msr & !(APIC_X2APIC_MODE | APIC_GLOBAL_ENABLE),
        );
        x86::msr::wrmsr(
            IA32_APIC_BASE,
            (base_msr & !APIC_X2APIC_MODE) | APIC_GLOBAL_ENABLE,
        );
    }
    LEFT_X2APIC.store(true, Ordering::Relaxed);
}

/// Whether firmware left some CPU's APIC in x2APIC mode and `enable`
/// switched it back to xAPIC.
pub fn left_x2apic() -> bool {
    LEFT_X2APIC.load(Ordering::Relaxed)
}

fn enable_local() {
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32); // software enable
    write(REG_TIMER_DIVIDE, 0b0011); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
}

pub fn init(tsc_deadline: bool) -> ApicInfo {
    mask_legacy_pics();
    let phys = enable();
    BASE.store(super::vm::map_mmio(phys) as usize, Ordering::Relaxed);
    enable_local();

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

/// Switch an application processor's APIC and timer on, as `init` did
/// the boot CPU's. Every CPU's APIC answers at the same address (each
/// sees its own registers there) and its timer runs at the rate the boot
/// CPU measured (one bus clock). Returns this APIC's ID, or None when its
/// registers are not where the boot CPU's were.
pub fn init_ap() -> Option<u32> {
    let phys = enable();
    if BASE.load(Ordering::Relaxed) == 0
        || super::vm::translate(BASE.load(Ordering::Relaxed) as u64) != Some(phys)
    {
        return None;
    }
    enable_local();
    Some(id())
}

/// This CPU's APIC ID (xAPIC: bits 24-31 of the ID register).
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Interrupt command register fields (SDM Vol. 3A, 11.6.1).
const ICR_FIXED: u32 = 0; // delivery mode 000
const ICR_INIT: u32 = 5 << 8;
const ICR_STARTUP: u32 = 6 << 8;
const ICR_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;

/// The xAPIC's destination field is 8 bits: higher IDs need x2APIC mode.
pub const MAX_XAPIC_ID: u32 = 0xfe;

/// Wait (at most ~100 ms) until the last IPI left this APIC.
fn icr_idle() -> bool {
    let end = time::tsc() + time::ns_to_tsc(100_000_000);
    while read(REG_ICR_LOW) & ICR_PENDING != 0 {
        if time::tsc() > end {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Send one IPI: `low` to the ICR for APIC `dest`, with interrupts off
/// across the two writes (an interrupt handler sending its own IPI in
/// between would change the destination). False if it never left.
fn send(dest: u32, low: u32) -> bool {
    use x86::bits64::rflags::{self, RFlags};
    let was_on = rflags::read().contains(RFlags::FLAGS_IF);
    // SAFETY: turning interrupts off is always sound; they are turned
    // back on below only if they were on.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    let ok = icr_idle() && {
        write(REG_ICR_HIGH, dest << 24);
        write(REG_ICR_LOW, low);
        icr_idle()
    };
    if was_on {
        // SAFETY: restores the caller's interrupt flag.
        unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    }
    ok
}

/// Send interrupt `vector` to the CPU with APIC ID `dest`.
pub fn send_ipi(dest: u32, vector: u8) -> bool {
    send(dest, ICR_FIXED | ICR_ASSERT | vector as u32)
}

/// INIT, asserted then deasserted (the MP specification's sequence, as
/// Xen's `wakeup_secondary_cpu`): the target resets and waits for a SIPI.
pub fn send_init(dest: u32) -> bool {
    send(dest, ICR_INIT | ICR_LEVEL | ICR_ASSERT) && send(dest, ICR_INIT | ICR_LEVEL)
}

/// Start-up IPI: the target starts in real mode at `page << 12`.
pub fn send_startup(dest: u32, page: u8) -> bool {
    send(dest, ICR_STARTUP | ICR_ASSERT | page as u32)
}

/// Acknowledge the interrupt being handled.
pub fn eoi() {
    write(REG_EOI, 0);
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
    // Every CPU runs vCPUs (its time slice, guest timers): its way out
    // reschedules. The serial console's keys are the boot CPU's: the
    // debug keys look at the line at their next chance (`take_key_tick`).
    let pc = super::percpu::this();
    pc.raise(super::percpu::WORK_RESCHED);
    if pc.cpu == 0 {
        KEY_TICK.store(true, Ordering::Relaxed);
    }
}

/// A timer interrupt came on the boot CPU since the last look: time to
/// read the serial line (`debugkeys::poll`).
static KEY_TICK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether the boot CPU's timer fired since the last call (and forget it).
pub fn take_key_tick() -> bool {
    KEY_TICK.swap(false, Ordering::Relaxed)
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
