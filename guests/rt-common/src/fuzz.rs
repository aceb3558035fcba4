//! The fuzz generator shared by `guest-fuzz` (64-bit) and `guest32-fuzz`
//! (32-bit): a seeded PRNG, argument values drawn from classes that matter
//! to a hypervisor (small numbers, -1, huge numbers, the guest's own
//! buffers, page tables, GDT, start_info, shared_info, the hypervisor's
//! range, non-canonical and page-straddling addresses, machine addresses
//! and frame numbers), one [`Step`] per iteration (a hypercall, an
//! exception or `int $n` from kernel or user mode, a `HYPERVISOR_iret`
//! frame), and a ring of the last steps for reports.
//!
//! Everything here is a pure function of the seed and of the [`Env`] the
//! guest describes itself with: the same seed gives the same steps in the
//! same binary, whatever the hypervisor answered (answers never feed back
//! into the generator). The guest executes a step; this module only says
//! what it is.

use core::fmt;

/// splitmix64: small, fast, good enough to spread a seed over 64 bits.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub const fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5f0e_7a11_c0de_f00d)
    }
    // Not an Iterator: the stream never ends and callers want plain u64s.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0; the bias of `%` does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `n` / 256.
    pub fn chance(&mut self, n: u64) -> bool {
        self.next() & 0xff < n
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

// --------------------------------------------------------------------------
// Exclusions: known hypervisor bugs the fuzzer can steer around, so that a
// short run can be green while they are being fixed. Each is one bit; the
// guest reads them from `exclude=a,b,...` on its command line.
// --------------------------------------------------------------------------

/// 32-bit `sched_op(SCHEDOP_poll)` (the compat layer reads the 64-bit
/// `sched_poll` layout and can hang).
pub const EXCL_POLL32: u32 = 1 << 0;
/// `HYPERVISOR_iret` frames with bad 32-bit selectors (GDT index 0, a
/// read-only SS, EIP beyond the CS limit): the hypervisor's own `iretq`
/// faults. With the exclusion, a 32-bit iret frame has one of the flat
/// ring-1/ring-3 selector pairs.
pub const EXCL_IRET32_SEL: u32 = 1 << 1;
/// Pointers into the last page of the address space
/// (0xffff_ffff_ffff_f000.., 0xffff_f000.. for 32-bit): writes there loop
/// forever in the hypervisor.
pub const EXCL_LASTPAGE: u32 = 1 << 2;
/// EFLAGS.AC set by the guest (popf, iret frames): it leaks into the
/// hypervisor.
pub const EXCL_AC: u32 = 1 << 3;

/// SGDT, SIDT, SMSW, SLDT, STR with a memory operand from 32-bit ring 3
/// aimed at a supervisor page (the guest's kernel scratch page): the
/// hypervisor's UMIP emulation writes it (found by `guest32-fuzz`, seed
/// 17, call #205). With the exclusion, ring-3 stores go to a user page.
pub const EXCL_UMIP_USER: u32 = 1 << 4;

/// Every exclusion by name.
pub const EXCLUSIONS: &[(&str, u32)] = &[
    ("poll32", EXCL_POLL32),
    ("iret32-sel", EXCL_IRET32_SEL),
    ("lastpage", EXCL_LASTPAGE),
    ("ac", EXCL_AC),
    ("umip-user", EXCL_UMIP_USER),
];

/// Every known-bug exclusion.
pub const EXCL_KNOWN: u32 =
    EXCL_POLL32 | EXCL_IRET32_SEL | EXCL_LASTPAGE | EXCL_AC | EXCL_UMIP_USER;

/// `a,b,c`, `known` (all), `none` (or empty) -> bits; unknown names are
/// returned as `Err(name)`.
pub fn parse_exclude(s: &str) -> Result<u32, &str> {
    let mut bits = 0;
    for w in s.split(',').filter(|w| !w.is_empty()) {
        bits |= match w {
            "none" => 0,
            "known" | "all" => EXCL_KNOWN,
            _ => match EXCLUSIONS.iter().find(|(n, _)| *n == w) {
                Some((_, b)) => *b,
                None => return Err(w),
            },
        };
    }
    Ok(bits)
}

/// The names of `bits`, comma-separated.
pub struct ExclNames(pub u32);

impl fmt::Display for ExclNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (n, b) in EXCLUSIONS {
            if self.0 & b != 0 {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

// --------------------------------------------------------------------------
// The guest, as the generator sees it.
// --------------------------------------------------------------------------

/// Where things are, as the guest describes itself. Addresses are guest
/// virtual unless named otherwise.
pub struct Env<'a> {
    /// 64 or 32: values are cut to 32 bits for a 32-bit guest.
    pub width: u32,
    /// The scratch buffer (two pages, `scratch + 4096 - k` straddles).
    pub scratch: u64,
    /// The guest's own structures: page tables, GDT, start_info,
    /// shared_info, its image, the hypercall page, its stacks.
    pub own: &'a [u64],
    /// Machine addresses of its page-table frames and scratch frames.
    pub maddrs: &'a [u64],
    /// Its own frame numbers (and a few others worth trying).
    pub mfns: &'a [u64],
    /// Addresses in the hypervisor's range.
    pub hv: &'a [u64],
    /// Non-canonical (64-bit) or otherwise impossible addresses.
    pub bad: &'a [u64],
    /// The start of the last page of the address space.
    pub last_page: u64,
    /// `EXCL_*` bits.
    pub exclude: u32,
}

impl Env<'_> {
    /// `v` as the guest's width holds it; with [`EXCL_LASTPAGE`], a value
    /// in the last page (-1 among them) moves one page down, since any
    /// argument may be a pointer to some hypercall.
    fn cut(&self, v: u64) -> u64 {
        let v = if self.width == 32 { v & 0xffff_ffff } else { v };
        if self.exclude & EXCL_LASTPAGE != 0 && v >= self.last_page {
            v - 0x1000
        } else {
            v
        }
    }
}

/// One random argument value.
pub fn value(r: &mut Rng, env: &Env) -> u64 {
    let v = match r.below(24) {
        0..=3 => r.below(16),
        4 => u64::MAX,
        5 => r.pick(&[
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0xffff,
            0x1_0000_0000,
            1 << 63,
            i64::MAX as u64,
        ]),
        6 => r.next(),
        7..=10 => env.scratch + (r.below(512) * 8) + if r.chance(32) { r.below(8) } else { 0 },
        11 => env.scratch + 4096 - r.pick(&[1, 2, 4, 8, 12, 16, 24]),
        12..=14 => r.pick(env.own) + if r.chance(64) { r.below(4096) } else { 0 },
        15 => r.pick(env.maddrs) + r.below(512) * 8,
        16 => r.pick(env.mfns),
        17 => (r.pick(env.mfns) << 12) | r.below(0x1000) | if r.chance(16) { 1 << 63 } else { 0 },
        18 | 19 => r.pick(env.hv) + r.below(0x1000),
        20 => r.pick(env.bad) + r.below(0x1000),
        21 if env.exclude & EXCL_LASTPAGE == 0 => env.last_page + r.below(0x1000),
        21 => 0xdead_0000 + r.below(0x1000),
        22 => r.below(0x1_0000),
        _ => r.below(0x1000) << 12,
    };
    env.cut(v)
}

/// A pointer argument: mostly our own scratch buffer (whose contents are
/// random values too), else any value.
pub fn pointer(r: &mut Rng, env: &Env) -> u64 {
    if r.chance(180) {
        env.cut(env.scratch + r.below(64) * 8)
    } else {
        value(r, env)
    }
}

// --------------------------------------------------------------------------
// Steps.
// --------------------------------------------------------------------------

/// The hypercalls ringvisor implements (64-bit numbering; the 32-bit
/// guest uses the same numbers through its compat layer), weighted over
/// the rest. 23 (`iret`) is a [`Step::Iret`], never a plain call.
pub const IMPLEMENTED: &[u32] = &[
    0, 1, 2, 3, 4, 5, 10, 12, 14, 15, 17, 18, 21, 24, 25, 26, 29, 30, 32, 33,
];

/// The hypercalls ringvisor's compat layer (`src/pv/compat.rs`) gives a
/// 32-bit guest, the ones a 32-bit guest draws most: as [`IMPLEMENTED`]
/// without `set_segment_base` (64-bit only), with `sched_op_compat`,
/// `set_debugreg`, `get_debugreg`, `multicall` (its entries random words)
/// and `grant_table_op`. 23 (`iret`) is a [`Step::Iret`].
pub const IMPLEMENTED32: &[u32] = &[
    0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 17, 18, 20, 21, 24, 26, 29, 30, 32, 33,
];

/// Exceptions the guest raises on purpose (kernel or user mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exc {
    Ud2,
    Int3,
    Div0,
    /// Read at the address.
    Read,
    /// Write at the address (never at the guest's own memory).
    Write,
    /// `cli` / `sti` (privileged: emulated or #GP).
    CliSti,
    /// `in`/`out` on port `arg & 0xffff`.
    Io,
    /// `rdmsr` of `arg` (low 32 bits).
    Rdmsr,
    /// `wrmsr` of msr `arg`, value `arg2`.
    Wrmsr,
    /// Read a control register (`arg % 5`: cr0, cr2, cr3, cr4, cr8).
    ReadCr,
    /// Write cr0/cr4 with `arg2` (privileged: emulated or #GP).
    WriteCr,
    /// `popf` of `arg2` (then the old flags back).
    Popf,
    /// Load `arg` into a data segment register (restored afterwards).
    LoadSeg,
    /// `syscall` (64-bit kernel: a hypercall with `%rax` = arg; user mode:
    /// the syscall callback) / `sysenter`.
    Syscall,
    /// `lgdt`/`lidt`/`sgdt`/`sidt`/`ltr` style instructions.
    Descriptor,
}

