//! Physical memory management: a Linux-style buddy allocator with migrate types and
//! pageblocks, page isolation, `alloc_contig_range`, and CMA areas.
//!
//! # Theory of operation
//!
//! Memory is described by one [`Zone`] per contiguous physical span (holes allowed). The zone
//! does not own its metadata: the caller lends it one [`Page`] per frame and one byte per
//! pageblock ([`zone_metadata_size`] says how much), so the firmware can carve both from RAM
//! while host tests use `Vec`s. All frames start as holes; the caller hands usable RAM to the
//! buddy with [`Zone::free_range`] and keeps firmware images, device-tree blobs and carveouts
//! out with [`Zone::reserve_range`].
//!
//! Free memory lives in `free_area[order].free_list[migratetype]`: intrusive doubly linked
//! lists threaded through the [`Page`] array by 32-bit frame indices, so allocation, free and
//! removal from the middle of a list are O(1) and never allocate. Every 2 MiB pageblock has a
//! migrate type; a free block always sits on the list of its pageblock's type, which is what
//! lets isolation and CMA reason about whole pageblocks:
//!
//! - Unmovable / Movable / Reclaimable blocks serve their own requests first and are stolen
//!   (largest block first, whole pageblock when at least half of it is free or alike) when a
//!   type runs dry, following Linux's `fallbacks[]` table.
//! - Cma blocks only ever serve Movable requests and the allocator never retypes them, so a
//!   CMA area can always be emptied by migration ([`alloc_contig_range`]).
//! - Isolate blocks hand nothing out; frees into them stay there until the isolation ends.
//!
//! Every allocated block records an [`Owner`] (kind + id). The kind is how the mm knows whether
//! a frame may be migrated or reclaimed; the id is the owner's private reverse map. Moving
//! pages is delegated to a [`Migrator`], the interface to the page owners.
//!
//! For partial array self-refresh a zone can count its free MAX_ORDER blocks per DRAM span
//! and steer allocations away from entirely free spans ([`Zone::enable_pasr`]); the count
//! changes only where a MAX_ORDER block joins or leaves a free list, so a zone without it
//! pays one compare below max order. [`evacuate_isolated_range`] empties ranges without
//! taking them, for the vacating pass in `crate::pasr`.
//!
//! Everything here is safe Rust, `no_std` + `alloc`, and assumes one caller at a time (the
//! firmware wraps the zone and its CMA areas in one spin lock).
#![forbid(unsafe_code)]

pub mod cma;
pub mod contig;
pub mod migrate;
pub mod migratetype;
pub mod page;
pub mod page_alloc;
pub mod page_isolation;
pub mod pin;
pub mod vmstat;

#[cfg(test)]
mod campaign_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use cma::{
    cma_activate_area, cma_alloc, cma_alloc_if_free, cma_alloc_movable, cma_init_reserved_mem,
    cma_pin, cma_release, cma_release_movable, cma_unpin, ChunkId, ChunkInfo, CmaArea, CmaError,
    CmaFit, CmaState,
};
pub use contig::{alloc_contig_range, evacuate_isolated_range, free_contig_range, ContigError};
pub use migrate::{MigrateError, Migrator, Move, NoMigrator, Reclaim, MIGRATE_BATCH};
pub use migratetype::MigrateType;
pub use page::{Owner, OwnerKind, Page, PageState};
pub use page_alloc::{
    zone_metadata_size, AllocError, CmaBalance, Gfp, GfpFlags, MetadataSize, MmError,
    PageblockUsage, PasrMode, PasrSetupError, PasrSpanState, PasrSpans, PcpCounters, PcpLimits,
    Watermarks, Zone, ZoneCounters, PASR_MAX_SPANS,
};
pub use pin::{pin_longterm, PinError};

/// Physical frame number: physical address >> [`PAGE_SHIFT`].
pub type Pfn = usize;

/// log2 of the page size ([`crate::util::PAGE_SHIFT`], 4 KiB pages as arm64 Linux with
/// `CONFIG_ARM64_4K_PAGES`), in the allocator's `usize` frame arithmetic.
pub const PAGE_SHIFT: usize = crate::util::PAGE_SHIFT as usize;
/// Bytes per page: [`crate::util::PAGE_SIZE`] as a `usize`, not a second definition.
pub const PAGE_SIZE: usize = crate::util::PAGE_SIZE as usize;
/// Largest block order the buddy keeps (4 MiB blocks). Linux calls this `MAX_PAGE_ORDER`
/// (formerly `MAX_ORDER - 1`); the number of free areas is [`NR_PAGE_ORDERS`].
pub const MAX_ORDER: usize = 10;
/// Number of free areas, orders `0..=MAX_ORDER`.
pub const NR_PAGE_ORDERS: usize = MAX_ORDER + 1;
/// Order of a pageblock, the unit that carries a migrate type (2 MiB).
pub const PAGEBLOCK_ORDER: usize = 9;
/// Pages per pageblock.
pub const PAGEBLOCK_NR_PAGES: usize = 1 << PAGEBLOCK_ORDER;

/// Linux's spelling of [`PAGEBLOCK_NR_PAGES`].
#[inline]
pub const fn pageblock_nr_pages() -> usize {
    PAGEBLOCK_NR_PAGES
}

/// First pfn of the pageblock containing `pfn`.
#[inline]
pub const fn pageblock_start_pfn(pfn: Pfn) -> Pfn {
    pfn & !(PAGEBLOCK_NR_PAGES - 1)
}

/// One past the last pfn of the pageblock containing `pfn`.
#[inline]
pub const fn pageblock_end_pfn(pfn: Pfn) -> Pfn {
    pageblock_start_pfn(pfn) + PAGEBLOCK_NR_PAGES
}

/// Convert a page count to KiB (meminfo's unit).
#[inline]
pub const fn pages_to_kb(pages: usize) -> usize {
    pages << (PAGE_SHIFT - 10)
}
