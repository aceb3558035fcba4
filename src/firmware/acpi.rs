//! ACPI tables: finding the RSDP, walking the RSDT/XSDT to a table by its
//! signature, and reading the MADT's list of CPUs.
//!
//! The one place the hypervisor reads firmware tables, so every user (SMP
//! bring-up here; the FADT, HPET and S5 for power-off and timers) finds
//! them the same way. Pure logic over [`PhysMem`]: it builds and is
//! tested on the host, and on the machine it reads through the direct map.
//!
//! Firmware tables are input, not trusted: every length is bounded, every
//! checksum checked, and a bad table is an [`AcpiError`] saying which and
//! where, never a panic (the caller falls back, e.g. to one CPU).
//!
//! Where the RSDP comes from, first found wins (ACPI 6.5, 5.2.5.1):
//! the loader's copy (multiboot2's ACPI new/old tags, the only way under
//! UEFI), else the BIOS areas: the first KiB of the EBDA (its segment at
//! 0x40e) and 0xe0000-0xfffff, on 16-byte boundaries.

use alloc::vec::Vec;
use core::fmt;

use crate::boot_info::PhysMem;
/// The RSDP's contents: in `boot_info`, which a loader's tags fill in.
pub use crate::boot_info::Rsdp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    NoRsdp,
    Unreadable {
        what: &'static str,
        addr: u64,
    },
    BadSignature {
        want: [u8; 4],
        addr: u64,
    },
    BadLength {
        sig: [u8; 4],
        addr: u64,
        len: u32,
    },
    BadChecksum {
        sig: [u8; 4],
        addr: u64,
    },
    NotFound([u8; 4]),
    /// A MADT entry whose length runs past the table or is too short.
    BadMadtEntry {
        offset: usize,
    },
}

fn sig_str(s: &[u8; 4]) -> &str {
    core::str::from_utf8(s).unwrap_or("????")
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => write!(
                f,
                "no RSDP (none from the loader, none in the EBDA or 0xe0000-0xfffff)"
            ),
            AcpiError::Unreadable { what, addr } => {
                write!(f, "{what} at {addr:#x} is not readable memory")
            }
            AcpiError::BadSignature { want, addr } => {
                write!(f, "the table at {addr:#x} is not {}", sig_str(want))
            }
            AcpiError::BadLength { sig, addr, len } => {
                write!(f, "{} at {addr:#x} has a bad length {len}", sig_str(sig))
            }
            AcpiError::BadChecksum { sig, addr } => {
                write!(f, "{} at {addr:#x} has a bad checksum", sig_str(sig))
            }
            AcpiError::NotFound(sig) => write!(f, "no {} table", sig_str(sig)),
            AcpiError::BadMadtEntry { offset } => {
                write!(f, "MADT entry at offset {offset} is malformed")
            }
        }
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    u32_le(b, at) as u64 | (u32_le(b, at + 4) as u64) << 32
}

/// The RSDP in `b` (at least 20 bytes), checksums checked: the first 20
/// bytes always, all `length` bytes from revision 2 on.
pub fn parse_rsdp(b: &[u8]) -> Option<Rsdp> {
    if b.len() < 20 || &b[..8] != b"RSD PTR " || sum(&b[..20]) != 0 {
        return None;
    }
    let revision = b[15];
    let mut oem_id = [0; 6];
    oem_id.copy_from_slice(&b[9..15]);
    let mut xsdt = None;
    if revision >= 2 && b.len() >= 36 {
        let len = u32_le(b, 20) as usize;
        if (36..=b.len()).contains(&len) && sum(&b[..len]) == 0 {
            xsdt = Some(u64_le(b, 24)).filter(|&a| a != 0);
        }
    }
    Some(Rsdp {
        revision,
        oem_id,
        rsdt: u32_le(b, 16),
        xsdt,
    })
}

