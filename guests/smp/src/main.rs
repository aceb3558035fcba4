//! `guest-smp`: a second vCPU. Needs a domain with exactly 2 vCPUs
//! (ringvisor `rv.vcpus=2`, Xen `dom0_max_vcpus=2`); with fewer it says
//! `RESULT: SKIP`. The vCPUs may share one physical CPU, so vCPU 0 waits
//! for vCPU 1 with `sched_op(yield)`. vCPU 1 runs on its own stack, which
//! is how the runtime (and so the upcall handler) tells the vCPUs apart.
//!
//! Cases:
//! - `VCPUOP_is_up`: vCPU 0 → 1, vCPU 1 → 0, vCPU 2 → `-ENOENT`;
//!   `VCPUOP_get_runstate_info(1)`: offline.
//! - `VCPUOP_up(1)` before `VCPUOP_initialise` → `-EINVAL`;
//!   `VCPUOP_initialise(1)` with a non-canonical rip → `-EINVAL`, and
//!   `VCPUOP_up(1)` still `-EINVAL`.
//! - `VCPUOP_initialise(1)` with a `vcpu_guest_context` (its own stack,
//!   the boot page tables `ctrlreg[3] = xen_pfn_to_cr3(mfn of pt_base)`,
//!   the runtime's trap table and event/failsafe callbacks,
//!   `VGCF_in_kernel`) → 0; vCPU 1 is still down (`is_up` 0); a second
//!   `initialise` → `-EEXIST`; `VCPUOP_up(1)` → 0, `is_up(1)` → 1.
//! - vCPU 1 runs: it sets a flag, then counts in a loop (yielding each
//!   time round); vCPU 0 sees the flag and the counter moving; vCPU 1's
//!   clock (`vcpu_info[1].time`) agrees with vCPU 0's; its runstate is
//!   running or runnable.
//! - `bind_ipi(vcpu 1)` → a port whose `status` says vCPU 1; `send` from
//!   vCPU 0 → the upcall runs on vCPU 1 (and not on vCPU 0).
//! - `bind_vcpu` of that IPI port → `-EINVAL` (Xen moves only
//!   interdomain, unbound and global-VIRQ ports).
//! - A same-domain interdomain channel (A, B): `bind_vcpu(A, 1)` → 0,
//!   `status(A)` says vCPU 1, `send(B)` → A's upcall on vCPU 1;
//!   `bind_vcpu(A, 0)` → `send(B)` → on vCPU 0; `bind_vcpu(A, 2)` →
//!   `-ENOENT`.
//! - `bind_virq(VIRQ_TIMER, vcpu 1)`: vCPU 1's periodic timer ticks on it,
//!   handled on vCPU 1; `VCPUOP_stop_periodic_timer(1)` from vCPU 0 stops
//!   them; `VCPUOP_set_periodic_timer(1, 5 ms)` from vCPU 0 → 0 and ticks
//!   again; `VCPUOP_set_singleshot_timer(1)` and
//!   `VCPUOP_stop_singleshot_timer(1)` from vCPU 0 → `-EINVAL` (Xen: only
//!   for the calling vCPU).
//!
//! With `mode=parallel` (and 2 to 4 vCPUs: `rv.vcpus=4`), instead: every
//! vCPU is brought up and spins (no hypercall, no yield) counting, and
//! each checks that it saw every other vCPU's counter move between two
//! of its own loop turns less than 200 µs apart: no hypervisor time slice
//! (10 ms) fits in there, so the other vCPU ran at the same time, on
//! another CPU. Each also notes the APIC IDs it ran on (native `cpuid`
//! leaf 1: a PV guest's plain `cpuid` is the CPU's own), and vCPU 0 checks
//! the vCPUs together ran on as many CPUs as there are vCPUs.
//!
//! With `mode=staletlb` (2 vCPUs), a stale translation on another CPU:
//! vCPU 1 keeps writing a page of ours (so its CPU caches the writable
//! translation); vCPU 0 removes the mapping without asking for any flush
//! (`UVMF_NONE`: the guest's own business, as on Xen) and pins the frame
//! as an L1 table. Then vCPU 1 writes a PTE value there: the hypervisor
//! must have shot the stale translation down on vCPU 1's CPU when the
//! frame became a page table, so the write faults, and the table, read
//! back through a read-only mapping, holds no such entry.
//!
//! With `mode=dr7` (2 vCPUs): each CPU's DR7 is its own. vCPU 0 arms a
//! write breakpoint (one #DB); vCPU 1, on another CPU, sets its DR7 to 0;
//! vCPU 0 clears its own: writes to the watched word raise no #DB.
//!
//! With `mode=scale` (2 to 4 vCPUs), figures, not checks: the time of N
//! `xen_version` hypercalls on vCPU 0 alone and on every vCPU at once
//! (the ratio of the rates), and the round trip of an event between
//! vCPU 0 and vCPU 1 on two CPUs (send, upcall there, send back).
//! - `VCPUOP_down(1)` → 0: `is_up(1)` 0, runstate offline, the counter
//!   stops; an IPI sent meanwhile is not delivered; `VCPUOP_up(1)` → 0:
//!   vCPU 1 goes on where it was (the counter moves again) and gets that
//!   IPI.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pvguest::abi::{self, Pod, StartInfo};
use pvguest::cell::Stack;
use pvguest::events::{self as ev, count};
use pvguest::report::{self, check, check_eq, check_rc, fail, info, pass, Rc};
use pvguest::smp::{self, vcpu_op0};
use pvguest::time::{self, now_ns, MS};
use pvguest::traps;

