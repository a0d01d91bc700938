//! The zone and its buddy allocator (`mm/page_alloc.c`).
//!
//! # Theory of operation
//!
//! A [`Zone`] covers `[start_pfn, start_pfn + pages.len())`. Free memory is kept as naturally
//! aligned power-of-two blocks on `free_area[order].free_list[migratetype]`. The buddy of a
//! block is `pfn ^ (1 << order)`; freeing merges with a free buddy of the same order until
//! the buddy is busy, absent, or of an incompatible pageblock type (`__free_one_page`).
//! Below pageblock order a block and its buddy share a pageblock, so they always merge; at
//! pageblock order and above, Unmovable/Movable/Reclaimable merge freely (the buddy's
//! pageblock takes the freeing side's type) while Cma and Isolate merge only with their own.
//!
//! Invariant kept at all times: a free block sits on the list of the type of every
//! pageblock it covers. Stealing therefore either claims whole pageblocks (retyping them and
//! moving their free blocks) or takes a block without claiming, leaving the remainder on its
//! original list (Linux 6.10 semantics).
//!
//! Allocation (`__rmqueue`): a Movable request first takes from Cma when free CMA pages
//! exceed the [`CmaBalance`] share of free pages (free CMA pages include held ones, which
//! the Cma lists get when they are empty, `held.rs`); then its own type (`__rmqueue_smallest`:
//! smallest sufficient order, `expand` gives back the upper halves), then Cma (Movable only),
//! then stealing (`__rmqueue_fallback`): the largest block of the first type in
//! [`FALLBACKS`](super::migratetype::FALLBACKS) that has one; the whole pageblock is claimed
//! when at least half of it is free or holds alike allocations. Cma blocks are never stolen
//! or retyped by the allocator.
//!
//! With PASR steering on (`pasr.rs`), the same sequence runs over blocks in busy DRAM spans
//! first, and over entirely free spans only when it fails there (Movable requests look
//! for their own type and Cma in free spans before stealing).
//!
//! Watermarks: a request fails with [`AllocError::Watermark`] if it would leave fewer than
//! `min` free pages it may use (CMA pages do not count for non-Movable requests), unless it
//! carries [`GfpFlags::MEMALLOC`]. `low`/`high` are recorded for reporting and MemAvailable;
//! there is no background reclaim.
//!
//! Counting: `NR_FREE_PAGES` excludes pages on Isolate lists, as in Linux, since those are
//! about to be taken.
//!
//! This file holds the [`Zone`] type, its construction and the buddy core (allocation,
//! freeing and merging, watermarks, counters). The rest is split by job: `free_area` (the
//! free lists), `fallback` (stealing from other types), `pageblock` (pageblock types and
//! retyping), `range` (handing over, reserving and taking ranges of frames), `held` (CMA
//! pageblocks held back from the lists until the buddy needs them),
//! `move_record` (`alloc_contig_range`'s record of its moves), `usage` (what each
//! pageblock holds, for pictures of memory), `pasr` (free MAX_ORDER blocks per DRAM span,
//! and placement that keeps allocations out of entirely free spans), `debug`
//! ([`Zone::check_invariants`]), each adding an `impl Zone` block.
#![forbid(unsafe_code)]

mod debug;
mod error;
mod fallback;
mod free_area;
mod gfp;
mod held;
#[cfg(test)]
mod held_tests;
mod move_record;
mod pageblock;
mod pasr;
mod pcp;
#[cfg(test)]
mod pcp_tests;
mod range;
#[cfg(test)]
mod tests;
mod usage;

pub use pasr::{PasrMode, PasrSetupError, PasrSpanState, PasrSpans, PASR_MAX_SPANS};
pub use pcp::{PcpCounters, PcpLimits};
pub use usage::PageblockUsage;

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::migrate::{Move, Reclaim};
use super::migratetype::MIGRATE_TYPES;
use super::page::NIL;
use super::{pageblock_start_pfn, MigrateType, Owner, OwnerKind, Page, PageState, Pfn};
use super::{MAX_ORDER, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};

pub use self::error::{AllocError, MmError};
pub use self::gfp::{Gfp, GfpFlags};

/// Zone watermarks in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Watermarks {
    pub min: usize,
    pub low: usize,
    pub high: usize,
}

impl Watermarks {
    /// Linux's spacing: low = min * 5/4, high = min * 3/2.
    pub const fn from_min(min: usize) -> Watermarks {
        Watermarks {
            min,
            low: min + min / 4,
            high: min + min / 2,
        }
    }
}

