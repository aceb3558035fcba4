//! Debian's stock Linux kernel on ringvisor (and on Debian's Xen 4.17):
//! the files, the initramfs, the QEMU runs and what to read from them.
//! Shared by `cargo xtask linux` and `tests/tests/linux.rs`.
//!
//! - [`fetch`]: `linux-image-amd64` resolved with `apt-cache depends` to
//!   its `linux-image-6.1.0-N-amd64`, that and `busybox-static` fetched
//!   with `apt-get download` into `target/linux/` (once), the bzImage and
//!   the static busybox unpacked with `dpkg-deb` beside them.
//! - [`initramfs`]: a busybox initramfs (newc cpio, uncompressed) whose
//!   `/init` prints [`MARKER`] and powers off (`poweroff -f`), or runs a
//!   shell on the console.
//! - [`ringvisor`], [`ringvisor_iso`], [`xen`]: the QEMU runs, as the initial domain or as a
//!   domU after another domain: `-initrd "vmlinuz ... console=hvc0
//!   earlyprintk=xen,initrd.cpio"`.
//! - [`Times`], [`failed_hypercalls`]: what a run says.

use crate::debian::{self, Fetch};
use crate::guest::GuestSpec;
use crate::qemu::{Line, Qemu, RunOutput};
use crate::{build, cpio, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// What `/init` prints first.
pub const MARKER: &str = "RINGVISOR-LINUX-INIT";
/// The kernel's first console line contains this.
pub const KERNEL_LINE: &str = "Linux version";
/// The kernel's command line (the console on the Xen console, early
/// output through `console_io`).
pub const KERNEL_ARGS: &str = "console=hvc0 earlyprintk=xen";
/// The Linux domain's memory (`rv.mem=`, Xen's `dom0_mem=`).
pub const LINUX_MEM: &str = "256M";
/// QEMU's memory for a Linux run.
pub const QEMU_MEM: &str = "1G";
/// The metapackage resolved to today's kernel package.
pub const KERNEL_META: &str = "linux-image-amd64";
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// The domain booted before Linux when it runs as a domU (a test guest).
pub const FIRST_GUEST: &str = "guest-hello";

/// `target/linux/`: the packages, the unpacked kernel and busybox, the
/// initramfs images.
pub fn dir() -> PathBuf {
    build::target_dir().join("linux")
}

/// The files a Linux boot needs.
#[derive(Debug, Clone)]
pub struct Files {
    /// The bzImage, `target/linux/vmlinuz-6.1.0-N-amd64`.
    pub kernel: PathBuf,
    /// `target/linux/busybox` (static).
    pub busybox: PathBuf,
    /// `linux-image-6.1.0-N-amd64`.
    pub package: String,
}

/// The kernel package names cached in `dir` (`linux-image-6.1.0-N-amd64`
/// from `linux-image-6.1.0-N-amd64_VERSION_amd64.deb`), newest first.
fn cached_kernel_packages(dir: &Path) -> Vec<String> {
    let mut v: Vec<(std::time::SystemTime, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let pkg = n.strip_suffix(".deb")?.split('_').next()?.to_string();
            (pkg.starts_with("linux-image-") && pkg != KERNEL_META).then(|| {
                (
                    e.metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    pkg,
                )
            })
        })
        .collect();
    v.sort();
    v.into_iter().rev().map(|(_, p)| p).collect()
}

/// Moves `from` to `to` (same file system).
fn take(from: &Path, to: &Path) -> Result<(), Fetch> {
    if !from.is_file() {
        return Err(Fetch::Failed(format!(
            "the package holds no {}",
            from.display()
        )));
    }
    fs::rename(from, to)?;
    Ok(())
}

/// Debian's stock kernel and busybox-static, fetched and unpacked under
/// [`dir`] on first use (see the module's doc).
pub fn fetch() -> Result<Files, Fetch> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = dir();
    fs::create_dir_all(&dir)?;
    let package = match debian::resolve_dependency(KERNEL_META, "linux-image-") {
        Ok(p) => p,
        Err(e) => match cached_kernel_packages(&dir).into_iter().next() {
            Some(p) => {
                eprintln!("note: {e}; using the cached {p}");
                p
            }
            None => return Err(e),
        },
    };
    let version = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    let kernel = dir.join(format!("vmlinuz-{version}"));
    if !kernel.is_file() {
        let deb = debian::download(&dir, &package)?;
        let pkg = dir.join("pkg");
        debian::extract(&deb, &format!("./boot/vmlinuz-{version}"), &pkg)?;
        take(&pkg.join(format!("boot/vmlinuz-{version}")), &kernel)?;
    }
    let busybox = dir.join("busybox");
    if !busybox.is_file() {
        let deb = debian::download(&dir, BUSYBOX_PACKAGE)?;
        let pkg = dir.join("pkg");
        debian::extract(&deb, "./bin/busybox", &pkg)?;
        take(&pkg.join("bin/busybox"), &busybox)?;
    }
    Ok(Files {
        kernel,
        busybox,
        package,
    })
}

