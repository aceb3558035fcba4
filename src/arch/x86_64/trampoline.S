/* The application processors' way from reset to Rust (smp.rs).
 *
 * Copied to a 16 KiB window below 1 MiB that smp.rs chooses and reserves
 * (T, page aligned; the start-up IPI's vector is T >> 12). Register
 * contract at ap_trampoline: real mode, CS = T >> 4, IP = 0, interrupts
 * off (the SIPI state), nothing else known. The data block at T + TD
 * (struct TrampolineData, offsets from Rust) holds what this code cannot
 * know at assembly time: the GDT's and the far jumps' linear addresses,
 * CR0/CR3/CR4/EFER, the stack and the Rust entry point. At ap_entry
 * (System V): rdi = the CPU's number, rsp = its stack (16-byte aligned
 * less the fake return address), 64-bit mode on the trampoline's page
 * tables (T's 2 MiB identity mapped, the hypervisor's range shared).
 */
.section .rodata.ap_trampoline, "a"
.balign 16
.global ap_trampoline
ap_trampoline:
.code16
    cli
    cld
    xorl %ebx, %ebx
    movw %cs, %bx
    movw %bx, %ds
    shll $4, %ebx                 /* ebx = T, kept to the end */
    lgdtl ({TD} + {TD_GDTR})
    movl %cr0, %eax
    orl $1, %eax                  /* CR0.PE */
    movl %eax, %cr0
    ljmpl *({TD} + {TD_FAR32})        /* to ap_prot32, CS 0x08 (32-bit) */

.code32
.global ap_prot32
ap_prot32:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl ({TD} + {TD_CR4})(%ebx), %eax    /* PAE (and PGE) */
    movl %eax, %cr4
    movl ({TD} + {TD_CR3})(%ebx), %eax    /* the trampoline's PML4, below 1 MiB */
    movl %eax, %cr3
    movl $0xc0000080, %ecx            /* IA32_EFER: LME, NXE as the boot CPU */
    movl ({TD} + {TD_EFER})(%ebx), %eax
    xorl %edx, %edx
    wrmsr
    movl ({TD} + {TD_CR0})(%ebx), %eax    /* PG: long mode is active */
    movl %eax, %cr0
    ljmpl *({TD} + {TD_FAR64})(%ebx)      /* to ap_long64, CS 0x18 (64-bit) */

.code64
.global ap_long64
ap_long64:
    movl %ebx, %ebx                   /* upper halves undefined after the switch */
    movq ({TD} + {TD_STACK})(%rbx), %rsp
    movq ({TD} + {TD_ARG})(%rbx), %rdi
    movq ({TD} + {TD_ENTRY})(%rbx), %rax
    xorl %ebp, %ebp
    pushq $0                          /* no return address: ap_entry never returns */
    jmpq *%rax
.global ap_trampoline_end
ap_trampoline_end:
