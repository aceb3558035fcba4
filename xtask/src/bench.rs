//! `cargo xtask bench`: boot the hypervisor with `bench` and guest-bench,
//! under plain TCG and under icount, and, with `--vs-xen`, the same guest
//! as dom0 of Debian's Xen 4.17 in the same QEMU; print one table and
//! write target/bench/bench.{json,txt}. Reading the runs, the table and the
//! JSON are `ringvisor_tests::bench`.

use ringvisor_tests::bench::{self as b, Report, Runs};
use ringvisor_tests::build::{self, Profile};
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{self, Accel, Line, Qemu};
use ringvisor_tests::{bail, cmd, debian, tools, Error, Result};
use std::cell::Cell;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const HELP: &str = "\
cargo xtask bench [--tcg|--icount] [--runs K] [--args \"GUEST-ARGS\"]
                  [--vs-xen] [--timeout S] [--echo]

Builds the hypervisor and guest-bench (release), then boots the hypervisor
with `bench` on its command line and guest-bench as domain 0: first the
hypervisor times the bare hardware round trips on a ring-3 stub of its own
(syscall/sysretq, int/iretq, #UD/iretq, #PF/iretq; 100000 iterations
each), then the guest times each PV path (null hypercall, console_io,
bounces, user syscall, set_trap_table, mmu_update, update_va_mapping,
event send -> upcall) and, against the same image booted as domain 1
(`role=echo peer=0`), the interdomain event ping-pong (send + poll until
the answer is pending) and the domain switch (a sched_op(yield) round
trip d0 -> d1 -> d0: two switches). After each such boot, a boot of its
own with guest32-bench (the 32-bit PAE guest, kernel in ring 1) as domain
0 times the 32-bit rows: null hypercall (int $0x82), int3 and #PF bounces
from ring 1, set_trap_table of 32 entries (no Xen column: Debian's Xen has
no 32-bit PV). After each TCG boot, a boot with `-smp 4` and
multi-threaded TCG, guest-bench alone as a domain of 4 vCPUs (`mode=smp`),
times the SMP rows: N hypercalls on 1 vCPU and on 4 at once (the scaling
ratio), update_va_mapping flushing 1 page locally and on the 3 other
CPUs (a shootdown), an event sent on one CPU to a vCPU spinning on
another (until its upcall); TCG ticks only (icount runs one virtual CPU
at a time). Two clocks: plain TCG (rdtsc ticks
of the host, noisy: K boots, each figure the median over them) and QEMU
`-icount shift=0,sleep=off`, where a tick is one guest instruction (one
boot: it is deterministic).

Prints one table (each path: TCG ticks median [p10..p90], its ratio to
the bare syscall round trip and to its matching bare round trip, the
icount instruction count and the same ratios) and the start-up times, and
writes the numbers to target/bench/bench.json and the table to
target/bench/bench.txt. Exits non-zero if a run fails or misses a line.
docs/benchmarks.md says how to read it.

  --tcg            only the plain TCG runs
  --icount         only the icount run
  --runs K         TCG boots (default 3)
  --args \"ARGS\"    guest-bench's command line: n=N iterations per path
                   (default and most 20000), rounds=R (default 10),
                   console=N (console_io iterations, default 500),
                   calls=N (the -smp 4 boot's hypercalls per vCPU
                   per round, default 50000; its rows keep at most
                   4096 samples, the 3-CPU shootdown 500)
  --vs-xen         also boot guest-bench as dom0 of real Xen (alone: the
                   two-domain rows read '-' for Xen) (Debian's
                   xen-hypervisor-4.17-amd64, fetched once with
                   `apt-get download` into target/xen/ and unpacked there)
                   in the same QEMU, once per ringvisor boot of each
                   clock, stopping QEMU at the guest's RESULT line (Xen
                   halts instead of exiting); adds Xen's median and
                   ringvisor/Xen per path to the table and the JSON
  --timeout S      bound on each boot in seconds (default 300)
  --echo           stream each boot's console (long: console_io prints)
";

/// `cargo xtask bench` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub tcg: bool,
    pub icount: bool,
    /// TCG boots.
    pub runs: usize,
    /// guest-bench's command line.
    pub args: String,
    pub vs_xen: bool,
    pub timeout: Duration,
    pub echo: bool,
    pub help: bool,
}

pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        tcg: true,
        icount: true,
        runs: 3,
        args: String::new(),
        vs_xen: false,
        timeout: Duration::from_secs(300),
        echo: false,
        help: false,
    };
    let (mut only_tcg, mut only_icount) = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value"),
            }
        };
        match flag {
            "-h" | "--help" => o.help = true,
            "--tcg" => only_tcg = true,
            "--icount" => only_icount = true,
            "--echo" => o.echo = true,
            "--vs-xen" => o.vs_xen = true,
            "--args" => o.args = value("--args")?,
            "--runs" => {
                let v = value("--runs")?;
                o.runs = match v.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => bail!("--runs takes a count of at least 1, not {v:?}"),
                };
            }
            "--timeout" => {
                let v = value("--timeout")?;
                o.timeout = match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                    _ => bail!("--timeout takes seconds, not {v:?}"),
                };
            }
            _ => bail!("`cargo xtask bench` has no option {arg} (see --help)"),
        }
    }
    if only_tcg || only_icount {
        o.tcg = only_tcg;
        o.icount = only_icount;
    }
    Ok(o)
}

pub fn command(args: &[String]) -> Result<ExitCode> {
    let o = parse(args)?;
    if o.help {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    bench(&o)
}

/// QEMU's `-icount` arguments for the deterministic clock.
fn icount_args() -> Vec<String> {
    vec!["-icount".into(), "shift=0,sleep=off".into()]
}

/// Boots hypervisor + guest-bench, then hypervisor + guest32-bench (TCG
/// `runs` times, icount once; with
/// --vs-xen each followed by the same boot on Xen), prints the table,
/// writes target/bench/bench.{json,txt}.
fn bench(o: &Opts) -> Result<ExitCode> {
    tools::ensure(tools::QEMU)?;
    // Xen first: a missing package should fail before minutes of runs.
    let xen = if o.vs_xen { Some(xen_elf()?) } else { None };
    let elf = build::build_hypervisor(Profile::Release)?;
    // Only the bench guests: the others are not needed here. Both targets
    // first (a fresh machine may have neither, as for `cargo xtask test`).
    ringvisor_tests::tools::ensure_targets(ringvisor_tests::tools::RUST_TARGETS)?;
    let mut c = build::cargo();
    c.current_dir(build::workspace_root()).args([
        "build",
        "--release",
        "--target",
        build::TARGET,
        "-p",
        "guest-bench",
    ]);
    cmd::run(&mut c)?;
    let mut c = build::cargo();
    c.current_dir(build::workspace_root()).args([
        "build",
        "--release",
        "--target",
        build::TARGET32,
        "-p",
        "guest32-bench",
    ]);
    cmd::run(&mut c)?;
    let guest_elf = build::guest_path("guest-bench");
    // The 32-bit paths: guest32-bench alone, in a boot of its own after
    // each 64-bit one (the 64-bit figures stay as they were).
    // 32 MiB each, as the figures in docs/benchmarks.md were taken (without
    // rv.mem the initial domain would take nearly all of QEMU's memory).
    let guest32 = GuestSpec::new(build::guest_path("guest32-bench"))
        .opt("mem", "32M")
        .args(o.args.trim());
    // ringvisor: guest-bench as domain 0 told its peer, and the same image
    // as domain 1 answering it (the two-domain cases). Xen boots dom0
    // alone, without `peer=`: those cases print "not measured" there.
    let guest = GuestSpec::new(&guest_elf)
        .opt("mem", "32M")
        .args(format!("{} peer=1", o.args).trim_start());
    let echo = GuestSpec::new(&guest_elf).args("role=echo peer=0");
    // The SMP rows: the same image alone, 4 vCPUs, `mode=smp`; n and
    // rounds from --args, 2000 samples per row at most.
    let smp_guest = GuestSpec::new(&guest_elf)
        .opt("mem", "32M")
        .opt("vcpus", "4")
        .args(format!("{} mode=smp", o.args).trim_start());
    let failed = Cell::new(false);
    let fail = |label: &str, problem: String, transcript: String| {
        failed.set(true);
        eprintln!("bench: {label} failed:\n{problem}\n--- console ---\n{transcript}");
    };
    let boot = |label: String, icount: bool| -> Result<Report> {
        let mut q = Qemu::kernel(&elf)
            .cmdline("bench")
            .guest(guest.clone())
            .guest(echo.clone());
        if icount {
            q.extra_args = icount_args();
        }
        q.timeout = Some(o.timeout);
        q.echo = o.echo;
        let out = q.run()?;
        let r = Report::from_run(&out);
        eprintln!("bench: {label}: {}", out.summary());
        let problems = run_problems(&out, r.check());
        if let Some(p) = problems {
            fail(&label, p, out.transcript());
        }
        let mut r = r;
        let mut q = Qemu::kernel(&elf).cmdline("bench").guest(guest32.clone());
        if icount {
            q.extra_args = icount_args();
        }
        q.timeout = Some(o.timeout);
        q.echo = o.echo;
        let out = q.run()?;
        let r32 = Report::from_run(&out);
        eprintln!("bench: {label} (32-bit guest): {}", out.summary());
        let problems = run_problems(&out, r32.check32());
        if let Some(p) = problems {
            fail(&format!("{label} (32-bit guest)"), p, out.transcript());
        }
        r.add_32(&r32);
        if icount {
            // icount runs one virtual CPU at a time: no SMP rows there.
            return Ok(r);
        }
        let mut q = Qemu::kernel(&elf)
            .cmdline("bench")
            .smp(4)
            .accel(Accel::TcgMulti)
            .guest(smp_guest.clone());
        q.timeout = Some(o.timeout);
        q.echo = o.echo;
        let out = q.run()?;
        let rs = Report::from_run(&out);
        eprintln!("bench: {label} (-smp 4, 4 vCPUs): {}", out.summary());
        let problems = run_problems(&out, rs.check_smp());
        if let Some(p) = problems {
            fail(&format!("{label} (-smp 4)"), p, out.transcript());
        }
        r.add_smp(&rs);
        Ok(r)
    };
    let xen_boot = |label: String, icount: bool| -> Result<Report> {
        let xen = xen.as_deref().expect("only with --vs-xen");
        let run = boot_xen(xen, &guest_elf, &o.args, icount, o.timeout, o.echo)?;
        let r = Report::parse(run.lines.iter().map(|l| (l.text.as_str(), Some(l.at))));
        eprintln!(
            "bench: {label}: {} (ran {})",
            run.end,
            qemu::secs(run.elapsed)
        );
        let problems = match (&run.end, r.check_guest()) {
            (XenEnd::Result, Ok(())) => None,
            (XenEnd::Result, Err(e)) => Some(e),
            (end, c) => Some(format!("{end}\n{}", c.err().unwrap_or_default())),
        };
        if let Some(p) = problems {
            let mut t: String = run.lines.iter().map(|l| format!("{}\n", l.text)).collect();
            if !run.stderr.trim().is_empty() {
                t.push_str(&format!("--- QEMU stderr ---\n{}", run.stderr));
            }
            fail(&label, p, t);
        }
        Ok(r)
    };
    let (mut tcg_runs, mut xen_tcg_runs) = (Vec::new(), Vec::new());
    if o.tcg {
        // Interleaved, so that host noise falls on both alike.
        for i in 1..=o.runs {
            tcg_runs.push(boot(format!("TCG run {i}/{}", o.runs), false)?);
            if xen.is_some() {
                xen_tcg_runs.push(xen_boot(format!("Xen TCG run {i}/{}", o.runs), false)?);
            }
        }
    }
    let (mut icount, mut xen_icount) = (None, None);
    if o.icount {
        icount = Some(boot("icount run".into(), true)?);
        if xen.is_some() {
            xen_icount = Some(xen_boot("Xen icount run".into(), true)?);
        }
    }
    let tcg = (!tcg_runs.is_empty()).then(|| Report::combine(&tcg_runs));
    let xen_tcg = (!xen_tcg_runs.is_empty()).then(|| Report::combine(&xen_tcg_runs));
    let runs = Runs {
        tcg: tcg.as_ref(),
        icount: icount.as_ref(),
        xen_tcg: xen_tcg.as_ref(),
        xen_icount: xen_icount.as_ref(),
    };
    let table = runs.table();
    println!("{table}");
    let dir = build::target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("bench.json"), runs.json())?;
    fs::write(dir.join("bench.txt"), &table)?;
    eprintln!(
        "bench: wrote {} and bench.txt",
        dir.join("bench.json").display()
    );
    if failed.get() {
        eprintln!("xtask: bench: a run failed (see above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Xen's command line: the serial console, guest-bench as a 64 MiB dom0
/// with one vCPU, and every log line (dom0's console_io included).
const XEN_CMDLINE: &str =
    "console=com1 com1=115200,8n1 dom0_mem=64M dom0_max_vcpus=1 loglvl=all guest_loglvl=all";

/// target/xen/xen.elf (see `ringvisor_tests::debian::xen_elf`).
fn xen_elf() -> Result<PathBuf> {
    debian::xen_elf().map_err(|e| Error::new(format!("--vs-xen: {e}")))
}

/// How a Xen boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum XenEnd {
    /// The guest's `RESULT:` line appeared; QEMU was stopped.
    Result,
    /// Xen said the run is over without one (the line); QEMU was stopped.
    Xen(String),
    /// QEMU exited by itself.
    Exited(String),
    Timeout(Duration),
}

impl std::fmt::Display for XenEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XenEnd::Result => write!(f, "guest RESULT line seen, QEMU stopped"),
            XenEnd::Xen(l) => write!(f, "Xen ended the run before the guest's RESULT line: {l}"),
            XenEnd::Exited(s) => write!(f, "QEMU exited before the guest's RESULT line ({s})"),
            XenEnd::Timeout(t) => {
                write!(f, "TIMEOUT: no guest RESULT line within {}", qemu::secs(*t))
            }
        }
    }
}

