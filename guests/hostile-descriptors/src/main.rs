//! `guest-hostile-descriptors`: the guest's own GDT as a way into ring 0:
//! segments with DPL 0, call gates, LDT and TSS descriptors, a GDT frame
//! that stays writable, descriptors written into frames that are not the
//! guest's or not descriptor pages. Expected values are ringvisor's (where
//! Xen 4.17 answers differently, guests/README.md says so).
//!
//! Command line: `victim=D port=P` (optional), as guest-hostile-foreign.
//!
//! Cases:
//! - `set_gdt` of a page with a 64-bit code segment, a data segment, a
//!   32-bit code segment and a conforming code segment, all DPL 0, and a
//!   not-present entry → 0; read back through a read-only mapping, the
//!   four have DPL 3 (the rest of each descriptor unchanged), the
//!   not-present one is untouched.
//! - Using them: `%ds` loads the data segment; a far return to the code
//!   segment with RPL 0 → #GP(selector); with RPL 3 it runs, in ring 3
//!   (`%cs` reads RPL 3), and comes back.
//! - `set_gdt` with a call gate (to our own code segment, or to the
//!   hypervisor's 0xe008), an LDT descriptor, an available and a busy
//!   64-bit TSS, a 16-bit TSS, an interrupt gate, a trap gate → `-EINVAL`
//!   (the GDT in force unchanged: `%ds` still loads).
//! - The GDT frame: mapping it writable → `-EINVAL` (read-only: 0); it
//!   cannot be pinned as an L1 (`-EINVAL`) or (tried last) given back
//!   (0 done). A frame
//!   mapped writable cannot become a GDT (`-EINVAL`); neither can a page
//!   table, our shared_info, another domain's frame or frame 0x100
//!   (`-EINVAL`); more than 7168 entries → `-EINVAL`.
//! - `update_descriptor`: a DPL-0 code segment into the GDT frame → 0,
//!   read back with DPL 3; a DPL-0 data segment → 0, and `%ds` loads it
//!   at once (RPL 3); a call gate, an LDT, a TSS descriptor →
//!   `-EINVAL`; a misaligned address → `-EINVAL`; into one of our page
//!   tables, our shared_info, frame 0x100, a frame beyond RAM, and every
//!   frame of another domain → `-EPERM`; into an ordinary page of ours →
//!   0 (the control).
//! - Stale TLB: a frame written through one of two links of an L1 and
//!   unmapped through the other, then made the GDT: writing it through the
//!   first link → #PF. The GDT it replaced is ordinary memory again.
//! - `set_gdt` with no frames → 0: the last GDT frame is ordinary memory
//!   again (mappable writable).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

#[path = "../../hostile-foreign/src/common.rs"]
mod common;

use core::arch::asm;

use common::*;
use pvguest::abi::{self, StartInfo};
use pvguest::report::{check, check_eq, check_rc, fail, info, pass};
use pvguest::traps::{self, catch, expect_fault};

pvguest::guest_main!("hostile-descriptors", run);

/// 64-bit code, DPL 0 (flat, L, G, present, readable).
const CODE64_DPL0: u64 = 0x00af_9a00_0000_ffff;
/// Data, DPL 0 (flat, writable).
const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
/// 32-bit code, DPL 0.
const CODE32_DPL0: u64 = 0x00cf_9a00_0000_ffff;
/// Conforming 64-bit code, DPL 0.
const CONFORMING_DPL0: u64 = 0x00af_9e00_0000_ffff;
/// Not present: anything goes (the CPU never loads it).
const NOT_PRESENT: u64 = 0x1234_1a00_5678_9abc;
const DPL: u64 = 3 << 45;

/// A 64-bit call gate (low half) to `sel:target`, DPL 3.
const fn call_gate(sel: u16, target: u64) -> u64 {
    (target & 0xffff) | (sel as u64) << 16 | 0xec << 40 | (target >> 16 & 0xffff) << 48
}

/// A system descriptor of type `ty` (present, DPL 0), base 0, limit 0x67.
const fn system(ty: u64) -> u64 {
    0x67 | (0x80 | ty) << 40
}

