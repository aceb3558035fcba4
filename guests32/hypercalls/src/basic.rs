//! console_io, xen_version, sched_op, vm_assist, physdev_op (set_iopl,
//! then cli/sti), set_segment_base, memory_op, vcpu_op.

use core::arch::asm;
use core::ptr::addr_of_mut;

use pvguest32::abi::{
    self, x86_32::StartInfo32, E820Entry, PhysdevSetIopl, Pod, VcpuSetPeriodicTimer,
    XenMemoryReservation32,
};
use pvguest32::console::{until_nul, CStr};
use pvguest32::hypercall::{self as hc, hypercall};
use pvguest32::report::{check, check_eq, check_rc, check_same, info, Rc};
use pvguest32::start_info::{set_upcall_mask, upcall_mask};
use pvguest32::traps::{catch, Trap};
use pvguest32::va;

use crate::common::*;

pub fn console_io() {
    check_rc(
        "console_io write",
        hc::console_write(b"INFO: console_io write from ring 1\n"),
        0,
    );
    // SAFETY: refused or empty writes; the hypervisor only reads.
    unsafe {
        check_rc(
            "console_io write, unmapped buffer -EFAULT",
            hc::console_io(abi::CONSOLEIO_WRITE, 16, UNMAPPED),
            EFAULT,
        );
        check_rc(
            "console_io write, count 0 (unmapped buffer never read) 0",
            hc::console_io(abi::CONSOLEIO_WRITE, 0, UNMAPPED),
            0,
        );
        check_rc(
            "console_io command 9 -ENOSYS",
            hc::console_io(9, 0, 0),
            ENOSYS,
        );
    }
}

pub fn xen_version() {
    // SAFETY: XENVER_version takes no buffer.
    let v = unsafe { hc::xen_version(abi::XENVER_VERSION, 0) };
    check_eq("XENVER_version 4.17 (docs/abi.md)", v, 4 << 16 | 17);
    info(format_args!("version {}.{}", v >> 16, v & 0xffff));

    let mut extra = [0xffu8; abi::XEN_EXTRAVERSION_LEN];
    // SAFETY: XENVER_extraversion writes 16 bytes.
    let rc = unsafe { hc::xen_version(abi::XENVER_EXTRAVERSION, va(extra.as_mut_ptr())) };
    check(
        "XENVER_extraversion: 0, NUL-terminated in 16 bytes",
        rc == 0 && extra.contains(&0),
        format_args!("returned {}, {:02x?}", Rc(rc), extra),
    );
    info(format_args!("extraversion \"{}\"", CStr(&extra)));

    let mut caps = [0xffu8; abi::XEN_CAPABILITIES_INFO_LEN];
    // SAFETY: XENVER_capabilities writes 1024 bytes.
    let rc = unsafe { hc::xen_version(abi::XENVER_CAPABILITIES, va(caps.as_mut_ptr())) };
    let s = until_nul(&caps);
    // Xen lists every guest type it runs, the same for every guest
    // ("xen-3.0-x86_64 xen-3.0-x86_32p ..."); ringvisor names the caller's
    // own. Either way the 32-bit PAE one must be a word of it.
    check(
        "XENVER_capabilities has the word xen-3.0-x86_32p",
        rc == 0 && s.split(|&b| b == b' ').any(|w| w == b"xen-3.0-x86_32p"),
        format_args!("returned {}, \"{}\"", Rc(rc), CStr(&caps)),
    );
    info(format_args!("capabilities \"{}\"", CStr(&caps)));

    // The 32-bit xen_platform_parameters is one 4-byte word: the next word
    // must stay as it was.
    let mut pp = [0xdead_beefu32; 2];
    // SAFETY: writes the 4-byte compat_platform_parameters.
    let rc = unsafe { hc::xen_version(abi::XENVER_PLATFORM_PARAMETERS, va(pp.as_mut_ptr())) };
    check_rc("XENVER_platform_parameters", rc, 0);
    check_eq(
        "platform_parameters.virt_start 0xF5800000 (HYPERVISOR_COMPAT_VIRT_START)",
        pp[0],
        HV_START,
    );
    check_eq(
        "platform_parameters is 4 bytes (the word after it untouched)",
        pp[1],
        0xdead_beef,
    );

    // SAFETY: XENVER_pagesize takes no buffer.
    let ps = unsafe { hc::xen_version(abi::XENVER_PAGESIZE, 0) };
    check_eq("XENVER_pagesize 4096", ps, 4096);

    let mut fi = abi::XenFeatureInfo {
        submap_idx: 0,
        submap: 0,
    };
    // SAFETY: writes the 8-byte xen_feature_info.
    let rc = unsafe { hc::xen_version(abi::XENVER_GET_FEATURES, va(addr_of_mut!(fi))) };
    check_rc("XENVER_get_features(0)", rc, 0);
    info(format_args!("features submap 0 = {:#x}", fi.submap));

    // SAFETY: refused calls write nothing.
    unsafe {
        check_rc(
            "XENVER_extraversion, unmapped buffer -EFAULT",
            hc::xen_version(abi::XENVER_EXTRAVERSION, UNMAPPED),
            EFAULT,
        );
        check_rc(
            "XENVER_platform_parameters, unmapped buffer -EFAULT",
            hc::xen_version(abi::XENVER_PLATFORM_PARAMETERS, UNMAPPED),
            EFAULT,
        );
        check_rc(
            "XENVER_capabilities into the hypervisor hole (0xF5800000) -EFAULT",
            hc::xen_version(abi::XENVER_CAPABILITIES, HV_START),
            EFAULT,
        );
        check_rc(
            "xen_version command 99 -ENOSYS",
            hc::xen_version(99, 0),
            ENOSYS,
        );
    }
}

