//! Property tests: long random sequences of alloc/free/cma_alloc/cma_release/
//! alloc_contig_range against a two-bank zone with two CMA areas, checking every invariant
//! after every step.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::testutil::{FakeOwners, Storage};
use super::*;

const BASE: Pfn = 0x80000;
const SPAN: usize = 6144;
const BANK0: core::ops::Range<Pfn> = BASE..BASE + 2560;
const BANK1: core::ops::Range<Pfn> = BASE + 3072..BASE + SPAN;
const RESERVED: core::ops::Range<Pfn> = BASE + 5..BASE + 9;

#[derive(Clone, Debug)]
enum Op {
    AllocKernel {
        order: usize,
        reclaimable: bool,
    },
    AllocMovable {
        order: usize,
        page_cache: bool,
        clean: bool,
    },
    AllocPinned {
        order: usize,
        no_cma: bool,
    },
    Free {
        pick: usize,
    },
    CmaAlloc {
        area: usize,
        count: usize,
        align: usize,
    },
    CmaRelease {
        pick: usize,
    },
    Contig {
        offset: usize,
        len: usize,
    },
    ContigRelease {
        pick: usize,
    },
    Transient {
        again: usize,
    },
    Stubborn {
        pick: usize,
    },
    Balance {
        numerator: u32,
    },
    Watermark {
        min: usize,
    },
    /// Turn the pcp on with this `high` (and a quarter of it as `batch`), or off with 0.
    Pcp {
        high: usize,
    },
}

fn order() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0usize..2, 3 => 2usize..5, 1 => 5usize..=MAX_ORDER]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (order(), any::<bool>()).prop_map(|(order, reclaimable)| Op::AllocKernel { order, reclaimable }),
        10 => (order(), any::<bool>(), any::<bool>())
            .prop_map(|(order, page_cache, clean)| Op::AllocMovable { order, page_cache, clean }),
        2 => (order(), any::<bool>()).prop_map(|(order, no_cma)| Op::AllocPinned { order, no_cma }),
        10 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        3 => (0usize..2, 1usize..400, 0usize..8).prop_map(|(area, count, align)| Op::CmaAlloc { area, count, align }),
        2 => any::<usize>().prop_map(|pick| Op::CmaRelease { pick }),
        2 => (0usize..SPAN, 1usize..700).prop_map(|(offset, len)| Op::Contig { offset, len }),
        1 => any::<usize>().prop_map(|pick| Op::ContigRelease { pick }),
        1 => (0usize..8).prop_map(|again| Op::Transient { again }),
        1 => any::<usize>().prop_map(|pick| Op::Stubborn { pick }),
        1 => (0u32..=8).prop_map(|numerator| Op::Balance { numerator }),
        1 => (0usize..64).prop_map(|min| Op::Watermark { min }),
        2 => prop_oneof![1 => Just(0usize), 3 => 1usize..200].prop_map(|high| Op::Pcp { high }),
    ]
}

/// Everything the test believes is allocated.
#[derive(Default)]
struct Model {
    /// id -> (pfn, order) of unmovable/pinned blocks.
    fixed: BTreeMap<u64, (Pfn, usize, Owner)>,
    /// (area, pfn, count) from cma_alloc.
    cma: Vec<(usize, Pfn, usize)>,
    /// (pfn, count) from alloc_contig_range.
    contig: Vec<(Pfn, usize)>,
    next_id: u64,
}

