//! The quick way of a guest's exception (Xen: `handle_exception` and
//! `create_bounce_frame`, with no softirq work pending): the common
//! cases, from `exception_common` (entry.S) and
//! `idt::guest_exception_quick` to the guest's handler and back, in one
//! function per guest width, without the dispatch on the vector, the
//! locked path or the scheduler.
//!
//! - `int3`/`into` (#BP, #OF): bounced to the trap-table handler.
//! - #UD from the guest kernel: the forced-emulation `cpuid` (`ud2;
//!   .ascii "xen"; cpuid`) emulated, any other bounced.
//! - #PF: CR2 given to the guest, then bounced, unless writable page
//!   tables may apply (a page-table store: `pv::mm::ptwr`, on the general
//!   way).
//!
//! Everything else (and these, whenever something is unusual: tracing
//! on, no handler, a frame the CPU's walk will not write) goes the
//! general way, `pv::fast::exception` then the locked path, before
//! anything changed; a #PF whose frame cannot be written goes to
//! `traps::inject`, which ends in the failsafe callback or the crash,
//! exactly as before.
//!
//! The same locks as `pv::fast::exception`: the current domain's, found
//! through this CPU's block. The same frame as every bounce:
//! `traps::build_frame`, one recipe for both widths. The same checks on
//! the way out as `pv::fast::leave_checked` (the work word, the upcall,
//! `retcheck`), by `iretq` ([`leave`]), else the locked way out.
//!
//! Two more bounces' halves live here, on the same pieces: a 64-bit guest
//! user's `syscall` bounced to its kernel ([`user_syscall`], from
//! `pv::fast::own_vcpu`), and `HYPERVISOR_iret` on the quick way
//! ([`iret`], from `pv::fast::quick_iret`).
//!
//! The commonest cases of all of these never get here: `bounce.S` in
//! arch/x86_64 does them in asm first (a 64-bit kernel's #BP, #OF, #UD,
//! #PF and the forced-emulation `cpuid`, a user `syscall`, the iret, a
//! 32-bit kernel's #BP/#OF/#PF), with the same checks and results, and sends
//! anything unusual here with nothing changed. `arch::x86_64::hot` gives
//! it the vCPU's offsets.

use core::sync::atomic::Ordering;

use ringvisor_abi::xen::{TI_IF, VMASST_TYPE_ARCHITECTURAL_IOPL, VMASST_TYPE_WRITABLE_PAGETABLES};

use ringvisor_abi::x86_64::{IretContext, FLAT_RING3_CS64, FLAT_RING3_SS64, VGCF_IN_SYSCALL};

use crate::arch::x86_64::idt::{Quick, QuickRegs, TrapFrame};
use crate::arch::x86_64::percpu::{self, PerCpu};
use crate::domain::vcpu::Callback;
use crate::domain::Domain;
use crate::mm::view::published_vcpu_info;
use crate::pv::fast;
use crate::pv::guest_mem::{is_canonical, GuestSpace};
use crate::pv::traps::{self, FrameSpec, VEC_BP, VEC_OF, VEC_PF, VEC_UD};
use crate::pv::width::Width;
use crate::pv::{emulate, retcheck};

/// The vectors [`exception`] takes (bit N: vector N): entry.S sends only
/// these to it (`idt::guest_exception_quick`).
use crate::arch::x86_64::answers::QUICK_VECTORS;

/// A guest's exception of a vector in [`QUICK_VECTORS`]: `true` when
/// handled here, way out included; `false`: nothing done, the general way
/// runs.
// Tour 04: an exception on the quick way
#[inline(always)]
pub fn exception(f: &mut TrapFrame) -> bool {
    if f.vector >= 64 || QUICK_VECTORS >> f.vector & 1 == 0 {
        return false;
    }
    on_domain(f, f.vector as u8)
}

#[inline(never)]
fn on_domain(f: &mut TrapFrame, vector: u8) -> bool {
    let pc = percpu::this();
    let Some(cell) = crate::sync::current_domain(pc) else {
        return false;
    };
    // The domain's lock, as `pv::fast::exception` holds it (a bounce
    // changes only this vCPU and its guest's stack, but the locked path's
    // own functions are called on the domain).
    let mut g = cell.lock();
    let d = &mut *g;
    let done = if d.is_32bit() {
        on_width::<true>(pc, d, f, vector)
    } else {
        on_width::<false>(pc, d, f, vector)
    };
    if !done {
        return false;
    }
    let left = leave(pc, d, f);
    drop(g); // before the locked way out takes HV
    if !left {
        fast::locked_way_out(f);
    }
    true
}

/// The cases, for one width (`COMPAT`: 32-bit), compiled once per width
/// with its `Layout`'s constants folded in.
#[inline(always)]
fn on_width<const COMPAT: bool>(
    pc: &PerCpu,
    d: &mut Domain,
    f: &mut TrapFrame,
    vector: u8,
) -> bool {
    let w = Width::of(COMPAT);
    if w == Width::W32 {
        // A 32-bit guest's mode is its ring: 1 kernel, 3 user (as
        // `pv::fast::exception_on_vcpu` says).
        d.v_mut().set_kernel_mode(f.cs & 3 != 3);
    }
    match vector {
        VEC_BP | VEC_OF => bounce::<COMPAT>(pc, d, f, vector, None),
        VEC_UD => undefined::<COMPAT>(pc, d, f),
        // #PF: `exception` lets only `QUICK_VECTORS` through. (An explicit
        // arm and a `_ => false` here changed LLVM's inlining: about 40
        // instructions more on the #PF and 32-bit bounces.)
        _ => page_fault::<COMPAT>(pc, d, f),
    }
}

/// #UD: the forced-emulation prefix from the guest kernel (what
/// `traps::guest_exception` and `emulate::forced` do, on one read of the
/// instruction), else its handler. From user mode (where `sysenter` may
/// be the cause): the general way.
#[inline(always)]
fn undefined<const COMPAT: bool>(pc: &PerCpu, d: &mut Domain, f: &mut TrapFrame) -> bool {
    let w = Width::of(COMPAT);
    if w.interrupted_user(d.v().kernel_mode(), f.cs) {
        return false;
    }
    let mut insn = [0u8; 8];
    if d.v().space().read_bytes(f.rip, &mut insn).is_err() {
        return false; // fewer bytes readable: `traps::fetch` sorts them out
    }
    if emulate::forced(d, f, &insn) {
        return true;
    }
    bounce::<COMPAT>(pc, d, f, VEC_UD, None)
}

/// #PF: CR2 for the guest, the error code as its mode sees it, and its
/// handler (`traps::guest_exception`'s #PF arm without writable page
/// tables, which may apply only to a write by the kernel with the assist
/// on: that goes the general way).
#[inline(always)]
fn page_fault<const COMPAT: bool>(pc: &PerCpu, d: &mut Domain, f: &mut TrapFrame) -> bool {
    let w = Width::of(COMPAT);
    let ptwr_on = d.vm_assist & (1 << VMASST_TYPE_WRITABLE_PAGETABLES) != 0;
    if ptwr_on && f.error_code & 3 == 3 && d.v().kernel_mode() {
        return false;
    }
    // Nothing here faults before CR2 is read (a refused copy below is
    // after it, and then `inject` needs only what was stored).
    let cr2 = crate::arch::x86_64::cr::cr2();
    d.v_mut().cr2 = cr2;
    // Through the published `vcpu_info` (`traps::set_vcpu_cr2`'s place).
    traps::set_cr2_at(published_vcpu_info(pc), COMPAT, cr2);
    // The CPU saw a ring-3 access either way; the guest must see "user"
    // only for its user mode. A 32-bit kernel really is in ring 1.
    let ec = if w == Width::W32 {
        f.error_code
    } else if d.v().kernel_mode() {
        f.error_code & !4
    } else {
        f.error_code | 4
    };
    if !bounce::<COMPAT>(pc, d, f, VEC_PF, Some(ec)) {
        // CR2 may be a refused copy's by now: the general bounce, on what
        // was stored, with its failsafe and crash.
        traps::inject(d, f, VEC_PF, Some(ec));
    }
    true
}

