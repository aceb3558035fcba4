//! 32-bit (PAE) PV guests: their hypercalls (Xen: `x86_64/compat/`,
//! `common/compat/`, `pv/callback.c` compat paths).
//!
//! # A 32-bit hypercall, step by step
//!
//! The guest kernel runs in ring 1 of a compatibility-mode code segment
//! (`FLAT_RING1_CS`, 0xe019). Its hypercall stub is `mov $N, %eax;
//! int $0x82; ret`: the IDT gate 0x82 has DPL 1, so ring 1 may use it and
//! ring 3 may not (#GP). The CPU switches to this CPU's stack (TSS.RSP0)
//! and the common entry path builds the same `TrapFrame` as for 64-bit
//! guests; `dispatch` reads the arguments from ebx, ecx, edx, esi, edi and
//! leaves the result in eax. Structures whose 32-bit layout differs are
//! translated here; the rest share the 64-bit handlers.

use alloc::vec::Vec;

use ringvisor_abi::errno::*;
use ringvisor_abi::x86_32::*;
use ringvisor_abi::xen::*;
use ringvisor_abi::Pod;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::vcpu::{Callback, TrapEntry};
use crate::domain::Domain;
use crate::mm::frametable::FrameTable;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{self as hc, err, Ret};
use crate::pv::{
    callback, console_io, descriptor, event, memory, mm, physdev, sched_op, vcpu_op, version,
};

const CAPABILITIES32: &str = "xen-3.0-x86_32p ";

/// A selector a 32-bit guest kernel names for its handlers or its stack,
/// as Xen takes it (`fixup_guest_code_selector`/`_stack_selector`): an RPL
/// below the kernel's ring (0) is raised to 1, anything else is kept.
/// Nothing more is checked when it is registered: a selector the CPU
/// refuses when it is used is the guest's fault then (pv::retcheck).
pub fn fixup_selector(sel: u16) -> u16 {
    crate::pv::width::Width::W32.fixup_selector(sel as u64) as u16
}

/// A 32-bit guest kernel's hypercall that concerns only its own domain,
/// under that domain's lock (held by the caller), as
/// `hypercall::dispatch_domain`; `false`: a global call, nothing done.
// Tour 02: the 32-bit hypercall table
pub(crate) fn dispatch_domain(d: &mut Domain, f: &mut TrapFrame) -> bool {
    let nr = f.rax as u32 as u64;
    let a = [
        f.rbx as u32 as u64,
        f.rcx as u32 as u64,
        f.rdx as u32 as u64,
        f.rsi as u32 as u64,
        f.rdi as u32 as u64,
    ];
    if hc::is_global(nr, a[0]) {
        return false;
    }
    if nr == HYPERVISOR_IRET as u64 {
        let r = crate::pv::iret::compat_iret(d, f);
        crate::pv::iret::trace_iret(d, f, r);
        return true;
    }
    let space = d.v().space();
    let ret = match nr as u32 {
        HYPERVISOR_XENPMU_OP => hc::xenpmu_op(),
        // The same layouts in both widths (as `call` says).
        HYPERVISOR_EVENT_CHANNEL_OP => match event::op_local(d, space, a[0], a[1]) {
            Some(r) => r,
            None => return false,
        },
        _ => local(d, crate::mm::frametable::frames(), space, nr, a),
    };
    hc::log_call(d, nr, a, ret, " (32-bit)");
    // eax gets the result; the upper half of rax is not the guest's.
    f.rax = ret as u32 as u64;
    true
}

