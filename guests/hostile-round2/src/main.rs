//! `guest-hostile-round2`: the second round of hostile checks on the
//! 64-bit PV ABI. Each case is a regression test for a hypervisor fix:
//! every PASS depends on an answer of the hypervisor (an error code, a
//! frame's words, a register).
//!
//! Command line: `only=NAME` runs one group (`refcount`, `ac`, `iret`,
//! `top`, `debugreg`, `iret-nohandler`) or one case (`1a`..`1d`, `2a`, `2b`, `3a`..`3d`;
//! `3*` map the top pages first); without it every group but
//! `iret-nohandler` runs, least dangerous first (a hypervisor without the fixes fails
//! `refcount` visibly, faults on `iret` and hangs on `top`).
//! `victim=D port=P` as the other hostile guests (guest-victim beside).
//!
//! Cases:
//! 1. `refcount`: a page table whose type count reaches 0 is devalidated
//!    (every reference its entries hold is dropped, recursively):
//!    a. frame X mapped writable at 512 entries of an L1 T; T pinned and
//!       unpinned 4096 times; X (its own mapping gone) can be pinned as an
//!       L1 (0), T and X mapped writable again (0);
//!    b. L2 P → L1 T → X: P pinned and unpinned; T maps writable (0), X
//!       pins as an L1 (0);
//!    c. a whole L4 → L3 → L2 → L1 tree pinned as an L4 and unpinned:
//!       each of its frames maps writable (0);
//!    d. an L1 linked from two pinned L2s: after one unpin it still
//!       refuses a writable mapping (-EINVAL), after both it maps (0).
//! 4. `ac`: EFLAGS.AC set (popfq): a hypercall answers as without it and
//!    returns with AC still set; an int3 bounce's frame has AC and the
//!    right rip, and AC is set after it; a #PF bounce has the right cr2,
//!    error code and AC in its frame.
//! 2. `iret`: HYPERVISOR_iret to a frame the CPU refuses gives the guest
//!    the fault the CPU raises, with the refused frame as the interrupted
//!    context (user mode: on the stack_switch stack):
//!    a. cs FLAT_USER_CS32 (0xe023), rip 0x1_0000_0000 → #GP(0), frame rip
//!       0x1_0000_0000, cs 0xe023;
//!    b. cs FLAT_USER_CS64 (0xe033), rip 0x8000_0000_0000_0000 → #GP(0),
//!       frame rip as given.
//! 3. `top`: a page of its own at 0xffff_ffff_ffff_f000 (and one below):
//!    a. XENVER_extraversion at 0xffff_ffff_ffff_f000 → 0, the same 16
//!       bytes as into an ordinary buffer; at 0xffff_ffff_ffff_fff8 (16
//!       bytes crossing 2^64) → -EFAULT, nothing written;
//!    b. mmu_update's done count at 0xffff_ffff_ffff_fffc → 0, written; at
//!       0xffff_ffff_ffff_fffe (crossing) → -EFAULT;
//!    c. int3 with rsp 0xffff_ffff_ffff_fff0: the #BP handler runs with its
//!       frame right below (rip, rsp checked) and returns;
//!    d. output buffers ending exactly at 2^64: XENVER_guest_handle (16
//!       bytes), extraversion, changeset, capabilities,
//!       platform_parameters, get_features → 0, data as into an ordinary
//!       buffer.
//! 5. `debugreg` (debugreg.rs): breakpoints armed for real, aimed at the
//!    hypervisor (XSA-260): a. DR0-3 at hypervisor addresses → -EPERM
//!    (by `mov %dr0`: #GP(0)); b. DR7 with GD → -EPERM / #GP(0);
//!    c. a write breakpoint on a kernel stack buffer, XENVER_extraversion
//!    into it → 0 and no #DB, our own store → one #DB, DR6.B0;
//!    d. the word where an int3's bounce frame goes watched → the #BP is
//!    delivered; e. `mov %ss` from a watched word + `syscall` (a
//!    hypercall), + int3, + `int $0x80` → each completes with at most one
//!    #DB (one where the CPU ignores the MOV-SS shadow, as QEMU's TCG).
//!    2c. `iret-nohandler` (only with `only=`): as 2a with no #GP entry in the
//!    trap table and a failsafe callback: the failsafe callback runs
//!    (PASS) or the domain is crashed (the harness reads the hypervisor's
//!    line); the hypervisor never faults.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]
// A caught trap is a whole saved frame, returned by value from a few
// test helpers: its size does not matter here.
#![allow(clippy::result_large_err)]
// The case list above nests lettered sub-cases, which markdown reads as
// continuation lines.
#![allow(clippy::doc_overindented_list_items)]

