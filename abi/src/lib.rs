//! The Xen PV public ABI (`xen/include/public/`) as `repr(C)` types and constants.
//!
//! Its own crate so that the hypervisor and the test guests share one set
//! of types.
//!
//! Everything here is data: numbers and layouts a guest written against
//! Xen's public headers expects, and nothing that decides what to do with
//! them (that is `pv/`). The layouts were read from the Xen tree (the
//! headers at the 4.22 development head, cross-checked against
//! RELEASE-4.17.0 where they differ; see the notes in each file) and every
//! size the headers state or imply is asserted at compile time, together
//! with the offsets the hypervisor or its asm relies on.
//!
//! # One file per header
//!
//! | file               | Xen header(s)                                        |
//! |--------------------|------------------------------------------------------|
//! | [`xen`]            | `xen.h`, width-independent parts of `arch-x86/xen.h`, and the native (64-bit) instances of their structs |
//! | [`x86_64`]         | `arch-x86/xen-x86_64.h` (+ 64-bit `vcpu_guest_context`) |
//! | [`x86_32`]         | `arch-x86/xen-x86_32.h` and the 32-bit ("compat") instances of the `xen.h` structs |
//! | [`callback`]       | `callback.h`                                         |
//! | [`vcpu`]           | `vcpu.h`                                             |
//! | [`sched`]          | `sched.h`                                            |
//! | [`version`]        | `version.h`, `features.h`                            |
//! | [`elfnote`]        | `elfnote.h`                                          |
//! | [`event_channel`]  | `event_channel.h` (the `VIRQ_*` numbers are in [`xen`], as in Xen) |
//! | [`grant_table`]    | `grant_table.h` (v1 and v2 entries, the operations ringvisor has) |
//! | [`memory`]         | `memory.h` (+ the e820 entry the memory map is made of) |
//! | [`physdev`]        | `physdev.h`                                          |
//! | [`console`]        | `io/console.h`                                       |
//! | [`errno`]          | `errno.h`                                            |
//! | [`hypercall_page`] | the hypercall page Xen writes (`arch/x86/pv/hypercall.c`) |
//!
//! # Naming
//!
//! - Types are Rust-cased Xen names without `xen_`/`_t`: `struct start_info`
//!   is [`StartInfo`], `struct vcpu_guest_context` is [`VcpuGuestContext`].
//! - A 32-bit guest's layout of the same structure carries a `32` suffix
//!   ([`x86_32::StartInfo32`], [`CallbackRegister32`]). Native means the
//!   layout a 64-bit guest uses, which is also what 64-bit Xen uses inside.
//! - Field names are Xen's, except the Rust keywords `type` and `in`,
//!   which are `type_` and `in_`. Padding that C
//!   leaves implicit is spelled out as `_padN` fields (see [`Pod`]).
//! - Constants keep Xen's spelling upper-cased, without leading
//!   underscores: `__HYPERVISOR_set_trap_table` is
//!   [`HYPERVISOR_SET_TRAP_TABLE`], `VCPUOP_register_vcpu_info` is
//!   [`VCPUOP_REGISTER_VCPU_INFO`]. Search Xen's headers case-insensitively.
//!   Constants that differ between guest widths live in [`x86_64`] and
//!   [`x86_32`] under Xen's names (`x86_32::FLAT_KERNEL_CS` is `0xe019`,
//!   [`FLAT_KERNEL_CS`] is `0xe033`); only the native ones are re-exported
//!   here.
//!
//! # Unions
//!
//! Xen's unions (`start_info.console`, `mmuext_op.arg1/arg2`,
//! `evtchn_status.u`, guest handles) are plain integer fields of the
//! union's size here, with accessor methods for the other views. That keeps
//! every type [`Pod`] and keeps `unsafe` out of the code that reads them.
//!
//! # 32-bit layouts and 8-byte fields
//!
//! The i386 C ABI aligns `uint64_t` struct members to 4 bytes, and 64-bit
//! Xen reproduces that for its compat structures (Xen commit 0dd40d68b1,
//! "x86: fix compat header generation": `{,u}int64_t` become 64-bit types
//! with 4-byte alignment). Those 32-bit types here are
//! `#[repr(C, packed(4))]`: read their `u64` fields by value (`{ s.field }`)
//! rather than by reference.
#![no_std]

