//! Unit tests of `alloc_contig_range`: the walk, batching, retries, undo paths and the
//! move queue.

use super::super::cma::{cma_activate_area, cma_init_reserved_mem};
use super::super::testutil::{frames, FakeOwners, Storage};
use super::super::*;
use super::super::{CmaBalance, OwnerKind, PAGEBLOCK_NR_PAGES};
use super::move_queue::MoveQueue;
use super::*;
use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec;

const BASE: Pfn = 0x40000;

/// A batching owner over [`FakeOwners`]: it records every batch and fails chosen
/// objects transiently (a number of times) or permanently, wherever they fall in a batch.
/// It also checks the two-step contract: `prepare` hands each accepted move a token
/// (1, 2, ...) and keeps it outstanding until `migrate_batch` or `cancel` finishes it;
/// a move finished twice, finished unprepared, or changed since it was prepared is a
/// contract violation, recorded in `errors`. `prepare` can refuse chosen objects.
#[derive(Default)]
struct BatchingOwners {
    fake: FakeOwners,
    batch_sizes: Vec<usize>,
    again_left: BTreeMap<u64, usize>,
    busy: Vec<u64>,
    /// Objects whose `prepare` refuses permanently.
    prepare_busy: Vec<u64>,
    /// Objects whose `prepare` refuses transiently, this many more times.
    prepare_again_left: BTreeMap<u64, usize>,
    /// Prepared moves not finished yet, by token.
    prepared: BTreeMap<usize, Move>,
    /// Last token handed out.
    tokens: usize,
    /// Every `prepare` call, and those that refused.
    prepare_calls: usize,
    prepare_refusals: usize,
    /// Sizes of the `finish_reclaim` calls, in order; `prepare_reclaim` calls; `reclaim`
    /// calls for single blocks; pages dropped by `prepare_reclaim` and not finished yet.
    reclaim_batches: Vec<usize>,
    reclaim_offers: usize,
    single_reclaims: usize,
    reclaimed_unfinished: BTreeMap<usize, Reclaim>,
    /// Moves finished by `migrate_batch` (with their outcome) and by `cancel`, in order.
    completed: Vec<Move>,
    cancelled: Vec<Move>,
    errors: Vec<String>,
}

impl BatchingOwners {
    /// Finish the prepared move `m` (in `what`); `false` if it was not outstanding.
    fn finish(&mut self, m: &Move, what: &str) -> bool {
        match self.prepared.remove(&m.token) {
            Some(p) if (p.src, p.dst, p.order, p.owner) == (m.src, m.dst, m.order, m.owner) => true,
            Some(p) => {
                self.errors.push(format!(
                    "{what}: {m:?} is not the move prepared with its token ({p:?})"
                ));
                false
            }
            None => {
                self.errors
                    .push(format!("{what}: {m:?} was not prepared or is already done"));
                false
            }
        }
    }

    /// Every prepared move ended in exactly one of `migrate_batch` / `cancel`, and no
    /// other move reached them.
    fn contract_kept(&self) {
        assert_eq!(
            self.errors,
            Vec::<String>::new(),
            "migrator contract broken"
        );
        assert!(
            self.reclaimed_unfinished.is_empty(),
            "dropped but never finished: {:?}",
            self.reclaimed_unfinished
        );
        assert!(
            self.prepared.is_empty(),
            "prepared but never completed nor cancelled: {:?}",
            self.prepared.values().collect::<Vec<_>>()
        );
        assert_eq!(
            self.completed.len() + self.cancelled.len(),
            self.prepare_calls - self.prepare_refusals,
            "a prepared move was finished twice or not at all"
        );
    }

    /// Ids of the objects inside `range`, in frame order.
    fn ids_in(&self, range: core::ops::Range<Pfn>) -> Vec<u64> {
        let mut v: Vec<(Pfn, u64)> = self
            .fake
            .objects
            .iter()
            .filter(|(_, o)| range.contains(&o.0))
            .map(|(&id, o)| (o.0, id))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    }

    fn pfn_of(&self, id: u64) -> Pfn {
        self.fake.objects[&id].0
    }
}

impl Migrator for BatchingOwners {
    fn migrate(&mut self, _: Pfn, _: Pfn, _: usize, _: Owner) -> Result<(), MigrateError> {
        panic!("the zone must use migrate_batch");
    }

    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
        self.single_reclaims += 1;
        self.fake.reclaim(pfn, order, owner)
    }

    fn prepare_reclaim(&mut self, r: &mut Reclaim) -> bool {
        self.reclaim_offers += 1;
        if r.token != 0 || !r.owner.is(OwnerKind::PageCache) {
            self.errors.push(format!(
                "prepare_reclaim: {r:?} is not a fresh page-cache offer"
            ));
        }
        if !self.fake.reclaim(r.pfn, 0, r.owner) {
            return false;
        }
        self.tokens += 1;
        r.token = self.tokens;
        self.reclaimed_unfinished.insert(r.token, *r);
        true
    }

    fn finish_reclaim(&mut self, pages: &[Reclaim]) {
        self.reclaim_batches.push(pages.len());
        for r in pages {
            if self.reclaimed_unfinished.remove(&r.token) != Some(*r) {
                self.errors.push(format!(
                    "finish_reclaim: {r:?} was not dropped or is finished"
                ));
            }
        }
    }

    fn prepare(&mut self, m: &mut Move) -> Result<(), MigrateError> {
        self.prepare_calls += 1;
        if m.token != 0 || m.result != Err(MigrateError::Again) {
            self.errors
                .push(format!("prepare: {m:?} does not arrive as a fresh move"));
        }
        let id = m.owner.id();
        if self.fake.objects.get(&id).map(|o| (o.0, o.1)) != Some((m.src, m.order)) {
            self.errors.push(format!(
                "prepare: {m:?} but the object is at {:?}",
                self.fake.objects.get(&id)
            ));
        }
        if self.prepared.values().any(|p| p.owner == m.owner) {
            self.errors
                .push(format!("prepare: {m:?} while a move of it is outstanding"));
        }
        if self.prepare_busy.contains(&id) {
            self.prepare_refusals += 1;
            return Err(MigrateError::Busy);
        }
        if let Some(left) = self.prepare_again_left.get_mut(&id).filter(|l| **l > 0) {
            *left -= 1;
            self.prepare_refusals += 1;
            return Err(MigrateError::Again);
        }
        self.tokens += 1;
        m.token = self.tokens;
        self.prepared.insert(m.token, *m);
        Ok(())
    }

    fn migrate_batch(&mut self, moves: &mut [Move]) -> usize {
        assert!(moves.iter().all(|m| m.result == Err(MigrateError::Again)));
        self.batch_sizes.push(moves.len());
        for m in moves.iter_mut() {
            let id = m.owner.id();
            if !self.finish(m, "migrate_batch") {
                // Never copy a page whose mappings were not broken first.
                m.result = Err(MigrateError::Busy);
            } else if self.busy.contains(&id) {
                m.result = Err(MigrateError::Busy);
            } else if let Some(left) = self.again_left.get_mut(&id).filter(|l| **l > 0) {
                *left -= 1;
                m.result = Err(MigrateError::Again);
            } else {
                m.result = self.fake.migrate(m.src, m.dst, m.order, m.owner);
            }
            self.completed.push(*m);
        }
        moves.iter().filter(|m| m.result.is_err()).count()
    }

    fn cancel(&mut self, moves: &mut [Move]) {
        for m in moves.iter() {
            if m.result != Err(MigrateError::Again) {
                self.errors.push(format!("cancel: {m:?} already ran"));
            }
            self.finish(m, "cancel");
            self.cancelled.push(*m);
        }
    }
}

