//! Annex-B H.264 byte streams: NAL unit boundaries come from the firmware's splitter
//! ([`monolith::video::annexb`], re-exported here as [`next_nal`] and [`nal_units`]), so
//! the guest and the device cut a stream the same way; this file adds just enough of the
//! sequence parameter set (H.264 7.3.2.1.1) to name the profile and the picture size.
//!
//! The device feeds its decoder one NAL unit at a time ([`next_nal`]); `probe` uses
//! [`parse_sps`]. Every read is bounds-checked: a truncated or hostile SPS is an error.
#![forbid(unsafe_code)]

use std::fmt;

pub use monolith::video::annexb::{nal_units, next_nal, Nal};

/// `nal_unit_type` of a sequence parameter set.
pub const NAL_SPS: u8 = 7;

/// What `probe` reports of an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl Sps {
    /// constraint_set1_flag: the stream obeys Constrained Baseline (A.2.2).
    pub fn constrained(&self) -> bool {
        self.constraint_flags & 0x40 != 0
    }

    pub fn profile_name(&self) -> &'static str {
        match self.profile_idc {
            66 if self.constrained() => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4 Predictive",
            44 => "CAVLC 4:4:4 Intra",
            _ => "unknown",
        }
    }
}

/// Why an SPS did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsError(pub &'static str);

impl fmt::Display for SpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed SPS: {}", self.0)
    }
}

impl std::error::Error for SpsError {}

/// Exp-Golomb bit reader over an RBSP (emulation prevention bytes removed).
struct Bits {
    rbsp: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn bit(&mut self) -> Result<u32, SpsError> {
        let byte = self.rbsp.get(self.pos / 8).ok_or(SpsError("truncated"))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        (0..n).try_fold(0, |acc, _| Ok((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError("Exp-Golomb code too long"));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Result<i64, SpsError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Drop `00 00 03` emulation prevention bytes (7.4.1).
fn rbsp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Parse an SPS NAL unit payload (header byte included).
pub fn parse_sps(payload: &[u8]) -> Result<Sps, SpsError> {
    let mut bits = Bits {
        rbsp: rbsp(payload),
        pos: 8,
    };
    let profile_idc = bits.bits(8)? as u8;
    let constraint_flags = bits.bits(8)? as u8;
    let level_idc = bits.bits(8)? as u8;
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            bits.bit()?; // separate_colour_plane_flag
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.bit()?; // qpprime_y_zero_transform_bypass_flag
        if bits.bit()? == 1 {
            // seq_scaling_matrix_present_flag: skip the lists (7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + bits.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.bit()?;
            bits.se()?;
            bits.se()?;
            let cycle = bits.ue()?;
            if cycle > 255 {
                return Err(SpsError("num_ref_frames_in_pic_order_cnt_cycle > 255"));
            }
            for _ in 0..cycle {
                bits.se()?;
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(bits.ue()?) + 1;
    let height_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = u64::from(bits.bit()?);
    if frame_mbs_only == 0 {
        bits.bit()?; // mb_adaptive_frame_field_flag
    }
    bits.bit()?; // direct_8x8_inference_flag
    let mut width = width_mbs * 16;
    let mut height = height_units * 16 * (2 - frame_mbs_only);
    if bits.bit()? == 1 {
        let (left, right, top, bottom) = (bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?);
        // Crop units (7.4.2.1.1): 4:2:0 halves both, 4:2:2 only the width.
        let (unit_x, unit_y) = match chroma_format_idc {
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        let crop_x = (u64::from(left) + u64::from(right)) * unit_x;
        let crop_y = (u64::from(top) + u64::from(bottom)) * unit_y;
        if crop_x >= width || crop_y >= height {
            return Err(SpsError("cropping larger than the picture"));
        }
        width -= crop_x;
        height -= crop_y;
    }
    let width = u32::try_from(width).map_err(|_| SpsError("width too large"))?;
    let height = u32::try_from(height).map_err(|_| SpsError("height too large"))?;
    Ok(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let data = [
            9, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65,
        ];
        let nals: Vec<&[u8]> = nal_units(&data)
            .into_iter()
            .map(|n| &data[n.payload])
            .collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65][..]]);
        let span = |n: Nal| (n.start, n.payload.end);
        assert_eq!(next_nal(&data, 0).map(span), Some((1, 8)));
        assert_eq!(next_nal(&data, 8).map(span), Some((8, 13)));
        assert_eq!(next_nal(&data, 13).map(span), Some((13, 18)));
        assert_eq!(next_nal(&data, 18), None);
        assert_eq!(next_nal(&[1, 2, 3], 0), None);
        assert_eq!(next_nal(&data, 100), None);
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_truncated_sps_is_an_error() {
        assert!(parse_sps(&[0x67, 66, 0xC0]).is_err());
        assert!(parse_sps(&[0x67, 66, 0xC0, 30, 0]).is_err());
    }
}
