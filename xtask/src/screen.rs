//! Screens on the host side: decoded screendumps, the expected test pattern, comparison.
//!
//! Theory of operation
//! -------------------
//! QEMU's `screendump` writes a PNG; [`Image::decode_png`] turns it (8-bit grey, RGB or
//! RGBA, any of the `png` crate's transformations applied) into plain RGB bytes, so tests
//! compare pixels and never file bytes. [`expected_test_pattern`] is the firmware's test
//! pattern written a second time, from the same rule (src/display/pattern.rs): eight bars,
//! white, yellow, cyan, green, magenta, red, blue, black; column `x` of a `width`-pixel
//! screen is bar `x * 8 / width`, so the bars' widths differ by at most one and cover the
//! screen. xtask cannot depend on the firmware crate, so each side tests its rule against
//! the same spec figures (1024 wide: bars of 128; 37 wide: yellow starts at column 5).
//!
//! [`diff`] reports a size mismatch or the differing pixels (how many, the first, their
//! bounding box); [`save_mismatch`] writes the actual and expected images under
//! `target/screens/` for a person to look at.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::paths::host_target_dir;

/// An RGB image, 3 bytes a pixel, rows packed.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{})", self.width, self.height)
    }
}

impl Image {
    pub fn new(width: u32, height: u32, fill: [u8; 3]) -> Image {
        Image {
            width,
            height,
            rgb: fill.repeat(width as usize * height as usize),
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]])
    }

    pub fn set_pixel(&mut self, x: u32, y: u32, colour: [u8; 3]) {
        if x < self.width && y < self.height {
            let at = (y as usize * self.width as usize + x as usize) * 3;
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    pub fn decode_png(bytes: &[u8]) -> Result<Image> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        // Palettes to RGB, 16-bit to 8, low bit depths to 8: only 8-bit samples remain.
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().context("not a PNG")?;
        let mut buffer = vec![0; reader.output_buffer_size().context("PNG too large")?];
        let frame = reader.next_frame(&mut buffer).context("corrupt PNG data")?;
        let data = &buffer[..frame.buffer_size()];
        let channels = match frame.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => bail!("PNG colour type {other:?} after normalising"),
        };
        if frame.bit_depth != png::BitDepth::Eight {
            bail!("PNG bit depth {:?} after normalising", frame.bit_depth);
        }
        let (width, height) = (frame.width, frame.height);
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for row in data.chunks_exact(frame.line_size).take(height as usize) {
            for px in row[..width as usize * channels].chunks_exact(channels) {
                match channels {
                    1 | 2 => rgb.extend_from_slice(&[px[0], px[0], px[0]]),
                    _ => rgb.extend_from_slice(&px[..3]),
                }
            }
        }
        Ok(Image { width, height, rgb })
    }

    pub fn encode_png(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("PNG header")?;
        writer.write_image_data(&self.rgb).context("PNG data")?;
        writer.finish().context("PNG end")?;
        Ok(bytes)
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, self.encode_png()?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The test pattern's bars, left to right.
pub const BAR_COLOURS: [[u8; 3]; 8] = [
    [0xFF, 0xFF, 0xFF],
    [0xFF, 0xFF, 0x00],
    [0x00, 0xFF, 0xFF],
    [0x00, 0xFF, 0x00],
    [0xFF, 0x00, 0xFF],
    [0xFF, 0x00, 0x00],
    [0x00, 0x00, 0xFF],
    [0x00, 0x00, 0x00],
];

/// The bar column `x` shows on a `width`-pixel screen.
pub fn bar_at(x: u32, width: u32) -> usize {
    (u64::from(x) * 8 / u64::from(width.max(1))) as usize
}

/// What the firmware's `gpu pattern` must put on a `width` x `height` screen.
pub fn expected_test_pattern(width: u32, height: u32) -> Image {
    let mut image = Image::new(width, height, [0; 3]);
    for y in 0..height {
        for x in 0..width {
            image.set_pixel(x, y, BAR_COLOURS[bar_at(x, width).min(7)]);
        }
    }
    image
}

/// How two screens differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Size {
        actual: (u32, u32),
        expected: (u32, u32),
    },
    Pixels {
        count: u64,
        first: (u32, u32),
        actual: [u8; 3],
        expected: [u8; 3],
        /// Inclusive corners of the differing pixels.
        top_left: (u32, u32),
        bottom_right: (u32, u32),
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Size { actual, expected } => write!(
                f,
                "screen is {}x{}, expected {}x{}",
                actual.0, actual.1, expected.0, expected.1
            ),
            Mismatch::Pixels {
                count,
                first,
                actual,
                expected,
                top_left,
                bottom_right,
            } => write!(
                f,
                "{count} pixel(s) differ, within ({},{})..=({},{}); first at ({},{}): \
                 #{:02x}{:02x}{:02x}, expected #{:02x}{:02x}{:02x}",
                top_left.0,
                top_left.1,
                bottom_right.0,
                bottom_right.1,
                first.0,
                first.1,
                actual[0],
                actual[1],
                actual[2],
                expected[0],
                expected[1],
                expected[2]
            ),
        }
    }
}

