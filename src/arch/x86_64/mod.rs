//! x86-64: boot entry, CPU tables, traps, timers. `unsafe` lives here.

pub mod answers;
pub mod apic;
pub mod bench;
pub mod context;
pub mod cpu;
pub mod cr;
pub mod debugreg;
pub mod exit;
pub mod firmware;
pub mod gdt;
pub mod hot;
pub mod idt;
pub mod percpu;
pub mod pte;
pub mod recent;
pub mod smp;
pub mod syscall;
pub mod time;
pub mod uart;
pub mod vm;

core::arch::global_asm!(include_str!("../../../boot/boot.S"), options(att_syntax));
