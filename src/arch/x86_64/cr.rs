//! Control registers and segment-base MSRs as the PV policy code uses them
//! on a guest's behalf (`pv::traps`, `pv::emulate`, `pv::hypercall`): safe
//! wrappers, each saying why its instruction cannot hurt the hypervisor.

use x86::controlregs::{cr0, cr0_write, Cr0};
use x86::msr::{rdmsr, wrmsr, IA32_FS_BASE, IA32_KERNEL_GSBASE};

/// CR2: the address of the last page fault on this CPU.
#[inline(always)]
pub fn cr2() -> u64 {
    // SAFETY: reading CR2 has no side effects.
    unsafe { x86::controlregs::cr2() as u64 }
}

/// Set or clear CR0.TS (a guest's `fpu_taskswitch`, its virtual CR0.TS).
#[inline(always)]
pub fn set_cr0_ts(ts: bool) {
    // SAFETY: CR0.TS only decides whether the next FPU instruction traps;
    // the hypervisor itself never uses the FPU. Every other bit is kept.
    unsafe {
        let c = cr0();
        let t = Cr0::CR0_TASK_SWITCHED;
        cr0_write(if ts { c | t } else { c - t });
    }
}

/// Clear CR0.TS (`clts`): the guest's #NM handler may use the FPU now.
#[inline(always)]
pub fn clts() {
    // SAFETY: clearing CR0.TS only lets FPU instructions run.
    unsafe { core::arch::asm!("clts", options(nomem, nostack)) };
}

/// The live FS base (the running guest's).
#[inline(always)]
pub fn fs_base() -> u64 {
    // SAFETY: reading an MSR that exists on every x86-64 CPU; no side effect.
    unsafe { rdmsr(IA32_FS_BASE) }
}

/// Load the FS base; `base` must be canonical (else the write faults: the
/// caller checks, as it checks every guest value).
#[inline(always)]
pub fn set_fs_base(base: u64) {
    debug_assert!(matches!(base >> 47, 0 | 0x1ffff));
    // SAFETY: the hypervisor never uses FS: its base only affects the
    // guest; the caller gives a canonical value, which cannot fault.
    unsafe { wrmsr(IA32_FS_BASE, base) };
}

/// KERNEL_GS_BASE: while the hypervisor runs (its own GS base live), the
/// guest's live GS base waits here.
#[inline(always)]
pub fn kernel_gs_base() -> u64 {
    // SAFETY: reading an MSR that exists on every x86-64 CPU; no side effect.
    unsafe { rdmsr(IA32_KERNEL_GSBASE) }
}
