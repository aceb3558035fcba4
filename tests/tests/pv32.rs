//! 32-bit PAE PV guests in ring 1.
//!
//! `tests/asm/hello32.S` is assembled here with binutils (`as --32`,
//! `ld -m elf_i386`) and booted; its own checks are listed in the file.
//! Cases:
//! - it runs in ring 1, makes hypercalls with `int $0x82`, gets a #UD
//!   bounced with the 32-bit frame and returns with a plain `iret`:
//!   `RESULT: SUCCESS`, exit success;
//! - beside a 64-bit guest: both kinds of domain run, time-shared;
//! - the Rust 32-bit guests (guests32/): hello, traps (bounces from ring 1
//!   and ring 3), failsafe, and a crash without failsafe beside a 64-bit
//!   domain that goes on; segfail (a data selector that no longer loads on
//!   a context switch: the failsafe callback) beside a 64-bit domain;
//! - a domain that spins forever without a hypercall does not starve the
//!   others: they run to success while it spins (the run then ends at
//!   its timeout, the spinner still running).

use ringvisor_tests::build;
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Qemu, RunOutput, Verdict};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Every run is a 4-CPU machine: the application processors start and
/// idle while the guests run on the boot CPU (they must not notice).
const SMP: u32 = 4;

/// Assembled once per test process (the tests run in parallel).
fn hello32() -> PathBuf {
    static ELF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ELF.get_or_init(|| assemble("hello32")).clone()
}

fn spin32() -> PathBuf {
    static ELF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ELF.get_or_init(|| assemble("spin32")).clone()
}

/// `tests/asm/NAME.S` linked with hello32.ld.
fn assemble(name: &str) -> PathBuf {
    let src = build::workspace_root().join("tests/asm");
    let out = build::target_dir().join("pv32-tests");
    std::fs::create_dir_all(&out).unwrap();
    let obj = out.join(format!("{name}.o"));
    let elf = out.join(format!("{name}.elf"));
    let run = |c: &mut Command| {
        let st = c
            .status()
            .unwrap_or_else(|e| panic!("cannot run {c:?} (binutils installed?): {e}"));
        assert!(st.success(), "{c:?} failed: {st}");
    };
    run(Command::new("as")
        .arg("--32")
        .arg("-I")
        .arg(&src)
        .arg(src.join(format!("{name}.S")))
        .arg("-o")
        .arg(&obj));
    run(Command::new("ld")
        .args(["-m", "elf_i386", "--no-warn-rwx-segments", "-T"])
        .arg(src.join("hello32.ld"))
        .arg(&obj)
        .arg("-o")
        .arg(&elf));
    elf
}

fn boot(what: &str, guests: Vec<GuestSpec>) -> RunOutput {
    boot_for(what, guests, Duration::from_secs(60))
}

fn boot_for(what: &str, guests: Vec<GuestSpec>, timeout: Duration) -> RunOutput {
    boot_with(what, "", guests, timeout)
}

fn boot_with(what: &str, cmdline: &str, guests: Vec<GuestSpec>, timeout: Duration) -> RunOutput {
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let mut q = Qemu::kernel(elf).smp(SMP).cmdline(cmdline);
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
        .timeout(Some(timeout))
        .run()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: {}", out.summary());
    assert!(
        !out.contains("(RV) FATAL"),
        "{what}: hypervisor fault\n{}",
        out.transcript()
    );
    out
}

