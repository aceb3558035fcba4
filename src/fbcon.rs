//! The framebuffer console: hypervisor and guest console lines drawn on
//! the linear framebuffer the loader describes (multiboot2 tag 8), so a
//! machine without a serial port (most laptops) shows the run too.
//!
//! The font is Noto Sans Mono at 16 px (crate `noto-sans-mono-bitmap`,
//! one intensity byte per pixel, basic Latin), drawn in a colour per kind
//! of line: hypervisor lines cyan, guest lines light grey, on black.
//!
//! There is no scrolling: reading a framebuffer back is very slow on real
//! hardware (it is uncached), and a shadow copy would need the heap before
//! there is one. Instead the text wraps to the top and the row under the
//! newest line is kept blank, so the newest line is the one above the gap.
//!
//! Video memory is written a glyph's pixel row at a time, and a line is
//! cleared only as far as it was written. What it costs under TCG (a BIOS
//! GRUB ISO, guest-hello, `loglvl=debug`, best of six): 55 console lines in
//! 75 ms from the banner to the exit line, 61 ms with the console
//! compiled out.
//!
//! [`TextScreen`] is pure logic over a byte slice (tested on the host);
//! [`init`] and [`write`] put it on the real framebuffer.

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

use crate::boot_info::Framebuffer;

const WEIGHT: FontWeight = FontWeight::Regular;
const SIZE: RasterHeight = RasterHeight::Size16;
/// One character cell.
pub const CELL_W: usize = get_raster_width(WEIGHT, SIZE);
pub const CELL_H: usize = SIZE.val();
/// Text rows kept track of (a 16 px font on an 8K screen has 270).
const MAX_ROWS: usize = 512;
const _: () = assert!(CELL_W <= 32);

/// A colour, 8 bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// Hypervisor lines (`(RV) ...`).
pub const HYPERVISOR: Rgb = Rgb(0x00, 0xd8, 0xd8);
/// Guest console lines (`(dN) ...`).
pub const GUEST: Rgb = Rgb(0xc8, 0xc8, 0xc8);

/// Where an escape sequence is (a guest's terminal output may carry
/// them: they are skipped, not drawn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside a CSI (`ESC [`), until its final byte.
    Csi,
}

/// A text grid on a framebuffer of a given geometry.
pub struct TextScreen {
    fb: Framebuffer,
    bytes_pp: usize,
    pub cols: usize,
    pub rows: usize,
    col: usize,
    row: usize,
    esc: Esc,
    /// The pixel value of each intensity in `shades.0`'s colour, so a
    /// glyph costs a table look-up per pixel.
    shades: (Rgb, [u32; 256]),
    /// Cells written in each row since it was last cleared.
    used: [u16; MAX_ROWS],
}

impl TextScreen {
    /// A screen for `fb`, or None when not even one cell fits.
    pub fn new(fb: Framebuffer) -> Option<TextScreen> {
        let cols = fb.width as usize / CELL_W;
        let rows = (fb.height as usize / CELL_H).min(MAX_ROWS);
        (cols > 0 && rows > 1).then_some(TextScreen {
            fb,
            bytes_pp: fb.bpp.div_ceil(8) as usize,
            cols,
            rows,
            col: 0,
            row: 0,
            esc: Esc::None,
            shades: (Rgb(0, 0, 0), [0; 256]),
            used: [0; MAX_ROWS],
        })
    }

    /// The pixel value of `c` at intensity `i` (0-255).
    fn pixel(&self, c: Rgb, i: u8) -> u32 {
        let ch = |v: u8, (pos, size): (u8, u8)| -> u32 {
            let v = (v as u32 * i as u32 / 255) >> (8 - size as u32);
            v << pos
        };
        ch(c.0, self.fb.red) | ch(c.1, self.fb.green) | ch(c.2, self.fb.blue)
    }

    /// Paint text row `row` black, as far as it was written.
    fn clear_row(&mut self, px: &mut [u8], row: usize) {
        let pitch = self.fb.pitch as usize;
        let width = self.used[row] as usize * CELL_W * self.bytes_pp;
        for y in 0..CELL_H {
            let start = (row * CELL_H + y) * pitch;
            if let Some(line) = px.get_mut(start..start + width) {
                line.fill(0);
            }
        }
        self.used[row] = 0;
    }

