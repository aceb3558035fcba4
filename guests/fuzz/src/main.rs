//! `guest-fuzz`: a 64-bit PV guest that throws random hypercalls,
//! exceptions, `int $n` and `HYPERVISOR_iret` frames at the hypervisor,
//! reproducibly from a seed (the generator is `pvguest_common::fuzz`,
//! shared with `guest32-fuzz`; docs/fuzzing.md says what is drawn).
//!
//! Command line: `seed=S iters=N [progress=P] [log=K] [exclude=a,b|none]
//! [victim=D port=P]`. With `victim=`, it first binds to the victim's port
//! for it (so that it starts once the victim is filled), then runs.
//!
//! Every step runs inside `traps::catch`: a fault unwinds back to the
//! loop; afterwards whatever the step may have changed of the guest's own
//! set-up (trap table, callbacks, kernel stack, virtual CR0.TS) is put
//! back. The guest may still break itself (a page table update that
//! unmaps its own code, say) and be crashed: that is allowed, the
//! hypervisor must only survive it.
//!
//! Output: `FUZZ: start ...`, `FUZZ: iter=I last=CALL` every `progress`
//! steps, `FUZZ: call CALL` before each step from step `log` on, `FUZZ:
//! done iters=N`, then `RESULT: SUCCESS`. A trap outside a step prints
//! `FUZZ: unexpected ...` and the last steps (`FUZZ: recent CALL`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use core::arch::asm;
use pvguest::abi::{self, StartInfo};
use pvguest::cell::{GuestCell, Stack};
use pvguest::events as ev;
use pvguest::hypercall as hc;
use pvguest::println;
use pvguest::start_info;
use pvguest::traps::{self, Action, Trap, TrapFrame};
use pvguest_common::fuzz::{self, Call, Env, Exc, ExclNames, Fixup, Ring, Rng, Step};

pvguest::guest_main!("fuzz", run);

/// Two pages: hypercall arguments point here (and across the boundary).
static SCRATCH: Stack<8192> = Stack::new();
/// The stack an iret frame lands on when it does not name one.
static LANDING_STACK: Stack<16384> = Stack::new();

static IN_STEP: GuestCell<bool> = GuestCell::new(false);
static RING: GuestCell<Ring<16>> = GuestCell::new(Ring::new());
static TIMER_PORT: GuestCell<u32> = GuestCell::new(0);
/// Traps taken during the current step: a step that keeps faulting (the
/// guest unmapped its own code or stack, say) ends the guest.
static STEP_TRAPS: GuestCell<u32> = GuestCell::new(0);
const MAX_STEP_TRAPS: u32 = 256;

/// Copies the step's words into the scratch pages. A step may have left
/// them read-only or unmapped (a page-table update, a GDT): map them back
/// read-write and try once more; if that is refused too, the step runs
/// with what is there.
fn fill_scratch(words: &[u64; 1024], scratch: u64, mfns: &[u64; 2]) {
    // SAFETY: the scratch pages are ours and nothing else uses them; a
    // fault unwinds to the catch.
    let copy = || unsafe {
        core::ptr::copy_nonoverlapping(words.as_ptr(), scratch as *mut u64, words.len())
    };
    if traps::catch(copy).is_ok() {
        return;
    }
    for (i, mfn) in mfns.iter().enumerate() {
        let pte = (mfn << 12) | 0x67; // P RW US A D
                                      // SAFETY: our own scratch frames, mapped where they belong.
        unsafe { hc::update_va_mapping(scratch + i as u64 * 4096, pte, abi::UVMF_INVLPG) };
    }
    let _ = traps::catch(copy);
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    // `int $n; ret` for every n, 8 bytes apart.
    ".balign 8",
    ".globl fuzz_int_table",
    "fuzz_int_table:",
    ".set fuzz_n, 0",
    ".rept 256",
    ".balign 8",
    ".byte 0xcd, fuzz_n",
    "ret",
    ".set fuzz_n, fuzz_n + 1",
    ".endr",
    // Where an iret frame without an rip of its own goes: fault at once.
    ".globl fuzz_landing",
    "fuzz_landing:",
    "ud2",
    "jmp fuzz_landing",
);

extern "C" {
    fn fuzz_int_table();
    fn fuzz_landing();
}

