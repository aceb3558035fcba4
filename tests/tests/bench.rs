//! Smoke test of `cargo xtask bench`: one short run in QEMU's icount mode
//! (a tick is one instruction, so the numbers are exact), read with the
//! same code xtask uses. No timing target is asserted here: only that
//! every line is there, positive, and that each PV path costs more than
//! the bare hardware round trip it is built on.
//!
//! Cases:
//! - the hypervisor prints every baseline (`syscall`, `int`, `ud`, `pf`)
//!   and the first-guest-instruction time; the guest prints every path and
//!   `RESULT: SUCCESS`; the run ends in SUCCESS; with guest-bench booted
//!   again as domain 1 (`role=echo peer=0`), the two-domain paths
//!   (`event-ping-pong`, `domain-switch`) have figures too and both
//!   domains power off;
//! - null hypercall > bare syscall; int3 bounce > bare int; #PF bounce >
//!   bare #PF; user syscall > bare syscall;
//! - the bare round trips are deterministic under icount (p10 == p90);
//! - guest32-bench in a boot of its own: every `32-*` path (null hypercall
//!   through `int $0x82`, int3 and #PF bounces from ring 1, set_trap_table
//!   of 32 entries) and `RESULT: SUCCESS`, each above its bare round trip;
//! - guest-bench `mode=smp` (4 vCPUs) on `-smp 4` multi-threaded TCG, a
//!   boot of its own as `cargo xtask bench` runs it: every `smp-*` row,
//!   `RESULT: SUCCESS` (the guest checks every remote event reached
//!   vCPU 1 and the 4 vCPUs ran on 4 CPUs), the shootdown to 3 CPUs
//!   dearer than the local flush, a scaling ratio there (TCG ticks: no
//!   figure is bounded, the host's 2 cores are shared).

use ringvisor_tests::bench::{Report, PATHS, PATHS32, PATHS_SMP};
use ringvisor_tests::build;
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Accel, Qemu, Verdict};
use std::time::Duration;

#[test]
fn bench_runs_and_reports_sane_numbers() {
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let guest = build::test_guest("guest-bench").unwrap_or_else(|e| panic!("no guest-bench: {e}"));
    let timeout = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    let mut q = Qemu::kernel(elf)
        .cmdline("bench")
        .guest(
            GuestSpec::new(&guest)
                .opt("mem", "32M")
                .args("n=300 rounds=3 console=6 peer=1"),
        )
        .guest(GuestSpec::new(&guest).args("role=echo peer=0"))
        .timeout(Some(Duration::from_secs_f64(timeout)));
    q.extra_args = vec!["-icount".into(), "shift=0,sleep=off".into()];
    let out = q.run().unwrap_or_else(|e| panic!("QEMU did not run: {e}"));
    eprintln!("bench (icount): {}", out.summary());
    let r = Report::from_run(&out);
    assert_eq!(
        out.verdict,
        Verdict::Success,
        "{}\n{}",
        out.summary(),
        out.transcript()
    );
    if let Err(e) = r.check() {
        panic!(
            "bench run incomplete:\n{e}\n--- console ---\n{}",
            out.transcript()
        );
    }
    let base = |n: &str| r.baseline(n).unwrap();
    let path = |n: &str| r.path(n).unwrap();
    for (p, b) in [
        ("null-hypercall", "syscall"),
        ("int3-bounce", "int"),
        ("pf-bounce", "pf"),
        ("user-syscall", "syscall"),
    ] {
        assert!(
            path(p).median > base(b).median,
            "{p} ({} instructions) should cost more than the bare {b} round trip ({})",
            path(p).median,
            base(b).median
        );
    }
    for b in ["syscall", "int", "ud", "pf"] {
        assert_eq!(
            base(b).p10,
            base(b).p90,
            "bare {b} under icount should not vary: {:?}",
            base(b)
        );
    }
    assert_eq!(
        r.guest.len(),
        PATHS.len() + 1,
        "every path and the loop: {:?}",
        r.guest
    );
    eprintln!("{}", ringvisor_tests::bench::table(None, Some(&r)));
}

