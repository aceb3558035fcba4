//! `guest-hostile-hypervisor`: reaching the hypervisor's memory: its
//! frames (the image at 0x100.., low memory, every frame of no domain,
//! device memory), its L4 slots (256-271), its address range, the M2P.
//! Each attack must be refused and change nothing; expected values are
//! ringvisor's (where Xen 4.17 answers differently, guests/README.md says
//! so).
//!
//! Command line: `victim=D port=P` (optional), as guest-hostile-foreign.
//!
//! Cases:
//! - Direct accesses from the guest kernel: read / write of the direct map
//!   (0xffff830000000000, and the direct-map alias of our own L4 frame), of
//!   the hypervisor's text (0xffff82d080100000) and fixmap, and a call into
//!   the text → #PF (present: ec 1 read, 3 write, 0x11 fetch; U clear in
//!   guest kernel mode), cr2 the address; one address in each hypervisor
//!   L4 slot 257-271 and past the M2P in slot 256 → #PF; a non-canonical
//!   read → #GP(0).
//! - The M2P: reading it works (our L4 frame's entry is its page); writing
//!   it → #PF ec 3, the entry unchanged.
//! - `update_va_mapping` read-only of every frame of no domain (M2P
//!   invalid: the hypervisor's, free ones, other domains' shared_info) →
//!   `-EPERM`; every 16th (and all of the image, 0x100-0x1ff, and low
//!   memory): writable, `mmu_update` L1
//!   entry, L2 entry as an L1 table, pin as L1 and L4, `NEW_BASEPTR`,
//!   `decrease_reservation` (0 done) → `-EPERM`; `set_gdt`,
//!   `register_vcpu_info` → `-EINVAL`; `update_descriptor` → `-EPERM`;
//!   device and absent frames (local APIC, I/O APIC, HPET, VGA, 0xfffff,
//!   1 TiB, 2^40 - 1) → `-EPERM`.
//! - L4 slots 256-271 of our own L4: `mmu_update` with 0, with one of our
//!   L3s, with the hypervisor's own entry → `-EINVAL`, the slot unchanged;
//!   with writable page tables on, a direct store there → #PF ec 3 (a
//!   store to a guest slot is applied: the control).
//! - An L4 of our own with forged entries in slots 256-271: pinning it
//!   works and the hypervisor's entries replace ours; running on it
//!   (`NEW_BASEPTR`), the forged mapping is not there (#PF) and the M2P
//!   is; back on our L4, the copy unpinned is ordinary memory again
//!   (mappable writable).
//! - Superpages over hypervisor memory: an L2 entry of 2 MiB and an L3
//!   entry of 1 GiB at physical 0 → `-EINVAL`.
//! - `update_va_mapping` of an address in the hypervisor's range (direct
//!   map, M2P) or non-canonical → `-EINVAL`.
//! - `MMU_MACHPHYS_UPDATE` (the M2P by hypercall): frame 0x100 →
//!   `-EPERM`; our own frame with any page number (2^40, past our
//!   memory) → 0, as Xen (set back to its own page after).
//!
//! As the initial domain (`SIF_INITDOMAIN`; the sweeps above then leave
//! out the I/O frames, which it may map), I/O memory as Xen's
//! get_page_from_l1e gives it to a domain with I/O capabilities
//! (`iomem_as_d0`; frames from `XENMEM_machine_memory_map`):
//! - I/O frames (the first MiB: 0, 0x9f, 0xa0, 0xb8, 0xf0, 0xff; the
//!   first frame of each e820 region above 1 MiB that is not RAM; a hole
//!   below 4 GiB) → 0 read-only and writable, readable; the entry as
//!   stored has its cache attributes flipped to uncached as Xen's (WB and
//!   WT get PCD|PWT, WP PCD|PWT without PAT; UC, UC- and WC stay);
//! - the local APIC, the MSI range, the I/O APIC range → `-EPERM`; the
//!   HPET page writable → 0 but stored read-only;
//! - RAM of no domain (the hypervisor's image at 0x100) with cache
//!   attributes → `-EPERM`; a page of our own uncached → 0 (a domain with
//!   I/O memory chooses); our shared_info uncached → `-EACCES`;
//! - every frame of another domain (the victim's, when there is one) →
//!   `-EPERM` read-only and writable: I/O capabilities give nothing of
//!   another domain's RAM.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

