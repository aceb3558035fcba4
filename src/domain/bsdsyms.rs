//! The BSD symbol table (`XEN_ELFNOTE_BSD_SYMTAB = "yes"`), as libelf's
//! `elf_parse_bsdsyms` sizes it and `elf_load_bsdsyms` lays it out right
//! after the kernel's end (elf->pend, rounded to 8 bytes for a 64-bit
//! image, 4 for a 32-bit one):
//!
//! ```text
//! +0      u32 size: from the ELF header to the end of the string table
//! +4      the image's ELF header (Elf32/Elf64_Ehdr), e_shoff = 64,
//!         e_shnum = 3, e_ehsize/e_shentsize its own width's, e_version 1,
//!         e_phoff/e_phentsize/e_phnum/e_shstrndx 0
//! +68     3 section headers of the image's width: 0 null, 1 the symbol
//!         table (sh_offset from the ELF header, sh_link 2), 2 its string
//!         table (sh_offset likewise)
//! +260    (rounded) the symbol table, then (rounded) the string table
//! ```
//!
//! The +260 is libelf's packed `struct elf_sym_header`, whose header and
//! section slots are unions of both widths (64 bytes each): a 32-bit image
//! gets 12 bytes after its 52-byte ELF header and 72 after its three
//! 40-byte section headers that no field covers. XSA-194 was libelf
//! leaking its own stack there; here the whole area is built in a zeroed
//! buffer, so every byte not copied from the image is 0. libelf sizes the
//! area (`bsd_symtab_pend`, the new `virt_kend`) with 3 section headers of
//! the image's width but places the symbol table after the 260 bytes: for
//! a 32-bit image it writes 72 bytes past the end it reported. The end
//! here covers what is written (Xen's end for a 64-bit image).

use alloc::vec;
use alloc::vec::Vec;

use super::elf::ElfClass;

const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
/// Sections in the copy: null, symtab, strtab.
const SECTIONS: u64 = 3;
/// `sizeof(union elf_ehdr)` and `sizeof(union elf_shdr)` (the 64-bit ones).
const EHDR_SLOT: u64 = 64;
const SHDR_SLOT: u64 = 64;
/// `offsetof(struct elf_sym_header, elf_header.section)`: the size word
/// and the ELF header slot.
const HEADER_LEN: u64 = 4 + EHDR_SLOT;
/// `sizeof(struct elf_sym_header)`.
const SYM_HEADER_LEN: u64 = HEADER_LEN + SECTIONS * SHDR_SLOT;

/// The area to load at guest physical `paddr` (relative to the image's
/// p_paddr space), `blob.len()` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BsdSymtab {
    pub paddr: u64,
    pub blob: Vec<u8>,
}

impl BsdSymtab {
    /// One past its last byte (what `virt_kend` becomes, less the shift).
    pub fn end(&self) -> u64 {
        self.paddr + self.blob.len() as u64
    }
}

/// The widths of one ELF class: (ehdr, shdr, alignment).
fn widths(class: ElfClass) -> (u64, u64, u64) {
    match class {
        ElfClass::Elf64 => (64, 64, 8),
        ElfClass::Elf32 => (52, 40, 4),
    }
}

