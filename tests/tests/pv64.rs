//! 64-bit PV guests on ringvisor: each test guest (guests/*) boots as a
//! domain and judges itself, XTF style; the harness reads its verdict.
//!
//! A guest prints `TEST: name`, `PASS:`/`FAIL:` per case and one final
//! `RESULT: SUCCESS | FAILURE | SKIP | ERROR` line, then shuts down
//! (poweroff on success, crash otherwise). No RESULT line is a CRASH. The
//! hypervisor's own verdict (exit status) must agree, and no guest may ever
//! make the hypervisor print a fault dump or panic.
//!
//! Cases:
//! - each guest alone as d0: `RESULT: SUCCESS`, exit success;
//! - several guests at once (time-sliced): each domain succeeds;
//! - (every run is a 4-CPU machine) a two-vCPU domain and two pinging
//!   domains succeed with `cpus=1` and with all four CPUs started;
//! - a broken kernel stack goes to the failsafe callback (guest-failsafe);
//! - a guest that crashes on purpose (no failsafe) is killed with a message
//!   naming the domain, and a second domain still runs to success;
//! - an image that is not a guest is refused by name, and the other
//!   domains still boot;
//! - the trace (`trace=bounce,hypercall`) shows hypercalls and bounces.
//! - a domU writes its console through its console ring (guest-console as
//!   d1): the lines come out whole and in order.

use ringvisor_tests::build;
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Accel, Qemu, RunOutput, Verdict};
use std::path::PathBuf;
use std::time::Duration;

/// Every run is a 4-CPU machine: the application processors start and
/// idle while the guests run on the boot CPU (they must not notice).
const SMP: u32 = 4;

fn elf() -> PathBuf {
    build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"))
}

fn guest(name: &str) -> GuestSpec {
    GuestSpec::new(build::test_guest(name).unwrap_or_else(|e| panic!("no guest {name}: {e}")))
}

fn timeout() -> Duration {
    let s = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    Duration::from_secs_f64(s)
}

fn boot(what: &str, cmdline: &str, guests: Vec<GuestSpec>) -> RunOutput {
    boot_on(Accel::Tcg, what, cmdline, guests)
}

/// [`boot`] under multi-threaded TCG: the CPUs really run at once (one
/// host thread each), for guests whose vCPUs run side by side and time
/// each other (single-threaded TCG runs one CPU for up to 100 ms while
/// the others wait).
fn boot_multi(what: &str, cmdline: &str, guests: Vec<GuestSpec>) -> RunOutput {
    boot_on(Accel::TcgMulti, what, cmdline, guests)
}

fn boot_on(accel: Accel, what: &str, cmdline: &str, guests: Vec<GuestSpec>) -> RunOutput {
    let mut q = Qemu::kernel(elf()).accel(accel).smp(SMP).cmdline(cmdline);
    for (i, g) in guests.into_iter().enumerate() {
        // The initial domain's memory as these tests were written for (see
        // GuestSpec::default_opt).
        q = q.guest(if i == 0 {
            g.default_opt("mem", "32M")
        } else {
            g
        });
    }
    let out = q
        .timeout(Some(timeout()))
        .run()
        .unwrap_or_else(|e| panic!("{what}: QEMU did not run: {e}"));
    eprintln!("{what}: {}", out.summary());
    // Whatever a guest does, the hypervisor itself never faults.
    assert!(
        !out.contains("(RV) FATAL") && out.verdict != Verdict::Panic,
        "{what}: the hypervisor faulted or panicked\n{}",
        out.transcript()
    );
    out
}

/// The RESULT line domain `dom` printed.
fn result_of(out: &RunOutput, dom: u32) -> Option<String> {
    let prefix = format!("(d{dom}) RESULT: ");
    out.lines
        .iter()
        .find_map(|l| l.text.strip_prefix(&prefix).map(str::to_string))
}

fn expect_success(what: &str, out: &RunOutput, doms: u32) {
    for d in 0..doms {
        match result_of(out, d) {
            Some(r) if r == "SUCCESS" => {}
            Some(r) => panic!("{what}: d{d} says RESULT: {r}\n{}", out.transcript()),
            None => panic!(
                "{what}: d{d} printed no RESULT line (CRASH)\n{}",
                out.transcript()
            ),
        }
    }
    assert_eq!(
        out.verdict,
        Verdict::Success,
        "{what}: {}\n{}",
        out.summary(),
        out.transcript()
    );
}

fn run_alone(name: &str) {
    let out = boot(name, "", vec![guest(name)]);
    expect_success(name, &out, 1);
}

#[test]
fn hello() {
    let out = boot("guest-hello", "", vec![guest("guest-hello")]);
    expect_success("guest-hello", &out, 1);
    // Every hypercall answered as docs/abi.md's 64-bit column says.
    assert!(
        out.contains(
            "(d0) PASS: hypercalls 0-63 answer -ENOSYS as docs/abi.md's 64-bit column says"
        ),
        "{}",
        out.transcript()
    );
}

#[test]
fn traps() {
    run_alone("guest-traps");
}

#[test]
fn hypercalls() {
    let name = "guest-hypercalls";
    let out = boot(name, "", vec![guest(name)]);
    expect_success(name, &out, 1);
    // Its 430-byte console_io line: kept in pieces of 200 bytes, the
    // control byte (at 300) shown as `?`, the newline ending the last.
    let mut line: Vec<u8> = (0..429).map(|i| b'a' + (i % 26) as u8).collect();
    line[..14].copy_from_slice(b"CONSOLE-SPLIT:");
    line[300] = b'?';
    let line = String::from_utf8(line).unwrap();
    let want = [&line[..200], &line[200..400], &line[400..]];
    let at = out
        .lines
        .iter()
        .position(|l| l.text.starts_with("(d0) CONSOLE-SPLIT:"))
        .unwrap_or_else(|| panic!("{name}: no CONSOLE-SPLIT line\n{}", out.transcript()));
    let got: Vec<&str> = out.lines[at..]
        .iter()
        .filter_map(|l| l.text.strip_prefix("(d0) "))
        .take(3)
        .collect();
    assert_eq!(
        got,
        want,
        "{name}: the long console line\n{}",
        out.transcript()
    );
}

#[test]
fn events() {
    run_alone("guest-events");
}

#[test]
fn pingpong_two_domains() {
    let what = "guest-pingpong server d0, client d1";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-pingpong").args("role=server peer=1"),
            guest("guest-pingpong").args("role=client peer=0"),
        ],
    );
    expect_success(what, &out, 2);
}

