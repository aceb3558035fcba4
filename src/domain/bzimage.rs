//! Linux bzImages: find the kernel inside one and decompress it, as Xen's
//! `xen/arch/x86/bzimage.c` and `xen/common/decompress.c` do for dom0.
//!
//! A bzImage is the real-mode setup code, then the protected-mode part
//! whose payload is the compressed `vmlinux` ELF. The boot protocol's setup
//! header (Linux `Documentation/arch/x86/boot.rst`) says where that payload
//! is: `setup_sects` (byte 0x1f1) sectors of 512 bytes follow the boot
//! sector, and `payload_offset` (0x248) / `payload_length` (0x24c, both
//! since protocol 2.08) place the payload inside the protected-mode part.
//! Linux appends the uncompressed size as 4 little-endian bytes to every
//! compressed payload (`size_append`); Xen's `output_length` reads it there
//! and so do we, to size the output before decompressing.
//!
//! Formats: gzip (`miniz_oxide`), xz (our own single-call decoder,
//! [`super::unxz`], with the BCJ x86 filter Linux's `xz_wrap.sh` uses) and
//! zstd (`ruzstd`); a payload that is
//! already an ELF is taken as it is (Xen does the same). bzip2, lzma, lzo
//! and lz4 kernels are recognised and refused by name.
//!
//! Pure logic: the caller provides the output buffer (the builder takes it
//! from the frame allocator: Debian's kernel is 63 MiB, far more than the
//! hypervisor heap), which is also the xz dictionary, as in Xen's
//! single-call xz decoding. zstd is the exception: `ruzstd` keeps its window on the heap, so a
//! window larger than [`ZSTD_MAX_WINDOW`] is refused before decoding. No
//! input makes this module panic; a corrupt or truncated payload is an
//! [`BzError`] naming the format and what went wrong.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::fmt;

/// Offsets in the setup header (Linux boot protocol, `struct setup_header`
/// in `arch/x86/include/uapi/asm/bootparam.h`, counted from the file start).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;
/// The header up to and including `payload_length`.
const HEADER_END: usize = 0x250;
/// Boot protocol 2.08: the first with `payload_offset`/`payload_length`.
const MIN_VERSION: u16 = 0x0208;

/// The largest kernel this will decompress (the ELF parser's own limit on
/// an image's span: a larger claim is corruption, not a kernel).
pub const MAX_OUTPUT: usize = 1 << 30;

/// The largest zstd window accepted: `ruzstd` keeps the window (and up to
/// a block more) in a `Vec` on the hypervisor heap, which is 8 MiB and
/// shared with everything else. Linux's own zstd kernels (`zstd -22
/// --ultra`) use a window as large as the kernel and are refused here.
pub const ZSTD_MAX_WINDOW: u64 = 2 << 20;

/// How a payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Already an ELF (no compression).
    Elf,
    Gzip,
    Xz,
    Zstd,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Elf => "uncompressed",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
        }
    }
}

/// The kernel inside a bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The payload bytes (`payload_length` of them, size trailer included).
    pub bytes: &'a [u8],
    pub format: Format,
    /// Bytes the decompressed kernel takes: Linux's size trailer, or the
    /// payload's own length when it is an uncompressed ELF.
    pub out_len: usize,
    /// Boot protocol version (e.g. 0x020f), for messages.
    pub version: u16,
}

/// Why a bzImage could not be turned into its kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BzError {
    /// Boot protocol older than 2.08: no payload fields (Xen refuses it too).
    OldProtocol(u16),
    /// The payload does not lie inside the file.
    PayloadOutside {
        offset: u64,
        length: u64,
        file_len: usize,
    },
    /// A compression this hypervisor does not decompress.
    Unsupported(&'static str),
    /// Not a known compression format (nor an ELF).
    UnknownFormat([u8; 4]),
    /// The size trailer is 0 or implausibly large.
    BadSize(u64),
    /// zstd window too large for the heap.
    ZstdWindow(u64),
    /// The payload ended before its end-of-stream mark.
    Truncated(Format),
    /// The payload decompresses to more than its size trailer says.
    TooLong(Format, usize),
    /// The decompressor refused the data.
    Corrupt(Format, String),
}

