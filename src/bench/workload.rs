//! What every benchmark workload shares: the clock, the CMA filler, the error type.

use core::fmt;

use crate::kmem::{KmemError, KmemState};
use crate::mm::{MigrateType, Pfn, Zone};

/// Why a benchmark stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchError {
    /// The memory service refused an operation the workload needs.
    Kmem(KmemError),
    /// The buddy method of the churn benchmark needs a power-of-two size up to `max`.
    NotABuddyOrder { pages: usize, max: usize },
    /// The kernel heap could not grow the table of held allocations.
    HeapExhausted,
}

impl From<KmemError> for BenchError {
    fn from(error: KmemError) -> Self {
        BenchError::Kmem(error)
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Kmem(error) => write!(f, "{error}"),
            BenchError::NotABuddyOrder { pages, max } => {
                write!(f, "{pages} pages is not a buddy order (max {max})")
            }
            BenchError::HeapExhausted => write!(f, "kernel heap exhausted"),
        }
    }
}

impl core::error::Error for BenchError {}

pub(super) fn now() -> u64 {
    crate::driver::timer::counter()
}

/// Fill every free CMA page with anonymous pages; returns pages added.
pub(super) fn fill_cma_with_anon(s: &mut KmemState) -> Result<usize, KmemError> {
    let mut added = 0;
    loop {
        let free_cma = s.zone().free_cma_pages();
        if free_cma == 0 {
            return Ok(added);
        }
        let n = s.anon_grow(free_cma)?;
        if n == 0 {
            return Ok(added);
        }
        added += n;
    }
}

/// Read store blocks through the page cache (clean pages, which the CMA-first balance puts
/// in CMA) until no CMA frame is free, going round the store from `next_block`; blocks
/// already cached are hits that allocate nothing. Stops early at the watermark or when a
/// whole round of the store added nothing.
pub(super) fn fill_cma_with_clean_cache(
    s: &mut KmemState,
    next_block: &mut usize,
) -> Result<(), KmemError> {
    let blocks = s.cache_status().store_blocks;
    let mut hits_left = blocks;
    while s.zone().free_cma_pages() > 0 && hits_left > 0 && blocks > 0 {
        let before = s.cached_pages();
        if !s.cache_read(*next_block % blocks)? {
            break;
        }
        *next_block = (*next_block + 1) % blocks;
        if s.cached_pages() == before {
            hits_left -= 1;
        } else {
            hits_left = blocks;
        }
    }
    Ok(())
}

pub(super) fn not_cma(zone: &Zone<'_>, pfn: Pfn) -> bool {
    zone.pageblock_migratetype(pfn) != Some(MigrateType::Cma)
}