#[path = "../../hostile-foreign/src/common.rs"]
mod common;

use common::*;
use pvguest::abi::{self, StartInfo};
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc, fail, info, Rc};
use pvguest::traps::{self, catch, expect_fault};

pvguest::guest_main!("hostile-hypervisor", run);

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    let link = link_victim();
    info(format_args!(
        "nr_pages {}, M2P covers {:#x} frames, maximum_ram_page {:#x}, L4 {:#x}",
        nr_pages(),
        m2p_frames(),
        max_mfn(),
        l4_mfn()
    ));
    let w = Window::new(free_l2_slot(0));
    direct_accesses();
    m2p_table();
    timed("frames of no domain", || {
        frames_of_no_domain(&w, free_l2_slot(1))
    });
    if !is_d0() {
        device_frames(&w); // the initial domain's are iomem_as_d0's
    }
    l4_slots();
    forged_l4(&w);
    superpages(free_l2_slot(2));
    hypervisor_addresses();
    machphys();
    if is_d0() {
        iomem_as_d0(&w);
    }
    victim_done(&link);
}

/// The initial domain's I/O memory (see the cases above).
fn iomem_as_d0(w: &Window) {
    const PAT: u64 = 1 << 7; // in a 4 KiB entry
    const CACHE: u64 = PWT | PCD | PAT;
    let mut frames = [0u64; 40];
    let mut n = 0;
    for f in [0, 0x9f, 0xa0, 0xb8, 0xf0, 0xff] {
        frames[n] = f;
        n += 1;
    }
    for e in e820() {
        let (addr, t) = (e.addr, e.type_);
        // Below 4 GiB (QEMU's reservation at 0xfd00000000 is AMD's
        // HyperTransport range, refused as Xen's dom0 gets it).
        if addr >= 1 << 20 && t != 1 && t != 5 && addr < 1 << 32 && n < 39 {
            frames[n] = addr >> 12;
            n += 1;
        }
    }
    // A hole below 4 GiB: the first frame above 1 MiB no region covers.
    if let Some(h) = (0x100..0x10_0000u64).step_by(0x100).find(|&f| {
        !e820().iter().any(|e| {
            let (addr, size) = (e.addr, e.size);
            addr < (f + 1) << 12 && addr + size > f << 12
        }) && !(0xfec00..0xfef00).contains(&f)
    }) {
        frames[n] = h;
        n += 1;
    }
    let frames = &frames[..n];
    info(format_args!(
        "I/O frames tried as the initial domain: {frames:#x?}"
    ));
    // (flags asked, cache attributes stored) as Xen's flip without mmio-relax.
    let cases = [
        (0, PCD | PWT),
        (PWT, PCD | PWT),
        (PWT | PAT, PCD | PWT),
        (PCD, PCD),
        (PCD | PWT, PCD | PWT),
        (PAT, PAT),
    ];
    for &f in frames {
        for (rw, leaf) in [("read-only", LEAF_RO), ("writable", LEAF_RW)] {
            for &(asked, stored) in &cases {
                let rc = w.map(1, f, leaf | asked);
                let e = w.entry(1);
                let ok = rc == 0
                    && e & ADDR == f << 12
                    && e & CACHE == stored
                    && (e & RW != 0) == (leaf & RW != 0);
                check(
                    Name::new(format_args!("d0 maps I/O frame {f:#x} {rw}, attributes {asked:#x}: 0, stored {stored:#x}")).as_str(),
                    ok,
                    format_args!("rc {} entry {e:#x}", Rc(rc)),
                );
                if rc == 0 {
                    // SAFETY: a read of the page just mapped (I/O memory
                    // of the machine: firmware, ACPI, holes read all ones).
                    let r = catch(|| {
                        peek(w.va(1));
                    });
                    check(
                        Name::new(format_args!("  ... frame {f:#x} is readable")).as_str(),
                        r.is_ok(),
                        format_args!("{r:?}"),
                    );
                    w.unmap(1);
                }
            }
        }
    }
    let mut s = Sweep::new(
        format_args!("d0 maps the local APIC, MSI and I/O APIC ranges: -EPERM"),
        EPERM,
    );
    for f in [0xfee00, 0xfee01, 0xfeeff, 0xfec00, 0xfec01, 0xfecff] {
        for flags in [LEAF_RO, LEAF_RW, LEAF_RW | PCD | PWT] {
            if s.one(f, w.map(1, f, flags)) {
                w.unmap(1);
            }
        }
    }
    s.end();
    let rc = w.map(1, 0xfed00, LEAF_RW | PCD | PWT);
    let e = w.entry(1);
    check(
        "d0 maps the HPET writable: 0, stored read-only (Xen's ro_hpet)",
        rc == 0 && e & RW == 0 && e & P != 0,
        format_args!("rc {} entry {e:#x}", Rc(rc)),
    );
    if rc == 0 {
        w.unmap(1);
    }
    let rc = w.map(1, HV_MFN, LEAF_RO | PCD | PWT);
    check_rc(
        "d0 maps the hypervisor's image (RAM of no domain) uncached: -EPERM",
        rc,
        EPERM,
    );
    let (va, mfn) = alloc_page();
    let _ = va;
    let rc = w.map(1, mfn, LEAF_RW | PCD | PWT);
    check_rc("d0 maps a page of its own uncached: 0", rc, 0);
    if rc == 0 {
        check(
            "  ... stored as asked",
            w.entry(1) & CACHE == PCD | PWT,
            format_args!("entry {:#x}", w.entry(1)),
        );
        w.unmap(1);
    }
    let si = pvguest::start_info::start_info().shared_info >> 12;
    check_rc(
        "d0 maps its shared_info uncached: -EACCES (a hypervisor page keeps write-back)",
        w.map(1, si, LEAF_RW | PCD),
        -(abi::EACCES as i64),
    );
    let mut ro = Sweep::new(
        format_args!("d0 maps another domain's frame read-only: -EPERM"),
        EPERM,
    );
    let mut rw = Sweep::new(
        format_args!("d0 maps another domain's frame writable: -EPERM"),
        EPERM,
    );
    let mut n = 0;
    for f in (0..m2p_frames()).filter(|&f| foreign(f)) {
        n += 1;
        if ro.one(f, w.map(1, f, LEAF_RO)) {
            w.unmap(1);
        }
        if rw.one(f, w.map(1, f, LEAF_RW | PCD | PWT)) {
            w.unmap(1);
        }
    }
    ro.end();
    rw.end();
    info(format_args!("{n} frames of other domains tried"));
}

