//! `grant_table_op` (20), v1 and v2, on the domain's own grants: the
//! table set up and mapped, an entry granting one of its own pages, that
//! grant mapped by address, by PTE and as a device, unmapped, and the bad
//! arguments Xen 4.17's `common/grant_table.c` and
//! `arch/x86/pv/grant_table.c` answer with a status.

use core::ptr::{read_volatile, write_volatile};

use pvguest::abi::grant_table::*;
use pvguest::abi::{self, MmuUpdate};
use pvguest::cell::{GuestCell, Page};
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc, info, Rc};
use pvguest::start_info::{self, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_USER};
use pvguest::traps::{catch, expect_fault};

use crate::{EINVAL, ENOSYS, UNMAPPED};

const EBUSY: i64 = abi::neg(abi::EBUSY);

/// The granted page: a pattern the grant mappings must show.
static GRANTED: Page = Page::new();
/// Where the grant is mapped by address (its own frame is put back).
static HOST: Page = Page::new();
/// Where grant frame 0 is mapped (its own frame is put back).
static TABLE: Page = Page::new();
/// Where the v2 status frame is mapped read-only.
static STATUS: Page = Page::new();

const PATTERN: u64 = 0x6772_616e_7465_6421;
/// What STATUS's own frame holds while the status frame is mapped there.
const STATUS_MARK: u64 = 0x6f77_6e20_6672_616d;
/// The grant reference used: past the 8 reserved ones.
const REF: u32 = 10;
/// Another one, granted read-only.
const REF_RO: u32 = 11;

const RW: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
const RO: u64 = PTE_PRESENT | PTE_USER | PTE_ACCESSED;

fn gnttab(cmd: u32, arg: u64, count: u64) -> i64 {
    // SAFETY: every struct passed is the caller's and sized for `cmd`;
    // mappings go to the scratch pages of this module.
    unsafe { hc::hypercall5(abi::HYPERVISOR_GRANT_TABLE_OP, cmd.into(), arg, count, 0, 0) }
}

fn uvm(va: u64, pte: u64) -> i64 {
    // SAFETY: only the scratch pages of this module are remapped.
    unsafe { hc::update_va_mapping(va, pte, abi::UVMF_INVLPG) }
}

fn rd(va: u64) -> u64 {
    // SAFETY: callers read pages mapped at that moment, or catch the #PF.
    unsafe { read_volatile(va as *const u64) }
}

/// The M2P entry of `mfn` (the table is readable by every guest).
fn m2p(mfn: u64) -> u64 {
    // SAFETY: the read-only M2P covers every frame of the domain.
    unsafe { read_volatile((abi::MACH2PHYS_VIRT_START + mfn * 8) as *const u64) }
}

/// The machine address of the L1 entry mapping `va` and the entry, by a
/// walk from `pt_base` through the bootstrap tables (mapped read-only
/// where the M2P says).
pub fn l1e(va: u64) -> Option<(u64, u64)> {
    let si = start_info::start_info();
    let mut table_va = si.pt_base;
    let mut maddr = 0;
    for level in (1..=4u32).rev() {
        let i = (va >> (12 + 9 * (level - 1))) & 511;
        let e = rd(table_va + i * 8);
        if level == 1 {
            return Some((maddr + i * 8, e));
        }
        if e & PTE_PRESENT == 0 {
            return None;
        }
        let mfn = (e & 0x000f_ffff_ffff_f000) >> 12;
        maddr = mfn << 12;
        table_va = pvguest::VIRT_BASE + (m2p(mfn) << 12);
    }
    None
}

/// This domain's id: 0 as the initial domain, else `domid=N` on the
/// command line.
fn my_domid() -> Option<u16> {
    if let Some(d) = start_info::arg_u32("domid") {
        return Some(d as u16);
    }
    (start_info::start_info().flags & abi::SIF_INITDOMAIN != 0).then_some(0)
}

fn map(ref_: u32, dom: u16, flags: u32, host_addr: u64) -> GnttabMapGrantRef {
    let mut m = GnttabMapGrantRef {
        host_addr,
        flags,
        ref_,
        dom,
        status: 0x7777,
        handle: !0,
        dev_bus_addr: 0,
    };
    let rc = gnttab(GNTTABOP_MAP_GRANT_REF, &mut m as *mut _ as u64, 1);
    if rc != 0 {
        m.status = 0x7000 | (rc as i16 & 0xff);
        info(format_args!("map_grant_ref itself returned {}", Rc(rc)));
    }
    m
}

