//! Where every guest entry into the hypervisor lands, and the way back.
//!
//! A guest enters in one of these ways, all reaching `trap_dispatch` with
//! the guest's registers in a `TrapFrame` at the top of this CPU's stack,
//! and then `from_guest`, which takes the current domain's lock
//! (`on_domain`; a call that may reach another domain takes that
//! domain's lock after ours is released; lock order: docs/design.md):
//!
//! 1. `syscall` from a 64-bit kernel: a hypercall
//!    (`hypercall::dispatch_domain`);
//! 2. `int $0x82` from a 32-bit kernel in ring 1: a hypercall
//!    (`compat::dispatch_domain`);
//! 3. `syscall` from guest user mode: bounced to its kernel's syscall
//!    callback (`traps::syscall_from_user`);
//! 4. an exception: emulated or bounced to its trap table
//!    (`traps::guest_exception`); an interrupt (the timer) was already
//!    handled by the hypervisor.
//!
//! On the way out, with nothing pending for the scheduler, `leave_domain`
//! delivers an event upcall and checks the frame under the domain's lock
//! alone; otherwise `before_guest_return`, under `HV`, settles what is
//! pending (a dead domain, a time slice, a blocked vCPU) and checks the
//! frame is one `iretq` can take; `publish_current` tells this CPU's
//! block where the current domain and vCPU are after a change.
//!
//! A few hypercalls of a 64-bit kernel are answered before any of that
//! (`pv::fast`, which says which lock each takes), and leave without the
//! scheduler when nothing is pending.

use alloc::format;

use crate::arch::x86_64::idt::{TrapFrame, VEC_SYSCALL32};
use crate::domain::Domain;
use crate::pv::{hypercall, traps};
use crate::sched::{self, Hv, HV};

/// Run `f` with the scheduler lock `HV` held (no domain lock may be held
/// by the caller: `HV` comes first in the lock order).
pub fn with_current<R>(f: impl FnOnce(&mut Hv) -> R) -> R {
    let mut g = HV.lock();
    f(g.as_mut().expect("guest entry before any domain exists"))
}

/// Every entry from a guest: under its domain's lock alone
/// ([`on_domain`]: hypercalls, system calls, exceptions, interrupts), then
/// the way back, without the scheduler when nothing is pending for it.
// Tour 02: every entry from a guest, and the way back
#[inline(never)]
pub fn from_guest(f: &mut TrapFrame) {
    if !on_domain(f) {
        // No domain is current (a guest entry never meets this): only
        // the scheduler's way out is left to run.
        locked_way_out(f);
    }
}

/// The way out under `HV` (`before_guest_return`), sleeping with every
/// lock released whenever nothing can run, until something can.
pub fn locked_way_out(f: &mut TrapFrame) {
    while with_current(|hv| before_guest_return(hv, f)) {
        sched::idle();
    }
}

/// `syscall` from a guest: a hypercall when its kernel made it (`true`:
/// the caller makes it), else a system call bounced (or refused) here.
// Tour 02, 06: hypercall, or system call for the guest kernel?
fn syscall_on(d: &mut Domain, f: &mut TrapFrame) -> bool {
    {
        if d.is_32bit() {
            // Xen's compat_syscall: the caller is user mode, from whatever
            // ring (the CPU does not say which, and a cached kernel-mode
            // flag is stale once the kernel went to ring 3 by a native
            // iret): flat user selectors, then the syscall32 callback, or
            // without one #GP(0) at the `syscall` instruction.
            f.cs = ringvisor_abi::x86_32::FLAT_RING3_CS as u64;
            f.ss = ringvisor_abi::x86_32::FLAT_RING3_SS as u64;
            d.v_mut().set_kernel_mode(false);
            let cb = d.v().syscall32;
            if cb.address != 0 && cb.cs & !3 != 0 {
                traps::deliver(d, f, traps::Bounce::to_callback("syscall32", cb));
            } else {
                f.rip = f.rip.wrapping_sub(2) & 0xffff_ffff;
                traps::inject(d, f, traps::VEC_GP, Some(0));
            }
            false
        } else if f.vector == VEC_SYSCALL32 {
            traps::syscall_from_user(d, f, true);
            false
        } else if d.v().kernel_mode() {
            true
        } else {
            traps::syscall_from_user(d, f, false);
            false
        }
    }
}

