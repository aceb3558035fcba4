//! Event channels: the per-domain port table (pure logic, unit tested on
//! the host). The pending/mask bits themselves live in the guest's
//! `shared_info` page; `pv::event` sets them and raises upcalls.
//!
//! A port is in one state (Xen: `ECS_*`): free; unbound (waiting for
//! `remote` to bind); interdomain (connected to a port of another domain,
//! or of the same one); bound to a virtual IRQ; an IPI port; or the
//! domain's console ring, whose other end is the hypervisor itself.

use alloc::vec::Vec;

pub type DomId = u16;
pub type Port = u32;

/// Ports per domain. The 2-level ABI allows 4096 (64-bit guests); this
/// many is plenty for the guests ringvisor runs and keeps tables small.
pub const MAX_PORTS: usize = 1024;
/// Virtual IRQs (`VIRQ_*` < this).
pub const NR_VIRQS: usize = 24;
/// vCPUs per domain (each has a `vcpu_info` slot in `shared_info`).
pub const MAX_VCPUS: usize = 32;

/// VIRQs that belong to the domain rather than to one vCPU (Xen:
/// virq_is_global): all but the timer, debug, xenoprof and xenpmu ones.
pub fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, 0 | 1 | 7 | 13)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Free,
    /// Port 0: never handed out.
    Reserved,
    Unbound {
        remote: DomId,
    },
    Interdomain {
        remote: DomId,
        remote_port: Port,
    },
    Virq(u32),
    Ipi,
    /// Connected to the hypervisor's console reader.
    Console,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtError {
    /// No free port (`-ENOSPC`).
    NoSpace,
    /// Bad port or wrong state (`-EINVAL`).
    Invalid,
    /// Already bound (`-EEXIST`).
    Exists,
}

pub struct Ports {
    chans: Vec<Channel>,
    /// The vCPU each port notifies (`bind_vcpu`; a VIRQ's or IPI's own).
    notify: Vec<u8>,
    /// Per vCPU: which port each VIRQ is bound to (0: none).
    virq_port: Vec<[Port; NR_VIRQS]>,
}

