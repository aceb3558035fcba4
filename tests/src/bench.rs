//! `cargo xtask bench`: reading what a bench run prints, combining runs,
//! and the table and JSON made from them (see docs/benchmarks.md).
//!
//! A bench run boots the hypervisor with `bench` on its command line and
//! `guest-bench` as domain 0. The lines read here:
//!
//! ```text
//! (RV) bench: baseline <name> median <M> spread <P10>..<P90> n=<N>
//! (RV) bench: first guest instruction at tsc=<T> ns=<NS> (baseline took tsc=<BT> ns=<BNS>)
//! (d0) BENCH: first-line tsc=<T>
//! (d0) BENCH: <name> median <M> spread <P10>..<P90> n=<N>
//! (d0) BENCH: <name> not measured (no second domain)
//! (d0) BENCH: <name> error: <why>
//! (d1) RESULT: SUCCESS
//! (d0) RESULT: SUCCESS
//! ```
//!
//! Domain 1 is the same guest as the echo domain of the two-domain paths
//! ([`TWO_DOMAIN`]); it prints no `BENCH:` line, only its `RESULT:`. The
//! run's result is the worst `RESULT:` of any domain.
//!
//! After each such boot `cargo xtask bench` boots the hypervisor again, with
//! `guest32-bench` (the 32-bit guest) alone as domain 0: the same lines,
//! its paths named `32-*` ([`PATHS32`], loop `32-loop`), checked with
//! [`Report::check32`] and added to the 64-bit boot's report with
//! [`Report::add_32`].
//!
//! `cargo xtask bench --vs-xen` boots the same guest as dom0 of real Xen,
//! which writes dom0's `console_io` output as it is, with no `(d0) `
//! prefix, among its own `(XEN) ` lines (each line ends in `\r\n`, which
//! [`crate::qemu::clean`] drops):
//!
//! ```text
//! (XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1) (pkg-xen-devel@...) ...
//! (XEN) Freed 656kB init memory
//! TEST: bench
//! BENCH: <name> median <M> spread <P10>..<P90> n=<N>
//! RESULT: SUCCESS
//! (XEN) Hardware Dom0 halted: halting machine
//! ```
//!
//! Both forms are read. Every figure is in TSC ticks; under QEMU
//! `-icount shift=0,sleep=off` a tick is one guest instruction.

use crate::qemu::RunOutput;
use std::fmt::Write as _;
use std::time::Duration;

/// The hypervisor's bare round trips (src/bench.rs), `loop` excluded.
pub const BASELINES: &[&str] = &["syscall", "int", "ud", "pf"];

/// The bench guest's paths and the bare round trip each one is built on
/// (the ratio's denominator besides `syscall`).
pub const PATHS: &[(&str, &str)] = &[
    ("null-hypercall", "syscall"),
    ("console-io-64", "syscall"),
    ("int3-bounce", "int"),
    ("pf-bounce", "pf"),
    ("user-syscall", "syscall"),
    ("set-trap-table-32", "syscall"),
    ("mmu-update-1", "syscall"),
    ("update-va-mapping", "syscall"),
    ("event-send-upcall", "syscall"),
    ("event-ping-pong", "syscall"),
    ("domain-switch", "syscall"),
    ("enosys-hypercall", "syscall"),
    ("console-io-0", "syscall"),
    ("ud2-bounce", "ud"),
    ("cpuid-emul", "ud"),
    ("update-va-mapping-same", "syscall"),
    ("mmu-update-same", "syscall"),
];

/// The paths timed against a second domain (the echo domain, domain 1).
/// Real Xen boots dom0 alone: there they read `not measured (no second
/// domain)`, which [`Report::check_guest`] accepts.
pub const TWO_DOMAIN: &[&str] = &["event-ping-pong", "domain-switch"];

/// The 32-bit bench guest's paths (`guest32-bench`, booted on ringvisor
/// alone in a QEMU boot of its own: Debian's Xen has no 32-bit PV) and
/// their bare round trips: `int $0x82` hypercalls against `int`.
pub const PATHS32: &[(&str, &str)] = &[
    ("32-null-hypercall", "int"),
    ("32-int3-bounce", "int"),
    ("32-pf-bounce", "pf"),
    ("32-set-trap-table-32", "int"),
];

/// The multi-CPU rows (`guest-bench mode=smp`, a domain of 4 vCPUs, in a
/// `-smp 4` boot of its own under multi-threaded TCG: TCG ticks only, as
/// icount runs one virtual CPU at a time) and their bare round trip: that
/// boot's own `syscall` baseline, kept as [`SMP_BASELINE`].
pub const PATHS_SMP: &[(&str, &str)] = &[
    ("smp-calls-1vcpu", SMP_BASELINE),
    ("smp-calls-4vcpus", SMP_BASELINE),
    ("smp-uva-local", SMP_BASELINE),
    ("smp-uva-shootdown-3", SMP_BASELINE),
    ("smp-uva-shootdown-1", SMP_BASELINE),
    ("smp-event-remote", SMP_BASELINE),
];

/// The bare syscall round trip of the `-smp 4` boot (its `syscall`
/// baseline under another name).
pub const SMP_BASELINE: &str = "syscall-smp";

/// Paths the issue asks for that have no bench yet, and why.
pub const NOT_YET: &[(&str, &str)] = &[];

/// Median and spread (10th..90th percentile) of one path, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub median: u64,
    pub p10: u64,
    pub p90: u64,
    pub n: u64,
}

/// Reads `median M spread A..B n=N` at the start of `s` (more may follow).
pub fn parse_stat(s: &str) -> Option<Stat> {
    let mut w = s.split_whitespace();
    if w.next()? != "median" {
        return None;
    }
    let median = w.next()?.parse().ok()?;
    if w.next()? != "spread" {
        return None;
    }
    let (a, b) = w.next()?.split_once("..")?;
    let n = w.next()?.strip_prefix("n=")?.parse().ok()?;
    Some(Stat {
        median,
        p10: a.parse().ok()?,
        p90: b.parse().ok()?,
        n,
    })
}

/// `key=<u64>` anywhere in `s`.
fn field(s: &str, key: &str) -> Option<u64> {
    s.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The hypervisor's clock when it was about to enter the first guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestEntry {
    /// TSC and nanoseconds since the CPU left reset.
    pub tsc: u64,
    pub ns: u64,
    /// How much of that the baseline itself took.
    pub baseline_tsc: u64,
    pub baseline_ns: u64,
}

