//! The memory map's legend: what each colour means, as swatches with labels.
//!
//! Theory of operation
//! -------------------
//! The legend is a list of [`Entry`]s (a swatch: a fill colour, optionally an outline
//! colour, and a label) laid out left to right in lines of [`LINE_HEIGHT`] pixels,
//! wrapping before an entry that would cross the right edge. [`Legend::height`] measures
//! without drawing, so the memory map can reserve the bottom of the screen for it before
//! it lays out the grid; [`Legend::draw`] then draws the same layout. Text is
//! `embedded-graphics`' 6x10 mono font.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;

use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Point, Primitive, Size};
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use embedded_graphics::Drawable;

/// One line of text (the 6x10 font plus two pixels).
pub const LINE_HEIGHT: u32 = 12;
/// Width of one character of the font.
pub const CHAR_WIDTH: u32 = 6;
const SWATCH: u32 = 9;
/// Swatch, then a space, then the label.
const LABEL_OFFSET: u32 = SWATCH + 4;
/// Space after an entry's label.
const ENTRY_GAP: u32 = 12;

/// The colour of legend and header text.
pub const TEXT_COLOUR: Rgb888 = Rgb888::new(0xE0, 0xE0, 0xE0);

/// A swatch and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fill: Rgb888,
    /// Drawn as a one-pixel frame around the swatch (area outlines).
    pub outline: Option<Rgb888>,
    pub label: String,
}

impl Entry {
    fn width(&self) -> u32 {
        LABEL_OFFSET + self.label.chars().count() as u32 * CHAR_WIDTH
    }
}

/// Entries laid out in lines inside a given width.
pub struct Legend<'a> {
    entries: &'a [Entry],
}

impl<'a> Legend<'a> {
    pub fn new(entries: &'a [Entry]) -> Legend<'a> {
        Legend { entries }
    }

    /// The top-left corner of every entry, relative to the legend's own top-left, for a
    /// legend `width` pixels wide.
    fn positions(&self, width: u32) -> Vec<Point> {
        let mut positions = Vec::with_capacity(self.entries.len());
        let (mut x, mut y) = (0u32, 0u32);
        for entry in self.entries {
            if x > 0 && x + entry.width() > width {
                x = 0;
                y += LINE_HEIGHT;
            }
            positions.push(Point::new(x as i32, y as i32));
            x += entry.width() + ENTRY_GAP;
        }
        positions
    }

    /// The height the legend takes in `width` pixels.
    pub fn height(&self, width: u32) -> u32 {
        self.positions(width)
            .last()
            .map_or(0, |last| last.y as u32 + LINE_HEIGHT)
    }

    /// Draw it with its top-left corner at `origin`, `width` pixels wide.
    pub fn draw<D>(&self, target: &mut D, origin: Point, width: u32) -> Result<(), D::Error>
    where
        D: DrawTarget<Color = Rgb888>,
    {
        let text = MonoTextStyle::new(&FONT_6X10, TEXT_COLOUR);
        for (entry, at) in self.entries.iter().zip(self.positions(width)) {
            let corner = origin + at + Point::new(0, 1);
            let swatch = Rectangle::new(corner, Size::new(SWATCH, SWATCH));
            target.fill_solid(&swatch, entry.fill)?;
            if let Some(outline) = entry.outline {
                swatch
                    .into_styled(PrimitiveStyle::with_stroke(outline, 1))
                    .draw(target)?;
            }
            Text::with_baseline(
                &entry.label,
                origin + at + Point::new(LABEL_OFFSET as i32, 0),
                text,
                Baseline::Top,
            )
            .draw(target)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::framebuffer::FrameBuffer;
    use alloc::string::ToString;
    use alloc::vec;
    use embedded_graphics::pixelcolor::RgbColor;

    fn entry(label: &str, fill: Rgb888) -> Entry {
        Entry {
            fill,
            outline: None,
            label: label.to_string(),
        }
    }

    #[test]
    fn entries_wrap_to_the_width() {
        // Each entry: 13 + 5 * 6 = 43 pixels, then 12 of gap.
        let entries = vec![entry("aaaaa", Rgb888::RED); 3];
        let legend = Legend::new(&entries);
        assert_eq!(legend.height(200), LINE_HEIGHT);
        assert_eq!(legend.height(100), 2 * LINE_HEIGHT);
        assert_eq!(legend.height(10), 3 * LINE_HEIGHT, "one a line, never none");
        assert_eq!(Legend::new(&[]).height(100), 0);
    }

    #[test]
    fn swatches_and_outlines_are_drawn_where_laid_out() {
        let entries = vec![
            entry("free", Rgb888::GREEN),
            Entry {
                fill: Rgb888::BLACK,
                outline: Some(Rgb888::YELLOW),
                label: "area".to_string(),
            },
        ];
        let (w, h) = (120u32, 20u32);
        let mut bytes = vec![0u8; (w * h * 4) as usize];
        let mut fb = FrameBuffer::new(&mut bytes, w, h, w as usize * 4).unwrap();
        Legend::new(&entries)
            .draw(&mut fb, Point::new(2, 3), w - 2)
            .unwrap();
        // First swatch at (2, 4), 9x9.
        assert_eq!(fb.pixel(2 + 4, 4 + 4), Some(Rgb888::GREEN));
        // Second entry starts after 13 + 4 * 6 + 12 = 49 pixels: its frame and inside.
        let x = 2 + 49;
        assert_eq!(fb.pixel(x, 4), Some(Rgb888::YELLOW));
        assert_eq!(fb.pixel(x + 4, 4 + 4), Some(Rgb888::BLACK));
        // Some label text was drawn to the right of the first swatch.
        let text = (0..4 * 6)
            .flat_map(|dx| (3..13).map(move |y| (2 + 13 + dx, y)))
            .filter(|&(x, y)| fb.pixel(x, y) == Some(TEXT_COLOUR))
            .count();
        assert!(text > 10, "{text} text pixels");
    }
}