pvguest::guest_main!("smp", run);

const EINVAL: i64 = abi::neg(abi::EINVAL);
const EEXIST: i64 = abi::neg(abi::EEXIST);
const ENOENT: i64 = abi::neg(abi::ENOENT);

/// How long vCPU 0 waits for anything vCPU 1 does.
const WAIT: u64 = 5000 * MS;

static STACK1: Stack<{ 16 * 4096 }> = Stack::new();

/// vCPU 1: 1 once it runs.
static FLAG: AtomicU32 = AtomicU32::new(0);
/// vCPU 1: its loop count.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// vCPU 1: its system time, each time round.
static V1_NOW: AtomicU64 = AtomicU64::new(0);

/// What vCPU 1 runs.
extern "C" fn secondary(vcpu: u32, _arg: u64) {
    ev::unmask_events();
    FLAG.store(vcpu, Ordering::SeqCst);
    loop {
        V1_NOW.store(now_ns(), Ordering::SeqCst);
        COUNTER.fetch_add(1, Ordering::SeqCst);
        ev::yield_now();
    }
}

fn runstate(vcpu: u32) -> Result<abi::VcpuRunstateInfo, i64> {
    let mut r = abi::VcpuRunstateInfo::zeroed();
    r.state = -1;
    // SAFETY: the hypervisor writes one vcpu_runstate_info into `r`.
    let rc = unsafe {
        pvguest::hypercall::vcpu_op(abi::VCPUOP_GET_RUNSTATE_INFO, vcpu, &mut r as *mut _ as u64)
    };
    if rc == 0 {
        Ok(r)
    } else {
        Err(rc)
    }
}

fn check_runstate(case: &str, vcpu: u32, ok: impl Fn(i32) -> bool) {
    match runstate(vcpu) {
        Ok(r) => {
            check(case, ok(r.state), format_args!("state {}", r.state));
        }
        Err(rc) => {
            check_rc(case, rc, 0);
        }
    }
}

fn run(_si: &StartInfo) {
    traps::install_default_trap_table();
    pass("set_trap_table");
    check_rc("callback_op register event", ev::init(), 0);
    ev::unmask_events();

    match pvguest::start_info::arg("mode") {
        Some("parallel") => return parallel(),
        Some("staletlb") => return stale_tlb(),
        Some("dr7") => return dr7_mode(),
        Some("scale") => return scale(),
        _ => {}
    }
    let up1 = vcpu_op0(abi::VCPUOP_IS_UP, 1);
    if up1 == ENOENT {
        report::skip(format_args!(
            "one vCPU only: run with 2 (rv.vcpus=2, dom0_max_vcpus=2)"
        ));
    }
    check_eq("is_up(0)", vcpu_op0(abi::VCPUOP_IS_UP, 0), 1);
    check_eq("is_up(1) before up", up1, 0);
    check_rc("is_up(2)", vcpu_op0(abi::VCPUOP_IS_UP, 2), ENOENT);
    check_runstate("runstate(1) offline before up", 1, |s| {
        s == abi::RUNSTATE_OFFLINE
    });
    check_rc(
        "up(1) before initialise",
        vcpu_op0(abi::VCPUOP_UP, 1),
        EINVAL,
    );

    let Some(ctx) = smp::context(1, STACK1.bottom(), STACK1.top(), secondary, 0) else {
        report::error(format_args!("no MFN for pt_base"));
    };
    let mut bad = ctx;
    bad.user_regs.rip = 0x8000_0000_0000_0000;
    // SAFETY: refused (non-canonical rip); nothing runs.
    check_rc(
        "initialise(1) with a non-canonical rip",
        unsafe { smp::initialise(1, &bad) },
        EINVAL,
    );
    check_rc(
        "up(1) after a refused initialise",
        vcpu_op0(abi::VCPUOP_UP, 1),
        EINVAL,
    );
    // SAFETY: vCPU 1 gets its own stack and runs `secondary`, which only
    // touches atomics and makes hypercalls.
    check_rc("initialise(1)", unsafe { smp::initialise(1, &ctx) }, 0);
    check_eq(
        "is_up(1) after initialise, before up",
        vcpu_op0(abi::VCPUOP_IS_UP, 1),
        0,
    );
    // SAFETY: refused: vCPU 1 already has a context.
    check_rc(
        "initialise(1) again",
        unsafe { smp::initialise(1, &ctx) },
        EEXIST,
    );
    check_rc("up(1)", vcpu_op0(abi::VCPUOP_UP, 1), 0);
    check_eq("is_up(1) after up", vcpu_op0(abi::VCPUOP_IS_UP, 1), 1);

    if !ev::spin_until(|| FLAG.load(Ordering::SeqCst) == 1, now_ns() + WAIT) {
        fail(
            "vCPU 1 runs and sets its flag",
            format_args!("no flag after 5 s"),
        );
        return;
    }
    pass("vCPU 1 runs and sets its flag");
    counter_moves("vCPU 1 counts");
    let (v1, v0) = (V1_NOW.load(Ordering::SeqCst), now_ns());
    check(
        "vCPU 1's clock agrees with vCPU 0's",
        v1 > 0 && v1 <= v0 + MS && v0 - v1.min(v0) < 100 * MS,
        format_args!("vCPU 1 {v1}, vCPU 0 {v0}"),
    );
    check_runstate("runstate(1) running or runnable", 1, |s| {
        s == abi::RUNSTATE_RUNNING || s == abi::RUNSTATE_RUNNABLE
    });

    let Some(ipi) = ipi_to_vcpu1() else { return };
    interdomain_moves();
    timers_of_vcpu1();
    down_and_up(ipi);
}

