//! `guest-pingpong`: two domains exchange events over an interdomain
//! event channel. The same image runs as both; its command line picks the
//! role:
//!
//! - `role=server peer=D [port=P] [rounds=N]`: allocates the channel for
//!   domain D and answers every event on it with one back.
//! - `role=client peer=S [port=P] [rounds=N]`: binds to port P of the
//!   server, domain S, and sends N pings, each waiting for its pong.
//! - `role=loop [rounds=N]`: both ends in this one domain (a channel from
//!   `alloc_unbound(DOMID_SELF, DOMID_SELF)`), for running alone, e.g. on
//!   real Xen as dom0.
//!
//! Port convention: ports are allocated lowest first, and the server
//! allocates before anything else, so its channel is its lowest free port:
//! 1 on a domain that starts with no port in use (ringvisor's domain 0,
//! Xen's dom0). `port=` (default 1) tells both sides; the server checks it
//! got that port (else `RESULT: ERROR`). Right after it, the server
//! allocates port P+1 for *itself*: the client uses it to check that a
//! port allocated for another domain cannot be bound. N defaults to 100.
//!
//! Cases, server:
//! - `alloc_unbound(DOMID_SELF, peer)` → port P; `status(P)` = unbound for
//!   the peer.
//! - Every event on P is answered from the upcall handler with
//!   `send(P)`; after N of them and the client's `close`, P is unbound for
//!   the peer again (`status`), and exactly N events came.
//!
//! Cases, client:
//! - `bind_interdomain(peer, P)` → port L (retried while the server has not
//!   allocated P yet); L is pending at once (Xen notifies a newly bound
//!   local port); `status(L)` = interdomain with (peer, P).
//! - N round trips: `send(L)` → the server's upcall → its `send(P)` → our
//!   upcall on L; each pong arrives (within 10 s), and exactly N arrive.
//! - `bind_interdomain(peer, P)` again → `-EINVAL` (no longer unbound);
//!   `bind_interdomain(peer, P+1)` (allocated by the server for itself) →
//!   `-EINVAL`; `bind_interdomain(1234, P)` (no such domain) → `-ESRCH`.
//! - `close(L)` → 0.
//!
//! Loop: the client's cases (but the P+1 one), with this domain as the
//! peer and the server's echo in the same upcall handler.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use core::sync::atomic::{AtomicU32, Ordering};

use pvguest::abi::{self, StartInfo};
use pvguest::events::{self as ev, count};
use pvguest::report::{self, check, check_eq, check_rc, fail, info, pass, Rc};
use pvguest::start_info::{arg, arg_u32};
use pvguest::time::{now_ns, MS};
use pvguest::traps;

pvguest::guest_main!("pingpong", run);

const EINVAL: i64 = abi::neg(abi::EINVAL);
const ESRCH: i64 = abi::neg(abi::ESRCH);

/// A domain id no test setup creates.
const NO_DOMAIN: u16 = 1234;
/// How long any one wait may take.
const WAIT: u64 = 10_000 * MS;

/// A domain id as text: `domain N`, or `DOMID_SELF`.
struct Dom(u16);

impl core::fmt::Display for Dom {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == abi::DOMID_SELF {
            write!(f, "DOMID_SELF")
        } else {
            write!(f, "domain {}", self.0)
        }
    }
}

/// The port the upcall handler answers (the server's end).
static ECHO_PORT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The event hook: answer every event on [`ECHO_PORT`] with one back.
fn echo(port: u32, _vcpu: u32) {
    if port == ECHO_PORT.load(Ordering::SeqCst) {
        ev::send(port);
    }
}

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    pass("set_trap_table");
    check_rc("callback_op register event", ev::init(), 0);
    let port = arg_u32("port").unwrap_or(1);
    let rounds = arg_u32("rounds").unwrap_or(100);
    let peer = || match arg_u32("peer") {
        Some(p) if p < 0x7ff0 => p as u16,
        _ => report::error(format_args!("role {:?} needs peer=<domid>", arg("role"))),
    };
    match arg("role") {
        Some("server") => server(peer(), port, rounds),
        Some("client") => client(peer(), port, rounds, true),
        Some("loop") => {
            let Some(p) = allocate(abi::DOMID_SELF, port) else {
                return;
            };
            ECHO_PORT.store(p, Ordering::SeqCst);
            ev::set_hook(Some(echo));
            client(abi::DOMID_SELF, p, rounds, false);
        }
        r => report::error(format_args!(
            "no role (role={r:?}): give role=server|client|loop and peer=<domid>"
        )),
    }
}

/// The server's allocations: P for `peer`, checked to be `port`, then
/// P+1 for ourselves.
fn allocate(peer: u16, port: u32) -> Option<u32> {
    let p = match ev::alloc_unbound(abi::DOMID_SELF, peer) {
        Ok(p) => p,
        Err(rc) => {
            fail(
                "alloc_unbound for the peer",
                format_args!("returned {}", Rc(rc)),
            );
            return None;
        }
    };
    pass("alloc_unbound for the peer");
    info(format_args!("channel: port {p} for {}", Dom(peer)));
    if p != port {
        report::error(format_args!(
            "got port {p}, the command line says port={port}"
        ));
    }
    // The peer runs too (time-shared): it may have bound already, and then
    // the port is interdomain, connected to it.
    match ev::status(abi::DOMID_SELF, p) {
        Ok(s) => check(
            "status: unbound for the peer (or already bound by it)",
            (s.status == abi::EVTCHNSTAT_UNBOUND || s.status == abi::EVTCHNSTAT_INTERDOMAIN)
                && (peer == abi::DOMID_SELF || s.u[0] as u16 == peer),
            format_args!("status {} dom {}", s.status, s.u[0] as u16),
        ),
        Err(rc) => check_rc("status: unbound for the peer", rc, 0),
    };
    match ev::alloc_unbound(abi::DOMID_SELF, abi::DOMID_SELF) {
        Ok(q) => info(format_args!(
            "port {q} allocated for ourselves (not for the peer)"
        )),
        Err(rc) => fail(
            "alloc_unbound for ourselves",
            format_args!("returned {}", Rc(rc)),
        ),
    }
    Some(p)
}

