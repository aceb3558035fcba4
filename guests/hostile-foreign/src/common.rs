//! What the hostile guests and the victim share (each of those crates
//! includes this file with `#[path = "../../hostile-foreign/src/common.rs"]`):
//! the P2M and the M2P, the guest's own page tables (read through their
//! read-only bootstrap mappings), free frames above the bootstrap region, a
//! scratch window to map frames into, one-line wrappers for the memory
//! hypercalls, tallies for attacks repeated over many frames, and the link
//! to the victim (an interdomain event channel).
//!
//! Layout assumed (the pvguest runtime's, as Xen's builder lays it out):
//! pseudo-physical page `pfn` of the bootstrap region is mapped at
//! `VIRT_BASE + pfn * 4096`, page tables included (read-only); every page
//! above the region is unmapped, and its frame is ordinary memory the
//! builder zeroed.
#![allow(dead_code)]

use core::fmt::{self, Write};

use pvguest::abi::{self, MmuExtOp, MmuUpdate};
use pvguest::cell::GuestCell;
use pvguest::hypercall as hc;
use pvguest::report::{check, fail, info, pass, Rc};
use pvguest::start_info::{self, start_info};
use pvguest::traps::catch;

pub use pvguest::VIRT_BASE;

pub const P: u64 = 1 << 0;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const PWT: u64 = 1 << 3;
pub const PCD: u64 = 1 << 4;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
pub const PS: u64 = 1 << 7;
pub const G: u64 = 1 << 8;
pub const NX: u64 = 1 << 63;
pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// What an upper-level entry carries.
pub const TABLE: u64 = P | RW | US | A;
/// A present, writable, user leaf.
pub const LEAF_RW: u64 = P | RW | US | A | D;
/// A present, read-only, user leaf.
pub const LEAF_RO: u64 = P | US | A;

/// The read-only M2P table (`MACH2PHYS_VIRT_START`).
pub const M2P_BASE: u64 = abi::MACH2PHYS_VIRT_START;
/// The hypervisor's range in every address space.
pub const HV_START: u64 = abi::HYPERVISOR_VIRT_START;
pub const HV_END: u64 = abi::HYPERVISOR_VIRT_END;
/// The hypervisor's direct map of RAM (Xen's and ringvisor's).
pub const HV_DIRECTMAP: u64 = 0xffff_8300_0000_0000;
/// ringvisor's text (loaded at 1 MiB, linked at 0xffff82d080000000 + 1 MiB).
pub const HV_TEXT: u64 = 0xffff_82d0_8010_0000;
/// The first frame of ringvisor's image (its load address, 1 MiB).
pub const HV_MFN: u64 = 0x100;
/// Canonical, in the guest's half, never mapped by the runtime.
pub const UNMAPPED: u64 = 0x0000_0000_dead_b000;
/// Not canonical.
pub const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
/// The first non-canonical address above the lower half.
pub const NON_CANONICAL_LOW: u64 = 0x0000_8000_0000_0000;

pub const EPERM: i64 = abi::neg(abi::EPERM);
pub const ENOENT: i64 = abi::neg(abi::ENOENT);
pub const ESRCH: i64 = abi::neg(abi::ESRCH);
pub const EFAULT: i64 = abi::neg(abi::EFAULT);
pub const EBUSY: i64 = abi::neg(abi::EBUSY);
pub const EEXIST: i64 = abi::neg(abi::EEXIST);
pub const EINVAL: i64 = abi::neg(abi::EINVAL);
pub const ENOSYS: i64 = abi::neg(abi::ENOSYS);

pub fn nr_pages() -> u64 {
    start_info().nr_pages
}

/// P2M: the machine frame of pseudo-physical page `pfn`.
pub fn p2m(pfn: u64) -> u64 {
    assert!(pfn < nr_pages(), "pfn out of range");
    // SAFETY: the builder maps the P2M list, nr_pages entries long.
    unsafe {
        (start_info().mfn_list as *const u64)
            .add(pfn as usize)
            .read_volatile()
    }
}

/// `XENMEM_maximum_ram_page`.
pub fn max_mfn() -> u64 {
    // SAFETY: the command takes no argument.
    let r = unsafe { hc::memory_op(abi::XENMEM_MAXIMUM_RAM_PAGE, 0) };
    r.max(0) as u64
}

static M2P_FRAMES: GuestCell<u64> = GuestCell::new(0);