const EXCS: &[Exc] = &[
    Exc::Ud2,
    Exc::Int3,
    Exc::Div0,
    Exc::Read,
    Exc::Write,
    Exc::CliSti,
    Exc::Io,
    Exc::Rdmsr,
    Exc::Wrmsr,
    Exc::ReadCr,
    Exc::WriteCr,
    Exc::Popf,
    Exc::LoadSeg,
    Exc::Syscall,
    Exc::Descriptor,
];

/// How a step's arguments must be adjusted at run time (the generator
/// cannot know the time or the guest's live event-channel ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixup {
    None,
    /// `SCHEDOP_block`: arm a timer (and make sure `VIRQ_TIMER` is bound)
    /// first, so that the guest wakes up.
    Block,
    /// `SCHEDOP_poll` through the scratch buffer: ports pointer and count
    /// as drawn, the timeout set to now + 1 ms.
    Poll,
}

/// One iteration's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Hypercall {
        op: u32,
        args: [u64; 6],
        fixup: Fixup,
    },
    /// `int $vector` from kernel or user mode.
    Int { vector: u8, user: bool },
    Exception {
        exc: Exc,
        user: bool,
        arg: u64,
        arg2: u64,
    },
    /// `HYPERVISOR_iret` with this frame; `rip` 0 means "the landing pad"
    /// (the guest puts its own address there), `sp` 0 "the landing stack".
    Iret {
        flags: u64,
        rip: u64,
        cs: u64,
        rflags: u64,
        sp: u64,
        ss: u64,
    },
}