    /// Paint the whole screen black and start at the top left.
    pub fn clear(&mut self, px: &mut [u8]) {
        let n = (self.fb.size() as usize).min(px.len());
        px[..n].fill(0);
        self.used = [0; MAX_ROWS];
        self.col = 0;
        self.row = 0;
    }

    fn newline(&mut self, px: &mut [u8]) {
        self.col = 0;
        self.row = (self.row + 1) % self.rows;
        self.clear_row(px, self.row);
        // Keep the row after the newest one blank: where the text wraps.
        self.clear_row(px, (self.row + 1) % self.rows);
    }

    fn glyph(&mut self, px: &mut [u8], c: char, color: Rgb) {
        if self.col == self.cols {
            self.newline(px);
        }
        let r = get_raster(c, WEIGHT, SIZE).or_else(|| get_raster('?', WEIGHT, SIZE));
        let (x0, y0) = (self.col * CELL_W, self.row * CELL_H);
        if self.shades.0 != color || self.shades.1[255] == 0 {
            let mut t = [0u32; 256];
            for (i, v) in t.iter_mut().enumerate() {
                *v = self.pixel(color, i as u8);
            }
            self.shades = (color, t);
        }
        if let Some(r) = r {
            let (bpp, pitch) = (self.bytes_pp, self.fb.pitch as usize);
            let mut buf = [0u8; 32 * 4];
            for (y, line) in r.rows().enumerate().take(CELL_H) {
                for (x, &i) in line.iter().enumerate().take(CELL_W) {
                    let v = self.shades.1[i as usize].to_le_bytes();
                    buf[x * bpp..(x + 1) * bpp].copy_from_slice(&v[..bpp]);
                }
                // One pixel row of the glyph in one copy.
                let at = (y0 + y) * pitch + x0 * bpp;
                if let Some(dst) = px.get_mut(at..at + CELL_W * bpp) {
                    dst.copy_from_slice(&buf[..CELL_W * bpp]);
                }
            }
        }
        self.col += 1;
        let used = &mut self.used[self.row];
        *used = (*used).max(self.col as u16);
    }

    /// Draw `s` in `color` from the cursor on: `\n` ends the line, `\r`
    /// goes back to its start, backspace one cell back, tab to the next
    /// multiple of 8; escape sequences and other control characters are
    /// skipped.
    pub fn write(&mut self, px: &mut [u8], s: &str, color: Rgb) {
        for c in s.chars() {
            match (self.esc, c) {
                (Esc::Start, '[') => self.esc = Esc::Csi,
                (Esc::Start, _) => self.esc = Esc::None,
                (Esc::Csi, '@'..='~') => self.esc = Esc::None,
                (Esc::Csi, _) => {}
                (Esc::None, '\x1b') => self.esc = Esc::Start,
                (Esc::None, '\n') => self.newline(px),
                (Esc::None, '\r') => self.col = 0,
                (Esc::None, '\x08') => self.col = self.col.saturating_sub(1),
                (Esc::None, '\t') => {
                    for _ in 0..8 - self.col % 8 {
                        self.glyph(px, ' ', color);
                    }
                }
                (Esc::None, c) if c.is_control() => {}
                (Esc::None, c) => self.glyph(px, c, color),
            }
        }
    }
}

#[cfg(target_os = "none")]
mod screen {
    use super::*;
    use spin::Mutex;

    struct Console {
        text: TextScreen,
        /// The framebuffer's bytes through the direct map.
        px: &'static mut [u8],
    }

    static FB: Mutex<Option<Console>> = Mutex::new(None);

