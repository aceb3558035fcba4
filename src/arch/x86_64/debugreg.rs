//! The hardware debug registers and the #DB handler (Xen:
//! `activate_debugregs`, `handle_DB` in traps.c, the #DB IST entry in
//! `x86_64/entry.S`).
//!
//! A PV vCPU's DR0-3 and DR7 are loaded into the CPU while it runs
//! (`activate`, on every switch in and on every change). The hypervisor
//! runs with them still loaded, as Xen does: `pv::debugreg` allows
//! breakpoints only on guest addresses, so a breakpoint can hit in ring 0
//! only where the hypervisor touches guest memory (a hypercall's buffer, a
//! bounce frame on the guest's stack: data breakpoints, traps, which are
//! restartable) or at the first instruction of an entry, where a #DB held
//! back by the guest's `mov ss`/`pop ss` shadow arrives after the
//! `syscall`/`int` that followed it (XSA-260, CVE-2018-8897): on the
//! guest's stack for `syscall`, which has not been switched yet.
//!
//! So #DB has its own IST stack (gdt.rs), and:
//! - a #DB taken in the hypervisor ([`in_hypervisor`]) is noted and
//!   ignored, as Xen does (a fault-type instruction breakpoint, which
//!   cannot happen with guest-only addresses, would loop: DR7 is cleared,
//!   Xen's "big hammer"). It touches nothing but its IST stack and
//!   atomics: it may have interrupted code holding any lock.
//! - a #DB from a guest ([`from_guest`]) leaves the IST stack at once: its
//!   frame is copied to the guest slot at the top of this CPU's stack and
//!   handled there like any entry, so a later #DB (say, on the bounce
//!   frame written for this one) never overwrites a frame still in use.

use super::smp::MAX_CPUS;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::idt::{fatal, TrapFrame};

/// DR6 when nothing is pending (bits 4-11 and 16-31 read as 1): XOR with
/// it gives DR6 "with positive polarity" (a 1 for each condition seen).
pub const DR6_DEFAULT: u64 = 0xffff_0ff0;
/// DR7 at reset (bit 10 reads as 1): a new vCPU's.
pub const DR7_DEFAULT: u64 = 0x400;
/// DR6 B0-B3: which breakpoint hit.
const DR6_HITS: u64 = 0xf;
/// DR7 L0-G3: a breakpoint is enabled.
const DR7_ENABLES: u64 = 0xff;
/// EFLAGS.TF.
const RFLAGS_TF: u64 = 1 << 8;

/// What each CPU's DR7 holds now (0: nothing armed), by CPU number, so a
/// switch between vCPUs with no breakpoints writes no debug register (each
/// write serialises the CPU). Per CPU, as the register is: one word for
/// all of them let a CPU that cleared its DR7 tell another, still armed
/// with a guest's breakpoints, that it need not clear its own.
static HW_DR7: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// #DBs taken in hypervisor context since the last report, the last one's
/// rip and DR6 (positive polarity): reported from a safe place
/// ([`take_hypervisor_hits`]), never from the handler. entry.S's
/// constant answers test `HV_HITS` too (the full way reports them).
pub(super) static HV_HITS: AtomicU64 = AtomicU64::new(0);
static HV_LAST_RIP: AtomicU64 = AtomicU64::new(0);
static HV_LAST_DBG: AtomicU64 = AtomicU64::new(0);
/// Set while [`in_hypervisor`] runs on this CPU's #DB IST stack (by CPU
/// number: two CPUs' #DBs at once are no nesting).
static IN_HANDLER: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// This CPU's number, for the two tables above. Every #DB this module
/// handles in hypervisor context comes with the hypervisor's GS: guests'
/// breakpoints are on guest addresses only, which the exit path touches
/// nowhere between its `swapgs` and the return.
fn me() -> usize {
    super::percpu::this().cpu as usize % MAX_CPUS
}

/// This CPU's entry of [`HW_DR7`].
fn hw_dr7() -> &'static AtomicU64 {
    &HW_DR7[me()]
}

/// Read DR6 and put it back to its default, returning what it held with
/// positive polarity (the CPU never clears DR6 by itself).
fn take_dr6() -> u64 {
    let dr6: u64;
    // SAFETY: reading and writing DR6 from ring 0 has no effect beyond
    // DR6 itself; DR7.GD is never set (pv::debugreg refuses it), so these
    // moves cannot raise #DB.
    unsafe {
        core::arch::asm!("mov {}, dr6", out(reg) dr6, options(nomem, nostack, preserves_flags));
        core::arch::asm!("mov dr6, {}", in(reg) DR6_DEFAULT, options(nomem, nostack, preserves_flags));
    }
    dr6 ^ DR6_DEFAULT
}

