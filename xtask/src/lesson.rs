//! `cargo xtask lesson`: runnable lessons on PV trap bouncing.
//!
//! Each lesson is `lessons/NN-name.md`: a title, a `<!-- lesson ... -->`
//! block saying what to boot and which part of the console it is about,
//! then what to look for ("Before you run it") and what it meant ("What
//! you saw"). `cargo xtask lesson N` prints the first, boots the guest(s)
//! with the trace on and streams the serial console, then prints the lines
//! the lesson is about and the second.
//!
//! Each lesson's expected trace is `lessons/NN-name.trace`: the lesson's
//! lines (its window of the console: the `(RV) trace:` lines, the guests'
//! TEST/PASS/FAIL/RESULT/EXPECT lines and the hypervisor lines the lesson
//! names), then the end-of-run report, with every hex number of five or
//! more digits replaced by `<addr>` so that unrelated code changes (which
//! move addresses) leave it alone while a changed bounce sequence does
//! not. `tests/tests/lessons.rs` boots every lesson and compares;
//! `cargo xtask lesson N --bless` rewrites the snapshot.
//!
//! This file is also compiled into `tests/tests/lessons.rs` (`#[path]`), so
//! it only uses the `ringvisor-tests` harness and std.

use ringvisor_tests::build::{self, Profile};
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Qemu, RunOutput, Verdict};
use ringvisor_tests::{bail, Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub const HELP: &str = "\
cargo xtask lesson --list
cargo xtask lesson N [--bless] [--quiet] [--timeout S]

Lessons on PV trap bouncing (lessons/NN-name.md; the tour they go with is
docs/tour/). `lesson N` (N: the number or the name) prints what to look
for, builds the hypervisor and the lesson's guest(s), boots them in QEMU
with the trace on (trace=bounce,hypercall,emulate) and streams the serial
console, then prints the lines the lesson is about and what they mean, and
compares them with the lesson's snapshot (lessons/NN-name.trace).

  --list       the lessons, with their status (pending ones cannot run yet)
  --bless      write the snapshot from this run (after checking the run
               ended as the lesson expects)
  --quiet      do not stream the console; print only the lesson's lines
  --timeout S  kill QEMU after S seconds (default 60)

Exits 0 when the run ended as the lesson expects and matches its snapshot.
";

/// Where the lesson files are.
pub fn lessons_dir() -> PathBuf {
    build::workspace_root().join("lessons")
}

/// The trace flags every lesson boots with, unless it says otherwise.
pub const TRACE_ALL: &str = "trace=bounce,hypercall,emulate";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Cannot run yet, and why.
    Pending(String),
}

#[derive(Debug, Clone)]
pub struct Lesson {
    pub number: u32,
    /// `NN-name`, the file stem.
    pub stem: String,
    pub title: String,
    pub status: Status,
    /// Guests, one domain each, in order: guest crates (`guest-*`) or
    /// assembly files (`tests/asm/NAME.S`, see [`guest_image`]).
    pub guests: Vec<String>,
    pub cmdline: String,
    /// How the run must end: `success`, `failure`, or `any` (the lesson
    /// is about its windows; the rest of the guest's run is not compared).
    pub verdict: String,
    /// The windows of the console the lesson is about, in order: each from
    /// the first line containing `from` to the first line after it
    /// containing `to` (inclusive; None: the start or the end of the run).
    /// No window: the whole run.
    pub windows: Vec<(Option<String>, Option<String>)>,
    /// More lines to keep (besides trace and guest verdict lines), by
    /// substring: hypervisor messages, a guest's own words.
    pub keep: Vec<String>,
    /// Lines to leave out, by substring (e.g. `hypercall console_io`).
    pub hide: Vec<String>,
    /// Only this domain's lines (when several run and interleave).
    pub domain: Option<u32>,
    /// The tour page it goes with (`docs/tour/...`).
    pub tour: Option<String>,
    pub before: String,
    pub after: String,
}

impl Lesson {
    pub fn trace_path(&self) -> PathBuf {
        lessons_dir().join(format!("{}.trace", self.stem))
    }

    /// `name` of `NN-name`.
    pub fn name(&self) -> &str {
        self.stem
            .split_once('-')
            .map_or(self.stem.as_str(), |(_, n)| n)
    }