#[path = "../../hostile-foreign/src/common.rs"]
mod common;
mod debugreg;

use common::*;
use pvguest::abi::{self, MmuUpdate, StartInfo};
use pvguest::hypercall::{self as hc, IretFrame};
use pvguest::report::{check, check_eq, check_rc, fail, info, pass, Rc};
use pvguest::traps::{self, catch};

pvguest::guest_main!("hostile-round2", run);

/// Scratch slot of the window for building pages.
const BUILD: u64 = 0;

const GROUPS: [&str; 5] = ["refcount", "ac", "iret", "top", "debugreg"];
const CASES: [&str; 10] = ["1a", "1b", "1c", "1d", "2a", "2b", "3a", "3b", "3c", "3d"];

/// Whether case `case` (e.g. "2a") of `group` runs under `only=`.
fn wanted(group: &str, case: &str) -> bool {
    pvguest::start_info::arg("only").is_none_or(|o| o == group || o == case)
}

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    let only = pvguest::start_info::arg("only");
    if let Some(o) = only {
        if o != "iret-nohandler"
            && o != "ts-crash"
            && o != "watchdog"
            && !GROUPS.contains(&o)
            && !CASES.contains(&o)
        {
            pvguest::report::error(format_args!("only={o}: no such group"));
        }
        info(format_args!("only={o}"));
    }
    if only == Some("watchdog") {
        // SCHEDOP_watchdog as Xen's domain_watchdog: two timers, id 0 takes
        // a free one, a timeout of 0 frees it; then one left to fire while
        // we spin: the hypervisor shuts the domain down (the test checks).
        let wd = |id: u32, timeout: u32| {
            let w = abi::SchedWatchdog { id, timeout };
            // SAFETY: the hypervisor only reads the struct.
            unsafe {
                hc::hypercall5(
                    abi::HYPERVISOR_SCHED_OP,
                    abi::SCHEDOP_WATCHDOG as u64,
                    &w as *const _ as u64,
                    0,
                    0,
                    0,
                )
            }
        };
        check_rc("watchdog: id 0 takes timer 1", wd(0, 100), 1);
        check_rc("watchdog: id 0 takes timer 2", wd(0, 100), 2);
        check_rc("watchdog: no third: -ENOSPC", wd(0, 100), -28);
        check_rc("watchdog: id 3: -EINVAL", wd(3, 100), -22);
        check_rc("watchdog: timer 2 freed (timeout 0)", wd(2, 0), 0);
        check_rc("watchdog: timer 2 again: -EINVAL (free)", wd(2, 100), -22);
        check_rc("watchdog: timer 1 re-armed for 1 s", wd(1, 1), 0);
        pvguest::println!("EXPECT-WATCHDOG");
        // Blocked, not spinning: the watchdog fires while another domain
        // is on the CPU, or the CPU idles (it must still end this one and
        // give its memory back).
        loop {
            // SAFETY: blocks until an event; none comes.
            unsafe { hc::sched_op(abi::SCHEDOP_BLOCK, 0) };
        }
    }
    if only == Some("ts-crash") {
        // The virtual CR0.TS set, then the domain ends: the next vCPU's
        // FPU state must still be restored (the hypervisor's fxrstor
        // would #NM with TS left set; found by the fuzzer, seed 1001).
        check_rc("ts-crash: fpu_taskswitch(1)", hc::fpu_taskswitch(1), 0);
        pvguest::println!("EXPECT-CRASH");
        hc::shutdown(abi::SHUTDOWN_CRASH);
    }
    let link = link_victim();
    let group = |g: &str, cases: &[&str]| only.is_none_or(|o| o == g || cases.contains(&o));
    let w = Window::new(free_l2_slot(0));
    if wanted("refcount", "1a") {
        refcount_wrap(&w);
    }
    if wanted("refcount", "1b") {
        children_released(&w);
    }
    if wanted("refcount", "1c") {
        linux_tree(&w);
    }
    if wanted("refcount", "1d") {
        still_referenced(&w);
    }
    if group("ac", &[]) {
        eflags_ac();
    }
    if group("iret", &["2a", "2b"]) {
        iret_refused();
    }
    if group("top", &["3a", "3b", "3c", "3d"]) {
        top_of_address_space(&w);
    }
    if group("debugreg", &[]) {
        debugreg::run();
    }
    if only == Some("iret-nohandler") {
        iret_no_handler();
    }
    victim_done(&link);
}

