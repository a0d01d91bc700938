//! A memory map snapshot read from a zone: what [`crate::display::memory_map`] draws.
//!
//! Theory of operation
//! -------------------
//! The zone's own per-pageblock report ([`Zone::pageblock_map`], one pass over its blocks)
//! becomes one cell per pageblock: its type, whether `alloc_contig_range` holds it
//! isolated, and its free frames. The totals are the managed frames and the free ones, so
//! the header agrees with the cells. The CMA areas become outlines over the pageblocks
//! their pfn ranges touch. Cheap enough to run before every live redraw.
#![forbid(unsafe_code)]

use alloc::string::String;
use core::ops::Range;

use crate::display::memory_map::{AreaOutline, MemoryMapSnapshot, PageblockCell};
use crate::mm::{PageblockUsage, Pfn, Zone, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER};
use crate::util::size::PAGE_SIZE;

/// The zone's state now; `areas` are (name, pfn range) of the CMA areas to outline;
/// `masked` the pfn ranges of DRAM banks masked from self-refresh, `None` on a board
/// without PASR.
pub fn zone_snapshot(
    zone: &Zone<'_>,
    areas: &[(&str, Range<Pfn>)],
    title: &str,
    masked: Option<&[Range<Pfn>]>,
) -> MemoryMapSnapshot {
    let usage = zone.pageblock_map();
    let first_block = zone.start_pfn() >> PAGEBLOCK_ORDER;
    let blocks = usage.len();
    let (mut managed, mut free) = (0u64, 0u64);
    let pageblocks = usage
        .iter()
        .enumerate()
        .map(|(i, cell): (usize, &PageblockUsage)| {
            managed += (cell.free + cell.allocated) as u64;
            free += cell.free as u64;
            let pfn = (first_block + i) << PAGEBLOCK_ORDER;
            PageblockCell {
                migrate_type: cell.migratetype,
                isolated: cell.isolated(),
                free_pages: cell.free as u32,
                masked: masked.is_some_and(|ranges| ranges.iter().any(|r| r.contains(&pfn))),
            }
        })
        .collect();
    let to_block = |pfn: Pfn| {
        (pfn >> PAGEBLOCK_ORDER)
            .saturating_sub(first_block)
            .min(blocks)
    };
    let areas = areas
        .iter()
        .map(|(name, range)| AreaOutline {
            name: String::from(*name),
            pageblocks: to_block(range.start)..to_block(range.end + PAGEBLOCK_NR_PAGES - 1),
        })
        .collect();
    MemoryMapSnapshot {
        title: String::from(title),
        total_bytes: managed * PAGE_SIZE,
        free_bytes: free * PAGE_SIZE,
        pageblocks,
        areas,
        pasr: masked.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::memory_map::BlockUse;
    use crate::mm::{zone_metadata_size, Gfp, MigrateType, Page};
    use alloc::vec;

    const BASE: Pfn = 0x40000;

    #[test]
    fn cells_count_free_pages_and_follow_types() {
        // 8 pageblocks; the first 100 frames stay holes (reserved for an image, say).
        let n = 8 * PAGEBLOCK_NR_PAGES;
        let size = zone_metadata_size(BASE, n);
        let mut pages = vec![Page::HOLE; size.pages];
        let mut blocks = vec![0u8; size.pageblocks];
        let mut zone = Zone::new(BASE, &mut pages, &mut blocks).unwrap();
        zone.free_range(BASE + 100..BASE + n).unwrap();
        let cma = BASE + 4 * PAGEBLOCK_NR_PAGES..BASE + 6 * PAGEBLOCK_NR_PAGES;
        zone.set_pageblock_migratetype(cma.start, MigrateType::Cma)
            .unwrap();
        zone.set_pageblock_migratetype(cma.start + PAGEBLOCK_NR_PAGES, MigrateType::Cma)
            .unwrap();
        zone.set_pageblock_migratetype(BASE + 7 * PAGEBLOCK_NR_PAGES, MigrateType::Isolate)
            .unwrap();
        let before = zone_snapshot(&zone, &[("cma", cma.clone())], "t", None);
        assert_eq!(before.pageblocks.len(), 8);
        assert_eq!(before.pageblocks[0].free_pages, 512 - 100);
        assert_eq!(
            BlockUse::of(before.pageblocks[0].free_pages),
            BlockUse::Partial
        );
        assert_eq!(before.pageblocks[1].free_pages, 512);
        assert_eq!(before.pageblocks[4].migrate_type, MigrateType::Cma);
        assert!(before.pageblocks[7].isolated);
        assert!(!before.pageblocks[6].isolated);
        assert_eq!(before.total_bytes, (n as u64 - 100) * PAGE_SIZE);
        assert_eq!(before.free_bytes, before.total_bytes);
        assert_eq!(before.areas[0].pageblocks, 4..6);
        // Take 3 pages: the free counts drop by 3, in one pageblock, and the total stays.
        let pfn = zone.alloc_pages(1, Gfp::MOVABLE).unwrap();
        let single = zone.alloc_pages(0, Gfp::MOVABLE).unwrap();
        let after = zone_snapshot(&zone, &[("cma", cma)], "t", None);
        assert_eq!(after.total_bytes, before.total_bytes);
        assert_eq!(after.free_bytes, before.free_bytes - 3 * PAGE_SIZE);
        let sum = |s: &MemoryMapSnapshot| {
            s.pageblocks
                .iter()
                .map(|c| u64::from(c.free_pages))
                .sum::<u64>()
        };
        assert_eq!(sum(&after), sum(&before) - 3);
        let block = |p: Pfn| (p - BASE) / PAGEBLOCK_NR_PAGES;
        assert!(after.pageblocks[block(pfn)].free_pages < before.pageblocks[block(pfn)].free_pages);
        assert!(
            after.pageblocks[block(single)].free_pages
                < before.pageblocks[block(single)].free_pages
        );
    }
}