pub mod callback;
pub mod console;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall_page;
pub mod memory;
pub mod physdev;
pub mod platform;
pub mod sched;
pub mod vcpu;
pub mod version;
pub mod x86_32;
pub mod x86_64;
pub mod xen;

pub use callback::*;
pub use console::*;
pub use elfnote::*;
pub use errno::*;
pub use event_channel::*;
pub use hypercall_page::*;
pub use memory::*;
pub use physdev::*;
pub use sched::*;
pub use vcpu::*;
pub use version::*;
pub use x86_32::{
    ArchSharedInfo32, ArchVcpuInfo32, CpuUserRegs32, IretContext32, MmuExtOp32, MulticallEntry32,
    SharedInfo32, StartInfo32, StartInfoConsole32, TrapInfo32, VcpuGuestContext32, VcpuInfo32,
    XenCallback32,
};
pub use x86_64::*;
pub use xen::*;

use core::mem::size_of;

/// Plain old data: a type that may be copied to and from raw guest bytes.
///
/// This is the contract the guest-memory accessors rely on (the model is
/// rust-vmm's `ByteValued`):
///
/// 1. **Every bit pattern is a valid value.** No `bool`, `char`, enum,
///    reference, `NonZero*` or other type with invalid representations may
///    appear anywhere inside, so bytes from a guest can become a `T`.
/// 2. **No padding.** Every byte of the value is part of some field, so
///    [`as_bytes`] never exposes uninitialised memory and copying a `T` to a
///    guest leaks nothing of the hypervisor's stack.
/// 3. **Fixed layout.** `repr(C)` (or `repr(C, packed(N))`), so the byte
///    image is the one Xen's C headers describe.
/// 4. `Copy + 'static`: no destructor, no borrowed data.
///
/// # Safety
///
/// An implementor promises 1–3. ABI structs get their implementation from
/// `pod_struct!`, which checks 1 (every field is `Pod`) and 2 (the field
/// sizes sum to the struct size) at compile time and always applies
/// `repr(C)`.
pub unsafe trait Pod: Copy + 'static {
    /// The all-zero value (valid for every `Pod` type by rule 1). Handy for
    /// the large ABI structs that cannot derive `Default`.
    fn zeroed() -> Self {
        // SAFETY: by the `Pod` contract every bit pattern, all-zero
        // included, is a valid `Self`.
        unsafe { core::mem::zeroed() }
    }
}

macro_rules! impl_pod_for_primitives {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive integer: any bit pattern is a valid value, no
        // padding, fixed size and layout.
        unsafe impl Pod for $t {}
    )*};
}
impl_pod_for_primitives!(u8, u16, u32, u64, i8, i16, i32, i64);

// SAFETY: an array of `Pod` elements has no padding between elements (the
// stride of an array is the element size) and is valid for any bit pattern
// if its elements are.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The bytes of `v`, e.g. to copy it into guest memory.
pub fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `v` is a valid reference to `size_of::<T>()` bytes, all of
    // them initialised because `T: Pod` has no padding; the slice borrows
    // `v`, so it cannot outlive it or alias a `&mut`.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of `v`, writable, e.g. to fill it from guest memory.