/// When a Movable request takes from CMA before its own lists: when free CMA pages exceed
/// `numerator / denominator` of all free pages. Linux 5.7+ uses 1/2; Raspberry Pi kernels use
/// 12/16 to keep more CMA free for devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmaBalance {
    numerator: u32,
    denominator: u32,
}

impl CmaBalance {
    pub const LINUX: CmaBalance = CmaBalance {
        numerator: 1,
        denominator: 2,
    };
    pub const RASPBERRY_PI: CmaBalance = CmaBalance {
        numerator: 12,
        denominator: 16,
    };
    /// Never prefer CMA; it is only used once the request's own lists are empty.
    pub const NEVER: CmaBalance = CmaBalance {
        numerator: 1,
        denominator: 1,
    };

    /// `None` if the denominator is zero or the fraction exceeds 1.
    pub const fn new(numerator: u32, denominator: u32) -> Option<CmaBalance> {
        if denominator == 0 || numerator > denominator {
            None
        } else {
            Some(CmaBalance {
                numerator,
                denominator,
            })
        }
    }

    pub const fn numerator(self) -> u32 {
        self.numerator
    }

    pub const fn denominator(self) -> u32 {
        self.denominator
    }

    #[inline]
    fn prefers_cma(self, free_cma: usize, free: usize) -> bool {
        (free_cma as u128) * (self.denominator as u128) > (free as u128) * (self.numerator as u128)
    }
}

impl Default for CmaBalance {
    fn default() -> Self {
        CmaBalance::LINUX
    }
}

/// Snapshot of the zone's counters (`zone_page_state` and friends), all in pages except
/// `nr_free` (blocks per order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneCounters {
    pub spanned_pages: usize,
    /// Frames that are RAM (not holes).
    pub present_pages: usize,
    /// Frames handed to the buddy (free or allocated).
    pub managed_pages: usize,
    /// Frames activated as CMA (`totalcma_pages`).
    pub cma_pages: usize,
    /// Free pages outside Isolate blocks: `NR_FREE_PAGES` and the order-0 frames waiting on
    /// the pcp (Linux leaves those out, so its MemFree wanders by up to the pcp's size;
    /// counting them keeps every report's free memory exact across an alloc and its free).
    /// The watermarks see only the buddy's.
    pub free_pages: usize,
    /// `NR_FREE_CMA_PAGES`.
    pub free_cma_pages: usize,
    /// Free pages on each migrate type's lists.
    pub free_by_migratetype: [usize; MIGRATE_TYPES],
    /// `free_area[order].nr_free`: free blocks per order, all types.
    pub nr_free: [usize; NR_PAGE_ORDERS],
    pub watermarks: Watermarks,
}

/// How much metadata a span needs: one [`Page`] per frame, one byte per pageblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataSize {
    pub pages: usize,
    pub page_bytes: usize,
    pub pageblocks: usize,
    pub pageblock_bytes: usize,
}

impl MetadataSize {
    pub const fn total_bytes(&self) -> usize {
        self.page_bytes + self.pageblock_bytes
    }
}

/// Metadata needed for a zone of `nr_pages` frames starting at `start_pfn`.
pub const fn zone_metadata_size(start_pfn: Pfn, nr_pages: usize) -> MetadataSize {
    let pageblocks = nr_pageblocks(start_pfn, nr_pages);
    MetadataSize {
        pages: nr_pages,
        page_bytes: nr_pages * core::mem::size_of::<Page>(),
        pageblocks,
        pageblock_bytes: pageblocks,
    }
}

const fn nr_pageblocks(start_pfn: Pfn, nr_pages: usize) -> usize {
    if nr_pages == 0 {
        0
    } else {
        ((start_pfn + nr_pages - 1) >> PAGEBLOCK_ORDER) - (start_pfn >> PAGEBLOCK_ORDER) + 1
    }
}

#[inline]
const fn floor_log2(n: usize) -> usize {
    (usize::BITS - 1 - n.leading_zeros()) as usize
}

/// Largest naturally aligned block order starting at `pfn` that fits in `remaining` pages.
#[inline]
fn max_aligned_order(pfn: Pfn, remaining: usize) -> usize {
    let align = if pfn == 0 {
        MAX_ORDER
    } else {
        pfn.trailing_zeros() as usize
    };
    align.min(floor_log2(remaining)).min(MAX_ORDER)
}

