//! `bench` on the command line: the hardware's own limit, measured in the
//! same boot as the PV paths it is compared with (`cargo xtask bench`,
//! docs/benchmarks.md).
//!
//! Before any guest runs, the hypervisor drops to a tiny ring-3 stub of its
//! own and times the bare round trips every PV path is built on:
//!
//! | name      | ring 3 does                        | ring 0 does                                   |
//! |-----------|------------------------------------|-----------------------------------------------|
//! | `syscall` | `syscall`                          | `sysretq` (LSTAR points there for the run)    |
//! | `int`     | `int $0xf1` (a DPL-3 gate, lent)   | `iretq`                                       |
//! | `ud`      | `ud2` (#UD, a fault)               | step over the `ud2`, `iretq`                  |
//! | `pf`      | a load from an unmapped page (#PF) | drop the error code, step over the load, `iretq` |
//! | `loop`    | nothing                            | nothing: the cost of the timing itself        |
//!
//! Each iteration is timed on its own: `lfence; rdtsc; lfence`, the round
//! trip, `lfence; rdtsc`, and the difference stored. Every case runs
//! [`ROUNDS`] rounds of [`PER_ROUND`] iterations, the cases interleaved
//! round by round so that a noisy host spreads over all of them alike. The
//! `loop` case's median is subtracted from every figure of the others, and
//! each prints one line:
//!
//! ```text
//! (RV) bench: baseline syscall median 114 spread 108..131 n=100000
//! ```
//!
//! (`spread` is the 10th..90th percentile.) Under QEMU with
//! `-icount shift=0,sleep=off` the TSC advances one tick per instruction, so
//! these are instruction counts: 2 for `syscall`+`sysretq`.
//!
//! The stub (arch/x86_64/bench.rs) and its stack live in pages mapped,
//! user-accessible (mm/userwin.rs), in the lower half of the hypervisor's
//! own page tables at [`BASE`] (nothing else
//! uses the lower half: it is the guests'), and are unmapped and freed
//! afterwards; LSTAR, TSS.RSP0 and the lent IDT gates are put back. The
//! production entry paths (entry.S) are not touched. Ring 0 only ever
//! executes its own image (SMEP holds) and reads the samples through the
//! direct map (SMAP holds).
//!
//! The last thing [`before_guests`] prints is the moment guests are about
//! to start, in TSC ticks since the CPU came out of reset:
//!
//! ```text
//! (RV) bench: first guest instruction at tsc=123456789 ns=41152263 (baseline took tsc=9876 ns=3292)
//! ```

/// Rounds per case; cases are interleaved round by round.
pub const ROUNDS: usize = 10;
/// Iterations per case per round.
pub const PER_ROUND: usize = 10_000;
/// Samples per case.
pub const SAMPLES: usize = ROUNDS * PER_ROUND;

/// Where the ring-3 stub is mapped (lower half, PML4 slot 0).
pub const BASE: u64 = 0x4000_0000;

/// Median and spread of one case, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub median: u32,
    pub p10: u32,
    pub p90: u32,
    pub n: usize,
}

impl Summary {
    /// Sorts `samples` and takes the 10th, 50th and 90th percentiles
    /// (nearest rank, rounding down). `None` for no samples.
    pub fn of(samples: &mut [u32]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |p: usize| samples[(samples.len() - 1) * p / 100];
        Some(Summary {
            median: at(50),
            p10: at(10),
            p90: at(90),
            n: samples.len(),
        })
    }

    /// The same figures less `overhead` (the cost of timing nothing).
    pub fn minus(self, overhead: u32) -> Summary {
        Summary {
            median: self.median.saturating_sub(overhead),
            p10: self.p10.saturating_sub(overhead),
            p90: self.p90.saturating_sub(overhead),
            n: self.n,
        }
    }
}

impl core::fmt::Display for Summary {
    /// `median M spread P10..P90 n=N`, the shape `cargo xtask bench` reads.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "median {} spread {}..{} n={}",
            self.median, self.p10, self.p90, self.n
        )
    }
}

#[cfg(target_os = "none")]
pub use hw::before_guests;

#[cfg(target_os = "none")]
mod hw {
    use super::{Summary, BASE, PER_ROUND, ROUNDS, SAMPLES};
    use crate::arch::x86_64::bench::CASES;
    use crate::arch::x86_64::time;
    use crate::console::{print, TAG};
    use crate::mm::userwin::Window;

    /// Bytes of sample buffer per case.
    const BUF_BYTES: u64 = (SAMPLES as u64 * 4).next_multiple_of(4096);

    fn baseline() -> Result<(), &'static str> {
        let mut w = Window::map(BASE, CASES.len() as u64 * BUF_BYTES / 4096)?;
        for round in 0..ROUNDS {
            for c in 0..CASES.len() {
                let at = c as u64 * BUF_BYTES + (round * PER_ROUND * 4) as u64;
                w.run(c, at, PER_ROUND);
            }
        }
        let samples =
            |w: &mut Window, c: usize| Summary::of(w.samples(c as u64 * BUF_BYTES, SAMPLES));
        let overhead = samples(&mut w, 0).map_or(0, |s| s.median);
        for (c, name) in CASES.iter().enumerate() {
            let Some(s) = samples(&mut w, c) else {
                continue;
            };
            if c == 0 {
                print(format_args!("{TAG}bench: baseline {name} {s} (timing overhead, subtracted from the others)\n"));
            } else {
                print(format_args!(
                    "{TAG}bench: baseline {name} {}\n",
                    s.minus(overhead)
                ));
            }
        }
        w.free();
        Ok(())
    }

    /// `bench`: measure the baseline, then say when the first guest
    /// instruction is about to run. Called once, right before the
    /// scheduler enters the first domain.
    pub fn before_guests() {
        let t0 = time::tsc();
        if let Err(why) = baseline() {
            crate::warn!("bench: no baseline: {why}");
        }
        let t1 = time::tsc();
        print(format_args!(
            "{TAG}bench: first guest instruction at tsc={t1} ns={} (baseline took tsc={} ns={})\n",
            time::tsc_to_ns(t1),
            t1 - t0,
            time::tsc_to_ns(t1 - t0)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=101).rev().collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 51,
                p10: 11,
                p90: 91,
                n: 101
            }
        );
        assert_eq!(
            s.minus(20),
            Summary {
                median: 31,
                p10: 0,
                p90: 71,
                n: 101
            }
        );
        assert_eq!(Summary::of(&mut []), None);
        let mut one = [7];
        assert_eq!(
            Summary::of(&mut one),
            Some(Summary {
                median: 7,
                p10: 7,
                p90: 7,
                n: 1
            })
        );
    }

    #[test]
    fn display_is_what_xtask_reads() {
        let s = Summary {
            median: 114,
            p10: 108,
            p90: 131,
            n: 100_000,
        };
        assert_eq!(s.to_string(), "median 114 spread 108..131 n=100000");
    }
}
