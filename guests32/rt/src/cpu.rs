//! A few instructions read as a ring-1 kernel sees them: segment
//! selectors, EFLAGS, and the privileged reads PV kernels expect the
//! hypervisor to emulate (they fault at CPL 1 and are emulated).
//! On the host every function returns 0.

#[cfg(target_arch = "x86")]
use core::arch::asm;

/// EFLAGS.IF.
pub const EFLAGS_IF: u32 = 1 << 9;
/// EFLAGS bit 1, always set.
pub const EFLAGS_RSVD1: u32 = 1 << 1;
/// EFLAGS.IOPL (bits 12-13).
pub const EFLAGS_IOPL: u32 = 3 << 12;
/// CR0.PE.
pub const CR0_PE: u32 = 1 << 0;
/// CR0.TS.
pub const CR0_TS: u32 = 1 << 3;
/// CR0.PG.
pub const CR0_PG: u32 = 1 << 31;

macro_rules! read_seg {
    ($name:ident, $seg:literal) => {
        #[doc = concat!("`mov %", $seg, ", %eax`: the current selector.")]
        pub fn $name() -> u16 {
            #[cfg(target_arch = "x86")]
            {
                let v: u32;
                // SAFETY: reading a segment register has no side effect.
                unsafe {
                    asm!(concat!("mov {0:e}, ", $seg), out(reg) v, options(nomem, nostack))
                };
                v as u16
            }
            #[cfg(not(target_arch = "x86"))]
            {
                0
            }
        }
    };
}

read_seg!(cs, "cs");
read_seg!(ss, "ss");
read_seg!(ds, "ds");
read_seg!(es, "es");
read_seg!(fs, "fs");
read_seg!(gs, "gs");

/// The privilege level the code runs at: `%cs & 3` (1 for a 32-bit PV
/// kernel).
pub fn cpl() -> u8 {
    (cs() & 3) as u8
}

/// `pushf; pop`: the hardware EFLAGS (IF is always 1 for a PV guest; the
/// virtual IF is `!evtchn_upcall_mask`).
pub fn eflags() -> u32 {
    #[cfg(target_arch = "x86")]
    {
        let v: u32;
        // SAFETY: reads EFLAGS through the stack.
        unsafe { asm!("pushfd", "pop {}", out(reg) v) };
        v
    }
    #[cfg(not(target_arch = "x86"))]
    {
        0
    }
}

/// `mov %cr0, %eax`: #GP at CPL 1, emulated by the hypervisor.
pub fn read_cr0() -> u32 {
    #[cfg(target_arch = "x86")]
    {
        let v: u32;
        // SAFETY: a read the hypervisor emulates; no side effect.
        unsafe { asm!("mov {}, cr0", out(reg) v, options(nostack, nomem)) };
        v
    }
    #[cfg(not(target_arch = "x86"))]
    {
        0
    }
}

/// CPUID through the forced-emulation prefix (`ud2a; .ascii "xen";
/// cpuid`, bytes `0f 0b 78 65 6e 0f a2`): the hypervisor's CPUID policy.
/// Returns `[eax, ebx, ecx, edx]`.
pub fn xen_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    #[cfg(target_arch = "x86")]
    {
        let (a, b, c, d): (u32, u32, u32, u32);
        // SAFETY: the hypervisor emulates the sequence and advances eip
        // by 7; ebx is saved and restored around it through a scratch
        // register (it may be reserved by the compiler).
        unsafe {
            asm!(
                "mov {b:e}, ebx",
                ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e",
                "cpuid",
                "xchg {b:e}, ebx",
                b = out(reg) b,
                inout("eax") leaf => a,
                inout("ecx") subleaf => c,
                out("edx") d,
                options(nostack),
            );
        }
        [a, b, c, d]
    }
    #[cfg(not(target_arch = "x86"))]
    {
        let _ = (leaf, subleaf);
        [0; 4]
    }
}