// ---------------------------------------------------------------------
// 1. Reference counts and devalidation.
// ---------------------------------------------------------------------

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

/// `update_va_mapping` of `f` writable at window slot `slot`, then unmapped
/// again if it was accepted. Returns the answer.
fn map_rw_rc(w: &Window, slot: u64, f: u64) -> i64 {
    let rc = w.map(slot, f, LEAF_RW);
    if rc == 0 {
        w.unmap(slot);
    }
    rc
}

fn refcount_wrap(w: &Window) {
    const PAIRS: u32 = 4096;
    let (_, x) = alloc_page();
    if w.map(1, x, LEAF_RW) != 0 {
        pvguest::report::error(format_args!("refcount: map X writable"));
    }
    for i in 0..512 {
        poke(w.va(1) + i * 8, 0);
    }
    let (_, t) = alloc_page();
    w.map(2, t, LEAF_RW);
    for i in 0..512 {
        poke(w.va(2) + i * 8, x << 12 | LEAF_RW);
    }
    check_rc("1a: T's own writable mapping removed", w.unmap(2), 0);
    let mut bad = None;
    let t0 = pvguest::time::now_ns();
    for i in 0..PAIRS {
        let p = pin(1, t);
        let u = unpin(t);
        if p != 0 || u != 0 {
            bad = Some((i, p, u));
            break;
        }
    }
    let dt = pvguest::time::now_ns().saturating_sub(t0);
    info(format_args!(
        "1a: {PAIRS} pin/unpin pairs took {} ms",
        dt / 1_000_000
    ));
    match bad {
        None => pass("1a: pin L1 T (512 writable entries -> X), unpin T: 4096 times, all 0"),
        Some((i, p, u)) => fail(
            "1a: pin L1 T (512 writable entries -> X), unpin T: 4096 times, all 0",
            format_args!("pair {i}: pin {}, unpin {}", Rc(p), Rc(u)),
        ),
    }
    check_rc("1a: X's own writable mapping removed", w.unmap(1), 0);
    if check_rc(
        "1a: X (no writable mapping left) can be pinned as an L1: 0",
        pin(1, x),
        0,
    ) {
        check_rc("1a: unpin X", unpin(x), 0);
    }
    check_rc("1a: T maps writable again: 0", map_rw_rc(w, 2, t), 0);
    check_rc("1a: X maps writable again: 0", map_rw_rc(w, 1, x), 0);
}

fn children_released(w: &Window) {
    let (_, x) = alloc_page();
    if w.map(3, x, LEAF_RW) != 0 {
        pvguest::report::error(format_args!("1b: map X writable"));
    }
    // X stays zero: as an L1 (pinned below) every entry is empty.
    poke(w.va(3), 0);
    let t = page_with(w, &[(0, x << 12 | LEAF_RW)]);
    let p = page_with(w, &[(0, t << 12 | TABLE)]);
    check_rc(
        "1b: pin L2 P (entry 0 -> L1 T -> X writable): 0",
        pin(2, p),
        0,
    );
    refused(
        "1b: while P is pinned, T refuses a writable mapping: -EINVAL",
        map_rw_rc(w, 4, t),
        EINVAL,
    );
    check_rc("1b: unpin P: 0", unpin(p), 0);
    check_rc(
        "1b: after the unpin, T maps writable (it was released): 0",
        map_rw_rc(w, 4, t),
        0,
    );
    check_rc("1b: X's own writable mapping removed", w.unmap(3), 0);
    if check_rc(
        "1b: X can be pinned as an L1 (T's writable reference dropped): 0",
        pin(1, x),
        0,
    ) {
        check_rc("1b: unpin X", unpin(x), 0);
    }
    check_rc("1b: P maps writable: 0", map_rw_rc(w, 4, p), 0);
}

