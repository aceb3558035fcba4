//! A cpio archive writer in the "newc" format (`070701`), the one Linux
//! unpacks as an initramfs (Documentation/driver-api/early-userspace/
//! buffer-format.rst): for each entry a 110-byte ASCII header of 13 fields
//! of 8 hex digits, the NUL-terminated name, padding to 4 bytes, the data,
//! padding to 4 bytes; the archive ends with the entry `TRAILER!!!`.
//! Uncompressed: Linux takes an uncompressed initramfs as it is.

/// File type bits of `mode` (`S_IF*`).
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// A newc archive being written. Entries get inode numbers in order;
/// owner root, modification time 0 (the archive is reproducible).
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    ino: u32,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            out: Vec::new(),
            ino: 0,
        }
    }

    fn pad4(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// One entry: `name` without a leading `/` (`bin/busybox`).
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check (newc: always 0)
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad4();
        self.out.extend_from_slice(data);
        self.pad4();
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
        self
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(name, S_IFREG | (perm & 0o7777), (0, 0), data);
        self
    }

    /// A symbolic link `name` -> `target` (the data is the target).
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
        self
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(name, S_IFCHR | (perm & 0o7777), (major, minor), &[]);
        self
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> u32 {
        u32::from_str_radix(std::str::from_utf8(b).unwrap(), 16).unwrap()
    }

    /// Reads a newc archive back: (name, mode, rdev major, data).
    fn read(mut a: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let total = a.len();
        loop {
            assert_eq!(&a[..6], b"070701", "magic at offset {}", total - a.len());
            let field = |i: usize| hex(&a[6 + 8 * i..14 + 8 * i]);
            let (mode, size, rmaj, namesize) =
                (field(1), field(6) as usize, field(9), field(11) as usize);
            let name = std::str::from_utf8(&a[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(a[110 + namesize - 1], 0, "name NUL-terminated");
            let data_at = (110 + namesize).next_multiple_of(4);
            let data = a[data_at..data_at + size].to_vec();
            let next = (data_at + size).next_multiple_of(4);
            a = &a[next..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, rmaj, data));
        }
    }

    #[test]
    fn entries_read_back_as_written() {
        let mut w = Writer::new();
        w.dir("bin")
            .file("/bin/busybox", 0o755, b"\x7fELF...")
            .symlink("bin/sh", "busybox")
            .char_dev("dev/console", 0o600, 5, 1);
        w.file("init", 0o755, b"#!/bin/sh\n");
        let a = w.finish();
        assert_eq!(a.len() % 4, 0);
        let e = read(&a);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev/console", "init"]
        );
        assert_eq!(e[0].1, 0o040755);
        assert_eq!((e[1].1, e[1].3.as_slice()), (0o100755, &b"\x7fELF..."[..]));
        assert_eq!((e[2].1, e[2].3.as_slice()), (0o120777, &b"busybox"[..]));
        assert_eq!((e[3].1, e[3].2), (0o020600, 5));
        assert_eq!(e[4].3, b"#!/bin/sh\n");
    }

    #[test]
    fn an_empty_archive_is_just_the_trailer() {
        let a = Writer::new().finish();
        assert_eq!(&a[..6], b"070701");
        assert_eq!(read(&a), []);
        // 110-byte header + "TRAILER!!!\0" (11) = 121, padded to 124.
        assert_eq!(a.len(), 124);
    }
}
