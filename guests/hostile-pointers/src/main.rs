//! `guest-hostile-pointers`: hypercall arguments that point where the
//! hypervisor must not read or write for the guest, handlers it must not
//! register, and counts that must not keep it busy. Expected values are
//! ringvisor's (where Xen 4.17 answers differently, guests/README.md says
//! so).
//!
//! Command line: `victim=D port=P` (optional), as guest-hostile-foreign.
//!
//! Bad pointers for what the hypervisor reads (IN): the hypervisor's
//! direct map, its text, the M2P (readable by the guest itself, but in the
//! hypervisor's range), an unmapped page, two non-canonical addresses, and
//! a buffer straddling the end of a mapped page. For what it writes (OUT),
//! also: a read-only page of ours and the read-only mapping of one of our
//! page tables. Every OUT case checks that the read-only page, the page
//! table and the mapped half of the straddling buffer are unchanged.
//!
//! Cases (`-EFAULT` for every bad pointer unless said otherwise):
//! - `console_io` write buffer (count 0: 0 whatever the pointer);
//! - `set_trap_table` list (a straddling list whose first entry would make
//!   `int3` a DPL-0 vector changes nothing: `int3` still traps; nor does
//!   such an entry before a bad handler on one page); handlers
//!   in the hypervisor's range or non-canonical → `-EINVAL`; code
//!   selector 0xe008 → 0 (RPL raised, as Xen); 512 entries and no end → `-EINVAL`;
//! - `set_callbacks` and `callback_op` register (all six types) with a
//!   handler in the hypervisor's range or non-canonical → `-EINVAL`;
//!   `callback_op` register / unregister argument;
//! - `xen_version` extraversion, compile_info, capabilities, changeset,
//!   platform_parameters, get_features, guest_handle (OUT), commandline
//!   (OUT; `-EPERM` for a domain other than 0);
//! - `event_channel_op` alloc_unbound, bind_interdomain, bind_virq,
//!   bind_ipi, close, send, status, unmask, bind_vcpu (IN); alloc_unbound,
//!   bind_ipi, status (OUT); `event_channel_op_compat` (IN);
//! - `mmu_update` / `mmuext_op` list (IN, done = 0) and done (OUT); a
//!   straddling `mmu_update` list: `-EFAULT`, done = 1, the first entry
//!   applied;
//! - `memory_op` current/maximum_reservation domid, decrease/increase
//!   reservation struct, decrease extent list (IN); increase extent list
//!   (OUT: unreadable → `-EFAULT`; read-only → 0 done); memory_map struct
//!   (IN and OUT) and buffer (OUT);
//! - `vcpu_op` set_periodic_timer, set_singleshot_timer,
//!   register_vcpu_info (IN), get_runstate_info (OUT);
//! - `sched_op` shutdown (we keep running), shutdown_code, poll struct and
//!   port list (IN); `physdev_op` set_iopl (IN); `set_gdt` frame list
//!   (IN); `multicall` list (IN: `-EFAULT`, as Xen);
//! - `set_segment_base` of `%fs`/`%gs` to the direct map → 0 (canonical),
//!   and a read through it → #PF;
//! - huge counts are refused at once (each call under 50 ms, the best of
//!   three):
//!   `mmu_update`, `mmuext_op` of 2^64-1, 2^32, 4097 → `-EINVAL`;
//!   `memory_op` 2^64-1 extents → `-EINVAL`; `sched_op(poll)` 2^32-1
//!   ports → `-EINVAL`; `set_gdt` of 2^64-1 entries → `-EINVAL`;
//!   `console_io` of 2^64-1 bytes from a straddling buffer → `-EFAULT`;
//!   a full `mmu_update` batch of 4096 entries → 0.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

#[path = "../../hostile-foreign/src/common.rs"]
mod common;

use core::arch::asm;

use common::*;
use pvguest::abi::{self, MmuExtOp, MmuUpdate, StartInfo, TrapInfo};
use pvguest::cell::GuestCell;
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc, info};
use pvguest::time::now_ns;
use pvguest::traps::{self, expect_fault, trap_info, TRAP_TABLE_END};

pvguest::guest_main!("hostile-pointers", run);

/// Where the hostile buffers are.
#[derive(Clone, Copy)]
struct Bufs {
    w: Window,
    /// A page of ours mapped read-only ...
    ro: u64,
    /// ... and writable (to fill it).
    ro_alias: u64,
    /// One past the end of a mapped, writable page (the next is unmapped).
    strad_end: u64,
    /// The read-only mapping of one of our L1 tables.
    pt: u64,
}

