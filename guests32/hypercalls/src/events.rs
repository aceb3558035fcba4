//! event_channel_op (bind_ipi + send -> upcall in ring 1, status, close)
//! and set_timer_op (the 64-bit time in two halves).

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicU32, Ordering};

use pvguest32::abi::{self, EvtchnBindIpi, EvtchnBindVirq, EvtchnClose, EvtchnSend, EvtchnStatus};
use pvguest32::abi32::FLAT_RING1_CS;
use pvguest32::cpu::EFLAGS_IF;
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info};
use pvguest32::start_info::{self, set_upcall_mask, upcall_mask};
use pvguest32::traps::{self, Action, Trap, TrapFrame};
use pvguest32::{events, va};

use crate::common::*;

fn evtchn<T>(cmd: u32, arg: &mut T) -> i32 {
    // SAFETY: `arg` is the struct `cmd` takes; the hypervisor writes only
    // its OUT fields.
    unsafe { hc::event_channel_op(cmd, va(arg as *mut T)) }
}

fn send(port: u32) -> i32 {
    evtchn(abi::EVTCHNOP_SEND, &mut EvtchnSend { port })
}

fn close(port: u32) -> i32 {
    evtchn(abi::EVTCHNOP_CLOSE, &mut EvtchnClose { port })
}

fn status(port: u32) -> (i32, EvtchnStatus) {
    let mut s = EvtchnStatus {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        port,
        status: 0xffff,
        vcpu: 0xffff,
        u: [0; 2],
    };
    let rc = evtchn(abi::EVTCHNOP_STATUS, &mut s);
    (rc, s)
}

fn ack_and_resume_native(_f: &mut TrapFrame, _t: &Trap) -> Action {
    events::dispatch();
    Action::ResumeNative
}

pub fn event_channel_op() {
    // The upcall goes to the event callback of set_callbacks.
    check_rc(
        "set_callbacks before the upcalls",
        traps::install_callbacks(),
        0,
    );
    let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
    if !check_rc(
        "EVTCHNOP_bind_ipi(vcpu 0)",
        evtchn(abi::EVTCHNOP_BIND_IPI, &mut ipi),
        0,
    ) {
        return;
    }
    let port = ipi.port;
    info(format_args!("IPI port {}", port));
    let (rc, s) = status(port);
    check_rc("EVTCHNOP_status of the IPI port", rc, 0);
    check_same(
        "status: EVTCHNSTAT_ipi on vCPU 0",
        (s.status, s.vcpu),
        (abi::EVTCHNSTAT_IPI, 0),
    );

    // Send with events unmasked: the upcall comes on the way back from the
    // send hypercall; the runtime leaves through HYPERVISOR_iret.
    set_upcall_mask(0);
    let before = traps::count();
    let delivered = events::delivered();
    let rc = send(port);
    let t = traps::last();
    let n = traps::count() - before;
    let exit = traps::last_exit_was_hypercall();
    let mask = upcall_mask();
    set_upcall_mask(1);
    check_rc("EVTCHNOP_send (events unmasked)", rc, 0);
    if check(
        "send: one upcall to the event callback",
        n == 1 && t.vector == traps::VEC_EVENT,
        format_args!("{} bounce(s), last {}", n, t),
    ) {
        check_same(
            "upcall frame: cs 0xe019, saved mask 0, eflags.IF 1, masked on entry",
            (
                t.cs_sel(),
                t.saved_mask(),
                t.eflags & EFLAGS_IF,
                t.mask_on_entry,
            ),
            (FLAT_RING1_CS, 0, EFLAGS_IF, 1),
        );
        check_same(
            "upcall: the IPI port was pending",
            (events::delivered() - delivered, events::last_port()),
            (1, port),
        );
        check_same(
            "upcall left through HYPERVISOR_iret: mask 0 again",
            (exit, mask),
            (Some(true), 0),
        );
    }

    // The same with a native iret: it cannot unmask (CPL 1), so the mask
    // stays as the upcall set it.
    traps::set_handler(traps::VEC_EVENT, Some(ack_and_resume_native));
    set_upcall_mask(0);
    let before = traps::count();
    let rc = send(port);
    let n = traps::count() - before;
    let t = traps::last();
    let exit = traps::last_exit_was_hypercall();
    let mask = upcall_mask();
    traps::set_handler(traps::VEC_EVENT, None);
    set_upcall_mask(1);
    check_rc("EVTCHNOP_send again", rc, 0);
    check(
        "send: upcall, handler leaves with a native iret",
        n == 1 && t.vector == traps::VEC_EVENT && exit == Some(false),
        format_args!("{} bounce(s), last {}, exit {:?}", n, t, exit),
    );
    check_eq("native iret from the upcall: mask stays 1", mask, 1);

    // Masked: the send only marks the port pending.
    let before = traps::count();
    let rc = send(port);
    check_rc("EVTCHNOP_send while masked", rc, 0);
    check_same(
        "masked: no upcall, evtchn_upcall_pending 1",
        (traps::count() - before, start_info::upcall_pending()),
        (0, 1),
    );
    events::dispatch();

    check_rc("EVTCHNOP_close", close(port), 0);
    let (rc, s) = status(port);
    check_same(
        "status of the closed port: 0, EVTCHNSTAT_closed",
        (rc, s.status),
        (0, abi::EVTCHNSTAT_CLOSED),
    );
    check_rc("EVTCHNOP_close again -EINVAL", close(port), EINVAL);
    check_rc(
        "EVTCHNOP_send to the closed port -EINVAL",
        send(port),
        EINVAL,
    );

    let mut bad = EvtchnBindIpi { vcpu: 31, port: 0 };
    check_rc(
        "EVTCHNOP_bind_ipi(vcpu 31) -ENOENT",
        evtchn(abi::EVTCHNOP_BIND_IPI, &mut bad),
        ENOENT,
    );
    // SAFETY: refused calls write nothing.
    unsafe {
        check_rc(
            "EVTCHNOP_bind_ipi, unmapped argument -EFAULT",
            hc::event_channel_op(abi::EVTCHNOP_BIND_IPI, UNMAPPED),
            EFAULT,
        );
        check_rc(
            "event_channel_op command 99 -ENOSYS",
            hc::event_channel_op(99, 0),
            ENOSYS,
        );
    }
}

