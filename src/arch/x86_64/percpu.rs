//! Per-CPU data reached through GS while in the hypervisor.
//!
//! The entry code uses it to find this CPU's stack (`syscall` arrives with
//! the guest's RSP), to know whether the vCPU is a 32-bit guest's and
//! whether the way out may be `sysretq`; Rust code reaches it with
//! [`this`] (one load through GS). While a guest runs, the guest's GS base
//! is live and ours waits in IA32_KERNEL_GS_BASE; every entry from a
//! guest `swapgs`es (entry.S).
//!
//! It also holds what the entry paths need to reach their domain without
//! the scheduler lock (`pv::entry::on_domain`, `pv::fast`): the current
//! domain's lock, vCPU and `vcpu_info`, published under `HV` wherever they
//! change, and the
//! work-pending word the way out tests once (Xen's `softirq_pending` and
//! `test_all_events`).

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use x86::msr::{wrmsr, IA32_GS_BASE, IA32_KERNEL_GSBASE};

use super::hot::{HotRef, VcpuFlags};
use super::idt::TrapFrame;

// Tour 02: this CPU's block: its stack, the current vCPU, work pending
#[repr(C)]
pub struct PerCpu {
    /// Points at itself (handy when reading through GS).
    pub self_ptr: u64,
    /// Top of this CPU's hypervisor stack (also TSS.RSP0).
    pub stack_top: u64,
    /// The guest RSP while the syscall entry switches stacks.
    pub scratch_rsp: u64,
    pub cpu: u64,
    /// 1 while the current vCPU is a 32-bit guest's: the way out turns
    /// SMEP/SMAP off for it (to the CPU its ring-1 kernel is supervisor
    /// mode, and its pages are user pages), every way in turns them back
    /// on before any hypervisor code runs (entry.S; Xen: cr4_pv32_restore).
    pub pv32: u64,
    /// The CR4 bits that are: SMEP/SMAP as the CPU has them (0 if none).
    pub cr4_pv32: u64,
    /// Bit 0 set: the next way out to a guest is `sysretq` (entry.S tests
    /// and clears it; only `pv::fast` sets it, for a frame `sysretq`
    /// resumes exactly as `iretq` would).
    pub sysret: AtomicU64,
    /// Work for the way out ([`WORK_RESCHED`], [`WORK_TIMERS`],
    /// [`WORK_IRET_SELFTEST`]): while it
    /// is 0 and no event upcall is due, a return skips the scheduler.
    pub work: AtomicU64,
    /// The current domain's lock (its address: `sync::DomainLock::lock`
    /// compares it; `sync::current_domain` keeps the typed reference), as
    /// `sync::publish_domain` last stored it under `HV` (0: none yet).
    /// (The
    /// frame table needs no pointer: it is one static with per-frame
    /// locks, `mm::frametable::frames`.)
    pub domain: AtomicU64,
    /// The current vCPU's block (0: none), only ever a `HotRef`'s
    /// ([`PerCpu::publish_vcpu`]): what entry.S and bounce.S read and
    /// write (`hot::layout`'s offsets), and whose flags
    /// [`PerCpu::running`] gives the lock-free paths.
    pub(super) vcpu: AtomicU64,
    pub vcpu_info: AtomicU64,
    /// An event send to another domain waiting for this CPU to release its
    /// domain's lock (`pv::event::send_deferred`; 0: none).
    pub deferred_send: AtomicU64,
    /// The current domain's id (bits 0-15) and vCPU index (bits 16-31),
    /// for the recent-calls ring.
    pub ids: AtomicU64,
    /// 1 while the current vCPU is (as last seen) in guest user mode: a
    /// hint for `syscall_entry`, which sends a user system call (a bounce)
    /// the full way at once. Only a hint: the quick way checks the vCPU's
    /// own mode, so a stale 0 costs time, never correctness. Kept by
    /// `pv::traps::toggle_guest_mode` and `pv::entry::publish_current`.
    pub user_mode: AtomicU64,
    /// The current domain's `console_quiet` flag (an `AtomicBool`'s
    /// address, 0: none), published with `domain`: `syscall_entry`
    /// answers `console_io` of 0 bytes itself while it is set.
    pub console_quiet: AtomicU64,
    /// The current domain's `iopl_assist` flag (an `AtomicBool`'s
    /// address, 0: none), published with `domain`: the bounce asm
    /// (bounce.S) reads it where the vCPU's virtual IOPL is not 0.
    pub iopl_assist: AtomicU64,
    /// This CPU's recent-calls ring (`recent::ring_of`), which entry.S
    /// writes the constant answers' records into.
    pub ring: u64,
}

