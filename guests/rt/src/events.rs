//! Event channels (2-level ABI): the upcall handler, the bitmaps, and
//! `event_channel_op` / `sched_op` wrappers.
//!
//! # The upcall
//!
//! [`init`] registers the runtime's event-callback entry (`entry.S`, pseudo
//! vector [`crate::traps::VEC_EVENT`]). When an unmasked port is pending
//! and the vCPU's `evtchn_upcall_mask` is clear, the hypervisor bounces
//! there with events masked; the runtime's trap path calls [`dispatch`],
//! which does what Linux's `xen_evtchn_do_upcall` does:
//!
//! ```text
//! repeat:
//!     vcpu_info.evtchn_upcall_pending = 0
//!     sel = xchg(vcpu_info.evtchn_pending_sel, 0)
//!     for each word w set in sel:
//!         for each port p in evtchn_pending[w] & ~evtchn_mask[w]:
//!             clear evtchn_pending bit p; record p
//! while vcpu_info.evtchn_upcall_pending
//! ```
//!
//! and returns with `HYPERVISOR_iret`, which restores the upcall mask from
//! the frame's IF. Every delivery is recorded: per port a count, the vCPU
//! that handled it and the system time; per vCPU the number of upcalls;
//! and the first [`LOG_LEN`] ports in delivery order. A guest may also set
//! a [`set_hook`] called for each port.
//!
//! # Masking
//!
//! `evtchn_upcall_mask` (per vCPU, the guest's own byte) stops upcalls;
//! [`mask_events`] / [`unmask_events`] set and clear it. Clearing it does
//! not make the hypervisor look: like Linux's `xen_irq_enable`,
//! [`unmask_events`] then makes a harmless hypercall when an upcall is
//! pending, and the upcall is delivered on its way back.
//! A port's own bit in `evtchn_mask` stops it alone ([`mask_port`]);
//! `EVTCHNOP_unmask` ([`unmask`]) clears it and delivers it if pending.

use core::mem::offset_of;
use core::ptr::addr_of_mut;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::abi::{self, SharedInfo, VcpuInfo};
use crate::smp::{this_vcpu, MAX_VCPUS};
use crate::start_info::shared_info;

/// Ports whose deliveries are counted one by one (the others only in
/// [`other_count`]).
pub const TRACKED_PORTS: usize = 256;
/// Deliveries remembered in order.
pub const LOG_LEN: usize = 64;

static PORT_COUNT: [AtomicU32; TRACKED_PORTS] = [const { AtomicU32::new(0) }; TRACKED_PORTS];
static PORT_VCPU: [AtomicU32; TRACKED_PORTS] = [const { AtomicU32::new(u32::MAX) }; TRACKED_PORTS];
static PORT_TIME: [AtomicU64; TRACKED_PORTS] = [const { AtomicU64::new(0) }; TRACKED_PORTS];
static OTHER: AtomicU32 = AtomicU32::new(0);
static UPCALLS: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
static LOG: [AtomicU32; LOG_LEN] = [const { AtomicU32::new(0) }; LOG_LEN];
static LOGGED: AtomicUsize = AtomicUsize::new(0);
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Called from [`dispatch`] for every port delivered: `(port, vcpu)`.
pub type Hook = fn(u32, u32);

// --------------------------------------------------------------------------
// shared_info / vcpu_info access.
// --------------------------------------------------------------------------

fn si_word(off: usize) -> &'static AtomicU64 {
    // SAFETY: `off` is an 8-byte-aligned offset inside the mapped
    // shared_info page, which stays mapped for the guest's life; the
    // hypervisor writes it concurrently, hence an atomic.
    unsafe { AtomicU64::from_ptr((shared_info() as u64 + off as u64) as *mut u64) }
}

fn pending_word(port: u32) -> &'static AtomicU64 {
    si_word(offset_of!(SharedInfo, evtchn_pending) + (port as usize / 64 % abi::EVTCHN_WORDS) * 8)
}

fn mask_word(port: u32) -> &'static AtomicU64 {
    si_word(offset_of!(SharedInfo, evtchn_mask) + (port as usize / 64 % abi::EVTCHN_WORDS) * 8)
}

fn bit(port: u32) -> u64 {
    1 << (port % 64)
}

fn vcpu_info(vcpu: u32) -> *mut VcpuInfo {
    assert!((vcpu as usize) < MAX_VCPUS, "no vcpu_info for vCPU {vcpu}");
    // SAFETY: in bounds of the mapped page; no reference is created.
    unsafe { addr_of_mut!((*shared_info()).vcpu_info[vcpu as usize]) }
}

