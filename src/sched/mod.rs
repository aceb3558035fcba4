//! Scheduling vCPUs on every CPU, and the end of the run.
//!
//! Round robin over every vCPU that is up, not blocked and not running
//! on another CPU, in domain order, with a 10 ms time slice from each
//! CPU's local APIC timer; every CPU runs this loop, taking from the one
//! shared queue (`run_cpu`, `next_runnable`). A switch happens only on
//! the way back to a guest (`pv::entry::before_guest_return`): the
//! outgoing vCPU's registers are copied out of the frame at the top of
//! this CPU's stack and the incoming vCPU's copied in, so the same
//! `iretq` resumes whichever guest is next. Wake-ups across CPUs go by
//! IPI (`kick`), TLB flushes to each domain's dirty-CPU mask
//! (`flush_domain_tlb`); docs/design.md, "SMP", says how.
//!
//! Policy only: the registers a switch saves and loads are
//! `arch::x86_64::context`'s, the time record `arch::x86_64::time`'s.
#![deny(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;

use crate::arch::x86_64::exit::{exit, Verdict};
use crate::arch::x86_64::idt::{enter_frame, TrapFrame};
use crate::arch::x86_64::smp::MAX_CPUS;
use crate::arch::x86_64::{apic, context, percpu};
use crate::domain::vcpu::Vcpu;
use crate::domain::{builder, Domain, State};
use crate::sync::DomainRef;

pub const TIMESLICE_NS: u64 = 10_000_000;

pub struct Hv {
    /// Every domain ever built, in id order (a domain that ended stays,
    /// torn down, for the final report): each behind its own lock, taken
    /// one at a time here (docs/design.md, "Lock order").
    pub domains: Vec<DomainRef>,
    /// Each CPU's current vCPU, by CPU number: (index into `domains`,
    /// vCPU index), the one whose registers are in that CPU's guest
    /// frame (its `running_on` names the CPU); `None`: the CPU runs none.
    pub here: [Option<(usize, usize)>; MAX_CPUS],
    /// Where each CPU's round robin last picked (the next pick starts
    /// after it).
    pub last: [(usize, usize); MAX_CPUS],
    /// vCPUs each CPU switched in (for the end-of-run report: with each
    /// CPU's wake IPIs taken, it tells a CPU that was never offered work
    /// from one that was woken and found none).
    pub switches: [u64; MAX_CPUS],
    /// Domains that could not be built (they count as failures).
    pub build_failures: usize,
    /// Modules waiting for memory: built in order as domains end.
    pub pending: VecDeque<Pending>,
    /// The next domain id to give out.
    pub next_id: u16,
    /// Free frames before any domain was built (checked at the end: every
    /// frame a domain had must be back).
    pub free_at_start: u64,
}

/// A module not built yet.
pub struct Pending {
    pub index: usize,
    pub bytes: &'static [u8],
    pub cmdline: String,
    /// The module after it when that is not a kernel: its initrd.
    pub initrd: Option<&'static [u8]>,
    /// Its line starts with its path (`BootInfo::lines_name_the_image`).
    pub names_image: bool,
}

impl Pending {
    fn cmdline(&self) -> crate::cmdline::ModuleCmdline<'_> {
        crate::cmdline::ModuleCmdline::parse(&self.cmdline, self.names_image, |_| {})
    }

    /// How it is named in messages: its file name, or "module N".
    fn label(&self) -> String {
        match self.cmdline().name() {
            Some(n) => String::from(n),
            None => alloc::format!("module {}", self.index),
        }
    }
}

/// What the scheduler calls in the layers above it: it decides when a
/// timer fires, a vCPU switches or the debug keys are looked at; the PV
/// layer (and `debugkeys`) know what that means for a guest. Registered
/// once at boot (`start.rs`), before any guest runs; a table of plain
/// function pointers rather than imports, so `sched` sits below `pv`.
pub struct Hooks {
    /// A domain's watchdog expired (`pv::sched_op::watchdog_fired`).
    pub watchdog_fired: fn(&mut Domain),
    /// Raise VIRQ `virq` on vCPU `vcpu` (`pv::event::send_virq`).
    pub send_virq: fn(&mut Domain, usize, u32),
    /// The way back to a guest under `HV` (`pv::entry::locked_way_out`).
    pub locked_way_out: fn(&mut TrapFrame),
    /// A vCPU's data selectors did not load: its failsafe callback
    /// (`pv::traps::failsafe_segments`).
    pub failsafe_segments: fn(&mut Domain, &mut TrapFrame, [u16; 4]),
    /// The boot CPU's look at the serial line, when its timer said so
    /// (`debugkeys::poll`).
    pub debug_poll: fn(&mut Hv, &mut TrapFrame),
}

static HOOKS: spin::Once<Hooks> = spin::Once::new();

/// Register the [`Hooks`] (once, at boot, before any guest runs).
pub fn set_hooks(h: Hooks) {
    HOOKS.call_once(|| h);
}

#[inline]
fn hooks() -> &'static Hooks {
    HOOKS
        .get()
        .expect("sched::set_hooks is called at boot, before the scheduler runs")
}

