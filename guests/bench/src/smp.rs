//! `mode=smp`: the multi-CPU rows, in a domain of 4 vCPUs (`rv.vcpus=4`)
//! on a 4-CPU machine (`cargo xtask bench` boots it with `-smp 4` and
//! multi-threaded TCG). TSC ticks, as the other rows; QEMU's TSC is one
//! clock for every virtual CPU, so a tick read on one vCPU and one read on
//! another subtract.
//!
//! Rows (the same `BENCH:` lines as the other cases):
//! - `smp-calls-1vcpu`: wall ticks per `xen_version` hypercall, vCPU 0
//!   alone (the others not up yet), `calls=N` calls a round.
//! - `smp-calls-4vcpus`: wall ticks per round of one `xen_version` on each
//!   of the 4 vCPUs at once: vCPU 0 starts a round (an IPI event wakes
//!   each other vCPU from `sched_op(block)`), every vCPU makes its N
//!   calls and says so on vCPU 0's IPI port, the round ends when the last
//!   is done (vCPU 0 blocks meanwhile: no vCPU spins on a host core the
//!   others need). 4 × `smp-calls-1vcpu` / `smp-calls-4vcpus` is the
//!   scaling (4.0: perfect; the host's cores bound it).
//! - `smp-uva-local`: `update_va_mapping(UVMF_INVLPG)` (this CPU only)
//!   while vCPUs 1-3 spin in guest kernel mode on their CPUs.
//! - `smp-uva-shootdown-3`: the same with `UVMF_INVLPG | UVMF_ALL`: the
//!   page flushed on every CPU the domain runs on, so shot down on the
//!   3 other CPUs (their vCPUs spinning there), back when all 3 have.
//!   At most 500 samples (and as many of the local row, interleaved).
//! - `smp-uva-shootdown-1`: the same `UVMF_ALL` update while only
//!   vCPU 1 spins (2 and 3 blocked: their CPUs idle, out of the domain's
//!   dirty mask), so shot down on 1 other CPU: two busy virtual CPUs fit
//!   the host's 2 cores, where the 3-CPU row waits for the host.
//! - `smp-event-remote`: `EVTCHNOP_send` on vCPU 0 of an IPI port bound
//!   to vCPU 1, spinning on another CPU with events unmasked, until
//!   vCPU 1's loop sees the upcall's count move (its TSC there minus
//!   vCPU 0's before the send). vCPUs 2 and 3 block meanwhile (they would
//!   take host cores from the two that are timed). Interleaved with the
//!   1-CPU shootdown.
//!
//! Each vCPU notes the APIC IDs it ran on (the native `cpuid`); the run
//! fails unless the 4 vCPUs ran on 4 CPUs.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvguest::abi::{self, StartInfo};
use pvguest::cell::{Page, Stack};
use pvguest::events as ev;
use pvguest::hypercall as hc;
use pvguest::report::{self, check, check_eq, check_rc, info};
use pvguest::smp::{self, vcpu_op0};
use pvguest::time::{now_ns, MS};
use pvguest::{println, traps};

use crate::{l1_entry_maddr, rdtsc, OTHER};

const VCPUS: usize = 4;
/// Samples kept per row.
const MAX: usize = 4096;

const ROWS: [&str; 6] = [
    "smp-calls-1vcpu",
    "smp-calls-4vcpus",
    "smp-uva-local",
    "smp-uva-shootdown-3",
    "smp-uva-shootdown-1",
    "smp-event-remote",
];
const CALLS1: usize = 0;
const CALLS4: usize = 1;
const UVA_LOCAL: usize = 2;
const UVA_ALL3: usize = 3;
const UVA_ALL1: usize = 4;
const REMOTE: usize = 5;
/// Samples of the 3-CPU shootdown and its local twin at most: with 4
/// busy virtual CPUs on a host of 2 cores each one waits for the host to
/// run the CPUs it shoots down (milliseconds).
const MAX_ALL3: usize = 500;

static STACKS: [Stack<{ 8 * 4096 }>; VCPUS - 1] = [const { Stack::new() }; VCPUS - 1];
/// The page whose mapping the shootdown rows change.
static SCRATCH: Page = Page::new();

