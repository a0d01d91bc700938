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
//! exceed the [`CmaBalance`] share of free pages; then its own type (`__rmqueue_smallest`:
//! smallest sufficient order, `expand` gives back the upper halves), then Cma (Movable only),
//! then stealing (`__rmqueue_fallback`): the largest block of the first type in
//! [`FALLBACKS`](super::migratetype::FALLBACKS) that has one; the whole pageblock is claimed
//! when at least half of it is free or holds alike allocations. Cma blocks are never stolen
//! or retyped by the allocator.
//!
//! Watermarks: a request fails with [`AllocError::Watermark`] if it would leave fewer than
//! `min` free pages it may use (CMA pages do not count for non-Movable requests), unless it
//! carries [`GfpFlags::MEMALLOC`]. `low`/`high` are recorded for reporting and MemAvailable;
//! there is no background reclaim.
//!
//! Counting: `NR_FREE_PAGES` excludes pages on Isolate lists, as in Linux, since those are
//! about to be taken.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::contig::{Migrator, Move};
use super::migratetype::{FALLBACKS, MIGRATE_TYPES};
use super::page::NIL;
use super::{MigrateType, Owner, OwnerKind, Page, PageState, Pfn};
use super::{MAX_ORDER, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};

/// Errors from zone set-up and page-level operations. Nothing in the zone panics on bad
/// input; it reports one of these and leaves the zone unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The borrowed metadata is smaller than the span needs.
    MetadataTooSmall {
        needed: usize,
        got: usize,
    },
    /// More frames than the 32-bit list links can address.
    SpanTooLarge {
        pages: usize,
    },
    /// A pfn outside the zone.
    OutOfZone {
        pfn: Pfn,
    },
    /// An empty, reversed or overflowing range.
    InvalidRange {
        start: Pfn,
        end: Pfn,
    },
    InvalidOrder {
        order: usize,
    },
    /// The pfn is not the head of an allocated block.
    NotAllocated {
        pfn: Pfn,
    },
    /// Freed with a different order than allocated.
    OrderMismatch {
        pfn: Pfn,
        allocated: usize,
        freed: usize,
    },
    /// A frame is in use (or a hole) where the operation needs it free or reserved.
    Busy {
        pfn: Pfn,
    },
    /// A frame is a hole where RAM is required.
    Hole {
        pfn: Pfn,
    },
    /// The frame is already managed by the buddy.
    AlreadyManaged {
        pfn: Pfn,
    },
    /// A non-movable owner was about to be recorded on a Movable allocation in a Cma
    /// pageblock: long-term pins must be placed outside CMA (allocate with
    /// [`GfpFlags::NO_CMA`]).
    PinInCma {
        pfn: Pfn,
    },
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmError::MetadataTooSmall { needed, got } => {
                write!(f, "metadata too small: need {needed} entries, got {got}")
            }
            MmError::SpanTooLarge { pages } => write!(f, "zone span of {pages} pages is too large"),
            MmError::OutOfZone { pfn } => write!(f, "pfn {pfn:#x} is outside the zone"),
            MmError::InvalidRange { start, end } => {
                write!(f, "invalid pfn range {start:#x}..{end:#x}")
            }
            MmError::InvalidOrder { order } => write!(f, "invalid order {order}"),
            MmError::NotAllocated { pfn } => {
                write!(f, "pfn {pfn:#x} is not an allocated block head")
            }
            MmError::OrderMismatch {
                pfn,
                allocated,
                freed,
            } => {
                write!(
                    f,
                    "pfn {pfn:#x} allocated with order {allocated}, freed with order {freed}"
                )
            }
            MmError::Busy { pfn } => write!(f, "pfn {pfn:#x} is in use"),
            MmError::Hole { pfn } => write!(f, "pfn {pfn:#x} is a hole"),
            MmError::AlreadyManaged { pfn } => {
                write!(f, "pfn {pfn:#x} is already managed by the buddy")
            }
            MmError::PinInCma { pfn } => {
                write!(f, "pfn {pfn:#x}: non-movable owner in a CMA pageblock")
            }
        }
    }
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    InvalidOrder,
    /// Only Unmovable, Movable and Reclaimable may be requested.
    InvalidMigratetype,
    /// Would drop usable free pages below the `min` watermark.
    Watermark,
    /// No free block large enough that this request may use.
    NoMemory,
}

/// Allocation modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GfpFlags(u32);

impl GfpFlags {
    pub const NONE: GfpFlags = GfpFlags(0);
    /// Ignore watermarks (`__GFP_MEMALLOC` / `ALLOC_NO_WATERMARKS`): the kernel's reserve.
    pub const MEMALLOC: GfpFlags = GfpFlags(1 << 0);
    /// Movable, but keep it out of CMA (it may be pinned long-term, or it is a migration
    /// target that should not eat CMA).
    pub const NO_CMA: GfpFlags = GfpFlags(1 << 1);

