//! The flattened format's fixed numbers (devicetree specification v0.4, 5.2 and 5.4.1).
#![forbid(unsafe_code)]

pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of a version-17 header. Version 16 lacks the final `size_dt_struct` word, but we
/// still require the bytes (every real v16 blob has its reservation map after them).
pub const HEADER_LEN: usize = 40;
/// Deepest node nesting accepted (root = 1); real trees stay below 10.
pub const MAX_DEPTH: usize = 32;

pub const FDT_BEGIN_NODE: u32 = 1;
pub const FDT_END_NODE: u32 = 2;
pub const FDT_PROP: u32 = 3;
pub const FDT_NOP: u32 = 4;
pub const FDT_END: u32 = 9;
