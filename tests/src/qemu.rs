//! The QEMU runner: boot ringvisor, stream and timestamp its serial console,
//! bound the run with a timeout, and judge it by QEMU's exit status.
//!
//! The hypervisor ends a run by writing a byte `v` to the `isa-debug-exit`
//! port (0xf4); QEMU then exits with `(v << 1) | 1`:
//!
//! | v    | QEMU status | verdict                                              |
//! |------|-------------|------------------------------------------------------|
//! | 0x10 | 33          | [`Verdict::Success`]: every domain powered off        |
//! | 0x11 | 35          | [`Verdict::Failure`]: a domain crashed / boot error   |
//! | 0x12 | 37          | [`Verdict::Panic`]: hypervisor panic or fault         |
//! | —    | 0           | [`Verdict::TripleFault`]: reset under `-no-reboot`    |
//! | —    | killed      | [`Verdict::Timeout`]: no verdict in time              |
//!
//! A run that ends any other way is [`Verdict::Other`]; only `Success`
//! passes.

use crate::guest::{self, GuestSpec};
use crate::{bail, cmd, tools, Result};
use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the hypervisor prints first: `(RV) ringvisor <version> ...`.
pub const BANNER: &str = "(RV) ringvisor ";
/// The prefix of the hypervisor's own lines.
pub const RV: &str = "(RV) ";
/// The line the hypervisor prints right before it exits QEMU.
pub const EXIT_LINE: &str = "(RV) exit: ";

/// The default bound on one run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The QEMU accelerator. TCG is the default everywhere: on these machines
/// `/dev/kvm` is a software PV hypervisor under which ring-0 code is
/// emulated and much slower than TCG (see shared BOOT-NOTES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    /// TCG with one host thread per virtual CPU (`-accel tcg,thread=multi`):
    /// CPUs really run at the same time.
    TcgMulti,
    Kvm,
}

/// The machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default: SeaBIOS on the `pc` machine.
    Bios,
    /// OVMF (UEFI) on a `q35` machine: `OVMF_CODE.fd` read-only and a
    /// fresh copy of `OVMF_VARS.fd` as the two pflash drives.
    Uefi,
}

/// How QEMU boots the hypervisor.
#[derive(Debug, Clone)]
pub enum Boot {
    /// QEMU's multiboot1 loader: `-kernel ELF -append CMDLINE -initrd ...`.
    Kernel {
        elf: PathBuf,
        cmdline: String,
        guests: Vec<GuestSpec>,
    },
    /// A GRUB ISO (multiboot2): `-cdrom ISO`; command line and modules are
    /// in its grub.cfg.
    Iso(PathBuf),
}

/// One QEMU run, described.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub boot: Boot,
    pub accel: Accel,
    /// `-m`, e.g. `256M`.
    pub memory: String,
    /// `-smp`: virtual CPUs (1: the option is left out).
    pub cpus: u32,
    /// Kill QEMU after this long; `None`: no bound (interactive use only).
    pub timeout: Option<Duration>,
    /// Copy the serial console to our stdout (and QEMU's stderr to ours)
    /// as it arrives.
    pub echo: bool,
    /// More QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Typed on the serial line: each `(trigger, bytes)` once, as soon as
    /// a console line containing `trigger` has appeared.
    pub send_on: Vec<(String, Vec<u8>)>,
    /// Our stdin goes to the serial line (interactive runs: debug keys).
    pub keyboard: bool,
    /// Stop QEMU as soon as a console line contains one of these (for a
    /// hypervisor that halts instead of exiting, such as Xen): the run's
    /// verdict is then [`Verdict::Stopped`].
    pub stop_on: Vec<String>,
    /// BIOS (default) or UEFI firmware.
    pub firmware: Firmware,
    /// Give the machine QEMU's `isa-debug-exit` device (default): the
    /// hypervisor's verdict becomes QEMU's exit status. Without it the
    /// hypervisor ends the run as on hardware (`on_exit=`), and QEMU exits
    /// 0 on a power-off or, under `-no-reboot`, a reset.
    pub debug_exit: bool,
    /// Give the TCG CPU SMAP (off by default: see [`Qemu::args`]), for
    /// tests of the hypervisor's `stac`/`clac` paths whose guests do no
    /// ring-3 far return.
    pub smap: bool,
}

impl Qemu {
    /// Boot `elf` through `-kernel` with an empty command line, no modules.
    pub fn kernel(elf: impl Into<PathBuf>) -> Self {
        Self::with_boot(Boot::Kernel {
            elf: elf.into(),
            cmdline: String::new(),
            guests: Vec::new(),
        })
    }

    /// Boot a GRUB ISO through `-cdrom`.
    pub fn iso(iso: impl Into<PathBuf>) -> Self {
        Self::with_boot(Boot::Iso(iso.into()))
    }

    fn with_boot(boot: Boot) -> Self {
        Qemu {
            boot,
            accel: Accel::Tcg,
            memory: "256M".into(),
            cpus: 1,
            timeout: Some(DEFAULT_TIMEOUT),
            echo: false,
            extra_args: Vec::new(),
            send_on: Vec::new(),
            keyboard: false,
            stop_on: Vec::new(),
            firmware: Firmware::Bios,
            debug_exit: true,
            smap: false,
        }
    }

    /// SMAP on (see [`Qemu::smap`](struct.Qemu.html#structfield.smap)).
    pub fn with_smap(mut self) -> Self {
        self.smap = true;
        self
    }

    /// Type `bytes` on the serial line once a line containing `trigger`
    /// has been printed (for the hypervisor's debug keys).
    pub fn send_on(mut self, trigger: &str, bytes: &[u8]) -> Self {
        self.send_on.push((trigger.to_string(), bytes.to_vec()));
        self
    }

    /// Sets the hypervisor command line (only for `-kernel` boots).
    pub fn cmdline(mut self, s: &str) -> Self {
        if let Boot::Kernel { cmdline, .. } = &mut self.boot {
            *cmdline = s.to_string();
        }
        self
    }

    /// Adds a guest module (only for `-kernel` boots).
    pub fn guest(mut self, g: GuestSpec) -> Self {
        if let Boot::Kernel { guests, .. } = &mut self.boot {
            guests.push(g);
        }
        self
    }

    /// Give the machine `n` CPUs (`-smp n`).
    pub fn smp(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }

    pub fn accel(mut self, a: Accel) -> Self {
        self.accel = a;
        self
    }

    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }

    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Boot under OVMF (UEFI) instead of SeaBIOS.
    pub fn uefi(mut self) -> Self {
        self.firmware = Firmware::Uefi;
        self
    }

    /// Leave out the `isa-debug-exit` device (see [`Qemu::debug_exit`]).
    pub fn without_debug_exit(mut self) -> Self {
        self.debug_exit = false;
        self
    }

    /// QEMU's arguments.
    pub fn args(&self) -> Result<Vec<String>> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        // SMAP off unless asked for: this QEMU's TCG reads the stack of a
        // ring-3 `iretq`/`lretq` as a supervisor access (BOOT-NOTES).
        let cpu = if self.smap { "max" } else { "max,-smap" };
        match self.accel {
            Accel::Tcg => push(&["-accel", "tcg", "-cpu", cpu]),
            Accel::TcgMulti => push(&["-accel", "tcg,thread=multi", "-cpu", cpu]),
            // The host's CPU, less IA32_ARCH_CAPABILITIES: this machine's
            // kvm_pvm refuses that MSR and QEMU aborts on `host`/`max`.
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
        }
        if self.firmware == Firmware::Uefi {
            let vars = ovmf_vars_copy()?;
            push(&["-machine", "q35"]);
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    tools::OVMF_CODE
                ),
            ]);
            push(&[
                "-drive",
                &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
            ]);
        }
        push(&["-m", &self.memory]);
        if self.cpus > 1 {
            push(&["-smp", &self.cpus.to_string()]);
        }
        push(&["-serial", "stdio", "-display", "none", "-no-reboot"]);
        if self.debug_exit {
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        }
        match &self.boot {
            Boot::Kernel {
                elf,
                cmdline,
                guests,
            } => {
                push(&["-kernel", &elf.to_string_lossy()]);
                if !cmdline.is_empty() {
                    push(&["-append", cmdline]);
                }
                if !guests.is_empty() {
                    push(&["-initrd", &guest::qemu_initrd(guests)?]);
                }
            }
            Boot::Iso(iso) => push(&["-cdrom", &iso.to_string_lossy()]),
        }
        a.extend(self.extra_args.iter().cloned());
        Ok(a)
    }

    /// The QEMU command, ready to spawn.
    pub fn command(&self) -> Result<Command> {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(self.args()?);
        Ok(c)
    }

    /// Checks inputs exist, prints the command, runs QEMU to its end (or the
    /// timeout) and returns what happened. `Err` only when QEMU could not be
    /// run at all; every finished run, good or bad, is an `Ok(RunOutput)`.
    pub fn run(&self) -> Result<RunOutput> {
        tools::ensure(match self.firmware {
            Firmware::Bios => tools::QEMU,
            Firmware::Uefi => tools::QEMU_UEFI,
        })?;
        match &self.boot {
            Boot::Kernel { elf, guests, .. } => {
                if !elf.is_file() {
                    bail!("hypervisor ELF {} does not exist", elf.display());
                }
                guest::check_exist(guests)?;
            }
            Boot::Iso(iso) => {
                if !iso.is_file() {
                    bail!("ISO {} does not exist", iso.display());
                }
            }
        }
        let mut command = self.command()?;
        // The run's own copy of OVMF's variable store, removed afterwards.
        let vars_copy: Option<PathBuf> = command.get_args().find_map(|a| {
            a.to_str()?
                .strip_prefix("if=pflash,format=raw,unit=1,file=")
                .map(PathBuf::from)
        });
        command
            .stdin(if !self.send_on.is_empty() {
                Stdio::piped()
            } else if self.keyboard {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd::announce(&command);

        let start = Instant::now();
        let child = match command.spawn() {
            Ok(c) => c,
            Err(e) => bail!("cannot start qemu-system-x86_64: {e}"),
        };
        let pid = child.id();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().expect("piped");
        let stderr = child.0.stderr.take().expect("piped");
        let mut stdin = child.0.stdin.take();
        let mut to_send: Vec<(String, Vec<u8>)> = self.send_on.clone();

        let lines = Arc::new(Mutex::new(Vec::<Line>::new()));
        let echo = self.echo;
        let serial = {
            let lines = Arc::clone(&lines);
            thread::spawn(move || read_serial(stdout, start, pid, echo, &lines))
        };
        let errors = thread::spawn(move || read_stderr(stderr, echo));

        let mut timed_out = false;
        let mut stopped_at: Option<String> = None;
        let mut checked = 0;
        let status = loop {
            if let Some(st) = child.0.try_wait()? {
                break st;
            }
            if !self.stop_on.is_empty() {
                let seen = lines.lock().unwrap_or_else(|p| p.into_inner());
                stopped_at = seen[checked..]
                    .iter()
                    .find(|l| self.stop_on.iter().any(|s| l.text.contains(s.as_str())))
                    .map(|l| l.text.clone());
                checked = seen.len();
                drop(seen);
                if stopped_at.is_some() {
                    let _ = child.0.kill();
                    break child.0.wait()?;
                }
            }
            if !to_send.is_empty() {
                let seen = lines.lock().unwrap_or_else(|p| p.into_inner());
                to_send.retain(|(trigger, bytes)| {
                    if !seen.iter().any(|l| l.text.contains(trigger.as_str())) {
                        return true;
                    }
                    if let Some(input) = stdin.as_mut() {
                        let _ = input.write_all(bytes);
                        let _ = input.flush();
                    }
                    false
                });
            }
            if self.timeout.is_some_and(|t| start.elapsed() >= t) {
                timed_out = true;
                let _ = child.0.kill();
                break child.0.wait()?;
            }
            thread::sleep(Duration::from_millis(5));
        };
        let elapsed = start.elapsed();
        if let Some(p) = vars_copy {
            let _ = std::fs::remove_file(p);
        }
        let _ = serial.join();
        let stderr = errors.join().unwrap_or_default();
        let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));

        let first_line = lines
            .iter()
            .find(|l| !l.text.trim().is_empty())
            .map(|l| l.at);
        let banner = lines.iter().find(|l| l.text.contains(BANNER)).map(|l| l.at);
        let verdict = match stopped_at {
            Some(_) => Verdict::Stopped,
            None => Verdict::from_status(status.code(), timed_out),
        };
        let out = RunOutput {
            verdict,
            stopped_at,
            status: status.code(),
            signal: signal_of(&status),
            timeout: self.timeout,
            lines,
            stderr,
            elapsed,
            first_line,
            banner,
        };
        keep_transcript(&command, &out);
        Ok(out)
    }
}

/// Every run's console, kept in `target/qemu-runs/<test>.log` (the test
/// thread's name; runs of one test appended, the file started afresh by
/// its first run in this process), so a test that fails once under load
/// leaves its whole transcript behind even when the failure message was
/// cut short. Best effort: a run is never failed for its log.
fn keep_transcript(command: &Command, out: &RunOutput) {
    use std::collections::HashSet;
    static STARTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let name: String = thread::current()
        .name()
        .unwrap_or("main")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = crate::build::target_dir().join("qemu-runs");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let first = STARTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(name.clone());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!first)
        .truncate(first)
        .open(dir.join(format!("{name}.log")));
    if let Ok(mut f) = file {
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let _ = write!(
            f,
            "=== qemu-system-x86_64 {}\n=== {}\n{}",
            args.join(" "),
            out.summary(),
            out.transcript()
        );
    }
}

/// A fresh copy of OVMF's variable store for one run (UEFI writes its
/// boot entries there; runs in parallel each need their own).
fn ovmf_vars_copy() -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = crate::build::target_dir().join("ovmf");
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(format!(
        "vars-{}-{}.fd",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = std::fs::copy(tools::OVMF_VARS, &p) {
        bail!("cannot copy {} to {}: {e}", tools::OVMF_VARS, p.display());
    }
    Ok(p)
}

#[cfg(unix)]
fn signal_of(st: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    st.signal()
}

#[cfg(not(unix))]
fn signal_of(_: &ExitStatus) -> Option<i32> {
    None
}

/// Kills QEMU if the run is abandoned (a panic, an early return).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn read_serial(
    mut from: impl Read,
    start: Instant,
    pid: u32,
    echo: bool,
    lines: &Mutex<Vec<Line>>,
) {
    let mut buf = [0u8; 4096];
    let mut partial: Vec<u8> = Vec::new();
    let mut out = std::io::stdout();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = start.elapsed();
        let cpu = cpu_time(pid);
        if echo {
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = clean(&partial);
                partial.clear();
                lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Line { at, text, cpu });
            } else {
                partial.push(b);
            }
        }
    }
    if !partial.is_empty() {
        let text = clean(&partial);
        lines.lock().unwrap_or_else(|p| p.into_inner()).push(Line {
            at: start.elapsed(),
            text,
            cpu: None,
        });
    }
}

fn read_stderr(mut from: impl Read, echo: bool) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let mut err = std::io::stderr();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if echo {
            let _ = err.write_all(&buf[..n]);
        }
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// A serial line as text: ANSI escape sequences (GRUB draws with them),
/// carriage returns and other control characters removed.
pub fn clean(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    // ESC, intermediates in ' '..'/', one final byte.
                    while chars.peek().is_some_and(|c| (' '..='/').contains(c)) {
                        chars.next();
                    }
                    chars.next();
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One line of serial output and when it arrived (from QEMU's spawn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: Duration,
    pub text: String,
    /// QEMU's CPU time then, all its threads (Linux `/proc`; `None`
    /// elsewhere): under TCG a busy host stretches `at` far more than this.
    pub cpu: Option<Duration>,
}

/// CPU time process `pid` has run so far, summed over its threads
/// (`/proc/PID/task/*/schedstat`, nanoseconds on a CPU).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

impl Line {
    /// The hypervisor's part of the line, from `(RV) ` on, if it has one
    /// (GRUB's escapes may precede it on the same line).
    pub fn rv(&self) -> Option<&str> {
        self.text.find(RV).map(|i| &self.text[i..])
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// QEMU status 33: every domain powered off / nothing left to run.
    Success,
    /// QEMU status 35: a domain crashed, or a domain/boot error.
    Failure,
    /// QEMU status 37: hypervisor panic or fault (register dump printed).
    Panic,
    /// QEMU status 0 under `-no-reboot`: triple fault or reset, no verdict.
    TripleFault,
    /// Killed by the harness: no verdict before the timeout.
    Timeout,
    /// Stopped by the harness at a line it was told to stop at
    /// ([`Qemu::stop_on`]).
    Stopped,
    /// Any other end: QEMU's own error (status 1: bad arguments, unreadable
    /// file...), an unknown debug-exit value, or a signal (`None`).
    Other(Option<i32>),
}

impl Verdict {
    pub fn from_status(code: Option<i32>, timed_out: bool) -> Verdict {
        if timed_out {
            return Verdict::Timeout;
        }
        match code {
            Some(33) => Verdict::Success,
            Some(35) => Verdict::Failure,
            Some(37) => Verdict::Panic,
            Some(0) => Verdict::TripleFault,
            other => Verdict::Other(other),
        }
    }

    pub fn is_success(self) -> bool {
        self == Verdict::Success
    }

    /// What the verdict means, in a few words.
    pub fn meaning(self) -> String {
        match self {
            Verdict::Success => "every domain powered off / nothing left to run".into(),
            Verdict::Failure => "a domain crashed, or a domain/boot error".into(),
            Verdict::Panic => "hypervisor panic or fault".into(),
            Verdict::TripleFault => {
                "triple fault or reset without a verdict (QEMU exited 0 under -no-reboot)".into()
            }
            Verdict::Timeout => "no verdict before the timeout; QEMU killed".into(),
            Verdict::Stopped => "stopped by the harness at the line it waited for".into(),
            Verdict::Other(Some(1)) => {
                "QEMU exited with status 1 without a verdict (a QEMU error? see its stderr)".into()
            }
            Verdict::Other(Some(c)) => format!("QEMU exited with unexpected status {c}"),
            Verdict::Other(None) => "QEMU was killed by a signal".into(),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Success => "SUCCESS",
            Verdict::Failure => "FAILURE",
            Verdict::Panic => "PANIC",
            Verdict::TripleFault => "TRIPLE-FAULT",
            Verdict::Timeout => "TIMEOUT",
            Verdict::Stopped => "STOPPED",
            Verdict::Other(_) => "UNEXPECTED",
        })
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub verdict: Verdict,
    /// The line that stopped the run ([`Qemu::stop_on`]).
    pub stopped_at: Option<String>,
    /// QEMU's exit status (`None`: killed by a signal).
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub timeout: Option<Duration>,
    /// The serial console, line by line, cleaned (see [`clean`]).
    pub lines: Vec<Line>,
    /// QEMU's own stderr.
    pub stderr: String,
    /// QEMU spawn to QEMU exit.
    pub elapsed: Duration,
    /// QEMU spawn to the first non-empty serial line.
    pub first_line: Option<Duration>,
    /// QEMU spawn to the banner line (boot-to-banner).
    pub banner: Option<Duration>,
}

impl RunOutput {
    /// The hypervisor's lines, each from `(RV) ` on.
    pub fn rv_lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(Line::rv)
    }

    /// The first line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.text.contains(needle))
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.find(needle).is_some()
    }

    /// The banner line, from `(RV) ` on.
    pub fn banner_line(&self) -> Option<&str> {
        self.rv_lines().find(|l| l.starts_with(BANNER))
    }

    /// The hypervisor's `(RV) exit: ...` line.
    pub fn exit_line(&self) -> Option<&str> {
        self.rv_lines().find(|l| l.starts_with(EXIT_LINE))
    }

    /// One line: verdict, its meaning, status, times.
    pub fn summary(&self) -> String {
        let status = match (self.status, self.signal) {
            (Some(c), _) => format!("QEMU status {c}"),
            (None, Some(s)) => format!("QEMU killed by signal {s}"),
            (None, None) => "QEMU status unknown".into(),
        };
        let meaning = match (self.verdict, self.timeout) {
            (Verdict::Timeout, Some(t)) => {
                format!("no verdict within {} s; QEMU killed", t.as_secs_f64())
            }
            (v, _) => v.meaning(),
        };
        let banner = match self.banner {
            Some(t) => format!("boot-to-banner {}", secs(t)),
            None => "no banner".into(),
        };
        format!(
            "{}: {meaning} ({status}; ran {}; {banner})",
            self.verdict,
            secs(self.elapsed)
        )
    }

    /// The whole console with arrival times, for failure messages.
    pub fn transcript(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(&format!("[{:8.3}] {}\n", l.at.as_secs_f64(), l.text));
        }
        if !self.stderr.trim().is_empty() {
            s.push_str("--- QEMU stderr ---\n");
            s.push_str(&self.stderr);
            if !self.stderr.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }
}