fn local(d: &mut Domain, ft: &FrameTable, space: GuestSpace, nr: u64, a: [u64; 5]) -> Ret {
    match nr as u32 {
        HYPERVISOR_CONSOLE_IO => console_io::console_io(d, space, a[0], a[1], a[2]),
        HYPERVISOR_XEN_VERSION => xen_version(d, space, a[0], a[1]),
        // The 32-bit sched_poll: a 4-byte handle, then nr_ports, then the
        // timeout at offset 8 (16 bytes, not the 64-bit 24).
        HYPERVISOR_SCHED_OP if a[0] == ringvisor_abi::sched::SCHEDOP_POLL as u64 => {
            match space.read::<ringvisor_abi::sched::SchedPoll32>(a[1]) {
                Ok(p) => sched_op::poll(d, space, p.ports as u64, p.nr_ports, p.timeout),
                Err(_) => err(EFAULT),
            }
        }
        HYPERVISOR_SCHED_OP => sched_op::sched_op(d, space, a[0], a[1]),
        HYPERVISOR_SCHED_OP_COMPAT => sched_op::sched_op_compat(d, a[0], a[1]),
        HYPERVISOR_SET_TRAP_TABLE => callback::set_trap_table(d, space, a[0]),
        HYPERVISOR_SET_CALLBACKS => callback::set_callbacks(d, [a[0], a[1], a[2], a[3]]),
        HYPERVISOR_CALLBACK_OP => callback::callback_op(d, space, a[0], a[1]),
        HYPERVISOR_STACK_SWITCH => callback::stack_switch(d, a[0], a[1]),
        HYPERVISOR_FPU_TASKSWITCH => hc::fpu_taskswitch(d, a[0]),
        HYPERVISOR_VM_ASSIST if a[1] == VMASST_TYPE_M2P_STRICT as u64 => err(EINVAL),
        HYPERVISOR_VM_ASSIST => version::vm_assist(d, a[0], a[1]),
        HYPERVISOR_PHYSDEV_OP => physdev::physdev_op(d, ft, space, a[0], a[1]),
        HYPERVISOR_SET_TIMER_OP => sched_op::set_timer_op(d, a[0] | a[1] << 32),
        HYPERVISOR_SET_DEBUGREG => crate::pv::debugreg::set(d, a[0], a[1]),
        HYPERVISOR_GRANT_TABLE_OP => crate::pv::grant::op(d, ft, space, a[0], a[1], a[2]),
        HYPERVISOR_GET_DEBUGREG => crate::pv::debugreg::get(d, a[0]),
        // The 64-bit PTE comes in two halves.
        HYPERVISOR_UPDATE_VA_MAPPING => mm::update_va_mapping(d, ft, a[0], a[1] | a[2] << 32, a[3]),
        HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => {
            mm::update_va_mapping_otherdomain(d, ft, a[0], a[1] | a[2] << 32, a[3], a[4])
        }
        HYPERVISOR_NMI_OP => callback::nmi_op(d, space, a[0], a[1]),
        HYPERVISOR_MMU_UPDATE => mm::mmu_update_compat(d, ft, space, a[0], a[1], a[2], a[3]),
        HYPERVISOR_MMUEXT_OP => mmuext_op(d, ft, space, a[0], a[1], a[2], a[3]),
        HYPERVISOR_VCPU_OP => match a[0] as u32 {
            ringvisor_abi::vcpu::VCPUOP_IS_UP
            | ringvisor_abi::vcpu::VCPUOP_UP
            | ringvisor_abi::vcpu::VCPUOP_DOWN
            | ringvisor_abi::vcpu::VCPUOP_SET_PERIODIC_TIMER
            | ringvisor_abi::vcpu::VCPUOP_STOP_PERIODIC_TIMER
            | ringvisor_abi::vcpu::VCPUOP_STOP_SINGLESHOT_TIMER
            | ringvisor_abi::vcpu::VCPUOP_SET_SINGLESHOT_TIMER
            | ringvisor_abi::vcpu::VCPUOP_GET_RUNSTATE_INFO
            | ringvisor_abi::vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA
            | ringvisor_abi::vcpu::VCPUOP_REGISTER_VCPU_INFO => {
                vcpu_op::vcpu_op(d, ft, space, a[0], a[1], a[2])
            }
            ringvisor_abi::vcpu::VCPUOP_INITIALISE => {
                let vi = a[1] as usize;
                if vi >= d.vcpus.len() {
                    return err(ENOENT);
                }
                if d.vcpus[vi].initialised {
                    return err(EEXIST);
                }
                match space.read::<VcpuGuestContext32>(a[2]) {
                    Ok(c) => initialise_vcpu(d, ft, vi, &c),
                    Err(_) => err(EFAULT),
                }
            }
            // The others, as Xen's compat_vcpu_op: -ENOSYS.
            _ => err(ENOSYS),
        },
        HYPERVISOR_MEMORY_OP => memory::memory_op(d, ft, space, a[0], a[1]),
        HYPERVISOR_SET_GDT => set_gdt(d, ft, space, a[0], a[1]),
        HYPERVISOR_UPDATE_DESCRIPTOR => {
            descriptor::update_descriptor(d, ft, a[0] | a[1] << 32, a[2] | a[3] << 32)
        }
        _ => err(ENOSYS),
    }
}

