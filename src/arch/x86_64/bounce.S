/* The bounce and HYPERVISOR_iret of a 64-bit guest kernel in asm, for the
 * common case only (Xen: create_bounce_frame, and do_iret's common case).
 * Both make every test first, with nothing changed, and go on to the
 * Rust quick way (pv::fast_trap) at the first "no": that way does the
 * same thing in general, says why when it cannot, and keeps the unusual
 * cases (user mode, tracing, a frame crossing a page, an unmapped guest
 * stack, a pending upcall...). Part of idt.rs's global_asm (entry.S's
 * operands and macros).
 *
 * The guest memory touched (the frame written, the instruction and the
 * iret context read) is one page of the guests' half (GUEST_HALF_PAGE,
 * as idt.rs guest_half_page) under the vCPU's own CR3, read or written by
 * the CPU's walk with EFLAGS.AC set only around the access and only where
 * SMAP exists (as guest_copy). An access the CPU refuses (#PF, #GP)
 * resumes at the range's fixup (idt.rs guest_access_fixup), which
 * declines: the Rust way then tries the software walk, the failsafe, the
 * crash, as before.
 *
 * Why no domain lock: as syscall_entry's constant answers, these read and
 * write only the running vCPU (its mode, trap table, in_failsafe,
 * failsafe_streak: only the CPU running it writes those), its vcpu_info's
 * upcall bytes (the guest's memory, as the Rust way's atomics) and the
 * guest's stack. A crash or a reschedule from another CPU is a kick: it
 * lands as an interrupt once the guest runs, as for any other entry. */

/* \va..\va+\len-1 is one page of the guests' half: inside one page,
 * canonical, outside the hypervisor's range [HV_START, HV_START + 2^43).
 * Else to \no. Clobbers \tmp. */
.macro GUEST_HALF_PAGE va, len, tmp, no
    mov \va, \tmp
    and $0xfff, \tmp
    cmp $4096-\len, \tmp
    ja \no
    mov \va, \tmp                 /* canonical: bits 63..47 alike */
    sar $47, \tmp
    inc \tmp
    cmp $1, \tmp
    ja \no
    mov \va, \tmp
    shr $43, \tmp
    cmp ${HV_START_43}, \tmp
    je \no
.endm

/* \reg is canonical, else to \no. Clobbers \tmp. */
.macro CANONICAL reg, tmp, no
    mov \reg, \tmp
    sar $47, \tmp
    inc \tmp
    cmp $1, \tmp
    ja \no
.endm

/* The frame's IOPL bits are 0 (else to \no): the vCPU's virtual IOPL
 * is 0, or architectural_iopl is off (then it is not reported: Linux as
 * the initial domain runs with IOPL 1 and without the assist). \v = the
 * vCPU; clobbers \tmp. */
.macro IOPL_BITS_ZERO v, tmp, no
    cmpl $0, {VCPU_IOPL}(\v)
    je 1f
    mov %gs:{PC_IOPL_ASSIST}, \tmp
    test \tmp, \tmp
    jz \no
    cmpb $0, (\tmp)
    jne \no
1:
.endm

/* The state every asm quick way starts from, else to \no, nothing
 * changed: SMEP/SMAP as this CPU runs the hypervisor (CR4 has every bit
 * PC_CR4_PV32 names; else the full way, which stops on it), no trace
 * line wanted (the flags are exactly RECENT), no #DB hit of the
 * hypervisor's own to report, this CPU's work word 0, and a vCPU
 * published, into %rdi. Clobbers \tmp. */
.macro QUICK_STATE tmp, no
    mov %cr4, \tmp
    and %gs:{PC_CR4_PV32}, \tmp
    cmp %gs:{PC_CR4_PV32}, \tmp
    jne \no
    cmpl ${TRACE_RECENT}, {TRACE_FLAGS}(%rip)
    jne \no
    cmpq $0, {HV_HITS}(%rip)
    jne \no
    cmpq $0, %gs:{PC_WORK}
    jne \no
    mov %gs:{PC_VCPU}, %rdi
    test %rdi, %rdi
    jz \no
.endm

.macro STAC
    testl ${CR4_SMAP}, %gs:{PC_CR4_PV32}
    jz 1f
    stac                          /* only where SMAP exists (else #UD) */
1:
.endm

.macro CLAC
    testl ${CR4_SMAP}, %gs:{PC_CR4_PV32}
    jz 1f
    clac
1:
.endm

/* bounce_quick's steps 2-5 (from the trap-table entry on), for a
 * vector without an error code (\ec = 0: 7 words) or with one (\ec = 1:
 * 8 words, the error code after R11, as the guest's kernel sees it: the U
 * bit clear, the CPU saw ring 3). The stores are \store..\store_end
 * (idt.rs guest_access_fixup). */
.macro BOUNCE64_TAIL ec, store
    mov {BQ}(%rsp), %ecx
    shl ${TE_SHIFT}, %ecx
    lea {VCPU_TRAP_TABLE}(%rdi,%rcx), %r8
    mov {TE_ADDRESS}(%r8), %rcx   /* rcx = the handler */
    movzbl {TE_FLAGS}(%r8), %r8d  /* r8 = its flags */
    test %rcx, %rcx
    jz .Lbq_no
    CANONICAL %rcx, %rdx, .Lbq_no
    mov {BQ}+{IF_RSP}(%rsp), %rdx /* 3. */
    and $-16, %rdx
    sub $56+8*\ec, %rdx           /* rdx = the frame's address */
    GUEST_HALF_PAGE %rdx, 56+8*\ec, %rax, .Lbq_no
    test ${TI_IF}, %r8b           /* events masked in the handler? */
    jnz 2f
    movzwl {VI_UPCALL}(%rsi), %eax /* pending and unmasked: 1..=0xff */
    dec %eax
    cmp $0xff, %eax
    jb .Lbq_no
