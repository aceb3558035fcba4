//! Trap bounces: entry points, the recorded [`Trap`], expected faults and
//! user mode.
//!
//! The entry points (`entry.S`) turn every bounce into one [`TrapFrame`]
//! and call [`pvguest_trap`], which records a [`Trap`] (the frame as the
//! hypervisor wrote it, plus `cr2` and the upcall mask seen on entry) and
//! then does one of three things ([`Action`]):
//!
//! - **Resume**: `HYPERVISOR_iret` back to the frame (traps such as `int3`
//!   and `int $0x80`, events, syscalls).
//! - **Unwind**: abandon the interrupted code and resume after the
//!   innermost [`catch`] (faults inside `catch`, and the end of a
//!   [`run_user`]). This is how a test asserts "this instruction must #PF
//!   with ec=...": [`expect_fault`].
//! - **Fatal**: an unexpected trap: print it, count a failure, and end the
//!   test.
//!
//! A guest may replace the choice for any vector with [`set_handler`].
//!
//! Vectors here are `u32`: 0-255 are trap-table vectors, and the callbacks
//! get pseudo vectors [`VEC_EVENT`], [`VEC_FAILSAFE`], [`VEC_SYSCALL`].

use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{compiler_fence, Ordering};

use crate::abi::{self, TrapInfo};
use crate::cell::{GuestCell, Stack};
use crate::start_info;

/// `int $0x80`: a DPL-3 software interrupt.
pub const VEC_INT80: u32 = 0x80;
/// A software-interrupt vector with an entry point, for DPL tests. 0x41
/// because under QEMU's TCG the #GP error code of a refused `int $N` is
/// `(N << 4) | 2`, which Xen decodes as vector `2N & 0xff` = 0x82: an entry
/// nobody installs, so the refusal still reaches the guest as #GP.
pub const VEC_SOFTINT: u32 = 0x41;
/// Pseudo vector: the event callback.
pub const VEC_EVENT: u32 = 0x100;
/// Pseudo vector: the failsafe callback.
pub const VEC_FAILSAFE: u32 = 0x101;
/// Pseudo vector: the 64-bit syscall callback.
pub const VEC_SYSCALL: u32 = 0x102;

const NR_VECTORS: usize = 0x103;

/// Vectors whose hardware exceptions push an error code (and so whose
/// bounce frame has one): #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
pub const fn has_error_code(vector: u32) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// The `cs` a guest kernel frame carries: `FLAT_KERNEL_CS` with RPL 0. The
/// guest kernel really runs in ring 3, but an iret frame whose `cs` has
/// RPL 3 means "return to user mode" (Xen `do_iret`).
pub const KERNEL_CS_RPL0: u64 = (abi::FLAT_KERNEL_CS & !3) as u64;

/// What the entry points build on the stack, lowest address first, and
/// hand to [`pvguest_trap`]; everything in it is restored on the way out.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// `iret_context.flags` for the way out: 0, or `VGCF_in_syscall` to
    /// return with `sysret` semantics.
    pub iret_flags: u64,
    pub vector: u64,
    /// The bounce frame's error code, or 0 for vectors without one.
    pub error_code: u64,
    // The hypervisor's iret frame.
    pub rip: u64,
    /// Selector in bits 0-15, saved upcall mask in bits 32-39.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// entry.S pushes 15 registers, then iret_flags, onto vector/error_code.
const _: () = assert!(offset_of!(TrapFrame, rdi) == 14 * 8);
const _: () = assert!(offset_of!(TrapFrame, iret_flags) == 15 * 8);
const _: () = assert!(offset_of!(TrapFrame, vector) == 16 * 8);
const _: () = assert!(offset_of!(TrapFrame, rip) == 18 * 8);
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 23 * 8);

/// One bounce, as the handler saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    pub vector: u32,
    pub error_code: u64,
    pub rip: u64,
    /// The whole cs slot: selector | saved upcall mask << 32.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
    /// The frame's rcx and r11 slots (the interrupted values; for a
    /// syscall: the user return rip and rflags).
    pub rcx: u64,
    pub r11: u64,
    pub rax: u64,
    /// `vcpu_info.arch.cr2` on entry (#PF only, else 0).
    pub cr2: u64,
    /// `vcpu_info.evtchn_upcall_mask` on entry to the handler.
    pub mask_on_entry: u8,
    /// One past the frame's `ss` slot: the top of the stack the hypervisor
    /// wrote the frame on.
    pub frame_top: u64,
    /// Failsafe only: the ds, es, fs, gs slots.
    pub segs: [u64; 4],
}

