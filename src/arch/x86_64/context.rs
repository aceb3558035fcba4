//! The register state a vCPU switch saves and restores: FPU/SSE
//! (`fxsave`/`fxrstor`, CR0.TS), segment selectors and bases, CR3. Which
//! vCPU, when, and with what (a validated root, a checked selector) is
//! the scheduler's and the PV layer's to decide (`sched::switch_in`,
//! `switch_out`); these only touch the registers.

use core::sync::atomic::{AtomicU32, Ordering};

use x86::msr::{rdmsr, wrmsr, IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GSBASE};

/// Area for `fxsave`: a vCPU's FPU/SSE registers.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// A guest's FXSAVE image (VCPUOP_initialise), with the MXCSR bits
    /// this CPU lacks cleared: fxrstor would #GP on them in the hypervisor.
    pub fn from_guest(image: &[u8; 512]) -> FpuState {
        let mut a = *image;
        let mxcsr = u32::from_le_bytes([a[24], a[25], a[26], a[27]]) & mxcsr_mask();
        a[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        FpuState(a)
    }

    /// The state after FNINIT and reset: x87 control word 0x37f, MXCSR
    /// 0x1f80 (every exception masked), all registers zero.
    pub fn initial() -> FpuState {
        let mut a = [0u8; 512];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuState(a)
    }
}

/// Save the FPU/SSE registers. CR0.TS must be clear (`set_cr0_ts(false)`).
#[inline(always)]
pub fn fxsave(area: &mut FpuState) {
    // SAFETY: `area` is 512 bytes, 16-byte aligned (the type says so), as
    // fxsave64 needs; CR0.TS is clear while the hypervisor runs (callers
    // clear it first after a vCPU that set it), so this cannot #NM.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack)) };
}

/// The MXCSR bits this CPU has (fxsave's MXCSR_MASK; 0 there means the
/// architectural default 0xffbf): any other bit makes fxrstor #GP.
static MXCSR_MASK: AtomicU32 = AtomicU32::new(0xffbf);

/// Learn MXCSR_MASK (at boot, before any guest: CR0.TS is clear).
pub fn probe_mxcsr_mask() {
    let mut area = FpuState::initial();
    fxsave(&mut area);
    let m = u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]]);
    MXCSR_MASK.store(if m == 0 { 0xffbf } else { m }, Ordering::Relaxed);
}

pub fn mxcsr_mask() -> u32 {
    MXCSR_MASK.load(Ordering::Relaxed)
}

/// Load the FPU/SSE registers from `area`. CR0.TS must be clear.
#[inline(always)]
pub fn fxrstor(area: &FpuState) {
    let (fcw, fsw) = (
        u16::from_le_bytes([area.0[0], area.0[1]]),
        u16::from_le_bytes([area.0[2], area.0[3]]),
    );
    if fsw & !fcw & 0x3f == 0 && super::cpu::FXRSTOR_KEEPS_POINTERS.load(Ordering::Relaxed) {
        // Xen's fix for XSA-52: load a value so the x87 pointers are this
        // hypervisor's (harmless) instead of the previous vCPU's.
        // SAFETY: x87 state is scratch here (fxrstor overwrites it next);
        // fildl reads 4 bytes of the area, which is valid memory.
        unsafe {
            core::arch::asm!("fnclex", "ffree st(7)", "fild dword ptr [{}]", in(reg) area.0.as_ptr(), options(nostack))
        };
    }
    // SAFETY: as fxsave; every `FpuState` is valid for fxrstor: filled by
    // fxsave64, `initial`, or `from_guest`, which clears the MXCSR bits
    // this CPU lacks (the only ones that would #GP).
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area.0.as_ptr(), options(nostack)) };
}

/// Set or clear CR0.TS (whether the next FPU instruction traps).
#[inline(always)]
pub fn set_cr0_ts(on: bool) {
    // SAFETY: CR0.TS only decides whether the next FPU instruction traps
    // (#NM); the hypervisor's own FPU use (fxsave/fxrstor) clears it first.
    unsafe {
        let c = x86::controlregs::cr0();
        let ts = x86::controlregs::Cr0::CR0_TASK_SWITCHED;
        let want = if on { c | ts } else { c - ts };
        if want != c {
            x86::controlregs::cr0_write(want);
        }
    }
}

/// The guest's GS base while the hypervisor runs: it waits in
/// IA32_KERNEL_GS_BASE for the swapgs on the way out.
#[inline(always)]
pub fn write_guest_gs_base(base: u64) {
    // SAFETY: only the guest sees this base, after the swapgs on exit; a
    // non-canonical value would #GP here, in wrmsr, and every caller's
    // value was checked canonical when the guest set it.
    unsafe { wrmsr(IA32_KERNEL_GSBASE, base) };
}

/// The guest's GS base (see `write_guest_gs_base`).
#[inline(always)]
pub fn read_guest_gs_base() -> u64 {
    // SAFETY: reading an MSR has no side effects.
    unsafe { rdmsr(IA32_KERNEL_GSBASE) }
}

