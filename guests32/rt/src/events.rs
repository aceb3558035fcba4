//! The event upcall's default work: acknowledge whatever is pending
//! (32-bit 2-level ABI: `evtchn_pending_sel` and the 32 pending/mask
//! words are 4 bytes each, `xen-x86_32.h` `xen_ulong_t`).

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::cell::GuestCell;
use crate::start_info::shared_info;

static DELIVERED: GuestCell<u32> = GuestCell::new(0);
static LAST_PORT: GuestCell<u32> = GuestCell::new(u32::MAX);

fn atomic_u32(p: *mut u32) -> &'static AtomicU32 {
    // SAFETY: an aligned u32 of the mapped shared_info page, shared with
    // the hypervisor (which accesses it atomically too).
    unsafe { AtomicU32::from_ptr(p) }
}

/// Clears `evtchn_upcall_pending`, takes the selector word and clears
/// every pending, unmasked port it names. Returns how many it cleared.
pub fn dispatch() -> u32 {
    let si = shared_info();
    // SAFETY: fields of the mapped page, used atomically (the hypervisor
    // sets these bits concurrently).
    let (pending, sel) = unsafe {
        (
            AtomicU8::from_ptr(addr_of_mut!((*si).vcpu_info[0].evtchn_upcall_pending)),
            atomic_u32(addr_of_mut!((*si).vcpu_info[0].evtchn_pending_sel)),
        )
    };
    pending.store(0, Ordering::SeqCst);
    let mut words = sel.swap(0, Ordering::SeqCst);
    let mut n = 0;
    while words != 0 {
        let w = words.trailing_zeros();
        words &= words - 1;
        // SAFETY: w < 32: inside the arrays of the mapped page.
        let (pend, mask) = unsafe {
            (
                atomic_u32(addr_of_mut!((*si).evtchn_pending[w as usize])),
                addr_of!((*si).evtchn_mask[w as usize]).read_volatile(),
            )
        };
        let mut bits = pend.load(Ordering::SeqCst) & !mask;
        while bits != 0 {
            let b = bits.trailing_zeros();
            bits &= bits - 1;
            pend.fetch_and(!(1 << b), Ordering::SeqCst);
            LAST_PORT.set(w * 32 + b);
            n += 1;
        }
    }
    DELIVERED.set(DELIVERED.get() + n);
    n
}

/// Ports acknowledged by [`dispatch`] so far.
pub fn delivered() -> u32 {
    DELIVERED.get()
}

/// The last port [`dispatch`] acknowledged (`u32::MAX`: none).
pub fn last_port() -> u32 {
    LAST_PORT.get()
}
