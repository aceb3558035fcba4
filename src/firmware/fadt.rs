//! What the hypervisor takes from the FADT (`FACP`), the DSDT's `\_S5_`
//! object and the HPET table: how to power the machine off and reset it,
//! and which clocks it has besides the PIT.
//!
//! Pure logic over table bytes ([`super::acpi::Table`]): it builds and is
//! tested on the host. The hardware side (port and register accesses) is
//! `arch::x86_64::firmware`. As everywhere in `firmware`, a table is input,
//! not trusted: a field that is missing, too short or out of range is
//! `None`, and the caller falls back (to the keyboard controller, to the
//! PIT), never a panic.
//!
//! Offsets are ACPI 6.5's, section 5.2.9 (FADT), 5.2.3.2 (Generic Address
//! Structure), 7.4.2 (`\_Sx` sleep-state packages) and the IA-PC HPET
//! specification 1.0a, 3.2.4 (the `HPET` table).

use super::acpi::Table;

/// Where a register lives (the Generic Address Structure's space ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Memory,
    Io,
    /// PCI configuration space of bus 0 (device, function, offset in
    /// the address, as ACPI 5.2.3.2 encodes it).
    PciConfig,
}

/// A register the firmware names: space, address, width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    pub space: Space,
    pub addr: u64,
    pub bits: u8,
}

/// The FADT's fields ringvisor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fadt {
    pub revision: u8,
    /// The DSDT's physical address (X_DSDT when given, else DSDT).
    pub dsdt: u64,
    /// SMI command port and the value that switches the firmware to ACPI
    /// mode (0: no switch needed, the machine is always in ACPI mode).
    pub smi_cmd: u32,
    pub acpi_enable: u8,
    /// PM1a/PM1b control blocks (I/O ports; 0 when absent).
    pub pm1a_cnt: u16,
    pub pm1b_cnt: u16,
    /// The ACPI power-management timer: its I/O port (0 when absent) and
    /// whether it counts 32 bits (else 24).
    pub pm_timer: u16,
    pub pm_timer_32bit: bool,
    /// The reset register and the value to write to it, when the FADT
    /// says it is supported (flags bit 10, revision 2 and later).
    pub reset: Option<(Reg, u8)>,
    /// Hardware-reduced ACPI (flags bit 20): no PM1 blocks; sleep states
    /// are entered through the sleep control register.
    pub hw_reduced: bool,
    pub sleep_control: Option<Reg>,
}

const FLAG_TMR_VAL_EXT: u32 = 1 << 8;
const FLAG_RESET_REG_SUP: u32 = 1 << 10;
const FLAG_HW_REDUCED_ACPI: u32 = 1 << 20;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A Generic Address Structure at `at`, if the table is long enough and
/// the address is not 0.
fn gas(b: &[u8], at: usize) -> Option<Reg> {
    let g = b.get(at..at + 12)?;
    let space = match g[0] {
        0 => Space::Memory,
        1 => Space::Io,
        2 => Space::PciConfig,
        _ => return None,
    };
    let addr = u64_at(g, 4)?;
    (addr != 0).then_some(Reg {
        space,
        addr,
        bits: g[1],
    })
}

/// An I/O port from a 32-bit legacy field, else from the extended GAS
/// (only when it is an I/O port that fits 16 bits).
fn port(b: &[u8], legacy: usize, x: usize) -> u16 {
    let x = gas(b, x).filter(|r| r.space == Space::Io && r.addr <= 0xffff);
    match u32_at(b, legacy) {
        Some(p) if p != 0 && p <= 0xffff => p as u16,
        _ => x.map_or(0, |r| r.addr as u16),
    }
}

/// Parse a FADT. Short (revision 1, 116-byte) tables have no reset
/// register and no 64-bit fields; what a table lacks stays absent.
pub fn parse_fadt(t: &Table) -> Fadt {
    let b = t.bytes;
    let flags = u32_at(b, 112).unwrap_or(0);
    let dsdt = u64_at(b, 140)
        .filter(|&a| a != 0)
        .or_else(|| u32_at(b, 40).map(u64::from))
        .unwrap_or(0);
    let pm_timer_len = b.get(91).copied().unwrap_or(0);
    let mut pm_timer = port(b, 76, 208);
    // A PM timer block must be 4 bytes long (ACPI 5.2.9: PM_TMR_LEN).
    if pm_timer_len != 4 && u32_at(b, 76).unwrap_or(0) != 0 {
        pm_timer = 0;
    }
    let reset = if flags & FLAG_RESET_REG_SUP != 0 && t.bytes.get(8).copied().unwrap_or(0) >= 2 {
        gas(b, 116).zip(b.get(128).copied())
    } else {
        None
    };
    Fadt {
        revision: t.bytes.get(8).copied().unwrap_or(0),
        dsdt,
        smi_cmd: u32_at(b, 48).unwrap_or(0),
        acpi_enable: b.get(52).copied().unwrap_or(0),
        pm1a_cnt: port(b, 64, 172),
        pm1b_cnt: port(b, 68, 184),
        pm_timer,
        pm_timer_32bit: flags & FLAG_TMR_VAL_EXT != 0,
        reset,
        hw_reduced: flags & FLAG_HW_REDUCED_ACPI != 0,
        sleep_control: gas(b, 244),
    }
}