impl Default for Ports {
    fn default() -> Self {
        Self::new()
    }
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            chans: alloc::vec![Channel::Reserved],
            notify: alloc::vec![0],
            virq_port: alloc::vec![[0; NR_VIRQS]; MAX_VCPUS],
        }
    }

    pub fn get(&self, port: Port) -> Option<Channel> {
        self.chans
            .get(port as usize)
            .copied()
            .filter(|c| *c != Channel::Reserved)
    }

    pub fn set(&mut self, port: Port, c: Channel) {
        if let Some(slot) = self.chans.get_mut(port as usize) {
            *slot = c;
        }
    }

    /// The lowest free port, now in state `c`, notifying vCPU 0.
    pub fn alloc(&mut self, c: Channel) -> Result<Port, EvtError> {
        if let Some(p) = self.chans.iter().position(|x| *x == Channel::Free) {
            self.chans[p] = c;
            self.notify[p] = 0;
            return Ok(p as Port);
        }
        if self.chans.len() >= MAX_PORTS {
            return Err(EvtError::NoSpace);
        }
        self.chans.push(c);
        self.notify.push(0);
        Ok(self.chans.len() as Port - 1)
    }

    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<Port, EvtError> {
        let slot = self
            .virq_port
            .get(vcpu as usize)
            .and_then(|v| v.get(virq as usize))
            .copied()
            .ok_or(EvtError::Invalid)?;
        if slot != 0 {
            return Err(EvtError::Exists);
        }
        let p = self.alloc(Channel::Virq(virq))?;
        self.virq_port[vcpu as usize][virq as usize] = p;
        self.notify[p as usize] = vcpu as u8;
        Ok(p)
    }

    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<Port> {
        self.virq_port
            .get(vcpu as usize)?
            .get(virq as usize)
            .copied()
            .filter(|&p| p != 0)
    }

    /// The vCPU `port` notifies.
    pub fn notify(&self, port: Port) -> u32 {
        self.notify.get(port as usize).copied().unwrap_or(0) as u32
    }

    /// `bind_vcpu` (as Xen): unbound, interdomain and global-VIRQ ports
    /// may move; per-vCPU VIRQs and IPIs belong to their vCPU.
    pub fn set_notify(&mut self, port: Port, vcpu: u32) -> Result<(), EvtError> {
        let movable = match self.get(port) {
            Some(Channel::Unbound { .. } | Channel::Interdomain { .. } | Channel::Console) => true,
            Some(Channel::Virq(v)) => virq_is_global(v),
            _ => false,
        };
        if !movable || vcpu as usize >= MAX_VCPUS {
            return Err(EvtError::Invalid);
        }
        if let Some(Channel::Virq(v)) = self.get(port) {
            let old = self.notify[port as usize] as usize;
            self.virq_port[old][v as usize] = 0;
            self.virq_port[vcpu as usize][v as usize] = port;
        }
        self.notify[port as usize] = vcpu as u8;
        Ok(())
    }

    /// Give an IPI port its vCPU (at bind time).
    pub fn set_ipi_vcpu(&mut self, port: Port, vcpu: u32) {
        if self.get(port) == Some(Channel::Ipi) && (vcpu as usize) < MAX_VCPUS {
            self.notify[port as usize] = vcpu as u8;
        }
    }

    /// Close `port` locally; returns what it was (the caller fixes up the
    /// other end of an interdomain channel).
    pub fn close(&mut self, port: Port) -> Result<Channel, EvtError> {
        let c = self.get(port).ok_or(EvtError::Invalid)?;
        if c == Channel::Free {
            return Err(EvtError::Invalid);
        }
        if let Channel::Virq(v) = c {
            let vcpu = self.notify[port as usize] as usize;
            self.virq_port[vcpu][v as usize] = 0;
        }
        self.chans[port as usize] = Channel::Free;
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.chans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_never_used() {
        let mut p = Ports::new();
        assert_eq!(p.get(0), None);
        assert_eq!(p.alloc(Channel::Ipi), Ok(1));
        assert_eq!(p.close(0), Err(EvtError::Invalid));
    }

    #[test]
    fn alloc_reuses_the_lowest_free_port() {
        let mut p = Ports::new();
        assert_eq!(p.alloc(Channel::Ipi), Ok(1));
        assert_eq!(p.alloc(Channel::Unbound { remote: 0 }), Ok(2));
        assert_eq!(p.alloc(Channel::Ipi), Ok(3));
        assert_eq!(p.close(2), Ok(Channel::Unbound { remote: 0 }));
        assert_eq!(p.close(2), Err(EvtError::Invalid), "double close");
        assert_eq!(p.alloc(Channel::Ipi), Ok(2));
    }

    #[test]
    fn virq_binds_once_per_vcpu() {
        let mut p = Ports::new();
        let port = p.bind_virq(0, 0).unwrap();
        assert_eq!(p.virq_port(0, 0), Some(port));
        assert_eq!(p.bind_virq(0, 0), Err(EvtError::Exists));
        let port1 = p.bind_virq(0, 1).unwrap();
        assert_eq!(p.notify(port1), 1);
        assert_eq!(p.bind_virq(99, 0), Err(EvtError::Invalid));
        assert_eq!(p.bind_virq(0, 99), Err(EvtError::Invalid));
        p.close(port).unwrap();
        assert_eq!(p.virq_port(0, 0), None);
        assert_eq!(p.virq_port(0, 1), Some(port1));
        assert!(p.bind_virq(0, 0).is_ok());
    }

    #[test]
    fn bind_vcpu_moves_what_xen_lets_move() {
        let mut p = Ports::new();
        let ipi = p.alloc(Channel::Ipi).unwrap();
        assert_eq!(
            p.set_notify(ipi, 3),
            Err(EvtError::Invalid),
            "an IPI stays with its vCPU"
        );
        p.set_ipi_vcpu(ipi, 3);
        assert_eq!(p.notify(ipi), 3);
        let timer = p.bind_virq(0, 0).unwrap();
        assert_eq!(
            p.set_notify(timer, 2),
            Err(EvtError::Invalid),
            "VIRQ_TIMER is per vCPU"
        );
        let console = p.bind_virq(2, 0).unwrap();
        assert_eq!(p.set_notify(console, 2), Ok(()), "VIRQ_CONSOLE is global");
        assert_eq!(p.virq_port(2, 2), Some(console));
        assert_eq!(p.virq_port(2, 0), None);
        let unbound = p.alloc(Channel::Unbound { remote: 1 }).unwrap();
        assert_eq!(p.set_notify(unbound, 1), Ok(()));
        assert_eq!(p.set_notify(99, 0), Err(EvtError::Invalid));
        p.close(ipi).unwrap();
        assert_eq!(p.alloc(Channel::Ipi), Ok(ipi));
        assert_eq!(p.notify(ipi), 0, "a reused port notifies vCPU 0 again");
    }

    #[test]
    fn ports_run_out() {
        let mut p = Ports::new();
        for _ in 1..MAX_PORTS {
            p.alloc(Channel::Ipi).unwrap();
        }
        assert_eq!(p.alloc(Channel::Ipi), Err(EvtError::NoSpace));
        assert_eq!(p.get(MAX_PORTS as Port), None);
    }
}
