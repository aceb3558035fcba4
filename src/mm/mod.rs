//! Memory: physical frames, the hypervisor's page tables, the heap, the
//! loader's blocks. With `arch`, the one place `unsafe` may be (turning
//! addresses into memory, behind safe, checked views).

pub mod boot;
pub mod frame;
pub mod frametable;
#[cfg(target_os = "none")]
pub mod heap;
pub mod iomem;
#[cfg(target_os = "none")]
pub mod paging;
#[cfg(target_os = "none")]
pub mod userwin;
#[cfg(target_os = "none")]
pub mod view;
