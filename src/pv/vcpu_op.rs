//! `vcpu_op` (Xen: `common/domain.c` `do_vcpu_op` and `arch/x86/domain.c`
//! `arch_do_vcpu_op`; the 32-bit layouts in `pv::compat`): bring vCPUs up
//! and down, their timers, runstate and `vcpu_info` areas.

use ringvisor_abi::callback::*;
use ringvisor_abi::errno::*;
use ringvisor_abi::x86_64::*;
use ringvisor_abi::xen::*;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::vcpu::{Callback, TrapEntry};
use crate::domain::Domain;
use crate::mm::frametable::FrameTable;
use crate::mm::view::VcpuInfoArea;
use crate::pv::guest_mem::{in_hypervisor_range, is_canonical, GuestSpace};
use crate::pv::hypercall::{err, Ret};
use crate::pv::{callback, descriptor, mm, traps};
use crate::sched;

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
    // A refused root undoes the GDT just installed: a call that fails
    // leaves the vCPU as it was (its GDT frames no longer the domain's
    // descriptor tables on its behalf).
    let kernel = xen_cr3_to_pfn(c.ctrlreg[3]);
    if mm::get_root(d, ft, kernel).is_err() {
        descriptor::install_gdt(d, ft, vi, &[], 0);
        return err(EINVAL);
    }
    let user = xen_cr3_to_pfn(c.ctrlreg[1]);
    if user != 0 && mm::get_root(d, ft, user).is_err() {
        mm::put_root(d, ft, kernel, 4);
        descriptor::install_gdt(d, ft, vi, &[], 0);
        return err(EINVAL);
    }
    let v = &mut d.vcpus[vi];
    v.guest_table = kernel;
    v.guest_table_user = user;
    v.set_kernel_mode(c.flags & VGCF_IN_KERNEL != 0 || user == 0);
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
            let written = if d.is_32bit() {
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
            let (va, okay) = if d.is_32bit() {
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
            let stop = va == 0 || va == !0 || (d.is_32bit() && va as u32 == !0);
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
            let t = if d.is_32bit() {
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