    /// None: any end will do (`verdict: any`).
    pub fn expected_verdict(&self) -> Option<Verdict> {
        match self.verdict.as_str() {
            "any" => None,
            "failure" => Some(Verdict::Failure),
            _ => Some(Verdict::Success),
        }
    }
}

/// Parse one lesson file (`stem` is its name without `.md`).
pub fn parse(stem: &str, text: &str) -> Result<Lesson> {
    let number: u32 = match stem.split_once('-').and_then(|(n, _)| n.parse().ok()) {
        Some(n) => n,
        None => bail!("lessons/{stem}.md: the name must be NN-name"),
    };
    let title = text
        .lines()
        .find_map(|l| l.strip_prefix("# "))
        .ok_or_else(|| Error::new(format!("lessons/{stem}.md: no `# ` title")))?
        .trim()
        .to_string();
    let Some(start) = text.find("<!-- lesson") else {
        bail!("lessons/{stem}.md: no `<!-- lesson` block")
    };
    let Some(len) = text[start..].find("-->") else {
        bail!("lessons/{stem}.md: the lesson block has no `-->`")
    };
    let mut l = Lesson {
        number,
        stem: stem.to_string(),
        title,
        status: Status::Ready,
        guests: Vec::new(),
        cmdline: TRACE_ALL.to_string(),
        verdict: "success".to_string(),
        windows: Vec::new(),
        keep: Vec::new(),
        hide: Vec::new(),
        domain: None,
        tour: None,
        before: section(text, "## Before"),
        after: section(text, "## What you saw"),
    };
    for line in text[start + "<!-- lesson".len()..start + len].lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            bail!("lessons/{stem}.md: `{line}` is not `key: value`")
        };
        let v = v.trim().to_string();
        match k.trim() {
            "guests" => l.guests = v.split_whitespace().map(str::to_string).collect(),
            "cmdline" => l.cmdline = v,
            "verdict" if matches!(v.as_str(), "success" | "failure" | "any") => l.verdict = v,
            "from" => l.windows.push((Some(v), None)),
            "to" => match l.windows.last_mut() {
                Some((_, to @ None)) => *to = Some(v),
                _ => l.windows.push((None, Some(v))),
            },
            "keep" => l.keep.push(v),
            "hide" => l.hide.push(v),
            "domain" => {
                l.domain = Some(
                    v.parse()
                        .map_err(|_| Error::new(format!("lessons/{stem}.md: domain {v:?}")))?,
                )
            }
            "tour" => l.tour = Some(v),
            "status" => match v.strip_prefix("pending") {
                Some(why) => {
                    l.status = Status::Pending(why.trim_start_matches([':', ' ']).to_string())
                }
                None if v == "ready" => {}
                None => bail!("lessons/{stem}.md: status is `ready` or `pending: why`, not {v:?}"),
            },
            other => bail!("lessons/{stem}.md: unknown key {other:?} in the lesson block"),
        }
    }
    if l.status == Status::Ready && l.guests.is_empty() {
        bail!("lessons/{stem}.md: no `guests:`");
    }
    if l.before.is_empty() || l.after.is_empty() {
        bail!("lessons/{stem}.md: needs a `## Before you run it` and a `## What you saw` section");
    }
    Ok(l)
}

/// The text under the heading starting with `heading`, to the next `## `.
fn section(text: &str, heading: &str) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("## ") {
            inside = line.starts_with(heading);
            continue;
        }
        if inside {
            out.push(line);
        }
    }
    out.join("\n").trim().to_string()
}

/// Every lesson, by number.
pub fn load_all() -> Result<Vec<Lesson>> {
    let dir = lessons_dir();
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".md") else {
            continue;
        };
        if !stem.starts_with(|c: char| c.is_ascii_digit()) {
            continue; // README.md
        }
        out.push(parse(stem, &std::fs::read_to_string(e.path())?)?);
    }
    out.sort_by_key(|l| l.number);
    Ok(out)
}

/// The lesson `which` names: its number (`3`, `03`) or name.
pub fn find(lessons: &[Lesson], which: &str) -> Result<Lesson> {
    let hit = match which.parse::<u32>() {
        Ok(n) => lessons.iter().find(|l| l.number == n),
        Err(_) => lessons
            .iter()
            .find(|l| l.name() == which || l.stem == which),
    };
    match hit {
        Some(l) => Ok(l.clone()),
        None => bail!("no lesson {which:?} (see `cargo xtask lesson --list`)"),
    }
}

