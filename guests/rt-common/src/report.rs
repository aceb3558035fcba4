//! XTF-style results, the same lines from the 64-bit and the 32-bit
//! runtime.
//!
//! A test prints `TEST: <name>` first, one `PASS: <case>` or
//! `FAIL: <case>: <why>` line per case, and exactly one final line:
//!
//! | line                          | meaning                       | then          |
//! |-------------------------------|-------------------------------|---------------|
//! | `RESULT: SUCCESS`             | every case passed             | poweroff      |
//! | `RESULT: FAILURE: <n> failed` | the thing under test is wrong | crash         |
//! | `RESULT: SKIP: <why>`         | not applicable here           | poweroff      |
//! | `RESULT: ERROR: <why>`        | the test itself is broken     | crash         |
//!
//! A harness counts a run without a `RESULT:` line as CRASH; a silent
//! timeout is never a pass.
//!
//! A hypercall's return value ([`Rc`], [`check_rc`]) is an `i64` here, as
//! the 64-bit runtime has it; the 32-bit runtime wraps them for its `i32`.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use ringvisor_abi as abi;

use crate::println;

static FAILED: AtomicU32 = AtomicU32::new(0);
static PASSED: AtomicU32 = AtomicU32::new(0);

/// Prints `TEST: <name>` (done by the runtime before `main`).
pub fn begin(name: &str) {
    println!("TEST: {}", name);
}

/// Prints `PASS: <case>`.
pub fn pass(case: &str) {
    PASSED.fetch_add(1, Ordering::Relaxed);
    println!("PASS: {}", case);
}

/// Prints `FAIL: <case>: <why>` and counts a failure.
pub fn fail(case: &str, why: fmt::Arguments<'_>) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    println!("FAIL: {}: {}", case, why);
}

/// An informational line (`INFO: ...`): values a reader of the log wants,
/// which are not pass/fail.
pub fn info(args: fmt::Arguments<'_>) {
    println!("INFO: {}", args);
}

/// `pass(case)` if `ok`, else `fail(case, why)`. Returns `ok`.
pub fn check(case: &str, ok: bool, why: fmt::Arguments<'_>) -> bool {
    if ok {
        pass(case);
    } else {
        fail(case, why);
    }
    ok
}

/// Passes when `got == want`; the failure shows both in hex.
pub fn check_eq<T>(case: &str, got: T, want: T) -> bool
where
    T: PartialEq + fmt::LowerHex,
{
    check(
        case,
        got == want,
        format_args!("got {:#x}, want {:#x}", got, want),
    )
}

/// Passes when `got == want`, for values without a hex form (tuples,
/// arrays, options); the failure shows both with `{:x?}`.
pub fn check_same<T>(case: &str, got: T, want: T) -> bool
where
    T: PartialEq + fmt::Debug,
{
    check(
        case,
        got == want,
        format_args!("got {:x?}, want {:x?}", got, want),
    )
}

/// Passes when a hypercall returned `want` (an `-errno` or 0); the failure
/// names the errno values. (The 32-bit runtime's `check_rc` takes `i32`
/// and widens.)
pub fn check_rc(case: &str, got: i64, want: i64) -> bool {
    check(
        case,
        got == want,
        format_args!("returned {}, want {}", Rc(got), Rc(want)),
    )
}

/// A hypercall result shown as a number and, when negative, its errno name.
pub struct Rc(pub i64);

impl fmt::Display for Rc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if self.0 < 0 && self.0 >= -(i32::MAX as i64) {
            if let Some(name) = abi::errno_name(-self.0 as i32) {
                write!(f, " (-{})", name)?;
            }
        }
        Ok(())
    }
}

/// Number of failed cases so far.
pub fn failures() -> u32 {
    FAILED.load(Ordering::Relaxed)
}

/// Number of passed cases so far.
pub fn passes() -> u32 {
    PASSED.load(Ordering::Relaxed)
}

/// The final line for `failed` failures.
pub fn result_line(failed: u32, out: &mut dyn fmt::Write) -> fmt::Result {
    if failed == 0 {
        write!(out, "RESULT: SUCCESS")
    } else {
        write!(out, "RESULT: FAILURE: {} failed", failed)
    }
}

/// Prints the `RESULT:` line for the cases reported so far and shuts down:
/// poweroff on success, crash on failure.
pub fn finish() -> ! {
    let failed = failures();
    let mut w = crate::console::LineWriter::new();
    let _ = result_line(failed, &mut w);
    let _ = fmt::Write::write_str(&mut w, "\n");
    drop(w);
    crate::shutdown(if failed == 0 {
        abi::SHUTDOWN_POWEROFF
    } else {
        abi::SHUTDOWN_CRASH
    })
}

/// `RESULT: SKIP: <why>`, then poweroff.
pub fn skip(why: fmt::Arguments<'_>) -> ! {
    println!("RESULT: SKIP: {}", why);
    crate::shutdown(abi::SHUTDOWN_POWEROFF)
}

/// `RESULT: ERROR: <why>` (the test is broken), then crash.
pub fn error(why: fmt::Arguments<'_>) -> ! {
    println!("RESULT: ERROR: {}", why);
    crate::shutdown(abi::SHUTDOWN_CRASH)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S([u8; 64], usize);
    impl fmt::Write for S {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0[self.1..self.1 + s.len()].copy_from_slice(s.as_bytes());
            self.1 += s.len();
            Ok(())
        }
    }
    fn render(f: impl FnOnce(&mut S)) -> S {
        let mut s = S([0; 64], 0);
        f(&mut s);
        s
    }

    #[test]
    fn result_lines() {
        let s = render(|s| result_line(0, s).unwrap());
        assert_eq!(&s.0[..s.1], b"RESULT: SUCCESS");
        let s = render(|s| result_line(3, s).unwrap());
        assert_eq!(&s.0[..s.1], b"RESULT: FAILURE: 3 failed");
    }

    #[test]
    fn rc_names_errno() {
        let s = render(|s| fmt::Write::write_fmt(s, format_args!("{}", Rc(-38))).unwrap());
        assert_eq!(&s.0[..s.1], b"-38 (-ENOSYS)");
        let s = render(|s| fmt::Write::write_fmt(s, format_args!("{}", Rc(0))).unwrap());
        assert_eq!(&s.0[..s.1], b"0");
        let s =
            render(|s| fmt::Write::write_fmt(s, format_args!("{}", Rc(i32::MIN as i64))).unwrap());
        assert_eq!(&s.0[..s.1], b"-2147483648");
    }
}
