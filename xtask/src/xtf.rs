//! `cargo xtask xtf`: boot each XTF (Xen Test Framework) PV image of a
//! directory as domain 0, alone, read its `Test result:` line, print one
//! table, and with `--check FILE` compare against the expected results
//! kept in the repository (`xtf/expected.tsv`).
//!
//! The parsing (XTF's `tests.txt`, the expected-results file) and the
//! comparison are plain functions with host tests below; the runs go
//! through the harness's one QEMU runner (`ringvisor_tests::qemu`).

use ringvisor_tests::build::{self, Profile};
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Qemu, RunOutput, Verdict};
use ringvisor_tests::{bail, tools, Result};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub const HELP: &str = "\
cargo xtask xtf DIR [--env pv64|pv32pae] [--jobs N] [--timeout S]
                    [--check FILE] [--cmdline \"ARGS\"] [--echo] [NAME...]

Builds the hypervisor (release) and boots each XTF PV image found in DIR
(ELF files test-ENV-NAME, ENV pv64 or pv32pae, as XTF's build leaves them in
tests/*/ or bin/) as domain 0, alone, one QEMU run each:
  qemu-system-x86_64 -accel tcg -cpu max,-smap -m 256M ... -kernel
  target/ringvisor.elf -initrd 'DIR/test-ENV-NAME rv.mem=32M rv.vcpus=N -- CMDLINE'
(the harness's machine: TCG, SMAP off as for every run of this project,
the same as DIR's README for XTF; the hypervisor's command line is empty
unless --cmdline).
When DIR has a tests.txt (`ENV NAME [cmdline=ARGS] vcpus=N category=C`,
one variant a line, as ../shared/xtf/tests.txt), each variant is one run:
cmdline= is the guest's command line (XTF's VARY-CFG, e.g. pv-iopl's
hypercall and vmassist), vcpus= the domain's vCPUs (rv.vcpus=N); images
that tests.txt does not list run once with one vCPU and no command line.

A test's result is its console's `Test result: SUCCESS|SKIP|FAILURE|ERROR`
line; none at all is CRASH, or TIMEOUT when the timeout killed QEMU.
Prints one table: test (ENV:NAME[:VARIANT], the variant being its
cmdline), result, seconds, and under each result other than SUCCESS the
last console lines of that run (guest and hypervisor).

  --env ENV      only pv64 or only pv32pae images (default: both)
  --jobs N       QEMU runs at a time (default 2)
  --timeout S    bound on each run in seconds (default 20)
  --check FILE   compare with the expected results in FILE (xtf/expected.tsv:
                 env, name, variant, expected, xen-4.17, reason; tab-separated,
                 `-` for no variant, `#` comments): the table gains the
                 expected and Xen 4.17 columns (`<-` marks a result that
                 differs from FILE); exits 1 when a test expected
                 SUCCESS gives anything else, a test expected SKIP gives
                 anything but SUCCESS or SKIP, or such a test has no image
                 in DIR; prints, without failing, tests that now do better
                 than FILE says (\"now passing: update the file\"), other
                 changes, and tests FILE does not list
  --cmdline \"ARGS\" the hypervisor's command line, to look into a test
                 (e.g. \"trace=hypercall loglvl=debug\"; the last console
                 lines shown are then mostly the trace)
  --echo         stream every run's console (interleaved when --jobs > 1)
  NAME...        only these tests: NAME (every env and variant of it),
                 ENV:NAME or ENV:NAME:VARIANT

Without --check, exits 0 when every test gives SUCCESS or SKIP, else 1.
";

/// One XTF test variant: one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub env: String,
    pub name: String,
    /// The guest's command line (`cmdline=`); empty: none.
    pub cmdline: String,
    pub vcpus: u32,
    /// tests.txt's category (empty when not listed there).
    pub category: String,
}

impl Variant {
    fn plain(env: &str, name: &str) -> Self {
        Variant {
            env: env.into(),
            name: name.into(),
            cmdline: String::new(),
            vcpus: 1,
            category: String::new(),
        }
    }

    /// `ENV:NAME[:VARIANT]`.
    pub fn id(&self) -> String {
        test_id(&self.env, &self.name, &self.cmdline)
    }

    /// The image XTF's build names `test-ENV-NAME`.
    pub fn image(&self, dir: &Path) -> PathBuf {
        dir.join(format!("test-{}-{}", self.env, self.name))
    }
}

fn test_id(env: &str, name: &str, variant: &str) -> String {
    if variant.is_empty() {
        format!("{env}:{name}")
    } else {
        format!("{env}:{name}:{variant}")
    }
}

/// The environments XTF builds PV images for.
pub const ENVS: &[&str] = &["pv64", "pv32pae"];

/// Parses a tests.txt: `ENV NAME [cmdline=ARGS] [vcpus=N] [category=C]`,
/// `#` comments. `cmdline="a b"` may quote a value with spaces.
pub fn parse_tests_txt(text: &str) -> Result<Vec<Variant>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = split_words(line)
            .map_err(|e| ringvisor_tests::Error::new(format!("tests.txt line {}: {e}", i + 1)))?;
        let [env, name, rest @ ..] = &words[..] else {
            bail!(
                "tests.txt line {}: expected `ENV NAME [KEY=VALUE...]`: {line:?}",
                i + 1
            );
        };
        let mut v = Variant::plain(env, name);
        for w in rest {
            match w.split_once('=') {
                Some(("cmdline", c)) => v.cmdline = c.to_string(),
                Some(("vcpus", n)) => {
                    v.vcpus = match n.parse() {
                        Ok(n) if n >= 1 => n,
                        _ => bail!("tests.txt line {}: vcpus={n:?} is not a count", i + 1),
                    }
                }
                Some(("category", c)) => v.category = c.to_string(),
                _ => bail!("tests.txt line {}: unknown word {w:?}", i + 1),
            }
        }
        out.push(v);
    }
    Ok(out)
}

/// Words separated by blanks; `"..."` quotes blanks (the quotes go).
fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if any {
        words.push(cur);
    }
    Ok(words)
}

/// The variants to run from DIR: tests.txt's lines whose image is there
/// (in its order), then every other `test-ENV-NAME` image, sorted, once
/// with the defaults. Also returns the tests.txt lines with no image.
pub fn variants_in(dir: &Path) -> Result<(Vec<Variant>, Vec<Variant>)> {
    let mut images: Vec<(String, String)> = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => bail!("cannot read XTF directory {}: {e}", dir.display()),
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if let Some((env, name)) = image_name(&file) {
            // XTF's build leaves test-ENV-NAME.cfg (xl configs) beside the
            // images: only ELF files count.
            if is_elf(&e.path()) {
                images.push((env.to_string(), name.to_string()));
            }
        }
    }
    images.sort();
    let listed = match fs::read_to_string(dir.join("tests.txt")) {
        Ok(t) => parse_tests_txt(&t)?,
        Err(_) => Vec::new(),
    };
    let (mut present, missing): (Vec<Variant>, Vec<Variant>) = listed
        .iter()
        .cloned()
        .partition(|v| images.iter().any(|(e, n)| *e == v.env && *n == v.name));
    for (env, name) in &images {
        if !listed.iter().any(|v| v.env == *env && v.name == *name) {
            present.push(Variant::plain(env, name));
        }
    }
    Ok((present, missing))
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// `test-ENV-NAME` -> `(ENV, NAME)` for a PV environment.
fn image_name(file: &str) -> Option<(&str, &str)> {
    let rest = file.strip_prefix("test-")?;
    ENVS.iter().find_map(|env| {
        let name = rest.strip_prefix(env)?.strip_prefix('-')?;
        (!name.is_empty()).then_some((*env, name))
    })
}

/// Whether variant `v` is one the NAME arguments select (all when none).
pub fn selected(names: &[String], env: &str, name: &str, variant: &str) -> bool {
    names.is_empty()
        || names.iter().any(|n| {
            *n == name || *n == format!("{env}:{name}") || *n == test_id(env, name, variant)
        })
}

/// What one run gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Skip,
    Failure,
    Error,
    /// No `Test result:` line, and the run ended before the timeout.
    Crash,
    /// No `Test result:` line before the timeout.
    Timeout,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::Skip,
        Outcome::Failure,
        Outcome::Error,
        Outcome::Crash,
        Outcome::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Skip => "SKIP",
            Outcome::Failure => "FAILURE",
            Outcome::Error => "ERROR",
            Outcome::Crash => "CRASH",
            Outcome::Timeout => "TIMEOUT",
        }
    }

    /// SUCCESS or SKIP: the test had nothing to report against the
    /// hypervisor.
    pub fn is_pass(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Skip)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = ringvisor_tests::Error;
    fn from_str(s: &str) -> Result<Self> {
        match Outcome::ALL.iter().find(|o| o.as_str() == s) {
            Some(o) => Ok(*o),
            None => bail!("unknown result {s:?} (SUCCESS, SKIP, FAILURE, ERROR, CRASH, TIMEOUT)"),
        }
    }
}

/// The line XTF prints last: `Test result: SUCCESS`.
pub const RESULT_LINE: &str = "Test result: ";

/// The result of a run from its console lines: the last guest line
/// `(dN) Test result: X`; without one, TIMEOUT or CRASH.
pub fn outcome_of<'a>(lines: impl IntoIterator<Item = &'a str>, timed_out: bool) -> Outcome {
    let mut found = None;
    for l in lines {
        // Guest console lines are `(d0) ...`; never a hypervisor line.
        if l.starts_with("(RV)") {
            continue;
        }
        if let Some(at) = l.find(RESULT_LINE) {
            let word = l[at + RESULT_LINE.len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            if let Ok(o @ (Outcome::Success | Outcome::Skip | Outcome::Failure | Outcome::Error)) =
                word.parse()
            {
                found = Some(o);
            }
        }
    }
    match found {
        Some(o) => o,
        None if timed_out => Outcome::Timeout,
        None => Outcome::Crash,
    }
}

/// One line of the expected-results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub env: String,
    pub name: String,
    /// The variant (its cmdline); empty: none.
    pub variant: String,
    pub expected: Outcome,
    /// What Debian's Xen 4.17 gives in the same QEMU (free text: a result,
    /// or `-` where there is no reference).
    pub xen: String,
    pub reason: String,
}

impl Expectation {
    pub fn id(&self) -> String {
        test_id(&self.env, &self.name, &self.variant)
    }
}

/// The header of the expected-results file.
pub const EXPECTED_HEADER: &str = "env\tname\tvariant\texpected\txen-4.17\treason";

/// Parses the expected-results file: tab-separated
/// `env name variant expected xen-4.17 reason`, `-` for an empty variant,
/// the header line and `#` comments skipped. Every result other than
/// SUCCESS needs a reason; a test may appear once.
pub fn parse_expected(text: &str) -> Result<Vec<Expectation>> {
    let mut out: Vec<Expectation> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') || line == EXPECTED_HEADER {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 5 || cols.len() > 6 {
            bail!("line {n}: expected 6 tab-separated columns ({EXPECTED_HEADER}), found {}: {line:?}", cols.len());
        }
        let field = |s: &str| {
            if s.trim() == "-" {
                String::new()
            } else {
                s.trim().to_string()
            }
        };
        let e = Expectation {
            env: cols[0].trim().to_string(),
            name: cols[1].trim().to_string(),
            variant: field(cols[2]),
            expected: cols[3]
                .trim()
                .parse()
                .map_err(|e| ringvisor_tests::Error::new(format!("line {n}: {e}")))?,
            xen: cols[4].trim().to_string(),
            reason: cols
                .get(5)
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        };
        if !ENVS.contains(&e.env.as_str()) || e.name.is_empty() {
            bail!("line {n}: env must be one of {ENVS:?} and the name not empty: {line:?}");
        }
        if e.expected != Outcome::Success && e.reason.is_empty() {
            bail!(
                "line {n}: {} is expected {} but gives no reason",
                e.id(),
                e.expected
            );
        }
        if out.iter().any(|o| o.id() == e.id()) {
            bail!("line {n}: {} is listed twice", e.id());
        }
        out.push(e);
    }
    Ok(out)
}

/// What `--check` finds, one test each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Expected SUCCESS (or SKIP), now worse: fails the check.
    Regression {
        id: String,
        expected: Outcome,
        got: Outcome,
    },
    /// Expected SUCCESS or SKIP, but DIR has no image for it: fails the check.
    NotRun { id: String, expected: Outcome },
    /// Expected something other than SUCCESS, now SUCCESS (or expected
    /// worse than SKIP, now SKIP): update the file.
    NowPassing {
        id: String,
        expected: Outcome,
        got: Outcome,
    },
    /// Expected a failure, now another kind of failure.
    Changed {
        id: String,
        expected: Outcome,
        got: Outcome,
    },
    /// Ran, but not in the file.
    Unlisted { id: String, got: Outcome },
}

impl Finding {
    /// Whether this finding fails `--check`.
    pub fn fails(&self) -> bool {
        matches!(self, Finding::Regression { .. } | Finding::NotRun { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Regression { id, expected, got } => {
                write!(f, "REGRESSION: {id}: expected {expected}, got {got}")
            }
            Finding::NotRun { id, expected } => write!(
                f,
                "NOT RUN: {id}: expected {expected}, but DIR has no image for it"
            ),
            Finding::NowPassing { id, expected, got } => {
                write!(
                    f,
                    "now passing: {id}: expected {expected}, got {got}: update the file"
                )
            }
            Finding::Changed { id, expected, got } => {
                write!(f, "changed: {id}: expected {expected}, got {got} (not a regression): update the file")
            }
            Finding::Unlisted { id, got } => {
                write!(f, "not in the file: {id}: got {got}: add a line")
            }
        }
    }
}

/// A result worse than expected: anything but SUCCESS where SUCCESS was
/// expected, anything but SUCCESS or SKIP where SKIP was.
pub fn is_regression(expected: Outcome, got: Outcome) -> bool {
    match expected {
        Outcome::Success => got != Outcome::Success,
        Outcome::Skip => !got.is_pass(),
        _ => false,
    }
}

/// Compares `results` (test id, result) with `expected`. `considered`
/// says which lines of the file this run was meant to cover (the --env
/// and NAME selection): those that did not run are `NotRun` when they
/// were expected to pass.
pub fn compare(
    expected: &[Expectation],
    results: &[(String, Outcome)],
    considered: impl Fn(&Expectation) -> bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (id, got) in results {
        let got = *got;
        let Some(e) = expected.iter().find(|e| e.id() == *id) else {
            out.push(Finding::Unlisted {
                id: id.clone(),
                got,
            });
            continue;
        };
        let (id, expected) = (id.clone(), e.expected);
        if got == expected {
            continue;
        }
        out.push(if is_regression(expected, got) {
            Finding::Regression { id, expected, got }
        } else if got == Outcome::Success || (got == Outcome::Skip && !expected.is_pass()) {
            Finding::NowPassing { id, expected, got }
        } else {
            Finding::Changed { id, expected, got }
        });
    }
    for e in expected {
        if considered(e) && e.expected.is_pass() && !results.iter().any(|(id, _)| *id == e.id()) {
            out.push(Finding::NotRun {
                id: e.id(),
                expected: e.expected,
            });
        }
    }
    out
}

/// The console lines worth showing under a result other than SUCCESS:
/// from the domain's start on, without the bookkeeping of a clean end
/// (`(RV) memory: N frames free ...`, `shut down: poweroff`,
/// `(RV) exit: success ...`), the last `n`.
pub fn tail(lines: &[&str], n: usize) -> Vec<String> {
    let start = lines
        .iter()
        .position(|l| l.contains("d0: running"))
        .unwrap_or(0);
    let routine = |l: &str| {
        l.trim().is_empty()
            || (l.starts_with("(RV) ")
                && (l.starts_with("(RV) memory: ")
                    || l.starts_with("(RV) exit: success")
                    || l.ends_with("shutdown: poweroff")
                    || l.ends_with("shut down: poweroff")))
    };
    let keep: Vec<&str> = lines[start..]
        .iter()
        .copied()
        .filter(|l| !routine(l))
        .collect();
    keep[keep.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// `cargo xtask xtf` options.
#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub dir: PathBuf,
    pub env: Option<String>,
    pub jobs: usize,
    pub timeout: Duration,
    pub check: Option<PathBuf>,
    pub cmdline: String,
    pub echo: bool,
    pub names: Vec<String>,
    pub help: bool,
}

pub fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut dir = None;
    let mut o = Opts {
        dir: PathBuf::new(),
        env: None,
        jobs: 2,
        timeout: Duration::from_secs(20),
        check: None,
        cmdline: String::new(),
        echo: false,
        names: Vec::new(),
        help: false,
    };
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
            "--env" => {
                let v = value("--env")?;
                if !ENVS.contains(&v.as_str()) {
                    bail!("--env takes pv64 or pv32pae, not {v:?}");
                }
                o.env = Some(v);
            }
            "--jobs" => {
                let v = value("--jobs")?;
                o.jobs = match v.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => bail!("--jobs takes a count of at least 1, not {v:?}"),
                };
            }
            "--timeout" => {
                let v = value("--timeout")?;
                o.timeout = match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                    _ => bail!("--timeout takes seconds (more than 0), not {v:?}"),
                };
            }
            "--check" => o.check = Some(PathBuf::from(value("--check")?)),
            "--cmdline" => o.cmdline = value("--cmdline")?,
            "--echo" => o.echo = true,
            f if f.starts_with('-') => bail!("`cargo xtask xtf` has no option {f} (see --help)"),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => o.names.push(arg.clone()),
        }
    }
    match dir {
        Some(d) => o.dir = d,
        None if o.help => {}
        None => bail!("`cargo xtask xtf` needs DIR, the directory of XTF images (see --help)"),
    }
    Ok(o)
}

/// One finished run.
struct Run {
    variant: Variant,
    outcome: Outcome,
    out: RunOutput,
}

pub fn command(args: &[String]) -> Result<ExitCode> {
    let o = parse_opts(args)?;
    if o.help {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    // The expected results first: a malformed file fails before any run.
    let expected = match &o.check {
        Some(f) => match fs::read_to_string(f) {
            Ok(t) => Some(
                parse_expected(&t)
                    .map_err(|e| ringvisor_tests::Error::new(format!("{}: {e}", f.display())))?,
            ),
            Err(e) => bail!("cannot read {}: {e}", f.display()),
        },
        None => None,
    };
    let (all, missing) = variants_in(&o.dir)?;
    let wanted = |env: &str, name: &str, variant: &str| {
        o.env.as_deref().is_none_or(|e| e == env) && selected(&o.names, env, name, variant)
    };
    let variants: Vec<Variant> = all
        .into_iter()
        .filter(|v| wanted(&v.env, &v.name, &v.cmdline))
        .collect();
    for n in &o.names {
        if !variants
            .iter()
            .any(|v| selected(std::slice::from_ref(n), &v.env, &v.name, &v.cmdline))
        {
            bail!(
                "no XTF test {n:?} in {} (with --env {})",
                o.dir.display(),
                o.env.as_deref().unwrap_or("any")
            );
        }
    }
    if variants.is_empty() {
        bail!(
            "no XTF image (test-pv64-NAME, test-pv32pae-NAME) in {}",
            o.dir.display()
        );
    }
    for m in missing
        .iter()
        .filter(|v| wanted(&v.env, &v.name, &v.cmdline))
    {
        eprintln!(
            "note: tests.txt lists {} but {} does not exist",
            m.id(),
            m.image(&o.dir).display()
        );
    }

    tools::ensure(tools::QEMU)?;
    let elf = build::build_hypervisor(Profile::Release)?;
    eprintln!(
        "xtf: {} runs from {}, {} at a time, {} s each at most",
        variants.len(),
        o.dir.display(),
        o.jobs,
        o.timeout.as_secs_f64()
    );
    let runs = run_all(&elf, &o, &variants)?;

    // The table.
    let results: Vec<(String, Outcome)> =
        runs.iter().map(|r| (r.variant.id(), r.outcome)).collect();
    let width = results
        .iter()
        .map(|(id, _)| id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut table = String::new();
    let head = match &expected {
        Some(_) => format!(
            "{:width$}  {:8} {:>6}  {:8} {:8}\n",
            "test", "result", "s", "expected", "xen-4.17"
        ),
        None => format!("{:width$}  {:8} {:>6}\n", "test", "result", "s"),
    };
    table.push_str(&head);
    for r in &runs {
        let id = r.variant.id();
        let secs = r.out.elapsed.as_secs_f64();
        match &expected {
            Some(ex) => {
                let e = ex.iter().find(|e| e.id() == id);
                let (exp, xen) = match e {
                    Some(e) => (e.expected.as_str(), e.xen.as_str()),
                    None => ("-", "-"),
                };
                let mark = if e.is_some_and(|e| e.expected != r.outcome) {
                    "  <-"
                } else {
                    ""
                };
                table.push_str(&format!(
                    "{id:width$}  {:8} {secs:6.1}  {exp:8} {xen}{mark}\n",
                    r.outcome.as_str()
                ));
            }
            None => table.push_str(&format!(
                "{id:width$}  {:8} {secs:6.1}\n",
                r.outcome.as_str()
            )),
        }
        if r.outcome != Outcome::Success {
            let lines: Vec<&str> = r.out.lines.iter().map(|l| l.text.as_str()).collect();
            let last = tail(&lines, 6);
            if last.is_empty() {
                table.push_str("    | (no console output)\n");
            }
            for l in last {
                table.push_str(&format!("    | {l}\n"));
            }
        }
    }
    println!("{table}");
    let count = |f: &dyn Fn(Outcome) -> bool| results.iter().filter(|(_, o)| f(*o)).count();
    let mut summary = format!("xtf: {} runs:", results.len());
    for k in Outcome::ALL {
        let n = count(&|o| o == k);
        if n > 0 {
            summary.push_str(&format!(" {n} {k}"));
        }
    }
    for env in ENVS {
        let of_env: Vec<&(String, Outcome)> = results
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{env}:")))
            .collect();
        if !of_env.is_empty() {
            let ok = of_env
                .iter()
                .filter(|(_, o)| *o == Outcome::Success)
                .count();
            summary.push_str(&format!("; {env} {ok}/{} SUCCESS", of_env.len()));
        }
    }
    println!("{summary}");

    let Some(expected) = expected else {
        return Ok(if results.iter().all(|(_, o)| o.is_pass()) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    };
    let findings = compare(&expected, &results, |e| wanted(&e.env, &e.name, &e.variant));
    let file = o
        .check
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    for f in &findings {
        println!("{f}");
    }
    let failed = findings.iter().filter(|f| f.fails()).count();
    if failed > 0 {
        println!("xtf: check against {file} FAILED: {failed} test(s) expected to pass did not (REGRESSION, NOT RUN above)");
        Ok(ExitCode::FAILURE)
    } else {
        let also = if findings.is_empty() {
            ""
        } else {
            " (see the notes above)"
        };
        println!("xtf: check against {file}: no regression{also}");
        Ok(ExitCode::SUCCESS)
    }
}

/// Runs every variant, `o.jobs` at a time; results in the variants' order.
fn run_all(elf: &Path, o: &Opts, variants: &[Variant]) -> Result<Vec<Run>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<Run>>>> =
        Mutex::new((0..variants.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..o.jobs.min(variants.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(v) = variants.get(i) else { break };
                let r = run_one(elf, o, v);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                match &r {
                    Ok(r) => eprintln!(
                        "xtf: [{n}/{}] {} {} ({:.1} s; hypervisor: {})",
                        variants.len(),
                        v.id(),
                        r.outcome,
                        r.out.elapsed.as_secs_f64(),
                        r.out.verdict
                    ),
                    Err(e) => eprintln!("xtf: [{n}/{}] {}: {e}", variants.len(), v.id()),
                }
                slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every variant ran"))
        .collect()
}

fn run_one(elf: &Path, o: &Opts, v: &Variant) -> Result<Run> {
    // 32 MiB, as xtf/expected.tsv was recorded (without rv.mem the
    // initial domain gets nearly all of QEMU's memory, as Xen's dom0).
    let mut g = GuestSpec::new(v.image(&o.dir)).opt("mem", "32M");
    if v.vcpus != 1 {
        g = g.opt("vcpus", &v.vcpus.to_string());
    }
    g = g.args(&v.cmdline);
    let q = Qemu::kernel(elf)
        .cmdline(&o.cmdline)
        .guest(g)
        .timeout(Some(o.timeout))
        .echo(o.echo);
    let out = q.run()?;
    let outcome = outcome_of(
        out.lines.iter().map(|l| l.text.as_str()),
        out.verdict == Verdict::Timeout,
    );
    Ok(Run {
        variant: v.clone(),
        outcome,
        out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    const TESTS_TXT: &str = "\
# XTF PV test variants
# Format: <env> <name> [cmdline=<start_info.cmd_line>] vcpus=<n> category=<Makefile CATEGORY>
pv64 example vcpus=1 category=special
pv64 pv-iopl cmdline=hypercall vcpus=1 category=functional
pv64 pv-iopl cmdline=vmassist vcpus=1 category=functional
pv32pae xsa-296 vcpus=2 category=xsa

pv32pae quoted cmdline=\"a b\" vcpus=1
";

    #[test]
    fn tests_txt_variants() {
        let v = parse_tests_txt(TESTS_TXT).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(
            v[0],
            Variant {
                category: "special".into(),
                ..Variant::plain("pv64", "example")
            }
        );
        assert_eq!(v[0].id(), "pv64:example");
        assert_eq!(v[1].cmdline, "hypercall");
        assert_eq!(v[2].id(), "pv64:pv-iopl:vmassist");
        assert_eq!((v[3].env.as_str(), v[3].vcpus), ("pv32pae", 2));
        assert_eq!(v[4].cmdline, "a b");
        assert_eq!(
            v[4].image(Path::new("d")),
            Path::new("d/test-pv32pae-quoted")
        );
    }

    #[test]
    fn tests_txt_errors() {
        for bad in [
            "pv64",
            "pv64 x vcpus=0",
            "pv64 x vcpus=two",
            "pv64 x frob=1",
            "pv64 x cmdline=\"open",
        ] {
            assert!(parse_tests_txt(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_shared_tests_txt_parses_when_present() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("../shared/xtf/tests.txt");
        if let Ok(t) = fs::read_to_string(p) {
            let v = parse_tests_txt(&t).unwrap();
            assert!(v.len() >= 60, "{}", v.len());
            assert!(v.iter().any(|v| v.id() == "pv32pae:pv-iopl:vmassist"));
        }
    }

    #[test]
    fn image_names() {
        assert_eq!(image_name("test-pv64-xsa-182"), Some(("pv64", "xsa-182")));
        assert_eq!(
            image_name("test-pv32pae-pv-iopl"),
            Some(("pv32pae", "pv-iopl"))
        );
        assert_eq!(image_name("test-hvm64-example"), None);
        assert_eq!(image_name("test-pv64-"), None);
        assert_eq!(image_name("tests.txt"), None);
    }

    #[test]
    fn variants_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-xtf-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for f in [
            "test-pv64-pv-iopl",
            "test-pv64-zzz",
            "test-pv32pae-xsa-296",
            "test-hvm64-example",
        ] {
            fs::write(dir.join(f), b"\x7fELF...").unwrap();
        }
        // Not images: XTF's xl configs, anything not ELF.
        fs::write(dir.join("test-pv64-zzz.cfg"), "name=\"zzz\"").unwrap();
        fs::write(dir.join("README.md"), "x").unwrap();
        fs::write(dir.join("tests.txt"), TESTS_TXT).unwrap();
        let (present, missing) = variants_in(&dir).unwrap();
        let ids: Vec<String> = present.iter().map(Variant::id).collect();
        assert_eq!(
            ids,
            [
                "pv64:pv-iopl:hypercall",
                "pv64:pv-iopl:vmassist",
                "pv32pae:xsa-296",
                "pv64:zzz"
            ]
        );
        let missing: Vec<String> = missing.iter().map(Variant::id).collect();
        assert_eq!(missing, ["pv64:example", "pv32pae:quoted:a b"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn name_selection() {
        let none: Vec<String> = Vec::new();
        assert!(selected(&none, "pv64", "x", ""));
        let n = strings(&["pv-iopl"]);
        assert!(selected(&n, "pv32pae", "pv-iopl", "vmassist"));
        assert!(!selected(&n, "pv32pae", "xsa-7", ""));
        let n = strings(&["pv64:pv-iopl:vmassist", "pv32pae:xsa-7"]);
        assert!(selected(&n, "pv64", "pv-iopl", "vmassist"));
        assert!(!selected(&n, "pv64", "pv-iopl", "hypercall"));
        assert!(selected(&n, "pv32pae", "xsa-7", ""));
        assert!(!selected(&n, "pv64", "xsa-7", ""));
    }

    #[test]
    fn outcomes_from_the_console() {
        let run = [
            "(RV) d0: running",
            "(d0) --- Xen Test Framework ---",
            "(d0) Test result: SKIP",
            "(RV) exit: success",
        ];
        assert_eq!(outcome_of(run, false), Outcome::Skip);
        let two = ["(d0) Test result: FAILURE", "(d0) Test result: ERROR"];
        assert_eq!(outcome_of(two, false), Outcome::Error);
        // Only a guest's line counts, and only a known word.
        let rv = [
            "(RV) trace: Test result: SUCCESS",
            "(d0) Test result: MAYBE",
        ];
        assert_eq!(outcome_of(rv, false), Outcome::Crash);
        assert_eq!(outcome_of(["(d0) Hello"], true), Outcome::Timeout);
        assert_eq!(
            outcome_of(["(d0) Test result: SUCCESS"], true),
            Outcome::Success
        );
    }

    #[test]
    fn tail_skips_bookkeeping() {
        let lines = [
            "(RV) boot",
            "(RV) d0: running",
            "(d0) a",
            "",
            "(d0) Test result: FAILURE",
            "(RV) memory: 1 frames free at the end, 1 before the first domain",
            "(RV) exit: success",
        ];
        assert_eq!(tail(&lines, 2), ["(d0) a", "(d0) Test result: FAILURE"]);
        let crash = [
            "(RV) d0: running",
            "(d0) PANIC",
            "(RV) d0: shutdown: crash",
            "(RV) exit: failure (1 of 1)",
        ];
        assert_eq!(
            tail(&crash, 3),
            [
                "(d0) PANIC",
                "(RV) d0: shutdown: crash",
                "(RV) exit: failure (1 of 1)"
            ]
        );
        assert_eq!(tail(&lines, 10)[0], "(RV) d0: running");
        assert_eq!(tail(&lines[..1], 3), ["(RV) boot"]);
    }

    const EXPECTED: &str = "\
env\tname\tvariant\texpected\txen-4.17\treason
# comment
pv64\texample\t-\tSUCCESS\tSUCCESS\t
pv64\tpv-iopl\tvmassist\tFAILURE\tPANIC\tsomething
pv64\tskips\t-\tSKIP\tSKIP\tno feature
pv32pae\tcrash\t\tCRASH\t-\tbroken
pv64\tnoreason\t-\tSUCCESS\tSUCCESS
";

    #[test]
    fn expected_file_parses() {
        let e = parse_expected(EXPECTED).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].id(), "pv64:example");
        assert_eq!(e[1].id(), "pv64:pv-iopl:vmassist");
        assert_eq!(
            (e[1].expected, e[1].xen.as_str(), e[1].reason.as_str()),
            (Outcome::Failure, "PANIC", "something")
        );
        assert_eq!(
            (e[3].id().as_str(), e[3].expected),
            ("pv32pae:crash", Outcome::Crash)
        );
        assert_eq!(e[4].reason, "");
    }

    #[test]
    fn expected_file_errors() {
        for bad in [
            "pv64\tx\t-\tFAILURE\t-\t",                           // no reason
            "pv64\tx\t-\tFAILURE\t-",                             // no reason column at all
            "pv64\tx\t-\tGREAT\t-\twhy",                          // unknown result
            "hvm64\tx\t-\tSUCCESS\t-\t",                          // unknown env
            "pv64 x - SUCCESS - ok",                              // spaces, not tabs
            "pv64\tx\t-\tSUCCESS\t-\t\npv64\tx\t-\tSKIP\t-\tdup", // twice
        ] {
            assert!(parse_expected(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_repository_file_parses_and_covers_tests_txt() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let e =
            parse_expected(&fs::read_to_string(root.join("xtf/expected.tsv")).unwrap()).unwrap();
        assert!(e.len() >= 60, "{}", e.len());
        let p = root.join("../shared/xtf/tests.txt");
        if let Ok(t) = fs::read_to_string(p) {
            for v in parse_tests_txt(&t).unwrap() {
                assert!(
                    e.iter().any(|e| e.id() == v.id()),
                    "xtf/expected.tsv lacks {}",
                    v.id()
                );
            }
        }
    }

    fn r(id: &str, o: Outcome) -> (String, Outcome) {
        (id.to_string(), o)
    }

    #[test]
    fn comparison() {
        use Outcome::*;
        let e = parse_expected(EXPECTED).unwrap();
        let all = |_: &Expectation| true;
        // As expected: nothing to say.
        let same = [
            r("pv64:example", Success),
            r("pv64:pv-iopl:vmassist", Failure),
            r("pv64:skips", Skip),
            r("pv32pae:crash", Crash),
            r("pv64:noreason", Success),
        ];
        assert_eq!(compare(&e, &same, all), []);
        // Better than expected: notes, no failure.
        let better = [
            r("pv64:example", Success),
            r("pv64:pv-iopl:vmassist", Success),
            r("pv64:skips", Success),
            r("pv32pae:crash", Skip),
            r("pv64:noreason", Success),
        ];
        let f = compare(&e, &better, all);
        assert_eq!(
            f,
            [
                Finding::NowPassing {
                    id: "pv64:pv-iopl:vmassist".into(),
                    expected: Failure,
                    got: Success
                },
                Finding::NowPassing {
                    id: "pv64:skips".into(),
                    expected: Skip,
                    got: Success
                },
                Finding::NowPassing {
                    id: "pv32pae:crash".into(),
                    expected: Crash,
                    got: Skip
                },
            ]
        );
        assert!(f.iter().all(|f| !f.fails()));
        assert!(f[0].to_string().contains("now passing"));
        // Worse: SUCCESS -> SKIP and SKIP -> FAILURE fail; a failure of
        // another kind only changes; an unlisted test is a note.
        let worse = [
            r("pv64:example", Skip),
            r("pv64:pv-iopl:vmassist", Timeout),
            r("pv64:skips", Failure),
            r("pv32pae:crash", Error),
            r("pv64:new", Success),
        ];
        let f = compare(&e, &worse, all);
        assert_eq!(
            f,
            [
                Finding::Regression {
                    id: "pv64:example".into(),
                    expected: Success,
                    got: Skip
                },
                Finding::Changed {
                    id: "pv64:pv-iopl:vmassist".into(),
                    expected: Failure,
                    got: Timeout
                },
                Finding::Regression {
                    id: "pv64:skips".into(),
                    expected: Skip,
                    got: Failure
                },
                Finding::Changed {
                    id: "pv32pae:crash".into(),
                    expected: Crash,
                    got: Error
                },
                Finding::Unlisted {
                    id: "pv64:new".into(),
                    got: Success
                },
                Finding::NotRun {
                    id: "pv64:noreason".into(),
                    expected: Success
                },
            ]
        );
        assert_eq!(f.iter().filter(|f| f.fails()).count(), 3);
        // Lines outside the selection are not missed.
        let some = [r("pv64:example", Success)];
        assert_eq!(compare(&e, &some, |e| e.name == "example"), []);
        assert!(
            is_regression(Success, Crash)
                && !is_regression(Skip, Success)
                && !is_regression(Failure, Crash)
        );
    }

    #[test]
    fn options() {
        let o = parse_opts(&strings(&[
            "d",
            "--env",
            "pv32pae",
            "--jobs=3",
            "--timeout",
            "7.5",
            "--check",
            "f.tsv",
            "x",
            "pv64:y",
        ]))
        .unwrap();
        assert_eq!(o.dir, Path::new("d"));
        assert_eq!(o.env.as_deref(), Some("pv32pae"));
        assert_eq!((o.jobs, o.timeout), (3, Duration::from_millis(7500)));
        assert_eq!(o.check.as_deref(), Some(Path::new("f.tsv")));
        assert_eq!(o.names, ["x", "pv64:y"]);
        let d = parse_opts(&strings(&["d"])).unwrap();
        assert_eq!(
            (d.jobs, d.timeout, d.env, d.check),
            (2, Duration::from_secs(20), None, None)
        );
        assert!(parse_opts(&strings(&["--help"])).unwrap().help);
        for bad in [
            &["--env", "pv64"][..],
            &["d", "--env", "hvm64"],
            &["d", "--jobs", "0"],
            &["d", "--timeout", "0"],
            &["d", "--frob"],
        ] {
            assert!(parse_opts(&strings(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
