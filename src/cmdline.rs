//! Command lines: the hypervisor's own options, and each module's
//! (guest's) command line with its per-domain hypervisor options.
//!
//! Hypervisor command line (space separated, unknown options are reported
//! and ignored, like Xen does):
//!
//! | option | meaning |
//! |---|---|
//! | `loglvl=error\|warn\|info\|debug\|trace` | how much the hypervisor logs (default `info`) |
//! | `selftest=pagefault\|divide\|panic\|iretfault\|dbtrap` | fault on purpose after boot, to check the fault dump (`iretfault`: the first return to a guest faults at the hypervisor's `iretq`; that domain is crashed; `dbtrap`: a #DB in ring 0, noted and ignored, boot goes on) |
//! | `on_exit=halt\|poweroff\|reboot` | what real hardware does when nothing is left to run (default `halt`; `poweroff`: ACPI S5; `reboot`: the ACPI reset register, else the keyboard controller). Under QEMU with `isa-debug-exit` the verdict exits QEMU first |
//! | `trace=bounce,hypercall,emulate\|all` | print one line per bounce / hypercall / emulated instruction (default off) |
//! | `bench` | before any guest runs, time the hardware's own ring 3 → ring 0 round trips (src/bench.rs) |
//! | `cpus=N` (or Xen's `maxcpus=N`) | use at most N CPUs, the boot CPU included (default: every CPU the ACPI MADT lists) |
//!
//! Module command line: `[rv.KEY=VALUE ...] [--] GUEST-ARGS`, after the
//! module's path where the loader puts one first (QEMU's multiboot1
//! `-initrd`, not GRUB 2's `module2`: see `boot_info::cmdline_cook`, as
//! Xen reads dom0's line). Words starting with `rv.` are per-domain
//! hypervisor options (`rv.mem=64M`, `rv.vcpus=2`); the first other word,
//! or a `--` (dropped), ends them. The rest goes to the guest's
//! `start_info.cmd_line` verbatim, so `--` protects guest arguments that
//! happen to start with `rv.`. So the GRUB entry Xen users have,
//! `module2 /boot/vmlinuz console=hvc0`, works unchanged.
//!
//! Memory without `rv.mem`: 32 MiB, except the initial domain (the first
//! kernel module), which gets Xen's dom0 default: what is left after each
//! other domain's memory, less a reserve for the hypervisor of 1/16 of it
//! or 128 MiB, whichever is less ([`initial_domain_mem`]).

use core::fmt;

/// Log levels, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "error" | "none" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" | "all" => LogLevel::Trace,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    None,
    /// Read an unmapped hypervisor address: #PF in ring 0.
    PageFault,
    /// Divide by zero in ring 0: #DE.
    Divide,
    /// A Rust panic.
    Panic,
    /// The first return to a guest gets a null SS after every check: the
    /// CPU refuses it at the hypervisor's own `iretq`, whose fixup must
    /// crash that domain and nothing else.
    IretFault,
    /// A data breakpoint on a hypervisor static, hit in ring 0: the #DB
    /// handler must note it and return (the path a guest's `mov ss` +
    /// `syscall` takes on hardware).
    DebugTrap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExit {
    Halt,
    Poweroff,
    Reboot,
}

/// Hypervisor options, parsed from the boot loader's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub loglvl: LogLevel,
    pub selftest: SelfTest,
    pub on_exit: OnExit,
    /// `TRACE_*` bits.
    pub trace: u32,
    /// `bench`: measure the baseline round trips before guests start.
    pub bench: bool,
    /// `cpus=N`: at most N CPUs, the boot CPU included (None: all).
    pub cpus: Option<u32>,
}

pub const TRACE_BOUNCE: u32 = 1 << 0;
pub const TRACE_HYPERCALL: u32 = 1 << 1;
pub const TRACE_EMULATE: u32 = 1 << 2;

impl Default for Options {
    fn default() -> Self {
        Options {
            loglvl: LogLevel::Info,
            selftest: SelfTest::None,
            on_exit: OnExit::Halt,
            trace: 0,
            bench: false,
            cpus: None,
        }
    }
}

