//! Long seeded suspend-cycle tests: a mixed workload (kernel, reclaimable, anonymous,
//! clean and dirty page cache, pinned pages, CMA allocations and releases) on a zone over a
//! fake DRAM whose contents are real, with suspend cycles (vacate, mask, a self-refresh
//! that overwrites every masked unit, wake) every few hundred steps. After every step:
//! every zone and PASR invariant, and no live object in a masked unit; after every wake
//! and at the end: every live object's checksum (0 bytes lost). At every sleep the spans
//! masked are compared with the spans that could have been emptied, computed
//! independently from the test's own model, and the same trace run with the 2012 rule
//! must mask fewer.

use std::vec::Vec;

use super::geometry::{Geometry, UnitKind};
use super::sections::Sections;
use super::testrig::{could_be_emptied, Rig, Tenants};
use crate::mm::testutil::Storage;
use crate::mm::{
    cma_activate_area, cma_alloc, cma_init_reserved_mem, cma_release, CmaArea, Gfp, GfpFlags,
    OwnerKind, PasrMode, Pfn, Watermarks, Zone,
};
use crate::util::size::MIB;

const BASE: Pfn = 0x40000;
/// 2 dies x 8 banks of 2 MiB, interleaved every 64 KiB: 8 spans of 4 MiB.
const SPAN: usize = 1024;
const NR: usize = 8;
const PAGES: usize = NR * SPAN;
/// The firmware image (span 0) and a no-map carveout that is never RAM (span 3).
const FIRMWARE: core::ops::Range<Pfn> = BASE..BASE + 128;
const CARVEOUT: core::ops::Range<Pfn> = BASE + 3 * SPAN + 256..BASE + 3 * SPAN + 384;
/// A CMA area over spans 6 and 7.
const CMA: core::ops::Range<Pfn> = BASE + 6 * SPAN..BASE + 8 * SPAN;
const WATERMARK_MIN: usize = 32;

fn geometry() -> Geometry {
    Geometry::new(
        0x4000_0000,
        2,
        16 * MIB,
        8,
        UnitKind::Bank,
        Some(64 * 1024),
        4 * MIB,
    )
    .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kernel,
    Reclaimable,
    Anon,
    CleanCache,
    DirtyCache,
    Pinned,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Alloc {
        id: u64,
        order: usize,
        kind: Kind,
    },
    Free {
        id: u64,
    },
    CmaAlloc {
        id: u64,
        count: usize,
    },
    CmaRelease {
        id: u64,
    },
    /// Page cache written back (clean) or written (dirty).
    Writeback {
        id: u64,
    },
    Write {
        id: u64,
    },
    Suspend,
}

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A trace: a boot phase (kernel, pinned and anonymous memory that mostly stays), then
/// alternating phases of growth (page cache and anonymous memory filling up to over half
/// of RAM, a few kernel and pinned allocations, CMA use) and shrinking (mostly page cache
/// and anonymous frees, the odd kernel free), with suspends every `suspend_every` steps,
/// so sleeps find spans in every state: full, sparse with movable pages, pinned, free.
/// Ids are given in order; frees name ids the generator believes alive.
fn trace(seed: u64, steps: usize, suspend_every: usize) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let mut ops = Vec::new();
    // (id, pages): movable, the rest (kernel, reclaimable, pinned), CMA allocations.
    let mut movable: Vec<(u64, usize)> = Vec::new();
    let mut other: Vec<(u64, usize)> = Vec::new();
    let mut cma: Vec<(u64, usize)> = Vec::new();
    let mut next_id = 1;
    let mut pages = 0usize;
    // Page cache comes in readahead-sized blocks too.
    let order = |rng: &mut Rng| match rng.below(10) {
        0..=4 => 0,
        5 | 6 => 1 + rng.below(2),
        7 | 8 => 3,
        _ => 4,
    };
    for step in 0..steps {
        if step % suspend_every == suspend_every - 1 {
            ops.push(Op::Suspend);
            continue;
        }
        let boot = step < 300;
        // After boot, cycles of 1500 steps: 900 growing, 600 shrinking.
        let growing = boot || (step - 300) % 1500 < 900;
        let roll = rng.below(100);
        let id = next_id;
        let take = |list: &mut Vec<(u64, usize)>, rng: &mut Rng| {
            let i = rng.below(list.len());
            list.swap_remove(i)
        };
        let op = if boot {
            let kind = match roll {
                0..=29 => Kind::Kernel,
                30..=39 => Kind::Reclaimable,
                40..=44 => Kind::Pinned,
                _ => Kind::Anon,
            };
            Some((kind, order(&mut rng)))
        } else if growing && pages < PAGES * 3 / 4 && roll < 88 {
            let kind = match roll {
                0 => Kind::Kernel,
                1 => Kind::Reclaimable,
                2 => Kind::Pinned,
                3..=39 => Kind::Anon,
                40..=74 => Kind::CleanCache,
                _ => Kind::DirtyCache,
            };
            Some((kind, order(&mut rng)))
        } else {
            None
        };
        if let Some((kind, order)) = op {
            next_id += 1;
            ops.push(Op::Alloc { id, order, kind });
            let list = if matches!(kind, Kind::Anon | Kind::CleanCache | Kind::DirtyCache) {
                &mut movable
            } else {
                &mut other
            };
            list.push((id, 1 << order));
            pages += 1 << order;
            continue;
        }
        let roll = rng.below(100);
        if roll < 4 {
            next_id += 1;
            let count = 1 + rng.below(96);
            ops.push(Op::CmaAlloc { id, count });
            cma.push((id, count));
            pages += count;
        } else if roll < 8 && !cma.is_empty() {
            let (id, n) = take(&mut cma, &mut rng);
            ops.push(Op::CmaRelease { id });
            pages -= n;
        } else if roll < 10 && !other.is_empty() {
            let (id, n) = take(&mut other, &mut rng);
            ops.push(Op::Free { id });
            pages -= n;
        } else if roll < 16 && !movable.is_empty() {
            let (id, _) = movable[rng.below(movable.len())];
            ops.push(if roll < 13 {
                Op::Writeback { id }
            } else {
                Op::Write { id }
            });
        } else if !movable.is_empty() {
            let (id, n) = take(&mut movable, &mut rng);
            ops.push(Op::Free { id });
            pages -= n;
        }
    }
    ops
}

