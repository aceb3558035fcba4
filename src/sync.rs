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
/// hypervisor state's list holds one per domain, and this CPU's block
/// points at the current one, so an entry from a guest reaches its
/// domain without the hypervisor lock. Domains are never removed from
/// the list, so the address stays valid for the whole run.
pub type DomainRef = alloc::sync::Arc<DomainLock>;
