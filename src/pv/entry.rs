//! Where every guest entry into the hypervisor lands, and the way back.
//!
//! A guest enters in one of these ways, all reaching `trap_dispatch` with
//! the guest's registers in a `TrapFrame` at the top of this CPU's stack,
//! and then `from_guest`, which takes the hypervisor state's lock once:
//!
//! 1. `syscall` from a 64-bit kernel: a hypercall (`hypercall::dispatch`);
//! 2. `int $0x82` from a 32-bit kernel in ring 1: a hypercall
//!    (`compat::dispatch`);
//! 3. `syscall` from guest user mode: bounced to its kernel's syscall
//!    callback (`traps::syscall_from_user`);
//! 4. an exception: emulated or bounced to its trap table
//!    (`traps::guest_exception`); an interrupt (the timer) was already
//!    handled by the hypervisor.
//!
//! On the way out, `before_guest_return` settles what is pending (a dead
//! domain, a time slice, an event upcall) and checks the frame is one
//! `iretq` can take; last, `publish_current` tells this CPU's block where
//! the current domain and vCPU are.
//!
//! A few hypercalls of a 64-bit kernel that touch only its own vCPU are
//! answered before any of that, without the lock (`pv::fast`, which says
//! why that is safe), and leave without the scheduler when nothing is
//! pending.

use alloc::format;

use crate::arch::x86_64::idt::{TrapFrame, VEC_SYSCALL32};
use crate::pv::{hypercall, traps};
use crate::sched::{self, Hv, HV};

/// Run `f` on the current domain with the hypervisor state locked.
pub fn with_current<R>(f: impl FnOnce(&mut Hv) -> R) -> R {
    let mut g = HV.lock();
    f(g.as_mut().expect("guest entry before any domain exists"))
}

/// Every entry from a guest, under one lock of the hypervisor state: the
/// entry itself, then the way back (`before_guest_return`).
// Tour 02: every entry from a guest, and the way back, under one lock
#[inline(never)]
pub fn from_guest(f: &mut TrapFrame) {
    use crate::arch::x86_64::apic::{SPURIOUS_VECTOR, TIMER_VECTOR};
    use crate::arch::x86_64::idt::{VEC_HYPERCALL32, VEC_SYSCALL};
    with_current(|hv| {
        if matches!(f.vector, VEC_SYSCALL | VEC_SYSCALL32 | VEC_HYPERCALL32) {
            // A hypercall or system call: the guest is making progress.
            let cur = hv.current;
            hv.domains[cur].v_mut().in_failsafe = false;
        }
        match f.vector {
            VEC_SYSCALL | VEC_SYSCALL32 => syscall(hv, f),
            VEC_HYPERCALL32 if f.cs & 3 == 1 => compat_hypercall(hv, f),
            // Interrupts were handled by trap_dispatch; nothing of the
            // guest's to do.
            TIMER_VECTOR | SPURIOUS_VECTOR | 0x20..=0x2f => {}
            _ => guest_trap(hv, f),
        }
        before_guest_return(hv, f);
    })
}

// Tour 02, 06: hypercall, or system call for the guest kernel?
pub fn syscall(hv: &mut Hv, f: &mut TrapFrame) {
    {
        let cur = hv.current;
        let d = &mut hv.domains[cur];
        if d.compat {
            // Xen's compat_syscall: the caller is user mode, from whatever
            // ring (the CPU does not say which, and a cached kernel-mode
            // flag is stale once the kernel went to ring 3 by a native
            // iret): flat user selectors, then the syscall32 callback, or
            // without one #GP(0) at the `syscall` instruction.
            f.cs = ringvisor_abi::x86_32::FLAT_RING3_CS as u64;
            f.ss = ringvisor_abi::x86_32::FLAT_RING3_SS as u64;
            d.v_mut().kernel_mode = false;
            let cb = d.v().syscall32;
            if cb.address != 0 && cb.cs & !3 != 0 {
                traps::deliver(d, f, traps::Bounce::to_callback("syscall32", cb));
            } else {
                f.rip = f.rip.wrapping_sub(2) & 0xffff_ffff;
                traps::inject(d, f, traps::VEC_GP, Some(0));
            }
        } else if f.vector == VEC_SYSCALL32 {
            traps::syscall_from_user(d, f, true);
        } else if d.v().kernel_mode {
            hypercall::dispatch(hv, f);
        } else {
            traps::syscall_from_user(d, f, false);
        }
    }
}

/// `int $0x82` from a 32-bit guest kernel (ring 1).
// Tour 02: `int $0x82` from a 32-bit kernel in ring 1
pub fn compat_hypercall(hv: &mut Hv, f: &mut TrapFrame) {
    let cur = hv.current;
    if !hv.domains[cur].compat {
        // A 64-bit guest cannot be in ring 1; be safe anyway.
        traps::inject(&mut hv.domains[cur], f, traps::VEC_GP, Some(0x82 << 3 | 2));
        return;
    }
    hv.domains[cur].v_mut().kernel_mode = true;
    crate::pv::compat::dispatch(hv, f);
}

// Tour 04: an exception or interrupt from a guest
pub fn guest_trap(hv: &mut Hv, f: &mut TrapFrame) {
    let cur = hv.current;
    if hv.domains[cur].compat {
        // A 32-bit guest's mode is its ring: 1 kernel, 3 user.
        hv.domains[cur].v_mut().kernel_mode = f.cs & 3 != 3;
    }
    traps::guest_exception(&mut hv.domains[cur], &mut hv.frames, f);
}

