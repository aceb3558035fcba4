//! Every hypercall 0-63 against the table in `docs/abi.md` (read when this
//! guest is built, see `pvguest::abitable`): each must answer `-ENOSYS`
//! exactly where the 64-bit column says so. The arguments are harmless:
//! each implemented hypercall gets a query, an empty batch, or a selector,
//! address or flag it refuses before it changes anything; a number
//! ringvisor does not implement gets zeros. On a hypervisor other than
//! ringvisor (real Xen implements more) the differences are only printed.

use pvguest::abi::{self, DOMID_SELF};
use pvguest::abitable::{self, Answer, ABI_MD};
use pvguest::hypercall::hypercall;
use pvguest::report::{fail, info, pass};

/// Hypercall `nr` with harmless arguments; `Err(why)` when it has none.
fn probe(nr: u32) -> Result<i64, &'static str> {
    let self_ = DOMID_SELF as u64;
    // Memory for the calls that read a buffer: zeros unless set here.
    let mut buf = [0u64; 8];
    match nr {
        // EVTCHNOP_status of a port past the domain's: -EINVAL. The old
        // form has the command first and the arguments from offset 4
        // (`struct evtchn_op`): `dom` at 4, `port` at 8.
        abi::HYPERVISOR_EVENT_CHANNEL_OP_COMPAT => {
            buf[0] = abi::EVTCHNOP_STATUS as u64 | self_ << 32;
            buf[1] = 0xffff;
        }
        abi::HYPERVISOR_EVENT_CHANNEL_OP => buf[0] = self_ | 0xffff << 32,
        // Unregistering the event callback is refused: -EINVAL.
        abi::HYPERVISOR_CALLBACK_OP => buf[0] = abi::CALLBACKTYPE_EVENT as u64,
        // IOPL 4: -EINVAL.
        abi::HYPERVISOR_PHYSDEV_OP => buf[0] = 4,
        // The old form, { cmd, union at 8 }: IOPL 4, -EINVAL.
        abi::HYPERVISOR_PHYSDEV_OP_COMPAT => {
            buf[0] = abi::PHYSDEVOP_SET_IOPL as u64;
            buf[1] = 4;
        }
        _ => {}
    }
    let p = buf.as_ptr() as u64;
    let args: [u64; 4] = match nr {
        // A list whose first entry ends it (address 0): nothing installed.
        abi::HYPERVISOR_SET_TRAP_TABLE => [p, 0, 0, 0],
        // Empty batches.
        abi::HYPERVISOR_MMU_UPDATE | abi::HYPERVISOR_MMUEXT_OP => [p, 0, 0, self_],
        // More entries than a guest GDT has: -EINVAL.
        abi::HYPERVISOR_SET_GDT => [p, 0x10000, 0, 0],
        // The runtime's own kernel stack again: 0 (Xen never refuses).
        abi::HYPERVISOR_STACK_SWITCH => [
            abi::FLAT_KERNEL_SS as u64,
            pvguest::traps::KERNEL_STACK.top(),
            0,
            0,
        ],
        // Interface version 0: -EACCES (platform_op), -EACCES or -EPERM
        // (mca: -EPERM first for a domain that is not the control one).
        abi::HYPERVISOR_PLATFORM_OP | abi::HYPERVISOR_MCA => [p, 0, 0, 0],
        // Xen 4.17 without `vpmu`: -EOPNOTSUPP, nothing read.
        abi::HYPERVISOR_XENPMU_OP => [0, p, 0, 0],
        // A non-canonical event callback: -EINVAL.
        abi::HYPERVISOR_SET_CALLBACKS => [1 << 63, 0, 0, 0],
        // Virtual CR0.TS clear (it is).
        abi::HYPERVISOR_FPU_TASKSWITCH => [0, 0, 0, 0],
        // SCHEDOP_yield.
        abi::HYPERVISOR_SCHED_OP_COMPAT | abi::HYPERVISOR_SCHED_OP => {
            [abi::SCHEDOP_YIELD as u64, 0, 0, 0]
        }
        // A misaligned machine address: -EINVAL.
        abi::HYPERVISOR_UPDATE_DESCRIPTOR => [1, 0, 0, 0],
        abi::HYPERVISOR_MEMORY_OP => [abi::XENMEM_MAXIMUM_RAM_PAGE as u64, 0, 0, 0],
        // buf's own page with bit 62 set (Xen's _PAGE_GNTTAB, refused to
        // every domain; PCD is not: the initial domain may choose cache
        // attributes): -EINVAL before the frame is looked at, so the
        // mapping stays.
        abi::HYPERVISOR_UPDATE_VA_MAPPING => [p & !0xfff, 1 | 1 << 62, 0, 0],
        // Cancels a single-shot timer this guest never set.
        abi::HYPERVISOR_SET_TIMER_OP => [0, 0, 0, 0],
        abi::HYPERVISOR_EVENT_CHANNEL_OP_COMPAT => [p, 0, 0, 0],
        abi::HYPERVISOR_EVENT_CHANNEL_OP => [abi::EVTCHNOP_STATUS as u64, p, 0, 0],
        abi::HYPERVISOR_XEN_VERSION => [abi::XENVER_VERSION as u64, 0, 0, 0],
        // Writes nothing.
        abi::HYPERVISOR_CONSOLE_IO => [abi::CONSOLEIO_WRITE as u64, 0, p, 0],
        // Enable an assist type that does not exist: -EINVAL.
        abi::HYPERVISOR_VM_ASSIST => [abi::VMASST_CMD_ENABLE as u64, 63, 0, 0],
        abi::HYPERVISOR_IRET => return Err("it returns through a frame; every trap guest uses it"),
        abi::HYPERVISOR_VCPU_OP => [abi::VCPUOP_IS_UP as u64, 0, 0, 0],
        // No such debug register: -ENODEV; reading %dr0 changes nothing.
        abi::HYPERVISOR_SET_DEBUGREG => [99, 0, 0, 0],
        abi::HYPERVISOR_GET_DEBUGREG => [0, 0, 0, 0],
        // An empty batch: 0, nothing read.
        abi::HYPERVISOR_MULTICALL => [p, 0, 0, 0],
        // query_size with a count of 0: -EINVAL, nothing read or written.
        abi::HYPERVISOR_GRANT_TABLE_OP => [6, p, 0, 0],
        // No such segment register: -EINVAL.
        abi::HYPERVISOR_SET_SEGMENT_BASE => [99, 0, 0, 0],
        abi::HYPERVISOR_CALLBACK_OP => [abi::CALLBACKOP_UNREGISTER as u64, p, 0, 0],
        abi::HYPERVISOR_PHYSDEV_OP => [abi::PHYSDEVOP_SET_IOPL as u64, p, 0, 0],
        abi::HYPERVISOR_PHYSDEV_OP_COMPAT => [p, 0, 0, 0],
        // Unregistering an NMI callback this guest never set: 0.
        abi::HYPERVISOR_NMI_OP => [1, 0, 0, 0],
        // The update_va_mapping probe, for a domain that does not exist:
        // -ESRCH, nothing looked at.
        abi::HYPERVISOR_UPDATE_VA_MAPPING_OTHERDOMAIN => [p & !0xfff, 1 | 1 << 62, 0, 0x7fe0],
        // Not implemented by ringvisor: zeros (and the table had better say
        // -ENOSYS; a `yes` row lands here only when a probe is missing).
        _ => [0; 4],
    };
    // SAFETY: the arguments above change nothing (see each one); buf
    // outlives the call, and the hypervisor only reads it.
    let rc = unsafe { hypercall(nr, &args) };
    core::hint::black_box(&buf);
    Ok(rc)
}