/// The count in the hypervisor's "sched: N wake IPIs sent" line.
fn remote_wakes(out: &RunOutput) -> u64 {
    out.rv_lines()
        .find_map(|l| l.split("sched: ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn pingpong_two_domains_across_cpus() {
    // The two domains take turns on the CPUs: each event wakes the other
    // domain's vCPU on another CPU by IPI (its CPU, or an idle one).
    let what = "guest-pingpong server d0, client d1, -smp 4 multi-threaded";
    let out = boot_multi(
        what,
        "",
        vec![
            guest("guest-pingpong").args("role=server peer=1 rounds=50"),
            guest("guest-pingpong").args("role=client peer=0 rounds=50"),
        ],
    );
    expect_success(what, &out, 2);
    assert!(
        remote_wakes(&out) >= 50,
        "{what}: fewer than 50 wake IPIs for 50 rounds\n{}",
        out.transcript()
    );
}

#[test]
fn smp_four_vcpus_run_at_once_on_four_cpus() {
    // guest-smp mode=parallel: each vCPU sees every other one run beside
    // it (counters moving within 200 µs of its own turns) and they ran on
    // 4 APIC IDs; the hypervisor says the same from its side.
    let what = "guest-smp rv.vcpus=4 mode=parallel";
    let out = boot_multi(
        what,
        "",
        vec![guest("guest-smp").opt("vcpus", "4").args("mode=parallel")],
    );
    expect_success(what, &out, 1);
    assert!(
        out.rv_lines()
            .any(|l| l.contains("its 4 vCPUs ran on CPUs 0,1,2,3, up to 4 at once")),
        "{what}: the hypervisor did not see 4 vCPUs on 4 CPUs at once\n{}",
        out.transcript()
    );
}

#[test]
fn smp_scale_figures() {
    // guest-smp mode=scale: N null hypercalls on one vCPU and on four at
    // once, and an event round trip between two vCPUs on two CPUs; the
    // checks are that every call and every round completes, the figures
    // are printed (host-bound: this machine's 2 cores are shared).
    let what = "guest-smp rv.vcpus=4 mode=scale";
    let out = boot_multi(
        what,
        "",
        vec![guest("guest-smp").opt("vcpus", "4").args("mode=scale")],
    );
    expect_success(what, &out, 1);
    for l in out.lines.iter().filter(|l| l.text.contains("SCALE:")) {
        eprintln!("{}", l.text);
    }
}

#[test]
fn smp_a_stale_translation_on_another_cpu_is_shot_down() {
    // guest-smp mode=staletlb: vCPU 1 keeps a writable translation of a
    // page on its CPU; vCPU 0 unmaps the page without a flush and pins it
    // as an L1 table. vCPU 1's next write must fault (the pin shot the
    // translation down on every CPU that ran the domain); without the
    // shootdown it writes a PTE into the validated table (checked: the
    // test fails with get_table's flush made local).
    let what = "guest-smp rv.vcpus=2 mode=staletlb";
    let out = boot_multi(
        what,
        "",
        vec![guest("guest-smp").opt("vcpus", "2").args("mode=staletlb")],
    );
    expect_success(what, &out, 1);
}

#[test]
fn smp_two_vcpus() {
    let out = boot_multi("guest-smp", "", vec![guest("guest-smp").opt("vcpus", "2")]);
    expect_success("guest-smp", &out, 1);
}

#[test]
fn smp_two_vcpus_with_cpus_1_and_all_cpus() {
    // The same two-vCPU guest beside a pair of pinging domains, on the
    // 4-CPU machine with one CPU started and with all four.
    for cmdline in ["cpus=1", "cpus=4"] {
        let what = format!("guest-smp and pingpong, {cmdline}");
        let out = boot_multi(
            &what,
            cmdline,
            vec![
                guest("guest-pingpong").args("role=server peer=1 rounds=10"),
                guest("guest-pingpong").args("role=client peer=0 rounds=10"),
                guest("guest-smp").opt("vcpus", "2"),
            ],
        );
        expect_success(&what, &out, 3);
        let n = &cmdline[5..];
        assert!(
            out.rv_lines()
                .any(|l| l.contains(&format!("smp: {n} CPU")) && l.contains(" up (of 4 listed")),
            "{what}: not {n} CPUs up\n{}",
            out.transcript()
        );
    }
}

#[test]
fn user_mode() {
    run_alone("guest-user");
}

/// The hypervisor's SMAP paths with SMAP on: the `stac`/`clac` around
/// every copy through a guest's own mappings (bounce and iret frames,
/// hypercall arguments, the failsafe frame and its refused copies) and
/// the entry asm's `clac`. QEMU's TCG CPU gets SMAP only here
/// (`Qemu::with_smap`): it reads the stack of a ring-3 far return or
/// `iretq` as a supervisor access, so only guests that do neither run
/// (hostile-descriptors' far returns fail under it).
#[test]
fn smap_on_bounces_copies_and_failsafe() {
    let what = "traps, user, failsafe, hypercalls, 32-bit traps and failsafe with SMAP on";
    let names = [
        "guest-traps",
        "guest-user",
        "guest-failsafe",
        "guest-hypercalls",
        "guest32-traps",
        "guest32-failsafe",
    ];
    let mut q = Qemu::kernel(elf()).with_smap().smp(SMP);
    for (i, n) in names.iter().enumerate() {
        q = q.guest(if i == 0 {
            guest(n).default_opt("mem", "32M")
        } else {
            guest(n)
        });
    }
    let out = q
        .timeout(Some(timeout()))
        .run()
        .unwrap_or_else(|e| panic!("{what}: QEMU did not run: {e}"));
    assert!(
        out.rv_lines()
            .any(|l| l.contains("cpu features:") && l.split_whitespace().any(|w| w == "smap")),
        "{what}: the hypervisor did not see SMAP\n{}",
        out.transcript()
    );
    expect_success(what, &out, names.len() as u32);
}

#[test]
fn failsafe() {
    let what = "guest-failsafe";
    let out = boot(what, "", vec![guest(what)]);
    expect_success(what, &out, 1);
    assert!(
        out.rv_lines().any(|l| l.contains("d0: cannot write the")
            && l.contains("delivering to the failsafe callback")),
        "{what}: no failsafe line from the hypervisor\n{}",
        out.transcript()
    );
}

/// d0 (a guest that ends in a crash the hypervisor must make) got to its
/// crash (`EXPECT-CRASH`), was crashed with a line naming d0 that
/// `names_why` accepts, went no further, and d1 beside it ran to success.
fn crashed_beside_another(what: &str, out: &RunOutput, names_why: impl Fn(&str) -> bool) {
    assert!(
        out.contains("(d0) EXPECT-CRASH"),
        "{what}: the guest did not get to its crash\n{}",
        out.transcript()
    );
    assert!(
        out.rv_lines()
            .any(|l| l.contains("d0: crashed:") && names_why(l)),
        "{what}: no crash message naming d0 and why\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(out, 0),
        None,
        "{what}: d0 went on after its crash\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(out, 1).as_deref(),
        Some("SUCCESS"),
        "{what}: d1 did not run to success\n{}",
        out.transcript()
    );
}

#[test]
fn crash_without_failsafe_kills_only_that_domain() {
    let what = "crash-nofailsafe beside hello";
    let out = boot(
        what,
        "",
        vec![guest("guest-crash-nofailsafe"), guest("guest-hello")],
    );
    crashed_beside_another(what, &out, |l| {
        l.contains("no failsafe callback") && l.contains("rip 0x")
    });
    assert_eq!(out.verdict, Verdict::Failure, "{}", out.transcript());
    assert!(out.contains("(RV) exit: failure"), "{}", out.transcript());
}

#[test]
fn a_user_syscall_whose_frame_cannot_be_written_kills_only_that_domain() {
    // The user `syscall` bounce (bounce.S's syscall_user_quick first: its
    // refused store resumes at its fixup, puts the user tables back and
    // declines; then the Rust way) to an unmapped stack_switch stack, no
    // failsafe callback: that domain is crashed, the other runs on.
    let what = "crash-nofailsafe case=user-syscall beside hello";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-crash-nofailsafe").args("case=user-syscall"),
            guest("guest-hello"),
        ],
    );
    crashed_beside_another(what, &out, |l| {
        l.contains("the syscall bounce frame at 0xdeadbfc8") && l.contains("no failsafe callback")
    });
}