    /// Take the framebuffer as a console: clear it and draw from now on.
    /// Only a framebuffer inside the boot direct map (the first 4 GiB) is
    /// taken; otherwise the reason is returned and nothing is drawn.
    pub fn init(fb: Framebuffer) -> Result<(usize, usize), &'static str> {
        let mut text = TextScreen::new(fb).ok_or("it is too small for one line of text")?;
        let px = crate::mm::boot::framebuffer(&fb)?;
        text.clear(px);
        let size = (text.cols, text.rows);
        *FB.lock() = Some(Console { text, px });
        Ok(size)
    }

    /// Draw `s` on the framebuffer console, if there is one.
    pub fn write(s: &str, color: Rgb) {
        if let Some(c) = FB.lock().as_mut() {
            c.text.write(c.px, s, color);
        }
    }

    /// For the fatal path, as `console::print_emergency`.
    pub fn take_over() {
        crate::arch::x86_64::exit::break_lock(&FB);
    }
}

#[cfg(target_os = "none")]
pub use screen::{init, take_over, write};

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(w: u32, h: u32, bpp: u8) -> Framebuffer {
        Framebuffer {
            addr: 0x8000_0000,
            pitch: w * bpp.div_ceil(8) as u32,
            width: w,
            height: h,
            bpp,
            red: (16, 8),
            green: (8, 8),
            blue: (0, 8),
        }
    }

    /// Pixels of row `row` that are not black.
    fn lit(px: &[u8], f: &Framebuffer, row: usize) -> usize {
        let pitch = f.pitch as usize;
        px[row * CELL_H * pitch..(row + 1) * CELL_H * pitch]
            .chunks(4)
            .filter(|p| p.iter().any(|&b| b != 0))
            .count()
    }

    #[test]
    fn draws_text_in_its_colour_and_wraps_to_the_top() {
        let f = fb(CELL_W as u32 * 10, CELL_H as u32 * 3, 32);
        let mut px = vec![0x55u8; f.size() as usize];
        let mut t = TextScreen::new(f).unwrap();
        t.clear(&mut px);
        assert!(px.iter().all(|&b| b == 0));
        t.write(&mut px, "(RV) hi", HYPERVISOR);
        assert!(lit(&px, &f, 0) > 20);
        // Every lit pixel is a shade of the hypervisor's colour: no red.
        assert!(px.chunks(4).all(|p| p[2] == 0));
        assert!(px.chunks(4).any(|p| p[1] > 0x80 && p[0] > 0x80));
        // Spaces and escapes draw nothing; a long line wraps to the next row.
        t.write(&mut px, "\n\x1b[1;31m   \x1b[0m", GUEST);
        assert_eq!(lit(&px, &f, 1), 0);
        t.write(&mut px, "\nabcdefghijkl", GUEST);
        // Rows: 0 "(RV) hi", 1 blank, 2 "abcdefghij", then "kl" wraps to
        // row 0, which is cleared first; row 1 is kept blank.
        assert!(lit(&px, &f, 2) > 0);
        assert!(lit(&px, &f, 0) > 0);
        assert_eq!(lit(&px, &f, 1), 0);
        assert!(px.chunks(4).any(|p| p[2] != 0), "grey guest text");
    }

    #[test]
    fn pixel_formats() {
        let mut f = fb(CELL_W as u32 * 4, CELL_H as u32 * 2, 16);
        f.red = (11, 5);
        f.green = (5, 6);
        f.blue = (0, 5);
        let t = TextScreen::new(f).unwrap();
        assert_eq!(t.pixel(Rgb(0xff, 0xff, 0xff), 0xff), 0xffff);
        assert_eq!(t.pixel(Rgb(0xff, 0, 0), 0xff), 0xf800);
        assert_eq!(t.pixel(Rgb(0xff, 0xff, 0xff), 0), 0);
        let f24 = fb(CELL_W as u32 * 4, CELL_H as u32 * 2, 24);
        let mut px = vec![0u8; f24.size() as usize];
        let mut t = TextScreen::new(f24).unwrap();
        t.write(&mut px, "#", Rgb(0xff, 0, 0));
        assert!(px.chunks(3).any(|p| p[2] > 0x80 && p[0] == 0 && p[1] == 0));
        // Too small for text: no screen.
        assert!(TextScreen::new(fb(4, 4, 32)).is_none());
    }
}
