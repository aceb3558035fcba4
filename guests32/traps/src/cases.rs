//! The cases of `guest32-traps` (listed in main.rs).

use core::arch::asm;

use pvguest32::abi::{self, x86_32::StartInfo32};
use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_DS, FLAT_RING3_CS, FLAT_RING3_DS};
use pvguest32::cell::GuestCell;
use pvguest32::cpu::{self, EFLAGS_IF, EFLAGS_RSVD1};
use pvguest32::hypercall;
use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info, pass};
use pvguest32::start_info::{self, set_upcall_mask, upcall_mask};
use pvguest32::traps::{
    self, catch, expect_fault, run_user, trap_info, Action, Trap, TrapFrame, KERNEL_ONLY,
    KERNEL_STACK, TRAP_TABLE_END, USER_STACK,
};
use pvguest32::va;

/// An address nothing maps (its L3 quarter, 1-2 GiB, holds nothing of the
/// bootstrap region at 0xC0000000).
const UNMAPPED: u32 = 0x5ead_b000;
/// An LDT selector (TI = 1, index 0x80); the guest has no LDT.
const BAD_SELECTOR: u32 = 0x404;
/// `FLAT_RING1_CS` with RPL 0.
const RING1_CS_RPL0: u32 = FLAT_RING1_CS as u32 & !3;

/// Written by the asm right before the instruction under test: [eip of
/// the instruction (or of the one after, for traps), esp].
static AT: GuestCell<[u32; 2]> = GuestCell::new([0; 2]);

fn at() -> (u32, u32) {
    let a = AT.get();
    (a[0], a[1])
}

pub fn run(_si: &StartInfo32) {
    setup();
    divide_error();
    breakpoint();
    invalid_opcode();
    general_protection();
    int80();
    emulated();
    page_faults();
    upcall_mask_cases();
    iret_paths();
    event_upcall();
    user_mode();
}

fn setup() {
    traps::install_default_trap_table();
    pass("set_trap_table (32-bit entries, cs 0xe019)");
    check_rc(
        "set_callbacks(0xe019, event, 0xe019, failsafe)",
        traps::install_callbacks(),
        0,
    );

    let cs = u32::from(FLAT_RING1_CS);
    check_rc(
        "set_callbacks with an RPL-0 event selector: 0 (Xen raises the RPL to 1)",
        traps::set_callbacks_with(RING1_CS_RPL0, cs),
        0,
    );
    check_rc(
        "set_callbacks with an RPL-0 failsafe selector: 0 (RPL raised)",
        traps::set_callbacks_with(cs, RING1_CS_RPL0),
        0,
    );
    check_rc(
        "set_callbacks again with RPL 1",
        traps::install_callbacks(),
        0,
    );

    check_rc(
        "callback_op register event, cs 0xe019",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0, cs),
        0,
    );
    check_rc(
        "callback_op register event, RPL-0 cs: 0 (RPL raised)",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0, RING1_CS_RPL0),
        0,
    );
    check_rc(
        "callback_op register failsafe, cs 0xe019",
        traps::register_callback(abi::CALLBACKTYPE_FAILSAFE, abi::CALLBACKF_MASK_EVENTS, cs),
        0,
    );
}

/// The checks every ring-1 frame passes: selector 0xe019, the saved mask
/// as it was (1: events masked), eflags.IF = !mask, bit 1 set, no
/// esp/ss slots, the frame right below the interrupted esp.
fn ring1_frame(what: &str, t: &Trap, esp: u32) {
    let ok = t.cs_sel() == FLAT_RING1_CS
        && !t.outer
        && t.saved_mask() == 1
        && t.eflags & EFLAGS_IF == 0
        && t.eflags & EFLAGS_RSVD1 != 0
        && t.frame_top == esp
        && t.ss == u32::from(FLAT_RING1_DS);
    check(
        what,
        ok,
        format_args!("{} (want cs 0xe019 | 1 << 16, IF 0, top {:#x})", t, esp),
    );
}

