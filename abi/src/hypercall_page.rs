//! The hypercall page: 128 stubs of 32 bytes that the hypervisor writes
//! into the page a guest names with `XEN_ELFNOTE_HYPERCALL_PAGE`. A guest
//! makes hypercall N with `call hypercall_page + N * 32`; it never encodes
//! `syscall`/`int $0x82` itself, so the stubs are the ABI.
//!
//! Byte for byte what Xen writes (`pv_ring3_init_hypercall_page` and
//! `pv_ring1_init_hypercall_page` in `xen/arch/x86/pv/hypercall.c`, the
//! same in 4.17 and later; `init_hypercall_page` first fills the page with
//! `0xcc`, `int3`):
//!
//! ```text
//! 64-bit guest (kernel in ring 3)        32-bit guest (kernel in ring 1)
//! stub N:                                stub N:
//!   51              push %rcx              b8 NN NN NN NN  mov $N,%eax
//!   41 53           push %r11              cd 82           int $0x82
//!   b8 NN NN NN NN  mov  $N,%eax           c3              ret
//!   0f 05           syscall
//!   41 5b           pop  %r11
//!   59              pop  %rcx
//!   c3              ret
//!
//! stub 23 (iret), jumped to:             stub 23 (iret), jumped to:
//!   51              push %rcx              50              push %eax
//!   41 53           push %r11              b8 17 00 00 00  mov $23,%eax
//!   50              push %rax              cd 82           int $0x82
//!   b8 17 00 00 00  mov  $23,%eax
//!   0f 05           syscall
//! ```
//!
//! Register contract on entry to the hypervisor:
//! - 64-bit: `%rax` = N, arguments in `%rdi, %rsi, %rdx, %r10, %r8`; the
//!   `syscall` itself clobbers `%rcx` (return rip) and `%r11` (rflags),
//!   which the stub saved on the guest stack. Result in `%rax`.
//! - 32-bit: `%eax` = N, arguments in `%ebx, %ecx, %edx, %esi, %edi`.
//!   Result in `%eax`.
//! - iret: nothing returns to the stub. The guest stack holds an
//!   [`super::IretContext`] (64-bit: `rax, r11, rcx` pushed by the stub on
//!   top of the guest's `flags, rip, cs, rflags, rsp, ss`) or an
//!   [`super::x86_32::IretContext32`] (`eax` on top of an ordinary `iret`
//!   frame).

use super::xen::HYPERVISOR_IRET;

/// Bytes per stub.
pub const HYPERCALL_STUB_SIZE: usize = 32;
/// Stubs in the 4 KiB page (`PAGE_SIZE / 32`); Xen fills them all,
/// including numbers it does not implement (those return `-ENOSYS`).
pub const HYPERCALL_PAGE_SLOTS: usize = 128;
/// Size of the hypercall page.
pub const HYPERCALL_PAGE_SIZE: usize = HYPERCALL_STUB_SIZE * HYPERCALL_PAGE_SLOTS;
/// The software-interrupt vector 32-bit guests use (`HYPERCALL_VECTOR`,
/// `xen/arch/x86/include/asm/irq-vectors.h`). Its IDT gate has DPL 1.
pub const HYPERCALL_VECTOR: u8 = 0x82;
/// What the unused bytes of the page hold: `int3`.
pub const HYPERCALL_PAGE_FILL: u8 = 0xcc;

/// The 32 bytes of stub `n` of a 64-bit guest's hypercall page (the iret
/// stub when `n` is [`HYPERVISOR_IRET`]), padded with `int3`.
// Tour 02, 05: the hypercall stubs, and the iret stub
pub fn stub64(n: u32) -> [u8; HYPERCALL_STUB_SIZE] {
    let [n0, n1, n2, n3] = n.to_le_bytes();
    #[rustfmt::skip]
    let code: &[u8] = if n == HYPERVISOR_IRET {
        &[
            0x51,                   // push %rcx
            0x41, 0x53,             // push %r11
            0x50,                   // push %rax
            0xb8, n0, n1, n2, n3,   // mov  $23,%eax
            0x0f, 0x05,             // syscall
        ]
    } else {
        &[
            0x51,                   // push %rcx
            0x41, 0x53,             // push %r11
            0xb8, n0, n1, n2, n3,   // mov  $n,%eax
            0x0f, 0x05,             // syscall
            0x41, 0x5b,             // pop  %r11
            0x59,                   // pop  %rcx
            0xc3,                   // ret
        ]
    };
    padded_stub(code)
}

