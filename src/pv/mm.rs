//! Validated page-table updates (Xen: `arch/x86/mm.c`, simplified).
//!
//! 64-bit PV guests use direct paging: their page tables hold machine
//! frame numbers, and they change them only through `mmu_update`,
//! `update_va_mapping` and `mmuext_op`. Every new entry is checked against
//! the frame table (`mm::frametable`):
//!
//! - it may point only at frames the domain owns;
//! - an L1 entry may be writable only if its frame is not a page table;
//! - an L2-L4 entry must point at a page table of the level below; an
//!   ordinary frame without writable mappings becomes one (it is validated
//!   entry by entry first);
//! - no superpages and no caching attributes (PWT, PCD, PAT), as Xen for a
//!   domain without I/O memory; bit 62 of an L1 entry is refused (Xen's),
//!   bits 52-61 are the guest's own; `_PAGE_GLOBAL` is refused above L1
//!   and stripped from L1 entries (guest kernel and user share ring 3);
//!   the user bit is forced on (the guest kernel runs in ring 3);
//! - the hypervisor's L4 slots (256-271) belong to the hypervisor.
//!
//! A bad update returns `-EINVAL` (or `-EPERM` for a frame that is not the
//! domain's) and changes nothing.

use ringvisor_abi::errno::*;
use ringvisor_abi::xen::*;

use crate::arch::x86_64::idt::TrapFrame;
use crate::domain::Domain;
use crate::mm::frametable::{FrameTable, Kind};
use crate::mm::paging;
use crate::mm::view::FrameView;
use crate::pv::guest_mem::*;
use crate::pv::hypercall::{err, Ret};
use crate::pv::insn::{decode_pte_store, StoreKind};

/// Flags a guest may not set in a present entry, as Xen's
/// `BASE_DISALLOW_MASK` and `L1_DISALLOW_MASK` (x86_64 `page.h`) for a
/// domain without I/O memory: no caching attributes (a second memory type
/// beside the direct map's is a hardware hazard), no superpages, no global
/// upper entries; bit 62 of an L1 entry is Xen's (`_PAGE_GNTTAB`). Bits
/// 52-61 are the guest's own (the CPU ignores them: CR4.PKE is off).
const L1_REFUSED: u64 = PTE_PWT | PTE_PCD | PTE_PAT_4K | 1 << 62;
const UPPER_REFUSED: u64 = PTE_PWT | PTE_PCD | PTE_PS | PTE_G;
/// A PAE L3 entry (32-bit guests): everything above the address must be 0.
const PAE_L3_RESERVED_HIGH: u64 = 0xfff0_0000_0000_0000;
/// PAT in a 4 KiB entry is the bit that is PS above L1.
const PTE_PAT_4K: u64 = PTE_PS;
/// The cache attributes of a 4 KiB entry (Xen's PAGE_CACHE_ATTRS).
const CACHE_ATTRS: u64 = PTE_PWT | PTE_PCD | PTE_PAT_4K;

/// Table `mfn` through the direct map. Every caller names a frame the
/// frame table has just shown to be the domain's (its page tables, and
/// frames it may write), or one reached from its validated tables, or a
/// vCPU's compat L4 (the hypervisor's own, `domain::builder::compat_l4`).
/// Not `FrameView::owned`: that is a second look at the frame's record on
/// the `mmu_update` / `update_va_mapping` paths.
#[inline(always)]
fn table(mfn: u64) -> FrameView {
    FrameView::guest_mapped(mfn)
}

#[inline(always)]
fn read_pte(mfn: u64, index: usize) -> u64 {
    table(mfn).read(index)
}

#[inline(always)]
fn write_pte(mfn: u64, index: usize, v: u64) {
    table(mfn).write(index, v)
}

fn hv_slot(level: u8, index: usize) -> bool {
    level == 4 && (paging::HV_FIRST_SLOT..paging::HV_FIRST_SLOT + paging::HV_SLOTS).contains(&index)
}

/// The first L2 slot of a 32-bit guest's slot-3 L2 that is the
/// hypervisor's (Xen's `COMPAT_L2_PAGETABLE_FIRST_XEN_SLOT(d)`: 428, for
/// 0xF5800000).
const COMPAT_L2_FIRST_XEN_SLOT: usize = 512 - paging::COMPAT_L2_XEN_SLOTS;

/// Not the guest's: slot `index` of an L2 typed `pae_xen_l2` from the
/// hypervisor start up (the negation of Xen's `is_guest_l2_slot`).
fn xen_l2_slot(pae_xen_l2: bool, index: usize) -> bool {
    pae_xen_l2 && index >= COMPAT_L2_FIRST_XEN_SLOT
}

/// Slot 3 of a 32-bit guest's PAE L3 (Xen's `promote_l3_table`, `i == 3`):
/// present, and an L2 typed `pae_xen_l2` (so it is used nowhere else as
/// an L2), which this L3 alone references (`pae_xen_mappings_check`: the
/// hypervisor's slots in it must stay where this L3 puts them).
fn get_pae_xen_l2(d: &Domain, ft: &FrameTable, l3: u64, val: u64) -> Result<u64, i32> {
    if val & PTE_P == 0 || val & (UPPER_REFUSED | PAE_L3_RESERVED_HIGH) != 0 {
        return Err(EINVAL);
    }
    let target = (val & PTE_ADDR) >> 12;
    get_table_typed(d, ft, target, 2, true)?;
    if ft.get(target).is_none_or(|i| i.table_refs != 1) {
        // "PAE L3 3rd slot is shared"
        put_entry(ft, d.id, l3, 3, val);
        return Err(EINVAL);
    }
    Ok(val | PTE_RW | PTE_US | PTE_A)
}

/// Check a new entry for a table of `level` and take the references it
/// needs. Returns the value to store (user bit forced, global stripped).
fn get_entry(d: &Domain, ft: &FrameTable, table: u64, level: u8, val: u64) -> Result<u64, i32> {
    if val & PTE_P == 0 {
        return Ok(val);
    }
    // Flags first, then the frame (Xen's order in get_page_from_l?e).
    let refused = match (level, d.is_32bit()) {
        // A domain with I/O memory (the initial one) chooses the cache
        // attributes of its L1 entries (Xen's l1_disallow_mask).
        (1, _) if d.privileged => L1_REFUSED & !CACHE_ATTRS,
        (1, _) => L1_REFUSED,
        (3, true) => UPPER_REFUSED | PAE_L3_RESERVED_HIGH,
        _ => UPPER_REFUSED,
    };
    if val & refused != 0 {
        return Err(EINVAL);
    }
    let target = (val & PTE_ADDR) >> 12;
    if level == 1 {
        let rw = val & PTE_RW != 0;
        // The checks and the references they allow in one step on the
        // frame's record: a frame typed between them (another vCPU, a
        // grant) must not end up both a page table and writable. A frame
        // no domain owns (or past the table) may be I/O memory.
        let taken = ft.with(target, |info| {
            if info.owner == crate::mm::frametable::OWNER_NONE {
                return None;
            }
            if info.owner != d.id {
                return Some(Err(EPERM));
            }
            // The hypervisor's pages keep write-back (Xen: -EACCES for a
            // Xen heap page, "Attempt to change cache attributes").
            if val & CACHE_ATTRS != 0 && matches!(info.kind, Kind::SharedInfo | Kind::ReadOnly) {
                return Some(Err(EACCES));
            }
            if rw && matches!(info.kind, Kind::Table(_) | Kind::Gdt | Kind::ReadOnly) {
                return Some(Err(EINVAL));
            }
            // A count at its limit refuses the reference (Xen's get_page):
            // a count that wrapped would let a mapped frame pass for unused.
            let (Some(mapped), Some(writable)) = (
                info.mapped.checked_add(1),
                info.writable.checked_add(rw as u32),
            ) else {
                return Some(Err(EINVAL));
            };
            info.mapped = mapped;
            info.writable = writable;
            Some(Ok(()))
        });
        match taken.flatten() {
            Some(r) => r?,
            None => return io_entry(d, ft, target, val)?.ok_or(EPERM),
        }
        // A 64-bit kernel runs in ring 3: its pages must be user pages. A
        // 32-bit kernel (ring 1) chooses per page.
        return Ok(if d.is_32bit() { val } else { val | PTE_US } & !PTE_G);
    }
    match get_table(d, ft, target, level - 1) {
        Ok(()) => {}
        // A table of its own level: a linear page table, if allowed.
        Err(EINVAL) if !d.is_32bit() => get_linear(d, ft, table, level, target, val)?,
        Err(e) => return Err(e),
    }
    Ok(match (d.is_32bit(), level) {
        // A PAE L3 entry cannot say writable or user; in the long-mode
        // tables the CPU walks, it must (Xen: adjust_guest_l3e).
        (true, 3) => val | PTE_RW | PTE_US | PTE_A,
        (true, _) => val,
        (false, _) => val | PTE_US,
    })
}

