//! Building the hypervisor and its GRUB ISO.

use crate::grub::{self, IsoModule};
use crate::guest::GuestSpec;
use crate::{bail, cmd, tools, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The bare-metal target the hypervisor is built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Cargo profile of the hypervisor build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Optimised (still with debug info): the default, fast under TCG.
    Release,
    Debug,
}

impl Profile {
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` when set (relative to the
/// current directory, as cargo reads it), else `target/` in the workspace.
/// The harness's own artifacts (`ringvisor.elf`, ISOs) go there too.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                std::env::current_dir().unwrap_or_default().join(d)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Guests booted by `cargo xtask run` / `iso` when none are named: test
/// guests (crates under guests/), built first, each as `CRATE[:ARGS]`.
/// `cargo xtask run` gives the demo `trace=bounce,hypercall` unless
/// --cmdline says otherwise.
pub const DEMO_GUESTS: &[&str] = &[
    // d0 and d1 exchange events over an interdomain channel.
    "guest-pingpong:role=server peer=1 rounds=10",
    "guest-pingpong:role=client peer=0 rounds=10",
    // Exceptions bounced to a 64-bit kernel (ring 3) ...
    "guest-traps",
    // ... and to a 32-bit one (ring 1).
    "guest32-traps",
];

/// `target/ringvisor.elf`.
pub fn elf_path() -> PathBuf {
    target_dir().join("ringvisor.elf")
}

/// `target/ringvisor.iso`.
pub fn iso_path() -> PathBuf {
    target_dir().join("ringvisor.iso")
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo build -p ringvisor --target x86_64-unknown-none [--release]`, then
/// copies the binary to `target/ringvisor.elf` and returns that path.
pub fn build_hypervisor(profile: Profile) -> Result<PathBuf> {
    tools::ensure_targets(&[TARGET])?;
    let mut c = cargo();
    c.current_dir(workspace_root())
        .args(["build", "-p", "ringvisor", "--target", TARGET]);
    if profile == Profile::Release {
        c.arg("--release");
    }
    cmd::run(&mut c)?;
    let built = target_dir()
        .join(TARGET)
        .join(profile.dir_name())
        .join("ringvisor");
    if !built.is_file() {
        bail!("cargo built nothing at {}", built.display());
    }
    let elf = elf_path();
    copy(&built, &elf)?;
    eprintln!("hypervisor: {}", elf.display());
    Ok(elf)
}

/// The target 32-bit test guests are built for (freestanding ELF32; see
/// `.cargo/config.toml`).
pub const TARGET32: &str = "i686-unknown-linux-gnu";

/// The test guests: every crate under `guests/` whose package is named
/// `guest-*` (64-bit) and under `guests32/` named `guest32-*` (32-bit);
/// the runtimes are not guests.
pub fn guest_crates() -> Vec<String> {
    let mut names = Vec::new();
    for (dir, prefix) in [("guests", "guest-"), ("guests32", "guest32-")] {
        let Ok(dirs) = fs::read_dir(workspace_root().join(dir)) else {
            continue;
        };
        for d in dirs.flatten() {
            let Ok(toml) = fs::read_to_string(d.path().join("Cargo.toml")) else {
                continue;
            };
            let name = toml.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("name = \"")?
                    .strip_suffix('"')
                    .map(str::to_string)
            });
            if let Some(n) = name.filter(|n| n.starts_with(prefix)) {
                names.push(n);
            }
        }
    }
    names.sort();
    names
}

fn guest_target(name: &str) -> &'static str {
    if name.starts_with("guest32-") {
        TARGET32
    } else {
        TARGET
    }
}

/// Where `cargo build` leaves guest `name` (always a release build: guests
/// run under TCG and must be quick).
pub fn guest_path(name: &str) -> PathBuf {
    target_dir()
        .join(guest_target(name))
        .join("release")
        .join(name)
}

/// Builds every test guest, one cargo run per target.
pub fn build_guests() -> Result<Vec<PathBuf>> {
    let names = guest_crates();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    tools::ensure_targets(tools::RUST_TARGETS)?;
    for target in [TARGET, TARGET32] {
        let these: Vec<&String> = names.iter().filter(|n| guest_target(n) == target).collect();
        if these.is_empty() {
            continue;
        }
        let mut c = cargo();
        c.current_dir(workspace_root())
            .args(["build", "--release", "--target", target]);
        for n in these {
            c.args(["-p", n]);
        }
        cmd::run(&mut c)?;
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| guest_path(n)).collect();
    for p in &paths {
        if !p.is_file() {
            bail!("cargo built no guest at {}", p.display());
        }
    }
    Ok(paths)
}

