//! 5. `debugreg`: breakpoints the hypervisor arms for us, aimed at the
//!    hypervisor (XSA-260, CVE-2018-8897). Each case must leave the
//!    hypervisor running; where the guest should get a #DB, it does.

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};

use pvguest::abi;
use pvguest::cell::GuestCell;
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc, info};
use pvguest::traps::{self, expect_fault, Action, Trap, TrapFrame};

const EPERM: i64 = abi::neg(abi::EPERM);

/// DR7: L0, and R/W0 + LEN0 (bits 16-19): write 8 bytes, or read/write 4.
const DR7_L0_WRITE8: u64 = 1 | 1 << 16 | 2 << 18;
const DR7_L0_RW4: u64 = 1 | 3 << 16 | 3 << 18;
const DR7_GD: u64 = 1 << 13;

/// #DBs and #BPs seen, and the last #DB's rip.
static DBS: GuestCell<u64> = GuestCell::new(0);
static BPS: GuestCell<u64> = GuestCell::new(0);
static DB_RIP: GuestCell<u64> = GuestCell::new(0);
/// What `mov %ss` loads: a breakpoint watches it.
static SS_SRC: GuestCell<u32> = GuestCell::new(0);

fn on_db(_f: &mut TrapFrame, t: &Trap) -> Action {
    DBS.set(DBS.get() + 1);
    DB_RIP.set(t.rip);
    Action::Resume
}

fn on_bp(_f: &mut TrapFrame, _t: &Trap) -> Action {
    BPS.set(BPS.get() + 1);
    Action::Resume
}

fn set(reg: u64, value: u64) -> i64 {
    // SAFETY: the hypervisor checks the value; the breakpoints armed here
    // watch only this guest's own memory.
    unsafe { hc::hypercall5(abi::HYPERVISOR_SET_DEBUGREG, reg, value, 0, 0, 0) }
}

fn get(reg: u64) -> u64 {
    // SAFETY: a read.
    unsafe { hc::hypercall5(abi::HYPERVISOR_GET_DEBUGREG, reg, 0, 0, 0, 0) as u64 }
}

fn version() -> i64 {
    // SAFETY: no buffer.
    unsafe { hc::xen_version(abi::XENVER_VERSION, 0) }
}