/// The differences between `actual` and `expected` in rows `rows` (all rows: `0..u32::MAX`);
/// `None` when they agree there.
pub fn diff_rows(actual: &Image, expected: &Image, rows: std::ops::Range<u32>) -> Option<Mismatch> {
    if (actual.width, actual.height) != (expected.width, expected.height) {
        return Some(Mismatch::Size {
            actual: (actual.width, actual.height),
            expected: (expected.width, expected.height),
        });
    }
    let mut found: Option<Mismatch> = None;
    for y in rows.start..rows.end.min(actual.height) {
        for x in 0..actual.width {
            let (a, e) = (actual.pixel(x, y)?, expected.pixel(x, y)?);
            if a == e {
                continue;
            }
            match &mut found {
                None => {
                    found = Some(Mismatch::Pixels {
                        count: 1,
                        first: (x, y),
                        actual: a,
                        expected: e,
                        top_left: (x, y),
                        bottom_right: (x, y),
                    })
                }
                Some(Mismatch::Pixels {
                    count,
                    top_left,
                    bottom_right,
                    ..
                }) => {
                    *count += 1;
                    *top_left = (top_left.0.min(x), top_left.1.min(y));
                    *bottom_right = (bottom_right.0.max(x), bottom_right.1.max(y));
                }
                Some(Mismatch::Size { .. }) => {}
            }
        }
    }
    found
}

/// Every difference between `actual` and `expected`.
pub fn diff(actual: &Image, expected: &Image) -> Option<Mismatch> {
    diff_rows(actual, expected, 0..u32::MAX)
}

/// Where a test's screens are saved: `target/screens/<name>.png` (and `.expected.png`).
pub fn screens_dir() -> PathBuf {
    host_target_dir().join("screens")
}

/// Save `actual` (and `expected`, when given) for test `name`; returns the paths written.
pub fn save_mismatch(name: &str, actual: &Image, expected: Option<&Image>) -> Result<Vec<PathBuf>> {
    let dir = screens_dir();
    let mut written = vec![dir.join(format!("{name}.png"))];
    actual.save_png(&written[0])?;
    if let Some(expected) = expected {
        written.push(dir.join(format!("{name}.expected.png")));
        expected.save_png(&written[1])?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pattern_rule_matches_the_spec_figures() {
        // The same figures src/display/pattern.rs tests on the firmware side.
        let bars = |width: u32| -> Vec<u32> {
            (0..8)
                .map(|b| (0..width).filter(|&x| bar_at(x, width) == b).count() as u32)
                .collect()
        };
        assert_eq!(bars(1024), vec![128; 8]);
        assert_eq!(bars(1023).iter().sum::<u32>(), 1023);
        let odd = bars(1023);
        assert!(odd.iter().max().unwrap() - odd.iter().min().unwrap() <= 1);
        let image = expected_test_pattern(37, 2);
        assert_eq!(image.pixel(4, 0), Some([0xFF; 3]));
        assert_eq!(
            image.pixel(5, 0),
            Some([0xFF, 0xFF, 0x00]),
            "yellow from column 5"
        );
        assert_eq!(image.pixel(36, 1), Some([0, 0, 0]));
        let colours: Vec<[u8; 3]> = (0..8)
            .map(|b| image.pixel(b * 37 / 8 + 1, 0).unwrap())
            .collect();
        assert_eq!(colours, BAR_COLOURS.to_vec());
    }

    #[test]
    fn png_round_trip_and_rgba_decoding() {
        let image = expected_test_pattern(40, 3);
        let decoded = Image::decode_png(&image.encode_png().unwrap()).unwrap();
        assert_eq!(decoded, image);
        // An RGBA PNG decodes to its RGB.
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, 2, 1);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().unwrap();
            writer
                .write_image_data(&[1, 2, 3, 255, 4, 5, 6, 0])
                .unwrap();
        }
        let rgba = Image::decode_png(&bytes).unwrap();
        assert_eq!(rgba.rgb, vec![1, 2, 3, 4, 5, 6]);
        assert!(Image::decode_png(b"GIF89a").is_err());
    }

    #[test]
    fn diff_reports_size_and_pixels() {
        let expected = expected_test_pattern(16, 4);
        assert_eq!(diff(&expected, &expected), None);
        let mut actual = expected.clone();
        actual.set_pixel(3, 1, [9, 9, 9]);
        actual.set_pixel(10, 2, [0, 0, 0]);
        let mismatch = diff(&actual, &expected).unwrap();
        assert_eq!(
            mismatch,
            Mismatch::Pixels {
                count: 2,
                first: (3, 1),
                actual: [9, 9, 9],
                expected: [0xFF, 0xFF, 0x00],
                top_left: (3, 1),
                bottom_right: (10, 2),
            }
        );
        assert!(
            mismatch.to_string().contains("2 pixel(s) differ"),
            "{mismatch}"
        );
        assert_eq!(diff_rows(&actual, &expected, 3..4), None);
        assert!(diff_rows(&actual, &expected, 2..3).is_some());
        let small = expected_test_pattern(8, 4);
        assert_eq!(
            diff(&small, &expected).unwrap().to_string(),
            "screen is 8x4, expected 16x4"
        );
    }
}
