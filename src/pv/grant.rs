//! Grant tables, v1 and v2 (Xen: `common/grant_table.c`), for a domain's
//! own grants: `setup_table`, `query_size`, `set_version`, `get_version`,
//! `get_status_frames`, `map_grant_ref` (host mappings by address or by
//! PTE, device mappings), `unmap_grant_ref`, `unmap_and_replace`.
//!
//! # How it is held
//!
//! - The grant frames are the hypervisor's, shared with the domain: it
//!   may map them writable, and a hold of one writable mapping keeps them
//!   from ever becoming page tables or being given back (Xen shares them
//!   with `PGT_writable_page`). The v2 status frames are `ReadOnly`: the
//!   guest may map them read-only.
//! - A map takes the references a mapping of the frame takes (one per
//!   host mapping and one per device mapping, writable ones as writable),
//!   held by its handle (`Map`) rather than by the PTE, which carries
//!   Xen's `_PAGE_GNTTAB` (bit 62) so that an ordinary update can never
//!   drop them: only `unmap_grant_ref` removes a grant PTE, and only after
//!   checking it still maps that frame with those rights (XSA-224, -234).
//! - GTF_reading/GTF_writing in the granter's entry (v1) or status word
//!   (v2) say whether any map of that grant is live.
//!
//! Grants between domains, `copy`, `transfer` and `swap_grant_ref` are not
//! offered (docs/abi.md): a map naming another domain answers
//! GNTST_permission_denied, the others -ENOSYS.

#![deny(unsafe_code)]

use ringvisor_abi::errno::*;
use ringvisor_abi::grant_table::*;
use ringvisor_abi::Pod;

use crate::domain::Domain;
use crate::mm::frametable::{FrameTable, Kind};
use crate::mm::paging;
use crate::mm::view::FrameView;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};
use crate::pv::mm;

/// Xen's default `max_grant_frames`.
pub const MAX_FRAMES: usize = 64;
/// Map handles a domain may hold at once.
const MAX_MAPS: usize = 4096;
/// Structures one call may carry (Xen splits longer batches with
/// continuations; ringvisor asks the guest to).
const MAX_COUNT: u64 = 512;
/// Entries 0-7 are the toolstack's (console, xenstore): kept across a
/// version change, and may stay in use through one.
const RESERVED_ENTRIES: usize = 8;

use crate::domain::grant::free_frame;
pub use crate::domain::grant::{GrantTable, Map};

/// A grant frame of the domain: the frame table records it as the
/// domain's from `new_frame` to `free_frame`, and the hypervisor's hold
/// (one writable mapping, or the read-only kind) keeps the guest from
/// giving it back.
fn frame(mfn: u64) -> FrameView {
    FrameView::owned(crate::mm::frametable::frames(), mfn).expect("a grant frame is its domain's")
}

fn read_at<T: Pod>(mfn: u64, offset: usize) -> T {
    let mut v = T::zeroed();
    frame(mfn).read_bytes(offset, ringvisor_abi::as_bytes_mut(&mut v));
    v
}

fn write_at<T: Pod>(mfn: u64, offset: usize, v: &T) {
    frame(mfn).write_bytes(offset, ringvisor_abi::as_bytes(v));
}

/// A new zeroed frame for the domain's table.
fn new_frame(d: &Domain, ft: &FrameTable, kind: Kind) -> Option<u64> {
    let f = crate::mm::frame::Frame(FrameView::alloc_zeroed()?.mfn());
    ft.assign(f.0, d.id, kind);
    if kind == Kind::Normal {
        // The hypervisor's hold: one writable mapping, for ever.
        ft.with(f.0, |i| (i.mapped, i.writable) = (1, 1));
    }
    paging::m2p_set(f.0, paging::M2P_INVALID);
    Some(f.0)
}

/// Status frames needed for `shared` v2 frames.
fn status_frames_for(shared: usize) -> usize {
    (shared * V2_PER_FRAME).div_ceil(STATUS_PER_FRAME)
}

