/*
 * Image head of a 64-bit Xen PV test guest: the Xen ELF notes, the
 * hypercall page and the entry point. AT&T syntax; the numbers come from
 * ringvisor-abi through `const` operands (see head.rs).
 */

/*
 * One ELF note owned by "Xen": namesz, descsz, type, "Xen\0", then the
 * descriptor, each 4-byte aligned as in Linux's and XTF's ELFNOTE().
 */
.macro XEN_NOTE type:req, desc:vararg
        .pushsection .note.Xen, "a", @note
        .balign 4
        .long   4                       /* namesz: "Xen\0" */
        .long   .Ldesc_end\@ - .Ldesc\@ /* descsz */
        .long   \type
        .asciz  "Xen"
        .balign 4
.Ldesc\@:
        \desc
.Ldesc_end\@:
        .balign 4
        .popsection
.endm

XEN_NOTE {GUEST_OS},       .asciz "ringvisor-test"
XEN_NOTE {GUEST_VERSION},  .asciz "0"
XEN_NOTE {XEN_VERSION},    .asciz "xen-3.0"
XEN_NOTE {LOADER},         .asciz "generic"
XEN_NOTE {VIRT_BASE},      .quad {virt_base}
XEN_NOTE {PADDR_OFFSET},   .quad 0
XEN_NOTE {ENTRY},          .quad _start
XEN_NOTE {HYPERCALL_PAGE}, .quad hypercall_page
/* Page tables are updated only by hypercall (as XTF and Mini-OS). */
XEN_NOTE {FEATURES},       .asciz "!writable_page_tables"
XEN_NOTE {PAE_MODE},       .asciz "yes"

/*
 * The hypercall page: 128 stubs of 32 bytes that the domain builder writes
 * before the first guest instruction (`call hypercall_page + N*32`). It is
 * poisoned with `ret` (0xc3), as XTF does, so pvguest_start can tell a
 * builder that never filled it (the first stub starts `push %rcx` or
 * `mov $0, %eax`, never 0xc3).
 */
        .pushsection .hypercall_page, "ax", @progbits
        .balign 4096
        .globl  hypercall_page
hypercall_page:
        .fill   4096, 1, 0xc3
        .popsection

/*
 * _start: the PV entry point (XEN_ELFNOTE_ENTRY).
 *
 * In (Xen x86-64 PV start of day):
 *   %rsi  virtual address of start_info
 *   %rsp  a boot stack inside the bootstrap region, set up by the builder
 *   events masked (vcpu_info[0].evtchn_upcall_mask = 1), no trap table
 * Does: zeroes .bss (the loader did too, but a guest does not rely on it),
 *   moves to its own boot stack and calls pvguest_start(start_info).
 *   pvguest_start never returns.
 */
        .pushsection .text.head, "ax", @progbits
        .globl  _start
        .type   _start, @function
_start:
        mov     %rsi, %r12              /* start_info, kept across rep stos */

        lea     __bss_start(%rip), %rdi
        lea     __bss_end(%rip), %rcx
        sub     %rdi, %rcx
        xor     %eax, %eax
        cld
        rep stosb

        lea     {boot_stack}+{boot_stack_size}(%rip), %rsp
        xor     %ebp, %ebp              /* end of the frame-pointer chain */
        mov     %r12, %rdi
        call    {start}
        ud2
        .size   _start, . - _start
        .popsection