/// What `/init` does after printing the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// `poweroff -f`: the domain shuts down (SCHEDOP_shutdown poweroff).
    PowerOff,
    /// A busybox shell on the console (`setsid cttyhack sh`); `poweroff -f`
    /// when it exits.
    Shell,
}

impl Init {
    fn name(self) -> &'static str {
        match self {
            Init::PowerOff => "poweroff",
            Init::Shell => "shell",
        }
    }
}

/// The `/init` script. The marker comes first, so its time is the time to
/// `/init`.
pub fn init_script(init: Init) -> String {
    let mut s = format!(
        "#!/bin/sh\n\
         echo {MARKER}\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sysfs /sys\n\
         /bin/busybox mount -t devtmpfs devtmpfs /dev\n\
         /bin/busybox --install -s\n\
         echo \"uptime: $(cat /proc/uptime)\"\n"
    );
    match init {
        Init::PowerOff => {}
        Init::Shell => s.push_str(
            "echo 'RINGVISOR-LINUX-SHELL: busybox sh on the console; `exit` powers off'\n\
             setsid cttyhack sh\n",
        ),
    }
    s.push_str("poweroff -f\n");
    s
}

/// The initramfs as bytes: directories, `/bin/busybox`, `/bin/sh` linked
/// to it, `/dev/console`, and `/init`.
pub fn initramfs_bytes(busybox: &[u8], init: Init) -> Vec<u8> {
    let mut w = cpio::Writer::new();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc",
    ] {
        w.dir(d);
    }
    w.file("bin/busybox", 0o755, busybox)
        .symlink("bin/sh", "busybox")
        .char_dev("dev/console", 0o600, 5, 1)
        .file("init", 0o755, init_script(init).as_bytes());
    w.finish()
}

/// `target/linux/initrd-poweroff.cpio` or `initrd-shell.cpio`, written
/// now from `busybox`.
pub fn initramfs(busybox: &Path, init: Init) -> Result<PathBuf> {
    // One writer at a time in this process (tests run in threads); written
    // beside and renamed, so a QEMU reading the old file is not disturbed.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let bb = fs::read(busybox)?;
    let path = dir().join(format!("initrd-{}.cpio", init.name()));
    let part = path.with_extension(format!("cpio.{}", std::process::id()));
    fs::write(&part, initramfs_bytes(&bb, init))?;
    fs::rename(&part, &path)?;
    Ok(path)
}

/// Where Linux runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The first module: domain 0, the initial domain.
    Initial,
    /// Domain 1, after [`FIRST_GUEST`] as domain 0 (`rv.mem=32M`).
    DomU,
}

impl Role {
    /// The Linux domain's number.
    pub fn domid(self) -> u32 {
        match self {
            Role::Initial => 0,
            Role::DomU => 1,
        }
    }
}

/// The Linux kernel and its initrd as two modules.
pub fn modules(files: &Files, initrd: &Path) -> [GuestSpec; 2] {
    [
        GuestSpec::new(&files.kernel)
            .opt("mem", LINUX_MEM)
            .args(KERNEL_ARGS),
        GuestSpec::new(initrd),
    ]
}

/// The ringvisor run: `elf` with Linux as `role` (after `first` as d0 for
/// a domU), `trace=hypercall` when `trace`, QEMU with [`QEMU_MEM`].
pub fn ringvisor(
    elf: &Path,
    files: &Files,
    initrd: &Path,
    role: Role,
    first: Option<&Path>,
    trace: bool,
) -> Qemu {
    let mut q = Qemu::kernel(elf).cmdline(if trace { "trace=hypercall" } else { "" });
    q.memory = QEMU_MEM.into();
    if role == Role::DomU {
        if let Some(f) = first {
            q = q.guest(GuestSpec::new(f).opt("mem", "32M"));
        }
    }
    for m in modules(files, initrd) {
        q = q.guest(m);
    }
    q
}

