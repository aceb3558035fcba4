//! The documents say what the code does, and point where they mean.
//!
//! Cases (host only, no QEMU):
//! - every relative link and image in README.md, docs/ (all of it), the
//!   guests' and lessons' READMEs points at a file or directory that
//!   exists, and every `#anchor` at a heading of its Markdown file;
//! - docs/abi.md's hypercall table reads (`| NR | NAME | yes/-ENOSYS |
//!   yes/-ENOSYS |`, the form `guest-hello` and `guest32-hello` read when
//!   they are built, and then check against the hypervisor), lists each of
//!   Xen's hypercalls 0-42 once, under Xen's name;
//! - `.ci/run` runs the README's "Start here" commands, as written;
//! - no file refers to a design document other than docs/design.md.
//!
//! The `cargo xtask` commands the README shows are checked against
//! `cargo xtask ... --help` by xtask/tests/readme.rs (it runs the binary).

#[path = "../../guests/rt-common/src/abitable.rs"]
#[allow(dead_code)]
mod abitable;

use ringvisor_tests::build::workspace_root;
use ringvisor_tests::docs::{check_relative_links, markdown_files};
use std::fs;

fn read(rel: &str) -> String {
    let p = workspace_root().join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

#[test]
fn relative_links_resolve() {
    let root = workspace_root();
    let mut files = vec![
        root.join("README.md"),
        root.join("guests/README.md"),
        root.join("guests32/README.md"),
        root.join("lessons/README.md"),
    ];
    files.extend(markdown_files(&root.join("docs")));
    let mut problems = Vec::new();
    for f in &files {
        check_relative_links(f, &mut problems);
    }
    assert!(files.len() > 10, "found only {files:?}");
    assert!(
        problems.is_empty(),
        "broken links:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn abi_hypercall_table_reads_and_names_every_hypercall() {
    let md = read("docs/abi.md");
    let rows: Vec<_> = abitable::rows(&md).collect();
    let bad: Vec<&str> = rows.iter().filter_map(|r| r.err()).collect();
    assert!(bad.is_empty(), "docs/abi.md: hypercall rows that do not read as | NR | NAME | yes/-ENOSYS | yes/-ENOSYS |:\n{}", bad.join("\n"));
    let rows: Vec<abitable::Row> = rows.into_iter().flatten().collect();
    let nrs: Vec<u32> = rows.iter().map(|r| r.nr).collect();
    // 0-42 are Xen's common numbers; 48 is x86's first arch hypercall (mca).
    assert_eq!(
        nrs,
        (0..=42).chain([48]).collect::<Vec<_>>(),
        "docs/abi.md lists hypercalls 0-42 and 48 once each, in order"
    );
    for r in &rows {
        let xen = ringvisor_abi::xen::hypercall_name(r.nr as u64);
        if xen == "unknown" {
            assert_eq!(
                r.name, "(unassigned)",
                "hypercall {} is unassigned in Xen",
                r.nr
            );
        } else {
            assert_eq!(
                r.name, xen,
                "docs/abi.md: hypercall {} is Xen's {xen}",
                r.nr
            );
        }
    }
    // What the guests were built with is this file (abitable::ABI_MD is
    // include_str!'d from the same path).
    assert_eq!(abitable::ABI_MD, md);
}

#[test]
fn ci_runs_the_readme_commands() {
    let readme = read("README.md");
    let start = readme
        .split("## Start here")
        .nth(1)
        .expect("README has a Start here section");
    let block = start
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in Start here");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!commands.is_empty());
    let ci = read(".ci/run");
    let ci_commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo xtask"))
        .collect();
    for c in &commands {
        assert!(
            ci_commands.iter().any(|l| l.starts_with(c)),
            ".ci/run does not run the README's `{c}`"
        );
    }
}

#[test]
fn design_references_point_at_docs_design_md() {
    let root = workspace_root();
    assert!(root.join("docs/design.md").is_file());
    let mut stale = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(p);
                }
                continue;
            }
            let Ok(text) = fs::read_to_string(&p) else {
                continue;
            };
            for (i, l) in text.lines().enumerate() {
                if l.contains("DESIGN.md") {
                    stale.push(format!(
                        "{}:{}",
                        p.strip_prefix(&root).unwrap().display(),
                        i + 1
                    ));
                }
            }
        }
    }
    // This file names it once, above.
    stale.retain(|s| !s.starts_with("tests/tests/docs.rs"));
    assert!(
        stale.is_empty(),
        "references to a DESIGN.md (the design is docs/design.md):\n  {}",
        stale.join("\n  ")
    );
}