/// `free_area[order]`: the heads of one order's free lists, one per migrate type (frame
/// indices, `NIL` when empty), and how many blocks they hold. See `free_area.rs`.
#[derive(Clone, Copy, Debug)]
struct FreeArea {
    head: [u32; MIGRATE_TYPES],
    nr_by_type: [usize; MIGRATE_TYPES],
    nr_free: usize,
}

impl FreeArea {
    const EMPTY: FreeArea = FreeArea {
        head: [NIL; MIGRATE_TYPES],
        nr_by_type: [0; MIGRATE_TYPES],
        nr_free: 0,
    };
}

/// The block a frame belongs to: `head` and `order` of the free or allocated block, or the
/// frame itself (order 0) for holes, reserved frames and (corrupt) orphan tails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::mm) struct Block {
    pub head: Pfn,
    pub order: usize,
    pub state: PageState,
}

impl Block {
    #[inline]
    pub fn end(&self) -> Pfn {
        self.head + (1 << self.order)
    }
}

/// What [`Zone::take_free_range`] turns free frames into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::mm) enum Taken {
    Reserved,
    /// Order-0 allocated frames with this owner (an [`Owner::contig`]), allocated as this
    /// type.
    Contig(MigrateType, Owner),
}

/// A physically contiguous span of frames managed by one buddy allocator. See the module
/// docs for the rules it follows.
pub struct Zone<'a> {
    start_pfn: Pfn,
    end_pfn: Pfn,
    first_block: usize,
    pages: &'a mut [Page],
    pageblock_types: &'a mut [u8],
    free_area: [FreeArea; NR_PAGE_ORDERS],
    free_by_type: [usize; MIGRATE_TYPES],
    present_pages: usize,
    managed_pages: usize,
    cma_pages: usize,
    watermarks: Watermarks,
    cma_balance: CmaBalance,
    /// Id of the last `alloc_contig_range` call ([`Zone::new_contig_owner`]).
    contig_calls: u64,
    /// Pages `alloc_contig_range` dropped ([`Zone::contig_reclaimed`]).
    contig_reclaimed: u64,
    /// `alloc_contig_range`'s move buffer, kept between calls.
    move_buffer: Vec<Move>,
    /// `alloc_contig_range`'s buffer of pages offered for reclaim, kept between calls.
    reclaim_buffer: Vec<Reclaim>,
    /// Partial array self-refresh: free MAX_ORDER blocks per DRAM span and placement
    /// (`pasr.rs`); `None` costs one compare below max order.
    pasr: Option<Box<pasr::PasrTracker>>,
    /// The order-0 page cache in front of the buddy (`pcp.rs`); `None` until enabled.
    pcp: Option<pcp::Pcp>,
    /// CMA pageblocks held back from the buddy (`held.rs`): per pageblock, `NOT_HELD` or
    /// its number of free (`Held`) frames. Empty until an area is activated without PASR.
    held: Vec<u16>,
    /// Free frames in held pageblocks, part of every free count.
    held_free: usize,
    /// Number of held pageblocks.
    nr_held: usize,
}

