//! Emptying an isolated range without taking it (the PASR vacating pass): the walk of
//! `alloc_contig_range` over a range the caller isolated, after which the range's frames
//! are given back to the buddy instead of being handed out.
//!
//! # Theory of operation
//!
//! The caller isolates every pageblock of the range first (with each pageblock's own type
//! to restore, so a CMA area stays CMA), typically several ranges at once so that no
//! migration target lands in a range about to be emptied too. The walk is
//! `migrate_range`'s, unchanged: clean page cache is dropped, other movable blocks are
//! migrated in batches, transient failures are retried, anything unmovable fails the call.
//! Order-0 sources are taken as frames of a (never completed) allocation while their moves
//! run; whatever the outcome, those frames are freed again afterwards, onto the Isolate
//! lists, where they stay until the caller ends the isolation. Migrated pages stay
//! migrated on failure, as with `alloc_contig_range`.
#![forbid(unsafe_code)]

use super::migrate_range::migrate_range;
use super::ContigError;
use crate::mm::{
    pageblock_start_pfn, MigrateType, Migrator, MmError, Pfn, Zone, PAGEBLOCK_NR_PAGES,
};

/// Migrate or drop everything allocated in `[start_pfn, end_pfn)`, every pageblock of which
/// the caller has isolated ([`Zone::start_isolate_page_range`]), and leave its frames free
/// on the Isolate lists. `Ok` means every frame of the range is free; on failure the frames
/// whose moves had succeeded are free too and the rest is as it was. The caller ends the
/// isolation either way ([`Zone::undo_isolate_page_range`]).
pub fn evacuate_isolated_range<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start_pfn: Pfn,
    end_pfn: Pfn,
) -> Result<(), ContigError> {
    if start_pfn >= end_pfn {
        return Err(ContigError::Invalid(MmError::InvalidRange {
            start: start_pfn,
            end: end_pfn,
        }));
    }
    if !zone.contains(start_pfn) || end_pfn > zone.end_pfn() {
        let pfn = if zone.contains(start_pfn) {
            end_pfn - 1
        } else {
            start_pfn
        };
        return Err(ContigError::Invalid(MmError::OutOfZone { pfn }));
    }
    if let Some(pfn) = (pageblock_start_pfn(start_pfn)..end_pfn)
        .step_by(PAGEBLOCK_NR_PAGES)
        .map(|b| b.max(start_pfn))
        .find(|&b| zone.pageblock_migratetype(b) != Some(MigrateType::Isolate))
    {
        // Not isolated: frames freed here could be handed out behind the walk.
        return Err(ContigError::Invalid(MmError::Busy { pfn }));
    }
    let ours = zone.new_contig_owner();
    let result = migrate_range(
        zone,
        migrator,
        start_pfn,
        end_pfn,
        (MigrateType::Movable, ours),
    );
    zone.free_taken_in_range(start_pfn, end_pfn, ours);
    result?;
    if zone.test_pages_isolated(start_pfn, end_pfn) {
        Ok(())
    } else {
        // migrate_range only ends well once a pass met nothing it could not move.
        Err(ContigError::Busy { pfn: start_pfn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testutil::{FakeOwners, Storage};
    use crate::mm::{Gfp, Owner, OwnerKind, PAGEBLOCK_NR_PAGES};

    const BASE: Pfn = 0x40000;

    #[test]
    fn empties_an_isolated_range_and_keeps_it_free() {
        let mut s = Storage::new(BASE, 4 * PAGEBLOCK_NR_PAGES);
        let mut z = s.zone();
        z.free_range(BASE..BASE + 4 * PAGEBLOCK_NR_PAGES).unwrap();
        let mut owners = FakeOwners::default();
        // 40 anonymous pages, an order-2 page-cache block and a clean page, all in the
        // pageblock the first one lands in.
        let wanted = (0..40).map(|_| (0, OwnerKind::Anon, false)).chain([
            (2, OwnerKind::PageCache, false),
            (0, OwnerKind::PageCache, true),
        ]);
        let mut placed = Vec::new();
        for (id, (order, kind, clean)) in (1..).zip(wanted) {
            let p = z.alloc_pages(order, Gfp::MOVABLE).unwrap();
            z.set_owner(p, Owner::new(kind, id)).unwrap();
            owners.populate(id, p, order, id);
            if clean {
                owners.clean.insert(id);
            }
            placed.push(p);
        }
        let start = pageblock_start_pfn(placed[0]);
        let range = start..start + PAGEBLOCK_NR_PAGES;
        assert!(placed.iter().all(|p| range.contains(p)), "{placed:x?}");
        // Not isolated: refused, nothing moved.
        assert_eq!(
            evacuate_isolated_range(&mut z, &mut owners, range.start, range.end),
            Err(ContigError::Invalid(MmError::Busy { pfn: range.start }))
        );
        assert_eq!(
            evacuate_isolated_range(&mut z, &mut owners, range.end, range.start),
            Err(ContigError::Invalid(MmError::InvalidRange {
                start: range.end,
                end: range.start
            }))
        );
        assert_eq!(owners.migrations, 0);
        z.start_isolate_page_range(range.start, range.end, MigrateType::Movable)
            .unwrap();
        evacuate_isolated_range(&mut z, &mut owners, range.start, range.end).unwrap();
        z.check_invariants().unwrap();
        owners.verify().unwrap();
        assert_eq!((owners.migrations, owners.reclaims), (41, 1));
        assert!(z.test_pages_isolated(range.start, range.end));
        assert!(owners
            .objects
            .values()
            .all(|&(p, _, _)| !range.contains(&p)));
        z.undo_isolate_page_range(range.start, range.end, MigrateType::Movable);
        z.check_invariants().unwrap();
        assert_eq!(z.allocated_block(range.start), None);
    }
}
