//! An xz decoder for kernel payloads, in single-call mode: the whole
//! compressed stream in, the whole output buffer out, and that output
//! buffer is the LZMA2 dictionary. This is how Xen unpacks a dom0 kernel
//! (`xen/common/unxz.c` runs Linux's xz-embedded with `XZ_SINGLE`): no
//! separate dictionary (Debian's kernel asks for 32 MiB) and no copy out
//! of one.
//!
//! What it reads (the `.xz` format, version 1.2, and LZMA2 as xz-embedded
//! reads it): one stream (header, blocks, index, footer; whatever follows
//! the footer is the caller's, e.g. Linux's size trailer); each block's
//! filters are LZMA2, optionally preceded by the BCJ x86 filter that
//! Linux's `xz_wrap.sh` adds; integrity checks None, CRC32 and CRC64, each
//! verified (SHA-256 streams are refused, as xz-embedded without
//! `XZ_DEC_ANY_CHECK` does). Every header CRC32, the block sizes the headers
//! and the index state, and the footer are checked too.
//!
//! Why not a crate: under TCG a decoder's cost is mostly its memory
//! accesses. Copying matches eight bytes at a time instead of one, keeping
//! the range coder in registers and never copying out of a dictionary took
//! Debian's kernel from 2.8 s to about 1.4 s under TCG (see
//! docs/benchmarks.md). Pure logic, no `unsafe`: every index is checked, and
//! a corrupt stream is an [`XzError`], never a panic.

use alloc::boxed::Box;

/// Why a stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XzError {
    /// Not an xz stream (magic bytes).
    NotXz,
    /// The input ended inside the stream.
    Truncated,
    /// The stream decompresses to more than the output buffer holds.
    OutputFull,
    /// A check type, filter or option this decoder does not implement.
    Unsupported(&'static str),
    /// The data contradicts itself (what, in a few words).
    Corrupt(&'static str),
    /// A block's integrity check does not match its data.
    CheckMismatch,
}

impl core::fmt::Display for XzError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            XzError::NotXz => f.write_str("not an xz stream"),
            XzError::Truncated => f.write_str("truncated"),
            XzError::OutputFull => f.write_str("more output than the buffer holds"),
            XzError::Unsupported(what) => write!(f, "unsupported: {what}"),
            XzError::Corrupt(what) => write!(f, "corrupt: {what}"),
            XzError::CheckMismatch => f.write_str("a block's integrity check does not match"),
        }
    }
}

type Result<T> = core::result::Result<T, XzError>;

const HEADER_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
const FOOTER_MAGIC: [u8; 2] = [b'Y', b'Z'];

/// The integrity check a stream's flags name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    None,
    Crc32,
    Crc64,
}

impl Check {
    fn len(self) -> usize {
        match self {
            Check::None => 0,
            Check::Crc32 => 4,
            Check::Crc64 => 8,
        }
    }
}

