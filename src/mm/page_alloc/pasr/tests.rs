//! Unit tests of the PASR tracker: counting at max order on every path in and out of the
//! free lists, isolation, guards and touches, and steering (busy spans first, lowest first,
//! entirely free spans last, outside the window first), against a baseline zone.

use super::super::super::testutil::{frames, Storage};
use super::super::super::{alloc_contig_range, cma_activate_area, cma_init_reserved_mem};
use super::*;
use crate::mm::{Gfp, MigrateType, NoMigrator, Owner, OwnerKind, PAGEBLOCK_NR_PAGES};
use std::vec::Vec;

const BASE: Pfn = 0x40000;
/// Two MAX_ORDER blocks per span.
const SPAN: usize = 2 * BLOCK_PAGES;

fn spans(n: usize) -> PasrSpans {
    PasrSpans::new(BASE, SPAN, n).unwrap()
}

fn ok(z: &Zone<'_>) {
    if let Err(e) = z.check_invariants() {
        panic!("invariant broken: {e}");
    }
    if let Err(e) = z.check_pasr_invariants() {
        panic!("PASR invariant broken: {e}");
    }
}

/// A zone of `n` spans, all RAM, all free, PASR on in `mode`.
fn zone_of(s: &mut Storage, n: usize, mode: PasrMode) -> Zone<'_> {
    let mut z = s.zone();
    z.free_range(BASE..BASE + n * SPAN).unwrap();
    z.enable_pasr(spans(n), mode).unwrap();
    ok(&z);
    z
}

fn span_of(pfn: Pfn) -> usize {
    (pfn - BASE) / SPAN
}

fn alloc(z: &mut Zone<'_>, order: usize, gfp: Gfp) -> Pfn {
    let pfn = z.alloc_pages(order, gfp).unwrap();
    ok(z);
    pfn
}

#[test]
fn span_descriptions_are_validated() {
    assert_eq!(PasrSpans::new(BASE, SPAN, 0), Err(PasrSetupError::NoSpans));
    assert_eq!(
        PasrSpans::new(BASE, SPAN, 64),
        Err(PasrSetupError::TooManySpans { spans: 64 })
    );
    assert_eq!(
        PasrSpans::new(BASE, SPAN + 512, 2),
        Err(PasrSetupError::SpanSize {
            span_pages: SPAN + 512
        })
    );
    assert_eq!(
        PasrSpans::new(BASE + 512, SPAN, 2),
        Err(PasrSetupError::BaseAlignment {
            base_pfn: BASE + 512
        })
    );
    assert_eq!(
        PasrSpans::new(usize::MAX - BLOCK_PAGES + 1, SPAN, 2),
        Err(PasrSetupError::Overflow)
    );
    let s = spans(3);
    assert_eq!(s.span_of(BASE + SPAN), Some(1));
    assert_eq!(s.span_of(BASE + 3 * SPAN), None);
    assert_eq!(s.span_of(BASE - 1), None);
    assert_eq!(s.span_range(2), BASE + 2 * SPAN..BASE + 3 * SPAN);
    assert_eq!(s.blocks_per_span(), 2);
    assert_eq!(s.all_spans(), 0b111);
    // Messages name the numbers.
    assert!(PasrSetupError::SpanSize { span_pages: 7 }
        .to_string()
        .contains('7'));
}

#[test]
fn free_blocks_are_counted_per_span_on_every_way_in_and_out() {
    let mut s = Storage::new(BASE, 4 * SPAN);
    let mut z = zone_of(&mut s, 4, PasrMode::Steering);
    assert_eq!(z.pasr_free_spans(), 0b1111);
    assert_eq!(z.pasr_free_blocks(0), Some(2));
    // Allocation below max order splits a block: one compare below, a count at max.
    let a = alloc(&mut z, 0, Gfp::MOVABLE);
    assert_eq!(span_of(a), 0);
    assert_eq!(z.pasr_free_blocks(0), Some(1));
    assert_eq!(z.pasr_free_spans(), 0b1110);
    // Freeing merges back up to max order.
    z.free_pages(a, 0).unwrap();
    ok(&z);
    assert_eq!(z.pasr_free_spans(), 0b1111);
    // Reserving (take_free_range) counts too, and a span with a reserved frame never fills.
    z.reserve_range(BASE + SPAN + 7..BASE + SPAN + 8).unwrap();
    ok(&z);
    assert_eq!(z.pasr_free_spans(), 0b1101);
    assert_eq!(z.pasr_free_blocks(1), Some(1));
    // alloc_contig_range takes isolated blocks with take_free_range.
    alloc_contig_range(
        &mut z,
        &mut NoMigrator,
        BASE + 2 * SPAN,
        BASE + 2 * SPAN + 16,
        MigrateType::Movable,
    )
    .unwrap();
    ok(&z);
    assert_eq!(z.pasr_free_spans(), 0b1001);
    crate::mm::free_contig_range(&mut z, BASE + 2 * SPAN, 16).unwrap();
    ok(&z);
    assert_eq!(z.pasr_free_spans(), 0b1101);
    // A state per span for the listing.
    let st = z.pasr_span_state(1).unwrap();
    assert_eq!((st.free_blocks, st.blocks, st.entirely_free), (1, 2, false));
    assert_eq!(st.pfns, BASE + SPAN..BASE + 2 * SPAN);
    assert!(z.pasr_span_state(4).is_none());
}

