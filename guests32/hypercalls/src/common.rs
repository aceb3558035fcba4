//! What the cases share: addresses, errno values, PTEs, system time.

use core::arch::asm;
use core::mem::offset_of;

use pvguest32::abi::{self, x86_32::VcpuInfo32, VcpuTimeInfo};
use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_SS};
use pvguest32::report::neg;
use pvguest32::start_info;

/// An address nothing maps: its L3 quarter (1-2 GiB) holds nothing of the
/// bootstrap region at 0xC0000000.
pub const UNMAPPED: u32 = 0x5ead_b000;
/// The start of the hypervisor's part of a 32-bit address space (Xen:
/// `HYPERVISOR_COMPAT_VIRT_START`, where the read-only compat M2P begins).
pub const HV_START: u32 = abi::x86_32::HYPERVISOR_COMPAT_VIRT_START;

/// `FLAT_RING1_CS` with RPL 0 (0xe018).
pub const RING1_CS_RPL0: u32 = FLAT_RING1_CS as u32 & !3;
/// `FLAT_RING1_SS` with RPL 0 (0xe020).
pub const RING1_SS_RPL0: u32 = FLAT_RING1_SS as u32 & !3;

pub const EFAULT: i32 = neg(abi::EFAULT);
pub const EINVAL: i32 = neg(abi::EINVAL);
pub const ENOSYS: i32 = neg(abi::ENOSYS);
pub const ENOENT: i32 = neg(abi::ENOENT);
pub const EPERM: i32 = neg(abi::EPERM);

pub use pvguest32::start_info::{PTE_ACCESSED, PTE_ADDR, PTE_DIRTY, PTE_NX, PTE_PRESENT, PTE_RW};

/// A PAE PTE for machine frame `mfn` with `flags`.
pub fn pte(mfn: u32, flags: u64) -> u64 {
    (u64::from(mfn) << 12) | flags
}

/// Present, writable, accessed, dirty (supervisor: a ring-1 kernel page).
pub const KERNEL_RW: u64 = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY;
/// Present, read-only, accessed.
pub const KERNEL_RO: u64 = PTE_PRESENT | PTE_ACCESSED;

/// The machine frame of a page of the image (its `.bss` included).
pub fn mfn_of(va: u32) -> u32 {
    start_info::virt_to_mfn(va).expect("an image page outside the P2M")
}

/// `lfence; rdtsc`.
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the TSC (CR4.TSD is clear for PV guests).
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

fn time_u32(off: usize) -> u32 {
    let base = start_info::shared_info() as usize + offset_of!(VcpuInfo32, time);
    // SAFETY: inside vcpu_info[0].time of the mapped shared_info page,
    // 4-byte aligned; volatile because the hypervisor rewrites it.
    unsafe { ((base + off) as *const u32).read_volatile() }
}

fn time_u64(off: usize) -> u64 {
    u64::from(time_u32(off)) | u64::from(time_u32(off + 4)) << 32
}

/// Xen system time in ns, from `vcpu_info[0].time` (32-bit `vcpu_info`,
/// `time` at offset 32) and the TSC, as `xen.h` describes it.
pub fn now_ns() -> u64 {
    loop {
        let version = time_u32(offset_of!(VcpuTimeInfo, version));
        if version & 1 != 0 {
            continue;
        }
        let stamp = time_u64(offset_of!(VcpuTimeInfo, tsc_timestamp));
        let system = time_u64(offset_of!(VcpuTimeInfo, system_time));
        let mul = u64::from(time_u32(offset_of!(VcpuTimeInfo, tsc_to_system_mul)));
        let shift = time_u32(offset_of!(VcpuTimeInfo, tsc_shift)) as u8 as i8;
        let tsc = rdtsc();
        if time_u32(offset_of!(VcpuTimeInfo, version)) != version {
            continue;
        }
        let mut delta = tsc.wrapping_sub(stamp);
        delta = if shift >= 0 {
            delta << shift
        } else {
            delta >> -shift
        };
        // (delta * mul) >> 32 without a 128-bit product.
        let scaled = (delta >> 32) * mul + (((delta & 0xffff_ffff) * mul) >> 32);
        return system + scaled;
    }
}

/// `case` and `what` in one string (fixed buffer: no allocator).
pub fn join(case: &str, what: &str) -> Joined {
    let mut j = Joined([0; 128], 0);
    for b in case.bytes().chain(what.bytes()) {
        if j.1 < j.0.len() {
            j.0[j.1] = b;
            j.1 += 1;
        }
    }
    j
}

pub struct Joined([u8; 128], usize);

impl core::ops::Deref for Joined {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.0[..self.1]).unwrap_or("?")
    }
}

/// One `mmu_update` request (`MMU_NORMAL_PT_UPDATE`) of the guest's own.
/// Every caller changes entries of its own tables that map only addresses
/// nothing else uses (scratch pages, the free range, frames it just made
/// tables), or makes a call that is refused.
pub fn mmu1(ptr: u64, val: u64) -> i32 {
    let req = pvguest32::abi::MmuUpdate {
        ptr: ptr | abi::MMU_NORMAL_PT_UPDATE,
        val,
    };
    // SAFETY: as the comment above says of every caller.
    unsafe { pvguest32::hypercall::mmu_update(pvguest32::va(&req), 1, 0, abi::DOMID_SELF) }
}