/// An entry that concerns only the current domain, handled under that
/// domain's lock alone (no `HV`): system calls, every hypercall,
/// exceptions, interrupts; then the
/// way out, without the scheduler when nothing is pending for it
/// (`leave_domain`). A call that may reach another domain takes that
/// domain's lock after ours is released (`hypercall::call_unlocked`).
/// A multicall makes each entry as its plain call
/// (`multicall::multicall_on`). `false`: nothing done (no domain is
/// current yet, which a guest entry never finds): the caller takes `HV`.
// Tour 02: `int $0x82` from a 32-bit kernel in ring 1
fn on_domain(f: &mut TrapFrame) -> bool {
    use crate::arch::x86_64::apic::{FLUSH_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, WAKE_VECTOR};
    use crate::arch::x86_64::idt::{VEC_HYPERCALL32, VEC_SYSCALL};
    let Some(cell) = current_domain() else {
        return false;
    };
    let mut g = cell.lock();
    let d = &mut *g;
    let hypercall32 = f.vector == VEC_HYPERCALL32 && f.cs & 3 == 1;
    if matches!(f.vector, VEC_SYSCALL | VEC_SYSCALL32 | VEC_HYPERCALL32) {
        // A hypercall or system call: the guest is making progress.
        d.v_mut().set_in_failsafe(false);
    }
    // A call that may reach another domain (`hypercall::is_global`, or an
    // event channel op naming one): left undone by the dispatcher, made
    // below with our lock released.
    let mut remote_event = false;
    match f.vector {
        VEC_SYSCALL | VEC_SYSCALL32 => {
            if syscall_on(d, f) && !hypercall::dispatch_domain(d, f) {
                remote_event = true;
            }
        }
        VEC_HYPERCALL32 if hypercall32 => {
            if d.is_32bit() {
                d.v_mut().set_kernel_mode(true);
                if !crate::pv::compat::dispatch_domain(d, f) {
                    remote_event = true;
                }
            } else {
                // A 64-bit guest cannot be in ring 1; be safe anyway.
                traps::inject(d, f, traps::VEC_GP, Some(0x82 << 3 | 2));
            }
        }
        TIMER_VECTOR | SPURIOUS_VECTOR | WAKE_VECTOR | FLUSH_VECTOR | 0x20..=0x2f => {}
        _ => guest_trap_on(d, f),
    }
    if remote_event {
        // Our lock is dropped: the call takes it and another domain's in
        // turn.
        drop(g);
        call_unlocked(cell.domain(), f, hypercall32);
        g = cell.lock();
    }
    let pc = crate::arch::x86_64::percpu::this();
    if pc.deferred_send.load(core::sync::atomic::Ordering::Relaxed) != 0 {
        // An event for another domain, or a closed channel's other end:
        // done with this domain's lock released (never two domain locks
        // at once, without HV), then the way out under it again.
        drop(g);
        crate::pv::event::send_deferred();
        g = cell.lock();
    }
    let d = &mut *g;
    let left = leave_domain(d, f);
    // The locked way out takes HV, then this lock: ours goes first.
    drop(g);
    if !left {
        locked_way_out(f);
    }
    true
}

/// What the domain's dispatcher left undone (`hypercall::is_global`, an
/// event channel op naming another domain), made with no lock held; the
/// answer in the frame, as the dispatcher would have put it.
#[cold]
#[inline(never)]
fn call_unlocked(cell: &'static crate::sync::DomainLock, f: &mut TrapFrame, hypercall32: bool) {
    let (nr, a, tail) = if hypercall32 {
        let a = [f.rbx, f.rcx, f.rdx, f.rsi, f.rdi].map(|r| r as u32 as u64);
        (f.rax as u32 as u64, a, " (32-bit)")
    } else {
        (f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8], "")
    };
    let ret = if nr == ringvisor_abi::xen::HYPERVISOR_MULTICALL as u64 {
        match crate::pv::multicall::multicall_on(cell, f, a[0], a[1]) {
            crate::pv::multicall::Outcome::Ret(r) => r,
            // The frame is final (an iret entry, or a continuation).
            crate::pv::multicall::Outcome::FrameDone => return,
        }
    } else {
        hypercall::call_unlocked(cell, nr, a)
    };
    hypercall::log_call(&cell.lock(), nr, a, ret, tail);
    f.rax = if hypercall32 {
        ret as u32 as u64
    } else {
        ret as u64
    };
}

/// The way out of [`on_domain`] when there is nothing for the scheduler
/// (this CPU's work word is 0, the vCPU can go on running, nothing
/// injected by hand): the event upcall, then `retcheck`, as
/// [`before_guest_return`] does them. `false`: the locked way out must
/// run (it settles what is pending, a domain that died, a refused frame).
fn leave_domain(d: &mut Domain, f: &mut TrapFrame) -> bool {
    use core::sync::atomic::Ordering::Relaxed;
    let v = d.v();
    // (`selftest=iretfault` is a work bit: the locked way out takes it.)
    if crate::arch::x86_64::percpu::this().work.load(Relaxed) != 0
        || !d.is_alive()
        || !v.up
        || v.blocked
        || v.inject.is_some()
    {
        return false;
    }
    crate::pv::event::deliver_upcall(d, f);
    if !d.is_alive() {
        return false; // the upcall could not be delivered: crashed
    }
    f.rflags = (f.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000); // IF on, IOPL 0, no VM/NT
    crate::pv::retcheck::refused(&d.v().gdt, d.is_32bit(), f.rip, f.cs as u16, f.ss as u16)
        .is_none()
}

/// The current domain's lock, as [`publish_current`] stored it in this
/// CPU's block (`None` before the first domain runs).
#[inline(always)]
pub fn current_domain() -> Option<crate::sync::Current> {
    crate::sync::current_domain(crate::arch::x86_64::percpu::this())
}

