//! Structural validation of a flattened device tree, before the `fdt` crate sees it.
//!
//! Theory of operation: the `fdt` crate (0.1.5) trusts its input. It indexes slices with
//! header offsets, `unwrap`s token reads, `assert!`s node nesting, keeps a fixed 64-entry
//! parent stack, and looks property names up in the strings block with `expect`. A blob
//! from memory we do not control (x0, the start of RAM, a `-dtb` file) must never turn
//! into a panic, so this module proves every invariant the crate relies on:
//!
//! 1. [`check_header`]: magic, `totalsize` against the bytes we really have, every block
//!    inside `totalsize`, supported version, 4-aligned structure block; the reservation map
//!    ends with its (0, 0) terminator inside the blob.
//! 2. [`check_structure`]: one linear walk over the structure block's tokens: balanced
//!    `BEGIN_NODE`/`END_NODE` under a single unnamed root, bounded depth, names that are
//!    NUL-terminated UTF-8, property values inside the block, property names that resolve
//!    to NUL-terminated UTF-8 strings inside the strings block, properties only before the
//!    first child node (the crate's node walker assumes that order), one-cell
//!    `#address-cells`/`#size-cells`/`#interrupt-cells`, and a final `FDT_END`.
//!
//! `FDT_NOP` is legal anywhere between tokens (libfdt's `fdt_nop_node`, which QEMU uses
//! to delete `/memory` nodes of a `-dtb` file), but the crate only tolerates it in some
//! places and asserts in others. Rather than reject such trees, [`rewrite_without_nops`]
//! produces a compact version-17 copy without NOPs; version-16 blobs (no
//! `size_dt_struct` in the header, which the crate reads anyway) take the same path.

use alloc::vec::Vec;
use core::ops::Range;

use super::DtError;

pub(super) const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of a version-17 header; version 16 lacks the final `size_dt_struct` word, but we
/// still need the bytes to exist to read the fields the crate reads.
pub(super) const HEADER_LEN: usize = 40;
/// Deepest node nesting accepted (root = 1). The crate's parent stack holds 64 entries;
/// real trees stay below 10.
pub(super) const MAX_DEPTH: usize = 32;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// The header fields, validated against each other and the blob length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub totalsize: u32,
    pub off_dt_struct: u32,
    pub off_dt_strings: u32,
    pub off_mem_rsvmap: u32,
    pub version: u32,
    pub size_dt_strings: u32,
    /// Only meaningful for version >= 17; see [`Structure::struct_len`].
    pub size_dt_struct: u32,
}

/// What the structure walk learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Structure {
    /// Bytes of the structure block up to and including `FDT_END`.
    pub struct_len: usize,
    pub has_nops: bool,
    /// `/memreserve/` entries, in blob order.
    pub mem_reserve: Vec<Range<u64>>,
    /// Byte length of the reservation map including its terminator.
    pub rsvmap_len: usize,
}

