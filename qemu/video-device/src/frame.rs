//! Decoded pictures and the one conversion from the decoder's I420 planes into the bytes
//! of an output buffer (ARGB8888 or NV12), shared by the device and the `decode`
//! reference so their frame CRCs agree by construction.
//!
//! # Theory of operation
//!
//! [`FrameLayout`] is the geometry GET_PARAMS(output) reports and the device writes, for
//! the single-buffer planes layout (every plane in one resource, at its plane offset):
//! - ARGB8888 (bytes B, G, R, A in memory, virtio-gpu's B8G8R8A8): one plane, stride
//!   `width * 4`, size `stride * height`.
//! - NV12: plane 0 is Y, stride `width`, size `width * height`, at offset 0; plane 1 is
//!   interleaved U,V, stride `2 * ceil(width / 2)`, `ceil(height / 2)` rows, at offset
//!   `width * height`.
//!
//! [`convert`] walks the picture row by row into one scratch row and hands each finished
//! row to a [`FrameSink`] (guest memory in the device, a `Vec` in the reference), so the
//! picture is converted exactly once and no frame-sized scratch buffer exists.
//!
//! YUV -> RGB is BT.601 limited range, integer, chroma sampled nearest (the chroma sample
//! of pixel (x, y) is (x/2, y/2)); with `C = Y - 16`, `D = U - 128`, `E = V - 128`:
//! ```text
//! R = clamp((298 C + 409 E + 128) >> 8)
//! G = clamp((298 C - 100 D - 208 E + 128) >> 8)
//! B = clamp((298 C + 516 D + 128) >> 8)      A = 255
//! ```
//! (`>>` is an arithmetic shift; clamp to 0..=255.)
#![forbid(unsafe_code)]

use monolith::virtio::video::wire::{Format, PlaneFormat, MAX_PLANES};

/// A decoded I420 picture, borrowed from the decoder or from an [`OwnedPicture`].
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
}

/// Chroma dimension of a luma dimension (4:2:0).
pub fn chroma(n: usize) -> usize {
    n.div_ceil(2)
}

impl Picture<'_> {
    /// A copy with compact planes, for pictures that must wait for an output buffer.
    pub fn to_owned(&self) -> OwnedPicture {
        let (cw, ch) = (chroma(self.width), chroma(self.height));
        let mut y = Vec::with_capacity(self.width * self.height);
        let mut u = Vec::with_capacity(cw * ch);
        let mut v = Vec::with_capacity(cw * ch);
        for row in 0..self.height {
            y.extend_from_slice(row_of(self.y, row, self.y_stride, self.width));
        }
        for row in 0..ch {
            u.extend_from_slice(row_of(self.u, row, self.uv_stride, cw));
            v.extend_from_slice(row_of(self.v, row, self.uv_stride, cw));
        }
        OwnedPicture {
            width: self.width,
            height: self.height,
            y,
            u,
            v,
        }
    }
}

/// One row of a plane, or as much of it as the plane holds (a short plane from the
/// decoder yields short rows, which the conversion pads with black, never a panic).
fn row_of(plane: &[u8], row: usize, stride: usize, width: usize) -> &[u8] {
    let start = row.saturating_mul(stride).min(plane.len());
    let end = start.saturating_add(width).min(plane.len());
    &plane[start..end]
}

/// A picture held by the device until an output buffer of its size is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPicture {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl OwnedPicture {
    pub fn as_picture(&self) -> Picture<'_> {
        Picture {
            width: self.width,
            height: self.height,
            y: &self.y,
            u: &self.u,
            v: &self.v,
            y_stride: self.width,
            uv_stride: chroma(self.width),
        }
    }
}

/// The raw formats the decoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Argb8888,
    Nv12,
}

impl OutputFormat {
    pub fn from_wire(format: u32) -> Option<OutputFormat> {
        match Format::from_u32(format)? {
            Format::Argb8888 => Some(OutputFormat::Argb8888),
            Format::Nv12 => Some(OutputFormat::Nv12),
            _ => None,
        }
    }

    pub fn wire(self) -> Format {
        match self {
            OutputFormat::Argb8888 => Format::Argb8888,
            OutputFormat::Nv12 => Format::Nv12,
        }
    }
}

/// One plane of an output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plane {
    pub offset: usize,
    pub stride: usize,
    pub size: usize,
}

/// Where every byte of one output frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    pub format: OutputFormat,
    pub width: usize,
    pub height: usize,
    pub num_planes: usize,
    pub planes: [Plane; 2],
}