/// Xen's lines that end a run with no RESULT to wait for.
const XEN_ENDS: &[&str] = &[
    "(XEN) Hardware Dom0 crashed",
    "(XEN) Hardware Dom0 halted",
    "(XEN) Hardware Dom0 shutdown",
    "(XEN) Panic on CPU",
    "(XEN) Reboot in five seconds",
];

struct XenRun {
    end: XenEnd,
    lines: Vec<Line>,
    stderr: String,
    elapsed: Duration,
}

/// One boot of Xen with guest-bench as dom0, in the same QEMU as the
/// ringvisor runs (`qemu::Qemu`'s arguments: TCG, `-cpu max,-smap`, the
/// same memory and serial setup, plus `-icount` for that clock). Xen halts
/// rather than exiting QEMU, so QEMU is killed as soon as the guest's
/// `RESULT:` line (or a line of Xen's ending the run) is in, or at the
/// timeout.
fn boot_xen(
    xen: &Path,
    guest: &Path,
    args: &str,
    icount: bool,
    timeout: Duration,
    echo: bool,
) -> Result<XenRun> {
    let mut q = Qemu::kernel(xen).cmdline(XEN_CMDLINE);
    // The module string as Xen reads it, `PATH ARGS` (Xen drops the path;
    // ringvisor's `-- ` separator is not wanted here).
    let module = format!("{} {args}", guest.display());
    q.extra_args = vec!["-initrd".into(), module.trim_end().replace(',', ",,")];
    if icount {
        q.extra_args.extend(icount_args());
    }
    let mut c = q.command()?;
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd::announce(&c);
    let start = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| Error::new(format!("cannot start qemu-system-x86_64: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel::<Line>();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut partial = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let at = start.elapsed();
            for &byte in &buf[..n] {
                if byte == b'\n' {
                    if tx
                        .send(Line {
                            at,
                            text: qemu::clean(&partial),
                            cpu: None,
                        })
                        .is_err()
                    {
                        return;
                    }
                    partial.clear();
                } else {
                    partial.push(byte);
                }
            }
        }
        if !partial.is_empty() {
            let _ = tx.send(Line {
                at: start.elapsed(),
                text: qemu::clean(&partial),
                cpu: None,
            });
        }
    });
    let errors = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut lines = Vec::new();
    let mut out = std::io::stdout();
    let end = loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break XenEnd::Timeout(timeout);
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                if echo {
                    let _ = writeln!(out, "{}", line.text);
                }
                let result = b::guest_part(&line.text).is_some_and(|g| g.starts_with("RESULT: "));
                let xen_end = XEN_ENDS
                    .iter()
                    .any(|e| line.text.starts_with(e))
                    .then(|| line.text.clone());
                lines.push(line);
                if result {
                    break XenEnd::Result;
                }
                if let Some(l) = xen_end {
                    break XenEnd::Xen(l);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let st = child.wait()?;
                break XenEnd::Exited(st.to_string());
            }
        }
    };
    let elapsed = start.elapsed();
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    let stderr = errors.join().unwrap_or_default();
    Ok(XenRun {
        end,
        lines,
        stderr,
        elapsed,
    })
}

