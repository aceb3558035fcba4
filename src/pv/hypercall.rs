//! The hypercall table (Xen: `pv/hypercall.c` and the `do_*` handlers).
//!
//! # A hypercall, step by step
//!
//! The guest kernel calls `hypercall_page + N * 32`; the stub there does
//! `push %rcx; push %r11; mov $N, %eax; syscall`. `syscall` lands in
//! entry.S (`syscall_entry`), which switches to this CPU's stack and saves
//! the guest registers as a `TrapFrame`; `pv::entry::syscall_on` sees the
//! vCPU is in guest kernel mode and `on_domain` calls `dispatch_domain`
//! here. Arguments are in
//! rdi, rsi, rdx, r10, r8 (r10 because `syscall` uses rcx); the result goes
//! back in rax, and the stub's `pop %r11; pop %rcx; ret` finishes. Every
//! guest pointer is read through `GuestSpace`, so a bad one is `-EFAULT`,
//! never a hypervisor fault. Unknown numbers return `-ENOSYS`.

use alloc::format;

use ringvisor_abi::callback::*;
use ringvisor_abi::errno::*;
use ringvisor_abi::sched::*;
use ringvisor_abi::version::*;
use ringvisor_abi::x86_64::*;
use ringvisor_abi::xen::*;
use ringvisor_abi::Pod;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::vcpu::{Callback, TrapEntry};
use crate::domain::{Domain, State};
use crate::mm::frametable::FrameTable;
use crate::mm::view::VcpuInfoArea;
use crate::pv::guest_mem::{in_hypervisor_range, is_canonical, GuestSpace};
use crate::pv::{callback, descriptor, event, memory, mm, traps};
use crate::sched;
use crate::trace::TRACE_HYPERCALL;

/// Hypercall results: 0 or a positive value, or `-errno`.
pub type Ret = i64;

pub const fn err(e: i32) -> Ret {
    -(e as i64)
}

/// The ringvisor version guests see through `xen_version`: the Xen ABI
/// level we implement (4.17), with our name as the extra version.
pub const XEN_MAJOR: u64 = 4;
pub const XEN_MINOR: u64 = 17;
const EXTRAVERSION: &str = "-ringvisor";
const CAPABILITIES: &str = "xen-3.0-x86_64 ";