/// A step and its iteration number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub iter: u64,
    pub step: Step,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ", self.iter)?;
        match self.step {
            Step::Hypercall { op, args, fixup } => {
                write!(f, "hypercall {op}({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})", args[0], args[1], args[2], args[3], args[4], args[5])?;
                if fixup != Fixup::None {
                    write!(f, " [{fixup:?}]")?;
                }
                Ok(())
            }
            Step::Int { vector, user } => write!(f, "int ${vector:#x} from {}", if user { "user" } else { "kernel" }),
            Step::Exception { exc, user, arg, arg2 } => {
                write!(f, "{exc:?} from {} arg {arg:#x} arg2 {arg2:#x}", if user { "user" } else { "kernel" })
            }
            Step::Iret { flags, rip, cs, rflags, sp, ss } => write!(
                f,
                "iret flags {flags:#x} rip {rip:#x} cs {cs:#x} rflags {rflags:#x} sp {sp:#x} ss {ss:#x}"
            ),
        }
    }
}

/// Sub-command ranges worth drawing for multiplexed hypercalls.
fn subcmd(r: &mut Rng, op: u32) -> u64 {
    let n = match op {
        17 => 12, // xen_version
        18 => 3,  // console_io
        12 => 30, // memory_op
        24 => 16, // vcpu_op
        26 => 24, // mmuext_op count is arg 1; arg 0 a pointer
        29 => 11, // sched_op
        30 => 4,  // callback_op
        32 => 13, // event_channel_op
        33 => 32, // physdev_op
        21 => 2,  // vm_assist cmd
        25 => 5,  // set_segment_base
        _ => 16,
    };
    if r.chance(20) {
        r.next()
    } else {
        r.below(n)
    }
}