/// Grow to `n` shared frames (and their status frames under v2).
fn grow(d: &mut Domain, ft: &FrameTable, n: usize) -> bool {
    while d.gnttab.shared.len() < n {
        let Some(f) = new_frame(d, ft, Kind::Normal) else {
            return false;
        };
        d.gnttab.shared.push(f);
    }
    if d.gnttab.version == 2 {
        while d.gnttab.status.len() < status_frames_for(d.gnttab.shared.len()) {
            let Some(f) = new_frame(d, ft, Kind::ReadOnly) else {
                return false;
            };
            d.gnttab.status.push(f);
        }
    }
    true
}

/// The domain the guest names: only itself (or DOMID_SELF) here.
fn own(d: &Domain, dom: u16) -> bool {
    dom == ringvisor_abi::xen::DOMID_SELF || dom == d.id
}

/// The flags word of entry `gref` (v1: in the entry; v2: the header) and
/// where its reading/writing bits live.
fn entry_flags(gt: &GrantTable, gref: usize) -> (u16, u16, u64) {
    if gt.version == 2 {
        let e: GrantEntryV2 = read_at(gt.shared[gref / V2_PER_FRAME], (gref % V2_PER_FRAME) * 16);
        (e.flags, e.domid, e.frame)
    } else {
        let e: GrantEntryV1 = read_at(gt.shared[gref / V1_PER_FRAME], (gref % V1_PER_FRAME) * 8);
        (e.flags, e.domid, e.frame as u64)
    }
}

/// Set GTF_reading/GTF_writing of `gref` from the live maps of it.
fn update_status(gt: &GrantTable, gref: u32) {
    let live = gt.maps.iter().flatten().filter(|m| m.gref == gref);
    let (mut reading, mut writing) = (false, false);
    for m in live {
        reading = true;
        writing |= !m.readonly;
    }
    let bits = if reading { GTF_READING } else { 0 } | if writing { GTF_WRITING } else { 0 };
    let gref = gref as usize;
    let (mfn, off) = if gt.version == 2 {
        (
            gt.status[gref / STATUS_PER_FRAME],
            (gref % STATUS_PER_FRAME) * 2,
        )
    } else {
        (gt.shared[gref / V1_PER_FRAME], (gref % V1_PER_FRAME) * 8)
    };
    let old: u16 = read_at(mfn, off);
    write_at(mfn, off, &((old & !(GTF_READING | GTF_WRITING)) | bits));
}

/// Take the references one mapping of `mfn` takes (as an L1 entry does).
fn take(ft: &FrameTable, mfn: u64, rw: bool) -> bool {
    ft.with(mfn, |f| {
        match (f.mapped.checked_add(1), f.writable.checked_add(rw as u32)) {
            (Some(m), Some(w)) => {
                (f.mapped, f.writable) = (m, w);
                true
            }
            _ => false,
        }
    })
    .unwrap_or(false)
}

fn drop_ref(ft: &FrameTable, mfn: u64, rw: bool) {
    ft.with(mfn, |f| {
        f.mapped = f.mapped.saturating_sub(1);
        if rw {
            f.writable = f.writable.saturating_sub(1);
        }
    });
}

/// `HYPERVISOR_grant_table_op(cmd, arg, count)`.
pub fn op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    cmd: u64,
    arg: u64,
    count: u64,
) -> Ret {
    let count = count as u32 as u64;
    let one = |c: u64| if c == 1 { Ok(()) } else { Err(err(EINVAL)) };
    match cmd as u32 {
        GNTTABOP_SETUP_TABLE => one(count).map_or_else(|e| e, |()| setup_table(d, ft, space, arg)),
        GNTTABOP_QUERY_SIZE => one(count).map_or_else(|e| e, |()| query_size(d, space, arg)),
        GNTTABOP_SET_VERSION => one(count).map_or_else(|e| e, |()| set_version(d, ft, space, arg)),
        GNTTABOP_GET_VERSION => one(count).map_or_else(|e| e, |()| get_version(d, space, arg)),
        GNTTABOP_GET_STATUS_FRAMES => {
            one(count).map_or_else(|e| e, |()| get_status_frames(d, space, arg))
        }
        GNTTABOP_MAP_GRANT_REF | GNTTABOP_UNMAP_GRANT_REF | GNTTABOP_UNMAP_AND_REPLACE => {
            if count > MAX_COUNT {
                return err(EINVAL);
            }
            let size = match cmd as u32 {
                GNTTABOP_MAP_GRANT_REF => 32,
                _ => 24,
            };
            for i in 0..count {
                let Some(at) = arg.checked_add(i * size) else {
                    return err(EFAULT);
                };
                let r = match cmd as u32 {
                    GNTTABOP_MAP_GRANT_REF => map_one(d, ft, space, at),
                    GNTTABOP_UNMAP_GRANT_REF => unmap_one(d, ft, space, at),
                    _ => replace_one(d, ft, space, at),
                };
                if r != 0 {
                    return r;
                }
            }
            0
        }
        _ => err(ENOSYS),
    }
}

