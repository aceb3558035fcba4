//! Typed views of one machine frame through the direct map: the one place
//! the hypervisor turns a frame number into memory it reads or writes.
//!
//! A [`FrameView`] is a frame's direct-map address with bounds-checked
//! accessors: page-table words (volatile, as the CPU's walk may read them
//! at any time), byte ranges (copy in and out, zero), and atomic words at
//! an offset (memory a guest shares). It never hands out a Rust reference
//! to the frame's bytes: a guest may change them at any moment (its
//! writable frames, its shared pages), which a `&[u8]` would forbid.
//!
//! What makes a frame number valid here: the frame is RAM inside the
//! direct map, and not memory the hypervisor's Rust code holds references
//! into (its image, heap, own page tables, stacks). Every frame the frame
//! allocator hands out for a domain, and every frame the frame table
//! records as a domain's, is such a frame. [`FrameView::owned`] checks that
//! against the frame table; [`FrameView::new`] takes the caller's word
//! for it (the hot paths, whose frame-table checks came first).

use core::sync::atomic::{AtomicU32, AtomicU64};

use super::frame::Frame;
use super::frametable::{FrameInfo, FrameTable, OWNER_NONE};
use super::paging;

/// Bytes in a frame.
pub const FRAME_SIZE: usize = 4096;
/// 8-byte entries in a page-table frame.
pub const ENTRIES: usize = 512;

/// One machine frame through the direct map.
#[derive(Clone, Copy)]
pub struct FrameView {
    va: u64,
}

impl FrameView {
    /// A view of frame `mfn`.
    ///
    /// # Safety
    ///
    /// `mfn` is RAM inside the direct map and no Rust reference covers it:
    /// a frame the allocator gave a domain (or is giving one), or a frame
    /// the frame table records as a domain's, still so while the view is
    /// used. Concurrent writers (the guest, another CPU) are allowed: the
    /// accessors never form references to the frame.
    #[inline(always)]
    pub unsafe fn new(mfn: u64) -> FrameView {
        debug_assert!(paging::is_ram(mfn << 12));
        FrameView {
            va: paging::phys_to_virt(mfn << 12),
        }
    }

    /// A view of `mfn` if the frame table records it as some domain's
    /// (so it is pool RAM given to a guest, not the hypervisor's memory).
    #[inline(always)]
    pub fn owned(ft: &FrameTable, mfn: u64) -> Option<FrameView> {
        FrameView::owned_if(ft, mfn, |_| true)
    }

    /// As `owned`, if also `ok` holds of the frame's record (the caller's
    /// own check, on the same copy of the record).
    #[inline(always)]
    pub fn owned_if(
        ft: &FrameTable,
        mfn: u64,
        ok: impl FnOnce(&FrameInfo) -> bool,
    ) -> Option<FrameView> {
        let f = ft.get(mfn)?;
        let valid = f.owner != OWNER_NONE && paging::is_ram(mfn << 12);
        // SAFETY: the frame table records only pool frames as a domain's,
        // from their allocation to their release (the caller's domain
        // lock, or the frame's hold, keeps that so while it uses the view).
        (valid && ok(&f)).then(|| unsafe { FrameView::new(mfn) })
    }

    /// A fresh frame from the pool, zeroed, not yet anyone's: the caller
    /// gives it to a domain or keeps it as the hypervisor's own (and frees
    /// it when done).
    pub fn alloc_zeroed() -> Option<FrameView> {
        let f = paging::with_frames(|fa| fa.alloc())?;
        // SAFETY: just taken from the pool: RAM in the direct map that
        // nothing else refers to.
        let v = unsafe { FrameView::new(f.0) };
        v.zero();
        Some(v)
    }

    /// The frame's number.
    #[inline(always)]
    pub fn mfn(&self) -> u64 {
        (self.va - paging::phys_to_virt(0)) >> 12
    }

    /// Entry `i`'s address. An index past 511 wraps within the frame
    /// (debug builds stop on it): a mask, not a branch to a panic, keeps the
    /// mmu_update and update_va_mapping paths as short as raw pointers did.
    #[inline(always)]
    fn word_ptr(&self, i: usize) -> *mut u64 {
        debug_assert!(i < ENTRIES);
        (self.va + (i % ENTRIES) as u64 * 8) as *mut u64
    }

    /// Entry `i` (0..512) of the frame read as a table of u64s.
    #[inline(always)]
    pub fn read(&self, i: usize) -> u64 {
        // SAFETY: in bounds and aligned (word_ptr masks the index) of a frame
        // valid by construction; volatile, as others may write it.
        unsafe { self.word_ptr(i).read_volatile() }
    }

