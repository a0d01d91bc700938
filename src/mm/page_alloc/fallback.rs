//! Fallback and pageblock stealing (`__rmqueue_fallback`, `steal_suitable_fallback`): what
//! a request does when its own free lists and (for Movable) the Cma lists are empty.
//!
//! # Theory of operation
//!
//! The request looks through the other types in [`FALLBACKS`] order, largest block first,
//! so one steal fragments as little as possible. A block of pageblock order or more is
//! claimed whole: its pageblocks are retyped to the request's type. A smaller block is
//! taken together with its whole pageblock when the request may claim (large enough, or
//! Unmovable/Reclaimable) and at least half of the pageblock is free or holds alike
//! allocations: the pageblock is retyped and its free blocks moved to the request's lists.
//! Otherwise only the block is taken and its remainder stays on its original list. A
//! Movable request that cannot claim takes the smallest block instead of breaking a large
//! one. Cma and Isolate are never fallbacks.
#![forbid(unsafe_code)]

use super::Zone;
use crate::mm::migratetype::FALLBACKS;
use crate::mm::page::NIL;
use crate::mm::{
    pageblock_start_pfn, MigrateType, PageState, Pfn, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
};

impl Zone<'_> {
    fn can_steal_fallback(order: usize, start_mt: MigrateType) -> bool {
        order >= PAGEBLOCK_ORDER / 2
            || start_mt == MigrateType::Reclaimable
            || start_mt == MigrateType::Unmovable
    }

    fn find_suitable_fallback(
        &self,
        order: usize,
        start_mt: MigrateType,
    ) -> Option<(MigrateType, bool)> {
        let area = &self.free_area[order];
        if area.nr_free == 0 {
            return None;
        }
        FALLBACKS[start_mt.index()]
            .iter()
            .find(|fb| area.head[fb.index()] != NIL)
            .map(|&fb| (fb, Self::can_steal_fallback(order, start_mt)))
    }

    /// `__rmqueue_fallback`: steal from another type, largest block first.
    pub(super) fn rmqueue_fallback(&mut self, order: usize, start_mt: MigrateType) -> Option<Pfn> {
        let mut found = None;
        for current in (order..NR_PAGE_ORDERS).rev() {
            if let Some((fb, can_steal)) = self.find_suitable_fallback(current, start_mt) {
                if !can_steal && start_mt == MigrateType::Movable && current > order {
                    // A movable request that cannot claim a block should not break up a large
                    // one: take the smallest instead.
                    found = (order..NR_PAGE_ORDERS).find_map(|o| {
                        self.find_suitable_fallback(o, start_mt)
                            .map(|(f, c)| (o, f, c))
                    });
                } else {
                    found = Some((current, fb, can_steal));
                }
                break;
            }
        }
        let (current, fb, can_steal) = found?;
        let head = self.free_area[current].head[fb.index()];
        let pfn = self.start_pfn + head as usize;
        Some(self.steal_suitable_fallback(pfn, current, order, start_mt, can_steal))
    }

    fn steal_suitable_fallback(
        &mut self,
        pfn: Pfn,
        current: usize,
        order: usize,
        start_mt: MigrateType,
        whole_block: bool,
    ) -> Pfn {
        let block_mt = self.pg(pfn).migratetype();
        if current >= PAGEBLOCK_ORDER {
            self.del_from_free_list(pfn, current, block_mt);
            self.change_pageblock_range(pfn, current, start_mt);
            self.expand(pfn, order, current, start_mt);
            return pfn;
        }
        if whole_block {
            let block = pageblock_start_pfn(pfn);
            let (free, movable) = self.pageblock_usage(block);
            let alike = if start_mt == MigrateType::Movable {
                movable
            } else if block_mt == MigrateType::Movable {
                PAGEBLOCK_NR_PAGES - (free + movable)
            } else {
                0
            };
            if free + alike >= PAGEBLOCK_NR_PAGES / 2 {
                self.move_freepages_block(block, start_mt);
                if let Some(p) = self.rmqueue_smallest(order, start_mt) {
                    return p;
                }
            }
        }
        self.del_from_free_list(pfn, current, block_mt);
        self.expand(pfn, order, current, block_mt);
        pfn
    }

    /// Free pages and pages of Movable allocations in one pageblock.
    fn pageblock_usage(&self, block: Pfn) -> (usize, usize) {
        let (mut free, mut movable) = (0, 0);
        let end = (block + PAGEBLOCK_NR_PAGES).min(self.end_pfn);
        let mut pfn = block.max(self.start_pfn);
        while pfn < end {
            let b = self.block_at(pfn);
            let overlap = b.end().min(end) - pfn;
            match b.state {
                PageState::Buddy | PageState::Held => free += overlap,
                PageState::Head if self.pg(b.head).migratetype() == MigrateType::Movable => {
                    movable += overlap
                }
                _ => {}
            }
            pfn = b.end();
        }
        (free, movable)
    }
}