/// A problem with one word of a command line; parsing goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadOption<'a> {
    pub word: &'a str,
    pub why: &'static str,
}

impl fmt::Display for BadOption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignoring `{}`: {}", self.word, self.why)
    }
}

impl Options {
    /// Parse the hypervisor command line; `bad` hears about each word
    /// that was not understood.
    pub fn parse<'a>(cmdline: &'a str, mut bad: impl FnMut(BadOption<'a>)) -> Options {
        let mut o = Options::default();
        for word in cmdline.split_ascii_whitespace() {
            let (key, val) = word.split_once('=').unwrap_or((word, ""));
            let why = match key {
                "loglvl" => match LogLevel::parse(val) {
                    Some(l) => {
                        o.loglvl = l;
                        continue;
                    }
                    None => "expected error|warn|info|debug|trace",
                },
                "selftest" => {
                    o.selftest = match val {
                        "pagefault" => SelfTest::PageFault,
                        "divide" => SelfTest::Divide,
                        "panic" => SelfTest::Panic,
                        "iretfault" => SelfTest::IretFault,
                        "dbtrap" => SelfTest::DebugTrap,
                        "none" => SelfTest::None,
                        _ => {
                            bad(BadOption {
                                word,
                                why: "expected pagefault|divide|panic|iretfault|dbtrap",
                            });
                            continue;
                        }
                    };
                    continue;
                }
                "on_exit" => {
                    o.on_exit = match val {
                        "halt" => OnExit::Halt,
                        "poweroff" => OnExit::Poweroff,
                        "reboot" => OnExit::Reboot,
                        _ => {
                            bad(BadOption {
                                word,
                                why: "expected halt|poweroff|reboot",
                            });
                            continue;
                        }
                    };
                    continue;
                }
                "trace" => {
                    for what in val.split(',') {
                        o.trace |= match what {
                            "bounce" => TRACE_BOUNCE,
                            "hypercall" => TRACE_HYPERCALL,
                            "emulate" => TRACE_EMULATE,
                            "all" => TRACE_BOUNCE | TRACE_HYPERCALL | TRACE_EMULATE,
                            _ => {
                                bad(BadOption {
                                    word,
                                    why: "expected trace=bounce,hypercall,emulate or trace=all",
                                });
                                0
                            }
                        };
                    }
                    continue;
                }
                "bench" if val.is_empty() => {
                    o.bench = true;
                    continue;
                }
                "bench" => "takes no value",
                "cpus" | "maxcpus" => match val.parse::<u32>() {
                    Ok(n) if n >= 1 => {
                        o.cpus = Some(n);
                        continue;
                    }
                    _ => "expected a number of CPUs, at least 1",
                },
                _ => "unknown option",
            };
            bad(BadOption { word, why });
        }
        o
    }
}

/// Per-domain hypervisor options from a module's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainOptions {
    /// Guest memory in bytes (`rv.mem=`, suffixes K, M, G); `None`: the
    /// default ([`DEFAULT_DOMAIN_MEM`], or [`initial_domain_mem`]).
    pub mem: Option<u64>,
    /// Number of vCPUs (`rv.vcpus=`).
    pub vcpus: u32,
}

/// Defaults when a module says nothing: 32 MiB and one vCPU.
pub const DEFAULT_DOMAIN_MEM: u64 = 32 << 20;

/// Xen's cap on the hypervisor's reserve out of dom0's default
/// (`default_nr_pages` in `xen/arch/x86/dom0_build.c`).
pub const HYPERVISOR_RESERVE_MAX: u64 = 128 << 20;

/// The initial domain's memory without `rv.mem`, as Xen's dom0 default:
/// of the `free` bytes, first `others` (every other domain's memory, and
/// what the largest other bzImage borrows to be decompressed) is set aside, then a reserve of 1/16 of the rest, at most 128 MiB. Never
/// less than the 32 MiB default (then, with too many other domains, they
/// wait for memory as before); rounded down to whole pages.
pub fn initial_domain_mem(free: u64, others: u64) -> u64 {
    let left = free.saturating_sub(others);
    let mem = left - (left / 16).min(HYPERVISOR_RESERVE_MAX);
    mem.max(DEFAULT_DOMAIN_MEM) & !0xfff
}
pub const MAX_DOMAIN_VCPUS: u32 = 64;

