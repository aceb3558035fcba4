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

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::arch::x86_64::percpu::PerCpu;

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

    /// A frame a domain shares with the hypervisor, as the domain's own
    /// records name it: its `shared_info` frame or console ring (allocated
    /// for it by the builder, released only when the domain is torn
    /// down), or the frame
    /// of a `vcpu_info` it registered (held by the frame table's counts
    /// from `VCPUOP_register_vcpu_info` to the domain's end). The callers
    /// (`pv::event`, `pv::traps`, `pv::platform`) use it only for a live
    /// domain, under its lock or on the CPU running it; debug builds check
    /// that the frame table records the frame as someone's.
    #[inline(always)]
    pub fn domain_shared(mfn: u64) -> FrameView {
        debug_assert!(super::frametable::frames()
            .get(mfn)
            .is_some_and(|f| f.owner != OWNER_NONE));
        // SAFETY: per the above: pool RAM in the direct map given to a
        // domain, which no Rust reference covers; guest and other CPUs
        // touch it only through atomics or plain stores (the accessors).
        unsafe { FrameView::new(mfn) }
    }

    /// A frame a guest's validated page tables reach: one of the tables
    /// themselves (from a vCPU's validated top-level table down, or the
    /// compat L4 a pool frame the hypervisor keeps for a 32-bit vCPU), or
    /// a leaf the walk found to be RAM the
    /// guest may touch (`pv::mm` lets a domain map only its own frames,
    /// and the initial domain low-memory frames the hypervisor does not
    /// use). `pv::guest_mem` and `pv::mm` use it while the domain's lock
    /// (or its own vCPU on this CPU) keeps the tables as they were walked.
    #[inline(always)]
    pub fn guest_mapped(mfn: u64) -> FrameView {
        // SAFETY: per the above: RAM inside the direct map that no Rust
        // reference covers (pool frames, or low memory the hypervisor
        // leaves alone); the accessors cope with the guest writing it.
        unsafe { FrameView::new(mfn) }
    }

    /// The byte `off` rounded down to a multiple of `size` (a power of
    /// two) and wrapped within the frame (debug builds stop on an
    /// unaligned or too large offset): a mask, not a branch to a panic,
    /// as `word_ptr`, so the event paths stay as short as raw pointers.
    #[inline(always)]
    fn aligned(self, off: usize, size: usize) -> u64 {
        debug_assert!(off.is_multiple_of(size) && off < FRAME_SIZE);
        self.va + (off & (FRAME_SIZE - 1) & !(size - 1)) as u64
    }

    /// The byte at `off`, as an atomic (the upcall pending and mask
    /// bytes of a `vcpu_info`).
    #[inline(always)]
    pub fn atomic_u8(self, off: usize) -> &'static AtomicU8 {
        let p = self.aligned(off, 1) as *mut u8;
        // SAFETY: inside a frame valid by construction, which no Rust
        // reference covers; everyone else touching it (the guest, other
        // CPUs) uses atomic instructions or plain stores.
        unsafe { AtomicU8::from_ptr(p) }
    }

    /// The u32 at byte `off` (4-byte aligned), as an atomic.
    #[inline(always)]
    pub fn atomic_u32(self, off: usize) -> &'static AtomicU32 {
        let p = self.aligned(off, 4) as *mut u32;
        // SAFETY: as atomic_u8; aligned.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// The u64 at byte `off` (8-byte aligned), as an atomic.
    #[inline(always)]
    pub fn atomic_u64(self, off: usize) -> &'static AtomicU64 {
        let p = self.aligned(off, 8) as *mut u64;
        // SAFETY: as atomic_u8; aligned.
        unsafe { AtomicU64::from_ptr(p) }
    }
}

/// `LEN` bytes inside one frame a [`FrameView`] is valid for: a guest's
/// `vcpu_info` (in its `shared_info`, or where it registered it). Atomic
/// accessors only, as for a frame's words; an offset checked against
/// `LEN` (a constant offset, as every `vcpu_info` field's, costs nothing).
///
/// The atomic accessors (here and `FrameView`'s) give `'static`
/// references: the direct map is always mapped; what limits their use is
/// the frame's staying the domain's, the view's own condition, which the
/// borrow checker cannot see either way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Area<const LEN: usize> {
    va: u64,
}