pub fn sched_op() {
    // SAFETY: yield has no argument; 99 is no command.
    unsafe {
        check_rc("sched_op yield", hc::sched_op(abi::SCHEDOP_YIELD, 0), 0);
        check_rc("sched_op command 99 -ENOSYS", hc::sched_op(99, 0), ENOSYS);
        check_rc(
            "sched_op_compat yield",
            hypercall(abi::HYPERVISOR_SCHED_OP_COMPAT, &[abi::SCHEDOP_YIELD, 0]),
            0,
        );
    }
}

pub fn vm_assist() {
    let t = abi::VMASST_TYPE_4GB_SEGMENTS;
    check_rc(
        "vm_assist enable type 0 (4gb_segments)",
        hc::vm_assist(abi::VMASST_CMD_ENABLE, t),
        0,
    );
    check_rc(
        "vm_assist disable type 0",
        hc::vm_assist(abi::VMASST_CMD_DISABLE, t),
        0,
    );
    check_rc(
        "vm_assist type 31 -EINVAL",
        hc::vm_assist(abi::VMASST_CMD_ENABLE, 31),
        EINVAL,
    );
    check_rc(
        "vm_assist m2p_strict (32, 64-bit only: PV32_VM_ASSIST_MASK) -EINVAL",
        hc::vm_assist(abi::VMASST_CMD_ENABLE, abi::VMASST_TYPE_M2P_STRICT),
        EINVAL,
    );
    check_rc(
        "vm_assist command 7 on type 0 -ENOSYS",
        hc::vm_assist(7, t),
        ENOSYS,
    );
}

fn set_iopl(iopl: u32) -> i32 {
    let p = PhysdevSetIopl { iopl };
    // SAFETY: the hypervisor only reads the struct; the virtual IOPL only
    // decides whether cli/sti/in/out are emulated.
    unsafe {
        hc::hypercall(
            abi::HYPERVISOR_PHYSDEV_OP,
            &[abi::PHYSDEVOP_SET_IOPL, va(&p)],
        )
    }
}

fn cli_sti() -> Result<(), Trap> {
    // SAFETY: both fault at CPL 1 (real IOPL 0); the hypervisor emulates
    // them or bounces #GP, which unwinds to the catch.
    catch(|| unsafe { asm!("cli", "sti") })
}