impl Default for DomainOptions {
    fn default() -> Self {
        DomainOptions {
            mem: None,
            vcpus: 1,
        }
    }
}

/// A module's command line split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleCmdline<'a> {
    /// The module's path, where the loader puts it first (not GRUB 2).
    pub path: Option<&'a str>,
    pub options: DomainOptions,
    /// What the guest sees in `start_info.cmd_line`.
    pub guest_args: &'a str,
}

impl<'a> ModuleCmdline<'a> {
    /// The module's file name (the last component of its path), if the
    /// loader gave the path.
    pub fn name(&self) -> Option<&'a str> {
        self.path.map(|p| p.rsplit('/').next().unwrap_or(p))
    }

    /// Parse a module's line; `names_image`: its first word is the
    /// module's path (`boot_info::BootInfo::lines_name_the_image`).
    pub fn parse(
        s: &'a str,
        names_image: bool,
        mut bad: impl FnMut(BadOption<'a>),
    ) -> ModuleCmdline<'a> {
        let mut rest = s.trim_start();
        let path = if names_image {
            let (path, r) = split_word(rest);
            rest = r;
            Some(path).filter(|p| !p.is_empty())
        } else {
            None
        };
        let mut options = DomainOptions::default();
        loop {
            let (word, r) = split_word(rest);
            if word == "--" {
                rest = r;
                break;
            }
            let Some(opt) = word.strip_prefix("rv.") else {
                break;
            };
            rest = r;
            let (key, val) = opt.split_once('=').unwrap_or((opt, ""));
            match key {
                "mem" => match parse_size(val) {
                    Some(m) if m >= 1 << 20 => options.mem = Some(m),
                    _ => bad(BadOption {
                        word,
                        why: "expected a size of at least 1M, e.g. 64M",
                    }),
                },
                "vcpus" => match val.parse::<u32>() {
                    Ok(n) if (1..=MAX_DOMAIN_VCPUS).contains(&n) => options.vcpus = n,
                    _ => bad(BadOption {
                        word,
                        why: "expected a vCPU count from 1 to 64",
                    }),
                },
                _ => bad(BadOption {
                    word,
                    why: "unknown per-domain option",
                }),
            }
        }
        ModuleCmdline {
            path,
            options,
            guest_args: rest.trim(),
        }
    }
}