#[test]
fn a_debug_trap_in_the_hypervisor_is_noted_and_boot_goes_on() {
    // selftest=dbtrap: a data breakpoint on a hypervisor static fires in
    // ring 0 (the path a guest's `mov ss` + `syscall` #DB takes on
    // hardware; QEMU's TCG delivers that one before the entry). The #DB
    // handler, on its IST stack, notes it and returns; the guest then runs.
    let what = "selftest=dbtrap";
    let out = boot(what, what, vec![guest("guest-hello")]);
    assert!(
        out.rv_lines().any(
            |l| l.contains("selftest: #DB in hypervisor context noted and ignored")
                && l.contains("dr6 bits 0x1")
        ),
        "{what}: no #DB noted\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, 0).as_deref(),
        Some("SUCCESS"),
        "{what}: the guest did not succeed\n{}",
        out.transcript()
    );
}

#[test]
fn a_fault_of_the_hypervisors_own_iretq_crashes_only_that_domain() {
    // selftest=iretfault gives the first return to a guest a null SS after
    // every software check: the CPU refuses it at the hypervisor's iretq,
    // and the exception fixup there must crash that domain (whichever
    // returned first) and let the other run to success.
    let what = "selftest=iretfault";
    let out = boot(what, what, vec![guest("guest-hello"), guest("guest-hello")]);
    let crashed: Vec<u32> = (0..2)
        .filter(|d| {
            out.rv_lines().any(|l| {
                l.contains(&format!("d{d}: crashed:"))
                    && l.contains("return frame refused by the CPU")
            })
        })
        .collect();
    assert_eq!(
        crashed.len(),
        1,
        "{what}: expected one domain crashed for its return\n{}",
        out.transcript()
    );
    let (bad, good) = (crashed[0], 1 - crashed[0]);
    assert!(
        out.rv_lines()
            .any(|l| l.contains(&format!("d{bad}v0: the return to")) && l.contains("faulted: #GP")),
        "{what}: no line saying d{bad}'s return faulted\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, bad),
        None,
        "{what}: d{bad} ran on\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, good).as_deref(),
        Some("SUCCESS"),
        "{what}: d{good} did not succeed\n{}",
        out.transcript()
    );
    assert_eq!(out.verdict, Verdict::Failure, "{}", out.transcript());
}

