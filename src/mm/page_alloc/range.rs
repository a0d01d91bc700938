//! Whole ranges of frames: handing RAM to the buddy (`memblock_free_all`), keeping it out
//! (reserving), turning a range into CMA, taking a range's free frames off the lists, and
//! freeing a run of order-0 frames.
//!
//! # Theory of operation
//!
//! A range rarely lines up with buddy blocks, so every operation works in maximal naturally
//! aligned blocks: freeing a range frees the largest aligned block that fits at each step
//! (merging does the rest), and taking a range splits the free blocks that straddle its
//! ends and lists their outside parts again. Those parts need no merge attempt: they are
//! the pieces of one free block, of different orders, so none has a free buddy of its own
//! order. Reserving and taking only ever touch free frames (reserving refuses a range with
//! an allocated frame), so no owner is disturbed.
#![forbid(unsafe_code)]

use core::ops::Range;

use super::held::HeldTake;
use super::{max_aligned_order, Taken, Zone};
use crate::mm::{
    pageblock_start_pfn, MigrateType, MmError, Owner, PageState, Pfn, PAGEBLOCK_NR_PAGES,
};

impl Zone<'_> {
    fn check_range(&self, range: &Range<Pfn>) -> Result<(), MmError> {
        if range.start >= range.end {
            return Err(MmError::InvalidRange {
                start: range.start,
                end: range.end,
            });
        }
        if !self.contains(range.start) {
            return Err(MmError::OutOfZone { pfn: range.start });
        }
        if range.end > self.end_pfn {
            return Err(MmError::OutOfZone { pfn: range.end - 1 });
        }
        Ok(())
    }

    /// Hand RAM to the buddy (`memblock_free_all`). Every frame in the range must be a
    /// hole or reserved. Returns the number of pages added.
    pub fn free_range(&mut self, range: Range<Pfn>) -> Result<usize, MmError> {
        self.check_range(&range)?;
        if let Some(pfn) = range
            .clone()
            .find(|&p| !matches!(self.pg(p).state(), PageState::Hole | PageState::Reserved))
        {
            return Err(MmError::AlreadyManaged { pfn });
        }
        for pfn in range.clone() {
            if self.pg(pfn).state() == PageState::Hole {
                self.present_pages += 1;
            }
            let page = self.pg_mut(pfn);
            page.set_state(PageState::Tail);
            page.set_owner(Owner::NONE);
        }
        let n = range.end - range.start;
        self.managed_pages += n;
        self.free_pieces(range.start, range.end);
        Ok(n)
    }

    /// Free `[lo, hi)` (all `Tail`, off-list) as maximal aligned blocks.
    pub(super) fn free_pieces(&mut self, mut lo: Pfn, hi: Pfn) {
        while lo < hi {
            let order = max_aligned_order(lo, hi - lo);
            self.free_block(lo, order);
            lo += 1 << order;
        }
    }

    /// List `[lo, hi)` (all `Tail`, off-list, the outside part of a split free block that
    /// was on `mt`'s lists) as maximal aligned blocks on `mt`'s lists, without merge
    /// attempts (see the module docs). `mt` is right for every piece: a free block sits on
    /// the list of the type of every pageblock it covers (`check_invariants`), so its
    /// pieces need no pageblock lookup.
    fn list_split_pieces(&mut self, mut lo: Pfn, hi: Pfn, mt: MigrateType) {
        while lo < hi {
            let order = max_aligned_order(lo, hi - lo);
            self.add_to_free_list(lo, order, mt);
            lo += 1 << order;
        }
    }

    /// Keep RAM away from the buddy: holes become reserved (present) frames, free frames are
    /// taken off the free lists (splitting blocks that straddle the range). Fails without
    /// changing anything if a frame in the range is allocated. Returns the number of free
    /// pages taken out.
    pub fn reserve_range(&mut self, range: Range<Pfn>) -> Result<usize, MmError> {
        self.check_range(&range)?;
        // Held CMA frames are free but on no list (`held.rs`): lend them to be taken below.
        self.lend_held_range(range.start, range.end);
        let mut pfn = range.start;
        while pfn < range.end {
            let b = self.block_at(pfn);
            if matches!(b.state, PageState::Head | PageState::Tail) {
                return Err(MmError::Busy {
                    pfn: b.head.max(range.start),
                });
            }
            pfn = b.end();
        }
        // Frames on the pcp are free: back to the buddy, to be taken below.
        self.pcp_drain_range(range.clone());
        for pfn in range.clone() {
            if self.pg(pfn).state() == PageState::Hole {
                self.present_pages += 1;
                self.pg_mut(pfn).set_state(PageState::Reserved);
            }
        }
        Ok(self.take_free_range(range.start, range.end, Taken::Reserved))
    }

    /// Take every free frame of `[start, end)` off the free lists, marking each as `how`;
    /// straddling blocks are split and their outside parts listed again. Frames of the range
    /// that are not free are left alone. Returns the number of frames taken.
    pub(in crate::mm) fn take_free_range(&mut self, start: Pfn, end: Pfn, how: Taken) -> usize {
        let mut taken = 0;
        let mut pfn = start;
        while pfn < end {
            // Holes, reserved, held and pcp frames are no part of a listed block: skip them
            // without the block lookup (reserving a whole bank of holes at boot meets one
            // per frame).
            if matches!(
                self.pg(pfn).state(),
                PageState::Hole | PageState::Reserved | PageState::Held | PageState::Pcp
            ) {
                pfn += 1;
                continue;
            }
            let b = self.block_at(pfn);
            if b.state == PageState::Buddy {
                let mt = self.pg(b.head).migratetype();
                self.del_from_free_list(b.head, b.order, mt);
                let (lo, hi) = (b.head.max(start), b.end().min(end));
                for p in lo..hi {
                    let page = self.pg_mut(p);
                    match how {
                        Taken::Reserved => page.set_state(PageState::Reserved),
                        Taken::Contig(alloc_mt, owner) => {
                            page.set(PageState::Head, 0, alloc_mt);
                            page.set_owner(owner);
                        }
                    }
                }
                taken += hi - lo;
                if b.head < lo {
                    self.pg_mut(b.head).set_state(PageState::Tail);
                    self.list_split_pieces(b.head, lo, mt);
                }
                if hi < b.end() {
                    self.list_split_pieces(hi, b.end(), mt);
                }
            }
            pfn = b.end();
        }
        if how == Taken::Reserved {
            self.managed_pages -= taken;
        }
        taken
    }

    /// `alloc_contig_range`'s shortcut: when every frame of `[start, end)` is free and none
    /// sits in an isolated pageblock (another call's range), take the range straight off
    /// the free lists as order-0 frames allocated as `mt` for `ours`, with no isolation and
    /// no walk. Returns whether it did; when not, nothing changed.
    pub(in crate::mm) fn take_range_if_free(
        &mut self,
        start: Pfn,
        end: Pfn,
        (mt, ours): (MigrateType, Owner),
    ) -> bool {
        if self.check_range(&(start..end)).is_err() {
            return false;
        }
        // An idle CMA area's memory is held (`held.rs`): taken without any list work. A
        // range partly in held pageblocks is taken off the lists like any other.
        match self.take_held_range(start, end, mt, ours) {
            HeldTake::Taken => return true,
            HeldTake::Busy => return false,
            HeldTake::NotHeld => self.lend_held_range(start, end),
        }
        let mut pfn = start;
        while pfn < end {
            let b = self.block_at(pfn);
            if b.state != PageState::Buddy || self.pg(b.head).migratetype() == MigrateType::Isolate
            {
                return false;
            }
            pfn = b.end();
        }
        self.take_free_range(start, end, Taken::Contig(mt, ours));
        true
    }

    /// Turn a pageblock-aligned range of RAM into CMA: take it from the buddy, retype its
    /// pageblocks as Cma, and free it back (`cma_activate_area`'s zone half).
    pub(in crate::mm) fn activate_cma_range(
        &mut self,
        start: Pfn,
        end: Pfn,
    ) -> Result<(), MmError> {
        self.check_range(&(start..end))?;
        if let Some(pfn) = (start..end).find(|&p| self.pg(p).state() == PageState::Hole) {
            return Err(MmError::Hole { pfn });
        }
        self.reserve_range(start..end)?;
        for block in (start..end).step_by(PAGEBLOCK_NR_PAGES) {
            self.set_pb_type_raw(block, MigrateType::Cma);
        }
        // Held until the buddy needs it (`held.rs`), except where PASR counts free blocks.
        if self.pasr.is_none() {
            self.hold_cma_range(start, end);
        } else {
            self.free_range(start..end)?;
        }
        self.cma_pages += end - start;
        Ok(())
    }

    /// Free a run of allocated order-0 frames as maximal aligned blocks; frames of held
    /// pageblocks become held free frames again (`held.rs`).
    pub(in crate::mm) fn free_order0_run(&mut self, lo: Pfn, hi: Pfn) {
        if self.nr_held == 0 {
            return self.free_order0_pieces(lo, hi);
        }
        let mut pfn = lo;
        while pfn < hi {
            let held = self.is_held(pfn);
            let mut end = pfn;
            while end < hi && self.is_held(end) == held {
                end = (pageblock_start_pfn(end) + PAGEBLOCK_NR_PAGES).min(hi);
            }
            if held {
                self.release_to_held(pfn, end);
            } else {
                self.free_order0_pieces(pfn, end);
            }
            pfn = end;
        }
    }

    fn free_order0_pieces(&mut self, mut lo: Pfn, hi: Pfn) {
        while lo < hi {
            let order = max_aligned_order(lo, hi - lo);
            for p in lo..lo + (1 << order) {
                let page = self.pg_mut(p);
                page.set_owner(Owner::NONE);
                if p != lo {
                    page.set_state(PageState::Tail);
                }
            }
            self.free_block(lo, order);
            lo += 1 << order;
        }
    }
}
