//! 9. `debugreg`: breakpoints the hypervisor arms for us from ring 1,
//!    aimed at the hypervisor (XSA-260, CVE-2018-8897). Each case must leave
//!    the hypervisor running; where the guest should get a #DB, it does.

use core::arch::asm;
use core::ptr::write_volatile;

use pvguest32::abi;
use pvguest32::cell::GuestCell;
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_eq, check_rc, info, neg, Rc};
use pvguest32::traps::{self, expect_fault, Action, Trap, TrapFrame};
use pvguest32::va;

const EPERM: i32 = neg(abi::EPERM);

/// DR7: L0, and R/W0 + LEN0 (bits 16-19): write 4 bytes, or read/write 4.
const DR7_L0_WRITE4: u32 = 1 | 1 << 16 | 3 << 18;
const DR7_L0_RW4: u32 = 1 | 3 << 16 | 3 << 18;
const DR7_GD: u32 = 1 << 13;

static DBS: GuestCell<u32> = GuestCell::new(0);
static BPS: GuestCell<u32> = GuestCell::new(0);
/// What `mov %ss` loads: a breakpoint watches it.
static SS_SRC: GuestCell<u32> = GuestCell::new(0);
/// A stack whose top word is what `pop %ss` loads (a breakpoint watches
/// it); whatever is bounced meanwhile lands below it, inside.
static POP_STACK: GuestCell<[u32; 2048]> = GuestCell::new([0; 2048]);
/// Our esp while `pop %ss` runs on POP_STACK.
static mut SAVED_ESP: u32 = 0;

/// Disarm in the #DB handler: for `pop %ss`, whose watched word is where
/// the #DB's own bounce frame lands (read again by our `iret`: another #DB,
/// for ever).
static DISARM_ON_DB: GuestCell<bool> = GuestCell::new(false);

fn on_db(_f: &mut TrapFrame, _t: &Trap) -> Action {
    DBS.set(DBS.get() + 1);
    if DISARM_ON_DB.get() {
        set(7, 0);
    }
    Action::Resume
}

fn on_bp(_f: &mut TrapFrame, _t: &Trap) -> Action {
    BPS.set(BPS.get() + 1);
    Action::Resume
}

fn set(reg: u32, value: u32) -> i32 {
    // SAFETY: the hypervisor checks the value; the breakpoints armed here
    // watch only this guest's own memory.
    unsafe { hc::hypercall(abi::HYPERVISOR_SET_DEBUGREG, &[reg, value]) }
}

fn get(reg: u32) -> u32 {
    // SAFETY: a read.
    unsafe { hc::hypercall(abi::HYPERVISOR_GET_DEBUGREG, &[reg]) as u32 }
}

fn version() -> i32 {
    // SAFETY: no buffer.
    unsafe { hc::xen_version(abi::XENVER_VERSION, 0) }
}

