//! The entry paths that skip the locked path's lookups: hypercalls,
//! system calls and exceptions that touch only the calling vCPU or its
//! domain, handled without `sched::HV`, and the lean way out shared by
//! them (Xen: the `syscall` entry's fast path and `test_all_events`).
//!
//! # Which lock, and why that is enough
//!
//! The lock order is in docs/design.md ("Lock order and lock-free
//! paths"). The current domain's lock (`sync::current_domain`) and vCPU
//! (`PerCpu::running`, its hot block: the two flags changed here without
//! the lock) are found through this CPU's number and block, as
//! `pv::entry::publish_current` stored them under `HV`
//! wherever they can change (the first entry into a vCPU; after the
//! scheduler switched vCPU, tore a domain down or built one); a domain is
//! never removed from the list, so its lock outlives every entry.
//!
//! - A constant answer (`-ENOSYS`, `XENVER_version`) takes no lock: it
//!   writes only `in_failsafe` and `kernel_mode` of the running vCPU,
//!   which only the CPU running it writes. entry.S gives these answers
//!   itself (`answers::ASM_NRS`), and `console_io`'s of 0 bytes while the
//!   domain's `console_quiet` (an atomic its console code keeps under the
//!   lock) says the write does nothing; this module gives them when the
//!   asm declined (a trace line wanted, something pending, ...).
//! - Everything else here (`HYPERVISOR_iret`, a user `syscall` bounced,
//!   the calls of `with_domain`, every exception, #GP and #PF emulation
//!   included) holds the domain's lock: it is the locked path's own
//!   function, on that domain, and frame records are each behind their
//!   own lock (`mm::frametable`). The domain's lock is dropped before the
//!   locked way out, which takes `HV` first.
//!
//! None of them looks at `HV` (another CPU may hold it: that is no
//! business of theirs).
//!
//! The quick way (`quick`, on the few registers `syscall_entry` saved,
//! [`QuickRegs`]) answers the same calls with the same functions under the
//! same locks; only the frame is smaller.
//!
//! # The way out
//!
//! [`leave`] does what `pv::entry::before_guest_return` does when nothing
//! is pending, in as few steps: the work-pending word is 0 (no
//! reschedule, no timer change; an injected exception, a blocked vCPU are
//! never set here, and a path that sets them settles them on its own way
//! out), the domain is alive, no event upcall is due
//! (`evtchn_upcall_pending` set and unmasked: Linux's
//! `xen_force_evtchn_callback` is an `xen_version` call made for exactly
//! that), and the frame is one the CPU takes (`retcheck`: its flat-selector
//! case after a plain hypercall, whose frame `syscall_entry` built; the
//! full check after an iret or a bounce, [`leave_checked`]). Otherwise the
//! locked way out runs as for any entry, and settles it.

use core::sync::atomic::Ordering;

use ringvisor_abi::x86_64::{FLAT_RING3_CS64, FLAT_RING3_SS64};
use ringvisor_abi::xen::*;

use crate::arch::x86_64::idt::{Quick, QuickRegs, TrapFrame};
use crate::arch::x86_64::percpu::{self, PerCpu};
use crate::domain::Domain;
use crate::pv::guest_mem::is_canonical;
use crate::pv::hypercall::{self, Ret};
use crate::pv::mm;
use crate::sync::current_domain;

// The numbers the entry offers this module (`answers::QUICK_NRS`:
// [`quick`] answers each, `kind` says `Locked` for the others) and the
// ones entry.S answers itself (`answers::ASM_NRS`: [`Kind::Constant`]'s
// answers and `ConsoleNothing`'s when it has nothing to do, as `kind`
// gives them) are arch's, with the answers the asm gives, which must be
// ours.
use crate::arch::x86_64::answers::{ASM_ENOSYS, ASM_VERSION, UNASSIGNED};
const _: () = assert!(ASM_ENOSYS == hypercall::err(ringvisor_abi::errno::ENOSYS));
const _: () = assert!(
    ASM_VERSION == (crate::pv::version::XEN_MAJOR << 16 | crate::pv::version::XEN_MINOR) as i64
);

