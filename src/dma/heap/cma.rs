//! CMA heaps (`cma_heap.c`): one physically contiguous run from a CMA area per buffer.
//!
//! `cma_heap_allocate`: `pagecount = len / PAGE_SIZE`, `align = get_order(len)` capped at
//! `CONFIG_CMA_ALIGNMENT` (8), then `cma_alloc(cma, pagecount, align)`; release is
//! `cma_release` of the same run. The pages are out of the buddy while the buffer lives,
//! so nothing can migrate them. A movable buffer is the same run as a movable chunk of the
//! area (`cma_alloc_movable`): the area may move it to make room while nobody has it pinned,
//! and it goes back with `cma_release_movable`.
#![forbid(unsafe_code)]

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::{Allocation, HeapError, PageSource};
use crate::dma::{get_order, Segment};
use crate::mm::ChunkInfo;

/// Linux's default `CONFIG_CMA_ALIGNMENT`: alignment orders above it are capped.
pub const CMA_ALIGNMENT: u32 = 8;

pub(super) struct CmaHeap {
    pub(super) area: String,
    area_pages: usize,
}

impl CmaHeap {
    pub(super) fn new(area: &str, area_pages: usize) -> CmaHeap {
        CmaHeap {
            area: area.to_string(),
            area_pages,
        }
    }

    pub(super) fn allocate(
        &mut self,
        heap: &str,
        bytes: u64,
        count: usize,
        pages: &mut dyn PageSource,
    ) -> Result<Vec<Segment>, HeapError> {
        if count > self.area_pages {
            return Err(HeapError::TooLarge {
                heap: heap.to_string(),
                bytes,
            });
        }
        let align = get_order(bytes).min(CMA_ALIGNMENT);
        let pfn = pages
            .cma_alloc(&self.area, count, align)
            .map_err(|error| HeapError::Pages {
                heap: heap.to_string(),
                error,
            })?;
        Ok(vec![Segment { pfn, pages: count }])
    }

    /// The same run as [`CmaHeap::allocate`], as a movable chunk.
    pub(super) fn allocate_movable(
        &mut self,
        heap: &str,
        bytes: u64,
        count: usize,
        pages: &mut dyn PageSource,
    ) -> Result<ChunkInfo, HeapError> {
        if count > self.area_pages {
            return Err(HeapError::TooLarge {
                heap: heap.to_string(),
                bytes,
            });
        }
        let align = get_order(bytes).min(CMA_ALIGNMENT);
        pages
            .cma_alloc_movable(&self.area, count, align)
            .map_err(|error| HeapError::Pages {
                heap: heap.to_string(),
                error,
            })
    }

    pub(super) fn free(
        &mut self,
        heap: &str,
        allocation: &Allocation,
        pages: &mut dyn PageSource,
    ) -> Result<(), HeapError> {
        let not_ours = || HeapError::NotAllocated {
            heap: heap.to_string(),
        };
        if allocation.cma_area.as_deref() != Some(self.area.as_str()) {
            return Err(not_ours());
        }
        if let Some((id, _)) = allocation.chunk {
            return pages
                .cma_release_movable(&self.area, id)
                .map_err(|error| HeapError::Pages {
                    heap: heap.to_string(),
                    error,
                });
        }
        let [segment] = allocation.segments.as_slice() else {
            return Err(not_ours());
        };
        pages
            .cma_release(&self.area, segment.pfn, segment.pages)
            .map_err(|error| HeapError::Pages {
                heap: heap.to_string(),
                error,
            })
    }
}
