//! `guest-console`: a domU writes its console through the ring page of
//! `start_info.console.domU`, the way a PV kernel's `hvc` driver does,
//! instead of `console_io`. Run it as a domain other than 0 (domain 0 has
//! no ring: `RESULT: SKIP`); the harness checks its lines on the serial
//! console, prefixed `(dN) `, whole and in order.
//!
//! Cases:
//! - `start_info.console.domU`: `mfn` and `evtchn` non-zero; the port is
//!   in use (`EVTCHNOP_status` not closed).
//! - `update_va_mapping` of the ring's frame over a page of our own → 0;
//!   the ring's output indices are sane (`out_prod - out_cons` <= 2048).
//! - `EVTCHNOP_send` on the console port → 0.
//! - From then on every line, `PASS`/`FAIL` and the `RESULT` line
//!   included, goes through the ring: `out[MASK(out_prod)]`, `out_prod`
//!   advanced, the port notified (waiting for the reader whenever the ring
//!   is full). [`LINES`] numbered lines of 72 bytes (more than the ring's
//!   2048 bytes: the indices wrap), then a line written in two pieces.
//! - The reader keeps up: `out_cons` reaches `out_prod` (within 5 s).
//! - With `mode=echo` on its command line, then the input half: `ECHO:
//!   ready`, then every line typed on the serial console while this domain
//!   has the input (`in[MASK(in_cons)]` up to `in_prod`, `in_cons`
//!   advanced) is printed back as `ECHO: line`; the line `quit` ends it.
//!   The console port was pending when input came (the hypervisor notifies
//!   it); input indices stay sane (`in_prod - in_cons` <= 1024). FAILURE
//!   when no `quit` comes within 20 s.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, Ordering};

use pvguest::abi::{self, StartInfo, XenconsInterface};
use pvguest::cell::Page;
use pvguest::events as ev;
use pvguest::report::{self, check, check_rc, info, pass};
use pvguest::start_info::{PTE_PRESENT, PTE_RW};
use pvguest::time::{now_ns, MS};
use pvguest::{print, println, traps};

pvguest::guest_main!("console", run);

/// Numbered lines written through the ring (the harness counts them).
pub const LINES: u32 = 40;

/// The page the ring's frame is mapped over.
static RING: Page = Page::new();

fn index(off: usize) -> u32 {
    // SAFETY: an aligned u32 of the mapped ring page, shared with the
    // hypervisor.
    unsafe { AtomicU32::from_ptr((RING.addr() + off as u64) as *mut u32) }.load(Ordering::Acquire)
}

fn out_cons() -> u32 {
    index(offset_of!(XenconsInterface, out_cons))
}

fn out_prod() -> u32 {
    index(offset_of!(XenconsInterface, out_prod))
}

fn run(si: &StartInfo) {
    if si.flags & abi::SIF_INITDOMAIN != 0 {
        report::skip(format_args!(
            "the initial domain has no console ring (start_info.console is dom0's)"
        ));
    }
    traps::install_default_trap_table();
    pass("set_trap_table");
    let (mfn, port) = (si.console.mfn, si.console.evtchn);
    info(format_args!(
        "console ring: mfn {mfn:#x}, event channel {port}"
    ));
    check(
        "start_info.console.domU mfn and evtchn",
        mfn != 0 && port != 0,
        format_args!("mfn {mfn:#x} evtchn {port}"),
    );
    match ev::status(abi::DOMID_SELF, port) {
        Ok(s) => {
            check(
                "the console port is in use",
                s.status != abi::EVTCHNSTAT_CLOSED,
                format_args!("status {}", s.status),
            );
            info(format_args!(
                "console port status {} (u {:#x} {:#x})",
                s.status, s.u[0], s.u[1]
            ));
        }
        Err(rc) => {
            check_rc("the console port is in use", rc, 0);
        }
    }
    let pte = mfn << 12 | PTE_PRESENT | PTE_RW;
    // SAFETY: RING is ours and nothing else uses its old frame.
    let rc = unsafe { pvguest::hypercall::update_va_mapping(RING.addr(), pte, abi::UVMF_INVLPG) };
    if rc != 0 {
        report::error(format_args!(
            "update_va_mapping(console ring) = {}",
            report::Rc(rc)
        ));
    }
    pass("update_va_mapping of the console ring");
    let (cons, prod) = (out_cons(), out_prod());
    info(format_args!(
        "ring before: out_cons {cons}, out_prod {prod}"
    ));
    check(
        "ring indices sane",
        prod.wrapping_sub(cons) as usize <= abi::XENCONS_OUT_SIZE,
        format_args!("out_cons {cons} out_prod {prod}"),
    );
    check_rc("send on the console port", ev::send(port), 0);

    // From here on, everything goes through the ring.
    pvguest::console::use_ring(RING.addr(), port);
    println!("INFO: console: now writing through the ring");
    for i in 1..=LINES {
        // 72 bytes with the newline.
        println!("console line {i:02} of {LINES}: {:.<48}", "");
    }
    print!("split ");
    print!("line");
    println!();
    let done = ev::spin_until(|| out_cons() == out_prod(), now_ns() + 5000 * MS);
    check(
        "the reader consumed the ring",
        done,
        format_args!("out_cons {} out_prod {}", out_cons(), out_prod()),
    );
    info(format_args!(
        "ring after: out_cons {}, out_prod {}",
        out_cons(),
        out_prod()
    ));
    if pvguest::start_info::arg("mode") == Some("echo") {
        echo(port);
    }
}

/// Reads the ring's input half until the line `quit`, printing each line
/// back (see the cases above).
fn echo(port: u32) {
    let in_cons_ix = || {
        // SAFETY: as in `index`.
        unsafe {
            AtomicU32::from_ptr(
                (RING.addr() + offset_of!(XenconsInterface, in_cons) as u64) as *mut u32,
            )
        }
    };
    let input = RING.addr() + offset_of!(XenconsInterface, in_) as u64;
    info(format_args!("ECHO: ready"));
    let mut line = [0u8; 80];
    let mut len = 0;
    let mut notified = false;
    let deadline = now_ns() + 20_000 * MS;
    while now_ns() < deadline {
        // Woken by the console port, or every 100 ms.
        ev::poll(&[port], now_ns() + 100 * MS);
        notified |= ev::is_pending(port);
        ev::clear_pending(port);
        let prod = index(offset_of!(XenconsInterface, in_prod));
        let mut cons = in_cons_ix().load(Ordering::Acquire);
        if prod.wrapping_sub(cons) as usize > abi::XENCONS_IN_SIZE {
            report::fail(
                "input indices sane",
                format_args!("in_cons {cons} in_prod {prod}"),
            );
            return;
        }
        while cons != prod {
            // SAFETY: inside the ring's `in` array (index masked).
            let c = unsafe {
                ((input + abi::mask_xencons_in(cons) as u64) as *const u8).read_volatile()
            };
            cons = cons.wrapping_add(1);
            if c == b'\r' || c == b'\n' {
                let s = core::str::from_utf8(&line[..len]).unwrap_or("?");
                info(format_args!("ECHO: {s}"));
                if s == "quit" {
                    in_cons_ix().store(cons, Ordering::Release);
                    check(
                        "the console port was notified of the input",
                        notified,
                        format_args!("never pending"),
                    );
                    return;
                }
                len = 0;
            } else if len < line.len() {
                line[len] = c;
                len += 1;
            }
        }
        in_cons_ix().store(cons, Ordering::Release);
    }
    report::fail("echo", format_args!("no `quit` line within 20 s"));
}
