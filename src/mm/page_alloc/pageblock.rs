//! Pageblock migrate types (`get_pageblock_migratetype`, `set_pageblock_migratetype`) and
//! retyping a pageblock with its free blocks (`move_freepages_block`).
//!
//! # Theory of operation
//!
//! One byte per pageblock holds its migrate type. The zone keeps "a free block sits on the
//! list of the type of every pageblock it covers", so a retype moves the pageblock's free
//! blocks to the new type's lists. A free block larger than the pageblock is split into
//! pageblocks first; a moved block re-merges only if it is the whole pageblock (smaller ones
//! have no free buddy: the pageblock's free blocks are fully merged already). The free blocks
//! are found through the old type's lists when those are short (a full or an idle CMA area)
//! and by stepping from block head to block head through the pageblock's frames otherwise.
//! When the caller knows a pageblock holds nothing free, only the type byte changes.
#![forbid(unsafe_code)]

use core::ops::Range;

use super::{Block, Zone};
use crate::mm::page::NIL;
use crate::mm::{
    pageblock_start_pfn, MigrateType, MmError, PageState, Pfn, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
};

/// Most free blocks a pageblock retype looks up through the free lists rather than by
/// walking the pageblock's 512 frames (a list step costs about what a frame step does).
pub(super) const LISTED_BLOCKS_SCAN_LIMIT: usize = 64;