impl FrameLayout {
    pub fn new(format: OutputFormat, width: usize, height: usize) -> FrameLayout {
        match format {
            OutputFormat::Argb8888 => {
                let stride = width * 4;
                FrameLayout {
                    format,
                    width,
                    height,
                    num_planes: 1,
                    planes: [
                        Plane {
                            offset: 0,
                            stride,
                            size: stride * height,
                        },
                        Plane::default(),
                    ],
                }
            }
            OutputFormat::Nv12 => {
                let y = Plane {
                    offset: 0,
                    stride: width,
                    size: width * height,
                };
                let uv_stride = 2 * chroma(width);
                let uv = Plane {
                    offset: y.size,
                    stride: uv_stride,
                    size: uv_stride * chroma(height),
                };
                FrameLayout {
                    format,
                    width,
                    height,
                    num_planes: 2,
                    planes: [y, uv],
                }
            }
        }
    }

    /// Bytes from the start of the buffer to the end of its last plane.
    pub fn total_size(&self) -> usize {
        self.planes[..self.num_planes]
            .iter()
            .map(|p| p.offset + p.size)
            .max()
            .unwrap_or(0)
    }

    /// The planes as GET_PARAMS reports them (`plane_formats[]`).
    pub fn plane_formats(&self) -> [PlaneFormat; MAX_PLANES] {
        let mut out = [PlaneFormat::default(); MAX_PLANES];
        for (slot, plane) in out.iter_mut().zip(&self.planes[..self.num_planes]) {
            *slot = PlaneFormat {
                plane_size: u32::try_from(plane.size).unwrap_or(u32::MAX),
                stride: u32::try_from(plane.stride).unwrap_or(u32::MAX),
            };
        }
        out
    }
}

