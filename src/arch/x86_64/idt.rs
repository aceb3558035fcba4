//! The IDT: all 256 vectors enter through `entry.S` and reach
//! `trap_dispatch` with a full register frame (but for `int $0x82`'s
//! constant answers, which `int82_entry` gives itself).
//!
//! A fault in the hypervisor itself (an exception taken in ring 0) is fatal:
//! we print a decoded dump and exit with the panic verdict, so a bug never
//! looks like a hang or a silent triple fault. (#DF, NMI and #MC run on
//! their own IST stacks, so even a blown stack gets its dump.) The one
//! exception taken in ring 0 that is not fatal is #DB, on its own IST stack
//! too: a guest's breakpoint can hit in the hypervisor (debugreg.rs).

use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use spin::Mutex;
use x86::dtables::{lidt, DescriptorTablePointer};

use super::exit::{exit, Verdict};
use super::gdt::{HYPERVISOR_CS, IST_DEBUG, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::{answers, apic, cpu};
use crate::log::{print_emergency, TAG};

/// The registers as `trap_common` saves them, lowest address first.
// Tour 02, 04: the guest's registers while the hypervisor runs
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU for some vectors, else 0 by the stub. For a #DB
    /// from a guest, DR6 with positive polarity (debugreg.rs puts it here).
    pub error_code: u64,
    /// The CPU's interrupt frame.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// entry.S pushes exactly these words, in this order.
const _: () = assert!(size_of::<TrapFrame>() == 22 * 8);
const _: () = assert!(offset_of!(TrapFrame, vector) == 15 * 8);
const _: () = assert!(offset_of!(TrapFrame, rip) == 17 * 8);

pub const VEC_DB: u64 = 1;
pub const VEC_NMI: u64 = 2;
pub const VEC_DF: u64 = 8;
pub const VEC_PF: u64 = 14;
pub const VEC_MC: u64 = 18;

extern "C" {
    /// 256 entry stubs, 16 bytes apart (entry.S).
    static idt_stubs: [u8; 256 * 16];
    /// The entry of `int $0x82` (entry.S).
    static int82_entry: u8;
}

/// Pseudo-vectors for the `syscall` entries (above the 256 real ones).
pub const VEC_SYSCALL: u64 = 0x100;
pub const VEC_SYSCALL32: u64 = 0x101;
/// The error code of a [`VEC_HYPERCALL32`] frame whose number
/// `int82_entry` found is not a constant answer: only the locked path
/// answers it, so `trap_dispatch` does not ask `pv::fast`. Set back to 0
/// before anything else sees the frame.
pub const NOT_QUICK: u64 = 1;
/// A `syscall` of a number `syscall_entry` found none of `pv::fast`'s (a
/// kernel's, by the user-mode hint; a stale hint costs nothing, the locked
/// path handles a user system call too): `trap_dispatch` sends it to the
/// locked path as [`VEC_SYSCALL`] without asking `pv::fast`.
pub const VEC_SYSCALL_LOCKED: u64 = 0x103;
/// A `syscall` hypercall already answered by the quick way (`rax` holds
/// its result) whose way out needs the full frame (entry.S's `QUICK_WAY`
/// marks the frame so for `Quick::Done`; `pv::fast_trap::upcall_asm`
/// before an upcall the asm may decline).
pub const VEC_SYSCALL_DONE: u64 = 0x102;

/// What `syscall_entry` saves for the quick way (entry.S), lowest address
/// first: the registers a Rust call may clobber and the guest keeps, then
/// the top of a `TrapFrame` (vector, error code and the interrupt frame),
/// at the same place as the full frame's. `rax` is the hypercall number on
/// the way in and the result on the way out.
#[repr(C)]
#[derive(Debug)]
pub struct QuickRegs {
    pub rax: u64,
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r11: u64,
    pub rcx: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// entry.S pushes exactly these words, in this order, with an even number
// of them (RSP 16-byte aligned for the call), and its top is a
// TrapFrame's: the way out by iretq and the full frame use it in place.
const _: () = assert!(size_of::<QuickRegs>() == 16 * 8);
const _: () = assert!(
    size_of::<TrapFrame>() - offset_of!(TrapFrame, vector)
        == size_of::<QuickRegs>() - offset_of!(QuickRegs, vector)
);

/// What `syscall_quick` tells `syscall_entry` to do next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum Quick {
    /// Answered: back by `sysretq`, the registers as they are.
    Sysret = 0,
    /// Answered: back by `iretq` on the frame's `rip`..`ss`, which the
    /// CPU takes (checked).
    Iretq = 1,
    /// Nothing done: the full way, as if the quick one did not exist.
    Full = 2,
    /// Answered, but the way out needs the full frame (vector
    /// [`VEC_SYSCALL_DONE`]): something is pending, or the frame is one
    /// only the locked way out can settle.
    Done = 3,
    /// Answered (`EVTCHNOP_send`), and the event upcall is due and the
    /// only thing pending: `bounce.S` `upcall_quick` bounces it to the
    /// callback in the frame's `error_code`, or declines to the full frame
    /// (vector [`VEC_SYSCALL_DONE`], already set).
    Upcall = 4,
}

/// `int $0x82`: a 32-bit guest's hypercall.
pub const VEC_HYPERCALL32: u64 = 0x82;

/// The RFLAGS bits a `sysretq` or `iretq` straight back must find as the
/// way out would leave them (IF and bit 1 set; IOPL, NT, RF, VM clear):
/// `pv::fast::quick_out`'s test, in entry.S's constant answers.
const RFLAGS_MUST: u64 = 0x202 | 0x3000 | 0x4000 | 0x10000 | 0x20000;

/// What `bounce.S` needs to know of the vCPU, its trap table, the
/// `iret_context` and the frames, read off the compiler's layouts here.
mod bounce_layout {
    pub use super::super::hot::layout::*;
    use core::mem::{offset_of, size_of};
    use ringvisor_abi::x86_64::{IretContext, HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};

    /// The 64-bit `vcpu_info`'s `arch.cr2` (`traps::set_cr2_at`'s).
    pub const VI_CR2: usize = offset_of!(ringvisor_abi::xen::VcpuInfo, arch)
        + offset_of!(ringvisor_abi::x86_64::ArchVcpuInfo, cr2);
    /// The 32-bit `vcpu_info`'s `arch.cr2` (`traps::set_cr2_at`'s, 32 bits).
    pub const VI32_CR2: usize = offset_of!(ringvisor_abi::x86_32::VcpuInfo32, arch)
        + offset_of!(ringvisor_abi::x86_32::ArchVcpuInfo32, cr2);
    pub const IC_RAX: usize = offset_of!(IretContext, rax);
    pub const IC_R11: usize = offset_of!(IretContext, r11);
    pub const IC_RCX: usize = offset_of!(IretContext, rcx);
    pub const IC_FLAGS: usize = offset_of!(IretContext, flags);
    pub const IC_RIP: usize = offset_of!(IretContext, rip);
    pub const IC_CS: usize = offset_of!(IretContext, cs);
    pub const IC_RFLAGS: usize = offset_of!(IretContext, rflags);
    pub const IC_RSP: usize = offset_of!(IretContext, rsp);
    pub const IC_SS: usize = offset_of!(IretContext, ss);
    pub const IC_SIZE: usize = size_of::<IretContext>();
    /// The hypervisor's range is one 2^43-byte block: `va >> 43` says.
    pub const HV_START_43: u64 = HYPERVISOR_VIRT_START >> 43;
    const _: () = assert!(
        HYPERVISOR_VIRT_END - HYPERVISOR_VIRT_START == 1 << 43
            && HYPERVISOR_VIRT_START.is_multiple_of(1 << 43)
    );
    /// The `ud2; .ascii "xen"; cpuid` prefix's 7 bytes as the low bytes of
    /// a little-endian word shifted left by 8 (the 8th byte read drops out).
    pub const FORCED_CPUID_SHL8: u64 = {
        let b = super::super::answers::FORCED_CPUID;
        let mut w = 0u64;
        let mut i = 0;
        while i < 7 {
            w |= (b[i] as u64) << (8 * i + 8);
            i += 1;
        }
        w
    };
}

/// The recent-calls record's `what` for each exception vector (the
/// names `exception_name` gives), which `bounce.S` copies into a record.
pub static BOUNCE_WHAT: [super::recent::What; 32] = {
    let mut w = [super::recent::What::Named(""); 32];
    let mut i = 0;
    while i < 32 {
        w[i] = super::recent::What::Named(EXCEPTION_NAMES[i]);
        i += 1;
    }
    w
};
const _: () = assert!(size_of::<super::recent::What>() == 16);

/// The record's `what` for a user `syscall` bounced (`bounce.S`), as
/// `pv::fast_trap::bounce_to` names it.
pub static SYSCALL_WHAT: super::recent::What = super::recent::What::Named("syscall");

/// The record's `what` for an event upcall (`bounce.S` `upcall_quick`),
/// as `traps::deliver` names it (`event::deliver_upcall`).
pub static UPCALL_WHAT: super::recent::What = super::recent::What::Named("event upcall");

/// The vectors `bounce.S` takes first for a 64-bit guest (bit N: vector
/// N): #BP, #OF, #UD, #PF.
const BOUNCE_VECTORS: u64 = 1 << 3 | 1 << 4 | 1 << 6 | 1 << 14;
/// Those it takes for a 32-bit guest: #BP, #OF, #PF.
const BOUNCE_VECTORS32: u64 = 1 << 3 | 1 << 4 | 1 << 14;

/// The RFLAGS bits a handler is entered without (`traps::enter_handler_on`:
/// TF, NT, RF, VM, AC, IOPL) and the way out clears (IOPL, NT, VM).
const RFLAGS_HANDLER_CLEAR: u64 = 0x100 | 0x4000 | 0x10000 | 0x20000 | 0x40000 | 0x3000;

/// The forced-emulation `cpuid` of `bounce.S` (its step 6): what
/// `pv::emulate::forced` gives, eax | ebx << 32 in RAX, ecx | edx << 32
/// in RDX (the C ABI's two-word return).
#[repr(C)]
struct CpuidOut {
    eax: u32,
    ebx: u32,
    ecx: u32,
    edx: u32,
}

#[no_mangle]
extern "C" fn forced_cpuid(leaf: u32, sub: u32) -> CpuidOut {
    let [eax, ebx, ecx, edx] = (hooks().cpuid_policy)(leaf, sub);
    CpuidOut { eax, ebx, ecx, edx }
}

core::arch::global_asm!(
    include_str!("entry.S"),
    include_str!("bounce.S"),
    TF_CS = const offset_of!(TrapFrame, cs),
    TF_RIP = const offset_of!(TrapFrame, rip),
    PC_PV32 = const offset_of!(super::percpu::PerCpu, pv32),
    PC_SYSRET = const offset_of!(super::percpu::PerCpu, sysret),
    TF_RSP_AFTER_POPS = const offset_of!(TrapFrame, rsp) - offset_of!(TrapFrame, vector),
    PC_CR4_PV32 = const offset_of!(super::percpu::PerCpu, cr4_pv32),
    CR4_SMAP = const 1u64 << 21,
    PC_SCRATCH = const offset_of!(super::percpu::PerCpu, scratch_rsp),
    PC_STACK_TOP = const offset_of!(super::percpu::PerCpu, stack_top),
    GUEST_SS = const ringvisor_abi::x86_64::FLAT_RING3_SS64 as u64,
    GUEST_CS = const ringvisor_abi::x86_64::FLAT_RING3_CS64 as u64,
    GUEST_CS32 = const ringvisor_abi::x86_64::FLAT_RING3_CS32 as u64,
    VEC_SYSCALL = const VEC_SYSCALL,
    VEC_SYSCALL32 = const VEC_SYSCALL32,
    VEC_SYSCALL_DONE = const VEC_SYSCALL_DONE,
    NOT_QUICK = const NOT_QUICK,
    VEC_SYSCALL_LOCKED = const VEC_SYSCALL_LOCKED,
    PC_USER_MODE = const offset_of!(super::percpu::PerCpu, user_mode),
    QR_RSP_AFTER_POPS = const offset_of!(QuickRegs, rsp) - offset_of!(QuickRegs, vector),
    QR_VECTOR = const offset_of!(QuickRegs, vector),
    QUICK_NRS = const answers::QUICK_NRS & !answers::ASM_NRS & !(1 << ringvisor_abi::xen::HYPERVISOR_IRET),
    ASM_NRS = const answers::ASM_NRS,
    ASM_ENOSYS = const answers::ASM_ENOSYS,
    ASM_VERSION = const answers::ASM_VERSION,
    NR_XEN_VERSION = const ringvisor_abi::xen::HYPERVISOR_XEN_VERSION,
    NR_CONSOLE_IO = const ringvisor_abi::xen::HYPERVISOR_CONSOLE_IO,
    CONSOLEIO_WRITE = const ringvisor_abi::xen::CONSOLEIO_WRITE,
    VCPU_KERNEL_MODE = const bounce_layout::VCPU_KERNEL_MODE,
    VCPU_IN_FAILSAFE = const bounce_layout::VCPU_IN_FAILSAFE,
    VI_UPCALL = const answers::VI_UPCALL,
    PC_VCPU = const offset_of!(super::percpu::PerCpu, vcpu),
    PC_VCPU_INFO = const offset_of!(super::percpu::PerCpu, vcpu_info),
    PC_WORK = const offset_of!(super::percpu::PerCpu, work),
    PC_IDS = const offset_of!(super::percpu::PerCpu, ids),
    PC_CONSOLE_QUIET = const offset_of!(super::percpu::PerCpu, console_quiet),
    PC_IOPL_ASSIST = const offset_of!(super::percpu::PerCpu, iopl_assist),
    TRACE_FLAGS = sym super::recent::FLAGS,
    TRACE_RECENT = const super::recent::RECENT,
    HV_HITS = sym super::debugreg::HV_HITS,
    PC_RING = const offset_of!(super::percpu::PerCpu, ring),
    SLOT_SEQ = const super::recent::SLOT_SEQ,
    RING_NEXT = const super::recent::RING_NEXT,
    RING_RECS = const super::recent::RING_RECS,
    RING_MASK = const super::recent::RING_MASK,
    REC_TAG = const super::recent::REC_TAG,
    REC_TAG_HYPERCALL = const super::recent::REC_TAG_HYPERCALL,
    REC_NR = const super::recent::REC_NR,
    REC_IDS = const super::recent::REC_IDS,
    REC_A = const super::recent::REC_A,
    REC_B = const super::recent::REC_B,
    RFLAGS_MUST = const RFLAGS_MUST,
    VEC_HYPERCALL32 = const VEC_HYPERCALL32,
    IF_RIP = const offset_of!(TrapFrame, rip) - offset_of!(TrapFrame, vector),
    IF_CS = const offset_of!(TrapFrame, cs) - offset_of!(TrapFrame, vector),
    IF_RFLAGS = const offset_of!(TrapFrame, rflags) - offset_of!(TrapFrame, vector),
    IF_SS = const offset_of!(TrapFrame, ss) - offset_of!(TrapFrame, vector),
    GUEST32_CS1 = const ringvisor_abi::x86_32::FLAT_RING1_CS as u64,
    GUEST32_SS1 = const ringvisor_abi::x86_32::FLAT_RING1_SS as u64,
    QUICK_VECTORS = const answers::QUICK_VECTORS,
    TF_VECTOR = const offset_of!(TrapFrame, vector),
    BOUNCE_VECTORS = const BOUNCE_VECTORS,
    NR_IRET = const ringvisor_abi::xen::HYPERVISOR_IRET,
    NR_EVTCHN = const ringvisor_abi::xen::HYPERVISOR_EVENT_CHANNEL_OP,
    EVTCHNOP_SEND = const ringvisor_abi::event_channel::EVTCHNOP_SEND,
    HV_START_43 = const bounce_layout::HV_START_43,
    VCPU_IOPL = const bounce_layout::VCPU_IOPL,
    VCPU_GUEST_TABLE = const bounce_layout::VCPU_GUEST_TABLE,
    VCPU_TRAP_TABLE = const bounce_layout::VCPU_TRAP_TABLE,
    VCPU_FAILSAFE_STREAK = const bounce_layout::VCPU_FAILSAFE_STREAK,
    TE_SHIFT = const bounce_layout::TE_SHIFT,
    TE_ADDRESS = const bounce_layout::TE_ADDRESS,
    TE_FLAGS = const bounce_layout::TE_FLAGS,
    VEC_UD = const answers::VEC_UD,
    TI_IF = const ringvisor_abi::xen::TI_IF,
    VI_MASK = const answers::VI_UPCALL + 1,
    IF_RSP = const offset_of!(TrapFrame, rsp) - offset_of!(TrapFrame, vector),
    BQ = const 7 * 8,
    IR = const 5 * 8,
    BOUNCE_WHAT = sym BOUNCE_WHAT,
    REC_WHAT = const offset_of!(super::recent::Record, what),
    RFLAGS_HANDLER_CLEAR = const RFLAGS_HANDLER_CLEAR,
    FORCED_CPUID_SHL8 = const bounce_layout::FORCED_CPUID_SHL8,
    IC_RAX = const bounce_layout::IC_RAX,
    IC_R11 = const bounce_layout::IC_R11,
    IC_RCX = const bounce_layout::IC_RCX,
    IC_FLAGS = const bounce_layout::IC_FLAGS,
    IC_RIP = const bounce_layout::IC_RIP,
    IC_CS = const bounce_layout::IC_CS,
    IC_RFLAGS = const bounce_layout::IC_RFLAGS,
    IC_RSP = const bounce_layout::IC_RSP,
    IC_SS = const bounce_layout::IC_SS,
    IC_SIZE = const bounce_layout::IC_SIZE,
    VGCF_IN_SYSCALL = const ringvisor_abi::x86_64::VGCF_IN_SYSCALL,
    VCPU_GUEST_TABLE_USER = const bounce_layout::VCPU_GUEST_TABLE_USER,
    VCPU_GS_BASE_KERNEL = const bounce_layout::VCPU_GS_BASE_KERNEL,
    VCPU_GS_BASE_USER = const bounce_layout::VCPU_GS_BASE_USER,
    VCPU_KERNEL_SP = const bounce_layout::VCPU_KERNEL_SP,
    VCPU_SYSCALL_CB = const bounce_layout::VCPU_SYSCALL_CB,
    CB_ADDRESS = const bounce_layout::CB_ADDRESS,
    CB_MASK = const bounce_layout::CB_MASK,
    MSR_KERNEL_GS_BASE = const 0xc000_0102u32,
    SYSCALL_WHAT = sym SYSCALL_WHAT,
    UPCALL_WHAT = sym UPCALL_WHAT,
    QR_RCX = const offset_of!(QuickRegs, rcx),
    QR_R11 = const offset_of!(QuickRegs, r11),
    QR_EC = const offset_of!(QuickRegs, error_code),
    QR_RIP = const offset_of!(QuickRegs, rip),
    QR_CS = const offset_of!(QuickRegs, cs),
    QR_RFLAGS = const offset_of!(QuickRegs, rflags),
    QR_RSP = const offset_of!(QuickRegs, rsp),
    QR_SS = const offset_of!(QuickRegs, ss),
    US = const 7 * 8,
    BOUNCE_VECTORS32 = const BOUNCE_VECTORS32,
    TE_CS = const bounce_layout::TE_CS,
    VCPU_COMPAT_L4 = const bounce_layout::VCPU_COMPAT_L4,
    VCPU_CR2 = const bounce_layout::VCPU_CR2,
    VI_CR2 = const bounce_layout::VI_CR2,
    VI32_CR2 = const bounce_layout::VI32_CR2,
    VEC_PF = const answers::VEC_PF,
    options(att_syntax)
);

extern "C" {
    /// `guest_copy`'s copying instruction and its fixup (entry.S).
    static guest_copy_insn: u8;
    static guest_copy_insn_tail: u8;
    static guest_copy_fault: u8;
    fn guest_copy(dst: u64, src: u64, len: u64) -> u64;
}

/// Copy `len` bytes from `src` to `dst` through the page tables CR3 holds,
/// with ring 0's rights (SMAP lifted for the copy): `false` when the CPU
/// refused an access (nothing of a one-page destination was written then:
/// whether a page may be written is the same for all its bytes).
///
/// # Safety
/// `dst..dst+len` and `src..src+len` must each be either hypervisor memory
/// the caller may access, or addresses whose every mapping the current
/// page tables may hold is one the hypervisor may touch on the guest's
/// behalf: the guest's own half, never the hypervisor's range.
#[inline(always)]
pub unsafe fn copy_through_cr3(dst: u64, src: u64, len: u64) -> bool {
    let failed: u64;
    // SAFETY: the caller's contract; a fault inside is fixed up (above).
    // Called from asm with the registers `guest_copy` really uses (its
    // comment in entry.S) rather than the C ABI's, so the caller keeps
    // its others live across the copy (a bounce's frame copy spilled six
    // registers around it). `call` pushes below RSP: the target has no
    // red zone (x86_64-unknown-none), and `guest_copy` uses no stack
    // beyond its return address, so alignment does not matter.
    unsafe {
        core::arch::asm!(
            "call {copy}",
            copy = sym guest_copy,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            in("rdx") len,
            out("rcx") _,
            out("rax") failed,
            options(att_syntax),
        );
    }
    failed == 0
}

/// `va..va+len` is one page of the guests' half: not empty, inside one
/// page, canonical, outside the range the ABI reserves for the hypervisor.
/// Every mapping any CR3 holds there is a guest's (the hypervisor's own
/// are in its slots of that range only: `mm::paging`), memory the
/// hypervisor may touch on a guest's behalf.
#[inline(always)]
fn guest_half_page(va: u64, len: usize) -> bool {
    use ringvisor_abi::x86_64::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
    let top = va >> 47;
    len != 0
        && len <= 4096 - (va & 0xfff) as usize
        && (top == 0 || top == 0x1ffff)
        && !(HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END).contains(&va)
}

/// Copy from `va` (one page of the guests' half) into `out` through the
/// page tables CR3 holds, with ring 0's rights; `false`: not such a range,
/// or the CPU refused it (`out` then holds whatever was copied). Which
/// address space and which rights make that the guest's own access is
/// the caller's question (`pv::guest_mem::GuestSpace::by_cpu`).
#[inline(always)]
pub fn copy_from_guest_page(out: &mut [u8], va: u64) -> bool {
    guest_half_page(va, out.len())
        // SAFETY: `out` is the caller's own buffer; the source is one page
        // of the guests' half (checked), where any mapping is one the
        // hypervisor may read, and a refused read is fixed up.
        && unsafe { copy_through_cr3(out.as_mut_ptr() as u64, va, out.len() as u64) }
}

/// Copy `data` to `va` (one page of the guests' half) as
/// [`copy_from_guest_page`] reads; `false`: not such a range, or the CPU
/// refused it (then nothing was written: one page is writable or not).
#[inline(always)]
pub fn copy_to_guest_page(va: u64, data: &[u8]) -> bool {
    guest_half_page(va, data.len())
        // SAFETY: as copy_from_guest_page: a destination in the guests'
        // half, which never maps the hypervisor's own memory.
        && unsafe { copy_through_cr3(va, data.as_ptr() as u64, data.len() as u64) }
}

/// `out.len()` `T`s read from `va` as [`copy_from_guest_page`] reads, into
/// memory not zeroed first; `None` where that returns `false`.
#[inline(always)]
pub fn read_pods_from_guest_page<T: ringvisor_abi::Pod>(
    out: &mut [core::mem::MaybeUninit<T>],
    va: u64,
) -> Option<&[T]> {
    let len = core::mem::size_of_val(out);
    let copied = guest_half_page(va, len)
        // SAFETY: as copy_from_guest_page, into our own `len` bytes.
        && unsafe { copy_through_cr3(out.as_mut_ptr() as u64, va, len as u64) };
    // SAFETY: the copy wrote all `len` bytes (it reports a refusal before
    // returning `true` otherwise), and any bytes are valid `T: Pod`s.
    copied.then(|| unsafe { core::slice::from_raw_parts(out.as_ptr() as *const T, out.len()) })
}

/// A `T` read from `va` as [`copy_from_guest_page`] reads, without zeroing
/// it first; `None` where that returns `false`.
#[inline(always)]
pub fn read_pod_from_guest_page<T: ringvisor_abi::Pod>(va: u64) -> Option<T> {
    let len = core::mem::size_of::<T>();
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    let copied = guest_half_page(va, len)
        // SAFETY: as copy_from_guest_page, into our own `len` bytes.
        && unsafe { copy_through_cr3(v.as_mut_ptr() as u64, va, len as u64) };
    // SAFETY: the copy wrote all `len` bytes (it reports a refusal before
    // returning `true` otherwise), and any bytes are a valid `T: Pod`.
    copied.then(|| unsafe { v.assume_init() })
}

extern "C" {
    /// Pops a TrapFrame at RSP and returns through it (entry.S).
    pub(super) fn ret_to_frame() -> !;
    /// Its `iretq` (entry.S): a fault there is a refused guest frame.
    static ret_iretq: u8;
}

/// The way out's `iretq` faulted: the guest frame it was given is one the
/// CPU refuses. `pv::retcheck` refuses those before the `iretq`, so this
/// is a hypervisor bug, but the guest's: as Xen's exception fixup on its
/// exit `iretq`, it goes to that domain (crashed, saying why), never to
/// `fatal`. `f` is a copy of the fault's frame: its registers are the
/// guest's (already popped), and the iret frame the CPU refused is at
/// `f.rsp`, the top of this CPU's stack.
// Tour 02: a fault of the hypervisor's own iretq
fn iret_fixup(f: TrapFrame) -> ! {
    let slot = super::percpu::guest_frame();
    let iret_at = slot as u64 + offset_of!(TrapFrame, rip) as u64;
    if f.rsp != iret_at {
        fatal(
            &f,
            "the return iretq faulted on a frame that is not the guest slot",
        );
    }
    // SAFETY: f.rsp is the guest slot's iret frame (checked above): five
    // words of this CPU's stack, above everything the fault pushed.
    let w = unsafe { core::ptr::read(f.rsp as *const [u64; 5]) };
    if w[1] & 3 == 0 {
        fatal(&f, "the return iretq to ring 0 faulted");
    }
    let mut g = f;
    (g.rip, g.cs, g.rflags, g.rsp, g.ss) = (w[0], w[1], w[2], w[3], w[4]);
    // SAFETY: the slot is this CPU's guest frame at the top of its stack;
    // the frame of this fault lies below it and is not used again.
    unsafe { slot.write(g) };
    // SAFETY: as above; the only reference to the slot from here on.
    (hooks().return_faulted)(unsafe { &mut *slot }, f.vector, f.error_code);
    enter_frame(slot)
}

/// Leave the hypervisor through `frame`, which must be the TrapFrame at
/// the top of this CPU's stack (see `percpu::guest_frame`): used to enter a
/// vCPU for the first time and after switching vCPUs outside a trap.
// Tour 01: entering a vCPU outside a trap
pub fn enter_frame(frame: *mut TrapFrame) -> ! {
    // SAFETY: `frame` is the guest frame slot at the top of this CPU's
    // hypervisor stack, filled with a validated guest context; everything
    // below it on the stack is abandoned (nothing returns here).
    unsafe {
        core::arch::asm!(
            "mov rsp, {f}",
            "jmp {ret}",
            f = in(reg) frame,
            ret = sym ret_to_frame,
            options(noreturn)
        )
    }
}

static IDT: Mutex<[[u64; 2]; 256]> = Mutex::new([[0; 2]; 256]);

/// A 64-bit interrupt gate (SDM Vol. 3A, 6.14.1): interrupts stay off on
/// entry until the handler decides otherwise.
fn interrupt_gate(handler: u64, ist: u8, dpl: u8) -> [u64; 2] {
    let lo = (handler & 0xffff)
        | (HYPERVISOR_CS as u64) << 16
        | (ist as u64 & 7) << 32
        | (0x8e | (dpl as u64 & 3) << 5) << 40 // present, type 0xe
        | ((handler >> 16) & 0xffff) << 48;
    [lo, handler >> 32]
}

// Tour 03: the real IDT, and the gates ring 3 may use
pub fn init() {
    let base = core::ptr::addr_of!(idt_stubs) as u64;
    let mut idt = IDT.lock();
    for (v, gate) in idt.iter_mut().enumerate() {
        let ist = match v as u64 {
            VEC_DF => IST_DOUBLE_FAULT,
            VEC_DB => IST_DEBUG,
            VEC_NMI => IST_NMI,
            VEC_MC => IST_MACHINE_CHECK,
            _ => 0,
        };
        // Gates a guest may use with `int`: #BP (int3), #OF (into), 0x80
        // (the system-call vector of many PV kernels). Any other `int n` from
        // a guest is a #GP that the bounce code decodes (traps.rs).
        // 0x82: hypercalls of 32-bit guest kernels, from ring 1 only.
        let dpl = match v {
            3 | 4 | 0x80 => 3,
            0x82 => 1,
            _ => 0,
        };
        // `int $0x82` has an entry of its own, with the constant answers
        // (entry.S, `int82_entry`).
        let handler = if v as u64 == VEC_HYPERCALL32 {
            core::ptr::addr_of!(int82_entry) as u64
        } else {
            base + v as u64 * 16
        };
        *gate = interrupt_gate(handler, ist, dpl);
    }
    let ptr = DescriptorTablePointer::new_from_slice(&idt[..]);
    // SAFETY: the IDT is a static that lives forever; every gate points at
    // a stub in entry.S that saves state and calls trap_dispatch.
    unsafe { lidt(&ptr) };
}

/// Load the (shared) IDT on an application processor: the gates are the
/// same for every CPU, only IST stacks differ, and those are in its TSS.
pub fn load() {
    let idt = IDT.lock();
    let ptr = DescriptorTablePointer::new_from_slice(&idt[..]);
    // SAFETY: as in `init`: a static table whose every gate is valid.
    unsafe { lidt(&ptr) };
}

/// Point gate `vector` at `handler` with `dpl`, returning the gate it
/// replaces. Only for the boot-time baseline (`bench`, src/bench.rs), which
/// borrows a few gates before any guest runs and gives them back with
/// [`restore_gate`]; the CPU reads gates from memory at each delivery.
pub fn borrow_gate(vector: u8, handler: u64, dpl: u8) -> [u64; 2] {
    core::mem::replace(
        &mut IDT.lock()[vector as usize],
        interrupt_gate(handler, 0, dpl),
    )
}

/// Put back a gate [`borrow_gate`] replaced.
pub fn restore_gate(vector: u8, old: [u64; 2]) {
    IDT.lock()[vector as usize] = old;
}

/// Where a guest's entries go once the entry code has looked at them:
/// the policy above `arch` (`pv`), registered once at boot
/// ([`set_entry_hooks`], from `start`) so that nothing here imports it.
/// Each is one indirect call, as Xen's entry.S calls its C handlers.
pub struct EntryHooks {
    /// A 64-bit guest kernel's hypercall of [`answers::QUICK_NRS`] on the
    /// quick way's registers (`pv::fast::quick`).
    pub quick: fn(&mut QuickRegs) -> Quick,
    /// `EVTCHNOP_send` on the quick way's registers (`pv::fast::evtchn_send`).
    pub evtchn_send: fn(&mut QuickRegs) -> Quick,
    /// An exception of [`answers::QUICK_VECTORS`], bounced without the
    /// locked path (`pv::fast_trap::exception`); `false`: nothing done.
    pub quick_exception: fn(&mut TrapFrame) -> bool,
    /// Any exception of a guest, on its domain alone
    /// (`pv::fast::exception`); `false`: nothing done.
    pub exception: fn(&mut TrapFrame) -> bool,
    /// A 64-bit guest's `syscall` on its domain alone
    /// (`pv::fast::hypercall`); `false`: nothing done.
    pub hypercall: fn(&mut TrapFrame) -> bool,
    /// A 32-bit guest kernel's `int $0x82` with a constant answer
    /// (`pv::fast::hypercall32`); `false`: nothing done.
    pub hypercall32: fn(&mut TrapFrame) -> bool,
    /// A `syscall` the per-CPU hint says came from guest user mode
    /// (`pv::fast::user_syscall`), with the way to go when it did not.
    pub user_syscall: fn(&mut TrapFrame, fn(&mut TrapFrame)),
    /// Every entry from a guest, the locked way (`pv::entry::from_guest`).
    pub from_guest: fn(&mut TrapFrame),
    /// The locked way out of an entry already answered
    /// (`pv::entry::locked_way_out`).
    pub locked_way_out: fn(&mut TrapFrame),
    /// The return `iretq` faulted on a guest frame
    /// (`pv::entry::return_faulted`: vector, error code).
    pub return_faulted: fn(&mut TrapFrame, u64, u64),
    /// The CPUID a guest sees (`pv::emulate::cpuid_policy`), for
    /// bounce.S's forced-emulation `cpuid`.
    pub cpuid_policy: fn(u32, u32) -> [u32; 4],
}

/// Before [`set_entry_hooks`]: no guest runs yet, so none is called.
fn unset(_: &mut TrapFrame) -> bool {
    panic!("a guest entry before the entry hooks were registered")
}
static UNSET: EntryHooks = EntryHooks {
    quick: |_| Quick::Full,
    evtchn_send: |_| Quick::Full,
    quick_exception: |_| false,
    exception: |_| false,
    hypercall: |_| false,
    hypercall32: |_| false,
    user_syscall: |f, _| {
        unset(f);
    },
    from_guest: |f| {
        unset(f);
    },
    locked_way_out: |f| {
        unset(f);
    },
    return_faulted: |f, _, _| {
        unset(f);
    },
    cpuid_policy: |_, _| [0; 4],
};
static HOOKS: AtomicPtr<EntryHooks> = AtomicPtr::new(&UNSET as *const EntryHooks as *mut _);

/// Register where guest entries go (once, at boot, before any guest runs).
pub fn set_entry_hooks(h: &'static EntryHooks) {
    HOOKS.store(h as *const EntryHooks as *mut _, Ordering::Release);
}

#[inline(always)]
fn hooks() -> &'static EntryHooks {
    // SAFETY: HOOKS only ever holds a `&'static EntryHooks` (`UNSET`, or
    // the one `set_entry_hooks` was given).
    unsafe { &*HOOKS.load(Ordering::Relaxed) }
}