/// Hex numbers of five or more digits (addresses, machine frames) become
/// `<addr>`; shorter ones (selectors, error codes, flags) stay.
pub fn normalize(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'0'
            && i + 1 < b.len()
            && b[i + 1] == b'x'
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            let digits = b[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if digits >= 5 {
                out.push_str("<addr>");
                i += 2 + digits;
                continue;
            }
        }
        let c = line[i..].chars().next().unwrap_or('?');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn guest_line(text: &str) -> Option<(u32, &str)> {
    let rest = text.strip_prefix("(d")?;
    let (n, body) = rest.split_once(") ")?;
    Some((n.parse().ok()?, body))
}

/// Does `text` belong to domain `d`?
fn of_domain(text: &str, d: u32) -> bool {
    if let Some((n, _)) = guest_line(text) {
        return n == d;
    }
    let tag = format!("d{d}");
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == tag || w.starts_with(&format!("{tag}v")))
}

const KEY_LINES: &[&str] = &["TEST:", "PASS:", "FAIL:", "RESULT:", "EXPECT"];

/// Lines of the lesson's window worth showing: for the snapshot the trace,
/// the guests' verdict lines and the named hypervisor lines; for the
/// student (`with_info`) also the guests' INFO lines.
pub fn window(l: &Lesson, lines: &[&str], with_info: bool) -> Vec<String> {
    let whole = [(None, None)];
    let windows = if l.windows.is_empty() {
        &whole[..]
    } else {
        &l.windows[..]
    };
    let mut kept = Vec::new();
    let mut at = 0;
    for (from, to) in windows {
        let start = match from {
            Some(p) => match lines[at..].iter().position(|t| t.contains(p.as_str())) {
                Some(i) => at + i,
                None => {
                    kept.push(format!("!! the window starting at `from: {p}` never began"));
                    return kept;
                }
            },
            None => at,
        };
        let end = match to {
            Some(p) => match lines[start..].iter().position(|t| t.contains(p.as_str())) {
                Some(i) => start + i + 1,
                None => {
                    kept.push(format!("!! the window ending at `to: {p}` never ended"));
                    lines.len()
                }
            },
            None => lines.len(),
        };
        if !kept.is_empty() && !kept.last().is_some_and(|k: &String| k.starts_with("!!")) {
            kept.push("...".to_string());
        }
        kept.extend(
            lines[start..end]
                .iter()
                .filter(|t| wanted(l, t, with_info))
                .map(|t| t.to_string()),
        );
        at = end;
    }
    kept
}

fn wanted(l: &Lesson, t: &str, with_info: bool) -> bool {
    let shown = t.starts_with("(RV) trace: ")
        || l.keep.iter().any(|k| t.contains(k.as_str()))
        || guest_line(t).is_some_and(|(_, body)| {
            KEY_LINES.iter().any(|k| body.starts_with(k))
                || (with_info && body.starts_with("INFO:"))
        });
    shown
        && !l.hide.iter().any(|h| t.contains(h.as_str()))
        && l.domain.is_none_or(|d| of_domain(t, d))
}

/// The end-of-run report: each domain's end, then the exit line.
pub fn ending(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .copied()
        .filter(|t| {
            t.starts_with("(RV) exit: ")
                || (t.starts_with("(RV) d")
                    && t.split_once(": ").is_some_and(|(head, rest)| {
                        head.contains(" (")
                            && (rest.starts_with("shut down:") || rest.starts_with("crashed:"))
                    }))
        })
        .map(str::to_string)
        .collect()
}

pub const END_MARK: &str = "--- end of run";

/// The console of a run, line by line.
pub fn console(out: &RunOutput) -> Vec<&str> {
    out.lines.iter().map(|x| x.text.as_str()).collect()
}

