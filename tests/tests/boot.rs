//! Boot tests: ringvisor in QEMU (TCG), judged by its exit status and its
//! serial console.
//!
//! The hypervisor comes from `$RINGVISOR_ELF` and the plain GRUB ISO from
//! `$RINGVISOR_ISO` (`cargo xtask test` sets both); when unset they are built
//! here. A missing artifact or tool fails the test, never skips it. Every
//! QEMU run is bounded (`$RINGVISOR_TEST_TIMEOUT` seconds, default 60) and
//! prints its verdict and boot-to-banner time on stderr.
//!
//! Cases:
//! - `-kernel` (multiboot1) boot: banner first, then `(RV) exit: success`,
//!   QEMU status 33;
//! - GRUB ISO (multiboot2) boot: the same;
//! - `selftest=pagefault|divide|panic`: `(RV) FATAL` with a register dump
//!   (vector, rip, cr2) for the faults, `(RV) exit: panic`, status 37;
//! - `loglvl=`: error prints fewer hypervisor lines than debug;
//! - a module from QEMU `-initrd` and one from GRUB `module2` are listed
//!   with the command line the hypervisor received;
//! - the hybrid GRUB ISO under OVMF (UEFI, q35): the demo guests to
//!   SUCCESS, with ACPI found through the loader's RSDP tag;
//! - without `isa-debug-exit`: `on_exit=poweroff` powers QEMU off through
//!   ACPI S5 (QEMU exits 0 after `(RV) exit: success`), on `pc` with the
//!   ACPI PM timer as the reference clock (HPET off) and on `q35` with the
//!   HPET; `on_exit=reboot` resets it (the FADT's reset register on q35);
//! - the framebuffer console: under OVMF the hypervisor logs the GOP
//!   framebuffer it draws on, and a QEMU `screendump` shows its text (its
//!   own colour on the black it cleared to);
//! - SMP: `-smp 4` brings 4 CPUs up (RSDP from the BIOS area under
//!   `-kernel`, from GRUB's ACPI tag from the ISO), each AP's APIC timer
//!   fires, each answers a wake IPI and a TLB shootdown; `cpus=1` and `cpus=2` start only
//!   that many; a 1-CPU machine; multi-threaded TCG and the q35 machine;
//!   without ACPI tables (`acpi=off`) the boot CPU alone, saying why;
//!   `-smp 66`: the first 64 (ringvisor's most), saying so;
//! - the runner itself: a run without a verdict is killed at its timeout.

use ringvisor_tests::build;
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{secs, Qemu, RunOutput, Verdict};
use std::path::PathBuf;
use std::time::Duration;

fn elf() -> PathBuf {
    build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"))
}

fn iso() -> PathBuf {
    build::test_iso().unwrap_or_else(|e| panic!("no ISO: {e}"))
}

fn timeout() -> Duration {
    let s = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    Duration::from_secs_f64(s)
}

/// Runs QEMU (bounded) and prints the one-line summary.
fn boot(what: &str, q: Qemu) -> RunOutput {
    let out = q
        .timeout(Some(timeout()))
        .run()
        .unwrap_or_else(|e| panic!("{what}: QEMU did not run: {e}"));
    eprintln!("{what}: {}", out.summary());
    out
}

fn expect_verdict(what: &str, out: &RunOutput, want: Verdict) {
    assert_eq!(
        out.verdict,
        want,
        "{what}: {}\n--- serial ---\n{}",
        out.summary(),
        out.transcript()
    );
}

fn expect_line(what: &str, out: &RunOutput, needle: &str) {
    assert!(
        out.contains(needle),
        "{what}: no line contains {needle:?}\n--- serial ---\n{}",
        out.transcript()
    );
}

fn expect_exit_line(what: &str, out: &RunOutput, verdict: &str) {
    let want = format!("(RV) exit: {verdict}");
    match out.exit_line() {
        Some(l) if l.starts_with(&want) => {}
        other => panic!(
            "{what}: exit line {other:?}, want {want:?}...\n--- serial ---\n{}",
            out.transcript()
        ),
    }
}

/// A stand-in module file (not a guest: only its name and command line
/// matter here), unique to the test that asks.
fn dummy_module(test: &str) -> PathBuf {
    let dir = build::target_dir().join("boot-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{test}.bin"));
    std::fs::write(&p, b"not a guest: a boot-test stand-in module\n").unwrap();
    p
}

