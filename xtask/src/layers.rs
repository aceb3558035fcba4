//! The layering check `cargo xtask lint` runs over the hypervisor's
//! sources (src/**/*.rs), beside rustfmt and clippy:
//!
//! - the graph of top-level modules (an edge `a -> b` for every
//!   `crate::b` path, grouped `use crate::{b, ..}` and exported macro of `b`
//!   used in `a`) has no cycle, but for the edges in [`ALLOWED_EDGES`];
//! - the word `unsafe` appears (outside comments and strings) only under
//!   src/arch/ and src/mm/, but for the files in [`ALLOWED_UNSAFE`].
//!
//! The compiler enforces the second too (`#![deny(unsafe_code)]` in
//! main.rs, allowed on `mod arch` and `mod mm`); this pass says so in
//! words and catches a new `#[allow(unsafe_code)]` elsewhere.
//! docs/design.md ("Layers") draws the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Edges that may close a cycle, by the file they are in and the
/// top-level module they use. Each is an exception being worked on.
pub const ALLOWED_EDGES: &[(&str, &str, &str)] = &[];

/// Files outside arch/ and mm/ that may hold `unsafe`.
pub const ALLOWED_UNSAFE: &[(&str, &str)] = &[];

/// Where `#[allow(unsafe_code)]` may be (file, how many times): the crate
/// root denies `unsafe_code` and allows it on `mod arch` and `mod mm`;
/// start.rs on
/// `rust_start`, whose `no_mangle` (boot.S calls it by name) the lint
/// counts.
pub const ALLOWED_ALLOWS: &[(&str, usize)] = &[("main.rs", 2), ("start.rs", 1)];

/// The directories (under src/) where `unsafe` belongs.
const UNSAFE_HOMES: &[&str] = &["arch/", "mm/"];

/// One use of module `to` from file `file`, at `line`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Use {
    pub file: String,
    pub line: usize,
    pub to: String,
}

/// `text` with comments and the contents of string and char literals
/// blanked out (newlines kept, so line numbers stay right).
pub fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('r');
            for _ in i + 1..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' && i + 1 < b.len() {
                    out.push(' ');
                    out.push(blank(b[i + 1]));
                    i += 2;
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push('\'');
                    for _ in i + 1..e {
                        out.push(' ');
                    }
                    out.push('\'');
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` (from [`code_only`]) with every `#[cfg(test)]` item blanked:
/// tests may build their fixtures with any module; the layering is about
/// what the hypervisor itself uses.
pub fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(k) = out[from..].find("#[cfg(test)]") {
        let at = from + k;
        let rest = &out[at..];
        let semi = rest.find(';').unwrap_or(rest.len());
        let end = match rest.find('{') {
            Some(open) if open < semi => {
                let mut depth = 0;
                let mut end = rest.len();
                for (i, c) in rest.char_indices().skip_while(|&(i, _)| i < open) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            _ => (semi + 1).min(rest.len()),
        };
        let blank: String = rest[..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..at + end, &blank);
        from = at + blank.len();
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn is_word_start(s: &str, at: usize) -> bool {
    at == 0 || {
        let c = s[..at].chars().next_back().unwrap();
        !(c.is_alphanumeric() || c == '_')
    }
}

/// The top-level module a file (path under src/) belongs to.
pub fn module_of(path: &str) -> String {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

/// The exported macros each file defines (`#[macro_export]` before
/// `macro_rules! name`), as name -> top-level module.
fn exported_macros(files: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (path, text) in files {
        let code = code_only(text);
        let mut exported = false;
        for line in code.lines() {
            let t = line.trim();
            if t.starts_with("#[macro_export]") {
                exported = true;
            } else if let Some(rest) = t.strip_prefix("macro_rules!") {
                if exported {
                    out.insert(ident_at(rest.trim()).to_string(), module_of(path));
                }
                exported = false;
            } else if !t.is_empty() && !t.starts_with("#[") {
                exported = false;
            }
        }
    }
    out
}

/// Every use of another top-level module in `files` (path under src/,
/// text), by file.
pub fn uses(files: &[(String, String)]) -> Vec<Use> {
    let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
    let macros = exported_macros(files);
    let mut out = Vec::new();
    for (path, text) in files {
        let me = module_of(path);
        let code = without_tests(&code_only(text));
        let mut add = |line: usize, to: &str| {
            if to != me && modules.contains(to) {
                out.push(Use {
                    file: path.clone(),
                    line,
                    to: to.to_string(),
                });
            }
        };
        let line_of = |at: usize| code[..at].matches('\n').count() + 1;
        for (at, _) in code.match_indices("crate::") {
            if !is_word_start(&code, at) {
                continue;
            }
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // use crate::{a::x, b, c::{..}}: the names at depth 1.
                let mut depth = 1;
                let mut expect = true;
                for (k, ch) in group.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => expect = true,
                        c if c.is_whitespace() => {}
                        _ if expect && depth == 1 => {
                            expect = false;
                            let pos = at + "crate::{".len() + k;
                            add(line_of(pos), ident_at(&group[k..]));
                        }
                        _ => {}
                    }
                }
            } else {
                add(line_of(at), ident_at(rest));
            }
        }
        for (name, owner) in &macros {
            let pat = format!("{name}!");
            for (at, _) in code.match_indices(&pat) {
                if is_word_start(&code, at) && !code[..at].ends_with("macro_rules! ") {
                    add(line_of(at), owner);
                }
            }
        }
    }
    out.sort();
    out
}