/// Build waiting modules, in order, while memory allows. A module that
/// does not fit even with no domain running never will: it fails.
pub fn build_pending(hv: &mut Hv) {
    while let Some(p) = hv.pending.front() {
        let mc = p.cmdline();
        let id = hv.next_id;
        let label = p.label();
        let memory = match mc.options.mem {
            Some(m) => builder::Memory::Bytes(m),
            // The initial domain, as Xen's dom0: what the others leave,
            // their memory and, for the largest bzImage among them, what
            // its build borrows to decompress it (builds run one by one).
            None if id == 0 => {
                let others = || {
                    hv.pending
                        .iter()
                        .skip(1)
                        .filter(|o| crate::domain::bzimage::is_kernel_image(o.bytes))
                };
                let mem: u64 = others()
                    .map(|o| {
                        o.cmdline()
                            .options
                            .mem
                            .unwrap_or(crate::cmdline::DEFAULT_DOMAIN_MEM)
                    })
                    .sum();
                let unpack = others()
                    .map(|o| crate::domain::bzimage::unpack_bytes(o.bytes))
                    .max()
                    .unwrap_or(0);
                builder::Memory::InitialDefault {
                    others: mem + unpack,
                }
            }
            None => builder::Memory::Bytes(crate::cmdline::DEFAULT_DOMAIN_MEM),
        };
        match builder::build(
            id,
            &label,
            p.bytes,
            p.initrd,
            &mc,
            memory,
            crate::mm::frametable::frames(),
        ) {
            Ok(d) => {
                let d = crate::sync::new_domain(d);
                register(id, d);
                hv.domains.push(d);
                hv.next_id += 1;
            }
            Err(builder::BuildError::NoMemory(why)) if hv.any_alive() => {
                crate::debug!("module {}: waiting for memory ({why})", p.index);
                return;
            }
            Err(e) => {
                crate::error!("d{id} ({label}): cannot build: {e}");
                hv.build_failures += 1;
                hv.next_id += 1;
            }
        }
        hv.pending.pop_front();
    }
}

pub static HV: Mutex<Option<Hv>> = Mutex::new(None);

/// Each domain's lock by domain id, readable without any lock: a slot is
/// written once, under HV, when its domain is built, with a reference of
/// its own, and never emptied, so a lock read here stays valid for the
/// run. What an interdomain event send uses to reach the other
/// end from under no lock but its own domain's, released first
/// (`pv::event::send_deferred`, `op_remote`; `for_each_domain_lock`).
static REGISTRY: spin::Once<Vec<spin::Once<&'static crate::sync::DomainLock>>> = spin::Once::new();

/// Room for `n` domain ids (boot: one per module).
pub fn init_registry(n: usize) {
    REGISTRY.call_once(|| (0..n).map(|_| spin::Once::new()).collect());
    DIRTY.call_once(|| (0..n).map(|_| AtomicU64::new(0)).collect());
}

/// Each domain's dirty-CPU mask, by domain id (Xen: `d->dirty_cpumask`):
/// bit n set while CPU n may hold the domain's translations. A CPU sets
/// its bit before it loads one of the domain's page tables into CR3
/// (`switch_in`), and clears it only after it loaded another domain's or
/// the hypervisor's (a CR3 write drops every guest translation: they are
/// never global). A flush reads the mask after its page-table change
/// (both sequentially consistent): a CPU whose bit it misses loads the
/// domain's tables after the change, so it cannot hold the old entry.
static DIRTY: spin::Once<Vec<AtomicU64>> = spin::Once::new();

/// Domain `id`'s dirty mask (every CPU for an id with no slot, which no
/// built domain has).
pub fn dirty_cpus(id: crate::domain::DomId) -> u64 {
    DIRTY
        .get()
        .and_then(|m| m.get(id as usize))
        .map_or(u64::MAX, |m| m.load(Ordering::SeqCst))
}

fn dirty_set(id: crate::domain::DomId, cpu: u64, on: bool) {
    if let Some(m) = DIRTY.get().and_then(|m| m.get(id as usize)) {
        if on {
            m.fetch_or(1 << cpu, Ordering::SeqCst);
        } else {
            m.fetch_and(!(1 << cpu), Ordering::SeqCst);
        }
    }
}

/// Flush `va` (or `smp::FLUSH_NONGLOBAL`) on this CPU and every CPU in
/// domain `id`'s dirty mask; back once each has. The caller holds that
/// domain's lock at most (other CPUs spinning on it answer: `sync`).
pub fn flush_domain_tlb(id: crate::domain::DomId, va: u64) {
    core::sync::atomic::fence(Ordering::SeqCst);
    let me = percpu::this().cpu;
    crate::arch::x86_64::smp::flush_tlb(dirty_cpus(id) | 1 << me, va);
}

fn register(id: crate::domain::DomId, d: DomainRef) {
    if let Some(slot) = REGISTRY.get().and_then(|r| r.get(id as usize)) {
        slot.call_once(|| d);
    }
}

/// The lock of domain `id`, if it was built.
pub fn domain_lock(id: crate::domain::DomId) -> Option<&'static crate::sync::DomainLock> {
    REGISTRY.get()?.get(id as usize)?.get().copied()
}

