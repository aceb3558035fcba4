//! Where a guest says its handlers are (Xen: `pv/callback.c`): the
//! virtual IDT (`set_trap_table`), the callbacks (`set_callbacks`,
//! `callback_op`) and the kernel stack for entries from user mode
//! (`stack_switch`). Each is written once for both widths; what differs
//! is the argument's layout ([`TrapInfoArg`], [`CallbackArg`]) and the
//! few rules in [`Width`]:
//!
//! | | 64-bit guest | 32-bit guest |
//! |---|---|---|
//! | a handler's address | canonical, not the hypervisor's (`-EINVAL`) | any 32-bit value |
//! | a handler's selector | none kept: handlers run on FLAT_KERNEL_CS64 | the guest's, RPL 0 raised to 1 |
//! | callback types | event, failsafe, syscall, syscall32, sysenter, nmi | the same but syscall |
//! | `set_callbacks` | (event, failsafe, syscall) | (event cs, event, failsafe cs, failsafe) |
//! | unknown `callback_op` command | `-ENOSYS` (do_callback_op) | `-EINVAL` (compat_callback_op) |

use ringvisor_abi::callback::*;
use ringvisor_abi::errno::*;
use ringvisor_abi::x86_32::TrapInfo32;
use ringvisor_abi::xen::*;
use ringvisor_abi::Pod;

use crate::domain::vcpu::{Callback, TrapEntry, Vcpu};
use crate::domain::Domain;
use crate::pv::guest_mem::{in_hypervisor_range, is_canonical, GuestSpace};
use crate::pv::hypercall::{err, Ret};
use crate::pv::width::Width;

/// An address a guest may register as code: a 64-bit guest's must be
/// canonical and not ours (Xen checks only canonical and leaves the rest
/// to fault when used; ringvisor refuses it at once, docs/abi.md); a
/// 32-bit guest's is any 32-bit value (its 4 GiB hold nothing of ours
/// it can reach).
pub(crate) fn code_address_ok(w: Width, a: u64) -> bool {
    match w {
        Width::W64 => is_canonical(a) && !in_hypervisor_range(a),
        Width::W32 => true,
    }
}

/// An address a guest may register as a callback: none (0), or one it
/// may register as code ([`code_address_ok`]).
pub(crate) fn handler_ok(w: Width, a: u64) -> bool {
    a == 0 || code_address_ok(w, a)
}

/// A `trap_info` entry of either width.
pub(crate) trait TrapInfoArg: Pod {
    fn vector(&self) -> u8;
    fn flags(&self) -> u8;
    fn cs(&self) -> u16;
    fn address(&self) -> u64;
}

impl TrapInfoArg for TrapInfo {
    fn vector(&self) -> u8 {
        self.vector
    }
    fn flags(&self) -> u8 {
        self.flags
    }
    fn cs(&self) -> u16 {
        self.cs
    }
    fn address(&self) -> u64 {
        self.address
    }
}

impl TrapInfoArg for TrapInfo32 {
    fn vector(&self) -> u8 {
        self.vector
    }
    fn flags(&self) -> u8 {
        self.flags
    }
    fn cs(&self) -> u16 {
        self.cs
    }
    fn address(&self) -> u64 {
        self.address as u64
    }
}

/// `set_trap_table(list)`: install the guest's virtual IDT, ended by an
/// entry whose address is 0; a null list clears it. Any selector, its RPL
/// raised to the guest kernel's ring (`Width::fixup_selector`, as Xen's
/// `fixup_guest_code_selector`).
///
/// Xen installs entry by entry and stops at the first bad one;
/// ringvisor checks the whole list first and installs all or nothing, so
/// a refused list leaves the table as it was (docs/abi.md).
// Tour 03: the guest's virtual IDT
pub(crate) fn set_trap_table(d: &mut Domain, space: GuestSpace, list: u64) -> Ret {
    match d.width() {
        Width::W64 => install_trap_table::<TrapInfo>(d, space, list),
        Width::W32 => install_trap_table::<TrapInfo32>(d, space, list),
    }
}

