//! The host tools the harness needs, and how they get installed.
//!
//! Missing tools are installed with apt-get when we run as root (a fresh
//! Debian machine, CI); otherwise the error names the command to run.
//! Missing Rust targets are added with rustup (see [`ensure_targets`]).

use crate::{bail, cmd, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Debian packages that provide every tool below.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "binutils",
    "ovmf",
];

/// One external tool: how to tell it is there.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// What to call it in messages.
    pub name: &'static str,
    /// The Debian package that provides it.
    pub package: &'static str,
    present: fn() -> bool,
}

impl Tool {
    pub fn is_present(&self) -> bool {
        (self.present)()
    }
}

pub const QEMU_TOOL: Tool = Tool {
    name: "qemu-system-x86_64",
    package: "qemu-system-x86",
    present: || cmd::find_in_path("qemu-system-x86_64").is_some(),
};

pub const GRUB_MKRESCUE: Tool = Tool {
    name: "grub-mkrescue",
    package: "grub-common",
    present: || cmd::find_in_path("grub-mkrescue").is_some(),
};

/// GRUB's BIOS modules: without them grub-mkrescue makes an ISO that QEMU's
/// BIOS cannot boot.
pub const GRUB_PC: Tool = Tool {
    name: "GRUB BIOS modules (/usr/lib/grub/i386-pc)",
    package: "grub-pc-bin",
    present: || Path::new("/usr/lib/grub/i386-pc/multiboot2.mod").is_file(),
};

/// GRUB's UEFI modules: with them beside the BIOS ones grub-mkrescue makes
/// one hybrid image that boots from BIOS and from UEFI.
pub const GRUB_EFI: Tool = Tool {
    name: "GRUB UEFI modules (/usr/lib/grub/x86_64-efi)",
    package: "grub-efi-amd64-bin",
    present: || Path::new("/usr/lib/grub/x86_64-efi/multiboot2.mod").is_file(),
};

/// The UEFI firmware for QEMU (`--uefi` runs): code and variable store,
/// as two pflash drives.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

pub const OVMF: Tool = Tool {
    name: "OVMF (UEFI firmware for QEMU, /usr/share/OVMF)",
    package: "ovmf",
    present: || Path::new(OVMF_CODE).is_file() && Path::new(OVMF_VARS).is_file(),
};

pub const XORRISO: Tool = Tool {
    name: "xorriso",
    package: "xorriso",
    present: || cmd::find_in_path("xorriso").is_some(),
};

pub const MFORMAT: Tool = Tool {
    name: "mformat",
    package: "mtools",
    present: || cmd::find_in_path("mformat").is_some(),
};

/// `as --32` and `ld -m elf_i386`: the assembly test guests (tests/asm/)
/// and lesson 9.
pub const BINUTILS: Tool = Tool {
    name: "as, ld (binutils)",
    package: "binutils",
    present: || cmd::find_in_path("as").is_some() && cmd::find_in_path("ld").is_some(),
};

/// What `qemu` runs need.
pub const QEMU: &[Tool] = &[QEMU_TOOL];
/// What a UEFI `qemu` run needs.
pub const QEMU_UEFI: &[Tool] = &[QEMU_TOOL, OVMF];
/// What an ISO build needs (BIOS and UEFI GRUB: one hybrid image).
pub const ISO: &[Tool] = &[GRUB_MKRESCUE, GRUB_PC, GRUB_EFI, XORRISO, MFORMAT];
/// Everything.
pub const ALL: &[Tool] = &[
    QEMU_TOOL,
    OVMF,
    GRUB_MKRESCUE,
    GRUB_PC,
    GRUB_EFI,
    XORRISO,
    MFORMAT,
    BINUTILS,
];

/// The install command as one shell line.
pub fn install_hint() -> String {
    format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        PACKAGES.join(" ")
    )
}