/// Look for the RSDP where a BIOS leaves it: the EBDA's first KiB, then
/// the BIOS read-only area. Returns where it was and what it says.
pub fn scan_bios(mem: &impl PhysMem) -> Option<(u64, Rsdp)> {
    let ebda = mem
        .read(0x40e, 2)
        .map(|b| (u16::from_le_bytes([b[0], b[1]]) as u64) << 4)
        .filter(|&a| (0x400..0xa0000).contains(&a));
    let areas = [ebda.map(|a| (a, a + 1024)), Some((0xe0000, 0x100000))];
    for (start, end) in areas.into_iter().flatten() {
        let mut at = start.next_multiple_of(16);
        while at + 20 <= end {
            let len = (end - at).min(36) as usize;
            if let Some(r) = mem.read(at, len).and_then(parse_rsdp) {
                return Some((at, r));
            }
            at += 16;
        }
    }
    None
}

/// One ACPI table, whole, its checksum checked.
#[derive(Clone, Copy, Debug)]
pub struct Table<'m> {
    pub addr: u64,
    pub bytes: &'m [u8],
}

impl Table<'_> {
    pub fn signature(&self) -> [u8; 4] {
        [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]
    }
    /// What follows the 36-byte common header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

const HEADER_LEN: usize = 36;
/// No table of ours is near this big; a bigger length is a broken table.
const MAX_TABLE_LEN: u32 = 1 << 20;

/// Read the table at `addr`: header, length, checksum. `want` is the
/// signature it must have, if known.
pub fn read_table<'m>(
    mem: &'m impl PhysMem,
    addr: u64,
    want: Option<[u8; 4]>,
) -> Result<Table<'m>, AcpiError> {
    let hdr = mem.read(addr, HEADER_LEN).ok_or(AcpiError::Unreadable {
        what: "an ACPI table header",
        addr,
    })?;
    let sig = [hdr[0], hdr[1], hdr[2], hdr[3]];
    if let Some(w) = want.filter(|&w| w != sig) {
        return Err(AcpiError::BadSignature { want: w, addr });
    }
    let len = u32_le(hdr, 4);
    if !(HEADER_LEN as u32..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadLength { sig, addr, len });
    }
    let bytes = mem.read(addr, len as usize).ok_or(AcpiError::Unreadable {
        what: "an ACPI table",
        addr,
    })?;
    if sum(bytes) != 0 {
        return Err(AcpiError::BadChecksum { sig, addr });
    }
    Ok(Table { addr, bytes })
}

/// The root table (XSDT, else RSDT) and the tables it lists.
pub struct Tables<'m, M: PhysMem> {
    mem: &'m M,
    root: Table<'m>,
    /// 8 for the XSDT's 64-bit pointers, 4 for the RSDT's.
    entry: usize,
}

impl<'m, M: PhysMem> Tables<'m, M> {
    /// Open the root table the RSDP names: the XSDT when there is one
    /// that reads and checks, else the RSDT (as Linux does).
    pub fn new(mem: &'m M, rsdp: &Rsdp) -> Result<Self, AcpiError> {
        if let Some(x) = rsdp.xsdt {
            if let Ok(root) = read_table(mem, x, Some(*b"XSDT")) {
                return Ok(Tables {
                    mem,
                    root,
                    entry: 8,
                });
            }
        }
        let root = read_table(mem, rsdp.rsdt as u64, Some(*b"RSDT"))?;
        Ok(Tables {
            mem,
            root,
            entry: 4,
        })
    }

    /// The root table's signature (`XSDT` or `RSDT`).
    pub fn root(&self) -> Table<'m> {
        self.root
    }

    /// The addresses the root table lists.
    pub fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.root.body().chunks_exact(self.entry).map(|c| {
            if c.len() == 8 {
                u64_le(c, 0)
            } else {
                u32_le(c, 0) as u64
            }
        })
    }

    /// The first table with signature `sig` that reads and checks.
    pub fn find(&self, sig: [u8; 4]) -> Result<Table<'m>, AcpiError> {
        let mut first_err = None;
        for a in self.addresses().filter(|&a| a != 0) {
            match self.mem.read(a, 4) {
                Some(s) if s == sig => match read_table(self.mem, a, Some(sig)) {
                    Ok(t) => return Ok(t),
                    Err(e) => first_err = first_err.or(Some(e)),
                },
                _ => {}
            }
        }
        Err(first_err.unwrap_or(AcpiError::NotFound(sig)))
    }
}

