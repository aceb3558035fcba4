//! A small user-accessible window in the lower half of the hypervisor's
//! own page tables, for `bench`'s ring-3 stub (src/bench.rs): a code page
//! (a copy of `arch::x86_64::bench::stub`), an unmapped page (the `pf`
//! case's target, and a guard under the stack), a stack page, then
//! contiguous sample buffers. Nothing else uses the lower half before the
//! guests exist; the window is unmapped and its frames freed afterwards.

use alloc::vec::Vec;

use super::frame::Frame;
use super::paging::{self, phys_to_virt};
use crate::arch::x86_64::bench;

const PAGE: u64 = 4096;
const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
const EFER_NXE: u64 = 1 << 11;

const CODE_PAGE: u64 = 0;
const HOLE_PAGE: u64 = 1;
const STACK_PAGE: u64 = 2;
/// The first buffer page.
const BUF_PAGE: u64 = 4;

/// A page table through the direct map.
fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: `phys` is the hypervisor's root table (whose lower-half
    // slot this module alone uses, and only before guests exist) or a
    // frame allocated below for the window; single-threaded boot.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; 512]) }
}

fn idx(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 511) as usize
}

fn flush_tlb() {
    // SAFETY: reloading CR3 with its own value only flushes the TLB.
    unsafe { x86::controlregs::cr3_write(x86::controlregs::cr3()) };
}

/// The window's frames, mapped at `base` while it lives.
pub struct Window {
    base: u64,
    /// Page tables (L3, L2, L1), the code and stack frames.
    frames: Vec<Frame>,
    /// First of the contiguous sample buffers.
    bufs: Frame,
    nbufs: u64,
    l4_slot: usize,
}

impl Window {
    /// Map the window at `base` (2 MiB aligned, in the lower half) with
    /// `nbufs` buffer pages.
    pub fn map(base: u64, nbufs: u64) -> Result<Window, &'static str> {
        let stub = bench::stub();
        if stub.len() as u64 > PAGE {
            return Err("the ring-3 stub is larger than a page");
        }
        if BUF_PAGE + nbufs > 512 || !base.is_multiple_of(2 << 20) || base >> 47 != 0 {
            return Err("the window does not fit one page table in the lower half");
        }
        let root = paging::root();
        // SAFETY: reading CR3 has no side effects.
        if unsafe { x86::controlregs::cr3() } & ADDR != root {
            return Err("not on the hypervisor's own page tables");
        }
        let l4_slot = idx(base, 3);
        if table(root)[l4_slot] & P != 0 {
            return Err("the lower half of the hypervisor's page tables is in use");
        }
        let Some(bufs) = paging::with_frames(|fa| fa.alloc_contiguous(nbufs, 1)) else {
            return Err("no room for the sample buffers");
        };
        let mut w = Window {
            base,
            frames: Vec::new(),
            bufs,
            nbufs,
            l4_slot,
        };
        // Page tables L3, L2, L1, then the code and stack pages.
        let mut pages = [0u64; 5];
        for p in &mut pages {
            let Some(f) = paging::with_frames(|fa| fa.alloc()) else {
                w.free();
                return Err("out of memory");
            };
            w.frames.push(f);
            // SAFETY: a frame just taken from the pool, in the direct map.
            unsafe { core::ptr::write_bytes(phys_to_virt(f.addr()) as *mut u8, 0, PAGE as usize) };
            *p = f.addr();
        }
        let [l3, l2, l1, code, stack] = pages;
        // The stub's bytes, the rest of its page `int3` (which from
        // ring 3 here would be a loud hypervisor panic, never silent).
        // SAFETY: the code frame is ours and 4 KiB; the stub fits (above).
        unsafe {
            let dst = phys_to_virt(code) as *mut u8;
            core::ptr::write_bytes(dst, 0xcc, PAGE as usize);
            core::ptr::copy_nonoverlapping(stub.as_ptr(), dst, stub.len());
        }
        // SAFETY: reading EFER has no side effects.
        let nx = if unsafe { x86::msr::rdmsr(x86::msr::IA32_EFER) } & EFER_NXE != 0 {
            NX
        } else {
            0
        };
        table(l2)[idx(base, 1)] = l1 | P | RW | US;
        table(l3)[idx(base, 2)] = l2 | P | RW | US;
        let pt = table(l1);
        pt[CODE_PAGE as usize] = code | P | US;
        pt[STACK_PAGE as usize] = stack | P | RW | US | nx;
        for i in 0..nbufs {
            pt[(BUF_PAGE + i) as usize] = (bufs.addr() + i * PAGE) | P | RW | US | nx;
        }
        debug_assert_eq!(pt[HOLE_PAGE as usize], 0);
        table(root)[l4_slot] = l3 | P | RW | US;
        flush_tlb();
        Ok(w)
    }

    /// Unmap the window and give every frame back.
    pub fn free(self) {
        table(paging::root())[self.l4_slot] = 0;
        flush_tlb();
        paging::with_frames(|fa| {
            for f in self
                .frames
                .iter()
                .copied()
                .chain((0..self.nbufs).map(|i| Frame(self.bufs.0 + i)))
            {
                let _ = fa.free(f);
            }
        });
    }

    /// Run stub case `c` once: `count` u32 samples at byte `at` of the
    /// buffers, which must fit.
    pub fn run(&mut self, c: usize, at: u64, count: usize) {
        assert!(at + count as u64 * 4 <= self.nbufs * PAGE && c < bench::CASES.len());
        let _lent = bench::Lent::take();
        // SAFETY: the window maps the stub's copy (user, executable) at
        // CODE_PAGE, its stack (user, writable) and the buffers, `count`
        // samples at `at` inside them (checked above); the hole page is
        // unmapped; the gates are lent for the call.
        unsafe {
            bench::run(
                c,
                self.base + CODE_PAGE * PAGE,
                self.base + (STACK_PAGE + 1) * PAGE,
                self.base + BUF_PAGE * PAGE + at,
                count,
                self.base + HOLE_PAGE * PAGE,
            )
        };
    }

    /// `n` u32 samples at byte `at` of the buffers, through the direct map.
    pub fn samples(&mut self, at: u64, n: usize) -> &mut [u32] {
        assert!(at.is_multiple_of(4) && at + n as u64 * 4 <= self.nbufs * PAGE);
        // SAFETY: inside the contiguous buffer frames this window owns
        // (checked above); the stub is not running while the hypervisor
        // reads them, and `&mut self` keeps them to one borrower.
        unsafe {
            core::slice::from_raw_parts_mut(phys_to_virt(self.bufs.addr() + at) as *mut u32, n)
        }
    }
}
