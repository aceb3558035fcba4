//! set_trap_table, set_callbacks, callback_op, stack_switch,
//! fpu_taskswitch.

use core::arch::asm;

use pvguest32::abi::{self, CallbackUnregister};
use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_SS, FLAT_RING3_CS, FLAT_RING3_SS};
use pvguest32::cell::{GuestCell, Stack};
use pvguest32::cpu::{self, CR0_TS};
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_eq, check_rc, fail, pass, Rc};
use pvguest32::traps::{self, catch, trap_info, Trap, TRAP_TABLE_END};
use pvguest32::va;

use crate::common::*;

/// `ud2` inside a catch: the runtime's #UD entry must get it.
fn ud2() -> Result<(), Trap> {
    // SAFETY: the ud2 bounces to the runtime, which unwinds to the catch.
    catch(|| unsafe { asm!("ud2") })
}

pub fn set_trap_table() {
    check_rc(
        "set_trap_table: runtime table (8-byte entries, cs 0xe019)",
        traps::set_trap_table(&traps::default_trap_table()),
        0,
    );
    // SAFETY: refused calls change nothing.
    unsafe {
        check_rc(
            "set_trap_table: unmapped pointer -EFAULT",
            hc::set_trap_table(UNMAPPED),
            EFAULT,
        );
    }
    // An RPL-0 selector would run the handler in ring 0: as Xen
    // (fixup_guest_code_selector), its RPL is raised to 1 and the call
    // answers 0; the handler then runs on 0xe019, in ring 1.
    let mut rpl0 = trap_info(6, 0, true);
    rpl0.cs = RING1_CS_RPL0 as u16;
    check_rc(
        "set_trap_table: RPL-0 selector 0xe018 taken, RPL raised to 1 (0)",
        traps::set_trap_table(&[rpl0, TRAP_TABLE_END]),
        0,
    );
    let r = ud2();
    check(
        "set_trap_table: the #UD handler registered with 0xe018 runs on 0xe019",
        matches!(r, Err(t) if t.vector == 6 && t.cs_sel() == FLAT_RING1_CS),
        format_args!("{:?}", r),
    );
    // SAFETY: NULL clears the virtual IDT; it is installed again at once.
    let rc = unsafe { hc::set_trap_table(0) };
    traps::install_default_trap_table();
    check_rc("set_trap_table: NULL clears the table (0)", rc, 0);
}

pub fn set_callbacks() {
    let cs = u32::from(FLAT_RING1_CS);
    check_rc(
        "set_callbacks(0xe019, event, 0xe019, failsafe)",
        traps::install_callbacks(),
        0,
    );
    // As Xen's compat_set_callbacks: an RPL-0 selector is raised to 1, a
    // ring-3 one kept; the call always answers 0 (a selector the CPU
    // refuses would be the guest's fault when the callback runs).
    check_rc(
        "set_callbacks: RPL-0 event selector taken (0)",
        traps::set_callbacks_with(RING1_CS_RPL0, cs),
        0,
    );
    check_rc(
        "set_callbacks: RPL-0 failsafe selector taken (0)",
        traps::set_callbacks_with(cs, RING1_CS_RPL0),
        0,
    );
    check_rc(
        "set_callbacks: ring-3 event selector 0xe02b taken (0)",
        traps::set_callbacks_with(u32::from(FLAT_RING3_CS), cs),
        0,
    );
    check_rc(
        "set_callbacks: good pair again",
        traps::install_callbacks(),
        0,
    );
}

fn unregister(type_: u16) -> i32 {
    let u = CallbackUnregister { type_, _unused: 0 };
    // SAFETY: the hypervisor only reads the struct; unregistering NMI is
    // harmless, the others are refused.
    unsafe { hc::callback_op(abi::CALLBACKOP_UNREGISTER, va(&u)) }
}

