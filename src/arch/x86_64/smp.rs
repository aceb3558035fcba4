//! The other CPUs: found in the ACPI MADT, started with INIT-SIPI-SIPI
//! through a real-mode trampoline, each given its own stacks, GDT, TSS,
//! per-CPU block and APIC timer, then parked in a `hlt` loop with
//! interrupts on, woken by IPIs ([`wake`]), until guests run: then each
//! runs its own scheduling loop (`sched::run_cpu`). TLB shootdowns
//! ([`flush_tlb`]) reach the CPUs that may hold a domain's translations.
//!
//! The way up, one AP at a time (SDM Vol. 3A, 9.4.4.1; Xen's
//! `do_boot_cpu`): the boot CPU fills the trampoline's data block with
//! this AP's stack and number, sends INIT (asserted, deasserted), waits
//! 10 ms, sends a start-up IPI, waits 200 µs, and sends a second one if
//! the AP has not yet said it is alive; then waits up to a second for
//! the AP to finish its setup. The AP runs `trampoline.S` (real mode →
//! protected mode → long mode on the trampoline's own page tables) into
//! [`ap_entry`], which switches to the hypervisor's tables before it
//! says it is alive, so the next AP may reuse the trampoline.

use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86::controlregs::{cr0, cr3_write};
use x86::msr::{rdmsr, IA32_EFER};

use super::vm::{self, PAGE_SIZE};
use super::{apic, cpu, gdt, idt, percpu, syscall, time};
use crate::boot_info::BootInfo;
use crate::firmware::acpi;

/// What the trampoline reads, at `TD` in its first page (trampoline.S).
#[repr(C)]
struct TrampolineData {
    /// Null, 0x08 32-bit code, 0x10 data, 0x18 64-bit code.
    gdt: [u64; 4],
    /// `lgdt` operand: limit, then the 32-bit linear base (two halves).
    gdtr: [u16; 4],
    /// `ljmpl *` operands: 32-bit offset (two halves), selector.
    far32: [u16; 4],
    far64: [u16; 4],
    cr4: u64,
    cr3: u64,
    efer: u64,
    cr0: u64,
    stack: u64,
    entry: u64,
    arg: u64,
}

/// The data block's offset in the trampoline's first page: after the code.
const TD: usize = 0x800;
/// The window: the code and data page, then a PML4, PDPT and PD.
const WINDOW: u64 = 4 * PAGE_SIZE;

core::arch::global_asm!(
    include_str!("trampoline.S"),
    TD = const TD,
    TD_GDTR = const offset_of!(TrampolineData, gdtr),
    TD_FAR32 = const offset_of!(TrampolineData, far32),
    TD_FAR64 = const offset_of!(TrampolineData, far64),
    TD_CR4 = const offset_of!(TrampolineData, cr4),
    TD_CR3 = const offset_of!(TrampolineData, cr3),
    TD_EFER = const offset_of!(TrampolineData, efer),
    TD_CR0 = const offset_of!(TrampolineData, cr0),
    TD_STACK = const offset_of!(TrampolineData, stack),
    TD_ENTRY = const offset_of!(TrampolineData, entry),
    TD_ARG = const offset_of!(TrampolineData, arg),
    options(att_syntax)
);

extern "C" {
    static ap_trampoline: u8;
    static ap_prot32: u8;
    static ap_long64: u8;
    static ap_trampoline_end: u8;
}

/// CPUs ringvisor keeps track of (the boot CPU included): one bit each
/// in a shootdown's `u64` mask.
pub const MAX_CPUS: usize = 64;

/// Each AP's stacks: the main one (also TSS.RSP0) and four IST stacks.
const STACK_PAGES: u64 = 16;
const IST_PAGES: u64 = 4;
const _: () = assert!(1 + 4 * (IST_PAGES + 1) + STACK_PAGES <= (1 << 20) / PAGE_SIZE);