/// A 64-bit guest's `syscall`, first (entry.S, `syscall_entry`): the
/// hypercalls `pv::fast::quick` answers on the vCPU alone, without the
/// full frame. Checks what `trap_dispatch` checks on every guest entry
/// (the entry state in entry.S, the breakpoints hit here).
// Tour 02: the quick way's Rust half
#[no_mangle]
extern "C" fn syscall_quick(r: &mut QuickRegs) -> Quick {
    // entry.S checked the entry state (`entry_state_check`) before the
    // call: SMEP/SMAP on, EFLAGS.AC cleared right before.
    if super::debugreg::hypervisor_hits_pending() {
        return Quick::Full; // reported there
    }
    // (`Quick::Done`: entry.S marks the frame VEC_SYSCALL_DONE.)
    (hooks().quick)(r)
}

/// A 64-bit guest's `EVTCHNOP_send` (entry.S `syscall_evtchn_way`: the
/// quick way's registers, as for [`syscall_quick`]): `pv::fast::evtchn_send`,
/// with [`syscall_quick`]'s checks and answers.
// Tour 02: the quick way's Rust half
#[no_mangle]
extern "C" fn syscall_evtchn(r: &mut QuickRegs) -> Quick {
    // entry.S checked the entry state, as for `syscall_quick`.
    if super::debugreg::hypervisor_hits_pending() {
        return Quick::Full; // reported there
    }
    (hooks().evtchn_send)(r)
}

