//! The page cache over a ramdisk-like block store: clean pages are reclaimable (dropped and
//! re-read on use), dirty ones migrate.
//!
//! # Theory of operation
//!
//! The store is a block-device model: `store_blocks` blocks of 4 KiB whose content is a
//! deterministic function of (block, version). A never-written block is version 0; a
//! written-back block records its new version and the checksum word the cache page held at
//! write-back, which is the sparse overlay of written blocks. Reading a block that is not
//! cached allocates an order-0 `Gfp::MOVABLE` frame, records `Owner::new(PageCache, block)`,
//! maps it at `CACHE_WINDOW + block * 4 KiB` and fills it from the store. Writing a cached
//! block rewrites the page with the next version and marks it dirty until write-back.
//!
//! Under `alloc_contig_range`, `Migrator::prepare_reclaim` drops a clean order-0 page (unmap,
//! forget; one TLB synchronisation per batch in `Migrator::finish_reclaim`; the mm takes the
//! frame for its allocation) and `Migrator::reclaim` any clean page, and both count it; the next read of that block misses and is counted as a
//! re-read. Dirty pages cannot be dropped without losing data, so they are migrated like
//! anonymous pages. Direct reclaim ([`PageCache::shrink_clean`]) drops clean pages to make
//! room when a CMA allocation needs migration targets.
//!
//! The decisions (what is cached where, clean or dirty, which version, which page reclaim
//! drops) are [`super::pagecache_policy::BlockTable`]'s, host-tested; this file carries
//! them out on frames and mappings.

use super::anon::VerifyReport;
use super::pagecache_policy::BlockTable;
use super::pattern::PagePattern;
use super::window;
use super::{with_state, KmemError, PlaceError};
use crate::memory::mmu;
use crate::mm::{Gfp, Owner, OwnerKind, Pfn, Zone, PAGE_SHIFT, PAGE_SIZE};

/// First window address of the page cache (512 GiB into the window).
pub const CACHE_WINDOW: usize = mmu::MOVABLE_WINDOW_START + (512 << 30);
/// Blocks in the store by default: 512 MiB of 4 KiB blocks.
pub const DEFAULT_STORE_BLOCKS: usize = 1 << 17;
const STORE_SEED: u64 = 0x5eed_b10c_0000_0000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    pub store_blocks: usize,
    pub cached_pages: usize,
    pub dirty_pages: usize,
    pub reclaimed: u64,
    pub rereads: u64,
    pub migrations: u64,
}

/// The page cache: the block table's decisions carried out on real frames and mappings.
pub(crate) struct PageCache {
    table: BlockTable,
    pub(crate) migrations: u64,
}

impl PageCache {
    pub(crate) const fn new() -> PageCache {
        PageCache {
            table: BlockTable::new(),
            migrations: 0,
        }
    }

    /// Size the store; a failed reservation leaves an empty store (reads then fail cleanly).
    pub(crate) fn init_store(&mut self, blocks: usize) {
        self.table.init_store(blocks);
    }

    fn va(block: usize) -> usize {
        CACHE_WINDOW + block * PAGE_SIZE
    }

    fn pattern(block: usize, version: u32) -> PagePattern {
        PagePattern::new(STORE_SEED ^ ((version as u64) << 32) ^ block as u64)
    }

    pub(crate) fn cached_pages(&self) -> usize {
        self.table.cached_pages()
    }

    fn check_block(&self, block: usize) -> Result<(), KmemError> {
        if block >= self.table.len() {
            return Err(KmemError::BlockPastEnd {
                block,
                blocks: self.table.len(),
            });
        }
        Ok(())
    }

    /// Bring `block` into the cache. `Ok(false)`: no memory for it (at the watermark).
    pub(crate) fn read(&mut self, zone: &mut Zone<'_>, block: usize) -> Result<bool, KmemError> {
        self.check_block(block)?;
        if self.table.frame(block).is_some() {
            return Ok(true);
        }
        let Ok(pfn) = zone.alloc_pages(0, Gfp::MOVABLE) else {
            return Ok(false);
        };
        let placed = zone
            .set_owner(pfn, Owner::new(OwnerKind::PageCache, block as u64))
            .map_err(PlaceError::Owner)
            .and_then(|()| {
                mmu::map_movable(Self::va(block), (pfn << PAGE_SHIFT) as u64)
                    .map_err(PlaceError::Map)
            });
        if let Err(why) = placed {
            let _ = zone.free_pages(pfn, 0);
            return Err(KmemError::CacheRead(why));
        }
        let version = self.table.insert(block, pfn);
        let pattern = Self::pattern(block, version);
        // Safety: the block's window page was just mapped to `pfn`, owned by the cache
        // alone. This is the "device read" into the page.
        unsafe { window::fill_page(Self::va(block), |i| pattern.word(i)) };
        Ok(true)
    }

    /// Modify a block: it gets the next version's content and stays dirty until written back.
    pub(crate) fn write(&mut self, zone: &mut Zone<'_>, block: usize) -> Result<bool, KmemError> {
        if !self.read(zone, block)? {
            return Ok(false);
        }
        let version = self.table.modify(block);
        let pattern = Self::pattern(block, version);
        // Safety: the block is cached, so its window page maps a frame the cache owns.
        unsafe { window::fill_page(Self::va(block), |i| pattern.word(i)) };
        Ok(true)
    }