/// The hypervisor's `iretq` refused `f` (`idt::iret_fixup`): a frame
/// `retcheck` should have refused first. The domain is crashed, saying
/// so, and the way out settles what runs next.
pub fn return_faulted(f: &mut TrapFrame, vector: u64, error_code: u64) {
    with_current(|hv| {
        let cur = hv.current;
        let d = &mut hv.domains[cur];
        let what = crate::arch::x86_64::idt::exception_name(vector);
        crate::error!(
            "d{}v{}: the return to rip {:#x} cs {:#x} ss {:#x} faulted: {what} error code {error_code:#x} (a frame ringvisor should have refused first)",
            d.id, d.cur, f.rip, f.cs, f.ss
        );
        sched::crash(d, format!("return frame refused by the CPU ({what})"));
        before_guest_return(hv, f);
    })
}

/// The last thing before `iretq` into a guest.
// Tour 02, 05, 07: the last step before every return to a guest
pub fn before_guest_return(hv: &mut Hv, f: &mut TrapFrame) {
    // The vCPU whose return frame was refused once on this way out.
    let mut refused_once = None;
    loop {
        // Settle a dead domain or an expired time slice; this may switch
        // to another vCPU or end the run.
        sched::schedule(hv, f);
        let cur = hv.current;
        let d = &mut hv.domains[cur];
        if !d.is_alive() {
            continue; // killed while being switched in
        }
        // An exception injected by hand (debug key `i`).
        if let Some(vector) = d.v_mut().inject.take() {
            let ec = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30).then_some(0);
            crate::pv::traps::inject(d, f, vector, ec);
            if !d.is_alive() {
                continue;
            }
        }
        // Events waiting and unmasked: the event callback runs first.
        crate::pv::event::deliver_upcall(d, f);
        if !d.is_alive() {
            continue; // the upcall could not be delivered: crashed
        }
        f.rflags = (f.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000); // IF on, IOPL 0, no VM/NT
                                                                      // Last, on the frame as it now is (after the upcall and any
                                                                      // bounce rewrote it): would iretq take it? A guest may return to
                                                                      // any selector and address (HYPERVISOR_iret, its callbacks, GDT
                                                                      // entries changed since it registered them); what the CPU would
                                                                      // refuse is the guest's fault, delivered like one (Xen: the exit
                                                                      // iretq's fixup, handle_exception), never a hypervisor fault.
        let Some((vector, ec)) =
            crate::pv::retcheck::refused(&d.v().gdt, d.compat, f.rip, f.cs as u16, f.ss as u16)
        else {
            use crate::arch::x86_64::percpu::{this, WORK_IRET_SELFTEST};
            if this().take(WORK_IRET_SELFTEST) != 0 {
                f.ss = 0; // selftest=iretfault: past every check, on purpose
            }
            debug_assert!(published(hv), "the lock-free paths' pointers are stale");
            return;
        };
        let who = (cur, d.cur);
        let what = format!(
            "return to rip {:#x} cs {:#x} ss {:#x} refused: {} (vector {vector}) error code {ec:#x}",
            f.rip,
            f.cs,
            f.ss,
            crate::arch::x86_64::idt::exception_name(vector as u64)
        );
        if refused_once == Some(who) {
            // The handler the fault went to cannot be returned to either.
            sched::crash(
                d,
                format!("{what}, again for the handler of the first refusal"),
            );
            continue;
        }
        refused_once = Some(who);
        crate::trace!(crate::trace::TRACE_BOUNCE, "d{}v{} {what}", d.id, d.cur);
        crate::pv::traps::inject(d, f, vector, Some(ec));
    }
}

/// Tell this CPU's block where the current domain, vCPU, its slot in
/// `shared_info` and the frame table are, for the lock-free paths
/// (`pv::fast`). Called with the lock held wherever they can change:
/// before the first entry into a vCPU (`sched::start`) and after the
/// scheduler settled anything (a vCPU switch, a teardown, a new domain on
/// `hv.domains`); nothing else moves them. (A `vcpu_info` the guest moved
/// is read from the vCPU itself.)
pub fn publish_current(hv: &mut Hv) {
    use core::sync::atomic::Ordering::Relaxed;
    let pc = crate::arch::x86_64::percpu::this();
    pc.frames.store(&mut hv.frames as *mut _ as u64, Relaxed);
    let Some(d) = hv.domains.get_mut(hv.current) else {
        pc.domain.store(0, Relaxed);
        pc.vcpu.store(0, Relaxed);
        return;
    };
    pc.vcpu_info
        .store(crate::pv::traps::vcpu_info_addr(d, d.cur), Relaxed);
    pc.ids.store(d.id as u64 | (d.cur as u64) << 16, Relaxed);
    pc.user_mode.store(!d.v().kernel_mode as u64, Relaxed);
    pc.vcpu.store(d.v_mut() as *mut _ as u64, Relaxed);
    pc.domain.store(d as *mut _ as u64, Relaxed);
}

/// What `publish_current` stored is still true (checked in debug builds).
fn published(hv: &mut Hv) -> bool {
    use core::sync::atomic::Ordering::Relaxed;
    let pc = crate::arch::x86_64::percpu::this();
    let frames = &mut hv.frames as *mut _ as u64;
    let d = &mut hv.domains[hv.current];
    pc.frames.load(Relaxed) == frames
        && pc.domain.load(Relaxed) == d as *mut _ as u64
        && pc.vcpu_info.load(Relaxed) == crate::pv::traps::vcpu_info_addr(d, d.cur)
        && pc.vcpu.load(Relaxed) == d.v_mut() as *mut _ as u64
}