/// What one sleep achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sleep {
    /// Span bits masked (every unit of the span, both dies).
    masked: u64,
    /// The independent answer: spans that were entirely free, plus the most spans that
    /// could be emptied, and whether that was all the emptiable ones.
    free: u64,
    could_empty: usize,
    emptiable: u64,
    migrated: usize,
    dropped: usize,
    /// Spans left for want of budget.
    budget_skips: usize,
}

struct World<'a> {
    zone: Zone<'a>,
    rig: Rig,
    area: CmaArea,
    /// CMA allocations: id -> (pfn, count).
    cma: std::collections::BTreeMap<u64, (Pfn, usize)>,
    sleeps: Vec<Sleep>,
    steps: usize,
}

fn world(storage: &mut Storage, mode: PasrMode) -> World<'_> {
    let mut zone = storage.zone();
    zone.free_range(BASE..CARVEOUT.start).unwrap();
    zone.free_range(CARVEOUT.end..BASE + PAGES).unwrap();
    zone.reserve_range(FIRMWARE).unwrap();
    zone.set_watermarks(Watermarks::from_min(WATERMARK_MIN));
    let mut area = cma_init_reserved_mem(CMA.start, CMA.len(), 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut zone).unwrap();
    let g = geometry();
    let mut sections = Sections::from_geometry(&g).unwrap();
    sections.attach(&mut zone, mode).unwrap();
    let rig = Rig::new(g, sections, Tenants::new(BASE, PAGES));
    World {
        zone,
        rig,
        area,
        cma: Default::default(),
        sleeps: Vec::new(),
        steps: 0,
    }
}

impl World<'_> {
    fn apply(&mut self, op: Op, budget: usize) {
        let z = &mut self.zone;
        let t = &mut self.rig.tenants;
        match op {
            Op::Alloc { id, order, kind } => {
                let (gfp, owner) = match kind {
                    Kind::Kernel => (Gfp::KERNEL, OwnerKind::Kernel),
                    Kind::Reclaimable => (Gfp::RECLAIMABLE, OwnerKind::Kernel),
                    Kind::Anon => (Gfp::MOVABLE, OwnerKind::Anon),
                    Kind::CleanCache | Kind::DirtyCache => (Gfp::MOVABLE, OwnerKind::PageCache),
                    Kind::Pinned => (Gfp::MOVABLE.with(GfpFlags::NO_CMA), OwnerKind::Pinned),
                };
                if let Ok(pfn) = z.alloc_pages(order, gfp) {
                    z.set_owner(pfn, crate::mm::Owner::new(owner, id)).unwrap();
                    t.add(id, pfn, 1 << order, owner, kind == Kind::CleanCache);
                }
            }
            Op::Free { id } => {
                // Gone already if the allocation failed or reclaim dropped it.
                if let Some(o) = t.remove(id) {
                    z.free_pages(o.pfn, o.pages.trailing_zeros() as usize)
                        .unwrap();
                }
            }
            Op::CmaAlloc { id, count } => {
                if let Ok(pfn) = cma_alloc(&mut self.area, z, t, count, 0) {
                    t.add(id, pfn, count, OwnerKind::Contig, false);
                    self.cma.insert(id, (pfn, count));
                }
            }
            Op::CmaRelease { id } => {
                if let Some((pfn, count)) = self.cma.remove(&id) {
                    t.remove(id);
                    assert!(cma_release(&mut self.area, z, pfn, count));
                }
            }
            Op::Writeback { id } => {
                if let Some(o) = t.objects.get_mut(&id) {
                    if o.kind == OwnerKind::PageCache {
                        o.clean = true;
                    }
                }
            }
            Op::Write { id } => {
                if t.objects
                    .get(&id)
                    .is_some_and(|o| o.kind == OwnerKind::PageCache)
                {
                    t.rewrite(id);
                }
            }
            Op::Suspend => self.suspend(budget),
        }
        self.rig.after_op(&mut self.zone);
        self.steps += 1;
        if let Err(e) = self.rig.check(&self.zone) {
            panic!("step {} ({op:?}): {e}", self.steps);
        }
        if self.steps.is_multiple_of(100) {
            self.rig.tenants.verify().unwrap();
        }
    }

    fn could_be_emptied(&self) -> (u64, usize, u64) {
        let c = could_be_emptied(
            BASE,
            SPAN,
            NR,
            &[FIRMWARE, CARVEOUT],
            &self.rig.tenants.objects,
            WATERMARK_MIN,
        );
        (c.free, c.best, c.emptiable)
    }

    fn suspend(&mut self, budget: usize) {
        let (free, could_empty, emptiable) = self.could_be_emptied();
        let report = self.rig.suspend(&mut self.zone, budget);
        assert!(report.budget_used <= budget);
        let masked = (0..NR)
            .filter(|&s| {
                self.rig
                    .sections
                    .units_in(1 << s)
                    .all(|u| report.masks.contains(u))
            })
            .fold(0u64, |b, s| b | 1 << s);
        assert_eq!(
            report.masks.count(),
            2 * masked.count_ones() as usize,
            "a span half masked"
        );
        // Self-refresh overwrote the masked units: every live object must be intact.
        if let Err(e) = self.rig.tenants.verify() {
            panic!("after sleep {}: {e}", self.sleeps.len());
        }
        self.sleeps.push(Sleep {
            masked,
            free,
            could_empty,
            emptiable,
            migrated: report.pages_migrated,
            dropped: report.pages_dropped,
            budget_skips: report
                .skipped
                .iter()
                .filter(|s| matches!(s.reason, super::vacate::SkipReason::Budget { .. }))
                .count(),
        });
    }
}