/// `case`: vCPU 1's counter moves within [`WAIT`].
fn counter_moves(case: &str) -> bool {
    let c = COUNTER.load(Ordering::SeqCst);
    let moved = ev::spin_until(|| COUNTER.load(Ordering::SeqCst) > c + 10, now_ns() + WAIT);
    check(
        case,
        moved,
        format_args!("counter stuck at {}", COUNTER.load(Ordering::SeqCst)),
    )
}

fn ipi_to_vcpu1() -> Option<u32> {
    let p = match ev::bind_ipi(1) {
        Ok(p) => p,
        Err(rc) => {
            fail("bind_ipi(vcpu 1)", format_args!("returned {}", Rc(rc)));
            return None;
        }
    };
    pass("bind_ipi(vcpu 1)");
    match ev::status(abi::DOMID_SELF, p) {
        Ok(s) => check(
            "status of the IPI port: vCPU 1",
            s.status == abi::EVTCHNSTAT_IPI && s.vcpu == 1,
            format_args!("status {} vcpu {}", s.status, s.vcpu),
        ),
        Err(rc) => check_rc("status of the IPI port: vCPU 1", rc, 0),
    };
    let (c, up0, up1) = (count(p), ev::upcalls(0), ev::upcalls(1));
    check_rc("send the IPI from vCPU 0", ev::send(p), 0);
    let got = ev::spin_until(|| count(p) > c, now_ns() + WAIT);
    check(
        "the IPI's upcall runs on vCPU 1",
        got && ev::last_vcpu(p) == 1 && ev::upcalls(1) > up1,
        format_args!(
            "delivered {got}, on vCPU {}, vCPU 1 upcalls {} -> {}",
            ev::last_vcpu(p),
            up1,
            ev::upcalls(1)
        ),
    );
    check_eq("no upcall on vCPU 0 for it", ev::upcalls(0), up0);
    // On a port of its own, so that a hypervisor that moves it spoils
    // nothing else.
    match ev::bind_ipi(0) {
        Ok(q) => {
            check_rc("bind_vcpu of an IPI port", ev::bind_vcpu(q, 1), EINVAL);
            ev::close(q);
        }
        Err(rc) => fail(
            "bind_vcpu of an IPI port",
            format_args!("bind_ipi(0) returned {}", Rc(rc)),
        ),
    }
    Some(p)
}

fn interdomain_moves() {
    let Ok(a) = ev::alloc_unbound(abi::DOMID_SELF, abi::DOMID_SELF) else {
        fail(
            "alloc_unbound(DOMID_SELF, DOMID_SELF)",
            format_args!("failed"),
        );
        return;
    };
    let Ok(b) = ev::bind_interdomain(abi::DOMID_SELF, a) else {
        fail("bind_interdomain(DOMID_SELF, A)", format_args!("failed"));
        return;
    };
    // B's bind notification is delivered here, on vCPU 0.
    ev::force_callback();
    check_rc("bind_vcpu(A, 1)", ev::bind_vcpu(a, 1), 0);
    match ev::status(abi::DOMID_SELF, a) {
        Ok(s) => check_eq("status(A) says vCPU 1", s.vcpu, 1),
        Err(rc) => check_rc("status(A) says vCPU 1", rc, 0),
    };
    let deliver_on = |case: &str, vcpu: u32| {
        let c = count(a);
        ev::send(b);
        let got = ev::spin_until(|| count(a) > c, now_ns() + WAIT);
        check(
            case,
            got && ev::last_vcpu(a) == vcpu,
            format_args!("delivered {got}, on vCPU {}", ev::last_vcpu(a)),
        );
    };
    deliver_on("send(B) → A's upcall on vCPU 1", 1);
    check_rc("bind_vcpu(A, 0)", ev::bind_vcpu(a, 0), 0);
    deliver_on("send(B) → A's upcall on vCPU 0 again", 0);
    check_rc("bind_vcpu(A, 2)", ev::bind_vcpu(a, 2), ENOENT);
    ev::close(b);
    ev::close(a);
}