/// The lines of `files` outside the homes of `unsafe` that hold it.
pub fn unsafe_outside(files: &[(String, String)]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (path, text) in files {
        if UNSAFE_HOMES.iter().any(|h| path.starts_with(h))
            || ALLOWED_UNSAFE.iter().any(|(f, _)| f == path)
        {
            continue;
        }
        for (n, line) in code_only(text).lines().enumerate() {
            if line
                .match_indices("unsafe")
                .any(|(at, _)| is_word_start(line, at) && ident_at(&line[at..]) == "unsafe")
            {
                out.push((path.clone(), n + 1));
            }
        }
    }
    out
}

/// The cycles left in the module graph of `uses` once the edges
/// `allowed` names (file, module) are dropped: each strongly connected
/// set of two or more modules, with the uses inside it.
pub fn cycles(uses: &[Use], allowed: &[(&str, &str, &str)]) -> Vec<(Vec<String>, Vec<Use>)> {
    let kept: Vec<&Use> = uses
        .iter()
        .filter(|u| !allowed.iter().any(|(f, m, _)| *f == u.file && *m == u.to))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for u in &kept {
        graph
            .entry(module_of(&u.file))
            .or_default()
            .insert(u.to.clone());
        graph.entry(u.to.clone()).or_default();
    }
    // Reachability, then mutual reachability (the graph is a few dozen
    // nodes: no need for anything cleverer).
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in &graph[&n] {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in graph.keys() {
        if done.contains(n) || !reaches[n].contains(n) {
            continue;
        }
        let set: Vec<String> = graph
            .keys()
            .filter(|m| reaches[n].contains(*m) && reaches[*m].contains(n))
            .cloned()
            .collect();
        done.extend(set.iter().cloned());
        let inside = kept
            .iter()
            .filter(|u| set.contains(&module_of(&u.file)) && set.contains(&u.to))
            .map(|u| (*u).clone())
            .collect();
        out.push((set, inside));
    }
    out
}

/// The modules by layer, bottom first: a module's layer is one above the
/// highest it uses (0: it uses none), the edges `allowed` names left out.
/// Only meaningful without a cycle ([`cycles`] empty).
pub fn layers(
    modules: &[String],
    uses: &[Use],
    allowed: &[(&str, &str, &str)],
) -> Vec<Vec<String>> {
    let mut below: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for u in uses {
        if !allowed.iter().any(|(f, m, _)| *f == u.file && *m == u.to) {
            below
                .entry(module_of(&u.file))
                .or_default()
                .insert(u.to.clone());
        }
    }
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    // At most one pass per module settles every level of an acyclic graph.
    for _ in 0..=below.len() {
        for (m, bs) in &below {
            let l = bs
                .iter()
                .map(|b| level.get(b).map_or(1, |l| l + 1))
                .max()
                .unwrap_or(0);
            level.insert(m.clone(), l);
        }
    }
    let top = level.values().copied().max().unwrap_or(0);
    (0..=top)
        .map(|l| {
            level
                .iter()
                .filter(|(_, v)| **v == l)
                .map(|(m, _)| m.clone())
                .collect()
        })
        .collect()
}

fn rs_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            rs_files(root, &p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p)?));
        }
    }
    Ok(())
}

