//! `encode`: a deterministic Constrained Baseline Annex-B test clip from a generated moving
//! pattern, with openh264's encoder.
//!
//! The pattern (I420, [`pattern`]): a luma gradient that slides 4 pixels a frame, white
//! vertical bars 16 pixels wide that move 8 pixels a frame, a frame counter in the top left
//! corner (8 blocks of 16x16, bit i of the frame number white or black), and chroma
//! gradients that drift in opposite directions. Same arguments, same bytes: one encoder
//! thread, no frame skipping, a fixed quantiser (26). A resolution change (`--then`) is a
//! second encoder session concatenated after the first: new SPS, PPS and IDR.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use openh264::encoder::{Encoder, EncoderConfig, FrameRate, Profile, QpRange, RateControlMode};
use openh264::formats::YUVBuffer;
use openh264::OpenH264API;

/// One run of frames at one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

/// Parse `WxH`.
pub fn parse_size(text: &str) -> Result<(u32, u32)> {
    let (w, h) = text
        .split_once('x')
        .with_context(|| format!("size {text:?} is not WxH"))?;
    let w: u32 = w.parse().with_context(|| format!("width in {text:?}"))?;
    let h: u32 = h.parse().with_context(|| format!("height in {text:?}"))?;
    if !(16..=1920).contains(&w)
        || !(16..=1088).contains(&h)
        || !w.is_multiple_of(2)
        || !h.is_multiple_of(2)
    {
        bail!("size {w}x{h}: width 16..=1920 and height 16..=1088, both even");
    }
    Ok((w, h))
}

/// Frame `n` of the pattern at `w`x`h`, I420 (Y, then U, then V, no padding).
pub fn pattern(w: usize, h: usize, n: u32) -> Vec<u8> {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut yuv = vec![0u8; w * h + 2 * cw * ch];
    let shift = n as usize;
    let (y, uv) = yuv.split_at_mut(w * h);
    for row in 0..h {
        for col in 0..w {
            let gradient = ((col + row / 2 + 4 * shift) % 220 + 16) as u8;
            let bar = (col + 8 * shift) % 64 < 16;
            let block = row < 16 && col < 128 && (n >> (col / 16)) & 1 == 1;
            let counter_area = row < 16 && col < 128;
            y[row * w + col] = if counter_area {
                if block {
                    235
                } else {
                    16
                }
            } else if bar {
                235
            } else {
                gradient
            };
        }
    }
    let (u, v) = uv.split_at_mut(cw * ch);
    for row in 0..ch {
        for col in 0..cw {
            u[row * cw + col] = ((col + 2 * shift) % 160 + 48) as u8;
            v[row * cw + col] = ((row + 3 * (200 - shift % 200)) % 160 + 48) as u8;
        }
    }
    yuv
}

fn encode_segment(segment: Segment, fps: f32, first_frame: u32, out: &mut Vec<u8>) -> Result<()> {
    let config = EncoderConfig::new()
        .profile(Profile::Baseline)
        .num_threads(1)
        .skip_frames(false)
        .max_frame_rate(FrameRate::from_hz(fps))
        // A fixed quantiser instead of rate control: rate control wants frame skipping,
        // and a skipped frame would make the clip's frame count differ from --frames.
        .rate_control_mode(RateControlMode::Off)
        .qp(QpRange::new(26, 26))
        .scene_change_detect(false)
        .background_detection(false)
        .adaptive_quantization(false);
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
        .context("creating the openh264 encoder")?;
    let (w, h) = (segment.width as usize, segment.height as usize);
    for i in 0..segment.frames {
        let yuv = YUVBuffer::from_vec(pattern(w, h, first_frame + i), w, h);
        let bitstream = encoder
            .encode(&yuv)
            .with_context(|| format!("encoding frame {i} at {w}x{h}"))?;
        bitstream.write_vec(out);
    }
    Ok(())
}

/// The whole clip: each segment in turn, frame numbers continuing across them.
pub fn encode_clip(segments: &[Segment], fps: f32) -> Result<Vec<u8>> {
    if !(1.0..=240.0).contains(&fps) {
        bail!("--fps {fps}: 1..=240");
    }
    let mut out = Vec::new();
    let mut first = 0;
    for segment in segments {
        encode_segment(*segment, fps, first, &mut out)?;
        first += segment.frames;
    }
    Ok(out)
}