/// `0.093 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_map_to_verdicts() {
        assert_eq!(Verdict::from_status(Some(33), false), Verdict::Success);
        assert_eq!(Verdict::from_status(Some(35), false), Verdict::Failure);
        assert_eq!(Verdict::from_status(Some(37), false), Verdict::Panic);
        assert_eq!(Verdict::from_status(Some(0), false), Verdict::TripleFault);
        assert_eq!(Verdict::from_status(None, true), Verdict::Timeout);
        assert_eq!(Verdict::from_status(Some(33), true), Verdict::Timeout);
        assert_eq!(
            Verdict::from_status(Some(1), false),
            Verdict::Other(Some(1))
        );
        assert_eq!(Verdict::from_status(None, false), Verdict::Other(None));
        assert!(Verdict::Success.is_success());
        assert!(!Verdict::TripleFault.is_success());
    }

    #[test]
    fn clean_strips_escapes_and_controls() {
        assert_eq!(
            clean(b"\x1b[2J\x1b[1;1H(RV) ringvisor 0.1\r"),
            "(RV) ringvisor 0.1"
        );
        assert_eq!(clean(b"a\x1b(Bb\tc\x07"), "ab\tc");
    }

    #[test]
    fn kernel_args_follow_the_contract() {
        let q = Qemu::kernel("target/ringvisor.elf")
            .cmdline("loglvl=debug")
            .guest("g.elf@mem=8M:a,b".parse().unwrap());
        let a = q.args().unwrap().join(" ");
        assert_eq!(
            a,
            "-accel tcg -cpu max,-smap -m 256M -serial stdio -display none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -kernel target/ringvisor.elf -append loglvl=debug -initrd g.elf rv.mem=8M -- a,,b"
        );
    }

    #[test]
    fn smp_and_multithreaded_tcg() {
        let a = Qemu::kernel("r.elf")
            .smp(4)
            .accel(Accel::TcgMulti)
            .args()
            .unwrap()
            .join(" ");
        assert!(a.starts_with("-accel tcg,thread=multi -cpu max,-smap -m 256M -smp 4 "));
        let a = Qemu::kernel("r.elf").args().unwrap();
        assert!(!a.contains(&"-smp".to_string()));
    }

    #[test]
    fn iso_args_use_cdrom() {
        let a = Qemu::iso("x.iso").args().unwrap();
        assert_eq!(&a[a.len() - 2..], ["-cdrom", "x.iso"]);
        assert!(!a.contains(&"-kernel".to_string()));
    }

    #[test]
    fn uefi_args_use_ovmf_pflash_and_q35() {
        if !tools::OVMF.is_present() {
            eprintln!("no OVMF here: nothing to check");
            return;
        }
        let q = Qemu::iso("x.iso").uefi().without_debug_exit();
        let a = q.args().unwrap().join(" ");
        assert!(a.contains("-machine q35"), "{a}");
        assert!(
            a.contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd")
        );
        assert!(a.contains("if=pflash,format=raw,unit=1,file="));
        assert!(!a.contains("isa-debug-exit"));
        if let Some(f) = a.split("unit=1,file=").nth(1) {
            let _ = std::fs::remove_file(f.split(' ').next().unwrap_or(""));
        }
    }

    #[test]
    fn rv_part_of_a_line() {
        let l = Line {
            at: Duration::ZERO,
            text: "junk(RV) exit: success".into(),
            cpu: None,
        };
        assert_eq!(l.rv(), Some("(RV) exit: success"));
    }
}
