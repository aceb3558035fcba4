//! `xen/include/public/errno.h`: Xen's error numbers. They match Linux's
//! x86 values, but a guest must use these, not its host's.
//!
//! Return convention: a hypercall returns `-errno` in `%rax` (64-bit guest,
//! as a 64-bit signed value) or `%eax` (32-bit guest); 0 or a positive
//! value is success. Use [`neg`] to build the return value.

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const ESRCH: i32 = 3;
pub const EINTR: i32 = 4;
pub const EIO: i32 = 5;
pub const ENXIO: i32 = 6;
pub const E2BIG: i32 = 7;
pub const ENOEXEC: i32 = 8;
pub const EBADF: i32 = 9;
pub const ECHILD: i32 = 10;
pub const EAGAIN: i32 = 11;
/// Alias of [`EAGAIN`].
pub const EWOULDBLOCK: i32 = 11;
pub const ENOMEM: i32 = 12;
pub const EACCES: i32 = 13;
pub const EFAULT: i32 = 14;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const EXDEV: i32 = 18;
pub const ENODEV: i32 = 19;
pub const ENOTDIR: i32 = 20;
pub const EISDIR: i32 = 21;
pub const EINVAL: i32 = 22;
pub const ENFILE: i32 = 23;
pub const EMFILE: i32 = 24;
pub const ENOSPC: i32 = 28;
pub const EROFS: i32 = 30;
pub const EMLINK: i32 = 31;
pub const EDOM: i32 = 33;
pub const ERANGE: i32 = 34;
pub const EDEADLK: i32 = 35;
/// Alias of [`EDEADLK`].
pub const EDEADLOCK: i32 = 35;
pub const ENAMETOOLONG: i32 = 36;
pub const ENOLCK: i32 = 37;
pub const ENOSYS: i32 = 38;
pub const ENOTEMPTY: i32 = 39;
pub const ENODATA: i32 = 61;
pub const ETIME: i32 = 62;
pub const EBADMSG: i32 = 74;
pub const EOVERFLOW: i32 = 75;
pub const EILSEQ: i32 = 84;
pub const ERESTART: i32 = 85;
pub const ENOTSOCK: i32 = 88;
pub const EMSGSIZE: i32 = 90;
pub const EOPNOTSUPP: i32 = 95;
pub const EADDRINUSE: i32 = 98;
pub const EADDRNOTAVAIL: i32 = 99;
pub const ENOBUFS: i32 = 105;
pub const EISCONN: i32 = 106;
pub const ENOTCONN: i32 = 107;
pub const ETIMEDOUT: i32 = 110;
pub const ECONNREFUSED: i32 = 111;

/// The hypercall return value for error `errno`: `-errno`.
pub const fn neg(errno: i32) -> i64 {
    -(errno as i64)
}

/// The name of a Xen errno (positive), for traces. Aliases give the
/// primary name.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        ENXIO => "ENXIO",
        E2BIG => "E2BIG",
        ENOEXEC => "ENOEXEC",
        EBADF => "EBADF",
        ECHILD => "ECHILD",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        EXDEV => "EXDEV",
        ENODEV => "ENODEV",
        ENOTDIR => "ENOTDIR",
        EISDIR => "EISDIR",
        EINVAL => "EINVAL",
        ENFILE => "ENFILE",
        EMFILE => "EMFILE",
        ENOSPC => "ENOSPC",
        EROFS => "EROFS",
        EMLINK => "EMLINK",
        EDOM => "EDOM",
        ERANGE => "ERANGE",
        EDEADLK => "EDEADLK",
        ENAMETOOLONG => "ENAMETOOLONG",
        ENOLCK => "ENOLCK",
        ENOSYS => "ENOSYS",
        ENOTEMPTY => "ENOTEMPTY",
        ENODATA => "ENODATA",
        ETIME => "ETIME",
        EBADMSG => "EBADMSG",
        EOVERFLOW => "EOVERFLOW",
        EILSEQ => "EILSEQ",
        ERESTART => "ERESTART",
        ENOTSOCK => "ENOTSOCK",
        EMSGSIZE => "EMSGSIZE",
        EOPNOTSUPP => "EOPNOTSUPP",
        EADDRINUSE => "EADDRINUSE",
        EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ENOBUFS => "ENOBUFS",
        EISCONN => "EISCONN",
        ENOTCONN => "ENOTCONN",
        ETIMEDOUT => "ETIMEDOUT",
        ECONNREFUSED => "ECONNREFUSED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names() {
        assert_eq!(neg(ENOSYS), -38);
        assert_eq!(neg(EFAULT) as u64, 0xffff_ffff_ffff_fff2);
        assert_eq!(errno_name(-(neg(EINVAL) as i32)), Some("EINVAL"));
        assert_eq!(errno_name(EWOULDBLOCK), Some("EAGAIN"));
        assert_eq!(errno_name(15), None);
        assert_eq!((ERESTART, ECONNREFUSED), (85, 111));
    }
}