fn run(si: &StartInfo) {
    let line = core::str::from_utf8(start_info::cmd_line(si)).unwrap_or("");
    let o = match fuzz::options(line) {
        Ok(o) => o,
        Err(w) => pvguest::report::error(format_args!("bad command line word {w:?}")),
    };
    setup();
    protect_image();
    if let Err((what, rc)) = traps::setup_user_mode() {
        pvguest::report::error(format_args!("{what} = {rc}"));
    }
    match ev::bind_virq(abi::VIRQ_TIMER, 0) {
        Ok(p) => TIMER_PORT.set(p),
        Err(rc) => pvguest::report::error(format_args!("bind_virq(VIRQ_TIMER) = {rc}")),
    }
    link_victim();
    match watchdog(0, WATCHDOG_S) {
        id @ 1.. => WATCHDOG_ID.set(id as u32),
        rc => pvguest::report::error(format_args!("SCHEDOP_watchdog = {rc}")),
    }

    // What the generator may name.
    let l4 = si.pt_base;
    let pt_mfns: [u64; 8] = core::array::from_fn(|i| {
        start_info::virt_to_mfn(l4 + (i as u64 % si.nr_pt_frames.max(1)) * 4096).unwrap_or(0)
    });
    let scratch = SCRATCH.bottom();
    IMAGE_END.set(pvguest::VIRT_BASE + si.nr_pages * 4096);
    let s_mfn = [
        start_info::virt_to_mfn(scratch).unwrap_or(0),
        start_info::virt_to_mfn(scratch + 4096).unwrap_or(0),
    ];
    let own = [
        l4,
        l4 + 4096,
        l4 + 8192,
        si as *const StartInfo as u64,
        start_info::SHARED_INFO.addr(),
        hc::page_addr(),
        pvguest::VIRT_BASE,
        traps::KERNEL_STACK.bottom(),
        si.mfn_list,
        LANDING_STACK.bottom(),
    ];
    let maddrs = [
        pt_mfns[0] << 12,
        pt_mfns[1] << 12,
        pt_mfns[2] << 12,
        pt_mfns[3] << 12,
        s_mfn[0] << 12,
        s_mfn[1] << 12,
    ];
    let mfns = [
        pt_mfns[0],
        pt_mfns[1],
        pt_mfns[2],
        s_mfn[0],
        s_mfn[1],
        si.shared_info >> 12,
        0x100,
        0xfffff,
        0,
        1,
    ];
    let hv = [
        0xffff_8000_0000_0000,
        0xffff_8300_0000_0000,
        0xffff_82d0_8010_0000,
        0xffff_8040_0000_0000,
        0xffff_87ff_ffff_f000,
    ];
    let bad = [
        0x8000_0000_0000_0000,
        0x0000_8000_0000_0000,
        0x0000_7fff_ffff_f000,
        0xffff_7fff_ffff_f000,
    ];
    let env = Env {
        width: 64,
        scratch,
        own: &own,
        maddrs: &maddrs,
        mfns: &mfns,
        hv: &hv,
        bad: &bad,
        last_page: 0xffff_ffff_ffff_f000,
        exclude: o.exclude,
    };
    println!(
        "FUZZ: start width=64 seed={} iters={} exclude={}",
        o.seed,
        o.iters,
        ExclNames(o.exclude)
    );

    let mut rng = Rng::new(o.seed);
    let mut words = [0u64; 1024];
    for i in 0..o.iters {
        let call = fuzz::next(&mut rng, &env, i, &mut words);
        if i >= o.log_from {
            println!("FUZZ: call {call}");
        }
        // SAFETY: RING is only touched here and by the trap handler, which
        // only reads it outside a step.
        unsafe { (*RING.as_ptr()).push(call) };
        IN_STEP.set(true);
        STEP_TRAPS.set(0);
        fill_scratch(&words, scratch, &s_mfn);
        // User-mode steps: run_user is a catch of its own.
        let _ = match call.step {
            Step::Int { vector, user: true } => traps::run_user(|| call_addr(int_stub(vector))),
            Step::Exception {
                exc,
                user: true,
                arg,
                arg2,
            } => traps::run_user(|| exception(exc, arg, arg2, scratch, true)),
            _ => traps::catch(|| step(&call, scratch)),
        };
        IN_STEP.set(false);
        after(&call);
        if (i + 1) % o.progress == 0 {
            println!("FUZZ: iter={} last={call}", i + 1);
            watchdog(WATCHDOG_ID.get(), WATCHDOG_S);
        }
    }
    println!("FUZZ: done iters={}", o.iters);
    if let Some(p) = VICTIM_PORT.get() {
        ev::send(p);
    }
}