2:  movzbl {VI_MASK}(%rsi), %r9d  /* 4. the saved mask, read once */
    mov {BQ}+{IF_RFLAGS}(%rsp), %rax
    and $~0x3200, %rax            /* IF and IOPL as the guest sees them */
    test %r9d, %r9d
    jnz 3f
    or $0x200, %rax
3:  shl $32, %r9
    or {BQ}+{IF_CS}(%rsp), %r9
    and $-4, %r9                  /* r9 = CS, RPL 0, | mask << 32 */
    STAC
.global \store
\store:                           /* a refused store: \store\()_fault */
    mov %r9, 24+8*\ec(%rdx)
    mov %rax, 32+8*\ec(%rdx)
    mov 40(%rsp), %rax            /* the guest's RCX */
    mov %rax, 0(%rdx)
    mov %r11, 8(%rdx)
.if \ec
    mov {BQ}+8(%rsp), %rax        /* the error code, U clear: its kernel's */
    and $~4, %rax
    mov %rax, 16(%rdx)
.endif
    mov {BQ}+{IF_RIP}(%rsp), %rax
    mov %rax, 16+8*\ec(%rdx)
    mov {BQ}+{IF_RSP}(%rsp), %rax
    mov %rax, 40+8*\ec(%rdx)
    mov {BQ}+{IF_SS}(%rsp), %rax
    mov %rax, 48+8*\ec(%rdx)
.global \store\()_end
\store\()_end:
    CLAC
    test ${TI_IF}, %r8b           /* 5. */
    jz 4f
    movb $1, {VI_MASK}(%rsi)
4:  movb $0, {VCPU_IN_FAILSAFE}(%rdi)
    movl $0, {VCPU_FAILSAFE_STREAK}(%rdi)
    RECORD_SLOT %rsi, %rax, %rsi
    mov {BQ}(%rsp), %eax          /* the vector's What::Named */
    shl $4, %eax
    lea {BOUNCE_WHAT}(%rip), %r9
    mov (%r9,%rax), %r8
    mov %r8, {REC_WHAT}(%rsi)
    mov 8(%r9,%rax), %r8
    mov %r8, {REC_WHAT}+8(%rsi)
    mov %gs:{PC_IDS}, %eax
    mov %eax, {REC_IDS}(%rsi)
    mov {BQ}+{IF_RIP}(%rsp), %rax
    mov %rax, {REC_A}(%rsi)
.if \ec
    mov {BQ}+8(%rsp), %rax        /* the error code the guest sees */
    and $~4, %rax
    mov %rax, {REC_B}(%rsi)
.else
    movq $0, {REC_B}(%rsi)        /* no error code */
.endif
    incq {SLOT_SEQ}(%rsi)         /* even: whole */
    mov %rcx, {BQ}+{IF_RIP}(%rsp) /* into the handler */
    movq ${GUEST_CS}, {BQ}+{IF_CS}(%rsp)
    andq $~{RFLAGS_HANDLER_CLEAR}, {BQ}+{IF_RFLAGS}(%rsp)
    orq $0x202, {BQ}+{IF_RFLAGS}(%rsp)
    mov %rdx, {BQ}+{IF_RSP}(%rsp)
    movq ${GUEST_SS}, {BQ}+{IF_SS}(%rsp)
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp                 /* vector and error code */
    swapgs                        /* GS = the guest's */
    jmp ret_iretq                 /* with its fault fixup (idt.rs) */
.endm

/* Tour 04: a guest kernel's exception, bounced in asm
 * From exception_common, for #BP, #OF, #UD, #PF of a 64-bit guest (RAX pushed
 * on the stub's frame, EFLAGS.AC cleared). The walkthrough:
 *  1. Save what this uses (RCX..R9; RAX is), then the tests, nothing
 *     changed yet: SMEP/SMAP on (else the full way, which stops on it),
 *     no trace line wanted (the flags are exactly RECENT), no #DB hit to
 *     report, the work word 0, a vCPU in guest kernel mode (from user mode
 *     a bounce toggles the mode: the Rust way) whose frames report IOPL 0
 *     (IOPL_BITS_ZERO: no domain lock for vm_assist), CR3 its
 *     kernel table (the frame is written through the CPU's walk of it).
 *  2. The trap-table entry: a handler, canonical (else the Rust way).
 *     #UD: the instruction read (8 bytes, one page); the forced-emulation
 *     prefix `ud2; .ascii "xen"; cpuid` is emulated (step 6), anything
 *     else bounced. #PF (.Lbq_pf): not a write to a present page (that
 *     may be writable page tables: the Rust way), CR2 into the vCPU and
 *     its vcpu_info, and the frame with the error code (BOUNCE64_TAIL 1).
 *  3. Where the frame goes: the interrupted RSP (the kernel's stack)
 *     rounded down to 16, minus the 7 words (8 with an error code); one
 *     page of the guests' half.
 *     No upcall due once in the handler (pending and unmasked then: the
 *     Rust way, whose locked way out delivers it).
 *  4. The frame, as traps::build_frame makes it (docs/frames/): RCX, R11,
 *     [error code, U clear], RIP, CS with RPL 0 and the saved upcall mask in bits 32-39, RFLAGS
 *     with IF = !mask and IOPL 0, RSP, SS. Written by the CPU's walk; a
 *     refused store (the first one: one page) declines, nothing written.
 *  5. From here nothing declines: the events mask set if the trap-table
 *     entry asks (TI_IF), in_failsafe and the failsafe streak cleared (a
 *     bounce delivered is progress), the recent-calls record (vector's
 *     name, ids, the interrupted RIP), and the CPU's frame pointed at the
 *     handler on the flat kernel selectors, RFLAGS as enter_handler_on
 *     and the way out leave them (TF, NT, RF, VM, AC, IOPL cleared, IF
 *     on). Out by iretq (ret_iretq, with its fixup).
 * (Steps 2-5 are BOUNCE64_TAIL, once without an error code, once with.) */
