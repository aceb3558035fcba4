//! What the boot loader left in memory, as safe views: its multiboot2
//! information block, its modules (kernels, initrds) and the framebuffer
//! it set up. The one place their physical addresses become Rust slices.

/// `bytes` as a multiboot2 information block, checked by the `multiboot2`
/// crate (alignment, total size, tag sequence, end tag). Safe for any
/// slice: the crate reads the total size its header claims, so that is
/// checked against the slice first.
pub fn multiboot2(bytes: &[u8]) -> Result<multiboot2::BootInformation<'_>, &'static str> {
    use multiboot2::{BootInformation, BootInformationHeader};
    let total = bytes
        .get(..4)
        .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize)
        .ok_or("shorter than its header")?;
    if total > bytes.len() {
        return Err("total size past the end of the block");
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(8) {
        return Err("not 8-byte aligned");
    }
    // SAFETY: the crate reads `total` bytes at the pointer (at least its
    // 8-byte header, which it checks against `total`); they are inside
    // `bytes`, which stays borrowed, unmodified, for the result's life.
    unsafe { BootInformation::load(bytes.as_ptr() as *const BootInformationHeader) }
        .map_err(|_| "malformed (bad alignment, size or end tag)")
}

/// The multiboot2 information block a loader left at `phys` (below
/// 4 GiB: inside the boot direct map), as much as its header says it
/// holds (at most 1 MiB: no loader writes more).
#[cfg(target_os = "none")]
pub fn multiboot2_block(phys: u32) -> &'static [u8] {
    let va = super::paging::phys_to_virt(phys as u64) as *const u8;
    // SAFETY: the loader left the block at `phys`, inside the boot
    // direct map; the frame allocator keeps it reserved and nothing
    // writes it; its first 4 bytes are its size.
    let total = unsafe { (va as *const u32).read_unaligned() } as usize;
    // Not past the boot direct map (a bad header is refused by `multiboot2`).
    let room = super::paging::BOOT_DIRECTMAP.saturating_sub(phys as u64) as usize;
    let len = total.clamp(8, 1 << 20).min(room);
    // SAFETY: as above; `len` bytes from `va`, inside the boot direct map.
    unsafe { core::slice::from_raw_parts(va, len) }
}

/// The bytes of a module the loader put at `[start, end)`.
#[cfg(target_os = "none")]
pub fn module(start: u64, end: u64) -> &'static [u8] {
    // SAFETY: the loader put the module at [start, end) in RAM, which the
    // frame allocator keeps reserved for good; nothing writes it.
    unsafe {
        core::slice::from_raw_parts(
            super::paging::phys_to_virt(start) as *const u8,
            end.saturating_sub(start) as usize,
        )
    }
}

/// The framebuffer's bytes through the direct map, for its console
/// (`fbcon`): once; a second call gets an error, not a second `&mut`.
#[cfg(target_os = "none")]
pub fn framebuffer(fb: &crate::boot_info::Framebuffer) -> Result<&'static mut [u8], &'static str> {
    use core::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if fb.addr.saturating_add(fb.size()) > super::paging::BOOT_DIRECTMAP {
        return Err("it lies above 4 GiB, outside the boot direct map");
    }
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err("it is taken already");
    }
    // SAFETY: the loader describes [addr, addr + pitch * height) as the
    // framebuffer; the direct map covers the first 4 GiB (checked above)
    // from boot on; it is not RAM the allocator hands out, and this is the
    // only reference made to it (TAKEN).
    Ok(unsafe {
        core::slice::from_raw_parts_mut(
            super::paging::phys_to_virt(fb.addr) as *mut u8,
            fb.size() as usize,
        )
    })
}
