//! `xen/include/public/elfnote.h`: the `XEN_ELFNOTE_*` note types a PV
//! kernel image carries in a `PT_NOTE` segment, with owner name `"Xen"`.
//!
//! Numeric notes are 4 or 8 bytes, as the note's `descsz` says; string
//! notes are NUL-terminated ASCII. How Xen's own loader reads each type is
//! in `xen/common/libelf/libelf-dominfo.c` (`note_desc[]`), mirrored by
//! [`elfnote_desc`].

/// The ELF note owner name of Xen notes.
pub const XEN_ELFNOTE_OWNER: &[u8] = b"Xen";

/// `NAME=VALUE` pair (string). Legacy; Xen's loader ignores it.
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Virtual address of the entry point (numeric). Legacy: `VIRT_ENTRY`.
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the hypercall page (numeric). Legacy:
/// `HYPERCALL_PAGE` (a page number there, not an address).
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual address where the kernel image is mapped (numeric). Default 0.
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// Offset of ELF paddr from the pseudo-physical address (numeric).
/// Default 0 (the legacy default was `VIRT_BASE`).
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Xen version the kernel works with (string).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Guest OS name (string).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Guest OS version (string).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type (string), e.g. `"generic"`.
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// PAE support, x86/32 only (string): `"yes"`, `"no"`, `"bimodal"` (or
/// `"yes,bimodal"`). `"yes"` implies extended-cr3 support.
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// Supported/required features (string): `XENFEAT_` names without the
/// prefix, separated by `|`, required ones prefixed with `!`.
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// The kernel wants its symbol table loaded (string `"yes"`/`"no"`).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest address the hypervisor hole may start at (numeric); at most
/// `HYPERVISOR_VIRT_START`. Meaningful for 32-bit guests.
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// `maddr_t`-sized mask/value pairs recognising non-present L1 entries
/// that carry valid MFNs (numeric list).
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// The guest supports cooperative suspend cancellation (numeric).
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address the initial P2M list should be mapped at instead of
/// inside the bootstrap region (numeric, x86-64 only).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// The guest can take an initrd not mapped by its initial page tables
/// (numeric): then `start_info.mod_start` is a PFN (`SIF_MOD_START_PFN`).
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Supported features as a bitmap of `XENFEAT_*` (numeric); combined with
/// the string `FEATURES` note.
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point for PVH (HVM container) boot (numeric).
/// Ignored for PV.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// PVH relocation constraints: up to three 32-bit values (alignment,
/// minimum, maximum). Added after 4.17.
pub const XEN_ELFNOTE_PHYS32_RELOC: u32 = 19;
/// The highest note type defined (Xen 4.17: `PHYS32_ENTRY` = 18).
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_RELOC;

/// Crash notes written by kexec/kdump (not in guest images).
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// Dump-core notes written by the tools (not in guest images).
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;

/// How a note's descriptor is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfnoteKind {
    /// A 4- or 8-byte little-endian number.
    Numeric,
    /// NUL-terminated ASCII.
    String,
    /// Anything else (a list, or a layout particular to the note).
    Other,
}

/// The name (as in `XEN_ELFNOTE_<name>`) and kind of note type `type_`,
/// for parsing and for error messages that name the note.
pub fn elfnote_desc(type_: u32) -> Option<(&'static str, ElfnoteKind)> {
    use ElfnoteKind::*;
    Some(match type_ {
        XEN_ELFNOTE_INFO => ("INFO", String),
        XEN_ELFNOTE_ENTRY => ("ENTRY", Numeric),
        XEN_ELFNOTE_HYPERCALL_PAGE => ("HYPERCALL_PAGE", Numeric),
        XEN_ELFNOTE_VIRT_BASE => ("VIRT_BASE", Numeric),
        XEN_ELFNOTE_PADDR_OFFSET => ("PADDR_OFFSET", Numeric),
        XEN_ELFNOTE_XEN_VERSION => ("XEN_VERSION", String),
        XEN_ELFNOTE_GUEST_OS => ("GUEST_OS", String),
        XEN_ELFNOTE_GUEST_VERSION => ("GUEST_VERSION", String),
        XEN_ELFNOTE_LOADER => ("LOADER", String),
        XEN_ELFNOTE_PAE_MODE => ("PAE_MODE", String),
        XEN_ELFNOTE_FEATURES => ("FEATURES", String),
        XEN_ELFNOTE_BSD_SYMTAB => ("BSD_SYMTAB", String),
        XEN_ELFNOTE_HV_START_LOW => ("HV_START_LOW", Numeric),
        XEN_ELFNOTE_L1_MFN_VALID => ("L1_MFN_VALID", Other),
        XEN_ELFNOTE_SUSPEND_CANCEL => ("SUSPEND_CANCEL", Numeric),
        XEN_ELFNOTE_INIT_P2M => ("INIT_P2M", Numeric),
        XEN_ELFNOTE_MOD_START_PFN => ("MOD_START_PFN", Numeric),
        XEN_ELFNOTE_SUPPORTED_FEATURES => ("SUPPORTED_FEATURES", Numeric),
        XEN_ELFNOTE_PHYS32_ENTRY => ("PHYS32_ENTRY", Numeric),
        XEN_ELFNOTE_PHYS32_RELOC => ("PHYS32_RELOC", Other),
        XEN_ELFNOTE_CRASH_INFO => ("CRASH_INFO", Other),
        XEN_ELFNOTE_CRASH_REGS => ("CRASH_REGS", Other),
        XEN_ELFNOTE_DUMPCORE_NONE => ("DUMPCORE_NONE", Other),
        XEN_ELFNOTE_DUMPCORE_HEADER => ("DUMPCORE_HEADER", Other),
        XEN_ELFNOTE_DUMPCORE_XEN_VERSION => ("DUMPCORE_XEN_VERSION", Other),
        XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION => ("DUMPCORE_FORMAT_VERSION", Other),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_note_has_a_name() {
        for t in 0..=XEN_ELFNOTE_MAX {
            assert!(elfnote_desc(t).is_some(), "note {t}");
        }
        assert_eq!(elfnote_desc(XEN_ELFNOTE_MAX + 1), None);
        assert_eq!(
            elfnote_desc(XEN_ELFNOTE_ENTRY),
            Some(("ENTRY", ElfnoteKind::Numeric))
        );
        assert_eq!(
            elfnote_desc(XEN_ELFNOTE_FEATURES).unwrap().1,
            ElfnoteKind::String
        );
    }
}