/// Decompress the xz stream at the start of `input` into `out`. Returns
/// the bytes written; `progress(done)` is called between LZMA2 chunks
/// (at most 2 MiB of output each) once `step` more bytes are done.
pub fn decompress(
    input: &[u8],
    out: &mut [u8],
    step: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<usize> {
    let mut r = Reader { d: input, pos: 0 };
    // Stream header: magic, flags (0, check type), CRC32 of the flags.
    if r.take(6)? != HEADER_MAGIC {
        return Err(XzError::NotXz);
    }
    let flags = r.take(2)?;
    let flags = [flags[0], flags[1]];
    if r.u32le()? != crc32(0, &flags) {
        return Err(XzError::Corrupt("stream header CRC32"));
    }
    let check = match flags {
        [0, 0x00] => Check::None,
        [0, 0x01] => Check::Crc32,
        [0, 0x04] => Check::Crc64,
        [0, 0x0a] => return Err(XzError::Unsupported("SHA-256 check")),
        [0, t] if t < 0x10 => return Err(XzError::Unsupported("check type")),
        _ => return Err(XzError::Corrupt("stream flags")),
    };

    let mut lz = Box::new(Lzma::new());
    let mut done = 0usize;
    let mut next_report = step;
    // What the index must say: block count, and a CRC32 over each
    // block's (unpadded size, uncompressed size) as xz-embedded keeps.
    let mut blocks = 0u64;
    let mut sizes_crc = 0u32;
    loop {
        let size_byte = r.byte()?;
        if size_byte == 0 {
            break; // the index indicator
        }
        let (block_out, unpadded) = decode_block(
            &mut r,
            size_byte,
            check,
            &mut lz,
            &mut out[done..],
            done,
            &mut next_report,
            step,
            progress,
        )?;
        done += block_out;
        blocks += 1;
        sizes_crc = crc32(sizes_crc, &unpadded.to_le_bytes());
        sizes_crc = crc32(sizes_crc, &(block_out as u64).to_le_bytes());
    }

    // Index: indicator (read), record count, records, padding, CRC32.
    let index_start = r.pos - 1;
    if r.vli()? != blocks {
        return Err(XzError::Corrupt("index block count"));
    }
    let mut index_crc = 0u32;
    for _ in 0..blocks {
        let unpadded = r.vli()?;
        let uncompressed = r.vli()?;
        index_crc = crc32(index_crc, &unpadded.to_le_bytes());
        index_crc = crc32(index_crc, &uncompressed.to_le_bytes());
    }
    if index_crc != sizes_crc {
        return Err(XzError::Corrupt("index sizes"));
    }
    r.zero_padding(r.pos - index_start)?;
    let index_len = r.pos - index_start;
    if r.u32le()? != crc32(0, &input[index_start..index_start + index_len]) {
        return Err(XzError::Corrupt("index CRC32"));
    }

    // Stream footer: CRC32 of the next 6 bytes, backward size, flags, magic.
    let crc = r.u32le()?;
    let rest = r.take(6)?;
    if crc != crc32(0, rest) {
        return Err(XzError::Corrupt("stream footer CRC32"));
    }
    let backward = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if (backward + 1) * 4 != index_len + 4 || rest[4..6] != flags {
        return Err(XzError::Corrupt("stream footer"));
    }
    if r.take(2)? != FOOTER_MAGIC {
        return Err(XzError::Corrupt("stream footer magic"));
    }
    Ok(done)
}

/// A cursor over the input.
struct Reader<'a> {
    d: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .d
            .get(self.pos..self.pos.checked_add(n).ok_or(XzError::Truncated)?)
            .ok_or(XzError::Truncated)?;
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16be(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32le(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A multi-byte integer (xz format 1.2): 7 bits a byte, at most 9
    /// bytes, no trailing zero byte.
    fn vli(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..9 {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(XzError::Corrupt("integer encoding"));
                }
                return Ok(v);
            }
        }
        Err(XzError::Corrupt("integer encoding"))
    }

    /// Zero bytes up to the next multiple of 4 of `len`.
    fn zero_padding(&mut self, len: usize) -> Result<usize> {
        let n = (4 - len % 4) % 4;
        if self.take(n)?.iter().any(|&b| b != 0) {
            return Err(XzError::Corrupt("padding"));
        }
        Ok(n)
    }
}

