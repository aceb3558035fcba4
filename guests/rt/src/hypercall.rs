//! Hypercalls through the hypercall page.
//!
//! 64-bit PV: `call hypercall_page + N*32` with arguments in
//! `%rdi, %rsi, %rdx, %r10, %r8` and the result in `%rax`. Each stub saves
//! `%rcx`/`%r11` itself (`syscall` clobbers them); the hypervisor may
//! clobber the argument registers (Xen's debug builds do), so every
//! wrapper treats all five, plus `%r9`, as clobbered.
//!
//! Pointer arguments are guest virtual addresses. The wrappers are `unsafe`
//! where the hypervisor writes through a pointer the caller chose, or where
//! the call changes how the guest runs (trap table, stack, page tables).

use core::arch::asm;

use crate::abi;

extern "C" {
    /// `head.S`: the page the domain builder fills with stubs.
    static hypercall_page: [u8; abi::HYPERCALL_PAGE_SIZE];
}

/// The address of the hypercall page.
pub fn page_addr() -> u64 {
    core::ptr::addr_of!(hypercall_page) as u64
}

/// Address of stub `op` (for asm that jumps there, e.g. `iret`).
pub fn stub_addr(op: u32) -> u64 {
    page_addr() + u64::from(op) * abi::HYPERCALL_STUB_SIZE as u64
}

/// Whether the builder overwrote the `ret` poison of `head.S` (its first
/// stub starts with `push %rcx` in ringvisor and `mov $0,%eax` in Xen 4.17;
/// either way not 0xc3).
pub fn page_is_filled() -> bool {
    // SAFETY: the page is mapped (it is part of the image); volatile
    // because the compiler believes it holds the assembler's 0xc3 bytes.
    unsafe {
        core::ptr::addr_of!(hypercall_page)
            .cast::<u8>()
            .read_volatile()
            != 0xc3
    }
}

/// Hypercall `op` with five raw arguments. Returns `%rax`.
///
/// # Safety
/// The arguments must be valid for `op` in the sense the hypervisor will
/// act on: pointers it writes through must point at memory the caller
/// owns, and calls that change the trap table, stacks, segments or page
/// tables must leave the guest runnable. (Calls the hypervisor rejects are
/// always safe: that is what the tests probe.)
#[inline(always)]
pub unsafe fn hypercall5(op: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller upholds the contract above; the stub preserves
    // everything but rax and the declared clobbers, and uses the stack
    // below %rsp only transiently (this target has no red zone).
    unsafe {
        asm!(
            "call rax",
            inlateout("rax") stub_addr(op) => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("r9") _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Hypercall `op` with up to five arguments (missing ones are 0).
///
/// # Safety
/// As [`hypercall5`].
#[inline(always)]
pub unsafe fn hypercall(op: u32, args: &[u64]) -> i64 {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    // SAFETY: forwarded contract.
    unsafe { hypercall5(op, a(0), a(1), a(2), a(3), a(4)) }
}

// --------------------------------------------------------------------------
// Typed wrappers, named after Xen's HYPERVISOR_* functions.
// --------------------------------------------------------------------------

/// `console_io(cmd, count, buf)`.
///
/// # Safety
/// For `CONSOLEIO_read` the hypervisor writes `count` bytes at `buf`.
pub unsafe fn console_io(cmd: u32, count: u64, buf: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_CONSOLE_IO, cmd.into(), count, buf, 0, 0) }
}

/// `console_io(CONSOLEIO_write, bytes)`: the hypervisor only reads.
pub fn console_write(bytes: &[u8]) -> i64 {
    // SAFETY: `bytes` is readable for its length; write never writes.
    unsafe {
        console_io(
            abi::CONSOLEIO_WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    }
}

/// `sched_op(cmd, arg)`.
///
/// # Safety
/// `arg` must suit `cmd` (e.g. a `sched_shutdown` for `SCHEDOP_shutdown`).
pub unsafe fn sched_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_SCHED_OP, cmd.into(), arg, 0, 0, 0) }
}