const RO_SLOT: u64 = 10;
const RO_ALIAS_SLOT: u64 = 11;
const STRAD_SLOT: u64 = 20;
const CANARY: u64 = 0xc0ca_c01a_c0ca_c01a;

fn run(si: &StartInfo) {
    traps::install_default_trap_table();
    let link = link_victim();
    let w = Window::new(free_l2_slot(0));
    let (_, r) = alloc_page();
    w.map(RO_SLOT, r, LEAF_RO);
    w.map(RO_ALIAS_SLOT, r, LEAF_RW);
    let (_, s) = alloc_page();
    w.map(STRAD_SLOT, s, LEAF_RW);
    let pt = table_va(table_of(VIRT_BASE, 1).unwrap()).unwrap();
    let b = Bufs {
        w,
        ro: w.va(RO_SLOT),
        ro_alias: w.va(RO_ALIAS_SLOT),
        strad_end: w.va(STRAD_SLOT + 1),
        pt,
    };
    fill(b.ro_alias, CANARY);
    fill(b.strad_end - 4096, CANARY);
    console_io(&b);
    trap_table(&b);
    callbacks(&b);
    xen_version(&b, si);
    event_channel(&b);
    mmu(&b);
    memory_op(&b);
    vcpu_op(&b);
    sched_and_others(&b);
    segment_bases();
    huge_counts(&b);
    victim_done(&link);
}

fn fill(page: u64, v: u64) {
    for i in 0..512 {
        poke(page + i * 8, v);
    }
}

