//! The hypercall table of `docs/abi.md`, read when the guest is built: the
//! hello guests issue every hypercall and check it answers as the table
//! says (`-ENOSYS` or not), so the document cannot drift from the code.
//! `tests/tests/docs.rs` includes this file too, to check the table's form.
//!
//! A row is `| NR | NAME | 64-BIT | 32-BIT | ... |` under `## Hypercalls`,
//! each answer `yes` or `-ENOSYS`; rows whose first cell is not a number
//! (the header, `other`) are not hypercalls.

/// `docs/abi.md`, as it was when this crate was built.
pub const ABI_MD: &str = include_str!("../../../docs/abi.md");

/// What a hypercall answers for one guest width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Implemented: anything but `-ENOSYS` for the probe's arguments.
    Yes,
    /// `-ENOSYS`.
    Enosys,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub nr: u32,
    /// The name as written, without backticks.
    pub name: &'a str,
    pub abi64: Answer,
    pub abi32: Answer,
}

/// The table rows of `## Hypercalls` in `md`, in order; `Err(line)` for a
/// row that names a number but cannot be read.
pub fn rows(md: &str) -> impl Iterator<Item = Result<Row<'_>, &str>> {
    let mut in_section = false;
    md.lines().filter_map(move |line| {
        if let Some(h) = line.strip_prefix("## ") {
            in_section = h.trim() == "Hypercalls";
            return None;
        }
        if !in_section || !line.starts_with('|') {
            return None;
        }
        let mut cells = line.split('|').skip(1).map(str::trim);
        let nr = cells.next()?.parse::<u32>().ok()?;
        let mut next = || cells.next().ok_or(line);
        let row = (|| {
            let name = next()?.trim_matches('`');
            let abi64 = answer(next()?).ok_or(line)?;
            let abi32 = answer(next()?).ok_or(line)?;
            Ok(Row {
                nr,
                name,
                abi64,
                abi32,
            })
        })();
        Some(row)
    })
}

fn answer(cell: &str) -> Option<Answer> {
    match cell.trim_matches('`') {
        "yes" => Some(Answer::Yes),
        "-ENOSYS" => Some(Answer::Enosys),
        _ => None,
    }
}

/// What hypercall `nr` answers per the table (`wide`: 64-bit guests):
/// numbers not in the table are `-ENOSYS`.
pub fn expected(md: &str, nr: u32, wide: bool) -> Answer {
    rows(md)
        .flatten()
        .find(|r| r.nr == nr)
        .map_or(Answer::Enosys, |r| if wide { r.abi64 } else { r.abi32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_in_the_section_only() {
        let md = "| 1 | `a` | yes | yes |\n## Hypercalls\n\n| # | x | 64 | 32 |\n|---|---|---|---|\n\
                  | 0 | `set_trap_table` | yes | -ENOSYS | text |\n| 7 | `p` | -ENOSYS | `-ENOSYS` | |\n\
                  | 8 | `q` | maybe | yes |\n| other | | -ENOSYS | -ENOSYS | |\n## Next\n| 9 | `r` | yes | yes |\n";
        let r: alloc_free::Vec4 = rows(md).collect();
        assert_eq!(
            r.0[0],
            Some(Ok(Row {
                nr: 0,
                name: "set_trap_table",
                abi64: Answer::Yes,
                abi32: Answer::Enosys
            }))
        );
        assert_eq!(
            r.0[1],
            Some(Ok(Row {
                nr: 7,
                name: "p",
                abi64: Answer::Enosys,
                abi32: Answer::Enosys
            }))
        );
        assert_eq!(r.0[2], Some(Err("| 8 | `q` | maybe | yes |")));
        assert_eq!(r.0[3], None);
        assert_eq!(expected(md, 0, false), Answer::Enosys);
        assert_eq!(expected(md, 0, true), Answer::Yes);
        assert_eq!(expected(md, 9, true), Answer::Enosys);
    }

    #[test]
    fn the_real_table_reads() {
        assert!(rows(ABI_MD).all(|r| r.is_ok()));
        assert_eq!(
            rows(ABI_MD).flatten().find(|r| r.nr == 17).map(|r| r.name),
            Some("xen_version")
        );
    }

    /// No alloc in this crate: a fixed collector for the test.
    mod alloc_free {
        pub struct Vec4<'a>(pub [Option<Result<super::Row<'a>, &'a str>>; 4]);
        impl<'a> FromIterator<Result<super::Row<'a>, &'a str>> for Vec4<'a> {
            fn from_iter<I: IntoIterator<Item = Result<super::Row<'a>, &'a str>>>(it: I) -> Self {
                let mut v = Vec4([None; 4]);
                for (i, r) in it.into_iter().take(4).enumerate() {
                    v.0[i] = Some(r);
                }
                v
            }
        }
    }
}