fn vcpu_byte(vcpu: u32, off: usize) -> &'static AtomicU8 {
    // SAFETY: a byte of vcpu_info[vcpu] in the mapped page (see si_word).
    unsafe { AtomicU8::from_ptr((vcpu_info(vcpu) as u64 + off as u64) as *mut u8) }
}

fn upcall_pending_of(vcpu: u32) -> &'static AtomicU8 {
    vcpu_byte(vcpu, offset_of!(VcpuInfo, evtchn_upcall_pending))
}

fn upcall_mask_of(vcpu: u32) -> &'static AtomicU8 {
    vcpu_byte(vcpu, offset_of!(VcpuInfo, evtchn_upcall_mask))
}

fn pending_sel_of(vcpu: u32) -> &'static AtomicU64 {
    // SAFETY: the 8-byte-aligned selector word of vcpu_info[vcpu].
    unsafe {
        AtomicU64::from_ptr(
            (vcpu_info(vcpu) as u64 + offset_of!(VcpuInfo, evtchn_pending_sel) as u64) as *mut u64,
        )
    }
}

/// `evtchn_pending` bit of `port`.
pub fn is_pending(port: u32) -> bool {
    pending_word(port).load(Ordering::SeqCst) & bit(port) != 0
}

/// `evtchn_mask` bit of `port`.
pub fn is_masked(port: u32) -> bool {
    mask_word(port).load(Ordering::SeqCst) & bit(port) != 0
}

/// Sets `port`'s `evtchn_mask` bit (the guest's to set).
pub fn mask_port(port: u32) {
    mask_word(port).fetch_or(bit(port), Ordering::SeqCst);
}

/// Clears `port`'s `evtchn_mask` bit directly, without delivering
/// anything (use [`unmask`] for that).
pub fn clear_mask_bit(port: u32) {
    mask_word(port).fetch_and(!bit(port), Ordering::SeqCst);
}

/// Clears `port`'s `evtchn_pending` bit (acknowledges it unhandled).
pub fn clear_pending(port: u32) {
    pending_word(port).fetch_and(!bit(port), Ordering::SeqCst);
}

/// `vcpu_info[vcpu].evtchn_upcall_pending`.
pub fn upcall_pending(vcpu: u32) -> u8 {
    upcall_pending_of(vcpu).load(Ordering::SeqCst)
}

/// Clears `vcpu_info[vcpu].evtchn_upcall_pending`.
pub fn clear_upcall_pending(vcpu: u32) {
    upcall_pending_of(vcpu).store(0, Ordering::SeqCst);
}

/// `vcpu_info[vcpu].evtchn_pending_sel`.
pub fn pending_sel(vcpu: u32) -> u64 {
    pending_sel_of(vcpu).load(Ordering::SeqCst)
}

/// The running vCPU's `evtchn_upcall_mask`.
pub fn upcall_mask() -> u8 {
    upcall_mask_of(this_vcpu()).load(Ordering::SeqCst)
}

/// Masks events on the running vCPU; returns the previous mask.
pub fn mask_events() -> u8 {
    upcall_mask_of(this_vcpu()).swap(1, Ordering::SeqCst)
}