/// Every domain built so far, by its lock (none held by the caller but
/// perhaps `HV`; `f` takes one at a time).
pub fn for_each_domain_lock(mut f: impl FnMut(&'static crate::sync::DomainLock)) {
    for slot in REGISTRY.get().into_iter().flatten() {
        if let Some(&d) = slot.get() {
            f(d);
        }
    }
}

impl Hv {
    /// Domain `i`, locked. Under `HV`, one domain lock at a time: never
    /// call this while holding another domain's guard.
    pub fn dom(&self, i: usize) -> crate::sync::MutexGuard<'_, Domain> {
        self.domains[i].lock()
    }

    /// This CPU's current vCPU (see `here`).
    pub fn current(&self) -> Option<(usize, usize)> {
        self.here[this_cpu()]
    }

    /// This CPU's current domain, locked (`Domain::cur` is its vCPU).
    pub fn cur(&self) -> Option<crate::sync::MutexGuard<'_, Domain>> {
        self.current().map(|(di, _)| self.dom(di))
    }

    pub fn any_alive(&self) -> bool {
        self.domains.iter().any(|d| d.lock().is_alive())
    }
}

fn this_cpu() -> usize {
    percpu::this().cpu as usize
}

/// CPUs that found nothing to run (bit n: CPU n), set under `HV` before
/// a CPU looks for a vCPU and cleared when it found one: a vCPU made
/// runnable after that look is seen by whoever made it so, who wakes
/// the CPU (`kick`). Both sides sequentially consistent.
static IDLE: AtomicU64 = AtomicU64::new(0);

/// Vcpu `vi` of `d` (locked by the caller) may have something to do: an
/// event for it, woken from a block or poll, brought up or down, its
/// domain ended. Where it runs on another CPU, that CPU gets the wake
/// IPI (its way in and out looks at the vCPU again: an upcall, a dead
/// domain, a vCPU down); where it runs nowhere and can run, an idle CPU
/// is woken to take it. Xen: `vcpu_kick`, `vcpu_wake`.
pub fn kick(d: &Domain, vi: usize) {
    let me = percpu::this().cpu;
    match d.vcpus.get(vi).and_then(|v| v.running_on) {
        Some(c) if c as u64 != me && crate::arch::x86_64::smp::wake(c as usize) => {
            REMOTE_WAKES.fetch_add(1, Ordering::Relaxed);
        }
        Some(_) => {}
        None if runnable(d, vi) => {
            wake_idle_cpu();
        }
        None => {}
    }
}

/// Every vCPU of `d` that runs on another CPU is told to look (its
/// domain ended: the CPU stops running it).
pub fn kick_all(d: &Domain) {
    for vi in 0..d.vcpus.len() {
        kick(d, vi);
    }
}

/// Wake one CPU that is idle (or about to be), if any but this one: a
/// vCPU that runs nowhere became runnable. Returns whether one was.
/// An idle CPU not woken since it last looked comes first (`WOKEN`), so
/// that three vCPUs woken at once start on three CPUs, not one after
/// another on the first CPU woken while the others sleep on.
fn wake_idle_cpu() -> bool {
    core::sync::atomic::fence(Ordering::SeqCst);
    let idle = IDLE.load(Ordering::SeqCst) & !(1 << percpu::this().cpu);
    if idle == 0 {
        return false;
    }
    let fresh = idle & !WOKEN.load(Ordering::SeqCst);
    let c = if fresh != 0 { fresh } else { idle }.trailing_zeros();
    WOKEN.fetch_or(1 << c, Ordering::SeqCst);
    let woke = crate::arch::x86_64::smp::wake(c as usize);
    if woke {
        REMOTE_WAKES.fetch_add(1, Ordering::Relaxed);
    }
    woke
}

/// CPUs sent a wake IPI (`wake_idle_cpu`) that have not looked for work
/// since (bit n: CPU n; cleared as the CPU sets its `IDLE` bit). Only a
/// preference: whatever it says, a CPU in `IDLE` is woken when no other
/// is.
static WOKEN: AtomicU64 = AtomicU64::new(0);

/// Wake IPIs sent for a vCPU (`kick`, `wake_idle_cpu`), for the
/// end-of-run report.
static REMOTE_WAKES: AtomicU64 = AtomicU64::new(0);

/// The time slice ran out (timer interrupt) or a guest yielded: a bit of
/// this CPU's work-pending word, which every way out tests.
pub fn request_resched() {
    percpu::this().raise(percpu::WORK_RESCHED);
}

/// A guest set or stopped a timer: the APIC may need re-arming.
pub fn timers_changed() {
    percpu::this().raise(percpu::WORK_TIMERS);
}

// The register pieces live in arch (`context`); `idle` is called with no
// lock held (`pv::entry::locked_way_out`): another CPU may need any of
// them meanwhile, and an interrupt there takes none.
pub use crate::arch::x86_64::context::{
    idle, load_gs_selector, probe_mxcsr_mask, read_data_selectors,
};

/// The guest's GS base that is live while it runs (its kernel's or its
/// user's, by mode); while we run it waits in IA32_KERNEL_GS_BASE.
#[inline(always)]
pub fn load_guest_gs(v: &Vcpu) {
    let base = if v.kernel_mode() {
        v.gs_base_kernel
    } else {
        v.gs_base_user
    };
    context::write_guest_gs_base(base);
}

#[inline(always)]
pub fn save_guest_gs(v: &mut Vcpu) {
    let base = context::read_guest_gs_base();
    if v.kernel_mode() {
        v.gs_base_kernel = base;
    } else {
        v.gs_base_user = base;
    }
}

/// Load the address space for the vCPU's current mode: `cr3_table` is a
/// validated guest L4 (builder or mmuext), with the hypervisor's own
/// slots in place (`context::load_cr3`'s contract).
#[inline(always)]
pub fn load_cr3(v: &Vcpu) {
    context::load_cr3(v.cr3_table());
}

