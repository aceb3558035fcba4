//! Where every guest entry into the hypervisor lands, and the way back.
//!
//! A guest enters in one of three ways, all ending in `trap_dispatch` with
//! the guest's registers in a `TrapFrame` at the top of this CPU's stack:
//!
//! 1. `syscall` from its kernel: a hypercall (`hypercall::dispatch`);
//! 2. `syscall` from its user mode: bounced to its kernel's syscall
//!    callback (`traps::syscall_from_user`);
//! 3. an exception or interrupt: emulated, bounced to its trap table, or
//!    handled by the hypervisor (timer).
//!
//! On the way out, `before_guest_return` settles what is pending (a dead
//! domain, a time slice) and checks the frame is one `iretq` can take.

use alloc::format;

use crate::arch::x86_64::idt::{TrapFrame, VEC_SYSCALL32};
use crate::pv::{hypercall, traps};
use crate::sched::{self, Hv, HV};

/// Run `f` on the current domain with the hypervisor state locked.
pub fn with_current<R>(f: impl FnOnce(&mut Hv) -> R) -> R {
    let mut g = HV.lock();
    f(g.as_mut().expect("guest entry before any domain exists"))
}

pub fn syscall(f: &mut TrapFrame) {
    with_current(|hv| {
        let cur = hv.current;
        let d = &mut hv.domains[cur];
        if f.vector == VEC_SYSCALL32 {
            traps::syscall_from_user(d, f, true);
        } else if d.v().kernel_mode {
            hypercall::dispatch(hv, f);
        } else {
            traps::syscall_from_user(d, f, false);
        }
    })
}

pub fn guest_trap(f: &mut TrapFrame) {
    with_current(|hv| {
        let cur = hv.current;
        traps::guest_exception(&mut hv.domains[cur], &mut hv.frames, f);
    })
}

/// The last thing before `iretq` into a guest.
pub fn before_guest_return(f: &mut TrapFrame) {
    with_current(|hv| loop {
        // Settle a dead domain or an expired time slice; this may switch
        // to another vCPU or end the run.
        sched::schedule(hv, f);
        let cur = hv.current;
        let d = &mut hv.domains[cur];
        if !d.is_alive() {
            continue; // killed while being switched in
        }
        // What iretq would refuse in ring 0 (a #GP there would be a
        // hypervisor fault) is checked here, so it can only ever be the
        // guest's problem: hypercalls and bounces store validated values,
        // so failing this means a hypervisor bug, caught early.
        let ok_cs = matches!(f.cs as u16, 0xe033 | 0xe023);
        if !ok_cs || f.ss as u16 != 0xe02b || !crate::pv::guest_mem::is_canonical(f.rip) {
            sched::crash(d, format!("bad return frame cs {:#x} ss {:#x} rip {:#x}", f.cs, f.ss, f.rip));
            continue;
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
        return;
    })
}
