//! `guest32-bench`: the 32-bit counterpart of `guest-bench` (guests/bench):
//! a few PV paths of a 32-bit PAE guest (kernel in ring 1), timed from
//! inside it. `cargo xtask bench` boots it on ringvisor (with `bench` on
//! the hypervisor command line, in a QEMU boot of its own) after the
//! 64-bit runs; there is no Xen column (Debian's Xen has no 32-bit PV).
//!
//! Timing, statistics and lines are guest-bench's: each iteration timed
//! on its own, `lfence; rdtsc; lfence`, the path, `lfence; rdtsc`; the
//! cases run interleaved, round by round; median, p10, p90 by nearest
//! rank; the `32-loop` case (timing nothing) is subtracted from the others.
//!
//! Cases (one `BENCH: <name> median <ticks> spread <p10>..<p90> n=<N>`
//! line each, then `RESULT: SUCCESS`):
//! - `32-loop`: the timing alone (printed raw).
//! - `32-null-hypercall`: `xen_version(XENVER_version)` through the
//!   hypercall page (`mov $17,%eax; int $0x82; ret`); the window also
//!   holds the `push %ebx; xor %ebx,%ebx; xor %ecx,%ecx ... pop %ebx`
//!   around the call. Every result must be the version read untimed.
//! - `32-int3-bounce`: `int3` in ring 1 → the guest's #BP handler (a trap
//!   entry at DPL 3 without `TI_IF`) → a native `iret` (ring 1 to ring 1:
//!   the 32-bit runtime's way out whenever the event mask need not change,
//!   which is the case here, events staying masked). The handler counts;
//!   every iteration must have counted one.
//! - `32-pf-bounce`: a load from an unmapped page in ring 1 → the #PF
//!   handler, which drops the error code and steps over the load → native
//!   `iret`. Every iteration must have counted one fault, with the address
//!   in the 32-bit `vcpu_info.arch.cr2`.
//! - `32-set-trap-table-32`: `set_trap_table` with 32 entries (vectors
//!   0-31: the runtime's, with the two bench handlers). Every call must
//!   return 0.
//!
//! Guest command line: `n=N` iterations per case (default 20000, at most
//! 20000), `rounds=R` (default 10).
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

pvguest32::guest_main!("bench32", run);

/// Samples kept per case.
const MAX_N: usize = 20_000;

const CASES: [&str; 5] = [
    "32-loop",
    "32-null-hypercall",
    "32-int3-bounce",
    "32-pf-bounce",
    "32-set-trap-table-32",
];

#[derive(Clone, Copy)]
struct Params {
    n: usize,
    rounds: usize,
}

fn parse_params(cmdline: &[u8]) -> Params {
    let mut p = Params {
        n: MAX_N,
        rounds: 10,
    };
    for word in cmdline.split(|&b| b == b' ') {
        let Some(eq) = word.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, v) = (&word[..eq], &word[eq + 1..]);
        let Some(v) = core::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        else {
            continue;
        };
        match k {
            b"n" => p.n = v.clamp(1, MAX_N),
            b"rounds" => p.rounds = v.max(1),
            _ => {}
        }
    }
    p.rounds = p.rounds.min(p.n);
    p
}

/// Iterations of round `r` of `total` spread over `rounds`.
fn share(total: usize, rounds: usize, r: usize) -> usize {
    total * (r + 1) / rounds - total * r / rounds
}

/// The 10th/50th/90th percentiles of `s` (sorted here; nearest rank,
/// rounding down: guest-bench's and the hypervisor's rule).
fn percentiles(s: &mut [u32]) -> Option<(u32, u32, u32)> {
    let n = s.len();
    if n == 0 {
        return None;
    }
    s.sort_unstable();
    let at = |p: usize| s[(n - 1) * p / 100];
    Some((at(50), at(10), at(90)))
}

#[cfg(target_arch = "x86")]
use bench::run;

#[cfg(target_arch = "x86")]
mod bench {
    use super::*;
    use core::arch::asm;
    use core::ptr::addr_of;
    use pvguest32::abi;
    use pvguest32::abi32::{StartInfo32, TrapInfo32};
    use pvguest32::hypercall::stub_addr;
    use pvguest32::report::{check_eq, error};
    use pvguest32::{println, start_info, traps};