/// #PF at `va` with error code `ec` (`what` the access), cr2 = `va`.
fn pf(case: &str, va: u64, ec: u64, what: impl FnOnce()) {
    if let Some(t) = expect_fault(case, 14, Some(ec), what) {
        if t.vector == 14 && t.cr2 != va {
            fail(case, format_args!("cr2 {:#x}, want {va:#x}", t.cr2));
        }
    }
}

fn direct_accesses() {
    let dm = HV_DIRECTMAP;
    pf("read the hypervisor's direct map: #PF ec 1", dm, 1, || {
        peek(dm);
    });
    pf("write the hypervisor's direct map: #PF ec 3", dm, 3, || {
        poke(dm, 0)
    });
    let alias = dm + (l4_mfn() << 12);
    pf(
        "read our L4 through the direct map: #PF ec 1",
        alias,
        1,
        || {
            peek(alias);
        },
    );
    pf(
        "write our L4 through the direct map: #PF ec 3",
        alias + 8 * 300,
        3,
        || poke(alias + 8 * 300, 0),
    );
    pf("read the hypervisor's text: #PF ec 1", HV_TEXT, 1, || {
        peek(HV_TEXT);
    });
    pf("write the hypervisor's text: #PF ec 3", HV_TEXT, 3, || {
        poke(HV_TEXT, 0xcc)
    });
    pf(
        "call into the hypervisor's text: #PF ec 0x11",
        HV_TEXT,
        0x11,
        || {
            // SAFETY: faults at once (supervisor page): what is tested.
            let f: extern "C" fn() = unsafe { core::mem::transmute(HV_TEXT as usize) };
            f();
        },
    );
    let fixmap = 0xffff_82c0_0000_0000;
    pf(
        "read the hypervisor's fixmap (local APIC): #PF ec 1",
        fixmap,
        1,
        || {
            peek(fixmap);
        },
    );
    // Every other slot of the hypervisor's range, and slot 256 past the M2P.
    let mut s = Sweep::new(
        format_args!("a read in each hypervisor L4 slot 257-271 and past the M2P: #PF"),
        14,
    );
    let past_m2p = M2P_BASE + (m2p_frames() * 8).next_multiple_of(1 << 21);
    for va in core::iter::once(past_m2p).chain((257..272).map(|slot| va_of(slot, 0, 0, 0) + 0x1000))
    {
        match catch(|| {
            peek(va);
        }) {
            Ok(()) => s.bad(va),
            Err(t) => {
                s.one(va, if t.cr2 == va { t.vector as i64 } else { -1 });
            }
        }
    }
    s.end();
    expect_fault("a non-canonical read: #GP(0)", 13, Some(0), || {
        peek(NON_CANONICAL_LOW);
    });
}

