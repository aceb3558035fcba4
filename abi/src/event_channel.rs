//! `xen/include/public/event_channel.h`:
//! `HYPERVISOR_event_channel_op(cmd, arg)`. All structures here have the
//! same layout for 32- and 64-bit guests (Xen only checks them, `?` in
//! `xlat.lst`). The `VIRQ_*` numbers are in [`super::xen`], as in Xen.

use super::xen::DomId;
use super::{layout, pod_struct};

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_BIND_IPI: u32 = 7;
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
pub const EVTCHNOP_UNMASK: u32 = 9;
pub const EVTCHNOP_RESET: u32 = 10;
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// Xen's name for an `EVTCHNOP_*`, for traces.
pub fn evtchnop_name(cmd: u32) -> &'static str {
    match cmd {
        EVTCHNOP_BIND_INTERDOMAIN => "bind_interdomain",
        EVTCHNOP_BIND_VIRQ => "bind_virq",
        EVTCHNOP_BIND_PIRQ => "bind_pirq",
        EVTCHNOP_CLOSE => "close",
        EVTCHNOP_SEND => "send",
        EVTCHNOP_STATUS => "status",
        EVTCHNOP_ALLOC_UNBOUND => "alloc_unbound",
        EVTCHNOP_BIND_IPI => "bind_ipi",
        EVTCHNOP_BIND_VCPU => "bind_vcpu",
        EVTCHNOP_UNMASK => "unmask",
        EVTCHNOP_RESET => "reset",
        EVTCHNOP_INIT_CONTROL => "init_control",
        EVTCHNOP_EXPAND_ARRAY => "expand_array",
        EVTCHNOP_SET_PRIORITY => "set_priority",
        _ => "unknown",
    }
}

/// `evtchn_port_t`.
pub type EvtchnPort = u32;

/// Ports of the 2-level ABI for a 64-bit guest (`EVTCHN_2L_NR_CHANNELS` =
/// `sizeof(xen_ulong_t)^2 * 64`; older headers call it `NR_EVENT_CHANNELS`).
/// A 32-bit guest has [`super::x86_32::EVTCHN_2L_NR_CHANNELS`] (1024).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;
/// The old name of [`EVTCHN_2L_NR_CHANNELS`].
pub const NR_EVENT_CHANNELS: u32 = EVTCHN_2L_NR_CHANNELS;

pod_struct! {
    /// `EVTCHNOP_alloc_unbound`: allocate a port in `dom` for `remote_dom`
    /// to bind to later.
    pub struct EvtchnAllocUnbound {
        /// IN.
        pub dom: DomId,
        /// IN.
        pub remote_dom: DomId,
        /// OUT.
        pub port: EvtchnPort,
    }
}
layout!(EvtchnAllocUnbound, 8; dom @ 0, remote_dom @ 2, port @ 4);

pod_struct! {
    /// `EVTCHNOP_bind_interdomain`: connect to an unbound remote port.
    pub struct EvtchnBindInterdomain {
        /// IN.
        pub remote_dom: DomId,
        pub _pad0: u16,
        /// IN.
        pub remote_port: EvtchnPort,
        /// OUT.
        pub local_port: EvtchnPort,
    }
}
layout!(EvtchnBindInterdomain, 12; remote_dom @ 0, remote_port @ 4, local_port @ 8);

pod_struct! {
    /// `EVTCHNOP_bind_virq`: bind a `VIRQ_*` on a vCPU.
    pub struct EvtchnBindVirq {
        /// IN: `VIRQ_*`.
        pub virq: u32,
        /// IN.
        pub vcpu: u32,
        /// OUT.
        pub port: EvtchnPort,
    }
}
layout!(EvtchnBindVirq, 12; virq @ 0, vcpu @ 4, port @ 8);

/// `evtchn_bind_pirq.flags`: the IRQ may be shared.
pub const BIND_PIRQ__WILL_SHARE: u32 = 1;

pod_struct! {
    /// `EVTCHNOP_bind_pirq`: bind a physical IRQ.
    pub struct EvtchnBindPirq {
        /// IN.
        pub pirq: u32,
        /// IN: `BIND_PIRQ__*`.
        pub flags: u32,
        /// OUT.
        pub port: EvtchnPort,
    }
}
layout!(EvtchnBindPirq, 12);

pod_struct! {
    /// `EVTCHNOP_bind_ipi`: a port for IPIs to `vcpu` within the domain.
    pub struct EvtchnBindIpi {
        /// IN.
        pub vcpu: u32,
        /// OUT.
        pub port: EvtchnPort,
    }
}
layout!(EvtchnBindIpi, 8);

pod_struct! {
    /// `EVTCHNOP_close`.
    pub struct EvtchnClose {
        pub port: EvtchnPort,
    }
}
layout!(EvtchnClose, 4);

pod_struct! {
    /// `EVTCHNOP_send`.
    pub struct EvtchnSend {
        pub port: EvtchnPort,
    }
}
layout!(EvtchnSend, 4);

/// `evtchn_status.status`: not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// Waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// Connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// Bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// Bound to a virtual IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

