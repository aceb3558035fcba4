//! `xen/include/public/vcpu.h`: `HYPERVISOR_vcpu_op(cmd, vcpuid, arg)` —
//! vCPU bring-up, timers, runstate and relocating `vcpu_info`.

use super::{layout, pod_struct};

/// Initialise a vCPU once; `arg` = `vcpu_guest_context` (PV).
pub const VCPUOP_INITIALISE: u32 = 0;
/// Make an initialised vCPU runnable.
pub const VCPUOP_UP: u32 = 1;
/// Make a vCPU non-runnable.
pub const VCPUOP_DOWN: u32 = 2;
/// Returns 1 if the vCPU is up.
pub const VCPUOP_IS_UP: u32 = 3;
/// `arg` = [`VcpuRunstateInfo`] to fill.
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// `arg` = [`VcpuRegisterRunstateMemoryArea`].
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `arg` = [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// `arg` = NULL.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// `arg` = [`VcpuSetSingleshotTimer`].
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `arg` = NULL.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `arg` = [`VcpuRegisterVcpuInfo`]; once per vCPU.
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// Send an NMI to the vCPU; `arg` = NULL.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// `arg` = [`VcpuGetPhysid`].
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// `arg` = [`VcpuRegisterTimeMemoryArea`].
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;
/// As 5 but by guest-physical address (added after 4.17).
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u32 = 14;
/// As 13 but by guest-physical address (added after 4.17).
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u32 = 15;

/// Xen's name for a `VCPUOP_*`, for traces.
pub fn vcpuop_name(cmd: u32) -> &'static str {
    match cmd {
        VCPUOP_INITIALISE => "initialise",
        VCPUOP_UP => "up",
        VCPUOP_DOWN => "down",
        VCPUOP_IS_UP => "is_up",
        VCPUOP_GET_RUNSTATE_INFO => "get_runstate_info",
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => "register_runstate_memory_area",
        VCPUOP_SET_PERIODIC_TIMER => "set_periodic_timer",
        VCPUOP_STOP_PERIODIC_TIMER => "stop_periodic_timer",
        VCPUOP_SET_SINGLESHOT_TIMER => "set_singleshot_timer",
        VCPUOP_STOP_SINGLESHOT_TIMER => "stop_singleshot_timer",
        VCPUOP_REGISTER_VCPU_INFO => "register_vcpu_info",
        VCPUOP_SEND_NMI => "send_nmi",
        VCPUOP_GET_PHYSID => "get_physid",
        VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => "register_vcpu_time_memory_area",
        VCPUOP_REGISTER_RUNSTATE_PHYS_AREA => "register_runstate_phys_area",
        VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA => "register_vcpu_time_phys_area",
        _ => "unknown",
    }
}

/// Running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Runnable, not scheduled.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Blocked (idle): not runnable.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Not runnable, not blocked (hotplug, pause...).
pub const RUNSTATE_OFFLINE: i32 = 3;

/// Set in `state_entry_time` while Xen updates a guest-mapped runstate
/// area (with `VMASST_TYPE_runstate_update_flag`).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

pod_struct! {
    /// `struct vcpu_runstate_info` (64-bit guest).
    pub struct VcpuRunstateInfo {
        /// `RUNSTATE_*`.
        pub state: i32,
        pub _pad0: u32,
        /// When the current state was entered (system time, ns).
        pub state_entry_time: u64,
        /// Nanoseconds spent in each `RUNSTATE_*`.
        pub time: [u64; 4],
    }
}
layout!(VcpuRunstateInfo, 48; state @ 0, state_entry_time @ 8, time @ 16);

pod_struct! {
    /// `struct vcpu_runstate_info` (32-bit guest): no hole after `state`,
    /// so Xen translates it (`!` in `xlat.lst`).
    #[repr(packed(4))]
    pub struct VcpuRunstateInfo32 {
        pub state: i32,
        pub state_entry_time: u64,
        pub time: [u64; 4],
    }
}
layout!(VcpuRunstateInfo32, 44; state @ 0, state_entry_time @ 4, time @ 12);

pod_struct! {
    /// `struct vcpu_register_runstate_memory_area`: `addr` is a union of a
    /// guest handle, a pointer and a `uint64_t p` (the physical address for
    /// `VCPUOP_register_runstate_phys_area`). 8 bytes for both widths; a
    /// 32-bit guest's handle is in the low half. Xen registers ~0 as "none".
    pub struct VcpuRegisterRunstateMemoryArea {
        pub addr: u64,
    }
}
layout!(VcpuRegisterRunstateMemoryArea, 8);

pod_struct! {
    /// `struct vcpu_set_periodic_timer` (both widths).
    pub struct VcpuSetPeriodicTimer {
        pub period_ns: u64,
    }
}
layout!(VcpuSetPeriodicTimer, 8);

/// `vcpu_set_singleshot_timer.flags`: fail with `-ETIME` if the timeout
/// has passed (the hypervisor may ignore this).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

pod_struct! {
    /// `struct vcpu_set_singleshot_timer` (64-bit guest).
    pub struct VcpuSetSingleshotTimer {
        /// Absolute system time, ns.
        pub timeout_abs_ns: u64,
        /// `VCPU_SSHOTTMR_*`.
        pub flags: u32,
        pub _pad0: u32,
    }
}
layout!(VcpuSetSingleshotTimer, 16; timeout_abs_ns @ 0, flags @ 8);

pod_struct! {
    /// `struct vcpu_set_singleshot_timer` (32-bit guest): 12 bytes, so Xen
    /// translates it.
    #[repr(packed(4))]
    pub struct VcpuSetSingleshotTimer32 {
        pub timeout_abs_ns: u64,
        pub flags: u32,
    }
}
layout!(VcpuSetSingleshotTimer32, 12; timeout_abs_ns @ 0, flags @ 8);

pod_struct! {
    /// `struct vcpu_register_vcpu_info` (both widths): put this vCPU's
    /// `vcpu_info` at `offset` in frame `mfn`; it must not cross the page.
    pub struct VcpuRegisterVcpuInfo {
        pub mfn: u64,
        pub offset: u32,
        pub rsvd: u32,
    }
}
layout!(VcpuRegisterVcpuInfo, 16; mfn @ 0, offset @ 8, rsvd @ 12);

pod_struct! {
    /// `struct vcpu_get_physid`: on x86 `id[31:0]` = APIC id,
    /// `id[63:32]` = ACPI id.
    pub struct VcpuGetPhysid {
        pub phys_id: u64,
    }
}
layout!(VcpuGetPhysid, 8);

pod_struct! {
    /// `struct vcpu_register_time_memory_area`: like the runstate one, an
    /// 8-byte union of handle/pointer/`uint64_t p`.
    pub struct VcpuRegisterTimeMemoryArea {
        pub addr: u64,
    }
}
layout!(VcpuRegisterTimeMemoryArea, 8);
