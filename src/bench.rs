//! `bench` on the command line: the hardware's own limit, measured in the
//! same boot as the PV paths it is compared with (`cargo xtask bench`,
//! docs/benchmarks.md).
//!
//! Before any guest runs, the hypervisor drops to a tiny ring-3 stub of its
//! own and times the bare round trips every PV path is built on:
//!
//! | name      | ring 3 does                        | ring 0 does                                   |
//! |-----------|------------------------------------|-----------------------------------------------|
//! | `syscall` | `syscall`                          | `sysretq` (LSTAR points there for the run)    |
//! | `int`     | `int $0xf1` (a DPL-3 gate, lent)   | `iretq`                                       |
//! | `ud`      | `ud2` (#UD, a fault)               | step over the `ud2`, `iretq`                  |
//! | `pf`      | a load from an unmapped page (#PF) | drop the error code, step over the load, `iretq` |
//! | `loop`    | nothing                            | nothing: the cost of the timing itself        |
//!
//! Each iteration is timed on its own: `lfence; rdtsc; lfence`, the round
//! trip, `lfence; rdtsc`, and the difference stored. Every case runs
//! [`ROUNDS`] rounds of [`PER_ROUND`] iterations, the cases interleaved
//! round by round so that a noisy host spreads over all of them alike. The
//! `loop` case's median is subtracted from every figure of the others, and
//! each prints one line:
//!
//! ```text
//! (RV) bench: baseline syscall median 114 spread 108..131 n=100000
//! ```
//!
//! (`spread` is the 10th..90th percentile.) Under QEMU with
//! `-icount shift=0,sleep=off` the TSC advances one tick per instruction, so
//! these are instruction counts: 2 for `syscall`+`sysretq`.
//!
//! The stub and its stack live in pages mapped, user-accessible, in the
//! lower half of the hypervisor's own page tables at [`BASE`] (nothing else
//! uses the lower half: it is the guests'), and are unmapped and freed
//! afterwards; LSTAR, TSS.RSP0 and the lent IDT gates are put back. The
//! production entry paths (entry.S) are not touched. Ring 0 only ever
//! executes its own image (SMEP holds) and reads the samples through the
//! direct map (SMAP holds).
//!
//! The last thing [`before_guests`] prints is the moment guests are about
//! to start, in TSC ticks since the CPU came out of reset:
//!
//! ```text
//! (RV) bench: first guest instruction at tsc=123456789 ns=41152263 (baseline took tsc=9876 ns=3292)
//! ```

/// Rounds per case; cases are interleaved round by round.
pub const ROUNDS: usize = 10;
/// Iterations per case per round.
pub const PER_ROUND: usize = 10_000;
/// Samples per case.
pub const SAMPLES: usize = ROUNDS * PER_ROUND;

/// Where the ring-3 stub is mapped (lower half, PML4 slot 0).
pub const BASE: u64 = 0x4000_0000;

/// Median and spread of one case, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub median: u32,
    pub p10: u32,
    pub p90: u32,
    pub n: usize,
}

impl Summary {
    /// Sorts `samples` and takes the 10th, 50th and 90th percentiles
    /// (nearest rank, rounding down). `None` for no samples.
    pub fn of(samples: &mut [u32]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |p: usize| samples[(samples.len() - 1) * p / 100];
        Some(Summary {
            median: at(50),
            p10: at(10),
            p90: at(90),
            n: samples.len(),
        })
    }

    /// The same figures less `overhead` (the cost of timing nothing).
    pub fn minus(self, overhead: u32) -> Summary {
        Summary {
            median: self.median.saturating_sub(overhead),
            p10: self.p10.saturating_sub(overhead),
            p90: self.p90.saturating_sub(overhead),
            n: self.n,
        }
    }
}

impl core::fmt::Display for Summary {
    /// `median M spread P10..P90 n=N`, the shape `cargo xtask bench` reads.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "median {} spread {}..{} n={}",
            self.median, self.p10, self.p90, self.n
        )
    }
}