fn write_dr7(hw: &AtomicU64, v: u64) {
    // SAFETY: the value is 0 or a guest DR7 that pv::debugreg checked
    // (no GD, no I/O breakpoints, reserved bits as the CPU wants them),
    // and DR0-3 hold addresses checked to be the guest's.
    unsafe { core::arch::asm!("mov dr7, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
    hw.store(v, Ordering::Relaxed);
}

/// Load a vCPU's breakpoints (Xen: `activate_debugregs`): DR0-3, then DR7
/// when any is enabled; otherwise make sure nothing stays armed. `dr7`
/// must have passed `pv::debugreg::set`'s checks and `dr` its address
/// checks.
pub fn activate(dr: &[u64; 4], dr7: u64) {
    let hw = hw_dr7();
    // Disarm first (or only), so no moment has the new DR7 with the old
    // addresses.
    if hw.load(Ordering::Relaxed) != 0 {
        write_dr7(hw, 0);
    }
    if dr7 & DR7_ENABLES == 0 {
        return;
    }
    // SAFETY: writing DR0-3 changes nothing until DR7 enables them; the
    // addresses were checked to be the guest's (never the hypervisor's).
    unsafe {
        core::arch::asm!(
            "mov dr0, {}", "mov dr1, {}", "mov dr2, {}", "mov dr3, {}",
            in(reg) dr[0], in(reg) dr[1], in(reg) dr[2], in(reg) dr[3],
            options(nomem, nostack, preserves_flags)
        );
    }
    write_dr7(hw, dr7);
}

/// A #DB from a guest (ring 1 or 3), still on the #DB IST stack: record
/// DR6 in the frame's error code (the CPU pushes none for #DB; traps.rs
/// reads it there), copy the frame to the guest slot at the top of this
/// CPU's stack and carry on there as every other guest entry does.
pub fn from_guest(f: &TrapFrame) -> ! {
    let mut g = *f;
    g.error_code = take_dr6();
    let slot = super::percpu::guest_frame();
    // SAFETY: a guest was running, so this CPU's main stack holds nothing
    // but the (stale) guest slot at its top; this frame is on the IST
    // stack, elsewhere.
    unsafe { slot.write(g) };
    // SAFETY: switch to the main stack with the slot at RSP (16-byte
    // aligned: the slot ends at the stack top, 22 words below it), call
    // the common path with it, then leave through `ret_to_frame` exactly
    // as an entry through RSP0 would. Nothing on the IST stack is used
    // again.
    unsafe {
        core::arch::asm!(
            "mov rsp, {s}",
            "mov rdi, {s}",
            "call {h}",
            "jmp {ret}",
            s = in(reg) slot,
            h = sym super::idt::guest_entry,
            ret = sym super::idt::ret_to_frame,
            options(noreturn)
        )
    }
}

/// A #DB in hypervisor context (see the module comment): never delivered,
/// never fatal unless it nested on its own IST stack.
pub fn in_hypervisor(f: &mut TrapFrame) {
    let cpu = me();
    let hw = &HW_DR7[cpu];
    if IN_HANDLER[cpu].swap(true, Ordering::Relaxed) {
        // A #DB inside this handler has overwritten its frame: cannot
        // happen with guest-only breakpoints; stop cleanly rather than
        // return through a clobbered frame.
        write_dr7(hw, 0);
        fatal(f, "nested #DB on the #DB IST stack");
    }
    let dbg = take_dr6();
    // TF in ring 0: every gate and SFMASK clear it, so this is stale;
    // clear it rather than single-step the hypervisor (Xen: WARN, clear).
    if f.rflags & RFLAGS_TF != 0 {
        f.rflags &= !RFLAGS_TF;
    }
    // An instruction breakpoint is a fault: ignoring it would hit again
    // at the same rip for ever. Guest-only addresses make it impossible,
    // but if one hit anyway, disarm everything (Xen's big hammer).
    let dr7 = hw.load(Ordering::Relaxed);
    for bp in 0..4 {
        let enabled = dr7 & (3 << (bp * 2)) != 0;
        let execute = (dr7 >> (16 + bp * 4)) & 3 == 0;
        if dbg & (1 << bp) != 0 && enabled && execute {
            write_dr7(hw, 0);
            break;
        }
    }
    HV_LAST_RIP.store(f.rip, Ordering::Relaxed);
    HV_LAST_DBG.store(dbg, Ordering::Relaxed);
    HV_HITS.fetch_add(1, Ordering::Relaxed);
    IN_HANDLER[cpu].store(false, Ordering::Relaxed);
}

/// #DBs ignored in hypervisor context since the last call: (count, last
/// rip, last DR6 with positive polarity). One atomic load when none.
/// Whether [`take_hypervisor_hits`] has something to take.
#[inline(always)]
pub fn hypervisor_hits_pending() -> bool {
    HV_HITS.load(Ordering::Relaxed) != 0
}

pub fn take_hypervisor_hits() -> Option<(u64, u64, u64)> {
    if HV_HITS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let n = HV_HITS.swap(0, Ordering::Relaxed);
    Some((
        n,
        HV_LAST_RIP.load(Ordering::Relaxed),
        HV_LAST_DBG.load(Ordering::Relaxed) & (DR6_HITS | 0xe000 | 0x10000),
    ))
}

/// `selftest=dbtrap`: take a #DB in hypervisor context on purpose (a data
/// breakpoint on a hypervisor static, armed here, never by a guest) and
/// check the handler noted it and came back. QEMU's TCG delivers a guest's
/// mov-ss #DB before the `syscall`/`int` that follows (it ignores the
/// shadow), so without this the ring-0 path would never run under test.
/// Returns the hits seen (rip, DR6 bits), or None when no #DB came back.
pub fn selftest() -> Option<(u64, u64)> {
    static WATCHED: AtomicU64 = AtomicU64::new(0);
    let _ = take_hypervisor_hits(); // start from none
    let addr = WATCHED.as_ptr() as u64;
    // L0, write, 8 bytes (R/W0 = 01b, LEN0 = 10b).
    activate(&[addr, 0, 0, 0], 1 | 1 << 16 | 2 << 18 | 0x400);
    WATCHED.store(1, Ordering::SeqCst);
    activate(&[0; 4], 0);
    take_hypervisor_hits().map(|(_, rip, dbg)| (rip, dbg))
}