/// The time slice ran out or a guest yielded: the way out reschedules.
pub const WORK_RESCHED: u64 = 1 << 0;
/// A guest timer changed (or fired): the way out re-arms the APIC.
pub const WORK_TIMERS: u64 = 1 << 1;
/// `selftest=iretfault`: the next locked way out gives the guest a frame
/// its `iretq` refuses (`pv::entry::before_guest_return`).
pub const WORK_IRET_SELFTEST: u64 = 1 << 2;

struct Slot(UnsafeCell<PerCpu>);
// SAFETY: each CPU only touches its own slot: the boot CPU this one, an
// application processor the one `init_ap` leaks for it.
unsafe impl Sync for Slot {}

impl PerCpu {
    const fn empty(cpu: u64) -> PerCpu {
        PerCpu {
            self_ptr: 0,
            stack_top: 0,
            scratch_rsp: 0,
            cpu,
            pv32: 0,
            cr4_pv32: 0,
            sysret: AtomicU64::new(0),
            work: AtomicU64::new(0),
            domain: AtomicU64::new(0),
            vcpu: AtomicU64::new(0),
            vcpu_info: AtomicU64::new(0),
            deferred_send: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            user_mode: AtomicU64::new(0),
            console_quiet: AtomicU64::new(0),
            iopl_assist: AtomicU64::new(0),
            ring: 0,
        }
    }
}

static CPU0: Slot = Slot(UnsafeCell::new(PerCpu::empty(0)));

/// This CPU's block, through GS (its `self_ptr`): valid from `init` on,
/// wherever the hypervisor runs (every entry from a guest swaps GS first).
#[inline(always)]
pub fn this() -> &'static PerCpu {
    let p: *const PerCpu;
    // SAFETY: GS_BASE is this CPU's block from `init` on (entry.S swaps it
    // in before any Rust runs for a guest), and its first word points at
    // itself; reading it has no side effects.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags, pure));
    }
    // SAFETY: the block is a static that lives for ever; the fields Rust
    // changes after `init` are atomics (no `&mut` to it is ever made).
    unsafe { &*p }
}

impl PerCpu {
    /// Make `v` this CPU's current vCPU for the asm and [`Self::running`]
    /// (`None`: no vCPU).
    pub fn publish_vcpu(&self, v: Option<&HotRef>) {
        self.vcpu
            .store(v.map_or(0, |v| v.publish()), Ordering::Relaxed);
    }

    /// Whether `v` is this CPU's current vCPU.
    pub fn is_current_vcpu(&self, v: &HotRef) -> bool {
        self.vcpu.load(Ordering::Relaxed) == v.addr()
    }