/// How many machine frames the readable M2P covers (found by reading it:
/// its mapping ends where the hypervisor's RAM ends, which may be below
/// `maximum_ram_page`), at most `max_mfn()`.
pub fn m2p_frames() -> u64 {
    if M2P_FRAMES.get() == 0 {
        let readable = |page: u64| {
            catch(|| {
                peek(M2P_BASE + page * 4096);
            })
            .is_ok()
        };
        // Pages of the table: [0, lo) readable, hi not.
        let (mut lo, mut hi) = (1u64, max_mfn().div_ceil(512).max(1));
        if readable(hi - 1) {
            lo = hi;
        } else {
            while lo < hi {
                let mid = (lo + hi) / 2;
                if readable(mid) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        }
        M2P_FRAMES.set((lo * 512).min(max_mfn()));
    }
    M2P_FRAMES.get()
}

/// M2P: the pseudo-physical page of machine frame `mfn` (any domain's:
/// the table is global and readable). `mfn < m2p_frames()`.
pub fn m2p(mfn: u64) -> u64 {
    // SAFETY: the M2P is mapped read-only for every frame below
    // m2p_frames(); callers stay below it.
    unsafe { ((M2P_BASE + mfn * 8) as *const u64).read_volatile() }
}

/// Whether an M2P entry names a page of some domain (Xen and ringvisor
/// write ~0 for frames of no domain; Xen ~0 - 1 for shared ones).
pub fn m2p_valid(pfn: u64) -> bool {
    pfn < 1 << 40
}

/// Whether this domain owns `mfn` (its own P2M says so).
pub fn owns(mfn: u64) -> bool {
    if mfn >= m2p_frames() {
        return false;
    }
    let pfn = m2p(mfn);
    pfn < nr_pages() && p2m(pfn) == mfn
}

/// Frames the M2P says belong to another domain (a valid entry, not ours).
pub fn foreign(mfn: u64) -> bool {
    m2p_valid(m2p(mfn)) && !owns(mfn)
}

/// The frame of the guest's top-level table (`pt_base`).
pub fn l4_mfn() -> u64 {
    p2m((start_info().pt_base - VIRT_BASE) >> 12)
}

/// Pages of the bootstrap region (mapped from `VIRT_BASE`): the
/// 2 MiB-aligned L1 tables the builder made, as the L2 counts them.
pub fn boot_pages() -> u64 {
    let l2 = table_of(VIRT_BASE, 2).expect("VIRT_BASE has no L2");
    let mut i = 0;
    while i < 512 && pte(l2, i) & P != 0 {
        i += 1;
    }
    i as u64 * 512
}

/// Where a frame of the bootstrap region is mapped (read-only for page
/// tables), if it is one of ours there.
pub fn boot_va(mfn: u64) -> Option<u64> {
    if mfn >= m2p_frames() {
        return None;
    }
    let pfn = m2p(mfn);
    (pfn < first_free_pfn() && p2m(pfn) == mfn).then(|| VIRT_BASE + (pfn << 12))
}

/// The bootstrap page-table frames: `pt_base` and the `nr_pt_frames`
/// pages after it (pfns).
pub fn boot_pt_pfns() -> core::ops::Range<u64> {
    let si = start_info();
    let first = (si.pt_base - VIRT_BASE) >> 12;
    first..first + si.nr_pt_frames
}

/// Entry `i` of the guest page table in frame `table` (a bootstrap table,
/// or one mapped with [`Window`]'s help: see [`set_table_va`]).
pub fn pte(table: u64, i: usize) -> u64 {
    let va = table_va(table).expect("page table not mapped");
    // SAFETY: a mapped (read-only) page of ours; i < 512.
    unsafe { ((va + i as u64 * 8) as *const u64).read_volatile() }
}

static EXTRA_TABLES: GuestCell<[(u64, u64); 64]> = GuestCell::new([(0, 0); 64]);

/// Tell [`pte`] that table frame `mfn` is mapped at `va`.
pub fn set_table_va(mfn: u64, va: u64) {
    let mut t = EXTRA_TABLES.get();
    if let Some(s) = t.iter_mut().find(|s| s.0 == 0 || s.0 == mfn) {
        *s = (mfn, va);
    }
    EXTRA_TABLES.set(t);
}

pub fn table_va(mfn: u64) -> Option<u64> {
    if let Some(&(_, va)) = EXTRA_TABLES.get().iter().find(|s| s.0 == mfn) {
        return Some(va);
    }
    if mfn >= m2p_frames() {
        return None;
    }
    let pfn = m2p(mfn);
    (boot_pt_pfns().contains(&pfn) && p2m(pfn) == mfn).then(|| VIRT_BASE + (pfn << 12))
}

/// Index of `va` in its table of `level` (1-4).
pub fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

/// The frame of the table of `level` (4: the L4) that maps `va`.
pub fn table_of(va: u64, level: u32) -> Option<u64> {
    let mut t = l4_mfn();
    let mut l = 4;
    while l > level {
        let e = pte(t, index(va, l));
        if e & P == 0 {
            return None;
        }
        t = (e & ADDR) >> 12;
        l -= 1;
    }
    Some(t)
}

/// The machine address of the L1 entry for `va` (for `mmu_update`).
pub fn l1e_maddr(va: u64) -> Option<u64> {
    Some((table_of(va, 1)? << 12) | (index(va, 1) as u64 * 8))
}

/// Sign-extends a 48-bit address.
pub const fn canon(va: u64) -> u64 {
    ((va << 16) as i64 >> 16) as u64
}

/// The address that L4 slot `l4`, L3 `l3`, L2 `l2`, L1 `l1` map.
pub const fn va_of(l4: u64, l3: u64, l2: u64, l1: u64) -> u64 {
    canon(l4 << 39 | l3 << 30 | l2 << 21 | l1 << 12)
}

// ---------------------------------------------------------------------
// Free frames.
// ---------------------------------------------------------------------

static FIRST_FREE: GuestCell<u64> = GuestCell::new(0);
static NEXT_FREE: GuestCell<u64> = GuestCell::new(0);

/// The first pseudo-physical page above the bootstrap region.
pub fn first_free_pfn() -> u64 {
    if FIRST_FREE.get() == 0 {
        let b = boot_pages();
        FIRST_FREE.set(b);
        NEXT_FREE.set(b);
    }
    FIRST_FREE.get()
}

/// A fresh page of ours above the bootstrap region: (pfn, mfn). Never
/// mapped, zero (unless the caller wrote it through a mapping before).
pub fn alloc_page() -> (u64, u64) {
    first_free_pfn();
    let pfn = NEXT_FREE.get();
    if pfn >= nr_pages() {
        pvguest::report::error(format_args!("out of free pages"));
    }
    NEXT_FREE.set(pfn + 1);
    (pfn, p2m(pfn))
}

/// The next page [`alloc_page`] will hand out.
pub fn next_free_pfn() -> u64 {
    first_free_pfn();
    NEXT_FREE.get()
}

/// Pages [`alloc_page`] has not handed out yet.
pub fn free_pages_left() -> u64 {
    first_free_pfn();
    nr_pages() - NEXT_FREE.get()
}

// ---------------------------------------------------------------------
// Hypercall wrappers.
// ---------------------------------------------------------------------

/// `mmu_update` with `reqs`: (rc, done).
pub fn mmu(reqs: &[MmuUpdate]) -> (i64, u32) {
    let mut done: u32 = 0xdead;
    // SAFETY: the hypervisor validates every request (what is tested).
    let rc = unsafe {
        hc::mmu_update(
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            &mut done as *mut u32 as u64,
            abi::DOMID_SELF,
        )
    };
    (rc, done)
}

/// One `MMU_NORMAL_PT_UPDATE` (or other command in the low bits).
pub fn mmu1(ptr: u64, val: u64) -> i64 {
    mmu(&[MmuUpdate { ptr, val }]).0
}

/// One `mmuext_op` with `arg1`.
pub fn ext(cmd: u32, arg1: u64) -> i64 {
    // SAFETY: validated by the hypervisor.
    unsafe { hc::mmuext1(cmd, arg1, 0) }
}

/// `mmuext_op` with one op, returning (rc, done).
pub fn ext_done(op: MmuExtOp) -> (i64, u32) {
    let mut done: u32 = 0xdead;
    // SAFETY: validated by the hypervisor.
    let rc = unsafe {
        hc::mmuext_op(
            &op as *const _ as u64,
            1,
            &mut done as *mut u32 as u64,
            abi::DOMID_SELF,
        )
    };
    (rc, done)
}

/// Pin `mfn` as a table of `level` (1-4).
pub fn pin(level: u32, mfn: u64) -> i64 {
    ext(abi::MMUEXT_PIN_L1_TABLE + level - 1, mfn)
}

pub fn unpin(mfn: u64) -> i64 {
    ext(abi::MMUEXT_UNPIN_TABLE, mfn)
}

/// `update_va_mapping(va, val, UVMF_INVLPG)`.
pub fn uvm(va: u64, val: u64) -> i64 {
    // SAFETY: validated by the hypervisor.
    unsafe { hc::update_va_mapping(va, val, abi::UVMF_INVLPG) }
}

/// `update_va_mapping` with explicit flags.
pub fn uvm_flags(va: u64, val: u64, flags: u64) -> i64 {
    // SAFETY: validated by the hypervisor.
    unsafe { hc::update_va_mapping(va, val, flags) }
}

/// `memory_op(cmd, reservation { list, n, order 0, domid })`.
pub fn reservation_of(cmd: u32, list: &mut [u64], domid: u16) -> i64 {
    let r = abi::XenMemoryReservation {
        extent_start: list.as_mut_ptr() as u64,
        nr_extents: list.len() as u64,
        extent_order: 0,
        mem_flags: 0,
        domid,
        _pad0: [0; 3],
    };
    // SAFETY: the hypervisor reads `r` and reads/writes `list`.
    unsafe { hc::memory_op(cmd, &r as *const _ as u64) }
}

/// [`reservation_of`] this domain.
pub fn reservation(cmd: u32, list: &mut [u64]) -> i64 {
    reservation_of(cmd, list, abi::DOMID_SELF)
}

/// `decrease_reservation([f])` as an attack's answer: 0 extents done is a
/// refusal (reported as `-EPERM`), 1 done is acceptance (0).
pub fn give_back_rc(f: u64) -> i64 {
    let mut l = [f];
    match reservation(abi::XENMEM_DECREASE_RESERVATION, &mut l) {
        0 => EPERM,
        1 => 0,
        rc => rc,
    }
}

/// `VCPUOP_register_vcpu_info { mfn, offset }` for vCPU 0.
pub fn register_vcpu_info(mfn: u64, offset: u32) -> i64 {
    let r = abi::VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    };
    // SAFETY: the hypervisor moves vCPU 0's vcpu_info there if it accepts;
    // callers pass a page they give up for it, or one it must refuse.
    unsafe { hc::vcpu_op(abi::VCPUOP_REGISTER_VCPU_INFO, 0, &r as *const _ as u64) }
}