/// An L1 entry mapping I/O memory (mm::iomem), as Xen's
/// `get_page_from_l1e` treats a frame of `dom_io` or past the frame table:
/// `None` when `mfn` is not I/O memory (a domain's or the hypervisor's
/// RAM: the ownership rules apply), else the entry to store or the error.
/// Only a domain with I/O memory capabilities, the initial one, maps it;
/// no reference is taken (nothing can free an I/O frame). As Xen without
/// `mmio-relax`, the entry's cache attributes are flipped to uncached
/// where they asked for a cached type (WB, WT, WP: PCD, and PWT for WB,
/// are flipped on; WC, UC- and UC stay), and a read-only range loses
/// `_PAGE_RW`; the guest reads the entry back as stored.
fn io_entry(d: &Domain, ft: &FrameTable, mfn: u64, val: u64) -> Result<Option<u64>, i32> {
    let Some(p) = crate::mm::iomem::policy() else {
        return Ok(None);
    };
    if ft
        .get(mfn)
        .is_some_and(|f| f.owner != crate::mm::frametable::OWNER_NONE)
        || !(p.is_io(mfn) || p.beyond(mfn))
    {
        return Ok(None);
    }
    use crate::mm::iomem::Access;
    let access = if d.privileged {
        p.dom0_access(mfn)
    } else {
        Access::Denied
    };
    let mut flip = match access {
        Access::NotIo | Access::Denied => {
            // Xen's answer for INVALID_MFN (all 40 bits set) is -EINVAL.
            return Err(if mfn == (1 << 40) - 1 { EINVAL } else { EPERM });
        }
        Access::ReadOnly => val & PTE_RW,
        Access::ReadWrite => 0,
    };
    flip |= match val & CACHE_ATTRS {
        0 => PTE_PWT | PTE_PCD,
        a if a == PTE_PWT || a == PTE_PWT | PTE_PAT_4K => PTE_PCD | (a & PTE_PAT_4K),
        _ => 0,
    };
    let v = val ^ flip;
    Ok(Some(if d.is_32bit() { v } else { v | PTE_US } & !PTE_G))
}

/// A linear page table (Xen's get_l{2,3,4}_linear_pagetable, 64-bit guests
/// only): entry of `table` at `level` mapping a table of the same level,
/// read-only (through it the guest reads its page tables, never writes
/// them: XSA-182). A table maps itself without a reference; another one
/// gets a type reference, and a table is either a user of linear entries
/// or a target of them, never both, so they never chain (XSA-240).
fn get_linear(
    d: &Domain,
    ft: &FrameTable,
    table: u64,
    level: u8,
    target: u64,
    val: u64,
) -> Result<(), i32> {
    if val & PTE_RW != 0 || table == 0 {
        return Err(EINVAL);
    }
    if target == table {
        return Ok(());
    }
    let (Some(t), Some(u)) = (ft.get(target), ft.get(table)) else {
        return Err(EINVAL);
    };
    if t.owner != d.id
        || t.kind != Kind::Table(level)
        || t.linear > 0
        || u.linear < 0
        || t.table_refs == u32::MAX
    {
        return Err(EINVAL);
    }
    // Both are this domain's tables, whose types and linear counts only
    // its own mm operations change (under its lock): the snapshot above
    // still holds; each record is updated in one step.
    ft.with(target, |t| {
        t.table_refs += 1;
        t.linear -= 1;
    });
    ft.with(table, |u| u.linear += 1);
    Ok(())
}

/// Drop what `get_entry` took for an entry being replaced. The last
/// reference to a page table devalidates it (`untype`, then `drop_children`).
fn put_entry(ft: &FrameTable, owner: u16, table: u64, level: u8, old: u64) {
    if old & PTE_P == 0 {
        return;
    }
    if level == 1 && old & PTE_GNTTAB != 0 {
        return; // a grant mapping's references are its map's (pv::grant)
    }
    let target = (old & PTE_ADDR) >> 12;
    // The reference dropped and what follows from it decided in one step
    // on the frame's record (the last one devalidates it); the children
    // and the linear user are other records, changed after.
    let (devalidate_at, linear_user) = ft
        .with(target, |info| {
            if info.owner != owner {
                // Not the table owner's frame: no reference of this entry's
                // is on it (I/O memory, io_entry, took none; every other
                // entry was checked to name the owner's own frame when it
                // was made, so this is a count gone wrong elsewhere, and
                // another owner's counts are left alone).
                return (None, false);
            }
            if level == 1 {
                info.mapped = info.mapped.saturating_sub(1);
                if old & PTE_RW != 0 {
                    info.writable = info.writable.saturating_sub(1);
                }
                (None, false)
            } else if info.kind == Kind::Table(level - 1) {
                info.table_refs = info.table_refs.saturating_sub(1);
                let last = info.table_refs == 0 && !info.pinned;
                (last.then(|| untype(info, level - 1)), false)
            } else if info.kind == Kind::Table(level) && target != table && table != 0 {
                // A linear entry (get_linear); one to itself took nothing.
                info.table_refs = info.table_refs.saturating_sub(1);
                info.linear += 1;
                let last = info.table_refs == 0 && !info.pinned;
                (last.then(|| untype(info, level)), true)
            } else {
                (None, false)
            }
        })
        .unwrap_or((None, false));
    if linear_user {
        ft.with(table, |u| u.linear -= 1);
    }
    if let Some(l) = devalidate_at {
        drop_children(ft, owner, target, l);
    }
}

/// The last reference to a page table of `level` went: it is ordinary
/// memory again (in the same step as the count reached 0, so nothing can
/// take a reference to it as a table in between). Returns `level`.
/// (A `pae_xen_l2` flag goes in `drop_children`, which needs it.)
fn untype(info: &mut crate::mm::frametable::FrameInfo, level: u8) -> u8 {
    info.kind = Kind::Normal;
    level
}

/// A page table whose last reference went (unpinned, unlinked from the
/// last higher table, no longer a CR3) became ordinary memory again
/// (`untype`); every reference its entries took is dropped, down the
/// tree (Xen:
/// `free_l1_table`..`free_l4_table` when the type count reaches 0).
/// Keeping them would let a pin/unpin loop take them again and again
/// until a count wrapped, and would keep the children typed: Linux maps
/// its old boot page tables writable once it has unpinned them.
///
/// The TLB: the table is linked nowhere now; where it was unlinked, the
/// caller flushes before the guest runs again (see "Stale translations").
// Out of line, as before the pae_xen_l2 flag made it larger: inlined, it
// slowed put_entry's common case (bench --icount, mmu-update-1).
#[inline(never)]
fn drop_children(ft: &FrameTable, owner: u16, mfn: u64, level: u8) {
    // An L2 that was a pae_xen_l2: its hypervisor slots hold no references
    // (Xen's free_l2_table skips them and leaves them in the page, as here).
    let pae_xen_l2 =
        level == 2 && ft.with(mfn, |i| core::mem::take(&mut i.pae_xen_l2)) == Some(true);
    for i in (0..512).filter(|&i| !hv_slot(level, i) && !xen_l2_slot(pae_xen_l2, i)) {
        put_entry(ft, owner, mfn, level, read_pte(mfn, i));
    }
}

/// Take a reference on `mfn` as a page table of `level`, validating it
/// first if it is not one yet.
fn get_table(d: &Domain, ft: &FrameTable, mfn: u64, level: u8) -> Result<(), i32> {
    get_table_typed(d, ft, mfn, level, false)
}

