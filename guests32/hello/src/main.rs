//! `guest32-hello`: the smallest useful 32-bit PAE PV guest.
//!
//! Cases (expected values from Xen's public headers and its 64-bit
//! hypervisor's compat code; Debian's Xen has no 32-bit PV to compare
//! with):
//! - `start_info.magic`: exactly `xen-3.0-x86_32p` (Xen's dom0 builder
//!   writes `"xen-3.0-x86_%d%s"` with 32 and `p` for PAE).
//! - `start_info.nr_pages`: more than 0.
//! - `start_info.shared_info`: a non-zero, page-aligned machine address
//!   (the runtime has mapped it), and events start masked
//!   (`vcpu_info[0].evtchn_upcall_mask` = 1, 32-bit `vcpu_info`).
//! - `start_info.pt_base`: page aligned, inside the bootstrap region, with
//!   `nr_pt_frames` > 0; `mfn_list` non-zero and inside the bootstrap
//!   region; the P2M entry of the image's first page is a plausible frame.
//! - `start_info.flags` and `cmd_line`: printed.
//! - Ring 1: `%cs` is `FLAT_RING1_CS` (0xe019, `cs & 3` = 1), `%ss`,
//!   `%ds`, `%es` are `FLAT_RING1_DS` (0xe021), as `xen-x86_32.h` says the
//!   guest kernel starts.
//! - The hypercall page holds 32-bit stubs: stub 0 is
//!   `mov $0,%eax; int $0x82; ret`, the iret stub 23 is
//!   `push %eax; mov $23,%eax; int $0x82`.
//! - `xen_version(XENVER_version)`: major >= 3 (printed as major.minor).
//! - `XENVER_extraversion`: printed.
//! - `XENVER_capabilities`: contains `xen-3.0-x86_32p`.
//! - `XENVER_pagesize`: 4096.
//! - Hypercall 60 (unassigned) and 11 (unassigned): `-ENOSYS`.
//! - A bare `int $0x82` (not through the page) with `eax` = 200 (beyond
//!   any table): `-ENOSYS`; with `eax` = `xen_version`: as the stub.
//! - Every hypercall 0-63 answers `-ENOSYS` exactly where the table in
//!   `docs/abi.md` says so (32-bit column; `abi_table.rs`, harmless
//!   arguments). Not on ringvisor (`XENVER_extraversion` without
//!   `ringvisor`): the differences are printed as INFO.
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]

use pvguest32::abi::{self, x86_32::StartInfo32};
use pvguest32::abi32::{FLAT_RING1_CS, FLAT_RING1_DS};
use pvguest32::console::{contains, CStr};
use pvguest32::hypercall::{hypercall, int82, stub_bytes, xen_version};
use pvguest32::report::{check, check_eq, check_rc, info, neg};
use pvguest32::{cpu, println, start_info, va};

mod abi_table;

pvguest32::guest_main!("hello32", run);