// Tour 04: an exception or interrupt from a guest
fn guest_trap_on(d: &mut Domain, f: &mut TrapFrame) {
    if d.is_32bit() {
        // A 32-bit guest's mode is its ring: 1 kernel, 3 user.
        d.v_mut().set_kernel_mode(f.cs & 3 != 3);
    }
    traps::guest_exception(d, crate::mm::frametable::frames(), f);
}

/// The hypervisor's `iretq` refused `f` (`idt::iret_fixup`): a frame
/// `retcheck` should have refused first. The domain is crashed, saying
/// so, and the way out settles what runs next.
pub fn return_faulted(f: &mut TrapFrame, vector: u64, error_code: u64) {
    let idle = with_current(|hv| {
        if let Some(mut d) = hv.cur() {
            let what = crate::arch::x86_64::idt::exception_name(vector);
            crate::error!(
                "d{}v{}: the return to rip {:#x} cs {:#x} ss {:#x} faulted: {what} error code {error_code:#x} (a frame ringvisor should have refused first)",
                d.id, d.cur, f.rip, f.cs, f.ss
            );
            sched::crash(&mut d, format!("return frame refused by the CPU ({what})"));
        }
        before_guest_return(hv, f)
    });
    if idle {
        sched::idle();
        locked_way_out(f);
    }
}

/// The last thing before `iretq` into a guest. Returns `true` when
/// nothing can run yet: the caller sleeps with `HV` released and calls
/// this again (`locked_way_out`).
// Tour 02, 05, 07: the last step before every return to a guest
#[must_use]
pub fn before_guest_return(hv: &mut Hv, f: &mut TrapFrame) -> bool {
    // The vCPU whose return frame was refused once on this way out.
    let mut refused_once = None;
    loop {
        // Settle a dead domain or an expired time slice; this may switch
        // to another vCPU or end the run.
        if sched::schedule(hv, f, publish_current) {
            return true;
        }
        // `schedule` returned with a vCPU on this CPU.
        let Some((cur, _)) = hv.current() else {
            return true;
        };
        let mut guard = hv.dom(cur);
        let d = &mut *guard;
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
            crate::pv::retcheck::refused(&d.v().gdt, d.is_32bit(), f.rip, f.cs as u16, f.ss as u16)
        else {
            use crate::arch::x86_64::percpu::{this, WORK_IRET_SELFTEST};
            if this().take(WORK_IRET_SELFTEST) != 0 {
                f.ss = 0; // selftest=iretfault: past every check, on purpose
            }
            debug_assert!(
                published(hv.domains[cur], d),
                "the lock-free paths' pointers are stale"
            );
            return false;
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
/// `shared_info` are, for the lock-free paths
/// (`pv::fast`). Called with the lock held wherever they can change:
/// before the first entry into a vCPU (`sched::start`) and after the
/// scheduler settled anything (a vCPU switch, a teardown, a new domain on
/// `hv.domains`); nothing else moves them. (A `vcpu_info` the guest moved
/// is read from the vCPU itself.)
pub fn publish_current(hv: &mut Hv) {
    use core::sync::atomic::Ordering::Relaxed;
    let pc = crate::arch::x86_64::percpu::this();
    let Some((di, vi)) = hv.current() else {
        crate::sync::publish_domain(pc, None);
        pc.publish_vcpu(None);
        pc.ids.store(0, Relaxed);
        pc.console_quiet.store(0, Relaxed);
        pc.iopl_assist.store(0, Relaxed);
        return;
    };
    let cell = hv.domains[di];
    // The vCPU first: `DomainLock::lock` reads it when the lock is ours.
    pc.ids.store((vi as u64) << 16, Relaxed);
    crate::sync::publish_domain(pc, Some(cell));
    let d = cell.lock();
    pc.console_quiet
        .store(alloc::sync::Arc::as_ptr(&d.console_quiet) as u64, Relaxed);
    pc.iopl_assist
        .store(alloc::sync::Arc::as_ptr(&d.iopl_assist) as u64, Relaxed);
    crate::mm::view::publish_vcpu_info(pc, crate::pv::traps::vcpu_info(&d, vi));
    pc.ids.store(d.id as u64 | (vi as u64) << 16, Relaxed);
    pc.user_mode
        .store(!d.vcpus[vi].kernel_mode() as u64, Relaxed);
    // The domain's lock, not the domain: `pv::fast` takes it.
    pc.publish_vcpu(Some(&d.vcpus[vi].hot));
}

/// What `publish_current` stored is still true (checked in debug builds).
fn published(cell: crate::sync::DomainRef, d: &mut crate::domain::Domain) -> bool {
    use core::sync::atomic::Ordering::Relaxed;
    let pc = crate::arch::x86_64::percpu::this();
    pc.domain.load(Relaxed) == cell as *const _ as u64
        && crate::sync::current_domain(pc).is_some_and(|c| core::ptr::eq(c.domain(), cell))
        && pc.vcpu_info.load(Relaxed) == crate::pv::traps::vcpu_info_addr(d, d.cur)
        && pc.is_current_vcpu(&d.v().hot)
}