/// What is wrong with a ringvisor bench boot: its verdict (when not
/// SUCCESS) and what the report's check found, or `None`.
fn run_problems(out: &qemu::RunOutput, check: Result<(), String>) -> Option<String> {
    match (out.verdict.is_success(), check) {
        (true, Ok(())) => None,
        (ok, c) => Some(format!(
            "{}{}",
            if ok {
                String::new()
            } else {
                format!("{}\n", out.summary())
            },
            c.err().unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = parse(&[]).unwrap();
        assert!(o.tcg && o.icount && !o.echo && !o.help && !o.vs_xen);
        assert_eq!((o.runs, o.args.as_str()), (3, ""));
        let o = parse(&strings(&[
            "--icount",
            "--args",
            "n=100 rounds=2",
            "--timeout=9",
        ]))
        .unwrap();
        assert!(!o.tcg && o.icount);
        assert_eq!(o.args, "n=100 rounds=2");
        assert_eq!(o.timeout, Duration::from_secs(9));
        let o = parse(&strings(&["--tcg", "--runs", "5", "--echo", "--vs-xen"])).unwrap();
        assert!(o.tcg && !o.icount && o.echo && o.vs_xen);
        assert_eq!(o.runs, 5);
        assert!(parse(&strings(&["--runs", "0"])).is_err());
        assert!(parse(&strings(&["--timeout", "-1"])).is_err());
        assert!(parse(&strings(&["g.elf"])).is_err());
        assert!(parse(&strings(&["--args"])).is_err());
    }
}
