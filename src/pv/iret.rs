//! `HYPERVISOR_iret` for both widths (Xen: `pv/iret.c`, `do_iret` and
//! `compat_iret`): the return from a bounce. The two frames differ in
//! more than layout (the 64-bit one carries rcx, r11 and the flags the
//! guest entered with, and may switch between kernel and user page
//! tables; the 32-bit one returns to ring 1 or 3 on the same tables and
//! checks the ring), so each has its own function here, as in Xen.

use alloc::format;

use ringvisor_abi::errno::*;
use ringvisor_abi::x86_64::*;
use ringvisor_abi::xen::*;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::Domain;
use crate::pv::hypercall::{err, Ret};
use crate::pv::traps;
use crate::sched;
use crate::trace::TRACE_HYPERCALL;
/// The `trace=hypercall` line of a `HYPERVISOR_iret` (result `r`), for
/// either width, on every path that makes one.
pub(crate) fn trace_iret(d: &Domain, f: &TrapFrame, r: Ret) {
    if d.is_32bit() {
        crate::trace!(
            TRACE_HYPERCALL,
            "d{}v{} hypercall iret (32-bit) -> eip {:#x} cs {:#x} ({r})",
            d.id,
            d.cur,
            f.rip,
            f.cs
        );
    } else {
        let to = if d.v().kernel_mode() {
            "kernel"
        } else {
            "user"
        };
        crate::trace!(
            TRACE_HYPERCALL,
            "d{}v{} hypercall iret -> {to} rip {:#x} cs {:#x} ({r})",
            d.id,
            d.cur,
            f.rip,
            f.cs
        );
    }
}

/// `iret` (Xen: pv/iret.c do_iret): return from a bounce. The stub pushed
/// rax, r11, rcx onto the guest stack below the frame the bounce built, so
/// the guest stack holds an `iret_context`.
// Tour 05, 08: the return from a bounce
pub(crate) fn iret(d: &mut Domain, f: &mut TrapFrame) -> Ret {
    let c = match iret_context(d, f.rsp) {
        Ok(c) => c,
        Err(e) => return iret_refused(d, f.rsp, e),
    };
    let r = iret_apply(d, &c);
    (f.rip, f.cs, f.rflags, f.rsp, f.ss) = (r.rip, r.cs, r.rflags, r.rsp, r.ss);
    (f.rcx, f.r11, f.rax) = (r.rcx, r.r11, r.rax);
    0
}

/// Why `iret` cannot go on: the frame at `rsp` cannot be read, or it
/// returns to user mode without user page tables.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IretRefused {
    Unreadable,
    NoUserTables,
}

/// `iret`'s checks: the `iret_context` at the guest's `rsp`, read, and a
/// return to user mode only with user page tables. Nothing changed yet.
#[inline(always)]
pub(crate) fn iret_context(d: &Domain, rsp: u64) -> Result<IretContext, IretRefused> {
    let c: IretContext = d
        .v()
        .space()
        .read(rsp)
        .map_err(|_| IretRefused::Unreadable)?;
    if c.cs & 3 == 3 && d.v().kernel_mode() && d.v().guest_table_user == 0 {
        return Err(IretRefused::NoUserTables);
    }
    Ok(c)
}

/// `iret` refused: the domain is crashed, saying why (Xen: domain_crash).
#[cold]
pub(crate) fn iret_refused(d: &mut Domain, rsp: u64, e: IretRefused) -> Ret {
    match e {
        IretRefused::Unreadable => {
            sched::crash(d, format!("iret: unreadable iret frame at {rsp:#x}"));
            err(EFAULT)
        }
        IretRefused::NoUserTables => {
            sched::crash(
                d,
                "iret to user mode without user page tables (new_user_baseptr)".into(),
            );
            err(EINVAL)
        }
    }
}

/// The registers an `iret` returns with.
pub(crate) struct IretRegs {
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub rcx: u64,
    pub r11: u64,
    pub rax: u64,
}

/// `iret` itself, on a context `iret_context` accepted: the vCPU's mode,
/// IOPL and event mask, and the registers to return with.
#[inline(always)]
pub(crate) fn iret_apply(d: &mut Domain, c: &IretContext) -> IretRegs {
    iret_apply_with(d, c, traps::set_upcall_mask)
}

