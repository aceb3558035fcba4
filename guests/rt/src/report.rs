//! XTF-style results: `TEST:`, `PASS:`/`FAIL:`/`INFO:` and one final
//! `RESULT:` line, then shutdown. All of it is `pvguest-common`'s (the
//! same lines as the 32-bit runtime's), re-exported here.

pub use pvguest_common::report::{
    begin, check, check_eq, check_rc, check_same, error, fail, failures, finish, info, pass,
    passes, result_line, skip, Rc,
};
