//! The firmware's facts put to work: powering off through ACPI S5,
//! resetting through the ACPI reset register or the keyboard controller,
//! the HPET and the ACPI PM timer as reference clocks, and whether QEMU's
//! `isa-debug-exit` device is there.
//!
//! The tables are read once at boot (`crate::firmware`, pure logic) and
//! what they say is kept here in statics that need no lock, so the way out
//! of a run (`exit`, also from a panic) can use them.

use spin::Once;
use x86::io::{inb, inl, inw, outb, outl, outw};

use super::vm;
use crate::boot_info::BootInfo;
use crate::firmware::acpi::{self, AcpiError, Tables};
use crate::firmware::fadt::{self, Fadt, Reg, Space};

/// A clock that runs at a known rate, to measure the TSC and the APIC
/// timer against.
#[derive(Clone, Copy, Debug)]
pub enum RefClock {
    /// The HPET's main counter (read 32 bits wide): its register block
    /// mapped at `va`, ticking every `period_fs` femtoseconds.
    Hpet { va: u64, period_fs: u64 },
    /// The ACPI PM timer (3.579545 MHz) at an I/O port, 24 or 32 bits.
    PmTimer { port: u16, bits: u32 },
}

pub const PM_TIMER_HZ: u64 = 3_579_545;

impl RefClock {
    pub fn name(&self) -> &'static str {
        match self {
            RefClock::Hpet { .. } => "HPET",
            RefClock::PmTimer { .. } => "ACPI PM timer",
        }
    }

    pub fn hz(&self) -> u64 {
        match *self {
            RefClock::Hpet { period_fs, .. } => 1_000_000_000_000_000 / period_fs,
            RefClock::PmTimer { .. } => PM_TIMER_HZ,
        }
    }

    /// The counter's width mask.
    pub fn mask(&self) -> u64 {
        match *self {
            RefClock::Hpet { .. } => u32::MAX as u64,
            RefClock::PmTimer { bits, .. } => (1u64 << bits) - 1,
        }
    }

    pub fn read(&self) -> u64 {
        match *self {
            // SAFETY: `va` maps the HPET's register page uncached (set up
            // in `init`); 0xf0 is the main counter, read 32 bits at a time.
            RefClock::Hpet { va, .. } => unsafe {
                ((va + HPET_COUNTER) as *const u32).read_volatile() as u64
            },
            // SAFETY: the FADT names this port as the PM timer; reading it
            // has no side effect.
            RefClock::PmTimer { port, .. } => unsafe { inl(port) as u64 & self.mask() },
        }
    }
}

const HPET_CAPS: u64 = 0x000;
const HPET_CONFIG: u64 = 0x010;
const HPET_COUNTER: u64 = 0x0f0;
/// The largest period the HPET specification allows (100 ns), in fs.
const HPET_MAX_PERIOD_FS: u64 = 100_000_000;

/// What powering off and resetting take.
#[derive(Clone, Copy, Debug, Default)]
struct Power {
    fadt: Fadt,
    /// SLP_TYPa and SLP_TYPb of S5, from the DSDT (or an SSDT).
    s5: Option<(u8, u8)>,
    /// A memory-space reset register, mapped at boot.
    reset_va: Option<u64>,
}

static POWER: Once<Power> = Once::new();
static CLOCK: Once<Option<RefClock>> = Once::new();
static DEBUG_EXIT: Once<bool> = Once::new();

/// The reference clock found at boot (HPET first, then the PM timer).
pub fn ref_clock() -> Option<RefClock> {
    CLOCK.get().copied().flatten()
}

/// What `init` found, for the boot log.
pub struct Summary {
    pub rsdp_from: &'static str,
    pub root: [u8; 4],
    pub fadt: Option<Fadt>,
    pub s5: Option<(u8, u8)>,
    pub hpet: Option<u64>,
    pub error: Option<AcpiError>,
}

