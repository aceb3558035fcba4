//! A virtual CPU: the guest's registers while it is not running, and the
//! PV state Xen keeps per vCPU (trap table, callbacks, kernel stack, mode).

use crate::arch::x86_64::idt::TrapFrame;

pub use crate::arch::x86_64::context::FpuState;
pub use crate::arch::x86_64::hot::{Callback, HotRef, TrapEntry, VcpuHot};

pub struct Vcpu {
    pub id: u32,
    /// Has a context (vCPU 0 from the builder, others from
    /// `VCPUOP_initialise`); only then may it be brought up.
    pub initialised: bool,
    pub up: bool,
    /// The CPU whose guest frame holds its registers (it runs there, or
    /// that CPU is in the hypervisor for it), set and cleared by that
    /// CPU's scheduler under `HV` and the domain's lock: no other CPU
    /// picks it meanwhile, and a wake-up for it goes to that CPU.
    pub running_on: Option<u32>,
    /// The CPUs it has run on (bit n: CPU n), for the end-of-run report.
    pub cpus_used: u64,
    /// The guest's registers while not running (on the CPU's stack when it
    /// is: see percpu::guest_frame).
    pub regs: TrapFrame,
    /// What the entry asm reads and writes: page tables, trap table,
    /// syscall callback, kernel stack, failsafe streak (`arch::x86_64::hot`);
    /// the vCPU derefs to it (`v.trap_table` is `v.hot.get().trap_table`).
    /// Its mode and failsafe flag are atomics beside it
    /// ([`Vcpu::kernel_mode`], [`Vcpu::in_failsafe`]).
    pub hot: HotRef,
    pub event: Callback,
    pub failsafe: Callback,
    pub syscall32: Callback,
    pub sysenter: Callback,
    pub nmi: Callback,
    /// The guest kernel stack's selector for entries from user mode
    /// (`stack_switch`; its pointer, `kernel_sp`, is in the hot block).
    pub kernel_ss: u64,
    pub fs_base: u64,
    pub gs_sel_user: u16,
    /// ds, es, fs, gs while another vCPU runs.
    pub data_sels: [u16; 4],
    /// Virtual CR0.TS (`fpu_taskswitch`).
    pub cr0_ts: bool,
    /// Debug registers as the guest set them (pv::debugreg).
    pub dr: [u64; 4],
    pub dr6: u64,
    pub dr7: u64,
    pub fpu: FpuState,
    /// Machine address of its vcpu_info when the guest moved it
    /// (`VCPUOP_register_vcpu_info`); None: its slot in shared_info.
    pub vcpu_info_maddr: Option<u64>,
    /// Runstate accounting (Xen's vcpu_runstate_info): the state, when it
    /// was entered, the time spent in each; and where the guest wants a
    /// copy kept (VCPUOP_register_runstate_memory_area, a guest address).
    pub runstate: (i32, u64, [u64; 4]),
    pub runstate_area: Option<u64>,
    /// An exception to bounce on the next return (debug key `i`).
    pub inject: Option<u8>,
    /// Blocked in `sched_op(block/poll)` until an event (or its timeout).
    pub blocked: bool,
    /// Ports a `sched_op(poll)` waits on (empty: not polling).
    pub poll: alloc::vec::Vec<u32>,
    /// Timers, in system time (ns since the hypervisor started): the
    /// single-shot one (`set_timer_op`, `VCPUOP_set_singleshot_timer`), the
    /// periodic one (period 0: off), and a poll's timeout. Each raises
    /// `VIRQ_TIMER` (the poll timeout only wakes).
    pub singleshot: Option<u64>,
    pub periodic_period: u64,
    pub periodic_next: u64,
    pub poll_deadline: Option<u64>,
    /// The guest's GDT (`set_gdt`): its frames and a validated copy of its
    /// descriptors, loaded into the CPU's GDT while this vCPU runs.
    pub gdt_frames: alloc::vec::Vec<u64>,
    pub gdt: alloc::vec::Vec<u64>,
}

impl core::ops::Deref for Vcpu {
    type Target = VcpuHot;
    #[inline(always)]
    fn deref(&self) -> &VcpuHot {
        self.hot.get()
    }
}

impl core::ops::DerefMut for Vcpu {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut VcpuHot {
        self.hot.get_mut()
    }
}

impl Vcpu {
    /// Guest kernel mode (else guest user mode).
    #[inline(always)]
    pub fn kernel_mode(&self) -> bool {
        self.hot.flags().kernel_mode()
    }

    #[inline(always)]
    pub fn set_kernel_mode(&self, on: bool) {
        self.hot.flags().set_kernel_mode(on)
    }

    /// In the failsafe callback, no progress since (see `VcpuFlags`).
    #[inline(always)]
    pub fn in_failsafe(&self) -> bool {
        self.hot.flags().in_failsafe()
    }

    #[inline(always)]
    pub fn set_in_failsafe(&self, on: bool) {
        self.hot.flags().set_in_failsafe(on)
    }

    pub fn new(id: u32) -> Vcpu {
        Vcpu {
            id,
            initialised: false,
            up: false,
            regs: TrapFrame::default(),
            hot: HotRef::new(),
            event: Callback::default(),
            failsafe: Callback::default(),
            syscall32: Callback::default(),
            sysenter: Callback::default(),
            nmi: Callback::default(),
            kernel_ss: 0,
            fs_base: 0,
            gs_sel_user: 0,
            data_sels: [0; 4],
            cr0_ts: false,
            dr: [0; 4],
            dr6: crate::arch::x86_64::debugreg::DR6_DEFAULT,
            dr7: crate::arch::x86_64::debugreg::DR7_DEFAULT,
            fpu: FpuState::initial(),
            vcpu_info_maddr: None,
            runstate: (ringvisor_abi::vcpu::RUNSTATE_OFFLINE, 0, [0; 4]),
            runstate_area: None,
            inject: None,
            blocked: false,
            running_on: None,
            cpus_used: 0,
            poll: alloc::vec::Vec::new(),
            singleshot: None,
            // vcpu.h: "The timer is initially programmed to trigger at
            // 100Hz (a period of 10ms)."
            periodic_period: 10_000_000,
            periodic_next: 10_000_000,
            poll_deadline: None,
            gdt_frames: alloc::vec::Vec::new(),
            gdt: alloc::vec::Vec::new(),
        }
    }

    /// The guest's top-level table for the current guest mode (what its
    /// CR3 says).
    pub fn current_table(&self) -> u64 {
        if self.kernel_mode() || self.compat_l4 != 0 {
            self.guest_table
        } else {
            self.guest_table_user
        }
    }

    /// The table the CPU's CR3 holds while this vCPU runs.
    #[inline(always)]
    pub fn cr3_table(&self) -> u64 {
        let h = self.hot.get();
        if h.compat_l4 != 0 {
            h.compat_l4
        } else if self.kernel_mode() {
            h.guest_table
        } else {
            h.guest_table_user
        }
    }
}
