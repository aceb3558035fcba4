//! Hypercalls through the hypercall page.
//!
//! 32-bit PV (`xen-x86_32.h`): `call hypercall_page + N*32`; the stub the
//! hypervisor wrote there is `mov $N,%eax; int $0x82; ret`. Arguments in
//! `%ebx, %ecx, %edx, %esi, %edi` (and `%ebp` for a sixth), result in
//! `%eax`. Xen's debug builds overwrite the argument registers a hypercall
//! used (`compat_hypercall` in `x86_64/compat/entry.S`), so every argument
//! register is treated as clobbered: the call goes through one small asm
//! function, [`pvguest32_hypercall`](self), which saves the callee-saved
//! ones of the C calling convention (`ebx, esi, edi, ebp`) around the stub.
//! (Rust's inline asm on i686 reserves `esi` and `ebp`, so they cannot be
//! named as operands anyway.)
//!
//! Pointer arguments are guest virtual addresses. Results are the 32-bit
//! `long` the guest sees: 0 or `-errno`. The wrappers are `unsafe` where
//! the hypervisor writes through a pointer the caller chose, or where the
//! call changes how the guest runs (trap table, callbacks, stack, page
//! tables).

use crate::abi::{self, x86_32 as a32};

#[cfg(target_arch = "x86")]
core::arch::global_asm!(
    r#"
    .text
    .balign 16
    .globl  pvguest32_hypercall
    .type   pvguest32_hypercall, @function
/* i32 pvguest32_hypercall(u32 op, u32 a1, u32 a2, u32 a3, u32 a4, u32 a5,
 *                         u32 a6), cdecl: everything on the stack. */
pvguest32_hypercall:
    push    %ebp
    push    %edi
    push    %esi
    push    %ebx
    /* 16 saved + 4 return address: op at 20(%esp). */
    mov     20(%esp), %eax
    shl     $5, %eax
    add     $hypercall_page, %eax
    mov     24(%esp), %ebx
    mov     28(%esp), %ecx
    mov     32(%esp), %edx
    mov     36(%esp), %esi
    mov     40(%esp), %edi
    mov     44(%esp), %ebp
    call    *%eax
    pop     %ebx
    pop     %esi
    pop     %edi
    pop     %ebp
    ret
    .size   pvguest32_hypercall, . - pvguest32_hypercall

/* i32 pvguest32_int82(u32 op, u32 a1, ..., u32 a6): the same with a bare
 * `int $0x82` instead of the hypercall page, for numbers the page has no
 * stub for (>= 128) and for probing the gate itself. */
    .balign 16
    .globl  pvguest32_int82
    .type   pvguest32_int82, @function
pvguest32_int82:
    push    %ebp
    push    %edi
    push    %esi
    push    %ebx
    mov     20(%esp), %eax
    mov     24(%esp), %ebx
    mov     28(%esp), %ecx
    mov     32(%esp), %edx
    mov     36(%esp), %esi
    mov     40(%esp), %edi
    mov     44(%esp), %ebp
    int     $0x82
    pop     %ebx
    pop     %esi
    pop     %edi
    pop     %ebp
    ret
    .size   pvguest32_int82, . - pvguest32_int82
"#,
    options(att_syntax)
);

#[cfg(target_arch = "x86")]
extern "C" {
    /// `head.S`: the page the domain builder fills with stubs.
    static hypercall_page: [u8; abi::HYPERCALL_PAGE_SIZE];
    fn pvguest32_hypercall(op: u32, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32, a6: u32) -> i32;
    fn pvguest32_int82(op: u32, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32, a6: u32) -> i32;
}

/// The address of the hypercall page (0 on the host).
pub fn page_addr() -> u32 {
    #[cfg(target_arch = "x86")]
    {
        crate::va(core::ptr::addr_of!(hypercall_page))
    }
    #[cfg(not(target_arch = "x86"))]
    {
        0
    }
}

/// Address of stub `op` (for asm that jumps there, e.g. `iret`).
pub fn stub_addr(op: u32) -> u32 {
    page_addr() + op * abi::HYPERCALL_STUB_SIZE as u32
}

