//! Would the CPU's `iretq` take this return frame? The checks the CPU makes
//! on the way back to a guest (SDM Vol. 2A, IRET, return to an outer
//! privilege level), done in software first.
//!
//! Xen lets a guest return to whatever its `HYPERVISOR_iret` frame or its
//! registered callbacks say and gives the exit `iretq` an exception
//! fixup: when it faults, the fault goes to the guest as if its own code
//! had raised it. ringvisor answers the same, but asks here before the
//! `iretq` instead of after it, so the hypervisor's own `iretq` faults
//! only through a hypervisor bug (and even then the fixup in `idt.rs`
//! crashes just that domain).
//!
//! A refused frame gives the fault the CPU would raise: the vector and
//! the error code it pushes (the selector with its RPL bits cleared, or 0).

use ringvisor_abi::x86_32 as c32;
use ringvisor_abi::x86_64 as c64;

pub const VEC_NP: u8 = 11;
pub const VEC_SS: u8 = 12;
pub const VEC_GP: u8 = 13;

/// The first GDT entry of the hypervisor's reserved area (0xe000 / 8).
const FIRST_RESERVED: usize = 0xe000 / 8;

const D_ACCESSED_WRITABLE: u64 = 1 << 41;
const D_CONFORMING: u64 = 1 << 42;
const D_CODE: u64 = 1 << 43;
const D_SEGMENT: u64 = 1 << 44;
const D_PRESENT: u64 = 1 << 47;
const D_LONG: u64 = 1 << 53;
const D_DEFAULT32: u64 = 1 << 54;
const D_GRANULAR: u64 = 1 << 55;

fn dpl(desc: u64) -> u16 {
    ((desc >> 45) & 3) as u16
}

fn limit(desc: u64) -> u64 {
    let l = (desc & 0xffff) | ((desc >> 48) & 0xf) << 16;
    if desc & D_GRANULAR != 0 {
        l << 12 | 0xfff
    } else {
        l
    }
}

#[inline(always)]
fn canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1ffff
}

/// The error code of a fault naming `sel` (EXT and IDT bits clear).
fn ec(sel: u16) -> u64 {
    (sel & 0xfffc) as u64
}

/// The descriptor `sel` names: the guest's own GDT below the reserved
/// area, the hypervisor's flat segments inside it. `None`: no usable
/// descriptor there (beyond the table, LDT (ringvisor gives guests none),
/// or a reserved entry this kind of guest may not use).
fn descriptor(gdt: &[u64], compat: bool, sel: u16) -> Option<u64> {
    if sel & 4 != 0 {
        return None;
    }
    let index = (sel >> 3) as usize;
    if index >= FIRST_RESERVED {
        return flat(compat, sel & !3);
    }
    gdt.get(index).copied()
}

/// The hypervisor's flat segments a guest may return to, as descriptors
/// (Xen's gdt_table and compat_gdt_table): 4 GiB, present, DPL as named.
fn flat(compat: bool, sel: u16) -> Option<u64> {
    const CODE32: u64 = 0x00cf_9a00_0000_ffff; // 4 GiB, 32-bit code, DPL 0
    const DATA32: u64 = 0x00cf_9200_0000_ffff; // 4 GiB, writable data, DPL 0
    const CODE64: u64 = 0x00af_9a00_0000_ffff; // long mode code, DPL 0
    let with_dpl = |d: u64, dpl: u64| d | dpl << 45;
    if compat {
        match sel | 3 {
            s if s == c32::FLAT_RING1_CS | 2 => Some(with_dpl(CODE32, 1)),
            s if s == c32::FLAT_RING1_DS | 2 => Some(with_dpl(DATA32, 1)),
            s if s == c32::FLAT_RING3_CS => Some(with_dpl(CODE32, 3)),
            s if s == c32::FLAT_RING3_DS => Some(with_dpl(DATA32, 3)),
            _ => None,
        }
    } else {
        match sel | 3 {
            s if s == c64::FLAT_RING3_CS64 => Some(with_dpl(CODE64, 3)),
            s if s == c64::FLAT_RING3_CS32 => Some(with_dpl(CODE32, 3)),
            s if s == c64::FLAT_RING3_SS64 => Some(with_dpl(DATA32, 3)),
            _ => None,
        }
    }
}