impl<'a> Zone<'a> {
    /// A zone over `pages.len()` frames from `start_pfn`. Every frame starts as a hole and
    /// every pageblock as Movable (as Linux's `memmap_init`); hand RAM over with
    /// [`Zone::free_range`]. `pageblock_types` needs [`zone_metadata_size`]`.pageblocks`
    /// bytes; its previous contents do not matter.
    pub fn new(
        start_pfn: Pfn,
        pages: &'a mut [Page],
        pageblock_types: &'a mut [u8],
    ) -> Result<Zone<'a>, MmError> {
        let nr = pages.len();
        if nr >= NIL as usize {
            return Err(MmError::SpanTooLarge { pages: nr });
        }
        let end_pfn = start_pfn.checked_add(nr).ok_or(MmError::InvalidRange {
            start: start_pfn,
            end: usize::MAX,
        })?;
        let blocks = nr_pageblocks(start_pfn, nr);
        if pageblock_types.len() < blocks {
            return Err(MmError::MetadataTooSmall {
                needed: blocks,
                got: pageblock_types.len(),
            });
        }
        pages.fill(Page::HOLE);
        pageblock_types[..blocks].fill(MigrateType::Movable as u8);
        Ok(Zone {
            start_pfn,
            end_pfn,
            first_block: start_pfn >> PAGEBLOCK_ORDER,
            pages,
            pageblock_types,
            free_area: [FreeArea::EMPTY; NR_PAGE_ORDERS],
            free_by_type: [0; MIGRATE_TYPES],
            present_pages: 0,
            managed_pages: 0,
            cma_pages: 0,
            watermarks: Watermarks::default(),
            cma_balance: CmaBalance::LINUX,
            contig_calls: 0,
            contig_reclaimed: 0,
            move_buffer: Vec::new(),
            reclaim_buffer: Vec::new(),
            pasr: None,
            pcp: None,
            held: Vec::new(),
            held_free: 0,
            nr_held: 0,
        })
    }

    pub fn start_pfn(&self) -> Pfn {
        self.start_pfn
    }

    pub fn end_pfn(&self) -> Pfn {
        self.end_pfn
    }

    /// Linux's zone name, for reports.
    pub fn name(&self) -> &'static str {
        "Normal"
    }

    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn >= self.start_pfn && pfn < self.end_pfn
    }

    pub fn set_watermarks(&mut self, watermarks: Watermarks) {
        self.watermarks = watermarks;
    }

    pub fn watermarks(&self) -> Watermarks {
        self.watermarks
    }

    pub fn set_cma_balance(&mut self, balance: CmaBalance) {
        self.cma_balance = balance;
    }

    pub fn cma_balance(&self) -> CmaBalance {
        self.cma_balance
    }

    /// Read-only view of one frame's metadata.
    pub fn page(&self, pfn: Pfn) -> Option<&Page> {
        if self.contains(pfn) {
            Some(&self.pages[pfn - self.start_pfn])
        } else {
            None
        }
    }

    #[inline]
    fn pg(&self, pfn: Pfn) -> &Page {
        &self.pages[pfn - self.start_pfn]
    }

    #[inline]
    fn pg_mut(&mut self, pfn: Pfn) -> &mut Page {
        &mut self.pages[pfn - self.start_pfn]
    }

    /// The `Page`s of `[start, end)` clamped to the zone (`memmap[i]` is frame
    /// `start.max(zone start) + i`), for walks that step through many frames: indexing a
    /// slice costs less than a checked lookup per frame.
    #[inline]
    pub(in crate::mm) fn memmap(&self, start: Pfn, end: Pfn) -> &[Page] {
        let lo = start.clamp(self.start_pfn, self.end_pfn) - self.start_pfn;
        let hi = end.clamp(self.start_pfn, self.end_pfn) - self.start_pfn;
        self.pages.get(lo..hi).unwrap_or(&[])
    }
}