/// What [`hypercall()`] does with a number, decided before it looks at
/// anything else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A constant answer: `-ENOSYS`, `XENVER_version`.
    Constant(Ret),
    /// A call on the domain itself (`with_domain`).
    Domain,
    /// `update_va_mapping`: on the domain, without the lock when the entry
    /// stays the same (`with_domain`, or first `quick_uvm`).
    UpdateVaMapping,
    /// `mmu_update` of one request: on the domain, under the lock
    /// (`with_domain`, or first `quick_mmu`).
    MmuUpdate,
    /// `console_io(CONSOLEIO_write)` of 0 bytes: on the domain, and
    /// short (`crate::pv::console_io::console_write_nothing`).
    ConsoleNothing,
    /// `HYPERVISOR_iret` (`own_vcpu`).
    Iret,

    /// Not here: the locked path.
    Locked,
}

#[inline(always)]
fn kind(nr: u64, a0: u64, a1: u64) -> Kind {
    // One test each, the likeliest on the quick way first (the constant
    // answers are entry.S's now: they come here only when it declined); a
    // `match` here is a jump table: more instructions than these compares.
    // (Three compares, then a different test: more of them in a row
    // become a jump table, which costs the first ones more.)
    if nr == HYPERVISOR_IRET as u64 {
        return Kind::Iret; // every bounce's way back
    }
    if nr == HYPERVISOR_UPDATE_VA_MAPPING as u64 {
        return Kind::UpdateVaMapping;
    }
    if nr == HYPERVISOR_MMU_UPDATE as u64 && a1 == 1 {
        return Kind::MmuUpdate;
    }
    if nr >= 64 || UNASSIGNED >> nr & 1 != 0 {
        return Kind::Constant(hypercall::err(ringvisor_abi::errno::ENOSYS));
    }
    if nr == HYPERVISOR_XEN_VERSION as u64 && a0 == ringvisor_abi::version::XENVER_VERSION as u64 {
        return Kind::Constant(
            (crate::pv::version::XEN_MAJOR << 16 | crate::pv::version::XEN_MINOR) as Ret,
        );
    }
    let nr = nr as u32;
    if nr == HYPERVISOR_CONSOLE_IO {
        if a0 == CONSOLEIO_WRITE as u64 && a1 == 0 {
            return Kind::ConsoleNothing;
        }
        return Kind::Locked;
    }
    if nr == HYPERVISOR_FPU_TASKSWITCH {
        return Kind::Domain;
    }
    Kind::Locked
}

/// A hypercall answered without the lock, or `false` (nothing done: the
/// caller takes the locked path). When it returns `true`, the result is
/// in `f.rax` and the way out has been settled (by [`leave`], or the
/// locked one).
// Tour 02: the hypercalls that take no lock
#[inline(always)]
pub fn hypercall(f: &mut TrapFrame) -> bool {
    let pc = percpu::this();
    // A 32-bit guest's `syscall` is a system call (pv32: its vCPU is on
    // the CPU). `HV` does not matter here: nothing below touches what it
    // guards (module comment).
    let Some(v) = pc.running() else {
        return false;
    };
    if pc.pv32 != 0 {
        return false;
    }
    let nr = f.rax;
    // The vCPU this CPU runs (no other CPU runs it, `Vcpu::running_on`):
    // its mode and failsafe flag without the domain's lock, as the entry
    // asm reads and writes them (`arch::x86_64::hot`).
    let k = if v.kernel_mode() {
        kind(nr, f.rdi, f.rsi)
    } else {
        Kind::Iret
    };
    if k == Kind::Locked {
        return false;
    }
    // A hypercall or system call is progress (as on the locked path).
    v.set_in_failsafe(false);
    if k == Kind::Iret {
        own_vcpu(pc, f);
        return true;
    }
    // A call on the domain could, in principle, end it (none of those
    // above does today): then the locked way out settles that.
    let (ret, alive) = match k {
        Kind::Constant(r) => (r, true),
        _ => match with_domain(pc, nr, f.rdi, f.rsi, f.rdx, f.r10) {
            Some(r) => r,
            None => return false,
        },
    };
    f.rax = ret as u64;
    let flags = crate::trace::flags();
    if flags & crate::trace::RECENT != 0 {
        crate::trace::record_call(nr, pc.ids.load(Ordering::Relaxed), f.rdi, ret as u64);
    }
    if flags & crate::trace::TRACE_HYPERCALL != 0 {
        traced(pc, nr, [f.rdi, f.rsi, f.rdx, f.r10, f.r8], ret, "");
    }
    if !alive || !leave(pc, f) {
        locked_way_out(f);
    }
    true
}