/// `update_descriptor(maddr, desc)`.
pub fn update_descriptor(maddr: u64, desc: u64) -> i64 {
    // SAFETY: validated by the hypervisor (the frame must be ours).
    unsafe { hc::hypercall5(abi::HYPERVISOR_UPDATE_DESCRIPTOR, maddr, desc, 0, 0, 0) }
}

/// `set_gdt(frames, entries)`.
pub fn set_gdt(frames: &[u64], entries: u64) -> i64 {
    // SAFETY: the hypervisor checks the frames and every descriptor; the
    // runtime never loads a selector of its own GDT.
    unsafe {
        hc::hypercall5(
            abi::HYPERVISOR_SET_GDT,
            frames.as_ptr() as u64,
            entries,
            0,
            0,
            0,
        )
    }
}

/// `vm_assist(enable/disable, writable_pagetables)`.
pub fn writable_pagetables(on: bool) -> i64 {
    hc::vm_assist(
        if on {
            abi::VMASST_CMD_ENABLE
        } else {
            abi::VMASST_CMD_DISABLE
        },
        abi::VMASST_TYPE_WRITABLE_PAGETABLES,
    )
}

// ---------------------------------------------------------------------
// A scratch window: 512 pages of address space with an L1 of our own.
// ---------------------------------------------------------------------

