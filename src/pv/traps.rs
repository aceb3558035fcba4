//! Bouncing: delivering an exception, a system call or a failsafe callback
//! onto the guest kernel's own handler, exactly as the Xen PV ABI
//! describes it (Xen: `xen/arch/x86/x86_64/entry.S` create_bounce_frame,
//! `x86_64/compat/entry.S` compat_create_bounce_frame, `pv/traps.c`).
//!
//! # A bounce, step by step
//!
//! The CPU has taken an exception in the guest (ring 3, or ring 1 for a
//! 32-bit kernel) and pushed its frame on *our* stack; the guest never saw
//! it. To the guest kernel it must look as if the CPU had delivered it
//! there, so `write_frame` and `enter_handler`, one recipe for both guest
//! widths (what differs is data: `width::Layout`):
//!
//! 1. pick the guest kernel stack: the interrupted one if the guest was in
//!    kernel mode, else the one it registered with `stack_switch`
//!    (64-bit: rounded down to 16 bytes);
//! 2. write the frame on it, lowest address first, one `push` per word
//!    (64-bit: 8-byte words; 32-bit: 4-byte words, the frame the CPU
//!    itself pushes, with no RCX/R11 and ESP/SS only from ring 3):
//!
//! ```text
//!    rsp' ->  RCX        the guest's rcx, r11 (its hypercall/syscall path
//!             R11        clobbers them, so the ABI hands them over)
//!            [ERRCODE]   for #DF #TS #NP #SS #GP #PF #AC #CP #VC #SX
//!             RIP        where the guest was (fault) or goes on (trap)
//!             CS         interrupted cs (RPL 0 if it was the 64-bit guest
//!                        kernel), and in bits 32-39 (32-bit: 16-23) the
//!                        saved evtchn_upcall_mask: the guest's "IF" for
//!                        events
//!             RFLAGS     with IF = !saved upcall mask
//!             RSP        the interrupted stack
//!             SS
//! ```
//!
//! 3. switch the vCPU to guest kernel mode (64-bit: its page tables and GS
//!    base); if the trap-table entry asks (`TI_IF`) or the callback was
//!    registered with `CALLBACKF_mask_events`, set `evtchn_upcall_mask`;
//! 4. point it at the handler: rip = handler, rsp = rsp', cs/ss = the flat
//!    kernel selectors (32-bit: the handler's cs, the stack's ss). The
//!    guest returns with `HYPERVISOR_iret` (32-bit: or a plain `iret`).
//!
//! If the frame cannot be written (stack unmapped, read-only, not
//! canonical), ringvisor tries the failsafe callback, on the stack
//! registered with `stack_switch`, with the interrupted context and the
//! data selectors (the same recipe, `failsafe_with`). Xen crashes the domain at that
//! point and keeps the failsafe for bad segment reloads; we give the
//! kernel one more chance, which is easier to watch in a lesson. If there
//! is no failsafe callback, or its frame cannot be written either, the
//! domain is crashed with a message saying why; nothing else is affected.

use alloc::format;

use ringvisor_abi::xen::TI_IF;

use crate::arch::x86_64::idt::{exception_name, TrapFrame};
use crate::domain::vcpu::{Callback, Vcpu};
use crate::domain::Domain;
use core::sync::atomic::Ordering;

use crate::mm::view::VcpuInfoArea;
use crate::pv::emulate;
use crate::pv::guest_mem::{Fault, GuestSpace};
use crate::pv::width::Width;
use crate::sched;
use crate::trace::TRACE_BOUNCE;

const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_IOPL: u64 = 3 << 12;
/// Cleared on entry to a handler, as the CPU does for an interrupt gate
/// (TF, NT, RF, VM) plus AC.
const RFLAGS_ENTRY_CLEAR: u64 = (1 << 8) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 18);

pub const VEC_DB: u8 = 1;
pub use crate::arch::x86_64::answers::{VEC_BP, VEC_OF, VEC_PF, VEC_UD};
pub const VEC_NM: u8 = 7;
pub const VEC_GP: u8 = 13;

pub use crate::domain::{vcpu_info, vcpu_info_addr};