impl fmt::Display for BzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BzError::OldProtocol(v) => write!(
                f,
                "bzImage boot protocol {}.{:02}: 2.08 or later is needed (it says where the payload is)",
                v >> 8,
                v & 0xff
            ),
            BzError::PayloadOutside { offset, length, file_len } => write!(
                f,
                "bzImage payload at {offset:#x}, {length} bytes, lies outside the {file_len}-byte file"
            ),
            BzError::Unsupported(name) => write!(
                f,
                "bzImage payload is {name}-compressed: only xz, gzip and zstd kernels are decompressed here"
            ),
            BzError::UnknownFormat(m) => write!(
                f,
                "bzImage payload is neither an ELF nor xz, gzip or zstd (starts {:02x} {:02x} {:02x} {:02x})",
                m[0], m[1], m[2], m[3]
            ),
            BzError::BadSize(n) => {
                write!(f, "bzImage payload's size trailer says {n} bytes: not a kernel (at most 1 GiB)")
            }
            BzError::ZstdWindow(w) => write!(
                f,
                "zstd payload needs a {} KiB window, more than the {} KiB the hypervisor heap can give: \
                 recompress the kernel with xz or gzip",
                w >> 10,
                ZSTD_MAX_WINDOW >> 10
            ),
            BzError::Truncated(fmt) => write!(f, "{} payload is truncated (no end of stream)", fmt.name()),
            BzError::TooLong(fmt, n) => write!(
                f,
                "{} payload decompresses to more than the {n} bytes its size trailer says",
                fmt.name()
            ),
            BzError::Corrupt(fmt, why) => write!(f, "{} payload is corrupt: {why}", fmt.name()),
        }
    }
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([d[at], d[at + 1]])
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Is this module a kernel (an ELF, or a bzImage with its setup header)?
/// A module that is not is the initrd of the kernel before it.
pub fn is_kernel_image(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF") || data.get(HEADER_MAGIC..HEADER_MAGIC + 4) == Some(&b"HdrS"[..])
}

/// Is this a bzImage, and where is its payload? `Ok(None)`: no `HdrS`
/// setup header, not a bzImage (Xen's `bzimage_check` returning 0).
pub fn probe(data: &[u8]) -> Result<Option<Payload<'_>>, BzError> {
    if data.len() < HEADER_END || &data[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
        return Ok(None);
    }
    let version = u16_at(data, VERSION);
    if version < MIN_VERSION {
        return Err(BzError::OldProtocol(version));
    }
    // As Xen: (setup_sects + 1) * 512 + payload_offset. (The boot
    // protocol reads setup_sects 0 as 4; kernels with a payload never
    // write 0, and Xen does not special-case it either.)
    let offset = (data[SETUP_SECTS] as u64 + 1) * 512 + u32_at(data, PAYLOAD_OFFSET) as u64;
    let length = u32_at(data, PAYLOAD_LENGTH) as u64;
    let outside = || BzError::PayloadOutside {
        offset,
        length,
        file_len: data.len(),
    };
    let end = offset.checked_add(length).ok_or_else(outside)?;
    if end > data.len() as u64 || length < 4 {
        return Err(outside());
    }
    let bytes = &data[offset as usize..end as usize];
    let format = match bytes {
        [0x7f, b'E', b'L', b'F', ..] => Format::Elf,
        [0x1f, 0x8b | 0x9e, ..] => Format::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Format::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Format::Zstd,
        [b'B', b'Z', b'h', ..] => return Err(BzError::Unsupported("bzip2")),
        [0x5d, 0, 0, ..] => return Err(BzError::Unsupported("lzma")),
        [0x89, b'L', b'Z', b'O', ..] => return Err(BzError::Unsupported("lzo")),
        [0x02, 0x21, 0x4c, 0x18, ..] => return Err(BzError::Unsupported("lz4")),
        _ => {
            return Err(BzError::UnknownFormat([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))
        }
    };
    let out_len = match format {
        Format::Elf => bytes.len(),
        _ => u32_at(bytes, bytes.len() - 4) as usize,
    };
    if out_len == 0 || out_len > MAX_OUTPUT {
        return Err(BzError::BadSize(out_len as u64));
    }
    Ok(Some(Payload {
        bytes,
        format,
        out_len,
        version,
    }))
}