#[test]
fn sixty_four_domains_one_after_another_in_256_mib() {
    // 64 x 32 MiB does not fit at once: domains are built as earlier ones
    // end and give their memory back; at the end every frame is free.
    let what = "64 domains";
    let out = boot(what, "", (0..64).map(|_| guest("guest-hello")).collect());
    expect_success(what, &out, 64);
    let line = out
        .rv_lines()
        .find(|l| l.contains("frames free at the end"))
        .unwrap_or_else(|| panic!("{what}: no memory line\n{}", out.transcript()))
        .to_string();
    assert!(!line.contains("not given back"), "{what}: {line}");
}

#[test]
fn sixteen_domains_together() {
    // 16 x 12 MiB fit at once: all are built at boot and time-shared.
    let what = "16 domains";
    let out = boot(
        what,
        "",
        (0..16)
            .map(|_| guest("guest-hello").opt("mem", "12M"))
            .collect(),
    );
    expect_success(what, &out, 16);
    assert!(
        !out.lines
            .iter()
            .any(|l| l.text.contains("waiting for memory")),
        "{}",
        out.transcript()
    );
    let built = out
        .rv_lines()
        .filter(|l| l.contains(": built guest-hello"))
        .count();
    let first_result = out
        .lines
        .iter()
        .position(|l| l.text.contains("RESULT:"))
        .unwrap();
    let built_before = out.lines[..first_result]
        .iter()
        .filter(|l| l.text.contains(": built guest-hello"))
        .count();
    assert_eq!(
        (built, built_before),
        (16, 16),
        "all 16 built before any finished\n{}",
        out.transcript()
    );
}

#[test]
fn hello_gets_its_command_line_and_domain_flags() {
    let what = "hello as d0 and d1";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-hello").args("first guest"),
            guest("guest-hello").args("second"),
        ],
    );
    expect_success(what, &out, 2);
    assert!(
        out.contains("(d0) INFO: cmd_line = \"first guest\""),
        "{}",
        out.transcript()
    );
    assert!(
        out.contains("(d1) INFO: cmd_line = \"second\""),
        "{}",
        out.transcript()
    );
    // Only the first module is the initial, privileged domain.
    assert!(
        out.contains("(d0) INFO: flags = 0x3 PRIVILEGED INITDOMAIN"),
        "{}",
        out.transcript()
    );
    assert!(
        !out.contains("(d1) INFO: flags = 0x3"),
        "{}",
        out.transcript()
    );
}

#[test]
fn not_a_guest_is_refused_by_name_and_others_still_run() {
    let what = "bad image beside a good one";
    let dir = build::target_dir().join("pv64-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("not-a-guest.bin");
    std::fs::write(&bad, b"\x7fELF but not really").unwrap();
    let out = boot(what, "", vec![GuestSpec::new(&bad), guest("guest-hello")]);
    assert!(
        out.rv_lines()
            .any(|l| l.contains("d0 (not-a-guest.bin): cannot build:")),
        "{what}: no build error naming d0\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, 1).as_deref(),
        Some("SUCCESS"),
        "{}",
        out.transcript()
    );
    // One domain failed to build: the run as a whole is a failure.
    assert_eq!(out.verdict, Verdict::Failure, "{}", out.transcript());
}

#[test]
fn a_domain_ending_with_its_virtual_ts_set_leaves_the_next_one_running() {
    // CR0.TS of a vCPU that died is not switched out: the next vCPU's
    // fxrstor must not meet it (#NM in the hypervisor before the fix).
    // (guest-hypercalls is still running when d0 ends: it is switched in.)
    let what = "hostile-round2 only=ts-crash beside hypercalls";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-hostile-round2").args("only=ts-crash"),
            guest("guest-hypercalls"),
        ],
    );
    assert!(
        out.contains("(d0) EXPECT-CRASH"),
        "{what}: d0 did not get there\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, 1).as_deref(),
        Some("SUCCESS"),
        "{what}: d1 did not succeed\n{}",
        out.transcript()
    );
}