fn sum(page: u64) -> u64 {
    (0..512).fold(0u64, |h, i| {
        (h ^ peek(page + i * 8)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The IN pointers for a struct of `size` bytes.
fn ins(b: &Bufs, size: u64) -> [(&'static str, u64); 7] {
    [
        ("the direct map", HV_DIRECTMAP),
        ("the hypervisor's text", HV_TEXT),
        ("the M2P", M2P_BASE),
        ("an unmapped page", UNMAPPED),
        ("a non-canonical address", NON_CANONICAL),
        ("the first non-canonical address", NON_CANONICAL_LOW),
        (
            "a buffer straddling an unmapped page",
            b.strad_end - (size / 2).max(1),
        ),
    ]
}

/// The OUT pointers for a struct of `size` bytes.
fn outs(b: &Bufs, size: u64) -> [(&'static str, u64); 9] {
    let i = ins(b, size);
    [
        i[0],
        i[1],
        i[2],
        i[3],
        i[4],
        i[5],
        i[6],
        ("a read-only page", b.ro),
        ("a read-only page table", b.pt),
    ]
}

/// One sweep of `call` over `addrs`, each answer `want`.
fn sweep_in(
    what: &str,
    want: i64,
    addrs: &[(&'static str, u64)],
    mut call: impl FnMut(u64) -> i64,
) {
    let mut s = Sweep::new(format_args!("{what}: {}", Errno(want)), want);
    for &(_, a) in addrs {
        s.one(a, call(a));
    }
    s.end();
}

/// As `sweep_in`, and what the hypervisor must not write stays unchanged.
fn sweep_out(
    b: &Bufs,
    what: &str,
    want: i64,
    addrs: &[(&'static str, u64)],
    mut call: impl FnMut(u64) -> i64,
) {
    let mut s = Sweep::new(
        format_args!("{what}: {}, nothing written", Errno(want)),
        want,
    );
    for &(_, a) in addrs {
        let before = (sum(b.ro), sum(b.strad_end - 4096), sum(b.pt & !0xfff));
        let rc = call(a);
        let after = (sum(b.ro), sum(b.strad_end - 4096), sum(b.pt & !0xfff));
        let changed = before != after;
        if changed {
            info(format_args!(
                "{what}: {a:#x} -> {}, and something was written",
                Errno(rc)
            ));
        }
        if changed && rc == want {
            s.bad(a); // refused, but after writing
        } else {
            s.one(a, rc);
        }
    }
    s.end();
}

/// `-EFAULT` etc. as text.
struct Errno(i64);

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match abi::errno_name(-self.0 as i32) {
            Some(n) if self.0 < 0 => write!(f, "-{n}"),
            _ => write!(f, "{}", self.0),
        }
    }
}

fn console_io(b: &Bufs) {
    sweep_in(
        "console_io write, 16 bytes at a bad buffer",
        EFAULT,
        &ins(b, 16),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::console_io(abi::CONSOLEIO_WRITE, 16, a) }
        },
    );
    sweep_in(
        "console_io write, 0 bytes at a bad buffer",
        0,
        &ins(b, 16),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::console_io(abi::CONSOLEIO_WRITE, 0, a) }
        },
    );
}

fn set_trap_table_at(list: u64) -> i64 {
    // SAFETY: refused, or a table of our own entry points.
    unsafe { hc::set_trap_table(list) }
}

/// `int3` still reaches our #BP handler (vector 3 at DPL 3).
fn int3_traps() -> bool {
    let before = traps::count();
    // SAFETY: a breakpoint; our handler resumes after it.
    unsafe { asm!("int3") };
    traps::count() == before + 1 && traps::last().vector == 3
}

fn trap_table(b: &Bufs) {
    sweep_in(
        "set_trap_table with a bad list",
        EFAULT,
        &ins(b, 16)[..6],
        set_trap_table_at,
    );
    // Straddling: entry 0 (mapped) would make int3 DPL 0; entry 1 crosses.
    let first = b.strad_end - 24;
    let e = trap_info(3, 0, true);
    // SAFETY: writes our own writable page.
    unsafe { (first as *mut TrapInfo).write_volatile(e) };
    check_rc(
        "set_trap_table with a list straddling an unmapped page: -EFAULT",
        set_trap_table_at(first),
        EFAULT,
    );
    check(
        "  ... the table is unchanged (int3 still traps to us)",
        int3_traps(),
        format_args!("{}", traps::last()),
    );
    fill(b.strad_end - 4096, CANARY);
    for (what, addr) in [
        ("the hypervisor's text", HV_TEXT),
        ("the direct map", HV_DIRECTMAP),
        ("the M2P", M2P_BASE),
        ("a non-canonical address", NON_CANONICAL),
        ("the first non-canonical address", NON_CANONICAL_LOW),
    ] {
        let mut t = trap_info(6, 0, true);
        t.address = addr;
        let rc = traps::set_trap_table(&[t, TRAP_TABLE_END]);
        if refused(
            Name::new(format_args!(
                "set_trap_table with a handler at {what}: -EINVAL"
            ))
            .as_str(),
            rc,
            EINVAL,
        ) {
            traps::install_default_trap_table();
        }
    }
    // A good entry, then a bad one, on one page (one read): refused whole.
    // The first would send int3 to the #UD entry (it records vector 6);
    // it must not stay.
    let mut elsewhere = trap_info(3, 3, true);
    elsewhere.address = traps::entry_address(6).expect("the #UD entry");
    let mut bad = trap_info(6, 0, true);
    bad.address = NON_CANONICAL;
    check_rc(
        "set_trap_table with a good entry before a bad one: -EINVAL",
        traps::set_trap_table(&[elsewhere, bad, TRAP_TABLE_END]),
        EINVAL,
    );
    check(
        "  ... the table is unchanged (int3 still traps to us)",
        int3_traps(),
        format_args!("{}", traps::last()),
    );
    // The hypervisor's own code selector: as Xen, taken with its RPL
    // raised (a 64-bit guest's handlers run on FLAT_KERNEL_CS64, in ring 3,
    // whatever it names): the #UD handler runs, in ring 3.
    let mut t = trap_info(6, 0, true);
    t.cs = 0xe008;
    check_rc(
        "set_trap_table with code selector 0xe008: 0 (RPL raised)",
        traps::set_trap_table(&[t, TRAP_TABLE_END]),
        0,
    );
    // SAFETY: ud2 bounces to the entry just installed, which unwinds to the catch.
    let r = pvguest::traps::catch(|| unsafe { asm!("ud2") });
    check(
        "  ... and #UD still reaches the handler (its frame: the kernel, RPL 0)",
        matches!(r, Err(ref tr) if tr.vector == 6 && tr.cs & 3 == 0),
        format_args!("{r:?}"),
    );
    traps::install_default_trap_table();
    // 512 entries, no end (then an unmapped page).
    let (_, p1) = alloc_page();
    let (_, p2) = alloc_page();
    b.w.map(30, p1, LEAF_RW);
    b.w.map(31, p2, LEAF_RW);
    for i in 0..512 {
        let t = trap_info(6, 0, true);
        // SAFETY: our own two writable pages.
        unsafe { ((b.w.va(30) + i * 16) as *mut TrapInfo).write_volatile(t) };
    }
    let rc = set_trap_table_at(b.w.va(30));
    check_rc(
        "set_trap_table with 512 entries and no end: -EINVAL",
        rc,
        EINVAL,
    );
    traps::install_default_trap_table();
    check(
        "  ... int3 still traps to us",
        int3_traps(),
        format_args!("{}", traps::last()),
    );
}

fn callbacks(b: &Bufs) {
    let bad = [
        HV_TEXT,
        HV_DIRECTMAP,
        M2P_BASE,
        NON_CANONICAL,
        NON_CANONICAL_LOW,
    ];
    let mut s = Sweep::new(
        format_args!(
            "set_callbacks with a handler in the hypervisor's range or non-canonical: -EINVAL"
        ),
        EINVAL,
    );
    for a in bad {
        for (e, f, c) in [(a, 0, 0), (0, a, 0), (0, 0, a)] {
            // SAFETY: refused.
            let rc = unsafe { hc::hypercall5(abi::HYPERVISOR_SET_CALLBACKS, e, f, c, 0, 0) };
            if s.one(a, rc) {
                // SAFETY: no callbacks.
                unsafe { hc::hypercall5(abi::HYPERVISOR_SET_CALLBACKS, 0, 0, 0, 0, 0) };
            }
        }
    }
    s.end();
    let mut s = Sweep::new(format_args!("callback_op register (6 types) with a handler in the hypervisor's range or non-canonical: -EINVAL"), EINVAL);
    for ty in [
        abi::CALLBACKTYPE_EVENT,
        abi::CALLBACKTYPE_FAILSAFE,
        abi::CALLBACKTYPE_SYSCALL,
        abi::CALLBACKTYPE_SYSCALL32,
        abi::CALLBACKTYPE_SYSENTER,
        abi::CALLBACKTYPE_NMI,
    ] {
        for a in bad {
            // SAFETY: refused.
            let rc = unsafe { hc::register_callback(ty, 0, a) };
            if s.one(a, rc) {
                traps::register_callback(ty, 0);
            }
        }
    }
    s.end();
    sweep_in(
        "callback_op register with a bad argument",
        EFAULT,
        &ins(b, 16),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::callback_op(abi::CALLBACKOP_REGISTER, a) }
        },
    );
    sweep_in(
        "callback_op unregister with a bad argument",
        EFAULT,
        &ins(b, 2),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::callback_op(abi::CALLBACKOP_UNREGISTER, a) }
        },
    );
}