fn divide_error() {
    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch; it writes only registers it declares and AT.
    let t = expect_fault("#DE div by zero", 0, None, || unsafe {
        asm!(
            "lea {t}, [2f]",
            "mov [{at}], {t}",
            "mov [{at} + 4], esp",
            "xor edx, edx",
            "mov eax, 1",
            "xor ecx, ecx",
            "2: div ecx",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            out("eax") _, out("ecx") _, out("edx") _,
        )
    });
    if let Some(t) = t {
        check_eq("#DE eip at the div", t.eip, at().0);
        ring1_frame(
            "#DE ring-1 frame: 3 words below esp, cs 0xe019, mask 1, IF 0",
            &t,
            at().1,
        );
        check_eq("#DE frame base = esp - 12", t.frame_base, at().1 - 12);
    }
}

/// Registers seen after the #BP: [eip marker, ebx, esi, edi].
static REGS: GuestCell<[u32; 4]> = GuestCell::new([0; 4]);

fn breakpoint() {
    let before = traps::count();
    let (a, c, d): (u32, u32, u32);
    // SAFETY: int3 bounces to our #BP entry, which resumes after it.
    // ebx and esi may be reserved by the compiler: saved and restored
    // around the int3 on the stack; edi holds the REGS pointer throughout.
    unsafe {
        asm!(
            "push ebx",
            "push esi",
            "lea eax, [2f]",
            "mov [edi], eax",
            "mov eax, 0x1111",
            "mov ecx, 0x2222",
            "mov edx, 0x3333",
            "mov ebx, 0x4444",
            "mov esi, 0x5555",
            "int3",
            "2:",
            "mov [edi + 4], ebx",
            "mov [edi + 8], esi",
            "mov [edi + 12], edi",
            "pop esi",
            "pop ebx",
            in("edi") REGS.as_ptr(),
            out("eax") a, out("ecx") c, out("edx") d,
        );
    }
    let r = REGS.get();
    let t = traps::last();
    if traps::count() != before + 1 || t.vector != 3 {
        fail("#BP int3", format_args!("no #BP bounce (last: {})", t));
        return;
    }
    pass("#BP int3");
    check_eq("#BP eip after the int3", t.eip, r[0]);
    check_same(
        "#BP frame eax/ecx/edx = interrupted",
        [t.eax, t.ecx, t.edx],
        [0x1111, 0x2222, 0x3333],
    );
    check_same(
        "native iret back to ring 1 keeps eax ecx edx ebx esi edi",
        [a, c, d, r[1], r[2], r[3]],
        [0x1111, 0x2222, 0x3333, 0x4444, 0x5555, va(REGS.as_ptr())],
    );
    check_same(
        "#BP left with a native iret (mask already right)",
        traps::last_exit_was_hypercall(),
        Some(false),
    );
}

fn ud2() -> Result<(), Trap> {
    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch; it writes only registers it declares and AT.
    catch(|| unsafe {
        asm!(
            "lea {t}, [2f]",
            "mov [{at}], {t}",
            "mov [{at} + 4], esp",
            "2: ud2",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
        )
    })
}

fn invalid_opcode() {
    let t = match ud2() {
        Ok(()) => return fail("#UD ud2", format_args!("no fault")),
        Err(t) => t,
    };
    if !check_eq("#UD ud2", t.vector, 6) {
        return;
    }
    let (eip, esp) = at();
    check_eq("#UD eip at the ud2", t.eip, eip);
    ring1_frame(
        "#UD ring-1 frame: 3 words below esp, cs 0xe019, mask 1, IF 0",
        &t,
        esp,
    );
    check_eq("#UD ss = 0xe021", t.ss, 0xe021);
    info(format_args!(
        "#UD frame: cs slot {:#x}, eflags {:#x}, frame {:#x}..{:#x} (esp {:#x})",
        t.cs, t.eflags, t.frame_base, t.frame_top, esp
    ));
}