fn linux_tree(w: &Window) {
    let (_, x) = alloc_page();
    let l1 = page_with(w, &[(0, x << 12 | LEAF_RW), (1, x << 12 | LEAF_RO)]);
    let l2 = page_with(w, &[(0, l1 << 12 | TABLE)]);
    let l3 = page_with(w, &[(0, l2 << 12 | TABLE)]);
    let l4 = page_with(w, &[(0, l3 << 12 | TABLE)]);
    info(format_args!(
        "1c: tree L4 {l4:#x} L3 {l3:#x} L2 {l2:#x} L1 {l1:#x} X {x:#x}"
    ));
    if !check_rc("1c: pin the tree as an L4: 0", pin(4, l4), 0) {
        return;
    }
    refused(
        "1c: while pinned, its L3 refuses a writable mapping: -EINVAL",
        map_rw_rc(w, 5, l3),
        EINVAL,
    );
    check_rc("1c: unpin the L4: 0", unpin(l4), 0);
    for (case, f) in [
        ("1c: after the unpin, the old L3 maps writable: 0", l3),
        ("1c: after the unpin, the old L2 maps writable: 0", l2),
        ("1c: after the unpin, the old L1 maps writable: 0", l1),
        ("1c: after the unpin, the old L4 maps writable: 0", l4),
    ] {
        check_rc(case, map_rw_rc(w, 5, f), 0);
    }
    if check_rc("1c: X can be pinned as an L1: 0", pin(1, x), 0) {
        unpin(x);
    }
}

fn still_referenced(w: &Window) {
    let (_, x) = alloc_page();
    let t = page_with(w, &[(3, x << 12 | LEAF_RO)]);
    let p1 = page_with(w, &[(0, t << 12 | TABLE)]);
    let p2 = page_with(w, &[(7, t << 12 | TABLE)]);
    check_rc("1d: pin L2 P1 (-> L1 T): 0", pin(2, p1), 0);
    check_rc("1d: pin L2 P2 (-> the same T): 0", pin(2, p2), 0);
    check_rc("1d: unpin P1: 0", unpin(p1), 0);
    refused(
        "1d: T, still linked from pinned P2, refuses a writable mapping: -EINVAL",
        map_rw_rc(w, 6, t),
        EINVAL,
    );
    check_rc(
        "1d: P1 maps writable (it was devalidated): 0",
        map_rw_rc(w, 6, p1),
        0,
    );
    check_rc("1d: unpin P2: 0", unpin(p2), 0);
    check_rc("1d: now T maps writable: 0", map_rw_rc(w, 6, t), 0);
}

// ---------------------------------------------------------------------
// 4. EFLAGS.AC.
// ---------------------------------------------------------------------

const RFLAGS_AC: u64 = 1 << 18;

/// With AC set: `xen_version(XENVER_version)` through the hypercall page,
/// then the rflags after it (AC cleared again before returning).
fn hypercall_with_ac() -> (i64, u64) {
    let (rc, fl): (i64, u64);
    // SAFETY: xen_version(0, 0) only returns a number; AC is set only
    // around the call (aligned accesses only in between) and cleared again.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], {ac}",
            "popfq",
            "call rax",
            "pushfq",
            "pop {fl}",
            "pushfq",
            "and qword ptr [rsp], {nac}",
            "popfq",
            ac = const RFLAGS_AC,
            nac = const !RFLAGS_AC,
            fl = out(reg) fl,
            inlateout("rax") hc::stub_addr(abi::HYPERVISOR_XEN_VERSION) => rc,
            inlateout("rdi") u64::from(abi::XENVER_VERSION) => _,
            inlateout("rsi") 0u64 => _,
            lateout("rdx") _, lateout("r10") _, lateout("r8") _, lateout("r9") _,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    (rc, fl)
}

