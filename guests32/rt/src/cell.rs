//! [`GuestCell`]: a global shared between guest code and its trap handlers;
//! [`Page`] and [`Stack`]: page-aligned memory in `.bss`.

use core::cell::UnsafeCell;

/// A `Copy` value in a `static`, read and written with volatile accesses.
///
/// The guest has one vCPU and one thread of control. A trap handler runs
/// *between* two instructions of the code it interrupted (which does not
/// run again until the handler returns), so a `GuestCell` is never accessed
/// from two places at once. Volatile accesses keep the compiler from caching
/// a value across an instruction that traps.
pub struct GuestCell<T: Copy>(UnsafeCell<T>);

// SAFETY: see the type's documentation: one vCPU, accesses never overlap.
unsafe impl<T: Copy> Sync for GuestCell<T> {}

impl<T: Copy> GuestCell<T> {
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }

    pub fn get(&self) -> T {
        // SAFETY: the pointer is valid and aligned (it is our own cell);
        // no `&mut` to the contents exists (we never hand one out).
        unsafe { self.0.get().read_volatile() }
    }

    pub fn set(&self, v: T) {
        // SAFETY: as in `get`.
        unsafe { self.0.get().write_volatile(v) }
    }

    /// The address of the value, e.g. for asm or a hypercall argument.
    pub fn as_ptr(&self) -> *mut T {
        self.0.get()
    }
}

/// A page-aligned, zero-initialised page in `.bss`.
#[repr(C, align(4096))]
pub struct Page(pub UnsafeCell<[u8; 4096]>);

// SAFETY: its contents are only touched through raw pointers by code that
// documents who owns the page.
unsafe impl Sync for Page {}

impl Page {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; 4096]))
    }
    /// Its guest-virtual address.
    pub fn addr(&self) -> u32 {
        crate::va(self.0.get())
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

/// `N` bytes, page aligned, zero-initialised, in `.bss`: a stack.
#[repr(C, align(4096))]
pub struct Stack<const N: usize>(pub UnsafeCell<[u8; N]>);

// SAFETY: a stack is used by exactly one context at a time (documented at
// each use).
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; N]))
    }
    /// The initial stack pointer: one past the end (16-byte aligned).
    pub fn top(&self) -> u32 {
        crate::va(self.0.get()) + N as u32
    }
    pub fn bottom(&self) -> u32 {
        crate::va(self.0.get())
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}