/// One block: header, LZMA2 data (then BCJ x86 over the output when the
/// header names it), padding, check. Returns the bytes written to `out`
/// and the block's unpadded size (header, compressed data and check: what
/// the index records).
#[allow(clippy::too_many_arguments)]
fn decode_block(
    r: &mut Reader<'_>,
    size_byte: u8,
    check: Check,
    lz: &mut Lzma,
    out: &mut [u8],
    done_before: usize,
    next_report: &mut usize,
    step: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<(usize, u64)> {
    // Block header: its size, flags, optional sizes, filter flags,
    // padding, CRC32.
    let start = r.pos - 1;
    let header_len = (size_byte as usize + 1) * 4;
    let header =
        r.d.get(start..start + header_len)
            .ok_or(XzError::Truncated)?;
    let (body, crc) = header.split_at(header_len - 4);
    if crc32(0, body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(XzError::Corrupt("block header CRC32"));
    }
    let mut h = Reader { d: body, pos: 2 };
    let flags = body[1];
    if flags & 0x3c != 0 {
        return Err(XzError::Unsupported("block flags"));
    }
    let compressed_size = if flags & 0x40 != 0 {
        Some(h.vli()?)
    } else {
        None
    };
    let uncompressed_size = if flags & 0x80 != 0 {
        Some(h.vli()?)
    } else {
        None
    };
    let mut bcj = false;
    let filters = (flags & 3) + 1;
    for i in 0..filters {
        let id = h.vli()?;
        let props = h.vli()?;
        let last = i + 1 == filters;
        match (id, last) {
            (0x04, false) if props == 0 && !bcj => bcj = true,
            (0x04, false) => return Err(XzError::Unsupported("BCJ x86 start offset")),
            (0x21, true) if props == 1 => {
                // The dictionary size: the output buffer is the dictionary
                // here, so only its encoding is checked.
                if h.byte()? > 40 {
                    return Err(XzError::Corrupt("LZMA2 dictionary size"));
                }
            }
            (0x21, _) => return Err(XzError::Corrupt("LZMA2 filter properties")),
            _ => return Err(XzError::Unsupported("filter (only LZMA2 and BCJ x86)")),
        }
    }
    if h.d[h.pos..].iter().any(|&b| b != 0) {
        return Err(XzError::Corrupt("block header padding"));
    }
    r.pos = start + header_len;

    let data_start = r.pos;
    let n = lz.lzma2(r, out, done_before, next_report, step, progress)?;
    let compressed = (r.pos - data_start) as u64;
    if compressed_size.is_some_and(|c| c != compressed)
        || uncompressed_size.is_some_and(|u| u != n as u64)
    {
        return Err(XzError::Corrupt("block sizes"));
    }
    let data = &mut out[..n];
    if bcj {
        bcj_x86(data);
    }
    let unpadded = header_len + compressed as usize + check.len();
    r.zero_padding(header_len + compressed as usize)?;
    let sum = r.take(check.len())?;
    let good = match check {
        Check::None => true,
        Check::Crc32 => crc32(0, data).to_le_bytes()[..] == *sum,
        Check::Crc64 => crc64(data).to_le_bytes()[..] == *sum,
    };
    if !good {
        return Err(XzError::CheckMismatch);
    }
    Ok((n, unpadded as u64))
}

/// Probabilities are 11-bit fractions; each starts at one half.
const PROB_INIT: u16 = 1 << 10;

/// The length coder's probabilities (one set for matches, one for reps).
struct LenProbs {
    choice: u16,
    choice2: u16,
    low: [[u16; 8]; 16],
    mid: [[u16; 8]; 16],
    high: [u16; 256],
}

impl LenProbs {
    fn reset(&mut self) {
        self.choice = PROB_INIT;
        self.choice2 = PROB_INIT;
        self.low.iter_mut().for_each(|p| p.fill(PROB_INIT));
        self.mid.iter_mut().for_each(|p| p.fill(PROB_INIT));
        self.high.fill(PROB_INIT);
    }
}

/// An LZMA decoder's state between chunks (about 28 KiB: on the heap).
struct Lzma {
    is_match: [[u16; 16]; 12],
    is_rep: [u16; 12],
    is_rep0: [u16; 12],
    is_rep1: [u16; 12],
    is_rep2: [u16; 12],
    is_rep0_long: [[u16; 16]; 12],
    dist_slot: [[u16; 64]; 4],
    dist_special: [u16; 114],
    dist_align: [u16; 16],
    match_len: LenProbs,
    rep_len: LenProbs,
    literal: [[u16; 0x300]; 16],
    /// 0-6 after a literal, 7-11 after a match or rep.
    state: usize,
    reps: [u32; 4],
    lc: u32,
    lp_mask: usize,
    pb_mask: usize,
}

impl Lzma {
    fn new() -> Lzma {
        Lzma {
            is_match: [[PROB_INIT; 16]; 12],
            is_rep: [PROB_INIT; 12],
            is_rep0: [PROB_INIT; 12],
            is_rep1: [PROB_INIT; 12],
            is_rep2: [PROB_INIT; 12],
            is_rep0_long: [[PROB_INIT; 16]; 12],
            dist_slot: [[PROB_INIT; 64]; 4],
            dist_special: [PROB_INIT; 114],
            dist_align: [PROB_INIT; 16],
            match_len: LenProbs {
                choice: PROB_INIT,
                choice2: PROB_INIT,
                low: [[PROB_INIT; 8]; 16],
                mid: [[PROB_INIT; 8]; 16],
                high: [PROB_INIT; 256],
            },
            rep_len: LenProbs {
                choice: PROB_INIT,
                choice2: PROB_INIT,
                low: [[PROB_INIT; 8]; 16],
                mid: [[PROB_INIT; 8]; 16],
                high: [PROB_INIT; 256],
            },
            literal: [[PROB_INIT; 0x300]; 16],
            state: 0,
            reps: [0; 4],
            lc: 0,
            lp_mask: 0,
            pb_mask: 0,
        }
    }

    /// State reset: every probability back to one half, no history.
    fn reset(&mut self) {
        self.is_match.iter_mut().for_each(|p| p.fill(PROB_INIT));
        self.is_rep.fill(PROB_INIT);
        self.is_rep0.fill(PROB_INIT);
        self.is_rep1.fill(PROB_INIT);
        self.is_rep2.fill(PROB_INIT);
        self.is_rep0_long.iter_mut().for_each(|p| p.fill(PROB_INIT));
        self.dist_slot.iter_mut().for_each(|p| p.fill(PROB_INIT));
        self.dist_special.fill(PROB_INIT);
        self.dist_align.fill(PROB_INIT);
        self.match_len.reset();
        self.rep_len.reset();
        // Only the literal coders lc and lp select are used.
        let used = 1usize << (self.lc as usize + self.lp_mask.count_ones() as usize);
        self.literal[..used]
            .iter_mut()
            .for_each(|p| p.fill(PROB_INIT));
        self.state = 0;
        self.reps = [0; 4];
    }

    /// lc, lp and pb from an LZMA2 properties byte (then a state reset).
    fn set_props(&mut self, props: u8) -> Result<()> {
        if props > (4 * 5 + 4) * 9 + 8 {
            return Err(XzError::Corrupt("LZMA properties"));
        }
        let (pb, rest) = (props / 45, props % 45);
        let (lp, lc) = (rest / 9, rest % 9);
        if lc + lp > 4 {
            return Err(XzError::Corrupt("LZMA2 lc + lp above 4"));
        }
        self.lc = lc as u32;
        self.lp_mask = (1 << lp) - 1;
        self.pb_mask = (1 << pb) - 1;
        self.reset();
        Ok(())
    }

    /// One block's LZMA2 data into `out` (the block starts with a
    /// dictionary reset). Returns the bytes written.
    fn lzma2(
        &mut self,
        r: &mut Reader<'_>,
        out: &mut [u8],
        done_before: usize,
        next_report: &mut usize,
        step: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<usize> {
        let mut pos = 0usize;
        // Where the dictionary was last reset: matches reach no further
        // back, and LZMA positions count from there.
        let mut dict_start = 0usize;
        let (mut need_dict_reset, mut need_props) = (true, true);
        loop {
            let control = r.byte()?;
            if control == 0 {
                return Ok(pos);
            }
            // The same rules as xz-embedded's dec_lzma2_run.
            if control >= 0xe0 || control == 0x01 {
                need_props = true;
                need_dict_reset = false;
                dict_start = pos;
            } else if need_dict_reset {
                return Err(XzError::Corrupt("LZMA2: no dictionary reset first"));
            }
            if control < 0x80 {
                if control > 0x02 {
                    return Err(XzError::Corrupt("LZMA2 control byte"));
                }
                // An uncompressed chunk.
                let size = r.u16be()? as usize + 1;
                let data = r.take(size)?;
                out.get_mut(pos..pos + size)
                    .ok_or(XzError::OutputFull)?
                    .copy_from_slice(data);
                pos += size;
            } else {
                let size = (((control & 0x1f) as usize) << 16) + r.u16be()? as usize + 1;
                let compressed = r.u16be()? as usize + 1;
                if control >= 0xc0 {
                    need_props = false;
                    self.set_props(r.byte()?)?;
                } else if need_props {
                    return Err(XzError::Corrupt("LZMA2: no properties first"));
                } else if control >= 0xa0 {
                    self.reset();
                }
                let end = pos + size;
                if end > out.len() {
                    return Err(XzError::OutputFull);
                }
                let mut rc = RangeDecoder::new(r.take(compressed)?)?;
                self.chunk(&mut rc, out, dict_start, pos, end)?;
                rc.normalize();
                if !rc.finished() {
                    return Err(XzError::Corrupt("LZMA2 chunk sizes"));
                }
                pos = end;
            }
            if done_before + pos >= *next_report {
                progress(done_before + pos);
                *next_report = done_before + pos + step;
            }
        }
    }

    /// Decode LZMA symbols until `out[pos..end]` is written.
    fn chunk(
        &mut self,
        rc: &mut RangeDecoder<'_>,
        out: &mut [u8],
        dict_start: usize,
        mut pos: usize,
        end: usize,
    ) -> Result<()> {
        let corrupt = |what| Err(XzError::Corrupt(what));
        while pos < end {
            let rel = pos - dict_start;
            let pos_state = rel & self.pb_mask;
            let st = self.state;
            if rc.bit(&mut self.is_match[st][pos_state]) == 0 {
                let prev = if rel > 0 { out[pos - 1] } else { 0 };
                let coder = ((rel & self.lp_mask) << self.lc) + (prev as usize >> (8 - self.lc));
                let probs = &mut self.literal[coder];
                let mut sym = 1usize;
                if st < 7 {
                    while sym < 0x100 {
                        sym = (sym << 1) | rc.bit(&mut probs[sym]);
                    }
                } else {
                    // After a match: the byte at rep0 steers the coder
                    // until the first bit that differs from it.
                    let Some(&m) = out.get(pos.wrapping_sub(self.reps[0] as usize + 1)) else {
                        return corrupt("literal after a bad match");
                    };
                    let mut match_byte = (m as usize) << 1;
                    let mut offset = 0x100;
                    while sym < 0x100 {
                        let match_bit = match_byte & offset;
                        match_byte <<= 1;
                        let bit = rc.bit(&mut probs[offset + match_bit + sym]);
                        sym = (sym << 1) | bit;
                        if bit != 0 {
                            offset = match_bit;
                        } else {
                            offset &= !match_bit;
                        }
                    }
                }
                out[pos] = sym as u8;
                pos += 1;
                self.state = match st {
                    0..=3 => 0,
                    4..=9 => st - 3,
                    _ => st - 6,
                };
                continue;
            }
            let len = if rc.bit(&mut self.is_rep[st]) == 0 {
                // A new match: length, then distance.
                let len = rc.len(&mut self.match_len, pos_state);
                self.state = if st < 7 { 7 } else { 10 };
                self.reps = [0, self.reps[0], self.reps[1], self.reps[2]];
                let slot = rc.bittree(&mut self.dist_slot[(len - 2).min(3)], 64) as u32 - 64;
                self.reps[0] = if slot < 4 {
                    slot
                } else {
                    let limit = (slot >> 1) - 1;
                    let mut dist = 2 + (slot & 1);
                    if slot < 14 {
                        dist <<= limit;
                        // Slot 4's coders start at index 0.
                        let base = (dist - slot) as usize;
                        dist + rc.reverse(&mut self.dist_special[base..], limit)
                    } else {
                        dist = rc.direct(dist, limit - 4) << 4;
                        dist + rc.reverse(&mut self.dist_align[1..], 4)
                    }
                };
                len
            } else if rc.bit(&mut self.is_rep0[st]) == 0 {
                if rc.bit(&mut self.is_rep0_long[st][pos_state]) == 0 {
                    // A short rep: one byte from rep0.
                    self.state = if st < 7 { 9 } else { 11 };
                    1
                } else {
                    self.state = if st < 7 { 8 } else { 11 };
                    rc.len(&mut self.rep_len, pos_state)
                }
            } else {
                let dist;
                if rc.bit(&mut self.is_rep1[st]) == 0 {
                    dist = self.reps[1];
                } else {
                    if rc.bit(&mut self.is_rep2[st]) == 0 {
                        dist = self.reps[2];
                    } else {
                        dist = self.reps[3];
                        self.reps[3] = self.reps[2];
                    }
                    self.reps[2] = self.reps[1];
                }
                self.reps[1] = self.reps[0];
                self.reps[0] = dist;
                self.state = if st < 7 { 8 } else { 11 };
                rc.len(&mut self.rep_len, pos_state)
            };
            let dist = self.reps[0] as usize + 1;
            if dist > rel {
                return corrupt("match distance beyond the dictionary");
            }
            if len > end - pos {
                return corrupt("match past the end of its chunk");
            }
            copy_match(out, pos, dist, len);
            pos += len;
        }
        Ok(())
    }
}

/// `out[pos..pos + len]` = the bytes `dist` back, repeating when they
/// overlap (`dist < len`). Eight bytes a move (under TCG every memory
/// access costs; matches are most of a kernel's bytes): from `dist` back,
/// or for a shorter distance from the first multiple of it that is at
/// least 8 back, which holds the same repeating pattern once its first
/// bytes are written one at a time. A last move may run past the match
/// into bytes not decoded yet; they are written again before anything
/// reads them (the decoder reads only behind its position).
fn copy_match(out: &mut [u8], pos: usize, dist: usize, len: usize) {
    let end = pos + len;
    let back = if dist >= 8 {
        dist
    } else {
        dist * 8usize.div_ceil(dist)
    };
    let mut i = pos;
    while i < end && i < pos + (back - dist) {
        out[i] = out[i - dist];
        i += 1;
    }
    while i < end && i + 8 <= out.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&out[i - back..i - back + 8]);
        out[i..i + 8].copy_from_slice(&w);
        i += 8;
    }
    while i < end {
        out[i] = out[i - dist];
        i += 1;
    }
}

