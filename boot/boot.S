/* ringvisor boot: multiboot headers, 32-bit entry, long-mode trampoline.
 *
 * Register contract at start32 (both loaders enter in 32-bit protected mode,
 * paging off, flat segments, interrupts off):
 *   eax = loader magic (0x2BADB002 multiboot1, 0x36D76289 multiboot2)
 *   ebx = physical address of the loader's boot information
 * What we pass to Rust (rust_start, System V):
 *   rdi = magic (zero-extended), rsi = boot information physical address
 *
 * Everything is linked at KERNEL_VMA + physical address (linker.ld). Until
 * paging is on we use physical addresses: `sym_phys` symbols that linker.ld
 * defines as ABSOLUTE(sym - KERNEL_VMA) (the assembler cannot subtract the
 * 64-bit link address in a 32-bit field).
 */

.set MB1_MAGIC,       0x1BADB002
/* page-align modules, ask for memory info, a.out kludge (bit 16): QEMU's
 * -kernel loader refuses a 64-bit ELF without the address fields below. */
.set MB1_FLAGS,       0x00010003
.set MB2_MAGIC,       0xE85250D6
.set BOOT_STACK_SIZE, 0x40000

.section .boot.header, "a"
.balign 4
.global mb1_header
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long mb1_header_phys         /* header_addr   */
    .long __image_start_phys      /* load_addr     */
    .long __load_end_phys         /* load_end_addr */
    .long __bss_end_phys          /* bss_end_addr  */
    .long start32_phys            /* entry_addr    */

.balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0                               /* architecture: i386 */
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + (mb2_header_end - mb2_header))
    /* entry address tag: the ELF's e_entry is a high virtual address */
    .balign 8
    .short 3, 0
    .long 12
    .long start32_phys
    /* Information request (optional: a loader may give less): the memory
     * map (6), the framebuffer (8), the ACPI RSDP copies (old 14, new 15:
     * under UEFI the only way to find ACPI) and the EFI memory map (17).
     * There is no EFI boot services tag (7): a UEFI GRUB exits boot
     * services and enters start32 in 32-bit protected mode, as a BIOS
     * GRUB does (multiboot2 spec 3.3: the i386 machine state). */
    .balign 8
    .short 1, 1
    .long 8 + 4 * 5
    .long 6, 8, 14, 15, 17
    /* Framebuffer (optional): any size and depth; without a serial port
     * it is the console (src/fbcon.rs). */
    .balign 8
    .short 5, 1
    .long 20
    .long 0, 0, 0
    /* end tag */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

.section .boot.text, "ax"
.code32
.global start32
start32:
    cld
    mov %eax, %edi                        /* keep magic and info pointer */
    mov %ebx, %esi

    /* Zero .bss ourselves (page tables and stacks live there): not every
     * loader is guaranteed to have done it. */
    mov $__bss_start_phys, %edx
    mov $__bss_end_phys, %ecx
    sub %edx, %ecx
    push %edi
    mov %edx, %edi
    xor %eax, %eax
    rep stosb
    pop %edi

    mov $boot_stack_top_phys, %esp

    /* Long mode needs CPUID leaf 0x80000001 EDX.LM (bit 29). */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode

    /* Boot page tables, all 2 MiB pages, replaced early by Rust:
     *  - the first 4 GiB identity mapped (loader structures, modules, and
     *    this code until it jumps high);
     *  - the same 4 GiB at the direct map 0xffff830000000000 (PML4 slot
     *    262), so Rust can use direct-map addresses from its first line;
     *  - the first 2 GiB at KERNEL_VMA = 0xffff82d080000000 (PML4 slot 261,
     *    PDPT slots 322-323), where the image is linked. */
    mov $boot_pd_phys, %ebx
    xor %ecx, %ecx
fill_pd:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                        /* present | writable | 2 MiB */
    mov %eax, (%ebx,%ecx,8)
    movl $0, 4(%ebx,%ecx,8)               /* 2048 * 2 MiB = 4 GiB: no high bits */
    inc %ecx
    cmp $2048, %ecx
    jne fill_pd

    mov $boot_pdpt_low_phys, %ebx
    mov $(boot_pd_phys + 0x003), %eax
    mov %eax, 0(%ebx)
    add $0x1000, %eax
    mov %eax, 8(%ebx)
    add $0x1000, %eax
    mov %eax, 16(%ebx)
    add $0x1000, %eax
    mov %eax, 24(%ebx)

    mov $boot_pdpt_high_phys, %ebx
    mov $(boot_pd_phys + 0x003), %eax
    mov %eax, (322 * 8)(%ebx)
    add $0x1000, %eax
    mov %eax, (323 * 8)(%ebx)

    mov $boot_pml4_phys, %ebx
    mov $(boot_pdpt_low_phys + 0x003), %eax
    mov %eax, 0(%ebx)
    mov %eax, (262 * 8)(%ebx)
    mov $(boot_pdpt_high_phys + 0x003), %eax
    mov %eax, (261 * 8)(%ebx)

    mov %cr4, %eax
    or $0x20, %eax                        /* CR4.PAE */
    mov %eax, %cr4
    mov %ebx, %cr3

    mov $0xC0000080, %ecx                 /* IA32_EFER */
    rdmsr
    or $0x100, %eax                       /* EFER.LME (NXE is set in Rust once CPUID says so) */
    wrmsr

    mov %cr0, %eax
    or $0x80010001, %eax                  /* CR0.PG | CR0.WP | CR0.PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr_phys
    ljmp $0x08, $start64_low_phys

no_long_mode:
    /* Say why on COM1 (polling, no init needed for QEMU), then stop. */
    mov $no_lm_msg_phys, %esi
no_lm_loop:
    movb (%esi), %al
    test %al, %al
    jz no_lm_halt
    mov $0x3f8, %dx
    outb %al, %dx
    inc %esi
    jmp no_lm_loop
no_lm_halt:
    hlt
    jmp no_lm_halt

.code64
.global start64_low
start64_low:
    /* Still running at the low (identity) address: jump up through a
     * pointer (RIP-relative here reads its identity-mapped copy). */
    jmp *start64_high_ptr(%rip)

.section .text
start64_high:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    /* Upper halves of registers are undefined after the mode switch. */
    movl %edi, %edi
    movl %esi, %esi
    call rust_start
boot_dead:
    hlt
    jmp boot_dead

.section .data
.balign 8
start64_high_ptr:
    .quad start64_high

.section .rodata
.balign 8
.global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff                /* 0x08: 64-bit ring-0 code */
    .quad 0x00cf92000000ffff                /* 0x10: ring-0 data */
boot_gdt_end:
.global boot_gdt_ptr
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt_phys
.global no_lm_msg
no_lm_msg:
    .asciz "ringvisor: this CPU has no long mode (x86-64); cannot boot.\r\n"

.section .boot.bss, "aw", @nobits
.balign 4096
.global boot_pml4
boot_pml4:      .skip 4096
.global boot_pdpt_low
boot_pdpt_low:  .skip 4096
.global boot_pdpt_high
boot_pdpt_high: .skip 4096
.global boot_pd
boot_pd:        .skip 4096 * 4
/* Left unmapped by the hypervisor's page tables: a boot-stack overflow
 * faults (#PF, then #DF on its own IST stack) instead of corrupting. */
.global boot_stack_guard
boot_stack_guard: .skip 4096
boot_stack:     .skip BOOT_STACK_SIZE
.global boot_stack_top
boot_stack_top:
