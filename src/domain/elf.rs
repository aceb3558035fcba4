//! Guest kernel images: an ELF file plus Xen's ELF notes, checked the way
//! Xen's libelf checks them (`xen/common/libelf/libelf-dominfo.c`), and
//! turned into a [`GuestImage`] the domain builder can lay out.
//!
//! Pure logic: it reads the image bytes and never touches guest memory. The
//! builder copies the segments itself from [`GuestImage::load_chunks`].
//! The ELF structures (file header, program headers, section headers) are
//! read with `xmas-elf`; the Xen parts (the note walk, the notes, the legacy
//! `__xen_guest` string, the address rules) are written here.
//!
//! # The rules, and where they come from
//!
//! * **Class and machine** (`dom0_construct_pv` in
//!   `xen/arch/x86/pv/dom0_build.c`): `EM_X86_64` in an `ELFCLASS64` file,
//!   or `EM_386` in an `ELFCLASS32` file, little-endian. A 32-bit image must
//!   say `PAE_MODE` `yes`, `bimodal` (or legacy `PAE=yes...`): only PAE
//!   32-bit guests run here. A 64-bit image's `PAE_MODE` is ignored.
//! * **Loadable segments** (`elf_phdr_is_loadable`, `elf_parse_binary`,
//!   `elf_load_binary` in `libelf-loader.c`/`libelf-tools.c`): `PT_LOAD`
//!   with at least one of R/W/X set. They are placed by **`p_paddr`**, not
//!   `p_vaddr`: the image extent is `[min p_paddr, max p_paddr + p_memsz)`,
//!   moved into guest-virtual space by `virt_offset = VIRT_BASE -
//!   PADDR_OFFSET` (`elf_xen_addr_calc_check`). `p_vaddr` is reported but
//!   not used (Linux's x86-64 per-CPU segment has `p_vaddr` 0).
//! * **Where the notes come from** (`elf_xen_parse`): `PT_NOTE` segments
//!   (skipping ones with `p_offset == 0`, a binutils bug libelf works around);
//!   if they hold no note owned by `"Xen"`, `SHT_NOTE` sections; if those
//!   hold none either, the legacy `__xen_guest` section. Notes of other
//!   owners are skipped. An image with none of the three is not a Xen
//!   image and is refused (`elf_xen_note_check`).
//! * **Each note** (`elf_xen_parse_note`): numeric notes are 1, 2, 4 or 8
//!   bytes (libelf's `elf_note_numeric`; any other size is refused here,
//!   where libelf would silently read 0); a string note is read from its
//!   descriptor up to the first NUL, even past the note's declared size
//!   (into its padding, or further: libelf's `elf_strval` stops only at a
//!   NUL, the end of the file or 4096 bytes). Linux's `FEATURES` note is an
//!   `.ascii` string of 41 bytes with no NUL inside it.
//!   A repeated note overrides the earlier one, except `FEATURES` and
//!   `SUPPORTED_FEATURES`, which accumulate. Unknown note types are skipped.
//!   `PAE_MODE`: `"yes"` means extended-cr3, anything containing
//!   `"bimodal"` means bimodal, anything else leaves the mode unchanged.
//! * **Features** (`elf_xen_parse_features`): `|`-separated names without
//!   the `XENFEAT_` prefix, `!` marks a required one. Only the names libelf
//!   knows are recognised; an unknown *required* feature refuses the image,
//!   an unknown supported one is ignored.
//! * **Legacy `__xen_guest`** (`elf_xen_parse_guest_info`):
//!   `KEY=VALUE,KEY=VALUE`, numbers as C `strtoull(.., 0)` (hex `0x`, octal
//!   `0`, decimal). `HYPERCALL_PAGE` is a page number relative to
//!   `VIRT_BASE`; `PAE=yes[extended-cr3]` is extended-cr3, other `yes...` is
//!   plain PAE; `BSD_SYMTAB` counts by its presence. Here a number must be
//!   entirely valid (libelf stops at the first bad character).
//! * **Which loaders** (`elf_xen_note_check`): `LOADER` must start with
//!   `generic` or `GUEST_OS` with `linux`, and `XEN_VERSION` must start with
//!   `xen-3.0`.
//! * **Addresses** (`elf_xen_addr_calc_check`): `VIRT_BASE` defaults to 0;
//!   `PADDR_OFFSET` defaults to 0 for notes but to `VIRT_BASE` for the
//!   legacy section, and setting it without `VIRT_BASE` is an error;
//!   `ENTRY` defaults to `e_entry`. `VIRT_BASE` must not lie above the image
//!   start, the entry must lie inside the image, and a 64-bit `INIT_P2M`
//!   must not lie inside it (32-bit images ignore it, as `dom0_build.c`
//!   does). `HYPERCALL_PAGE` (`dom0_build.c` checks it against the whole
//!   bootstrap region) must here be a page-aligned page inside the image.
//!
//! Added here, beyond libelf: segments must lie inside the file, have
//! `p_filesz <= p_memsz`, not overlap, number at most [`MAX_LOAD_SEGMENTS`]
//! and span at most [`MAX_IMAGE_SPAN`]; addresses must not overflow; a
//! 64-bit image must lie in one canonical half and outside the hypervisor's
//! reserved range; a 32-bit image below 4 GiB. No input makes this module
//! panic: everything `xmas-elf` would assert on is checked first.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use xmas_elf::header::{Class, Data, Machine};
use xmas_elf::program::{ProgramHeader, Type as PhType};
use xmas_elf::sections::{SectionHeader, ShType};
use xmas_elf::ElfFile;

/// `e_machine` of a 32-bit x86 image (the parser matches xmas-elf's
/// `Machine::X86`; the tests build headers with these numbers).
#[cfg(test)]
pub const EM_386: u16 = 3;
/// `e_machine` of a 64-bit x86 image.
#[cfg(test)]
pub const EM_X86_64: u16 = 62;

/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;
/// At most this many loadable segments (a kernel has a handful).
pub const MAX_LOAD_SEGMENTS: usize = 64;
/// At most this much guest-virtual space from the image's first byte to its
/// last (`virt_kend - virt_kstart`), and at most this much per segment.
pub const MAX_IMAGE_SPAN: u64 = 1 << 30;
/// At most this many notes in all (libelf's `ELF_MAX_TOTAL_NOTE_COUNT`).
pub const MAX_NOTES: usize = 65536;

/// The hypervisor's own range in every 64-bit guest address space
/// (docs/design.md, as in Xen x86-64): no guest image may lie in it.
pub const HYPERVISOR_RESERVED: core::ops::Range<u64> = 0xffff_8000_0000_0000..0xffff_8800_0000_0000;

/// The image must start at an address aligned to this many bytes in memory
/// (`xmas-elf` reads its headers in place). Multiboot modules are page
/// aligned, so this always holds for a module.
pub const IMAGE_ALIGN: usize = 8;

/// Note type numbers, `XEN_ELFNOTE_*` in `xen/include/public/elfnote.h`.
pub mod note {
    /// Skipped, as libelf does (the tests write one).
    #[cfg(test)]
    pub const INFO: u32 = 0;
    pub const ENTRY: u32 = 1;
    pub const HYPERCALL_PAGE: u32 = 2;
    pub const VIRT_BASE: u32 = 3;
    pub const PADDR_OFFSET: u32 = 4;
    pub const XEN_VERSION: u32 = 5;
    pub const GUEST_OS: u32 = 6;
    pub const GUEST_VERSION: u32 = 7;
    pub const LOADER: u32 = 8;
    pub const PAE_MODE: u32 = 9;
    pub const FEATURES: u32 = 10;
    pub const BSD_SYMTAB: u32 = 11;
    pub const HV_START_LOW: u32 = 12;
    pub const L1_MFN_VALID: u32 = 13;
    pub const SUSPEND_CANCEL: u32 = 14;
    pub const INIT_P2M: u32 = 15;
    pub const MOD_START_PFN: u32 = 16;
    pub const SUPPORTED_FEATURES: u32 = 17;
    pub const PHYS32_ENTRY: u32 = 18;
    pub const PHYS32_RELOC: u32 = 19;
}

/// Feature bits, `XENFEAT_*` in `xen/include/public/features.h`: the ones
/// libelf recognises by name in a `FEATURES` string.
pub mod feat {
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    pub const WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    pub const SUPERVISOR_MODE_KERNEL: u32 = 3;
    pub const PAE_PGDIR_ABOVE_4GB: u32 = 4;
    pub const HVM_CALLBACK_VECTOR: u32 = 8;
    pub const DOM0: u32 = 11;
}

/// The names libelf's `elf_xen_feature_names` knows, with their bits.
const FEATURE_NAMES: [(&str, u32); 7] = [
    ("writable_page_tables", feat::WRITABLE_PAGE_TABLES),
    (
        "writable_descriptor_tables",
        feat::WRITABLE_DESCRIPTOR_TABLES,
    ),
    ("auto_translated_physmap", feat::AUTO_TRANSLATED_PHYSMAP),
    ("supervisor_mode_kernel", feat::SUPERVISOR_MODE_KERNEL),
    ("pae_pgdir_above_4gb", feat::PAE_PGDIR_ABOVE_4GB),
    ("hvm_callback_vector", feat::HVM_CALLBACK_VECTOR),
    ("dom0", feat::DOM0),
];

/// The name of a feature bit, for messages (`None` for bits libelf does
/// not name). Only the tests use it today.
#[cfg(test)]
pub fn feature_name(bit: u32) -> Option<&'static str> {
    FEATURE_NAMES
        .iter()
        .find(|&&(_, b)| b == bit)
        .map(|&(n, _)| n)
}

/// ELF class of the image: which guest width it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfClass {
    /// `ELFCLASS64`, `EM_X86_64`: a 64-bit PV guest (kernel in ring 3).
    Elf64,
    /// `ELFCLASS32`, `EM_386`: a 32-bit PAE PV guest (kernel in ring 1).
    Elf32,
}

/// The guest's PAE support (`XEN_PAE_*` in libelf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaeMode {
    /// No PAE: `PAE_MODE` absent or not understood. Refused for 32-bit.
    No,
    /// Legacy `PAE=yes`: PAE, L3 table below 4 GiB.
    Yes,
    /// `PAE_MODE` `"yes"` or legacy `PAE=yes[extended-cr3]`: PAE, L3 table
    /// may lie above 4 GiB.
    ExtendedCr3,
    /// `PAE_MODE` containing `"bimodal"`: runs PAE or not. Treated as
    /// extended-cr3 for a 32-bit guest, as `dom0_build.c` does.
    Bimodal,
}

/// Where the Xen notes were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotesSource {
    /// `PT_NOTE` program headers.
    NoteSegments,
    /// `SHT_NOTE` sections (no Xen note in any `PT_NOTE`).
    NoteSections,
    /// The legacy `__xen_guest` section string.
    LegacyXenGuestSection,
}

/// Feature bits from `FEATURES` strings and `SUPPORTED_FEATURES` (first
/// 32-bit word: `XENFEAT_NR_SUBMAPS` is 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Features the kernel can use (required ones included).
    pub supported: u32,
    /// Features the kernel cannot run without (`!name`).
    pub required: u32,
}

#[cfg(test)]
impl Features {
    pub fn supports(&self, bit: u32) -> bool {
        bit < 32 && self.supported & (1 << bit) != 0
    }
    pub fn requires(&self, bit: u32) -> bool {
        bit < 32 && self.required & (1 << bit) != 0
    }
}

/// The Xen notes of an image, as written (after the last-one-wins rule);
/// defaults are *not* applied here: see [`GuestImage`] for resolved values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenNotes<'a> {
    pub source: NotesSource,
    pub entry: Option<u64>,
    /// Guest-virtual address (a legacy page number is already converted).
    pub hypercall_page: Option<u64>,
    pub virt_base: Option<u64>,
    pub paddr_offset: Option<u64>,
    pub hv_start_low: Option<u64>,
    pub init_p2m: Option<u64>,
    pub suspend_cancel: Option<u64>,
    pub mod_start_pfn: Option<u64>,
    pub phys32_entry: Option<u64>,
    pub xen_version: Option<&'a str>,
    pub guest_os: Option<&'a str>,
    pub guest_version: Option<&'a str>,
    pub loader: Option<&'a str>,
    /// The `PAE_MODE` string (or legacy `PAE` value) as written.
    pub pae_mode_str: Option<&'a str>,
    /// `PAE_MODE` as libelf reads it.
    pub pae_mode: PaeMode,
    /// The last `FEATURES` string as written (all are merged in `features`).
    pub features_str: Option<&'a str>,
    /// The `SUPPORTED_FEATURES` note(s), OR-ed, if present (Xen's dom0
    /// builder refuses a kernel that has this note without `dom0`).
    pub supported_features: Option<u32>,
    pub features: Features,
    pub bsd_symtab: bool,
    /// Descriptor of `L1_MFN_VALID`, if present.
    pub l1_mfn_valid: Option<&'a [u8]>,
    /// `PHYS32_RELOC` present (PVH only).
    pub phys32_reloc: bool,
}

impl<'a> XenNotes<'a> {
    fn empty(source: NotesSource) -> Self {
        XenNotes {
            source,
            entry: None,
            hypercall_page: None,
            virt_base: None,
            paddr_offset: None,
            hv_start_low: None,
            init_p2m: None,
            suspend_cancel: None,
            mod_start_pfn: None,
            phys32_entry: None,
            xen_version: None,
            guest_os: None,
            guest_version: None,
            loader: None,
            pae_mode_str: None,
            pae_mode: PaeMode::No,
            features_str: None,
            supported_features: None,
            features: Features::default(),
            bsd_symtab: false,
            l1_mfn_valid: None,
            phys32_reloc: false,
        }
    }
}

/// One loadable (`PT_LOAD`, R/W/X) segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of its program header.
    pub index: u16,
    /// `p_vaddr`, as written (not used for placement).
    pub vaddr: u64,
    /// `p_paddr`, which places the segment.
    pub paddr: u64,
    /// Where the segment goes in the guest: `paddr + VIRT_BASE - PADDR_OFFSET`.
    pub guest_va: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub mem_size: u64,
    /// `p_flags` (`PF_X` 1, `PF_W` 2, `PF_R` 4).
    pub flags: u32,
}

/// One piece of work for the builder: copy `bytes` to `guest_va`, then
/// zero `zero_len` bytes right after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadChunk<'a> {
    pub guest_va: u64,
    pub bytes: &'a [u8],
    pub zero_len: u64,
}

/// The BSD symbol table area: `blob` (every byte of it, zeroes included)
/// goes to `guest_va`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BsdArea {
    pub guest_va: u64,
    pub blob: Vec<u8>,
}

/// A parsed, checked guest kernel image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestImage<'a> {
    pub class: ElfClass,
    /// `e_machine` ([`EM_X86_64`] or [`EM_386`]).
    pub machine: u16,
    /// First guest instruction: `ENTRY`, else `e_entry`.
    pub entry: u64,
    /// `VIRT_BASE`, else 0: where the bootstrap region starts.
    pub virt_base: u64,
    /// `PADDR_OFFSET`, else 0 (notes) or `virt_base` (legacy).
    pub paddr_offset: u64,
    /// Image extent in guest-virtual space, half-open.
    pub virt_kstart: u64,
    pub virt_kend: u64,
    /// Guest-virtual address of the hypercall page, page aligned, inside
    /// the image.
    pub hypercall_page: Option<u64>,
    /// Where to put the initial P2M list (`INIT_P2M`, 64-bit only).
    pub p2m_base: Option<u64>,
    /// PAE mode as the builder should use it: `No` for 64-bit;
    /// `ExtendedCr3` or `Yes` for 32-bit (bimodal becomes extended-cr3).
    pub pae: PaeMode,
    pub features: Features,
    /// The loadable segments, in program-header order.
    pub segments: Vec<Segment>,
    /// `BSD_SYMTAB`: the symbol table area after the segments (bsdsyms.rs),
    /// inside `[virt_kstart, virt_kend)`.
    pub bsd_symtab: Option<BsdArea>,
    pub notes: XenNotes<'a>,
    pub data: &'a [u8],
}

impl<'a> GuestImage<'a> {
    /// What to copy where: one chunk per segment. Segments do not overlap,
    /// so the order does not matter. Bytes of `[virt_kstart, virt_kend)`
    /// that no segment covers are left to the builder (fresh pages are
    /// zero).
    pub fn load_chunks(&self) -> impl Iterator<Item = LoadChunk<'a>> + '_ {
        let data = self.data;
        self.segments.iter().map(move |s| {
            // In range: checked by `parse`.
            let start = s.file_offset as usize;
            let bytes = &data[start..start + s.file_size as usize];
            LoadChunk {
                guest_va: s.guest_va,
                bytes,
                zero_len: s.mem_size - s.file_size,
            }
        })
    }
}

/// Why an image was refused. Each message is one line naming the field or
/// note at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    NotElf,
    /// The image does not start at an [`IMAGE_ALIGN`]-aligned address.
    Misaligned {
        addr: usize,
    },
    /// Header cut short or inconsistent (`what` says which part).
    BadHeader {
        what: &'static str,
    },
    /// `EI_CLASS` is neither 32 nor 64 bit, or does not fit `e_machine`.
    WrongClass {
        class: u8,
        machine: u16,
    },
    WrongMachine {
        machine: u16,
    },
    BigEndian,
    NoLoadSegments,
    TooManyLoadSegments {
        count: usize,
    },
    /// A `PT_LOAD`/`PT_NOTE` program header points outside the file.
    SegmentOutsideFile {
        index: u16,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    /// A section header points outside the file.
    SectionOutsideFile {
        index: u16,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    SegmentFileSizeExceedsMemSize {
        index: u16,
        file_size: u64,
        mem_size: u64,
    },
    /// `p_paddr + p_memsz` overflows.
    SegmentAddressOverflow {
        index: u16,
        paddr: u64,
        mem_size: u64,
    },
    OverlappingSegments {
        first: u16,
        second: u16,
    },
    /// A segment, or the whole image extent, is larger than [`MAX_IMAGE_SPAN`].
    ImageTooLarge {
        size: u64,
    },
    /// A note runs past the end of its segment or section.
    MalformedNotes {
        offset: u64,
    },
    TooManyNotes,
    /// A Xen note (or `__xen_guest` key, `legacy`) has a bad value.
    BadNote {
        note: &'static str,
        legacy: bool,
        why: String,
    },
    /// No Xen notes and no `__xen_guest` section.
    NotXenImage,
    /// Neither `LOADER` = generic nor `GUEST_OS` = linux.
    UnsupportedLoader {
        loader: String,
        guest_os: String,
    },
    /// `XEN_VERSION` missing or not `xen-3.0`.
    UnsupportedXenVersion {
        xen_version: String,
    },
    PaddrOffsetWithoutVirtBase,
    /// `p_paddr + VIRT_BASE - PADDR_OFFSET` falls outside the address space
    /// of the guest's width.
    ImageOutsideAddressSpace {
        pstart: u64,
        pend: u64,
        virt_base: u64,
        paddr_offset: u64,
    },
    VirtBaseAboveImage {
        virt_base: u64,
        kstart: u64,
    },
    /// 64-bit image not in one canonical half, or in the hypervisor's range.
    ImageInReservedRange {
        kstart: u64,
        kend: u64,
    },
    EntryOutsideImage {
        entry: u64,
        kstart: u64,
        kend: u64,
    },
    HypercallPageMisaligned {
        va: u64,
    },
    HypercallPageOutsideImage {
        va: u64,
        kstart: u64,
        kend: u64,
    },
    P2mInsideImage {
        p2m_base: u64,
        kstart: u64,
        kend: u64,
    },
    /// 32-bit image without PAE support (only PAE 32-bit guests run).
    NonPaeImage {
        pae_mode: Option<String>,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ImageError::*;
        match self {
            NotElf => write!(f, "not an ELF image (no \\x7fELF magic)"),
            Misaligned { addr } => {
                write!(
                    f,
                    "ELF image at {addr:#x} is not {IMAGE_ALIGN}-byte aligned in memory"
                )
            }
            BadHeader { what } => write!(f, "bad ELF header: {what}"),
            WrongClass { class, machine } => write!(
                f,
                "ELF class {class} does not fit e_machine {machine}: need ELFCLASS64 with \
                 EM_X86_64 (62) or ELFCLASS32 with EM_386 (3)"
            ),
            WrongMachine { machine } => {
                write!(
                    f,
                    "e_machine {machine} is not x86: need EM_X86_64 (62) or EM_386 (3)"
                )
            }
            BigEndian => write!(f, "big-endian ELF image: x86 guests are little-endian"),
            NoLoadSegments => write!(f, "ELF image has no loadable (PT_LOAD) segment"),
            TooManyLoadSegments { count } => {
                write!(
                    f,
                    "ELF image has {count} PT_LOAD segments (at most {MAX_LOAD_SEGMENTS})"
                )
            }
            SegmentOutsideFile {
                index,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "program header {index}: file bytes {offset:#x}+{size:#x} lie outside the \
                 {file_len:#x}-byte image"
            ),
            SectionOutsideFile {
                index,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "section header {index}: file bytes {offset:#x}+{size:#x} lie outside the \
                 {file_len:#x}-byte image"
            ),
            SegmentFileSizeExceedsMemSize {
                index,
                file_size,
                mem_size,
            } => write!(
                f,
                "program header {index}: p_filesz {file_size:#x} exceeds p_memsz {mem_size:#x}"
            ),
            SegmentAddressOverflow {
                index,
                paddr,
                mem_size,
            } => write!(
                f,
                "program header {index}: p_paddr {paddr:#x} + p_memsz {mem_size:#x} overflows"
            ),
            OverlappingSegments { first, second } => write!(
                f,
                "PT_LOAD program headers {first} and {second} overlap (by p_paddr/p_memsz)"
            ),
            ImageTooLarge { size } => {
                write!(
                    f,
                    "image spans {size:#x} bytes (at most {MAX_IMAGE_SPAN:#x})"
                )
            }
            MalformedNotes { offset } => {
                write!(
                    f,
                    "ELF note at file offset {offset:#x} runs past the end of its note area"
                )
            }
            TooManyNotes => write!(f, "more than {MAX_NOTES} ELF notes"),
            BadNote {
                note,
                legacy: false,
                why,
            } => write!(f, "Xen ELF note {note}: {why}"),
            BadNote {
                note,
                legacy: true,
                why,
            } => write!(f, "__xen_guest {note}: {why}"),
            NotXenImage => write!(
                f,
                "not a Xen guest image: no Xen ELF notes and no __xen_guest section"
            ),
            UnsupportedLoader { loader, guest_os } => write!(
                f,
                "only images for the generic loader or Linux load: LOADER is \"{loader}\", \
                 GUEST_OS is \"{guest_os}\""
            ),
            UnsupportedXenVersion { xen_version } => write!(
                f,
                "XEN_VERSION is \"{xen_version}\": only images built for xen-3.0 load"
            ),
            PaddrOffsetWithoutVirtBase => write!(f, "PADDR_OFFSET is set but VIRT_BASE is not"),
            ImageOutsideAddressSpace {
                pstart,
                pend,
                virt_base,
                paddr_offset,
            } => write!(
                f,
                "segments at p_paddr {pstart:#x}..{pend:#x} moved by VIRT_BASE {virt_base:#x} - \
                 PADDR_OFFSET {paddr_offset:#x} fall outside the guest address space"
            ),
            VirtBaseAboveImage { virt_base, kstart } => write!(
                f,
                "VIRT_BASE {virt_base:#x} lies above the image start {kstart:#x}"
            ),
            ImageInReservedRange { kstart, kend } => write!(
                f,
                "image {kstart:#x}..{kend:#x} is not canonical or overlaps the hypervisor range \
                 {:#x}..{:#x}",
                HYPERVISOR_RESERVED.start, HYPERVISOR_RESERVED.end
            ),
            EntryOutsideImage {
                entry,
                kstart,
                kend,
            } => write!(
                f,
                "entry point (ENTRY or e_entry) {entry:#x} lies outside the image \
                 {kstart:#x}..{kend:#x}"
            ),
            HypercallPageMisaligned { va } => {
                write!(f, "HYPERCALL_PAGE {va:#x} is not page aligned")
            }
            HypercallPageOutsideImage { va, kstart, kend } => write!(
                f,
                "HYPERCALL_PAGE {va:#x} is not a page inside the image {kstart:#x}..{kend:#x}"
            ),
            P2mInsideImage {
                p2m_base,
                kstart,
                kend,
            } => write!(
                f,
                "INIT_P2M {p2m_base:#x} lies inside the image {kstart:#x}..{kend:#x}"
            ),
            NonPaeImage { pae_mode } => match pae_mode {
                Some(s) => write!(
                    f,
                    "32-bit image with PAE_MODE \"{s}\": only PAE 32-bit guests run (need yes, \
                     bimodal or extended-cr3)"
                ),
                None => write!(
                    f,
                    "32-bit image without a PAE_MODE note: only PAE 32-bit guests run"
                ),
            },
        }
    }
}

/// What Xen's dom0 builder (`dom0_construct_pv`) refuses beyond libelf,
/// for every kernel here (`initial`: the initial domain's): a kernel whose
/// `SUPPORTED_FEATURES` note does not list `dom0` cannot be the initial
/// domain, and no kernel may require `supervisor_mode_kernel` (PV kernels
/// run deprivileged: ring 3, or ring 1).
pub fn check_for_builder(img: &GuestImage<'_>, initial: bool) -> Result<(), String> {
    if initial
        && img.notes.supported_features.is_some()
        && img.features.supported & 1 << feat::DOM0 == 0
    {
        return Err(String::from(
            "the kernel does not support running as the initial domain (its SUPPORTED_FEATURES lack dom0)",
        ));
    }
    if img.features.required & 1 << feat::SUPERVISOR_MODE_KERNEL != 0 {
        return Err(String::from(
            "the kernel requires supervisor_mode_kernel (FEATURES): PV kernels run deprivileged here",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The ELF structure, read with xmas-elf after the checks it would assert on.

/// Parse and check a guest kernel image. Never panics.
// Tour 01: an image's Xen ELF notes, checked as libelf does
pub fn parse(data: &[u8]) -> Result<GuestImage<'_>, ImageError> {
    let (elf, class, machine) = open(data)?;
    let loads = load_segments(&elf, class)?;
    let notes = find_notes(&elf)?;
    check_loader(&notes)?;

    let pae = match class {
        // dom0_build.c: "Zap meaningless setting which kernels may carry by
        // mistake."
        ElfClass::Elf64 => PaeMode::No,
        ElfClass::Elf32 => match notes.pae_mode {
            PaeMode::No => {
                return Err(ImageError::NonPaeImage {
                    pae_mode: notes.pae_mode_str.map(String::from),
                })
            }
            PaeMode::Bimodal => PaeMode::ExtendedCr3,
            m => m,
        },
    };

    place(data, class, machine, &elf, loads, notes, pae)
}

/// Check the header and hand back the xmas-elf view of the file.
fn open(data: &[u8]) -> Result<(ElfFile<'_>, ElfClass, u16), ImageError> {
    if data.get(..4) != Some(&b"\x7fELF"[..]) {
        return Err(ImageError::NotElf);
    }
    if !(data.as_ptr() as usize).is_multiple_of(IMAGE_ALIGN) {
        return Err(ImageError::Misaligned {
            addr: data.as_ptr() as usize,
        });
    }
    let elf = ElfFile::new(data).map_err(|_| match data.get(4) {
        Some(1) | Some(2) => ImageError::BadHeader {
            what: "file shorter than the ELF header",
        },
        c => ImageError::WrongClass {
            class: c.copied().unwrap_or(0),
            machine: data
                .get(18..20)
                .map_or(0, |m| u16::from_le_bytes([m[0], m[1]])),
        },
    })?;
    let pt2 = &elf.header.pt2;
    // e_machine sits at offset 18 in both classes; read raw for messages.
    let machine = u16::from_le_bytes([data[18], data[19]]);
    let raw_class = data[4];
    if elf.header.pt1.data() != Data::LittleEndian {
        return Err(ImageError::BigEndian);
    }
    let class = match (elf.header.pt1.class(), pt2.machine().as_machine()) {
        (Class::SixtyFour, Machine::X86_64) => ElfClass::Elf64,
        (Class::ThirtyTwo, Machine::X86) => ElfClass::Elf32,
        (_, Machine::X86_64 | Machine::X86) => {
            return Err(ImageError::WrongClass {
                class: raw_class,
                machine,
            })
        }
        _ => return Err(ImageError::WrongMachine { machine }),
    };

    // What xmas-elf's program/section header readers assume (they slice and
    // `zero::read` without checking): each table inside the file, entries
    // of the exact size, naturally aligned.
    let (ph_size, sh_size, align) = match class {
        ElfClass::Elf64 => (56u64, 64u64, 8u64),
        ElfClass::Elf32 => (32, 40, 4),
    };
    check_table(
        data,
        pt2.ph_offset(),
        pt2.ph_entry_size(),
        pt2.ph_count(),
        ph_size,
        align,
    )
    .map_err(|what| ImageError::BadHeader {
        what: table_msg(what, "program"),
    })?;
    check_table(
        data,
        pt2.sh_offset(),
        pt2.sh_entry_size(),
        pt2.sh_count(),
        sh_size,
        align,
    )
    .map_err(|what| ImageError::BadHeader {
        what: table_msg(what, "section"),
    })?;
    if pt2.sh_count() >= xmas_elf::sections::SHN_LORESERVE {
        return Err(ImageError::BadHeader {
            what: "too many section headers",
        });
    }
    Ok((elf, class, machine))
}

#[derive(Clone, Copy)]
enum TableFault {
    EntrySize,
    Offset,
    OutsideFile,
}

fn table_msg(fault: TableFault, table: &str) -> &'static str {
    match (fault, table) {
        (TableFault::EntrySize, "program") => "e_phentsize does not match the ELF class",
        (TableFault::Offset, "program") => "e_phoff is zero or misaligned",
        (TableFault::OutsideFile, "program") => "program header table lies outside the file",
        (TableFault::EntrySize, _) => "e_shentsize does not match the ELF class",
        (TableFault::Offset, _) => "e_shoff is zero or misaligned",
        (TableFault::OutsideFile, _) => "section header table lies outside the file",
    }
}

fn check_table(
    data: &[u8],
    offset: u64,
    entry_size: u16,
    count: u16,
    want_size: u64,
    align: u64,
) -> Result<(), TableFault> {
    if count == 0 {
        return Ok(());
    }
    if entry_size as u64 != want_size {
        return Err(TableFault::EntrySize);
    }
    if offset == 0 || !offset.is_multiple_of(align) {
        return Err(TableFault::Offset);
    }
    let end = (count as u64)
        .checked_mul(want_size)
        .and_then(|n| n.checked_add(offset));
    match end {
        Some(end) if end <= data.len() as u64 => Ok(()),
        _ => Err(TableFault::OutsideFile),
    }
}

/// Bytes `offset..offset+size` of the file, if they are all in it.
fn file_range(data: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let end = offset.checked_add(size)?;
    if end > data.len() as u64 {
        return None;
    }
    Some(&data[offset as usize..end as usize])
}

const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// The loadable segments (libelf's `elf_phdr_is_loadable`), checked each on
/// its own and against each other.
fn load_segments(elf: &ElfFile<'_>, class: ElfClass) -> Result<Vec<Segment>, ImageError> {
    let file_len = elf.input.len() as u64;
    let mut segs = Vec::new();
    let mut total: u64 = 0;
    for index in 0..elf.header.pt2.ph_count() {
        let Ok(ph) = elf.program_header(index) else {
            continue;
        };
        if ph.get_type() != Ok(PhType::Load) || ph.flags().0 & (PF_R | PF_W | PF_X) == 0 {
            continue;
        }
        if segs.len() == MAX_LOAD_SEGMENTS {
            let count = elf
                .program_iter()
                .filter(|p| p.get_type() == Ok(PhType::Load) && p.flags().0 & 7 != 0)
                .count();
            return Err(ImageError::TooManyLoadSegments { count });
        }
        let s = segment(&ph, index);
        if file_range(elf.input, s.file_offset, s.file_size).is_none() {
            return Err(ImageError::SegmentOutsideFile {
                index,
                offset: s.file_offset,
                size: s.file_size,
                file_len,
            });
        }
        if s.file_size > s.mem_size {
            return Err(ImageError::SegmentFileSizeExceedsMemSize {
                index,
                file_size: s.file_size,
                mem_size: s.mem_size,
            });
        }
        if s.mem_size > MAX_IMAGE_SPAN {
            return Err(ImageError::ImageTooLarge { size: s.mem_size });
        }
        let limit = match class {
            ElfClass::Elf64 => u64::MAX,
            ElfClass::Elf32 => 1 << 32,
        };
        if s.paddr
            .checked_add(s.mem_size)
            .is_none_or(|end| end > limit)
        {
            return Err(ImageError::SegmentAddressOverflow {
                index,
                paddr: s.paddr,
                mem_size: s.mem_size,
            });
        }
        total += s.mem_size; // at most 64 GiB: no overflow
        if total > MAX_IMAGE_SPAN {
            return Err(ImageError::ImageTooLarge { size: total });
        }
        segs.push(s);
    }
    if segs.is_empty() {
        return Err(ImageError::NoLoadSegments);
    }

    // Overlap, in p_paddr space (the guest-virtual placement is the same
    // shift of it). Empty segments occupy nothing.
    let mut by_addr: Vec<&Segment> = segs.iter().filter(|s| s.mem_size != 0).collect();
    by_addr.sort_unstable_by_key(|s| s.paddr);
    for pair in by_addr.windows(2) {
        if pair[0].paddr + pair[0].mem_size > pair[1].paddr {
            let (a, b) = (
                pair[0].index.min(pair[1].index),
                pair[0].index.max(pair[1].index),
            );
            return Err(ImageError::OverlappingSegments {
                first: a,
                second: b,
            });
        }
    }
    Ok(segs)
}

fn segment(ph: &ProgramHeader<'_>, index: u16) -> Segment {
    Segment {
        index,
        vaddr: ph.virtual_addr(),
        paddr: ph.physical_addr(),
        guest_va: 0, // set once VIRT_BASE and PADDR_OFFSET are known
        file_offset: ph.offset(),
        file_size: ph.file_size(),
        mem_size: ph.mem_size(),
        flags: ph.flags().0,
    }
}

// ---------------------------------------------------------------------------
// Finding the notes (elf_xen_parse).

/// Notes from `PT_NOTE`, else `SHT_NOTE`, else `__xen_guest`.
fn find_notes<'a>(elf: &ElfFile<'a>) -> Result<XenNotes<'a>, ImageError> {
    let data = elf.input;
    let file_len = data.len() as u64;
    let mut total = 0usize;

    let mut notes = XenNotes::empty(NotesSource::NoteSegments);
    let mut found = 0usize;
    for index in 0..elf.header.pt2.ph_count() {
        let Ok(ph) = elf.program_header(index) else {
            continue;
        };
        // libelf skips p_offset 0: "Some versions of binutils do not
        // correctly set p_offset for note segments."
        if ph.get_type() != Ok(PhType::Note) || ph.offset() == 0 {
            continue;
        }
        let (offset, size) = (ph.offset(), ph.file_size());
        let Some(area) = file_range(data, offset, size) else {
            return Err(ImageError::SegmentOutsideFile {
                index,
                offset,
                size,
                file_len,
            });
        };
        found += walk_notes(data, area, offset, &mut total, &mut notes)?;
    }
    if found > 0 {
        return Ok(notes);
    }

    notes = XenNotes::empty(NotesSource::NoteSections);
    for index in 1..elf.header.pt2.sh_count() {
        let Ok(sh) = elf.section_header(index) else {
            continue;
        };
        if sh.get_type() != Ok(ShType::Note) {
            continue;
        }
        let (offset, size) = (sh.offset(), sh.size());
        let Some(area) = file_range(data, offset, size) else {
            return Err(ImageError::SectionOutsideFile {
                index,
                offset,
                size,
                file_len,
            });
        };
        found += walk_notes(data, area, offset, &mut total, &mut notes)?;
    }
    if found > 0 {
        return Ok(notes);
    }

    if let Some((index, sh)) = section_by_name(elf, b"__xen_guest") {
        let (offset, size) = (sh.offset(), sh.size());
        let Some(area) = file_range(data, offset, size) else {
            return Err(ImageError::SectionOutsideFile {
                index,
                offset,
                size,
                file_len,
            });
        };
        return parse_guest_info(area);
    }
    Err(ImageError::NotXenImage)
}

/// The first section (from index 1, as libelf) called `name`.
fn section_by_name<'a>(elf: &ElfFile<'a>, name: &[u8]) -> Option<(u16, SectionHeader<'a>)> {
    let strndx = elf.header.pt2.sh_str_index();
    if strndx == 0 || strndx >= elf.header.pt2.sh_count() {
        return None;
    }
    let strtab = elf.section_header(strndx).ok()?;
    let strtab = file_range(elf.input, strtab.offset(), strtab.size())?;
    (1..elf.header.pt2.sh_count()).find_map(|index| {
        let sh = elf.section_header(index).ok()?;
        let rest = strtab.get(sh.name() as usize..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        (&rest[..len] == name).then_some((index, sh))
    })
}

/// Walk one note area (4-byte aligned entries: `namesz, descsz, type`,
/// name, desc), parse the notes owned by "Xen", return how many there were.
/// `file_offset` is the area's offset in `file`: string notes may be read
/// on past the area, as libelf does.
fn walk_notes<'a>(
    file: &'a [u8],
    area: &'a [u8],
    file_offset: u64,
    total: &mut usize,
    notes: &mut XenNotes<'a>,
) -> Result<usize, ImageError> {
    let mut xen = 0;
    let mut pos = 0usize;
    // Fewer than 12 bytes left: padding, not a note.
    while area.len() - pos >= 12 {
        if *total == MAX_NOTES {
            return Err(ImageError::TooManyNotes);
        }
        *total += 1;
        let word =
            |at: usize| u32::from_le_bytes([area[at], area[at + 1], area[at + 2], area[at + 3]]);
        let (namesz, descsz, ty) = (word(pos) as u64, word(pos + 4) as u64, word(pos + 8));
        let name_at = pos as u64 + 12;
        let desc_at = name_at + align4(namesz);
        let next = desc_at + align4(descsz);
        // The padding after the last desc may be missing at the very end.
        if desc_at + descsz > area.len() as u64 {
            return Err(ImageError::MalformedNotes {
                offset: file_offset + pos as u64,
            });
        }
        let name = &area[name_at as usize..(name_at + namesz) as usize];
        let desc = &area[desc_at as usize..(desc_at + descsz) as usize];
        let owner = name.split(|&b| b == 0).next().unwrap_or(name);
        if owner == b"Xen" {
            // In range: `area` is `file[file_offset..]` and `desc` lies in it.
            let text_from = &file[(file_offset + desc_at) as usize..];
            parse_note(ty, desc, text_from, notes)?;
            xen += 1;
        }
        pos = next.min(area.len() as u64) as usize;
    }
    Ok(xen)
}

fn align4(n: u64) -> u64 {
    (n + 3) & !3 // n < 2^32
}

// ---------------------------------------------------------------------------
// One note (elf_xen_parse_note).

/// `desc` is the note's descriptor as declared; `text_from` is the file
/// from the descriptor's first byte to its end, where a string note is
/// read (see [`string`]).
fn parse_note<'a>(
    ty: u32,
    desc: &'a [u8],
    text_from: &'a [u8],
    n: &mut XenNotes<'a>,
) -> Result<(), ImageError> {
    let num = |name: &'static str| numeric(name, desc);
    let text = |name: &'static str| string(name, text_from);
    match ty {
        note::ENTRY => n.entry = Some(num("ENTRY")?),
        note::HYPERCALL_PAGE => n.hypercall_page = Some(num("HYPERCALL_PAGE")?),
        note::VIRT_BASE => n.virt_base = Some(num("VIRT_BASE")?),
        note::PADDR_OFFSET => n.paddr_offset = Some(num("PADDR_OFFSET")?),
        note::HV_START_LOW => n.hv_start_low = Some(num("HV_START_LOW")?),
        note::INIT_P2M => n.init_p2m = Some(num("INIT_P2M")?),
        note::SUSPEND_CANCEL => n.suspend_cancel = Some(num("SUSPEND_CANCEL")?),
        note::MOD_START_PFN => n.mod_start_pfn = Some(num("MOD_START_PFN")?),
        note::PHYS32_ENTRY => n.phys32_entry = Some(num("PHYS32_ENTRY")?),
        note::XEN_VERSION => n.xen_version = Some(text("XEN_VERSION")?),
        note::GUEST_OS => n.guest_os = Some(text("GUEST_OS")?),
        note::GUEST_VERSION => n.guest_version = Some(text("GUEST_VERSION")?),
        note::LOADER => n.loader = Some(text("LOADER")?),
        note::PAE_MODE => {
            let s = text("PAE_MODE")?;
            n.pae_mode_str = Some(s);
            if s == "yes" {
                n.pae_mode = PaeMode::ExtendedCr3;
            }
            if s.contains("bimodal") {
                n.pae_mode = PaeMode::Bimodal;
            }
        }
        note::FEATURES => {
            let s = text("FEATURES")?;
            n.features_str = Some(s);
            parse_features(s, &mut n.features).map_err(|why| ImageError::BadNote {
                note: "FEATURES",
                legacy: false,
                why,
            })?;
        }
        note::SUPPORTED_FEATURES => {
            // An array of u32 bitmaps; Xen knows one (XENFEAT_NR_SUBMAPS).
            if desc.len() < 4 || !desc.len().is_multiple_of(4) {
                return Err(ImageError::BadNote {
                    note: "SUPPORTED_FEATURES",
                    legacy: false,
                    why: format!("size {} is not a non-zero multiple of 4", desc.len()),
                });
            }
            let word = u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]);
            n.supported_features = Some(n.supported_features.unwrap_or(0) | word);
            n.features.supported |= word;
        }
        note::BSD_SYMTAB => n.bsd_symtab = text("BSD_SYMTAB")? == "yes",
        note::L1_MFN_VALID => n.l1_mfn_valid = Some(desc),
        note::PHYS32_RELOC => n.phys32_reloc = true,
        _ => {} // unknown, and XEN_ELFNOTE_INFO: libelf skips them
    }
    Ok(())
}

/// A numeric note: 1, 2, 4 or 8 little-endian bytes (`elf_note_numeric`).
fn numeric(name: &'static str, desc: &[u8]) -> Result<u64, ImageError> {
    match desc.len() {
        1 | 2 | 4 | 8 => {
            let mut b = [0u8; 8];
            b[..desc.len()].copy_from_slice(desc);
            Ok(u64::from_le_bytes(b))
        }
        n => Err(ImageError::BadNote {
            note: name,
            legacy: false,
            why: format!("numeric value is {n} bytes (need 1, 2, 4 or 8)"),
        }),
    }
}

/// libelf's `ELF_MAX_STRING_LENGTH`: a string longer than this is refused.
pub const MAX_STRING_LEN: usize = 4096;

/// A string note: the text from the descriptor's start up to the first
/// NUL, as libelf's `elf_strval` reads it: the NUL may lie past the note's
/// declared size (Linux's `FEATURES` is a 41-byte `.ascii` with its NUL in
/// the note padding), but within the file and [`MAX_STRING_LEN`] bytes.
fn string<'a>(name: &'static str, text_from: &'a [u8]) -> Result<&'a str, ImageError> {
    let bad = |why: &str| ImageError::BadNote {
        note: name,
        legacy: false,
        why: String::from(why),
    };
    let window = &text_from[..text_from.len().min(MAX_STRING_LEN + 1)];
    let len = window
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| bad("string has no NUL within 4096 bytes or before the end of the file"))?;
    core::str::from_utf8(&window[..len]).map_err(|_| bad("string is not UTF-8"))
}

/// Merge a `FEATURES` string into `f` (`elf_xen_parse_features`).
fn parse_features(s: &str, f: &mut Features) -> Result<(), String> {
    for token in s.split('|') {
        let (required, name) = match token.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, token),
        };
        match FEATURE_NAMES.iter().find(|&&(n, _)| n == name) {
            Some(&(_, bit)) => {
                f.supported |= 1 << bit;
                if required {
                    f.required |= 1 << bit;
                }
            }
            None if required => return Err(format!("requires unknown feature \"{name}\"")),
            None => {} // a supported feature we do not know: fine
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The legacy `__xen_guest` string (elf_xen_parse_guest_info).

fn parse_guest_info(area: &[u8]) -> Result<XenNotes<'_>, ImageError> {
    let bad = |key: &'static str, why: String| ImageError::BadNote {
        note: key,
        legacy: true,
        why,
    };
    let len = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    let text = core::str::from_utf8(&area[..len])
        .map_err(|_| bad("section", String::from("string is not UTF-8")))?;

    let mut n = XenNotes::empty(NotesSource::LegacyXenGuestSection);
    let mut hypercall_pfn = None;
    for item in text.split(',') {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let number = |key: &'static str| {
            parse_c_number(value).ok_or_else(|| bad(key, format!("\"{value}\" is not a number")))
        };
        match key {
            "LOADER" => n.loader = Some(value),
            "GUEST_OS" => n.guest_os = Some(value),
            "GUEST_VER" => n.guest_version = Some(value),
            "XEN_VER" => n.xen_version = Some(value),
            "PAE" => {
                n.pae_mode_str = Some(value);
                if value == "yes[extended-cr3]" {
                    n.pae_mode = PaeMode::ExtendedCr3;
                } else if value.starts_with("yes") {
                    n.pae_mode = PaeMode::Yes;
                }
            }
            "BSD_SYMTAB" => n.bsd_symtab = true,
            "VIRT_BASE" => n.virt_base = Some(number("VIRT_BASE")?),
            "VIRT_ENTRY" => n.entry = Some(number("VIRT_ENTRY")?),
            "ELF_PADDR_OFFSET" => n.paddr_offset = Some(number("ELF_PADDR_OFFSET")?),
            "HYPERCALL_PAGE" => hypercall_pfn = Some(number("HYPERCALL_PAGE")?),
            "FEATURES" => {
                n.features_str = Some(value);
                parse_features(value, &mut n.features).map_err(|why| bad("FEATURES", why))?;
            }
            _ => {}
        }
    }
    // A page number relative to VIRT_BASE (0 when unset).
    if let Some(pfn) = hypercall_pfn {
        let va = pfn
            .checked_mul(PAGE_SIZE)
            .and_then(|off| off.checked_add(n.virt_base.unwrap_or(0)))
            .ok_or_else(|| {
                bad(
                    "HYPERCALL_PAGE",
                    format!("page {pfn:#x} + VIRT_BASE overflows"),
                )
            })?;
        n.hypercall_page = Some(va);
    }
    Ok(n)
}

/// A number the way C's `strtoull(s, NULL, 0)` reads one, but all of `s`
/// must be used: `0x` hex, leading `0` octal, else decimal.
fn parse_c_number(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || digits.starts_with('+') {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

// ---------------------------------------------------------------------------
// Sanity checks on the notes (elf_xen_note_check) and addresses
// (elf_xen_addr_calc_check).

fn check_loader(n: &XenNotes<'_>) -> Result<(), ImageError> {
    let loader = n.loader.unwrap_or("");
    let guest_os = n.guest_os.unwrap_or("");
    if !loader.starts_with("generic") && !guest_os.starts_with("linux") {
        return Err(ImageError::UnsupportedLoader {
            loader: String::from(loader),
            guest_os: String::from(guest_os),
        });
    }
    let xen_version = n.xen_version.unwrap_or("");
    if !xen_version.starts_with("xen-3.0") {
        return Err(ImageError::UnsupportedXenVersion {
            xen_version: String::from(xen_version),
        });
    }
    Ok(())
}

/// Resolve the defaults, place the image in guest-virtual space, check it.
fn place<'a>(
    data: &'a [u8],
    class: ElfClass,
    machine: u16,
    elf: &ElfFile<'a>,
    mut segments: Vec<Segment>,
    notes: XenNotes<'a>,
    pae: PaeMode,
) -> Result<GuestImage<'a>, ImageError> {
    if notes.paddr_offset.is_some() && notes.virt_base.is_none() {
        return Err(ImageError::PaddrOffsetWithoutVirtBase);
    }
    let virt_base = notes.virt_base.unwrap_or(0);
    let paddr_offset = notes.paddr_offset.unwrap_or(match notes.source {
        NotesSource::LegacyXenGuestSection => virt_base,
        _ => 0,
    });

    // The extent by p_paddr (elf_parse_binary), then shifted. libelf does
    // this modulo 2^64; here a result outside the address space is refused.
    let pstart = segments.iter().map(|s| s.paddr).min().unwrap_or(0);
    let pend = segments
        .iter()
        .map(|s| s.paddr + s.mem_size)
        .max()
        .unwrap_or(0);
    // BSD_SYMTAB: the symbol table right after the segments, part of the
    // image from here on (elf_xen_addr_calc_check: virt_kend moves).
    let bsd_symtab = if notes.bsd_symtab {
        super::bsdsyms::build(data, class, pend)
    } else {
        None
    };
    let pend = bsd_symtab.as_ref().map_or(pend, |b| b.end());
    let shift = virt_base as i128 - paddr_offset as i128;
    let top: i128 = match class {
        ElfClass::Elf64 => u64::MAX as i128,
        ElfClass::Elf32 => 1 << 32,
    };
    let (kstart, kend) = (pstart as i128 + shift, pend as i128 + shift);
    if kstart < 0 || kend > top {
        return Err(ImageError::ImageOutsideAddressSpace {
            pstart,
            pend,
            virt_base,
            paddr_offset,
        });
    }
    let (kstart, kend) = (kstart as u64, kend as u64);
    for s in &mut segments {
        s.guest_va = (s.paddr as i128 + shift) as u64;
    }

    if virt_base > kstart {
        return Err(ImageError::VirtBaseAboveImage { virt_base, kstart });
    }
    if kend - kstart > MAX_IMAGE_SPAN {
        return Err(ImageError::ImageTooLarge {
            size: kend - kstart,
        });
    }
    if class == ElfClass::Elf64 {
        let lower_half = kend <= 0x0000_8000_0000_0000;
        let upper_half = kstart >= 0xffff_8000_0000_0000;
        let in_reserved = kstart < HYPERVISOR_RESERVED.end && kend > HYPERVISOR_RESERVED.start;
        if !(lower_half || upper_half) || in_reserved {
            return Err(ImageError::ImageInReservedRange { kstart, kend });
        }
    }

    let entry = notes.entry.unwrap_or(elf.header.pt2.entry_point());
    if !(kstart..kend).contains(&entry) {
        return Err(ImageError::EntryOutsideImage {
            entry,
            kstart,
            kend,
        });
    }

    if let Some(va) = notes.hypercall_page {
        if !va.is_multiple_of(PAGE_SIZE) {
            return Err(ImageError::HypercallPageMisaligned { va });
        }
        // The image's last page is mapped whole, so the page may end there.
        let mapped_end = (kend as u128).div_ceil(PAGE_SIZE as u128) * PAGE_SIZE as u128;
        if va < kstart || va as u128 + PAGE_SIZE as u128 > mapped_end {
            return Err(ImageError::HypercallPageOutsideImage { va, kstart, kend });
        }
    }

    // dom0_build.c ignores INIT_P2M for 32-bit guests ("P2M table base
    // ignored").
    let p2m_base = match class {
        ElfClass::Elf64 => notes.init_p2m,
        ElfClass::Elf32 => None,
    };
    if let Some(p2m_base) = p2m_base {
        if (kstart..kend).contains(&p2m_base) {
            return Err(ImageError::P2mInsideImage {
                p2m_base,
                kstart,
                kend,
            });
        }
    }

    Ok(GuestImage {
        class,
        machine,
        entry,
        virt_base,
        paddr_offset,
        virt_kstart: kstart,
        virt_kend: kend,
        hypercall_page: notes.hypercall_page,
        p2m_base,
        pae,
        features: notes.features,
        segments,
        bsd_symtab: bsd_symtab.map(|b| BsdArea {
            guest_va: (b.paddr as i128 + shift) as u64,
            blob: b.blob,
        }),
        notes,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    // --- A tiny ELF assembler --------------------------------------------

    #[derive(Clone, Copy)]
    struct Load {
        paddr: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        flags: u32,
        /// File offset to write instead of the real one.
        bad_offset: Option<u64>,
    }

    fn load(paddr: u64, filesz: u64, memsz: u64) -> Load {
        Load {
            paddr,
            vaddr: paddr,
            filesz,
            memsz,
            flags: PF_R | PF_X,
            bad_offset: None,
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum NotesIn {
        Segment,
        /// A PT_NOTE with p_offset 0 (skipped, as libelf does) and the
        /// notes in a SHT_NOTE section.
        SegmentAtZeroAndSection,
        Section,
    }

    #[derive(Clone)]
    struct Img {
        class64: bool,
        machine: u16,
        entry: u64,
        loads: Vec<Load>,
        notes: Vec<(&'static [u8], u32, Vec<u8>)>,
        notes_in: NotesIn,
        legacy: Option<&'static str>,
    }

    const ENTRY: u64 = 0x20_0010;

    /// A 64-bit image at 0x200000..0x203000 with the three notes every
    /// image needs and nothing else.
    fn img64() -> Img {
        Img {
            class64: true,
            machine: EM_X86_64,
            entry: ENTRY,
            loads: vec![
                load(0x20_0000, 0x300, 0x2000),
                Load {
                    flags: PF_R | PF_W,
                    ..load(0x20_2000, 0x80, 0x1000)
                },
            ],
            notes: vec![
                (b"Xen\0", note::GUEST_OS, s("ringvisor-test")),
                (b"Xen\0", note::LOADER, s("generic")),
                (b"Xen\0", note::XEN_VERSION, s("xen-3.0")),
            ],
            notes_in: NotesIn::Segment,
            legacy: None,
        }
    }

    fn img32() -> Img {
        let mut i = Img {
            class64: false,
            machine: EM_386,
            ..img64()
        };
        i.notes.push((b"Xen\0", note::PAE_MODE, s("yes")));
        i
    }

    /// NUL-terminated string descriptor.
    fn s(text: &str) -> Vec<u8> {
        let mut v = Vec::from(text.as_bytes());
        v.push(0);
        v
    }
    fn n4(v: u32) -> Vec<u8> {
        Vec::from(v.to_le_bytes())
    }
    fn n8(v: u64) -> Vec<u8> {
        Vec::from(v.to_le_bytes())
    }

    impl Img {
        fn note(mut self, ty: u32, desc: Vec<u8>) -> Self {
            self.notes.push((b"Xen\0", ty, desc));
            self
        }
        fn without(mut self, ty: u32) -> Self {
            self.notes.retain(|n| n.1 != ty);
            self
        }
    }

    /// Image bytes at an 8-byte aligned address.
    struct Aligned {
        buf: Vec<u8>,
        start: usize,
        len: usize,
    }

    impl Aligned {
        fn new(bytes: &[u8]) -> Self {
            let mut buf = vec![0u8; bytes.len() + IMAGE_ALIGN];
            let start = buf.as_ptr().align_offset(IMAGE_ALIGN);
            buf[start..start + bytes.len()].copy_from_slice(bytes);
            Aligned {
                buf,
                start,
                len: bytes.len(),
            }
        }
        fn bytes(&self) -> &[u8] {
            &self.buf[self.start..self.start + self.len]
        }
    }

    fn put(v: &mut [u8], at: usize, bytes: &[u8]) {
        v[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn align8(n: usize) -> usize {
        (n + 7) & !7
    }

    fn build(img: &Img) -> Aligned {
        let c64 = img.class64;
        let (ehsize, phentsize, shentsize) = if c64 { (64, 56, 64) } else { (52, 32, 40) };
        let note_seg = img.notes_in != NotesIn::Section && !img.notes.is_empty();
        let note_sec = img.notes_in != NotesIn::Segment && !img.notes.is_empty();
        let phnum = img.loads.len() + note_seg as usize;

        let mut notes = Vec::new();
        for (name, ty, desc) in &img.notes {
            notes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&ty.to_le_bytes());
            for part in [&name[..], &desc[..]] {
                notes.extend_from_slice(part);
                notes.resize((notes.len() + 3) & !3, 0);
            }
        }
        let legacy = img.legacy.map(s).unwrap_or_default();

        let phoff = align8(ehsize);
        let notes_off = align8(phoff + phnum * phentsize);
        let legacy_off = align8(notes_off + notes.len());
        let mut off = align8(legacy_off + legacy.len());
        let mut data_offs = Vec::new();
        for l in &img.loads {
            data_offs.push(off);
            off = align8(off + l.filesz as usize);
        }
        let shstrtab: &[u8] = b"\0.notes\0__xen_guest\0.shstrtab\0";
        let shstr_off = off;
        // (name offset in shstrtab, type, offset, size)
        let mut sections = vec![(0u32, 0u32, 0usize, 0usize)];
        if note_sec {
            sections.push((1, 7, notes_off, notes.len()));
        }
        if !legacy.is_empty() {
            sections.push((8, 1, legacy_off, legacy.len()));
        }
        sections.push((20, 3, shstr_off, shstrtab.len()));
        let shoff = align8(shstr_off + shstrtab.len());
        let total = shoff + sections.len() * shentsize;

        let mut v = vec![0u8; total];
        put(&mut v, 0, b"\x7fELF");
        v[4] = if c64 { 2 } else { 1 };
        v[5] = 1; // little-endian
        v[6] = 1;
        put(&mut v, 16, &2u16.to_le_bytes()); // ET_EXEC
        put(&mut v, 18, &img.machine.to_le_bytes());
        put(&mut v, 20, &1u32.to_le_bytes());
        let mut at = 24;
        let word = |v: &mut Vec<u8>, at: &mut usize, x: u64| {
            if c64 {
                put(v, *at, &x.to_le_bytes());
                *at += 8;
            } else {
                put(v, *at, &(x as u32).to_le_bytes());
                *at += 4;
            }
        };
        word(&mut v, &mut at, img.entry);
        word(&mut v, &mut at, phoff as u64);
        word(&mut v, &mut at, shoff as u64);
        at += 4; // e_flags
        for x in [
            ehsize,
            phentsize,
            phnum,
            shentsize,
            sections.len(),
            sections.len() - 1,
        ] {
            put(&mut v, at, &(x as u16).to_le_bytes());
            at += 2;
        }

        let mut phdrs: Vec<(u32, u32, u64, u64, u64, u64, u64)> = Vec::new();
        for (l, &d) in img.loads.iter().zip(&data_offs) {
            let offset = l.bad_offset.unwrap_or(d as u64);
            phdrs.push((1, l.flags, offset, l.vaddr, l.paddr, l.filesz, l.memsz));
            for k in 0..l.filesz as usize {
                v[d + k] = pattern(l.paddr, k);
            }
        }
        if note_seg {
            let offset = if img.notes_in == NotesIn::Segment {
                notes_off as u64
            } else {
                0
            };
            phdrs.push((4, PF_R, offset, 0, 0, notes.len() as u64, 0));
        }
        let mut at = phoff;
        for (ty, flags, offset, vaddr, paddr, filesz, memsz) in phdrs {
            if c64 {
                put(&mut v, at, &ty.to_le_bytes());
                put(&mut v, at + 4, &flags.to_le_bytes());
                at += 8;
                for x in [offset, vaddr, paddr, filesz, memsz, 0x1000] {
                    put(&mut v, at, &x.to_le_bytes());
                    at += 8;
                }
            } else {
                for x in [
                    ty as u64,
                    offset,
                    vaddr,
                    paddr,
                    filesz,
                    memsz,
                    flags as u64,
                    0x1000,
                ] {
                    put(&mut v, at, &(x as u32).to_le_bytes());
                    at += 4;
                }
            }
        }
        put(&mut v, notes_off, &notes);
        put(&mut v, legacy_off, &legacy);
        put(&mut v, shstr_off, shstrtab);
        let mut at = shoff;
        for (name, ty, offset, size) in sections {
            put(&mut v, at, &name.to_le_bytes());
            put(&mut v, at + 4, &ty.to_le_bytes());
            if c64 {
                put(&mut v, at + 24, &(offset as u64).to_le_bytes());
                put(&mut v, at + 32, &(size as u64).to_le_bytes());
            } else {
                put(&mut v, at + 16, &(offset as u32).to_le_bytes());
                put(&mut v, at + 20, &(size as u32).to_le_bytes());
            }
            at += shentsize;
        }
        Aligned::new(&v)
    }

    fn pattern(paddr: u64, k: usize) -> u8 {
        (paddr >> 12) as u8 ^ (k as u8).wrapping_mul(7)
    }

    fn ok(img: &Img) -> GuestImage<'static> {
        // Leak the buffer so the image can be returned (tests only).
        let a = alloc::boxed::Box::leak(alloc::boxed::Box::new(build(img)));
        match parse(a.bytes()) {
            Ok(g) => g,
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn err(img: &Img) -> ImageError {
        let a = build(img);
        match parse(a.bytes()) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    // --- Defaults and each note ------------------------------------------

    #[test]
    fn defaults_without_address_notes() {
        let g = ok(&img64());
        assert_eq!(g.class, ElfClass::Elf64);
        assert_eq!(g.machine, EM_X86_64);
        assert_eq!(g.virt_base, 0);
        assert_eq!(g.paddr_offset, 0);
        assert_eq!(g.entry, ENTRY, "ENTRY defaults to e_entry");
        assert_eq!((g.virt_kstart, g.virt_kend), (0x20_0000, 0x20_3000));
        assert_eq!(g.hypercall_page, None);
        assert_eq!(g.p2m_base, None);
        assert_eq!(g.pae, PaeMode::No);
        assert_eq!(g.notes.source, NotesSource::NoteSegments);
        assert_eq!(g.notes.guest_os, Some("ringvisor-test"));
        assert_eq!(g.notes.loader, Some("generic"));
        assert_eq!(g.notes.xen_version, Some("xen-3.0"));
        assert_eq!(g.segments.len(), 2);
        assert_eq!(g.segments[1].guest_va, 0x20_2000);
        assert_eq!(g.segments[1].flags, PF_R | PF_W);
    }

    #[test]
    fn numeric_notes_4_and_8_bytes() {
        for wide in [false, true] {
            let n = |v: u64| if wide { n8(v) } else { n4(v as u32) };
            let img = img64()
                .note(note::VIRT_BASE, n(0x10_0000))
                .note(note::PADDR_OFFSET, n(0))
                .note(note::ENTRY, n(0x30_0020))
                .note(note::HYPERCALL_PAGE, n(0x30_1000))
                .note(note::INIT_P2M, n(0x4000_0000))
                .note(note::HV_START_LOW, n(0xf580_0000))
                .note(note::SUSPEND_CANCEL, n(1))
                .note(note::MOD_START_PFN, n(1))
                .note(note::PHYS32_ENTRY, n(0x10_0000));
            let g = ok(&img);
            assert_eq!(g.virt_base, 0x10_0000);
            assert_eq!(g.paddr_offset, 0);
            assert_eq!((g.virt_kstart, g.virt_kend), (0x30_0000, 0x30_3000));
            assert_eq!(g.segments[0].guest_va, 0x30_0000);
            assert_eq!(g.entry, 0x30_0020);
            assert_eq!(g.hypercall_page, Some(0x30_1000));
            assert_eq!(g.p2m_base, Some(0x4000_0000));
            assert_eq!(g.notes.hv_start_low, Some(0xf580_0000));
            assert_eq!(g.notes.suspend_cancel, Some(1));
            assert_eq!(g.notes.mod_start_pfn, Some(1));
            assert_eq!(g.notes.phys32_entry, Some(0x10_0000));
        }
    }

    #[test]
    fn one_and_two_byte_numbers_read_like_libelf() {
        let g = ok(&img64()
            .note(note::SUSPEND_CANCEL, vec![1])
            .note(note::MOD_START_PFN, vec![2, 1]));
        assert_eq!(g.notes.suspend_cancel, Some(1));
        assert_eq!(g.notes.mod_start_pfn, Some(0x102));
    }

    #[test]
    fn string_and_flag_notes() {
        let g = ok(&img64()
            .note(note::GUEST_VERSION, s("2.6"))
            .note(
                note::FEATURES,
                s("writable_page_tables|!writable_descriptor_tables|future_thing"),
            )
            .note(note::FEATURES, s("!dom0"))
            .note(note::SUPPORTED_FEATURES, n4(1 << 20))
            .note(note::BSD_SYMTAB, s("yes"))
            .note(note::L1_MFN_VALID, n8(0x1))
            .note(note::PHYS32_RELOC, vec![])
            .note(note::INFO, s("ignored"))
            .note(999, s("unknown type, ignored")));
        assert_eq!(g.notes.guest_version, Some("2.6"));
        assert_eq!(g.notes.features_str, Some("!dom0"));
        let f = g.features;
        assert!(f.supports(feat::WRITABLE_PAGE_TABLES) && !f.requires(feat::WRITABLE_PAGE_TABLES));
        assert!(f.requires(feat::WRITABLE_DESCRIPTOR_TABLES));
        assert!(f.supports(feat::WRITABLE_DESCRIPTOR_TABLES));
        assert!(f.requires(feat::DOM0));
        assert!(f.supports(20), "SUPPORTED_FEATURES bits are merged");
        assert_eq!(g.notes.supported_features, Some(1 << 20));
        assert!(g.notes.bsd_symtab);
        assert_eq!(g.notes.l1_mfn_valid, Some(&1u64.to_le_bytes()[..]));
        assert!(g.notes.phys32_reloc);
        assert_eq!(feature_name(feat::DOM0), Some("dom0"));
    }

    #[test]
    fn string_notes_read_to_the_first_nul_past_the_note_size() {
        // Linux (arch/x86/xen/xen-head.S): `ELFNOTE(Xen, XEN_ELFNOTE_FEATURES,
        // .ascii "!writable_page_tables|pae_pgdir_above_4gb")`: 41 bytes,
        // no NUL in the note; the NUL is the first byte of its padding.
        let linux = "!writable_page_tables|pae_pgdir_above_4gb";
        assert_eq!(linux.len(), 41);
        let g = ok(&img64().note(note::FEATURES, Vec::from(linux.as_bytes())));
        assert_eq!(g.notes.features_str, Some(linux));
        assert!(g.features.requires(feat::WRITABLE_PAGE_TABLES));
        assert!(g.features.supports(feat::PAE_PGDIR_ABOVE_4GB));
        // A 4-byte string has no padding: it runs on into the next note
        // (namesz 4 = b"\x04\0\0\0") as libelf's elf_strval reads it.
        let g = ok(&img64()
            .note(note::GUEST_VERSION, Vec::from(&b"abcd"[..]))
            .note(note::INFO, s("x")));
        assert_eq!(g.notes.guest_version, Some("abcd\u{4}"));
    }

    #[test]
    fn refused_as_xens_dom0_builder_refuses() {
        // SUPPORTED_FEATURES without dom0: not the initial domain.
        let g = ok(&img64().note(
            note::SUPPORTED_FEATURES,
            n4(1 << feat::WRITABLE_PAGE_TABLES),
        ));
        let e = check_for_builder(&g, true).unwrap_err();
        assert!(e.contains("SUPPORTED_FEATURES lack dom0"), "{e}");
        assert_eq!(check_for_builder(&g, false), Ok(()));
        // With dom0 (in the note, or in FEATURES), or without the note: fine.
        let g = ok(&img64().note(note::SUPPORTED_FEATURES, n4(1 << feat::DOM0)));
        assert_eq!(check_for_builder(&g, true), Ok(()));
        let g = ok(&img64()
            .note(note::SUPPORTED_FEATURES, n4(0))
            .note(note::FEATURES, s("dom0")));
        assert_eq!(check_for_builder(&g, true), Ok(()));
        assert_eq!(check_for_builder(&ok(&img64()), true), Ok(()));
        // Requiring supervisor_mode_kernel: refused for every domain;
        // merely supporting it is fine.
        let g = ok(&img64().note(note::FEATURES, s("!supervisor_mode_kernel")));
        for initial in [true, false] {
            let e = check_for_builder(&g, initial).unwrap_err();
            assert!(e.contains("supervisor_mode_kernel"), "{e}");
        }
        let g = ok(&img64().note(note::FEATURES, s("supervisor_mode_kernel")));
        assert_eq!(check_for_builder(&g, false), Ok(()));
    }

    #[test]
    fn unknown_required_feature_is_refused() {
        let e = err(&img64().note(note::FEATURES, s("!no_such_feature")));
        assert!(
            matches!(
                &e,
                ImageError::BadNote {
                    note: "FEATURES",
                    legacy: false,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(format!("{e}").contains("no_such_feature"));
    }

    #[test]
    fn bad_note_sizes_and_strings() {
        let e = err(&img64().note(note::ENTRY, vec![0x10, 0, 0x20]));
        assert!(
            matches!(e, ImageError::BadNote { note: "ENTRY", .. }),
            "{e:?}"
        );
        assert!(format!("{e}").starts_with("Xen ELF note ENTRY"));
        // No NUL within 4096 bytes: refused (libelf's ELF_MAX_STRING_LENGTH).
        let e = err(&img64().note(note::GUEST_VERSION, vec![b'a'; 5000]));
        assert!(
            matches!(
                e,
                ImageError::BadNote {
                    note: "GUEST_VERSION",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = err(&img64().note(note::LOADER, vec![0xff, 0xfe, 0]));
        assert!(
            matches!(e, ImageError::BadNote { note: "LOADER", .. }),
            "{e:?}"
        );
        let e = err(&img64().note(note::SUPPORTED_FEATURES, vec![1, 2, 3]));
        assert!(
            matches!(
                e,
                ImageError::BadNote {
                    note: "SUPPORTED_FEATURES",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn other_owners_are_ignored() {
        let mut img = img64();
        img.notes
            .insert(0, (b"GNU\0", note::ENTRY, n8(0xdead_0000)));
        img.notes.push((b"Xen-ish\0", note::ENTRY, n8(0xdead_0000)));
        assert_eq!(ok(&img).entry, ENTRY);
    }

    #[test]
    fn repeated_note_last_wins() {
        let g = ok(&img64()
            .note(note::ENTRY, n8(0x20_0100))
            .note(note::ENTRY, n8(0x20_0200)));
        assert_eq!(g.entry, 0x20_0200);
    }

    #[test]
    fn notes_from_sections_when_no_note_segment() {
        let g = ok(&Img {
            notes_in: NotesIn::Section,
            ..img64()
        });
        assert_eq!(g.notes.source, NotesSource::NoteSections);
        let g = ok(&Img {
            notes_in: NotesIn::SegmentAtZeroAndSection,
            ..img64()
        });
        assert_eq!(g.notes.source, NotesSource::NoteSections);
    }

    #[test]
    fn linux_like_64bit_layout_places_by_paddr() {
        // VIRT_BASE = __START_KERNEL_map, PADDR_OFFSET 0, p_paddr physical,
        // and a per-CPU segment whose p_vaddr is 0.
        const MAP: u64 = 0xffff_ffff_8000_0000;
        let mut img = img64()
            .without(note::GUEST_OS)
            .without(note::LOADER)
            .note(note::GUEST_OS, s("linux"))
            .note(note::VIRT_BASE, n8(MAP))
            .note(note::PADDR_OFFSET, n8(0))
            .note(note::ENTRY, n8(MAP + 0x100_0200))
            .note(note::HYPERCALL_PAGE, n8(MAP + 0x100_1000));
        img.loads = vec![
            Load {
                vaddr: MAP + 0x100_0000,
                ..load(0x100_0000, 0x2000, 0x2000)
            },
            Load {
                vaddr: 0,
                flags: PF_R | PF_W,
                ..load(0x100_2000, 0x100, 0x1000)
            },
        ];
        img.entry = MAP + 0x100_0200;
        let g = ok(&img);
        assert_eq!(
            (g.virt_kstart, g.virt_kend),
            (MAP + 0x100_0000, MAP + 0x100_3000)
        );
        assert_eq!(g.segments[1].vaddr, 0);
        assert_eq!(g.segments[1].guest_va, MAP + 0x100_2000);
        assert_eq!(g.hypercall_page, Some(MAP + 0x100_1000));
    }

    // --- The legacy __xen_guest section -----------------------------------

    fn legacy32(text: &'static str) -> Img {
        Img {
            class64: false,
            machine: EM_386,
            entry: 0xc010_0000,
            loads: vec![load(0xc010_0000, 0x100, 0x3000)],
            notes: vec![],
            notes_in: NotesIn::Segment,
            legacy: Some(text),
        }
    }

    #[test]
    fn legacy_xen_guest_section() {
        let g = ok(&legacy32(
            "GUEST_OS=linux,GUEST_VER=2.6,XEN_VER=xen-3.0,VIRT_BASE=0xC0000000,\
             ELF_PADDR_OFFSET=0xC0000000,HYPERCALL_PAGE=0x101,LOADER=generic,\
             PAE=yes[extended-cr3],FEATURES=writable_page_tables|!pae_pgdir_above_4gb,BSD_SYMTAB",
        ));
        assert_eq!(g.class, ElfClass::Elf32);
        assert_eq!(g.notes.source, NotesSource::LegacyXenGuestSection);
        assert_eq!(g.notes.guest_version, Some("2.6"));
        assert_eq!((g.virt_base, g.paddr_offset), (0xc000_0000, 0xc000_0000));
        assert_eq!((g.virt_kstart, g.virt_kend), (0xc010_0000, 0xc010_3000));
        assert_eq!(
            g.hypercall_page,
            Some(0xc010_1000),
            "page number + VIRT_BASE"
        );
        assert_eq!(g.pae, PaeMode::ExtendedCr3);
        assert!(g.features.requires(feat::PAE_PGDIR_ABOVE_4GB));
        assert!(g.features.supports(feat::WRITABLE_PAGE_TABLES));
        assert!(g.notes.bsd_symtab);
        assert_eq!(g.entry, 0xc010_0000);
    }

    #[test]
    fn legacy_paddr_offset_defaults_to_virt_base() {
        let g = ok(&legacy32(
            "GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xc0000000,PAE=yes",
        ));
        assert_eq!(g.paddr_offset, 0xc000_0000);
        assert_eq!(g.virt_kstart, 0xc010_0000);
        assert_eq!(g.pae, PaeMode::Yes);
    }

    #[test]
    fn legacy_numbers_octal_decimal_and_entry() {
        let mut img = legacy32(
            "LOADER=generic,XEN_VER=xen-3.0,VIRT_BASE=0,ELF_PADDR_OFFSET=010,PAE=yes,VIRT_ENTRY=3222274064",
        );
        img.loads = vec![load(0xc010_0008, 0x100, 0x3000)];
        let g = ok(&img);
        assert_eq!(g.paddr_offset, 8);
        assert_eq!(g.virt_kstart, 0xc010_0000);
        assert_eq!(g.entry, 3_222_274_064); // 0xc0100010
    }

    #[test]
    fn legacy_bad_number() {
        let e = err(&legacy32(
            "GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xc00zz,PAE=yes",
        ));
        assert!(
            matches!(
                e,
                ImageError::BadNote {
                    note: "VIRT_BASE",
                    legacy: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(format!("{e}").starts_with("__xen_guest VIRT_BASE"));
    }

    #[test]
    fn notes_take_precedence_over_legacy() {
        let img = Img {
            legacy: Some("GUEST_OS=other,XEN_VER=xen-2.0"),
            ..img64()
        };
        assert_eq!(ok(&img).notes.source, NotesSource::NoteSegments);
    }

    // --- Refusals -----------------------------------------------------------

    #[test]
    fn hypercall_page_outside_or_misaligned() {
        let e = err(&img64().note(note::HYPERCALL_PAGE, n8(0x30_0000)));
        assert!(
            matches!(
                e,
                ImageError::HypercallPageOutsideImage { va: 0x30_0000, .. }
            ),
            "{e:?}"
        );
        assert!(format!("{e}").contains("HYPERCALL_PAGE"));
        let e = err(&img64().note(note::HYPERCALL_PAGE, n8(0x1f_f000)));
        assert!(
            matches!(e, ImageError::HypercallPageOutsideImage { .. }),
            "{e:?}"
        );
        let e = err(&img64().note(note::HYPERCALL_PAGE, n8(0x20_0800)));
        assert!(
            matches!(e, ImageError::HypercallPageMisaligned { .. }),
            "{e:?}"
        );
        // The last page of the image is fine.
        assert_eq!(
            ok(&img64().note(note::HYPERCALL_PAGE, n8(0x20_2000))).hypercall_page,
            Some(0x20_2000)
        );
    }

    #[test]
    fn entry_outside_image() {
        let e = err(&img64().note(note::ENTRY, n8(0x20_3000)));
        assert!(
            matches!(
                e,
                ImageError::EntryOutsideImage {
                    entry: 0x20_3000,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(format!("{e}").contains("ENTRY"));
        let e = err(&Img {
            entry: 0x1000,
            ..img64()
        });
        assert!(
            matches!(e, ImageError::EntryOutsideImage { entry: 0x1000, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn overlapping_segments() {
        let mut img = img64();
        img.loads.push(load(0x20_1000, 0x10, 0x10));
        assert_eq!(
            err(&img),
            ImageError::OverlappingSegments {
                first: 0,
                second: 2
            }
        );
        // Touching is not overlapping; empty segments take no room.
        let mut img = img64();
        img.loads.push(load(0x20_3000, 0x10, 0x10));
        img.loads.push(load(0x20_1000, 0, 0));
        ok(&img);
    }

    #[test]
    fn segment_bounds() {
        let mut img = img64();
        img.loads[0].bad_offset = Some(1 << 40);
        assert!(matches!(
            err(&img),
            ImageError::SegmentOutsideFile { index: 0, .. }
        ));
        let mut img = img64();
        img.loads[1].memsz = 0x10;
        assert!(matches!(
            err(&img),
            ImageError::SegmentFileSizeExceedsMemSize { index: 1, .. }
        ));
        let mut img = img64();
        img.loads[1].paddr = u64::MAX - 0x100;
        assert!(matches!(
            err(&img),
            ImageError::SegmentAddressOverflow { index: 1, .. }
        ));
    }

    #[test]
    fn limits() {
        let mut img = img64();
        img.loads = (0..65)
            .map(|i| load(0x20_0000 + i * 0x1000, 0, 0x1000))
            .collect();
        assert_eq!(err(&img), ImageError::TooManyLoadSegments { count: 65 });
        let mut img = img64();
        img.loads[1].memsz = MAX_IMAGE_SPAN + 1;
        assert!(matches!(err(&img), ImageError::ImageTooLarge { .. }));
        // Sparse: small segments far apart.
        let mut img = img64();
        img.loads[1].paddr = 0x1_0000_0000;
        assert!(matches!(err(&img), ImageError::ImageTooLarge { .. }));
    }

    #[test]
    fn segments_without_rwx_are_not_loaded() {
        let mut img = img64();
        img.loads.push(Load {
            flags: 0,
            ..load(0x1000, 0x10, 0x10)
        });
        let g = ok(&img);
        assert_eq!(g.segments.len(), 2);
        assert_eq!(g.virt_kstart, 0x20_0000);
    }

    #[test]
    fn wrong_machine_or_class() {
        assert_eq!(
            err(&Img {
                machine: 40,
                ..img64()
            }),
            ImageError::WrongMachine { machine: 40 }
        );
        assert_eq!(
            err(&Img {
                machine: EM_X86_64,
                ..img32()
            }),
            ImageError::WrongClass {
                class: 1,
                machine: EM_X86_64
            }
        );
        assert_eq!(
            err(&Img {
                machine: EM_386,
                ..img64()
            }),
            ImageError::WrongClass {
                class: 2,
                machine: EM_386
            }
        );
        let mut bytes = Vec::from(build(&img64()).bytes());
        bytes[5] = 2;
        assert_eq!(
            parse(Aligned::new(&bytes).bytes()).unwrap_err(),
            ImageError::BigEndian
        );
        bytes[4] = 3;
        assert!(matches!(
            parse(Aligned::new(&bytes).bytes()),
            Err(ImageError::WrongClass {
                class: 3,
                machine: EM_X86_64
            })
        ));
        assert_eq!(parse(b"MZ\x90\x00").unwrap_err(), ImageError::NotElf);
    }

    #[test]
    fn thirty_two_bit_needs_pae() {
        let e = err(&img32().without(note::PAE_MODE));
        assert_eq!(e, ImageError::NonPaeImage { pae_mode: None });
        assert!(format!("{e}").contains("PAE_MODE"));
        let e = err(&img32()
            .without(note::PAE_MODE)
            .note(note::PAE_MODE, s("no")));
        assert_eq!(
            e,
            ImageError::NonPaeImage {
                pae_mode: Some(String::from("no"))
            }
        );
        assert_eq!(ok(&img32()).pae, PaeMode::ExtendedCr3);
        let g = ok(&img32()
            .without(note::PAE_MODE)
            .note(note::PAE_MODE, s("bimodal")));
        assert_eq!(g.notes.pae_mode, PaeMode::Bimodal);
        assert_eq!(
            g.pae,
            PaeMode::ExtendedCr3,
            "dom0_build.c treats bimodal as extended-cr3"
        );
        // 64-bit ignores it.
        assert_eq!(ok(&img64().note(note::PAE_MODE, s("no"))).pae, PaeMode::No);
    }

    #[test]
    fn thirty_two_bit_ignores_init_p2m_and_stays_below_4g() {
        let g = ok(&img32().note(note::INIT_P2M, n4(0x20_1000)));
        assert_eq!(g.p2m_base, None);
        let e = err(&img32()
            .note(note::VIRT_BASE, n8(0xffff_0000))
            .note(note::PADDR_OFFSET, n4(0)));
        assert!(
            matches!(e, ImageError::ImageOutsideAddressSpace { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn contradictory_addresses() {
        assert_eq!(
            err(&img64().note(note::PADDR_OFFSET, n8(0))),
            ImageError::PaddrOffsetWithoutVirtBase
        );
        // VIRT_BASE above the image start.
        let e = err(&img64()
            .note(note::VIRT_BASE, n8(0x40_0000))
            .note(note::PADDR_OFFSET, n8(0x40_0000)));
        assert_eq!(
            e,
            ImageError::VirtBaseAboveImage {
                virt_base: 0x40_0000,
                kstart: 0x20_0000
            }
        );
        assert!(format!("{e}").contains("VIRT_BASE"));
        // PADDR_OFFSET larger than p_paddr + VIRT_BASE: the start underflows.
        let e = err(&img64()
            .note(note::VIRT_BASE, n8(0x1000))
            .note(note::PADDR_OFFSET, n8(0x100_0000)));
        assert!(
            matches!(e, ImageError::ImageOutsideAddressSpace { .. }),
            "{e:?}"
        );
        // INIT_P2M inside the image.
        let e = err(&img64().note(note::INIT_P2M, n8(0x20_1000)));
        assert!(matches!(e, ImageError::P2mInsideImage { .. }), "{e:?}");
    }

    #[test]
    fn non_canonical_or_hypervisor_range() {
        for base in [0x0000_8000_0000_0000u64, 0xffff_8000_0000_0000] {
            let e = err(&img64()
                .note(note::VIRT_BASE, n8(base))
                .note(note::ENTRY, n8(base + 0x20_0010)));
            assert!(
                matches!(e, ImageError::ImageInReservedRange { .. }),
                "{base:#x}: {e:?}"
            );
        }
    }

    #[test]
    fn needs_xen_notes_loader_and_version() {
        let mut img = img64();
        img.notes.clear();
        assert_eq!(err(&img), ImageError::NotXenImage);
        let mut img = img64();
        img.notes = vec![(b"GNU\0", 3, n4(0))];
        assert_eq!(err(&img), ImageError::NotXenImage);
        let e = err(&img64().without(note::LOADER));
        assert!(matches!(e, ImageError::UnsupportedLoader { .. }), "{e:?}");
        assert!(format!("{e}").contains("LOADER") && format!("{e}").contains("GUEST_OS"));
        // GUEST_OS linux needs no LOADER.
        ok(&img64()
            .without(note::LOADER)
            .without(note::GUEST_OS)
            .note(note::GUEST_OS, s("linux")));
        let e = err(&img64()
            .without(note::XEN_VERSION)
            .note(note::XEN_VERSION, s("xen-2.0")));
        assert_eq!(
            e,
            ImageError::UnsupportedXenVersion {
                xen_version: String::from("xen-2.0")
            }
        );
    }

    #[test]
    fn misaligned_image_is_refused() {
        let a = build(&img64());
        let mut buf = vec![0u8; a.len + 16];
        let start = buf.as_ptr().align_offset(8) + 1;
        buf[start..start + a.len].copy_from_slice(a.bytes());
        assert!(matches!(
            parse(&buf[start..start + a.len]),
            Err(ImageError::Misaligned { .. })
        ));
    }

    // --- Loading ------------------------------------------------------------

    #[test]
    fn load_chunks_copy_and_zero() {
        let g = ok(&img64()
            .note(note::VIRT_BASE, n8(0x1000_0000))
            .note(note::ENTRY, n8(0x1020_0010)));
        let chunks: Vec<LoadChunk<'_>> = g.load_chunks().collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (
                chunks[0].guest_va,
                chunks[0].bytes.len(),
                chunks[0].zero_len
            ),
            (0x1020_0000, 0x300, 0x1d00)
        );
        assert_eq!(
            (
                chunks[1].guest_va,
                chunks[1].bytes.len(),
                chunks[1].zero_len
            ),
            (0x1020_2000, 0x80, 0xf80)
        );
        for (k, &b) in chunks[1].bytes.iter().enumerate() {
            assert_eq!(b, pattern(0x20_2000, k));
        }
    }

    // --- No input panics ------------------------------------------------------

    fn rich_images() -> Vec<Aligned> {
        let full = img64()
            .note(note::VIRT_BASE, n8(0))
            .note(note::PADDR_OFFSET, n8(0))
            .note(note::HYPERCALL_PAGE, n8(0x20_1000))
            .note(note::FEATURES, s("!writable_page_tables"))
            .note(note::SUPPORTED_FEATURES, n4(3));
        vec![
            build(&full),
            build(&Img {
                notes_in: NotesIn::SegmentAtZeroAndSection,
                ..full.clone()
            }),
            build(&img32().note(note::HYPERCALL_PAGE, n4(0x20_1000))),
            build(&legacy32(
                "GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xC0000000,HYPERCALL_PAGE=0x101,PAE=yes",
            )),
        ]
    }

    #[test]
    fn valid_fuzz_seeds_parse() {
        for a in rich_images() {
            parse(a.bytes()).unwrap();
        }
    }

    #[test]
    fn truncated_images_do_not_panic() {
        for a in rich_images() {
            for n in 0..a.len {
                // The section header table comes last: every cut loses it.
                assert!(
                    parse(&a.bytes()[..n]).is_err(),
                    "truncated to {n} bytes yet accepted"
                );
            }
        }
    }

    #[test]
    fn garbled_images_do_not_panic() {
        for a in rich_images() {
            let orig = Vec::from(a.bytes());
            for pos in 0..orig.len() {
                for val in [0x00, 0xff, 0x80, 0x7f, 0x01, orig[pos] ^ 0x04] {
                    let mut v = orig.clone();
                    v[pos] = val;
                    let _ = parse(Aligned::new(&v).bytes());
                }
            }
            // Several bytes at once, deterministic xorshift.
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for _ in 0..3000 {
                let mut v = orig.clone();
                for _ in 0..1 + next() % 8 {
                    let pos = (next() % v.len() as u64) as usize;
                    v[pos] = next() as u8;
                }
                let _ = parse(Aligned::new(&v).bytes());
            }
        }
    }

    #[test]
    fn error_messages_are_one_line() {
        let errors = [
            err(&img64().note(note::ENTRY, vec![1, 2, 3])),
            err(&Img {
                machine: 40,
                ..img64()
            }),
            err(&img32().without(note::PAE_MODE)),
            ImageError::MalformedNotes { offset: 0x40 },
            ImageError::BadHeader {
                what: "e_phoff is zero or misaligned",
            },
        ];
        for e in errors {
            let m = format!("{e}");
            assert!(!m.is_empty() && !m.contains('\n'), "{m:?}");
        }
    }
}
