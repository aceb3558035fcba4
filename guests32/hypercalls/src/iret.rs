//! The iret hypercall (23) made by hand: the stub pushes `eax` on an
//! ordinary iret frame, and Xen's `compat_iret` (`xen/arch/x86/pv/iret.c`)
//! pops `eax, eip, cs, eflags` and, going to ring 3, `esp, ss`; it sets the
//! upcall mask to `!eflags.IF`.

use core::arch::asm;

use pvguest32::abi;
use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING3_CS, FLAT_RING3_DS};
use pvguest32::cell::GuestCell;
use pvguest32::cpu::{EFLAGS_IF, EFLAGS_RSVD1};
use pvguest32::report::{check, check_eq, check_same};
use pvguest32::start_info::{set_upcall_mask, upcall_mask};
use pvguest32::traps::{self, catch, KERNEL_STACK, USER_STACK};

const EFLAGS_CF: u32 = 1;

extern "C" {
    /// `head.S`: the page the domain builder fills with stubs.
    static hypercall_page: [u8; 4096];
}

/// Offset of the iret stub in the hypercall page.
const IRET_STUB: usize = abi::HYPERVISOR_IRET as usize * abi::HYPERCALL_STUB_SIZE;

/// HYPERVISOR_iret to ring 1 at the next instruction with `eflags`;
/// returns (eax, CF, how far esp moved).
fn iret_ring1(eflags: u32) -> (u32, bool, u32) {
    let (eax, cf, moved): (u32, u8, u32);
    // SAFETY: the frame resumes right after the jump, on the same stack:
    // the stub's push and the four words the hypercall pops balance the
    // three pushes here.
    unsafe {
        asm!(
            "mov %esp, {moved}",
            "push {fl}",
            "push ${cs}",
            "push $2f",
            "jmp {hp}+{off}",
            "2:",
            "setc {cf}",
            "sub %esp, {moved}",
            moved = out(reg) moved,
            fl = in(reg) eflags,
            cs = const FLAT_RING1_CS as u32,
            hp = sym hypercall_page,
            off = const IRET_STUB,
            cf = lateout(reg_byte) cf,
            inout("eax") 0x600d_cafeu32 => eax,
            options(att_syntax),
        );
    }
    (eax, cf != 0, moved)
}

/// Written in ring 3: [cs, ss, eax on entry, marker].
#[link_section = ".user.data"]
static USER_SAW: GuestCell<[u32; 4]> = GuestCell::new([0; 4]);

pvguest32::user_fn!(fn user_record() {
    "movl %eax, {saw}+8",
    "mov %cs, %eax",
    "movl %eax, {saw}",
    "mov %ss, %eax",
    "movl %eax, {saw}+4",
    "movl $0x600d, {saw}+12",
    "ret",
    saw = sym USER_SAW
});

extern "C" {
    /// The runtime's ring-3 trampoline (entry.S): calls `%ebx`, then
    /// `int3` back to the kernel.
    fn pvguest32_user_trampoline();
}

/// The frame for the iret to ring 3: [eax slot (the stub's push), eip,
/// cs, eflags, esp, ss].
static FRAME: GuestCell<[u32; 6]> = GuestCell::new([0; 6]);

/// HYPERVISOR_iret to ring 3 (the runtime's trampoline, which calls
/// `user_record` and comes back with int3) with `eflags`.
fn iret_ring3(eflags: u32) -> Result<(), traps::Trap> {
    FRAME.set([
        0,
        pvguest32_user_trampoline as *const () as usize as u32,
        u32::from(FLAT_RING3_CS),
        eflags,
        USER_STACK.top(),
        u32::from(FLAT_RING3_DS),
    ]);
    catch(|| {
        // SAFETY: leaves ring 1 for good, on FRAME as the stack: the stub
        // pushes eax into its first word and the hypercall pops the rest.
        // The int3 at the end of the trampoline unwinds to this catch (the
        // runtime's #BP entry has DPL 3 and knows the return address).
        // ds/es get the ring-3 selector first (an iret to ring 3 would
        // null a ring-1 one, and a null ds faults in compatibility mode).
        unsafe {
            asm!(
                "mov {ds}, %ds",
                "mov {ds}, %es",
                "lea 4({f}), %esp",
                "jmp {hp}+{off}",
                ds = in(reg) u32::from(FLAT_RING3_DS),
                f = in(reg) FRAME.as_ptr(),
                hp = sym hypercall_page,
                off = const IRET_STUB,
                in("ebx") user_record as *const () as usize as u32,
                in("eax") 0x3333_3333u32,
                options(att_syntax, noreturn),
            )
        }
    })
}

pub fn run() {
    let mask = upcall_mask();
    let (eax, cf, moved) = iret_ring1(EFLAGS_RSVD1 | EFLAGS_IF | EFLAGS_CF);
    let after_if = upcall_mask();
    let (eax0, cf0, moved0) = iret_ring1(EFLAGS_RSVD1);
    let after_noif = upcall_mask();
    set_upcall_mask(mask);
    check_same(
        "HYPERVISOR_iret to ring 1: eax from the stub's push, CF from the frame, stack balanced",
        (eax, cf, moved),
        (0x600d_cafe, true, 0u32),
    );
    check_eq("HYPERVISOR_iret to ring 1, IF 1: mask 0", after_if, 0);
    check_same(
        "HYPERVISOR_iret to ring 1, IF 0: mask 1, CF clear, balanced",
        (after_noif, eax0, cf0, moved0),
        (1u8, 0x600d_cafe, false, 0u32),
    );

    for (what, eflags, mask) in [
        ("IF 1", EFLAGS_RSVD1 | EFLAGS_IF, 0u8),
        ("IF 0", EFLAGS_RSVD1, 1u8),
    ] {
        USER_SAW.set([0; 4]);
        let r = iret_ring3(eflags);
        let saw = USER_SAW.get();
        let t = traps::last();
        let case = crate::common::join("HYPERVISOR_iret to ring 3, ", what);
        if !check(
            &case,
            r.is_ok() && saw[3] == 0x600d,
            format_args!("{:?}, saw {:x?}", r, saw),
        ) {
            continue;
        }
        check_same(
            &crate::common::join(
                "ring 3 after HYPERVISOR_iret: cs 0xe02b, ss 0xe033, eax from the frame, ",
                what,
            ),
            [saw[0] & 0xffff, saw[1] & 0xffff, saw[2]],
            [
                u32::from(FLAT_RING3_CS),
                u32::from(FLAT_RING3_DS),
                0x3333_3333,
            ],
        );
        // The int3 back: from ring 3, on the stack_switch stack (the
        // refused stack_switch calls changed nothing), with the mask the
        // iret set in cs bits 16-23.
        check_same(
            &crate::common::join(
                "int3 from ring 3: outer frame on KERNEL_STACK, saved mask = !IF, ",
                what,
            ),
            (t.vector, t.outer, t.frame_top, t.saved_mask()),
            (3, true, KERNEL_STACK.top(), mask),
        );
    }
}