#[test]
fn holes_and_frames_outside_the_zone_keep_a_span_from_filling() {
    // The zone covers spans 0..3 but span 1 has a hole and span 2 reaches past the zone.
    let mut s = Storage::new(BASE, 2 * SPAN + BLOCK_PAGES);
    let mut z = s.zone();
    z.free_range(BASE..BASE + SPAN).unwrap();
    z.free_range(BASE + SPAN..BASE + SPAN + BLOCK_PAGES)
        .unwrap();
    z.free_range(BASE + 2 * SPAN..BASE + 2 * SPAN + BLOCK_PAGES)
        .unwrap();
    z.enable_pasr(spans(3), PasrMode::Steering).unwrap();
    ok(&z);
    assert_eq!(z.pasr_free_spans(), 0b001);
    assert_eq!(z.pasr_free_blocks(1), Some(1));
    assert_eq!(z.pasr_free_blocks(2), Some(1));
}

#[test]
fn isolated_free_blocks_are_not_free_for_pasr() {
    let mut s = Storage::new(BASE, 2 * SPAN);
    let mut z = zone_of(&mut s, 2, PasrMode::Steering);
    z.pasr_guard(0b10);
    let p = BASE + SPAN + PAGEBLOCK_NR_PAGES;
    z.start_isolate_page_range(p, p + PAGEBLOCK_NR_PAGES, MigrateType::Movable)
        .unwrap();
    ok(&z);
    // Isolating is already the block leaving: the guarded span is flagged at once.
    assert_eq!(z.pasr_free_spans(), 0b01);
    assert_eq!(z.pasr_take_touched(), 0b10);
    assert_eq!(z.pasr_take_touched(), 0, "taking clears");
    // Two isolated pageblocks merge into an isolated MAX_ORDER block: still not free.
    z.start_isolate_page_range(BASE + SPAN, p, MigrateType::Movable)
        .unwrap();
    ok(&z);
    assert_eq!(z.nr_free_blocks(MAX_ORDER, MigrateType::Isolate), 1);
    assert_eq!(z.pasr_free_blocks(1), Some(1));
    z.undo_isolate_page_range(BASE + SPAN, p + PAGEBLOCK_NR_PAGES, MigrateType::Movable);
    ok(&z);
    assert_eq!(z.pasr_free_spans(), 0b11);
}

#[test]
fn guards_flag_only_guarded_spans_and_only_when_memory_leaves() {
    let mut s = Storage::new(BASE, 3 * SPAN);
    let mut z = zone_of(&mut s, 3, PasrMode::Steering);
    z.pasr_guard(0b110 | 1 << 40);
    assert_eq!(
        z.pasr_guarded(),
        0b110,
        "bits past the last span are dropped"
    );
    // Span 0 is not guarded: using it flags nothing.
    let a = alloc(&mut z, 3, Gfp::KERNEL);
    assert_eq!(span_of(a), 0);
    assert_eq!(z.pasr_take_touched(), 0);
    // Freeing into a guarded span flags nothing either.
    let b = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(b), 0, "span 0 is busy: its other block first");
    let c = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(c), 1, "then the lowest entirely free span");
    assert_eq!(z.pasr_take_touched(), 0b010);
    z.free_pages(c, MAX_ORDER).unwrap();
    ok(&z);
    assert_eq!(z.pasr_touched(), 0);
    // Re-guarding forgets older touches.
    let _ = alloc(&mut z, 0, Gfp::MOVABLE);
    z.pasr_guard(0b100);
    assert_eq!(z.pasr_touched(), 0);
    ok(&z);
}