/// The same boot from a GRUB 2 ISO (`target/linux/ringvisor-linux.iso`,
/// multiboot2, Xen-style `module2` lines: the kernel with its command line,
/// then the initrd), built now.
pub fn ringvisor_iso(
    elf: &Path,
    files: &Files,
    initrd: &Path,
    role: Role,
    first: Option<&Path>,
    trace: bool,
) -> Result<Qemu> {
    let mut guests = Vec::new();
    if role == Role::DomU {
        if let Some(f) = first {
            guests.push(GuestSpec::new(f).opt("mem", "32M"));
        }
    }
    guests.extend(modules(files, initrd));
    let iso = build::build_iso(
        elf,
        if trace { "trace=hypercall" } else { "" },
        &guests,
        &dir().join("ringvisor-linux.iso"),
    )?;
    let mut q = Qemu::iso(iso);
    q.memory = QEMU_MEM.into();
    Ok(q)
}

/// Linux as the initial domain from a GRUB 2 ISO whose entry is a Xen
/// user's but for the hypervisor line (`multiboot2 /boot/ringvisor.elf
/// loglvl=info`, then `module2 /boot/vmlinuz-... console=hvc0
/// earlyprintk=xen` and `module2 /boot/initrd`): no `rv.` option, so the
/// domain's memory is the dom0 default. Returns the run and the grub.cfg.
pub fn xen_style_iso(elf: &Path, files: &Files, initrd: &Path) -> Result<(Qemu, String)> {
    let guests = [
        GuestSpec::new(&files.kernel).args(KERNEL_ARGS),
        GuestSpec::new(initrd),
    ];
    let out = dir().join("ringvisor-linux-xen-entry.iso");
    let iso = build::build_iso(elf, "loglvl=info", &guests, &out)?;
    // build_iso leaves its tree beside the ISO, in `NAME.d`.
    let cfg =
        std::fs::read_to_string(dir().join("ringvisor-linux-xen-entry.iso.d/boot/grub/grub.cfg"))?;
    let mut q = Qemu::iso(iso);
    q.memory = QEMU_MEM.into();
    Ok((q, cfg))
}

/// Xen's command line for Linux as dom0.
pub fn xen_cmdline() -> String {
    format!("console=com1 com1=115200,8n1 dom0_mem={LINUX_MEM} dom0_max_vcpus=1 loglvl=all guest_loglvl=all")
}

/// Xen's lines that end a run: it halts (or powers the machine off)
/// instead of exiting QEMU with a status.
pub const XEN_ENDS: &[&str] = &[
    XEN_POWEROFF,
    "(XEN) Hardware Dom0 crashed",
    "(XEN) Hardware Dom0 halted",
    "(XEN) Hardware Dom0 shutdown",
    "(XEN) Panic on CPU",
    "(XEN) Reboot in five seconds",
];

/// What Xen prints when dom0 (Linux) powers the machine off: Linux as
/// dom0 enters ACPI S5 itself through Xen (QEMU then exits with status 0).
pub const XEN_POWEROFF: &str = "(XEN) Entering ACPI S5 state";

/// Whether Xen's run ended with dom0 powering off or halting.
pub fn xen_powered_off(out: &RunOutput) -> bool {
    out.lines
        .iter()
        .any(|l| l.text.contains(XEN_POWEROFF) || l.text.contains("(XEN) Hardware Dom0 halted"))
}

/// The same kernel and initrd as dom0 of Debian's Xen 4.17 (`xen` from
/// [`debian::xen_elf`]) in the same QEMU; stopped at Xen's end-of-run line.
pub fn xen(xen: &Path, files: &Files, initrd: &Path) -> Qemu {
    let mut q = Qemu::kernel(xen).cmdline(&xen_cmdline());
    q.memory = QEMU_MEM.into();
    // Xen reads `PATH ARGS` (it drops the path); no `--`.
    q.extra_args = vec![
        "-initrd".into(),
        format!(
            "{} {KERNEL_ARGS},{}",
            files.kernel.display(),
            initrd.display()
        ),
    ];
    q.stop_on = XEN_ENDS.iter().map(|s| s.to_string()).collect();
    q
}

/// Times from QEMU's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// To the kernel's first line (`Linux version ...`).
    pub kernel: Option<Duration>,
    /// To the marker `/init` prints.
    pub init: Option<Duration>,
    /// QEMU's CPU time at those two lines ([`Line::cpu`]): what a busy
    /// host inflates least.
    pub kernel_cpu: Option<Duration>,
    pub init_cpu: Option<Duration>,
    /// Linux's own clock when `/init` ran (its `/proc/uptime`, which the
    /// initramfs prints): the kernel's part alone, whatever came before
    /// it (QEMU, the hypervisor's boot, decompression).
    pub uptime: Option<Duration>,
}