.balign 16
bounce_quick:
    push %rcx                     /* 1. */
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    QUICK_STATE %rcx, .Lbq_no
    cmpb $0, {VCPU_KERNEL_MODE}(%rdi)
    je .Lbq_no
    IOPL_BITS_ZERO %rdi, %rcx, .Lbq_no
    mov %cr3, %rcx
    shr $12, %rcx
    cmp {VCPU_GUEST_TABLE}(%rdi), %rcx
    jne .Lbq_no
    mov %gs:{PC_VCPU_INFO}, %rsi  /* rsi = the vcpu_info */
    cmp ${VEC_UD}, %eax
    je .Lbq_ud
    ja .Lbq_pf                    /* (3, 4, 6, 14: above 6 is #PF) */
.Lbq_handler:                     /* 2. the vector's trap-table entry */
    BOUNCE64_TAIL 0, bounce_store
.Lbq_pf_handler:
    BOUNCE64_TAIL 1, bounce_pf_store

/* #UD (rsi = vcpu_info): the instruction's first 7 bytes against the
 * forced-emulation prefix (answers::FORCED_CPUID), read as the Rust way
 * reads them (8 bytes; fewer readable: the Rust way sorts it out). */
.Lbq_ud:
    mov {BQ}+{IF_RIP}(%rsp), %rdx
    GUEST_HALF_PAGE %rdx, 8, %rax, .Lbq_no
    STAC
.global bounce_fetch
bounce_fetch:                     /* refused: bounce_store_fault */
    mov (%rdx), %rax
.global bounce_fetch_end
bounce_fetch_end:
    CLAC
    shl $8, %rax                  /* the 8th byte out */
    movabs ${FORCED_CPUID_SHL8}, %r9
    cmp %r9, %rax
    jne .Lbq_handler              /* any other #UD: bounced */
/* 6. The forced-emulation cpuid: emulate::forced on the guest's registers
 * (rax, rbx, rcx, rdx = the policy's leaf eax, subleaf ecx; rip past the
 * 7 bytes), then the way out pv::fast_trap::leave takes: no upcall due,
 * the frame retcheck's flat case (the flat selectors, the new RIP
 * canonical), RFLAGS fixed up (IF on, IOPL 0, no VM or NT). */
    movzwl {VI_UPCALL}(%rsi), %eax
    dec %eax
    cmp $0xff, %eax
    jb .Lbq_no
    cmpq ${GUEST_CS}, {BQ}+{IF_CS}(%rsp)
    jne .Lbq_no
    cmpq ${GUEST_SS}, {BQ}+{IF_SS}(%rsp)
    jne .Lbq_no
    mov {BQ}+{IF_RIP}(%rsp), %rdx
    add $7, %rdx
    CANONICAL %rdx, %rax, .Lbq_no
    mov %rdx, {BQ}+{IF_RIP}(%rsp)
    push %r10                     /* a C call clobbers these too; with */
    push %r11                     /* them, RSP is 16-byte aligned */
    mov 16+48(%rsp), %edi         /* the guest's eax: the leaf */
    mov 16+40(%rsp), %esi         /* its ecx: the subleaf */
    cld
    call forced_cpuid             /* rax = eax | ebx << 32, rdx = ecx | edx << 32 */
    pop %r11
    pop %r10
    andq $~0x27000, {BQ}+{IF_RFLAGS}(%rsp) /* IOPL, NT, VM */
    orq $0x202, {BQ}+{IF_RFLAGS}(%rsp)
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    add $24, %rsp                 /* the guest's rdx, rcx, rax: results */
    mov %rax, %rbx
    shr $32, %rbx
    mov %eax, %eax
    mov %rdx, %rcx
    shr $32, %rdx
    mov %ecx, %ecx
    add $16, %rsp                 /* vector and error code */
    swapgs                        /* GS = the guest's */
    jmp ret_iretq

/* #PF (rsi = vcpu_info): as pv::fast_trap::page_fault, CR2 first, into
 * the vCPU and its vcpu_info (the Rust way stores the same if this
 * declines later; a refused frame store puts CR2 back, fixup below), then
 * the bounce with the error code. A write to a present page may be a
 * page-table write (writable page tables): the Rust way decides. */
.Lbq_pf:
    mov {BQ}+8(%rsp), %ecx
    and $3, %ecx
    cmp $3, %ecx
    je .Lbq_no
    mov %cr2, %rcx
    mov %rcx, {VCPU_CR2}(%rdi)
    mov %rcx, {VI_CR2}(%rsi)
    jmp .Lbq_pf_handler

.Lbq_no:                          /* not here: the Rust way, as it came */
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    jmp bounce_declined

/* A store or fetch above refused by the CPU (idt.rs guest_access_fixup
 * resumes here; EFLAGS.AC may be set): nothing was written. */
.global bounce_store_fault
bounce_store_fault:
    CLAC
    jmp .Lbq_no

/* The same for #PF's frame: CR2 is now the refused store's; the Rust way
 * reads the guest's again from the CPU. */
.global bounce_pf_store_fault
bounce_pf_store_fault:
    CLAC
    mov {VCPU_CR2}(%rdi), %rcx
    mov %rcx, %cr2
    jmp .Lbq_no

