//! The `system` heap (`system_heap.c`): buffers built page by page from the buddy.
//!
//! Linux tries orders 8, 4 and 0 for speed; we take order-0 pages only, as the task's
//! scattered-buffer model wants: every page is its own segment (Linux's sg_table has one
//! entry per allocated chunk and `dma_direct_map_sg` does not merge), so a device that
//! cannot scatter-gather is refused at attach. Pages come from
//! [`PageSource::alloc_pages`], which hands out unmovable (pinned) pages only. A failure
//! part-way gives back every page already taken.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;

use super::{HeapError, PageSource};
use crate::dma::Segment;

pub(super) fn allocate(
    heap: &str,
    count: usize,
    pages: &mut dyn PageSource,
) -> Result<Vec<Segment>, HeapError> {
    let mut segments = Vec::new();
    if segments.try_reserve_exact(count).is_err() {
        return Err(HeapError::TooLarge {
            heap: String::from(heap),
            bytes: (count as u64) << crate::mm::PAGE_SHIFT,
        });
    }
    for _ in 0..count {
        match pages.alloc_pages(0) {
            Ok(pfn) => segments.push(Segment { pfn, pages: 1 }),
            Err(error) => {
                // Nothing leaks: the pages taken so far go back. A source that refuses
                // its own pages back has a bug the error below cannot fix; keep going.
                let _ = free(heap, &segments, pages);
                return Err(HeapError::Pages {
                    heap: String::from(heap),
                    error,
                });
            }
        }
    }
    Ok(segments)
}

pub(super) fn free(
    heap: &str,
    segments: &[Segment],
    pages: &mut dyn PageSource,
) -> Result<(), HeapError> {
    let mut first_error = None;
    for s in segments {
        if let Err(error) = pages.free_pages(s.pfn, 0) {
            first_error.get_or_insert(HeapError::Pages {
                heap: String::from(heap),
                error,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}