/// `alloc_contig_range` of `[start, end)` as a CMA request, the owners migrating.
fn take_cma(
    z: &mut Zone<'_>,
    owners: &mut BatchingOwners,
    start: Pfn,
    end: Pfn,
) -> Result<(), ContigError> {
    alloc_contig_range(z, owners, start, end, MigrateType::Cma)
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
    // Lent at once, the area fills in address order: the tests count ids in walk order.
    z.lend_all_held();
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
/// frame is lost: free + objects + contig frames account for every managed page. The
/// migrator contract was kept: nothing is left prepared.
fn accounted(z: &Zone<'_>, owners: &BatchingOwners, contig_pages: usize) {
    if let Err(e) = z.check_invariants() {
        panic!("invariant broken: {e}");
    }
    owners.fake.verify().unwrap();
    owners.contract_kept();
    for (&id, &(pfn, order, _)) in &owners.fake.objects {
        assert_eq!(z.allocated_block(pfn), Some((pfn, order)), "object {id}");
        assert_eq!(z.owner(pfn).map(|o| o.id()), Some(id), "object {id}");
    }
    let object_pages: usize = owners.fake.objects.values().map(|o| 1 << o.1).sum();
    let c = z.counters();
    assert_eq!(
        c.free_pages + object_pages + contig_pages,
        c.managed_pages,
        "pages lost or owned twice"
    );
    assert_eq!(
        z.allocated_pages_of_kind(OwnerKind::Anon)
            + z.allocated_pages_of_kind(OwnerKind::PageCache),
        object_pages
    );
    assert_eq!(z.allocated_pages_of_kind(OwnerKind::Contig), contig_pages);
}

#[test]
fn batched_migration_empties_a_full_area_from_split_targets() {
    let mut s = Storage::new(BASE, 8192);
    let (mut z, mut owners) = full_area(&mut s, 8192, 2048, 300);
    let cma_start = BASE + 8192 - 2048;
    accounted(&z, &owners, 0);
    take_cma(&mut z, &mut owners, cma_start, BASE + 8192).unwrap();
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
fn the_move_buffer_is_kept_between_calls_and_grows_only_when_needed() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
    let cma_start = BASE + 4096 - 1024;
    let kept = |z: &mut Zone<'_>| {
        let buffer = z.take_move_buffer();
        let len = buffer.len();
        z.keep_move_buffer(buffer);
        len
    };
    assert_eq!(kept(&mut z), 0, "nothing before the first call");
    take_cma(&mut z, &mut owners, cma_start, cma_start + 64).unwrap();
    assert_eq!(kept(&mut z), 64, "sized by the range");
    take_cma(&mut z, &mut owners, cma_start + 64, cma_start + 1024).unwrap();
    assert_eq!(kept(&mut z), MIGRATE_BATCH, "grown, capped at a batch");
    accounted(&z, &owners, 1024);
    free_contig_range(&mut z, cma_start, 1024).unwrap();
    take_cma(&mut z, &mut owners, cma_start, cma_start + 8).unwrap();
    assert_eq!(kept(&mut z), MIGRATE_BATCH, "never shrunk");
    accounted(&z, &owners, 8);
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
    take_cma(&mut z, &mut owners, cma_start, BASE + 4096).unwrap();
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
        take_cma(&mut z, &mut owners, cma_start, BASE + 4096),
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
    take_cma(&mut z, &mut owners, cma_start, BASE + 4096).unwrap();
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

// ---- the two-step Migrator contract (prepare, then migrate_batch or cancel) -------

/// Zone of `total` pages whose last `cma` pages are a CMA area holding a mix of objects
/// (ids from 1): order-0 anonymous pages (the fast path), dirty and clean page cache
/// (the slow path; clean ones are reclaimed) and order-1/2 blocks, 9 frames per group of
/// five, `groups` times.
fn mixed_area(
    storage: &mut Storage,
    total: usize,
    cma: usize,
    groups: u64,
) -> (Zone<'_>, BatchingOwners) {
    let mut z = storage.zone();
    z.free_range(BASE..BASE + total).unwrap();
    let mut area = cma_init_reserved_mem(BASE + total - cma, cma, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    // Lent at once, the area fills in address order: the tests count ids in walk order.
    z.lend_all_held();
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap());
    let mut owners = BatchingOwners::default();
    for id in 1..=groups * 5 {
        let (order, kind) = match id % 5 {
            0 => (0, OwnerKind::Anon),
            1 => (0, OwnerKind::PageCache),
            2 => (2, OwnerKind::Anon),
            3 => (0, OwnerKind::PageCache),
            _ => (1, OwnerKind::PageCache),
        };
        let p = z.alloc_pages(order, Gfp::MOVABLE).unwrap();
        assert!(area.contains(p));
        z.set_owner(p, Owner::new(kind, id)).unwrap();
        owners.fake.populate(id, p, order, id * 13 + 5);
        if id % 5 == 3 {
            owners.fake.clean.insert(id);
        }
    }
    z.set_cma_balance(CmaBalance::LINUX);
    (z, owners)
}

#[test]
fn every_prepared_move_is_completed_or_cancelled_exactly_once() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = mixed_area(&mut s, 4096, 1024, 100);
    let cma_start = BASE + 4096 - 1024;
    accounted(&z, &owners, 0);
    // Transient refusals in both steps, on both paths (anonymous: fast path; page
    // cache and blocks: slow path), so moves are prepared again on later passes.
    for id in [5, 50, 252] {
        owners.prepare_again_left.insert(id, 2);
    }
    for id in [10, 11, 12, 254, 499] {
        owners.again_left.insert(id, 1);
    }
    let clean = owners.fake.clean.len();
    take_cma(&mut z, &mut owners, cma_start, BASE + 4096).unwrap();
    accounted(&z, &owners, 1024);
    assert!(owners.fake.objects.values().all(|o| o.0 < cma_start));
    assert!(owners.prepare_again_left.values().all(|&l| l == 0));
    assert!(owners.again_left.values().all(|&l| l == 0));
    // Clean page cache was dropped, never prepared; everything else moved exactly once.
    assert_eq!(owners.fake.reclaims, clean);
    let moved: Vec<&Move> = owners
        .completed
        .iter()
        .filter(|m| m.result.is_ok())
        .collect();
    assert_eq!(moved.len(), 500 - clean);
    assert_eq!(owners.fake.migrations, 500 - clean);
    // A successful call cancels nothing, and five moves failed once in migrate_batch.
    assert!(owners.cancelled.is_empty());
    assert_eq!(owners.completed.len(), moved.len() + 5);
    for m in moved {
        assert_eq!(owners.pfn_of(m.owner.id()), m.dst, "{m:?}");
    }
    free_contig_range(&mut z, cma_start, 1024).unwrap();
    accounted(&z, &owners, 0);
}

