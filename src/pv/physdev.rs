//! `physdev_op` (Xen: `arch/x86/physdev.c`, `do_physdev_op`): I/O
//! privilege, the EOI page, and for the initial domain the interrupt
//! routing calls Xen answers for hardware it does not have.

use ringvisor_abi::errno::*;
use ringvisor_abi::xen::DOMID_SELF;

use crate::domain::Domain;
use crate::mm::frametable::FrameTable;
use crate::pv::guest_mem::GuestSpace;
use crate::pv::hypercall::{err, Ret};

/// `PHYSDEVOP_map_pirq` (Xen's physdev_map_pirq), which names a domain:
/// one that does not exist `-ESRCH`; only the control domain may map
/// (`-EPERM`, Xen's XSM_DM_PRIV); then a GSI `-EINVAL` (no GSI is routed
/// to guests: allocate_and_map_gsi_pirq's "invalid gsi"), an MSI
/// `-ENODEV` (no PCI device is known), another type `-EINVAL`.
///
/// Called with no lock held: the argument under the caller's lock, then
/// the named domain's, to see it is alive.
pub(crate) fn map_pirq_on(me: &crate::sync::DomainLock, arg: u64) -> Ret {
    // { domid_t domid; pad; int type; int index; int pirq; int bus;
    // int devfn; int entry_nr; u64 table_base } (36 bytes for 32-bit)
    let (privileged, read) = {
        let d = me.lock();
        let mut b = [0u8; 40];
        let n = if d.is_32bit() { 36 } else { 40 };
        (
            d.privileged,
            d.v().space().read_bytes(arg, &mut b[..n]).map(|_| b),
        )
    };
    let Ok(b) = read else {
        return err(EFAULT);
    };
    let (domid, type_) = (
        u16::from_le_bytes([b[0], b[1]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    );
    // Xen looks the domain up first (our own lock is released: it may be
    // this domain, named by its id).
    let alive = |id| crate::sched::domain_lock(id).is_some_and(|l| l.lock().is_alive());
    if domid != DOMID_SELF && !alive(domid) {
        return err(ESRCH);
    }
    if !privileged {
        return err(EPERM);
    }
    const MAP_PIRQ_TYPE_MSI: u32 = 0;
    const MAP_PIRQ_TYPE_MSI_SEG: u32 = 2;
    const MAP_PIRQ_TYPE_MULTI_MSI: u32 = 3;
    match type_ {
        MAP_PIRQ_TYPE_MSI | MAP_PIRQ_TYPE_MSI_SEG | MAP_PIRQ_TYPE_MULTI_MSI => err(ENODEV),
        _ => err(EINVAL),
    }
}

/// `physdev_op`. ringvisor drives no interrupt controller for its
/// guests and knows no I/O APIC or PCI device (it reads no MADT and gives
/// the initial domain no physical interrupts), so the calls a dom0 kernel
/// makes about them answer as Xen does for an I/O APIC, GSI or device it
/// does not have; the privileged ones `-EPERM` for other domains first, in
/// Xen's order (the argument is read before):
///
/// - `apic_read`/`apic_write`: `-EINVAL` (ioapic_guest_read/write: no I/O
///   APIC at that address; Linux then uses its emulated values);
/// - `map_pirq` (see `map_pirq`): a GSI `-EINVAL`, an MSI `-ENODEV`;
/// - `setup_gsi`: `-EINVAL` (mp_register_gsi: "No IOAPIC for GSI");
/// - `pirq_eoi_gmfn_v1/v2` (any domain): done as Xen (the page is held
///   writable for the domain's life; a second one `-EBUSY`); no PIRQ ever
///   sets a bit in it.
pub(crate) fn physdev_op(
    d: &mut Domain,
    ft: &FrameTable,
    space: GuestSpace,
    cmd: u64,
    arg: u64,
) -> Ret {
    use ringvisor_abi::physdev::*;
    // The 32-bit layouts differ only in the width of `unsigned long` and
    // xen_pfn_t (the I/O APIC address, the EOI page's frame).
    let ulong = |at: u64| {
        if d.is_32bit() {
            space.read::<u32>(at).map(u64::from)
        } else {
            space.read::<u64>(at)
        }
    };
    match cmd as u32 {
        PHYSDEVOP_APIC_READ | PHYSDEVOP_APIC_WRITE => {
            // { unsigned long apic_physbase; u32 reg; u32 value; }
            let size = if d.is_32bit() { 12 } else { 16 };
            let mut buf = [0u8; 16];
            if space.read_bytes(arg, &mut buf[..size]).is_err() {
                return err(EFAULT);
            }
            if !d.privileged {
                return err(EPERM);
            }
            err(EINVAL)
        }
        PHYSDEVOP_SETUP_GSI => match space.read::<[u32; 2]>(arg) {
            Err(_) => err(EFAULT),
            Ok(_) if !d.privileged => err(EPERM),
            Ok(_) => err(EINVAL),
        },
        PHYSDEVOP_PIRQ_EOI_GMFN_V1 | PHYSDEVOP_PIRQ_EOI_GMFN_V2 => {
            let Ok(mfn) = ulong(arg) else {
                return err(EFAULT);
            };
            let busy = d.pirq_eoi_mfn != 0;
            // Held as a writable mapping would be (Xen: get_page_type
            // PGT_writable_page): never a page table, never given back.
            // Checked and taken in one step on the frame's record.
            let r = ft.with(mfn, |f| {
                if f.owner != d.id || f.kind != crate::mm::frametable::Kind::Normal {
                    return err(EINVAL);
                }
                if busy {
                    return err(EBUSY);
                }
                let (Some(m), Some(w)) = (f.mapped.checked_add(1), f.writable.checked_add(1))
                else {
                    return err(EINVAL);
                };
                (f.mapped, f.writable) = (m, w);
                0
            });
            match r {
                Some(0) => {
                    d.pirq_eoi_mfn = mfn;
                    0
                }
                Some(e) => e,
                None => err(EINVAL),
            }
        }
        PHYSDEVOP_SET_IOPL => match space.read::<PhysdevSetIopl>(arg) {
            Ok(p) if p.iopl <= 3 => {
                d.v_mut().iopl = p.iopl;
                0
            }
            Ok(_) => err(EINVAL),
            Err(_) => err(EFAULT),
        },
        _ => err(ENOSYS),
    }
}
