//! `cargo xtask`: build, boot, test, benchmark and debug ringvisor.
//!
//! A thin command line over the `ringvisor-tests` harness, which owns the
//! build steps, the grub.cfg generator and the one QEMU runner. Every
//! command it runs is printed first (`$ ...`).

mod bench;
mod frames;
mod fuzz;
mod layers;
mod lesson;
mod lint;
mod linux;
mod xtf;

use ringvisor_tests::build::{self, Profile};
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{self, Accel, Qemu};
use ringvisor_tests::{bail, cmd, tools, Error, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Guests booted by `cargo xtask run` / `iso` when none are named (the
/// list lives in the harness, where the UEFI boot test boots them too).
use build::DEMO_GUESTS;
const DEMO_CMDLINE: &str = "trace=bounce,hypercall";

const HELP: &str = "\
cargo xtask: build, boot, test and debug ringvisor

USAGE: cargo xtask <COMMAND> [OPTIONS]

COMMANDS:
  build   build the hypervisor, copy it to target/ringvisor.elf
  iso     build target/ringvisor.iso, a GRUB (BIOS and UEFI, multiboot2) boot image
  run     build and boot in QEMU, serial console on stdout
  test    build the hypervisor and an ISO, then `cargo test --workspace`
  bench   time every PV path against the hardware's own round trips
  gdb     boot in QEMU halted, waiting for gdb on :1234
  lesson  run a lesson on PV trap bouncing (`lesson --list`; see lessons/)
  frames  draw the guest stack frames into docs/frames/*.svg
  fuzz    random hypercalls, exceptions and iret frames beside a victim
  xtf     boot each XTF test image of a directory, table of results
  linux   boot Debian's stock Linux kernel (busybox initramfs) and time it
  lint    layering of src/, rustfmt and clippy over every crate and target, as CI runs them
  help    this text (`cargo xtask <COMMAND> --help` for one command)

`target/` means $CARGO_TARGET_DIR when that is set. Before building,
missing Rust targets (x86_64-unknown-none, i686-unknown-linux-gnu) are added
with `rustup target add`; missing QEMU/GRUB/binutils are installed with
apt-get when run as root, else the apt-get command is named.
";

const BUILD_HELP: &str = "\
cargo xtask build [--release|--debug]

Runs `cargo build -p ringvisor --target x86_64-unknown-none [--release]` and
copies the result to target/ringvisor.elf.

  --release   optimised build (default)
  --debug     unoptimised build
";

const ISO_HELP: &str = "\
cargo xtask iso [--release|--debug] [--cmdline \"ARGS\"] [GUEST[@KEY=VAL,...][:ARGS]...]

Builds the hypervisor, then target/ringvisor.iso with grub-mkrescue: one
hybrid image that boots from BIOS and from UEFI (GRUB's i386-pc and
x86_64-efi platforms), also when written to a USB stick with dd; GRUB on
the serial line (115200), no menu delay, the hypervisor as
/boot/ringvisor.elf and each GUEST as a module under /boot/ (grub.cfg made
from qemu/grub.cfg). Without GUEST, the demo guests (see run --help).

  --release | --debug   hypervisor profile (default: release)
  --cmdline \"ARGS\"      hypervisor command line (e.g. \"loglvl=debug\")
  GUEST...              see `cargo xtask run --help`
";

const RUN_HELP: &str = "\
cargo xtask run [--iso] [--uefi] [--kvm|--tcg|--mttcg] [--smp N] [--timeout S]
                [--cmdline \"ARGS\"] [--release|--debug] [GUEST[@KEY=VAL,...][:ARGS]...]

Builds the hypervisor and boots it in QEMU (qemu-system-x86_64 -accel tcg
-cpu max,-smap -m 256M -smp 4 -serial stdio -display none -no-reboot -device
isa-debug-exit,...), through -kernel (QEMU's multiboot1 loader) or, with
--iso, from a GRUB ISO. The serial console streams to stdout. Without GUEST
it boots the demo with the trace on (trace=bounce,hypercall): two domains
exchanging events (guest-pingpong as d0 and d1), then exceptions bounced
to a 64-bit guest kernel in ring 3 (guest-traps) and to a 32-bit one in
ring 1 (guest32-traps); every hypercall and bounce is shown.

Exits 0 when the hypervisor reports SUCCESS (QEMU status 33: every domain
powered off / nothing left to run); otherwise exits 1 with one line naming
the verdict: FAILURE (35: a domain crashed or a boot error), PANIC (37:
hypervisor panic or fault), TRIPLE-FAULT (QEMU exited 0: reset without a
verdict), TIMEOUT (QEMU killed) or UNEXPECTED.

  --iso            boot target/ringvisor.iso (built now) with -cdrom
  --uefi           the same ISO under UEFI firmware: OVMF (package ovmf) on a
                   q35 machine, OVMF_CODE.fd read-only and a copy of
                   OVMF_VARS.fd as pflash drives (implies --iso)
  --tcg            QEMU's TCG accelerator (default)
  --mttcg          TCG with a host thread per CPU (-accel tcg,thread=multi)
  --smp N          N CPUs (default 4; the hypervisor starts them all, guests
                   run on the first)
  --kvm            -accel kvm -cpu host,-arch-capabilities; never chosen
                   automatically (/dev/kvm on the project's build machines
                   emulates ring 0: a boot takes seconds instead of 0.1 s)
  --timeout S      kill QEMU after S seconds (default 60; 0: no limit)
  --cmdline \"ARGS\" hypervisor command line, e.g. \"loglvl=debug\",
                   \"selftest=pagefault\"
  --release|--debug  hypervisor profile (default: release)

GUEST[@KEY=VAL,...][:ARGS]: one multiboot module (one domain; the first is
domain 0). KEY=VAL are per-domain hypervisor options (mem=64M, vcpus=2),
ARGS the guest's command line. The hypervisor sees the module command line
`PATH rv.KEY=VAL ... -- ARGS` (from an ISO, as GRUB 2 passes it:
`rv.KEY=VAL ... -- ARGS`). A GUEST may be an ELF or a bzImage; a file that
is neither is the initrd of the GUEST before it (as Xen's dom0 initrd).
Example: cargo xtask run 'target/g.elf@mem=64M:console=hvc0 loglevel=8'
(quote a GUEST whose ARGS hold spaces: each shell word is one GUEST)
";

const TEST_HELP: &str = "\
cargo xtask test [-- TEST-ARGS...]

Builds the hypervisor (release) to target/ringvisor.elf and a plain ISO
(hypervisor alone) to target/ringvisor-test.iso, then runs, with
RINGVISOR_ELF and RINGVISOR_ISO set to those two files,
  cargo test --workspace --doc -- --nocapture [TEST-ARGS...]
  cargo test --workspace --all-targets -- --nocapture [TEST-ARGS...]
that is, the doc tests and then the host unit tests of every crate and the
QEMU boot tests in tests/tests/. Each QEMU run prints its verdict and
boot-to-banner time. Exits non-zero when a test fails.
Missing Rust targets are added with rustup; missing QEMU/GRUB/binutils
are installed with apt-get when run as root (otherwise the command is named).
";

const GDB_HELP: &str = "\
cargo xtask gdb [--debug|--release] [--cmdline \"ARGS\"] [GUEST...]

Builds the hypervisor (default: debug) and starts QEMU halted (-s -S) with
`-d int,cpu_reset` logged to target/qemu-debug.log and -no-reboot, so a
triple fault stops instead of looping. When gdb is installed and stdin is a
terminal, gdb starts too, with the symbols of target/ringvisor.elf and
connected to :1234; QEMU is stopped when gdb exits. Otherwise the gdb
command is printed and QEMU runs until it exits or is interrupted.
";

/// `cargo xtask run`'s CPUs: a machine like the ones the hypervisor is
/// for (the application processors start and idle; guests use CPU 0).
const DEFAULT_SMP: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    profile: Profile,
    iso: bool,
    uefi: bool,
    accel: Accel,
    /// `--smp`: QEMU's CPUs.
    smp: u32,
    timeout: Option<Duration>,
    cmdline: String,
    guests: Vec<GuestSpec>,
    /// After `--`: handed on (to the test binaries).
    rest: Vec<String>,
    help: bool,
}

/// Parses the options of `command`; `allowed` lists the flags it takes.
fn parse(command: &str, args: &[String], allowed: &[&str], default: Profile) -> Result<Opts> {
    let mut o = Opts {
        profile: default,
        iso: false,
        uefi: false,
        accel: Accel::Tcg,
        smp: DEFAULT_SMP,
        timeout: Some(qemu::DEFAULT_TIMEOUT),
        cmdline: String::new(),
        guests: Vec::new(),
        rest: Vec::new(),
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            o.help = true;
            continue;
        }
        if flag == "--" && allowed.contains(&"--") {
            o.rest = it.by_ref().cloned().collect();
            break;
        }
        if !flag.starts_with('-') {
            if !allowed.contains(&"GUEST") {
                bail!("`cargo xtask {command}` takes no argument {arg:?} (see --help)");
            }
            o.guests.push(arg.parse()?);
            continue;
        }
        if !allowed.contains(&flag) {
            bail!("`cargo xtask {command}` has no option {flag} (see --help)");
        }
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value"),
            }
        };
        match flag {
            "--release" => o.profile = Profile::Release,
            "--debug" => o.profile = Profile::Debug,
            "--iso" => o.iso = true,
            "--uefi" => {
                o.uefi = true;
                o.iso = true;
            }
            "--tcg" => o.accel = Accel::Tcg,
            "--kvm" => o.accel = Accel::Kvm,
            "--mttcg" => o.accel = Accel::TcgMulti,
            "--smp" => {
                let v = value("--smp")?;
                o.smp = match v.parse() {
                    Ok(n) if (1..=255).contains(&n) => n,
                    _ => bail!("--smp takes a number of CPUs (1-255), not {v:?}"),
                };
            }
            "--cmdline" => o.cmdline = value("--cmdline")?,
            "--timeout" => {
                let v = value("--timeout")?;
                let secs: f64 = match v.parse() {
                    Ok(s) if s >= 0.0 && f64::is_finite(s) => s,
                    _ => bail!("--timeout takes seconds, not {v:?}"),
                };
                o.timeout = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
            }
            _ => unreachable!("allowed flag {flag} not handled"),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Result<ExitCode> {
    let Some(command) = args.first() else {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    };
    let rest = &args[1..];
    let profile = &["--release", "--debug"][..];
    let (help, allowed, default): (&str, Vec<&str>, Profile) = match command.as_str() {
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            return Ok(ExitCode::SUCCESS);
        }
        "build" => (BUILD_HELP, profile.to_vec(), Profile::Release),
        "iso" => (
            ISO_HELP,
            [profile, &["--cmdline", "GUEST"]].concat(),
            Profile::Release,
        ),
        "run" => (
            RUN_HELP,
            [
                profile,
                &[
                    "--iso",
                    "--uefi",
                    "--tcg",
                    "--kvm",
                    "--mttcg",
                    "--smp",
                    "--timeout",
                    "--cmdline",
                    "GUEST",
                ],
            ]
            .concat(),
            Profile::Release,
        ),
        "test" => (TEST_HELP, vec!["--"], Profile::Release),
        "bench" => return bench::command(rest),
        "lesson" => return lesson::command(rest),
        "frames" => return frames::command(rest),
        "fuzz" => return fuzz::command(rest),
        "xtf" => return xtf::command(rest),
        "linux" => return linux::command(rest),
        "lint" => return lint::command(rest),
        "gdb" => (
            GDB_HELP,
            [profile, &["--cmdline", "GUEST"]].concat(),
            Profile::Debug,
        ),
        other => bail!("unknown command {other:?}; commands: build, iso, run, test, bench, gdb, lesson, frames, fuzz, xtf, linux, lint, help"),
    };
    let o = parse(command, rest, &allowed, default)?;
    if o.help {
        print!("{help}");
        return Ok(ExitCode::SUCCESS);
    }
    match command.as_str() {
        "build" => build::build_hypervisor(o.profile).map(|_| ExitCode::SUCCESS),
        "iso" => iso(&o).map(|_| ExitCode::SUCCESS),
        "run" => run(&o),
        "test" => test(&o),
        "gdb" => gdb(&o),
        _ => unreachable!(),
    }
}

/// The guests named on the command line, else the demo guests.
fn guests(o: &Opts) -> Result<Vec<GuestSpec>> {
    if !o.guests.is_empty() {
        return Ok(o.guests.clone());
    }
    demo_guests()
}

fn demo_guests() -> Result<Vec<GuestSpec>> {
    build::build_guests()?;
    let available = build::guest_crates();
    DEMO_GUESTS
        .iter()
        .filter(|s| {
            available
                .iter()
                .any(|c| s.split(':').next() == Some(c.as_str()))
        })
        .map(|s| {
            let mut g: GuestSpec = s.parse()?;
            g.path = build::guest_path(&g.path.to_string_lossy());
            Ok(g)
        })
        .collect()
}

/// The hypervisor command line: --cmdline, else the demo's own when the
/// demo guests are booted.
fn effective_cmdline(o: &Opts) -> String {
    if o.cmdline.is_empty() && o.guests.is_empty() {
        DEMO_CMDLINE.to_string()
    } else {
        o.cmdline.clone()
    }
}

fn iso(o: &Opts) -> Result<PathBuf> {
    let guests = guests(o)?;
    tools::ensure(tools::ISO)?;
    let elf = build::build_hypervisor(o.profile)?;
    build::build_iso(&elf, &effective_cmdline(o), &guests, &build::iso_path())
}

fn run(o: &Opts) -> Result<ExitCode> {
    let guests = guests(o)?;
    ringvisor_tests::guest::check_exist(&guests)?;
    if o.accel == Accel::Kvm {
        eprintln!(
            "warning: --kvm: where /dev/kvm is a software PV hypervisor (kvm_pvm, as on \
             this project's build machines) ring 0 is emulated: a boot takes seconds, \
             TCG is faster"
        );
    }
    tools::ensure(tools::QEMU)?;
    let mut q = if o.iso {
        Qemu::iso(iso(o)?)
    } else {
        let elf = build::build_hypervisor(o.profile)?;
        let mut q = Qemu::kernel(elf).cmdline(&effective_cmdline(o));
        for g in guests {
            q = q.guest(g);
        }
        q
    };
    if o.uefi {
        q = q.uefi();
    }
    q.accel = o.accel;
    q.cpus = o.smp;
    q.timeout = o.timeout;
    q.echo = true;
    // Keys typed while it runs reach the hypervisor's debug keys.
    q.keyboard = std::io::stdin().is_terminal();
    let out = q.run()?;
    if out.exit_line().is_none() && out.verdict != qemu::Verdict::Timeout {
        eprintln!("note: no `(RV) exit: ...` line was printed");
    }
    if out.verdict.is_success() {
        eprintln!("xtask: {}", out.summary());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask: run failed: {}", out.summary());
        Ok(ExitCode::FAILURE)
    }
}

fn test(o: &Opts) -> Result<ExitCode> {
    tools::ensure(tools::ALL)?;
    let elf = build::build_hypervisor(Profile::Release)?;
    build::build_guests()?;
    let iso = build::build_iso(
        &elf,
        "",
        &[],
        &build::target_dir().join("ringvisor-test.iso"),
    )?;
    // Doc tests first, then every other test target: cargo's doc-test
    // summaries come last otherwise, and "0 passed" closing the output
    // reads as if nothing ran.
    for targets in [&["--doc"][..], &["--all-targets"][..]] {
        let mut c = build::cargo();
        c.current_dir(build::workspace_root())
            .env("RINGVISOR_ELF", &elf)
            .env("RINGVISOR_ISO", &iso)
            .env("RINGVISOR_GUESTS_BUILT", "1")
            .args(["test", "--workspace"])
            .args(targets)
            // The test guests are bare-metal kernels (built above for the
            // target, run by tests/tests/pv64.rs): nothing to test on the host.
            .args(
                build::guest_crates()
                    .iter()
                    .flat_map(|g| ["--exclude".to_string(), g.clone()]),
            )
            .args(["--", "--nocapture"])
            .args(&o.rest);
        cmd::announce(&c);
        let status = match c.status() {
            Ok(s) => s,
            Err(e) => bail!("cannot run cargo: {e}"),
        };
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    // Nothing printed after cargo's own summary when the tests pass.
    Ok(ExitCode::SUCCESS)
}

fn gdb(o: &Opts) -> Result<ExitCode> {
    let guests = guests(o)?;
    ringvisor_tests::guest::check_exist(&guests)?;
    tools::ensure(tools::QEMU)?;
    let elf = build::build_hypervisor(o.profile)?;
    let log = build::target_dir().join("qemu-debug.log");
    let mut q = Qemu::kernel(&elf).cmdline(&o.cmdline);
    for g in &guests {
        q = q.guest(g.clone());
    }
    q.extra_args = ["-s", "-S", "-d", "int,cpu_reset", "-D"]
        .iter()
        .map(|s| s.to_string())
        .chain([log.to_string_lossy().into_owned()])
        .collect();
    let mut qemu = q.command()?;
    // stdin stays ours (for gdb); QEMU's serial goes to our stdout.
    qemu.stdin(Stdio::null());

    // Symbols of the hypervisor and of every guest (PV guests are static
    // executables linked where they run: their own addresses are right),
    // and hardware breakpoints on the hypercall entry and the bounce.
    let script = build::target_dir().join("ringvisor.gdb");
    let mut text = String::from("set pagination off\nset confirm off\n");
    for g in &guests {
        text.push_str(&format!("add-symbol-file {}\n", g.path.display()));
    }
    text.push_str(
        "target remote localhost:1234\n\
         hbreak syscall_entry\n\
         hbreak ringvisor::pv::traps::deliver\n\
         hbreak ringvisor::pv::compat::dispatch_domain\n\
         echo Hardware breakpoints: syscall_entry (64-bit hypercalls and system calls),\\n\n\
         echo   pv::traps::deliver (every bounce), pv::compat::dispatch_domain (32-bit hypercalls).\\n\n",
    );
    std::fs::write(&script, text)?;
    let mut gdb = Command::new("gdb");
    gdb.arg("-q").arg(&elf).arg("-x").arg(&script);
    let gdb_line = cmd::display(&gdb);
    eprintln!(
        "QEMU halts before the first instruction; -d int,cpu_reset goes to {}",
        log.display()
    );
    eprintln!(
        "gdb script: {} (symbols of the hypervisor and each guest, breakpoints preset)",
        script.display()
    );

    let interactive = std::io::stdin().is_terminal();
    if cmd::find_in_path("gdb").is_none() || !interactive {
        eprintln!("connect with: {gdb_line}");
        cmd::announce(&qemu);
        let status = qemu
            .status()
            .map_err(|e| Error::new(format!("cannot start QEMU: {e}")))?;
        eprintln!("QEMU exited: {status}");
        return Ok(ExitCode::SUCCESS);
    }
    cmd::announce(&qemu);
    let mut child = qemu
        .spawn()
        .map_err(|e| Error::new(format!("cannot start QEMU: {e}")))?;
    // Give QEMU a moment to open its gdb port.
    std::thread::sleep(Duration::from_millis(300));
    cmd::announce(&gdb);
    let result = gdb.status();
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => bail!("cannot run gdb: {e}; connect with: {gdb_line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    const RUN: &[&str] = &[
        "--release",
        "--debug",
        "--iso",
        "--uefi",
        "--tcg",
        "--kvm",
        "--mttcg",
        "--smp",
        "--timeout",
        "--cmdline",
        "GUEST",
    ];

    #[test]
    fn run_defaults() {
        let o = parse("run", &[], RUN, Profile::Release).unwrap();
        assert_eq!(o.profile, Profile::Release);
        assert_eq!(o.accel, Accel::Tcg);
        assert_eq!(o.smp, 4);
        assert_eq!(o.timeout, Some(qemu::DEFAULT_TIMEOUT));
        assert!(!o.iso && o.guests.is_empty() && o.cmdline.is_empty());
        let o = parse("run", &strings(&["--uefi"]), RUN, Profile::Release).unwrap();
        assert!(o.uefi && o.iso, "--uefi boots the ISO");
    }

    #[test]
    fn run_options_and_guests() {
        let a = strings(&[
            "--iso",
            "--kvm",
            "--timeout",
            "2.5",
            "--cmdline",
            "loglvl=debug x",
            "--debug",
            "g.elf@mem=8M:a b",
            "h.elf",
        ]);
        let o = parse("run", &a, RUN, Profile::Release).unwrap();
        assert!(o.iso);
        assert_eq!(o.accel, Accel::Kvm);
        assert_eq!(o.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(o.cmdline, "loglvl=debug x");
        assert_eq!(o.profile, Profile::Debug);
        assert_eq!(o.guests.len(), 2);
        assert_eq!(o.guests[0].args, "a b");
    }

    #[test]
    fn smp_and_mttcg() {
        let o = parse(
            "run",
            &strings(&["--smp", "2", "--mttcg"]),
            RUN,
            Profile::Release,
        )
        .unwrap();
        assert_eq!((o.smp, o.accel), (2, Accel::TcgMulti));
        assert!(parse("run", &strings(&["--smp=0"]), RUN, Profile::Release).is_err());
    }

    #[test]
    fn inline_values_and_zero_timeout() {
        let a = strings(&["--cmdline=selftest=panic", "--timeout=0"]);
        let o = parse("run", &a, RUN, Profile::Release).unwrap();
        assert_eq!(o.cmdline, "selftest=panic");
        assert_eq!(o.timeout, None);
    }

    #[test]
    fn rejects_unknown_and_misplaced() {
        assert!(parse("run", &strings(&["--frobnicate"]), RUN, Profile::Release).is_err());
        assert!(parse("run", &strings(&["--timeout"]), RUN, Profile::Release).is_err());
        assert!(parse(
            "run",
            &strings(&["--timeout", "soon"]),
            RUN,
            Profile::Release
        )
        .is_err());
        assert!(parse(
            "build",
            &strings(&["g.elf"]),
            &["--release"],
            Profile::Release
        )
        .is_err());
    }

    #[test]
    fn test_passes_the_rest_on() {
        let o = parse(
            "test",
            &strings(&["--", "selftest", "--test-threads=1"]),
            &["--"],
            Profile::Release,
        )
        .unwrap();
        assert_eq!(o.rest, ["selftest", "--test-threads=1"]);
    }

    #[test]
    fn demo_guests_parse() {
        for s in DEMO_GUESTS {
            let g: GuestSpec = s.parse().unwrap();
            let name = g.path.to_string_lossy();
            assert!(
                name.starts_with("guest-") || name.starts_with("guest32-"),
                "{s} names a guest crate"
            );
        }
    }
}
