//! `print!`/`println!` over `console_io(CONSOLEIO_write)`.
//!
//! Each `print!` formats into a 256-byte buffer on the stack and writes it
//! with one hypercall (more only for longer output), so a line usually
//! reaches the hypervisor whole. Xen writes dom0's console straight to the
//! serial line; ringvisor prefixes each domain's lines with `(dN) `.
//!
//! After [`use_ring`] the same output goes through a console ring page
//! instead (`struct xencons_interface`, the `out` half), the way a domU
//! kernel writes its console: bytes at `out[MASK(out_prod)]`, then
//! `out_prod` advanced, then the ring's event channel notified.

use core::mem::offset_of;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::abi::{self, XenconsInterface};

pub use pvguest_common::console::{_print, contains, until_nul, CStr, LineWriter};

/// The ring's virtual address (0: write with `console_io`).
static RING: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);

/// From now on, write the console through the ring mapped at `va`,
/// notifying event channel `port`.
pub fn use_ring(va: u64, port: u32) {
    RING_PORT.store(port, Ordering::SeqCst);
    RING.store(va, Ordering::SeqCst);
}

fn ring_index(ring: u64, off: usize) -> &'static AtomicU32 {
    // SAFETY: `use_ring`'s caller mapped the ring page at `ring`; the
    // index is an aligned u32 inside it, shared with the hypervisor.
    unsafe { AtomicU32::from_ptr((ring + off as u64) as *mut u32) }
}

/// Writes `bytes` into the ring at `ring`, notifying `port` after the
/// last byte (and whenever the ring is full, then waiting for the reader).
pub fn ring_write(ring: u64, port: u32, bytes: &[u8]) {
    let prod_ix = ring_index(ring, offset_of!(XenconsInterface, out_prod));
    let cons_ix = ring_index(ring, offset_of!(XenconsInterface, out_cons));
    let out = ring + offset_of!(XenconsInterface, out) as u64;
    let mut prod = prod_ix.load(Ordering::Relaxed);
    for &b in bytes {
        while prod.wrapping_sub(cons_ix.load(Ordering::Acquire)) as usize >= abi::XENCONS_OUT_SIZE {
            prod_ix.store(prod, Ordering::Release);
            crate::events::send(port);
            crate::events::yield_now();
        }
        // SAFETY: inside the ring's `out` array (index masked).
        unsafe { ((out + abi::mask_xencons_out(prod) as u64) as *mut u8).write_volatile(b) };
        prod = prod.wrapping_add(1);
    }
    fence(Ordering::Release);
    prod_ix.store(prod, Ordering::Release);
    crate::events::send(port);
}

/// Where the shared [`LineWriter`] writes: the ring after [`use_ring`],
/// else `console_io`.
#[no_mangle]
fn pvguest_console_write(bytes: &[u8]) {
    let ring = RING.load(Ordering::SeqCst);
    if ring != 0 {
        ring_write(ring, RING_PORT.load(Ordering::SeqCst), bytes);
    } else {
        // Nothing useful can be done if the console refuses.
        let _ = crate::hypercall::console_write(bytes);
    }
}