/// Everything one bench run printed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// `(name, stat)` from `(RV) bench: baseline ...`, `loop` included.
    pub baseline: Vec<(String, Stat)>,
    /// `(name, stat)` from `(dN) BENCH: ...`, `loop` included.
    pub guest: Vec<(String, Stat)>,
    /// `(name, text)` from `(dN) BENCH: <name> <text>` lines with no
    /// figure: `not measured (...)` or `error: ...`.
    pub unmeasured: Vec<(String, String)>,
    pub entry: Option<GuestEntry>,
    /// The TSC right after the guest's first console line.
    pub first_line_tsc: Option<u64>,
    /// Host clock: QEMU spawn to the first `(d0) ` line.
    pub first_line_at: Option<Duration>,
    /// What follows `(d0) RESULT: `.
    pub result: Option<String>,
    /// How many runs were combined into this one (1 for a single run).
    pub runs: usize,
    /// Real Xen's `(XEN) Xen version <V> (<BUILD>)`: `<V> (<BUILD>)`.
    pub xen_version: Option<String>,
}

impl Report {
    /// Reads the lines of one run; `at` is each line's arrival time.
    pub fn parse<'a>(lines: impl IntoIterator<Item = (&'a str, Option<Duration>)>) -> Report {
        let mut r = Report {
            runs: 1,
            ..Report::default()
        };
        for (text, at) in lines {
            if let Some(i) = text.find("(RV) bench: ") {
                let rest = &text[i + "(RV) bench: ".len()..];
                if let Some(rest) = rest.strip_prefix("baseline ") {
                    if let Some((name, stat)) = rest.split_once(' ') {
                        if let Some(s) = parse_stat(stat) {
                            r.baseline.push((name.to_string(), s));
                        }
                    }
                } else if rest.starts_with("first guest instruction") {
                    if let (Some(tsc), Some(ns), Some(bt), Some(bns)) = (
                        field(rest, "tsc"),
                        field(rest, "ns"),
                        rest.split_once("baseline took")
                            .and_then(|(_, b)| field(b, "tsc")),
                        rest.split_once("baseline took")
                            .and_then(|(_, b)| field(b, "ns")),
                    ) {
                        r.entry = Some(GuestEntry {
                            tsc,
                            ns,
                            baseline_tsc: bt,
                            baseline_ns: bns,
                        });
                    }
                }
                continue;
            }
            if let Some(v) = text.strip_prefix("(XEN) Xen version ") {
                let v = v.find(')').map_or(v, |i| &v[..=i]);
                r.xen_version.get_or_insert_with(|| v.trim().to_string());
                continue;
            }
            let Some(guest) = guest_part(text) else {
                continue;
            };
            if r.first_line_at.is_none() {
                r.first_line_at = at;
            }
            if let Some(rest) = guest.strip_prefix("BENCH: ") {
                if let Some(t) = rest.strip_prefix("first-line ") {
                    r.first_line_tsc = field(t, "tsc");
                } else if let Some((name, stat)) = rest.split_once(' ') {
                    match parse_stat(stat) {
                        Some(s) => r.guest.push((name.to_string(), s)),
                        None => r
                            .unmeasured
                            .push((name.to_string(), stat.trim().to_string())),
                    }
                }
            } else if let Some(res) = guest.strip_prefix("RESULT: ") {
                // The worst of the domains' results.
                if r.result.as_deref().is_none_or(|old| old == "SUCCESS") {
                    r.result = Some(res.to_string());
                }
            }
        }
        r
    }

    /// Reads a finished QEMU run.
    pub fn from_run(out: &RunOutput) -> Report {
        Report::parse(out.lines.iter().map(|l| (l.text.as_str(), Some(l.at))))
    }

    pub fn baseline(&self, name: &str) -> Option<Stat> {
        self.baseline
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    pub fn path(&self, name: &str) -> Option<Stat> {
        self.guest.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }

    /// What the guest printed instead of a figure for `name`, if anything.
    pub fn unmeasured(&self, name: &str) -> Option<&str> {
        self.unmeasured
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    /// Every baseline and every path present with a positive median, the
    /// guest's RESULT a SUCCESS, the guest-entry line there: else what is
    /// missing, one item per line.
    pub fn check(&self) -> Result<(), String> {
        let mut bad = Vec::new();
        for b in BASELINES {
            match self.baseline(b) {
                Some(s) if s.median > 0 => {}
                Some(s) => bad.push(format!("baseline {b}: median {} (not positive)", s.median)),
                None => bad.push(format!("baseline {b}: no line")),
            }
        }
        if self.entry.is_none() {
            bad.push("no `first guest instruction` line".into());
        }
        if let Err(e) = self.check_paths(true) {
            bad.push(e);
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }

    /// A `guest32-bench` boot: every baseline, every [`PATHS32`] path with
    /// a positive median, `RESULT: SUCCESS`.
    pub fn check32(&self) -> Result<(), String> {
        self.check_rows(BASELINES, PATHS32)
    }

    /// Every baseline of `baselines` and every path of `paths` with a
    /// positive median (or a reason it was not measured counts against
    /// it), and the guest's `RESULT: SUCCESS`.
    fn check_rows(&self, baselines: &[&str], paths: &[(&str, &str)]) -> Result<(), String> {
        let mut bad = Vec::new();
        for b in baselines {
            if self.baseline(b).is_none_or(|s| s.median == 0) {
                bad.push(format!("baseline {b}: no line or not positive"));
            }
        }
        for (p, _) in paths {
            match (self.path(p), self.unmeasured(p)) {
                (Some(s), _) if s.median > 0 => {}
                (Some(s), _) => bad.push(format!("{p}: median {} (not positive)", s.median)),
                (None, Some(t)) => bad.push(format!("{p}: {t}")),
                (None, None) => bad.push(format!("{p}: no BENCH line")),
            }
        }
        match self.result.as_deref() {
            Some("SUCCESS") => {}
            Some(r) => bad.push(format!("guest RESULT: {r}")),
            None => bad.push("no guest RESULT line (CRASH)".into()),
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }

    /// Adds a `guest32-bench` boot's guest rows (its `32-*` names) to this
    /// report; its baselines (a boot of their own) are left out, its
    /// result counts if it is worse.
    pub fn add_32(&mut self, r32: &Report) {
        for (n, s) in &r32.guest {
            if self.path(n).is_none() {
                self.guest.push((n.clone(), *s));
            }
        }
        for (n, t) in &r32.unmeasured {
            if self.unmeasured(n).is_none() {
                self.unmeasured.push((n.clone(), t.clone()));
            }
        }
        if self.result.as_deref() == Some("SUCCESS") && r32.result.as_deref() != Some("SUCCESS") {
            self.result = Some(
                r32.result
                    .clone()
                    .unwrap_or_else(|| "CRASH (32-bit boot: no RESULT line)".into()),
            );
        }
    }

    /// A `guest-bench mode=smp` boot: the `syscall` baseline, every
    /// [`PATHS_SMP`] path with a positive median, `RESULT: SUCCESS`.
    pub fn check_smp(&self) -> Result<(), String> {
        self.check_rows(&["syscall"], PATHS_SMP)
    }

    /// Adds a `mode=smp` boot's rows to this report: its guest rows, its
    /// `syscall` baseline as [`SMP_BASELINE`], its result if worse.
    pub fn add_smp(&mut self, smp: &Report) {
        if let Some(b) = smp.baseline("syscall") {
            if self.baseline(SMP_BASELINE).is_none() {
                self.baseline.push((SMP_BASELINE.to_string(), b));
            }
        }
        let result = self.result.clone();
        self.add_32(smp);
        if result.as_deref() == Some("SUCCESS") && self.result.as_deref() != Some("SUCCESS") {
            self.result = Some(format!(
                "{} (-smp 4 boot)",
                self.result.as_deref().unwrap_or("CRASH")
            ));
        }
    }

    /// 4 × `smp-calls-1vcpu` / `smp-calls-4vcpus`: how many times one
    /// vCPU's hypercall throughput 4 vCPUs had (4.0: perfect).
    pub fn scaling(&self) -> Option<f64> {
        let (one, four) = (
            self.path("smp-calls-1vcpu")?,
            self.path("smp-calls-4vcpus")?,
        );
        (four.median > 0).then(|| 4.0 * one.median as f64 / four.median as f64)
    }

    /// The guest's part of [`Report::check`] alone, for a run on real Xen
    /// (no baselines, no second domain): every path with a positive median
    /// but the [`TWO_DOMAIN`] ones, which may read `not measured (...)`,
    /// and `RESULT: SUCCESS`.
    pub fn check_guest(&self) -> Result<(), String> {
        self.check_paths(false)
    }

    /// `two_domain`: the [`TWO_DOMAIN`] paths must have figures too.
    fn check_paths(&self, two_domain: bool) -> Result<(), String> {
        let mut bad = Vec::new();
        for (p, _) in PATHS {
            match (self.path(p), self.unmeasured(p)) {
                (Some(s), _) if s.median > 0 => {}
                (Some(s), _) => bad.push(format!("{p}: median {} (not positive)", s.median)),
                (None, Some(t))
                    if !two_domain && TWO_DOMAIN.contains(p) && t.starts_with("not measured") => {}
                (None, Some(t)) => bad.push(format!("{p}: {t}")),
                (None, None) => bad.push(format!("{p}: no BENCH line")),
            }
        }
        match self.result.as_deref() {
            Some("SUCCESS") => {}
            Some(r) => bad.push(format!("guest RESULT: {r}")),
            None => bad.push("no guest RESULT line (CRASH)".into()),
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("\n"))
        }
    }

    /// Several runs of the same kind as one: each figure (median, p10,
    /// p90, every startup time) is the median of that figure over the
    /// runs. Rows missing from some runs use the runs that have them.
    pub fn combine(runs: &[Report]) -> Report {
        let Some(first) = runs.first() else {
            return Report::default();
        };
        let rows = |pick: fn(&Report) -> &Vec<(String, Stat)>| -> Vec<(String, Stat)> {
            let mut names: Vec<&String> = Vec::new();
            for r in runs {
                for (n, _) in pick(r) {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
            names
                .into_iter()
                .map(|n| {
                    let all: Vec<Stat> = runs
                        .iter()
                        .filter_map(|r| pick(r).iter().find(|(m, _)| m == n).map(|(_, s)| *s))
                        .collect();
                    let m = |f: fn(&Stat) -> u64| median(all.iter().map(f).collect());
                    (
                        n.clone(),
                        Stat {
                            median: m(|s| s.median),
                            p10: m(|s| s.p10),
                            p90: m(|s| s.p90),
                            n: m(|s| s.n),
                        },
                    )
                })
                .collect()
        };
        let entries: Vec<GuestEntry> = runs.iter().filter_map(|r| r.entry).collect();
        let entry = (!entries.is_empty()).then(|| {
            let m = |f: fn(&GuestEntry) -> u64| median(entries.iter().map(f).collect());
            GuestEntry {
                tsc: m(|e| e.tsc),
                ns: m(|e| e.ns),
                baseline_tsc: m(|e| e.baseline_tsc),
                baseline_ns: m(|e| e.baseline_ns),
            }
        });
        let tscs: Vec<u64> = runs.iter().filter_map(|r| r.first_line_tsc).collect();
        let ats: Vec<u64> = runs
            .iter()
            .filter_map(|r| r.first_line_at)
            .map(|d| d.as_nanos() as u64)
            .collect();
        let mut unmeasured: Vec<(String, String)> = Vec::new();
        for (n, t) in runs.iter().flat_map(|r| &r.unmeasured) {
            if !unmeasured.iter().any(|(m, _)| m == n) {
                unmeasured.push((n.clone(), t.clone()));
            }
        }
        Report {
            baseline: rows(|r| &r.baseline),
            guest: rows(|r| &r.guest),
            unmeasured,
            entry,
            first_line_tsc: (!tscs.is_empty()).then(|| median(tscs)),
            first_line_at: (!ats.is_empty()).then(|| Duration::from_nanos(median(ats))),
            result: if runs.iter().all(|r| r.result.as_deref() == Some("SUCCESS")) {
                Some("SUCCESS".into())
            } else {
                runs.iter()
                    .find_map(|r| r.result.clone().filter(|s| s != "SUCCESS"))
                    .or(first.result.clone())
            },
            runs: runs.len(),
            xen_version: first.xen_version.clone(),
        }
    }
}

/// The guest's part of a console line: what follows `(dN) ` (ringvisor,
/// and Xen for a domU), or the whole line when it starts with one of the
/// test runtime's tags, `TAG: ` with `TAG` in capitals (Xen writes dom0's
/// `console_io` as it is).
pub fn guest_part(text: &str) -> Option<&str> {
    if let Some(i) = text.find("(d") {
        let rest = &text[i + 2..];
        if let Some(close) = rest.find(") ") {
            if close > 0 && rest[..close].bytes().all(|b| b.is_ascii_digit()) {
                return Some(&rest[close + 2..]);
            }
        }
    }
    let (tag, _) = text.split_once(": ")?;
    let tagged = tag.starts_with(|c: char| c.is_ascii_uppercase())
        && tag.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    tagged.then_some(text)
}

/// The median of `v` (the lower one of the middle two).
pub fn median(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

/// `a / b` to one decimal, or `-`.
fn ratio(a: Option<Stat>, b: Option<Stat>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0 => format!("{:.1}", a.median as f64 / b.median as f64),
        _ => "-".into(),
    }
}

/// ringvisor's median over Xen's, or `None`.
pub fn vs_xen(rv: Option<Stat>, xen: Option<Stat>) -> Option<f64> {
    match (rv, xen) {
        (Some(a), Some(b)) if b.median > 0 => Some(a.median as f64 / b.median as f64),
        _ => None,
    }
}

fn cell(s: Option<Stat>) -> String {
    s.map_or("-".into(), |s| {
        format!("{} [{}..{}]", s.median, s.p10, s.p90)
    })
}

fn ms(ns: u64) -> String {
    format!("{}.{:03} ms", ns / 1_000_000, ns / 1_000 % 1_000)
}

/// The issue's goal: ringvisor at most this fraction of Xen's instructions
/// on every path (shown, never asserted).
pub const XEN_GOAL: f64 = 0.5;

/// Everything one `cargo xtask bench` measured: ringvisor under each
/// clock and, with `--vs-xen`, real Xen running the same guest under the
/// same clocks. A clock not run is `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Runs<'a> {
    pub tcg: Option<&'a Report>,
    pub icount: Option<&'a Report>,
    pub xen_tcg: Option<&'a Report>,
    pub xen_icount: Option<&'a Report>,
}

/// The one table without Xen: see [`Runs::table`].
pub fn table(tcg: Option<&Report>, icount: Option<&Report>) -> String {
    Runs {
        tcg,
        icount,
        ..Runs::default()
    }
    .table()
}

/// The same numbers as [`table`], as JSON: see [`Runs::json`].
pub fn json(tcg: Option<&Report>, icount: Option<&Report>) -> String {
    Runs {
        tcg,
        icount,
        ..Runs::default()
    }
    .json()
}

impl Runs<'_> {
    /// The one table: each path with its TCG ticks and icount
    /// instructions, each as a ratio to the bare `syscall` round trip and
    /// to its matching bare round trip, and, for a clock Xen ran under,
    /// Xen's median and ringvisor/Xen; then the start-up times.
    pub fn table(&self) -> String {
        let (tcg, icount) = (self.tcg, self.icount);
        let get = |r: Option<&Report>, base: bool, name: &str| {
            r.and_then(|r| if base { r.baseline(name) } else { r.path(name) })
        };
        let mut header = vec!["path", "TCG ticks median [p10..p90]", "÷syscall", "÷match"];
        if self.xen_tcg.is_some() {
            header.extend(["Xen TCG", "rv/Xen"]);
        }
        header.extend(["icount insns", "÷syscall", "÷match"]);
        if self.xen_icount.is_some() {
            header.extend(["Xen insns", "rv/Xen"]);
        }
        header.push("match");
        let mut rows: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
        let xen_cells = |row: &mut Vec<String>,
                         xen: Option<&Report>,
                         rv: Option<Stat>,
                         base: bool,
                         name: &str| {
            if let Some(x) = xen {
                let xs = if base { None } else { x.path(name) };
                row.push(xs.map_or("-".into(), |s| s.median.to_string()));
                row.push(vs_xen(rv, xs).map_or("-".into(), |q| format!("{q:.2}")));
            }
        };
        let mut row = |label: String, base: bool, name: &str, matching: &str| {
            let t = get(tcg, base, name);
            let i = get(icount, base, name);
            let mut r = vec![
                label,
                cell(t),
                ratio(t, get(tcg, true, "syscall")),
                ratio(t, get(tcg, true, matching)),
            ];
            xen_cells(&mut r, self.xen_tcg, t, base, name);
            r.extend([
                i.map_or("-".into(), |s| s.median.to_string()),
                ratio(i, get(icount, true, "syscall")),
                ratio(i, get(icount, true, matching)),
            ]);
            xen_cells(&mut r, self.xen_icount, i, base, name);
            r.push(matching.to_string());
            rows.push(r);
        };
        for b in BASELINES {
            row(format!("bare {b}"), true, b, b);
        }
        let smp = [tcg, icount]
            .iter()
            .flatten()
            .any(|r| r.baseline(SMP_BASELINE).is_some() || r.path(PATHS_SMP[0].0).is_some());
        if smp {
            row(
                format!("bare {SMP_BASELINE}"),
                true,
                SMP_BASELINE,
                SMP_BASELINE,
            );
        }
        let base_rows = BASELINES.len() + usize::from(smp);
        let smp_paths = if smp { PATHS_SMP } else { &[] };
        for (p, m) in PATHS.iter().chain(PATHS32).chain(smp_paths) {
            row(p.to_string(), false, p, m);
        }
        let cols = rows[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, r) in rows.iter().enumerate() {
            let mut line = String::new();
            for (c, v) in r.iter().enumerate() {
                let pad = widths[c] - v.chars().count();
                if c == 0 || c == cols - 1 {
                    let _ = write!(line, "{v}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{}{v}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if i == 0 || i == base_rows {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
                out.push('\n');
            }
        }
        for (clock, r) in [("TCG", tcg), ("icount", icount)] {
            for (p, why) in r.map_or(&[][..], |r| &r.unmeasured[..]) {
                let _ = writeln!(out, "{p} ({clock}): {why}");
            }
        }
        for (p, why) in NOT_YET {
            let _ = writeln!(out, "{p}: {why}");
        }
        if smp {
            let _ = writeln!(
                out,
                "smp-* rows: a boot of their own with -smp 4 and multi-threaded TCG, guest-bench mode=smp \
                 (one domain, 4 vCPUs); TCG ticks only (icount runs one virtual CPU at a time); \
                 {SMP_BASELINE}: that boot's bare syscall"
            );
            if let Some(q) = tcg.and_then(Report::scaling) {
                let _ = writeln!(
                    out,
                    "smp scaling: 4 vCPUs made {q:.2}x the hypercalls of 1 in the same time \
                     (4 x smp-calls-1vcpu / smp-calls-4vcpus; bounded by the host's cores)"
                );
            }
        }
        out.push('\n');
        let loop_of = |r: Option<&Report>, base: bool| {
            get(r, base, "loop").map_or("-".into(), |s| s.median.to_string())
        };
        let _ = writeln!(
            out,
            "timing overhead subtracted above (median of an empty timed window): hypervisor {} / guest {} TCG ticks, \
             {} / {} icount instructions",
            loop_of(tcg, true),
            loop_of(tcg, false),
            loop_of(icount, true),
            loop_of(icount, false)
        );
        if let Some(t) = tcg {
            let _ = writeln!(
                out,
                "TCG: {} run(s), each figure the median over the runs",
                t.runs
            );
            if let Some(e) = t.entry {
                let _ = writeln!(
                    out,
                    "TCG start-up: first guest instruction {} after CPU reset (hypervisor TSC; the baseline's {} left out)",
                    ms(e.ns.saturating_sub(e.baseline_ns)),
                    ms(e.baseline_ns)
                );
                if let Some(at) = t.first_line_at {
                    let ns = (at.as_nanos() as u64).saturating_sub(e.baseline_ns);
                    let _ = writeln!(out, "TCG start-up: first guest console line {} after QEMU started (host clock, same)", ms(ns));
                }
            }
        }
        if let Some(i) = icount {
            if let Some(e) = i.entry {
                let _ = writeln!(
                    out,
                    "icount start-up: first guest instruction after {} instructions since CPU reset (the baseline's {} left out)",
                    e.tsc.saturating_sub(e.baseline_tsc),
                    e.baseline_tsc
                );
                if let Some(t) = i.first_line_tsc {
                    let _ = writeln!(
                        out,
                        "icount start-up: first guest console line written after {} instructions (same)",
                        t.saturating_sub(e.baseline_tsc)
                    );
                }
            }
        }
        out.push_str(&self.xen_notes());
        out
    }

    /// The lines under the table about Xen: which Xen, its start-up, the goal.
    fn xen_notes(&self) -> String {
        let mut out = String::new();
        let Some(any) = self.xen_tcg.or(self.xen_icount) else {
            return out;
        };
        let _ = writeln!(
            out,
            "\nXen: {} with the same guest as dom0 in the same QEMU (rv/Xen: ringvisor's median over Xen's)",
            any.xen_version.as_deref().unwrap_or("(no `(XEN) Xen version` line)")
        );
        let mut missing: Vec<String> = Vec::new();
        for x in [self.xen_tcg, self.xen_icount].into_iter().flatten() {
            for (p, why) in &x.unmeasured {
                let l = format!("{p}: {why}");
                if !missing.contains(&l) {
                    missing.push(l);
                }
            }
        }
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "Xen (dom0 alone, no toolstack): {}",
                missing.join("; ")
            );
        }
        if let Some(x) = self.xen_tcg {
            let _ = writeln!(
                out,
                "Xen TCG: {} run(s), each figure the median over the runs",
                x.runs
            );
            if let Some(at) = x.first_line_at {
                let _ = writeln!(
                    out,
                    "Xen TCG start-up: first guest console line {} after QEMU started (host clock)",
                    ms(at.as_nanos() as u64)
                );
            }
        }
        if let Some(x) = self.xen_icount {
            if let Some(t) = x.first_line_tsc {
                let _ = writeln!(out, "Xen icount start-up: first guest console line written after {t} instructions since CPU reset");
            }
            if let Some(rv) = self.icount {
                let compared: Vec<(&str, f64)> = PATHS
                    .iter()
                    .filter_map(|(p, _)| Some((*p, vs_xen(rv.path(p), x.path(p))?)))
                    .collect();
                let met: Vec<String> = compared
                    .iter()
                    .filter(|(_, q)| *q <= XEN_GOAL)
                    .map(|(p, q)| format!("{p} {q:.2}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "goal (issue 8): at most {XEN_GOAL:.2} of Xen's instructions on every path; there on {} of {} paths compared{}",
                    met.len(),
                    compared.len(),
                    if met.is_empty() { String::new() } else { format!(" ({})", met.join(", ")) }
                );
            }
        }
        out
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_stats(rows: &[(String, Stat)]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|(n, s)| {
            format!(
                "{}: {{\"median\": {}, \"p10\": {}, \"p90\": {}, \"n\": {}}}",
                json_str(n),
                s.median,
                s.p10,
                s.p90,
                s.n
            )
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn json_report(r: &Report) -> String {
    let entry = r.entry.map_or("null".into(), |e| {
        format!(
            "{{\"tsc\": {}, \"ns\": {}, \"baseline_tsc\": {}, \"baseline_ns\": {}}}",
            e.tsc, e.ns, e.baseline_tsc, e.baseline_ns
        )
    });
    let unmeasured: Vec<String> = r
        .unmeasured
        .iter()
        .map(|(n, t)| format!("{}: {}", json_str(n), json_str(t)))
        .collect();
    format!(
        "{{\"runs\": {}, \"baseline\": {}, \"paths\": {}, \"not_measured\": {{{}}}, \"first_guest_instruction\": {}, \
         \"first_line_tsc\": {}, \"first_line_host_ns\": {}, \"result\": {}}}",
        r.runs,
        json_stats(&r.baseline),
        json_stats(&r.guest),
        unmeasured.join(", "),
        entry,
        r.first_line_tsc.map_or("null".into(), |t| t.to_string()),
        r.first_line_at.map_or("null".into(), |d| d.as_nanos().to_string()),
        r.result.as_deref().map_or("null".into(), json_str)
    )
}

fn json_ratios(rv: Option<&Report>, xen: Option<&Report>) -> String {
    let (Some(rv), Some(xen)) = (rv, xen) else {
        return "null".into();
    };
    let items: Vec<String> = PATHS
        .iter()
        .map(|(p, _)| {
            let q = vs_xen(rv.path(p), xen.path(p)).map_or("null".into(), |q| format!("{q:.3}"));
            format!("{}: {q}", json_str(p))
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

impl Runs<'_> {
    /// The same numbers as [`Runs::table`], as JSON, ticks throughout:
    /// `{"tcg": ..., "icount": ..., "xen_tcg": ..., "xen_icount": ...,
    /// "xen_version": ..., "rv_over_xen": {"tcg": {path: ratio}, "icount":
    /// {...}}, "matching_baseline": {...}, "not_yet": [...]}`; a clock not
    /// run is `null`.
    pub fn json(&self) -> String {
        let matching: Vec<String> = PATHS
            .iter()
            .chain(PATHS32)
            .chain(PATHS_SMP)
            .map(|(p, m)| format!("{}: {}", json_str(p), json_str(m)))
            .collect();
        let not_yet: Vec<String> = NOT_YET.iter().map(|(p, _)| json_str(p)).collect();
        let version = self
            .xen_tcg
            .or(self.xen_icount)
            .and_then(|x| x.xen_version.as_deref());
        format!(
            "{{\"tcg\": {}, \"icount\": {}, \"xen_tcg\": {}, \"xen_icount\": {}, \"xen_version\": {}, \
             \"rv_over_xen\": {{\"tcg\": {}, \"icount\": {}}}, \"matching_baseline\": {{{}}}, \"not_yet\": [{}], \"smp_scaling_tcg\": {}}}\n",
            self.tcg.map_or("null".into(), json_report),
            self.icount.map_or("null".into(), json_report),
            self.xen_tcg.map_or("null".into(), json_report),
            self.xen_icount.map_or("null".into(), json_report),
            version.map_or("null".into(), json_str),
            json_ratios(self.tcg, self.xen_tcg),
            json_ratios(self.icount, self.xen_icount),
            matching.join(", "),
            not_yet.join(", "),
            self.tcg
                .and_then(Report::scaling)
                .map_or("null".into(), |q| format!("{q:.3}"))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
(RV) ringvisor 0.1.0 - a small hypervisor for Xen PV guests
(RV) bench: baseline loop median 4 spread 4..4 n=100000 (timing overhead, subtracted from the others)
(RV) bench: baseline syscall median 2 spread 2..2 n=100000
(RV) bench: baseline int median 2 spread 2..2 n=100000
(RV) bench: baseline ud median 3 spread 3..3 n=100000
(RV) bench: baseline pf median 3 spread 3..3 n=100000
(RV) bench: first guest instruction at tsc=48674227 ns=48674221 (baseline took tsc=11026675 ns=11026673)
(RV) d0: running
(d0) TEST: bench
(d1) TEST: bench
(d0) BENCH: first-line tsc=49509065
(d1) INFO: echo: local ports [2, 3, 4] bound to ports 1.. of domain 0
(d1) RESULT: SUCCESS
(d0) BENCH: loop median 4 spread 4..4 n=20000
(d0) BENCH: null-hypercall median 707 spread 700..710 n=20000
(d0) BENCH-CONSOLE 64-byte console_io write, timed (not a result)...
(d0) BENCH: console-io-64 median 7699 spread 7699..7699 n=500
(d0) BENCH: int3-bounce median 1968 spread 1968..1968 n=20000
(d0) BENCH: pf-bounce median 1994 spread 1994..1994 n=20000
(d0) BENCH: user-syscall median 1983 spread 1983..1983 n=20000
(d0) BENCH: set-trap-table-32 median 7848 spread 7848..7848 n=20000
(d0) BENCH: mmu-update-1 median 1034 spread 1034..1034 n=20000
(d0) BENCH: update-va-mapping median 868 spread 868..868 n=20000
(d0) BENCH: event-send-upcall median 2100 spread 2100..2100 n=20000
(d0) BENCH: event-ping-pong median 21492 spread 21490..21500 n=20000
(d0) BENCH: domain-switch median 19158 spread 19158..19158 n=20000
(d0) BENCH: enosys-hypercall median 420 spread 420..420 n=20000
(d0) BENCH: console-io-0 median 538 spread 538..538 n=20000
(d0) BENCH: ud2-bounce median 2727 spread 2727..2727 n=20000
(d0) BENCH: cpuid-emul median 1693 spread 1693..1693 n=20000
(d0) BENCH: update-va-mapping-same median 593 spread 593..593 n=20000
(d0) BENCH: mmu-update-same median 810 spread 810..810 n=20000
(d0) RESULT: SUCCESS
(RV) exit: success (all 2 domain(s) powered off)
";

    fn parsed() -> Report {
        Report::parse(RUN.lines().map(|l| (l, Some(Duration::from_millis(5)))))
    }

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("median 114 spread 108..131 n=100000 (more)"),
            Some(Stat {
                median: 114,
                p10: 108,
                p90: 131,
                n: 100_000
            })
        );
        assert_eq!(parse_stat("median x spread 1..2 n=3"), None);
        assert_eq!(parse_stat("median 1 spread 12 n=3"), None);
        assert_eq!(parse_stat("not yet"), None);
    }

    #[test]
    fn a_run_is_read_whole() {
        let r = parsed();
        assert_eq!(r.baseline.len(), 5);
        assert_eq!(r.baseline("syscall").unwrap().median, 2);
        assert_eq!(
            r.path("null-hypercall"),
            Some(Stat {
                median: 707,
                p10: 700,
                p90: 710,
                n: 20000
            })
        );
        assert_eq!(r.path("loop").unwrap().median, 4);
        assert_eq!(r.guest.len(), 18);
        assert_eq!(r.path("domain-switch").unwrap().median, 19158);
        assert!(r.unmeasured.is_empty());
        assert_eq!(
            r.entry,
            Some(GuestEntry {
                tsc: 48674227,
                ns: 48674221,
                baseline_tsc: 11026675,
                baseline_ns: 11026673
            })
        );
        assert_eq!(r.first_line_tsc, Some(49509065));
        assert_eq!(r.first_line_at, Some(Duration::from_millis(5)));
        assert_eq!(r.result.as_deref(), Some("SUCCESS"));
        assert_eq!(r.check(), Ok(()));
    }

    const RUN32: &str = "\
(RV) bench: baseline int median 2 spread 2..2 n=100000
(d0) TEST: bench32
(d0) BENCH: 32-loop median 4 spread 4..4 n=20000
(d0) BENCH: 32-null-hypercall median 420 spread 420..420 n=20000
(d0) BENCH: 32-int3-bounce median 751 spread 751..751 n=20000
(d0) BENCH: 32-pf-bounce median 791 spread 791..791 n=20000
(d0) BENCH: 32-set-trap-table-32 median 7537 spread 7537..7537 n=20000
(d0) RESULT: SUCCESS
";

    #[test]
    fn the_32_bit_boot_is_added() {
        let r32 = Report::parse(RUN32.lines().map(|l| (l, None)));
        // Only `int` among the baselines here: the check says which miss.
        assert!(r32.check32().unwrap_err().contains("baseline pf"));
        let mut r = parsed();
        r.add_32(&r32);
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.path("32-pf-bounce").unwrap().median, 791);
        assert_eq!(r.baseline("int").unwrap().median, 2);
        let t = table(None, Some(&r));
        assert!(t.contains("32-set-trap-table-32"), "{t}");
        let failed = Report::parse(
            RUN32
                .replace("RESULT: SUCCESS", "RESULT: FAILURE: 1 failed")
                .lines()
                .map(|l| (l, None)),
        );
        let mut r = parsed();
        r.add_32(&failed);
        assert_eq!(r.result.as_deref(), Some("FAILURE: 1 failed"));
    }

    const RUN_SMP: &str = "\
(RV) bench: baseline syscall median 80 spread 78..90 n=100000
(d0) TEST: bench
(d0) BENCH: smp-calls-1vcpu median 600 spread 590..610 n=10
(d0) BENCH: smp-calls-4vcpus median 400 spread 380..420 n=10
(d0) BENCH: smp-uva-local median 2000 spread 1900..2100 n=300
(d0) BENCH: smp-uva-shootdown-3 median 90000 spread 80000..99000 n=300
(d0) BENCH: smp-uva-shootdown-1 median 9000 spread 8000..9900 n=300
(d0) BENCH: smp-event-remote median 30000 spread 20000..40000 n=300
(d0) RESULT: SUCCESS
";

    #[test]
    fn the_smp_boot_is_added() {
        let smp = Report::parse(RUN_SMP.lines().map(|l| (l, None)));
        assert_eq!(smp.check_smp(), Ok(()));
        assert_eq!(smp.scaling(), Some(6.0));
        let mut r = parsed();
        assert!(!table(Some(&r), None).contains("smp-"));
        r.add_smp(&smp);
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.baseline(SMP_BASELINE).unwrap().median, 80);
        // The local flush against that boot's own syscall: 2000 / 80.
        let t = table(Some(&r), None);
        assert!(
            t.lines()
                .any(|l| l.starts_with("smp-uva-local") && l.contains("25.0")),
            "{t}"
        );
        assert!(t.contains("bare syscall-smp"), "{t}");
        assert!(t.contains("smp scaling: 4 vCPUs made 6.00x"), "{t}");
        assert!(runs_json(&r).contains("\"smp_scaling_tcg\": 6.000"));
        let broken = Report::parse(
            RUN_SMP
                .replace(
                    "(d0) BENCH: smp-event-remote median 30000 spread 20000..40000 n=300\n",
                    "",
                )
                .replace("RESULT: SUCCESS", "RESULT: FAILURE: 1 failed")
                .lines()
                .map(|l| (l, None)),
        );
        let e = broken.check_smp().unwrap_err();
        assert!(
            e.contains("smp-event-remote: no BENCH line") && e.contains("FAILURE"),
            "{e}"
        );
        let mut r = parsed();
        r.add_smp(&broken);
        assert_eq!(r.result.as_deref(), Some("FAILURE: 1 failed (-smp 4 boot)"));
    }

    fn runs_json(r: &Report) -> String {
        json(Some(r), None)
    }

    #[test]
    fn check_names_what_is_missing() {
        let text = RUN
            .replace(
                "(d0) BENCH: pf-bounce median 1994 spread 1994..1994 n=20000\n",
                "",
            )
            .replace("RESULT: SUCCESS", "RESULT: FAILURE: 1 failed")
            .replace("baseline int median 2", "baseline int median 0");
        let r = Report::parse(text.lines().map(|l| (l, None)));
        let e = r.check().unwrap_err();
        assert!(e.contains("pf-bounce: no BENCH line"), "{e}");
        assert!(e.contains("guest RESULT: FAILURE"), "{e}");
        assert!(e.contains("baseline int: median 0"), "{e}");
        assert!(Report::default()
            .check()
            .unwrap_err()
            .contains("no guest RESULT line"));
    }

    #[test]
    fn two_domain_rows_without_figures() {
        // An error on ringvisor fails the check, with the guest's words.
        let text = RUN.replace(
            "event-ping-pong median 21492 spread 21490..21500 n=20000",
            "event-ping-pong error: an answer did not arrive",
        );
        let r = Report::parse(text.lines().map(|l| (l, None)));
        assert_eq!(
            r.unmeasured("event-ping-pong"),
            Some("error: an answer did not arrive")
        );
        assert!(r
            .check()
            .unwrap_err()
            .contains("event-ping-pong: error: an answer did not arrive"));
        assert!(r.check_guest().is_err());
        assert!(table(Some(&r), None)
            .contains("event-ping-pong (TCG): error: an answer did not arrive"));
        // "Not measured" is fine only where there is no second domain (Xen).
        let text = RUN.replace(
            "domain-switch median 19158 spread 19158..19158 n=20000",
            "domain-switch not measured (no second domain)",
        );
        let r = Report::parse(text.lines().map(|l| (l, None)));
        assert!(r
            .check()
            .unwrap_err()
            .contains("domain-switch: not measured (no second domain)"));
        assert_eq!(r.check_guest(), Ok(()));
        // A domain's failure is the run's, whichever RESULT line comes first.
        let text = RUN.replace("(d0) RESULT: SUCCESS", "(d0) RESULT: FAILURE: 1 failed");
        let r = Report::parse(text.lines().map(|l| (l, None)));
        assert_eq!(r.result.as_deref(), Some("FAILURE: 1 failed"));
        let text = RUN.replace("(d1) RESULT: SUCCESS", "(d1) RESULT: ERROR: x");
        assert_eq!(
            Report::parse(text.lines().map(|l| (l, None)))
                .result
                .as_deref(),
            Some("ERROR: x")
        );
    }

    #[test]
    fn runs_combine_by_median() {
        let a = parsed();
        let mut b = parsed();
        let mut c = parsed();
        b.guest[1].1.median = 900;
        c.guest[1].1.median = 100;
        c.guest[1].1.p90 = 5000;
        let m = Report::combine(&[a, b, c]);
        assert_eq!(m.runs, 3);
        assert_eq!(m.path("null-hypercall").unwrap().median, 707);
        assert_eq!(m.path("null-hypercall").unwrap().p90, 710);
        assert_eq!(m.result.as_deref(), Some("SUCCESS"));
        assert_eq!(median(vec![5, 1, 3, 2]), 2);
    }

    #[test]
    fn the_table_has_every_path_and_ratios() {
        let r = parsed();
        let t = table(Some(&r), Some(&r));
        for (p, _) in PATHS {
            assert!(t.contains(p), "{p} missing:\n{t}");
        }
        // 707 / 2 = 353.5 against syscall; int3 1968 / int 2 = 984.0.
        assert!(
            t.lines()
                .any(|l| l.starts_with("null-hypercall") && l.contains("353.5")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("int3-bounce") && l.contains("984.0")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("event-ping-pong") && l.contains("10746.0")),
            "{t}"
        );
        assert!(!t.contains("domain-switch: not yet"), "{t}");
        assert!(t.contains("32-null-hypercall"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("event-send-upcall") && l.contains("1050.0")),
            "{t}"
        );
        assert!(
            t.contains("first guest instruction after 37647552 instructions"),
            "{t}"
        );
        let only_tcg = table(Some(&r), None);
        assert!(only_tcg
            .lines()
            .any(|l| l.starts_with("null-hypercall") && l.trim_end().ends_with("syscall")));
    }

    #[test]
    fn json_is_well_formed_enough() {
        let r = parsed();
        let j = json(Some(&r), None);
        assert!(
            j.starts_with("{\"tcg\": {\"runs\": 1, \"baseline\": {\"loop\": {\"median\": 4"),
            "{j}"
        );
        assert!(j.contains("\"icount\": null"));
        assert!(j.contains("\"null-hypercall\": \"syscall\""));
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn guest_lines_from_any_domain() {
        assert_eq!(guest_part("(d12) BENCH: x"), Some("BENCH: x"));
        assert_eq!(guest_part("(RV) d0: running"), None);
        assert_eq!(
            guest_part("(RV) bench: baseline syscall median 2 spread 2..2 n=1"),
            None
        );
        assert_eq!(guest_part("(d) x"), None);
        // Xen's dom0: no prefix.
        assert_eq!(guest_part("BENCH: x"), Some("BENCH: x"));
        assert_eq!(guest_part("RESULT: SUCCESS"), Some("RESULT: SUCCESS"));
        assert_eq!(guest_part("BENCH-CONSOLE: y"), Some("BENCH-CONSOLE: y"));
        assert_eq!(guest_part("(XEN) Std. Loglevel: All"), None);
        assert_eq!(guest_part("(XEN)  Xen  kernel: 64-bit, lsb"), None);
        assert_eq!(guest_part("Bench: x"), None);
    }

    /// What Xen 4.17 printed for guest-bench as dom0 under icount
    /// (abridged; each line ended in \r\n).
    const XEN_RUN: &str = "\
(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1) (pkg-xen-devel@lists.alioth.debian.org) (x86_64-linux-gnu-gcc (Debian 12.2.0-14+deb12u1) 12.2.0) debug=n Wed Nov  4 16:52:28 UTC 2026
(XEN) Command line: console=com1 com1=115200,8n1 dom0_mem=64M dom0_max_vcpus=1 loglvl=all guest_loglvl=all
(XEN) Guest Loglevel: All
(XEN) Freed 656kB init memory
TEST: bench
BENCH: first-line tsc=298543078
INFO: n=20000 rounds=10 console=500: 10 rounds of every case, interleaved
PASS: set_trap_table (32 entries)
BENCH-CONSOLE 64-byte console_io write, timed (not a result)...
PASS: one upcall per EVTCHNOP_send
BENCH: loop median 4 spread 4..4 n=20000
BENCH: null-hypercall median 277 spread 277..277 n=20000
BENCH: console-io-64 median 8650 spread 8650..8650 n=500
BENCH: int3-bounce median 653 spread 653..653 n=20000
BENCH: pf-bounce median 716 spread 716..716 n=20000
BENCH: user-syscall median 694 spread 694..694 n=20000
BENCH: set-trap-table-32 median 3196 spread 3196..3196 n=20000
BENCH: mmu-update-1 median 1118 spread 1099..1118 n=20000
BENCH: update-va-mapping median 1009 spread 990..1009 n=20000
BENCH: event-send-upcall median 896 spread 896..896 n=20000
BENCH: event-ping-pong not measured (no second domain)
BENCH: domain-switch not measured (no second domain)
BENCH: enosys-hypercall median 212 spread 212..212 n=20000
BENCH: console-io-0 median 276 spread 276..276 n=20000
BENCH: ud2-bounce median 719 spread 719..719 n=20000
BENCH: cpuid-emul median 384 spread 384..384 n=20000
BENCH: update-va-mapping-same median 592 spread 592..592 n=20000
BENCH: mmu-update-same median 768 spread 768..768 n=20000
RESULT: SUCCESS
(XEN) Hardware Dom0 halted: halting machine
";

    fn xen() -> Report {
        Report::parse(
            XEN_RUN
                .lines()
                .map(|l| (l, Some(Duration::from_millis(1200)))),
        )
    }

    #[test]
    fn a_xen_run_is_read_without_prefixes() {
        let x = xen();
        assert_eq!(
            x.xen_version.as_deref(),
            Some("4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1)")
        );
        assert_eq!(x.path("null-hypercall").unwrap().median, 277);
        assert_eq!(
            x.path("mmu-update-1"),
            Some(Stat {
                median: 1118,
                p10: 1099,
                p90: 1118,
                n: 20000
            })
        );
        assert_eq!(x.guest.len(), PATHS.len() + 1 - TWO_DOMAIN.len());
        assert_eq!(
            x.unmeasured("domain-switch"),
            Some("not measured (no second domain)")
        );
        assert_eq!(x.first_line_tsc, Some(298543078));
        assert_eq!(x.result.as_deref(), Some("SUCCESS"));
        assert_eq!(x.check_guest(), Ok(()));
        // No hypervisor baselines on Xen: the full check says so.
        assert!(x.check().unwrap_err().contains("baseline syscall: no line"));
        assert!(parsed().xen_version.is_none());
    }

    #[test]
    fn the_table_and_json_with_xen() {
        let (r, x) = (parsed(), xen());
        let runs = Runs {
            tcg: Some(&r),
            icount: Some(&r),
            xen_tcg: Some(&x),
            xen_icount: Some(&x),
        };
        let t = runs.table();
        let head = t.lines().next().unwrap();
        assert_eq!(head.matches("rv/Xen").count(), 2, "{t}");
        // 707 / 277 = 2.55; 868 / 1009 = 0.86.
        let line = |p: &str| t.lines().find(|l| l.starts_with(p)).unwrap().to_string();
        assert!(
            line("null-hypercall").contains(" 277 ") && line("null-hypercall").contains("2.55"),
            "{t}"
        );
        assert!(line("update-va-mapping").contains("0.86"), "{t}");
        assert!(
            line("bare syscall")
                .split_whitespace()
                .filter(|w| *w == "-")
                .count()
                == 4,
            "{t}"
        );
        assert!(t.contains("Xen: 4.17.7 (Debian"), "{t}");
        assert!(
            t.contains("Xen icount start-up: first guest console line written after 298543078"),
            "{t}"
        );
        assert!(t.contains("there on 0 of 15 paths compared"), "{t}");
        // The two-domain rows: ringvisor's figure, '-' for Xen.
        let ping = line("event-ping-pong");
        assert!(
            ping.contains("21492") && ping.split_whitespace().filter(|w| *w == "-").count() == 4,
            "{t}"
        );
        assert!(t.contains("Xen (dom0 alone, no toolstack): event-ping-pong: not measured (no second domain); domain-switch"), "{t}");
        let only_icount = Runs {
            icount: Some(&r),
            xen_icount: Some(&x),
            ..Runs::default()
        }
        .table();
        assert_eq!(
            only_icount
                .lines()
                .next()
                .unwrap()
                .matches("rv/Xen")
                .count(),
            1
        );
        assert!(!table(Some(&r), Some(&r)).contains("Xen"));

        let j = runs.json();
        assert!(j.contains("\"xen_version\": \"4.17.7 (Debian"), "{j}");
        assert!(
            j.contains("\"rv_over_xen\": {\"tcg\": {\"null-hypercall\": 2.552"),
            "{j}"
        );
        assert!(
            j.contains("\"xen_icount\": {\"runs\": 1, \"baseline\": {}, \"paths\": {\"loop\""),
            "{j}"
        );
        assert!(
            j.contains(
                "\"not_measured\": {\"event-ping-pong\": \"not measured (no second domain)\""
            ),
            "{j}"
        );
        assert!(j.contains("\"domain-switch\": null"), "{j}");
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        let plain = json(Some(&r), None);
        assert!(
            plain.contains("\"xen_tcg\": null")
                && plain.contains("\"rv_over_xen\": {\"tcg\": null, \"icount\": null}")
        );
    }
}
