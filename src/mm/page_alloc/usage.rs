//! What each pageblock holds, for pictures of memory (the display's memory map).
//!
//! One walk over the zone's blocks (a free block of any order is one step, an allocated
//! block one step per head), so a snapshot of a 1 GiB zone costs a few hundred thousand
//! steps at worst (every page allocated on its own) and a few thousand when memory is
//! mostly free. A block larger than a pageblock is split across the pageblocks it covers.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::Zone;
use crate::mm::{pageblock_start_pfn, MigrateType, PageState, Pfn, PAGEBLOCK_NR_PAGES};

/// One pageblock's type and how its frames are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageblockUsage {
    /// First frame of the pageblock (aligned; may lie below the zone's first frame).
    pub start_pfn: Pfn,
    /// The pageblock's migrate type (`Isolate` while `alloc_contig_range` holds it).
    pub migratetype: MigrateType,
    /// Frames on the free lists.
    pub free: usize,
    /// Frames in allocated blocks.
    pub allocated: usize,
    /// Frames that are not the allocator's: holes, reserved memory, or outside the zone.
    pub unmanaged: usize,
}

impl PageblockUsage {
    /// Frames in a pageblock.
    pub const FRAMES: usize = PAGEBLOCK_NR_PAGES;

    /// Whether `alloc_contig_range` holds the pageblock isolated.
    pub fn isolated(&self) -> bool {
        self.migratetype == MigrateType::Isolate
    }
}

impl Zone<'_> {
    /// Every pageblock the zone spans, in address order.
    pub fn pageblock_map(&self) -> Vec<PageblockUsage> {
        let first = pageblock_start_pfn(self.start_pfn);
        let mut usage: Vec<PageblockUsage> = (first..self.end_pfn)
            .step_by(PAGEBLOCK_NR_PAGES)
            .map(|start_pfn| PageblockUsage {
                start_pfn,
                migratetype: self.pb_type(start_pfn.max(self.start_pfn)),
                free: 0,
                allocated: 0,
                // Frames outside the zone never become anything else.
                unmanaged: PAGEBLOCK_NR_PAGES,
            })
            .collect();
        let mut pfn = self.start_pfn;
        while pfn < self.end_pfn {
            let block = self.block_at(pfn);
            let end = block.end().min(self.end_pfn).max(pfn + 1);
            // Holes, reserved frames and orphan tails stay counted as unmanaged.
            let managed = matches!(
                block.state,
                PageState::Buddy | PageState::Head | PageState::Pcp | PageState::Held
            );
            while managed && pfn < end {
                let index = (pfn - first) / PAGEBLOCK_NR_PAGES;
                let piece_end = (first + (index + 1) * PAGEBLOCK_NR_PAGES).min(end);
                let frames = piece_end - pfn;
                let cell = &mut usage[index];
                // A frame on the pcp is free memory, as in every other report.
                if matches!(
                    block.state,
                    PageState::Buddy | PageState::Pcp | PageState::Held
                ) {
                    cell.free += frames;
                } else {
                    cell.allocated += frames;
                }
                cell.unmanaged -= frames;
                pfn = piece_end;
            }
            pfn = end;
        }
        usage
    }
}
