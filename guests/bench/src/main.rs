//! `guest-bench`: what each PV path costs, timed from inside an ordinary
//! Xen PV guest (it runs on any Xen-compatible hypervisor). `cargo xtask
//! bench` boots it beside the hypervisor's own baseline (`bench` on the
//! hypervisor command line) and divides; docs/benchmarks.md reads the
//! numbers.
//!
//! Every iteration is timed on its own, exactly as the hypervisor times
//! its baseline: `lfence; rdtsc; lfence`, the path, `lfence; rdtsc`. The
//! window holds the guest's whole side of the path: the call into the
//! hypercall page (or the faulting instruction), the hypervisor, and for
//! bounces the guest's handler and its `HYPERVISOR_iret`. The handlers are
//! minimal asm (`entry` below), not the runtime's recording ones, so the
//! figures are the hypervisor's and the ABI's, not pvguest's. The cases
//! run interleaved, round by round; the `loop` case (timing nothing) is
//! subtracted from the others.
//!
//! Cases (one `BENCH: <name> median <ticks> spread <p10>..<p90> n=<N>`
//! line each, then `RESULT: SUCCESS`):
//! - `loop`: the timing alone (printed raw; subtracted from the rest).
//! - `null-hypercall`: `xen_version(XENVER_version)`.
//! - `console-io-64`: `console_io(CONSOLEIO_write)` of one 64-byte line.
//! - `int3-bounce`: `int3` → the guest's #BP handler → `HYPERVISOR_iret`
//!   → the next instruction.
//! - `pf-bounce`: a load from an unmapped page → the guest's #PF handler,
//!   which steps over the load → `HYPERVISOR_iret`.
//! - `user-syscall`: in guest user mode, `syscall` → the guest kernel's
//!   syscall callback → `HYPERVISOR_iret` with `VGCF_in_syscall`.
//! - `set-trap-table-32`: `set_trap_table` with 32 entries (vectors 0-31).
//! - `mmu-update-1`: `mmu_update` of one L1 entry (`MMU_NORMAL_PT_UPDATE`),
//!   mapping a scratch page alternately to two frames of the guest's.
//! - `update-va-mapping`: the same change through `update_va_mapping`
//!   with `UVMF_INVLPG`.
//! - `event-send-upcall`: `EVTCHNOP_send` on an IPI port of this vCPU
//!   (`EVTCHNOP_bind_ipi`), events unmasked: the hypercall returns through
//!   the event callback, whose handler clears the port's pending bits,
//!   counts the upcall and returns with `HYPERVISOR_iret`. Every send must
//!   have produced exactly one upcall.
//! - `enosys-hypercall`: hypercall 55 (`arch_7`, unused on Xen and
//!   ringvisor alike), which answers `-ENOSYS` (checked untimed).
//! - `console-io-0`: `console_io(CONSOLEIO_write)` of 0 bytes.
//! - `ud2-bounce`: `ud2` → the guest's #UD handler, which steps over it
//!   → `HYPERVISOR_iret`.
//! - `cpuid-emul`: the forced-emulation `cpuid` (`ud2a; .ascii "xen";
//!   cpuid`, leaf 0), emulated by the hypervisor (the window also holds
//!   the `push`/`pop` of rbx and the two zeroings of eax and ecx).
//! - `update-va-mapping-same`: `update_va_mapping(..., UVMF_INVLPG)` that
//!   writes the entry the scratch page already has.
//! - `mmu-update-same`: `mmu_update` of one L1 entry to the value it
//!   already has.
//!
//! - `event-ping-pong` (with a second domain, see below): `EVTCHNOP_send`
//!   on an interdomain channel, then `sched_op(poll)` on the same port
//!   until the other domain's answer is pending: d0 → d1 (woken from its
//!   own poll, it sends back and polls again) → d0. Each answer must have
//!   arrived on that port (its pending bit), else the row is an error.
//! - `domain-switch` (same): `sched_op(yield)` while the other domain
//!   yields in a loop: d0 → d1 → d0, two domain switches per figure, plus
//!   the one `EVTCHNOP_send` d1 makes each time round (its proof that it
//!   ran: the port must be pending after every yield recorded; a yield
//!   without it is retried, not recorded (the echo domain had been
//!   preempted between its send and its yield), two in a row are an
//!   error).
//!
//! The two-domain cases need the same image booted as another domain with
//! `role=echo peer=0`, and `peer=D` on this one's command line (D: that
//! domain's id). Without `peer=` (real Xen boots dom0 alone) they print
//! `BENCH: <name> not measured (no second domain)`. They run first, in
//! their own interleaved rounds, and the echo domain shuts down before the
//! other cases start (it does not share the CPU with them). Protocol: we
//! allocate three ports for the echo domain, first of all (so they are
//! `port=P`, default 1, and the next two; the echo domain, given the same
//! `port=`, binds to them by number and says so on the second): ping,
//! control (switch between the two cases; acknowledged on it) and stop
//! (acknowledged on it, then the echo domain powers off). All
//! ports are masked and events stay masked: only pending bits and
//! `sched_op(poll)`, no upcalls. Every wait is bounded (5 s of system
//! time; the echo domain waits 60 s for the first contact and yields for
//! at most 30 s).
//!
//! Also `BENCH: first-line tsc=<T>`: the TSC right after the guest's first
//! console line (`TEST: bench`) was written.
//!
//! Guest command line: `n=N` iterations per case (default 20000, at most
//! 20000), `rounds=R` (default 10), `console=N` iterations of the console
//! case (default 500: each one prints a line), `peer=D` and `port=P` (the
//! two-domain cases), `role=echo` (be the other domain of those),
//! `mode=smp` (only the multi-CPU rows, `smp.rs`: 4 vCPUs; `calls=N`
//! hypercalls per vCPU per round there, default 50000).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use core::arch::asm;