/* Tour 05: HYPERVISOR_iret in asm
 * From syscall_entry (a 64-bit guest's vCPU, kernel mode by the hint,
 * RAX = {NR_IRET}; RCX, R11 = the guest's RIP and RFLAGS at its
 * `syscall`, which the Rust way needs if this declines). The walkthrough:
 *  1. The five words of the iret frame reserved at the stack's top (the
 *     guest slot's, where ret_iretq's fixup looks), RCX, R11, RDX, RSI,
 *     RDI saved below; then the tests of bounce_quick's step 1, and the
 *     iret_context (9 words at the guest's RSP) one page of the guests'
 *     half under the kernel's CR3.
 *  2. Read by the CPU's walk: RIP..SS into the reserved words, FLAGS to
 *     RSI, RCX and R11 to themselves, RAX last (a refused read declines).
 *  3. What the Rust way (hypercall::iret_apply_with, then fast_trap::iret's
 *     way out) would do, where it is the common case, else decline: to
 *     user mode (CS RPL 3) only with user tables (new_user_baseptr; else
 *     the Rust way crashes the domain), CS (its low 16 bits; a bounce frame's has
 *     the saved mask above) | 3 and SS | 3 the flat selectors, RIP
 *     canonical, RFLAGS with bit 1 and none of IOPL, NT, VM (then RFLAGS |
 *     IF is what both the iret and the way out make of it), no upcall due
 *     under the mask the frame's IF gives.
 *  4. Committed: the events mask = !IF, in_failsafe cleared; to user
 *     mode, toggle_guest_mode (the GS bases swapped through the vCPU, the
 *     mode and the per-CPU hint, CR3 the user table if it differs); RAX the
 *     context's; with VGCF_in_syscall RCX = RIP and R11 = RFLAGS (as Xen's
 *     do_iret leaves them), back by sysretq unless RF is set; else by
 *     iretq with the context's RCX and R11. */
.balign 16
syscall_iret:
    CLAC                          /* EFLAGS.AC as guest_state_off */
    sub $40, %rsp                 /* 1. RIP, CS, RFLAGS, RSP, SS */
    push %rcx
    push %r11
    push %rdx
    push %rsi
    push %rdi
    QUICK_STATE %rdx, .Liret_no
    cmpb $0, {VCPU_KERNEL_MODE}(%rdi)
    je .Liret_no
    IOPL_BITS_ZERO %rdi, %rdx, .Liret_no
    mov %cr3, %rdx
    shr $12, %rdx
    cmp {VCPU_GUEST_TABLE}(%rdi), %rdx
    jne .Liret_no
    mov %gs:{PC_SCRATCH}, %rdx    /* the guest's RSP: the iret_context */
    GUEST_HALF_PAGE %rdx, {IC_SIZE}, %rax, .Liret_no
    STAC                          /* 2. */
.global iret_load
iret_load:                        /* a refused read: iret_load_fault */
    mov {IC_RIP}(%rdx), %rax
    mov %rax, {IR}+0(%rsp)
    mov {IC_CS}(%rdx), %rax
    mov %rax, {IR}+8(%rsp)
    mov {IC_RFLAGS}(%rdx), %rax
    mov %rax, {IR}+16(%rsp)
    mov {IC_RSP}(%rdx), %rax
    mov %rax, {IR}+24(%rsp)
    mov {IC_SS}(%rdx), %rax
    mov %rax, {IR}+32(%rsp)
    mov {IC_FLAGS}(%rdx), %rsi
    mov {IC_RCX}(%rdx), %rcx
    mov {IC_R11}(%rdx), %r11
    mov {IC_RAX}(%rdx), %rax
.global iret_load_end
iret_load_end:
    CLAC
    movzwl {IR}+8(%rsp), %edx     /* 3. CS (the selector: above it, the */
    test $3, %dl                  /* bounce's saved mask), flat */
    jz 4f
    cmpq $0, {VCPU_GUEST_TABLE_USER}(%rdi) /* to user mode: its tables */
    je .Liret_no
4:  or $3, %edx
    cmp ${GUEST_CS}, %edx
    jne .Liret_no
    mov {IR}+32(%rsp), %rdx       /* SS: flat */
    or $3, %rdx
    cmp ${GUEST_SS}, %rdx
    jne .Liret_no
    mov %rdx, {IR}+32(%rsp)
    mov {IR}+0(%rsp), %rdx
    CANONICAL %rdx, %rdx, .Liret_no
    mov {IR}+16(%rsp), %rdx       /* RFLAGS */
    test $0x27000, %edx           /* IOPL, NT, VM */
    jnz .Liret_no
    test $2, %dl
    jz .Liret_no
    test $0x200, %edx
    mov %gs:{PC_VCPU_INFO}, %rdx  /* (mov keeps the flags) */
    jz 1f                         /* IF clear: masked, nothing due */
    cmpb $0, {VI_UPCALL}(%rdx)    /* unmasked: nothing pending? */
    jne .Liret_no
    movb $0, {VI_MASK}(%rdx)      /* 4. */
    orq $0x200, {IR}+16(%rsp)
    jmp 2f
1:  movb $1, {VI_MASK}(%rdx)
    orq $0x200, {IR}+16(%rsp)
2:  movb $0, {VCPU_IN_FAILSAFE}(%rdi)
    testb $3, {IR}+8(%rsp)        /* to user mode: toggle_guest_mode */
    jz 5f
    push %rax
    push %rcx
    mov ${MSR_KERNEL_GS_BASE}, %ecx /* the guest's GS base while here */
    rdmsr
    mov %eax, {VCPU_GS_BASE_KERNEL}(%rdi)
    mov %edx, {VCPU_GS_BASE_KERNEL}+4(%rdi)
    mov {VCPU_GS_BASE_USER}(%rdi), %eax
    mov {VCPU_GS_BASE_USER}+4(%rdi), %edx
    wrmsr
    movb $0, {VCPU_KERNEL_MODE}(%rdi)
    movq $1, %gs:{PC_USER_MODE}
    mov {VCPU_GUEST_TABLE_USER}(%rdi), %rax
    cmp {VCPU_GUEST_TABLE}(%rdi), %rax
    je 6f                         /* one table for both: no CR3 write */
    shl $12, %rax
    mov %rax, %cr3
