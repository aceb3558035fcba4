//! `guest-hostile-pagetables`: attacks on its own page tables: getting one
//! writable (directly or by aliasing), type confusion, bad pins and base
//! pointers, superpages, reserved bits, stale TLB entries, and direct
//! stores with writable page tables on. Each attack must be refused and
//! change nothing; expected values are ringvisor's (where Xen 4.17 answers
//! differently, guests/README.md says so).
//!
//! Command line: `victim=D port=P` (optional), as guest-hostile-foreign.
//!
//! Cases:
//! - Regressions of the four breaks found by the first hostile probe:
//!   unpinning the live L4 leaves it a page table (mapping it writable →
//!   `-EINVAL`); an L1 linked at two L2 slots a and b, a frame mapped
//!   writable through a and written through b, unmapped through a
//!   (`update_va_mapping` with `UVMF_INVLPG`, with `UVMF_NONE`, or
//!   `mmu_update` of the L1 entry): once the frame is pinned as an L1,
//!   writing it through b → #PF (no stale TLB entry); the same, the frame
//!   given back (`decrease_reservation`): reading it through b → #PF; the
//!   frame (a copy of our L4, unmapped with `UVMF_NONE`) made our L4 by
//!   `NEW_BASEPTR`: writing it through b → #PF;
//!   the registered `vcpu_info` page (tried last: from then on the
//!   hypervisor keeps vcpu_info there) and (as a domU) the console ring
//!   cannot become an L1 (`-EINVAL`) or be given back (0 done).
//!   `NEW_USER_BASEPTR 0` drops its reference (the former user table is
//!   ordinary memory again).
//! - Own tables writable: `update_va_mapping` of the read-only mapping of
//!   each bootstrap table to writable, mapping each writable elsewhere
//!   (`update_va_mapping`, `mmu_update`, `PRESERVE_AD`) → `-EINVAL`; a
//!   store into one → #PF ec 3; read-only aliases work.
//! - Type confusion: an L2 entry → our L2, L4 or L3 as an L1, an L3 entry
//!   → our L3, an L4 entry → our L4 writable → `-EINVAL`; read-only, an
//!   L4 → our L4 and an L2 → our L2 are linear page tables, as Xen → 0
//!   (and removed again; through the L2 one, `update_va_mapping` of what
//!   the walk takes for an L1 entry, an entry of the L2 → `-EINVAL`, the
//!   entry unchanged); pin L2 as L1, L1 as L2, L4 as L3 →
//!   `-EINVAL`; an L2 entry → a bootstrap L1 (a second link) → 0 (the
//!   control).
//! - A frame mapped writable cannot become a table: pin as L1, link as an
//!   L1, `NEW_BASEPTR` → `-EINVAL`; unmapped, it can (pin 0), and then
//!   cannot be mapped writable (`-EINVAL`).
//! - Pin a table with a bad entry: L1 → another domain's frame, frame
//!   0x100 (`-EPERM`), PCD or bit 62, writable → our L4, writable
//!   → itself (`-EINVAL`); L2 with a 2 MiB entry, L3 with a 1 GiB entry,
//!   L4 with PS (`-EINVAL`); L2 → an L1 with a bad entry (`-EPERM`). The
//!   page is ordinary memory afterwards (mappable writable).
//! - the builder's L4, moved off and unpinned while the bootstrap region
//!   still maps it read-only: `decrease_reservation` refuses it;
//! - `NEW_BASEPTR` and `NEW_USER_BASEPTR` to our L3, L2, an L1, a pinned
//!   L1, a frame mapped writable (`-EINVAL`), a copy of our L4 with
//!   another domain's frame in it (`-EPERM`) or PCD in an entry
//!   (`-EINVAL`); `mov %cr3` with our L3 → #GP(0); an unpinned
//!   copy of our L4 → 0 (we run on it), and back.
//! - Entries: bit 62, PWT, PCD, PAT (L1), PCD/PWT/G in L2/L3/L4 entries,
//!   PS in L2/L3/L4 entries → `-EINVAL`; software bits 52-61 (L1) → 0,
//!   stored as given; an address beyond RAM → `-EPERM`; NX,
//!   the available bits 9-11 → 0; `_PAGE_GLOBAL` is dropped and
//!   `_PAGE_USER` forced on in what is stored.
//! - Writable page tables (`vm_assist`): a direct 64-bit store into an L1
//!   of another domain's frame, frame 0x100, our L4 writable, a reserved
//!   bit, or an L2 entry → an L1 with a bad entry → #PF ec 3, the entry
//!   unchanged; a 32-bit store → #PF; `xchg` with a foreign frame → #PF;
//!   a store of a good entry is applied (and `xchg` returns the old one).
//! - Batches stop at the first bad entry: `mmu_update` of [good, bad,
//!   good] → the error, done = 1, only the first applied.
//! - Misuse: pin the pinned L4 again, unpin an unpinned table or an
//!   ordinary page → `-EINVAL`; `mmu_update` of an ordinary page → 0,
//!   written like memory (as Xen; the value read back through a mapping);
//!   commands 3-7 → `-ENOSYS`; page tables, the L4, a mapped
//!   page → `decrease_reservation` 0 done.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

#[path = "../../hostile-foreign/src/common.rs"]
mod common;

use common::*;
use pvguest::abi::{self, MmuUpdate, StartInfo};
use pvguest::report::{check, check_eq, check_rc, fail, info, pass, Rc};
use pvguest::traps::{self, catch, expect_fault};

pvguest::guest_main!("hostile-pagetables", run);

/// Scratch slot of the window for building pages.
const BUILD: u64 = 0;