/// Fills the scratch buffer (as 64-bit words) with random values.
pub fn fill(r: &mut Rng, env: &Env, words: &mut [u64]) {
    for w in words.iter_mut() {
        *w = if r.chance(128) {
            value(r, env)
        } else if env.width == 32 {
            // Two 32-bit fields.
            (value(r, env) & 0xffff_ffff) | (value(r, env) << 32)
        } else {
            r.below(64)
        };
        if env.exclude & EXCL_LASTPAGE != 0 {
            // Either half of a word may be read as a 32-bit pointer.
            if *w >= env.last_page {
                *w -= 0x1000;
            }
            if env.width == 32 && (*w >> 32) >= 0xffff_f000 {
                *w -= 0x1000 << 32;
            }
            if env.width == 32 && (*w & 0xffff_ffff) >= 0xffff_f000 {
                *w -= 0x1000;
            }
        }
    }
}

/// The hypercall part of [`next`].
fn hypercall(r: &mut Rng, env: &Env, words: &mut [u64]) -> Step {
    let implemented = if env.width == 32 {
        IMPLEMENTED32
    } else {
        IMPLEMENTED
    };
    let op = match r.below(20) {
        0..=15 => r.pick(implemented),
        16 | 17 => r.below(64) as u32,
        18 => 64 + r.below(64) as u32,
        _ => {
            if r.chance(128) {
                r.next() as u32
            } else {
                128 + r.below(128) as u32
            }
        }
    };
    let op = if op == 23 { 17 } else { op };
    let mut args = [0u64; 6];
    for a in args.iter_mut() {
        *a = value(r, env);
    }
    let mut fixup = Fixup::None;
    match op {
        // Multiplexed: a sub-command and a pointer.
        12 | 17 | 29 | 30 | 32 | 33 => {
            args[0] = subcmd(r, op);
            args[1] = pointer(r, env);
        }
        24 => {
            args[0] = subcmd(r, op);
            args[1] = if r.chance(220) {
                r.below(3)
            } else {
                value(r, env)
            };
            args[2] = pointer(r, env);
            // VCPUOP_down (2) of vCPU 0 takes down the only vCPU: the
            // domain would wait for ever, which tells nothing.
            if args[0] == 2 && args[1] == 0 {
                args[1] = 1;
            }
        }
        // Arrays: a pointer, a count, a done pointer, a domain.
        1 | 26 => {
            args[0] = pointer(r, env);
            args[1] = if r.chance(200) {
                r.below(9)
            } else {
                value(r, env)
            };
            args[2] = if r.chance(128) { 0 } else { pointer(r, env) };
            args[3] = if r.chance(200) {
                0x7ff0
            } else {
                value(r, env) & 0xffff
            };
        }
        0 | 2 => {
            args[0] = pointer(r, env);
            if op == 2 {
                args[1] = if r.chance(200) {
                    r.below(32)
                } else {
                    value(r, env)
                };
            }
        }
        18 => {
            args[0] = subcmd(r, op);
            // Writes: a short count (the console is shared); sometimes a
            // count no buffer has.
            args[1] = if r.chance(230) {
                r.below(24)
            } else {
                value(r, env) | 0x8000_0000
            };
            args[2] = pointer(r, env);
        }
        21 => {
            args[0] = subcmd(r, op);
            args[1] = if r.chance(200) {
                r.below(34)
            } else {
                value(r, env)
            };
        }
        _ => {}
    }
    // Write printable bytes where a console write may read them.
    if op == 18 && args[0] == 0 {
        for w in words.iter_mut().take(8) {
            *w = 0x2e2e_2e2e_2e2e_2e2e; // "........"
        }
    }
    // sched_op_compat (6) takes the same commands, a shutdown reason by
    // value.
    if op == 6 {
        args[0] = r.below(8);
        match args[0] {
            1 => fixup = Fixup::Block,
            2 | 5 => args[1] = 0xff00 | r.below(0x100),
            3 => args[0] = 0,
            _ => {}
        }
    }
    if op == 29 {
        match args[0] {
            // SCHEDOP_shutdown / shutdown_code: a reason that is no reason
            // (poweroff/crash/suspend would simply end the fuzz domain).
            2 | 5 => {
                args[1] = env.cut(env.scratch);
                words[0] = 0xff00 | r.below(0x100);
            }
            1 => fixup = Fixup::Block,
            // SCHEDOP_watchdog would move the guest's own watchdog: a yield.
            6 => args[0] = 0,
            3 => {
                if env.width == 32 && env.exclude & EXCL_POLL32 != 0 {
                    args[0] = 0; // yield instead
                } else {
                    args[1] = env.cut(env.scratch);
                    fixup = Fixup::Poll;
                }
            }
            _ => {}
        }
    }
    for a in args.iter_mut() {
        *a = env.cut(*a);
    }
    Step::Hypercall { op, args, fixup }
}