#[test]
fn prepare_refusing_busy_flushes_what_was_prepared_then_fails() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
    let cma_start = BASE + 4096 - 1024;
    let in_order = owners.ids_in(cma_start..BASE + 4096);
    let busy = in_order[200];
    let busy_pfn = owners.pfn_of(busy);
    owners.prepare_busy.push(busy);
    let free_before = z.counters().free_pages;
    assert_eq!(
        take_cma(&mut z, &mut owners, cma_start, BASE + 4096),
        Err(ContigError::Busy { pfn: busy_pfn })
    );
    accounted(&z, &owners, 0);
    assert_eq!(z.counters().free_pages, free_before);
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
    assert_eq!(z.pageblock_counts()[MigrateType::Cma.index()], 2);
    // The 200 moves prepared before it ran as one batch and were settled; nothing was
    // cancelled; the refused object and everything after it stayed.
    assert_eq!(owners.batch_sizes, vec![200]);
    assert!(owners.cancelled.is_empty());
    assert!(owners.completed.iter().all(|m| m.result.is_ok()));
    for &id in &in_order[..200] {
        assert!(owners.pfn_of(id) < cma_start, "object {id} was not moved");
    }
    for &id in &in_order[200..] {
        assert!(owners.pfn_of(id) >= cma_start, "object {id} moved");
    }
    assert_eq!(owners.pfn_of(busy), busy_pfn);
    assert_eq!(z.owner(busy_pfn), Some(Owner::new(OwnerKind::Anon, busy)));
    assert_eq!(
        z.page(busy_pfn).unwrap().migratetype(),
        MigrateType::Movable
    );
    // Once the owner lets go, the same range succeeds.
    owners.prepare_busy.clear();
    take_cma(&mut z, &mut owners, cma_start, BASE + 4096).unwrap();
    accounted(&z, &owners, 1024);
}

#[test]
fn prepare_refusing_again_is_retried_on_later_passes() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
    let cma_start = BASE + 4096 - 1024;
    let in_order = owners.ids_in(cma_start..BASE + 4096);
    for (i, times) in [(0, 3), (300, 1), (700, 4)] {
        owners.prepare_again_left.insert(in_order[i], times);
    }
    take_cma(&mut z, &mut owners, cma_start, BASE + 4096).unwrap();
    accounted(&z, &owners, 1024);
    assert!(owners.prepare_again_left.values().all(|&l| l == 0));
    assert_eq!(owners.prepare_refusals, 3 + 1 + 4);
    assert!(owners.completed.iter().all(|m| m.result.is_ok()));
    assert_eq!(owners.completed.len(), 1024);
    // A refusal on the fast path is asked again on the slow path of the same pass.
    // Pass 1 asks the first once (slow path: no buffer yet) and the 701st twice, and
    // queues all else (the 301st on its second ask); pass 2 asks both twice and queues
    // nothing; pass 3 queues both.
    assert_eq!(owners.batch_sizes, vec![MIGRATE_BATCH, 510, 2]);
}

#[test]
fn prepare_refusing_again_forever_gives_up() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
    let cma_start = BASE + 4096 - 1024;
    let stuck = owners.ids_in(cma_start..BASE + 4096)[10];
    let stuck_pfn = owners.pfn_of(stuck);
    owners.prepare_again_left.insert(stuck, usize::MAX);
    let free_before = z.counters().free_pages;
    assert_eq!(
        take_cma(&mut z, &mut owners, cma_start, BASE + 4096),
        Err(ContigError::GaveUp { pfn: stuck_pfn })
    );
    accounted(&z, &owners, 0);
    assert_eq!(z.counters().free_pages, free_before);
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
    // The others moved (and stay moved); one pass with progress, then
    // MIGRATE_MAX_PASSES_WITHOUT_PROGRESS passes without, each asking once or twice
    // (the fast path asks only while the target pool has frames).
    assert_eq!(owners.fake.migrations, 1023);
    assert_eq!(owners.pfn_of(stuck), stuck_pfn);
    let passes = 1 + MIGRATE_MAX_PASSES_WITHOUT_PROGRESS;
    assert!(
        (passes..=2 * passes).contains(&owners.prepare_refusals),
        "{} asks in {passes} passes",
        owners.prepare_refusals
    );
}

/// A zone of 2048 pages whose last 1024 are a CMA area full of anonymous pages, with
/// `free` non-CMA pages left for migration targets.
fn short_of_targets(storage: &mut Storage, free: usize) -> (Zone<'_>, BatchingOwners) {
    full_area(storage, 2048, 1024, 1024 - free)
}