impl Trap {
    /// The selector part of the cs slot.
    pub fn cs_sel(&self) -> u16 {
        self.cs as u16
    }
    /// Bits 32-39 of the cs slot: the upcall mask before the bounce.
    pub fn saved_mask(&self) -> u8 {
        (self.cs >> 32) as u8
    }
    /// Whether the frame interrupted guest user mode (cs RPL 3).
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vec {:#x} ec {:#x} rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} ss {:#x} \
             cr2 {:#x} mask {}",
            self.vector,
            self.error_code,
            self.rip,
            self.cs,
            self.rflags,
            self.rsp,
            self.ss,
            self.cr2,
            self.mask_on_entry
        )
    }
}

/// What [`pvguest_trap`] does after recording a bounce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `HYPERVISOR_iret` to the (possibly edited) frame.
    Resume,
    /// Resume after the active [`catch`], which returns `Err(trap)`.
    Unwind,
    /// Resume after the active [`catch`], which returns `Ok(())` (the
    /// end of a [`run_user`]).
    Return,
    /// Unexpected: report and end the test.
    Fatal,
}

/// A guest's own handler for one vector. It may edit the frame.
pub type Handler = fn(&mut TrapFrame, &Trap) -> Action;

static HANDLERS: [GuestCell<Option<Handler>>; NR_VECTORS] =
    [const { GuestCell::new(None) }; NR_VECTORS];
static LAST: GuestCell<Trap> = GuestCell::new(Trap {
    vector: 0,
    error_code: 0,
    rip: 0,
    cs: 0,
    rflags: 0,
    rsp: 0,
    ss: 0,
    rcx: 0,
    r11: 0,
    rax: 0,
    cr2: 0,
    mask_on_entry: 0,
    frame_top: 0,
    segs: [0; 4],
});
static COUNT: GuestCell<u64> = GuestCell::new(0);

/// Written by the failsafe entry point: its frame's ds, es, fs, gs.
static FAILSAFE_SEGS: GuestCell<[u64; 4]> = GuestCell::new([0; 4]);

static CATCH_ACTIVE: GuestCell<bool> = GuestCell::new(false);
/// `pvguest_catch`'s stack pointer, to unwind to.
static CATCH_RSP: GuestCell<u64> = GuestCell::new(0);
/// The upcall mask when the catch began, restored when unwinding.
static CATCH_MASK: GuestCell<u8> = GuestCell::new(1);

/// `pvguest_catch` returns this when its function returned normally.
const CATCH_RETURNED: u64 = 0;
/// ... when a trap unwound it with [`Action::Return`].
const CATCH_RETURN: u64 = 1;
/// ... when a trap unwound it with [`Action::Unwind`].
const CATCH_FAULT: u64 = 2;

#[cfg(target_os = "none")]
core::arch::global_asm!(
    include_str!("entry.S"),
    vec_int80 = const VEC_INT80,
    vec_softint = const VEC_SOFTINT,
    vec_event = const VEC_EVENT,
    vec_syscall = const VEC_SYSCALL,
    vec_failsafe = const VEC_FAILSAFE,
    failsafe_segs = sym FAILSAFE_SEGS,
    trap = sym pvguest_trap,
    ec_minus_flags = const offset_of!(TrapFrame, error_code) - offset_of!(TrapFrame, iret_flags),
    iret_offset = const abi::HYPERVISOR_IRET as usize * abi::HYPERCALL_STUB_SIZE,
    catch_rsp = sym CATCH_RSP,
    options(att_syntax)
);

/// Order of `pvguest_entry_table` in entry.S.
const ENTRY_VECTORS: [u32; 37] = {
    let mut v = [0u32; 37];
    let mut i = 0;
    while i < 32 {
        v[i] = i as u32;
        i += 1;
    }
    v[32] = VEC_INT80;
    v[33] = VEC_SOFTINT;
    v[34] = VEC_EVENT;
    v[35] = VEC_SYSCALL;
    v[36] = VEC_FAILSAFE;
    v
};

extern "C" {
    static pvguest_entry_table: [u64; ENTRY_VECTORS.len()];
    fn pvguest_catch(f: extern "C" fn(*mut u8), ctx: *mut u8) -> u64;
    fn pvguest_catch_resume();
    fn pvguest_user_trampoline();
    fn pvguest_user_ret2kern();
}

