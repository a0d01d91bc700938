//! Why a device tree, or a property the firmware depends on, was refused.
#![forbid(unsafe_code)]

use alloc::borrow::ToOwned;
use alloc::string::String;
use core::fmt;

use super::tree::format::{FDT_MAGIC, HEADER_LEN};

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtError {
    /// Fewer bytes than an FDT header.
    TooShort {
        available: usize,
    },
    /// The first word is not 0xd00dfeed.
    BadMagic(u32),
    /// `totalsize` is smaller than the header itself.
    TotalSizeTooSmall(u32),
    /// `totalsize` claims more bytes than were handed to us.
    Truncated {
        header: u32,
        available: usize,
    },
    UnsupportedVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// A block (structure, strings, memory reservation) reaches outside `totalsize`.
    BlockOutOfRange {
        block: &'static str,
        offset: u32,
        size: u32,
        totalsize: u32,
    },
    Misaligned {
        block: &'static str,
        offset: u32,
    },
    /// The token stream is broken; `offset` is from the start of the blob.
    Malformed {
        offset: usize,
        reason: &'static str,
    },
    /// A property we depend on cannot be decoded.
    BadProperty {
        path: String,
        property: &'static str,
        reason: &'static str,
    },
    /// No `/memory` node describes any RAM.
    NoMemory,
    /// Neither x0 nor the start of RAM holds a blob (`ram_word` is what RAM base held).
    NotFound {
        x0: u64,
        ram_base: u64,
        ram_word: u32,
    },
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::TooShort { available } => write!(
                f,
                "truncated: {available} bytes cannot hold the {}-byte FDT header",
                HEADER_LEN
            ),
            DtError::BadMagic(magic) => {
                write!(f, "bad magic {magic:#010x} (expected {:#010x})", FDT_MAGIC)
            }
            DtError::TotalSizeTooSmall(size) => write!(
                f,
                "header totalsize {size} is smaller than the {}-byte FDT header",
                HEADER_LEN
            ),
            DtError::Truncated { header, available } => {
                write!(
                    f,
                    "truncated: header says {header} bytes, only {available} available"
                )
            }
            DtError::UnsupportedVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "unsupported FDT version {version} (last compatible {last_comp_version}): \
                 need version >= 16 and last_comp_version <= 17"
            ),
            DtError::BlockOutOfRange {
                block,
                offset,
                size,
                totalsize,
            } => write!(
                f,
                "{block} block at offset {offset:#x} ({size} bytes) lies outside the \
                 {totalsize}-byte blob"
            ),
            DtError::Misaligned { block, offset } => {
                write!(f, "{block} block offset {offset:#x} is misaligned")
            }
            DtError::Malformed { offset, reason } => {
                write!(
                    f,
                    "malformed structure block at offset {offset:#x}: {reason}"
                )
            }
            DtError::BadProperty {
                path,
                property,
                reason,
            } => {
                write!(f, "{path}: bad `{property}` property: {reason}")
            }
            DtError::NoMemory => write!(f, "no /memory node describes any RAM"),
            DtError::NotFound {
                x0,
                ram_base,
                ram_word,
            } => write!(
                f,
                "no device tree: x0 is {x0:#x} and RAM base {ram_base:#x} holds {ram_word:#010x}, \
                 not the magic {:#010x}",
                FDT_MAGIC
            ),
        }
    }
}

impl core::error::Error for DtError {}

impl DtError {
    /// A property of `path` that the firmware depends on cannot be decoded.
    pub fn bad_property(path: &str, property: &'static str, reason: &'static str) -> DtError {
        DtError::BadProperty {
            path: path.to_owned(),
            property,
            reason,
        }
    }
}
