//! One batch of queued moves: running it through [`Migrator::migrate_batch`] and settling
//! every move in the zone, whatever the others did.
//!
//! # Theory of operation
//!
//! Order-0 moves were recorded as done when they were queued, so a batch in which every move
//! was order 0 and succeeded costs nothing after the migrator ran. Otherwise each move is
//! settled on its own: a moved larger block's owner record goes to its target and its
//! source is freed; a failed move's record is undone and its target freed. No page is lost
//! or owned twice.
#![forbid(unsafe_code)]

use super::move_queue::MoveQueue;
use super::target_pool::TargetPool;
use super::ContigError;
use crate::mm::{MigrateError, MigrateType, Migrator, Owner, Pfn, Zone};

/// What one pass over the range achieved.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) progress: bool,
    /// First block that failed transiently.
    pub(super) stuck: Option<Pfn>,
    /// First block that refused permanently: the call fails once the batch is settled.
    pub(super) busy: Option<Pfn>,
}

/// Queued migrations and their targets; how many frames of the range were taken so far,
/// and as what type.
pub(super) struct Batch {
    pub(super) moves: MoveQueue,
    pub(super) pool: TargetPool,
    pub(super) taken: usize,
    /// What the taken frames are allocated as, and their owner.
    pub(super) taken_as: (MigrateType, Owner),
    /// A move of order > 0 is queued (it needs settling even when it succeeds).
    pub(super) has_blocks: bool,
}

impl Batch {
    /// No buffer yet: a range with nothing to migrate never allocates one.
    pub(super) fn new(taken_as: (MigrateType, Owner), moves: MoveQueue) -> Batch {
        Batch {
            moves,
            pool: TargetPool::EMPTY,
            taken: 0,
            taken_as,
            has_blocks: false,
        }
    }

    /// Run the queued moves and settle every one of them, whatever the others did: a moved
    /// block's owner record goes to its target and its source is taken for the allocation;
    /// a failed move's target is freed and its source stays as it was. No page is lost or
    /// owned twice.
    pub(super) fn flush<M: Migrator + ?Sized>(
        &mut self,
        zone: &mut Zone<'_>,
        migrator: &mut M,
        outcome: &mut Outcome,
    ) -> Result<(), ContigError> {
        if self.moves.is_empty() {
            return Ok(());
        }
        let failed = migrator.migrate_batch(self.moves.queued_mut());
        outcome.progress |= failed < self.moves.len();
        let settled = if failed == 0 && !self.has_blocks {
            // Every move was order 0 and succeeded: recorded as done when queued.
            Ok(())
        } else {
            self.settle(zone, outcome)
        };
        self.moves.clear();
        self.has_blocks = false;
        settled
    }

    /// The zone's side of a batch that ran: see [`Batch::flush`]. Order-0 moves were
    /// recorded as done when they were queued, so only failures and larger blocks cost
    /// anything here.
    #[inline(never)]
    fn settle(&mut self, zone: &mut Zone<'_>, outcome: &mut Outcome) -> Result<(), ContigError> {
        let mut first_error = None;
        for m in self.moves.queued() {
            let settled = match (m.result, m.order) {
                (Ok(()), 0) => {
                    outcome.progress = true;
                    continue;
                }
                (Ok(()), order) => {
                    outcome.progress = true;
                    zone.settle_migrated_block(m.src, m.dst, order, m.owner)
                }
                (Err(err), order) => {
                    match err {
                        MigrateError::Busy => outcome.busy.get_or_insert(m.src),
                        MigrateError::Again => outcome.stuck.get_or_insert(m.src),
                    };
                    if order == 0 {
                        self.taken -= 1;
                        zone.undo_queued_migration(m)
                    } else {
                        zone.free_pages(m.dst, order)
                    }
                }
            };
            if let Err(e) = settled {
                first_error.get_or_insert(ContigError::Invalid(e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