    const LOOP: usize = 0;
    const NULL: usize = 1;
    const INT3: usize = 2;
    const PF: usize = 3;
    const TRAP_TABLE: usize = 4;

    struct Samples(core::cell::UnsafeCell<[[u32; MAX_N]; CASES.len()]>);
    // SAFETY: one vCPU, one thread of control.
    unsafe impl Sync for Samples {}
    static SAMPLES: Samples = Samples(core::cell::UnsafeCell::new([[0; MAX_N]; CASES.len()]));
    static DONE: pvguest32::cell::GuestCell<[usize; CASES.len()]> =
        pvguest32::cell::GuestCell::new([0; CASES.len()]);

    fn record(case: usize, dt: u32) {
        let mut done = DONE.get();
        let i = done[case];
        if i < MAX_N {
            // SAFETY: in bounds; no other reference into SAMPLES lives.
            unsafe { (*SAMPLES.0.get())[case][i] = dt };
            done[case] = i + 1;
            DONE.set(done);
        }
    }

    /// An address the 32-bit guest does not map (the #PF case loads from it).
    const UNMAPPED: u32 = 0x5ead_b000;

    // The handlers: entered on the 32-bit ring-1 frame (no stack switch):
    // [error code,] eip, cs | mask << 16, eflags. Each counts in
    // `bench32_counts` and leaves with a native `iret`.
    core::arch::global_asm!(
        r#"
        .data
        .balign 4
        .globl bench32_counts
    bench32_counts:
        .long 0, 0                  /* int3, #PF */
        .text
        .balign 16
        .globl bench32_int3_entry
    bench32_int3_entry:             /* #BP is a trap: eip is past the int3 */
        incl bench32_counts
        iret

        .balign 16
        .globl bench32_pf_entry
    bench32_pf_entry:               /* #PF is a fault: eip is the load */
        addl $4, %esp               /* the error code */
        addl $2, (%esp)             /* step over `mov (%edi), %al` (8a 07) */
        incl bench32_counts + 4
        iret
    "#,
        options(att_syntax)
    );

    extern "C" {
        fn bench32_int3_entry();
        fn bench32_pf_entry();
        static bench32_counts: [u32; 2];
    }

    fn counts() -> [u32; 2] {
        // SAFETY: written by the handlers only, between our instructions.
        unsafe { addr_of!(bench32_counts).read_volatile() }
    }

    macro_rules! timed {
        ($($body:literal),* ; $($operands:tt)*) => {{
            let dt: u32;
            // SAFETY: the path is one the hypervisor completes and returns
            // from (checked untimed first); every register it changes is
            // declared.
            unsafe {
                asm!(
                    "lfence",
                    "rdtsc",
                    "lfence",
                    "mov {t0}, eax",
                    $($body,)*
                    "lfence",
                    "rdtsc",
                    "sub eax, {t0}",
                    $($operands)*
                    t0 = out(reg) _,
                    out("eax") dt,
                    out("edx") _,
                );
            }
            dt
        }};
    }

    fn time_loop() -> u32 {
        timed!(;)
    }

    /// One hypercall through the page with ebx = `a1` (passed in ecx), ecx = 0; `rc`
    /// gets eax.
    fn time_hypercall(op: u32, a1: u32, rc: &mut u32) -> u32 {
        // The stub's address is in edi, not in a register the compiler
        // picks: it may pick ebx, which the call's argument replaces.
        timed!("push ebx", "mov ebx, ecx", "xor ecx, ecx", "call edi", "pop ebx", "mov {rc}, eax";
            in("edi") stub_addr(op),
            rc = lateout(reg) *rc,
            inout("ecx") a1 => _,
        )
    }

    fn time_int3() -> u32 {
        timed!("int3";)
    }

    fn time_pf(addr: u32) -> u32 {
        timed!(".byte 0x8a, 0x07"; in("edi") addr,)
    }

    fn entry(vector: u8, dpl: u8, f: unsafe extern "C" fn()) -> TrapInfo32 {
        TrapInfo32 {
            vector,
            flags: dpl,
            cs: pvguest32::abi32::FLAT_RING1_CS,
            address: f as usize as u32,
        }
    }

