//! Trap bounces with the 32-bit frame: entry points, the recorded
//! [`Trap`], the way out (native `iret` or `HYPERVISOR_iret`), expected
//! faults and ring-3 user mode.
//!
//! The entry points (`entry.S`, with the frame diagrams and where in Xen
//! they come from) turn every bounce into one [`TrapFrame`] and call
//! `pvguest32_trap`, which records a [`Trap`] (the frame as the hypervisor
//! wrote it, plus `cr2` and the upcall mask seen on entry) and then does
//! one of these ([`Action`]):
//!
//! - **Resume** the interrupted code where the frame says. The runtime
//!   leaves with a native `iret` when that is enough, and with
//!   `HYPERVISOR_iret` when events must be unmasked on the way (the frame's
//!   eflags.IF says so and the handler runs masked): that is the case a
//!   native `iret` cannot handle, since at CPL 1 it cannot change the
//!   virtual IF and an event pending meanwhile would be missed.
//!   [`Action::ResumeNative`] and [`Action::ResumeHypercall`] force one
//!   way.
//! - **Unwind**: abandon the interrupted code and resume after the
//!   innermost [`catch`] (faults inside `catch`, and the end of a
//!   [`run_user`]). Handler and catch both run in ring 1, so this is a
//!   plain jump. This is how a test asserts "this instruction must #PF with
//!   ec=...": [`expect_fault`].
//! - **Fatal**: an unexpected trap: print it, count a failure, and end the
//!   test.
//!
//! A guest may replace the choice for any vector with [`set_handler`].
//! Vectors here are `u32`: 0-255 are trap-table vectors, and the callbacks
//! get pseudo vectors [`VEC_EVENT`], [`VEC_FAILSAFE`].

use core::fmt;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{compiler_fence, Ordering};

use crate::abi::{self, x86_32 as a32, x86_32::TrapInfo32};
use crate::cell::{GuestCell, Page, Stack};
use crate::start_info;

/// `int $0x80`: a DPL-3 software interrupt.
pub const VEC_INT80: u32 = 0x80;
/// A software-interrupt vector with a DPL-0 entry point, for DPL tests.
pub const VEC_SOFTINT: u32 = 0x41;
/// Pseudo vector: the event callback.
pub const VEC_EVENT: u32 = 0x100;
/// Pseudo vector: the failsafe callback.
pub const VEC_FAILSAFE: u32 = 0x101;

const NR_VECTORS: usize = 0x102;

/// Vectors whose hardware exceptions push an error code (and so whose
/// bounce frame has one): #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
pub const fn has_error_code(vector: u32) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// What the entry points build on the stack, lowest address first, and
/// hand to `pvguest32_trap`; everything in it is restored on the way out.
/// The hypervisor's frame ends with `eflags` here; when it interrupted
/// ring 2/3 its `esp, ss` follow right above (see [`Trap::esp`]), which
/// this type leaves out because from ring 1 those two words belong to the
/// interrupted stack.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    /// `pushal`'s copy of `%esp` (ignored by `popal`).
    pub esp_pushal: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    /// The interrupted selectors (for the failsafe callback: what was in
    /// the registers on entry, not the frame's; see [`Trap::segs`]).
    pub ds: u32,
    pub es: u32,
    pub fs: u32,
    pub gs: u32,
    /// The way out: 0 native `iret`, 1 `HYPERVISOR_iret`.
    pub exit: u32,
    pub vector: u32,
    /// The bounce frame's error code, or 0 for vectors without one.
    pub error_code: u32,
    // The hypervisor's frame.
    pub eip: u32,
    /// Selector in bits 0-15, saved upcall mask in bits 16-23.
    pub cs: u32,
    pub eflags: u32,
}

// entry.S: pushal (8), 4 selectors, exit, then what the entry pushed.
const _: () = assert!(offset_of!(TrapFrame, eax) == 7 * 4);
const _: () = assert!(offset_of!(TrapFrame, ds) == 8 * 4);
const _: () = assert!(offset_of!(TrapFrame, exit) == 12 * 4);
const _: () = assert!(offset_of!(TrapFrame, vector) == 13 * 4);
const _: () = assert!(offset_of!(TrapFrame, eip) == 15 * 4);
const _: () = assert!(size_of::<TrapFrame>() == 18 * 4);

