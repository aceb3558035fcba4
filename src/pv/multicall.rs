//! `multicall`: several hypercalls in one entry (Xen: `common/multicall.c`,
//! `pv_do_multicall_call`), for both widths.
//!
//! Each entry `{ op, result, args[6] }` (64 bytes; 32 for a 32-bit guest,
//! every field 4 bytes) is dispatched as if the guest had made the call,
//! and its return value written to `result`. As Xen:
//!
//! - no nesting: a `multicall` entry answers -EINVAL;
//! - an `iret` entry ends the batch there (XSA-213: what follows would run
//!   in the context the iret returned to); the batch's return value is
//!   the iret's, and the frame is the one iret built;
//! - a batch is preemptible between entries: after `BATCH` entries the
//!   rest is a continuation, the guest re-executes its `syscall`/`int
//!   $0x82` with the list and count advanced (Xen's
//!   `hypercall_create_continuation`), so no batch holds the CPU long.
//!
//! The guest must rely only on the `result` fields (Xen's debug builds
//! scribble over the rest).

use ringvisor_abi::errno::*;
use ringvisor_abi::xen::{HYPERVISOR_IRET, HYPERVISOR_MULTICALL};

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::Domain;
use crate::pv::hypercall::{err, Ret};
use crate::pv::{compat, hypercall};

/// Entries done per entry into the hypervisor before a continuation.
const BATCH: u64 = 64;

/// Length of the instruction that entered: `syscall` and `int $0x82` are
/// both 2 bytes.
const ENTRY_INSN_LEN: u64 = 2;

/// What the batch leaves for the caller to put in the guest's rax.
pub enum Outcome {
    /// The batch's return value.
    Ret(Ret),
    /// The frame is final (an iret ran, or a continuation was set up).
    FrameDone,
}

/// A multicall with no lock held by the caller (`pv::entry::on_domain`):
/// each entry is made as the plain call would be, under the domain's lock
/// (`dispatch_domain`), or with it released for a call that may reach
/// another domain (`call_unlocked`); none takes `HV`. A send to another
/// domain is finished after each entry (`send_deferred`), before the next
/// one can record another.
// Tour 02: a batch of hypercalls in one entry
pub fn multicall_on(me: &crate::sync::DomainLock, f: &mut TrapFrame, list: u64, n: u64) -> Outcome {
    let compat = me.lock().is_32bit();
    let size: u64 = if compat { 32 } else { 64 };
    let n = n as u32 as u64; // nr_calls is a uint32_t in both widths
    for i in 0..n {
        let Some(at) = i.checked_mul(size).and_then(|o| list.checked_add(o)) else {
            return Outcome::Ret(err(EFAULT));
        };
        if i == BATCH {
            // Preempted between entries: the rest, as a fresh call.
            f.rip = f.rip.wrapping_sub(ENTRY_INSN_LEN);
            f.rax = HYPERVISOR_MULTICALL as u64;
            if compat {
                (f.rbx, f.rcx) = (at, n - i);
            } else {
                (f.rdi, f.rsi) = (at, n - i);
            }
            return Outcome::FrameDone;
        }
        let mut d = me.lock();
        let space = d.v().space();
        let (op, args): (u64, [u64; 5]) = if compat {
            match space.read::<ringvisor_abi::x86_32::MulticallEntry32>(at) {
                Ok(e) => (e.op as u64, core::array::from_fn(|k| e.args[k] as u64)),
                Err(_) => return Outcome::Ret(err(EFAULT)),
            }
        } else {
            match space.read::<ringvisor_abi::xen::MulticallEntry>(at) {
                Ok(e) => (e.op, core::array::from_fn(|k| e.args[k])),
                Err(_) => return Outcome::Ret(err(EFAULT)),
            }
        };
        let op = if compat { op as u32 as u64 } else { op };
        if op == HYPERVISOR_IRET as u64 {
            let _ = if compat {
                crate::pv::iret::compat_iret(&mut d, f)
            } else {
                crate::pv::iret::iret(&mut d, f)
            };
            // Xen's do_iret/compat_iret return the frame's rax, which is
            // the entry's result (best effort: the batch ends here anyway).
            let rax = if compat {
                f.rax as u32 as Ret
            } else {
                f.rax as Ret
            };
            let _ = write_result_to(&d, at, rax);
            return Outcome::FrameDone;
        }
        let r = if op == HYPERVISOR_MULTICALL as u64 {
            err(EINVAL)
        } else {
            // The entry as registers, for the domain's dispatcher (which
            // reads only the number and arguments of a call not iret).
            let mut e = *f;
            e.rax = op;
            if compat {
                (e.rbx, e.rcx, e.rdx, e.rsi, e.rdi) = (args[0], args[1], args[2], args[3], args[4]);
            } else {
                (e.rdi, e.rsi, e.rdx, e.r10, e.r8) = (args[0], args[1], args[2], args[3], args[4]);
            }
            let done = if compat {
                compat::dispatch_domain(&mut d, &mut e)
            } else {
                hypercall::dispatch_domain(&mut d, &mut e)
            };
            if done {
                e.rax as Ret
            } else {
                drop(d);
                let r = hypercall::call_unlocked(me, op, args);
                d = me.lock();
                let tail = if compat { " (32-bit)" } else { "" };
                hypercall::log_call(&d, op, args, r, tail);
                r
            }
        };
        if write_result_to(&d, at, r).is_err() {
            return Outcome::Ret(err(EFAULT));
        }
        let alive = d.is_alive();
        drop(d);
        crate::pv::event::send_deferred();
        if !alive {
            break;
        }
    }
    Outcome::Ret(0)
}

fn write_result_to(d: &Domain, at: u64, r: Ret) -> Result<(), ()> {
    let space = d.v().space();
    let w = if d.is_32bit() {
        space.write(at + 4, &(r as u32))
    } else {
        space.write(at + 8, &(r as u64))
    };
    w.map_err(|_| ())
}
