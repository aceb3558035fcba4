//! Running external commands, each printed before it runs.

use crate::{bail, Result};
use std::ffi::OsStr;
use std::process::Command;

/// Quotes one word for a POSIX shell, only when it needs it, so a printed
/// command can be pasted back into a terminal.
pub fn shell_word(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%^".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command as a shell line: environment variables the harness set, the
/// program and its arguments (`RINGVISOR_ELF=... cargo test ...`).
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            parts.push(format!("{}={}", k.to_string_lossy(), shell_word(v)));
        }
    }
    parts.push(shell_word(cmd.get_program()));
    parts.extend(cmd.get_args().map(shell_word));
    parts.join(" ")
}

/// Prints `$ COMMAND` to stderr.
pub fn announce(cmd: &Command) {
    eprintln!("$ {}", display(cmd));
}

/// Prints and runs `cmd` with inherited stdio; an unsuccessful exit is an
/// error naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    announce(cmd);
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => bail!("cannot run `{}`: {e}", cmd.get_program().to_string_lossy()),
    };
    if !status.success() {
        bail!(
            "`{}` failed ({status})",
            cmd.get_program().to_string_lossy()
        );
    }
    Ok(())
}

/// Looks `program` up in `PATH` like a shell does.
pub fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(OsStr::new("-kernel")), "-kernel");
        assert_eq!(shell_word(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_word(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(OsStr::new("")), "''");
    }

    #[test]
    fn display_shows_env_program_and_args() {
        let mut c = Command::new("qemu-system-x86_64");
        c.env("X", "1 2").args(["-append", "loglvl=debug x"]);
        assert_eq!(
            display(&c),
            "X='1 2' qemu-system-x86_64 -append 'loglvl=debug x'"
        );
    }
}
