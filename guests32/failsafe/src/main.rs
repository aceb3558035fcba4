//! `guest32-failsafe`: the failsafe callback of a 32-bit PAE PV kernel and
//! its 32-bit frame, when a bounce frame cannot be written.
//!
//! Set-up: trap table; the event callback with `set_callbacks`; the
//! failsafe callback with `callback_op` and `CALLBACKF_mask_events`
//! (`set_callbacks` has no flags); a good ring-1 stack (`stack_switch`).
//!
//! Case: in ring 1, `%esp` is pointed at an unmapped address and `ud2`
//! runs. The #UD frame cannot be written there, so the failsafe callback
//! must run instead (docs/design.md, docs/abi.md), with the 32-bit failsafe
//! frame `ds, es, fs, gs, eip, cs | mask << 16, eflags` (Xen's
//! `compat_create_bounce_frame` with `TBF_FAILSAFE`: the four selectors
//! below the trap frame; no esp/ss, ring 1 was interrupted):
//! - eip = the `ud2`, cs 0xe019, saved mask 0 and eflags.IF 1 (events were
//!   unmasked);
//! - ds, es, fs, gs = the selectors the guest had loaded;
//! - events masked on entry (`CALLBACKF_mask_events`);
//! - the frame on the `stack_switch` stack, the interrupted one being
//!   unusable (that is ringvisor's choice, which the test expects; the
//!   frame's top is printed either way).
//!
//! Then the same with a #PF (a read of an unmapped address) for the
//! broken stack: the failsafe callback again, with CR2 (`vcpu_info`'s
//! `arch.cr2` and the emulated `mov %cr2`) the address read, not the
//! stack where the #PF frame could not be written (bounce.S's
//! `bounce32_pf_store_fault` puts the guest's CR2 back before the Rust way
//! reads it again).
//!
//! Xen differs, by its source (no 32-bit PV to run here): it uses the
//! failsafe callback when reloading the guest's selectors or its `iret`
//! fails (`compat_failsafe_callback` in `x86_64/compat/entry.S`), and
//! crashes the domain when it cannot write a bounce frame
//! (`compat_crash_page_fault`).
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

pvguest32::guest_main!("failsafe32", run);

#[cfg(target_arch = "x86")]
use case::run;

#[cfg(target_arch = "x86")]
mod case {
    use core::arch::asm;