6:  pop %rcx
    pop %rax
5:  movq ${GUEST_CS}, {IR}+8(%rsp)
    test ${VGCF_IN_SYSCALL}, %esi
    jz 3f
    mov {IR}+0(%rsp), %rcx        /* as sysretq leaves them: RIP, RFLAGS */
    mov {IR}+16(%rsp), %r11
    test $0x10000, %r11d          /* RF set: by iretq, which keeps it */
    jnz 3f
    pop %rdi
    pop %rsi
    pop %rdx
    mov 16+24(%rsp), %rsp         /* the guest's RSP */
    swapgs                        /* GS = the guest's */
    sysretq
3:  pop %rdi
    pop %rsi
    pop %rdx
    add $16, %rsp                 /* the syscall's RCX, R11 */
    swapgs                        /* GS = the guest's */
    jmp ret_iretq                 /* with its fault fixup (idt.rs) */

.Liret_no:                        /* not here: the quick way, as it came */
    pop %rdi
    pop %rsi
    pop %rdx
    pop %r11
    pop %rcx
    add $40, %rsp
    mov ${NR_IRET}, %eax
    jmp syscall_quick_way

/* A read above refused by the CPU (idt.rs guest_access_fixup; EFLAGS.AC
 * may be set): the reserved words may hold part of it, nothing else
 * changed. */
.global iret_load_fault
iret_load_fault:
    CLAC
    jmp .Liret_no

/* Tour 07: the upcall after EVTCHNOP_send, in asm
 * From syscall_evtchn_way when idt.rs syscall_evtchn answered 4: the send
 * made, and pv::fast_trap::upcall_asm found the upcall due and the only
 * thing pending, under the domain's lock (the work word 0, the domain
 * alive, the vCPU up, not blocked, nothing injected, in kernel mode, an
 * event callback, canonical, left in the QuickRegs' ERRCODE; no trace
 * line wanted; frames that report IOPL 0). RSP = the QuickRegs, the
 * answer in its RAX, its VECTOR {VEC_SYSCALL_DONE}. What
 * event::deliver_upcall and the way out do, for this case; the same
 * stores as bounce_quick's (BOUNCE64_TAIL) without an error code. The
 * walkthrough:
 *  1. The tests left, nothing changed: the work word still 0, CR3 the
 *     kernel's table, the frame (the interrupted RSP rounded down to 16,
 *     minus 7 words) one page of the guests' half.
 *  2. The frame as traps::build_frame makes it (docs/frames/): RCX, R11,
 *     RIP, CS with RPL 0 and the saved upcall mask in bits 32-39, RFLAGS
 *     with IF = !mask and IOPL 0, RSP, SS; written by the CPU's walk, a
 *     refused store declines with nothing written.
 *  3. Committed: events masked (every upcall masks them: TBF_INTERRUPT),
 *     in_failsafe and the failsafe streak cleared, the recent-calls record
 *     ("event upcall", the interrupted RIP), the CPU's frame at the
 *     callback on the flat kernel selectors, RFLAGS as for a bounce; out
 *     by iretq, every register as the guest left it but RAX (the answer).
 * Any "no": the full TrapFrame, VEC_SYSCALL_DONE: the locked way out then
 * delivers the upcall, or takes the failsafe or the crash, as before. */
.balign 16
upcall_quick:
    cmpq $0, %gs:{PC_WORK}        /* 1. */
    jne .Lup_no
    mov %gs:{PC_VCPU}, %rdi
    mov %cr3, %rax
    shr $12, %rax
    cmp {VCPU_GUEST_TABLE}(%rdi), %rax
    jne .Lup_no
    mov {QR_RSP}(%rsp), %rdx
    and $-16, %rdx
    sub $56, %rdx                 /* rdx = the frame's address */
    GUEST_HALF_PAGE %rdx, 56, %rax, .Lup_no
    mov %gs:{PC_VCPU_INFO}, %rsi  /* 2. the saved mask, read once */
    movzbl {VI_MASK}(%rsi), %r9d
    mov {QR_RFLAGS}(%rsp), %rax
    and $~0x3200, %rax            /* IF and IOPL as the guest sees them */
    test %r9d, %r9d
    jnz 3f
    or $0x200, %rax
3:  shl $32, %r9
    or {QR_CS}(%rsp), %r9
    and $-4, %r9                  /* r9 = CS, RPL 0, | mask << 32 */
    STAC
.global upcall_store
upcall_store:                     /* a refused store: upcall_store_fault */
    mov %r9, 24(%rdx)
    mov %rax, 32(%rdx)
    mov {QR_RCX}(%rsp), %rax
    mov %rax, 0(%rdx)
    mov {QR_R11}(%rsp), %rax
    mov %rax, 8(%rdx)
    mov {QR_RIP}(%rsp), %rax
    mov %rax, 16(%rdx)
    mov {QR_RSP}(%rsp), %rax
    mov %rax, 40(%rdx)
    mov {QR_SS}(%rsp), %rax
    mov %rax, 48(%rdx)