/// The 32-bit bench guest (`guest32-bench`), alone in a boot of its own as
/// `cargo xtask bench` runs it: every `32-*` path with a positive figure,
/// `RESULT: SUCCESS`, each bounce dearer than its bare round trip.
#[test]
fn bench32_runs_and_reports_sane_numbers() {
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let guest =
        build::test_guest("guest32-bench").unwrap_or_else(|e| panic!("no guest32-bench: {e}"));
    let timeout = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    let mut q = Qemu::kernel(elf)
        .cmdline("bench")
        .guest(
            GuestSpec::new(&guest)
                .opt("mem", "32M")
                .args("n=300 rounds=3"),
        )
        .timeout(Some(Duration::from_secs_f64(timeout)));
    q.extra_args = vec!["-icount".into(), "shift=0,sleep=off".into()];
    let out = q.run().unwrap_or_else(|e| panic!("QEMU did not run: {e}"));
    eprintln!("bench32 (icount): {}", out.summary());
    let r = Report::from_run(&out);
    assert_eq!(
        out.verdict,
        Verdict::Success,
        "{}\n{}",
        out.summary(),
        out.transcript()
    );
    if let Err(e) = r.check32() {
        panic!(
            "32-bit bench run incomplete:\n{e}\n--- console ---\n{}",
            out.transcript()
        );
    }
    for (p, b) in PATHS32 {
        assert!(
            r.path(p).unwrap().median > r.baseline(b).unwrap().median,
            "{p} should cost more than the bare {b} round trip: {:?}",
            r.guest
        );
    }
    assert_eq!(
        r.guest.len(),
        PATHS32.len() + 1,
        "every 32-bit path and the loop: {:?}",
        r.guest
    );
}

/// guest-bench `mode=smp` with 4 vCPUs on `-smp 4` multi-threaded TCG,
/// as `cargo xtask bench` boots it after each TCG boot: every `smp-*` row
/// and `RESULT: SUCCESS`.
#[test]
fn bench_smp_runs_and_reports_every_row() {
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let guest = build::test_guest("guest-bench").unwrap_or_else(|e| panic!("no guest-bench: {e}"));
    let timeout = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    let run = || {
        let out = Qemu::kernel(&elf)
            .cmdline("bench")
            .smp(4)
            .accel(Accel::TcgMulti)
            .guest(
                GuestSpec::new(&guest)
                    .opt("mem", "32M")
                    .opt("vcpus", "4")
                    .args("n=200 rounds=4 calls=5000 mode=smp"),
            )
            .timeout(Some(Duration::from_secs_f64(timeout)))
            .run()
            .unwrap_or_else(|e| panic!("QEMU did not run: {e}"));
        eprintln!("bench smp: {}", out.summary());
        out
    };
    // The rows mean something only with the 4 vCPUs on 4 CPUs, which the
    // guest checks from the APIC IDs it sees. On a host with fewer cores
    // than QEMU threads (2 here, shared with the other tests), a starved
    // CPU thread may never be seen running one: that run alone, with no
    // other failure, is measured again once; a second such run fails.
    let only_placement = |out: &ringvisor_tests::qemu::RunOutput| {
        let fails: Vec<&str> = out
            .lines
            .iter()
            .map(|l| l.text.as_str())
            .filter(|t| t.contains("FAIL:"))
            .collect();
        fails.len() == 1 && fails[0].contains("FAIL: the 4 vCPUs ran on 4 CPUs")
    };
    let mut out = run();
    if out.verdict != Verdict::Success && only_placement(&out) {
        eprintln!("bench smp: the vCPUs were not seen on 4 CPUs (host starved a CPU thread?); measuring again");
        // What each CPU did (vCPU switches, wake IPIs taken), to tell a
        // starved CPU thread from a lost wake-up when this happens.
        for l in out.lines.iter().filter(|l| {
            l.text.contains("APIC IDs")
                || l.text.contains("(RV) sched:")
                || l.text.contains("ran on CPUs")
        }) {
            eprintln!("bench smp (first run): {}", l.text);
        }
        out = run();
    }
    let r = Report::from_run(&out);
    assert_eq!(
        out.verdict,
        Verdict::Success,
        "{}\n{}",
        out.summary(),
        out.transcript()
    );
    if let Err(e) = r.check_smp() {
        panic!(
            "smp bench run incomplete:\n{e}\n--- console ---\n{}",
            out.transcript()
        );
    }
    assert_eq!(
        r.guest.len(),
        PATHS_SMP.len(),
        "every smp row: {:?}",
        r.guest
    );
    let path = |p: &str| r.path(p).unwrap().median;
    for p in ["smp-uva-shootdown-3", "smp-uva-shootdown-1"] {
        assert!(
            path(p) > path("smp-uva-local"),
            "{p}: a flush on other CPUs should cost more than a local one: {:?}",
            r.guest
        );
    }
    assert!(r.scaling().is_some_and(|q| q > 0.0), "{:?}", r.guest);
    for l in out
        .lines
        .iter()
        .filter(|l| l.text.contains("BENCH: smp-") || l.text.contains("scaling"))
    {
        eprintln!("{}", l.text);
    }
}
