//! CPU identification (raw-cpuid) and the protections we switch on.

use core::fmt::Write;

use raw_cpuid::CpuId;
use x86::controlregs::{cr0, cr0_write, cr4, cr4_write, Cr0, Cr4};
use x86::msr::{rdmsr, wrmsr, IA32_EFER, IA32_PAT};

use crate::boot_info::FixedStr;

const EFER_NXE: u64 = 1 << 11;

/// What the hypervisor needs to know about the CPU it runs on.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub vendor: FixedStr<16>,
    pub brand: FixedStr<48>,
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
    pub fsgsbase: bool,
    pub pcid: bool,
    pub xsave: bool,
    pub gbpages: bool,
    pub x2apic: bool,
    pub tsc_deadline: bool,
    pub invariant_tsc: bool,
    pub hypervisor: bool,
    /// CPUID leaf 0x15 (or 0x16 base frequency), when the CPU states it.
    pub tsc_hz: Option<u64>,
}

pub fn detect() -> Features {
    let id = CpuId::new();
    let fi = id.get_feature_info();
    let ef = id.get_extended_feature_info();
    let ext = id.get_extended_processor_and_feature_identifiers();
    let tsc_hz = id
        .get_tsc_info()
        .and_then(|t| t.tsc_frequency())
        .or_else(|| {
            id.get_processor_frequency_info()
                .map(|f| f.processor_base_frequency() as u64 * 1_000_000)
                .filter(|&hz| hz != 0)
        });
    Features {
        vendor: FixedStr::from_bytes(
            id.get_vendor_info()
                .as_ref()
                .map_or("unknown", |v| v.as_str())
                .as_bytes(),
        ),
        brand: FixedStr::from_bytes(
            id.get_processor_brand_string()
                .as_ref()
                .map_or("", |b| b.as_str())
                .trim()
                .as_bytes(),
        ),
        family: fi.as_ref().map_or(0, |f| f.family_id()),
        model: fi.as_ref().map_or(0, |f| f.model_id()),
        stepping: fi.as_ref().map_or(0, |f| f.stepping_id()),
        nx: ext.as_ref().is_some_and(|e| e.has_execute_disable()),
        gbpages: ext.as_ref().is_some_and(|e| e.has_1gib_pages()),
        smep: ef.as_ref().is_some_and(|e| e.has_smep()),
        smap: ef.as_ref().is_some_and(|e| e.has_smap()),
        umip: ef.as_ref().is_some_and(|e| e.has_umip()),
        fsgsbase: ef.as_ref().is_some_and(|e| e.has_fsgsbase()),
        pcid: fi.as_ref().is_some_and(|f| f.has_pcid()),
        xsave: fi.as_ref().is_some_and(|f| f.has_xsave()),
        x2apic: fi.as_ref().is_some_and(|f| f.has_x2apic()),
        tsc_deadline: fi.as_ref().is_some_and(|f| f.has_tsc_deadline()),
        hypervisor: fi.as_ref().is_some_and(|f| f.has_hypervisor()),
        invariant_tsc: id
            .get_advanced_power_mgmt_info()
            .is_some_and(|a| a.has_invariant_tsc()),
        tsc_hz,
    }
}

impl Features {
    /// The feature names that matter to a PV hypervisor, for the banner.
    pub fn list(&self) -> FixedStr<160> {
        let mut s = Line::default();
        for (on, name) in [
            (self.nx, "nx"),
            (self.smep, "smep"),
            (self.smap, "smap"),
            (self.umip, "umip"),
            (self.fsgsbase, "fsgsbase"),
            (self.pcid, "pcid"),
            (self.xsave, "xsave"),
            (self.gbpages, "1g-pages"),
            (self.x2apic, "x2apic"),
            (self.tsc_deadline, "tsc-deadline"),
            (self.invariant_tsc, "invariant-tsc"),
            (self.hypervisor, "under-a-hypervisor"),
        ] {
            if on {
                let _ = write!(s, "{name} ");
            }
        }
        FixedStr::from_bytes(s.as_bytes().trim_ascii_end())
    }
}

/// A small formatting buffer.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Line {
            buf: [0; 160],
            len: 0,
        }
    }
}