fn m2p_table() {
    let l4 = l4_mfn();
    let pfn = (pvguest::start_info::start_info().pt_base - VIRT_BASE) >> 12;
    check_eq(
        "the M2P is readable: our L4 frame's entry is its page",
        m2p(l4),
        pfn,
    );
    let va = M2P_BASE + l4 * 8;
    pf("write the M2P: #PF ec 3", va, 3, || poke(va, 0));
    check_eq("the M2P entry is unchanged", m2p(l4), pfn);
}

/// Frames the M2P says are no domain's (the hypervisor's, free ones, and
/// the domains' shared_info pages, which have no page number), but for our
/// own shared_info.
fn no_domain(f: u64) -> bool {
    !m2p_valid(m2p(f))
        && f != pvguest::start_info::start_info().shared_info >> 12
        && !(is_d0() && io_frame(f))
}

fn is_d0() -> bool {
    pvguest::start_info::start_info().flags & abi::SIF_INITDOMAIN != 0
}

static E820: pvguest::cell::GuestCell<([abi::E820Entry; 32], usize)> =
    pvguest::cell::GuestCell::new((
        [abi::E820Entry {
            addr: 0,
            size: 0,
            type_: 0,
        }; 32],
        0,
    ));

/// The machine's memory map (the initial domain's `XENMEM_machine_memory_map`).
fn e820() -> &'static [abi::E820Entry] {
    if E820.get().1 == 0 {
        let mut e = [abi::E820Entry {
            addr: 0,
            size: 0,
            type_: 0,
        }; 32];
        let mut m = abi::XenMemoryMap {
            nr_entries: 32,
            _pad0: 0,
            buffer: e.as_mut_ptr() as u64,
        };
        // SAFETY: the hypervisor writes up to 32 entries into `e`, then `m`.
        let rc = unsafe { hc::memory_op(abi::XENMEM_MACHINE_MEMORY_MAP, &mut m as *mut _ as u64) };
        if rc != 0 {
            pvguest::report::error(format_args!("XENMEM_machine_memory_map = {}", Rc(rc)));
        }
        E820.set((e, (m.nr_entries as usize).min(32)));
    }
    // SAFETY: set once above and never again; read-only from here on (one
    // vCPU), so a shared reference to it stays valid.
    let (map, n) = unsafe { &*E820.as_ptr() };
    &map[..*n]
}

