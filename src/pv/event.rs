//! Events: `event_channel_op`, the pending/mask bits in `shared_info`, and
//! the upcall (Xen: `common/event_channel.c`, `event_2l.c`).
//!
//! # An event, step by step
//!
//! 1. Something raises port P of a domain: another domain's `send`, a
//!    timer (`VIRQ_TIMER`), the hypervisor. `set_pending` sets bit P of
//!    `shared_info.evtchn_pending`.
//! 2. Unless bit P of `evtchn_mask` is set, it sets bit P/64 of the vCPU's
//!    `evtchn_pending_sel` and then `evtchn_upcall_pending`, and wakes the
//!    vCPU if it was blocked.
//! 3. On the next way back into that vCPU (`deliver_upcall`), if
//!    `evtchn_upcall_pending` is set and `evtchn_upcall_mask` is clear, the
//!    hypervisor masks events and bounces onto the guest's event callback,
//!    with the same frame as an exception without error code. The guest
//!    scans the bitmaps, clears what it handled, and returns with
//!    `HYPERVISOR_iret` (which restores the mask from the frame's IF).
//! 4. A guest that keeps events masked never gets an upcall until it
//!    unmasks (`EVTCHNOP_unmask`, or clearing `evtchn_upcall_mask` and
//!    making any hypercall / returning with iret).

use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use ringvisor_abi::errno::*;
use ringvisor_abi::event_channel::*;
use ringvisor_abi::xen::{SharedInfo, VcpuInfo, DOMID_SELF};

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::Domain;
use crate::mm::view::{FrameView, VcpuInfoArea};
use crate::pv::evtchn::{Channel, EvtError, Port};
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};
use crate::pv::traps::{self, Bounce};

/// A u64 of the domain's shared_info page (which it owns for its whole
/// life: callers only use live domains); the guest may change it too,
/// hence atomics.
#[inline(always)]
fn word(d: &Domain, off: usize) -> &'static AtomicU64 {
    FrameView::domain_shared(d.shared_info_mfn).atomic_u64(off)
}

fn pending_word(d: &Domain, port: Port) -> &'static AtomicU64 {
    word(
        d,
        offset_of!(SharedInfo, evtchn_pending) + (port as usize / 64) * 8,
    )
}

fn mask_word(d: &Domain, port: Port) -> &'static AtomicU64 {
    // The bitmaps are little-endian bit arrays: 64-bit words address the
    // same bits for 32-bit guests; only where the mask array starts differs.
    let base = if d.is_32bit() {
        offset_of!(ringvisor_abi::x86_32::SharedInfo32, evtchn_mask)
    } else {
        offset_of!(SharedInfo, evtchn_mask)
    };
    word(d, base + (port as usize / 64) * 8)
}

fn upcall_pending(d: &Domain, vcpu: usize) -> &'static AtomicU8 {
    traps::vcpu_info(d, vcpu).atomic_u8(offset_of!(VcpuInfo, evtchn_upcall_pending))
}

/// Set the selector bit of `port`'s word in `vcpu`'s `evtchn_pending_sel`
/// (one bit per 64 ports, or per 32 for a 32-bit guest); was it set?
fn set_sel(d: &Domain, vcpu: usize, port: Port) -> bool {
    set_sel_at(d, traps::vcpu_info(d, vcpu), port)
}

/// [`set_sel`] on `vi`, the vCPU's `vcpu_info` (found once by the caller).
#[inline(always)]
fn set_sel_at(d: &Domain, vi: VcpuInfoArea, port: Port) -> bool {
    if d.is_32bit() {
        let off = offset_of!(ringvisor_abi::x86_32::VcpuInfo32, evtchn_pending_sel);
        let bit = 1u32 << (port / 32);
        vi.atomic_u32(off).fetch_or(bit, Ordering::SeqCst) & bit != 0
    } else {
        let bit = 1u64 << (port / 64);
        let off = offset_of!(VcpuInfo, evtchn_pending_sel);
        vi.atomic_u64(off).fetch_or(bit, Ordering::SeqCst) & bit != 0
    }
}

/// `evtchn_upcall_pending` and `evtchn_pending_sel` of `vcpu`, for the
/// debug keys (a port pending with neither set never wakes a block: the
/// guest's own state, as on Xen).
pub fn vcpu_event_bits(d: &Domain, vcpu: usize) -> (u8, u64) {
    let vi = traps::vcpu_info(d, vcpu);
    let sel = if d.is_32bit() {
        let off = offset_of!(ringvisor_abi::x86_32::VcpuInfo32, evtchn_pending_sel);
        u64::from(vi.atomic_u32(off).load(Ordering::Relaxed))
    } else {
        vi.atomic_u64(offset_of!(VcpuInfo, evtchn_pending_sel))
            .load(Ordering::Relaxed)
    };
    (upcall_pending(d, vcpu).load(Ordering::Relaxed), sel)
}

/// (pending, masked) of a port, for the debug keys.
pub fn port_bits(d: &Domain, port: Port) -> (bool, bool) {
    let bit = 1u64 << (port % 64);
    (
        pending_word(d, port).load(Ordering::Relaxed) & bit != 0,
        mask_word(d, port).load(Ordering::Relaxed) & bit != 0,
    )
}

pub fn is_pending(d: &Domain, port: Port) -> bool {
    pending_word(d, port).load(Ordering::Relaxed) & 1 << (port % 64) != 0
}

/// Raise `port` of `d` (steps 1-2 above).
// Tour 07: an event happens
pub fn set_pending(d: &mut Domain, port: Port) {
    if !d.is_alive() || port as usize >= d.ports.len() {
        return;
    }
    let bit = 1u64 << (port % 64);
    let was = pending_word(d, port).fetch_or(bit, Ordering::SeqCst);
    // A vCPU polling this port wakes even if the port is masked.
    for vi in 0..d.vcpus.len() {
        let v = &mut d.vcpus[vi];
        if !v.poll.is_empty() && v.poll.contains(&port) {
            v.blocked = false;
            v.poll.clear();
            crate::sched::kick(d, vi);
        }
    }
    if was & bit != 0 || mask_word(d, port).load(Ordering::SeqCst) & bit != 0 {
        return;
    }
    let vcpu = (d.ports.notify(port) as usize).min(d.vcpus.len() - 1);
    // Its `vcpu_info`, found once for both steps.
    let vi = traps::vcpu_info(d, vcpu);
    if set_sel_at(d, vi, port) {
        return;
    }
    mark_upcall_at(d, vcpu, vi);
}

/// Set `evtchn_upcall_pending` of `vcpu` and wake it.
fn mark_upcall(d: &mut Domain, vcpu: usize) {
    mark_upcall_at(d, vcpu, traps::vcpu_info(d, vcpu));
}

/// [`mark_upcall`] on `vi`, the vCPU's `vcpu_info`.
#[inline(always)]
fn mark_upcall_at(d: &mut Domain, vcpu: usize, vi: VcpuInfoArea) {
    vi.atomic_u8(offset_of!(VcpuInfo, evtchn_upcall_pending))
        .store(1, Ordering::SeqCst);
    d.vcpus[vcpu].blocked = false;
    // On another CPU, or asleep: its CPU (or an idle one) looks now.
    crate::sched::kick(d, vcpu);
}

/// Raise a virtual IRQ of `vcpu`, if the domain has bound it.
pub fn send_virq(d: &mut Domain, vcpu: usize, virq: u32) {
    if let Some(p) = d.ports.virq_port(virq, vcpu as u32) {
        set_pending(d, p);
    }
}

/// Events waiting and not masked on the running vCPU? (Whether an upcall
/// would happen.)
// Tour 07: is an upcall due?
pub fn upcall_ready(d: &Domain) -> bool {
    upcall_pending(d, d.cur).load(Ordering::SeqCst) != 0 && traps::upcall_mask(d) == 0
}

/// Step 3: bounce onto the event callback if an upcall is due.
// Tour 07: the upcall, on the way back into the guest
pub fn deliver_upcall(d: &mut Domain, f: &mut TrapFrame) {
    let cb = d.v().event;
    if cb.address == 0 || !upcall_ready(d) {
        return;
    }
    // Every upcall masks events (Xen: TBF_INTERRUPT on the event callback).
    let b = Bounce {
        mask_events: true,
        ..Bounce::to_callback("event upcall", cb)
    };
    traps::deliver(d, f, b);
}