/// A tick every 10 ms (`VIRQ_TIMER`, the periodic timer), so that waits in
/// `sched_op(block)` look at the clock even if the peer never answers.
fn watchdog_tick() {
    if let Err(rc) = ev::bind_virq(abi::VIRQ_TIMER, 0) {
        fail("bind_virq(VIRQ_TIMER)", format_args!("returned {}", Rc(rc)));
    }
    let p = abi::VcpuSetPeriodicTimer { period_ns: 10 * MS };
    // SAFETY: the hypervisor only reads `p`.
    let rc = unsafe {
        pvguest::hypercall::vcpu_op(abi::VCPUOP_SET_PERIODIC_TIMER, 0, &p as *const _ as u64)
    };
    check_rc("VCPUOP_set_periodic_timer(10 ms)", rc, 0);
}

fn server(peer: u16, port: u32, rounds: u32) {
    let Some(p) = allocate(peer, port) else {
        return;
    };
    watchdog_tick();
    ECHO_PORT.store(p, Ordering::SeqCst);
    ev::set_hook(Some(echo));
    ev::unmask_events();

    let got = ev::block_until(|| count(p) >= rounds, now_ns() + 6 * WAIT);
    check(
        "server: every ping answered",
        got,
        format_args!("{} of {rounds} pings", count(p)),
    );
    // The client closes its end when done: P goes back to waiting for it.
    let unbound = || {
        ev::status(abi::DOMID_SELF, p)
            .is_ok_and(|s| s.status == abi::EVTCHNSTAT_UNBOUND && s.u[0] as u16 == peer)
    };
    check(
        "server: the client's close leaves our port unbound for it",
        ev::block_until(unbound, now_ns() + WAIT),
        format_args!(
            "{:?}",
            ev::status(abi::DOMID_SELF, p).map(|s| (s.status, s.u))
        ),
    );
    check_eq("server: exactly the pings came", count(p), rounds);
    info(format_args!(
        "server: {} pings, {} other events",
        count(p),
        ev::logged() as u32 - count(p)
    ));
}

/// `foreign`: the server allocated `port + 1` for itself, not for us.
fn client(peer: u16, port: u32, rounds: u32, foreign: bool) {
    // Bind with events masked, to see the port pending right after.
    ev::mask_events();
    let deadline = now_ns() + WAIT;
    let mut tries = 0;
    let l = loop {
        tries += 1;
        match ev::bind_interdomain(peer, port) {
            Ok(l) => break l,
            // Not allocated yet (or the domain not there yet): again.
            Err(rc) if (rc == EINVAL || rc == ESRCH) && now_ns() < deadline => {
                ev::yield_now();
            }
            Err(rc) => {
                fail(
                    "bind_interdomain to the server's port",
                    format_args!("returned {}", Rc(rc)),
                );
                return;
            }
        }
    };
    pass("bind_interdomain to the server's port");
    info(format_args!(
        "bound local port {l} to port {port} of {} ({tries} tries)",
        Dom(peer)
    ));
    check(
        "the new local port is pending at once",
        ev::is_pending(l),
        format_args!("port {l} not pending"),
    );
    match ev::status(abi::DOMID_SELF, l) {
        Ok(s) => check(
            "status: interdomain with the server's port",
            s.status == abi::EVTCHNSTAT_INTERDOMAIN
                && (peer == abi::DOMID_SELF || s.u[0] as u16 == peer)
                && s.u[1] == port,
            format_args!("status {} dom {} port {}", s.status, s.u[0] as u16, s.u[1]),
        ),
        Err(rc) => check_rc("status: interdomain with the server's port", rc, 0),
    };
    watchdog_tick();
    ev::unmask_events();
    // The bind notification has been delivered: count from here.
    let base = count(l);

    let t0 = now_ns();
    let mut done = 0;
    for i in 1..=rounds {
        ev::send(l);
        if !ev::block_until(|| count(l) >= base + i, now_ns() + WAIT) {
            break;
        }
        done = i;
    }
    let dt = now_ns() - t0;
    check(
        "round trips: every pong came",
        done == rounds,
        format_args!("{done} of {rounds}"),
    );
    info(format_args!(
        "{done} round trips in {} us ({} us each)",
        dt / 1000,
        dt / 1000 / u64::from(done.max(1))
    ));
    pvguest::time::spin_for(20 * MS);
    check_eq("exactly one pong per ping", count(l) - base, rounds);

    let e = |r: Result<u32, i64>| r.map_or_else(|rc| rc, |p| p as i64);
    check_rc(
        "bind_interdomain to the port again (bound)",
        e(ev::bind_interdomain(peer, port)),
        EINVAL,
    );
    if foreign {
        check_rc(
            "bind_interdomain to a port not allocated for us",
            e(ev::bind_interdomain(peer, port + 1)),
            EINVAL,
        );
    }
    check_rc(
        "bind_interdomain to a domain that does not exist",
        e(ev::bind_interdomain(NO_DOMAIN, port)),
        ESRCH,
    );
    check_rc("close our end", ev::close(l), 0);
}
