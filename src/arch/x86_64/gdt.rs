//! The GDT and TSS, laid out as Xen lays them out, so PV guests see the
//! selector values the ABI promises.
//!
//! A PV guest owns GDT entries 0..0x1c00 (14 pages, filled later through
//! `set_gdt`); the hypervisor's reserved entries start at byte 0xe000:
//!
//! | selector | 64-bit guests (native table) | 32-bit guests (compat table) |
//! |---|---|---|
//! | 0xe008 | hypervisor code, 64-bit, ring 0 | same |
//! | 0xe010 | hypervisor data, ring 0 | same |
//! | 0xe018 | (unused) | `FLAT_RING1_CS` 0xe019: code 32-bit, DPL 1 |
//! | 0xe020 | `FLAT_RING3_CS32` 0xe023: code 32-bit, DPL 3 | `FLAT_RING1_DS` 0xe021: data, DPL 1 |
//! | 0xe028 | `FLAT_RING3_DS32` 0xe02b: data, DPL 3 | `FLAT_RING3_CS` 0xe02b: code 32-bit, DPL 3 |
//! | 0xe030 | `FLAT_RING3_CS64` 0xe033: code 64-bit, DPL 3 | `FLAT_RING3_DS` 0xe033: data, DPL 3 |
//! | 0xe038 | hypervisor code, 32-bit, ring 0 | same |
//! | 0xe040 | TSS (16 bytes) | same |
//!
//! `syscall`/`sysret` depend on this order: STAR's sysret base 0xe023 gives
//! CS32 = 0xe023, SS = 0xe02b, CS64 = 0xe033.

use core::cell::UnsafeCell;
use core::mem::size_of;

use spin::Mutex;
use x86::bits64::task::TaskStateSegment;
use x86::dtables::{lgdt, DescriptorTablePointer};
use x86::segmentation::SegmentSelector;
use x86::Ring;

pub const HYPERVISOR_CS: u16 = 0xe008;
pub const HYPERVISOR_DS: u16 = 0xe010;
pub const TSS_SELECTOR: u16 = 0xe040;

/// First byte / entry of the hypervisor's reserved part of the GDT.
pub const FIRST_RESERVED_GDT_BYTE: usize = 0xe000;
pub const FIRST_RESERVED_GDT_ENTRY: usize = FIRST_RESERVED_GDT_BYTE / 8;
const GDT_ENTRIES: usize = FIRST_RESERVED_GDT_ENTRY + 512;

/// IST slots (1-based, as the TSS numbers them).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;
/// #DB: a guest's breakpoint may hit at the first instruction of an entry,
/// before `syscall_entry` has left the guest's stack (XSA-260).
pub const IST_DEBUG: u8 = 4;

/// Which guest flavour the reserved entries are laid out for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Native,
    Compat,
}

const CODE64_RING0: u64 = 0x00af_9a00_0000_ffff;
const DATA_RING0: u64 = 0x00cf_9200_0000_ffff;
const CODE32_RING0: u64 = 0x00cf_9a00_0000_ffff;
const CODE32_RING1: u64 = 0x00cf_ba00_0000_ffff;
const DATA_RING1: u64 = 0x00cf_b200_0000_ffff;
const CODE32_RING3: u64 = 0x00cf_fa00_0000_ffff;
const DATA_RING3: u64 = 0x00cf_f200_0000_ffff;
const CODE64_RING3: u64 = 0x00af_fa00_0000_ffff;

/// The table, and how many of its guest entries (from 0) may be non-zero:
/// a switch clears only up to there, not all 7168 (56 KiB).
#[repr(C, align(4096))]
struct Gdt([u64; GDT_ENTRIES], usize);

static GDT: Mutex<Gdt> = Mutex::new(Gdt([0; GDT_ENTRIES], 0));
static TSS: Mutex<TaskStateSegment> = Mutex::new(TaskStateSegment::new());

