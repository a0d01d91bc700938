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
//! inspected, so a CMA allocation next to the requested range does not block it. As in
//! Linux, a CMA request over Cma pageblocks skips that scan (nothing unmovable is ever
//! allocated there; migration refuses whatever will not move). The scan also tells whether
//! a fully covered pageblock holds any free frame; when it holds none, only its type
//! changes. Undoing the isolation restores the given type and re-merges the blocks' free
//! memory with neighbours.
#![forbid(unsafe_code)]

use super::page_alloc::{MmError, Taken, Zone};
use super::{pageblock_start_pfn, MigrateType, Owner, PageState, Pfn, PAGEBLOCK_NR_PAGES};

/// Pageblock starts covering `[start, end)`.
fn blocks(start: Pfn, end: Pfn) -> impl Iterator<Item = Pfn> {
    (pageblock_start_pfn(start)..end).step_by(PAGEBLOCK_NR_PAGES)
}

impl Zone<'_> {
    /// First frame in `[start, end)` that isolation could never free (`has_unmovable_pages`).
    /// Steps from block head to block head through the memmap: isolating a pageblock full of
    /// order-0 pages must not cost a lookup per frame.
    pub fn has_unmovable_pages(&self, start: Pfn, end: Pfn) -> Option<Pfn> {
        self.scan_for_isolation(start, end).err()
    }

    /// [`Zone::has_unmovable_pages`] and, in the same walk, whether `[start, end)` holds a
    /// free frame at all: `Ok(has_free)`, or `Err(first unmovable frame)`.
    fn scan_for_isolation(&self, start: Pfn, end: Pfn) -> Result<bool, Pfn> {
        let (start, end) = (start.max(self.start_pfn()), end.min(self.end_pfn()));
        let pages = self.memmap(start, end);
        let mut i = 0;
        let mut has_free = false;
        while let Some(page) = pages.get(i) {
            // Allocated order-0 pages are the common case: one compare of the state and
            // order bytes, one of the owner kind.
            if page.is_order0_head() {
                if !page.owner().is_movable() {
                    return Err(start + i);
                }
                i += 1;
                continue;
            }
            match page.state() {
                PageState::Buddy => {
                    has_free = true;
                    i += 1 << page.order();
                }
                // Free, on the pcp: isolating the pageblock gives it back to the buddy.
                // Held: free, and lent before any pageblock is isolated.
                PageState::Pcp | PageState::Held => {
                    has_free = true;
                    i += 1;
                }
                PageState::Head => {
                    if !page.owner().is_movable() {
                        return Err(start + i);
                    }
                    i += 1 << page.order();
                }
                // `start` inside a block: judge the block that covers it.
                PageState::Tail => {
                    let b = self.block_at(start + i);
                    let movable = match b.state {
                        PageState::Buddy => {
                            has_free = true;
                            true
                        }
                        PageState::Head => self
                            .page(b.head)
                            .is_some_and(|head| head.owner().is_movable()),
                        _ => false,
                    };
                    if !movable {
                        return Err(start + i);
                    }
                    i = b.end() - start;
                }
                PageState::Hole | PageState::Reserved => return Err(start + i),
            }
        }
        Ok(has_free)
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
        // Held CMA frames are on no list for isolation to move: lend them first.
        self.lend_held_range(start, end);
        for block in blocks(start, end) {
            let (lo, hi) = (block.max(start), (block + PAGEBLOCK_NR_PAGES).min(end));
            let current = self.pageblock_migratetype(block.max(self.start_pfn()));
            let scan = if current == Some(MigrateType::Isolate) {
                Err(lo)
            } else if restore_to == MigrateType::Cma && current == Some(MigrateType::Cma) {
                // As Linux's `has_unmovable_pages`: a Cma pageblock holds only movable pages
                // and contiguous allocations (nothing else is ever allocated from it), so a
                // CMA request skips the scan; migration refuses what will not move.
                Ok(true)
            } else {
                self.scan_for_isolation(lo, hi)
            };
            match scan {
                Err(pfn) => {
                    self.undo_isolate_page_range(start, block, restore_to);
                    return Err(MmError::Busy { pfn });
                }
                // The range covers the whole pageblock and the scan met no free frame (a
                // full pageblock): no free block to move, only the type changes.
                Ok(false) if lo == block && hi == block + PAGEBLOCK_NR_PAGES => {
                    self.retype_full_pageblock(block, MigrateType::Isolate)
                }
                Ok(_) => self.retype_pageblock(block, MigrateType::Isolate),
            }
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

    /// The last step of `alloc_contig_range`: if every pageblock covering `[start, end)` is
    /// isolated and every frame of it is either free or already taken (an order-0 block
    /// owned by `ours`, see [`Zone::queue_order0_migrations`]), take the free ones as such
    /// blocks allocated as `mt` and return `true`; otherwise take nothing and
    /// return `false` (the caller frees what was taken). `taken` is how many frames of the
    /// range the caller took during migration: when that is all of them (each frame is
    /// taken once, and an undone take is uncounted), there is nothing left to check.
    #[inline(never)]
    pub(crate) fn take_isolated_range(
        &mut self,
        start: Pfn,
        end: Pfn,
        (mt, ours): (MigrateType, Owner),
        taken: usize,
    ) -> bool {
        if start >= end || !self.contains(start) || end > self.end_pfn() {
            return false;
        }
        if blocks(start, end)
            .any(|b| self.pageblock_migratetype(b.max(start)) != Some(MigrateType::Isolate))
        {
            return false;
        }
        if taken == end - start {
            return true;
        }
        let mut pfn = start;
        while pfn < end {
            if self
                .page(pfn)
                .is_some_and(|p| p.is_order0_head() && p.owner() == ours)
            {
                pfn += 1;
                continue;
            }
            // A free block, or the tail of one straddling `start`.
            let b = self.block_at(pfn);
            if b.state != PageState::Buddy {
                return false;
            }
            pfn = b.end();
        }
        self.take_free_range(start, end, Taken::Contig(mt, ours));
        true
    }

    /// Undo the takes of a failed `alloc_contig_range`: free every order-0 block of
    /// `[start, end)` owned by `ours`, the call's own [`Owner::contig`].
    pub(crate) fn free_taken_in_range(&mut self, start: Pfn, end: Pfn, ours: Owner) {
        let (start, end) = (start.max(self.start_pfn()), end.min(self.end_pfn()));
        let mut pfn = start;
        while pfn < end {
            let taken = |zone: &Zone<'_>, p: Pfn| {
                zone.page(p)
                    .is_some_and(|pg| pg.is_order0_head() && pg.owner() == ours)
            };
            if !taken(self, pfn) {
                // A free or foreign block holds none of ours (ours are order-0 blocks):
                // skip it whole instead of frame by frame.
                pfn = self.block_at(pfn).end().max(pfn + 1);
                continue;
            }
            let mut run_end = pfn + 1;
            while run_end < end && taken(self, run_end) {
                run_end += 1;
            }
            self.free_order0_run(pfn, run_end);
            pfn = run_end;
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