fn setup_table(d: &mut Domain, ft: &FrameTable, space: GuestSpace, arg: u64) -> Ret {
    // The two widths differ in the handle and the frame number's size.
    let (dom, nr, list, wide) = if d.is_32bit() {
        let Ok(s) = space.read::<GnttabSetupTable32>(arg) else {
            return err(EFAULT);
        };
        (s.dom, s.nr_frames, s.frame_list as u64, false)
    } else {
        let Ok(s) = space.read::<GnttabSetupTable>(arg) else {
            return err(EFAULT);
        };
        (s.dom, s.nr_frames, s.frame_list, true)
    };
    let status = if !own(d, dom) {
        GNTST_PERMISSION_DENIED
    } else if nr as usize > MAX_FRAMES || !grow(d, ft, (nr as usize).max(1)) {
        GNTST_GENERAL_ERROR
    } else {
        let mut st = GNTST_OKAY;
        for i in 0..nr as usize {
            let mfn = d.gnttab.shared[i];
            let w = if wide {
                list.checked_add(i as u64 * 8)
                    .map(|at| space.write(at, &mfn))
            } else {
                list.checked_add(i as u64 * 4)
                    .map(|at| space.write(at, &(mfn as u32)))
            };
            if !matches!(w, Some(Ok(()))) {
                st = GNTST_BAD_VIRT_ADDR;
            }
        }
        st
    };
    match space.write(arg + 8, &status) {
        Ok(()) => 0,
        Err(_) => err(EFAULT),
    }
}

fn query_size(d: &mut Domain, space: GuestSpace, arg: u64) -> Ret {
    let Ok(mut q) = space.read::<GnttabQuerySize>(arg) else {
        return err(EFAULT);
    };
    if own(d, q.dom) {
        q.nr_frames = d.gnttab.shared.len().max(1) as u32;
        q.max_nr_frames = MAX_FRAMES as u32;
        q.status = GNTST_OKAY;
    } else {
        q.status = GNTST_PERMISSION_DENIED;
    }
    space.write(arg, &q).map_or(err(EFAULT), |()| 0)
}

fn get_version(d: &mut Domain, space: GuestSpace, arg: u64) -> Ret {
    let Ok(mut g) = space.read::<GnttabGetVersion>(arg) else {
        return err(EFAULT);
    };
    if !own(d, g.dom) {
        return err(EPERM);
    }
    g.version = d.gnttab.version as u32;
    space.write(arg, &g).map_or(err(EFAULT), |()| 0)
}

/// Xen's gnttab_set_version: refused while an entry past the reserved
/// ones is mapped (-EBUSY), or, going back to v1, while the guest still
/// maps a status frame (-EBUSY: XSA-255). The reserved entries are kept;
/// the rest of the table is cleared.
fn set_version(d: &mut Domain, ft: &FrameTable, space: GuestSpace, arg: u64) -> Ret {
    let Ok(mut v) = space.read::<GnttabSetVersion>(arg) else {
        return err(EFAULT);
    };
    let rc = set_version_to(d, ft, v.version);
    v.version = d.gnttab.version as u32;
    if space.write(arg, &v).is_err() {
        return err(EFAULT);
    }
    rc
}