fn run(si: &StartInfo) {
    traps::install_default_trap_table();
    let link = link_victim();
    let w = Window::new(free_l2_slot(0));
    let g = good_gdt(&w);
    using_it();
    bad_gdts(&w, g);
    gdt_frame(&w, g, si);
    update_descriptor_cases(&w, g, si);
    let g2 = stale_tlb(&w);
    check_rc(
        "the first GDT frame, replaced, is ordinary memory again (mappable writable)",
        w.map(2, g, LEAF_RW),
        0,
    );
    w.unmap(2);
    refused("give the GDT frame back: 0 done", give_back_rc(g2), EPERM);
    check_rc("set_gdt with no frames: 0", set_gdt(&[], 0), 0);
    check_rc(
        "the last GDT frame is ordinary memory again (mappable writable)",
        w.map(2, g2, LEAF_RW),
        0,
    );
    w.unmap(2);
    victim_done(&link);
}

/// A page holding `descs` from entry 0 (built through a writable mapping
/// that is gone again).
fn gdt_page(w: &Window, descs: &[u64]) -> u64 {
    let (_, f) = alloc_page();
    w.map(1, f, LEAF_RW);
    for (i, &d) in descs.iter().enumerate() {
        poke(w.va(1) + i as u64 * 8, d);
    }
    w.unmap(1);
    f
}

const GOOD: [u64; 6] = [
    0,
    CODE64_DPL0,
    DATA_DPL0,
    CODE32_DPL0,
    CONFORMING_DPL0,
    NOT_PRESENT,
];

fn good_gdt(w: &Window) -> u64 {
    let g = gdt_page(w, &GOOD);
    check_rc(
        "set_gdt: DPL-0 code, data, 32-bit code, conforming code, not-present: 0",
        set_gdt(&[g], 8),
        0,
    );
    w.map(2, g, LEAF_RO);
    let got: [u64; 6] = core::array::from_fn(|i| peek(w.va(2) + i as u64 * 8));
    w.unmap(2);
    for (i, name) in [
        (1, "64-bit code"),
        (2, "data"),
        (3, "32-bit code"),
        (4, "conforming code"),
    ] {
        // The accessed bit (type bit 0) may be set by a load.
        let want = GOOD[i] | DPL;
        check(
            Name::new(format_args!("the {name} segment reads back with DPL 3")).as_str(),
            got[i] & !(1 << 40) == want & !(1 << 40),
            format_args!("{:#018x}, want {want:#018x}", got[i]),
        );
    }
    check_eq(
        "the not-present entry reads back untouched",
        got[5],
        NOT_PRESENT,
    );
    g
}

fn load_ds(sel: u16) {
    // SAFETY: loads a data segment selector (or faults); restored to null
    // by the caller.
    unsafe { asm!("mov ds, {0:x}", in(reg) sel, options(nostack)) };
}

fn ds() -> u16 {
    let s: u16;
    // SAFETY: reads %ds.
    unsafe { asm!("mov {0:x}, ds", out(reg) s, options(nostack, nomem)) };
    s
}

/// `lretq` to `sel:1f`, read `%cs` there, `lretq` back to the flat
/// kernel code segment. Returns the `%cs` seen.
fn far_return_through(sel: u16) -> u16 {
    let cs: u64;
    // SAFETY: a far return to a 64-bit code segment of our GDT (DPL 3)
    // and back; nothing in between touches memory or makes a hypercall.
    unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "push {sel}",
            "push {t}",
            ".byte 0x48, 0xcb", // lretq
            "2:",
            "mov {cs:e}, cs",
            "lea {t}, [rip + 3f]",
            "push {kcs}",
            "push {t}",
            ".byte 0x48, 0xcb", // lretq
            "3:",
            sel = in(reg) sel as u64,
            kcs = const abi::FLAT_KERNEL_CS64 as u64,
            t = out(reg) _,
            cs = out(reg) cs,
        )
    };
    cs as u16
}

fn using_it() {
    let r = catch(|| load_ds(2 << 3 | 3));
    check(
        "%ds loads our data segment (selector 0x13)",
        r.is_ok() && ds() == 0x13,
        format_args!("{:?}", r.err()),
    );
    load_ds(0);
    expect_fault(
        "a far return to our code segment with RPL 0: #GP(0x8)",
        13,
        Some(0x8),
        || {
            far_return_through(1 << 3);
        },
    );
    let mut cs = 0;
    let r = catch(|| cs = far_return_through(1 << 3 | 3));
    check(
        "a far return to our code segment with RPL 3 runs in ring 3 (%cs 0xb) and comes back",
        r.is_ok() && cs == 0xb,
        format_args!("{r:?}, cs {cs:#x}"),
    );
}