fn evt_err(e: EvtError) -> Ret {
    match e {
        EvtError::NoSpace => err(ENOSPC),
        EvtError::Invalid => err(EINVAL),
        EvtError::Exists => err(EEXIST),
    }
}

/// Read a struct, run `f` on it, write it back (most ops have OUT fields).
fn inout<T: ringvisor_abi::Pod>(space: GuestSpace, arg: u64, f: impl FnOnce(&mut T) -> Ret) -> Ret {
    let Ok(mut v) = space.read::<T>(arg) else {
        return err(EFAULT);
    };
    let r = f(&mut v);
    if r == 0 && space.write(arg, &v).is_err() {
        return err(EFAULT);
    }
    r
}

/// `event_channel_op(cmd, arg)`.
/// `EVTCHNOP_init_control`'s argument checks, in Xen's order
/// (`evtchn_fifo_init_control`, `map_guest_page`): the vCPU must exist
/// (-ENOENT), the 72-byte control block must fit the page at an 8-byte
/// aligned offset (-EINVAL), the frame must be one of the domain's that
/// can be a writable page (-EINVAL).
fn fifo_init_control(
    d: &Domain,
    ft: &crate::mm::frametable::FrameTable,
    c: ringvisor_abi::event_channel::EvtchnInitControl,
) -> Ret {
    const CONTROL_BLOCK: u32 = 72; // ready, reserved, 16 queue heads
    if c.vcpu as usize >= d.vcpus.len() {
        return err(ENOENT);
    }
    if c.offset > 4096 - CONTROL_BLOCK || !c.offset.is_multiple_of(8) {
        return err(EINVAL);
    }
    let writable = ft
        .get(c.control_gfn)
        .is_some_and(|f| f.owner == d.id && f.kind == crate::mm::frametable::Kind::Normal);
    if !writable {
        return err(EINVAL);
    }
    err(ENOSYS)
}

