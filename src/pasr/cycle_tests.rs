//! The 1000-suspend-cycle test: one seeded trace of exactly 1000 suspend cycles over 1 GiB
//! of fake DRAM (2 dies x 8 banks, plain and interleaved), every cycle with anonymous
//! memory, clean and dirty page cache, and CMA allocations and releases between sleeps,
//! run under steering with vacating and, on the same trace in the same test, under the
//! 2012 rule (mask only what happens to be free).
//!
//! Checked: after every step every zone and PASR invariant and no live object in a masked
//! unit; after every wake every live object's checksum (0 bytes lost); every allocation
//! handed out is counted, and those lying in a unit the registers still mask are counted
//! (must be 0); at every sleep the spans masked under steering are exactly the spans the
//! test's own model says could be emptied ([`could_be_emptied`], shared with the seeded
//! long test). One line per geometry compares the two policies.

use std::collections::BTreeMap;
use std::vec::Vec;

use super::geometry::{Geometry, UnitKind};
use super::sections::Sections;
use super::testrig::{could_be_emptied, CouldEmpty, Rig, Tenants};
use crate::mm::testutil::Storage;
use crate::mm::{
    cma_activate_area, cma_alloc, cma_init_reserved_mem, cma_release, CmaArea, Gfp, GfpFlags,
    Owner, OwnerKind, PasrMode, Pfn, Watermarks, Zone, PAGE_SHIFT,
};
use crate::util::size::MIB;

const BASE: Pfn = 0x40000;
/// 1 GiB.
const PAGES: usize = 1 << 18;
/// The firmware image (span 0) and a no-map carveout that is never RAM (in the span at
/// 3/16 of RAM: span 3 plain, span 1 interleaved).
const FIRMWARE: core::ops::Range<Pfn> = BASE..BASE + 512;
const CARVEOUT: core::ops::Range<Pfn> = BASE + 3 * PAGES / 16 + 1024..BASE + 3 * PAGES / 16 + 1280;
/// A CMA area over the last eighth of RAM (spans 14 and 15 plain, 7 interleaved).
const CMA: core::ops::Range<Pfn> = BASE + PAGES * 7 / 8..BASE + PAGES;
const WATERMARK_MIN: usize = 256;
const CYCLES: usize = 1000;
/// Operations between two suspends.
const OPS_PER_CYCLE: usize = 6;
/// Phases, in cycles: growing for 30, then shrinking for 20.
const PHASE_CYCLES: usize = 50;
const GROWING_CYCLES: usize = 30;
/// Growth stops at this share of RAM (in sixteenths).
const FILL_SIXTEENTHS: usize = 9;