/// An exception of a guest of a vector `pv::fast_trap` takes, first
/// (entry.S `exception_common`, which checked SMEP/SMAP on): `true` when
/// handled, way out included; `false`: nothing done, then
/// [`guest_exception_entry`]. A guest's breakpoints hit in the hypervisor
/// since the last entry are reported there (as `syscall_quick` leaves
/// them to the full way).
// Tour 04: a guest's exception, first
#[no_mangle]
extern "C" fn guest_exception_quick(f: &mut TrapFrame) -> bool {
    if super::debugreg::hypervisor_hits_pending() {
        return false;
    }
    (hooks().quick_exception)(f)
}

/// An exception (vectors 0-31) of a guest that [`guest_exception_quick`]
/// did not take (entry.S `exception_common`, which checked SMEP/SMAP
/// on): where `trap_dispatch` sends it, without its tests. A guest's #DB
/// arrives on its IST stack and moves to the guest slot (`other_trap`):
/// `trap_dispatch`'s.
// Tour 04: a guest's exception, the other way
#[no_mangle]
extern "C" fn guest_exception_entry(f: &mut TrapFrame) {
    if f.vector == VEC_DB {
        return trap_dispatch(f);
    }
    if let Some((n, rip, dbg)) = super::debugreg::take_hypervisor_hits() {
        report_hypervisor_db(n, rip, dbg);
    }
    if (hooks().exception)(f) {
        return;
    }
    (hooks().from_guest)(f);
}

