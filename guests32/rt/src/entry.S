/*
 * Ring-1 entry points for Xen's 32-bit PV bounces, the catch/unwind helper
 * and the ring-3 entry. AT&T syntax; constants and symbols come from
 * traps.rs through `const`/`sym` operands.
 *
 * What 64-bit Xen writes on the guest's ring-1 stack when it enters a
 * trap-table handler or callback of a 32-bit guest
 * (compat_create_bounce_frame, xen/arch/x86/x86_64/compat/entry.S:
 * "[ERRCODE,] EIP, CS, EFLAGS, [ESP, SS]"), lowest address first
 * ("%esp->"):
 *
 *   | from ring 1 (kernel)   | from ring 3 (user)     | failsafe callback   |
 *   |------------------------+------------------------+---------------------|
 *   | %esp-> [error code]    | %esp-> [error code]    | %esp-> ds           |
 *   |        eip             |        eip             |        es           |
 *   |        cs | mask << 16 |        cs | mask << 16 |        fs           |
 *   |        eflags          |        eflags          |        gs           |
 *   |  (the interrupted      |        esp             |        eip          |
 *   |   stack goes on here)  |        ss              |        cs | mask<<16|
 *   |                        |  (top of the stack_    |        eflags       |
 *   |                        |   switch stack)        |        [esp, ss]    |
 *
 * From ring 1 the frame goes right below the interrupted %esp on the
 * interrupted %ss; from ring 2/3 (Xen tests `cs & 2`) on the stack given
 * to stack_switch, with the interrupted esp and ss added. "mask" is
 * vcpu_info.evtchn_upcall_mask before the bounce, in bits 16-23 of the cs
 * slot; eflags.IF in the frame is !mask (the virtual IF). The error code
 * is there only for hardware exceptions that have one (8, 10-14, 17, 21,
 * 29, 30); `int $N` never pushes one, nor do the event and failsafe
 * callbacks.
 *
 * Every entry pushes vector (and a 0 error code where the frame has none)
 * and joins the common path, which makes the TrapFrame of traps.rs,
 * lowest first:
 *   edi esi ebp esp' ebx edx ecx eax   (pushal)
 *   ds es fs gs                         (the interrupted selectors)
 *   exit vector error_code eip cs eflags
 * and calls pvguest32_trap(&TrapFrame), with %ds/%es = FLAT_RING1_DS.
 * pvguest32_trap either unwinds (pvguest32_longjmp, never returning) or
 * returns with TrapFrame.exit saying how to leave:
 *   0: a native `iret` (ring 1 -> ring 1 pops eip, cs, eflags; ring 1 ->
 *      ring 3 also esp, ss). The upcall mask is left as it is.
 *   1: HYPERVISOR_iret: *jump* to the hypercall page's iret stub (which
 *      pushes %eax) with the frame in place: Xen's compat_iret reads eax,
 *      eip, cs, eflags (and esp, ss when returning to ring 2/3), sets the
 *      upcall mask to !eflags.IF and delivers pending events on its way out.
 */

.macro TRAP_ENTRY vec:req, has_ec:req
        .balign 16
pvguest32_entry_\vec:
        .if \has_ec == 0
        push    $0
        .endif
        push    $\vec
        jmp     pvguest32_trap_common
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
        /* The event callback has the trap shape without error code. */
        TRAP_ENTRY {vec_event}, 0

/*
 * Failsafe callback. In: Xen's failsafe frame (table above). The four
 * selectors are popped into failsafe_segs[ds, es, fs, gs]; the rest then
 * has the trap shape, with pseudo vector VEC_FAILSAFE.
 */
        .balign 16
pvguest32_entry_failsafe:
        popl    {failsafe_segs}+0
        popl    {failsafe_segs}+4
        popl    {failsafe_segs}+8
        popl    {failsafe_segs}+12
        push    $0
        push    ${vec_failsafe}
        jmp     pvguest32_trap_common

/*
 * Common path. In: %esp -> vector, error code, eip, cs, eflags[, esp, ss];
 * every general register and selector holds the interrupted value.
 */
        .balign 16
pvguest32_trap_common:
        cld                             /* the interrupted code may have set DF; Rust code wants it clear */
        push    $0                      /* exit: set by pvguest32_trap */
        push    %gs
        push    %fs
        push    %es
        push    %ds
        pushal

        mov     %esp, %ebx              /* &TrapFrame, callee-saved */
        mov     ${ring1_ds}, %eax       /* user mode may have left any  */
        mov     %eax, %ds               /* (or a null) data selector    */
        mov     %eax, %es
        cld
        xor     %ebp, %ebp              /* end of the frame-pointer chain */
        and     $-16, %esp              /* i386 SysV: 16-byte aligned at */
        sub     $12, %esp               /* the call                      */
        push    %ebx
        call    {trap}
        mov     %ebx, %esp

        popal
        pop     %ds
        pop     %es
        pop     %fs
        pop     %gs
        /* %esp -> exit, vector, error_code, eip, cs, eflags[, esp, ss] */
        testl   $1, (%esp)
        lea     12(%esp), %esp          /* lea leaves the flags alone */
        jnz     .Lexit_hypercall
        iret