use pvguest::abi::{self, StartInfo, TrapInfo};
use pvguest::cell::{GuestCell, Page};
use pvguest::events as ev;
use pvguest::hypercall::{self as hc, stub_addr};
use pvguest::report::{self, check, check_eq, check_rc, fail, info, pass};
use pvguest::time::{now_ns, MS};
use pvguest::{println, start_info, traps};

pvguest::guest_main!("bench", run);

mod smp;

/// Samples kept per case.
const MAX_N: usize = 20_000;

const CASES: [&str; 18] = [
    "loop",
    "null-hypercall",
    "console-io-64",
    "int3-bounce",
    "pf-bounce",
    "user-syscall",
    "set-trap-table-32",
    "mmu-update-1",
    "update-va-mapping",
    "event-send-upcall",
    "event-ping-pong",
    "domain-switch",
    "enosys-hypercall",
    "console-io-0",
    "ud2-bounce",
    "cpuid-emul",
    "update-va-mapping-same",
    "mmu-update-same",
];
const LOOP: usize = 0;
const NULL: usize = 1;
const CONSOLE: usize = 2;
const INT3: usize = 3;
const PF: usize = 4;
const USER_SYSCALL: usize = 5;
const TRAP_TABLE: usize = 6;
const MMU_UPDATE: usize = 7;
const UVA: usize = 8;
const EVENT: usize = 9;
const PING_PONG: usize = 10;
const SWITCH: usize = 11;
const ENOSYS_CALL: usize = 12;
const CONSOLE0: usize = 13;
const UD2: usize = 14;
const CPUID: usize = 15;
const UVA_SAME: usize = 16;
const MMU_SAME: usize = 17;

/// A hypercall number neither Xen nor ringvisor implements (`arch_7`).
const UNUSED_HYPERCALL: u32 = abi::HYPERVISOR_ARCH_7;

/// Why a case has no figure: `None` (it has one, or was never run), or
/// the message printed instead of it.
static NOT_MEASURED: GuestCell<[Option<&'static str>; CASES.len()]> =
    GuestCell::new([None; CASES.len()]);

fn not_measured(case: usize, why: &'static str) {
    let mut m = NOT_MEASURED.get();
    m[case] = Some(why);
    NOT_MEASURED.set(m);
}

/// One u32 per iteration per case. Written by guest kernel and user mode
/// alike (the user page table is the kernel's, all of it user-accessible).
struct Samples(core::cell::UnsafeCell<[[u32; MAX_N]; CASES.len()]>);
// SAFETY: one vCPU, one thread of control; see `record`.
unsafe impl Sync for Samples {}
static SAMPLES: Samples = Samples(core::cell::UnsafeCell::new([[0; MAX_N]; CASES.len()]));

/// Iterations done so far per case.
static DONE: GuestCell<[usize; CASES.len()]> = GuestCell::new([0; CASES.len()]);

fn record(case: usize, dt: u32) {
    let mut done = DONE.get();
    let i = done[case];
    if i < MAX_N {
        // SAFETY: in bounds; nothing else holds a reference into SAMPLES
        // (every access goes through `record` or `summary`, never at once).
        unsafe { (*SAMPLES.0.get())[case][i] = dt };
        done[case] = i + 1;
        DONE.set(done);
    }
}

/// The scratch page whose mapping the page-table cases change, and the
/// other frame they map there in turn.
static SCRATCH: Page = Page::new();
static OTHER: Page = Page::new();

/// An address no guest maps (the #PF case loads from it).
const UNMAPPED: u64 = 0x0000_0000_dead_b000;

/// The 64-byte console line (63 characters and a newline).
const LINE: &[u8; 64] = b"BENCH-CONSOLE 64-byte console_io write, timed (not a result)...\n";

// The minimal guest handlers. Entered on the frame Xen's 64-bit PV ABI
// defines (lowest address first): rcx, r11, [error code], rip, cs,
// rflags, rsp, ss. Each restores rcx/r11, leaves `flags, rip, cs, rflags,
// rsp, ss` (a partial iret_context) on the stack and jumps to the
// hypercall page's iret stub, which pushes rcx, r11, rax below it.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
    .text
    .balign 16
    .globl bench_int3_entry
bench_int3_entry:               /* #BP is a trap: rip is past the int3 */
    pop %rcx
    pop %r11
    pushq $0                    /* flags */
    jmp hypercall_page + {iret}

    .balign 16
    .globl bench_pf_entry
bench_pf_entry:                 /* #PF is a fault: rip is the load */
    pop %rcx
    pop %r11
    movq $0, (%rsp)             /* the error code's slot becomes flags */
    addq $2, 8(%rsp)            /* step over `mov (%rdi), %al` (8a 07) */
    jmp hypercall_page + {iret}

    .balign 16
    .globl bench_ud_entry
bench_ud_entry:                 /* #UD is a fault: rip is the ud2 */
    pop %rcx
    pop %r11
    addq $2, (%rsp)             /* step over `ud2` (0f 0b) */
    pushq $0                    /* flags */
    jmp hypercall_page + {iret}

    .balign 16
    .globl bench_event_entry
bench_event_entry:              /* no error code; rip is where it came in */
    movb $0, {si}+{upcall_pending}(%rip)
    movq $0, {si}+{pending_sel}(%rip)
    push %rax
    mov {port}(%rip), %eax
    lock btr %rax, {si}+{evtchn_pending}(%rip)
    pop %rax
    incq {upcalls}(%rip)
    pop %rcx
    pop %r11
    pushq $0                    /* flags */
    jmp hypercall_page + {iret}

    .balign 16
    .globl bench_syscall_entry
bench_syscall_entry:            /* rcx/r11 slots: user rip and rflags */
    pop %rcx
    pop %r11
    pushq ${in_syscall}         /* flags: return as sysret would */
    jmp hypercall_page + {iret}
"#,
    iret = const abi::HYPERVISOR_IRET as u64 * abi::HYPERCALL_STUB_SIZE as u64,
    in_syscall = const abi::VGCF_IN_SYSCALL,
    si = sym start_info::SHARED_INFO,
    upcall_pending = const core::mem::offset_of!(abi::VcpuInfo, evtchn_upcall_pending),
    pending_sel = const core::mem::offset_of!(abi::VcpuInfo, evtchn_pending_sel),
    evtchn_pending = const core::mem::offset_of!(abi::SharedInfo, evtchn_pending),
    port = sym EVENT_PORT,
    upcalls = sym UPCALLS,
    options(att_syntax)
);

