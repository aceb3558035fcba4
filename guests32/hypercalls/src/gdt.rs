//! set_gdt (a list of 32-bit frame numbers) and update_descriptor (the
//! machine address and the descriptor each in two halves).
//!
//! Descriptors are checked as Xen's check_descriptor
//! (`xen/arch/x86/pv/descriptor-tables.c`) does for a 32-bit guest: a
//! code or data segment with DPL 0 gets DPL 1 (the guest kernel's ring),
//! in the guest's own GDT page; a 64-bit code segment (L set) is refused.
//! ringvisor also refuses call gates (docs/abi.md, set_gdt; Xen accepts
//! one to a good code selector and emulates it: see the README).

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

use pvguest32::abi;
use pvguest32::abi32::FLAT_RING1_CS;
use pvguest32::cell::{GuestCell, Page};
use pvguest32::cpu;
use pvguest32::hypercall::{self as hc, hypercall};
use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info, Rc};
use pvguest32::traps::catch;
use pvguest32::va;

use crate::common::*;

/// The guest's GDT (entries 0-3) while the cases run.
static GDT: Page = Page::new();
/// Tables with a bad descriptor in them.
static BAD_GDT: Page = Page::new();

/// 32-bit flat code, DPL 1 (access 0xba: P, DPL 1, S, execute/read).
const CODE32_DPL1: u64 = 0x00cf_ba00_0000_ffff;
/// 32-bit flat data, DPL 0 (access 0x92): must come back with DPL 1.
const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
/// 32-bit flat data, DPL 3 (access 0xf2): stays DPL 3.
const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
/// Data, DPL 0, byte-granular limit 0x12345: bits 16-19 of the limit and
/// the access byte are in the high half, bits 0-15 in the low one.
const LIMITED_DPL0: u64 = 0x0041_9200_0000_2345;
/// 64-bit code (L set, D clear), DPL 1.
const CODE64_DPL1: u64 = 0x00af_ba00_0000_ffff;

const DPL_SHIFT: u32 = 45;

/// A 32-bit call gate (type 0xc, present, DPL 3) to `sel:off`.
const fn call_gate(sel: u16, off: u32) -> u64 {
    let hi = (off & 0xffff_0000) | 0x8000 | 3 << 13 | 0x0c00;
    let lo = (sel as u32) << 16 | (off & 0xffff);
    (hi as u64) << 32 | lo as u64
}

fn desc(page: &Page, i: usize) -> u64 {
    // SAFETY: inside the page, which is mapped (read-only or writable).
    unsafe { read_volatile((page.addr() as usize as *const u64).add(i)) }
}

fn set_desc(page: &Page, i: usize, d: u64) {
    // SAFETY: inside the page, mapped writable while callers write it.
    unsafe { write_volatile((page.addr() as usize as *mut u64).add(i), d) }
}

fn remap(page: &Page, writable: bool) -> i32 {
    let flags = if writable { KERNEL_RW } else { KERNEL_RO };
    // SAFETY: the page's own frame at its own address.
    unsafe {
        hc::update_va_mapping(
            page.addr(),
            pte(mfn_of(page.addr()), flags),
            abi::UVMF_INVLPG as u32,
        )
    }
}

fn set_gdt(frames: &[u32], entries: u32) -> i32 {
    // SAFETY: the frames hold descriptors checked by the hypervisor; the
    // guest's running selectors are the hypervisor's reserved ones.
    unsafe { hypercall(abi::HYPERVISOR_SET_GDT, &[va(frames.as_ptr()), entries]) }
}

fn update_descriptor(maddr: u64, d: u64) -> i32 {
    // SAFETY: the entry is checked by the hypervisor.
    unsafe {
        hypercall(
            abi::HYPERVISOR_UPDATE_DESCRIPTOR,
            &[
                maddr as u32,
                (maddr >> 32) as u32,
                d as u32,
                (d >> 32) as u32,
            ],
        )
    }
}

