//! Start of day: from the boot stub's jump into Rust to running domains.

use crate::arch::x86_64::exit::{exit, Verdict};
use crate::arch::x86_64::{apic, cpu, gdt, idt, percpu, smp, syscall, time};
use crate::boot_info::{BootInfo, MULTIBOOT1_MAGIC, MULTIBOOT2_MAGIC};
use crate::cmdline::{ModuleCmdline, Options, SelfTest};
use crate::console;
use crate::mm::{heap, paging};
use crate::sched::{self, Hv};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

extern "C" {
    static boot_stack_top: u8;
}

/// Entered from boot/boot.S in long mode, on the boot stack, interrupts off.
/// `no_mangle` (boot.S calls it by name) is the one thing outside `arch`
/// and `mm` the `unsafe_code` lint counts; it is allowed here alone.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn rust_start(magic: u32, info: u32) -> ! {
    console::init();
    let t_start = time::tsc();

    let bi = match magic {
        MULTIBOOT1_MAGIC => BootInfo::from_multiboot1(info as u64, &paging::BootPhysMem),
        MULTIBOOT2_MAGIC => {
            let bytes = crate::mm::boot::multiboot2_block(info);
            crate::mm::boot::multiboot2(bytes)
                .map_err(crate::boot_info::BootError::Multiboot2)
                .and_then(|mbi| BootInfo::from_multiboot2(&mbi, bytes))
        }
        other => Err(crate::boot_info::BootError::BadMagic(other)),
    };
    let bi = match bi {
        Ok(bi) => bi,
        Err(e) => exit(Verdict::Failure, format_args!("cannot boot: {e}")),
    };

    // The framebuffer console first, so it shows the banner too.
    let fbcon = bi.framebuffer.map_or(Err("none"), crate::fbcon::init);

    let mut bad_words = 0;
    let opts = Options::parse(bi.cmdline.as_str(), |b| {
        warn!("command line: {b}");
        bad_words += 1;
    });
    console::set_level(opts.loglvl);
    crate::arch::x86_64::exit::set_on_exit(opts.on_exit);

    let f = cpu::detect();
    // The banner is printed at every log level: it is how a harness (or a
    // person) knows the hypervisor started.
    console::print(format_args!(
        "{}ringvisor {} - a small hypervisor for Xen PV guests\n",
        console::TAG,
        env!("CARGO_PKG_VERSION")
    ));
    info!(
        "cpu: {} family {:#x} model {:#x} stepping {} \"{}\"",
        f.vendor.as_str(),
        f.family,
        f.model,
        f.stepping,
        f.brand.as_str()
    );
    info!("cpu features: {}", f.list().as_str());
    info!(
        "loader: {} {}",
        match bi.loader {
            crate::boot_info::Loader::Multiboot1 => "multiboot1",
            crate::boot_info::Loader::Multiboot2 => "multiboot2",
        },
        bi.loader_name.as_str()
    );
    info!("command line: \"{}\"", bi.cmdline.as_str());
    match (bi.framebuffer, bi.framebuffer_refused) {
        (Some(fb), _) => match fbcon {
            Ok((cols, rows)) => info!(
                "console: framebuffer {}x{} {} bpp (pitch {}) at {:#x}: {cols}x{rows} text",
                fb.width, fb.height, fb.bpp, fb.pitch, fb.addr
            ),
            Err(why) => warn!("console: framebuffer at {:#x} not used: {why}", fb.addr),
        },
        (None, Some(why)) => warn!("console: framebuffer not used: {why}"),
        (None, None) => {}
    }
    if bi.efi_memory_map {
        info!("memory map: from the EFI memory map (the loader gave no multiboot2 one)");
    }
    for r in bi.regions() {
        info!(
            "  memory {:#014x}-{:#014x} {}",
            r.start,
            r.end,
            r.kind.name()
        );
    }
    if bi.dropped_regions > 0 {
        warn!(
            "memory map: {} entries did not fit and were ignored",
            bi.dropped_regions
        );
    }

    cpu::enable_protections(&f);
    crate::sched::probe_mxcsr_mask();
    // The layers above the scheduler, wired in before anything runs.
    sched::set_hooks(sched::Hooks {
        watchdog_fired: crate::pv::sched_op::watchdog_fired,
        send_virq: crate::pv::event::send_virq,
        locked_way_out: crate::pv::entry::locked_way_out,
        failsafe_segments: crate::pv::traps::failsafe_segments,
        debug_poll: crate::debugkeys::poll,
    });
    idt::set_entry_hooks(&crate::pv::ENTRY_HOOKS);
    let stack_top = core::ptr::addr_of!(boot_stack_top) as u64;
    gdt::init(stack_top);
    idt::init();
    percpu::init(stack_top);
    syscall::init();
    crate::trace::set(opts.trace);
    let mem = paging::init(&bi, &f);
    info!(
        "memory: {} MiB usable, {} MiB free; direct map {:#x}..{:#x} ({} pages); image W^X at {:#x}",
        mem.usable >> 20,
        mem.free_after >> 20,
        paging::DIRECTMAP_BASE,
        paging::DIRECTMAP_BASE + mem.directmap_end,
        if mem.gbpages { "1 GiB" } else { "2 MiB" },
        paging::KERNEL_VMA,
    );
    let nframes = bi.max_usable().div_ceil(4096);
    let heap_size =
        heap::HEAP_BASE_SIZE + nframes * crate::mm::frametable::FrameTable::BYTES_PER_FRAME as u64;
    let heap = heap::init(heap_size)
        .unwrap_or_else(|| panic!("no room for the {} MiB heap", heap_size >> 20));
    debug!("heap: {} MiB at {heap:#x}", heap_size >> 20);
    paging::record_machine_map(
        bi.regions()
            .iter()
            .map(|r| (r.start, r.end - r.start, r.kind.e820_type())),
    );
    paging::init_m2p(nframes).unwrap_or_else(|| panic!("no room for the M2P table"));
    crate::mm::frametable::init(nframes as usize);

    let fw = crate::arch::x86_64::firmware::init(&bi);
    match fw.error {
        None => info!(
            "acpi: RSDP from {}, {}; FADT rev {}, S5 {}, reset {}; HPET {}",
            fw.rsdp_from,
            core::str::from_utf8(&fw.root).unwrap_or("?"),
            fw.fadt.map_or(0, |f| f.revision),
            fw.s5
                .map(|(a, b)| alloc::format!("SLP_TYP {a}/{b}"))
                .unwrap_or_else(|| String::from("unknown (no power-off)")),
            match fw.fadt.and_then(|f| f.reset) {
                Some((r, v)) => alloc::format!("register {:?} {:#x} <- {v:#x}", r.space, r.addr),
                None => String::from("by the keyboard controller"),
            },
            fw.hpet
                .map(|a| alloc::format!("at {a:#x}"))
                .unwrap_or_else(|| String::from("none")),
        ),
        Some(e) => warn!("acpi: {e}: no power-off; reset by the keyboard controller; PIT for time"),
    }
    let (tsc_hz, src) = time::init(&f);
    let a = apic::init(f.tsc_deadline);
    info!(
        "time: TSC {}.{:03} MHz (from {}), {}invariant; local APIC {} at {:#x}, timer {}.{:03} MHz (counted against {}), {}",
        tsc_hz / 1_000_000,
        tsc_hz / 1_000 % 1_000,
        src.name(),
        if f.invariant_tsc { "" } else { "not " },
        a.id,
        a.phys,
        a.timer_hz / 1_000_000,
        a.timer_hz / 1_000 % 1_000,
        a.counted_against,
        if a.tsc_deadline { "TSC-deadline mode" } else { "one-shot mode" },
    );
    if crate::arch::x86_64::firmware::debug_exit_present() {
        info!("qemu: isa-debug-exit at 0xf4 found: the verdict ends QEMU");
    }
    if apic::left_x2apic() {
        warn!("local APIC: the firmware left it in x2APIC mode; switched back to xAPIC");
    }
    // Which frames are I/O memory, and which of them domain 0 may map
    // (mm::iomem): from the e820 map, the modules, the local APIC.
    let phys_bits = raw_cpuid::CpuId::new()
        .get_processor_capacity_feature_info()
        .map_or(36, |c| c.physical_address_bits() as u32);
    let amd = matches!(f.vendor.as_str(), "AuthenticAMD" | "HygonGenuine").then_some(f.family);
    let modules: Vec<(u64, u64)> = bi.modules().iter().map(|m| (m.start, m.end)).collect();
    // The APs' real-mode trampoline: RAM below 1 MiB no domain may map.
    let (tramp_start, tramp_end) =
        smp::reserve_trampoline(&bi, crate::mm::frame::find_low_window).unwrap_or((0, 0));
    crate::mm::iomem::init(
        crate::mm::iomem::Policy::new(paging::machine_map(), &modules, a.phys, amd, phys_bits)
            .deny(tramp_start, tramp_end),
    );
    match apic::selfcheck(1_000_000) {
        Some(ns) => info!(
            "time: APIC one-shot of 1 ms fired after {}.{:03} ms",
            ns / 1_000_000,
            ns / 1_000 % 1_000
        ),
        None => error!("time: APIC one-shot of 1 ms never fired"),
    }
    smp::start(&bi, &f, opts.cpus);

    let boot_ns = time::tsc_to_ns(time::tsc() - t_start);
    info!(
        "boot: hypervisor ready in {}.{:03} ms",
        boot_ns / 1_000_000,
        boot_ns / 1_000 % 1_000
    );
    selftest(opts.selftest);

    // Each module is one domain: the first is domain 0. Modules that do
    // not fit in memory now wait until earlier domains end.
    let mut hv = Hv {
        domains: Vec::new(),
        here: [None; crate::arch::x86_64::smp::MAX_CPUS],
        last: [(usize::MAX, 0); crate::arch::x86_64::smp::MAX_CPUS],
        switches: [0; crate::arch::x86_64::smp::MAX_CPUS],
        build_failures: 0,
        pending: VecDeque::new(),
        next_id: 0,
        free_at_start: paging::with_frames(|fa| fa.free_frames()),
    };
    // QEMU's -initrd puts each module's path first; GRUB 2 does not.
    let names_image = bi.lines_name_the_image();
    let module_bytes = |m: &crate::boot_info::Module| crate::mm::boot::module(m.start, m.end);
    // A module that is not a kernel is the initrd of the kernel module
    // just before it, as Xen takes dom0's second module.
    let kernels: Vec<bool> = bi
        .modules()
        .iter()
        .map(|m| crate::domain::bzimage::is_kernel_image(module_bytes(m)))
        .collect();
    let owners = crate::domain::initrd_owners(&kernels);
    for (i, m) in bi.modules().iter().enumerate() {
        let bytes = module_bytes(m);
        if let Some(k) = owners[i] {
            info!(
                "module {i}: {} bytes, the initrd of module {k} (\"{}\")",
                bytes.len(),
                m.cmdline.as_str()
            );
            // Its kernel is the last one pushed (modules go in order).
            if let Some(p) = hv.pending.back_mut().filter(|p| p.index == k) {
                p.initrd = Some(bytes);
            }
            continue;
        }
        let mc = ModuleCmdline::parse(m.cmdline.as_str(), names_image, |b| {
            warn!("module {i}: {b}")
        });
        info!(
            "module {i}: {}bytes={} mem={} vcpus={} cmdline=\"{}\"",
            mc.name()
                .map(|n| alloc::format!("name={n} "))
                .unwrap_or_default(),
            m.end - m.start,
            match mc.options.mem {
                Some(m) => alloc::format!("{}M", m >> 20),
                None => String::from("default"),
            },
            mc.options.vcpus,
            mc.guest_args
        );
        if mc.options.vcpus as usize > crate::domain::evtchn::MAX_VCPUS {
            warn!(
                "module {i}: at most {} vCPUs per domain; using that many",
                crate::domain::evtchn::MAX_VCPUS
            );
        }
        hv.pending.push_back(sched::Pending {
            index: i,
            bytes,
            cmdline: String::from(m.cmdline.as_str()),
            initrd: None,
            names_image,
        });
    }
    if bi.dropped_modules > 0 {
        warn!(
            "{} modules did not fit and were ignored",
            bi.dropped_modules
        );
    }
    // Every domain id there will be (one per module, built or not).
    sched::init_registry(hv.pending.len());
    sched::build_pending(&mut hv);
    if hv.domains.is_empty() && hv.build_failures == 0 {
        exit(
            Verdict::Success,
            format_args!("no guests given; nothing to run"),
        );
    }
    if opts.bench {
        crate::bench::before_guests();
    }
    sched::start(hv)
}

