//! The migration contract between mm and the page owners: [`Migrator`], the [`Move`]s it
//! performs, how they fail ([`MigrateError`]), and the batch size mm hands over at once.
//!
//! # Theory of operation
//!
//! mm decides what moves where; the owner (anonymous memory, the page cache) does the
//! moving: it copies the data and re-points its own mappings. The owner never touches the
//! zone (it is a separate `&mut` borrow), so it cannot allocate or free behind the zone's
//! back. A batched migration runs in two steps, so per-move costs the owner can share (TLB
//! synchronisation, locks) are paid once per batch of up to [`MIGRATE_BATCH`] moves:
//! [`Migrator::prepare`] as each move is queued, then [`Migrator::migrate_batch`] for the
//! whole batch, or [`Migrator::cancel`] for moves mm abandons. Clean page cache is dropped
//! rather than moved, a batch at a time too ([`Migrator::prepare_reclaim`] as mm reaches each
//! page, [`Migrator::finish_reclaim`] for the batch). Both the buddy
//! (which records moves in its frame metadata) and `alloc_contig_range` (which queues and
//! settles them) depend on this module, and it depends on neither.
#![forbid(unsafe_code)]

use core::fmt;

use super::{MigrateType, Owner, Pfn};

/// Why a migration did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateError {
    /// Transient (the page is locked, under writeback...): try again later.
    Again,
    /// Permanent: this block will not move.
    Busy,
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Again => f.write_str("migration failed for now, try again"),
            MigrateError::Busy => f.write_str("block cannot be migrated"),
        }
    }
}

impl core::error::Error for MigrateError {}

/// The page owners, as seen by mm. Implementations copy data and fix their own mappings;
/// they must not allocate or free pages.
///
/// A batched migration runs in two steps: [`Migrator::prepare`] for each move as mm queues
/// it (the owner can unmap the page right away, while mm is at that page anyway), then
/// [`Migrator::migrate_batch`] for the whole batch (one TLB synchronisation, the copies,
/// the new mappings). A prepared move mm abandons instead goes to [`Migrator::cancel`].
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

    /// First step of a batched move, as mm queues it. `Err` refuses the move (with
    /// [`Migrator::migrate`]'s meaning) and leaves everything as it was; `Ok` commits the
    /// migrator to finish it in [`Migrator::migrate_batch`] or undo it in
    /// [`Migrator::cancel`]. The default does nothing.
    #[inline]
    fn prepare(&mut self, m: &mut Move) -> Result<(), MigrateError> {
        let _ = m;
        Ok(())
    }

    /// Perform the prepared moves of a batch: each `moves[i].result` arrives as
    /// `Err(Again)` and receives the outcome of that move, with [`Migrator::migrate`]'s
    /// meaning. Every move stands alone: one failing must not undo or hide the others, and
    /// a failed move leaves its source mapped and intact. Returns how many moves failed
    /// (mm skips its bookkeeping of failures when none did). Implementations override this
    /// to share per-migration costs (TLB maintenance, locks) across the batch; the default
    /// migrates one block at a time.
    fn migrate_batch(&mut self, moves: &mut [Move]) -> usize {
        let mut failed = 0;
        for m in moves {
            m.result = self.migrate(m.src, m.dst, m.order, m.owner);
            failed += usize::from(m.result.is_err());
        }
        failed
    }

    /// Undo [`Migrator::prepare`] for moves mm will not run after all (it stopped early).
    /// The default does nothing.
    fn cancel(&mut self, moves: &mut [Move]) {
        let _ = moves;
    }

    /// Copy a movable device buffer (a CMA chunk nobody has pinned, the seeds'
    /// `cma_pin`/`cma_unpin`) of `count` contiguous frames from `src` to `dst`. Nothing is
    /// mapped to re-point: the buffer's owner learns the new place when it next pins the
    /// chunk. `Err` leaves `src` intact and in use. The default refuses: a migrator that
    /// cannot copy memory cannot defragment.
    fn move_chunk(&mut self, src: Pfn, dst: Pfn, count: usize) -> Result<(), MigrateError> {
        let _ = (src, dst, count);
        Err(MigrateError::Busy)
    }

    /// Drop the order-0 reclaimable page `r` if it is clean, as mm's walk reaches it, with
    /// [`Migrator::reclaim`]'s meaning, except that its TLB entries may stay until
    /// [`Migrator::finish_reclaim`] for the whole batch (mm hands out no frame before).
    /// `true`: dropped (unmapped and forgotten), mm takes the frame for its allocation;
    /// `false`: dirty or busy, mm migrates it instead. `r.token` is the migrator's own
    /// word for the page, kept for `finish_reclaim`. The default is
    /// [`Migrator::reclaim`], one page at a time.
    #[inline]
    fn prepare_reclaim(&mut self, r: &mut Reclaim) -> bool {
        self.reclaim(r.pfn, 0, r.owner)
    }

    /// Complete the pages of a batch [`Migrator::prepare_reclaim`] dropped (every page of
    /// `pages` was): one TLB synchronisation for all of them. The default does nothing.
    fn finish_reclaim(&mut self, pages: &[Reclaim]) {
        let _ = pages;
    }
}

/// One order-0 page dropped by [`Migrator::prepare_reclaim`]: `owner`'s page at `pfn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reclaim {
    pub pfn: Pfn,
    pub owner: Owner,
    /// The migrator's own word for this page, kept until [`Migrator::finish_reclaim`] (say,
    /// the address of the mapping it removed). mm sets it to 0 and never reads it.
    pub token: usize,
}

impl Reclaim {
    /// A page not offered yet.
    pub const fn new(pfn: Pfn, owner: Owner) -> Reclaim {
        Reclaim {
            pfn,
            owner,
            token: 0,
        }
    }
}

/// One migration in a batch: `owner`'s block of `1 << order` frames from `src` to `dst`,
/// and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub src: Pfn,
    pub dst: Pfn,
    pub order: usize,
    pub owner: Owner,
    pub result: Result<(), MigrateError>,
    /// The migrator's own word for this move, kept between its passes over a batch (say,
    /// the address of the mapping it broke). mm sets it to 0 and never reads it.
    pub token: usize,
    /// What `src` was allocated as (its raw `Page` byte), restored if the move fails
    /// (mm's own bookkeeping).
    pub(in crate::mm) src_allocated_as: u8,
}

impl Move {
    /// A move not attempted yet.
    pub const fn new(src: Pfn, dst: Pfn, order: usize, owner: Owner) -> Move {
        Move {
            src,
            dst,
            order,
            owner,
            result: Err(MigrateError::Again),
            token: 0,
            src_allocated_as: MigrateType::Movable as u8,
        }
    }
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

/// Moves handed to [`Migrator::migrate_batch`] at once: one pageblock of order-0 pages, so
/// the per-batch costs (one TLB synchronisation, one bulk free) are amortised over many
/// pages while the batch buffers stay small.
pub const MIGRATE_BATCH: usize = 512;
