//! `cargo xtask linux`: Debian's stock Linux kernel with a busybox
//! initramfs on ringvisor (as the initial domain or as a domU), timed, and
//! with `--vs-xen` the same files on Debian's Xen 4.17 in the same QEMU.
//! The plumbing is `ringvisor_tests::linux`.

use ringvisor_tests::build::{self, Profile};
use ringvisor_tests::linux::{self as lx, Init, Role, Times};
use ringvisor_tests::qemu::{secs, RunOutput, Verdict};
use ringvisor_tests::{bail, cmd, debian, tools, Error, Result};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "\
cargo xtask linux [--domU] [--shell] [--trace] [--vs-xen] [--iso] [--runs K]
                  [--timestamps] [--timeout S] [--release|--debug] [--quiet]

Boots Debian's stock Linux kernel on ringvisor in QEMU (TCG, -m 1G) and
times it. The files are fetched the way a user would, once, into
target/linux/: `apt-cache depends linux-image-amd64` names today's kernel
package (linux-image-6.1.0-N-amd64), `apt-get download` fetches it and
busybox-static, `dpkg-deb` unpacks the bzImage and the static busybox.
An initramfs (uncompressed newc cpio, target/linux/initrd-*.cpio) is
written around busybox; its /init prints RINGVISOR-LINUX-INIT, then
powers off (`poweroff -f`). QEMU gets

  -kernel target/ringvisor.elf -initrd \"vmlinuz rv.mem=256M -- console=hvc0
  earlyprintk=xen,initrd.cpio --\"

so the kernel is domain 0 and the cpio its initrd. The console streams
as it comes; at the end xtask prints the time from QEMU's start to the
kernel's first line (`Linux version`) and to the marker, with QEMU's CPU
time at each (its threads' time on a CPU, from /proc: a busy host
stretches it far less than the wall clock), Linux's own clock at /init
(the /proc/uptime the initramfs prints: the kernel's part alone), and,
when the run fails, the last console lines.

  --domU         Linux as domain 1, after guest-hello as domain 0
                 (rv.mem=32M), which ends within a second
  --shell        /init runs a busybox shell on the console (hvc0) instead
                 of powering off; `exit` (or `poweroff -f`) ends it. Your
                 keyboard goes to the serial line: input reaches domain 0
                 first, and the next live domain once the one that has it
                 ends; three Ctrl-A move it on (to the next domain, then
                 the hypervisor's debug keys). Default timeout 3600 s.
  --trace        hypervisor trace=hypercall (slow: one line per call), then
                 the Linux domain's failed hypercalls counted by hypercall,
                 sub-operation and answer
  --vs-xen       also boot the same kernel and initrd as dom0 of Debian's
                 Xen 4.17 (xen-hypervisor-4.17-amd64, fetched once into
                 target/xen/, as `bench --vs-xen` does) in the same QEMU,
                 dom0_mem=256M, and print both times. Xen without a
                 toolstack has no domU: with --domU, Xen's figure is dom0's.
                 Not with --shell.
  --iso          boot ringvisor from a GRUB 2 ISO (multiboot2) instead,
                 target/linux/ringvisor-linux.iso, whose grub.cfg has a
                 Xen entry's module2 lines (plus ringvisor's options):
                 `module2 /boot/vmlinuz-... rv.mem=256M -- console=hvc0
                 earlyprintk=xen`, `module2 /boot/initrd-....cpio`
                 (GRUB reads the 10 MiB from the emulated CD: about a
                 second more)
  --runs K       boot K times (each followed by Xen's boot with --vs-xen)
                 and print the median times with each boot's (default 1;
                 TCG times are noisy on a busy host)
  --timestamps   after each boot, print every console line with its time
                 from QEMU's start and the gap since the line before, then
                 the ten longest gaps (where the boot waits or works)
  --timeout S    bound on each QEMU run in seconds (default 180; 3600 with
                 --shell; 0: none with --shell only)
  --release|--debug  hypervisor profile (default: release)
  --quiet        do not stream the console (times and failures only)

Exits 0 when every boot reached /init and ended with every domain powered
off (Xen: dom0 entered ACPI S5 or halted); otherwise 1.
";

#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub domu: bool,
    pub shell: bool,
    pub trace: bool,
    pub vs_xen: bool,
    pub timeout: Option<Duration>,
    pub profile: Profile,
    pub quiet: bool,
    pub iso: bool,
    pub timestamps: bool,
    /// Boots of each hypervisor.
    pub runs: usize,
    pub help: bool,
}

pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        domu: false,
        shell: false,
        trace: false,
        vs_xen: false,
        timeout: None,
        profile: Profile::Release,
        quiet: false,
        iso: false,
        timestamps: false,
        runs: 1,
        help: false,
    };
    let mut timeout: Option<f64> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => o.help = true,
            "--domU" | "--domu" => o.domu = true,
            "--shell" => o.shell = true,
            "--trace" => o.trace = true,
            "--vs-xen" => o.vs_xen = true,
            "--quiet" => o.quiet = true,
            "--iso" => o.iso = true,
            "--timestamps" => o.timestamps = true,
            "--release" => o.profile = Profile::Release,
            "--debug" => o.profile = Profile::Debug,
            "--runs" => {
                let v = match inline.or_else(|| it.next().cloned()) {
                    Some(v) => v,
                    None => bail!("--runs needs a value"),
                };
                o.runs = match v.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => bail!("--runs takes a count of at least 1, not {v:?}"),
                };
            }
            "--timeout" => {
                let v = match inline.or_else(|| it.next().cloned()) {
                    Some(v) => v,
                    None => bail!("--timeout needs a value"),
                };
                timeout = match v.parse::<f64>() {
                    Ok(s) if s >= 0.0 && s.is_finite() => Some(s),
                    _ => bail!("--timeout takes seconds, not {v:?}"),
                };
            }
            _ => bail!("`cargo xtask linux` has no option {arg} (see --help)"),
        }
    }
    if o.shell && o.vs_xen {
        bail!("--vs-xen times the boot to /init and power-off: not with --shell");
    }
    if o.shell && o.runs > 1 {
        bail!("--runs is for timing: not with --shell");
    }
    o.timeout = match timeout {
        Some(0.0) if !o.shell => bail!("--timeout 0 (no bound) only with --shell"),
        Some(0.0) => None,
        Some(s) => Some(Duration::from_secs_f64(s)),
        None if o.shell => Some(Duration::from_secs(3600)),
        None => Some(Duration::from_secs(180)),
    };
    Ok(o)
}

