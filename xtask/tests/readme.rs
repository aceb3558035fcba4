//! Every `cargo xtask` command the documents show exists, and its
//! `--help` knows every option shown with it; the README's command table
//! lists every command of `cargo xtask help`.
//!
//! Runs the xtask binary itself (`help`, `COMMAND --help`: nothing built).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("runs xtask");
    assert!(
        out.status.success(),
        "`cargo xtask {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The commands `cargo xtask help` lists under COMMANDS.
fn commands() -> Vec<String> {
    let help = xtask(&["help"]);
    let list = help.split("COMMANDS:").nth(1).expect("help lists COMMANDS");
    list.lines()
        .take_while(|l| !l.trim().is_empty() || l.is_empty())
        .filter_map(|l| {
            l.strip_prefix("  ")?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// The options (`--x`) in a piece of command line.
fn flags(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '|' | '\\' | '`'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && *w != "--help")
        .map(|w| {
            w.split('=')
                .next()
                .unwrap()
                .trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        })
        .collect()
}

/// `cargo xtask CMD REST` wherever a document shows one: in code spans and
/// code blocks (up to a `#` comment or the span's end).
fn shown(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("cargo xtask ") {
            let after = &rest[at + "cargo xtask ".len()..];
            let end = after.find(['`', '#']).unwrap_or(after.len());
            let cmd_line = &after[..end];
            let mut words = cmd_line.split_whitespace();
            if let Some(cmd) = words.next() {
                let cmd = cmd.trim_matches(|c: char| !c.is_alphanumeric() && c != '-');
                if !cmd.is_empty() && cmd.chars().next().unwrap().is_ascii_lowercase() {
                    out.push((cmd.to_string(), words.collect::<Vec<_>>().join(" ")));
                }
            }
            rest = &after[end..];
            if rest.is_empty() {
                break;
            }
            rest = &rest[1..];
        }
    }
    out
}

#[test]
fn shown_commands_exist_and_their_help_agrees() {
    let commands = commands();
    assert!(
        commands.len() >= 8 && commands.iter().any(|c| c == "run"),
        "{commands:?}"
    );
    let mut docs = vec![
        root().join("README.md"),
        root().join("lessons/README.md"),
        root().join("guests32/README.md"),
    ];
    for d in ["docs", "docs/tour"] {
        for e in std::fs::read_dir(root().join(d)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "md") {
                docs.push(e.path());
            }
        }
    }
    let mut problems = Vec::new();
    let mut seen = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for (cmd, rest) in shown(&text) {
            seen += 1;
            let name = doc.strip_prefix(root()).unwrap().display();
            if !commands.contains(&cmd) {
                problems.push(format!(
                    "{name}: `cargo xtask {cmd}`: no such command (cargo xtask help: {commands:?})"
                ));
                continue;
            }
            if cmd == "help" {
                continue;
            }
            let help = xtask(&[&cmd, "--help"]);
            for f in flags(&rest) {
                if !help.contains(&f) {
                    problems.push(format!("{name}: `cargo xtask {cmd} {rest}`: `cargo xtask {cmd} --help` does not mention {f}"));
                }
            }
        }
    }
    assert!(seen > 10, "found only {seen} commands");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_table_lists_every_command_with_its_options() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## `cargo xtask`")
        .nth(1)
        .expect("README has a `cargo xtask` section");
    let section = section.split("\n## ").next().unwrap();
    let mut listed = Vec::new();
    let mut problems = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.split(" | ").next().unwrap().trim_start_matches("| ");
        for usage in cell.split("`, `") {
            let usage = usage.trim_matches('`');
            let cmd = usage.split_whitespace().next().unwrap().to_string();
            let help = xtask(&[&cmd, "--help"]);
            for f in flags(usage) {
                if !help.contains(&f) {
                    problems.push(format!(
                        "README table: `{usage}`: `cargo xtask {cmd} --help` does not mention {f}"
                    ));
                }
            }
            listed.push(cmd);
        }
    }
    for c in commands() {
        if c != "help" && !listed.contains(&c) {
            problems.push(format!(
                "README's `cargo xtask` table lacks `{c}` (in cargo xtask help)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_parsers_themselves() {
    assert_eq!(
        flags("run [--iso] [--kvm\\|--tcg] [--timeout S] --cmdline=\"x\""),
        ["--iso", "--kvm", "--tcg", "--timeout", "--cmdline"]
    );
    assert_eq!(
        shown("`cargo xtask lesson --list`, then `cargo xtask lesson N`\ncargo xtask bench --vs-xen   # ~40 s: --nope"),
        [("lesson".into(), "--list".into()), ("lesson".into(), "N".into()), ("bench".into(), "--vs-xen".into())]
    );
}
