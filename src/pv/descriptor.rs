//! The guest's own GDT: `set_gdt` and `update_descriptor` (Xen:
//! `arch/x86/pv/descriptor-tables.c`).
//!
//! A PV guest owns GDT entries 0..0x1c00 (14 pages); the hypervisor's own
//! entries start at 0xe000 (see `arch::x86_64::gdt`). Every descriptor a
//! guest installs is checked (Xen: check_descriptor): not-present entries
//! are harmless; code and data segments are installed with DPL 3, the ring
//! the guest kernel really runs in (a guest kernel writes DPL 0 for its own
//! segments, as on bare metal: like Xen we raise it, so no ring-0 segment
//! ever reaches the GDT); gates, TSS and LDT descriptors are refused with
//! `-EINVAL`: they are how a guest would reach ring 0.

#![deny(unsafe_code)]

use alloc::vec::Vec;

use ringvisor_abi::errno::*;

use crate::arch::x86_64::gdt::{self, FIRST_RESERVED_GDT_ENTRY};
use crate::domain::Domain;
use crate::mm::frametable::{FrameInfo, FrameTable, Kind};
use crate::mm::view::FrameView;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};

const SEG_P: u64 = 1 << 47;
const SEG_S: u64 = 1 << 44;

const SEG_DPL: u64 = 3 << 45;

/// The descriptor as it may go into the GDT, or None if it may not. A
/// 32-bit guest's kernel runs in ring 1: its segments may have DPL 1 (a
/// DPL 0 one is raised to 1), and it may not have 64-bit code segments.
pub fn check_descriptor(desc: u64, compat: bool) -> Option<u64> {
    if desc & SEG_P == 0 {
        return Some(desc); // a not-present descriptor only ever faults
    }
    if desc & SEG_S != 0 {
        if !compat {
            return Some(desc | SEG_DPL); // code or data: DPL 3
        }
        let long_code = desc & (1 << 43) != 0 && desc & (1 << 53) != 0;
        if long_code {
            return None;
        }
        let dpl = (desc >> 45) & 3;
        return Some(if dpl == 0 { desc | 1 << 45 } else { desc });
    }
    // System descriptors: only type 0 (used as the upper half of a
    // 16-byte descriptor), which the CPU never loads.
    ((desc >> 40) & 0xf == 0).then_some(desc)
}

/// The base of a selector the guest may load into a data segment register:
/// null, the flat ring-3 data selector, or a present data segment of its
/// own GDT (DPL 3 by construction).
pub fn data_selector_base(v: &crate::domain::vcpu::Vcpu, sel: u16) -> Option<u64> {
    if sel & !3 == 0 || sel | 3 == ringvisor_abi::x86_64::FLAT_RING3_DS32 {
        return Some(0);
    }
    if sel & 4 != 0 {
        return None; // no LDT support
    }
    let desc = *v.gdt.get((sel >> 3) as usize)?;
    let data = desc & SEG_P != 0 && desc & SEG_S != 0 && desc & (1 << 43) == 0;
    data.then_some(((desc >> 16) & 0xff_ffff) | ((desc >> 56) & 0xff) << 24)
}

pub fn set_gdt(d: &mut Domain, ft: &FrameTable, space: GuestSpace, list: u64, entries: u64) -> Ret {
    if entries > FIRST_RESERVED_GDT_ENTRY as u64 {
        return err(EINVAL);
    }
    let mut frames = Vec::new();
    for i in 0..entries.div_ceil(512) {
        let Some(Ok(mfn)) = list.checked_add(i * 8).map(|at| space.read_u64(at)) else {
            return err(EFAULT);
        };
        frames.push(mfn);
    }
    let vi = d.cur;
    let r = install_gdt(d, ft, vi, &frames, entries);
    if r == 0 {
        gdt::load_guest_entries(&d.v().gdt);
    }
    r
}