#[test]
fn hello32_runs_in_ring_1() {
    let what = "hello32";
    let out = boot(what, vec![GuestSpec::new(hello32())]);
    let t = out.transcript();
    assert!(out.contains("d0: built hello32.elf (32-bit"), "{t}");
    assert!(out.contains("(d0) hello from ring 1"), "{t}");
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn guest32_hello() {
    // The Rust 32-bit runtime's hello (guests32/hello): start_info,
    // selectors at CPL 1, the hypercall page's int $0x82 stubs, xen_version.
    let what = "guest32-hello";
    let g = build::test_guest("guest32-hello").unwrap_or_else(|e| panic!("{e}"));
    let out = boot(what, vec![GuestSpec::new(g).args("hello args")]);
    let t = out.transcript();
    assert!(out.contains("(d0) INFO: cmd_line = \"hello args\""), "{t}");
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    // Every hypercall answered as docs/abi.md's 32-bit column says.
    assert!(
        out.contains(
            "(d0) PASS: hypercalls 0-63 answer -ENOSYS as docs/abi.md's 32-bit column says"
        ),
        "{t}"
    );
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

/// `trace=hypercall` names a 32-bit guest's arguments as it passed them
/// (ebx, ecx, edx, esi, edi) on the lock-free path too (`pv::fast`, which
/// answers the unassigned numbers), with the "(32-bit)" tail the locked
/// path writes.
#[test]
fn guest32_trace_shows_its_own_arguments() {
    let what = "guest32-hello with trace=hypercall";
    let g = build::test_guest("guest32-hello").unwrap_or_else(|e| panic!("{e}"));
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let out = Qemu::kernel(elf)
        .smp(SMP)
        .cmdline("trace=hypercall")
        .guest(GuestSpec::new(g).default_opt("mem", "32M"))
        .timeout(Some(Duration::from_secs(60)))
        .run()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let t = out.transcript();
    assert_eq!(out.verdict, Verdict::Success, "{t}");
    // hypercall(60, [1, 2, 3, 4, 5]): unassigned, answered lock-free.
    assert!(
        out.rv_lines().any(|l| l.contains(
            "trace: d0v0 hypercall unknown (60) (0x1, 0x2, 0x3, 0x4, 0x5) = -38 (32-bit)"
        )),
        "{what}: no trace line with the guest's own arguments\n{t}"
    );
}

#[test]
fn hello32_beside_a_64_bit_guest() {
    let what = "hello32 + guest-hello";
    let hello64 = build::test_guest("guest-hello").unwrap_or_else(|e| panic!("{e}"));
    let out = boot(
        what,
        vec![GuestSpec::new(hello32()), GuestSpec::new(hello64)],
    );
    let t = out.transcript();
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert!(out.contains("(d1) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn a_spinning_domain_does_not_starve_the_others() {
    let what = "spin32 + guest-hello + hello32";
    let hello64 = build::test_guest("guest-hello").unwrap_or_else(|e| panic!("{e}"));
    let out = boot_for(
        what,
        vec![
            GuestSpec::new(spin32()),
            GuestSpec::new(hello64),
            GuestSpec::new(hello32()),
        ],
        Duration::from_secs(8),
    );
    let t = out.transcript();
    assert!(out.contains("(d0) SPINNING"), "{t}");
    assert!(out.contains("(d1) RESULT: SUCCESS"), "{t}");
    assert!(out.contains("(d2) RESULT: SUCCESS"), "{t}");
    assert_eq!(
        out.verdict,
        Verdict::Timeout,
        "the spinner should still be running\n{t}"
    );
}

fn guest32(name: &str) -> GuestSpec {
    GuestSpec::new(build::test_guest(name).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn guest32_traps() {
    // Bounces from ring 1 and ring 3 with the 32-bit frame (guests32/traps).
    let what = "guest32-traps";
    let out = boot(what, vec![guest32("guest32-traps")]);
    let t = out.transcript();
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn guest32_failsafe() {
    let what = "guest32-failsafe";
    let out = boot(what, vec![guest32("guest32-failsafe")]);
    let t = out.transcript();
    assert!(
        out.rv_lines()
            .any(|l| l.contains("delivering to the failsafe callback")),
        "{t}"
    );
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn guest32_crash_without_failsafe_beside_a_64_bit_domain() {
    let what = "guest32-crash-nofailsafe + guest-hello";
    let hello64 = build::test_guest("guest-hello").unwrap_or_else(|e| panic!("{e}"));
    let out = boot(
        what,
        vec![guest32("guest32-crash-nofailsafe"), GuestSpec::new(hello64)],
    );
    let t = out.transcript();
    assert!(out.contains("(d0) EXPECT-CRASH"), "{t}");
    assert!(
        out.rv_lines()
            .any(|l| l.contains("d0: crashed:") && l.contains("no failsafe callback")),
        "{t}"
    );
    assert!(out.contains("(d1) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Failure, "{t}");
}

#[test]
fn guest32_segfail_beside_a_64_bit_domain() {
    // A data selector the 32-bit guest has loaded (%fs) is made not present
    // with update_descriptor; it yields to the 64-bit domain, and on the way
    // back the hypervisor cannot reload %fs: the failsafe callback with
    // Xen's 32-bit frame (load_segments), %fs null afterwards
    // (guests32/segfail). The other domain is not disturbed. guest-events
    // stays alive long enough for the yield to switch to it (guest-hello
    // can be done within one time slice, before the 32-bit guest yields).
    // On one CPU (`cpus=1`): with more, the other domain runs on a CPU of
    // its own and the yield comes straight back, with no reload.
    let what = "guest32-segfail + guest-events, cpus=1";
    let events64 = build::test_guest("guest-events").unwrap_or_else(|e| panic!("{e}"));
    let out = boot_with(
        what,
        "cpus=1",
        vec![guest32("guest32-segfail"), GuestSpec::new(events64)],
        Duration::from_secs(60),
    );
    let t = out.transcript();
    assert!(out.contains("(d0) EXPECT-FAILSAFE"), "{t}");
    assert!(
        out.rv_lines()
            .any(|l| l.contains("d0: cannot reload data selectors")
                && l.contains("fs 0x11")
                && l.contains("delivering to the failsafe callback")),
        "{t}"
    );
    assert!(!out.contains("(d0) FAIL:"), "{t}");
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert!(out.contains("(d1) RESULT: SUCCESS"), "{t}");
    assert!(!out.contains("(d1) FAIL:"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn guest32_hypercalls() {
    // Every hypercall of the compat layer with good and bad arguments, from
    // ring 1 (guests32/hypercalls): trap table, callbacks, stack, FPU,
    // console, version, scheduler, VM assists, IOPL, memory and vCPU ops,
    // page tables, GDT, events, timer, and the iret hypercall to ring 1 and 3.
    let what = "guest32-hypercalls";
    let out = boot(what, vec![guest32("guest32-hypercalls")]);
    let t = out.transcript();
    assert!(!out.contains("(d0) FAIL:"), "{t}");
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

/// `RINGVISOR_TEST_TIMEOUT` seconds (default 60).
fn test_timeout() -> Duration {
    let s = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    Duration::from_secs_f64(s)
}

#[test]
fn hostile32_alone() {
    // guests32/hostile: syscall from ring 3 after a native iret, the
    // compat SCHEDOP_poll layout, HYPERVISOR_iret and event upcalls to
    // frames the CPU refuses (delivered as the fault the CPU raises, with
    // the refused frame). Every case passes, the hypervisor never faults.
    let what = "guest32-hostile";
    let out = boot_for(what, vec![guest32("guest32-hostile")], test_timeout());
    let t = out.transcript();
    assert!(!out.contains("(d0) FAIL:"), "{t}");
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn hostile32_beside_a_64_bit_domain() {
    // The same beside the 64-bit guest-hello: both succeed.
    let what = "guest32-hostile + guest-hello";
    let hello64 = build::test_guest("guest-hello").unwrap_or_else(|e| panic!("{e}"));
    let out = boot_for(
        what,
        vec![guest32("guest32-hostile"), GuestSpec::new(hello64)],
        test_timeout(),
    );
    let t = out.transcript();
    assert!(out.contains("(d0) RESULT: SUCCESS"), "{t}");
    assert!(out.contains("(d1) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn hostile32_rpl0_iret_crashes_only_that_domain() {
    // HYPERVISOR_iret to cs 0xe018 (RPL 0): Xen's compat_iret crashes the
    // domain. The hypervisor says so, does not fault, and the 64-bit
    // guest-hello beside it runs to success.
    let what = "guest32-hostile only=rpl0-iret + guest-hello";
    let hello64 = build::test_guest("guest-hello").unwrap_or_else(|e| panic!("{e}"));
    let out = boot_for(
        what,
        vec![
            guest32("guest32-hostile").args("only=rpl0-iret"),
            GuestSpec::new(hello64),
        ],
        test_timeout(),
    );
    let t = out.transcript();
    assert!(out.contains("(d0) EXPECT-CRASH"), "{t}");
    assert!(out.rv_lines().any(|l| l.contains("d0: crashed")), "{t}");
    assert!(!out.contains("(d0) RESULT:"), "{t}");
    assert!(out.contains("(d1) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Failure, "{t}");
}