/// A 64-bit guest's `syscall` that the per-CPU hint says came from its
/// user mode (entry.S `syscall_user`): what [`hypercall()`] does for one
/// (a system call is progress; [`own_vcpu`] bounces it), in tail calls
/// only, so this entry has no stack frame of its own. A vCPU in kernel
/// mode after all, or none, or a 32-bit guest's: `otherwise`
/// (`hypercall()` then the locked path, as `trap_dispatch` does).
// Tour 06: a user `syscall`, by the vCPU's own mode
#[inline(always)]
pub fn user_syscall(f: &mut TrapFrame, otherwise: fn(&mut TrapFrame)) {
    let pc = percpu::this();
    let Some(v) = pc.running() else {
        return otherwise(f);
    };
    if pc.pv32 != 0 || v.kernel_mode() {
        return otherwise(f);
    }
    v.set_in_failsafe(false);
    own_vcpu(pc, f)
}

/// The quick way of a 64-bit guest kernel's `syscall` (entry.S
/// `syscall_entry`, then idt.rs `syscall_quick`): the calls [`hypercall()`]
/// answers without the lock, except `HYPERVISOR_iret`, on the few
/// registers the entry saved ([`QuickRegs`]) instead of a full
/// `TrapFrame`. The same checks, the same functions, the same result;
/// only the frame is smaller, and the way out is checked once, here:
/// nothing pending (the work word, the upcall) and a return `sysretq`
/// makes exactly as `iretq` would ([`Quick::Sysret`]). Anything else
/// after the call is [`Quick::Done`] (the locked way out, on the full
/// frame); anything else before it, [`Quick::Full`] (nothing done).
// Tour 02: the quick way: a hypercall on a few saved registers
#[inline(always)]
pub fn quick(r: &mut QuickRegs) -> Quick {
    let pc = percpu::this();
    // entry.S sent a 32-bit guest's vCPU the full way already. `HV` does
    // not matter here: nothing below touches what it guards.
    let Some(v) = pc.running() else {
        return Quick::Full;
    };
    // A system call of the guest's user mode is a bounce, and iret a
    // frame of its own: the full way.
    if !v.kernel_mode() {
        return Quick::Full;
    }
    match kind(r.rax, r.rdi, r.rsi) {
        Kind::Constant(ret) => {
            // A hypercall is progress (as on the locked path).
            v.set_in_failsafe(false);
            quick_out(pc, r, ret, true)
        }
        Kind::Domain => quick_domain(pc, r),
        Kind::UpdateVaMapping => {
            v.set_in_failsafe(false);
            quick_uvm(pc, r)
        }
        Kind::MmuUpdate => {
            v.set_in_failsafe(false);
            quick_mmu(pc, r)
        }
        Kind::ConsoleNothing => {
            v.set_in_failsafe(false);
            quick_console(pc, r)
        }
        Kind::Iret => {
            // A hypercall is progress (as on the locked path).
            v.set_in_failsafe(false);
            quick_iret(pc, r)
        }
        Kind::Locked => Quick::Full,
    }
}

