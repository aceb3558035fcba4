/*
 * Guest-kernel entry points for Xen's 64-bit PV bounces, the catch/unwind
 * helper and the user-mode trampoline. AT&T syntax; constants and symbols
 * come from traps.rs through `const`/`sym` operands.
 *
 * What Xen (and ringvisor) leave on the guest kernel stack when entering a
 * trap-table handler or callback, lowest address first ("%rsp->"):
 *
 *   | trap / event / syscall     | failsafe callback          |
 *   |----------------------------+----------------------------|
 *   | %rsp-> rcx                 | %rsp-> rcx                 |
 *   |        r11                 |        r11                 |
 *   |        [error code]        |        ds                  |
 *   |        rip                 |        es                  |
 *   |        cs | mask << 32     |        fs                  |
 *   |        rflags              |        gs                  |
 *   |        rsp                 |        rip                 |
 *   |        ss                  |        cs | mask << 32     |
 *   |                            |        rflags, rsp, ss     |
 *
 * rcx and r11 hold the interrupted values (Xen returns to the guest with
 * `sysret`, which needs both); "mask" is vcpu_info.evtchn_upcall_mask
 * before the bounce (bits 32-39 of the cs slot). The error code is there
 * only for hardware exceptions that have one (8, 10-14, 17, 21, 29, 30);
 * `int $N` never pushes one. A syscall callback's frame has no error code:
 * its rcx/r11 are the user return rip and rflags, as `syscall` leaves them.
 *
 * Every entry rebuilds the same TrapFrame (traps.rs), lowest first:
 *   r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi
 *   iret_flags vector error_code rip cs rflags rsp ss
 * and calls pvguest_trap(&mut TrapFrame), which may rewrite any of it.
 * The way out is HYPERVISOR_iret: the hypercall page's iret stub is
 * *jumped* to with `flags, rip, cs, rflags, rsp, ss` on the stack and
 * pushes rcx, r11, rax itself, making Xen's struct iret_context.
 */

/* One trap-table entry point: restore rcx/r11, add an error code if the
 * vector has none, push the vector, join the common path. */
.macro TRAP_ENTRY vec:req, has_ec:req
        .balign 16
pvguest_entry_\vec:
        pop     %rcx
        pop     %r11
        .if \has_ec == 0
        push    $0
        .endif
        push    $\vec
        jmp     pvguest_trap_common
.endm

        .text

        /* Vectors 0-31: the error-code set is the architectural one. */
        TRAP_ENTRY 0, 0
        TRAP_ENTRY 1, 0
        TRAP_ENTRY 2, 0
        TRAP_ENTRY 3, 0
        TRAP_ENTRY 4, 0
        TRAP_ENTRY 5, 0
        TRAP_ENTRY 6, 0
        TRAP_ENTRY 7, 0
        TRAP_ENTRY 8, 1
        TRAP_ENTRY 9, 0
        TRAP_ENTRY 10, 1
        TRAP_ENTRY 11, 1
        TRAP_ENTRY 12, 1
        TRAP_ENTRY 13, 1
        TRAP_ENTRY 14, 1
        TRAP_ENTRY 15, 0
        TRAP_ENTRY 16, 0
        TRAP_ENTRY 17, 1
        TRAP_ENTRY 18, 0
        TRAP_ENTRY 19, 0
        TRAP_ENTRY 20, 0
        TRAP_ENTRY 21, 1
        TRAP_ENTRY 22, 0
        TRAP_ENTRY 23, 0
        TRAP_ENTRY 24, 0
        TRAP_ENTRY 25, 0
        TRAP_ENTRY 26, 0
        TRAP_ENTRY 27, 0
        TRAP_ENTRY 28, 0
        TRAP_ENTRY 29, 1
        TRAP_ENTRY 30, 1
        TRAP_ENTRY 31, 0
        /* Software interrupts (no error code). */
        TRAP_ENTRY {vec_int80}, 0
        TRAP_ENTRY {vec_softint}, 0
        /* Callbacks given the trap frame shape (pseudo vectors >= 0x100). */
        TRAP_ENTRY {vec_event}, 0
        TRAP_ENTRY {vec_syscall}, 0

/*
 * Failsafe callback. In: Xen's failsafe frame (table above). The four
 * selectors are popped into pvguest_failsafe_segs[ds, es, fs, gs]; the
 * rest then has the trap shape, with pseudo vector VEC_FAILSAFE.
 */
        .balign 16
pvguest_entry_failsafe:
        pop     %rcx
        pop     %r11
        popq    {failsafe_segs}+0(%rip)
        popq    {failsafe_segs}+8(%rip)
        popq    {failsafe_segs}+16(%rip)
        popq    {failsafe_segs}+24(%rip)
        push    $0
        push    ${vec_failsafe}
        jmp     pvguest_trap_common

