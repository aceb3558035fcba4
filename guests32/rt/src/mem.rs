//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`.
//!
//! The compiler calls these for copies and comparisons. On
//! `i686-unknown-linux-gnu` they normally come from the C library, which a
//! guest kernel does not have (`-nostdlib`), so the runtime defines them,
//! in asm (`rep movsb`/`rep stosb`), so that no compiler pass can turn
//! their bodies back into calls to themselves. Only on the 32-bit target.

#[cfg(target_arch = "x86")]
core::arch::global_asm!(
    r#"
    .text

/* void *memcpy(void *dst, const void *src, size_t n) */
    .balign 16
    .globl  memcpy
    .type   memcpy, @function
memcpy:
    push    %edi
    push    %esi
    mov     12(%esp), %edi
    mov     16(%esp), %esi
    mov     20(%esp), %ecx
    mov     %edi, %eax
    cld
    rep movsb
    pop     %esi
    pop     %edi
    ret
    .size   memcpy, . - memcpy

/* void *memmove(void *dst, const void *src, size_t n): backwards when dst
 * overlaps the source from above. */
    .balign 16
    .globl  memmove
    .type   memmove, @function
memmove:
    push    %edi
    push    %esi
    mov     12(%esp), %edi
    mov     16(%esp), %esi
    mov     20(%esp), %ecx
    mov     %edi, %eax
    cmp     %esi, %edi
    jbe     .Lmemmove_fwd
    lea     (%esi, %ecx), %edx
    cmp     %edx, %edi
    jae     .Lmemmove_fwd
    lea     -1(%esi, %ecx), %esi
    lea     -1(%edi, %ecx), %edi
    std
    rep movsb
    cld
    jmp     .Lmemmove_done
.Lmemmove_fwd:
    cld
    rep movsb
.Lmemmove_done:
    pop     %esi
    pop     %edi
    ret
    .size   memmove, . - memmove

/* void *memset(void *dst, int c, size_t n) */
    .balign 16
    .globl  memset
    .type   memset, @function
memset:
    push    %edi
    mov     8(%esp), %edi
    movzbl  12(%esp), %eax
    mov     16(%esp), %ecx
    mov     %edi, %edx
    cld
    rep stosb
    mov     %edx, %eax
    pop     %edi
    ret
    .size   memset, . - memset

/* int memcmp(const void *a, const void *b, size_t n); bcmp is the same
 * (only zero/non-zero matters to its callers). */
    .balign 16
    .globl  memcmp
    .globl  bcmp
    .type   memcmp, @function
    .type   bcmp, @function
memcmp:
bcmp:
    push    %esi
    push    %edi
    mov     12(%esp), %esi
    mov     16(%esp), %edi
    mov     20(%esp), %ecx
    xor     %eax, %eax
    test    %ecx, %ecx
    jz      .Lmemcmp_done
.Lmemcmp_loop:
    movzbl  (%esi), %eax
    movzbl  (%edi), %edx
    sub     %edx, %eax
    jnz     .Lmemcmp_done
    inc     %esi
    inc     %edi
    dec     %ecx
    jnz     .Lmemcmp_loop
.Lmemcmp_done:
    pop     %edi
    pop     %esi
    ret
    .size   memcmp, . - memcmp
"#,
    options(att_syntax)
);

/// The unwinding personality routine `core` (prebuilt with
/// `panic=unwind` for this target) refers to. Guests are built with
/// `panic = "abort"`, so nothing ever unwinds and this is never called;
/// it only satisfies the link. If it were called, it stops the guest.
#[cfg(target_arch = "x86")]
#[no_mangle]
extern "C" fn rust_eh_personality() {
    crate::report::error(format_args!("rust_eh_personality called"))
}