/// Bounce `vector` to the trap-table handler ([`bounce_to`]); `false`:
/// nothing changed (no handler, or as `bounce_to`).
#[inline(always)]
fn bounce<const COMPAT: bool>(
    pc: &PerCpu,
    d: &mut Domain,
    f: &mut TrapFrame,
    vector: u8,
    error_code: Option<u64>,
) -> bool {
    let t = d.v().trap_table[vector as usize];
    if t.address == 0 {
        return false;
    }
    let to = Callback {
        address: t.address,
        cs: t.cs,
        mask_events: t.flags & TI_IF != 0,
    };
    bounce_to::<COMPAT>(pc, d, f, to, Some(vector), "", error_code)
}

/// A 64-bit guest user's `syscall`, bounced to its kernel's syscall
/// callback (`traps::syscall_from_user` for a frame the CPU's walk
/// writes in one go; `pv::fast::own_vcpu`); `false`: nothing changed,
/// `syscall_from_user` runs (no callback: its #UD; or as `bounce_to`).
// Tour 06: a user `syscall`, on the quick way
#[inline(always)]
pub fn user_syscall(pc: &PerCpu, d: &mut Domain, f: &mut TrapFrame) -> bool {
    let cb = d.v().syscall;
    if d.is_32bit() || cb.address == 0 {
        return false;
    }
    bounce_to::<false>(pc, d, f, cb, None, "syscall", None)
}

/// Bounce to `to`: `traps::deliver` for a frame the CPU's walk writes in
/// one go (`traps::build_frame`, then one copy), the vCPU in its handler;
/// `false`: nothing changed (tracing on, or the frame not written: the
/// general way says why, and tries the failsafe). `vector`: the
/// exception's (named only when recorded), `None` for a callback, then
/// named `callback` (`traps::Bounce::to_callback`'s name).
#[inline(always)]
fn bounce_to<const COMPAT: bool>(
    pc: &PerCpu,
    d: &mut Domain,
    f: &mut TrapFrame,
    to: Callback,
    vector: Option<u8>,
    callback: &'static str,
    error_code: Option<u64>,
) -> bool {
    let w = Width::of(COMPAT);
    let flags = crate::trace::flags();
    if flags & crate::trace::TRACE_BOUNCE != 0 {
        return false;
    }
    let (iopl_assist, dom, cur) = (
        d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0,
        d.id,
        d.cur,
    );
    // The vCPU once, for everything below.
    let v = d.v_mut();
    let spec = FrameSpec {
        sels: None,
        error_code,
        iopl_bits: if iopl_assist {
            (v.iopl as u64) << 12
        } else {
            0
        },
        switch_stack: false,
    };
    let Ok(b) = traps::build_frame(v, upcall_mask(pc), f, w, &spec) else {
        return false;
    };
    if traps::kernel_space(v)
        .write_bytes(b.at.va, b.bytes())
        .is_err()
    {
        return false;
    }
    let old_rip = f.rip;
    traps::enter_handler_on(v, f, w, &b.at, to);
    // The events mask, if asked, through the published `vcpu_info` (the
    // byte `enter_handler` finds through the domain).
    if to.mask_events {
        set_upcall_mask(pc, 1);
    }
    v.set_in_failsafe(false);
    v.failsafe_streak = 0;
    if flags & crate::trace::RECENT != 0 {
        let what = match vector {
            Some(n) => crate::arch::x86_64::idt::exception_name(n as u64),
            None => callback,
        };
        crate::trace::record_seen(crate::trace::Record {
            what: crate::trace::What::Named(what),
            dom,
            vcpu: cur as u16,
            a: old_rip,
            b: error_code.unwrap_or(0),
        });
    }
    true
}

