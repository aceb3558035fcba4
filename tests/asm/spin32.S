/* spin32: a 32-bit PV guest that never gives the CPU back: it prints one
 * line, then spins with no hypercall, forever (tests/tests/pv32.rs checks
 * that the other domains still run: time slices preempt it). */
.macro GUEST_NAME
    .asciz "spin32"
.endm
.include "notes32.inc"

.text
.globl _start
_start:
    mov $stack_top, %esp
    mov $0, %ebx
    mov $(msg_end - msg), %ecx
    mov $msg, %edx
    call hypercall_page + 18*32
spin:
    jmp spin
.data
msg: .ascii "SPINNING\n"
msg_end:
.bss
.balign 4096
stack: .skip 4096
stack_top:
.section .hcall, "ax"
.balign 4096
.globl hypercall_page
hypercall_page: .skip 4096