/// [`quick`] for a call of [`Kind::Domain`] (out of line: the constant
/// answers need none of its registers).
#[inline(never)]
fn quick_domain(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    if let Some(v) = pc.running() {
        v.set_in_failsafe(false);
    }
    match with_domain(pc, r.rax, r.rdi, r.rsi, r.rdx, r.r10) {
        Some((ret, alive)) => quick_out(pc, r, ret, alive),
        None => Quick::Full,
    }
}

/// [`quick`] for `update_va_mapping`: an entry rewritten with the value it
/// holds on the vCPU alone (as in `with_domain`), one that changes under
/// the lock.
#[inline(never)]
fn quick_uvm(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    let Some(cell) = current_domain(pc) else {
        return Quick::Full;
    };
    // The domain's page tables under its lock; an entry rewritten with its
    // own value takes `mm`'s same-entry case (Xen's mod_l1_entry fast
    // path: no reference taken or dropped).
    let (ret, alive) = {
        let mut d = cell.lock();
        let ret = mm::update_va_mapping_inline(
            &mut d,
            crate::mm::frametable::frames(),
            r.rdi,
            r.rsi,
            r.rdx,
        );
        (ret, d.is_alive())
    };
    quick_out(pc, r, ret, alive)
}

/// `event_channel_op(EVTCHNOP_send)` of a 64-bit guest kernel, on the
/// quick way's registers (entry.S `syscall_evtchn_way`, then
/// `idt::syscall_evtchn`; `syscall_entry` tested the number and the
/// command): [`quick`]'s tests, then [`quick_evtchn`]. The same answers
/// as [`quick`]'s.
#[inline(always)]
pub fn evtchn_send(r: &mut QuickRegs) -> Quick {
    let pc = percpu::this();
    let Some(v) = pc.running() else {
        return Quick::Full;
    };
    // A system call of the guest's user mode is a bounce: the full way.
    if r.rdi != ringvisor_abi::event_channel::EVTCHNOP_SEND as u64 || !v.kernel_mode() {
        return Quick::Full;
    }
    // A hypercall is progress (as on the locked path).
    v.set_in_failsafe(false);
    quick_evtchn(pc, r)
}

/// [`evtchn_send`] on an event channel's port: the locked
/// path's own `send` under the same lock (`event::send_op_quick`), and,
/// as `pv::entry::on_domain` does, a send to another domain finished with
/// our lock released (`event::send_deferred`). Any other port (closed,
/// unbound, the console's), or an argument it cannot read, goes the
/// locked way with nothing done. The upcall a send to its own domain made
/// due is delivered here too, on the way out (`fast_trap::upcall`), when
/// it is the only thing pending.
// Tour 07: EVTCHNOP_send on the quick way
#[inline(never)]
fn quick_evtchn(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    let Some(cell) = current_domain(pc) else {
        return Quick::Full;
    };
    // Held to the end (or to the deferred send): the caller's way out
    // (the locked one after `Quick::Done`) runs after it is dropped.
    let mut g = cell.lock();
    let d = &mut *g;
    // The guest kernel's own tables: what `space()` gives in kernel mode
    // (the quick way runs only there, 64-bit guests only).
    let space = crate::pv::guest_mem::GuestSpace::new(d.v().guest_table);
    let Some(ret) = crate::pv::event::send_op_quick(d, space, r.rsi) else {
        // Nothing done: the locked path, without `hypercall()` asking again.
        r.vector = crate::arch::x86_64::idt::VEC_SYSCALL_LOCKED;
        return Quick::Full;
    };
    let alive = d.is_alive();
    if pc.deferred_send.load(Ordering::Relaxed) != 0 {
        // To another domain: its lock after ours is released, never both
        // (docs/design.md, "Lock order").
        drop(g);
        crate::pv::event::send_deferred();
        return quick_out(pc, r, ret, alive);
    }
    match quick_out(pc, r, ret, alive) {
        // The upcall in asm where it is the common case, else in Rust.
        Quick::Done if alive && crate::pv::fast_trap::upcall_asm(pc, d, r) => Quick::Upcall,
        Quick::Done if alive => crate::pv::fast_trap::upcall(pc, d, r),
        q => q,
    }
}

