//! Privileged instructions a PV kernel executes and expects emulated
//! (Xen: `pv/emul-priv-op.c`, `pv/emul-inv-op.c`).
//!
//! The guest kernel runs in ring 3, so these raise #GP (or #UD for the
//! forced-emulation prefix) and land here. Emulated: `mov` to/from
//! CR0/CR2/CR3/CR4 (virtual values), `rdmsr`/`wrmsr` of a small set of
//! MSRs (below), `cli`/`sti`/`in`/`out` when the virtual IOPL allows, and
//! CPUID behind the `ud2a; .ascii "xen"` prefix. Anything else is a #GP
//! bounced to the guest (`traps::guest_exception`).
//!
//! | MSR | read | write |
//! |---|---|---|
//! | FS_BASE, GS_BASE, SHADOW_GS_BASE | the guest's bases | canonical values |
//! | EFER | SCE, LME, LMA, NXE | the same value only |
//! | PAT | Xen's PV PAT | the same value only |
//! | MISC_ENABLE | BTS/PEBS unavailable | the same value only |
//! | TSC | the TSC | refused |

#![deny(unsafe_code)]

use ringvisor_abi::xen::VMASST_TYPE_ARCHITECTURAL_IOPL;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::Domain;
use crate::mm::frametable::FrameTable;
use crate::pv::guest_mem::is_canonical;
use crate::pv::mm;
use crate::sched;
use crate::trace::TRACE_EMULATE;

/// `ud2a; .ascii "xen"; cpuid` (bounce.S knows it too: arch's).
use crate::arch::x86_64::answers::FORCED_CPUID;

const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_PAT: u32 = 0x277;
const MSR_MISC_ENABLE: u32 = 0x1a0;
const MSR_TSC: u32 = 0x10;
const EFER_GUEST: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);
const PAT_GUEST: u64 = crate::arch::x86_64::cpu::PAT_XEN;
const MISC_ENABLE_GUEST: u64 = (1 << 11) | (1 << 12);

/// The CPUID a guest sees: the real one, minus what it cannot use in a PV
/// domain, plus Xen's leaves at 0x40000000.
pub fn cpuid_policy(leaf: u32, sub: u32) -> [u32; 4] {
    match leaf {
        0x4000_0000 => {
            let s = b"XenVMMXenVMM";
            let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
            [0x4000_0002, w(0), w(4), w(8)]
        }
        0x4000_0001 => [
            (crate::pv::version::XEN_MAJOR << 16 | crate::pv::version::XEN_MINOR) as u32,
            0,
            0,
            0,
        ],
        // One hypercall page; MSR 0x40000000 would write it (not offered:
        // PV guests get theirs from the ELF note).
        0x4000_0002 => [1, 0x4000_0000, 0, 0],
        0x4000_0003..=0x4fff_ffff => [0; 4],
        _ => {
            let r = raw_cpuid::native_cpuid::cpuid_count(leaf, sub);
            let (mut a, mut b, mut c, mut d) = (r.eax, r.ebx, r.ecx, r.edx);
            match leaf {
                1 => {
                    // No VMX/SMX/MONITOR; no XSAVE/AVX (we switch FPU state
                    // with fxsave); say "hypervisor present".
                    c &= !((1 << 3) | (1 << 5) | (1 << 6) | (1 << 26) | (1 << 27) | (1 << 28));
                    c |= 1 << 31;
                    // As Xen's PV policy: no VME, PSE, PGE, PSE36 (a PV
                    // kernel cannot use them), and no MCE/MCA (Xen backs
                    // them with emulated MCG MSRs, ringvisor has none: a
                    // kernel seeing MCA reads MSR 0x179 and panics).
                    d &= !((1 << 1) | (1 << 3) | (1 << 7) | (1 << 13) | (1 << 14) | (1 << 17));
                    // Local APIC id: vCPU 0.
                    b &= 0x00ff_ffff;
                }
                // No 1 GiB pages (PV guests get no superpages).
                0x8000_0001 => d &= !(1 << 26),
                // FSGSBASE is not enabled for guests; no AVX2/AVX-512.
                7 if sub == 0 => b &= !((1 << 0) | (1 << 5) | (1 << 16)),
                0xd => (a, b, c, d) = (0, 0, 0, 0),
                _ => {}
            }
            [a, b, c, d]
        }
    }
}

