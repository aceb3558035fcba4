//! Who owns each machine frame, and what a guest frame is used as.
//!
//! The PV rules (Xen's `page_info` model, simplified): a guest may map only
//! frames it owns; a frame used as a page table (typed L1-L4) may never be
//! mapped writable, and a frame with writable mappings may not become a
//! page table. `mapped` counts a frame's mappings in the domain's L1
//! tables and `writable` the writable ones among them; `table_refs` counts
//! the references that keep it a page table (pins, entries of a
//! higher-level table, a vCPU's CR3). A frame is given back (balloon,
//! `decrease_reservation`) only when none of these hold it.

use alloc::vec::Vec;

/// Owner value of frames that belong to no domain.
pub const OWNER_NONE: u16 = 0xffff;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ordinary memory (may be mapped writable).
    Normal,
    /// A page table of this level (1-4): mapped read-only only.
    Table(u8),
    /// The domain's shared_info page: the guest may map it writable.
    SharedInfo,
    /// Part of a vCPU's GDT (`set_gdt`): mapped read-only only.
    Gdt,
    /// The hypervisor's, shared read-only with the domain (grant status
    /// frames): mapped read-only only, never a page table, never given
    /// back by the guest.
    ReadOnly,
}

#[derive(Clone, Copy, Debug)]
pub struct FrameInfo {
    pub owner: u16,
    pub kind: Kind,
    pub pinned: bool,
    pub mapped: u32,
    pub writable: u32,
    pub table_refs: u32,
    /// Linear page tables (Xen's linear_pt_count): > 0, how many entries
    /// of this table map a table of its own level; < 0, how many such
    /// entries map this one. Never both (XSA-240): chains stay one deep.
    pub linear: i32,
}

impl FrameInfo {
    const FREE: FrameInfo = FrameInfo {
        owner: OWNER_NONE,
        kind: Kind::Normal,
        pinned: false,
        mapped: 0,
        writable: 0,
        table_refs: 0,
        linear: 0,
    };

    /// Nothing holds it: no mapping, not a page table or GDT.
    pub fn unused(&self) -> bool {
        self.kind == Kind::Normal && !self.pinned && self.mapped == 0 && self.table_refs == 0
    }
}

pub struct FrameTable {
    info: Vec<FrameInfo>,
}

impl FrameTable {
    pub fn new(nframes: usize) -> FrameTable {
        FrameTable {
            info: alloc::vec![FrameInfo::FREE; nframes],
        }
    }

    pub fn get(&self, mfn: u64) -> Option<&FrameInfo> {
        self.info.get(usize::try_from(mfn).ok()?)
    }

    pub fn get_mut(&mut self, mfn: u64) -> Option<&mut FrameInfo> {
        self.info.get_mut(usize::try_from(mfn).ok()?)
    }

    /// Give a frame to a domain (fresh, ordinary memory).
    pub fn assign(&mut self, mfn: u64, owner: u16, kind: Kind) {
        if let Some(f) = self.get_mut(mfn) {
            *f = FrameInfo {
                owner,
                kind,
                ..FrameInfo::FREE
            };
        }
    }

    pub fn release(&mut self, mfn: u64) {
        if let Some(f) = self.get_mut(mfn) {
            *f = FrameInfo::FREE;
        }
    }

    pub fn owned_by(&self, mfn: u64, dom: u16) -> bool {
        self.get(mfn).is_some_and(|f| f.owner == dom)
    }
}
