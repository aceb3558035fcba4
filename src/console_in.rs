//! Serial input for one domain at a time (Xen's console: `switch_serial_input`).
//!
//! Bytes typed on the serial line go to the domain that has the input:
//! the initial domain's (d0) by default. Three Ctrl-A in a row move it on:
//! to the next live domain, then to the hypervisor's debug keys, then back
//! to the first domain; the console says where it went. When the domain
//! with the input has ended, the input moves on to the next live domain
//! (wrapping round; saying so) as soon as the input is next polled, rather
//! than being dropped as Xen does:
//! with no toolstack to switch consoles, a domU started after a short-lived
//! domain 0 (a Linux shell as d1) would otherwise need three Ctrl-A before
//! anything typed reached it. The domain with the input has its console
//! output shown as a terminal's: as it comes (a prompt before its
//! newline), with its control characters. The initial domain
//! reads its input with `console_io(CONSOLEIO_read)` and is told by
//! `VIRQ_CONSOLE`; any other domain finds it in its console ring's `in`
//! half, its console port notified (the ring holds 1 KiB: what does not
//! fit is dropped, as a slow reader loses it on Xen too).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::domain::Domain;
use crate::sched::Hv;

/// Who gets the next byte: `usize::MAX` the hypervisor, else a domain's
/// index in `hv.domains`.
static FOCUS: AtomicUsize = AtomicUsize::new(0);
/// Ctrl-A typed in a row so far.
static CTRL_A: AtomicUsize = AtomicUsize::new(0);

const HYPERVISOR: usize = usize::MAX;
const SWITCH_KEY: u8 = 0x01;

/// What became of a typed byte.
pub enum Route {
    /// The hypervisor has the input: a debug key.
    DebugKey(u8),
    /// Delivered to a domain, or a switch key.
    Taken,
}

/// Gives the input to domain index `next` (or the hypervisor).
fn set_focus(hv: &Hv, next: usize) {
    FOCUS.store(next, Ordering::Relaxed);
    let id = if next == HYPERVISOR {
        u32::MAX
    } else {
        hv.dom(next).id as u32
    };
    crate::console::set_input_owner(id);
}

/// Domain `i` can take input: alive.
fn takes_input(hv: &Hv, i: usize) -> bool {
    hv.domains.get(i).is_some_and(|d| d.lock().is_alive())
}

/// Route byte `k`.
pub fn route(hv: &mut Hv, k: u8) -> Route {
    if k == SWITCH_KEY {
        if CTRL_A.fetch_add(1, Ordering::Relaxed) + 1 == 3 {
            CTRL_A.store(0, Ordering::Relaxed);
            switch(hv);
        }
        return Route::Taken;
    }
    CTRL_A.store(0, Ordering::Relaxed);
    let mut focus = FOCUS.load(Ordering::Relaxed);
    if focus != HYPERVISOR && !takes_input(hv, focus) {
        focus = follow(hv, focus);
    }
    if focus == HYPERVISOR {
        return Route::DebugKey(k);
    }
    deliver(&mut hv.dom(focus), k);
    Route::Taken
}

/// The next live domain after the one with the input, or the hypervisor
/// after the last.
fn switch(hv: &Hv) {
    let from = FOCUS.load(Ordering::Relaxed);
    let start = if from == HYPERVISOR { 0 } else { from + 1 };
    let next = (start..hv.domains.len())
        .find(|&i| takes_input(hv, i))
        .unwrap_or(HYPERVISOR);
    set_focus(hv, next);
    match next {
        HYPERVISOR => crate::info!(
            "serial input to the hypervisor (debug keys; type Ctrl-A three times to switch)"
        ),
        i => crate::info!(
            "serial input to d{} (type Ctrl-A three times to switch)",
            hv.dom(i).id
        ),
    }
}

/// When the domain with the input has ended and another is alive, the
/// input moves on to it now (not only at the next key), so that its output
/// is shown as a terminal's at once (a Linux domU's first prompt after a
/// short-lived domain 0). Called as typed input is polled.
pub fn settle(hv: &Hv) {
    let focus = FOCUS.load(Ordering::Relaxed);
    if focus == HYPERVISOR || takes_input(hv, focus) {
        return;
    }
    if (0..hv.domains.len()).any(|i| takes_input(hv, i)) {
        follow(hv, focus);
    }
}

/// The domain at `from` had the input and has ended: the input goes to
/// the next live domain after it, wrapping round, else to the hypervisor.
fn follow(hv: &Hv, from: usize) -> usize {
    let n = hv.domains.len();
    let next = (1..=n)
        .map(|i| (from + i) % n.max(1))
        .find(|&i| takes_input(hv, i))
        .unwrap_or(HYPERVISOR);
    set_focus(hv, next);
    match next {
        HYPERVISOR => crate::info!("serial input to the hypervisor: no domain is left (debug keys)"),
        i => crate::info!(
            "serial input to d{}: the domain that had it has ended (type Ctrl-A three times to switch)",
            hv.dom(i).id
        ),
    }
    next
}

/// One byte of input for domain `d`.
fn deliver(d: &mut Domain, k: u8) {
    use ringvisor_abi::console::XENCONS_IN_SIZE;
    match d.console {
        // A domU: its ring's input half, then its console port.
        Some((mfn, port)) => {
            if crate::pv::event::console_ring_input(d, mfn, k) {
                crate::pv::event::set_pending(d, port);
            }
        }
        // The initial domain: console_io(CONSOLEIO_read), VIRQ_CONSOLE.
        None => {
            if d.console_in.len() < XENCONS_IN_SIZE {
                d.console_in.push_back(k);
            }
            crate::pv::event::send_virq(d, 0, ringvisor_abi::xen::VIRQ_CONSOLE);
        }
    }
}