/// #UD from the guest: the forced-emulation prefix?
pub fn forced(d: &mut Domain, f: &mut TrapFrame, insn: &[u8]) -> bool {
    if insn.len() < FORCED_CPUID.len() || insn[..7] != FORCED_CPUID {
        return false;
    }
    let [a, b, c, dx] = cpuid_policy(f.rax as u32, f.rcx as u32);
    crate::trace!(
        TRACE_EMULATE,
        "d{}v{} emulate cpuid leaf {:#x}.{:#x} at {:#x}",
        d.id,
        d.cur,
        f.rax as u32,
        f.rcx as u32,
        f.rip
    );
    f.rax = a as u64;
    f.rbx = b as u64;
    f.rcx = c as u64;
    f.rdx = dx as u64;
    f.rip += 7;
    true
}

/// May the guest use cli/sti/in/out? (Xen: iopl_ok.) Its kernel counts
/// as ring 1 unless `architectural_iopl` says ring 0; its user mode as 3.
fn iopl_ok(d: &Domain) -> bool {
    let v = d.v();
    let cpl = if !v.kernel_mode() {
        3
    } else if d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0 {
        0
    } else {
        1
    };
    v.iopl >= cpl
}

pub fn gpr(f: &mut TrapFrame, n: u8) -> &mut u64 {
    match n {
        0 => &mut f.rax,
        1 => &mut f.rcx,
        2 => &mut f.rdx,
        3 => &mut f.rbx,
        4 => &mut f.rsp,
        5 => &mut f.rbp,
        6 => &mut f.rsi,
        7 => &mut f.rdi,
        8 => &mut f.r8,
        9 => &mut f.r9,
        10 => &mut f.r10,
        11 => &mut f.r11,
        12 => &mut f.r12,
        13 => &mut f.r13,
        14 => &mut f.r14,
        _ => &mut f.r15,
    }
}

/// SIDT, SGDT, SMSW, SLDT and STR, which CR4.UMIP keeps from ring 1 and
/// 3 (ringvisor turns it on; Xen does not, so its guests read the real
/// values): emulated, from either guest mode, with what the instruction
/// would have given: the hypervisor's IDT/GDT, the virtual CR0, no LDT,
/// the hypervisor's TR. Returns the instruction's length when done.
fn umip_insn(
    d: &Domain,
    f: &mut TrapFrame,
    insn: &[u8],
    i: usize,
    rex: u8,
) -> Option<Result<usize, crate::pv::guest_mem::Fault>> {
    let group = *insn.get(i + 1)?;
    // The store is made with the rights of the mode that executed it: a
    // 32-bit guest's user mode shares its kernel's tables, so its stores
    // must be checked as ring 3's (found by the 32-bit fuzzer: sidt from
    // ring 3 wrote into a supervisor page).
    let mut space = d.v().space();
    space.user |= f.cs & 3 == 3;
    let (reg, operand, end) = crate::pv::insn::decode_modrm(insn, i + 2, rex, d.is_32bit())?;
    let value: u64 = match (group, reg & 7) {
        (0x01, 0) | (0x01, 1) => {
            // sgdt / sidt: a memory operand only; limit, then the base.
            let Ok(m) = operand else { return None };
            let (base, limit) = crate::arch::x86_64::cpu::descriptor_table(reg & 7 == 1);
            let mut bytes = [0u8; 10];
            bytes[..2].copy_from_slice(&limit.to_le_bytes());
            bytes[2..].copy_from_slice(&base.to_le_bytes());
            let n = if d.is_32bit() { 6 } else { 10 };
            let at = effective_address(d, f, &m, end);
            return Some(space.write_bytes(at, &bytes[..n]).map(|()| end));
        }
        (0x01, 4) => virtual_cr0(d),
        (0x00, 0) => 0, // sldt: guests have no LDT here
        (0x00, 1) => crate::arch::x86_64::cpu::task_register() as u64,
        _ => return None,
    };
    match operand {
        Err(r) => {
            let r = gpr(f, r);
            *r = if d.is_32bit() {
                value as u32 as u64
            } else {
                value
            };
        }
        Ok(m) => {
            let at = effective_address(d, f, &m, end);
            if let Err(e) = space.write_bytes(at, &(value as u16).to_le_bytes()) {
                return Some(Err(e));
            }
        }
    }
    Some(Ok(end))
}

