/* hello32: the smallest 32-bit PAE Xen PV guest, in assembly, so the
 * 32-bit path is tested with nothing but binutils (tests/tests/pv32.rs).
 *
 * Cases: it starts in ring 1 (cs & 3 == 1) with esi = start_info whose
 * magic is "xen-3.0-x86_32p"; console_io through the hypercall page
 * (int $0x82 stubs); set_trap_table with a ring-1 #UD handler; ud2 is
 * bounced with the 32-bit frame { eip, cs, eflags }: eip at the ud2, cs
 * 0xe019 with the saved upcall mask (1: events masked at start) in bits
 * 16-23; the handler returns with a plain iret; then shutdown(poweroff).
 * Any check failing prints RESULT: FAILURE and shuts down with crash. */
.macro GUEST_NAME
    .asciz "test32"
.endm
.include "notes32.inc"

.text
.globl _start
_start:
    mov $stack_top, %esp
    /* start_info magic */
    mov $15, %ecx
    mov $magic, %edi
    repe cmpsb
    jne fail
    /* console_io(write, len, msg) */
    mov $0, %ebx
    mov $(msg_end - msg), %ecx
    mov $msg, %edx
    call hypercall_page + 18*32
    /* cs & 3 == 1 ? */
    mov %cs, %eax
    and $3, %eax
    cmp $1, %eax
    jne fail
    /* set_trap_table: #UD handler */
    mov $traps, %ebx
    call hypercall_page + 0*32
    test %eax, %eax
    jnz fail
ud_at:
    ud2
after_ud:
    cmpl $1, ud_seen
    jne fail
    cmpl $ud_at, ud_eip
    jne fail
    cmpl $0x1e019, ud_cs      /* cs 0xe019, saved mask 1 in bits 16-23 */
    jne fail
    /* print ok */
    mov $0, %ebx
    mov $(ok_end - ok), %ecx
    mov $ok, %edx
    call hypercall_page + 18*32
    /* shutdown poweroff */
    movl $0, reason
    mov $2, %ebx
    mov $reason, %ecx
    call hypercall_page + 29*32
1:  jmp 1b
fail:
    mov $0, %ebx
    mov $(bad_end - bad), %ecx
    mov $bad, %edx
    call hypercall_page + 18*32
    movl $3, reason
    mov $2, %ebx
    mov $reason, %ecx
    call hypercall_page + 29*32
2:  jmp 2b

ud_handler:
    /* frame: eip, cs, eflags */
    movl $1, ud_seen
    mov (%esp), %eax
    mov %eax, ud_eip
    mov 4(%esp), %eax
    mov %eax, ud_cs
    addl $2, (%esp)
    iret

.data
msg: .ascii "hello from ring 1\n"
msg_end:
ok: .ascii "RESULT: SUCCESS\n"
ok_end:
bad: .ascii "RESULT: FAILURE\n"
bad_end:
reason: .long 0
ud_seen: .long 0
ud_eip: .long 0
ud_cs: .long 0
magic: .ascii "xen-3.0-x86_32p"
traps:
    .byte 6, 0
    .short 0xe019
    .long ud_handler
    .long 0, 0
.bss
.balign 4096
stack: .skip 8192
stack_top:
.section .hcall, "ax"
.balign 4096
.globl hypercall_page
hypercall_page: .skip 4096