static IMAGE_END: GuestCell<u64> = GuestCell::new(0);

/// The domain watchdog (SCHEDOP_watchdog) this guest keeps armed: a
/// guest that wrecks itself into a loop (its stack or handlers made
/// useless by its own calls) is ended by the hypervisor instead of
/// spinning until the campaign's timeout calls it a hang.
static WATCHDOG_ID: GuestCell<u32> = GuestCell::new(0);
const WATCHDOG_S: u32 = 10;

/// `SCHEDOP_watchdog(id, timeout)`: the id (new one for id 0) or an error.
fn watchdog(id: u32, timeout: u32) -> i64 {
    let w = abi::SchedWatchdog { id, timeout };
    // SAFETY: the hypervisor only reads the struct.
    unsafe {
        hc::hypercall5(
            abi::HYPERVISOR_SCHED_OP,
            abi::SCHEDOP_WATCHDOG as u64,
            &w as *const _ as u64,
            0,
            0,
            0,
        )
    }
}
static VICTIM_PORT: GuestCell<Option<u32>> = GuestCell::new(None);

/// Binds to the victim's port for us, retrying while it fills its memory.
fn link_victim() {
    let Some(victim) = start_info::arg_u32("victim") else {
        return;
    };
    let port = start_info::arg_u32("port").unwrap_or(1);
    let deadline = pvguest::time::now_ns() + 30_000_000_000;
    loop {
        match ev::bind_interdomain(victim as u16, port) {
            Ok(local) => {
                println!("FUZZ: linked to the victim d{victim} port {port}");
                VICTIM_PORT.set(Some(local));
                return;
            }
            Err(_) if pvguest::time::now_ns() < deadline => {
                ev::yield_now();
            }
            Err(rc) => pvguest::report::error(format_args!("bind to the victim's port = {rc}")),
        }
    }
}

/// Map our code, hypercall page and read-only data read-only: calls the
/// generator points into our own image then fail (-EFAULT) instead of
/// overwriting the code that runs next (a fuzz guest that wrecks itself
/// only loops, which tells nothing about the hypervisor).
fn protect_image() {
    extern "C" {
        static __image_start: u8;
        static __data_start: u8;
    }
    // SAFETY: linker symbols: only their addresses are used.
    let (start, end) = (
        core::ptr::addr_of!(__image_start) as u64,
        core::ptr::addr_of!(__data_start) as u64,
    );
    let mut va = start;
    while va < end {
        if let Some(mfn) = start_info::virt_to_mfn(va) {
            // SAFETY: the same frame, read-only: nothing of ours writes there.
            let rc = unsafe { hc::update_va_mapping(va, mfn << 12 | 1 | 1 << 5, abi::UVMF_INVLPG) };
            if rc != 0 {
                pvguest::report::error(format_args!("remap {va:#x} read-only = {rc}"));
            }
        }
        va += 4096;
    }
}

/// The guest's own set-up: trap table, callbacks, handlers.
fn setup() {
    traps::install_default_trap_table();
    for t in [
        abi::CALLBACKTYPE_EVENT,
        abi::CALLBACKTYPE_FAILSAFE,
        abi::CALLBACKTYPE_SYSCALL,
    ] {
        let rc = traps::register_callback(t, 0);
        if rc != 0 {
            pvguest::report::error(format_args!("register_callback({t}) = {rc}"));
        }
    }
    for v in (0..32).chain([
        traps::VEC_INT80,
        traps::VEC_SOFTINT,
        traps::VEC_FAILSAFE,
        traps::VEC_SYSCALL,
    ]) {
        traps::set_handler(v, Some(handler));
    }
}

/// Puts back what a step may have changed.
fn restore() {
    setup();
    // SAFETY: the runtime's kernel stack, used only for bounces from user
    // mode.
    unsafe { hc::stack_switch(abi::FLAT_KERNEL_SS.into(), traps::KERNEL_STACK.top()) };
    hc::fpu_taskswitch(0);
}

fn after(call: &Call) {
    let touched = match call.step {
        Step::Hypercall { op, .. } => matches!(op, 0 | 2..=5 | 21 | 25 | 26 | 30) || op >= 64,
        Step::Exception { exc, .. } => matches!(exc, Exc::Wrmsr | Exc::WriteCr | Exc::Syscall),
        Step::Iret { .. } => true,
        Step::Int { .. } => false,
    };
    if touched {
        restore();
    }
}

