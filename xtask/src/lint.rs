//! `cargo xtask lint`: the layering check of src/ (xtask/src/layers.rs),
//! then rustfmt and clippy over every crate, for each target it is built
//! for, with warnings as errors. `.ci/run` runs it before the
//! tests. The lint settings themselves live in the workspace Cargo.toml
//! (`[workspace.lints]`), so an editor's clippy sees the same ones.

use ringvisor_tests::build::{self, TARGET, TARGET32};
use ringvisor_tests::{bail, tools, Result};
use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask lint [--fix]

Checks what CI checks before the tests:
  the layering of src/ (xtask/src/layers.rs): no cycle among the top-level
  modules, `unsafe` only under src/arch/ and src/mm/ (the exception lists,
  ALLOWED_EDGES and ALLOWED_UNSAFE, are empty; a stale entry fails too);
  cargo fmt --all --check
  cargo clippy, warnings as errors, in four runs (each crate for the target
  it is built for): the hypervisor for x86_64-unknown-none; the 64-bit test
  guests for x86_64-unknown-none; the 32-bit test guests for
  i686-unknown-linux-gnu; the host crates (hypervisor unit tests, abi,
  xtask, tests) with --all-targets.
With --fix: runs `cargo fmt --all` and `cargo clippy --fix` first (on a
dirty tree too), then checks. Clippy builds into target/clippy so it does
not invalidate the test builds.
";

/// The workspace members under `dir` (`guests`, `guests32`), as `-p NAME`.
fn packages_under(dir: &str) -> Result<Vec<String>> {
    let root = build::workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let mut out = Vec::new();
    for member in manifest
        .split('"')
        .filter(|m| m.starts_with(&format!("{dir}/")))
    {
        let toml = std::fs::read_to_string(root.join(member).join("Cargo.toml"))?;
        let Some(name) = toml
            .lines()
            .find_map(|l| l.trim().strip_prefix("name").map(str::trim))
            .and_then(|l| l.strip_prefix('='))
            .map(|l| l.trim().trim_matches('"').to_string())
        else {
            bail!("{member}/Cargo.toml has no package name");
        };
        out.extend(["-p".to_string(), name]);
    }
    if out.is_empty() {
        bail!("no workspace members under {dir}/ in Cargo.toml");
    }
    Ok(out)
}

fn cargo(args: &[String]) -> Result<()> {
    let root = build::workspace_root();
    eprintln!("lint: cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", build::target_dir().join("clippy"))
        .args(args)
        .status()?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn command(args: &[String]) -> Result<ExitCode> {
    let mut fix = false;
    for a in args {
        match a.as_str() {
            "--fix" => fix = true,
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("`cargo xtask lint` has no option {other:?} (see --help)"),
        }
    }
    tools::ensure_targets(&[TARGET, TARGET32])?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let runs: Vec<Vec<String>> = vec![
        s(&["-p", "ringvisor", "--target", TARGET, "--release"]),
        [packages_under("guests")?, s(&["--target", TARGET])].concat(),
        [packages_under("guests32")?, s(&["--target", TARGET32])].concat(),
        s(&[
            "-p",
            "ringvisor",
            "-p",
            "ringvisor-abi",
            "-p",
            "xtask",
            "-p",
            "ringvisor-tests",
            "--all-targets",
        ]),
    ];
    if fix {
        cargo(&s(&["fmt", "--all"]))?;
        for r in &runs {
            let fix = s(&["clippy", "--fix", "--allow-dirty", "--allow-staged"]);
            cargo(&[fix, r.clone()].concat())?;
        }
    }
    match crate::layers::check(&build::workspace_root().join("src")) {
        Err(e) => bail!("layering (xtask/src/layers.rs, docs/design.md \"Layers\"):\n{e}"),
        Ok(layers) => {
            let drawn: Vec<String> = layers.iter().map(|l| l.join(" ")).collect();
            eprintln!("lint: layering clean (no module cycle, `unsafe` only in arch/ and mm/); layers, bottom up: {}", drawn.join(" | "));
        }
    }
    cargo(&s(&["fmt", "--all", "--check"]))?;
    for r in &runs {
        cargo(&[s(&["clippy"]), r.clone(), s(&["--", "-D", "warnings"])].concat())?;
    }
    eprintln!("lint: rustfmt and clippy clean");
    Ok(ExitCode::SUCCESS)
}
