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
