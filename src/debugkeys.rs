//! Debug keys (like Xen's): with the serial input at the hypervisor (three
//! Ctrl-A move it there from the domains: console_in.rs), type a key while
//! guests run and the hypervisor prints what it knows.
//!
//! | key | prints / does |
//! |---|---|
//! | `h` | this list |
//! | `q` | domains: state, vCPUs, memory, ports |
//! | `d` | every vCPU's registers and PV state |
//! | `t` | each domain's trap table (the virtual IDT) |
//! | `e` | each domain's event channels, pending and masked |
//! | `r` | the last 32 bounces and hypercalls |
//! | `m` | free memory |
//! | `i` D V V | inject vector VV (two hex digits) into domain D (one digit) |
//!
//! The line is polled on timer ticks (every time slice), so keys are seen
//! within about 10 ms while any guest runs or the CPU idles.

use spin::Mutex;

use crate::arch::x86_64::idt::TrapFrame;
use crate::pv::evtchn::Channel;
use crate::sched::Hv;

/// A key sequence in progress (`i` then domain then vector).
#[derive(Clone, Copy)]
enum State {
    Idle,
    InjectDomain,
    InjectVector(u16, Option<u8>),
}

static STATE: Mutex<State> = Mutex::new(State::Idle);

macro_rules! out {
    ($($arg:tt)*) => { crate::console::print(format_args!("{}{}\n", crate::console::TAG, format_args!($($arg)*))) };
}

/// Handle typed keys (called with the hypervisor state locked, `f` the
/// running vCPU's live registers): the scheduler calls this (a hook) on
/// the boot CPU when its timer interrupt said to look at the serial line.
pub fn poll(hv: &mut Hv, f: &mut TrapFrame) {
    crate::console_in::settle(hv);
    while let Some(k) = crate::console::try_read() {
        // The input goes where console_in says: a domain, or our keys.
        if let crate::console_in::Route::DebugKey(k) = crate::console_in::route(hv, k) {
            key(hv, f, k);
        }
    }
}

fn key(hv: &mut Hv, f: &mut TrapFrame, k: u8) {
    let state = *STATE.lock();
    match state {
        State::InjectDomain => {
            *STATE.lock() = match (k as char).to_digit(10) {
                Some(dom) => State::InjectVector(dom as u16, None),
                None => {
                    out!("[debug key i] expected a domain digit");
                    State::Idle
                }
            };
            return;
        }
        State::InjectVector(dom, hi) => {
            let Some(nib) = (k as char).to_digit(16) else {
                out!("[debug key i] expected two hex digits of a vector");
                *STATE.lock() = State::Idle;
                return;
            };
            match hi {
                None => *STATE.lock() = State::InjectVector(dom, Some(nib as u8)),
                Some(h) => {
                    *STATE.lock() = State::Idle;
                    inject(hv, dom, h << 4 | nib as u8);
                }
            }
            return;
        }
        State::Idle => {}
    }
    match k {
        b'h' => {
            out!("[debug keys] h: help  q: domains  d: vCPU registers  t: trap tables  e: event channels");
            out!("[debug keys] r: recent bounces/hypercalls  m: memory  c: CPUs  i D VV: inject vector VV (hex) into domain D");
        }
        b'q' => domains(hv),
        b'd' => registers(hv, f),
        b't' => trap_tables(hv),
        b'e' => events(hv),
        b'r' => {
            out!("[debug key r] recent bounces and hypercalls, each CPU's, oldest first:");
            crate::trace::recent(|cpu, r| {
                out!(
                    "  CPU {cpu}: d{}v{} {} ({:#x}, {:#x})",
                    r.dom,
                    r.vcpu,
                    r.what.name(),
                    r.a,
                    r.b
                )
            });
        }
        b'm' => {
            let free = crate::mm::paging::with_frames(|fa| fa.free_frames());
            out!("[debug key m] {} frames ({} MiB) free", free, free >> 8);
        }
        b'c' => {
            out!("[debug key c] CPUs (each runs a vCPU or is idle):");
            crate::arch::x86_64::smp::each_cpu(|n, apic_id, wakes| {
                let on = match hv.here.get(n).copied().flatten() {
                    Some((di, vi)) => alloc::format!("d{}v{vi}", hv.dom(di).id),
                    None => alloc::string::String::from("idle"),
                };
                out!("  CPU {n}: APIC ID {apic_id}, {wakes} wake IPIs taken, {on}")
            });
        }
        b'i' => *STATE.lock() = State::InjectDomain,
        b'\r' | b'\n' | b' ' => {}
        other => out!("[debug keys] no key {:?} (h for help)", other as char),
    }
}