/// One AML integer: ZeroOp, OneOp, OnesOp, or a Byte/Word/DWord constant
/// (ACPI 6.5, 20.2.3). Returns the value and the bytes it took.
fn aml_integer(b: &[u8]) -> Option<(u64, usize)> {
    match *b.first()? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0xff => Some((u64::MAX, 1)),
        0x0a => Some((*b.get(1)? as u64, 2)),
        0x0b => Some((u16_at(b, 1)? as u64, 3)),
        0x0c => Some((u32_at(b, 1)? as u64, 5)),
        _ => None,
    }
}

/// The sleep types of S5 (soft off), SLP_TYPa and SLP_TYPb, from AML:
/// the `Name (_S5_, Package () { a, b, ... })` a DSDT or SSDT declares
/// (ACPI 7.4.2). Not an AML interpreter: the small scan Xen's dom0 and
/// many small kernels do. The name must be a NameOp's (`08 _S5_`, or
/// `08 5C _S5_` rooted), followed by a PackageOp, a PkgLength, the
/// element count and two integers.
pub fn find_s5(aml: &[u8]) -> Option<(u8, u8)> {
    let mut from = 0;
    while let Some(i) = aml
        .get(from..)?
        .windows(4)
        .position(|w| w == b"_S5_")
        .map(|i| i + from)
    {
        from = i + 1;
        let named =
            (i >= 1 && aml[i - 1] == 0x08) || (i >= 2 && aml[i - 1] == b'\\' && aml[i - 2] == 0x08);
        if !named || aml.get(i + 4) != Some(&0x12) {
            continue;
        }
        // PkgLength: bits 7-6 of its lead byte count the bytes after it.
        let Some(&lead) = aml.get(i + 5) else {
            continue;
        };
        let mut p = i + 5 + 1 + (lead >> 6) as usize;
        let Some(&count) = aml.get(p) else { continue };
        p += 1;
        if count < 2 {
            continue;
        }
        let Some((a, n)) = aml.get(p..).and_then(aml_integer) else {
            continue;
        };
        let Some((b, _)) = aml.get(p + n..).and_then(aml_integer) else {
            continue;
        };
        // SLP_TYP is a 3-bit field.
        if a <= 7 && b <= 7 {
            return Some((a as u8, b as u8));
        }
    }
    None
}

