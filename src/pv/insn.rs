//! Decoding the few instructions the hypervisor emulates on a guest's
//! behalf that need more than an opcode byte (pure: tested on the host).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Reg(u8),
    Imm(u64),
    Xchg(u8),
    Cmpxchg(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteStore {
    pub kind: StoreKind,
    pub len: usize,
}

/// Decode the 64-bit stores a kernel uses to write one page-table entry.
pub fn decode_pte_store(b: &[u8]) -> Option<PteStore> {
    let mut i = 0;
    let mut rex = 0u8;
    while let Some(&p) = b.get(i) {
        match p {
            0xf0 => {}                   // lock
            0x40..=0x4f => rex = p,      // REX (must come last)
            _ => break,
        }
        i += 1;
    }
    if rex & 0x08 == 0 {
        return None; // not a 64-bit operand: a partial entry write
    }
    let (op, two) = match (b.get(i)?, b.get(i + 1)) {
        (0x0f, Some(0xb1)) => (0xb1u8, true),
        (&o, _) => (o, false),
    };
    i += if two { 2 } else { 1 };
    let modrm = *b.get(i)?;
    i += 1;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return None; // register operand: not a memory write
    }
    if rm == 4 {
        let sib = *b.get(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            i += 4;
        }
    }
    i += match (md, rm) {
        (0, 5) => 4, // rip-relative disp32
        (1, _) => 1,
        (2, _) => 4,
        _ => 0,
    };
    let reg = ((modrm >> 3) & 7) | if rex & 0x04 != 0 { 8 } else { 0 };
    let kind = match (op, two) {
        (0x89, false) => StoreKind::Reg(reg),
        (0x87, false) => StoreKind::Xchg(reg),
        (0xb1, true) => StoreKind::Cmpxchg(reg),
        (0xc7, false) if (modrm >> 3) & 7 == 0 => {
            let imm = i32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?);
            i += 4;
            StoreKind::Imm(imm as i64 as u64)
        }
        _ => return None,
    };
    (i <= b.len()).then_some(PteStore { kind, len: i })
}

/// A memory operand, as a ModRM (+SIB, +displacement) encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    pub base: Option<u8>,
    /// Index register and scale (1, 2, 4, 8).
    pub index: Option<(u8, u8)>,
    pub disp: i64,
    /// Relative to the next instruction's address (64-bit code only).
    pub rip_relative: bool,
}