#[test]
fn a_domain_watchdog_ends_a_spinning_domain_and_its_memory_comes_back() {
    // SCHEDOP_watchdog: the guest checks the timers' answers, then spins
    // with one armed for 1 s; the hypervisor shuts it down (while the
    // other domain may be the one on the CPU) and every frame comes back.
    let what = "hostile-round2 only=watchdog beside hypercalls";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-hostile-round2").args("only=watchdog"),
            guest("guest-hypercalls"),
        ],
    );
    assert!(
        out.contains("(d0) EXPECT-WATCHDOG"),
        "{what}: d0 did not get there\n{}",
        out.transcript()
    );
    assert!(
        !out.contains("(d0) FAIL"),
        "{what}: a watchdog answer was wrong\n{}",
        out.transcript()
    );
    assert!(
        out.rv_lines()
            .any(|l| l.contains("d0: watchdog timer fired")),
        "{what}: no watchdog\n{}",
        out.transcript()
    );
    assert!(
        out.rv_lines().any(|l| l.contains("d0: shutdown: watchdog")),
        "{what}: not shut down\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, 1).as_deref(),
        Some("SUCCESS"),
        "{what}: d1 did not succeed\n{}",
        out.transcript()
    );
    let line = out
        .rv_lines()
        .find(|l| l.contains("frames free at the end"))
        .unwrap_or_default()
        .to_string();
    assert!(
        !line.is_empty() && !line.contains("not given back"),
        "{what}: {line}\n{}",
        out.transcript()
    );
}

#[test]
fn more_memory_than_the_machine_is_refused_by_name() {
    // rv.mem=8G on a 256 MiB machine: a build error naming the domain (was
    // a hypervisor panic on heap exhaustion); the other domain runs.
    let what = "rv.mem=8G beside hello";
    let out = boot(
        what,
        "",
        vec![guest("guest-hello").opt("mem", "8G"), guest("guest-hello")],
    );
    assert!(
        out.rv_lines().any(|l| l.contains("d0 (guest-hello): cannot build:") && l.contains("rv.mem=8192 MiB")),
        "{what}: no build error naming d0 and its rv.mem\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, 1).as_deref(),
        Some("SUCCESS"),
        "{}",
        out.transcript()
    );
    assert_eq!(out.verdict, Verdict::Failure, "{}", out.transcript());
}

#[test]
fn trace_shows_hypercalls() {
    let what = "trace=hypercall";
    let out = boot(what, "trace=hypercall", vec![guest("guest-hello")]);
    expect_success(what, &out, 1);
    assert!(
        out.rv_lines()
            .any(|l| l.contains("trace: d0v0 hypercall xen_version (17)")),
        "{what}: no xen_version trace line\n{}",
        out.transcript()
    );
    assert!(
        out.rv_lines()
            .any(|l| l.contains("hypercall sched_op (29)") || l.contains("d0: shutdown: poweroff")),
        "{}",
        out.transcript()
    );
}