pub fn physdev_op() {
    let r = cli_sti();
    check(
        "cli with virtual IOPL 0: #GP(0)",
        matches!(r, Err(t) if t.vector == 13 && t.error_code == 0),
        format_args!("{:?}", r),
    );
    check_rc("physdev_op set_iopl(1)", set_iopl(1), 0);
    let mask = upcall_mask();
    let r = cli_sti();
    check(
        "cli; sti with virtual IOPL 1: emulated, no bounce",
        r.is_ok(),
        format_args!("{:?}", r),
    );
    check_eq("cli; sti leave the upcall mask alone", upcall_mask(), mask);
    set_upcall_mask(0);
    let r = cli_sti();
    check_same(
        "cli; sti with events unmasked: no bounce, mask still 0",
        (r.is_ok(), upcall_mask()),
        (true, 0),
    );
    set_upcall_mask(1);
    check_rc("physdev_op set_iopl(4) -EINVAL", set_iopl(4), EINVAL);
    // SAFETY: refused calls change nothing.
    unsafe {
        check_rc(
            "physdev_op set_iopl, unmapped argument -EFAULT",
            hc::hypercall(
                abi::HYPERVISOR_PHYSDEV_OP,
                &[abi::PHYSDEVOP_SET_IOPL, UNMAPPED],
            ),
            EFAULT,
        );
        check_rc(
            "physdev_op command 99 -ENOSYS",
            hc::hypercall(abi::HYPERVISOR_PHYSDEV_OP, &[99, 0]),
            ENOSYS,
        );
    }
    check_rc("physdev_op set_iopl(0)", set_iopl(0), 0);
    let r = cli_sti();
    check(
        "cli with virtual IOPL 0 again: #GP(0)",
        matches!(r, Err(t) if t.vector == 13 && t.error_code == 0),
        format_args!("{:?}", r),
    );
}

pub fn set_segment_base() {
    // SAFETY: a 32-bit guest has no such hypercall: nothing happens.
    let rc = unsafe { hypercall(abi::HYPERVISOR_SET_SEGMENT_BASE, &[abi::SEGBASE_FS, 0x1000]) };
    check_rc(
        "set_segment_base -ENOSYS (x86-64 only: do_set_segment_base)",
        rc,
        ENOSYS,
    );
}

