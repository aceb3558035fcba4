//! COM1, the serial line the console writes (console.rs).

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550, Uart16550Tty};

const COM1: u16 = 0x3f8;

/// COM1 set up (115200 8N1), or `None` if there is no UART that sends.
pub fn com1() -> Option<Uart16550Tty<PioBackend>> {
    // SAFETY: COM1's eight ports belong to the hypervisor alone; no guest
    // is ever given access to them. A second handle (a second call) only
    // writes the same ports again.
    let tty = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.or_else(|_| {
        // Some real UARTs fail the loopback self-test but still send.
        // SAFETY: as above.
        let mut u = unsafe { Uart16550::new_port(COM1) }.map_err(|_| ())?;
        u.init(Config::default()).map_err(|_| ())?;
        Ok::<_, ()>(Uart16550Tty::from_inner(u))
    });
    tty.ok()
}
