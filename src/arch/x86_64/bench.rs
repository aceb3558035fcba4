//! The ring-0 half of `bench`'s baseline (src/bench.rs says what it
//! measures): a tiny ring-3 stub, the empty ring-0 handlers it is timed
//! against, and what the run lends (LSTAR, two IDT gates, TSS.RSP0). The
//! stub's pages are mapped by `mm::userwin`; this module only enters it.

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU64;

use x86::msr::{rdmsr, wrmsr, IA32_LSTAR};

use super::gdt::{self, HYPERVISOR_DS};
use super::{idt, percpu};

/// The DPL-3 gate `int` is timed through, and the one the stub leaves
/// by; both lent for the run (0xf0 is the APIC timer, 0xff spurious).
const INT_VECTOR: u8 = 0xf1;
const EXIT_VECTOR: u8 = 0xf2;
const UD_VECTOR: u8 = 6;
const PF_VECTOR: u8 = 14;

/// The cases, in the order each round runs them; `loop` first.
pub const CASES: [&str; 5] = ["loop", "syscall", "int", "ud", "pf"];

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

/// The stub's code (position independent: copied to the window's code
/// page).
pub fn stub() -> &'static [u8] {
    // SAFETY: the linker symbols delimit the stub in .text, which is
    // mapped readable and never written.
    unsafe {
        let (s, e) = (sym(&bench_user_start), sym(&bench_user_end));
        core::slice::from_raw_parts(s as *const u8, (e - s) as usize)
    }
}

/// Where case `c` ([`CASES`]) starts in [`stub`].
pub fn entry_of(c: usize) -> u64 {
    // SAFETY: linker symbols of the stub; only their addresses are used.
    unsafe {
        [
            sym(&bench_user_loop),
            sym(&bench_user_syscall),
            sym(&bench_user_int),
            sym(&bench_user_ud),
            sym(&bench_user_pf),
        ][c] - sym(&bench_user_start)
    }
}

/// What the run changes, put back on drop.
pub struct Lent {
    lstar: u64,
    int_gate: [u64; 2],
    exit_gate: [u64; 2],
}

impl Lent {
    /// Lend LSTAR, the `int` and exit gates and TSS.RSP0 to the stub.
    /// Only before any guest exists (nothing else runs `syscall` then).
    pub fn take() -> Lent {
        gdt::set_rsp0(RING0_STACK.0.get() as u64 + 4096);
        // SAFETY: only the stub runs `syscall` while LSTAR points at
        // bench_k_syscall (no guest exists yet); restored on drop.
        let lstar = unsafe { rdmsr(IA32_LSTAR) };
        // SAFETY: as above.
        unsafe { wrmsr(IA32_LSTAR, bench_k_syscall as *const () as u64) };
        Lent {
            lstar,
            int_gate: idt::borrow_gate(INT_VECTOR, bench_k_int as *const () as u64, 3),
            exit_gate: idt::borrow_gate(EXIT_VECTOR, bench_k_exit as *const () as u64, 3),
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        idt::restore_gate(EXIT_VECTOR, self.exit_gate);
        idt::restore_gate(INT_VECTOR, self.int_gate);
        // SAFETY: the production syscall entry, as syscall::init set it.
        unsafe { wrmsr(IA32_LSTAR, self.lstar) };
        gdt::set_rsp0(percpu::stack_top());
    }
}

/// Run case `c` once in ring 3: the stub at `code` (its copy, user
/// executable), on the stack below `stack_top`, `count` iterations into
/// `buf` (a user address), `unmapped` the `pf` case's target.
///
/// # Safety
/// While [`Lent`] is held: `code` maps [`stub`] user-executable,
/// `stack_top`'s page and `count` u32s at `buf` user-writable, and
/// `unmapped` is not mapped. The stub returns through the lent exit gate
/// to bench_k_exit, which restores this stack and the callee-saved
/// registers.
pub unsafe fn run(c: usize, code: u64, stack_top: u64, buf: u64, count: usize, unmapped: u64) {
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
    // SAFETY: the caller's contract above.
    unsafe { bench_enter(code + entry_of(c), stack_top, buf, count as u64, unmapped) };
    if let Some((v, old)) = lent {
        idt::restore_gate(v, old);
    }
}
