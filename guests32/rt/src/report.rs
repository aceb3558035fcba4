//! XTF-style results, exactly as the 64-bit runtime (`guests/rt`) prints
//! them: `TEST:`, `PASS:`/`FAIL:`/`INFO:` and one final `RESULT:` line,
//! then shutdown. The lines and counts are `pvguest-common`'s, re-exported
//! here; only the hypercall result, 32 bits wide (`long`), is this
//! runtime's own.

use core::fmt;

pub use pvguest_common::report::{
    begin, check, check_eq, check_same, error, fail, failures, finish, info, pass, passes,
    result_line, skip,
};

/// Passes when a hypercall returned `want` (an `-errno` or 0); the failure
/// names the errno values.
pub fn check_rc(case: &str, got: i32, want: i32) -> bool {
    pvguest_common::report::check_rc(case, got.into(), want.into())
}

/// `-errno` as the 32-bit guest sees it (`long` is 32 bits).
pub const fn neg(errno: i32) -> i32 {
    -errno
}

/// A hypercall result shown as a number and, when negative, its errno name.
pub struct Rc(pub i32);

impl fmt::Display for Rc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        pvguest_common::report::Rc(self.0.into()).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;

    #[test]
    fn neg_is_minus_errno() {
        assert_eq!(neg(abi::EINVAL), -22);
    }
}