    #[inline]
    pub const fn contains(self, other: GfpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    pub const fn union(self, other: GfpFlags) -> GfpFlags {
        GfpFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for GfpFlags {
    type Output = GfpFlags;
    fn bitor(self, rhs: GfpFlags) -> GfpFlags {
        self.union(rhs)
    }
}

/// An allocation request: which free lists it belongs to and how hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gfp {
    pub migratetype: MigrateType,
    pub flags: GfpFlags,
}

impl Gfp {
    /// Kernel data structures: Unmovable, subject to watermarks.
    pub const KERNEL: Gfp = Gfp {
        migratetype: MigrateType::Unmovable,
        flags: GfpFlags::NONE,
    };
    /// `GFP_HIGHUSER_MOVABLE`: user/anonymous memory, may come from CMA.
    pub const MOVABLE: Gfp = Gfp {
        migratetype: MigrateType::Movable,
        flags: GfpFlags::NONE,
    };
    /// Reclaimable caches.
    pub const RECLAIMABLE: Gfp = Gfp {
        migratetype: MigrateType::Reclaimable,
        flags: GfpFlags::NONE,
    };

    #[inline]
    pub const fn with(self, flags: GfpFlags) -> Gfp {
        Gfp {
            migratetype: self.migratetype,
            flags: self.flags.union(flags),
        }
    }
}

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
    /// `NR_FREE_PAGES`: free pages outside Isolate blocks.
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
pub(crate) fn max_aligned_order(pfn: Pfn, remaining: usize) -> usize {
    let align = if pfn == 0 {
        MAX_ORDER
    } else {
        pfn.trailing_zeros() as usize
    };
    align.min(floor_log2(remaining)).min(MAX_ORDER)
}

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
pub(crate) struct Block {
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
    /// `alloc_contig_range`'s move buffer, kept between calls.
    move_buffer: Vec<Move>,
}

/// Most free blocks a pageblock retype looks up through the free lists rather than by
/// walking the pageblock's 512 frames (a list step costs about what a frame step does).
const LISTED_BLOCKS_SCAN_LIMIT: usize = 64;

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
            move_buffer: Vec::new(),
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
    pub(crate) fn memmap(&self, start: Pfn, end: Pfn) -> &[Page] {
        let lo = start.clamp(self.start_pfn, self.end_pfn) - self.start_pfn;
        let hi = end.clamp(self.start_pfn, self.end_pfn) - self.start_pfn;
        self.pages.get(lo..hi).unwrap_or(&[])
    }

    #[inline]
    fn block_index(&self, pfn: Pfn) -> usize {
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
    pub(crate) fn pb_type(&self, pfn: Pfn) -> MigrateType {
        MigrateType::from_u8(self.pageblock_types[self.block_index(pfn)])
            .unwrap_or(MigrateType::Unmovable)
    }

    #[inline]
    fn set_pb_type_raw(&mut self, pfn: Pfn, mt: MigrateType) {
        let i = self.block_index(pfn);
        self.pageblock_types[i] = mt as u8;
    }

    /// Retype every pageblock of a block that is off the free lists (`change_pageblock_range`).
    fn change_pageblock_range(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
        let mut p = pfn;
        while p < pfn + (1 << order) {
            self.set_pb_type_raw(p, mt);
            p += PAGEBLOCK_NR_PAGES;
        }
    }

    // ---- free lists -------------------------------------------------------------------

    #[inline]
    fn add_to_free_list(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
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
    fn del_from_free_list(&mut self, pfn: Pfn, order: usize, mt: MigrateType) {
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
    fn rmqueue_fallback(&mut self, order: usize, start_mt: MigrateType) -> Option<Pfn> {
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
            let block = super::pageblock_start_pfn(pfn);
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
                PageState::Buddy => free += overlap,
                PageState::Head if self.pg(b.head).migratetype() == MigrateType::Movable => {
                    movable += overlap
                }
                _ => {}
            }
            pfn = b.end();
        }
        (free, movable)
    }

    /// Retype one pageblock whose free blocks are all below pageblock order and move them to
    /// the new type's lists (`__move_freepages_block`).
    fn move_freepages_block(&mut self, block: Pfn, mt: MigrateType) {
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

    /// `__rmqueue`.
    #[inline]
    fn rmqueue(&mut self, order: usize, mt: MigrateType, alloc_cma: bool) -> Option<Pfn> {
        if alloc_cma
            && self.cma_balance.prefers_cma(
                self.free_by_type[MigrateType::Cma.index()],
                self.nr_free_pages(),
            )
        {
            if let Some(p) = self.rmqueue_smallest(order, MigrateType::Cma) {
                return Some(p);
            }
        }
        if let Some(p) = self.rmqueue_smallest(order, mt) {
            return Some(p);
        }
        if alloc_cma {
            if let Some(p) = self.rmqueue_smallest(order, MigrateType::Cma) {
                return Some(p);
            }
        }
        self.rmqueue_fallback(order, mt)
    }

    /// `NR_FREE_PAGES`.
    #[inline]
    fn nr_free_pages(&self) -> usize {
        self.free_by_type.iter().sum::<usize>() - self.free_by_type[MigrateType::Isolate.index()]
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
        let mut usable = self.nr_free_pages();
        if !alloc_cma {
            usable -= self.free_by_type[MigrateType::Cma.index()];
        }
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
    /// their pages cannot be migrated). O(1): list pops plus at most `MAX_ORDER` splits.
    #[inline]
    pub fn alloc_pages(&mut self, order: usize, gfp: Gfp) -> Result<Pfn, AllocError> {
        if order > MAX_ORDER {
            return Err(AllocError::InvalidOrder);
        }
        let mt = gfp.migratetype;
        if !mt.is_pcptype() {
            return Err(AllocError::InvalidMigratetype);
        }
        let alloc_cma = mt == MigrateType::Movable && !gfp.flags.contains(GfpFlags::NO_CMA);
        self.watermark_check(order, alloc_cma, gfp.flags)?;
        let pfn = self
            .rmqueue(order, mt, alloc_cma)
            .ok_or(AllocError::NoMemory)?;
        self.prep_new_page(pfn, order, mt);
        Ok(pfn)
    }

    /// A Movable block from Cma lists only (migration target of last resort).
    pub(crate) fn alloc_cma_pages(&mut self, order: usize) -> Result<Pfn, AllocError> {
        self.watermark_check(order, true, GfpFlags::NONE)?;
        let pfn = self
            .rmqueue_smallest(order, MigrateType::Cma)
            .ok_or(AllocError::NoMemory)?;
        self.prep_new_page(pfn, order, MigrateType::Movable);
        Ok(pfn)
    }

    /// Migration targets in bulk: the largest block of at most `max_order` that `from`'s own
    /// free lists (Movable or Cma) can give without stealing and without crossing the min
    /// watermark, split into `1 << order` allocated order-0 frames (Linux's `split_page`),
    /// each typed Movable with no owner. Returns the first frame and the order taken; `None`
    /// if not even two frames are available that way (the caller then falls back to the
    /// order-0 path, which may steal like any Movable allocation).
    pub(crate) fn alloc_split_block(
        &mut self,
        max_order: usize,
        from: MigrateType,
    ) -> Option<(Pfn, usize)> {
        if !matches!(from, MigrateType::Movable | MigrateType::Cma) {
            return None;
        }
        let mut usable = self.nr_free_pages();
        if from != MigrateType::Cma {
            usable -= self.free_by_type[MigrateType::Cma.index()];
        }
        let spare = usable.checked_sub(self.watermarks.min)?;
        if spare < 2 {
            return None;
        }
        let largest_listed = (1..NR_PAGE_ORDERS)
            .rev()
            .find(|&o| self.free_area[o].nr_by_type[from.index()] != 0)?;
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
        self.pg_mut(pfn).set_owner(Owner::NONE);
        self.free_block(pfn, order);
        Ok(())
    }

    /// Free an off-list block whose tails are already `Tail`; blocks larger than a pageblock
    /// whose pageblocks disagree on type are freed pageblock by pageblock
    /// (`split_large_buddy`) so each piece lands on its own block's list.
    pub(crate) fn free_block(&mut self, pfn: Pfn, order: usize) {
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
    pub(crate) fn block_at(&self, pfn: Pfn) -> Block {
        let page = self.pg(pfn);
        match page.state() {
            PageState::Buddy | PageState::Head => Block {
                head: pfn,
                order: page.order(),
                state: page.state(),
            },
            PageState::Hole | PageState::Reserved => Block {
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

    /// `alloc_contig_range`'s move buffer from the last call (empty the first time).
    pub(crate) fn take_move_buffer(&mut self) -> Vec<Move> {
        core::mem::take(&mut self.move_buffer)
    }

    /// Keep `buffer` for the next `alloc_contig_range` call.
    pub(crate) fn keep_move_buffer(&mut self, buffer: Vec<Move>) {
        self.move_buffer = buffer;
    }

    /// The owner a new `alloc_contig_range` call records on the frames it takes:
    /// [`Owner::contig`] of a number no call still running has, so the frames the call took
    /// can be told from those of earlier contiguous allocations (which it must never take).
    pub(crate) fn new_contig_owner(&mut self) -> Owner {
        self.contig_calls = self.contig_calls % Owner::ID_MAX + 1;
        Owner::contig(self.contig_calls)
    }

    /// `alloc_contig_range`'s fast path (see `contig.rs`): walk the frames from `pfn`
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
    pub(crate) fn queue_order0_migrations<M: Migrator + ?Sized>(
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

    /// The record [`Zone::queue_order0_migrations`] makes, for one order-0 move queued
    /// elsewhere; returns what `src` was allocated as (for the undo). Refused, changing
    /// nothing, unless both frames are allocated order-0 heads and `owner` is movable (so
    /// the target may sit in a Cma pageblock).
    pub(crate) fn record_order0_migration(
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
    pub(crate) fn undo_queued_migration(&mut self, m: &Move) -> Result<(), MmError> {
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
    pub(crate) fn settle_migrated_block(
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

    fn block_touches_cma(&self, pfn: Pfn, order: usize) -> bool {
        (pfn..pfn + (1 << order))
            .step_by(PAGEBLOCK_NR_PAGES)
            .any(|p| self.pb_type(p) == MigrateType::Cma)
    }

    /// Owner of the allocated block headed at `pfn`.
    pub fn owner(&self, pfn: Pfn) -> Option<Owner> {
        let page = self.page(pfn)?;
        (page.state() == PageState::Head).then(|| page.owner())
    }

    // ---- set-up ----------------------------------------------------------------------

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
    fn free_pieces(&mut self, mut lo: Pfn, hi: Pfn) {
        while lo < hi {
            let order = max_aligned_order(lo, hi - lo);
            self.free_block(lo, order);
            lo += 1 << order;
        }
    }

    /// Keep RAM away from the buddy: holes become reserved (present) frames, free frames are
    /// taken off the free lists (splitting blocks that straddle the range). Fails without
    /// changing anything if a frame in the range is allocated. Returns the number of free
    /// pages taken out.
    pub fn reserve_range(&mut self, range: Range<Pfn>) -> Result<usize, MmError> {
        self.check_range(&range)?;
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
        for pfn in range.clone() {
            if self.pg(pfn).state() == PageState::Hole {
                self.present_pages += 1;
                self.pg_mut(pfn).set_state(PageState::Reserved);
            }
        }
        Ok(self.take_free_range(range.start, range.end, Taken::Reserved))
    }

    /// Take every free frame of `[start, end)` off the free lists, marking each as `how`;
    /// straddling blocks are split and their outside parts freed again. Frames of the range
    /// that are not free are left alone. Returns the number of frames taken.
    pub(crate) fn take_free_range(&mut self, start: Pfn, end: Pfn, how: Taken) -> usize {
        let mut taken = 0;
        let mut pfn = start;
        while pfn < end {
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
                    self.free_pieces(b.head, lo);
                }
                if hi < b.end() {
                    self.free_pieces(hi, b.end());
                }
            }
            pfn = b.end();
        }
        if how == Taken::Reserved {
            self.managed_pages -= taken;
        }
        taken
    }

    /// Retype a pageblock and move its free blocks to the new type's lists, merging them
    /// with compatible neighbours (`move_freepages_block` + `unset_migratetype_isolate`'s
    /// re-merge). A free block larger than a pageblock covering it is split first, so the
    /// invariant "a free block's pageblocks share its list type" holds throughout.
    pub fn set_pageblock_migratetype(&mut self, pfn: Pfn, mt: MigrateType) -> Result<(), MmError> {
        if !self.contains(pfn) {
            return Err(MmError::OutOfZone { pfn });
        }
        self.retype_pageblock(super::pageblock_start_pfn(pfn), mt);
        Ok(())
    }

    pub(crate) fn retype_pageblock(&mut self, block: Pfn, mt: MigrateType) {
        let start = block.max(self.start_pfn);
        let end = (block + PAGEBLOCK_NR_PAGES).min(self.end_pfn);
        if self.pb_type(start) == mt {
            return;
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
            self.del_from_free_list(b.head, b.order, old);
            self.free_one_page(b.head, b.order, mt);
            pfn = b.end();
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
    fn move_listed_blocks(
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
                self.del_from_free_list(pfn, order, from);
                self.free_one_page(pfn, order, to);
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
                PageState::Hole | PageState::Reserved => i += 1,
            }
        }
        None
    }

    /// Retype a pageblock that the caller knows holds no free frame (every frame in it is
    /// allocated, reserved or a hole, as right after `alloc_contig_range` took a range
    /// covering it): with no free block to move between lists, only the type changes.
    pub(crate) fn retype_full_pageblock(&mut self, block: Pfn, mt: MigrateType) {
        let first = block.max(self.start_pfn);
        if self.contains(first) {
            self.set_pb_type_raw(first, mt);
        }
    }

    /// Turn a pageblock-aligned range of RAM into CMA: take it from the buddy, retype its
    /// pageblocks as Cma, and free it back (`cma_activate_area`'s zone half).
    pub(crate) fn activate_cma_range(&mut self, start: Pfn, end: Pfn) -> Result<(), MmError> {
        self.check_range(&(start..end))?;
        if let Some(pfn) = (start..end).find(|&p| self.pg(p).state() == PageState::Hole) {
            return Err(MmError::Hole { pfn });
        }
        self.reserve_range(start..end)?;
        for block in (start..end).step_by(PAGEBLOCK_NR_PAGES) {
            self.set_pb_type_raw(block, MigrateType::Cma);
        }
        self.free_range(start..end)?;
        self.cma_pages += end - start;
        Ok(())
    }

    // ---- state -------------------------------------------------------------------------

    pub fn counters(&self) -> ZoneCounters {
        let mut nr_free = [0; NR_PAGE_ORDERS];
        for (o, area) in self.free_area.iter().enumerate() {
            nr_free[o] = area.nr_free;
        }
        ZoneCounters {
            spanned_pages: self.end_pfn - self.start_pfn,
            present_pages: self.present_pages,
            managed_pages: self.managed_pages,
            cma_pages: self.cma_pages,
            free_pages: self.nr_free_pages(),
            free_cma_pages: self.free_by_type[MigrateType::Cma.index()],
            free_by_migratetype: self.free_by_type,
            nr_free,
            watermarks: self.watermarks,
        }
    }

    /// Free blocks of one order on one type's list.
    pub fn nr_free_blocks(&self, order: usize, mt: MigrateType) -> usize {
        self.free_area
            .get(order)
            .map_or(0, |a| a.nr_by_type[mt.index()])
    }

    /// Number of pageblocks of each type among pageblocks with RAM.
    pub fn pageblock_counts(&self) -> [usize; MIGRATE_TYPES] {
        let mut counts = [0; MIGRATE_TYPES];
        let mut block = super::pageblock_start_pfn(self.start_pfn);
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

    /// Verify every structural invariant: frame states, block alignment, list links and
    /// membership, counters, full merging, list type == pageblock type, and that Cma
    /// pageblocks hold only movable or contiguous (CMA) allocations. O(span); meant for
    /// tests and debug shells.
    pub fn check_invariants(&self) -> Result<(), String> {
        let nr_blocks = nr_pageblocks(self.start_pfn, self.end_pfn - self.start_pfn);
        if let Some(i) =
            (0..nr_blocks).find(|&i| MigrateType::from_u8(self.pageblock_types[i]).is_none())
        {
            return Err(format!(
                "pageblock {i} has invalid type byte {}",
                self.pageblock_types[i]
            ));
        }
        let mut seen = [[0usize; MIGRATE_TYPES]; NR_PAGE_ORDERS];
        let (mut free, mut allocated, mut present) = (0usize, 0usize, 0usize);
        let mut pfn = self.start_pfn;
        while pfn < self.end_pfn {
            let page = self.pg(pfn);
            match page.state() {
                PageState::Hole => {
                    pfn += 1;
                    continue;
                }
                PageState::Reserved => {
                    present += 1;
                    pfn += 1;
                    continue;
                }
                PageState::Tail => {
                    return Err(format!("pfn {pfn:#x}: tail frame outside any block"))
                }
                PageState::Buddy | PageState::Head => {}
            }
            let order = page.order();
            if order > MAX_ORDER {
                return Err(format!("pfn {pfn:#x}: order {order} too large"));
            }
            let end = pfn + (1 << order);
            if pfn & ((1 << order) - 1) != 0 || end > self.end_pfn {
                return Err(format!(
                    "pfn {pfn:#x}: order-{order} block misaligned or past the zone"
                ));
            }
            if let Some(t) = (pfn + 1..end).find(|&t| self.pg(t).state() != PageState::Tail) {
                return Err(format!(
                    "pfn {t:#x}: inside the order-{order} block at {pfn:#x} but not a tail"
                ));
            }
            present += 1 << order;
            let mt = page.migratetype();
            if page.state() == PageState::Buddy {
                free += 1 << order;
                seen[order][mt.index()] += 1;
                if let Some(b) = (pfn..end)
                    .step_by(PAGEBLOCK_NR_PAGES)
                    .find(|&b| self.pb_type(b) != mt)
                {
                    return Err(format!(
                        "free order-{order} block at {pfn:#x} is on the {} list but pageblock {b:#x} is {}",
                        mt.name(),
                        self.pb_type(b).name()
                    ));
                }
                if order < MAX_ORDER {
                    let buddy = pfn ^ (1 << order);
                    if self.contains(buddy) {
                        let bp = self.pg(buddy);
                        if bp.state() == PageState::Buddy && bp.order() == order {
                            let bm = bp.migratetype();
                            if order < PAGEBLOCK_ORDER
                                || bm == mt
                                || (bm.is_mergeable() && mt.is_mergeable())
                            {
                                return Err(format!("free buddies {pfn:#x} and {buddy:#x} of order {order} not merged"));
                            }
                        }
                    }
                }
            } else {
                allocated += 1 << order;
                if self.block_touches_cma(pfn, order) {
                    match mt {
                        MigrateType::Cma => {}
                        MigrateType::Movable => {
                            let kind = page.owner().kind();
                            if !(kind == OwnerKind::None || kind.is_movable()) {
                                return Err(format!(
                                    "pfn {pfn:#x}: {kind:?} owner in a CMA pageblock"
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "pfn {pfn:#x}: {} allocation in a CMA pageblock",
                                other.name()
                            ))
                        }
                    }
                }
            }
            pfn = end;
        }
        if present != self.present_pages {
            return Err(format!(
                "present pages {} but counted {present}",
                self.present_pages
            ));
        }
        if free + allocated != self.managed_pages {
            return Err(format!(
                "managed {} but {free} free + {allocated} allocated",
                self.managed_pages
            ));
        }
        let mut by_type = [0usize; MIGRATE_TYPES];
        for (order, area) in self.free_area.iter().enumerate() {
            let mut total = 0;
            for mt in MigrateType::ALL {
                let mut n = 0usize;
                let mut prev = NIL;
                let mut cur = area.head[mt.index()];
                while cur != NIL {
                    if n > self.pages.len() {
                        return Err(format!("free list order {order} {} loops", mt.name()));
                    }
                    let p = &self.pages[cur as usize];
                    let at = self.start_pfn + cur as usize;
                    if p.state() != PageState::Buddy || p.order() != order || p.migratetype() != mt
                    {
                        return Err(format!(
                            "pfn {at:#x} on free list order {order} {} is {:?}",
                            mt.name(),
                            p
                        ));
                    }
                    if p.prev() != prev {
                        return Err(format!("pfn {at:#x}: broken prev link"));
                    }
                    prev = cur;
                    cur = p.next();
                    n += 1;
                }
                if n != area.nr_by_type[mt.index()] || n != seen[order][mt.index()] {
                    return Err(format!(
                        "order {order} {}: list has {n}, counter {}, frames say {}",
                        mt.name(),
                        area.nr_by_type[mt.index()],
                        seen[order][mt.index()]
                    ));
                }
                total += n;
                by_type[mt.index()] += n << order;
            }
            if total != area.nr_free {
                return Err(format!(
                    "order {order}: nr_free {} but lists hold {total}",
                    area.nr_free
                ));
            }
        }
        if by_type != self.free_by_type {
            return Err(format!(
                "free pages per type {:?} but lists hold {by_type:?}",
                self.free_by_type
            ));
        }
        Ok(())
    }
}

/// What [`Zone::take_free_range`] turns free frames into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    Reserved,
    /// Order-0 allocated frames with this owner (an [`Owner::contig`]), allocated as this
    /// type.
    Contig(MigrateType, Owner),
}

impl Zone<'_> {
    /// Free a run of allocated order-0 frames as maximal aligned blocks.
    pub(crate) fn free_order0_run(&mut self, mut lo: Pfn, hi: Pfn) {
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

#[cfg(test)]
mod tests {
    use super::super::testutil::{frames, Storage};
    use super::*;
    use std::vec::Vec;

    const BASE: Pfn = 0x40000;
    const SPAN: usize = 4 * PAGEBLOCK_NR_PAGES;
    /// The pageblock under test: the upper half of the zone's first max-order block.
    const P: Pfn = BASE + PAGEBLOCK_NR_PAGES;
    const P_END: Pfn = P + PAGEBLOCK_NR_PAGES;

    fn ok(z: &Zone<'_>) {
        if let Err(e) = z.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    /// Blocks listed on `mt`'s lists at orders up to pageblock order: what decides between
    /// the list and the walk in `retype_pageblock`.
    fn listed(z: &Zone<'_>, mt: MigrateType) -> usize {
        (0..=PAGEBLOCK_ORDER).map(|o| z.nr_free_blocks(o, mt)).sum()
    }

    /// Free blocks (head, order, list type) with a head in `[lo, hi)`.
    fn free_blocks(z: &Zone<'_>, lo: Pfn, hi: Pfn) -> Vec<(Pfn, usize, MigrateType)> {
        let mut v = Vec::new();
        let mut pfn = lo;
        while pfn < hi {
            let b = z.block_at(pfn);
            if b.state == PageState::Buddy && b.head >= lo {
                v.push((b.head, b.order, z.pg(b.head).migratetype()));
            }
            pfn = b.end().max(pfn + 1);
        }
        v
    }

    /// Free frames of `[lo, hi)`, each with the list type of the block holding it.
    fn free_frames(z: &Zone<'_>, lo: Pfn, hi: Pfn) -> Vec<(Pfn, MigrateType)> {
        (lo..hi)
            .filter_map(|p| {
                let b = z.block_at(p);
                (b.state == PageState::Buddy).then(|| (p, z.pg(b.head).migratetype()))
            })
            .collect()
    }

    /// Four Movable pageblocks, every frame an allocated order-0 anonymous page except the
    /// frames at `p_free` (offsets into P) and `spread` single frames of the last two
    /// pageblocks (every other frame, so none of them merge).
    fn build<'a>(
        s: &'a mut Storage,
        p_free: &[core::ops::Range<usize>],
        spread: usize,
    ) -> Zone<'a> {
        let mut z = s.zone();
        z.free_range(BASE..BASE + SPAN).unwrap();
        let mut all = Vec::new();
        while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
            z.set_owner(p, Owner::new(OwnerKind::Anon, (p - BASE) as u64 + 1))
                .unwrap();
            all.push(p);
        }
        assert_eq!(all.len(), SPAN);
        for r in p_free {
            for off in r.clone() {
                z.free_pages(P + off, 0).unwrap();
            }
        }
        assert!(spread <= PAGEBLOCK_NR_PAGES);
        for i in 0..spread {
            z.free_pages(BASE + 2 * PAGEBLOCK_NR_PAGES + 2 * i, 0)
                .unwrap();
        }
        ok(&z);
        assert_eq!(z.pageblock_counts()[MigrateType::Movable.index()], 4);
        z
    }

    /// A few free blocks of several orders, some of them adjacent without being buddies:
    /// 4..64 (orders 2, 3, 4, 5), 100..102 (1), 131 (0), 256..512 (8): seven listed
    /// blocks, 319 frames.
    const SPARSE: [core::ops::Range<usize>; 4] = [4..64, 100..102, 131..132, 256..512];
    const SPARSE_BLOCKS: usize = 7;
    /// All of P free.
    #[allow(clippy::single_range_in_vec_init)]
    const WHOLE: [core::ops::Range<usize>; 1] = [0..PAGEBLOCK_NR_PAGES];

    /// Retype P to `to` (with `start_isolate_page_range` for Isolate, else
    /// `set_pageblock_migratetype`), check that exactly P's free frames moved to `to`'s
    /// lists, nothing else changed, then retype back to Movable and check the zone is as
    /// before. Returns P's free blocks while retyped.
    fn round_trip(z: &mut Zone<'_>, to: MigrateType) -> Vec<(Pfn, usize, MigrateType)> {
        let before = z.counters();
        let frames_before = frames(z);
        let in_p = free_frames(z, P, P_END);
        let outside: Vec<_> = free_frames(z, BASE, P)
            .into_iter()
            .chain(free_frames(z, P_END, BASE + SPAN))
            .collect();
        let n = in_p.len();
        if to == MigrateType::Isolate {
            z.start_isolate_page_range(P, P_END, MigrateType::Movable)
                .unwrap();
        } else {
            z.set_pageblock_migratetype(P, to).unwrap();
        }
        ok(z);
        assert_eq!(z.pageblock_migratetype(P), Some(to));
        let c = z.counters();
        assert_eq!(c.free_by_migratetype[to.index()], n);
        assert_eq!(
            c.free_by_migratetype[MigrateType::Movable.index()],
            before.free_by_migratetype[MigrateType::Movable.index()] - n
        );
        // The same free frames, P's on `to`'s lists, the others where they were.
        let moved: Vec<_> = in_p.iter().map(|&(p, _)| (p, to)).collect();
        assert_eq!(free_frames(z, P, P_END), moved);
        let outside_now: Vec<_> = free_frames(z, BASE, P)
            .into_iter()
            .chain(free_frames(z, P_END, BASE + SPAN))
            .collect();
        assert_eq!(outside_now, outside);
        let retyped = free_blocks(z, P, P_END);
        if to == MigrateType::Isolate {
            z.undo_isolate_page_range(P, P_END, MigrateType::Movable);
        } else {
            z.set_pageblock_migratetype(P, MigrateType::Movable)
                .unwrap();
        }
        ok(z);
        assert_eq!(z.counters(), before);
        assert!(frames(z) == frames_before, "a frame changed");
        retyped
    }

    #[test]
    fn retype_finds_the_same_free_blocks_through_the_lists_and_by_walking() {
        let mut results = Vec::new();
        // Few listed blocks (the lists), exactly the limit (the lists), one more and many
        // more (the walk). Only the other pageblocks differ.
        let at_limit = LISTED_BLOCKS_SCAN_LIMIT - SPARSE_BLOCKS;
        for (spread, through_lists) in [
            (0, true),
            (at_limit, true),
            (at_limit + 1, false),
            (300, false),
        ] {
            let mut s = Storage::new(BASE, SPAN);
            let mut z = build(&mut s, &SPARSE, spread);
            assert_eq!(
                listed(&z, MigrateType::Movable) <= LISTED_BLOCKS_SCAN_LIMIT,
                through_lists,
                "spread {spread}"
            );
            let isolated = round_trip(&mut z, MigrateType::Isolate);
            assert_eq!(
                isolated,
                [
                    (P + 4, 2, MigrateType::Isolate),
                    (P + 8, 3, MigrateType::Isolate),
                    (P + 16, 4, MigrateType::Isolate),
                    (P + 32, 5, MigrateType::Isolate),
                    (P + 100, 1, MigrateType::Isolate),
                    (P + 131, 0, MigrateType::Isolate),
                    (P + 256, 8, MigrateType::Isolate),
                ]
            );
            // Between two mergeable types too.
            let reclaimable = round_trip(&mut z, MigrateType::Reclaimable);
            assert!(reclaimable
                .iter()
                .all(|&(_, _, mt)| mt == MigrateType::Reclaimable));
            results.push((isolated, reclaimable));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn retype_of_a_fragmented_pageblock_walks_both_ways() {
        // 256 single free frames in P: more than the limit on the Movable lists when
        // isolating and on the Isolate lists when undoing.
        let every_other: Vec<_> = (0..PAGEBLOCK_NR_PAGES)
            .step_by(2)
            .map(|o| o..o + 1)
            .collect();
        let mut s = Storage::new(BASE, SPAN);
        let mut z = build(&mut s, &every_other, 0);
        assert!(listed(&z, MigrateType::Movable) > LISTED_BLOCKS_SCAN_LIMIT);
        let isolated = round_trip(&mut z, MigrateType::Isolate);
        assert_eq!(isolated.len(), 256);
        assert!(isolated
            .iter()
            .all(|&(p, o, mt)| (p - P).is_multiple_of(2) && o == 0 && mt == MigrateType::Isolate));
        round_trip(&mut z, MigrateType::Reclaimable);
    }

    #[test]
    fn retype_splits_a_free_block_larger_than_the_pageblock_and_merges_it_back() {
        for (spread, to) in [
            (0, MigrateType::Isolate),
            (PAGEBLOCK_NR_PAGES, MigrateType::Isolate),
            (0, MigrateType::Cma),
            (PAGEBLOCK_NR_PAGES, MigrateType::Cma),
        ] {
            // P and the pageblock below it free: one order-10 block covering P.
            let mut s = Storage::new(BASE, SPAN);
            let mut z = build(&mut s, &WHOLE, spread);
            for p in BASE..P {
                z.free_pages(p, 0).unwrap();
            }
            assert_eq!(z.block_at(P).head, BASE);
            assert_eq!(z.block_at(P).order, MAX_ORDER);
            assert_eq!(
                listed(&z, MigrateType::Movable) <= LISTED_BLOCKS_SCAN_LIMIT,
                spread == 0
            );
            let retyped = round_trip(&mut z, to);
            assert_eq!(retyped, [(P, PAGEBLOCK_ORDER, to)]);
            assert_eq!(z.block_at(P).head, BASE);
            assert_eq!(z.block_at(P).order, MAX_ORDER);
        }
    }

    #[test]
    fn retype_to_a_mergeable_type_takes_a_free_neighbour_pageblock_along() {
        // Not a "moves only P's frames" case: P's free order-9 block merges with its free
        // Movable buddy pageblock, and the merged block takes P's new type (the module's
        // rule, as Linux 6.10's `__free_one_page`), retyping the neighbour too. Going back
        // splits and merges again, restoring both.
        for spread in [0, PAGEBLOCK_NR_PAGES] {
            let mut s = Storage::new(BASE, SPAN);
            let mut z = build(&mut s, &WHOLE, spread);
            for p in BASE..P {
                z.free_pages(p, 0).unwrap();
            }
            let before = z.counters();
            let frames_before = frames(&z);
            z.set_pageblock_migratetype(P, MigrateType::Reclaimable)
                .unwrap();
            ok(&z);
            assert_eq!(
                free_blocks(&z, BASE, P_END),
                [(BASE, MAX_ORDER, MigrateType::Reclaimable)]
            );
            assert_eq!(
                z.pageblock_migratetype(BASE),
                Some(MigrateType::Reclaimable)
            );
            assert_eq!(
                z.counters().free_by_migratetype[MigrateType::Reclaimable.index()],
                1 << MAX_ORDER
            );
            z.set_pageblock_migratetype(P, MigrateType::Movable)
                .unwrap();
            ok(&z);
            assert_eq!(z.pageblock_migratetype(BASE), Some(MigrateType::Movable));
            assert_eq!(z.counters(), before);
            assert!(frames(&z) == frames_before, "a frame changed");
        }
    }

    #[test]
    fn listed_blocks_give_up_untouched_past_the_limit() {
        let mut s = Storage::new(BASE, SPAN);
        let mut z = build(
            &mut s,
            &SPARSE,
            LISTED_BLOCKS_SCAN_LIMIT + 1 - SPARSE_BLOCKS,
        );
        assert_eq!(
            listed(&z, MigrateType::Movable),
            LISTED_BLOCKS_SCAN_LIMIT + 1
        );
        let before = frames(&z);
        let counters = z.counters();
        assert!(!z.move_listed_blocks(P..P_END, MigrateType::Movable, MigrateType::Isolate));
        assert!(frames(&z) == before);
        assert_eq!(z.counters(), counters);
        assert_eq!(z.pageblock_migratetype(P), Some(MigrateType::Movable));
    }
}