/// [`quick`] for `HYPERVISOR_iret` (the locked path's `own_vcpu` on the
/// quick way): `pv::fast_trap::iret`, with the bounces' other halves.
#[inline(never)]
fn quick_iret(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    crate::pv::fast_trap::iret(pc, r)
}

/// [`quick`] for `console_io(CONSOLEIO_write)` of 0 bytes (out of line,
/// as the other calls on the domain).
#[inline(never)]
fn quick_console(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    let Some(cell) = current_domain(pc) else {
        return Quick::Full;
    };
    let ret = crate::pv::console_io::console_write_nothing(&mut cell.lock());
    quick_out(pc, r, ret, true)
}

/// [`quick`] for `mmu_update` of one request: under the lock (as in
/// `with_domain`), without `with_domain`'s dispatch or the batch's loop.
#[inline(never)]
fn quick_mmu(pc: &PerCpu, r: &mut QuickRegs) -> Quick {
    let Some(cell) = current_domain(pc) else {
        return Quick::Full;
    };
    let (ret, alive) = {
        let mut g = cell.lock();
        let d = &mut *g;
        let space = d.v().space();
        // `kind` saw a count of 1.
        let ret = mm::mmu_update_single(
            d,
            crate::mm::frametable::frames(),
            space,
            r.rdi,
            r.rdx,
            r.r10,
        );
        (ret, d.is_alive())
    };
    quick_out(pc, r, ret, alive)
}

/// The end of [`quick`]: the result in `rax`, the recent-calls ring, and
/// the way out, checked once.
#[inline(always)]
fn quick_out(pc: &PerCpu, r: &mut QuickRegs, ret: Ret, alive: bool) -> Quick {
    let nr = r.rax;
    r.rax = ret as u64;
    let flags = crate::trace::flags();
    if flags & crate::trace::RECENT != 0 {
        crate::trace::record_call(nr, pc.ids.load(Ordering::Relaxed), r.rdi, ret as u64);
    }
    if flags & crate::trace::TRACE_HYPERCALL != 0 {
        return quick_traced(pc, r, nr, ret, alive);
    }
    // sysretq loads rip from rcx and rflags from r11 (RF, VM cleared),
    // cs/ss from STAR: the flat ring-3 selectors syscall_entry's frame
    // would hold. So it returns exactly as `leave` and iretq would where
    // rip (rcx) is canonical (XSA-7: never sysret to a non-canonical rip)
    // and r11 already is what the way out makes of rflags: IF on, IOPL 0,
    // no NT, VM or RF.
    const MUST: u64 = 0x202 | 0x3000 | 0x4000 | 0x10000 | 0x20000;
    if !alive || !nothing_pending(pc) || !is_canonical(r.rcx) || r.r11 & MUST != 0x202 {
        return Quick::Done;
    }
    Quick::Sysret
}

/// [`quick_out`] with `trace=hypercall`: the line, then the same way out.
#[cold]
#[inline(never)]
fn quick_traced(pc: &PerCpu, r: &mut QuickRegs, nr: u64, ret: Ret, alive: bool) -> Quick {
    traced(pc, nr, [r.rdi, r.rsi, r.rdx, r.r10, r.r8], ret, "");
    const MUST: u64 = 0x202 | 0x3000 | 0x4000 | 0x10000 | 0x20000;
    if !alive || !nothing_pending(pc) || !is_canonical(r.rcx) || r.r11 & MUST != 0x202 {
        return Quick::Done;
    }
    Quick::Sysret
}