/// Make `frames` (holding `entries` descriptors) vCPU `vi`'s GDT.
pub fn install_gdt(
    d: &mut Domain,
    ft: &FrameTable,
    vi: usize,
    frames: &[u64],
    entries: u64,
) -> Ret {
    if entries > FIRST_RESERVED_GDT_ENTRY as u64 || frames.len() as u64 != entries.div_ceil(512) {
        return err(EINVAL);
    }
    let mut views = [None; FIRST_RESERVED_GDT_ENTRY.div_ceil(512)];
    for (view, &mfn) in views.iter_mut().zip(frames) {
        *view = FrameView::owned_if(ft, mfn, |f| {
            f.owner == d.id && (f.kind == Kind::Gdt || (f.kind == Kind::Normal && f.writable == 0))
        });
        if view.is_none() {
            return err(EINVAL);
        }
    }
    // Up to 56 KiB per vCPU on the heap: a clear -ENOMEM when it is full,
    // never an allocation failure in the hypervisor.
    let mut copy = Vec::new();
    if copy.try_reserve_exact(entries as usize).is_err() {
        return err(ringvisor_abi::errno::ENOMEM);
    }
    for i in 0..entries as usize {
        let Some(frame) = views[i / 512] else {
            return err(EINVAL); // not reached: every frame was checked
        };
        match check_descriptor(frame.read(i % 512), d.is_32bit()) {
            Some(desc) => copy.push(desc),
            None => return err(EINVAL),
        }
    }
    // The frames hold what the CPU will use (DPLs raised).
    for (i, &desc) in copy.iter().enumerate() {
        if let Some(frame) = views[i / 512] {
            frame.write(i % 512, desc);
        }
    }
    // Type the new frames, each in one step with its check again (a grant
    // mapping by another domain may have made one writable since the
    // check above); a refusal undoes what this call typed.
    let mut typed = 0u32; // bit i: frames[i] was made a GDT frame here
    for (i, &mfn) in frames.iter().enumerate() {
        let r = ft.with(mfn, |f| match f.kind {
            Kind::Gdt if f.owner == d.id => Some(false),
            Kind::Normal if f.owner == d.id && f.writable == 0 => {
                f.kind = Kind::Gdt;
                Some(true)
            }
            _ => None,
        });
        match r.flatten() {
            Some(true) => typed |= 1 << i,
            Some(false) => {}
            None => {
                for (j, &m) in frames.iter().enumerate() {
                    if typed & 1 << j != 0 {
                        ft.with(m, |f| f.kind = Kind::Normal);
                    }
                }
                return err(EINVAL);
            }
        }
    }
    // A writable translation may linger in the TLB from before: flush now
    // that the frames are read-only descriptor tables.
    crate::pv::mm::flush_tlb(d);
    let old = core::mem::replace(&mut d.vcpus[vi].gdt_frames, frames.to_vec());
    d.vcpus[vi].gdt = copy;
    // The frames this vCPU no longer uses are ordinary memory again, but
    // only those no other vCPU of the domain still has in its GDT (a frame
    // may be in several: Xen counts a type reference per vCPU) and that
    // are still this domain's GDT frames: never another type's record.
    for mfn in old {
        if d.vcpus.iter().any(|v| v.gdt_frames.contains(&mfn)) {
            continue;
        }
        ft.with(mfn, |f| {
            if f.kind == Kind::Gdt && f.owner == d.id {
                f.kind = Kind::Normal;
            }
        });
    }
    0
}

pub fn update_descriptor(d: &mut Domain, ft: &FrameTable, maddr: u64, desc: u64) -> Ret {
    if !maddr.is_multiple_of(8) {
        return err(EINVAL);
    }
    let mfn = maddr >> 12;
    let ok = |f: &FrameInfo| f.owner == d.id && matches!(f.kind, Kind::Gdt | Kind::Normal);
    let Some(frame) = FrameView::owned_if(ft, mfn, ok) else {
        return err(EPERM);
    };
    let Some(desc) = check_descriptor(desc, d.is_32bit()) else {
        return err(EINVAL);
    };
    let slot = ((maddr & 0xfff) / 8) as usize;
    frame.write(slot, desc);
    let v = d.v_mut();
    if let Some(page) = v.gdt_frames.iter().position(|&f| f == mfn) {
        let index = page * 512 + slot;
        if index < v.gdt.len() {
            v.gdt[index] = desc;
            gdt::set_guest_entry(index, desc);
        }
    }
    0
}