fn switch_out(v: &mut Vcpu, f: &TrapFrame) {
    v.regs = *f;
    v.data_sels = read_data_selectors();
    save_guest_gs(v);
    v.fs_base = context::read_fs_base();
    context::set_cr0_ts(false);
    context::fxsave(&mut v.fpu);
}

/// The base a 32-bit guest's selector gives (the hypervisor's flat ones
/// and null: 0; its own GDT entries: their base).
fn selector_base(v: &Vcpu, sel: u16) -> u64 {
    match v.gdt.get((sel >> 3) as usize) {
        Some(&d) if sel & 4 == 0 && sel >> 3 != 0 => {
            ((d >> 16) & 0xff_ffff) | ((d >> 56) & 0xff) << 24
        }
        _ => 0,
    }
}

/// Returns false when the vCPU's data selectors could not be reloaded.
fn switch_in(v: &Vcpu, f: &mut TrapFrame, compat: bool) -> bool {
    use crate::arch::x86_64::gdt;
    *f = v.regs;
    gdt::set_layout(if compat {
        gdt::Layout::Compat
    } else {
        gdt::Layout::Native
    });
    crate::arch::x86_64::percpu::set_pv32(compat);
    gdt::load_guest_entries(&v.gdt);
    let sels_ok = context::load_data_selectors(v.data_sels, compat);
    load_cr3(v);
    crate::arch::x86_64::debugreg::activate(&v.dr, v.dr7);
    if compat {
        // Segment bases come from the descriptors: loading fs set FS's;
        // gs's goes where swapgs will find it on the way out.
        // A base from a validated (or flat) descriptor: 32 bits.
        context::write_guest_gs_base(selector_base(v, v.data_sels[3]));
    } else {
        load_guest_gs(v);
        // fs_base was checked canonical when the guest set it.
        context::write_fs_base(v.fs_base);
    }
    // TS may still be the last vCPU's: one that died is not switched out
    // (a guest could set its virtual TS and crash), and fxrstor would #NM.
    context::set_cr0_ts(false);
    context::fxrstor(&v.fpu);
    context::set_cr0_ts(v.cr0_ts);
    sels_ok
}

/// Enter runstate `state` (RUNSTATE_*) for vCPU `vi` at `now`, charging
/// the time since the last change to the state it leaves, and update the
/// guest's copy if it registered one.
pub fn set_runstate(d: &mut Domain, vi: usize, state: i32, now: u64) {
    let rs = &mut d.vcpus[vi].runstate;
    if rs.0 == state {
        return;
    }
    if let Some(t) = rs.2.get_mut(rs.0 as usize) {
        *t += now.saturating_sub(rs.1);
    }
    (rs.0, rs.1) = (state, now);
    write_runstate(d, vi);
}

/// The vCPU's runstate into its registered area (guest address, through
/// that vCPU's own page tables; an address that does not work is skipped,
/// as Xen's copy is best effort).
pub fn write_runstate(d: &Domain, vi: usize) {
    let v = &d.vcpus[vi];
    let Some(va) = v.runstate_area else { return };
    // Through the vCPU's own address space: none until it is initialised
    // (its root is 0 then, not a table; the area is written when it first
    // runs, as every state change writes it).
    if !v.initialised || v.cr3_table() == 0 {
        return;
    }
    let (state, entry, time) = v.runstate;
    let space = v.space();
    let _ = if d.is_32bit() {
        space.write(
            va,
            &ringvisor_abi::vcpu::VcpuRunstateInfo32 {
                state,
                state_entry_time: entry,
                time,
            },
        )
    } else {
        space.write(
            va,
            &ringvisor_abi::vcpu::VcpuRunstateInfo {
                state,
                _pad0: 0,
                state_entry_time: entry,
                time,
            },
        )
    };
}

/// The state a vCPU that is not on the CPU is in.
fn idle_state(v: &Vcpu) -> i32 {
    use ringvisor_abi::vcpu::*;
    if !v.up {
        RUNSTATE_OFFLINE
    } else if v.blocked {
        RUNSTATE_BLOCKED
    } else {
        RUNSTATE_RUNNABLE
    }
}

/// The next vCPU after `from` (round robin, `from` itself last) that
/// can run (its domain alive, the vCPU up and not blocked) and runs on no
/// other CPU than `me`: a vCPU another CPU holds is left to it, so two
/// CPUs never pick the same one; one that runs nowhere is taken by any
/// CPU that looks (the CPUs share this one queue, so an idle CPU takes
/// work as soon as there is some: nothing is tied to a CPU).
fn next_runnable(hv: &Hv, from: (usize, usize), me: u32) -> Option<(usize, usize)> {
    // No list is built (this runs on every reschedule), and each domain
    // visited is locked once: the vCPUs after `from` in its domain, the
    // other domains in order (wrapping round), then its domain's vCPUs
    // up to `from` itself. If `from`'s domain is gone, from the start.
    let n = hv.domains.len();
    let pick = |di: usize, vcpus: core::ops::Range<usize>| {
        let d = hv.dom(di);
        let end = vcpus.end.min(d.vcpus.len());
        (vcpus.start..end)
            .find(|&vi| runnable(&d, vi) && d.vcpus[vi].running_on.is_none_or(|c| c == me))
            .map(|vi| (di, vi))
    };
    if from.0 >= n {
        return (0..n).find_map(|di| pick(di, 0..usize::MAX));
    }
    pick(from.0, from.1 + 1..usize::MAX)
        .or_else(|| (1..n).find_map(|k| pick((from.0 + k) % n, 0..usize::MAX)))
        .or_else(|| pick(from.0, 0..from.1 + 1))
}

