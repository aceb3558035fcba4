//! Debug keys: keys typed on the serial line while a guest runs make the
//! hypervisor print its state, and `i D VV` injects an exception by hand.
//!
//! Cases (one boot of guest-idle, which waits for an injected #BP):
//! - `h` prints the key list;
//! - `q` lists d0 with its state and its vCPU;
//! - `d` prints d0v0's registers;
//! - `t` prints the trap table (the guest installed vector 3);
//! - `e` shows the guest's VIRQ_TIMER port;
//! - `r` shows recent hypercalls (the guest's polls);
//! - `c` lists the CPUs (a 2-CPU machine: CPU 0 and CPU 1), with the
//!   wake IPIs each took and the vCPU it runs (or idle);
//! - `i003` injects #BP into d0: the guest sees vector 3 and succeeds.
//!
//! And serial input (one boot each): typed lines reach d0 through
//! console_io(CONSOLEIO_read); three Ctrl-A move the input to d1, whose
//! lines arrive in its console ring's input half; when d1 has ended the
//! input follows to the live d0.

use ringvisor_tests::build;
use ringvisor_tests::guest::GuestSpec;
use ringvisor_tests::qemu::{Qemu, Verdict};
use std::time::Duration;

#[test]
fn debug_keys_dump_state_and_inject() {
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let idle = build::test_guest("guest-idle").unwrap_or_else(|e| panic!("no guest-idle: {e}"));
    let out = Qemu::kernel(elf)
        .smp(2)
        .guest(GuestSpec::new(idle).opt("mem", "32M"))
        // The input is the initial domain's: three Ctrl-A give it to the
        // hypervisor (there is no other domain to pass it to first).
        .send_on("IDLE: start", b"\x01\x01\x01hqdterci003")
        .timeout(Some(Duration::from_secs(60)))
        .run()
        .unwrap_or_else(|e| panic!("QEMU did not run: {e}"));
    eprintln!("debug keys: {}", out.summary());
    let t = out.transcript();
    let has = |needle: &str| out.lines.iter().any(|l| l.text.contains(needle));
    let after = |header: &str, needle: &str| {
        let at = out.lines.iter().position(|l| l.text.contains(header));
        at.is_some_and(|i| out.lines[i + 1..].iter().any(|l| l.text.contains(needle)))
    };
    assert!(
        has("serial input to the hypervisor"),
        "the input did not move to the hypervisor\n{t}"
    );
    assert!(has("[debug keys] h: help"), "no help\n{t}");
    assert!(
        after("[debug key q]", "d0 guest-idle") && has("Running"),
        "no domain list\n{t}"
    );
    assert!(after("[debug key d]", "d0v0: rip 0x"), "no registers\n{t}");
    assert!(
        after("[debug key t]", "  3: dpl"),
        "no trap table entry for vector 3\n{t}"
    );
    assert!(after("[debug key e]", "Virq(0)"), "no VIRQ_TIMER port\n{t}");
    assert!(
        after("[debug key r]", "sched_op"),
        "no recent hypercalls\n{t}"
    );
    assert!(
        after("[debug key c]", "CPU 0: APIC ID 0")
            && after("[debug key c]", "CPU 1: APIC ID 1, ")
            && after("[debug key c]", "wake IPIs taken, "),
        "no CPU list\n{t}"
    );
    assert!(has("[debug key i] d0v0: vector 3"), "no injection\n{t}");
    assert!(
        has("(d0) INFO: INJECTED: vector 3"),
        "the guest did not see the injected #BP\n{t}"
    );
    assert!(has("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn serial_input_goes_to_the_initial_domain_and_moves_with_ctrl_a() {
    // Typed bytes reach d0 by default: guest-idle mode=echo reads them with
    // console_io(CONSOLEIO_read) when VIRQ_CONSOLE says so and prints each
    // line back (the move to the hypervisor by three Ctrl-A is the test
    // above).
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let idle = build::test_guest("guest-idle").unwrap_or_else(|e| panic!("no guest-idle: {e}"));
    let out = Qemu::kernel(elf)
        .guest(GuestSpec::new(idle).opt("mem", "32M").args("mode=echo"))
        .send_on("ECHO: ready", b"hello ringvisor\rquit\r")
        .timeout(Some(Duration::from_secs(60)))
        .run()
        .unwrap_or_else(|e| panic!("QEMU did not run: {e}"));
    eprintln!("serial input: {}", out.summary());
    let t = out.transcript();
    let has = |needle: &str| out.lines.iter().any(|l| l.text.contains(needle));
    assert!(
        has("(d0) INFO: ECHO: hello ringvisor"),
        "d0 did not read the line\n{t}"
    );
    assert!(has("(d0) INFO: ECHO: quit"), "{t}");
    assert!(has("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}

#[test]
fn serial_input_reaches_a_domu_console_ring_and_follows_to_a_live_domain() {
    // d0 (guest-idle mode=echo) reads with console_io; d1 (guest-console
    // mode=echo) reads its console ring's `in` half. A line for d0, three
    // Ctrl-A (the input to d1), a line and `quit` for d1; once d1 has shut
    // down, `quit` goes to d0, the live domain, without another Ctrl-A.
    let elf = build::test_elf().unwrap_or_else(|e| panic!("no hypervisor ELF: {e}"));
    let idle = build::test_guest("guest-idle").unwrap_or_else(|e| panic!("no guest-idle: {e}"));
    let console =
        build::test_guest("guest-console").unwrap_or_else(|e| panic!("no guest-console: {e}"));
    let out = Qemu::kernel(elf)
        .guest(GuestSpec::new(idle).args("mode=echo"))
        .guest(GuestSpec::new(console).args("mode=echo"))
        .send_on(
            "(d1) INFO: ECHO: ready",
            b"hello d0\r\x01\x01\x01hello d1\rquit\r",
        )
        .send_on("(RV) d1: shutdown: poweroff", b"quit\r")
        .timeout(Some(Duration::from_secs(60)))
        .run()
        .unwrap_or_else(|e| panic!("QEMU did not run: {e}"));
    eprintln!("serial input to a domU: {}", out.summary());
    let t = out.transcript();
    let has = |needle: &str| out.lines.iter().any(|l| l.text.contains(needle));
    assert!(
        has("(d0) INFO: ECHO: hello d0"),
        "d0 did not read its line\n{t}"
    );
    assert!(
        has("serial input to d1 (type Ctrl-A three times to switch)"),
        "three Ctrl-A did not move the input to d1\n{t}"
    );
    assert!(
        has("(d1) INFO: ECHO: hello d1"),
        "d1 did not read the line from its console ring\n{t}"
    );
    assert!(
        has("(d1) PASS: the console port was notified of the input"),
        "{t}"
    );
    assert!(has("(d1) RESULT: SUCCESS"), "{t}");
    assert!(
        has("serial input to d0: the domain that had it has ended"),
        "the input did not follow to d0\n{t}"
    );
    assert!(has("(d0) INFO: ECHO: quit"), "{t}");
    assert!(has("(d0) RESULT: SUCCESS"), "{t}");
    assert_eq!(out.verdict, Verdict::Success, "{t}");
}