    /// Write every dirty page back to the store, after checking it still holds what was
    /// written; returns how many were cleaned.
    pub(crate) fn writeback(&mut self) -> usize {
        self.table.writeback(|block, version| {
            let pattern = Self::pattern(block, version);
            // Safety: the table only asks about cached blocks, whose window page maps a
            // frame the cache owns.
            unsafe { window::first_mismatch(Self::va(block), |i| pattern.word(i)) }.is_none()
        })
    }

    /// Direct reclaim: drop up to `count` clean pages, those whose frame satisfies
    /// `prefer` first, and free them. Returns how many were dropped.
    pub(crate) fn shrink_clean(
        &mut self,
        zone: &mut Zone<'_>,
        count: usize,
        prefer: impl Fn(&Zone<'_>, Pfn) -> bool,
    ) -> usize {
        self.table
            .shrink_clean(zone, count, prefer, |zone, block, pfn| {
                let _ = mmu::unmap_movable(Self::va(block));
                let _ = zone.free_pages(pfn, 0);
            })
    }

    /// Drop every clean page (`echo 1 > drop_caches`).
    pub(crate) fn drop_clean(&mut self, zone: &mut Zone<'_>) -> usize {
        self.shrink_clean(zone, usize::MAX, |_, _| true)
    }

    pub(crate) fn clean_pages(&self) -> usize {
        self.table.clean_pages()
    }

    pub(crate) fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        for (block, pfn, version) in self.table.cached() {
            report.pages_checked += 1;
            let va = Self::va(block);
            if mmu::translate(va) != Some((pfn as u64) << PAGE_SHIFT) {
                report.bad_pages += 1;
                continue;
            }
            let pattern = Self::pattern(block, version);
            // Safety: cached, so mapped (just translated) to a frame the cache owns.
            if unsafe { window::first_mismatch(va, |i| pattern.word(i)) }.is_some() {
                report.bad_pages += 1;
            }
        }
        report
    }

    pub(crate) fn status(&self) -> CacheStatus {
        CacheStatus {
            store_blocks: self.table.len(),
            cached_pages: self.table.cached_pages(),
            dirty_pages: self.table.dirty_pages(),
            reclaimed: self.table.reclaimed,
            rereads: self.table.rereads,
            migrations: self.migrations,
        }
    }

    /// `Migrator::reclaim`: drop a clean page; the mm frees the frame.
    pub(crate) fn reclaim(&mut self, pfn: Pfn, block: u64, unmap: impl FnOnce(usize)) -> bool {
        let block = block as usize;
        if !self.table.reclaim(block, pfn) {
            return false;
        }
        unmap(Self::va(block));
        true
    }

    /// [`Migrator::prepare_reclaim`](crate::mm::Migrator::prepare_reclaim): drop the page of
    /// `block` if it is clean and in `pfn`, `unmap(va, pa)` removing its mapping (its TLB
    /// entries are the caller's, once per batch). The window address of the page dropped.
    #[inline(always)]
    pub(crate) fn reclaim_unmapped(
        &mut self,
        pfn: Pfn,
        block: u64,
        unmap: impl FnOnce(usize, u64) -> bool,
    ) -> Option<usize> {
        let block = block as usize;
        let va = Self::va(block);
        self.table
            .reclaim_unmapped(block, pfn, || unmap(va, (pfn << PAGE_SHIFT) as u64))
            .then_some(va)
    }

    /// The window address of `block` if the cache agrees that `src` holds it: the page
    /// migration re-points ([`PageCache::migrated`] completes the move).
    #[inline(always)]
    pub(crate) fn window_address(&self, src: Pfn, block: u64) -> Option<usize> {
        let block = block as usize;
        self.table.holds(block, src).then(|| Self::va(block))
    }

    /// The mapping of `block` now points at `dst`: update the block's frame. (The caller
    /// counts [`PageCache::migrations`].)
    pub(crate) fn migrated(&mut self, block: u64, dst: Pfn) {
        self.table.migrated(block as usize, dst);
    }
}

/// Read blocks `0..blocks` of the store through the cache (fills the cache); stops at the
/// watermark. Returns how many of them are cached afterwards.
pub fn fill(blocks: usize) -> Result<usize, KmemError> {
    with_state(|s| {
        let n = blocks.min(s.clients.cache.table.len());
        let mut cached = 0;
        for block in 0..n {
            if !s.clients.cache.read(&mut s.zone, block)? {
                break;
            }
            cached += 1;
        }
        Ok(cached)
    })?
}

/// Modify `blocks` blocks starting at `first` (they stay dirty until [`writeback`]).
pub fn write(first: usize, blocks: usize) -> Result<usize, KmemError> {
    with_state(|s| {
        let mut written = 0;
        for block in first..first.saturating_add(blocks) {
            if !s.clients.cache.write(&mut s.zone, block)? {
                break;
            }
            written += 1;
        }
        Ok(written)
    })?
}

/// Write dirty pages back to the store; returns how many were cleaned.
pub fn writeback() -> Result<usize, KmemError> {
    with_state(|s| s.clients.cache.writeback())
}

/// Re-read every cached block and compare with the store's content.
pub fn verify() -> Result<VerifyReport, KmemError> {
    with_state(|s| s.clients.cache.verify())
}

/// Drop every clean page; returns how many were dropped.
pub fn drop_caches() -> Result<usize, KmemError> {
    with_state(|s| s.clients.cache.drop_clean(&mut s.zone))
}

pub fn status() -> CacheStatus {
    with_state(|s| s.clients.cache.status()).unwrap_or_default()
}