/// One processor the MADT lists (a Local APIC or Local x2APIC entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MadtCpu {
    pub apic_id: u32,
    pub uid: u32,
    /// Present and usable now (flags bit 0).
    pub enabled: bool,
    /// Not enabled now but may be brought online later (flags bit 1,
    /// ACPI 6.3): hot-pluggable, not started at boot.
    pub online_capable: bool,
    /// From a Local x2APIC entry.
    pub x2apic: bool,
}

/// What ringvisor takes from the MADT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Madt {
    /// The local APIC's physical address (the override entry wins).
    pub lapic_addr: u64,
    /// Bit 0 of the MADT flags: there are 8259 PICs to mask.
    pub pcat_compat: bool,
    /// Every CPU, in table order, one entry per APIC ID.
    pub cpus: Vec<MadtCpu>,
}

impl Madt {
    /// The CPUs to start: enabled ones (online-capable ones wait for a
    /// hot-plug that ringvisor does not do).
    pub fn enabled(&self) -> impl Iterator<Item = &MadtCpu> {
        self.cpus.iter().filter(|c| c.enabled)
    }
}

const MADT_LOCAL_APIC: u8 = 0;
const MADT_LAPIC_OVERRIDE: u8 = 5;
const MADT_LOCAL_X2APIC: u8 = 9;