/// The calls of [`Kind::Domain`]: each is the locked path's own function,
/// on the current domain. Those that only touch the calling vCPU run as
/// they are; a page-table update that changes an entry changes frame
/// reference counts, shared state, so it holds the lock while it does
/// (the lock only: not the locked path's lookups, scheduler and exit).
/// `None`: nothing was done (the locked path runs); else the result and
/// whether the domain is still alive.
#[inline(never)]
fn with_domain(pc: &PerCpu, nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> Option<(Ret, bool)> {
    let a = [a0, a1, a2, a3];
    let mut g = current_domain(pc)?.lock();
    let d = &mut *g;
    let ft = crate::mm::frametable::frames();
    let r = match nr as u32 {
        // Only ever of 0 bytes here (`Kind::ConsoleNothing`).
        HYPERVISOR_CONSOLE_IO => crate::pv::console_io::console_write_nothing(d),
        HYPERVISOR_FPU_TASKSWITCH => hypercall::fpu_taskswitch(d, a[0]),
        // The domain's page tables under its lock (held here), the frame
        // records each under its own (`mm::frametable`).
        HYPERVISOR_UPDATE_VA_MAPPING => mm::update_va_mapping(d, ft, a[0], a[1], a[2]),
        HYPERVISOR_MMU_UPDATE => mm::mmu_update(d, ft, d.v().space(), a[0], a[1], a[2], a[3]),
        _ => return None,
    };
    Some((r, d.is_alive()))
}

/// `HYPERVISOR_iret`, or a system call of the guest's user mode bounced
/// to its kernel's syscall callback: the locked path's own functions
/// (`pv::iret::iret`, `traps::syscall_from_user`), which read and write
/// only this vCPU's state and its guest's stack (a failure crashes only
/// this domain). The frame they leave may be anything the guest asked
/// for, so the way out is [`leave_checked`].
#[inline(never)]
fn own_vcpu(pc: &PerCpu, f: &mut TrapFrame) {
    let Some(cell) = current_domain(pc) else {
        return locked_way_out(f);
    };
    let mut g = cell.lock();
    let d = &mut *g;
    if d.v().kernel_mode() {
        let r = crate::pv::iret::iret(d, f);
        crate::pv::iret::trace_iret(d, f, r);
    } else if !crate::pv::fast_trap::user_syscall(pc, d, f) {
        crate::pv::traps::syscall_from_user(d, f, false);
    }
    let left = leave_checked(pc, d, f);
    // The locked way out takes HV, then this domain's lock: ours goes
    // first (docs/design.md, "Lock order").
    drop(g);
    if !left {
        locked_way_out(f);
    }
}

/// An exception of a guest (vectors 0-31), handled by the locked
/// path's own function (`traps::guest_exception`: bounced to the guest's
/// trap table, or emulated), on the vCPU alone, and left by
/// [`leave_checked`]; `false`: nothing done, the locked path runs. #GP
/// (privileged instructions: CR3 loads, MSRs, ...) and #PF (with writable
/// page tables, a page-table store) may change shared state, so they
/// hold the lock while they run; an NMI or machine check is never the
/// guest's and stays on the locked path (which stops on it).
// Tour 04: an exception without the locked path
#[inline(always)]
pub fn exception(f: &mut TrapFrame) -> bool {
    let vector = f.vector;
    if vector >= 32 || vector == 2 || vector == 18 {
        return false;
    }
    exception_on_vcpu(percpu::this(), f)
}

#[inline(never)]
fn exception_on_vcpu(pc: &PerCpu, f: &mut TrapFrame) -> bool {
    let Some(cell) = current_domain(pc) else {
        return false;
    };
    // The domain's lock covers what emulating #GP and #PF may change (its
    // page tables, descriptor tables, the frames' records each under its
    // own lock); a bounce changes only this vCPU and its guest's stack.
    let mut g = cell.lock();
    let d = &mut *g;
    let ft = crate::mm::frametable::frames();
    if d.is_32bit() {
        // A 32-bit guest's mode is its ring: 1 kernel, 3 user (as
        // `entry::guest_trap_on` says).
        d.v_mut().set_kernel_mode(f.cs & 3 != 3);
    }
    crate::pv::traps::guest_exception(d, ft, f);
    let left = leave_checked(pc, d, f);
    drop(g); // before the locked way out takes HV
    if !left {
        locked_way_out(f);
    }
    true
}

/// The lean way out for a frame that may have been rewritten (an iret, a
/// bounce): the domain still alive, nothing pending, and the frame one
/// `retcheck` lets through, in full. Otherwise (`false`) the locked way
/// out settles it: the crash, the upcall, the refused frame's fault.
#[inline(always)]
pub(crate) fn leave_checked(pc: &PerCpu, d: &Domain, f: &mut TrapFrame) -> bool {
    if !d.is_alive() || !nothing_pending(pc) {
        return false;
    }
    let (cs, ss) = (f.cs as u16, f.ss as u16);
    if !crate::pv::retcheck::flat_ok(d.is_32bit(), f.rip, cs, ss)
        && crate::pv::retcheck::refused(&d.v().gdt, d.is_32bit(), f.rip, cs, ss).is_some()
    {
        return false;
    }
    f.rflags = (f.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000); // IF on, IOPL 0, no VM/NT
                                                                  // sysretq only where it is what iretq would do (see `leave`).
    if (f.cs, f.ss) == (FLAT_RING3_CS64 as u64, FLAT_RING3_SS64 as u64)
        && is_canonical(f.rip)
        && f.rcx == f.rip
        && f.r11 == f.rflags
        && f.rflags & 0x10000 == 0
    {
        pc.sysret.store(1, Ordering::Relaxed);
    }
    true
}

/// The trace line `hypercall::log_call` writes (`trace=hypercall`).
#[cold]
#[inline(never)]
fn traced(pc: &PerCpu, nr: u64, a: [u64; 5], ret: Ret, tail: &str) {
    let ids = pc.ids.load(Ordering::Relaxed);
    let (dom, vcpu) = (ids as u16, (ids >> 16) as u16);
    crate::trace!(
        crate::trace::TRACE_HYPERCALL,
        "d{dom}v{vcpu} hypercall {} ({nr}) ({:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {ret}{tail}",
        hypercall_name(nr),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4]
    );
}

