//! CMA pageblocks held back from the buddy until it needs them: lending on demand, and
//! contiguous allocations from held memory that touch no free list.
//!
//! # Theory of operation
//!
//! An activated CMA area lends its pages to movable allocations, but nothing obliges it to
//! lend them before anyone asks. Splitting a 4 MiB free block to hand out one page lists
//! the ten pieces that remain, and those list operations were most of what a small
//! `cma_alloc` from an idle area cost. So a zone without PASR keeps each activated CMA
//! pageblock *held*: its free frames are in state [`PageState::Held`], on no list, and the
//! zone counts them per pageblock (`held[i]`, or `NOT_HELD`) and in total (`held_free`).
//!
//! - Counting: held frames are free CMA memory in every counter (watermarks, the CMA
//!   balance, `MemFree`, `CmaFree`), and the reports' free blocks per order include them as
//!   the blocks lending would list ([`Zone::held_blocks`]), so every report reads as if the
//!   pages were on the lists.
//! - Lending: when a request that may use CMA finds the Cma lists empty, the zone lends
//!   the highest held pageblock that has free frames (first-fit `cma_alloc` starts low, so
//!   the pageblocks it would take stay held longest) and tries again. Lending frees the
//!   pageblock's held runs into the buddy with the ordinary merging, so a lent pageblock is
//!   exactly what it would have been had it never been held. Isolating, reserving or
//!   retyping a held pageblock lends it first, so everything outside this file meets held
//!   frames only as free frames it leaves alone.
//! - Taking: a contiguous range entirely in held pageblocks, every frame `Held`, is taken
//!   by rewriting those frames' metadata ([`Zone::take_held_range`]): no list, no split.
//!   Frames released from a held pageblock become `Held` again
//!   ([`Zone::free_order0_run`]), so an idle area stays held across allocations.
//! - A lent pageblock is never held again: taking it back would cost list work on the
//!   release path for a gain only the next allocation there sees.
//! - PASR counts and steers free MAX_ORDER blocks on lists, so a zone with PASR holds
//!   nothing: enabling it lends every held pageblock, and activation with it on lends at
//!   once (the behaviour before this file).
#![forbid(unsafe_code)]

use alloc::vec;
use core::ops::Range;

use super::{max_aligned_order, Zone};
use crate::mm::{
    pageblock_start_pfn, MigrateType, Owner, Page, PageState, Pfn, MAX_ORDER, NR_PAGE_ORDERS,
    PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
};

/// What [`Zone::take_held_range`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeldTake {
    Taken,
    /// A frame of the range is allocated.
    Busy,
    /// A pageblock of the range is not held.
    NotHeld,
}

/// `held[i]` of a pageblock that is not held.
pub(super) const NOT_HELD: u16 = u16::MAX;

const _: () = assert!(PAGEBLOCK_NR_PAGES < NOT_HELD as usize);
const _: () = assert!(MAX_ORDER == PAGEBLOCK_ORDER + 1);