fn general_protection() {
    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch; it writes only registers it declares and AT.
    let t = expect_fault(
        "#GP bad selector, ec 0x404",
        13,
        Some(BAD_SELECTOR),
        || unsafe {
            asm!(
                "mov [{at} + 4], esp",
                "mov fs, ax",
                at = in(reg) AT.as_ptr(),
                in("eax") BAD_SELECTOR,
            )
        },
    );
    if let Some(t) = t {
        ring1_frame("#GP ring-1 frame, cs 0xe019, mask 1, IF 0", &t, at().1);
        check_eq(
            "#GP frame base = esp - 16 (error code first)",
            t.frame_base,
            at().1 - 16,
        );
    }

    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch; it writes only registers it declares and AT.
    let t = expect_fault("#GP hlt (not emulated), ec 0", 13, Some(0), || unsafe {
        asm!(
            "lea {t}, [2f]",
            "mov [{at}], {t}",
            "2: hlt",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
        )
    });
    if let Some(t) = t {
        check_eq("#GP hlt eip at the hlt", t.eip, at().0);
    }

    expect_fault(
        "#GP int $0 through a DPL-0 entry, ec 2",
        13,
        Some(2),
        // SAFETY: the asm faults into the runtime's handler, which
        // unwinds to this catch.
        || unsafe { asm!("int 0") },
    );

    let v = traps::VEC_SOFTINT;
    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch; it writes only registers it declares and AT.
    let t = expect_fault(
        "#GP int $0x41 through a DPL-0 entry, ec (0x41<<3)|2",
        13,
        Some((v << 3) | 2),
        || unsafe {
            asm!(
                "lea {t}, [2f]",
                "mov [{at}], {t}",
                "2: int 0x41",
                t = out(reg) _,
                at = in(reg) AT.as_ptr(),
            )
        },
    );
    if let Some(t) = t {
        check_eq("#GP int $0x41 eip at the int", t.eip, at().0);
    }
}

fn int80() {
    let before = traps::count();
    // SAFETY: int $0x80 bounces to our DPL-3 entry, which resumes after it.
    unsafe {
        asm!(
            "lea {t}, [2f]",
            "mov [{at}], {t}",
            "int 0x80",
            "2:",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
        );
    }
    let t = traps::last();
    if check(
        "int $0x80 (DPL 3) delivered from ring 1",
        traps::count() == before + 1 && t.vector == 0x80,
        format_args!("last bounce: {}", t),
    ) {
        check_eq("int $0x80 eip after the int", t.eip, at().0);
        check_eq("int $0x80 cs 0xe019", t.cs_sel(), FLAT_RING1_CS);
        check_eq("int $0x80 no error code", t.error_code, 0);
    }
}

fn emulated() {
    let before = traps::count();
    let cr0 = cpu::read_cr0();
    check(
        "mov %cr0 emulated: PE and PG set",
        cr0 & cpu::CR0_PE != 0 && cr0 & cpu::CR0_PG != 0,
        format_args!("cr0 = {:#x}", cr0),
    );
    let [_, b, c, d] = cpu::xen_cpuid(0x4000_0000, 0);
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&b.to_le_bytes());
    sig[4..8].copy_from_slice(&c.to_le_bytes());
    sig[8..].copy_from_slice(&d.to_le_bytes());
    check(
        "forced-emulation cpuid 0x40000000: XenVMMXenVMM",
        &sig == b"XenVMMXenVMM",
        format_args!("{:?}", sig),
    );
    check_eq(
        "emulated instructions bounce nothing",
        traps::count(),
        before,
    );
}

fn page_faults() {
    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch; it writes only registers it declares and AT.
    let t = expect_fault("#PF read unmapped, ec 0", 14, Some(0), || unsafe {
        asm!(
            "lea {t}, [2f]",
            "mov [{at}], {t}",
            "2: mov {t}, [{p}]",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
            p = in(reg) UNMAPPED,
        )
    });
    if let Some(t) = t {
        check_eq("#PF read cr2 (vcpu_info.arch.cr2)", t.cr2, UNMAPPED);
        check_eq("#PF read eip", t.eip, at().0);
        check_eq("#PF cs 0xe019", t.cs_sel(), FLAT_RING1_CS);
        check_eq("#PF mov %cr2 (emulated) = arch.cr2", cpu_cr2(), UNMAPPED);
    }

    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch.
    let t = expect_fault("#PF write unmapped, ec 2", 14, Some(2), || unsafe {
        asm!("mov dword ptr [{p}], 1", p = in(reg) UNMAPPED + 8)
    });
    if let Some(t) = t {
        check_eq("#PF write cr2", t.cr2, UNMAPPED + 8);
    }

    // SAFETY: the asm faults into the runtime's handler, which unwinds to
    // this catch.
    let t = expect_fault("#PF fetch unmapped, ec 0x10", 14, Some(0x10), || unsafe {
        asm!("call {p}", p = in(reg) UNMAPPED + 0x10, clobber_abi("C"))
    });
    if let Some(t) = t {
        check_eq("#PF fetch cr2", t.cr2, UNMAPPED + 0x10);
        check_eq("#PF fetch eip", t.eip, UNMAPPED + 0x10);
    }

    let l3 = start_info::start_info().pt_base;
    let t = expect_fault(
        "#PF write to own L3 (read-only), ec 3",
        14,
        Some(3),
        // SAFETY: the asm faults into the runtime's handler, which
        // unwinds to this catch; it writes back the value already there,
        // in case it is allowed.
        || unsafe { asm!("mov {t}, [{p}]", "mov [{p}], {t}", p = in(reg) l3, t = out(reg) _) },
    );
    if let Some(t) = t {
        check_eq("#PF L3 write cr2", t.cr2, l3);
    }
}

