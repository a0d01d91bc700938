//! Small helpers every layer shares: address-range algebra, size arithmetic, bit sets, a
//! seedable random sequence.
//!
//! One copy of each, so the device-tree planner, the memory map, the MMU layout and
//! `/proc/iomem` agree on what "overlaps", "merged" and "page-aligned" mean.
#![forbid(unsafe_code)]

pub mod bits;
pub mod ranges;
pub mod rng;
pub mod size;

pub use size::{PAGE_SHIFT, PAGE_SIZE};
