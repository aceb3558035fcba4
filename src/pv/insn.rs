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


#[cfg(test)]
mod tests {
    use super::*;

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