/// An application processor's GDT (its guest-entry high mark beside it)
/// and TSS, by CPU number: each CPU writes only its own when it switches
/// vCPU (the boot CPU's are `GDT` and `TSS`).
struct ApTables {
    gdt: &'static mut [u64],
    high: usize,
    tss: &'static mut TaskStateSegment,
}
#[allow(clippy::declare_interior_mutable_const)]
const NO_TABLES: Mutex<Option<ApTables>> = Mutex::new(None);
static AP_TABLES: [Mutex<Option<ApTables>>; super::smp::MAX_CPUS] =
    [NO_TABLES; super::smp::MAX_CPUS];

/// `f(gdt, high mark)` on this CPU's GDT.
fn with_my_gdt<R>(f: impl FnOnce(&mut [u64], &mut usize) -> R) -> R {
    let cpu = super::percpu::this().cpu as usize;
    if cpu == 0 {
        let mut g = GDT.lock();
        let g = &mut *g;
        f(&mut g.0, &mut g.1)
    } else {
        let mut t = AP_TABLES[cpu].lock();
        let t = t
            .as_mut()
            .expect("an AP's tables are set up before it runs a vCPU");
        f(t.gdt, &mut t.high)
    }
}

const IST_STACK_SIZE: usize = 16 * 1024;

/// A stack the CPU switches to by itself (IST): only the CPU writes it.
#[repr(C, align(16))]
struct IstStack(UnsafeCell<[u8; IST_STACK_SIZE]>);
// SAFETY: the CPU is the only writer, on the one CPU that owns the TSS.
unsafe impl Sync for IstStack {}

impl IstStack {
    const fn new() -> Self {
        IstStack(UnsafeCell::new([0; IST_STACK_SIZE]))
    }
    fn top(&self) -> u64 {
        self.0.get() as u64 + IST_STACK_SIZE as u64
    }
}

static DF_STACK: IstStack = IstStack::new();
static NMI_STACK: IstStack = IstStack::new();
static MC_STACK: IstStack = IstStack::new();
static DB_STACK: IstStack = IstStack::new();

fn set_reserved(gdt: &mut [u64], layout: Layout) {
    let r = &mut gdt[FIRST_RESERVED_GDT_ENTRY..];
    r[1] = CODE64_RING0;
    r[2] = DATA_RING0;
    match layout {
        Layout::Native => {
            r[3] = 0;
            r[4] = CODE32_RING3;
            r[5] = DATA_RING3;
            r[6] = CODE64_RING3;
        }
        Layout::Compat => {
            r[3] = CODE32_RING1;
            r[4] = DATA_RING1;
            r[5] = CODE32_RING3;
            r[6] = DATA_RING3;
        }
    }
    r[7] = CODE32_RING0;
}

/// A 16-byte available 64-bit TSS descriptor (SDM Vol. 3A, 8.2.3).
fn tss_descriptor(base: u64, limit: u64) -> [u64; 2] {
    let lo = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | 0x89 << 40 // present, DPL 0, type 9: available 64-bit TSS
        | ((limit >> 16) & 0xf) << 48
        | ((base >> 24) & 0xff) << 56;
    [lo, base >> 32]
}

/// Build and load the GDT and TSS, reload every segment register.
/// `rsp0` is the stack the CPU switches to on entry from rings 1-3.
pub fn init(rsp0: u64) {
    let mut tss = TSS.lock();
    tss.set_rsp(Ring::Ring0, rsp0);
    tss.set_ist(IST_DOUBLE_FAULT as usize - 1, DF_STACK.top());
    tss.set_ist(IST_NMI as usize - 1, NMI_STACK.top());
    tss.set_ist(IST_MACHINE_CHECK as usize - 1, MC_STACK.top());
    tss.set_ist(IST_DEBUG as usize - 1, DB_STACK.top());
    // No I/O bitmap: the offset points past the TSS limit.
    tss.iomap_base = size_of::<TaskStateSegment>() as u16;
    let tss_base = &*tss as *const TaskStateSegment as u64;
    drop(tss);

    let mut g = GDT.lock();
    set_reserved(&mut g.0, Layout::Native);
    load(&mut g.0, tss_base);
}

