//! One `BootInfo` from either loader.
//!
//! QEMU's `-kernel` speaks multiboot1; GRUB's `multiboot2` command speaks
//! multiboot2. Both hand us, in 32-bit physical memory, a memory map, our
//! command line and the modules (one guest image each). We copy what we
//! need into a fixed-size `BootInfo` before any allocator exists, so the
//! loader's structures can be forgotten afterwards (modules themselves stay
//! reserved until their domains are built).

use core::fmt;

pub const MULTIBOOT1_MAGIC: u32 = 0x2BAD_B002;
pub const MULTIBOOT2_MAGIC: u32 = 0x36D7_6289;

pub const MAX_REGIONS: usize = 64;

const MB2_TAG_FRAMEBUFFER: u32 = 8;
const MB2_TAG_EFI_MMAP: u32 = 17;
pub const MAX_MODULES: usize = 128;

/// A string copied out of loader memory, truncated to `N` bytes at a UTF-8
/// boundary.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    pub const fn new() -> Self {
        FixedStr {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut s = Self::new();
        // Invalid UTF-8 becomes '?', so later code only sees str.
        let mut n = 0;
        for chunk in bytes.utf8_chunks() {
            for piece in [
                chunk.valid().as_bytes(),
                if chunk.invalid().is_empty() {
                    b""
                } else {
                    b"?"
                },
            ] {
                let take = piece.len().min(N - n);
                s.buf[n..n + take].copy_from_slice(&piece[..take]);
                n += take;
            }
        }
        // Truncation may have split a character: back off to a boundary.
        while core::str::from_utf8(&s.buf[..n]).is_err() {
            n -= 1;
        }
        s.len = n;
        s
    }

    pub fn as_str(&self) -> &str {
        // Only ever filled with valid UTF-8 by from_bytes.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

impl RegionKind {
    /// The e820 / multiboot type numbers; anything unknown is reserved.
    pub fn from_e820(t: u32) -> RegionKind {
        match t {
            1 => RegionKind::Usable,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Defective,
            _ => RegionKind::Reserved,
        }
    }

    /// The e820 type (1 RAM, 2 reserved, 3 ACPI data, 4 ACPI NVS, 5 bad).
    pub fn e820_type(self) -> u32 {
        match self {
            RegionKind::Usable => 1,
            RegionKind::Reserved => 2,
            RegionKind::AcpiReclaimable => 3,
            RegionKind::AcpiNvs => 4,
            RegionKind::Defective => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Usable => "usable",
            RegionKind::Reserved => "reserved",
            RegionKind::AcpiReclaimable => "ACPI data",
            RegionKind::AcpiNvs => "ACPI NVS",
            RegionKind::Defective => "defective",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Module {
    /// Physical range `[start, end)` of the module's bytes.
    pub start: u64,
    pub end: u64,
    /// The module's string as the loader gave it (with the path first
    /// unless the loader is GRUB 2: see [`cmdline_cook`]).
    pub cmdline: FixedStr<256>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    Multiboot1,
    Multiboot2,
}

#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    pub loader: Loader,
    pub loader_name: FixedStr<64>,
    /// The hypervisor's own options (no kernel path in front).
    pub cmdline: FixedStr<1024>,
    regions: [MemRegion; MAX_REGIONS],
    nregions: usize,
    modules: [Module; MAX_MODULES],
    nmodules: usize,
    /// Entries that did not fit and were left out (reported in the banner).
    pub dropped_regions: usize,
    pub dropped_modules: usize,
    /// Physical range of the loader's information block itself.
    pub info_range: (u64, u64),
    /// The ACPI RSDP the loader copied (multiboot2's ACPI new/old tags;
    /// under UEFI the only way to find it), checksum checked.
    pub acpi_rsdp: Option<Rsdp>,
    /// The framebuffer the loader set up (multiboot2 tag 8), when it is a
    /// linear RGB one that [`Framebuffer::from_tag`] accepts.
    pub framebuffer: Option<Framebuffer>,
    /// Why a framebuffer tag was not taken (reported at boot).
    pub framebuffer_refused: Option<&'static str>,
    /// The memory map came from the EFI memory map tag (17): the loader
    /// gave no multiboot2 memory map (6).
    pub efi_memory_map: bool,
}

/// A linear direct-colour framebuffer, as the multiboot2 framebuffer tag
/// describes it (type 1, "direct RGB").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framebuffer {
    /// Physical address of the first pixel.
    pub addr: u64,
    /// Bytes from one row to the next.
    pub pitch: u32,
    pub width: u32,
    pub height: u32,
    /// Bits per pixel: 15, 16, 24 or 32.
    pub bpp: u8,
    /// Bit position and size of each colour field in a pixel.
    pub red: (u8, u8),
    pub green: (u8, u8),
    pub blue: (u8, u8),
}

impl Framebuffer {
    /// Bytes the visible rows take.
    pub fn size(&self) -> u64 {
        self.pitch as u64 * self.height as u64
    }

    /// Reads the body of a framebuffer tag (everything after the 8-byte
    /// tag header). Only a sane linear RGB framebuffer is taken: indexed
    /// and EGA text ones, and any field that does not add up, are refused
    /// with the reason.
    pub fn from_tag(b: &[u8]) -> Result<Framebuffer, &'static str> {
        if b.len() < 22 {
            return Err("framebuffer tag too short");
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let addr = u32_at(0) as u64 | (u32_at(4) as u64) << 32;
        let (pitch, width, height, bpp, typ) = (u32_at(8), u32_at(12), u32_at(16), b[20], b[21]);
        match typ {
            1 => {}
            0 => return Err("an indexed (palette) framebuffer"),
            2 => return Err("an EGA text-mode framebuffer"),
            _ => return Err("a framebuffer of unknown type"),
        }
        if b.len() < 30 {
            return Err("framebuffer tag too short for its colour fields");
        }
        let field = |i: usize| (b[24 + 2 * i], b[25 + 2 * i]);
        let fb = Framebuffer {
            addr,
            pitch,
            width,
            height,
            bpp,
            red: field(0),
            green: field(1),
            blue: field(2),
        };
        if !matches!(bpp, 15 | 16 | 24 | 32) {
            return Err("unsupported bits per pixel");
        }
        if width == 0 || height == 0 || addr == 0 {
            return Err("an empty framebuffer");
        }
        if (pitch as u64) < (width as u64 * bpp.div_ceil(8) as u64) {
            return Err("pitch smaller than a row of pixels");
        }
        if addr.checked_add(fb.size()).is_none() {
            return Err("framebuffer wraps around the address space");
        }
        for (pos, size) in [fb.red, fb.green, fb.blue] {
            if size == 0 || size > 8 || pos as u32 + size as u32 > bpp as u32 {
                return Err("colour fields outside the pixel");
            }
        }
        Ok(fb)
    }
}

/// Multiboot2 tags by number, from the raw information block `b` (its
/// 8-byte fixed part first): `(type, body)` where the body follows the
/// tag's 8-byte header. Bounds are checked; the walk stops at the end
/// tag or at the first tag that does not fit.
pub fn mb2_raw_tags(b: &[u8]) -> impl Iterator<Item = (u32, &[u8])> + Clone {
    let total = b
        .get(..4)
        .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize)
        .min(b.len());
    let mut off = 8;
    core::iter::from_fn(move || {
        let h = b.get(off..off + 8).filter(|_| off + 8 <= total)?;
        let typ = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if typ == 0 || size < 8 || off + size > total {
            return None;
        }
        let body = &b[off + 8..off + size];
        off += size.next_multiple_of(8);
        Some((typ, body))
    })
}

/// The EFI memory map tag's body (descriptor size, version, descriptors)
/// as regions, in UEFI 2.10 7.2 type numbers: memory the boot services
/// held is free once they have exited, which GRUB does before entering us.
fn efi_regions(body: &[u8], mut push: impl FnMut(u64, u64, RegionKind)) {
    if body.len() < 8 {
        return;
    }
    let desc_size = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if desc_size < 40 {
        return;
    }
    for d in body[8..].chunks_exact(desc_size) {
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let typ = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        let kind = match typ {
            // loader code/data, boot services code/data, conventional
            1..=4 | 7 => RegionKind::Usable,
            8 => RegionKind::Defective,
            9 => RegionKind::AcpiReclaimable,
            10 => RegionKind::AcpiNvs,
            _ => RegionKind::Reserved,
        };
        if let Some(len) = u64_at(24).checked_mul(4096) {
            push(u64_at(8), len, kind);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    BadMagic(u32),
    /// A loader structure points at memory we cannot read.
    Unreadable {
        what: &'static str,
        addr: u64,
    },
    NoMemoryMap,
    Multiboot2(&'static str),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::BadMagic(m) => write!(f, "not started by a multiboot loader (magic {m:#x})"),
            BootError::Unreadable { what, addr } => {
                write!(f, "boot information: {what} at {addr:#x} is unreadable")
            }
            BootError::NoMemoryMap => write!(f, "the boot loader gave no memory map"),
            BootError::Multiboot2(why) => write!(f, "multiboot2 information: {why}"),
        }
    }
}

/// Is the loader GRUB 2? Xen's `loader_is_grub2`: GRUB legacy calls
/// itself "GNU GRUB 0.97", GRUB 2 "GRUB 2.06" (1.xx before 2.00).
pub fn loader_is_grub2(loader_name: &str) -> bool {
    loader_name
        .find("GRUB ")
        .is_some_and(|i| loader_name.as_bytes().get(i + 5) != Some(&b'0'))
}

/// A command line as the loader gave it, without the image's path where
/// the loader puts one first (Xen's `cmdline_cook`): GRUB 2 does not (its
/// `multiboot2`/`module2` pass only the words after the path); QEMU's
/// multiboot1 `-kernel`/`-initrd`, GRUB legacy and loaders without a name
/// do.
pub fn cmdline_cook<'a>(line: &'a str, loader_name: &str) -> &'a str {
    let line = line.trim_start();
    if loader_is_grub2(loader_name) {
        return line;
    }
    line.split_once(|c: char| c.is_ascii_whitespace())
        .map_or("", |(_, rest)| rest.trim_start())
}

