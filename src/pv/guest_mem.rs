//! Checked access to guest memory: the only way the hypervisor reads or
//! writes what a guest hands it (hypercall buffers, bounce frames).
//!
//! Every access walks the guest's page tables in software, exactly as the
//! CPU would for the guest's ring-3 code (present, user, writable at every
//! level), then touches the frame through the hypervisor's direct map. A
//! bad pointer is therefore an `Err(Fault)`, never a hypervisor fault.
//! The common case, one page of a 64-bit guest's own half under its own
//! CR3, is copied through the guest's mapping instead, by the CPU's walk
//! (`GuestSpace::by_cpu`: a `stac`-guarded copy whose fault is fixed up),
//! falling back to the software walk when the CPU refuses it.

use ringvisor_abi::Pod;

use crate::arch::x86_64::idt;
use crate::mm::view::FrameView;

pub use crate::arch::x86_64::pte::*;

/// Why a guest address could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub va: u64,
    /// Level (4..1) whose entry stopped the walk; 0 for a non-canonical or
    /// hypervisor-range address.
    pub level: u8,
    /// A #PF error code describing it (P, W, U bits).
    pub error_code: u64,
}

#[inline(always)]
pub fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1ffff
}

/// Inside the range the ABI reserves for the hypervisor?
#[inline(always)]
pub fn in_hypervisor_range(va: u64) -> bool {
    (ringvisor_abi::x86_64::HYPERVISOR_VIRT_START..ringvisor_abi::x86_64::HYPERVISOR_VIRT_END)
        .contains(&va)
}

/// A frame the walk reached: a guest page table (from the vCPU's validated
/// top-level table down), or a leaf `translate_as` found to be RAM the
/// guest may touch (pv::mm lets a domain map only its own frames, and the
/// initial domain low-memory frames the hypervisor does not use).
#[inline(always)]
fn frame(mfn: u64) -> FrameView {
    FrameView::guest_mapped(mfn)
}

#[inline(always)]
fn entry(table_mfn: u64, index: u64) -> u64 {
    frame(table_mfn).read(index as usize)
}

/// Translate `va` in the address space rooted at `l4_mfn` to a machine
/// address. `user: true` for an access with user-mode rights (a 64-bit
/// guest kernel: it runs in ring 3); `user: false` for a supervisor access
/// (a 32-bit guest kernel in ring 1): the user bit is then not required,
/// writes still need the writable bit (CR0.WP is on).
pub fn translate_as(l4_mfn: u64, va: u64, write: bool, user: bool) -> Result<u64, Fault> {
    let wbit = if write { 2 } else { 0 };
    if !is_canonical(va) || in_hypervisor_range(va) {
        return Err(Fault {
            va,
            level: 0,
            error_code: wbit | 4,
        });
    }
    let mut mfn = l4_mfn;
    for level in (1..=4u8).rev() {
        // Every table on the way is one of the guest's validated tables;
        // a root of 0 (a vCPU with none) or anything not RAM is refused,
        // never read.
        if mfn == 0 || !crate::mm::paging::is_ram(mfn << 12) {
            return Err(Fault {
                va,
                level,
                error_code: wbit | 4,
            });
        }
        let e = entry(mfn, (va >> (12 + 9 * (level as u64 - 1))) & 511);
        if e & PTE_P == 0 {
            return Err(Fault {
                va,
                level,
                error_code: wbit | 4,
            });
        }
        if (user && e & PTE_US == 0) || (write && e & PTE_RW == 0) {
            return Err(Fault {
                va,
                level,
                error_code: 1 | wbit | 4,
            });
        }
        // Guests never get superpages (mm.rs refuses PS above L1).
        if level > 1 && e & PTE_PS != 0 {
            return Err(Fault {
                va,
                level,
                error_code: 1 | wbit | 4 | 8,
            });
        }
        mfn = (e & PTE_ADDR) >> 12;
    }
    if !crate::mm::paging::is_ram(mfn << 12) {
        return Err(Fault {
            va,
            level: 1,
            error_code: 1 | wbit | 4,
        });
    }
    Ok(mfn << 12 | (va & 0xfff))
}

