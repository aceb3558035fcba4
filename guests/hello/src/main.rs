//! `guest-hello`: the smallest useful PV guest, and the demo.
//!
//! Cases:
//! - `start_info.magic`: starts with `xen-3.0-x86_64`.
//! - `start_info.nr_pages`: more than 0.
//! - `start_info.shared_info`: a non-zero, page-aligned machine address
//!   (the runtime has mapped it), and events start masked
//!   (`vcpu_info[0].evtchn_upcall_mask` = 1).
//! - `start_info.pt_base`: page aligned, inside the bootstrap region, with
//!   `nr_pt_frames` > 0; `mfn_list` non-zero.
//! - `start_info.flags` and `cmd_line`: printed (dom0 on Xen has
//!   `SIF_PRIVILEGED | SIF_INITDOMAIN`; a ringvisor domU has neither).
//! - `start_info.mod_start`/`mod_len` (the initrd, when the module after
//!   this one is not a kernel): mapped inside the bootstrap region (this
//!   kernel has no `MOD_START_PFN` note, so `SIF_MOD_START_PFN` is clear),
//!   and its length and FNV-1a 64 hash are printed as `INFO: initrd = N
//!   bytes, fnv1a64 = 0x...` for the host to compare with the file's.
//! - `xen_version(XENVER_version)`: major >= 3 (printed as major.minor).
//! - `XENVER_extraversion`: printed.
//! - `XENVER_capabilities`: contains `xen-3.0-x86_64`.
//! - `XENVER_pagesize`: 4096.
//! - Hypercall 60 (unassigned) and 11 (unassigned): `-ENOSYS`.
//! - Every hypercall 0-63 answers `-ENOSYS` exactly where the table in
//!   `docs/abi.md` says so (64-bit column; `abi_table.rs`, harmless
//!   arguments). Not on ringvisor (`XENVER_extraversion` without
//!   `ringvisor`): the differences are printed as INFO.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]

use pvguest::abi::{self, StartInfo};
use pvguest::console::CStr;
use pvguest::hypercall::{hypercall, xen_version};
use pvguest::report::{check, check_eq, check_rc, info};
use pvguest::{println, start_info};

mod abi_table;

pvguest::guest_main!("hello", run);

fn run(si: &StartInfo) {
    println!("Hello from a ringvisor test guest (64-bit Xen PV)");

    check(
        "start_info magic",
        start_info::check_magic(si).is_ok(),
        format_args!("magic {:?}", CStr(&si.magic).bytes()),
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

    let kstart = pvguest::VIRT_BASE;
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
        "mfn_list present",
        si.mfn_list != 0,
        format_args!("mfn_list = 0"),
    );
    info(format_args!(
        "pt_base = {:#x}, nr_pt_frames = {}, mfn_list = {:#x}",
        si.pt_base, si.nr_pt_frames, si.mfn_list
    ));
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

    if si.mod_len != 0 {
        let mapped = si.flags & abi::SIF_MOD_START_PFN == 0
            && si.mod_start >= kstart
            && si
                .mod_start
                .checked_add(si.mod_len)
                .is_some_and(|e| e <= kend);
        check(
            "initrd mapped in the bootstrap region",
            mapped,
            format_args!(
                "mod_start = {:#x}, mod_len = {}, flags = {:#x}",
                si.mod_start, si.mod_len, si.flags
            ),
        );
        if mapped {
            // SAFETY: the builder mapped [mod_start, mod_start + mod_len)
            // inside the bootstrap region (checked just above), readable.
            let initrd = unsafe {
                core::slice::from_raw_parts(si.mod_start as *const u8, si.mod_len as usize)
            };
            info(format_args!(
                "initrd = {} bytes at {:#x}, fnv1a64 = {:#018x}",
                si.mod_len,
                si.mod_start,
                fnv1a64(initrd)
            ));
        }
    }

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
    let rc = unsafe { xen_version(abi::XENVER_EXTRAVERSION, extra.as_mut_ptr() as u64) };
    check_rc("XENVER_extraversion", rc, 0);
    info(format_args!("extraversion = \"{}\"", CStr(&extra)));

    let mut caps = [0u8; abi::XEN_CAPABILITIES_INFO_LEN];
    // SAFETY: XENVER_capabilities writes 1024 bytes.
    let rc = unsafe { xen_version(abi::XENVER_CAPABILITIES, caps.as_mut_ptr() as u64) };
    let caps_str = CStr(&caps);
    check(
        "XENVER_capabilities has xen-3.0-x86_64",
        rc == 0 && contains(caps_str.bytes(), b"xen-3.0-x86_64"),
        format_args!("returned {}, \"{}\"", rc, caps_str),
    );
    info(format_args!("capabilities = \"{}\"", caps_str));

    // SAFETY: XENVER_pagesize takes no buffer.
    let ps = unsafe { xen_version(abi::XENVER_PAGESIZE, 0) };
    check_eq("XENVER_pagesize", ps, 4096);

    // SAFETY: unassigned hypercalls must not act at all.
    let rc = unsafe { hypercall(60, &[1, 2, 3, 4, 5]) };
    check_rc("hypercall 60 (unassigned)", rc, abi::neg(abi::ENOSYS));
    // SAFETY: as above.
    let rc = unsafe { hypercall(11, &[]) };
    check_rc("hypercall 11 (unassigned)", rc, abi::neg(abi::ENOSYS));

    abi_table::check(contains(CStr(&extra).bytes(), b"ringvisor"));
}

/// FNV-1a, 64-bit: tiny, and easy to compute on the host too.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
