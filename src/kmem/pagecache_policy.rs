//! The page cache's decisions, apart from its pages: which blocks are cached in which
//! frame, which hold data the store has not seen (dirty), which version each holds, and
//! which clean pages direct reclaim drops.
//!
//! # Theory of operation
//!
//! [`BlockTable`] is one entry per block of the store: the frame caching it (or none), the
//! version the store holds, the version the cached page holds (ahead of the store while
//! dirty) and whether reclaim dropped it since its last read (the next miss is then a
//! re-read). [`super::pagecache::PageCache`] does the hardware half (allocating, mapping,
//! filling and checking frames) and asks the table what to do.
//!
//! Reclaim is a clock: [`BlockTable::shrink_clean`] resumes where the previous scan
//! stopped, so repeated direct reclaim does not rescan block 0 first. It makes two passes:
//! the first drops only clean pages whose frame the caller prefers (those outside CMA),
//! the second any clean page. Dirty pages are never dropped (their data exists nowhere
//! else); they migrate instead. Nothing here touches memory: the table is plain data and
//! is unit-tested on the host.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use crate::mm::Pfn;

/// The frame field of a block that is not cached.
const NOT_CACHED: u32 = u32::MAX;

/// Per-block state: store version, cached frame, flags.
#[derive(Clone, Copy)]
struct Block {
    pfn: u32,
    /// Version currently in the store.
    stored: u32,
    /// Version the cached page holds (== stored unless dirty).
    cached: u32,
    dirty: bool,
    /// Was dropped by reclaim since it was last read: the next miss is a re-read.
    reclaimed: bool,
}

const EMPTY_BLOCK: Block = Block {
    pfn: NOT_CACHED,
    stored: 0,
    cached: 0,
    dirty: false,
    reclaimed: false,
};

/// The page cache's state over a store of blocks (see the module header).
pub struct BlockTable {
    blocks: Vec<Block>,
    cached_pages: usize,
    dirty_pages: usize,
    /// Where direct reclaim resumes, so repeated shrinking does not rescan from block 0.
    clock: usize,
    /// Clean pages dropped by reclaim, ever.
    pub reclaimed: u64,
    /// Misses on blocks reclaim had dropped, ever.
    pub rereads: u64,
}

impl BlockTable {
    pub const fn new() -> BlockTable {
        BlockTable {
            blocks: Vec::new(),
            cached_pages: 0,
            dirty_pages: 0,
            clock: 0,
            reclaimed: 0,
            rereads: 0,
        }
    }

    /// Size the store at `blocks` never-written blocks; a failed reservation leaves an
    /// empty store (reads then fail cleanly).
    pub fn init_store(&mut self, blocks: usize) {
        if self.blocks.try_reserve_exact(blocks).is_ok() {
            self.blocks.resize(blocks, EMPTY_BLOCK);
        }
    }