#[cfg(target_os = "none")]
pub use hw::before_guests;

#[cfg(target_os = "none")]
mod hw {
    use alloc::vec::Vec;
    use core::cell::UnsafeCell;
    use core::sync::atomic::AtomicU64;

    use x86::msr::{rdmsr, wrmsr, IA32_EFER, IA32_LSTAR};

    use super::{Summary, BASE, PER_ROUND, ROUNDS, SAMPLES};
    use crate::arch::x86_64::gdt::HYPERVISOR_DS;
    use crate::arch::x86_64::{gdt, idt, percpu, time};
    use crate::console::{print, TAG};
    use crate::mm::frame::Frame;
    use crate::mm::paging::{self, phys_to_virt};

    /// The DPL-3 gate `int` is timed through, and the one the stub leaves
    /// by; both lent for the run (0xf0 is the APIC timer, 0xff spurious).
    const INT_VECTOR: u8 = 0xf1;
    const EXIT_VECTOR: u8 = 0xf2;
    const UD_VECTOR: u8 = 6;
    const PF_VECTOR: u8 = 14;

    const PAGE: u64 = 4096;
    const P: u64 = 1 << 0;
    const RW: u64 = 1 << 1;
    const US: u64 = 1 << 2;
    const NX: u64 = 1 << 63;
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    const EFER_NXE: u64 = 1 << 11;

    /// The window at BASE, one page table's worth (2 MiB): the code, an
    /// unmapped page (the `pf` case's target, and a guard under the
    /// stack), the stack, then one sample buffer per case.
    const CODE_PAGE: u64 = 0;
    const HOLE_PAGE: u64 = 1;
    const STACK_PAGE: u64 = 2;
    const BUF_PAGE: u64 = 4;
    const BUF_PAGES: u64 = (SAMPLES as u64 * 4).div_ceil(PAGE);

    /// The cases, in the order each round runs them; `loop` first.
    const CASES: [&str; 5] = ["loop", "syscall", "int", "ud", "pf"];
    const _: () = assert!(BUF_PAGE + CASES.len() as u64 * BUF_PAGES <= 512);