/// The locked way out (`entry::before_guest_return`) of an entry already
/// handled.
#[cold]
#[inline(never)]
pub fn locked_way_out(f: &mut TrapFrame) {
    crate::pv::entry::locked_way_out(f);
}

/// `int $0x82` from a 32-bit guest kernel (ring 1) whose answer is a
/// constant (`-ENOSYS`, `XENVER_version`: the 32-bit table gives the same
/// ones), answered without the lock as [`hypercall()`] does; `false`:
/// nothing done, the locked path runs.
// Tour 02: the hypercalls that take no lock
#[inline(always)]
pub fn hypercall32(f: &mut TrapFrame) -> bool {
    let nr = f.rax as u32 as u64;
    let Kind::Constant(ret) = kind(nr, f.rbx as u32 as u64, f.rcx as u32 as u64) else {
        return false;
    };
    let pc = percpu::this();
    let Some(v) = pc.running() else {
        return false;
    };
    if pc.pv32 == 0 {
        return false;
    }
    // Ring 1 is its kernel (as `entry::on_domain` says), and a hypercall
    // is progress.
    v.set_kernel_mode(true);
    v.set_in_failsafe(false);
    // eax gets the result; the upper half of rax is not the guest's.
    f.rax = ret as u32 as u64;
    let flags = crate::trace::flags();
    if flags & crate::trace::RECENT != 0 {
        let ids = pc.ids.load(Ordering::Relaxed);
        crate::trace::record_call(nr, ids, f.rbx as u32 as u64, ret as u64);
    }
    if flags & crate::trace::TRACE_HYPERCALL != 0 {
        // A 32-bit guest's arguments: ebx, ecx, edx, esi, edi (as
        // `hypercall::log_call` logs them).
        let a = [f.rbx, f.rcx, f.rdx, f.rsi, f.rdi].map(|x| x as u32 as u64);
        traced(pc, nr, a, ret, " (32-bit)");
    }
    // retcheck's flat case for a 32-bit guest, as `before_guest_return`
    // asks it: its flat ring-1 or ring-3 selectors, eip below 4 GiB.
    use ringvisor_abi::x86_32 as c32;
    let flat = matches!(
        (f.cs as u16, f.ss as u16),
        (c32::FLAT_RING1_CS, c32::FLAT_RING1_SS) | (c32::FLAT_RING3_CS, c32::FLAT_RING3_SS)
    );
    if !(flat && f.cs >> 16 == 0 && f.ss >> 16 == 0 && f.rip >> 32 == 0 && nothing_pending(pc)) {
        locked_way_out(f);
        return true;
    }
    f.rflags = (f.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000); // IF on, IOPL 0, no VM/NT
    true
}