/// The IPI port the event case sends on (read by `bench_event_entry`),
/// and the upcalls that handler has taken.
static EVENT_PORT: GuestCell<u64> = GuestCell::new(0);
static UPCALLS: GuestCell<u64> = GuestCell::new(0);

extern "C" {
    fn bench_event_entry();
    fn bench_int3_entry();
    fn bench_pf_entry();
    fn bench_ud_entry();
    fn bench_syscall_entry();
}

// ---------------------------------------------------------------------------
// The timed windows. Each asm block is one iteration: rdtsc, the path,
// rdtsc; eax:edx and r8 are the timing's, the rest is the path's.
// ---------------------------------------------------------------------------

macro_rules! timed {
    ($($body:literal),* ; $($operands:tt)*) => {{
        let dt: u32;
        // SAFETY: the caller's path is one the hypervisor completes and
        // returns from (checked untimed first); every register it may
        // change is declared.
        unsafe {
            asm!(
                "lfence",
                "rdtsc",
                "lfence",
                "mov r8d, eax",
                $($body,)*
                "lfence",
                "rdtsc",
                "sub eax, r8d",
                $($operands)*
                out("eax") dt,
                out("edx") _,
                out("r8") _,
            );
        }
        dt
    }};
}

fn time_loop() -> u32 {
    timed!(;)
}

/// A hypercall through the page: rdx (which rdtsc clobbers) is loaded in
/// the window, like any caller would.
fn time_hypercall(op: u32, a1: u64, a2: u64, a3: u64, a4: u64) -> u32 {
    timed!("mov rdx, {a3}", "call {stub}";
        stub = in(reg) stub_addr(op),
        a3 = in(reg) a3,
        inout("rdi") a1 => _,
        inout("rsi") a2 => _,
        inout("r10") a4 => _,
        out("rcx") _, out("r9") _, out("r11") _,
    )
}

fn time_int3() -> u32 {
    timed!("int3"; out("rcx") _, out("r11") _,)
}

fn time_pf(addr: u64) -> u32 {
    timed!(".byte 0x8a, 0x07"; in("rdi") addr, out("rcx") _, out("r11") _,)
}

/// One ping-pong round trip: `EVTCHNOP_send(*send)`, then
/// `sched_op(SCHEDOP_poll, poll)`, both through the hypercall page.
fn time_ping(send: u64, poll: u64) -> u32 {
    timed!(
        "mov edi, {send_cmd}", "mov rsi, {send}", "call {evtchn}",
        "mov edi, {poll_cmd}", "mov rsi, {poll}", "call {sched}";
        send_cmd = const abi::EVTCHNOP_SEND,
        poll_cmd = const abi::SCHEDOP_POLL,
        send = in(reg) send,
        poll = in(reg) poll,
        evtchn = in(reg) stub_addr(abi::HYPERVISOR_EVENT_CHANNEL_OP),
        sched = in(reg) stub_addr(abi::HYPERVISOR_SCHED_OP),
        out("rdi") _, out("rsi") _, out("rcx") _, out("r9") _, out("r10") _, out("r11") _,
    )
}

fn time_ud2() -> u32 {
    timed!("ud2"; out("rcx") _, out("r11") _,)
}

/// The forced-emulation `cpuid` of leaf 0 (rbx is LLVM's: saved around it).
fn time_cpuid() -> u32 {
    timed!("push rbx", "xor eax, eax", "xor ecx, ecx", ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2", "pop rbx";
        out("rcx") _, out("r11") _,)
}

fn time_user_syscall() -> u32 {
    timed!("syscall"; out("rcx") _, out("r11") _,)
}

// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Params {
    n: usize,
    rounds: usize,
    console: usize,
}