/// 2 dies x 512 MiB, 8 banks each: plain (16 spans of 64 MiB) or interleaved every 64 KiB
/// (8 spans of 128 MiB, each bank sharing its span with the other die's bank).
fn geometry(interleaved: bool) -> Geometry {
    Geometry::new(
        0x4000_0000,
        2,
        512 * MIB,
        8,
        UnitKind::Bank,
        interleaved.then_some(64 * 1024),
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
    /// `blocks` allocations of `order` (ids `id..id + blocks`): a process faulting in a
    /// mapping, a readahead window, a driver's buffers.
    Alloc {
        id: u64,
        order: usize,
        blocks: u64,
        kind: Kind,
    },
    /// Free what one `Alloc` got (the blocks that are still live).
    Free {
        id: u64,
        blocks: u64,
    },
    CmaAlloc {
        id: u64,
        count: usize,
    },
    CmaRelease {
        id: u64,
    },
    /// The page cache of one `Alloc` written back (clean) or written (dirty).
    Writeback {
        id: u64,
        blocks: u64,
    },
    Write {
        id: u64,
        blocks: u64,
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

/// Small blocks, as in the seeded long test: the vacating pass plans by page counts, and
/// large movable blocks (orders 8 to 10 tried) need free targets of their order in the
/// spans kept refreshed, which page counts do not promise: such a pass fails with
/// `NoMemory` (safely, nothing lost) and masks less than the model says it could.
fn order(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0..=4 => 0,
        5 | 6 => 1 + rng.below(2),
        7 | 8 => 3,
        _ => 4,
    }
}

/// Blocks per allocating operation: RAM is 1 GiB and a cycle is a few operations. The
/// allocations every cycle makes whatever the phase (`small`) stay small, so shrinking
/// phases do shrink.
fn blocks(rng: &mut Rng, boot: bool, small: bool) -> u64 {
    1 + rng.below(match (boot, small) {
        (_, true) => 16,
        (true, false) => 64,
        (false, false) => 256,
    }) as u64
}

/// The trace: `CYCLES` cycles of `OPS_PER_CYCLE` operations and a suspend. Every cycle
/// opens with an anonymous allocation, a clean page-cache allocation, a CMA allocation
/// and (when one is live) a CMA release; the rest grows (allocations up to
/// `FILL_SIXTEENTHS` of RAM) or shrinks (mostly movable frees) by phase, with page cache
/// written and written back. The first two cycles boot: kernel, reclaimable and pinned
/// memory that mostly stays. Ids are given in order; frees name ids the generator believes
/// alive.
fn trace(seed: u64) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let mut ops = Vec::new();
    // (first id, blocks, pages): movable, the rest (kernel, reclaimable, pinned), CMA
    // allocations (one block each).
    let mut movable: Vec<(u64, u64, usize)> = Vec::new();
    let mut other: Vec<(u64, u64, usize)> = Vec::new();
    let mut cma: Vec<(u64, u64, usize)> = Vec::new();
    let mut next_id = 1u64;
    let mut pages = 0usize;
    let take = |list: &mut Vec<(u64, u64, usize)>, rng: &mut Rng| {
        let i = rng.below(list.len());
        list.swap_remove(i)
    };
    for cycle in 0..CYCLES {
        let boot = cycle < 2;
        let growing = boot || cycle % PHASE_CYCLES < GROWING_CYCLES;
        for slot in 0..OPS_PER_CYCLE {
            let id = next_id;
            let roll = rng.below(100);
            let alloc = match slot {
                0 => Some(Kind::Anon),
                1 => Some(Kind::CleanCache),
                2 | 3 => None,
                _ if boot => Some(match roll {
                    0..=39 => Kind::Kernel,
                    40..=59 => Kind::Reclaimable,
                    60..=69 => Kind::Pinned,
                    _ => Kind::Anon,
                }),
                _ if growing && pages < PAGES * FILL_SIXTEENTHS / 16 && roll < 85 => {
                    Some(match roll {
                        0 => Kind::Kernel,
                        1 => Kind::Pinned,
                        2..=39 => Kind::Anon,
                        40..=69 => Kind::CleanCache,
                        _ => Kind::DirtyCache,
                    })
                }
                _ => None,
            };
            if let Some(kind) = alloc {
                let order = order(&mut rng);
                let blocks = blocks(&mut rng, boot, slot < 2);
                next_id += blocks;
                ops.push(Op::Alloc {
                    id,
                    order,
                    blocks,
                    kind,
                });
                let n = (blocks as usize) << order;
                if matches!(kind, Kind::Anon | Kind::CleanCache | Kind::DirtyCache) {
                    movable.push((id, blocks, n));
                } else {
                    other.push((id, blocks, n));
                }
                pages += n;
            } else if slot == 2 {
                next_id += 1;
                let count = 1 + rng.below(2048);
                ops.push(Op::CmaAlloc { id, count });
                cma.push((id, 1, count));
                pages += count;
            } else if slot == 3 {
                if !cma.is_empty() {
                    let (id, _, n) = take(&mut cma, &mut rng);
                    ops.push(Op::CmaRelease { id });
                    pages -= n;
                }
            } else if roll < 3 && !other.is_empty() {
                let (id, blocks, n) = take(&mut other, &mut rng);
                ops.push(Op::Free { id, blocks });
                pages -= n;
            } else if roll < 15 && !movable.is_empty() {
                let (id, blocks, _) = movable[rng.below(movable.len())];
                ops.push(if roll < 10 {
                    Op::Writeback { id, blocks }
                } else {
                    Op::Write { id, blocks }
                });
            } else if !movable.is_empty() {
                let (id, blocks, n) = take(&mut movable, &mut rng);
                ops.push(Op::Free { id, blocks });
                pages -= n;
            }
        }
        ops.push(Op::Suspend);
    }
    ops
}

/// What one sleep achieved, and what the model said it could.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sleep {
    /// Span bits masked (every unit of the span).
    masked: u64,
    could: CouldEmpty,
    migrated: usize,
    dropped: usize,
}