/// Selectors worth trying in an iret frame of width `w`.
fn selector(r: &mut Rng, env: &Env) -> u64 {
    let flat: &[u64] = if env.width == 64 {
        &[0xe033, 0xe02b, 0xe023, 0xe030, 0xe02b, 0xe033]
    } else {
        &[0xe019, 0xe021, 0xe02b, 0xe033, 0xe011, 0xe009]
    };
    match r.below(8) {
        0..=4 => r.pick(flat),
        5 => r.below(0x10000),
        6 => r.below(32) << 3 | r.below(4),
        _ => r.pick(&[0, 1, 2, 3, 0xfff8, 0xffff, 0xe000]),
    }
}

/// The GDT `guest32-fuzz` installs (`set_gdt`, one frame, these 14
/// entries): what its iret frames and segment loads name besides the
/// hypervisor's flat selectors. All pass the compat descriptor check
/// (no long-mode code, no system descriptors).
pub const GDT32: [u64; 14] = [
    0x00cf_fb00_0000_ffff, // 0x00: DPL-3 code in entry 0 (a null selector all the same)
    0x00cf_fb00_0000_ffff, // 0x08: flat code, DPL 3
    0x00cf_f300_0000_ffff, // 0x10: flat data, DPL 3
    0x00cf_bb00_0000_ffff, // 0x18: flat code, DPL 1
    0x00cf_b300_0000_ffff, // 0x20: flat data, DPL 1
    0x00cf_f100_0000_ffff, // 0x28: read-only data, DPL 3
    0x004f_fb00_0000_ffff, // 0x30: code, DPL 3, limit 0xfffff bytes
    0x00cf_7b00_0000_ffff, // 0x38: code, DPL 3, not present
    0x008f_fb00_0000_ffff, // 0x40: 16-bit code, DPL 3
    0x00cf_f700_0000_ffff, // 0x48: expand-down data, DPL 3
    0x00cf_b300_1000_ffff, // 0x50: data, DPL 1, base 0x1000
    0x00cf_9b00_0000_ffff, // 0x58: code, DPL 0 (the hypervisor raises it to 1)
    0x00cf_ff00_0000_ffff, // 0x60: conforming code, DPL 3
    0x00cf_f900_0000_ffff, // 0x68: execute-only code, DPL 3
];