fn xen_version(b: &Bufs, si: &StartInfo) {
    for (name, cmd, size) in [
        ("extraversion", abi::XENVER_EXTRAVERSION, 16),
        ("compile_info", abi::XENVER_COMPILE_INFO, 144),
        ("capabilities", abi::XENVER_CAPABILITIES, 1024),
        ("changeset", abi::XENVER_CHANGESET, 64),
        ("platform_parameters", abi::XENVER_PLATFORM_PARAMETERS, 8),
        ("get_features", abi::XENVER_GET_FEATURES, 8),
        ("guest_handle", abi::XENVER_GUEST_HANDLE, 16),
    ] {
        // SAFETY: bad pointers: refused.
        sweep_out(
            b,
            Name::new(format_args!("xen_version({name}) to a bad buffer")).as_str(),
            EFAULT,
            &outs(b, size),
            |a| {
                // SAFETY: an argument the hypervisor must refuse (the sweep's
                // name says which); nothing of ours is written.
                unsafe { hc::xen_version(cmd, a) }
            },
        );
    }
    let privileged = si.flags & abi::SIF_PRIVILEGED != 0;
    let want = if privileged { EFAULT } else { EPERM };
    // SAFETY: bad pointers: refused.
    sweep_out(
        b,
        "xen_version(commandline) to a bad buffer",
        want,
        &outs(b, 1024),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::xen_version(abi::XENVER_COMMANDLINE, a) }
        },
    );
}

fn evtchn(cmd: u32, arg: u64) -> i64 {
    // SAFETY: refused pointers, or a struct of ours the op may fill.
    unsafe { hc::event_channel_op(cmd, arg) }
}