    /// Blocks in the store.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn cached_pages(&self) -> usize {
        self.cached_pages
    }

    pub fn dirty_pages(&self) -> usize {
        self.dirty_pages
    }

    pub fn clean_pages(&self) -> usize {
        self.cached_pages - self.dirty_pages
    }

    /// The frame caching `block`; `None` if it is not cached or past the end.
    #[inline(always)]
    pub fn frame(&self, block: usize) -> Option<Pfn> {
        match self.blocks.get(block) {
            Some(b) if b.pfn != NOT_CACHED => Some(b.pfn as Pfn),
            _ => None,
        }
    }

    /// Does the table agree that `block` is cached in `pfn`? (What migration and reclaim
    /// check before touching a page mm says belongs to the cache.)
    #[inline(always)]
    pub fn holds(&self, block: usize, pfn: Pfn) -> bool {
        self.blocks.get(block).map(|b| b.pfn) == Some(pfn as u32)
    }

    /// The version the cached page of `block` holds (what its content must be).
    pub fn cached_version(&self, block: usize) -> u32 {
        self.blocks[block].cached
    }

    /// A miss on `block` was filled into `pfn`: it is cached and clean, at the store's
    /// version, which is returned (the content to fill the page with). A miss on a block
    /// reclaim had dropped counts as a re-read.
    pub fn insert(&mut self, block: usize, pfn: Pfn) -> u32 {
        let b = &mut self.blocks[block];
        b.pfn = pfn as u32;
        b.cached = b.stored;
        b.dirty = false;
        if b.reclaimed {
            b.reclaimed = false;
            self.rereads += 1;
        }
        self.cached_pages += 1;
        b.cached
    }

    /// The cached `block` is modified: it moves to a version newer than both what it held
    /// and what the store holds, and stays dirty until written back. Returns that version.
    pub fn modify(&mut self, block: usize) -> u32 {
        let b = &mut self.blocks[block];
        b.cached = b.cached.wrapping_add(1).max(b.stored.wrapping_add(1));
        if !b.dirty {
            b.dirty = true;
            self.dirty_pages += 1;
        }
        b.cached
    }

    /// Write-back: every dirty cached block for which `intact(block, version)` says the
    /// page still holds what was written becomes clean, its version now the store's.
    /// Returns how many were cleaned.
    pub fn writeback(&mut self, mut intact: impl FnMut(usize, u32) -> bool) -> usize {
        let mut cleaned = 0;
        for block in 0..self.blocks.len() {
            let b = self.blocks[block];
            if b.pfn == NOT_CACHED || !b.dirty {
                continue;
            }
            if intact(block, b.cached) {
                let b = &mut self.blocks[block];
                b.stored = b.cached;
                b.dirty = false;
                self.dirty_pages -= 1;
                cleaned += 1;
            }
        }
        cleaned
    }

    /// `block` is no longer cached (its page was dropped); the next read is a re-read.
    fn forget(&mut self, block: usize) {
        let b = &mut self.blocks[block];
        b.pfn = NOT_CACHED;
        b.reclaimed = true;
        self.cached_pages -= 1;
    }

    /// Direct reclaim: choose up to `count` clean pages by the clock, those whose frame
    /// satisfies `prefer(ctx, pfn)` in a first pass, any clean one in a second; each is
    /// forgotten, then handed to `drop(ctx, block, pfn)` to unmap and free. Returns how
    /// many were dropped.
    pub fn shrink_clean<C: ?Sized>(
        &mut self,
        ctx: &mut C,
        count: usize,
        prefer: impl Fn(&C, Pfn) -> bool,
        mut drop: impl FnMut(&mut C, usize, Pfn),
    ) -> usize {
        let n = self.blocks.len();
        let mut dropped = 0;
        for pass in 0..2 {
            let mut visited = 0;
            while dropped < count && visited < n {
                let block = self.clock % n;
                self.clock = (self.clock + 1) % n;
                visited += 1;
                let b = self.blocks[block];
                if b.pfn == NOT_CACHED || b.dirty {
                    continue;
                }
                if pass == 0 && !prefer(ctx, b.pfn as Pfn) {
                    continue;
                }
                self.forget(block);
                drop(ctx, block, b.pfn as Pfn);
                self.reclaimed += 1;
                dropped += 1;
            }
        }
        dropped
    }

    /// `Migrator::reclaim`: may the clean page of `block` in `pfn` be dropped? If so it is
    /// forgotten and counted, and the caller unmaps it (mm frees the frame).
    pub fn reclaim(&mut self, block: usize, pfn: Pfn) -> bool {
        match self.blocks.get(block) {
            Some(b) if b.pfn == pfn as u32 && !b.dirty => {
                self.forget(block);
                self.reclaimed += 1;
                true
            }
            _ => false,
        }
    }

    /// [`BlockTable::reclaim`] for a page whose unmapping can fail: if the clean page of
    /// `block` is in `pfn`, `unmap()` is asked to remove its mapping, and only when it did
    /// is the block forgotten and counted. `false` (nothing changed): dirty, not the
    /// cache's frame, or not unmapped.
    #[inline(always)]
    pub fn reclaim_unmapped(
        &mut self,
        block: usize,
        pfn: Pfn,
        unmap: impl FnOnce() -> bool,
    ) -> bool {
        match self.blocks.get(block) {
            Some(b) if b.pfn == pfn as u32 && !b.dirty && unmap() => {
                self.forget(block);
                self.reclaimed += 1;
                true
            }
            _ => false,
        }
    }

    /// Migration moved the page of `block` to `dst`.
    pub fn migrated(&mut self, block: usize, dst: Pfn) {
        if let Some(b) = self.blocks.get_mut(block) {
            b.pfn = dst as u32;
        }
    }

    /// Every cached block with its frame and the version its page must hold.
    pub fn cached(&self) -> impl Iterator<Item = (usize, Pfn, u32)> + '_ {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.pfn != NOT_CACHED)
            .map(|(block, b)| (block, b.pfn as Pfn, b.cached))
    }
}