    /// The current vCPU's flags, for a lock-free entry path (`None`: no
    /// vCPU yet): the two fields such a path changes without the domain's
    /// lock, atomics (`hot`'s module comment).
    #[inline(always)]
    pub fn running(&self) -> Option<&'static VcpuFlags> {
        let p = self.vcpu.load(Ordering::Relaxed) as *const VcpuFlags;
        // SAFETY: 0 or what `publish_vcpu` stored: a `HotRef`'s block,
        // whose `VcpuFlags` come first (`hot::layout`) and which is never
        // freed once published; atomics, only ever shared.
        unsafe { p.as_ref() }
    }

    /// Ask the way out for `bits` of work.
    #[inline]
    pub fn raise(&self, bits: u64) {
        self.work.fetch_or(bits, Ordering::Relaxed);
    }

    /// Take (and clear) the work bits `bits` that were raised.
    #[inline]
    pub fn take(&self, bits: u64) -> u64 {
        if self.work.load(Ordering::Relaxed) & bits == 0 {
            return 0;
        }
        self.work.fetch_and(!bits, Ordering::Relaxed) & bits
    }
}

/// Set up this CPU's block (boot CPU) with its stack top and point GS at it.
pub fn init(stack_top: u64) {
    install(CPU0.0.get(), stack_top);
}

/// Set up an application processor's block (CPU number `cpu`, counted
/// from the boot CPU's 0) and point its GS at it. Never freed.
pub fn init_ap(cpu: u64, stack_top: u64) {
    let slot = alloc::boxed::Box::leak(alloc::boxed::Box::new(Slot(UnsafeCell::new(
        PerCpu::empty(cpu),
    ))));
    install(slot.0.get(), stack_top);
}

fn install(p: *mut PerCpu, stack_top: u64) {
    // SAFETY: `p` is a block no other CPU uses and nothing else holds yet
    // (the boot CPU's static during single-threaded boot, or one just
    // leaked for this CPU); GS_BASE points at it for ever, and
    // KERNEL_GS_BASE is 0 for the (not yet running) guest.
    unsafe {
        (*p).self_ptr = p as u64;
        (*p).stack_top = stack_top;
        (*p).cr4_pv32 = super::cpu::user_protection_bits();
        (*p).ring = super::recent::ring_of((*p).cpu);
        wrmsr(IA32_GS_BASE, p as u64);
        wrmsr(IA32_KERNEL_GSBASE, 0);
    }
}

/// Say whether the current vCPU is a 32-bit guest's (see `PerCpu::pv32`).
pub fn set_pv32(on: bool) {
    let p = this().self_ptr as *mut PerCpu;
    // SAFETY: this CPU's own slot; the entry code reads it only on this
    // CPU, with interrupts off, as we do here (no reference to the field
    // is held anywhere: `this` hands out shared ones, and this is a
    // plain store through the block's own address).
    unsafe { core::ptr::addr_of_mut!((*p).pv32).write(on as u64) }
}

pub fn stack_top() -> u64 {
    this().stack_top
}

/// The slot at the top of this CPU's stack where a guest's registers live
/// while the hypervisor handles its trap (and from where it returns).
pub fn guest_frame() -> *mut TrapFrame {
    (stack_top() - size_of::<TrapFrame>() as u64) as *mut TrapFrame
}

/// A `&'static T` published for lock-free readers: one word, stored and
/// loaded with plain moves. Only a `&'static T` goes in, so what comes
/// out is one (the upper layers keep their per-CPU "current" pointers in
/// these: `sync::current_domain`).
pub struct Published<T: 'static>(AtomicPtr<T>);

impl<T: Sync + 'static> Published<T> {
    pub const fn new() -> Self {
        Published(AtomicPtr::new(core::ptr::null_mut()))
    }

    #[inline(always)]
    pub fn set(&self, r: Option<&'static T>) {
        let p = r.map_or(core::ptr::null_mut(), |r| r as *const T as *mut T);
        // Release/Acquire (a plain `mov` each on x86): what `r` points at
        // is seen as it was when published, from any CPU.
        self.0.store(p, Ordering::Release);
    }

    #[inline(always)]
    pub fn get(&self) -> Option<&'static T> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: `set` is the only store, of a `&'static T` or null; T is
        // Sync, so a shared reference may be used from any CPU.
        unsafe { p.as_ref() }
    }
}

impl<T: Sync + 'static> Default for Published<T> {
    fn default() -> Self {
        Self::new()
    }
}
