//! A minimal Linux bzImage around any kernel ELF, for the tests that boot
//! a guest the way Debian's kernel arrives: `HdrS` setup header, payload
//! gzip-compressed, Linux's 4-byte size trailer after it. Written here,
//! std only, with no external tools: the gzip member uses stored
//! (uncompressed) deflate blocks, which every inflater must take, with
//! the real CRC-32 and ISIZE trailer.
//!
//! Layout (Linux `Documentation/arch/x86/boot.rst`): the boot sector and
//! `setup_sects` setup sectors (512 bytes each), then the protected-mode
//! part; the header at 0x1f1 says where the payload is inside that part
//! (`payload_offset` 0x248, `payload_length` 0x24c, boot protocol 2.08+).

/// The boot protocol version written (2.15, as Linux 6.1).
pub const VERSION: u16 = 0x020f;
const SETUP_SECTS: u8 = 4;
/// Where the payload starts inside the protected-mode part (as Linux,
/// which puts its decompressor's head first).
const PAYLOAD_OFFSET: usize = 0x3c0;

/// CRC-32 as gzip computes it (IEEE, reflected).
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// A gzip member (RFC 1952) holding `data` in stored deflate blocks
/// (RFC 1951 3.2.4: BTYPE 00, LEN, NLEN, the bytes).
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    // ID1 ID2, CM=8 (deflate), FLG=0, MTIME=0, XFL=0, OS=3 (Unix).
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]); // one empty final block
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(last as u8); // BFINAL, BTYPE 00, padded to the byte
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// A bzImage whose payload is `kernel` (an ELF) gzip-compressed.
pub fn wrap_gzip(kernel: &[u8]) -> Vec<u8> {
    let mut payload = gzip_stored(kernel);
    // Linux's size_append: the decompressed size after the payload.
    payload.extend_from_slice(&(kernel.len() as u32).to_le_bytes());
    let pm = (SETUP_SECTS as usize + 1) * 512;
    let mut img = vec![0u8; pm + PAYLOAD_OFFSET];
    img[0x1f1] = SETUP_SECTS;
    img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&VERSION.to_le_bytes());
    img[0x248..0x24c].copy_from_slice(&(PAYLOAD_OFFSET as u32).to_le_bytes());
    img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    img.extend_from_slice(&payload);
    img
}

/// FNV-1a, 64-bit: what guest-hello prints for its initrd.
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn stored_blocks() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7) as u8).collect();
        let gz = gzip_stored(&data);
        // Header, three blocks of 5 + data bytes, trailer.
        assert_eq!(gz.len(), 10 + 3 * 5 + data.len() + 8);
        assert_eq!(gz[10], 0, "first block not final");
        assert_eq!(&gz[11..15], &[0xff, 0xff, 0, 0]);
        assert_eq!(&gz[gz.len() - 4..], &(data.len() as u32).to_le_bytes());
        assert_eq!(gzip_stored(b"").len(), 10 + 5 + 8);
    }

    #[test]
    fn header_places_the_payload() {
        let img = wrap_gzip(b"\x7fELF kernel");
        assert_eq!(&img[0x202..0x206], b"HdrS");
        let off = (img[0x1f1] as usize + 1) * 512
            + u32::from_le_bytes(img[0x248..0x24c].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(img[0x24c..0x250].try_into().unwrap()) as usize;
        assert_eq!(off + len, img.len());
        assert_eq!(&img[off..off + 2], &[0x1f, 0x8b]);
        assert_eq!(&img[img.len() - 4..], &11u32.to_le_bytes());
    }
}