/// 2 MiB of address space in slot `l2_index` of the L2 that maps
/// `VIRT_BASE` (above the bootstrap region), with its own L1 table made
/// from a free page; the L1 maps itself read-only at its last page (so
/// [`pte`] can read it). Map frames into it with [`Window::map`].
#[derive(Clone, Copy)]
pub struct Window {
    pub base: u64,
    pub l1: u64,
    pub l2: u64,
    pub l2_index: usize,
}

/// The window's page that maps its own L1.
pub const WINDOW_SELF: u64 = 511;

impl Window {
    /// Takes L2 slot `l2_index` (must be empty) and a free page for the L1.
    pub fn new(l2_index: usize) -> Window {
        let l2 = table_of(VIRT_BASE, 2).expect("no L2");
        if pte(l2, l2_index) & P != 0 {
            pvguest::report::error(format_args!("window slot {l2_index} is in use"));
        }
        let (_, l1) = alloc_page();
        let rc = mmu1((l2 << 12) | (l2_index as u64 * 8), l1 << 12 | TABLE);
        if rc != 0 {
            pvguest::report::error(format_args!(
                "window {l2_index}: linking its L1 = {}",
                Rc(rc)
            ));
        }
        let w = Window {
            base: VIRT_BASE + ((l2_index as u64) << 21),
            l1,
            l2,
            l2_index,
        };
        let rc = w.map(WINDOW_SELF, l1, LEAF_RO);
        if rc != 0 {
            pvguest::report::error(format_args!(
                "window {l2_index}: mapping its L1 read-only = {}",
                Rc(rc)
            ));
        }
        set_table_va(l1, w.va(WINDOW_SELF));
        w
    }

