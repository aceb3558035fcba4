//! The hypervisor heap: `linked_list_allocator` over frames from the pool.

use linked_list_allocator::LockedHeap;

use super::paging;

pub const HEAP_SIZE: u64 = 4 << 20;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Give the heap `HEAP_SIZE` bytes of contiguous frames. Returns its base.
pub fn init() -> Option<u64> {
    let first = paging::with_frames(|fa| fa.alloc_contiguous(HEAP_SIZE / 4096, 1))?;
    let va = paging::phys_to_virt(first.addr());
    // SAFETY: the frames were just taken from the pool and are ours for
    // good; the direct map maps them writable at `va`.
    unsafe { HEAP.lock().init(va as *mut u8, HEAP_SIZE as usize) };
    Some(va)
}