/// Where `evtchn_upcall_mask` is in a `vcpu_info`.
pub(crate) const UPCALL_MASK: usize =
    core::mem::offset_of!(ringvisor_abi::xen::VcpuInfo, evtchn_upcall_mask);

/// The running vCPU's `evtchn_upcall_mask`.
pub fn upcall_mask(d: &Domain) -> u8 {
    vcpu_info(d, d.cur)
        .atomic_u8(UPCALL_MASK)
        .load(Ordering::Relaxed)
}

pub fn set_upcall_mask(d: &Domain, m: u8) {
    vcpu_info(d, d.cur)
        .atomic_u8(UPCALL_MASK)
        .store(m, Ordering::Relaxed)
}

pub(crate) fn set_vcpu_cr2(d: &Domain, cr2: u64) {
    set_cr2_at(vcpu_info(d, d.cur), d.is_32bit(), cr2);
}

/// [`set_vcpu_cr2`] on the `vcpu_info` `vi` (the running vCPU's, as
/// `vcpu_info` gives it or this CPU's block publishes it) of a guest of
/// the width `compat` says.
#[inline(always)]
pub(crate) fn set_cr2_at(vi: VcpuInfoArea, compat: bool, cr2: u64) {
    if compat {
        let off = core::mem::offset_of!(ringvisor_abi::x86_32::VcpuInfo32, arch);
        vi.atomic_u32(off).store(cr2 as u32, Ordering::Relaxed);
    } else {
        let off = core::mem::offset_of!(ringvisor_abi::xen::VcpuInfo, arch)
            + core::mem::offset_of!(ringvisor_abi::x86_64::ArchVcpuInfo, cr2);
        vi.atomic_u64(off).store(cr2, Ordering::Relaxed);
    }
}

/// Switch the vCPU between guest kernel and guest user mode: page tables
/// and the live GS base change together (Xen: toggle_guest_mode).
// Tour 05, 06: guest kernel mode <-> guest user mode
pub fn toggle_guest_mode(v: &mut Vcpu) {
    sched::save_guest_gs(v);
    let before = v.cr3_table();
    v.set_kernel_mode(!v.kernel_mode());
    crate::arch::x86_64::percpu::this().user_mode.store(
        !v.kernel_mode() as u64,
        core::sync::atomic::Ordering::Relaxed,
    );
    sched::load_guest_gs(v);
    // Many guests use one table for both modes: no CR3 write (and no TLB
    // flush) then.
    if v.cr3_table() != before {
        sched::load_cr3(v);
    }
}

/// What to deliver.
#[derive(Clone, Copy, Debug)]
pub struct Bounce {
    pub what: &'static str,
    pub vector: Option<u8>,
    pub error_code: Option<u64>,
    pub handler: u64,
    /// The handler's code selector (32-bit guests; 0: the flat kernel CS).
    pub cs: u16,
    pub mask_events: bool,
}

impl Bounce {
    /// Entering a registered callback (no vector, no error code).
    pub fn to_callback(what: &'static str, cb: Callback) -> Bounce {
        Bounce {
            what,
            vector: None,
            error_code: None,
            handler: cb.address,
            cs: cb.cs,
            mask_events: cb.mask_events,
        }
    }
}

/// The guest kernel's address space, where every frame goes (for a
/// 64-bit guest interrupted in user mode: not the current one).
pub(crate) fn kernel_space(v: &Vcpu) -> GuestSpace {
    if v.compat_l4 != 0 {
        v.space()
    } else {
        GuestSpace::new(v.guest_table)
    }
}

/// What a frame holds besides the interrupted context, and where it goes.
pub(crate) struct FrameSpec {
    /// The failsafe's data selectors (ds, es, fs, gs), after rcx and r11.
    pub(crate) sels: Option<[u16; 4]>,
    /// The exception's error code, before rip.
    pub(crate) error_code: Option<u64>,
    /// The virtual IOPL reported in the flags word (bounces, with
    /// `architectural_iopl`; 0 for the failsafe, as Xen's).
    pub(crate) iopl_bits: u64,
    /// On the `stack_switch` stack even when the guest kernel was
    /// interrupted (the failsafe: the interrupted stack is the broken one).
    pub(crate) switch_stack: bool,
}

