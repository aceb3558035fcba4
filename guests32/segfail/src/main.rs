//! `guest32-segfail`: the failsafe callback of a 32-bit PAE PV kernel when
//! a data selector it has loaded no longer loads when the hypervisor
//! reloads it on a context switch (Xen's `load_segments`,
//! `xen/arch/x86/domain.c`, its compat part). Boot it beside another
//! domain that stays runnable for a while (tests/tests/pv32.rs: the 64-bit
//! guest-hello), so that `sched_op(yield)` switches away and back.
//!
//! Set-up: trap table; the failsafe callback with `callback_op` and
//! `CALLBACKF_mask_events`; a ring-1 stack (`stack_switch`); a GDT of its
//! own (`set_gdt`, one read-only frame): null, DPL-1 code, DPL-1 data
//! (selector 0x11).
//!
//! Cases:
//! - `%fs` = 0x11 loads, `%gs` = 0xe021 (a good selector beside the bad one);
//! - `update_descriptor` makes entry 2 not present (accepted: a
//!   not-present descriptor faults wherever it is used); `%fs` keeps its
//!   cached descriptor until it is reloaded;
//! - `sched_op(yield)`, at most [`MAX_YIELDS`] times: on the way back the
//!   hypervisor cannot reload `%fs` and must deliver the failsafe callback
//!   (no callback after all the yields is a FAIL), with Xen's 32-bit frame
//!   `ds, es, fs, gs, eip, cs | mask << 16, eflags`:
//!   - ds, es, fs, gs = 0xe021, 0xe021, 0x11, 0xe021 (the bad one as it
//!     was);
//!   - eip = right after the yield's `int $0x82`, cs 0xe019, saved mask 0
//!     and eflags.IF 1 (events were unmasked); no esp/ss slots (ring 1);
//!   - the frame right below the interrupted `%esp` (Xen: `ring_1(regs)`
//!     puts it on `regs->rsp`), 7 words;
//!   - events masked on entry (`CALLBACKF_mask_events`);
//! - afterwards `%fs` is null (Xen's `loadsegment` loads a null selector
//!   into the one that faults) and `%gs` still 0xe021 (the good ones are
//!   loaded as they were).
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

pvguest32::guest_main!("segfail32", run);

#[cfg(target_arch = "x86")]
use case::run;

#[cfg(target_arch = "x86")]
mod case {
    use core::arch::asm;
    use core::ptr::write_volatile;