#[test]
fn running_out_of_targets_cancels_the_prepared_moves_and_restores_the_zone() {
    let mut s = Storage::new(BASE, 2048);
    let (mut z, mut owners) = short_of_targets(&mut s, 300);
    let cma_start = BASE + 1024;
    accounted(&z, &owners, 0);
    let before = frames(&z);
    let counters = z.counters();
    let objects = owners.fake.objects.clone();
    let in_order = owners.ids_in(cma_start..BASE + 2048);
    assert_eq!(
        take_cma(&mut z, &mut owners, cma_start, BASE + 2048),
        Err(ContigError::NoMemory)
    );
    accounted(&z, &owners, 0);
    // 300 targets: 300 moves prepared and queued (less than a batch, so none ran),
    // all of them cancelled, in walk order.
    assert!(owners.batch_sizes.is_empty());
    assert!(owners.completed.is_empty());
    let cancelled: Vec<u64> = owners.cancelled.iter().map(|m| m.owner.id()).collect();
    assert_eq!(cancelled, in_order[..300]);
    assert!(owners
        .cancelled
        .iter()
        .all(|m| !(cma_start..BASE + 2048).contains(&m.dst)));
    // Nothing changed: every frame, every counter, every object.
    assert_eq!(owners.fake.objects, objects);
    assert_eq!(z.counters(), counters);
    assert!(frames(&z) == before, "a frame changed");
}

#[test]
fn running_out_of_targets_after_a_batch_cancels_only_the_unrun_moves() {
    let mut s = Storage::new(BASE, 2048);
    let (mut z, mut owners) = short_of_targets(&mut s, 700);
    let cma_start = BASE + 1024;
    let free_before = z.counters().free_pages;
    let in_order = owners.ids_in(cma_start..BASE + 2048);
    assert_eq!(
        take_cma(&mut z, &mut owners, cma_start, BASE + 2048),
        Err(ContigError::NoMemory)
    );
    accounted(&z, &owners, 0);
    assert_eq!(owners.batch_sizes, vec![MIGRATE_BATCH]);
    let cancelled: Vec<u64> = owners.cancelled.iter().map(|m| m.owner.id()).collect();
    assert_eq!(cancelled, in_order[MIGRATE_BATCH..700]);
    // The first batch stays migrated (its sources are free again); the rest stayed.
    for &id in &in_order[..MIGRATE_BATCH] {
        assert!(owners.pfn_of(id) < cma_start);
    }
    for &id in &in_order[MIGRATE_BATCH..] {
        assert!(owners.pfn_of(id) >= cma_start);
    }
    assert_eq!(z.counters().free_pages, free_before);
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
}

// ---- contiguous frames of other allocations ---------------------------------------

#[test]
fn frames_of_another_contig_allocation_are_never_taken() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 2048, 0);
    let c = BASE + 2048;
    let a = c + 600..c + 700;
    take_cma(&mut z, &mut owners, a.start, a.end).unwrap();
    accounted(&z, &owners, 100);
    let owner_a = z.owner(a.start).unwrap();
    assert_eq!(owner_a.kind(), OwnerKind::Contig);
    let a_intact = |z: &Zone<'_>| {
        for p in a.clone() {
            assert_eq!(
                z.owner(p),
                Some(owner_a),
                "frame {p:#x} of the first allocation"
            );
            assert_eq!(z.allocated_block(p), Some((p, 0)));
            assert_eq!(z.page(p).unwrap().migratetype(), MigrateType::Cma);
        }
    };
    let before = frames(&z);
    let counters = z.counters();
    // Overlapping from below, with 88 movable objects in front of the first allocation:
    // they are prepared and queued, then the walk meets the allocation and everything
    // queued is cancelled.
    let calls = owners.prepare_calls;
    assert_eq!(
        take_cma(&mut z, &mut owners, c + 512, c + 1024),
        Err(ContigError::Busy { pfn: a.start })
    );
    accounted(&z, &owners, 100);
    a_intact(&z);
    assert_eq!(owners.prepare_calls - calls, 88);
    assert_eq!(owners.cancelled.len(), 88);
    assert_eq!(z.counters(), counters);
    assert!(frames(&z) == before, "a frame changed");
    // Starting inside it, and covering it whole.
    for (lo, hi) in [(c + 650, c + 800), (a.start, a.end), (c + 699, c + 701)] {
        assert_eq!(
            take_cma(&mut z, &mut owners, lo, hi),
            Err(ContigError::Busy { pfn: lo })
        );
        accounted(&z, &owners, 100);
        a_intact(&z);
        assert!(frames(&z) == before, "a frame changed");
    }
    assert_eq!(owners.cancelled.len(), 88);
    // The first allocation can still be given back, and its range taken again.
    free_contig_range(&mut z, a.start, 100).unwrap();
    accounted(&z, &owners, 0);
    take_cma(&mut z, &mut owners, c + 512, c + 1024).unwrap();
    accounted(&z, &owners, 512);
    assert_ne!(z.owner(c + 512), Some(owner_a));
}

#[test]
fn separate_contig_allocations_get_different_owners() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 2048, 0);
    let c = BASE + 2048;
    // Adjacent, in one pageblock, and one in another pageblock.
    let ranges = [c + 1024..c + 1100, c + 1100..c + 1200, c + 100..c + 101];
    let mut seen = Vec::new();
    for r in &ranges {
        take_cma(&mut z, &mut owners, r.start, r.end).unwrap();
        let o = z.owner(r.start).unwrap();
        assert_eq!(o.kind(), OwnerKind::Contig);
        assert!(r.clone().all(|p| z.owner(p) == Some(o)));
        assert!(!seen.contains(&o), "owner {o:?} reused");
        seen.push(o);
    }
    accounted(&z, &owners, 177);
    for (r, o) in ranges.iter().zip(&seen) {
        assert!(
            r.clone().all(|p| z.owner(p) == Some(*o)),
            "frames of {r:?} changed hands"
        );
        free_contig_range(&mut z, r.start, r.len()).unwrap();
    }
    accounted(&z, &owners, 0);
}

// ---- a failed queued move gives its source back exactly ---------------------------

/// Fill every free frame of the zone with an order-0 anonymous object (ids after the
/// existing ones); returns the new ids in frame order.
fn fill_zone(z: &mut Zone<'_>, owners: &mut BatchingOwners) -> Vec<u64> {
    let mut all = Vec::new();
    while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
        all.push(p);
    }
    all.sort_unstable();
    let mut id = owners.fake.objects.keys().max().copied().unwrap_or(0);
    all.into_iter()
        .map(|p| {
            id += 1;
            z.set_owner(p, Owner::new(OwnerKind::Anon, id)).unwrap();
            owners.fake.populate(id, p, 0, id * 3 + 2);
            id
        })
        .collect()
}

fn free_object(z: &mut Zone<'_>, owners: &mut BatchingOwners, id: u64) -> Pfn {
    let (p, order, _) = owners.fake.forget(id).unwrap();
    z.free_pages(p, order).unwrap();
    p
}

/// Snapshot of what a failed call must give back for a frame.
fn source(z: &Zone<'_>, p: Pfn) -> (MigrateType, Option<Owner>, Option<(Pfn, usize)>) {
    (
        z.page(p).unwrap().migratetype(),
        z.owner(p),
        z.allocated_block(p),
    )
}