const EXIT_NATIVE: u32 = 0;
const EXIT_HYPERCALL: u32 = 1;

/// One bounce, as the handler saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    pub vector: u32,
    pub error_code: u32,
    pub eip: u32,
    /// The whole cs slot: selector | saved upcall mask << 16.
    pub cs: u32,
    pub eflags: u32,
    /// From ring 2/3: the frame's esp slot. From ring 1 (no such slot):
    /// the interrupted esp, i.e. the address right above the frame.
    pub esp: u32,
    /// From ring 2/3: the frame's ss slot. From ring 1: `%ss` in the
    /// handler, which is the interrupted one.
    pub ss: u32,
    /// Whether the frame has the esp/ss slots (Xen: `cs & 2`).
    pub outer: bool,
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    /// `vcpu_info.arch.cr2` on entry (#PF only, else 0).
    pub cr2: u32,
    /// `vcpu_info.evtchn_upcall_mask` on entry to the handler.
    pub mask_on_entry: u8,
    /// Where the frame begins (its lowest slot: the error code if any,
    /// else eip; for the failsafe callback, ds).
    pub frame_base: u32,
    /// One past the frame's last slot (eflags, or ss): the interrupted
    /// esp from ring 1, the `stack_switch` stack top from ring 3.
    pub frame_top: u32,
    /// ds, es, fs, gs: the failsafe frame's slots for the failsafe
    /// callback, else the selectors loaded when the bounce arrived.
    pub segs: [u16; 4],
}

impl Trap {
    /// The selector part of the cs slot.
    pub fn cs_sel(&self) -> u16 {
        self.cs as u16
    }
    /// Bits 16-23 of the cs slot: the upcall mask before the bounce.
    pub fn saved_mask(&self) -> u8 {
        (self.cs >> 16) as u8
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
            "vec {:#x} ec {:#x} eip {:#x} cs {:#x} eflags {:#x} esp {:#x} ss {:#x}{} \
             cr2 {:#x} mask {}",
            self.vector,
            self.error_code,
            self.eip,
            self.cs,
            self.eflags,
            self.esp,
            self.ss,
            if self.outer { "" } else { " (ring 1)" },
            self.cr2,
            self.mask_on_entry
        )
    }
}

/// What `pvguest32_trap` does after recording a bounce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Back to the (possibly edited) frame: native `iret`, or
    /// `HYPERVISOR_iret` when events must be unmasked on the way.
    Resume,
    /// Back to the frame with a native `iret`, whatever the mask.
    ResumeNative,
    /// Back to the frame through `HYPERVISOR_iret` (mask := !eflags.IF).
    ResumeHypercall,
    /// Resume after the active [`catch`], which returns `Err(trap)`.
    Unwind,
    /// Resume after the active [`catch`], which returns `Ok(())` (the end
    /// of a [`run_user`]).
    Return,
    /// Unexpected: report and end the test.
    Fatal,
}

/// A guest's own handler for one vector. It may edit the frame (not its
/// esp/ss).
pub type Handler = fn(&mut TrapFrame, &Trap) -> Action;

static HANDLERS: [GuestCell<Option<Handler>>; NR_VECTORS] =
    [const { GuestCell::new(None) }; NR_VECTORS];
static LAST: GuestCell<Trap> = GuestCell::new(Trap {
    vector: 0,
    error_code: 0,
    eip: 0,
    cs: 0,
    eflags: 0,
    esp: 0,
    ss: 0,
    outer: false,
    eax: 0,
    ecx: 0,
    edx: 0,
    cr2: 0,
    mask_on_entry: 0,
    frame_base: 0,
    frame_top: 0,
    segs: [0; 4],
});
static COUNT: GuestCell<u32> = GuestCell::new(0);
/// How the last bounce that resumed left: [`EXIT_NATIVE`] or
/// [`EXIT_HYPERCALL`] (`u32::MAX`: none yet). Unwinds leave it alone.
static LAST_EXIT: GuestCell<u32> = GuestCell::new(u32::MAX);

/// Written by the failsafe entry point: its frame's ds, es, fs, gs.
static FAILSAFE_SEGS: GuestCell<[u32; 4]> = GuestCell::new([0; 4]);