/// `selftest=`: fault on purpose, to show (and test) the fatal path.
fn selftest(t: SelfTest) {
    match t {
        SelfTest::None => {}
        SelfTest::PageFault => {
            info!("selftest: reading unmapped hypervisor address {:#x}", paging::UNMAPPED_HYPERVISOR_ADDRESS);
            let v = paging::selftest_read_unmapped();
            error!("selftest: read {v:#x} from an address that should be unmapped");
        }
        SelfTest::Divide => {
            info!("selftest: dividing by zero");
            crate::arch::x86_64::exit::selftest_divide_by_zero();
        }
        SelfTest::Panic => panic!("selftest=panic asked for a panic"),
        SelfTest::DebugTrap => match crate::arch::x86_64::debugreg::selftest() {
            Some((rip, dbg)) => info!("selftest: #DB in hypervisor context noted and ignored (rip {rip:#x}, dr6 bits {dbg:#x})"),
            None => error!("selftest: the data breakpoint on a hypervisor static raised no #DB"),
        },
        SelfTest::IretFault => {
            info!("selftest: the first return to a guest will fault at the hypervisor's iretq");
            let pc = crate::arch::x86_64::percpu::this();
            pc.raise(crate::arch::x86_64::percpu::WORK_IRET_SELFTEST);
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::arch::x86_64::exit::interrupts_off();
    let loc = info.location();
    console::print_emergency(format_args!(
        "{}FATAL: panic at {}:{}: {}\n",
        console::TAG,
        loc.map_or("?", |l| l.file()),
        loc.map_or(0, |l| l.line()),
        info.message()
    ));
    exit(Verdict::Panic, format_args!("hypervisor panic"))
}