/// The LZMA range decoder over one chunk's compressed bytes. Reading past
/// them yields zeros and is caught when the chunk ends.
struct RangeDecoder<'a> {
    range: u32,
    code: u32,
    input: &'a [u8],
    pos: usize,
    overrun: bool,
}

impl<'a> RangeDecoder<'a> {
    fn new(input: &'a [u8]) -> Result<Self> {
        // The first byte is always 0; the next four start the code.
        if input.len() < 5 {
            return Err(XzError::Corrupt("LZMA2 chunk too short"));
        }
        Ok(RangeDecoder {
            range: u32::MAX,
            code: u32::from_be_bytes([input[1], input[2], input[3], input[4]]),
            input,
            pos: 5,
            overrun: false,
        })
    }

    #[inline(always)]
    fn normalize(&mut self) {
        if self.range < 1 << 24 {
            let b = match self.input.get(self.pos) {
                Some(&b) => b,
                None => {
                    self.overrun = true;
                    0
                }
            };
            self.pos += 1;
            self.range <<= 8;
            self.code = (self.code << 8) | b as u32;
        }
    }

    /// A chunk is over when every byte was used and the code is 0.
    fn finished(&self) -> bool {
        !self.overrun && self.pos == self.input.len() && self.code == 0
    }

    #[inline(always)]
    fn bit(&mut self, prob: &mut u16) -> usize {
        self.normalize();
        let bound = (self.range >> 11) * *prob as u32;
        if self.code < bound {
            self.range = bound;
            *prob += (2048 - *prob) >> 5;
            0
        } else {
            self.range -= bound;
            self.code -= bound;
            *prob -= *prob >> 5;
            1
        }
    }