/// Whether the builder overwrote the `ret` poison of `head.S` (the first
/// 32-bit stub starts with `mov $0,%eax`, 0xb8; never 0xc3).
pub fn page_is_filled() -> bool {
    #[cfg(target_arch = "x86")]
    {
        // SAFETY: the page is mapped (it is part of the image); volatile
        // because the compiler believes it holds the assembler's 0xc3.
        unsafe {
            core::ptr::addr_of!(hypercall_page)
                .cast::<u8>()
                .read_volatile()
                != 0xc3
        }
    }
    #[cfg(not(target_arch = "x86"))]
    {
        false
    }
}

/// The first bytes of stub `op` as the hypervisor wrote them.
pub fn stub_bytes(op: u32) -> [u8; 8] {
    #[cfg_attr(not(target_arch = "x86"), allow(unused_mut))]
    let mut b = [0u8; 8];
    #[cfg(target_arch = "x86")]
    for (i, x) in b.iter_mut().enumerate() {
        // SAFETY: inside the mapped hypercall page (op < 128 by the
        // callers; the page is 4096 bytes).
        *x = unsafe {
            (stub_addr(op % 128) as usize as *const u8)
                .add(i)
                .read_volatile()
        };
    }
    #[cfg(not(target_arch = "x86"))]
    let _ = op;
    b
}

/// Hypercall `op` (< 128: the page has 128 stubs) with six raw arguments
/// (`ebx, ecx, edx, esi, edi, ebp`). Returns `%eax`. On the host:
/// `-ENOSYS`.
///
/// # Safety
/// The arguments must be valid for `op` in the sense the hypervisor will
/// act on: pointers it writes through must point at memory the caller
/// owns, and calls that change the trap table, callbacks, stacks, segments
/// or page tables must leave the guest runnable. (Calls the hypervisor
/// rejects are always safe: that is what the tests probe.)
#[inline(always)]
pub unsafe fn hypercall6(op: u32, a: [u32; 6]) -> i32 {
    assert!(
        op < abi::HYPERCALL_PAGE_SLOTS as u32,
        "no stub for hypercall {op}"
    );
    #[cfg(target_arch = "x86")]
    {
        // SAFETY: the caller upholds the contract above; the asm function
        // follows the C calling convention.
        unsafe { pvguest32_hypercall(op, a[0], a[1], a[2], a[3], a[4], a[5]) }
    }
    #[cfg(not(target_arch = "x86"))]
    {
        let _ = (op, a);
        -abi::ENOSYS
    }
}

/// Hypercall `op` made with a bare `int $0x82` (`%eax` = `op`), not
/// through the hypercall page: for numbers past the page's 128 stubs.
/// On the host: `-ENOSYS`.
///
/// # Safety
/// As [`hypercall6`].
pub unsafe fn int82(op: u32, a: [u32; 6]) -> i32 {
    #[cfg(target_arch = "x86")]
    {
        // SAFETY: as hypercall6.
        unsafe { pvguest32_int82(op, a[0], a[1], a[2], a[3], a[4], a[5]) }
    }
    #[cfg(not(target_arch = "x86"))]
    {
        let _ = (op, a);
        -abi::ENOSYS
    }
}

/// Hypercall `op` with up to six arguments (missing ones are 0).
///
/// # Safety
/// As [`hypercall6`].
#[inline(always)]
pub unsafe fn hypercall(op: u32, args: &[u32]) -> i32 {
    let mut a = [0u32; 6];
    for (d, s) in a.iter_mut().zip(args) {
        *d = *s;
    }
    // SAFETY: forwarded contract.
    unsafe { hypercall6(op, a) }
}

// --------------------------------------------------------------------------
// Typed wrappers, named after Xen's HYPERVISOR_* functions (32-bit forms).
// --------------------------------------------------------------------------

/// `console_io(cmd, count, buf)`.
///
/// # Safety
/// For `CONSOLEIO_read` the hypervisor writes `count` bytes at `buf`.
pub unsafe fn console_io(cmd: u32, count: u32, buf: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_CONSOLE_IO, &[cmd, count, buf]) }
}

