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

use ringvisor_abi::errno::*;
use ringvisor_abi::x86_64::*;
use ringvisor_abi::xen::*;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::Domain;
use crate::mm::frametable::FrameTable;
use crate::pv::guest_mem::{is_canonical, GuestSpace};
use crate::pv::{
    callback, console_io, descriptor, event, memory, mm, physdev, sched_op, vcpu_op, version,
};
use crate::sched;
use crate::trace::TRACE_HYPERCALL;

/// Hypercall results: 0 or a positive value, or `-errno`.
pub type Ret = i64;

pub const fn err(e: i32) -> Ret {
    -(e as i64)
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
                if d.is_32bit() {
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
                physdev::map_pirq_on(me, arg)
            } else {
                let mut d = me.lock();
                let space = d.v().space();
                physdev::physdev_op(
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
            physdev::map_pirq_on(me, a[1])
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
        let r = crate::pv::iret::iret(d, f);
        crate::pv::iret::trace_iret(d, f, r);
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
        HYPERVISOR_SCHED_OP_COMPAT => sched_op::sched_op_compat(d, a[0], a[1]),
        HYPERVISOR_UPDATE_VA_MAPPING => mm::update_va_mapping(d, ft, a[0], a[1], a[2]),
        HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => {
            mm::update_va_mapping_otherdomain(d, ft, a[0], a[1], a[2], a[3])
        }
        HYPERVISOR_NMI_OP => callback::nmi_op(d, space, a[0], a[1]),
        HYPERVISOR_XEN_VERSION => version::xen_version(d, space, a[0], a[1]),
        HYPERVISOR_CONSOLE_IO => console_io::console_io(d, space, a[0], a[1], a[2]),
        HYPERVISOR_VM_ASSIST => version::vm_assist(d, a[0], a[1]),
        HYPERVISOR_VCPU_OP => vcpu_op::vcpu_op(d, ft, space, a[0], a[1], a[2]),
        HYPERVISOR_SET_SEGMENT_BASE => set_segment_base(d, a[0], a[1]),
        HYPERVISOR_MMUEXT_OP => mm::mmuext_op(d, ft, space, a[0], a[1], a[2], a[3]),
        HYPERVISOR_SCHED_OP => sched_op::sched_op(d, space, a[0], a[1]),
        HYPERVISOR_CALLBACK_OP => callback::callback_op(d, space, a[0], a[1]),
        HYPERVISOR_PHYSDEV_OP => physdev::physdev_op(d, ft, space, a[0], a[1]),
        HYPERVISOR_SET_GDT => descriptor::set_gdt(d, ft, space, a[0], a[1]),
        HYPERVISOR_UPDATE_DESCRIPTOR => descriptor::update_descriptor(d, ft, a[0], a[1]),
        HYPERVISOR_MEMORY_OP => memory::memory_op(d, ft, space, a[0], a[1]),
        HYPERVISOR_SET_TIMER_OP => sched_op::set_timer_op(d, a[0]),
        HYPERVISOR_SET_DEBUGREG => crate::pv::debugreg::set(d, a[0], a[1]),
        HYPERVISOR_GRANT_TABLE_OP => crate::pv::grant::op(d, ft, space, a[0], a[1], a[2]),
        HYPERVISOR_GET_DEBUGREG => crate::pv::debugreg::get(d, a[0]),
        HYPERVISOR_XENPMU_OP => xenpmu_op(),
        _ => err(ENOSYS),
    }
}

/// `xenpmu_op`: Xen 4.17 boots with its virtual PMU off (`vpmu` not on
/// its command line): every command is `-EOPNOTSUPP`, before anything
/// is read. ringvisor offers no virtual PMU either.
pub(crate) fn xenpmu_op() -> Ret {
    err(EOPNOTSUPP)
}

pub(crate) fn fpu_taskswitch(d: &mut Domain, set: u64) -> Ret {
    let ts = set != 0;
    d.v_mut().cr0_ts = ts;
    crate::arch::x86_64::cr::set_cr0_ts(ts);
    0
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