/// [`get_table`] for the type with or without `pae_xen_l2` (Xen's
/// `PGT_l2_page_table | PGT_pae_xen_l2`): the flag is part of the type,
/// so an L2 of one kind is refused as the other.
fn get_table_typed(
    d: &Domain,
    ft: &FrameTable,
    mfn: u64,
    level: u8,
    pae_xen_l2: bool,
) -> Result<(), i32> {
    let Some(info) = ft.get(mfn) else {
        return Err(EPERM);
    };
    if info.owner != d.id {
        return Err(EPERM);
    }
    match info.kind {
        Kind::Table(l) if l == level && info.pae_xen_l2 == pae_xen_l2 => {}
        Kind::Normal if info.writable == 0 => {
            // Type it first so a table cannot contain itself writably:
            // in one step with the check that no writable mapping is left
            // (a grant mapping by another domain may have come since).
            let typed = ft.with(mfn, |i| {
                let ok = i.owner == d.id && i.kind == Kind::Normal && i.writable == 0;
                if ok {
                    i.kind = Kind::Table(level);
                    i.pae_xen_l2 = pae_xen_l2;
                }
                ok
            });
            if typed != Some(true) {
                return Err(EINVAL);
            }
            // No writable mapping is left in the tables, and none can be
            // made now, but the TLB may still hold one (an L1 linked at
            // several places serves several addresses): flush it.
            flush_tlb(d);
            // A 32-bit guest's PAE L3 has 4 entries; the rest of its page
            // is zeroed (Xen's promote_l3_table), slot 3 is special.
            let pae_l3 = level == 3 && d.is_32bit();
            let entries = if pae_l3 {
                for i in 4..512 {
                    write_pte(mfn, i, 0);
                }
                4
            } else {
                512
            };
            for i in 0..entries {
                if hv_slot(level, i) || xen_l2_slot(pae_xen_l2, i) {
                    continue;
                }
                let r = if pae_l3 && i == 3 {
                    get_pae_xen_l2(d, ft, mfn, read_pte(mfn, i))
                } else {
                    get_entry(d, ft, mfn, level, read_pte(mfn, i))
                };
                match r {
                    Ok(v) => write_pte(mfn, i, v),
                    Err(e) => {
                        // Drop what the entries before this one took (as
                        // Xen does), so a failed validation leaves nothing.
                        for j in
                            (0..i).filter(|&j| !hv_slot(level, j) && !xen_l2_slot(pae_xen_l2, j))
                        {
                            put_entry(ft, d.id, mfn, level, read_pte(mfn, j));
                        }
                        ft.with(mfn, |i| {
                            i.kind = Kind::Normal;
                            i.pae_xen_l2 = false;
                        });
                        return Err(e);
                    }
                }
            }
            if pae_xen_l2 {
                // Xen's init_xen_pae_l2_slots: the compat M2P, read-only.
                for (i, e) in paging::compat_m2p_l2_slots().iter().enumerate() {
                    write_pte(mfn, COMPAT_L2_FIRST_XEN_SLOT + i, *e);
                }
            }
            if level == 4 {
                for (i, e) in paging::hypervisor_l4_slots().iter().enumerate() {
                    write_pte(mfn, paging::HV_FIRST_SLOT + i, *e);
                }
            }
        }
        _ => return Err(EINVAL),
    }
    // The type checked again with the reference it allows: a table of
    // another domain cannot be devalidated in between (only its owner,
    // this domain, drops its references), but the record says so itself.
    ft.with(mfn, |info| match info.table_refs.checked_add(1) {
        Some(n) if info.kind == Kind::Table(level) && info.pae_xen_l2 == pae_xen_l2 => {
            info.table_refs = n;
            Ok(())
        }
        _ => Err(EINVAL),
    })
    .unwrap_or(Err(EPERM))
}