/// One policy's run.
struct Run {
    sleeps: Vec<Sleep>,
    units_per_span: usize,
    handed_out: usize,
    handed_out_masked: usize,
    failed_allocs: usize,
    lost_bytes: usize,
    /// Cycles with an anonymous, a clean page-cache and a CMA allocation, and a CMA
    /// release.
    cycles_with: [usize; 4],
}

impl Run {
    fn unit_sleeps_masked(&self) -> usize {
        self.sleeps
            .iter()
            .map(|s| s.masked.count_ones() as usize)
            .sum::<usize>()
            * self.units_per_span
    }

    fn unit_sleeps_could(&self) -> usize {
        self.sleeps
            .iter()
            .map(|s| s.could.free.count_ones() as usize + s.could.best)
            .sum::<usize>()
            * self.units_per_span
    }

    fn migrated(&self) -> usize {
        self.sleeps.iter().map(|s| s.migrated).sum()
    }

    fn dropped(&self) -> usize {
        self.sleeps.iter().map(|s| s.dropped).sum()
    }
}

struct World<'a> {
    zone: Zone<'a>,
    rig: Rig,
    area: CmaArea,
    span_pages: usize,
    nr_spans: usize,
    /// CMA allocations: id -> (pfn, count).
    cma: BTreeMap<u64, (Pfn, usize)>,
    sleeps: Vec<Sleep>,
    steps: usize,
    failed_allocs: usize,
    lost_bytes: usize,
    /// Since the last sleep: an anonymous, a clean page-cache and a CMA allocation
    /// succeeded, and a CMA release happened.
    this_cycle: [bool; 4],
    cycles_with: [usize; 4],
}

fn world(storage: &mut Storage, g: Geometry, mode: PasrMode) -> World<'_> {
    let mut zone = storage.zone();
    zone.free_range(BASE..CARVEOUT.start).unwrap();
    zone.free_range(CARVEOUT.end..BASE + PAGES).unwrap();
    zone.reserve_range(FIRMWARE).unwrap();
    zone.set_watermarks(Watermarks::from_min(WATERMARK_MIN));
    let mut area = cma_init_reserved_mem(CMA.start, CMA.len(), 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut zone).unwrap();
    let span_pages = (g.span_bytes() >> PAGE_SHIFT) as usize;
    let nr_spans = g.nr_spans();
    let mut sections = Sections::from_geometry(&g).unwrap();
    sections.attach(&mut zone, mode).unwrap();
    let rig = Rig::new(g, sections, Tenants::new(BASE, PAGES));
    World {
        zone,
        rig,
        area,
        span_pages,
        nr_spans,
        cma: BTreeMap::new(),
        sleeps: Vec::new(),
        steps: 0,
        failed_allocs: 0,
        lost_bytes: 0,
        this_cycle: [false; 4],
        cycles_with: [0; 4],
    }
}