/// A 32-bit selector: the flat ones, the guest's own GDT entries (index
/// 0 among them, and one past the end), anything. RPL 1 or 3; RPL 0 or 2
/// (which make `HYPERVISOR_iret` crash the domain by design) about one
/// time in 128.
pub fn selector32(r: &mut Rng) -> u64 {
    let sel = match r.below(8) {
        0 | 1 => r.pick(&[0xe019, 0xe021, 0xe02b, 0xe033, 0xe011, 0xe009]),
        2..=5 => r.below(GDT32.len() as u64 + 1) << 3,
        6 => r.below(0x1_0000),
        _ => r.pick(&[0, 0xfff8, 0xe000, 0xe008, 0xdff8, 0x0ff8]),
    };
    let rpl = if r.chance(2) {
        r.pick(&[0, 2])
    } else {
        r.pick(&[1, 3])
    };
    (sel & !3) | rpl
}

/// A 32-bit iret frame's cs and ss, one or both from [`selector32`] (the
/// other flat for the ring the frame goes to).
fn selectors32(r: &mut Rng) -> (u64, u64) {
    let flat_ss = |cs: u64| if cs & 3 == 3 { 0xe033 } else { 0xe021 };
    match r.below(3) {
        0 => {
            let cs = selector32(r);
            (cs, flat_ss(cs))
        }
        1 => {
            let cs = r.pick(&[0xe019, 0xe02b]);
            let mut ss = selector32(r);
            // Mostly the ring of cs (else a #GP, no more).
            if r.chance(192) {
                ss = (ss & !3) | (cs & 3);
            }
            (cs, ss)
        }
        _ => (selector32(r), selector32(r)),
    }
}

fn rflags(r: &mut Rng, env: &Env) -> u64 {
    let mut f = match r.below(4) {
        0 => r.next() & 0x3f_7fd7,
        1 => 0x202,
        2 => 0x2 | (r.next() & 0x3f_7fd5),
        _ => 0x246 | (r.below(4) << 12) | if r.chance(32) { 0x100 } else { 0 },
    };
    if env.exclude & EXCL_AC != 0 {
        f &= !(1 << 18);
    }
    env.cut(f)
}

fn iret(r: &mut Rng, env: &Env) -> Step {
    // Mostly a selector pair the guest may use (a bad one makes the
    // hypervisor crash the domain, as Xen does, which ends the run of
    // this seed): kernel, user, compat user for 64-bit; ring 1, ring 3
    // for 32-bit. Sometimes anything.
    let pairs: &[(u64, u64)] = if env.width == 64 {
        &[
            (0xe030, 0xe02b),
            (0xe033, 0xe02b),
            (0xe023, 0xe02b),
            (0xe033, 0xe02b),
        ]
    } else {
        &[(0xe019, 0xe021), (0xe02b, 0xe033)]
    };
    let (mut cs, mut ss) = r.pick(pairs);
    if r.chance(2) {
        if r.chance(128) {
            cs = selector(r, env);
        } else {
            ss = selector(r, env);
        }
    }
    if env.width == 32 && env.exclude & EXCL_IRET32_SEL == 0 && r.chance(48) {
        (cs, ss) = selectors32(r);
    }
    if env.width == 32 && env.exclude & EXCL_IRET32_SEL != 0 {
        (cs, ss) = r.pick(pairs);
    }
    Step::Iret {
        flags: if r.chance(200) {
            if r.chance(128) {
                0
            } else {
                1 << 8
            }
        } else {
            value(r, env)
        },
        // A non-canonical rip is a crash of the domain (as in Xen): rare.
        rip: if r.chance(230) {
            0
        } else if r.chance(8) {
            wild(r, env)
        } else {
            env.cut(0xdead_0000 + r.below(0x1000))
        },
        cs,
        rflags: rflags(r, env),
        sp: match r.below(8) {
            0..=5 => 0,
            6 => env.cut(env.scratch + 4096 + r.below(64) * 8),
            _ => wild(r, env),
        },
        ss,
    }
}

/// An address that is not the guest's own (where a jump or a stack may
/// go without the guest overwriting itself): the hypervisor's range,
/// non-canonical, the last page, unmapped low memory.
fn wild(r: &mut Rng, env: &Env) -> u64 {
    let v = match r.below(5) {
        0 => r.pick(env.hv) + r.below(0x1000),
        1 => r.pick(env.bad) + r.below(0x1000),
        2 if env.exclude & EXCL_LASTPAGE == 0 => env.last_page + r.below(0x1000),
        3 => r.below(0x10000),
        _ => 0xdead_0000 + r.below(0x1000),
    };
    env.cut(v)
}

