//! Which physical memory the buddy gets, and where its metadata lives.
//!
//! # Theory of operation
//!
//! Pure range arithmetic over byte addresses, so every decision is visible in one place:
//! usable RAM is the `/memory` banks (shrunk inward to whole pages) minus everything that
//! is occupied (RAM below the image end, which on `virt` holds the DTB; the DTB wherever it
//! is; `/memreserve/` entries) minus the reserved-memory plan's regions (kept ranges,
//! carveouts and the CMA areas, which enter the buddy separately as Cma pageblocks) minus
//! the memmap itself. The memmap (one `Page` per frame of the zone span plus one byte per
//! pageblock) is placed at the lowest 2 MiB-aligned spot of RAM that none of those ranges
//! touch, which on `virt` is just above the image: far from the top-down dynamic regions.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

/// 2 MiB: the memmap starts on a pageblock so it never shares one with buddy memory.
pub const MEMMAP_ALIGN: u64 = 2 << 20;
const PAGE: u64 = 4096;

pub fn page_up(a: u64) -> u64 {
    a.saturating_add(PAGE - 1) & !(PAGE - 1)
}

pub fn page_down(a: u64) -> u64 {
    a & !(PAGE - 1)
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Sorted, merged, non-empty copies of `ranges`.
pub fn normalise(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `ranges` minus every range of `holes`.
pub fn subtract_all(ranges: &[Range<u64>], holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut pieces: Vec<Range<u64>> = ranges.to_vec();
    for hole in holes.iter().filter(|h| h.start < h.end) {
        let mut next = Vec::with_capacity(pieces.len() + 1);
        for p in pieces {
            if !overlaps(&p, hole) {
                next.push(p);
                continue;
            }
            if p.start < hole.start {
                next.push(p.start..hole.start);
            }
            if hole.end < p.end {
                next.push(hole.end..p.end);
            }
        }
        pieces = next;
    }
    pieces
}

/// RAM banks shrunk inward to whole pages, sorted and merged.
pub fn ram_pages(banks: &[Range<u64>]) -> Vec<Range<u64>> {
    normalise(
        banks
            .iter()
            .map(|b| page_up(b.start)..page_down(b.end))
            .collect(),
    )
}

/// Lowest `MEMMAP_ALIGN`-aligned range of `bytes` inside `free` (already minus everything
/// in use), or `None` if no piece is big enough.
pub fn place_memmap(free: &[Range<u64>], bytes: u64) -> Option<Range<u64>> {
    let bytes = page_up(bytes);
    free.iter().find_map(|piece| {
        let start = piece.start.checked_add(MEMMAP_ALIGN - 1)? & !(MEMMAP_ALIGN - 1);
        let end = start.checked_add(bytes)?;
        (end <= piece.end).then_some(start..end)
    })
}
