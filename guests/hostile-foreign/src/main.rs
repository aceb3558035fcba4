//! `guest-hostile-foreign`: every way to reach a frame outside its own P2M
//! that this guest knows of, tried on every frame the M2P says belongs to
//! another domain (the victim's and the other attackers'). Each attack must
//! be refused and change nothing; expected values are ringvisor's (where
//! Xen 4.17 answers differently, guests/README.md says so).
//!
//! Command line: `victim=D port=P` (optional): bind to the victim's port
//! first (it allocates it once its memory is filled) and notify it at the
//! end.
//!
//! Cases, for each frame F of another domain (the frames whose M2P entry
//! names a page but which are not in our P2M):
//! - `update_va_mapping` of F read-only and writable → `-EPERM`;
//! - `mmu_update` of our L1 entry → F (plain and `PRESERVE_AD`) → `-EPERM`;
//!   of our L2 entry → F as an L1 table → `-EPERM`;
//! - `mmu_update` with `ptr` in F (write its entry 0) → `-EPERM`;
//! - `MMU_MACHPHYS_UPDATE` of F → `-EPERM`;
//! - `mmuext_op` pin F as L1, L2, L3, L4 → `-EPERM` (or `-EINVAL` when its
//!   owner has pinned it: counted, see guests/README.md); unpin F →
//!   `-EINVAL`; `NEW_BASEPTR` / `NEW_USER_BASEPTR` F → `-EPERM`;
//!   `CLEAR_PAGE` / `COPY_PAGE` (not implemented) → `-ENOSYS`;
//! - `decrease_reservation([F])` → 0 extents done;
//! - `register_vcpu_info(F)`, `set_gdt([F])` → `-EINVAL`;
//! - afterwards none of it is mapped (our window's L1 is empty).
//!
//! And, naming another domain: `mmu_update`/`mmuext_op`/
//! `update_va_mapping_otherdomain` with its domid, `DOMID_IO`,
//! `DOMID_XEN` → `-EPERM`, with one that does not exist → `-ESRCH`; `memory_op` current/maximum
//! reservation and increase/decrease reservation of it → `-EPERM`;
//! `EVTCHNOP_alloc_unbound` / `status` in it → `-EPERM`;
//! `bind_interdomain` to its ports that are not for us → `-EINVAL`;
//! `domctl`, `sysctl` → `-ENOSYS`;
//! `grant_table_op` `setup_table`, `query_size` and `map_grant_ref` naming
//! it → 0 with `GNTST_permission_denied` in the struct (a domain's own
//! grants only), nothing of its table handed out.
//!
//! Frames handed over are clean: every page of ours above the bootstrap
//! region reads zero at start; pages given back (`decrease_reservation`,
//! 1 done each) are no longer ours (mapping them → `-EPERM`, M2P invalid);
//! `increase_reservation` gives zeroed frames of ours; a page still mapped
//! cannot be given back (0 done).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

mod common;

use common::*;
use pvguest::abi::{self, MmuExtOp, MmuUpdate, StartInfo};
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, fail, info, pass, Rc};
use pvguest::traps;

pvguest::guest_main!("hostile-foreign", run);

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    let link = link_victim();
    info(format_args!(
        "nr_pages {}, bootstrap pages {}, M2P covers {:#x} frames, maximum_ram_page {:#x}, L4 {:#x}",
        nr_pages(),
        boot_pages(),
        m2p_frames(),
        max_mfn(),
        l4_mfn()
    ));
    let w = Window::new(free_l2_slot(0));
    let spare_l2 = free_l2_slot(1);
    clean_memory(&w);
    let n = timed("foreign frames", || foreign_frames(&w, spare_l2));
    if link.is_some() {
        check(
            "other domains' frames were found",
            n > 0,
            format_args!("none in the M2P"),
        );
    }
    naming_other_domains(&link);
    give_back(&w);
    window_empty(&w);
    victim_done(&link);
}