fn timer_op(cmd: u32, vcpu: u32, arg: u64) -> i64 {
    // SAFETY: the timer commands only read their argument.
    unsafe { pvguest::hypercall::vcpu_op(cmd, vcpu, arg) }
}

fn timers_of_vcpu1() {
    let t = match ev::bind_virq(abi::VIRQ_TIMER, 1) {
        Ok(t) => t,
        Err(rc) => {
            fail(
                "bind_virq(VIRQ_TIMER, vcpu 1)",
                format_args!("returned {}", Rc(rc)),
            );
            return;
        }
    };
    pass("bind_virq(VIRQ_TIMER, vcpu 1)");
    // The vCPUs may run on two CPUs of a loaded host (a CPU's thread may
    // be off for tens of milliseconds): wait for the ticks, with a bound.
    let c = count(t);
    let t0 = now_ns();
    ev::spin_until(|| count(t) >= c + 3, t0 + WAIT);
    check(
        "vCPU 1's periodic timer ticks, handled on vCPU 1",
        count(t) >= c + 3 && ev::last_vcpu(t) == 1,
        format_args!(
            "{} ticks in {} ms, last on vCPU {}",
            count(t) - c,
            (now_ns() - t0) / MS,
            ev::last_vcpu(t)
        ),
    );
    check_rc(
        "stop_periodic_timer(1) from vCPU 0",
        timer_op(abi::VCPUOP_STOP_PERIODIC_TIMER, 1, 0),
        0,
    );
    // A tick fired before the stop may still be on its way to vCPU 1's
    // CPU: it is delivered by the time vCPU 1 has been round its loop
    // (a yield, and the way back to it) twice more.
    let k = COUNTER.load(Ordering::SeqCst);
    ev::spin_until(|| COUNTER.load(Ordering::SeqCst) > k + 2, now_ns() + WAIT);
    time::spin_for(5 * MS);
    let c = count(t);
    time::spin_for(35 * MS);
    check_eq("vCPU 1's ticks stop", count(t), c);
    let p = abi::VcpuSetPeriodicTimer { period_ns: 5 * MS };
    check_rc(
        "set_periodic_timer(1, 5 ms) from vCPU 0",
        timer_op(abi::VCPUOP_SET_PERIODIC_TIMER, 1, &p as *const _ as u64),
        0,
    );
    let c = count(t);
    let t0 = now_ns();
    ev::spin_until(|| count(t) >= c + 4, t0 + WAIT);
    check(
        "vCPU 1 ticks again",
        count(t) >= c + 4 && ev::last_vcpu(t) == 1,
        format_args!("{} ticks in {} ms", count(t) - c, (now_ns() - t0) / MS),
    );
    timer_op(abi::VCPUOP_STOP_PERIODIC_TIMER, 1, 0);
    let s = abi::VcpuSetSingleshotTimer {
        timeout_abs_ns: now_ns() + 2 * MS,
        flags: 0,
        _pad0: 0,
    };
    check_rc(
        "set_singleshot_timer(1) from vCPU 0",
        timer_op(abi::VCPUOP_SET_SINGLESHOT_TIMER, 1, &s as *const _ as u64),
        EINVAL,
    );
    check_rc(
        "stop_singleshot_timer(1) from vCPU 0",
        timer_op(abi::VCPUOP_STOP_SINGLESHOT_TIMER, 1, 0),
        EINVAL,
    );
    time::spin_for(5 * MS);
    ev::close(t);
}

fn down_and_up(ipi: u32) {
    check_rc("down(1)", vcpu_op0(abi::VCPUOP_DOWN, 1), 0);
    check_eq("is_up(1) after down", vcpu_op0(abi::VCPUOP_IS_UP, 1), 0);
    check_runstate("runstate(1) offline after down", 1, |s| {
        s == abi::RUNSTATE_OFFLINE
    });
    time::spin_for(2 * MS);
    let c = COUNTER.load(Ordering::SeqCst);
    let n = count(ipi);
    check_rc("send the IPI to the down vCPU", ev::send(ipi), 0);
    time::spin_for(30 * MS);
    check_eq("vCPU 1's counter stops", COUNTER.load(Ordering::SeqCst), c);
    check_eq("no IPI upcall while vCPU 1 is down", count(ipi), n);
    info(format_args!("vCPU 1 counted to {c}"));

    check_rc("up(1) again", vcpu_op0(abi::VCPUOP_UP, 1), 0);
    counter_moves("vCPU 1 goes on after up");
    let got = ev::spin_until(|| count(ipi) > n, now_ns() + WAIT);
    check(
        "the IPI sent while down arrives on vCPU 1 after up",
        got && ev::last_vcpu(ipi) == 1,
        format_args!("delivered {got}, on vCPU {}", ev::last_vcpu(ipi)),
    );
}

