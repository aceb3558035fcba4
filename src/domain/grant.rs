//! A domain's grant table: what it holds (the frames, the version, the
//! live maps). The grant-table hypercalls that change it are
//! `pv::grant`'s.

use alloc::vec::Vec;

use super::Domain;
use crate::mm::frametable::FrameTable;
use crate::mm::paging;

use ringvisor_abi::grant_table::{V1_PER_FRAME, V2_PER_FRAME};

#[derive(Clone, Copy, Debug)]
pub struct Map {
    pub gref: u32,
    pub mfn: u64,
    pub readonly: bool,
    /// A host mapping (a grant PTE somewhere) holds references.
    pub host: bool,
    /// The host mapping was made by PTE address (GNTMAP_contains_pte),
    /// and is named so on unmap.
    pub by_pte: bool,
    /// A device mapping holds references.
    pub device: bool,
}

#[derive(Default)]
pub struct GrantTable {
    pub version: u8,
    pub shared: Vec<u64>,
    pub status: Vec<u64>,
    pub maps: Vec<Option<Map>>,
}

impl GrantTable {
    pub fn new() -> GrantTable {
        GrantTable {
            version: 1,
            ..GrantTable::default()
        }
    }

    pub(crate) fn entries(&self) -> usize {
        self.shared.len()
            * if self.version == 2 {
                V2_PER_FRAME
            } else {
                V1_PER_FRAME
            }
    }

    /// Every frame the table holds (for the domain's teardown).
    pub fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.shared.iter().chain(self.status.iter()).copied()
    }
}

/// Give grant frame `mfn` back: out of the frame table, the M2P and to
/// the pool.
pub fn free_frame(ft: &FrameTable, mfn: u64) {
    ft.release(mfn);
    paging::m2p_set(mfn, paging::M2P_INVALID);
    let _ = paging::with_frames(|fa| fa.free(crate::mm::frame::Frame(mfn)));
}

/// A finished domain's table: its maps are of its own frames (released
/// with them); the table's frames go back to the pool.
pub fn teardown(d: &mut Domain, ft: &FrameTable) {
    let frames: Vec<u64> = d.gnttab.frames().collect();
    for f in frames {
        free_frame(ft, f);
    }
    d.gnttab = GrantTable::new();
}