/// Parse a MADT (`APIC`) table (ACPI 6.5, 5.2.12).
pub fn parse_madt(t: &Table) -> Result<Madt, AcpiError> {
    let b = t.bytes;
    if b.len() < HEADER_LEN + 8 {
        return Err(AcpiError::BadLength {
            sig: t.signature(),
            addr: t.addr,
            len: b.len() as u32,
        });
    }
    let mut m = Madt {
        lapic_addr: u32_le(b, HEADER_LEN) as u64,
        pcat_compat: u32_le(b, HEADER_LEN + 4) & 1 != 0,
        cpus: Vec::new(),
    };
    let mut off = HEADER_LEN + 8;
    while off + 2 <= b.len() {
        let (typ, len) = (b[off], b[off + 1] as usize);
        if len < 2 || off + len > b.len() {
            return Err(AcpiError::BadMadtEntry { offset: off });
        }
        let e = &b[off..off + len];
        let cpu = match typ {
            MADT_LOCAL_APIC if len >= 8 => Some(MadtCpu {
                apic_id: e[3] as u32,
                uid: e[2] as u32,
                enabled: u32_le(e, 4) & 1 != 0,
                online_capable: u32_le(e, 4) & 2 != 0,
                x2apic: false,
            }),
            MADT_LOCAL_X2APIC if len >= 16 => Some(MadtCpu {
                apic_id: u32_le(e, 4),
                uid: u32_le(e, 12),
                enabled: u32_le(e, 8) & 1 != 0,
                online_capable: u32_le(e, 8) & 2 != 0,
                x2apic: true,
            }),
            MADT_LAPIC_OVERRIDE if len >= 12 => {
                m.lapic_addr = u64_le(e, 4);
                None
            }
            MADT_LOCAL_APIC | MADT_LOCAL_X2APIC | MADT_LAPIC_OVERRIDE => {
                return Err(AcpiError::BadMadtEntry { offset: off })
            }
            _ => None,
        };
        // 0xff in a Local APIC entry is a placeholder; an ID listed twice
        // (firmware that gives both entry kinds) counts once.
        if let Some(c) = cpu.filter(|c| c.x2apic || c.apic_id != 0xff) {
            if !m.cpus.iter().any(|o| o.apic_id == c.apic_id) {
                m.cpus.push(c);
            }
        }
        off += len;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Physical memory for tests: sparse pieces at given addresses.
    #[derive(Default)]
    struct Mem(Vec<(u64, Vec<u8>)>);

    impl PhysMem for Mem {
        fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
            self.0.iter().find_map(|(base, b)| {
                let off = addr.checked_sub(*base)? as usize;
                b.get(off..off.checked_add(len)?)
            })
        }
    }

    fn fix_checksum(b: &mut [u8], at: usize, range: core::ops::Range<usize>) {
        b[at] = 0;
        b[at] = 0u8.wrapping_sub(sum(&b[range]));
    }

    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        let n = t.len();
        fix_checksum(&mut t, 9, 0..n);
        t
    }

    fn rsdp(rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[9..15].copy_from_slice(b"RVTEST");
        r[15] = if xsdt != 0 { 2 } else { 0 };
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r, 8, 0..20);
        fix_checksum(&mut r, 32, 0..36);
        r
    }

    fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
        let mut e = vec![0, 8, uid, id];
        e.extend_from_slice(&flags.to_le_bytes());
        e
    }

    fn x2apic(id: u32, flags: u32, uid: u32) -> Vec<u8> {
        let mut e = vec![9, 16, 0, 0];
        e.extend_from_slice(&id.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(&uid.to_le_bytes());
        e
    }

    fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = 0xfee0_0000u32.to_le_bytes().to_vec();
        body.extend_from_slice(&1u32.to_le_bytes());
        for e in entries {
            body.extend_from_slice(e);
        }
        table(b"APIC", &body)
    }

    /// A machine with an RSDP in the BIOS area, an XSDT listing a FACP
    /// and the MADT given.
    fn machine(madt_bytes: Vec<u8>) -> Mem {
        let facp = table(b"FACP", &[0; 8]);
        let mut xsdt_body = 0x7000_0100u64.to_le_bytes().to_vec();
        xsdt_body.extend_from_slice(&0x7000_0200u64.to_le_bytes());
        let xsdt = table(b"XSDT", &xsdt_body);
        let rsdt = table(b"RSDT", &0x7000_0200u32.to_le_bytes());
        let mut bios = vec![0u8; 0x20000];
        let r = rsdp(0x7000_0300, 0x7000_0000);
        bios[0xf5a0..0xf5a0 + 36].copy_from_slice(&r);
        Mem(vec![
            (0xe0000, bios),
            (0x7000_0000, xsdt),
            (0x7000_0100, facp),
            (0x7000_0200, madt_bytes),
            (0x7000_0300, rsdt),
        ])
    }

    #[test]
    fn rsdp_found_in_the_bios_area_and_checked() {
        let mem = machine(madt(&[]));
        let (at, r) = scan_bios(&mem).unwrap();
        assert_eq!(at, 0xf5a0 + 0xe0000);
        assert_eq!(r.xsdt, Some(0x7000_0000));
        assert_eq!(r.rsdt, 0x7000_0300);
        assert_eq!(&r.oem_id, b"RVTEST");
        let mut bad = rsdp(1, 2);
        bad[19] ^= 1;
        assert_eq!(parse_rsdp(&bad), None);
        // A revision-2 RSDP whose extended checksum fails: RSDT only.
        let mut ext = rsdp(1, 2);
        ext[33] = 1;
        assert_eq!(parse_rsdp(&ext).unwrap().xsdt, None);
        assert!(scan_bios(&Mem::default()).is_none());
    }

    #[test]
    fn tables_found_through_xsdt_else_rsdt() {
        let mem = machine(madt(&[]));
        let (_, r) = scan_bios(&mem).unwrap();
        let t = Tables::new(&mem, &r).unwrap();
        assert_eq!(t.root().signature(), *b"XSDT");
        assert_eq!(t.find(*b"FACP").unwrap().addr, 0x7000_0100);
        assert_eq!(t.find(*b"HPET").unwrap_err(), AcpiError::NotFound(*b"HPET"));
        let r1 = Rsdp { xsdt: None, ..r };
        let t = Tables::new(&mem, &r1).unwrap();
        assert_eq!(t.root().signature(), *b"RSDT");
        assert_eq!(t.find(*b"APIC").unwrap().addr, 0x7000_0200);
        // The XSDT broken: the RSDT is used.
        let mut mem = machine(madt(&[]));
        mem.0[1].1[20] ^= 0x55;
        let t = Tables::new(&mem, &r).unwrap();
        assert_eq!(t.root().signature(), *b"RSDT");
    }

    #[test]
    fn madt_cpus_with_flags_and_duplicates() {
        let bytes = madt(&[
            lapic(0, 0, 1),
            lapic(1, 2, 1),
            lapic(2, 4, 0),                            // disabled
            lapic(3, 6, 2),                            // online capable, not enabled
            lapic(4, 0xff, 1),                         // placeholder
            x2apic(2, 1, 1),                           // the same CPU as APIC ID 2
            x2apic(300, 1, 9),                         // beyond xAPIC's IDs
            vec![1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // an I/O APIC: skipped
        ]);
        let mem = Mem(vec![(0x1000, bytes)]);
        let m = parse_madt(&read_table(&mem, 0x1000, Some(*b"APIC")).unwrap()).unwrap();
        assert_eq!(m.lapic_addr, 0xfee0_0000);
        assert!(m.pcat_compat);
        let ids: Vec<u32> = m.cpus.iter().map(|c| c.apic_id).collect();
        assert_eq!(ids, [0, 2, 4, 6, 300]);
        let on: Vec<u32> = m.enabled().map(|c| c.apic_id).collect();
        assert_eq!(on, [0, 2, 300]);
        assert!(m.cpus[3].online_capable && !m.cpus[3].enabled);
        assert!(m.cpus[4].x2apic);
    }

    #[test]
    fn broken_tables_are_errors_not_panics() {
        // An entry of length 0 would loop for ever; one running past the end.
        for bad in [vec![0u8, 0], vec![0u8, 40, 0, 0]] {
            let mem = Mem(vec![(0x1000, madt(&[bad]))]);
            let t = read_table(&mem, 0x1000, None).unwrap();
            assert!(matches!(
                parse_madt(&t),
                Err(AcpiError::BadMadtEntry { .. })
            ));
        }
        // A short Local APIC entry.
        let mem = Mem(vec![(0x1000, madt(&[vec![0, 4, 0, 0]]))]);
        assert!(parse_madt(&read_table(&mem, 0x1000, None).unwrap()).is_err());
        // Bad checksum, bad length, wrong signature, unreadable.
        let mut b = madt(&[lapic(0, 0, 1)]);
        b[40] ^= 1;
        let mem = Mem(vec![(0x1000, b)]);
        assert!(matches!(
            read_table(&mem, 0x1000, None),
            Err(AcpiError::BadChecksum { .. })
        ));
        let mut b = madt(&[]);
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mem = Mem(vec![(0x1000, b)]);
        assert!(matches!(
            read_table(&mem, 0x1000, None),
            Err(AcpiError::BadLength { .. })
        ));
        let mem = Mem(vec![(0x1000, madt(&[]))]);
        assert!(matches!(
            read_table(&mem, 0x1000, Some(*b"FACP")),
            Err(AcpiError::BadSignature { .. })
        ));
        assert!(matches!(
            read_table(&mem, 0x9000, None),
            Err(AcpiError::Unreadable { .. })
        ));
        // The messages say what and where.
        let e = AcpiError::BadChecksum {
            sig: *b"APIC",
            addr: 0x1000,
        };
        assert_eq!(e.to_string(), "APIC at 0x1000 has a bad checksum");
    }
}
