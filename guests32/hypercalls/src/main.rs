//! `guest32-hypercalls`: every hypercall ringvisor's compat layer
//! (`src/pv/compat.rs`) translates for a 32-bit PAE guest, with good and
//! bad arguments, made from ring 1 through the `int $0x82` stubs.
//!
//! Expected values are Xen's for a 32-bit PV guest on 64-bit Xen (4.17:
//! `xen/arch/x86/pv/callback.c`, `descriptor-tables.c`, `iret.c`,
//! `misc-hypercalls.c`, `xen/arch/x86/mm.c`, `xen/common/compat/`,
//! `xen/include/hypercall-defs.c`), except where docs/abi.md or issue 4
//! says ringvisor does otherwise; those cases are marked (doc) here and
//! listed in guests32/README.md ("Differences"). Debian's Xen has no
//! 32-bit PV, so nothing here was run on real Xen.
//!
//! Cases, in the order they run:
//! - `set_trap_table`: the runtime's 8-byte entries (cs 0xe019) → 0; an
//!   unmapped pointer → `-EFAULT`; an entry with the RPL-0 selector 0xe018
//!   → `-EPERM` (doc; Xen raises the RPL to 1 and returns 0), after which
//!   `ud2` still bounces to the old entry; NULL → 0 (clears the table).
//! - `set_callbacks(0xe019, event, 0xe019, failsafe)` → 0; an RPL-0 event
//!   or failsafe selector, or the ring-3 code selector 0xe02b → `-EINVAL`
//!   (doc, issue 4: "refuses a selector whose RPL is not 1"; Xen fixes the
//!   RPL up and returns 0).
//! - `callback_op` (12-byte `callback_register`): register event,
//!   failsafe (`CALLBACKF_mask_events`), nmi → 0; an RPL-0 cs → `-EINVAL`
//!   (doc); type 2 (`syscall`, 64-bit only) → `-ENOSYS`; an unmapped
//!   argument → `-EFAULT`; unregister event / failsafe → `-EINVAL`,
//!   unregister nmi → 0.
//! - `stack_switch(0xe021, kernel stack)` → 0; ss 0xe020 (RPL 0) or 0xe033
//!   (ring 3) → `-EPERM` (doc; Xen fixes an RPL-0 ss up and keeps a
//!   ring-3 one, returning 0); the iret cases check the refused calls left
//!   the stack alone.
//! - `fpu_taskswitch(1)` → 0, CR0.TS reads 1, `fninit` → #NM bounced (eip
//!   at it, cs 0xe019), after which TS reads 0; `(1)` then `(0)` → TS 0,
//!   `fninit` runs.
//! - `console_io`: write → 0; unmapped buffer → `-EFAULT`; count 0 with an
//!   unmapped buffer → 0; command 9 → `-ENOSYS`.
//! - `xen_version`: version 4.17 (doc); extraversion 0, NUL-terminated;
//!   capabilities has the word `xen-3.0-x86_32p`; platform_parameters
//!   `virt_start` 0xF5800000 in a 4-byte struct; pagesize 4096;
//!   get_features(0) → 0; an unmapped buffer (extraversion,
//!   platform_parameters) or one in the hypervisor hole (capabilities at
//!   0xF5800000) → `-EFAULT`; command 99 → `-ENOSYS`.
//! - `sched_op`: yield → 0, command 99 → `-ENOSYS`; `sched_op_compat`
//!   yield → 0.
//! - `vm_assist`: enable/disable type 0 (4gb_segments) → 0; type 31 and
//!   m2p_strict (64-bit only) → `-EINVAL`; command 7 → `-ENOSYS`.
//! - `physdev_op`: `cli` at virtual IOPL 0 → #GP(0); `set_iopl(1)` → 0,
//!   then `cli; sti` are emulated without a bounce and leave the upcall
//!   mask alone (masked or not); `set_iopl(4)` → `-EINVAL`; an unmapped
//!   argument → `-EFAULT`; command 99 → `-ENOSYS`; `set_iopl(0)` → `cli`
//!   faults again.
//! - `set_segment_base` → `-ENOSYS` (x86-64 only, as Xen).
//! - `memory_op`: `memory_map` with the 8-byte 32-bit struct → 0,
//!   `nr_entries` 1, the words after the struct untouched, one RAM entry
//!   from 0 of at least `nr_pages` pages (what a PV domU sees on Xen under
//!   libxl: `xc_domain_set_memmap_limit`); unmapped argument or buffer →
//!   `-EFAULT`; `current_reservation(DOMID_SELF)` = `nr_pages`;
//!   `maximum_reservation` ≥ `nr_pages`; `maximum_ram_page` > 0;
//!   `increase_reservation`, `decrease_reservation`, `populate_physmap` →
//!   `-ENOSYS` (doc: "Not yet ... memory reservations"); command 63 →
//!   `-ENOSYS`.
//! - `vcpu_op`: `is_up(0)` = 1, `is_up(31)` → `-ENOENT`; `up(0)` → 0;
//!   `set_periodic_timer` 0.5 ms → `-EINVAL`, 20 ms → 0;
//!   `stop_periodic_timer`, `stop_singleshot_timer` → 0;
//!   `get_runstate_info` (44-byte layout), `register_runstate_memory_area`
//!   (4-byte handle; into the hypervisor's hole → `-EFAULT`),
//!   `set_singleshot_timer` (12-byte layout; past with `future` →
//!   `-ETIME`); `initialise` of vCPU 0 → `-EEXIST`, of vCPU 40 → `-ENOENT`.
//! - `mmu_update` / `update_va_mapping` / `mmuext_op` (mm.rs), with three
//!   frames of its own that nothing maps (L, A, B): L mapped writable over
//!   a scratch page with the PTE in two halves → 0, written and read back;
//!   the local APIC's MMIO page → `-EPERM`; its own L1 or L3 writable
//!   (`update_va_mapping`, `mmu_update`) → `-EINVAL` (doc: docs/abi.md
//!   page-table rules, src/pv/mm.rs; Xen says `-EBUSY`); its own L1
//!   read-only → 0 and readable; a batch of three 12-byte `mmuext_op`s
//!   (pin L1, unpin, TLB flush) → 0, done 3; pin of a page mapped writable
//!   → `-EINVAL`; pin L → 0, again → `-EINVAL`; L writable while pinned →
//!   `-EINVAL`; `mmu_update` of the L2 entry of the free address
//!   0xD0000000 → L, then of L's entry 0 (by machine address) → A: write
//!   and read back there; `update_va_mapping` of A at the next page shows
//!   the same data; B read-only with NX (hi half 0x80000000) → 0, the
//!   entry reads back with NX, a write there → #PF ec 3; bit 62 in the hi
//!   half → `-EINVAL`, PCD → `-EINVAL` (the initial domain: 0, it may
//!   choose cache attributes), software bit 52 → 0; `mmu_update` of an L1
//!   entry to the APIC page →
//!   `-EPERM`, to L itself writable → `-EINVAL`; a batch [good, foreign]
//!   → `-EPERM`, done 1; `update_va_mapping` at 0xF5800000 → `-EINVAL`;
//!   TLB_FLUSH_LOCAL, INVLPG_LOCAL → 0; command 99 → `-ENOSYS`; then
//!   unmapped (a read → #PF ec 0), unlinked, unpinned (again → `-EINVAL`),
//!   and L maps writable again.
//! - `set_gdt` / `update_descriptor` (gdt.rs): `set_gdt` of a page still
//!   mapped writable → `-EINVAL`; read-only, `[null, code DPL 1, data DPL
//!   0, data DPL 3]` → 0, the DPL-0 data descriptor reads back with DPL 1
//!   in the page, `lar` sees DPL 1, 1, 3 and 0x11 loads into %fs;
//!   `update_descriptor` (address and descriptor in halves) of a DPL-0
//!   data segment with limit 0x12345 → 0, DPL 1 in the page and for
//!   `lar`, `lsl` = 0x12345; a 64-bit code segment → `-EINVAL`; a call
//!   gate → `-EINVAL` (doc: docs/abi.md set_gdt; Xen accepts one to a good
//!   selector and emulates it); a misaligned address → `-EINVAL`; the
//!   address with hi half 1 → refused; `set_gdt` with a 64-bit code
//!   segment or a call gate → `-EINVAL` and the old GDT stays; 7169
//!   entries → `-EINVAL`; an unmapped frame list → `-EFAULT`; 0 entries →
//!   0, after which the page maps writable again.
//! - `event_channel_op` (events.rs): `set_callbacks` → 0;
//!   `bind_ipi(vcpu 0)` → 0; `status` → `EVTCHNSTAT_ipi`, vCPU 0; `send`
//!   with events unmasked → one upcall to the event callback on the way
//!   back (cs 0xe019, saved mask 0, IF 1, masked on entry, the port
//!   pending), left through `HYPERVISOR_iret` (mask 0 again); `send` with
//!   a handler leaving through a native `iret` → the mask stays 1; `send`
//!   while masked → no upcall, `evtchn_upcall_pending` 1; `close` → 0,
//!   `status` → `EVTCHNSTAT_closed`; `close` again and `send` to it →
//!   `-EINVAL`; `bind_ipi(vcpu 31)` → `-ENOENT`; an unmapped argument →
//!   `-EFAULT`; command 99 → `-ENOSYS`.
//! - `set_timer_op` (time in `ebx`/`ecx` halves): the default periodic
//!   timer stopped, `VIRQ_TIMER` bound; now + 2 ms → 0 and the port goes
//!   pending; now + 2^32 ns + 1 ms (only the hi half says "far") → 0 and
//!   nothing after 30 ms; now + 5 ms then 0 (cancel) → nothing after 30 ms.
//! - `iret` (iret.rs), made by hand: to ring 1 → `eax` from the stub's
//!   push, CF from the frame's eflags, the stack balanced, mask =
//!   `!eflags.IF` (0 then 1); to ring 3 (cs 0xe02b, ss 0xe033, esp, eflags
//!   from the frame) → user code runs at CPL 3 with `eax` from the frame,
//!   and its `int3` comes back on the `stack_switch` stack with the saved
//!   mask `!IF`.
//! - `multicall` (multicall.rs, 32-byte entries): [xen_version, is_up(0),
//!   op 63, is_up(31)] → 0 and each `result`; a nested multicall entry →
//!   its result `-EINVAL`, the inner list not run, the next entry run; a
//!   list unmapped or at 0xF5800000 → `-EFAULT`; 200 xen_version entries
//!   (continuations) → 0, every result written; [iret, xen_version] made
//!   with a bare `int $0x82` below a ring-1 iret frame (XTF's xsa-213) →
//!   back at the frame's eip with its eax, the xen_version entry not run,
//!   the iret entry's result the frame's eax (Xen's `compat_iret`).
//! - `set_debugreg`/`get_debugreg` (debugreg.rs): DR0-3 = guest addresses
//!   → 0, read back; 0xF5800000 or 0xFFFFF000 → `-EPERM`; DR6 = 0 → reads
//!   0xffff0ff0; DR7 = 1 → 0x401; GD or an I/O breakpoint → `-EPERM`;
//!   register 8 → `-ENODEV` (set), `-EINVAL` (get); `mov` to/from
//!   `%dr1`/`%dr6` in ring 1 as the hypercalls; a refused `mov` to
//!   `%dr0`/`%dr7` → #GP(0).
//! - `grant_table_op` (grant.rs), own grants (id 0 as the initial domain,
//!   else `domid=N`): query_size; setup_table (16-byte struct, 4-byte
//!   frames; count 2 → `-EINVAL`); copy → `-ENOSYS` (ringvisor); a grant
//!   mapped by address (pattern visible, GTF_reading|GTF_writing), an
//!   `mmu_update`/`update_va_mapping` over it → `-EINVAL` (Xen crashes the
//!   domain), bad handle → `GNTST_bad_handle`, unmap → #PF there, GTF
//!   clear; by PTE (misaligned → `GNTST_general_error`); bad ref,
//!   readonly grant writable, DOMID_SELF → `GNTST_bad_gntref`,
//!   `GNTST_general_error`, `GNTST_bad_domain`; readonly map (a write
//!   #PF); device map (`dev_bus_addr`, wrong one on unmap →
//!   `GNTST_bad_dev_addr`); v2: set/get_version, get_status_frames
//!   (12-byte struct, 8-byte frames), the status frame writable →
//!   `-EINVAL`, read-only → 0, a v2 map's status word, set_version 1 →
//!   `-EBUSY` while a grant or the status frame is mapped, then 0.
//! - `XENMEM_exchange` (exchange.rs, 44-byte struct, 4-byte lists): a free
//!   frame for a new one → 0, nr_exchanged 1, `MMU_MACHPHYS_UPDATE` of the
//!   new → 0, of the old → `-EPERM` (Xen: `-EINVAL`); nr_exchanged ==
//!   nr_extents → 0; 1 in for 2 out → `-EINVAL`; the out list at
//!   0xF5800000 → `-EFAULT`; an order-1 extent at the new frame (the next
//!   one is not ours) → `-EINVAL`, nothing done.
//!   After the exchange the compat M2P maps the new frame to the page.
//! - the compat M2P (m2p.rs): `XENMEM_machphys_mapping` → Xen's window
//!   (0xF5800000..0xFFE00000, max_mfn 0x297ffff, 12 bytes); the table
//!   read there gives the guest's own frames' page numbers; a write #PF;
//!   `mmu_update` of the slot-3 L2 from slot 428 up → `-EPERM`, of slot
//!   427 → 0, of L3 slot 3 → `-EINVAL`; pinning that L2 as an L2 →
//!   `-EINVAL` (its type is `pae_xen_l2`).
//! - platform.rs, the 32-bit layouts of the dom0 calls: `platform_op`
//!   version 0 → `-EACCES`, settime64 → 0 (d0; a domU `-EPERM`),
//!   get_cpuinfo CPU 0 online; `mca` physcpuinfo one CPU (domU `-EPERM`);
//!   `xenpmu_op` → `-EOPNOTSUPP`; `apic_read` (12 bytes) → `-EINVAL`
//!   (domU `-EPERM`); `pirq_eoi_gmfn_v2` (4-byte frame) → 0, again
//!   `-EBUSY`; `set_priority` of port 0xffff → `-EINVAL`.
//! - ring 3 (user.rs): syscall32 and sysenter callbacks registered at a
//!   second entry → 0; `syscall` from ring 3 → the syscall32 callback
//!   with eip after it, cs 0xe02b, the user esp, on the `stack_switch`
//!   stack, events masked; `sysenter` from ring 3 → the sysenter callback
//!   with Xen's frame (eip 0, cs 3, esp 0). (Should the CPU refuse
//!   sysenter in compatibility mode, as AMD's do, the case instead checks
//!   the #UD bounced at the sysenter.)
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]
// `Trap` (the whole bounce frame) is the point of every `Err` here.
#![allow(clippy::result_large_err)]