fn run(si: &StartInfo) {
    traps::install_default_trap_table();
    let link = link_victim();
    info(format_args!(
        "nr_pages {}, bootstrap pages {}, page-table frames {}, L4 {:#x}",
        nr_pages(),
        boot_pages(),
        si.nr_pt_frames,
        l4_mfn()
    ));
    let w = Window::new(free_l2_slot(0));
    unpin_live_l4(&w);
    old_l4_still_mapped(&w);
    runstate_of_a_vcpu_never_initialised();
    gdt_frames_per_vcpu(&w);
    stale_tlb(&w, 10, UvmHow::Invlpg);
    stale_tlb(&w, 13, UvmHow::None);
    stale_tlb(&w, 16, UvmHow::MmuUpdate);
    given_back_stale(&w, 19);
    stale_tlb_l4(&w, 22);
    own_tables_writable(&w);
    type_confusion(&w, free_l2_slot(1));
    writable_then_table(&w, free_l2_slot(1));
    bad_pins(&w);
    base_pointers(&w);
    entries(&w, free_l2_slot(1));
    writable_pagetables(&w, free_l2_slot(1));
    batches(&w);
    misuse(&w);
    if si.console.mfn != 0 && si.flags & abi::SIF_INITDOMAIN == 0 {
        console_page(si);
    }
    // Last: from here on vCPU 0's vcpu_info (and so its clock) is
    // elsewhere than the runtime looks.
    victim_done(&link);
    vcpu_info_page();
}

/// A fresh page holding `entries` (built through a writable mapping that
/// is gone again): an ordinary frame.
fn page_with(w: &Window, entries: &[(usize, u64)]) -> u64 {
    let (_, f) = alloc_page();
    w.map(BUILD, f, LEAF_RW);
    for &(i, v) in entries {
        poke(w.va(BUILD) + i as u64 * 8, v);
    }
    w.unmap(BUILD);
    f
}

/// Whether `f` is ordinary memory again: it can be mapped writable.
fn is_ordinary(w: &Window, f: u64) -> bool {
    let ok = w.map(BUILD, f, LEAF_RW) == 0;
    w.unmap(BUILD);
    ok
}

/// An L4 of ours: a copy of the live one's guest entries.
fn l4_copy(w: &Window) -> u64 {
    let l4 = l4_mfn();
    let (_, f) = alloc_page();
    w.map(BUILD, f, LEAF_RW);
    for i in (0..256).chain(272..512) {
        poke(w.va(BUILD) + i as u64 * 8, pte(l4, i));
    }
    w.unmap(BUILD);
    f
}

/// [`l4_copy`] with entry `i` = `v`.
fn l4_copy_with(w: &Window, i: u64, v: u64) -> u64 {
    let f = l4_copy(w);
    w.map(BUILD, f, LEAF_RW);
    poke(w.va(BUILD) + i * 8, v);
    w.unmap(BUILD);
    f
}

fn boot_l1() -> u64 {
    table_of(VIRT_BASE, 1).unwrap()
}

fn unpin_live_l4(w: &Window) {
    let l4 = l4_mfn();
    check_rc("unpin the live L4", unpin(l4), 0);
    if refused(
        "the live L4, unpinned, still cannot be mapped writable: -EINVAL",
        w.map(1, l4, LEAF_RW),
        EINVAL,
    ) {
        w.unmap(1);
    }
    check_rc("pin it again", pin(4, l4), 0);
}

/// The builder's L4 is mapped read-only by the bootstrap region (as every
/// page-table frame is) and counted so: moved off (`NEW_BASEPTR` to a
/// copy) and unpinned, it is ordinary memory still mapped there, and
/// `decrease_reservation` refuses it (0 done). The builder once typed its
/// tables with a fresh frame record, which forgot that mapping: the frame
/// was given back while the guest could still read it.
fn old_l4_still_mapped(w: &Window) {
    let l4 = l4_mfn();
    let f = l4_copy(w);
    if !check_rc(
        "the builder's L4: NEW_BASEPTR to a copy of it",
        ext(abi::MMUEXT_NEW_BASEPTR, f),
        0,
    ) {
        return;
    }
    check_rc("the builder's L4: unpin it", unpin(l4), 0);
    let mut l = [l4];
    check_eq(
        "the builder's L4, still mapped read-only by the bootstrap region: decrease_reservation refuses it (0 done)",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        0,
    );
    check_rc(
        "the builder's L4: NEW_BASEPTR back to it",
        ext(abi::MMUEXT_NEW_BASEPTR, l4),
        0,
    );
    check_rc("the builder's L4: pin it again", pin(4, l4), 0);
}

/// A runstate area registered for a vCPU never initialised is kept and
/// written once that vCPU has address space of its own: never through its
/// root of 0, which the hypervisor once walked as a page table (machine
/// frame 0, the BIOS's), and faulted on. 1280 addresses all over the
/// guests' half, each accepted (0) and the hypervisor still here; the area
/// is unregistered again (0). Needs a second vCPU (skipped without one).
fn runstate_of_a_vcpu_never_initialised() {
    let register = |addr: u64| {
        let reg = abi::VcpuRegisterRunstateMemoryArea { addr };
        // SAFETY: vCPU 1 never runs while its area is registered.
        unsafe {
            pvguest::hypercall::vcpu_op(
                abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
                1,
                &reg as *const _ as u64,
            )
        }
    };
    if register(0) == ENOENT {
        return info(format_args!("runstate of vCPU 1: no vCPU 1 (skipped)"));
    }
    let mut refused = 0;
    for i in 0..256u64 {
        for j in [0u64, 1, 255, 256, 511] {
            if register(i << 39 | j << 30 | 0x100) != 0 {
                refused += 1;
            }
        }
    }
    check_eq(
        "runstate areas registered for vCPU 1, never initialised, at 1280 addresses: all 0 (none walked through its root)",
        refused,
        0,
    );
    check_rc("  ... and unregistered: 0", register(0), 0);
}

extern "C" fn never_runs(_: u32, _: u64) {}
static VCPU1_STACK: pvguest::cell::Page = pvguest::cell::Page::new();