/// `mode=parallel`: the vCPUs (at most this many) and their stacks.
const PAR_MAX: usize = 4;
static PAR_STACKS: [Stack<{ 8 * 4096 }>; PAR_MAX - 1] = [const { Stack::new() }; PAR_MAX - 1];
/// Each vCPU's loop count.
static PAR_COUNT: [AtomicU64; PAR_MAX] = [const { AtomicU64::new(0) }; PAR_MAX];
/// Each vCPU's "I saw vCPU w run beside me" bits.
static PAR_SEEN: [AtomicU32; PAR_MAX] = [const { AtomicU32::new(0) }; PAR_MAX];
/// Each vCPU's APIC IDs (bit n: APIC ID n, below 64).
static PAR_APICS: [AtomicU64; PAR_MAX] = [const { AtomicU64::new(0) }; PAR_MAX];
/// How many vCPUs take part; set to 0 to stop them.
static PAR_N: AtomicU32 = AtomicU32::new(0);
static PAR_STOP: AtomicU32 = AtomicU32::new(0);

/// The APIC ID of the CPU this runs on (`cpuid` leaf 1, EBX bits 24-31:
/// not the hypervisor's emulated CPUID, the instruction itself).
fn apic_id() -> u32 {
    let ebx: u32;
    // SAFETY: cpuid reads the CPU's identification; rbx (which LLVM
    // reserves) is saved and restored around it.
    unsafe {
        core::arch::asm!("push rbx", "cpuid", "mov {0:e}, ebx", "pop rbx",
            out(reg) ebx, inout("eax") 1u32 => _, out("ecx") _, out("edx") _);
    }
    ebx >> 24
}

/// One vCPU's part: count, watch the others, until `done`.
fn par_loop(v: usize, done: impl Fn() -> bool) {
    let n = PAR_N.load(Ordering::SeqCst) as usize;
    let mut last = [0u64; PAR_MAX];
    let mut t_last = now_ns();
    while !done() {
        PAR_COUNT[v].fetch_add(1, Ordering::SeqCst);
        let id = apic_id();
        if id < 64 {
            PAR_APICS[v].fetch_or(1 << id, Ordering::SeqCst);
        }
        let t = now_ns();
        let close = t - t_last < 200_000;
        for (w, l) in last.iter_mut().enumerate().take(n) {
            let c = PAR_COUNT[w].load(Ordering::SeqCst);
            if w != v && close && c != *l {
                PAR_SEEN[v].fetch_or(1 << w, Ordering::SeqCst);
            }
            *l = c;
        }
        t_last = t;
    }
}

extern "C" fn par_secondary(vcpu: u32, _arg: u64) {
    par_loop(vcpu as usize, || PAR_STOP.load(Ordering::SeqCst) != 0);
    // Told to stop: sleep for good (vCPU 0 ends the domain).
    loop {
        ev::block();
    }
}

fn parallel() {
    let n = (1..PAR_MAX as u32)
        .take_while(|&k| vcpu_op0(abi::VCPUOP_IS_UP, k) != ENOENT)
        .count()
        + 1;
    if n < 2 {
        report::skip(format_args!(
            "mode=parallel needs 2 to 4 vCPUs (rv.vcpus=4)"
        ));
    }
    PAR_N.store(n as u32, Ordering::SeqCst);
    for k in 1..n {
        let st = &PAR_STACKS[k - 1];
        let Some(ctx) = smp::context(k as u32, st.bottom(), st.top(), par_secondary, 0) else {
            report::error(format_args!("no MFN for pt_base"));
        };
        // SAFETY: vCPU k gets its own stack and runs `par_secondary`,
        // which touches only atomics and makes hypercalls.
        check_rc("initialise", unsafe { smp::initialise(k as u32, &ctx) }, 0);
        check_rc("up", vcpu_op0(abi::VCPUOP_UP, k as u32), 0);
    }
    let everyone = (1u32 << n) - 1;
    let all_seen = || (0..n).all(|v| PAR_SEEN[v].load(Ordering::SeqCst) | 1 << v == everyone);
    // vCPU 0 takes part too, in bursts, checking between them.
    let end = now_ns() + 4 * WAIT;
    while !all_seen() && now_ns() < end {
        let t = now_ns() + 20 * MS;
        par_loop(0, || now_ns() >= t);
    }
    PAR_STOP.store(1, Ordering::SeqCst);
    for v in 0..n {
        let seen = PAR_SEEN[v].load(Ordering::SeqCst) | 1 << v;
        check(
            "a vCPU saw every other one run beside it",
            seen == everyone,
            format_args!("vCPU {v} saw {seen:#x} of {everyone:#x}"),
        );
        info(format_args!(
            "vCPU {v}: APIC IDs {:#x}, {} turns",
            PAR_APICS[v].load(Ordering::SeqCst),
            PAR_COUNT[v].load(Ordering::SeqCst)
        ));
    }
    let apics = (0..n).fold(0u64, |m, v| m | PAR_APICS[v].load(Ordering::SeqCst));
    check(
        "the vCPUs ran on as many CPUs as there are vCPUs",
        apics.count_ones() as usize >= n,
        format_args!("APIC IDs {apics:#x} for {n} vCPUs"),
    );
}