impl Line {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Switch on what protects the hypervisor from its guests and from itself:
/// EFER.NXE (so W^X mappings can forbid execution), CR0.WP (ring 0 honours
/// read-only pages), SMEP/SMAP (ring 0 never runs or silently reads guest
/// user pages), UMIP (guests cannot read GDT/IDT addresses), and SSE state
/// (guests may use it; the hypervisor itself is soft-float).
pub fn enable_protections(f: &Features) {
    // SAFETY: these bits only restrict what code may do (NX, WP, SMEP, SMAP,
    // UMIP) or enable FPU state handling; each is set only when CPUID says
    // the CPU has it, and our mappings are built to honour them; the PAT
    // keeps the memory types of the four entries our mappings use.
    unsafe {
        if f.nx {
            wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_NXE);
        }
        let mut c0 = cr0();
        c0 |= Cr0::CR0_WRITE_PROTECT | Cr0::CR0_MONITOR_COPROCESSOR | Cr0::CR0_NUMERIC_ERROR;
        c0 &= !(Cr0::CR0_EMULATE_COPROCESSOR | Cr0::CR0_TASK_SWITCHED);
        cr0_write(c0);
        let mut c4 = cr4();
        c4 |= Cr4::CR4_ENABLE_SSE | Cr4::CR4_UNMASKED_SSE | Cr4::CR4_ENABLE_GLOBAL_PAGES;
        if f.smep {
            c4 |= Cr4::CR4_ENABLE_SMEP;
        }
        if f.smap {
            c4 |= Cr4::CR4_ENABLE_SMAP;
        }
        let user_bits = (c4 & (Cr4::CR4_ENABLE_SMEP | Cr4::CR4_ENABLE_SMAP)).bits() as u64;
        USER_PROTECT.store(user_bits, core::sync::atomic::Ordering::Relaxed);
        if f.umip {
            c4 |= Cr4::CR4_ENABLE_UMIP;
        }
        // A known state, not what the loader left: no XSAVE. Guest FPU
        // state is switched with fxsave/fxrstor, which do not cover AVX
        // and later registers; with OSXSAVE off they #UD instead of
        // leaking between domains (XCR0 is out of reach without it).
        c4 &= !Cr4::CR4_ENABLE_OS_XSAVE;
        cr4_write(c4);
        // The PAT guests are told about (rdmsr, pv::emulate) must be the
        // one the CPU uses, now that the initial domain may choose cache
        // attributes for I/O memory (pv::mm): Xen's XEN_MSR_PAT, whose
        // first four entries (WB, WT, UC-, UC) are the power-on ones the
        // hypervisor's own mappings use, then WC, WP, UC, UC.
        wrmsr(IA32_PAT, PAT_XEN);
        let v = f.vendor.as_str();
        FXRSTOR_KEEPS_POINTERS.store(
            v == "AuthenticAMD" || v == "HygonGenuine",
            core::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Xen's `XEN_MSR_PAT`: WB, WT, UC-, UC, WC, WP, UC, UC.
pub const PAT_XEN: u64 = 0x0000_0501_0007_0406;

/// AMD's fxsave/fxrstor skip FIP/FDP/FOP unless an exception is pending:
/// fxrstor would leave the previous vCPU's values visible (XSA-52).
pub static FXRSTOR_KEEPS_POINTERS: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// SMEP and SMAP as the CPU has them (set by enable_protections).
static USER_PROTECT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The SMEP/SMAP bits of CR4 the hypervisor runs with. They are off only
/// between the last instruction of the way out to a 32-bit guest and the
/// first of the way back in (entry.S, `PerCpu::pv32`): to the CPU a
/// 32-bit guest kernel in ring 1 is supervisor mode and would be refused
/// its own user pages (Xen does the same).
pub fn user_protection_bits() -> u64 {
    USER_PROTECT.load(core::sync::atomic::Ordering::Relaxed)
}

/// The hypervisor's IDT (`idt`) or GDT: base and limit, as SIDT/SGDT give
/// them (for guests that UMIP keeps from reading them: pv::emulate).
pub fn descriptor_table(idt: bool) -> (u64, u16) {
    let mut p: x86::dtables::DescriptorTablePointer<u64> = Default::default();
    // SAFETY: sidt/sgdt only store the register into `p`.
    unsafe {
        if idt {
            x86::dtables::sidt(&mut p);
        } else {
            x86::dtables::sgdt(&mut p);
        }
    }
    (p.base as u64, p.limit)
}

/// The task register's selector.
pub fn task_register() -> u16 {
    // SAFETY: str only reads the task register.
    unsafe { x86::task::tr().bits() }
}

pub fn cr4_bits() -> u64 {
    // SAFETY: reading CR4 has no side effects.
    unsafe { cr4().bits() as u64 }
}

/// The control registers, for the fault dump.
pub fn control_registers() -> (u64, u64, u64, u64) {
    // SAFETY: reading control registers has no side effects.
    unsafe {
        (
            cr0().bits() as u64,
            x86::controlregs::cr2() as u64,
            x86::controlregs::cr3(),
            cr4().bits() as u64,
        )
    }
}

/// The frame number of the top-level table CR3 holds.
#[inline(always)]
pub fn cr3_frame() -> u64 {
    // SAFETY: reading CR3 has no side effects.
    (unsafe { x86::controlregs::cr3() } & 0x000f_ffff_ffff_f000) >> 12
}

/// Drop this CPU's translation of the page at `va` (global or not).
pub fn flush_tlb_page(va: u64) {
    // SAFETY: invalidating a TLB entry is always sound.
    unsafe { x86::tlb::flush(va as usize) };
}

/// Drop this CPU's non-global translations (a CR3 write with its own
/// value; global ones stay: SDM Vol. 3A, 4.10.4.1). Guest entries are
/// never global, so this is the flush for guest mappings.
#[inline]
pub fn flush_tlb_nonglobal() {
    // SAFETY: reloading CR3 with its own value only flushes the TLB.
    unsafe { x86::controlregs::cr3_write(x86::controlregs::cr3()) };
}

/// Drop every translation this CPU caches, global ones too (toggling
/// CR4.PGE flushes them; a CR3 write alone keeps them: SDM Vol. 3A,
/// 4.10.4.1).
pub fn flush_tlb_all() {
    // SAFETY: the same CR4 with PGE off and back on: only the TLB changes.
    unsafe {
        let c4 = cr4();
        if c4.contains(Cr4::CR4_ENABLE_GLOBAL_PAGES) {
            cr4_write(c4 - Cr4::CR4_ENABLE_GLOBAL_PAGES);
            cr4_write(c4);
        } else {
            x86::controlregs::cr3_write(x86::controlregs::cr3());
        }
    }
}