pub fn as_bytes_mut<T: Pod>(v: &mut T) -> &mut [u8] {
    // SAFETY: as for `as_bytes`, and whatever is written through the slice
    // leaves a valid `T` because every bit pattern is one (`Pod` rule 1).
    // The slice holds the unique borrow of `v` for its lifetime.
    unsafe { core::slice::from_raw_parts_mut((v as *mut T).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of a slice of `Pod` values (e.g. a trap table).
pub fn slice_as_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: a slice of `T: Pod` is `len * size_of::<T>()` initialised,
    // padding-free bytes (array stride == element size); the result
    // borrows `v`. `size_of_val` cannot overflow for a live slice.
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), core::mem::size_of_val(v)) }
}

/// A `T` made from exactly `size_of::<T>()` bytes; `None` if the length
/// differs. `bytes` need not be aligned.
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds exactly `size_of::<T>()` readable bytes,
    // `read_unaligned` has no alignment requirement, and any bit pattern is
    // a valid `T` (`Pod` rule 1).
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Defines a `#[repr(C)]` ABI struct and implements [`Pod`] for it, after
/// proving at compile time that every field is `Pod` and that the fields
/// cover the struct exactly (no implicit padding). Extra attributes such as
/// `#[repr(packed(4))]` are passed through.
macro_rules! pod_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field : $fty ),*
        }

        const _: () = {
            const fn field_is_pod<T: $crate::Pod>() {}
            $( field_is_pod::<$fty>(); )*
            assert!(
                ::core::mem::size_of::<$name>() == 0 $( + ::core::mem::size_of::<$fty>() )*,
                concat!("implicit padding in ", stringify!($name)),
            );
        };

        // SAFETY: `repr(C)`; the const block above proves every field is
        // `Pod` (any bit pattern valid) and that the field sizes add up to
        // the struct size, so there is no padding byte.
        unsafe impl $crate::Pod for $name {}
    };
}
pub(crate) use pod_struct;

/// Compile-time layout checks: `layout!(Type, size)` and
/// `layout!(Type, size; field @ offset, ...)`. The numbers come from Xen's
/// headers (stated in comments there, or worked out from the C rules).
macro_rules! layout {
    ($t:ty, $size:expr $(; $($field:ident $(. $sub:ident)* @ $off:expr),* $(,)?)?) => {
        const _: () = assert!(::core::mem::size_of::<$t>() == $size,
                              concat!("size of ", stringify!($t)));
        $($(
            const _: () = assert!(::core::mem::offset_of!($t, $field $(. $sub)*) == $off,
                                  concat!("offset of ", stringify!($t), ".",
                                          stringify!($field $(. $sub)*)));
        )*)?
    };
}
pub(crate) use layout;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let mut t = TrapInfo::zeroed();
        t.vector = 14;
        t.flags = 0;
        t.cs = FLAT_KERNEL_CS;
        t.address = 0xffff_ffff_8100_0000;
        let b = as_bytes(&t);
        assert_eq!(b.len(), 16);
        assert_eq!(b[0], 14);
        assert_eq!(&b[2..4], &0xe033u16.to_le_bytes());
        assert_eq!(&b[8..16], &0xffff_ffff_8100_0000u64.to_le_bytes());
        assert_eq!(from_bytes::<TrapInfo>(b), Some(t));
        assert_eq!(from_bytes::<TrapInfo>(&b[1..]), None);
    }

    #[test]
    fn from_unaligned_bytes() {
        let mut buf = [0u8; 17];
        buf[1..9].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        buf[9..17].copy_from_slice(&0x99u64.to_le_bytes());
        let u: MmuUpdate = from_bytes(&buf[1..]).unwrap();
        assert_eq!(u.ptr, 0x1122_3344_5566_7788);
        assert_eq!(u.val, 0x99);
    }

    #[test]
    fn as_bytes_mut_fills() {
        let mut s = SchedShutdown::zeroed();
        as_bytes_mut(&mut s).copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(s.reason, SHUTDOWN_CRASH);
    }

    #[test]
    fn slice_bytes() {
        let t = [TrapInfo32::zeroed(); 3];
        assert_eq!(slice_as_bytes(&t).len(), 24);
    }
}
