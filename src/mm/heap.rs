//! The hypervisor heap: `linked_list_allocator` over frames from the pool.

use linked_list_allocator::LockedHeap;

use super::paging;

/// The heap's fixed part; the frame table (16 bytes per frame of RAM) is
/// added on top, so big machines get a big enough heap.
pub const HEAP_BASE_SIZE: u64 = 8 << 20;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Give the heap `size` bytes of contiguous frames. Returns its base.
pub fn init(size: u64) -> Option<u64> {
    let size = size.next_multiple_of(4096);
    let first = paging::with_frames(|fa| fa.alloc_contiguous(size / 4096, 1))?;
    let va = paging::phys_to_virt(first.addr());
    // SAFETY: the frames were just taken from the pool and are ours for
    // good; the direct map maps them writable at `va`.
    unsafe { HEAP.lock().init(va as *mut u8, size as usize) };
    Some(va)
}

/// Bytes the heap has free now (for sizing what a build puts on it).
pub fn free_bytes() -> u64 {
    HEAP.lock().free() as u64
}