/// guest-console as d1: its lines go through the console ring of
/// `start_info.console.domU` (not console_io) and come out whole, in
/// order, as `(d1) ` lines; the RESULT line too.
#[test]
fn console_ring_of_a_domu() {
    let what = "guest-console as d1 beside hello";
    let out = boot(what, "", vec![guest("guest-hello"), guest("guest-console")]);
    expect_success(what, &out, 2);
    let got: Vec<&str> = out
        .lines
        .iter()
        .filter_map(|l| l.text.strip_prefix("(d1) console line "))
        .collect();
    let want: Vec<String> = (1..=40)
        .map(|i| format!("{i:02} of 40: {}", ".".repeat(48)))
        .collect();
    assert_eq!(
        got,
        want,
        "{what}: the ring's lines, in order\n{}",
        out.transcript()
    );
    assert!(
        out.contains("(d1) split line"),
        "{what}: a line written in two pieces\n{}",
        out.transcript()
    );
    assert!(
        out.contains("(d1) PASS: the reader consumed the ring"),
        "{}",
        out.transcript()
    );
}

/// The hostile guests (guests/hostile-*) against a victim: d0 is
/// guest-victim (its memory filled with a pattern, its page tables
/// recorded), d1-d5 attack it, the hypervisor and their own page tables
/// (foreign frames, hypervisor frames and slots, page tables, descriptors,
/// hypercall pointers). Every attack is refused (each attacker says
/// SUCCESS), the victim's memory and tables are intact at the end (it
/// says SUCCESS), the hypervisor never faults, and every frame is back in
/// the pool when all have ended.
#[test]
fn hostile_guests_against_a_victim() {
    hostile_against_victim("victim d0 and five hostile guests", None);
}

/// The same with every domain given 4 vCPUs (vCPU 0 runs, the others
/// stay down) on 4 CPUs under multi-threaded TCG: the attacks run beside
/// the victim and each other, on different CPUs at once.
#[test]
fn hostile_guests_against_a_victim_on_four_cpus() {
    hostile_against_victim(
        "victim d0 and five hostile guests, 4 vCPUs each, -smp 4 multi-threaded",
        Some("4"),
    );
}

fn hostile_against_victim(what: &str, vcpus: Option<&str>) {
    let attackers = [
        "guest-hostile-foreign",
        "guest-hostile-hypervisor",
        "guest-hostile-pagetables",
        "guest-hostile-descriptors",
        "guest-hostile-pointers",
    ];
    let with_vcpus = |g: GuestSpec| match vcpus {
        Some(n) => g.opt("vcpus", n),
        None => g,
    };
    let mut guests = vec![with_vcpus(
        guest("guest-victim")
            .opt("mem", "16M")
            .args(&format!("attackers={}", attackers.len())),
    )];
    for (i, a) in attackers.iter().enumerate() {
        guests.push(with_vcpus(
            guest(a)
                .opt("mem", "8M")
                .args(&format!("victim=0 port={}", i + 1)),
        ));
    }
    let out = if vcpus.is_some() {
        boot_multi(what, "", guests)
    } else {
        boot(what, "", guests)
    };
    expect_success(what, &out, 1 + attackers.len() as u32);
    for (i, a) in attackers.iter().enumerate() {
        let d = i + 1;
        assert!(
            out.contains(&format!("(d{d}) TEST: {}", a.trim_start_matches("guest-"))),
            "{what}: d{d} is not {a}\n{}",
            out.transcript()
        );
        assert!(
            out.contains(&format!("(d0) INFO: d{d} is done")),
            "{what}: the victim never heard d{d} finish\n{}",
            out.transcript()
        );
    }
    expect_every_frame_back(what, &out);
}

/// The hypervisor's end-of-run line says every frame a domain had is free
/// again: "N frames free at the end, N before the first domain".
fn expect_every_frame_back(what: &str, out: &RunOutput) {
    let line = out
        .rv_lines()
        .find(|l| l.contains("frames free at the end"))
        .unwrap_or_else(|| panic!("{what}: no memory line\n{}", out.transcript()))
        .to_string();
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        !line.contains("not given back") && numbers.len() >= 2 && numbers[0] == numbers[1],
        "{what}: not every frame is back: {line}"
    );
}