fn install_trap_table<T: TrapInfoArg>(d: &mut Domain, space: GuestSpace, list: u64) -> Ret {
    let w = d.width();
    let v = d.v_mut();
    if list == 0 {
        v.trap_table = [TrapEntry::default(); 256];
        return 0;
    }
    // The common case in one read: the list and its terminator within one
    // page and ONE_READ entries, copied by the CPU's walk, checked whole
    // and installed from that same copy.
    const ONE_READ: u64 = 40; // a 32-entry table with room to spare
    let mut raw = [const { core::mem::MaybeUninit::<T>::uninit() }; ONE_READ as usize];
    let size = core::mem::size_of::<T>() as u64;
    let fit = ((4096 - (list & 0xfff)) / size).min(ONE_READ) as usize;
    if let Some(entries) = space.read_pods_by_cpu(&mut raw[..fit], list) {
        let mut n = 0;
        let ended = loop {
            let Some(t) = entries.get(n) else {
                break false;
            };
            if t.address() == 0 {
                break true;
            }
            if !code_address_ok(w, t.address()) {
                return err(EINVAL);
            }
            n += 1;
        };
        if ended {
            for t in &entries[..n] {
                v.trap_table[t.vector() as usize] = trap_entry(w, t);
            }
            return 0;
        }
    }
    // Otherwise, a chunk at a time, twice:
    let end = |t: &T| t.address() == 0;
    let check = |t: &T| {
        if code_address_ok(w, t.address()) {
            Ok(())
        } else {
            Err(EINVAL)
        }
    };
    // Check the whole list, then walk it again to install it (nothing
    // else changes the vCPU's table in between: its domain's lock is held).
    // Another vCPU of the domain, on another CPU, may change the list in
    // guest memory meanwhile: each entry is checked again as it is
    // installed, so a guest racing itself gets at worst a partly
    // installed table and the error, never an unchecked entry.
    if let Err(e) = trap_list(&space, list, end, check) {
        return err(e);
    }
    let table = &mut v.trap_table;
    let installed = trap_list(&space, list, end, |t| {
        check(t)?;
        table[t.vector() as usize] = trap_entry(w, t);
        Ok(())
    });
    installed.map_or_else(err, |()| 0)
}

/// The virtual IDT's entry for a checked `trap_info`: its selector's RPL
/// raised to the guest kernel's ring.
#[inline(always)]
fn trap_entry<T: TrapInfoArg>(w: Width, t: &T) -> TrapEntry {
    TrapEntry {
        flags: t.flags(),
        cs: w.fixup_selector(t.cs() as u64) as u16,
        address: t.address(),
    }
}

/// Walk a guest's `trap_info` list (64-bit or 32-bit entries) up to its
/// terminator (`end`; at most 256 entries before it), calling `each` on
/// every entry. It reads as many entries as the current page holds at
/// once, so a 32-entry table costs one or two page walks instead of 33,
/// and never reads past the page the terminator is on.
pub(crate) fn trap_list<T: Pod>(
    space: &GuestSpace,
    list: u64,
    end: impl Fn(&T) -> bool,
    mut each: impl FnMut(&T) -> Result<(), i32>,
) -> Result<(), i32> {
    let size = core::mem::size_of::<T>() as u64;
    let mut buf = [T::zeroed(); 16];
    let mut va = list;
    let mut seen = 0;
    loop {
        // An entry straddling a page boundary is read on its own.
        let n = ((4096 - (va & 0xfff)) / size).clamp(1, 16) as usize;
        let bytes = &mut ringvisor_abi::as_bytes_mut(&mut buf)[..n * size as usize];
        space.read_bytes(va, bytes).map_err(|_| EFAULT)?;
        for t in &buf[..n] {
            if end(t) {
                return Ok(());
            }
            if seen == 256 {
                return Err(EINVAL); // more than 256 entries without a terminator
            }
            seen += 1;
            each(t)?;
        }
        va = va.checked_add(n as u64 * size).ok_or(EFAULT)?;
    }
}