/// Where a decoded memory operand points (flat segments; 32-bit code
/// wraps at 4 GiB). `end` is the instruction's length, for rip-relative.
fn effective_address(
    d: &Domain,
    f: &mut TrapFrame,
    m: &crate::pv::insn::MemOperand,
    end: usize,
) -> u64 {
    let mut a = m.disp as u64;
    if let Some(b) = m.base {
        a = a.wrapping_add(*gpr(f, b));
    }
    if let Some((x, s)) = m.index {
        a = a.wrapping_add(gpr(f, x).wrapping_mul(s as u64));
    }
    if m.rip_relative {
        a = a.wrapping_add(f.rip).wrapping_add(end as u64);
    }
    if d.is_32bit() {
        a as u32 as u64
    } else {
        a
    }
}

fn virtual_cr0(d: &Domain) -> u64 {
    // PE, MP, ET, NE, WP, AM, PG as a 64-bit kernel expects; TS virtual.
    0x8005_0033 | if d.v().cr0_ts { 1 << 3 } else { 0 }
}

fn virtual_cr4() -> u64 {
    // PAE, PGE, OSFXSR, OSXMMEXCPT: what the guest may rely on.
    (1 << 5) | (1 << 7) | (1 << 9) | (1 << 10)
}

fn rdmsr(d: &Domain, msr: u32) -> Option<u64> {
    if d.is_32bit() && matches!(msr, MSR_FS_BASE | MSR_GS_BASE | MSR_SHADOW_GS_BASE) {
        return None; // segment bases of 64-bit code only
    }
    let v = d.v();
    Some(match msr {
        MSR_FS_BASE => crate::arch::x86_64::cr::fs_base(),
        // The guest's live GS waits in KERNEL_GS_BASE while we run.
        MSR_GS_BASE => crate::arch::x86_64::cr::kernel_gs_base(),
        MSR_SHADOW_GS_BASE => {
            if v.kernel_mode() {
                v.gs_base_user
            } else {
                v.gs_base_kernel
            }
        }
        MSR_EFER => EFER_GUEST,
        MSR_PAT => PAT_GUEST,
        MSR_MISC_ENABLE => MISC_ENABLE_GUEST,
        MSR_TSC => crate::arch::x86_64::time::tsc(),
        _ => return None,
    })
}

fn wrmsr(d: &mut Domain, msr: u32, val: u64) -> bool {
    if d.is_32bit() && matches!(msr, MSR_FS_BASE | MSR_GS_BASE | MSR_SHADOW_GS_BASE) {
        return false;
    }
    let v = d.v_mut();
    match msr {
        MSR_FS_BASE if is_canonical(val) => {
            v.fs_base = val;
            crate::arch::x86_64::cr::set_fs_base(val);
        }
        MSR_GS_BASE | MSR_SHADOW_GS_BASE if is_canonical(val) => {
            sched::save_guest_gs(v);
            let active = msr == MSR_GS_BASE;
            match (v.kernel_mode(), active) {
                (true, true) | (false, false) => v.gs_base_kernel = val,
                _ => v.gs_base_user = val,
            }
            sched::load_guest_gs(v);
        }
        MSR_EFER | MSR_PAT | MSR_MISC_ENABLE => return rdmsr(d, msr) == Some(val),
        _ => return false,
    }
    true
}