pub fn callback_op() {
    let cs = u32::from(FLAT_RING1_CS);
    check_rc(
        "callback_op register event (12-byte callback_register, cs 0xe019)",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0, cs),
        0,
    );
    check_rc(
        "callback_op register failsafe, CALLBACKF_mask_events",
        traps::register_callback(abi::CALLBACKTYPE_FAILSAFE, abi::CALLBACKF_MASK_EVENTS, cs),
        0,
    );
    check_rc(
        "callback_op register nmi",
        traps::register_callback(abi::CALLBACKTYPE_NMI, 0, cs),
        0,
    );
    check_rc(
        "callback_op register event, RPL-0 cs taken, RPL raised (0)",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0, RING1_CS_RPL0),
        0,
    );
    check_rc(
        "callback_op register failsafe, RPL-0 cs taken, RPL raised (0)",
        traps::register_callback(abi::CALLBACKTYPE_FAILSAFE, 0, RING1_CS_RPL0),
        0,
    );
    check_rc(
        "callback_op register syscall32 (type 7), CALLBACKF_mask_events (0)",
        traps::register_callback(abi::CALLBACKTYPE_SYSCALL32, abi::CALLBACKF_MASK_EVENTS, cs),
        0,
    );
    check_rc(
        "callback_op register sysenter (type 5), CALLBACKF_mask_events (0)",
        traps::register_callback(abi::CALLBACKTYPE_SYSENTER, abi::CALLBACKF_MASK_EVENTS, cs),
        0,
    );
    let addr = traps::entry_address(traps::VEC_EVENT).unwrap_or(0);
    // SAFETY: refused registrations change nothing.
    unsafe {
        check_rc(
            "callback_op register syscall (type 2) -ENOSYS",
            hc::register_callback(abi::CALLBACKTYPE_SYSCALL, 0, cs, addr),
            ENOSYS,
        );
        check_rc(
            "callback_op register, unmapped argument -EFAULT",
            hc::callback_op(abi::CALLBACKOP_REGISTER, UNMAPPED),
            EFAULT,
        );
    }
    check_rc(
        "callback_op unregister event -EINVAL",
        unregister(abi::CALLBACKTYPE_EVENT),
        EINVAL,
    );
    check_rc(
        "callback_op unregister failsafe -EINVAL",
        unregister(abi::CALLBACKTYPE_FAILSAFE),
        EINVAL,
    );
    check_rc(
        "callback_op unregister syscall32 -EINVAL",
        unregister(abi::CALLBACKTYPE_SYSCALL32),
        EINVAL,
    );
    check_rc(
        "callback_op unregister sysenter -EINVAL",
        unregister(abi::CALLBACKTYPE_SYSENTER),
        EINVAL,
    );
    // SAFETY: an unknown command changes nothing.
    check_rc(
        "callback_op unknown command 9 -EINVAL (Xen's compat_callback_op)",
        unsafe { hc::callback_op(9, UNMAPPED) },
        EINVAL,
    );
    check_rc(
        "callback_op unregister nmi 0",
        unregister(abi::CALLBACKTYPE_NMI),
        0,
    );
    check_rc(
        "callback_op register event again",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0, cs),
        0,
    );
}

/// Where a refused `stack_switch` would have moved bounces from ring 3;
/// they must keep landing on the runtime's `KERNEL_STACK` (checked by the
/// iret cases).
static OTHER_STACK: Stack<4096> = Stack::new();

pub fn stack_switch() {
    // SAFETY: KERNEL_STACK is the runtime's stack for bounces from ring 3.
    let rc = unsafe { hc::stack_switch(FLAT_RING1_SS.into(), traps::KERNEL_STACK.top()) };
    check_rc("stack_switch(0xe021, kernel stack)", rc, 0);
    // As Xen's do_stack_switch: an RPL-0 ss is raised to 1, a ring-3 one
    // kept, always 0. The runtime's stack is put back at once (no bounce
    // from ring 3 comes in between).
    // SAFETY: OTHER_STACK is a real stack; KERNEL_STACK is restored below.
    unsafe {
        check_rc(
            "stack_switch: RPL-0 ss 0xe020 taken (0)",
            hc::stack_switch(RING1_SS_RPL0, OTHER_STACK.top()),
            0,
        );
        check_rc(
            "stack_switch: ring-3 ss 0xe033 taken (0)",
            hc::stack_switch(FLAT_RING3_SS.into(), OTHER_STACK.top()),
            0,
        );
        check_rc(
            "stack_switch(0xe021, kernel stack) again",
            hc::stack_switch(FLAT_RING1_SS.into(), traps::KERNEL_STACK.top()),
            0,
        );
    }
    if let Err((what, rc)) = traps::setup_user_mode() {
        fail("ring 3 set-up", format_args!("{what}: {}", Rc(rc)));
    }
}

/// Where the `fninit` under test is.
static AT: GuestCell<u32> = GuestCell::new(0);

fn fninit() -> Result<(), Trap> {
    // SAFETY: fninit either runs or bounces #NM to the runtime, which
    // unwinds to the catch; the asm writes only AT and a scratch register.
    catch(|| unsafe {
        asm!(
            "lea {t}, [2f]",
            "mov [{at}], {t}",
            "2: fninit",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
        )
    })
}

pub fn fpu_taskswitch() {
    // Nothing between the hypercall and the fninit may touch the FPU or
    // SSE (the compiler uses SSE): the results are reported afterwards.
    let rc = hc::fpu_taskswitch(1);
    let cr0 = cpu::read_cr0();
    let r = fninit();
    let cr0_after = cpu::read_cr0();
    check_rc("fpu_taskswitch(1)", rc, 0);
    check_eq(
        "CR0.TS reads 1 after fpu_taskswitch(1)",
        cr0 & CR0_TS,
        CR0_TS,
    );
    match r {
        Err(t) if t.vector == 7 => {
            pass("fninit with TS: #NM bounced");
            check_eq("#NM eip at the fninit", t.eip, AT.get());
            check_eq("#NM frame cs 0xe019", t.cs_sel(), FLAT_RING1_CS);
        }
        r => fail("fninit with TS: #NM bounced", format_args!("{:?}", r)),
    }
    check_eq(
        "CR0.TS cleared by the #NM bounce (Xen: do_device_not_available)",
        cr0_after & CR0_TS,
        0,
    );

    let rc1 = hc::fpu_taskswitch(1);
    let rc0 = hc::fpu_taskswitch(0);
    let cr0 = cpu::read_cr0();
    let r = fninit();
    check_rc("fpu_taskswitch(1) again", rc1, 0);
    check_rc("fpu_taskswitch(0)", rc0, 0);
    check_eq("CR0.TS reads 0 after fpu_taskswitch(0)", cr0 & CR0_TS, 0);
    check(
        "fninit without TS runs",
        r.is_ok(),
        format_args!("trapped: {:?}", r),
    );
}