pub fn run() {
    traps::set_handler(1, Some(on_db));
    traps::set_handler(3, Some(on_bp));

    // 9a. Breakpoints in the hypervisor hole: refused.
    for a in [0xf580_0000u32, 0xfc00_0000, 0xffff_fffc] {
        let ok = (0..4).all(|reg| set(reg, a) == EPERM);
        check("9a: set_debugreg DR0-3 in the hypervisor hole (0xf5800000, 0xfc000000, 0xfffffffc): -EPERM", ok, format_args!("{a:#x} accepted"));
    }
    expect_fault("9a: mov to %dr0 of 0xf5800000: #GP(0)", 13, Some(0), || {
        // SAFETY: emulated and refused: a #GP into our handler.
        unsafe { asm!("mov dr0, {}", in(reg) 0xf580_0000u32) }
    });

    // 9b. General Detect: refused.
    check_rc(
        "9b: set_debugreg DR7 with GD: -EPERM",
        set(7, DR7_GD | 1),
        EPERM,
    );
    expect_fault("9b: mov to %dr7 with GD: #GP(0)", 13, Some(0), || {
        // SAFETY: emulated and refused.
        unsafe { asm!("mov dr7, {}", in(reg) DR7_GD | 1) }
    });
    check_eq("9b: DR7 still 0x400 (nothing armed)", get(7), 0x400);

    // 9c. A write breakpoint on a buffer on our stack, a hypercall writing
    // it (through the hypervisor's own mapping): no #DB; our own store: one.
    let mut buf = [0u32; 8];
    let addr = va(buf.as_ptr());
    check_rc("9c: DR0 = a kernel stack buffer", set(0, addr), 0);
    check_rc("9c: DR7 = write, 4 bytes, L0", set(7, DR7_L0_WRITE4), 0);
    let before = DBS.get();
    // SAFETY: 16 bytes written into our buffer.
    let rc = unsafe { hc::xen_version(abi::XENVER_EXTRAVERSION, addr) };
    check(
        "9c: XENVER_extraversion into the watched buffer: 0, no #DB",
        rc == 0 && DBS.get() == before,
        format_args!("rc {}, {} #DB", Rc(rc), DBS.get() - before),
    );
    // SAFETY: our own buffer.
    unsafe { write_volatile(&mut buf[0], 0x5a5a) };
    check(
        "9c: our own store to it: one #DB, DR6.B0",
        DBS.get() == before + 1 && get(6) & 0xf == 1,
        format_args!("{} #DB, dr6 {:#x}", DBS.get() - before, get(6)),
    );

    // 9d. The word where an int3's bounce frame goes, watched.
    let esp: u32;
    // SAFETY: reads esp.
    unsafe { asm!("mov {}, esp", out(reg) esp) };
    check_rc(
        "9d: DR0 = a word where the next bounce frame goes",
        set(0, (esp - 8) & !3),
        0,
    );
    let bp0 = BPS.get();
    // SAFETY: bounced to on_bp, which resumes after it.
    unsafe { asm!("int3") };
    check(
        "9d: int3 with its frame watched: #BP delivered, back",
        BPS.get() == bp0 + 1,
        format_args!("{} #BP", BPS.get() - bp0),
    );

    // 9e. `mov %ss` / `pop %ss` from a watched word, then an entry into
    // the hypervisor (`int $0x82`, int3): on hardware the #DB arrives at
    // the hypervisor's first instruction and is ignored there; where the
    // CPU ignores the MOV-SS shadow (QEMU's TCG) it comes to us first.
    let ss: u32;
    // SAFETY: reads ss.
    unsafe { asm!("mov {:e}, ss", out(reg) ss) };
    SS_SRC.set(ss);
    let src = va(SS_SRC.as_ptr());
    check_rc("9e: DR0 = the %ss source", set(0, src), 0);
    check_rc("9e: DR7 = read/write, 4 bytes, L0", set(7, DR7_L0_RW4), 0);
    let want = version();
    let db0 = DBS.get();
    let got: i32;
    // SAFETY: xen_version(XENVER_version, 0) by `int $0x82`; the
    // hypervisor preserves every register but eax.
    unsafe {
        asm!(
            "mov ss, word ptr [{src}]",
            "int 0x82",
            src = in(reg) src,
            inlateout("eax") abi::HYPERVISOR_XEN_VERSION => got,
            in("ebx") abi::XENVER_VERSION,
            in("ecx") 0u32,
        )
    }
    let n = DBS.get() - db0;
    check(
        "9e: mov %ss + int $0x82 (a hypercall): its answer, at most one #DB",
        got == want && n <= 1,
        format_args!("eax {got:#x} want {want:#x}, {n} #DB"),
    );
    info(format_args!(
        "9e: mov %ss + int $0x82 gave {n} #DB{}",
        if n == 1 {
            " to the guest (the MOV-SS shadow was not honoured)"
        } else {
            " (ignored in the hypervisor)"
        }
    ));

    let (db0, bp0) = (DBS.get(), BPS.get());
    // SAFETY: bounced to on_bp, which resumes after it.
    unsafe { asm!("mov ss, word ptr [{src}]", "int3", src = in(reg) src) };
    let n = DBS.get() - db0;
    check(
        "9e: mov %ss + int3: #BP delivered, at most one #DB",
        BPS.get() == bp0 + 1 && n <= 1,
        format_args!("{} #BP, {n} #DB", BPS.get() - bp0),
    );

    // pop %ss: esp on POP_STACK's top word, the watched one.
    let top = POP_STACK.as_ptr() as *mut u32;
    // SAFETY: the last word of POP_STACK.
    let top = unsafe { top.add(2047) };
    // SAFETY: as above.
    unsafe { top.write_volatile(ss) };
    check_rc("9e: DR0 = the word pop %ss loads", set(0, va(top)), 0);
    let db0 = DBS.get();
    DISARM_ON_DB.set(true);
    let got: i32;
    // SAFETY: xen_version by `int $0x82` with esp on POP_STACK, which is
    // large enough for any bounce meanwhile; esp restored from SAVED_ESP
    // (absolute address: no register survives by contract but eax).
    unsafe {
        asm!(
            "mov dword ptr [{saved}], esp",
            "mov esp, {top}",
            "pop ss",
            "int 0x82",
            "mov esp, dword ptr [{saved}]",
            saved = sym SAVED_ESP,
            top = in(reg) top,
            inlateout("eax") abi::HYPERVISOR_XEN_VERSION => got,
            in("ebx") abi::XENVER_VERSION,
            in("ecx") 0u32,
        )
    }
    DISARM_ON_DB.set(false);
    let n = DBS.get() - db0;
    // Where the #DB comes to us (TCG), its frame's top word is the watched
    // one: our handler reading its frame takes a second #DB before it
    // disarms.
    check(
        "9e: pop %ss + int $0x82: its answer, at most two #DB",
        got == want && n <= 2,
        format_args!("eax {got:#x} want {want:#x}, {n} #DB"),
    );

    check_rc("9e: DR7 = 0", set(7, 0), 0);
    check_eq("9e: the hypervisor still answers", version(), want);
    traps::set_handler(1, None);
    traps::set_handler(3, None);
}