fn run(si: &StartInfo32) {
    println!("Hello from a ringvisor test guest (32-bit PAE Xen PV, ring 1)");

    check(
        "start_info magic xen-3.0-x86_32p",
        start_info::check_magic(si).is_ok(),
        format_args!("magic \"{}\"", CStr(&si.magic)),
    );
    info(format_args!("magic = {}", CStr(&si.magic)));

    check(
        "nr_pages > 0",
        si.nr_pages > 0,
        format_args!("nr_pages = 0"),
    );
    info(format_args!(
        "nr_pages = {} ({} KiB)",
        si.nr_pages,
        si.nr_pages * 4
    ));

    check(
        "shared_info machine address",
        si.shared_info != 0 && si.shared_info.is_multiple_of(4096),
        format_args!("shared_info = {:#x}", si.shared_info),
    );
    info(format_args!("shared_info = {:#x}", si.shared_info));
    check_eq(
        "events masked at start of day",
        start_info::upcall_mask(),
        1,
    );

    let kstart = pvguest32::VIRT_BASE;
    let kend = kstart + si.nr_pages * 4096;
    check(
        "pt_base in the bootstrap region",
        si.pt_base.is_multiple_of(4096)
            && (kstart..kend).contains(&si.pt_base)
            && si.nr_pt_frames > 0,
        format_args!(
            "pt_base = {:#x}, nr_pt_frames = {}",
            si.pt_base, si.nr_pt_frames
        ),
    );
    check(
        "mfn_list in the bootstrap region",
        (kstart..kend).contains(&si.mfn_list),
        format_args!("mfn_list = {:#x}", si.mfn_list),
    );
    info(format_args!(
        "pt_base = {:#x}, nr_pt_frames = {}, mfn_list = {:#x}",
        si.pt_base, si.nr_pt_frames, si.mfn_list
    ));
    let mfn0 = start_info::virt_to_mfn(kstart);
    check(
        "P2M entry of the image's first page",
        matches!(mfn0, Some(m) if m != 0 && m != u32::MAX),
        format_args!("{:?}", mfn0),
    );
    info(format_args!(
        "flags = {:#x}{}{}",
        si.flags,
        if si.flags & abi::SIF_PRIVILEGED != 0 {
            " PRIVILEGED"
        } else {
            ""
        },
        if si.flags & abi::SIF_INITDOMAIN != 0 {
            " INITDOMAIN"
        } else {
            ""
        },
    ));
    info(format_args!("cmd_line = \"{}\"", CStr(&si.cmd_line)));

    // Ring 1 with the flat ring-1 selectors.
    check_eq("running at CPL 1 (cs & 3)", cpu::cpl(), 1);
    check_eq("cs = FLAT_RING1_CS", cpu::cs(), FLAT_RING1_CS);
    check_eq("ss = FLAT_RING1_DS", cpu::ss(), FLAT_RING1_DS);
    check_eq("ds = FLAT_RING1_DS", cpu::ds(), FLAT_RING1_DS);
    check_eq("es = FLAT_RING1_DS", cpu::es(), FLAT_RING1_DS);
    info(format_args!(
        "fs = {:#x}, gs = {:#x}, eflags = {:#x}, esp ~ {:#x}",
        cpu::fs(),
        cpu::gs(),
        cpu::eflags(),
        va(&si)
    ));

    // The 32-bit hypercall page.
    let s0 = stub_bytes(0);
    check(
        "hypercall stub 0: mov $0,%eax; int $0x82; ret",
        s0[..8] == [0xb8, 0, 0, 0, 0, 0xcd, 0x82, 0xc3],
        format_args!("{:02x?}", s0),
    );
    let s23 = stub_bytes(abi::HYPERVISOR_IRET);
    check(
        "hypercall stub 23: push %eax; mov $23,%eax; int $0x82",
        s23[..8] == [0x50, 0xb8, 23, 0, 0, 0, 0xcd, 0x82],
        format_args!("{:02x?}", s23),
    );

    // SAFETY: XENVER_version takes no buffer.
    let ver = unsafe { xen_version(abi::XENVER_VERSION, 0) };
    check(
        "XENVER_version major >= 3",
        ver >> 16 >= 3,
        format_args!("returned {:#x}", ver),
    );
    info(format_args!("version = {}.{}", ver >> 16, ver & 0xffff));

    let mut extra = [0u8; abi::XEN_EXTRAVERSION_LEN];
    // SAFETY: XENVER_extraversion writes 16 bytes.
    let rc = unsafe { xen_version(abi::XENVER_EXTRAVERSION, va(extra.as_mut_ptr())) };
    check_rc("XENVER_extraversion", rc, 0);
    info(format_args!("extraversion = \"{}\"", CStr(&extra)));

    let mut caps = [0u8; abi::XEN_CAPABILITIES_INFO_LEN];
    // SAFETY: XENVER_capabilities writes 1024 bytes.
    let rc = unsafe { xen_version(abi::XENVER_CAPABILITIES, va(caps.as_mut_ptr())) };
    let caps_str = CStr(&caps);
    check(
        "XENVER_capabilities has xen-3.0-x86_32p",
        rc == 0 && contains(caps_str.bytes(), b"xen-3.0-x86_32p"),
        format_args!("returned {}, \"{}\"", rc, caps_str),
    );
    info(format_args!("capabilities = \"{}\"", caps_str));

    // SAFETY: XENVER_pagesize takes no buffer.
    let ps = unsafe { xen_version(abi::XENVER_PAGESIZE, 0) };
    check_eq("XENVER_pagesize", ps, 4096);

    // SAFETY: unassigned hypercalls must not act at all.
    let rc = unsafe { hypercall(60, &[1, 2, 3, 4, 5]) };
    check_rc("hypercall 60 (unassigned)", rc, neg(abi::ENOSYS));
    // SAFETY: as above.
    let rc = unsafe { hypercall(11, &[]) };
    check_rc("hypercall 11 (unassigned)", rc, neg(abi::ENOSYS));
    // SAFETY: as above; 200 is past every hypercall table (and past the
    // page's 128 stubs, hence the bare int $0x82).
    let rc = unsafe { int82(200, [0; 6]) };
    check_rc(
        "int $0x82 with eax = 200 (beyond the table)",
        rc,
        neg(abi::ENOSYS),
    );
    // SAFETY: XENVER_version takes no buffer; the same call as above,
    // without the page.
    let rc = unsafe {
        int82(
            abi::HYPERVISOR_XEN_VERSION,
            [abi::XENVER_VERSION, 0, 0, 0, 0, 0],
        )
    };
    check_eq("bare int $0x82 xen_version = the stub's", rc, ver);

    abi_table::check(contains(CStr(&extra).bytes(), b"ringvisor"));
}