/// Whether we run as root (the real uid).
pub(crate) fn is_root() -> bool {
    // The real uid from /proc (Linux), else `id -u`.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(1) == Some("0");
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure every tool in `tools` is present: installs all of
/// [`PACKAGES`] with apt-get when running as root, else fails naming the
/// install command.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    // One installer at a time (tests run in parallel threads).
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());

    let missing: Vec<&Tool> = tools.iter().filter(|t| !t.is_present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|t| t.name).collect();
    if !is_root() {
        bail!(
            "missing {}; install with: sudo sh -c '{}'",
            names.join(", "),
            install_hint()
        );
    }
    if cmd::find_in_path("apt-get").is_none() {
        bail!(
            "missing {} and no apt-get to install it; install the packages {}",
            names.join(", "),
            PACKAGES.join(" ")
        );
    }
    eprintln!("missing {}: installing with apt-get", names.join(", "));
    cmd::run(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = tools
        .iter()
        .filter(|t| !t.is_present())
        .map(|t| t.name)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(", "));
    }
    Ok(())
}

/// The Rust targets the builds need besides the host's: the hypervisor and
/// the 64-bit guests (`x86_64-unknown-none`), the 32-bit guests
/// (`i686-unknown-linux-gnu`, see `.cargo/config.toml`).
pub const RUST_TARGETS: &[&str] = &[crate::build::TARGET, crate::build::TARGET32];

/// The command that adds `targets`.
pub fn rustup_hint(targets: &[&str]) -> String {
    format!("rustup target add {}", targets.join(" "))
}

/// The rustc of the toolchain that runs us: `$RUSTC`, else the `rustc`
/// beside `$CARGO` (rustup's toolchain directory), else `rustc` on `PATH`.
fn rustc() -> Command {
    if let Some(r) = std::env::var_os("RUSTC").filter(|r| !r.is_empty()) {
        return Command::new(r);
    }
    if let Some(c) = std::env::var_os("CARGO") {
        let beside =
            PathBuf::from(c).with_file_name(format!("rustc{}", std::env::consts::EXE_SUFFIX));
        if beside.is_file() {
            return Command::new(beside);
        }
    }
    Command::new("rustc")
}

/// The targets of `targets` whose standard library is not in the
/// toolchain's sysroot (`rustc --print sysroot`, run in the workspace so
/// rust-toolchain.toml applies).
pub fn missing_targets(targets: &[&'static str]) -> Result<Vec<&'static str>> {
    let out = match rustc()
        .current_dir(crate::build::workspace_root())
        .args(["--print", "sysroot"])
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => bail!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!("cannot run rustc: {e}"),
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(targets
        .iter()
        .copied()
        .filter(|t| !sysroot.join("lib/rustlib").join(t).join("lib").is_dir())
        .collect())
}

/// Makes sure the toolchain has `targets`: adds the missing ones with
/// `rustup target add` (saying so), or, without rustup, fails naming the
/// command. rust-toolchain.toml lists them, but rustup installs a toolchain
/// file's targets only when it installs the toolchain itself: a toolchain
/// already there is used as it is.
pub fn ensure_targets(targets: &[&'static str]) -> Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());

    let missing = missing_targets(targets)?;
    if missing.is_empty() {
        return Ok(());
    }
    let hint = rustup_hint(&missing);
    if cmd::find_in_path("rustup").is_none() {
        bail!(
            "the Rust toolchain lacks the target(s) {} and there is no rustup to add them; \
             install rustup (https://rustup.rs), then run: {hint}",
            missing.join(", ")
        );
    }
    eprintln!(
        "missing Rust target(s) {}: adding them with rustup",
        missing.join(", ")
    );
    cmd::run(
        Command::new("rustup")
            .current_dir(crate::build::workspace_root())
            .args(["target", "add"])
            .args(&missing),
    )?;
    let still = missing_targets(targets)?;
    if !still.is_empty() {
        bail!("still missing after `{hint}`: {}", still.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_targets_reads_the_sysroot() {
        // The host's own target is always there; a made-up one never is.
        let host = if cfg!(target_arch = "x86_64") {
            "x86_64-unknown-linux-gnu"
        } else {
            return;
        };
        assert_eq!(
            missing_targets(&[host, "no-such-target-none"]).unwrap(),
            ["no-such-target-none"]
        );
        assert_eq!(
            rustup_hint(RUST_TARGETS),
            "rustup target add x86_64-unknown-none i686-unknown-linux-gnu"
        );
    }
}