/// With AC set: int3, then the rflags after the bounce returned. Returns
/// (rflags after, the address right after the int3).
fn int3_with_ac() -> (u64, u64) {
    let (fl, after): (u64, u64);
    // SAFETY: int3 bounces to the runtime's #BP handler, which resumes.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], {ac}",
            "popfq",
            "int3",
            "2:",
            "pushfq",
            "pop {fl}",
            "pushfq",
            "and qword ptr [rsp], {nac}",
            "popfq",
            "lea {after}, [rip + 2b]",
            ac = const RFLAGS_AC,
            nac = const !RFLAGS_AC,
            fl = out(reg) fl,
            after = out(reg) after,
        );
    }
    (fl, after)
}

/// With AC set: a read of `va` (unmapped: #PF, unwound by the catch).
fn read_with_ac(va: u64) {
    // SAFETY: runs inside `catch`; the fault unwinds (rflags from the
    // catch, without AC).
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], {ac}",
            "popfq",
            "mov {v}, qword ptr [{a}]",
            "pushfq",
            "and qword ptr [rsp], {nac}",
            "popfq",
            ac = const RFLAGS_AC,
            nac = const !RFLAGS_AC,
            a = in(reg) va,
            v = out(reg) _,
        );
    }
}

fn eflags_ac() {
    // SAFETY: returns a number.
    let plain = unsafe { hc::xen_version(abi::XENVER_VERSION, 0) };
    let (rc, fl) = hypercall_with_ac();
    check_eq(
        "4: with AC set, xen_version(XENVER_version) answers as without",
        rc,
        plain,
    );
    check(
        "4: AC still set in rflags after the hypercall",
        fl & RFLAGS_AC != 0,
        format_args!("rflags {fl:#x}"),
    );
    let n = traps::count();
    let (fl, after) = int3_with_ac();
    let t = traps::last();
    check(
        "4: int3 with AC set: #BP bounced, frame rip after the int3, AC in the frame's rflags",
        traps::count() == n + 1 && t.vector == 3 && t.rip == after && t.rflags & RFLAGS_AC != 0,
        format_args!("{} bounces, {t} (want rip {after:#x})", traps::count() - n),
    );
    check(
        "4: AC still set after the int3 bounce returned",
        fl & RFLAGS_AC != 0,
        format_args!("rflags {fl:#x}"),
    );
    match catch(|| read_with_ac(UNMAPPED)) {
        Err(t) => check(
            "4: #PF with AC set: cr2, error code 0 (kernel read, not present), AC in the frame's rflags",
            t.vector == 14 && t.cr2 == UNMAPPED && t.error_code == 0 && t.rflags & RFLAGS_AC != 0,
            format_args!("{t}"),
        ),
        Ok(()) => {
            fail("4: #PF with AC set", format_args!("no fault reading {UNMAPPED:#x}"));
            false
        }
    };
    check(
        "4: AC clear again in the guest",
        pvguest::cpu::rflags() & RFLAGS_AC == 0,
        format_args!("set"),
    );
}

// ---------------------------------------------------------------------
// 2. HYPERVISOR_iret to frames the CPU refuses.
// ---------------------------------------------------------------------

/// `HYPERVISOR_iret` to user mode at `cs:rip` inside a catch; the trap
/// that ended it.
fn iret_to_user(cs: u16, rip: u64) -> Result<(), traps::Trap> {
    catch(move || {
        let f = IretFrame {
            flags: 0,
            rip,
            cs: cs.into(),
            rflags: traps::USER_RFLAGS,
            rsp: traps::USER_STACK.top() - 64,
            ss: abi::FLAT_USER_SS.into(),
        };
        // SAFETY: the hypervisor must refuse this frame the way the CPU
        // would, by a #GP the runtime unwinds to this catch.
        unsafe { hc::iret(&f, 0, 0) }
    })
}

