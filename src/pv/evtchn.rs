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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Free,
    /// Port 0: never handed out.
    Reserved,
    Unbound { remote: DomId },
    Interdomain { remote: DomId, remote_port: Port },
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
    /// Per vCPU 0 for now: which port each VIRQ is bound to (0: none).
    virq_port: [Port; NR_VIRQS],
}

impl Default for Ports {
    fn default() -> Self {
        Self::new()
    }
}

impl Ports {
    pub fn new() -> Ports {
        Ports { chans: alloc::vec![Channel::Reserved], virq_port: [0; NR_VIRQS] }
    }

    pub fn get(&self, port: Port) -> Option<Channel> {
        self.chans.get(port as usize).copied().filter(|c| *c != Channel::Reserved)
    }

    pub fn set(&mut self, port: Port, c: Channel) {
        if let Some(slot) = self.chans.get_mut(port as usize) {
            *slot = c;
        }
    }

    /// The lowest free port, now in state `c`.
    pub fn alloc(&mut self, c: Channel) -> Result<Port, EvtError> {
        if let Some(p) = self.chans.iter().position(|x| *x == Channel::Free) {
            self.chans[p] = c;
            return Ok(p as Port);
        }
        if self.chans.len() >= MAX_PORTS {
            return Err(EvtError::NoSpace);
        }
        self.chans.push(c);
        Ok(self.chans.len() as Port - 1)
    }

    pub fn bind_virq(&mut self, virq: u32) -> Result<Port, EvtError> {
        let slot = self.virq_port.get(virq as usize).copied().ok_or(EvtError::Invalid)?;
        if slot != 0 {
            return Err(EvtError::Exists);
        }
        let p = self.alloc(Channel::Virq(virq))?;
        self.virq_port[virq as usize] = p;
        Ok(p)
    }

    pub fn virq_port(&self, virq: u32) -> Option<Port> {
        self.virq_port.get(virq as usize).copied().filter(|&p| p != 0)
    }

    /// Close `port` locally; returns what it was (the caller fixes up the
    /// other end of an interdomain channel).
    pub fn close(&mut self, port: Port) -> Result<Channel, EvtError> {
        let c = self.get(port).ok_or(EvtError::Invalid)?;
        if c == Channel::Free {
            return Err(EvtError::Invalid);
        }
        if let Channel::Virq(v) = c {
            self.virq_port[v as usize] = 0;
        }
        self.chans[port as usize] = Channel::Free;
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.chans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chans.len() <= 1
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
    fn virq_binds_once() {
        let mut p = Ports::new();
        let port = p.bind_virq(0).unwrap();
        assert_eq!(p.virq_port(0), Some(port));
        assert_eq!(p.bind_virq(0), Err(EvtError::Exists));
        assert_eq!(p.bind_virq(99), Err(EvtError::Invalid));
        p.close(port).unwrap();
        assert_eq!(p.virq_port(0), None);
        assert!(p.bind_virq(0).is_ok());
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