fn parse_params(cmdline: &[u8]) -> Params {
    let mut p = Params {
        n: MAX_N,
        rounds: 10,
        console: 500,
    };
    for word in cmdline.split(|&b| b == b' ') {
        let Some(eq) = word.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, v) = (&word[..eq], &word[eq + 1..]);
        let Some(v) = core::str::from_utf8(v)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        else {
            continue;
        };
        match k {
            b"n" => p.n = v.clamp(1, MAX_N),
            b"rounds" => p.rounds = v.max(1),
            b"console" => p.console = v.min(MAX_N),
            _ => {}
        }
    }
    p.rounds = p.rounds.min(p.n);
    p
}

/// Iterations of round `r` of `total` spread over `rounds`.
fn share(total: usize, rounds: usize, r: usize) -> usize {
    total * (r + 1) / rounds - total * r / rounds
}

/// The machine address of the L1 entry mapping `va`, found by walking the
/// start-of-day page tables (all of them lie in
/// `pt_base..pt_base + nr_pt_frames * 4096`, mapped read-only).
fn l1_entry_maddr(si: &StartInfo, va: u64) -> Option<(u64, u64)> {
    let find_va = |mfn: u64| {
        (0..si.nr_pt_frames)
            .map(|k| si.pt_base + k * 4096)
            .find(|&t| start_info::virt_to_mfn(t) == Some(mfn))
    };
    let mut table_va = si.pt_base;
    for level in (1..=4u32).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 511;
        // SAFETY: a page-table page of the bootstrap region, mapped.
        let e = unsafe { ((table_va + index * 8) as *const u64).read_volatile() };
        if level == 1 {
            let mfn = start_info::virt_to_mfn(table_va)?;
            return Some(((mfn << 12) | (index * 8), e));
        }
        if e & start_info::PTE_PRESENT == 0 {
            return None;
        }
        table_va = find_va((e & 0x000f_ffff_ffff_f000) >> 12)?;
    }
    None
}

/// A trap-table entry for one of our handlers, events masked on entry,
/// with the runtime's DPLs: 3 for #BP (`int3` from anywhere), else 0.
fn trap_entry(vector: u8, address: u64) -> TrapInfo {
    let dpl = if vector == 3 { 3 } else { 0 };
    TrapInfo {
        vector,
        flags: abi::TI_IF | dpl,
        cs: abi::FLAT_KERNEL_CS,
        _pad0: 0,
        address,
    }
}

