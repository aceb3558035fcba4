//! Debian packages fetched the way a user would: `apt-get download` into a
//! cache under `target/`, unpacked with `dpkg-deb`. Nothing fetched is ever
//! committed; deleting `target/` forgets it.
//!
//! Used by `cargo xtask bench --vs-xen` (Debian's Xen 4.17 in
//! `target/xen/`), `cargo xtask linux` and `tests/tests/linux.rs` (Debian's
//! stock kernel and busybox-static in `target/linux/`).
//!
//! A fetch that cannot happen at all (no apt-get, no network, no package
//! lists) is a [`Fetch::Unavailable`], told apart from a fetch that went
//! wrong, so that a test can skip on a machine without network (and still
//! fail in CI).

use crate::{build, cmd};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Why a package could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The download cannot happen here: no apt-get/apt-cache/dpkg-deb, no
    /// network or no package lists.
    Unavailable(String),
    /// It was downloaded but is not what was expected, or unpacking failed.
    Failed(String),
}

impl fmt::Display for Fetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fetch::Unavailable(s) => write!(f, "cannot download: {s}"),
            Fetch::Failed(s) => f.write_str(s),
        }
    }
}

impl From<Fetch> for crate::Error {
    fn from(e: Fetch) -> Self {
        crate::Error(e.to_string())
    }
}

impl From<std::io::Error> for Fetch {
    fn from(e: std::io::Error) -> Self {
        Fetch::Failed(e.to_string())
    }
}