/// `syscall` from a 64-bit guest whose user mode the per-CPU hint shows
/// (entry.S `syscall_user`, the full `TrapFrame` built): `trap_dispatch`'s
/// `VEC_SYSCALL` arm, without the dispatch and its stack frame (a user
/// system call is a bounce to its kernel: `pv::fast::hypercall` decides
/// by the vCPU's own mode, not the hint).
// Tour 06: a user `syscall`, first
#[no_mangle]
extern "C" fn guest_user_syscall(f: &mut TrapFrame) {
    guest_state_checks(f);
    (hooks().user_syscall)(f, syscall_dispatched);
}

/// `trap_dispatch`'s `VEC_SYSCALL` arm, out of line: for
/// [`guest_user_syscall`] when the hint was not the vCPU's mode.
#[inline(never)]
fn syscall_dispatched(f: &mut TrapFrame) {
    let h = hooks();
    if !(h.hypercall)(f) {
        (h.from_guest)(f);
    }
}

/// Every interrupt and exception arrives here (from `trap_common`).
// Tour 02: every entry meets here
#[no_mangle]
extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    if f.vector == VEC_SYSCALL {
        // `syscall` from a 64-bit guest (only syscall_entry pushes this
        // vector): the hypercalls answered without the lock first.
        guest_state_checks(f);
        let h = hooks();
        if !(h.hypercall)(f) {
            (h.from_guest)(f);
        }
        return;
    }
    if f.vector >= VEC_SYSCALL_DONE {
        // Answered by the quick way (`rax` is the result): only its way
        // out is left, the locked one. Or one only the locked path
        // answers (`VEC_SYSCALL_LOCKED`). Both are a `syscall` from then on.
        let done = f.vector == VEC_SYSCALL_DONE;
        f.vector = VEC_SYSCALL;
        guest_state_checks(f);
        if done {
            return (hooks().locked_way_out)(f);
        }
        return (hooks().from_guest)(f);
    }
    if f.cs & 3 != 0 && f.vector < 32 && f.vector != VEC_DB {
        // An exception of a guest (its #DB arrives on the IST stack:
        // other_trap): what guest_entry does, without other_trap's tests.
        return guest_entry(f);
    }
    if f.vector == VEC_HYPERCALL32 && f.cs & 3 == 1 {
        // `int $0x82` from a 32-bit guest kernel: the same, for the few
        // it answers without the lock.
        guest_state_checks(f);
        if f.error_code == NOT_QUICK {
            f.error_code = 0;
        } else if (hooks().hypercall32)(f) {
            return;
        }
    }
    other_trap(f);
}

