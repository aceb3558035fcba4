/* spin32: a 32-bit PV guest that never gives the CPU back: it prints one
 * line, then spins with no hypercall, forever (tests/tests/pv32.rs checks
 * that the other domains still run: time slices preempt it). */
.section .note.Xen, "a"
.macro NOTE type, desc_start, desc_end
    .balign 4
    .long 4
    .long \desc_end - \desc_start
    .long \type
    .asciz "Xen"
    .balign 4
.endm
    NOTE 6, 1f, 2f
1:  .asciz "spin32"
2:  NOTE 8, 3f, 4f
3:  .asciz "generic"
4:  NOTE 5, 5f, 6f
5:  .asciz "xen-3.0"
6:  NOTE 3, 7f, 8f
7:  .long 0xC0000000
8:  NOTE 4, 9f, 10f
9:  .long 0
10: NOTE 1, 11f, 12f
11: .long _start
12: NOTE 2, 13f, 14f
13: .long hypercall_page
14: NOTE 9, 15f, 16f
15: .asciz "yes"
16:
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
