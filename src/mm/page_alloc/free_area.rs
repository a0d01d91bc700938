//! The free lists, `free_area[order].free_list[migratetype]`: pushing a block on its list
//! and unlinking one.
//!
//! # Theory of operation
//!
//! Each list is intrusive and doubly linked through the zone's `Page` array by
//! zone-relative frame indices (`NIL` ends a list), so pushing a block and unlinking one from
//! anywhere in a list are O(1) and never allocate. A block is pushed at the head. Besides
//! the links, three counters are kept in step: blocks per order and type, blocks per order
//! (`nr_free`), and free pages per type. The lists know nothing of merging, pageblocks or
//! watermarks; the callers decide which list a block belongs on.
//!
//! A MAX_ORDER block in a zone with PASR goes through `pasr.rs` instead (per-span counts
//! and, when steering, per-span lists): below max order that costs one compare.
#![forbid(unsafe_code)]

use super::Zone;
use crate::mm::page::NIL;
use crate::mm::{MigrateType, PageState, Pfn, MAX_ORDER};

impl Zone<'_> {
    #[inline]
    pub(super) fn add_to_free_list(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
        if order == MAX_ORDER && self.pasr_add_max_block(pfn, mt) {
            return;
        }
        let i = (pfn - self.start_pfn) as u32;
        let area = &mut self.free_area[order];
        let head = area.head[mt.index()];
        area.head[mt.index()] = i;
        area.nr_free += 1;
        area.nr_by_type[mt.index()] += 1;
        self.free_by_type[mt.index()] += 1 << order;
        if head != NIL {
            self.pages[head as usize].set_prev(i);
        }
        let page = &mut self.pages[i as usize];
        page.set(PageState::Buddy, order, mt);
        page.set_links(NIL, head);
    }

    /// Unlink a free block; its state is left for the caller to overwrite.
    #[inline]
    pub(super) fn del_from_free_list(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
        if order == MAX_ORDER && self.pasr_del_max_block(pfn, mt) {
            return;
        }
        let i = pfn - self.start_pfn;
        let (prev, next) = (self.pages[i].prev(), self.pages[i].next());
        if prev != NIL {
            self.pages[prev as usize].set_next(next);
        } else {
            self.free_area[order].head[mt.index()] = next;
        }
        if next != NIL {
            self.pages[next as usize].set_prev(prev);
        }
        let area = &mut self.free_area[order];
        area.nr_free -= 1;
        area.nr_by_type[mt.index()] -= 1;
        self.free_by_type[mt.index()] -= 1 << order;
    }
}