/// The buddy core: free lists, allocation (`__rmqueue`), freeing with merging
/// (`__free_one_page`), and block lookup.
impl Zone<'_> {
    /// Give back the upper halves of a block of order `high` until order `low` remains.
    #[inline]
    fn expand(&mut self, pfn: Pfn, low: usize, mut high: usize, mt: MigrateType) {
        while high > low {
            high -= 1;
            self.add_to_free_list(pfn + (1 << high), high, mt);
        }
    }

    /// Smallest sufficient block on `mt`'s lists, split down to `order`.
    #[inline]
    fn rmqueue_smallest(&mut self, order: usize, mt: MigrateType) -> Option<Pfn> {
        for current in order..NR_PAGE_ORDERS {
            let head = self.free_area[current].head[mt.index()];
            if head != NIL {
                let pfn = self.start_pfn + head as usize;
                self.del_from_free_list(pfn, current, mt);
                self.expand(pfn, order, current, mt);
                return Some(pfn);
            }
        }
        None
    }

    /// `__rmqueue`.
    #[inline]
    fn rmqueue(&mut self, order: usize, mt: MigrateType, alloc_cma: bool) -> Option<Pfn> {
        if let Some(p) = self.rmqueue_own(order, mt, alloc_cma) {
            return Some(p);
        }
        if self.pasr_defers_stealing(mt) {
            return None;
        }
        self.rmqueue_fallback(order, mt)
    }

    /// `__rmqueue` short of stealing: Cma first when the balance says so, the request's
    /// own type, then Cma.
    #[inline]
    fn rmqueue_own(&mut self, order: usize, mt: MigrateType, alloc_cma: bool) -> Option<Pfn> {
        if alloc_cma && self.cma_preferred() {
            if let Some(p) = self.rmqueue_cma(order) {
                return Some(p);
            }
        }
        if let Some(p) = self.rmqueue_smallest(order, mt) {
            return Some(p);
        }
        if alloc_cma {
            if let Some(p) = self.rmqueue_cma(order) {
                return Some(p);
            }
        }
        None
    }

    /// A block from the Cma lists, lending held pageblocks (`held.rs`) when they are empty.
    #[inline]
    fn rmqueue_cma(&mut self, order: usize) -> Option<Pfn> {
        if let Some(p) = self.rmqueue_smallest(order, MigrateType::Cma) {
            return Some(p);
        }
        if self.held_free == 0 {
            return None;
        }
        self.rmqueue_cma_lending(order)
    }

    /// Free CMA pages (`NR_FREE_CMA_PAGES`): on the Cma lists and held (`held.rs`).
    #[inline]
    pub fn free_cma_pages(&self) -> usize {
        self.free_by_type[MigrateType::Cma.index()] + self.held_free
    }

    /// Whether a movable allocation should take CMA memory first (the zone's
    /// [`CmaBalance`]). The free memory it compares with includes the pcp's frames: they
    /// are never CMA (`pcp.rs`), so leaving them out, as Linux's `NR_FREE_PAGES` does,
    /// would make CMA look a larger share of free memory than it is whenever the pcp holds
    /// frames, and steer movable memory into the CMA areas.
    #[inline]
    fn cma_preferred(&self) -> bool {
        let free = self.nr_free_pages() + self.pcp_pages();
        self.cma_balance.prefers_cma(self.free_cma_pages(), free)
    }

    /// `NR_FREE_PAGES`.
    #[inline]
    fn nr_free_pages(&self) -> usize {
        self.nr_free_outside_cma() + self.free_cma_pages()
    }

    /// Free pages a request that may not use CMA can have: every type but Cma and Isolate
    /// (the last one), four loads and adds on the hot path.
    #[inline]
    fn nr_free_outside_cma(&self) -> usize {
        const _: () = assert!(MigrateType::Isolate.index() == MIGRATE_TYPES - 1);
        let [unmovable, movable, reclaimable, high_atomic, _cma, _isolate] = self.free_by_type;
        unmovable + movable + reclaimable + high_atomic
    }

    /// `__zone_watermark_ok`, simplified to the `min` mark. Running out entirely is
    /// reported as `NoMemory`, dipping into the reserve as `Watermark`.
    #[inline]
    fn watermark_check(
        &self,
        order: usize,
        alloc_cma: bool,
        flags: GfpFlags,
    ) -> Result<(), AllocError> {
        if flags.contains(GfpFlags::MEMALLOC) {
            return Ok(());
        }
        let usable = if alloc_cma {
            self.nr_free_pages()
        } else {
            self.nr_free_outside_cma()
        };
        if usable < 1 << order {
            Err(AllocError::NoMemory)
        } else if usable - (1 << order) < self.watermarks.min {
            Err(AllocError::Watermark)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn prep_new_page(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
        let page = self.pg_mut(pfn);
        page.set(PageState::Head, order, mt);
        page.set_owner(Owner::NONE);
    }

    /// Allocate a naturally aligned block of `1 << order` frames. The block's owner starts
    /// as [`Owner::NONE`]; record one with [`Zone::set_owner`] (movable clients must, or
    /// their pages cannot be migrated). O(1): list pops plus at most `MAX_ORDER` splits;
    /// an order-0 request the pcp can serve is one list pop (`pcp.rs`).
    #[inline]
    pub fn alloc_pages(&mut self, order: usize, gfp: Gfp) -> Result<Pfn, AllocError> {
        if order == 0 && self.pcp.is_some() {
            if let Some(pfn) = self.pcp_alloc(gfp) {
                return Ok(pfn);
            }
        }
        self.alloc_pages_buddy(order, gfp)
    }

    /// [`Zone::alloc_pages`] from the buddy's lists; when they cannot serve the request
    /// while the pcp holds frames, the pcp is drained and the request tried once more.
    #[inline(never)]
    fn alloc_pages_buddy(&mut self, order: usize, gfp: Gfp) -> Result<Pfn, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError::InvalidOrder);
        }
        let mt = gfp.migratetype;
        if !mt.is_pcptype() {
            return Err(AllocError::InvalidMigratetype);
        }
        let alloc_cma = mt == MigrateType::Movable && !gfp.flags.contains(GfpFlags::NO_CMA);
        match self.rmqueue_checked(order, mt, alloc_cma, gfp.flags) {
            // Frames on the pcp are free memory the buddy cannot see: give them back and
            // try once more (Linux's slow path drains too).
            Err(_) if self.pcp_pages() > 0 => {
                self.drain_pcp();
                self.rmqueue_checked(order, mt, alloc_cma, gfp.flags)
            }
            result => result,
        }
    }

    /// The buddy's whole sequence for one request: the watermark, busy spans, then (PASR
    /// steering) the entirely free ones; the block comes back allocated.
    #[inline(always)]
    fn rmqueue_checked(
        &mut self,
        order: usize,
        mt: MigrateType,
        alloc_cma: bool,
        flags: GfpFlags,
    ) -> Result<Pfn, AllocError> {
        self.watermark_check(order, alloc_cma, flags)?;
        let pfn = match self.rmqueue(order, mt, alloc_cma) {
            Some(pfn) => pfn,
            None => self
                .rmqueue_in_free_spans(order, mt, alloc_cma)
                .ok_or(AllocError::NoMemory)?,
        };
        self.prep_new_page(pfn, order, mt);
        Ok(pfn)
    }

    /// PASR steering's last resort, when a request found nothing in busy spans: the same
    /// request over the entirely free spans too (lowest first). A Movable request steals
    /// only after its own type and Cma failed in every span (Linux's grouping by mobility:
    /// stealing kernel pageblocks' free pages would push later kernel allocations into
    /// spans that could otherwise be emptied), and then in busy spans first. Unmovable and
    /// Reclaimable requests already stole in busy spans (a kernel page opening a free span
    /// would pin it for good). `None` at once without steering.
    #[inline(never)]
    fn rmqueue_in_free_spans(
        &mut self,
        order: usize,
        mt: MigrateType,
        alloc_cma: bool,
    ) -> Option<Pfn> {
        if !self.pasr_may_reveal() {
            return None;
        }
        if mt != MigrateType::Movable {
            return self.with_free_spans_revealed(|zone| zone.rmqueue(order, mt, alloc_cma));
        }
        self.with_free_spans_revealed(|zone| zone.rmqueue_own(order, mt, alloc_cma))
            .or_else(|| self.rmqueue_fallback(order, mt))
            .or_else(|| self.with_free_spans_revealed(|zone| zone.rmqueue_fallback(order, mt)))
    }

    /// A Movable block from Cma lists only (migration target of last resort).
    pub(in crate::mm) fn alloc_cma_pages(&mut self, order: usize) -> Result<Pfn, AllocError> {
        self.watermark_check(order, true, GfpFlags::NONE)?;
        let pfn = match self.rmqueue_cma(order) {
            Some(pfn) => pfn,
            None if self.pasr_may_reveal() => self
                .with_free_spans_revealed(|zone| zone.rmqueue_smallest(order, MigrateType::Cma))
                .ok_or(AllocError::NoMemory)?,
            None => return Err(AllocError::NoMemory),
        };
        self.prep_new_page(pfn, order, MigrateType::Movable);
        Ok(pfn)
    }

    /// Migration targets in bulk: the largest block of at most `max_order` that `from`'s own
    /// free lists (Movable or Cma) can give without stealing and without crossing the min
    /// watermark, split into `1 << order` allocated order-0 frames (Linux's `split_page`),
    /// each typed Movable with no owner. Returns the first frame and the order taken; `None`
    /// if not even two frames are available that way (the caller then falls back to the
    /// order-0 path, which may steal like any Movable allocation). With PASR steering only
    /// blocks in busy spans are considered unless the caller revealed the others
    /// ([`Zone::busy_spans_first`]).
    pub(in crate::mm) fn alloc_split_block(
        &mut self,
        max_order: usize,
        from: MigrateType,
    ) -> Option<(Pfn, usize)> {
        if !matches!(from, MigrateType::Movable | MigrateType::Cma) {
            return None;
        }
        let usable = if from == MigrateType::Cma {
            self.nr_free_pages()
        } else {
            self.nr_free_outside_cma()
        };
        let spare = usable.checked_sub(self.watermarks.min)?;
        if spare < 2 {
            return None;
        }
        // Held CMA memory is counted but on no list: lend a pageblock of it first.
        if from == MigrateType::Cma
            && self.held_free > 0
            && (1..NR_PAGE_ORDERS).all(|o| self.free_area[o].head[from.index()] == NIL)
        {
            self.lend_one_held();
        }
        // The heads, not the counts: with PASR steering a MAX_ORDER block of an entirely
        // free span is counted but not offered.
        let largest_listed = (1..NR_PAGE_ORDERS)
            .rev()
            .find(|&o| self.free_area[o].head[from.index()] != NIL)?;
        let order = max_order
            .min(largest_listed)
            .min(floor_log2(spare))
            .min(MAX_ORDER);
        if order == 0 {
            return None;
        }
        let pfn = self.rmqueue_smallest(order, from)?;
        for p in pfn..pfn + (1 << order) {
            let page = self.pg_mut(p);
            page.set(PageState::Head, 0, MigrateType::Movable);
            page.set_owner(Owner::NONE);
        }
        Some((pfn, order))
    }

    /// Free a block returned by [`Zone::alloc_pages`] with the same order. Anything else
    /// (a tail, a free block, a different order) is refused and nothing changes.
    #[inline]
    pub fn free_pages(&mut self, pfn: Pfn, order: usize) -> Result<(), MmError> {
        if order > MAX_ORDER {
            return Err(MmError::InvalidOrder { order });
        }
        if !self.contains(pfn) {
            return Err(MmError::OutOfZone { pfn });
        }
        let page = self.pg(pfn);
        if page.state() != PageState::Head {
            return Err(MmError::NotAllocated { pfn });
        }
        if page.order() != order {
            return Err(MmError::OrderMismatch {
                pfn,
                allocated: page.order(),
                freed: order,
            });
        }
        if order == 0 && self.pcp_free(pfn) {
            return Ok(());
        }
        self.pg_mut(pfn).set_owner(Owner::NONE);
        self.free_block(pfn, order);
        Ok(())
    }

    /// Free an off-list block whose tails are already `Tail`; blocks larger than a pageblock
    /// whose pageblocks disagree on type are freed pageblock by pageblock
    /// (`split_large_buddy`) so each piece lands on its own block's list.
    fn free_block(&mut self, pfn: Pfn, order: usize) {
        let mt = self.pb_type(pfn);
        if order > PAGEBLOCK_ORDER {
            let end = pfn + (1 << order);
            let uniform = (pfn..end)
                .step_by(PAGEBLOCK_NR_PAGES)
                .all(|p| self.pb_type(p) == mt);
            if !uniform {
                for piece in (pfn..end).step_by(PAGEBLOCK_NR_PAGES) {
                    let piece_mt = self.pb_type(piece);
                    self.free_one_page(piece, PAGEBLOCK_ORDER, piece_mt);
                }
                return;
            }
        }
        self.free_one_page(pfn, order, mt);
    }

    /// `__free_one_page`: merge with free buddies, then list the result.
    #[inline]
    fn free_one_page(&mut self, mut pfn: Pfn, mut order: usize, mt: MigrateType) {
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            if !self.contains(buddy) {
                break;
            }
            let bp = self.pg(buddy);
            if bp.state() != PageState::Buddy || bp.order() != order {
                break;
            }
            let buddy_mt = bp.migratetype();
            if buddy_mt != mt {
                // Only possible at pageblock order and above, where buddies live in
                // different pageblocks.
                if !(mt.is_mergeable() && buddy_mt.is_mergeable()) {
                    break;
                }
                self.del_from_free_list(buddy, order, buddy_mt);
                self.change_pageblock_range(buddy, order, mt);
            } else {
                self.del_from_free_list(buddy, order, buddy_mt);
            }
            let upper = pfn.max(buddy);
            self.pg_mut(upper).set_state(PageState::Tail);
            pfn &= buddy;
            order += 1;
        }
        self.add_to_free_list(pfn, order, mt);
    }

    /// The block a frame belongs to. Tails are resolved by looking for the covering head
    /// at each larger alignment: O(MAX_ORDER).
    pub(in crate::mm) fn block_at(&self, pfn: Pfn) -> Block {
        let page = self.pg(pfn);
        match page.state() {
            PageState::Buddy | PageState::Head => Block {
                head: pfn,
                order: page.order(),
                state: page.state(),
            },
            PageState::Hole | PageState::Reserved | PageState::Pcp | PageState::Held => Block {
                head: pfn,
                order: 0,
                state: page.state(),
            },
            PageState::Tail => {
                for o in 1..=MAX_ORDER {
                    let cand = pfn & !((1 << o) - 1);
                    if cand < self.start_pfn {
                        break;
                    }
                    let cp = self.pg(cand);
                    if matches!(cp.state(), PageState::Buddy | PageState::Head) && cp.order() >= o {
                        return Block {
                            head: cand,
                            order: cp.order(),
                            state: cp.state(),
                        };
                    }
                }
                Block {
                    head: pfn,
                    order: 0,
                    state: PageState::Tail,
                }
            }
        }
    }

    /// Head pfn and order of the allocated block containing `pfn`, if any.
    pub fn allocated_block(&self, pfn: Pfn) -> Option<(Pfn, usize)> {
        if !self.contains(pfn) {
            return None;
        }
        let b = self.block_at(pfn);
        (b.state == PageState::Head).then_some((b.head, b.order))
    }

    /// Record who holds the allocated block headed at `pfn`. A non-movable owner on a
    /// Movable allocation inside a Cma pageblock is refused ([`MmError::PinInCma`]): such
    /// memory must be allocated with [`GfpFlags::NO_CMA`].
    pub fn set_owner(&mut self, pfn: Pfn, owner: Owner) -> Result<(), MmError> {
        if !self.contains(pfn) {
            return Err(MmError::OutOfZone { pfn });
        }
        let page = self.pg(pfn);
        if page.state() != PageState::Head {
            return Err(MmError::NotAllocated { pfn });
        }
        if page.migratetype() == MigrateType::Movable
            && !matches!(owner.kind(), OwnerKind::None)
            && !owner.kind().is_movable()
            && self.block_touches_cma(pfn, page.order())
        {
            return Err(MmError::PinInCma { pfn });
        }
        self.pg_mut(pfn).set_owner(owner);
        Ok(())
    }

    /// Owner of the allocated block headed at `pfn`.
    pub fn owner(&self, pfn: Pfn) -> Option<Owner> {
        let page = self.page(pfn)?;
        (page.state() == PageState::Head).then(|| page.owner())
    }
}

