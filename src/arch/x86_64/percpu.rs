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
}

struct Slot(UnsafeCell<PerCpu>);
// SAFETY: each CPU only touches its own slot (there is one CPU for now).
unsafe impl Sync for Slot {}

static CPU0: Slot = Slot(UnsafeCell::new(PerCpu { self_ptr: 0, stack_top: 0, scratch_rsp: 0, cpu: 0 }));

/// Set up this CPU's block (boot CPU) with its stack top and point GS at it.
pub fn init(stack_top: u64) {
    let p = CPU0.0.get();
    // SAFETY: boot is single threaded and nothing else holds the slot yet;
    // GS_BASE points at a static that lives forever, and KERNEL_GS_BASE is
    // 0 for the (not yet running) guest.
    unsafe {
        (*p).self_ptr = p as u64;
        (*p).stack_top = stack_top;
        wrmsr(IA32_GS_BASE, p as u64);
        wrmsr(IA32_KERNEL_GSBASE, 0);
    }
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