pub fn run() {
    traps::set_handler(1, Some(on_db));
    traps::set_handler(3, Some(on_bp));

    // 5a. Breakpoints on the hypervisor's addresses: refused, by hypercall
    // and by `mov %drN`.
    for (what, a) in [
        ("its text 0xffff82d080100000", 0xffff_82d0_8010_0000u64),
        ("the direct map 0xffff830000000000", 0xffff_8300_0000_0000),
        (
            "the start of its range 0xffff800000000000",
            0xffff_8000_0000_0000,
        ),
        (
            "the last word of its range 0xffff87fffffffff8",
            0xffff_87ff_ffff_fff8,
        ),
    ] {
        for reg in 0..4 {
            let rc = set(reg, a);
            if rc != EPERM {
                check_rc(
                    &alloc_free_name("5a: set_debugreg DR0-3 = ", what),
                    rc,
                    EPERM,
                );
            }
        }
        check_rc(
            &alloc_free_name("5a: set_debugreg DR0-3 = ", what),
            set(3, a),
            EPERM,
        );
    }
    expect_fault(
        "5a: mov to %dr0 of a hypervisor address: #GP(0)",
        13,
        Some(0),
        || {
            // SAFETY: emulated and refused: a #GP into our handler.
            unsafe { asm!("mov dr0, {}", in(reg) 0xffff_82d0_8010_0000u64) }
        },
    );

    // 5b. General Detect: refused (it would make the hypervisor's own
    // debug-register accesses fault).
    check_rc(
        "5b: set_debugreg DR7 with GD: -EPERM",
        set(7, DR7_GD | 1),
        EPERM,
    );
    expect_fault("5b: mov to %dr7 with GD: #GP(0)", 13, Some(0), || {
        // SAFETY: emulated and refused.
        unsafe { asm!("mov dr7, {}", in(reg) DR7_GD | 1) }
    });
    check_eq("5b: DR7 still 0x400 (nothing armed)", get(7), 0x400);

    // 5c. A data breakpoint on our own kernel stack, and a hypercall that
    // writes there: the hypervisor writes through its own mapping, not
    // our address (Xen writes through ours and ignores the #DB it takes):
    // no #DB either way, the answer intact. Our own store there: a #DB
    // right after it, B0 in DR6.
    let mut buf = [0u64; 4];
    let addr = buf.as_mut_ptr() as u64;
    check_rc("5c: DR0 = a kernel stack buffer", set(0, addr), 0);
    check_rc("5c: DR7 = write, 8 bytes, L0", set(7, DR7_L0_WRITE8), 0);
    let before = DBS.get();
    // SAFETY: 16 bytes written into our buffer.
    let rc = unsafe { hc::xen_version(abi::XENVER_EXTRAVERSION, addr) };
    check(
        "5c: XENVER_extraversion into the watched buffer: 0, no #DB",
        rc == 0 && DBS.get() == before,
        format_args!("rc {rc}, {} #DB", DBS.get() - before),
    );
    // SAFETY: our own buffer.
    unsafe { write_volatile(&mut buf[0], 0x5a5a) };
    check(
        "5c: our own store to it: one #DB",
        DBS.get() == before + 1,
        format_args!("{} #DB", DBS.get() - before),
    );
    check(
        "5c: DR6 shows B0",
        get(6) & 0xf == 1,
        format_args!("dr6 {:#x}", get(6)),
    );
    // SAFETY: our own buffer.
    let _ = unsafe { read_volatile(&buf[0]) };

    // 5d. A bounce frame written where the breakpoint watches: an int3's
    // frame lands on this stack just below rsp.
    let rsp: u64;
    // SAFETY: reads rsp.
    unsafe { asm!("mov {}, rsp", out(reg) rsp) };
    let slot = ((rsp & !15) - 24) & !7;
    check_rc(
        "5d: DR0 = a word where the next bounce frame goes",
        set(0, slot),
        0,
    );
    let (db0, bp0) = (DBS.get(), BPS.get());
    // SAFETY: int3 is bounced to on_bp, which resumes after it.
    unsafe { asm!("int3") };
    check(
        "5d: int3 with its frame watched: #BP delivered, back",
        BPS.get() == bp0 + 1,
        format_args!("{} #BP, {} #DB", BPS.get() - bp0, DBS.get() - db0),
    );
    check_rc("5d: DR7 = 0", set(7, 0), 0);

    // 5e. `mov %ss` from a watched word, then an entry into the hypervisor:
    // the #DB the load raises is held back by the MOV-SS shadow and, on
    // hardware, arrives at the hypervisor's first instruction (for
    // `syscall`, still on our stack), where it is ignored; an emulator
    // that ignores the shadow delivers it to us before the entry. Either
    // way the entry completes and the hypervisor lives.
    let ss: u64;
    // SAFETY: reads ss.
    unsafe { asm!("mov {:r}, ss", out(reg) ss) };
    SS_SRC.set(ss as u32);
    let src = SS_SRC.as_ptr() as u64;
    check_rc("5e: DR0 = the %ss source", set(0, src), 0);
    check_rc("5e: DR7 = read/write, 4 bytes, L0", set(7, DR7_L0_RW4), 0);
    let want = version();
    let db0 = DBS.get();
    let got: i64;
    // SAFETY: a raw hypercall (xen_version(XENVER_version, 0)) by
    // `syscall` from our kernel, as the hypercall page makes it; rcx and
    // r11 are the CPU's.
    unsafe {
        asm!(
            "mov ss, word ptr [{src}]",
            "syscall",
            src = in(reg) src,
            inlateout("rax") abi::HYPERVISOR_XEN_VERSION as u64 => got,
            in("rdi") abi::XENVER_VERSION as u64,
            in("rsi") 0u64,
            out("rcx") _,
            out("r11") _,
        )
    }
    let n = DBS.get() - db0;
    check(
        "5e: mov %ss + syscall (a hypercall): its answer, at most one #DB",
        got == want && n <= 1,
        format_args!("rax {got:#x} want {want:#x}, {n} #DB"),
    );
    info(format_args!(
        "5e: mov %ss + syscall gave {n} #DB{}",
        if n == 1 {
            " to the guest (the MOV-SS shadow was not honoured: delivered before the entry)"
        } else {
            " (taken and ignored in the hypervisor)"
        }
    ));
    for (what, int80) in [("int3", false), ("int $0x80", true)] {
        let (db0, bp0, c0) = (DBS.get(), BPS.get(), traps::count());
        // SAFETY: both bounce to our handlers, which resume after them.
        unsafe {
            if int80 {
                asm!("mov ss, word ptr [{src}]", "int 0x80", src = in(reg) src);
            } else {
                asm!("mov ss, word ptr [{src}]", "int3", src = in(reg) src);
            }
        }
        let (n, bounces) = (DBS.get() - db0, traps::count() - c0);
        let delivered = if int80 {
            bounces - n == 1
        } else {
            BPS.get() == bp0 + 1
        };
        check(
            &alloc_free_name("5e: mov %ss + ", what),
            delivered && n <= 1,
            format_args!("{bounces} bounces, {n} #DB, {} #BP", BPS.get() - bp0),
        );
    }
    check_rc("5e: DR7 = 0", set(7, 0), 0);
    check_eq("5e: the hypervisor still answers", version(), want);
    traps::set_handler(1, None);
    traps::set_handler(3, None);
}

/// A case name from two parts (no allocator in every guest: a fixed
/// buffer).
fn alloc_free_name(a: &str, b: &str) -> Name {
    let mut n = Name {
        buf: [0; 96],
        len: 0,
    };
    for &c in a.as_bytes().iter().chain(b.as_bytes()) {
        if n.len < n.buf.len() {
            n.buf[n.len] = c;
            n.len += 1;
        }
    }
    n
}

struct Name {
    buf: [u8; 96],
    len: usize,
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}
