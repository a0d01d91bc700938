//! A measurement loop for the in-guest benchmark: order-0 allocations and frees through the
//! buddy, in batches large enough to split and re-merge MAX_ORDER blocks (where the PASR
//! hooks are), so the instructions of one zone with PASR and one without can be counted
//! on the same work. Not a timed test: it only does the work and returns a checksum.
#![forbid(unsafe_code)]

use crate::mm::{AllocError, Gfp, Pfn, Zone};

/// `rounds` times: allocate `scratch.len()` order-0 Movable pages (their pfns go into
/// `scratch`), then free them in the same order. With a batch of more than a MAX_ORDER block
/// (1024 pages) each round splits at least one MAX_ORDER block and merges it back, so the
/// PASR hooks run every round, as they would under churn. Allocates nothing else, and
/// (unless it runs out of memory, when stealing may retype pageblocks) leaves every frame
/// as it found it. Returns the sum of all pfns handed out (so the
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testutil::{frames, Storage};
    use crate::mm::{PasrMode, PasrSpans};

    const BASE: Pfn = 0x40000;
    const PAGES: usize = 8 * 1024;

    #[test]
    fn the_loop_leaves_the_zone_as_it_found_it_with_or_without_pasr() {
        for mode in [None, Some(PasrMode::Baseline2012), Some(PasrMode::Steering)] {
            let mut s = Storage::new(BASE, PAGES);
            let mut z = s.zone();
            z.free_range(BASE..BASE + PAGES).unwrap();
            if let Some(mode) = mode {
                z.enable_pasr(PasrSpans::new(BASE, 2048, 4).unwrap(), mode)
                    .unwrap();
            }
            let _pinned = z.alloc_pages(0, Gfp::KERNEL).unwrap();
            let before = (frames(&z), z.counters());
            let mut scratch = [0; 1500];
            let first = order0_alloc_free_loop(&mut z, &mut scratch, 3).unwrap();
            z.check_invariants().unwrap();
            z.check_pasr_invariants().unwrap();
            assert!(
                before == (frames(&z), z.counters()),
                "{mode:?} changed the zone"
            );
            // 4500 pfns of the zone, the pinned one never among them.
            let n = 3 * scratch.len() as u64;
            assert!(first >= n * (BASE as u64 + 1) && first < n * (BASE + PAGES) as u64);
            // More than the zone holds: the round is undone and the error returned (running
            // dry made the last requests steal, so pageblock types may differ).
            let mut too_many = std::vec![0; PAGES];
            assert_eq!(
                order0_alloc_free_loop(&mut z, &mut too_many, 1),
                Err(AllocError::NoMemory)
            );
            z.check_invariants().unwrap();
            z.check_pasr_invariants().unwrap();
            assert_eq!(z.counters().free_pages, before.1.free_pages);
        }
    }
}