/// The 32 bytes of stub `n` of a 32-bit guest's hypercall page (the iret
/// stub when `n` is [`HYPERVISOR_IRET`]), padded with `int3`.
pub fn stub32(n: u32) -> [u8; HYPERCALL_STUB_SIZE] {
    let [n0, n1, n2, n3] = n.to_le_bytes();
    #[rustfmt::skip]
    let code: &[u8] = if n == HYPERVISOR_IRET {
        &[
            0x50,                   // push %eax
            0xb8, n0, n1, n2, n3,   // mov  $23,%eax
            0xcd, HYPERCALL_VECTOR, // int  $0x82
        ]
    } else {
        &[
            0xb8, n0, n1, n2, n3,   // mov  $n,%eax
            0xcd, HYPERCALL_VECTOR, // int  $0x82
            0xc3,                   // ret
        ]
    };
    padded_stub(code)
}

/// `code` followed by `int3` filler up to the stub size.
fn padded_stub(code: &[u8]) -> [u8; HYPERCALL_STUB_SIZE] {
    let mut s = [HYPERCALL_PAGE_FILL; HYPERCALL_STUB_SIZE];
    s[..code.len()].copy_from_slice(code);
    s
}

/// Fill a whole hypercall page for a 64-bit guest.
// Tour 01: the hypercall page, filled before the first instruction
pub fn fill_hypercall_page64(page: &mut [u8; HYPERCALL_PAGE_SIZE]) {
    for (n, slot) in (0u32..).zip(page.chunks_exact_mut(HYPERCALL_STUB_SIZE)) {
        slot.copy_from_slice(&stub64(n));
    }
}

/// Fill a whole hypercall page for a 32-bit guest.
pub fn fill_hypercall_page32(page: &mut [u8; HYPERCALL_PAGE_SIZE]) {
    for (n, slot) in (0u32..).zip(page.chunks_exact_mut(HYPERCALL_STUB_SIZE)) {
        slot.copy_from_slice(&stub32(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(code: &[u8]) -> [u8; 32] {
        let mut s = [0xcc; 32];
        s[..code.len()].copy_from_slice(code);
        s
    }

    #[test]
    fn stub64_bytes() {
        // HYPERVISOR_console_io (18).
        assert_eq!(
            stub64(18),
            padded(&[0x51, 0x41, 0x53, 0xb8, 0x12, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3])
        );
        // Slot 127: the number is still encoded as an imm32.
        assert_eq!(stub64(127)[3..8], [0xb8, 0x7f, 0, 0, 0]);
    }

    #[test]
    fn stub64_iret_bytes() {
        assert_eq!(
            stub64(23),
            padded(&[0x51, 0x41, 0x53, 0x50, 0xb8, 0x17, 0, 0, 0, 0x0f, 0x05])
        );
    }

    #[test]
    fn stub32_bytes() {
        assert_eq!(stub32(18), padded(&[0xb8, 0x12, 0, 0, 0, 0xcd, 0x82, 0xc3]));
        assert_eq!(stub32(0), padded(&[0xb8, 0, 0, 0, 0, 0xcd, 0x82, 0xc3]));
    }

    #[test]
    fn stub32_iret_bytes() {
        assert_eq!(stub32(23), padded(&[0x50, 0xb8, 0x17, 0, 0, 0, 0xcd, 0x82]));
    }

    #[test]
    fn whole_pages() {
        let mut p = [0u8; HYPERCALL_PAGE_SIZE];
        fill_hypercall_page64(&mut p);
        assert_eq!(p[29 * 32..30 * 32], stub64(29));
        assert_eq!(p[23 * 32..24 * 32], stub64(23));
        assert_eq!(p[HYPERCALL_PAGE_SIZE - 1], 0xcc);
        fill_hypercall_page32(&mut p);
        assert_eq!(p[127 * 32..], stub32(127));
    }
}