#[test]
fn a_failed_queued_move_gives_its_source_back_exactly() {
    // Two pageblocks full of anonymous pages, two more free for targets. Two frames of
    // the first pageblock were allocated as Unmovable (without claiming the
    // pageblock) and then given movable owners: one anonymous (fast path), one dirty
    // page cache (slow path).
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut owners = BatchingOwners::default();
    let ids = fill_zone(&mut z, &mut owners);
    assert_eq!(ids.len(), 2048);
    free_object(&mut z, &mut owners, ids[100]);
    free_object(&mut z, &mut owners, ids[200]);
    let mut k = [
        z.alloc_pages(0, Gfp::KERNEL).unwrap(),
        z.alloc_pages(0, Gfp::KERNEL).unwrap(),
    ];
    k.sort_unstable();
    assert_eq!(k, [BASE + 100, BASE + 200]);
    assert_eq!(z.pageblock_migratetype(BASE), Some(MigrateType::Movable));
    let (anon, cache) = (
        Owner::new(OwnerKind::Anon, 9001),
        Owner::new(OwnerKind::PageCache, 9002),
    );
    for (p, o) in k.iter().zip([anon, cache]) {
        z.set_owner(*p, o).unwrap();
        owners.fake.populate(o.id(), *p, 0, o.id());
        assert_eq!(z.page(*p).unwrap().migratetype(), MigrateType::Unmovable);
    }
    for &id in &ids[1024..] {
        free_object(&mut z, &mut owners, id);
    }
    accounted(&z, &owners, 0);
    let sources = k.map(|p| source(&z, p));
    let free_before = z.counters().free_pages;

    // Permanent failure in migrate_batch: the call fails, both sources are as before.
    owners.busy = vec![9001, 9002];
    assert_eq!(
        alloc_contig_range(&mut z, &mut owners, BASE, BASE + 512, MigrateType::Movable),
        Err(ContigError::Busy { pfn: k[0] })
    );
    accounted(&z, &owners, 0);
    assert_eq!(owners.batch_sizes, vec![MIGRATE_BATCH]);
    assert_eq!(k.map(|p| source(&z, p)), sources);
    assert_eq!(z.counters().free_pages, free_before, "targets not freed");
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);

    // Transient failure until the call gives up: undone once per pass, still exact.
    owners.busy.clear();
    owners.again_left.insert(9001, usize::MAX);
    owners.again_left.insert(9002, usize::MAX);
    let ran = owners.completed.len();
    assert_eq!(
        alloc_contig_range(&mut z, &mut owners, BASE, BASE + 512, MigrateType::Movable),
        Err(ContigError::GaveUp { pfn: k[0] })
    );
    accounted(&z, &owners, 0);
    assert_eq!(k.map(|p| source(&z, p)), sources);
    assert_eq!(z.counters().free_pages, free_before);
    // Both were queued, and failed, on every pass (none made progress: everything
    // else had moved out in the first call).
    let failed = |id| {
        owners.completed[ran..]
            .iter()
            .filter(|m| m.owner.id() == id)
            .count()
    };
    assert_eq!(failed(9001), MIGRATE_MAX_PASSES_WITHOUT_PROGRESS);
    assert_eq!(failed(9002), MIGRATE_MAX_PASSES_WITHOUT_PROGRESS);

    // Once they let go, the range is taken.
    owners.again_left.clear();
    alloc_contig_range(&mut z, &mut owners, BASE, BASE + 512, MigrateType::Movable).unwrap();
    accounted(&z, &owners, 512);
    assert!((BASE..BASE + 512).all(|p| z.page(p).unwrap().migratetype() == MigrateType::Movable));
}

#[test]
fn a_failed_move_in_a_cma_range_gets_back_its_movable_type() {
    // CMA frames are taken as Cma; a failed source must be Movable again, as allocated.
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
    let cma_start = BASE + 4096 - 1024;
    let in_order = owners.ids_in(cma_start..BASE + 4096);
    // Both in the first batch.
    let (busy, again) = (in_order[3], in_order[300]);
    let (busy_pfn, again_pfn) = (owners.pfn_of(busy), owners.pfn_of(again));
    let sources = [busy_pfn, again_pfn].map(|p| source(&z, p));
    assert_eq!(sources[0].0, MigrateType::Movable);
    owners.busy.push(busy);
    owners.again_left.insert(again, 1);
    let free_before = z.counters().free_pages;
    assert_eq!(
        take_cma(&mut z, &mut owners, cma_start, BASE + 4096),
        Err(ContigError::Busy { pfn: busy_pfn })
    );
    accounted(&z, &owners, 0);
    assert_eq!([busy_pfn, again_pfn].map(|p| source(&z, p)), sources);
    assert_eq!(z.counters().free_pages, free_before);
}

// ---- isolation of CMA requests ----------------------------------------------------

#[test]
fn cma_isolation_skips_the_scan_and_the_walk_refuses_contig_frames() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 2048, 0);
    let c = BASE + 2048;
    let a = c + 600..c + 700;
    take_cma(&mut z, &mut owners, a.start, a.end).unwrap();
    let owner_a = z.owner(a.start).unwrap();
    // The scan itself still sees the allocation as unmovable...
    assert_eq!(z.has_unmovable_pages(c + 512, c + 1024), Some(a.start));
    let before = frames(&z);
    let counters = z.counters();
    // ...but isolating Cma pageblocks for a CMA request does not scan (as Linux).
    z.start_isolate_page_range(c + 512, c + 1024, MigrateType::Cma)
        .unwrap();
    assert_eq!(z.pageblock_migratetype(c + 512), Some(MigrateType::Isolate));
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 1);
    z.check_invariants().unwrap();
    assert!(!z.test_pages_isolated(c + 512, c + 1024));
    z.undo_isolate_page_range(c + 512, c + 1024, MigrateType::Cma);
    assert_eq!(z.counters(), counters);
    assert!(frames(&z) == before, "a frame changed");
    // So the refusal comes from the walk, after it prepared what lies in front.
    let calls = owners.prepare_calls;
    assert_eq!(
        take_cma(&mut z, &mut owners, c + 512, c + 1024),
        Err(ContigError::Busy { pfn: a.start })
    );
    assert!(owners.prepare_calls > calls, "the walk never ran");
    accounted(&z, &owners, 100);
    assert!(a.clone().all(|p| z.owner(p) == Some(owner_a)));
    assert_eq!(z.counters(), counters);
    assert!(frames(&z) == before, "a frame changed");
}

