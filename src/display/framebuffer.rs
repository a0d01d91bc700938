//! A linear framebuffer of B8G8R8A8 pixels as an `embedded-graphics` draw target.
//!
//! Theory of operation
//! -------------------
//! The scanout format the virtio-gpu driver uses is `VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM`
//! (format 1, virtio spec 5.7.6.8): each pixel is four bytes in memory, blue, green, red,
//! alpha. A row is `width * 4` bytes of pixels inside `stride` bytes (the driver may pad
//! rows); the buffer holds `height` rows, the last one needing only `width * 4` bytes.
//! [`FrameBuffer::new`] checks those sizes once, so drawing never indexes out of bounds
//! and never panics: every pixel outside the screen is clipped.
//!
//! `embedded-graphics` draws through [`DrawTarget`]: `draw_iter` writes pixel by pixel,
//! and the `fill_solid` fast path (rectangles, which are most of what the display draws:
//! bars, cells, text backgrounds) clips the rectangle once and then fills whole row spans
//! with the four-byte pattern. Alpha is always written as 0xFF (opaque).
#![forbid(unsafe_code)]

use core::convert::Infallible;
use core::fmt;

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{Dimensions, DrawTarget, OriginDimensions, Pixel, Point, Size};
use embedded_graphics::primitives::Rectangle;

/// Bytes per B8G8R8A8 pixel.
pub const BYTES_PER_PIXEL: usize = 4;

/// Why a buffer cannot be a framebuffer of the given shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameBufferError {
    /// Width or height is zero.
    Empty { width: u32, height: u32 },
    /// A row of `width` pixels does not fit in `stride` bytes.
    StrideTooSmall { width: u32, stride: usize },
    /// The buffer is shorter than `height` rows of `stride` bytes need.
    BufferTooSmall { needed: usize, len: usize },
}

impl fmt::Display for FrameBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameBufferError::Empty { width, height } => {
                write!(f, "framebuffer {width}x{height} has no pixels")
            }
            FrameBufferError::StrideTooSmall { width, stride } => write!(
                f,
                "stride {stride} bytes is less than a row of {width} pixels ({} bytes)",
                u64::from(width) * BYTES_PER_PIXEL as u64
            ),
            FrameBufferError::BufferTooSmall { needed, len } => {
                write!(f, "framebuffer needs {needed} bytes, the buffer has {len}")
            }
        }
    }
}

/// The four bytes of `colour` as they sit in memory: B, G, R, A (opaque).
pub fn bgra(colour: Rgb888) -> [u8; BYTES_PER_PIXEL] {
    [colour.b(), colour.g(), colour.r(), 0xFF]
}

/// `width` x `height` B8G8R8A8 pixels in `bytes`, rows `stride` bytes apart.
pub struct FrameBuffer<'a> {
    bytes: &'a mut [u8],
    width: u32,
    height: u32,
    stride: usize,
}