/// Can any vCPU of any domain run (wherever it is)?
fn any_runnable(hv: &Hv) -> bool {
    hv.domains.iter().any(|d| {
        let d = d.lock();
        (0..d.vcpus.len()).any(|vi| runnable(&d, vi))
    })
}

fn runnable(d: &Domain, vi: usize) -> bool {
    d.is_alive() && d.vcpus.get(vi).is_some_and(|v| v.up && !v.blocked)
}

/// Raise `VIRQ_TIMER` for every guest timer that has expired, and wake
/// polls whose timeout has passed.
/// Returns the earliest guest timer left (`NEVER`: none; found in the
/// same pass: one lock of each domain).
fn fire_timers(hv: &mut Hv, now: u64, current: Option<(usize, usize)>) -> u64 {
    let mut at = NEVER;
    for (di, d) in hv.domains.iter().enumerate() {
        let mut d = d.lock();
        if !d.is_alive() {
            continue;
        }
        let [w0, w1] = d.watchdogs;
        if w0.is_some_and(|t| t <= now) || w1.is_some_and(|t| t <= now) {
            d.watchdogs = [None; 2];
            (hooks().watchdog_fired)(&mut d);
            request_resched();
            continue;
        }
        for vi in 0..d.vcpus.len() {
            // The event wakes the vCPU where it is (`kick`: its CPU, or
            // an idle one).
            if fire_vcpu_timers(&mut d, vi, now)
                && Some((di, vi)) != current
                && d.vcpus[vi].running_on.is_none()
                && IDLE.load(Ordering::SeqCst) & !(1 << this_cpu()) == 0
            {
                // A timer event for a vCPU that runs nowhere, and no
                // idle CPU to take it: let this CPU's next return switch
                // (as Xen boosts a woken vCPU), so ticks are not
                // coalesced behind a spinning one.
                request_resched();
            }
        }
        at = at.min(domain_earliest(&d));
    }
    at
}

/// No timer: a time later than any (`arm_timer` takes the end of the
/// time slice before it).
const NEVER: u64 = u64::MAX;

// Tour 07: guest timers raise VIRQ_TIMER
/// Returns whether a timer event was raised.
fn fire_vcpu_timers(d: &mut Domain, vi: usize, now: u64) -> bool {
    {
        let v = &mut d.vcpus[vi];
        if !v.up {
            return false;
        }
        let mut fire = false;
        if v.singleshot.is_some_and(|t| t <= now) {
            v.singleshot = None;
            fire = true;
        }
        if v.periodic_period != 0 && v.periodic_next <= now {
            // Missed periods are not made up: one tick, then the next one.
            v.periodic_next = now.saturating_add(v.periodic_period);
            fire = true;
        }
        let mut woke = false;
        if v.poll_deadline.is_some_and(|t| t <= now) {
            v.poll_deadline = None;
            v.poll.clear();
            v.blocked = false;
            woke = true;
        }
        if fire {
            (hooks().send_virq)(d, vi, ringvisor_abi::xen::VIRQ_TIMER);
        }
        if woke {
            kick(d, vi);
        }
        fire
    }
}

/// The earliest timer of a (live) domain: its vCPUs' and its watchdogs
/// (`NEVER`: none). Plain loops and no `Option`s: this runs on every
/// reschedule, where iterator adapters over arrays of options cost about
/// a hundred instructions a domain.
fn domain_earliest(d: &Domain) -> u64 {
    let at = |t: Option<u64>| t.unwrap_or(NEVER);
    let mut first = at(d.watchdogs[0]).min(at(d.watchdogs[1]));
    for v in d.vcpus.iter().filter(|v| v.up) {
        first = first.min(at(v.singleshot)).min(at(v.poll_deadline));
        if v.periodic_period != 0 {
            first = first.min(v.periodic_next);
        }
    }
    first
}

/// The earliest timer that can wake a blocked vCPU: a poll's timeout, or
/// a guest timer whose `VIRQ_TIMER` is bound (unbound, its tick raises
/// nothing, and a vCPU blocked on it would sleep for ever).
fn earliest_wakeup(hv: &Hv) -> Option<u64> {
    let mut at = None::<u64>;
    for d in hv.domains.iter() {
        let d = d.lock();
        if !d.is_alive() {
            continue;
        }
        let d = &*d;
        let first = d
            .vcpus
            .iter()
            .enumerate()
            .filter(|(_, v)| v.up && v.blocked)
            .flat_map(|(vi, v)| {
                let ticks = d
                    .ports
                    .virq_port(ringvisor_abi::xen::VIRQ_TIMER, vi as u32)
                    .is_some();
                [
                    v.poll_deadline,
                    v.singleshot.filter(|_| ticks),
                    (ticks && v.periodic_period != 0).then_some(v.periodic_next),
                ]
            })
            .flatten()
            // A watchdog ends its domain: that is a wake-up too.
            .chain(d.watchdogs.iter().flatten().copied())
            .min();
        at = at.into_iter().chain(first).min();
    }
    at
}