fn check_iret_gp(case: &str, cs: u16, rip: u64) {
    match iret_to_user(cs, rip) {
        Ok(()) => fail(case, format_args!("returned to the catch without a trap")),
        Err(t) => {
            let ktop = traps::KERNEL_STACK.top();
            check(
                case,
                t.vector == 13
                    && t.error_code == 0
                    && t.rip == rip
                    && t.cs & 0xffff == u64::from(cs)
                    && t.rsp == traps::USER_STACK.top() - 64
                    && t.frame_top == ktop,
                format_args!("want #GP(0) rip {rip:#x} cs {cs:#x} on the kernel stack (top {ktop:#x}); got {t}, frame top {:#x}", t.frame_top),
            );
        }
    }
}

fn iret_refused() {
    if let Err((what, rc)) = traps::setup_user_mode() {
        fail("2: user mode set-up", format_args!("{what} = {}", Rc(rc)));
        return;
    }
    // The control: a good frame reaches user mode and comes back.
    let ok = traps::run_user(|| {});
    check(
        "2: control: iret to user mode and back",
        ok.is_ok(),
        format_args!("{ok:x?}"),
    );
    if wanted("iret", "2a") {
        check_iret_gp(
        "2a: iret to cs 0xe023 (32-bit user) with rip 0x1_0000_0000 (above the limit): #GP(0), the refused frame",
        abi::FLAT_USER_CS32,
        0x1_0000_0000,
    );
    }
    if wanted("iret", "2b") {
        check_iret_gp(
        "2b: iret to cs 0xe033 (64-bit user) with rip 0x8000_0000_0000_0000 (non-canonical): #GP(0), the refused frame",
        abi::FLAT_USER_CS64,
        NON_CANONICAL,
    );
    }
    let ok = traps::run_user(|| {});
    check(
        "2: afterwards, iret to user mode and back still works",
        ok.is_ok(),
        format_args!("{ok:x?}"),
    );
}

fn iret_no_handler() {
    if let Err((what, rc)) = traps::setup_user_mode() {
        fail("2c: user mode set-up", format_args!("{what} = {}", Rc(rc)));
        return;
    }
    let mut t = traps::default_trap_table();
    // Drop vector 13: shift the rest down (the end entry moves too).
    t.copy_within(14.., 13);
    // set_trap_table only adds entries: clear the table first (NULL).
    // SAFETY: the runtime's entries are installed again right after.
    check_rc(
        "2c: set_trap_table(NULL) clears the trap table",
        unsafe { hc::set_trap_table(0) },
        0,
    );
    check_rc("2c: trap table without #GP", traps::set_trap_table(&t), 0);
    check_rc(
        "2c: register the failsafe callback",
        traps::register_callback(abi::CALLBACKTYPE_FAILSAFE, 0),
        0,
    );
    pvguest::println!("EXPECT-CRASH-OR-FAILSAFE");
    match iret_to_user(abi::FLAT_USER_CS32, 0x1_0000_0000) {
        Ok(()) => {
            fail(
                "2c: iret to a refused frame without a #GP handler",
                format_args!("no trap"),
            );
            false
        }
        Err(t) => check(
            "2c: iret to a refused frame without a #GP handler: the failsafe callback ran",
            t.vector == traps::VEC_FAILSAFE,
            format_args!("{t}"),
        ),
    };
    traps::install_default_trap_table();
}

// ---------------------------------------------------------------------
// 3. The top of the address space.
// ---------------------------------------------------------------------

/// The last page of the address space.
const TOP: u64 = 0xffff_ffff_ffff_f000;

fn read_bytes<const N: usize>(va: u64) -> [u8; N] {
    let mut b = [0u8; N];
    for (i, x) in b.iter_mut().enumerate() {
        // SAFETY: callers pass mapped addresses.
        *x = unsafe { ((va + i as u64) as *const u8).read_volatile() };
    }
    b
}

fn fill(va: u64, len: u64, byte: u8) {
    for i in 0..len {
        // SAFETY: callers pass a mapped range of their own.
        unsafe { ((va + i) as *mut u8).write_volatile(byte) };
    }
}