/// Unmasks events on the running vCPU and, if an upcall is already
/// pending, makes a hypercall so that it is delivered now (it is, before
/// this returns).
pub fn unmask_events() {
    let v = this_vcpu();
    upcall_mask_of(v).store(0, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if upcall_pending_of(v).load(Ordering::SeqCst) != 0 {
        force_callback();
    }
}

/// Puts the mask back as [`mask_events`] found it.
pub fn restore_events(prev: u8) {
    if prev == 0 {
        unmask_events();
    } else {
        mask_events();
    }
}

/// A hypercall with no effect (`xen_version(XENVER_version)`), made so
/// that the hypervisor delivers a pending upcall on its way back.
pub fn force_callback() {
    // SAFETY: XENVER_version writes nothing.
    unsafe { crate::hypercall::xen_version(abi::XENVER_VERSION, 0) };
}

// --------------------------------------------------------------------------
// The upcall.
// --------------------------------------------------------------------------

/// Registers the runtime's event callback (`callback_op`); returns the
/// hypercall's result.
pub fn init() -> i64 {
    crate::traps::register_callback(abi::CALLBACKTYPE_EVENT, 0)
}

/// Sets (or clears) the function [`dispatch`] calls for each port.
pub fn set_hook(h: Option<Hook>) {
    HOOK.store(h.map_or(0, |f| f as usize), Ordering::SeqCst);
}

/// The upcall handler (called by the trap path for the event callback,
/// with events masked): scans and clears the pending ports of this vCPU
/// and records each one.
pub fn dispatch() {
    let v = this_vcpu();
    UPCALLS[v as usize].fetch_add(1, Ordering::SeqCst);
    loop {
        upcall_pending_of(v).store(0, Ordering::SeqCst);
        let mut sel = pending_sel_of(v).swap(0, Ordering::SeqCst);
        while sel != 0 {
            let w = sel.trailing_zeros();
            sel &= sel - 1;
            let first = w * 64;
            let mut ready = pending_word(first).load(Ordering::SeqCst)
                & !mask_word(first).load(Ordering::SeqCst);
            while ready != 0 {
                let b = ready.trailing_zeros();
                ready &= ready - 1;
                let port = first + b;
                // Acknowledge first: a new event on it then comes again.
                pending_word(port).fetch_and(!bit(port), Ordering::SeqCst);
                record(port, v);
            }
        }
        if upcall_pending_of(v).load(Ordering::SeqCst) == 0 {
            break;
        }
    }
}

fn record(port: u32, vcpu: u32) {
    let i = port as usize;
    if i < TRACKED_PORTS {
        PORT_TIME[i].store(crate::time::now_ns(), Ordering::SeqCst);
        PORT_VCPU[i].store(vcpu, Ordering::SeqCst);
        PORT_COUNT[i].fetch_add(1, Ordering::SeqCst);
    } else {
        OTHER.fetch_add(1, Ordering::SeqCst);
    }
    let n = LOGGED.fetch_add(1, Ordering::SeqCst);
    if n < LOG_LEN {
        LOG[n].store(port, Ordering::SeqCst);
    }
    let h = HOOK.load(Ordering::SeqCst);
    if h != 0 {
        // SAFETY: only `set_hook` stores non-zero values, from a `Hook`.
        let h: Hook = unsafe { core::mem::transmute::<usize, Hook>(h) };
        h(port, vcpu);
    }
}

/// Times `port` was delivered.
pub fn count(port: u32) -> u32 {
    PORT_COUNT
        .get(port as usize)
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

/// The vCPU that handled `port` last (`u32::MAX`: never delivered).
pub fn last_vcpu(port: u32) -> u32 {
    PORT_VCPU
        .get(port as usize)
        .map_or(u32::MAX, |c| c.load(Ordering::SeqCst))
}

/// System time of `port`'s last delivery.
pub fn last_time(port: u32) -> u64 {
    PORT_TIME
        .get(port as usize)
        .map_or(0, |c| c.load(Ordering::SeqCst))
}

/// Deliveries of ports >= [`TRACKED_PORTS`].
pub fn other_count() -> u32 {
    OTHER.load(Ordering::SeqCst)
}

/// Upcalls (event-callback entries) on `vcpu`.
pub fn upcalls(vcpu: u32) -> u32 {
    UPCALLS[vcpu as usize].load(Ordering::SeqCst)
}

/// Deliveries since [`clear_log`] (all of them, also past [`LOG_LEN`]).
pub fn logged() -> usize {
    LOGGED.load(Ordering::SeqCst)
}

/// The `i`th port delivered since [`clear_log`] (`i` < [`LOG_LEN`]).
pub fn log_entry(i: usize) -> Option<u32> {
    (i < logged().min(LOG_LEN)).then(|| LOG[i].load(Ordering::SeqCst))
}

/// Starts the delivery log afresh.
pub fn clear_log() {
    LOGGED.store(0, Ordering::SeqCst);
}

// --------------------------------------------------------------------------
// event_channel_op.
// --------------------------------------------------------------------------

/// `event_channel_op(cmd, &mut v)`: the hypercall's result.
pub fn op<T: abi::Pod>(cmd: u32, v: &mut T) -> i64 {
    // SAFETY: `v` is the caller's struct for `cmd` (the typed wrappers
    // below pair them); the hypervisor writes only its OUT fields.
    unsafe { crate::hypercall::event_channel_op(cmd, v as *mut T as u64) }
}

fn port_or(rc: i64, port: u32) -> Result<u32, i64> {
    if rc == 0 {
        Ok(port)
    } else {
        Err(rc)
    }
}

/// `EVTCHNOP_alloc_unbound { dom, remote_dom }` → the new port.
pub fn alloc_unbound(dom: u16, remote_dom: u16) -> Result<u32, i64> {
    let mut a = abi::EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    let rc = op(abi::EVTCHNOP_ALLOC_UNBOUND, &mut a);
    port_or(rc, a.port)
}

/// `EVTCHNOP_bind_interdomain { remote_dom, remote_port }` → the local
/// port.
pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, i64> {
    let mut b = abi::EvtchnBindInterdomain {
        remote_dom,
        _pad0: 0,
        remote_port,
        local_port: 0,
    };
    let rc = op(abi::EVTCHNOP_BIND_INTERDOMAIN, &mut b);
    port_or(rc, b.local_port)
}

/// `EVTCHNOP_bind_virq { virq, vcpu }` → the port.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, i64> {
    let mut b = abi::EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    let rc = op(abi::EVTCHNOP_BIND_VIRQ, &mut b);
    port_or(rc, b.port)
}

/// `EVTCHNOP_bind_ipi { vcpu }` → the port.
pub fn bind_ipi(vcpu: u32) -> Result<u32, i64> {
    let mut b = abi::EvtchnBindIpi { vcpu, port: 0 };
    let rc = op(abi::EVTCHNOP_BIND_IPI, &mut b);
    port_or(rc, b.port)
}

/// `EVTCHNOP_bind_vcpu { port, vcpu }`.
pub fn bind_vcpu(port: u32, vcpu: u32) -> i64 {
    op(
        abi::EVTCHNOP_BIND_VCPU,
        &mut abi::EvtchnBindVcpu { port, vcpu },
    )
}

/// `EVTCHNOP_close { port }`.
pub fn close(port: u32) -> i64 {
    op(abi::EVTCHNOP_CLOSE, &mut abi::EvtchnClose { port })
}

/// `EVTCHNOP_send { port }`.
pub fn send(port: u32) -> i64 {
    op(abi::EVTCHNOP_SEND, &mut abi::EvtchnSend { port })
}

/// `EVTCHNOP_unmask { port }`.
pub fn unmask(port: u32) -> i64 {
    op(abi::EVTCHNOP_UNMASK, &mut abi::EvtchnUnmask { port })
}

/// `EVTCHNOP_status { dom, port }` → the filled-in status.
pub fn status(dom: u16, port: u32) -> Result<abi::EvtchnStatus, i64> {
    let mut s = abi::EvtchnStatus {
        dom,
        _pad0: 0,
        port,
        status: 0xffff_ffff,
        vcpu: 0xffff_ffff,
        u: [0xffff_ffff; 2],
    };
    let rc = op(abi::EVTCHNOP_STATUS, &mut s);
    if rc == 0 {
        Ok(s)
    } else {
        Err(rc)
    }
}

// --------------------------------------------------------------------------
// sched_op.
// --------------------------------------------------------------------------

/// `sched_op(yield)`.
pub fn yield_now() -> i64 {
    // SAFETY: yield has no argument.
    unsafe { crate::hypercall::sched_op(abi::SCHEDOP_YIELD, 0) }
}

/// `sched_op(block)`: unmasks events and sleeps until one is pending (the
/// upcall is delivered on the way back).
pub fn block() -> i64 {
    // SAFETY: block has no argument.
    unsafe { crate::hypercall::sched_op(abi::SCHEDOP_BLOCK, 0) }
}

/// `sched_op(poll, { ports, timeout })`: sleeps until one of `ports` is
/// pending or system time `timeout` (0: none).
pub fn poll(ports: &[u32], timeout: u64) -> i64 {
    let p = abi::SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        _pad0: 0,
        timeout,
    };
    // SAFETY: the hypervisor only reads `p` and the ports.
    unsafe { crate::hypercall::sched_op(abi::SCHEDOP_POLL, &p as *const _ as u64) }
}

/// Sleeps with `sched_op(block)` until `cond()` holds or system time
/// `deadline` passes; returns whether `cond()` held. Checks with events
/// masked, so an event between the check and the block is not missed
/// (block returns at once when an upcall is pending). Something must wake
/// the vCPU by the deadline: the events `cond` waits for, or a timer the
/// caller armed (e.g. the periodic `VIRQ_TIMER`, bound). Events are
/// unmasked on return.
pub fn block_until(cond: impl Fn() -> bool, deadline: u64) -> bool {
    loop {
        mask_events();
        if cond() {
            unmask_events();
            return true;
        }
        if crate::time::now_ns() >= deadline {
            unmask_events();
            return cond();
        }
        block();
    }
}

/// Yields until `cond()` holds or system time `deadline` passes; returns
/// whether `cond()` held. Events are left as they are.
pub fn spin_until(cond: impl Fn() -> bool, deadline: u64) -> bool {
    while !cond() {
        if crate::time::now_ns() >= deadline {
            return cond();
        }
        yield_now();
    }
    true
}