fn domains(hv: &Hv) {
    out!(
        "[debug key q] {} domain(s), d{} on the CPU",
        hv.domains.len(),
        hv.current()
            .and_then(|(di, _)| hv.domains.get(di))
            .map_or(0, |d| d.lock().id)
    );
    for d in &hv.domains {
        let d = d.lock();
        let pages = d
            .p2m
            .iter()
            .filter(|&&m| m != crate::domain::INVALID_MFN)
            .count();
        out!(
            "  d{} {:<20} {:?} pages {} vcpus {} ports {}",
            d.id,
            d.name,
            d.state,
            pages,
            d.vcpus.len(),
            d.ports.len().saturating_sub(1)
        );
        for v in &d.vcpus {
            out!(
                "    v{}: {}{}{} {} mode, cr3 {:#x}",
                v.id,
                if v.up { "up" } else { "down" },
                if v.blocked { " blocked" } else { "" },
                if v.initialised { "" } else { " (no context)" },
                if v.kernel_mode() { "kernel" } else { "user" },
                v.current_table() << 12
            );
        }
    }
}

fn registers(hv: &Hv, live: &TrapFrame) {
    out!("[debug key d] vCPU registers");
    for (di, d) in hv.domains.iter().enumerate() {
        let d = d.lock();
        for (vi, v) in d.vcpus.iter().enumerate() {
            // This CPU's vCPU: the live frame; one on another CPU: its
            // registers as they were when it was last switched in.
            let r = if hv.current() == Some((di, vi)) {
                live
            } else {
                &v.regs
            };
            out!(
                "  d{}v{}: rip {:#018x} cs {:#x} rflags {:#x} rsp {:#018x} ss {:#x}",
                d.id,
                vi,
                r.rip,
                r.cs,
                r.rflags,
                r.rsp,
                r.ss
            );
            out!(
                "    rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x}",
                r.rax,
                r.rbx,
                r.rcx,
                r.rdx,
                r.rsi,
                r.rdi
            );
            out!(
                "    kernel stack {:#x}:{:#x} cr2 {:#x} fs {:#x} gs kernel {:#x} user {:#x} iopl {}",
                v.kernel_ss,
                v.kernel_sp,
                v.cr2,
                v.fs_base,
                v.gs_base_kernel,
                v.gs_base_user,
                v.iopl
            );
        }
    }
}

fn trap_tables(hv: &Hv) {
    out!("[debug key t] trap tables (vector: dpl, events masked?, handler)");
    for d in &hv.domains {
        let d = d.lock();
        for v in &d.vcpus {
            out!(
                "  d{}v{}: event {:#x} failsafe {:#x} syscall {:#x}",
                d.id,
                v.id,
                v.event.address,
                v.failsafe.address,
                v.syscall.address
            );
            for (vec, t) in v
                .trap_table
                .iter()
                .enumerate()
                .filter(|(_, t)| t.address != 0)
            {
                out!(
                    "    {:>3}: dpl {} {} {:#x}",
                    vec,
                    t.flags & 3,
                    if t.flags & 4 != 0 { "masked" } else { "      " },
                    t.address
                );
            }
        }
    }
}

fn events(hv: &Hv) {
    out!("[debug key e] event channels (port: state, vcpu, pending, masked)");
    for d in hv.domains.iter() {
        let d = d.lock();
        let d = &*d;
        if !d.is_alive() {
            continue;
        }
        out!(
            "  d{}: upcall mask {}",
            d.id,
            crate::pv::traps::upcall_mask(d)
        );
        for v in 0..d.vcpus.len() {
            let (pending, sel) = crate::pv::event::vcpu_event_bits(d, v);
            out!("    v{v}: upcall pending {pending}, pending_sel {sel:#x}");
        }
        for port in 1..d.ports.len() as u32 {
            let Some(c) = d.ports.get(port) else { continue };
            if c == Channel::Free {
                continue;
            }
            let (pending, masked) = crate::pv::event::port_bits(d, port);
            out!(
                "    {:>4}: {:?} v{} {} {}",
                port,
                c,
                d.ports.notify(port),
                pending as u8,
                masked as u8
            );
        }
    }
}

/// Inject `vector` into domain `dom` by hand: the next time one of its
/// vCPUs returns to the guest, the exception is bounced to its handler.
fn inject(hv: &mut Hv, dom: u16, vector: u8) {
    let found = hv.domains.iter().find(|d| {
        let d = d.lock();
        d.id == dom && d.is_alive()
    });
    match found.map(|d| d.lock()) {
        Some(mut d) if vector < 32 => {
            let v = d.cur;
            d.vcpus[v].inject = Some(vector);
            out!(
                "[debug key i] d{dom}v{v}: vector {vector} ({}) will be injected",
                crate::arch::x86_64::idt::exception_name(vector as u64)
            );
        }
        Some(_) => out!("[debug key i] only exception vectors (0-31) can be injected"),
        None => out!("[debug key i] no running domain d{dom}"),
    }
}
