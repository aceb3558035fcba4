//! The image head (`head.S`): Xen ELF notes, hypercall page, `_start`; and
//! `pvguest32_start`, the first Rust code, which checks the start of day,
//! maps `shared_info` and runs the guest's `main`.

#[cfg(target_arch = "x86")]
use crate::abi;
#[cfg(target_arch = "x86")]
use crate::abi::x86_32::StartInfo32;
use crate::cell::Stack;

/// Size of the boot stack `_start` moves to (the builder's stack is only
/// guaranteed to be a few hundred bytes).
pub const BOOT_STACK_SIZE: usize = 8 * 4096;

/// The stack `main` runs on.
pub static BOOT_STACK: Stack<BOOT_STACK_SIZE> = Stack::new();

#[cfg(target_arch = "x86")]
core::arch::global_asm!(
    include_str!("head.S"),
    GUEST_OS = const abi::XEN_ELFNOTE_GUEST_OS,
    GUEST_VERSION = const abi::XEN_ELFNOTE_GUEST_VERSION,
    XEN_VERSION = const abi::XEN_ELFNOTE_XEN_VERSION,
    LOADER = const abi::XEN_ELFNOTE_LOADER,
    VIRT_BASE = const abi::XEN_ELFNOTE_VIRT_BASE,
    PADDR_OFFSET = const abi::XEN_ELFNOTE_PADDR_OFFSET,
    ENTRY = const abi::XEN_ELFNOTE_ENTRY,
    HYPERCALL_PAGE = const abi::XEN_ELFNOTE_HYPERCALL_PAGE,
    FEATURES = const abi::XEN_ELFNOTE_FEATURES,
    PAE_MODE = const abi::XEN_ELFNOTE_PAE_MODE,
    virt_base = const crate::VIRT_BASE,
    boot_stack = sym BOOT_STACK,
    boot_stack_size = const BOOT_STACK_SIZE,
    start = sym pvguest32_start,
    options(att_syntax)
);

#[cfg(target_arch = "x86")]
extern "Rust" {
    /// `guest_main!`: the test's name.
    static PVGUEST32_TEST_NAME: &'static str;
    /// `guest_main!`: the test.
    fn pvguest32_main(si: &'static StartInfo32);
}

/// Called by `_start` on the boot stack with `%esi` as it came from the
/// domain builder. Never returns.
///
/// 1. Checks that the hypercall page was filled (else nothing can be said:
///    it spins on `ud2`, which without a trap table the hypervisor reports
///    as an unhandled fault of the domain).
/// 2. Prints `TEST: <name>`.
/// 3. Checks the start_info magic and maps `shared_info` (else
///    `RESULT: ERROR`).
/// 4. Runs the test, then prints the `RESULT:` line and shuts down.
#[cfg(target_arch = "x86")]
extern "C" fn pvguest32_start(si: *const StartInfo32) -> ! {
    if !crate::hypercall::page_is_filled() {
        loop {
            // SAFETY: `ud2` only raises #UD; there is nothing else to do.
            unsafe { core::arch::asm!("ud2") };
        }
    }
    // SAFETY: `guest_main!` defines the static.
    let name = unsafe { PVGUEST32_TEST_NAME };
    crate::report::begin(name);

    // SAFETY: the builder passes the address of a mapped start_info page
    // in %esi; nothing else writes it while the guest runs.
    let si: &'static StartInfo32 = unsafe { &*si };
    crate::start_info::init(si);
    if let Err(why) = crate::start_info::check_magic(si) {
        crate::report::error(format_args!(
            "start_info: {why} (\"{}\")",
            crate::console::CStr(&si.magic)
        ));
    }
    if let Err(rc) = crate::start_info::map_shared_info(si) {
        crate::report::error(format_args!(
            "update_va_mapping(shared_info {:#x}) = {}",
            si.shared_info,
            crate::report::Rc(rc)
        ));
    }

    // SAFETY: `guest_main!` defines it with this signature.
    unsafe { pvguest32_main(si) };
    crate::report::finish()
}

/// The panic handler: prints the panic and crashes the domain
/// (`RESULT: ERROR`, a broken test).
#[cfg(target_arch = "x86")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::println!("PANIC: {}", info);
    crate::report::error(format_args!("panic"))
}
