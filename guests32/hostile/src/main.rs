//! `guest32-hostile`: hostile checks on the 32-bit (compat) PV ABI. Each
//! case is a regression test for a hypervisor fix; every PASS depends on
//! an answer of the hypervisor (an error code, a frame's words).
//!
//! Command line: `only=NAME` runs one group (`poll`, `syscall`, `iret`,
//! `upcall`, `debugreg`, `rpl0-iret`) or one case (`7a`..`7d`, `6`,
//! `9`, `5a`..`5d`);
//! without it every group but `rpl0-iret` runs, least dangerous first:
//! 6, 7c, 7d, 7b, 7a, 5a, 5c, 5b, 5d (the hypervisor at 256b2ae fails 6
//! and 7c visibly, hangs on 7d/7b/7a, crashes the domain on 5a/5c and
//! faults itself on 5b/5d).
//!
//! Set-up: the runtime's trap table and callbacks, user mode
//! (`stack_switch`, U bits on the user pages), a GDT of its own (one frame,
//! `set_gdt`, 6 entries): 0 a DPL-3 code descriptor (a null selector
//! whatever it holds), 1 flat DPL-3 code (0x0b), 2 read-only DPL-3 data
//! (0x13), 3 DPL-3 code with a byte-granular limit of 0xfffff (0x1b), 4
//! flat DPL-1 code (0x21), 5 flat writable DPL-3 data (0x2b).
//!
//! Cases:
//! 9. `debugreg` (debugreg.rs): breakpoints armed for real, aimed at the
//!    hypervisor (XSA-260): a. DR0-3 in the hypervisor hole → -EPERM (by
//!    `mov %dr0`: #GP(0)); b. DR7 with GD → -EPERM / #GP(0); c. a write
//!    breakpoint on a stack buffer, XENVER_extraversion into it → 0 and
//!    no #DB, our own store → one #DB, DR6.B0; d. the word where an int3's
//!    bounce frame goes watched → the #BP is delivered; e. `mov %ss` from a
//!    watched word + `int $0x82` (a hypercall), + int3, and `pop %ss` +
//!    `int $0x82` → each completes with at most one #DB (one where the CPU
//!    ignores the MOV-SS shadow, as QEMU's TCG).
//! 7. `poll`: `sched_op(SCHEDOP_poll)` with the 32-bit layout `{ u32
//!    ports, u32 nr_ports, u64 timeout }`:
//!    a. one port already pending → 0 at once;
//!    b. nr_ports 129 (Xen allows 128) → -EINVAL;
//!    c. a port not pending, timeout 1 (long past) → 0;
//!    d. the ports pointer unmapped → -EFAULT.
//! 6. `syscall`: `syscall` from ring 3 entered with a native `iret` (no
//!    hypercall: the hypervisor's idea of the mode is stale), no syscall32
//!    callback: #GP(0) at the syscall instruction, frame cs 0xe02b, on the
//!    stack_switch stack; the user stack below its esp untouched.
//! 5. `iret`: HYPERVISOR_iret to frames the CPU refuses → the fault the CPU
//!    raises, through the trap table, the refused frame as the interrupted
//!    context (ring 3: on the stack_switch stack):
//!    a. cs 0x0003 (GDT entry 0, RPL 3) → #GP(0), frame cs 0x0003;
//!    b. cs 0x0b with ss 0x13 (read-only data) → #GP(0x10);
//!    c. cs 0x1b (limit 0xfffff), eip 0x200000 → #GP(0).
//!    `upcall`:
//!    d. the event callback registered on 0x21 (`set_callbacks`), entry 4
//!       then made not present (`update_descriptor`), an IPI sent with
//!       events unmasked → #NP(0x20) on the flat ring-1 cs, frame eip = the
//!       event callback's address (the handler restores the descriptor).
//!    `rpl0-iret` (only with `only=`):
//!    e. HYPERVISOR_iret to cs 0xe018 (RPL 0) → the domain is crashed
//!       (Xen's compat_iret); prints `EXPECT-CRASH` first.
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

pvguest32::guest_main!("hostile32", run);

#[cfg(target_arch = "x86")]
use case::run;

#[cfg(target_arch = "x86")]
mod debugreg;

#[cfg(target_arch = "x86")]
mod case {
    use core::arch::asm;
    use core::ptr::write_volatile;