fn set_version_to(d: &mut Domain, ft: &FrameTable, version: u32) -> Ret {
    if version != 1 && version != 2 {
        return err(EINVAL);
    }
    if d.gnttab.version as u32 == version {
        return 0;
    }
    if d.gnttab
        .maps
        .iter()
        .flatten()
        .any(|m| m.gref as usize >= RESERVED_ENTRIES)
    {
        return err(EBUSY);
    }
    if !grow(d, ft, 1) {
        return err(ENOMEM);
    }
    // The reserved entries, as v1 entries with their status.
    let old = d.gnttab.version;
    let mut keep = [GrantEntryV1::zeroed(); RESERVED_ENTRIES];
    for (i, k) in keep.iter_mut().enumerate() {
        let (flags, domid, frame) = entry_flags(&d.gnttab, i);
        if old == 2 && flags & GTF_TYPE_MASK == GTF_PERMIT_ACCESS && frame >> 32 != 0 {
            return err(ERANGE);
        }
        if flags & GTF_TYPE_MASK == GTF_PERMIT_ACCESS {
            let status: u16 = if old == 2 {
                read_at(d.gnttab.status[0], i * 2)
            } else {
                0
            };
            *k = GrantEntryV1 {
                flags: flags | status,
                domid,
                frame: frame as u32,
            };
        }
    }
    if version == 1 {
        // The status frames go back to the pool: not while mapped.
        if d.gnttab
            .status
            .iter()
            .any(|&s| ft.get(s).is_some_and(|f| f.mapped != 0))
        {
            return err(EBUSY);
        }
        // Not mapped now, but a translation may linger in a TLB from a
        // mapping the guest dropped without a flush: none may outlive the
        // frames' ownership (as decrease_reservation).
        crate::pv::mm::flush_tlb(d);
        for s in core::mem::take(&mut d.gnttab.status) {
            free_frame(ft, s);
        }
        d.gnttab.version = 1;
    } else {
        d.gnttab.version = 2;
        if !grow(d, ft, d.gnttab.shared.len()) {
            return err(ENOMEM);
        }
    }
    for &f in &d.gnttab.shared {
        frame(f).zero();
    }
    let gt = &d.gnttab;
    for (i, k) in keep.iter().enumerate() {
        if gt.version == 2 {
            let e = GrantEntryV2 {
                flags: k.flags & !(GTF_READING | GTF_WRITING),
                domid: k.domid,
                _pad0: 0,
                frame: k.frame as u64,
            };
            write_at(gt.shared[0], i * 16, &e);
            write_at(
                gt.status[0],
                i * 2,
                &(k.flags & (GTF_READING | GTF_WRITING)),
            );
        } else {
            write_at(gt.shared[0], i * 8, k);
        }
    }
    0
}

fn get_status_frames(d: &mut Domain, space: GuestSpace, arg: u64) -> Ret {
    let (nr, dom, list, status_at) = if d.is_32bit() {
        let Ok(g) = space.read::<GnttabGetStatusFrames32>(arg) else {
            return err(EFAULT);
        };
        (g.nr_frames, g.dom, g.frame_list as u64, 6)
    } else {
        let Ok(g) = space.read::<GnttabGetStatusFrames>(arg) else {
            return err(EFAULT);
        };
        (g.nr_frames, g.dom, g.frame_list, 6)
    };
    let status = if !own(d, dom) {
        GNTST_PERMISSION_DENIED
    } else if d.gnttab.version != 2 || nr as usize > d.gnttab.status.len() {
        GNTST_GENERAL_ERROR
    } else {
        let mut st = GNTST_OKAY;
        for i in 0..nr as usize {
            // uint64_t frame numbers in both widths.
            let w = list
                .checked_add(i as u64 * 8)
                .map(|at| space.write(at, &d.gnttab.status[i]));
            if !matches!(w, Some(Ok(()))) {
                st = GNTST_BAD_VIRT_ADDR;
            }
        }
        st
    };
    space
        .write(arg + status_at, &status)
        .map_or(err(EFAULT), |()| 0)
}

/// One `gnttab_map_grant_ref`: the status goes into the struct, the
/// return value is 0 unless the struct itself cannot be read or written.
fn map_one(d: &mut Domain, ft: &FrameTable, space: GuestSpace, at: u64) -> Ret {
    let Ok(mut m) = space.read::<GnttabMapGrantRef>(at) else {
        return err(EFAULT);
    };
    match map(d, ft, &m) {
        Ok((handle, dev)) => {
            m.status = GNTST_OKAY;
            m.handle = handle;
            if dev != 0 {
                m.dev_bus_addr = dev;
            }
        }
        Err(st) => m.status = st,
    }
    space.write(at, &m).map_or(err(EFAULT), |()| 0)
}