/// A frame written: where, on which stack segment, and from which mode.
pub(crate) struct Placed {
    pub(crate) va: u64,
    ss: u64,
    from_user: bool,
}

/// A frame that could not be written: where it would have gone, and why.
pub(crate) struct Unwritable {
    va: u64,
    fault: Fault,
}

/// Write a bounce or failsafe frame for the guest's width; on failure
/// nothing has changed. Lowest address first (docs/frames/):
///
/// ```text
///  64-bit:  RCX R11 [DS ES FS GS] [ERRCODE] RIP CS RFLAGS RSP SS   8-byte words
///  32-bit:          [DS ES FS GS] [ERRCODE] EIP CS EFLAGS [ESP SS] 4-byte words
/// ```
///
/// The CS word carries the saved `evtchn_upcall_mask` above the selector
/// (bits 32-39, or 16-23), the flags word IF = !mask; the width's
/// `Layout` says which words, how wide, and which stack.
// Tour 04, 06, 08: the frame, word by word, for either width
#[inline(always)]
fn write_frame(
    d: &Domain,
    f: &TrapFrame,
    w: Width,
    spec: &FrameSpec,
) -> Result<Placed, Unwritable> {
    let v = d.v();
    let b = build_frame(v, upcall_mask(d), f, w, spec)?;
    // 4. The frame in one copy, which checks every page first.
    match kernel_space(v).write_bytes(b.at.va, b.bytes()) {
        Ok(()) => Ok(b.at),
        Err(fault) => Err(Unwritable { va: b.at.va, fault }),
    }
}

/// A frame's words, built, and where they go ([`write_frame`] writes
/// them; so does `pv::fast_trap`).
pub(crate) struct Built {
    words: [u64; 11],
    n: usize,
    pub(crate) at: Placed,
}

impl Built {
    /// The frame's bytes, lowest address first.
    #[inline(always)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &ringvisor_abi::as_bytes(&self.words)[..self.n]
    }
}

/// Steps 1-3 of [`write_frame`]: which stack, and the words, with the
/// saved upcall `mask`; nothing written yet.
// Tour 04: the words, one push each
#[inline(always)]
pub(crate) fn build_frame(
    v: &Vcpu,
    mask: u8,
    f: &TrapFrame,
    w: Width,
    spec: &FrameSpec,
) -> Result<Built, Unwritable> {
    let lay = w.layout();
    let from_user = w.interrupted_user(v.kernel_mode(), f.cs);
    // 1. Which stack: the interrupted one if the guest kernel was
    // interrupted, else (and for the failsafe) the one from stack_switch;
    // its top rounded down as the width says (64-bit: 16 bytes, as the
    // CPU does in 64-bit mode).
    let (sp, ss) = if from_user || spec.switch_stack {
        (v.kernel_sp, v.kernel_ss)
    } else {
        (f.rsp, f.ss)
    };
    let top = sp & lay.addr_mask & !(lay.align - 1);
    // 2. The CS and flags words. A 64-bit guest kernel believes it runs
    // in ring 0: RPL 0 for it; a 32-bit one really is in ring 1.
    let cs = if lay.kernel_rpl0 && !from_user {
        f.cs & !3
    } else {
        f.cs & lay.cs_bits
    };
    let flags = (f.rflags & !(RFLAGS_IF | RFLAGS_IOPL))
        | if mask == 0 { RFLAGS_IF } else { 0 }
        | spec.iopl_bits;
    // 3. The words, one push each, in the order the guest reads them
    // (docs/frames/ is checked against these pushes), each as the guest
    // reads it: little-endian, cut to the word size. `n` counts bytes.
    // (In 8-byte slots, two 4-byte words to a slot, low one first: the
    // bytes are the same, and each push is one store.)
    let size = lay.word as usize;
    let mut words = [0u64; 11];
    let mut k = 0;
    // (A macro, not a closure: always in line, the width folded in.)
    macro_rules! push {
        ($w:expr) => {{
            let w: u64 = $w;
            if size == 8 {
                words[k % 11] = w;
            } else {
                words[k / 2 % 11] |= (w as u32 as u64) << (32 * (k % 2));
            }
            k += 1;
        }};
    }
    if lay.rcx_r11 {
        push!(f.rcx);
        push!(f.r11);
    }
    if let Some([ds, es, fs, gs]) = spec.sels.map(|s| s.map(u64::from)) {
        push!(ds);
        push!(es);
        push!(fs);
        push!(gs);
    }
    if let Some(ec) = spec.error_code {
        push!(ec);
    }
    push!(f.rip);
    push!(cs | (mask as u64) << lay.mask_shift);
    push!(flags);
    if lay.stack_always || from_user {
        push!(f.rsp);
        push!(f.ss);
    }
    let n = k * size;
    let va = top.wrapping_sub(n as u64) & lay.addr_mask;
    if va > top && lay.addr_mask != u64::MAX {
        // Below 0 in a 4 GiB space. (A 64-bit frame wraps into the
        // hypervisor's range, which write_bytes refuses.)
        let fault = Fault {
            va: top,
            level: 0,
            error_code: 2,
        };
        return Err(Unwritable { va, fault });
    }
    Ok(Built {
        words,
        n,
        at: Placed { va, ss, from_user },
    })
}