fn check(
    zone: &Zone<'_>,
    owners: &FakeOwners,
    model: &Model,
    areas: &[CmaArea],
) -> Result<(), String> {
    zone.check_invariants()?;
    owners.verify()?;
    let mut owned: BTreeMap<Pfn, &'static str> = BTreeMap::new();
    let mut claim = |pfn: Pfn, what: &'static str| -> Result<(), String> {
        match owned.insert(pfn, what) {
            Some(prev) => Err(format!("frame {pfn:#x} owned twice ({prev} and {what})")),
            None => Ok(()),
        }
    };
    for (&id, &(pfn, order, owner)) in &model.fixed {
        if zone.owner(pfn) != Some(owner) || zone.allocated_block(pfn) != Some((pfn, order)) {
            return Err(format!(
                "fixed block {id} at {pfn:#x} not recorded by the zone"
            ));
        }
        (pfn..pfn + (1 << order)).try_for_each(|p| claim(p, "fixed"))?;
    }
    for (&id, &(pfn, order, _)) in &owners.objects {
        if zone.owner(pfn).map(|o| o.id()) != Some(id)
            || zone.allocated_block(pfn) != Some((pfn, order))
        {
            return Err(format!("object {id} at {pfn:#x} not recorded by the zone"));
        }
        (pfn..pfn + (1 << order)).try_for_each(|p| claim(p, "movable"))?;
    }
    for &(area, pfn, count) in &model.cma {
        let call = zone.owner(pfn).filter(|o| o.kind() == OwnerKind::Contig);
        if call.is_none()
            || !(pfn..pfn + count).all(|p| areas[area].contains(p) && zone.owner(p) == call)
        {
            return Err(format!("cma allocation {pfn:#x}+{count} not held"));
        }
        (pfn..pfn + count).try_for_each(|p| claim(p, "cma"))?;
    }
    for &(pfn, count) in &model.contig {
        let call = zone.owner(pfn).filter(|o| o.kind() == OwnerKind::Contig);
        if call.is_none() || !(pfn..pfn + count).all(|p| zone.owner(p) == call) {
            return Err(format!("contig range {pfn:#x}+{count} not held"));
        }
        (pfn..pfn + count).try_for_each(|p| claim(p, "contig"))?;
    }
    let c = zone.counters();
    if owned.len() + c.free_pages != c.managed_pages {
        return Err(format!(
            "{} owned + {} free != {} managed: a frame leaked",
            owned.len(),
            c.free_pages,
            c.managed_pages
        ));
    }
    if zone.pageblock_counts()[MigrateType::Isolate.index()] != 0 {
        return Err("isolated pageblock left behind".into());
    }
    let used: usize = areas.iter().map(|a| a.used_pages()).sum();
    let cma_held: usize = model
        .cma
        .iter()
        .map(|&(a, _, n)| n.div_ceil(1 << areas[a].order_per_bit()) << areas[a].order_per_bit())
        .sum();
    if used != cma_held {
        return Err(format!(
            "CMA bitmaps say {used} pages used, model holds {cma_held}"
        ));
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut storage = Storage::new(BASE, SPAN);
    let mut zone = storage.zone();
    zone.free_range(BANK0).unwrap();
    zone.free_range(BANK1).unwrap();
    zone.reserve_range(RESERVED).unwrap();
    let mut areas = vec![
        cma_init_reserved_mem(BASE + 4096, 1024, 0, "cma0").unwrap(),
        cma_init_reserved_mem(BASE + 5632, 512, 2, "cma1").unwrap(),
    ];
    for a in &mut areas {
        cma_activate_area(a, &mut zone).unwrap();
    }
    let mut owners = FakeOwners::default();
    let mut model = Model::default();
    check(&zone, &owners, &model, &areas).map_err(TestCaseError::fail)?;
    for (step, op) in ops.into_iter().enumerate() {
        model.next_id += 1;
        let id = model.next_id;
        match op {
            Op::AllocKernel { order, reclaimable } => {
                let gfp = if reclaimable {
                    Gfp::RECLAIMABLE
                } else {
                    Gfp::KERNEL
                };
                if let Ok(pfn) = zone.alloc_pages(order, gfp) {
                    prop_assert!(areas.iter().all(|a| !a.contains(pfn)), "kernel page in CMA");
                    let owner = Owner::new(OwnerKind::Kernel, id);
                    zone.set_owner(pfn, owner).unwrap();
                    model.fixed.insert(id, (pfn, order, owner));
                }
            }
            Op::AllocMovable {
                order,
                page_cache,
                clean,
            } => {
                if let Ok(pfn) = zone.alloc_pages(order, Gfp::MOVABLE) {
                    let kind = if page_cache {
                        OwnerKind::PageCache
                    } else {
                        OwnerKind::Anon
                    };
                    zone.set_owner(pfn, Owner::new(kind, id)).unwrap();
                    owners.populate(id, pfn, order, id.wrapping_mul(0x9e37_79b9));
                    if page_cache && clean {
                        owners.clean.insert(id);
                    }
                }
            }
            Op::AllocPinned { order, no_cma } => {
                let gfp = if no_cma {
                    Gfp::MOVABLE.with(GfpFlags::NO_CMA)
                } else {
                    Gfp::MOVABLE
                };
                if let Ok(pfn) = zone.alloc_pages(order, gfp) {
                    let owner = Owner::new(OwnerKind::Pinned, id);
                    let in_cma = areas.iter().any(|a| a.contains(pfn));
                    prop_assert!(!(no_cma && in_cma), "NO_CMA allocation landed in CMA");
                    match zone.set_owner(pfn, owner) {
                        Ok(()) => {
                            prop_assert!(!in_cma);
                            model.fixed.insert(id, (pfn, order, owner));
                        }
                        Err(MmError::PinInCma { .. }) => {
                            prop_assert!(in_cma);
                            zone.free_pages(pfn, order).unwrap();
                        }
                        Err(e) => prop_assert!(false, "set_owner: {e}"),
                    }
                }
            }
            Op::Free { pick } => {
                let total = model.fixed.len() + owners.objects.len();
                if total > 0 {
                    let i = pick % total;
                    if i < model.fixed.len() {
                        let key = *model.fixed.keys().nth(i).unwrap();
                        let (pfn, order, _) = model.fixed.remove(&key).unwrap();
                        zone.free_pages(pfn, order).unwrap();
                        prop_assert!(zone.free_pages(pfn, order).is_err(), "double free accepted");
                    } else {
                        let key = *owners.objects.keys().nth(i - model.fixed.len()).unwrap();
                        let (pfn, order, _) = owners.forget(key).unwrap();
                        zone.free_pages(pfn, order).unwrap();
                    }
                }
            }
            Op::CmaAlloc { area, count, align } => {
                match cma_alloc(&mut areas[area], &mut zone, &mut owners, count, align) {
                    Ok(pfn) => {
                        prop_assert_eq!(pfn % (1 << align), 0);
                        model.cma.push((area, pfn, count));
                    }
                    Err(CmaError::NoSpace | CmaError::Busy | CmaError::NoMemory) => {}
                    Err(e) => prop_assert!(false, "cma_alloc: {e}"),
                }
            }
            Op::CmaRelease { pick } => {
                if !model.cma.is_empty() {
                    let (area, pfn, count) = model.cma.swap_remove(pick % model.cma.len());
                    let other = (area + 1) % areas.len();
                    prop_assert!(
                        !cma_release(&mut areas[other], &mut zone, pfn, count),
                        "released via wrong area"
                    );
                    prop_assert!(cma_release(&mut areas[area], &mut zone, pfn, count));
                    prop_assert!(
                        !cma_release(&mut areas[area], &mut zone, pfn, count),
                        "double release accepted"
                    );
                }
            }
            Op::Contig { offset, len } => {
                let start = BASE + offset;
                let end = (start + len).min(BASE + SPAN);
                // Failures (pinned frames, holes, CMA blocks in the range) must leave the
                // zone consistent, which the check after every step verifies.
                if alloc_contig_range(&mut zone, &mut owners, start, end, MigrateType::Movable)
                    .is_ok()
                {
                    model.contig.push((start, end - start));
                }
            }
            Op::ContigRelease { pick } => {
                if !model.contig.is_empty() {
                    let (pfn, count) = model.contig.swap_remove(pick % model.contig.len());
                    free_contig_range(&mut zone, pfn, count).unwrap();
                }
            }
            Op::Transient { again } => owners.again = again,
            Op::Stubborn { pick } => {
                if !owners.objects.is_empty() {
                    let key = *owners
                        .objects
                        .keys()
                        .nth(pick % owners.objects.len())
                        .unwrap();
                    if !owners.busy.remove(&key) {
                        owners.busy.insert(key);
                    }
                }
            }
            Op::Balance { numerator } => {
                zone.set_cma_balance(CmaBalance::new(numerator, 8).unwrap())
            }
            Op::Watermark { min } => zone.set_watermarks(Watermarks::from_min(min)),
            Op::Pcp { high: 0 } => {
                zone.disable_pcp();
                prop_assert_eq!(zone.pcp_pages(), 0);
            }
            Op::Pcp { high } => zone.enable_pcp(PcpLimits {
                batch: high / 4 + 1,
                high,
            }),
        }
        if let Err(e) = check(&zone, &owners, &model, &areas) {
            return Err(TestCaseError::fail(format!("after step {step}: {e}")));
        }
    }
    // Give everything back: the zone must return to fully merged free memory.
    for (_, (pfn, order, _)) in core::mem::take(&mut model.fixed) {
        zone.free_pages(pfn, order).unwrap();
    }
    for key in owners.objects.keys().copied().collect::<Vec<_>>() {
        let (pfn, order, _) = owners.forget(key).unwrap();
        zone.free_pages(pfn, order).unwrap();
    }
    for (area, pfn, count) in core::mem::take(&mut model.cma) {
        prop_assert!(cma_release(&mut areas[area], &mut zone, pfn, count));
    }
    for (pfn, count) in core::mem::take(&mut model.contig) {
        free_contig_range(&mut zone, pfn, count).unwrap();
    }
    check(&zone, &owners, &model, &areas).map_err(TestCaseError::fail)?;
    let c = zone.counters();
    prop_assert_eq!(c.free_pages, c.managed_pages);
    // With the pcp's frames back too, every free frame is in the buddy.
    zone.disable_pcp();
    check(&zone, &owners, &model, &areas).map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        zone.free_pages_outside_cma() + zone.counters().free_cma_pages,
        c.managed_pages
    );
    prop_assert_eq!(c.free_cma_pages, 1024 + 512);
    prop_assert_eq!(zone.pageblock_counts()[MigrateType::Cma.index()], 3);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_every_invariant(ops in proptest::collection::vec(op(), 1..250)) {
        run(ops)?;
    }
}
