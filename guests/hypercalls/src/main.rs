//! `guest-hypercalls`: good and bad arguments, and the privileged
//! instructions a PV kernel expects to be emulated. Expected values are
//! Xen 4.17's (checked on real Xen; see guests/README.md).
//!
//! Cases:
//! - `set_trap_table`: a good table → 0; a pointer to unmapped memory or
//!   into the hypervisor's range → `-EFAULT`; an entry with a
//!   non-canonical address → `-EINVAL`; NULL → 0 (Xen: clears the table).
//! - `callback_op` register: event, failsafe, syscall, syscall32,
//!   sysenter, nmi all → 0; type 3 (`sysenter_deprecated`) and 6 →
//!   `-ENOSYS` (Xen's answer for an unknown type); a non-canonical address
//!   → `-EINVAL`; an unmapped argument → `-EFAULT`; command 2 → `-ENOSYS`.
//!   Unregister: event → `-EINVAL` (cannot be unregistered), nmi → 0.
//! - `stack_switch` → 0, also with Linux's `__KERNEL_DS` (0x18, RPL 0:
//!   Xen raises the RPL, do_stack_switch never refuses) and with a null
//!   selector; then back to `FLAT_KERNEL_SS`.
//! - `fpu_taskswitch(1)` → 0, CR0.TS reads 1, `fninit` → #NM (rip at it),
//!   after which TS reads 0 (Xen clears the virtual TS when it bounces #NM);
//!   `fpu_taskswitch(1)` then `(0)`: TS reads 0 and `fninit` runs.
//! - `set_segment_base(SEGBASE_FS / SEGBASE_GS_KERNEL, &v)` → 0 and
//!   `%fs:0` / `%gs:0` read `v`; a non-canonical base → `-EINVAL`; an
//!   unknown selector (9) → `-EINVAL`.
//! - `vm_assist`: enable/disable `runstate_update_flag` → 0; type 31 →
//!   `-EINVAL`; command 7 on a valid type → `-ENOSYS`.
//! - `console_io`: a 430-byte line with a control byte (the harness checks
//!   its 200-byte pieces); write with an unmapped buffer or one in the hypervisor's
//!   range → `-EFAULT`; count 0 → 0; command 9 → `-ENOSYS`.
//! - `sched_op`: yield → 0; command 99 → `-ENOSYS`.
//! - `update_va_mapping` of an address in the hypervisor's range →
//!   `-EINVAL`; `mmuext_op(TLB_FLUSH_LOCAL)` → 0; `vcpu_op(is_up, 0)` → 1,
//!   `vcpu_op(is_up, 31)` → `-ENOENT`; unknown `memory_op` and
//!   `physdev_op` commands → `-ENOSYS`.
//! - Forced-emulation CPUID (`0f 0b 78 65 6e 0f a2`) of leaf 0x40000000:
//!   "XenVMMXenVMM", eax >= 0x40000002.
//! - `mov %cr0`: PE and PG set. `mov %cr3`: the MFN of `pt_base` << 12.
//! - `cli` with virtual IOPL 0 → #GP(0). `physdev_op(set_iopl, 1)` → 0,
//!   then `cli` and `sti` are emulated as no-ops (Xen 4.17 does not touch
//!   the upcall mask for them).
//!   `set_iopl(4)` → `-EINVAL`.
//! - `multicall` (multicall.rs): [xen_version, is_up(0), op 63,
//!   is_up(31)] → 0 and each `result` (version, 1, `-ENOSYS`,
//!   `-ENOENT`); a nested multicall entry → its result `-EINVAL`, the
//!   inner list not run, the next entry run; an unmapped list → `-EFAULT`
//!   (0 entries → 0); 200 xen_version entries (continuations) → 0, every
//!   result written; [iret, xen_version] made with `syscall` below an iret
//!   frame (as XTF's xsa-213) → back at the frame's rip with its rax, the
//!   xen_version entry not run, the iret entry's result the frame's rax
//!   (Xen's `do_iret` return value).
//! - `set_debugreg`/`get_debugreg` (debugreg.rs): DR0-3 = guest addresses
//!   → 0, read back; a hypervisor address → `-EPERM`; DR6 = 0 → reads
//!   0xffff0ff0, upper half → `-EINVAL`; DR7 = 1 → reads 0x401; GD or an
//!   I/O breakpoint → `-EPERM`, upper half → `-EINVAL`; register 8 →
//!   `-ENODEV` (set), `-EINVAL` (get); `mov` to/from `%dr1`/`%dr6` as the
//!   hypercalls; a refused `mov` to `%dr0`/`%dr7` → #GP(0).
//! - `grant_table_op` (grant.rs), the domain's own grants (its id: 0 as
//!   the initial domain, else `domid=N`): query_size, setup_table (count
//!   2 → `-EINVAL`; 8-byte frame list), copy → `-ENOSYS` (ringvisor);
//!   frame 0 mapped writable, a grant of an own page mapped by address →
//!   status 0, the page's pattern visible, GTF_reading|GTF_writing; an
//!   `mmu_update`/`update_va_mapping` over that PTE → `-EINVAL` (Xen
//!   crashes the domain); unmap with a bad handle → `GNTST_bad_handle`,
//!   unmap → 0, #PF there, GTF bits clear; by PTE: misaligned →
//!   `GNTST_general_error`, aligned → 0 and unmapped by PTE; ref 100000 →
//!   `GNTST_bad_gntref`; a readonly grant writable →
//!   `GNTST_general_error`, readonly → 0 (GTF_reading only, a write #PF);
//!   DOMID_SELF as `dom` → `GNTST_bad_domain`; a device map →
//!   `dev_bus_addr` = frame << 12, unmap with the wrong one →
//!   `GNTST_bad_dev_addr`; v2: set_version 2, get_version 2,
//!   get_status_frames, the status frame writable → `-EINVAL`, read-only
//!   → 0; a v2 map → status word GTF_reading|GTF_writing; set_version 1
//!   while a grant or the status frame is mapped → `-EBUSY`, after → 0.
//! - `XENMEM_exchange` (exchange.rs): the last page (mapped nowhere) for a
//!   new frame → 0, nr_exchanged 1, the M2P maps it to the pfn,
//!   `MMU_MACHPHYS_UPDATE` of it → 0, of the old one → `-EPERM` (Xen:
//!   `-EINVAL`); nr_exchanged == nr_extents → 0 with unmapped lists; 1 in
//!   for 2 out, or nr_exchanged > nr_extents → `-EINVAL`; the out list in
//!   the hypervisor's range → `-EFAULT` (XSA-212); two pages for an
//!   order-1 extent below 4 GiB (`XENMEMF_address_bits(32)`) → 0, an
//!   aligned pair, the M2P from the out list's page; the pair for two
//!   pages → 0; one frame named twice → `-EINVAL`, nothing done; order 13
//!   → `-EPERM`; a page given back, then `populate_physmap` of page
//!   nr_pages + 5 → 1 done, the M2P says that page (as Xen: any page
//!   number), with the reservation full → 0 done.
//! - platform.rs, as Xen 4.17 answers a dom0 on a machine whose hardware
//!   ringvisor does not hand out: `platform_op` (interface version
//!   `-EACCES`, unmapped `-EFAULT`; from a domU `-EPERM`; settime64 moves
//!   shared_info's wall clock, mbz `-EINVAL`, settime32 moves it back;
//!   firmware_info disk/MBR/EDID `-ESRCH`, EFI `-ENOSYS`, keyboard flags 0,
//!   index 1 `-ESRCH`, type 99 `-EINVAL`; get_cpuinfo CPU 0 online, CPU 1
//!   invalid; get_cpu_version the CPUID vendor; cpu_online/offline,
//!   change_freq, getidletime, enter_acpi_sleep S5 `-EPERM` and S3
//!   `-EOPNOTSUPP`, platform_quirk, command 99); `mca`
//!   (version `-EACCES`, physcpuinfo one CPU and its MCG_CAP, fetch's
//!   checks and "no data", notifydomain `-EINVAL`; domU `-EPERM`);
//!   `physdev_op` apic_read/setup_gsi/map_pirq (`-EINVAL`, MSI `-ENODEV`,
//!   domain 999 `-ESRCH`; domU `-EPERM`), pirq_eoi_gmfn (not ours
//!   `-EINVAL`, ours 0, again `-EBUSY`); `xenpmu_op(init)` `-EOPNOTSUPP`;
//!   `set_priority` (bad port `-EINVAL`, a port of ours `-ENOSYS`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code, unused_imports))]
#![allow(clippy::result_large_err)]