/// Where converted rows go.
pub trait FrameSink {
    type Error;
    /// Store `bytes` at `offset` from the start of the output buffer.
    fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// A frame converted into memory of its own (the reference decode, and tests).
impl FrameSink for Vec<u8> {
    type Error = std::convert::Infallible;
    fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Self::Error> {
        let end = offset + bytes.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[offset..end].copy_from_slice(bytes);
        Ok(())
    }
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// BT.601 limited range, the module header's formula: `[B, G, R, A]`.
pub fn yuv_to_bgra(y: u8, u: u8, v: u8) -> [u8; 4] {
    let c = i32::from(y) - 16;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let r = clamp((298 * c + 409 * e + 128) >> 8);
    let g = clamp((298 * c - 100 * d - 208 * e + 128) >> 8);
    let b = clamp((298 * c + 516 * d + 128) >> 8);
    [b, g, r, 255]
}

/// Convert `picture` into `layout` (same width and height) through `sink`, row by row.
pub fn convert<S: FrameSink>(
    picture: &Picture<'_>,
    layout: &FrameLayout,
    sink: &mut S,
) -> Result<(), S::Error> {
    let (w, h) = (layout.width, layout.height);
    let cw = chroma(w);
    let sample = |plane: &[u8], stride: usize, x: usize, y: usize| -> u8 {
        plane
            .get(y.saturating_mul(stride).saturating_add(x))
            .copied()
            .unwrap_or(0)
    };
    match layout.format {
        OutputFormat::Argb8888 => {
            let plane = layout.planes[0];
            let mut row = vec![0u8; plane.stride];
            for y in 0..h {
                for (x, px) in row.chunks_exact_mut(4).take(w).enumerate() {
                    let luma = sample(picture.y, picture.y_stride, x, y);
                    let u = sample(picture.u, picture.uv_stride, x / 2, y / 2);
                    let v = sample(picture.v, picture.uv_stride, x / 2, y / 2);
                    px.copy_from_slice(&yuv_to_bgra(luma, u, v));
                }
                sink.write_at(plane.offset + y * plane.stride, &row)?;
            }
        }
        OutputFormat::Nv12 => {
            let [yp, uvp] = layout.planes;
            let mut row = vec![0u8; yp.stride.max(uvp.stride)];
            for y in 0..h {
                let src = row_of(picture.y, y, picture.y_stride, w);
                row[..w].fill(16);
                row[..src.len()].copy_from_slice(src);
                sink.write_at(yp.offset + y * yp.stride, &row[..yp.stride])?;
            }
            for y in 0..chroma(h) {
                for x in 0..cw {
                    row[2 * x] = sample(picture.u, picture.uv_stride, x, y);
                    row[2 * x + 1] = sample(picture.v, picture.uv_stride, x, y);
                }
                sink.write_at(uvp.offset + y * uvp.stride, &row[..uvp.stride])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_documented_geometry() {
        let argb = FrameLayout::new(OutputFormat::Argb8888, 320, 240);
        assert_eq!(argb.num_planes, 1);
        assert_eq!(
            argb.planes[0],
            Plane {
                offset: 0,
                stride: 1280,
                size: 1280 * 240
            }
        );
        assert_eq!(argb.total_size(), 320 * 240 * 4);
        let nv12 = FrameLayout::new(OutputFormat::Nv12, 320, 240);
        assert_eq!(
            nv12.planes[0],
            Plane {
                offset: 0,
                stride: 320,
                size: 76800
            }
        );
        assert_eq!(
            nv12.planes[1],
            Plane {
                offset: 76800,
                stride: 320,
                size: 38400
            }
        );
        assert_eq!(nv12.total_size(), 320 * 240 * 3 / 2);
        let formats = nv12.plane_formats();
        assert_eq!((formats[1].plane_size, formats[1].stride), (38400, 320));
        assert_eq!(formats[2], PlaneFormat::default());
    }

    #[test]
    fn bt601_limited_range_endpoints() {
        assert_eq!(yuv_to_bgra(16, 128, 128), [0, 0, 0, 255]);
        assert_eq!(yuv_to_bgra(235, 128, 128), [255, 255, 255, 255]);
        // Pure red in BT.601 limited range is about (81, 90, 240).
        let [b, g, r, _] = yuv_to_bgra(81, 90, 240);
        assert!(r >= 250 && g <= 5 && b <= 5, "{r} {g} {b}");
    }

    fn picture(w: usize, h: usize, stride: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let y = (0..stride * h).map(|i| (i % 251) as u8).collect();
        let u = (0..stride * h / 2).map(|i| (i % 7 * 30) as u8).collect();
        let v = (0..stride * h / 2).map(|i| (i % 5 * 40) as u8).collect();
        let _ = w;
        (y, u, v)
    }

    #[test]
    fn nv12_interleaves_chroma_and_drops_decoder_padding() {
        let (w, h, stride) = (8, 4, 16);
        let (y, u, v) = picture(w, h, stride);
        let pic = Picture {
            width: w,
            height: h,
            y: &y,
            u: &u,
            v: &v,
            y_stride: stride,
            uv_stride: stride / 2,
        };
        let layout = FrameLayout::new(OutputFormat::Nv12, w, h);
        let mut out = Vec::new();
        convert(&pic, &layout, &mut out).unwrap();
        assert_eq!(out.len(), 48);
        assert_eq!(
            &out[8..16],
            &y[16..24],
            "row 1 of Y comes from the decoder's row 1"
        );
        assert_eq!(out[32], u[0]);
        assert_eq!(out[33], v[0]);
        assert_eq!(
            out[40], u[8],
            "chroma row 1 starts at the decoder's chroma stride"
        );
    }

    #[test]
    fn argb_and_the_owned_copy_convert_alike() {
        let (w, h, stride) = (6, 4, 32);
        let (y, u, v) = picture(w, h, stride);
        let pic = Picture {
            width: w,
            height: h,
            y: &y,
            u: &u,
            v: &v,
            y_stride: stride,
            uv_stride: stride / 2,
        };
        let layout = FrameLayout::new(OutputFormat::Argb8888, w, h);
        let mut direct = Vec::new();
        convert(&pic, &layout, &mut direct).unwrap();
        let owned = pic.to_owned();
        let mut held = Vec::new();
        convert(&owned.as_picture(), &layout, &mut held).unwrap();
        assert_eq!(direct, held);
        // Byte 28 is row 1, pixel 1: its chroma sample is (0, 0).
        assert_eq!(
            &direct[4 * 7..4 * 8],
            &yuv_to_bgra(y[stride + 1], u[0], v[0])
        );
    }

    #[test]
    fn a_short_plane_is_padded_not_a_panic() {
        let pic = Picture {
            width: 4,
            height: 4,
            y: &[200; 5],
            u: &[],
            v: &[],
            y_stride: 4,
            uv_stride: 2,
        };
        let mut out = Vec::new();
        convert(&pic, &FrameLayout::new(OutputFormat::Nv12, 4, 4), &mut out).unwrap();
        assert_eq!(out.len(), 24);
        assert_eq!(out[4], 200);
        assert_eq!(out[5], 16);
    }
}
