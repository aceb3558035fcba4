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
    let shdr = |i: u64| bytes(data, shoff.checked_add(i.checked_mul(shentsize)?)?, shdr_len);
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
    let sized = round(round(round(4 + EHDR_SLOT + SECTIONS * shdr_len, align)? + sym_size, align)? + str_size, align)?;
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
    let (e_ehsize, e_phentsize, e_phnum, e_shstrndx) = (f.e_shentsize - 6, f.e_shentsize - 4, f.e_shentsize - 2, f.e_shnum + 2);
    wr(&mut blob, ehdr_at + e_ehsize, 2, ehdr_len);
    wr(&mut blob, ehdr_at + e_phentsize, 2, 0);
    wr(&mut blob, ehdr_at + e_phnum, 2, 0);
    wr(&mut blob, ehdr_at + f.e_shentsize, 2, shdr_len);
    wr(&mut blob, ehdr_at + f.e_shnum, 2, SECTIONS);
    wr(&mut blob, ehdr_at + e_shstrndx, 2, 0);
    // Section headers 1 and 2 (0 stays null), one image width apart.
    for (i, (src, at, link)) in [(sym, symtab_at, Some(2u64)), (strtab, strtab_at, None)].into_iter().enumerate() {
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
