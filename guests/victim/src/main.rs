//! `guest-victim`: the domain the hostile guests attack. It fills every
//! free page it has with a known pattern, records its page tables, lets
//! the attackers in, stays alive (polling its `VIRQ_TIMER` port, about
//! 10 ms per tick, checking a slice of its memory on every wake-up) until
//! each attacker says it is done, then checks everything again.
//!
//! Command line: `attackers=N`: domains 1..=N attack; the victim allocates
//! port k for domain k (k = 1..=N, in order, before anything else: ports
//! are handed out lowest first, so domain k's is port k). Attacker k binds
//! to it (`victim=0 port=k`) and notifies it when it has finished. The
//! ports are allocated only once the memory is filled, so the attacks
//! start after that. `first=D`: the attackers are domains D..D+N-1
//! instead (`first=0`: the initial domain attacks a victim built after
//! it; port k is then domain D+k-1's).
//!
//! Cases:
//! - the ports for the attackers are 1..=N (2..=N+1 when the victim is
//!   not the initial domain: port 1 is its console ring's), `VIRQ_TIMER`
//!   is bound;
//! - every attacker notified us before the deadline (40 s), and we were
//!   running all along (timer ticks counted);
//! - the pattern in every free page (above the bootstrap region, and the
//!   bootstrap region's own spare pages) is intact, checked while the
//!   attacks run and at the end;
//! - every page-table frame (the bootstrap tables, the window L1s) holds
//!   what it held before the attacks (entries compared with the A/D bits
//!   masked), the L4 still pinned;
//! - the P2M list is unchanged, the M2P still maps each of our frames to
//!   its page, `current_reservation` is unchanged.
//!
//! For the fuzz guests (`cargo xtask fuzz`), which may be crashed by the
//! hypervisor and may notify any port: `gone=1` counts an attacker as done
//! only when its domain no longer exists (`EVTCHNOP_status` naming it:
//! `-ESRCH`), whatever it notified; `deadline=S` sets the deadline in
//! seconds (default 40).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

#[path = "../../hostile-foreign/src/common.rs"]
mod common;

use common::*;
use pvguest::abi::{self, MmuUpdate, StartInfo};
use pvguest::cell::GuestCell;
use pvguest::events as ev;
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc, fail, info, pass, Rc};
use pvguest::time::now_ns;
use pvguest::traps;

pvguest::guest_main!("victim", run);

/// How long the attackers get.
const DEADLINE_NS: u64 = 40_000_000_000;
/// Most windows (2 MiB each) the free pages may need.
const MAX_WINDOWS: usize = 64;
/// Pages checked per wake-up while the attacks run.
const SLICE: u64 = 48;

static WINDOWS: GuestCell<[u64; MAX_WINDOWS]> = GuestCell::new([0; MAX_WINDOWS]);
static NR_WINDOWS: GuestCell<usize> = GuestCell::new(0);