impl Zone<'_> {
    #[inline]
    pub(super) fn held_index(&self, pfn: Pfn) -> usize {
        (pfn >> PAGEBLOCK_ORDER) - self.first_block
    }

    /// Whether the pageblock of `pfn` is held.
    #[inline]
    pub(in crate::mm) fn is_held(&self, pfn: Pfn) -> bool {
        self.held
            .get(self.held_index(pfn))
            .is_some_and(|&n| n != NOT_HELD)
    }

    /// Free frames in held pageblocks.
    #[inline]
    pub fn held_free_pages(&self) -> usize {
        self.held_free
    }

    /// Number of held pageblocks.
    #[inline]
    pub fn held_pageblocks(&self) -> usize {
        self.nr_held
    }

    /// Activation's hand-over of `[start, end)` (pageblock aligned, every frame reserved,
    /// pageblocks already typed Cma): every frame becomes `Held` and managed.
    pub(super) fn hold_cma_range(&mut self, start: Pfn, end: Pfn) {
        if self.held.is_empty() {
            let blocks = super::nr_pageblocks(self.start_pfn, self.end_pfn - self.start_pfn);
            self.held = vec![NOT_HELD; blocks];
        }
        for pfn in start..end {
            let page = self.pg_mut(pfn);
            page.set(PageState::Held, 0, MigrateType::Cma);
            page.set_owner(Owner::NONE);
        }
        for block in (start..end).step_by(PAGEBLOCK_NR_PAGES) {
            let i = self.held_index(block);
            self.held[i] = PAGEBLOCK_NR_PAGES as u16;
            self.nr_held += 1;
        }
        self.managed_pages += end - start;
        self.held_free += end - start;
    }

    /// Lend the pageblock at index `i` (held): its held runs are freed into the buddy with
    /// merging, and it stops being held.
    fn lend_pageblock(&mut self, i: usize) {
        let (lo, hi) = self.pageblock_frames(i);
        self.held_free -= self.held[i] as usize;
        self.held[i] = NOT_HELD;
        self.nr_held -= 1;
        let mut pfn = lo;
        while let Some(run) = self.next_held_run(pfn, hi) {
            for p in run.clone() {
                self.pg_mut(p).set_state(PageState::Tail);
            }
            self.free_pieces(run.start, run.end);
            pfn = run.end;
        }
    }

    /// The zone's frames of the pageblock at index `i`.
    fn pageblock_frames(&self, i: usize) -> (Pfn, Pfn) {
        let block = (self.first_block + i) << PAGEBLOCK_ORDER;
        (
            block.max(self.start_pfn),
            (block + PAGEBLOCK_NR_PAGES).min(self.end_pfn),
        )
    }

    /// The first run of `Held` frames in `[from, hi)`.
    fn next_held_run(&self, from: Pfn, hi: Pfn) -> Option<Range<Pfn>> {
        let start = (from..hi).find(|&p| self.pg(p).is_held())?;
        let end = (start..hi).find(|&p| !self.pg(p).is_held()).unwrap_or(hi);
        Some(start..end)
    }

    /// Lend every held pageblock covering `[start, end)`. One compare, inline, when
    /// nothing is held (every area's pageblocks lent): isolation, retyping and every
    /// contiguous allocation pass through here.
    #[inline]
    pub(in crate::mm) fn lend_held_range(&mut self, start: Pfn, end: Pfn) {
        if self.nr_held != 0 {
            self.lend_held_pageblocks(start, end);
        }
    }

    #[inline(never)]
    fn lend_held_pageblocks(&mut self, start: Pfn, end: Pfn) {
        let (start, end) = (start.max(self.start_pfn), end.min(self.end_pfn));
        if start >= end {
            return;
        }
        for i in self.held_index(start)..=self.held_index(end - 1) {
            if self.held[i] != NOT_HELD {
                self.lend_pageblock(i);
            }
        }
    }

    /// Lend every held pageblock.
    pub(in crate::mm) fn lend_all_held(&mut self) {
        for i in 0..self.held.len() {
            if self.held[i] != NOT_HELD {
                self.lend_pageblock(i);
            }
        }
    }

    /// Lend the highest held pageblock that has a free frame; `false` if none has.
    pub(super) fn lend_one_held(&mut self) -> bool {
        match self.held.iter().rposition(|&n| n != NOT_HELD && n != 0) {
            Some(i) => {
                self.lend_pageblock(i);
                true
            }
            None => false,
        }
    }

    /// A Cma block of `order` for a request that found the Cma lists empty: lend held
    /// pageblocks, highest first, until one of them gives it.
    #[inline(never)]
    pub(super) fn rmqueue_cma_lending(&mut self, order: usize) -> Option<Pfn> {
        while self.lend_one_held() {
            if let Some(pfn) = self.rmqueue_smallest(order, MigrateType::Cma) {
                return Some(pfn);
            }
        }
        None
    }

    /// Take `[start, end)` (non-empty, inside the zone) as order-0 frames allocated as `mt`
    /// for `owner` if every pageblock it covers is held and every frame of it `Held`.
    /// Anything else changes nothing: [`HeldTake::NotHeld`] when a pageblock is not held
    /// (the range may still be free on the lists), [`HeldTake::Busy`] when a frame is
    /// allocated. A pageblock whose count says every frame is held needs no look at its
    /// frames.
    #[inline]
    pub(super) fn take_held_range(
        &mut self,
        start: Pfn,
        end: Pfn,
        mt: MigrateType,
        owner: Owner,
    ) -> HeldTake {
        if self.nr_held == 0 {
            return HeldTake::NotHeld;
        }
        let (first, last) = (self.held_index(start), self.held_index(end - 1));
        // Most requests lie in one pageblock: one count to look at and to update.
        if first == last {
            let Some(&n) = self.held.get(first) else {
                return HeldTake::NotHeld;
            };
            if n == NOT_HELD {
                return HeldTake::NotHeld;
            }
            if n as usize != PAGEBLOCK_NR_PAGES
                && !self.memmap(start, end).iter().all(Page::is_held)
            {
                return HeldTake::Busy;
            }
            self.held[first] = n - (end - start) as u16;
            self.write_taken(start, end, mt, owner);
            return HeldTake::Taken;
        }
        let Some(counts) = self.held.get(first..=last) else {
            return HeldTake::NotHeld;
        };
        let mut pfn = start;
        for &n in counts {
            if n == NOT_HELD {
                return HeldTake::NotHeld;
            }
            let next = (pageblock_start_pfn(pfn) + PAGEBLOCK_NR_PAGES).min(end);
            if n as usize != PAGEBLOCK_NR_PAGES && !self.memmap(pfn, next).iter().all(Page::is_held)
            {
                return HeldTake::Busy;
            }
            pfn = next;
        }
        self.count_held(start, end, |n, frames| n - frames);
        self.write_taken(start, end, mt, owner);
        HeldTake::Taken
    }

    /// Mark held frames `[start, end)` allocated (their pageblocks' counts already
    /// updated).
    #[inline]
    fn write_taken(&mut self, start: Pfn, end: Pfn, mt: MigrateType, owner: Owner) {
        let lo = start - self.start_pfn;
        for page in self.pages[lo..lo + (end - start)].iter_mut() {
            page.set(PageState::Head, 0, mt);
            page.set_owner(owner);
        }
        self.held_free -= end - start;
    }

    /// Give allocated order-0 frames `[lo, hi)` of held pageblocks back as `Held`.
    pub(super) fn release_to_held(&mut self, lo: Pfn, hi: Pfn) {
        for pfn in lo..hi {
            let page = self.pg_mut(pfn);
            page.set(PageState::Held, 0, MigrateType::Cma);
            page.set_owner(Owner::NONE);
        }
        self.held_free += hi - lo;
        self.count_held(lo, hi, |n, frames| n + frames);
    }

    /// Apply `update(count, frames)` to the held count of each pageblock `[lo, hi)` covers,
    /// with the number of its frames in the range.
    #[inline]
    fn count_held(&mut self, lo: Pfn, hi: Pfn, update: impl Fn(u16, u16) -> u16) {
        let first = self.held_index(lo);
        let mut pfn = lo;
        for count in self.held[first..].iter_mut() {
            if pfn >= hi {
                break;
            }
            let next = (pageblock_start_pfn(pfn) + PAGEBLOCK_NR_PAGES).min(hi);
            *count = update(*count, (next - pfn) as u16);
            pfn = next;
        }
    }

    /// The free blocks per order that lending every held pageblock would list (pairs of
    /// entirely free held pageblocks merge into MAX_ORDER blocks; merging with lent
    /// neighbours is not counted): what the reports add to the lists' counts.
    pub fn held_blocks(&self) -> [usize; NR_PAGE_ORDERS] {
        let mut blocks = [0; NR_PAGE_ORDERS];
        if self.held_free == 0 {
            return blocks;
        }
        let whole = |i: usize| self.held.get(i) == Some(&(PAGEBLOCK_NR_PAGES as u16));
        let mut i = 0;
        while i < self.held.len() {
            let n = self.held[i];
            let block = (self.first_block + i) << PAGEBLOCK_ORDER;
            if n == NOT_HELD || n == 0 {
                i += 1;
            } else if block & ((1 << MAX_ORDER) - 1) == 0 && whole(i) && whole(i + 1) {
                blocks[MAX_ORDER] += 1;
                i += 2;
            } else if whole(i) {
                blocks[PAGEBLOCK_ORDER] += 1;
                i += 1;
            } else {
                let (lo, hi) = self.pageblock_frames(i);
                let mut pfn = lo;
                while let Some(run) = self.next_held_run(pfn, hi) {
                    let mut p = run.start;
                    while p < run.end {
                        let order = max_aligned_order(p, run.end - p);
                        blocks[order] += 1;
                        p += 1 << order;
                    }
                    pfn = run.end;
                }
                i += 1;
            }
        }
        blocks
    }
}
