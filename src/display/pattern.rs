//! The test pattern: eight vertical colour bars across the whole screen.
//!
//! Theory of operation
//! -------------------
//! Left to right: white, yellow, cyan, green, magenta, red, blue, black (the order of
//! the classic SMPTE/EBU bars: each is the previous one with one channel dropped), every
//! channel 0x00 or 0xFF, each bar full height. When the width is not a multiple of 8 the
//! bars' widths differ by at most one pixel and together cover every column: column `x`
//! belongs to bar `x * 8 / width` (integer division), so bar `i` spans
//! `[ceil(i * width / 8), ceil((i + 1) * width / 8))`. A test-pattern user expects the
//! screen edge to edge, with no unexplained strip; black remainder columns would read as
//! a wider black bar. The host's checker (`xtask/src/screen.rs`) writes the same rule.
#![forbid(unsafe_code)]

use core::ops::Range;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Point, Size};
use embedded_graphics::primitives::Rectangle;

/// The bars, left to right.
pub const BAR_COLOURS: [Rgb888; 8] = [
    Rgb888::new(0xFF, 0xFF, 0xFF),
    Rgb888::new(0xFF, 0xFF, 0x00),
    Rgb888::new(0x00, 0xFF, 0xFF),
    Rgb888::new(0x00, 0xFF, 0x00),
    Rgb888::new(0xFF, 0x00, 0xFF),
    Rgb888::new(0xFF, 0x00, 0x00),
    Rgb888::new(0x00, 0x00, 0xFF),
    Rgb888::new(0x00, 0x00, 0x00),
];

/// Which bar column `x` of a `width`-pixel screen shows (`x < width`).
pub fn bar_at(x: u32, width: u32) -> usize {
    (u64::from(x) * BAR_COLOURS.len() as u64 / u64::from(width.max(1))) as usize
}

/// The columns bar `bar` covers on a `width`-pixel screen (empty when `width < 8` leaves
/// it none).
pub fn bar_columns(bar: usize, width: u32) -> Range<u32> {
    let n = BAR_COLOURS.len() as u64;
    // The first x with x * n / width >= bar is ceil(bar * width / n).
    let first = |bar: u64| (bar * u64::from(width)).div_ceil(n) as u32;
    let bar = (bar as u64).min(n);
    first(bar)..first((bar + 1).min(n))
}

/// Draw the pattern over the whole of `target`.
pub fn draw_test_pattern<D>(target: &mut D) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let area = target.bounding_box();
    for (bar, &colour) in BAR_COLOURS.iter().enumerate() {
        let columns = bar_columns(bar, area.size.width);
        if columns.is_empty() {
            continue;
        }
        let top_left = area.top_left + Point::new(columns.start as i32, 0);
        let size = Size::new(columns.end - columns.start, area.size.height);
        target.fill_solid(&Rectangle::new(top_left, size), colour)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::framebuffer::FrameBuffer;

    #[test]
    fn columns_and_bar_at_agree_and_cover_every_column() {
        for width in 1..=100u32 {
            let mut next = 0;
            for bar in 0..8 {
                let columns = bar_columns(bar, width);
                assert_eq!(columns.start, next, "width {width} bar {bar}");
                for x in columns.clone() {
                    assert_eq!(bar_at(x, width), bar, "width {width} x {x}");
                }
                next = columns.end;
            }
            assert_eq!(next, width, "width {width}: every column is in a bar");
            if width >= 8 {
                let widths: Vec<u32> = (0..8).map(|b| bar_columns(b, width).len() as u32).collect();
                let (lo, hi) = (widths.iter().min().unwrap(), widths.iter().max().unwrap());
                assert!(hi - lo <= 1, "width {width}: {widths:?}");
            }
        }
        assert_eq!(bar_columns(0, 1024), 0..128);
        assert_eq!(bar_columns(7, 1024), 896..1024);
        // 1023 columns: one bar is a pixel narrower.
        assert_eq!(
            (0..8).map(|b| bar_columns(b, 1023).len()).sum::<usize>(),
            1023
        );
    }

    #[test]
    fn pattern_fills_the_screen_with_the_bars() {
        let (w, h) = (37u32, 3u32);
        let stride = w as usize * 4 + 8;
        let mut bytes = vec![0x55u8; stride * h as usize];
        let mut fb = FrameBuffer::new(&mut bytes, w, h, stride).unwrap();
        draw_test_pattern(&mut fb).unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(fb.pixel(x, y), Some(BAR_COLOURS[bar_at(x, w)]), "({x},{y})");
            }
        }
        assert_eq!(fb.pixel(0, 0), Some(Rgb888::new(0xFF, 0xFF, 0xFF)));
        assert_eq!(fb.pixel(w - 1, h - 1), Some(Rgb888::new(0, 0, 0)));
        // Bytes B,G,R,A: yellow's first pixel at x = ceil(37 / 8) = 5.
        assert_eq!(&bytes[5 * 4..6 * 4], &[0x00, 0xFF, 0xFF, 0xFF]);
    }
}