use core::arch::asm;

use pvguest::abi::{self, StartInfo};
use pvguest::cell::GuestCell;
use pvguest::cpu::{self, CR0_PE, CR0_PG, CR0_TS};
use pvguest::hypercall as hc;
use pvguest::report::{check, check_eq, check_rc, fail, info, pass, Rc};
use pvguest::start_info;
use pvguest::traps::{self, catch, expect_fault, trap_info, TRAP_TABLE_END};

pvguest::guest_main!("hypercalls", run);

mod debugreg;
mod exchange;
mod grant;
mod multicall;
mod platform;

/// Canonical and unmapped.
const UNMAPPED: u64 = 0x0000_0000_dead_b000;
/// Inside the hypervisor's range (0xffff800000000000..0xffff880000000000):
/// where Xen and ringvisor keep their own text.
const HV_ADDR: u64 = 0xffff_82d0_8000_0000;
/// Not canonical.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

const EFAULT: i64 = abi::neg(abi::EFAULT);
const EINVAL: i64 = abi::neg(abi::EINVAL);
const EPERM: i64 = abi::neg(abi::EPERM);
const ENOSYS: i64 = abi::neg(abi::ENOSYS);
const ENOENT: i64 = abi::neg(abi::ENOENT);

static AT: GuestCell<u64> = GuestCell::new(0);

