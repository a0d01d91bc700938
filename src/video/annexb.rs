//! H.264 Annex-B byte streams: NAL units and access units (ITU-T H.264 B.1, 7.4.1.2.3).
//!
//! # Theory of operation
//!
//! An Annex-B stream is NAL units each preceded by a start code (`00 00 01`, often with a
//! leading zero byte). [`nal_units`] finds them in one pass; a NAL's payload ends where the
//! next start code begins (trailing zero bytes belong to the next start code, as B.2 says).
//!
//! The decoder is fed one access unit (one coded picture and the parameter sets and SEI
//! before it) per bitstream buffer, so each buffer yields at most one frame and carries
//! that frame's timestamp. [`access_units`] applies 7.4.1.2.3: after a picture's slices,
//! an AUD, SPS, PPS, SEI or NAL type 14-18 starts the next unit, and so does a slice whose
//! `first_mb_in_slice` is 0 (its first `ue(v)` bit is 1). Nothing here allocates per NAL
//! or trusts a length: every range is found by scanning the bytes themselves.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

/// NAL unit types (Table 7-1) this module looks at.
pub mod nal_type {
    pub const SLICE: u8 = 1;
    pub const IDR_SLICE: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
}

/// One NAL unit: where its start code begins, and its payload (header byte first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nal {
    pub start: usize,
    pub payload: Range<usize>,
    pub nal_type: u8,
}

/// Position of the next `00 00 01` at or after `from`.
fn next_start_code(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    // `i < len - 2`, written so that no `from` can overflow.
    while i < bytes.len().saturating_sub(2) {
        if bytes[i + 2] > 1 {
            i += 3;
        } else if bytes[i] == 0 && bytes[i + 1] == 0 && bytes[i + 2] == 1 {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// The first NAL unit whose start code lies at or after `from`: the incremental form of
/// [`nal_units`] (a decoder fed NAL by NAL goes on from the previous one's `payload.end`).
/// Bytes before the first start code are not a NAL, and neither is an empty payload.
pub fn next_nal(bytes: &[u8], from: usize) -> Option<Nal> {
    let mut code = next_start_code(bytes, from)?;
    loop {
        let payload_start = code + 3;
        let next = next_start_code(bytes, payload_start);
        let mut end = next.unwrap_or(bytes.len());
        // Zero bytes after a NAL are the next start code's leading zero or trailing
        // padding (B.1.1): never NAL data, which ends in its rbsp stop bit.
        while end > payload_start && bytes[end - 1] == 0 {
            end -= 1;
        }
        if payload_start < end {
            // A 4-byte start code's leading zero belongs to this NAL's start.
            let start = if code > from && bytes[code - 1] == 0 {
                code - 1
            } else {
                code
            };
            return Some(Nal {
                start,
                payload: payload_start..end,
                nal_type: bytes[payload_start] & 0x1f,
            });
        }
        code = next?;
    }
}

/// Every NAL unit of `bytes`, in order. Bytes before the first start code are not a NAL.
pub fn nal_units(bytes: &[u8]) -> Vec<Nal> {
    let mut nals = Vec::new();
    let mut from = 0;
    while let Some(nal) = next_nal(bytes, from) {
        from = nal.payload.end;
        nals.push(nal);
    }
    nals
}

fn is_vcl(nal_type: u8) -> bool {
    matches!(nal_type, nal_type::SLICE | nal_type::IDR_SLICE)
}

/// Whether `nal` opens a new access unit once the current one holds a picture.
fn starts_access_unit(bytes: &[u8], nal: &Nal) -> bool {
    match nal.nal_type {
        nal_type::SEI | nal_type::SPS | nal_type::PPS | nal_type::AUD | 14..=18 => true,
        t if is_vcl(t) => {
            // first_mb_in_slice is the slice header's first ue(v): 0 is the single bit 1.
            bytes
                .get(nal.payload.start + 1)
                .is_some_and(|b| b & 0x80 != 0)
        }
        _ => false,
    }
}

/// The byte ranges of every access unit, start codes included, in decoding order. A
/// trailing unit without a picture (parameter sets alone) is kept: the decoder needs it.
pub fn access_units(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut current: Option<(usize, bool)> = None; // (start, holds a picture)
    let mut last_end = 0;
    for nal in nal_units(bytes) {
        match current {
            Some((start, true)) if starts_access_unit(bytes, &nal) => {
                units.push(start..nal.start);
                current = Some((nal.start, is_vcl(nal.nal_type)));
            }
            Some((start, pic)) => current = Some((start, pic || is_vcl(nal.nal_type))),
            None => current = Some((nal.start, is_vcl(nal.nal_type))),
        }
        last_end = nal.payload.end;
    }
    if let Some((start, _)) = current {
        units.push(start..last_end);
    }
    units
}

/// The size of the largest access unit: what one bitstream buffer must hold.
pub fn largest(units: &[Range<usize>]) -> usize {
    units.iter().map(|u| u.len()).max().unwrap_or(0)
}