/// The longest copy `GuestSpace::by_cpu` makes through the guest's
/// mapping.
const BY_CPU_MAX: usize = 256;

/// One guest address space, as the guest kernel sees it: from ring 3 for
/// a 64-bit guest (`user`), from ring 1 for a 32-bit one.
#[derive(Clone, Copy)]
pub struct GuestSpace {
    pub l4_mfn: u64,
    pub user: bool,
}

/// A vCPU's space (here, not in `domain::vcpu`: what a space is and how
/// it is read is the PV layer's; the domain layer does not use it).
impl crate::domain::vcpu::Vcpu {
    /// Its address space as its kernel sees it (for hypercall buffers and
    /// bounce frames).
    pub fn space(&self) -> GuestSpace {
        GuestSpace {
            l4_mfn: self.cr3_table(),
            user: self.compat_l4 == 0,
        }
    }
}

impl GuestSpace {
    /// A 64-bit guest's address space rooted at `l4_mfn` (user rights).
    pub fn new(l4_mfn: u64) -> GuestSpace {
        GuestSpace { l4_mfn, user: true }
    }

    pub fn read_bytes(&self, va: u64, out: &mut [u8]) -> Result<(), Fault> {
        if self.by_cpu(out.len()) && idt::copy_from_guest_page(out, va) {
            return Ok(());
        }
        self.read_bytes_walk(va, out)
    }