fn map(d: &mut Domain, ft: &FrameTable, m: &GnttabMapGrantRef) -> Result<(u32, u64), i16> {
    let host = m.flags & GNTMAP_HOST_MAP != 0;
    let device = m.flags & GNTMAP_DEVICE_MAP != 0;
    let readonly = m.flags & GNTMAP_READONLY != 0;
    if !host && !device {
        return Err(GNTST_BAD_GNTREF);
    }
    if m.dom != d.id {
        // Xen looks the domain up by id (DOMID_SELF is not one): a domain
        // that does not exist is bad; another one is not offered here.
        return Err(if m.dom == ringvisor_abi::xen::DOMID_SELF {
            GNTST_BAD_DOMAIN
        } else {
            GNTST_PERMISSION_DENIED
        });
    }
    let gref = m.ref_ as usize;
    if gref >= d.gnttab.entries() {
        return Err(GNTST_BAD_GNTREF);
    }
    let (flags, domid, frame) = entry_flags(&d.gnttab, gref);
    let ro_entry = flags & GTF_READONLY != 0;
    if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS
        || flags & GTF_SUB_PAGE != 0
        || domid != d.id
        || (ro_entry && !readonly)
    {
        return Err(GNTST_GENERAL_ERROR);
    }
    // For a PV guest the frame number in the entry is the machine frame;
    // it must be the granter's, and a page table or descriptor frame
    // cannot be mapped writable.
    let rw = !readonly;
    let ok_frame = ft.get(frame).is_some_and(|f| {
        f.owner == d.id
            && (matches!(f.kind, Kind::Normal | Kind::SharedInfo)
                || (!rw && f.kind != Kind::ReadOnly))
    });
    if !ok_frame {
        return Err(GNTST_GENERAL_ERROR);
    }
    let slot = d
        .gnttab
        .maps
        .iter()
        .position(Option::is_none)
        .unwrap_or(d.gnttab.maps.len());
    if slot >= MAX_MAPS {
        return Err(GNTST_NO_DEVICE_SPACE);
    }
    if host {
        let contains_pte = m.flags & GNTMAP_CONTAINS_PTE != 0;
        let Some(at) = mm::grant_slot(d, ft, m.host_addr, contains_pte) else {
            return Err(GNTST_GENERAL_ERROR);
        };
        let user = !d.is_32bit() || m.flags & GNTMAP_APPLICATION_MAP != 0;
        // GNTMAP_guest_avail bits (XENFEAT_gnttab_map_avail_bits) go to
        // the PTE's available bits 9-11, as Xen's grant_to_pte_flags.
        let pte = mm::grant_pte(frame, rw, user) | ((m.flags as u64 >> 16) & 7) << 9;
        if !take(ft, frame, rw) {
            return Err(GNTST_GENERAL_ERROR);
        }
        if mm::grant_install(d, ft, at, pte).is_err() {
            drop_ref(ft, frame, rw);
            return Err(GNTST_GENERAL_ERROR);
        }
    }
    if device && !take(ft, frame, rw) {
        if host {
            // Undo the host mapping just made.
            if let Some(at) = mm::grant_slot(d, ft, m.host_addr, m.flags & GNTMAP_CONTAINS_PTE != 0)
            {
                mm::grant_clear(d, at);
            }
            drop_ref(ft, frame, rw);
        }
        return Err(GNTST_GENERAL_ERROR);
    }
    let by_pte = m.flags & GNTMAP_CONTAINS_PTE != 0;
    let map = Map {
        gref: gref as u32,
        mfn: frame,
        readonly,
        host,
        by_pte,
        device,
    };
    if slot == d.gnttab.maps.len() {
        d.gnttab.maps.push(Some(map));
    } else {
        d.gnttab.maps[slot] = Some(map);
    }
    update_status(&d.gnttab, gref as u32);
    Ok((slot as u32, if device { frame << 12 } else { 0 }))
}

/// The live map behind `handle`.
fn live(d: &Domain, handle: u32) -> Option<Map> {
    d.gnttab.maps.get(handle as usize).copied().flatten()
}