/// Enter a handler on the frame just written: guest kernel mode, events
/// masked if asked, and the `TrapFrame` pointing at the handler.
// Tour 04, 08: into the guest kernel's handler
#[inline(always)]
pub(crate) fn enter_handler(
    d: &mut Domain,
    f: &mut TrapFrame,
    w: Width,
    at: &Placed,
    to: Callback,
) {
    enter_handler_on(d.v_mut(), f, w, at, to);
    if to.mask_events {
        set_upcall_mask(d, 1);
    }
}

/// [`enter_handler`] but for the events mask, on the vCPU (the quick way,
/// `pv::fast_trap`, sets the mask through the `vcpu_info` its CPU's block
/// publishes).
#[inline(always)]
pub(crate) fn enter_handler_on(
    v: &mut Vcpu,
    f: &mut TrapFrame,
    w: Width,
    at: &Placed,
    to: Callback,
) {
    let lay = w.layout();
    // A 64-bit guest's user mode has its own page tables and GS base.
    if lay.user_tables && at.from_user {
        toggle_guest_mode(v);
    }
    v.set_kernel_mode(true);
    let (cs, ss) = match lay.fixed_cs_ss {
        Some((cs, ss)) => (cs as u64, ss as u64),
        None if to.cs == 0 => (lay.flat_cs as u64, at.ss),
        None => (to.cs as u64, at.ss),
    };
    f.rip = to.address;
    f.cs = cs;
    f.ss = ss;
    f.rsp = at.va;
    f.rflags = (f.rflags & !(RFLAGS_ENTRY_CLEAR | RFLAGS_IOPL)) | RFLAGS_IF;
}

/// Build the bounce frame and enter the handler; on failure nothing has
/// changed and the fault says where. The same recipe for both widths: the
/// width's `Layout` (src/pv/width.rs) says what differs.
// Tour 04, 06: a bounce, for either width (docs/frames/exception*.svg)
fn bounce(d: &mut Domain, f: &mut TrapFrame, b: &Bounce) -> Result<u64, Fault> {
    // The recipe is compiled once per width, each copy with its Layout's
    // constants folded in: as fast as two hand-written copies.
    match d.width() {
        Width::W64 => bounce_as(Width::W64, d, f, b),
        Width::W32 => bounce_as(Width::W32, d, f, b),
    }
}

#[inline(always)]
fn bounce_as(w: Width, d: &mut Domain, f: &mut TrapFrame, b: &Bounce) -> Result<u64, Fault> {
    let iopl_bits = if d.vm_assist & (1 << ringvisor_abi::xen::VMASST_TYPE_ARCHITECTURAL_IOPL) != 0
    {
        (d.v().iopl as u64) << 12
    } else {
        0
    };
    let spec = FrameSpec {
        sels: None,
        error_code: b.error_code,
        iopl_bits,
        switch_stack: false,
    };
    let at = write_frame(d, f, w, &spec).map_err(|e| e.fault)?;
    let to = Callback {
        address: b.handler,
        cs: b.cs,
        mask_events: b.mask_events,
    };
    enter_handler(d, f, w, &at, to);
    Ok(at.va)
}

