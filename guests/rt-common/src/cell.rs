//! [`GuestCell`]: a global shared between guest code and its trap handlers;
//! [`Page`] and [`Stack`]: page-aligned memory in `.bss`.

use core::cell::UnsafeCell;
use core::marker::PhantomData;

/// A `Copy` value in a `static`, read and written with volatile accesses.
///
/// The guest has one vCPU and one thread of control. A trap handler runs
/// *between* two instructions of the code it interrupted (which does not
/// run again until the handler returns), so a `GuestCell` is never accessed
/// from two places at once. Volatile accesses keep the compiler from caching
/// a value across an instruction that traps. A multi-word value written by
/// code that a handler interrupts may be seen torn by that handler; the
/// runtime's handlers only write cells the interrupted code does not.
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

/// A guest-virtual address as a runtime spells it: `u64` for the 64-bit
/// guests, `u32` for the 32-bit ones (on the host, where nothing runs,
/// pointers are simply truncated).
pub trait Addr: Copy {
    /// The address of `p`.
    fn of(p: *const u8) -> Self;
    /// `self + n`.
    fn plus(self, n: usize) -> Self;
}

impl Addr for u64 {
    fn of(p: *const u8) -> Self {
        p as u64
    }
    fn plus(self, n: usize) -> Self {
        self + n as u64
    }
}

impl Addr for u32 {
    fn of(p: *const u8) -> Self {
        p as usize as u32
    }
    fn plus(self, n: usize) -> Self {
        self + n as u32
    }
}

/// A page-aligned, zero-initialised page in `.bss` (stacks, the page
/// `shared_info` is mapped over), its address an `A`. The runtimes name
/// it `Page` with their address type.
#[repr(C, align(4096))]
pub struct Page<A>(pub UnsafeCell<[u8; 4096]>, PhantomData<fn() -> A>);

// SAFETY: its contents are only touched through raw pointers by code that
// documents who owns the page.
unsafe impl<A> Sync for Page<A> {}

impl<A: Addr> Page<A> {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; 4096]), PhantomData)
    }
    /// Its guest-virtual address.
    pub fn addr(&self) -> A {
        A::of(self.0.get().cast())
    }
}

impl<A: Addr> Default for Page<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// `N` bytes, page aligned, zero-initialised, in `.bss`: a stack, its
/// addresses `A`s. The runtimes name it `Stack<N>` with their address type.
#[repr(C, align(4096))]
pub struct Stack<const N: usize, A>(pub UnsafeCell<[u8; N]>, PhantomData<fn() -> A>);

// SAFETY: a stack is used by exactly one context at a time (documented at
// each use).
unsafe impl<const N: usize, A> Sync for Stack<N, A> {}

impl<const N: usize, A: Addr> Stack<N, A> {
    pub const fn new() -> Self {
        Self(UnsafeCell::new([0; N]), PhantomData)
    }
    /// The initial stack pointer: one past the end (16-byte aligned).
    pub fn top(&self) -> A {
        A::of(self.0.get().cast()).plus(N)
    }
    pub fn bottom(&self) -> A {
        A::of(self.0.get().cast())
    }
}

impl<const N: usize, A: Addr> Default for Stack<N, A> {
    fn default() -> Self {
        Self::new()
    }
}