/// Remove the grant PTE at `addr` if it maps `m`'s frame with its rights
/// (Xen's replace_grant_host_mapping checks); `new` is what goes there.
fn host_unmap(
    d: &Domain,
    ft: &FrameTable,
    m: &Map,
    addr: u64,
    contains_pte: bool,
    new: u64,
) -> Result<(), i16> {
    let Some(at) = mm::grant_slot(d, ft, addr, contains_pte) else {
        return Err(GNTST_GENERAL_ERROR);
    };
    let cur = mm::slot_read(at);
    if !mm::is_grant_pte(cur, m.mfn, !m.readonly) {
        return Err(GNTST_GENERAL_ERROR);
    }
    mm::slot_replace(d, at, new);
    Ok(())
}

/// Drop the host or device part of map `handle`; the map ends when
/// neither is left.
fn release(d: &mut Domain, ft: &FrameTable, handle: u32, host: bool, device: bool) {
    let Some(Some(m)) = d.gnttab.maps.get_mut(handle as usize) else {
        return;
    };
    let rw = !m.readonly;
    if host && m.host {
        m.host = false;
        drop_ref(ft, m.mfn, rw);
    }
    if device && m.device {
        m.device = false;
        drop_ref(ft, m.mfn, rw);
    }
    let (gref, done) = (m.gref, !m.host && !m.device);
    if done {
        d.gnttab.maps[handle as usize] = None;
    }
    update_status(&d.gnttab, gref);
}

fn unmap_one(d: &mut Domain, ft: &FrameTable, space: GuestSpace, at: u64) -> Ret {
    let Ok(mut u) = space.read::<GnttabUnmapGrantRef>(at) else {
        return err(EFAULT);
    };
    u.status = match live(d, u.handle) {
        None => GNTST_BAD_HANDLE,
        Some(m) if u.dev_bus_addr != 0 && u.dev_bus_addr != m.mfn << 12 => GNTST_BAD_DEV_ADDR,
        Some(m) => {
            let mut st = GNTST_OKAY;
            if u.host_addr != 0 && m.host {
                // Named the way it was made: a virtual address, or the
                // machine address of the PTE (GNTMAP_contains_pte).
                match host_unmap(d, ft, &m, u.host_addr, m.by_pte, 0) {
                    Ok(()) => release(d, ft, u.handle, true, false),
                    Err(e) => st = e,
                }
            }
            if st == GNTST_OKAY && u.dev_bus_addr != 0 && m.device {
                release(d, ft, u.handle, false, true);
            }
            st
        }
    };
    space.write(at + 20, &u.status).map_or(err(EFAULT), |()| 0)
}

/// `unmap_and_replace`: the grant PTE at `host_addr` is replaced by the
/// entry at `new_addr` (which is cleared), as Xen's replace_grant_pv_mapping.
/// The entry moves with its references (an ordinary entry's are its own,
/// a grant entry's its map's), so nothing is counted twice; what is
/// checked is that `host_addr` still holds this map's grant PTE with its
/// rights (XSA-234).
fn replace_one(d: &mut Domain, ft: &FrameTable, space: GuestSpace, at: u64) -> Ret {
    let Ok(mut r) = space.read::<GnttabUnmapAndReplace>(at) else {
        return err(EFAULT);
    };
    r.status = match live(d, r.handle) {
        None => GNTST_BAD_HANDLE,
        Some(m) if !m.host || (m.by_pte && r.new_addr != 0) => GNTST_GENERAL_ERROR,
        Some(m) => {
            let moved = if r.new_addr == 0 {
                Ok(0)
            } else {
                mm::grant_slot(d, ft, r.new_addr, false)
                    .map(mm::slot_read)
                    .ok_or(GNTST_GENERAL_ERROR)
            };
            match moved {
                Err(e) => e,
                Ok(new) => match host_unmap(d, ft, &m, r.host_addr, m.by_pte, new) {
                    Ok(()) => {
                        if r.new_addr != 0 {
                            if let Some(from) = mm::grant_slot(d, ft, r.new_addr, false) {
                                mm::grant_clear(d, from);
                            }
                        }
                        release(d, ft, r.handle, true, false);
                        GNTST_OKAY
                    }
                    Err(e) => e,
                },
            }
        }
    };
    space.write(at + 20, &r.status).map_or(err(EFAULT), |()| 0)
}
