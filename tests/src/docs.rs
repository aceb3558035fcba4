//! Checks that keep the documents honest, shared by the docs tests
//! (`tests/tests/docs.rs`, `tests/tests/tour.rs`).

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.md` file under `dir` (recursively), sorted.
pub fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The `](target)` links and images of a Markdown text, with their line
/// numbers (1-based). Text inside code (fenced blocks, `spans`) is skipped.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: `a](b)` inside backticks is not a link.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(close) = after.find(')') else { break };
            out.push((i + 1, after[..close].to_string()));
            rest = &after[close + 1..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-`
/// and `_`), spaces as `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of a Markdown text.
pub fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link and image in `file` points at a file or directory
/// that exists, and a `#anchor` into a Markdown file at one of its
/// headings. Web links (`scheme://`, `mailto:`) are not followed.
pub fn check_relative_links(file: &Path, problems: &mut Vec<String>) {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return problems.push(format!("{}: cannot read: {e}", file.display())),
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    for (line, target) in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, frag) = match target.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (target.as_str(), None),
        };
        let dest = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !dest.exists() {
            problems.push(format!(
                "{}:{line}: {target}: {} does not exist",
                file.display(),
                dest.display()
            ));
            continue;
        }
        if let Some(frag) = frag {
            if dest.extension().is_some_and(|x| x == "md") {
                let t = fs::read_to_string(&dest).unwrap_or_default();
                if !anchors(&t).iter().any(|a| a == frag) {
                    problems.push(format!(
                        "{}:{line}: {target}: no heading #{frag} in {}",
                        file.display(),
                        dest.display()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_skip_code() {
        let t = "see [a](x.md) and `[b](y.md)`\n```\n[c](z.md)\n```\n![img](p.svg) [d](#h)\n";
        let l: Vec<String> = links(t).into_iter().map(|(_, s)| s).collect();
        assert_eq!(l, ["x.md", "p.svg", "#h"]);
    }

    #[test]
    fn anchors_as_github_makes_them() {
        assert_eq!(anchor(" `cargo xtask`"), "cargo-xtask");
        assert_eq!(
            anchor(" Guests: module command lines"),
            "guests-module-command-lines"
        );
        assert_eq!(
            anchor(" 32-bit PAE guests (first cut)"),
            "32-bit-pae-guests-first-cut"
        );
        assert_eq!(anchors("# A\n```\n# not\n```\n## B c\n"), ["a", "b-c"]);
    }
}