fn run(si: &StartInfo) {
    if start_info::arg("role") == Some("echo") {
        echo();
        return;
    }
    let first_line = rdtsc();
    println!("BENCH: first-line tsc={}", first_line);
    let p = parse_params(start_info::cmd_line(si));
    if start_info::arg("mode") == Some("smp") {
        smp::run(si, p.n, p.rounds);
        return;
    }
    println!(
        "INFO: n={} rounds={} console={}: {} rounds of every case, interleaved",
        p.n, p.rounds, p.console, p.rounds
    );
    match peer_arg() {
        Some(peer) => two_domains(p, peer, start_info::arg_u32("port").unwrap_or(1)),
        None => {
            info(format_args!("no peer=<domid> on the command line: no second domain, two-domain cases not measured"));
            not_measured(PING_PONG, "not measured (no second domain)");
            not_measured(SWITCH, "not measured (no second domain)");
        }
    }

    // Set-up, and each path once untimed: it must work before it is timed.
    traps::install_default_trap_table();
    // SAFETY: the entry point is ours (above).
    let rc = unsafe {
        hc::register_callback(
            abi::CALLBACKTYPE_SYSCALL,
            abi::CALLBACKF_MASK_EVENTS,
            bench_syscall_entry as *const () as u64,
        )
    };
    if rc != 0 {
        report::error(format_args!(
            "callback_op(register syscall) = {}",
            report::Rc(rc)
        ));
    }
    if let Err((what, rc)) = traps::setup_user_mode() {
        report::error(format_args!("{what} = {}", report::Rc(rc)));
    }
    let defaults = traps::default_trap_table();
    let mut table32 = [traps::TRAP_TABLE_END; 33];
    table32[..32].copy_from_slice(&defaults[..32]);
    let ours = [
        trap_entry(3, bench_int3_entry as *const () as u64),
        trap_entry(14, bench_pf_entry as *const () as u64),
        trap_entry(6, bench_ud_entry as *const () as u64),
        traps::TRAP_TABLE_END,
    ];

    let scratch = SCRATCH.addr();
    let Some((pte_maddr, pte)) = l1_entry_maddr(si, scratch) else {
        report::error(format_args!(
            "no L1 entry found for the scratch page {scratch:#x}"
        ))
    };
    let Some(other_mfn) = start_info::virt_to_mfn(OTHER.addr()) else {
        report::error(format_args!("no MFN for {:#x}", OTHER.addr()))
    };
    let ptes = [pte, (pte & !0x000f_ffff_ffff_f000) | other_mfn << 12];

    // SAFETY: XENVER_version takes no buffer.
    let v = unsafe { hc::xen_version(abi::XENVER_VERSION, 0) };
    if v >> 16 < 3 {
        fail(
            "xen_version(XENVER_version)",
            format_args!("returned {v:#x}"),
        );
    }
    check_rc(
        "set_trap_table (32 entries)",
        traps::set_trap_table(&table32),
        0,
    );
    // SAFETY: an unused hypercall number takes no buffer.
    let rc = unsafe { hc::hypercall5(UNUSED_HYPERCALL, 0, 0, 0, 0, 0) };
    check_rc("hypercall 55 (unused)", rc, -(abi::errno::ENOSYS as i64));
    // SAFETY: nothing is read from a 0-byte buffer.
    let rc = unsafe {
        hc::hypercall5(
            abi::HYPERVISOR_CONSOLE_IO,
            abi::CONSOLEIO_WRITE.into(),
            0,
            LINE.as_ptr() as u64,
            0,
            0,
        )
    };
    check_rc("console_io(write, 0 bytes)", rc, 0);
    time_cpuid();
    for (i, &val) in ptes.iter().chain(ptes.iter()).enumerate() {
        let rc = if i < 2 {
            let u = abi::MmuUpdate {
                ptr: pte_maddr | abi::MMU_NORMAL_PT_UPDATE,
                val,
            };
            // SAFETY: maps our own scratch page to one of our own frames.
            unsafe { hc::mmu_update(&u as *const _ as u64, 1, 0, abi::DOMID_SELF) }
        } else {
            // SAFETY: as above.
            unsafe { hc::update_va_mapping(scratch, val, abi::UVMF_INVLPG) }
        };
        if rc != 0 {
            report::error(format_args!(
                "page-table update {i} of the scratch page = {}",
                report::Rc(rc)
            ));
        }
    }
    // SAFETY: maps the scratch page to its own frame again.
    let rc = unsafe { hc::update_va_mapping(scratch, ptes[0], abi::UVMF_INVLPG) };
    if rc != 0 {
        report::error(format_args!(
            "restoring the scratch page = {}",
            report::Rc(rc)
        ));
    }
    let rc = traps::set_trap_table(&ours);
    if rc != 0 {
        report::error(format_args!(
            "set_trap_table(bench handlers) = {}",
            report::Rc(rc)
        ));
    }
    time_int3();
    time_pf(UNMAPPED);
    time_ud2();
    traps::install_default_trap_table();
    if let Err(t) = traps::run_user(|| {
        time_user_syscall();
    }) {
        report::error(format_args!("user-mode syscall: {t}"));
    }
    let mut ipi = abi::EvtchnBindIpi { vcpu: 0, port: 0 };
    // SAFETY: the hypervisor writes the port into `ipi`.
    let rc = unsafe {
        hc::hypercall5(
            abi::HYPERVISOR_EVENT_CHANNEL_OP,
            abi::EVTCHNOP_BIND_IPI.into(),
            &mut ipi as *mut _ as u64,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        report::error(format_args!(
            "event_channel_op(bind_ipi) = {}",
            report::Rc(rc)
        ));
    }
    EVENT_PORT.set(ipi.port.into());
    let send = abi::EvtchnSend { port: ipi.port };
    let send_ptr = &send as *const _ as u64;
    // SAFETY: the entry point is ours (above).
    let rc = unsafe {
        hc::register_callback(
            abi::CALLBACKTYPE_EVENT,
            0,
            bench_event_entry as *const () as u64,
        )
    };
    if rc != 0 {
        report::error(format_args!(
            "callback_op(register event) = {}",
            report::Rc(rc)
        ));
    }
    start_info::set_upcall_mask(0);
    time_hypercall(
        abi::HYPERVISOR_EVENT_CHANNEL_OP,
        abi::EVTCHNOP_SEND.into(),
        send_ptr,
        0,
        0,
    );
    start_info::set_upcall_mask(1);
    if UPCALLS.get() != 1 {
        report::error(format_args!(
            "EVTCHNOP_send on IPI port {}: {} upcalls, want 1",
            ipi.port,
            UPCALLS.get()
        ));
    }
    UPCALLS.set(0);

    // The page-table cases flip the scratch page between its own frame
    // (ptes[0]) and OTHER's (ptes[1]): every update is a real change.
    let mmu = GuestCell::new(abi::MmuUpdate {
        ptr: pte_maddr | abi::MMU_NORMAL_PT_UPDATE,
        val: ptes[0],
    });
    let mut cur = 0;
    for r in 0..p.rounds {
        let k = share(p.n, p.rounds, r);
        for _ in 0..k {
            record(LOOP, time_loop());
        }
        for _ in 0..k {
            record(
                NULL,
                time_hypercall(
                    abi::HYPERVISOR_XEN_VERSION,
                    abi::XENVER_VERSION.into(),
                    0,
                    0,
                    0,
                ),
            );
        }
        for _ in 0..share(p.console, p.rounds, r) {
            let dt = time_hypercall(
                abi::HYPERVISOR_CONSOLE_IO,
                abi::CONSOLEIO_WRITE.into(),
                64,
                LINE.as_ptr() as u64,
                0,
            );
            record(CONSOLE, dt);
        }
        for _ in 0..k {
            record(
                TRAP_TABLE,
                time_hypercall(
                    abi::HYPERVISOR_SET_TRAP_TABLE,
                    table32.as_ptr() as u64,
                    0,
                    0,
                    0,
                ),
            );
        }
        for _ in 0..k {
            cur ^= 1;
            mmu.set(abi::MmuUpdate {
                val: ptes[cur],
                ..mmu.get()
            });
            let dt = time_hypercall(
                abi::HYPERVISOR_MMU_UPDATE,
                mmu.as_ptr() as u64,
                1,
                0,
                abi::DOMID_SELF.into(),
            );
            record(MMU_UPDATE, dt);
        }
        for _ in 0..k {
            cur ^= 1;
            let dt = time_hypercall(
                abi::HYPERVISOR_UPDATE_VA_MAPPING,
                scratch,
                ptes[cur],
                abi::UVMF_INVLPG,
                0,
            );
            record(UVA, dt);
        }
        for _ in 0..k {
            let dt = time_hypercall(
                abi::HYPERVISOR_UPDATE_VA_MAPPING,
                scratch,
                ptes[cur],
                abi::UVMF_INVLPG,
                0,
            );
            record(UVA_SAME, dt);
        }
        for _ in 0..k {
            mmu.set(abi::MmuUpdate {
                val: ptes[cur],
                ..mmu.get()
            });
            let dt = time_hypercall(
                abi::HYPERVISOR_MMU_UPDATE,
                mmu.as_ptr() as u64,
                1,
                0,
                abi::DOMID_SELF.into(),
            );
            record(MMU_SAME, dt);
        }
        for _ in 0..k {
            record(ENOSYS_CALL, time_hypercall(UNUSED_HYPERCALL, 0, 0, 0, 0));
        }
        for _ in 0..k {
            record(
                CONSOLE0,
                time_hypercall(
                    abi::HYPERVISOR_CONSOLE_IO,
                    abi::CONSOLEIO_WRITE.into(),
                    0,
                    LINE.as_ptr() as u64,
                    0,
                ),
            );
        }
        for _ in 0..k {
            record(CPUID, time_cpuid());
        }
        if let Err(t) = traps::run_user(|| {
            for _ in 0..k {
                record(USER_SYSCALL, time_user_syscall());
            }
        }) {
            report::error(format_args!("user-mode syscall: {t}"));
        }
        traps::set_trap_table(&ours);
        for _ in 0..k {
            record(INT3, time_int3());
        }
        for _ in 0..k {
            record(PF, time_pf(UNMAPPED));
        }
        for _ in 0..k {
            record(UD2, time_ud2());
        }
        traps::install_default_trap_table();
        start_info::set_upcall_mask(0);
        for _ in 0..k {
            record(
                EVENT,
                time_hypercall(
                    abi::HYPERVISOR_EVENT_CHANNEL_OP,
                    abi::EVTCHNOP_SEND.into(),
                    send_ptr,
                    0,
                    0,
                ),
            );
        }
        start_info::set_upcall_mask(1);
    }
    check_eq(
        "one upcall per EVTCHNOP_send",
        UPCALLS.get(),
        DONE.get()[EVENT] as u64,
    );
    traps::register_callback(abi::CALLBACKTYPE_EVENT, 0);
    if cur != 0 {
        // SAFETY: maps the scratch page to its own frame again.
        unsafe { hc::update_va_mapping(scratch, ptes[0], abi::UVMF_INVLPG) };
    }

    let overhead = summary(LOOP).map_or(0, |s| s.median);
    for (c, name) in CASES.iter().enumerate() {
        if let Some(why) = NOT_MEASURED.get()[c] {
            println!("BENCH: {name} {why}");
            continue;
        }
        let Some(s) = summary(c) else {
            println!("BENCH: {name} not measured (n=0)");
            continue;
        };
        let s = if c == LOOP { s } else { s.minus(overhead) };
        println!(
            "BENCH: {name} median {} spread {}..{} n={}",
            s.median, s.p10, s.p90, s.n
        );
    }
}

// ---------------------------------------------------------------------------
// The two-domain cases.
// ---------------------------------------------------------------------------

/// Any one wait of the two-domain cases, in ns of system time.
const WAIT: u64 = 5_000 * MS;
/// The echo domain's wait for the first contact.
const FIRST_WAIT: u64 = 60_000 * MS;
/// Yields of the domain-switch case after which the echo domain's event
/// was not there (not recorded).
static SWITCH_MISSES: GuestCell<u64> = GuestCell::new(0);
/// The three channels, in allocation order from `port=`.
const PING: usize = 0;
const CTL: usize = 1;
const STOP: usize = 2;

fn peer_arg() -> Option<u16> {
    match start_info::arg_u32("peer") {
        Some(p) if p < 0x7ff0 => Some(p as u16),
        Some(p) => report::error(format_args!("peer={p} is not a domain id")),
        None => None,
    }
}

/// Waits (events masked, `sched_op(poll)` on `port`) until `port` is
/// pending or `wait` ns pass; whether it is.
fn wait_pending(port: u32, wait: u64) -> bool {
    let deadline = now_ns() + wait;
    while !ev::is_pending(port) {
        if now_ns() >= deadline {
            return ev::is_pending(port);
        }
        ev::poll(&[port], deadline);
    }
    true
}

/// Clears the ports' pending bits, the selector word and
/// `evtchn_upcall_pending` (a newly bound port is notified at once, Xen's
/// rule, before we could mask it), so that the event case later sees
/// exactly its own upcalls.
fn clear_event_state(ports: &[u32]) {
    for &p in ports {
        ev::clear_pending(p);
    }
    // SAFETY: our own shared info page, mapped; vCPU 0 is this one.
    unsafe {
        let si = start_info::shared_info();
        core::ptr::addr_of_mut!((*si).vcpu_info[0].evtchn_pending_sel).write_volatile(0);
    }
    ev::clear_upcall_pending(0);
}

/// Domain 0's side: allocates the three ports for the echo domain, times
/// the two cases round by round, stops the echo domain. On a failure,
/// `fail`s and marks both cases as errors (their figures would mean
/// nothing).
fn two_domains(p: Params, peer: u16, port: u32) {
    start_info::set_upcall_mask(1);
    let error = |why: &'static str| {
        not_measured(PING_PONG, why);
        not_measured(SWITCH, why);
    };
    // Our ports are the lowest free ones: `port`.. on a domain that has
    // none in use yet (the echo domain binds to them by number).
    let mut l = [0u32; 3];
    for (i, l) in l.iter_mut().enumerate() {
        match ev::alloc_unbound(abi::DOMID_SELF, peer) {
            Ok(p) if p == port + i as u32 => *l = p,
            r => {
                let (got, rc) = match r {
                    Ok(p) => (p as i64, 0),
                    Err(rc) => (-1, rc),
                };
                fail(
                    "two domains: alloc_unbound for the echo domain",
                    format_args!(
                        "port {got} (rc {}), want port {}",
                        report::Rc(rc),
                        port + i as u32
                    ),
                );
                return error("error: no channel to the second domain (alloc_unbound failed)");
            }
        }
        ev::mask_port(*l);
    }
    // The echo domain says it has bound all three (an unbound port drops
    // what is sent on it).
    if !wait_pending(l[CTL], WAIT) {
        fail(
            "two domains: the echo domain binds",
            format_args!("nothing from domain {peer} on port {} within 5 s (is it booted with role=echo peer=0?)", l[CTL]),
        );
        for &p in &l {
            ev::close(p);
        }
        return error("error: the second domain did not answer (see FAIL above)");
    }
    clear_event_state(&l);
    info(format_args!(
        "two domains: ports {l:?} bound by domain {peer}"
    ));

    let send = l.map(|port| abi::EvtchnSend { port });
    let ping_ports = [l[PING]];
    let mut poll = abi::SchedPoll {
        ports: ping_ports.as_ptr() as u64,
        nr_ports: 1,
        _pad0: 0,
        timeout: 0,
    };
    let poll_ptr = &mut poll as *mut abi::SchedPoll;
    let send_ptr = |i: usize| &send[i] as *const _ as u64;
    // Control: the echo domain switches between echoing and yielding,
    // or stops, and acknowledges on the same port.
    let control = |which: usize| -> bool {
        ev::send(l[which]);
        ev::send(l[PING]); // wakes it from its poll on the ping port
        let ok = wait_pending(l[which], WAIT);
        ev::clear_pending(l[which]);
        ev::clear_pending(l[PING]);
        ok
    };
    let mut failed = None;
    'rounds: for r in 0..p.rounds {
        let k = share(p.n, p.rounds, r);
        for i in 0..k {
            // SAFETY: `poll` lives on this frame; nothing else refers to it now.
            unsafe { (*poll_ptr).timeout = now_ns() + WAIT };
            let dt = time_ping(send_ptr(PING), poll_ptr as u64);
            if !ev::is_pending(l[PING]) {
                fail(
                    "event ping-pong",
                    format_args!(
                        "round {r} iteration {i}: no answer on port {} within 5 s",
                        l[PING]
                    ),
                );
                failed = Some("error: an answer did not arrive (see FAIL above)");
                break 'rounds;
            }
            ev::clear_pending(l[PING]);
            record(PING_PONG, dt);
        }
        if !control(CTL) {
            fail(
                "two domains: switch to yielding",
                format_args!("round {r}: no acknowledgement on port {}", l[CTL]),
            );
            failed = Some("error: the second domain stopped answering (see FAIL above)");
            break;
        }
        // A yield with no event is not recorded: the echo domain was
        // preempted (timer) between its send and its yield, so it ran
        // once for us unasked and now yields straight back. The next yield
        // finds its event; two misses running are an error.
        let (mut got, mut run_of_misses) = (0, 0);
        while got < k {
            let dt = time_hypercall(abi::HYPERVISOR_SCHED_OP, abi::SCHEDOP_YIELD.into(), 0, 0, 0);
            if !ev::is_pending(l[PING]) {
                run_of_misses += 1;
                SWITCH_MISSES.set(SWITCH_MISSES.get() + 1);
                if run_of_misses < 2 {
                    continue;
                }
                fail("domain switch", format_args!("round {r} after {got}: the second domain did not run during two sched_op(yield) running (no event on port {})", l[PING]));
                failed = Some("error: the second domain did not run (see FAIL above)");
                break 'rounds;
            }
            run_of_misses = 0;
            ev::clear_pending(l[PING]);
            record(SWITCH, dt);
            got += 1;
        }
        if !control(CTL) {
            fail(
                "two domains: switch to echoing",
                format_args!("round {r}: no acknowledgement on port {}", l[CTL]),
            );
            failed = Some("error: the second domain stopped answering (see FAIL above)");
            break;
        }
    }
    info(format_args!(
        "two domains: {} yields not recorded (no event from the echo domain: it had been preempted between its send and its yield)",
        SWITCH_MISSES.get()
    ));
    let stopped = control(STOP);
    check(
        "two domains: the echo domain acknowledges the stop",
        stopped,
        format_args!("nothing on port {} within 5 s", l[STOP]),
    );
    for &p in &l {
        check_rc("two domains: close our end", ev::close(p), 0);
        // The mask bit stays as we set it: the next port with this number
        // (the event case's IPI port) must start unmasked.
        ev::clear_mask_bit(p);
    }
    clear_event_state(&l);
    if let Some(why) = failed {
        error(why);
    } else if !stopped {
        error("error: the second domain did not stop (see FAIL above)");
    }
}