/// `mode=staletlb`: the page vCPU 1 writes, and its phases: 1 write 0
/// (keep the translation warm), 2 write [`EVIL`] once, 3 stop.
static STALE_PAGE: pvguest::cell::Page = pvguest::cell::Page::new();
static STALE_PHASE: AtomicU32 = AtomicU32::new(0);
static STALE_WRITES: AtomicU64 = AtomicU64::new(0);
static STALE_FAULTED: AtomicU32 = AtomicU32::new(0);
static STALE_EVIL_DONE: AtomicU32 = AtomicU32::new(0);
static STALE_APIC: AtomicU32 = AtomicU32::new(u32::MAX);
/// A PTE that would map the start_info page writable, were it written
/// into a page table.
static EVIL: AtomicU64 = AtomicU64::new(0);

/// `mov [rdi], rsi`: 3 bytes, which the #PF handler skips.
fn stale_store(va: u64, val: u64) {
    // SAFETY: a store to our own page, or a #PF the handler steps over.
    unsafe {
        core::arch::asm!(".byte 0x48, 0x89, 0x37", in("rdi") va, in("rsi") val, options(nostack));
    }
}

fn stale_pf(frame: &mut traps::TrapFrame, t: &traps::Trap) -> traps::Action {
    // vCPU 1 stores only to the page (cr2 is vCPU 0's in this runtime).
    if smp::this_vcpu() == 1 && t.error_code & 2 != 0 {
        STALE_FAULTED.store(1, Ordering::SeqCst);
        frame.rip += 3;
        return traps::Action::Resume;
    }
    traps::default_action(frame, t)
}

extern "C" fn stale_secondary(_vcpu: u32, _arg: u64) {
    STALE_APIC.store(apic_id(), Ordering::SeqCst);
    let va = STALE_PAGE.addr();
    loop {
        match STALE_PHASE.load(Ordering::SeqCst) {
            1 => {
                stale_store(va, 0);
                STALE_WRITES.fetch_add(1, Ordering::SeqCst);
            }
            2 if STALE_EVIL_DONE.load(Ordering::SeqCst) == 0 => {
                stale_store(va, EVIL.load(Ordering::SeqCst));
                STALE_EVIL_DONE.store(1, Ordering::SeqCst);
            }
            3 => loop {
                ev::block();
            },
            _ => core::hint::spin_loop(),
        }
    }
}

fn stale_tlb() {
    if vcpu_op0(abi::VCPUOP_IS_UP, 1) == ENOENT {
        report::skip(format_args!("mode=staletlb needs 2 vCPUs (rv.vcpus=2)"));
    }
    let va = STALE_PAGE.addr();
    let (Some(mfn), Some(si_mfn)) = (
        pvguest::start_info::virt_to_mfn(va),
        pvguest::start_info::virt_to_mfn(pvguest::start_info::start_info() as *const _ as u64),
    ) else {
        report::error(format_args!("no MFN for the page"));
    };
    EVIL.store(si_mfn << 12 | 0x67, Ordering::SeqCst);
    traps::set_handler(14, Some(stale_pf));
    let Some(ctx) = smp::context(1, STACK1.bottom(), STACK1.top(), stale_secondary, 0) else {
        report::error(format_args!("no MFN for pt_base"));
    };
    // SAFETY: vCPU 1 gets its own stack and runs `stale_secondary`, which
    // writes only our page and atomics.
    check_rc("initialise(1)", unsafe { smp::initialise(1, &ctx) }, 0);
    check_rc("up(1)", vcpu_op0(abi::VCPUOP_UP, 1), 0);
    STALE_PHASE.store(1, Ordering::SeqCst);
    let warm = ev::spin_until(
        || STALE_WRITES.load(Ordering::SeqCst) > 10_000,
        now_ns() + WAIT,
    );
    check(
        "vCPU 1 writes the page from another CPU",
        warm && STALE_APIC.load(Ordering::SeqCst) != apic_id(),
        format_args!(
            "{} writes; APIC IDs {} and {}",
            STALE_WRITES.load(Ordering::SeqCst),
            STALE_APIC.load(Ordering::SeqCst),
            apic_id()
        ),
    );
    // SAFETY: our own page; vCPU 1's stores to it fault from now on (or
    // not, on its CPU: that is the point).
    check_rc(
        "unmap the page, flushing nothing",
        unsafe { pvguest::hypercall::update_va_mapping(va, 0, abi::UVMF_NONE) },
        0,
    );
    // SAFETY: an unmapped frame of ours becomes an L1 table.
    check_rc(
        "pin the frame as an L1 table",
        unsafe { pvguest::hypercall::mmuext1(abi::MMUEXT_PIN_L1_TABLE, mfn, 0) },
        0,
    );
    STALE_PHASE.store(2, Ordering::SeqCst);
    ev::spin_until(
        || STALE_EVIL_DONE.load(Ordering::SeqCst) == 1,
        now_ns() + WAIT,
    );
    check(
        "vCPU 1's write through its old translation faults",
        STALE_FAULTED.load(Ordering::SeqCst) == 1,
        format_args!(
            "no #PF (the write went through: {})",
            STALE_EVIL_DONE.load(Ordering::SeqCst)
        ),
    );
    // Read the table back through a read-only mapping (a table may be
    // mapped so).
    // SAFETY: our own page-table frame, mapped read-only at its old place.
    let ro = unsafe {
        pvguest::hypercall::update_va_mapping(va, mfn << 12 | 0x25 | 1 << 63, abi::UVMF_INVLPG)
    };
    check_rc("map the table read-only", ro, 0);
    if ro == 0 {
        // SAFETY: mapped just now, read-only.
        let first = unsafe { (va as *const u64).read_volatile() };
        check_eq("the table holds no entry vCPU 1 wrote", first, 0);
    }
    STALE_PHASE.store(3, Ordering::SeqCst);
    // SAFETY: back to an ordinary writable page of ours.
    unsafe {
        pvguest::hypercall::update_va_mapping(va, 0, abi::UVMF_INVLPG);
        pvguest::hypercall::mmuext1(abi::MMUEXT_UNPIN_TABLE, mfn, 0);
        check_rc(
            "map the page writable again",
            pvguest::hypercall::update_va_mapping(va, mfn << 12 | 0x67 | 1 << 63, abi::UVMF_INVLPG),
            0,
        );
    }
    traps::set_handler(14, None);
}