impl Times {
    pub fn of(lines: &[Line]) -> Times {
        let line = |needle: &str| lines.iter().find(|l| l.text.contains(needle));
        Times {
            kernel: line(KERNEL_LINE).map(|l| l.at),
            init: line(MARKER).map(|l| l.at),
            kernel_cpu: line(KERNEL_LINE).and_then(|l| l.cpu),
            init_cpu: line(MARKER).and_then(|l| l.cpu),
            uptime: lines.iter().find_map(|l| {
                let rest = l.text.split("uptime: ").nth(1)?;
                let secs: f64 = rest.split_whitespace().next()?.parse().ok()?;
                (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
            }),
        }
    }

    /// `first kernel line 3.512 s, /init 8.851 s (QEMU CPU time 3.401 s,
    /// 8.103 s)`.
    pub fn describe(&self) -> String {
        let t = |d: Option<Duration>| d.map_or("not reached".to_string(), crate::qemu::secs);
        let cpu = match (self.kernel_cpu, self.init_cpu) {
            (Some(k), Some(i)) => format!(
                " (QEMU CPU time {}, {})",
                crate::qemu::secs(k),
                crate::qemu::secs(i)
            ),
            _ => String::new(),
        };
        let uptime = self.uptime.map_or(String::new(), |u| {
            format!("; Linux's own clock at /init {:.2} s", u.as_secs_f64())
        });
        format!(
            "first kernel line {}, /init {}{cpu}{uptime}",
            t(self.kernel),
            t(self.init)
        )
    }
}

/// For each console line, the time since the line before it (the first
/// line: since QEMU's start).
pub fn gaps(lines: &[Line]) -> Vec<Duration> {
    let mut prev = Duration::ZERO;
    lines
        .iter()
        .map(|l| {
            let gap = l.at.saturating_sub(prev);
            prev = l.at;
            gap
        })
        .collect()
}

/// The last `n` console lines, with their times.
pub fn last_lines(out: &RunOutput, n: usize) -> String {
    let from = out.lines.len().saturating_sub(n);
    out.lines[from..]
        .iter()
        .map(|l| format!("[{:8.3}] {}\n", l.at.as_secs_f64(), l.text))
        .collect()
}

/// Hypercalls whose first argument is a sub-operation (a `cmd`). Not
/// `mmu_update`, `mmuext_op`, `platform_op`, `mca`: theirs is inside the
/// structure the first argument points to (the trace names
/// `platform_op`'s on a line of its own, before the call's).
const WITH_SUBOP: &[&str] = &[
    "memory_op",
    "physdev_op",
    "event_channel_op",
    "sched_op",
    "vcpu_op",
    "xen_version",
    "grant_table_op",
    "callback_op",
    "console_io",
    "xenpmu_op",
    "hvm_op",
    "vm_assist",
    "sysctl",
    "domctl",
    "xsm_op",
    "argo_op",
    "dm_op",
    "hypfs_op",
    "kexec_op",
    "tmem_op",
];

/// A few sub-operation names (Xen's public headers), for the summary.
fn subop_name(call: &str, op: u64) -> Option<&'static str> {
    Some(match (call, op) {
        ("memory_op", 0) => "increase_reservation",
        ("memory_op", 1) => "decrease_reservation",
        ("memory_op", 2) => "maximum_ram_page",
        ("memory_op", 6) => "populate_physmap",
        ("memory_op", 7) => "add_to_physmap",
        ("memory_op", 9) => "memory_map",
        ("memory_op", 10) => "machine_memory_map",
        ("memory_op", 11) => "exchange",
        ("memory_op", 12) => "machphys_mapping",
        ("memory_op", 13) => "set_memory_map",
        ("physdev_op", 0) => "eoi",
        ("physdev_op", 1) => "irq_status_query",
        ("physdev_op", 6) => "set_iopl",
        ("physdev_op", 7) => "set_iobitmap",
        ("physdev_op", 8) => "apic_read",
        ("physdev_op", 9) => "apic_write",
        ("physdev_op", 10) => "alloc_irq_vector",
        ("physdev_op", 13) => "map_pirq",
        ("physdev_op", 14) => "unmap_pirq",
        ("physdev_op", 17) => "pirq_eoi_gmfn_v1",
        ("physdev_op", 21) => "setup_gsi",
        ("physdev_op", 22) => "get_free_pirq",
        ("physdev_op", 28) => "pirq_eoi_gmfn_v2",
        ("event_channel_op", 11) => "init_control",
        ("event_channel_op", 13) => "set_priority",
        ("vcpu_op", 3) => "is_up",
        ("vcpu_op", 4) => "get_runstate_info",
        ("vcpu_op", 5) => "register_runstate_memory_area",
        ("vcpu_op", 10) => "register_vcpu_info",
        ("xenpmu_op", 4) => "init",
        ("xenpmu_op", 5) => "finish",
        ("grant_table_op", 2) => "setup_table",
        ("grant_table_op", 6) => "query_size",
        ("grant_table_op", 8) => "set_version",
        ("platform_op", 17) => "settime32",
        ("platform_op", 48) => "get_cpu_version",
        ("platform_op", 49) => "efi_runtime_call",
        ("platform_op", 50) => "firmware_info",
        ("platform_op", 51) => "enter_acpi_sleep",
        ("platform_op", 52) => "change_freq",
        ("platform_op", 53) => "getidletime",
        ("platform_op", 55) => "get_cpuinfo",
        ("platform_op", 62) => "settime64",
        _ => return None,
    })
}

