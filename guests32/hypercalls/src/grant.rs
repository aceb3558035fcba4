//! `grant_table_op` (20) from a 32-bit guest, v1 and v2, on its own
//! grants: `setup_table` with the 16-byte struct and 4-byte frames,
//! `get_status_frames` with the 12-byte struct and 8-byte frames, maps
//! and unmaps (the same 32- and 24-byte layouts as 64-bit).

use core::ptr::{read_volatile, write_volatile};

use pvguest32::abi::grant_table::*;
use pvguest32::abi::{self, MmuUpdate};
use pvguest32::cell::{GuestCell, Page};
use pvguest32::hypercall as hc;
use pvguest32::report::{check, check_eq, check_rc, check_same, fail, info, neg, Rc};
use pvguest32::start_info;
use pvguest32::traps::{catch, expect_fault};
use pvguest32::va;

use crate::common::*;

const EBUSY: i32 = neg(abi::EBUSY);

static GRANTED: Page = Page::new();
static HOST: Page = Page::new();
static TABLE: Page = Page::new();
static STATUS: Page = Page::new();

const PATTERN: u32 = 0x6772_6e74;
const REF: u32 = 10;
const REF_RO: u32 = 11;

fn gnttab(cmd: u32, arg: u32, count: u32) -> i32 {
    // SAFETY: every struct passed is the caller's and sized for `cmd`;
    // mappings go to the scratch pages of this module.
    unsafe { hc::hypercall(abi::HYPERVISOR_GRANT_TABLE_OP, &[cmd, arg, count]) }
}

fn uvm(v: u32, pte: u64) -> i32 {
    // SAFETY: only the scratch pages of this module are remapped.
    unsafe { hc::update_va_mapping(v, pte, abi::UVMF_INVLPG as u32) }
}

fn rd(v: u32) -> u32 {
    // SAFETY: callers read pages mapped at that moment, or catch the #PF.
    unsafe { read_volatile(v as usize as *const u32) }
}

static READ: GuestCell<u32> = GuestCell::new(0);

/// The value at `v`, or the #PF's error code as Err.
fn try_rd(v: u32) -> Result<u32, u32> {
    catch(|| READ.set(rd(v)))
        .map(|()| READ.get())
        .map_err(|t| t.error_code)
}

