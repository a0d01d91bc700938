//! `alloc_contig_range`'s driver, steps 0 to 4 of the [module docs](super): check the
//! request, isolate the range, have it emptied, take it, restore the pageblock types, and on
//! failure give back what the call took; and `free_contig_range`, its inverse.
#![forbid(unsafe_code)]

use super::migrate_range::migrate_range;
use super::ContigError;
use crate::mm::{
    pageblock_start_pfn, MigrateType, Migrator, MmError, PageState, Pfn, Zone, PAGEBLOCK_NR_PAGES,
};

/// Allocate exactly the frames `[start_pfn, end_pfn)`, emptying them first. On success every
/// frame is an allocated order-0 block owned by the same [`Owner::contig`] (one id per call,
/// so frames of different allocations can be told apart); give them back with
/// [`free_contig_range`]. On failure the zone is as before, except that blocks already
/// migrated stay at their new place.
///
/// [`Owner::contig`]: crate::mm::Owner::contig
pub fn alloc_contig_range<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start_pfn: Pfn,
    end_pfn: Pfn,
    migratetype: MigrateType,
) -> Result<(), ContigError> {
    validate(zone, start_pfn, end_pfn, migratetype).map_err(ContigError::Invalid)?;
    let ours = zone.new_contig_owner();
    if zone.take_range_if_free(start_pfn, end_pfn, (migratetype, ours)) {
        return Ok(());
    }
    zone.start_isolate_page_range(start_pfn, end_pfn, migratetype)
        .map_err(|e| match e {
            MmError::Busy { pfn } => ContigError::Busy { pfn },
            other => ContigError::Invalid(other),
        })?;
    let result =
        migrate_range(zone, migrator, start_pfn, end_pfn, (migratetype, ours)).and_then(|taken| {
            if zone.take_isolated_range(start_pfn, end_pfn, (migratetype, ours), taken) {
                Ok(())
            } else {
                Err(ContigError::Busy { pfn: start_pfn })
            }
        });
    match result {
        // Every frame of the range is now allocated: its inner pageblocks have nothing to
        // move between free lists.
        Ok(()) => zone.undo_isolate_taken_range(start_pfn, end_pfn, migratetype),
        Err(_) => {
            zone.free_taken_in_range(start_pfn, end_pfn, ours);
            zone.undo_isolate_page_range(start_pfn, end_pfn, migratetype);
        }
    }
    result
}

/// `alloc_contig_range` when `[start_pfn, end_pfn)` is free already: taken straight off the
/// zone (step 0), with no isolation and no migrator; `false`, changing nothing, otherwise.
pub fn take_contig_range_if_free(
    zone: &mut Zone<'_>,
    start_pfn: Pfn,
    end_pfn: Pfn,
    migratetype: MigrateType,
) -> bool {
    if validate(zone, start_pfn, end_pfn, migratetype).is_err() {
        return false;
    }
    let ours = zone.new_contig_owner();
    zone.take_range_if_free(start_pfn, end_pfn, (migratetype, ours))
}

fn validate(zone: &Zone<'_>, start: Pfn, end: Pfn, mt: MigrateType) -> Result<(), MmError> {
    if start >= end {
        return Err(MmError::InvalidRange { start, end });
    }
    if !zone.contains(start) {
        return Err(MmError::OutOfZone { pfn: start });
    }
    if end > zone.end_pfn() {
        return Err(MmError::OutOfZone { pfn: end - 1 });
    }
    let bad_block = |want_cma: bool| {
        // A plain loop: most requests cover one pageblock.
        let mut block = pageblock_start_pfn(start);
        while block < end {
            let b = block.max(start);
            let mt = zone.pb_type(b);
            if (mt == MigrateType::Cma) != want_cma && mt != MigrateType::Isolate {
                return Some(b);
            }
            block += PAGEBLOCK_NR_PAGES;
        }
        None
    };
    let offending = match mt {
        MigrateType::Cma => bad_block(true),
        MigrateType::Movable => bad_block(false),
        _ => return Err(MmError::InvalidRange { start, end }),
    };
    match offending {
        Some(pfn) => Err(MmError::Busy { pfn }),
        None => Ok(()),
    }
}

/// Give back frames taken by [`alloc_contig_range`] (`free_contig_range`). Every frame must
/// be an allocated order-0 block; otherwise nothing is freed and the first offender is
/// reported. Frames are freed as the largest aligned blocks possible so merging is cheap.
pub fn free_contig_range(zone: &mut Zone<'_>, pfn: Pfn, nr_pages: usize) -> Result<(), MmError> {
    let end = pfn.checked_add(nr_pages).ok_or(MmError::InvalidRange {
        start: pfn,
        end: usize::MAX,
    })?;
    if nr_pages == 0 {
        return Err(MmError::InvalidRange { start: pfn, end });
    }
    if !zone.contains(pfn) {
        return Err(MmError::OutOfZone { pfn });
    }
    if end > zone.end_pfn() {
        return Err(MmError::OutOfZone { pfn: end - 1 });
    }
    if let Some(bad) = (pfn..end).find(|&p| {
        zone.page(p)
            .is_none_or(|pg| pg.state() != PageState::Head || pg.order() != 0)
    }) {
        return Err(MmError::NotAllocated { pfn: bad });
    }
    zone.free_order0_run(pfn, end);
    Ok(())
}