/// `mov %cr2, %eax` (emulated: the last #PF address bounced).
fn cpu_cr2() -> u32 {
    let v: u32;
    // SAFETY: a read the hypervisor emulates; no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nostack, nomem)) };
    v
}

fn upcall_mask_cases() {
    // Events masked (start of day).
    match ud2() {
        Err(t) if t.vector == 6 => {
            check_eq("masked: saved mask in cs[23:16] = 1", t.saved_mask(), 1);
            check_eq("masked: frame eflags.IF = 0", t.eflags & EFLAGS_IF, 0);
            check_eq("masked: mask on entry = 1", t.mask_on_entry, 1);
        }
        r => fail("masked: #UD", format_args!("{:?}", r)),
    }
    check_eq("masked: mask after = 1", upcall_mask(), 1);

    // Events unmasked; the #UD entry has TI_IF.
    set_upcall_mask(0);
    match ud2() {
        Err(t) if t.vector == 6 => {
            check_eq("unmasked: saved mask in cs[23:16] = 0", t.saved_mask(), 0);
            check_eq(
                "unmasked: frame eflags.IF = 1",
                t.eflags & EFLAGS_IF,
                EFLAGS_IF,
            );
            check_eq("unmasked: TI_IF entry masks events", t.mask_on_entry, 1);
        }
        r => fail("unmasked: #UD", format_args!("{:?}", r)),
    }
    check_eq("unmasked: mask 0 again after the catch", upcall_mask(), 0);

    // The same with a #UD entry without TI_IF.
    let rc = traps::set_trap_table(&[trap_info(6, 0, false), TRAP_TABLE_END]);
    check_rc("set_trap_table #UD without TI_IF", rc, 0);
    match ud2() {
        Err(t) if t.vector == 6 => {
            check_eq(
                "entry without TI_IF leaves events unmasked",
                t.mask_on_entry,
                0,
            );
        }
        r => fail("unmasked, no TI_IF: #UD", format_args!("{:?}", r)),
    }
    let rc = traps::set_trap_table(&[trap_info(6, 0, true), TRAP_TABLE_END]);
    check_rc("set_trap_table #UD with TI_IF again", rc, 0);
    set_upcall_mask(1);
}

static FORCE: GuestCell<Action> = GuestCell::new(Action::Resume);

fn forced_bp(_f: &mut TrapFrame, _t: &Trap) -> Action {
    FORCE.get()
}

/// `int3` with eax = 0xa5a5a5a5; returns eax afterwards.
fn int3_eax() -> u32 {
    let a: u32;
    // SAFETY: int3 bounces to our #BP entry, which resumes after it.
    unsafe { asm!("mov eax, 0xa5a5a5a5", "int3", out("eax") a) };
    a
}

