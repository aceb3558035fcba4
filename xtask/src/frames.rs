//! `cargo xtask frames`: the stack frames ringvisor writes on a guest's
//! stack, drawn as SVG into `docs/frames/` (the tour shows them).
//!
//! [`FRAMES`] is the one source of truth: each frame as a list of words,
//! lowest address first, each with the expression the hypervisor writes
//! (`code`) and a short note. The unit tests below check the table against
//! the code that builds the frames (the `push!(...)` calls of
//! `src/pv/traps.rs` `build_frame`, one builder for both guest widths, the
//! fields of `IretContext` in `abi/src/x86_64.rs` and `IretContext32`) and check that the
//! committed SVGs are what this file renders, so a change to either side
//! that is not made to the other fails `cargo xtask test`.
//!
//! The SVGs are plain hand-written text: no dependencies, readable as
//! source, stable byte for byte.

use ringvisor_tests::{bail, build, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub const HELP: &str = "\
cargo xtask frames [--check]

Writes docs/frames/*.svg: one diagram per stack frame ringvisor builds on a
guest stack: 64-bit exception frame with and without error code, syscall
callback frame, failsafe frame, HYPERVISOR_iret context, and the 32-bit
exception (from ring 1 and ring 3), failsafe and iret frames. The layouts
come from the table in xtask/src/frames.rs, which `cargo xtask test` checks
against src/pv/traps.rs, abi/src/x86_64.rs and abi/src/x86_32.rs.

  --check   write nothing; exit 1 if a committed SVG differs from the table
";

/// One word of a frame.
#[derive(Debug, Clone, Copy)]
pub struct Word {
    /// What the word is, as the diagram labels it (`RIP`, `CS`, ...).
    pub name: &'static str,
    /// The expression ringvisor writes for it, exactly as in the code
    /// (`f.rip`), or the struct field; empty for frames not built yet.
    pub code: &'static str,
    pub note: &'static str,
    /// Present only sometimes (the condition is in the note).
    pub optional: bool,
}

/// Where the code that builds a frame is, so the tests can compare.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The `push(..)` (or `push!(..)`) calls in `func` of `file`, in order; words whose code
    /// is in `skip` are the optional ones this frame leaves out.
    Pushes {
        file: &'static str,
        func: &'static str,
        skip: &'static [&'static str],
    },
    /// The fields of `struct name` in `file`, in order.
    Struct {
        file: &'static str,
        name: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// `docs/frames/<file>.svg`.
    pub file: &'static str,
    pub title: &'static str,
    /// 8 (64-bit guest) or 4 (32-bit guest).
    pub word_bytes: u32,
    pub source: Source,
    /// What points at the first word.
    pub pointer: &'static str,
    /// One line under the frame: where it sits.
    pub footer: &'static str,
    pub words: &'static [Word],
}

const fn w(name: &'static str, code: &'static str, note: &'static str) -> Word {
    Word {
        name,
        code,
        note,
        optional: false,
    }
}

const fn opt(name: &'static str, code: &'static str, note: &'static str) -> Word {
    Word {
        name,
        code,
        note,
        optional: true,
    }
}

const TRAPS: &str = "src/pv/traps.rs";

// What each frame leaves out of `write_frame`'s pushes (each group is
// conditional there: see `optional_words_are_conditional` below).
/// An exception frame: no failsafe selectors.
const SELS: &[&str] = &["ds", "es", "fs", "gs"];
/// No selectors, no error code.
const SELS_EC: &[&str] = &["ds", "es", "fs", "gs", "ec"];
/// 32-bit, from ring 1: no rcx/r11 (`Layout::rcx_r11`), no ESP/SS.
const W32_RING1: &[&str] = &["f.rcx", "f.r11", "ds", "es", "fs", "gs", "f.rsp", "f.ss"];
/// 32-bit, from ring 3: no rcx/r11.
const W32_RING3: &[&str] = &["f.rcx", "f.r11", "ds", "es", "fs", "gs"];
/// The 32-bit failsafe: no rcx/r11, no error code.
const W32_FAILSAFE: &[&str] = &["f.rcx", "f.r11", "ec"];

/// The 64-bit exception frame, error code included (`bounce`).
const EXCEPTION64: &[Word] = &[
    w("RCX", "f.rcx", "the interrupted rcx: Xen enters handlers with sysret, which overwrites rcx; the handler pops it"),
    w("R11", "f.r11", "the interrupted r11 (sysret overwrites it with rflags)"),
    w("ERRCODE", "ec", "the error code (#DF #TS #NP #SS #GP #PF #AC #CP ...); #PF: bit 2 (U) set only from guest user mode"),
    w("RIP", "f.rip", "the faulting instruction (fault) or the next one (trap, int n)"),
    w("CS", "cs | (mask as u64) << lay.mask_shift", "bits 0-15: cs, RPL 0 (0xe030) if the guest kernel was interrupted, 0xe033 if user; bits 32-39: the saved evtchn_upcall_mask"),
    w("RFLAGS", "flags", "the interrupted rflags with IF = !saved upcall mask (and the virtual IOPL with architectural_iopl)"),
    w("RSP", "f.rsp", "the interrupted rsp"),
    w("SS", "f.ss", "the interrupted ss (0xe02b)"),
];

const EXCEPTION64_NO_EC: &[Word] = &[
    EXCEPTION64[0],
    EXCEPTION64[1],
    EXCEPTION64[3],
    EXCEPTION64[4],
    EXCEPTION64[5],
    EXCEPTION64[6],
    EXCEPTION64[7],
];

const SYSCALL64: &[Word] = &[
    w("RCX", "f.rcx", "the user's return rip: the CPU put it in rcx at the syscall"),
    w("R11", "f.r11", "the user's rflags: the CPU put them in r11 at the syscall"),
    w("RIP", "f.rip", "the user instruction after the syscall"),
    w(
        "CS",
        "cs | (mask as u64) << lay.mask_shift",
        "bits 0-15: 0xe033 (user, RPL 3; 0xe023 for 32-bit user code); bits 32-39: the saved evtchn_upcall_mask",
    ),
    w("RFLAGS", "flags", "the user's rflags with IF = !saved upcall mask"),
    w("RSP", "f.rsp", "the user's rsp"),
    w("SS", "f.ss", "0xe02b"),
];

const FAILSAFE64: &[Word] = &[
    w("RCX", "f.rcx", "the interrupted rcx"),
    w("R11", "f.r11", "the interrupted r11"),
    w(
        "DS",
        "ds",
        "data selectors at the fault, or the ones that no longer load (a segment reload failed)",
    ),
    w("ES", "es", ""),
    w("FS", "fs", ""),
    w("GS", "gs", ""),
    w(
        "RIP",
        "f.rip",
        "the instruction whose bounce could not be written",
    ),
    w(
        "CS",
        "cs | (mask as u64) << lay.mask_shift",
        "bits 0-15: cs (RPL 0 for the guest kernel); bits 32-39: the saved evtchn_upcall_mask",
    ),
    w(
        "RFLAGS",
        "flags",
        "the interrupted rflags with IF = !saved upcall mask",
    ),
    w("RSP", "f.rsp", "the interrupted (broken) rsp"),
    w("SS", "f.ss", "the interrupted ss"),
];

const IRET64: &[Word] = &[
    w("RAX", "rax", "pushed by the iret stub: the rax to return with"),
    w("R11", "r11", "pushed by the stub: restored unless VGCF_in_syscall"),
    w("RCX", "rcx", "pushed by the stub: restored unless VGCF_in_syscall"),
    w("FLAGS", "flags", "pushed by the guest: 0, or VGCF_in_syscall (1 << 8) to return from a syscall callback"),
    w("RIP", "rip", "where to go on"),
    w("CS", "cs", "RPL 3: to guest user mode (needs new_user_baseptr); RPL 0-2: guest kernel; bits above 15 ignored"),
    w("RFLAGS", "rflags", "IF sets evtchn_upcall_mask = !IF; IOPL is taken with architectural_iopl"),
    w("RSP", "rsp", "the stack to return to"),
    w("SS", "ss", "0xe02b (RPL 0 or 3)"),
];

const EXCEPTION32_RING3: &[Word] = &[
    opt("ERRCODE", "ec", "only for vectors with an error code"),
    w("EIP", "f.rip", "the faulting or next instruction"),
    w("CS", "cs | (mask as u64) << lay.mask_shift", "bits 0-15: cs as interrupted (0xe019 in ring 1, RPL 3 in user mode); bits 16-23: the saved evtchn_upcall_mask"),
    w("EFLAGS", "flags", "IF = !saved upcall mask (and the virtual IOPL with architectural_iopl)"),
    w("ESP", "f.rsp", "the user esp: a ring change, so the frame has the old stack"),
    w("SS", "f.ss", "the user ss"),
];

const EXCEPTION32_RING1: &[Word] = &[
    EXCEPTION32_RING3[0],
    EXCEPTION32_RING3[1],
    EXCEPTION32_RING3[2],
    EXCEPTION32_RING3[3],
];

const FAILSAFE32: &[Word] = &[
    w(
        "DS",
        "ds",
        "data selectors at the fault, or the ones that no longer load",
    ),
    w("ES", "es", ""),
    w("FS", "fs", ""),
    w("GS", "gs", ""),
    w("EIP", "f.rip", "the interrupted instruction"),
    w(
        "CS",
        "cs | (mask as u64) << lay.mask_shift",
        "bits 0-15: cs; bits 16-23: the saved evtchn_upcall_mask",
    ),
    w("EFLAGS", "flags", "IF = !saved upcall mask"),
    opt(
        "ESP",
        "f.rsp",
        "only when guest user mode (ring 3) was interrupted",
    ),
    opt(
        "SS",
        "f.ss",
        "only when guest user mode (ring 3) was interrupted",
    ),
];

const IRET32: &[Word] = &[
    w(
        "EAX",
        "eax",
        "pushed by the iret stub: the eax to return with",
    ),
    w("EIP", "eip", "where to go on"),
    w("CS", "cs", "RPL 1: guest kernel; RPL 3: guest user mode"),
    w("EFLAGS", "eflags", "IF sets evtchn_upcall_mask = !IF"),
    opt("ESP", "esp", "only when returning to ring 3"),
    opt("SS", "ss", "only when returning to ring 3"),
];

/// Every frame ringvisor builds on a guest stack, lowest address first.
pub const FRAMES: &[Frame] = &[
    Frame {
        file: "exception64-errcode",
        title: "64-bit PV exception frame, with error code",
        word_bytes: 8,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: SELS },
        pointer: "handler's rsp",
        footer: "frame top: the interrupted rsp & ~15 (guest kernel) or the stack_switch sp & ~15 (guest user)",
        words: EXCEPTION64,
    },
    Frame {
        file: "exception64",
        title: "64-bit PV exception frame, no error code (also events)",
        word_bytes: 8,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: SELS_EC },
        pointer: "handler's rsp",
        footer: "frame top: the interrupted rsp & ~15 (guest kernel) or the stack_switch sp & ~15 (guest user)",
        words: EXCEPTION64_NO_EC,
    },
    Frame {
        file: "syscall64",
        title: "64-bit syscall callback frame (guest user -> guest kernel)",
        word_bytes: 8,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: SELS_EC },
        pointer: "handler's rsp",
        footer: "frame top: the stack_switch sp & ~15; back with HYPERVISOR_iret and VGCF_in_syscall",
        words: SYSCALL64,
    },
    Frame {
        file: "failsafe64",
        title: "64-bit failsafe callback frame",
        word_bytes: 8,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: &["ec"] },
        pointer: "handler's rsp",
        footer: "frame top: the stack_switch sp & ~15, whatever the mode (the interrupted stack is the broken one)",
        words: FAILSAFE64,
    },
    Frame {
        file: "iret64",
        title: "HYPERVISOR_iret context (struct iret_context)",
        word_bytes: 8,
        source: Source::Struct { file: "abi/src/x86_64.rs", name: "IretContext" },
        pointer: "rsp at the iret syscall",
        footer: "the guest pushes FLAGS..SS (or reuses a bounce frame), then jumps to the iret stub",
        words: IRET64,
    },
    Frame {
        file: "exception32-ring1",
        title: "32-bit PV exception frame, from ring 1 (guest kernel)",
        word_bytes: 4,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: W32_RING1 },
        pointer: "handler's esp",
        footer: "frame top: the interrupted esp (no ring change, so no ESP/SS); a plain iret returns through it",
        words: EXCEPTION32_RING1,
    },
    Frame {
        file: "exception32-ring3",
        title: "32-bit PV exception frame, from ring 3 (guest user)",
        word_bytes: 4,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: W32_RING3 },
        pointer: "handler's esp",
        footer: "frame top: the stack_switch esp; the vCPU is switched to kernel mode (ring 1)",
        words: EXCEPTION32_RING3,
    },
    Frame {
        file: "failsafe32",
        title: "32-bit failsafe callback frame",
        word_bytes: 4,
        source: Source::Pushes { file: TRAPS, func: "build_frame", skip: W32_FAILSAFE },
        pointer: "handler's esp",
        footer: "frame top: the stack_switch esp, whatever the ring (Xen: the interrupted esp in ring 1)",
        words: FAILSAFE32,
    },
    Frame {
        file: "iret32",
        title: "32-bit HYPERVISOR_iret frame",
        word_bytes: 4,
        source: Source::Struct { file: "abi/src/x86_32.rs", name: "IretContext32" },
        pointer: "esp at the int $0x82",
        footer: "the stub pushes eax on top of an ordinary iret frame; src/pv/compat.rs iret reads it",
        words: IRET32,
    },
];

pub fn frames_dir() -> PathBuf {
    build::workspace_root().join("docs").join("frames")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Greedy word wrap at `width` characters.
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Where the frame's layout lives, in words.
fn source_line(f: &Frame) -> String {
    match f.source {
        Source::Pushes { file, func, .. } => {
            format!("written by {func}() in {file}, lowest address first")
        }
        Source::Struct { file, name } => format!("read as {name} ({file}), lowest address first"),
    }
}

const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
const WIDTH: u32 = 880;
const BOX_X: u32 = 170;
const BOX_W: u32 = 170;
const NOTE_X: u32 = 356;
/// DejaVu Sans Mono at 13 px advances 7.83 px a character.
const NOTE_CHARS: usize = 62;
const FOOTER_CHARS: usize = 88;
const LINE: u32 = 15;

/// The SVG text of one frame.
pub fn render(f: &Frame) -> String {
    let rows: Vec<(Word, Vec<String>)> = f
        .words
        .iter()
        .map(|w| (*w, wrap(w.note, NOTE_CHARS)))
        .collect();
    let row_h = |lines: usize| (lines.max(1) as u32) * LINE + 17;
    let top = 66;
    let body: u32 = rows.iter().map(|(_, l)| row_h(l.len())).sum();
    let height = top + body + 76;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" font-size="13">"#
    );
    let _ = writeln!(s, "<title>{}</title>", escape(f.title));
    let _ = writeln!(
        s,
        "<!-- Generated by `cargo xtask frames` from xtask/src/frames.rs: edit the table there, not this file. -->"
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="26" font-size="16" font-weight="bold" fill="#111111">{}</text>"##,
        escape(f.title)
    );
    let _ = writeln!(
        s,
        r##"<text x="16" y="46" fill="#555555">{}</text>"##,
        escape(&source_line(f))
    );
    let (fill, stroke) = ("#e8f0fe", "#1a4fa0");
    let mut y = top;
    for (i, (word, lines)) in rows.iter().enumerate() {
        let h = row_h(lines.len());
        let dash = if word.optional {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<rect x="{BOX_X}" y="{y}" width="{BOX_W}" height="{h}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>"##
        );
        let off = i as u32 * f.word_bytes;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="11" fill="#666666">+{off:#04x}</text>"##,
            BOX_X + 6,
            y + 14
        );
        let name = if word.optional {
            format!("[{}]", word.name)
        } else {
            word.name.to_string()
        };
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-weight="bold" fill="#111111">{}</text>"##,
            BOX_X + BOX_W / 2 + 10,
            y + h / 2 + 5,
            escape(&name)
        );
        for (j, l) in lines.iter().enumerate() {
            let ly = y + (h - lines.len() as u32 * LINE) / 2 + 11 + j as u32 * LINE;
            let _ = writeln!(
                s,
                r##"<text x="{NOTE_X}" y="{ly}" fill="#222222">{}</text>"##,
                escape(l)
            );
        }
        if i == 0 {
            let ay = y + h / 2;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#111111">{}</text>"##,
                BOX_X - 22,
                ay + 4,
                escape(f.pointer)
            );
            let _ = writeln!(
                s,
                r##"<path d="M {} {ay} L {} {ay} M {} {} L {} {ay} L {} {}" fill="none" stroke="#111111" stroke-width="1.5"/>"##,
                BOX_X - 18,
                BOX_X - 3,
                BOX_X - 9,
                ay - 5,
                BOX_X - 3,
                BOX_X - 9,
                ay + 5
            );
        }
        y += h;
    }
    let footer = format!(
        "{} bytes; higher addresses below. {}",
        f.words.iter().filter(|w| !w.optional).count() as u32 * f.word_bytes,
        f.footer
    );
    let mut fy = y + 22;
    for l in wrap(&footer, FOOTER_CHARS) {
        let _ = writeln!(
            s,
            r##"<text x="{BOX_X}" y="{fy}" fill="#555555">{}</text>"##,
            escape(&l)
        );
        fy += LINE + 2;
    }
    if f.words.iter().any(|w| w.optional) {
        let _ = writeln!(
            s,
            r##"<text x="{BOX_X}" y="{fy}" fill="#555555">[dashed]: present only as its note says</text>"##
        );
    }
    s.push_str("</svg>\n");
    s
}

/// What the code writes for `f`, in order.
fn code_words(f: &Frame) -> std::result::Result<Vec<String>, String> {
    let read = |file: &str| {
        let p = build::workspace_root().join(file);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let body = |src: &str, file: &str, func: &str| -> std::result::Result<String, String> {
        code::fn_body(src, func)
            .map(str::to_string)
            .ok_or_else(|| format!("{file}: no fn {func}"))
    };
    Ok(match f.source {
        Source::Pushes { file, func, skip } => {
            let b = body(&read(file)?, file, func)?;
            let pushes = code::call_args(&b, "push");
            if pushes.is_empty() {
                return Err(format!("{file} {func}: no push(..) calls"));
            }
            pushes
                .into_iter()
                .filter(|p| !skip.contains(&p.as_str()))
                .collect()
        }
        Source::Struct { file, name } => code::struct_fields(&read(file)?, name)
            .ok_or_else(|| format!("{file}: no struct {name}"))?,
    })
}

/// Does every frame of the table match the code that builds it?
pub fn check_table() -> std::result::Result<(), String> {
    for f in FRAMES {
        let table: Vec<&str> = f.words.iter().map(|w| w.code).collect();
        match code_words(f)? {
            code if code == table => {}
            code => {
                return Err(format!(
                    "docs/frames/{}.svg: the table in xtask/src/frames.rs no longer matches the code.\n  \
                     table: {}\n  code:  {}\nFix the table (and the tour), then run `cargo xtask frames`.",
                    f.file,
                    table.join(" | "),
                    code.join(" | ")
                ))
            }
        }
    }
    Ok(())
}

/// `cargo xtask frames [--check]`.
pub fn command(args: &[String]) -> Result<ExitCode> {
    let mut check = false;
    for a in args {
        match a.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("`cargo xtask frames` has no option {other:?} (see --help)"),
        }
    }
    if let Err(e) = check_table() {
        bail!("{e}");
    }
    let dir = frames_dir();
    let mut stale = Vec::new();
    for f in FRAMES {
        let path = dir.join(format!("{}.svg", f.file));
        let svg = render(f);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(svg.as_str()) {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&path, svg)?;
            eprintln!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "out of date (run `cargo xtask frames`):\n  {}",
            stale.join("\n  ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if check {
        eprintln!("docs/frames: all {} diagrams up to date", FRAMES.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reading the code the table describes (for the tests, and kept simple:
/// the code is ours and formatted by rustfmt).
pub mod code {
    /// The text of `fn name` (signature to its closing brace at the same
    /// indentation), if `src` has it.
    pub fn fn_body<'a>(src: &'a str, name: &str) -> Option<&'a str> {
        let pat = format!("fn {name}(");
        let start = src.find(&pat)?;
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let indent = src[line_start..start].len() - src[line_start..start].trim_start().len();
        let close = format!("\n{}}}", " ".repeat(indent));
        let end = src[start..].find(&close)? + start + close.len();
        Some(&src[start..end])
    }

    /// The argument text of every call `callee(...)` in `text`, in order.
    pub fn call_args(text: &str, callee: &str) -> Vec<String> {
        // `callee(` or the macro `callee!(`.
        let pat = format!("{callee}(");
        let mac = format!("{callee}!(");
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let (i, len) = match (text[at..].find(&pat), text[at..].find(&mac)) {
                (Some(a), Some(b)) if b < a => (b, mac.len()),
                (Some(a), _) => (a, pat.len()),
                (None, Some(b)) => (b, mac.len()),
                (None, None) => break,
            };
            let begin = at + i;
            let prev = text[..begin].chars().next_back();
            at = begin + len;
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                continue; // another name ending in `callee`, or a method
            }
            if let Some((arg, len)) = balanced(&text[at..], '(', ')') {
                out.push(arg.trim().to_string());
                at += len;
            }
        }
        out
    }

    /// The text up to the `close` that balances an already opened `open`,
    /// and how many bytes that took (including the `close`).
    fn balanced(s: &str, open: char, close: char) -> Option<(&str, usize)> {
        let mut depth = 1;
        for (i, c) in s.char_indices() {
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[..i], i + 1));
                }
            }
        }
        None
    }

    /// The field names of `struct name { .. }` in `src`, in order.
    pub fn struct_fields(src: &str, name: &str) -> Option<Vec<String>> {
        let pat = format!("struct {name} {{");
        let at = src.find(&pat)? + pat.len();
        let (inner, _) = balanced(&src[at..], '{', '}')?;
        Some(
            inner
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("//") && !l.starts_with('#'))
                .filter_map(|l| l.strip_prefix("pub ").unwrap_or(l).split_once(':'))
                .map(|(n, _)| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> String {
        let p = build::workspace_root().join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    }

    #[test]
    fn table_matches_the_code() {
        if let Err(e) = check_table() {
            panic!("{e}");
        }
    }

    #[test]
    fn optional_words_are_conditional() {
        // The frames leave words out of build_frame's pushes: each group
        // must be pushed only under its condition (the width's layout, or
        // what the frame carries).
        let src = read(TRAPS);
        let body = code::fn_body(&src, "build_frame").unwrap();
        let compact: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        for group in [
            "if lay.rcx_r11 { push!(f.rcx); push!(f.r11); }",
            "= spec.sels.map(|s| s.map(u64::from)) { push!(ds); push!(es); push!(fs); push!(gs); }",
            "if let Some(ec) = spec.error_code { push!(ec); }",
            "if lay.stack_always || from_user { push!(f.rsp); push!(f.ss); }",
        ] {
            assert!(
                compact.contains(group),
                "src/pv/traps.rs build_frame: no longer `{group}`"
            );
        }
    }

    #[test]
    fn svgs_are_up_to_date() {
        let dir = frames_dir();
        for f in FRAMES {
            let path = dir.join(format!("{}.svg", f.file));
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == render(f),
                "{} is out of date: run `cargo xtask frames`",
                path.display()
            );
        }
        // And nothing else is there pretending to be generated.
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".svg") {
                assert!(
                    FRAMES.iter().any(|f| f.file == stem),
                    "docs/frames/{name} is not in the table of xtask/src/frames.rs"
                );
            }
        }
    }

    #[test]
    fn code_readers() {
        let src = "fn a(x: u8) {\n    push(f.rcx);\n    if y { push(ec); }\n    q.push(z);\n    let words = [f.a, b | (c as u64) << 32, g(h, i)];\n}\nstruct S {\n    /// doc\n    pub a: u64,\n    pub b: u64,\n}\n";
        let body = code::fn_body(src, "a").unwrap();
        assert_eq!(code::call_args(body, "push"), ["f.rcx", "ec"]);
        assert_eq!(code::struct_fields(src, "S").unwrap(), ["a", "b"]);
    }

    #[test]
    fn svg_is_plain_and_escaped() {
        for f in FRAMES {
            let s = render(f);
            assert!(s.starts_with("<svg ") && s.ends_with("</svg>\n"));
            assert!(
                !s.contains("<-") && !s.contains("& "),
                "{}: unescaped text",
                f.file
            );
        }
    }
}