/// The timer port's bit in the 32-bit shared_info (32-bit words).
fn timer_pending(port: u32) -> bool {
    let si = start_info::shared_info();
    // SAFETY: a word of the mapped page's evtchn_pending array (port <
    // 1024), which the hypervisor sets atomically.
    let w =
        unsafe { AtomicU32::from_ptr(addr_of_mut!((*si).evtchn_pending[(port / 32) as usize])) };
    w.load(Ordering::SeqCst) & 1 << (port % 32) != 0
}

fn clear_pending(port: u32) {
    let si = start_info::shared_info();
    // SAFETY: as timer_pending.
    let w =
        unsafe { AtomicU32::from_ptr(addr_of_mut!((*si).evtchn_pending[(port / 32) as usize])) };
    w.fetch_and(!(1 << (port % 32)), Ordering::SeqCst);
    events::dispatch();
}

/// Yields until `port` is pending or `ns` have passed; whether it was.
fn wait_pending(port: u32, ns: u64) -> bool {
    let end = now_ns() + ns;
    while now_ns() < end {
        if timer_pending(port) {
            return true;
        }
        // SAFETY: yield has no argument.
        unsafe { hc::sched_op(abi::SCHEDOP_YIELD, 0) };
    }
    timer_pending(port)
}

const MS: u64 = 1_000_000;

pub fn set_timer_op() {
    // Events stay masked: the timer shows as its port's pending bit. The
    // default 10 ms periodic timer (Xen: pv_vcpu_initialise) would raise
    // the same VIRQ: stopped first.
    // SAFETY: stops the periodic timer only.
    let rc = unsafe { hc::vcpu_op(abi::VCPUOP_STOP_PERIODIC_TIMER, 0, 0) };
    check_rc("vcpu_op stop_periodic_timer (before set_timer_op)", rc, 0);
    let mut b = EvtchnBindVirq {
        virq: abi::VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    if !check_rc(
        "EVTCHNOP_bind_virq(VIRQ_TIMER, vcpu 0)",
        evtchn(abi::EVTCHNOP_BIND_VIRQ, &mut b),
        0,
    ) {
        return;
    }
    let port = b.port;
    clear_pending(port);

    let now = now_ns();
    info(format_args!("system time {} ns", now));
    check_rc(
        "set_timer_op(now + 2 ms) (lo, hi)",
        hc::set_timer_op(now + 2 * MS),
        0,
    );
    check(
        "the timer fires (VIRQ_TIMER pending)",
        wait_pending(port, 2000 * MS),
        format_args!("no VIRQ_TIMER within 2 s"),
    );
    clear_pending(port);

    // 2^32 ns (4.3 s) and more ahead: only the high half says so. A
    // hypervisor that dropped it would fire within milliseconds.
    let far = now_ns() + (1 << 32) + MS;
    check_rc(
        "set_timer_op(now + 2^32 ns + 1 ms): hi half non-zero",
        hc::set_timer_op(far),
        0,
    );
    check(
        "timer with the high half: not fired after 30 ms",
        !wait_pending(port, 30 * MS),
        format_args!("VIRQ_TIMER pending: the high half was lost"),
    );

    check_rc(
        "set_timer_op(now + 5 ms)",
        hc::set_timer_op(now_ns() + 5 * MS),
        0,
    );
    check_rc("set_timer_op(0) cancels", hc::set_timer_op(0), 0);
    check(
        "cancelled timer: not fired after 30 ms",
        !wait_pending(port, 30 * MS),
        format_args!("VIRQ_TIMER pending after set_timer_op(0)"),
    );

    if close(port) != 0 {
        fail("EVTCHNOP_close of the timer port", format_args!("refused"));
    }
    clear_pending(port);
}