/// Memory a build of this module borrows while it decompresses it (the
/// kernel, given back after the build): 0 for an ELF, or a bzImage whose
/// header is bad (its build fails anyway).
pub fn unpack_bytes(data: &[u8]) -> u64 {
    match probe(data) {
        Ok(Some(p)) => (p.out_len as u64).next_multiple_of(4096),
        _ => 0,
    }
}

/// Output written so far is reported to `progress` at least every this
/// many bytes (the builder prints a line: decompressing Debian's kernel
/// takes seconds under TCG).
pub const PROGRESS_STEP: usize = 16 << 20;

/// Decompress `p` into `out` (at least `p.out_len` bytes). `progress(done)` is
/// called after every `step` bytes of output. Returns the bytes written.
pub fn decompress(
    p: &Payload<'_>,
    out: &mut [u8],
    step: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<usize, BzError> {
    let n = p.out_len.min(out.len());
    let out = &mut out[..n];
    let step = step.max(4096);
    match p.format {
        Format::Elf => {
            out[..p.bytes.len()].copy_from_slice(p.bytes);
            Ok(p.bytes.len())
        }
        Format::Gzip => gunzip(p.bytes, out, step, progress),
        Format::Xz => unxz(p.bytes, out, step, progress),
        Format::Zstd => unzstd(p.bytes, out, step, progress),
    }
}

/// The raw deflate data inside a gzip member (RFC 1952 header skipped).
fn gzip_body(d: &[u8]) -> Result<&[u8], BzError> {
    let corrupt = |why: &str| BzError::Corrupt(Format::Gzip, String::from(why));
    let truncated = BzError::Truncated(Format::Gzip);
    if d.len() < 10 {
        return Err(truncated);
    }
    if d[2] != 8 {
        return Err(corrupt("compression method is not deflate"));
    }
    let flags = d[3];
    if flags & 0xe0 != 0 {
        return Err(corrupt("reserved header flags set"));
    }
    let mut pos = 10usize;
    if flags & 4 != 0 {
        // FEXTRA: a 2-byte length and that many bytes.
        let n = d
            .get(pos..pos + 2)
            .ok_or(BzError::Truncated(Format::Gzip))?;
        pos += 2 + u16::from_le_bytes([n[0], n[1]]) as usize;
    }
    for flag in [8, 16] {
        // FNAME, FCOMMENT: NUL-terminated.
        if flags & flag != 0 {
            let rest = d.get(pos..).ok_or(BzError::Truncated(Format::Gzip))?;
            pos += rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(BzError::Truncated(Format::Gzip))?
                + 1;
        }
    }
    if flags & 2 != 0 {
        pos += 2; // FHCRC
    }
    d.get(pos..).ok_or(truncated)
}

fn gunzip(
    d: &[u8],
    out: &mut [u8],
    step: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<usize, BzError> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let body = gzip_body(d)?;
    // ~11 KiB of decoder state: on the heap, not the stack.
    let mut r = Box::<DecompressorOxide>::default();
    let (mut inp, mut done) = (0usize, 0usize);
    loop {
        // The whole output is one flat buffer (back-references reach into
        // it); offering it a prefix at a time paces the progress lines.
        let limit = (done + step).min(out.len());
        let (status, used, written) = decompress(
            &mut r,
            &body[inp..],
            &mut out[..limit],
            done,
            inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
        );
        inp += used;
        done += written;
        match status {
            TINFLStatus::Done => break,
            TINFLStatus::HasMoreOutput if limit < out.len() => progress(done),
            // The output is full but the stream goes on.
            TINFLStatus::HasMoreOutput => return Err(BzError::TooLong(Format::Gzip, out.len())),
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(BzError::Truncated(Format::Gzip))
            }
            s => return Err(BzError::Corrupt(Format::Gzip, format!("{s:?}"))),
        }
    }
    // The trailer: CRC32 of the output and ISIZE, its length modulo 2^32.
    let trailer = body
        .get(inp..inp + 8)
        .ok_or(BzError::Truncated(Format::Gzip))?;
    let (crc, isize) = (u32_at(trailer, 0), u32_at(trailer, 4));
    let got = crc32(&out[..done]);
    if crc != got {
        return Err(BzError::Corrupt(
            Format::Gzip,
            format!("CRC32 {got:#010x}, the gzip trailer says {crc:#010x}"),
        ));
    }
    if isize != done as u32 {
        return Err(BzError::Corrupt(
            Format::Gzip,
            format!("{done} bytes decompressed but the gzip trailer says {isize}"),
        ));
    }
    Ok(done)
}

