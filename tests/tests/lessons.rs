//! The lessons (`lessons/NN-name.md`, `cargo xtask lesson N`) never rot:
//! every ready lesson boots under TCG and its lines must match its
//! snapshot `lessons/NN-name.trace` (see lessons/README.md).
//!
//! Cases:
//! - every lesson file parses; numbers are unique; a ready lesson has a
//!   snapshot and names guests that exist; a pending one says why; its
//!   tour page exists;
//! - every ready lesson, booted, ends as it says (success or failure,
//!   never a hypervisor fault) and matches its snapshot; lessons booting
//!   the same guests share a run, a few runs go at a time, and every
//!   failure is reported, not just the first;
//! - the normalisation and window rules themselves (no QEMU).

#[allow(dead_code)]
#[path = "../../xtask/src/lesson.rs"]
mod lesson;

use lesson::{Lesson, Status};
use ringvisor_tests::build;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn timeout() -> Duration {
    let s = std::env::var("RINGVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(60.0);
    Duration::from_secs_f64(s)
}

fn lessons() -> Vec<Lesson> {
    lesson::load_all().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn lesson_files_are_well_formed() {
    let all = lessons();
    assert!(!all.is_empty(), "no lessons in lessons/");
    let crates = build::guest_crates();
    for (i, l) in all.iter().enumerate() {
        assert!(
            all[..i].iter().all(|o| o.number != l.number),
            "two lessons numbered {:02}",
            l.number
        );
        if let Some(t) = &l.tour {
            let p = build::workspace_root().join("docs/tour").join(t);
            assert!(
                p.is_file(),
                "lessons/{}.md: tour page {} does not exist",
                l.stem,
                p.display()
            );
        }
        match &l.status {
            Status::Pending(why) => assert!(
                !why.is_empty(),
                "lessons/{}.md: pending, but not why",
                l.stem
            ),
            Status::Ready => {
                for g in &l.guests {
                    if lesson::is_asm_guest(g) {
                        let p = build::workspace_root().join(g);
                        assert!(
                            p.is_file(),
                            "lessons/{}.md: no assembly guest {}",
                            l.stem,
                            p.display()
                        );
                    } else {
                        assert!(
                            crates.contains(g),
                            "lessons/{}.md: no guest crate {g} in guests/",
                            l.stem
                        );
                    }
                }
                assert!(
                    l.trace_path().is_file(),
                    "lessons/{}.md: no snapshot; run `cargo xtask lesson {} --bless`",
                    l.stem,
                    l.number
                );
            }
        }
    }
    // Every snapshot belongs to a lesson.
    for e in std::fs::read_dir(lesson::lessons_dir()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".trace") {
            assert!(
                all.iter().any(|l| l.stem == stem),
                "lessons/{name} has no lessons/{stem}.md"
            );
        }
    }
}

#[test]
fn every_ready_lesson_matches_its_snapshot() {
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let ready: Vec<Lesson> = lessons()
        .into_iter()
        .filter(|l| l.status == Status::Ready)
        .collect();
    for l in &ready {
        for g in l.guests.iter().filter(|g| !lesson::is_asm_guest(g)) {
            build::test_guest(g).unwrap_or_else(|e| panic!("lesson {:02}: {e}", l.number));
        }
    }
    // Lessons that boot the same thing share one run (02-04 all boot
    // guest-traps); a few QEMUs at a time: each is one TCG thread.
    let mut runs: Vec<Vec<Lesson>> = Vec::new();
    for l in ready {
        match runs
            .iter_mut()
            .find(|r| r[0].guests == l.guests && r[0].cmdline == l.cmdline)
        {
            Some(r) => r.push(l),
            None => runs.push(vec![l]),
        }
    }
    let width = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let queue = Arc::new(Mutex::new(runs));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..width)
        .map(|_| {
            let (queue, failures, elf) = (Arc::clone(&queue), Arc::clone(&failures), elf.clone());
            std::thread::spawn(move || loop {
                let Some(run) = queue.lock().unwrap().pop() else {
                    return;
                };
                let first = &run[0];
                let guests: Result<Vec<_>, _> = first
                    .guests
                    .iter()
                    .map(|g| lesson::guest_image(g))
                    .collect();
                let out = match guests.and_then(|g| lesson::boot(first, &elf, &g, false, timeout()))
                {
                    Ok(out) => out,
                    Err(e) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("lesson {:02}: could not boot: {e}", first.number));
                        continue;
                    }
                };
                for l in &run {
                    eprintln!("lesson {:02} ({}): {}", l.number, l.name(), out.summary());
                    let result = lesson::ended_as_expected(l, &out)
                        .and_then(|()| lesson::check(l, &out))
                        .map_err(|e| format!("{e}\n--- console ---\n{}", out.transcript()));
                    if let Err(e) = result {
                        failures.lock().unwrap().push(e);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a lesson worker panicked");
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} lesson(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn addresses_are_normalized_small_numbers_are_not() {
    assert_eq!(
        lesson::normalize("(RV) trace: d0v0 bounce #PF page fault ec=0x2 from kernel rip=0xffffffff80000513 cs=0xe033 -> handler 0xdeadb010"),
        "(RV) trace: d0v0 bounce #PF page fault ec=0x2 from kernel rip=<addr> cs=0xe033 -> handler <addr>"
    );
    assert_eq!(
        lesson::normalize("(0xe02b, 0x2c0a003, 0x7ff0) = 262161"),
        "(0xe02b, <addr>, 0x7ff0) = 262161"
    );
}

#[test]
fn windows_keep_hide_and_domain() {
    let text = "\
<!-- lesson
guests: guest-x guest-y
domain: 0
from: START
to: STOP
from: AGAIN
keep: a wanted line
hide: console_io
-->
## Before you run it
b
## What you saw
a
";
    let mut l = lesson::parse("42-x", &format!("# T\n{text}")).unwrap();
    assert_eq!(l.windows.len(), 2);
    let out = [
        "(RV) trace: d0v0 hypercall set_trap_table (0) = 0",
        "(d0) START",
        "(RV) trace: d0v0 bounce #DE",
        "(RV) trace: d1v0 bounce #UD",
        "(RV) trace: d0v0 hypercall console_io (18) = 0",
        "(d0) PASS: one",
        "(d1) PASS: other domain",
        "(d0) INFO: only on the terminal",
        "(RV) d0: a wanted line",
        "(RV) d0: an unwanted line",
        "(d0) STOP",
        "(d0) PASS: between windows",
        "(d0) AGAIN",
        "(d0) RESULT: SUCCESS",
        "(RV) d0 (guest-x): shut down: poweroff",
        "(RV) exit: success (all 1 domain(s) powered off)",
    ];
    assert_eq!(
        lesson::window(&l, &out, false),
        [
            "(RV) trace: d0v0 bounce #DE",
            "(d0) PASS: one",
            "(RV) d0: a wanted line",
            "...",
            "(d0) RESULT: SUCCESS"
        ]
    );
    assert!(lesson::window(&l, &out, true).contains(&"(d0) INFO: only on the terminal".to_string()));
    assert_eq!(lesson::ending(&out).len(), 2);
    l.windows = vec![(Some("NEVER".into()), None)];
    assert!(lesson::window(&l, &out, false)[0].starts_with("!!"));
}

#[test]
fn diff_shows_what_changed() {
    assert_eq!(lesson::diff(&["a", "b"], &["a", "b"]), "");
    assert_eq!(
        lesson::diff(&["a", "b", "c"], &["a", "x", "c"]),
        "  a\n- b\n+ x\n  c\n"
    );
}