/// Counters and reports.
impl Zone<'_> {
    pub fn counters(&self) -> ZoneCounters {
        let mut nr_free = self.held_blocks();
        for (o, area) in self.free_area.iter().enumerate() {
            nr_free[o] += area.nr_free;
        }
        let mut free_by_migratetype = self.free_by_type;
        free_by_migratetype[MigrateType::Cma.index()] += self.held_free;
        ZoneCounters {
            spanned_pages: self.end_pfn - self.start_pfn,
            present_pages: self.present_pages,
            managed_pages: self.managed_pages,
            cma_pages: self.cma_pages,
            free_pages: self.free_page_count(),
            free_cma_pages: self.free_cma_pages(),
            free_by_migratetype,
            nr_free,
            watermarks: self.watermarks,
        }
    }

    /// Free pages outside CMA pageblocks (and outside isolated ones): what an unmovable or
    /// migration-target allocation can use. Cheaper than [`Zone::counters`] on hot paths.
    #[inline]
    pub fn free_pages_outside_cma(&self) -> usize {
        self.nr_free_outside_cma()
    }

    /// [`ZoneCounters::free_pages`] in O(1), for callers that only compare free memory
    /// before and after ([`Zone::counters`] also reports the free blocks per order).
    #[inline]
    pub fn free_page_count(&self) -> usize {
        self.nr_free_pages() + self.pcp_pages()
    }

    /// Free blocks of one order on one type's list (for Cma, with the blocks held memory
    /// would be listed as, `held.rs`).
    pub fn nr_free_blocks(&self, order: usize, mt: MigrateType) -> usize {
        let held = match mt {
            MigrateType::Cma => self.held_blocks().get(order).copied().unwrap_or(0),
            _ => 0,
        };
        held + self
            .free_area
            .get(order)
            .map_or(0, |a| a.nr_by_type[mt.index()])
    }

    /// Number of pageblocks of each type among pageblocks with RAM.
    pub fn pageblock_counts(&self) -> [usize; MIGRATE_TYPES] {
        let mut counts = [0; MIGRATE_TYPES];
        let mut block = pageblock_start_pfn(self.start_pfn);
        while block < self.end_pfn {
            let (s, e) = (
                block.max(self.start_pfn),
                (block + PAGEBLOCK_NR_PAGES).min(self.end_pfn),
            );
            if (s..e).any(|p| self.pg(p).state() != PageState::Hole) {
                counts[self.pb_type(s).index()] += 1;
            }
            block += PAGEBLOCK_NR_PAGES;
        }
        counts
    }

    /// Pages held by allocated blocks whose owner kind is `kind` (O(span); for reports).
    pub fn allocated_pages_of_kind(&self, kind: OwnerKind) -> usize {
        let mut total = 0;
        let mut pfn = self.start_pfn;
        while pfn < self.end_pfn {
            let b = self.block_at(pfn);
            if b.state == PageState::Head && self.pg(b.head).owner().kind() == kind {
                total += b.end().min(self.end_pfn) - pfn;
            }
            pfn = b.end().max(pfn + 1);
        }
        total
    }
}
