//! The free lists, `free_area[order].free_list[migratetype]` (`struct free_area`).
//!
//! # Theory of operation
//!
//! Each list is intrusive and doubly linked through the zone's [`Page`] array by
//! zone-relative frame indices (`NIL` ends a list), so pushing a block and unlinking one from
//! anywhere in a list are O(1) and never allocate. A block is pushed at the head. Besides
//! the links, the lists keep three counters in step: blocks per order and type, blocks per
//! order (`nr_free`), and free pages per type. The lists know nothing of merging, pageblocks
//! or watermarks; the zone decides which list a block belongs on.
#![forbid(unsafe_code)]

use crate::mm::migratetype::MIGRATE_TYPES;
use crate::mm::page::NIL;
use crate::mm::{MigrateType, Page, PageState, NR_PAGE_ORDERS};

/// One order's lists: `free_area[order]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct FreeArea {
    /// First block of each type's list (a frame index), `NIL` when empty.
    pub(super) head: [u32; MIGRATE_TYPES],
    /// Blocks on each type's list.
    pub(super) nr_by_type: [usize; MIGRATE_TYPES],
    /// Blocks on all lists of this order.
    pub(super) nr_free: usize,
}

impl FreeArea {
    const EMPTY: FreeArea = FreeArea {
        head: [NIL; MIGRATE_TYPES],
        nr_by_type: [0; MIGRATE_TYPES],
        nr_free: 0,
    };
}

/// Every order's lists, and the free pages they hold per type.
#[derive(Clone, Copy, Debug)]
pub(super) struct FreeLists {
    pub(super) area: [FreeArea; NR_PAGE_ORDERS],
    /// Free pages on each type's lists, all orders.
    pub(super) by_type: [usize; MIGRATE_TYPES],
}

impl FreeLists {
    pub(super) const EMPTY: FreeLists = FreeLists {
        area: [FreeArea::EMPTY; NR_PAGE_ORDERS],
        by_type: [0; MIGRATE_TYPES],
    };

    /// Push the block of `order` at frame index `i` on `mt`'s list, marking its head as a
    /// free block of that order and type.
    #[inline]
    pub(super) fn add(&mut self, pages: &mut [Page], i: u32, order: usize, mt: MigrateType) {
        let area = &mut self.area[order];
        let head = area.head[mt.index()];
        area.head[mt.index()] = i;
        area.nr_free += 1;
        area.nr_by_type[mt.index()] += 1;
        self.by_type[mt.index()] += 1 << order;
        if head != NIL {
            pages[head as usize].set_prev(i);
        }
        let page = &mut pages[i as usize];
        page.set(PageState::Buddy, order, mt);
        page.set_links(NIL, head);
    }

    /// Unlink the block of `order` at frame index `i` from `mt`'s list; its state is left
    /// for the caller to overwrite.
    #[inline]
    pub(super) fn del(&mut self, pages: &mut [Page], i: usize, order: usize, mt: MigrateType) {
        let (prev, next) = (pages[i].prev(), pages[i].next());
        if prev != NIL {
            pages[prev as usize].set_next(next);
        } else {
            self.area[order].head[mt.index()] = next;
        }
        if next != NIL {
            pages[next as usize].set_prev(prev);
        }
        let area = &mut self.area[order];
        area.nr_free -= 1;
        area.nr_by_type[mt.index()] -= 1;
        self.by_type[mt.index()] -= 1 << order;
    }
}
