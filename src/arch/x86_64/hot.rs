//! The part of a vCPU the entry asm reads and writes (entry.S, bounce.S):
//! its mode, its trap table, the syscall callback, its kernel stack and
//! page tables, the failsafe state. `arch` owns the layout, so the asm's
//! offsets come from here, not from the policy modules above.
//!
//! Each vCPU (`domain::vcpu::Vcpu`, which derefs to its [`VcpuHot`]) owns
//! one block through a [`HotRef`]: once its address is published for the
//! asm and the lock-free paths ([`super::percpu::PerCpu::running`]), the
//! block is never freed, so that address stays valid for the whole run.
//!
//! A block is two parts. [`VcpuFlags`], the guest's mode and failsafe
//! flag, are atomics the lock-free Rust paths change without the domain's
//! lock (each a plain `mov` on x86), reached only through shared
//! references, so no `&mut` ever covers them. [`VcpuHot`], the rest, is
//! the domain's lock holder's (`HotRef::get_mut`, through the `Vcpu`),
//! and besides it only the entry asm of the CPU running the vCPU reads
//! and writes it, on that vCPU's own entries: the scheduler never runs a
//! vCPU on two CPUs (`Vcpu::running_on`). Another CPU holding the
//! domain's lock while the vCPU runs elsewhere only reads it (the debug
//! keys' dump): it may see a field a moment old (every field is one
//! aligned word or less), which is all that dump needs.

use core::cell::UnsafeCell;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, Ordering};

/// One entry of the virtual IDT (`set_trap_table`).
// Tour 03: one entry of the virtual IDT
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct TrapEntry {
    /// Bits 0-1: the DPL `int n` needs; bit 2 (`TI_IF`): mask events.
    pub flags: u8,
    pub cs: u16,
    /// 0: no handler.
    pub address: u64,
}

/// A registered callback (`set_callbacks`, `callback_op`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Callback {
    /// 0: not registered.
    pub address: u64,
    /// Code selector (32-bit guests name one; 0: the flat kernel CS).
    pub cs: u16,
    /// Mask events on entry (`CALLBACKF_mask_events`).
    pub mask_events: bool,
}

/// The two flags a vCPU's lock-free entry paths change (see the module
/// comment): atomics, read and written through `&`.
#[repr(C)]
pub struct VcpuFlags {
    /// Guest kernel mode (else guest user mode). Both run in ring 3 for a
    /// 64-bit guest; a 32-bit guest's is its ring (1 or 3).
    kernel_mode: AtomicBool,
    /// The failsafe callback was entered and the guest has not made
    /// progress since (no hypercall, no bounce delivered): a bounce that
    /// fails now crashes the domain instead of looping.
    in_failsafe: AtomicBool,
}

impl VcpuFlags {
    #[inline(always)]
    pub fn kernel_mode(&self) -> bool {
        self.kernel_mode.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub fn set_kernel_mode(&self, on: bool) {
        self.kernel_mode.store(on, Ordering::Relaxed)
    }

    #[inline(always)]
    pub fn in_failsafe(&self) -> bool {
        self.in_failsafe.load(Ordering::Relaxed)
    }

    /// A hypercall or a bounce delivered is progress: `false`.
    #[inline(always)]
    pub fn set_in_failsafe(&self, on: bool) {
        self.in_failsafe.store(on, Ordering::Relaxed)
    }
}

/// What the entry asm knows of a vCPU besides its [`VcpuFlags`] (see the
/// module comment).
#[repr(C)]
pub struct VcpuHot {
    /// Virtual IOPL (`physdev_op set_iopl`), 0-3.
    pub iopl: u32,
    /// Failsafe callbacks delivered since the last bounce that could be
    /// written (pv::traps::deliver): a guest looping through it is ended.
    pub failsafe_streak: u32,
    /// Top-level page tables: kernel and user (`new_user_baseptr`; 0 = none).
    pub guest_table: u64,
    pub guest_table_user: u64,
    /// 32-bit guests: the hypervisor's own top-level table for this vCPU,
    /// whose slot 0 holds the guest's PAE L3 (0 for 64-bit guests).
    pub compat_l4: u64,
    /// Virtual CR2: the address of the last page fault bounced.
    pub cr2: u64,
    /// The guest kernel stack for entries from user mode (`stack_switch`).
    pub kernel_sp: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
    pub syscall: Callback,
    pub trap_table: [TrapEntry; 256],
}

impl VcpuHot {
    const fn new() -> VcpuHot {
        const NO_HANDLER: TrapEntry = TrapEntry {
            flags: 0,
            cs: 0,
            address: 0,
        };
        VcpuHot {
            iopl: 0,
            failsafe_streak: 0,
            guest_table: 0,
            guest_table_user: 0,
            compat_l4: 0,
            cr2: 0,
            kernel_sp: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
            syscall: Callback {
                address: 0,
                cs: 0,
                mask_events: false,
            },
            trap_table: [NO_HANDLER; 256],
        }
    }
}

/// The flags first: `PerCpu::running` reads them at the block's address.
#[repr(C)]
struct Block {
    flags: VcpuFlags,
    hot: UnsafeCell<VcpuHot>,
    /// Its address was given out (`PerCpu::publish_vcpu`): the block then
    /// lives for the run, whatever becomes of its owner.
    published: AtomicBool,
}
// SAFETY: shared between CPUs as the module comment says: `flags` are
// atomics; `hot` is reached from Rust only through its `HotRef` (one per
// block, `&`/`&mut` as that borrow says) and otherwise only by the asm of
// the CPU running the vCPU, with plain aligned loads and stores.
unsafe impl Sync for Block {}

/// A vCPU's block: one per vCPU, not `Clone`, so Rust reaches each block
/// only through its owner's borrows. Dropped before it was ever published
/// (a domain build that failed after making its vCPUs), the block is
/// freed; once published, it stays for the run.
pub struct HotRef(core::ptr::NonNull<Block>);

// SAFETY: a HotRef is the unique owner of its block (like a Box), which
// is Sync.
unsafe impl Send for HotRef {}
// SAFETY: as for Send: `&HotRef` only ever gives `&VcpuHot` and the
// atomics of `&VcpuFlags`.
unsafe impl Sync for HotRef {}

impl HotRef {
    /// A new vCPU's block (freed with its owner unless its address was
    /// published to the entry asm: then kept for the run).
    pub fn new() -> HotRef {
        let b = alloc::boxed::Box::new(Block {
            flags: VcpuFlags {
                kernel_mode: AtomicBool::new(true),
                in_failsafe: AtomicBool::new(false),
            },
            hot: UnsafeCell::new(VcpuHot::new()),
            published: AtomicBool::new(false),
        });
        HotRef(core::ptr::NonNull::from(alloc::boxed::Box::leak(b)))
    }

