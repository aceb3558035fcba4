//! guest-idle: stays alive (about 10 ms per timer tick, polling its timer
//! port with `sched_op(poll)`, events masked) until the hypervisor injects
//! an exception into it by hand, for the debug-keys test
//! (tests/tests/debugkeys.rs types `i003`: vector 3 into d0).
//!
//! Cases:
//! - `bind_virq(VIRQ_TIMER)` gives a port; `sched_op(poll)` on it returns
//!   once per periodic timer tick (10 ms by default, vcpu.h);
//! - an injected #BP arrives through the trap table within 500 ticks
//!   (about 5 s): `INJECTED: vector 3` — if none does, FAILURE.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use pvguest::abi::{self, EvtchnBindVirq, SchedPoll};
use pvguest::{hypercall, report, start_info, traps};

const MAX_TICKS: u32 = 500;

/// `mode=echo` on the command line: read the serial input (console_io read,
/// woken by VIRQ_CONSOLE), print each line back as `ECHO: line`, and
/// power off at the line `quit` (or FAILURE after MAX_TICKS ticks).
fn echo() {
    let mut b = EvtchnBindVirq {
        virq: abi::VIRQ_CONSOLE,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: `b` is a live, writable evtchn_bind_virq.
    let rc =
        unsafe { hypercall::event_channel_op(abi::EVTCHNOP_BIND_VIRQ, &mut b as *mut _ as u64) };
    if !report::check_rc("bind_virq(VIRQ_CONSOLE)", rc, 0) {
        return;
    }
    let mut t = EvtchnBindVirq {
        virq: abi::VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: as above.
    let rc =
        unsafe { hypercall::event_channel_op(abi::EVTCHNOP_BIND_VIRQ, &mut t as *mut _ as u64) };
    if !report::check_rc("bind_virq(VIRQ_TIMER)", rc, 0) {
        return;
    }
    report::info(format_args!("ECHO: ready"));
    let mut line = [0u8; 80];
    let mut len = 0;
    let mut woken = false;
    for _ in 0..MAX_TICKS * 4 {
        let ports = [b.port, t.port];
        let p = SchedPoll {
            ports: ports.as_ptr() as u64,
            nr_ports: 2,
            _pad0: 0,
            timeout: 0,
        };
        // SAFETY: `p` names two ports in this stack frame.
        unsafe { hypercall::sched_op(abi::SCHEDOP_POLL, &p as *const _ as u64) };
        let si = start_info::shared_info();
        // SAFETY: shared_info is mapped for the guest's whole life.
        let pending = unsafe { (*si).evtchn_pending[0] };
        woken |= pending & (1 << b.port) != 0;
        // SAFETY: as above; only this vCPU touches the bits.
        unsafe { (*si).evtchn_pending[0] &= !((1u64 << b.port) | (1u64 << t.port)) };
        let mut buf = [0u8; 64];
        // SAFETY: the hypervisor writes at most 64 bytes into `buf`.
        let n = unsafe { hypercall::console_io(abi::CONSOLEIO_READ, 64, buf.as_mut_ptr() as u64) };
        if n < 0 {
            report::fail("console_io(CONSOLEIO_read)", format_args!("{n}"));
            return;
        }
        for &c in &buf[..n as usize] {
            if c == b'\r' || c == b'\n' {
                let s = core::str::from_utf8(&line[..len]).unwrap_or("?");
                report::info(format_args!("ECHO: {s}"));
                if s == "quit" {
                    report::check(
                        "VIRQ_CONSOLE told us there was input",
                        woken,
                        format_args!("no"),
                    );
                    return;
                }
                len = 0;
            } else if len < line.len() {
                line[len] = c;
                len += 1;
            }
        }
    }
    report::fail(
        "echo",
        format_args!("no `quit` line within {} ticks", MAX_TICKS * 4),
    );
}

fn run(_si: &abi::StartInfo) {
    traps::install_default_trap_table();
    if start_info::arg("mode") == Some("echo") {
        return echo();
    }
    let mut b = EvtchnBindVirq {
        virq: abi::VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: `b` is a live, writable evtchn_bind_virq.
    let rc =
        unsafe { hypercall::event_channel_op(abi::EVTCHNOP_BIND_VIRQ, &mut b as *mut _ as u64) };
    if !report::check_rc("bind_virq(VIRQ_TIMER)", rc, 0) {
        return;
    }
    let port = b.port;
    report::info(format_args!("IDLE: start (timer port {port})"));
    let before = traps::count();
    let mut ticks = 0;
    while ticks < MAX_TICKS && traps::count() == before {
        let p = SchedPoll {
            ports: &port as *const u32 as u64,
            nr_ports: 1,
            _pad0: 0,
            timeout: 0,
        };
        // SAFETY: `p` names one port in this stack frame.
        unsafe { hypercall::sched_op(abi::SCHEDOP_POLL, &p as *const _ as u64) };
        // Acknowledge the tick: clear the port's pending bit.
        let si = start_info::shared_info();
        // SAFETY: shared_info is mapped for the guest's whole life; this
        // vCPU is the only one touching the bit.
        unsafe { (*si).evtchn_pending[(port / 64) as usize] &= !(1u64 << (port % 64)) };
        ticks += 1;
    }
    report::info(format_args!("IDLE: done after {ticks} timer ticks"));
    if traps::count() != before {
        let t = traps::last();
        report::info(format_args!("INJECTED: vector {}", t.vector));
        report::check_eq("injected vector", t.vector, 3);
    } else {
        report::fail(
            "injection",
            format_args!("no exception injected within {MAX_TICKS} ticks"),
        );
    }
}

pvguest::guest_main!("idle", run);
