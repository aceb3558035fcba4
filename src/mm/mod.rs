//! Memory: physical frames, the hypervisor's page tables, the heap.

pub mod frame;
pub mod frametable;
pub mod iomem;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;