/// The HPET's register block, from the `HPET` table (the first timer
/// block; always in memory space).
pub fn parse_hpet(t: &Table) -> Option<u64> {
    gas(t.bytes, 40)
        .filter(|r| r.space == Space::Memory)
        .map(|r| r.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sig: &[u8; 4], rev: u8, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut t = vec![0u8; len];
        t[..4].copy_from_slice(sig);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t[8] = rev;
        fill(&mut t);
        t
    }

    fn gas_bytes(space: u8, bits: u8, addr: u64) -> [u8; 12] {
        let mut g = [0u8; 12];
        g[0] = space;
        g[1] = bits;
        g[3] = 1;
        g[4..].copy_from_slice(&addr.to_le_bytes());
        g
    }

    /// QEMU q35's FADT, as far as ringvisor reads it.
    fn q35_fadt() -> Vec<u8> {
        table(b"FACP", 3, 244, |t| {
            t[40..44].copy_from_slice(&0x7fe0_0000u32.to_le_bytes());
            t[48..52].copy_from_slice(&0xb2u32.to_le_bytes());
            t[52] = 0xf1;
            t[64..68].copy_from_slice(&0x604u32.to_le_bytes());
            t[76..80].copy_from_slice(&0x608u32.to_le_bytes());
            t[91] = 4;
            t[112..116].copy_from_slice(&(FLAG_RESET_REG_SUP | FLAG_TMR_VAL_EXT).to_le_bytes());
            t[116..128].copy_from_slice(&gas_bytes(1, 8, 0xcf9));
            t[128] = 0x0f;
            t[140..148].copy_from_slice(&0x7fe0_0000u64.to_le_bytes());
        })
    }

    fn tbl(b: &[u8]) -> Table<'_> {
        Table {
            addr: 0x1000,
            bytes: b,
        }
    }

    #[test]
    fn fadt_fields() {
        let b = q35_fadt();
        let f = parse_fadt(&tbl(&b));
        assert_eq!(f.dsdt, 0x7fe0_0000);
        assert_eq!((f.smi_cmd, f.acpi_enable), (0xb2, 0xf1));
        assert_eq!((f.pm1a_cnt, f.pm1b_cnt), (0x604, 0));
        assert_eq!((f.pm_timer, f.pm_timer_32bit), (0x608, true));
        assert_eq!(
            f.reset,
            Some((
                Reg {
                    space: Space::Io,
                    addr: 0xcf9,
                    bits: 8
                },
                0x0f
            ))
        );
        assert!(!f.hw_reduced);
    }

    #[test]
    fn fadt_revision_1_has_no_reset_register_and_short_is_absent() {
        let mut b = q35_fadt();
        b[8] = 1;
        assert_eq!(parse_fadt(&tbl(&b)).reset, None);
        // A truncated table: what is missing stays absent, no panic.
        let short = &q35_fadt()[..70];
        let f = parse_fadt(&tbl(short));
        assert_eq!((f.pm1a_cnt, f.pm_timer, f.reset), (0x604, 0, None));
        // A PM timer block that is not 4 bytes long is not used.
        let mut b = q35_fadt();
        b[91] = 3;
        assert_eq!(parse_fadt(&tbl(&b)).pm_timer, 0);
    }

    #[test]
    fn fadt_extended_blocks_when_legacy_ones_are_zero() {
        let b = table(b"FACP", 5, 276, |t| {
            t[172..184].copy_from_slice(&gas_bytes(1, 16, 0x1804));
            t[208..220].copy_from_slice(&gas_bytes(1, 32, 0x1808));
            t[112..116].copy_from_slice(&FLAG_HW_REDUCED_ACPI.to_le_bytes());
            t[244..256].copy_from_slice(&gas_bytes(0, 8, 0xfe00_0000));
        });
        let f = parse_fadt(&tbl(&b));
        assert_eq!((f.pm1a_cnt, f.pm_timer), (0x1804, 0x1808));
        assert!(f.hw_reduced);
        assert_eq!(f.sleep_control.map(|r| r.addr), Some(0xfe00_0000));
    }

    #[test]
    fn s5_package_forms() {
        // QEMU's: Name (_S5_, Package (0x04) { Zero, Zero, Zero, Zero }).
        let qemu = [0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0];
        assert_eq!(find_s5(&qemu), Some((0, 0)));
        // Rooted, byte constants, a two-byte PkgLength.
        let aml = [
            0x10, 0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x40, 0x01, 0x02, 0x0a, 0x07, 0x0a,
            0x05,
        ];
        assert_eq!(find_s5(&aml[1..]), Some((7, 5)));
        // OneOp and a byte constant.
        let aml = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x01, 0x0a, 0x03,
        ];
        assert_eq!(find_s5(&aml), Some((1, 3)));
    }

    #[test]
    fn s5_not_fooled_and_never_panics() {
        // A reference to _S5_ (no NameOp), then the real one.
        let aml = [
            0x70, b'_', b'S', b'5', b'_', 0x60, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04,
            0x0a, 0x05, 0, 0,
        ];
        assert_eq!(find_s5(&aml), Some((5, 0)));
        assert_eq!(find_s5(b"no sleep states here"), None);
        // Truncated at every length: None, no panic.
        let full = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x0a, 0x05,
        ];
        for n in 0..full.len() - 1 {
            assert_eq!(find_s5(&full[..n]), None, "{n} bytes");
        }
        // A sleep type beyond 3 bits is refused.
        let big = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x02, 0x0a, 0x09, 0x00,
        ];
        assert_eq!(find_s5(&big), None);
    }

    #[test]
    fn hpet_base() {
        let b = table(b"HPET", 1, 56, |t| {
            t[40..52].copy_from_slice(&gas_bytes(0, 64, 0xfed0_0000));
        });
        assert_eq!(parse_hpet(&tbl(&b)), Some(0xfed0_0000));
        let b = table(b"HPET", 1, 56, |t| {
            t[40..52].copy_from_slice(&gas_bytes(1, 64, 0x1000));
        });
        assert_eq!(parse_hpet(&tbl(&b)), None);
        assert_eq!(parse_hpet(&tbl(&b[..44])), None);
    }
}
