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
//!
//! # Concurrency
//!
//! The table is one static ([`frames`]), outside every other lock, and
//! each frame's record has its own lock (Xen updates `count_info` and
//! `type_info` of one `page_info` with cmpxchg; a small spin lock per
//! frame is the same guarantee, read-modify-write of one frame's record
//! as one step, for a record of several fields). A check and the change
//! it allows happen in one [`FrameTable::with`] call ("not a page table,
//! so one more writable mapping"), so two CPUs, or two domains (grant
//! mappings count on the granter's frames), cannot both pass a check the
//! other's change would fail. A frame's lock is a leaf: [`FrameTable::with`]
//! never runs with another frame's lock held (the closure gets only that
//! record), so two frame locks are never held at once.
//!
//! What spans several frames (validating a page table takes references
//! on every frame its entries name) is the domain's mm operation, which
//! holds that domain's lock (docs/design.md, "Lock order"): only the
//! owner's operations change a frame's type, and they do not interleave.

use alloc::vec::Vec;
use spin::Mutex;

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
// repr(C) in this order: the kind and owner where the compiler put them
// before `pae_xen_l2` came (with it, it swapped them, and `mmu_update`
// read them 3 instructions slower: `cargo xtask bench --icount`).
#[repr(C)]
pub struct FrameInfo {
    pub mapped: u32,
    pub writable: u32,
    pub table_refs: u32,
    /// Linear page tables (Xen's linear_pt_count): > 0, how many entries
    /// of this table map a table of its own level; < 0, how many such
    /// entries map this one. Never both (XSA-240): chains stay one deep.
    pub linear: i32,
    pub kind: Kind,
    pub owner: u16,
    pub pinned: bool,
    /// With `Kind::Table(2)` of a 32-bit guest: the L2 its PAE L3's slot
    /// 3 points at (Xen's `PGT_pae_xen_l2`, part of the type: such an L2
    /// is referenced from no other slot or L3, and its slots from the
    /// hypervisor start up are the hypervisor's, the compat M2P).
    pub pae_xen_l2: bool,
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
        pae_xen_l2: false,
    };

    /// Nothing holds it: no mapping (read-only or writable), not a page
    /// table or GDT.
    pub fn unused(&self) -> bool {
        self.kind == Kind::Normal
            && !self.pinned
            && self.mapped == 0
            && self.writable == 0
            && self.table_refs == 0
    }
}

pub struct FrameTable {
    info: Vec<Mutex<FrameInfo>>,
}

impl FrameTable {
    /// What the table costs per machine frame (for sizing the heap).
    pub const BYTES_PER_FRAME: usize = core::mem::size_of::<Mutex<FrameInfo>>();

    pub fn new(nframes: usize) -> FrameTable {
        let mut info = Vec::with_capacity(nframes);
        info.resize_with(nframes, || Mutex::new(FrameInfo::FREE));
        FrameTable { info }
    }

    /// A copy of the frame's record as it is now. Enough for a decision
    /// only the caller's domain lock keeps true (its own frames' types);
    /// a decision another CPU or domain could race belongs in [`with`].
    ///
    /// [`with`]: FrameTable::with
    #[inline(always)]
    pub fn get(&self, mfn: u64) -> Option<FrameInfo> {
        Some(*self.info.get(usize::try_from(mfn).ok()?)?.lock())
    }

    /// Run `f` on the frame's record under its lock: a check and the
    /// change it allows, as one step. `None` for a frame past the table.
    // Inlined: on the mm hypercalls' paths, a call with a closure costs
    // as much as the lock itself (`cargo xtask bench --icount`).
    #[inline(always)]
    pub fn with<R>(&self, mfn: u64, f: impl FnOnce(&mut FrameInfo) -> R) -> Option<R> {
        let slot = self.info.get(usize::try_from(mfn).ok()?)?;
        let mut g = slot.lock();
        Some(f(&mut g))
    }

    /// Give a frame to a domain (fresh, ordinary memory).
    /// A page table of the domain that owns `mfn`, typed as `kind` without
    /// touching its counts (the builder's tables: a table frame may
    /// already be mapped, read-only, by the bootstrap mappings made
    /// before it became one, and those mappings are counted).
    pub fn set_kind(&self, mfn: u64, kind: Kind) {
        self.with(mfn, |f| f.kind = kind);
    }

    pub fn assign(&self, mfn: u64, owner: u16, kind: Kind) {
        self.with(mfn, |f| {
            *f = FrameInfo {
                owner,
                kind,
                ..FrameInfo::FREE
            }
        });
    }

    pub fn release(&self, mfn: u64) {
        self.with(mfn, |f| *f = FrameInfo::FREE);
    }

    pub fn owned_by(&self, mfn: u64, dom: u16) -> bool {
        self.get(mfn).is_some_and(|f| f.owner == dom)
    }
}

/// The frame table, made once at boot and kept for the run (one load to
/// reach it on the hot paths, where a `spin::Once` tests its state too).
static FRAMES: core::sync::atomic::AtomicPtr<FrameTable> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Make the frame table, for `nframes` machine frames (boot, once).
pub fn init(nframes: usize) {
    use core::sync::atomic::Ordering;
    if FRAMES.load(Ordering::Acquire).is_null() {
        let t = alloc::boxed::Box::leak(alloc::boxed::Box::new(FrameTable::new(nframes)));
        FRAMES.store(t, Ordering::Release);
    }
}

/// The frame table (after [`init`]; before it, an empty one).
#[inline]
pub fn frames() -> &'static FrameTable {
    static EMPTY: FrameTable = FrameTable { info: Vec::new() };
    let p = FRAMES.load(core::sync::atomic::Ordering::Acquire);
    // SAFETY: null, or the table `init` leaked (never freed, never
    // changed as a whole: its records are each behind their own lock).
    unsafe { p.as_ref() }.unwrap_or(&EMPTY)
}
