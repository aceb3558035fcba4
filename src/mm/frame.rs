//! The physical frame allocator: one bit per 4 KiB frame of RAM.
//!
//! A bitmap, not a free list, so that frames can be given back in any order
//! (domain teardown) and a double free is caught rather than corrupting the
//! pool. The bitmap itself lives in RAM that the boot code carves out
//! (`find_hole`) before the allocator exists.

use core::fmt;

pub const PAGE_SIZE: u64 = 4096;

/// A physical frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(pub u64);

impl Frame {
    pub fn addr(self) -> u64 {
        self.0 * PAGE_SIZE
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is beyond the RAM this allocator manages.
    OutOfRange(Frame),
    /// The frame is already free.
    DoubleFree(Frame),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::OutOfRange(fr) => write!(f, "frame {:#x} is not managed RAM", fr.0),
            FreeError::DoubleFree(fr) => write!(f, "frame {:#x} freed twice", fr.0),
        }
    }
}

pub struct FrameAllocator<'a> {
    /// Bit set = frame free.
    bits: &'a mut [u64],
    nframes: u64,
    free: u64,
    /// Word index where the last search succeeded: allocation stays O(1)
    /// amortised when memory is mostly free.
    hint: usize,
}

/// Bytes of bitmap needed to manage RAM up to `max_addr`.
pub fn bitmap_bytes(max_addr: u64) -> u64 {
    max_addr.div_ceil(PAGE_SIZE).div_ceil(64) * 8
}

/// The lowest page-aligned address where `size` bytes fit inside one of
/// `usable` ranges without touching any `reserved` range. Ranges are
/// half-open `[start, end)`.
pub fn find_hole(usable: &[(u64, u64)], reserved: &[(u64, u64)], size: u64) -> Option<u64> {
    for &(s, e) in usable {
        let mut at = s.next_multiple_of(PAGE_SIZE);
        'retry: loop {
            let end = at.checked_add(size)?;
            if end > e {
                break;
            }
            for &(rs, re) in reserved {
                if rs < end && at < re {
                    at = re.next_multiple_of(PAGE_SIZE);
                    continue 'retry;
                }
            }
            return Some(at);
        }
    }
    None
}

/// The highest page-aligned `size` bytes below `below` inside one of the
/// `usable` ranges, not in the first page (the real-mode interrupt
/// table): where the application processors' real-mode trampoline goes
/// (a start-up IPI can only start a CPU below 1 MiB).
pub fn find_low_window(usable: &[(u64, u64)], size: u64, below: u64) -> Option<u64> {
    usable
        .iter()
        .filter_map(|&(s, e)| {
            let top = e.min(below) / PAGE_SIZE * PAGE_SIZE;
            let start = top.checked_sub(size)?;
            (start >= s.max(PAGE_SIZE)).then_some(start)
        })
        .max()
}

impl<'a> FrameAllocator<'a> {
    /// An allocator over `bits` (see `bitmap_bytes`) with every frame in
    /// use; `add_free` then hands it the usable RAM.
    pub fn new(bits: &'a mut [u64], max_addr: u64) -> Self {
        bits.fill(0);
        let nframes = (max_addr / PAGE_SIZE).min(bits.len() as u64 * 64);
        FrameAllocator {
            bits,
            nframes,
            free: 0,
            hint: 0,
        }
    }

    fn is_free(&self, f: u64) -> bool {
        self.bits[(f / 64) as usize] & (1 << (f % 64)) != 0
    }

    fn set(&mut self, f: u64, free: bool) {
        let w = &mut self.bits[(f / 64) as usize];
        let m = 1u64 << (f % 64);
        match (free, *w & m != 0) {
            (true, false) => {
                *w |= m;
                self.free += 1;
            }
            (false, true) => {
                *w &= !m;
                self.free -= 1;
            }
            _ => {}
        }
    }

    /// Mark the whole frames inside `[start, end)` free.
    pub fn add_free(&mut self, start: u64, end: u64) {
        let first = start.div_ceil(PAGE_SIZE);
        let last = (end / PAGE_SIZE).min(self.nframes);
        for f in first..last {
            self.set(f, true);
        }
    }

    /// Mark every frame touching `[start, end)` in use.
    pub fn reserve(&mut self, start: u64, end: u64) {
        let first = start / PAGE_SIZE;
        let last = end.div_ceil(PAGE_SIZE).min(self.nframes);
        for f in first..last {
            self.set(f, false);
        }
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }

    pub fn alloc(&mut self) -> Option<Frame> {
        let n = self.bits.len();
        for i in 0..n {
            let w = (self.hint + i) % n;
            if self.bits[w] != 0 {
                let f = w as u64 * 64 + self.bits[w].trailing_zeros() as u64;
                if f >= self.nframes {
                    continue;
                }
                self.set(f, false);
                self.hint = w;
                return Some(Frame(f));
            }
        }
        None
    }

