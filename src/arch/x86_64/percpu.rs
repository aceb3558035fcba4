//! Per-CPU data reached through GS while in the hypervisor.
//!
//! Only the `syscall` entry needs it (it arrives with the guest's RSP and
//! must find this CPU's stack); Rust code uses `this_cpu()`. While a guest
//! runs, the guest's GS base is live and ours waits in IA32_KERNEL_GS_BASE;
//! every entry from a guest `swapgs`es (entry.S).

use core::cell::UnsafeCell;
use core::mem::size_of;

use x86::msr::{wrmsr, IA32_GS_BASE, IA32_KERNEL_GSBASE};

use super::idt::TrapFrame;

#[repr(C)]
pub struct PerCpu {
    /// Points at itself (handy when reading through GS).
    pub self_ptr: u64,
    /// Top of this CPU's hypervisor stack (also TSS.RSP0).
    pub stack_top: u64,
    /// The guest RSP while the syscall entry switches stacks.
    pub scratch_rsp: u64,
    pub cpu: u64,
    /// 1 while the current vCPU is a 32-bit guest's: the way out turns
    /// SMEP/SMAP off for it (to the CPU its ring-1 kernel is supervisor
    /// mode, and its pages are user pages), every way in turns them back
    /// on before any hypervisor code runs (entry.S; Xen: cr4_pv32_restore).
    pub pv32: u64,
    /// The CR4 bits that are: SMEP/SMAP as the CPU has them (0 if none).
    pub cr4_pv32: u64,
}

struct Slot(UnsafeCell<PerCpu>);
// SAFETY: each CPU only touches its own slot (there is one CPU for now).
unsafe impl Sync for Slot {}

static CPU0: Slot =
    Slot(UnsafeCell::new(PerCpu { self_ptr: 0, stack_top: 0, scratch_rsp: 0, cpu: 0, pv32: 0, cr4_pv32: 0 }));

/// Set up this CPU's block (boot CPU) with its stack top and point GS at it.
pub fn init(stack_top: u64) {
    let p = CPU0.0.get();
    // SAFETY: boot is single threaded and nothing else holds the slot yet;
    // GS_BASE points at a static that lives forever, and KERNEL_GS_BASE is
    // 0 for the (not yet running) guest.
    unsafe {
        (*p).self_ptr = p as u64;
        (*p).stack_top = stack_top;
        (*p).cr4_pv32 = super::cpu::user_protection_bits();
        wrmsr(IA32_GS_BASE, p as u64);
        wrmsr(IA32_KERNEL_GSBASE, 0);
    }
}

/// Say whether the current vCPU is a 32-bit guest's (see `PerCpu::pv32`).
pub fn set_pv32(on: bool) {
    // SAFETY: this CPU's own slot; the entry code reads it only on this
    // CPU, with interrupts off, as we do here.
    unsafe { (*CPU0.0.get()).pv32 = on as u64 }
}

pub fn stack_top() -> u64 {
    // SAFETY: written once in init, read-only afterwards.
    unsafe { (*CPU0.0.get()).stack_top }
}

/// The slot at the top of this CPU's stack where a guest's registers live
/// while the hypervisor handles its trap (and from where it returns).
pub fn guest_frame() -> *mut TrapFrame {
    (stack_top() - size_of::<TrapFrame>() as u64) as *mut TrapFrame
}