/// The step for iteration `iter`. `words` is the scratch buffer, refilled
/// here with random values (the guest copies it in before running the
/// step).
pub fn next(r: &mut Rng, env: &Env, iter: u64, words: &mut [u64]) -> Call {
    fill(r, env, words);
    let step = match r.below(32) {
        0..=21 => hypercall(r, env, words),
        22..=24 => Step::Int {
            vector: r.below(256) as u8,
            user: r.chance(100),
        },
        25..=29 => {
            let exc = r.pick(EXCS);
            let mut arg = value(r, env);
            if exc == Exc::Write && (arg.wrapping_sub(env.scratch) >= 8192) {
                // Never our own memory: the hypervisor's, non-canonical,
                // the last page, or nothing at all.
                arg = wild(r, env);
            }
            let mut arg2 = value(r, env);
            if exc == Exc::Popf {
                arg2 = rflags(r, env);
            }
            // 32-bit: segment loads mostly of the guest's own selectors.
            if env.width == 32 && exc == Exc::LoadSeg && r.chance(160) {
                arg = selector32(r);
            }
            Step::Exception {
                exc,
                user: r.chance(90),
                arg: env.cut(arg),
                arg2: env.cut(arg2),
            }
        }
        _ => iret(r, env),
    };
    Call { iter, step }
}

/// The last `N` calls, oldest first when walked.
#[derive(Clone, Copy)]
pub struct Ring<const N: usize> {
    calls: [Option<Call>; N],
    next: usize,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    pub const fn new() -> Self {
        Ring {
            calls: [None; N],
            next: 0,
        }
    }
    pub fn push(&mut self, c: Call) {
        self.calls[self.next % N] = Some(c);
        self.next += 1;
    }
    pub fn last(&self) -> Option<Call> {
        if self.next == 0 {
            None
        } else {
            self.calls[(self.next - 1) % N]
        }
    }
    /// Oldest first.
    pub fn each(&self, mut f: impl FnMut(&Call)) {
        let n = self.next.min(N);
        for i in 0..n {
            if let Some(c) = &self.calls[(self.next - n + i) % N] {
                f(c);
            }
        }
    }
}

// --------------------------------------------------------------------------
// The guest's command line.
// --------------------------------------------------------------------------

/// `seed=S iters=N progress=P log=K exclude=a,b` (numbers decimal or
/// `0x` hex).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    /// Steps to run, then `RESULT: SUCCESS`.
    pub iters: u64,
    /// A `FUZZ: iter=` line every this many steps.
    pub progress: u64,
    /// From this step on, every step is printed before it runs
    /// (`u64::MAX`: never).
    pub log_from: u64,
    pub exclude: u32,
}

