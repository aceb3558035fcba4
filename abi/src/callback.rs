//! `xen/include/public/callback.h`: `HYPERVISOR_callback_op(cmd, arg)`,
//! registering the entry points Xen bounces to.

use super::x86_32::XenCallback32;
use super::{layout, pod_struct};

/// x86: event delivery (the upcall).
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// x86: guest state could not be restored by Xen (bad segment, bad stack).
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// x86-64 Xen: `syscall` from a 64-bit guest application.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Only on 32-bit Xen with `supervisor_mode_kernel`: do not use.
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// x86: NMI delivery.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// x86-64 Xen: `sysenter` from 32-bit guest applications (Intel CPUs).
/// (Before interface 0x00030207 this name meant type 3.)
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
// 6 is unassigned.
/// x86-64 Xen: `syscall` from 32-bit guest applications (AMD CPUs).
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// `callback_register.flags`: mask events while in the callback. Ignored
/// for the event and NMI callbacks, which always mask events.
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// Register a callback: `arg` points to a [`CallbackRegister`].
pub const CALLBACKOP_REGISTER: u32 = 0;
/// Unregister a callback: `arg` points to a [`CallbackUnregister`]. Not
/// every type can be unregistered (`-EINVAL`).
pub const CALLBACKOP_UNREGISTER: u32 = 1;

/// Xen's name for a callback type, for traces.
pub fn callbacktype_name(type_: u16) -> &'static str {
    match type_ {
        CALLBACKTYPE_EVENT => "event",
        CALLBACKTYPE_FAILSAFE => "failsafe",
        CALLBACKTYPE_SYSCALL => "syscall",
        CALLBACKTYPE_SYSENTER_DEPRECATED => "sysenter_deprecated",
        CALLBACKTYPE_NMI => "nmi",
        CALLBACKTYPE_SYSENTER => "sysenter",
        CALLBACKTYPE_SYSCALL32 => "syscall32",
        _ => "unknown",
    }
}

pod_struct! {
    /// `struct callback_register` (64-bit guest).
    pub struct CallbackRegister {
        /// `CALLBACKTYPE_*` (Xen: `type`).
        pub type_: u16,
        /// `CALLBACKF_*`.
        pub flags: u16,
        pub _pad0: u32,
        /// `xen_callback_t`: the entry address.
        pub address: u64,
    }
}
layout!(CallbackRegister, 16; type_ @ 0, flags @ 2, address @ 8);

pod_struct! {
    /// `struct callback_register` (32-bit guest): the address is a
    /// `cs:eip` pair; `cs` must have RPL 1.
    pub struct CallbackRegister32 {
        pub type_: u16,
        pub flags: u16,
        pub address: XenCallback32,
    }
}
layout!(CallbackRegister32, 12; type_ @ 0, flags @ 2, address @ 4, address.cs @ 4,
        address.eip @ 8);

pod_struct! {
    /// `struct callback_unregister` (both widths).
    pub struct CallbackUnregister {
        pub type_: u16,
        pub _unused: u16,
    }
}
layout!(CallbackUnregister, 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(callbacktype_name(CALLBACKTYPE_SYSCALL32), "syscall32");
        assert_eq!(callbacktype_name(6), "unknown");
    }
}