/// Decode the ModRM at `b[i]` (REX bits in `rex`; `addr32`: 32-bit code,
/// where mod 0 / rm 5 is an absolute disp32). Returns the `reg` field,
/// the memory operand (`None` for a register operand: mod 3, then the
/// register number is `rm`) and the index past the operand.
pub fn decode_modrm(b: &[u8], mut i: usize, rex: u8, addr32: bool) -> Option<(u8, Result<MemOperand, u8>, usize)> {
    let modrm = *b.get(i)?;
    i += 1;
    let (md, reg, rm) = (modrm >> 6, ((modrm >> 3) & 7) | (rex & 4) << 1, modrm & 7);
    if md == 3 {
        return Some((reg, Err(rm | (rex & 1) << 3), i));
    }
    let mut op = MemOperand { base: Some(rm | (rex & 1) << 3), index: None, disp: 0, rip_relative: false };
    let mut disp32_only = md == 0 && rm == 5;
    if rm == 4 {
        let sib = *b.get(i)?;
        i += 1;
        let (scale, index, base) = (1u8 << (sib >> 6), ((sib >> 3) & 7) | (rex & 2) << 2, sib & 7);
        op.index = (index != 4).then_some((index, scale));
        op.base = Some(base | (rex & 1) << 3);
        if md == 0 && base == 5 {
            op.base = None;
            disp32_only = true;
        }
    } else if disp32_only {
        op.base = None;
        op.rip_relative = !addr32;
    }
    let dlen = match md {
        1 => 1,
        2 => 4,
        _ if disp32_only => 4,
        _ => 0,
    };
    op.disp = match dlen {
        1 => *b.get(i)? as i8 as i64,
        4 => i32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as i64,
        _ => 0,
    };
    Some((reg, Ok(op), i + dlen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modrm_forms() {
        // sidt (%rax): 0f 01 08
        assert_eq!(decode_modrm(&[0x08], 0, 0, false), Some((1, Ok(MemOperand { base: Some(0), index: None, disp: 0, rip_relative: false }), 1)));
        // 0x10(%rbp,%r9,4) with REX.X: modrm 0x44 (mod 1, rm 4), sib 0x8d, disp8 0x10
        assert_eq!(
            decode_modrm(&[0x44, 0x8d, 0x10], 0, 0x42, false),
            Some((0, Ok(MemOperand { base: Some(5), index: Some((9, 4)), disp: 0x10, rip_relative: false }), 3))
        );
        // rip-relative in 64-bit code, absolute in 32-bit code
        let rel = decode_modrm(&[0x0d, 0x78, 0x56, 0x34, 0x12], 0, 0, false).unwrap();
        assert_eq!(rel.1, Ok(MemOperand { base: None, index: None, disp: 0x12345678, rip_relative: true }));
        let abs = decode_modrm(&[0x0d, 0x78, 0x56, 0x34, 0x12], 0, 0, true).unwrap();
        assert_eq!((abs.0, abs.1, abs.2), (1, Ok(MemOperand { base: None, index: None, disp: 0x12345678, rip_relative: false }), 5));
        // a register operand, REX.B
        assert_eq!(decode_modrm(&[0xe1], 0, 0x41, false), Some((4, Err(9), 1)));
        // truncated
        assert_eq!(decode_modrm(&[0x80, 0x00], 0, 0, false), None);
    }

    fn d(b: &[u8]) -> Option<PteStore> {
        decode_pte_store(b)
    }

    #[test]
    fn mov_reg_to_memory() {
        // mov %rsi, (%rdi)
        assert_eq!(d(&[0x48, 0x89, 0x37]), Some(PteStore { kind: StoreKind::Reg(6), len: 3 }));
        // mov %r9, 0x10(%rax,%rbx,8)
        assert_eq!(d(&[0x4c, 0x89, 0x4c, 0xd8, 0x10]), Some(PteStore { kind: StoreKind::Reg(9), len: 5 }));
        // mov %rax, 0x12345678(%rip)
        assert_eq!(d(&[0x48, 0x89, 0x05, 0x78, 0x56, 0x34, 0x12]), Some(PteStore { kind: StoreKind::Reg(0), len: 7 }));
        // mov %rdx, 0x100(%rcx)
        assert_eq!(d(&[0x48, 0x89, 0x91, 0, 1, 0, 0]), Some(PteStore { kind: StoreKind::Reg(2), len: 7 }));
    }

    #[test]
    fn immediate_xchg_cmpxchg() {
        // movq $0, (%rdi)
        assert_eq!(d(&[0x48, 0xc7, 0x07, 0, 0, 0, 0]), Some(PteStore { kind: StoreKind::Imm(0), len: 7 }));
        // movq $-1, 8(%rdi): sign-extended
        assert_eq!(d(&[0x48, 0xc7, 0x47, 8, 0xff, 0xff, 0xff, 0xff]), Some(PteStore { kind: StoreKind::Imm(!0), len: 8 }));
        // xchg %rax, (%rdi)
        assert_eq!(d(&[0x48, 0x87, 0x07]), Some(PteStore { kind: StoreKind::Xchg(0), len: 3 }));
        // lock cmpxchg %rcx, (%rdx)
        assert_eq!(d(&[0xf0, 0x48, 0x0f, 0xb1, 0x0a]), Some(PteStore { kind: StoreKind::Cmpxchg(1), len: 5 }));
    }

    #[test]
    fn refused() {
        assert_eq!(d(&[0x89, 0x37]), None, "32-bit store: half an entry");
        assert_eq!(d(&[0x48, 0x89, 0xf7]), None, "register to register");
        assert_eq!(d(&[0x48, 0x01, 0x37]), None, "add to memory");
        assert_eq!(d(&[0x48, 0xc7, 0x47, 8, 0xff]), None, "truncated");
        assert_eq!(d(&[0x48, 0x89]), None, "truncated");
        assert_eq!(d(&[]), None);
    }
}
