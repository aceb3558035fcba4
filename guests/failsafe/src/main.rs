//! `guest-failsafe`: the failsafe callback runs when a bounce frame cannot
//! be written (docs/design.md, "Failsafe": a bounce frame that cannot be
//! written gets the failsafe callback; if its frame cannot be written
//! either, that domain is crashed).
//!
//! Set-up: trap table; event, syscall and failsafe callbacks (failsafe
//! with `CALLBACKF_mask_events`); a good kernel stack (`stack_switch`).
//!
//! Case: in guest kernel mode, `%rsp` is pointed at an unmapped address and
//! `ud2` runs. The #UD frame cannot be written there, so the failsafe
//! callback must run instead, with frame
//! `{rcx, r11, ds, es, fs, gs, rip, cs, rflags, rsp, ss}`:
//! - rip = the `ud2`, rsp = the unmapped address, cs = 0xe030 (kernel
//!   mode, RPL 0), ss = 0xe02b;
//! - ds/es/fs/gs = the selectors the guest had loaded;
//! - events masked on entry (`CALLBACKF_mask_events`);
//! - the frame on a stack the guest can use. The interrupted stack being
//!   unusable, the one left is the `stack_switch` stack, which is where
//!   this test expects it (the frame's top is printed either way).
//!
//! Then the same with a #PF (a read of an unmapped address) for the
//! broken stack: the failsafe callback again, with CR2 (`vcpu_info` and
//! `mov %cr2`) the address read, not the stack the frame could not go on.
//!
//! Then an event upcall due on the way out of an `EVTCHNOP_send` (an IPI
//! port of this vCPU) made with the broken stack: its frame cannot be
//! written either (the quick way's asm declines, the locked way out tries
//! it again): the failsafe callback, rip just after the `syscall`, rsp the
//! broken one.
//!
//! Real Xen 4.17 differs: it uses the failsafe callback only when
//! reloading segment selectors fails on a context switch (`load_segments`),
//! never for a bounce frame it cannot write; for that it crashes the
//! domain (`domain_crash_sync called from entry.S: fault at ...
//! domain_crash_page_fault_6x8`), so on Xen this
//! guest ends without a `RESULT:` line (see guests/README.md).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]
#![allow(clippy::result_large_err)]

use core::arch::asm;

use pvguest::abi::{self, StartInfo};
use pvguest::cell::GuestCell;
use pvguest::println;
use pvguest::report::{check, check_eq, check_rc, fail, info};
use pvguest::traps::{self, catch, KERNEL_STACK};

pvguest::guest_main!("failsafe", run);

/// Canonical, unmapped: every write of a bounce frame there faults.
const BAD_STACK: u64 = 0x0000_0000_dead_c000;

/// [rip of the ud2] as stored by the asm.
static AT: GuestCell<u64> = GuestCell::new(0);

fn selectors() -> [u64; 4] {
    let (ds, es, fs, gs): (u64, u64, u64, u64);
    // SAFETY: reads segment selectors.
    unsafe {
        asm!(
            "mov {0}, ds", "mov {1}, es", "mov {2}, fs", "mov {3}, gs",
            out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs,
            options(nomem, nostack)
        )
    };
    [ds, es, fs, gs]
}

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    check_rc(
        "callback_op register event",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0),
        0,
    );
    check_rc(
        "callback_op register syscall",
        traps::register_callback(abi::CALLBACKTYPE_SYSCALL, abi::CALLBACKF_MASK_EVENTS),
        0,
    );
    check_rc(
        "callback_op register failsafe (mask events)",
        traps::register_callback(abi::CALLBACKTYPE_FAILSAFE, abi::CALLBACKF_MASK_EVENTS),
        0,
    );
    // SAFETY: KERNEL_STACK is unused otherwise.
    let rc =
        unsafe { pvguest::hypercall::stack_switch(abi::FLAT_KERNEL_SS.into(), KERNEL_STACK.top()) };
    check_rc("stack_switch", rc, 0);

    let segs = selectors();
    // Unmask events, so that "masked on entry" is the callback's doing.
    pvguest::start_info::set_upcall_mask(0);
    println!("EXPECT-FAILSAFE");
    // SAFETY: the ud2 with the broken rsp must end in the failsafe callback, which unwinds to
    // this catch (rsp comes back from the catch); writes only AT.
    let r = catch(|| unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "mov {t}, rsp",
            "mov rsp, {bad}",
            "2: ud2",
            "mov rsp, {t}",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            bad = in(reg) BAD_STACK,
        )
    });
    pvguest::start_info::set_upcall_mask(1);
    let t = match r {
        Ok(()) => return fail("failsafe callback", format_args!("ud2 did not trap")),
        Err(t) => t,
    };
    if !check(
        "failsafe callback",
        t.vector == traps::VEC_FAILSAFE,
        format_args!("got {} instead", t),
    ) {
        return;
    }
    check_eq("failsafe frame rip = the ud2", t.rip, AT.get());
    check_eq("failsafe frame rsp = the broken rsp", t.rsp, BAD_STACK);
    check_eq("failsafe frame cs 0xe030", t.cs_sel(), 0xe030);
    check_eq("failsafe frame ss 0xe02b", t.ss, 0xe02b);
    check_eq("failsafe frame saved mask 0", t.saved_mask(), 0);
    check_eq("failsafe masks events on entry", t.mask_on_entry, 1);
    check(
        "failsafe frame ds, es, fs, gs = loaded selectors",
        t.segs == segs,
        format_args!("frame {:x?}, loaded {:x?}", t.segs, segs),
    );
    check_eq(
        "failsafe frame on the stack_switch stack",
        t.frame_top,
        KERNEL_STACK.top(),
    );
    info(format_args!(
        "failsafe frame: {} segs {:x?} top {:#x}",
        t, t.segs, t.frame_top
    ));
    page_fault_case();
    upcall_case();
}