#[test]
fn movable_isolation_still_refuses_unmovable_frames_up_front() {
    // Four Movable pageblocks: the first full of anonymous pages with one kernel page,
    // the second holding a contiguous (Movable) allocation among anonymous pages, the
    // rest free.
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut owners = BatchingOwners::default();
    let ids = fill_zone(&mut z, &mut owners);
    for &id in &ids[1024..] {
        free_object(&mut z, &mut owners, id);
    }
    let kernel = BASE + 77;
    let kernel_id = ids[77];
    assert_eq!(owners.pfn_of(kernel_id), kernel);
    owners.fake.forget(kernel_id);
    z.set_owner(kernel, Owner::new(OwnerKind::Kernel, 1))
        .unwrap();
    let a = BASE + 600..BASE + 650;
    alloc_contig_range(&mut z, &mut owners, a.start, a.end, MigrateType::Movable).unwrap();
    let owner_a = z.owner(a.start).unwrap();
    let before = frames(&z);
    let counters = z.counters();
    let calls = owners.prepare_calls;
    for (lo, hi, pfn) in [
        (BASE, BASE + 512, kernel),
        (BASE + 50, BASE + 100, kernel),
        (BASE + 512, BASE + 1024, a.start),
        (BASE + 620, BASE + 630, BASE + 620),
        (BASE, BASE + 1024, kernel),
    ] {
        assert_eq!(
            z.start_isolate_page_range(lo, hi, MigrateType::Movable),
            Err(MmError::Busy { pfn })
        );
        assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
        assert_eq!(
            alloc_contig_range(&mut z, &mut owners, lo, hi, MigrateType::Movable),
            Err(ContigError::Busy { pfn })
        );
        // Refused by the scan, before the walk prepared anything.
        assert_eq!(owners.prepare_calls, calls);
        assert_eq!(z.counters(), counters);
        assert!(frames(&z) == before, "a frame changed");
    }
    // Restoring to Cma does not skip the scan over pageblocks that are not Cma.
    assert_eq!(
        z.start_isolate_page_range(BASE + 512, BASE + 1024, MigrateType::Cma),
        Err(MmError::Busy { pfn: a.start })
    );
    assert!(frames(&z) == before, "a frame changed");
    assert!(a.clone().all(|p| z.owner(p) == Some(owner_a)));
    assert_eq!(z.allocated_pages_of_kind(OwnerKind::Kernel), 1);
    z.free_pages(kernel, 0).unwrap();
    accounted(&z, &owners, 50);
}

// ---- MoveQueue ----------------------------------------------------------------------

fn mv(i: usize) -> Move {
    Move::new(
        0x1000 + i,
        0x2000 + i,
        0,
        Owner::new(OwnerKind::Anon, i as u64),
    )
}

#[test]
fn move_queue_reserves_a_batch_capped_by_the_range() {
    let q = MoveQueue::with_buffer(Vec::new());
    assert_eq!((q.capacity(), q.len()), (0, 0));
    // No buffer yet: empty and, with no free slot, full (callers check the capacity).
    assert!(q.is_empty() && q.is_full());
    for (want, got) in [
        (0, 1),
        (1, 1),
        (3, 3),
        (MIGRATE_BATCH - 1, MIGRATE_BATCH - 1),
        (MIGRATE_BATCH, MIGRATE_BATCH),
        (MIGRATE_BATCH + 1, MIGRATE_BATCH),
        (usize::MAX, MIGRATE_BATCH),
    ] {
        let mut q = MoveQueue::with_buffer(Vec::new());
        q.reserve(want).unwrap();
        assert_eq!(q.capacity(), got, "reserve({want})");
        assert!(q.is_empty() && !q.is_full());
        assert_eq!(q.free_mut().len(), got);
        assert!(q.queued().is_empty());
    }
}

#[test]
fn move_queue_commit_push_take_all_and_clear() {
    let mut q = MoveQueue::with_buffer(Vec::new());
    q.reserve(8).unwrap();
    // Fill three slots in place, commit them.
    for (i, slot) in q.free_mut()[..3].iter_mut().enumerate() {
        *slot = mv(i);
    }
    q.commit(3);
    assert_eq!(q.len(), 3);
    assert_eq!(q.queued(), &[mv(0), mv(1), mv(2)]);
    assert_eq!(q.free_mut().len(), 5);
    // Slots past `len` are free: filling one without committing queues nothing.
    q.free_mut()[0] = mv(99);
    assert_eq!(q.len(), 3);
    q.push(mv(3));
    assert_eq!(q.queued(), &[mv(0), mv(1), mv(2), mv(3)]);
    // The migrator writes outcomes and tokens through queued_mut.
    q.queued_mut()[1].token = 7;
    assert_eq!(q.queued()[1].token, 7);
    // Committing more than there is room for fills the queue and no more.
    q.commit(100);
    assert_eq!(q.len(), 8);
    assert!(q.is_full());
    assert!(q.free_mut().is_empty());
    // Pushing into a full queue changes nothing.
    let full: Vec<Move> = q.queued().to_vec();
    q.push(mv(50));
    assert_eq!(q.queued(), &full[..]);
    // take_all yields the queued moves in order and leaves the queue empty, with its
    // buffer, even if the iterator is not consumed.
    let taken: Vec<Move> = q.take_all().collect();
    assert_eq!(taken, full);
    assert!(q.is_empty() && !q.is_full());
    assert_eq!(q.capacity(), 8);
    assert_eq!(q.take_all().count(), 0);
    q.push(mv(5));
    q.push(mv(6));
    drop(q.take_all());
    assert!(q.is_empty());
    q.push(mv(7));
    q.clear();
    assert!(q.is_empty());
    assert_eq!(q.free_mut().len(), 8);
}

#[test]
fn batches_are_never_larger_than_the_range() {
    for len in [1, 3, 100] {
        let mut s = Storage::new(BASE, 4096);
        let (mut z, mut owners) = full_area(&mut s, 4096, 1024, 0);
        let start = BASE + 3072 + 17;
        take_cma(&mut z, &mut owners, start, start + len).unwrap();
        accounted(&z, &owners, len);
        assert_eq!(owners.batch_sizes, vec![len]);
    }
}

// ---- short-term pins (I/O in flight on a page in CMA) ------------------------------

/// [`FakeOwners`] with short-term pins: a pinned object refuses to move with
/// `MigrateError::Again` (the page is under I/O); each refusal is one retry by the walk, and
/// the I/O completes (the pin is released) after `pins[id]` of them, which the next retry
/// observes.
#[derive(Default)]
struct IoPinnedOwners {
    fake: FakeOwners,
    pins: BTreeMap<u64, usize>,
}