pub fn memory_op(si: &StartInfo32) {
    // The 32-bit xen_memory_map: { nr_entries, buffer } in 8 bytes; the
    // two words after it must stay as they were.
    let mut map = [E820Entry::zeroed(); 4];
    let mut arg = [4u32, va(map.as_mut_ptr()), 0xdead_beef, 0xdead_beef];
    // SAFETY: the hypervisor writes the struct and up to 4 entries.
    let rc = unsafe { hc::memory_op(abi::XENMEM_MEMORY_MAP, va(arg.as_mut_ptr())) };
    check_rc("XENMEM_memory_map (32-bit xen_memory_map)", rc, 0);
    check_same(
        "memory_map: nr_entries 1, buffer kept, 8-byte struct",
        arg,
        [1, va(map.as_ptr()), 0xdead_beef, 0xdead_beef],
    );
    let e = map[0];
    let (addr, size, ty) = ({ e.addr }, { e.size }, { e.type_ });
    check(
        "memory_map entry: RAM from 0, at least nr_pages pages",
        addr == 0 && ty == 1 && size % 4096 == 0 && size >= u64::from(si.nr_pages) * 4096,
        format_args!("addr {:#x} size {:#x} type {}", addr, size, ty),
    );
    info(format_args!("memory_map: {:#x} bytes of RAM", size));
    let mut arg = [1u32, UNMAPPED];
    // SAFETY: refused calls write nothing of ours.
    unsafe {
        check_rc(
            "memory_map, unmapped argument -EFAULT",
            hc::memory_op(abi::XENMEM_MEMORY_MAP, UNMAPPED),
            EFAULT,
        );
        check_rc(
            "memory_map, unmapped buffer -EFAULT",
            hc::memory_op(abi::XENMEM_MEMORY_MAP, va(arg.as_mut_ptr())),
            EFAULT,
        );
    }

    // The machine's map, in the same 8-byte struct: the initial domain's
    // only (Xen: XSM_PRIV), -EPERM for the others.
    let mut machine = [E820Entry::zeroed(); 32];
    let mut arg = [32u32, va(machine.as_mut_ptr()), 0xdead_beef];
    // SAFETY: the hypervisor writes the struct and up to 32 entries, or nothing.
    let rc = unsafe { hc::memory_op(abi::XENMEM_MACHINE_MEMORY_MAP, va(arg.as_mut_ptr())) };
    if si.flags & abi::SIF_PRIVILEGED != 0 {
        let n = arg[0] as usize;
        let ram = machine[..n.min(32)]
            .iter()
            .any(|e| e.type_ == 1 && { e.size } > 0);
        check(
            "XENMEM_machine_memory_map (32-bit struct, initial domain): 0, entries, RAM among them",
            rc == 0 && (1..=32).contains(&n) && arg[2] == 0xdead_beef && ram,
            format_args!("returned {} with {} entries", Rc(rc), n),
        );
    } else {
        check_rc(
            "XENMEM_machine_memory_map (not the initial domain): -EPERM",
            rc,
            EPERM,
        );
    }

    let me = abi::DOMID_SELF;
    // SAFETY: the queries only read the domid.
    unsafe {
        check_rc(
            "XENMEM_current_reservation(DOMID_SELF) = nr_pages",
            hc::memory_op(abi::XENMEM_CURRENT_RESERVATION, va(&me)),
            si.nr_pages as i32,
        );
        let max = hc::memory_op(abi::XENMEM_MAXIMUM_RESERVATION, va(&me));
        check(
            "XENMEM_maximum_reservation(DOMID_SELF) >= nr_pages",
            max >= si.nr_pages as i32,
            format_args!("returned {}", Rc(max)),
        );
        let top = hc::memory_op(abi::XENMEM_MAXIMUM_RAM_PAGE, 0);
        check(
            "XENMEM_maximum_ram_page > 0",
            top > 0,
            format_args!("returned {}", Rc(top)),
        );
        info(format_args!(
            "maximum_reservation {} pages, maximum_ram_page {:#x}",
            max, top
        ));
        check_rc(
            "XENMEM_current_reservation, unmapped argument -EFAULT",
            hc::memory_op(abi::XENMEM_CURRENT_RESERVATION, UNMAPPED),
            EFAULT,
        );
    }
    // The 20-byte 32-bit reservation with its list of 4-byte frame
    // numbers (compat_memory_op): empty lists change nothing and answer 0
    // extents done; the round trip with a real frame is in mm.rs.
    let mut list = [0u32; 1];
    let r = XenMemoryReservation32 {
        extent_start: va(list.as_mut_ptr()),
        nr_extents: 0,
        extent_order: 0,
        mem_flags: 0,
        domid: abi::DOMID_SELF,
        _pad0: 0,
    };
    for (name, cmd) in [
        (
            "XENMEM_increase_reservation of no extents: 0",
            abi::XENMEM_INCREASE_RESERVATION,
        ),
        (
            "XENMEM_decrease_reservation of no extents: 0",
            abi::XENMEM_DECREASE_RESERVATION,
        ),
        (
            "XENMEM_populate_physmap of no extents: 0",
            abi::XENMEM_POPULATE_PHYSMAP,
        ),
    ] {
        // SAFETY: no extents: nothing changes.
        check_rc(name, unsafe { hc::memory_op(cmd, va(&r)) }, 0);
    }
    // SAFETY: no such command.
    check_rc(
        "memory_op command 63 -ENOSYS",
        unsafe { hc::memory_op(63, 0) },
        ENOSYS,
    );
}

