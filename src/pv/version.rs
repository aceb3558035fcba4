//! `xen_version` and `vm_assist` (Xen: `common/kernel.c`, `do_xen_version`
//! and `do_vm_assist`): what the guest learns about the hypervisor, and
//! the assists it may switch on.

use ringvisor_abi::errno::*;
use ringvisor_abi::version::*;
use ringvisor_abi::x86_64::HYPERVISOR_VIRT_START;
use ringvisor_abi::xen::*;
use ringvisor_abi::Pod;

use crate::domain::Domain;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};

/// The ringvisor version guests see through `xen_version`: the Xen ABI
/// level we implement (4.17), with our name as the extra version.
/// (arch's constants: entry.S answers `XENVER_version` itself.)
pub use crate::arch::x86_64::answers::{XEN_MAJOR, XEN_MINOR};

const EXTRAVERSION: &str = "-ringvisor";

const CAPABILITIES: &str = "xen-3.0-x86_64 ";

pub(crate) fn vm_assist(d: &mut Domain, cmd: u64, ty: u64) -> Ret {
    const VALID: u64 = 1 << VMASST_TYPE_4GB_SEGMENTS
        | 1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY
        | 1 << VMASST_TYPE_WRITABLE_PAGETABLES
        | 1 << VMASST_TYPE_PAE_EXTENDED_CR3
        | 1 << VMASST_TYPE_ARCHITECTURAL_IOPL
        | 1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG
        | 1 << VMASST_TYPE_M2P_STRICT;
    if ty >= 64 || VALID & (1 << ty) == 0 {
        return err(EINVAL);
    }
    match cmd as u32 {
        VMASST_CMD_ENABLE => d.vm_assist |= 1 << ty,
        VMASST_CMD_DISABLE => d.vm_assist &= !(1 << ty),
        _ => return err(ENOSYS),
    }
    d.iopl_assist.store(
        d.vm_assist & (1 << VMASST_TYPE_ARCHITECTURAL_IOPL) != 0,
        core::sync::atomic::Ordering::Relaxed,
    );
    0
}

fn write_str(space: GuestSpace, va: u64, s: &str, cap: usize) -> Ret {
    let mut buf = [0u8; 1024];
    let n = s.len().min(cap - 1);
    buf[..n].copy_from_slice(&s.as_bytes()[..n]);
    match space.write_bytes(va, &buf[..cap]) {
        Ok(()) => 0,
        Err(_) => err(EFAULT),
    }
}

pub(crate) fn xen_version(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    match cmd as u32 {
        XENVER_VERSION => (XEN_MAJOR << 16 | XEN_MINOR) as Ret,
        XENVER_EXTRAVERSION => write_str(space, arg, EXTRAVERSION, XEN_EXTRAVERSION_LEN),
        XENVER_CAPABILITIES => write_str(space, arg, CAPABILITIES, XEN_CAPABILITIES_INFO_LEN),
        XENVER_CHANGESET => write_str(space, arg, "ringvisor", XEN_CHANGESET_INFO_LEN),
        XENVER_COMPILE_INFO => {
            let mut ci = XenCompileInfo::zeroed();
            let put = |dst: &mut [u8], s: &str| dst[..s.len()].copy_from_slice(s.as_bytes());
            put(&mut ci.compiler, "rustc");
            put(&mut ci.compile_by, "ringvisor");
            put(&mut ci.compile_domain, "ringvisor");
            put(&mut ci.compile_date, "unknown");
            if space.write(arg, &ci).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_PLATFORM_PARAMETERS => {
            let p = XenPlatformParameters {
                virt_start: HYPERVISOR_VIRT_START,
            };
            if space.write(arg, &p).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_GET_FEATURES => {
            let Ok(mut fi) = space.read::<XenFeatureInfo>(arg) else {
                return err(EFAULT);
            };
            fi.submap = match fi.submap_idx {
                // Xen 4.17's set for a PV domain (common/kernel.c); the
                // grant map's avail bits are honoured (pv::grant), and
                // vnode_supported only says get_vnumainfo may be asked.
                0 => {
                    1 << XENFEAT_MEMORY_OP_VNODE_SUPPORTED
                        | 1 << XENFEAT_PAE_PGDIR_ABOVE_4GB
                        | 1 << XENFEAT_MMU_PT_UPDATE_PRESERVE_AD
                        | 1 << XENFEAT_HIGHMEM_ASSIST
                        | 1 << XENFEAT_GNTTAB_MAP_AVAIL_BITS
                        | 1 << XENFEAT_DIRECT_MAPPED
                        | if d.privileged { 1 << XENFEAT_DOM0 } else { 0 }
                }
                _ => 0,
            };
            if space.write(arg, &fi).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_PAGESIZE => 4096,
        XENVER_GUEST_HANDLE => {
            if space.write_bytes(arg, &[0u8; 16]).is_err() {
                return err(EFAULT);
            }
            0
        }
        XENVER_COMMANDLINE => {
            if !d.privileged {
                return err(EPERM);
            }
            write_str(space, arg, "", 1024)
        }
        _ => err(ENOSYS),
    }
}