fn event_channel(b: &Bufs) {
    for (name, cmd, size) in [
        ("alloc_unbound", abi::EVTCHNOP_ALLOC_UNBOUND, 8),
        ("bind_interdomain", abi::EVTCHNOP_BIND_INTERDOMAIN, 12),
        ("bind_virq", abi::EVTCHNOP_BIND_VIRQ, 12),
        ("bind_ipi", abi::EVTCHNOP_BIND_IPI, 8),
        ("close", abi::EVTCHNOP_CLOSE, 4),
        ("send", abi::EVTCHNOP_SEND, 4),
        ("status", abi::EVTCHNOP_STATUS, 24),
        ("unmask", abi::EVTCHNOP_UNMASK, 4),
        ("bind_vcpu", abi::EVTCHNOP_BIND_VCPU, 8),
    ] {
        sweep_in(
            Name::new(format_args!("event_channel_op({name}) with a bad argument")).as_str(),
            EFAULT,
            &ins(b, size),
            |a| evtchn(cmd, a),
        );
    }
    // OUT: the struct is readable but not writable. (The operation is done
    // before the answer is written back, as in Xen: a port is used up.)
    let a = abi::EvtchnAllocUnbound {
        dom: abi::DOMID_SELF,
        remote_dom: abi::DOMID_SELF,
        port: 0,
    };
    // SAFETY: our own writable alias of the read-only page.
    unsafe { (b.ro_alias as *mut abi::EvtchnAllocUnbound).write_volatile(a) };
    sweep_out(
        b,
        "event_channel_op(alloc_unbound) with a read-only struct",
        EFAULT,
        &[("a read-only page", b.ro)],
        |a| evtchn(abi::EVTCHNOP_ALLOC_UNBOUND, a),
    );
    let s = abi::EvtchnStatus {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        port: 1,
        status: 0,
        vcpu: 0,
        u: [0; 2],
    };
    // SAFETY: as above.
    unsafe { (b.ro_alias as *mut abi::EvtchnStatus).write_volatile(s) };
    sweep_out(
        b,
        "event_channel_op(status) with a read-only struct",
        EFAULT,
        &[("a read-only page", b.ro)],
        |a| evtchn(abi::EVTCHNOP_STATUS, a),
    );
    let i = abi::EvtchnBindIpi { vcpu: 0, port: 0 };
    // SAFETY: as above.
    unsafe { (b.ro_alias as *mut abi::EvtchnBindIpi).write_volatile(i) };
    sweep_out(
        b,
        "event_channel_op(bind_ipi) with a read-only struct",
        EFAULT,
        &[("a read-only page", b.ro)],
        |a| evtchn(abi::EVTCHNOP_BIND_IPI, a),
    );
    fill(b.ro_alias, CANARY);
    // SAFETY: refused pointers.
    sweep_in(
        "event_channel_op_compat with a bad argument",
        EFAULT,
        &ins(b, 32),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::hypercall5(abi::HYPERVISOR_EVENT_CHANNEL_OP_COMPAT, a, 0, 0, 0, 0) }
        },
    );
}

fn mmu(b: &Bufs) {
    let w = b.w;
    let noop = [MmuUpdate {
        ptr: w.pte_maddr(40),
        val: 0,
    }];
    let mut done: u32;
    let mut s = Sweep::new(
        format_args!("mmu_update with a bad list: -EFAULT, done = 0"),
        EFAULT,
    );
    for (_, a) in ins(b, 16) {
        done = 0xdead;
        // SAFETY: refused list; done is ours.
        let rc = unsafe { hc::mmu_update(a, 1, &mut done as *mut u32 as u64, abi::DOMID_SELF) };
        s.one(a, if done == 0 { rc } else { -1000 - done as i64 });
    }
    s.end();
    // SAFETY (below): a no-op update; bad done pointers.
    sweep_out(
        b,
        "mmu_update with a bad done pointer",
        EFAULT,
        &outs(b, 4),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::mmu_update(noop.as_ptr() as u64, 1, a, abi::DOMID_SELF) }
        },
    );
    let op = [MmuExtOp {
        cmd: abi::MMUEXT_TLB_FLUSH_LOCAL,
        _pad0: 0,
        arg1: 0,
        arg2: 0,
    }];
    let mut s = Sweep::new(
        format_args!("mmuext_op with a bad list: -EFAULT, done = 0"),
        EFAULT,
    );
    for (_, a) in ins(b, 24) {
        done = 0xdead;
        // SAFETY: refused list.
        let rc = unsafe { hc::mmuext_op(a, 1, &mut done as *mut u32 as u64, abi::DOMID_SELF) };
        s.one(a, if done == 0 { rc } else { -1000 - done as i64 });
    }
    s.end();
    sweep_out(
        b,
        "mmuext_op with a bad done pointer",
        EFAULT,
        &outs(b, 4),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::mmuext_op(op.as_ptr() as u64, 1, a, abi::DOMID_SELF) }
        },
    );
    // Straddling list: entry 0 maps a page of ours at slot 31, entry 1
    // crosses into the unmapped page.
    let (_, f) = alloc_page();
    let list = b.strad_end - 24;
    // SAFETY: our own writable page.
    unsafe {
        (list as *mut MmuUpdate).write_volatile(MmuUpdate {
            ptr: w.pte_maddr(41),
            val: f << 12 | LEAF_RO,
        })
    };
    done = 0xdead;
    // SAFETY: one good entry, then a fault.
    let rc = unsafe { hc::mmu_update(list, 2, &mut done as *mut u32 as u64, abi::DOMID_SELF) };
    check_rc(
        "mmu_update with a list straddling an unmapped page: -EFAULT",
        rc,
        EFAULT,
    );
    check_eq("  ... done = 1", done, 1);
    check_eq("  ... the first entry applied", w.entry(41) & ADDR, f << 12);
    w.unmap(41);
    fill(b.strad_end - 4096, CANARY);
}

