//! The lock for what a CPU may hold while it shoots down other CPUs' TLBs
//! (`sched::HV`, every domain's lock).
//!
//! The hypervisor runs with interrupts off, and `smp::flush_tlb` waits
//! until every CPU it asked has flushed. A CPU spinning with interrupts
//! off on a lock whose holder is waiting for that answer would never give
//! it: so a CPU waiting for one of these locks answers shootdowns while
//! it spins (`smp::answer_flush`). Leaf locks (a frame's record, the
//! heap, the console) need none of this: nothing holding one waits for
//! another CPU.

pub struct Mutex<T: ?Sized>(spin::Mutex<T>);

pub type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub const fn new(t: T) -> Self {
        Mutex(spin::Mutex::new(t))
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Take the lock, answering TLB shootdowns aimed at this CPU while
    /// another holds it.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if let Some(g) = self.0.try_lock() {
            return g;
        }
        self.lock_slow()
    }

    #[cold]
    fn lock_slow(&self) -> MutexGuard<'_, T> {
        loop {
            crate::arch::x86_64::smp::answer_flush();
            core::hint::spin_loop();
            if !self.0.is_locked() {
                if let Some(g) = self.0.try_lock() {
                    return g;
                }
            }
        }
    }
}

/// A domain's lock ([`Mutex`]), which also says which vCPU the holder is:
/// taken by the CPU that runs one of the domain's vCPUs (this CPU's
/// block names this lock), it sets `Domain::cur` to that vCPU, so
/// `Domain::v` is the caller's own vCPU while several of the domain's
/// vCPUs run on other CPUs. Taken for another domain (an event sent
/// there, the scheduler's walk), `cur` is left as it was: always a valid
/// index, and no such path uses it to mean the caller.
pub struct DomainLock(Mutex<crate::domain::Domain>);

impl DomainLock {
    pub fn new(d: crate::domain::Domain) -> Self {
        DomainLock(Mutex::new(d))
    }

    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, crate::domain::Domain> {
        use core::sync::atomic::Ordering::Relaxed;
        let mut g = self.0.lock();
        let pc = crate::arch::x86_64::percpu::this();
        if pc.domain.load(Relaxed) == self as *const Self as u64 {
            let vi = (pc.ids.load(Relaxed) >> 16 & 0xffff) as usize;
            if vi < g.vcpus.len() {
                g.cur = vi;
            }
        }
        g
    }
}

/// A domain behind its own lock (docs/design.md, "Lock order"): the
/// hypervisor state's list holds one per domain, and [`current_domain`]
/// gives the current one, so an entry from a guest reaches its domain
/// without the hypervisor lock. Domains are never removed from the list:
/// each lock is allocated once and lives for the whole run ([`new_domain`]).
pub type DomainRef = &'static DomainLock;

/// A new domain's lock, for the run.
pub fn new_domain(d: crate::domain::Domain) -> DomainRef {
    alloc::boxed::Box::leak(alloc::boxed::Box::new(DomainLock::new(d)))
}

use crate::arch::x86_64::percpu::{PerCpu, Published};
use crate::arch::x86_64::smp::MAX_CPUS;

/// Each CPU's current domain, by CPU number: what the lock-free entry
/// paths (`pv::fast`) lock. Set with this CPU's block's `domain` (the
/// address [`DomainLock::lock`] compares) by [`publish_domain`].
static CURRENT: [Published<DomainLock>; MAX_CPUS] = [const { Published::new() }; MAX_CPUS];
const _: () = assert!(MAX_CPUS.is_power_of_two());

/// Make `d` the current domain of the CPU `pc` is the block of (this one).
pub fn publish_domain(pc: &PerCpu, d: Option<DomainRef>) {
    pc.domain.store(
        d.map_or(0, |d| d as *const DomainLock as u64),
        core::sync::atomic::Ordering::Relaxed,
    );
    CURRENT[pc.cpu as usize % MAX_CPUS].set(d);
}

/// This CPU's current domain (`pc` is this CPU's block), as
/// [`publish_domain`] last set it; `None` before the first domain runs.
#[inline(always)]
pub fn current_domain(pc: &PerCpu) -> Option<Current> {
    debug_assert!((pc.cpu as usize) < MAX_CPUS);
    let lock = CURRENT[pc.cpu as usize % MAX_CPUS].get()?;
    let vcpu = (pc.ids.load(core::sync::atomic::Ordering::Relaxed) >> 16 & 0xffff) as usize;
    Some(Current { lock, vcpu })
}

/// This CPU's current domain and vCPU, from [`current_domain`]: its
/// [`lock`](Current::lock) is [`DomainLock::lock`]'s, without asking
/// whether the domain is this CPU's (it is). Good for one entry: the vCPU
/// index is the one current when it was made, and only the scheduler
/// (under `HV`, on the locked way out) changes that.
#[derive(Clone, Copy)]
pub struct Current {
    lock: DomainRef,
    vcpu: usize,
}

impl Current {
    #[inline(always)]
    pub fn lock(self) -> MutexGuard<'static, crate::domain::Domain> {
        let mut g = self.lock.0.lock();
        if self.vcpu < g.vcpus.len() {
            g.cur = self.vcpu;
        }
        g
    }

    pub fn domain(self) -> DomainRef {
        self.lock
    }
}