/// Every page above the bootstrap region reads zero: nothing another
/// domain (or the hypervisor) left in a frame reaches us.
fn clean_memory(w: &Window) {
    let mut s = Sweep::new(
        format_args!("our pages above the bootstrap region are zero at start"),
        0,
    );
    for pfn in next_free_pfn()..nr_pages() {
        let mfn = p2m(pfn);
        if w.map(0, mfn, LEAF_RO) != 0 {
            s.one(pfn, -1);
            continue;
        }
        let va = w.va(0);
        // SAFETY: a page of ours mapped read-only just above.
        let nonzero =
            (0..512).any(|i| unsafe { ((va + i * 8) as *const u64).read_volatile() } != 0);
        if nonzero {
            s.bad(pfn);
        } else {
            s.ok();
        }
    }
    w.unmap(0);
    s.end();
}

/// Why pinning another domain's frame may say -EINVAL.
const PINNED: &str = "already pinned by its owner: ringvisor looks at the pin bit before the owner";

fn op(cmd: u32, arg1: u64, arg2: u64) -> i64 {
    ext_done(MmuExtOp {
        cmd,
        _pad0: 0,
        arg1,
        arg2,
    })
    .0
}

/// Runs `attack` on every frame of another domain, as one sweep.
fn sweep(
    what: core::fmt::Arguments<'_>,
    want: i64,
    also: Option<(i64, &'static str)>,
    mut attack: impl FnMut(u64) -> i64,
    mut undo: impl FnMut(u64),
) -> u64 {
    let mut s = Sweep::new(what, want);
    if let Some((rc, why)) = also {
        s = s.also(rc, why);
    }
    for f in 0..m2p_frames() {
        if foreign(f) && s.one(f, attack(f)) {
            undo(f);
        }
    }
    let n = s.tried;
    s.end();
    n
}

/// Every attack on every frame of another domain; returns how many frames.
fn foreign_frames(w: &Window, spare_l2: usize) -> u64 {
    let l2e = (w.l2 << 12) | (spare_l2 as u64 * 8);
    let va = w.va(1);
    let n = sweep(
        format_args!("update_va_mapping read-only of another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| w.map(1, f, LEAF_RO),
        |f| {
            info(format_args!(
                "mapped frame {f:#x} of another domain: it reads {:#x}",
                peek(va)
            ));
            w.unmap(1);
        },
    );
    sweep(
        format_args!("update_va_mapping writable of another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| w.map(1, f, LEAF_RW),
        |_| {
            w.unmap(1);
        },
    );
    sweep(
        format_args!("mmu_update our L1 entry -> another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| mmu1(w.pte_maddr(1), f << 12 | LEAF_RW),
        |_| {
            mmu1(w.pte_maddr(1), 0);
        },
    );
    sweep(
        format_args!("mmu_update (PRESERVE_AD) our L1 entry -> another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| {
            mmu1(
                w.pte_maddr(1) | abi::MMU_PT_UPDATE_PRESERVE_AD,
                f << 12 | LEAF_RO,
            )
        },
        |_| {
            mmu1(w.pte_maddr(1), 0);
        },
    );
    sweep(
        format_args!("mmu_update our L2 entry -> another domain's frame as L1: -EPERM"),
        EPERM,
        None,
        |f| mmu1(l2e, f << 12 | TABLE),
        |_| {
            mmu1(l2e, 0);
        },
    );
    sweep(
        format_args!("mmu_update of an entry inside another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| mmu1(f << 12, 0),
        |_| {},
    );
    sweep(
        format_args!("MMU_MACHPHYS_UPDATE of another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| mmu1(f << 12 | abi::MMU_MACHPHYS_UPDATE, 0),
        |_| {},
    );
    for level in 1..=4u32 {
        sweep(
            format_args!("pin another domain's frame as L{level}: -EPERM"),
            EPERM,
            Some((EINVAL, PINNED)),
            |f| pin(level, f),
            |f| {
                unpin(f);
            },
        );
    }
    sweep(
        format_args!("unpin another domain's frame: -EINVAL"),
        EINVAL,
        None,
        unpin,
        |_| {},
    );
    sweep(
        format_args!("NEW_BASEPTR to another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| ext(abi::MMUEXT_NEW_BASEPTR, f),
        |_| {},
    );
    sweep(
        format_args!("NEW_USER_BASEPTR to another domain's frame: -EPERM"),
        EPERM,
        None,
        |f| ext(abi::MMUEXT_NEW_USER_BASEPTR, f),
        |_| {
            ext(abi::MMUEXT_NEW_USER_BASEPTR, 0);
        },
    );
    sweep(
        format_args!("MMUEXT_CLEAR_PAGE of another domain's frame: -ENOSYS"),
        ENOSYS,
        None,
        |f| op(abi::MMUEXT_CLEAR_PAGE, f, 0),
        |_| {},
    );
    let (_, mine) = alloc_page();
    sweep(
        format_args!("MMUEXT_COPY_PAGE from another domain's frame: -ENOSYS"),
        ENOSYS,
        None,
        |f| op(abi::MMUEXT_COPY_PAGE, mine, f),
        |_| {},
    );
    sweep(
        format_args!("decrease_reservation of another domain's frame: 0 done"),
        EPERM,
        None,
        give_back_rc,
        |_| {},
    );
    sweep(
        format_args!("register_vcpu_info in another domain's frame: -EINVAL"),
        EINVAL,
        None,
        |f| register_vcpu_info(f, 0),
        |_| {},
    );
    sweep(
        format_args!("set_gdt with another domain's frame: -EINVAL"),
        EINVAL,
        None,
        |f| set_gdt(&[f], 1),
        |_| {},
    );
    n
}

/// Hypercalls that name another domain (or DOMID_IO / DOMID_XEN).
fn naming_other_domains(link: &Option<VictimLink>) {
    let Some(victim) = link.as_ref().map(|l| l.victim) else {
        info(format_args!(
            "no victim on the command line: no other domain to name"
        ));
        return;
    };
    let (_, f) = alloc_page();
    let u = [MmuUpdate {
        ptr: f << 12 | abi::MMU_MACHPHYS_UPDATE,
        val: 0,
    }];
    // Xen's get_pg_owner: a domain that exists (or DOMID_IO, DOMID_XEN)
    // is refused by the privilege check (-EPERM), one that does not is
    // -ESRCH.
    for (name, dom, want) in [
        ("the victim", victim, EPERM),
        ("DOMID_IO", abi::DOMID_IO, EPERM),
        ("DOMID_XEN", abi::DOMID_XEN, EPERM),
        ("a domain that does not exist", 0x7fe0, ESRCH),
    ] {
        let mut done = 0u32;
        // SAFETY: refused before anything is read.
        let rc = unsafe { hc::mmu_update(u.as_ptr() as u64, 1, &mut done as *mut u32 as u64, dom) };
        refused(
            Name::new(format_args!("mmu_update on behalf of {name} (d{dom:#x})")).as_str(),
            rc,
            want,
        );
        // SAFETY: refused before the PTE or the mapping is looked at.
        let rc = unsafe {
            hc::hypercall5(
                abi::HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
                VIRT_BASE,
                1,
                0,
                dom as u64,
                0,
            )
        };
        refused(
            Name::new(format_args!(
                "update_va_mapping_otherdomain on behalf of {name} (d{dom:#x})"
            ))
            .as_str(),
            rc,
            want,
        );
        let o = MmuExtOp {
            cmd: abi::MMUEXT_TLB_FLUSH_LOCAL,
            _pad0: 0,
            arg1: 0,
            arg2: 0,
        };
        // SAFETY: as above.
        let rc =
            unsafe { hc::mmuext_op(&o as *const _ as u64, 1, &mut done as *mut u32 as u64, dom) };
        refused(
            Name::new(format_args!("mmuext_op on behalf of {name} (d{dom:#x})")).as_str(),
            rc,
            want,
        );
    }
    for (case, cmd) in [
        (
            "memory_op current_reservation of the victim: -EPERM",
            abi::XENMEM_CURRENT_RESERVATION,
        ),
        (
            "memory_op maximum_reservation of the victim: -EPERM",
            abi::XENMEM_MAXIMUM_RESERVATION,
        ),
    ] {
        let d = victim;
        // SAFETY: the hypervisor reads a domid_t.
        let rc = unsafe { hc::memory_op(cmd, &d as *const u16 as u64) };
        check(case, rc == EPERM, format_args!("returned {}", Rc(rc)));
    }
    let (_, mine) = alloc_page();
    let mut l = [mine];
    refused(
        "decrease_reservation of the victim (our own frame in the list): -EPERM",
        reservation_of(abi::XENMEM_DECREASE_RESERVATION, &mut l, victim),
        EPERM,
    );
    let mut l = [0u64];
    refused(
        "increase_reservation for the victim: -EPERM",
        reservation_of(abi::XENMEM_INCREASE_RESERVATION, &mut l, victim),
        EPERM,
    );
    let mut a = abi::EvtchnAllocUnbound {
        dom: victim,
        remote_dom: abi::DOMID_SELF,
        port: 0,
    };
    refused(
        "EVTCHNOP_alloc_unbound in the victim: -EPERM",
        pvguest::events::op(abi::EVTCHNOP_ALLOC_UNBOUND, &mut a),
        EPERM,
    );
    let rc = match pvguest::events::status(victim, 1) {
        Ok(_) => 0,
        Err(rc) => rc,
    };
    refused("EVTCHNOP_status of the victim's port 1: -EPERM", rc, EPERM);
    if let Some(l) = link {
        // Ours is the port named on our command line; the others are for
        // other attackers, the victim's timer, or free.
        let ours = pvguest::start_info::arg_u32("port").unwrap_or(1);
        let mut s = Sweep::new(
            format_args!("bind_interdomain to the victim's ports not for us: -EINVAL"),
            EINVAL,
        );
        for p in 1..16 {
            if p == ours {
                continue;
            }
            match pvguest::events::bind_interdomain(l.victim, p) {
                Ok(local) => {
                    s.one(p as u64, 0);
                    pvguest::events::close(local);
                }
                Err(rc) => {
                    s.one(p as u64, rc);
                }
            }
        }
        s.end();
    }
    for (case, nr) in [
        ("domctl: -ENOSYS", abi::HYPERVISOR_DOMCTL),
        ("sysctl: -ENOSYS", abi::HYPERVISOR_SYSCTL),
    ] {
        // SAFETY: not implemented by ringvisor: refused before any argument
        // is looked at (and on Xen refused to an unprivileged domain).
        let rc = unsafe { hc::hypercall5(nr, 0, VIRT_BASE, 1, victim as u64, 0) };
        refused(case, rc, ENOSYS);
    }
    foreign_grants(victim);
}

/// Another domain's grant table: not set up, sized or mapped from here.
fn foreign_grants(victim: u16) {
    use abi::grant_table::*;
    use abi::Pod;
    let op = |cmd: u32, arg: u64| {
        // SAFETY: the structs are ours, on our stack; the hypervisor
        // writes only their status fields (and no frame list: refused).
        unsafe { hc::hypercall5(abi::HYPERVISOR_GRANT_TABLE_OP, cmd as u64, arg, 1, 0, 0) }
    };
    let mut frames = [0u64; 1];
    let mut setup = GnttabSetupTable::zeroed();
    setup.dom = victim;
    setup.nr_frames = 1;
    setup.frame_list = frames.as_mut_ptr() as u64;
    let rc = op(GNTTABOP_SETUP_TABLE, &mut setup as *mut _ as u64);
    check(
        "grant setup_table of the victim's table: 0, GNTST_permission_denied, no frame given",
        rc == 0 && setup.status == GNTST_PERMISSION_DENIED && frames[0] == 0,
        format_args!(
            "rc {} status {} frame {:#x}",
            Rc(rc),
            setup.status,
            frames[0]
        ),
    );
    let mut q = GnttabQuerySize::zeroed();
    q.dom = victim;
    let rc = op(GNTTABOP_QUERY_SIZE, &mut q as *mut _ as u64);
    check(
        "grant query_size of the victim's table: 0, GNTST_permission_denied",
        rc == 0 && q.status == GNTST_PERMISSION_DENIED && q.nr_frames == 0,
        format_args!(
            "rc {} status {} nr_frames {}",
            Rc(rc),
            q.status,
            q.nr_frames
        ),
    );
    let target = VIRT_BASE + 0x10_0000; // an address of ours, not touched: refused first
    for gref in [0u32, 8, 0xffff_ffff] {
        let mut m = GnttabMapGrantRef::zeroed();
        m.host_addr = target;
        m.flags = GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP;
        m.ref_ = gref;
        m.dom = victim;
        let rc = op(GNTTABOP_MAP_GRANT_REF, &mut m as *mut _ as u64);
        check(
            "grant map_grant_ref of the victim's grant: 0, GNTST_permission_denied",
            rc == 0 && m.status == GNTST_PERMISSION_DENIED && m.dev_bus_addr == 0,
            format_args!(
                "ref {gref}: rc {} status {} dev_bus_addr {:#x}",
                Rc(rc),
                m.status,
                m.dev_bus_addr
            ),
        );
    }
}

/// Pages given back are gone from us; pages taken are clean and ours.
fn give_back(w: &Window) {
    // A page still mapped cannot be given back.
    let (pfn, f) = alloc_page();
    w.map(2, f, LEAF_RW);
    let mut l = [f];
    check_eq(
        "decrease_reservation of a page we still map: 0 done",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l) as u64,
        0,
    );
    w.unmap(2);
    let _ = pfn;
    // Sixteen pages with a pattern, unmapped, given back.
    let mut given = [0u64; 16];
    for g in given.iter_mut() {
        let (_, f) = alloc_page();
        w.map(2, f, LEAF_RW);
        for i in 0..512 {
            poke(w.va(2) + i * 8, 0x005e_c2e7_0000_0000 | (f << 12) | i);
        }
        w.unmap(2);
        *g = f;
    }
    let before = {
        let d = abi::DOMID_SELF;
        // SAFETY: reads a domid_t.
        unsafe { hc::memory_op(abi::XENMEM_CURRENT_RESERVATION, &d as *const u16 as u64) }
    };
    let mut l = given;
    check_eq(
        "decrease_reservation of 16 unmapped pages of ours: 16 done",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l) as u64,
        16,
    );
    let mut s = Sweep::new(
        format_args!("a page given back is no longer ours (map: -EPERM)"),
        EPERM,
    );
    for &f in &given {
        if s.one(f, w.map(2, f, LEAF_RO)) {
            info(format_args!(
                "mapped frame {f:#x} given back: reads {:#x}",
                peek(w.va(2))
            ));
            w.unmap(2);
        }
    }
    s.end();
    check(
        "the M2P of pages given back is invalid",
        given
            .iter()
            .all(|&f| f >= m2p_frames() || !m2p_valid(m2p(f))),
        format_args!("{:#x}", m2p(given[0])),
    );
    // And taken again: frames of ours, zeroed.
    let mut l = [0u64; 16];
    check_eq(
        "increase_reservation of 16 pages: 16 done",
        reservation(abi::XENMEM_INCREASE_RESERVATION, &mut l) as u64,
        16,
    );
    let after = {
        let d = abi::DOMID_SELF;
        // SAFETY: reads a domid_t.
        unsafe { hc::memory_op(abi::XENMEM_CURRENT_RESERVATION, &d as *const u16 as u64) }
    };
    check_eq("current_reservation is back where it was", after, before);
    let mut s = Sweep::new(
        format_args!("a page from increase_reservation is ours and zero"),
        0,
    );
    for &f in &l {
        if w.map(2, f, LEAF_RO) != 0 {
            s.one(f, -1);
            continue;
        }
        let va = w.va(2);
        if (0..512).any(|i| peek(va + i * 8) != 0) {
            s.bad(f);
        } else {
            s.ok();
        }
        w.unmap(2);
    }
    s.end();
}

/// After everything, our window maps only its own L1.
fn window_empty(w: &Window) {
    let stray = (0..WINDOW_SELF).find(|&i| w.entry(i) != 0);
    match stray {
        None => pass("nothing was left mapped in our window"),
        Some(i) => fail(
            "nothing was left mapped in our window",
            format_args!("slot {i}: {:#x}", w.entry(i)),
        ),
    }
}