    pub fn run(si: &'static StartInfo32) {
        let p = parse_params(start_info::cmd_line(si));
        println!(
            "INFO: n={} rounds={}: {} rounds of every case, interleaved",
            p.n, p.rounds, p.rounds
        );
        // The runtime's 32 exception entries with the bench's #BP (DPL 3:
        // `int3` in ring 1) and #PF, neither masking events.
        let defaults = traps::default_trap_table();
        let mut table = [traps::TRAP_TABLE_END; 33];
        table[..32].copy_from_slice(&defaults[..32]);
        table[3] = entry(3, 3, bench32_int3_entry);
        table[14] = entry(14, 0, bench32_pf_entry);
        let table_va = pvguest32::va(table.as_ptr());

        // Each path once untimed: it must work before it is timed.
        let mut version = 0;
        time_hypercall(
            abi::HYPERVISOR_XEN_VERSION,
            abi::XENVER_VERSION,
            &mut version,
        );
        if version >> 16 < 3 {
            error(format_args!("xen_version(XENVER_version) = {version:#x}"));
        }
        let mut rc = u32::MAX;
        time_hypercall(abi::HYPERVISOR_SET_TRAP_TABLE, table_va, &mut rc);
        if rc != 0 {
            error(format_args!("set_trap_table (32 entries) = {}", rc as i32));
        }
        time_int3();
        time_pf(UNMAPPED);
        if counts() != [1, 1] || start_info::cr2() != UNMAPPED {
            error(format_args!(
                "untimed bounces: counts {:?} cr2 {:#x}",
                counts(),
                start_info::cr2()
            ));
        }

        let mut bad = 0u32;
        for r in 0..p.rounds {
            let k = share(p.n, p.rounds, r);
            for _ in 0..k {
                record(LOOP, time_loop());
            }
            for _ in 0..k {
                let mut v = 0;
                record(
                    NULL,
                    time_hypercall(abi::HYPERVISOR_XEN_VERSION, abi::XENVER_VERSION, &mut v),
                );
                bad += u32::from(v != version);
            }
            for _ in 0..k {
                let before = counts()[0];
                record(INT3, time_int3());
                bad += u32::from(counts()[0] != before.wrapping_add(1));
            }
            for i in 0..k {
                let before = counts()[1];
                // A different page each time, so that cr2 is checked anew.
                let addr = UNMAPPED + ((i as u32 & 1) << 12);
                record(PF, time_pf(addr));
                bad +=
                    u32::from(counts()[1] != before.wrapping_add(1) || start_info::cr2() != addr);
            }
            for _ in 0..k {
                let mut rc = u32::MAX;
                record(
                    TRAP_TABLE,
                    time_hypercall(abi::HYPERVISOR_SET_TRAP_TABLE, table_va, &mut rc),
                );
                bad += u32::from(rc != 0);
            }
        }
        traps::install_default_trap_table();
        check_eq("timed iterations whose check failed", bad, 0);

        // SAFETY: no other reference into SAMPLES exists from here on.
        let samples = unsafe { &mut *SAMPLES.0.get() };
        let done = DONE.get();
        let overhead = percentiles(&mut samples[LOOP][..done[LOOP]]).map_or(0, |s| s.0);
        for (c, name) in CASES.iter().enumerate() {
            let Some((m, p10, p90)) = percentiles(&mut samples[c][..done[c]]) else {
                println!("BENCH: {name} not measured (n=0)");
                continue;
            };
            let o = if c == LOOP { 0 } else { overhead };
            println!(
                "BENCH: {name} median {} spread {}..{} n={}",
                m.saturating_sub(o),
                p10.saturating_sub(o),
                p90.saturating_sub(o),
                done[c]
            );
        }
    }
}

// `cargo test -p guest32-bench --bin guest32-bench` (host).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_percentiles() {
        let p = parse_params(b"n=1000 rounds=4 x=1 junk");
        assert_eq!((p.n, p.rounds), (1000, 4));
        assert_eq!(parse_params(b"n=99999999 rounds=0").n, MAX_N);
        assert_eq!((0..3).map(|r| share(7, 3, r)).sum::<usize>(), 7);
        let mut v: Vec<u32> = (1..=11).rev().collect();
        assert_eq!(percentiles(&mut v), Some((6, 2, 10)));
    }
}