/*
 * Common path. In: %rsp -> vector, error code, rip, cs, rflags, rsp, ss;
 * every general register holds the interrupted value.
 * Out: HYPERVISOR_iret to whatever pvguest_trap left in the frame, with
 * TrapFrame.iret_flags as iret_context.flags (0 or VGCF_in_syscall).
 */
        .balign 16
pvguest_trap_common:
        cld                             /* the interrupted code may have set DF; Rust code wants it clear */
        push    $0                      /* iret_flags */
        push    %rdi
        push    %rsi
        push    %rdx
        push    %rcx
        push    %rax
        push    %r8
        push    %r9
        push    %r10
        push    %r11
        push    %rbx
        push    %rbp
        push    %r12
        push    %r13
        push    %r14
        push    %r15

        mov     %rsp, %rdi              /* &mut TrapFrame */
        mov     %rsp, %rbx              /* callee-saved: survives the call */
        and     $-16, %rsp              /* SysV: 16-byte aligned at the call */
        xor     %ebp, %ebp
        call    {trap}
        mov     %rbx, %rsp

        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbp
        pop     %rbx
        pop     %r11
        pop     %r10
        pop     %r9
        pop     %r8
        pop     %rax
        pop     %rcx
        pop     %rdx
        pop     %rsi
        pop     %rdi
        /* %rsp -> iret_flags, vector, error_code, rip...: put iret_flags
         * in the error-code slot, right below rip, and drop the rest. */
        push    %rax
        mov     8(%rsp), %rax
        mov     %rax, {ec_minus_flags}+8(%rsp)
        pop     %rax
        add     ${ec_minus_flags}, %rsp
        jmp     hypercall_page + {iret_offset}

/* Entry addresses by index (see traps::ENTRY_VECTORS for the order). */
        .pushsection .rodata, "a", @progbits
        .balign 8
        .globl  pvguest_entry_table
pvguest_entry_table:
        .quad   pvguest_entry_0, pvguest_entry_1, pvguest_entry_2, pvguest_entry_3
        .quad   pvguest_entry_4, pvguest_entry_5, pvguest_entry_6, pvguest_entry_7
        .quad   pvguest_entry_8, pvguest_entry_9, pvguest_entry_10, pvguest_entry_11
        .quad   pvguest_entry_12, pvguest_entry_13, pvguest_entry_14, pvguest_entry_15
        .quad   pvguest_entry_16, pvguest_entry_17, pvguest_entry_18, pvguest_entry_19
        .quad   pvguest_entry_20, pvguest_entry_21, pvguest_entry_22, pvguest_entry_23
        .quad   pvguest_entry_24, pvguest_entry_25, pvguest_entry_26, pvguest_entry_27
        .quad   pvguest_entry_28, pvguest_entry_29, pvguest_entry_30, pvguest_entry_31
        .quad   pvguest_entry_{vec_int80}, pvguest_entry_{vec_softint}
        .quad   pvguest_entry_{vec_event}, pvguest_entry_{vec_syscall}
        .quad   pvguest_entry_failsafe
        .popsection

/*
 * u64 pvguest_catch(void (*f)(void *), void *ctx)
 *
 * Calls f(ctx) and returns 0 when it returns. A trap taken meanwhile can
 * "unwind" instead (traps.rs): it resumes at pvguest_catch_resume with
 * %rsp = pvguest_catch_rsp and a non-zero %rax, through HYPERVISOR_iret.
 * The callee-saved registers are the ones pushed here, so whatever f did
 * to them is undone either way. Not reentrant: one catch at a time.
 */
        .balign 16
        .globl  pvguest_catch
pvguest_catch:
        push    %rbp
        mov     %rsp, %rbp
        push    %rbx
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        sub     $8, %rsp                /* 16-byte aligned for the call */
        mov     %rsp, {catch_rsp}(%rip)
        mov     %rdi, %rax
        mov     %rsi, %rdi
        call    *%rax
        xor     %eax, %eax
        .globl  pvguest_catch_resume
pvguest_catch_resume:
        add     $8, %rsp
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbx
        pop     %rbp
        ret

/*
 * User-mode trampoline: the first instruction run in guest user mode by
 * traps::run_user. In: %rbx = fn(void *), %r12 = its argument (both
 * callee-saved, so neither the iret hypercall nor f clobbers them), %rsp =
 * the user stack top (16-byte aligned). Calls f(arg), then returns to the
 * kernel with `int3`: #BP has a DPL-3 gate in every hypervisor's IDT, so
 * this works even where `int $N` from ring 3 takes the #GP path (whose
 * error code QEMU's TCG gets wrong). The #BP handler recognises the return
 * by its rip: pvguest_user_ret2kern, the address after this int3.
 */
        .balign 16
        .globl  pvguest_user_trampoline
pvguest_user_trampoline:
        mov     %r12, %rdi
        call    *%rbx
        int3
        .globl  pvguest_user_ret2kern
pvguest_user_ret2kern:
        ud2