/// The phase vCPU 0 sets: SPIN (spin, events unmasked), CALLS + round
/// number (make the calls of that round once, then block), EVENT (vCPU 1
/// watches for upcalls, the others block), IDLE and STOP (block).
static PHASE: AtomicU32 = AtomicU32::new(IDLE);
/// Bit v: vCPU v spins in the SPIN phase.
static SPINNING: AtomicU32 = AtomicU32::new(0);
/// vCPU 0's IPI port: each vCPU says it finished a round's calls on it.
static TO0: AtomicU32 = AtomicU32::new(0);
const SPIN: u32 = 0;
const EVENT: u32 = 1;
const STOP: u32 = 2;
const IDLE: u32 = 3;
const CALLS: u32 = 0x1000;
/// Calls per vCPU per round.
static N_CALLS: AtomicU64 = AtomicU64::new(0);
/// Bit v: vCPU v finished the current round's calls.
static DONE: AtomicU32 = AtomicU32::new(0);
/// Bit v: vCPU v is running its loop.
static RUNNING: AtomicU32 = AtomicU32::new(0);
/// Per vCPU: the APIC IDs it ran on (bit n: ID n).
static APICS: [AtomicU64; VCPUS] = [const { AtomicU64::new(0) }; VCPUS];
/// The remote-event case: the port (bound to vCPU 1), and vCPU 1's TSC
/// when it saw upcall number `SEEN`.
static PORT: AtomicU32 = AtomicU32::new(0);
static SEEN: AtomicU32 = AtomicU32::new(0);
static SEEN_TSC: AtomicU64 = AtomicU64::new(0);

/// Samples, written by vCPU 0 only.
struct Samples(core::cell::UnsafeCell<[[u32; MAX]; ROWS.len()]>);
// SAFETY: only vCPU 0 touches it (`record`, `summary`), never at once.
unsafe impl Sync for Samples {}
static SAMPLES: Samples = Samples(core::cell::UnsafeCell::new([[0; MAX]; ROWS.len()]));
static COUNT: [AtomicU32; ROWS.len()] = [const { AtomicU32::new(0) }; ROWS.len()];

fn record(row: usize, dt: u64) {
    let i = COUNT[row].load(Ordering::Relaxed) as usize;
    if i < MAX {
        // SAFETY: in bounds; vCPU 0 alone writes, nothing holds a reference.
        unsafe { (*SAMPLES.0.get())[row][i] = dt.min(u32::MAX as u64) as u32 };
        COUNT[row].store(i as u32 + 1, Ordering::Relaxed);
    }
}

/// (median, p10, p90, n), nearest rank rounding down as the other rows.
fn summary(row: usize) -> Option<(u32, u32, u32, usize)> {
    let n = COUNT[row].load(Ordering::Relaxed) as usize;
    if n == 0 {
        return None;
    }
    // SAFETY: vCPU 0 alone; no other reference into SAMPLES lives.
    let s = unsafe { &mut (&mut *SAMPLES.0.get())[row][..n] };
    s.sort_unstable();
    let at = |p: usize| s[(n - 1) * p / 100];
    Some((at(50), at(10), at(90), n))
}

/// The APIC ID of the CPU this runs on (native `cpuid` leaf 1: a PV
/// guest's plain `cpuid` is the CPU's own).
fn apic_id() -> u32 {
    let r = core::arch::x86_64::__cpuid(1);
    r.ebx >> 24
}

fn note_apic(v: usize) {
    let id = apic_id();
    if id < 64 {
        APICS[v].fetch_or(1 << id, Ordering::Relaxed);
    }
}

fn null_calls(n: u64) {
    for _ in 0..n {
        // SAFETY: XENVER_version writes nothing.
        unsafe { hc::xen_version(abi::XENVER_VERSION, 0) };
    }
}

/// vCPUs 1-3.
extern "C" fn secondary(vcpu: u32, _arg: u64) {
    let v = vcpu as usize;
    ev::unmask_events();
    RUNNING.fetch_or(1 << v, Ordering::SeqCst);
    let mut last_round = 0;
    loop {
        match PHASE.load(Ordering::SeqCst) {
            p if p >= CALLS && p != last_round => {
                note_apic(v);
                null_calls(N_CALLS.load(Ordering::SeqCst));
                last_round = p;
                DONE.fetch_or(1 << v, Ordering::SeqCst);
                ev::send(TO0.load(Ordering::SeqCst));
            }
            EVENT if v == 1 => {
                let c = ev::count(PORT.load(Ordering::SeqCst));
                if c != SEEN.load(Ordering::Relaxed) {
                    // TSC first: SEEN tells vCPU 0 it is there.
                    SEEN_TSC.store(rdtsc(), Ordering::SeqCst);
                    SEEN.store(c, Ordering::SeqCst);
                }
            }
            SPIN => {
                SPINNING.fetch_or(1 << v, Ordering::SeqCst);
                note_apic(v);
                core::hint::spin_loop();
            }
            _ => {
                // Waiting for a round, or not in the case timed now: off
                // the host's cores (a spinning virtual CPU takes one from
                // those that are timed); vCPU 0's event wakes us.
                SPINNING.fetch_and(!(1 << v), Ordering::SeqCst);
                ev::block();
            }
        }
    }
}

