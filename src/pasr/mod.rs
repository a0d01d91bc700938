//! Partial array self-refresh (safe policy): which physical bytes each DRAM bank or segment
//! holds ([`geometry`]), the controller model's register block ([`regs`]), its driver core
//! ([`controller`]) and the self-refresh power model ([`power`]); and, built on them, the
//! allocator's side.
//!
//! The buddy allocator counts free MAX_ORDER blocks per span and steers allocations away
//! from entirely free spans (`crate::mm::Zone::enable_pasr`); [`sections`] turns the counts
//! into maskable units and MR16/MR17 values under the pair rule; [`vacate`] empties nearly
//! empty spans before sleep; [`measure`] is the loop the in-guest benchmark counts;
//! [`report`] words all of it for the shell and the debugfs files.
#![forbid(unsafe_code)]

pub mod controller;
pub mod geometry;
pub mod measure;
pub mod power;
pub mod regs;
pub mod report;
pub mod sections;
pub mod vacate;

#[cfg(test)]
mod cycle_tests;
#[cfg(test)]
mod suspend_tests;
#[cfg(test)]
mod testrig;