    use pvguest32::abi::{self, x86_32::StartInfo32};
    use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_DS};
    use pvguest32::cell::GuestCell;
    use pvguest32::cpu::{self, EFLAGS_IF};
    use pvguest32::println;
    use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info};
    use pvguest32::start_info::set_upcall_mask;
    use pvguest32::traps::{self, catch, KERNEL_STACK};

    /// Unmapped (nothing of the bootstrap region lives in 1-2 GiB): every
    /// write of a bounce frame there faults.
    const BAD_STACK: u32 = 0x5ead_c000;

    /// [eip of the ud2] as stored by the asm.
    static AT: GuestCell<u32> = GuestCell::new(0);

    pub fn run(_si: &StartInfo32) {
        traps::install_default_trap_table();
        check_rc(
            "set_callbacks(0xe019, event, 0xe019, failsafe)",
            traps::install_callbacks(),
            0,
        );
        check_rc(
            "callback_op register failsafe (mask events)",
            traps::register_callback(
                abi::CALLBACKTYPE_FAILSAFE,
                abi::CALLBACKF_MASK_EVENTS,
                FLAT_RING1_CS.into(),
            ),
            0,
        );
        // SAFETY: KERNEL_STACK is unused otherwise.
        let rc =
            unsafe { pvguest32::hypercall::stack_switch(FLAT_RING1_DS.into(), KERNEL_STACK.top()) };
        check_rc("stack_switch", rc, 0);

        let segs = [cpu::ds(), cpu::es(), cpu::fs(), cpu::gs()];
        // Unmask events, so that "masked on entry" is the callback's doing.
        set_upcall_mask(0);
        println!("EXPECT-FAILSAFE");
        // SAFETY: the ud2 with the broken esp must end in the failsafe
        // callback, which unwinds to this catch (esp comes back from the
        // catch); writes only AT.
        let r = catch(|| unsafe {
            asm!(
                "lea {t}, [2f]",
                "mov [{at}], {t}",
                "mov {t}, esp",
                "mov esp, {bad}",
                "2: ud2",
                "mov esp, {t}",
                t = out(reg) _,
                at = in(reg) AT.as_ptr(),
                bad = in(reg) BAD_STACK,
            )
        });
        set_upcall_mask(1);
        let t = match r {
            Ok(()) => return fail("failsafe callback", format_args!("ud2 did not trap")),
            Err(t) => t,
        };
        if !check(
            "failsafe callback",
            t.vector == traps::VEC_FAILSAFE,
            format_args!("got {} instead", t),
        ) {
            return;
        }
        check_eq("failsafe frame eip = the ud2", t.eip, AT.get());
        check_eq("failsafe frame cs 0xe019", t.cs_sel(), FLAT_RING1_CS);
        check_eq("failsafe frame saved mask 0", t.saved_mask(), 0);
        check_eq(
            "failsafe frame eflags.IF 1",
            t.eflags & EFLAGS_IF,
            EFLAGS_IF,
        );
        check_eq("failsafe masks events on entry", t.mask_on_entry, 1);
        check_same(
            "failsafe frame ds, es, fs, gs = loaded selectors",
            t.segs,
            segs,
        );
        check_same(
            "failsafe frame: no esp/ss slots (ring 1 interrupted)",
            t.outer,
            false,
        );
        check_same(
            "failsafe frame (7 words) on the stack_switch stack",
            (t.frame_base, t.frame_top),
            (KERNEL_STACK.top() - 28, KERNEL_STACK.top()),
        );
        info(format_args!(
            "failsafe frame: {} segs {:x?} {:#x}..{:#x}",
            t, t.segs, t.frame_base, t.frame_top
        ));
        page_fault_case();
    }

    /// Unmapped, in 1-2 GiB as `BAD_STACK` but another page: the #PF's
    /// address.
    const UNMAPPED_DATA: u32 = 0x4bad_0000;

    /// [eip of the faulting read] as stored by the asm.
    static AT_PF: GuestCell<u32> = GuestCell::new(0);

    /// A read of `UNMAPPED_DATA` with the broken esp: the failsafe
    /// callback, and CR2 (the `vcpu_info`'s and the emulated `mov %cr2`)
    /// is the address read, not one of the broken stack's.
    fn page_fault_case() {
        set_upcall_mask(0);
        // SAFETY: as above: the read with the broken esp must end in the
        // failsafe callback, which unwinds to this catch; writes only
        // AT_PF.
        let r = catch(|| unsafe {
            asm!(
                "lea {t}, [2f]",
                "mov [{at}], {t}",
                "mov {t}, esp",
                "mov esp, {bad}",
                "2: mov {addr}, [{addr}]",
                "mov esp, {t}",
                t = out(reg) _,
                at = in(reg) AT_PF.as_ptr(),
                bad = in(reg) BAD_STACK,
                addr = inout(reg) UNMAPPED_DATA => _,
            )
        });
        set_upcall_mask(1);
        let t = match r {
            Ok(()) => {
                return fail(
                    "failsafe after a #PF",
                    format_args!("the read did not fault"),
                )
            }
            Err(t) => t,
        };
        if !check(
            "failsafe after a #PF",
            t.vector == traps::VEC_FAILSAFE,
            format_args!("got {} instead", t),
        ) {
            return;
        }
        check_eq("failsafe after a #PF: eip = the read", t.eip, AT_PF.get());
        check_eq(
            "failsafe after a #PF: vcpu_info cr2 = the address read",
            pvguest32::start_info::cr2(),
            UNMAPPED_DATA,
        );
        let cr2: u32;
        // SAFETY: a read the hypervisor emulates; no side effect.
        unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nostack, nomem)) };
        check_eq(
            "failsafe after a #PF: mov %cr2 = the address read",
            cr2,
            UNMAPPED_DATA,
        );
    }
}