/// The guest's FS base (the hypervisor does not use FS).
#[inline(always)]
pub fn write_fs_base(base: u64) {
    // SAFETY: the hypervisor never uses FS; the caller's value was checked
    // canonical when the guest set it (or comes from a descriptor).
    unsafe { wrmsr(IA32_FS_BASE, base) };
}

#[inline(always)]
pub fn read_fs_base() -> u64 {
    // SAFETY: reading an MSR has no side effects.
    unsafe { rdmsr(IA32_FS_BASE) }
}

/// Load CR3 with the page table at frame `mfn` (flushing non-global
/// translations).
///
/// Contract (the caller's to keep; a safe function because each caller
/// names its check): `mfn` is a validated L4 (or, for a 32-bit guest, a
/// validated L3-backed root) of the domain whose vCPU is about to run,
/// with the hypervisor's own slots in place, or the hypervisor's own root
/// (`vm::root`): either way the hypervisor stays mapped.
#[inline(always)]
pub fn load_cr3(mfn: u64) {
    // SAFETY: by the contract above, the hypervisor's code, data and
    // stacks stay mapped at the same addresses.
    unsafe { x86::controlregs::cr3_write(mfn << 12) };
}

/// Load the hypervisor's own page tables (no guest's).
#[inline(always)]
pub fn load_hypervisor_cr3() {
    // SAFETY: the hypervisor's own tables map everything it uses.
    unsafe { x86::controlregs::cr3_write(super::vm::root()) };
}

/// Read ds, es, fs, gs (the guest's: the hypervisor never loads them).
#[inline(always)]
pub fn read_data_selectors() -> [u16; 4] {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        core::arch::asm!("mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs",
            out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs, options(nomem, nostack));
    }
    [ds, es, fs, gs]
}

/// Is `sel` one a guest may have loaded: null, or a present data (or
/// readable code) segment in the current GDT, of DPL 3 (a 32-bit guest's
/// kernel may also use DPL 1, its ring)? Asked with `lar`, which reports
/// instead of faulting.
#[inline(always)]
pub fn selector_ok(sel: u16, compat: bool) -> bool {
    if sel & !3 == 0 {
        return true;
    }
    let (ok, rights): (u8, u32);
    // SAFETY: lar only reads the descriptor table and sets ZF.
    unsafe {
        core::arch::asm!("lar {r:e}, {s:e}", "setz {ok}", r = out(reg) rights, s = in(reg) sel as u32, ok = out(reg_byte) ok,
            options(nomem, nostack));
    }
    let dpl = (rights >> 13) & 3;
    let present = rights & (1 << 15) != 0;
    let s_bit = rights & (1 << 12) != 0;
    let code_not_readable = rights & (1 << 11) != 0 && rights & (1 << 9) == 0;
    let rpl = (sel & 3) as u32;
    let ring_ok = if compat {
        dpl >= 1 && rpl >= 1 && rpl <= dpl
    } else {
        dpl == 3 && rpl == 3
    };
    ok == 1 && present && s_bit && ring_ok && !code_not_readable
}

/// Load a vCPU's data selectors, each checked first: a selector whose
/// descriptor the guest has since changed would fault here, in ring 0.
/// Returns false when one is bad, which is loaded as null (the good ones
/// as they are, as Xen's `loadsegment` does): the caller delivers the
/// failsafe callback.
// Tour 08: selectors checked before they are loaded
#[inline(always)]
pub fn load_data_selectors(sels: [u16; 4], compat: bool) -> bool {
    let good = sels.map(|s| selector_ok(s, compat));
    let ok = good.iter().all(|&g| g);
    let [ds, es, fs, gs] = [0, 1, 2, 3].map(|i| if good[i] { sels[i] } else { 0 });
    // SAFETY: every selector is null or was checked by selector_ok against
    // the GDT now loaded. Loading GS replaces the hypervisor's GS base, so
    // it is put back at once (interrupts are off).
    unsafe {
        let ours = rdmsr(IA32_GS_BASE);
        core::arch::asm!("mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}", "mov gs, {3:x}",
            in(reg) ds, in(reg) es, in(reg) fs, in(reg) gs, options(nomem, nostack));
        wrmsr(IA32_GS_BASE, ours);
    }
    ok
}

/// Load a selector into %gs for the guest, keeping the hypervisor's own
/// GS base. Contract: `sel` is null or a flat DPL-3 data selector of the
/// hypervisor's GDT (the caller checked it): such a load cannot fault.
#[inline(always)]
pub fn load_gs_selector(sel: u16) {
    // SAFETY: by the contract, the load cannot fault; loading %gs replaces
    // the live GS base (ours, in the hypervisor), which is put back at
    // once (interrupts are off).
    unsafe {
        let ours = rdmsr(IA32_GS_BASE);
        core::arch::asm!("mov gs, {0:x}", in(reg) sel, options(nomem, nostack));
        wrmsr(IA32_GS_BASE, ours);
    }
}

/// Sleep until the next interrupt, then turn interrupts off again.
#[inline(always)]
pub fn idle() {
    // SAFETY: the IDT is loaded; `sti; hlt` sleeps until an interrupt,
    // which is handled on this stack, then interrupts go off again.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