/// The echo domain (`role=echo peer=0`): binds to the peer's three ports,
/// then answers every ping while echoing, sends one event on the
/// ping port per `sched_op(yield)` while yielding, switches on the control
/// port and returns (so powers off) on the stop port.
fn echo() {
    start_info::set_upcall_mask(1);
    let Some(peer) = peer_arg() else {
        report::error(format_args!("role=echo needs peer=<domid>"))
    };
    let first = start_info::arg_u32("port").unwrap_or(1);
    // The peer allocates the ports early; retry until it has.
    let deadline = now_ns() + FIRST_WAIT;
    let mut l = [0u32; 3];
    for (i, l) in l.iter_mut().enumerate() {
        *l = loop {
            match ev::bind_interdomain(peer, first + i as u32) {
                Ok(l) => break l,
                Err(rc)
                    if (rc == abi::neg(abi::EINVAL) || rc == abi::neg(abi::ESRCH))
                        && now_ns() < deadline =>
                {
                    ev::yield_now();
                }
                Err(rc) => report::error(format_args!(
                    "bind_interdomain to port {} of domain {peer} = {}",
                    first + i as u32,
                    report::Rc(rc)
                )),
            }
        };
        ev::mask_port(*l);
    }
    clear_event_state(&l);
    info(format_args!(
        "echo: local ports {l:?} bound to ports {first}.. of domain {peer}"
    ));
    ev::send(l[CTL]);
    let (mut pings, mut yields, mut switches) = (0u64, 0u64, 0u64);
    let mut yielding = false;
    let mut wait = FIRST_WAIT;
    let mut phase_end = now_ns() + 30_000 * MS;
    let ok = loop {
        if ev::is_pending(l[STOP]) {
            ev::clear_pending(l[STOP]);
            ev::send(l[STOP]);
            break true;
        }
        if ev::is_pending(l[CTL]) {
            ev::clear_pending(l[CTL]);
            ev::clear_pending(l[PING]);
            yielding = !yielding;
            switches += 1;
            phase_end = now_ns() + 30_000 * MS;
            ev::send(l[CTL]);
            continue;
        }
        if yielding {
            ev::send(l[PING]);
            ev::yield_now();
            yields += 1;
            if yields % 1024 == 0 && now_ns() > phase_end {
                fail(
                    "echo: yielding",
                    format_args!("no control event from domain {peer} in 30 s"),
                );
                break false;
            }
            continue;
        }
        if ev::is_pending(l[PING]) {
            ev::clear_pending(l[PING]);
            ev::send(l[PING]);
            pings += 1;
            wait = WAIT;
            continue;
        }
        if !wait_pending(l[PING], wait) {
            fail(
                "echo: waiting",
                format_args!("no event from domain {peer} within {} s", wait / 1000 / MS),
            );
            break false;
        }
    };
    info(format_args!(
        "echo: {pings} pings answered, {yields} yields, {switches} switches"
    ));
    if ok {
        pass("echo: stopped by the peer");
    }
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the TSC (CR4.TSD is clear for PV guests here).
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

#[derive(Clone, Copy)]
struct Summary {
    median: u32,
    p10: u32,
    p90: u32,
    n: usize,
}

impl Summary {
    fn minus(self, o: u32) -> Summary {
        Summary {
            median: self.median.saturating_sub(o),
            p10: self.p10.saturating_sub(o),
            p90: self.p90.saturating_sub(o),
            n: self.n,
        }
    }
}

/// Sorts case `c`'s samples and takes the 10th/50th/90th percentiles
/// (nearest rank, rounding down: the hypervisor's rule, src/bench.rs).
fn summary(c: usize) -> Option<Summary> {
    let n = DONE.get()[c];
    if n == 0 {
        return None;
    }
    // SAFETY: no other reference into SAMPLES exists while this one lives.
    let s = unsafe { &mut (&mut *SAMPLES.0.get())[c][..n] };
    s.sort_unstable();
    let at = |p: usize| s[(n - 1) * p / 100];
    Some(Summary {
        median: at(50),
        p10: at(10),
        p90: at(90),
        n,
    })
}

// The bin has `test = false` like every guest: run these with
// `cargo test -p guest-bench --bin guest-bench`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let p = parse_params(b"n=1000 rounds=4 console=7 x=1 junk");
        assert_eq!((p.n, p.rounds, p.console), (1000, 4, 7));
        let p = parse_params(b"n=99999999 rounds=0");
        assert_eq!((p.n, p.rounds), (MAX_N, 1));
        let p = parse_params(b"n=3 rounds=10");
        assert_eq!(p.rounds, 3);
    }

    #[test]
    fn shares_add_up() {
        for (total, rounds) in [(20_000, 10), (7, 3), (500, 10), (0, 4)] {
            assert_eq!(
                (0..rounds).map(|r| share(total, rounds, r)).sum::<usize>(),
                total
            );
        }
    }
}