fn iret_paths() {
    // Unmasked, #BP entry with TI_IF: the handler runs masked and the
    // frame wants IF: HYPERVISOR_iret, which unmasks.
    set_upcall_mask(0);
    let eax = int3_eax();
    let t = traps::last();
    check_eq("unmasked #BP: mask on entry 1 (TI_IF)", t.mask_on_entry, 1);
    check_same(
        "unmasked #BP: left through HYPERVISOR_iret",
        traps::last_exit_was_hypercall(),
        Some(true),
    );
    check_eq(
        "HYPERVISOR_iret to ring 1: mask := !eflags.IF = 0",
        upcall_mask(),
        0,
    );
    check_eq(
        "HYPERVISOR_iret restores eax from the stub's push",
        eax,
        0xa5a5_a5a5,
    );

    // Unmasked, but a handler forcing a native iret: the mask stays as
    // the bounce left it (1).
    FORCE.set(Action::ResumeNative);
    traps::set_handler(3, Some(forced_bp));
    let eax = int3_eax();
    check_same(
        "forced native iret: leaves the mask alone (1)",
        (upcall_mask(), traps::last_exit_was_hypercall()),
        (1, Some(false)),
    );
    check_eq("native iret keeps eax", eax, 0xa5a5_a5a5);

    // Masked, a handler forcing HYPERVISOR_iret: mask := 1 (IF 0 in the
    // frame), eax restored.
    FORCE.set(Action::ResumeHypercall);
    let eax = int3_eax();
    check_same(
        "forced HYPERVISOR_iret while masked: mask stays 1",
        (upcall_mask(), traps::last_exit_was_hypercall()),
        (1, Some(true)),
    );
    check_eq("forced HYPERVISOR_iret restores eax", eax, 0xa5a5_a5a5);
    traps::set_handler(3, None);

    // Unmasked with a #BP entry without TI_IF: the mask is already right,
    // native iret.
    let rc = traps::set_trap_table(&[trap_info(3, 3, false), TRAP_TABLE_END]);
    check_rc("set_trap_table #BP without TI_IF", rc, 0);
    set_upcall_mask(0);
    int3_eax();
    check_same(
        "unmasked #BP without TI_IF: mask on entry 0, native iret",
        (
            traps::last().mask_on_entry,
            traps::last_exit_was_hypercall(),
            upcall_mask(),
        ),
        (0, Some(false), 0),
    );
    set_upcall_mask(1);
    let rc = traps::set_trap_table(&[trap_info(3, 3, true), TRAP_TABLE_END]);
    check_rc("set_trap_table #BP with TI_IF again", rc, 0);
}

fn event_upcall() {
    let mut ipi = abi::EvtchnBindIpi { vcpu: 0, port: 0 };
    // SAFETY: the hypervisor writes the OUT port of our struct.
    let rc = unsafe {
        hypercall::event_channel_op(abi::EVTCHNOP_BIND_IPI, va(core::ptr::addr_of_mut!(ipi)))
    };
    if !check_rc("EVTCHNOP_bind_ipi(vcpu 0)", rc, 0) {
        return;
    }
    let send = abi::EvtchnSend { port: ipi.port };
    let before = traps::count();
    // SAFETY: the hypervisor only reads the struct.
    let rc = unsafe { hypercall::event_channel_op(abi::EVTCHNOP_SEND, va(&send)) };
    check_rc("EVTCHNOP_send while masked", rc, 0);
    check(
        "masked: no upcall, evtchn_upcall_pending set",
        traps::count() == before && start_info::upcall_pending() == 1,
        format_args!(
            "{} bounce(s), pending {}",
            traps::count() - before,
            start_info::upcall_pending()
        ),
    );

    // Unmask; the exit path of any hypercall delivers the upcall.
    let delivered = pvguest32::events::delivered();
    set_upcall_mask(0);
    hypercall::force_event_check();
    let t = traps::last();
    if !check(
        "unmask + hypercall: event upcall delivered",
        traps::count() == before + 1 && t.vector == traps::VEC_EVENT,
        format_args!("{} bounce(s), last {}", traps::count() - before, t),
    ) {
        set_upcall_mask(1);
        return;
    }
    check_eq("upcall frame cs 0xe019", t.cs_sel(), FLAT_RING1_CS);
    check_eq("upcall frame saved mask 0", t.saved_mask(), 0);
    check_eq("upcall frame eflags.IF 1", t.eflags & EFLAGS_IF, EFLAGS_IF);
    check_eq("upcall: events masked on entry", t.mask_on_entry, 1);
    check_eq(
        "upcall: no error code in the frame (trap shape)",
        t.frame_base,
        t.frame_top - 12,
    );
    check_same(
        "upcall: the port was pending",
        (
            pvguest32::events::delivered() - delivered,
            pvguest32::events::last_port(),
        ),
        (1, ipi.port),
    );
    check_same(
        "upcall: left through HYPERVISOR_iret (unmasks)",
        traps::last_exit_was_hypercall(),
        Some(true),
    );
    check_eq("upcall: mask 0 afterwards", upcall_mask(), 0);
    set_upcall_mask(1);
    let close = abi::EvtchnClose { port: ipi.port };
    // SAFETY: the hypervisor only reads the struct.
    let rc = unsafe { hypercall::event_channel_op(abi::EVTCHNOP_CLOSE, va(&close)) };
    check_rc("EVTCHNOP_close", rc, 0);
}