/// `mode=scale`: hypercalls per vCPU, the phase (1 go, 2 ping-pong, 3
/// stop), each vCPU's done flag, and the two ports of the ping-pong.
const SCALE_CALLS: u64 = 100_000;
static SCALE_GO: AtomicU32 = AtomicU32::new(0);
static SCALE_DONE: AtomicU32 = AtomicU32::new(0);
static SCALE_TO1: AtomicU32 = AtomicU32::new(0);
static SCALE_TO0: AtomicU32 = AtomicU32::new(0);

fn null_calls(n: u64) {
    for _ in 0..n {
        // SAFETY: XENVER_version writes nothing.
        unsafe { pvguest::hypercall::xen_version(abi::XENVER_VERSION, 0) };
    }
}

extern "C" fn scale_secondary(vcpu: u32, _arg: u64) {
    ev::unmask_events();
    let mut seen = 0;
    loop {
        match SCALE_GO.load(Ordering::SeqCst) {
            1 if SCALE_DONE.load(Ordering::SeqCst) & 1 << vcpu == 0 => {
                null_calls(SCALE_CALLS);
                SCALE_DONE.fetch_or(1 << vcpu, Ordering::SeqCst);
            }
            2 if vcpu == 1 => {
                // Answer every event from vCPU 0 with one back.
                let p = SCALE_TO1.load(Ordering::SeqCst);
                if count(p) != seen {
                    seen = count(p);
                    ev::send(SCALE_TO0.load(Ordering::SeqCst));
                }
            }
            // Not in the ping-pong, or done: sleep (a spinning vCPU
            // would take a host CPU from the two that time it).
            2 | 3 => loop {
                ev::block();
            },
            _ => core::hint::spin_loop(),
        }
    }
}