/// Every vector: inside a step the runtime's choice (faults unwind to the
/// catch), except #DB, which also clears TF; outside a step a trap is
/// unexpected: print the last steps and stop.
fn handler(frame: &mut TrapFrame, t: &Trap) -> Action {
    STEP_TRAPS.set(STEP_TRAPS.get() + 1);
    if !IN_STEP.get() || STEP_TRAPS.get() > MAX_STEP_TRAPS {
        let why = if IN_STEP.get() {
            "the step keeps trapping"
        } else {
            "a trap outside a step"
        };
        println!("FUZZ: unexpected: {why}: {t}");
        // SAFETY: the loop is not running (we interrupted it outside a step).
        unsafe { (*RING.as_ptr()).each(|c| println!("FUZZ: recent {c}")) };
        return Action::Fatal;
    }
    match t.vector {
        1 => {
            frame.rflags &= !(1 << 8);
            Action::Unwind
        }
        traps::VEC_SYSCALL | 3 | 4 | traps::VEC_INT80 | traps::VEC_SOFTINT => {
            traps::default_action(frame, t)
        }
        _ => Action::Unwind,
    }
}

fn step(call: &Call, scratch: u64) {
    match call.step {
        Step::Hypercall { op, args, fixup } => {
            match fixup {
                Fixup::None => {}
                Fixup::Block => arm_timer(),
                Fixup::Poll => {
                    arm_timer();
                    // SAFETY: the scratch page is ours: the timeout field of
                    // the sched_poll there.
                    unsafe {
                        ((scratch + 16) as *mut u64)
                            .write_volatile(pvguest::time::now_ns() + 1_000_000)
                    };
                }
            }
            let mut args = args;
            // update_va_mapping of our own image (but for the scratch
            // pages) would unmap the guest under its feet: aim it at the
            // same offset in an unmapped region instead.
            if op == 14
                && (pvguest::VIRT_BASE..IMAGE_END.get()).contains(&args[0])
                && !(scratch..scratch + 8192).contains(&args[0])
            {
                args[0] = 0xffff_ffff_c000_0000 | (args[0] & 0x3fff_ffff);
            }
            // SAFETY: this is the fuzzer: the hypervisor must cope with any
            // arguments; whatever happens to this guest is caught or ends it.
            unsafe {
                if op < 128 {
                    hc::hypercall5(op, args[0], args[1], args[2], args[3], args[4]);
                } else {
                    raw_hypercall(op as u64, &args);
                }
            }
        }
        Step::Int { vector, .. } => call_addr(int_stub(vector)),
        Step::Exception { exc, arg, arg2, .. } => exception(exc, arg, arg2, scratch, false),
        Step::Iret {
            flags,
            rip,
            cs,
            rflags,
            sp,
            ss,
        } => {
            let frame = hc::IretFrame {
                flags,
                rip: if rip == 0 {
                    fuzz_landing as *const () as u64
                } else {
                    rip
                },
                cs,
                rflags,
                rsp: if sp == 0 {
                    LANDING_STACK.top() - 64
                } else {
                    sp
                },
                ss,
            };
            // SAFETY: the fuzzer; this frame is abandoned and the landing
            // pad faults back to the catch.
            unsafe { hc::iret(&frame, 0, 0) }
        }
    }
}

/// Makes sure a blocked or polling vCPU wakes up: `VIRQ_TIMER` bound (a
/// step may have closed it), its port unmasked, a timer 1 ms from now.
fn arm_timer() {
    let p = TIMER_PORT.get();
    let bound = matches!(ev::status(abi::DOMID_SELF, p), Ok(s) if s.status == abi::EVTCHNSTAT_VIRQ);
    if !bound {
        if let Ok(p) = ev::bind_virq(abi::VIRQ_TIMER, 0) {
            TIMER_PORT.set(p);
        }
    }
    ev::clear_mask_bit(TIMER_PORT.get());
    hc::set_timer_op(pvguest::time::now_ns() + 1_000_000);
}

/// The `int $vector; ret` stub.
fn int_stub(vector: u8) -> u64 {
    fuzz_int_table as *const () as u64 + u64::from(vector) * 8
}

fn call_addr(f: u64) {
    // SAFETY: `f` is an `int $n; ret` stub; a handler that resumes keeps
    // every register.
    unsafe { asm!("call {0}", in(reg) f, clobber_abi("C")) }
}

