//! Partial array self-refresh (safe policy): which physical bytes each DRAM bank or segment
//! holds ([`geometry`]), the controller model's register block ([`regs`]) and the
//! self-refresh power model ([`power`]), and, built on them, the per-section free counters
//! with the pair rule, placement and the vacating pass.
#![forbid(unsafe_code)]

pub mod geometry;
pub mod power;
pub mod regs;