/// Read the ACPI tables once (after the hypervisor's page tables are up,
/// before the TSC is calibrated). Without ACPI everything falls back: the
/// PIT for time, the keyboard controller for reset, no power-off.
pub fn init(bi: &BootInfo) -> Summary {
    let mem = &vm::BootPhysMem;
    let mut s = Summary {
        rsdp_from: "none",
        root: *b"none",
        fadt: None,
        s5: None,
        hpet: None,
        error: None,
    };
    let rsdp = match bi.acpi_rsdp {
        Some(r) => {
            s.rsdp_from = "the loader's ACPI tag";
            Some(r)
        }
        None => acpi::scan_bios(mem).map(|(_, r)| {
            s.rsdp_from = "the BIOS area";
            r
        }),
    };
    let tables = match rsdp.map(|r| Tables::new(mem, &r)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            s.error = Some(e);
            return finish(s, Power::default(), None);
        }
        None => {
            s.error = Some(AcpiError::NoRsdp);
            return finish(s, Power::default(), None);
        }
    };
    s.root = tables.root().signature();
    let mut power = Power::default();
    match tables.find(*b"FACP") {
        Ok(t) => {
            let f = fadt::parse_fadt(&t);
            power.fadt = f;
            s.fadt = Some(f);
            // \_S5_ is in the DSDT, or in an SSDT on some machines.
            let dsdt = acpi::read_table(mem, f.dsdt, Some(*b"DSDT"));
            power.s5 = dsdt.ok().and_then(|d| fadt::find_s5(d.body()));
            if power.s5.is_none() {
                power.s5 = tables
                    .addresses()
                    .filter_map(|a| acpi::read_table(mem, a, Some(*b"SSDT")).ok())
                    .find_map(|t| fadt::find_s5(t.body()));
            }
            s.s5 = power.s5;
            if let Some((r, _)) = f.reset.filter(|(r, _)| r.space == Space::Memory) {
                power.reset_va = Some(vm::map_mmio(r.addr) + (r.addr & 0xfff));
            }
        }
        Err(e) => s.error = Some(e),
    }
    let mut clock = None;
    if let Some(base) = tables
        .find(*b"HPET")
        .ok()
        .and_then(|t| fadt::parse_hpet(&t))
    {
        s.hpet = Some(base);
        clock = hpet_clock(base);
    }
    if clock.is_none() && power.fadt.pm_timer != 0 {
        let c = RefClock::PmTimer {
            port: power.fadt.pm_timer,
            bits: if power.fadt.pm_timer_32bit { 32 } else { 24 },
        };
        clock = ticking(c).then_some(c);
    }
    finish(s, power, clock)
}

fn finish(s: Summary, power: Power, clock: Option<RefClock>) -> Summary {
    POWER.call_once(|| power);
    CLOCK.call_once(|| clock);
    s
}

/// Map the HPET, check its period, start its counter if the firmware left
/// it stopped, and check that it counts.
fn hpet_clock(base: u64) -> Option<RefClock> {
    if base & 0xfff != 0 {
        return None;
    }
    let va = vm::map_mmio(base);
    // SAFETY: `va` maps the HPET's register page uncached; the
    // capabilities register only reads.
    let caps = unsafe { ((va + HPET_CAPS) as *const u64).read_volatile() };
    let period_fs = caps >> 32;
    if period_fs == 0 || period_fs > HPET_MAX_PERIOD_FS {
        return None;
    }
    // SAFETY: ENABLE_CNF (bit 0) only starts the main counter; the
    // comparators' interrupts stay as they are (off unless enabled).
    unsafe {
        let cfg = (va + HPET_CONFIG) as *mut u64;
        let v = cfg.read_volatile();
        if v & 1 == 0 {
            cfg.write_volatile(v | 1);
        }
    }
    let c = RefClock::Hpet { va, period_fs };
    ticking(c).then_some(c)
}

/// Does the clock advance (within about a million reads)? A missing or
/// gated device reads a constant.
fn ticking(c: RefClock) -> bool {
    let first = c.read();
    (0..1_000_000).any(|_| c.read() != first)
}

/// QEMU's `isa-debug-exit` (the test harness's exit status) is there:
/// we run under a hypervisor (CPUID), that hypervisor is QEMU (its
/// fw_cfg device answers "QEMU" at ports 0x510/0x511), and port 0xf4
/// reads 0 as that device does (an unused port reads 0xff). On a PC
/// without a hypervisor no port is touched.
pub fn debug_exit_present() -> bool {
    *DEBUG_EXIT.call_once(|| {
        let under_hv = raw_cpuid::CpuId::new()
            .get_feature_info()
            .is_some_and(|f| f.has_hypervisor());
        if !under_hv {
            return false;
        }
        // SAFETY: under QEMU, 0x510 selects a fw_cfg item (0: the
        // signature) and 0x511 reads it; 0xf4 is isa-debug-exit, whose
        // read has no effect. Elsewhere these are unused legacy ports.
        unsafe {
            outw(0x510, 0);
            let sig = [inb(0x511), inb(0x511), inb(0x511), inb(0x511)];
            &sig == b"QEMU" && inb(0xf4) == 0
        }
    })
}

const SLP_EN: u16 = 1 << 13;
const SLP_TYP_SHIFT: u16 = 10;
const SCI_EN: u16 = 1;

