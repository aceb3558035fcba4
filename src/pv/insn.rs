//! Decoding the few instructions the hypervisor emulates on a guest's
//! behalf that need more than an opcode byte (pure: tested on the host).

/// What a store to a page-table entry does to the operand it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// `mov`: the operand becomes the source.
    Mov(Src),
    And(Src),
    Or(Src),
    /// `btr`/`bts`: the bit (within the operand) cleared or set, CF = its
    /// old value.
    Btr(Src),
    Bts(Src),
    /// `xchg`: the register gets the old operand.
    Xchg(u8),
    /// `cmpxchg`: stored if the operand equals rax (of its size), ZF says.
    Cmpxchg(u8),
}

/// Where a value comes from: a general register (with `high8`: AH, CH,
/// DH or BH, the byte registers 4-7 without a REX prefix) or an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    Reg { n: u8, high8: bool },
    Imm(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PteStore {
    pub kind: StoreKind,
    /// Operand size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub len: usize,
}

/// Decode the instructions a PV kernel uses to write a page-table entry
/// directly (with writable page tables, Xen's ptwr emulates them): `mov`,
/// `and`, `or`, `btr`, `bts`, `xchg`, `cmpxchg` on a memory operand, of
/// any size, with `lock`, segment (`ds` and friends) and operand-size
/// prefixes (UP Linux's ptep_set_wrprotect is `ds andb $0xfd,(%r12)`).
pub fn decode_pte_store(b: &[u8]) -> Option<PteStore> {
    let mut i = 0;
    let mut rex = 0u8;
    let mut opsize16 = false;
    while let Some(&p) = b.get(i) {
        match p {
            0xf0 | 0x26 | 0x2e | 0x36 | 0x3e => {} // lock; es/cs/ss/ds (no effect in 64-bit code)
            0x66 => opsize16 = true,
            0x40..=0x4f => {
                rex = p;
                i += 1;
                break; // REX comes last
            }
            _ => break,
        }
        i += 1;
    }
    let wide = rex & 8 != 0;
    let size_of = |byte_op: bool| -> u8 {
        if byte_op {
            1
        } else if wide {
            8
        } else if opsize16 {
            2
        } else {
            4
        }
    };
    let (op, two) = match *b.get(i)? {
        0x0f => (*b.get(i + 1)?, true),
        o => (o, false),
    };
    i += if two { 2 } else { 1 };
    let (reg, operand, end) = decode_modrm(b, i, rex, false)?;
    operand.ok()?; // a register operand writes no memory
    let reg_src = |byte: bool| Src::Reg {
        n: reg,
        high8: byte && rex == 0 && (4..8).contains(&reg),
    };
    let imm = |n: usize, sign_to: u8| -> Option<u64> {
        let v = match n {
            1 => *b.get(end)? as i8 as i64,
            2 => i16::from_le_bytes(b.get(end..end + 2)?.try_into().ok()?) as i64,
            _ => i32::from_le_bytes(b.get(end..end + 4)?.try_into().ok()?) as i64,
        };
        Some(if sign_to == 8 {
            v as u64
        } else {
            (v as u64) & ((1u64 << (sign_to as u32 * 8)) - 1)
        })
    };
    let group = (reg & 7, reg);
    let (kind, size, len) = match (two, op) {
        (false, 0x88 | 0x89) => (
            StoreKind::Mov(reg_src(op == 0x88)),
            size_of(op == 0x88),
            end,
        ),
        (false, 0x20 | 0x21) => (
            StoreKind::And(reg_src(op == 0x20)),
            size_of(op == 0x20),
            end,
        ),
        (false, 0x08 | 0x09) => (StoreKind::Or(reg_src(op == 0x08)), size_of(op == 0x08), end),
        (false, 0x86 | 0x87) if !(op == 0x86 && rex == 0 && (4..8).contains(&reg)) => {
            (StoreKind::Xchg(reg), size_of(op == 0x86), end)
        }
        (false, 0xc6) if group.0 == 0 => (StoreKind::Mov(Src::Imm(imm(1, 1)?)), 1, end + 1),
        (false, 0xc7) if group.0 == 0 => {
            let s = size_of(false);
            let n = if s == 2 { 2 } else { 4 };
            (StoreKind::Mov(Src::Imm(imm(n, s)?)), s, end + n)
        }
        (false, 0x80 | 0x81 | 0x83) if matches!(group.0, 1 | 4) => {
            let s = size_of(op == 0x80);
            let n = if op == 0x81 {
                if s == 2 {
                    2
                } else {
                    4
                }
            } else {
                1
            };
            let v = Src::Imm(imm(n, s)?);
            (
                if group.0 == 4 {
                    StoreKind::And(v)
                } else {
                    StoreKind::Or(v)
                },
                s,
                end + n,
            )
        }
        (true, 0xb0 | 0xb1) => (StoreKind::Cmpxchg(reg), size_of(op == 0xb0), end),
        (true, 0xb3) => (StoreKind::Btr(reg_src(false)), size_of(false), end),
        (true, 0xab) => (StoreKind::Bts(reg_src(false)), size_of(false), end),
        (true, 0xba) if matches!(group.0, 5 | 6) => {
            let bit = Src::Imm(*b.get(end)? as u64);
            (
                if group.0 == 6 {
                    StoreKind::Btr(bit)
                } else {
                    StoreKind::Bts(bit)
                },
                size_of(false),
                end + 1,
            )
        }
        _ => return None,
    };
    (len <= b.len()).then_some(PteStore { kind, size, len })
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
pub fn decode_modrm(
    b: &[u8],
    mut i: usize,
    rex: u8,
    addr32: bool,
) -> Option<(u8, Result<MemOperand, u8>, usize)> {
    let modrm = *b.get(i)?;
    i += 1;
    let (md, reg, rm) = (modrm >> 6, ((modrm >> 3) & 7) | (rex & 4) << 1, modrm & 7);
    if md == 3 {
        return Some((reg, Err(rm | (rex & 1) << 3), i));
    }
    let mut op = MemOperand {
        base: Some(rm | (rex & 1) << 3),
        index: None,
        disp: 0,
        rip_relative: false,
    };
    let mut disp32_only = md == 0 && rm == 5;
    if rm == 4 {
        let sib = *b.get(i)?;
        i += 1;
        let (scale, index, base) = (
            1u8 << (sib >> 6),
            ((sib >> 3) & 7) | (rex & 2) << 2,
            sib & 7,
        );
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
        assert_eq!(
            decode_modrm(&[0x08], 0, 0, false),
            Some((
                1,
                Ok(MemOperand {
                    base: Some(0),
                    index: None,
                    disp: 0,
                    rip_relative: false
                }),
                1
            ))
        );
        // 0x10(%rbp,%r9,4) with REX.X: modrm 0x44 (mod 1, rm 4), sib 0x8d, disp8 0x10
        assert_eq!(
            decode_modrm(&[0x44, 0x8d, 0x10], 0, 0x42, false),
            Some((
                0,
                Ok(MemOperand {
                    base: Some(5),
                    index: Some((9, 4)),
                    disp: 0x10,
                    rip_relative: false
                }),
                3
            ))
        );
        // rip-relative in 64-bit code, absolute in 32-bit code
        let rel = decode_modrm(&[0x0d, 0x78, 0x56, 0x34, 0x12], 0, 0, false).unwrap();
        assert_eq!(
            rel.1,
            Ok(MemOperand {
                base: None,
                index: None,
                disp: 0x12345678,
                rip_relative: true
            })
        );
        let abs = decode_modrm(&[0x0d, 0x78, 0x56, 0x34, 0x12], 0, 0, true).unwrap();
        assert_eq!(
            (abs.0, abs.1, abs.2),
            (
                1,
                Ok(MemOperand {
                    base: None,
                    index: None,
                    disp: 0x12345678,
                    rip_relative: false
                }),
                5
            )
        );
        // a register operand, REX.B
        assert_eq!(decode_modrm(&[0xe1], 0, 0x41, false), Some((4, Err(9), 1)));
        // truncated
        assert_eq!(decode_modrm(&[0x80, 0x00], 0, 0, false), None);
    }

    fn d(b: &[u8]) -> Option<PteStore> {
        decode_pte_store(b)
    }

    fn reg(n: u8) -> Src {
        Src::Reg { n, high8: false }
    }

    #[test]
    fn mov_reg_to_memory() {
        // mov %rsi, (%rdi)
        assert_eq!(
            d(&[0x48, 0x89, 0x37]),
            Some(PteStore {
                kind: StoreKind::Mov(reg(6)),
                size: 8,
                len: 3
            })
        );
        // mov %r9, 0x10(%rax,%rbx,8)
        assert_eq!(
            d(&[0x4c, 0x89, 0x4c, 0xd8, 0x10]),
            Some(PteStore {
                kind: StoreKind::Mov(reg(9)),
                size: 8,
                len: 5
            })
        );
        // mov %rax, 0x12345678(%rip)
        assert_eq!(
            d(&[0x48, 0x89, 0x05, 0x78, 0x56, 0x34, 0x12]),
            Some(PteStore {
                kind: StoreKind::Mov(reg(0)),
                size: 8,
                len: 7
            })
        );
        // mov %edx, 0x100(%rcx): half an entry
        assert_eq!(
            d(&[0x89, 0x91, 0, 1, 0, 0]),
            Some(PteStore {
                kind: StoreKind::Mov(reg(2)),
                size: 4,
                len: 6
            })
        );
    }

    #[test]
    fn immediate_xchg_cmpxchg() {
        // movq $0, (%rdi)
        assert_eq!(
            d(&[0x48, 0xc7, 0x07, 0, 0, 0, 0]),
            Some(PteStore {
                kind: StoreKind::Mov(Src::Imm(0)),
                size: 8,
                len: 7
            })
        );
        // movq $-1, 8(%rdi): sign-extended
        assert_eq!(
            d(&[0x48, 0xc7, 0x47, 8, 0xff, 0xff, 0xff, 0xff]),
            Some(PteStore {
                kind: StoreKind::Mov(Src::Imm(!0)),
                size: 8,
                len: 8
            })
        );
        // xchg %rax, (%rdi)
        assert_eq!(
            d(&[0x48, 0x87, 0x07]),
            Some(PteStore {
                kind: StoreKind::Xchg(0),
                size: 8,
                len: 3
            })
        );
        // lock cmpxchg %rcx, (%rdx)
        assert_eq!(
            d(&[0xf0, 0x48, 0x0f, 0xb1, 0x0a]),
            Some(PteStore {
                kind: StoreKind::Cmpxchg(1),
                size: 8,
                len: 5
            })
        );
    }

    #[test]
    fn read_modify_write_forms() {
        // ds andb $0xfd,(%r12) (UP Linux's ptep_set_wrprotect): 3e 41 80 24 24 fd
        assert_eq!(
            d(&[0x3e, 0x41, 0x80, 0x24, 0x24, 0xfd]),
            Some(PteStore {
                kind: StoreKind::And(Src::Imm(0xfd)),
                size: 1,
                len: 6
            })
        );
        // lock andq $-3,(%rdi): f0 48 83 27 fd
        assert_eq!(
            d(&[0xf0, 0x48, 0x83, 0x27, 0xfd]),
            Some(PteStore {
                kind: StoreKind::And(Src::Imm(!2)),
                size: 8,
                len: 5
            })
        );
        // lock orq %rax,(%rdi): f0 48 09 07
        assert_eq!(
            d(&[0xf0, 0x48, 0x09, 0x07]),
            Some(PteStore {
                kind: StoreKind::Or(reg(0)),
                size: 8,
                len: 4
            })
        );
        // lock btrq $1,(%rdi): f0 48 0f ba 37 01
        assert_eq!(
            d(&[0xf0, 0x48, 0x0f, 0xba, 0x37, 0x01]),
            Some(PteStore {
                kind: StoreKind::Btr(Src::Imm(1)),
                size: 8,
                len: 6
            })
        );
        // lock btsq %rax,(%rdi): f0 48 0f ab 07
        assert_eq!(
            d(&[0xf0, 0x48, 0x0f, 0xab, 0x07]),
            Some(PteStore {
                kind: StoreKind::Bts(reg(0)),
                size: 8,
                len: 5
            })
        );
        // orw $0x20,(%rdi): 66 83 0f 20
        assert_eq!(
            d(&[0x66, 0x83, 0x0f, 0x20]),
            Some(PteStore {
                kind: StoreKind::Or(Src::Imm(0x20)),
                size: 2,
                len: 4
            })
        );
        // andb %ah,(%rdi): 20 27 (AH: a high byte register)
        assert_eq!(
            d(&[0x20, 0x27]),
            Some(PteStore {
                kind: StoreKind::And(Src::Reg { n: 4, high8: true }),
                size: 1,
                len: 2
            })
        );
    }

    #[test]
    fn refused() {
        assert_eq!(d(&[0x48, 0x89, 0xf7]), None, "register to register");
        assert_eq!(d(&[0x48, 0x01, 0x37]), None, "add to memory");
        assert_eq!(d(&[0x48, 0xc7, 0x47, 8, 0xff]), None, "truncated");
        assert_eq!(d(&[0x48, 0x89]), None, "truncated");
        assert_eq!(d(&[]), None);
    }
}
