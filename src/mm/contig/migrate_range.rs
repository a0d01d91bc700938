//! Emptying an isolated range (`__alloc_contig_migrate_range`): the walk over its frames,
//! which reclaims, queues and takes what it meets, and the retry of transient failures.
//!
//! # Theory of operation
//!
//! One pass walks the range once. Runs of order-0 anonymous pages go through the zone's fast
//! path (`Zone::queue_order0_migrations`), which queues and records them as moved in one
//! step. Runs of order-0 page cache go through the other fast path
//! (`Zone::take_order0_reclaimable`), which offers each page to the owner
//! ([`Migrator::prepare_reclaim`]) and takes the dropped ones for the allocation at once (no
//! copy, no trip through the free lists), one TLB synchronisation per batch
//! ([`Migrator::finish_reclaim`]); a page the owner keeps is queued for migration. The walk
//! handles everything else block by block: free blocks are skipped, larger clean page-cache
//! blocks are reclaimed, other movable blocks are queued one at a time, anything else
//! fails the call. A full batch is run at once; the pass ends by running the rest. A pass
//! that met transient failures is repeated; [`MIGRATE_MAX_PASSES_WITHOUT_PROGRESS`]
//! passes in a row that moved nothing end the call. However the walk ends, moves queued but
//! never run are cancelled and undone, and the unused targets go back to the buddy.
#![forbid(unsafe_code)]

use super::batch::{Batch, Outcome};
use super::move_queue::MoveQueue;
use super::ContigError;
use crate::mm::{
    MigrateError, MigrateType, Migrator, Move, Owner, PageState, Pfn, Reclaim, Zone, MIGRATE_BATCH,
};

/// Linux gives up after this many consecutive passes that migrated nothing.
pub const MIGRATE_MAX_PASSES_WITHOUT_PROGRESS: usize = 5;

/// Empty the isolated range (`__alloc_contig_migrate_range`). Page cache is reclaimed page
/// by page in walk order (order-0 pages with one TLB synchronisation per batch); migrations
/// are queued with their targets and run in batches; order-0 sources (and order-0 pages
/// dropped) are taken as frames of the allocation (allocated as `taken_as`) when queued,
/// and given back if their move fails. Returns how many frames of the range were taken
/// that way.
pub(super) fn migrate_range<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start: Pfn,
    end: Pfn,
    taken_as: (MigrateType, Owner),
) -> Result<usize, ContigError> {
    // The move buffer is the zone's, kept from call to call: a call pays for it (and for
    // filling it) only when it needs a bigger one than any call before.
    let mut batch = Batch::new(taken_as, MoveQueue::with_buffer(zone.take_move_buffer()));
    // Failing here is fine: the slow path asks again before the first move.
    let _ = batch.moves.reserve(end - start);
    // The reclaim buffer likewise; without room the slow path reclaims page by page.
    let mut reclaims = zone.take_reclaim_buffer();
    let want = (end - start).min(MIGRATE_BATCH);
    if reclaims.len() < want && reclaims.try_reserve_exact(want - reclaims.len()).is_ok() {
        reclaims.resize(want, Reclaim::new(0, Owner::NONE));
    }
    let mut result = migrate_range_batched(zone, migrator, start, end, &mut batch, &mut reclaims);
    zone.keep_reclaim_buffer(reclaims);
    // Moves queued but never run (an error stopped the walk) are undone and the unused
    // part of the target pool goes back; their data was never touched.
    migrator.cancel(batch.moves.queued_mut());
    for m in batch.moves.take_all() {
        let undone = if m.order == 0 {
            batch.taken -= 1;
            zone.undo_queued_migration(&m)
        } else {
            zone.free_pages(m.dst, m.order)
        };
        if let (Err(e), Ok(())) = (undone, &result) {
            result = Err(ContigError::Invalid(e));
        }
    }
    batch.pool.drain(zone);
    zone.keep_move_buffer(batch.moves.into_buffer());
    result.map(|()| batch.taken)
}