/// Sets the phase and wakes vCPUs 1-3 (blocked or not) to read it.
fn set_phase(p: u32, ports: &[u32]) {
    PHASE.store(p, Ordering::SeqCst);
    for &port in ports {
        ev::send(port);
    }
}

/// Spins (no hypercall) until `cond()` or 5 s of system time.
fn wait(cond: impl Fn() -> bool) -> bool {
    let deadline = now_ns() + 5_000 * MS;
    while !cond() {
        if now_ns() > deadline {
            return cond();
        }
        core::hint::spin_loop();
    }
    true
}

pub fn run(si: &StartInfo, n: usize, rounds: usize) {
    traps::install_default_trap_table();
    check_rc("callback_op register event", ev::init(), 0);
    ev::unmask_events();
    let up = (1..VCPUS as u32)
        .take_while(|&k| vcpu_op0(abi::VCPUOP_IS_UP, k) != abi::neg(abi::ENOENT))
        .count()
        + 1;
    if up < VCPUS {
        report::error(format_args!(
            "mode=smp needs {VCPUS} vCPUs (rv.vcpus=4), the domain has {up}"
        ));
    }
    let calls = start_info_arg("calls", 50_000) as u64;
    let rounds = rounds.clamp(1, MAX);
    let n = n.clamp(1, MAX);
    N_CALLS.store(calls, Ordering::SeqCst);
    info(format_args!(
        "mode=smp: {calls} calls x {rounds} rounds; n={n} per other row"
    ));

    // One vCPU: the others are not up yet.
    null_calls(calls);
    for _ in 0..rounds {
        note_apic(0);
        let t0 = rdtsc();
        null_calls(calls);
        record(CALLS1, (rdtsc() - t0) / calls);
    }

    for k in 1..VCPUS {
        let st = &STACKS[k - 1];
        let Some(ctx) = smp::context(k as u32, st.bottom(), st.top(), secondary, 0) else {
            report::error(format_args!("no MFN for pt_base"));
        };
        // SAFETY: vCPU k gets its own stack and runs `secondary`, which
        // touches only atomics and makes hypercalls.
        check_rc(
            "VCPUOP_initialise",
            unsafe { smp::initialise(k as u32, &ctx) },
            0,
        );
        check_rc("VCPUOP_up", vcpu_op0(abi::VCPUOP_UP, k as u32), 0);
    }
    let all = (1u32 << VCPUS) - 1;
    let bind = |v: u32| match ev::bind_ipi(v) {
        Ok(p) => p,
        Err(rc) => report::error(format_args!("bind_ipi({v}) = {}", report::Rc(rc))),
    };
    TO0.store(bind(0), Ordering::SeqCst);
    let wake = [bind(1), bind(2), bind(3)];
    if !wait(|| RUNNING.load(Ordering::SeqCst) | 1 == all) {
        report::error(format_args!(
            "the other vCPUs did not start: {:#x}",
            RUNNING.load(Ordering::SeqCst)
        ));
    }

    // Four vCPUs at once, round by round.
    for r in 0..rounds as u32 {
        DONE.store(0, Ordering::SeqCst);
        note_apic(0);
        let t0 = rdtsc();
        set_phase(CALLS + r + 1, &wake);
        null_calls(calls);
        DONE.fetch_or(1, Ordering::SeqCst);
        if !ev::block_until(|| DONE.load(Ordering::SeqCst) == all, now_ns() + 5_000 * MS) {
            report::error(format_args!(
                "round {r}: not every vCPU made its calls: {:#x}",
                DONE.load(Ordering::SeqCst)
            ));
        }
        record(CALLS4, (rdtsc() - t0) / calls);
    }
    set_phase(SPIN, &wake);
    if !wait(|| SPINNING.load(Ordering::SeqCst) | 1 == all) {
        report::error(format_args!(
            "vCPUs 1-3 do not spin: {:#x}",
            SPINNING.load(Ordering::SeqCst)
        ));
    }

    // The shootdown rows: the others spin on their CPUs meanwhile.
    let scratch = SCRATCH.addr();
    let Some((_, pte)) = l1_entry_maddr(si, scratch) else {
        report::error(format_args!("no L1 entry for the scratch page"))
    };
    let Some(other) = pvguest::start_info::virt_to_mfn(OTHER.addr()) else {
        report::error(format_args!("no MFN for the other page"))
    };
    let ptes = [pte, (pte & !0x000f_ffff_ffff_f000) | other << 12];
    let uva = |val: u64, flags: u64| -> i64 {
        // SAFETY: maps our scratch page to one of our own frames.
        unsafe { hc::update_va_mapping(scratch, val, flags) }
    };
    check_rc(
        "update_va_mapping(UVMF_ALL)",
        uva(ptes[1], abi::UVMF_INVLPG | abi::UVMF_ALL),
        0,
    );
    check_rc(
        "update_va_mapping(local)",
        uva(ptes[0], abi::UVMF_INVLPG),
        0,
    );
    let mut cur = 0;
    let mut timed_uva = |row: usize, flags: u64| {
        cur ^= 1;
        let t0 = rdtsc();
        let rc = uva(ptes[cur], flags);
        let dt = rdtsc() - t0;
        if rc != 0 {
            report::error(format_args!("update_va_mapping = {}", report::Rc(rc)));
        }
        record(row, dt);
    };
    let all3 = n.min(MAX_ALL3);
    for r in 0..rounds {
        let k = crate::share(all3, rounds, r);
        for (row, flags) in [
            (UVA_LOCAL, abi::UVMF_INVLPG),
            (UVA_ALL3, abi::UVMF_INVLPG | abi::UVMF_ALL),
        ] {
            for _ in 0..k {
                timed_uva(row, flags);
            }
        }
    }

    // The remote event: vCPU 1 spins, 2 and 3 block.
    let port = wake[0];
    PORT.store(port, Ordering::SeqCst);
    SEEN.store(ev::count(port), Ordering::SeqCst);
    // They all spin: no event needed to see it (one on `port` would count).
    PHASE.store(EVENT, Ordering::SeqCst);
    // Until vCPUs 2 and 3 are off their CPUs (out of the dirty mask).
    pvguest::time::spin_for(20 * MS);
    let mut lost = 0;
    for i in 0..n {
        if i % 2 == 0 {
            timed_uva(UVA_ALL1, abi::UVMF_INVLPG | abi::UVMF_ALL);
            timed_uva(UVA_ALL1, abi::UVMF_INVLPG | abi::UVMF_ALL);
        }
        let before = SEEN.load(Ordering::SeqCst);
        let t0 = rdtsc();
        ev::send(port);
        if !wait(|| SEEN.load(Ordering::SeqCst) != before) {
            lost += 1;
            if lost > 1 {
                report::error(format_args!("send {i}: vCPU 1 saw no upcall within 5 s"));
            }
            continue;
        }
        record(REMOTE, SEEN_TSC.load(Ordering::SeqCst).wrapping_sub(t0));
    }
    check_eq("every remote event seen on vCPU 1", lost, 0);
    check(
        "the upcalls ran on vCPU 1",
        ev::last_vcpu(port) == 1,
        format_args!("last on vCPU {}", ev::last_vcpu(port)),
    );
    set_phase(STOP, &wake);
    uva(ptes[0], abi::UVMF_INVLPG | abi::UVMF_ALL);

    let mut cpus = 0u64;
    for (v, a) in APICS.iter().enumerate() {
        let a = a.load(Ordering::SeqCst);
        info(format_args!("vCPU {v} ran on APIC IDs {a:#x}"));
        cpus |= a;
    }
    check(
        "the 4 vCPUs ran on 4 CPUs",
        cpus.count_ones() as usize >= VCPUS,
        format_args!("APIC IDs {cpus:#x}"),
    );

    for (row, name) in ROWS.iter().enumerate() {
        match summary(row) {
            Some((m, p10, p90, n)) => {
                println!("BENCH: {name} median {m} spread {p10}..{p90} n={n}")
            }
            None => println!("BENCH: {name} not measured (n=0)"),
        }
    }
    if let (Some(one), Some(four)) = (summary(CALLS1), summary(CALLS4)) {
        let x100 = 4 * 100 * one.0 as u64 / (four.0 as u64).max(1);
        info(format_args!(
            "scaling: {VCPUS} vCPUs made {}.{:02}x the hypercalls of 1 in the same time",
            x100 / 100,
            x100 % 100
        ));
    }
}

fn start_info_arg(key: &str, default: u32) -> u32 {
    pvguest::start_info::arg_u32(key).unwrap_or(default)
}