/// [`iret_apply`], the event mask stored by `set_mask` (the quick way
/// stores it through the `vcpu_info` its CPU's block publishes, the same
/// byte `traps::set_upcall_mask` finds).
#[inline(always)]
pub(crate) fn iret_apply_with(
    d: &mut Domain,
    c: &IretContext,
    set_mask: impl FnOnce(&Domain, u8),
) -> IretRegs {
    // As Xen's do_iret: the selectors get RPL 3 (the guest kernel runs in
    // ring 3 too) and nothing else is checked here; a frame the CPU would
    // refuse (a bad selector, a non-canonical rip, rip above 4 GiB in
    // 32-bit code) gives the guest the fault (pv::retcheck).
    let cs = c.cs as u16 | 3;
    let to_user = c.cs & 3 == 3;
    if to_user && d.v().kernel_mode() {
        traps::toggle_guest_mode(d.v_mut());
    }
    if d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0 {
        d.v_mut().iopl = ((c.rflags >> 12) & 3) as u32;
    }
    let rip = c.rip;
    let rflags = (c.rflags & !(3 << 12 | 1 << 17)) | 1 << 9;
    let (rcx, r11) = if c.flags & VGCF_IN_SYSCALL == 0 {
        (c.rcx, c.r11)
    } else {
        // Xen returns with sysret here, which leaves rcx = rip and r11 =
        // rflags: the guest sees exactly that (not the stub's values).
        (rip, rflags)
    };
    // The guest's IF in the frame is its event mask.
    set_mask(d, (c.rflags & (1 << 9) == 0) as u8);
    IretRegs {
        rip,
        cs: cs as u64,
        rflags,
        rsp: c.rsp,
        ss: c.ss | 3,
        rcx,
        r11,
        rax: c.rax,
    }
}

/// The 32-bit `iret` (Xen: compat_iret): the stub pushed eax below the
/// frame the guest returns through, `{ eax, eip, cs, eflags, [esp, ss] }`
/// (esp and ss only when going back to ring 3).
// Tour 05: the 32-bit HYPERVISOR_iret (docs/frames/iret32.svg)
pub(crate) fn compat_iret(d: &mut Domain, f: &mut TrapFrame) -> Ret {
    let space = d.v().space();
    let Ok(c) = space.read::<[u32; 4]>(f.rsp) else {
        sched::crash(
            d,
            alloc::format!("iret: unreadable 32-bit iret frame at {:#x}", f.rsp),
        );
        return err(EFAULT);
    };
    let [eax, eip, cs, eflags] = c;
    let cs = cs as u16;
    let to_user = cs & 3 == 3;
    let (esp, ss) = if to_user {
        match space.read::<[u32; 2]>(f.rsp + 16) {
            Ok([esp, ss]) => (esp as u64, ss as u16),
            Err(_) => {
                sched::crash(
                    d,
                    alloc::format!("iret: unreadable 32-bit iret frame at {:#x}", f.rsp),
                );
                return err(EFAULT);
            }
        }
    } else {
        (f.rsp + 16, f.ss as u16)
    };
    // Xen's compat_iret crashes the domain for ring 0 and checks nothing
    // else: a selector the CPU refuses faults at the exit iretq and the
    // fault goes to the guest (here: pv::retcheck, before the iretq).
    // ringvisor runs no guest code in ring 2 (its bounces treat every
    // ring but 3 as the kernel's), so RPL 2 is refused as RPL 0 is.
    if cs & 3 == 0 || cs & 3 == 2 {
        sched::crash(
            d,
            alloc::format!(
                "iret to ring {}: cs {cs:#x} ss {ss:#x} eip {eip:#x}",
                cs & 3
            ),
        );
        return err(EINVAL);
    }
    d.v_mut().set_kernel_mode(!to_user);
    if d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0 {
        // As Xen's compat_iret: the frame's IOPL is the vCPU's virtual one.
        d.v_mut().iopl = (eflags >> 12) & 3;
    }
    f.rip = eip as u64;
    f.cs = cs as u64;
    f.rflags = (eflags as u64 & !(3 << 12 | 1 << 17)) | 1 << 9;
    f.rsp = esp;
    f.ss = ss as u64;
    traps::set_upcall_mask(d, (eflags & (1 << 9) == 0) as u8);
    f.rax = eax as u64;
    0
}