    /// A symbol of `log2(limit)` bits, most significant first; returns
    /// it plus `limit`.
    #[inline(always)]
    fn bittree(&mut self, probs: &mut [u16], limit: usize) -> usize {
        let mut sym = 1;
        while sym < limit {
            sym = (sym << 1) | self.bit(&mut probs[sym]);
        }
        sym
    }

    /// `bits` bits, least significant first.
    #[inline(always)]
    fn reverse(&mut self, probs: &mut [u16], bits: u32) -> u32 {
        let (mut sym, mut v) = (1usize, 0u32);
        for i in 0..bits {
            // (xz-embedded's tree is indexed from 1.)
            let b = self.bit(&mut probs[sym - 1]);
            sym = (sym << 1) | b;
            v |= (b as u32) << i;
        }
        v
    }

    /// `bits` bits of even probability appended to `v`.
    #[inline(always)]
    fn direct(&mut self, mut v: u32, bits: u32) -> u32 {
        for _ in 0..bits {
            self.normalize();
            self.range >>= 1;
            self.code = self.code.wrapping_sub(self.range);
            let mask = 0u32.wrapping_sub(self.code >> 31);
            self.code = self.code.wrapping_add(self.range & mask);
            v = (v << 1).wrapping_add(mask.wrapping_add(1));
        }
        v
    }