/// The event upcall on the quick way's exit (`pv::fast::quick_evtchn`,
/// after an `EVTCHNOP_send` answered under the domain's lock, held by the
/// caller): what the locked way out (`pv::entry::leave_domain`, then
/// `event::deliver_upcall`, then `retcheck`) does when the upcall is the
/// only thing pending, on the quick way's few registers. Its tests first,
/// nothing changed: the work word 0, the domain alive, the vCPU up, not
/// blocked, nothing injected by hand, in kernel mode (the quick way runs
/// only there), an event callback, an upcall due (pending and unmasked,
/// through the published `vcpu_info`). Then the bounce as
/// `traps::deliver` makes it (`Bounce::to_callback("event upcall")` with
/// events masked: the frame on the interrupted stack through the checked
/// copy, the saved mask in CS, the record), and [`leave`]'s way out by
/// `iretq`. `Quick::Done` (the locked way out settles it, on the full
/// frame): anything else, a frame the copy refused (there the failsafe
/// or the crash, as before: nothing was changed here), a frame `retcheck`
/// refuses.
// Tour 07: the upcall, on the quick way's exit
#[inline(never)]
pub fn upcall(pc: &PerCpu, d: &mut Domain, r: &mut QuickRegs) -> Quick {
    if pc.work.load(Ordering::Relaxed) != 0 || !d.is_alive() || d.is_32bit() {
        return Quick::Done;
    }
    let v = d.v();
    let cb = v.event;
    if !v.up || v.blocked || v.inject.is_some() || !v.kernel_mode() || cb.address == 0 {
        return Quick::Done;
    }
    if !fast::upcall_due(pc) {
        return Quick::Done;
    }
    // The interrupted context, as the full frame would hold it (the rest
    // of a `TrapFrame` is not read by the bounce).
    let mut f = TrapFrame {
        rcx: r.rcx,
        r11: r.r11,
        rip: r.rip,
        cs: r.cs,
        rflags: r.rflags,
        rsp: r.rsp,
        ss: r.ss,
        ..TrapFrame::default()
    };
    // Every upcall masks events (Xen: TBF_INTERRUPT on the event callback).
    let to = Callback {
        mask_events: true,
        ..cb
    };
    if !bounce_to::<false>(pc, d, &mut f, to, None, "event upcall", None) {
        return Quick::Done;
    }
    let left = leave(pc, d, &mut f);
    (r.rip, r.cs, r.rflags, r.rsp, r.ss) = (f.rip, f.cs, f.rflags, f.rsp, f.ss);
    if left {
        Quick::Iretq
    } else {
        Quick::Done
    }
}

/// Whether `bounce.S`'s `upcall_quick` may deliver the event upcall after
/// `pv::fast::quick_evtchn`'s send ([`Quick::Upcall`]): [`upcall`]'s tests
/// (the domain's lock held by the caller), a canonical callback, no trace
/// line wanted (the flags exactly `RECENT`: the asm records), frames that
/// report IOPL 0 (as the asm writes them). Then the callback goes in the
/// frame's `error_code` for the asm, and `vector` says
/// `VEC_SYSCALL_DONE`, for the full way if the asm declines. `false`:
/// nothing changed.
#[inline(always)]
pub fn upcall_asm(pc: &PerCpu, d: &Domain, r: &mut QuickRegs) -> bool {
    if pc.work.load(Ordering::Relaxed) != 0 || !d.is_alive() || d.is_32bit() {
        return false;
    }
    if crate::trace::flags() != crate::trace::RECENT {
        return false;
    }
    let v = d.v();
    let cb = v.event;
    if !v.up || v.blocked || v.inject.is_some() || !v.kernel_mode() || !is_canonical(cb.address) {
        return false;
    }
    let iopl_assist = d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0;
    if cb.address == 0 || (iopl_assist && v.iopl != 0) || !fast::upcall_due(pc) {
        return false;
    }
    r.error_code = cb.address;
    r.vector = crate::arch::x86_64::idt::VEC_SYSCALL_DONE;
    true
}

/// `pv::fast::leave_checked` for a frame an exception left (a handler's,
/// or the interrupted one after an emulation): the domain alive, nothing
/// pending, the frame one `retcheck` lets through; `false`: the locked
/// way out settles it. Always by `iretq`, as Xen leaves an exception
/// (`sysretq` is for a `syscall` entry's own return).
#[inline(always)]
fn leave(pc: &PerCpu, d: &Domain, f: &mut TrapFrame) -> bool {
    if !d.is_alive() || !fast::nothing_pending(pc) {
        return false;
    }
    let (cs, ss) = (f.cs as u16, f.ss as u16);
    if !retcheck::flat_ok(d.is_32bit(), f.rip, cs, ss)
        && retcheck::refused(&d.v().gdt, d.is_32bit(), f.rip, cs, ss).is_some()
    {
        return false;
    }
    // IF on, IOPL 0, no VM/NT.
    f.rflags = (f.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000);
    true
}