/// Nothing for the way out to settle (see the module comment): no work
/// bit (`selftest=iretfault` is one), no event upcall due.
#[inline(always)]
pub(crate) fn nothing_pending(pc: &PerCpu) -> bool {
    pc.work.load(Ordering::Relaxed) == 0 && !upcall_due(pc)
}

/// An event upcall due on the current vCPU: `evtchn_upcall_pending` set
/// and not masked.
#[inline(always)]
pub(crate) fn upcall_due(pc: &PerCpu) -> bool {
    // The current vCPU's vcpu_info, as published under the lock (its
    // slot in shared_info, or the frame it registered, which stays its own
    // while registered; the domain is alive while its guest runs). Two
    // bytes the guest may change too, but it is not running.
    let upcall = u16::from_le(
        crate::mm::view::published_vcpu_info(pc)
            .atomic_u16(core::mem::offset_of!(VcpuInfo, evtchn_upcall_pending))
            .load(Ordering::Relaxed),
    );
    // Pending (low byte) and not masked (high byte): the locked way out
    // bounces the upcall (or, with no event callback, does nothing: only
    // slower). That is 1..=0xff.
    (1..=0xff).contains(&upcall)
}

/// The way out of a lock-free `syscall` entry when nothing is pending
/// (see the module comment): `true` when the frame may go back as it is,
/// with `sysretq` where that resumes the guest exactly as `iretq` would;
/// `false`: the locked way out must run.
// Tour 02: the lean way out
#[inline(always)]
fn leave(pc: &PerCpu, f: &mut TrapFrame) -> bool {
    if !nothing_pending(pc) {
        return false;
    }
    // retcheck's flat case, as `before_guest_return` asks it.
    if (f.cs, f.ss) != (FLAT_RING3_CS64 as u64, FLAT_RING3_SS64 as u64) || !is_canonical(f.rip) {
        return false;
    }
    f.rflags = (f.rflags | 0x202) & !(0x3000 | 0x20000 | 0x4000); // IF on, IOPL 0, no VM/NT
                                                                  // sysretq loads rip from rcx and rflags from r11 (RF and VM cleared),
                                                                  // cs/ss from STAR (the flat ring-3 selectors above, with the CPU's
                                                                  // fixed flat attributes: the same segments the GDT's entries say).
                                                                  // Where rcx and r11 already hold rip and rflags, it returns exactly
                                                                  // as iretq would. rip is canonical (checked above): never sysret to a
                                                                  // non-canonical rip (XSA-7: Intel CPUs fault in ring 0 on the guest's
                                                                  // stack).
    if f.rcx == f.rip && f.r11 == f.rflags && f.rflags & 0x10000 == 0 {
        pc.sysret.store(1, Ordering::Relaxed);
    }
    true
}
