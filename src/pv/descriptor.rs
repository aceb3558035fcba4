//! The guest's own GDT: `set_gdt` and `update_descriptor` (Xen:
//! `arch/x86/pv/descriptor-tables.c`).
//!
//! A PV guest owns GDT entries 0..0x1c00 (14 pages); the hypervisor's own
//! entries start at 0xe000 (see `arch::x86_64::gdt`). Every descriptor a
//! guest installs is checked: only not-present entries and code/data
//! segments of DPL 3 (the ring its kernel really runs in). No ring-0
//! segments, no gates, no TSS/LDT descriptors: those would let a guest
//! reach ring 0. Xen quietly raises a low DPL to 3; we refuse it with
//! `-EINVAL`, so the guest learns at once.

use alloc::vec::Vec;

use ringvisor_abi::errno::*;

use crate::arch::x86_64::gdt::{self, FIRST_RESERVED_GDT_ENTRY};
use crate::domain::Domain;
use crate::mm::frametable::{FrameTable, Kind};
use crate::mm::paging::phys_to_virt;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};

const SEG_P: u64 = 1 << 47;
const SEG_S: u64 = 1 << 44;

/// May a guest have this descriptor in its GDT?
pub fn descriptor_ok(desc: u64) -> bool {
    if desc & SEG_P == 0 {
        return true; // a not-present descriptor only ever faults
    }
    let dpl = (desc >> 45) & 3;
    let type_ = (desc >> 40) & 0xf;
    if desc & SEG_S == 0 {
        // System descriptors: only type 0 (also the upper half of a
        // 16-byte descriptor), which is harmless.
        return type_ == 0 && dpl == 3;
    }
    dpl == 3
}

fn frame_u64s(mfn: u64) -> &'static mut [u64; 512] {
    // SAFETY: `mfn` is a frame of the calling domain (checked through the
    // frame table), RAM inside the direct map.
    unsafe { &mut *(phys_to_virt(mfn << 12) as *mut [u64; 512]) }
}

pub fn set_gdt(d: &mut Domain, ft: &mut FrameTable, space: GuestSpace, list: u64, entries: u64) -> Ret {
    if entries > FIRST_RESERVED_GDT_ENTRY as u64 {
        return err(EINVAL);
    }
    let nr_frames = entries.div_ceil(512) as usize;
    let mut frames = Vec::with_capacity(nr_frames);
    for i in 0..nr_frames {
        let Ok(mfn) = space.read_u64(list + i as u64 * 8) else { return err(EFAULT) };
        let ok = ft.get(mfn).is_some_and(|f| {
            f.owner == d.id && (f.kind == Kind::Gdt || (f.kind == Kind::Normal && f.writable == 0))
        });
        if !ok {
            return err(EINVAL);
        }
        frames.push(mfn);
    }
    let mut copy = Vec::with_capacity(entries as usize);
    for i in 0..entries as usize {
        let desc = frame_u64s(frames[i / 512])[i % 512];
        if !descriptor_ok(desc) {
            return err(EINVAL);
        }
        copy.push(desc);
    }
    let v = &mut d.vcpus[0];
    for &old in &v.gdt_frames {
        if let Some(f) = ft.get_mut(old) {
            f.kind = Kind::Normal;
        }
    }
    for &mfn in &frames {
        ft.get_mut(mfn).unwrap().kind = Kind::Gdt;
    }
    v.gdt_frames = frames;
    v.gdt = copy;
    gdt::load_guest_entries(&v.gdt);
    0
}

pub fn update_descriptor(d: &mut Domain, ft: &mut FrameTable, maddr: u64, desc: u64) -> Ret {
    if maddr % 8 != 0 {
        return err(EINVAL);
    }
    let mfn = maddr >> 12;
    let ok = ft.get(mfn).is_some_and(|f| f.owner == d.id && matches!(f.kind, Kind::Gdt | Kind::Normal));
    if !ok {
        return err(EPERM);
    }
    if !descriptor_ok(desc) {
        return err(EINVAL);
    }
    let slot = ((maddr & 0xfff) / 8) as usize;
    frame_u64s(mfn)[slot] = desc;
    let v = &mut d.vcpus[0];
    if let Some(page) = v.gdt_frames.iter().position(|&f| f == mfn) {
        let index = page * 512 + slot;
        if index < v.gdt.len() {
            v.gdt[index] = desc;
            gdt::set_guest_entry(index, desc);
        }
    }
    0
}