fn run(si: &StartInfo) {
    set_trap_table();
    callback_op();
    stack_switch();
    fpu_taskswitch();
    set_segment_base();
    vm_assist();
    console_io();
    sched_op();
    memory_ops();
    cpuid();
    control_registers(si);
    cli();
    multicall::run();
    debugreg::run();
    grant::run();
    exchange::run();
    platform::run();
}

fn set_trap_table() {
    traps::install_default_trap_table();
    pass("set_trap_table good table");
    // SAFETY: refused calls; nothing changes.
    unsafe {
        check_rc(
            "set_trap_table unmapped pointer",
            hc::set_trap_table(UNMAPPED),
            EFAULT,
        );
        check_rc(
            "set_trap_table hypervisor pointer",
            hc::set_trap_table(HV_ADDR),
            EFAULT,
        );
    }
    let mut bad = trap_info(6, 0, true);
    bad.address = NON_CANONICAL;
    check_rc(
        "set_trap_table non-canonical address",
        traps::set_trap_table(&[bad, TRAP_TABLE_END]),
        EINVAL,
    );
    // SAFETY: NULL clears the table; it is installed again right after.
    check_rc("set_trap_table NULL", unsafe { hc::set_trap_table(0) }, 0);
    traps::install_default_trap_table();
}