/// #GP from the guest: a privileged instruction we emulate? Returns true
/// when emulated (rip advanced), false to bounce the #GP.
/// A byte `in`/`out` of the initial domain on port 0x70 (the CMOS index)
/// or 0x71 (its data), as Xen's `rtc_guest_read`/`rtc_guest_write`: the
/// index is the domain's own (bit 7, the NMI mask, never reaches the
/// chip), data reads come from the chip. Writes reach it only for the
/// time and date registers (0x00-0x09, what `hwclock` sets): stricter
/// than Xen, which passes every register, because status registers A-D
/// drive the RTC's interrupt and rate (docs/abi.md).
fn cmos_port(d: &mut Domain, f: &mut TrapFrame, port: u16, write: bool) {
    use crate::arch::x86_64::time::{cmos_read, cmos_write};
    let al = f.rax as u8;
    match (port, write) {
        (0x70, true) => d.cmos_idx = al & 0x7f,
        (0x70, false) => f.rax = (f.rax & !0xff) | d.cmos_idx as u64,
        (_, false) => f.rax = (f.rax & !0xff) | cmos_read(d.cmos_idx) as u64,
        (_, true) if d.cmos_idx <= 0x09 => cmos_write(d.cmos_idx, al),
        (_, true) => {}
    }
}

