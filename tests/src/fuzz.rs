//! The fuzz campaign behind `cargo xtask fuzz` and `tests/tests/fuzz.rs`:
//! boot `guest-victim` (d0) beside one fuzz guest (`guest-fuzz` or
//! `guest32-fuzz`, d1), read the run, and boot again with the next seed
//! until the calls wanted are done.
//!
//! Each boot must end with: no `(RV) FATAL` and no panic verdict, no
//! timeout (a hang), the victim's `RESULT: SUCCESS`, and the hypervisor's
//! end-of-run memory line with as many frames free as before the first
//! domain. The fuzz guest either finishes (`FUZZ: done`, `RESULT: SUCCESS`)
//! or is crashed by the hypervisor (allowed: it may break itself); then
//! the calls it reached (its last `FUZZ: iter=` line) count and the next
//! boot takes the next seed.

use crate::guest::GuestSpec;
use crate::qemu::{Qemu, RunOutput, Verdict};
use crate::{build, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub elf: PathBuf,
    /// 64 or 32.
    pub width: u32,
    pub seed: u64,
    /// Calls (steps) wanted in total.
    pub calls: u64,
    /// Most steps one boot asks for.
    pub per_boot: u64,
    /// `exclude=` for the guest (`known`, `none`, `a,b`).
    pub exclude: String,
    /// Print every step from this one on (`log=`).
    pub log_from: Option<u64>,
    /// A boot without a progress line for this long is a hang.
    pub hang: Duration,
    /// Echo every boot's console.
    pub echo: bool,
}

/// What one boot did.
#[derive(Debug, Clone)]
pub struct Boot {
    pub seed: u64,
    pub asked: u64,
    /// Steps done (the last progress line; all of them when it finished).
    pub reached: u64,
    pub finished: bool,
    /// The hypervisor's line about the fuzz domain's crash, if any.
    pub crash: Option<String>,
    pub elapsed: Duration,
}

/// A failed check: what, and where to start reproducing it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub width: u32,
    pub seed: u64,
    pub what: String,
    /// Iterations done before (the last progress line).
    pub last_iter: u64,
    /// The last step the guest printed (`last=` of a progress line, or a
    /// `FUZZ: call` line), if any.
    pub last_call: Option<String>,
    pub transcript_tail: String,
    pub repro: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "FUZZ FAILURE ({}-bit, seed {}): {}",
            self.width, self.seed, self.what
        )?;
        writeln!(f, "  last iteration reached: {}", self.last_iter)?;
        writeln!(
            f,
            "  last call logged: {}",
            self.last_call.as_deref().unwrap_or("(none)")
        )?;
        writeln!(f, "  reproduce: {}", self.repro)?;
        write!(
            f,
            "--- the end of the console ---\n{}",
            self.transcript_tail
        )
    }
}

/// The campaign's result.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub boots: Vec<Boot>,
    pub calls: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn crashes(&self) -> usize {
        self.boots.iter().filter(|b| b.crash.is_some()).count()
    }
    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn guest_name(width: u32) -> &'static str {
    if width == 32 {
        "guest32-fuzz"
    } else {
        "guest-fuzz"
    }
}

