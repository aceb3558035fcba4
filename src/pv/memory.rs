//! `memory_op` (Xen: `common/memory.c` do_memory_op, and the x86 part,
//! `arch_memory_op`/`subarch_memory_op`): a domain's reservation, its
//! memory map, where the M2P is. Once for both widths: the arguments'
//! 32-bit layouts are traits over the two structs ([`ReservationArg`],
//! [`MemoryMapArg`]); the work on frames (`reservation`, `exchange`) is
//! in `pv::mm`.

use ringvisor_abi::errno::*;
use ringvisor_abi::memory::*;
use ringvisor_abi::xen::DOMID_SELF;
use ringvisor_abi::Pod;

use crate::domain::builder::INVALID_MFN;
use crate::domain::Domain;
use crate::mm::frametable::FrameTable;
use crate::mm::paging;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};
use crate::pv::mm;
use crate::pv::width::Width;

/// `memory_op(cmd, arg)`: what each command answers is Xen's; a command
/// ringvisor does not have (or whose 32-bit layout it does not translate)
/// is `-ENOSYS`.
pub(crate) fn memory_op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    cmd: u64,
    arg: u64,
) -> Ret {
    let w = d.width();
    match cmd as u32 {
        XENMEM_MAXIMUM_RAM_PAGE => (paging::max_ram() >> 12) as Ret,
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => match space.read::<u16>(arg) {
            Ok(id) if id == DOMID_SELF || id == d.id => {
                if cmd as u32 == XENMEM_CURRENT_RESERVATION {
                    nr_pages(d) as Ret
                } else {
                    d.max_pages as Ret
                }
            }
            Ok(_) => err(EPERM),
            Err(_) => err(EFAULT),
        },
        XENMEM_DECREASE_RESERVATION | XENMEM_INCREASE_RESERVATION | XENMEM_POPULATE_PHYSMAP => {
            let r = match w {
                Width::W64 => read_reservation::<XenMemoryReservation>(&space, arg),
                Width::W32 => read_reservation::<XenMemoryReservation32>(&space, arg),
            };
            let Ok(r) = r else {
                return err(EFAULT);
            };
            if r.domid != DOMID_SELF && r.domid != d.id {
                return err(EPERM);
            }
            // Single pages only (what PV kernels ask for); bounded per call.
            if r.extent_order != 0 || r.nr_extents > mm::MAX_BATCH {
                return err(EINVAL);
            }
            mm::reservation(d, ft, space, cmd as u32, r.extent_start, r.nr_extents)
        }
        XENMEM_EXCHANGE => mm::exchange(d, ft, space, arg),
        // Where the M2P is, as Xen's subarch_memory_op: its whole range,
        // and the highest frame (the machine's for the initial domain).
        XENMEM_MACHPHYS_MAPPING if w == Width::W64 => {
            use ringvisor_abi::x86_64::{
                MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START,
            };
            let max_mfn = if d.privileged {
                (paging::max_ram() >> 12) - 1
            } else {
                MACH2PHYS_NR_ENTRIES - 1
            };
            let m = XenMachphysMapping {
                v_start: MACH2PHYS_VIRT_START,
                v_end: MACH2PHYS_VIRT_END,
                max_mfn,
            };
            space.write(arg, &m).map_or(err(EFAULT), |()| 0)
        }
        // Xen's compat_arch_memory_op: the compat M2P's window from the
        // domain's hypervisor start (MACH2PHYS_COMPAT_VIRT_START(d), here
        // always the default) to MACH2PHYS_COMPAT_VIRT_END, and the last
        // entry that window holds (MACH2PHYS_COMPAT_NR_ENTRIES(d) - 1),
        // for every domain.
        XENMEM_MACHPHYS_MAPPING => {
            use ringvisor_abi::x86_32::{HYPERVISOR_COMPAT_VIRT_START, MACH2PHYS_COMPAT_VIRT_END};
            let m = XenMachphysMapping32 {
                v_start: HYPERVISOR_COMPAT_VIRT_START,
                v_end: MACH2PHYS_COMPAT_VIRT_END,
                max_mfn: (MACH2PHYS_COMPAT_VIRT_END - HYPERVISOR_COMPAT_VIRT_START) / 4 - 1,
            };
            space.write(arg, &m).map_or(err(EFAULT), |()| 0)
        }
        // The machine's memory map, for the initial domain only (Xen:
        // XSM_PRIV); a buffer too small for it is -EINVAL.
        XENMEM_MACHINE_MEMORY_MAP => {
            if !d.privileged {
                return err(EPERM);
            }
            let map = paging::machine_map();
            let entries = map
                .iter()
                .map(|&(addr, size, type_)| E820Entry { addr, size, type_ });
            match w {
                Width::W64 => write_map::<XenMemoryMap>(space, arg, entries),
                Width::W32 => write_map::<XenMemoryMap32>(space, arg, entries),
            }
        }
        // The guest's pseudo-physical map: all its pages as one RAM range.
        XENMEM_MEMORY_MAP => {
            let ram = E820Entry {
                addr: 0,
                size: nr_pages(d) * 4096,
                type_: 1,
            };
            match w {
                Width::W64 => write_map::<XenMemoryMap>(space, arg, [ram].into_iter()),
                Width::W32 => write_map::<XenMemoryMap32>(space, arg, [ram].into_iter()),
            }
        }
        _ => err(ENOSYS),
    }
}