/// As Xen's do_stack_switch, for either width: any selector, its RPL
/// fixed up (`Width::fixup_selector`), never refused (Linux passes
/// __KERNEL_DS, 0x18, on every context switch), always 0. A 64-bit
/// guest's bounces run on FLAT_KERNEL_SS whatever it names (the value is
/// kept for get-context); a 32-bit guest's run on this ss.
// Tour 06: the kernel stack for entries from user mode
pub(crate) fn stack_switch(d: &mut Domain, ss: u64, sp: u64) -> Ret {
    let w = d.width();
    let v = d.v_mut();
    v.kernel_ss = w.fixup_selector(ss);
    v.kernel_sp = sp;
    0
}

/// A `callback_register` of either width: 64-bit `{ type, flags, address }`,
/// 32-bit `{ type, flags, { cs, eip } }`.
pub(crate) trait CallbackArg: Pod {
    fn type_(&self) -> u16;
    fn flags(&self) -> u16;
    fn cs(&self) -> u64;
    fn address(&self) -> u64;
}

impl CallbackArg for CallbackRegister {
    fn type_(&self) -> u16 {
        self.type_
    }
    fn flags(&self) -> u16 {
        self.flags
    }
    fn cs(&self) -> u64 {
        0
    }
    fn address(&self) -> u64 {
        self.address
    }
}

impl CallbackArg for CallbackRegister32 {
    fn type_(&self) -> u16 {
        self.type_
    }
    fn flags(&self) -> u16 {
        self.flags
    }
    fn cs(&self) -> u64 {
        self.address.cs as u64
    }
    fn address(&self) -> u64 {
        self.address.eip as u64
    }
}

/// The vCPU's slot for a `CALLBACKTYPE_*`, if a guest of this width has
/// that callback (a 32-bit guest has no 64-bit `syscall` one).
pub(crate) fn callback_slot(w: Width, v: &mut Vcpu, type_: u16) -> Option<&mut Callback> {
    Some(match type_ {
        CALLBACKTYPE_EVENT => &mut v.event,
        CALLBACKTYPE_FAILSAFE => &mut v.failsafe,
        CALLBACKTYPE_SYSCALL if w == Width::W64 => &mut v.syscall,
        CALLBACKTYPE_SYSCALL32 => &mut v.syscall32,
        CALLBACKTYPE_SYSENTER => &mut v.sysenter,
        CALLBACKTYPE_NMI => &mut v.nmi,
        _ => return None,
    })
}

/// One registration checked as Xen's `register_guest_callback` (64-bit:
/// the address first, `-EINVAL`) or `compat_register_guest_callback`
/// (32-bit: the selector's RPL fixed up), then the type (`-ENOSYS`).
/// A 64-bit guest's handlers run on FLAT_KERNEL_CS64: no selector kept.
fn register(d: &mut Domain, type_: u16, cs: u64, address: u64, flags: u16) -> Result<(), i32> {
    let w = d.width();
    if !handler_ok(w, address) {
        return Err(EINVAL);
    }
    let cb = Callback {
        address,
        cs: match w {
            Width::W64 => 0,
            Width::W32 => w.fixup_selector(cs) as u16,
        },
        // Xen's NMI callback always runs with events masked
        // (register_guest_nmi_callback: TI_SET_IF), whatever the flags.
        mask_events: flags & CALLBACKF_MASK_EVENTS != 0 || type_ == CALLBACKTYPE_NMI,
    };
    *callback_slot(w, d.v_mut(), type_).ok_or(ENOSYS)? = cb;
    Ok(())
}