impl Default for BlockTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A table of `n` blocks with `cached[i]` cached in frame `100 + i`.
    fn table(n: usize, cached: &[usize]) -> BlockTable {
        let mut t = BlockTable::new();
        t.init_store(n);
        for &block in cached {
            t.insert(block, 100 + block);
        }
        t
    }

    /// Run `shrink_clean` with `prefer`, returning the (block, pfn) pairs dropped in order.
    fn shrink(t: &mut BlockTable, count: usize, prefer: impl Fn(Pfn) -> bool) -> Vec<(usize, Pfn)> {
        let mut dropped = Vec::new();
        let n = t.shrink_clean(
            &mut dropped,
            count,
            |_, pfn| prefer(pfn),
            |out: &mut Vec<(usize, Pfn)>, block, pfn| out.push((block, pfn)),
        );
        assert_eq!(n, dropped.len());
        dropped
    }

    #[test]
    fn reads_cache_at_the_store_version_and_count_rereads() {
        let mut t = table(8, &[]);
        assert_eq!(t.frame(3), None);
        assert_eq!(t.insert(3, 42), 0, "a never-written block is version 0");
        assert_eq!((t.frame(3), t.cached_pages(), t.rereads), (Some(42), 1, 0));
        assert!(t.holds(3, 42) && !t.holds(3, 43) && !t.holds(99, 42));
        assert!(t.reclaim(3, 42));
        assert_eq!((t.frame(3), t.cached_pages(), t.reclaimed), (None, 0, 1));
        t.insert(3, 50);
        assert_eq!(t.rereads, 1, "the miss after reclaim is a re-read");
        t.insert(4, 51);
        assert_eq!(t.rereads, 1, "a first read is not");
        assert_eq!(t.frame(100), None, "past the end is not cached");
    }

    #[test]
    fn writes_move_ahead_of_the_store_until_written_back() {
        let mut t = table(4, &[0, 1]);
        assert_eq!(t.modify(0), 1);
        assert_eq!(t.modify(0), 2, "each write is a new version");
        assert_eq!((t.dirty_pages(), t.clean_pages()), (1, 1));
        // Write-back of a page that no longer holds what was written keeps it dirty.
        assert_eq!(t.writeback(|_, _| false), 0);
        assert_eq!(t.dirty_pages(), 1);
        let mut seen = Vec::new();
        assert_eq!(
            t.writeback(|block, version| {
                seen.push((block, version));
                true
            }),
            1
        );
        assert_eq!(
            seen,
            vec![(0, 2)],
            "only dirty pages are checked, at their version"
        );
        assert_eq!(t.dirty_pages(), 0);
        // Dropped and re-read, the block comes back at the version written back.
        assert!(t.reclaim(0, 100));
        assert_eq!(t.insert(0, 7), 2);
        assert_eq!(t.modify(0), 3);
    }

    #[test]
    fn dirty_pages_are_never_reclaimed() {
        let mut t = table(4, &[0, 1, 2]);
        t.modify(1);
        assert!(!t.reclaim(1, 101), "dirty");
        assert!(!t.reclaim(0, 999), "not the frame the cache holds");
        assert!(!t.reclaim(3, 103), "not cached");
        assert_eq!(
            shrink(&mut t, usize::MAX, |_| true),
            vec![(0, 100), (2, 102)]
        );
        assert_eq!(
            (t.cached_pages(), t.dirty_pages(), t.frame(1)),
            (1, 1, Some(101))
        );
    }

    #[test]
    fn shrink_prefers_then_falls_back_and_resumes_where_it_stopped() {
        let mut t = table(6, &[0, 1, 2, 3, 4, 5]);
        // Odd frames are preferred (say: outside CMA); two are wanted.
        let odd = |pfn: Pfn| pfn % 2 == 1;
        assert_eq!(shrink(&mut t, 2, odd), vec![(1, 101), (3, 103)]);
        // The clock resumes after block 3: block 5 is the next preferred one, then the
        // second pass takes any clean page, from where the first pass left the clock.
        assert_eq!(shrink(&mut t, 3, odd), vec![(5, 105), (4, 104), (0, 100)]);
        assert_eq!(shrink(&mut t, 5, odd), vec![(2, 102)], "only one left");
        assert_eq!(t.cached_pages(), 0);
        assert_eq!(t.reclaimed, 6);
        assert_eq!(shrink(&mut t, 5, odd), vec![]);
    }

    #[test]
    fn reclaim_unmapped_forgets_only_clean_pages_it_could_unmap() {
        let mut t = table(4, &[0, 1, 2]);
        t.modify(1);
        let asked = core::cell::RefCell::new(Vec::new());
        let unmap = |block: usize, ok: bool| {
            asked.borrow_mut().push(block);
            ok
        };
        assert!(!t.reclaim_unmapped(1, 101, || unmap(1, true)), "dirty");
        assert!(
            !t.reclaim_unmapped(0, 999, || unmap(0, true)),
            "wrong frame"
        );
        assert!(!t.reclaim_unmapped(3, 103, || unmap(3, true)), "not cached");
        assert!(
            !t.reclaim_unmapped(9, 109, || unmap(9, true)),
            "past the end"
        );
        assert!(
            asked.borrow().is_empty(),
            "nothing to unmap for pages that stay"
        );
        assert!(
            !t.reclaim_unmapped(2, 102, || unmap(2, false)),
            "unmap failed"
        );
        assert_eq!(
            (t.frame(2), t.cached_pages(), t.reclaimed),
            (Some(102), 3, 0)
        );
        assert!(t.reclaim_unmapped(0, 100, || unmap(0, true)));
        assert_eq!((t.frame(0), t.cached_pages(), t.reclaimed), (None, 2, 1));
        assert_eq!(*asked.borrow(), vec![2, 0]);
        t.insert(0, 7);
        assert_eq!(t.rereads, 1, "a dropped block's next read is a re-read");
    }

    #[test]
    fn migration_moves_the_frame_and_reclaim_follows_it() {
        let mut t = table(2, &[1]);
        t.migrated(1, 7);
        assert_eq!(t.frame(1), Some(7));
        assert!(!t.reclaim(1, 101), "the old frame is no longer the cache's");
        assert!(t.reclaim(1, 7));
        t.migrated(9, 8); // past the end: ignored
    }

    #[test]
    fn cached_lists_frames_and_versions() {
        let mut t = table(4, &[2, 0]);
        t.modify(2);
        let cached: Vec<_> = t.cached().collect();
        assert_eq!(cached, vec![(0, 100, 0), (2, 102, 1)]);
    }

    #[test]
    fn an_empty_store_caches_nothing() {
        let mut t = BlockTable::new();
        assert!(t.is_empty());
        assert_eq!(shrink(&mut t, 10, |_| true), vec![]);
        assert_eq!(t.writeback(|_, _| true), 0);
    }
}
