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
//!    source becomes a frame of the allocation. Everything else takes the slow path:
//!    clean page cache is offered to [`Migrator::reclaim`] first (dropping is far cheaper
//!    than copying), other movable blocks are queued the same way one at a time,
//!    unmovable frames (and other calls' contiguous frames) fail the call. Every
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
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use super::page_alloc::{AllocError, Gfp, GfpFlags, MmError, Zone};
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
    pub(crate) src_allocated_as: u8,
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
/// frame is an allocated order-0 block owned by the same [`Owner::contig`] (one id per call,
/// so frames of different allocations can be told apart); give them back with
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
    let ours = zone.new_contig_owner();
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

/// Moves handed to [`Migrator::migrate_batch`] at once: one pageblock of order-0 pages, so
/// the per-batch costs (one TLB synchronisation, one bulk free) are amortised over many
/// pages while the batch buffers stay small.
pub const MIGRATE_BATCH: usize = 512;

/// Empty the isolated range (`__alloc_contig_migrate_range`). Reclaim happens page by page
/// (it is cheap and frees immediately); migrations are queued with their targets and run in
/// batches; order-0 sources are taken as frames of the allocation (allocated as
/// `taken_as`) when queued, and given back if their move fails. Returns how many frames of
/// the range were taken that way.
fn migrate_range<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start: Pfn,
    end: Pfn,
    taken_as: (MigrateType, Owner),
) -> Result<usize, ContigError> {
    let mut batch = Batch::new(taken_as);
    let result = migrate_range_batched(zone, migrator, start, end, &mut batch);
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
        undone.map_err(ContigError::Invalid)?;
    }
    batch.pool.drain(zone);
    result.map(|()| batch.taken)
}

