//! Memory-management hardware: the MMU and its translation tables.
//!
//! The page allocator policy lives in [`crate::mm`]; this module is how its pages become
//! addressable. See [`mmu`] for the identity map and the movable window.

pub mod mmu;