/// CRC-32 (IEEE 802.3, reflected, as gzip uses): xz's.
fn crc32(data: &[u8]) -> u32 {
    super::unxz::crc32(0, data)
}

fn unxz(
    d: &[u8],
    out: &mut [u8],
    step: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<usize, BzError> {
    use super::unxz::{decompress, XzError};
    decompress(d, out, step, progress).map_err(|e| match e {
        XzError::Truncated => BzError::Truncated(Format::Xz),
        XzError::OutputFull => BzError::TooLong(Format::Xz, out.len()),
        e => BzError::Corrupt(Format::Xz, format!("{e}")),
    })
}

fn unzstd(
    d: &[u8],
    out: &mut [u8],
    step: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<usize, BzError> {
    use ruzstd::decoding::errors::{FrameDecoderError, FrameHeaderError};
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
    use ruzstd::io::Read;
    let corrupt = |e: FrameDecoderError| BzError::Corrupt(Format::Zstd, format!("{e}"));
    let mut dec = FrameDecoder::new();
    dec.set_max_window_size(ZSTD_MAX_WINDOW);
    let mut src = d;
    match dec.init(&mut src) {
        Ok(()) => {}
        Err(FrameDecoderError::WindowSizeTooBig { requested, .. }) => {
            return Err(BzError::ZstdWindow(requested))
        }
        Err(FrameDecoderError::FrameHeaderError(FrameHeaderError::WindowTooBig { got })) => {
            return Err(BzError::ZstdWindow(got))
        }
        Err(e) => return Err(corrupt(e)),
    }
    let (mut done, mut next_report) = (0usize, step);
    loop {
        // Decode a few blocks into the heap window (at most 256 KiB past
        // it, to keep the heap small), then move what is ready out.
        let chunk = step.min(256 << 10);
        dec.decode_blocks(&mut src, BlockDecodingStrategy::UptoBytes(chunk))
            .map_err(|e| match e {
                FrameDecoderError::FailedToReadBlockHeader(_) if src.is_empty() => {
                    BzError::Truncated(Format::Zstd)
                }
                e => corrupt(e),
            })?;
        let n = dec
            .read(&mut out[done..])
            .map_err(|e| BzError::Corrupt(Format::Zstd, format!("{e:?}")))?;
        done += n;
        if dec.can_collect() != 0 {
            return Err(BzError::TooLong(Format::Zstd, out.len()));
        }
        if dec.is_finished() {
            return Ok(done);
        }
        if n == 0 && src.is_empty() {
            return Err(BzError::Truncated(Format::Zstd));
        }
        if done >= next_report {
            progress(done);
            next_report = done + step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// What the test payloads hold (testdata/payload.{gz,xz,zst} were made
    /// from it with `gzip -9 -n`, `xz --check=crc32 --x86
    /// --lzma2=preset=6,dict=1MiB` (Linux's filters) and `zstd -19`).
    fn plain() -> Vec<u8> {
        (0..5000)
            .flat_map(|i| format!("line {i} of the ringvisor bzImage test payload\n").into_bytes())
            .collect()
    }

    const GZ: &[u8] = include_bytes!("testdata/payload.gz");
    const XZ: &[u8] = include_bytes!("testdata/payload.xz");
    const ZST: &[u8] = include_bytes!("testdata/payload.zst");

    /// A bzImage as Linux lays it out: boot sector + `setup_sects` sectors,
    /// then the protected-mode part with the payload at `payload_offset`,
    /// the payload followed by Linux's 4-byte size trailer.
    fn bzimage(payload: &[u8], size: u32) -> Vec<u8> {
        let setup_sects = 3u8;
        let pm = (setup_sects as usize + 1) * 512;
        let payload_offset = 0x300usize;
        let mut v = vec![0u8; pm + payload_offset];
        v[SETUP_SECTS] = setup_sects;
        v[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        v[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        v[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        v[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4]
            .copy_from_slice(&(payload_offset as u32).to_le_bytes());
        v[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32 + 4).to_le_bytes());
        v.extend_from_slice(payload);
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&[0xcc; 100]); // whatever follows (Linux: more setup data)
        v
    }

    fn run(image: &[u8]) -> Result<(Vec<u8>, Vec<usize>), BzError> {
        let p = probe(image)?.expect("a bzImage");
        let mut out = vec![0u8; p.out_len];
        let mut reports = Vec::new();
        let n = decompress(&p, &mut out, 64 << 10, &mut |d| reports.push(d))?;
        out.truncate(n);
        Ok((out, reports))
    }

    #[test]
    fn header_fields_place_the_payload() {
        let img = bzimage(XZ, 238890);
        let p = probe(&img).unwrap().unwrap();
        assert_eq!(p.format, Format::Xz);
        assert_eq!(p.version, 0x020f);
        assert_eq!(p.out_len, 238890);
        assert_eq!(p.bytes.len(), XZ.len() + 4);
        assert_eq!(&p.bytes[..XZ.len()], XZ);
    }

    #[test]
    fn kernels_and_data() {
        assert!(is_kernel_image(b"\x7fELF\x02\x01"));
        assert!(is_kernel_image(&bzimage(XZ, 1)));
        assert!(
            is_kernel_image(&bzimage(b"junk", 1)),
            "a broken bzImage is still a kernel: its error is shown"
        );
        assert!(!is_kernel_image(b"070701")); // a cpio archive
        assert!(!is_kernel_image(GZ)); // a gzip initrd
        assert!(!is_kernel_image(b""));
    }

    #[test]
    fn memory_borrowed_while_unpacking() {
        // Output rounded to pages (xz decodes with the output as its
        // dictionary: nothing more).
        assert_eq!(unpack_bytes(&bzimage(XZ, 238890)), 241664);
        assert_eq!(unpack_bytes(&bzimage(GZ, 238890)), 241664);
        assert_eq!(unpack_bytes(b"\x7fELF"), 0);
        assert_eq!(unpack_bytes(&bzimage(b"junk", 1)), 0);
    }

    #[test]
    fn not_a_bzimage() {
        assert_eq!(probe(b"\x7fELF"), Ok(None));
        assert_eq!(probe(&[0u8; 4096]), Ok(None));
        let mut img = bzimage(XZ, 1);
        img[HEADER_MAGIC] = b'h';
        assert_eq!(probe(&img), Ok(None));
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut img = bzimage(XZ, 238890);
        img[VERSION..VERSION + 2].copy_from_slice(&0x0207u16.to_le_bytes());
        assert_eq!(probe(&img), Err(BzError::OldProtocol(0x0207)));
        let mut img = bzimage(XZ, 238890);
        img[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(probe(&img), Err(BzError::PayloadOutside { .. })));
        let mut img = bzimage(XZ, 238890);
        img[SETUP_SECTS] = 255;
        assert!(matches!(probe(&img), Err(BzError::PayloadOutside { .. })));
        assert_eq!(probe(&bzimage(XZ, 0)), Err(BzError::BadSize(0)));
        assert_eq!(
            probe(&bzimage(XZ, u32::MAX)),
            Err(BzError::BadSize(u32::MAX as u64))
        );
        assert_eq!(
            probe(&bzimage(b"BZh91AY", 10)),
            Err(BzError::Unsupported("bzip2"))
        );
        assert_eq!(
            probe(&bzimage(&[0x02, 0x21, 0x4c, 0x18], 10)),
            Err(BzError::Unsupported("lz4"))
        );
        assert_eq!(
            probe(&bzimage(b"junk", 10)),
            Err(BzError::UnknownFormat(*b"junk"))
        );
        // Headers cut short anywhere: never a panic.
        let img = bzimage(XZ, 238890);
        for n in 0..HEADER_END + 8 {
            let _ = probe(&img[..n]);
        }
    }

    #[test]
    fn each_format_decompresses() {
        for (data, fmt) in [(GZ, Format::Gzip), (XZ, Format::Xz), (ZST, Format::Zstd)] {
            let img = bzimage(data, plain().len() as u32);
            assert_eq!(probe(&img).unwrap().unwrap().format, fmt);
            let (out, reports) = run(&img).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
            assert!(out == plain(), "{fmt:?}: wrong output");
            // 238890 bytes in 64 KiB steps: gzip reports at least 3
            // times, in order. (ruzstd hands out nothing until the output
            // is larger than its window, here the whole file; xz reports
            // between LZMA2 chunks, up to 2 MiB each: here one.)
            let least = match fmt {
                Format::Gzip => 3,
                Format::Xz => 1,
                _ => 0,
            };
            assert!(reports.len() >= least, "{fmt:?}: {reports:?}");
            assert!(
                reports.windows(2).all(|w| w[0] < w[1]),
                "{fmt:?}: {reports:?}"
            );
        }
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn uncompressed_elf_payload() {
        let mut elf = Vec::from(&b"\x7fELF"[..]);
        elf.extend_from_slice(&[7u8; 60]);
        let img = bzimage(&elf, 0);
        let p = probe(&img).unwrap().unwrap();
        assert_eq!(p.format, Format::Elf);
        let (out, _) = run(&img).unwrap();
        assert_eq!(&out[..64], &elf[..]);
    }

    #[test]
    fn truncated_payloads_are_errors() {
        for (data, fmt) in [(GZ, Format::Gzip), (XZ, Format::Xz), (ZST, Format::Zstd)] {
            for cut in [data.len() / 2, data.len() - 9, 20] {
                let img = bzimage(&data[..cut], plain().len() as u32);
                // (Cut short, Linux's 4-byte size trailer becomes the
                // stream's last bytes: it may read as more data, too long.)
                match run(&img) {
                    Err(BzError::Truncated(f))
                    | Err(BzError::Corrupt(f, _))
                    | Err(BzError::TooLong(f, _)) => {
                        assert_eq!(f, fmt)
                    }
                    other => panic!("{fmt:?} cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        for (data, fmt) in [(GZ, Format::Gzip), (XZ, Format::Xz), (ZST, Format::Zstd)] {
            // Flip bytes all over the stream, one position at a time.
            // (From byte 10: gzip's MTIME, XFL and OS bytes carry nothing.)
            for at in (10..data.len()).step_by(97) {
                let mut d = Vec::from(data);
                d[at] ^= 0x5a;
                let img = bzimage(&d, plain().len() as u32);
                match run(&img) {
                    Ok((out, _)) => assert_eq!(
                        fmt,
                        Format::Zstd,
                        "{fmt:?} at {at}: accepted as {} bytes",
                        out.len()
                    ),
                    Err(e) => assert!(!format!("{e}").contains('\n')),
                }
            }
        }
    }

    #[test]
    fn output_longer_than_the_trailer_says() {
        for (data, fmt) in [(GZ, Format::Gzip), (XZ, Format::Xz), (ZST, Format::Zstd)] {
            let img = bzimage(data, 1000);
            assert_eq!(
                run(&img).unwrap_err(),
                BzError::TooLong(fmt, 1000),
                "{fmt:?}"
            );
        }
    }

    #[test]
    fn zstd_window_over_the_limit_is_refused() {
        // A frame header by hand: magic, descriptor 0 (no single segment,
        // no checksum), window descriptor 0x80 (2^(10+16) = 64 MiB), then
        // one empty last raw block.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x80, 0x01, 0x00, 0x00];
        let img = bzimage(&frame, 10);
        let e = run(&img).unwrap_err();
        assert_eq!(e, BzError::ZstdWindow(64 << 20));
        assert!(format!("{e}").contains("65536 KiB window"), "{e}");
    }
}