fn run(si: &StartInfo) {
    traps::install_default_trap_table();
    let attackers = pvguest::start_info::arg_u32("attackers").unwrap_or(0);
    let first = pvguest::start_info::arg_u32("first").unwrap_or(1) as u16;
    info(format_args!(
        "nr_pages {}, bootstrap pages {}, page-table frames {}, attackers {attackers}",
        nr_pages(),
        boot_pages(),
        si.nr_pt_frames
    ));
    let pages = timed("fill", fill);
    let tables = table_frames();
    let sums_before = table_sums(&tables);
    let p2m_before = p2m_sum();
    let reservation_before = current_reservation();
    info(format_args!(
        "{pages} pages filled, {} page-table frames recorded",
        tables.len
    ));

    // Let them in.
    let mut ports = [0u32; 32];
    let n = (attackers as usize).min(ports.len() - 1);
    for (k, p) in ports.iter_mut().enumerate().take(n) {
        match ev::alloc_unbound(abi::DOMID_SELF, first + k as u16) {
            Ok(got) => *p = got,
            Err(rc) => pvguest::report::error(format_args!(
                "alloc_unbound for d{} = {}",
                first as usize + k,
                Rc(rc)
            )),
        }
    }
    // Ports from 1, or from 2 for a domU (its console ring has port 1).
    let base = if pvguest::start_info::start_info().flags & abi::SIF_INITDOMAIN != 0 {
        1
    } else {
        2
    };
    check(
        "the attackers' ports are consecutive from the first free one",
        (0..n).all(|k| ports[k] == k as u32 + base),
        format_args!("{:?}", &ports[..n]),
    );
    let timer = match ev::bind_virq(abi::VIRQ_TIMER, 0) {
        Ok(p) => p,
        Err(rc) => pvguest::report::error(format_args!("bind_virq(VIRQ_TIMER) = {}", Rc(rc))),
    };
    ports[n] = timer;
    let ports = &ports[..=n];
    info(format_args!(
        "ready: attacked from now on (timer port {timer})"
    ));

    // Stay alive until every attacker is done.
    let gone_mode = pvguest::start_info::arg_u32("gone") == Some(1);
    let deadline_ns = pvguest::start_info::arg_u32("deadline")
        .map_or(DEADLINE_NS, |s| u64::from(s) * 1_000_000_000);
    let start = now_ns();
    let mut done = [false; 32];
    let mut ticks = 0u64;
    let mut wakes = 0u64;
    let mut next_page = 0u64;
    let mut early = Early::default();
    while done[..n].iter().any(|d| !d) && now_ns() < start + deadline_ns {
        let p = abi::SchedPoll {
            ports: ports.as_ptr() as u64,
            nr_ports: ports.len() as u32,
            _pad0: 0,
            timeout: 0,
        };
        // SAFETY: `p` names our ports, in this stack frame.
        unsafe { hc::sched_op(abi::SCHEDOP_POLL, &p as *const _ as u64) };
        wakes += 1;
        for (k, &port) in ports.iter().enumerate() {
            if ev::is_pending(port) {
                ev::clear_pending(port);
                if port == timer {
                    ticks += 1;
                } else if !done[k] && !gone_mode {
                    done[k] = true;
                    info(format_args!(
                        "d{} is done ({} ms in)",
                        first as usize + k,
                        (now_ns() - start) / 1_000_000
                    ));
                }
            }
        }
        if gone_mode {
            for (k, d) in done.iter_mut().enumerate().take(n) {
                if !*d && ev::status(first + k as u16, 0).err() == Some(ESRCH) {
                    *d = true;
                    info(format_args!(
                        "d{} is gone ({} ms in)",
                        first as usize + k,
                        (now_ns() - start) / 1_000_000
                    ));
                }
            }
        }
        // A slice of the memory, while they are at it.
        for _ in 0..SLICE {
            if pages > 0 {
                early.page(next_page % pages);
                next_page += 1;
            }
        }
        if wakes.is_multiple_of(64)
            && table_sums(&tables).differs(&sums_before)
            && early.tables.is_none()
        {
            early.tables = Some(now_ns() - start);
        }
    }
    let ms = (now_ns() - start) / 1_000_000;
    info(format_args!("attacks over after {ms} ms: {ticks} timer ticks, {wakes} wake-ups, {next_page} pages checked meanwhile"));
    let missing = (0..n).filter(|&k| !done[k]).count();
    check(
        "every attacker finished while we ran",
        missing == 0,
        format_args!(
            "{missing} of {n} never said so within {} s",
            deadline_ns / 1_000_000_000
        ),
    );
    check(
        "we kept running (timer ticks)",
        n == 0 || ticks > 0,
        format_args!("no tick in {ms} ms"),
    );
    match early.bad {
        None => pass("the pattern held while the attacks ran"),
        Some((pfn, i, got)) => fail(
            "the pattern held while the attacks ran",
            format_args!(
                "page {pfn:#x} word {i}: {got:#x}, want {:#x}",
                pattern(pfn, i)
            ),
        ),
    }
    match early.tables {
        None => pass("the page tables held while the attacks ran"),
        Some(t) => fail(
            "the page tables held while the attacks ran",
            format_args!("changed {} ms in", t / 1_000_000),
        ),
    }

    // Everything, at the end.
    let bad = timed("verify", verify);
    match bad {
        None => {
            pass(Name::new(format_args!("the pattern in all {pages} pages is intact")).as_str())
        }
        Some((pfn, i, got, count)) => fail(
            "the pattern in every page is intact",
            format_args!(
                "{count} words differ; first: page {pfn:#x} word {i}: {got:#x}, want {:#x}",
                pattern(pfn, i)
            ),
        ),
    }
    let sums_after = table_sums(&tables);
    match (0..tables.len).find(|&i| sums_after.sum[i] != sums_before.sum[i]) {
        None => pass(
            Name::new(format_args!(
                "all {} page-table frames are intact",
                tables.len
            ))
            .as_str(),
        ),
        Some(i) => fail(
            "every page-table frame is intact",
            format_args!(
                "frame {:#x} changed ({:#x} -> {:#x})",
                tables.mfn[i], sums_before.sum[i], sums_after.sum[i]
            ),
        ),
    }
    check_rc(
        "our L4 is still pinned (pinning it again: -EINVAL)",
        pin(4, l4_mfn()),
        EINVAL,
    );
    check_eq("the P2M list is unchanged", p2m_sum(), p2m_before);
    let m2p_bad = (0..nr_pages()).find(|&pfn| {
        let mfn = p2m(pfn);
        mfn >= m2p_frames() || m2p(mfn) != pfn
    });
    match m2p_bad {
        None => pass("the M2P maps each of our frames to its page"),
        Some(pfn) => fail(
            "the M2P maps each of our frames to its page",
            format_args!(
                "page {pfn:#x} (frame {:#x}): M2P says {:#x}",
                p2m(pfn),
                m2p(p2m(pfn))
            ),
        ),
    }
    check_eq(
        "current_reservation is unchanged",
        current_reservation(),
        reservation_before,
    );
}