.global upcall_store_end
upcall_store_end:
    CLAC
    movb $1, {VI_MASK}(%rsi)      /* 3. */
    movb $0, {VCPU_IN_FAILSAFE}(%rdi)
    movl $0, {VCPU_FAILSAFE_STREAK}(%rdi)
    RECORD_SLOT %rsi, %rax, %rsi
    mov {UPCALL_WHAT}(%rip), %rax
    mov %rax, {REC_WHAT}(%rsi)
    mov {UPCALL_WHAT}+8(%rip), %rax
    mov %rax, {REC_WHAT}+8(%rsi)
    mov %gs:{PC_IDS}, %eax
    mov %eax, {REC_IDS}(%rsi)
    mov {QR_RIP}(%rsp), %rax
    mov %rax, {REC_A}(%rsi)
    movq $0, {REC_B}(%rsi)
    incq {SLOT_SEQ}(%rsi)         /* even: whole */
    mov {QR_EC}(%rsp), %rax       /* into the callback */
    mov %rax, {QR_RIP}(%rsp)
    movq ${GUEST_CS}, {QR_CS}(%rsp)
    mov {QR_RFLAGS}(%rsp), %rax
    and $~{RFLAGS_HANDLER_CLEAR}, %rax
    or $0x202, %rax
    mov %rax, {QR_RFLAGS}(%rsp)
    mov %rdx, {QR_RSP}(%rsp)
    movq ${GUEST_SS}, {QR_SS}(%rsp)
    POP_QUICK_REGS                /* RAX: the answer */
    add $16, %rsp                 /* vector and error code */
    swapgs                        /* GS = the guest's */
    jmp ret_iretq                 /* with its fault fixup (idt.rs) */

.Lup_no:                          /* not here: the full way, as it came */
    movq $0, {QR_EC}(%rsp)        /* (the callback) */
    mov $2, %eax
    jmp syscall_evtchn_back

/* A store above refused by the CPU (idt.rs guest_access_fixup; EFLAGS.AC
 * may be set): nothing written. */
.global upcall_store_fault
upcall_store_fault:
    CLAC
    jmp .Lup_no

/* Tour 06: a user `syscall`, bounced in asm
 * From syscall_entry when the per-CPU hint says guest user mode (RCX, R11
 * = the user's RIP and RFLAGS, its RSP in PC_SCRATCH): what
 * pv::fast_trap::user_syscall does, for the common case, else declines
 * to syscall_user (the full TrapFrame, the Rust way) with nothing
 * changed. The walkthrough:
 *  1. The iret frame's five words reserved at the stack's top, RAX..R9
 *     saved below. The tests of bounce_quick's step 1, but user mode (by
 *     the vCPU's own flag) with its user tables in CR3; a syscall callback,
 *     canonical; the frame's place, the stack_switch stack (kernel_sp
 *     rounded down to 16, minus 7 words), one page of the guests' half;
 *     no upcall due once in the callback.
 *  2. The words as traps::build_frame makes them from user mode: RCX,
 *     R11, RIP (= RCX), CS (the user's, 3) | mask << 32, RFLAGS (= R11,
 *     IF = !mask, IOPL 0), RSP, SS. CR3 the kernel table first (if it
 *     differs: toggle_guest_mode's CR3 write, early), then the stores by
 *     the CPU's walk; a refused one puts the user table back and declines.
 *  3. The rest of toggle_guest_mode (the GS bases swapped through the
 *     vCPU, kernel mode, the hint), the mask if the callback asks, the
 *     failsafe state cleared, the record ("syscall", the user RIP), the
 *     CPU's frame at the callback on the flat kernel selectors with RFLAGS
 *     as for a bounce; out by iretq. */
.balign 16
syscall_user_quick:
    CLAC                          /* EFLAGS.AC as guest_state_off */
    sub $40, %rsp                 /* 1. RIP, CS, RFLAGS, RSP, SS */
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    QUICK_STATE %rdx, .Lus_no
    cmpb $0, {VCPU_KERNEL_MODE}(%rdi)
    jne .Lus_no                   /* the hint was stale: the Rust way */
    IOPL_BITS_ZERO %rdi, %rdx, .Lus_no
    mov {VCPU_GUEST_TABLE_USER}(%rdi), %r8
    test %r8, %r8
    jz .Lus_no
    mov %cr3, %rdx
    shr $12, %rdx
    cmp %r8, %rdx
    jne .Lus_no
    mov {VCPU_SYSCALL_CB}+{CB_ADDRESS}(%rdi), %r8 /* r8 = the callback */
    test %r8, %r8
    jz .Lus_no                    /* none: the Rust way's #UD */
    CANONICAL %r8, %rdx, .Lus_no
    mov {VCPU_KERNEL_SP}(%rdi), %rdx
    and $-16, %rdx
    sub $56, %rdx                 /* rdx = the frame's address */
    GUEST_HALF_PAGE %rdx, 56, %rax, .Lus_no
    mov %gs:{PC_VCPU_INFO}, %rsi
    cmpb $0, {VCPU_SYSCALL_CB}+{CB_MASK}(%rdi)
    jne 2f                        /* events masked in the callback */
    movzwl {VI_UPCALL}(%rsi), %eax /* pending and unmasked: 1..=0xff */
    dec %eax
    cmp $0xff, %eax
    jb .Lus_no
2:  movzbl {VI_MASK}(%rsi), %r9d  /* 2. the saved mask, read once */
    mov %r11, %rax
    and $~0x3200, %rax
    test %r9d, %r9d
    jnz 3f
    or $0x200, %rax
3:  shl $32, %r9
    or ${GUEST_CS}, %r9           /* the user's CS, RPL 3 */
    mov {VCPU_GUEST_TABLE}(%rdi), %rcx
    cmp {VCPU_GUEST_TABLE_USER}(%rdi), %rcx
    je 4f
    shl $12, %rcx
    mov %rcx, %cr3                /* the kernel's tables */
4:  STAC
.global user_store
user_store:                       /* a refused store: user_store_fault */
    mov %r9, 24(%rdx)
    mov %rax, 32(%rdx)
    mov 40(%rsp), %rax            /* the user's RIP (its RCX) */
    mov %rax, 0(%rdx)
    mov %rax, 16(%rdx)
    mov %r11, 8(%rdx)
    mov %gs:{PC_SCRATCH}, %rax
    mov %rax, 40(%rdx)
    movq ${GUEST_SS}, 48(%rdx)