fn unmap(host_addr: u64, dev_bus_addr: u64, handle: u32) -> i16 {
    let mut u = GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr,
        handle,
        status: 0x7777,
        _pad0: 0,
    };
    let rc = gnttab(GNTTABOP_UNMAP_GRANT_REF, &mut u as *mut _ as u64, 1);
    if rc != 0 {
        info(format_args!("unmap_grant_ref itself returned {}", Rc(rc)));
        return 0x7000;
    }
    u.status
}

/// Entry `r` of the v1 table mapped at TABLE.
fn v1(r: u32) -> *mut GrantEntryV1 {
    (TABLE.addr() as *mut GrantEntryV1).wrapping_add(r as usize)
}

fn v1_flags(r: u32) -> u16 {
    // SAFETY: TABLE maps grant frame 0 while this runs.
    unsafe { read_volatile(&raw const (*v1(r)).flags) }
}

fn grant_v1(r: u32, domid: u16, frame: u64, flags: u16) {
    // SAFETY: TABLE maps grant frame 0 writable; domid and frame first,
    // then the flags, as the ABI asks.
    unsafe {
        write_volatile(&raw mut (*v1(r)).domid, domid);
        write_volatile(&raw mut (*v1(r)).frame, frame as u32);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        write_volatile(&raw mut (*v1(r)).flags, flags);
    }
}

static SAVED: GuestCell<[u64; 3]> = GuestCell::new([0; 3]);