#[test]
fn steering_prefers_busy_spans_lowest_first_and_free_spans_last() {
    let mut s = Storage::new(BASE, 4 * SPAN);
    let mut z = zone_of(&mut s, 4, PasrMode::Steering);
    // All free: the lowest span.
    let a = alloc(&mut z, 0, Gfp::MOVABLE);
    assert_eq!(span_of(a), 0);
    // Span 0 is busy now: its second MAX_ORDER block goes before any free span's.
    let b = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(b), 0);
    assert_eq!(z.pasr_free_spans(), 0b1110);
    // Span 0 has no MAX_ORDER block left: the lowest free span.
    let c = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(c), 1);
    // Make span 2 busy too: a higher busy span does not beat a lower one.
    let d = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(d), 1);
    let e = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(e), 2);
    z.free_pages(c, MAX_ORDER).unwrap();
    z.free_pages(a, 0).unwrap();
    ok(&z);
    // Spans 0, 1, 2 all busy with one free MAX_ORDER block each: the lowest.
    let f = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(f), 0);
    let g = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(g), 1);
    let h = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
    assert_eq!(span_of(h), 2);
    assert_eq!(z.pasr_free_spans(), 0b1000);
}

#[test]
fn stealing_takes_from_busy_spans_before_breaking_a_free_one() {
    // Span 0 holds a Movable MAX_ORDER allocation and small free Movable blocks only;
    // spans 1 and 2 are entirely free. An Unmovable request finds its own lists empty and
    // steals: Linux would take the largest block (a free span's MAX_ORDER block); steering
    // takes span 0's largest instead.
    let run = |mode: PasrMode| {
        let mut s = Storage::new(BASE, 3 * SPAN);
        let mut z = zone_of(&mut s, 3, mode);
        let m = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
        let x = alloc(&mut z, 0, Gfp::MOVABLE);
        let u = alloc(&mut z, 0, Gfp::KERNEL);
        (span_of(m), span_of(x), span_of(u), z.pasr_free_spans())
    };
    let (m, x, u, free) = run(PasrMode::Steering);
    assert_eq!((m, x, u), (0, 0, 0));
    assert_eq!(free, 0b110);
    let (_, _, u, free) = run(PasrMode::Baseline2012);
    assert_ne!(u, 0, "the baseline steals a whole block elsewhere");
    assert_eq!(free.count_ones(), 1);
}

#[test]
fn memory_outside_the_window_is_used_first() {
    // The window covers the zone's upper two spans only.
    let mut s = Storage::new(BASE, 3 * SPAN);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 3 * SPAN).unwrap();
    z.enable_pasr(
        PasrSpans::new(BASE + SPAN, SPAN, 2).unwrap(),
        PasrMode::Steering,
    )
    .unwrap();
    ok(&z);
    for _ in 0..2 {
        let p = alloc(&mut z, MAX_ORDER, Gfp::MOVABLE);
        assert!(p < BASE + SPAN, "{p:#x} is inside the window");
    }
    assert_eq!(z.pasr_free_spans(), 0b11);
    let p = alloc(&mut z, MAX_ORDER, Gfp::KERNEL);
    assert_eq!(span_of(p), 1);
}

#[test]
fn cma_in_a_free_span_is_used_only_after_busy_memory() {
    // Span 1 is an idle CMA area. Movable requests fill span 0 first (even though the CMA
    // balance prefers CMA when more than half of the free memory is CMA), then CMA.
    let mut s = Storage::new(BASE, 2 * SPAN);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2 * SPAN).unwrap();
    let mut area = cma_init_reserved_mem(BASE + SPAN, SPAN, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    z.enable_pasr(spans(2), PasrMode::Steering).unwrap();
    let first = alloc(&mut z, 0, Gfp::MOVABLE);
    assert_eq!(span_of(first), 0);
    let mut n = 1;
    while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
        n += 1;
        if span_of(p) == 1 {
            break;
        }
    }
    ok(&z);
    assert_eq!(
        n,
        SPAN + 1,
        "span 0 filled up before the CMA span was touched"
    );
}