/// The failsafe callback, with the data selectors of the interrupted
/// context, on the `stack_switch` stack.
// Tour 08: a bounce frame could not be written
fn failsafe(d: &mut Domain, f: &mut TrapFrame, why: &str) {
    let sels = crate::sched::read_data_selectors();
    failsafe_with(d, f, why, sels, true)
}

/// Reloading the vCPU's data selectors failed (its GDT changed under
/// them): the failsafe callback gets the selectors it had.
// Tour 08: data selectors that no longer load
pub fn failsafe_segments(d: &mut Domain, f: &mut TrapFrame, sels: [u16; 4]) {
    let why = format!(
        "cannot reload data selectors ds {:#x} es {:#x} fs {:#x} gs {:#x}",
        sels[0], sels[1], sels[2], sels[3]
    );
    // Xen's compat load_segments: from ring 1 the frame goes on the
    // interrupted stack, which is fine (only a selector was bad).
    let switch_stack = !d.width().layout().segfail_on_interrupted_stack;
    failsafe_with(d, f, &why, sels, switch_stack)
}

/// The failsafe frame, `{ [RCX, R11,] DS, ES, FS, GS, RIP, CS, RFLAGS,
/// [RSP, SS] }` as the width has it (docs/frames/failsafe*.svg), and into
/// the failsafe callback; the domain is crashed if there is none or its
/// frame cannot be written either.
// Tour 08: the failsafe frame, for either width
fn failsafe_with(d: &mut Domain, f: &mut TrapFrame, why: &str, sels: [u16; 4], switch_stack: bool) {
    let (id, w, cb) = (d.id, d.width(), d.v().failsafe);
    if cb.address == 0 {
        sched::crash(d, format!("{why}, and there is no failsafe callback"));
        return;
    }
    let spec = FrameSpec {
        sels: Some(sels),
        error_code: None,
        iopl_bits: 0,
        switch_stack,
    };
    let at = match write_frame(d, f, w, &spec) {
        Ok(at) => at,
        Err(e) => {
            sched::crash(
                d,
                format!(
                    "{why}; the failsafe frame could not be written either (stack {:#x}, {})",
                    e.va,
                    fault_words(&e.fault)
                ),
            );
            return;
        }
    };
    enter_handler(d, f, w, &at, cb);
    let handler = cb.address;
    crate::warn!("d{id}: {why}: delivering to the failsafe callback {handler:#x}");
    crate::trace!(
        TRACE_BOUNCE,
        "d{id}v{} failsafe{} -> {handler:#x} frame {:#x}",
        d.cur,
        w.layout().trace_tag,
        at.va
    );
}

// Tour 08: why a write to a guest stack failed
fn fault_words(e: &Fault) -> &'static str {
    match (e.level, e.error_code & 1, e.error_code & 2) {
        (0, _, _) => "non-canonical or hypervisor address",
        (_, 0, _) => "not mapped",
        (_, _, 2) => "read-only",
        _ => "not accessible",
    }
}

/// Failsafe callbacks in a row, with no bounce that could be written in
/// between, before the domain is crashed instead (a guest whose failsafe
/// handler returns to the context that failed would loop for ever).
const FAILSAFE_STREAK_MAX: u32 = 16;

/// Deliver `b`, falling back to the failsafe callback.
// Tour 04, 08: a bounce, or else the failsafe callback
pub fn deliver(d: &mut Domain, f: &mut TrapFrame, b: Bounce) {
    let from_kernel = d.v().kernel_mode();
    let (old_rip, old_cs) = (f.rip, f.cs);
    crate::trace::record(crate::trace::Record {
        what: crate::trace::What::Named(b.what),
        dom: d.id,
        vcpu: d.cur as u16,
        a: old_rip,
        b: b.error_code.unwrap_or(0),
    });
    match bounce(d, f, &b) {
        Ok(frame) => {
            let v = d.v_mut();
            v.set_in_failsafe(false);
            v.failsafe_streak = 0;
            if crate::trace::on(TRACE_BOUNCE) {
                traced_bounce(d, &b, from_kernel, old_rip, old_cs, frame);
            }
        }
        Err(e) => undeliverable(d, f, &b, &e, old_rip),
    }
}

