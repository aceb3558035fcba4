//! A short fuzz run for CI (docs/fuzzing.md): `guest-fuzz` and
//! `guest32-fuzz` beside `guest-victim`, fixed seeds, a few thousand
//! calls each. Every boot must end without a
//! hypervisor fault or hang, with the victim's `RESULT: SUCCESS` and every
//! frame back; a fuzz domain crashed by the hypervisor is allowed (the
//! next boot takes the next seed). Open hypervisor bugs are steered
//! around by name (`pvguest_common::fuzz::EXCLUSIONS`).

use ringvisor_tests::build;
use ringvisor_tests::fuzz::Campaign;
use std::time::Duration;

fn campaign(width: u32, seed: u64, calls: u64, exclude: &str) {
    let c = Campaign {
        elf: build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}")),
        width,
        seed,
        calls,
        per_boot: calls,
        exclude: exclude.into(),
        log_from: None,
        hang: Duration::from_secs(30),
        echo: false,
    };
    let r = c
        .run(|b| {
            eprintln!(
                "fuzz {width}-bit seed {}: {} of {} calls in {:.1} s{}",
                b.seed,
                b.reached,
                b.asked,
                b.elapsed.as_secs_f64(),
                b.crash
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_else(|e| panic!("fuzz {width}-bit: QEMU did not run: {e}"));
    match r {
        Ok(r) => eprintln!(
            "fuzz {width}-bit: {} calls in {} boots ({} crashed) in {:.1} s: {:.0} calls/s",
            r.calls,
            r.boots.len(),
            r.crashes(),
            r.elapsed.as_secs_f64(),
            r.calls_per_sec()
        ),
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn fuzz_64() {
    campaign(64, 1, 15_000, "none");
}

/// `guest32-fuzz`, nothing steered around (the umip-user bug it found is
/// fixed: 4c27f53).
#[test]
fn fuzz_32() {
    campaign(32, 1, 5_000, "none");
}