    /// `count` physically contiguous frames, the first aligned to `align`
    /// frames (a power of two).
    pub fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<Frame> {
        if count == 0 || !align.is_power_of_two() {
            return None;
        }
        let mut start = 0;
        while start + count <= self.nframes {
            match (start..start + count).find(|&f| !self.is_free(f)) {
                None => {
                    for f in start..start + count {
                        self.set(f, false);
                    }
                    return Some(Frame(start));
                }
                Some(used) => start = (used + 1).next_multiple_of(align),
            }
        }
        None
    }

    pub fn free(&mut self, frame: Frame) -> Result<(), FreeError> {
        if frame.0 >= self.nframes {
            return Err(FreeError::OutOfRange(frame));
        }
        if self.is_free(frame.0) {
            return Err(FreeError::DoubleFree(frame));
        }
        self.set(frame.0, true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn low_window_for_the_trampoline() {
        // QEMU's map: RAM to 0x9fc00 (the EBDA above), then from 1 MiB.
        let qemu = [(0, 0x9fc00), (MB, 256 * MB)];
        assert_eq!(find_low_window(&qemu, 0x4000, 0xa0000), Some(0x9b000));
        // Only RAM counts; the first page never.
        assert_eq!(find_low_window(&[(0, 0x4000)], 0x4000, 0xa0000), None);
        assert_eq!(
            find_low_window(&[(0, 0x5000)], 0x4000, 0xa0000),
            Some(0x1000)
        );
        assert_eq!(
            find_low_window(&[(0x500, 0x6000)], 0x4000, 0xa0000),
            Some(0x2000)
        );
        assert_eq!(find_low_window(&[(MB, 2 * MB)], 0x4000, 0xa0000), None);
        assert_eq!(find_low_window(&[], 0x4000, 0xa0000), None);
    }

    fn alloc_over(max: u64) -> Vec<u64> {
        vec![0; (bitmap_bytes(max) / 8) as usize]
    }

    #[test]
    fn reserve_and_alloc() {
        let mut bits = alloc_over(16 * MB);
        let mut fa = FrameAllocator::new(&mut bits, 16 * MB);
        assert_eq!(fa.alloc(), None);
        fa.add_free(MB, 16 * MB);
        assert_eq!(fa.free_frames(), 15 * 256);
        fa.reserve(MB, 2 * MB + 1); // image: rounds outward
        assert_eq!(fa.free_frames(), 14 * 256 - 1);
        let f = fa.alloc().unwrap();
        assert!(f.addr() >= 2 * MB + PAGE_SIZE);
        assert_eq!(fa.free(f), Ok(()));
        assert_eq!(fa.free(f), Err(FreeError::DoubleFree(f)));
        assert_eq!(
            fa.free(Frame(1 << 40)),
            Err(FreeError::OutOfRange(Frame(1 << 40)))
        );
    }

    #[test]
    fn partial_pages_are_not_free() {
        let mut bits = alloc_over(MB);
        let mut fa = FrameAllocator::new(&mut bits, MB);
        fa.add_free(0x800, 0x3800); // only frames 1 and 2 are whole
        assert_eq!(fa.free_frames(), 2);
        assert_eq!(fa.alloc(), Some(Frame(1)));
        assert_eq!(fa.alloc(), Some(Frame(2)));
        assert_eq!(fa.alloc(), None);
    }

    #[test]
    fn exhaust_and_refill() {
        let mut bits = alloc_over(4 * MB);
        let mut fa = FrameAllocator::new(&mut bits, 4 * MB);
        fa.add_free(0, 4 * MB);
        let mut got = Vec::new();
        while let Some(f) = fa.alloc() {
            got.push(f);
        }
        assert_eq!(got.len(), 1024);
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 1024, "no frame handed out twice");
        for f in got {
            fa.free(f).unwrap();
        }
        assert_eq!(fa.free_frames(), 1024);
    }

    #[test]
    fn contiguous() {
        let mut bits = alloc_over(4 * MB);
        let mut fa = FrameAllocator::new(&mut bits, 4 * MB);
        fa.add_free(0, 4 * MB);
        fa.reserve(2 * PAGE_SIZE, 3 * PAGE_SIZE);
        let f = fa.alloc_contiguous(8, 1).unwrap();
        assert_eq!(f, Frame(3));
        let g = fa.alloc_contiguous(4, 16).unwrap();
        assert_eq!(g, Frame(16));
        assert_eq!(fa.alloc_contiguous(2000, 1), None);
        assert_eq!(fa.alloc_contiguous(1, 3), None);
    }

    #[test]
    fn holes() {
        let usable = [(0x1000, 0x9f000), (MB, 64 * MB)];
        let reserved = [(MB, 3 * MB), (3 * MB + 10, 4 * MB)];
        assert_eq!(find_hole(&usable, &reserved, 0x1000), Some(0x1000));
        assert_eq!(find_hole(&usable, &reserved, 0x100000), Some(4 * MB));
        assert_eq!(find_hole(&usable, &reserved, 64 * MB), None);
        assert_eq!(find_hole(&usable, &[], u64::MAX), None);
    }
}
