//! `guest32-traps`: exceptions, software interrupts and events bounce to a
//! 32-bit PAE PV kernel in ring 1 with Xen's 32-bit frame, from ring 1 and
//! from ring 3.
//!
//! The expected frames are those of 64-bit Xen's
//! `compat_create_bounce_frame` (`xen/arch/x86/x86_64/compat/entry.S`):
//! `[error code,] eip, cs | saved_upcall_mask << 16, eflags` with
//! `eflags.IF = !saved_upcall_mask`, plus `esp, ss` on the `stack_switch`
//! stack when ring 3 was interrupted; `#PF`'s address in the 32-bit
//! `vcpu_info.arch.cr2`. Debian's Xen has no 32-bit PV (`CONFIG_PV32`
//! unset), so these values come from the headers and that source, not from
//! a run on real Xen.
//!
//! Set-up cases:
//! - `set_trap_table` with 8-byte 32-bit entries (vectors 0-31, 0x80,
//!   0x41, code selector `FLAT_RING1_CS` 0xe019): 0.
//! - `set_callbacks(0xe019, event, 0xe019, failsafe)`: 0.
//! - `set_callbacks` with an RPL-0 event or failsafe selector (0xe018): 0,
//!   as Xen's `compat_set_callbacks` (`xen/arch/x86/pv/callback.c`), whose
//!   `fixup_guest_code_selector` raises an RPL below 1 to 1.
//! - `callback_op(register, event)` with the 32-bit `callback_register`
//!   (`{ type, flags, { cs, eip } }`): 0 with 0xe019 and with RPL 0 (same
//!   note).
//!
//! Ring-1 cases (each fault caught inline and its frame compared):
//! - #DE (`div` by zero): vector 0, eip at the `div`, cs 0xe019.
//! - #BP (`int3`, DPL 3 entry): eip *after* the `int3`; the handler leaves
//!   with a native `iret` and eax, ecx, edx, ebx, esi, edi come back as
//!   they were.
//! - #UD (`ud2`): vector 6, eip at the `ud2`; the frame is exactly three
//!   words right below the interrupted esp (no esp/ss slots from ring 1),
//!   ss 0xe021, eflags bit 1 set.
//! - #GP, bad selector (`mov %ax,%fs` with LDT selector 0x404, no LDT):
//!   error code 0x404; the frame is four words (error code first).
//! - #GP, `hlt` (not among the instructions Xen emulates for PV,
//!   `xen/arch/x86/pv/emul-priv-op.c`): error code 0, eip at the `hlt`.
//! - #GP, `int $0` through the DPL-0 #DE entry: error code 2.
//! - #GP, `int $0x41` through a DPL-0 entry: error code (0x41 << 3) | 2.
//! - `int $0x80` through a DPL-3 entry: vector 0x80, eip after the `int`.
//! - Emulated, no bounce: `mov %cr0, %eax` (PE and PG set), the forced
//!   emulation prefix `ud2a; .ascii "xen"; cpuid` (leaf 0x40000000 says
//!   "XenVMMXenVMM").
//! - #PF, read of an unmapped address: error code 0 (supervisor: CPL 1),
//!   cr2 (from the 32-bit `vcpu_info.arch.cr2`) = the address.
//! - #PF, write: error code 2; instruction fetch: 0x10 (I/D; NX is on in
//!   long mode), eip = cr2.
//! - #PF, write to the guest's own L3 (`pt_base`, read-only): error code 3.
//! - Upcall mask: masked, the frame's saved mask (cs bits 16-23) is 1 and
//!   eflags.IF 0; unmasked, 0 and 1; a trap entry with `TI_IF` masks
//!   events on entry, one without does not. The runtime's way out: a
//!   native `iret` when the mask is already right (it cannot change the
//!   virtual IF), `HYPERVISOR_iret` when events must be unmasked (mask :=
//!   !eflags.IF); `HYPERVISOR_iret` also restores eax (Xen's
//!   `compat_iret` pops it from the stub's `push %eax`); a native `iret`
//!   leaves the mask alone.
//! - Event upcall: an IPI event channel bound to vCPU 0 and sent while
//!   masked stays pending; unmasking and making any hypercall delivers it
//!   to the event callback with the trap-shaped frame (no error code), cs
//!   0xe019 with saved mask 0, eflags.IF 1, events masked on entry; the
//!   runtime leaves through `HYPERVISOR_iret`.
//!
//! Ring-3 cases (after `stack_switch` and making the image user pages):
//! - A native `iret` from ring 1 to `FLAT_RING3_CS`/`FLAT_RING3_SS`
//!   (0xe02b/0xe033) runs user code at CPL 3; its `int3` (DPL 3) comes back
//!   with the 5-word frame `eip, cs, eflags, esp, ss` ending at the
//!   `stack_switch` stack top, cs 0xe02b, ss 0xe033, esp the user esp.
//! - `int $0x82` from ring 3: #GP with error code (0x82 << 3) | 2 (the
//!   hypercall gate has DPL 1), eip at the `int`, bounced from ring 3.
//! - `int $0x80` from ring 3 (DPL 3 entry): delivered as 0x80 and resumed
//!   in ring 3 with a native `iret` (ring 1 to ring 3); with events
//!   unmasked, resumed through `HYPERVISOR_iret` to ring 3 instead.
//! - #PF from ring 3 reading a supervisor-only page: error code 5 (P|U).
//! - `hlt` in ring 3: #GP(0); `ud2`: #UD, both from ring 3.
#![cfg_attr(target_arch = "x86", no_std, no_main)]
#![cfg_attr(not(target_arch = "x86"), allow(dead_code, unused_imports))]
// `Trap` (the whole bounce frame) is the point of every `Err` here.
#![allow(clippy::result_large_err)]

pvguest32::guest_main!("traps32", run);

#[cfg(target_arch = "x86")]
use cases::run;

/// The cases use 32-bit asm, so they exist on the 32-bit target only.
#[cfg(target_arch = "x86")]
mod cases;
