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

use crate::util::ranges::{align_down, align_up, align_up_saturating, merge};
use crate::util::PAGE_SIZE;

/// 2 MiB: the memmap starts on a pageblock so it never shares one with buddy memory.
pub const MEMMAP_ALIGN: u64 = 2 << 20;

/// RAM banks shrunk inward to whole pages, sorted and merged.
pub fn ram_pages(banks: &[Range<u64>]) -> Vec<Range<u64>> {
    merge(
        banks
            .iter()
            .map(|b| align_up_saturating(b.start, PAGE_SIZE)..align_down(b.end, PAGE_SIZE))
            .collect::<Vec<_>>(),
    )
}

/// Lowest `MEMMAP_ALIGN`-aligned range of `bytes` inside `free` (already minus everything
/// in use), or `None` if no piece is big enough.
pub fn place_memmap(free: &[Range<u64>], bytes: u64) -> Option<Range<u64>> {
    let bytes = align_up_saturating(bytes, PAGE_SIZE);
    free.iter().find_map(|piece| {
        let start = align_up(piece.start, MEMMAP_ALIGN)?;
        let end = start.checked_add(bytes)?;
        (end <= piece.end).then_some(start..end)
    })
}

#[cfg(test)]
// One-range lists are the point of several cases (one bank, one free piece).
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::util::ranges::subtract_all;
    use alloc::vec;

    const MIB: u64 = 1 << 20;

    #[test]
    fn ram_is_shrunk_inward_to_whole_pages_and_merged() {
        let banks = [
            0x8000_0000..0x8000_3fff,
            0x4000_0001..0x4000_5000,
            0x4000_5000..0x4000_9000,
        ];
        assert_eq!(
            ram_pages(&banks),
            vec![0x4000_1000..0x4000_9000, 0x8000_0000..0x8000_3000]
        );
        assert_eq!(
            ram_pages(&[0x1001..0x1fff]),
            vec![],
            "a bank inside one page is no RAM"
        );
    }

    #[test]
    fn memmap_goes_to_the_lowest_aligned_spot_that_fits() {
        // virt: RAM 1 GiB at 0x4000_0000, the image ends at 0x4060_0000.
        let free = subtract_all(&[0x4000_0000..0x8000_0000], &[0x4000_0000..0x4061_0000]);
        assert_eq!(
            place_memmap(&free, 3 * MIB + 1),
            Some(0x4080_0000..0x4080_0000 + 3 * MIB + 0x1000),
            "aligned up to 2 MiB, length rounded up to a page"
        );
        // The first piece is too small once aligned; the second takes it.
        let free = [0x4010_0000..0x4030_0000, 0x5000_0000..0x5100_0000];
        assert_eq!(place_memmap(&free, 2 * MIB), Some(0x5000_0000..0x5020_0000));
        assert_eq!(
            place_memmap(&free, 2 * MIB - 4096 * 256),
            Some(0x4020_0000..0x4030_0000)
        );
    }

    #[test]
    fn memmap_that_fits_nowhere_is_none() {
        assert_eq!(place_memmap(&[0x4000_0000..0x4040_0000], 8 * MIB), None);
        assert_eq!(place_memmap(&[], 4096), None);
        assert_eq!(
            place_memmap(&[u64::MAX - MIB..u64::MAX], 4096),
            None,
            "alignment near the top of the address space does not wrap"
        );
    }
}
