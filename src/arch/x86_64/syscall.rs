//! The `syscall` MSRs: how a 64-bit guest enters the hypervisor.

use x86::msr::{rdmsr, wrmsr, IA32_CSTAR, IA32_EFER, IA32_FMASK, IA32_LSTAR, IA32_STAR};

use super::gdt::HYPERVISOR_CS;

extern "C" {
    fn syscall_entry();
    fn syscall32_entry();
}

const EFER_SCE: u64 = 1 << 0;
/// RFLAGS bits cleared on `syscall`: IF (we run with interrupts off until
/// we choose), TF, DF (the ABI wants it clear), NT, AC.
const SFMASK: u64 = 0x200 | 0x100 | 0x400 | 0x4000 | 0x40000;

// Tour 02: where `syscall` from a guest lands
pub fn init() {
    // STAR: kernel CS = 0xe008 (SS = 0xe010); sysret base 0xe023 so a
    // 64-bit sysret would load CS 0xe033 / SS 0xe02b (see gdt.rs).
    let star = (ringvisor_abi::x86_64::FLAT_RING3_CS32 as u64) << 48 | (HYPERVISOR_CS as u64) << 32;
    // SAFETY: these MSRs only say where `syscall` goes; the entry points
    // are entry.S's, which switch to the hypervisor stack before anything.
    unsafe {
        wrmsr(IA32_STAR, star);
        wrmsr(IA32_LSTAR, syscall_entry as *const () as u64);
        wrmsr(IA32_CSTAR, syscall32_entry as *const () as u64);
        wrmsr(IA32_FMASK, SFMASK);
        wrmsr(IA32_EFER, rdmsr(IA32_EFER) | EFER_SCE);
    }
}
