//! The clip image QEMU's loader leaves in the `monolith,video-clip` reserved region:
//! `MNLCLIP1`, the bitstream's length (u64, little-endian), the Annex-B bitstream
//! (written by `xtask/src/clip.rs`).
#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

pub const MAGIC: &[u8; 8] = b"MNLCLIP1";
pub const HEADER_BYTES: usize = 16;
/// `compatible` of the reserved-memory node that holds the clip.
pub const COMPATIBLE: &str = "monolith,video-clip";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipError {
    /// No reserved region with [`COMPATIBLE`] in the device tree.
    NoRegion,
    /// The region does not start with [`MAGIC`]: nothing was loaded there.
    NoClip,
    /// The header's length runs past the region.
    TooLong {
        len: u64,
        room: u64,
    },
    Empty,
}

impl fmt::Display for ClipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClipError::NoRegion => write!(
                f,
                "no `{COMPATIBLE}` region in the device tree (boot a board with the decoder)"
            ),
            ClipError::NoClip => write!(
                f,
                "the clip region holds no clip (it does not start with MNLCLIP1)"
            ),
            ClipError::TooLong { len, room } => write!(
                f,
                "the clip header says {len} bytes, the region has room for {room}"
            ),
            ClipError::Empty => write!(f, "the clip is empty"),
        }
    }
}

impl core::error::Error for ClipError {}

/// Where the bitstream lies inside `region` (the whole region's bytes).
pub fn bitstream(region: &[u8]) -> Result<Range<usize>, ClipError> {
    if region.len() < HEADER_BYTES || &region[..8] != MAGIC {
        return Err(ClipError::NoClip);
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&region[8..16]);
    let len = u64::from_le_bytes(len_bytes);
    let room = (region.len() - HEADER_BYTES) as u64;
    if len > room {
        return Err(ClipError::TooLong { len, room });
    }
    if len == 0 {
        return Err(ClipError::Empty);
    }
    Ok(HEADER_BYTES..HEADER_BYTES + len as usize)
}