/// The fault `iretq` from ring 0 to `cs:rip` with stack `ss` would raise,
/// `None` when it would succeed. `gdt` is the vCPU's own GDT entries,
/// `compat` says a 32-bit guest (whose flat segments differ).
#[inline(always)]
pub fn refused(gdt: &[u64], compat: bool, rip: u64, cs: u16, ss: u16) -> Option<(u8, u64)> {
    // The frames nearly every return has: the flat selectors, a good rip
    // (the same answer as the full walk, without it), in line; the walk
    // out of line.
    if flat_ok(compat, rip, cs, ss) {
        return None;
    }
    refused_walk(gdt, compat, rip, cs, ss)
}

/// The flat selectors of the guest's width and a rip they take: what
/// [`refused`] lets through without looking at a descriptor.
#[inline(always)]
pub fn flat_ok(compat: bool, rip: u64, cs: u16, ss: u16) -> bool {
    if compat {
        matches!(
            (cs, ss),
            (c32::FLAT_RING1_CS, c32::FLAT_RING1_SS) | (c32::FLAT_RING3_CS, c32::FLAT_RING3_SS)
        ) && rip >> 32 == 0
    } else {
        cs == c64::FLAT_RING3_CS64 && ss == c64::FLAT_RING3_SS64 && canonical(rip)
    }
}