fn migrate_range_batched<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start: Pfn,
    end: Pfn,
    batch: &mut Batch,
    reclaims: &mut [Reclaim],
) -> Result<(), ContigError> {
    let mut passes_without_progress = 0;
    loop {
        let mut outcome = Outcome::default();
        let mut pfn = start;
        while pfn < end {
            // Fast path: queue the movable order-0 pages from here on, with targets from
            // the pool, until the batch is full, the pool is empty, or a block needs more
            // than queueing.
            if batch.moves.capacity() != 0 {
                let mut targets = batch.pool.next..batch.pool.end;
                let (stopped, queued) = zone.queue_order0_migrations(
                    pfn,
                    end,
                    &mut targets,
                    batch.moves.free_mut(),
                    batch.taken_as,
                    migrator,
                );
                pfn = stopped;
                batch.moves.commit(queued);
                batch.pool.next = targets.start;
                batch.taken += queued;
                if batch.moves.is_full() {
                    batch.flush(zone, migrator, &mut outcome)?;
                    if let Some(pfn) = outcome.busy {
                        return Err(ContigError::Busy { pfn });
                    }
                    continue;
                }
                if pfn >= end {
                    break;
                }
            }
            // Fast path for page cache: the order-0 pages from here on are offered for
            // reclaim one by one and the dropped ones taken for the allocation at once,
            // with one TLB synchronisation for the batch.
            let (stopped, dropped, kept) =
                zone.take_order0_reclaimable(pfn, end, reclaims, batch.taken_as, migrator);
            if dropped != 0 {
                migrator.finish_reclaim(reclaims.get(..dropped).unwrap_or_default());
                batch.taken += dropped;
                outcome.progress = true;
            }
            if kept {
                // Dirty or busy: it migrates instead (no need to ask the owner again).
                pfn = stopped + 1;
                let owner = zone.owner(stopped).unwrap_or(Owner::NONE);
                queue_move(
                    zone,
                    migrator,
                    batch,
                    &mut outcome,
                    (stopped, 0, owner),
                    (start, end),
                )?;
                continue;
            }
            // What the reclaim walk stepped over (free blocks, frames this call took) needs
            // nothing more: go on from where it stopped. Stepping one block at a time
            // from `pfn` instead would walk every run of free blocks again from each of
            // its blocks (quadratic in the blocks of a hole).
            if stopped > pfn {
                pfn = stopped;
                continue;
            }
            let b = zone.block_at(pfn);
            pfn = b.end();
            match b.state {
                PageState::Buddy => continue,
                PageState::Head => {}
                _ => return Err(ContigError::Busy { pfn: b.head }),
            }
            let owner = zone.owner(b.head).unwrap_or(Owner::NONE);
            let kind = owner.kind();
            if owner == batch.taken_as.1 {
                // Taken by an earlier batch of this call.
                continue;
            }
            if kind.is_reclaimable() && migrator.reclaim(b.head, b.order, owner) {
                zone.note_contig_reclaimed(1 << b.order);
                release(zone, b.head, b.order)?;
                outcome.progress = true;
                continue;
            }
            if !kind.is_movable() {
                return Err(ContigError::Busy { pfn: b.head });
            }
            queue_move(
                zone,
                migrator,
                batch,
                &mut outcome,
                (b.head, b.order, owner),
                (start, end),
            )?;
        }
        batch.flush(zone, migrator, &mut outcome)?;
        if let Some(pfn) = outcome.busy {
            return Err(ContigError::Busy { pfn });
        }
        let Some(stuck_pfn) = outcome.stuck else {
            return Ok(());
        };
        if outcome.progress {
            passes_without_progress = 0;
        } else {
            passes_without_progress += 1;
            if passes_without_progress >= MIGRATE_MAX_PASSES_WITHOUT_PROGRESS {
                return Err(ContigError::GaveUp { pfn: stuck_pfn });
            }
        }
    }
}

/// Queue the move of `owner`'s block of `1 << order` frames at `head` (inside `range`),
/// with a target from the pool, once [`Migrator::prepare`] accepted it; run the batch if
/// that filled it. A transient refusal is noted in `outcome` for the next pass; `Err`
/// stops the walk (a permanent refusal, once the batch is settled; no memory; a zone
/// error).
fn queue_move<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    batch: &mut Batch,
    outcome: &mut Outcome,
    (head, order, owner): (Pfn, usize, Owner),
    (start, end): (Pfn, Pfn),
) -> Result<(), ContigError> {
    if batch.moves.capacity() == 0 {
        // A range never needs more moves than it has frames.
        batch.moves.reserve(end - start)?;
    }
    let dst = batch.pool.take(zone, order, end - head)?;
    let mut m = Move::new(head, dst, order, owner);
    if let Err(err) = migrator.prepare(&mut m) {
        match err {
            MigrateError::Busy => outcome.busy.get_or_insert(m.src),
            MigrateError::Again => outcome.stuck.get_or_insert(m.src),
        };
        release(zone, dst, order)?;
        if outcome.busy.is_some() {
            // Finish the batch (its moves are prepared), then fail.
            batch.flush(zone, migrator, outcome)?;
            return Err(ContigError::Busy { pfn: m.src });
        }
        return Ok(());
    }
    if order == 0 {
        match zone.record_order0_migration(head, dst, owner, batch.taken_as) {
            Ok(allocated_as) => m.src_allocated_as = allocated_as,
            Err(e) => {
                migrator.cancel(core::slice::from_mut(&mut m));
                release(zone, dst, 0)?;
                return Err(ContigError::Invalid(e));
            }
        }
        batch.taken += 1;
    } else {
        batch.has_blocks = true;
    }
    batch.moves.push(m);
    if batch.moves.is_full() {
        batch.flush(zone, migrator, outcome)?;
        if let Some(pfn) = outcome.busy {
            return Err(ContigError::Busy { pfn });
        }
    }
    Ok(())
}

fn release(zone: &mut Zone<'_>, pfn: Pfn, order: usize) -> Result<(), ContigError> {
    zone.free_pages(pfn, order).map_err(ContigError::Invalid)
}