    use pvguest32::abi::{self, x86_32::StartInfo32};
    use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_DS};
    use pvguest32::cell::{GuestCell, Page};
    use pvguest32::cpu::{self, EFLAGS_IF};
    use pvguest32::hypercall::{self as hc, hypercall};
    use pvguest32::println;
    use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info};
    use pvguest32::start_info::{
        self, set_upcall_mask, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW,
    };
    use pvguest32::traps::{self, catch, KERNEL_STACK};
    use pvguest32::va;

    /// Yields before giving up on the failsafe callback.
    const MAX_YIELDS: u32 = 1000;

    /// The guest's GDT: null, code, data.
    static GDT: Page = Page::new();
    /// 32-bit flat code, DPL 1 (access 0xba).
    const CODE32_DPL1: u64 = 0x00cf_ba00_0000_ffff;
    /// 32-bit flat data, DPL 1 (access 0xb2).
    const DATA_DPL1: u64 = 0x00cf_b200_0000_ffff;
    const PRESENT: u64 = 1 << 47;
    /// GDT entry 2, RPL 1.
    const SEL: u16 = 0x11;

    /// [eip after the int $0x82, esp at it, yields made].
    static AT: GuestCell<u32> = GuestCell::new(0);
    static ESP_AT: GuestCell<u32> = GuestCell::new(0);
    static YIELDS: GuestCell<u32> = GuestCell::new(0);
    /// What `update_descriptor` (not present) answered, inside the catch
    /// ([`NOT_RECORDED`] until it is stored).
    static UPDATE_RC: GuestCell<i32> = GuestCell::new(NOT_RECORDED);
    /// The answer was not stored: the failsafe callback unwound the catch
    /// between the hypercall's return and the store (a time slice ended
    /// right there, and the switch back could not reload %fs).
    const NOT_RECORDED: i32 = i32::MIN;

    /// `update_descriptor` of entry 2 of the GDT frame `g`: the data
    /// segment, present or not.
    fn set_data_present(g: u32, present: bool) -> i32 {
        let maddr = (u64::from(g) << 12) + 2 * 8;
        let desc = if present {
            DATA_DPL1
        } else {
            DATA_DPL1 & !PRESENT
        };
        // SAFETY: a descriptor the hypervisor checks, in our own GDT frame.
        unsafe {
            hypercall(
                abi::HYPERVISOR_UPDATE_DESCRIPTOR,
                &[
                    maddr as u32,
                    (maddr >> 32) as u32,
                    desc as u32,
                    (desc >> 32) as u32,
                ],
            )
        }
    }

    fn mfn_of(va: u32) -> u32 {
        start_info::virt_to_mfn(va).expect("an image page outside the P2M")
    }

    fn remap(page: &Page, writable: bool) -> i32 {
        let flags = PTE_PRESENT | PTE_ACCESSED | if writable { PTE_RW | PTE_DIRTY } else { 0 };
        // SAFETY: the page's own frame at its own address.
        unsafe {
            hc::update_va_mapping(
                page.addr(),
                u64::from(mfn_of(page.addr())) << 12 | flags,
                abi::UVMF_INVLPG as u32,
            )
        }
    }

    /// One `sched_op(SCHEDOP_yield)` by a bare `int $0x82`, recording the
    /// address after it and `%esp` at it.
    fn yield_once() {
        // SAFETY: sched_op(yield) changes nothing of ours; esi and ebp
        // (which asm! cannot name) are saved around it; every argument
        // register is clobbered, as Xen's debug builds may.
        unsafe {
            asm!(
                "push ebp",
                "push esi",
                "lea edx, [2f]",
                "mov [edi], edx",
                "mov [ebx], esp",
                "xor ebx, ebx",
                "mov eax, {op}",
                "int 0x82",
                "2:",
                "pop esi",
                "pop ebp",
                op = const abi::HYPERVISOR_SCHED_OP,
                out("eax") _, inout("ebx") ESP_AT.as_ptr() => _, inout("ecx") abi::SCHEDOP_YIELD => _,
                out("edx") _, inout("edi") AT.as_ptr() => _,
            )
        }
    }

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
        let rc = unsafe { hc::stack_switch(FLAT_RING1_DS.into(), KERNEL_STACK.top()) };
        check_rc("stack_switch", rc, 0);

        let g = mfn_of(GDT.addr());
        let base = GDT.addr() as usize as *mut u64;
        // SAFETY: the page is ours, mapped writable until remapped below.
        unsafe {
            write_volatile(base, 0);
            write_volatile(base.add(1), CODE32_DPL1);
            write_volatile(base.add(2), DATA_DPL1);
        }
        if !check_rc("GDT page mapped read-only", remap(&GDT, false), 0) {
            return;
        }
        let frames = [g];
        // SAFETY: the table holds good descriptors; the running selectors
        // are the hypervisor's reserved ones.
        let rc = unsafe { hypercall(abi::HYPERVISOR_SET_GDT, &[va(frames.as_ptr()), 3]) };
        if !check_rc("set_gdt([frame], 3): null, DPL-1 code, DPL-1 data", rc, 0) {
            return;
        }
        // SAFETY: %fs and %gs are not used by this guest; both are good
        // DPL-1 data selectors (a #GP would end the test as unexpected).
        unsafe {
            asm!("mov fs, {0:e}", "mov gs, {1:e}", in(reg) u32::from(SEL), in(reg) u32::from(FLAT_RING1_DS),
                options(nostack))
        };
        let segs = [cpu::ds(), cpu::es(), cpu::fs(), cpu::gs()];
        check_same(
            "ds, es, fs, gs = 0xe021, 0xe021, 0x11, 0xe021",
            segs,
            [FLAT_RING1_DS, FLAT_RING1_DS, SEL, FLAT_RING1_DS],
        );

        println!("EXPECT-FAILSAFE");
        let mut attempt = 1;
        let (r, after) = loop {
            set_upcall_mask(0);
            AT.set(0);
            YIELDS.set(0);
            UPDATE_RC.set(NOT_RECORDED);
            // The descriptor is made not present inside the catch, right
            // before the yields: a time slice ending between the two would
            // otherwise deliver the failsafe callback outside it.
            // The failsafe callback unwinds to this catch.
            let r = catch(|| {
                let rc = set_data_present(g, false);
                UPDATE_RC.set(rc);
                if rc != 0 {
                    return;
                }
                while YIELDS.get() < MAX_YIELDS {
                    YIELDS.set(YIELDS.get() + 1);
                    yield_once();
                }
            });
            set_upcall_mask(1);
            let after = [cpu::fs(), cpu::gs()];
            // Preempted after the update but before the first yield (the
            // eip is then not one we recorded; perhaps even before the
            // answer was stored): set it up again and retry.
            let early = matches!(&r, Err(t) if t.vector == traps::VEC_FAILSAFE && AT.get() == 0);
            if (!early || UPDATE_RC.get() != NOT_RECORDED)
                && !check_rc(
                    "update_descriptor(entry 2, not present)",
                    UPDATE_RC.get(),
                    0,
                )
            {
                return;
            }
            if !early || attempt == 3 {
                break (r, after);
            }
            info(format_args!(
                "attempt {attempt}: the switch came before the first yield; again"
            ));
            attempt += 1;
            if !check_rc(
                "update_descriptor(entry 2, present again)",
                set_data_present(g, true),
                0,
            ) {
                return;
            }
            // SAFETY: entry 2 is a good DPL-1 data segment again.
            unsafe { asm!("mov fs, {0:e}", in(reg) u32::from(SEL), options(nostack)) };
        };
        let t = match r {
            Ok(()) => {
                return fail(
                    "failsafe callback on reloading %fs",
                    format_args!(
                        "none after {} yields (is another domain runnable?)",
                        YIELDS.get()
                    ),
                )
            }
            Err(t) => t,
        };
        if !check(
            "failsafe callback on reloading %fs",
            t.vector == traps::VEC_FAILSAFE,
            format_args!("got {} instead", t),
        ) {
            return;
        }
        info(format_args!(
            "failsafe after {} yield(s): {} segs {:x?} frame {:#x}..{:#x}, esp at the int {:#x}",
            YIELDS.get(),
            t,
            t.segs,
            t.frame_base,
            t.frame_top,
            ESP_AT.get()
        ));
        check_same(
            "failsafe frame ds, es, fs, gs = 0xe021, 0xe021, 0x11 (the bad one), 0xe021",
            t.segs,
            [FLAT_RING1_DS, FLAT_RING1_DS, SEL, FLAT_RING1_DS],
        );
        check_eq(
            "failsafe frame eip = after the yield's int $0x82",
            t.eip,
            AT.get(),
        );
        check_eq("failsafe frame cs 0xe019", t.cs_sel(), FLAT_RING1_CS);
        check_eq("failsafe frame saved mask 0", t.saved_mask(), 0);
        check_eq(
            "failsafe frame eflags.IF 1",
            t.eflags & EFLAGS_IF,
            EFLAGS_IF,
        );
        check_same(
            "failsafe frame: no esp/ss slots (ring 1 interrupted)",
            t.outer,
            false,
        );
        check_same(
            "failsafe frame (7 words) right below the interrupted esp",
            (t.frame_base, t.frame_top),
            (ESP_AT.get() - 28, ESP_AT.get()),
        );
        check_eq("failsafe masks events on entry", t.mask_on_entry, 1);
        check_same(
            "%fs null, %gs kept (0xe021) afterwards",
            after,
            [0, FLAT_RING1_DS],
        );
    }
}