/// What the word `i` of page `pfn` holds.
fn pattern(pfn: u64, i: u64) -> u64 {
    0x71c7_0000_0000_0000 ^ (pfn << 20) ^ (i << 4) ^ (p2m(pfn) << 36)
}

/// Where page `pfn` (a free one) is mapped: the bootstrap region's spare
/// pages where they are, the pages above it in our windows.
fn page_va(pfn: u64) -> u64 {
    if pfn < first_free_pfn() {
        return VIRT_BASE + (pfn << 12);
    }
    let k = pfn - first_patterned();
    let w = WINDOWS.get()[(k / WINDOW_SELF) as usize];
    w + ((k % WINDOW_SELF) << 12)
}

/// The first page above the bootstrap region that is not a window's L1
/// (those come first: `Window::new` takes them with `alloc_page`).
fn first_patterned() -> u64 {
    first_free_pfn() + NR_WINDOWS.get() as u64
}

/// The bootstrap region's spare pages: after the builder's boot stack
/// (the page after the page tables) up to the end of the region.
fn spares() -> core::ops::Range<u64> {
    boot_pt_pfns().end + 1..first_free_pfn()
}

/// The free pages, numbered 0..: first the bootstrap region's spare
/// pages, then every page above the region but the windows' L1s.
fn nth_free(n: u64) -> u64 {
    let s = spares();
    let count = s.end.saturating_sub(s.start);
    if n < count {
        s.start + n
    } else {
        first_patterned() + (n - count)
    }
}

/// How many pages hold the pattern.
fn free_count() -> u64 {
    let s = spares();
    s.end.saturating_sub(s.start) + (nr_pages() - first_patterned())
}