/// `console_io(CONSOLEIO_write, bytes)`: the hypervisor only reads.
pub fn console_write(bytes: &[u8]) -> i32 {
    // SAFETY: `bytes` is readable for its length; write never writes.
    unsafe {
        console_io(
            abi::CONSOLEIO_WRITE,
            bytes.len() as u32,
            crate::va(bytes.as_ptr()),
        )
    }
}

/// `sched_op(cmd, arg)`.
///
/// # Safety
/// `arg` must suit `cmd` (e.g. a `sched_shutdown` for `SCHEDOP_shutdown`).
pub unsafe fn sched_op(cmd: u32, arg: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_SCHED_OP, &[cmd, arg]) }
}

/// `sched_op(SCHEDOP_shutdown, { reason })`: does not return on success.
pub fn shutdown(reason: u32) -> ! {
    let s = abi::SchedShutdown { reason };
    let p = crate::va(&s);
    // SAFETY: the hypervisor only reads the struct.
    unsafe { sched_op(abi::SCHEDOP_SHUTDOWN, p) };
    // A hypervisor that returns from a shutdown: stop here all the same.
    loop {
        // SAFETY: the hypervisor only reads the struct.
        unsafe { sched_op(abi::SCHEDOP_SHUTDOWN, p) };
        // SAFETY: yield has no argument.
        unsafe { sched_op(abi::SCHEDOP_YIELD, 0) };
    }
}

/// `xen_version(cmd, arg)`.
///
/// # Safety
/// The hypervisor writes the result for `cmd` at `arg`, which must be
/// large enough (e.g. 16 bytes for `XENVER_extraversion`).
pub unsafe fn xen_version(cmd: u32, arg: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_XEN_VERSION, &[cmd, arg]) }
}

/// `set_trap_table(traps)`: 32-bit `trap_info` entries (8 bytes), ending
/// with one whose address is 0.
///
/// # Safety
/// The entries' addresses become the guest's exception handlers.
pub unsafe fn set_trap_table(traps: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_SET_TRAP_TABLE, &[traps]) }
}

/// `set_callbacks(event_selector, event_address, failsafe_selector,
/// failsafe_address)`: the 32-bit form (`xen-x86_32.h`; Xen's
/// `compat_set_callbacks`), selector and address pairs.
///
/// # Safety
/// The addresses become guest entry points.
pub unsafe fn set_callbacks(event_sel: u32, event: u32, failsafe_sel: u32, failsafe: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        hypercall(
            abi::HYPERVISOR_SET_CALLBACKS,
            &[event_sel, event, failsafe_sel, failsafe],
        )
    }
}

/// `callback_op(cmd, arg)`.
///
/// # Safety
/// A registered address becomes a guest entry point.
pub unsafe fn callback_op(cmd: u32, arg: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_CALLBACK_OP, &[cmd, arg]) }
}

/// `callback_op(CALLBACKOP_register, { type, flags, { cs, eip } })` with
/// the 32-bit `callback_register` (12 bytes).
///
/// # Safety
/// `cs:eip` becomes a guest entry point for that callback.
pub unsafe fn register_callback(type_: u16, flags: u16, cs: u32, eip: u32) -> i32 {
    let r = abi::CallbackRegister32 {
        type_,
        flags,
        address: a32::XenCallback32 { cs, eip },
    };
    // SAFETY: forwarded contract; the hypervisor only reads `r`.
    unsafe { callback_op(abi::CALLBACKOP_REGISTER, crate::va(&r)) }
}

/// `stack_switch(ss, esp)`: the ring-1 stack for bounces from ring 3.
///
/// # Safety
/// `esp` must be the top of a stack nothing else uses.
pub unsafe fn stack_switch(ss: u32, esp: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_STACK_SWITCH, &[ss, esp]) }
}