/// Every entry but `syscall` from a 64-bit guest (out of line, so the
/// lock-free hypercalls above pay for none of its stack frame).
#[inline(never)]
fn other_trap(f: &mut TrapFrame) {
    let from_guest = f.cs & 3 != 0;
    match f.vector {
        apic::TIMER_VECTOR => apic::timer_interrupt(),
        apic::WAKE_VECTOR => super::smp::wake_interrupt(),
        apic::FLUSH_VECTOR => super::smp::flush_interrupt(),
        apic::SPURIOUS_VECTOR => {}
        // Legacy PIC lines (remapped to 0x20-0x2f, all masked): a spurious
        // IRQ 7/15 can still arrive; nothing to do.
        0x20..=0x2f => {}
        // #DB arrives on its own IST stack: from a guest it moves to the
        // guest slot (and never returns here); in the hypervisor it is a
        // guest's breakpoint hit on the way in or on guest memory, noted
        // and ignored (debugreg.rs).
        VEC_DB if from_guest => super::debugreg::from_guest(f),
        VEC_DB => return super::debugreg::in_hypervisor(f),
        // Hypercalls, system calls and exceptions of a guest: one pass
        // that also settles the way back (a bounce, a vCPU switch, a dead
        // domain) on the frame itself.
        _ if from_guest => {}
        _ if f.rip == core::ptr::addr_of!(ret_iretq) as u64 => iret_fixup(*f),
        // A copy through a guest's mapping refused by the CPU: the copy
        // reports it (guest_copy's fixup), the caller falls back.
        VEC_PF | 13 if guest_access_fixup(f.rip).is_some() => {
            f.rip = guest_access_fixup(f.rip).unwrap_or(f.rip);
        }
        _ => fatal(f, "unexpected trap in the hypervisor"),
    }
    if from_guest {
        guest_entry(f);
    }
}