fn memop(cmd: u32, arg: u64) -> i64 {
    // SAFETY: refused pointers, or structs of ours.
    unsafe { hc::memory_op(cmd, arg) }
}

fn memory_op(b: &Bufs) {
    sweep_in(
        "memory_op(current_reservation) with a bad domid pointer",
        EFAULT,
        &ins(b, 2),
        |a| memop(abi::XENMEM_CURRENT_RESERVATION, a),
    );
    sweep_in(
        "memory_op(maximum_reservation) with a bad domid pointer",
        EFAULT,
        &ins(b, 2),
        |a| memop(abi::XENMEM_MAXIMUM_RESERVATION, a),
    );
    sweep_in(
        "memory_op(decrease_reservation) with a bad struct",
        EFAULT,
        &ins(b, 32),
        |a| memop(abi::XENMEM_DECREASE_RESERVATION, a),
    );
    sweep_in(
        "memory_op(increase_reservation) with a bad struct",
        EFAULT,
        &ins(b, 32),
        |a| memop(abi::XENMEM_INCREASE_RESERVATION, a),
    );
    let r = |list: u64| abi::XenMemoryReservation {
        extent_start: list,
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid: abi::DOMID_SELF,
        _pad0: [0; 3],
    };
    sweep_in(
        "memory_op(decrease_reservation) with a bad extent list",
        EFAULT,
        &ins(b, 8),
        |a| {
            let x = r(a);
            memop(abi::XENMEM_DECREASE_RESERVATION, &x as *const _ as u64)
        },
    );
    let unreadable = &ins(b, 8)[..6];
    sweep_in(
        "memory_op(increase_reservation) with an unreadable extent list",
        EFAULT,
        unreadable,
        |a| {
            let x = r(a);
            memop(abi::XENMEM_INCREASE_RESERVATION, &x as *const _ as u64)
        },
    );
    let cur = || {
        let d = abi::DOMID_SELF;
        memop(abi::XENMEM_CURRENT_RESERVATION, &d as *const u16 as u64)
    };
    // Room for two more pages: give two back.
    let mut l = [alloc_page().1, alloc_page().1];
    check_eq(
        "give two pages back (room to take new ones)",
        reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l),
        2,
    );
    let before = cur();
    sweep_out(
        b,
        "memory_op(increase_reservation) with a read-only extent list (0 done)",
        0,
        &[("a read-only page", b.ro), ("a read-only page table", b.pt)],
        |a| {
            let x = r(a);
            memop(abi::XENMEM_INCREASE_RESERVATION, &x as *const _ as u64)
        },
    );
    // A frame whose number cannot be written is taken back: the
    // reservation does not grow by pages the guest cannot name.
    check_eq(
        "  ... current_reservation unchanged by those calls",
        cur(),
        before,
    );
    sweep_in(
        "memory_op(memory_map) with a bad struct",
        EFAULT,
        &ins(b, 16),
        |a| memop(abi::XENMEM_MEMORY_MAP, a),
    );
    let (_, e) = alloc_page();
    b.w.map(42, e, LEAF_RW);
    let m = abi::XenMemoryMap {
        nr_entries: 1,
        _pad0: 0,
        buffer: b.w.va(42),
    };
    // SAFETY: our own writable alias of the read-only page.
    unsafe { (b.ro_alias as *mut abi::XenMemoryMap).write_volatile(m) };
    sweep_out(
        b,
        "memory_op(memory_map) with a read-only struct",
        EFAULT,
        &[("a read-only page", b.ro)],
        |a| memop(abi::XENMEM_MEMORY_MAP, a),
    );
    fill(b.ro_alias, CANARY);
    sweep_out(
        b,
        "memory_op(memory_map) with a bad buffer",
        EFAULT,
        &outs(b, 20),
        |a| {
            let m = abi::XenMemoryMap {
                nr_entries: 1,
                _pad0: 0,
                buffer: a,
            };
            memop(abi::XENMEM_MEMORY_MAP, &m as *const _ as u64)
        },
    );
}

fn vcpu(cmd: u32, arg: u64) -> i64 {
    // SAFETY: refused pointers.
    unsafe { hc::vcpu_op(cmd, 0, arg) }
}