fn callback_op() {
    for (name, ty, flags) in [
        ("event", abi::CALLBACKTYPE_EVENT, 0),
        (
            "failsafe",
            abi::CALLBACKTYPE_FAILSAFE,
            abi::CALLBACKF_MASK_EVENTS,
        ),
        (
            "syscall",
            abi::CALLBACKTYPE_SYSCALL,
            abi::CALLBACKF_MASK_EVENTS,
        ),
        (
            "syscall32",
            abi::CALLBACKTYPE_SYSCALL32,
            abi::CALLBACKF_MASK_EVENTS,
        ),
        (
            "sysenter",
            abi::CALLBACKTYPE_SYSENTER,
            abi::CALLBACKF_MASK_EVENTS,
        ),
        ("nmi", abi::CALLBACKTYPE_NMI, 0),
    ] {
        let rc = traps::register_callback(ty, flags);
        check(
            name_case("callback_op register ", name).as_str(),
            rc == 0,
            format_args!("returned {}", pvguest::report::Rc(rc)),
        );
    }
    let addr = traps::entry_address(traps::VEC_SYSCALL).unwrap();
    // SAFETY: refused registrations change nothing.
    unsafe {
        check_rc(
            "callback_op type 3 (sysenter_deprecated)",
            hc::register_callback(abi::CALLBACKTYPE_SYSENTER_DEPRECATED, 0, addr),
            ENOSYS,
        );
        check_rc(
            "callback_op type 6",
            hc::register_callback(6, 0, addr),
            ENOSYS,
        );
        check_rc(
            "callback_op non-canonical address",
            hc::register_callback(abi::CALLBACKTYPE_EVENT, 0, NON_CANONICAL),
            EINVAL,
        );
        check_rc(
            "callback_op unmapped argument",
            hc::callback_op(abi::CALLBACKOP_REGISTER, UNMAPPED),
            EFAULT,
        );
        let r = abi::CallbackRegister {
            type_: abi::CALLBACKTYPE_EVENT,
            flags: 0,
            _pad0: 0,
            address: addr,
        };
        check_rc(
            "callback_op command 2",
            hc::callback_op(2, &r as *const _ as u64),
            ENOSYS,
        );
        let u = abi::CallbackUnregister {
            type_: abi::CALLBACKTYPE_EVENT,
            _unused: 0,
        };
        check_rc(
            "callback_op unregister event",
            hc::callback_op(abi::CALLBACKOP_UNREGISTER, &u as *const _ as u64),
            EINVAL,
        );
        let u = abi::CallbackUnregister {
            type_: abi::CALLBACKTYPE_NMI,
            _unused: 0,
        };
        check_rc(
            "callback_op unregister nmi",
            hc::callback_op(abi::CALLBACKOP_UNREGISTER, &u as *const _ as u64),
            0,
        );
        // The older nmi_op: { handler_address, pad }.
        let cb = [addr, 0u64];
        check_rc(
            "nmi_op register_callback",
            hc::hypercall5(abi::HYPERVISOR_NMI_OP, 0, cb.as_ptr() as u64, 0, 0, 0),
            0,
        );
        let bad = [NON_CANONICAL, 0u64];
        check_rc(
            "nmi_op register_callback, non-canonical: -EINVAL",
            hc::hypercall5(abi::HYPERVISOR_NMI_OP, 0, bad.as_ptr() as u64, 0, 0, 0),
            EINVAL,
        );
        check_rc(
            "nmi_op register_callback, unmapped argument: -EFAULT",
            hc::hypercall5(abi::HYPERVISOR_NMI_OP, 0, UNMAPPED, 0, 0, 0),
            EFAULT,
        );
        check_rc(
            "nmi_op unregister_callback",
            hc::hypercall5(abi::HYPERVISOR_NMI_OP, 1, 0, 0, 0, 0),
            0,
        );
        check_rc(
            "nmi_op command 2: -ENOSYS",
            hc::hypercall5(abi::HYPERVISOR_NMI_OP, 2, 0, 0, 0, 0),
            ENOSYS,
        );
    }
    // The event callback again, in case a refused call replaced it.
    check_rc(
        "callback_op register event again",
        traps::register_callback(abi::CALLBACKTYPE_EVENT, 0),
        0,
    );
}

fn stack_switch() {
    // SAFETY: the stack is unused otherwise.
    let rc = unsafe { hc::stack_switch(abi::FLAT_KERNEL_SS.into(), traps::KERNEL_STACK.top()) };
    check_rc("stack_switch", rc, 0);
    // Linux's context switch passes __KERNEL_DS (0x18) with RPL 0.
    // SAFETY: as above; the stack goes back to FLAT_KERNEL_SS below.
    let rc = unsafe { hc::stack_switch(0x18, traps::KERNEL_STACK.top()) };
    check_rc("stack_switch(ss 0x18, Linux's __KERNEL_DS)", rc, 0);
    // SAFETY: as above.
    let rc = unsafe { hc::stack_switch(0, traps::KERNEL_STACK.top()) };
    check_rc("stack_switch(null ss)", rc, 0);
    // SAFETY: as above.
    let rc = unsafe { hc::stack_switch(abi::FLAT_KERNEL_SS.into(), traps::KERNEL_STACK.top()) };
    check_rc("stack_switch back to FLAT_KERNEL_SS", rc, 0);
}

fn fninit() -> Result<(), traps::Trap> {
    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    catch(|| unsafe {
        asm!(
            "lea {t}, [rip + 2f]",
            "mov [{at}], {t}",
            "2: fninit",
            t = out(reg) _,
            at = in(reg) AT.as_ptr(),
        )
    })
}

fn fpu_taskswitch() {
    check_rc("fpu_taskswitch(1)", hc::fpu_taskswitch(1), 0);
    check_eq(
        "CR0.TS after fpu_taskswitch(1)",
        cpu::read_cr0() & CR0_TS,
        CR0_TS,
    );
    match fninit() {
        Err(t) if t.vector == 7 => {
            pass("fninit with TS: #NM");
            check_eq("#NM rip at the fninit", t.rip, AT.get());
            check_eq("#NM no error code", t.error_code, 0);
        }
        r => fail("fninit with TS: #NM", format_args!("{:?}", r)),
    }
    check_eq(
        "CR0.TS cleared by the #NM bounce",
        cpu::read_cr0() & CR0_TS,
        0,
    );

    check_rc("fpu_taskswitch(1) again", hc::fpu_taskswitch(1), 0);
    check_rc("fpu_taskswitch(0)", hc::fpu_taskswitch(0), 0);
    check_eq(
        "CR0.TS after fpu_taskswitch(0)",
        cpu::read_cr0() & CR0_TS,
        0,
    );
    check(
        "fninit without TS runs",
        fninit().is_ok(),
        format_args!("trapped: {}", traps::last()),
    );
}