fn be32(blob: &[u8], at: usize) -> Option<u32> {
    let bytes = blob.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn be64(blob: &[u8], at: usize) -> Option<u64> {
    Some((u64::from(be32(blob, at)?) << 32) | u64::from(be32(blob, at + 4)?))
}

/// Validate the header of `blob` (which may be longer than the tree).
pub(super) fn check_header(blob: &[u8]) -> Result<Header, DtError> {
    let magic = be32(blob, 0).ok_or(DtError::TooShort {
        available: blob.len(),
    })?;
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic(magic));
    }
    if blob.len() < HEADER_LEN {
        return Err(DtError::TooShort {
            available: blob.len(),
        });
    }
    // Every field exists now that 40 bytes do.
    let field = |index: usize| be32(blob, index * 4).unwrap_or(0);
    let header = Header {
        totalsize: field(1),
        off_dt_struct: field(2),
        off_dt_strings: field(3),
        off_mem_rsvmap: field(4),
        version: field(5),
        size_dt_strings: field(8),
        size_dt_struct: field(9),
    };
    let last_comp_version = field(6);
    if (header.totalsize as usize) < HEADER_LEN {
        return Err(DtError::TotalSizeTooSmall(header.totalsize));
    }
    if header.totalsize as usize > blob.len() {
        return Err(DtError::Truncated {
            header: header.totalsize,
            available: blob.len(),
        });
    }
    if header.version < 16 || last_comp_version > 17 {
        return Err(DtError::UnsupportedVersion {
            version: header.version,
            last_comp_version,
        });
    }
    let totalsize = u64::from(header.totalsize);
    let inside = |block: &'static str, offset: u32, size: u32| {
        let end = u64::from(offset) + u64::from(size);
        if (offset as usize) < HEADER_LEN || end > totalsize {
            Err(DtError::BlockOutOfRange {
                block,
                offset,
                size,
                totalsize: header.totalsize,
            })
        } else {
            Ok(())
        }
    };
    // Version 16 does not record the structure size: it runs at most to the end.
    let struct_size = if header.version >= 17 {
        header.size_dt_struct
    } else {
        header.totalsize.saturating_sub(header.off_dt_struct)
    };
    inside("structure", header.off_dt_struct, struct_size)?;
    inside("strings", header.off_dt_strings, header.size_dt_strings)?;
    inside("memory reservation", header.off_mem_rsvmap, 0)?;
    if !header.off_dt_struct.is_multiple_of(4) {
        return Err(DtError::Misaligned {
            block: "structure",
            offset: header.off_dt_struct,
        });
    }
    if !header.off_mem_rsvmap.is_multiple_of(8) {
        return Err(DtError::Misaligned {
            block: "memory reservation",
            offset: header.off_mem_rsvmap,
        });
    }
    Ok(Header {
        size_dt_struct: struct_size,
        ..header
    })
}

fn malformed(offset: usize, reason: &'static str) -> DtError {
    DtError::Malformed { offset, reason }
}

/// Read a NUL-terminated UTF-8 string starting at `at`, entirely inside `block`.
fn c_str(block: &[u8], at: usize) -> Result<&str, &'static str> {
    let tail = block.get(at..).ok_or("string starts outside its block")?;
    let len = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or("string is not NUL-terminated")?;
    core::str::from_utf8(&tail[..len]).map_err(|_| "string is not UTF-8")
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Walk the reservation map and the structure block; `blob` is exactly `totalsize` long.
pub(super) fn check_structure(blob: &[u8], header: &Header) -> Result<Structure, DtError> {
    let rsv_start = header.off_mem_rsvmap as usize;
    let mut mem_reserve = Vec::new();
    let mut at = rsv_start;
    loop {
        let (Some(address), Some(size)) = (be64(blob, at), be64(blob, at + 8)) else {
            return Err(malformed(
                at,
                "memory reservation map has no terminating entry",
            ));
        };
        at += 16;
        if address == 0 && size == 0 {
            break;
        }
        let end = address.checked_add(size).ok_or(malformed(
            at - 16,
            "memory reservation wraps around the address space",
        ))?;
        mem_reserve.push(address..end);
    }
    let rsvmap_len = at - rsv_start;

    let start = header.off_dt_struct as usize;
    let block = &blob[start..start + header.size_dt_struct as usize];
    let strings_start = header.off_dt_strings as usize;
    let strings = &blob[strings_start..strings_start + header.size_dt_strings as usize];

    // Whether the node open at each depth has already had a child (no more properties).
    let mut children_started = [false; MAX_DEPTH + 1];
    let mut depth = 0usize;
    let mut root_done = false;
    let mut has_nops = false;
    let mut pos = 0usize;
    // Offsets in errors are from the start of the blob, as `fdtdump` prints them.
    let err = |pos: usize, reason| malformed(start + pos, reason);
    loop {
        let token = be32(block, pos).ok_or(err(pos, "structure block ends without FDT_END"))?;
        match token {
            FDT_BEGIN_NODE => {
                if root_done {
                    return Err(err(pos, "second root node"));
                }
                let name = c_str(block, pos + 4).map_err(|reason| err(pos, reason))?;
                if depth == 0 && !name.is_empty() {
                    return Err(err(pos, "root node has a name"));
                }
                if depth > 0 && name.is_empty() {
                    return Err(err(pos, "node without a name below the root"));
                }
                if depth >= MAX_DEPTH {
                    return Err(err(pos, "nodes nested too deeply"));
                }
                if depth > 0 {
                    children_started[depth] = true;
                }
                depth += 1;
                children_started[depth] = false;
                pos = align4(pos + 4 + name.len() + 1);
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(err(pos, "FDT_END_NODE without an open node"));
                }
                depth -= 1;
                if depth == 0 {
                    root_done = true;
                }
                pos += 4;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(err(pos, "property outside any node"));
                }
                if children_started[depth] {
                    return Err(err(pos, "property after a child node"));
                }
                let (Some(len), Some(name_offset)) = (be32(block, pos + 4), be32(block, pos + 8))
                else {
                    return Err(err(pos, "property header runs past the structure block"));
                };
                let value_start = pos + 12;
                let value_end = value_start + len as usize;
                if value_end > block.len() {
                    return Err(err(pos, "property value runs past the structure block"));
                }
                if name_offset as usize >= strings.len() {
                    return Err(err(pos, "property name offset outside the strings block"));
                }
                let name =
                    c_str(strings, name_offset as usize).map_err(|reason| err(pos, reason))?;
                let one_cell =
                    matches!(name, "#address-cells" | "#size-cells" | "#interrupt-cells");
                if one_cell && len != 4 {
                    return Err(err(
                        pos,
                        "#address-cells, #size-cells or #interrupt-cells is not one cell",
                    ));
                }
                pos = align4(value_end);
            }
            FDT_NOP => {
                has_nops = true;
                pos += 4;
            }
            FDT_END => {
                if !root_done {
                    return Err(err(pos, "FDT_END before the root node is closed"));
                }
                return Ok(Structure {
                    struct_len: pos + 4,
                    has_nops,
                    mem_reserve,
                    rsvmap_len,
                });
            }
            _ => return Err(err(pos, "unknown structure token")),
        }
    }
}

