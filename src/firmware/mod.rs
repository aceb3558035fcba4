//! What the firmware tells the hypervisor: ACPI tables (pure logic, over
//! physical memory the caller gives).

// The MADT reader (SMP bring-up, branch `smp`) has no user on this branch.
#[allow(dead_code)]
pub mod acpi;
pub mod fadt;