/// The snapshot text of a run (what `NN-name.trace` holds).
pub fn snapshot(l: &Lesson, out: &RunOutput) -> String {
    let lines = console(out);
    let mut s = format!(
        "# lessons/{}.trace: what `cargo xtask lesson {}` must show (see lessons/README.md).\n\
         # Rewrite with `cargo xtask lesson {} --bless`. Hex numbers of 5+ digits are <addr>.\n",
        l.stem, l.number, l.number
    );
    for line in window(l, &lines, false) {
        s.push_str(&normalize(&line));
        s.push('\n');
    }
    s.push_str(END_MARK);
    s.push('\n');
    if l.expected_verdict().is_none() {
        s.push_str("# (verdict: any: how the run ends is not compared)\n");
        return s;
    }
    for line in ending(&lines) {
        s.push_str(&normalize(&line));
        s.push('\n');
    }
    s
}

/// The lines of a snapshot that are compared (not its `#` comments).
pub fn compared(snapshot: &str) -> Vec<&str> {
    snapshot.lines().filter(|l| !l.starts_with('#')).collect()
}

/// A small line diff (`-` expected, `+` got), empty when equal.
pub fn diff(expected: &[&str], got: &[&str]) -> String {
    let (n, m) = (expected.len(), got.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out, mut changed) = (0, 0, String::new(), false);
    while i < n || j < m {
        if i < n && j < m && expected[i] == got[j] {
            out.push_str(&format!("  {}\n", expected[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", expected[i]));
            i += 1;
            changed = true;
        } else {
            out.push_str(&format!("+ {}\n", got[j]));
            j += 1;
            changed = true;
        }
    }
    if changed {
        out
    } else {
        String::new()
    }
}

/// Compare a run with the lesson's snapshot file: `Ok(())` or a message
/// with the diff.
pub fn check(l: &Lesson, out: &RunOutput) -> std::result::Result<(), String> {
    let path = l.trace_path();
    let want = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(_) => {
            return Err(format!(
                "lesson {:02}: no snapshot {}; check the run, then `cargo xtask lesson {} --bless`",
                l.number,
                path.display(),
                l.number
            ))
        }
    };
    let got = snapshot(l, out);
    let d = diff(&compared(&want), &compared(&got));
    if d.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "lesson {:02} ({}): the run no longer matches {} (- expected, + got):\n{d}\
             If the change is intended, update the lesson's text and run `cargo xtask lesson {} --bless`.",
            l.number,
            l.title,
            path.display(),
            l.number
        ))
    }
}

/// Did the run end as the lesson says (and never with a hypervisor fault)?
pub fn ended_as_expected(l: &Lesson, out: &RunOutput) -> std::result::Result<(), String> {
    if out.contains("(RV) FATAL") || out.verdict == Verdict::Panic {
        return Err(format!(
            "lesson {:02}: the hypervisor faulted: {}",
            l.number,
            out.summary()
        ));
    }
    let ended = matches!(out.verdict, Verdict::Success | Verdict::Failure);
    if l.expected_verdict().map_or(!ended, |v| out.verdict != v) {
        return Err(format!(
            "lesson {:02}: expected the run to end in {}, got {}",
            l.number,
            l.verdict,
            out.summary()
        ));
    }
    Ok(())
}

/// A guest given as an assembly file (`tests/asm/NAME.S`, linked with
/// `tests/asm/NAME.ld`), as the 32-bit test guest is: assembled with
/// binutils for i386, as tests/tests/pv32.rs does.
pub fn is_asm_guest(g: &str) -> bool {
    g.ends_with(".S")
}

/// The image of guest `g`: a guest crate's build output, or an assembly
/// guest assembled now into `target/lessons/`.
pub fn guest_image(g: &str) -> Result<PathBuf> {
    if !is_asm_guest(g) {
        return Ok(build::guest_path(g));
    }
    let src = build::workspace_root().join(g);
    let ld = src.with_extension("ld");
    let stem = src
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = build::target_dir().join("lessons");
    std::fs::create_dir_all(&out)?;
    let obj = out.join(format!("{stem}.o"));
    let elf = out.join(format!("{stem}.elf"));
    let dir = src.parent().unwrap_or(&src).to_path_buf();
    ringvisor_tests::cmd::run(
        std::process::Command::new("as")
            .arg("--32")
            .arg("-I")
            .arg(&dir)
            .arg(&src)
            .arg("-o")
            .arg(&obj),
    )?;
    ringvisor_tests::cmd::run(
        std::process::Command::new("ld")
            .args(["-m", "elf_i386", "--no-warn-rwx-segments", "-T"])
            .arg(&ld)
            .arg(&obj)
            .arg("-o")
            .arg(&elf),
    )?;
    Ok(elf)
}

