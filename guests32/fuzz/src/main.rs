//! `guest32-fuzz`: a 32-bit PAE PV guest (kernel in ring 1) that throws
//! random hypercalls, exceptions, `int $n`, `syscall`/`sysenter` and
//! `HYPERVISOR_iret` frames at the hypervisor, reproducibly from a seed:
//! the 32-bit counterpart of `guest-fuzz`, with the same generator
//! (`pvguest_common::fuzz`, width 32) and the same output
//! (docs/fuzzing.md).
//!
//! Command line: `seed=S iters=N [progress=P] [log=K] [exclude=a,b|none]
//! [victim=D port=P]`. With `victim=`, it first binds to the victim's port
//! for it (so that it starts once the victim is filled), then runs, and
//! notifies that port when done.
//!
//! Set-up: the runtime's trap table, event and failsafe callbacks, the
//! syscall32 and sysenter callbacks on the `int $0x80` entry, user mode
//! (`stack_switch`, the user pages), a GDT of its own (`fuzz::GDT32`, one
//! frame): iret frames and segment loads name its entries.
//!
//! Every kernel-mode step runs inside `traps::catch`, every user-mode step
//! inside `traps::run_user` (ring 3): a fault unwinds back to the loop.
//! The instructions a step executes (`int $n` stubs, one routine per
//! exception kind, the iret landing pads) live on the user pages, so the
//! same code runs in ring 1 and ring 3; their operands come from
//! `USER_ARGS` (user data). Afterwards whatever the step may have changed
//! of the guest's own set-up is put back. The guest may still break itself
//! (a page-table update that unmaps its own code, say) and be crashed:
//! that is allowed, the hypervisor must only survive it.
//!
//! One check of its own: a ring-3 step must not change the kernel's
//! scratch pages (supervisor pages; the hypervisor emulates SGDT, SIDT,
//! SMSW, SLDT and STR for ring 3 and must not write where ring 3 cannot).
//! A change while the pages are still mapped supervisor-only prints
//! `FUZZ: BUG ...` and ends the guest. What the hypervisor writes there
//! on its own, as Xen would (a runstate area a kernel step registered),
//! is kept out of it: see docs/fuzzing.md.
//!
//! Output: `FUZZ: start ...`, `FUZZ: iter=I last=CALL` every `progress`
//! steps, `FUZZ: call CALL` before each step from step `log` on, `FUZZ:
//! done iters=N`, then `RESULT: SUCCESS`. A trap outside a step prints
//! `FUZZ: unexpected ...` and the last steps (`FUZZ: recent CALL`).
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

pvguest32::guest_main!("fuzz32", run);

#[cfg(target_arch = "x86")]
use guest::run;

#[cfg(target_arch = "x86")]
mod guest {
    use core::arch::{asm, global_asm};
    use core::mem::offset_of;
    use core::sync::atomic::{AtomicU32, Ordering};

