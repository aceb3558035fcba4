//! Domains: the builder (ELF notes, start_info), vCPUs, lifecycle.
pub mod elf;