    /// Store `v` as entry `i` (0..512).
    #[inline(always)]
    pub fn write(&self, i: usize, v: u64) {
        // SAFETY: as read.
        unsafe { self.word_ptr(i).write_volatile(v) }
    }

    #[inline(always)]
    fn range(&self, off: usize, len: usize) -> *mut u8 {
        assert!(off <= FRAME_SIZE && len <= FRAME_SIZE - off);
        (self.va + off as u64) as *mut u8
    }

    /// Copy `out.len()` bytes from byte `off` of the frame.
    #[inline(always)]
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) {
        let src = self.range(off, out.len());
        // SAFETY: `src..src + len` is inside the frame (checked), which no
        // Rust reference covers, so it cannot overlap `out`.
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) }
    }

    /// Copy `data` into the frame from byte `off`.
    #[inline(always)]
    pub fn write_bytes(&self, off: usize, data: &[u8]) {
        let dst = self.range(off, data.len());
        // SAFETY: as read_bytes.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
    }

    /// As `write_bytes`, for large copies: at an 8-byte aligned `off`, with
    /// plain 8-byte stores (`copy_nonoverlapping` becomes `rep movsq`,
    /// which QEMU's TCG runs an iteration at a time: the 58 MiB of Debian's
    /// kernel took about twice as long that way).
    pub fn write_bulk(&self, off: usize, data: &[u8]) {
        let dst = self.range(off, data.len());
        if !off.is_multiple_of(8) {
            return self.write_bytes(off, data);
        }
        let mut s = data.chunks_exact(8);
        let mut at = dst as *mut u64;
        for s8 in &mut s {
            let mut w = [0u8; 8];
            w.copy_from_slice(s8);
            // SAFETY: 8 bytes inside the frame (range checked above) at an
            // 8-byte aligned address; volatile only so the loop is not
            // turned back into a memcpy.
            unsafe {
                at.write_volatile(u64::from_ne_bytes(w));
                at = at.add(1);
            }
        }
        let done = data.len() - s.remainder().len();
        self.write_bytes(off + done, s.remainder());
    }

    /// Zero the whole frame with plain 8-byte stores, 64 bytes a loop
    /// (`write_bytes(0)` becomes `rep stosq`: under TCG, building a
    /// 941 MiB initial domain took 3.6 s of zeroing that way).
    pub fn zero(&self) {
        for chunk in 0..ENTRIES / 8 {
            for i in chunk * 8..chunk * 8 + 8 {
                self.write(i, 0);
            }
        }
    }

    // The atomic views are for the shared-info and vcpu_info words
    // (pv::event, pv::traps), not converted yet: unused until then.
    #[allow(dead_code)]
    #[inline(always)]
    fn aligned(&self, off: usize, size: usize) -> u64 {
        assert!(off.is_multiple_of(size) && off < FRAME_SIZE);
        self.va + off as u64
    }

    /// The u32 at byte `off` (4-byte aligned), as an atomic.
    #[allow(dead_code)]
    #[inline(always)]
    pub fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        let p = self.aligned(off, 4) as *mut u32;
        // SAFETY: aligned and inside a frame valid by construction, which
        // no Rust reference covers; everyone else touching it (the guest,
        // other CPUs) uses atomic instructions or plain word stores.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// The u64 at byte `off` (8-byte aligned), as an atomic.
    #[allow(dead_code)]
    #[inline(always)]
    pub fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        let p = self.aligned(off, 8) as *mut u64;
        // SAFETY: as atomic_u32.
        unsafe { AtomicU64::from_ptr(p) }
    }
}

/// Contiguous frames from the frame allocator, held by one owner as a
/// plain byte buffer (for buffers far larger than the heap: a
/// decompressed kernel); given back when dropped.
pub struct FrameBuf {
    first: u64,
    pages: u64,
}

impl FrameBuf {
    /// `pages` contiguous frames, or None if the pool has no such run.
    pub fn new(pages: u64) -> Option<FrameBuf> {
        let f = paging::with_frames(|fa| fa.alloc_contiguous(pages, 1))?;
        Some(FrameBuf { first: f.0, pages })
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the frames [first, first + pages) were taken from the
        // allocator for this buffer alone and stay its own until `drop`;
        // the direct map maps them writable and contiguous; `&mut self`
        // makes the slice the only way in.
        unsafe {
            core::slice::from_raw_parts_mut(
                paging::phys_to_virt(self.first << 12) as *mut u8,
                (self.pages as usize) * FRAME_SIZE,
            )
        }
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        for f in self.first..self.first + self.pages {
            let _ = paging::with_frames(|fa| fa.free(Frame(f)));
        }
    }
}