/// Maps two fresh pages at `TOP - 4096` and `TOP` through L4 slot 511 →
/// (the existing L3) slot 511 → an own L2 → an own L1.
fn map_top(w: &Window) -> bool {
    let l3 = match table_of(TOP, 3) {
        Some(l3) => l3,
        None => {
            fail(
                "3: map the top page",
                format_args!("no L3 under L4 slot 511"),
            );
            return false;
        }
    };
    if pte(l3, 511) & P != 0 {
        fail(
            "3: map the top page",
            format_args!("L3 slot 511 already in use: {:#x}", pte(l3, 511)),
        );
        return false;
    }
    let (_, d0) = alloc_page();
    let (_, d1) = alloc_page();
    let l1 = page_with(w, &[(510, d0 << 12 | LEAF_RW), (511, d1 << 12 | LEAF_RW)]);
    let l2 = page_with(w, &[(511, l1 << 12 | TABLE)]);
    let rc = mmu(&[MmuUpdate {
        ptr: (l3 << 12) | (511 * 8),
        val: l2 << 12 | TABLE,
    }])
    .0;
    if !check_rc(
        "3: map own pages at 0xffff_ffff_ffff_e000 and _f000 (mmu_update of L3 slot 511)",
        rc,
        0,
    ) {
        return false;
    }
    fill(TOP - 4096, 8192, 0);
    poke(TOP + 4088, 0x70b);
    check_eq(
        "3: the top page reads back what was written",
        peek(TOP + 4088),
        0x70b,
    );
    true
}

fn top_of_address_space(w: &Window) {
    if !map_top(w) {
        return;
    }
    if wanted("top", "3a") {
        top_3a();
    }
    if wanted("top", "3b") {
        top_3b(w);
    }
    if wanted("top", "3c") {
        top_stack_bounce();
    }
    if wanted("top", "3d") {
        top_3d();
    }
}

fn top_3a() {
    let mut plain = [0u8; 16];
    // SAFETY: 16 bytes of ours.
    let rc = unsafe { hc::xen_version(abi::XENVER_EXTRAVERSION, plain.as_mut_ptr() as u64) };
    check_rc("3a: XENVER_extraversion into an ordinary buffer", rc, 0);
    fill(TOP, 16, 0xa5);
    // SAFETY: the page is ours.
    let rc = unsafe { hc::xen_version(abi::XENVER_EXTRAVERSION, TOP) };
    check_rc("3a: XENVER_extraversion at 0xffff_ffff_ffff_f000: 0", rc, 0);
    check_same_bytes(
        "3a: the 16 bytes at 0xffff_ffff_ffff_f000 are the extraversion",
        read_bytes::<16>(TOP),
        plain,
    );
    fill(TOP + 0xff8, 8, 0x5a);
    // SAFETY: the hypervisor must refuse the part past 2^64; the 8 bytes
    // below it are ours.
    let rc = unsafe { hc::xen_version(abi::XENVER_EXTRAVERSION, TOP + 0xff8) };
    check_rc(
        "3a: XENVER_extraversion at 0xffff_ffff_ffff_fff8 (crossing 2^64): -EFAULT",
        rc,
        EFAULT,
    );
    check_same_bytes(
        "3a: ... and nothing written there",
        read_bytes::<8>(TOP + 0xff8),
        [0x5a; 8],
    );
}

fn top_3b(w: &Window) {
    // 3b: a harmless update (window slot 7 unmapped, twice) with the done
    // count at the end.
    let req = [MmuUpdate {
        ptr: w.pte_maddr(7),
        val: 0,
    }];
    let done_at = TOP + 0xffc;
    // SAFETY: our page.
    unsafe { (done_at as *mut u32).write_volatile(0xdead) };
    // SAFETY: the request is valid, the done pointer ours.
    let rc = unsafe { hc::mmu_update(req.as_ptr() as u64, 1, done_at, abi::DOMID_SELF) };
    check_rc(
        "3b: mmu_update with done at 0xffff_ffff_ffff_fffc: 0",
        rc,
        0,
    );
    // SAFETY: our page.
    let done = unsafe { (done_at as *const u32).read_volatile() };
    check_eq("3b: ... done written there (1)", done, 1);
    // SAFETY: the done pointer crosses 2^64: the hypervisor must refuse it.
    let rc = unsafe { hc::mmu_update(req.as_ptr() as u64, 1, TOP + 0xffe, abi::DOMID_SELF) };
    check_rc(
        "3b: mmu_update with done at 0xffff_ffff_ffff_fffe (crossing 2^64): -EFAULT",
        rc,
        EFAULT,
    );
}