fn xen_version(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    use ringvisor_abi::version::*;
    match cmd as u32 {
        XENVER_CAPABILITIES => {
            let mut buf = [0u8; XEN_CAPABILITIES_INFO_LEN];
            buf[..CAPABILITIES32.len()].copy_from_slice(CAPABILITIES32.as_bytes());
            if space.write_bytes(arg, &buf).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_PLATFORM_PARAMETERS => {
            let p = XenPlatformParameters32 {
                virt_start: HYPERVISOR_COMPAT_VIRT_START,
            };
            if space.write(arg, &p).is_err() {
                return err(EFAULT);
            }
            0
        }
        _ => version::xen_version(d, space, cmd, arg),
    }
}

/// `VCPUOP_initialise` from a 32-bit `vcpu_guest_context` (Xen's
/// compat arch_set_info_guest): selectors get RPL 1 (a bad one is the
/// guest's fault when the vCPU first runs: pv::retcheck), the trap table
/// and callbacks as their hypercalls take them, the GDT checked as
/// set_gdt, the PAE L3 in ctrlreg[3] (folded format) validated and given
/// this vCPU's hypervisor L4.
fn initialise_vcpu(d: &mut Domain, ft: &FrameTable, vi: usize, c: &VcpuGuestContext32) -> Ret {
    use crate::arch::x86_64::idt::TrapFrame;
    let r = &c.user_regs;
    if c.gdt_ents > 0 {
        let frames: Vec<u64> = c.gdt_frames[..(c.gdt_ents.div_ceil(512) as usize).min(16)]
            .iter()
            .map(|&f| f as u64)
            .collect();
        let rc = descriptor::install_gdt(d, ft, vi, &frames, c.gdt_ents as u64);
        if rc != 0 {
            return rc;
        }
    }
    // A refused root undoes the GDT just installed (as the 64-bit
    // initialise): a call that fails leaves the vCPU as it was.
    let l3 = xen_cr3_to_pfn(c.ctrlreg[3]) as u64;
    if mm::get_table_at(d, ft, l3, 3).is_err() {
        descriptor::install_gdt(d, ft, vi, &[], 0);
        return err(EINVAL);
    }
    let Some(l4) = crate::domain::builder::compat_l4(l3) else {
        mm::put_root(d, ft, l3, 3);
        descriptor::install_gdt(d, ft, vi, &[], 0);
        return err(ENOMEM);
    };
    let mut traps = [TrapEntry::default(); 256];
    for t in c.trap_ctxt.iter().filter(|t| t.address != 0) {
        traps[t.vector as usize] = TrapEntry {
            flags: t.flags,
            cs: fixup_selector(t.cs),
            address: t.address as u64,
        };
    }
    let v = &mut d.vcpus[vi];
    if v.compat_l4 != 0 {
        let _ = crate::mm::paging::with_frames(|fa| fa.free(crate::mm::frame::Frame(v.compat_l4)));
    }
    v.compat_l4 = l4;
    v.guest_table = l3;
    v.guest_table_user = 0;
    v.set_kernel_mode(r.cs & 3 != 3);
    v.regs = TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: r.ebp as u64,
        rdi: r.edi as u64,
        rsi: r.esi as u64,
        rdx: r.edx as u64,
        rcx: r.ecx as u64,
        rbx: r.ebx as u64,
        rax: r.eax as u64,
        vector: 0,
        error_code: 0,
        rip: r.eip as u64,
        cs: fixup_selector(r.cs) as u64,
        rflags: (r.eflags as u64 & !(3 << 12 | 1 << 17)) | 0x202,
        rsp: r.esp as u64,
        ss: fixup_selector(r.ss) as u64,
    };
    v.data_sels = [r.ds, r.es, r.fs, r.gs];
    v.trap_table = traps;
    v.event = Callback {
        address: c.event_callback_eip as u64,
        cs: fixup_selector(c.event_callback_cs as u16),
        mask_events: false,
    };
    v.failsafe = Callback {
        address: c.failsafe_callback_eip as u64,
        cs: fixup_selector(c.failsafe_callback_cs as u16),
        mask_events: c.flags as u64 & VGCF_FAILSAFE_DISABLES_EVENTS != 0,
    };
    v.kernel_ss = fixup_selector(c.kernel_ss as u16) as u64;
    v.kernel_sp = c.kernel_sp as u64;
    if c.flags as u64 & VGCF_I387_VALID != 0 {
        v.fpu = crate::domain::vcpu::FpuState::from_guest(&c.fpu_ctxt);
    }
    v.initialised = true;
    0
}

/// `mmuext_op` with the 12-byte 32-bit entries, translated one by one.
#[allow(clippy::too_many_arguments)]
fn mmuext_op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    ops: u64,
    count: u64,
    done_ptr: u64,
    dom: u64,
) -> Ret {
    if count > mm::MAX_BATCH {
        return err(EINVAL);
    }
    let mut native = Vec::with_capacity(count as usize);
    for i in 0..count {
        let Ok(op) = space.read::<MmuExtOp32>(ops + i * 12) else {
            return err(EFAULT);
        };
        let mut n = MmuExtOp::zeroed();
        n.cmd = op.cmd;
        n.arg1 = op.arg1 as u64;
        n.arg2 = op.arg2 as u64;
        native.push(n);
    }
    mm::mmuext_list(d, ft, space, &native, done_ptr, dom)
}

/// `set_gdt` with a list of 32-bit frame numbers.
fn set_gdt(d: &mut Domain, ft: &FrameTable, space: GuestSpace, list: u64, entries: u64) -> Ret {
    if entries > crate::arch::x86_64::gdt::FIRST_RESERVED_GDT_ENTRY as u64 {
        return err(EINVAL);
    }
    let mut frames = Vec::new();
    for i in 0..entries.div_ceil(512) {
        let Ok(mfn) = space.read::<u32>(list + i * 4) else {
            return err(EFAULT);
        };
        frames.push(mfn as u64);
    }
    let vi = d.cur;
    let r = descriptor::install_gdt(d, ft, vi, &frames, entries);
    if r == 0 {
        crate::arch::x86_64::gdt::load_guest_entries(&d.v().gdt);
    }
    r
}