fn number(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Reads [`Options`] from the guest command line; `Err` names the word it
/// could not read.
pub fn options(line: &str) -> Result<Options, &str> {
    let mut o = Options {
        seed: 1,
        iters: 10_000,
        progress: 1000,
        log_from: u64::MAX,
        exclude: EXCL_KNOWN,
    };
    for w in line.split(' ').filter(|w| !w.is_empty()) {
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        match k {
            "seed" => o.seed = number(v).ok_or(w)?,
            "iters" => o.iters = number(v).ok_or(w)?,
            "progress" => o.progress = number(v).filter(|&n| n > 0).ok_or(w)?,
            "log" => o.log_from = number(v).ok_or(w)?,
            "exclude" => o.exclude = parse_exclude(v).map_err(|_| w)?,
            _ => {}
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env<'static> {
        Env {
            width: 64,
            scratch: 0xffff_ffff_8010_0000,
            own: &[0xffff_ffff_8000_0000],
            maddrs: &[0x123000],
            mfns: &[0x123],
            hv: &[0xffff_8300_0000_0000],
            bad: &[0x8000_0000_0000_0000],
            last_page: 0xffff_ffff_ffff_f000,
            exclude: 0,
        }
    }

    #[test]
    fn same_seed_same_steps() {
        let e = env();
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let (mut wa, mut wb) = ([0u64; 64], [0u64; 64]);
        for i in 0..1000 {
            assert_eq!(next(&mut a, &e, i, &mut wa), next(&mut b, &e, i, &mut wb));
            assert_eq!(wa, wb);
        }
    }

    #[test]
    fn exclusions_hold() {
        let mut e = env();
        e.width = 32;
        e.exclude = EXCL_KNOWN;
        e.last_page = 0xffff_f000;
        let mut r = Rng::new(1);
        let mut w = [0u64; 64];
        let mut ops = [0u32; 64];
        for i in 0..100_000 {
            match next(&mut r, &e, i, &mut w).step {
                Step::Hypercall { op, args, .. } => {
                    if op < 64 {
                        ops[op as usize] += 1;
                    }
                    assert!(!(op == 29 && args[0] == 3), "poll32");
                    assert!(args.iter().all(|&a| a >> 12 != 0xffff_f), "last page");
                    assert!(args.iter().all(|&a| a >> 32 == 0), "32-bit values");
                }
                Step::Iret { cs, ss, rflags, .. } => {
                    assert!(matches!((cs, ss), (0xe019, 0xe021) | (0xe02b, 0xe033)));
                    assert_eq!(rflags & (1 << 18), 0);
                }
                _ => {}
            }
        }
        for op in IMPLEMENTED32 {
            assert!(
                ops[*op as usize] > 500,
                "op {op} drawn {} times",
                ops[*op as usize]
            );
        }
        assert!(ops.iter().all(|&n| n > 0) || ops[23] == 0);
    }

    #[test]
    fn iret32_selectors() {
        let mut e = env();
        e.width = 32;
        e.last_page = 0xffff_f000;
        let mut r = Rng::new(3);
        let mut w = [0u64; 64];
        let (mut irets, mut ring02, mut own) = (0u32, 0u32, 0u32);
        for i in 0..200_000 {
            if let Step::Iret { cs, ss, .. } = next(&mut r, &e, i, &mut w).step {
                irets += 1;
                assert!(cs >> 16 == 0 && ss >> 16 == 0);
                if cs & 1 == 0 {
                    ring02 += 1;
                }
                if cs < 0xe000 && (cs >> 3) <= GDT32.len() as u64 {
                    own += 1;
                }
            }
        }
        // Own GDT selectors are common; an iret the domain dies of is rare
        // (under 0.5 % of iret frames).
        assert!(own * 100 > irets * 3, "{own} of {irets}");
        assert!(ring02 * 200 < irets, "{ring02} of {irets}");
        assert!(ring02 > 0);
    }

    #[test]
    fn parse_names() {
        assert_eq!(parse_exclude("poll32,ac"), Ok(EXCL_POLL32 | EXCL_AC));
        assert_eq!(parse_exclude("known"), Ok(EXCL_KNOWN));
        assert_eq!(parse_exclude("none"), Ok(0));
        assert_eq!(parse_exclude("bogus"), Err("bogus"));
        extern crate std;
        use std::string::ToString;
        assert_eq!(ExclNames(EXCL_POLL32 | EXCL_AC).to_string(), "poll32,ac");
    }

    #[test]
    fn options_from_the_command_line() {
        let o = options("victim=0 port=1 seed=0x10 iters=5 log=3 exclude=none").unwrap();
        assert_eq!(
            (o.seed, o.iters, o.log_from, o.exclude, o.progress),
            (16, 5, 3, 0, 1000)
        );
        assert_eq!(options("").unwrap().exclude, EXCL_KNOWN);
        assert!(options("seed=x").is_err());
        assert!(options("exclude=what").is_err());
    }

    #[test]
    fn ring_keeps_the_last() {
        let mut r: Ring<4> = Ring::new();
        for i in 0..10 {
            r.push(Call {
                iter: i,
                step: Step::Int {
                    vector: 0,
                    user: false,
                },
            });
        }
        let mut seen = [0u64; 4];
        let mut k = 0;
        r.each(|c| {
            seen[k] = c.iter;
            k += 1;
        });
        assert_eq!(seen, [6, 7, 8, 9]);
        assert_eq!(r.last().unwrap().iter, 9);
    }
}