/// The package `meta` depends on whose name starts with `prefix`, as
/// `apt-cache depends` names it: `linux-image-amd64` →
/// `linux-image-6.1.0-57-amd64`.
pub fn resolve_dependency(meta: &str, prefix: &str) -> Result<String, Fetch> {
    if cmd::find_in_path("apt-cache").is_none() {
        return Err(Fetch::Unavailable(format!(
            "apt-cache is not installed: cannot resolve {meta} (a Debian-like system with apt is needed)"
        )));
    }
    let query = || {
        let mut c = Command::new("apt-cache");
        c.args(["depends", meta]);
        cmd::announce(&c);
        c.output()
            .map_err(|e| Fetch::Unavailable(format!("cannot run apt-cache: {e}")))
    };
    let mut out = query()?;
    // A fresh machine may have no package lists at all: as root, update
    // them once and ask again.
    if depends_on(&String::from_utf8_lossy(&out.stdout), prefix).is_none()
        && crate::tools::is_root()
    {
        eprintln!("`apt-cache depends {meta}` names no {prefix}* package: updating the package lists once");
        if apt_update().is_ok() {
            out = query()?;
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match depends_on(&text, prefix) {
        Some(p) if out.status.success() => Ok(p),
        _ => Err(Fetch::Unavailable(format!(
            "`apt-cache depends {meta}` names no {prefix}* package ({}; run `apt-get update` first?)",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// `apt-get update` (as root).
fn apt_update() -> Result<(), crate::Error> {
    let mut u = Command::new("apt-get");
    u.arg("update").env("DEBIAN_FRONTEND", "noninteractive");
    cmd::run(&mut u).map(|_| ())
}

/// The first `Depends: PREFIX...` of `apt-cache depends` output.
pub fn depends_on(apt_cache_output: &str, prefix: &str) -> Option<String> {
    apt_cache_output.lines().find_map(|l| {
        let name = l.trim().strip_prefix("Depends:")?.trim();
        // `Depends: <virtual>` is written with angle brackets: skip those.
        (name.starts_with(prefix) && !name.contains('<'))
            .then(|| name.split_whitespace().next().unwrap_or(name).to_string())
    })
}

/// The newest `PACKAGE_*.deb` in `dir` (by modification time).
pub fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// `PACKAGE_*.deb` in `dir`: the one there, else `apt-get download
/// PACKAGE` into `dir` (into a scratch folder first, then moved, so two
/// fetches at once never see half a file). As root, a failed download is
/// retried once after `apt-get update` (stale package lists).
pub fn download(dir: &Path, package: &str) -> Result<PathBuf, Fetch> {
    // One download at a time in this process (tests run in threads).
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = find_deb(dir, package) {
        return Ok(d);
    }
    fs::create_dir_all(dir)?;
    let line = format!("apt-get download {package}");
    if cmd::find_in_path("apt-get").is_none() {
        return Err(Fetch::Unavailable(format!(
            "`{line}` cannot run: apt-get is not installed (put the .deb in {} by hand)",
            dir.display()
        )));
    }
    let scratch = dir.join(format!(".download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch)?;
    eprintln!(
        "downloading {package} with apt-get (cached in {})",
        dir.display()
    );
    let attempt = || {
        let mut c = Command::new("apt-get");
        c.current_dir(&scratch).args(["download", package]);
        cmd::run(&mut c)
    };
    let mut result = attempt();
    if result.is_err() && crate::tools::is_root() {
        eprintln!("`{line}` failed: updating the package lists once and trying again");
        if apt_update().is_ok() {
            result = attempt();
        }
    }
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&scratch);
        return Err(Fetch::Unavailable(format!(
            "`{line}` (in {}) failed: {} (no network, or stale package lists: `apt-get update`)",
            dir.display(),
            e.0
        )));
    }
    let got = find_deb(&scratch, package);
    let result = match got {
        Some(d) => {
            let to = dir.join(d.file_name().expect("a file"));
            fs::rename(&d, &to)?;
            Ok(to)
        }
        None => Err(Fetch::Failed(format!(
            "`{line}` left no {package}_*.deb in {}",
            scratch.display()
        ))),
    };
    let _ = fs::remove_dir_all(&scratch);
    result
}

/// Unpacks the files of `deb` whose paths match `pattern` (a tar wildcard
/// such as `./boot/vmlinuz-*`) into `into`: `dpkg-deb --fsys-tarfile DEB |
/// tar -x`. Only what is asked for is written (a kernel package holds
/// hundreds of MiB of modules besides the kernel).
pub fn extract(deb: &Path, pattern: &str, into: &Path) -> Result<(), Fetch> {
    for tool in ["dpkg-deb", "tar"] {
        if cmd::find_in_path(tool).is_none() {
            return Err(Fetch::Unavailable(format!(
                "{tool} is not installed: cannot unpack {}",
                deb.display()
            )));
        }
    }
    fs::create_dir_all(into)?;
    eprintln!(
        "$ dpkg-deb --fsys-tarfile {} | tar -x -i -C {} --wildcards '{pattern}'",
        deb.display(),
        into.display()
    );
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Fetch::Failed(format!("cannot run dpkg-deb: {e}")))?;
    let stdout = dpkg.stdout.take().expect("piped");
    // -i: read to the end of the stream (past tar's end-of-archive blocks),
    // so dpkg-deb never writes into a closed pipe.
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-i")
        .arg("-C")
        .arg(into)
        .args(["--wildcards", pattern])
        .stdin(stdout)
        .status();
    let dpkg_status = dpkg.wait();
    match (tar, dpkg_status) {
        (Ok(t), Ok(d)) if t.success() && d.success() => Ok(()),
        (t, d) => Err(Fetch::Failed(format!(
            "unpacking {} from {} failed (tar: {t:?}, dpkg-deb: {d:?})",
            pattern,
            deb.display()
        ))),
    }
}

/// Debian's Xen package and the hypervisor image in it.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
const XEN_IMAGE: &str = "boot/xen-4.17-amd64.gz";

/// `target/xen/`: Debian's Xen, fetched for side-by-side runs.
pub fn xen_dir() -> PathBuf {
    build::target_dir().join("xen")
}

/// target/xen/xen.elf, made on first use: `apt-get download` Debian's Xen
/// 4.17 into target/xen/ (unless a .deb of it is already there), unpack
/// its image, `zcat` it to an ELF QEMU's multiboot loader takes.
pub fn xen_elf() -> Result<PathBuf, Fetch> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = xen_dir();
    let elf = dir.join("xen.elf");
    if elf.is_file() {
        return Ok(elf);
    }
    let deb = download(&dir, XEN_PACKAGE)?;
    let root = dir.join("pkg");
    extract(&deb, &format!("./{XEN_IMAGE}"), &root)?;
    let gz = root.join(XEN_IMAGE);
    let part = dir.join("xen.elf.part");
    eprintln!("$ zcat {} > {}", gz.display(), elf.display());
    let status = Command::new("zcat")
        .arg(&gz)
        .stdout(fs::File::create(&part)?)
        .status()
        .map_err(|e| Fetch::Failed(format!("cannot run `zcat {}`: {e}", gz.display())))?;
    if !status.success() {
        let _ = fs::remove_file(&part);
        return Err(Fetch::Failed(format!(
            "`zcat {} > {}` failed ({status})",
            gz.display(),
            elf.display()
        )));
    }
    fs::rename(&part, &elf)?;
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_kernel_is_found_among_the_dependencies() {
        let out =
            "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n  Recommends: firmware\n";
        assert_eq!(
            depends_on(out, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(
            depends_on("x\n  Depends: <virtual>\n", "linux-image-"),
            None
        );
        assert_eq!(depends_on("", "linux-image-"), None);
    }

    #[test]
    fn debs_are_found_by_name_newest_first() {
        let dir = std::env::temp_dir().join(format!("rv-debian-deb-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(find_deb(&dir, XEN_PACKAGE), None);
        let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (i, n) in [
            "xen-hypervisor-4.17-amd64_4.17.7+13_amd64.deb",
            "other_1_amd64.deb",
            "xen-hypervisor-4.17-amd64_4.17.6_amd64.deb",
        ]
        .iter()
        .enumerate()
        {
            let f = fs::File::create(dir.join(n)).unwrap();
            f.set_modified(t0 + Duration::from_secs(10 - i as u64))
                .unwrap();
        }
        let d = find_deb(&dir, XEN_PACKAGE).unwrap();
        assert!(
            d.ends_with("xen-hypervisor-4.17-amd64_4.17.7+13_amd64.deb"),
            "{}",
            d.display()
        );
        assert_eq!(
            find_deb(&dir, "xen-hypervisor"),
            None,
            "a prefix of the name is not the package"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