// --------------------------------------------------------------------------
// Ring 3.
// --------------------------------------------------------------------------

/// Written by ring 3 (so on a user page): [cs, ss, ds, marker].
#[link_section = ".user.data"]
static USER_SAW: GuestCell<[u32; 4]> = GuestCell::new([0; 4]);
/// Written by ring 3: [eip of the instruction under test (or of the one
/// after, for traps), eax after it].
#[link_section = ".user.data"]
static USER_AT: GuestCell<[u32; 2]> = GuestCell::new([0; 2]);

pvguest32::user_fn!(fn user_selectors() {
    "mov %cs, %eax",
    "movl %eax, {saw}",
    "mov %ss, %eax",
    "movl %eax, {saw}+4",
    "mov %ds, %eax",
    "movl %eax, {saw}+8",
    "movl $0x600d, {saw}+12",
    "ret",
    saw = sym USER_SAW
});

pvguest32::user_fn!(fn user_int82() {
    "movl $2f, {at}",
    "mov $17, %eax",
    "2: int $0x82",
    "ret",
    at = sym USER_AT
});

pvguest32::user_fn!(fn user_int80() {
    "movl $2f, {at}",
    "mov $0x80, %eax",
    "int $0x80",
    "2: movl %eax, {at}+4",
    "movl $0x80, {saw}+12",
    "ret",
    at = sym USER_AT,
    saw = sym USER_SAW
});

pvguest32::user_fn!(fn user_read_kernel_page() {
    "movl {ko}, %eax",
    "ret",
    ko = sym KERNEL_ONLY
});

pvguest32::user_fn!(fn user_hlt() { "hlt", "ret" });

pvguest32::user_fn!(fn user_ud2() { "ud2", "ret" });

/// The checks of a frame from ring 3: the 5-word frame on the
/// stack_switch stack, cs 0xe02b, ss 0xe033.
fn ring3_frame(what: &str, t: &Trap) -> bool {
    let ok = t.outer
        && t.cs_sel() == FLAT_RING3_CS
        && t.ss == u32::from(FLAT_RING3_DS)
        && t.frame_top == KERNEL_STACK.top()
        && (USER_STACK.bottom()..=USER_STACK.top()).contains(&t.esp);
    check(
        what,
        ok,
        format_args!(
            "{} (want cs 0xe02b, ss 0xe033, top {:#x})",
            t,
            KERNEL_STACK.top()
        ),
    )
}