/// A hypercall number past the hypercall page: `syscall` with it in %rax.
unsafe fn raw_hypercall(op: u64, a: &[u64; 6]) {
    // SAFETY: the caller's (the fuzzer's).
    unsafe {
        asm!(
            "syscall",
            inout("rax") op => _,
            inout("rdi") a[0] => _,
            inout("rsi") a[1] => _,
            inout("rdx") a[2] => _,
            inout("r10") a[3] => _,
            inout("r8") a[4] => _,
            inout("r9") a[5] => _,
            out("rcx") _,
            out("r11") _,
        )
    }
}

#[inline(never)]
fn exception(exc: Exc, arg: u64, arg2: u64, scratch: u64, user: bool) {
    // SAFETY: each instruction either faults (and the catch takes over) or
    // has an effect the hypervisor must refuse or contain; writes go only
    // to addresses that are not ours (fuzz::next sees to it) or to the
    // scratch pages; flags and segments are put back right after.
    unsafe {
        match exc {
            Exc::Ud2 => asm!("ud2"),
            Exc::Int3 => asm!("int3"),
            Exc::Div0 => {
                asm!("div {0:e}", in(reg) 0u32, inout("eax") 1u32 => _, inout("edx") 0u32 => _)
            }
            Exc::Read => asm!("mov {0}, [{1}]", out(reg) _, in(reg) arg),
            Exc::Write => asm!("mov [{0}], {1}", in(reg) arg, in(reg) arg2),
            Exc::CliSti => {
                if arg & 1 == 0 {
                    asm!("cli")
                } else {
                    asm!("sti")
                }
            }
            Exc::Io => {
                if arg & 0x10000 == 0 {
                    asm!("in al, dx", in("dx") arg as u16, out("al") _)
                } else {
                    asm!("out dx, al", in("dx") arg as u16, in("al") arg2 as u8)
                }
            }
            Exc::Rdmsr => asm!("rdmsr", in("ecx") arg as u32, out("eax") _, out("edx") _),
            Exc::Wrmsr => {
                asm!("wrmsr", in("ecx") arg as u32, in("eax") arg2 as u32, in("edx") (arg2 >> 32) as u32)
            }
            Exc::ReadCr => match arg % 5 {
                0 => asm!("mov {0}, cr0", out(reg) _),
                1 => asm!("mov {0}, cr2", out(reg) _),
                2 => asm!("mov {0}, cr3", out(reg) _),
                3 => asm!("mov {0}, cr4", out(reg) _),
                _ => asm!("mov {0}, cr8", out(reg) _),
            },
            Exc::WriteCr => match arg % 3 {
                0 => asm!("mov cr0, {0}", in(reg) arg2),
                1 => asm!("mov cr3, {0}", in(reg) arg2),
                _ => asm!("mov cr4, {0}", in(reg) arg2),
            },
            Exc::Popf => asm!("pushfq", "push {0}", "popfq", "nop", "popfq", in(reg) arg2),
            Exc::LoadSeg => match arg2 % 4 {
                0 => {
                    asm!("mov {s:x}, ds", "mov ds, {v:x}", "mov ds, {s:x}", v = in(reg) arg, s = out(reg) _)
                }
                1 => {
                    asm!("mov {s:x}, es", "mov es, {v:x}", "mov es, {s:x}", v = in(reg) arg, s = out(reg) _)
                }
                2 => {
                    asm!("mov {s:x}, fs", "mov fs, {v:x}", "mov fs, {s:x}", v = in(reg) arg, s = out(reg) _)
                }
                _ => {
                    asm!("mov {s:x}, gs", "mov gs, {v:x}", "mov gs, {s:x}", v = in(reg) arg, s = out(reg) _)
                }
            },
            Exc::Syscall => {
                // From the guest kernel `syscall` is a hypercall: keep it to
                // numbers past the implemented ones (those are drawn as
                // hypercalls, with their guards).
                let nr = if user || arg >= 64 { arg } else { arg + 64 };
                asm!("syscall", inout("rax") nr => _, inout("rdi") arg2 => _, inout("rsi") scratch => _,
                     out("rcx") _, out("r11") _, out("rdx") _, out("r10") _, out("r8") _, out("r9") _)
            }
            Exc::Descriptor => match arg2 % 5 {
                0 => asm!("sgdt [{0}]", in(reg) scratch),
                1 => asm!("sidt [{0}]", in(reg) scratch),
                2 => asm!("lgdt [{0}]", in(reg) scratch),
                3 => asm!("ltr {0:x}", in(reg) arg),
                _ => asm!("lldt {0:x}", in(reg) arg),
            },
        }
    }
}