/// 3d: output buffers that end exactly at 2^64.
fn top_3d() {
    let end = 0u64; // 2^64, wrapped
    outputs_at_end::<16>(
        "3d: XENVER_guest_handle, 16 bytes ending at 2^64",
        abi::XENVER_GUEST_HANDLE,
        end,
        0,
    );
    outputs_at_end::<16>(
        "3d: XENVER_extraversion, 16 bytes ending at 2^64",
        abi::XENVER_EXTRAVERSION,
        end,
        0,
    );
    outputs_at_end::<64>(
        "3d: XENVER_changeset, 64 bytes ending at 2^64",
        abi::XENVER_CHANGESET,
        end,
        0,
    );
    outputs_at_end::<1024>(
        "3d: XENVER_capabilities, 1024 bytes ending at 2^64",
        abi::XENVER_CAPABILITIES,
        end,
        0,
    );
    outputs_at_end::<8>(
        "3d: XENVER_platform_parameters, 8 bytes ending at 2^64",
        abi::XENVER_PLATFORM_PARAMETERS,
        end,
        0,
    );
    outputs_at_end::<8>(
        "3d: XENVER_get_features (submap 0), 8 bytes ending at 2^64",
        abi::XENVER_GET_FEATURES,
        end,
        4,
    );
}

fn check_same_bytes<const N: usize>(case: &str, got: [u8; N], want: [u8; N]) {
    check(
        case,
        got == want,
        format_args!(
            "got {:x?}, want {:x?}",
            &got[..N.min(16)],
            &want[..N.min(16)]
        ),
    );
}

/// `xen_version(cmd)` into an ordinary buffer and into the last `N` bytes
/// of the address space (filled with 0xa5 first, but for the first
/// `zero_in` bytes: an IN field, 0 in both): both 0, the same bytes.
fn outputs_at_end<const N: usize>(case: &str, cmd: u32, end: u64, zero_in: u64) {
    let mut plain = [0u8; N];
    // SAFETY: N bytes of ours, the size `cmd` writes.
    let rc0 = unsafe { hc::xen_version(cmd, plain.as_mut_ptr() as u64) };
    let at = end.wrapping_sub(N as u64);
    fill(at, N as u64, 0xa5);
    fill(at, zero_in, 0);
    // SAFETY: our page (N <= 4096).
    let rc = unsafe { hc::xen_version(cmd, at) };
    let got = read_bytes::<N>(at);
    check(
        case,
        rc0 >= 0 && rc == rc0 && got == plain,
        format_args!(
            "ordinary buffer: {}, at {at:#x}: {}; bytes {}",
            Rc(rc0),
            Rc(rc),
            if got == plain { "the same" } else { "differ" }
        ),
    );
}

/// The rsp the bounce interrupted, and where the int3 was.
const TOP_RSP: u64 = 0xffff_ffff_ffff_fff0;

fn top_stack_bounce() {
    let n = traps::count();
    let (after, rsp_back): (u64, u64);
    // SAFETY: the stack moves to our own mapped pages at the top for the
    // int3 (the #BP handler runs there and resumes) and back.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "int3",
            "2:",
            "mov {back}, rsp",
            "mov rsp, r12",
            "lea {after}, [rip + 2b]",
            top = in(reg) TOP_RSP,
            back = out(reg) rsp_back,
            after = out(reg) after,
            out("r12") _,
        );
    }
    let t = traps::last();
    check(
        "3c: int3 with rsp 0xffff_ffff_ffff_fff0: #BP handler ran, frame just below (rip after the int3, rsp as it was)",
        traps::count() == n + 1
            && t.vector == 3
            && t.rip == after
            && t.rsp == TOP_RSP
            && t.frame_top <= TOP_RSP
            && t.frame_top >= TOP_RSP - 64,
        format_args!("{} bounces; {t}; frame top {:#x} (want rip {after:#x})", traps::count() - n, t.frame_top),
    );
    check_eq("3c: rsp after the bounce returned", rsp_back, TOP_RSP);
}
