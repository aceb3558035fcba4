/*
 * Image head of a 32-bit PAE Xen PV test guest (kernel in ring 1): the Xen
 * ELF notes, the hypercall page and the entry point. AT&T syntax; the
 * numbers come from ringvisor-abi through `const` operands (see head.rs).
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

/* Numeric notes are 4 bytes here (libelf's elf_note_numeric reads 1, 2, 4
 * or 8), as Linux i386 writes them with _ASM_PTR. */
XEN_NOTE {GUEST_OS},       .asciz "ringvisor-test"
XEN_NOTE {GUEST_VERSION},  .asciz "0"
XEN_NOTE {XEN_VERSION},    .asciz "xen-3.0"
XEN_NOTE {LOADER},         .asciz "generic"
XEN_NOTE {VIRT_BASE},      .long {virt_base}
XEN_NOTE {PADDR_OFFSET},   .long 0
XEN_NOTE {ENTRY},          .long _start
XEN_NOTE {HYPERCALL_PAGE}, .long hypercall_page
/* As the 64-bit guests (guests/rt/src/head.S). pae_pgdir_above_4gb: the
 * runtime never reads %cr3, so its L3 may live anywhere. */
XEN_NOTE {FEATURES},       .asciz "!writable_page_tables|pae_pgdir_above_4gb"
/* Required for a 32-bit guest: non-PAE images are refused. */
XEN_NOTE {PAE_MODE},       .asciz "yes"

/*
 * The hypercall page: 128 stubs of 32 bytes that the domain builder writes
 * before the first guest instruction (`call hypercall_page + N*32`). It is
 * poisoned with `ret` (0xc3), as XTF does, so pvguest32_start can tell a
 * builder that never filled it (a 32-bit stub starts `mov $N,%eax`, 0xb8).
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
 * In (Xen x86_32p start of day, as 64-bit Xen builds it):
 *   %esi  virtual address of start_info
 *   %esp  a boot stack inside the bootstrap region, set up by the builder
 *   %cs   FLAT_RING1_CS (0xe019), %ds/%es/%ss FLAT_RING1_DS (0xe021)
 *   events masked (vcpu_info[0].evtchn_upcall_mask = 1), no trap table
 * Does: zeroes .bss (the loader did too, but a guest does not rely on it),
 *   moves to its own boot stack and calls pvguest32_start(start_info)
 *   (cdecl; the stack 16-byte aligned at the call, as the i386 SysV ABI
 *   Rust assumes). pvguest32_start never returns.
 */
        .pushsection .text.head, "ax", @progbits
        .globl  _start
        .type   _start, @function
_start:
        cld
        mov     $__bss_start, %edi
        mov     $__bss_end, %ecx
        sub     %edi, %ecx
        xor     %eax, %eax
        rep stosb                       /* leaves %esi alone */

        mov     ${boot_stack}+{boot_stack_size}, %esp
        xor     %ebp, %ebp              /* end of the frame-pointer chain */
        sub     $12, %esp
        push    %esi
        call    {start}
        ud2
        .size   _start, . - _start
        .popsection