/// Put the TSS descriptor for `tss_base` into `gdt`, load the table and
/// TR, and reload every segment register.
fn load(gdt: &mut [u64], tss_base: u64) {
    let [lo, hi] = tss_descriptor(tss_base, size_of::<TaskStateSegment>() as u64 - 1);
    let t = TSS_SELECTOR as usize / 8;
    gdt[t] = lo;
    gdt[t + 1] = hi;
    let ptr = DescriptorTablePointer::new_from_slice(gdt);
    // SAFETY: the GDT and TSS live for ever (statics, or leaked for an
    // application processor) and never move; the reserved entries are
    // valid; after lgdt we reload CS with a far return and the data
    // segments, then load TR. Nothing runs in between that depends on the
    // old selectors.
    unsafe {
        lgdt(&ptr);
        core::arch::asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "mov fs, {zero:x}",
            "mov gs, {zero:x}",
            cs = in(reg) HYPERVISOR_CS as u64,
            ds = in(reg) HYPERVISOR_DS as u64,
            zero = in(reg) 0u64,
            tmp = out(reg) _,
        );
        x86::task::load_tr(SegmentSelector::from_raw(TSS_SELECTOR));
        // A null LDT: after reset LDTR may still describe base 0, and a
        // guest loading an LDT selector would make the CPU read there.
        x86::dtables::load_ldtr(SegmentSelector::from_raw(0));
    }
}

/// Build and load an application processor's own GDT and TSS, laid out
/// as the boot CPU's (a TSS is busy once loaded, and each CPU needs its
/// own IST stacks): `rsp0` as in [`init`], `ist` the tops of its #DF,
/// NMI, #MC and #DB stacks. They are never freed (CPUs do not go away).
pub fn init_ap(cpu: u64, rsp0: u64, ist: [u64; 4]) {
    let tss: &'static mut TaskStateSegment =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(TaskStateSegment::new()));
    tss.set_rsp(Ring::Ring0, rsp0);
    for (slot, top) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK, IST_DEBUG]
        .into_iter()
        .zip(ist)
    {
        tss.set_ist(slot as usize - 1, top);
    }
    tss.iomap_base = size_of::<TaskStateSegment>() as u16;
    // vec! of zeros is allocated zeroed in place: no 60 KiB on the stack.
    let gdt: &'static mut [u64] = alloc::vec![0u64; GDT_ENTRIES].leak();
    set_reserved(gdt, Layout::Native);
    load(gdt, tss as *const TaskStateSegment as u64);
    *AP_TABLES[cpu as usize].lock() = Some(ApTables { gdt, high: 0, tss });
}

/// Lay the reserved entries out for a 64-bit or a 32-bit guest (this
/// CPU's GDT).
pub fn set_layout(layout: Layout) {
    with_my_gdt(|g, _| set_reserved(g, layout));
}

/// Put a guest's own descriptors (validated by `pv::descriptor`) in
/// entries 0..n of this CPU's GDT, clearing what a previous guest left
/// above.
pub fn load_guest_entries(entries: &[u64]) {
    with_my_gdt(|g, high| {
        let n = entries.len().min(FIRST_RESERVED_GDT_ENTRY);
        g[..n].copy_from_slice(&entries[..n]);
        g[0] = 0;
        if *high > n {
            g[n..*high].fill(0);
        }
        *high = n;
    })
}

/// Set one guest entry (update_descriptor on the running vCPU's GDT).
pub fn set_guest_entry(index: usize, desc: u64) {
    if index != 0 && index < FIRST_RESERVED_GDT_ENTRY {
        with_my_gdt(|g, high| {
            g[index] = desc;
            *high = (*high).max(index + 1);
        })
    }
}

/// Set the stack the CPU loads on entry from rings 1-3 (per running vCPU).
pub fn set_rsp0(rsp0: u64) {
    let cpu = super::percpu::this().cpu as usize;
    if cpu == 0 {
        TSS.lock().set_rsp(Ring::Ring0, rsp0);
    } else if let Some(t) = AP_TABLES[cpu].lock().as_mut() {
        t.tss.set_rsp(Ring::Ring0, rsp0);
    }
}