    #[inline(always)]
    fn block(&self) -> &Block {
        // SAFETY: the block is freed only by this HotRef's drop, and only
        // if never published.
        unsafe { self.0.as_ref() }
    }

    /// Its flags: shared, whoever holds what (atomics).
    #[inline(always)]
    pub fn flags(&self) -> &VcpuFlags {
        &self.block().flags
    }

    #[inline(always)]
    pub fn get(&self) -> &VcpuHot {
        // SAFETY: this HotRef is the block's only Rust handle, borrowed
        // shared here (the asm's stores: module comment).
        unsafe { &*self.block().hot.get() }
    }

    #[inline(always)]
    pub fn get_mut(&mut self) -> &mut VcpuHot {
        // SAFETY: as in `get`, borrowed exclusively here.
        unsafe { &mut *self.block().hot.get() }
    }

    /// The block's address, for this CPU's block (`PerCpu::publish_vcpu`):
    /// from now on it lives for the run.
    pub(super) fn publish(&self) -> u64 {
        self.block().published.store(true, Ordering::Relaxed);
        self.addr()
    }

    /// The block's address (what this CPU's block publishes; the asm's
    /// offsets, [`layout`], are from it).
    pub(super) fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

impl Drop for HotRef {
    fn drop(&mut self) {
        if !self.block().published.load(Ordering::Relaxed) {
            // SAFETY: made by `Box::leak` in `new`, never published, so
            // no address of it is kept anywhere; this is its only owner.
            drop(unsafe { alloc::boxed::Box::from_raw(self.0.as_ptr()) });
        }
    }
}

impl Default for HotRef {
    fn default() -> Self {
        Self::new()
    }
}

/// The offsets bounce.S and entry.S use, read off the layout above.
pub mod layout {
    use super::*;

    /// A field of the block's `VcpuHot` (`UnsafeCell` is transparent).
    const HOT: usize = offset_of!(Block, hot);

    pub const VCPU_KERNEL_MODE: usize =
        offset_of!(Block, flags) + offset_of!(VcpuFlags, kernel_mode);
    pub const VCPU_IN_FAILSAFE: usize =
        offset_of!(Block, flags) + offset_of!(VcpuFlags, in_failsafe);
    pub const VCPU_IOPL: usize = HOT + offset_of!(VcpuHot, iopl);
    pub const VCPU_GUEST_TABLE: usize = HOT + offset_of!(VcpuHot, guest_table);
    pub const VCPU_TRAP_TABLE: usize = HOT + offset_of!(VcpuHot, trap_table);
    pub const VCPU_FAILSAFE_STREAK: usize = HOT + offset_of!(VcpuHot, failsafe_streak);
    pub const VCPU_GUEST_TABLE_USER: usize = HOT + offset_of!(VcpuHot, guest_table_user);
    pub const VCPU_GS_BASE_KERNEL: usize = HOT + offset_of!(VcpuHot, gs_base_kernel);
    pub const VCPU_GS_BASE_USER: usize = HOT + offset_of!(VcpuHot, gs_base_user);
    pub const VCPU_KERNEL_SP: usize = HOT + offset_of!(VcpuHot, kernel_sp);
    pub const VCPU_SYSCALL_CB: usize = HOT + offset_of!(VcpuHot, syscall);
    pub const VCPU_COMPAT_L4: usize = HOT + offset_of!(VcpuHot, compat_l4);
    pub const VCPU_CR2: usize = HOT + offset_of!(VcpuHot, cr2);
    pub const CB_ADDRESS: usize = offset_of!(Callback, address);
    pub const CB_MASK: usize = offset_of!(Callback, mask_events);
    pub const TE_SHIFT: u32 = size_of::<TrapEntry>().trailing_zeros();
    pub const TE_ADDRESS: usize = offset_of!(TrapEntry, address);
    pub const TE_FLAGS: usize = offset_of!(TrapEntry, flags);
    pub const TE_CS: usize = offset_of!(TrapEntry, cs);
    const _: () = assert!(size_of::<TrapEntry>().is_power_of_two());
    // The asm reads and writes the flags as bytes; `PerCpu::running` finds
    // them at the block's address.
    const _: () = assert!(size_of::<AtomicBool>() == 1 && offset_of!(Block, flags) == 0);
}