pub fn command(args: &[String]) -> Result<ExitCode> {
    let o = parse(args)?;
    if o.help {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    linux(&o)
}

fn linux(o: &Opts) -> Result<ExitCode> {
    tools::ensure(tools::QEMU)?;
    eprintln!(
        "linux: fetching Debian's kernel and busybox-static (cached in {})",
        lx::dir().display()
    );
    let files = lx::fetch()?;
    eprintln!(
        "linux: {} ({}), busybox {}",
        files.package,
        files.kernel.display(),
        files.busybox.display()
    );
    // Xen before the long runs: a missing package fails early.
    let xen = if o.vs_xen {
        Some(debian::xen_elf().map_err(|e| Error::new(format!("--vs-xen: {e}")))?)
    } else {
        None
    };
    let init = if o.shell { Init::Shell } else { Init::PowerOff };
    let initrd = lx::initramfs(&files.busybox, init)?;
    eprintln!(
        "linux: initramfs {} (/init: {})",
        initrd.display(),
        if o.shell {
            "shell"
        } else {
            "marker, poweroff -f"
        }
    );
    let elf = build::build_hypervisor(o.profile)?;
    let role = if o.domu { Role::DomU } else { Role::Initial };
    let first = if o.domu {
        let mut c = build::cargo();
        c.current_dir(build::workspace_root()).args([
            "build",
            "--release",
            "--target",
            build::TARGET,
            "-p",
            lx::FIRST_GUEST,
        ]);
        cmd::run(&mut c)?;
        Some(build::guest_path(lx::FIRST_GUEST))
    } else {
        None
    };

    let mut q = if o.iso {
        eprintln!("linux: writing a GRUB ISO with the hypervisor, the kernel and its initrd");
        lx::ringvisor_iso(&elf, &files, &initrd, role, first.as_deref(), o.trace)?
    } else {
        lx::ringvisor(&elf, &files, &initrd, role, first.as_deref(), o.trace)
    };
    q.timeout = o.timeout;
    q.echo = !o.quiet;
    q.keyboard = o.shell && std::io::stdin().is_terminal();
    if o.shell && !q.keyboard {
        eprintln!("note: stdin is not a terminal: nothing is typed into the shell");
    }
    let dom = role.domid();
    eprintln!(
        "linux: booting Linux as d{dom}{} on ringvisor (timeout {})",
        if o.domu {
            ", after guest-hello as d0"
        } else {
            ", the initial domain"
        },
        o.timeout.map_or("none".into(), secs)
    );
    if o.shell && o.domu {
        eprintln!("linux: your input goes to d0 while it runs, then on to d1 when d0 has ended (or type Ctrl-A three times)");
    }
    let mut ok = true;
    let load_before = load_average();
    let (mut rv_times, mut xen_times) = (Vec::new(), Vec::new());
    for run in 1..=o.runs {
        let label = |who: &str| {
            if o.runs > 1 {
                format!("{who} run {run}/{}", o.runs)
            } else {
                who.to_string()
            }
        };
        let out = q.run()?;
        let t = Times::of(&out.lines);
        ok &= judge(&label("ringvisor"), &out, &t, !o.shell);
        rv_times.push(t);
        if o.timestamps {
            print_timestamps(&label("ringvisor"), &out);
        }
        if o.trace {
            let failed = lx::failed_hypercalls(&out.lines, dom);
            if failed.is_empty() {
                eprintln!("linux: d{dom} had no failed hypercall");
            } else {
                eprintln!(
                    "linux: d{dom}'s failed hypercalls (hypercall [sub-op]: answer x count):"
                );
                for l in failed {
                    eprintln!("  {l}");
                }
            }
        }
        // Xen's boot right after ringvisor's: host noise hits both alike.
        if let Some(xen) = &xen {
            if o.domu && run == 1 {
                eprintln!("linux: Xen has no domU without a toolstack: Linux boots there as dom0");
            }
            let mut q = lx::xen(xen, &files, &initrd);
            q.timeout = o.timeout;
            q.echo = !o.quiet;
            eprintln!(
                "linux: booting the same files as dom0 of Xen 4.17 (timeout {})",
                o.timeout.map_or("none".into(), secs)
            );
            let out = q.run()?;
            let t = Times::of(&out.lines);
            ok &= judge(&label("Xen"), &out, &t, true);
            if o.timestamps {
                print_timestamps(&label("Xen"), &out);
            }
            xen_times.push(t);
        }
    }

    eprintln!();
    eprintln!(
        "linux: {} with busybox /init, QEMU TCG -m {}, {} MiB domain{}:",
        files.package,
        lx::QEMU_MEM,
        lx::LINUX_MEM.trim_end_matches('M'),
        if o.runs > 1 {
            format!(", median of {} boots [each boot]", o.runs)
        } else {
            String::new()
        }
    );
    if let (Some(a), Some(b)) = (load_before, load_average()) {
        eprintln!("  host load average (1 min): {a} before the boots, {b} after");
    }
    let rv = summarize(&format!("ringvisor (Linux as d{dom})"), &rv_times);
    if !xen_times.is_empty() {
        let xen = summarize("Xen 4.17  (Linux as dom0)", &xen_times);
        if let (Some(a), Some(b)) = (rv.init, xen.init) {
            eprintln!(
                "  /init: ringvisor {:.2}x Xen's time",
                a.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The host's 1-minute load average (`/proc/loadavg`), to print beside
/// wall-clock figures: TCG times grow with it.
fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next().map(str::to_string)
}

/// Prints one line of times (medians, each boot's in brackets when there
/// are several) and returns the medians.
fn summarize(who: &str, runs: &[Times]) -> Times {
    let med = |f: fn(&Times) -> Option<Duration>| {
        let mut v: Vec<Duration> = runs.iter().filter_map(f).collect();
        if v.len() < runs.len() || v.is_empty() {
            return None;
        }
        v.sort();
        Some(v[v.len() / 2])
    };
    let m = Times {
        kernel: med(|t| t.kernel),
        init: med(|t| t.init),
        kernel_cpu: med(|t| t.kernel_cpu),
        init_cpu: med(|t| t.init_cpu),
        uptime: med(|t| t.uptime),
    };
    let each = if runs.len() > 1 {
        let all = |f: fn(&Times) -> Option<Duration>| {
            runs.iter()
                .map(|t| f(t).map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64())))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            " [kernel {}; /init {}; CPU {}; {}; Linux's clock {}]",
            all(|t| t.kernel),
            all(|t| t.init),
            all(|t| t.kernel_cpu),
            all(|t| t.init_cpu),
            all(|t| t.uptime)
        )
    } else {
        String::new()
    };
    eprintln!("  {who}: {}{each}", m.describe());
    m
}

/// Every console line with its time from QEMU's start and the gap since
/// the line before, then the longest gaps: the line each gap ends on is
/// the first one printed after the wait or the work.
fn print_timestamps(who: &str, out: &RunOutput) {
    let gaps = lx::gaps(&out.lines);
    eprintln!("linux: {who}: the console with times [from start +gap]:");
    for (l, gap) in out.lines.iter().zip(&gaps) {
        eprintln!(
            "[{:7.3} +{:6.3}] {}",
            l.at.as_secs_f64(),
            gap.as_secs_f64(),
            l.text
        );
    }
    let mut by_gap: Vec<usize> = (0..gaps.len()).collect();
    by_gap.sort_by(|&a, &b| gaps[b].cmp(&gaps[a]));
    eprintln!("linux: {who}: the longest gaps (before the line shown):");
    for &i in by_gap.iter().take(10) {
        eprintln!(
            "  +{:6.3} s before [{:7.3}] {}",
            gaps[i].as_secs_f64(),
            out.lines[i].at.as_secs_f64(),
            out.lines[i].text
        );
    }
}

/// Prints the run's end; `false` (and the last console lines) unless it
/// reached the marker and ended cleanly (ringvisor: SUCCESS with every
/// frame back; Xen: dom0's ACPI power-off or halt). Without `want_marker` (the
/// shell) a clean end is enough.
fn judge(who: &str, out: &RunOutput, t: &Times, want_marker: bool) -> bool {
    eprintln!("linux: {who}: {}", out.summary());
    let mut problems = Vec::new();
    if want_marker && t.init.is_none() {
        problems.push(format!("no {} line: /init was not reached", lx::MARKER));
    }
    match out.verdict {
        Verdict::Success => {
            if let Some(l) = out
                .rv_lines()
                .find(|l| l.contains("frames free at the end"))
            {
                if l.contains("not given back") {
                    problems.push(format!("not every frame came back: {l}"));
                }
            }
        }
        // Xen powers off through ACPI (QEMU exits 0) or halts (stopped).
        Verdict::Stopped | Verdict::TripleFault if lx::xen_powered_off(out) => {}
        _ => problems.push(format!("the run did not end cleanly: {}", out.summary())),
    }
    if problems.is_empty() {
        return true;
    }
    for p in &problems {
        eprintln!("linux: {who}: {p}");
    }
    eprintln!(
        "linux: {who}: the last console lines:\n{}",
        lx::last_lines(out, 25)
    );
    false
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
        assert!(!o.domu && !o.shell && !o.trace && !o.vs_xen && !o.quiet);
        assert_eq!(o.timeout, Some(Duration::from_secs(180)));
        let o = parse(&strings(&[
            "--domU",
            "--trace",
            "--vs-xen",
            "--timeout=30",
            "--debug",
            "--iso",
            "--timestamps",
        ]))
        .unwrap();
        assert!(o.domu && o.trace && o.vs_xen && o.iso && o.timestamps);
        assert_eq!(
            (o.timeout, o.profile),
            (Some(Duration::from_secs(30)), Profile::Debug)
        );
        let o = parse(&strings(&["--shell"])).unwrap();
        assert_eq!(o.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(
            parse(&strings(&["--shell", "--timeout", "0"]))
                .unwrap()
                .timeout,
            None
        );
        assert!(parse(&strings(&["--timeout", "0"])).is_err());
        assert!(parse(&strings(&["--shell", "--vs-xen"])).is_err());
        assert!(parse(&strings(&["--frobnicate"])).is_err());
        assert_eq!(parse(&strings(&["--runs", "3"])).unwrap().runs, 3);
        assert!(parse(&strings(&["--runs", "0"])).is_err());
        assert!(parse(&strings(&["--shell", "--runs", "2"])).is_err());
        assert!(parse(&strings(&["vmlinuz"])).is_err());
    }
}
