//! Domains: the `Domain` and its vCPUs, the kernel formats a domain is
//! built from (ELF, bzImage, xz), its memory layout, its event-channel
//! ports and grant table. Built here (`builder`, Xen's `pv/dom0_build.c`); used by
//! `sync`, `sched` and `pv` above, and using only what is below (`mm`, `arch`).

// Policy: frames are reached through mm::view, hardware through arch.
#![deny(unsafe_code)]

pub mod bsdsyms;
#[cfg(target_os = "none")]
pub mod builder;
pub mod bzimage;
pub mod elf;
pub mod evtchn;
#[cfg(target_os = "none")]
pub mod grant;
pub mod layout;
pub mod unxz;
#[cfg(target_os = "none")]
pub mod vcpu;

#[cfg(target_os = "none")]
pub use domain::*;

/// A pseudo-physical page with no machine frame (given back): its P2M entry.
pub const INVALID_MFN: u64 = !0;

/// A PV guest's width: what its kernel's ring, its frames and the ABI
/// structures' layouts follow (`pv::width` has each width's layouts).
// Tour 04: the guest's width, as a type
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Width {
    /// A 64-bit guest: kernel and user both in ring 3.
    W64,
    /// A 32-bit PAE guest: kernel in ring 1, user in ring 3.
    W32,
}

/// A domU's console output is rate-limited, as Xen limits guest console
/// output: a burst of this many bytes, then `CONSOLE_RATE` a second. The
/// initial domain (the console's owner) is not limited.
pub const CONSOLE_BURST: u64 = 64 << 10;