static FS_VALUE: GuestCell<u64> = GuestCell::new(0x0123_4567_89ab_cdef);
static GS_VALUE: GuestCell<u64> = GuestCell::new(0xfeed_face_cafe_beef);

fn set_segment_base() {
    // SAFETY: nothing in this guest uses %fs or %gs.
    unsafe {
        let rc = hc::set_segment_base(abi::SEGBASE_FS, FS_VALUE.as_ptr() as u64);
        if check_rc("set_segment_base(FS)", rc, 0) {
            let v: u64;
            asm!("mov {}, fs:[0]", out(reg) v);
            check_eq("%fs:0 reads through the new base", v, FS_VALUE.get());
        }
        let rc = hc::set_segment_base(abi::SEGBASE_GS_KERNEL, GS_VALUE.as_ptr() as u64);
        if check_rc("set_segment_base(GS_KERNEL)", rc, 0) {
            let v: u64;
            asm!("mov {}, gs:[0]", out(reg) v);
            check_eq("%gs:0 reads through the new base", v, GS_VALUE.get());
        }
        check_rc(
            "set_segment_base(FS, non-canonical)",
            hc::set_segment_base(abi::SEGBASE_FS, NON_CANONICAL),
            EINVAL,
        );
        check_rc("set_segment_base(9, 0)", hc::set_segment_base(9, 0), EINVAL);
        hc::set_segment_base(abi::SEGBASE_FS, 0);
        hc::set_segment_base(abi::SEGBASE_GS_KERNEL, 0);
    }
}

fn vm_assist() {
    let t = abi::VMASST_TYPE_RUNSTATE_UPDATE_FLAG;
    check_rc(
        "vm_assist enable runstate_update_flag",
        hc::vm_assist(abi::VMASST_CMD_ENABLE, t),
        0,
    );
    check_rc(
        "vm_assist disable runstate_update_flag",
        hc::vm_assist(abi::VMASST_CMD_DISABLE, t),
        0,
    );
    check_rc(
        "vm_assist type 31",
        hc::vm_assist(abi::VMASST_CMD_ENABLE, 31),
        EINVAL,
    );
    check_rc("vm_assist command 7", hc::vm_assist(7, t), ENOSYS);
}

fn console_io() {
    // SAFETY: refused or empty writes.
    unsafe {
        check_rc(
            "console_io write, unmapped buffer",
            hc::console_io(abi::CONSOLEIO_WRITE, 16, UNMAPPED),
            EFAULT,
        );
        check_rc(
            "console_io write, hypervisor buffer",
            hc::console_io(abi::CONSOLEIO_WRITE, 16, HV_ADDR),
            EFAULT,
        );
        check_rc(
            "console_io write, count 0",
            hc::console_io(abi::CONSOLEIO_WRITE, 0, UNMAPPED),
            0,
        );
        check_rc("console_io command 9", hc::console_io(9, 0, 0), ENOSYS);
    }
    // One write of a line longer than the hypervisor keeps (200 bytes),
    // with a control character: the harness (tests/tests/pv64.rs) checks
    // it comes out as lines of 200, 200 and 29, the control byte as `?`.
    let mut line = [0u8; 430];
    for (i, b) in line.iter_mut().enumerate() {
        *b = b'a' + (i % 26) as u8;
    }
    line[..14].copy_from_slice(b"CONSOLE-SPLIT:");
    line[300] = 0x01;
    line[429] = b'\n';
    check_rc(
        "console_io write of a 430-byte line",
        // SAFETY: our own buffer, read by the hypervisor.
        unsafe {
            hc::console_io(
                abi::CONSOLEIO_WRITE,
                line.len() as u64,
                line.as_ptr() as u64,
            )
        },
        0,
    );
}

fn sched_op() {
    // SAFETY: yield has no argument; 99 is no command.
    unsafe {
        check_rc("sched_op yield", hc::sched_op(abi::SCHEDOP_YIELD, 0), 0);
        check_rc("sched_op command 99", hc::sched_op(99, 0), ENOSYS);
    }
}