struct Cpu {
    apic_id: AtomicU32,
    online: AtomicBool,
    /// Wake IPIs taken (`wake_interrupt`).
    wakes: AtomicU64,
    /// Its APIC timer's boot check: ns until a 1 ms one-shot fired (0: none).
    timer_ns: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const CPU_INIT: Cpu = Cpu {
    apic_id: AtomicU32::new(u32::MAX),
    online: AtomicBool::new(false),
    wakes: AtomicU64::new(0),
    timer_ns: AtomicU64::new(0),
};
static CPUS: [Cpu; MAX_CPUS] = [CPU_INIT; MAX_CPUS];
static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// Physical base of the trampoline window (0: none).
static TRAMPOLINE: AtomicU64 = AtomicU64::new(0);

/// What the AP being started needs beyond the trampoline's registers.
#[derive(Clone, Copy)]
struct ApBoot {
    stack_top: u64,
    ist: [u64; 4],
    features: cpu::Features,
}
static BOOTING: spin::Mutex<Option<ApBoot>> = spin::Mutex::new(None);
/// Set by the AP being started once it is off the trampoline.
static ALIVE: AtomicBool = AtomicBool::new(false);

/// `mm::frame::find_low_window`: where `size` bytes fit in the usable
/// ranges, below `below`.
pub type FindLowWindow = fn(usable: &[(u64, u64)], size: u64, below: u64) -> Option<u64>;

/// Choose and remember the trampoline's window: 16 KiB of RAM below the
/// EBDA (the frame pool never hands out the first MiB). Returns its byte
/// range, which no domain may map (`mm::iomem`).
pub fn reserve_trampoline(bi: &BootInfo, find_low_window: FindLowWindow) -> Option<(u64, u64)> {
    let usable: alloc::vec::Vec<(u64, u64)> = bi
        .regions()
        .iter()
        .filter(|r| r.kind == crate::boot_info::RegionKind::Usable)
        .map(|r| (r.start, r.end))
        .collect();
    let t = find_low_window(&usable, WINDOW, 0x9f000)?;
    TRAMPOLINE.store(t, Ordering::Relaxed);
    Some((t, t + WINDOW))
}

/// Bytes of physical memory through the direct map (the first MiB).
fn low(pa: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: `pa..pa+len` lies in the trampoline window, RAM below 1 MiB
    // that the frame pool never hands out and no domain may map; only the
    // boot CPU writes it, before it sends the start-up IPI that reads it.
    unsafe { core::slice::from_raw_parts_mut(vm::phys_to_virt(pa) as *mut u8, len) }
}

fn put_u64s(pa: u64, words: &[(usize, u64)]) {
    let page = low(pa, PAGE_SIZE as usize);
    page.fill(0);
    for &(i, w) in words {
        page[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
}

/// Copy the code into the window and build its page tables: slot 0 maps
/// the first 2 MiB (the trampoline) one to one, slots 256-271 are the
/// hypervisor's (image, direct map: where the AP's stack and `ap_entry`
/// are).
fn install_trampoline(t: u64) {
    // Linker symbols around the trampoline's bytes in .rodata.
    let (start, end, p32, l64) = (
        core::ptr::addr_of!(ap_trampoline) as u64,
        core::ptr::addr_of!(ap_trampoline_end) as u64,
        core::ptr::addr_of!(ap_prot32) as u64,
        core::ptr::addr_of!(ap_long64) as u64,
    );
    let len = (end - start) as usize;
    assert!(len <= TD, "the AP trampoline outgrew its page");
    // SAFETY: [start, end) is the trampoline's code in the image's rodata.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    let page = low(t, PAGE_SIZE as usize);
    page.fill(0);
    page[..len].copy_from_slice(code);

    let (pml4, pdpt, pd) = (t + PAGE_SIZE, t + 2 * PAGE_SIZE, t + 3 * PAGE_SIZE);
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    let mut l4: alloc::vec::Vec<(usize, u64)> = alloc::vec![(0, pdpt | P_RW)];
    for (i, e) in vm::hypervisor_l4_slots().into_iter().enumerate() {
        l4.push((vm::HV_FIRST_SLOT + i, e));
    }
    put_u64s(pml4, &l4);
    put_u64s(pdpt, &[(0, pd | P_RW)]);
    put_u64s(pd, &[(0, P_RW | PS)]);

    // SAFETY: reading CR0 and EFER has no side effects.
    let (c0, efer) = unsafe { (cr0().bits() as u64, rdmsr(IA32_EFER)) };
    const EFER_LME: u64 = 1 << 8;
    const EFER_NXE: u64 = 1 << 11;
    let low32 = |a: u64| [a as u16, (a >> 16) as u16];
    let d = TrampolineData {
        gdt: [
            0,
            0x00cf_9a00_0000_ffff,
            0x00cf_9200_0000_ffff,
            0x00af_9a00_0000_ffff,
        ],
        gdtr: {
            let b = low32(t + TD as u64);
            [31, b[0], b[1], 0]
        },
        far32: {
            let o = low32(t + (p32 - start));
            [o[0], o[1], 0x08, 0]
        },
        far64: {
            let o = low32(t + (l64 - start));
            [o[0], o[1], 0x18, 0]
        },
        cr4: 0xa0, // PAE, PGE: the rest once in Rust (cpu::enable_protections)
        cr3: pml4,
        // NXE with LME: the hypervisor's mappings use the NX bit.
        efer: (efer & EFER_NXE) | EFER_LME,
        cr0: c0,
        stack: 0,
        entry: ap_entry as *const () as u64,
        arg: 0,
    };
    write_data(t, d);
}

fn write_data(t: u64, d: TrampolineData) {
    let at = vm::phys_to_virt(t + TD as u64) as *mut TrampolineData;
    // SAFETY: TD..TD+size is inside the window's first page (checked at
    // compile time below), 8-byte aligned; see `low`.
    unsafe { at.write_volatile(d) };
}

const _: () = assert!(TD + core::mem::size_of::<TrampolineData>() <= PAGE_SIZE as usize);

fn read_data(t: u64) -> TrampolineData {
    let at = vm::phys_to_virt(t + TD as u64) as *const TrampolineData;
    // SAFETY: as in `write_data`.
    unsafe { at.read_volatile() }
}

/// The CPUs the firmware lists, from the MADT, and where the RSDP came
/// from; or why not.
fn madt(bi: &BootInfo) -> Result<(acpi::Madt, &'static str), acpi::AcpiError> {
    let mem = vm::DirectMapMem;
    let (rsdp, from) = match bi.acpi_rsdp {
        Some(r) => (r, "the loader"),
        None => (
            acpi::scan_bios(&mem).ok_or(acpi::AcpiError::NoRsdp)?.1,
            "the BIOS area",
        ),
    };
    let tables = acpi::Tables::new(&mem, &rsdp)?;
    let root = tables.root();
    debug!(
        "acpi: RSDP revision {} from {from}, {} at {:#x}",
        rsdp.revision,
        core::str::from_utf8(&root.signature()).unwrap_or("?"),
        root.addr
    );
    Ok((acpi::parse_madt(&tables.find(*b"APIC")?)?, from))
}

fn cpus(n: usize) -> &'static str {
    if n == 1 {
        "CPU"
    } else {
        "CPUs"
    }
}

/// Find and start the other CPUs, at most `limit` in all (`cpus=`).
/// Returns how many CPUs are up, the boot CPU included.
pub fn start(bi: &BootInfo, f: &cpu::Features, limit: Option<u32>) -> usize {
    let bsp = apic::id();
    CPUS[0].apic_id.store(bsp, Ordering::Relaxed);
    CPUS[0].online.store(true, Ordering::Relaxed);
    let (m, from) = match madt(bi) {
        Ok(m) => m,
        Err(e) => {
            warn!("smp: {e}; running on the boot CPU only");
            return 1;
        }
    };
    let listed = m.enabled().count().max(1);
    let hotplug = m
        .cpus
        .iter()
        .filter(|c| !c.enabled && c.online_capable)
        .count();
    info!(
        "smp: the MADT (ACPI RSDP from {from}) lists {listed} enabled {}{}; the boot CPU is APIC ID {bsp}",
        cpus(listed),
        if hotplug > 0 {
            alloc::format!(" and {hotplug} hot-pluggable (not started)")
        } else {
            alloc::string::String::new()
        }
    );
    let want = limit.map_or(usize::MAX, |n| n as usize).min(MAX_CPUS);
    if listed > want && want == MAX_CPUS {
        warn!("smp: ringvisor uses at most {MAX_CPUS} CPUs; the others are not started");
    }
    let t = TRAMPOLINE.load(Ordering::Relaxed);
    if listed > 1 && want > 1 {
        if t == 0 {
            warn!("smp: no RAM below 1 MiB for the AP trampoline; running on the boot CPU only");
            return 1;
        }
        install_trampoline(t);
    }
    let mut next = 1;
    for c in m.enabled().filter(|c| c.apic_id != bsp) {
        if next >= want {
            break;
        }
        if c.apic_id > apic::MAX_XAPIC_ID {
            warn!(
                "smp: CPU with APIC ID {} needs x2APIC mode, which ringvisor does not use yet; not started",
                c.apic_id
            );
            continue;
        }
        if start_one(t, next, c.apic_id, f) {
            next += 1;
        }
    }
    let up = ONLINE.load(Ordering::Acquire);
    let mut ids = alloc::string::String::new();
    for (i, c) in CPUS.iter().take(up).enumerate() {
        use core::fmt::Write;
        let _ = write!(
            ids,
            "{}{}",
            if i > 0 { "," } else { "" },
            c.apic_id.load(Ordering::Relaxed)
        );
    }
    info!(
        "smp: {up} {} up (of {listed} listed{}), APIC IDs {ids}",
        cpus(up),
        match limit {
            Some(n) => alloc::format!(", cpus={n}"),
            None => alloc::string::String::new(),
        }
    );
    if up > 1 {
        check_wake(up);
        check_shootdown(up);
    }
    up
}

/// Start the AP with APIC ID `apic_id` as CPU number `n`.
fn start_one(t: u64, n: usize, apic_id: u32, f: &cpu::Features) -> bool {
    let pages = STACK_PAGES + 4 * IST_PAGES;
    let Some(base) = vm::alloc_contiguous(pages) else {
        warn!("smp: no memory for CPU {n}'s stacks; not started");
        return false;
    };
    // This CPU's MiB of stack space: an unmapped guard page, then each
    // IST stack followed by a guard, then the main stack. An overflow
    // faults on a guard (#PF, then #DF on its IST stack: a dump) instead
    // of running into the next stack.
    let mut va = vm::CPU_STACKS_BASE + ((n as u64) << 20) + PAGE_SIZE;
    let mut pa = base;
    let mut ist = [0; 4];
    for top in ist.iter_mut() {
        vm::map_stack(va, pa, IST_PAGES);
        *top = va + IST_PAGES * PAGE_SIZE;
        va += (IST_PAGES + 1) * PAGE_SIZE;
        pa += IST_PAGES * PAGE_SIZE;
    }
    vm::map_stack(va, pa, STACK_PAGES);
    let stack_top = va + STACK_PAGES * PAGE_SIZE;
    *BOOTING.lock() = Some(ApBoot {
        stack_top,
        ist,
        features: *f,
    });
    CPUS[n].apic_id.store(apic_id, Ordering::Relaxed);
    let mut d = read_data(t);
    d.stack = stack_top;
    d.arg = n as u64;
    write_data(t, d);
    ALIVE.store(false, Ordering::SeqCst);

    let t0 = time::now_ns();
    let page = (t >> 12) as u8;
    let sent = apic::send_init(apic_id)
        && {
            time::spin_ns(10_000_000);
            apic::send_startup(apic_id, page)
        }
        && {
            time::spin_ns(200_000);
            ALIVE.load(Ordering::Acquire) || {
                let ok = apic::send_startup(apic_id, page);
                time::spin_ns(200_000);
                ok
            }
        };
    while sent && !ALIVE.load(Ordering::Acquire) && time::now_ns() - t0 < 1_000_000_000 {
        core::hint::spin_loop();
    }
    if !ALIVE.load(Ordering::Acquire) {
        // Back to waiting for a SIPI, so a late start cannot use the
        // trampoline the next AP gets. Its stacks stay allocated.
        apic::send_init(apic_id);
        CPUS[n].apic_id.store(u32::MAX, Ordering::Relaxed);
        warn!(
            "smp: CPU with APIC ID {apic_id} did not start ({}); going on without it",
            if sent {
                "no answer within 1 s"
            } else {
                "the IPI was not delivered"
            }
        );
        return false;
    }
    CPUS[n].online.store(true, Ordering::Release);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    let us = (time::now_ns() - t0) / 1000;
    let timer = CPUS[n].timer_ns.load(Ordering::Relaxed);
    info!(
        "smp: CPU {n} (APIC ID {apic_id}) up in {}.{:03} ms; its APIC timer: {}",
        us / 1000,
        us % 1000,
        if timer == 0 {
            alloc::string::String::from("a 1 ms one-shot never fired")
        } else {
            alloc::format!(
                "a 1 ms one-shot fired after {}.{:03} ms",
                timer / 1_000_000,
                timer / 1000 % 1000
            )
        }
    );
    true
}

/// Where an AP arrives from the trampoline: 64-bit mode, interrupts off,
/// on its own stack, `n` its CPU number.
extern "C" fn ap_entry(n: u64) -> ! {
    // SAFETY: the hypervisor's tables map everything the trampoline's
    // did that is still used from here on (image, direct map).
    unsafe { cr3_write(vm::root()) };
    let b = BOOTING
        .lock()
        .take()
        .expect("an AP started with nothing to boot");
    cpu::enable_protections(&b.features);
    gdt::init_ap(n, b.stack_top, b.ist);
    idt::load();
    percpu::init_ap(n, b.stack_top);
    syscall::init();
    let cpu = &CPUS[n as usize];
    match apic::init_ap() {
        Some(id) if id == cpu.apic_id.load(Ordering::Relaxed) => {}
        _ => {
            // Say nothing is up: the boot CPU reports it and parks us.
            loop {
                // SAFETY: halting with interrupts off stops this CPU.
                unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
            }
        }
    }
    // 0 says "never fired"; a timer that fired says at least 1 ns.
    let ns = apic::selfcheck(1_000_000).map_or(0, |ns| ns.max(1));
    cpu.timer_ns.store(ns, Ordering::Relaxed);
    // The boot CPU counts it online once it sees this (not the AP, so
    // one that answers only after the boot CPU gave up is never counted).
    ALIVE.store(true, Ordering::Release);
    idle_loop()
}

/// What every AP runs once the boot CPU started guests (`release_aps`):
/// the scheduler's loop, given by the scheduler (arch does not call up).
static AP_LOOP: spin::Once<fn() -> !> = spin::Once::new();

/// Have every other CPU run `run` (the scheduler's loop, `sched::run_cpu`):
/// set once, then each is woken.
pub fn release_aps(run: fn() -> !) {
    AP_LOOP.call_once(|| run);
    each_cpu(|n, _, _| {
        if n != 0 {
            wake(n);
        }
    });
}

/// Whether `release_aps` was called (guests run).
pub fn aps_released() -> bool {
    AP_LOOP.is_completed()
}

/// An AP's life until guests run: sleep until an interrupt (count wake
/// IPIs); once the boot CPU started the scheduler (and woke us), run its
/// loop here too (`AP_LOOP`).
fn idle_loop() -> ! {
    loop {
        if let Some(run) = AP_LOOP.get() {
            run()
        }
        // SAFETY: the IDT is loaded; `sti; hlt` sleeps until an interrupt
        // (the `sti` shadow makes the pair atomic: no wake-up is lost
        // between them), which runs on this stack; then interrupts go
        // off again.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
}

/// Call `f` on this CPU's stack from just below its guest frame slot
/// (`percpu::guest_frame`), abandoning whatever the stack held, with that
/// slot: it is then free for a vCPU's registers, and `f` never returns.
pub fn on_frame_stack(f: extern "C" fn(&mut idt::TrapFrame) -> !) -> ! {
    let frame = percpu::guest_frame();
    let top = frame as u64 & !0xf;
    // SAFETY: `top` is 16-byte aligned inside this CPU's stack, below the
    // frame slot; nothing on the stack is used again (`f` never returns),
    // and interrupts are off while rsp moves. The slot, at the top of the
    // stack above `f`'s own frames, is memory nothing else uses until a
    // vCPU runs from it (any earlier user was on the stack abandoned
    // here), so `f` may have it as its one `&mut`.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "call {f}",
            "ud2",
            top = in(reg) top,
            f = in(reg) f,
            in("rdi") frame,
            options(noreturn)
        )
    }
}

/// The CPUs that are up (bit n: CPU n).
pub fn online_mask() -> u64 {
    let mut m = 0;
    for (n, c) in CPUS.iter().enumerate() {
        if c.online.load(Ordering::Acquire) {
            m |= 1 << n;
        }
    }
    m
}

/// The wake IPI arrived (idt.rs): count it.
pub fn wake_interrupt() {
    apic::eoi();
    let n = percpu::this().cpu as usize;
    if let Some(c) = CPUS.get(n) {
        c.wakes.fetch_add(1, Ordering::Release);
    }
}

/// Send interrupt `vector` to CPU number `n` if it is up.
pub fn send_ipi(n: usize, vector: u8) -> bool {
    match CPUS.get(n) {
        Some(c) if c.online.load(Ordering::Acquire) => {
            apic::send_ipi(c.apic_id.load(Ordering::Relaxed), vector)
        }
        _ => false,
    }
}

/// Wake CPU `n` from `hlt` (it then looks for work: none yet).
pub fn wake(n: usize) -> bool {
    send_ipi(n, apic::WAKE_VECTOR as u8)
}

/// `f(number, APIC ID, wake IPIs taken)` for every CPU that is up.
pub fn each_cpu(mut f: impl FnMut(usize, u32, u64)) {
    for (n, c) in CPUS.iter().enumerate() {
        if c.online.load(Ordering::Acquire) {
            f(
                n,
                c.apic_id.load(Ordering::Relaxed),
                c.wakes.load(Ordering::Relaxed),
            );
        }
    }
}

/// Wake IPIs CPU `n` has taken.
pub fn wakes(n: usize) -> u64 {
    CPUS.get(n).map_or(0, |c| c.wakes.load(Ordering::Acquire))
}

/// Boot check of the IPI path: wake every AP once and wait for each.
fn check_wake(up: usize) {
    let t0 = time::now_ns();
    let before: alloc::vec::Vec<u64> = (0..up).map(wakes).collect();
    let mut answered = 0;
    for (n, &b) in before.iter().enumerate().skip(1) {
        if wake(n) {
            // One budget for all of them: 2 s, which only a CPU that
            // never answers spends (hardware answers in microseconds; a
            // loaded host running 66 emulated CPUs on one thread took
            // over 100 ms for the last of them).
            while wakes(n) == b && time::now_ns() - t0 < 2_000_000_000 {
                core::hint::spin_loop();
            }
            if wakes(n) != b {
                answered += 1;
            }
        }
    }
    let us = (time::now_ns() - t0) / 1000;
    if answered == up - 1 {
        info!(
            "smp: a wake IPI to each of the {answered} other {} answered in {us} µs in all",
            cpus(answered)
        );
    } else {
        warn!(
            "smp: only {answered} of {} CPUs answered a wake IPI",
            up - 1
        );
    }
}

/// A TLB shootdown in flight: the page (or [`FLUSH_ALL`]) and the CPUs
/// (bit n: CPU n) that have not flushed yet. One at a time
/// (`SHOOTDOWN_LOCK`).
static FLUSH_VA: AtomicU64 = AtomicU64::new(0);
static FLUSH_PENDING: AtomicU64 = AtomicU64::new(0);
static SHOOTDOWN_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// [`flush_tlb`]'s "every translation, global ones too".
pub const FLUSH_ALL: u64 = u64::MAX;
/// [`flush_tlb`]'s "every non-global translation" (a CR3 reload: every
/// guest translation, since guest entries are never global). Like
/// `FLUSH_ALL`, a page address no `invlpg` needs (a guest asking for
/// this one gets more flushed, never less).
pub const FLUSH_NONGLOBAL: u64 = u64::MAX - 1;

/// Flush this CPU's TLB as asked (`FLUSH_VA`), then say so.
pub fn answer_flush() {
    flush_here();
}

fn flush_here() {
    let me = percpu::this().cpu;
    if FLUSH_PENDING.load(Ordering::Acquire) & (1 << me) == 0 {
        return;
    }
    flush_local(FLUSH_VA.load(Ordering::Relaxed));
    FLUSH_PENDING.fetch_and(!(1 << me), Ordering::AcqRel);
}

/// This CPU's part of a shootdown of `va` (or `FLUSH_ALL`,
/// `FLUSH_NONGLOBAL`).
fn flush_local(va: u64) {
    match va {
        FLUSH_ALL => cpu::flush_tlb_all(),
        FLUSH_NONGLOBAL => cpu::flush_tlb_nonglobal(),
        va => cpu::flush_tlb_page(va),
    }
}

/// The flush IPI arrived (idt.rs).
pub fn flush_interrupt() {
    flush_here();
    apic::eoi();
}

/// Shoot down `va`'s translation (or every one: [`FLUSH_ALL`]) on the
/// CPUs of `mask` (bit n: CPU n; this one included if its bit is set),
/// and return once every one of them has flushed. Callable with
/// interrupts off, as the hypervisor runs: while it waits for the
/// shootdown lock or the other CPUs, it answers a shootdown aimed at it
/// by polling, so two CPUs shooting at each other do not deadlock
/// (the IPI that would have told it stays pending and finds nothing).
/// The caller must hold no lock another CPU may spin on with interrupts
/// off without polling too (it would never answer).
pub fn flush_tlb(mask: u64, va: u64) {
    let me = percpu::this().cpu;
    if mask & !(1 << me) == 0 {
        // Only this CPU (one CPU, or a domain that ran nowhere else):
        // no IPI, no shared state.
        if mask != 0 {
            flush_local(va);
        }
        return;
    }
    let guard = loop {
        if let Some(g) = SHOOTDOWN_LOCK.try_lock() {
            break g;
        }
        flush_here();
        core::hint::spin_loop();
    };
    let mut online = 0u64;
    for (n, c) in CPUS.iter().enumerate() {
        if c.online.load(Ordering::Acquire) {
            online |= 1 << n;
        }
    }
    let others = mask & online & !(1 << me);
    FLUSH_VA.store(va, Ordering::Relaxed);
    FLUSH_PENDING.store(others | (mask & (1 << me)), Ordering::Release);
    flush_here();
    for n in 0..MAX_CPUS {
        if others & (1 << n) != 0 {
            send_ipi(n, apic::FLUSH_VECTOR as u8);
        }
    }
    while FLUSH_PENDING.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    drop(guard);
}

/// Boot check (and cost) of a shootdown: one page on every other CPU.
fn check_shootdown(up: usize) {
    // CPUs are numbered densely from 0 (a failed start reuses its number).
    let others = (u64::MAX >> (64 - up)) & !1;
    // A page of the hypervisor's image: mapped on every CPU.
    let va = check_shootdown as *const () as u64 & !(PAGE_SIZE - 1);
    let t0 = time::tsc();
    flush_tlb(others, va);
    let ns = time::tsc_to_ns(time::tsc() - t0);
    info!(
        "smp: a TLB shootdown of one page to the {} other {} took {}.{:03} µs",
        up - 1,
        cpus(up - 1),
        ns / 1000,
        ns % 1000
    );
}