/// The trace line of a bounce delivered.
#[cold]
#[inline(never)]
fn traced_bounce(d: &Domain, b: &Bounce, from_kernel: bool, old_rip: u64, old_cs: u64, frame: u64) {
    let from = if from_kernel { "kernel" } else { "user" };
    // The cs the guest's frame holds (RPL 0 for its 64-bit kernel), and
    // for a #PF the address, as the guest will see them.
    let frame_cs = if d.width().layout().kernel_rpl0 && from_kernel {
        old_cs & !3
    } else {
        old_cs
    };
    crate::trace!(
        TRACE_BOUNCE,
        "d{}v{} bounce {} ec={}{} from {from} rip={old_rip:#x} cs={frame_cs:#x} -> handler {:#x} frame {frame:#x}",
        d.id,
        d.cur,
        b.what,
        b.error_code.map_or(alloc::string::String::from("-"), |e| format!("{e:#x}")),
        if b.vector == Some(VEC_PF) { format!(" cr2={:#x}", d.v().cr2) } else { alloc::string::String::new() },
        b.handler,
    );
}

/// The bounce frame could not be written: the failsafe callback, or a
/// crash when that would only loop.
#[cold]
#[inline(never)]
fn undeliverable(d: &mut Domain, f: &mut TrapFrame, b: &Bounce, e: &Fault, old_rip: u64) {
    let why = format!(
        "cannot write the {} bounce frame at {:#x} ({}) for the handler {:#x}, rip {old_rip:#x}",
        b.what,
        e.va,
        fault_words(e),
        b.handler
    );
    if d.v().in_failsafe() {
        // The failsafe handler itself faulted before making any
        // progress: another failsafe would only loop.
        sched::crash(d, format!("{why}, in the failsafe callback"));
        return;
    }
    if d.v().failsafe_streak >= FAILSAFE_STREAK_MAX {
        // Its handler makes hypercalls (progress, by the test
        // above) but goes back to where it cannot be bounced to.
        sched::crash(d, format!("{why}, the {FAILSAFE_STREAK_MAX}th failsafe callback in a row with no bounce in between"));
        return;
    }
    failsafe(d, f, &why);
    d.v_mut().set_in_failsafe(true);
    d.v_mut().failsafe_streak += 1;
}

/// A #PF at `cr2` with `error_code`, as if the guest's own access had
/// faulted (an emulated store that its page tables refuse).
pub fn inject_page_fault(d: &mut Domain, f: &mut TrapFrame, cr2: u64, error_code: u64) {
    d.v_mut().cr2 = cr2;
    set_vcpu_cr2(d, cr2);
    inject(d, f, VEC_PF, Some(error_code));
}

/// Deliver exception `vector` through the guest's trap table.
// Tour 03, 08: an exception meets the trap table
pub fn inject(d: &mut Domain, f: &mut TrapFrame, vector: u8, error_code: Option<u64>) {
    let t = d.v().trap_table[vector as usize];
    if t.address == 0 {
        return no_handler(d, f, vector, error_code);
    }
    let b = Bounce {
        what: match vector {
            0x80 => "int 0x80",
            32.. => "software interrupt",
            _ => exception_name(vector as u64),
        },
        vector: Some(vector),
        error_code,
        handler: t.address,
        cs: t.cs,
        mask_events: t.flags & TI_IF != 0,
    };
    deliver(d, f, b);
}

/// No trap-table handler for `vector`: the domain is crashed, saying so.
#[cold]
#[inline(never)]
fn no_handler(d: &mut Domain, f: &TrapFrame, vector: u8, error_code: Option<u64>) {
    let ec = error_code.map_or(alloc::string::String::new(), |e| {
        format!(" error code {e:#x}")
    });
    sched::crash(
        d,
        format!(
            "{} (vector {vector}){ec} at rip {:#x} cs {:#x}, and no trap-table handler for it",
            exception_name(vector as u64),
            f.rip,
            f.cs
        ),
    );
}