    /// The address of page `slot` of the window.
    pub fn va(&self, slot: u64) -> u64 {
        self.base + (slot << 12)
    }

    /// Maps `mfn` at page `slot` with `flags` (`update_va_mapping`).
    pub fn map(&self, slot: u64, mfn: u64, flags: u64) -> i64 {
        uvm(self.va(slot), mfn << 12 | flags)
    }

    /// Unmaps page `slot`.
    pub fn unmap(&self, slot: u64) -> i64 {
        uvm(self.va(slot), 0)
    }

    /// The machine address of the L1 entry for page `slot`.
    pub fn pte_maddr(&self, slot: u64) -> u64 {
        (self.l1 << 12) | (slot * 8)
    }

    /// The L1 entry for page `slot`, as the hypervisor left it.
    pub fn entry(&self, slot: u64) -> u64 {
        pte(self.l1, slot as usize)
    }
}

/// The first L2 slot (of `VIRT_BASE`'s L2) above the bootstrap region,
/// plus `n`.
pub fn free_l2_slot(n: usize) -> usize {
    (boot_pages() / 512) as usize + 1 + n
}

/// Reads the u64 at `va`.
pub fn peek(va: u64) -> u64 {
    // SAFETY: callers pass mapped addresses, or run this inside
    // `traps::catch` to see the fault.
    unsafe { (va as *const u64).read_volatile() }
}

/// Writes the u64 at `va`.
pub fn poke(va: u64, v: u64) {
    // SAFETY: as `peek`.
    unsafe { (va as *mut u64).write_volatile(v) }
}

/// A plain 64-bit `mov %reg, (%addr)` (what the writable-pagetables
/// emulation decodes).
pub fn store64(va: u64, v: u64) {
    // SAFETY: as `peek`: mapped, or inside `catch`.
    unsafe {
        core::arch::asm!("mov qword ptr [{a}], {v}", a = in(reg) va, v = in(reg) v, options(nostack))
    }
}

/// Whether reading `va` faults.
pub fn read_faults(va: u64) -> bool {
    catch(|| {
        peek(va);
    })
    .is_err()
}

/// Whether writing `va` (its own value back) faults.
pub fn write_faults(va: u64) -> bool {
    catch(|| {
        let v = peek(va);
        poke(va, v);
    })
    .is_err()
}

// ---------------------------------------------------------------------
// Reporting.
// ---------------------------------------------------------------------

/// A case name built at run time (counts in it).
pub struct Name {
    buf: [u8; 200],
    len: usize,
}