/// For the integration tests: guest `name`, built (all guests, once per
/// test process) unless `$RINGVISOR_GUESTS_BUILT` says xtask did it.
pub fn test_guest(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<()>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if std::env::var_os("RINGVISOR_GUESTS_BUILT").is_some() {
                return Ok(());
            }
            eprintln!("RINGVISOR_GUESTS_BUILT is unset: building the test guests");
            build_guests().map(|_| ())
        })
        .clone()?;
    let p = guest_path(name);
    if !p.is_file() {
        bail!(
            "no guest {name} at {} (is guests/{} a workspace member?)",
            p.display(),
            name.trim_start_matches("guest-")
        );
    }
    Ok(p)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    // Write beside, then rename: a QEMU reading the old file never sees a
    // half-written one.
    let tmp = to.with_extension(format!("tmp{}", std::process::id()));
    if let Err(e) = fs::copy(from, &tmp) {
        bail!("cannot copy {} to {}: {e}", from.display(), tmp.display());
    }
    fs::rename(&tmp, to)?;
    Ok(())
}

/// Copies `elf` without its debug info when `objcopy` is there: the release
/// build keeps full debug info (~5 MB), and GRUB reading all of it from
/// the emulated CD costs ~0.6 s of every ISO boot under TCG. Symbols stay
/// in `target/ringvisor.elf` for gdb.
fn copy_stripped(elf: &Path, to: &Path) -> Result<()> {
    if cmd::find_in_path("objcopy").is_none() {
        eprintln!("note: no objcopy (binutils): the ISO gets the hypervisor with its debug info");
        return copy(elf, to);
    }
    cmd::run(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(elf)
            .arg(to),
    )
}

/// Builds a GRUB ISO at `out` that boots from BIOS and UEFI: `elf` as `/boot/ringvisor.elf` with
/// command line `cmdline`, each guest as `/boot/NAME` (see [`grub`]).
pub fn build_iso(elf: &Path, cmdline: &str, guests: &[GuestSpec], out: &Path) -> Result<PathBuf> {
    tools::ensure(tools::ISO)?;
    crate::guest::check_exist(guests)?;
    let modules: Vec<IsoModule> = grub::plan_modules(guests);
    let cfg = grub::grub_cfg(cmdline, &modules)?;

    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "iso".into());
    let root = out.with_file_name(format!("{stem}.d"));
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    fs::create_dir_all(root.join("boot/grub"))?;
    fs::write(root.join("boot/grub/grub.cfg"), &cfg)?;
    copy_stripped(elf, &root.join("boot/ringvisor.elf"))?;
    for m in &modules {
        copy(&m.source, &root.join("boot").join(&m.name))?;
    }
    eprintln!("grub.cfg:\n{}", indent(&cfg));

    let mut c = Command::new("grub-mkrescue");
    // No translations, fonts or themes: a smaller ISO, built faster.
    c.args(["--locales=", "--fonts=", "--themes=", "-o"])
        .arg(out)
        .arg(&root);
    // grub-mkrescue and xorriso chat on stderr; keep that for failures only.
    cmd::announce(&c);
    let output = match c.output() {
        Ok(o) => o,
        Err(e) => bail!("cannot run grub-mkrescue: {e}"),
    };
    if !output.status.success() || !out.is_file() {
        bail!(
            "grub-mkrescue failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // One image for both firmwares: El Torito entries for BIOS and UEFI
    // (grub-mkrescue adds the UEFI one only when x86_64-efi is there).
    let report = Command::new("xorriso")
        .args(["-indev"])
        .arg(out)
        .args(["-report_el_torito", "plain"])
        .output();
    if let Ok(r) = report {
        let text = String::from_utf8_lossy(&r.stdout);
        for platform in ["BIOS", "UEFI"] {
            if !text
                .lines()
                .any(|l| l.starts_with("El Torito boot img") && l.contains(platform))
            {
                bail!(
                    "{} has no {platform} boot image (are grub-pc-bin and grub-efi-amd64-bin installed?)",
                    out.display()
                );
            }
        }
    }
    eprintln!("iso: {} (boots from BIOS and UEFI)", out.display());
    Ok(out.to_path_buf())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    | {l}\n")).collect()
}

/// For the integration tests: the hypervisor ELF from `$RINGVISOR_ELF`, or,
/// when that is unset, a release build made once per test process.
pub fn test_elf() -> Result<PathBuf> {
    static ELF: OnceLock<Result<PathBuf>> = OnceLock::new();
    ELF.get_or_init(|| match std::env::var_os("RINGVISOR_ELF") {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!("RINGVISOR_ELF={} does not exist", p.display());
            }
            Ok(p)
        }
        None => {
            eprintln!("RINGVISOR_ELF is unset: building the hypervisor (release)");
            build_hypervisor(Profile::Release)
        }
    })
    .clone()
}

/// For the integration tests: the plain ISO (hypervisor alone, empty command
/// line) from `$RINGVISOR_ISO`, or, when unset, built once per test process
/// as `target/ringvisor-test.iso`.
pub fn test_iso() -> Result<PathBuf> {
    static ISO: OnceLock<Result<PathBuf>> = OnceLock::new();
    ISO.get_or_init(|| match std::env::var_os("RINGVISOR_ISO") {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!("RINGVISOR_ISO={} does not exist", p.display());
            }
            Ok(p)
        }
        None => {
            eprintln!("RINGVISOR_ISO is unset: building target/ringvisor-test.iso");
            build_iso(
                &test_elf()?,
                "",
                &[],
                &target_dir().join("ringvisor-test.iso"),
            )
        }
    })
    .clone()
}
