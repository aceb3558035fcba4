//! Guests on the command line, and the module command line they become.
//!
//! `cargo xtask run` takes each guest as `GUEST[@KEY=VAL,KEY=VAL][:ARGS]`:
//!
//! - `GUEST`: path of the guest image (becomes one multiboot module);
//! - `@KEY=VAL,...`: per-domain hypervisor options (`mem=64M`, `vcpus=2`;
//!   `rv.mem=64M` is accepted too);
//! - `:ARGS`: the guest's own command line, verbatim.
//!
//! The hypervisor sees the module command line
//! `PATH rv.KEY=VAL ... -- ARGS` under QEMU `-kernel` (QEMU puts the
//! module's path first) and `rv.KEY=VAL ... -- ARGS` under GRUB 2 (see
//! [`crate::grub`]): the `--` is always there, so nothing in ARGS can ever
//! be read as a hypervisor option.

use crate::{bail, Error, Result};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One guest: image, per-domain hypervisor options, guest command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    pub path: PathBuf,
    /// `(KEY, VALUE)` without the `rv.` prefix, in the order given.
    pub opts: Vec<(String, String)>,
    /// The guest's own command line (may be empty).
    pub args: String,
}

impl GuestSpec {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        GuestSpec {
            path: path.into(),
            opts: Vec::new(),
            args: String::new(),
        }
    }

    pub fn opt(mut self, key: &str, value: &str) -> Self {
        self.opts.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets option `key` unless it is set already. The QEMU tests give the
    /// first guest `mem=32M` this way: without `rv.mem` the initial domain
    /// would get nearly all of QEMU's memory (Xen's dom0 default), which
    /// makes each boot slower and changes what those tests were written
    /// to check (tests/tests/images.rs checks the default itself).
    pub fn default_opt(mut self, key: &str, value: &str) -> Self {
        if !self.opts.iter().any(|(k, _)| k == key) {
            self.opts.push((key.to_string(), value.to_string()));
        }
        self
    }

    pub fn args(mut self, args: &str) -> Self {
        self.args = args.to_string();
        self
    }

    /// The image's file name (what GRUB's module line names it).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.to_string_lossy().into_owned())
    }

    /// The words after the name: `rv.KEY=VAL ... --`, then the words of ARGS.
    pub fn option_words(&self) -> Vec<String> {
        let mut words: Vec<String> = self
            .opts
            .iter()
            .map(|(k, v)| format!("rv.{k}={v}"))
            .collect();
        words.push("--".to_string());
        words
    }

    /// The module command line QEMU's `-initrd` gives: `NAME rv.KEY=VAL ... -- ARGS`.
    pub fn module_cmdline(&self, name: &str) -> String {
        let mut s = name.to_string();
        for w in self.option_words() {
            s.push(' ');
            s.push_str(&w);
        }
        if !self.args.is_empty() {
            s.push(' ');
            s.push_str(&self.args);
        }
        s
    }

    /// The module command line under QEMU `-kernel`: the name is the path.
    pub fn qemu_module_cmdline(&self) -> Result<String> {
        let path = self.path.to_string_lossy();
        if path.contains(char::is_whitespace) {
            bail!("guest path {path:?} contains whitespace: QEMU's -initrd cannot load it");
        }
        Ok(self.module_cmdline(&path))
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl FromStr for GuestSpec {
    type Err = Error;

    /// Parses `GUEST[@KEY=VAL,KEY=VAL][:ARGS]`. The first `:` starts ARGS and
    /// the first `@` before it starts the options, so GUEST cannot contain
    /// `:` or `@`.
    fn from_str(s: &str) -> Result<Self> {
        let (head, args) = match s.split_once(':') {
            Some((h, a)) => (h, a),
            None => (s, ""),
        };
        let (path, opts_str) = match head.split_once('@') {
            Some((p, o)) => (p, Some(o)),
            None => (head, None),
        };
        if path.is_empty() {
            bail!("guest {s:?}: no image path (expected GUEST[@KEY=VAL,...][:ARGS])");
        }
        let mut opts = Vec::new();
        if let Some(o) = opts_str {
            for kv in o.split(',') {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("guest {s:?}: option {kv:?} is not KEY=VALUE");
                };
                let k = k.strip_prefix("rv.").unwrap_or(k);
                if !valid_key(k) {
                    bail!("guest {s:?}: bad option name {k:?}");
                }
                if v.is_empty() || v.contains(char::is_whitespace) {
                    bail!("guest {s:?}: option {k:?} needs a value without spaces");
                }
                opts.push((k.to_string(), v.to_string()));
            }
        }
        Ok(GuestSpec {
            path: PathBuf::from(path),
            opts,
            args: args.to_string(),
        })
    }
}

/// The value of QEMU's `-initrd`: module command lines joined by `,`, each
/// `,` inside one doubled (QEMU's escape).
pub fn qemu_initrd(guests: &[GuestSpec]) -> Result<String> {
    let mut parts = Vec::new();
    for g in guests {
        parts.push(g.qemu_module_cmdline()?.replace(',', ",,"));
    }
    Ok(parts.join(","))
}

/// Checks that every guest image exists, naming the first that does not.
pub fn check_exist(guests: &[GuestSpec]) -> Result<()> {
    for g in guests {
        if !Path::new(&g.path).is_file() {
            bail!("guest image {} does not exist", g.path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_only() {
        let g: GuestSpec = "target/g.elf".parse().unwrap();
        assert_eq!(g, GuestSpec::new("target/g.elf"));
        assert_eq!(g.qemu_module_cmdline().unwrap(), "target/g.elf --");
    }

    #[test]
    fn parses_options_and_args() {
        let g: GuestSpec = "g.elf@mem=64M,rv.vcpus=2:console=hvc0 --x loglvl=9"
            .parse()
            .unwrap();
        assert_eq!(
            g.opts,
            [("mem".into(), "64M".into()), ("vcpus".into(), "2".into())]
        );
        assert_eq!(g.args, "console=hvc0 --x loglvl=9");
        assert_eq!(
            g.module_cmdline("g.elf"),
            "g.elf rv.mem=64M rv.vcpus=2 -- console=hvc0 --x loglvl=9"
        );
    }

    #[test]
    fn args_may_contain_at_colon_and_options_lookalikes() {
        let g: GuestSpec = "g.elf:rv.mem=1G a@b:c".parse().unwrap();
        assert!(g.opts.is_empty());
        assert_eq!(g.module_cmdline("g.elf"), "g.elf -- rv.mem=1G a@b:c");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in ["", "@mem=1", ":x", "g@mem", "g@=1", "g@mem=", "g@m m=1"] {
            assert!(bad.parse::<GuestSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn initrd_doubles_commas_and_joins_modules() {
        let a: GuestSpec = "a.elf:x=1,2".parse().unwrap();
        let b: GuestSpec = "b.elf@mem=8M".parse().unwrap();
        assert_eq!(
            qemu_initrd(&[a, b]).unwrap(),
            "a.elf -- x=1,,2,b.elf rv.mem=8M --"
        );
        assert!(qemu_initrd(&[GuestSpec::new("a b.elf")]).is_err());
    }
}