fn bad_gdts(w: &Window, g: u64) {
    let code = run as *const () as u64;
    for (what, descs) in [
        (
            "a call gate to our code segment",
            [0, call_gate(abi::FLAT_KERNEL_CS64, code), code >> 32],
        ),
        (
            "a call gate to the hypervisor's code segment 0xe008",
            [0, call_gate(0xe008, code), code >> 32],
        ),
        ("an LDT descriptor", [0, system(2), 0]),
        ("an available 64-bit TSS", [0, system(9), 0]),
        ("a busy 64-bit TSS", [0, system(0xb), 0]),
        ("a 16-bit TSS", [0, system(1), 0]),
        (
            "an interrupt gate",
            [
                0,
                call_gate(abi::FLAT_KERNEL_CS64, code) & !(0xf << 40) | 0xe << 40,
                code >> 32,
            ],
        ),
        (
            "a trap gate",
            [
                0,
                call_gate(abi::FLAT_KERNEL_CS64, code) & !(0xf << 40) | 0xf << 40,
                code >> 32,
            ],
        ),
    ] {
        let f = gdt_page(w, &descs);
        if refused(
            Name::new(format_args!("set_gdt with {what}: -EINVAL")).as_str(),
            set_gdt(&[f], 3),
            EINVAL,
        ) {
            info(format_args!("  ... it reads back {:#x}", {
                w.map(2, f, LEAF_RO);
                let v = peek(w.va(2) + 8);
                w.unmap(2);
                v
            }));
            // Back to the good one.
            set_gdt(&[g], 8);
        }
    }
    let r = catch(|| load_ds(2 << 3 | 3));
    check(
        "the GDT in force is unchanged (%ds still loads 0x13)",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    load_ds(0);
}

fn gdt_frame(w: &Window, g: u64, si: &StartInfo) {
    if refused(
        "map the GDT frame writable: -EINVAL",
        w.map(2, g, LEAF_RW),
        EINVAL,
    ) {
        w.unmap(2);
    }
    check_rc("map the GDT frame read-only: 0", w.map(2, g, LEAF_RO), 0);
    w.unmap(2);
    if refused("pin the GDT frame as an L1: -EINVAL", pin(1, g), EINVAL) {
        unpin(g);
    }
    let f = gdt_page(w, &GOOD);
    w.map(3, f, LEAF_RW);
    if refused(
        "set_gdt with a frame mapped writable: -EINVAL",
        set_gdt(&[f], 8),
        EINVAL,
    ) {
        set_gdt(&[g], 8); // back to the good one
    }
    w.unmap(3);
    let l1 = table_of(VIRT_BASE, 1).unwrap();
    if refused(
        "set_gdt with one of our page tables: -EINVAL",
        set_gdt(&[l1], 8),
        EINVAL,
    ) {
        set_gdt(&[g], 8); // back to the good one
    }
    if refused(
        "set_gdt with our shared_info: -EINVAL",
        set_gdt(&[si.shared_info >> 12], 8),
        EINVAL,
    ) {
        set_gdt(&[g], 8); // back to the good one
    }
    if refused(
        "set_gdt with frame 0x100: -EINVAL",
        set_gdt(&[HV_MFN], 8),
        EINVAL,
    ) {
        set_gdt(&[g], 8); // back to the good one
    }
    if let Some(o) = (0..m2p_frames()).find(|&f| foreign(f)) {
        if refused(
            "set_gdt with another domain's frame: -EINVAL",
            set_gdt(&[o], 8),
            EINVAL,
        ) {
            set_gdt(&[g], 8); // back to the good one
        }
    }
    let frames = [f; 16];
    if refused(
        "set_gdt with 7169 entries: -EINVAL",
        set_gdt(&frames, 7169),
        EINVAL,
    ) {
        set_gdt(&[g], 8); // back to the good one
    }
    if refused(
        "set_gdt with 2^32 entries: -EINVAL",
        set_gdt(&frames, 1 << 32),
        EINVAL,
    ) {
        set_gdt(&[g], 8); // back to the good one
    }
    // Still the good one.
    check_rc(
        "the GDT frame is still a GDT (writable: -EINVAL)",
        w.map(2, g, LEAF_RW),
        EINVAL,
    );
}

fn stale_tlb(w: &Window) -> u64 {
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let (a, b) = (free_l2_slot(4) as u64, free_l2_slot(5) as u64);
    let (_, t) = alloc_page();
    mmu1((l2 << 12) | (a * 8), t << 12 | TABLE);
    mmu1((l2 << 12) | (b * 8), t << 12 | TABLE);
    let (va_a, va_b) = (VIRT_BASE + (a << 21), VIRT_BASE + (b << 21));
    let f = gdt_page(w, &GOOD);
    uvm(va_a, f << 12 | LEAF_RW);
    poke(va_b + 8, CODE64_DPL0);
    uvm(va_a, 0);
    check_rc("stale TLB: make the frame the GDT", set_gdt(&[f], 8), 0);
    let r = catch(|| poke(va_b + 8 * 7, call_gate(abi::FLAT_KERNEL_CS64, 0)));
    match r {
        Err(t) if t.vector == 14 => {
            pass("stale TLB: writing the new GDT frame through the other link faults")
        }
        Err(t) => fail(
            "stale TLB: writing the new GDT frame through the other link faults",
            format_args!("{t}"),
        ),
        Ok(()) => fail(
            "stale TLB: writing the new GDT frame through the other link faults",
            format_args!("it was written"),
        ),
    }
    mmu1((l2 << 12) | (a * 8), 0);
    mmu1((l2 << 12) | (b * 8), 0);
    f
}

fn update_descriptor_cases(w: &Window, g: u64, si: &StartInfo) {
    let at = |i: u64| (g << 12) | (i * 8);
    check_rc(
        "update_descriptor: a DPL-0 code segment into the GDT: 0",
        update_descriptor(at(6), CODE64_DPL0),
        0,
    );
    w.map(2, g, LEAF_RO);
    let got = peek(w.va(2) + 6 * 8);
    w.unmap(2);
    check_eq(
        "  ... it reads back with DPL 3",
        got & !(1 << 40),
        (CODE64_DPL0 | DPL) & !(1 << 40),
    );
    check_rc(
        "update_descriptor: a DPL-0 data segment into the GDT: 0",
        update_descriptor(at(7), DATA_DPL0),
        0,
    );
    let r = catch(|| load_ds(7 << 3 | 3));
    check(
        "  ... it is in force at once, with DPL 3 (%ds loads 0x3b)",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    load_ds(0);
    let code = run as *const () as u64;
    for (what, d) in [
        ("a call gate", call_gate(abi::FLAT_KERNEL_CS64, code)),
        ("an LDT descriptor", system(2)),
        ("a 64-bit TSS", system(9)),
        (
            "an interrupt gate",
            call_gate(abi::FLAT_KERNEL_CS64, code) & !(0xf << 40) | 0xe << 40,
        ),
    ] {
        refused(
            Name::new(format_args!("update_descriptor: {what}: -EINVAL")).as_str(),
            update_descriptor(at(7), d),
            EINVAL,
        );
    }
    refused(
        "update_descriptor at a misaligned address: -EINVAL",
        update_descriptor(at(7) + 4, DATA_DPL0),
        EINVAL,
    );
    let l1 = table_of(VIRT_BASE, 1).unwrap();
    for (what, f) in [
        ("one of our L1 tables", l1),
        ("our L4", l4_mfn()),
        ("our shared_info", si.shared_info >> 12),
        ("frame 0x100", HV_MFN),
        ("a frame beyond RAM", 0xf_ffff_ffff),
    ] {
        refused(
            Name::new(format_args!("update_descriptor into {what}: -EPERM")).as_str(),
            update_descriptor(f << 12 | 8, 0),
            EPERM,
        );
    }
    check_eq(
        "  ... our L1's entry 1 is unchanged",
        pte(l1, 1) & ADDR,
        p2m(1) << 12,
    );
    let mut s = Sweep::new(
        format_args!("update_descriptor into another domain's frame: -EPERM"),
        EPERM,
    );
    for f in (0..m2p_frames()).filter(|&f| foreign(f)) {
        s.one(f, update_descriptor(f << 12 | 8, 0));
    }
    s.end();
    let (_, mine) = alloc_page();
    check_rc(
        "update_descriptor into an ordinary page of ours: 0",
        update_descriptor(mine << 12 | 8, DATA_DPL0),
        0,
    );
}