    /// A match length (2-273).
    #[inline(always)]
    fn len(&mut self, l: &mut LenProbs, pos_state: usize) -> usize {
        if self.bit(&mut l.choice) == 0 {
            2 + self.bittree(&mut l.low[pos_state], 8) - 8
        } else if self.bit(&mut l.choice2) == 0 {
            2 + 8 + self.bittree(&mut l.mid[pos_state], 8) - 8
        } else {
            2 + 16 + self.bittree(&mut l.high, 256) - 256
        }
    }
}

/// The BCJ x86 decoder over a whole block (start offset 0), as
/// xz-embedded's `bcj_x86`: relative `call`/`jmp` targets (E8/E9 with an
/// 00 or FF top byte) that the encoder made absolute are made relative
/// again. The last four bytes are never an instruction start.
fn bcj_x86(buf: &mut [u8]) {
    const ALLOWED: [bool; 8] = [true, true, true, false, true, false, false, false];
    const BIT_NUM: [u32; 8] = [0, 1, 2, 2, 3, 3, 3, 3];
    let msbyte = |b: u8| b == 0x00 || b == 0xff;
    if buf.len() <= 4 {
        return;
    }
    let size = buf.len() - 4;
    let mut prev_pos = usize::MAX;
    let mut prev_mask = 0u32;
    let mut i = 0;
    while i < size {
        if buf[i] & 0xfe != 0xe8 {
            // Skip eight bytes at a time while none is E8 or E9: a byte
            // b is one when (b ^ 0xe8) & 0xfe is 0, and (x - 0x01..) & !x
            // & 0x80.. marks a zero byte (its lowest mark is exact).
            i += 1;
            while i + 8 <= size {
                let w = u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or([0xe8; 8]));
                let x = (w ^ 0xe8e8_e8e8_e8e8_e8e8) & 0xfefe_fefe_fefe_fefe;
                let zero = x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080;
                if zero != 0 {
                    i += zero.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            continue;
        }
        let gap = i.wrapping_sub(prev_pos);
        if gap > 3 {
            prev_mask = 0;
        } else {
            prev_mask = (prev_mask << (gap - 1)) & 7;
            if prev_mask != 0 {
                let b = buf[i + 4 - BIT_NUM[prev_mask as usize] as usize];
                if !ALLOWED[prev_mask as usize] || msbyte(b) {
                    prev_pos = i;
                    prev_mask = (prev_mask << 1) | 1;
                    i += 1;
                    continue;
                }
            }
        }
        prev_pos = i;
        if msbyte(buf[i + 4]) {
            let mut src = u32::from_le_bytes([buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]]);
            let mut dest;
            loop {
                dest = src.wrapping_sub((i as u32).wrapping_add(5));
                if prev_mask == 0 {
                    break;
                }
                let j = BIT_NUM[prev_mask as usize] * 8;
                if !msbyte((dest >> (24 - j)) as u8) {
                    break;
                }
                src = dest ^ ((1u32 << (32 - j)) - 1);
            }
            dest &= 0x01ff_ffff;
            dest |= 0u32.wrapping_sub(dest & 0x0100_0000);
            buf[i + 1..i + 5].copy_from_slice(&dest.to_le_bytes());
            i += 5;
        } else {
            prev_mask = (prev_mask << 1) | 1;
            i += 1;
        }
    }
}