/// The domain's pages: its P2M's valid entries.
fn nr_pages(d: &Domain) -> u64 {
    d.p2m.iter().filter(|&&m| m != INVALID_MFN).count() as u64
}

/// `struct xen_memory_reservation`'s fields ringvisor reads, from either
/// width's layout (64-bit 32 bytes, 32-bit 20 bytes).
struct Reservation {
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    domid: u16,
}

trait ReservationArg: Pod {
    fn get(&self) -> Reservation;
}

impl ReservationArg for XenMemoryReservation {
    fn get(&self) -> Reservation {
        Reservation {
            extent_start: self.extent_start,
            nr_extents: self.nr_extents,
            extent_order: self.extent_order,
            domid: self.domid,
        }
    }
}

impl ReservationArg for XenMemoryReservation32 {
    fn get(&self) -> Reservation {
        Reservation {
            extent_start: self.extent_start as u64,
            nr_extents: self.nr_extents as u64,
            extent_order: self.extent_order,
            domid: self.domid,
        }
    }
}

fn read_reservation<T: ReservationArg>(space: &GuestSpace, arg: u64) -> Result<Reservation, ()> {
    space.read::<T>(arg).map(|r| r.get()).map_err(|_| ())
}

/// A memory map into the guest's `xen_memory_map` of either width (`M`):
/// a capacity smaller than the map is `-EINVAL`, as Xen's
/// `XENMEM_memory_map` and `XENMEM_machine_memory_map` answer; the
/// entries are written, then the count.
fn write_map<M: MemoryMapArg>(
    space: GuestSpace,
    arg: u64,
    entries: impl ExactSizeIterator<Item = E820Entry>,
) -> Ret {
    let Ok(mut m) = space.read::<M>(arg) else {
        return err(EFAULT);
    };
    let n = entries.len();
    if (m.nr_entries() as usize) < n {
        return err(EINVAL);
    }
    let size = core::mem::size_of::<E820Entry>() as u64;
    for (i, e) in entries.enumerate() {
        let at = m.buffer().checked_add(i as u64 * size);
        if !matches!(at.map(|at| space.write(at, &e)), Some(Ok(()))) {
            return err(EFAULT);
        }
    }
    m.set_nr_entries(n as u32);
    space.write(arg, &m).map_or(err(EFAULT), |()| 0)
}

/// `struct xen_memory_map` (`XENMEM_memory_map`'s argument) of either
/// width: a capacity in entries and a guest handle to an `e820entry`
/// array. 64-bit: `{ u32 nr_entries, pad, u64 buffer }` (16 bytes);
/// 32-bit: `{ u32 nr_entries, u32 buffer }` (8 bytes).
trait MemoryMapArg: Pod {
    fn nr_entries(&self) -> u32;
    fn set_nr_entries(&mut self, n: u32);
    fn buffer(&self) -> u64;
}

impl MemoryMapArg for XenMemoryMap {
    fn nr_entries(&self) -> u32 {
        self.nr_entries
    }
    fn set_nr_entries(&mut self, n: u32) {
        self.nr_entries = n;
    }
    fn buffer(&self) -> u64 {
        self.buffer
    }
}

impl MemoryMapArg for XenMemoryMap32 {
    fn nr_entries(&self) -> u32 {
        self.nr_entries
    }
    fn set_nr_entries(&mut self, n: u32) {
        self.nr_entries = n;
    }
    fn buffer(&self) -> u64 {
        self.buffer as u64
    }
}
