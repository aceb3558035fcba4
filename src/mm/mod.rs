//! Memory: physical frames, the hypervisor's page tables, the heap.

pub mod frame;
pub mod frametable;
#[cfg(target_os = "none")]
pub mod heap;
pub mod iomem;
#[cfg(target_os = "none")]
pub mod paging;
#[cfg(target_os = "none")]
pub mod view;