pub fn run() {
    let mut q = GnttabQuerySize {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        nr_frames: 0,
        max_nr_frames: 0,
        status: 0x7777,
        _pad1: 0,
    };
    let rc = gnttab(GNTTABOP_QUERY_SIZE, &mut q as *mut _ as u64, 1);
    check(
        "grant query_size: 0, status 0, nr_frames >= 1, max_nr_frames 64",
        rc == 0 && q.status == 0 && q.nr_frames >= 1 && q.max_nr_frames == 64,
        format_args!(
            "rc {} status {} nr {} max {}",
            Rc(rc),
            q.status,
            q.nr_frames,
            q.max_nr_frames
        ),
    );
    let mut frames = [0x5a5a_5a5a_5a5a_5a5au64; 2];
    let mut s = GnttabSetupTable {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        nr_frames: 1,
        status: 0x7777,
        _pad1: [0; 3],
        frame_list: frames.as_mut_ptr() as u64,
    };
    check_rc(
        "grant setup_table with count 2: -EINVAL",
        gnttab(GNTTABOP_SETUP_TABLE, &mut s as *mut _ as u64, 2),
        EINVAL,
    );
    let rc = gnttab(GNTTABOP_SETUP_TABLE, &mut s as *mut _ as u64, 1);
    let frame = frames[0];
    check(
        "grant setup_table of 1 frame: 0, status 0, the frame written as 8 bytes, nothing after it",
        rc == 0
            && s.status == 0
            && frame >> 32 == 0
            && frame != 0
            && frames[1] == 0x5a5a_5a5a_5a5a_5a5a,
        format_args!(
            "rc {} status {} list {:#x} {:#x}",
            Rc(rc),
            s.status,
            frames[0],
            frames[1]
        ),
    );
    check_rc(
        "grant copy (5): -ENOSYS (ringvisor; Xen copies)",
        gnttab(GNTTABOP_COPY, UNMAPPED, 0),
        ENOSYS,
    );
    let (Some((host_pte_at, host_pte)), Some((_, table_pte)), Some((_, status_pte))) =
        (l1e(HOST.addr()), l1e(TABLE.addr()), l1e(STATUS.addr()))
    else {
        pvguest::report::fail(
            "grant: the L1 entries of the scratch pages",
            format_args!("not found"),
        );
        return;
    };
    SAVED.set([host_pte, table_pte, status_pte]);
    if !check_rc(
        "update_va_mapping of grant frame 0, writable: 0",
        uvm(TABLE.addr(), frame << 12 | RW),
        0,
    ) {
        return;
    }
    let Some(me) = my_domid() else {
        info(format_args!(
            "grant maps skipped: not the initial domain and no domid=N"
        ));
        restore();
        return;
    };
    let granted = start_info::virt_to_mfn(GRANTED.addr()).unwrap();
    // SAFETY: GRANTED is this module's page.
    unsafe { write_volatile(GRANTED.addr() as *mut u64, PATTERN) };
    grant_v1(REF, me, granted, GTF_PERMIT_ACCESS);
    grant_v1(REF_RO, me, granted, GTF_PERMIT_ACCESS | GTF_READONLY);

    // By address.
    let m = map(REF, me, GNTMAP_HOST_MAP, HOST.addr());
    if check(
        "map_grant_ref of an own grant at a virtual address: status 0",
        m.status == 0,
        format_args!("status {}", m.status),
    ) {
        let r = catch(|| SAVED.set([rd(HOST.addr()), 0, 0]));
        check(
            "  ... the granted page is visible at host_addr",
            r.is_ok() && SAVED.get()[0] == PATTERN,
            format_args!("{:?} read {:#x}", r.err(), SAVED.get()[0]),
        );
        SAVED.set([host_pte, table_pte, status_pte]);
        check_eq(
            "  ... GTF_reading and GTF_writing set in the entry",
            v1_flags(REF),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        );
        let req = MmuUpdate {
            ptr: host_pte_at | abi::MMU_NORMAL_PT_UPDATE,
            val: host_pte,
        };
        // SAFETY: refused (the entry is a grant mapping).
        let rc = unsafe { hc::mmu_update(&req as *const _ as u64, 1, 0, abi::DOMID_SELF) };
        check_rc(
            "mmu_update over the grant PTE: -EINVAL (ringvisor; Xen crashes the domain)",
            rc,
            EINVAL,
        );
        check_rc(
            "update_va_mapping over the grant PTE: -EINVAL (ringvisor; Xen crashes the domain)",
            uvm(HOST.addr(), host_pte),
            EINVAL,
        );
        check_eq(
            "unmap_grant_ref with a bad handle: GNTST_bad_handle",
            unmap(HOST.addr(), 0, 0xdead),
            GNTST_BAD_HANDLE,
        );
        check_eq(
            "unmap_grant_ref: status 0",
            unmap(HOST.addr(), 0, m.handle),
            GNTST_OKAY,
        );
        expect_fault("  ... the mapping is gone: a read: #PF", 14, None, || {
            rd(HOST.addr());
        });
        check_eq(
            "  ... GTF_reading/GTF_writing clear",
            v1_flags(REF),
            GTF_PERMIT_ACCESS,
        );
    }
    check_rc(
        "update_va_mapping puts HOST's own frame back: 0",
        uvm(HOST.addr(), host_pte),
        0,
    );

    // By PTE (machine address of the L1 entry).
    let m = map(
        REF,
        me,
        GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE,
        host_pte_at + 4,
    );
    check_eq(
        "map_grant_ref contains_pte with a misaligned PTE address: GNTST_general_error",
        m.status,
        GNTST_GENERAL_ERROR,
    );
    let m = map(REF, me, GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE, host_pte_at);
    if check_eq(
        "map_grant_ref contains_pte at HOST's L1 entry: status 0",
        m.status,
        GNTST_OKAY,
    ) {
        let r = catch(|| SAVED.set([rd(HOST.addr()), 0, 0]));
        check(
            "  ... the granted page is visible there",
            r.is_ok() && SAVED.get()[0] == PATTERN,
            format_args!("{:?} read {:#x}", r.err(), SAVED.get()[0]),
        );
        SAVED.set([host_pte, table_pte, status_pte]);
        check_eq(
            "unmap_grant_ref by PTE: status 0",
            unmap(host_pte_at, 0, m.handle),
            GNTST_OKAY,
        );
        check_eq("  ... GTF bits clear", v1_flags(REF), GTF_PERMIT_ACCESS);
    }
    check_rc(
        "update_va_mapping puts HOST's own frame back: 0",
        uvm(HOST.addr(), host_pte),
        0,
    );

    // Bad arguments.
    let m = map(100_000, me, GNTMAP_HOST_MAP, HOST.addr());
    check_eq(
        "map_grant_ref of ref 100000: GNTST_bad_gntref",
        m.status,
        GNTST_BAD_GNTREF,
    );
    let m = map(REF_RO, me, GNTMAP_HOST_MAP, HOST.addr());
    check_eq(
        "map_grant_ref of a readonly grant, writable: GNTST_general_error",
        m.status,
        GNTST_GENERAL_ERROR,
    );
    let m = map(REF, abi::DOMID_SELF, GNTMAP_HOST_MAP, HOST.addr());
    check_eq(
        "map_grant_ref naming DOMID_SELF: GNTST_bad_domain",
        m.status,
        GNTST_BAD_DOMAIN,
    );
    check_eq(
        "  ... no GTF bits set by the refused maps",
        v1_flags(REF) | v1_flags(REF_RO),
        GTF_PERMIT_ACCESS | GTF_READONLY,
    );
    let m = map(REF_RO, me, GNTMAP_HOST_MAP | GNTMAP_READONLY, HOST.addr());
    if check_eq(
        "map_grant_ref of a readonly grant, readonly: status 0",
        m.status,
        GNTST_OKAY,
    ) {
        check_eq(
            "  ... GTF_reading only",
            v1_flags(REF_RO),
            GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING,
        );
        expect_fault("  ... a write there: #PF", 14, None, || {
            // SAFETY: faults: the grant mapping is read-only.
            unsafe { write_volatile(HOST.addr() as *mut u64, 1) }
        });
        check_eq(
            "  ... unmap: status 0",
            unmap(HOST.addr(), 0, m.handle),
            GNTST_OKAY,
        );
    }
    check_rc(
        "update_va_mapping puts HOST's own frame back: 0",
        uvm(HOST.addr(), host_pte),
        0,
    );

    // Device mapping.
    let m = map(REF, me, GNTMAP_DEVICE_MAP, 0);
    if check(
        "map_grant_ref device map: status 0, dev_bus_addr = frame << 12",
        m.status == 0 && m.dev_bus_addr == granted << 12,
        format_args!(
            "status {} dev_bus_addr {:#x} frame {:#x}",
            m.status, m.dev_bus_addr, granted
        ),
    ) {
        check_eq(
            "unmap_grant_ref with the wrong dev_bus_addr: GNTST_bad_dev_addr",
            unmap(0, (granted + 1) << 12, m.handle),
            GNTST_BAD_DEV_ADDR,
        );
        check_eq(
            "unmap_grant_ref with the right dev_bus_addr: status 0",
            unmap(0, granted << 12, m.handle),
            GNTST_OKAY,
        );
        check_eq("  ... GTF bits clear", v1_flags(REF), GTF_PERMIT_ACCESS);
    }

    version2(me, granted);
    restore();
}

