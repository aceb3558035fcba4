//! More than one vCPU: which vCPU is running, and starting another one
//! with `VCPUOP_initialise` + `VCPUOP_up`.
//!
//! Every vCPU but 0 runs on a stack of its own, registered here; a vCPU
//! finds its id by the stack it is on ([`this_vcpu`]). Bounces in guest
//! kernel mode (events included) land on the interrupted stack, so a
//! handler knows which vCPU it interrupted the same way. vCPU 0 is
//! whatever runs on no registered stack (the boot stack, the user-mode
//! kernel stack).
//!
//! Statics touched from several vCPUs are atomics: on real Xen with more
//! than one physical CPU the vCPUs really run at once.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::abi::{self, Pod, VcpuGuestContext};
use crate::traps;

/// vCPUs with a `vcpu_info` in `shared_info` (`XEN_LEGACY_MAX_VCPUS`).
pub const MAX_VCPUS: usize = abi::XEN_LEGACY_MAX_VCPUS;

static STACK_LO: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
static STACK_HI: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

fn rsp() -> u64 {
    let v: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) v, options(nomem, nostack)) };
    v
}

/// The vCPU running this code: the one whose registered stack holds
/// `%rsp`, else 0.
pub fn this_vcpu() -> u32 {
    let sp = rsp();
    for v in 1..MAX_VCPUS {
        let lo = STACK_LO[v].load(Ordering::Relaxed);
        if lo != 0 && (lo..STACK_HI[v].load(Ordering::Relaxed)).contains(&sp) {
            return v as u32;
        }
    }
    0
}

/// Says that vCPU `vcpu` (not 0) runs on `[bottom, top)`.
pub fn register_stack(vcpu: u32, bottom: u64, top: u64) {
    assert!(vcpu != 0 && (vcpu as usize) < MAX_VCPUS, "bad vCPU");
    STACK_HI[vcpu as usize].store(top, Ordering::Relaxed);
    STACK_LO[vcpu as usize].store(bottom, Ordering::Release);
}

/// What a started vCPU runs: `f(vcpu, arg)`. When it returns, the vCPU
/// takes itself down (`VCPUOP_down`).
pub type VcpuFn = extern "C" fn(u32, u64);

/// First instruction of a vCPU started by [`context`]: `rdi` = vCPU id,
/// `rsi` = the [`VcpuFn`], `rdx` = its argument; `%rsp` is 8 below a
/// 16-byte boundary, as after a `call`.
extern "C" fn vcpu_entry(vcpu: u64, f: u64, arg: u64) -> ! {
    // SAFETY: `context` put a `VcpuFn` in rsi.
    let f: VcpuFn = unsafe { core::mem::transmute::<u64, VcpuFn>(f) };
    f(vcpu as u32, arg);
    loop {
        // SAFETY: takes this vCPU down; no argument.
        unsafe { crate::hypercall::vcpu_op(abi::VCPUOP_DOWN, vcpu as u32, 0) };
        crate::events::yield_now();
    }
}

/// A `vcpu_guest_context` for vCPU `vcpu` that runs `f(vcpu, arg)` on
/// `[bottom, top)` in guest kernel mode (`VGCF_in_kernel`): the page tables
/// the domain booted on (`ctrlreg[3] = xen_pfn_to_cr3(mfn of pt_base)`),
/// the runtime's trap table, event and failsafe callbacks, flat kernel
/// `cs`/`ss`, no GDT of its own. Also registers the stack (see
/// [`this_vcpu`]). Returns `None` if `pt_base` has no MFN.
pub fn context(vcpu: u32, bottom: u64, top: u64, f: VcpuFn, arg: u64) -> Option<VcpuGuestContext> {
    let si = crate::start_info::start_info();
    let l4 = crate::start_info::virt_to_mfn(si.pt_base)?;
    register_stack(vcpu, bottom, top);
    let mut c = VcpuGuestContext::zeroed();
    c.flags = abi::VGCF_IN_KERNEL;
    let r = &mut c.user_regs;
    r.rip = vcpu_entry as *const () as u64;
    // A zero "return address" at top - 8.
    r.rsp = top - 8;
    // SAFETY: the word below `top` belongs to the caller's stack, which
    // nothing uses yet.
    unsafe { ((top - 8) as *mut u64).write_volatile(0) };
    r.rdi = vcpu.into();
    r.rsi = f as *const () as u64;
    r.rdx = arg;
    r.cs = abi::FLAT_KERNEL_CS64;
    r.ss = abi::FLAT_KERNEL_SS64;
    r.rflags = crate::cpu::RFLAGS_RSVD1 | crate::cpu::RFLAGS_IF;
    for t in traps::default_trap_table()
        .iter()
        .filter(|t| t.address != 0)
    {
        c.trap_ctxt[t.vector as usize] = *t;
    }
    c.kernel_ss = abi::FLAT_KERNEL_SS.into();
    c.kernel_sp = top;
    c.ctrlreg[3] = abi::xen_pfn_to_cr3(l4);
    c.event_callback_eip = traps::entry_address(traps::VEC_EVENT)?;
    c.failsafe_callback_eip = traps::entry_address(traps::VEC_FAILSAFE)?;
    Some(c)
}

/// `vcpu_op(cmd, vcpu, 0)` for the commands without an argument (`up`,
/// `down`, `is_up`, `stop_*_timer`).
pub fn vcpu_op0(cmd: u32, vcpu: u32) -> i64 {
    // SAFETY: these commands take no argument.
    unsafe { crate::hypercall::vcpu_op(cmd, vcpu, 0) }
}

/// `VCPUOP_initialise(vcpu, c)`.
///
/// # Safety
/// The context must describe code, stack and tables the vCPU can run on
/// without disturbing the others (as [`context`] builds).
pub unsafe fn initialise(vcpu: u32, c: &VcpuGuestContext) -> i64 {
    // SAFETY: forwarded contract; the hypervisor only reads `c`.
    unsafe { crate::hypercall::vcpu_op(abi::VCPUOP_INITIALISE, vcpu, c as *const _ as u64) }
}