/// `sched_op(SCHEDOP_shutdown, { reason })`: does not return on success.
pub fn shutdown(reason: u32) -> ! {
    let s = abi::SchedShutdown { reason };
    // SAFETY: the hypervisor only reads the struct.
    unsafe { sched_op(abi::SCHEDOP_SHUTDOWN, &s as *const _ as u64) };
    // A hypervisor that returns from a shutdown: stop here all the same.
    loop {
        // SAFETY: the hypervisor only reads the struct.
        unsafe { sched_op(abi::SCHEDOP_SHUTDOWN, &s as *const _ as u64) };
        // SAFETY: yield has no argument.
        unsafe { sched_op(abi::SCHEDOP_YIELD, 0) };
    }
}

/// `xen_version(cmd, arg)`.
///
/// # Safety
/// The hypervisor writes the result for `cmd` at `arg`, which must be
/// large enough (e.g. 16 bytes for `XENVER_extraversion`).
pub unsafe fn xen_version(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_XEN_VERSION, cmd.into(), arg, 0, 0, 0) }
}

/// `set_trap_table(traps)`: `traps` ends with an entry whose address is 0.
///
/// # Safety
/// The entries' addresses become the guest's exception handlers.
pub unsafe fn set_trap_table(traps: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_SET_TRAP_TABLE, traps, 0, 0, 0, 0) }
}

/// `callback_op(cmd, arg)`.
///
/// # Safety
/// A registered address becomes a guest entry point.
pub unsafe fn callback_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_CALLBACK_OP, cmd.into(), arg, 0, 0, 0) }
}

/// `callback_op(CALLBACKOP_register, { type, flags, address })`.
///
/// # Safety
/// `address` becomes a guest entry point for that callback.
pub unsafe fn register_callback(type_: u16, flags: u16, address: u64) -> i64 {
    let r = abi::CallbackRegister {
        type_,
        flags,
        _pad0: 0,
        address,
    };
    // SAFETY: forwarded contract; the hypervisor only reads `r`.
    unsafe { callback_op(abi::CALLBACKOP_REGISTER, &r as *const _ as u64) }
}

/// `stack_switch(ss, sp)`: the kernel stack for bounces from user mode.
///
/// # Safety
/// `sp` must be the top of a stack nothing else uses.
pub unsafe fn stack_switch(ss: u64, sp: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_STACK_SWITCH, ss, sp, 0, 0, 0) }
}

/// `fpu_taskswitch(set)`: set (1) or clear (0) the virtual CR0.TS.
pub fn fpu_taskswitch(set: u64) -> i64 {
    // SAFETY: only changes whether the next FPU instruction raises #NM.
    unsafe { hypercall5(abi::HYPERVISOR_FPU_TASKSWITCH, set, 0, 0, 0, 0) }
}

/// `set_segment_base(which, base)`.
///
/// # Safety
/// Changes the segment bases the guest's code uses.
pub unsafe fn set_segment_base(which: u32, base: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe {
        hypercall5(
            abi::HYPERVISOR_SET_SEGMENT_BASE,
            which.into(),
            base,
            0,
            0,
            0,
        )
    }
}

/// `vm_assist(cmd, type)`.
pub fn vm_assist(cmd: u32, type_: u32) -> i64 {
    // SAFETY: the assists only change how the hypervisor treats later
    // requests; the tests use ones the runtime does not depend on.
    unsafe { hypercall5(abi::HYPERVISOR_VM_ASSIST, cmd.into(), type_.into(), 0, 0, 0) }
}

/// `update_va_mapping(va, pte, flags)`.
///
/// # Safety
/// Changes what `va` maps.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_UPDATE_VA_MAPPING, va, pte, flags, 0, 0) }
}