#[test]
fn kernel_boot_prints_banner_then_succeeds() {
    let what = "-kernel boot";
    let out = boot(what, Qemu::kernel(elf()));
    expect_verdict(what, &out, Verdict::Success);
    let first = out.lines.first().map(|l| l.text.as_str()).unwrap_or("");
    assert!(
        first.starts_with("(RV) ringvisor "),
        "{what}: first serial line is {first:?}, not the banner\n{}",
        out.transcript()
    );
    expect_exit_line(what, &out, "success");
    eprintln!(
        "{what}: boot-to-banner {} (QEMU spawn to first serial line)",
        secs(out.banner.expect("banner seen"))
    );
}

#[test]
fn iso_boot_prints_banner_then_succeeds() {
    let what = "GRUB ISO boot";
    let out = boot(what, Qemu::iso(iso()));
    expect_verdict(what, &out, Verdict::Success);
    assert!(
        out.banner_line().is_some(),
        "{what}: no banner\n{}",
        out.transcript()
    );
    expect_exit_line(what, &out, "success");
    eprintln!(
        "{what}: boot-to-banner {} (QEMU spawn, through SeaBIOS and GRUB, to the banner)",
        secs(out.banner.expect("banner seen"))
    );
}

fn selftest_fault(kind: &str) {
    let what = format!("selftest={kind}");
    let out = boot(&what, Qemu::kernel(elf()).cmdline(&what));
    expect_verdict(&what, &out, Verdict::Panic);
    expect_line(&what, &out, "(RV) FATAL");
    // The register dump.
    for field in ["vector", "rip", "cr2"] {
        assert!(
            out.rv_lines().any(|l| l.contains(field)),
            "{what}: register dump lacks {field:?}\n{}",
            out.transcript()
        );
    }
    expect_exit_line(&what, &out, "panic");
}

#[test]
fn selftest_pagefault_dumps_registers_and_panics() {
    selftest_fault("pagefault");
}

#[test]
fn selftest_divide_dumps_registers_and_panics() {
    selftest_fault("divide");
}

#[test]
fn selftest_panic_exits_with_panic() {
    let what = "selftest=panic";
    let out = boot(what, Qemu::kernel(elf()).cmdline(what));
    expect_verdict(what, &out, Verdict::Panic);
    expect_exit_line(what, &out, "panic");
}

#[test]
fn loglvl_is_honoured() {
    let quiet = boot("loglvl=error", Qemu::kernel(elf()).cmdline("loglvl=error"));
    let loud = boot("loglvl=debug", Qemu::kernel(elf()).cmdline("loglvl=debug"));
    expect_verdict("loglvl=error", &quiet, Verdict::Success);
    expect_verdict("loglvl=debug", &loud, Verdict::Success);
    let (q, l) = (quiet.rv_lines().count(), loud.rv_lines().count());
    assert!(
        q < l,
        "loglvl=error printed {q} hypervisor lines, loglvl=debug {l}: expected fewer\n\
         --- loglvl=error ---\n{}--- loglvl=debug ---\n{}",
        quiet.transcript(),
        loud.transcript()
    );
}

/// The hypervisor lists each module as
/// `(RV) module N: [name=NAME ]bytes=... mem=...M vcpus=... cmdline="GUEST-ARGS"`,
/// NAME being the last part of the module's path where the loader gives
/// one (QEMU), and no name where it does not (GRUB 2). A stand-in module
/// is no guest, so the run may end in FAILURE (domain build error) but
/// must not panic, fault or hang.
fn expect_module_listed(what: &str, out: &RunOutput, name: Option<&str>, args: &str) {
    let head = match name {
        Some(n) => format!("(RV) module 0: name={n} bytes="),
        None => "(RV) module 0: bytes=".to_string(),
    };
    let listed = |l: &&str| {
        l.starts_with(&head)
            && l.contains(" mem=64M ")
            && l.ends_with(&format!("cmdline=\"{args}\""))
    };
    assert!(
        out.rv_lines().any(|l| listed(&l)),
        "{what}: no `{head}... mem=64M ... cmdline=\"{args}\"` line\n{}",
        out.transcript()
    );
    assert!(
        matches!(out.verdict, Verdict::Success | Verdict::Failure),
        "{what}: {}\n{}",
        out.summary(),
        out.transcript()
    );
}

