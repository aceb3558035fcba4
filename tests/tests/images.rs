//! Kernels as GRUB and Xen hand them over: bzImages with initrds.
//!
//! Cases (QEMU, TCG):
//! - `-kernel` (multiboot1, module lines start with the path): guest-hello
//!   wrapped in a gzip bzImage (`ringvisor_tests::bzimage`, written by the
//!   harness) boots twice in one boot, each copy followed by its own
//!   initrd (a module that is not a kernel). Each guest finds its initrd
//!   mapped at `mod_start` with the right `mod_len` and prints its FNV-1a
//!   hash; the test compares length and hash with the files'. The
//!   hypervisor reports decompressing both, the initial domain gets Xen's
//!   dom0 default memory (no `rv.mem`), the second domain 32 MiB, and
//!   every frame (the decompression buffers too) is back at the end.
//! - The same from a GRUB 2 ISO, whose `module2` lines carry no path
//!   (`module2 /boot/hello.bz first guest`, `module2 /boot/rd0.img`, the
//!   lines a Xen user writes): the guests get the same arguments and
//!   initrds, and are named after the kernel's `GUEST_OS` note.

use ringvisor_tests::build;
use ringvisor_tests::bzimage;
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Qemu, RunOutput, Verdict};
use std::path::PathBuf;
use std::time::Duration;

fn timeout() -> Duration {
    let s = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    Duration::from_secs_f64(s)
}

/// A directory of the test's own: the tests run in parallel, and one must
/// not rewrite a file while the other copies it into an ISO.
fn dir(test: &str) -> PathBuf {
    let d = build::target_dir().join("images-tests").join(test);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// guest-hello as a gzip bzImage, and two initrds of different lengths
/// and contents (deterministic noise, neither a page multiple).
fn files(dir: &std::path::Path) -> (PathBuf, Vec<(PathBuf, Vec<u8>)>) {
    let hello = build::test_guest("guest-hello").unwrap_or_else(|e| panic!("no guest-hello: {e}"));
    let elf = std::fs::read(&hello).unwrap();
    let bz = dir.join("hello.bz");
    std::fs::write(&bz, bzimage::wrap_gzip(&elf)).unwrap();
    let mut initrds = Vec::new();
    for (i, len) in [5000usize, 70001].into_iter().enumerate() {
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ i as u64;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let p = dir.join(format!("rd{i}.img"));
        std::fs::write(&p, &bytes).unwrap();
        initrds.push((p, bytes));
    }
    (bz, initrds)
}

fn run(what: &str, q: Qemu) -> RunOutput {
    let out = q
        .timeout(Some(timeout()))
        .run()
        .unwrap_or_else(|e| panic!("{what}: QEMU did not run: {e}"));
    eprintln!("{what}: {}", out.summary());
    assert!(
        !out.contains("(RV) FATAL") && out.verdict != Verdict::Panic,
        "{what}: hypervisor panic\n{}",
        out.transcript()
    );
    out
}

/// Both domains ran guest-hello from the bzImage with their own initrd
/// and argument, and the run ended cleanly with every frame back.
fn check(what: &str, out: &RunOutput, initrds: &[(PathBuf, Vec<u8>)], args: [&str; 2]) {
    let t = out.transcript();
    assert_eq!(
        out.verdict,
        Verdict::Success,
        "{what}: {}\n{t}",
        out.summary()
    );
    let unpacked = out
        .rv_lines()
        .filter(|l| l.contains(": bzImage 2.15, gzip payload"))
        .count();
    assert_eq!(
        unpacked, 2,
        "{what}: expected two gzip bzImages decompressed\n{t}"
    );
    for (d, (_, bytes)) in initrds.iter().enumerate() {
        let want = format!("(d{d}) INFO: initrd = {} bytes at ", bytes.len());
        let hash = format!("fnv1a64 = {:#018x}", bzimage::fnv1a64(bytes));
        assert!(
            out.lines
                .iter()
                .any(|l| l.text.starts_with(&want) && l.text.ends_with(&hash)),
            "{what}: no `{want}... {hash}` line\n{t}"
        );
        assert!(
            out.contains(&format!(
                "(d{d}) PASS: initrd mapped in the bootstrap region"
            )),
            "{what}\n{t}"
        );
        assert!(
            out.contains(&format!("(d{d}) INFO: cmd_line = \"{}\"", args[d])),
            "{what}: d{d}'s arguments\n{t}"
        );
        assert!(
            out.contains(&format!("(d{d}) RESULT: SUCCESS")),
            "{what}: d{d} did not succeed\n{t}"
        );
    }
    // No rv.mem: d0 gets Xen's dom0 default, d1 the plain 32 MiB.
    assert!(
        out.rv_lines()
            .any(|l| l.starts_with("(RV) d0: ") && l.contains("the initial domain's default")),
        "{what}\n{t}"
    );
    assert!(
        out.rv_lines()
            .any(|l| l.starts_with("(RV) d1: built ") && l.contains("(64-bit, 32 MiB)")),
        "{what}\n{t}"
    );
    let end = out
        .rv_lines()
        .find(|l| l.contains("frames free at the end"))
        .unwrap_or_default()
        .to_string();
    assert!(
        !end.is_empty() && !end.contains("not given back"),
        "{what}: {end}\n{t}"
    );
}

#[test]
fn gzip_bzimage_twice_with_own_initrds_from_qemu_kernel() {
    let what = "two bzImages with initrds (-kernel)";
    let (bz, initrds) = files(&dir("kernel"));
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    // -initrd "hello.bz -- first guest,rd0.img --,hello.bz -- second,rd1.img --"
    let q = Qemu::kernel(elf)
        .guest(GuestSpec::new(&bz).args("first guest"))
        .guest(GuestSpec::new(&initrds[0].0))
        .guest(GuestSpec::new(&bz).args("second"))
        .guest(GuestSpec::new(&initrds[1].0));
    let out = run(what, q);
    check(what, &out, &initrds, ["first guest", "second"]);
    // QEMU names the modules: the domains are named after the files.
    assert!(
        out.rv_lines()
            .any(|l| l == "(RV) d0 (hello.bz): shut down: poweroff"),
        "{what}\n{}",
        out.transcript()
    );
}

#[test]
fn gzip_bzimage_twice_with_own_initrds_from_grub2() {
    let what = "two bzImages with initrds (GRUB 2 ISO)";
    let d = dir("grub2");
    let (bz, initrds) = files(&d);
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let iso = d.join("images.iso");
    let guests = [
        GuestSpec::new(&bz).args("first guest"),
        GuestSpec::new(&initrds[0].0),
        GuestSpec::new(&bz).args("second"),
        GuestSpec::new(&initrds[1].0),
    ];
    build::build_iso(&elf, "loglvl=info", &guests, &iso).unwrap_or_else(|e| panic!("{what}: {e}"));
    let out = run(what, Qemu::iso(&iso));
    check(what, &out, &initrds, ["first guest", "second"]);
    // GRUB 2 gives no path: the name comes from the image's GUEST_OS note.
    assert!(
        out.rv_lines()
            .any(|l| l.contains("(RV) loader: multiboot2 GRUB 2")),
        "{what}\n{}",
        out.transcript()
    );
    assert!(
        out.rv_lines()
            .any(|l| l == "(RV) d1 (ringvisor-test): shut down: poweroff"),
        "{what}\n{}",
        out.transcript()
    );
}