/// Enter ACPI S5 (soft off). Returns only if the machine is still on: no
/// ACPI, no `\_S5_`, or the write did nothing; the caller says so.
pub fn poweroff() -> Result<(), &'static str> {
    let p = POWER.get().ok_or("ACPI tables not read yet")?;
    let (a, b) = p.s5.ok_or("no \\_S5_ sleep state in the DSDT/SSDTs")?;
    let f = &p.fadt;
    if f.hw_reduced {
        let r = f
            .sleep_control
            .ok_or("hardware-reduced ACPI without a sleep control register")?;
        if r.space != Space::Io {
            return Err("the sleep control register is not an I/O port");
        }
        // SAFETY: the FADT names this port as the sleep control register;
        // SLP_TYP (bits 4:2) with SLP_EN (bit 5) enters the sleep state.
        unsafe { outb(r.addr as u16, (a & 7) << 2 | 1 << 5) };
    } else {
        if f.pm1a_cnt == 0 {
            return Err("the FADT has no PM1a control block");
        }
        enable_acpi_mode(f);
        // ACPI 7.4.2 / 16.1.7: SLP_TYP first in both blocks, then SLP_EN.
        // SAFETY: the FADT names these ports as the PM1 control blocks;
        // writing SLP_TYP and SLP_EN there is how ACPI enters S5.
        unsafe {
            let blocks = [(f.pm1a_cnt, a), (f.pm1b_cnt, b)];
            for &(port, typ) in blocks.iter().filter(|(p, _)| *p != 0) {
                let v = inw(port) & !(7 << SLP_TYP_SHIFT | SLP_EN);
                outw(port, v | (typ as u16 & 7) << SLP_TYP_SHIFT);
            }
            for &(port, _) in blocks.iter().filter(|(p, _)| *p != 0) {
                outw(port, inw(port) | SLP_EN);
            }
        }
    }
    super::time::spin_ns(100_000_000);
    Err("the machine is still on 100 ms after the S5 write")
}

/// Switch the firmware into ACPI mode if it is not (SCI_EN clear): write
/// ACPI_ENABLE to the SMI command port and wait up to 1 s for SCI_EN.
fn enable_acpi_mode(f: &Fadt) {
    // SAFETY: the FADT names the PM1a control block and the SMI command
    // port; reading SCI_EN and writing ACPI_ENABLE are the ACPI-defined
    // hand-over (ACPI 6.5, 16.3.1).
    unsafe {
        if inw(f.pm1a_cnt) & SCI_EN != 0 || f.smi_cmd == 0 || f.acpi_enable == 0 {
            return;
        }
        if f.smi_cmd > 0xffff {
            return;
        }
        outb(f.smi_cmd as u16, f.acpi_enable);
        for _ in 0..100 {
            if inw(f.pm1a_cnt) & SCI_EN != 0 {
                return;
            }
            super::time::spin_ns(10_000_000);
        }
    }
}

/// Reset the machine: the ACPI reset register when the FADT offers one,
/// then the keyboard controller's reset line, then a triple fault.
pub fn reboot() -> ! {
    if let Some(p) = POWER.get() {
        if let Some((r, v)) = p.fadt.reset {
            write_reset_reg(r, v, p.reset_va);
            super::time::spin_ns(50_000_000);
        }
    }
    // SAFETY: the keyboard controller's command port; 0xfe pulses the
    // CPU reset line. Wait (bounded) for its input buffer to be empty.
    unsafe {
        for _ in 0..100_000 {
            if inb(0x64) & 2 == 0 {
                break;
            }
        }
        outb(0x64, 0xfe);
    }
    super::time::spin_ns(50_000_000);
    // SAFETY: an empty IDT makes the breakpoint a triple fault, which
    // resets the machine: what was asked for.
    unsafe {
        let idt = x86::dtables::DescriptorTablePointer::<u64>::new_from_slice(&[]);
        x86::dtables::lidt(&idt);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    super::exit::halt_forever()
}

fn write_reset_reg(r: Reg, v: u8, va: Option<u64>) {
    match r.space {
        // SAFETY: the FADT names this port as the reset register.
        Space::Io if r.addr <= 0xffff => unsafe { outb(r.addr as u16, v) },
        Space::Memory => {
            if let Some(va) = va {
                // SAFETY: `va` maps the reset register uncached (init).
                unsafe { (va as *mut u8).write_volatile(v) }
            }
        }
        Space::PciConfig => {
            // Bus 0: device in bits 47:32, function 31:16, offset 15:0.
            let (dev, func, off) = (
                (r.addr >> 32) as u32 & 0x1f,
                (r.addr >> 16) as u32 & 0x7,
                r.addr as u32 & 0xff,
            );
            // SAFETY: configuration mechanism #1 (0xcf8/0xcfc) to the
            // register the FADT names, one byte.
            unsafe {
                outl(0xcf8, 0x8000_0000 | dev << 11 | func << 8 | (off & 0xfc));
                outb(0xcfc + (off & 3) as u16, v);
            }
        }
        Space::Io => {}
    }
}