/// The event channel ops that concern only the calling domain, under its
/// lock alone (no `HV`), as Xen's per-domain event lock: send, unmask,
/// binding a VIRQ or an IPI, moving a port to another vCPU,
/// `alloc_unbound` and `status` of its own ports (an interdomain port's
/// status is the remote id and port recorded here), binding an
/// interdomain channel to itself, `close` (the other end of a channel to
/// another domain is put back to unbound after this lock is released,
/// `send_deferred`), and the FIFO ops' checks. `None`: nothing done, the
/// op needs another domain's state (`op_remote`, with our lock
/// released): binding to another domain, or naming another domain where
/// only our own is allowed (its `-EPERM`/`-ESRCH` depends on whether it
/// is alive).
pub fn op_local(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Option<Ret> {
    // The send, the hot one, without `op_split`'s larger answer.
    if cmd as u32 == EVTCHNOP_SEND {
        return Some(send_op(d, space, arg));
    }
    op_split(d, space, cmd, arg).ok()
}

fn send_op(d: &mut Domain, space: GuestSpace, arg: u64) -> Ret {
    match space.read::<EvtchnSend>(arg) {
        Ok(s) => send(d, s.port),
        Err(_) => err(EFAULT),
    }
}

/// What `op_split` leaves for `op_remote`, read from the guest once.
enum Remote {
    /// `alloc_unbound` or `status` naming another domain: an error only.
    NotSelf(u16),
    /// `bind_interdomain` to another domain.
    Bind(EvtchnBindInterdomain),
}

/// `op_local`, saying what is left when it is not done.
fn op_split(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Result<Ret, Remote> {
    let me = d.id;
    let is_me = |dom: u16| dom == DOMID_SELF || dom == me;
    Ok(match cmd as u32 {
        EVTCHNOP_SEND => send_op(d, space, arg),
        EVTCHNOP_BIND_VIRQ => inout(space, arg, |b: &mut EvtchnBindVirq| {
            // A global VIRQ is bound on vCPU 0 (then movable with bind_vcpu).
            if crate::pv::evtchn::virq_is_global(b.virq) && b.vcpu != 0 {
                return err(EINVAL);
            }
            if b.vcpu as usize >= d.vcpus.len() {
                return err(ENOENT);
            }
            match d.ports.bind_virq(b.virq, b.vcpu) {
                Ok(p) => {
                    b.port = p;
                    0
                }
                Err(e) => evt_err(e),
            }
        }),
        EVTCHNOP_BIND_IPI => inout(space, arg, |b: &mut EvtchnBindIpi| {
            if b.vcpu as usize >= d.vcpus.len() {
                return err(ENOENT);
            }
            let ports = &mut d.ports;
            match ports.alloc(Channel::Ipi) {
                Ok(p) => {
                    ports.set_ipi_vcpu(p, b.vcpu);
                    b.port = p;
                    0
                }
                Err(e) => evt_err(e),
            }
        }),
        EVTCHNOP_BIND_VCPU => match space.read::<EvtchnBindVcpu>(arg) {
            Ok(b) if b.vcpu as usize >= d.vcpus.len() => err(ENOENT),
            Ok(b) => match d.ports.set_notify(b.port, b.vcpu) {
                Ok(()) => 0,
                Err(e) => evt_err(e),
            },
            Err(_) => err(EFAULT),
        },
        EVTCHNOP_UNMASK => match space.read::<EvtchnUnmask>(arg) {
            Ok(u) => unmask(d, u.port),
            Err(_) => err(EFAULT),
        },
        EVTCHNOP_ALLOC_UNBOUND => {
            let Ok(mut a) = space.read::<EvtchnAllocUnbound>(arg) else {
                return Ok(err(EFAULT));
            };
            if !is_me(a.dom) {
                return Err(Remote::NotSelf(a.dom));
            }
            let r = alloc_unbound(d, &mut a);
            write_back(space, arg, &a, r)
        }
        EVTCHNOP_STATUS => {
            let Ok(mut s) = space.read::<EvtchnStatus>(arg) else {
                return Ok(err(EFAULT));
            };
            if !is_me(s.dom) {
                return Err(Remote::NotSelf(s.dom));
            }
            let r = status(d, &mut s);
            write_back(space, arg, &s, r)
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            let Ok(mut b) = space.read::<EvtchnBindInterdomain>(arg) else {
                return Ok(err(EFAULT));
            };
            if !is_me(b.remote_dom) {
                return Err(Remote::Bind(b));
            }
            let r = bind_to_self(d, &mut b);
            write_back(space, arg, &b, r)
        }
        EVTCHNOP_CLOSE => match space.read::<EvtchnClose>(arg) {
            Ok(c) => close(d, c.port),
            Err(_) => err(EFAULT),
        },
        // FIFO event channels are not offered (2-level only; Linux falls
        // back to it). What Xen checks before it would switch ABI is
        // checked the same way, with its answers; a request that passes
        // is -ENOSYS, said so in docs/abi.md.
        EVTCHNOP_INIT_CONTROL => {
            match space.read::<ringvisor_abi::event_channel::EvtchnInitControl>(arg) {
                Ok(c) => fifo_init_control(d, crate::mm::frametable::frames(), c),
                Err(_) => err(EFAULT),
            }
        }
        // Xen: -EOPNOTSUPP until init_control succeeded, which it never does
        // here.
        EVTCHNOP_EXPAND_ARRAY => match space.read::<u64>(arg) {
            Ok(_) => err(EOPNOTSUPP),
            Err(_) => err(EFAULT),
        },
        // Xen's evtchn_set_priority: a port that is not valid -EINVAL
        // (valid as for status), else -ENOSYS: the 2-level ABI has no
        // priorities (Linux asks for its timer port's).
        EVTCHNOP_SET_PRIORITY => match space.read::<[u32; 2]>(arg) {
            Ok([port, _]) if port as usize >= d.ports.len() => err(EINVAL),
            Ok(_) => err(ENOSYS),
            Err(_) => err(EFAULT),
        },
        _ => err(ENOSYS),
    })
}

/// The OUT fields go back only on success (Xen copies back when rc is 0).
fn write_back<T: ringvisor_abi::Pod>(space: GuestSpace, arg: u64, v: &T, r: Ret) -> Ret {
    if r == 0 && space.write(arg, v).is_err() {
        return err(EFAULT);
    }
    r
}

/// `alloc_unbound` on the caller's own ports (`a.dom` is itself).
fn alloc_unbound(d: &mut Domain, a: &mut EvtchnAllocUnbound) -> Ret {
    // As in Xen, the remote domain need not exist yet.
    let remote = if a.remote_dom == DOMID_SELF {
        d.id
    } else {
        a.remote_dom
    };
    match d.ports.alloc(Channel::Unbound { remote }) {
        Ok(p) => {
            a.port = p;
            0
        }
        Err(e) => evt_err(e),
    }
}

/// `status` of one of the caller's own ports (`s.dom` is itself): an
/// interdomain port reports the remote end recorded here.
fn status(d: &Domain, s: &mut EvtchnStatus) -> Ret {
    let ports = &d.ports;
    if s.port as usize >= ports.len() {
        return err(EINVAL);
    }
    // Port 0 (reserved) reads as closed, as in Xen.
    let c = ports.get(s.port).unwrap_or(Channel::Free);
    s.vcpu = ports.notify(s.port);
    s.u = [0; 2];
    match c {
        Channel::Free | Channel::Reserved => s.status = EVTCHNSTAT_CLOSED,
        Channel::Unbound { remote } => {
            s.set_unbound(remote);
            s.status = EVTCHNSTAT_UNBOUND;
        }
        Channel::Interdomain {
            remote,
            remote_port,
        } => {
            s.set_interdomain(remote, remote_port);
            s.status = EVTCHNSTAT_INTERDOMAIN;
        }
        Channel::Virq(v) => {
            s.set_virq(v);
            s.status = EVTCHNSTAT_VIRQ;
        }
        Channel::Ipi => s.status = EVTCHNSTAT_IPI,
        // The console ring's other end is the hypervisor.
        Channel::Console => {
            s.set_interdomain(ringvisor_abi::xen::DOMID_XEN, 0);
            s.status = EVTCHNSTAT_INTERDOMAIN;
        }
    }
    0
}

/// `bind_interdomain` to one of the caller's own unbound ports (a
/// loopback channel): both ends are here, under the lock held.
fn bind_to_self(d: &mut Domain, b: &mut EvtchnBindInterdomain) -> Ret {
    let me = d.id;
    // The remote port must be waiting for us.
    if d.ports.get(b.remote_port) != Some(Channel::Unbound { remote: me }) {
        return err(EINVAL);
    }
    let local = match d.ports.alloc(Channel::Interdomain {
        remote: me,
        remote_port: b.remote_port,
    }) {
        Ok(p) => p,
        Err(e) => return evt_err(e),
    };
    d.ports.set(
        b.remote_port,
        Channel::Interdomain {
            remote: me,
            remote_port: local,
        },
    );
    b.local_port = local;
    // Xen raises the local port so the binder notices a pending
    // notification (evtchn_bind_interdomain).
    set_pending(d, local);
    0
}

/// `PerCpu::deferred_send`'s valid bit. A send: the remote id in bits
/// 32-47, its port in bits 0-31. With [`CLOSE`]: our port closed in bits
/// 48-61, the remote id in 32-47, ours in 16-31, the remote port in 0-15.
const DEFER: u64 = 1 << 63;
/// The deferred step is a close's other end, not a send.
const CLOSE: u64 = 1 << 62;
// Both ports of a close fit their fields.
const _: () = assert!(crate::pv::evtchn::MAX_PORTS <= 1 << 14);

/// The deferred step of closing `port` of domain `me`, whose other end is
/// `remote_port` of `remote`.
fn close_word(port: Port, remote: u16, me: u16, remote_port: Port) -> u64 {
    DEFER
        | CLOSE
        | (port as u64) << 48
        | (remote as u64) << 32
        | (me as u64) << 16
        | remote_port as u64
}

/// The deferred step of a send on `port` of domain `me` to its other end,
/// `remote_port` of `remote` (the same fields as [`close_word`]'s).
fn send_word(port: Port, remote: u16, me: u16, remote_port: Port) -> u64 {
    DEFER | (port as u64) << 48 | (remote as u64) << 32 | (me as u64) << 16 | remote_port as u64
}

/// What `op_local` left for after the domain's lock (none held by the
/// caller now), under the other end's lock: a send's port made pending,
/// or a closed channel's other end put back to unbound.
pub fn send_deferred() {
    let pc = crate::arch::x86_64::percpu::this();
    if pc.deferred_send.load(Ordering::Relaxed) == 0 {
        return;
    }
    let w = pc.deferred_send.swap(0, Ordering::Relaxed);
    if w & DEFER == 0 {
        return;
    }
    if w & CLOSE != 0 {
        return close_deferred(w);
    }
    // A domain that was never built: dropped, as `send` drops it.
    let Some(r) = crate::sched::domain_lock((w >> 32) as u16) else {
        return;
    };
    let (port, me, remote_port) = ((w >> 48) as u32 & 0x3fff, (w >> 16) as u16, w as u16 as u32);
    let mut r = r.lock();
    // Only if the other end is still this channel's: it may have closed
    // the port since our lock showed it, and bound it again to something
    // else (Xen holds both channels' locks for the send; we hold one
    // domain lock at a time, so the look is made again here).
    let still = Some(Channel::Interdomain {
        remote: me,
        remote_port: port,
    });
    if r.ports.get(remote_port) == still {
        set_pending(&mut r, remote_port);
    }
}

/// A close's other end (rare: kept out of the send's path).
#[cold]
#[inline(never)]
fn close_deferred(w: u64) {
    let Some(r) = crate::sched::domain_lock((w >> 32) as u16) else {
        return;
    };
    let (port, me, remote_port) = ((w >> 48) as u32 & 0x3fff, (w >> 16) as u16, w as u16 as u32);
    let mut r = r.lock();
    // Only if it still points at the port we closed: the other end may
    // have closed it meanwhile, or died (its ports stay as they were, as
    // today: nothing sends to a dead domain). Our port stays closed.
    if r.ports.get(remote_port)
        == Some(Channel::Interdomain {
            remote: me,
            remote_port: port,
        })
    {
        r.ports.set(remote_port, Channel::Unbound { remote: me });
    }
}

/// `event_channel_op(cmd, arg)` with no lock held by the caller: under
/// `me`'s lock alone (`op_local`), then, for an op that names another
/// domain, that domain's lock after ours is released, never both. A
/// deferred send or close is finished here too.
pub fn op_remote(me: &crate::sync::DomainLock, cmd: u64, arg: u64) -> Ret {
    let (id, left) = {
        let mut d = me.lock();
        let space = d.v().space();
        (d.id, op_split(&mut d, space, cmd, arg))
    };
    match left {
        Ok(r) => {
            send_deferred();
            r
        }
        // Xen looks the domain up first: another that exists is -EPERM,
        // one that does not -ESRCH.
        Err(Remote::NotSelf(dom)) => match crate::sched::domain_lock(dom) {
            Some(r) if r.lock().is_alive() => err(EPERM),
            _ => err(ESRCH),
        },
        Err(Remote::Bind(b)) => bind_remote(me, id, b, arg),
    }
}

/// `bind_interdomain` to another domain `b.remote_dom`, one lock at a time
/// (Xen holds both event locks; here a step that finds the other side
/// changed undoes ours): check the remote port waits for us, take our
/// port, point the remote port at it if it still waits, then raise ours.
/// The answers and their order are those of one atomic step: -ESRCH (no
/// such live domain), -EINVAL (its port does not wait for us), -ENOSPC.
fn bind_remote(
    me: &crate::sync::DomainLock,
    id: u16,
    mut b: EvtchnBindInterdomain,
    arg: u64,
) -> Ret {
    let rdom = b.remote_dom;
    let Some(rl) = crate::sched::domain_lock(rdom) else {
        return err(ESRCH);
    };
    let waiting = Some(Channel::Unbound { remote: id });
    {
        let r = rl.lock();
        if !r.is_alive() {
            return err(ESRCH);
        }
        if r.ports.get(b.remote_port) != waiting {
            return err(EINVAL);
        }
    }
    let ours = Channel::Interdomain {
        remote: rdom,
        remote_port: b.remote_port,
    };
    let local = match me.lock().ports.alloc(ours) {
        Ok(p) => p,
        Err(e) => return evt_err(e),
    };
    // The remote port, if it still waits for us (it may have been closed,
    // or its domain died, since we looked).
    let bound = {
        let mut r = rl.lock();
        if !r.is_alive() {
            Err(err(ESRCH))
        } else if r.ports.get(b.remote_port) != waiting {
            Err(err(EINVAL))
        } else {
            r.ports.set(
                b.remote_port,
                Channel::Interdomain {
                    remote: id,
                    remote_port: local,
                },
            );
            Ok(())
        }
    };
    let mut d = me.lock();
    let still_ours = d.ports.get(local) == Some(ours);
    if let Err(e) = bound {
        // Our port back, unless already closed meanwhile (nothing made
        // it pending; the remote port never pointed at it).
        if still_ours {
            let _ = d.ports.close(local);
        }
        return e;
    }
    if !still_ours {
        // Closed meanwhile (another vCPU), before the remote port pointed
        // at it: bound, then closed; the close's remote step again.
        drop(d);
        let pc = crate::arch::x86_64::percpu::this();
        pc.deferred_send.store(
            close_word(local, rdom, id, b.remote_port),
            Ordering::Relaxed,
        );
        send_deferred();
        b.local_port = local;
        return write_back(me.lock().v().space(), arg, &b, 0);
    }
    b.local_port = local;
    // Xen raises the local port so the binder notices a pending
    // notification (evtchn_bind_interdomain).
    set_pending(&mut d, local);
    let space = d.v().space();
    write_back(space, arg, &b, 0)
}

/// `close` under the caller's lock: the port is freed here; the other end
/// of a channel to another domain goes back to waiting for us after this
/// lock is released (`send_deferred`), as a send to it does.
fn close(d: &mut Domain, port: Port) -> Ret {
    let closed = d.ports.close(port);
    if closed.is_ok() {
        // A closed port is not pending (Xen: evtchn_free), so its next
        // binding starts clean.
        pending_word(d, port).fetch_and(!(1u64 << (port % 64)), Ordering::SeqCst);
    }
    match closed {
        // A loopback channel: its other end is here.
        Ok(Channel::Interdomain {
            remote,
            remote_port,
        }) if remote == d.id => {
            if d.ports.get(remote_port)
                == Some(Channel::Interdomain {
                    remote,
                    remote_port: port,
                })
            {
                d.ports.set(remote_port, Channel::Unbound { remote });
            }
            0
        }
        Ok(Channel::Interdomain {
            remote,
            remote_port,
        }) => {
            let pc = crate::arch::x86_64::percpu::this();
            pc.deferred_send.store(
                close_word(port, remote, d.id, remote_port),
                Ordering::Relaxed,
            );
            0
        }
        Ok(_) => 0,
        Err(e) => evt_err(e),
    }
}

/// `EVTCHNOP_send` of the quick way (`pv::fast`, under the caller's lock
/// as the locked path holds it): `send_op` for a port of an event channel
/// ([`send_channel`]). `None`: nothing done (the argument unreadable, or
/// any other port: closed, unbound, the console's): the locked path's
/// `send_op` answers it, as before. A send to another domain is left in
/// `PerCpu::deferred_send` for `send_deferred`, as on the locked path.
pub fn send_op_quick(d: &mut Domain, space: GuestSpace, arg: u64) -> Option<Ret> {
    let s = space.read::<EvtchnSend>(arg).ok()?;
    send_channel(d, s.port).then_some(0)
}

/// [`send`]'s arms for an event channel (the answer is 0): an IPI port and
/// a loopback channel at once under the lock held, a channel to another
/// domain after that lock is released. `false`: not one of those, nothing
/// done.
#[inline(always)]
fn send_channel(d: &mut Domain, port: Port) -> bool {
    match d.ports.get(port) {
        // To itself: at once, under the lock held.
        Some(Channel::Interdomain {
            remote,
            remote_port,
        }) if remote == d.id => set_pending(d, remote_port),
        // To another domain: after this domain's lock is released
        // (`send_deferred`; never two domain locks at once).
        Some(Channel::Interdomain {
            remote,
            remote_port,
        }) => {
            let pc = crate::arch::x86_64::percpu::this();
            pc.deferred_send.store(
                send_word(port, remote, d.id, remote_port),
                Ordering::Relaxed,
            );
        }
        Some(Channel::Ipi) => set_pending(d, port),
        _ => return false,
    }
    true
}

// Tour 07: EVTCHNOP_send
/// `EVTCHNOP_send` under the sender's lock; a send to another domain is
/// finished by `send_deferred` once that lock is released.
fn send(d: &mut Domain, port: Port) -> Ret {
    // An event channel: its event raised (or left for `send_deferred`).
    if send_channel(d, port) {
        return 0;
    }
    match d.ports.get(port) {
        // Nobody listening yet: the notification is dropped (as in
        // Xen).
        Some(Channel::Unbound { .. }) => 0,
        Some(Channel::Console) => {
            drain_console(d);
            0
        }
        _ => err(EINVAL),
    }
}

// Tour 07: EVTCHNOP_unmask delivers what was pending
fn unmask(d: &mut Domain, port: Port) -> Ret {
    // Any port the table has grown to is valid (Xen: port_is_valid), bound
    // or not.
    if port as usize >= d.ports.len() {
        return err(EINVAL);
    }
    let bit = 1u64 << (port % 64);
    let vcpu = (d.ports.notify(port) as usize).min(d.vcpus.len() - 1);
    let was = mask_word(d, port).fetch_and(!bit, Ordering::SeqCst);
    // Unmasking a pending port delivers it now (Xen: evtchn_2l_unmask).
    if was & bit != 0
        && pending_word(d, port).load(Ordering::SeqCst) & bit != 0
        && !set_sel(d, vcpu, port)
    {
        mark_upcall(d, vcpu);
    }
    0
}

/// The console ring of a domain other than 0: copy what the guest wrote
/// to `out` to the serial console as `(dN) ` lines.
/// One byte into a domU's console ring's input half; false when it is
/// full (the byte is dropped).
pub fn console_ring_input(d: &Domain, mfn: u64, b: u8) -> bool {
    use ringvisor_abi::console::{XenconsInterface as R, XENCONS_IN_SIZE};
    let _ = d;
    // The ring page the builder gave the domain (`d.console`).
    let ring = FrameView::domain_shared(mfn);
    let idx = |off: usize| ring.atomic_u32(off);
    let cons = idx(offset_of!(R, in_cons)).load(Ordering::Acquire);
    let prod = idx(offset_of!(R, in_prod)).load(Ordering::Relaxed);
    if prod.wrapping_sub(cons) as usize >= XENCONS_IN_SIZE {
        return false;
    }
    let off = offset_of!(R, in_) + (prod as usize % XENCONS_IN_SIZE);
    ring.atomic_u8(off).store(b, Ordering::Relaxed);
    idx(offset_of!(R, in_prod)).store(prod.wrapping_add(1), Ordering::Release);
    true
}

pub fn drain_console(d: &mut Domain) {
    use ringvisor_abi::console::XenconsInterface as R;
    let Some((mfn, _)) = d.console else { return };
    crate::pv::console_io::console_refill(d);
    let ring = FrameView::domain_shared(mfn);
    let idx = |off: usize| ring.atomic_u32(off);
    let prod = idx(offset_of!(R, out_prod)).load(Ordering::Acquire);
    let mut cons = idx(offset_of!(R, out_cons)).load(Ordering::Relaxed);
    // A guest can write any indices: never read more than the ring holds.
    if prod.wrapping_sub(cons) as usize > ringvisor_abi::console::XENCONS_OUT_SIZE {
        cons = prod.wrapping_sub(ringvisor_abi::console::XENCONS_OUT_SIZE as u32);
    }
    while cons != prod {
        let off = offset_of!(R, out) + (cons as usize % ringvisor_abi::console::XENCONS_OUT_SIZE);
        let b = ring.atomic_u8(off).load(Ordering::Relaxed);
        crate::pv::console_io::console_byte(d, b);
        cons = cons.wrapping_add(1);
    }
    idx(offset_of!(R, out_cons)).store(cons, Ordering::Release);
    crate::pv::console_io::console_show_partial(d);
}