#[test]
fn baseline_places_exactly_as_a_zone_without_pasr() {
    let trace = |mode: Option<PasrMode>| {
        let mut s = Storage::new(BASE, 4 * SPAN);
        let mut z = s.zone();
        z.free_range(BASE..BASE + 4 * SPAN).unwrap();
        if let Some(mode) = mode {
            z.enable_pasr(spans(4), mode).unwrap();
        }
        let mut live = Vec::new();
        let mut rng = 0x1234_5678u64;
        for step in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if !rng.is_multiple_of(3) || live.is_empty() {
                let order = [0, 0, 0, 1, 2, 5, 9, 10][(rng >> 8) as usize % 8];
                let gfp = [Gfp::MOVABLE, Gfp::KERNEL, Gfp::RECLAIMABLE][(rng >> 16) as usize % 3];
                if let Ok(p) = z.alloc_pages(order, gfp) {
                    z.set_owner(p, Owner::new(OwnerKind::Kernel, step)).unwrap();
                    live.push((p, order));
                }
            } else {
                let (p, order) = live.swap_remove((rng >> 24) as usize % live.len());
                z.free_pages(p, order).unwrap();
            }
        }
        ok(&z);
        (live, frames(&z))
    };
    let plain = trace(None);
    assert!(
        plain == trace(Some(PasrMode::Baseline2012)),
        "the baseline changed placement"
    );
    assert!(
        plain != trace(Some(PasrMode::Steering)),
        "steering changed nothing"
    );
}

#[test]
fn enabling_and_disabling_on_a_used_zone_relinks_without_changing_frames() {
    let mut s = Storage::new(BASE, 4 * SPAN);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4 * SPAN).unwrap();
    let a = z.alloc_pages(MAX_ORDER, Gfp::MOVABLE).unwrap();
    let _b = z.alloc_pages(3, Gfp::KERNEL).unwrap();
    z.free_pages(a, MAX_ORDER).unwrap();
    let before = (frames(&z), z.counters());
    for mode in [
        PasrMode::Steering,
        PasrMode::Baseline2012,
        PasrMode::Steering,
    ] {
        z.enable_pasr(spans(4), mode).unwrap();
        ok(&z);
        assert_eq!(z.pasr_mode(), Some(mode));
        assert_eq!(z.pasr_free_spans().count_ones(), 3);
        assert!((frames(&z), z.counters()) == before);
    }
    z.pasr_guard(0b1);
    z.disable_pasr();
    ok(&z);
    assert_eq!(z.pasr_spans(), None);
    assert_eq!((z.pasr_free_spans(), z.pasr_take_touched()), (0, 0));
    assert!((frames(&z), z.counters()) == before);
}

#[test]
fn migration_targets_land_in_busy_spans() {
    // Span 0: anonymous pages to move out of its first 64 frames, the rest of it full.
    // Span 1: busy, with room. Span 2: entirely free. alloc_contig_range must not break
    // span 2.
    let mut s = Storage::new(BASE, 3 * SPAN);
    let mut z = zone_of(&mut s, 3, PasrMode::Steering);
    let mut owners = crate::mm::testutil::FakeOwners::default();
    // Fill span 0 (Movable pageblocks, pinned owners), then turn its first 64 frames into
    // anonymous pages.
    while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
        if span_of(p) != 0 {
            z.free_pages(p, 0).unwrap();
            break;
        }
        z.set_owner(p, Owner::new(OwnerKind::Kernel, 0)).unwrap();
    }
    for p in BASE..BASE + 64 {
        z.free_pages(p, 0).unwrap();
    }
    for id in 1..=64 {
        let p = alloc(&mut z, 0, Gfp::MOVABLE);
        assert!(p < BASE + 64);
        z.set_owner(p, Owner::new(OwnerKind::Anon, id)).unwrap();
        owners.populate(id, p, 0, id);
    }
    let busy1 = alloc(&mut z, 0, Gfp::KERNEL);
    assert_eq!(span_of(busy1), 1);
    assert_eq!(z.pasr_free_spans(), 0b100);
    alloc_contig_range(&mut z, &mut owners, BASE, BASE + 64, MigrateType::Movable).unwrap();
    ok(&z);
    owners.verify().unwrap();
    assert_eq!(
        z.pasr_free_spans(),
        0b100,
        "a target landed in the free span"
    );
    assert!(owners.objects.values().all(|&(p, _, _)| span_of(p) == 1));
}

#[test]
fn free_spans_are_the_last_resort_not_a_failure() {
    // Only free spans left: every kind of request still succeeds.
    let mut s = Storage::new(BASE, 2 * SPAN);
    let mut z = zone_of(&mut s, 2, PasrMode::Steering);
    for gfp in [Gfp::KERNEL, Gfp::RECLAIMABLE, Gfp::MOVABLE] {
        let p = alloc(&mut z, MAX_ORDER, gfp);
        z.free_pages(p, MAX_ORDER).unwrap();
        ok(&z);
    }
    let mut n = 0;
    while z.alloc_pages(0, Gfp::KERNEL).is_ok() {
        n += 1;
    }
    ok(&z);
    assert_eq!(n, 2 * SPAN);
}
