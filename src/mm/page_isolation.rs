//! Page isolation (`mm/page_isolation.c`): fencing off pageblocks so they can be emptied.
//!
//! # Theory of operation
//!
//! Isolating a pageblock retypes it to Isolate and moves its free blocks to the Isolate
//! lists, which the allocator never takes from; frees into the block stay there too. So once
//! a range is isolated, the number of in-use frames in it can only go down, which is what
//! lets `alloc_contig_range` converge. Isolation refuses ranges that hold frames that could
//! never be emptied (`has_unmovable_pages`): holes, reserved frames, and allocations whose
//! owner kind is not movable. Only the part of each pageblock inside the requested range is
//! inspected, so a CMA allocation next to the requested range does not block it. Undoing the
//! isolation restores the given type and re-merges the blocks' free memory with neighbours.
#![forbid(unsafe_code)]

use super::page_alloc::{MmError, Zone};
use super::{pageblock_start_pfn, MigrateType, PageState, Pfn, PAGEBLOCK_NR_PAGES};

/// Pageblock starts covering `[start, end)`.
fn blocks(start: Pfn, end: Pfn) -> impl Iterator<Item = Pfn> {
    (pageblock_start_pfn(start)..end).step_by(PAGEBLOCK_NR_PAGES)
}

impl Zone<'_> {
    /// First frame in `[start, end)` that isolation could never free (`has_unmovable_pages`).
    /// Steps from block head to block head through the memmap: isolating a pageblock full of
    /// order-0 pages must not cost a lookup per frame.
    pub fn has_unmovable_pages(&self, start: Pfn, end: Pfn) -> Option<Pfn> {
        let (start, end) = (start.max(self.start_pfn()), end.min(self.end_pfn()));
        let pages = self.memmap(start, end);
        let mut i = 0;
        while let Some(page) = pages.get(i) {
            match page.state() {
                PageState::Buddy => i += 1 << page.order(),
                PageState::Head => {
                    if !page.owner().kind().is_movable() {
                        return Some(start + i);
                    }
                    i += 1 << page.order();
                }
                // `start` inside a block: judge the block that covers it.
                PageState::Tail => {
                    let b = self.block_at(start + i);
                    let movable = match b.state {
                        PageState::Buddy => true,
                        PageState::Head => self.page(b.head)?.owner().kind().is_movable(),
                        _ => false,
                    };
                    if !movable {
                        return Some(start + i);
                    }
                    i = b.end() - start;
                }
                PageState::Hole | PageState::Reserved => return Some(start + i),
            }
        }
        None
    }

    /// Isolate every pageblock covering `[start, end)`. Fails, leaving every pageblock as it
    /// was, if one is already isolated (someone else is emptying it) or if the range holds
    /// an unmovable frame. On success the caller must eventually call
    /// [`Zone::undo_isolate_page_range`] with the type to restore.
    pub fn start_isolate_page_range(
        &mut self,
        start: Pfn,
        end: Pfn,
        restore_to: MigrateType,
    ) -> Result<(), MmError> {
        if start >= end {
            return Err(MmError::InvalidRange { start, end });
        }
        if !self.contains(start) || end > self.end_pfn() {
            return Err(MmError::OutOfZone {
                pfn: if self.contains(start) { end - 1 } else { start },
            });
        }
        for block in blocks(start, end) {
            let failure = if self.pageblock_migratetype(block.max(self.start_pfn()))
                == Some(MigrateType::Isolate)
            {
                Some(block.max(start))
            } else {
                self.has_unmovable_pages(block.max(start), (block + PAGEBLOCK_NR_PAGES).min(end))
            };
            if let Some(pfn) = failure {
                self.undo_isolate_page_range(start, block, restore_to);
                return Err(MmError::Busy { pfn });
            }
            self.retype_pageblock(block, MigrateType::Isolate);
        }
        Ok(())
    }

    /// Give every isolated pageblock covering `[start, end)` back its type `mt` and re-merge
    /// its free memory.
    pub fn undo_isolate_page_range(&mut self, start: Pfn, end: Pfn, mt: MigrateType) {
        if start >= end {
            return;
        }
        for block in blocks(start, end) {
            let first = block.max(self.start_pfn());
            if self.pageblock_migratetype(first) == Some(MigrateType::Isolate) {
                self.retype_pageblock(block, mt);
            }
        }
    }

    /// [`Zone::undo_isolate_page_range`] right after every frame of `[start, end)` was
    /// taken (`alloc_contig_range` succeeded): a pageblock lying wholly inside the range
    /// holds no free block, so only its type changes; the pageblocks at the ends, shared
    /// with the rest of memory, are retyped in full.
    pub(crate) fn undo_isolate_taken_range(&mut self, start: Pfn, end: Pfn, mt: MigrateType) {
        if start >= end {
            return;
        }
        for block in blocks(start, end) {
            let first = block.max(self.start_pfn());
            if self.pageblock_migratetype(first) != Some(MigrateType::Isolate) {
                continue;
            }
            if start <= block && block + PAGEBLOCK_NR_PAGES <= end {
                self.retype_full_pageblock(block, mt);
            } else {
                self.retype_pageblock(block, mt);
            }
        }
    }

    /// Are all pageblocks covering `[start, end)` isolated and every frame in it free
    /// (`test_pages_isolated`)?
    pub fn test_pages_isolated(&self, start: Pfn, end: Pfn) -> bool {
        if start >= end || !self.contains(start) || end > self.end_pfn() {
            return false;
        }
        if blocks(start, end)
            .any(|b| self.pageblock_migratetype(b.max(start)) != Some(MigrateType::Isolate))
        {
            return false;
        }
        let mut pfn = start;
        while pfn < end {
            let b = self.block_at(pfn);
            if b.state != PageState::Buddy {
                return false;
            }
            pfn = b.end();
        }
        true
    }
}