/// Has a harmless probe (else zeros are only safe for -ENOSYS calls).
fn probed(nr: u32) -> bool {
    matches!(nr, 0..=10 | 12..=26 | 28..=30 | 32 | 33 | 40 | 48)
}

pub fn check(on_ringvisor: bool) {
    let mut bad_rows = 0;
    for row in abitable::rows(ABI_MD) {
        if let Err(line) = row {
            fail(
                "docs/abi.md hypercall row",
                format_args!("cannot read {line:?}"),
            );
            bad_rows += 1;
        }
    }
    let enosys = abi::neg(abi::ENOSYS);
    let (mut checked, mut differ) = (0, 0);
    for nr in 0..64 {
        let want = abitable::expected(ABI_MD, nr, true);
        if want == Answer::Yes && !probed(nr) {
            fail(
                "docs/abi.md hypercall table",
                format_args!(
                    "hypercall {nr} is listed as implemented but has no harmless probe here"
                ),
            );
            continue;
        }
        let rc = match probe(nr) {
            Ok(rc) => rc,
            Err(why) => {
                info(format_args!(
                    "hypercall {nr} ({}): not probed: {why}",
                    abi::hypercall_name(nr as u64)
                ));
                continue;
            }
        };
        checked += 1;
        let got = if rc == enosys {
            Answer::Enosys
        } else {
            Answer::Yes
        };
        if got != want {
            differ += 1;
            let name = abi::hypercall_name(nr as u64);
            if on_ringvisor {
                fail(
                    "docs/abi.md hypercall table",
                    format_args!("hypercall {nr} ({name}) returned {rc}, the table says {want:?}"),
                );
            } else {
                info(format_args!(
                    "hypercall {nr} ({name}): {rc} here, ringvisor's table says {want:?}"
                ));
            }
        }
    }
    if bad_rows == 0 && (differ == 0 || !on_ringvisor) {
        pass("hypercalls 0-63 answer -ENOSYS as docs/abi.md's 64-bit column says");
    }
    info(format_args!(
        "{checked} hypercalls probed, {differ} differ from docs/abi.md"
    ));
}