/// The check over `src`: the layers (bottom first), or what is wrong, in
/// words.
pub fn check(src: &Path) -> Result<Vec<Vec<String>>, String> {
    let mut files = Vec::new();
    rs_files(src, src, &mut files).map_err(|e| format!("reading {}: {e}", src.display()))?;
    files.sort();
    let mut msg = String::new();
    for (file, line) in unsafe_outside(&files) {
        msg += &format!("src/{file}:{line}: `unsafe` outside arch/ and mm/\n");
    }
    let all = uses(&files);
    for (f, m, _) in ALLOWED_EDGES {
        if !all.iter().any(|u| u.file == *f && u.to == *m) {
            msg += &format!("ALLOWED_EDGES lists src/{f} -> {m}, which is gone: drop it\n");
        }
    }
    for (path, text) in &files {
        let code = code_only(text);
        let n = code.matches("allow(unsafe_code)").count();
        let may = ALLOWED_ALLOWS
            .iter()
            .find(|(f, _)| f == path)
            .map_or(0, |a| a.1);
        if n != may {
            msg +=
                &format!("src/{path}: {n} `allow(unsafe_code)`, {may} allowed (ALLOWED_ALLOWS)\n");
        }
    }
    if !code_only(
        &files
            .iter()
            .find(|(p, _)| p == "main.rs")
            .map_or(String::new(), |f| f.1.clone()),
    )
    .contains("#![deny(unsafe_code)]")
    {
        msg += "src/main.rs: no #![deny(unsafe_code)]\n";
    }
    for (set, inside) in cycles(&all, ALLOWED_EDGES) {
        msg += &format!("module cycle among {}:\n", set.join(", "));
        let mut by_edge: BTreeMap<(String, String), Vec<&Use>> = BTreeMap::new();
        for u in &inside {
            by_edge
                .entry((module_of(&u.file), u.to.clone()))
                .or_default()
                .push(u);
        }
        for ((a, b), us) in by_edge {
            let u = us[0];
            msg += &format!(
                "  {a} -> {b}: {} uses, first src/{}:{}\n",
                us.len(),
                u.file,
                u.line
            );
        }
    }
    if msg.is_empty() {
        let modules: BTreeSet<String> = files.iter().map(|(p, _)| module_of(p)).collect();
        // main.rs is the crate root: it declares the modules, uses none.
        let modules: Vec<String> = modules.into_iter().filter(|m| m != "main").collect();
        Ok(layers(&modules, &all, ALLOWED_EDGES))
    } else {
        Err(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn comments_and_strings_are_not_code() {
        let c = code_only(
            "a // crate::x unsafe\n\"crate::y\" /* unsafe */ r#\"unsafe\"# '\"' b'a' 'l x",
        );
        assert!(!c.contains("crate::") && !c.contains("unsafe"), "{c}");
        assert!(c.contains('a') && c.contains("'l x"));
        assert_eq!(c.lines().count(), 2);
    }

    #[test]
    fn finds_paths_groups_and_macros() {
        let f = files(&[
            ("main.rs", "mod a; mod b; mod c;"),
            (
                "a/mod.rs",
                "use crate::{\n  b::X,\n  c::{self, Y},\n};\nfn f() { info!(\"\"); }",
            ),
            (
                "b.rs",
                "#[macro_export]\nmacro_rules! info { () => {} }\nfn g() { crate::a::h(); }",
            ),
            ("c.rs", "fn k() { self::crate_thing(); }\n#[cfg(test)]\nmod t { fn f() { crate::a::x(); } }"),
        ]);
        let u: Vec<(String, usize, String)> = uses(&f)
            .into_iter()
            .map(|u| (u.file, u.line, u.to))
            .collect();
        assert_eq!(
            u,
            vec![
                ("a/mod.rs".into(), 2, "b".into()),
                ("a/mod.rs".into(), 3, "c".into()),
                ("a/mod.rs".into(), 5, "b".into()),
                ("b.rs".into(), 3, "a".into()),
            ]
        );
    }

    #[test]
    fn a_cycle_is_found_and_an_allowed_edge_breaks_it() {
        let f = files(&[
            ("a/x.rs", "crate::b::f();"),
            ("b.rs", "crate::c::f();"),
            ("c.rs", "crate::a::f();"),
            ("d.rs", "crate::a::f();"),
        ]);
        let u = uses(&f);
        let c = cycles(&u, &[]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, vec!["a", "b", "c"]);
        assert_eq!(c[0].1.len(), 3);
        assert!(cycles(&u, &[("a/x.rs", "b", "test")]).is_empty());
        // Then c uses a, which uses nothing; b uses c; d uses a.
        let mods: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(
            layers(&mods, &u, &[("a/x.rs", "b", "test")]),
            vec![vec!["a"], vec!["c", "d"], vec!["b"]]
        );
        // The allowance is for that file only.
        assert_eq!(cycles(&u, &[("a/y.rs", "b", "test")]).len(), 1);
    }

    #[test]
    fn unsafe_only_in_its_homes() {
        let f = files(&[
            ("arch/x.rs", "unsafe { }"),
            ("mm/y.rs", "unsafe impl Sync for T {}"),
            (
                "pv/z.rs",
                "// unsafe\nlet s = \"unsafe\";\nfn f() { unsafe { } }",
            ),
            ("w.rs", "#[allow(unsafe_code)] fn not_unsafe_fn() {}"),
        ]);
        assert_eq!(unsafe_outside(&f), vec![("pv/z.rs".to_string(), 3)]);
    }

    /// The tree itself passes (what `cargo xtask lint` runs).
    #[test]
    fn the_tree_passes() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
        if let Err(e) = check(&src) {
            panic!("{e}");
        }
    }
}