.Lexit_hypercall:
        jmp     hypercall_page + {iret_offset}

/* Entry addresses by index (see traps::ENTRY_VECTORS for the order). */
        .pushsection .rodata, "a", @progbits
        .balign 4
        .globl  pvguest32_entry_table
pvguest32_entry_table:
        .long   pvguest32_entry_0, pvguest32_entry_1, pvguest32_entry_2, pvguest32_entry_3
        .long   pvguest32_entry_4, pvguest32_entry_5, pvguest32_entry_6, pvguest32_entry_7
        .long   pvguest32_entry_8, pvguest32_entry_9, pvguest32_entry_10, pvguest32_entry_11
        .long   pvguest32_entry_12, pvguest32_entry_13, pvguest32_entry_14, pvguest32_entry_15
        .long   pvguest32_entry_16, pvguest32_entry_17, pvguest32_entry_18, pvguest32_entry_19
        .long   pvguest32_entry_20, pvguest32_entry_21, pvguest32_entry_22, pvguest32_entry_23
        .long   pvguest32_entry_24, pvguest32_entry_25, pvguest32_entry_26, pvguest32_entry_27
        .long   pvguest32_entry_28, pvguest32_entry_29, pvguest32_entry_30, pvguest32_entry_31
        .long   pvguest32_entry_{vec_int80}, pvguest32_entry_{vec_softint}
        .long   pvguest32_entry_{vec_event}, pvguest32_entry_failsafe
        .popsection

/*
 * u32 pvguest32_catch(void (*f)(void *), void *ctx), cdecl.
 *
 * Calls f(ctx) and returns 0 when it returns. A trap taken meanwhile can
 * "unwind" instead (traps.rs): pvguest32_longjmp(code) resumes at
 * pvguest32_catch_resume with this call's %ebp and returns `code`. Both
 * run in ring 1, so unwinding is a plain jump: no iret, nothing for the
 * hypervisor to do. The callee-saved registers are the ones pushed here,
 * so whatever f did to them is undone either way. One catch at a time.
 */
        .balign 16
        .globl  pvguest32_catch
pvguest32_catch:
        push    %ebp
        mov     %esp, %ebp
        push    %ebx
        push    %esi
        push    %edi
        mov     %ebp, {catch_ebp}
        mov     8(%ebp), %eax           /* f */
        mov     12(%ebp), %ecx          /* ctx */
        and     $-16, %esp
        sub     $12, %esp
        push    %ecx
        call    *%eax
        xor     %eax, %eax
pvguest32_catch_resume:
        lea     -12(%ebp), %esp
        pop     %edi
        pop     %esi
        pop     %ebx
        pop     %ebp
        ret

/* noreturn pvguest32_longjmp(u32 code), cdecl: from a handler (ring 1, any
 * stack) back into the active pvguest32_catch. */
        .balign 16
        .globl  pvguest32_longjmp
pvguest32_longjmp:
        mov     4(%esp), %eax
        mov     ${ring1_ds}, %ecx
        mov     %ecx, %ds
        mov     %ecx, %es
        mov     {catch_ebp}, %ebp
        jmp     pvguest32_catch_resume

/*
 * noreturn pvguest32_enter_user(void (*entry)(void), u32 esp), cdecl, from
 * ring 1: a native `iret` to ring 3 at the user trampoline (cs
 * FLAT_RING3_CS, ss:esp FLAT_RING3_SS:esp, eflags with IF), with %ds/%es =
 * FLAT_RING3_DS first (an iret to ring 3 nulls data selectors whose DPL is
 * below 3, and a null %ds faults in compatibility mode). entry travels in
 * %ebx, which the iret does not touch.
 */
        .balign 16
        .globl  pvguest32_enter_user
pvguest32_enter_user:
        mov     4(%esp), %ebx
        mov     8(%esp), %ecx
        mov     ${ring3_ds}, %eax
        mov     %eax, %ds
        mov     %eax, %es
        push    ${ring3_ss}
        push    %ecx
        push    ${user_eflags}
        push    ${ring3_cs}
        push    $pvguest32_user_trampoline
        iret

/*
 * User-mode trampoline, on a user page (.user.text): the first instruction
 * run in ring 3. In: %ebx = the user function (itself in .user.text),
 * %esp = the user stack top. Calls it, then returns to the kernel with
 * `int3`: the #BP entry of the trap table has DPL 3. The #BP handler
 * recognises the return by its eip: pvguest32_user_ret2kern, the address
 * after this int3.
 */
        .pushsection .user.text, "ax", @progbits
        .balign 16
        .globl  pvguest32_user_trampoline
pvguest32_user_trampoline:
        call    *%ebx
        int3
        .globl  pvguest32_user_ret2kern
pvguest32_user_ret2kern:
        ud2
        .popsection