    use pvguest32::abi::{self, x86_32::StartInfo32, EvtchnBindIpi, EvtchnSend, SchedPoll32};
    use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_DS, FLAT_RING3_CS, FLAT_RING3_SS};
    use pvguest32::cell::{GuestCell, Page};
    use pvguest32::hypercall::{self as hc, hypercall};
    use pvguest32::println;
    use pvguest32::report::{check, check_rc, error, fail, info, Rc};
    use pvguest32::start_info::{
        self, set_upcall_mask, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW,
    };
    use pvguest32::traps::{self, catch, Action, Trap, TrapFrame, KERNEL_STACK, USER_STACK};
    use pvguest32::{events, va};

    const EINVAL: i32 = -abi::EINVAL;
    const EFAULT: i32 = -abi::EFAULT;

    /// The guest's GDT.
    static GDT: Page = Page::new();
    const GDT_ENTRIES: u32 = 6;
    /// Flat 32-bit code, DPL 3, accessed.
    const CODE_DPL3: u64 = 0x00cf_fb00_0000_ffff;
    /// Read-only data, DPL 3, accessed.
    const DATA_RO_DPL3: u64 = 0x00cf_f100_0000_ffff;
    /// 32-bit code, DPL 3, byte granular, limit 0xfffff (1 MiB).
    const CODE_SMALL_DPL3: u64 = 0x004f_fb00_0000_ffff;
    /// Flat 32-bit code, DPL 1, accessed.
    const CODE_DPL1: u64 = 0x00cf_bb00_0000_ffff;
    /// Flat writable data, DPL 3, accessed.
    const DATA_DPL3: u64 = 0x00cf_f300_0000_ffff;
    const PRESENT: u64 = 1 << 47;

    const SEL_NULL3: u32 = 0x0003;
    const SEL_CODE3: u32 = 0x0b;
    const SEL_RO_DATA3: u32 = 0x13;
    const SEL_SMALL_CODE3: u32 = 0x1b;
    const SEL_CODE1: u32 = 0x21;

    /// Where HYPERVISOR_iret frames are built (the stub pushes eax below).
    static IRET_AREA: GuestCell<[u32; 16]> = GuestCell::new([0; 16]);

    fn only() -> Option<&'static str> {
        let line = core::str::from_utf8(start_info::cmd_line(start_info::start_info())).ok()?;
        line.split(' ').find_map(|w| w.strip_prefix("only="))
    }

    /// Whether case `case` of `group` runs under `only=`.
    fn wanted(group: &str, case: &str) -> bool {
        only().is_none_or(|o| o == group || o == case)
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

    /// `update_descriptor` of GDT entry `i` (our frame).
    fn update_descriptor(i: u32, desc: u64) -> i32 {
        let maddr = (u64::from(mfn_of(GDT.addr())) << 12) + u64::from(i) * 8;
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

    fn set_gdt(entry0: u64) -> i32 {
        if remap(&GDT, true) != 0 {
            error(format_args!("GDT page writable"));
        }
        let base = GDT.addr() as usize as *mut u64;
        // SAFETY: our page, mapped writable.
        unsafe {
            for (i, d) in [
                entry0,
                CODE_DPL3,
                DATA_RO_DPL3,
                CODE_SMALL_DPL3,
                CODE_DPL1,
                DATA_DPL3,
            ]
            .iter()
            .enumerate()
            {
                write_volatile(base.add(i), *d);
            }
        }
        if remap(&GDT, false) != 0 {
            error(format_args!("GDT page read-only"));
        }
        let frames = [mfn_of(GDT.addr())];
        // SAFETY: good descriptors; the running selectors are the
        // hypervisor's reserved ones.
        unsafe { hypercall(abi::HYPERVISOR_SET_GDT, &[va(frames.as_ptr()), GDT_ENTRIES]) }
    }

    fn evtchn<T>(cmd: u32, arg: &mut T) -> i32 {
        // SAFETY: `arg` is the struct `cmd` takes.
        unsafe { hc::event_channel_op(cmd, va(arg as *mut T)) }
    }

    fn send(port: u32) -> i32 {
        evtchn(abi::EVTCHNOP_SEND, &mut EvtchnSend { port })
    }

    fn bind_ipi() -> Option<u32> {
        let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
        let rc = evtchn(abi::EVTCHNOP_BIND_IPI, &mut ipi);
        if rc != 0 {
            fail(
                "EVTCHNOP_bind_ipi(vcpu 0)",
                format_args!("returned {}", Rc(rc)),
            );
            return None;
        }
        Some(ipi.port)
    }

    pub fn run(_si: &StartInfo32) {
        traps::install_default_trap_table();
        check_rc(
            "set_callbacks(0xe019, event, 0xe019, failsafe)",
            traps::install_callbacks(),
            0,
        );
        if let Some(o) = only() {
            info(format_args!("only={o}"));
        }
        if let Err((what, rc)) = traps::setup_user_mode() {
            error(format_args!("user mode: {what} = {}", Rc(rc)));
        }
        if wanted("syscall", "6") {
            syscall_after_native_iret();
        }
        if wanted("umip", "8") {
            sidt_from_ring3();
        }
        if wanted("debugreg", "9") {
            crate::debugreg::run();
        }
        if ["7a", "7b", "7c", "7d"].iter().any(|c| wanted("poll", c)) {
            poll();
        }
        let iret_cases = ["5a", "5b", "5c"];
        let upcall = wanted("upcall", "5d");
        if iret_cases.iter().any(|c| wanted("iret", c)) || upcall || only() == Some("rpl0-iret") {
            let rc = set_gdt(CODE_DPL3);
            let rc = if rc == 0 {
                info(format_args!(
                    "set_gdt with entry 0 a DPL-3 code descriptor: 0"
                ));
                rc
            } else {
                info(format_args!(
                    "set_gdt with entry 0 a DPL-3 code descriptor: {}; entry 0 null instead",
                    Rc(rc)
                ));
                set_gdt(0)
            };
            if !check_rc(
                "set_gdt([own frame], 6): DPL-3 code, read-only data, small code, DPL-1 code, data",
                rc,
                0,
            ) {
                return;
            }
        }
        if wanted("iret", "5a") {
            iret_refused(
                "5a: iret to cs 0x0003 (null, entry 0 a DPL-3 code descriptor): #GP(0)",
                SEL_NULL3,
                0x1000,
                FLAT_RING3_SS.into(),
                0,
            );
        }
        if wanted("iret", "5c") {
            iret_refused(
                "5c: iret to cs 0x1b (limit 0xfffff) with eip 0x200000: #GP(0)",
                SEL_SMALL_CODE3,
                0x20_0000,
                FLAT_RING3_SS.into(),
                0,
            );
        }
        if wanted("iret", "5b") {
            iret_refused(
                "5b: iret to cs 0x0b with ss 0x13 (read-only data): #GP(0x10)",
                SEL_CODE3,
                user_nop as *const () as usize as u32,
                SEL_RO_DATA3,
                SEL_RO_DATA3 & 0xfffc,
            );
        }
        if upcall {
            upcall_not_present();
        }
        if only() == Some("rpl0-iret") {
            rpl0_iret();
        }
    }

    // -----------------------------------------------------------------
    // 7. SCHEDOP_poll, 32-bit layout.
    // -----------------------------------------------------------------

    fn poll_rc(ports: u32, nr_ports: u32, timeout: u64) -> i32 {
        let p = SchedPoll32 {
            ports,
            nr_ports,
            timeout,
        };
        // SAFETY: the hypervisor reads the struct and the ports.
        unsafe { hc::sched_op(abi::SCHEDOP_POLL, va(&p)) }
    }

    fn poll() {
        set_upcall_mask(1);
        let Some(port) = bind_ipi() else { return };
        let ports = [port; 130];
        if wanted("poll", "7c") {
            check_rc(
                "7c: poll one port not pending with timeout 1 (long past): 0",
                poll_rc(va(ports.as_ptr()), 1, 1),
                0,
            );
        }
        if wanted("poll", "7d") {
            check_rc(
                "7d: poll with the ports pointer unmapped (0x1000): -EFAULT",
                poll_rc(0x1000, 1, 1),
                EFAULT,
            );
        }
        if wanted("poll", "7b") {
            check_rc(
                "7b: poll with nr_ports 129 (> 128): -EINVAL",
                poll_rc(va(ports.as_ptr()), 129, 1),
                EINVAL,
            );
        }
        if wanted("poll", "7a") {
            // Events masked: the port stays pending, no upcall.
            check_rc("7a: send to our IPI port (events masked)", send(port), 0);
            check_rc(
                "7a: poll one port already pending: 0 at once",
                poll_rc(va(ports.as_ptr()), 1, 0),
                0,
            );
            events::dispatch();
        }
    }

    // -----------------------------------------------------------------
    // 6. syscall from ring 3 after a native iret.
    // -----------------------------------------------------------------

    pvguest32::user_fn!(fn user_syscall() { "syscall", "ret" });
    pvguest32::user_fn!(
        fn user_nop() {
            "ret"
        }
    );

    const PATTERN: u32 = 0x5a5a_5a5a;

    fn syscall_after_native_iret() {
        let (bottom, top) = (USER_STACK.bottom(), USER_STACK.top());
        // The trampoline's call leaves its return address at top - 4.
        let end = top - 8;
        for a in (bottom..end).step_by(4) {
            // SAFETY: the user stack, unused while no ring-3 code runs.
            unsafe { write_volatile(a as usize as *mut u32, PATTERN) };
        }
        let r = traps::run_user(user_syscall);
        let at = user_syscall as *const () as usize as u32;
        let ktop = KERNEL_STACK.top();
        match r {
            Ok(()) => fail(
                "6: syscall from ring 3 without a syscall32 callback",
                format_args!("returned normally"),
            ),
            Err(t) => {
                check(
                    "6: syscall from ring 3 after a native iret, no syscall32 callback: #GP(0) at it, cs 0xe02b, kernel stack",
                    t.vector == 13
                        && t.error_code == 0
                        && t.eip == at
                        && t.cs_sel() == FLAT_RING3_CS
                        && t.outer
                        && t.frame_top == ktop
                        && t.esp == top - 4,
                    format_args!("want eip {at:#x} esp {:#x} top {ktop:#x}; got {t} top {:#x}", top - 4, t.frame_top),
                );
            }
        }
        let first_bad = (bottom..end)
            .step_by(4)
            // SAFETY: as above.
            .find(|&a| unsafe { (a as usize as *const u32).read_volatile() } != PATTERN);
        check(
            "6: the user stack below its esp is untouched",
            first_bad.is_none(),
            format_args!("changed at {:#x}", first_bad.unwrap_or(0)),
        );
    }

    // -----------------------------------------------------------------
    // 8. SIDT from ring 3 into a supervisor page (UMIP emulation).
    // -----------------------------------------------------------------

    /// A kernel (supervisor) word the user code aims its SIDT at.
    static KTARGET: GuestCell<[u32; 4]> = GuestCell::new([PATTERN; 4]);
    pvguest32::user_fn!(fn user_sidt() { "sidt {t}", "ret", t = sym KTARGET });

    /// UMIP makes SIDT fault and the hypervisor emulates it; the store must
    /// be checked with ring 3's rights: a supervisor page is a #PF (error
    /// code: present, write, user) and stays as it was.
    fn sidt_from_ring3() {
        KTARGET.set([PATTERN; 4]);
        let r = traps::run_user(user_sidt);
        check(
            "8: sidt from ring 3 into a kernel page: #PF, user write (ec 7)",
            matches!(r, Err(ref t) if t.vector == 14 && t.error_code & 6 == 6),
            format_args!("{r:?}"),
        );
        check(
            "8: ... and the kernel page is unchanged",
            KTARGET.get() == [PATTERN; 4],
            format_args!("{:#x?}", KTARGET.get()),
        );
    }

    // -----------------------------------------------------------------
    // 5. HYPERVISOR_iret to frames the CPU refuses.
    // -----------------------------------------------------------------

    /// HYPERVISOR_iret to `[eip, cs, eflags, esp, ss]` (ring 3 frames) or
    /// `[eip, cs, eflags]`. Never returns (the fault unwinds).
    fn hyp_iret(eip: u32, cs: u32, eflags: u32, esp: u32, ss: u32) -> ! {
        let area = IRET_AREA.as_ptr() as *mut u32;
        // SAFETY: the area is ours; the stub pushes eax at index 7.
        unsafe {
            for (i, v) in [eip, cs, eflags, esp, ss].iter().enumerate() {
                write_volatile(area.add(8 + i), *v);
            }
            asm!(
                "mov esp, {p}",
                "jmp {s}",
                p = in(reg) area.add(8),
                s = in(reg) hc::stub_addr(abi::HYPERVISOR_IRET),
                options(noreturn),
            )
        }
    }

    fn iret_refused(case: &str, cs: u32, eip: u32, ss: u32, ec: u32) {
        let esp = USER_STACK.top() - 64;
        let r = catch(|| hyp_iret(eip, cs, traps::USER_EFLAGS, esp, ss));
        let ktop = KERNEL_STACK.top();
        match r {
            Ok(()) => fail(case, format_args!("no trap")),
            Err(t) => {
                check(
                    case,
                    t.vector == 13
                        && t.error_code == ec
                        && t.eip == eip
                        && u32::from(t.cs_sel()) == cs
                        && t.outer
                        && t.esp == esp
                        && t.ss == ss
                        && t.frame_top == ktop,
                    format_args!(
                        "want #GP({ec:#x}) eip {eip:#x} cs {cs:#x} esp {esp:#x} ss {ss:#x} top {ktop:#x}; got {t} top {:#x}",
                        t.frame_top
                    ),
                );
            }
        }
    }

    static NP_SEEN: GuestCell<Option<Trap>> = GuestCell::new(None);

    /// #NP: record it, make entry 4 present again, put the event callback
    /// back on the flat ring-1 cs, and unwind.
    fn np_handler(_f: &mut TrapFrame, t: &Trap) -> Action {
        NP_SEEN.set(Some(*t));
        update_descriptor(4, CODE_DPL1);
        traps::install_callbacks();
        Action::Unwind
    }

    fn upcall_not_present() {
        set_upcall_mask(1);
        let Some(port) = bind_ipi() else { return };
        let ev = traps::entry_address(traps::VEC_EVENT).unwrap_or(0);
        let fs = traps::entry_address(traps::VEC_FAILSAFE).unwrap_or(0);
        // SAFETY: our entry points, on our own DPL-1 code segment.
        let rc = unsafe { hc::set_callbacks(SEL_CODE1, ev, FLAT_RING1_CS.into(), fs) };
        if !check_rc(
            "5d: set_callbacks(0x21 (own DPL-1 code), event, 0xe019, failsafe)",
            rc,
            0,
        ) {
            return;
        }
        if !check_rc(
            "5d: update_descriptor: entry 4 not present",
            update_descriptor(4, CODE_DPL1 & !PRESENT),
            0,
        ) {
            traps::install_callbacks();
            return;
        }
        traps::set_handler(11, Some(np_handler));
        let r = catch(|| {
            set_upcall_mask(0);
            send(port);
            // The upcall comes on the way out of the send.
            for _ in 0..1000 {
                force_check();
            }
        });
        traps::set_handler(11, None);
        traps::install_callbacks();
        update_descriptor(4, CODE_DPL1);
        let case = "5d: upcall to a not-present event callback cs 0x21: #NP(0x20), frame eip = the callback";
        match (r, NP_SEEN.get()) {
            (Err(t), Some(_)) => check(
                case,
                t.vector == 11
                    && t.error_code == SEL_CODE1 & 0xfffc
                    && t.eip == ev
                    && u32::from(t.cs_sel()) == SEL_CODE1,
                format_args!("want eip {ev:#x} cs 0x21; got {t}"),
            ),
            (Err(t), None) => check(case, false, format_args!("got {t}")),
            (Ok(()), _) => check(case, false, format_args!("no trap")),
        };
        events::dispatch();
        set_upcall_mask(1);
    }

    fn force_check() {
        hc::force_event_check();
    }

    fn rpl0_iret() {
        println!("EXPECT-CRASH");
        let esp = KERNEL_STACK.top() - 256;
        let _ = catch(|| {
            hyp_iret(
                user_nop as *const () as usize as u32,
                u32::from(FLAT_RING1_CS) & !3,
                0x202,
                esp,
                FLAT_RING1_DS.into(),
            )
        });
        fail(
            "5e: HYPERVISOR_iret to cs 0xe018 (RPL 0)",
            format_args!("the domain went on: {}", traps::last()),
        );
    }
}