/// The common path of every entry from a guest, with `f` the guest slot
/// (also called by debugreg.rs on the main stack for a guest's #DB).
pub(super) extern "C" fn guest_entry(f: &mut TrapFrame) {
    guest_state_checks(f);
    // An exception: bounced (or emulated) without the locked path's
    // lookups and scheduler when it can be.
    let h = hooks();
    if f.vector < 32 && (h.exception)(f) {
        return;
    }
    (h.from_guest)(f);
}

/// What every entry from a guest checks first: the state entry.S promises
/// (`entry_state_check`), and a guest's breakpoints hit in the hypervisor
/// since the last entry, reported.
#[inline(always)]
fn guest_state_checks(f: &TrapFrame) {
    entry_state_check(f);
    if let Some((n, rip, dbg)) = super::debugreg::take_hypervisor_hits() {
        report_hypervisor_db(n, rip, dbg);
    }
}

/// Where an access to guest memory the CPU refused resumes (#PF, #GP in
/// ring 0 at one of these instructions): `guest_copy`'s copy, and
/// `bounce.S`'s frame stores, instruction fetch and `iret_context` reads
/// (each range holds only accesses to one checked page of the guests'
/// half, and moves between registers and this CPU's stack). `None`: not
/// one of them, a hypervisor fault.
fn guest_access_fixup(rip: u64) -> Option<u64> {
    extern "C" {
        static bounce_store: u8;
        static bounce_store_end: u8;
        static bounce_fetch: u8;
        static bounce_fetch_end: u8;
        static bounce_store_fault: u8;
        static iret_load: u8;
        static iret_load_end: u8;
        static iret_load_fault: u8;
        static user_store: u8;
        static user_store_end: u8;
        static user_store_fault: u8;
        static bounce_pf_store: u8;
        static bounce_pf_store_end: u8;
        static bounce_pf_store_fault: u8;
        static bounce32_store: u8;
        static bounce32_store_end: u8;
        static bounce32_store_fault: u8;
        static bounce32_pf_store: u8;
        static bounce32_pf_store_end: u8;
        static bounce32_pf_store_fault: u8;
        static upcall_store: u8;
        static upcall_store_end: u8;
        static upcall_store_fault: u8;
    }
    use core::ptr::addr_of;
    let ranges = [
        (
            addr_of!(bounce_store),
            addr_of!(bounce_store_end),
            addr_of!(bounce_store_fault),
        ),
        (
            addr_of!(bounce_fetch),
            addr_of!(bounce_fetch_end),
            addr_of!(bounce_store_fault),
        ),
        (
            addr_of!(iret_load),
            addr_of!(iret_load_end),
            addr_of!(iret_load_fault),
        ),
        (
            addr_of!(user_store),
            addr_of!(user_store_end),
            addr_of!(user_store_fault),
        ),
        (
            addr_of!(bounce_pf_store),
            addr_of!(bounce_pf_store_end),
            addr_of!(bounce_pf_store_fault),
        ),
        (
            addr_of!(bounce32_store),
            addr_of!(bounce32_store_end),
            addr_of!(bounce32_store_fault),
        ),
        (
            addr_of!(bounce32_pf_store),
            addr_of!(bounce32_pf_store_end),
            addr_of!(bounce32_pf_store_fault),
        ),
        (
            addr_of!(upcall_store),
            addr_of!(upcall_store_end),
            addr_of!(upcall_store_fault),
        ),
    ]
    .map(|(a, b, c)| (a as u64, b as u64, c as u64));
    let copy = (
        addr_of!(guest_copy_insn) as u64,
        addr_of!(guest_copy_insn_tail) as u64,
        addr_of!(guest_copy_fault) as u64,
    );
    if rip == copy.0 || rip == copy.1 {
        return Some(copy.2);
    }
    ranges
        .iter()
        .find(|r| (r.0..r.1).contains(&rip))
        .map(|r| r.2)
}

