//! `alloc_contig_range`: empty a physical range by migrating or reclaiming what is in it,
//! then take it out of the buddy as order-0 frames.
//!
//! # Theory of operation
//!
//! Each call gets its own owner value, `Zone::new_contig_owner` (an
//! [`Owner::contig`](super::Owner::contig) with a fresh id): every frame it takes carries
//! it, so the call can tell its own frames from those of other contiguous allocations,
//! which it never takes.
//!
//! 0. When every frame of the range is already free (and none is in another call's
//!    isolated pageblock), take it straight off the free lists and stop: nothing needs
//!    moving, so isolating whole pageblocks and walking them would be pure cost.
//! 1. Isolate the pageblocks covering the range, so nothing new is allocated there and
//!    freed frames stay there. A Movable request is refused up front if the range holds
//!    an unmovable frame; a CMA request is not scanned (Cma pageblocks only ever hold
//!    movable pages and contiguous allocations, as Linux reasons), the walk below refuses
//!    whatever will not move.
//! 2. Walk the range. The fast path (`Zone::queue_order0_migrations`) takes each
//!    order-0 anonymous page: it gets a target frame outside the range from a pool (one
//!    larger block taken from the Movable, else Cma, free lists without stealing and split
//!    into frames, so a batch costs one buddy allocation), the owner is asked to
//!    [`Migrator::prepare`] it (unmap it, while the walk is at that page anyway), and the
//!    zone records the move as done right away: the owner record goes to the target, the
//!    source becomes a frame of the allocation. A second fast path
//!    (`Zone::take_order0_reclaimable`) takes order-0 page cache the same way: each page
//!    is offered to [`Migrator::prepare_reclaim`] as the walk reaches it (dropping is far
//!    cheaper than copying), and a page the owner drops becomes a frame of the allocation
//!    at once, without passing through the free lists; [`Migrator::finish_reclaim`] ends
//!    the batch (one TLB synchronisation). A page the owner keeps (dirty, busy) is queued
//!    for migration. Everything else takes the slow path: larger clean page-cache blocks
//!    are offered to [`Migrator::reclaim`] first, other movable blocks are queued one at a
//!    time, unmovable frames (and other calls' contiguous frames) fail the call. Every
//!    [`MIGRATE_BATCH`] moves (and at the end of a pass) [`Migrator::migrate_batch`]
//!    copies and re-maps the batch in one go (one TLB synchronisation); only its failures
//!    cost the zone anything afterwards (the record is undone, the target freed).
//!    Transient failures ([`MigrateError::Again`]) are retried; after
//!    [`MIGRATE_MAX_PASSES_WITHOUT_PROGRESS`] consecutive passes without progress, or on a
//!    permanent failure, the call gives up. Moves prepared but never run go to
//!    [`Migrator::cancel`].
//! 3. Take the rest: when every frame of the range was taken during migration (the
//!    count says so), nothing is left to check; otherwise check every frame is free or the
//!    call's own, take the free ones off the (Isolate) free lists, splitting blocks that
//!    straddle the ends. On failure the frames the call took are freed again.
//! 4. Restore the pageblock types (also on failure; migrated pages simply stay migrated).
//!
//! The [`Migrator`] is the interface to page owners. It gets no access to the zone (it is a
//! separate `&mut` borrow), so it cannot allocate or free behind the zone's back.
//!
//! `evacuate_isolated_range` runs step 2 alone over a range the caller isolated and then
//! frees what it took instead of handing it out: the PASR vacating pass, which empties
//! DRAM banks before self-refresh.
//!
//! The work is split by job: `driver` runs the steps above and undoes them on failure,
//! `evacuate` is the variant that releases the range,
//! `migrate_range` walks the range and retries, `batch` runs and settles a batch of moves,
//! `move_queue` holds the batch's records and `target_pool` hands out migration targets.
//!
//! [`Migrator`]: crate::mm::Migrator
//! [`Migrator::prepare`]: crate::mm::Migrator::prepare
//! [`Migrator::reclaim`]: crate::mm::Migrator::reclaim
//! [`Migrator::prepare_reclaim`]: crate::mm::Migrator::prepare_reclaim
//! [`Migrator::finish_reclaim`]: crate::mm::Migrator::finish_reclaim
//! [`Migrator::migrate_batch`]: crate::mm::Migrator::migrate_batch
//! [`Migrator::cancel`]: crate::mm::Migrator::cancel
//! [`MigrateError::Again`]: crate::mm::MigrateError::Again
//! [`MIGRATE_BATCH`]: crate::mm::MIGRATE_BATCH
#![forbid(unsafe_code)]

mod batch;
mod driver;
mod evacuate;
mod migrate_range;
mod move_queue;
mod target_pool;
#[cfg(test)]
mod tests;

use core::fmt;

use super::{MmError, Pfn};

pub use self::driver::{alloc_contig_range, free_contig_range, take_contig_range_if_free};
pub use self::evacuate::evacuate_isolated_range;
pub use self::migrate_range::MIGRATE_MAX_PASSES_WITHOUT_PROGRESS;

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

impl core::error::Error for ContigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ContigError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}