#[test]
fn initrd_module_is_listed_with_its_options_and_args() {
    let what = "-initrd module";
    let path = dummy_module("initrd");
    // The comma checks QEMU's `,,` escaping end to end; `rv.vcpus=9` after
    // `--` must reach the guest, not the hypervisor.
    let guest = GuestSpec::new(&path)
        .opt("mem", "64M")
        .args("hello world,x rv.vcpus=9");
    let out = boot(what, Qemu::kernel(elf()).guest(guest));
    expect_module_listed(what, &out, Some("initrd.bin"), "hello world,x rv.vcpus=9");
}

#[test]
fn grub_module_line_has_no_path_and_is_read_so() {
    let what = "GRUB module2";
    let path = dummy_module("grub");
    let guest = GuestSpec::new(&path)
        .opt("mem", "64M")
        .args("hello world,x");
    let iso = build::target_dir().join("boot-tests/grub-module.iso");
    build::build_iso(&elf(), "loglvl=info", &[guest], &iso)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let out = boot(what, Qemu::iso(&iso));
    // `module2 /boot/grub.bin rv.mem=64M -- hello world,x`: GRUB 2 drops
    // the path, and the hypervisor (knowing GRUB 2 by its name, as Xen)
    // takes the first word as an option, not as a path.
    expect_module_listed(what, &out, None, "hello world,x");
    assert!(
        out.rv_lines()
            .any(|l| l.contains("d0 (module 0): cannot build")),
        "{what}\n{}",
        out.transcript()
    );
}

#[test]
fn runner_kills_a_run_without_verdict_at_its_timeout() {
    // -S: QEMU waits for a debugger forever, so no verdict ever comes.
    let mut q = Qemu::kernel(elf()).timeout(Some(Duration::from_secs(1)));
    q.extra_args = vec!["-S".into()];
    let out = q.run().expect("QEMU runs");
    eprintln!("halted QEMU: {}", out.summary());
    assert_eq!(out.verdict, Verdict::Timeout, "{}", out.summary());
    assert!(out.elapsed < Duration::from_secs(10), "{}", out.summary());
}

#[test]
fn uefi_iso_boots_the_demo_under_ovmf() {
    let what = "UEFI ISO (OVMF)";
    let guests: Vec<GuestSpec> = build::DEMO_GUESTS
        .iter()
        .map(|s| {
            let mut g: GuestSpec = s.parse().unwrap();
            g.path = build::test_guest(&g.path.to_string_lossy())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            g
        })
        .collect();
    let iso = build::target_dir().join("boot-tests/uefi-demo.iso");
    build::build_iso(&elf(), "", &guests, &iso).unwrap_or_else(|e| panic!("{what}: {e}"));
    let out = boot(what, Qemu::iso(&iso).uefi());
    expect_verdict(what, &out, Verdict::Success);
    expect_line(what, &out, "(RV) loader: multiboot2 GRUB 2");
    // Under UEFI the RSDP is only found through the loader's copy.
    expect_line(what, &out, "(RV) acpi: RSDP from the loader's ACPI tag");
    // UEFI GRUB's memory map and modules reached the 32-bit entry.
    expect_line(what, &out, "(RV)   memory 0x000000100000-");
    for i in 0..guests.len() {
        expect_line(what, &out, &format!("(RV) module {i}: bytes="));
    }
    for d in 0..guests.len() {
        expect_line(what, &out, &format!("(d{d}) RESULT: SUCCESS"));
    }
    expect_exit_line(
        what,
        &out,
        &format!("success (all {} domain(s) powered off)", guests.len()),
    );
}

/// A run without QEMU's `isa-debug-exit`, ended by the hypervisor as on
/// hardware: QEMU exits 0 (power-off, or a reset under `-no-reboot`).
fn without_debug_exit(what: &str, machine: &str, cmdline: &str) -> RunOutput {
    let mut q = Qemu::kernel(elf()).cmdline(cmdline).without_debug_exit();
    q.extra_args = vec!["-machine".into(), machine.into()];
    let out = boot(what, q);
    assert_eq!(
        out.status,
        Some(0),
        "{what}: QEMU did not exit by itself: {}\n{}",
        out.summary(),
        out.transcript()
    );
    expect_exit_line(what, &out, "success");
    assert!(
        !out.contains("isa-debug-exit at 0xf4 found"),
        "{what}: the hypervisor saw a debug-exit device that is not there\n{}",
        out.transcript()
    );
    out
}

