//! The flattened format (devicetree specification v0.4, chapter 5): header, memory
//! reservation block, structure block, strings block.
//!
//! Theory of operation: a blob comes from memory we do not control (x0, the start of RAM,
//! a `-dtb` file), so nothing in it is trusted. [`check_header`] proves the header against
//! the bytes we really have (magic, `totalsize`, every block inside `totalsize`, version
//! 16 or 17, alignment). [`walk`] then reads the reservation map to its `(0, 0)` terminator
//! and makes one linear pass over the structure block's tokens, handing each node and
//! property to a [`Visitor`] only once it is proven sound: balanced `BEGIN_NODE`/`END_NODE`
//! under a single unnamed root, bounded depth, NUL-terminated UTF-8 names, property values
//! inside the block, property names that resolve inside the strings block, properties
//! before the first child (libfdt, and so Linux, never sees a property written after a
//! child), and a final `FDT_END`. What a property's value means is the readers' business:
//! a malformed `#address-cells` in one node costs that node, not the whole tree.
//!
//! `FDT_NOP` is legal between any two tokens (libfdt's `fdt_nop_property` and
//! `fdt_nop_node`, which QEMU uses to delete `/memory` nodes of a `-dtb` file): the walk
//! skips it, so a tree with NOPs reads exactly as the same tree without them. Version 16
//! lacks `size_dt_struct`; the walk then bounds the structure block by `totalsize` and
//! stops at `FDT_END`. Every read is bounds-checked; the walk is linear in the blob size.

use alloc::vec::Vec;
use core::ops::Range;

use super::format::{
    FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP, HEADER_LEN, MAX_DEPTH,
};
use crate::dt::cells::{be32, be64};
use crate::dt::error::DtError;

/// The header fields, validated against each other and the blob length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub totalsize: u32,
    pub off_dt_struct: u32,
    pub off_dt_strings: u32,
    pub off_mem_rsvmap: u32,
    pub version: u32,
    pub boot_cpuid_phys: u32,
    pub size_dt_strings: u32,
    /// For version 16, what is left of the blob after `off_dt_struct`.
    pub size_dt_struct: u32,
}

/// Validate the header of `blob` (which may be longer than the tree).
pub(crate) fn check_header(blob: &[u8]) -> Result<Header, DtError> {
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
        boot_cpuid_phys: field(7),
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

/// What the structure walk reports, in blob order. A node's properties all come before
/// its first child's `begin_node`.
pub(crate) trait Visitor<'a> {
    /// A node opens; `name` is empty for the root. `depth` is 0 for the root.
    fn begin_node(&mut self, name: &'a str, depth: usize);
    fn property(&mut self, name: &'a str, value: &'a [u8]);
    fn end_node(&mut self);
}

fn malformed(offset: usize, reason: &'static str) -> DtError {
    DtError::Malformed { offset, reason }
}

/// A NUL-terminated UTF-8 string starting at `at`, entirely inside `block`.
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

/// The `/memreserve/` entries, up to the `(0, 0)` terminator. `blob` is `totalsize` long.
pub(crate) fn reservations(blob: &[u8], header: &Header) -> Result<Vec<Range<u64>>, DtError> {
    let mut entries = Vec::new();
    let mut at = header.off_mem_rsvmap as usize;
    loop {
        let (Some(address), Some(size)) = (be64(blob, at), be64(blob, at + 8)) else {
            return Err(malformed(
                at,
                "memory reservation map has no terminating entry",
            ));
        };
        if address == 0 && size == 0 {
            return Ok(entries);
        }
        let end = address.checked_add(size).ok_or(malformed(
            at,
            "memory reservation wraps around the address space",
        ))?;
        entries.push(address..end);
        at += 16;
    }
}

/// Walk the structure block of a blob whose header passed [`check_header`] (`blob` is
/// exactly `totalsize` long), reporting every node and property to `visitor`. On an error
/// the visitor has seen a prefix of the tree and must be discarded.
pub(crate) fn walk<'a>(
    blob: &'a [u8],
    header: &Header,
    visitor: &mut impl Visitor<'a>,
) -> Result<(), DtError> {
    let start = header.off_dt_struct as usize;
    let block = &blob[start..start + header.size_dt_struct as usize];
    let strings_start = header.off_dt_strings as usize;
    let strings = &blob[strings_start..strings_start + header.size_dt_strings as usize];

    // Whether the node open at each depth has already had a child (no more properties).
    let mut children_started = [false; MAX_DEPTH + 1];
    let mut depth = 0usize;
    let mut root_done = false;
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
                visitor.begin_node(name, depth);
                depth += 1;
                children_started[depth] = false;
                pos = align4(pos + 4 + name.len() + 1);
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(err(pos, "FDT_END_NODE without an open node"));
                }
                visitor.end_node();
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
                let Some(value) = block.get(value_start..value_start + len as usize) else {
                    return Err(err(pos, "property value runs past the structure block"));
                };
                if name_offset as usize >= strings.len() {
                    return Err(err(pos, "property name offset outside the strings block"));
                }
                let name =
                    c_str(strings, name_offset as usize).map_err(|reason| err(pos, reason))?;
                visitor.property(name, value);
                pos = align4(value_start + value.len());
            }
            FDT_NOP => pos += 4,
            FDT_END => {
                return if root_done {
                    Ok(())
                } else {
                    Err(err(pos, "FDT_END before the root node is closed"))
                };
            }
            _ => return Err(err(pos, "unknown structure token")),
        }
    }
}