/// A compact version-17 copy of a validated tree, with every `FDT_NOP` dropped.
pub(super) fn rewrite_without_nops(blob: &[u8], header: &Header, structure: &Structure) -> Vec<u8> {
    let rsv_start = header.off_mem_rsvmap as usize;
    let rsvmap = &blob[rsv_start..rsv_start + structure.rsvmap_len];
    let struct_start = header.off_dt_struct as usize;
    let block = &blob[struct_start..struct_start + structure.struct_len];
    let strings_start = header.off_dt_strings as usize;
    let strings = &blob[strings_start..strings_start + header.size_dt_strings as usize];

    let mut tokens = Vec::with_capacity(block.len());
    let mut pos = 0;
    // The walk mirrors `check_structure`, which has already proven every read in bounds.
    while let Some(token) = be32(block, pos) {
        let len = match token {
            FDT_BEGIN_NODE => align4(4 + c_str(block, pos + 4).map_or(0, str::len) + 1),
            FDT_PROP => align4(12 + be32(block, pos + 4).unwrap_or(0) as usize),
            _ => 4,
        };
        let end = (pos + len).min(block.len());
        if token != FDT_NOP {
            tokens.extend_from_slice(&block[pos..end]);
        }
        if token == FDT_END {
            break;
        }
        pos = end;
    }

    let off_rsvmap = HEADER_LEN;
    let off_struct = off_rsvmap + rsvmap.len();
    let off_strings = off_struct + tokens.len();
    let totalsize = off_strings + strings.len();
    let mut out = Vec::with_capacity(totalsize);
    for word in [
        FDT_MAGIC,
        totalsize as u32,
        off_struct as u32,
        off_strings as u32,
        off_rsvmap as u32,
        17,
        16,
        be32(blob, 28).unwrap_or(0), // boot_cpuid_phys
        strings.len() as u32,
        tokens.len() as u32,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(rsvmap);
    out.extend_from_slice(&tokens);
    out.extend_from_slice(strings);
    out
}
