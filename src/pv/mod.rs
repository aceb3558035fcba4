//! The PV interface: how guests enter the hypervisor and how it answers.
//!
//! - `entry`: where every guest entry lands (syscall, exception, interrupt)
//!   and the single way back;
//! - `fast`: the hypercalls answered without the hypervisor lock, and the
//!   lean way out when nothing is pending; `fast_trap`: the common guest
//!   exceptions bounced (or emulated) on the quick way;
//! - `hypercall`: the hypercall table; `compat`: the same for 32-bit
//!   guests; `iret` (Xen's `pv/iret.c`): `HYPERVISOR_iret`, both widths;
//! - one file per group of calls, each beside its Xen counterpart:
//!   `callback` (Xen's `pv/callback.c`: trap table, callbacks, kernel
//!   stack), `memory` (`common/memory.c`), `vcpu_op` (`common/domain.c`'s
//!   `do_vcpu_op`), `sched_op` (`common/sched/core.c`: block, poll,
//!   shutdown, watchdogs, `set_timer_op`), `console_io`
//!   (`drivers/char/console.c`), `version` (`common/kernel.c`:
//!   `xen_version`, `vm_assist`), `physdev` (`arch/x86/physdev.c`),
//!   `platform` (`arch/x86/platform_hypercall.c`), for both widths where
//!   the layouts allow;
//! - `traps`: the bounce of an exception onto the guest's own handler, and
//!   the failsafe callback;
//! - `width`: 64-bit or 32-bit guest, and how its frames differ;
//! - `emulate`: privileged instructions a PV kernel expects emulated;
//! - `event`: event channels (the port table, `evtchn`, is the
//!   domain's) and the upcall;
//! - `grant`: grant tables (a domain's own grants);
//! - `memory`: `memory_op` (reservation, memory maps, the M2P's place);
//! - `mm`: validated page-table updates;
//! - `multicall`: a batch of hypercalls in one entry;
//! - `debugreg`: the guest's debug registers (checked, armed while it runs);
//! - `descriptor`: the guest's GDT (`set_gdt`, `update_descriptor`);
//! - `guest_mem`: checked copies to and from guest memory;
//! - `retcheck`: would the CPU's `iretq` take a return frame?
//!
//! Policy, not mechanism: no `unsafe` here. What needs it (control
//! registers, the direct map, copies through the guest's mappings) is in
//! `arch` and `mm` behind safe calls (`arch::x86_64::cr`, `mm::view`;
//! the lock-free paths reach the running vCPU through
//! `arch::x86_64::percpu::PerCpu::running` and the current domain through
//! `sync::current_domain`).
//!
//! The guest entry (`arch::x86_64::idt`) does not import this module: it
//! calls the hooks [`ENTRY_HOOKS`] names, registered at boot.

#![deny(unsafe_code)]

#[cfg(target_os = "none")]
pub mod callback;
#[cfg(target_os = "none")]
pub mod compat;
#[cfg(target_os = "none")]
pub mod console_io;
#[cfg(target_os = "none")]
pub mod debugreg;
#[cfg(target_os = "none")]
pub mod descriptor;
#[cfg(target_os = "none")]
pub mod emulate;
#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod event;
// The port table is the domain's (Xen: common/event_channel.c); its old
// path still reads.
#[cfg(target_os = "none")]
pub use crate::domain::evtchn;
#[cfg(target_os = "none")]
pub mod fast;
#[cfg(target_os = "none")]
pub mod fast_trap;
#[cfg(target_os = "none")]
pub mod grant;
#[cfg(target_os = "none")]
pub mod guest_mem;
#[cfg(target_os = "none")]
pub mod hypercall;
pub mod insn;
#[cfg(target_os = "none")]
pub mod iret;
#[cfg(target_os = "none")]
pub mod memory;
#[cfg(target_os = "none")]
pub mod mm;
#[cfg(target_os = "none")]
pub mod multicall;
#[cfg(target_os = "none")]
pub mod physdev;
#[cfg(target_os = "none")]
pub mod platform;
pub mod retcheck;
#[cfg(target_os = "none")]
pub mod sched_op;
#[cfg(target_os = "none")]
pub mod traps;
#[cfg(target_os = "none")]
pub mod vcpu_op;
#[cfg(target_os = "none")]
pub mod version;
pub mod width;

/// Where the guest entry code sends each entry (`arch::x86_64::idt`'s
/// hooks, registered by `start`).
#[cfg(target_os = "none")]
pub static ENTRY_HOOKS: crate::arch::x86_64::idt::EntryHooks =
    crate::arch::x86_64::idt::EntryHooks {
        quick: fast::quick,
        evtchn_send: fast::evtchn_send,
        quick_exception: fast_trap::exception,
        exception: fast::exception,
        hypercall: fast::hypercall,
        hypercall32: fast::hypercall32,
        user_syscall: fast::user_syscall,
        from_guest: entry::from_guest,
        locked_way_out: entry::locked_way_out,
        return_faulted: entry::return_faulted,
        cpuid_policy: emulate::cpuid_policy,
    };
