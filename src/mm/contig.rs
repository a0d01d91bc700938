//! `alloc_contig_range`: empty a physical range by migrating or reclaiming what is in it,
//! then take it out of the buddy as order-0 frames.
//!
//! # Theory of operation
//!
//! 1. Isolate the pageblocks covering the range (refused if they hold unmovable frames), so
//!    nothing new is allocated there and freed frames stay there.
//! 2. Walk the in-use blocks in the range. Clean page cache is offered to
//!    [`Migrator::reclaim`] first (dropping is far cheaper than copying); movable blocks get
//!    a target block outside the range (non-CMA memory first, then other CMA memory) and
//!    [`Migrator::migrate`] copies them and re-points their mappings; the zone then moves
//!    the owner record to the target and frees the source into the isolated range.
//!    Transient failures ([`MigrateError::Again`]) are retried; after
//!    [`MIGRATE_MAX_PASSES_WITHOUT_PROGRESS`] consecutive passes without progress, or on a
//!    permanent failure, the call gives up.
//! 3. Check the whole range is free, take it off the (Isolate) free lists, splitting blocks
//!    that straddle its ends, and mark every frame an order-0 block owned by
//!    [`Owner::CONTIG`](super::Owner::CONTIG).
//! 4. Restore the pageblock types (also on failure; migrated pages simply stay migrated).
//!
//! The [`Migrator`] is the interface to page owners. It gets no access to the zone (it is a
//! separate `&mut` borrow), so it cannot allocate or free behind the zone's back.
#![forbid(unsafe_code)]

use core::fmt;

use super::page_alloc::{AllocError, Gfp, GfpFlags, MmError, Taken, Zone};
use super::{MigrateType, Owner, PageState, Pfn};

/// Linux gives up after this many consecutive passes that migrated nothing.
pub const MIGRATE_MAX_PASSES_WITHOUT_PROGRESS: usize = 5;

/// Why a migration did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateError {
    /// Transient (the page is locked, under writeback...): try again later.
    Again,
    /// Permanent: this block will not move.
    Busy,
}

/// The page owners, as seen by mm. Implementations copy data and fix their own mappings;
/// they must not allocate or free pages.
pub trait Migrator {
    /// Copy the `1 << order` frames at `src` to `dst` and re-point every mapping of
    /// `owner`'s block from `src` to `dst`. On `Ok` the zone moves the owner record to `dst`
    /// and frees `src`.
    fn migrate(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MigrateError>;

    /// Drop a reclaimable block if it is clean (unmap it, forget it). `true`: dropped, the
    /// zone frees it. `false`: dirty or busy, the zone migrates it instead.
    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool;
}

/// A migrator for when no owner can move anything yet: every migration is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMigrator;

impl Migrator for NoMigrator {
    fn migrate(&mut self, _: Pfn, _: Pfn, _: usize, _: Owner) -> Result<(), MigrateError> {
        Err(MigrateError::Busy)
    }

    fn reclaim(&mut self, _: Pfn, _: usize, _: Owner) -> bool {
        false
    }
}

/// Why `alloc_contig_range` failed. `Busy` and `GaveUp` are worth retrying elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContigError {
    /// Bad range or migrate type (only Movable and Cma ranges can be emptied; a Cma request
    /// must cover only Cma pageblocks, a Movable one no Cma pageblock).
    Invalid(MmError),
    /// A frame that cannot be moved (pinned, kernel, hole, already isolated...).
    Busy { pfn: Pfn },
    /// Transient migration failures persisted.
    GaveUp { pfn: Pfn },
    /// No memory outside the range to migrate into.
    NoMemory,
}

impl fmt::Display for ContigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContigError::Invalid(e) => write!(f, "invalid request: {e}"),
            ContigError::Busy { pfn } => write!(f, "pfn {pfn:#x} cannot be moved"),
            ContigError::GaveUp { pfn } => write!(f, "pfn {pfn:#x} still busy after retries"),
            ContigError::NoMemory => write!(f, "no memory to migrate into"),
        }
    }
}