    use pvguest32::abi::{
        self, x86_32::StartInfo32, x86_32::VcpuInfo32, EvtchnBindInterdomain, EvtchnBindVirq,
        EvtchnSend, EvtchnStatus, EvtchnUnmask, VcpuTimeInfo,
    };
    use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_SS};
    use pvguest32::cell::{GuestCell, Page, Stack};
    use pvguest32::hypercall as hc;
    use pvguest32::println;
    use pvguest32::start_info::{
        self, PTE_ACCESSED, PTE_ADDR, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_USER,
    };
    use pvguest32::traps::{self, Action, Trap, TrapFrame, KERNEL_STACK, USER_STACK};
    use pvguest32::{va, VIRT_BASE};
    use pvguest_common::fuzz::{self, Call, Env, Exc, ExclNames, Fixup, Ring, Rng, Step, GDT32};

    /// Two pages: hypercall arguments point here (and across the boundary).
    static SCRATCH: Stack<8192> = Stack::new();
    /// Where iret frames are built; a ring-1 landing runs on what is below.
    static LANDING: Stack<16384> = Stack::new();
    /// The guest's own GDT (`fuzz::GDT32`).
    static GDT: Page = Page::new();

    /// Operands of the step routines: arg, arg2, a buffer pointer, arg ^ arg2.
    #[link_section = ".user.data"]
    static USER_ARGS: GuestCell<[u32; 4]> = GuestCell::new([0; 4]);
    /// A user page ring-3 descriptor-table stores may write.
    #[link_section = ".user.data"]
    static USER_BUF: Page = Page::new();

    static IN_STEP: GuestCell<bool> = GuestCell::new(false);
    /// Inside `copying`.
    static COPYING: GuestCell<bool> = GuestCell::new(false);
    static RING: GuestCell<Ring<16>> = GuestCell::new(Ring::new());
    static TIMER_PORT: GuestCell<u32> = GuestCell::new(0);
    static VICTIM_PORT: GuestCell<Option<u32>> = GuestCell::new(None);
    static IMAGE_END: GuestCell<u32> = GuestCell::new(0);
    /// `fuzz::EXCL_*` bits of the command line.
    static EXCLUDE: GuestCell<u32> = GuestCell::new(0);
    /// Traps taken during the current step: a step that keeps faulting
    /// (the guest unmapped its own code or stack, say) ends the guest.
    static STEP_TRAPS: GuestCell<u32> = GuestCell::new(0);
    const MAX_STEP_TRAPS: u32 = 256;

    // The step routines, on a user page, cdecl, callee-saved registers kept.
    // Index = the R_* constants below.
    global_asm!(
        r#"
        .pushsection .user.text, "ax", @progbits
        .balign 8
        .globl fuzz32_int_table
fuzz32_int_table:
        .set fuzz_n, 0
        .rept 256
        .balign 8
        .byte 0xcd, fuzz_n
        ret
        .set fuzz_n, fuzz_n + 1
        .endr

        .globl fuzz32_user_landing
fuzz32_user_landing:
        ud2
        jmp fuzz32_user_landing

r_ud2:      ud2; ret
r_int3:     int3; ret
r_div0:     mov $1, %eax; xor %edx, %edx; xor %ecx, %ecx; div %ecx; ret
r_read:     mov {a}, %eax; mov (%eax), %eax; ret
r_write:    mov {a}, %eax; mov {a}+4, %ecx; mov %ecx, (%eax); ret
r_cli:      cli; ret
r_sti:      sti; ret
r_hlt:      hlt; ret
r_clts:     clts; ret
r_wbinvd:   wbinvd; ret
r_invlpg:   mov {a}, %eax; invlpg (%eax); ret
r_lmsw:     mov {a}+4, %eax; lmsw %ax; ret
r_rdpmc:    mov {a}, %ecx; rdpmc; ret
r_in:       mov {a}, %edx; in %dx, %al; ret
r_out:      mov {a}, %edx; mov {a}+4, %eax; out %al, %dx; ret
r_rdmsr:    mov {a}, %ecx; rdmsr; ret
r_wrmsr:    mov {a}, %ecx; mov {a}+4, %eax; mov {a}+12, %edx; wrmsr; ret
r_rcr0:     mov %cr0, %eax; ret
r_rcr2:     mov %cr2, %eax; ret
r_rcr3:     mov %cr3, %eax; ret
r_rcr4:     mov %cr4, %eax; ret
r_rdr6:     mov %dr6, %eax; ret
r_rdr7:     mov %dr7, %eax; ret
r_wcr0:     mov {a}+4, %eax; mov %eax, %cr0; ret
r_wcr3:     mov {a}+4, %eax; mov %eax, %cr3; ret
r_wcr4:     mov {a}+4, %eax; mov %eax, %cr4; ret
r_wdr7:     mov {a}+4, %eax; mov %eax, %dr7; ret
r_wdr0:     mov {a}+4, %eax; mov %eax, %dr0; ret
r_popf:     pushf; pushl {a}+4; popf; nop; popf; ret
r_ds:       mov %ds, %ecx; mov {a}, %eax; mov %eax, %ds; mov %ecx, %ds; ret
r_es:       mov %es, %ecx; mov {a}, %eax; mov %eax, %es; mov %ecx, %es; ret
r_fs:       mov %fs, %ecx; mov {a}, %eax; mov %eax, %fs; mov %ecx, %fs; ret
r_gs:       mov %gs, %ecx; mov {a}, %eax; mov %eax, %gs; mov %ecx, %gs; ret
r_ss:       mov %ss, %ecx; mov {a}, %eax; mov %eax, %ss; mov %ecx, %ss; ret
r_syscall:  mov {a}, %eax; mov {a}+8, %edx; syscall; ret
r_sysenter: mov %esp, %ecx; mov {a}+8, %edx; sysenter; ret
r_sgdt:     mov {a}+8, %eax; sgdt (%eax); ret
r_sidt:     mov {a}+8, %eax; sidt (%eax); ret
r_lgdt:     mov {a}+8, %eax; lgdt (%eax); ret
r_ltr:      mov {a}, %eax; ltr %ax; ret
r_lldt:     mov {a}, %eax; lldt %ax; ret
r_smsw:     mov {a}+8, %eax; smsw (%eax); ret
r_str:      mov {a}+8, %eax; str (%eax); ret
r_sldt:     mov {a}+8, %eax; sldt (%eax); ret
r_cpuid:    push %ebx; mov {a}, %eax; mov {a}+4, %ecx
            .byte 0x0f, 0x0b, 0x78, 0x65, 0x6e
            cpuid
            pop %ebx; ret
        .popsection

        .text
        .globl fuzz32_landing
fuzz32_landing:
        ud2
        jmp fuzz32_landing

        .pushsection .rodata, "a", @progbits
        .balign 4
        .globl fuzz32_routines
fuzz32_routines:
        .long r_ud2, r_int3, r_div0, r_read, r_write, r_cli, r_sti, r_hlt
        .long r_clts, r_wbinvd, r_invlpg, r_lmsw, r_rdpmc, r_in, r_out, r_rdmsr
        .long r_wrmsr, r_rcr0, r_rcr2, r_rcr3, r_rcr4, r_rdr6, r_rdr7, r_wcr0
        .long r_wcr3, r_wcr4, r_wdr7, r_wdr0, r_popf, r_ds, r_es, r_fs
        .long r_gs, r_ss, r_syscall, r_sysenter, r_sgdt, r_sidt, r_lgdt, r_ltr
        .long r_lldt, r_smsw, r_str, r_sldt, r_cpuid
        .popsection
        "#,
        a = sym USER_ARGS,
        options(att_syntax)
    );

    extern "C" {
        static fuzz32_routines: [u32; 45];
        fn fuzz32_int_table();
        fn fuzz32_user_landing();
        fn fuzz32_landing();
    }

    // Indices into fuzz32_routines.
    const R_UD2: usize = 0;
    const R_INT3: usize = 1;
    const R_DIV0: usize = 2;
    const R_READ: usize = 3;
    const R_WRITE: usize = 4;
    const R_PRIV: [usize; 8] = [5, 6, 7, 8, 9, 10, 11, 12]; // cli sti hlt clts wbinvd invlpg lmsw rdpmc
    const R_IN: usize = 13;
    const R_OUT: usize = 14;
    const R_RDMSR: usize = 15;
    const R_WRMSR: usize = 16;
    const R_READ_CR: [usize; 6] = [17, 18, 19, 20, 21, 22]; // cr0 cr2 cr3 cr4 dr6 dr7
    const R_WRITE_CR: [usize; 5] = [23, 24, 25, 26, 27]; // cr0 cr3 cr4 dr7 dr0
    const R_POPF: usize = 28;
    const R_SEG: [usize; 5] = [29, 30, 31, 32, 33]; // ds es fs gs ss
    const R_SYSCALL: usize = 34;
    const R_SYSENTER: usize = 35;
    const R_DESC: [usize; 8] = [36, 37, 38, 39, 40, 41, 42, 43]; // sgdt sidt lgdt ltr lldt smsw str sldt
    const R_CPUID: usize = 44;

    /// The routine for an exception step.
    fn routine(exc: Exc, arg: u32, arg2: u32) -> u32 {
        let i = match exc {
            Exc::Ud2 if arg.is_multiple_of(4) => R_CPUID,
            Exc::Ud2 => R_UD2,
            Exc::Int3 => R_INT3,
            Exc::Div0 => R_DIV0,
            Exc::Read => R_READ,
            Exc::Write => R_WRITE,
            Exc::CliSti => R_PRIV[arg as usize % 8],
            Exc::Io if arg & 0x1_0000 == 0 => R_IN,
            Exc::Io => R_OUT,
            Exc::Rdmsr => R_RDMSR,
            Exc::Wrmsr => R_WRMSR,
            Exc::ReadCr => R_READ_CR[arg as usize % 6],
            Exc::WriteCr => R_WRITE_CR[arg as usize % 5],
            Exc::Popf => R_POPF,
            Exc::LoadSeg => R_SEG[arg2 as usize % 5],
            Exc::Syscall if arg2 & 1 == 0 => R_SYSCALL,
            Exc::Syscall => R_SYSENTER,
            Exc::Descriptor => R_DESC[arg2 as usize % 8],
        };
        // SAFETY: a table of addresses in .rodata; i is in bounds.
        unsafe { fuzz32_routines[i] }
    }

    fn int_stub(vector: u8) -> u32 {
        fuzz32_int_table as *const () as usize as u32 + u32::from(vector) * 8
    }

    fn to_fn(addr: u32) -> unsafe extern "C" fn() {
        // SAFETY: `addr` is one of the routines or stubs above (code on a
        // user page, cdecl, no arguments).
        unsafe { core::mem::transmute::<usize, unsafe extern "C" fn()>(addr as usize) }
    }

    /// Calls a routine or stub in ring 1 with `eax` = `eax`.
    fn call_addr(f: u32, eax: u32) {
        // SAFETY: `f` is a routine or an `int $n; ret` stub; a handler
        // that resumes keeps every register; faults unwind to the catch.
        unsafe { asm!("call {0}", in(reg) f, inout("eax") eax => _, clobber_abi("C")) }
    }

    // ------------------------------------------------------------------
    // Time, events.
    // ------------------------------------------------------------------

    fn rdtsc() -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: rdtsc only reads the TSC.
        unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
        u64::from(hi) << 32 | u64::from(lo)
    }

    fn time_u32(off: usize) -> u32 {
        let base = start_info::shared_info() as usize + offset_of!(VcpuInfo32, time);
        // SAFETY: inside vcpu_info[0].time of the mapped shared_info page.
        unsafe { ((base + off) as *const u32).read_volatile() }
    }

    fn time_u64(off: usize) -> u64 {
        u64::from(time_u32(off)) | u64::from(time_u32(off + 4)) << 32
    }

    /// Xen system time in ns (`vcpu_info[0].time` and the TSC).
    fn now_ns() -> u64 {
        for _ in 0..1000 {
            let version = time_u32(offset_of!(VcpuTimeInfo, version));
            if version & 1 != 0 {
                continue;
            }
            let stamp = time_u64(offset_of!(VcpuTimeInfo, tsc_timestamp));
            let system = time_u64(offset_of!(VcpuTimeInfo, system_time));
            let mul = u64::from(time_u32(offset_of!(VcpuTimeInfo, tsc_to_system_mul)));
            let shift = time_u32(offset_of!(VcpuTimeInfo, tsc_shift)) as u8 as i8;
            let tsc = rdtsc();
            if time_u32(offset_of!(VcpuTimeInfo, version)) != version {
                continue;
            }
            let mut delta = tsc.wrapping_sub(stamp);
            delta = if shift >= 0 {
                delta << shift
            } else {
                delta >> -shift
            };
            return system + (delta >> 32) * mul + (((delta & 0xffff_ffff) * mul) >> 32);
        }
        0
    }

    fn evtchn<T>(cmd: u32, arg: &mut T) -> i32 {
        // SAFETY: `arg` is the struct `cmd` takes, ours.
        unsafe { hc::event_channel_op(cmd, va(arg as *mut T)) }
    }

    fn bind_virq_timer() -> Result<u32, i32> {
        let mut b = EvtchnBindVirq {
            virq: abi::VIRQ_TIMER,
            vcpu: 0,
            port: 0,
        };
        match evtchn(abi::EVTCHNOP_BIND_VIRQ, &mut b) {
            0 => Ok(b.port),
            rc => Err(rc),
        }
    }

    fn send(port: u32) {
        evtchn(abi::EVTCHNOP_SEND, &mut EvtchnSend { port });
    }

    /// The domain watchdog (SCHEDOP_watchdog) this guest keeps armed, as
    /// guest-fuzz does: a guest that wrecks its own event state (a timer
    /// port left pending with no upcall flagged, then `SCHEDOP_block`, a
    /// sleep Xen would not end either) is ended by the hypervisor instead
    /// of sleeping until the campaign's timeout calls it a hang.
    static WATCHDOG_ID: GuestCell<u32> = GuestCell::new(0);
    const WATCHDOG_S: u32 = 10;

    /// `SCHEDOP_watchdog(id, WATCHDOG_S)`: the id (a new one for id 0) or
    /// an error.
    fn watchdog(id: u32) -> i32 {
        let w = abi::SchedWatchdog {
            id,
            timeout: WATCHDOG_S,
        };
        // SAFETY: the hypervisor only reads the struct.
        unsafe { hc::sched_op(abi::SCHEDOP_WATCHDOG, &w as *const _ as u32) }
    }

    fn yield_now() {
        // SAFETY: yield takes no argument.
        unsafe { hc::sched_op(abi::SCHEDOP_YIELD, 0) };
    }

    /// Makes sure a blocked or polling vCPU wakes up: `VIRQ_TIMER` bound
    /// (a step may have closed it), its port unmasked, a timer 1 ms ahead.
    fn arm_timer() {
        // Events masked until the block (which unmasks them): a timer that
        // fires before it must stay pending, not be taken by an upcall.
        start_info::set_upcall_mask(1);
        let p = TIMER_PORT.get();
        let mut s = EvtchnStatus {
            dom: abi::DOMID_SELF,
            _pad0: 0,
            port: p,
            status: 0,
            vcpu: 0,
            u: [0; 2],
        };
        if evtchn(abi::EVTCHNOP_STATUS, &mut s) != 0 || s.status != abi::EVTCHNSTAT_VIRQ {
            if let Ok(p) = bind_virq_timer() {
                TIMER_PORT.set(p);
            }
        }
        // Not pending (a port pending while masked is never notified
        // again), then unmasked through the hypervisor, which raises the
        // upcall if it became pending meanwhile.
        let p = TIMER_PORT.get();
        let si = start_info::shared_info();
        if (p as usize) < 32 * 32 {
            // SAFETY: a word of the mapped shared_info page, shared with
            // the hypervisor (atomic).
            let pending = unsafe {
                AtomicU32::from_ptr(core::ptr::addr_of_mut!(
                    (*si).evtchn_pending[p as usize / 32]
                ))
            };
            pending.fetch_and(!(1 << (p % 32)), Ordering::SeqCst);
        }
        evtchn(abi::EVTCHNOP_UNMASK, &mut EvtchnUnmask { port: p });
        hc::set_timer_op(now_ns() + 1_000_000);
    }

    // ------------------------------------------------------------------
    // Set-up.
    // ------------------------------------------------------------------

    fn mfn_of(va: u32) -> u32 {
        start_info::virt_to_mfn(va).unwrap_or(0)
    }

    /// Maps `va` (a page of the image) to its own frame with `flags`.
    fn remap(va: u32, flags: u64) -> i32 {
        // SAFETY: the page's own frame at its own address.
        unsafe {
            hc::update_va_mapping(
                va,
                u64::from(mfn_of(va)) << 12 | flags,
                abi::UVMF_INVLPG as u32,
            )
        }
    }

    /// Writes `GDT32` into the GDT page and installs it (the page is
    /// read-only while it is a GDT).
    fn install_gdt() -> i32 {
        if remap(GDT.addr(), PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY) == 0 {
            let base = GDT.addr() as usize as *mut u64;
            for (i, d) in GDT32.iter().enumerate() {
                // SAFETY: our page, mapped writable.
                unsafe { base.add(i).write_volatile(*d) };
            }
        }
        remap(GDT.addr(), PTE_PRESENT | PTE_ACCESSED);
        set_own_gdt()
    }

    fn set_own_gdt() -> i32 {
        let frames = [mfn_of(GDT.addr())];
        // SAFETY: checked descriptors; the running selectors are the
        // hypervisor's flat ones.
        unsafe {
            hc::hypercall(
                abi::HYPERVISOR_SET_GDT,
                &[va(frames.as_ptr()), GDT32.len() as u32],
            )
        }
    }

    /// The guest's own set-up: trap table, callbacks, handlers. Returns
    /// the first refusal.
    fn setup() -> Result<(), (&'static str, i32)> {
        let rc = traps::set_trap_table(&traps::default_trap_table());
        if rc != 0 {
            return Err(("set_trap_table", rc));
        }
        let cs = u32::from(FLAT_RING1_CS);
        for t in [abi::CALLBACKTYPE_EVENT, abi::CALLBACKTYPE_FAILSAFE] {
            let rc = traps::register_callback(t, 0, cs);
            if rc != 0 {
                return Err(("register_callback(event/failsafe)", rc));
            }
        }
        // syscall and sysenter from ring 3 bounce to the int $0x80 entry.
        let e80 = traps::entry_address(traps::VEC_INT80).unwrap_or(0);
        for t in [abi::CALLBACKTYPE_SYSCALL32, abi::CALLBACKTYPE_SYSENTER] {
            // SAFETY: our own entry point.
            let rc = unsafe { hc::register_callback(t, 0, cs, e80) };
            if rc != 0 {
                return Err(("register_callback(syscall32/sysenter)", rc));
            }
        }
        for v in (0..32).chain([traps::VEC_INT80, traps::VEC_SOFTINT, traps::VEC_FAILSAFE]) {
            traps::set_handler(v, Some(handler));
        }
        Ok(())
    }

    /// Puts back what a step may have changed.
    fn restore(gdt: bool) {
        // First: the trap table is built with SSE instructions.
        hc::fpu_taskswitch(0);
        if let Err((what, rc)) = setup() {
            println!("FUZZ: restore: {what} = {rc}");
        }
        // SAFETY: the runtime's kernel stack, used only for bounces from
        // ring 3.
        unsafe { hc::stack_switch(FLAT_RING1_SS.into(), KERNEL_STACK.top()) };
        hc::fpu_taskswitch(0);
        if gdt {
            set_own_gdt();
        }
    }

    /// Maps the scratch pages back to their frames, supervisor read-write.
    fn remap_scratch(scratch: u32) {
        for i in 0..2 {
            remap(
                scratch + i * 4096,
                PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY,
            );
        }
    }

    /// Copies the step's words into the scratch pages; if that faults (a
    /// step left them read-only or unmapped), maps them back and tries
    /// once more. Whether the pages now hold the words: only then can
    /// `check_scratch` tell what a step changed.
    fn fill_scratch(words: &[u64; 1024], scratch: u32) -> bool {
        // SAFETY: the scratch pages are ours; a fault unwinds to the catch.
        let copy = || unsafe {
            core::ptr::copy_nonoverlapping(
                words.as_ptr(),
                scratch as usize as *mut u64,
                words.len(),
            )
        };
        if copying(|| traps::catch(copy)).is_ok() {
            return true;
        }
        remap_scratch(scratch);
        copying(|| traps::catch(copy)).is_ok()
    }

    /// Runs `f` (the guest's own copy to or from the scratch pages) with a
    /// #DB resumed instead of unwound: a step may leave a data breakpoint
    /// there (`set_debugreg`), and a copy cut short by it would leave the
    /// pages holding neither the old words nor the new.
    fn copying<R>(f: impl FnOnce() -> R) -> R {
        COPYING.set(true);
        let r = f();
        COPYING.set(false);
        r
    }

    fn arg_u32(line: &str, key: &str) -> Option<u32> {
        line.split(' ')
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }

    /// Binds to the victim's port for us, retrying while it fills its memory.
    fn link_victim(line: &str) {
        let Some(victim) = arg_u32(line, "victim") else {
            return;
        };
        let port = arg_u32(line, "port").unwrap_or(1);
        let deadline = now_ns() + 30_000_000_000;
        loop {
            let mut b = EvtchnBindInterdomain {
                remote_dom: victim as u16,
                _pad0: 0,
                remote_port: port,
                local_port: 0,
            };
            match evtchn(abi::EVTCHNOP_BIND_INTERDOMAIN, &mut b) {
                0 => {
                    println!("FUZZ: linked to the victim d{victim} port {port}");
                    VICTIM_PORT.set(Some(b.local_port));
                    return;
                }
                _ if now_ns() < deadline => yield_now(),
                rc => pvguest32::report::error(format_args!("bind to the victim's port = {rc}")),
            }
        }
    }

    pub fn run(si: &StartInfo32) {
        let line = core::str::from_utf8(start_info::cmd_line(si)).unwrap_or("");
        let o = match fuzz::options(line) {
            Ok(o) => o,
            Err(w) => pvguest32::report::error(format_args!("bad command line word {w:?}")),
        };
        if let Err((what, rc)) = setup() {
            pvguest32::report::error(format_args!("{what} = {rc}"));
        }
        if let Err((what, rc)) = traps::setup_user_mode() {
            pvguest32::report::error(format_args!("{what} = {rc}"));
        }
        let rc = install_gdt();
        if rc != 0 {
            pvguest32::report::error(format_args!("set_gdt(own, {}) = {rc}", GDT32.len()));
        }
        match bind_virq_timer() {
            Ok(p) => TIMER_PORT.set(p),
            Err(rc) => pvguest32::report::error(format_args!("bind_virq(VIRQ_TIMER) = {rc}")),
        }
        link_victim(line);
        match watchdog(0) {
            id @ 1.. => WATCHDOG_ID.set(id as u32),
            rc => pvguest32::report::error(format_args!("SCHEDOP_watchdog = {rc}")),
        }

        // What the generator may name.
        let l3 = si.pt_base;
        let nr_pt = si.nr_pt_frames.max(1);
        let pt_mfns: [u64; 8] =
            core::array::from_fn(|i| u64::from(mfn_of(l3 + (i as u32 % nr_pt) * 4096)));
        let scratch = SCRATCH.bottom();
        IMAGE_END.set(VIRT_BASE + si.nr_pages * 4096);
        let s_mfn = [
            u64::from(mfn_of(scratch)),
            u64::from(mfn_of(scratch + 4096)),
        ];
        let gdt_mfn = u64::from(mfn_of(GDT.addr()));
        let own = [
            l3,
            l3 + 4096,
            l3 + 8192,
            si as *const StartInfo32 as usize as u32,
            start_info::SHARED_INFO.addr(),
            hc::page_addr(),
            VIRT_BASE,
            KERNEL_STACK.bottom(),
            si.mfn_list,
            LANDING.bottom(),
            GDT.addr(),
            USER_STACK.bottom(),
        ]
        .map(u64::from);
        let maddrs = [
            pt_mfns[0] << 12,
            pt_mfns[1] << 12,
            pt_mfns[2] << 12,
            pt_mfns[3] << 12,
            s_mfn[0] << 12,
            s_mfn[1] << 12,
            gdt_mfn << 12,
        ];
        let mfns = [
            pt_mfns[0],
            pt_mfns[1],
            pt_mfns[2],
            s_mfn[0],
            s_mfn[1],
            gdt_mfn,
            u64::from(si.shared_info) >> 12,
            0x100,
            0xfffff,
            0,
            1,
        ];
        // The hypervisor's part of a 32-bit address space (from 0xF5800000:
        // the read-only compat M2P first).
        let hv = [
            0xf580_0000,
            0xf5a0_0000,
            0xf600_0000,
            0xfc00_0000,
            0xff80_0000,
            0xffff_e000,
        ];
        // Nothing there: below the hole, the low quarters.
        let bad = [
            0xf57f_f000,
            0x0000_0000,
            0xbfff_f000,
            0x8000_0000,
            0x5ead_b000,
        ];
        let env = Env {
            width: 32,
            scratch: u64::from(scratch),
            own: &own,
            maddrs: &maddrs,
            mfns: &mfns,
            hv: &hv,
            bad: &bad,
            last_page: 0xffff_f000,
            exclude: o.exclude,
        };
        EXCLUDE.set(o.exclude);
        // SAFETY: the filled hypercall page, read once into our copy.
        unsafe {
            core::ptr::copy_nonoverlapping(
                hc_page() as *const u8,
                HC_PAGE.as_ptr() as *mut u8,
                4096,
            )
        };
        println!(
            "FUZZ: start width=32 seed={} iters={} exclude={}",
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
            // SAFETY: RING is only touched here and by the trap handler,
            // which only reads it outside a step.
            unsafe { (*RING.as_ptr()).push(call) };
            STEP_TRAPS.set(0);
            let mask = start_info::upcall_mask();
            IN_STEP.set(true);
            let filled = fill_scratch(&words, scratch);
            let user = match call.step {
                Step::Int { vector, user: true } => {
                    let _ = traps::run_user(to_fn(int_stub(vector)));
                    true
                }
                Step::Exception {
                    exc,
                    user: true,
                    arg,
                    arg2,
                } => {
                    set_args(arg as u32, arg2 as u32, scratch, true);
                    let _ = traps::run_user(to_fn(routine(exc, arg as u32, arg2 as u32)));
                    true
                }
                _ => {
                    let _ = traps::catch(|| step(&call, scratch));
                    false
                }
            };
            if user && filled {
                check_scratch(&words, scratch, &s_mfn, &call);
            }
            IN_STEP.set(false);
            after(&call, scratch);
            // Events as they were before the step (a step that replaced
            // the callbacks ran masked, see `step`).
            if mask == 0 && start_info::upcall_mask() != 0 {
                start_info::set_upcall_mask(0);
                if start_info::upcall_pending() != 0 {
                    hc::force_event_check();
                }
            }
            if (i + 1) % o.progress == 0 {
                println!("FUZZ: iter={} last={call}", i + 1);
                watchdog(WATCHDOG_ID.get());
            }
        }
        println!("FUZZ: done iters={}", o.iters);
        if let Some(p) = VICTIM_PORT.get() {
            send(p);
        }
    }

    /// `USER_ARGS` for an exception step. The buffer for descriptor-table
    /// stores: the kernel's scratch page (in ring 3 that must fault, the
    /// store being emulated or not), a user page, or one straddling the
    /// end of a page.
    fn set_args(arg: u32, arg2: u32, scratch: u32, user: bool) {
        let umip_user = EXCLUDE.get() & fuzz::EXCL_UMIP_USER == 0;
        let ptr = match (user, arg >> 1 & 3) {
            (true, 0) if umip_user => scratch + 64,
            (true, _) => USER_BUF.addr() + ((arg >> 4) & 0xff8),
            (false, 0) => scratch + 4093,
            (false, _) => scratch + ((arg >> 4) & 0xff8),
        };
        USER_ARGS.set([arg, arg2, ptr, arg ^ arg2]);
    }

    /// After a ring-3 step: the kernel's scratch pages must be as filled,
    /// unless they no longer are supervisor pages of their own frames. (No
    /// runstate or time area is registered there: `forget_areas`.)
    fn check_scratch(words: &[u64; 1024], scratch: u32, s_mfn: &[u64; 2], call: &Call) {
        let mut changed = None;
        let _ = copying(|| {
            traps::catch(|| {
                for (k, w) in words.iter().enumerate() {
                    // SAFETY: our scratch pages; a fault unwinds.
                    let now = unsafe { (scratch as usize as *const u64).add(k).read_volatile() };
                    if now != *w {
                        changed = Some(k * 8);
                        break;
                    }
                }
            })
        });
        let Some(off) = changed else { return };
        let page = (scratch + off as u32) & !0xfff;
        let [_, _, l1] = start_info::walk(page);
        let Some(l1) = l1 else { return };
        let own_frame = (l1.val & PTE_ADDR) >> 12 == s_mfn[off / 4096];
        if l1.val & PTE_PRESENT != 0 && l1.val & PTE_USER == 0 && own_frame {
            // The marker is put together at run time: this image's own
            // bytes, dumped by a random console_io, must not read as it.
            let bug = core::hint::black_box("BUG");
            // First end whatever line a random console_io left open: the
            // campaign looks for the marker at the start of a line.
            println!();
            println!(
                "FUZZ: {bug}: a ring-3 step changed the kernel's scratch page at +{off:#x}: {call}"
            );
            // SAFETY: the loop is not running a step.
            unsafe { (*RING.as_ptr()).each(|c| println!("FUZZ: recent {c}")) };
            pvguest32::report::error(format_args!("ring 3 wrote a supervisor page"));
        }
    }

    /// The hypercall page as the hypervisor filled it.
    static HC_PAGE: GuestCell<[u8; 4096]> = GuestCell::new([0; 4096]);

    fn hc_page() -> *mut u8 {
        hc::page_addr() as usize as *mut u8
    }

    /// Puts the hypercall page back if a step wrote into it (it is one of
    /// the pointers drawn): with its stubs overwritten every later call,
    /// the shutdown at the end among them, would be another one.
    fn check_hypercall_page() {
        let saved = HC_PAGE.as_ptr() as *const u8;
        let _ = traps::catch(|| {
            // SAFETY: the hypercall page is part of the image, mapped
            // writable; a fault (a step remapped it) unwinds.
            unsafe {
                let page = core::slice::from_raw_parts(hc_page() as *const u8, 4096);
                if page != core::slice::from_raw_parts(saved, 4096) {
                    core::ptr::copy_nonoverlapping(saved, hc_page(), 4096);
                }
            }
        });
    }

    fn after(call: &Call, scratch: u32) {
        if let Step::Hypercall { .. } = call.step {
            check_hypercall_page();
        }
        let (touched, gdt, pages) = match call.step {
            Step::Hypercall { op, .. } => (
                matches!(op, 0 | 2..=6 | 8 | 13 | 21 | 30) || op >= 64,
                matches!(op, 2 | 10 | 13),
                matches!(op, 1 | 13 | 14 | 20 | 26),
            ),
            Step::Exception { exc, .. } => (
                matches!(exc, Exc::Wrmsr | Exc::WriteCr | Exc::Syscall | Exc::CliSti),
                false,
                exc == Exc::WriteCr,
            ),
            Step::Iret { .. } => (true, false, false),
            Step::Int { .. } => (false, false, false),
        };
        if touched || gdt {
            restore(gdt);
        }
        if pages {
            remap_scratch(scratch);
        }
        if let Step::Hypercall { op: 13 | 24, .. } = call.step {
            forget_areas();
        }
    }

    /// Unregisters the runstate and time areas a `vcpu_op` (direct or in
    /// a multicall) may have registered: the hypervisor writes those
    /// whenever the vCPU is scheduled (Xen's public/vcpu.h: "updated by
    /// the hypervisor each time the VCPU is scheduled"), wherever they
    /// are. Left in the scratch pages, a ring-3 step that happens to be
    /// descheduled would see them change, and `check_scratch` would blame
    /// ring 3. A null handle stops the updates (Xen: `update_runstate_area`
    /// skips a null handle).
    fn forget_areas() {
        // The 32-bit structs: a 4-byte handle (in an 8-byte union).
        let null = 0u64;
        for cmd in [
            abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            abi::VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
        ] {
            // SAFETY: a null area; `null` lives across the call.
            unsafe { hc::vcpu_op(cmd, 0, &null as *const u64 as usize as u32) };
        }
    }

    /// Every vector: inside a step the runtime's choice for traps (resume)
    /// and an unwind for faults, #DB also clearing TF; outside a step a
    /// trap is unexpected: print the last steps and stop.
    fn handler(frame: &mut TrapFrame, t: &Trap) -> Action {
        // #NM: a step set the virtual CR0.TS (fpu_taskswitch, clts, a
        // write to cr0) and the guest's own code uses SSE: clear it and go
        // on, as a kernel would, inside a step or not.
        if t.vector == 7 && hc::fpu_taskswitch(0) == 0 && STEP_TRAPS.get() < MAX_STEP_TRAPS {
            STEP_TRAPS.set(STEP_TRAPS.get() + 1);
            return Action::Resume;
        }
        STEP_TRAPS.set(STEP_TRAPS.get() + 1);
        if !IN_STEP.get() || STEP_TRAPS.get() > MAX_STEP_TRAPS {
            let why = if IN_STEP.get() {
                "the step keeps trapping"
            } else {
                "a trap outside a step"
            };
            println!("FUZZ: unexpected: {why}: {t}");
            // SAFETY: the loop is not running (we interrupted it outside a
            // step, or the step is abandoned).
            unsafe { (*RING.as_ptr()).each(|c| println!("FUZZ: recent {c}")) };
            return Action::Fatal;
        }
        match t.vector {
            // A data breakpoint a step left on the scratch pages, hit by
            // our own copy (a trap: the access is done): go on, RF set in
            // case it is an instruction breakpoint (a fault) on the copy.
            1 if COPYING.get() => {
                frame.eflags = frame.eflags & !(1 << 8) | 1 << 16;
                Action::Resume
            }
            1 => {
                frame.eflags &= !(1 << 8);
                Action::Unwind
            }
            3 | 4 | traps::VEC_INT80 | traps::VEC_SOFTINT => traps::default_action(frame, t),
            _ => Action::Unwind,
        }
    }

    /// The same guards for the entries of a multicall (32-bit
    /// `multicall_entry`: op, result, six arguments; 32 bytes) that lie in
    /// the scratch pages: calls that replace the trap table, callbacks,
    /// kernel stack or GDT, or `iret`, become unknown numbers (64 + op),
    /// shutdowns, blocks and polls become yields, `VCPUOP_down` names
    /// vCPU 1, `update_va_mapping` of the image goes to an unmapped region.
    fn defuse_multicall(list: u32, count: u32, scratch: u32) {
        for i in 0..count.min(256) {
            let Some(e) = list.checked_add(i * 32) else {
                return;
            };
            if !(scratch..scratch + 8192 - 32).contains(&e) {
                continue;
            }
            let p = e as usize as *mut u32;
            // SAFETY: inside our scratch pages, mapped writable (filled
            // just before).
            unsafe {
                let op = p.read_volatile();
                let arg = |k: usize| p.add(2 + k).read_volatile();
                match op {
                    0 | 2 | 3 | 4 | 23 | 30 => p.write_volatile(64 + op),
                    // Shutdowns, and blocks and polls (a later entry may
                    // cancel the timer or close its port: asleep for
                    // ever): yields.
                    6 | 29 if matches!(arg(0), 1..=5) => p.add(2).write_volatile(0),
                    // VCPUOP_down of vCPU 0: the only one.
                    24 if arg(0) == 2 && arg(1) == 0 => p.add(3).write_volatile(1),
                    14 if (VIRT_BASE..IMAGE_END.get()).contains(&arg(0))
                        && !(scratch..scratch + 8192).contains(&arg(0)) =>
                    {
                        p.add(2)
                            .write_volatile(0xe000_0000 | (arg(0) & 0x0fff_ffff))
                    }
                    _ => {}
                }
            }
        }
    }

    fn step(call: &Call, scratch: u32) {
        match call.step {
            Step::Hypercall { op, args, fixup } => {
                match fixup {
                    Fixup::None => {}
                    Fixup::Block => arm_timer(),
                    Fixup::Poll => {
                        arm_timer();
                        // SAFETY: the scratch page is ours: the timeout of
                        // the 32-bit sched_poll there (offset 8).
                        unsafe {
                            ((scratch + 8) as usize as *mut u64)
                                .write_volatile(now_ns() + 1_000_000)
                        };
                    }
                }
                // Calls that may replace the trap table, the callbacks,
                // the kernel stack or the GDT run with events masked: an
                // upcall on the way out would go to whatever they
                // installed, before `restore` puts ours back.
                if matches!(op, 0 | 2 | 3 | 4 | 13 | 30) {
                    start_info::set_upcall_mask(1);
                }
                let mut a = args.map(|x| x as u32);
                // update_va_mapping of our own image (but for the scratch
                // pages) would unmap the guest under its feet: aim it at the
                // same offset in an unmapped region instead.
                if op == abi::HYPERVISOR_UPDATE_VA_MAPPING
                    && (VIRT_BASE..IMAGE_END.get()).contains(&a[0])
                    && !(scratch..scratch + 8192).contains(&a[0])
                {
                    a[0] = 0xe000_0000 | (a[0] & 0x0fff_ffff);
                }
                if op == abi::HYPERVISOR_MULTICALL {
                    // Entries only from the scratch pages (whose contents
                    // are drawn): the rest of the image would run as calls
                    // (zeros: set_trap_table(NULL), ...). A list elsewhere
                    // in the image moves to an unmapped region, a count
                    // past the scratch pages is cut.
                    if (scratch..scratch + 8192).contains(&a[0]) {
                        a[1] = a[1].min((scratch + 8192 - a[0]) / 32);
                    } else if (VIRT_BASE..IMAGE_END.get()).contains(&a[0]) {
                        a[0] = 0xe000_0000 | (a[0] & 0x0fff_ffff);
                    }
                    defuse_multicall(a[0], a[1], scratch);
                }
                // SAFETY: this is the fuzzer: the hypervisor must cope with
                // any arguments; whatever happens to this guest is caught or
                // ends it.
                unsafe {
                    if op < 128 {
                        hc::hypercall6(op, a);
                    } else {
                        hc::int82(op, a);
                    }
                }
            }
            // From ring 1, `int $0x82` is a hypercall: %eax a number past
            // the implemented ones.
            Step::Int { vector, .. } => call_addr(int_stub(vector), 0x100 + u32::from(vector)),
            Step::Exception { exc, arg, arg2, .. } => {
                set_args(arg as u32, arg2 as u32, scratch, false);
                call_addr(routine(exc, arg as u32, arg2 as u32), arg as u32);
            }
            Step::Iret {
                flags,
                rip,
                cs,
                rflags,
                sp,
                ss,
            } => {
                let to_user = cs & 3 == 3;
                let eip = match rip {
                    0 if to_user => fuzz32_user_landing as *const () as usize as u32,
                    0 => fuzz32_landing as *const () as usize as u32,
                    r => r as u32,
                };
                let esp = if sp == 0 {
                    USER_STACK.top() - 256
                } else {
                    sp as u32
                };
                let frame = LANDING.top() - 64;
                let slots = [eip, cs as u32, rflags as u32, esp, ss as u32];
                for (k, v) in slots.iter().enumerate() {
                    // SAFETY: our landing area.
                    unsafe { ((frame + 4 * k as u32) as usize as *mut u32).write_volatile(*v) };
                }
                // SAFETY: the fuzzer; the frame is abandoned and the landing
                // pad faults back to the catch. The iret stub pushes %eax
                // (the frame's eax) right below eip.
                unsafe {
                    asm!(
                        "mov esp, {p}",
                        "jmp {s}",
                        p = in(reg) frame,
                        s = in(reg) hc::stub_addr(abi::HYPERVISOR_IRET),
                        in("eax") flags as u32,
                        options(noreturn),
                    )
                }
            }
        }
    }
}
