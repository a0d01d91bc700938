//! `decode` and `probe`: the host-side reference decode of a clip, through the same
//! decoder and the same conversion ([`crate::frame::convert`]) the device uses, so a
//! frame's CRC here equals the CRC of the bytes the device wrote into guest memory.
#![forbid(unsafe_code)]

use anyhow::{bail, Result};

use crate::annexb::{self, NAL_SPS};
use crate::codec::Decoder;
use crate::frame::{convert, FrameLayout, OutputFormat, Picture};

/// One decoded frame of the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefFrame {
    pub width: usize,
    pub height: usize,
    /// CRC-32 (IEEE) of the converted bytes, planes at their offsets.
    pub crc: u32,
}

/// The bytes of one converted frame, as the device lays them out.
pub fn converted(picture: &Picture<'_>, format: OutputFormat) -> Vec<u8> {
    let layout = FrameLayout::new(format, picture.width, picture.height);
    let mut bytes = Vec::with_capacity(layout.total_size());
    match convert(picture, &layout, &mut bytes) {
        Ok(()) => bytes,
        Err(never) => match never {},
    }
}

/// Decode `clip` NAL unit by NAL unit, then flush: every frame's size and CRC, and the
/// last frame's bytes.
pub fn decode_clip(
    decoder: &mut dyn Decoder,
    clip: &[u8],
    format: OutputFormat,
) -> Result<(Vec<RefFrame>, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut last = Vec::new();
    let mut take = |picture: &Picture<'_>| {
        let bytes = converted(picture, format);
        frames.push(RefFrame {
            width: picture.width,
            height: picture.height,
            crc: crc32fast::hash(&bytes),
        });
        last = bytes;
    };
    let mut from = 0;
    while let Some(nal) = annexb::next_nal(clip, from) {
        decoder.decode(&clip[nal.start..nal.payload.end], &mut take)?;
        from = nal.payload.end;
    }
    decoder.flush(&mut take)?;
    Ok((frames, last))
}

/// The clip's first SPS, which must be (Constrained) Baseline: its size and profile.
pub fn probe(clip: &[u8]) -> Result<annexb::Sps> {
    let Some(payload) = annexb::nal_units(clip)
        .into_iter()
        .find(|n| n.nal_type == NAL_SPS)
        .map(|n| &clip[n.payload])
    else {
        bail!("no H.264 sequence parameter set found: not an Annex-B H.264 stream");
    };
    let sps = annexb::parse_sps(payload)?;
    if sps.profile_idc != 66 {
        bail!(
            "{} profile ({}): the decoder supports Constrained Baseline only",
            sps.profile_name(),
            sps.profile_idc
        );
    }
    Ok(sps)
}