/// Split off the first whitespace-separated word; the rest keeps its
/// inner spacing (guest arguments are passed verbatim).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `123`, `64K`, `64M`, `1G` (binary units), decimal or 0x hex.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match num.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => num.parse::<u64>().ok()?,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> (Options, Vec<String>) {
        let mut bad = Vec::new();
        let o = Options::parse(s, |b| bad.push(b.to_string()));
        (o, bad)
    }

    #[test]
    fn defaults() {
        let (o, bad) = opts("");
        assert_eq!(o, Options::default());
        assert!(bad.is_empty());
    }

    #[test]
    fn options_parse() {
        let (o, bad) =
            opts("loglvl=debug  selftest=pagefault on_exit=reboot trace=bounce,hypercall");
        assert_eq!(o.trace, TRACE_BOUNCE | TRACE_HYPERCALL);
        assert_eq!(o.loglvl, LogLevel::Debug);
        assert_eq!(o.selftest, SelfTest::PageFault);
        assert_eq!(o.on_exit, OnExit::Reboot);
        assert_eq!(opts("on_exit=poweroff").0.on_exit, OnExit::Poweroff);
        assert!(bad.is_empty());
    }

    #[test]
    fn bench_option() {
        let (o, bad) = opts("loglvl=warn bench");
        assert!(o.bench);
        assert_eq!(o.loglvl, LogLevel::Warn);
        assert!(bad.is_empty());
        assert!(!opts("").0.bench);
        let (o, bad) = opts("bench=yes");
        assert!(!o.bench);
        assert_eq!(bad, ["ignoring `bench=yes`: takes no value"]);
    }

    #[test]
    fn cpus_option() {
        assert_eq!(opts("").0.cpus, None);
        assert_eq!(opts("cpus=2").0.cpus, Some(2));
        assert_eq!(opts("maxcpus=1").0.cpus, Some(1));
        for w in ["cpus=0", "cpus=", "cpus=many"] {
            let (o, bad) = opts(w);
            assert_eq!(o.cpus, None, "{w}");
            assert_eq!(bad.len(), 1, "{w}");
        }
    }

    #[test]
    fn bad_options_reported_and_ignored() {
        let (o, bad) = opts("loglvl=loud frobnicate selftest=x loglvl=warn");
        assert_eq!(o.loglvl, LogLevel::Warn);
        assert_eq!(o.selftest, SelfTest::None);
        assert_eq!(bad.len(), 3);
        assert!(bad[0].contains("loglvl=loud"));
        assert!(bad[1].contains("unknown option"));
    }

    #[test]
    fn module_plain() {
        let m = ModuleCmdline::parse("/boot/guest.elf console=hvc0  quiet", true, |_| panic!());
        assert_eq!(m.path, Some("/boot/guest.elf"));
        assert_eq!(m.name(), Some("guest.elf"));
        assert_eq!(m.options, DomainOptions::default());
        assert_eq!(m.guest_args, "console=hvc0  quiet");
    }

    #[test]
    fn module_from_grub2_has_no_path() {
        // `module2 /boot/vmlinuz-6.1.0-NN-amd64 console=hvc0 earlyprintk=xen`
        let m = ModuleCmdline::parse("console=hvc0 earlyprintk=xen", false, |_| panic!());
        assert_eq!((m.path, m.name()), (None, None));
        assert_eq!(m.guest_args, "console=hvc0 earlyprintk=xen");
        let m = ModuleCmdline::parse("rv.mem=64M -- rv.x", false, |_| panic!());
        assert_eq!(m.options.mem, Some(64 << 20));
        assert_eq!(m.guest_args, "rv.x");
        let m = ModuleCmdline::parse("", false, |_| panic!());
        assert_eq!((m.path, m.guest_args), (None, ""));
        let m = ModuleCmdline::parse("", true, |_| panic!());
        assert_eq!((m.path, m.guest_args), (None, ""));
    }

    #[test]
    fn module_with_options() {
        let m = ModuleCmdline::parse(
            "g.elf rv.mem=64M rv.vcpus=2 -- rv.not=mine x",
            true,
            |_| panic!(),
        );
        assert_eq!(
            m.options,
            DomainOptions {
                mem: Some(64 << 20),
                vcpus: 2
            }
        );
        assert_eq!(m.guest_args, "rv.not=mine x");
    }

    #[test]
    fn module_bad_options() {
        let mut bad = Vec::new();
        let m = ModuleCmdline::parse("g rv.mem=12 rv.vcpus=0 rv.colour=red args", true, |b| {
            bad.push(b.word)
        });
        assert_eq!(bad, vec!["rv.mem=12", "rv.vcpus=0", "rv.colour=red"]);
        assert_eq!(m.options, DomainOptions::default());
        assert_eq!(m.guest_args, "args");
    }

    #[test]
    fn module_only_name() {
        let m = ModuleCmdline::parse("  g.elf  ", true, |_| panic!());
        assert_eq!(m.path, Some("g.elf"));
        assert_eq!(m.guest_args, "");
    }

    #[test]
    fn initial_domain_default_as_xen() {
        const M: u64 = 1 << 20;
        // 1 GiB free, nothing else: less 1/16 (64 MiB).
        assert_eq!(initial_domain_mem(1024 * M, 0), 960 * M);
        // 4 GiB free: the reserve stops at 128 MiB.
        assert_eq!(initial_domain_mem(4096 * M, 0), 3968 * M);
        // 253 MiB free, one other domain of 32 MiB: (221 - 13.8) MiB.
        assert_eq!(
            initial_domain_mem(253 * M, 32 * M),
            (221 * M - 221 * M / 16) & !0xfff
        );
        // Others want more than there is: the plain default.
        assert_eq!(initial_domain_mem(253 * M, 63 * 32 * M), DEFAULT_DOMAIN_MEM);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("12k"), Some(12 << 10));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("18446744073709551615G"), None);
    }
}