/// `update_va_mapping(va, pte, flags)`, 32-bit form: the 64-bit PAE PTE is
/// split into `lo` (`%ecx`) and `hi` (`%edx`), flags in `%esi`
/// (Xen's `compat_update_va_mapping(va, lo, hi, flags)`).
///
/// # Safety
/// Changes what `va` maps.
pub unsafe fn update_va_mapping(va: u32, pte: u64, flags: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        hypercall(
            abi::HYPERVISOR_UPDATE_VA_MAPPING,
            &[va, pte as u32, (pte >> 32) as u32, flags],
        )
    }
}

/// `mmu_update(reqs, count, done, domid)` (`struct mmu_update` has the
/// same 16-byte layout for 32-bit guests).
///
/// # Safety
/// Changes page tables; `done` (if non-zero) is written.
pub unsafe fn mmu_update(reqs: u32, count: u32, done: u32, domid: u16) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        hypercall(
            abi::HYPERVISOR_MMU_UPDATE,
            &[reqs, count, done, domid.into()],
        )
    }
}

/// `mmuext_op(ops, count, done, domid)` with 12-byte 32-bit `mmuext_op`s.
///
/// # Safety
/// Changes page tables / TLBs; `done` (if non-zero) is written.
pub unsafe fn mmuext_op(ops: u32, count: u32, done: u32, domid: u16) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_MMUEXT_OP, &[ops, count, done, domid.into()]) }
}

/// One 32-bit `mmuext_op` on this domain.
///
/// # Safety
/// As [`mmuext_op`].
pub unsafe fn mmuext1(cmd: u32, arg1: u32, arg2: u32) -> i32 {
    let op = abi::MmuExtOp32 { cmd, arg1, arg2 };
    // SAFETY: forwarded contract; the hypervisor only reads `op`.
    unsafe { mmuext_op(crate::va(&op), 1, 0, abi::DOMID_SELF) }
}

/// `fpu_taskswitch(set)`: set (1) or clear (0) the virtual CR0.TS.
pub fn fpu_taskswitch(set: u32) -> i32 {
    // SAFETY: only changes whether the next FPU instruction raises #NM.
    unsafe { hypercall(abi::HYPERVISOR_FPU_TASKSWITCH, &[set]) }
}

/// `vm_assist(cmd, type)`.
pub fn vm_assist(cmd: u32, type_: u32) -> i32 {
    // SAFETY: the assists only change how the hypervisor treats later
    // requests.
    unsafe { hypercall(abi::HYPERVISOR_VM_ASSIST, &[cmd, type_]) }
}

/// `vcpu_op(cmd, vcpu, arg)`.
///
/// # Safety
/// `arg` must suit `cmd`.
pub unsafe fn vcpu_op(cmd: u32, vcpu: u32, arg: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_VCPU_OP, &[cmd, vcpu, arg]) }
}

/// `memory_op(cmd, arg)`.
///
/// # Safety
/// `arg` must suit `cmd`.
pub unsafe fn memory_op(cmd: u32, arg: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_MEMORY_OP, &[cmd, arg]) }
}

/// `event_channel_op(cmd, arg)`.
///
/// # Safety
/// `arg` must point at the struct `cmd` takes; the hypervisor writes its
/// OUT fields.
pub unsafe fn event_channel_op(cmd: u32, arg: u32) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { hypercall(abi::HYPERVISOR_EVENT_CHANNEL_OP, &[cmd, arg]) }
}

/// `set_timer_op(timeout)`, 32-bit form: the 64-bit absolute time in ns
/// split into `lo` (`%ebx`) and `hi` (`%ecx`); 0 cancels.
pub fn set_timer_op(timeout: u64) -> i32 {
    // SAFETY: only arms or cancels the vCPU's timer.
    unsafe {
        hypercall(
            abi::HYPERVISOR_SET_TIMER_OP,
            &[timeout as u32, (timeout >> 32) as u32],
        )
    }
}

/// A cheap hypercall whose only purpose is its exit path: the hypervisor
/// delivers pending, unmasked events on the way back (Xen's
/// `compat_test_all_events`). Used after unmasking events by hand.
pub fn force_event_check() {
    // SAFETY: XENVER_version takes no buffer.
    let _ = unsafe { xen_version(abi::XENVER_VERSION, 0) };
}