/// `syscall` from guest user mode: to the kernel's syscall callback
/// (syscall32 from 32-bit user code), frame without error code.
// Tour 06: a user `syscall` goes to the guest kernel
pub fn syscall_from_user(d: &mut Domain, f: &mut TrapFrame, compat: bool) {
    let cb = if compat {
        d.v().syscall32
    } else {
        d.v().syscall
    };
    if cb.address == 0 {
        // No callback: as if syscall were disabled (EFER.SCE clear): #UD.
        inject(d, f, VEC_UD, None);
        return;
    }
    deliver(
        d,
        f,
        Bounce::to_callback(if compat { "syscall32" } else { "syscall" }, cb),
    );
}

/// Software interrupts (`int n`) from the guest: allowed when the trap
/// entry's DPL is at least the guest's privilege for this check (Xen's
/// permit_softint: its kernel counts as ring 1, its user mode as 3), else
/// #GP with error code (n << 3) | 2 at the instruction. Software
/// interrupts are traps: rip already points past the instruction.
// Tour 03: `int n` against the entry's DPL
fn soft_interrupt(d: &mut Domain, f: &mut TrapFrame, vector: u8, insn_len: u64) {
    let dpl = d.v().trap_table[vector as usize].flags & 3;
    let cpl = if d.v().kernel_mode() { 1 } else { 3 };
    if dpl < cpl {
        f.rip -= insn_len;
        inject(d, f, VEC_GP, Some((vector as u64) << 3 | 2));
    } else {
        inject(d, f, vector, None);
    }
}

/// `sysenter` from the guest's 32-bit user mode (#GP or #UD here: the
/// hypervisor leaves the SYSENTER MSRs unset) goes to the sysenter
/// callback. The CPU would not save the user rip/rsp; our frame carries
/// them anyway (rip past the instruction), a superset of what the guest's
/// handler expects.
// Tour 06: `sysenter` from 32-bit user code
fn sysenter_from_user(d: &mut Domain, f: &mut TrapFrame) -> bool {
    let cb = d.v().sysenter;
    // A 32-bit guest's mode is its ring (Width::interrupted_user).
    let user = d.width().interrupted_user(d.v().kernel_mode(), f.cs);
    if !user || cb.address == 0 {
        return false;
    }
    let mut insn = [0u8; 2];
    if fetch(d, f.rip, &mut insn) != 2 || insn != [0x0f, 0x34] {
        return false;
    }
    if d.is_32bit() {
        // Xen's sysenter_entry/compat_sysenter: sysenter saves nothing, so
        // the frame says so: eip 0, a null ring-3 cs, esp 0 on the flat
        // user ss (the handler finds its way back in registers, as the
        // sysenter convention has it). A callback with a null selector
        // gets the #GP handler's.
        (f.rip, f.cs, f.rsp, f.ss) = (0, 3, 0, ringvisor_abi::x86_32::FLAT_RING3_SS as u64);
        let mut b = Bounce::to_callback("sysenter", cb);
        if cb.cs & !3 == 0 {
            b.cs = d.v().trap_table[VEC_GP as usize].cs;
        }
        deliver(d, f, b);
        return true;
    }
    f.rip += 2;
    deliver(d, f, Bounce::to_callback("sysenter", cb));
    true
}

/// The instruction bytes at `rip` in the guest's current address space.
pub fn fetch(d: &Domain, rip: u64, buf: &mut [u8]) -> usize {
    // Readable or not is a property of the page: the bytes on rip's page
    // in one read (one walk of the guest's tables, not one per byte), then
    // those on the next page, if any, in another.
    let space = d.v().space();
    let first = (4096 - (rip & 0xfff) as usize).min(buf.len());
    if space.read_bytes(rip, &mut buf[..first]).is_err() {
        return 0;
    }
    if first < buf.len()
        && space
            .read_bytes(rip.wrapping_add(first as u64), &mut buf[first..])
            .is_err()
    {
        return first;
    }
    buf.len()
}

