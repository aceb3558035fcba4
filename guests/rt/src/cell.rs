//! [`GuestCell`]: a global shared between guest code and its trap handlers;
//! [`Page`] and [`Stack`]: page-aligned memory in `.bss`, with 64-bit
//! guest-virtual addresses. All from `pvguest-common`.

pub use pvguest_common::cell::GuestCell;

/// A page-aligned, zero-initialised page in `.bss`; `addr()` is a `u64`.
pub type Page = pvguest_common::cell::Page<u64>;

/// `N` bytes, page aligned, zero-initialised, in `.bss`: a stack; `top()`
/// and `bottom()` are `u64`s.
pub type Stack<const N: usize> = pvguest_common::cell::Stack<N, u64>;