/// The older `set_callbacks`: 64-bit `(event, failsafe, syscall)`, 32-bit
/// `(event_cs, event, failsafe_cs, failsafe)`. Events are masked on
/// failsafe entry (Xen's set_callbacks leaves `VGCF_failsafe_disables_events`
/// clear; ringvisor masks them, docs/abi.md). All three are checked before
/// any is installed: one a 64-bit guest may not register makes the call
/// `-EINVAL` and changes nothing (Xen ignores that one and answers 0).
pub(crate) fn set_callbacks(d: &mut Domain, a: [u64; 4]) -> Ret {
    let mask = CALLBACKF_MASK_EVENTS;
    let (l64, l32);
    let list: &[(u16, u64, u64, u16)] = match d.width() {
        Width::W64 => {
            l64 = [
                (CALLBACKTYPE_EVENT, 0, a[0], 0),
                (CALLBACKTYPE_FAILSAFE, 0, a[1], mask),
                (CALLBACKTYPE_SYSCALL, 0, a[2], 0),
            ];
            &l64
        }
        Width::W32 => {
            l32 = [
                (CALLBACKTYPE_EVENT, a[0], a[1], 0),
                (CALLBACKTYPE_FAILSAFE, a[2], a[3], mask),
            ];
            &l32
        }
    };
    let w = d.width();
    if list
        .iter()
        .any(|&(_, _, address, _)| !handler_ok(w, address))
    {
        return err(EINVAL);
    }
    for &(type_, cs, address, flags) in list {
        if let Err(e) = register(d, type_, cs, address, flags) {
            return err(e);
        }
    }
    0
}

/// `callback_op(cmd, arg)`, with Xen's answers: register any callback the
/// width has (an unknown type `-ENOSYS`); only the NMI callback can be
/// unregistered (the others `-EINVAL`, an unknown one `-ENOSYS`); an
/// unknown command `-ENOSYS` (64-bit) or `-EINVAL` (32-bit), as Xen's
/// do_callback_op and compat_callback_op answer.
// Tour 03: registering callbacks
pub(crate) fn callback_op(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    let w = d.width();
    match cmd as u32 {
        CALLBACKOP_REGISTER => {
            let r = match w {
                Width::W64 => read_register::<CallbackRegister>(&space, arg),
                Width::W32 => read_register::<CallbackRegister32>(&space, arg),
            };
            match r.and_then(|(t, cs, a, fl)| register(d, t, cs, a, fl)) {
                Ok(()) => 0,
                Err(e) => err(e),
            }
        }
        CALLBACKOP_UNREGISTER => {
            let Ok(u) = space.read::<CallbackUnregister>(arg) else {
                return err(EFAULT);
            };
            match u.type_ {
                CALLBACKTYPE_NMI => {
                    d.v_mut().nmi = Callback::default();
                    0
                }
                t if callback_slot(w, d.v_mut(), t).is_some() => err(EINVAL),
                _ => err(ENOSYS),
            }
        }
        _ => err(match w {
            Width::W64 => ENOSYS,
            Width::W32 => EINVAL,
        }),
    }
}

fn read_register<T: CallbackArg>(
    space: &GuestSpace,
    arg: u64,
) -> Result<(u16, u64, u64, u16), i32> {
    let r = space.read::<T>(arg).map_err(|_| EFAULT)?;
    Ok((r.type_(), r.cs(), r.address(), r.flags()))
}

/// `XENNMI_register_callback`: `nmi_op`'s argument, `struct
/// xennmi_callback` (64-bit: two `unsigned long`s, 32-bit: two `u32`s).
const XENNMI_REGISTER_CALLBACK: u64 = 0;
const XENNMI_UNREGISTER_CALLBACK: u64 = 1;

/// `nmi_op(cmd, arg)` (Xen: do_nmi_op, compat_nmi_op): the older way to
/// the NMI callback `callback_op` also registers; unregistering always
/// succeeds; another command `-ENOSYS`.
pub(crate) fn nmi_op(d: &mut Domain, space: GuestSpace, cmd: u64, arg: u64) -> Ret {
    match cmd {
        XENNMI_REGISTER_CALLBACK => {
            let handler = match d.width() {
                Width::W64 => space.read::<[u64; 2]>(arg).map(|cb| cb[0]),
                Width::W32 => space.read::<[u32; 2]>(arg).map(|cb| cb[0] as u64),
            };
            let Ok(handler) = handler else {
                return err(EFAULT);
            };
            match register(d, CALLBACKTYPE_NMI, 0, handler, 0) {
                Ok(()) => 0,
                Err(e) => err(e),
            }
        }
        XENNMI_UNREGISTER_CALLBACK => {
            d.v_mut().nmi = Callback::default();
            0
        }
        _ => err(ENOSYS),
    }
}