/// Program the APIC for the next thing that needs the CPU back: the end
/// of the time slice or the earliest guest timer.
/// `earliest`: the earliest guest timer of any live domain (`NEVER`:
/// none).
fn arm_timer(earliest: u64, now: u64) {
    let slice_end = now + TIMESLICE_NS;
    let at = earliest.min(slice_end);
    apic::oneshot(at.saturating_sub(now).max(1_000));
}

/// Publish system time to `vcpu_info[vi].time` (the guest computes
/// now = system_time + scaled(rdtsc - tsc_timestamp)). The domain is
/// alive (callers check), so its shared_info frame (or the vCPU's
/// registered vcpu_info frame) is its own: `publish_vcpu_time`'s contract.
pub fn update_time(d: &Domain, vi: usize) {
    let base = crate::domain::vcpu_info_addr(d, vi)
        + core::mem::offset_of!(ringvisor_abi::xen::VcpuInfo, time) as u64;
    crate::arch::x86_64::time::publish_vcpu_time(base);
}

/// Whether guests run yet (the boot CPU entered its first vCPU and
/// released the others, `start_others`): an application processor woken
/// before that goes back to sleep.
pub fn started() -> bool {
    crate::arch::x86_64::smp::aps_released()
}

/// Start running guests (never returns): the boot CPU, once every domain
/// it could build is built; every other CPU is woken to run its own
/// scheduling loop ([`run_cpu`]).
// Tour 01: the first entry into the first vCPU
pub fn start(hv: Hv) -> ! {
    let none = hv.domains.is_empty();
    *HV.lock() = Some(hv);
    if none {
        finish()
    }
    // The other CPUs count as idle until they look for work themselves
    // (they are asleep, and start looking once the boot CPU entered its
    // first vCPU: the first domain's first entry is the boot CPU's).
    IDLE.store(
        crate::arch::x86_64::smp::online_mask() & !1,
        Ordering::SeqCst,
    );
    run_cpu()
}

/// The boot CPU picked its first vCPU: the others start their loops.
fn start_others() {
    crate::arch::x86_64::smp::release_aps(run_cpu);
}

/// This CPU's scheduling loop, from nothing: find a vCPU no other CPU
/// runs (or sleep until there is one) and enter it. Every later switch
/// happens on the way back to a guest (`schedule`). Runs on the stack
/// below this CPU's guest frame slot, so the slot is free to fill
/// (`smp::on_frame_stack`).
pub fn run_cpu() -> ! {
    crate::arch::x86_64::smp::on_frame_stack(cpu_loop)
}

/// `f`: this CPU's guest frame slot, at the top of its stack, above this
/// function's own frame (`on_frame_stack`).
extern "C" fn cpu_loop(f: &mut TrapFrame) -> ! {
    // Nothing runs here yet: the first look goes past the quick test.
    request_resched();
    (hooks().locked_way_out)(f);
    if !started() {
        start_others();
    }
    enter_frame(f)
}

/// On the way back to a guest: fire guest timers, handle a dead or
/// blocked current vCPU and time slices. `f` is the frame at the top of
/// the stack (this CPU's current vCPU's registers, if it has one).
/// Returns `true` when nothing can run here: the APIC is armed for the
/// earliest wake-up, and the caller sleeps (`idle`) with every lock
/// released, then calls this again.
// Tour 08: where a crashed domain stops
#[must_use]
pub fn schedule(hv: &mut Hv, f: &mut TrapFrame, publish: impl FnOnce(&mut Hv)) -> bool {
    // The common case (a hypercall, a bounce): nothing to settle, one test
    // of this CPU's work-pending word. Timers only need looking at after a
    // timer interrupt (which also asks for a reschedule) or when a guest
    // changed one.
    if percpu::this().work.load(Ordering::Relaxed) == 0
        && hv
            .current()
            .is_some_and(|(di, vi)| runnable(&hv.dom(di), vi))
    {
        return false;
    }
    let idle = settle(hv, f);
    // This may have switched vCPU, torn a domain down or built one (the
    // domain list may have moved): tell the lock-free paths (`publish`,
    // the caller's: `pv::entry::publish_current`).
    publish(hv);
    idle
}