fn errno_name(ret: i64) -> &'static str {
    match ret {
        -1 => "EPERM",
        -2 => "ENOENT",
        -3 => "ESRCH",
        -12 => "ENOMEM",
        -13 => "EACCES",
        -14 => "EFAULT",
        -16 => "EBUSY",
        -17 => "EEXIST",
        -19 => "ENODEV",
        -22 => "EINVAL",
        -28 => "ENOSPC",
        -38 => "ENOSYS",
        -95 => "EOPNOTSUPP",
        _ => "",
    }
}

/// One trace line `(RV) trace: dDvV hypercall NAME (NR) (A0, ...) = RET`
/// of domain `dom`: (name, a0, ret).
fn parse_trace(text: &str, dom: u32) -> Option<(String, u64, i64)> {
    let rest = text.split_once("(RV) trace: ")?.1;
    let rest = rest.strip_prefix(&format!("d{dom}v"))?;
    let rest = rest.split_once(" hypercall ")?.1;
    let (name, rest) = rest.split_once(' ')?;
    let args = rest.split_once(") (")?.1;
    let a0 = args.split([',', ')']).next()?.trim();
    let a0 = u64::from_str_radix(a0.strip_prefix("0x").unwrap_or(a0), 16).ok()?;
    let ret = rest.rsplit_once(" = ")?.1;
    let ret: i64 = ret.split_whitespace().next()?.parse().ok()?;
    Some((name.to_string(), a0, ret))
}