pod_struct! {
    /// `EVTCHNOP_status`. The C union `u` (`unbound { dom }`,
    /// `interdomain { dom, port }`, `pirq`, `virq`) is two words here;
    /// fill it with the `set_*` methods.
    pub struct EvtchnStatus {
        /// IN.
        pub dom: DomId,
        pub _pad0: u16,
        /// IN.
        pub port: EvtchnPort,
        /// OUT: `EVTCHNSTAT_*`.
        pub status: u32,
        /// OUT: the vCPU the port is bound to.
        pub vcpu: u32,
        /// OUT: the union `u`.
        pub u: [u32; 2],
    }
}
layout!(EvtchnStatus, 24; dom @ 0, port @ 4, status @ 8, vcpu @ 12, u @ 16);

impl EvtchnStatus {
    /// `u.unbound.dom`: the domain allowed to bind.
    pub fn set_unbound(&mut self, dom: DomId) {
        self.u = [u32::from(dom), 0];
    }
    /// `u.interdomain`: the remote end.
    pub fn set_interdomain(&mut self, dom: DomId, port: EvtchnPort) {
        self.u = [u32::from(dom), port];
    }
    /// `u.pirq`.
    pub fn set_pirq(&mut self, pirq: u32) {
        self.u = [pirq, 0];
    }
    /// `u.virq`.
    pub fn set_virq(&mut self, virq: u32) {
        self.u = [virq, 0];
    }
}

pod_struct! {
    /// `EVTCHNOP_bind_vcpu`: deliver the port's events to `vcpu`.
    pub struct EvtchnBindVcpu {
        pub port: EvtchnPort,
        pub vcpu: u32,
    }
}
layout!(EvtchnBindVcpu, 8);

pod_struct! {
    /// `EVTCHNOP_unmask`: clear the mask bit, and deliver if pending.
    pub struct EvtchnUnmask {
        pub port: EvtchnPort,
    }
}
layout!(EvtchnUnmask, 4);

pod_struct! {
    /// `EVTCHNOP_reset`: close all of a domain's ports.
    pub struct EvtchnReset {
        pub dom: DomId,
    }
}
layout!(EvtchnReset, 2);

pod_struct! {
    /// `EVTCHNOP_init_control`: switch to the FIFO ABI.
    pub struct EvtchnInitControl {
        /// IN.
        pub control_gfn: u64,
        /// IN.
        pub offset: u32,
        /// IN.
        pub vcpu: u32,
        /// OUT.
        pub link_bits: u8,
        pub _pad: [u8; 7],
    }
}
layout!(EvtchnInitControl, 24; control_gfn @ 0, offset @ 8, vcpu @ 12, link_bits @ 16);

pod_struct! {
    /// `EVTCHNOP_expand_array` (FIFO ABI).
    pub struct EvtchnExpandArray {
        pub array_gfn: u64,
    }
}
layout!(EvtchnExpandArray, 8);

pod_struct! {
    /// `EVTCHNOP_set_priority` (FIFO ABI).
    pub struct EvtchnSetPriority {
        pub port: EvtchnPort,
        pub priority: u32,
    }
}
layout!(EvtchnSetPriority, 8);

pod_struct! {
    /// `struct evtchn_op`: the argument of the legacy
    /// `HYPERVISOR_event_channel_op_compat` (number 16): the command and a
    /// union of the structures above (the largest, `evtchn_status`, is 24
    /// bytes). Read the payload with `from_bytes(&op.u[..size_of::<T>()])`.
    pub struct EvtchnOp {
        pub cmd: u32,
        pub u: [u8; 24],
    }
}
layout!(EvtchnOp, 28; cmd @ 0, u @ 4);

// FIFO ABI.

/// Highest FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// Lowest FIFO priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;
/// Bits of an `event_word_t`.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
pub const EVTCHN_FIFO_MASKED: u32 = 30;
pub const EVTCHN_FIFO_LINKED: u32 = 29;
pub const EVTCHN_FIFO_BUSY: u32 = 28;
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

pod_struct! {
    /// `struct evtchn_fifo_control_block` (FIFO ABI, per vCPU).
    pub struct EvtchnFifoControlBlock {
        pub ready: u32,
        pub _rsvd: u32,
        pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
    }
}
layout!(EvtchnFifoControlBlock, 72);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{as_bytes, from_bytes, Pod};

    #[test]
    fn status_union() {
        let mut s = EvtchnStatus::zeroed();
        s.set_interdomain(3, 17);
        let b = as_bytes(&s);
        assert_eq!(&b[16..18], &3u16.to_le_bytes()); // u.interdomain.dom
        assert_eq!(&b[20..24], &17u32.to_le_bytes()); // u.interdomain.port
    }

    #[test]
    fn compat_op_payload() {
        let mut op = EvtchnOp::zeroed();
        op.cmd = EVTCHNOP_SEND;
        op.u[..4].copy_from_slice(&5u32.to_le_bytes());
        let send: EvtchnSend = from_bytes(&op.u[..4]).unwrap();
        assert_eq!(send.port, 5);
        assert_eq!(evtchnop_name(op.cmd), "send");
    }
}