/// The `trace=hypercall` line of a `HYPERVISOR_iret` (result `r`), for
/// either width, on every path that makes one.
pub(crate) fn trace_iret(d: &Domain, f: &TrapFrame, r: Ret) {
    if d.compat {
        crate::trace!(
            TRACE_HYPERCALL,
            "d{}v{} hypercall iret (32-bit) -> eip {:#x} cs {:#x} ({r})",
            d.id,
            d.cur,
            f.rip,
            f.cs
        );
    } else {
        let to = if d.v().kernel_mode { "kernel" } else { "user" };
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

/// Whether hypercall `nr` (first argument `a0`) may reach beyond the
/// calling domain: event channels in the old form (an `event_channel_op`
/// is decided by its op and arguments, `event::op_local`), platform and
/// MCA ops (every domain's wall clock), `PHYSDEVOP_map_pirq` (names a
/// domain), and a multicall (which may hold any of them). The domain
/// dispatchers leave them undone; they are then made with no
/// lock held ([`call_unlocked`], `multicall::multicall_on`). Every other
/// call concerns only its domain and runs under that
/// domain's lock alone ([`dispatch_domain`]).
pub(crate) fn is_global(nr: u64, a0: u64) -> bool {
    matches!(
        nr as u32,
        HYPERVISOR_EVENT_CHANNEL_OP_COMPAT
            | HYPERVISOR_PHYSDEV_OP_COMPAT
            | HYPERVISOR_PLATFORM_OP
            | HYPERVISOR_MCA
            | HYPERVISOR_MULTICALL
    ) || (nr as u32 == HYPERVISOR_PHYSDEV_OP
        && a0 == ringvisor_abi::physdev::PHYSDEVOP_MAP_PIRQ as u64)
}

/// A call the domain dispatchers left undone: an `event_channel_op` naming another domain, the
/// old-form event op, the old-form `physdev_op` (its command may be `map_pirq`), `platform_op`, `mca`, `PHYSDEVOP_map_pirq`, with no
/// lock held by the caller; each takes the
/// caller's lock, and another domain's after releasing it. The same
/// arguments and answers in both widths (as `compat::dispatch_domain`).
pub(crate) fn call_unlocked(me: &crate::sync::DomainLock, nr: u64, a: [u64; 5]) -> Ret {
    match nr as u32 {
        HYPERVISOR_EVENT_CHANNEL_OP => event::op_remote(me, a[0], a[1]),
        // The old form: `struct evtchn_op`, { u32 cmd, union } in one
        // buffer, the union at offset 4 in both widths (its members are
        // all 4-byte aligned), as Xen's do_event_channel_op_compat.
        HYPERVISOR_EVENT_CHANNEL_OP_COMPAT => {
            let op = {
                let d = me.lock();
                d.v()
                    .space()
                    .read::<ringvisor_abi::event_channel::EvtchnOp>(a[0])
            };
            let union = core::mem::offset_of!(ringvisor_abi::event_channel::EvtchnOp, u) as u64;
            match (op, a[0].checked_add(union)) {
                (Ok(op), Some(arg)) => event::op_remote(me, op.cmd as u64, arg),
                _ => err(EFAULT),
            }
        }
        // The old form: `struct physdev_op`, { u32 cmd, union }, read
        // whole (Xen copies it first: -EFAULT), the union at offset 8
        // (64-bit: it holds `unsigned long`s and a guest handle) or 4
        // (32-bit), then physdev_op on it, as Xen's do_physdev_op_compat
        // and compat_physdev_op_compat.
        HYPERVISOR_PHYSDEV_OP_COMPAT => {
            let op = {
                let d = me.lock();
                let space = d.v().space();
                if d.compat {
                    space.read::<[u32; 4]>(a[0]).map(|op| (op[0], 4))
                } else {
                    space.read::<[u64; 3]>(a[0]).map(|op| (op[0] as u32, 8))
                }
            };
            let Ok((cmd, union)) = op else {
                return err(EFAULT);
            };
            let Some(arg) = a[0].checked_add(union) else {
                return err(EFAULT);
            };
            if cmd == ringvisor_abi::physdev::PHYSDEVOP_MAP_PIRQ {
                map_pirq_on(me, arg)
            } else {
                let mut d = me.lock();
                let space = d.v().space();
                physdev_op(
                    &mut d,
                    crate::mm::frametable::frames(),
                    space,
                    cmd as u64,
                    arg,
                )
            }
        }
        HYPERVISOR_PLATFORM_OP => crate::pv::platform::platform_op_on(me, a[0]),
        HYPERVISOR_MCA => crate::pv::platform::mca_on(me, a[0]),
        HYPERVISOR_PHYSDEV_OP if a[0] == ringvisor_abi::physdev::PHYSDEVOP_MAP_PIRQ as u64 => {
            map_pirq_on(me, a[1])
        }
        _ => err(ENOSYS),
    }
}

/// A 64-bit guest kernel's hypercall that concerns only its own domain,
/// under that domain's lock (held by the caller). `false`: a global call ([`is_global`], or an
/// event channel op on another domain's ports), nothing done.
// Tour 02, 05: the hypercall table
pub(crate) fn dispatch_domain(d: &mut Domain, f: &mut TrapFrame) -> bool {
    let nr = f.rax;
    let a = [f.rdi, f.rsi, f.rdx, f.r10, f.r8];
    if is_global(nr, a[0]) {
        return false;
    }
    if nr == HYPERVISOR_IRET as u64 {
        let r = iret(d, f);
        trace_iret(d, f, r);
        return true;
    }
    let space = d.v().space();
    let ret = if nr as u32 == HYPERVISOR_EVENT_CHANNEL_OP {
        match event::op_local(d, space, a[0], a[1]) {
            Some(r) => r,
            // Another domain named: nothing done, the caller finishes it
            // with our lock released (`event::op_remote`).
            None => return false,
        }
    } else {
        dispatch_local(d, crate::mm::frametable::frames(), space, nr, a)
    };
    log_call(d, nr, a, ret, "");
    f.rax = ret as u64;
    true
}

/// Every hypercall's answer goes to the recent-calls ring (debug keys)
/// and, when tracing hypercalls, to the console; `tail` tells the 32-bit
/// ABI's apart.
pub(crate) fn log_call(d: &Domain, nr: u64, a: [u64; 5], ret: Ret, tail: &str) {
    crate::trace::record(crate::trace::Record {
        what: crate::trace::What::Hypercall(nr),
        dom: d.id,
        vcpu: d.cur as u16,
        a: a[0],
        b: ret as u64,
    });
    crate::trace!(
        TRACE_HYPERCALL,
        "d{}v{} hypercall {} ({nr}) ({:#x}, {:#x}, {:#x}, {:#x}, {:#x}) = {ret}{tail}",
        d.id,
        d.cur,
        hypercall_name(nr),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4]
    );
}

/// The calls that concern only the calling domain.
fn dispatch_local(d: &mut Domain, ft: &FrameTable, space: GuestSpace, nr: u64, a: [u64; 5]) -> Ret {
    match nr as u32 {
        HYPERVISOR_SET_TRAP_TABLE => callback::set_trap_table(d, space, a[0]),
        HYPERVISOR_MMU_UPDATE => mm::mmu_update(d, ft, space, a[0], a[1], a[2], a[3]),
        HYPERVISOR_STACK_SWITCH => callback::stack_switch(d, a[0], a[1]),
        HYPERVISOR_SET_CALLBACKS => callback::set_callbacks(d, [a[0], a[1], a[2], 0]),
        HYPERVISOR_FPU_TASKSWITCH => fpu_taskswitch(d, a[0]),
        HYPERVISOR_SCHED_OP_COMPAT => sched_op_compat(d, a[0], a[1]),
        HYPERVISOR_UPDATE_VA_MAPPING => mm::update_va_mapping(d, ft, a[0], a[1], a[2]),
        HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => {
            mm::update_va_mapping_otherdomain(d, ft, a[0], a[1], a[2], a[3])
        }
        HYPERVISOR_NMI_OP => callback::nmi_op(d, space, a[0], a[1]),
        HYPERVISOR_XEN_VERSION => xen_version(d, space, a[0], a[1]),
        HYPERVISOR_CONSOLE_IO => console_io(d, space, a[0], a[1], a[2]),
        HYPERVISOR_VM_ASSIST => vm_assist(d, a[0], a[1]),
        HYPERVISOR_VCPU_OP => vcpu_op(d, ft, space, a[0], a[1], a[2]),
        HYPERVISOR_SET_SEGMENT_BASE => set_segment_base(d, a[0], a[1]),
        HYPERVISOR_MMUEXT_OP => mm::mmuext_op(d, ft, space, a[0], a[1], a[2], a[3]),
        HYPERVISOR_SCHED_OP => sched_op(d, space, a[0], a[1]),
        HYPERVISOR_CALLBACK_OP => callback::callback_op(d, space, a[0], a[1]),
        HYPERVISOR_PHYSDEV_OP => physdev_op(d, ft, space, a[0], a[1]),
        HYPERVISOR_SET_GDT => descriptor::set_gdt(d, ft, space, a[0], a[1]),
        HYPERVISOR_UPDATE_DESCRIPTOR => descriptor::update_descriptor(d, ft, a[0], a[1]),
        HYPERVISOR_MEMORY_OP => memory::memory_op(d, ft, space, a[0], a[1]),
        HYPERVISOR_SET_TIMER_OP => set_timer_op(d, a[0]),
        HYPERVISOR_SET_DEBUGREG => crate::pv::debugreg::set(d, a[0], a[1]),
        HYPERVISOR_GRANT_TABLE_OP => crate::pv::grant::op(d, ft, space, a[0], a[1], a[2]),
        HYPERVISOR_GET_DEBUGREG => crate::pv::debugreg::get(d, a[0]),
        HYPERVISOR_XENPMU_OP => xenpmu_op(),
        _ => err(ENOSYS),
    }
}

/// `PHYSDEVOP_map_pirq` (Xen's physdev_map_pirq), which names a domain:
/// one that does not exist `-ESRCH`; only the control domain may map
/// (`-EPERM`, Xen's XSM_DM_PRIV); then a GSI `-EINVAL` (no GSI is routed
/// to guests: allocate_and_map_gsi_pirq's "invalid gsi"), an MSI
/// `-ENODEV` (no PCI device is known), another type `-EINVAL`.
///
/// Called with no lock held: the argument under the caller's lock, then
/// the named domain's, to see it is alive.
fn map_pirq_on(me: &crate::sync::DomainLock, arg: u64) -> Ret {
    // { domid_t domid; pad; int type; int index; int pirq; int bus;
    // int devfn; int entry_nr; u64 table_base } (36 bytes for 32-bit)
    let (privileged, read) = {
        let d = me.lock();
        let mut b = [0u8; 40];
        let n = if d.compat { 36 } else { 40 };
        (
            d.privileged,
            d.v().space().read_bytes(arg, &mut b[..n]).map(|_| b),
        )
    };
    let Ok(b) = read else {
        return err(EFAULT);
    };
    let (domid, type_) = (
        u16::from_le_bytes([b[0], b[1]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    );
    // Xen looks the domain up first (our own lock is released: it may be
    // this domain, named by its id).
    let alive = |id| crate::sched::domain_lock(id).is_some_and(|l| l.lock().is_alive());
    if domid != DOMID_SELF && !alive(domid) {
        return err(ESRCH);
    }
    if !privileged {
        return err(EPERM);
    }
    const MAP_PIRQ_TYPE_MSI: u32 = 0;
    const MAP_PIRQ_TYPE_MSI_SEG: u32 = 2;
    const MAP_PIRQ_TYPE_MULTI_MSI: u32 = 3;
    match type_ {
        MAP_PIRQ_TYPE_MSI | MAP_PIRQ_TYPE_MSI_SEG | MAP_PIRQ_TYPE_MULTI_MSI => err(ENODEV),
        _ => err(EINVAL),
    }
}

/// `xenpmu_op`: Xen 4.17 boots with its virtual PMU off (`vpmu` not on
/// its command line): every command is `-EOPNOTSUPP`, before anything
/// is read. ringvisor offers no virtual PMU either.
pub(crate) fn xenpmu_op() -> Ret {
    err(EOPNOTSUPP)
}

/// `set_timer_op(timeout)`: a single-shot timer at absolute system time
/// `timeout` (ns); 0 cancels it; a time already past fires at once.
pub(crate) fn set_timer_op(d: &mut Domain, timeout: u64) -> Ret {
    d.v_mut().singleshot = (timeout != 0).then_some(timeout);
    sched::timers_changed();
    0
}

/// An address a 64-bit guest may register as code: canonical, not ours.
fn guest_code_address(a: u64) -> bool {
    callback::code_address_ok(crate::pv::width::Width::W64, a)
}

pub(crate) fn callback(address: u64, flags: u16) -> Option<Callback> {
    callback::handler_ok(crate::pv::width::Width::W64, address).then_some(Callback {
        address,
        cs: 0,
        mask_events: flags & CALLBACKF_MASK_EVENTS != 0,
    })
}

pub(crate) fn fpu_taskswitch(d: &mut Domain, set: u64) -> Ret {
    let ts = set != 0;
    d.v_mut().cr0_ts = ts;
    crate::arch::x86_64::cr::set_cr0_ts(ts);
    0
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
    if c.cs & 3 == 3 && d.v().kernel_mode && d.v().guest_table_user == 0 {
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
    if to_user && d.v().kernel_mode {
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

fn set_segment_base(d: &mut Domain, which: u64, value: u64) -> Ret {
    let v = d.v_mut();
    match which as u32 {
        SEGBASE_FS => {
            if !is_canonical(value) {
                return err(EINVAL);
            }
            v.fs_base = value;
            crate::arch::x86_64::cr::set_fs_base(value);
        }
        SEGBASE_GS_USER | SEGBASE_GS_KERNEL => {
            if !is_canonical(value) {
                return err(EINVAL);
            }
            sched::save_guest_gs(v);
            if which as u32 == SEGBASE_GS_USER {
                v.gs_base_user = value;
            } else {
                v.gs_base_kernel = value;
            }
            sched::load_guest_gs(v);
        }
        SEGBASE_GS_USER_SEL => {
            // Null, flat data, or a data segment of its own GDT; the base
            // comes from the descriptor.
            let sel = value as u16 | if value as u16 & !3 == 0 { 0 } else { 3 };
            let Some(base) = descriptor::data_selector_base(v, sel) else {
                return err(EINVAL);
            };
            sched::save_guest_gs(v);
            v.gs_sel_user = sel;
            v.gs_base_user = base;
            // Xen loads it into %gs at once.
            sched::load_gs_selector(sel);
            sched::load_guest_gs(v);
        }
        _ => return err(EINVAL),
    }
    0
}

pub(crate) fn vm_assist(d: &mut Domain, cmd: u64, ty: u64) -> Ret {
    const VALID: u64 = 1 << VMASST_TYPE_4GB_SEGMENTS
        | 1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY
        | 1 << VMASST_TYPE_WRITABLE_PAGETABLES
        | 1 << VMASST_TYPE_PAE_EXTENDED_CR3
        | 1 << VMASST_TYPE_ARCHITECTURAL_IOPL
        | 1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG
        | 1 << VMASST_TYPE_M2P_STRICT;
    if ty >= 64 || VALID & (1 << ty) == 0 {
        return err(EINVAL);
    }
    match cmd as u32 {
        VMASST_CMD_ENABLE => d.vm_assist |= 1 << ty,
        VMASST_CMD_DISABLE => d.vm_assist &= !(1 << ty),
        _ => return err(ENOSYS),
    }
    d.iopl_assist.store(
        d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0,
        core::sync::atomic::Ordering::Relaxed,
    );
    0
}

fn write_str(space: GuestSpace, va: u64, s: &str, cap: usize) -> Ret {
    let mut buf = [0u8; 1024];
    let n = s.len().min(cap - 1);
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    match space.write_bytes(va, &buf[..cap]) {
        Ok(()) => 0,
        Err(_) => err(EFAULT),
    }
}

pub(crate) fn xen_version(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    match cmd as u32 {
        XENVER_VERSION => (XEN_MAJOR << 16 | XEN_MINOR) as Ret,
        XENVER_EXTRAVERSION => write_str(space, arg, EXTRAVERSION, XEN_EXTRAVERSION_LEN),
        XENVER_CAPABILITIES => write_str(space, arg, CAPABILITIES, XEN_CAPABILITIES_INFO_LEN),
        XENVER_CHANGESET => write_str(space, arg, "ringvisor", XEN_CHANGESET_INFO_LEN),
        XENVER_COMPILE_INFO => {
            let mut ci = XenCompileInfo::zeroed();
            let put = |dst: &mut [u8], s: &str| dst[..s.len()].copy_from_slice(s.as_bytes());
            put(&mut ci.compiler, "rustc");
            put(&mut ci.compile_by, "ringvisor");
            put(&mut ci.compile_domain, "ringvisor");
            put(&mut ci.compile_date, "unknown");
            if space.write(arg, &ci).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_PLATFORM_PARAMETERS => {
            let p = XenPlatformParameters {
                virt_start: HYPERVISOR_VIRT_START,
            };
            if space.write(arg, &p).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_GET_FEATURES => {
            let Ok(mut fi) = space.read::<XenFeatureInfo>(arg) else {
                return err(EFAULT);
            };
            fi.submap = match fi.submap_idx {
                // Xen 4.17's set for a PV domain (common/kernel.c); the
                // grant map's avail bits are honoured (pv::grant), and
                // vnode_supported only says get_vnumainfo may be asked.
                0 => {
                    1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED
                        | 1 << XENFEAT_PAE_PGDIR_ABOVE_4GB
                        | 1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD
                        | 1 << XENFEAT_HIGHMEM_ASSIST
                        | 1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS
                        | 1 << XENFEAT_DIRECT_MAPPED
                        | if d.privileged { 1 << XENFEAT_DOM0 } else { 0 }
                }
                _ => 0,
            };
            if space.write(arg, &fi).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_PAGESIZE => 4096,
        XENVER_GUEST_HANDLE => {
            if space.write_bytes(arg, &[0u8; 16]).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_COMMANDLINE => {
            if !d.privileged {
                return err(EPERM);
            }
            write_str(space, arg, "", 1024)
        }
        _ => err(ENOSYS),
    }
}

const CONSOLE_IO_MAX: u64 = 64 << 10;

/// `console_io`: the guest's lines go to the serial console as `(dN) `.
pub(crate) fn console_io(d: &mut Domain, space: GuestSpace, cmd: u64, count: u64, buf: u64) -> Ret {
    match cmd as u32 {
        CONSOLEIO_WRITE => {
            // One call writes at most 64 KiB (the rest is dropped), and a
            // domU at most its budget: a guest cannot hold the CPU (and a
            // slow serial line) for long with a huge count.
            if count == 0 {
                return console_write_nothing(d);
            }
            console_refill(d);
            if console_write(d, space, count.min(CONSOLE_IO_MAX), buf).is_err() {
                console_settled(d);
                return err(EFAULT);
            }
            console_show_partial(d);
            0
        }
        // What was typed for this domain (console_in.rs): up to `count`
        // bytes, the number read returned, as Xen's do_console_io.
        CONSOLEIO_READ => {
            let n = (count as usize).min(d.console_in.len()).min(1024);
            let bytes: alloc::vec::Vec<u8> = d.console_in.iter().take(n).copied().collect();
            if space.write_bytes(buf, &bytes).is_err() {
                return err(EFAULT);
            }
            d.console_in.drain(..n);
            n as Ret
        }
        _ => err(ENOSYS),
    }
}

/// `console_io(CONSOLEIO_write)` of 0 bytes (the buffer is never read):
/// what a write does besides its bytes.
#[inline]
pub(crate) fn console_write_nothing(d: &mut Domain) -> Ret {
    console_refill(d);
    console_show_partial(d);
    0
}

/// `count` bytes at `buf` to the domain's console, a chunk at a time (out
/// of line: a write of 0 bytes needs no chunk).
#[inline(never)]
fn console_write(d: &mut Domain, space: GuestSpace, count: u64, buf: u64) -> Result<(), ()> {
    let mut chunk = [0u8; 256];
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(chunk.len() as u64) as usize;
        space
            .read_bytes(buf.wrapping_add(done), &mut chunk[..n])
            .map_err(|_| ())?;
        for &b in &chunk[..n] {
            console_byte(d, b);
        }
        done += n as u64;
    }
    Ok(())
}

/// A domU's console output is rate-limited, as Xen limits guest console
/// output: a burst of this many bytes, then `CONSOLE_RATE` a second. The
/// initial domain (the console's owner) is not limited.
pub const CONSOLE_BURST: u64 = 64 << 10;
const CONSOLE_RATE: u64 = 32 << 10;

/// Top up a domU's console budget for the time since the last top-up, and
/// say once what was dropped while it was empty.
#[inline]
pub fn console_refill(d: &mut Domain) {
    if d.id != 0 {
        console_refill_domu(d);
    }
}

#[inline(never)]
fn console_refill_domu(d: &mut Domain) {
    let now = crate::arch::x86_64::time::now_ns();
    let earned = (now.saturating_sub(d.console_refilled) as u128 * CONSOLE_RATE as u128
        / 1_000_000_000) as u64;
    if earned == 0 {
        return;
    }
    d.console_refilled = now;
    d.console_budget = d.console_budget.saturating_add(earned).min(CONSOLE_BURST);
    if d.console_dropped != 0 {
        crate::warn!(
            "d{}: {} bytes of console output dropped (rate limit)",
            d.id,
            d.console_dropped
        );
        d.console_dropped = 0;
    }
}

/// One byte of guest console output (console_io or the console ring).
pub fn console_byte(d: &mut Domain, b: u8) {
    if d.id != 0 {
        if d.console_budget == 0 {
            d.console_dropped += 1;
            return;
        }
        d.console_budget -= 1;
    }
    match b {
        b'\n' => flush_console_line(d),
        0x20..=0x7e => d.console_line.push(b as char),
        // The domain with the serial input is a terminal's (a shell): its
        // line editing (carriage return, backspace, escape sequences, bell,
        // tab) reaches the terminal.
        b'\r' | 0x08 | 0x1b | 0x07 | b'\t' if crate::console_in::has_input(d.id) => {
            d.console_line.push(b as char)
        }
        b'\r' => {}
        // Keep control characters off the hypervisor's console.
        _ => d.console_line.push('?'),
    }
    if d.console_line.len() >= 200 {
        flush_console_line(d);
    }
}

pub fn flush_console_line(d: &mut Domain) {
    crate::console::guest_line(d.id, &d.console_line);
    d.console_line.clear();
    console_settled(d);
}

/// After a console write: the domain with the serial input shows its
/// unfinished line (a prompt, the echo of a key) at once rather than at
/// its newline, as Xen's console shows dom0's output as it comes.
pub fn console_show_partial(d: &mut Domain) {
    if !d.console_line.is_empty() && crate::console_in::has_input(d.id) {
        crate::console::guest_partial(d.id, &d.console_line);
        d.console_line.clear();
    }
    console_settled(d);
}

/// The end of every change to the console line (each ends in
/// `console_show_partial`, `flush_console_line` or here): say whether a
/// write of 0 bytes would now do nothing at all (`Domain::console_quiet`):
/// no budget to top up (the initial domain) and no partial line to show.
/// In between, under the lock, the flag still says what was true before
/// the change began: a reader without the lock sees one or the other.
pub fn console_settled(d: &mut Domain) {
    d.console_quiet.store(
        d.id == 0 && d.console_line.is_empty(),
        core::sync::atomic::Ordering::Relaxed,
    );
}

fn shutdown(d: &mut Domain, reason: u32) -> Ret {
    if reason > SHUTDOWN_MAX {
        return err(EINVAL);
    }
    event::drain_console(d);
    if !d.console_line.is_empty() {
        flush_console_line(d);
    }
    crate::info!("d{}: shutdown: {}", d.id, shutdown_reason_name(reason));
    d.state = State::Shutdown(reason);
    crate::sched::domain_ended();
    // Its vCPUs on other CPUs stop there at once.
    crate::sched::kick_all(d);
    0
}

/// `SCHEDOP_watchdog` (Xen's domain_watchdog): id 0 takes a free timer
/// and answers its id (1 or 2; -ENOSPC when both are taken), id N re-arms
/// that one, a timeout of 0 frees it. When one fires the domain is shut
/// down with SHUTDOWN_watchdog.
fn watchdog(d: &mut Domain, id: u32, timeout_s: u32) -> Ret {
    let deadline =
        crate::arch::x86_64::time::now_ns().saturating_add(timeout_s as u64 * 1_000_000_000);
    let n = d.watchdogs.len() as u32;
    if id > n {
        return err(EINVAL);
    }
    sched::timers_changed();
    if id == 0 {
        return match d.watchdogs.iter().position(Option::is_none) {
            Some(i) => {
                d.watchdogs[i] = Some(deadline);
                i as Ret + 1
            }
            None => err(ENOSPC),
        };
    }
    let slot = &mut d.watchdogs[id as usize - 1];
    if slot.is_none() {
        return err(EINVAL);
    }
    *slot = (timeout_s != 0).then_some(deadline);
    0
}

/// A watchdog of `d` fired: the domain is shut down, as Xen does.
pub fn watchdog_fired(d: &mut Domain) {
    crate::warn!("d{}: watchdog timer fired", d.id);
    shutdown(d, SHUTDOWN_WATCHDOG);
}

pub(crate) fn sched_op(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    match cmd as u32 {
        SCHEDOP_WATCHDOG => match space.read::<SchedWatchdog>(arg) {
            Ok(w) => watchdog(d, w.id, w.timeout),
            Err(_) => err(EFAULT),
        },
        SCHEDOP_YIELD => {
            sched::request_resched();
            0
        }
        SCHEDOP_BLOCK => block(d),
        SCHEDOP_POLL => match space.read::<SchedPoll>(arg) {
            Ok(p) => poll(d, space, p.ports, p.nr_ports, p.timeout),
            Err(_) => err(EFAULT),
        },
        SCHEDOP_SHUTDOWN => match space.read::<SchedShutdown>(arg) {
            Ok(s) => shutdown(d, s.reason),
            Err(_) => err(EFAULT),
        },
        SCHEDOP_SHUTDOWN_CODE => match space.read::<SchedShutdown>(arg) {
            Ok(s) if s.reason <= SHUTDOWN_MAX => 0,
            Ok(_) => err(EINVAL),
            Err(_) => err(EFAULT),
        },
        _ => err(ENOSYS),
    }
}

/// The old `sched_op(cmd, reason)` with the reason by value.
pub(crate) fn sched_op_compat(d: &mut Domain, cmd: u64, arg: u64) -> Ret {
    match cmd as u32 {
        SCHEDOP_YIELD => {
            sched::request_resched();
            0
        }
        SCHEDOP_BLOCK => block(d),
        SCHEDOP_SHUTDOWN => shutdown(d, arg as u32),
        _ => err(ENOSYS),
    }
}

/// `VCPUOP_register_vcpu_info`: move a vCPU's vcpu_info into a page of the
/// guest's (Xen: map_vcpu_info). Once only; the page must be the guest's,
/// ordinary memory, and the 64 bytes must fit in it. The current contents
/// are copied over. The hypervisor keeps a reference, so the page cannot
/// be given back while the domain lives.
fn register_vcpu_info(d: &mut Domain, ft: &FrameTable, vi: usize, mfn: u64, offset: u64) -> Ret {
    let size = core::mem::size_of::<VcpuInfo>() as u64;
    if d.vcpus[vi].vcpu_info_maddr.is_some() {
        return err(EINVAL);
    }
    // As Xen's map_vcpu_info: the caller's own, or a vCPU that is down
    // (one running on another CPU reads its `vcpu_info` through that
    // CPU's block, which only that CPU updates).
    if vi != d.cur && d.vcpus[vi].up {
        return err(EINVAL);
    }
    if offset > 4096 - size || !offset.is_multiple_of(8) {
        return err(EINVAL);
    }
    // Held as a writable mapping would be (as Xen's map_vcpu_info): the
    // hypervisor writes it, so it must never become a page table or be
    // given back. Checked and taken in one step on the frame's record.
    let held = ft.with(mfn, |f| {
        if f.owner != d.id || f.kind != crate::mm::frametable::Kind::Normal {
            return false;
        }
        // At their limit, refused (never wrapped: see pv::mm).
        let (Some(m), Some(w)) = (f.mapped.checked_add(1), f.writable.checked_add(1)) else {
            return false;
        };
        (f.mapped, f.writable) = (m, w);
        true
    });
    if held != Some(true) {
        return err(EINVAL);
    }
    let old = traps::vcpu_info(d, vi);
    let new = VcpuInfoArea::domain_shared(mfn << 12 | offset);
    // Different frames, or the old one is in shared_info (not Normal).
    old.copy_to(&new);
    d.vcpus[vi].vcpu_info_maddr = Some(mfn << 12 | offset);
    if vi == d.cur {
        // The caller's own: where the lock-free way out looks for its
        // pending upcall now (`pv::entry::publish_current`).
        crate::mm::view::publish_vcpu_info(crate::arch::x86_64::percpu::this(), new);
    }
    0
}

/// `VCPUOP_initialise`: give a down vCPU its first context, every part of
/// it checked as the matching hypercall would check it.
fn initialise_vcpu(d: &mut Domain, ft: &FrameTable, vi: usize, c: &VcpuGuestContext) -> Ret {
    // As Xen's arch_set_info_guest: selectors get the kernel's RPL (a
    // selector the CPU refuses is the guest's fault when the vCPU first
    // returns: pv::retcheck), addresses must be canonical.
    let r = &c.user_regs;
    if !is_canonical(r.rip) {
        return err(EINVAL);
    }
    for a in [c.fs_base, c.gs_base_kernel, c.gs_base_user] {
        if !is_canonical(a) {
            return err(EINVAL);
        }
    }
    let cbs = [
        callback(c.event_callback_eip, 0),
        callback(
            c.failsafe_callback_eip,
            if c.flags & VGCF_FAILSAFE_DISABLES_EVENTS != 0 {
                CALLBACKF_MASK_EVENTS
            } else {
                0
            },
        ),
        callback(
            c.syscall_callback_eip,
            if c.flags & VGCF_SYSCALL_DISABLES_EVENTS != 0 {
                CALLBACKF_MASK_EVENTS
            } else {
                0
            },
        ),
    ];
    let [Some(event), Some(failsafe), Some(syscall)] = cbs else {
        return err(EINVAL);
    };
    let mut traps = [TrapEntry::default(); 256];
    for t in c.trap_ctxt.iter().filter(|t| t.address != 0) {
        if !guest_code_address(t.address) {
            return err(EINVAL);
        }
        traps[t.vector as usize] = TrapEntry {
            flags: t.flags,
            cs: t.cs | 3,
            address: t.address,
        };
    }
    if c.gdt_ents > 0 {
        let frames = &c.gdt_frames[..(c.gdt_ents.div_ceil(512) as usize).min(16)];
        let rc = descriptor::install_gdt(d, ft, vi, frames, c.gdt_ents);
        if rc != 0 {
            return rc;
        }
    }
    let kernel = xen_cr3_to_pfn(c.ctrlreg[3]);
    if mm::get_root(d, ft, kernel).is_err() {
        return err(EINVAL);
    }
    let user = xen_cr3_to_pfn(c.ctrlreg[1]);
    if user != 0 && mm::get_root(d, ft, user).is_err() {
        return err(EINVAL);
    }
    let v = &mut d.vcpus[vi];
    v.guest_table = kernel;
    v.guest_table_user = user;
    v.kernel_mode = c.flags & VGCF_IN_KERNEL != 0 || user == 0;
    v.regs = TrapFrame {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rbp: r.rbp,
        rdi: r.rdi,
        rsi: r.rsi,
        rdx: r.rdx,
        rcx: r.rcx,
        rbx: r.rbx,
        rax: r.rax,
        vector: 0,
        error_code: 0,
        rip: r.rip,
        cs: r.cs as u64 | 3,
        rflags: (r.rflags & !(3 << 12)) | 0x202,
        rsp: r.rsp,
        ss: r.ss as u64 | 3,
    };
    v.trap_table = traps;
    v.event = event;
    v.failsafe = failsafe;
    v.syscall = syscall;
    v.kernel_ss = c.kernel_ss | 3;
    v.kernel_sp = c.kernel_sp;
    v.fs_base = c.fs_base;
    v.gs_base_kernel = c.gs_base_kernel;
    v.gs_base_user = c.gs_base_user;
    if c.flags & VGCF_I387_VALID != 0 {
        v.fpu = crate::domain::vcpu::FpuState::from_guest(&c.fpu_ctxt);
    }
    v.initialised = true;
    0
}

/// `sched_op(block)`: enable events and sleep until one is pending (Xen:
/// do_block). Nothing to wait for if one already is.
// Tour 07: sched_op(block): unmask and sleep
fn block(d: &mut Domain) -> Ret {
    traps::set_upcall_mask(d, 0);
    if !event::upcall_ready(d) {
        d.v_mut().blocked = true;
        sched::request_resched();
    }
    0
}

/// `sched_op(poll)`: sleep until one of the ports is pending or the
/// timeout (absolute system time, 0: none) passes. Events stay masked.
/// `ports`, `nr_ports` and `timeout` come from the guest's `sched_poll`,
/// whose layout differs with its width (`compat` translates).
pub(crate) fn poll(
    d: &mut Domain,
    space: GuestSpace,
    ports_va: u64,
    nr_ports: u32,
    timeout: u64,
) -> Ret {
    if nr_ports > 128 {
        return err(EINVAL);
    }
    let mut ports = alloc::vec::Vec::with_capacity(nr_ports as usize);
    for i in 0..nr_ports as u64 {
        let Some(Ok(port)) = ports_va.checked_add(i * 4).map(|at| space.read::<u32>(at)) else {
            return err(EFAULT);
        };
        if port as usize >= d.ports.len() {
            return err(EINVAL);
        }
        if event::is_pending(d, port) {
            return 0;
        }
        ports.push(port);
    }
    let v = d.v_mut();
    v.poll = ports;
    v.poll_deadline = (timeout != 0).then_some(timeout);
    v.blocked = true;
    sched::timers_changed();
    sched::request_resched();
    0
}

pub(crate) fn vcpu_op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    cmd: u64,
    vcpu: u64,
    arg: u64,
) -> Ret {
    use ringvisor_abi::vcpu::*;
    if vcpu as usize >= d.vcpus.len() {
        return err(ENOENT);
    }
    let vi = vcpu as usize;
    match cmd as u32 {
        VCPUOP_IS_UP => d.vcpus[vi].up as Ret,
        VCPUOP_INITIALISE => {
            if d.vcpus[vi].initialised {
                return err(EEXIST);
            }
            let Ok(c) = space.read::<VcpuGuestContext>(arg) else {
                return err(EFAULT);
            };
            initialise_vcpu(d, ft, vi, &c)
        }
        VCPUOP_UP => {
            if !d.vcpus[vi].initialised {
                return err(EINVAL);
            }
            d.vcpus[vi].up = true;
            if d.vcpus[vi].running_on.is_none() {
                // An idle CPU takes it (`kick`).
                sched::set_runstate(
                    d,
                    vi,
                    RUNSTATE_RUNNABLE,
                    crate::arch::x86_64::time::now_ns(),
                );
            }
            sched::kick(d, vi);
            0
        }
        VCPUOP_DOWN => {
            d.vcpus[vi].up = false;
            if vi == d.cur {
                sched::request_resched();
            } else {
                // Offline from now on (a vCPU on another CPU stops there
                // when its CPU takes the kick, as Xen's
                // `vcpu_sleep_nosync`).
                sched::set_runstate(d, vi, RUNSTATE_OFFLINE, crate::arch::x86_64::time::now_ns());
                sched::kick(d, vi);
            }
            0
        }
        // A 32-bit guest's in its 44-byte layout (Xen: compat_vcpu_op's
        // xlat_vcpu_runstate_info).
        // As Xen's vcpu_runstate_get, the time in the current state so
        // far is added to its total.
        VCPUOP_GET_RUNSTATE_INFO => {
            let (state, entry, mut time) = d.vcpus[vi].runstate;
            let now = crate::arch::x86_64::time::now_ns();
            if let Some(t) = time.get_mut(state as usize) {
                *t = t.wrapping_add(now.saturating_sub(entry));
            }
            let written = if d.compat {
                space.write(
                    arg,
                    &VcpuRunstateInfo32 {
                        state,
                        state_entry_time: entry,
                        time,
                    },
                )
            } else {
                space.write(
                    arg,
                    &VcpuRunstateInfo {
                        state,
                        _pad0: 0,
                        state_entry_time: entry,
                        time,
                    },
                )
            };
            written.map_or(err(EFAULT), |()| 0)
        }
        // Xen keeps a copy at this guest address, written on every state
        // change (and now); ~0 or 0 stops it. As Xen's guest_handle_okay
        // (64-bit) and compat_handle_okay (32-bit: only the 4-byte
        // handle is read), an area reaching into the hypervisor's range is
        // -EFAULT.
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            let (va, okay) = if d.compat {
                let Ok(h) = space.read::<u32>(arg) else {
                    return err(EFAULT);
                };
                let size = core::mem::size_of::<VcpuRunstateInfo32>() as u64;
                let end = ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START as u64;
                (h as u64, h as u64 + size <= end)
            } else {
                let Ok(a) = space.read::<VcpuRegisterRunstateMemoryArea>(arg) else {
                    return err(EFAULT);
                };
                let size = core::mem::size_of::<VcpuRunstateInfo>() as u64;
                let last = a.addr.wrapping_add(size - 1);
                (
                    a.addr,
                    !in_hypervisor_range(a.addr) && !in_hypervisor_range(last),
                )
            };
            let stop = va == 0 || va == !0 || (d.compat && va as u32 == !0);
            if !okay && !stop {
                return err(EFAULT);
            }
            d.vcpus[vi].runstate_area = (!stop).then_some(va);
            sched::write_runstate(d, vi);
            0
        }
        // The single-shot timer is the calling vCPU's own (as in Xen).
        VCPUOP_SET_SINGLESHOT_TIMER | VCPUOP_STOP_SINGLESHOT_TIMER if vi != d.cur => err(EINVAL),
        VCPUOP_SET_SINGLESHOT_TIMER => {
            // A 32-bit guest's struct is 12 bytes (Xen: compat_vcpu_op).
            let t = if d.compat {
                space
                    .read::<VcpuSetSingleshotTimer32>(arg)
                    .map(|t| (t.timeout_abs_ns, t.flags))
            } else {
                space
                    .read::<VcpuSetSingleshotTimer>(arg)
                    .map(|t| (t.timeout_abs_ns, t.flags))
            };
            let Ok((timeout_abs_ns, flags)) = t else {
                return err(EFAULT);
            };
            if flags & VCPU_SSHOTTMR_FUTURE != 0
                && timeout_abs_ns < crate::arch::x86_64::time::now_ns()
            {
                return err(ETIME);
            }
            d.vcpus[vcpu as usize].singleshot = Some(timeout_abs_ns);
            sched::timers_changed();
            0
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            d.vcpus[vcpu as usize].singleshot = None;
            sched::timers_changed();
            0
        }
        VCPUOP_SET_PERIODIC_TIMER => {
            let Ok(t) = space.read::<VcpuSetPeriodicTimer>(arg) else {
                return err(EFAULT);
            };
            // Xen refuses periods under 1 ms.
            if t.period_ns < 1_000_000 {
                return err(EINVAL);
            }
            let v = &mut d.vcpus[vcpu as usize];
            v.periodic_period = t.period_ns;
            v.periodic_next = crate::arch::x86_64::time::now_ns().saturating_add(t.period_ns);
            sched::timers_changed();
            0
        }
        VCPUOP_STOP_PERIODIC_TIMER => {
            d.vcpus[vcpu as usize].periodic_period = 0;
            sched::timers_changed();
            0
        }
        VCPUOP_REGISTER_VCPU_INFO => {
            let Ok(r) = space.read::<VcpuRegisterVcpuInfo>(arg) else {
                return err(EFAULT);
            };
            register_vcpu_info(d, ft, vi, r.mfn, r.offset as u64)
        }
        _ => err(ENOSYS),
    }
}

/// `physdev_op`. ringvisor drives no interrupt controller for its
/// guests and knows no I/O APIC or PCI device (it reads no MADT and gives
/// the initial domain no physical interrupts), so the calls a dom0 kernel
/// makes about them answer as Xen does for an I/O APIC, GSI or device it
/// does not have; the privileged ones `-EPERM` for other domains first, in
/// Xen's order (the argument is read before):
///
/// - `apic_read`/`apic_write`: `-EINVAL` (ioapic_guest_read/write: no I/O
///   APIC at that address; Linux then uses its emulated values);
/// - `map_pirq` (see `map_pirq`): a GSI `-EINVAL`, an MSI `-ENODEV`;
/// - `setup_gsi`: `-EINVAL` (mp_register_gsi: "No IOAPIC for GSI");
/// - `pirq_eoi_gmfn_v1/v2` (any domain): done as Xen (the page is held
///   writable for the domain's life; a second one `-EBUSY`); no PIRQ ever
///   sets a bit in it.
pub(crate) fn physdev_op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    cmd: u64,
    arg: u64,
) -> Ret {
    use ringvisor_abi::physdev::*;
    // The 32-bit layouts differ only in the width of `unsigned long` and
    // xen_pfn_t (the I/O APIC address, the EOI page's frame).
    let ulong = |at: u64| {
        if d.compat {
            space.read::<u32>(at).map(u64::from)
        } else {
            space.read::<u64>(at)
        }
    };
    match cmd as u32 {
        PHYSDEVOP_APIC_READ | PHYSDEVOP_APIC_WRITE => {
            // { unsigned long apic_physbase; u32 reg; u32 value; }
            let size = if d.compat { 12 } else { 16 };
            let mut buf = [0u8; 16];
            if space.read_bytes(arg, &mut buf[..size]).is_err() {
                return err(EFAULT);
            }
            if !d.privileged {
                return err(EPERM);
            }
            err(EINVAL)
        }
        PHYSDEVOP_SETUP_GSI => match space.read::<[u32; 2]>(arg) {
            Err(_) => err(EFAULT),
            Ok(_) if !d.privileged => err(EPERM),
            Ok(_) => err(EINVAL),
        },
        PHYSDEVOP_PIRQ_EOI_GMFN_V1 | PHYSDEVOP_PIRQ_EOI_GMFN_V2 => {
            let Ok(mfn) = ulong(arg) else {
                return err(EFAULT);
            };
            let busy = d.pirq_eoi_mfn != 0;
            // Held as a writable mapping would be (Xen: get_page_type
            // PGT_writable_page): never a page table, never given back.
            // Checked and taken in one step on the frame's record.
            let r = ft.with(mfn, |f| {
                if f.owner != d.id || f.kind != crate::mm::frametable::Kind::Normal {
                    return err(EINVAL);
                }
                if busy {
                    return err(EBUSY);
                }
                let (Some(m), Some(w)) = (f.mapped.checked_add(1), f.writable.checked_add(1))
                else {
                    return err(EINVAL);
                };
                (f.mapped, f.writable) = (m, w);
                0
            });
            match r {
                Some(0) => {
                    d.pirq_eoi_mfn = mfn;
                    0
                }
                Some(e) => e,
                None => err(EINVAL),
            }
        }
        PHYSDEVOP_SET_IOPL => match space.read::<PhysdevSetIopl>(arg) {
            Ok(p) if p.iopl <= 3 => {
                d.v_mut().iopl = p.iopl;
                0
            }
            Ok(_) => err(EINVAL),
            Err(_) => err(EFAULT),
        },
        _ => err(ENOSYS),
    }
}