/// Maps every page above the bootstrap region (windows of 511 pages,
/// one `mmu_update` batch each) and writes the pattern into every free
/// page; returns how many.
fn fill() -> u64 {
    let above = nr_pages() - first_free_pfn();
    let nw = above.div_ceil(WINDOW_SELF) as usize;
    if nw > MAX_WINDOWS {
        pvguest::report::error(format_args!(
            "{above} free pages need more than {MAX_WINDOWS} windows"
        ));
    }
    let mut ws = [0u64; MAX_WINDOWS];
    let mut l1s = [0u64; MAX_WINDOWS];
    for i in 0..nw {
        let w = Window::new(free_l2_slot(i));
        ws[i] = w.base;
        l1s[i] = w.l1;
    }
    WINDOWS.set(ws);
    NR_WINDOWS.set(nw);
    let mut reqs = [MmuUpdate { ptr: 0, val: 0 }; WINDOW_SELF as usize];
    let total = nr_pages() - first_patterned();
    let mut mapped = 0;
    let mut i = 0;
    while mapped < total {
        let n = (total - mapped).min(WINDOW_SELF);
        for (j, r) in reqs.iter_mut().enumerate().take(n as usize) {
            let pfn = first_patterned() + mapped + j as u64;
            *r = MmuUpdate {
                ptr: (l1s[i] << 12) | (j as u64 * 8),
                val: p2m(pfn) << 12 | LEAF_RW,
            };
        }
        let (rc, done) = mmu(&reqs[..n as usize]);
        if rc != 0 {
            pvguest::report::error(format_args!("mapping window {i}: {} after {done}", Rc(rc)));
        }
        mapped += n;
        i += 1;
    }
    let pages = free_count();
    for n in 0..pages {
        let pfn = nth_free(n);
        let va = page_va(pfn);
        for i in 0..512 {
            poke(va + i * 8, pattern(pfn, i));
        }
    }
    pages
}

/// Checks a page: (word, value) of the first mismatch.
fn check_page(pfn: u64) -> Option<(u64, u64)> {
    let va = page_va(pfn);
    (0..512)
        .map(|i| (i, peek(va + i * 8)))
        .find(|&(i, v)| v != pattern(pfn, i))
}

#[derive(Default)]
struct Early {
    bad: Option<(u64, u64, u64)>,
    tables: Option<u64>,
}

impl Early {
    fn page(&mut self, n: u64) {
        let pfn = nth_free(n);
        if self.bad.is_none() {
            if let Some((i, v)) = check_page(pfn) {
                self.bad = Some((pfn, i, v));
            }
        }
    }
}

/// Every free page: (page, word, value, words wrong) of the first bad one.
fn verify() -> Option<(u64, u64, u64, u64)> {
    let mut first = None;
    let mut count = 0;
    for n in 0..free_count() {
        let pfn = nth_free(n);
        let va = page_va(pfn);
        for i in 0..512 {
            let v = peek(va + i * 8);
            if v != pattern(pfn, i) {
                count += 1;
                first.get_or_insert((pfn, i, v));
            }
        }
    }
    first.map(|(p, i, v)| (p, i, v, count))
}

struct Tables {
    mfn: [u64; 96],
    len: usize,
}

/// Our page-table frames: the bootstrap tables and the windows' L1s.
fn table_frames() -> Tables {
    let mut t = Tables {
        mfn: [0; 96],
        len: 0,
    };
    for pfn in boot_pt_pfns() {
        t.mfn[t.len] = p2m(pfn);
        t.len += 1;
    }
    for i in 0..NR_WINDOWS.get() as u64 {
        t.mfn[t.len] = p2m(first_free_pfn() + i);
        t.len += 1;
    }
    t
}

struct Sums {
    sum: [u64; 96],
}

impl Sums {
    fn differs(&self, other: &Sums) -> bool {
        self.sum != other.sum
    }
}

fn fnv(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01b3)
}

fn table_sums(t: &Tables) -> Sums {
    let mut s = Sums { sum: [0; 96] };
    for i in 0..t.len {
        let mut h = 0xcbf2_9ce4_8422_2325;
        for e in 0..512 {
            h = fnv(h, pte(t.mfn[i], e) & !(A | D));
        }
        s.sum[i] = h;
    }
    s
}

fn p2m_sum() -> u64 {
    (0..nr_pages()).fold(0xcbf2_9ce4_8422_2325, |h, pfn| fnv(h, p2m(pfn)))
}

fn current_reservation() -> i64 {
    let d = abi::DOMID_SELF;
    // SAFETY: the hypervisor reads a domid_t.
    unsafe { hc::memory_op(abi::XENMEM_CURRENT_RESERVATION, &d as *const u16 as u64) }
}