impl<'a> FrameBuffer<'a> {
    pub fn new(
        bytes: &'a mut [u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<FrameBuffer<'a>, FrameBufferError> {
        if width == 0 || height == 0 {
            return Err(FrameBufferError::Empty { width, height });
        }
        let row = (width as usize)
            .checked_mul(BYTES_PER_PIXEL)
            .filter(|&row| row <= stride)
            .ok_or(FrameBufferError::StrideTooSmall { width, stride })?;
        let needed = (height as usize - 1)
            .checked_mul(stride)
            .and_then(|rows| rows.checked_add(row))
            .ok_or(FrameBufferError::BufferTooSmall {
                needed: usize::MAX,
                len: bytes.len(),
            })?;
        if bytes.len() < needed {
            return Err(FrameBufferError::BufferTooSmall {
                needed,
                len: bytes.len(),
            });
        }
        Ok(FrameBuffer {
            bytes,
            width,
            height,
            stride,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The whole buffer, as the device reads it.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    fn offset(&self, x: u32, y: u32) -> usize {
        y as usize * self.stride + x as usize * BYTES_PER_PIXEL
    }

    /// Where pixel (`x`, `y`) starts in the buffer: the `offset` of a virtio-gpu
    /// `TRANSFER_TO_HOST_2D` whose rectangle has that top-left corner (spec 5.7.6.8).
    /// `None` outside the screen.
    pub fn byte_offset(&self, x: u32, y: u32) -> Option<usize> {
        (x < self.width && y < self.height).then(|| self.offset(x, y))
    }

    /// The colour at (`x`, `y`), `None` outside the screen (the alpha byte is ignored).
    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgb888> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = self.offset(x, y);
        let p = self.bytes.get(at..at + BYTES_PER_PIXEL)?;
        Some(Rgb888::new(p[2], p[1], p[0]))
    }

    /// The part of `area` on the screen, as x and y spans; `None` when nothing is.
    fn clip(&self, area: &Rectangle) -> Option<(core::ops::Range<u32>, core::ops::Range<u32>)> {
        let clipped = area.intersection(&self.bounding_box());
        let bottom_right = clipped.bottom_right()?;
        // Inside the screen's bounding box, so both corners are non-negative.
        let x0 = u32::try_from(clipped.top_left.x).ok()?;
        let y0 = u32::try_from(clipped.top_left.y).ok()?;
        let x1 = u32::try_from(bottom_right.x).ok()? + 1;
        let y1 = u32::try_from(bottom_right.y).ok()? + 1;
        Some((x0..x1, y0..y1))
    }
}

impl OriginDimensions for FrameBuffer<'_> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for FrameBuffer<'_> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb888>>,
    {
        for Pixel(Point { x, y }, colour) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else {
                continue;
            };
            if x < self.width && y < self.height {
                let at = self.offset(x, y);
                self.bytes[at..at + BYTES_PER_PIXEL].copy_from_slice(&bgra(colour));
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, colour: Rgb888) -> Result<(), Infallible> {
        let Some((xs, ys)) = self.clip(area) else {
            return Ok(());
        };
        let pattern = bgra(colour);
        for y in ys {
            let start = self.offset(xs.start, y);
            let end = self.offset(xs.end, y);
            for pixel in self.bytes[start..end].chunks_exact_mut(BYTES_PER_PIXEL) {
                pixel.copy_from_slice(&pattern);
            }
        }
        Ok(())
    }

    fn clear(&mut self, colour: Rgb888) -> Result<(), Infallible> {
        self.fill_solid(&self.bounding_box(), colour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{Line, PrimitiveStyle};

    #[test]
    fn shapes_are_checked() {
        let mut bytes = vec![0u8; 100];
        assert_eq!(
            FrameBuffer::new(&mut bytes, 0, 1, 4).err(),
            Some(FrameBufferError::Empty {
                width: 0,
                height: 1
            })
        );
        assert_eq!(
            FrameBuffer::new(&mut bytes, 5, 1, 16).err(),
            Some(FrameBufferError::StrideTooSmall {
                width: 5,
                stride: 16
            })
        );
        // 3 rows of stride 40, the last only 4 * 4 bytes: 96 bytes.
        assert!(FrameBuffer::new(&mut bytes[..96], 4, 3, 40).is_ok());
        assert_eq!(
            FrameBuffer::new(&mut bytes[..95], 4, 3, 40).err(),
            Some(FrameBufferError::BufferTooSmall {
                needed: 96,
                len: 95
            })
        );
        assert!(FrameBuffer::new(&mut bytes, u32::MAX, u32::MAX, usize::MAX).is_err());
        let message = FrameBufferError::StrideTooSmall {
            width: 5,
            stride: 16,
        }
        .to_string();
        assert!(message.contains("20 bytes"), "{message}");
    }

    #[test]
    fn pixels_are_bgra_and_padding_is_untouched() {
        // 3x2 pixels, stride 16 (4 bytes of padding a row, marked 0xEE).
        let mut bytes = vec![0xEEu8; 16 + 12];
        let mut fb = FrameBuffer::new(&mut bytes, 3, 2, 16).unwrap();
        fb.clear(Rgb888::new(1, 2, 3)).unwrap();
        Pixel(Point::new(2, 1), Rgb888::new(0x10, 0x20, 0x30))
            .draw(&mut fb)
            .unwrap();
        // Off-screen pixels are clipped, not written anywhere.
        Pixel(Point::new(3, 0), Rgb888::WHITE)
            .draw(&mut fb)
            .unwrap();
        Pixel(Point::new(-1, 0), Rgb888::WHITE)
            .draw(&mut fb)
            .unwrap();
        assert_eq!(fb.pixel(2, 1), Some(Rgb888::new(0x10, 0x20, 0x30)));
        assert_eq!(fb.pixel(3, 0), None);
        assert_eq!(fb.byte_offset(2, 1), Some(24));
        assert_eq!(fb.byte_offset(3, 1), None);
        assert_eq!(fb.byte_offset(0, 2), None);
        assert_eq!(&bytes[0..4], &[3, 2, 1, 0xFF]);
        assert_eq!(&bytes[12..16], &[0xEE; 4], "row padding");
        assert_eq!(&bytes[24..28], &[0x30, 0x20, 0x10, 0xFF]);
    }

    #[test]
    fn fill_solid_clips_and_matches_pixel_by_pixel_drawing() {
        let (w, h, stride) = (7u32, 5u32, 32usize);
        let mut fast = vec![0u8; stride * h as usize];
        let mut slow = fast.clone();
        let area = Rectangle::new(Point::new(-2, 3), Size::new(6, 9));
        let colour = Rgb888::new(9, 8, 7);
        FrameBuffer::new(&mut fast, w, h, stride)
            .unwrap()
            .fill_solid(&area, colour)
            .unwrap();
        FrameBuffer::new(&mut slow, w, h, stride)
            .unwrap()
            .draw_iter(area.points().map(|p| Pixel(p, colour)))
            .unwrap();
        assert_eq!(fast, slow);
        let fb = FrameBuffer::new(&mut fast, w, h, stride).unwrap();
        assert_eq!(fb.pixel(3, 4), Some(colour));
        assert_eq!(fb.pixel(4, 4), Some(Rgb888::BLACK));
        assert_eq!(fb.pixel(3, 2), Some(Rgb888::BLACK));
        // Entirely off screen: nothing at all.
        let mut fb = FrameBuffer::new(&mut slow, w, h, stride).unwrap();
        let before = fb.bytes().to_vec();
        fb.fill_solid(&Rectangle::new(Point::new(7, 0), Size::new(3, 3)), colour)
            .unwrap();
        Line::new(Point::new(-5, -5), Point::new(-1, -1))
            .into_styled(PrimitiveStyle::with_stroke(colour, 1))
            .draw(&mut fb)
            .unwrap();
        assert_eq!(fb.bytes(), &before[..]);
    }
}