/// An I/O frame as Xen's arch_init_memory makes them (`dom_io`'s): the
/// first MiB, and whatever the e820 map does not call RAM or unusable.
fn io_frame(f: u64) -> bool {
    f < 0x100
        || !e820().iter().any(|e| {
            let (addr, size, t) = (e.addr, e.size, e.type_);
            (t == 1 || t == 5) && addr < (f + 1) << 12 && addr + size > f << 12
        })
}

fn frames_of_no_domain(w: &Window, spare_l2: usize) {
    let l2e = (w.l2 << 12) | (spare_l2 as u64 * 8);
    let mut ro = Sweep::new(
        format_args!("update_va_mapping read-only of a frame of no domain: -EPERM"),
        EPERM,
    );
    for f in (0..m2p_frames()).filter(|&f| no_domain(f)) {
        if ro.one(f, w.map(1, f, LEAF_RO)) {
            if ro.accepted_count() <= 4 {
                info(format_args!(
                    "mapped frame {f:#x}: reads {:#x}",
                    peek(w.va(1))
                ));
            }
            w.unmap(1);
        }
    }
    ro.end();
    // The rest on every 16th, the image and low memory.
    let sample = |f: u64| no_domain(f) && (f.is_multiple_of(16) || f < 0x200);
    let mut rw = Sweep::new(
        format_args!("update_va_mapping writable of a frame of no domain: -EPERM"),
        EPERM,
    );
    let mut l1 = Sweep::new(
        format_args!("mmu_update our L1 entry -> a frame of no domain: -EPERM"),
        EPERM,
    );
    let mut l2 = Sweep::new(
        format_args!("mmu_update our L2 entry -> a frame of no domain as L1: -EPERM"),
        EPERM,
    );
    let mut ptr = Sweep::new(
        format_args!("mmu_update of an entry inside a frame of no domain: -EPERM"),
        EPERM,
    );
    let mut pin1 = Sweep::new(
        format_args!("pin a frame of no domain as L1: -EPERM"),
        EPERM,
    );
    let mut pin4 = Sweep::new(
        format_args!("pin a frame of no domain as L4: -EPERM"),
        EPERM,
    );
    let mut base = Sweep::new(
        format_args!("NEW_BASEPTR to a frame of no domain: -EPERM"),
        EPERM,
    );
    // 0 extents done counts as refused (-EPERM), 1 as accepted (0).
    let mut dec = Sweep::new(
        format_args!("decrease_reservation of a frame of no domain: 0 done"),
        EPERM,
    );
    let mut gdt = Sweep::new(
        format_args!("set_gdt with a frame of no domain: -EINVAL"),
        EINVAL,
    );
    let mut desc = Sweep::new(
        format_args!("update_descriptor in a frame of no domain: -EPERM"),
        EPERM,
    );
    let mut vi = Sweep::new(
        format_args!("register_vcpu_info in a frame of no domain: -EINVAL"),
        EINVAL,
    );
    for f in (0..m2p_frames()).filter(|&f| sample(f)) {
        if rw.one(f, w.map(1, f, LEAF_RW)) {
            w.unmap(1);
        }
        if l1.one(f, mmu1(w.pte_maddr(1), f << 12 | LEAF_RO)) {
            mmu1(w.pte_maddr(1), 0);
        }
        if l2.one(f, mmu1(l2e, f << 12 | TABLE)) {
            mmu1(l2e, 0);
        }
        ptr.one(f, mmu1(f << 12 | 8, 0));
        if pin1.one(f, pin(1, f)) {
            unpin(f);
        }
        if pin4.one(f, pin(4, f)) {
            unpin(f);
        }
        base.one(f, ext(abi::MMUEXT_NEW_BASEPTR, f));
        dec.one(f, give_back_rc(f));
        gdt.one(f, set_gdt(&[f], 1));
        desc.one(f, update_descriptor(f << 12, 0));
        vi.one(f, register_vcpu_info(f, 0));
    }
    for s in [rw, l1, l2, ptr, pin1, pin4, base, dec, gdt, desc, vi] {
        s.end();
    }
}