/// [`refused`] past its flat case: the descriptors, as the CPU reads them.
#[inline(never)]
fn refused_walk(gdt: &[u64], compat: bool, rip: u64, cs: u16, ss: u16) -> Option<(u8, u64)> {
    let rpl = cs & 3;
    // Code segment: not null, a code descriptor, privilege, present.
    if cs & !3 == 0 {
        return Some((VEC_GP, 0));
    }
    let Some(code) = descriptor(gdt, compat, cs) else {
        return Some((VEC_GP, ec(cs)));
    };
    if code & D_SEGMENT == 0 || code & D_CODE == 0 || rpl == 0 {
        return Some((VEC_GP, ec(cs)));
    }
    let privilege_ok = if code & D_CONFORMING != 0 {
        dpl(code) <= rpl
    } else {
        dpl(code) == rpl
    };
    if !privilege_ok {
        return Some((VEC_GP, ec(cs)));
    }
    if code & D_PRESENT == 0 {
        return Some((VEC_NP, ec(cs)));
    }
    let long = code & D_LONG != 0;
    if long && (compat || code & D_DEFAULT32 != 0) {
        // L and D both set is reserved; a 32-bit guest has no 64-bit code.
        return Some((VEC_GP, ec(cs)));
    }
    // Stack segment: the return is always to an outer ring, so SS is
    // loaded and checked (a null SS only for 64-bit code below ring 3).
    if ss & !3 == 0 {
        if !(long && rpl != 3) {
            return Some((VEC_GP, 0));
        }
    } else {
        let Some(stack) = descriptor(gdt, compat, ss) else {
            return Some((VEC_GP, ec(ss)));
        };
        let writable_data =
            stack & D_SEGMENT != 0 && stack & D_CODE == 0 && stack & D_ACCESSED_WRITABLE != 0;
        if ss & 3 != rpl || dpl(stack) != rpl || !writable_data {
            return Some((VEC_GP, ec(ss)));
        }
        if stack & D_PRESENT == 0 {
            return Some((VEC_SS, ec(ss)));
        }
    }
    // The instruction pointer: canonical for 64-bit code, inside the
    // limit for 32-bit code (AMD compares all 64 bits with the limit).
    let rip_ok = if long {
        canonical(rip)
    } else {
        rip <= limit(code)
    };
    if !rip_ok {
        return Some((VEC_GP, 0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat 4 GiB descriptor: `code`, DPL `dpl`, present or not.
    fn seg(code: bool, writable: bool, dpl: u64, present: bool) -> u64 {
        let mut d = 0x00cf_1000_0000_ffffu64 | dpl << 45;
        if code {
            d |= D_CODE | 1 << 41; // readable
        } else if writable {
            d |= D_ACCESSED_WRITABLE;
        }
        if present {
            d |= D_PRESENT;
        }
        d
    }

    #[test]
    fn flat_pairs_pass() {
        assert_eq!(
            refused(&[], true, 0x1000, c32::FLAT_RING1_CS, c32::FLAT_RING1_SS),
            None
        );
        assert_eq!(
            refused(
                &[],
                true,
                0xffff_ffff,
                c32::FLAT_RING3_CS,
                c32::FLAT_RING3_SS
            ),
            None
        );
        assert_eq!(
            refused(
                &[],
                false,
                0xffff_8000_0000_0000,
                c64::FLAT_RING3_CS64,
                c64::FLAT_RING3_SS64
            ),
            None
        );
        assert_eq!(
            refused(
                &[],
                false,
                0x1000,
                c64::FLAT_RING3_CS32,
                c64::FLAT_RING3_SS64
            ),
            None
        );
    }

    #[test]
    fn addresses() {
        // 64-bit code: canonical; 32-bit code: within 4 GiB, all 64 bits.
        assert_eq!(
            refused(
                &[],
                false,
                1 << 63,
                c64::FLAT_RING3_CS64,
                c64::FLAT_RING3_SS64
            ),
            Some((VEC_GP, 0))
        );
        assert_eq!(
            refused(
                &[],
                false,
                1 << 32,
                c64::FLAT_RING3_CS32,
                c64::FLAT_RING3_SS64
            ),
            Some((VEC_GP, 0))
        );
        assert_eq!(
            refused(&[], true, 1 << 32, c32::FLAT_RING1_CS, c32::FLAT_RING1_SS),
            Some((VEC_GP, 0))
        );
        // A byte-granular 1 MiB code segment.
        let small = seg(true, false, 3, true) & !D_GRANULAR;
        let gdt = [0, small, seg(false, true, 3, true)];
        assert_eq!(refused(&gdt, true, 0xfffff, 0x0b, 0x13), None);
        assert_eq!(refused(&gdt, true, 0x100000, 0x0b, 0x13), Some((VEC_GP, 0)));
    }

    #[test]
    fn selectors() {
        let gdt = [
            seg(true, false, 3, true),  // 0: never a segment (the null selector)
            seg(true, false, 3, true),  // 1 (0x0b): ring-3 code
            seg(false, true, 3, true),  // 2 (0x13): ring-3 stack
            seg(false, false, 3, true), // 3 (0x1b): read-only data
            seg(true, false, 1, false), // 4 (0x21): ring-1 code, not present
            seg(false, true, 3, false), // 5 (0x2b): ring-3 stack, not present
            seg(true, false, 1, true),  // 6 (0x31): ring-1 code
        ];
        assert_eq!(refused(&gdt, true, 0, 0x0b, 0x13), None);
        // Index 0 is null whatever the table holds there.
        assert_eq!(refused(&gdt, true, 0, 0x03, 0x13), Some((VEC_GP, 0)));
        assert_eq!(refused(&gdt, true, 0, 0x0b, 0x03), Some((VEC_GP, 0)));
        // A read-only SS, a code SS, an SS of another ring.
        assert_eq!(refused(&gdt, true, 0, 0x0b, 0x1b), Some((VEC_GP, 0x18)));
        assert_eq!(refused(&gdt, true, 0, 0x0b, 0x0b), Some((VEC_GP, 0x08)));
        assert_eq!(
            refused(&gdt, true, 0, 0x0b, c32::FLAT_RING1_SS),
            Some((VEC_GP, (c32::FLAT_RING1_SS & !3) as u64))
        );
        // Not present: #NP for CS, #SS for SS.
        assert_eq!(
            refused(&gdt, true, 0, 0x21, c32::FLAT_RING1_SS),
            Some((VEC_NP, 0x20))
        );
        assert_eq!(refused(&gdt, true, 0, 0x0b, 0x2b), Some((VEC_SS, 0x28)));
        // RPL and DPL disagree; data as CS; beyond the table; the LDT.
        assert_eq!(
            refused(&gdt, true, 0, 0x33, c32::FLAT_RING3_SS),
            Some((VEC_GP, 0x30))
        );
        assert_eq!(refused(&gdt, true, 0, 0x13, 0x13), Some((VEC_GP, 0x10)));
        assert_eq!(refused(&gdt, true, 0, 0x43, 0x13), Some((VEC_GP, 0x40)));
        assert_eq!(refused(&gdt, true, 0, 0x0f, 0x13), Some((VEC_GP, 0x0c)));
        // RPL 0 never goes back to a guest; hypervisor selectors refused.
        assert_eq!(refused(&gdt, true, 0, 0x08, 0x13), Some((VEC_GP, 0x08)));
        assert_eq!(
            refused(&gdt, false, 0, 0xe00b, c64::FLAT_RING3_SS64),
            Some((VEC_GP, 0xe008))
        );
        // A 32-bit guest's flat selectors mean nothing to a 64-bit one.
        assert_eq!(
            refused(&gdt, false, 0, c32::FLAT_RING1_CS, c32::FLAT_RING1_SS),
            Some((VEC_GP, 0xe018))
        );
    }
}