/// `lar`: the access rights of `sel` as the CPU sees them, if it may.
fn lar(sel: u32) -> Option<u32> {
    let (r, ok): (u32, u8);
    // SAFETY: lar only reads the descriptor; it never faults on a GDT
    // selector (ZF clear instead).
    unsafe {
        asm!("lar {r}, {s}", "setz {ok}", r = inout(reg) 0u32 => r, s = in(reg) sel,
             ok = out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(r)
}

/// `lsl`: the limit of `sel`, if the CPU lets us see it.
fn lsl(sel: u32) -> Option<u32> {
    let (r, ok): (u32, u8);
    // SAFETY: as lar.
    unsafe {
        asm!("lsl {r}, {s}", "setz {ok}", r = inout(reg) 0u32 => r, s = in(reg) sel,
             ok = out(reg_byte) ok, options(nomem, nostack))
    };
    (ok != 0).then_some(r)
}

/// DPL from `lar`'s result (the access byte is in bits 8-15).
fn lar_dpl(r: u32) -> u32 {
    (r >> 13) & 3
}

static FS_SEEN: GuestCell<u32> = GuestCell::new(0);

fn load_fs(sel: u32) -> bool {
    let old = cpu::fs();
    let r = catch(|| {
        // SAFETY: %fs is not used by this guest; a bad selector bounces
        // #GP, which unwinds to the catch.
        unsafe { asm!("mov fs, {0:e}", in(reg) sel, options(nostack)) };
        FS_SEEN.set(u32::from(cpu::fs()));
    });
    // SAFETY: the selector %fs held before (null or flat).
    unsafe { asm!("mov fs, {0:e}", in(reg) u32::from(old), options(nostack)) };
    r.is_ok() && FS_SEEN.get() == sel
}

/// A table `[null, bad]` in BAD_GDT given to set_gdt: must be refused,
/// leaving the GDT as it was.
fn refused_table(case: &str, bad: u64) {
    if remap(&BAD_GDT, true) != 0 {
        fail(case, format_args!("cannot map the page writable again"));
        return;
    }
    set_desc(&BAD_GDT, 0, 0);
    set_desc(&BAD_GDT, 1, bad);
    if remap(&BAD_GDT, false) != 0 {
        fail(case, format_args!("cannot map the page read-only"));
        return;
    }
    let rc = set_gdt(&[mfn_of(BAD_GDT.addr())], 2);
    check(
        case,
        rc == crate::common::EINVAL && lar(0x11).is_some(),
        format_args!("returned {}, lar(0x11) {:x?}", Rc(rc), lar(0x11)),
    );
}

pub fn run() {
    let g = mfn_of(GDT.addr());
    let maddr = |i: u64| (u64::from(g) << 12) + i * 8;
    set_desc(&GDT, 0, 0);
    set_desc(&GDT, 1, CODE32_DPL1);
    set_desc(&GDT, 2, DATA_DPL0);
    set_desc(&GDT, 3, DATA_DPL3);

    check_rc(
        "set_gdt of a page mapped writable -EINVAL",
        set_gdt(&[g], 4),
        EINVAL,
    );
    check_rc("GDT page mapped read-only", remap(&GDT, false), 0);
    if !check_rc(
        "set_gdt([frame], 4): code DPL 1, data DPL 0, data DPL 3",
        set_gdt(&[g], 4),
        0,
    ) {
        return;
    }
    check_same(
        "the GDT page afterwards: DPL-0 data raised to DPL 1, the others as written",
        [desc(&GDT, 1), desc(&GDT, 2), desc(&GDT, 3)],
        [CODE32_DPL1, DATA_DPL0 | 1 << DPL_SHIFT, DATA_DPL3],
    );
    check_same(
        "lar: code 0x09 DPL 1, data 0x11 DPL 1, data 0x1b DPL 3",
        [
            lar(0x09).map(lar_dpl),
            lar(0x11).map(lar_dpl),
            lar(0x1b).map(lar_dpl),
        ],
        [Some(1), Some(1), Some(3)],
    );
    check(
        "mov 0x11 to %fs (DPL-1 data at CPL 1)",
        load_fs(0x11),
        format_args!("refused"),
    );

    // update_descriptor: machine address and descriptor in halves.
    check_rc(
        "update_descriptor(entry 3, DPL-0 data, limit 0x12345)",
        update_descriptor(maddr(3), LIMITED_DPL0),
        0,
    );
    check_same(
        "entry 3 after update_descriptor: DPL 1, both halves (limit 0x12345)",
        (desc(&GDT, 3), lar(0x19).map(lar_dpl), lsl(0x19)),
        (LIMITED_DPL0 | 1 << DPL_SHIFT, Some(1), Some(0x12345)),
    );
    check_rc(
        "update_descriptor: 64-bit code segment -EINVAL",
        update_descriptor(maddr(3), CODE64_DPL1),
        EINVAL,
    );
    let gate = call_gate(FLAT_RING1_CS, 0x1000);
    check_rc(
        "update_descriptor: call gate -EINVAL",
        update_descriptor(maddr(3), gate),
        EINVAL,
    );
    check_rc(
        "update_descriptor: misaligned address -EINVAL",
        update_descriptor(maddr(3) + 4, DATA_DPL3),
        EINVAL,
    );
    // The high half of the address counts: 4 GiB above the GDT frame is
    // no frame of the guest. (Xen: -EINVAL, get_page_from_gfn fails;
    // ringvisor: -EPERM, not the domain's frame: see the README.)
    let rc = update_descriptor(maddr(3) | 1 << 32, DATA_DPL3);
    check(
        "update_descriptor with address hi half 1: refused",
        rc < 0,
        format_args!("returned {}", Rc(rc)),
    );
    info(format_args!(
        "update_descriptor, address hi half 1: {}",
        Rc(rc)
    ));
    check_eq(
        "entry 3 unchanged by the refused updates",
        desc(&GDT, 3),
        LIMITED_DPL0 | 1 << DPL_SHIFT,
    );

    // set_gdt refusals: the GDT in force stays.
    refused_table("set_gdt with a 64-bit code segment -EINVAL", CODE64_DPL1);
    refused_table("set_gdt with a call gate -EINVAL", gate);
    check_rc(
        "set_gdt with 7169 entries (more than FIRST_RESERVED_GDT_ENTRY) -EINVAL",
        set_gdt(&[g], 7169),
        EINVAL,
    );
    // SAFETY: refused: the frame list cannot be read.
    let rc = unsafe { hypercall(abi::HYPERVISOR_SET_GDT, &[UNMAPPED, 4]) };
    check_rc("set_gdt, unmapped frame list -EFAULT", rc, EFAULT);
    check_same(
        "after the refusals the GDT is the same",
        [lar(0x09).map(lar_dpl), lar(0x11).map(lar_dpl)],
        [Some(1), Some(1)],
    );

    // No GDT of its own any more: the page is ordinary memory again.
    check_rc("set_gdt(0 entries)", set_gdt(&[], 0), 0);
    check_same(
        "lar(0x11) after set_gdt(0 entries): no such segment",
        lar(0x11),
        None,
    );
    check_rc("GDT page mapped writable again", remap(&GDT, true), 0);
    check_rc(
        "the other page mapped writable again",
        remap(&BAD_GDT, true),
        0,
    );
}
