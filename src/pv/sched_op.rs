//! `sched_op` and `set_timer_op` (Xen: `common/sched/core.c`, `do_sched_op`,
//! `do_set_timer_op`; the shutdown and watchdog of `common/domain.c`):
//! yield, block, poll, shut down, the watchdogs and the single-shot timer.

use ringvisor_abi::errno::*;
use ringvisor_abi::sched::*;

use crate::domain::{Domain, State};
use crate::pv::console_io::flush_console_line;
use crate::pv::event;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};
use crate::pv::traps;
use crate::sched;

/// `set_timer_op(timeout)`: a single-shot timer at absolute system time
/// `timeout` (ns); 0 cancels it; a time already past fires at once.
pub(crate) fn set_timer_op(d: &mut Domain, timeout: u64) -> Ret {
    d.v_mut().singleshot = (timeout != 0).then_some(timeout);
    sched::timers_changed();
    0
}

fn shutdown(d: &mut Domain, reason: u32) -> Ret {
    if reason > SHUTDOWN_MAX {
        return err(EINVAL);
    }
    event::drain_console(d);
    if !d.console_line.is_empty() {
        flush_console_line(d);
    }
    crate::info!("d{}: shutdown: {}", d.id, shutdown_reason_name(reason));
    d.state = State::Shutdown(reason);
    crate::sched::domain_ended();
    // Its vCPUs on other CPUs stop there at once.
    crate::sched::kick_all(d);
    0
}

/// `SCHEDOP_watchdog` (Xen's domain_watchdog): id 0 takes a free timer
/// and answers its id (1 or 2; -ENOSPC when both are taken), id N re-arms
/// that one, a timeout of 0 frees it. When one fires the domain is shut
/// down with SHUTDOWN_watchdog.
fn watchdog(d: &mut Domain, id: u32, timeout_s: u32) -> Ret {
    let deadline =
        crate::arch::x86_64::time::now_ns().saturating_add(timeout_s as u64 * 1_000_000_000);
    let n = d.watchdogs.len() as u32;
    if id > n {
        return err(EINVAL);
    }
    sched::timers_changed();
    if id == 0 {
        return match d.watchdogs.iter().position(Option::is_none) {
            Some(i) => {
                d.watchdogs[i] = Some(deadline);
                i as Ret + 1
            }
            None => err(ENOSPC),
        };
    }
    let slot = &mut d.watchdogs[id as usize - 1];
    if slot.is_none() {
        return err(EINVAL);
    }
    *slot = (timeout_s != 0).then_some(deadline);
    0
}

/// A watchdog of `d` fired: the domain is shut down, as Xen does.
pub fn watchdog_fired(d: &mut Domain) {
    crate::warn!("d{}: watchdog timer fired", d.id);
    shutdown(d, SHUTDOWN_WATCHDOG);
}

pub(crate) fn sched_op(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    match cmd as u32 {
        SCHEDOP_WATCHDOG => match space.read::<SchedWatchdog>(arg) {
            Ok(w) => watchdog(d, w.id, w.timeout),
            Err(_) => err(EFAULT),
        },
        SCHEDOP_YIELD => {
            sched::request_resched();
            0
        }
        SCHEDOP_BLOCK => block(d),
        SCHEDOP_POLL => match space.read::<SchedPoll>(arg) {
            Ok(p) => poll(d, space, p.ports, p.nr_ports, p.timeout),
            Err(_) => err(EFAULT),
        },
        SCHEDOP_SHUTDOWN => match space.read::<SchedShutdown>(arg) {
            Ok(s) => shutdown(d, s.reason),
            Err(_) => err(EFAULT),
        },
        SCHEDOP_SHUTDOWN_CODE => match space.read::<SchedShutdown>(arg) {
            Ok(s) if s.reason <= SHUTDOWN_MAX => 0,
            Ok(_) => err(EINVAL),
            Err(_) => err(EFAULT),
        },
        _ => err(ENOSYS),
    }
}

/// The old `sched_op(cmd, reason)` with the reason by value.
pub(crate) fn sched_op_compat(d: &mut Domain, cmd: u64, arg: u64) -> Ret {
    match cmd as u32 {
        SCHEDOP_YIELD => {
            sched::request_resched();
            0
        }
        SCHEDOP_BLOCK => block(d),
        SCHEDOP_SHUTDOWN => shutdown(d, arg as u32),
        _ => err(ENOSYS),
    }
}

/// `sched_op(block)`: enable events and sleep until one is pending (Xen:
/// do_block). Nothing to wait for if one already is.
// Tour 07: sched_op(block): unmask and sleep
fn block(d: &mut Domain) -> Ret {
    traps::set_upcall_mask(d, 0);
    if !event::upcall_ready(d) {
        d.v_mut().blocked = true;
        sched::request_resched();
    }
    0
}

/// `sched_op(poll)`: sleep until one of the ports is pending or the
/// timeout (absolute system time, 0: none) passes. Events stay masked.
/// `ports`, `nr_ports` and `timeout` come from the guest's `sched_poll`,
/// whose layout differs with its width (`compat` translates).
pub(crate) fn poll(
    d: &mut Domain,
    space: GuestSpace,
    ports_va: u64,
    nr_ports: u32,
    timeout: u64,
) -> Ret {
    if nr_ports > 128 {
        return err(EINVAL);
    }
    let mut ports = alloc::vec::Vec::with_capacity(nr_ports as usize);
    for i in 0..nr_ports as u64 {
        let Some(Ok(port)) = ports_va.checked_add(i * 4).map(|at| space.read::<u32>(at)) else {
            return err(EFAULT);
        };
        if port as usize >= d.ports.len() {
            return err(EINVAL);
        }
        if event::is_pending(d, port) {
            return 0;
        }
        ports.push(port);
    }
    let v = d.v_mut();
    v.poll = ports;
    v.poll_deadline = (timeout != 0).then_some(timeout);
    v.blocked = true;
    sched::timers_changed();
    sched::request_resched();
    0
}
