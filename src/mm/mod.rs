//! Physical memory management: buddy allocator with migrate types and pageblocks, CMA.
//! Safe policy code; per-frame metadata storage is handed in by the caller.
#![forbid(unsafe_code)]