/// guest-hostile-hypervisor as the initial domain (d0) against a victim
/// d1 (`first=0`: d0 is its attacker). With I/O capabilities d0 maps I/O
/// memory as Xen's dom0 does (the first MiB, e820 regions that are not
/// RAM, holes; cache attributes flipped to uncached; the local APIC, MSI
/// and I/O APIC ranges refused; the HPET read-only), but still nothing of
/// the hypervisor's RAM and nothing of the victim's: the victim's memory
/// and tables are intact, and every frame is back at the end.
#[test]
fn hostile_hypervisor_as_d0_against_a_victim() {
    let what = "guest-hostile-hypervisor d0 and victim d1";
    let guests = vec![
        guest("guest-hostile-hypervisor")
            .opt("mem", "8M")
            .args("victim=1 port=2"),
        guest("guest-victim")
            .opt("mem", "16M")
            .args("attackers=1 first=0"),
    ];
    let out = boot(what, "", guests);
    expect_success(what, &out, 2);
    assert!(
        out.contains("(d0) PASS: d0 maps I/O frame 0xf0 writable"),
        "{what}: no I/O mapping checked\n{}",
        out.transcript()
    );
    assert!(
        out.contains("(d1) INFO: d0 is done"),
        "{what}: the victim never heard d0 finish\n{}",
        out.transcript()
    );
    expect_every_frame_back(what, &out);
}

/// guest-hostile-round2 (guests/hostile-round2) alone as d0: page-table
/// devalidation and reference counts, HYPERVISOR_iret frames the CPU
/// refuses, EFLAGS.AC, hypercall buffers and a bounce frame at the very
/// top of the address space. Every case passes and the hypervisor never
/// faults.
#[test]
fn hostile_round2_alone() {
    run_alone("guest-hostile-round2");
}

/// The same beside guest-victim (d0, one attacker): the victim's memory
/// and page tables are intact at the end.
#[test]
fn hostile_round2_beside_a_victim() {
    let what = "victim d0 and guest-hostile-round2 d1";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-victim").opt("mem", "16M").args("attackers=1"),
            guest("guest-hostile-round2")
                .opt("mem", "8M")
                .args("victim=0 port=1"),
        ],
    );
    expect_success(what, &out, 2);
    assert!(
        out.contains("(d0) INFO: d1 is done"),
        "{what}: the victim never heard d1 finish\n{}",
        out.transcript()
    );
}

/// guest-hostile-round2 `only=iret-nohandler` as d0 (HYPERVISOR_iret to a
/// frame the CPU refuses, no #GP handler, a failsafe callback) beside
/// guest-hello as d1: d0 either gets its failsafe callback (and says
/// SUCCESS) or is crashed with a message naming it; the hypervisor never
/// faults and d1 runs to success.
#[test]
fn hostile_round2_refused_iret_without_handler_only_that_domain() {
    let what = "hostile-round2 only=iret-nohandler beside hello";
    let out = boot(
        what,
        "",
        vec![
            guest("guest-hostile-round2").args("only=iret-nohandler"),
            guest("guest-hello"),
        ],
    );
    assert!(
        out.contains("(d0) EXPECT-CRASH-OR-FAILSAFE"),
        "{what}: d0 did not get to the iret\n{}",
        out.transcript()
    );
    assert_eq!(
        result_of(&out, 1).as_deref(),
        Some("SUCCESS"),
        "{what}: d1 did not run to success\n{}",
        out.transcript()
    );
    match result_of(&out, 0).as_deref() {
        Some("SUCCESS") => eprintln!("{what}: d0's failsafe callback ran"),
        Some(r) => panic!("{what}: d0 says RESULT: {r}\n{}", out.transcript()),
        None => {
            assert!(
                out.rv_lines().any(|l| l.contains("d0: crashed")),
                "{what}: d0 printed no RESULT and the hypervisor did not say it crashed it\n{}",
                out.transcript()
            );
            eprintln!("{what}: d0 was crashed");
        }
    }
}

/// Each CPU's DR7 is its own (guest-smp `mode=dr7`): a breakpoint vCPU 0
/// cleared does not stay armed because vCPU 1, on another CPU, cleared
/// its own first.
#[test]
fn smp_debug_registers_are_per_cpu() {
    let what = "guest-smp rv.vcpus=2 mode=dr7";
    let out = boot_multi(
        what,
        "",
        vec![guest("guest-smp").opt("vcpus", "2").args("mode=dr7")],
    );
    expect_success(what, &out, 1);
}