/// Allocate exactly the frames `[start_pfn, end_pfn)`, emptying them first. On success every
/// frame is an allocated order-0 block owned by [`Owner::CONTIG`]; give them back with
/// [`free_contig_range`]. On failure the zone is as before, except that blocks already
/// migrated stay at their new place.
pub fn alloc_contig_range<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start_pfn: Pfn,
    end_pfn: Pfn,
    migratetype: MigrateType,
) -> Result<(), ContigError> {
    validate(zone, start_pfn, end_pfn, migratetype).map_err(ContigError::Invalid)?;
    zone.start_isolate_page_range(start_pfn, end_pfn, migratetype)
        .map_err(|e| match e {
            MmError::Busy { pfn } => ContigError::Busy { pfn },
            other => ContigError::Invalid(other),
        })?;
    let result = migrate_range(zone, migrator, start_pfn, end_pfn).and_then(|()| {
        if zone.test_pages_isolated(start_pfn, end_pfn) {
            zone.take_free_range(start_pfn, end_pfn, Taken::Contig(migratetype));
            Ok(())
        } else {
            Err(ContigError::Busy { pfn: start_pfn })
        }
    });
    zone.undo_isolate_page_range(start_pfn, end_pfn, migratetype);
    result
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
        (super::pageblock_start_pfn(start)..end)
            .step_by(super::PAGEBLOCK_NR_PAGES)
            .map(|b| b.max(start))
            .find(|&b| {
                (zone.pb_type(b) == MigrateType::Cma) != want_cma
                    && zone.pb_type(b) != MigrateType::Isolate
            })
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

/// Empty the isolated range (`__alloc_contig_migrate_range`).
fn migrate_range<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start: Pfn,
    end: Pfn,
) -> Result<(), ContigError> {
    let mut passes_without_progress = 0;
    loop {
        let mut progress = false;
        let mut stuck = None;
        let mut pfn = start;
        while pfn < end {
            let b = zone.block_at(pfn);
            pfn = b.end();
            match b.state {
                PageState::Buddy => continue,
                PageState::Head => {}
                _ => return Err(ContigError::Busy { pfn: b.head }),
            }
            let owner = zone.owner(b.head).unwrap_or(Owner::NONE);
            let kind = owner.kind();
            if kind.is_reclaimable() && migrator.reclaim(b.head, b.order, owner) {
                release(zone, b.head, b.order)?;
                progress = true;
                continue;
            }
            if !kind.is_movable() {
                return Err(ContigError::Busy { pfn: b.head });
            }
            let target = alloc_migration_target(zone, b.order)?;
            match migrator.migrate(b.head, target, b.order, owner) {
                Ok(()) => {
                    zone.set_owner(target, owner)
                        .map_err(ContigError::Invalid)?;
                    release(zone, b.head, b.order)?;
                    progress = true;
                }
                Err(err) => {
                    release(zone, target, b.order)?;
                    if err == MigrateError::Busy {
                        return Err(ContigError::Busy { pfn: b.head });
                    }
                    stuck.get_or_insert(b.head);
                }
            }
        }
        let Some(stuck_pfn) = stuck else {
            return Ok(());
        };
        if progress {
            passes_without_progress = 0;
        } else {
            passes_without_progress += 1;
            if passes_without_progress >= MIGRATE_MAX_PASSES_WITHOUT_PROGRESS {
                return Err(ContigError::GaveUp { pfn: stuck_pfn });
            }
        }
    }
}

fn release(zone: &mut Zone<'_>, pfn: Pfn, order: usize) -> Result<(), ContigError> {
    zone.free_pages(pfn, order).map_err(ContigError::Invalid)
}

/// Non-CMA memory first, so emptying one CMA range does not eat the others; the isolated
/// range itself is never handed out.
fn alloc_migration_target(zone: &mut Zone<'_>, order: usize) -> Result<Pfn, ContigError> {
    match zone.alloc_pages(order, Gfp::MOVABLE.with(GfpFlags::NO_CMA)) {
        Ok(pfn) => Ok(pfn),
        Err(AllocError::NoMemory | AllocError::Watermark) => zone
            .alloc_cma_pages(order)
            .map_err(|_| ContigError::NoMemory),
        Err(_) => Err(ContigError::NoMemory),
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