/// Grant tables v2: the status frame, and set_version back to 1 refused
/// while it is mapped (XSA-255).
fn version2(me: u16, granted: u64) {
    grant_v1(REF, 0, 0, 0);
    grant_v1(REF_RO, 0, 0, 0);
    let mut v = GnttabSetVersion { version: 2 };
    check_rc(
        "grant set_version 2: 0",
        gnttab(GNTTABOP_SET_VERSION, &mut v as *mut _ as u64, 1),
        0,
    );
    let mut g = GnttabGetVersion {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        version: 0,
    };
    let rc = gnttab(GNTTABOP_GET_VERSION, &mut g as *mut _ as u64, 1);
    check(
        "grant get_version: 0, version 2",
        rc == 0 && g.version == 2,
        format_args!("rc {} version {}", Rc(rc), g.version),
    );
    let mut list = [0u64; 1];
    let mut sf = GnttabGetStatusFrames {
        nr_frames: 1,
        dom: abi::DOMID_SELF,
        status: 0x7777,
        frame_list: list.as_mut_ptr() as u64,
    };
    let rc = gnttab(GNTTABOP_GET_STATUS_FRAMES, &mut sf as *mut _ as u64, 1);
    let st = list[0];
    if !check(
        "grant get_status_frames: 0, status 0, a frame",
        rc == 0 && sf.status == 0 && st != 0,
        format_args!("rc {} status {} frame {:#x}", Rc(rc), sf.status, st),
    ) {
        return;
    }
    check_rc(
        "update_va_mapping of the status frame writable: -EINVAL",
        uvm(STATUS.addr(), st << 12 | RW),
        EINVAL,
    );
    // SAFETY: STATUS maps its own frame (writable) until the next line.
    unsafe { write_volatile(STATUS.addr() as *mut u64, STATUS_MARK) };
    check_rc(
        "update_va_mapping of the status frame read-only: 0",
        uvm(STATUS.addr(), st << 12 | RO),
        0,
    );
    let status_word = |r: u32| {
        // SAFETY: STATUS maps the status frame read-only.
        unsafe { read_volatile((STATUS.addr() as *const u16).add(r as usize)) }
    };
    // A v2 entry (16 bytes) granting the page; its status in the status frame.
    let e = (TABLE.addr() as *mut GrantEntryV2).wrapping_add(REF as usize);
    // SAFETY: TABLE maps grant frame 0 writable; flags last.
    unsafe {
        write_volatile(&raw mut (*e).domid, me);
        write_volatile(&raw mut (*e).frame, granted);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        write_volatile(&raw mut (*e).flags, GTF_PERMIT_ACCESS);
    }
    let m = map(REF, me, GNTMAP_HOST_MAP, HOST.addr());
    if check_eq("v2 map_grant_ref: status 0", m.status, GNTST_OKAY) {
        let r = catch(|| SAVED.set([rd(HOST.addr()), SAVED.get()[1], SAVED.get()[2]]));
        check(
            "  ... the granted page is visible at host_addr",
            r.is_ok() && SAVED.get()[0] == PATTERN,
            format_args!("{:?} read {:#x}", r.err(), SAVED.get()[0]),
        );
        check_eq(
            "  ... GTF_reading|GTF_writing in the status frame",
            status_word(REF),
            GTF_READING | GTF_WRITING,
        );
        let mut v1 = GnttabSetVersion { version: 1 };
        check_rc(
            "grant set_version 1 while a grant is mapped: -EBUSY",
            gnttab(GNTTABOP_SET_VERSION, &mut v1 as *mut _ as u64, 1),
            EBUSY,
        );
        check_eq(
            "  ... unmap: status 0",
            unmap(HOST.addr(), 0, m.handle),
            GNTST_OKAY,
        );
        check_eq("  ... the status word clear", status_word(REF), 0);
    }
    let [host_pte, _, status_pte] = SAVED.get();
    uvm(HOST.addr(), host_pte);
    let mut v1 = GnttabSetVersion { version: 1 };
    check_rc(
        "grant set_version 1 while the status frame is mapped: -EBUSY (XSA-255)",
        gnttab(GNTTABOP_SET_VERSION, &mut v1 as *mut _ as u64, 1),
        EBUSY,
    );
    // Read through the status frame's mapping (the TLB holds it), then
    // put STATUS's own frame back without a flush (the guest's business,
    // as for any L1 entry): giving the status frames back must not leave
    // that translation behind.
    let _ = status_word(0);
    check_rc(
        "update_va_mapping puts STATUS's own frame back (UVMF_NONE): 0",
        // SAFETY: STATUS's own frame, as it was.
        unsafe { hc::update_va_mapping(STATUS.addr(), status_pte, abi::UVMF_NONE) },
        0,
    );
    let mut v1 = GnttabSetVersion { version: 1 };
    if check_rc(
        "grant set_version 1 after unmapping it: 0",
        gnttab(GNTTABOP_SET_VERSION, &mut v1 as *mut _ as u64, 1),
        0,
    ) {
        check_eq(
            "  ... STATUS reads its own frame: the freed status frame is in no TLB",
            rd(STATUS.addr()),
            STATUS_MARK,
        );
    }
    let mut g = GnttabGetVersion {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        version: 0,
    };
    let rc = gnttab(GNTTABOP_GET_VERSION, &mut g as *mut _ as u64, 1);
    check(
        "grant get_version: 1",
        rc == 0 && g.version == 1,
        format_args!("rc {} version {}", Rc(rc), g.version),
    );
}

fn restore() {
    let [host_pte, table_pte, _] = SAVED.get();
    uvm(HOST.addr(), host_pte);
    check_rc(
        "update_va_mapping puts TABLE's own frame back: 0",
        uvm(TABLE.addr(), table_pte),
        0,
    );
}
