//! The guest's debug registers: `set_debugreg`/`get_debugreg` and the
//! emulated `mov` to and from `%drN` (Xen: `pv/misc-hypercalls.c`
//! set_debugreg, `do_get_debugreg`), with Xen's checks and answers.
//!
//! The values are loaded into the CPU while the vCPU runs
//! (`arch::x86_64::debugreg::activate`, on a change here and on every
//! switch in), so a guest's breakpoints fire and its #DB is bounced with
//! DR6 as it should see it (`merge_dr6`). What keeps that safe is checked
//! here: breakpoints only on the guest's own addresses, never General
//! Detect, no I/O breakpoints; what hits in the hypervisor anyway (the
//! `mov ss` case of XSA-260, a watched buffer a hypercall touches) is the
//! arch #DB handler's, on its own IST stack.

use ringvisor_abi::errno::*;

use crate::domain::Domain;
use crate::pv::hypercall::{err, Ret};

/// DR6 bits that read as 1 (4-11, 16-31) and as 0 (12).
const DR6_RESERVED_ONE: u64 = 0xffff_0ff0;
const DR6_RESERVED_ZERO: u64 = !0xffff_efff & 0xffff_ffff;
/// DR7 bit 10 reads as 1; bits 11-12 and 14-15 as 0; GD (13) is refused.
const DR7_RESERVED_ONE: u64 = 0x400;
const DR7_RESERVED_ZERO: u64 = !0xffff_27ff & 0xffff_ffff;
const DR7_GENERAL_DETECT: u64 = 0x2000;
const DR7_ACTIVE_MASK: u64 = 0xff;
/// DR6 B0-B3, the breakpoints that hit: replaced on each #DB; the other
/// conditions (BD, BS, BT) stay until the guest clears them (Xen's
/// x86_merge_dr6).
const DR6_HITS: u64 = 0xf;
/// DR6 bits the CPU may report: B0-B3, BD, BS, BT and RTM (bit 16, which
/// with positive polarity means "in a transaction"; never here).
const DR6_KNOWN: u64 = DR6_HITS | 0xe000 | 0x1_0000;
/// R/W = 10b: an I/O breakpoint, which needs CR4.DE (never set for a PV
/// guest here).
const DR_IO: u64 = 2;

pub const DR6_DEFAULT: u64 = DR6_RESERVED_ONE;
pub const DR7_DEFAULT: u64 = DR7_RESERVED_ONE;
// A new vCPU starts with arch's reset values (domain::vcpu): the same.
const _: () = assert!(
    DR6_DEFAULT == crate::arch::x86_64::debugreg::DR6_DEFAULT
        && DR7_DEFAULT == crate::arch::x86_64::debugreg::DR7_DEFAULT
);

/// May a breakpoint be put at `addr`? Only on the guest's own addresses
/// (Xen's breakpoint_addr_ok): below the 32-bit hypervisor area, or for a
/// 64-bit guest outside 2^47..HYPERVISOR_VIRT_END.
fn addr_ok(d: &Domain, addr: u64) -> bool {
    if d.is_32bit() {
        addr < ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START as u64
    } else {
        !(1 << 47..ringvisor_abi::x86_64::HYPERVISOR_VIRT_END).contains(&addr)
    }
}

/// Xen's `set_debugreg` for the running vCPU.
pub fn set(d: &mut Domain, reg: u64, value: u64) -> Ret {
    let ok = addr_ok(d, value);
    let v = d.v_mut();
    match reg {
        0..=3 => {
            if !ok {
                return err(EPERM);
            }
            v.dr[reg as usize] = value;
        }
        // CR4.DE is clear for every PV guest here: 4 and 5 alias 6 and 7.
        4 | 6 => {
            if value >> 32 != 0 {
                return err(EINVAL);
            }
            v.dr6 = (value & !DR6_RESERVED_ZERO) | DR6_RESERVED_ONE;
        }
        5 | 7 => {
            if value >> 32 != 0 {
                return err(EINVAL);
            }
            let value = (value & !DR7_RESERVED_ZERO) | DR7_RESERVED_ONE;
            if value & DR7_GENERAL_DETECT != 0 {
                return err(EPERM);
            }
            if value & DR7_ACTIVE_MASK != 0
                && (16..32).step_by(4).any(|i| (value >> i) & 3 == DR_IO)
            {
                return err(EPERM);
            }
            v.dr7 = value;
        }
        _ => return err(ENODEV),
    }
    // The running vCPU's change takes effect now, as in Xen.
    let v = d.v();
    crate::arch::x86_64::debugreg::activate(&v.dr, v.dr7);
    0
}

/// A #DB for the guest: fold `dbg` (the hardware DR6, positive polarity)
/// into the DR6 it reads (Xen: x86_merge_dr6). Only the bits the CPU
/// defines are taken; the rest keep their fixed values.
pub fn merge_dr6(d: &mut Domain, dbg: u64) {
    let v = d.v_mut();
    let mut pos = (v.dr6 ^ DR6_DEFAULT) & !DR6_HITS;
    pos |= dbg & DR6_KNOWN;
    v.dr6 = ((pos ^ DR6_DEFAULT) & !DR6_RESERVED_ZERO) | DR6_RESERVED_ONE;
}

/// Xen's `do_get_debugreg`: the value, or -EINVAL for no such register.
pub fn get(d: &Domain, reg: u64) -> Ret {
    let v = d.v();
    match reg {
        0..=3 => v.dr[reg as usize] as Ret,
        4 | 6 => v.dr6 as Ret,
        5 | 7 => v.dr7 as Ret,
        _ => err(EINVAL),
    }
}