impl Migrator for IoPinnedOwners {
    fn migrate(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MigrateError> {
        if let Some(left) = self.pins.get_mut(&owner.id()).filter(|l| **l > 0) {
            *left -= 1;
            return Err(MigrateError::Again);
        }
        self.fake.migrate(src, dst, order, owner)
    }

    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
        self.fake.reclaim(pfn, order, owner)
    }
}

/// A zone of 2048 pages whose second half is CMA, holding 64 anonymous pages (ids 1..=64)
/// in the area; returns the area's range.
fn cma_with_anon<'s>(s: &'s mut Storage, owners: &mut IoPinnedOwners) -> (Zone<'s>, Pfn, Pfn) {
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 1024, 1024, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap());
    for id in 1..=64 {
        let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
        assert!(area.contains(p));
        z.set_owner(p, Owner::new(OwnerKind::Anon, id)).unwrap();
        owners.fake.populate(id, p, 0, id * 3);
    }
    (z, BASE + 1024, BASE + 2048)
}

#[test]
fn short_term_pin_released_within_the_retry_budget_lets_contig_succeed() {
    let mut s = Storage::new(BASE, 2048);
    let mut owners = IoPinnedOwners::default();
    let (mut z, start, end) = cma_with_anon(&mut s, &mut owners);
    // Pass 1 moves the other pages (progress); the pinned one then refuses on
    // MIGRATE_MAX_PASSES_WITHOUT_PROGRESS - 1 more passes and moves on the one after.
    owners.pins.insert(7, MIGRATE_MAX_PASSES_WITHOUT_PROGRESS);
    alloc_contig_range(&mut z, &mut owners, start, end, MigrateType::Cma).unwrap();
    assert_eq!(owners.pins[&7], 0, "every retry observed the pin");
    owners.fake.verify().unwrap();
    assert!(owners
        .fake
        .objects
        .values()
        .all(|o| !(start..end).contains(&o.0)));
    assert_eq!(owners.fake.migrations, 64);
    z.check_invariants().unwrap();
}

#[test]
fn short_term_pin_held_beyond_the_budget_gives_up_and_restores_the_range() {
    let mut s = Storage::new(BASE, 2048);
    let mut owners = IoPinnedOwners::default();
    let (mut z, start, end) = cma_with_anon(&mut s, &mut owners);
    let pinned_pfn = owners.fake.objects[&7].0;
    owners
        .pins
        .insert(7, MIGRATE_MAX_PASSES_WITHOUT_PROGRESS + 1);
    let free_before = z.counters().free_pages;
    let err = alloc_contig_range(&mut z, &mut owners, start, end, MigrateType::Cma).unwrap_err();
    assert_eq!(err, ContigError::GaveUp { pfn: pinned_pfn });
    assert!(err.to_string().contains("still busy"));
    assert_eq!(
        owners.pins[&7], 0,
        "one refusal per pass until the call gave up"
    );
    // The range is back as it was: Cma pageblocks, the pinned page in place and owned,
    // nothing leaked (the 63 pages that moved hold frames outside, theirs freed inside).
    for pb in (start..end).step_by(PAGEBLOCK_NR_PAGES) {
        assert_eq!(z.pageblock_migratetype(pb), Some(MigrateType::Cma));
    }
    assert_eq!(z.owner(pinned_pfn), Some(Owner::new(OwnerKind::Anon, 7)));
    assert_eq!(z.counters().free_pages, free_before);
    owners.fake.verify().unwrap();
    z.check_invariants().unwrap();
    // Once the I/O is done the same call succeeds.
    alloc_contig_range(&mut z, &mut owners, start, end, MigrateType::Cma).unwrap();
    owners.fake.verify().unwrap();
    z.check_invariants().unwrap();
}

#[test]
fn a_free_range_is_taken_off_the_lists_and_an_isolated_one_is_left_alone() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = full_area(&mut s, 4096, 2048, 0);
    let c = BASE + 2048;
    // Free the upper half of the area again: a free, unaligned range inside it straddles
    // buddy blocks at both ends.
    let ids: Vec<u64> = owners.ids_in(c + 1024..c + 2048);
    for id in ids {
        free_object(&mut z, &mut owners, id);
    }
    z.check_invariants().unwrap();
    let before = frames(&z);
    let counters = z.counters();
    let a = c + 1100..c + 1300;
    take_cma(&mut z, &mut owners, a.start, a.end).unwrap();
    // Nothing was walked or prepared, and no pageblock changed type on the way.
    assert_eq!(owners.prepare_calls, 0);
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
    assert_eq!(z.pageblock_migratetype(a.start), Some(MigrateType::Cma));
    let owner = z.owner(a.start).unwrap();
    assert_eq!(owner.kind(), OwnerKind::Contig);
    assert!(a
        .clone()
        .all(|p| z.allocated_block(p) == Some((p, 0)) && z.owner(p) == Some(owner)));
    // The split pieces outside the range are listed again, fully merged (invariants).
    assert_eq!(z.counters().free_pages, counters.free_pages - 200);
    accounted(&z, &owners, 200);
    free_contig_range(&mut z, a.start, 200).unwrap();
    assert_eq!(z.counters(), counters);
    assert!(
        frames(&z) == before,
        "freeing did not merge back to the same blocks"
    );

    // A free range in an isolated pageblock belongs to another call: not taken there.
    z.start_isolate_page_range(c + 1024, c + 1536, MigrateType::Cma)
        .unwrap();
    let isolated = frames(&z);
    let ours = z.new_contig_owner();
    assert!(!z.take_range_if_free(a.start, a.end, (MigrateType::Cma, ours)));
    assert!(frames(&z) == isolated, "a frame changed");
    z.undo_isolate_page_range(c + 1024, c + 1536, MigrateType::Cma);
    // Nor is a range with one allocated frame.
    assert!(!z.take_range_if_free(c + 1000, c + 1100, (MigrateType::Cma, ours)));
    assert!(frames(&z) == before, "a frame changed");
    accounted(&z, &owners, 0);
}

// ---- clean page cache: dropped in batches, taken for the allocation at once -------