fn my_domid() -> Option<u16> {
    let si = start_info::start_info();
    let line = start_info::cmd_line(si);
    if let Some(i) = line.windows(6).position(|w| w == b"domid=") {
        let mut n: u16 = 0;
        for &b in line[i + 6..].iter().take_while(|b| b.is_ascii_digit()) {
            n = n.wrapping_mul(10).wrapping_add(u16::from(b - b'0'));
        }
        return Some(n);
    }
    (si.flags & abi::SIF_INITDOMAIN != 0).then_some(0)
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
    let rc = gnttab(
        GNTTABOP_MAP_GRANT_REF,
        va(&mut m as *mut GnttabMapGrantRef),
        1,
    );
    if rc != 0 {
        m.status = 0x7000;
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
    let rc = gnttab(
        GNTTABOP_UNMAP_GRANT_REF,
        va(&mut u as *mut GnttabUnmapGrantRef),
        1,
    );
    if rc != 0 {
        info(format_args!("unmap_grant_ref itself returned {}", Rc(rc)));
        return 0x7000;
    }
    u.status
}

fn v1(r: u32) -> *mut GrantEntryV1 {
    (TABLE.addr() as usize as *mut GrantEntryV1).wrapping_add(r as usize)
}

fn v1_flags(r: u32) -> u16 {
    // SAFETY: TABLE maps grant frame 0 while this runs.
    unsafe { read_volatile(&raw const (*v1(r)).flags) }
}

fn grant_v1(r: u32, domid: u16, frame: u32, flags: u16) {
    // SAFETY: TABLE maps grant frame 0 writable; the flags last.
    unsafe {
        write_volatile(&raw mut (*v1(r)).domid, domid);
        write_volatile(&raw mut (*v1(r)).frame, frame);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        write_volatile(&raw mut (*v1(r)).flags, flags);
    }
}

pub fn run() {
    let mut q = GnttabQuerySize {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        nr_frames: 0,
        max_nr_frames: 0,
        status: 0x7777,
        _pad1: 0,
    };
    let rc = gnttab(GNTTABOP_QUERY_SIZE, va(&mut q as *mut GnttabQuerySize), 1);
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
    let mut frames = [0x5a5a_5a5au32; 2];
    let mut s = GnttabSetupTable32 {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        nr_frames: 1,
        status: 0x7777,
        _pad1: 0,
        frame_list: va(frames.as_mut_ptr()),
    };
    check_rc(
        "grant setup_table with count 2: -EINVAL",
        gnttab(
            GNTTABOP_SETUP_TABLE,
            va(&mut s as *mut GnttabSetupTable32),
            2,
        ),
        EINVAL,
    );
    let rc = gnttab(
        GNTTABOP_SETUP_TABLE,
        va(&mut s as *mut GnttabSetupTable32),
        1,
    );
    let frame = frames[0];
    check(
        "grant setup_table (16-byte struct) of 1 frame: 0, status 0, the frame written as 4 bytes, nothing after it",
        rc == 0 && s.status == 0 && frame != 0 && frame != 0x5a5a_5a5a && frames[1] == 0x5a5a_5a5a,
        format_args!("rc {} status {} list {:#x} {:#x}", Rc(rc), s.status, frames[0], frames[1]),
    );
    check_rc(
        "grant copy (5): -ENOSYS (ringvisor; Xen copies)",
        gnttab(GNTTABOP_COPY, UNMAPPED, 0),
        ENOSYS,
    );
    let l1 = |p: &Page| start_info::walk(p.addr())[2];
    let (Some(host), Some(table), Some(status)) = (l1(&HOST), l1(&TABLE), l1(&STATUS)) else {
        fail(
            "grant: the L1 entries of the scratch pages",
            format_args!("not found"),
        );
        return;
    };
    if !check_rc(
        "update_va_mapping of grant frame 0, writable: 0",
        uvm(TABLE.addr(), pte(frame, KERNEL_RW)),
        0,
    ) {
        return;
    }
    let Some(me) = my_domid() else {
        info(format_args!(
            "grant maps skipped: not the initial domain and no domid=N"
        ));
        uvm(TABLE.addr(), table.val);
        return;
    };
    let granted = mfn_of(GRANTED.addr());
    // SAFETY: GRANTED is this module's page.
    unsafe { write_volatile(GRANTED.addr() as usize as *mut u32, PATTERN) };
    grant_v1(REF, me, granted, GTF_PERMIT_ACCESS);
    grant_v1(REF_RO, me, granted, GTF_PERMIT_ACCESS | GTF_READONLY);
    let h = u64::from(HOST.addr());

    let m = map(REF, me, GNTMAP_HOST_MAP, h);
    if check_eq(
        "map_grant_ref of an own grant at a virtual address: status 0",
        m.status,
        GNTST_OKAY,
    ) {
        check_same(
            "  ... the granted page is visible at host_addr",
            try_rd(HOST.addr()),
            Ok(PATTERN),
        );
        check_eq(
            "  ... GTF_reading and GTF_writing set",
            v1_flags(REF),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
        );
        let req = MmuUpdate {
            ptr: host.maddr | abi::MMU_NORMAL_PT_UPDATE,
            val: host.val,
        };
        // SAFETY: refused (a grant PTE).
        let rc = unsafe { hc::mmu_update(va(&req), 1, 0, abi::DOMID_SELF) };
        check_rc(
            "mmu_update over the grant PTE: -EINVAL (ringvisor; Xen crashes the domain)",
            rc,
            EINVAL,
        );
        check_rc(
            "update_va_mapping over the grant PTE: -EINVAL (ringvisor; Xen crashes the domain)",
            uvm(HOST.addr(), host.val),
            EINVAL,
        );
        check_eq(
            "unmap_grant_ref with a bad handle: GNTST_bad_handle",
            unmap(h, 0, 0xdead),
            GNTST_BAD_HANDLE,
        );
        check_eq(
            "unmap_grant_ref: status 0",
            unmap(h, 0, m.handle),
            GNTST_OKAY,
        );
        expect_fault("  ... the mapping is gone: a read #PF", 14, None, || {
            rd(HOST.addr());
        });
        check_eq("  ... GTF bits clear", v1_flags(REF), GTF_PERMIT_ACCESS);
    }
    check_rc(
        "update_va_mapping puts HOST's own frame back: 0",
        uvm(HOST.addr(), host.val),
        0,
    );

    let m = map(
        REF,
        me,
        GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE,
        host.maddr + 4,
    );
    check_eq(
        "map_grant_ref contains_pte with a misaligned PTE address: GNTST_general_error",
        m.status,
        GNTST_GENERAL_ERROR,
    );
    let m = map(REF, me, GNTMAP_HOST_MAP | GNTMAP_CONTAINS_PTE, host.maddr);
    if check_eq(
        "map_grant_ref contains_pte at HOST's L1 entry: status 0",
        m.status,
        GNTST_OKAY,
    ) {
        check_same(
            "  ... the granted page is visible there",
            try_rd(HOST.addr()),
            Ok(PATTERN),
        );
        check_eq(
            "unmap_grant_ref by PTE: status 0",
            unmap(host.maddr, 0, m.handle),
            GNTST_OKAY,
        );
    }
    check_rc(
        "update_va_mapping puts HOST's own frame back: 0",
        uvm(HOST.addr(), host.val),
        0,
    );

    check_eq(
        "map_grant_ref of ref 100000: GNTST_bad_gntref",
        map(100_000, me, GNTMAP_HOST_MAP, h).status,
        GNTST_BAD_GNTREF,
    );
    check_eq(
        "map_grant_ref of a readonly grant, writable: GNTST_general_error",
        map(REF_RO, me, GNTMAP_HOST_MAP, h).status,
        GNTST_GENERAL_ERROR,
    );
    check_eq(
        "map_grant_ref naming DOMID_SELF: GNTST_bad_domain",
        map(REF, abi::DOMID_SELF, GNTMAP_HOST_MAP, h).status,
        GNTST_BAD_DOMAIN,
    );
    let m = map(REF_RO, me, GNTMAP_HOST_MAP | GNTMAP_READONLY, h);
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
            unsafe { write_volatile(HOST.addr() as usize as *mut u32, 1) }
        });
        check_eq("  ... unmap: status 0", unmap(h, 0, m.handle), GNTST_OKAY);
    }
    check_rc(
        "update_va_mapping puts HOST's own frame back: 0",
        uvm(HOST.addr(), host.val),
        0,
    );

    let m = map(REF, me, GNTMAP_DEVICE_MAP, 0);
    let dev = u64::from(granted) << 12;
    if check(
        "map_grant_ref device map: status 0, dev_bus_addr = frame << 12",
        m.status == 0 && m.dev_bus_addr == dev,
        format_args!(
            "status {} dev_bus_addr {:#x} frame {:#x}",
            m.status, m.dev_bus_addr, granted
        ),
    ) {
        check_eq(
            "unmap_grant_ref with the wrong dev_bus_addr: GNTST_bad_dev_addr",
            unmap(0, dev + 4096, m.handle),
            GNTST_BAD_DEV_ADDR,
        );
        check_eq(
            "unmap_grant_ref with the right dev_bus_addr: status 0",
            unmap(0, dev, m.handle),
            GNTST_OKAY,
        );
        check_eq("  ... GTF bits clear", v1_flags(REF), GTF_PERMIT_ACCESS);
    }

    version2(me, granted, host.val, status.val);
    uvm(HOST.addr(), host.val);
    check_rc(
        "update_va_mapping puts TABLE's own frame back: 0",
        uvm(TABLE.addr(), table.val),
        0,
    );
}

