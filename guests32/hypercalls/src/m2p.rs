//! The compat M2P (Xen: `compat_machine_to_phys_mapping`, mapped by
//! `init_xen_pae_l2_slots` into the L2 of PAE L3 slot 3, type
//! `PGT_pae_xen_l2`; `compat_arch_memory_op` answers
//! `XENMEM_machphys_mapping`):
//!
//! - `XENMEM_machphys_mapping` (12-byte struct): v_start 0xF5800000 (the
//!   domain's hypervisor start), v_end 0xFFE00000
//!   (`MACH2PHYS_COMPAT_VIRT_END`), max_mfn 0x297FFFF (the window's
//!   entries - 1), the word after it untouched;
//! - reading the table at v_start + 4 * mfn for several of the guest's own
//!   frames (start_info.mfn_list) gives their pseudo-physical page numbers;
//! - a write there faults (#PF, present | write, supervisor);
//! - `mmu_update` of the slot-3 L2's entries from slot 428 up: `-EPERM`
//!   (Xen's mod_l2_entry, "L2 update in Xen-private area"); of slot 427
//!   (the guest's, below): 0; of L3 slot 3: `-EINVAL` (mod_l3_entry);
//! - a plain write to that L2 (its read-only mapping, emulated as
//!   `mmu_update`): slot 428 #PF, slot 427 done;
//! - `MMUEXT_PIN_L2_TABLE` of that L2: `-EINVAL` (its type is
//!   `pae_xen_l2`, not a plain L2).
//!
//! exchange.rs and mm.rs check the table again after the calls that change
//! it ([`entry`]).

use core::ptr::{read_volatile, write_volatile};

use pvguest32::abi;
use pvguest32::cell::GuestCell;
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_rc, fail};
use pvguest32::start_info;
use pvguest32::traps::catch;
use pvguest32::va;

use crate::common::*;

/// `MACH2PHYS_COMPAT_VIRT_END`.
const V_END: u32 = abi::x86_32::MACH2PHYS_COMPAT_VIRT_END;
/// The first hypervisor slot of the slot-3 L2 (0xF5800000 >> 21 & 511).
const FIRST_XEN_SLOT: u32 = (HV_START >> 21) & 511;

/// The compat M2P's entry for `mfn`, read at HV_START + 4 * mfn: the value,
/// or the #PF's error code.
pub fn entry(mfn: u32) -> Result<u32, u32> {
    static V: GuestCell<u32> = GuestCell::new(0);
    let at = HV_START.wrapping_add(mfn.wrapping_mul(4));
    // SAFETY: a read of the hypervisor's read-only table (or the #PF).
    catch(|| V.set(unsafe { read_volatile(at as usize as *const u32) }))
        .map(|()| V.get())
        .map_err(|t| t.error_code)
}

