//! What the firmware tells the hypervisor: ACPI tables (pure logic, over
//! physical memory the caller gives).

pub mod acpi;
pub mod fadt;