impl<const LEN: usize> Area<LEN> {
    /// The `LEN` bytes at machine address `ma` that a domain's records
    /// name as shared with the hypervisor (a `vcpu_info`: its slot in the
    /// domain's `shared_info`, or the 8-aligned place inside one of its
    /// frames it registered, checked to fit when registered), within one
    /// frame. As [`FrameView::domain_shared`], of the frame holding them.
    #[inline(always)]
    pub fn domain_shared(ma: u64) -> Area<LEN> {
        const { assert!(LEN <= FRAME_SIZE && LEN.is_multiple_of(8)) };
        debug_assert!(ma.is_multiple_of(8) && (ma & 0xfff) as usize <= FRAME_SIZE - LEN);
        let _ = FrameView::domain_shared(ma >> 12);
        Area {
            va: paging::phys_to_virt(ma),
        }
    }

    /// Its direct-map address (for the per-CPU block's copy, entry.S's).
    #[inline(always)]
    pub fn va(&self) -> u64 {
        self.va
    }

    #[inline(always)]
    fn at(self, off: usize, size: usize) -> u64 {
        assert!(off + size <= LEN && off.is_multiple_of(size));
        self.va + off as u64
    }

    /// The byte at `off`, as an atomic.
    #[inline(always)]
    pub fn atomic_u8(self, off: usize) -> &'static AtomicU8 {
        let p = self.at(off, 1) as *mut u8;
        // SAFETY: inside the frame the area was cut from (`FrameView::area`
        // keeps it inside), valid by construction, which no Rust reference
        // covers; the guest and other CPUs use atomics or plain stores.
        unsafe { AtomicU8::from_ptr(p) }
    }

    /// The u16 at `off` (aligned), as an atomic.
    #[inline(always)]
    pub fn atomic_u16(self, off: usize) -> &'static AtomicU16 {
        let p = self.at(off, 2) as *mut u16;
        // SAFETY: as atomic_u8; aligned (the area's start is 8-aligned
        // where the ABI puts a vcpu_info; `at` checks the offset).
        unsafe { AtomicU16::from_ptr(p) }
    }

    /// The u32 at `off` (aligned), as an atomic.
    #[inline(always)]
    pub fn atomic_u32(self, off: usize) -> &'static AtomicU32 {
        let p = self.at(off, 4) as *mut u32;
        // SAFETY: as atomic_u16.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// The u64 at `off` (aligned), as an atomic.
    #[inline(always)]
    pub fn atomic_u64(self, off: usize) -> &'static AtomicU64 {
        let p = self.at(off, 8) as *mut u64;
        // SAFETY: as atomic_u16.
        unsafe { AtomicU64::from_ptr(p) }
    }

    /// Copy the area's bytes to `to` (a vCPU's `vcpu_info` moving to the
    /// page it registered).
    pub fn copy_to(&self, to: &Area<LEN>) {
        if self == to {
            return;
        }
        for off in 0..LEN {
            to.atomic_u8(off).store(
                self.atomic_u8(off).load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
    }
}

/// A byte of the BIOS data area (physical 0x400..0x500: what the firmware
/// left there, e.g. the keyboard shift flags at 0x417).
pub fn bios_data_byte(pa: u64) -> u8 {
    assert!((0x400..0x500).contains(&pa));
    // SAFETY: the first MiB is RAM the direct map covers, and the BIOS
    // data area is not memory the hypervisor's Rust code refers to; a byte
    // read has no side effect.
    unsafe { (paging::phys_to_virt(pa) as *const u8).read_volatile() }
}

/// A `vcpu_info`: 64 bytes.
pub type VcpuInfoArea = Area<64>;

/// Tell this CPU's block where the running vCPU's `vcpu_info` is (for the
/// lock-free paths and entry.S): only ever an [`Area`], so that what
/// [`published_vcpu_info`] reads back is one.
#[inline(always)]
pub fn publish_vcpu_info(pc: &PerCpu, a: VcpuInfoArea) {
    pc.vcpu_info.store(a.va, Ordering::Relaxed);
}

/// The running vCPU's `vcpu_info`, as [`publish_vcpu_info`] last stored
/// it. Only while this CPU runs a guest vCPU (`pc.vcpu` non-zero): one
/// was published before it first ran.
#[inline(always)]
pub fn published_vcpu_info(pc: &PerCpu) -> VcpuInfoArea {
    let va = pc.vcpu_info.load(Ordering::Relaxed);
    debug_assert!(va != 0);
    // Nothing else stores `pc.vcpu_info` (its users: here, entry.S's
    // loads): it is an Area's address, of a frame still the domain's.
    Area { va }
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