impl Zone<'_> {
    #[inline]
    pub(super) fn block_index(&self, pfn: Pfn) -> usize {
        (pfn >> PAGEBLOCK_ORDER) - self.first_block
    }

    /// Migrate type of the pageblock holding `pfn` (`get_pageblock_migratetype`).
    pub fn pageblock_migratetype(&self, pfn: Pfn) -> Option<MigrateType> {
        if self.contains(pfn) {
            Some(self.pb_type(pfn))
        } else {
            None
        }
    }

    #[inline]
    pub(in crate::mm) fn pb_type(&self, pfn: Pfn) -> MigrateType {
        MigrateType::from_u8(self.pageblock_types[self.block_index(pfn)])
            .unwrap_or(MigrateType::Unmovable)
    }

    #[inline]
    pub(super) fn set_pb_type_raw(&mut self, pfn: Pfn, mt: MigrateType) {
        let i = self.block_index(pfn);
        self.pageblock_types[i] = mt as u8;
    }

    /// Retype every pageblock of a block that is off the free lists (`change_pageblock_range`).
    pub(super) fn change_pageblock_range(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
        let mut p = pfn;
        while p < pfn + (1 << order) {
            self.set_pb_type_raw(p, mt);
            p += PAGEBLOCK_NR_PAGES;
        }
    }

    pub(in crate::mm) fn block_touches_cma(&self, pfn: Pfn, order: usize) -> bool {
        (pfn..pfn + (1 << order))
            .step_by(PAGEBLOCK_NR_PAGES)
            .any(|p| self.pb_type(p) == MigrateType::Cma)
    }

    /// Retype one pageblock whose free blocks are all below pageblock order and move them to
    /// the new type's lists (`__move_freepages_block`).
    pub(super) fn move_freepages_block(&mut self, block: Pfn, mt: MigrateType) {
        self.set_pb_type_raw(block, mt);
        let end = (block + PAGEBLOCK_NR_PAGES).min(self.end_pfn);
        let mut pfn = block.max(self.start_pfn);
        while pfn < end {
            let b = self.block_at(pfn);
            if b.state == PageState::Buddy {
                let old = self.pg(b.head).migratetype();
                self.del_from_free_list(b.head, b.order, old);
                self.add_to_free_list(b.head, b.order, mt);
            }
            pfn = b.end();
        }
    }

    /// Retype a pageblock and move its free blocks to the new type's lists, merging them
    /// with compatible neighbours (`move_freepages_block` + `unset_migratetype_isolate`'s
    /// re-merge). A free block larger than a pageblock covering it is split first, so the
    /// invariant "a free block's pageblocks share its list type" holds throughout.
    pub fn set_pageblock_migratetype(&mut self, pfn: Pfn, mt: MigrateType) -> Result<(), MmError> {
        if !self.contains(pfn) {
            return Err(MmError::OutOfZone { pfn });
        }
        self.retype_pageblock(pageblock_start_pfn(pfn), mt);
        Ok(())
    }

    pub(in crate::mm) fn retype_pageblock(&mut self, block: Pfn, mt: MigrateType) {
        let start = block.max(self.start_pfn);
        let end = (block + PAGEBLOCK_NR_PAGES).min(self.end_pfn);
        if self.pb_type(start) == mt {
            return;
        }
        // A held pageblock's free frames are on no list to move (`held.rs`).
        self.lend_held_range(start, end);
        // No pcp frame may sit in a Cma or Isolate pageblock (`pcp.rs`).
        if !mt.is_pcptype() && self.pb_type(start).is_pcptype() {
            self.pcp_drain_range(start..end);
        }
        let covering = self.block_at(start);
        if covering.state == PageState::Buddy && covering.order > PAGEBLOCK_ORDER {
            let old = self.pg(covering.head).migratetype();
            self.del_from_free_list(covering.head, covering.order, old);
            for piece in (covering.head..covering.end()).step_by(PAGEBLOCK_NR_PAGES) {
                self.add_to_free_list(piece, PAGEBLOCK_ORDER, old);
            }
        }
        let from = self.pb_type(start);
        self.set_pb_type_raw(start, mt);
        if self.move_listed_blocks(start..end, from, mt) {
            return;
        }
        let mut pfn = start;
        while let Some(b) = self.next_free_block(pfn, end) {
            let old = self.pg(b.head).migratetype();
            self.relist_block(b.head, b.order, old, mt);
            pfn = b.end();
        }
    }

    /// Move one free block of a pageblock being retyped (order at most the pageblock's)
    /// from `from`'s list to `to`'s. Below pageblock order it cannot merge: its buddy lies
    /// in the same pageblock, whose free blocks are all on one list and fully merged
    /// (`check_invariants`), so a free buddy of its order would have merged already. Only
    /// a whole free pageblock may merge, with the neighbouring pageblock of the new type.
    #[inline]
    fn relist_block(&mut self, pfn: Pfn, order: usize, from: MigrateType, to: MigrateType) {
        self.del_from_free_list(pfn, order, from);
        if order < PAGEBLOCK_ORDER {
            self.add_to_free_list(pfn, order, to);
        } else {
            self.free_one_page(pfn, order, to);
        }
    }

    /// The first block on `mt`'s order-`order` free list whose head lies in `range`.
    fn first_listed_in(&self, range: &Range<Pfn>, order: usize, mt: MigrateType) -> Option<Pfn> {
        let mut i = self.free_area[order].head[mt.index()];
        while i != NIL {
            let pfn = self.start_pfn + i as usize;
            if range.contains(&pfn) {
                return Some(pfn);
            }
            i = self.pages[i as usize].next();
        }
        None
    }

    /// [`Zone::retype_pageblock`]'s move of the free blocks of `range` (one pageblock, no
    /// free block larger than it) from `from`'s lists to `to`'s, finding them through
    /// `from`'s lists instead of walking the pageblock's frames: cheaper whenever those
    /// lists are short, as they are for a full CMA area (nothing free) and an idle one
    /// (a few large blocks). Returns `false`, having done nothing, when the lists hold more
    /// than [`LISTED_BLOCKS_SCAN_LIMIT`] blocks; the caller walks the frames then.
    pub(super) fn move_listed_blocks(
        &mut self,
        range: Range<Pfn>,
        from: MigrateType,
        to: MigrateType,
    ) -> bool {
        let listed: usize = self.free_area[..=PAGEBLOCK_ORDER]
            .iter()
            .map(|area| area.nr_by_type[from.index()])
            .sum();
        if listed > LISTED_BLOCKS_SCAN_LIMIT {
            return false;
        }
        for order in 0..=PAGEBLOCK_ORDER {
            // Moving a block changes the list under the scan: look again from the head
            // after each move (few blocks are listed, fewer still lie in the range).
            while let Some(pfn) = self.first_listed_in(&range, order, from) {
                self.relist_block(pfn, order, from, to);
            }
        }
        true
    }

    /// The first free block listed at or after `pfn` and starting before `end`, found by
    /// stepping from block head to block head through the memmap (a few loads per
    /// allocated block: a full pageblock of order-0 pages is the common case when a range
    /// is isolated). Tails (of a block that covers `pfn`, or of one that merged behind the
    /// caller) are resolved by [`Zone::block_at`]; a free block they belong to started
    /// before `pfn` and is not returned.
    fn next_free_block(&self, pfn: Pfn, end: Pfn) -> Option<Block> {
        let pages = self.memmap(pfn, end);
        let mut i = 0;
        while let Some(page) = pages.get(i) {
            if page.is_order0_head() {
                i += 1;
                continue;
            }
            match page.state() {
                PageState::Buddy => {
                    return Some(Block {
                        head: pfn + i,
                        order: page.order(),
                        state: PageState::Buddy,
                    })
                }
                PageState::Head => i += 1 << page.order(),
                PageState::Tail => i = self.block_at(pfn + i).end().max(pfn + i + 1) - pfn,
                PageState::Hole | PageState::Reserved | PageState::Pcp | PageState::Held => i += 1,
            }
        }
        None
    }

    /// Retype a pageblock that the caller knows holds no free frame (every frame in it is
    /// allocated, reserved or a hole, as right after `alloc_contig_range` took a range
    /// covering it): with no free block to move between lists, only the type changes.
    pub(in crate::mm) fn retype_full_pageblock(&mut self, block: Pfn, mt: MigrateType) {
        let first = block.max(self.start_pfn);
        if self.contains(first) {
            self.set_pb_type_raw(first, mt);
        }
    }
}