/// The rest of `schedule`, when there is something to settle.
#[inline(never)]
fn settle(hv: &mut Hv, f: &mut TrapFrame) -> bool {
    let me = this_cpu();
    let cur = hv.current();
    let pc = percpu::this();
    let resched = pc.take(percpu::WORK_RESCHED) != 0;
    let timers = pc.take(percpu::WORK_TIMERS) != 0;
    // (The lock only when nothing was asked for: a yield skips it.)
    if !resched && !timers && cur.is_some_and(|(di, vi)| runnable(&hv.dom(di), vi)) {
        return false;
    }
    // The boot CPU's timer interrupt says when to look at the serial line.
    if me == 0 && crate::arch::x86_64::apic::take_key_tick() {
        (hooks().debug_poll)(hv, f);
    }
    let now = crate::arch::x86_64::time::now_ns();
    let earliest = fire_timers(hv, now, cur);
    // A timer event for another vCPU asks for a switch now.
    let resched = resched | (pc.take(percpu::WORK_RESCHED) != 0);
    let (alive, can_run) = cur.map_or((false, false), |(di, vi)| {
        let d = hv.dom(di);
        (d.is_alive(), runnable(&d, vi))
    });
    if can_run && !resched {
        arm_timer(earliest, now);
        return false;
    }
    if let Some(c) = cur.filter(|_| !alive) {
        // Off the dead domain's page tables before they are freed (and
        // perhaps handed to a new domain and zeroed); its vCPU is on no
        // CPU now.
        detach(hv, c, f, None, now);
    }
    // Every domain that ended, on a CPU or not (a watchdog, a crash
    // while another ran), gives its memory back once no CPU holds one of
    // its vCPUs (those are told to let go: `kick_all`); teardown is
    // idempotent. Modules waiting for memory may fit then.
    // (Only when one has ended since the last look: `ENDED`.)
    let mut freed = false;
    if ENDED.swap(false, Ordering::Relaxed) {
        for d in hv.domains.iter() {
            let mut d = d.lock();
            if !d.is_alive() && !d.p2m.is_empty() {
                if d.vcpus.iter().any(|v| v.running_on.is_some()) {
                    kick_all(&d);
                    ENDED.store(true, Ordering::Relaxed);
                } else {
                    builder::teardown(&mut d, crate::mm::frametable::frames());
                    freed = true;
                }
            }
        }
    }
    if freed {
        build_pending(hv);
    }
    let mut cur = hv.current();
    // Say we may sleep before looking (see `IDLE`), and that any wake
    // IPI sent us so far is answered by this look (`WOKEN`).
    IDLE.fetch_or(1 << me, Ordering::SeqCst);
    WOKEN.fetch_and(!(1 << me), Ordering::SeqCst);
    loop {
        let from = cur.unwrap_or(hv.last[me]);
        match next_runnable(hv, from, me as u32) {
            Some(next) => {
                IDLE.fetch_and(!(1 << me), Ordering::SeqCst);
                if Some(next) != cur {
                    let left = cur.map(|c| detach(hv, c, f, Some(next), now));
                    let new_id = switch_to(hv, next, f, now);
                    if let Some((id, runnable)) = left {
                        if new_id != id {
                            // Our CR3 is another domain's now.
                            dirty_set(id, me as u64, false);
                        }
                        if runnable {
                            // Preempted: another CPU may be idle for it.
                            wake_idle_cpu();
                        }
                    }
                }
                arm_timer(earliest, now);
                return false;
            }
            None if !hv.any_alive() => {
                if let Some(c) = cur {
                    detach(hv, c, f, None, now);
                }
                // The run ends once no CPU holds a vCPU (they were told
                // to let go when their domain ended).
                if hv.here.iter().all(Option::is_none) {
                    finish_locked(hv)
                }
                return true;
            }
            None => {
                // Nothing for this CPU: whatever it ran cannot go on
                // (blocked, down); it goes back to its vCPU and the CPU
                // sleeps on the hypervisor's own tables.
                if let Some(c) = cur.take() {
                    detach(hv, c, f, None, now);
                }
                let t = earliest_wakeup(hv);
                // Every CPU idle, no vCPU runnable and no timer that
                // could make one: nothing ever will (a vCPU running
                // somewhere could still send an event; none does). A
                // clear end, not a hang.
                let online = crate::arch::x86_64::smp::online_mask();
                if t.is_none()
                    && IDLE.load(Ordering::SeqCst) | !online == u64::MAX
                    && !any_runnable(hv)
                {
                    for d in hv.domains.iter() {
                        crash(
                            &mut d.lock(),
                            String::from("blocked with no timer and no event that could wake it"),
                        );
                    }
                    continue;
                }
                // Not here: the caller sleeps with HV released (no lock
                // is held across `hlt`) and comes back through `schedule`,
                // which polls the keys and fires the timers.
                // The boot CPU also wakes each time slice: it polls the
                // serial input (`debugkeys`), which no other CPU reads.
                let t = if me == 0 {
                    Some(t.map_or(now + TIMESLICE_NS, |t| t.min(now + TIMESLICE_NS)))
                } else {
                    t
                };
                if let Some(t) = t {
                    apic::oneshot(t.saturating_sub(now).max(1_000));
                }
                return true;
            }
        }
    }
}

/// Take vCPU `c` off this CPU: its registers out of the frame (when its
/// domain is alive), its runstate, no CPU's. `next`: the vCPU switched to
/// next (its CR3 is loaded then); `None`: none, the hypervisor's own
/// tables are loaded now and this CPU leaves the domain's dirty mask.
/// Returns the domain's id and whether the vCPU could still run.
fn detach(
    hv: &mut Hv,
    c: (usize, usize),
    f: &TrapFrame,
    next: Option<(usize, usize)>,
    now: u64,
) -> (u16, bool) {
    let me = this_cpu();
    let (id, could_run) = {
        // Lock it by index: `cur` is set to this CPU's vCPU anyway.
        let mut d = hv.dom(c.0);
        if d.is_alive() {
            switch_out(&mut d.vcpus[c.1], f);
        }
        let st = idle_state(&d.vcpus[c.1]);
        set_runstate(&mut d, c.1, st, now);
        d.vcpus[c.1].running_on = None;
        d.running -= 1;
        (d.id, runnable(&d, c.1))
    };
    hv.here[me] = None;
    if next.is_none() {
        context::load_hypervisor_cr3();
        dirty_set(id, me as u64, false);
    }
    (id, could_run)
}