/// An exception or interrupt vector taken while the guest ran.
// Tour 04: what each vector means for the guest
pub fn guest_exception(d: &mut Domain, ft: &crate::mm::frametable::FrameTable, f: &mut TrapFrame) {
    let vector = f.vector as u8;
    match vector {
        VEC_PF => {
            let cr2 = crate::arch::x86_64::cr::cr2();
            d.v_mut().cr2 = cr2;
            set_vcpu_cr2(d, cr2);
            // A direct write to one of its own page tables, with writable
            // page tables on: applied (checked) and stepped over.
            let ptwr_on =
                d.vm_assist & (1 << ringvisor_abi::xen::VMASST_TYPE_WRITABLE_PAGETABLES) != 0;
            if ptwr_on && f.error_code & 3 == 3 && d.v().kernel_mode() {
                let mut insn = [0u8; 15];
                let n = fetch(d, f.rip, &mut insn);
                if crate::pv::mm::ptwr(d, ft, f, cr2, &insn[..n]) {
                    crate::trace!(
                        crate::trace::TRACE_EMULATE,
                        "d{} emulate page-table write at {cr2:#x}",
                        d.id
                    );
                    return;
                }
            }
            // The CPU saw a ring-3 access either way; the guest must see
            // "user" only for its user mode (Xen does the same).
            // (A 32-bit kernel really is in ring 1: the CPU's bit is right.)
            let ec = if d.is_32bit() {
                f.error_code
            } else if d.v().kernel_mode() {
                f.error_code & !4
            } else {
                f.error_code | 4
            };
            inject(d, f, VEC_PF, Some(ec));
        }
        VEC_GP | VEC_UD if sysenter_from_user(d, f) => {}
        VEC_GP => {
            let mut insn = [0u8; 16];
            let n = fetch(d, f.rip, &mut insn);
            // `int n` through a gate whose DPL is 0 (all but 3, 4, 0x80):
            // decode the vector from the instruction, not from the error
            // code (QEMU's TCG reports (n << 4) | 2 in long mode).
            if n >= 2 && insn[0] == 0xcd && f.error_code & 3 == 2 {
                f.rip += 2;
                soft_interrupt(d, f, insn[1], 2);
            } else if !emulate::privileged(d, ft, f, &insn[..n]) {
                inject(d, f, VEC_GP, Some(f.error_code));
            }
        }
        VEC_UD => {
            let mut insn = [0u8; 8];
            let n = fetch(d, f.rip, &mut insn);
            if !emulate::forced(d, f, &insn[..n]) {
                inject(d, f, VEC_UD, None);
            }
        }
        VEC_NM => {
            // fpu_taskswitch set the virtual TS: the guest's next FPU
            // instruction lands here; clear TS and let its handler run.
            d.v_mut().cr0_ts = false;
            crate::arch::x86_64::cr::clts();
            inject(d, f, VEC_NM, None);
        }
        // int3 (and `int $3`, `int $4`) reach us through DPL-3 gates and
        // are delivered like the CPU's own #BP/#OF whatever the trap
        // entry's DPL, as Xen does (do_int3).
        VEC_BP | VEC_OF => inject(d, f, vector, None),
        // A breakpoint or single step in the guest: DR6 as the guest
        // should see it (arch debugreg.rs left the hardware's, with
        // positive polarity, in the error code), then its handler.
        VEC_DB => {
            crate::pv::debugreg::merge_dr6(d, f.error_code);
            inject(d, f, VEC_DB, None);
        }
        0x80 => soft_interrupt(d, f, 0x80, 2),
        // A physical NMI or machine check is the hypervisor's business.
        2 | 18 => crate::arch::x86_64::idt::fatal(f, "NMI/machine check while a guest ran"),
        0..=31 => {
            let ec = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30).then_some(f.error_code);
            inject(d, f, vector, ec);
        }
        _ => crate::warn!(
            "d{}: unexpected interrupt vector {vector:#x} from guest; ignored",
            d.id
        ),
    }
}