/// Zone of `total` pages whose last `cma` pages are a CMA area full of order-0 page-cache
/// objects (ids from 1); those for which `clean(id)` holds are clean, the rest dirty.
fn cache_area(
    storage: &mut Storage,
    total: usize,
    cma: usize,
    clean: impl Fn(u64) -> bool,
) -> (Zone<'_>, BatchingOwners) {
    let mut z = storage.zone();
    z.free_range(BASE..BASE + total).unwrap();
    let mut area = cma_init_reserved_mem(BASE + total - cma, cma, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    // Lent at once, the area fills in address order: the tests count ids in walk order.
    z.lend_all_held();
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap());
    let mut owners = BatchingOwners::default();
    for id in 1..=cma as u64 {
        let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
        assert!(area.contains(p));
        z.set_owner(p, Owner::new(OwnerKind::PageCache, id))
            .unwrap();
        owners.fake.populate(id, p, 0, id * 11 + 3);
        if clean(id) {
            owners.fake.clean.insert(id);
        }
    }
    z.set_cma_balance(CmaBalance::LINUX);
    (z, owners)
}

#[test]
fn clean_page_cache_is_dropped_in_batches_and_its_frames_taken_without_freeing() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = cache_area(&mut s, 4096, 1024, |_| true);
    let (start, end) = (BASE + 4096 - 1024, BASE + 4096);
    let free_before = z.counters().free_pages;
    accounted(&z, &owners, 0);
    // The walk alone: every frame of the range is taken as it is dropped, none goes
    // through the free lists (the frames taken are what the walk reports).
    z.start_isolate_page_range(start, end, MigrateType::Cma)
        .unwrap();
    let ours = z.new_contig_owner();
    let taken = super::migrate_range::migrate_range(
        &mut z,
        &mut owners,
        start,
        end,
        (MigrateType::Cma, ours),
    )
    .unwrap();
    assert_eq!(taken, 1024, "dropped frames are taken, not freed");
    assert!((start..end).all(|p| z.owner(p) == Some(ours) && z.allocated_block(p) == Some((p, 0))));
    assert!(z.take_isolated_range(start, end, (MigrateType::Cma, ours), taken));
    z.undo_isolate_taken_range(start, end, MigrateType::Cma);
    // Two batches of a pageblock each, no page on its own, nothing copied or prepared.
    assert_eq!(owners.reclaim_batches, vec![MIGRATE_BATCH; 2]);
    assert_eq!(owners.single_reclaims, 0);
    assert_eq!((owners.fake.reclaims, owners.fake.migrations), (1024, 0));
    assert_eq!(owners.prepare_calls, 0);
    assert!(owners.fake.objects.is_empty());
    accounted(&z, &owners, 1024);
    assert_eq!(
        z.counters().free_pages,
        free_before,
        "no migration target was used"
    );
    free_contig_range(&mut z, start, 1024).unwrap();
    accounted(&z, &owners, 0);
}

#[test]
fn page_cache_the_owner_will_not_drop_is_migrated_instead() {
    let mut s = Storage::new(BASE, 4096);
    // Every third page dirty, runs of clean pages between them.
    let (mut z, mut owners) = cache_area(&mut s, 4096, 1024, |id| id % 3 != 0);
    let (start, end) = (BASE + 4096 - 1024, BASE + 4096);
    let dirty: Vec<u64> = (1..=1024).filter(|id| id % 3 == 0).collect();
    // One dirty page also fails transiently in its batch, another in prepare.
    owners.again_left.insert(dirty[5], 1);
    owners.prepare_again_left.insert(dirty[100], 1);
    take_cma(&mut z, &mut owners, start, end).unwrap();
    accounted(&z, &owners, 1024);
    assert_eq!(owners.fake.reclaims, 1024 - dirty.len());
    assert_eq!(owners.fake.migrations, dirty.len());
    assert_eq!(owners.single_reclaims, 0);
    // Exactly the dirty pages are left, outside the area, holding their data.
    let mut left: Vec<u64> = owners.fake.objects.keys().copied().collect();
    left.sort_unstable();
    assert_eq!(left, dirty);
    assert!(owners.fake.objects.values().all(|o| o.0 < start));
    assert!(owners.prepare_again_left.values().all(|&l| l == 0));
    assert!(owners.again_left.values().all(|&l| l == 0));
    // The first pass offered every page once, the retry pass only the two pages left (the
    // dropped frames are the call's, the moved pages gone); a kept page is not asked again
    // on the slow path.
    assert_eq!(owners.reclaim_offers, 1024 + 2);
    assert_eq!(
        owners.reclaim_batches.iter().sum::<usize>(),
        1024 - dirty.len()
    );
    free_contig_range(&mut z, start, 1024).unwrap();
    accounted(&z, &owners, 0);
}

#[test]
fn a_kept_page_refused_for_good_fails_the_call_having_dropped_nothing_beyond_it() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut owners) = cache_area(&mut s, 4096, 1024, |id| id % 4 != 0);
    let (start, end) = (BASE + 4096 - 1024, BASE + 4096);
    // Page 4 is dirty and migrates; dirty page 8 will not move at all. Pages are offered
    // in walk order, so a call that fails there has dropped only the clean pages before
    // it, as page-by-page reclaim would have.
    owners.prepare_busy.push(8);
    let busy_pfn = owners.pfn_of(8);
    assert!((1..8).all(|id| owners.pfn_of(id) < busy_pfn));
    assert_eq!(
        take_cma(&mut z, &mut owners, start, end),
        Err(ContigError::Busy { pfn: busy_pfn })
    );
    accounted(&z, &owners, 0);
    assert_eq!(
        owners.fake.migrations, 1,
        "page 4 moved before page 8 refused"
    );
    assert!(owners.pfn_of(4) < start);
    let mut left: Vec<u64> = owners.fake.objects.keys().copied().collect();
    left.sort_unstable();
    let want: Vec<u64> = [4].into_iter().chain(8..=1024).collect();
    assert_eq!(left, want);
    assert_eq!(
        owners.reclaim_batches,
        vec![3, 3],
        "a batch ends at a kept page"
    );
}

#[test]
fn the_default_prepare_reclaim_drops_page_by_page() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, owners) = cache_area(&mut s, 4096, 1024, |id| id != 7);
    let (start, end) = (BASE + 4096 - 1024, BASE + 4096);
    // FakeOwners has no `prepare_reclaim` of its own: the default asks `reclaim`.
    let mut fake = owners.fake;
    alloc_contig_range(&mut z, &mut fake, start, end, MigrateType::Cma).unwrap();
    assert_eq!((fake.reclaims, fake.migrations), (1023, 1));
    fake.verify().unwrap();
    assert!(fake.objects[&7].0 < start);
    z.check_invariants().unwrap();
    assert_eq!(z.allocated_pages_of_kind(OwnerKind::Contig), 1024);
}