impl Name {
    pub fn new(args: fmt::Arguments<'_>) -> Name {
        let mut n = Name {
            buf: [0; 200],
            len: 0,
        };
        let _ = n.write_fmt(args);
        n
    }
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Name {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Case `case`: an attack that must be refused with `want`. A 0 is called
/// out as accepted. Returns whether the call was accepted (so the caller
/// can undo it).
pub fn refused(case: &str, rc: i64, want: i64) -> bool {
    check(
        case,
        rc == want,
        format_args!(
            "returned {}, want {}{}",
            Rc(rc),
            Rc(want),
            if rc == 0 { ": ACCEPTED" } else { "" }
        ),
    );
    rc == 0
}

/// An attack repeated over many targets (frames, slots...): one PASS line
/// for all of them, or one FAIL naming the first target that was not
/// refused with `want`.
pub struct Sweep {
    what: Name,
    want: i64,
    /// A second answer that also counts as refused, and why it may come.
    also: Option<(i64, &'static str)>,
    also_n: u64,
    pub tried: u64,
    accepted: u64,
    other: u64,
    first: Option<(u64, i64)>,
}

impl Sweep {
    pub fn new(what: fmt::Arguments<'_>, want: i64) -> Sweep {
        Sweep {
            what: Name::new(what),
            want,
            also: None,
            also_n: 0,
            tried: 0,
            accepted: 0,
            other: 0,
            first: None,
        }
    }

    /// `rc` counts as refused too (`why` it may come is printed with the
    /// count as INFO).
    pub fn also(mut self, rc: i64, why: &'static str) -> Sweep {
        self.also = Some((rc, why));
        self
    }

    /// Records the answer for `target`; true if the attack was accepted
    /// (undo it).
    pub fn one(&mut self, target: u64, rc: i64) -> bool {
        self.tried += 1;
        if self.also.is_some_and(|(a, _)| a == rc) {
            self.also_n += 1;
        } else if rc != self.want {
            if rc == 0 {
                self.accepted += 1;
            } else {
                self.other += 1;
            }
            if self.first.is_none() {
                self.first = Some((target, rc));
            }
        }
        rc == 0
    }

    /// Records a failure that is not a return code (e.g. a read that did
    /// not fault).
    pub fn bad(&mut self, target: u64) {
        self.tried += 1;
        self.accepted += 1;
        if self.first.is_none() {
            self.first = Some((target, 0));
        }
    }

    pub fn ok(&mut self) {
        self.tried += 1;
    }

    /// How many were accepted so far.
    pub fn accepted_count(&self) -> u64 {
        self.accepted
    }

    pub fn end(self) {
        if let Some((rc, why)) = self.also.filter(|_| self.also_n > 0) {
            info(format_args!(
                "{}: {} answered {} ({why})",
                self.what.as_str(),
                self.also_n,
                Rc(rc)
            ));
        }
        if self.tried == 0 {
            info(format_args!("{}: nothing to try", self.what.as_str()));
            return;
        }
        let case = Name::new(format_args!(
            "{} ({} tried)",
            self.what.as_str(),
            self.tried
        ));
        match self.first {
            None => pass(case.as_str()),
            Some((t, rc)) => fail(
                case.as_str(),
                format_args!(
                    "{} accepted, {} refused otherwise (want {}); first: {t:#x} -> {}",
                    self.accepted,
                    self.other,
                    Rc(self.want),
                    Rc(rc)
                ),
            ),
        }
    }
}

/// Prints how long `f` took (INFO), returning its result.
pub fn timed<R>(what: &str, f: impl FnOnce() -> R) -> R {
    let t = pvguest::time::now_ns();
    let r = f();
    let dt = pvguest::time::now_ns().saturating_sub(t);
    info(format_args!(
        "{what}: {}.{:03} ms",
        dt / 1_000_000,
        dt / 1000 % 1000
    ));
    r
}

// ---------------------------------------------------------------------
// The victim link.
// ---------------------------------------------------------------------

/// The victim's command line: `attackers=N` (domains 1..=N attack); each
/// attacker's: `victim=D port=P` (the victim's domain and the port it
/// allocated for us: attacker k gets port k, the victim allocating them in
/// order before anything else).
pub struct VictimLink {
    pub victim: u16,
    pub local: u32,
}

/// Binds to the victim's port for us (retrying while it is still filling
/// its memory: it allocates the ports when it is ready to be attacked).
/// None when the command line names no victim (e.g. alone on Xen).
pub fn link_victim() -> Option<VictimLink> {
    let victim = start_info::arg_u32("victim")? as u16;
    let port = start_info::arg_u32("port").unwrap_or(1);
    let deadline = pvguest::time::now_ns() + 30_000_000_000;
    loop {
        match pvguest::events::bind_interdomain(victim, port) {
            Ok(local) => {
                info(format_args!(
                    "linked to the victim d{victim} port {port} (local port {local})"
                ));
                return Some(VictimLink { victim, local });
            }
            Err(rc) if (rc == EINVAL || rc == ESRCH) && pvguest::time::now_ns() < deadline => {
                pvguest::events::yield_now();
            }
            Err(rc) => {
                fail(
                    "bind to the victim's port",
                    format_args!("returned {}", Rc(rc)),
                );
                return None;
            }
        }
    }
}

/// Tells the victim we are done attacking.
pub fn victim_done(link: &Option<VictimLink>) {
    if let Some(l) = link {
        let rc = pvguest::events::send(l.local);
        if rc != 0 {
            fail(
                "notify the victim",
                format_args!("send returned {}", Rc(rc)),
            );
        }
    }
}