/// The number after `key=` in `line`.
fn field(line: &str, key: &str) -> Option<u64> {
    let i = line.find(key)? + key.len();
    let digits: String = line[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Progress: `(d1) ... FUZZ: iter=I last=CALL` (console junk from the
/// fuzzer's own console writes may precede it on the line).
fn progress(out: &RunOutput) -> (u64, Option<String>, Option<Duration>) {
    let mut iter = 0;
    let mut last = None;
    let mut at = None;
    for l in &out.lines {
        if !l.text.starts_with("(d1) ") {
            continue;
        }
        if let Some(i) = l.text.find("FUZZ: iter=") {
            let t = &l.text[i..];
            iter = field(t, "iter=").unwrap_or(iter);
            last = t.find("last=").map(|j| t[j + 5..].to_string());
            at = Some(l.at);
        } else if let Some(i) = l.text.find("FUZZ: call ") {
            last = Some(l.text[i + 11..].to_string());
            at = Some(l.at);
        } else if l.text.contains("FUZZ: start") || l.text.contains("FUZZ: linked") {
            at = Some(l.at);
        }
    }
    (iter, last, at)
}

fn tail(out: &RunOutput, n: usize) -> String {
    let t = out.transcript();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

impl Campaign {
    fn boot(&self, seed: u64, iters: u64) -> Result<RunOutput> {
        let victim = build::test_guest("guest-victim")?;
        let fuzz = build::test_guest(guest_name(self.width))?;
        // Progress lines are what count the calls of a boot that does not
        // finish: a short last boot gets them more often (with every 1000,
        // a boot of 895 that crashes counts nothing and the campaign
        // never ends).
        let progress = (iters / 4).clamp(1, 1000);
        let mut args = format!(
            "victim=0 port=1 seed={seed} iters={iters} progress={progress} exclude={}",
            self.exclude
        );
        if let Some(k) = self.log_from {
            args.push_str(&format!(" log={k}"));
        }
        // The victim waits for the fuzz domain to be gone, up to its
        // deadline: longer than this boot may take.
        let timeout = self.hang + Duration::from_secs(5 + iters / 500);
        let q = Qemu::kernel(&self.elf)
            .guest(GuestSpec::new(victim).opt("mem", "16M").args(&format!(
                "attackers=1 gone=1 deadline={}",
                timeout.as_secs() + 30
            )))
            .guest(GuestSpec::new(fuzz).opt("mem", "8M").args(&args))
            .timeout(Some(timeout))
            .echo(self.echo);
        q.run()
    }

    /// Runs boots until `calls` steps are done or a check fails.
    pub fn run(&self, mut on_boot: impl FnMut(&Boot)) -> Result<Result<Report, Box<Failure>>> {
        let start = Instant::now();
        let mut report = Report::default();
        let mut seed = self.seed;
        while report.calls < self.calls {
            let asked = (self.calls - report.calls).min(self.per_boot);
            let out = self.boot(seed, asked)?;
            let (iter, last_call, last_at) = progress(&out);
            let fail = |what: String| {
                Box::new(Failure {
                    width: self.width,
                    seed,
                    what,
                    last_iter: iter,
                    last_call: last_call.clone(),
                    transcript_tail: tail(&out, 60),
                    repro: format!(
                        "cargo xtask fuzz --width {} --seed {seed} --iters {asked} --exclude {} --log-from {iter}",
                        self.width, self.exclude
                    ),
                })
            };
            if out.contains("(RV) FATAL") || out.verdict == Verdict::Panic {
                return Ok(Err(fail(format!(
                    "the hypervisor faulted or panicked ({})",
                    out.summary()
                ))));
            }
            if out.verdict == Verdict::Timeout {
                let quiet = last_at.map_or(out.elapsed, |t| out.elapsed.saturating_sub(t));
                return Ok(Err(fail(format!(
                    "hang: no verdict within {:.0} s, no progress line for the last {:.1} s",
                    out.elapsed.as_secs_f64(),
                    quiet.as_secs_f64()
                ))));
            }
            if !matches!(out.verdict, Verdict::Success | Verdict::Failure) {
                return Ok(Err(fail(format!("unexpected end: {}", out.summary()))));
            }
            // The fuzz guest's own checks (guest32-fuzz: ring 3 wrote a
            // supervisor page): a line of its own, not text inside a line
            // (a random console_io may print the guest's image, strings
            // and all).
            if let Some(l) = out
                .lines
                .iter()
                .find(|l| l.text.starts_with("(d1) FUZZ: BUG: "))
            {
                return Ok(Err(fail(format!(
                    "the fuzz guest caught the hypervisor: {}",
                    &l.text[5..]
                ))));
            }
            if !out.contains("(d0) RESULT: SUCCESS") {
                return Ok(Err(fail(
                    "the victim did not end with RESULT: SUCCESS".into(),
                )));
            }
            let mem = out
                .rv_lines()
                .find(|l| l.contains("frames free at the end"))
                .map(str::to_string);
            let numbers: Vec<u64> = mem
                .as_deref()
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            match &mem {
                Some(l)
                    if !l.contains("not given back")
                        && numbers.len() >= 2
                        && numbers[0] == numbers[1] => {}
                _ => {
                    return Ok(Err(fail(format!(
                        "not every frame came back: {}",
                        mem.as_deref().unwrap_or("no memory line")
                    ))))
                }
            }
            let finished = out.contains("(d1) FUZZ: done") && out.contains("(d1) RESULT: SUCCESS");
            let crash = out
                .rv_lines()
                .find(|l| {
                    l.starts_with("(RV) d1: crashed") || l.starts_with("(RV) d1: shutdown: crash")
                })
                .map(str::to_string);
            if !finished && crash.is_none() {
                // The fuzz guest ended some other way (a shutdown it drew,
                // an error of its own): counted like a crash.
                if !out.contains("(RV) d1") {
                    return Ok(Err(fail("the fuzz domain did not run".into())));
                }
            }
            let reached = if finished { asked } else { iter };
            let b = Boot {
                seed,
                asked,
                reached,
                finished,
                crash: if finished {
                    None
                } else {
                    Some(crash.unwrap_or_else(|| "ended without FUZZ: done".into()))
                },
                elapsed: out.elapsed,
            };
            on_boot(&b);
            report.calls += reached;
            report.boots.push(b);
            seed = seed.wrapping_add(1);
        }
        report.elapsed = start.elapsed();
        Ok(Ok(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_names() {
        assert_eq!(field("FUZZ: iter=3000 last=#2999 x", "iter="), Some(3000));
        assert_eq!(field("nothing", "iter="), None);
        assert_eq!(guest_name(32), "guest32-fuzz");
        assert_eq!(guest_name(64), "guest-fuzz");
    }
}