    /// `read_bytes` by the software walk, a page at a time (out of line:
    /// the copy by the CPU's walk needs none of its registers).
    #[inline(never)]
    fn read_bytes_walk(&self, va: u64, out: &mut [u8]) -> Result<(), Fault> {
        let mut done = 0;
        while done < out.len() {
            let at = va.checked_add(done as u64).ok_or(Fault {
                va,
                level: 0,
                error_code: 4,
            })?;
            let pa = translate_as(self.l4_mfn, at, false, self.user)?;
            let n = (4096 - (at & 0xfff) as usize).min(out.len() - done);
            // `pa..pa+n` lies in one RAM frame the walk let the guest read.
            frame(pa >> 12).read_bytes((pa & 0xfff) as usize, &mut out[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// The range lies in one page of the guest's half (not the
    /// hypervisor's range), the vCPU on the CPU is a 64-bit guest's and
    /// this space is the one CR3 holds: then the CPU's own walk of it gives
    /// the guest kernel's rights (every entry of a 64-bit guest's tables
    /// has the user bit, forced by pv::mm and the builder, so ring 0's
    /// rights and ring 3's are the same there, and only memory it may use
    /// is mapped; page tables and GDT frames are read-only, and CR0.WP holds
    /// ring 0 to that), and a translation the TLB still keeps is one the
    /// guest could use itself (see "Stale translations" in pv::mm). A
    /// 32-bit guest's space qualifies only with its kernel's rights
    /// (`!user`: ring 1 is a supervisor ring, so ring 0's walk asks what
    /// the software walk asks then: present, and writable for a write),
    /// never its user mode's: its kernel's supervisor pages must stay out
    /// of reach there. One copy instead of a software walk; any refusal
    /// falls back to the walk, which says why. One difference from the
    /// walk: I/O memory the initial domain mapped (`pv::mm`'s `io_entry`)
    /// is accessed as its own code would access it, where the walk
    /// refuses anything but RAM; Xen's `__copy_to_user` does the same.
    /// Only small copies (bounce and iret frames, hypercall structures):
    /// a longer one is a walk per page either way.
    /// (The one-page, guests'-half part is checked by the copy itself:
    /// `arch::x86_64::idt::copy_from_guest_page`.)
    #[inline(always)]
    fn by_cpu(&self, len: usize) -> bool {
        len <= BY_CPU_MAX
            && (crate::arch::x86_64::percpu::this().pv32 == 0 || !self.user)
            && crate::arch::x86_64::cpu::cr3_frame() == self.l4_mfn
    }

    // Tour 04, 08: the only way a frame reaches a guest stack
    pub fn write_bytes(&self, va: u64, data: &[u8]) -> Result<(), Fault> {
        // A refused access writes nothing (one page) and falls back.
        if self.by_cpu(data.len()) && idt::copy_to_guest_page(va, data) {
            return Ok(());
        }
        self.write_bytes_walk(va, data)
    }

    /// A `T` at `va` where the CPU's walk answers at once (`by_cpu`, and
    /// the CPU took the copy), without zeroing it first; `None`: nothing
    /// decided, the caller reads the general way (`read`), which walks and
    /// says why.
    #[inline(always)]
    pub fn read_pod_by_cpu<T: Pod>(&self, va: u64) -> Option<T> {
        if !self.by_cpu(core::mem::size_of::<T>()) {
            return None;
        }
        idt::read_pod_from_guest_page(va)
    }

    /// As many `T`s as `out` holds at `va`, within one page, where the
    /// CPU's walk answers at once (`by_cpu`'s other conditions; no length
    /// limit but the page), without zeroing them first; `None`: nothing
    /// decided, the caller reads the general way.
    #[inline(always)]
    pub fn read_pods_by_cpu<'a, T: Pod>(
        &self,
        out: &'a mut [core::mem::MaybeUninit<T>],
        va: u64,
    ) -> Option<&'a [T]> {
        if !self.by_cpu(0) {
            return None;
        }
        idt::read_pods_from_guest_page(out, va)
    }

    /// `write_bytes` by the software walk (out of line, as
    /// `read_bytes_walk`).
    #[inline(never)]
    fn write_bytes_walk(&self, va: u64, data: &[u8]) -> Result<(), Fault> {
        // Check every page first, so a partly-writable range changes nothing.
        // The first two pages' frames are kept (a bounce frame spans at
        // most two), so the common case walks the tables once per page.
        if data.is_empty() {
            return Ok(());
        }
        // The last byte, not the end: a buffer may end exactly at 2^64.
        let last = va.checked_add(data.len() as u64 - 1).ok_or(Fault {
            va,
            level: 0,
            error_code: 6,
        })?;
        // Count pages, not addresses: the last page of the address space
        // (0xffff_ffff_ffff_f000) has no page after it to compare with.
        let pages = (last >> 12) - (va >> 12) + 1;
        let mut frames = [0u64; 2];
        for page in 0..pages {
            let at = ((va >> 12) + page) << 12;
            let pa = translate_as(self.l4_mfn, at.max(va), true, self.user)?;
            if let Some(f) = frames.get_mut(page as usize) {
                *f = pa & !0xfff;
            }
        }
        let mut done = 0;
        while done < data.len() {
            let at = va + done as u64;
            let pa = match frames.get(((at >> 12) - (va >> 12)) as usize) {
                Some(f) => f | (at & 0xfff),
                None => translate_as(self.l4_mfn, at, true, self.user)?,
            };
            let n = (4096 - (at & 0xfff) as usize).min(data.len() - done);
            // The walk found the page writable by the guest, so it is not a
            // page table or hypervisor memory.
            frame(pa >> 12).write_bytes((pa & 0xfff) as usize, &data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    pub fn read<T: Pod>(&self, va: u64) -> Result<T, Fault> {
        let mut v = T::zeroed();
        self.read_bytes(va, ringvisor_abi::as_bytes_mut(&mut v))?;
        Ok(v)
    }

    pub fn write<T: Pod>(&self, va: u64, v: &T) -> Result<(), Fault> {
        self.write_bytes(va, ringvisor_abi::as_bytes(v))
    }

    pub fn read_u64(&self, va: u64) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.read_bytes(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