fn device_frames(w: &Window) {
    let mut s = Sweep::new(
        format_args!("update_va_mapping of device and absent frames: -EPERM"),
        EPERM,
    )
    .also(
        EINVAL,
        "uncached: PCD/PWT refused before the frame is looked at, as Xen",
    );
    for f in [
        0xfee00,
        0xfec00,
        0xfed00,
        0xb8,
        0xa0,
        0xfffff,
        0x1000_0000,
        (1 << 40) - 1,
        max_mfn(),
        max_mfn() - 1,
    ] {
        for flags in [LEAF_RO, LEAF_RW, LEAF_RW | PCD | PWT] {
            if s.one(f, w.map(1, f, flags)) {
                w.unmap(1);
            }
        }
    }
    s.end();
}

fn l4_slots() {
    let l4 = l4_mfn();
    let l3 = table_of(VIRT_BASE, 3).expect("no L3");
    let before: [u64; 16] = core::array::from_fn(|i| pte(l4, 256 + i));
    let mut s = Sweep::new(
        format_args!("mmu_update of our L4's hypervisor slots 256-271: -EINVAL"),
        EINVAL,
    );
    for slot in 256..272u64 {
        for val in [
            0,
            l3 << 12 | TABLE,
            before[slot as usize - 256],
            HV_MFN << 12 | TABLE,
        ] {
            if s.one(slot, mmu1((l4 << 12) | (slot * 8), val)) {
                mmu1((l4 << 12) | (slot * 8), before[slot as usize - 256]);
            }
        }
    }
    s.end();
    let after: [u64; 16] = core::array::from_fn(|i| pte(l4, 256 + i));
    check(
        "the hypervisor slots of our L4 are unchanged",
        before == after,
        format_args!("{:#x?}", after),
    );

    // Writable page tables: a direct store into the (read-only) L4.
    check_rc(
        "vm_assist(enable, writable_pagetables)",
        writable_pagetables(true),
        0,
    );
    let l4va = pvguest::start_info::start_info().pt_base;
    let at = l4va + 256 * 8;
    pf(
        "writable page tables: store into L4 slot 256: #PF ec 3",
        at,
        3,
        || store64(at, 0),
    );
    let at = l4va + 271 * 8;
    pf(
        "writable page tables: store into L4 slot 271: #PF ec 3",
        at,
        3,
        || store64(at, l3 << 12 | TABLE),
    );
    let guest = l4va + 300 * 8;
    let r = catch(|| store64(guest, 0));
    check(
        "writable page tables: a store of 0 into guest slot 300 is applied",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    check_rc(
        "vm_assist(disable, writable_pagetables)",
        writable_pagetables(false),
        0,
    );
    let after: [u64; 16] = core::array::from_fn(|i| pte(l4, 256 + i));
    check(
        "the hypervisor slots of our L4 are still unchanged",
        before == after,
        format_args!("{:#x?}", after),
    );
}

/// An L4 of our own whose slots 256-271 we filled ourselves.
fn forged_l4(w: &Window) {
    let l4 = l4_mfn();
    let (_, x) = alloc_page();
    let (_, y) = alloc_page();
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    // Y: an L3 whose entry 0 is our image's L2 (so slot 257 would map our
    // image at 0xffff808000000000 if it were honoured).
    w.map(2, y, LEAF_RW);
    poke(w.va(2), l2 << 12 | TABLE);
    w.unmap(2);
    w.map(2, x, LEAF_RW);
    for i in 0..512u64 {
        let v = if (256..272).contains(&i) {
            y << 12 | TABLE
        } else {
            pte(l4, i as usize)
        };
        poke(w.va(2) + i * 8, v);
    }
    w.unmap(2);
    if !check_rc(
        "pin an L4 with forged hypervisor slots: 0 (they are replaced)",
        pin(4, x),
        0,
    ) {
        return;
    }
    w.map(2, x, LEAF_RO);
    set_table_va(x, w.va(2));
    // (The CPU sets the accessed bit in the live one as it walks it.)
    let differs = (256..272).find(|&i| (pte(x, i) ^ pte(l4, i)) & !(A | D) != 0);
    check(
        "its slots 256-271 are the hypervisor's",
        differs.is_none(),
        format_args!(
            "slot {0}: {1:#x}, ours {2:#x}",
            differs.unwrap_or(0),
            pte(x, differs.unwrap_or(0)),
            pte(l4, differs.unwrap_or(0))
        ),
    );
    check_rc(
        "the forged L3 did not become a page table (mappable writable)",
        w.map(3, y, LEAF_RW),
        0,
    );
    w.unmap(3);
    if check_rc("NEW_BASEPTR to it", ext(abi::MMUEXT_NEW_BASEPTR, x), 0) {
        let forged = va_of(257, 0, 0, 0);
        let r = catch(|| {
            peek(forged);
        });
        check(
            "running on it, the forged slot maps nothing of ours",
            r.is_err(),
            format_args!("{forged:#x} readable"),
        );
        check_eq(
            "running on it, the M2P is the M2P",
            m2p(l4),
            (pvguest::start_info::start_info().pt_base - VIRT_BASE) >> 12,
        );
        check_rc(
            "NEW_BASEPTR back to our L4",
            ext(abi::MMUEXT_NEW_BASEPTR, l4),
            0,
        );
    }
    w.unmap(2);
    check_rc("unpin the copy", unpin(x), 0);
    check_rc(
        "the copy, unreferenced, is ordinary memory again (mappable writable)",
        w.map(2, x, LEAF_RW),
        0,
    );
    w.unmap(2);
}

fn superpages(slot: usize) {
    let l2 = table_of(VIRT_BASE, 2).unwrap();
    let l3 = table_of(VIRT_BASE, 3).unwrap();
    check_rc(
        "L2 entry: a 2 MiB page at physical 0 (the hypervisor's image): -EINVAL",
        mmu1((l2 << 12) | (slot as u64 * 8), P | RW | US | A | D | PS),
        EINVAL,
    );
    let l3slot = (0..512).rev().find(|&i| pte(l3, i) & P == 0).unwrap_or(0);
    check_rc(
        "L3 entry: a 1 GiB page at physical 0: -EINVAL",
        mmu1((l3 << 12) | (l3slot as u64 * 8), P | RW | US | A | D | PS),
        EINVAL,
    );
}

fn hypervisor_addresses() {
    let (_, f) = alloc_page();
    for (case, va) in [
        (
            "update_va_mapping at the hypervisor's direct map: -EINVAL",
            HV_DIRECTMAP,
        ),
        ("update_va_mapping at the M2P: -EINVAL", M2P_BASE),
        (
            "update_va_mapping at the hypervisor's text: -EINVAL",
            HV_TEXT,
        ),
        (
            "update_va_mapping at a non-canonical address: -EINVAL",
            NON_CANONICAL_LOW,
        ),
    ] {
        check_rc(case, uvm(va, f << 12 | LEAF_RW), EINVAL);
    }
}

fn machphys() {
    check_rc(
        "MMU_MACHPHYS_UPDATE of frame 0x100: -EPERM",
        mmu1(HV_MFN << 12 | abi::MMU_MACHPHYS_UPDATE, 0),
        EPERM,
    );
    let (pfn, f) = alloc_page();
    check_rc(
        "MMU_MACHPHYS_UPDATE of our frame to page 2^40: 0 (any page number, as Xen)",
        mmu1(f << 12 | abi::MMU_MACHPHYS_UPDATE, 1 << 40),
        0,
    );
    check_eq("its M2P entry", m2p(f), 1 << 40);
    check_rc(
        "MMU_MACHPHYS_UPDATE of our frame to its own page: 0",
        mmu1(f << 12 | abi::MMU_MACHPHYS_UPDATE, pfn),
        0,
    );
    check_eq("its M2P entry", m2p(f), pfn);
}
