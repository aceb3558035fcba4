//! The tour (`docs/tour/`) and the code it explains stay in step.
//!
//! A tour page links code in lines `Code: [PATH `ITEM`](../../PATH)` (the
//! hypervisor's own code, which must carry a `Tour NN` tag in the comment
//! block right above ITEM) and `See: [PATH `ITEM`](../../PATH)` (other
//! code, which only has to exist); docs/tour/README.md describes the form.
//!
//! Cases (host only, no QEMU):
//! - the pages are `NN-name.md`, numbered 01, 02, ... without gaps, each
//!   listed in docs/tour/README.md, each with at least one `Code:` link;
//! - every code link names an existing file, its target is that file
//!   relative to the page, and the item is defined there (`fn`, `struct`,
//!   `enum`, `trait`, `type`, `const`, `static`, `mod`, or an asm label);
//! - every `Code:` item carries a tag naming the page;
//! - every `Tour NN` tag in `src/` and `abi/src/` sits above an item that
//!   page NN links (no stale tags);
//! - relative links and images in the tour and the lessons point at files
//!   that exist.

use ringvisor_tests::build::workspace_root;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Code,
    See,
}

#[derive(Debug, Clone)]
struct Link {
    page: u32,
    page_file: String,
    line: usize,
    kind: Kind,
    path: String,
    item: String,
    target: String,
}

fn tour_dir() -> PathBuf {
    workspace_root().join("docs").join("tour")
}

/// `(number, file name, text)` of every `NN-name.md` page, by number.
fn pages() -> Vec<(u32, String, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir(tour_dir())
        .expect("docs/tour exists")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".md") else {
            continue;
        };
        if stem == "README" {
            continue;
        }
        let n: u32 = stem
            .split_once('-')
            .and_then(|(n, _)| (n.len() == 2).then(|| n.parse().ok()).flatten())
            .unwrap_or_else(|| panic!("docs/tour/{name}: a page is NN-name.md"));
        out.push((n, name.clone(), fs::read_to_string(e.path()).unwrap()));
    }
    out.sort_by_key(|p| p.0);
    out
}

/// The code links of one page.
fn links_of(page: u32, page_file: &str, text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start().trim_start_matches(['-', '*']).trim_start();
        let (kind, rest) = if let Some(r) = line.strip_prefix("Code:") {
            (Kind::Code, r)
        } else if let Some(r) = line.strip_prefix("See:") {
            (Kind::See, r)
        } else {
            continue;
        };
        let mut rest = rest;
        let mut found = 0;
        while let Some(open) = rest.find('[') {
            let Some(mid) = rest[open..].find("](") else {
                break;
            };
            let text_part = &rest[open + 1..open + mid];
            let after = &rest[open + mid + 2..];
            let Some(close) = after.find(')') else { break };
            let target = &after[..close];
            rest = &after[close + 1..];
            let (path, item) = match text_part.split_once(' ') {
                Some((p, it)) if it.starts_with('`') && it.ends_with('`') && it.len() > 2 => (p, &it[1..it.len() - 1]),
                _ => panic!("docs/tour/{page_file}:{}: a code link is [PATH `ITEM`](TARGET), not [{text_part}]", i + 1),
            };
            out.push(Link {
                page,
                page_file: page_file.to_string(),
                line: i + 1,
                kind: kind.clone(),
                path: path.to_string(),
                item: item.to_string(),
                target: target.to_string(),
            });
            found += 1;
        }
        assert!(
            found > 0,
            "docs/tour/{page_file}:{}: a `Code:`/`See:` line without a link",
            i + 1
        );
    }
    out
}

fn all_links() -> Vec<Link> {
    pages()
        .iter()
        .flat_map(|(n, f, t)| links_of(*n, f, t))
        .collect()
}

fn is_asm(path: &str) -> bool {
    path.ends_with(".S") || path.ends_with(".s")
}

/// Line indices where `item` is defined in `src`.
fn definitions(src: &str, item: &str, asm: bool) -> Vec<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if asm {
            if let Some(rest) = t.strip_prefix(item) {
                if rest.starts_with(':') {
                    out.push(i);
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        if item_defined_by(t) == Some(item.to_string()) {
            out.push(i);
        }
    }
    out
}

/// The name a Rust line defines, if it is an item definition.
fn item_defined_by(line: &str) -> Option<String> {
    const KEYWORDS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "macro_rules!",
    ];
    let words: Vec<&str> = line.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if !KEYWORDS.contains(w) {
            continue;
        }
        // Everything before the keyword must be a qualifier.
        let qualifiers_only = words[..i].iter().all(|q| {
            matches!(
                *q,
                "pub"
                    | "unsafe"
                    | "extern"
                    | "async"
                    | "const"
                    | "default"
                    | "\"C\""
                    | "\"sysv64\""
            ) || q.starts_with("pub(")
        });
        if !qualifiers_only {
            return None;
        }
        let name: String = words
            .get(i + 1)?
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // `const fn name`: the keyword is the next one.
        if *w == "const" && KEYWORDS.contains(&words.get(i + 1).copied().unwrap_or_default()) {
            continue;
        }
        return (!name.is_empty()).then_some(name);
    }
    None
}