impl World<'_> {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Alloc {
                id,
                order,
                blocks,
                kind,
            } => {
                let (gfp, owner) = match kind {
                    Kind::Kernel => (Gfp::KERNEL, OwnerKind::Kernel),
                    Kind::Reclaimable => (Gfp::RECLAIMABLE, OwnerKind::Kernel),
                    Kind::Anon => (Gfp::MOVABLE, OwnerKind::Anon),
                    Kind::CleanCache | Kind::DirtyCache => (Gfp::MOVABLE, OwnerKind::PageCache),
                    Kind::Pinned => (Gfp::MOVABLE.with(GfpFlags::NO_CMA), OwnerKind::Pinned),
                };
                for id in id..id + blocks {
                    match self.zone.alloc_pages(order, gfp) {
                        Ok(pfn) => {
                            self.rig.handed_out(&mut self.zone, pfn, 1 << order);
                            self.zone.set_owner(pfn, Owner::new(owner, id)).unwrap();
                            let clean = kind == Kind::CleanCache;
                            self.rig.tenants.add(id, pfn, 1 << order, owner, clean);
                            self.this_cycle[0] |= kind == Kind::Anon;
                            self.this_cycle[1] |= clean;
                        }
                        Err(_) => self.failed_allocs += 1,
                    }
                }
            }
            Op::Free { id, blocks } => {
                // Gone already if the allocation failed or reclaim dropped it.
                for id in id..id + blocks {
                    if let Some(o) = self.rig.tenants.remove(id) {
                        self.zone
                            .free_pages(o.pfn, o.pages.trailing_zeros() as usize)
                            .unwrap();
                    }
                }
            }
            Op::CmaAlloc { id, count } => {
                let t = &mut self.rig.tenants;
                match cma_alloc(&mut self.area, &mut self.zone, t, count, 0) {
                    Ok(pfn) => {
                        self.rig.handed_out(&mut self.zone, pfn, count);
                        self.rig
                            .tenants
                            .add(id, pfn, count, OwnerKind::Contig, false);
                        self.cma.insert(id, (pfn, count));
                        self.this_cycle[2] = true;
                    }
                    Err(_) => self.failed_allocs += 1,
                }
            }
            Op::CmaRelease { id } => {
                if let Some((pfn, count)) = self.cma.remove(&id) {
                    self.rig.tenants.remove(id);
                    assert!(cma_release(&mut self.area, &mut self.zone, pfn, count));
                    self.this_cycle[3] = true;
                }
            }
            Op::Writeback { id, blocks } => {
                for id in id..id + blocks {
                    if let Some(o) = self.rig.tenants.objects.get_mut(&id) {
                        if o.kind == OwnerKind::PageCache {
                            o.clean = true;
                        }
                    }
                }
            }
            Op::Write { id, blocks } => {
                let t = &mut self.rig.tenants;
                for id in id..id + blocks {
                    if t.objects
                        .get(&id)
                        .is_some_and(|o| o.kind == OwnerKind::PageCache)
                    {
                        t.rewrite(id);
                    }
                }
            }
            Op::Suspend => self.suspend(),
        }
        self.rig.after_op(&mut self.zone);
        self.steps += 1;
        if let Err(e) = self.rig.check(&self.zone) {
            panic!("step {} ({op:?}): {e}", self.steps);
        }
    }

    fn suspend(&mut self) {
        let could = could_be_emptied(
            BASE,
            self.span_pages,
            self.nr_spans,
            &[FIRMWARE, CARVEOUT],
            &self.rig.tenants.objects,
            WATERMARK_MIN,
        );
        let report = self.rig.suspend(&mut self.zone, usize::MAX);
        let masked = (0..self.nr_spans)
            .filter(|&s| {
                self.rig
                    .sections
                    .units_in(1 << s)
                    .all(|u| report.masks.contains(u))
            })
            .fold(0u64, |b, s| b | 1 << s);
        let units_per_span = 16 / self.nr_spans;
        assert_eq!(
            report.masks.count(),
            units_per_span * masked.count_ones() as usize,
            "a span half masked"
        );
        // Self-refresh overwrote the masked units: every live object must be intact.
        let lost = self.rig.tenants.lost_pages() << PAGE_SHIFT;
        self.lost_bytes += lost;
        if lost != 0 {
            panic!(
                "after sleep {}: {lost} bytes lost ({:?})",
                self.sleeps.len(),
                self.rig.tenants.verify()
            );
        }
        for (n, seen) in self.cycles_with.iter_mut().zip(self.this_cycle) {
            *n += usize::from(seen);
        }
        self.this_cycle = [false; 4];
        self.sleeps.push(Sleep {
            masked,
            could,
            migrated: report.pages_migrated,
            dropped: report.pages_dropped,
        });
    }
}