pvguest32::guest_main!("hypercalls32", run);

#[cfg(target_arch = "x86")]
mod basic;
#[cfg(target_arch = "x86")]
mod callbacks;
#[cfg(target_arch = "x86")]
mod common;
#[cfg(target_arch = "x86")]
mod debugreg;
#[cfg(target_arch = "x86")]
mod events;
#[cfg(target_arch = "x86")]
mod exchange;
#[cfg(target_arch = "x86")]
mod gdt;
#[cfg(target_arch = "x86")]
mod grant;
#[cfg(target_arch = "x86")]
mod iret;
#[cfg(target_arch = "x86")]
mod m2p;
#[cfg(target_arch = "x86")]
mod mm;
#[cfg(target_arch = "x86")]
mod multicall;
#[cfg(target_arch = "x86")]
mod oldtop;
#[cfg(target_arch = "x86")]
mod platform;
#[cfg(target_arch = "x86")]
mod user;

#[cfg(target_arch = "x86")]
fn run(si: &pvguest32::abi32::StartInfo32) {
    callbacks::set_trap_table();
    callbacks::set_callbacks();
    callbacks::callback_op();
    callbacks::stack_switch();
    callbacks::fpu_taskswitch();
    basic::console_io();
    basic::xen_version();
    basic::sched_op();
    basic::vm_assist();
    basic::physdev_op();
    basic::set_segment_base();
    basic::memory_op(si);
    basic::vcpu_op();
    mm::run(si.nr_pages);
    mm::reservation_round_trip(si.nr_pages);
    gdt::run();
    events::event_channel_op();
    events::set_timer_op();
    iret::run();
    multicall::run();
    debugreg::run();
    grant::run();
    exchange::run(si.nr_pages);
    m2p::run(si.nr_pages);
    platform::run();
    user::run();
    // Last: the guest stays on the page tables it makes there.
    oldtop::run(si.nr_pages);
}
