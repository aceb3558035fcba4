//! `xen/include/public/sched.h`: `HYPERVISOR_sched_op(cmd, arg)` — yield,
//! block, shutdown, poll.
//!
//! The legacy `HYPERVISOR_sched_op_compat(cmd, unsigned long arg)` (number
//! 6) takes the same `SCHEDOP_yield/block/shutdown` commands, with the
//! shutdown reason passed directly in `arg`.

use super::{layout, pod_struct};

/// Voluntarily yield the CPU. `arg` = NULL.
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event arrives; atomically unmasks events first.
pub const SCHEDOP_BLOCK: u32 = 1;
/// Halt the whole domain: `arg` = [`SchedShutdown`]. With
/// `SHUTDOWN_suspend`, the third argument is the start-info MFN.
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Wait for one of a set of ports: `arg` = [`SchedPoll`].
pub const SCHEDOP_POLL: u32 = 3;
/// Shut down another domain: `arg` = [`SchedRemoteShutdown`].
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Latch a shutdown code for a later shutdown: `arg` = [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Domain watchdog: `arg` = [`SchedWatchdog`].
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Pin the vCPU to one physical CPU (hardware domain only).
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Xen's name for a `SCHEDOP_*`, for traces.
pub fn schedop_name(cmd: u32) -> &'static str {
    match cmd {
        SCHEDOP_YIELD => "yield",
        SCHEDOP_BLOCK => "block",
        SCHEDOP_SHUTDOWN => "shutdown",
        SCHEDOP_POLL => "poll",
        SCHEDOP_REMOTE_SHUTDOWN => "remote_shutdown",
        SCHEDOP_SHUTDOWN_CODE => "shutdown_code",
        SCHEDOP_WATCHDOG => "watchdog",
        SCHEDOP_PIN_OVERRIDE => "pin_override",
        _ => "unknown",
    }
}

/// Domain exited normally. Clean up and kill.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Clean up, kill, and then restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Clean up, save suspend info, kill.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// The domain crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Restart because the watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Reset Xen state for the domain, keep memory and vCPU contexts.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// Highest valid reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// Xen's name for a `SHUTDOWN_*` reason, for the final report.
pub fn shutdown_reason_name(reason: u32) -> &'static str {
    match reason {
        SHUTDOWN_POWEROFF => "poweroff",
        SHUTDOWN_REBOOT => "reboot",
        SHUTDOWN_SUSPEND => "suspend",
        SHUTDOWN_CRASH => "crash",
        SHUTDOWN_WATCHDOG => "watchdog",
        SHUTDOWN_SOFT_RESET => "soft_reset",
        _ => "unknown",
    }
}

pod_struct! {
    /// `struct sched_shutdown` (both widths).
    pub struct SchedShutdown {
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }
}
layout!(SchedShutdown, 4);

pod_struct! {
    /// `struct sched_poll` (64-bit guest).
    pub struct SchedPoll {
        /// Guest handle: array of `evtchn_port_t`.
        pub ports: u64,
        pub nr_ports: u32,
        pub _pad0: u32,
        /// Absolute system time (ns) to give up at; 0 = no timeout.
        pub timeout: u64,
    }
}
layout!(SchedPoll, 24; ports @ 0, nr_ports @ 8, timeout @ 16);

pod_struct! {
    /// `struct sched_poll` (32-bit guest).
    #[repr(packed(4))]
    pub struct SchedPoll32 {
        pub ports: u32,
        pub nr_ports: u32,
        pub timeout: u64,
    }
}
layout!(SchedPoll32, 16; ports @ 0, nr_ports @ 4, timeout @ 8);

pod_struct! {
    /// `struct sched_remote_shutdown` (both widths).
    pub struct SchedRemoteShutdown {
        pub domain_id: u16,
        pub _pad0: u16,
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }
}
layout!(SchedRemoteShutdown, 8; domain_id @ 0, reason @ 4);

pod_struct! {
    /// `struct sched_watchdog` (both widths): id 0 creates a watchdog;
    /// otherwise timeout 0 destroys it, non-zero pokes it.
    pub struct SchedWatchdog {
        pub id: u32,
        pub timeout: u32,
    }
}
layout!(SchedWatchdog, 8);

pod_struct! {
    /// `struct sched_pin_override` (both widths): a negative `pcpu` undoes
    /// the override.
    pub struct SchedPinOverride {
        pub pcpu: i32,
    }
}
layout!(SchedPinOverride, 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(shutdown_reason_name(SHUTDOWN_POWEROFF), "poweroff");
        assert_eq!(shutdown_reason_name(SHUTDOWN_CRASH), "crash");
        assert_eq!(shutdown_reason_name(SHUTDOWN_MAX + 1), "unknown");
        assert_eq!(schedop_name(SCHEDOP_SHUTDOWN), "shutdown");
    }
}