fn migrate_range_batched<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    start: Pfn,
    end: Pfn,
    batch: &mut Batch,
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
                release(zone, b.head, b.order)?;
                outcome.progress = true;
                continue;
            }
            if !kind.is_movable() {
                return Err(ContigError::Busy { pfn: b.head });
            }
            if batch.moves.capacity() == 0 {
                // A range never needs more moves than it has frames.
                batch.moves.reserve(end - start)?;
            }
            let dst = batch.pool.take(zone, b.order, end - b.head)?;
            let mut m = Move::new(b.head, dst, b.order, owner);
            if let Err(err) = migrator.prepare(&mut m) {
                match err {
                    MigrateError::Busy => outcome.busy.get_or_insert(m.src),
                    MigrateError::Again => outcome.stuck.get_or_insert(m.src),
                };
                release(zone, dst, b.order)?;
                if outcome.busy.is_some() {
                    // Finish the batch (its moves are prepared), then fail.
                    batch.flush(zone, migrator, &mut outcome)?;
                    return Err(ContigError::Busy { pfn: m.src });
                }
                continue;
            }
            if b.order == 0 {
                match zone.record_order0_migration(b.head, dst, owner, batch.taken_as) {
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
                batch.flush(zone, migrator, &mut outcome)?;
                if let Some(pfn) = outcome.busy {
                    return Err(ContigError::Busy { pfn });
                }
            }
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

/// What one pass over the range achieved.
#[derive(Default)]
struct Outcome {
    progress: bool,
    /// First block that failed transiently.
    stuck: Option<Pfn>,
    /// First block that refused permanently: the call fails once the batch is settled.
    busy: Option<Pfn>,
}

/// Queued migrations and their targets; how many frames of the range were taken so far,
/// and as what type.
struct Batch {
    moves: MoveQueue,
    pool: TargetPool,
    taken: usize,
    /// What the taken frames are allocated as, and their owner.
    taken_as: (MigrateType, Owner),
    /// A move of order > 0 is queued (it needs settling even when it succeeds).
    has_blocks: bool,
}

impl Batch {
    /// No buffer yet: a range with nothing to migrate never allocates one.
    fn new(taken_as: (MigrateType, Owner)) -> Batch {
        Batch {
            moves: MoveQueue::EMPTY,
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
    fn flush<M: Migrator + ?Sized>(
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

/// The moves of a batch, in a buffer allocated once per call: the fast path writes each
/// record straight into its slot (`free_mut`, then `commit`).
struct MoveQueue {
    /// `buf.len()` is the capacity; `buf[..len]` are queued.
    buf: Vec<Move>,
    len: usize,
}

impl MoveQueue {
    /// No buffer yet: a range with nothing to migrate never allocates one.
    const EMPTY: MoveQueue = MoveQueue {
        buf: Vec::new(),
        len: 0,
    };

    /// A buffer for `want` moves (at most [`MIGRATE_BATCH`]) if the heap has room, else
    /// batches of one (still correct, just without the amortisation). Called before the
    /// first move is queued.
    fn reserve(&mut self, want: usize) -> Result<(), ContigError> {
        let placeholder = Move::new(0, 0, 0, Owner::NONE);
        for size in [want.clamp(1, MIGRATE_BATCH), 1] {
            if self.buf.try_reserve_exact(size).is_ok() {
                self.buf.resize(size, placeholder);
                return Ok(());
            }
        }
        Err(ContigError::NoMemory)
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    fn queued(&self) -> &[Move] {
        &self.buf[..self.len]
    }

    fn queued_mut(&mut self) -> &mut [Move] {
        &mut self.buf[..self.len]
    }

    /// The free slots, to be filled in order and then [`MoveQueue::commit`]ted.
    fn free_mut(&mut self) -> &mut [Move] {
        &mut self.buf[self.len..]
    }

    fn commit(&mut self, filled: usize) {
        self.len = (self.len + filled).min(self.buf.len());
    }

    /// Queue `m`; the caller checks [`MoveQueue::is_full`] first.
    fn push(&mut self, m: Move) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = m;
            self.len += 1;
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The queued moves, leaving the queue empty.
    fn take_all(&mut self) -> impl Iterator<Item = Move> + '_ {
        let len = core::mem::take(&mut self.len);
        self.buf[..len].iter().copied()
    }
}

/// Order-0 migration targets taken from the buddy as one larger block and split
/// (`[next, end)` are allocated, ownerless, not yet used), so a batch costs one buddy
/// allocation instead of one per page. Whatever is left is freed when the range is done.
struct TargetPool {
    next: Pfn,
    end: Pfn,
}

impl TargetPool {
    const EMPTY: TargetPool = TargetPool { next: 0, end: 0 };

    /// A target for a block of `order`; `pages_left` (pages from the block to the end of
    /// the range) bounds how much the pool takes at once.
    fn take(
        &mut self,
        zone: &mut Zone<'_>,
        order: usize,
        pages_left: usize,
    ) -> Result<Pfn, ContigError> {
        if order != 0 {
            return alloc_migration_target(zone, order);
        }
        if self.next == self.end {
            self.refill(zone, pages_left)?;
        }
        if self.next < self.end {
            let pfn = self.next;
            self.next += 1;
            return Ok(pfn);
        }
        alloc_migration_target(zone, 0)
    }

    /// Non-CMA memory first, as [`alloc_migration_target`]: a split block from the Movable
    /// lists, else a single page the ordinary way (which may steal), and only then CMA.
    /// Leaves the pool empty when the order-0 path should be used.
    fn refill(&mut self, zone: &mut Zone<'_>, pages_left: usize) -> Result<(), ContigError> {
        let max_order = (usize::BITS - 1 - pages_left.max(1).leading_zeros()) as usize;
        if max_order == 0 {
            return Ok(());
        }
        if let Some((pfn, order)) = zone.alloc_split_block(max_order, MigrateType::Movable) {
            (self.next, self.end) = (pfn, pfn + (1 << order));
            return Ok(());
        }
        if zone
            .alloc_pages(0, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
            .map(|pfn| {
                (self.next, self.end) = (pfn, pfn + 1);
            })
            .is_ok()
        {
            return Ok(());
        }
        if let Some((pfn, order)) = zone.alloc_split_block(max_order, MigrateType::Cma) {
            (self.next, self.end) = (pfn, pfn + (1 << order));
        }
        Ok(())
    }

    /// Give the unused targets back.
    fn drain(&mut self, zone: &mut Zone<'_>) {
        if self.next < self.end {
            zone.free_order0_run(self.next, self.end);
        }
        *self = TargetPool::EMPTY;
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

#[cfg(test)]
mod tests {
    use super::super::cma::{cma_activate_area, cma_init_reserved_mem};
    use super::super::testutil::{FakeOwners, Storage};
    use super::super::{CmaBalance, OwnerKind, PAGEBLOCK_NR_PAGES};
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;

    const BASE: Pfn = 0x40000;

    /// A batching owner over [`FakeOwners`]: it records every batch and fails chosen
    /// objects transiently (a number of times) or permanently, wherever they fall in a batch.
    #[derive(Default)]
    struct BatchingOwners {
        fake: FakeOwners,
        batch_sizes: Vec<usize>,
        again_left: BTreeMap<u64, usize>,
        busy: Vec<u64>,
    }

    impl Migrator for BatchingOwners {
        fn migrate(&mut self, _: Pfn, _: Pfn, _: usize, _: Owner) -> Result<(), MigrateError> {
            panic!("the zone must use migrate_batch");
        }

        fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
            self.fake.reclaim(pfn, order, owner)
        }

        fn migrate_batch(&mut self, moves: &mut [Move]) -> usize {
            assert!(moves.iter().all(|m| m.result == Err(MigrateError::Again)));
            self.batch_sizes.push(moves.len());
            for m in moves.iter_mut() {
                let id = m.owner.id();
                if self.busy.contains(&id) {
                    m.result = Err(MigrateError::Busy);
                    continue;
                }
                if let Some(left) = self.again_left.get_mut(&id).filter(|l| **l > 0) {
                    *left -= 1;
                    m.result = Err(MigrateError::Again);
                    continue;
                }
                m.result = self.fake.migrate(m.src, m.dst, m.order, m.owner);
            }
            moves.iter().filter(|m| m.result.is_err()).count()
        }
    }

    /// Zone of `total` pages whose last `cma` pages are a CMA area filled with order-0
    /// anonymous objects (ids from 1), plus `outside` objects in ordinary memory.
    fn full_area(
        storage: &mut Storage,
        total: usize,
        cma: usize,
        outside: usize,
    ) -> (Zone<'_>, BatchingOwners) {
        let mut z = storage.zone();
        z.free_range(BASE..BASE + total).unwrap();
        let mut area = cma_init_reserved_mem(BASE + total - cma, cma, 0, "cma").unwrap();
        cma_activate_area(&mut area, &mut z).unwrap();
        let mut owners = BatchingOwners::default();
        let mut id = 0;
        for (pages, balance) in [(cma, (0, 1)), (outside, (1, 1))] {
            z.set_cma_balance(CmaBalance::new(balance.0, balance.1).unwrap());
            for _ in 0..pages {
                let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
                id += 1;
                z.set_owner(p, Owner::new(OwnerKind::Anon, id)).unwrap();
                owners.fake.populate(id, p, 0, id * 7 + 1);
            }
        }
        z.set_cma_balance(CmaBalance::LINUX);
        (z, owners)
    }

    /// Every object is where its owner thinks, as an allocated block recording it, and no
    /// frame is lost: free + objects + contig frames account for every managed page.
    fn accounted(z: &Zone<'_>, owners: &BatchingOwners, contig_pages: usize) {
        if let Err(e) = z.check_invariants() {
            panic!("invariant broken: {e}");
        }
        owners.fake.verify().unwrap();
        for (&id, &(pfn, order, _)) in &owners.fake.objects {
            assert_eq!(z.allocated_block(pfn), Some((pfn, order)), "object {id}");
            assert_eq!(z.owner(pfn).map(|o| o.id()), Some(id), "object {id}");
        }
        let c = z.counters();
        assert_eq!(
            c.free_pages + owners.fake.objects.len() + contig_pages,
            c.managed_pages,
            "pages lost or owned twice"
        );
        assert_eq!(
            z.allocated_pages_of_kind(OwnerKind::Anon),
            owners.fake.objects.len()
        );
    }

    #[test]
    fn batched_migration_empties_a_full_area_from_split_targets() {
        let mut s = Storage::new(BASE, 8192);
        let (mut z, mut owners) = full_area(&mut s, 8192, 2048, 300);
        let cma_start = BASE + 8192 - 2048;
        accounted(&z, &owners, 0);
        alloc_contig_range(
            &mut z,
            &mut owners,
            cma_start,
            BASE + 8192,
            MigrateType::Cma,
        )
        .unwrap();
        accounted(&z, &owners, 2048);
        // Four full batches, no per-page calls, every target outside the area.
        assert_eq!(owners.batch_sizes, vec![MIGRATE_BATCH; 4]);
        assert!(owners.fake.objects.values().all(|o| o.0 < cma_start));
        // Targets came from split blocks: the moved objects sit in long runs.
        let mut moved: Vec<Pfn> = owners
            .fake
            .objects
            .iter()
            .filter(|(&id, _)| id <= 2048)
            .map(|(_, o)| o.0)
            .collect();
        moved.sort_unstable();
        let breaks = moved.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert!(breaks < 8, "{breaks} discontinuities among 2048 targets");
        free_contig_range(&mut z, cma_start, 2048).unwrap();
        accounted(&z, &owners, 0);
    }

    #[test]
    fn transient_failures_inside_a_batch_are_retried_without_losing_pages() {
        let mut s = Storage::new(BASE, 4096);
        let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
        let cma_start = BASE + 4096 - 1024;
        // Failures at the start, middle and end of batches, some of them twice.
        for (id, times) in [(1, 1), (300, 2), (512, 1), (513, 1), (1000, 2)] {
            owners.again_left.insert(id, times);
        }
        alloc_contig_range(
            &mut z,
            &mut owners,
            cma_start,
            BASE + 4096,
            MigrateType::Cma,
        )
        .unwrap();
        accounted(&z, &owners, 1024);
        assert_eq!(owners.batch_sizes[..2], [MIGRATE_BATCH, MIGRATE_BATCH]);
        // Second pass: the five that failed; third pass: the two that failed twice.
        assert_eq!(owners.batch_sizes[2..], [5, 2]);
    }

    #[test]
    fn a_busy_page_mid_batch_fails_the_range_but_settles_the_rest() {
        let mut s = Storage::new(BASE, 4096);
        let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
        let cma_start = BASE + 4096 - 1024;
        let busy_pfn = owners.fake.objects[&200].0;
        owners.busy.push(200);
        owners.again_left.insert(100, 1);
        let free_before = z.counters().free_pages;
        assert_eq!(
            alloc_contig_range(
                &mut z,
                &mut owners,
                cma_start,
                BASE + 4096,
                MigrateType::Cma
            ),
            Err(ContigError::Busy { pfn: busy_pfn })
        );
        accounted(&z, &owners, 0);
        assert_eq!(z.counters().free_pages, free_before);
        assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
        // The batch holding the busy page completed its other moves; the failed ones (busy
        // and transient) stayed in place; the next batch was never started.
        assert_eq!(owners.batch_sizes, vec![MIGRATE_BATCH]);
        assert_eq!(owners.fake.objects[&200].0, busy_pfn);
        let in_area = |id: u64| owners.fake.objects[&id].0 >= cma_start;
        assert!(in_area(100) && in_area(200) && !in_area(1) && !in_area(512));
        assert!(in_area(513));
        // Once the owner lets go, the same range succeeds.
        owners.busy.clear();
        alloc_contig_range(
            &mut z,
            &mut owners,
            cma_start,
            BASE + 4096,
            MigrateType::Cma,
        )
        .unwrap();
        accounted(&z, &owners, 1024);
    }

    #[test]
    fn default_batch_falls_back_to_single_migrations() {
        let mut s = Storage::new(BASE, 4096);
        let mut z = s.zone();
        z.free_range(BASE..BASE + 4096).unwrap();
        let mut fake = FakeOwners::default();
        for id in 1..=40 {
            let order = (id % 3) as usize;
            let p = z.alloc_pages(order, Gfp::MOVABLE).unwrap();
            z.set_owner(p, Owner::new(OwnerKind::Anon, id)).unwrap();
            fake.populate(id, p, order, id);
        }
        // The objects came from one max-order block: empty its two pageblocks.
        let start = fake.objects[&1].0 & !(2 * PAGEBLOCK_NR_PAGES - 1);
        let end = start + 2 * PAGEBLOCK_NR_PAGES;
        let inside = |f: &FakeOwners| f.objects.values().all(|o| (start..end).contains(&o.0));
        assert!(inside(&fake));
        fake.again = 7;
        // FakeOwners only implements `migrate`: the trait's default batch drives it.
        alloc_contig_range(&mut z, &mut fake, start, end, MigrateType::Movable).unwrap();
        z.check_invariants().unwrap();
        fake.verify().unwrap();
        assert!(fake.objects.values().all(|o| !(start..end).contains(&o.0)));
        assert_eq!(fake.migrations, 40);
    }
}