fn run(ops: &[Op], interleaved: bool, mode: PasrMode) -> Run {
    let mut storage = Storage::new(BASE, PAGES);
    let g = geometry(interleaved);
    let units_per_span = (2 * 8) / g.nr_spans();
    let mut w = world(&mut storage, g, mode);
    for &op in ops {
        w.apply(op);
    }
    w.rig.tenants.verify().unwrap();
    assert!(w.rig.tenants.errors.is_empty());
    Run {
        sleeps: w.sleeps,
        units_per_span,
        handed_out: w.rig.handed_out,
        handed_out_masked: w.rig.handed_out_masked,
        failed_allocs: w.failed_allocs,
        lost_bytes: w.lost_bytes,
        cycles_with: w.cycles_with,
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[test]
fn a_thousand_suspend_cycles_lose_nothing_and_mask_all_that_could_be_emptied() {
    let ops = trace(0x1000_c1c1e5);
    assert_eq!(
        ops.iter().filter(|o| matches!(o, Op::Suspend)).count(),
        CYCLES
    );
    for interleaved in [false, true] {
        let layout = if interleaved {
            "interleaved 64 KiB, 8 spans"
        } else {
            "plain, 16 spans"
        };
        let steering = run(&ops, interleaved, PasrMode::Steering);
        let baseline = run(&ops, interleaved, PasrMode::Baseline2012);
        for r in [&steering, &baseline] {
            assert_eq!(r.sleeps.len(), CYCLES);
            assert_eq!(r.lost_bytes, 0);
            assert_eq!(
                r.handed_out_masked, 0,
                "{layout}: allocations in masked memory"
            );
            assert!(
                r.handed_out > CYCLES * 3,
                "{layout}: {} handed out",
                r.handed_out
            );
            // The mix: every cycle allocated anonymous memory, clean page cache and CMA,
            // and released CMA.
            assert_eq!(
                r.cycles_with, [CYCLES; 4],
                "{layout}: {} allocations failed",
                r.failed_allocs
            );
            assert!(
                r.failed_allocs * 100 < r.handed_out,
                "{layout}: {} of {} allocations failed",
                r.failed_allocs,
                r.handed_out
            );
        }
        let mut vacated = 0;
        for (i, s) in steering.sleeps.iter().enumerate() {
            let c = s.could;
            // 100%: the entirely free spans plus as many as could be emptied.
            assert_eq!(s.masked & c.free, c.free, "{layout} sleep {i}: {s:?}");
            assert_eq!(
                (s.masked & !c.free).count_ones() as usize,
                c.best,
                "{layout} sleep {i}: {s:?}"
            );
            assert_eq!(
                s.masked & !c.free & !c.emptiable,
                0,
                "{layout} sleep {i}: {s:?}"
            );
            if c.best == c.emptiable.count_ones() as usize {
                assert_eq!(s.masked, c.free | c.emptiable, "{layout} sleep {i}: {s:?}");
            }
            vacated += usize::from(s.migrated + s.dropped > 0);
        }
        assert!(
            vacated > 0,
            "{layout}: only {vacated} sleeps needed the vacating pass"
        );
        for (i, b) in baseline.sleeps.iter().enumerate() {
            assert_eq!(b.masked, b.could.free, "{layout} 2012 sleep {i}: {b:?}");
            assert_eq!((b.migrated, b.dropped), (0, 0));
        }
        let possible = CYCLES * 16;
        let (sm, sc) = (steering.unit_sleeps_masked(), steering.unit_sleeps_could());
        let (bm, bc) = (baseline.unit_sleeps_masked(), baseline.unit_sleeps_could());
        assert_eq!(sm, sc);
        assert!(
            bm <= sm,
            "{layout}: the 2012 rule masked {bm}, steering {sm}"
        );
        std::println!(
            "pasr {CYCLES} cycles, 1 GiB 2 dies x 8 banks {layout}: \
             steering+vacating masked {sm}/{possible} bank-sleeps, {:.1}% of the {sc} that could be emptied, \
             {} pages migrated, {} dropped (vacating at {vacated} sleeps) | \
             2012 rule masked {bm}/{possible}, {:.1}% of its own {bc} that could be emptied ({:.1}% of steering's {sc}), \
             {} migrated, {} dropped | 0 bytes lost, {} + {} allocations, 0 in masked memory",
            percent(sm, sc),
            steering.migrated(),
            steering.dropped(),
            percent(bm, bc),
            percent(bm, sc),
            baseline.migrated(),
            baseline.dropped(),
            steering.handed_out,
            baseline.handed_out,
        );
    }
}