fn scale() {
    let n = (1..PAR_MAX as u32)
        .take_while(|&k| vcpu_op0(abi::VCPUOP_IS_UP, k) != ENOENT)
        .count()
        + 1;
    if n < 2 {
        report::skip(format_args!("mode=scale needs 2 to 4 vCPUs (rv.vcpus=4)"));
    }
    let t0 = now_ns();
    null_calls(SCALE_CALLS);
    let one = now_ns() - t0;
    for k in 1..n {
        let st = &PAR_STACKS[k - 1];
        let Some(ctx) = smp::context(k as u32, st.bottom(), st.top(), scale_secondary, 0) else {
            report::error(format_args!("no MFN for pt_base"));
        };
        // SAFETY: vCPU k gets its own stack and runs `scale_secondary`,
        // which touches only atomics and makes hypercalls.
        check_rc("initialise", unsafe { smp::initialise(k as u32, &ctx) }, 0);
        check_rc("up", vcpu_op0(abi::VCPUOP_UP, k as u32), 0);
    }
    time::spin_for(20 * MS);
    let all = (1u32 << n) - 1;
    let t0 = now_ns();
    SCALE_GO.store(1, Ordering::SeqCst);
    null_calls(SCALE_CALLS);
    SCALE_DONE.fetch_or(1, Ordering::SeqCst);
    let done = ev::spin_until(
        || SCALE_DONE.load(Ordering::SeqCst) == all,
        now_ns() + 4 * WAIT,
    );
    let many = now_ns() - t0;
    check(
        "every vCPU made its calls",
        done,
        format_args!("done {:#x}", SCALE_DONE.load(Ordering::SeqCst)),
    );
    let ratio_x100 = (n as u64 * SCALE_CALLS * 100 * one) / (SCALE_CALLS * many.max(1));
    info(format_args!(
        "SCALE: {SCALE_CALLS} xen_version calls: 1 vCPU {} ns each; {n} vCPUs at once {} ns for all ({}.{:02}x the 1-vCPU rate)",
        one / SCALE_CALLS,
        many,
        ratio_x100 / 100,
        ratio_x100 % 100
    ));
    // The ping-pong: vCPU 0 sends on TO1 (bound to vCPU 1), vCPU 1
    // answers on TO0 (bound to vCPU 0).
    let (Ok(to1), Ok(to0)) = (ev::bind_ipi(1), ev::bind_ipi(0)) else {
        report::error(format_args!("bind_ipi failed"));
    };
    SCALE_TO1.store(to1, Ordering::SeqCst);
    SCALE_TO0.store(to0, Ordering::SeqCst);
    SCALE_GO.store(2, Ordering::SeqCst);
    time::spin_for(5 * MS);
    const ROUNDS: u32 = 2000;
    let t0 = now_ns();
    let mut ok = 0;
    for _ in 0..ROUNDS {
        let c = count(to0);
        ev::send(to1);
        if ev::spin_until(|| count(to0) != c, now_ns() + WAIT) {
            ok += 1;
        }
    }
    let rt = now_ns() - t0;
    check_eq("every round came back", ok, ROUNDS);
    info(format_args!(
        "SCALE: event round trip vCPU 0 -> vCPU 1 -> vCPU 0 on two CPUs: {} ns ({ROUNDS} rounds)",
        rt / ROUNDS as u64
    ));
    SCALE_GO.store(3, Ordering::SeqCst);
}

static DBW: AtomicU64 = AtomicU64::new(0);
static DB_HITS: AtomicU64 = AtomicU64::new(0);
static DR_PHASE: AtomicU64 = AtomicU64::new(0);
static DR_APIC: AtomicU32 = AtomicU32::new(0);

fn setdr(reg: u64, value: u64) -> i64 {
    // SAFETY: our own debug registers, on our own addresses.
    unsafe { pvguest::hypercall::hypercall5(abi::HYPERVISOR_SET_DEBUGREG, reg, value, 0, 0, 0) }
}

fn db_handler(_frame: &mut traps::TrapFrame, _t: &traps::Trap) -> traps::Action {
    DB_HITS.fetch_add(1, Ordering::SeqCst);
    traps::Action::Resume
}

extern "C" fn dr7_secondary(_vcpu: u32, _arg: u64) {
    DR_APIC.store(apic_id(), Ordering::SeqCst);
    // No breakpoints of its own: DR7 = 0 on this CPU.
    let rc = setdr(7, 0);
    DR_PHASE.store(if rc == 0 { 1 } else { 99 }, Ordering::SeqCst);
    loop {
        ev::block();
    }
}

/// `mode=dr7`: each CPU's DR7 is its own. vCPU 0 arms a write
/// breakpoint (one #DB), vCPU 1, on another CPU, sets its DR7 to 0, then
/// vCPU 0 sets its own to 0: writes to the watched word must raise no
/// #DB. (The hypervisor once kept one "DR7 armed" word for all CPUs:
/// vCPU 1's clearing made it skip vCPU 0's, and its breakpoints stayed
/// armed on that CPU for whatever ran there next.)
fn dr7_mode() {
    traps::set_handler(1, Some(db_handler));
    let a = DBW.as_ptr() as u64;
    check_rc("DR0 = &DBW", setdr(0, a), 0);
    check_rc("DR7 = L0 write 8", setdr(7, 1 | 1 << 16 | 2 << 18), 0);
    DBW.store(1, Ordering::SeqCst);
    check_eq("armed: a #DB", DB_HITS.load(Ordering::SeqCst), 1);
    let Some(ctx) = smp::context(1, STACK1.bottom(), STACK1.top(), dr7_secondary, 0) else {
        report::error(format_args!("no ctx"));
    };
    // SAFETY: vCPU 1 runs dr7_secondary on its own stack.
    check_rc("initialise(1)", unsafe { smp::initialise(1, &ctx) }, 0);
    check_rc("up(1)", vcpu_op0(abi::VCPUOP_UP, 1), 0);
    ev::spin_until(|| DR_PHASE.load(Ordering::SeqCst) != 0, now_ns() + WAIT);
    info(format_args!(
        "vcpu1 phase {} apic {} vs {}",
        DR_PHASE.load(Ordering::SeqCst),
        DR_APIC.load(Ordering::SeqCst),
        apic_id()
    ));
    check_rc("DR7 = 0 on vCPU 0", setdr(7, 0), 0);
    let before = DB_HITS.load(Ordering::SeqCst);
    DBW.store(2, Ordering::SeqCst);
    DBW.store(3, Ordering::SeqCst);
    check_eq(
        "disarmed: no #DB",
        DB_HITS.load(Ordering::SeqCst) - before,
        0,
    );
}