fn vcpu_op(b: &Bufs) {
    for (name, cmd, size) in [
        ("set_periodic_timer", abi::VCPUOP_SET_PERIODIC_TIMER, 8),
        ("set_singleshot_timer", abi::VCPUOP_SET_SINGLESHOT_TIMER, 16),
        ("register_vcpu_info", abi::VCPUOP_REGISTER_VCPU_INFO, 16),
    ] {
        sweep_in(
            Name::new(format_args!("vcpu_op({name}) with a bad argument")).as_str(),
            EFAULT,
            &ins(b, size),
            |a| vcpu(cmd, a),
        );
    }
    sweep_out(
        b,
        "vcpu_op(get_runstate_info) to a bad buffer",
        EFAULT,
        &outs(b, 48),
        |a| vcpu(abi::VCPUOP_GET_RUNSTATE_INFO, a),
    );
}

fn sched_and_others(b: &Bufs) {
    // SAFETY (all): refused pointers.
    sweep_in(
        "sched_op(shutdown) with a bad argument (and we keep running)",
        EFAULT,
        &ins(b, 4),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::sched_op(abi::SCHEDOP_SHUTDOWN, a) }
        },
    );
    sweep_in(
        "sched_op(shutdown_code) with a bad argument",
        EFAULT,
        &ins(b, 4),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::sched_op(abi::SCHEDOP_SHUTDOWN_CODE, a) }
        },
    );
    sweep_in(
        "sched_op(poll) with a bad argument",
        EFAULT,
        &ins(b, 24),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::sched_op(abi::SCHEDOP_POLL, a) }
        },
    );
    sweep_in(
        "sched_op(poll) with a bad port list",
        EFAULT,
        &ins(b, 4),
        |a| {
            let p = abi::SchedPoll {
                ports: a,
                nr_ports: 1,
                _pad0: 0,
                timeout: 1,
            };
            // SAFETY: refused port list.
            unsafe { hc::sched_op(abi::SCHEDOP_POLL, &p as *const _ as u64) }
        },
    );
    sweep_in(
        "physdev_op(set_iopl) with a bad argument",
        EFAULT,
        &ins(b, 4),
        |a| {
            // SAFETY: an argument the hypervisor must refuse (the sweep's
            // name says which); nothing of ours is written.
            unsafe { hc::physdev_op(abi::PHYSDEVOP_SET_IOPL, a) }
        },
    );
    sweep_in("set_gdt with a bad frame list", EFAULT, &ins(b, 8), |a| {
        // SAFETY: an argument the hypervisor must refuse (the sweep's
        // name says which); nothing of ours is written.
        unsafe { hc::hypercall5(abi::HYPERVISOR_SET_GDT, a, 1, 0, 0, 0) }
    });
    sweep_in("multicall with a bad list", EFAULT, &ins(b, 56), |a| {
        // SAFETY: an argument the hypervisor must refuse (the sweep's
        // name says which); nothing of ours is written.
        unsafe { hc::hypercall5(abi::HYPERVISOR_MULTICALL, a, 1, 0, 0, 0) }
    });
}

fn segment_bases() {
    // SAFETY: %fs/%gs bases only affect our own accesses; restored below.
    let rc = unsafe { hc::set_segment_base(abi::SEGBASE_FS, HV_DIRECTMAP) };
    check_rc(
        "set_segment_base(fs) to the direct map: 0 (canonical)",
        rc,
        0,
    );
    if let Some(t) = expect_fault(
        "  ... a read through %fs faults: #PF ec 1",
        14,
        Some(1),
        || {
            // SAFETY: faults: what is tested.
            unsafe { asm!("mov {}, qword ptr fs:[0]", out(reg) _, options(nostack)) };
        },
    ) {
        check_eq("  ... at the direct map", t.cr2, HV_DIRECTMAP);
    }
    // SAFETY: back to 0.
    unsafe { hc::set_segment_base(abi::SEGBASE_FS, 0) };
    // SAFETY: as above (the runtime does not use %gs).
    let rc = unsafe { hc::set_segment_base(abi::SEGBASE_GS_KERNEL, HV_TEXT) };
    check_rc(
        "set_segment_base(gs kernel) to the hypervisor's text: 0 (canonical)",
        rc,
        0,
    );
    expect_fault(
        "  ... a read through %gs faults: #PF ec 1",
        14,
        Some(1),
        || {
            // SAFETY: faults: what is tested.
            unsafe { asm!("mov {}, qword ptr gs:[0]", out(reg) _, options(nostack)) };
        },
    );
    // SAFETY: back to 0.
    unsafe { hc::set_segment_base(abi::SEGBASE_GS_KERNEL, 0) };
}

/// A full batch of no-op updates (64 KiB, in .bss).
static BATCH: GuestCell<[MmuUpdate; 4096]> = GuestCell::new([MmuUpdate { ptr: 0, val: 0 }; 4096]);