/// The `EVTCHNOP_send` argument (not on the broken stack).
static SEND: GuestCell<abi::EvtchnSend> = GuestCell::new(abi::EvtchnSend { port: 0 });

/// The same for an event upcall: `EVTCHNOP_send` on an IPI port of this
/// vCPU, with events unmasked and the broken rsp (a bare `syscall`: the
/// hypercall page's `call` would push on it), makes the upcall due on the
/// way out; its frame cannot be written: the failsafe callback.
fn upcall_case() {
    let port = match pvguest::events::bind_ipi(0) {
        Ok(p) => p,
        Err(rc) => return fail("bind_ipi for the upcall case", format_args!("rc {rc}")),
    };
    SEND.set(abi::EvtchnSend { port });
    // Masked when the catch begins, so that its unwind (an iret with the
    // catch's mask) does not take the upcall still due afterwards.
    pvguest::start_info::set_upcall_mask(1);
    // SAFETY: as above: the upcall with the broken rsp must end in the
    // failsafe callback, which unwinds to this catch; writes only AT.
    let r = catch(|| unsafe {
        pvguest::start_info::set_upcall_mask(0);
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "mov {t}, rsp",
            "mov rsp, {bad}",
            "syscall",
            "2: mov rsp, {t}",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            bad = in(reg) BAD_STACK,
            inout("rax") abi::HYPERVISOR_EVENT_CHANNEL_OP as u64 => _,
            in("rdi") abi::EVTCHNOP_SEND as u64,
            in("rsi") SEND.as_ptr() as u64,
            out("rcx") _,
            out("r11") _,
        )
    });
    pvguest::start_info::set_upcall_mask(1);
    match r {
        Ok(()) => fail(
            "failsafe after an upcall",
            format_args!("the send returned with no upcall"),
        ),
        Err(t) if t.vector == traps::VEC_FAILSAFE => {
            check_eq(
                "failsafe after an upcall: frame rip = after the syscall",
                t.rip,
                AT.get(),
            );
            check_eq(
                "failsafe after an upcall: frame rsp = the broken rsp",
                t.rsp,
                BAD_STACK,
            );
            check_eq("failsafe after an upcall: saved mask 0", t.saved_mask(), 0);
            check(
                "failsafe after an upcall: the port pending",
                pvguest::events::is_pending(port),
                format_args!("port {port} not pending"),
            );
        }
        Err(t) => fail("failsafe after an upcall", format_args!("got {t} instead")),
    }
    pvguest::events::clear_pending(port);
    pvguest::events::clear_upcall_pending(0);
}

/// Canonical, unmapped, and not where a frame would go: the #PF's address.
const UNMAPPED_DATA: u64 = 0x0000_0000_beef_0000;

/// The same with a #PF (a read of `UNMAPPED_DATA`): the failsafe callback,
/// and CR2 (the `vcpu_info`'s and the emulated `mov %cr2`) is the address
/// read, not the broken stack's where the frame could not be written.
fn page_fault_case() {
    pvguest::start_info::set_upcall_mask(0);
    // SAFETY: as above: the read with the broken rsp must end in the
    // failsafe callback, which unwinds to this catch.
    let r = catch(|| unsafe {
        asm!(
            "mov {t}, rsp",
            "mov rsp, {bad}",
            "mov al, [{addr}]",
            "mov rsp, {t}",
            t = out(reg) _,
            bad = in(reg) BAD_STACK,
            addr = in(reg) UNMAPPED_DATA,
            out("al") _,
        )
    });
    pvguest::start_info::set_upcall_mask(1);
    match r {
        Ok(()) => fail(
            "failsafe after a #PF",
            format_args!("the read did not fault"),
        ),
        Err(t) if t.vector == traps::VEC_FAILSAFE => {
            check_eq(
                "failsafe after a #PF: frame rsp = the broken rsp",
                t.rsp,
                BAD_STACK,
            );
            check_eq(
                "failsafe after a #PF: vcpu_info cr2 = the address read",
                pvguest::start_info::cr2(),
                UNMAPPED_DATA,
            );
            check_eq(
                "failsafe after a #PF: mov %cr2 = the address read",
                pvguest::cpu::read_cr2(),
                UNMAPPED_DATA,
            );
        }
        Err(t) => fail("failsafe after a #PF", format_args!("got {t} instead")),
    }
}