/// Domain `dom`'s failed hypercalls (a negative answer) in a
/// `trace=hypercall` run, counted by hypercall, sub-operation (for the
/// calls that have one in their first argument) and answer: one line each,
/// most frequent first.
pub fn failed_hypercalls(lines: &[Line], dom: u32) -> Vec<String> {
    let mut counts: BTreeMap<(String, Option<u64>, i64), u64> = BTreeMap::new();
    // `(RV) trace: dD platform_op cmd N (...)` comes before the call's own
    // line, whose first argument is only a pointer.
    let platform_cmd = format!("(RV) trace: d{dom} platform_op cmd ");
    let mut last_platform: Option<u64> = None;
    for l in lines {
        if let Some(rest) = l.text.split_once(&platform_cmd).map(|x| x.1) {
            last_platform = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            continue;
        }
        if let Some((name, a0, ret)) = parse_trace(&l.text, dom) {
            let platform = if name == "platform_op" {
                last_platform.take()
            } else {
                None
            };
            if ret < 0 {
                let sub = if name == "platform_op" {
                    platform
                } else {
                    WITH_SUBOP.contains(&name.as_str()).then_some(a0)
                };
                *counts.entry((name, sub, ret)).or_default() += 1;
            }
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter()
        .map(|((name, sub, ret), n)| {
            let mut s = name.clone();
            if let Some(op) = sub {
                let _ = write!(s, " {op}");
                if let Some(n) = subop_name(&name, op) {
                    let _ = write!(s, " ({n})");
                }
            }
            format!("{s}: {ret} {} x{n}", errno_name(ret)).replace("  ", " ")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at_ms: u64, text: &str) -> Line {
        Line {
            at: Duration::from_millis(at_ms),
            text: text.into(),
            cpu: None,
        }
    }

    #[test]
    fn gaps_between_lines() {
        let l = [
            line(500, "a"),
            line(700, "b"),
            line(700, "c"),
            line(2000, "d"),
        ];
        let ms: Vec<u128> = gaps(&l).iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [500, 200, 0, 1300]);
    }

    #[test]
    fn the_init_script_prints_the_marker_first_and_powers_off() {
        for init in [Init::PowerOff, Init::Shell] {
            let s = init_script(init);
            let mut l = s.lines();
            assert_eq!(l.next(), Some("#!/bin/sh"));
            assert_eq!(l.next(), Some(format!("echo {MARKER}").as_str()));
            assert_eq!(s.lines().last(), Some("poweroff -f"));
            assert_eq!(s.contains("cttyhack sh"), init == Init::Shell);
        }
    }

    #[test]
    fn the_initramfs_holds_init_busybox_and_the_console() {
        let a = initramfs_bytes(b"BUSYBOX", Init::PowerOff);
        let has = |needle: &[u8]| a.windows(needle.len()).any(|w| w == needle);
        for name in [
            &b"bin/busybox\0"[..],
            b"bin/sh\0",
            b"dev/console\0",
            b"init\0",
            b"TRAILER!!!\0",
        ] {
            assert!(has(name), "{}", String::from_utf8_lossy(name));
        }
        assert!(has(b"BUSYBOX") && has(MARKER.as_bytes()));
    }

    #[test]
    fn times_are_the_first_kernel_line_and_the_marker() {
        let lines = [
            line(90, "(RV) ringvisor 0.1"),
            line(
                3500,
                "(d0) [    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)",
            ),
            line(3600, "(d0) [    0.000000] Command line: console=hvc0"),
            line(8850, "(d0) RINGVISOR-LINUX-INIT"),
            line(8900, "(d0) uptime: 3.46 0.00"),
        ];
        let t = Times::of(&lines);
        assert_eq!(t.kernel, Some(Duration::from_millis(3500)));
        assert_eq!(t.init, Some(Duration::from_millis(8850)));
        assert_eq!(t.uptime, Some(Duration::from_millis(3460)));
        assert_eq!(
            t.describe(),
            "first kernel line 3.500 s, /init 8.850 s; Linux's own clock at /init 3.46 s"
        );
        assert_eq!(
            Times::of(&lines[..1]).describe(),
            "first kernel line not reached, /init not reached"
        );
    }

    #[test]
    fn failed_hypercalls_are_grouped_by_subop() {
        let lines = [
            line(1, "(RV) trace: d1v0 hypercall physdev_op (33) (0xd, 0xffffc90000013e40, 0x0, 0x0, 0x0) = -38"),
            line(2, "(RV) trace: d1v0 hypercall physdev_op (33) (0xd, 0xffffc90000013e40, 0x0, 0x0, 0x0) = -38"),
            line(3, "(RV) trace: d1v0 hypercall physdev_op (33) (0x15, 0x0, 0x0, 0x0, 0x0) = -38"),
            line(4, "(RV) trace: d1v0 hypercall mmu_update (1) (0xffff888000100000, 0x1, 0x0, 0x7ff0, 0x0) = -1"),
            line(5, "(RV) trace: d1v0 hypercall vcpu_op (24) (0x3, 0x1, 0x0, 0x0, 0x0) = -2"),
            line(6, "(RV) trace: d1v0 hypercall sched_op (29) (0x0, 0x0, 0x0, 0x0, 0x0) = 0"),
            line(7, "(RV) trace: d0v0 hypercall physdev_op (33) (0xd, 0x0, 0x0, 0x0, 0x0) = -38"),
            line(8, "(d1) [    1.0] something else = -38"),
            line(9, "(RV) trace: d1 platform_op cmd 50 (version 0x3)"),
            line(10, "(RV) trace: d1v0 hypercall platform_op (7) (0xffffc90000013e40, 0x0, 0x0, 0x0, 0x0) = -3"),
        ];
        assert_eq!(
            failed_hypercalls(&lines, 1),
            [
                "physdev_op 13 (map_pirq): -38 ENOSYS x2",
                "mmu_update: -1 EPERM x1",
                "physdev_op 21 (setup_gsi): -38 ENOSYS x1",
                "platform_op 50 (firmware_info): -3 ESRCH x1",
                "vcpu_op 3 (is_up): -2 ENOENT x1",
            ]
        );
        assert_eq!(
            failed_hypercalls(&lines, 0),
            ["physdev_op 13 (map_pirq): -38 ENOSYS x1"]
        );
    }
}