pub fn privileged(d: &mut Domain, ft: &FrameTable, f: &mut TrapFrame, insn: &[u8]) -> bool {
    let kernel = d.v().kernel_mode();
    let mut i = 0;
    let mut opsize16 = false;
    let mut rex = 0u8;
    while i < insn.len() && i < 4 {
        match insn[i] {
            0x66 => opsize16 = true,
            // REX exists only in 64-bit code: in a 32-bit guest these
            // bytes are inc/dec.
            0x40..=0x4f if !d.is_32bit() => rex = insn[i],
            _ => break,
        }
        i += 1;
    }
    let Some(&op) = insn.get(i) else { return false };
    let what: &str;
    let len;
    let umip = match if op == 0x0f {
        umip_insn(d, f, insn, i, rex)
    } else {
        None
    } {
        // The store faulted as the guest's own would have: a #PF there.
        Some(Err(e)) => {
            crate::pv::traps::inject_page_fault(d, f, e.va, e.error_code);
            return true;
        }
        Some(Ok(len)) => Some(len),
        None => None,
    };
    match op {
        _ if umip.is_some() => {
            what = "sidt/sgdt/smsw/sldt/str";
            len = umip.unwrap_or(0);
        }
        0xfa | 0xfb if iopl_ok(d) => {
            // cli/sti with enough virtual IOPL: allowed, and (as in Xen)
            // without effect: a guest masks events through evtchn_upcall_mask,
            // and a real cli could never be undone by a popf it cannot trap.
            what = if op == 0xfa { "cli" } else { "sti" };
            len = i + 1;
        }
        0xe4 | 0xe5 | 0xec | 0xed | 0xe6 | 0xe7 | 0xee | 0xef if iopl_ok(d) => {
            let port = match op {
                0xe4..=0xe7 => insn.get(i + 1).map(|&p| p as u16),
                _ => Some(f.rdx as u16),
            };
            len = i + if matches!(op, 0xe4..=0xe7) { 2 } else { 1 };
            if let (true, Some(port @ (0x70 | 0x71)), 0xe4 | 0xe6 | 0xec | 0xee) =
                (d.privileged, port, op)
            {
                // The initial domain's RTC: byte accesses to the CMOS
                // ports, as Xen's rtc_guest_read/write for the hardware
                // domain.
                cmos_port(d, f, port, matches!(op, 0xe6 | 0xee));
                what = "in/out (CMOS)";
            } else if let (true, Some(port @ (0x42 | 0x43 | 0x61)), 0xe4 | 0xe6 | 0xec | 0xee) =
                (d.privileged, port, op)
            {
                // The initial domain's PIT channel 2 (Linux calibrates its
                // TSC with it; floating high, its quick calibration polls
                // 100000 times before giving up): passed on as Xen's
                // hwdom_pit_access.
                let write = matches!(op, 0xe6 | 0xee).then_some(f.rax as u8);
                let got = crate::arch::x86_64::time::pit_ch2_access(port, write);
                if write.is_none() {
                    f.rax = (f.rax & !0xff) | got.unwrap_or(0xff) as u64;
                }
                what = "in/out (PIT channel 2)";
            } else {
                // No other I/O port is passed through: reads float high,
                // writes are dropped (Xen does the same for ports a domain
                // may not use).
                if matches!(op, 0xe4 | 0xe5 | 0xec | 0xed) {
                    let mask = match (op, opsize16) {
                        (0xe4 | 0xec, _) => 0xff,
                        (_, true) => 0xffff,
                        _ => 0xffff_ffff,
                    };
                    f.rax = (f.rax & !mask) | mask;
                }
                what = "in/out";
            }
        }
        0x0f if kernel => {
            let Some(&op2) = insn.get(i + 1) else {
                return false;
            };
            match op2 {
                0x20 | 0x22 => {
                    let Some(&modrm) = insn.get(i + 2) else {
                        return false;
                    };
                    if modrm >> 6 != 3 {
                        return false;
                    }
                    let cr = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
                    let reg = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
                    if op2 == 0x20 {
                        let val = match cr {
                            0 => virtual_cr0(d),
                            2 => d.v().cr2,
                            3 if d.is_32bit() => {
                                ringvisor_abi::x86_32::xen_pfn_to_cr3(d.v().current_table() as u32)
                                    as u64
                            }
                            3 => d.v().current_table() << 12,
                            4 => virtual_cr4(),
                            _ => return false,
                        };
                        *gpr(f, reg) = val;
                        what = "mov from cr";
                    } else {
                        let val = *gpr(f, reg);
                        match cr {
                            // Only TS may change (as fpu_taskswitch).
                            0 if (val ^ virtual_cr0(d)) & !(1 << 3) == 0 => {
                                d.v_mut().cr0_ts = val & (1 << 3) != 0;
                            }
                            2 => d.v_mut().cr2 = val,
                            3 => {
                                if !mm::write_cr3(d, ft, val) {
                                    return false;
                                }
                            }
                            // Xen takes any value (pv_fixup_guest_cr4) and
                            // keeps the guest's view to the bits its policy
                            // lets it control; ringvisor offers none of
                            // them (TSD, DE, FSGSBASE, OSXSAVE), so the view
                            // stays the visible hardware bits.
                            4 => {}
                            _ => return false,
                        }
                        what = "mov to cr";
                    }
                    len = i + 3;
                }
                // mov to/from %drN (Xen's read_dr/write_dr): a refused
                // value is a #GP, as Xen's X86EMUL_UNHANDLEABLE.
                0x21 | 0x23 => {
                    let Some(&modrm) = insn.get(i + 2) else {
                        return false;
                    };
                    if modrm >> 6 != 3 || rex & 4 != 0 {
                        return false;
                    }
                    let dr = ((modrm >> 3) & 7) as u64;
                    let reg = (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 };
                    if op2 == 0x21 {
                        let v = crate::pv::debugreg::get(d, dr); // 0-7: always a value
                        *gpr(f, reg) = if d.is_32bit() {
                            v as u32 as u64
                        } else {
                            v as u64
                        };
                        what = "mov from dr";
                    } else {
                        let val = if d.is_32bit() {
                            *gpr(f, reg) as u32 as u64
                        } else {
                            *gpr(f, reg)
                        };
                        if crate::pv::debugreg::set(d, dr, val) != 0 {
                            return false;
                        }
                        what = "mov to dr";
                    }
                    len = i + 3;
                }
                0x32 => {
                    let Some(val) = rdmsr(d, f.rcx as u32) else {
                        return false;
                    };
                    f.rax = val & 0xffff_ffff;
                    f.rdx = val >> 32;
                    what = "rdmsr";
                    len = i + 2;
                }
                0x30 => {
                    let val = (f.rdx << 32) | (f.rax & 0xffff_ffff);
                    if !wrmsr(d, f.rcx as u32, val) {
                        return false;
                    }
                    what = "wrmsr";
                    len = i + 2;
                }
                _ => return false,
            }
        }
        _ => return false,
    }
    crate::trace!(
        TRACE_EMULATE,
        "d{}v{} emulate {what} at {:#x}",
        d.id,
        d.cur,
        f.rip
    );
    f.rip += len as u64;
    true
}