/// CRC-32 (IEEE, reflected; xz's and gzip's), continuing from `crc` (0 to
/// start), eight bytes a step ("slicing by 8": one load of eight bytes
/// and eight table lookups instead of eight loads and eight lookups).
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    const T: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut s = 1;
        while s < 8 {
            let mut i = 0;
            while i < 256 {
                let prev = t[s - 1][i];
                t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
                i += 1;
            }
            s += 1;
        }
        t
    };
    let mut c = !crc;
    let mut chunks = data.chunks_exact(8);
    for w in &mut chunks {
        let lo = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        c = T[7][(lo & 0xff) as usize]
            ^ T[6][(lo >> 8 & 0xff) as usize]
            ^ T[5][(lo >> 16 & 0xff) as usize]
            ^ T[4][(lo >> 24) as usize]
            ^ T[3][(hi & 0xff) as usize]
            ^ T[2][(hi >> 8 & 0xff) as usize]
            ^ T[1][(hi >> 16 & 0xff) as usize]
            ^ T[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = T[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// CRC-64 (ECMA-182, reflected, as xz uses), a byte at a time.
fn crc64(data: &[u8]) -> u64 {
    const T: [u64; 256] = {
        let mut t = [0u64; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u64;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xc96c_5795_d787_0f42 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u64, |c, &b| {
        T[((c ^ b as u64) & 0xff) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn copy_match_repeats_as_a_byte_loop_does() {
        for dist in 1..20 {
            for len in 1..40 {
                for room in [0, 3, 8, 16] {
                    let pos = 20;
                    let mut a: Vec<u8> = (0..(pos + len + room) as u8)
                        .map(|b| b.wrapping_mul(7).wrapping_add(1))
                        .collect();
                    let mut b = a.clone();
                    copy_match(&mut a, pos, dist, len);
                    for i in pos..pos + len {
                        b[i] = b[i - dist];
                    }
                    assert_eq!(
                        a[..pos + len],
                        b[..pos + len],
                        "dist {dist} len {len} room {room}"
                    );
                }
            }
        }
    }

    #[test]
    fn crc_known_values() {
        assert_eq!(crc32(0, b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(crc32(0, b"12345"), b"6789"), 0xcbf4_3926);
        assert_eq!(crc64(b"123456789"), 0x995d_c9bb_df19_39fa);
    }

    #[test]
    fn bcj_x86_turns_absolute_calls_back_into_relative_ones() {
        // A call at offset 16 whose target the encoder made absolute
        // (0x100 + 16 + 5): decoded back to relative 0x100.
        let mut buf = [0x90u8; 32];
        buf[16] = 0xe8;
        buf[17..21].copy_from_slice(&(0x100u32 + 21).to_le_bytes());
        bcj_x86(&mut buf);
        assert_eq!(buf[17..21], 0x100u32.to_le_bytes());
        assert!(buf
            .iter()
            .enumerate()
            .all(|(i, &b)| (16..21).contains(&i) || b == 0x90));
    }
}