static CATCH_ACTIVE: GuestCell<bool> = GuestCell::new(false);
/// `pvguest32_catch`'s frame pointer, to unwind to (written by the asm).
#[cfg_attr(not(target_arch = "x86"), allow(dead_code))]
static CATCH_EBP: GuestCell<u32> = GuestCell::new(0);
/// The upcall mask when the catch began, restored when unwinding.
static CATCH_MASK: GuestCell<u8> = GuestCell::new(1);

/// `pvguest32_catch` returns this when its function returned normally.
const CATCH_RETURNED: u32 = 0;
/// ... when a trap unwound it with [`Action::Return`].
const CATCH_RETURN: u32 = 1;
/// ... when a trap unwound it with [`Action::Unwind`].
const CATCH_FAULT: u32 = 2;

/// `rflags` user mode starts with: IF (events unmasked, as a real user
/// process runs) and the always-one bit.
pub const USER_EFLAGS: u32 = crate::cpu::EFLAGS_IF | crate::cpu::EFLAGS_RSVD1;

#[cfg(target_arch = "x86")]
core::arch::global_asm!(
    include_str!("entry.S"),
    vec_int80 = const VEC_INT80,
    vec_softint = const VEC_SOFTINT,
    vec_event = const VEC_EVENT,
    vec_failsafe = const VEC_FAILSAFE,
    failsafe_segs = sym FAILSAFE_SEGS,
    trap = sym pvguest32_trap,
    ring1_ds = const a32::FLAT_RING1_DS,
    ring3_ds = const a32::FLAT_RING3_DS,
    ring3_ss = const a32::FLAT_RING3_SS,
    ring3_cs = const a32::FLAT_RING3_CS,
    user_eflags = const USER_EFLAGS,
    iret_offset = const abi::HYPERVISOR_IRET as usize * abi::HYPERCALL_STUB_SIZE,
    catch_ebp = sym CATCH_EBP,
    options(att_syntax)
);

/// Order of `pvguest32_entry_table` in entry.S.
const ENTRY_VECTORS: [u32; 36] = {
    let mut v = [0u32; 36];
    let mut i = 0;
    while i < 32 {
        v[i] = i as u32;
        i += 1;
    }
    v[32] = VEC_INT80;
    v[33] = VEC_SOFTINT;
    v[34] = VEC_EVENT;
    v[35] = VEC_FAILSAFE;
    v
};

#[cfg(target_arch = "x86")]
extern "C" {
    static pvguest32_entry_table: [u32; ENTRY_VECTORS.len()];
    fn pvguest32_catch(f: extern "C" fn(*mut u8), ctx: *mut u8) -> u32;
    fn pvguest32_longjmp(code: u32) -> !;
    fn pvguest32_enter_user(entry: unsafe extern "C" fn(), esp: u32) -> !;
    fn pvguest32_user_ret2kern();
}

/// The entry point for `vector` (0-31, [`VEC_INT80`], [`VEC_SOFTINT`] or
/// a callback pseudo vector). Always `None` on the host.
pub fn entry_address(vector: u32) -> Option<u32> {
    let i = ENTRY_VECTORS.iter().position(|&v| v == vector)?;
    #[cfg(target_arch = "x86")]
    {
        // SAFETY: a table of addresses in .rodata; i is in bounds.
        Some(unsafe { pvguest32_entry_table[i] })
    }
    #[cfg(not(target_arch = "x86"))]
    {
        let _ = i;
        None
    }
}

/// The eip the #BP of a finished [`run_user`] function reports.
pub fn user_ret2kern() -> u32 {
    #[cfg(target_arch = "x86")]
    {
        pvguest32_user_ret2kern as *const () as usize as u32
    }
    #[cfg(not(target_arch = "x86"))]
    {
        0
    }
}

/// A 32-bit `trap_info` entry (8 bytes) for `vector` with the given DPL,
/// masking events on entry if `mask_events` (`TI_IF`), code selector
/// `FLAT_RING1_CS` (0xe019).
pub fn trap_info(vector: u8, dpl: u8, mask_events: bool) -> TrapInfo32 {
    TrapInfo32 {
        vector,
        flags: (dpl & abi::TI_DPL_MASK) | if mask_events { abi::TI_IF } else { 0 },
        cs: a32::FLAT_RING1_CS,
        address: entry_address(vector.into()).unwrap_or(0),
    }
}