fn set_version(v: u32) -> i32 {
    let mut s = GnttabSetVersion { version: v };
    gnttab(GNTTABOP_SET_VERSION, va(&mut s as *mut GnttabSetVersion), 1)
}

fn get_version() -> (i32, u32) {
    let mut g = GnttabGetVersion {
        dom: abi::DOMID_SELF,
        _pad0: 0,
        version: 0,
    };
    let rc = gnttab(GNTTABOP_GET_VERSION, va(&mut g as *mut GnttabGetVersion), 1);
    (rc, g.version)
}

fn version2(me: u16, granted: u32, host_pte: u64, status_pte: u64) {
    grant_v1(REF, 0, 0, 0);
    grant_v1(REF_RO, 0, 0, 0);
    check_rc("grant set_version 2: 0", set_version(2), 0);
    check_same("grant get_version: (0, 2)", get_version(), (0, 2));
    let mut list = [0x5a5a_5a5a_5a5a_5a5au64; 2];
    let mut sf = GnttabGetStatusFrames32 {
        nr_frames: 1,
        dom: abi::DOMID_SELF,
        status: 0x7777,
        frame_list: va(list.as_mut_ptr()),
    };
    let rc = gnttab(
        GNTTABOP_GET_STATUS_FRAMES,
        va(&mut sf as *mut GnttabGetStatusFrames32),
        1,
    );
    let st = list[0];
    if !check(
        "grant get_status_frames (12-byte struct): 0, status 0, a frame as 8 bytes, nothing after it",
        rc == 0 && sf.status == 0 && st != 0 && st >> 32 == 0 && list[1] == 0x5a5a_5a5a_5a5a_5a5a,
        format_args!("rc {} status {} list {:#x} {:#x}", Rc(rc), sf.status, list[0], list[1]),
    ) {
        return;
    }
    check_rc(
        "update_va_mapping of the status frame writable: -EINVAL",
        uvm(STATUS.addr(), st << 12 | KERNEL_RW),
        EINVAL,
    );
    check_rc(
        "update_va_mapping of the status frame read-only: 0",
        uvm(STATUS.addr(), st << 12 | KERNEL_RO),
        0,
    );
    let status_word = |r: u32| {
        // SAFETY: STATUS maps the status frame read-only.
        unsafe { read_volatile((STATUS.addr() as usize as *const u16).add(r as usize)) }
    };
    let e = (TABLE.addr() as usize as *mut GrantEntryV2).wrapping_add(REF as usize);
    // SAFETY: TABLE maps grant frame 0 writable; the flags last.
    unsafe {
        write_volatile(&raw mut (*e).domid, me);
        write_volatile(&raw mut (*e).frame, u64::from(granted));
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        write_volatile(&raw mut (*e).flags, GTF_PERMIT_ACCESS);
    }
    let h = u64::from(HOST.addr());
    let m = map(REF, me, GNTMAP_HOST_MAP, h);
    if check_eq("v2 map_grant_ref: status 0", m.status, GNTST_OKAY) {
        check_same(
            "  ... the granted page is visible at host_addr",
            try_rd(HOST.addr()),
            Ok(PATTERN),
        );
        check_eq(
            "  ... GTF_reading|GTF_writing in the status frame",
            status_word(REF),
            GTF_READING | GTF_WRITING,
        );
        check_rc(
            "grant set_version 1 while a grant is mapped: -EBUSY",
            set_version(1),
            EBUSY,
        );
        check_eq("  ... unmap: status 0", unmap(h, 0, m.handle), GNTST_OKAY);
        check_eq("  ... the status word clear", status_word(REF), 0);
    }
    uvm(HOST.addr(), host_pte);
    check_rc(
        "grant set_version 1 while the status frame is mapped: -EBUSY (XSA-255)",
        set_version(1),
        EBUSY,
    );
    check_rc(
        "update_va_mapping puts STATUS's own frame back: 0",
        uvm(STATUS.addr(), status_pte),
        0,
    );
    check_rc(
        "grant set_version 1 after unmapping it: 0",
        set_version(1),
        0,
    );
    check_same("grant get_version: (0, 1)", get_version(), (0, 1));
}