.global user_store_end
user_store_end:
    CLAC
    mov %rdx, %r9                 /* 3. (rdmsr, wrmsr use rdx) */
    mov ${MSR_KERNEL_GS_BASE}, %ecx
    rdmsr
    mov %eax, {VCPU_GS_BASE_USER}(%rdi)
    mov %edx, {VCPU_GS_BASE_USER}+4(%rdi)
    mov {VCPU_GS_BASE_KERNEL}(%rdi), %eax
    mov {VCPU_GS_BASE_KERNEL}+4(%rdi), %edx
    wrmsr
    movb $1, {VCPU_KERNEL_MODE}(%rdi)
    movq $0, %gs:{PC_USER_MODE}
    cmpb $0, {VCPU_SYSCALL_CB}+{CB_MASK}(%rdi)
    je 5f
    movb $1, {VI_MASK}(%rsi)
5:  movb $0, {VCPU_IN_FAILSAFE}(%rdi)
    movl $0, {VCPU_FAILSAFE_STREAK}(%rdi)
    RECORD_SLOT %rsi, %rax, %rsi
    mov {SYSCALL_WHAT}(%rip), %rax
    mov %rax, {REC_WHAT}(%rsi)
    mov {SYSCALL_WHAT}+8(%rip), %rax
    mov %rax, {REC_WHAT}+8(%rsi)
    mov %gs:{PC_IDS}, %eax
    mov %eax, {REC_IDS}(%rsi)
    mov 40(%rsp), %rax
    mov %rax, {REC_A}(%rsi)
    movq $0, {REC_B}(%rsi)
    incq {SLOT_SEQ}(%rsi)         /* even: whole */
    mov %r8, {US}+0(%rsp)         /* into the callback */
    movq ${GUEST_CS}, {US}+8(%rsp)
    mov %r11, %rax
    and $~{RFLAGS_HANDLER_CLEAR}, %rax
    or $0x202, %rax
    mov %rax, {US}+16(%rsp)
    mov %r9, {US}+24(%rsp)
    movq ${GUEST_SS}, {US}+32(%rsp)
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    swapgs                        /* GS = the guest's */
    jmp ret_iretq                 /* with its fault fixup (idt.rs) */

.Lus_no:                          /* not here: the Rust way, as it came */
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $40, %rsp
    jmp syscall_user

/* A store above refused by the CPU (idt.rs guest_access_fixup; EFLAGS.AC
 * may be set): nothing written; the user tables back in CR3. */
.global user_store_fault
user_store_fault:
    CLAC
    mov {VCPU_GUEST_TABLE_USER}(%rdi), %rcx
    shl $12, %rcx
    mov %rcx, %cr3
    jmp .Lus_no

/* bounce_quick32's steps 2-5 (from the trap-table entry on; eax = the
 * vector), for a vector without an error code (\ec = 0: three 32-bit
 * words) or with one (\ec = 1, #PF: four, the error code first and as the
 * CPU gave it: a ring-1 kernel is the CPU's supervisor, its U bit is
 * already clear). The stores are \store..\store_end (idt.rs
 * guest_access_fixup). */
.macro BOUNCE32_TAIL ec, store
    shl ${TE_SHIFT}, %eax         /* 2. the vector's trap-table entry */
    lea {VCPU_TRAP_TABLE}(%rdi,%rax), %r8
    mov {TE_ADDRESS}(%r8), %rcx   /* rcx = the handler */
    test %rcx, %rcx
    jz .Lb32_no
    mov %rcx, %rax
    shr $32, %rax                 /* below 4 GiB */
    jnz .Lb32_no
    movzwl {TE_CS}(%r8), %eax
    test %eax, %eax
    jz 1f
    cmp ${GUEST32_CS1}, %eax
    jne .Lb32_no
1:  movzbl {TE_FLAGS}(%r8), %r8d  /* r8 = its flags */
    mov {BQ}+{IF_RSP}(%rsp), %edx /* 3. ESP, zero-extended */
    sub $12+4*\ec, %rdx
    jb .Lb32_no                   /* below 0 */
    GUEST_HALF_PAGE %rdx, 12+4*\ec, %rax, .Lb32_no
    mov %gs:{PC_VCPU_INFO}, %rsi
    test ${TI_IF}, %r8b
    jnz 2f
    movzwl {VI_UPCALL}(%rsi), %eax
    dec %eax
    cmp $0xff, %eax
    jb .Lb32_no
2:
.if \ec
    mov %cr2, %rax                /* every test passed: CR2 for the guest */
    mov %rax, {VCPU_CR2}(%rdi)
    mov %eax, {VI32_CR2}(%rsi)    /* the 32-bit vcpu_info's arch.cr2 */
.endif
    movzbl {VI_MASK}(%rsi), %r9d  /* 4. the saved mask, read once */
    mov {BQ}+{IF_RFLAGS}(%rsp), %eax
    and $~0x3200, %eax
    test %r9d, %r9d
    jnz 3f
    or $0x200, %eax
3:  shl $16, %r9d
    or ${GUEST32_CS1}, %r9d       /* CS | mask << 16 */
    STAC
.global \store
\store:                           /* a refused store: \store\()_fault */
    mov %r9d, 4+4*\ec(%rdx)
    mov %eax, 8+4*\ec(%rdx)
    mov {BQ}+{IF_RIP}(%rsp), %eax
    mov %eax, 4*\ec(%rdx)
.if \ec
    mov {BQ}+8(%rsp), %eax        /* the error code */
    mov %eax, 0(%rdx)
.endif
.global \store\()_end
\store\()_end:
    CLAC
    test ${TI_IF}, %r8b           /* 5. */
    jz 4f
    movb $1, {VI_MASK}(%rsi)