/// Replace entry `index` of table `mfn` (of `level`) with `val`.
fn update_entry(d: &Domain, ft: &FrameTable, mfn: u64, level: u8, index: usize, val: u64) -> Ret {
    if hv_slot(level, index) {
        return err(EINVAL);
    }
    let old = read_pte(mfn, index);
    if level == 1 && old & PTE_P != 0 && old & PTE_GNTTAB != 0 {
        // Only unmap_grant_ref removes a grant mapping (Xen crashes a
        // domain that tries this; ringvisor refuses the update).
        return err(EINVAL);
    }
    // Xen's mod_l1_entry fast path: the same frame with the same rights
    // and cache type, only bits no reference or rule depends on changed
    // (A, D, G, US, NX, the guest's own): nothing to take or drop, no
    // frame record touched. (Bit 62 is not among them: `old` has none.)
    const L1_SAME: u64 = PTE_A | PTE_D | PTE_G | PTE_US | 0x7 << 9 | 0x3ff << 52 | 1 << 63;
    if level == 1 && old & PTE_P != 0 && (old ^ val) & !L1_SAME == 0 {
        write_pte(
            mfn,
            index,
            if d.is_32bit() { val } else { val | PTE_US } & !PTE_G,
        );
        return 0;
    }
    let new = match get_entry(d, ft, mfn, level, val) {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    write_pte(mfn, index, new);
    put_entry(ft, d.id, mfn, level, old);
    // The caller flushes what the old entry may have left in the TLB.
    0
}

/// May a 32-bit guest change entry `index` of its table `mfn` (of
/// `level` > 1)? Xen's mod_l3_entry: not a PAE L3's slot 3 (the
/// hypervisor's L2) or the rest of its page (-EINVAL); mod_l2_entry: not
/// the hypervisor's slots of that L2 ("L2 update in Xen-private area",
/// -EPERM). Asked before [`update_entry`], by the 32-bit callers only
/// (`mmu_update_compat`, `ptwr`): in it, the check made the 64-bit paths
/// slower (`cargo xtask bench --icount`).
fn compat_upper_slot(ft: &FrameTable, mfn: u64, level: u8, index: usize) -> Result<(), i32> {
    if level == 3 && index >= 3 {
        return Err(EINVAL);
    }
    if level == 2 && index >= COMPAT_L2_FIRST_XEN_SLOT && ft.get(mfn).is_some_and(|i| i.pae_xen_l2)
    {
        return Err(EPERM);
    }
    Ok(())
}

// Stale translations. When a guest replaces an L1 entry, the old
// translation may stay in the TLB of any CPU that runs one of its vCPUs
// until the guest flushes it, as on Xen: the guest asks with UVMF_* or
// mmuext_op (`_LOCAL`: this CPU; a vCPU mask or `_ALL`: every CPU in the
// domain's dirty mask). That is safe for everyone else because each
// moment where a stale *writable* translation, or a cached paging
// structure, could matter flushes every CPU that may hold one before the
// frame can be used otherwise: a frame becoming a page table (get_table)
// or GDT (set_gdt), a changed upper entry (once a batch), an unpin, a
// grant mapping installed or removed, a frame going back to the pool
// (decrease_reservation, exchange; a domain's teardown waits until no
// CPU holds one of its vCPUs, and each such CPU loaded other tables
// since). Which CPUs may hold one is the domain's dirty mask
// (`sched::dirty_cpus`: a CPU joins before it loads the domain's tables
// and leaves only after it loaded others; guest entries are never global,
// so a CR3 load drops them all), and `flush_tlb` waits until each has
// flushed. A grant mapping lives in the mapping domain's tables, so its
// removal flushes that domain's mask.
//
// Every write of a guest's page-table entry by the hypervisor is made
// under its domain's lock (all mm operations are), so the read of the old
// entry, the checks and the write are one step for every other vCPU of
// the domain as well. The CPUs themselves change an entry only by
// setting its Accessed and Dirty bits, which no reference or rule here
// depends on (Xen's cmpxchg loop in `update_intpte` retries on exactly
// those two and writes the same value): a plain write loses at most a
// bit the guest's own vCPU set in between, as Xen's write without
// `MMU_PT_UPDATE_PRESERVE_AD` does.

/// Drop `d`'s translations (non-global: guest entries never are) on
/// every CPU that may hold them: this one and its dirty mask
/// (`sched::dirty_cpus`), returning once each has.
pub fn flush_tlb(d: &Domain) {
    crate::sched::flush_domain_tlb(d.id, crate::arch::x86_64::smp::FLUSH_NONGLOBAL);
}

/// Drop `va`'s translation wherever `d` may have one (as [`flush_tlb`]).
fn invlpg(d: &Domain, va: u64) {
    crate::sched::flush_domain_tlb(d.id, va);
}

/// Most entries one `mmu_update`/`mmuext_op` call may carry: Xen splits
/// longer batches with continuations; we ask the guest to split them.
pub const MAX_BATCH: u64 = 4096;

/// The shape of `mmu_update` and `mmuext_op`: `count` requests of type `T`
/// at `list`, applied in order until one fails; how many were done goes to
/// `done_ptr` (if not null), as the ABI says.
#[allow(clippy::too_many_arguments)]
fn batch<T: ringvisor_abi::Pod>(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    list: u64,
    count: u64,
    done_ptr: u64,
    dom: u64,
    mut one: impl FnMut(&mut Domain, &FrameTable, T) -> Ret,
) -> Ret {
    if let Err(e) = pg_owner(d, dom as u16) {
        return err(e);
    }
    if count > MAX_BATCH {
        return err(EINVAL);
    }
    let mut done = 0u64;
    let mut rc = 0;
    while done < count {
        let at = list.checked_add(done * core::mem::size_of::<T>() as u64);
        let Some(Ok(req)) = at.map(|at| space.read::<T>(at)) else {
            rc = err(EFAULT);
            break;
        };
        rc = one(d, ft, req);
        if rc != 0 {
            break;
        }
        done += 1;
    }
    if done_ptr != 0 && space.write(done_ptr, &(done as u32)).is_err() {
        return err(EFAULT);
    }
    rc
}

pub fn mmu_update(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    reqs: u64,
    count: u64,
    done_ptr: u64,
    dom: u64,
) -> Ret {
    mmu_update_batch::<false>(d, ft, space, reqs, count, done_ptr, dom)
}

/// [`mmu_update`] of a 32-bit guest (`pv::compat`): each request first
/// checked against the slots that are the hypervisor's in its tables
/// ([`compat_upper_slot`]). A separate instance, so the 64-bit paths do
/// not test for it (`cargo xtask bench --icount`).
pub fn mmu_update_compat(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    reqs: u64,
    count: u64,
    done_ptr: u64,
    dom: u64,
) -> Ret {
    mmu_update_batch::<true>(d, ft, space, reqs, count, done_ptr, dom)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mmu_update_batch<const COMPAT: bool>(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    reqs: u64,
    count: u64,
    done_ptr: u64,
    dom: u64,
) -> Ret {
    let mut upper = false;
    let r = batch(
        d,
        ft,
        space,
        reqs,
        count,
        done_ptr,
        dom,
        |d, ft, u: MmuUpdate| {
            if COMPAT {
                if let Some(rc) = compat_refused(d, ft, u) {
                    return rc;
                }
            }
            let (rc, level) = mmu_update_one(d, ft, u);
            upper |= level > 1;
            rc
        },
    );
    // An L1 entry's old translation is the guest's to flush (see "Stale
    // translations"); a changed upper entry flushes the TLB, once a batch.
    if upper {
        flush_tlb(d);
    }
    r
}

/// [`mmu_update`] of exactly one request (`count` 1, the quick way's:
/// `pv::fast::quick_mmu`): the same steps in the same order as the batch
/// of one, without its loop: the domain, the request read (`-EFAULT`),
/// applied, `done_ptr` written (0 or 1), a changed upper entry flushed.
/// Inlined into its one caller: one function's frame on that path, not two.
#[inline(always)]
pub fn mmu_update_single(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    req: u64,
    done_ptr: u64,
    dom: u64,
) -> Ret {
    if let Err(e) = pg_owner(d, dom as u16) {
        return err(e);
    }
    let (rc, level) = match space.read::<MmuUpdate>(req) {
        Ok(u) => mmu_update_one(d, ft, u),
        Err(_) => (err(EFAULT), 0),
    };
    let r = if done_ptr != 0 && space.write(done_ptr, &((rc == 0) as u32)).is_err() {
        err(EFAULT)
    } else {
        rc
    };
    if level > 1 {
        flush_tlb(d);
    }
    r
}

/// One `mmu_update` request: its result and the level of the table entry
/// it changed (0 for none).
fn mmu_update_one(d: &mut Domain, ft: &FrameTable, u: MmuUpdate) -> (Ret, u8) {
    // The command rides in the low bits of the (8-byte aligned) pointer.
    let cmd = u.ptr & 7;
    let ptr = u.ptr & !7;
    match cmd {
        MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD => {
            let mfn = ptr >> 12;
            match ft.with(mfn, |i| (i.owner, i.kind)) {
                Some((owner, kind)) if owner == d.id => match kind {
                    Kind::Table(level) => {
                        let index = ((ptr & 0xfff) / 8) as usize;

                        // PRESERVE_AD: the new entry keeps the accessed and
                        // dirty bits the old one has (Xen's update_intpte
                        // with preserve_ad; neither bit is checked).
                        let val = if cmd == MMU_PT_UPDATE_PRESERVE_AD {
                            u.val | (read_pte(mfn, index) & (PTE_A | PTE_D))
                        } else {
                            u.val
                        };
                        (update_entry(d, ft, mfn, level, index, val), level)
                    }
                    // Not a page table: as Xen (get_page_type(writable) and
                    // paging_write_guest_entry), written like memory when
                    // the frame could be mapped writable (Linux builds its
                    // unpinned page tables this way).
                    Kind::Normal | Kind::SharedInfo => {
                        write_pte(mfn, ((ptr & 0xfff) / 8) as usize, u.val);
                        (0, 0)
                    }
                    _ => (err(EINVAL), 0),
                },
                _ => (err(EPERM), 0),
            }
        }
        MMU_MACHPHYS_UPDATE => {
            let mfn = ptr >> 12;
            // Any page number for a frame of the domain's own, as Xen's
            // set_gpfn_from_mfn: the M2P is the guest's to say (Linux
            // moves the frames of pages in e820 holes above its memory).
            // The hypervisor never trusts it: it keeps its own list of the
            // domain's frames (d.p2m), and reads the M2P only as a hint
            // (find_pfn).
            let rc = if !ft.owned_by(mfn, d.id) {
                err(EPERM)
            } else {
                if let Some(slot) = find_slot(d, mfn) {
                    if u.val == slot as u64 {
                        d.p2m_moved.remove(&mfn);
                    } else {
                        d.p2m_moved.insert(mfn, slot);
                    }
                }
                paging::m2p_set(mfn, u.val);
                0
            };
            (rc, 0)
        }
        _ => (err(ENOSYS), 0),
    }
}

/// A 32-bit guest's `mmu_update` request of an entry that is the
/// hypervisor's ([`compat_upper_slot`]): its error, before anything else.
fn compat_refused(d: &Domain, ft: &FrameTable, u: MmuUpdate) -> Option<Ret> {
    if !matches!(u.ptr & 7, MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD) {
        return None;
    }
    let mfn = u.ptr >> 12;
    let index = ((u.ptr & 0xfff) / 8) as usize;
    match ft.get(mfn) {
        Some(i) if i.owner == d.id => match i.kind {
            Kind::Table(level) if level > 1 => {
                compat_upper_slot(ft, mfn, level, index).err().map(err)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Xen's `_PAGE_GNTTAB`: this L1 entry is a grant mapping, whose
/// references its map holds (pv::grant). Guests may not set it (L1_REFUSED).
pub const PTE_GNTTAB: u64 = 1 << 62;

/// An L1 entry of the domain: its table frame and index.
#[derive(Clone, Copy)]
pub struct Slot(u64, usize);

/// Where a grant host mapping goes or is: the L1 entry mapping virtual
/// address `addr` in the current tables, or with `by_pte` the L1 entry at
/// machine address `addr` (8-byte aligned: XSA-227).
pub fn grant_slot(d: &Domain, ft: &FrameTable, addr: u64, by_pte: bool) -> Option<Slot> {
    let (l1, i) = if by_pte {
        if !addr.is_multiple_of(8) {
            return None;
        }
        (addr >> 12, ((addr & 0xfff) / 8) as usize)
    } else {
        l1_slot(d, addr)?
    };
    ft.get(l1)
        .filter(|f| f.owner == d.id && f.kind == Kind::Table(1))?;
    Some(Slot(l1, i))
}

/// The L1 entry of a grant mapping of `mfn`: present, accessed, dirty,
/// marked; user for a 64-bit guest (its kernel is in ring 3) or when asked.
pub fn grant_pte(mfn: u64, rw: bool, user: bool) -> u64 {
    mfn << 12
        | PTE_P
        | PTE_A
        | PTE_D
        | PTE_GNTTAB
        | if rw { PTE_RW } else { 0 }
        | if user { PTE_US } else { 0 }
}

/// Is `e` the grant mapping of `mfn`, with those rights?
pub fn is_grant_pte(e: u64, mfn: u64, rw: bool) -> bool {
    e & PTE_P != 0 && e & PTE_GNTTAB != 0 && (e & PTE_ADDR) >> 12 == mfn && (e & PTE_RW != 0) == rw
}

pub fn slot_read(s: Slot) -> u64 {
    read_pte(s.0, s.1)
}

/// Put grant entry `pte` in the slot. What was there is dropped as an
/// update would drop it; a grant mapping there is refused.
pub fn grant_install(d: &Domain, ft: &FrameTable, s: Slot, pte: u64) -> Result<(), ()> {
    let old = read_pte(s.0, s.1);
    if old & PTE_P != 0 && old & PTE_GNTTAB != 0 {
        return Err(());
    }
    write_pte(s.0, s.1, pte);
    put_entry(ft, d.id, s.0, 1, old);
    flush_tlb(d);
    Ok(())
}

/// Write `e` into the slot, moving an entry whose references stay as they
/// are (its own, or its grant map's), and flush what the old one left.
pub fn slot_replace(d: &Domain, s: Slot, e: u64) {
    write_pte(s.0, s.1, e);
    flush_tlb(d);
}

pub fn grant_clear(d: &Domain, s: Slot) {
    slot_replace(d, s, 0);
}

/// The L1 table and index mapping `va` in the domain's kernel tables.
fn l1_slot(d: &Domain, va: u64) -> Option<(u64, usize)> {
    l1_slot_known(d, va).map(|(t, i, _)| (t, i))
}

/// [`l1_slot`], and whether the walk itself proves the table is one of
/// the domain's L1s: every entry that led to it is writable (a linear
/// entry, the only other thing a validated upper entry can map, is
/// read-only: `get_linear`; one anywhere on the way would shift the
/// levels). (A 32-bit guest has no linear entries, but may map its L1s
/// read-only: those take the frame record's look.)
/// A validated entry holds a type reference on its table, which only
/// this domain's own page-table calls drop, under the lock its caller
/// holds: the table stays its L1 while the caller looks.
#[inline(always)]
fn l1_slot_known(d: &Domain, va: u64) -> Option<(u64, usize, bool)> {
    if !is_canonical(va) || in_hypervisor_range(va) {
        return None;
    }
    let mut t = d.v().cr3_table();
    let mut all = PTE_RW;
    for level in (2..=4u32).rev() {
        let e = read_pte(t, ((va >> (12 + 9 * (level - 1))) & 511) as usize);
        // Present and not a superpage, in one test.
        if e & (PTE_P | PTE_PS) != PTE_P {
            return None;
        }
        all &= e;
        t = (e & PTE_ADDR) >> 12;
    }
    Some((t, ((va >> 12) & 511) as usize, all != 0))
}

/// The page owner a guest names for `mmu_update`, `mmuext_op` and
/// `update_va_mapping_otherdomain`, as Xen's `get_pg_owner`: `DOMID_SELF`
/// is the domain itself; its own id written out is refused (`-ESRCH`:
/// "Cannot specify itself as foreign domain"), and so is a domain that
/// does not exist. ringvisor maps no other domain's frames, `DOMID_IO`'s
/// or `DOMID_XEN`'s through these calls (the initial domain maps I/O
/// memory as its own): naming one is `-EPERM`, what Xen's XSM check
/// answers a domain without the privilege.
#[inline(always)]
pub fn pg_owner(d: &Domain, dom: u16) -> Result<(), i32> {
    if dom == DOMID_SELF {
        Ok(())
    } else {
        Err(foreign_owner(d, dom))
    }
}

/// Why naming `dom` (not `DOMID_SELF`) as the page owner is refused.
#[cold]
fn foreign_owner(d: &Domain, dom: u16) -> i32 {
    use ringvisor_abi::xen::{DOMID_IO, DOMID_XEN};
    if dom == d.id {
        ESRCH
    } else if dom == DOMID_IO || dom == DOMID_XEN || crate::sched::domain_lock(dom).is_some() {
        EPERM
    } else {
        ESRCH
    }
}

/// `update_va_mapping_otherdomain(va, val, flags, domid)` (Xen:
/// do_update_va_mapping_otherdomain): `update_va_mapping` with the page
/// owner named ([`pg_owner`]).
pub fn update_va_mapping_otherdomain(
    d: &mut Domain,
    ft: &FrameTable,
    va: u64,
    val: u64,
    flags: u64,
    dom: u64,
) -> Ret {
    match pg_owner(d, dom as u16) {
        Ok(()) => update_va_mapping(d, ft, va, val, flags),
        Err(e) => err(e),
    }
}

pub fn update_va_mapping(d: &mut Domain, ft: &FrameTable, va: u64, val: u64, flags: u64) -> Ret {
    update_va_mapping_inline(d, ft, va, val, flags)
}

/// [`update_va_mapping`], inlined into the quick way's `quick_uvm`: one
/// function's frame on that path, not two.
#[inline(always)]
pub fn update_va_mapping_inline(
    d: &mut Domain,
    ft: &FrameTable,
    va: u64,
    val: u64,
    flags: u64,
) -> Ret {
    match l1_slot_known(d, va) {
        // The record's two fields under its lock, not a copy of it, when
        // the walk does not prove them.
        Some((l1, i, known))
            if known
                || ft.with(l1, |x| x.owner == d.id && x.kind == Kind::Table(1)) == Some(true) =>
        {
            let r = update_entry(d, ft, l1, 1, i, val);
            uvm_flush(d, va, flags);
            r
        }
        _ => err(EINVAL),
    }
}

/// What the guest asked `update_va_mapping` to flush (see "Stale
/// translations" above: an old L1 translation left in the TLB is the
/// guest's own business). As Xen reads the rest of `flags`: 0 is
/// `UVMF_LOCAL` (this CPU), `UVMF_ALL` and a vCPU mask's address
/// (`UVMF_MULTI`) are every CPU that ran the domain since it last left
/// them (its dirty mask: a superset of those vCPUs' CPUs, so the mask is
/// not read).
fn uvm_flush(d: &Domain, va: u64, flags: u64) {
    use ringvisor_abi::xen::{UVMF_FLUSHTYPE_MASK, UVMF_INVLPG, UVMF_NONE};
    let everywhere = flags & !UVMF_FLUSHTYPE_MASK != 0;
    match flags & UVMF_FLUSHTYPE_MASK {
        UVMF_NONE => {}
        UVMF_INVLPG if everywhere => invlpg(d, va),
        UVMF_INVLPG => crate::arch::x86_64::cpu::flush_tlb_page(va),
        _ if everywhere => flush_tlb(d),
        _ => crate::arch::x86_64::cpu::flush_tlb_nonglobal(),
    }
}

// Tour 06: MMUEXT_NEW_USER_BASEPTR sets the user page tables
pub fn mmuext_op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    ops: u64,
    count: u64,
    done_ptr: u64,
    dom: u64,
) -> Ret {
    batch(d, ft, space, ops, count, done_ptr, dom, mmuext_one)
}

/// `mmuext_op` on requests already read (and translated: 32-bit guests).
pub fn mmuext_list(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    ops: &[MmuExtOp],
    done_ptr: u64,
    dom: u64,
) -> Ret {
    if let Err(e) = pg_owner(d, dom as u16) {
        return err(e);
    }
    let mut done = 0u32;
    let mut rc = 0;
    for op in ops {
        rc = mmuext_one(d, ft, *op);
        if rc != 0 {
            break;
        }
        done += 1;
    }
    if done_ptr != 0 && space.write(done_ptr, &done).is_err() {
        return err(EFAULT);
    }
    rc
}

/// Make `mfn` the vCPU's kernel top-level table: an L4, or a 32-bit
/// guest's PAE L3 (which the hypervisor's per-vCPU L4 then points at).
fn new_baseptr(d: &mut Domain, ft: &FrameTable, mfn: u64) -> Result<(), i32> {
    let level = if d.is_32bit() { 3 } else { 4 };
    get_table(d, ft, mfn, level)?;
    let v = d.v_mut();
    let old = v.guest_table;
    v.guest_table = mfn;
    if v.compat_l4 != 0 {
        // Slot 0 of the hypervisor's L4 for this vCPU maps the guest's 4 GiB.
        write_pte(v.compat_l4, 0, mfn << 12 | PTE_P | PTE_RW | PTE_US | PTE_A);
    }
    if old != 0 {
        put_entry(ft, d.id, 0, level + 1, old << 12 | PTE_P);
    }
    crate::sched::load_cr3(d.v());
    Ok(())
}

fn mmuext_one(d: &mut Domain, ft: &FrameTable, op: MmuExtOp) -> Ret {
    let mfn = op.mfn();
    match op.cmd {
        MMUEXT_PIN_L1_TABLE..=MMUEXT_PIN_L4_TABLE => {
            let level = (op.cmd - MMUEXT_PIN_L1_TABLE + 1) as u8;
            if ft.get(mfn).is_some_and(|i| i.pinned) {
                err(EINVAL)
            } else {
                match get_table(d, ft, mfn, level) {
                    Ok(()) => {
                        ft.with(mfn, |i| i.pinned = true);
                        0
                    }
                    Err(e) => err(e),
                }
            }
        }
        MMUEXT_UNPIN_TABLE => match ft.get(mfn) {
            Some(i) if i.owner == d.id && i.pinned => {
                let level = match i.kind {
                    Kind::Table(l) => l,
                    _ => 1,
                };
                ft.with(mfn, |i| i.pinned = false);
                put_entry(ft, d.id, 0, level + 1, mfn << 12 | PTE_P);
                // The table may be ordinary memory now, writable next:
                // no CPU keeps it cached as a paging structure.
                flush_tlb(d);
                0
            }
            _ => err(EINVAL),
        },
        MMUEXT_NEW_BASEPTR | MMUEXT_NEW_USER_BASEPTR => {
            let user = op.cmd == MMUEXT_NEW_USER_BASEPTR;
            if user && (mfn == 0 || d.is_32bit()) {
                // 32-bit guests have one address space for both rings.
                if d.is_32bit() {
                    return err(EINVAL);
                }
                let old = core::mem::take(&mut d.v_mut().guest_table_user);
                if old != 0 {
                    put_entry(ft, d.id, 0, 5, old << 12 | PTE_P);
                }
                0
            } else if !user {
                match new_baseptr(d, ft, mfn) {
                    Ok(()) => 0,
                    Err(e) => err(e),
                }
            } else {
                match get_table(d, ft, mfn, 4) {
                    Ok(()) => {
                        let id = d.id;
                        let v = d.v_mut();
                        let old = if user {
                            v.guest_table_user
                        } else {
                            v.guest_table
                        };
                        if user {
                            v.guest_table_user = mfn;
                        } else {
                            v.guest_table = mfn;
                        }
                        if old != 0 {
                            put_entry(ft, id, 0, 5, old << 12 | PTE_P);
                        }
                        if v.kernel_mode() != user {
                            crate::sched::load_cr3(v);
                        }
                        0
                    }
                    Err(e) => err(e),
                }
            }
        }
        MMUEXT_SET_LDT => {
            // Xen's checks (page-aligned, a guest address, at most 8192
            // entries: -EINVAL). No LDT is offered: clearing it (what Linux
            // does at boot) is done, a real one -ENOSYS (docs/abi.md).
            let (ents, ptr) = (
                op.nr_ents(),
                if op.nr_ents() != 0 {
                    op.linear_addr()
                } else {
                    0
                },
            );
            let guest_addr = !(1 << 47..ringvisor_abi::x86_64::HYPERVISOR_VIRT_END).contains(&ptr);
            if ptr % 4096 != 0 || (!d.is_32bit() && !guest_addr) || ents > 8192 {
                err(EINVAL)
            } else if ents == 0 {
                0
            } else {
                err(ENOSYS)
            }
        }
        MMUEXT_TLB_FLUSH_LOCAL => {
            crate::arch::x86_64::cpu::flush_tlb_nonglobal();
            0
        }
        // A vCPU mask, or all of them: every CPU in the domain's dirty
        // mask (a superset of where those vCPUs ran; the mask itself is
        // not read, as a bad pointer there changes nothing we flush).
        MMUEXT_TLB_FLUSH_MULTI | MMUEXT_TLB_FLUSH_ALL => {
            flush_tlb(d);
            0
        }
        MMUEXT_INVLPG_LOCAL | MMUEXT_INVLPG_MULTI | MMUEXT_INVLPG_ALL => {
            // A non-canonical address would #GP in invlpg; there is
            // nothing to drop.
            if is_canonical(op.linear_addr()) {
                if op.cmd == MMUEXT_INVLPG_LOCAL {
                    crate::arch::x86_64::cpu::flush_tlb_page(op.linear_addr());
                } else {
                    invlpg(d, op.linear_addr());
                }
            }
            0
        }
        _ => err(ENOSYS),
    }
}

/// Where frame `mfn` of the domain is in its P2M (d.p2m, the hypervisor's
/// own list of the domain's frames). The M2P says so, unless the guest
/// rewrote that entry (`MMU_MACHPHYS_UPDATE` takes any page number, as
/// Xen): then `d.p2m_moved` remembers it. Constant work either way.
fn find_slot(d: &Domain, mfn: u64) -> Option<usize> {
    let at = |slot: usize| (d.p2m.get(slot) == Some(&mfn)).then_some(slot);
    match d.p2m_moved.get(&mfn) {
        Some(&slot) => at(slot),
        None => at(usize::try_from(paging::m2p_get(mfn)).ok()?),
    }
}

/// `decrease_reservation` (give back frames: the list holds MFNs, as for
/// every PV guest), `increase_reservation` (take new frames: their MFNs
/// are written to the list) and `populate_physmap` (new frames for the
/// listed pseudo-physical pages, any page number as Xen, MFNs written
/// back); the domain never holds more than its maximum reservation. Returns how many
/// were done; stops at the first that cannot be.
pub fn reservation(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    cmd: u32,
    list: u64,
    n: u64,
) -> Ret {
    // A 64-bit guest's list holds 8-byte frame numbers, a 32-bit one's 4.
    let elem = if d.is_32bit() { 4 } else { 8 };
    use crate::domain::builder::INVALID_MFN;
    use ringvisor_abi::memory::*;
    // Constant work per extent (no P2M scan each time), so a call of
    // MAX_BATCH extents stays short with interrupts off: the pages held
    // are counted once, and the search for a free pseudo-physical page
    // goes on from where the last one was found.
    let mut held = d.p2m.iter().filter(|&&m| m != INVALID_MFN).count() as u64;
    let mut free_from = 0usize;
    for i in 0..n {
        let Some(at) = list.checked_add(i * elem) else {
            return if i == 0 { err(EFAULT) } else { i as Ret };
        };
        let Ok(arg) = read_elem(&space, at, elem) else {
            return if i == 0 { err(EFAULT) } else { i as Ret };
        };
        if cmd == XENMEM_DECREASE_RESERVATION {
            // Only a frame nothing holds: not mapped, not a page table.
            let mfn = arg;
            let ok = ft.get(mfn).is_some_and(|f| f.owner == d.id && f.unused());
            let (true, Some(pfn)) = (ok, find_slot(d, mfn)) else {
                return i as Ret;
            };
            d.p2m[pfn] = INVALID_MFN;
            d.p2m_moved.remove(&mfn);
            held -= 1;
            // No stale translation may outlive the frame's ownership.
            flush_tlb(d);
            ft.release(mfn);
            paging::m2p_set(mfn, paging::M2P_INVALID);
            let _ = paging::with_frames(|fa| fa.free(crate::mm::frame::Frame(mfn)));
            continue;
        }
        if held >= d.max_pages {
            return i as Ret;
        }
        // The hypervisor's slot for the frame (d.p2m) and the page number
        // the M2P gives it. populate_physmap: the page the guest names,
        // any number, as Xen for a PV guest (set_gpfn_from_mfn; the count
        // is what is bounded); its slot that page when free, else the
        // first free one (the M2P then says where it is: d.p2m_moved).
        // increase_reservation: the first free slot, also its page.
        let mut free_slot = |d: &Domain| {
            while d.p2m.get(free_from).is_some_and(|&m| m != INVALID_MFN) {
                free_from += 1;
            }
            free_from // at the end: a new page after the last
        };
        let (slot, page) = if cmd == XENMEM_POPULATE_PHYSMAP {
            match usize::try_from(arg) {
                Ok(a) if d.p2m.get(a) == Some(&INVALID_MFN) => (a, arg),
                _ => (free_slot(d), arg),
            }
        } else {
            let s = free_slot(d);
            (s, s as u64)
        };
        let Some(f) = FrameView::alloc_zeroed().map(|v| crate::mm::frame::Frame(v.mfn())) else {
            return i as Ret;
        };
        ft.assign(f.0, d.id, Kind::Normal);
        if slot >= d.p2m.len() {
            d.p2m.resize(slot + 1, INVALID_MFN);
        }
        d.p2m[slot] = f.0;
        if page != slot as u64 {
            d.p2m_moved.insert(f.0, slot);
        }
        held += 1;
        paging::m2p_set(f.0, page);
        if write_elem(&space, at, elem, f.0).is_err() {
            // The guest cannot learn the frame: take it back, so the
            // reservation does not grow by a page nobody can name.
            d.p2m[slot] = INVALID_MFN;
            d.p2m_moved.remove(&f.0);
            ft.release(f.0);
            paging::m2p_set(f.0, paging::M2P_INVALID);
            let _ = paging::with_frames(|fa| fa.free(f));
            return i as Ret; // extents done, as Xen counts them
        }
    }
    n as Ret
}

fn read_elem(space: &GuestSpace, at: u64, elem: u64) -> Result<u64, Fault> {
    if elem == 4 {
        space.read::<u32>(at).map(u64::from)
    } else {
        space.read_u64(at)
    }
}

fn write_elem(space: &GuestSpace, at: u64, elem: u64, v: u64) -> Result<(), Fault> {
    if elem == 4 {
        space.write(at, &(v as u32))
    } else {
        space.write(at, &v)
    }
}

/// Xen's `guest_handle_subrange_okay`: elements `first..=last` of `size`
/// bytes from `start` lie where a guest may point (the address of the
/// first, for a 64-bit guest, outside 2^47..HYPERVISOR_VIRT_END; the whole
/// range, for a 32-bit guest, below its hypervisor area).
fn subrange_ok(compat: bool, start: u64, first: u64, last: u64, size: u64) -> bool {
    let Some(count) = last.checked_sub(first).map(|c| c + 1) else {
        return true;
    };
    if count >= u64::MAX / size {
        return false;
    }
    let a = start.wrapping_add(first.wrapping_mul(size));
    if compat {
        a.checked_add(count * size)
            .is_some_and(|e| e <= ringvisor_abi::x86_32::HYPERVISOR_COMPAT_VIRT_START as u64)
    } else {
        !(1 << 47..ringvisor_abi::x86_64::HYPERVISOR_VIRT_END).contains(&a)
    }
}

/// `XENMEM_exchange` (Xen: memory_exchange): give back the `in` extents
/// and get as many pages in new ones, whose MFNs are written to `out`;
/// `nr_exchanged` says how far it got, and where a repeated call starts.
/// Xen's checks, in Xen's order (XSA-212: both lists are checked from
/// `nr_exchanged` on, so a call that starts "far into" a list cannot make
/// the hypervisor write outside the guest). Extents may be larger than a
/// page (up to order 12 for the initial domain, 9 for others; more is
/// `-EPERM`): an out extent of order N is 2^N machine-contiguous frames,
/// aligned to their size, below `2^address_bits` when `out.mem_flags`
/// asks (XENMEMF_address_bits) — how Linux gets DMA-able buffers
/// (swiotlb). Work goes in chunks of max(in, out) order; each chunk is
/// done whole or not at all (pages given back to the guest if it fails).
/// As Xen for a PV guest, each out entry holds on entry the page number
/// the extent becomes: the M2P maps its pages from there; the hypervisor's
/// own list (d.p2m) gives the new frames the slots the old ones left.
pub fn exchange(d: &mut Domain, ft: &FrameTable, space: GuestSpace, arg: u64) -> Ret {
    use ringvisor_abi::memory::*;
    let compat = d.is_32bit();
    // (start, nr, order, mem_flags, domid) of each list.
    let (inr, outr, done, elem, done_at) = if compat {
        let Ok(x) = space.read::<XenMemoryExchange32>(arg) else {
            return err(EFAULT);
        };
        let r = |r: XenMemoryReservation32| {
            (
                r.extent_start as u64,
                r.nr_extents as u64,
                r.extent_order,
                r.mem_flags,
                r.domid,
            )
        };
        (r(x.in_), r(x.out), x.nr_exchanged as u64, 4, 40)
    } else {
        let Ok(x) = space.read::<XenMemoryExchange>(arg) else {
            return err(EFAULT);
        };
        let r = |r: XenMemoryReservation| {
            (
                r.extent_start,
                r.nr_extents,
                r.extent_order,
                r.mem_flags,
                r.domid,
            )
        };
        (r(x.in_), r(x.out), x.nr_exchanged, 8, 64)
    };
    let (mut done, mut rc) = (done, 0);
    let max_order = if d.id == 0 { 12 } else { 9 };
    let (
        (in_start, in_nr, in_order, _, in_dom),
        (out_start, out_nr, out_order, out_flags, out_dom),
    ) = (inr, outr);
    let checked = (|| {
        if in_order.max(out_order) > max_order {
            return Err(EPERM);
        }
        if done > in_nr
            || in_dom != out_dom
            || (u64::MAX >> in_order) < in_nr
            || (u64::MAX >> out_order) < out_nr
            || in_nr << in_order != out_nr << out_order
        {
            return Err(EINVAL);
        }
        if done == in_nr {
            return Ok(false);
        }
        if !subrange_ok(compat, in_start, done, in_nr - 1, elem) {
            return Err(EFAULT);
        }
        let out_first = if in_order <= out_order {
            done >> (out_order - in_order)
        } else {
            done << (in_order - out_order)
        };
        if !subrange_ok(compat, out_start, out_first, out_nr - 1, elem) {
            return Err(EFAULT);
        }
        // Xen's propagate_node: a NUMA node (XENMEMF_node) past
        // MAX_NUMNODES (64) from the control domain, or an exact-node
        // request from another, is -EINVAL (one node here: node 0).
        let node = ((out_flags >> 8).wrapping_sub(1)) & 0xff;
        let exact = out_flags & (1 << 17) != 0;
        if node != 0xff && if d.privileged { node >= 64 } else { exact } {
            return Err(EINVAL);
        }
        if in_dom != DOMID_SELF && in_dom != d.id {
            return Err(EPERM);
        }
        // Constant work a call (ringvisor: no continuation; Xen would
        // preempt and continue): at most MAX_BATCH pages.
        if (in_nr - done) << in_order > MAX_BATCH {
            return Err(EINVAL);
        }
        Ok(true)
    })();
    match checked {
        Err(e) => rc = err(e),
        Ok(false) => {}
        Ok(true) => {
            let in_chunk = out_order.saturating_sub(in_order); // in extents per chunk: 2^in_chunk
            let out_chunk = in_order.saturating_sub(out_order);
            let bits = out_flags & 0xff; // XENMEMF_get_address_bits
            let limit = if bits == 0 || bits >= 64 {
                u64::MAX
            } else {
                1u64 << (bits - 12)
            };
            while done < in_nr {
                let first_out = (done >> in_chunk) << out_chunk;
                match exchange_chunk(
                    d,
                    ft,
                    &space,
                    elem,
                    (in_start, done, 1 << in_chunk, in_order),
                    (out_start, first_out, 1 << out_chunk, out_order),
                    limit,
                ) {
                    Ok(()) => done += 1 << in_chunk,
                    Err(e) => {
                        rc = err(e);
                        break;
                    }
                }
            }
        }
    }
    let w = if compat {
        space.write(arg + done_at, &(done as u32))
    } else {
        space.write(arg + done_at, &done)
    };
    if w.is_err() {
        return err(EFAULT);
    }
    rc
}

/// One chunk of `exchange`: `in_` = (list, first index, extents, order)
/// to give back, `out` the same for the new extents; machine frames below
/// `limit`. All or nothing.
fn exchange_chunk(
    d: &mut Domain,
    ft: &FrameTable,
    space: &GuestSpace,
    elem: u64,
    in_: (u64, u64, u64, u32),
    out: (u64, u64, u64, u32),
    limit: u64,
) -> Result<(), i32> {
    use crate::domain::builder::INVALID_MFN;
    use crate::mm::frame::Frame;
    let entry = |list: u64, i: u64| list.checked_add(i * elem).ok_or(EFAULT);
    // Take the pages given back out of the domain as they are checked, so
    // one named twice is refused the second time (Xen's steal_page).
    let mut stolen: alloc::vec::Vec<(u64, usize)> = alloc::vec::Vec::new();
    let give_back = |d: &mut Domain, ft: &FrameTable, stolen: &[(u64, usize)]| {
        for &(mfn, slot) in stolen {
            ft.assign(mfn, d.id, Kind::Normal);
            d.p2m[slot] = mfn;
        }
    };
    for i in 0..in_.2 {
        let Ok(base) =
            entry(in_.0, in_.1 + i).and_then(|at| read_elem(space, at, elem).map_err(|_| EFAULT))
        else {
            give_back(d, ft, &stolen);
            return Err(EFAULT);
        };
        for k in 0..1u64 << in_.3 {
            let mfn = base.wrapping_add(k);
            let slot = find_slot(d, mfn);
            let (true, Some(slot)) = (
                ft.get(mfn).is_some_and(|f| f.owner == d.id && f.unused()),
                slot,
            ) else {
                give_back(d, ft, &stolen);
                return Err(EINVAL);
            };
            ft.release(mfn);
            d.p2m[slot] = INVALID_MFN;
            stolen.push((mfn, slot));
        }
    }
    // The new extents: 2^order contiguous frames each, aligned, below limit.
    let pages = 1u64 << out.3;
    let mut fresh: alloc::vec::Vec<Frame> = alloc::vec::Vec::new();
    for _ in 0..out.2 {
        let f = paging::with_frames(|fa| fa.alloc_contiguous(pages, pages));
        match f {
            Some(f) if f.0.checked_add(pages).is_some_and(|end| end <= limit) => fresh.push(f),
            other => {
                paging::with_frames(|fa| {
                    for f in other.into_iter().chain(fresh.iter().copied()) {
                        for k in 0..pages {
                            let _ = fa.free(Frame(f.0 + k));
                        }
                    }
                });
                give_back(d, ft, &stolen);
                return Err(ENOMEM);
            }
        }
    }
    // Beyond here the chunk cannot fail (Xen: "Success!"), but for the
    // guest's lists: an unreadable or unwritable out entry is -EFAULT
    // after the chunk is done, as Xen.
    flush_tlb(d); // no stale translation of a frame given back survives
    for &(mfn, _) in &stolen {
        paging::m2p_set(mfn, paging::M2P_INVALID);
        d.p2m_moved.remove(&mfn);
        let _ = paging::with_frames(|fa| fa.free(Frame(mfn)));
    }
    let mut slots = stolen.iter().map(|&(_, slot)| slot);
    let mut rc = Ok(());
    for (j, f) in fresh.iter().enumerate() {
        let at = entry(out.0, out.1 + j as u64);
        let gpfn = at.and_then(|at| read_elem(space, at, elem).map_err(|_| EFAULT));
        for k in 0..pages {
            let mfn = f.0 + k;
            ft.assign(mfn, d.id, Kind::Normal);
            // A frame just taken from the pool, the domain's from here.
            if let Some(v) = FrameView::owned(ft, mfn) {
                v.zero();
            }
            let slot = slots.next().expect("as many pages out as in");
            d.p2m[slot] = mfn;
            let m2p = gpfn.map_or(slot as u64, |g| g.wrapping_add(k));
            if m2p != slot as u64 {
                d.p2m_moved.insert(mfn, slot);
            }
            paging::m2p_set(mfn, m2p);
        }
        if gpfn.is_err()
            || at
                .and_then(|at| write_elem(space, at, elem, f.0).map_err(|_| EFAULT))
                .is_err()
        {
            rc = Err(EFAULT);
        }
    }
    rc
}

/// Writable page tables (`vm_assist(writable_pagetables)`, Xen's ptwr):
/// a guest kernel writing a page-table entry directly takes a #PF (its
/// tables are mapped read-only); if the instruction is a plain 64-bit
/// store to one entry (`mov r64, m64`; `mov imm32, m64`; `xchg`; `lock
/// cmpxchg`), we apply it as `mmu_update` would, with every check, and
/// step past it. Anything else is bounced as the #PF it is. `cr2` is the
/// address written; `insn` the bytes at rip.
pub fn ptwr(d: &mut Domain, ft: &FrameTable, f: &mut TrapFrame, cr2: u64, insn: &[u8]) -> bool {
    use crate::pv::emulate::gpr;
    use crate::pv::insn::Src;
    // 0x40-0x4f are inc/dec in 32-bit code, not REX prefixes.
    if d.is_32bit()
        && insn
            .iter()
            .take_while(|b| matches!(b, 0xf0 | 0x26 | 0x2e | 0x36 | 0x3e | 0x66 | 0x40..=0x4f))
            .any(|b| (0x40..=0x4f).contains(b))
    {
        return false;
    }
    let Some(op) = decode_pte_store(insn) else {
        return false;
    };
    // The operand must lie inside one entry (a partial write of it is
    // applied to the whole entry, then checked as a whole).
    let (off, size) = ((cr2 & 7) as u32, op.size as u32);
    if off + size > 8 {
        return false;
    }
    let Ok(pa) = translate_as(d.v().cr3_table(), cr2 & !7, false, !d.is_32bit()) else {
        return false;
    };
    let mfn = pa >> 12;
    let level = match ft.get(mfn) {
        Some(i) if i.owner == d.id => match i.kind {
            Kind::Table(l) => l,
            _ => return false,
        },
        _ => return false,
    };
    let index = ((pa & 0xfff) / 8) as usize;
    if level > 1 && d.is_32bit() && compat_upper_slot(ft, mfn, level, index).is_err() {
        return false;
    }
    let cur = read_pte(mfn, index);
    let mask = if size == 8 {
        !0u64
    } else {
        (1u64 << (size * 8)) - 1
    };
    let old = (cur >> (off * 8)) & mask;
    let value = |f: &mut TrapFrame, s: Src| match s {
        Src::Reg { n, high8: true } => (*gpr(f, n - 4) >> 8) & 0xff,
        Src::Reg { n, high8: false } => *gpr(f, n) & mask,
        Src::Imm(v) => v & mask,
    };
    // Flags as the instruction sets them where a kernel looks (ZF/SF for
    // and/or, CF for btr/bts, ZF for cmpxchg); the others are left.
    const CF: u64 = 1 << 0;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    let sign = 1u64 << (size * 8 - 1);
    let logic_flags = |f: &mut TrapFrame, r: u64| {
        f.rflags &= !(CF | ZF | SF | 1 << 11);
        f.rflags |= if r == 0 { ZF } else { 0 } | if r & sign != 0 { SF } else { 0 };
    };
    let new = match op.kind {
        StoreKind::Mov(s) => value(f, s),
        StoreKind::Xchg(r) => value(f, Src::Reg { n: r, high8: false }),
        StoreKind::And(s) => {
            let r = old & value(f, s);
            logic_flags(f, r);
            r
        }
        StoreKind::Or(s) => {
            let r = old | value(f, s);
            logic_flags(f, r);
            r
        }
        StoreKind::Btr(s) | StoreKind::Bts(s) => {
            let bit = value(f, s) & (size as u64 * 8 - 1);
            f.rflags = (f.rflags & !CF) | (old >> bit) & 1;
            if matches!(op.kind, StoreKind::Btr(_)) {
                old & !(1 << bit)
            } else {
                old | 1 << bit
            }
        }
        StoreKind::Cmpxchg(r) => {
            if old != f.rax & mask {
                // No store: the accumulator gets the operand, ZF clear.
                f.rax = if size == 4 {
                    old
                } else {
                    (f.rax & !mask) | old
                };
                f.rflags &= !ZF;
                f.rip += op.len as u64;
                return true;
            }
            f.rflags |= ZF;
            value(f, Src::Reg { n: r, high8: false })
        }
    };
    let entry = (cur & !(mask << (off * 8))) | (new & mask) << (off * 8);
    if update_entry(d, ft, mfn, level, index, entry) != 0 {
        return false;
    }
    flush_tlb(d);
    if let StoreKind::Xchg(r) = op.kind {
        let g = gpr(f, r);
        *g = if size == 4 || size == 8 {
            old
        } else {
            (*g & !mask) | old
        };
    }
    f.rip += op.len as u64;
    true
}

/// Take a reference on `mfn` as a top-level table (validating it if it is
/// not one yet): for a vCPU's context from `VCPUOP_initialise`.
pub fn get_root(d: &Domain, ft: &FrameTable, mfn: u64) -> Result<(), i32> {
    get_table(d, ft, mfn, 4)
}

/// As get_root, for a table of `level` (a 32-bit guest's PAE L3).
pub fn get_table_at(d: &Domain, ft: &FrameTable, mfn: u64, level: u8) -> Result<(), i32> {
    get_table(d, ft, mfn, level)
}

/// Drop a reference get_table_at took.
pub fn put_root(d: &Domain, ft: &FrameTable, mfn: u64, level: u8) {
    put_entry(ft, d.id, 0, level + 1, mfn << 12 | PTE_P);
}

/// `mov %reg, %cr3` from the guest kernel: a new kernel base pointer
/// (a 32-bit guest's CR3 folds bits 32+ of the frame number into bits
/// 0-11: extended-cr3, Xen's xen_cr3_to_pfn).
pub fn write_cr3(d: &mut Domain, ft: &FrameTable, cr3: u64) -> bool {
    let mfn = if d.is_32bit() {
        ringvisor_abi::x86_32::xen_cr3_to_pfn(cr3 as u32) as u64
    } else {
        (cr3 & PTE_ADDR) >> 12
    };
    new_baseptr(d, ft, mfn).is_ok()
}