/// GDT frames are the domain's descriptor tables for as long as any of
/// its vCPUs has them in its GDT (Xen: a type reference per vCPU). A
/// `VCPUOP_initialise` refused for its root leaves no GDT behind; a frame
/// vCPU 1 (initialised, never brought up) has in its GDT stays one when
/// vCPU 0 takes it and drops it again: it can be neither mapped writable
/// nor made an L1. Before, the frame went back to ordinary memory there,
/// and a vCPU's later GDT change could untype it even as a live L1,
/// which the guest then mapped writable. Needs a second vCPU (skipped
/// without one).
fn gdt_frames_per_vcpu(w: &Window) {
    let bottom = VCPU1_STACK.addr();
    let Some(mut c) = pvguest::smp::context(1, bottom, bottom + 4096, never_runs, 0) else {
        return fail(
            "GDT frames per vCPU: a context for vCPU 1",
            format_args!("none"),
        );
    };
    let f = page_with(w, &[]);
    let root = c.ctrlreg[3];
    c.ctrlreg[3] = HV_MFN << 12; // not ours: refused after the GDT
    c.gdt_frames[0] = f;
    c.gdt_ents = 1;
    // SAFETY: refused (its root); vCPU 1 never runs.
    let rc = unsafe { pvguest::smp::initialise(1, &c) };
    if rc == ENOENT {
        return info(format_args!("GDT frames per vCPU: no vCPU 1 (skipped)"));
    }
    check_rc(
        "GDT frames per vCPU: initialise vCPU 1 with GDT [F] and a root not ours: -EINVAL",
        rc,
        EINVAL,
    );
    check_rc(
        "  ... F is ordinary memory after it (mapped writable: 0)",
        w.map(BUILD, f, LEAF_RW),
        0,
    );
    w.unmap(BUILD);
    c.ctrlreg[3] = root;
    // SAFETY: our own L4 and GDT frame; vCPU 1 is never brought up.
    let rc = unsafe { pvguest::smp::initialise(1, &c) };
    check_rc(
        "GDT frames per vCPU: initialise vCPU 1 with GDT [F]: 0",
        rc,
        0,
    );
    check_rc("  ... set_gdt [F] on vCPU 0: 0", set_gdt(&[f], 1), 0);
    check_rc("  ... set_gdt [] on vCPU 0: 0", set_gdt(&[], 0), 0);
    if refused(
        "  ... F, still vCPU 1's GDT frame, cannot be mapped writable: -EINVAL",
        w.map(BUILD, f, LEAF_RW),
        EINVAL,
    ) {
        w.unmap(BUILD);
    }
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let slot = free_l2_slot(3) as u64;
    if refused(
        "  ... nor linked as an L1: -EINVAL",
        mmu1((l2 << 12) | (slot * 8), f << 12 | TABLE),
        EINVAL,
    ) {
        mmu1((l2 << 12) | (slot * 8), 0);
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum UvmHow {
    Invlpg,
    None,
    MmuUpdate,
}

/// An L1 linked at L2 slots a and a+1; frame F mapped writable through a,
/// read through a+1 (so the TLB may hold that translation), unmapped
/// through a. Once F is an L1, writing it through a+1 must fault.
fn stale_tlb(w: &Window, slot: usize, how: UvmHow) {
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let (a, b) = (free_l2_slot(slot) as u64, free_l2_slot(slot + 1) as u64);
    let t = page_with(w, &[]);
    let (ra, rb) = (
        mmu1((l2 << 12) | (a * 8), t << 12 | TABLE),
        mmu1((l2 << 12) | (b * 8), t << 12 | TABLE),
    );
    if ra != 0 || rb != 0 {
        fail(
            "stale TLB: link one L1 at two L2 slots",
            format_args!("{} {}", Rc(ra), Rc(rb)),
        );
        return;
    }
    let va_a = VIRT_BASE + (a << 21);
    let va_b = VIRT_BASE + (b << 21);
    let f = page_with(w, &[]);
    uvm(va_a, f << 12 | LEAF_RW);
    poke(va_b, 0); // a writable translation through b
    let rc = match how {
        UvmHow::Invlpg => uvm(va_a, 0),
        UvmHow::None => uvm_flags(va_a, 0, abi::UVMF_NONE),
        UvmHow::MmuUpdate => mmu1(t << 12, 0),
    };
    check_rc(
        Name::new(format_args!("stale TLB ({how:?}): unmap F through slot a")).as_str(),
        rc,
        0,
    );
    if how == UvmHow::None {
        // Whether this CPU (or QEMU) keeps the stale translation at all:
        // if it does, the fault below is the hypervisor's flush at work.
        let stale = catch(|| {
            peek(va_b);
        })
        .is_ok();
        info(format_args!(
            "stale TLB (None): F still readable through slot b before the pin: {stale}"
        ));
    }
    check_rc(
        Name::new(format_args!("stale TLB ({how:?}): pin F as an L1")).as_str(),
        pin(1, f),
        0,
    );
    let case = Name::new(format_args!(
        "stale TLB ({how:?}): writing F through slot b faults (#PF)"
    ));
    let r = catch(|| poke(va_b + 5 * 8, HV_MFN << 12 | LEAF_RO));
    match r {
        Err(t) if t.vector == 14 => pass(case.as_str()),
        Err(t) => fail(case.as_str(), format_args!("{t}")),
        Ok(()) => fail(
            case.as_str(),
            format_args!("wrote a pinned L1 through a stale TLB entry"),
        ),
    }
    unpin(f);
    mmu1((l2 << 12) | (a * 8), 0);
    mmu1((l2 << 12) | (b * 8), 0);
}

/// As `stale_tlb` (unmapped with `UVMF_NONE`), but the frame, a copy of
/// our L4, becomes the L4 we run on (`NEW_BASEPTR`): writing it through
/// the other slot must fault.
fn stale_tlb_l4(w: &Window, slot: usize) {
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let (a, b) = (free_l2_slot(slot) as u64, free_l2_slot(slot + 1) as u64);
    let t = page_with(w, &[]);
    mmu1((l2 << 12) | (a * 8), (t << 12) | TABLE);
    mmu1((l2 << 12) | (b * 8), (t << 12) | TABLE);
    let va_a = VIRT_BASE + (a << 21);
    let va_b = VIRT_BASE + (b << 21);
    let f = l4_copy(w);
    uvm(va_a, (f << 12) | LEAF_RW);
    poke(va_b + 300 * 8, 0); // a writable translation through b
    check_rc(
        "stale TLB (L4): unmap F through slot a (UVMF_NONE)",
        uvm_flags(va_a, 0, abi::UVMF_NONE),
        0,
    );
    let l4 = l4_mfn();
    if check_rc(
        "stale TLB (L4): NEW_BASEPTR to F",
        ext(abi::MMUEXT_NEW_BASEPTR, f),
        0,
    ) {
        let forged = (HV_MFN << 12) | TABLE;
        let r = catch(|| poke(va_b + 300 * 8, forged));
        let wrote = peek_or(va_b + 300 * 8) == forged;
        ext(abi::MMUEXT_NEW_BASEPTR, l4);
        match r {
            Err(t) if t.vector == 14 => {
                pass("stale TLB (L4): writing the live L4 through slot b faults (#PF)")
            }
            Err(t) => fail(
                "stale TLB (L4): writing the live L4 through slot b faults (#PF)",
                format_args!("{t}"),
            ),
            Ok(()) => fail(
                "stale TLB (L4): writing the live L4 through slot b faults (#PF)",
                format_args!(
                    "wrote it (entry 300 now {})",
                    if wrote { "frame 0x100" } else { "unchanged" }
                ),
            ),
        }
    }
    mmu1((l2 << 12) | (a * 8), 0);
    mmu1((l2 << 12) | (b * 8), 0);
}

/// As `stale_tlb`, but the frame is given back instead.
fn given_back_stale(w: &Window, slot: usize) {
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let (a, b) = (free_l2_slot(slot) as u64, free_l2_slot(slot + 1) as u64);
    let t = page_with(w, &[]);
    mmu1((l2 << 12) | (a * 8), t << 12 | TABLE);
    mmu1((l2 << 12) | (b * 8), t << 12 | TABLE);
    let va_a = VIRT_BASE + (a << 21);
    let va_b = VIRT_BASE + (b << 21);
    let f = page_with(w, &[]);
    uvm(va_a, f << 12 | LEAF_RW);
    poke(va_b, 0x600d);
    uvm(va_a, 0);
    let mut l = [f];
    check_eq(
        "stale TLB: give F back (1 done)",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        1,
    );
    let r = catch(|| {
        peek(va_b);
    });
    check(
        "stale TLB: reading F given back through slot b faults",
        r.is_err(),
        format_args!("read {:#x}", peek_or(va_b)),
    );
    mmu1((l2 << 12) | (a * 8), 0);
    mmu1((l2 << 12) | (b * 8), 0);
}

fn peek_or(va: u64) -> u64 {
    let mut v = 0;
    let _ = catch(|| v = peek(va));
    v
}

fn own_tables_writable(w: &Window) {
    let mut remap = Sweep::new(
        format_args!("update_va_mapping of a table's own mapping to writable: -EINVAL"),
        EINVAL,
    );
    let mut alias = Sweep::new(
        format_args!("update_va_mapping of a table writable elsewhere: -EINVAL"),
        EINVAL,
    );
    let mut mmu_rw = Sweep::new(
        format_args!("mmu_update of an L1 entry -> a table, writable: -EINVAL"),
        EINVAL,
    );
    let mut mmu_ad = Sweep::new(
        format_args!("mmu_update (PRESERVE_AD) of an L1 entry -> a table, writable: -EINVAL"),
        EINVAL,
    );
    let mut ro = Sweep::new(
        format_args!("a read-only alias of a table reads the same"),
        0,
    );
    let mut store = Sweep::new(format_args!("a store into a table faults (#PF ec 3)"), 14);
    for pfn in boot_pt_pfns() {
        let t = p2m(pfn);
        let va = VIRT_BASE + (pfn << 12);
        if remap.one(t, uvm(va, t << 12 | LEAF_RW)) {
            uvm(va, t << 12 | LEAF_RO);
        }
        if alias.one(t, w.map(1, t, LEAF_RW)) {
            w.unmap(1);
        }
        if mmu_rw.one(t, mmu1(w.pte_maddr(1), t << 12 | LEAF_RW)) {
            w.unmap(1);
        }
        if mmu_ad.one(
            t,
            mmu1(
                w.pte_maddr(1) | abi::MMU_PT_UPDATE_PRESERVE_AD,
                t << 12 | LEAF_RW,
            ),
        ) {
            w.unmap(1);
        }
        if w.map(1, t, LEAF_RO) == 0 && (0..512).all(|i| peek(w.va(1) + i * 8) == peek(va + i * 8))
        {
            ro.ok();
        } else {
            ro.bad(t);
        }
        w.unmap(1);
        match catch(|| poke(va + 300 * 8, 0)) {
            Err(tr) if tr.vector == 14 && tr.error_code == 3 && tr.cr2 == va + 300 * 8 => {
                store.ok()
            }
            _ => store.bad(t),
        }
    }
    for s in [remap, alias, mmu_rw, mmu_ad, ro, store] {
        s.end();
    }
}

fn type_confusion(w: &Window, slot: usize) {
    let l4 = l4_mfn();
    let l3 = table_of(VIRT_BASE, 3).unwrap();
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let l1 = boot_l1();
    let l2e = (l2 << 12) | (slot as u64 * 8);
    for (case, val) in [
        ("L2 entry -> our L2 as an L1: -EINVAL", l2 << 12 | TABLE),
        ("L2 entry -> our L4 as an L1: -EINVAL", l4 << 12 | TABLE),
        ("L2 entry -> our L3 as an L1: -EINVAL", l3 << 12 | TABLE),
    ] {
        if refused(case, mmu1(l2e, val), EINVAL) {
            mmu1(l2e, 0);
        }
    }
    let l3free = (0..512).rev().find(|&i| pte(l3, i) & P == 0).unwrap();
    let l3e = (l3 << 12) | (l3free as u64 * 8);
    if refused(
        "L3 entry -> our L3 itself: -EINVAL",
        mmu1(l3e, l3 << 12 | TABLE),
        EINVAL,
    ) {
        mmu1(l3e, 0);
    }
    let l4e = (l4 << 12) | (300 * 8);
    if refused(
        "L4 entry -> our L4 itself, writable: -EINVAL",
        mmu1(l4e, l4 << 12 | TABLE),
        EINVAL,
    ) {
        mmu1(l4e, 0);
    }
    // Read-only, a table of the same level is a linear page table, which
    // Xen allows (the guest reads its tables through it, never writes):
    // taken, then removed again.
    check_rc(
        "L4 entry -> our L4 itself, read-only (a linear page table): 0",
        mmu1(l4e, l4 << 12 | (TABLE & !RW)),
        0,
    );
    check_rc("  ... removed: 0", mmu1(l4e, 0), 0);
    check_rc(
        "L2 entry -> our L2 itself, read-only (a linear page table): 0",
        mmu1(l2e, l2 << 12 | (TABLE & !RW)),
        0,
    );
    // Through that entry the walk reaches our L2 where an L1 would be:
    // update_va_mapping of an address there names an entry of the L2
    // (here entry 0, which maps VIRT_BASE), refused even with the value
    // it holds (Xen's do_update_va_mapping: not an L1 page), and the
    // entry is left as it was.
    let held = pte(l2, 0);
    let through = VIRT_BASE + ((slot as u64) << 21);
    refused(
        "update_va_mapping through the linear entry (an L2 entry, its own value): -EINVAL",
        uvm(through, held),
        EINVAL,
    );
    check_eq("  ... the L2 entry unchanged", pte(l2, 0), held);
    check_rc("  ... removed: 0", mmu1(l2e, 0), 0);
    refused("pin our L2 as an L1: -EINVAL", pin(1, l2), EINVAL);
    refused("pin our L1 as an L2: -EINVAL", pin(2, l1), EINVAL);
    refused("pin our L4 as an L3: -EINVAL", pin(3, l4), EINVAL);
    check_rc(
        "L2 entry -> a bootstrap L1 (a second link): 0",
        mmu1(l2e, l1 << 12 | TABLE),
        0,
    );
    check_eq(
        "through the second link, the same page",
        peek(VIRT_BASE + ((slot as u64) << 21)),
        peek(VIRT_BASE),
    );
    check_rc("unlink it", mmu1(l2e, 0), 0);
    let _ = w;
}

fn writable_then_table(w: &Window, slot: usize) {
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let l2e = (l2 << 12) | (slot as u64 * 8);
    let (_, f) = alloc_page();
    w.map(2, f, LEAF_RW);
    refused(
        "pin a frame mapped writable as an L1: -EINVAL",
        pin(1, f),
        EINVAL,
    );
    if refused(
        "link a frame mapped writable as an L1: -EINVAL",
        mmu1(l2e, f << 12 | TABLE),
        EINVAL,
    ) {
        mmu1(l2e, 0);
    }
    refused(
        "NEW_BASEPTR to a frame mapped writable: -EINVAL",
        ext(abi::MMUEXT_NEW_BASEPTR, f),
        EINVAL,
    );
    refused(
        "NEW_USER_BASEPTR to a frame mapped writable: -EINVAL",
        ext(abi::MMUEXT_NEW_USER_BASEPTR, f),
        EINVAL,
    );
    // A second, writable alias through mmu_update, then both gone.
    mmu1(w.pte_maddr(3), f << 12 | LEAF_RW);
    w.unmap(2);
    refused(
        "pin it with one writable alias left: -EINVAL",
        pin(1, f),
        EINVAL,
    );
    w.unmap(3);
    check_rc("unmapped, it can be pinned as an L1", pin(1, f), 0);
    refused(
        "a pinned L1 cannot be mapped writable: -EINVAL",
        w.map(2, f, LEAF_RW),
        EINVAL,
    );
    check_rc(
        "a pinned L1 can be mapped read-only",
        w.map(2, f, LEAF_RO),
        0,
    );
    w.unmap(2);
    check_rc("unpin it", unpin(f), 0);
    check(
        "unpinned and unlinked, it is ordinary memory again",
        is_ordinary(w, f),
        format_args!("still typed"),
    );
}

fn bad_pins(w: &Window) {
    let l4 = l4_mfn();
    let other = (0..m2p_frames()).find(|&f| foreign(f));
    if let Some(o) = other {
        let p = page_with(w, &[(7, o << 12 | LEAF_RO)]);
        refused(
            "pin an L1 with another domain's frame in it: -EPERM",
            pin(1, p),
            EPERM,
        );
        check(
            "that page is ordinary memory afterwards",
            is_ordinary(w, p),
            format_args!("typed"),
        );
    } else {
        info(format_args!(
            "no other domain: no foreign frame for the bad-pin case"
        ));
    }
    for (case, entry, want) in [
        (
            "pin an L1 with frame 0x100 (the hypervisor's) in it: -EPERM",
            HV_MFN << 12 | LEAF_RO,
            EPERM,
        ),
        (
            "pin an L1 with PCD set in an entry: -EINVAL",
            PCD | own_leaf(),
            EINVAL,
        ),
        (
            "pin an L1 with bit 62 (Xen's) set in an entry: -EINVAL",
            1 << 62 | own_leaf(),
            EINVAL,
        ),
        (
            "pin an L1 with a writable mapping of our L4: -EINVAL",
            l4 << 12 | LEAF_RW,
            EINVAL,
        ),
    ] {
        let p = page_with(w, &[(3, own_leaf()), (9, entry)]);
        if refused(case, pin(1, p), want) {
            unpin(p);
        }
        check(
            Name::new(format_args!(
                "  ... and the page is ordinary memory afterwards"
            ))
            .as_str(),
            is_ordinary(w, p),
            format_args!("typed"),
        );
    }
    // An L1 that maps itself writable.
    let (_, p) = alloc_page();
    w.map(BUILD, p, LEAF_RW);
    poke(w.va(BUILD) + 8, p << 12 | LEAF_RW);
    w.unmap(BUILD);
    if refused(
        "pin an L1 that maps itself writable: -EINVAL",
        pin(1, p),
        EINVAL,
    ) {
        unpin(p);
    }
    for (case, level, entry) in [
        (
            "pin an L2 with a 2 MiB entry: -EINVAL",
            2,
            own_leaf() & !0x1f_f000 | PS,
        ),
        (
            "pin an L3 with a 1 GiB entry: -EINVAL",
            3,
            P | RW | US | A | D | PS,
        ),
        (
            "pin an L4 with a PS entry: -EINVAL",
            4,
            P | RW | US | A | D | PS,
        ),
    ] {
        let p = page_with(w, &[(1, entry)]);
        if refused(case, pin(level, p), EINVAL) {
            unpin(p);
        }
    }
    // Nested: an L2 whose entry is an L1 with a bad entry.
    let bad_l1 = page_with(w, &[(0, HV_MFN << 12 | LEAF_RO)]);
    let p = page_with(w, &[(0, bad_l1 << 12 | TABLE)]);
    refused(
        "pin an L2 -> an L1 with frame 0x100 in it: -EPERM",
        pin(2, p),
        EPERM,
    );
    check(
        "the L2 and that L1 are ordinary memory afterwards",
        is_ordinary(w, p) && is_ordinary(w, bad_l1),
        format_args!("typed"),
    );
    // Nested, with a good L1 validated before the bad one: what was
    // validated is undone (as Xen does), so the good L1 is ordinary again.
    let good_l1 = page_with(w, &[]);
    let p = page_with(w, &[(0, good_l1 << 12 | TABLE), (1, bad_l1 << 12 | TABLE)]);
    refused(
        "pin an L2 -> [a good L1, an L1 with frame 0x100]: -EPERM",
        pin(2, p),
        EPERM,
    );
    check(
        "after that failed pin, the good L1 and the L2 are ordinary memory again",
        is_ordinary(w, good_l1) && is_ordinary(w, p),
        format_args!(
            "good L1 ordinary: {}, L2 ordinary: {}",
            is_ordinary(w, good_l1),
            is_ordinary(w, p)
        ),
    );
}

/// A read-only leaf entry for a fresh page of ours.
fn own_leaf() -> u64 {
    static PAGE: pvguest::cell::GuestCell<u64> = pvguest::cell::GuestCell::new(0);
    if PAGE.get() == 0 {
        PAGE.set(alloc_page().1);
    }
    PAGE.get() << 12 | LEAF_RO
}

fn base_pointers(w: &Window) {
    let l3 = table_of(VIRT_BASE, 3).unwrap();
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let l1 = boot_l1();
    let pinned_l1 = page_with(w, &[]);
    pin(1, pinned_l1);
    let (_, rw) = alloc_page();
    w.map(2, rw, LEAF_RW);
    // Copies of our L4 with one bad entry (slot 300): were one accepted,
    // we would still run, and switch back.
    let other = (0..m2p_frames()).find(|&f| foreign(f)).unwrap_or(HV_MFN);
    let bad = l4_copy_with(w, 300, other << 12 | TABLE);
    let reserved = l4_copy_with(w, 300, PCD | l3 << 12 | TABLE);
    for (what, f, want) in [
        ("our L3", l3, EINVAL),
        ("our L2", l2, EINVAL),
        ("a bootstrap L1", l1, EINVAL),
        ("a pinned L1", pinned_l1, EINVAL),
        ("a frame mapped writable", rw, EINVAL),
        ("a page with another domain's frame in it", bad, EPERM),
        ("a page with a reserved bit in an entry", reserved, EINVAL),
    ] {
        let w2 = Name::new(format_args!(
            "-{}",
            abi::errno_name(-want as i32).unwrap_or("?")
        ));
        if refused(
            Name::new(format_args!("NEW_BASEPTR to {what}: {}", w2.as_str())).as_str(),
            ext(abi::MMUEXT_NEW_BASEPTR, f),
            want,
        ) {
            ext(abi::MMUEXT_NEW_BASEPTR, l4_mfn());
        }
        if refused(
            Name::new(format_args!("NEW_USER_BASEPTR to {what}: {}", w2.as_str())).as_str(),
            ext(abi::MMUEXT_NEW_USER_BASEPTR, f),
            want,
        ) {
            ext(abi::MMUEXT_NEW_USER_BASEPTR, 0);
        }
    }
    w.unmap(2);
    unpin(pinned_l1);
    expect_fault("mov %cr3 with our L3: #GP(0)", 13, Some(0), || {
        // SAFETY: refused (emulated, the frame is no L4): faults.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) l3 << 12) };
    });
    // An unpinned copy of our L4: a good base pointer.
    let l4 = l4_mfn();
    let copy = l4_copy(w);
    if check_rc(
        "NEW_BASEPTR to an unpinned copy of our L4: 0",
        ext(abi::MMUEXT_NEW_BASEPTR, copy),
        0,
    ) {
        check_eq("running on it: cr3", pvguest::cpu::read_cr3(), copy << 12);
        check_rc("NEW_BASEPTR back", ext(abi::MMUEXT_NEW_BASEPTR, l4), 0);
    }
    check(
        "the copy, no longer used, is ordinary memory again",
        is_ordinary(w, copy),
        format_args!("typed"),
    );
    // NEW_USER_BASEPTR and 0 (the user table's reference goes).
    let copy = l4_copy(w);
    check_rc(
        "NEW_USER_BASEPTR to a copy of our L4: 0",
        ext(abi::MMUEXT_NEW_USER_BASEPTR, copy),
        0,
    );
    refused(
        "while it is the user table, mapping it writable: -EINVAL",
        w.map(2, copy, LEAF_RW),
        EINVAL,
    );
    check_rc(
        "NEW_USER_BASEPTR 0",
        ext(abi::MMUEXT_NEW_USER_BASEPTR, 0),
        0,
    );
    check(
        "the former user table is ordinary memory again",
        is_ordinary(w, copy),
        format_args!("typed"),
    );
}

fn entries(w: &Window, slot: usize) {
    let (_, f) = alloc_page();
    let mut s = Sweep::new(
        format_args!("an L1 entry with bit 62 (Xen's) or PWT, PCD, PAT: -EINVAL"),
        EINVAL,
    );
    for bit in [62, 3, 4, 7] {
        if s.one(bit, w.map(1, f, LEAF_RO | 1 << bit)) {
            w.unmap(1);
        }
    }
    s.end();
    // Xen's page.h: "range [62:52] is available for software use" (62 in
    // an L1 entry is its own); the CPU ignores them.
    let mut s = Sweep::new(
        format_args!("an L1 entry with one of the software bits 52-61: 0, stored as given"),
        0,
    );
    for bit in 52..62 {
        let rc = w.map(1, f, LEAF_RO | 1 << bit);
        let e = w.entry(1);
        if rc == 0 && (e & 1 << bit == 0 || e & ADDR != f << 12) {
            s.bad(bit);
        } else {
            s.one(bit, rc);
        }
        w.unmap(1);
    }
    s.end();
    let l4 = l4_mfn();
    let l3 = table_of(VIRT_BASE, 3).unwrap();
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let l1 = boot_l1();
    let l2e = (l2 << 12) | (slot as u64 * 8);
    let l3free = (0..512).rev().find(|&i| pte(l3, i) & P == 0).unwrap() as u64;
    let l3e = (l3 << 12) | (l3free * 8);
    let l4e = (l4 << 12) | (300 * 8);
    let t = page_with(w, &[]);
    for (case, ptr, val) in [
        ("an L2 entry with PCD: -EINVAL", l2e, PCD | l1 << 12 | TABLE),
        ("an L3 entry with PWT: -EINVAL", l3e, PWT | l2 << 12 | TABLE),
        (
            "an L4 entry with _PAGE_GLOBAL: -EINVAL",
            l4e,
            G | t << 12 | TABLE,
        ),
        (
            "an L2 entry with PS (2 MiB of our memory): -EINVAL",
            l2e,
            (p2m(0) << 12) & !0x1f_f000 | TABLE | PS,
        ),
        ("an L3 entry with PS (1 GiB): -EINVAL", l3e, TABLE | PS),
        ("an L4 entry with PS: -EINVAL", l4e, TABLE | PS),
    ] {
        if refused(case, mmu1(ptr, val), EINVAL) {
            mmu1(ptr, 0);
        }
    }
    if refused(
        "an L1 entry with an address beyond RAM: -EPERM",
        w.map(1, 0xf_ffff_ffff, LEAF_RO),
        EPERM,
    ) {
        w.unmap(1);
    }
    check_rc("an L1 entry with NX: 0", w.map(1, f, LEAF_RO | NX), 0);
    check_rc(
        "an L1 entry with the available bits 9-11: 0",
        w.map(1, f, LEAF_RO | 7 << 9),
        0,
    );
    check_rc(
        "an L1 entry with _PAGE_GLOBAL, without _PAGE_USER: 0",
        w.map(1, f, P | RW | A | D | G),
        0,
    );
    let e = w.entry(1);
    check(
        "  ... stored without _PAGE_GLOBAL, with _PAGE_USER",
        e & G == 0 && e & US != 0,
        format_args!("{e:#x}"),
    );
    w.unmap(1);
}

fn writable_pagetables(w: &Window, slot: usize) {
    check_rc(
        "vm_assist(enable, writable_pagetables)",
        common::writable_pagetables(true),
        0,
    );
    let l1va = w.va(WINDOW_SELF);
    let e = |i: u64| l1va + i * 8;
    let other = (0..m2p_frames()).find(|&f| foreign(f)).unwrap_or(0x101);
    let mut s = Sweep::new(
        format_args!("writable page tables: a bad entry stored directly into an L1: #PF ec 3"),
        14,
    );
    for (i, v) in [
        (20u64, other << 12 | LEAF_RO),
        (21, HV_MFN << 12 | LEAF_RO),
        (22, l4_mfn() << 12 | LEAF_RW),
        (23, 1 << 62 | own_leaf()),
    ] {
        match catch(|| store64(e(i), v)) {
            Err(t) if t.vector == 14 && t.error_code == 3 && t.cr2 == e(i) && w.entry(i) == 0 => {
                s.ok()
            }
            Err(t) => {
                s.one(i, -(t.vector as i64));
            }
            Ok(()) => s.bad(i),
        }
    }
    s.end();
    // A partial store (here 32 bits of a not-present entry) is applied to
    // the whole entry and checked as one, as Xen's ptwr does.
    let r = catch(|| {
        // SAFETY: emulated (a not-present entry's low half).
        unsafe { core::arch::asm!("mov dword ptr [{}], {:e}", in(reg) e(24), in(reg) 0x1234u32) };
    });
    check(
        "writable page tables: a 32-bit store into an L1 entry: applied to the entry",
        r.is_ok() && w.entry(24) == 0x1234,
        format_args!("{r:?}, entry {:#x}", w.entry(24)),
    );
    w.unmap(24);
    // The read-modify-write forms a kernel uses on an entry (Xen's ptwr
    // emulates them): clear RW with `lock andb` of the low byte (UP Linux's
    // ptep_set_wrprotect is `ds andb $0xfd`), set it again with `lock bts`,
    // clear it with `lock btr` (CF = the old bit), or in the accessed bit.
    let leaf = own_leaf() | RW;
    check_rc(
        "writable page tables: an own leaf, writable, at entry 25",
        mmu1((w.l1 << 12) | (25 * 8), leaf),
        0,
    );
    let at = e(25);
    let r = catch(|| {
        // SAFETY: emulated: the low byte of our own L1 entry.
        unsafe { core::arch::asm!("lock and byte ptr [{}], 0xfd", in(reg) at) };
    });
    check(
        "  ... lock andb $0xfd: RW cleared, the rest kept",
        r.is_ok() && w.entry(25) == leaf & !RW | US,
        format_args!("{r:?} {:#x}", w.entry(25)),
    );
    let r = catch(|| {
        // SAFETY: emulated: bit 1 of our own L1 entry.
        unsafe { core::arch::asm!("lock bts qword ptr [{}], 1", in(reg) at) };
    });
    check(
        "  ... lock btsq $1: RW set again",
        r.is_ok() && w.entry(25) & RW != 0,
        format_args!("{r:?} {:#x}", w.entry(25)),
    );
    let cf: u64;
    // SAFETY: emulated: bit 1 of our own L1 entry; CF read right after.
    unsafe {
        core::arch::asm!("lock btr qword ptr [{}], 1", "setc {c}", "movzx {o}, {c}", in(reg) at, c = out(reg_byte) _, o = out(reg) cf)
    };
    check(
        "  ... lock btrq $1: RW cleared, CF = 1 (it was set)",
        cf == 1 && w.entry(25) & RW == 0,
        format_args!("cf {cf} {:#x}", w.entry(25)),
    );
    w.unmap(25);
    expect_fault(
        "writable page tables: xchg of another domain's frame into an L1: #PF ec 3",
        14,
        Some(3),
        || {
            let mut v = other << 12 | LEAF_RO;
            // SAFETY: faults (refused by the emulation).
            unsafe { core::arch::asm!("xchg qword ptr [{}], {}", in(reg) e(25), inout(reg) v) };
            let _ = v;
        },
    );
    // Nested: an L2 entry stored directly, -> an L1 with a bad entry.
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let bad_l1 = page_with(w, &[(0, HV_MFN << 12 | LEAF_RO)]);
    let l2va = table_va(l2).unwrap() + slot as u64 * 8;
    let before = pte(l2, slot);
    expect_fault(
        "writable page tables: an L2 entry -> an L1 with frame 0x100 in it: #PF ec 3",
        14,
        Some(3),
        || store64(l2va, bad_l1 << 12 | TABLE),
    );
    check_eq("  ... the L2 entry is unchanged", pte(l2, slot), before);
    // The control: a good entry is applied.
    let (_, f) = alloc_page();
    let r = catch(|| store64(e(26), f << 12 | LEAF_RW));
    check(
        "writable page tables: a good entry stored directly is applied",
        r.is_ok() && w.entry(26) & ADDR == f << 12,
        format_args!("{:#x}", w.entry(26)),
    );
    poke(w.va(26), 0xabcd);
    let mut old = 0u64;
    let r = catch(|| {
        let mut v = 0u64;
        // SAFETY: emulated: swaps the entry with 0.
        unsafe { core::arch::asm!("xchg qword ptr [{}], {}", in(reg) e(26), inout(reg) v) };
        old = v;
    });
    check(
        "writable page tables: xchg of 0 returns the old entry and clears it",
        r.is_ok() && old & ADDR == f << 12 && w.entry(26) == 0,
        format_args!("old {old:#x}, now {:#x}", w.entry(26)),
    );
    check_rc(
        "vm_assist(disable, writable_pagetables)",
        common::writable_pagetables(false),
        0,
    );
}

fn batches(w: &Window) {
    let (_, a) = alloc_page();
    let (_, b) = alloc_page();
    let reqs = [
        MmuUpdate {
            ptr: w.pte_maddr(30),
            val: a << 12 | LEAF_RO,
        },
        MmuUpdate {
            ptr: w.pte_maddr(31),
            val: HV_MFN << 12 | LEAF_RO,
        },
        MmuUpdate {
            ptr: w.pte_maddr(32),
            val: b << 12 | LEAF_RO,
        },
    ];
    let (rc, done) = mmu(&reqs);
    check_rc("mmu_update [good, frame 0x100, good]: -EPERM", rc, EPERM);
    check_eq("  ... done = 1", done, 1);
    check(
        "  ... only the first applied",
        w.entry(30) & ADDR == a << 12 && w.entry(31) == 0 && w.entry(32) == 0,
        format_args!("{:#x} {:#x} {:#x}", w.entry(30), w.entry(31), w.entry(32)),
    );
    w.unmap(30);
    // MMU_PT_UPDATE_PRESERVE_AD: the entry keeps the accessed and dirty
    // bits it had (Xen's update_intpte with preserve_ad); a normal update
    // writes them as given.
    let (_, g) = alloc_page();
    check_rc(
        "mmu_update: a page mapped with A and D set",
        mmu1(w.pte_maddr(41), g << 12 | LEAF_RW),
        0,
    );
    check_rc(
        "MMU_PT_UPDATE_PRESERVE_AD of the entry without A and D: 0",
        mmu1(
            w.pte_maddr(41) | abi::MMU_PT_UPDATE_PRESERVE_AD,
            g << 12 | (LEAF_RW & !(A | D)),
        ),
        0,
    );
    check_eq("  ... A and D kept", w.entry(41) & (A | D), A | D);
    check_rc(
        "MMU_NORMAL_PT_UPDATE of the entry without A and D: 0",
        mmu1(w.pte_maddr(41), g << 12 | (LEAF_RW & !(A | D))),
        0,
    );
    check_eq("  ... A and D cleared", w.entry(41) & (A | D), 0);
    w.unmap(41);
}

fn misuse(w: &Window) {
    let l4 = l4_mfn();
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    refused("pin the pinned L4 again: -EINVAL", pin(4, l4), EINVAL);
    refused(
        "unpin an unpinned table (our L2): -EINVAL",
        unpin(l2),
        EINVAL,
    );
    let (_, f) = alloc_page();
    refused("unpin an ordinary page: -EINVAL", unpin(f), EINVAL);
    check_rc(
        "mmu_update of an entry in an ordinary page: 0 (written like memory)",
        mmu1(f << 12 | 8, 0x1234_5678_9abc_def0),
        0,
    );
    w.map(30, f, LEAF_RW);
    // SAFETY: our own page, just mapped at slot 30 of the window.
    let v = unsafe { core::ptr::read_volatile((w.va(30) + 8) as *const u64) };
    check_eq("  ... and the value is there", v, 0x1234_5678_9abc_def0);
    w.unmap(30);
    for cmd in 3..8 {
        refused(
            Name::new(format_args!("mmu_update command {cmd}: -ENOSYS")).as_str(),
            mmu1(w.pte_maddr(40) | cmd, 0),
            ENOSYS,
        );
    }
    check_rc("pin our L2 (linked already): 0", pin(2, l2), 0);
    check_rc("unpin it: 0", unpin(l2), 0);
    refused(
        "still linked, it still cannot be mapped writable: -EINVAL",
        w.map(1, l2, LEAF_RW),
        EINVAL,
    );
    // (0 done is counted as -EPERM, 1 done as 0.)
    let mut s = Sweep::new(
        format_args!("decrease_reservation of our page tables: 0 done"),
        EPERM,
    );
    for pfn in boot_pt_pfns() {
        s.one(pfn, give_back_rc(p2m(pfn)));
    }
    s.one(w.l1, give_back_rc(w.l1));
    s.end();
    let mut l = [p2m(0)];
    check_eq(
        "decrease_reservation of a mapped page (our image): 0 done",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        0,
    );
}

fn console_page(si: &StartInfo) {
    let c = si.console.mfn;
    let Some(va) = boot_va(c) else {
        fail(
            "the console ring is in the bootstrap region",
            format_args!("frame {c:#x}"),
        );
        return;
    };
    check_rc("unmap the console ring", uvm(va, 0), 0);
    if refused("pin the console ring as an L1: -EINVAL", pin(1, c), EINVAL) {
        unpin(c);
    }
    let mut l = [c];
    check_eq(
        "give the console ring back: 0 done",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        0,
    );
    check_rc("map it again", uvm(va, c << 12 | LEAF_RW), 0);
}

fn vcpu_info_page() {
    let (_, v) = alloc_page();
    let rc = register_vcpu_info(v, 0);
    if !check_rc("register_vcpu_info in a page of ours", rc, 0) {
        return;
    }
    // The hypervisor writes it: yield a little so it surely has.
    for _ in 0..3 {
        pvguest::events::yield_now();
    }
    if refused(
        "the vcpu_info page cannot become an L1: -EINVAL",
        pin(1, v),
        EINVAL,
    ) {
        unpin(v);
    }
    let mut l = [v];
    check_eq(
        "the vcpu_info page cannot be given back: 0 done",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        0,
    );
}
