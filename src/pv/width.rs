//! The guest's width, and what it decides about the frames ringvisor
//! writes on a guest stack (Xen: `x86_64/entry.S` create_bounce_frame for
//! 64-bit guests, `x86_64/compat/entry.S` compat_create_bounce_frame for
//! 32-bit ones).
//!
//! Both widths build their frames by one recipe (`traps::write_frame`);
//! everything that differs between them is a field of [`Layout`], so the
//! two columns of this table are the whole difference:
//!
//! | | 64-bit guest (kernel in ring 3) | 32-bit PAE guest (kernel in ring 1) |
//! |---|---|---|
//! | word | 8 bytes | 4 bytes |
//! | rcx, r11 first | yes (Xen enters by `sysret`) | no |
//! | upcall mask in the CS word | bits 32-39 | bits 16-23 |
//! | CS of an interrupted kernel | RPL 0 (it believes it is in ring 0) | as it was (ring 1) |
//! | ESP, SS | always | only from ring 3 (a ring change) |
//! | stack top | rounded down to 16 bytes | as it is, in a 4 GiB space |
//! | "from user" | the vCPU's mode flag | the interrupted ring is 3 |
//! | handler's cs, ss | flat kernel selectors | the callback's cs (or the flat ring-1 one), the stack's ss |

use ringvisor_abi::x86_32::FLAT_RING1_CS;
use ringvisor_abi::x86_64::{FLAT_KERNEL_CS64, FLAT_KERNEL_SS64};

/// How wide a PV guest is (a domain's `width`; defined in `domain`,
/// below this layer, with the layouts here).
pub use crate::domain::Width;

/// The frame rules of one width, as data.
// Tour 04: the two widths' frame rules, side by side
#[derive(Debug)]
pub struct Layout {
    /// Bytes a word (and a bounce frame is whole words).
    pub word: u64,
    /// The frame starts with the interrupted rcx and r11.
    pub rcx_r11: bool,
    /// Where the saved `evtchn_upcall_mask` goes in the CS word.
    pub mask_shift: u32,
    /// The bits of the interrupted cs that the CS word keeps.
    pub cs_bits: u64,
    /// An interrupted guest kernel's cs is reported with RPL 0.
    pub kernel_rpl0: bool,
    /// ESP and SS are in every frame (else only in one from ring 3).
    pub stack_always: bool,
    /// Guest user mode has its own page tables and GS base: entering the
    /// kernel from it is `toggle_guest_mode`.
    pub user_tables: bool,
    /// The stack top is rounded down to this (a power of two).
    pub align: u64,
    /// The guest's address space: a frame address is masked to it, and a
    /// frame that would wrap below 0 in a 4 GiB space is refused.
    pub addr_mask: u64,
    /// Handlers run on this cs and ss whatever the callback says; `None`:
    /// the callback's cs (or `flat_cs` for a null one), the stack's ss.
    pub fixed_cs_ss: Option<(u16, u16)>,
    /// The code selector of a callback registered with a null one.
    pub flat_cs: u16,
    /// A failsafe for a selector that failed to reload, from the guest
    /// kernel, goes right below the interrupted stack pointer (Xen's
    /// compat `load_segments`) instead of on the `stack_switch` stack.
    pub segfail_on_interrupted_stack: bool,
    /// Said after "failsafe" in the trace.
    pub trace_tag: &'static str,
}

const LAYOUT64: Layout = Layout {
    word: 8,
    rcx_r11: true,
    mask_shift: 32,
    cs_bits: u64::MAX,
    kernel_rpl0: true,
    stack_always: true,
    user_tables: true,
    align: 16,
    addr_mask: u64::MAX,
    fixed_cs_ss: Some((FLAT_KERNEL_CS64, FLAT_KERNEL_SS64)),
    flat_cs: FLAT_KERNEL_CS64,
    segfail_on_interrupted_stack: false,
    trace_tag: "",
};

const LAYOUT32: Layout = Layout {
    word: 4,
    rcx_r11: false,
    mask_shift: 16,
    cs_bits: 0xffff,
    kernel_rpl0: false,
    stack_always: false,
    user_tables: false,
    align: 1,
    addr_mask: u32::MAX as u64,
    fixed_cs_ss: None,
    flat_cs: FLAT_RING1_CS,
    segfail_on_interrupted_stack: true,
    trace_tag: " (32-bit)",
};

impl Width {
    /// The width of a domain built as `compat` (32-bit) or not.
    pub const fn of(compat: bool) -> Width {
        if compat {
            Width::W32
        } else {
            Width::W64
        }
    }

    /// Its frame rules.
    pub const fn layout(self) -> &'static Layout {
        match self {
            Width::W64 => &LAYOUT64,
            Width::W32 => &LAYOUT32,
        }
    }

    /// A selector the guest kernel names for its stack or handlers, as
    /// Xen takes it (`fixup_guest_stack_selector`/`_code_selector`): a
    /// 64-bit guest's gets RPL 3 (its kernel runs in ring 3); a 32-bit
    /// guest's, 16 bits, keeps its RPL unless that is 0 (the
    /// hypervisor's ring), which is raised to 1. Nothing is refused: a
    /// selector the CPU will not load is the guest's fault when it is
    /// used (pv::retcheck).
    pub const fn fixup_selector(self, sel: u64) -> u64 {
        match self {
            Width::W64 => sel | 3,
            Width::W32 if sel & 3 == 0 => (sel as u16 | 1) as u64,
            Width::W32 => sel as u16 as u64,
        }
    }

    /// Was guest user code interrupted? A 64-bit guest's kernel runs in
    /// ring 3 too, so only the vCPU's mode says; a 32-bit guest's mode is
    /// its ring (a cached flag is stale after a native `iret` to ring 3).
    pub const fn interrupted_user(self, kernel_mode: bool, cs: u64) -> bool {
        match self {
            Width::W64 => !kernel_mode,
            Width::W32 => cs & 3 == 3,
        }
    }
}

#[cfg(target_os = "none")]
impl crate::domain::Domain {
    /// This domain's width.
    #[inline(always)]
    pub fn width(&self) -> Width {
        self.width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_fit_the_address_space() {
        for w in [Width::W64, Width::W32] {
            let l = w.layout();
            assert!(l.align.is_power_of_two());
            assert_eq!(l.addr_mask, u64::MAX >> (64 - 8 * l.word));
            // The mask byte fits in the CS word above the selector.
            assert!(l.mask_shift + 8 <= 8 * l.word as u32);
            assert!(l.cs_bits >> l.mask_shift == 0 || l.cs_bits == u64::MAX);
        }
    }

    #[test]
    fn selectors_are_fixed_up_as_xen() {
        assert_eq!(Width::W64.fixup_selector(0x18), 0x1b);
        assert_eq!(Width::W64.fixup_selector(0xe02b), 0xe02b);
        assert_eq!(Width::W32.fixup_selector(0xe020), 0xe021);
        assert_eq!(Width::W32.fixup_selector(0xe021), 0xe021);
        assert_eq!(Width::W32.fixup_selector(0x1_e023), 0xe023);
    }

    #[test]
    fn interrupted_user_follows_the_width() {
        assert!(Width::W64.interrupted_user(false, 0xe033));
        assert!(!Width::W64.interrupted_user(true, 0xe033));
        assert!(Width::W32.interrupted_user(true, 0xe02b));
        assert!(!Width::W32.interrupted_user(false, 0xe019));
    }
}