fn is_comment(t: &str) -> bool {
    t.starts_with("//") || t.starts_with("/*") || t.starts_with('*')
}

/// Lines that may sit between a comment and its item: attributes, asm
/// directives.
fn is_decoration(t: &str, asm: bool) -> bool {
    t.starts_with("#[") || (asm && t.starts_with('.') && !t.ends_with(':'))
}

/// The comment block right above line `def` (with attributes and asm
/// directives in between), as one string.
fn block_above(lines: &[&str], def: usize, asm: bool) -> String {
    let mut out = Vec::new();
    let mut in_c = false;
    let mut i = def;
    while i > 0 {
        i -= 1;
        let t = lines[i].trim();
        if in_c {
            out.push(t);
            if t.contains("/*") {
                in_c = false;
            }
            continue;
        }
        if t.ends_with("*/") && !t.contains("/*") {
            in_c = true;
            out.push(t);
            continue;
        }
        if is_comment(t) || is_decoration(t, asm) {
            out.push(t);
            continue;
        }
        break;
    }
    out.join("\n")
}

/// Page numbers of every `Tour NN[, NN]:` tag in `text`.
fn tags_in(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("Tour ") {
        rest = &rest[at + 5..];
        let Some(colon) = rest.find(':') else { break };
        let list = &rest[..colon];
        let nums: Option<Vec<u32>> = list
            .split(',')
            .map(|n| n.trim())
            .map(|n| {
                (n.len() == 2 && n.chars().all(|c| c.is_ascii_digit())).then(|| n.parse().unwrap())
            })
            .collect();
        if let Some(nums) = nums {
            for n in nums {
                out.push((n, list.to_string()));
            }
        }
    }
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn pages_are_numbered_listed_and_link_code() {
    let pages = pages();
    assert!(!pages.is_empty(), "no tour pages");
    let readme = read(&tour_dir().join("README.md"));
    for (i, (n, file, text)) in pages.iter().enumerate() {
        assert_eq!(
            *n as usize,
            i + 1,
            "docs/tour: page {file} is out of sequence (expected {:02}-...)",
            i + 1
        );
        assert!(
            readme.contains(&format!("]({file})")),
            "docs/tour/README.md does not list {file}"
        );
        assert!(
            links_of(*n, file, text)
                .iter()
                .any(|l| l.kind == Kind::Code),
            "docs/tour/{file}: links no code (`Code: [src/.. `item`](../../src/..)`)"
        );
    }
}

#[test]
fn code_links_resolve_and_carry_their_tags() {
    let root = workspace_root();
    let mut problems = Vec::new();
    let links = all_links();
    assert!(
        links.len() >= 8,
        "suspiciously few code links: {}",
        links.len()
    );
    for l in &links {
        let at = format!("docs/tour/{}:{}", l.page_file, l.line);
        if l.target != format!("../../{}", l.path) {
            problems.push(format!(
                "{at}: [{} `{}`] points at {}, not ../../{}",
                l.path, l.item, l.target, l.path
            ));
        }
        let file = root.join(&l.path);
        let Ok(src) = fs::read_to_string(&file) else {
            problems.push(format!("{at}: {} does not exist", l.path));
            continue;
        };
        let asm = is_asm(&l.path);
        let defs = definitions(&src, &l.item, asm);
        if defs.is_empty() {
            problems.push(format!("{at}: {} has no `{}` any more", l.path, l.item));
            continue;
        }
        if l.kind == Kind::See {
            continue;
        }
        if !(l.path.starts_with("src/") || l.path.starts_with("abi/src/")) {
            problems.push(format!(
                "{at}: `Code:` is for the hypervisor's code (src/, abi/src/); use `See:` for {}",
                l.path
            ));
            continue;
        }
        let lines: Vec<&str> = src.lines().collect();
        let tagged = defs.iter().any(|&d| {
            tags_in(&block_above(&lines, d, asm))
                .iter()
                .any(|(n, _)| *n == l.page)
        });
        if !tagged {
            problems.push(format!(
                "{at}: `{}` in {} has no tour tag for page {:02}: put `{} Tour {:02}: ...` in the comment right above it",
                l.item,
                l.path,
                l.page,
                if asm { "/*" } else { "//" },
                l.page
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the tour and the code disagree:\n  {}",
        problems.join("\n  ")
    );
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            source_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs" || x == "S") {
            out.push(p);
        }
    }
}

#[test]
fn every_tag_in_the_code_is_linked_from_its_page() {
    let root = workspace_root();
    let links = all_links();
    let pages: BTreeSet<u32> = pages().iter().map(|p| p.0).collect();
    let mut files = Vec::new();
    source_files(&root.join("src"), &mut files);
    source_files(&root.join("abi/src"), &mut files);
    let mut problems = Vec::new();
    let mut tags = 0;
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let src = read(&f);
        let asm = is_asm(&rel);
        let lines: Vec<&str> = src.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim();
            if !is_comment(t) {
                continue;
            }
            let found = tags_in(t);
            if found.is_empty() {
                continue;
            }
            // The item this tag is about: the first line below the comment
            // block that is not a comment, attribute or directive.
            let mut j = i + 1;
            let mut in_c = t.contains("/*") && !t.contains("*/");
            while j < lines.len() {
                let u = lines[j].trim();
                if in_c {
                    in_c = !u.contains("*/");
                } else if u.starts_with("/*") && !u.contains("*/") {
                    in_c = true;
                } else if !(is_comment(u) || is_decoration(u, asm)) {
                    break;
                }
                j += 1;
            }
            let below = lines.get(j).map(|u| u.trim()).unwrap_or("");
            let item = if asm {
                below
                    .strip_suffix(':')
                    .filter(|n| !n.contains(' '))
                    .map(str::to_string)
            } else {
                item_defined_by(below)
            };
            let Some(item) = item else {
                problems.push(format!(
                    "{rel}:{}: a tour tag, but no item right below it (found {below:?})",
                    i + 1
                ));
                continue;
            };
            for (n, _) in found {
                tags += 1;
                if !pages.contains(&n) {
                    problems.push(format!(
                        "{rel}:{}: `Tour {n:02}` names a page that does not exist",
                        i + 1
                    ));
                } else if !links
                    .iter()
                    .any(|k| k.page == n && k.kind == Kind::Code && k.path == rel && k.item == item)
                {
                    problems.push(format!(
                        "{rel}:{}: `Tour {n:02}` on `{item}`, but docs/tour/{n:02}-*.md has no `Code: [{rel} `{item}`](../../{rel})`",
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(tags > 0, "no tour tags in src/ at all");
    assert!(
        problems.is_empty(),
        "stale or misplaced tour tags:\n  {}",
        problems.join("\n  ")
    );
}

use ringvisor_tests::docs::check_relative_links;

#[test]
fn relative_links_and_images_resolve() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for dir in [root.join("docs/tour"), root.join("lessons")] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "md") {
                check_relative_links(&e.path(), &mut problems);
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_parsers_themselves() {
    assert_eq!(
        item_defined_by("pub fn bounce(d: &mut Domain) {"),
        Some("bounce".into())
    );
    assert_eq!(
        item_defined_by("extern \"C\" fn trap_dispatch(f: &mut TrapFrame) {"),
        Some("trap_dispatch".into())
    );
    assert_eq!(
        item_defined_by("pub const fn w(name: &str) -> Word {"),
        Some("w".into())
    );
    assert_eq!(
        item_defined_by("pub struct IretContext {"),
        Some("IretContext".into())
    );
    assert_eq!(item_defined_by("let x = fn_body(a);"), None);
    assert_eq!(item_defined_by("bounce(d, f, &b)"), None);
    let src = "/* Tour 02, 05: the way in\n * and out. */\n.balign 16\n.global syscall_entry\nsyscall_entry:\n";
    let lines: Vec<&str> = src.lines().collect();
    let block = block_above(&lines, definitions(src, "syscall_entry", true)[0], true);
    assert_eq!(
        tags_in(&block).iter().map(|t| t.0).collect::<Vec<_>>(),
        [2, 5]
    );
    let rs = "}\n\n// Tour 04: the frame\n/// Docs.\n#[inline]\nfn bounce() {}\n";
    let lines: Vec<&str> = rs.lines().collect();
    assert_eq!(
        tags_in(&block_above(
            &lines,
            definitions(rs, "bounce", false)[0],
            false
        ))[0]
            .0,
        4
    );
    assert!(tags_in("the Tour de France: 3 weeks").is_empty());
    let links = links_of(4, "04-x.md", "- Code: [src/a.rs `f`](../../src/a.rs), [src/b.rs `g`](../../src/b.rs)\nSee: [guests/x.S `l`](../../guests/x.S)\n");
    assert_eq!(links.len(), 3);
    assert_eq!(
        (
            links[1].path.as_str(),
            links[1].item.as_str(),
            links[2].kind.clone()
        ),
        ("src/b.rs", "g", Kind::See)
    );
}