/// `mmu_update(reqs, count, done, domid)`.
///
/// # Safety
/// Changes page tables; `done` (if non-zero) is written.
pub unsafe fn mmu_update(reqs: u64, count: u64, done: u64, domid: u16) -> i64 {
    // SAFETY: forwarded contract.
    unsafe {
        hypercall5(
            abi::HYPERVISOR_MMU_UPDATE,
            reqs,
            count,
            done,
            domid.into(),
            0,
        )
    }
}

/// `mmuext_op(ops, count, done, domid)`.
///
/// # Safety
/// Changes page tables / TLBs; `done` (if non-zero) is written.
pub unsafe fn mmuext_op(ops: u64, count: u64, done: u64, domid: u16) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_MMUEXT_OP, ops, count, done, domid.into(), 0) }
}

/// One `mmuext_op` on this domain.
///
/// # Safety
/// As [`mmuext_op`].
pub unsafe fn mmuext1(cmd: u32, arg1: u64, arg2: u64) -> i64 {
    let op = abi::MmuExtOp {
        cmd,
        _pad0: 0,
        arg1,
        arg2,
    };
    // SAFETY: forwarded contract; the hypervisor only reads `op`.
    unsafe { mmuext_op(&op as *const _ as u64, 1, 0, abi::DOMID_SELF) }
}

/// `vcpu_op(cmd, vcpu, arg)`.
///
/// # Safety
/// `arg` must suit `cmd`.
pub unsafe fn vcpu_op(cmd: u32, vcpu: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_VCPU_OP, cmd.into(), vcpu.into(), arg, 0, 0) }
}

/// `physdev_op(cmd, arg)`.
///
/// # Safety
/// `arg` must suit `cmd`.
pub unsafe fn physdev_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_PHYSDEV_OP, cmd.into(), arg, 0, 0, 0) }
}

/// `memory_op(cmd, arg)`.
///
/// # Safety
/// `arg` must suit `cmd`.
pub unsafe fn memory_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_MEMORY_OP, cmd.into(), arg, 0, 0, 0) }
}

/// The part of `struct iret_context` the guest pushes before jumping to the
/// iret stub (which pushes `rcx, r11, rax` below it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IretFrame {
    /// 0 or `VGCF_in_syscall`.
    pub flags: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const _: () =
    assert!(core::mem::size_of::<IretFrame>() + 24 == core::mem::size_of::<abi::IretContext>());

/// `HYPERVISOR_iret` with `frame` and the given `%rbx`/`%r12` (callee-saved
/// registers survive the hypercall; the others are whatever they are).
/// Jumps, never returns.
///
/// # Safety
/// The frame must describe a place the guest can run; this stack frame is
/// abandoned (the iret stub pushes three words below `frame`).
pub unsafe fn iret(frame: &IretFrame, rbx: u64, r12: u64) -> ! {
    // SAFETY: forwarded contract. %rsp moves onto `frame`, which lives in
    // this (abandoned) stack frame.
    unsafe {
        asm!(
            "mov rbx, rdi",
            "mov r12, rsi",
            "mov rsp, rax",
            "jmp rdx",
            in("rdi") rbx,
            in("rsi") r12,
            in("rax") frame as *const IretFrame,
            in("rdx") stub_addr(abi::HYPERVISOR_IRET),
            options(noreturn),
        )
    }
}

/// `event_channel_op(cmd, arg)`.
///
/// # Safety
/// `arg` must point at the struct `cmd` takes; the hypervisor writes its
/// OUT fields.
pub unsafe fn event_channel_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(abi::HYPERVISOR_EVENT_CHANNEL_OP, cmd.into(), arg, 0, 0, 0) }
}

/// `set_timer_op(timeout)`: a single-shot `VIRQ_TIMER` at absolute system
/// time `timeout` (ns); 0 cancels it.
pub fn set_timer_op(timeout: u64) -> i64 {
    // SAFETY: only arms or cancels the vCPU's timer.
    unsafe { hypercall5(abi::HYPERVISOR_SET_TIMER_OP, timeout, 0, 0, 0, 0) }
}