/// Which kernel module each multiboot module is the initrd of, from
/// whether each one is a kernel (`bzimage::is_kernel_image`): a module
/// that is not a kernel belongs to the kernel module right before it, as
/// Xen takes dom0's second module, one initrd per kernel. `None`: a kernel
/// (a domain of its own), or a data module with no kernel right before it
/// (also a domain of its own, whose build fails naming it).
pub fn initrd_owners(is_kernel: &[bool]) -> alloc::vec::Vec<Option<usize>> {
    let mut owners = alloc::vec::Vec::with_capacity(is_kernel.len());
    for (i, &kernel) in is_kernel.iter().enumerate() {
        let owner = (!kernel && i > 0 && is_kernel[i - 1]).then(|| i - 1);
        owners.push(owner);
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::initrd_owners;

    #[test]
    fn each_kernel_takes_the_data_module_after_it() {
        // kernel, initrd, kernel, initrd: two domains, each its own initrd.
        assert_eq!(
            initrd_owners(&[true, false, true, false]),
            [None, Some(0), None, Some(2)]
        );
        // Kernels without initrds; a kernel's second data module and a data
        // module first are domains of their own (refused by name).
        assert_eq!(initrd_owners(&[true, true]), [None, None]);
        assert_eq!(initrd_owners(&[true, false, false]), [None, Some(0), None]);
        assert_eq!(initrd_owners(&[false, true, false]), [None, None, Some(1)]);
        assert_eq!(initrd_owners(&[]), []);
    }
}

// The hardware half of the module: the `Domain` type itself, apart from
// the pure helpers above that the host tests exercise.
#[cfg(target_os = "none")]
#[allow(clippy::module_inception)]
mod domain {
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::vcpu::Vcpu;
    use super::Width;

    pub type DomId = u16;

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum State {
        Running,
        /// `sched_op(shutdown)` with this reason (`SHUTDOWN_*`).
        Shutdown(u32),
        /// Killed by the hypervisor, with why.
        Crashed(String),
    }

    pub struct Domain {
        pub id: DomId,
        pub name: String,
        /// Pseudo-physical to machine frame numbers (the P2M); a page the
        /// guest gave back is `builder::INVALID_MFN`.
        pub p2m: Vec<u64>,
        /// Frames of `p2m` whose M2P entry the guest moved elsewhere
        /// (`MMU_MACHPHYS_UPDATE`): frame -> its index in `p2m`.
        pub p2m_moved: alloc::collections::BTreeMap<u64, usize>,
        /// The page the guest registered for PIRQ EOI bits
        /// (`PHYSDEVOP_pirq_eoi_gmfn_v1/v2`), 0 for none.
        pub pirq_eoi_mfn: u64,
        /// The most pages it may hold (`maximum_reservation`).
        pub max_pages: u64,
        pub shared_info_mfn: u64,
        pub privileged: bool,
        /// The CMOS index the initial domain last wrote to port 0x70
        /// (Xen: `arch.cmos_idx`; `pv::emulate`).
        pub cmos_idx: u8,
        /// 64-bit, or a 32-bit (PAE) PV guest: kernel in ring 1,
        /// compat-mode segments, the 32-bit layouts of the ABI structures
        /// (`pv::width` has each width's layouts).
        pub width: Width,
        /// `vm_assist` bits enabled.
        pub vm_assist: u64,
        pub vcpus: Vec<Vcpu>,
        /// Index of the vCPU of the CPU holding the lock (see
        /// `sync::DomainLock`; for another holder, the last such one).
        pub cur: usize,
        /// The most of its vCPUs that were on CPUs at once (each on its
        /// own), for the end-of-run report.
        pub max_running: usize,
        /// How many of its vCPUs are on CPUs now (`running_on` set).
        pub running: usize,
        pub state: State,
        /// Console output not yet ended by a newline.
        pub console_line: String,
        /// Serial input not read yet (the initial domain: console_in.rs).
        pub console_in: alloc::collections::VecDeque<u8>,
        /// What a domU may still print now (bytes; see `console_byte`),
        /// when that was last topped up (ns), and what was dropped since.
        pub console_budget: u64,
        pub console_refilled: u64,
        pub console_dropped: u64,
        /// Set only while a `console_io` write of 0 bytes does nothing at
        /// all (the initial domain, whose output is not rate-limited, with
        /// no partial line): read without the lock by `syscall_entry`,
        /// which then answers 0 itself. Kept by
        /// `pv::console_io::console_settled` under the lock; clear is
        /// always safe (the call goes to Rust, which settles it).
        pub console_quiet: alloc::sync::Arc<core::sync::atomic::AtomicBool>,
        /// `vm_assist`'s `architectural_iopl` bit, as an atomic the
        /// bounce asm reads without the lock (`PerCpu::iopl_assist`; with
        /// it on, a vCPU's virtual IOPL is in its bounce frames). Kept
        /// by `pv::hypercall::vm_assist` under the lock.
        pub iopl_assist: alloc::sync::Arc<core::sync::atomic::AtomicBool>,
        /// Event-channel ports.
        pub ports: super::evtchn::Ports,
        /// `SCHEDOP_watchdog` timers: when each fires (system time, ns).
        pub watchdogs: [Option<u64>; 2],
        /// Its grant table (pv::grant).
        pub gnttab: super::grant::GrantTable,
        /// The console ring (domains other than 0): its frame and port.
        pub console: Option<(u64, super::evtchn::Port)>,
    }

    /// vCPU `vcpu`'s `vcpu_info`: its slot in `shared_info`, or where the
    /// guest put it (`VCPUOP_register_vcpu_info`).
    #[inline(always)]
    pub fn vcpu_info(d: &Domain, vcpu: usize) -> crate::mm::view::VcpuInfoArea {
        let ma = match d.vcpus[vcpu].vcpu_info_maddr {
            Some(ma) => ma,
            None => {
                d.shared_info_mfn << 12
                    | (core::mem::offset_of!(ringvisor_abi::xen::SharedInfo, vcpu_info)
                        + vcpu * core::mem::size_of::<ringvisor_abi::xen::VcpuInfo>())
                        as u64
            }
        };
        crate::mm::view::VcpuInfoArea::domain_shared(ma)
    }

    /// [`vcpu_info`]'s direct-map address.
    #[inline(always)]
    pub fn vcpu_info_addr(d: &Domain, vcpu: usize) -> u64 {
        vcpu_info(d, vcpu).va()
    }

    impl Domain {
        /// A 32-bit (PAE) guest: where a path differs by width and has no
        /// layout to look up (`pv::width`), the test it makes.
        #[inline(always)]
        pub fn is_32bit(&self) -> bool {
            self.width == Width::W32
        }

        pub fn is_alive(&self) -> bool {
            self.state == State::Running
        }

        /// The vCPU on the CPU.
        pub fn v(&self) -> &Vcpu {
            &self.vcpus[self.cur]
        }

        pub fn v_mut(&mut self) -> &mut Vcpu {
            &mut self.vcpus[self.cur]
        }
    }
}