#[test]
fn poweroff_through_acpi_s5_with_the_pm_timer() {
    let what = "on_exit=poweroff (pc, no HPET)";
    let out = without_debug_exit(what, "pc,hpet=off", "on_exit=poweroff");
    expect_line(what, &out, "(RV) power: off through ACPI S5");
    expect_line(what, &out, "from ACPI PM timer calibration");
    expect_line(what, &out, "counted against ACPI PM timer");
}

#[test]
fn poweroff_through_acpi_s5_with_the_hpet() {
    let what = "on_exit=poweroff (q35)";
    let out = without_debug_exit(what, "q35", "on_exit=poweroff");
    expect_line(what, &out, "(RV) power: off through ACPI S5");
    expect_line(what, &out, "from HPET calibration");
    expect_line(what, &out, "counted against HPET");
}

#[test]
fn reboot_through_the_acpi_reset_register() {
    let what = "on_exit=reboot (q35)";
    let out = without_debug_exit(what, "q35", "on_exit=reboot");
    expect_line(what, &out, "reset register Io 0xcf9");
    expect_line(what, &out, "(RV) power: resetting");
}

/// What a `screendump` (binary PPM) shows: (pixels, pure black ones,
/// ones in the hypervisor's line colour: no red, green == blue, lit).
fn screen_counts(ppm: &[u8]) -> Option<(usize, usize, usize)> {
    // "P6\n<w> <h>\n255\n" then RGB bytes.
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while ppm.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !ppm.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        fields.push(std::str::from_utf8(&ppm[start..at]).ok()?.to_string());
    }
    let pixels = ppm.get(at + 1..)?;
    if fields[0] != "P6" || fields[3] != "255" {
        return None;
    }
    let (mut black, mut ours) = (0, 0);
    for p in pixels.chunks_exact(3) {
        if p == [0, 0, 0] {
            black += 1;
        } else if p[0] == 0 && p[1] == p[2] && p[1] > 0x40 {
            ours += 1;
        }
    }
    Some((pixels.len() / 3, black, ours))
}

#[test]
fn framebuffer_console_draws_under_uefi() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let what = "framebuffer console (UEFI)";
    let dir = build::target_dir().join("boot-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join(format!("fbcon-monitor-{}.sock", std::process::id()));
    let shot = dir.join(format!("fbcon-{}.ppm", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&shot);
    // No debug-exit and on_exit=halt (the default): the machine halts
    // with the text on screen, until the monitor says `quit`.
    let mut q = Qemu::iso(iso()).uefi().without_debug_exit();
    q.extra_args = vec![
        "-monitor".into(),
        format!("unix:{},server,nowait", sock.display()),
    ];
    let watcher = {
        let (sock, shot) = (sock.clone(), shot.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut mon = loop {
                match UnixStream::connect(&sock) {
                    Ok(s) => break s,
                    Err(_) if start.elapsed() < Duration::from_secs(30) => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(e) => return Err(format!("no QEMU monitor at {}: {e}", sock.display())),
                }
            };
            mon.set_read_timeout(Some(Duration::from_millis(500)))
                .map_err(|e| e.to_string())?;
            // The monitor's answers, read so they never fill the socket.
            let drain = |mon: &mut UnixStream| {
                let mut buf = [0u8; 4096];
                while let Ok(n) = mon.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            };
            let mut last = None;
            while start.elapsed() < Duration::from_secs(45) {
                let _ = std::fs::remove_file(&shot);
                writeln!(mon, "screendump {}", shot.display()).map_err(|e| e.to_string())?;
                drain(&mut mon);
                let counts = std::fs::read(&shot).ok().and_then(|b| screen_counts(&b));
                if let Some((n, black, ours)) = counts {
                    last = counts;
                    if black * 100 >= n * 70 && ours >= 500 {
                        break;
                    }
                }
            }
            let _ = writeln!(mon, "quit");
            drain(&mut mon);
            Ok(last)
        })
    };
    let out = boot(what, q);
    let counts = watcher.join().expect("watcher thread");
    let _ = std::fs::remove_file(&sock);
    expect_line(what, &out, "(RV) console: framebuffer ");
    let (n, black, ours) = match counts {
        Ok(Some(c)) => c,
        other => panic!(
            "{what}: no screendump read: {other:?}\n{}",
            out.transcript()
        ),
    };
    eprintln!("{what}: {n} pixels, {black} black, {ours} in the hypervisor's colour");
    assert!(
        black * 100 >= n * 70 && ours >= 500,
        "{what}: the screen does not show the hypervisor's text ({n} pixels, {black} black, \
         {ours} in its colour)\n{}",
        out.transcript()
    );
}