fn run(ops: &[Op], mode: PasrMode, budget: usize) -> (Vec<Sleep>, usize) {
    let mut storage = Storage::new(BASE, PAGES);
    let mut w = world(&mut storage, mode);
    for &op in ops {
        w.apply(op, budget);
    }
    w.rig.tenants.verify().unwrap();
    assert!(w.rig.tenants.errors.is_empty());
    (w.sleeps, w.rig.hw_writes)
}

#[test]
fn suspend_cycles_lose_nothing_and_mask_every_span_that_could_be_emptied() {
    for seed in [1, 0xfeed, 0x5eed_2012] {
        let ops = trace(seed, 4800, 160);
        let (steering, writes) = run(&ops, PasrMode::Steering, usize::MAX);
        let (baseline, _) = run(&ops, PasrMode::Baseline2012, usize::MAX);
        assert_eq!(steering.len(), 30);
        assert!(
            writes > steering.len(),
            "unmasks after wake-up were written too"
        );
        let mut vacated_any = false;
        for (i, s) in steering.iter().enumerate() {
            // 100%: the entirely free spans plus as many as could be emptied.
            assert_eq!(s.masked & s.free, s.free, "seed {seed:#x} sleep {i}: {s:?}");
            assert_eq!(
                (s.masked & !s.free).count_ones() as usize,
                s.could_empty,
                "seed {seed:#x} sleep {i}: {s:?}"
            );
            assert_eq!(s.masked & !s.free & !s.emptiable, 0, "{s:?}");
            if s.could_empty == s.emptiable.count_ones() as usize {
                assert_eq!(s.masked, s.free | s.emptiable, "seed {seed:#x} sleep {i}");
            }
            vacated_any |= s.migrated + s.dropped > 0;
        }
        assert!(vacated_any, "the trace never needed the vacating pass");
        let steering_total: u32 = steering.iter().map(|s| s.masked.count_ones()).sum();
        let baseline_total: u32 = baseline.iter().map(|s| s.masked.count_ones()).sum();
        assert!(
            baseline_total < steering_total,
            "seed {seed:#x}: the 2012 rule masked {baseline_total} span-sleeps, steering {steering_total}"
        );
        for b in &baseline {
            assert_eq!(
                b.masked, b.free,
                "the baseline masks exactly the free spans"
            );
            assert_eq!((b.migrated, b.dropped), (0, 0));
        }
    }
}

#[test]
fn a_small_budget_is_respected_and_loses_nothing() {
    // The spans to empty in these traces cost about 30 to 700 pages: a budget of 300
    // covers some sleeps and not others.
    for seed in [1, 0xfeed] {
        let ops = trace(seed, 4800, 160);
        let (sleeps, _) = run(&ops, PasrMode::Steering, 300);
        assert!(sleeps.iter().all(|s| s.migrated + s.dropped <= 300));
        assert!(
            sleeps.iter().any(|s| s.migrated + s.dropped > 0),
            "seed {seed:#x}"
        );
        assert!(sleeps.iter().any(|s| s.budget_skips > 0), "seed {seed:#x}");
        // Only the budget keeps a sleep short of what could be emptied.
        for s in &sleeps {
            let emptied = (s.masked & !s.free).count_ones() as usize;
            assert!(emptied <= s.could_empty, "{s:?}");
            assert!(emptied == s.could_empty || s.budget_skips > 0, "{s:?}");
        }
    }
}