fn memory_ops() {
    // SAFETY: refused calls, a TLB flush and queries.
    unsafe {
        check_rc(
            "update_va_mapping in the hypervisor's range",
            hc::update_va_mapping(HV_ADDR, 0, abi::UVMF_INVLPG),
            EINVAL,
        );
        // The same with the page owner named: DOMID_SELF is update_va_mapping.
        check_rc(
            "update_va_mapping_otherdomain(DOMID_SELF) in the hypervisor's range",
            hc::hypercall5(
                abi::HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN,
                HV_ADDR,
                0,
                abi::UVMF_INVLPG,
                abi::DOMID_SELF as u64,
                0,
            ),
            EINVAL,
        );
        // The old physdev_op form, { cmd, union at 8 }: IOPL 1, 4 (-EINVAL),
        // then back to 0 (the later checks expect it).
        for (iopl, name, want) in [(1u64, "1", 0), (4, "4", EINVAL), (0, "0", 0)] {
            let op = [abi::PHYSDEVOP_SET_IOPL as u64, iopl, 0];
            check_rc(
                name_case("physdev_op_compat set_iopl ", name).as_str(),
                hc::hypercall5(
                    abi::HYPERVISOR_PHYSDEV_OP_COMPAT,
                    op.as_ptr() as u64,
                    0,
                    0,
                    0,
                    0,
                ),
                want,
            );
        }
        check_rc(
            "physdev_op_compat, unmapped argument: -EFAULT",
            hc::hypercall5(abi::HYPERVISOR_PHYSDEV_OP_COMPAT, UNMAPPED, 0, 0, 0, 0),
            EFAULT,
        );
        check_rc(
            "mmuext_op TLB_FLUSH_LOCAL",
            hc::mmuext1(abi::MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
            0,
        );
        check_rc("vcpu_op is_up 0", hc::vcpu_op(abi::VCPUOP_IS_UP, 0, 0), 1);
        check_rc(
            "vcpu_op is_up 31",
            hc::vcpu_op(abi::VCPUOP_IS_UP, 31, 0),
            ENOENT,
        );
        check_rc("memory_op command 63", hc::memory_op(63, 0), ENOSYS);
        check_rc("physdev_op command 99", hc::physdev_op(99, 0), ENOSYS);
    }
    // VCPUOP_register_runstate_memory_area: the hypervisor keeps a copy
    // there (Linux BUG()s if it cannot register one): written at once,
    // the same as get_runstate_info, the running state.
    static AREA: GuestCell<abi::VcpuRunstateInfo> = GuestCell::new(abi::VcpuRunstateInfo {
        state: -1,
        _pad0: 0,
        state_entry_time: 0,
        time: [0; 4],
    });
    let reg = abi::VcpuRegisterRunstateMemoryArea {
        addr: AREA.as_ptr() as u64,
    };
    // SAFETY: the hypervisor writes 48 bytes at AREA, ours.
    let rc = unsafe {
        hc::vcpu_op(
            abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            0,
            &reg as *const _ as u64,
        )
    };
    let a = AREA.get();
    check(
        "VCPUOP_register_runstate_memory_area: 0, written at once: running, entered at a real time",
        rc == 0 && a.state == abi::RUNSTATE_RUNNING && a.state_entry_time > 0,
        format_args!(
            "rc {} state {} entry {}",
            Rc(rc),
            a.state,
            a.state_entry_time
        ),
    );
    let mut r = abi::VcpuRunstateInfo {
        state: -1,
        _pad0: 0,
        state_entry_time: 0,
        time: [0; 4],
    };
    // SAFETY: the hypervisor writes one vcpu_runstate_info into `r`.
    let rc = unsafe { hc::vcpu_op(abi::VCPUOP_GET_RUNSTATE_INFO, 0, &mut r as *mut _ as u64) };
    check(
        "  ... get_runstate_info agrees with the area",
        rc == 0 && r.state == a.state && r.state_entry_time == a.state_entry_time,
        format_args!(
            "rc {} state {} entry {}",
            Rc(rc),
            r.state,
            r.state_entry_time
        ),
    );
    let off = abi::VcpuRegisterRunstateMemoryArea { addr: !0 };
    // SAFETY: ~0: no area any more.
    let rc = unsafe {
        hc::vcpu_op(
            abi::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            0,
            &off as *const _ as u64,
        )
    };
    check_rc("  ... ~0 stops it: 0", rc, 0);
    // XENMEM_machphys_mapping: where the M2P is (Xen's 64-bit range).
    let mut m = abi::XenMachphysMapping {
        v_start: 0,
        v_end: 0,
        max_mfn: 0,
    };
    // SAFETY: the hypervisor writes the struct, ours.
    let rc = unsafe { hc::memory_op(abi::XENMEM_MACHPHYS_MAPPING, &mut m as *mut _ as u64) };
    check(
        "XENMEM_machphys_mapping: 0, Xen's M2P range 0xffff800000000000-0xffff804000000000",
        rc == 0
            && m.v_start == 0xffff_8000_0000_0000
            && m.v_end == 0xffff_8040_0000_0000
            && m.max_mfn > 0,
        format_args!(
            "rc {} {:#x}-{:#x} max_mfn {:#x}",
            Rc(rc),
            m.v_start,
            m.v_end,
            m.max_mfn
        ),
    );
    // XENMEM_machine_memory_map: the initial domain gets the machine's
    // e820 (RAM in it), a buffer too small -EINVAL; another domain -EPERM.
    let mut e = [abi::E820Entry {
        addr: 0,
        size: 0,
        type_: 0,
    }; 32];
    let mut map = abi::XenMemoryMap {
        nr_entries: 32,
        _pad0: 0,
        buffer: e.as_mut_ptr() as u64,
    };
    // SAFETY: the hypervisor writes up to 32 entries into `e`, then `map`.
    let rc = unsafe { hc::memory_op(abi::XENMEM_MACHINE_MEMORY_MAP, &mut map as *mut _ as u64) };
    if start_info::start_info().flags & abi::SIF_PRIVILEGED != 0 {
        let ram = e[..map.nr_entries.min(32) as usize]
            .iter()
            .any(|x| x.type_ == 1 && x.size > 0);
        check(
            "XENMEM_machine_memory_map (initial domain): 0, the machine's map with RAM in it",
            rc == 0 && map.nr_entries > 0 && ram,
            format_args!("rc {} nr_entries {}", Rc(rc), map.nr_entries),
        );
        let mut small = abi::XenMemoryMap {
            nr_entries: 0,
            _pad0: 0,
            buffer: e.as_mut_ptr() as u64,
        };
        // SAFETY: refused, nothing written.
        let rc =
            unsafe { hc::memory_op(abi::XENMEM_MACHINE_MEMORY_MAP, &mut small as *mut _ as u64) };
        check_rc(
            "XENMEM_machine_memory_map with no room: -EINVAL",
            rc,
            EINVAL,
        );
    } else {
        check_rc(
            "XENMEM_machine_memory_map (not the initial domain): -EPERM",
            rc,
            EPERM,
        );
    }
    // MMUEXT_SET_LDT: no LDT (what Linux asks at boot) is 0; a misaligned
    // one -EINVAL; a real one -ENOSYS here (ringvisor offers no LDT).
    // SAFETY: no LDT is set by any of these.
    unsafe {
        check_rc(
            "mmuext_op SET_LDT of no entries: 0",
            hc::mmuext1(abi::MMUEXT_SET_LDT, 0, 0),
            0,
        );
        check_rc(
            "mmuext_op SET_LDT misaligned: -EINVAL",
            hc::mmuext1(abi::MMUEXT_SET_LDT, 0x1008, 4),
            EINVAL,
        );
        check_rc(
            "mmuext_op SET_LDT of 8193 entries: -EINVAL",
            hc::mmuext1(abi::MMUEXT_SET_LDT, 0x1000, 8193),
            EINVAL,
        );
    }
}

fn cpuid() {
    let [a, b, c, d] = cpu::xen_cpuid(cpu::XEN_CPUID_FIRST_LEAF, 0);
    let mut sig = [0u8; 12];
    sig[0..4].copy_from_slice(&b.to_le_bytes());
    sig[4..8].copy_from_slice(&c.to_le_bytes());
    sig[8..12].copy_from_slice(&d.to_le_bytes());
    check(
        "forced-emulation CPUID 0x40000000 signature",
        &sig == cpu::XEN_CPUID_SIGNATURE,
        format_args!("{}", pvguest::console::CStr(&sig)),
    );
    check(
        "forced-emulation CPUID 0x40000000 max leaf",
        a >= cpu::XEN_CPUID_FIRST_LEAF + 2,
        format_args!("eax {:#x}", a),
    );
    info(format_args!("CPUID 0x40000000: eax {:#x}", a));
    let [a, ..] = cpu::xen_cpuid(cpu::XEN_CPUID_FIRST_LEAF + 1, 0);
    info(format_args!(
        "CPUID 0x40000001 (version): {}.{}",
        a >> 16,
        a & 0xffff
    ));
}

fn control_registers(si: &StartInfo) {
    let cr0 = cpu::read_cr0();
    check(
        "mov %cr0: PE and PG",
        cr0 & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG,
        format_args!("cr0 {:#x}", cr0),
    );
    info(format_args!("cr0 = {:#x}", cr0));
    let cr3 = cpu::read_cr3();
    match start_info::virt_to_mfn(si.pt_base) {
        Some(mfn) => {
            check_eq("mov %cr3 = MFN of pt_base << 12", cr3, mfn << 12);
        }
        None => fail("mov %cr3", format_args!("pt_base outside the P2M")),
    }
}

fn set_iopl(iopl: u32) -> i64 {
    let arg = abi::PhysdevSetIopl { iopl };
    // SAFETY: the hypervisor only reads `arg`.
    unsafe { hc::physdev_op(abi::PHYSDEVOP_SET_IOPL, &arg as *const _ as u64) }
}

fn cli() {
    // SAFETY: the asm faults (or traps) into the runtime's handler, which unwinds to this
    // catch; it writes only registers it declares and AT.
    expect_fault("cli with IOPL 0: #GP(0)", 13, Some(0), || unsafe {
        asm!("cli")
    });

    // With virtual IOPL 1 (the kernel's level), cli/sti are allowed but, as
    // in Xen 4.17, do nothing: the upcall mask (the virtual IF) stays as it
    // is (Xen's emul-priv-op.c keeps the write to it commented out).
    check_rc("physdev_op set_iopl 1", set_iopl(1), 0);
    start_info::set_upcall_mask(0);
    // SAFETY: cli either runs (emulated) or faults into the handler, which unwinds to this
    // catch.
    let r = catch(|| unsafe { asm!("cli") });
    check(
        "cli with IOPL 1 is emulated",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    check_eq(
        "cli leaves the upcall mask alone",
        start_info::upcall_mask(),
        0,
    );
    start_info::set_upcall_mask(1);
    // SAFETY: as for cli.
    let r = catch(|| unsafe { asm!("sti") });
    check(
        "sti with IOPL 1 is emulated",
        r.is_ok(),
        format_args!("{:?}", r.err()),
    );
    check_eq(
        "sti leaves the upcall mask alone",
        start_info::upcall_mask(),
        1,
    );
    start_info::set_upcall_mask(1);
    cmos();
    check_rc("physdev_op set_iopl 0", set_iopl(0), 0);
    check_rc("physdev_op set_iopl 4", set_iopl(4), EINVAL);
}

/// With IOPL 1, the CMOS ports (Xen's rtc_guest_read/write): the initial
/// domain has its own index (bit 7 dropped) and reads the chip (QEMU's RTC
/// runs in 24-hour mode: register B bit 1); another domain reads 0xff.
fn cmos() {
    let inb = |port: u8| -> u8 {
        let v: u8;
        // SAFETY: a byte in from an I/O port, emulated by the hypervisor
        // (IOPL 1); only AL changes.
        unsafe {
            match port {
                0x70 => asm!("in al, 0x70", out("al") v),
                _ => asm!("in al, 0x71", out("al") v),
            }
        }
        v
    };
    // SAFETY: as `inb`, a byte out; nothing changes in the guest.
    unsafe { asm!("out 0x70, al", in("al") 0x8bu8) };
    let (idx, reg_b) = (inb(0x70), inb(0x71));
    if start_info::start_info().flags & abi::SIF_PRIVILEGED != 0 {
        check(
            "CMOS (initial domain): index 0x8b reads back 0x0b, register B has 24-hour mode",
            idx == 0x0b && reg_b & 0x02 != 0,
            format_args!("index {idx:#x}, register B {reg_b:#x}"),
        );
    } else {
        check(
            "CMOS (other domains): ports 0x70/0x71 read 0xff",
            idx == 0xff && reg_b == 0xff,
            format_args!("index {idx:#x}, register B {reg_b:#x}"),
        );
    }
}

/// "prefix" + "name" in a small stack buffer (case names for a loop).
fn name_case(prefix: &str, name: &str) -> Name {
    let mut n = Name([0; 64], 0);
    for b in prefix.bytes().chain(name.bytes()) {
        if n.1 < n.0.len() {
            n.0[n.1] = b;
            n.1 += 1;
        }
    }
    n
}

struct Name([u8; 64], usize);

impl Name {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0[..self.1]).unwrap_or("?")
    }
}