pub fn vcpu_op() {
    // SAFETY: queries, timers, refused calls, and a runstate area in a
    // local array that is unregistered (~0) before it goes out of scope.
    unsafe {
        check_rc(
            "vcpu_op is_up(0) = 1",
            hc::vcpu_op(abi::VCPUOP_IS_UP, 0, 0),
            1,
        );
        check_rc(
            "vcpu_op is_up(31) -ENOENT",
            hc::vcpu_op(abi::VCPUOP_IS_UP, 31, 0),
            ENOENT,
        );
        check_rc(
            "vcpu_op up(0), already up",
            hc::vcpu_op(abi::VCPUOP_UP, 0, 0),
            0,
        );
        let short = VcpuSetPeriodicTimer { period_ns: 500_000 };
        check_rc(
            "vcpu_op set_periodic_timer 0.5 ms -EINVAL",
            hc::vcpu_op(abi::VCPUOP_SET_PERIODIC_TIMER, 0, va(&short)),
            EINVAL,
        );
        let ok = VcpuSetPeriodicTimer {
            period_ns: 20_000_000,
        };
        check_rc(
            "vcpu_op set_periodic_timer 20 ms",
            hc::vcpu_op(abi::VCPUOP_SET_PERIODIC_TIMER, 0, va(&ok)),
            0,
        );
        check_rc(
            "vcpu_op stop_periodic_timer",
            hc::vcpu_op(abi::VCPUOP_STOP_PERIODIC_TIMER, 0, 0),
            0,
        );
        check_rc(
            "vcpu_op stop_singleshot_timer",
            hc::vcpu_op(abi::VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0),
            0,
        );
        // The runstate and the single-shot timer in their 32-bit layouts
        // (Xen's compat_vcpu_op): a 44-byte vcpu_runstate_info (the u64s
        // 4-byte aligned: entry time at 4, times at 12), a 12-byte
        // vcpu_set_singleshot_timer.
        let mut info = [0xa5a5_a5a5u32; 12];
        check_rc(
            "vcpu_op get_runstate_info (32-bit layout)",
            hc::vcpu_op(abi::VCPUOP_GET_RUNSTATE_INFO, 0, va(info.as_mut_ptr())),
            0,
        );
        let running = u64::from(info[3]) | u64::from(info[4]) << 32;
        check(
            "  ... running (state 0) since a time, time running > 0, 44 bytes written",
            info[0] == abi::vcpu::RUNSTATE_RUNNING as u32
                && (info[1] | info[2]) != 0
                && running > 0
                && info[11] == 0xa5a5_a5a5,
            format_args!("{info:08x?}"),
        );
        let area = [0xa5a5_a5a5u32; 12];
        let handle = [va(area.as_ptr()), 0xdead_beef];
        check_rc(
            "vcpu_op register_runstate_memory_area (a 4-byte handle)",
            hc::vcpu_op(
                abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
                0,
                va(handle.as_ptr()),
            ),
            0,
        );
        // Read as memory the hypervisor writes behind the compiler's back.
        let seen = core::ptr::read_volatile(&area);
        check(
            "  ... written at once: running, 44 bytes",
            seen[0] == abi::vcpu::RUNSTATE_RUNNING as u32 && seen[11] == 0xa5a5_a5a5,
            format_args!("{seen:08x?}"),
        );
        let hole = [abi::x86_32::HYPERVISOR_COMPAT_VIRT_START - 8, 0];
        check_rc(
            "vcpu_op register_runstate_memory_area reaching the hypervisor's hole: -EFAULT",
            hc::vcpu_op(
                abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
                0,
                va(hole.as_ptr()),
            ),
            EFAULT,
        );
        let stop = [!0u32, 0];
        check_rc(
            "vcpu_op register_runstate_memory_area ~0 (stop)",
            hc::vcpu_op(
                abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
                0,
                va(stop.as_ptr()),
            ),
            0,
        );
        // { timeout_abs_ns: u64 (two words), flags }: far away, then past
        // with VCPU_SSHOTTMR_future (-ETIME, Xen's answer).
        let far = [0, 0x4000_0000u32, 0];
        check_rc(
            "vcpu_op set_singleshot_timer (12-byte layout), far in the future",
            hc::vcpu_op(abi::VCPUOP_SET_SINGLESHOT_TIMER, 0, va(far.as_ptr())),
            0,
        );
        let past = [1u32, 0, abi::vcpu::VCPU_SSHOTTMR_FUTURE];
        check_rc(
            "vcpu_op set_singleshot_timer, past with VCPU_SSHOTTMR_future: -ETIME",
            hc::vcpu_op(abi::VCPUOP_SET_SINGLESHOT_TIMER, 0, va(past.as_ptr())),
            -(abi::ETIME),
        );
        check_rc(
            "vcpu_op stop_singleshot_timer",
            hc::vcpu_op(abi::VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0),
            0,
        );
        let buf = [0u32; 32];
        // The 32-bit vcpu_guest_context is translated now: vCPU 0 runs
        // already (Xen: -EEXIST), a vCPU that does not exist is -ENOENT.
        check_rc(
            "vcpu_op initialise of the running vCPU 0: -EEXIST",
            hc::vcpu_op(abi::VCPUOP_INITIALISE, 0, va(buf.as_ptr())),
            -17,
        );
        check_rc(
            "vcpu_op initialise of vCPU 40: -ENOENT",
            hc::vcpu_op(abi::VCPUOP_INITIALISE, 40, va(buf.as_ptr())),
            -2,
        );
    }
}