/// Say (up to 16 times) that a guest's breakpoint hit in the hypervisor and
/// was ignored, as Xen's rate-limited "Hit #DB in Xen context".
#[cold]
fn report_hypervisor_db(n: u64, rip: u64, dbg: u64) {
    static REPORTS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    if REPORTS.fetch_add(1, Ordering::Relaxed) < 16 {
        crate::warn!("{n} #DB in hypervisor context ignored (a guest breakpoint), last at rip {rip:#x} dr6 bits {dbg:#x}");
    }
}

/// What entry.S promises before any Rust runs for a guest: SMEP/SMAP on
/// and, with SMAP, EFLAGS.AC clear, whatever the guest did (without SMAP,
/// AC means nothing in ring 0 and `clac` does not exist). Cheap enough to
/// check on every entry, so a regression is a visible fault, not a hole.
#[inline(always)]
fn entry_state_check(f: &TrapFrame) {
    if !entry_state_ok() {
        fatal(
            f,
            "entered from a guest with EFLAGS.AC set or SMEP/SMAP off",
        );
    }
}

/// The state `entry_state_check` asks for.
#[inline(always)]
fn entry_state_ok() -> bool {
    use x86::bits64::rflags::{self, RFlags};
    const CR4_SMAP: u64 = 1 << 21;
    let want = super::cpu::user_protection_bits();
    let cr4 = super::cpu::cr4_bits();
    !((want & CR4_SMAP != 0 && rflags::read().contains(RFlags::FLAGS_AC)) || cr4 & want != want)
}

