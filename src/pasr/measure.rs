//! A measurement loop for the in-guest benchmark: order-0 allocations and frees through the
//! buddy, in batches large enough to split and re-merge MAX_ORDER blocks (where the PASR
//! hooks are), so the instructions of one zone with PASR and one without can be counted
//! on the same work. Not a timed test: it only does the work and returns a checksum.
#![forbid(unsafe_code)]

use crate::mm::{AllocError, Gfp, Pfn, Zone};

/// `rounds` times: allocate `scratch.len()` order-0 Movable pages (their pfns go into
/// `scratch`), then free them in the same order. With a batch of more than a MAX_ORDER block
/// (1024 pages) each round splits at least one MAX_ORDER block and merges it back, so the
/// PASR hooks run every round, as they would under churn. Allocates nothing else and leaves
/// the zone's free memory as it found it. Returns the sum of all pfns handed out (so the
/// work cannot be optimised away, and two runs can be compared). On an allocation failure
/// the pages of the current round are freed and the error returned.
pub fn order0_alloc_free_loop(
    zone: &mut Zone<'_>,
    scratch: &mut [Pfn],
    rounds: usize,
) -> Result<u64, AllocError> {
    let mut sum = 0u64;
    for _ in 0..rounds {
        for i in 0..scratch.len() {
            match zone.alloc_pages(0, Gfp::MOVABLE) {
                Ok(pfn) => {
                    scratch[i] = pfn;
                    sum = sum.wrapping_add(pfn as u64);
                }
                Err(e) => {
                    for &pfn in &scratch[..i] {
                        // Just allocated at order 0: freeing cannot be refused.
                        let _ = zone.free_pages(pfn, 0);
                    }
                    return Err(e);
                }
            }
        }
        for &pfn in scratch.iter() {
            let _ = zone.free_pages(pfn, 0);
        }
    }
    Ok(sum)
}
