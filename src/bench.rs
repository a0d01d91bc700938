//! In-guest benchmarks of the contiguous-memory stack, as library code so both the
//! benchmark image and the shell's `bench` command can run them. They are workloads over
//! kmem's public interface ([`crate::kmem::KmemState`]'s workload methods), outside kmem.
//!
//! # Theory of operation
//!
//! Time is the generic counter (CNTVCT_EL0). Under `-icount shift=0,sleep=off` it advances
//! with retired instructions, so results are deterministic and comparable across runs.
//! Every CMA latency is reported as a ratio to a memcpy of the same number of bytes in the
//! same run, with the same copy routine migration uses: the physical limit of an allocation
//! that must move N bytes is one copy of N bytes.
//!
//! - [`cma_latency`]: `cma_alloc` of each size, several trials, with the area idle and with
//!   it full of anonymous pages (the CMA balance is set to prefer CMA while filling, so the
//!   area fills before the rest of memory; after each trial the freed range is refilled and
//!   the same number of anonymous pages outside CMA are dropped, so every trial meets a full
//!   area and the same amount of free memory elsewhere), and with it full of clean page
//!   cache (dropped, not copied; refilled after each trial).
//! - [`churn_success`]: many large allocations held and released while memory stays mostly
//!   full of anonymous and cache pages and kernel-data pages and long-term DMA pins are
//!   allocated in between with random lifetimes ([`CHURN_WORKLOAD`]). That is what separates
//!   CMA from a plain buddy on real systems: the unmovable pages end up scattered through
//!   Movable pageblocks (fallback stealing, pins taken from whatever Movable block is at
//!   hand), so neither a free high-order block nor a migratable range survives there, while
//!   CMA pageblocks never serve such requests and can always be emptied. The same workload
//!   runs once per method: plain buddy (high-order `alloc_pages`), `alloc_contig_range`
//!   over Movable pageblocks (migration without CMA), and `cma_alloc`, once as is and
//!   once with pins on pages inside CMA as well ([`ChurnMode::CmaPinsInCma`]: long-term
//!   pins move the page out first, short-term I/O pins hold it in place until the I/O is
//!   done, and `cma_alloc` goes around them or waits for them within a bounded back-off).
//!
//! Everything runs under the memory lock (IRQs masked, [`crate::kmem::with_state`]), which
//! also keeps timer interrupts out of the measured intervals. [`report`] (the tables) is
//! pure and builds on the host; the workloads are bare-metal only.

pub mod campaign;
pub mod report;

#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
mod churn;
#[cfg(target_os = "none")]
pub mod dma;
#[cfg(target_os = "none")]
mod latency;
#[cfg(target_os = "none")]
mod profile;
#[cfg(target_os = "none")]
mod workload;

pub use report::{
    format_churn, format_latency, ChurnMode, ChurnResult, LatencyRow, Stats, CHURN_WORKLOAD,
};

#[cfg(target_os = "none")]
pub use self::{
    churn::churn_success,
    latency::cma_latency,
    profile::{monolith_profile_begin, monolith_profile_end, profile_cma_alloc, AreaFill},
    workload::BenchError,
};

#[cfg(target_os = "none")]
use workload::{fill_cma_with_anon, fill_cma_with_clean_cache, not_cma, now};