static IN_FATAL: AtomicBool = AtomicBool::new(false);

pub fn exception_name(v: u64) -> &'static str {
    EXCEPTION_NAMES
        .get(v as usize)
        .copied()
        .unwrap_or("interrupt")
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating point",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating point",
    "#VE virtualization",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved (31)",
];

/// The #PF error code in words (SDM Vol. 3A, 4.7).
fn pf_reason(ec: u64) -> (&'static str, &'static str, &'static str, &'static str) {
    (
        if ec & 1 != 0 {
            "protection violation"
        } else {
            "not present"
        },
        if ec & 2 != 0 {
            "write"
        } else if ec & 16 != 0 {
            "instruction fetch"
        } else {
            "read"
        },
        if ec & 4 != 0 { "user" } else { "supervisor" },
        if ec & 8 != 0 {
            ", reserved bit set"
        } else {
            ""
        },
    )
}

macro_rules! p {
    ($($arg:tt)*) => { print_emergency(format_args!("{}{}\n", TAG, format_args!($($arg)*))) };
}

/// A fault inside the hypervisor: print everything we know and stop.
pub fn fatal(f: &TrapFrame, what: &str) -> ! {
    if IN_FATAL.swap(true, Ordering::SeqCst) {
        // Faulted while printing a dump: say so and stop right away.
        exit(
            Verdict::Panic,
            format_args!(
                "fault while reporting a fault: vector {} at rip {:#x}",
                f.vector, f.rip
            ),
        );
    }
    let (cr0, cr2, cr3, cr4) = cpu::control_registers();
    p!(
        "FATAL: {what}: {} (vector {}), error code {:#x}",
        exception_name(f.vector),
        f.vector,
        f.error_code
    );
    if f.vector == VEC_PF {
        let (p, a, m, r) = pf_reason(f.error_code);
        p!("  page fault at cr2 {cr2:#018x}: {p}, {a}, {m} mode{r}");
    }
    p!(
        "  rip {:#018x}  cs {:#06x}  rflags {:#010x}  rsp {:#018x}  ss {:#06x}",
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss
    );
    p!(
        "  rax {:#018x}  rbx {:#018x}  rcx {:#018x}  rdx {:#018x}",
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx
    );
    p!(
        "  rsi {:#018x}  rdi {:#018x}  rbp {:#018x}  r8  {:#018x}",
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8
    );
    p!(
        "  r9  {:#018x}  r10 {:#018x}  r11 {:#018x}  r12 {:#018x}",
        f.r9,
        f.r10,
        f.r11,
        f.r12
    );
    p!(
        "  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}",
        f.r13,
        f.r14,
        f.r15
    );
    p!("  cr0 {cr0:#018x}  cr2 {cr2:#018x}  cr3 {cr3:#018x}  cr4 {cr4:#018x}");
    dump_stack(f.rsp);
    exit(
        Verdict::Panic,
        format_args!(
            "hypervisor fault: {} at rip {:#x}",
            exception_name(f.vector),
            f.rip
        ),
    )
}

fn dump_stack(rsp: u64) {
    const WORDS: u64 = 8;
    let mut words = [0u64; WORDS as usize];
    for (i, w) in words.iter_mut().enumerate() {
        match super::vm::read_hypervisor_u64(rsp + i as u64 * 8) {
            Some(v) => *w = v,
            None => {
                p!("  stack at {rsp:#x}: not mapped");
                return;
            }
        }
    }
    p!(
        "  stack [{rsp:#x}]: {:#x} {:#x} {:#x} {:#x}",
        words[0],
        words[1],
        words[2],
        words[3]
    );
    p!(
        "         +0x20: {:#x} {:#x} {:#x} {:#x}",
        words[4],
        words[5],
        words[6],
        words[7]
    );
}