4:  movb $1, {VCPU_KERNEL_MODE}(%rdi) /* ring 1: its kernel */
    movb $0, {VCPU_IN_FAILSAFE}(%rdi)
    movl $0, {VCPU_FAILSAFE_STREAK}(%rdi)
    RECORD_SLOT %rsi, %rax, %rsi
    mov {BQ}(%rsp), %eax          /* the vector's What::Named */
    shl $4, %eax
    lea {BOUNCE_WHAT}(%rip), %r9
    mov (%r9,%rax), %r8
    mov %r8, {REC_WHAT}(%rsi)
    mov 8(%r9,%rax), %r8
    mov %r8, {REC_WHAT}+8(%rsi)
    mov %gs:{PC_IDS}, %eax
    mov %eax, {REC_IDS}(%rsi)
    mov {BQ}+{IF_RIP}(%rsp), %rax
    mov %rax, {REC_A}(%rsi)
.if \ec
    mov {BQ}+8(%rsp), %rax        /* the error code the guest sees */
    mov %rax, {REC_B}(%rsi)
.else
    movq $0, {REC_B}(%rsi)        /* no error code */
.endif
    incq {SLOT_SEQ}(%rsi)         /* even: whole */
    mov %rcx, {BQ}+{IF_RIP}(%rsp) /* into the handler (CS, SS stay) */
    andq $~{RFLAGS_HANDLER_CLEAR}, {BQ}+{IF_RFLAGS}(%rsp)
    orq $0x202, {BQ}+{IF_RFLAGS}(%rsp)
    mov %rdx, {BQ}+{IF_RSP}(%rsp)
    mov %gs:{PC_CR4_PV32}, %rdx   /* SMEP/SMAP off for the guest */
    not %rdx
    mov %cr4, %rax
    and %rdx, %rax
    mov %rax, %cr4
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp                 /* vector and error code */
    swapgs                        /* GS = the guest's */
    jmp ret_iretq                 /* with its fault fixup (idt.rs) */
.endm

/* Tour 04: a 32-bit guest kernel's #BP/#OF/#PF, bounced in asm
 * From exception_common for a 32-bit guest (RAX pushed, SMEP/SMAP and
 * EFLAGS.AC restored; Xen: compat_create_bounce_frame). bounce_quick's
 * steps for a ring-1 kernel. The walkthrough:
 *  1. RCX..R9 saved; bounce_quick's tests, but kernel mode is the ring:
 *     interrupted on the flat ring-1 selectors (the frame's place and
 *     kernel mode follow from them: the interrupted stack, as
 *     traps::build_frame says for Width::W32), CR3 the vCPU's own table
 *     (compat_l4). #PF (.Lb32_pf): not a write to a present page (that
 *     may be writable page tables: the Rust way).
 *  2. The trap-table entry: a handler below 4 GiB on the flat ring-1 code
 *     selector (or a null one, which means it).
 *  3. The frame's place: below the interrupted ESP (no wrap below 0), in
 *     one page of the guests' half; no upcall due once in the handler.
 *     #PF: only now, every test passed, CR2 into the vCPU and into its
 *     32-bit vcpu_info's arch.cr2 (traps::set_cr2_at's place).
 *  4. The frame, as traps::build_frame makes it for Width::W32
 *     (docs/frames/): [error code,] EIP, CS | mask << 16, EFLAGS with
 *     IF = !mask and IOPL 0; written by the CPU's walk, a refused store
 *     (the first one: one page) declines with nothing written (#PF: the
 *     fixup puts the guest's CR2 back in the CPU, where the Rust way reads
 *     it again and stores the same in the vCPU and its vcpu_info).
 *  5. Committed: the mask if asked, kernel mode (ring 1), the failsafe
 *     state cleared, the recent-calls record (with the error code for a
 *     #PF), the CPU's frame at the handler on the same selectors. Out as
 *     ret_to_frame leaves a 32-bit guest: SMEP/SMAP off, iretq.
 * Anything else: declined, the Rust way.
 * (Steps 2-5 are BOUNCE32_TAIL, once without an error code, once with.) */
.balign 16
bounce_quick32:
    push %rcx                     /* 1. */
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    QUICK_STATE %rcx, .Lb32_no
    cmpq ${GUEST32_CS1}, {BQ}+{IF_CS}(%rsp) /* its kernel, flat */
    jne .Lb32_no
    cmpq ${GUEST32_SS1}, {BQ}+{IF_SS}(%rsp)
    jne .Lb32_no
    IOPL_BITS_ZERO %rdi, %rcx, .Lb32_no
    mov %cr3, %rcx
    shr $12, %rcx
    cmp {VCPU_COMPAT_L4}(%rdi), %rcx
    jne .Lb32_no
    cmp ${VEC_PF}, %eax
    je .Lb32_pf
    BOUNCE32_TAIL 0, bounce32_store

/* #PF: a write to a present page (error code P and W) may be a page-table
 * write (writable page tables): the Rust way decides. */
.Lb32_pf:
    mov {BQ}+8(%rsp), %ecx
    not %ecx
    test $3, %cl
    jz .Lb32_no
    BOUNCE32_TAIL 1, bounce32_pf_store

.Lb32_no:                         /* not here: the Rust way, as it came */
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    jmp bounce32_declined

/* A store above refused by the CPU (idt.rs guest_access_fixup). */
.global bounce32_store_fault
bounce32_store_fault:
    CLAC
    jmp .Lb32_no

/* The same for #PF's frame: CR2 is now the refused store's; the guest's
 * back in the CPU (the vCPU holds it), where the Rust way reads it. */
.global bounce32_pf_store_fault
bounce32_pf_store_fault:
    CLAC
    mov {VCPU_CR2}(%rdi), %rcx
    mov %rcx, %cr2
    jmp .Lb32_no