pub fn run(nr_pages: u32) {
    let mut m = [0xdead_beefu32; 4];
    // SAFETY: writes the 12-byte compat xen_machphys_mapping.
    let rc = unsafe { hc::memory_op(abi::XENMEM_MACHPHYS_MAPPING, va(m.as_mut_ptr())) };
    check_rc("XENMEM_machphys_mapping (32-bit): 0", rc, 0);
    check(
        "  ... v_start 0xF5800000, v_end 0xFFE00000, max_mfn 0x297ffff, 12 bytes",
        m == [HV_START, V_END, (V_END - HV_START) / 4 - 1, 0xdead_beef],
        format_args!("{:#x} {:#x} {:#x} {:#x}", m[0], m[1], m[2], m[3]),
    );
    // SAFETY: refused: nothing is written.
    let rc = unsafe { hc::memory_op(abi::XENMEM_MACHPHYS_MAPPING, UNMAPPED) };
    check_rc(
        "XENMEM_machphys_mapping, unmapped buffer: -EFAULT",
        rc,
        EFAULT,
    );

    // The guest's own frames: first, second, middle page and its L3's
    // (the top pages are the other cases' to give back and take again).
    let si = start_info::start_info();
    let p2m = si.mfn_list as usize as *const u32;
    let l3_pfn = (si.pt_base - pvguest32::VIRT_BASE) >> 12;
    for pfn in [0, 1, nr_pages / 2, l3_pfn] {
        // SAFETY: the P2M list is mapped, nr_pages 4-byte entries.
        let mfn = unsafe { read_volatile(p2m.add(pfn as usize)) };
        let got = entry(mfn);
        check(
            "compat M2P at v_start + 4 * mfn (from mfn_list) = pfn",
            got == Ok(pfn),
            format_args!("pfn {pfn:#x} mfn {mfn:#x}: {got:x?}"),
        );
    }

    // SAFETY: p2m[0], mapped.
    let mfn0 = unsafe { read_volatile(p2m) };
    let at = HV_START + mfn0 * 4;
    // SAFETY: the write faults (read-only); if it did not, it rewrites the
    // value read just before.
    let r = catch(|| unsafe { write_volatile(at as usize as *mut u32, 0) });
    check(
        "a write to the compat M2P: #PF, present | write, supervisor; cr2 the address",
        matches!(r, Err(t) if t.vector == 14 && t.error_code == 3) && start_info::cr2() == at,
        format_args!(
            "{:?} cr2 {:#x}",
            r.map_err(|t| (t.vector, t.error_code)),
            start_info::cr2()
        ),
    );
    let e = entry(mfn0);
    check(
        "  ... the entry is unchanged (pfn 0)",
        e == Ok(0),
        format_args!("{e:x?}"),
    );

    // The slot-3 L2: its hypervisor slots are not the guest's.
    let [l3e, l2e, _] = start_info::walk(HV_START);
    let (Some(l3e), Some(l2e)) = (l3e, l2e) else {
        fail("the slot-3 L2 of the PAE L3", format_args!("not found"));
        return;
    };
    let l2 = (l3e.val & PTE_ADDR) >> 12;
    check(
        "L3 slot 3 present; its L2's slot 428 a present 2 MiB read-only supervisor entry",
        l2e.val & 0x87 == 0x81,
        format_args!("l3e {:#x} l2e {:#x}", l3e.val, l2e.val),
    );
    check_rc(
        "mmu_update of the slot-3 L2 at slot 428 (the compat M2P): -EPERM",
        mmu1(l2e.maddr, 0),
        EPERM,
    );
    check_rc(
        "mmu_update of the slot-3 L2 at slot 511: -EPERM",
        mmu1((l2 << 12) + 511 * 8, 0),
        EPERM,
    );
    let below = (l2 << 12) + u64::from(FIRST_XEN_SLOT - 1) * 8;
    let [_, b, _] = start_info::walk(HV_START - (2 << 20));
    check_rc(
        "mmu_update of the slot-3 L2 at slot 427 (the guest's: unchanged): 0",
        mmu1(below, b.map_or(0, |e| e.val)),
        0,
    );
    check_rc(
        "mmu_update of L3 slot 3: -EINVAL (Xen's mod_l3_entry)",
        mmu1(l3e.maddr, l3e.val),
        EINVAL,
    );
    // A plain write through the L2's read-only mapping (the bootstrap
    // region's): with VMASST_TYPE_writable_pagetables, emulated as
    // mmu_update (ptwr), so refused there too.
    check_rc(
        "vm_assist enable writable_pagetables",
        hc::vm_assist(abi::VMASST_CMD_ENABLE, abi::VMASST_TYPE_WRITABLE_PAGETABLES),
        0,
    );
    if let Some(l2_va) = start_info::mfn_to_virt(l2) {
        let slot = l2_va + FIRST_XEN_SLOT * 8;
        // SAFETY: the write faults (a page table, mapped read-only) and is
        // refused; if it were applied, it would unmap the M2P's first
        // 2 MiB, which the next check sees.
        let r = catch(|| unsafe { write_volatile(slot as usize as *mut u32, 0) });
        let e = entry(mfn0);
        check(
            "a write to the slot-3 L2 at slot 428 (emulated): #PF, the M2P still mapped",
            matches!(r, Err(t) if t.vector == 14) && e == Ok(0),
            format_args!(
                "{:?}, entry {e:x?}",
                r.map_err(|t| (t.vector, t.error_code))
            ),
        );
        let below = l2_va + (FIRST_XEN_SLOT - 1) * 8;
        // SAFETY: writes slot 427's low half with the value it has.
        let r = catch(|| unsafe {
            write_volatile(
                below as usize as *mut u32,
                read_volatile(below as usize as *const u32),
            )
        });
        check(
            "  ... at slot 427 (the guest's, its own value): done",
            r.is_ok(),
            format_args!("{:?}", r.map_err(|t| (t.vector, t.error_code))),
        );
    } else {
        fail(
            "the slot-3 L2's mapping",
            format_args!("not in the bootstrap region"),
        );
    }
    check_rc(
        "vm_assist disable writable_pagetables",
        hc::vm_assist(
            abi::VMASST_CMD_DISABLE,
            abi::VMASST_TYPE_WRITABLE_PAGETABLES,
        ),
        0,
    );
    // SAFETY: refused: the frame is typed pae_xen_l2.
    let rc = unsafe { hc::mmuext1(abi::MMUEXT_PIN_L2_TABLE, l2 as u32, 0) };
    check_rc(
        "MMUEXT_PIN_L2_TABLE of the slot-3 L2 (pae_xen_l2): -EINVAL",
        rc,
        EINVAL,
    );
    // SAFETY: p2m[1], mapped.
    let mfn1 = unsafe { read_volatile(p2m.add(1)) };
    let e = entry(mfn1);
    check(
        "  ... and the M2P still reads (pfn 1)",
        e == Ok(1),
        format_args!("{e:x?}"),
    );
}