/// Make `next` this CPU's vCPU: its registers into the frame, its CR3,
/// GDT entries, segments, FPU; the domain's dirty mask gets this CPU
/// before its tables are loaded.
/// Returns the domain's id.
fn switch_to(hv: &mut Hv, next: (usize, usize), f: &mut TrapFrame, now: u64) -> u16 {
    let me = this_cpu();
    hv.here[me] = Some(next);
    hv.last[me] = next;
    hv.switches[me] += 1;
    // `DomainLock` sees the new vCPU from here on (`schedule` publishes
    // the rest for the lock-free paths when `settle` is done).
    let pc = percpu::this();
    pc.ids.store((next.1 as u64) << 16, Ordering::Relaxed);
    crate::sync::publish_domain(pc, Some(hv.domains[next.0]));
    let mut d = hv.dom(next.0);
    d.vcpus[next.1].running_on = Some(me as u32);
    d.vcpus[next.1].cpus_used |= 1 << me;
    d.running += 1;
    d.max_running = d.max_running.max(d.running);
    dirty_set(d.id, me as u64, true);
    update_time(&d, next.1);
    set_runstate(&mut d, next.1, ringvisor_abi::vcpu::RUNSTATE_RUNNING, now);
    let compat = d.is_32bit();
    if !switch_in(&d.vcpus[next.1], f, compat) {
        let sels = d.vcpus[next.1].data_sels;
        (hooks().failsafe_segments)(&mut d, f, sels);
    }
    d.id
}

/// Kill a domain with a message saying why (it stops at the next return).
// Tour 08: a domain's end, with the reason
pub fn crash(d: &mut Domain, why: String) {
    if d.is_alive() {
        crate::error!("d{}: crashed: {why}", d.id);
        d.state = State::Crashed(why);
        domain_ended();
        // Its vCPUs on other CPUs stop there at once.
        kick_all(d);
    }
}

/// A domain stopped running (crashed or shut down, under its own lock
/// only): the next `settle` looks for domains to tear down. A flag seen
/// late only delays a teardown to the next `settle`; it is never lost.
static ENDED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn domain_ended() {
    ENDED.store(true, Ordering::Relaxed);
}

fn finish() -> ! {
    let mut g = HV.lock();
    match g.as_mut() {
        Some(hv) => finish_locked(hv),
        None => exit(
            Verdict::Success,
            format_args!("no guests given; nothing to run"),
        ),
    }
}

/// "0,1,3" for the CPUs of `mask`.
fn cpu_list(mask: u64) -> String {
    let mut s = String::new();
    for n in (0..64).filter(|n| mask & 1 << n != 0) {
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(&alloc::format!("{n}"));
    }
    s
}

/// Every domain has ended: report each one and leave with the verdict.
fn finish_locked(hv: &mut Hv) -> ! {
    // Domains that ended while another ran (a watchdog, the idle loop's
    // end of blocked domains) are torn down here if not yet.
    for d in hv.domains.iter() {
        let mut d = d.lock();
        if !d.p2m.is_empty() {
            builder::teardown(&mut d, crate::mm::frametable::frames());
        }
    }
    let mut bad = hv.build_failures;
    crate::info!(
        "sched: {} wake IPIs sent to other CPUs for a vCPU",
        REMOTE_WAKES.load(Ordering::Relaxed)
    );
    let mut per_cpu = String::new();
    let mut cpus = 0;
    crate::arch::x86_64::smp::each_cpu(|n, _, wakes| {
        cpus += 1;
        per_cpu.push_str(&alloc::format!(" CPU {n}: {}/{wakes};", hv.switches[n]));
    });
    if cpus > 1 {
        crate::info!(
            "sched: vCPU switches/wake IPIs taken,{}",
            per_cpu.trim_end_matches(';')
        );
    }
    let free = crate::mm::paging::with_frames(|fa| fa.free_frames());
    crate::info!(
        "memory: {} frames free at the end, {} before the first domain{}",
        free,
        hv.free_at_start,
        if free == hv.free_at_start {
            ""
        } else {
            ": some were not given back"
        }
    );
    for d in &hv.domains {
        let d = d.lock();
        if d.vcpus.len() > 1 {
            let used = d.vcpus.iter().fold(0, |m, v| m | v.cpus_used);
            crate::info!(
                "d{} ({}): its {} vCPUs ran on CPUs {}, up to {} at once",
                d.id,
                d.name,
                d.vcpus.len(),
                cpu_list(used),
                d.max_running
            );
        }
        match &d.state {
            State::Shutdown(r) => {
                crate::info!(
                    "d{} ({}): shut down: {}",
                    d.id,
                    d.name,
                    ringvisor_abi::sched::shutdown_reason_name(*r)
                );
                if *r != ringvisor_abi::sched::SHUTDOWN_POWEROFF {
                    bad += 1;
                }
            }
            State::Crashed(why) => {
                crate::info!("d{} ({}): crashed: {why}", d.id, d.name);
                bad += 1;
            }
            State::Running => {}
        }
    }
    if bad == 0 {
        exit(
            Verdict::Success,
            format_args!("all {} domain(s) powered off", hv.domains.len()),
        )
    } else {
        exit(
            Verdict::Failure,
            format_args!(
                "{bad} of {} domain(s) did not power off",
                hv.domains.len() + hv.build_failures
            ),
        )
    }
}