/// The RSDP's contents (ACPI 6.5, 5.2.5.3): where the root tables are.
/// Here, not in `firmware::acpi` (which parses it), because a loader's
/// tags carry it too; `firmware` uses this module, not the other way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    pub revision: u8,
    pub oem_id: [u8; 6],
    pub rsdt: u32,
    /// The XSDT (revision 2 and later, when not 0).
    pub xsdt: Option<u64>,
}

/// Read access to physical memory while the loader's identity mapping is
/// still in place (and to a plain buffer in unit tests).
pub trait PhysMem {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]>;

    fn u32_at(&self, addr: u64) -> Option<u32> {
        self.read(addr, 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let lo = self.u32_at(addr)? as u64;
        let hi = self.u32_at(addr.checked_add(4)?)? as u64;
        Some(lo | hi << 32)
    }

    /// A NUL-terminated string of at most `max` bytes.
    fn c_str(&self, addr: u64, max: usize) -> Option<&[u8]> {
        let mut len = 0;
        while len < max {
            if *self.read(addr.checked_add(len as u64)?, 1)?.first()? == 0 {
                break;
            }
            len += 1;
        }
        self.read(addr, len)
    }
}

impl BootInfo {
    fn empty(loader: Loader) -> BootInfo {
        BootInfo {
            loader,
            loader_name: FixedStr::new(),
            cmdline: FixedStr::new(),
            regions: [MemRegion {
                start: 0,
                end: 0,
                kind: RegionKind::Reserved,
            }; MAX_REGIONS],
            nregions: 0,
            modules: [Module::default(); MAX_MODULES],
            nmodules: 0,
            dropped_regions: 0,
            dropped_modules: 0,
            acpi_rsdp: None,
            framebuffer: None,
            framebuffer_refused: None,
            efi_memory_map: false,
            info_range: (0, 0),
        }
    }

    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..self.nregions]
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.nmodules]
    }

    fn push_region(&mut self, start: u64, len: u64, kind: RegionKind) {
        let Some(end) = start.checked_add(len) else {
            self.dropped_regions += 1;
            return;
        };
        if len == 0 {
            return;
        }
        if self.nregions == MAX_REGIONS {
            self.dropped_regions += 1;
            return;
        }
        self.regions[self.nregions] = MemRegion { start, end, kind };
        self.nregions += 1;
    }

    fn push_module(&mut self, start: u64, end: u64, cmdline: &[u8]) {
        if self.nmodules == MAX_MODULES || end < start {
            self.dropped_modules += 1;
            return;
        }
        self.modules[self.nmodules] = Module {
            start,
            end,
            cmdline: FixedStr::from_bytes(cmdline),
        };
        self.nmodules += 1;
    }

    /// Parse multiboot1 information at physical `info`.
    ///
    /// QEMU's multiboot1 command line starts with the kernel's own path
    /// (like argv[0]); it is dropped unless the loader is GRUB 2.
    pub fn from_multiboot1(info: u64, mem: &impl PhysMem) -> Result<BootInfo, BootError> {
        let unreadable = |what| BootError::Unreadable { what, addr: info };
        let mut bi = BootInfo::empty(Loader::Multiboot1);
        let flags = mem.u32_at(info).ok_or(unreadable("flags"))?;
        bi.info_range = (info, info + 88);

        if flags & (1 << 2) != 0 {
            let p = mem.u32_at(info + 16).ok_or(unreadable("cmdline pointer"))? as u64;
            let s = mem.c_str(p, 4096).ok_or(BootError::Unreadable {
                what: "command line",
                addr: p,
            })?;
            bi.cmdline = FixedStr::from_bytes(s);
        }
        if flags & (1 << 9) != 0 {
            let p = mem
                .u32_at(info + 64)
                .ok_or(unreadable("loader name pointer"))? as u64;
            if let Some(s) = mem.c_str(p, 64) {
                bi.loader_name = FixedStr::from_bytes(s);
            }
        }
        if flags & (1 << 3) != 0 {
            let count = mem.u32_at(info + 20).ok_or(unreadable("module count"))?;
            let base = mem.u32_at(info + 24).ok_or(unreadable("module list"))? as u64;
            for i in 0..count as u64 {
                let e = base + i * 16;
                let what = BootError::Unreadable {
                    what: "module entry",
                    addr: e,
                };
                let start = mem.u32_at(e).ok_or(what)? as u64;
                let end = mem.u32_at(e + 4).ok_or(what)? as u64;
                let sp = mem.u32_at(e + 8).ok_or(what)? as u64;
                let s = if sp == 0 {
                    &b""[..]
                } else {
                    mem.c_str(sp, 4096).unwrap_or(b"")
                };
                bi.push_module(start, end, s);
            }
        }
        if flags & (1 << 6) != 0 {
            let len = mem
                .u32_at(info + 44)
                .ok_or(unreadable("memory map length"))? as u64;
            let base = mem.u32_at(info + 48).ok_or(unreadable("memory map"))? as u64;
            let mut p = base;
            // Each entry: size (of the rest), base u64, length u64, type u32.
            while p + 24 <= base + len {
                let what = BootError::Unreadable {
                    what: "memory map entry",
                    addr: p,
                };
                let size = mem.u32_at(p).ok_or(what)? as u64;
                let start = mem.u64_at(p + 4).ok_or(what)?;
                let length = mem.u64_at(p + 12).ok_or(what)?;
                let typ = mem.u32_at(p + 20).ok_or(what)?;
                bi.push_region(start, length, RegionKind::from_e820(typ));
                p += size.max(20) + 4;
            }
        } else if flags & 1 != 0 {
            // Only mem_lower/mem_upper (KiB below 1 MiB / above 1 MiB).
            let lower = mem.u32_at(info + 4).ok_or(unreadable("mem_lower"))? as u64;
            let upper = mem.u32_at(info + 8).ok_or(unreadable("mem_upper"))? as u64;
            bi.push_region(0, lower * 1024, RegionKind::Usable);
            bi.push_region(1 << 20, upper * 1024, RegionKind::Usable);
        }
        if bi.nregions == 0 {
            return Err(BootError::NoMemoryMap);
        }
        bi.cook_cmdline();
        Ok(bi)
    }

    /// Drop the hypervisor's own path from its command line where the
    /// loader puts it there (Xen's `cmdline_cook`).
    fn cook_cmdline(&mut self) {
        let cooked = cmdline_cook(self.cmdline.as_str(), self.loader_name.as_str()).trim();
        self.cmdline = FixedStr::from_bytes(cooked.as_bytes());
    }

    /// Whether module command lines start with the module's path (and the
    /// hypervisor's with its own): everything but GRUB 2 puts it there.
    pub fn lines_name_the_image(&self) -> bool {
        !loader_is_grub2(self.loader_name.as_str())
    }

    /// Parse the multiboot2 information block `mbi` (what
    /// `mm::boot::multiboot2` made of `bytes`, the block's raw bytes).
    pub fn from_multiboot2(
        mbi: &multiboot2::BootInformation<'_>,
        bytes: &[u8],
    ) -> Result<BootInfo, BootError> {
        use multiboot2::MemoryAreaType;
        let mut bi = BootInfo::empty(Loader::Multiboot2);
        bi.info_range = (mbi.start_address() as u64, mbi.end_address() as u64);
        // The tags the crate reads with asserts (a framebuffer palette, the
        // EFI descriptors) are read here from the raw bytes instead.
        let raw = mb2_raw_tags(bytes);
        if let Some(c) = mbi.command_line_tag().and_then(|t| t.cmdline().ok()) {
            bi.cmdline = FixedStr::from_bytes(c.as_bytes());
        }
        if let Some(n) = mbi.boot_loader_name_tag().and_then(|t| t.name().ok()) {
            bi.loader_name = FixedStr::from_bytes(n.as_bytes());
        }
        for m in mbi.module_tags() {
            let s = m.cmdline().unwrap_or("");
            bi.push_module(
                m.start_address() as u64,
                m.end_address() as u64,
                s.as_bytes(),
            );
        }
        if let Some(mm) = mbi.memory_map_tag() {
            for a in mm.memory_areas() {
                let kind = match a.typ() {
                    MemoryAreaType::Available => RegionKind::Usable,
                    MemoryAreaType::AcpiAvailable => RegionKind::AcpiReclaimable,
                    MemoryAreaType::ReservedHibernate => RegionKind::AcpiNvs,
                    MemoryAreaType::Defective => RegionKind::Defective,
                    _ => RegionKind::Reserved,
                };
                bi.push_region(a.start_address(), a.size(), kind);
            }
        } else if let Some((_, body)) = raw.clone().find(|&(t, _)| t == MB2_TAG_EFI_MMAP) {
            efi_regions(body, |start, len, kind| bi.push_region(start, len, kind));
            bi.efi_memory_map = true;
        } else if let Some(b) = mbi.basic_memory_info_tag() {
            bi.push_region(0, b.memory_lower() as u64 * 1024, RegionKind::Usable);
            bi.push_region(1 << 20, b.memory_upper() as u64 * 1024, RegionKind::Usable);
        }
        if bi.nregions == 0 {
            return Err(BootError::NoMemoryMap);
        }
        bi.acpi_rsdp = Self::rsdp_from_tags(mbi);
        if let Some((_, body)) = raw.clone().find(|&(t, _)| t == MB2_TAG_FRAMEBUFFER) {
            match Framebuffer::from_tag(body) {
                Ok(fb) => bi.framebuffer = Some(fb),
                Err(why) => bi.framebuffer_refused = Some(why),
            }
        }
        bi.cook_cmdline();
        Ok(bi)
    }

    /// The RSDP from the ACPI old (v1) and new (v2) tags, their
    /// checksums checked: the XSDT from v2, the RSDT from v1 (the crate
    /// reads no RSDT address out of a v2 tag).
    fn rsdp_from_tags(mbi: &multiboot2::BootInformation) -> Option<Rsdp> {
        let oem = |s: Result<&str, core::str::Utf8Error>| {
            let mut o = [b' '; 6];
            let s = s.unwrap_or("");
            let n = s.len().min(6);
            o[..n].copy_from_slice(&s.as_bytes()[..n]);
            o
        };
        let v1 = mbi.rsdp_v1_tag().filter(|t| t.checksum_is_valid());
        let v2 = mbi.rsdp_v2_tag().filter(|t| t.checksum_is_valid());
        match (v1, v2) {
            (_, Some(t2)) => Some(Rsdp {
                revision: t2.revision(),
                oem_id: oem(t2.oem_id()),
                rsdt: v1.map_or(0, |t| t.rsdt_address() as u32),
                xsdt: Some(t2.xsdt_address() as u64).filter(|&a| a != 0),
            }),
            (Some(t1), None) => Some(Rsdp {
                revision: t1.revision(),
                oem_id: oem(t1.oem_id()),
                rsdt: t1.rsdt_address() as u32,
                xsdt: None,
            }),
            (None, None) => None,
        }
    }

    /// The end of the highest usable RAM.
    pub fn max_usable(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .map(|r| r.end)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multiboot2 block's bytes parsed, as the boot does (`start.rs`).
    fn mb2(bytes: &[u8]) -> BootInfo {
        let mbi = crate::mm::boot::multiboot2(bytes).unwrap();
        BootInfo::from_multiboot2(&mbi, bytes).unwrap()
    }

    /// Physical memory for tests: a buffer that starts at `base`.
    struct Buf {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysMem for Buf {
        fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
            let off = addr.checked_sub(self.base)? as usize;
            self.bytes.get(off..off.checked_add(len)?)
        }
    }

    impl Buf {
        fn put(&mut self, addr: u64, data: &[u8]) {
            let off = (addr - self.base) as usize;
            self.bytes[off..off + data.len()].copy_from_slice(data);
        }
        fn put32(&mut self, addr: u64, v: u32) {
            self.put(addr, &v.to_le_bytes());
        }
        fn put64(&mut self, addr: u64, v: u64) {
            self.put(addr, &v.to_le_bytes());
        }
    }

    fn mb1_image() -> Buf {
        let mut m = Buf {
            base: 0x9000,
            bytes: vec![0; 0x1000],
        };
        let info = 0x9000;
        m.put32(info, (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9));
        m.put32(info + 16, 0x9100);
        m.put(0x9100, b"/path/ringvisor.elf loglvl=debug selftest=panic\0");
        m.put32(info + 64, 0x9180);
        m.put(0x9180, b"qemu\0");
        m.put32(info + 20, 2);
        m.put32(info + 24, 0x9200);
        m.put32(0x9200, 0x200000);
        m.put32(0x9204, 0x201000);
        m.put32(0x9208, 0x9300);
        m.put32(0x9210, 0x300000);
        m.put32(0x9214, 0x300800);
        m.put32(0x9218, 0);
        m.put(0x9300, b"guest.elf rv.mem=64M -- hello\0");
        m.put32(info + 44, 48);
        m.put32(info + 48, 0x9400);
        m.put32(0x9400, 20);
        m.put64(0x9404, 0);
        m.put64(0x940c, 0x9fc00);
        m.put32(0x9414, 1);
        m.put32(0x9418, 20);
        m.put64(0x941c, 0x100000);
        m.put64(0x9424, 0x7ee0000);
        m.put32(0x942c, 1);
        m
    }

    #[test]
    fn multiboot1() {
        let m = mb1_image();
        let bi = BootInfo::from_multiboot1(0x9000, &m).unwrap();
        assert_eq!(bi.cmdline.as_str(), "loglvl=debug selftest=panic");
        assert_eq!(bi.loader_name.as_str(), "qemu");
        assert_eq!(bi.modules().len(), 2);
        assert_eq!(bi.modules()[0].start, 0x200000);
        assert_eq!(bi.modules()[0].end, 0x201000);
        assert_eq!(
            bi.modules()[0].cmdline.as_str(),
            "guest.elf rv.mem=64M -- hello"
        );
        assert_eq!(bi.modules()[1].cmdline.as_str(), "");
        assert_eq!(
            bi.regions(),
            &[
                MemRegion {
                    start: 0,
                    end: 0x9fc00,
                    kind: RegionKind::Usable
                },
                MemRegion {
                    start: 0x100000,
                    end: 0x7fe0000,
                    kind: RegionKind::Usable
                },
            ]
        );
        assert_eq!(bi.max_usable(), 0x7fe0000);
    }

    #[test]
    fn multiboot1_kernel_path_only() {
        let mut m = mb1_image();
        m.put(0x9100, b"ringvisor.elf\0");
        let bi = BootInfo::from_multiboot1(0x9000, &m).unwrap();
        assert_eq!(bi.cmdline.as_str(), "");
    }

    #[test]
    fn multiboot1_bad_pointers_are_errors_not_panics() {
        let mut m = mb1_image();
        m.put32(0x9000 + 24, 0xdead_0000);
        assert_eq!(
            BootInfo::from_multiboot1(0x9000, &m).unwrap_err(),
            BootError::Unreadable {
                what: "module entry",
                addr: 0xdead_0000
            }
        );
        let m = mb1_image();
        assert!(BootInfo::from_multiboot1(0x1234_5678, &m).is_err());
    }

    #[test]
    fn multiboot1_without_map() {
        let mut m = mb1_image();
        m.put32(0x9000, 0);
        assert_eq!(
            BootInfo::from_multiboot1(0x9000, &m).unwrap_err(),
            BootError::NoMemoryMap
        );
    }

    #[test]
    fn multiboot2() {
        use multiboot2::{
            BootLoaderNameTag, Builder, CommandLineTag, MaybeDynSized, MemoryArea, MemoryAreaType,
            MemoryMapTag, ModuleTag,
        };
        let mbi = Builder::new()
            .cmdline(CommandLineTag::new("loglvl=warn"))
            .bootloader(BootLoaderNameTag::new("GRUB 2.06-13+deb12u1"))
            .add_module(ModuleTag::new(0x400000, 0x401000, "/boot/g.elf -- x"))
            .mmap(MemoryMapTag::new(&[
                MemoryArea::new(0, 0x9f000, MemoryAreaType::Available),
                MemoryArea::new(0xf0000, 0x10000, MemoryAreaType::Reserved),
                MemoryArea::new(0x100000, 0x1000_0000, MemoryAreaType::Available),
            ]))
            .build();
        let bi = mb2(mbi.as_bytes());
        assert_eq!(bi.loader, Loader::Multiboot2);
        assert_eq!(bi.cmdline.as_str(), "loglvl=warn");
        assert_eq!(bi.modules().len(), 1);
        assert_eq!(bi.modules()[0].cmdline.as_str(), "/boot/g.elf -- x");
        assert_eq!(bi.regions().len(), 3);
        assert_eq!(bi.regions()[1].kind, RegionKind::Reserved);
        assert_eq!(bi.max_usable(), 0x1010_0000);
        assert_eq!(bi.acpi_rsdp, None);
    }

    #[test]
    fn multiboot2_acpi_tags_give_the_rsdp() {
        use multiboot2::{
            Builder, MaybeDynSized, MemoryArea, MemoryAreaType, MemoryMapTag, RsdpV1Tag, RsdpV2Tag,
        };
        let mmap = || MemoryMapTag::new(&[MemoryArea::new(0, 0x9f000, MemoryAreaType::Available)]);
        let v1 = RsdpV1Tag::new(*b"BOCHS ", 0, 0x07fe_1234);
        let v2 = RsdpV2Tag::new(*b"OVMF  ", 2, 0x07fe_1234, 36, 0x07fe_00e8);
        let parse = |b: Builder| {
            let mbi = b.build();
            mb2(mbi.as_bytes())
        };
        let old = parse(Builder::new().mmap(mmap()).rsdpv1(v1))
            .acpi_rsdp
            .unwrap();
        assert_eq!(
            (old.rsdt, old.xsdt, &old.oem_id),
            (0x07fe_1234, None, b"BOCHS ")
        );
        let both = parse(Builder::new().mmap(mmap()).rsdpv1(v1).rsdpv2(v2))
            .acpi_rsdp
            .unwrap();
        assert_eq!(
            (both.revision, both.rsdt, both.xsdt),
            (2, 0x07fe_1234, Some(0x07fe_00e8))
        );
        assert_eq!(&both.oem_id, b"OVMF  ");
        let only_v2 = parse(Builder::new().mmap(mmap()).rsdpv2(v2))
            .acpi_rsdp
            .unwrap();
        assert_eq!((only_v2.rsdt, only_v2.xsdt), (0, Some(0x07fe_00e8)));
    }

    /// One EFI memory descriptor (UEFI 2.10 7.2), 48 bytes as OVMF's.
    fn efi_desc(typ: u32, start: u64, pages: u64) -> Vec<u8> {
        let mut d = vec![0u8; 48];
        d[0..4].copy_from_slice(&typ.to_le_bytes());
        d[8..16].copy_from_slice(&start.to_le_bytes());
        d[24..32].copy_from_slice(&pages.to_le_bytes());
        d
    }

    /// A framebuffer tag body: address, pitch, width, height, bpp, type,
    /// reserved, then the colour fields.
    fn fb_body(typ: u8, bpp: u8, pitch: u32, fields: [u8; 6]) -> Vec<u8> {
        let mut b = 0x8000_0000u64.to_le_bytes().to_vec();
        for v in [pitch, 800, 600] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[bpp, typ, 0, 0]);
        b.extend_from_slice(&fields);
        b
    }

    #[test]
    fn framebuffer_tag_taken_only_when_linear_rgb_and_sane() {
        let xrgb = [16, 8, 8, 8, 0, 8];
        let fb = Framebuffer::from_tag(&fb_body(1, 32, 3200, xrgb)).unwrap();
        assert_eq!(
            (fb.addr, fb.width, fb.height, fb.bpp),
            (0x8000_0000, 800, 600, 32)
        );
        assert_eq!((fb.red, fb.green, fb.blue), ((16, 8), (8, 8), (0, 8)));
        assert_eq!(fb.size(), 3200 * 600);
        assert!(Framebuffer::from_tag(&fb_body(0, 8, 800, xrgb)).is_err());
        assert!(Framebuffer::from_tag(&fb_body(2, 16, 160, xrgb)).is_err());
        assert!(Framebuffer::from_tag(&fb_body(1, 32, 100, xrgb)).is_err());
        assert!(Framebuffer::from_tag(&fb_body(1, 12, 3200, xrgb)).is_err());
        assert!(Framebuffer::from_tag(&fb_body(1, 32, 3200, [30, 8, 8, 8, 0, 8])).is_err());
        for n in 0..30 {
            assert!(Framebuffer::from_tag(&fb_body(1, 32, 3200, xrgb)[..n]).is_err());
        }
    }

    #[test]
    fn multiboot2_uefi_framebuffer_and_efi_memory_map() {
        use multiboot2::{
            Builder, EFIMemoryMapTag, FramebufferField, FramebufferTag, FramebufferType,
            MaybeDynSized,
        };
        let field = |position, size| FramebufferField { position, size };
        let mut descs = efi_desc(7, 0x10_0000, 0x100);
        descs.extend(efi_desc(3, 0x20_0000, 0x10));
        descs.extend(efi_desc(9, 0x7f00_0000, 2));
        descs.extend(efi_desc(11, 0xffe0_0000, 0x200));
        let mbi = Builder::new()
            .framebuffer(FramebufferTag::new(
                0x8000_0000,
                4096,
                1024,
                768,
                32,
                FramebufferType::RGB {
                    red: field(16, 8),
                    green: field(8, 8),
                    blue: field(0, 8),
                },
            ))
            .efi_mmap(EFIMemoryMapTag::new_from_map(48, 1, &descs))
            .build();
        let bi = mb2(mbi.as_bytes());
        assert!(bi.efi_memory_map);
        let kinds: Vec<(u64, u64, RegionKind)> = bi
            .regions()
            .iter()
            .map(|r| (r.start, r.end, r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (0x10_0000, 0x20_0000, RegionKind::Usable),
                (0x20_0000, 0x21_0000, RegionKind::Usable),
                (0x7f00_0000, 0x7f00_2000, RegionKind::AcpiReclaimable),
                (0xffe0_0000, 0x1_0000_0000, RegionKind::Reserved),
            ]
        );
        let fb = bi.framebuffer.unwrap();
        assert_eq!(
            (fb.width, fb.height, fb.pitch, fb.bpp),
            (1024, 768, 4096, 32)
        );
        assert_eq!(bi.framebuffer_refused, None);
    }

    #[test]
    fn raw_tag_walk_stops_at_bad_sizes() {
        // total 32: one tag of type 5 (size 12), padded, then the end tag.
        let mut b = vec![0u8; 32];
        b[0] = 32;
        b[8] = 5;
        b[12] = 12;
        b[16..20].copy_from_slice(&[1, 2, 3, 4]);
        b[24] = 0;
        b[28] = 8;
        let tags: Vec<(u32, Vec<u8>)> = mb2_raw_tags(&b).map(|(t, x)| (t, x.to_vec())).collect();
        assert_eq!(tags, [(5, vec![1, 2, 3, 4])]);
        // A tag claiming to run past the block ends the walk.
        b[12] = 200;
        assert_eq!(mb2_raw_tags(&b).count(), 0);
        // A total size beyond the buffer is clamped.
        b[0] = 0xff;
        b[1] = 0xff;
        assert_eq!(mb2_raw_tags(&b).count(), 0);
        assert_eq!(mb2_raw_tags(&[]).count(), 0);
    }

    #[test]
    fn loaders_and_image_paths_as_xen() {
        for grub2 in ["GRUB 2.06", "GRUB 2.06-13+deb12u1", "GRUB 1.99"] {
            assert!(loader_is_grub2(grub2), "{grub2}");
            assert_eq!(cmdline_cook("  console=hvc0 x", grub2), "console=hvc0 x");
        }
        for other in ["GNU GRUB 0.97", "qemu", "", "unknown", "GRUB 0.97"] {
            assert!(!loader_is_grub2(other), "{other}");
            assert_eq!(
                cmdline_cook(" /boot/vmlinuz  console=hvc0 x", other),
                "console=hvc0 x"
            );
            assert_eq!(cmdline_cook("/boot/vmlinuz", other), "");
        }
    }

    #[test]
    fn multiboot1_under_grub2_keeps_its_first_word() {
        let mut m = mb1_image();
        m.put(0x9180, b"GRUB 2.06\0");
        m.put(0x9100, b"loglvl=debug selftest=panic\0");
        let bi = BootInfo::from_multiboot1(0x9000, &m).unwrap();
        assert_eq!(bi.cmdline.as_str(), "loglvl=debug selftest=panic");
        assert!(!bi.lines_name_the_image());
        assert!(BootInfo::from_multiboot1(0x9000, &mb1_image())
            .unwrap()
            .lines_name_the_image());
    }

    #[test]
    fn fixed_str_truncates_at_char_boundary() {
        let s = FixedStr::<4>::from_bytes("abcé".as_bytes());
        assert_eq!(s.as_str(), "abc");
        let s = FixedStr::<8>::from_bytes(b"a\xffb");
        assert_eq!(s.as_str(), "a?b");
    }
}