/// The entry point for `vector` (0-31, [`VEC_INT80`], [`VEC_SOFTINT`] or a
/// callback pseudo vector).
pub fn entry_address(vector: u32) -> Option<u64> {
    let i = ENTRY_VECTORS.iter().position(|&v| v == vector)?;
    // SAFETY: a table of addresses in .rodata; i is in bounds.
    Some(unsafe { pvguest_entry_table[i] })
}

/// A `trap_info` entry for `vector` with the given DPL, masking events on
/// entry if `mask_events` (`TI_IF`), code selector `FLAT_KERNEL_CS`.
pub fn trap_info(vector: u8, dpl: u8, mask_events: bool) -> TrapInfo {
    TrapInfo {
        vector,
        flags: (dpl & abi::TI_DPL_MASK) | if mask_events { abi::TI_IF } else { 0 },
        cs: abi::FLAT_KERNEL_CS64,
        _pad0: 0,
        address: entry_address(vector.into()).expect("no entry point for this vector"),
    }
}

/// The end of a trap table (an entry whose address is 0).
pub const TRAP_TABLE_END: TrapInfo = TrapInfo {
    vector: 0,
    flags: 0,
    cs: 0,
    _pad0: 0,
    address: 0,
};

/// Entries in [`default_trap_table`].
pub const DEFAULT_TRAP_TABLE_LEN: usize = 35;

/// The runtime's trap table, XTF's choices: every vector 0-31 at DPL 0
/// except #BP and #OF (DPL 3: `int3`/`into` work from user mode),
/// `int $0x80` at DPL 3, [`VEC_SOFTINT`] at DPL 0; all mask events on
/// entry. Ends with [`TRAP_TABLE_END`].
pub fn default_trap_table() -> [TrapInfo; DEFAULT_TRAP_TABLE_LEN] {
    let mut t = [TRAP_TABLE_END; DEFAULT_TRAP_TABLE_LEN];
    for v in 0..32u8 {
        let dpl = if v == 3 || v == 4 { 3 } else { 0 };
        t[v as usize] = trap_info(v, dpl, true);
    }
    t[32] = trap_info(VEC_INT80 as u8, 3, true);
    t[33] = trap_info(VEC_SOFTINT as u8, 0, true);
    t
}

/// `set_trap_table(table)`; `table` must end with [`TRAP_TABLE_END`].
pub fn set_trap_table(table: &[TrapInfo]) -> i64 {
    assert!(
        table.last().is_some_and(|t| t.address == 0),
        "trap table without end"
    );
    // SAFETY: every non-final entry points at one of our entry points.
    unsafe { crate::hypercall::set_trap_table(table.as_ptr() as u64) }
}

/// Installs [`default_trap_table`]; `RESULT: ERROR` if refused.
pub fn install_default_trap_table() {
    let rc = set_trap_table(&default_trap_table());
    if rc != 0 {
        crate::report::error(format_args!("set_trap_table = {}", crate::report::Rc(rc)));
    }
}

/// Registers callback `type_` (`CALLBACKTYPE_*`) at the runtime's entry
/// point for it (the event, failsafe and syscall entries; other types,
/// e.g. NMI or the 32-bit syscall/sysenter ones, get the syscall entry).
pub fn register_callback(type_: u16, flags: u16) -> i64 {
    let v = match type_ {
        abi::CALLBACKTYPE_EVENT => VEC_EVENT,
        abi::CALLBACKTYPE_FAILSAFE => VEC_FAILSAFE,
        abi::CALLBACKTYPE_NMI => 2,
        _ => VEC_SYSCALL,
    };
    let addr = entry_address(v).expect("callback entry");
    // SAFETY: the address is one of our entry points.
    unsafe { crate::hypercall::register_callback(type_, flags, addr) }
}

/// Sets (or with `None` clears) a guest's own handler for `vector`.
pub fn set_handler(vector: u32, h: Option<Handler>) {
    HANDLERS[vector as usize].set(h);
}

/// The last bounce recorded.
pub fn last() -> Trap {
    LAST.get()
}

/// Bounces recorded so far.
pub fn count() -> u64 {
    COUNT.get()
}