fn round(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

fn bytes(data: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

fn rd(data: &[u8], off: u64, len: u64) -> Option<u64> {
    let b = bytes(data, off, len)?;
    Some(b.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64))
}

fn wr(buf: &mut [u8], off: u64, len: u64, v: u64) {
    for i in 0..len {
        buf[(off + i) as usize] = (v >> (8 * i)) as u8;
    }
}

/// Field offsets and widths (offset, len) that differ between the classes.
struct Fields {
    e_phoff: (u64, u64),
    e_shoff: (u64, u64),
    e_shentsize: u64,
    e_shnum: u64,
    sh_offset: (u64, u64),
    sh_size: (u64, u64),
    sh_link: u64,
}

fn fields(class: ElfClass) -> Fields {
    match class {
        ElfClass::Elf64 => Fields {
            e_phoff: (32, 8),
            e_shoff: (40, 8),
            e_shentsize: 58,
            e_shnum: 60,
            sh_offset: (24, 8),
            sh_size: (32, 8),
            sh_link: 40,
        },
        ElfClass::Elf32 => Fields {
            e_phoff: (28, 4),
            e_shoff: (32, 4),
            e_shentsize: 46,
            e_shnum: 48,
            sh_offset: (16, 4),
            sh_size: (20, 4),
            sh_link: 24,
        },
    }
}

/// The area for an image `data` of `class` whose segments end at `pend`
/// (p_paddr space), or None where libelf loads none: no symbol table
/// (libelf's elf_init takes the first SHT_SYMTAB whose sh_link is in
/// bounds), or its link not a string table, or any part outside the file.
pub fn build(data: &[u8], class: ElfClass, pend: u64) -> Option<BsdSymtab> {
    let (ehdr_len, shdr_len, align) = widths(class);
    let f = fields(class);
    let shoff = rd(data, f.e_shoff.0, f.e_shoff.1)?;
    let shentsize = rd(data, f.e_shentsize, 2)?;
    let shnum = rd(data, f.e_shnum, 2)?;
    if shentsize < shdr_len {
        return None;
    }
    let shdr = |i: u64| {
        bytes(
            data,
            shoff.checked_add(i.checked_mul(shentsize)?)?,
            shdr_len,
        )
    };
    let field = |s: &[u8], (off, len): (u64, u64)| rd(s, off, len);
    let mut sym = None;
    for i in 1..shnum {
        let s = shdr(i)?; // libelf stops at a header outside the file
        if rd(s, 4, 4)? != SHT_SYMTAB as u64 {
            continue;
        }
        let link = rd(s, f.sh_link, 4)?;
        if link == 0 || link >= shnum {
            return None;
        }
        sym = Some((s, link));
        break;
    }
    let (sym, link) = sym?;
    let strtab = shdr(link)?;
    if rd(strtab, 4, 4)? != SHT_STRTAB as u64 {
        return None;
    }
    let sym_off = field(sym, f.sh_offset)?;
    let sym_size = field(sym, f.sh_size)?;
    let str_off = field(strtab, f.sh_offset)?;
    let str_size = field(strtab, f.sh_size)?;
    let sym_bytes = bytes(data, sym_off, sym_size)?;
    let str_bytes = bytes(data, str_off, str_size)?;

    // elf_parse_bsdsyms: where it starts and the end libelf reports.
    let paddr = round(pend, align)?;
    let sized = round(
        round(
            round(4 + EHDR_SLOT + SECTIONS * shdr_len, align)? + sym_size,
            align,
        )? + str_size,
        align,
    )?;
    // elf_load_bsdsyms: where the tables go (offsets from `paddr`).
    let symtab_at = round(SYM_HEADER_LEN, align)?;
    let strtab_at = round(symtab_at + sym_size, align)?;
    let written = strtab_at + str_size;
    let len = round(sized.max(written), align)?;
    paddr.checked_add(len)?;

    let mut blob = vec![0u8; usize::try_from(len).ok()?];
    let ehdr_at = 4u64; // elf_header_base, which the offsets are from
                        // The size word: from the ELF header to the end of the string table.
    wr(&mut blob, 0, 4, written - ehdr_at);
    // The ELF header, then the fields libelf rewrites.
    let e = ehdr_at as usize;
    blob[e..e + ehdr_len as usize].copy_from_slice(bytes(data, 0, ehdr_len)?);
    wr(&mut blob, ehdr_at + 20, 4, 1); // e_version = EV_CURRENT
    wr(&mut blob, ehdr_at + f.e_phoff.0, f.e_phoff.1, 0);
    wr(&mut blob, ehdr_at + f.e_shoff.0, f.e_shoff.1, EHDR_SLOT);
    let (e_ehsize, e_phentsize, e_phnum, e_shstrndx) = (
        f.e_shentsize - 6,
        f.e_shentsize - 4,
        f.e_shentsize - 2,
        f.e_shnum + 2,
    );
    wr(&mut blob, ehdr_at + e_ehsize, 2, ehdr_len);
    wr(&mut blob, ehdr_at + e_phentsize, 2, 0);
    wr(&mut blob, ehdr_at + e_phnum, 2, 0);
    wr(&mut blob, ehdr_at + f.e_shentsize, 2, shdr_len);
    wr(&mut blob, ehdr_at + f.e_shnum, 2, SECTIONS);
    wr(&mut blob, ehdr_at + e_shstrndx, 2, 0);
    // Section headers 1 and 2 (0 stays null), one image width apart.
    for (i, (src, at, link)) in [(sym, symtab_at, Some(2u64)), (strtab, strtab_at, None)]
        .into_iter()
        .enumerate()
    {
        let h = HEADER_LEN + (i as u64 + 1) * shdr_len;
        blob[h as usize..(h + shdr_len) as usize].copy_from_slice(&src[..shdr_len as usize]);
        wr(&mut blob, h + f.sh_offset.0, f.sh_offset.1, at - ehdr_at);
        if let Some(l) = link {
            wr(&mut blob, h + f.sh_link, 4, l);
        }
    }
    blob[symtab_at as usize..(symtab_at + sym_size) as usize].copy_from_slice(sym_bytes);
    blob[strtab_at as usize..(strtab_at + str_size) as usize].copy_from_slice(str_bytes);
    Some(BsdSymtab { paddr, blob })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF of `class`: header, section headers (null, .symtab
    /// linked to 2, .strtab), a symbol table of `sym` bytes and a string
    /// table of `strs` bytes; `fill` in every other byte so a copy of the
    /// wrong bytes shows.
    fn image(class: ElfClass, sym: &[u8], strs: &[u8], fill: u8) -> Vec<u8> {
        let (ehdr, shdr, _) = widths(class);
        let f = fields(class);
        let shoff = 0x100u64;
        let sym_off = shoff + 3 * shdr;
        let str_off = sym_off + sym.len() as u64;
        let mut d = vec![fill; (str_off + strs.len() as u64) as usize];
        d[..ehdr as usize].fill(0);
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = if class == ElfClass::Elf64 { 2 } else { 1 };
        wr(&mut d, f.e_shoff.0, f.e_shoff.1, shoff);
        wr(&mut d, f.e_shentsize, 2, shdr);
        wr(&mut d, f.e_shnum, 2, 3);
        wr(&mut d, f.e_phoff.0, f.e_phoff.1, 0x40);
        d[shoff as usize..sym_off as usize].fill(0);
        for (i, ty, off, size, link) in [
            (1, SHT_SYMTAB, sym_off, sym.len(), 2),
            (2, SHT_STRTAB, str_off, strs.len(), 0),
        ] {
            let h = shoff + i * shdr;
            wr(&mut d, h + 4, 4, ty as u64);
            wr(&mut d, h + f.sh_offset.0, f.sh_offset.1, off);
            wr(&mut d, h + f.sh_size.0, f.sh_size.1, size as u64);
            wr(&mut d, h + f.sh_link, 4, link);
        }
        d[sym_off as usize..str_off as usize].copy_from_slice(sym);
        d[str_off as usize..].copy_from_slice(strs);
        d
    }

    #[test]
    fn laid_out_as_libelf_with_zero_padding() {
        for class in [ElfClass::Elf32, ElfClass::Elf64] {
            let (ehdr, shdr, align) = widths(class);
            let f = fields(class);
            let (sym, strs) = ([0x11u8; 18], *b"\0main\0_end\0");
            let d = image(class, &sym, &strs, 0xcc);
            let b = build(&d, class, 0x1003).expect("a symbol table");
            assert_eq!(b.paddr, round(0x1003, align).unwrap());
            let blob = &b.blob;
            assert_eq!(blob.len() as u64 % align, 0);
            // The ELF header: magic, e_shoff 64, 3 sections, our widths.
            assert_eq!(&blob[4..8], b"\x7fELF");
            assert_eq!(rd(blob, 4 + f.e_shoff.0, f.e_shoff.1), Some(64));
            assert_eq!(rd(blob, 4 + f.e_shnum, 2), Some(3));
            assert_eq!(rd(blob, 4 + f.e_shentsize, 2), Some(shdr));
            assert_eq!(rd(blob, 4 + f.e_shentsize - 6, 2), Some(ehdr));
            assert_eq!(rd(blob, 4 + f.e_phoff.0, f.e_phoff.1), Some(0));
            // Nothing between the ELF header and the section headers, and
            // section 0, but zeroes (XSA-194).
            assert!(blob[(4 + ehdr) as usize..(HEADER_LEN + shdr) as usize]
                .iter()
                .all(|&x| x == 0));
            // The tables where their headers say, relative to the ELF header.
            let sh = |i: u64| 4 + 64 + i * shdr;
            let sym_at = 4 + rd(blob, sh(1) + f.sh_offset.0, f.sh_offset.1).unwrap();
            let str_at = 4 + rd(blob, sh(2) + f.sh_offset.0, f.sh_offset.1).unwrap();
            assert_eq!(rd(blob, sh(1) + f.sh_link, 4), Some(2));
            assert_eq!(&blob[sym_at as usize..sym_at as usize + sym.len()], &sym);
            assert_eq!(&blob[str_at as usize..str_at as usize + strs.len()], &strs);
            assert_eq!(sym_at, round(SYM_HEADER_LEN, align).unwrap());
            // The size word: ELF header to the end of the string table.
            assert_eq!(rd(blob, 0, 4), Some(str_at + strs.len() as u64 - 4));
            // No byte of the image's fill anywhere: every gap is zero.
            assert!(!blob.contains(&0xcc));
        }
    }

    #[test]
    fn none_without_a_usable_symbol_table() {
        let d = image(ElfClass::Elf64, &[1; 24], b"\0a\0", 0);
        // The link pointing at a non-string table.
        let mut bad = d.clone();
        wr(&mut bad, 0x100 + 64 + 40, 4, 1);
        assert_eq!(build(&bad, ElfClass::Elf64, 0), None);
        // A table past the end of the file.
        let mut cut = d.clone();
        cut.truncate(cut.len() - 1);
        assert_eq!(build(&cut, ElfClass::Elf64, 0), None);
        // A kernel ending at the top of the address space.
        assert_eq!(build(&d, ElfClass::Elf64, u64::MAX - 8), None);
        assert!(build(&d, ElfClass::Elf64, 0).is_some());
    }
}