fn user_mode() {
    if let Err((what, rc)) = traps::setup_user_mode() {
        fail(
            "ring 3 set-up",
            format_args!("{what}: {}", pvguest32::report::Rc(rc)),
        );
        return;
    }
    pass("stack_switch(0xe021, kernel stack) and user pages");

    // In and out.
    USER_SAW.set([0; 4]);
    let r = run_user(user_selectors);
    let saw = USER_SAW.get();
    if !check(
        "ring 3 entered with a native iret and left with int3",
        r.is_ok() && saw[3] == 0x600d,
        format_args!("{:?}, saw {:x?}", r, saw),
    ) {
        return;
    }
    check_eq(
        "ring 3: cs = FLAT_RING3_CS (0xe02b, CPL 3)",
        saw[0] & 0xffff,
        u32::from(FLAT_RING3_CS),
    );
    check_same(
        "ring 3: ss = ds = FLAT_RING3_DS (0xe033)",
        [saw[1] & 0xffff, saw[2] & 0xffff],
        [u32::from(FLAT_RING3_DS); 2],
    );
    let t = traps::last();
    ring3_frame(
        "#BP from ring 3: eip, cs, eflags, esp, ss on the stack_switch stack",
        &t,
    );
    check_eq(
        "#BP from ring 3: eip after the int3",
        t.eip,
        traps::user_ret2kern(),
    );
    check_same(
        "#BP from ring 3: saved mask 1, IF 0",
        (t.saved_mask(), t.eflags & EFLAGS_IF),
        (1, 0),
    );
    check_eq("back in ring 1 after the unwind", cpu::cpl(), 1);

    // int $0x82 from ring 3: the hypercall gate is DPL 1.
    match run_user(user_int82) {
        Err(t) if t.vector == 13 => {
            check_eq(
                "int $0x82 from ring 3: #GP ec (0x82<<3)|2",
                t.error_code,
                (0x82 << 3) | 2,
            );
            check_eq(
                "int $0x82 from ring 3: eip at the int",
                t.eip,
                USER_AT.get()[0],
            );
            ring3_frame("int $0x82 from ring 3: ring-3 frame", &t);
        }
        r => fail("int $0x82 from ring 3: #GP", format_args!("{:?}", r)),
    }

    // int $0x80 from ring 3: delivered and resumed in ring 3 (native iret
    // ring 1 -> ring 3), then on to the final int3.
    int80_from_user("masked", false);
    // The same with events unmasked: resumed through HYPERVISOR_iret.
    set_upcall_mask(0);
    int80_from_user("unmasked", true);
    set_upcall_mask(1);

    // #PF reading a supervisor-only page.
    match run_user(user_read_kernel_page) {
        Err(t) if t.vector == 14 => {
            check_eq(
                "#PF from ring 3 on a supervisor page: ec 5 (P|U)",
                t.error_code,
                5,
            );
            check_eq("#PF from ring 3: cr2", t.cr2, KERNEL_ONLY.addr());
            ring3_frame("#PF from ring 3: ring-3 frame with error code", &t);
        }
        r => fail(
            "#PF from ring 3 on a supervisor page",
            format_args!("{:?}", r),
        ),
    }

    let r = run_user(user_hlt);
    check(
        "hlt in ring 3: #GP(0)",
        matches!(r, Err(t) if t.vector == 13 && t.error_code == 0 && t.from_user()),
        format_args!("{:?}", r),
    );
    let r = run_user(user_ud2);
    check(
        "ud2 in ring 3: #UD from ring 3",
        matches!(r, Err(t) if t.vector == 6 && t.from_user()),
        format_args!("{:?}", r),
    );
}

fn record_int80(_f: &mut TrapFrame, t: &Trap) -> Action {
    INT80_TRAP.set(*t);
    Action::Resume
}

fn int80_from_user(what: &str, via_hypercall: bool) {
    traps::set_handler(traps::VEC_INT80, Some(record_int80));
    let before = traps::count();
    USER_SAW.set([0; 4]);
    USER_AT.set([0; 2]);
    let r = run_user(user_int80);
    traps::set_handler(traps::VEC_INT80, None);
    let saw = USER_SAW.get()[3];
    // Two bounces: the int $0x80 and the final int3.
    if !check(
        &join("int $0x80 from ring 3 resumed in ring 3, ", what),
        r.is_ok() && saw == 0x80 && traps::count() == before + 2,
        format_args!(
            "{:?}, marker {:#x}, {} bounce(s)",
            r,
            saw,
            traps::count() - before
        ),
    ) {
        return;
    }
    check_eq(
        &join("int $0x80 from ring 3 kept eax, ", what),
        USER_AT.get()[1],
        0x80,
    );
    check_same(
        &join(
            "int $0x80 from ring 3: native iret if masked, HYPERVISOR_iret if not: ",
            what,
        ),
        traps::last_exit_was_hypercall(),
        Some(via_hypercall),
    );
    let t = INT80_TRAP.get();
    ring3_frame(&join("int $0x80 from ring 3: ring-3 frame, ", what), &t);
    check_eq(
        &join("int $0x80 from ring 3: eip after the int, ", what),
        t.eip,
        USER_AT.get()[0],
    );
}

static INT80_TRAP: GuestCell<Trap> = GuestCell::new(Trap {
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

/// `case` and `what` in one string (fixed buffer: no allocator).
fn join(case: &str, what: &str) -> Joined {
    let mut j = Joined([0; 96], 0);
    for b in case.bytes().chain(what.bytes()) {
        if j.1 < j.0.len() {
            j.0[j.1] = b;
            j.1 += 1;
        }
    }
    j
}

struct Joined([u8; 96], usize);

impl core::ops::Deref for Joined {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.0[..self.1]).unwrap_or("?")
    }
}