/// The end of a trap table (an entry whose address is 0).
pub const TRAP_TABLE_END: TrapInfo32 = TrapInfo32 {
    vector: 0,
    flags: 0,
    cs: 0,
    address: 0,
};

/// Entries in [`default_trap_table`].
pub const DEFAULT_TRAP_TABLE_LEN: usize = 35;

/// The runtime's trap table, XTF's choices: every vector 0-31 at DPL 0
/// except #BP and #OF (DPL 3: `int3`/`into` work from user mode),
/// `int $0x80` at DPL 3, [`VEC_SOFTINT`] at DPL 0; all mask events on
/// entry. Ends with [`TRAP_TABLE_END`].
pub fn default_trap_table() -> [TrapInfo32; DEFAULT_TRAP_TABLE_LEN] {
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
pub fn set_trap_table(table: &[TrapInfo32]) -> i32 {
    assert!(
        table.last().is_some_and(|t| t.address == 0),
        "trap table without end"
    );
    // SAFETY: every non-final entry points at one of our entry points.
    unsafe { crate::hypercall::set_trap_table(crate::va(table.as_ptr())) }
}

/// Installs [`default_trap_table`]; `RESULT: ERROR` if refused.
pub fn install_default_trap_table() {
    let rc = set_trap_table(&default_trap_table());
    if rc != 0 {
        crate::report::error(format_args!("set_trap_table = {}", crate::report::Rc(rc)));
    }
}

/// `set_callbacks(sel, event entry, sel, failsafe entry)` with the
/// runtime's entry points and the given selectors (normally
/// `FLAT_RING1_CS`).
pub fn set_callbacks_with(event_sel: u32, failsafe_sel: u32) -> i32 {
    let ev = entry_address(VEC_EVENT).unwrap_or(0);
    let fs = entry_address(VEC_FAILSAFE).unwrap_or(0);
    // SAFETY: the addresses are our entry points.
    unsafe { crate::hypercall::set_callbacks(event_sel, ev, failsafe_sel, fs) }
}

/// `set_callbacks` with the runtime's event and failsafe entry points at
/// `FLAT_RING1_CS`.
pub fn install_callbacks() -> i32 {
    let cs = a32::FLAT_RING1_CS.into();
    set_callbacks_with(cs, cs)
}

/// `callback_op(register)` of callback `type_` at the runtime's entry point
/// for it (event, failsafe; NMI gets the #NMI entry), selector `cs`.
pub fn register_callback(type_: u16, flags: u16, cs: u32) -> i32 {
    let v = match type_ {
        abi::CALLBACKTYPE_FAILSAFE => VEC_FAILSAFE,
        abi::CALLBACKTYPE_NMI => 2,
        _ => VEC_EVENT,
    };
    let addr = entry_address(v).unwrap_or(0);
    // SAFETY: the address is one of our entry points.
    unsafe { crate::hypercall::register_callback(type_, flags, cs, addr) }
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
pub fn count() -> u32 {
    COUNT.get()
}

/// How the last bounce that resumed (rather than unwound) left:
/// `Some(false)` native `iret`, `Some(true)` `HYPERVISOR_iret`, `None`
/// before the first.
pub fn last_exit_was_hypercall() -> Option<bool> {
    match LAST_EXIT.get() {
        EXIT_NATIVE => Some(false),
        EXIT_HYPERCALL => Some(true),
        _ => None,
    }
}

/// Called by entry.S for every bounce, on the stack the hypervisor chose,
/// with %ds/%es = FLAT_RING1_DS.
#[cfg_attr(not(target_arch = "x86"), allow(dead_code))]
extern "C" fn pvguest32_trap(frame: *mut TrapFrame) {
    // The frame's own fields first; from ring 2/3 the hypervisor's frame
    // goes on with esp, ss right above the TrapFrame.
    let above = frame as usize + size_of::<TrapFrame>();
    // SAFETY: entry.S passes the TrapFrame it built on this stack.
    let f = unsafe { &mut *frame };
    let vector = f.vector;
    let outer = f.cs & 2 != 0;
    let (esp, ss, frame_top) = if outer {
        // SAFETY: from ring 2/3 the two words above eflags are the
        // frame's esp and ss slots, written by the hypervisor.
        unsafe {
            (
                (above as *const u32).read_volatile(),
                (above as *const u32).add(1).read_volatile(),
                above as u32 + 8,
            )
        }
    } else {
        (above as u32, u32::from(crate::cpu::ss()), above as u32)
    };
    let hw_base =
        crate::va(core::ptr::addr_of!(f.eip)) - if has_error_code(vector) { 4 } else { 0 };
    let t = Trap {
        vector,
        error_code: f.error_code,
        eip: f.eip,
        cs: f.cs,
        eflags: f.eflags,
        esp,
        ss,
        outer,
        eax: f.eax,
        ecx: f.ecx,
        edx: f.edx,
        cr2: if vector == 14 { start_info::cr2() } else { 0 },
        mask_on_entry: start_info::upcall_mask(),
        frame_base: if vector == VEC_FAILSAFE {
            crate::va(core::ptr::addr_of!(f.eip)) - 16
        } else {
            hw_base
        },
        frame_top,
        segs: if vector == VEC_FAILSAFE {
            FAILSAFE_SEGS.get().map(|s| s as u16)
        } else {
            [f.ds as u16, f.es as u16, f.fs as u16, f.gs as u16]
        },
    };
    LAST.set(t);
    COUNT.set(COUNT.get() + 1);

    let action = match HANDLERS.get(vector as usize).and_then(|h| h.get()) {
        Some(h) => h(f, &t),
        None => default_action(f, &t),
    };
    match action {
        Action::Resume | Action::ResumeNative | Action::ResumeHypercall => {
            f.exit = exit_for(action, f.eflags);
            LAST_EXIT.set(f.exit);
        }
        Action::Unwind | Action::Return if CATCH_ACTIVE.get() => {
            unwind(if action == Action::Return {
                CATCH_RETURN
            } else {
                CATCH_FAULT
            })
        }
        _ => fatal(&t),
    }
}

/// The way out for `action` given the eflags the frame resumes with.
///
/// `HYPERVISOR_iret` sets the upcall mask to `!eflags.IF` (Xen's
/// `compat_iret`); a native `iret` at CPL 1 changes neither IF nor the
/// mask. So `Resume` leaves natively when the mask already is what the
/// frame wants, masks by hand and leaves natively when the frame wants
/// events masked, and asks the hypervisor only to unmask (which also
/// delivers what became pending while the handler ran).
fn exit_for(action: Action, eflags: u32) -> u32 {
    let want: u8 = if eflags & crate::cpu::EFLAGS_IF != 0 {
        0
    } else {
        1
    };
    match action {
        Action::ResumeNative => EXIT_NATIVE,
        Action::ResumeHypercall => EXIT_HYPERCALL,
        _ if start_info::upcall_mask() == want => EXIT_NATIVE,
        _ if want == 1 => {
            start_info::set_upcall_mask(1);
            EXIT_NATIVE
        }
        _ => EXIT_HYPERCALL,
    }
}

/// The runtime's choice when the guest set no handler.
pub fn default_action(_frame: &mut TrapFrame, t: &Trap) -> Action {
    match t.vector {
        VEC_EVENT => {
            crate::events::dispatch();
            Action::Resume
        }
        3 if t.eip == user_ret2kern() => Action::Return,
        // Traps: the frame's eip is already past the instruction.
        1 | 3 | 4 | VEC_INT80 | VEC_SOFTINT => Action::Resume,
        _ => Action::Unwind,
    }
}

/// Back into the active [`catch`] (ring 1 to ring 1: a jump), which
/// returns `code`.
fn unwind(code: u32) -> ! {
    CATCH_ACTIVE.set(false);
    #[cfg(target_arch = "x86")]
    {
        // SAFETY: a catch is active (checked by the caller): its frame is
        // intact below everything the trap pushed, on the stack the
        // catch runs on, and pvguest32_catch_resume restores its
        // callee-saved registers.
        unsafe { pvguest32_longjmp(code) }
    }
    #[cfg(not(target_arch = "x86"))]
    {
        let _ = code;
        unreachable!("no bounces on the host")
    }
}

fn fatal(t: &Trap) -> ! {
    crate::report::fail("unexpected trap", format_args!("{}", t));
    crate::report::finish()
}

/// Runs `f`; a trap that unwinds (by default: any fault) abandons it and
/// makes `catch` return `Err(trap)`. Not reentrant. The upcall mask is put
/// back as it was when the catch began (and pending events are delivered
/// if that unmasks them).
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
    let mask = start_info::upcall_mask();
    CATCH_MASK.set(mask);
    CATCH_ACTIVE.set(true);
    compiler_fence(Ordering::SeqCst);
    #[cfg(target_arch = "x86")]
    // SAFETY: pvguest32_catch calls `call::<F>(&mut slot)` and returns, or
    // is resumed by `unwind` with its own callee-saved registers restored.
    let r = unsafe { pvguest32_catch(call::<F>, (&mut slot as *mut Option<F>).cast()) };
    #[cfg(not(target_arch = "x86"))]
    let r = {
        call::<F>((&mut slot as *mut Option<F>).cast());
        CATCH_RETURNED
    };
    compiler_fence(Ordering::SeqCst);
    CATCH_ACTIVE.set(false);
    if r != CATCH_RETURNED && start_info::upcall_mask() != CATCH_MASK.get() {
        start_info::set_upcall_mask(CATCH_MASK.get());
        if CATCH_MASK.get() == 0 && start_info::upcall_pending() != 0 {
            crate::hypercall::force_event_check();
        }
    }
    match r {
        CATCH_RETURNED | CATCH_RETURN => Ok(()),
        _ => Err(LAST.get()),
    }
}

/// Case `case`: `f` must fault with `vector` (and error code `ec`, if
/// given). Reports PASS/FAIL and returns the trap, if any.
pub fn expect_fault<F: FnOnce()>(case: &str, vector: u32, ec: Option<u32>, f: F) -> Option<Trap> {
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
// User mode (ring 3).
// --------------------------------------------------------------------------

/// Size of the ring-1 stack for bounces from ring 3 (`stack_switch`) and
/// of the user stack.
pub const STACK_SIZE: usize = 4 * 4096;

/// The ring-1 stack bounces from ring 3 land on (`stack_switch`).
pub static KERNEL_STACK: Stack<STACK_SIZE> = Stack::new();
/// The stack [`run_user`] gives ring 3 (on user pages).
#[link_section = ".user.data"]
pub static USER_STACK: Stack<STACK_SIZE> = Stack::new();
/// A page of the kernel's `.bss`: never a user page, for "ring 3 may not
/// touch this" cases.
pub static KERNEL_ONLY: Page = Page::new();

static USER_READY: GuestCell<bool> = GuestCell::new(false);

#[cfg(target_arch = "x86")]
extern "C" {
    static __user_start: u8;
    static __user_end: u8;
}

/// The user pages `[start, end)`: `.user.text` and `.user.data` (from the
/// linker script).
pub fn user_range() -> (u32, u32) {
    #[cfg(target_arch = "x86")]
    {
        (
            crate::va(core::ptr::addr_of!(__user_start)),
            crate::va(core::ptr::addr_of!(__user_end)),
        )
    }
    #[cfg(not(target_arch = "x86"))]
    {
        (0, 0)
    }
}

/// Defines a function for ring 3: naked, in `.user.text` (a user page),
/// its body AT&T asm with `sym`/`const` operands as for
/// [`core::arch::naked_asm!`]. It is called with `call` and returns with
/// `ret`; whatever it writes must be in `.user.data`
/// (`#[link_section = ".user.data"]`). No trailing comma after the last
/// operand (the macro appends `options(att_syntax)`).
///
/// ```ignore
/// pvguest32::user_fn!(fn user_ud2() { "ud2", "ret" });
/// ```
#[macro_export]
macro_rules! user_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident() { $($body:tt)* }) => {
        $(#[$m])*
        #[unsafe(naked)]
        #[link_section = ".user.text"]
        $vis unsafe extern "C" fn $name() {
            core::arch::naked_asm!($($body)*, options(att_syntax))
        }
    };
}

/// Prepares ring 3, the way a 32-bit PV kernel would:
///
/// 1. `stack_switch(FLAT_RING1_SS, top of KERNEL_STACK)`: where bounces
///    from ring 3 land.
/// 2. The user pages (`.user.text`, `.user.data`, see `guest.ld`) get the
///    U bit. A 32-bit PV kernel runs in ring 1, so unlike a 64-bit one its
///    own pages are supervisor pages: Xen's builder maps a compat guest's
///    bootstrap region with supervisor-only leaf entries (`COMPAT_L1_PROT`
///    in `xen/arch/x86/pv/dom0_build.c`: present, rw, accessed) under user
///    upper levels. The runtime sets U on each user page with
///    `update_va_mapping`, and on the L2 entries above them with
///    `mmu_update` should they lack it. Kernel code never runs from these
///    pages, nor user code from any other.
pub fn setup_user_mode() -> Result<(), (&'static str, i32)> {
    // SAFETY: KERNEL_STACK is used only for bounces from ring 3.
    let rc =
        unsafe { crate::hypercall::stack_switch(a32::FLAT_RING1_SS.into(), KERNEL_STACK.top()) };
    if rc != 0 {
        return Err(("stack_switch", rc));
    }
    let (start, end) = user_range();
    if start == end {
        return Err(("no user pages", 0));
    }
    let mut last_l2 = None;
    let mut va = start;
    while va < end {
        let [_, l2, _] = start_info::walk(va);
        let l2 = l2.ok_or(("no L2 entry for a user page", 0))?;
        if l2.val & start_info::PTE_USER == 0 && last_l2 != Some(l2.maddr) {
            let req = abi::MmuUpdate {
                ptr: l2.maddr | abi::MMU_NORMAL_PT_UPDATE,
                val: l2.val | start_info::PTE_USER,
            };
            // SAFETY: only adds the U bit to an L2 entry of the image.
            let rc =
                unsafe { crate::hypercall::mmu_update(crate::va(&req), 1, 0, abi::DOMID_SELF) };
            if rc != 0 {
                return Err(("mmu_update(L2 entry | U)", rc));
            }
        }
        last_l2 = Some(l2.maddr);
        let mfn = start_info::virt_to_mfn(va).ok_or(("user page outside the P2M", 0))?;
        let pte = (u64::from(mfn) << 12)
            | start_info::PTE_PRESENT
            | start_info::PTE_RW
            | start_info::PTE_USER
            | start_info::PTE_ACCESSED
            | start_info::PTE_DIRTY;
        // SAFETY: the same frame, now also user-accessible; only user
        // code and data live there.
        let rc = unsafe { crate::hypercall::update_va_mapping(va, pte, abi::UVMF_INVLPG as u32) };
        if rc != 0 {
            return Err(("update_va_mapping(user page | U)", rc));
        }
        va += crate::PAGE_SIZE;
    }
    USER_READY.set(true);
    Ok(())
}

/// Runs `entry` (a [`user_fn!`]) in ring 3 (cs `FLAT_RING3_CS`, ss
/// `FLAT_RING3_SS`, on [`USER_STACK`], eflags [`USER_EFLAGS`]) and returns
/// to ring 1 when it returns (`Ok`) or faults (`Err`, unless a handler
/// chose otherwise). The way in is a native `iret` from ring 1; the way
/// back is `int3` (DPL 3). Needs [`setup_user_mode`]. `entry` must not make
/// hypercalls (`int $0x82` from ring 3 is a #GP).
#[allow(clippy::result_large_err)]
pub fn run_user(entry: unsafe extern "C" fn()) -> Result<(), Trap> {
    assert!(USER_READY.get(), "run_user before setup_user_mode");
    let (start, end) = user_range();
    assert!(
        (start..end).contains(&(entry as usize as u32)),
        "run_user: the entry is not on a user page (use user_fn!)"
    );
    catch(move || {
        #[cfg(target_arch = "x86")]
        // SAFETY: drops to ring 3 at the trampoline, which calls `entry`
        // and comes back through int3 (an unwind to this catch). This
        // frame stays intact meanwhile: ring 3 runs on USER_STACK and its
        // bounces land on KERNEL_STACK.
        unsafe {
            pvguest32_enter_user(entry, USER_STACK.top())
        }
        #[cfg(not(target_arch = "x86"))]
        let _ = entry;
    })
}