/// Called by entry.S for every bounce, on the stack the hypervisor chose.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
extern "C" fn pvguest_trap(frame: &mut TrapFrame) {
    let vector = frame.vector as u32;
    let t = Trap {
        vector,
        error_code: frame.error_code,
        rip: frame.rip,
        cs: frame.cs,
        rflags: frame.rflags,
        rsp: frame.rsp,
        ss: frame.ss,
        rcx: frame.rcx,
        r11: frame.r11,
        rax: frame.rax,
        cr2: if vector == 14 { start_info::cr2() } else { 0 },
        mask_on_entry: start_info::upcall_mask(),
        frame_top: core::ptr::addr_of!(frame.ss) as u64 + 8,
        segs: if vector == VEC_FAILSAFE {
            FAILSAFE_SEGS.get()
        } else {
            [0; 4]
        },
    };
    LAST.set(t);
    COUNT.set(COUNT.get() + 1);

    let action = match HANDLERS.get(vector as usize).and_then(|h| h.get()) {
        Some(h) => h(frame, &t),
        None => default_action(frame, &t),
    };
    match action {
        Action::Resume => {}
        Action::Unwind | Action::Return if CATCH_ACTIVE.get() => {
            let code = if action == Action::Return {
                CATCH_RETURN
            } else {
                CATCH_FAULT
            };
            unwind(frame, code)
        }
        _ => fatal(&t),
    }
}

/// The runtime's choice when the guest set no handler.
pub fn default_action(frame: &mut TrapFrame, t: &Trap) -> Action {
    match t.vector {
        VEC_EVENT => {
            // Scan, acknowledge and record the pending ports.
            crate::events::dispatch();
            Action::Resume
        }
        3 if t.rip == pvguest_user_ret2kern as *const () as u64 => Action::Return,
        // Traps: the frame's rip is already past the instruction.
        1 | 3 | 4 | VEC_INT80 | VEC_SOFTINT => Action::Resume,
        VEC_SYSCALL => {
            frame.iret_flags = abi::VGCF_IN_SYSCALL;
            Action::Resume
        }
        _ => Action::Unwind,
    }
}

/// Rewrites the frame so that `HYPERVISOR_iret` resumes in
/// `pvguest_catch` (guest kernel mode, its stack, `%rax = code`), with the
/// upcall mask as it was when the catch began (iret sets the mask to
/// `!rflags.IF`).
fn unwind(frame: &mut TrapFrame, code: u64) {
    frame.rip = pvguest_catch_resume as *const () as u64;
    frame.cs = KERNEL_CS_RPL0;
    frame.rsp = CATCH_RSP.get();
    frame.ss = abi::FLAT_KERNEL_SS.into();
    frame.rflags = crate::cpu::RFLAGS_RSVD1
        | if CATCH_MASK.get() == 0 {
            crate::cpu::RFLAGS_IF
        } else {
            0
        };
    frame.rax = code;
    frame.iret_flags = 0;
    CATCH_ACTIVE.set(false);
}

fn fatal(t: &Trap) -> ! {
    crate::report::fail("unexpected trap", format_args!("{}", t));
    crate::report::finish()
}

/// Runs `f`; a trap that unwinds (by default: any fault) abandons it and
/// makes `catch` return `Err(trap)`. Not reentrant.
///
/// What an unwound `f` had on its stack is forgotten, not dropped: keep
/// `f` to plain values and asm.
// The trap record is the point of the error; it is a plain Copy value.
#[allow(clippy::result_large_err)]
pub fn catch<F: FnOnce()>(f: F) -> Result<(), Trap> {
    extern "C" fn call<F: FnOnce()>(ctx: *mut u8) {
        // SAFETY: `ctx` is the `Option<F>` below, alive for the whole call.
        let f = unsafe { (*ctx.cast::<Option<F>>()).take() };
        if let Some(f) = f {
            f();
        }
    }
    assert!(!CATCH_ACTIVE.get(), "nested catch");
    let mut slot = Some(f);
    CATCH_MASK.set(start_info::upcall_mask());
    CATCH_ACTIVE.set(true);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: pvguest_catch calls `call::<F>(&mut slot)` and returns, or is
    // resumed by `unwind` with its own callee-saved registers restored.
    let r = unsafe { pvguest_catch(call::<F>, (&mut slot as *mut Option<F>).cast()) };
    compiler_fence(Ordering::SeqCst);
    CATCH_ACTIVE.set(false);
    match r {
        CATCH_RETURNED | CATCH_RETURN => Ok(()),
        _ => Err(LAST.get()),
    }
}