/// Boot the lesson: `elf` with the lesson's command line and guests.
pub fn boot(
    l: &Lesson,
    elf: &Path,
    guests: &[PathBuf],
    echo: bool,
    timeout: Duration,
) -> Result<RunOutput> {
    let mut q = Qemu::kernel(elf).cmdline(&l.cmdline);
    for g in guests {
        q = q.guest(GuestSpec::new(g));
    }
    q.timeout(Some(timeout)).echo(echo).run()
}

fn list(lessons: &[Lesson]) {
    println!("Lessons (lessons/NN-name.md; run one with `cargo xtask lesson N`):\n");
    for l in lessons {
        let (status, why) = match &l.status {
            Status::Ready => ("ready", String::new()),
            Status::Pending(w) => ("pending", format!("\n        pending: {w}")),
        };
        let guests = if l.guests.is_empty() {
            String::new()
        } else {
            format!(" [{}]", l.guests.join(", "))
        };
        println!("  {:02}  {:<8} {}{guests}{why}", l.number, status, l.title);
    }
}

fn rule(title: &str) {
    println!(
        "\n== {title} {}",
        "=".repeat(70usize.saturating_sub(title.len()))
    );
}

/// `cargo xtask lesson ...`.
pub fn command(args: &[String]) -> Result<ExitCode> {
    let (mut which, mut bless, mut quiet, mut do_list) = (None, false, false, false);
    let mut timeout = ringvisor_tests::qemu::DEFAULT_TIMEOUT;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            "--list" => do_list = true,
            "--bless" => bless = true,
            "--quiet" => quiet = true,
            "--timeout" => {
                let v = it
                    .next()
                    .ok_or_else(|| Error::new("--timeout needs a value"))?;
                match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => timeout = Duration::from_secs_f64(s),
                    _ => bail!("--timeout takes seconds, not {v:?}"),
                }
            }
            s if s.starts_with('-') => bail!("`cargo xtask lesson` has no option {s} (see --help)"),
            s if which.is_none() => which = Some(s.to_string()),
            s => bail!("`cargo xtask lesson` takes one lesson, not also {s:?}"),
        }
    }
    let lessons = load_all()?;
    if do_list || which.is_none() {
        list(&lessons);
        return Ok(ExitCode::SUCCESS);
    }
    let l = find(&lessons, which.as_deref().unwrap_or_default())?;

    rule(&format!("Lesson {:02}: {}", l.number, l.title));
    println!("{}", l.before);
    if let Some(t) = &l.tour {
        println!("\n(The tour page for this lesson: docs/tour/{t})");
    }
    if let Status::Pending(why) = &l.status {
        println!("\nThis lesson is pending: {why}");
        return Ok(ExitCode::FAILURE);
    }

    let elf = build::build_hypervisor(Profile::Release)?;
    if l.guests.iter().any(|g| !is_asm_guest(g)) {
        build::build_guests()?;
    }
    let guests: Vec<PathBuf> = l
        .guests
        .iter()
        .map(|g| guest_image(g))
        .collect::<Result<_>>()?;
    rule(&format!(
        "ringvisor {} with {}",
        l.cmdline,
        l.guests.join(", ")
    ));
    let out = boot(&l, &elf, &guests, !quiet, timeout)?;

    rule("The lines this lesson is about");
    let lines = console(&out);
    for line in window(&l, &lines, true) {
        println!("{line}");
    }
    for line in ending(&lines) {
        println!("{line}");
    }
    rule("What you saw");
    println!("{}", l.after);
    println!();

    if let Err(e) = ended_as_expected(&l, &out) {
        eprintln!("xtask: {e}");
        return Ok(ExitCode::FAILURE);
    }
    if bless {
        std::fs::write(l.trace_path(), snapshot(&l, &out))?;
        eprintln!("xtask: wrote {}", l.trace_path().display());
        return Ok(ExitCode::SUCCESS);
    }
    match check(&l, &out) {
        Ok(()) => {
            eprintln!(
                "xtask: lesson {:02}: the run matches {}",
                l.number,
                l.trace_path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
