//! Partial array self-refresh (safe policy): which physical bytes each DRAM bank or segment
//! holds ([`geometry`]), and, built on it, the per-section free counters with the pair rule,
//! placement and the vacating pass, and the self-refresh power model.
#![forbid(unsafe_code)]

pub mod geometry;