fn huge_counts(b: &Bufs) {
    const LIMIT_NS: u64 = 50_000_000;
    let w = b.w;
    let noop = [MmuUpdate {
        ptr: w.pte_maddr(40),
        val: 0,
    }];
    let op = [MmuExtOp {
        cmd: abi::MMUEXT_TLB_FLUSH_LOCAL,
        _pad0: 0,
        arg1: 0,
        arg2: 0,
    }];
    let mut slow = Sweep::new(format_args!("huge counts are answered within 50 ms"), 0);
    // The best of three: the other domains run too, and a call may be
    // preempted at its end (what is measured is the call, not the slice).
    let mut timed_rc = |case: &str, want: i64, f: &mut dyn FnMut() -> i64| {
        let mut dt = u64::MAX;
        let mut rc = 0;
        for _ in 0..3 {
            let t = now_ns();
            rc = f();
            dt = dt.min(now_ns() - t);
        }
        check_rc(case, rc, want);
        slow.one(
            dt,
            if dt < LIMIT_NS {
                0
            } else {
                -(dt as i64 / 1000)
            },
        );
    };
    for n in [u64::MAX, 1 << 32, 4097] {
        timed_rc(
            Name::new(format_args!("mmu_update of {n:#x} entries: -EINVAL")).as_str(),
            EINVAL,
            &mut || {
                // SAFETY: an argument the hypervisor must refuse (the sweep's
                // name says which); nothing of ours is written.
                unsafe { hc::mmu_update(noop.as_ptr() as u64, n, 0, abi::DOMID_SELF) }
            },
        );
        timed_rc(
            Name::new(format_args!("mmuext_op of {n:#x} ops: -EINVAL")).as_str(),
            EINVAL,
            &mut || {
                // SAFETY: an argument the hypervisor must refuse (the sweep's
                // name says which); nothing of ours is written.
                unsafe { hc::mmuext_op(op.as_ptr() as u64, n, 0, abi::DOMID_SELF) }
            },
        );
    }
    let mut l = [0u64; 1];
    timed_rc(
        "decrease_reservation of 2^64-1 extents: -EINVAL",
        EINVAL,
        &mut || {
            let x = abi::XenMemoryReservation {
                extent_start: l.as_mut_ptr() as u64,
                nr_extents: u64::MAX,
                extent_order: 0,
                mem_flags: 0,
                domid: abi::DOMID_SELF,
                _pad0: [0; 3],
            };
            memop(abi::XENMEM_DECREASE_RESERVATION, &x as *const _ as u64)
        },
    );
    let port = 1u32;
    timed_rc(
        "sched_op(poll) of 2^32-1 ports: -EINVAL",
        EINVAL,
        &mut || {
            let p = abi::SchedPoll {
                ports: &port as *const u32 as u64,
                nr_ports: u32::MAX,
                _pad0: 0,
                timeout: 1,
            };
            // SAFETY: refused count.
            unsafe { hc::sched_op(abi::SCHEDOP_POLL, &p as *const _ as u64) }
        },
    );
    let frames = [0u64; 16];
    timed_rc("set_gdt of 2^64-1 entries: -EINVAL", EINVAL, &mut || {
        // SAFETY: refused count.
        unsafe {
            hc::hypercall5(
                abi::HYPERVISOR_SET_GDT,
                frames.as_ptr() as u64,
                u64::MAX,
                0,
                0,
                0,
            )
        }
    });
    timed_rc(
        "console_io of 2^64-1 bytes from a straddling buffer: -EFAULT",
        EFAULT,
        &mut || {
            // SAFETY: the hypervisor only reads, and stops at the unmapped page.
            unsafe { hc::console_io(abi::CONSOLEIO_WRITE, u64::MAX, b.strad_end - 16) }
        },
    );
    let batch = BATCH.as_ptr() as *mut MmuUpdate;
    for i in 0..4096 {
        // SAFETY: inside the static array; nothing else uses it.
        unsafe {
            batch.add(i).write_volatile(MmuUpdate {
                ptr: w.pte_maddr(100 + (i as u64 % 300)),
                val: 0,
            })
        };
    }
    let mut done = 0u32;
    timed_rc(
        "mmu_update of a full batch of 4096 no-op entries: 0",
        0,
        &mut || {
            // SAFETY: every entry clears an empty slot of our window.
            unsafe {
                hc::mmu_update(
                    BATCH.as_ptr() as u64,
                    4096,
                    &mut done as *mut u32 as u64,
                    abi::DOMID_SELF,
                )
            }
        },
    );
    check_eq("  ... done = 4096", done, 4096);
    slow.end();
}