/// Case `case`: `f` must fault with `vector` (and error code `ec`, if
/// given). Reports PASS/FAIL and returns the trap, if any.
pub fn expect_fault<F: FnOnce()>(case: &str, vector: u32, ec: Option<u64>, f: F) -> Option<Trap> {
    match catch(f) {
        Ok(()) => {
            crate::report::fail(case, format_args!("no fault (want vector {:#x})", vector));
            None
        }
        Err(t) => {
            let ok = t.vector == vector && ec.is_none_or(|e| e == t.error_code);
            crate::report::check(
                case,
                ok,
                format_args!("want vec {:#x} ec {:x?}, got {}", vector, ec, t),
            );
            Some(t)
        }
    }
}

// --------------------------------------------------------------------------
// User mode.
// --------------------------------------------------------------------------

/// Size of the kernel stack (`stack_switch`) and of the user stack.
pub const STACK_SIZE: usize = 4 * 4096;

/// The kernel stack bounces from user mode land on (`stack_switch`).
pub static KERNEL_STACK: Stack<STACK_SIZE> = Stack::new();
/// The stack [`run_user`] gives user mode.
pub static USER_STACK: Stack<STACK_SIZE> = Stack::new();

static USER_READY: GuestCell<bool> = GuestCell::new(false);

/// Prepares user mode the way XTF's 64-bit PV does: `stack_switch` to
/// [`KERNEL_STACK`], and `MMUEXT_NEW_USER_BASEPTR` = the kernel's own L4
/// (one address space for both modes; a 64-bit PV guest's mappings are
/// all user-accessible to the hardware anyway, the guest kernel being in
/// ring 3 too).
pub fn setup_user_mode() -> Result<(), (&'static str, i64)> {
    // SAFETY: KERNEL_STACK is used only for bounces from user mode.
    let rc =
        unsafe { crate::hypercall::stack_switch(abi::FLAT_KERNEL_SS.into(), KERNEL_STACK.top()) };
    if rc != 0 {
        return Err(("stack_switch", rc));
    }
    let l4 = start_info::start_info().pt_base;
    let mfn = start_info::virt_to_mfn(l4).ok_or(("pt_base outside the P2M", 0))?;
    // SAFETY: the user page table is the one we already run on.
    let rc = unsafe { crate::hypercall::mmuext1(abi::MMUEXT_NEW_USER_BASEPTR, mfn, 0) };
    if rc != 0 {
        return Err(("mmuext_op(NEW_USER_BASEPTR)", rc));
    }
    USER_READY.set(true);
    Ok(())
}

/// `rflags` user mode starts with: IF (events unmasked, as a real user
/// process runs) and the always-one bit.
pub const USER_RFLAGS: u64 = crate::cpu::RFLAGS_IF | crate::cpu::RFLAGS_RSVD1;

/// Runs `f` in guest user mode (cs `FLAT_USER_CS`, on [`USER_STACK`]) and
/// returns to kernel mode when it returns (`Ok`) or faults (`Err`, unless a
/// handler chose otherwise). Needs [`setup_user_mode`]. `f` must not make
/// hypercalls (from user mode they are `syscall`s to the guest kernel).
#[allow(clippy::result_large_err)]
pub fn run_user<F: FnOnce()>(f: F) -> Result<(), Trap> {
    /// The iret frame sits *below* the closure: the iret stub pushes three
    /// words below the frame, which must not land on the closure.
    #[repr(C)]
    struct Launch<F> {
        iret: crate::hypercall::IretFrame,
        f: Option<F>,
    }
    extern "C" fn call<F: FnOnce()>(ctx: *mut u8) {
        // SAFETY: `ctx` points at `Launch::f` on the kernel stack, which
        // stays untouched until the catch unwinds.
        let f = unsafe { (*ctx.cast::<Option<F>>()).take() };
        if let Some(f) = f {
            f();
        }
    }
    assert!(USER_READY.get(), "run_user before setup_user_mode");
    catch(move || {
        let launch = Launch {
            iret: crate::hypercall::IretFrame {
                flags: 0,
                rip: pvguest_user_trampoline as *const () as u64,
                cs: abi::FLAT_USER_CS64.into(),
                rflags: USER_RFLAGS,
                rsp: USER_STACK.top(),
                ss: abi::FLAT_USER_SS64.into(),
            },
            f: Some(f),
        };
        let launch = &launch;
        // SAFETY: drops to user mode at the trampoline, which calls
        // call::<F>(&launch.f) and comes back through int3 (an unwind to
        // this catch). This frame stays intact meanwhile: user mode runs
        // on USER_STACK and its bounces on KERNEL_STACK.
        unsafe {
            crate::hypercall::iret(
                &launch.iret,
                call::<F> as *const () as u64,
                core::ptr::addr_of!(launch.f) as u64,
            )
        }
    })
}