/// Set the current vCPU's `evtchn_upcall_mask` to `m`, through the
/// published `vcpu_info` (as [`upcall_mask`] reads it).
#[inline(always)]
fn set_upcall_mask(pc: &PerCpu, m: u8) {
    published_vcpu_info(pc)
        .atomic_u8(traps::UPCALL_MASK)
        .store(m, Ordering::Relaxed)
}

/// The current vCPU's `evtchn_upcall_mask`, through the `vcpu_info`
/// this CPU's block publishes (the one `traps::upcall_mask` reads;
/// `pv::entry::published` checks they agree). The guest is not running.
#[inline(always)]
fn upcall_mask(pc: &PerCpu) -> u8 {
    published_vcpu_info(pc)
        .atomic_u8(traps::UPCALL_MASK)
        .load(Ordering::Relaxed)
}

/// `HYPERVISOR_iret` of a 64-bit guest kernel on the quick way
/// (`pv::fast::quick_iret`): `pv::iret::iret` in its two halves, the
/// `iret_context` read through the CPU's walk of the kernel's tables
/// where it can be (else `iret_context`'s own read), then the way out
/// `leave_checked` takes, by `sysretq` where that is exactly `iretq`,
/// else `iretq`. A context that cannot be read (or a return to user mode
/// without user tables) goes the full way before anything changed: there
/// it crashes the domain, saying why. So does `trace=hypercall` (its line
/// is there).
// Tour 05: the return from a bounce, on the quick way
#[inline(always)]
pub fn iret(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    if crate::trace::flags() & crate::trace::TRACE_HYPERCALL != 0 {
        return Quick::Full;
    }
    let Some(cell) = crate::sync::current_domain(pc) else {
        return Quick::Full;
    };
    // Held to the end: the caller's way out (the locked one after
    // `Quick::Done`) runs after it is dropped.
    let mut g = cell.lock();
    let d = &mut *g;
    if d.is_32bit() {
        return Quick::Full; // (syscall_entry sends none here)
    }
    // The guest kernel's own tables: what `space()` gives in kernel mode
    // (the quick way runs only there), and what CR3 holds (`by_cpu`).
    let v = d.v();
    let c = match GuestSpace::new(v.guest_table).read_pod_by_cpu::<IretContext>(r.rsp) {
        Some(c) => {
            // `iret_context`'s other check.
            if c.cs & 3 == 3 && v.guest_table_user == 0 {
                return Quick::Full;
            }
            c
        }
        None => match crate::pv::iret::iret_context(d, r.rsp) {
            Ok(c) => c,
            Err(_) => return Quick::Full,
        },
    };
    let x = crate::pv::iret::iret_apply_with(d, &c, |_, m| set_upcall_mask(pc, m));
    (r.rip, r.cs, r.rflags, r.rsp, r.ss) = (x.rip, x.cs, x.rflags, x.rsp, x.ss);
    (r.rcx, r.r11, r.rax) = (x.rcx, x.r11, x.rax);
    // `leave_checked`, on these words.
    if !d.is_alive() || !fast::nothing_pending(pc) {
        return Quick::Done;
    }
    let (cs, ss) = (r.cs as u16, r.ss as u16);
    if !retcheck::flat_ok(false, r.rip, cs, ss)
        && retcheck::refused(&d.v().gdt, false, r.rip, cs, ss).is_some()
    {
        return Quick::Done;
    }
    // IF on, IOPL 0, no VM/NT.
    r.rflags = (r.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000);
    // `sysretq` where Xen's do_iret leaves by it (`VGCF_in_syscall`: rcx
    // and r11 are rip and rflags, `iret_apply` made them so) and where it
    // is exactly `iretq`: the flat selectors `sysretq` loads, a canonical
    // rip (XSA-7), RF clear (r11 is rflags without the fix-up above:
    // compared again).
    if c.flags & VGCF_IN_SYSCALL != 0
        && (r.cs, r.ss) == (FLAT_RING3_CS64 as u64, FLAT_RING3_SS64 as u64)
        && is_canonical(r.rip)
        && r.rcx == r.rip
        && r.r11 == r.rflags
        && r.rflags & 0x10000 == 0
    {
        return Quick::Sysret;
    }
    Quick::Iretq
}