/// The SMP lines of a run: every CPU the machine has is up, each AP's
/// APIC timer fired, and each answered a wake IPI.
fn expect_cpus_up(what: &str, out: &RunOutput, n: usize, listed: usize) {
    expect_verdict(what, out, Verdict::Success);
    expect_line(
        what,
        out,
        &format!(
            "lists {listed} enabled CPU{}",
            if listed == 1 { "" } else { "s" }
        ),
    );
    expect_line(
        what,
        out,
        &format!(
            "smp: {n} CPU{} up (of {listed} listed",
            if n == 1 { "" } else { "s" }
        ),
    );
    for cpu in 1..n {
        let up = out
            .rv_lines()
            .find(|l| l.contains(&format!("smp: CPU {cpu} (APIC ID ")))
            .unwrap_or_else(|| panic!("{what}: no line for CPU {cpu}\n{}", out.transcript()));
        assert!(
            up.contains("one-shot fired"),
            "{what}: CPU {cpu}'s timer: {up}"
        );
    }
    assert!(
        !out.rv_lines()
            .any(|l| l.contains(&format!("smp: CPU {n} ("))),
        "{what}: more than {n} CPUs started\n{}",
        out.transcript()
    );
    if n > 1 {
        expect_line(
            what,
            out,
            &format!("a wake IPI to each of the {} other", n - 1),
        );
        expect_line(
            what,
            out,
            &format!("a TLB shootdown of one page to the {} other", n - 1),
        );
    }
}

#[test]
fn smp_4_every_cpu_comes_up() {
    let what = "-smp 4";
    let out = boot(what, Qemu::kernel(elf()).smp(4));
    expect_cpus_up(what, &out, 4, 4);
    expect_line(what, &out, "RSDP from the BIOS area");
}

#[test]
fn smp_cpus_option_limits_the_cpus_started() {
    for n in [1, 2] {
        let what = format!("-smp 4 cpus={n}");
        let out = boot(
            &what,
            Qemu::kernel(elf()).smp(4).cmdline(&format!("cpus={n}")),
        );
        expect_cpus_up(&what, &out, n, 4);
        expect_line(&what, &out, &format!(", cpus={n})"));
    }
}

#[test]
fn smp_one_cpu_machine_runs_on_the_boot_cpu() {
    let what = "-smp 1";
    let out = boot(what, Qemu::kernel(elf()));
    expect_cpus_up(what, &out, 1, 1);
}

#[test]
fn smp_under_multithreaded_tcg_and_q35() {
    let what = "-accel tcg,thread=multi -smp 4";
    let out = boot(
        what,
        Qemu::kernel(elf())
            .smp(4)
            .accel(ringvisor_tests::qemu::Accel::TcgMulti),
    );
    expect_cpus_up(what, &out, 4, 4);
    let what = "-M q35 -smp 4";
    let mut q = Qemu::kernel(elf()).smp(4);
    q.extra_args = vec!["-M".into(), "q35".into()];
    let out = boot(what, q);
    expect_cpus_up(what, &out, 4, 4);
}

#[test]
fn smp_66_cpus_start_the_first_64() {
    let what = "-smp 66";
    let out = boot(what, Qemu::kernel(elf()).smp(66));
    expect_cpus_up(what, &out, 64, 66);
    expect_line(what, &out, "ringvisor uses at most 64 CPUs");
}

#[test]
fn smp_without_acpi_says_so_and_runs_on_the_boot_cpu() {
    let what = "-machine pc,acpi=off -smp 4";
    let mut q = Qemu::kernel(elf()).smp(4);
    q.extra_args = vec!["-machine".into(), "pc,acpi=off".into()];
    let out = boot(what, q);
    expect_verdict(what, &out, Verdict::Success);
    expect_line(what, &out, "smp: no RSDP");
    expect_line(what, &out, "running on the boot CPU only");
    assert!(
        !out.rv_lines().any(|l| l.contains("smp: CPU 1 (")),
        "{what}: an AP was started\n{}",
        out.transcript()
    );
}

#[test]
fn smp_iso_boot_takes_the_rsdp_from_grub() {
    let what = "GRUB ISO -smp 4";
    let out = boot(what, Qemu::iso(iso()).smp(4));
    expect_cpus_up(what, &out, 4, 4);
    expect_line(what, &out, "RSDP from the loader");
}
