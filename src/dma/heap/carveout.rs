//! Carveout heaps: a `no-map` `shared-dma-pool` region (out of the buddy and out of the
//! linear map) handed out first fit, one contiguous run per buffer. Linux mainline has no
//! such heap (ION's carveout heap did this); the CPU cannot touch these buffers, so they
//! are marked not CPU-mapped and CPU access is refused on them.
//!
//! Only a region's first range becomes a heap (the range a driver means by "this
//! region", [`crate::dt::reserved::ReservedRegion::primary`]).
#![forbid(unsafe_code)]

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::HeapError;
use crate::dma::firstfit::FirstFit;
use crate::dma::Segment;
use crate::dt::reserved::{Carveout, ReservedMemoryPlan};
use crate::mm::{Pfn, PAGE_SHIFT};

pub(super) struct CarveoutHeap {
    pages: FirstFit,
}

/// The plan's carveouts that are `shared-dma-pool` regions, first range of each.
pub(super) fn carveouts_of(plan: &ReservedMemoryPlan) -> impl Iterator<Item = &Carveout> {
    plan.carveouts.iter().filter(|c| {
        plan.regions.get(c.region_index).is_some_and(|r| {
            r.compatible.iter().any(|s| s == "shared-dma-pool") && r.primary() == c.range
        })
    })
}

impl CarveoutHeap {
    pub(super) fn new(range: &Range<u64>) -> CarveoutHeap {
        let start = range.start.div_ceil(1 << PAGE_SHIFT) as Pfn;
        let end = (range.end >> PAGE_SHIFT) as Pfn;
        CarveoutHeap {
            pages: FirstFit::new(start..end.max(start)),
        }
    }

    pub(super) fn allocate(&mut self, heap: &str, count: usize) -> Result<Vec<Segment>, HeapError> {
        if count > self.pages.span().len() {
            return Err(HeapError::TooLarge {
                heap: heap.to_string(),
                bytes: (count as u64) << PAGE_SHIFT,
            });
        }
        let pfn = self.pages.alloc(count, 1).ok_or(HeapError::CarveoutFull {
            heap: String::from(heap),
            pages: count,
        })?;
        Ok(vec![Segment { pfn, pages: count }])
    }

    pub(super) fn free(&mut self, heap: &str, segments: &[Segment]) -> Result<(), HeapError> {
        match segments {
            [s] if self.pages.free(s.pfn, s.pages) => Ok(()),
            _ => Err(HeapError::NotAllocated {
                heap: heap.to_string(),
            }),
        }
    }
}