    core::arch::global_asm!(
        r#"
/* ---- Ring 3: copied to the user code page, so position independent. ----
 *
 * Register contract of every bench_user_<case>:
 *   in:  rdi = sample buffer (u32 per iteration), esi = iterations (> 0),
 *        rbx = an unmapped address (the pf case loads from it), IF clear;
 *   does: per iteration, `lfence; rdtsc; lfence`, the case's round trip,
 *        `lfence; rdtsc`, and stores the low 32 bits of the difference;
 *   out: `int $EXIT_VECTOR`, which never returns here. Clobbers all.
 */
.macro BENCH_LOOP name:req, op:vararg
    .balign 16
    .global bench_user_\name
bench_user_\name:
    xor %r10d, %r10d
.Lbench_loop_\name:
    lfence
    rdtsc
    lfence
    mov %eax, %r8d
.Lbench_op_\name:
    \op
.Lbench_op_end_\name:
    lfence
    rdtsc
    sub %r8d, %eax
    mov %eax, (%rdi,%r10,4)
    inc %r10d
    cmp %esi, %r10d
    jb .Lbench_loop_\name
    int ${exit_vector}
.endm

    .section .text
    .balign 16
    .global bench_user_start
bench_user_start:
    BENCH_LOOP loop
    BENCH_LOOP syscall, syscall
    BENCH_LOOP int, int ${int_vector}
    BENCH_LOOP ud, ud2
    BENCH_LOOP pf, movl (%rbx), %eax
    .global bench_user_end
bench_user_end:

/* ---- Ring 0: the empty handlers (each the least the CPU needs). ---- */

/* syscall (LSTAR): rcx = the return rip, r11 = rflags; nothing else. */
    .balign 16
    .global bench_k_syscall
bench_k_syscall:
    sysretq

/* int $INT_VECTOR: frame RIP, CS, RFLAGS, RSP, SS on the lent RSP0 stack. */
    .balign 16
    .global bench_k_int
bench_k_int:
    iretq

/* #UD: a fault, so RIP is the ud2 itself: step over it. */
    .balign 16
    .global bench_k_ud
bench_k_ud:
    addq $(.Lbench_op_end_ud - .Lbench_op_ud), (%rsp)
    iretq

/* #PF: ERRCODE, RIP (the load), ...: drop the error code, step over. */
    .balign 16
    .global bench_k_pf
bench_k_pf:
    add $8, %rsp
    addq $(.Lbench_op_end_pf - .Lbench_op_pf), (%rsp)
    iretq

/* void bench_enter(u64 rip, u64 rsp, u64 buf, u64 count, u64 unmapped)
 * SysV call from Rust. Saves the callee-saved registers and RSP in
 * {saved_rsp}, then iretq to ring 3 at rip/rsp (cs/ss the flat ring-3
 * selectors, rflags IF clear) with the stub's registers set. "Returns"
 * when the stub's `int $EXIT_VECTOR` reaches bench_k_exit. */
    .balign 16
    .global bench_enter
bench_enter:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, {saved_rsp}(%rip)
    pushq ${user_ss}
    push %rsi
    pushq $2
    pushq ${user_cs}
    push %rdi
    mov %rdx, %rdi
    mov %ecx, %esi
    mov %r8, %rbx
    iretq

/* int $EXIT_VECTOR from the stub: drop its frame, reload the data
 * selectors the iretq to ring 3 nulled, return from bench_enter. */
    .balign 16
    .global bench_k_exit
bench_k_exit:
    mov {saved_rsp}(%rip), %rsp
    mov ${hv_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
"#,
        exit_vector = const EXIT_VECTOR,
        int_vector = const INT_VECTOR,
        saved_rsp = sym SAVED_RSP,
        user_cs = const ringvisor_abi::x86_64::FLAT_RING3_CS64 as u64,
        user_ss = const ringvisor_abi::x86_64::FLAT_RING3_SS64 as u64,
        hv_ds = const HYPERVISOR_DS as u64,
        options(att_syntax)
    );

    extern "C" {
        static bench_user_start: u8;
        static bench_user_end: u8;
        static bench_user_loop: u8;
        static bench_user_syscall: u8;
        static bench_user_int: u8;
        static bench_user_ud: u8;
        static bench_user_pf: u8;
        fn bench_k_syscall();
        fn bench_k_int();
        fn bench_k_ud();
        fn bench_k_pf();
        fn bench_k_exit();
        fn bench_enter(rip: u64, rsp: u64, buf: u64, count: u64, unmapped: u64);
    }

    /// Ring 0's RSP while the stub runs (written by bench_enter).
    static SAVED_RSP: AtomicU64 = AtomicU64::new(0);

    /// The stack ring 3 → ring 0 entries land on during the run (TSS.RSP0):
    /// the boot stack's top is still rust_start's frame, which the guests'
    /// RSP0 would overwrite.
    #[repr(C, align(16))]
    struct Ring0Stack(UnsafeCell<[u8; 4096]>);
    // SAFETY: only the CPU writes it, on entries from the stub.
    unsafe impl Sync for Ring0Stack {}
    static RING0_STACK: Ring0Stack = Ring0Stack(UnsafeCell::new([0; 4096]));

    fn sym(s: &u8) -> u64 {
        s as *const u8 as u64
    }

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

    /// The window's frames, mapped at BASE while it lives.
    struct Window {
        /// Page tables (L3, L2, L1), the code and stack frames.
        frames: Vec<Frame>,
        /// First of the contiguous sample buffers.
        bufs: Frame,
        nbufs: u64,
        l4_slot: usize,
    }

    impl Window {
        fn map() -> Result<Window, &'static str> {
            let root = paging::root();
            // SAFETY: reading CR3 has no side effects.
            if unsafe { x86::controlregs::cr3() } & ADDR != root {
                return Err("not on the hypervisor's own page tables");
            }
            let l4_slot = idx(BASE, 3);
            if table(root)[l4_slot] & P != 0 {
                return Err("the lower half of the hypervisor's page tables is in use");
            }
            let nbufs = CASES.len() as u64 * BUF_PAGES;
            let Some(bufs) = paging::with_frames(|fa| fa.alloc_contiguous(nbufs, 1)) else {
                return Err("no room for the sample buffers");
            };
            let mut w = Window {
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
                unsafe {
                    core::ptr::write_bytes(phys_to_virt(f.addr()) as *mut u8, 0, PAGE as usize)
                };
                *p = f.addr();
            }
            let [l3, l2, l1, code, stack] = pages;
            // The stub's bytes, the rest of its page `int3` (which from
            // ring 3 here would be a loud hypervisor panic, never silent).
            // SAFETY: the linker symbols delimit the stub in .text, which
            // is mapped readable; the code frame is ours and 4 KiB.
            unsafe {
                let (s, e) = (sym(&bench_user_start), sym(&bench_user_end));
                let dst = phys_to_virt(code) as *mut u8;
                core::ptr::write_bytes(dst, 0xcc, PAGE as usize);
                core::ptr::copy_nonoverlapping(s as *const u8, dst, (e - s) as usize);
            }
            // SAFETY: reading EFER has no side effects.
            let nx = if unsafe { rdmsr(IA32_EFER) } & EFER_NXE != 0 {
                NX
            } else {
                0
            };
            table(l2)[idx(BASE, 1)] = l1 | P | RW | US;
            table(l3)[idx(BASE, 2)] = l2 | P | RW | US;
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
        fn free(self) {
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

        /// Case `c`'s samples, through the direct map.
        fn samples(&mut self, c: usize) -> &mut [u32] {
            let pa = self.bufs.addr() + c as u64 * BUF_PAGES * PAGE;
            // SAFETY: inside the contiguous buffer frames this window owns;
            // the stub is not running while the hypervisor reads them.
            unsafe { core::slice::from_raw_parts_mut(phys_to_virt(pa) as *mut u32, SAMPLES) }
        }
    }

    /// What the run changes, put back on drop.
    struct Borrowed {
        lstar: u64,
        int_gate: [u64; 2],
        exit_gate: [u64; 2],
    }

    impl Borrowed {
        fn take() -> Borrowed {
            gdt::set_rsp0(RING0_STACK.0.get() as u64 + 4096);
            // SAFETY: only the stub runs `syscall` while LSTAR points at
            // bench_k_syscall (no guest exists yet); restored on drop.
            let lstar = unsafe { rdmsr(IA32_LSTAR) };
            // SAFETY: as above.
            unsafe { wrmsr(IA32_LSTAR, bench_k_syscall as *const () as u64) };
            Borrowed {
                lstar,
                int_gate: idt::borrow_gate(INT_VECTOR, bench_k_int as *const () as u64, 3),
                exit_gate: idt::borrow_gate(EXIT_VECTOR, bench_k_exit as *const () as u64, 3),
            }
        }
    }

    impl Drop for Borrowed {
        fn drop(&mut self) {
            idt::restore_gate(EXIT_VECTOR, self.exit_gate);
            idt::restore_gate(INT_VECTOR, self.int_gate);
            // SAFETY: the production syscall entry, as syscall::init set it.
            unsafe { wrmsr(IA32_LSTAR, self.lstar) };
            gdt::set_rsp0(percpu::stack_top());
        }
    }

    /// Run case `c` once: `count` iterations into `buf` (a user address).
    fn run_case(c: usize, buf: u64, count: usize) {
        // SAFETY: linker symbols of the stub; only their addresses are used.
        let entry = unsafe {
            [
                sym(&bench_user_loop),
                sym(&bench_user_syscall),
                sym(&bench_user_int),
                sym(&bench_user_ud),
                sym(&bench_user_pf),
            ][c] - sym(&bench_user_start)
        };
        // The fault cases lend their exception gates only for the call: in
        // that time ring 0 runs nothing but bench_enter's iretq and
        // bench_k_exit, which cannot fault.
        let lent = match c {
            3 => Some((
                UD_VECTOR,
                idt::borrow_gate(UD_VECTOR, bench_k_ud as *const () as u64, 0),
            )),
            4 => Some((
                PF_VECTOR,
                idt::borrow_gate(PF_VECTOR, bench_k_pf as *const () as u64, 0),
            )),
            _ => None,
        };
        // SAFETY: BASE maps the stub's code (user, executable), its stack
        // (user, writable) and the buffers; the hole page is unmapped. The
        // stub returns through the lent EXIT_VECTOR gate to bench_k_exit,
        // which restores this stack and the callee-saved registers.
        unsafe {
            bench_enter(
                BASE + CODE_PAGE * PAGE + entry,
                BASE + (STACK_PAGE + 1) * PAGE,
                buf,
                count as u64,
                BASE + HOLE_PAGE * PAGE,
            )
        };
        if let Some((v, old)) = lent {
            idt::restore_gate(v, old);
        }
    }

    fn baseline() -> Result<(), &'static str> {
        // SAFETY: linker symbols; only their addresses are used.
        let len = unsafe { sym(&bench_user_end) - sym(&bench_user_start) };
        if len > PAGE {
            return Err("the ring-3 stub is larger than a page");
        }
        let mut w = Window::map()?;
        {
            let _lent = Borrowed::take();
            for round in 0..ROUNDS {
                for c in 0..CASES.len() {
                    let buf = BASE
                        + (BUF_PAGE + c as u64 * BUF_PAGES) * PAGE
                        + (round * PER_ROUND * 4) as u64;
                    run_case(c, buf, PER_ROUND);
                }
            }
        }
        let overhead = Summary::of(w.samples(0)).map_or(0, |s| s.median);
        for (c, name) in CASES.iter().enumerate() {
            let Some(s) = Summary::of(w.samples(c)) else {
                continue;
            };
            if c == 0 {
                print(format_args!("{TAG}bench: baseline {name} {s} (timing overhead, subtracted from the others)\n"));
            } else {
                print(format_args!(
                    "{TAG}bench: baseline {name} {}\n",
                    s.minus(overhead)
                ));
            }
        }
        w.free();
        Ok(())
    }

    /// `bench`: measure the baseline, then say when the first guest
    /// instruction is about to run. Called once, right before the
    /// scheduler enters the first domain.
    pub fn before_guests() {
        let t0 = time::tsc();
        if let Err(why) = baseline() {
            crate::warn!("bench: no baseline: {why}");
        }
        let t1 = time::tsc();
        print(format_args!(
            "{TAG}bench: first guest instruction at tsc={t1} ns={} (baseline took tsc={} ns={})\n",
            time::tsc_to_ns(t1),
            t1 - t0,
            time::tsc_to_ns(t1 - t0)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=101).rev().collect();
        let s = Summary::of(&mut v).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 51,
                p10: 11,
                p90: 91,
                n: 101
            }
        );
        assert_eq!(
            s.minus(20),
            Summary {
                median: 31,
                p10: 0,
                p90: 71,
                n: 101
            }
        );
        assert_eq!(Summary::of(&mut []), None);
        let mut one = [7];
        assert_eq!(
            Summary::of(&mut one),
            Some(Summary {
                median: 7,
                p10: 7,
                p90: 7,
                n: 1
            })
        );
    }

    #[test]
    fn display_is_what_xtask_reads() {
        let s = Summary {
            median: 114,
            p10: 108,
            p90: 131,
            n: 100_000,
        };
        assert_eq!(s.to_string(), "median 114 spread 108..131 n=100000");
    }
}
