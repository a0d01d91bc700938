//! The zone's record of `alloc_contig_range`'s migrations: who owns which frame once a move
//! is queued, done or undone.
//!
//! # Theory of operation
//!
//! The frame metadata is the record. When a move is queued the zone writes its outcome at
//! once, as if it had succeeded: the owner goes to the target frame and the source becomes
//! a frame of the allocation (owned by the call's [`Owner::contig`]). The success path then
//! costs nothing more; a move that fails is undone (the source is the owner's again, the
//! target is freed). Order-0 anonymous pages are queued straight from a walk over the
//! memmap, the common case when a CMA area is emptied; larger blocks are settled after
//! their batch ran. Order-0 page cache the owner drops as the walk offers it is recorded
//! the same way: as a frame of the allocation at once.
//! The zone also keeps the call's move and reclaim buffers between calls, and hands out
//! the owner value that tells each call's frames apart.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use super::Zone;
use crate::mm::migrate::{Migrator, Move, Reclaim};
use crate::mm::{MigrateType, MmError, Owner, OwnerKind, Page, PageState, Pfn};

impl Zone<'_> {
    /// `alloc_contig_range`'s move buffer from the last call (empty the first time).
    pub(in crate::mm) fn take_move_buffer(&mut self) -> Vec<Move> {
        core::mem::take(&mut self.move_buffer)
    }

    /// Keep `buffer` for the next `alloc_contig_range` call.
    pub(in crate::mm) fn keep_move_buffer(&mut self, buffer: Vec<Move>) {
        self.move_buffer = buffer;
    }

    /// `alloc_contig_range`'s reclaim buffer from the last call (empty the first time).
    pub(in crate::mm) fn take_reclaim_buffer(&mut self) -> Vec<Reclaim> {
        core::mem::take(&mut self.reclaim_buffer)
    }

    /// Keep `buffer` for the next `alloc_contig_range` call.
    pub(in crate::mm) fn keep_reclaim_buffer(&mut self, buffer: Vec<Reclaim>) {
        self.reclaim_buffer = buffer;
    }

    /// Pages `alloc_contig_range` calls have dropped (clean page cache) so far: a caller
    /// compares it before and after a try to learn whether the try freed memory, in one
    /// load (the free count costs a sum).
    #[inline]
    pub(in crate::mm) fn contig_reclaimed(&self) -> u64 {
        self.contig_reclaimed
    }

    /// Count pages dropped by the slow path's one-at-a-time reclaim.
    pub(in crate::mm) fn note_contig_reclaimed(&mut self, pages: usize) {
        self.contig_reclaimed += pages as u64;
    }

    /// The owner a new `alloc_contig_range` call records on the frames it takes:
    /// [`Owner::contig`] of a number no call still running has, so the frames the call took
    /// can be told from those of earlier contiguous allocations (which it must never take).
    pub(in crate::mm) fn new_contig_owner(&mut self) -> Owner {
        // Ids run 1..=ID_MAX and wrap (a compare, not a division, on every call).
        self.contig_calls = if self.contig_calls >= Owner::ID_MAX {
            1
        } else {
            self.contig_calls + 1
        };
        Owner::contig(self.contig_calls)
    }

    /// `alloc_contig_range`'s fast path (see `mm/contig`): walk the frames from `pfn`
    /// towards `end` and queue a move (into `slots`, in order) for every allocated order-0
    /// anonymous page, to the next frame of `targets` (allocated, ownerless order-0 frames
    /// outside the range),
    /// once [`Migrator::prepare`] accepted it, recording it as done right away: the owner
    /// goes to the target, and the source becomes an order-0 block owned by `ours` (the
    /// call's [`Zone::new_contig_owner`]) allocated as `taken_as`. Free blocks and frames
    /// the call already took are skipped; anything else stops the walk, as do a refused
    /// `prepare`, full `slots`, or running out of targets. Returns where the walk stopped
    /// and how many moves it queued. A queued move that then fails must be undone with
    /// [`Zone::undo_queued_migration`].
    ///
    /// Recording the outcome while the walk is at the page anyway makes the success path
    /// cost nothing afterwards; this loop runs once per migrated page.
    #[inline(never)]
    pub(in crate::mm) fn queue_order0_migrations<M: Migrator + ?Sized>(
        &mut self,
        pfn: Pfn,
        end: Pfn,
        targets: &mut Range<Pfn>,
        slots: &mut [Move],
        (taken_as, ours): (MigrateType, Owner),
        migrator: &mut M,
    ) -> (Pfn, usize) {
        let start = self.start_pfn;
        let lo = pfn.clamp(start, self.end_pfn) - start;
        let hi = end.clamp(start, self.end_pfn) - start;
        let room = slots.len().min(targets.len());
        let mut i = lo;
        let mut queued = 0;
        while i < hi && queued < room {
            let page = &mut self.pages[i];
            if page.is_buddy() {
                i += 1 << page.order();
                continue;
            }
            if !page.is_order0_head() {
                break;
            }
            let owner = page.owner();
            if owner.is(OwnerKind::Anon) {
                let dst = targets.start + queued;
                // Built in place: the migrator prepares the queued record itself.
                let Some(m) = slots.get_mut(queued) else {
                    break;
                };
                *m = Move::new(start + i, dst, 0, owner);
                m.src_allocated_as = page.migratetype_raw();
                if migrator.prepare(m).is_err() {
                    // The slow path asks again and deals with the answer.
                    break;
                }
                page.set_migratetype(taken_as);
                page.set_owner(ours);
                queued += 1;
                if let Some(target) = self.pages.get_mut(dst.wrapping_sub(start)) {
                    target.set_owner(owner);
                }
            } else if owner != ours {
                break;
            }
            i += 1;
        }
        targets.start += queued;
        (start + i, queued)
    }

    /// `alloc_contig_range`'s fast path for clean page cache: walk the frames from `pfn`
    /// towards `end` and offer every allocated order-0 page of a reclaimable owner to
    /// [`Migrator::prepare_reclaim`]; each one dropped is recorded (into `slots`, in order,
    /// for [`Migrator::finish_reclaim`]) and taken right away: owned by `ours`, allocated
    /// as `taken_as`. Free blocks and frames the call already took are skipped; anything
    /// else stops the walk, as do full `slots` and a page the owner keeps (`kept`: the
    /// walk stopped there, and that page is to be migrated). Returns where the walk
    /// stopped, how many pages were dropped, and `kept`.
    ///
    /// Dropped pages never pass through the free lists: freeing them only to take them
    /// back for the allocation would cost more than the rest of reclaim together. The walk
    /// asks the owner page by page, in order, as the slow path does, so a call that fails
    /// half-way has dropped no page beyond where it stopped.
    #[inline(never)]
    pub(in crate::mm) fn take_order0_reclaimable<M: Migrator + ?Sized>(
        &mut self,
        pfn: Pfn,
        end: Pfn,
        slots: &mut [Reclaim],
        (taken_as, ours): (MigrateType, Owner),
        migrator: &mut M,
    ) -> (Pfn, usize, bool) {
        let start = self.start_pfn;
        let lo = pfn.clamp(start, self.end_pfn) - start;
        let hi = end.clamp(start, self.end_pfn) - start;
        let mut i = lo;
        let mut dropped = 0;
        while i < hi {
            let page = &mut self.pages[i];
            if page.is_buddy() {
                i += 1 << page.order();
                continue;
            }
            if !page.is_order0_head() {
                break;
            }
            let owner = page.owner();
            if owner.is(OwnerKind::PageCache) {
                let Some(slot) = slots.get_mut(dropped) else {
                    break;
                };
                *slot = Reclaim::new(start + i, owner);
                if !migrator.prepare_reclaim(slot) {
                    self.contig_reclaimed += dropped as u64;
                    return (start + i, dropped, true);
                }
                page.set_migratetype(taken_as);
                page.set_owner(ours);
                dropped += 1;
            } else if owner != ours {
                break;
            }
            i += 1;
        }
        self.contig_reclaimed += dropped as u64;
        (start + i, dropped, false)
    }

    /// The record [`Zone::queue_order0_migrations`] makes, for one order-0 move queued
    /// elsewhere; returns what `src` was allocated as (for the undo). Refused, changing
    /// nothing, unless both frames are allocated order-0 heads and `owner` is movable (so
    /// the target may sit in a Cma pageblock).
    pub(in crate::mm) fn record_order0_migration(
        &mut self,
        src: Pfn,
        dst: Pfn,
        owner: Owner,
        (taken_as, ours): (MigrateType, Owner),
    ) -> Result<u8, MmError> {
        let start = self.start_pfn;
        for pfn in [src, dst] {
            if !self
                .pages
                .get(pfn.wrapping_sub(start))
                .is_some_and(Page::is_order0_head)
            {
                return Err(MmError::NotAllocated { pfn });
            }
        }
        if !owner.is_movable() {
            return Err(MmError::PinInCma { pfn: dst });
        }
        let source = &mut self.pages[src - start];
        let allocated_as = source.migratetype_raw();
        source.set_migratetype(taken_as);
        source.set_owner(ours);
        self.pages[dst - start].set_owner(owner);
        Ok(allocated_as)
    }

    /// Undo the record [`Zone::queue_order0_migrations`] made for a move that did not
    /// happen: the source is `owner`'s again, and the target is freed.
    pub(in crate::mm) fn undo_queued_migration(&mut self, m: &Move) -> Result<(), MmError> {
        match self.pages.get_mut(m.src.wrapping_sub(self.start_pfn)) {
            Some(page) if page.is_order0_head() => {
                page.set_owner(m.owner);
                page.set_migratetype_raw(m.src_allocated_as);
            }
            _ => return Err(MmError::NotAllocated { pfn: m.src }),
        }
        self.free_pages(m.dst, 0)
    }

    /// `alloc_contig_range`'s bookkeeping for a block of `order` > 0 that migrated from
    /// `src` (at least partly inside the range) to `dst`: `owner` moves to `dst` and `src`
    /// is freed (it may straddle the range's ends, so it cannot be taken whole). Refused,
    /// changing nothing, unless both are allocated block heads of `order` and `owner` is
    /// movable (so the target may sit in a Cma pageblock).
    pub(in crate::mm) fn settle_migrated_block(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MmError> {
        let start = self.start_pfn;
        for pfn in [src, dst] {
            if !self
                .pages
                .get(pfn.wrapping_sub(start))
                .is_some_and(|p| p.state() == PageState::Head && p.order() == order)
            {
                return Err(MmError::NotAllocated { pfn });
            }
        }
        if !owner.is_movable() {
            return Err(MmError::PinInCma { pfn: dst });
        }
        self.pages[dst - start].set_owner(owner);
        self.free_pages(src, order)
    }
}
