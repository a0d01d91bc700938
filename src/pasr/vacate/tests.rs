//! Unit tests of the vacating pass on hand-made layouts: what is emptied, what is skipped
//! and why, the room rule, the budget, CMA tenants, the pair rule, where targets land, and
//! the baseline's pre-sleep step.

use super::super::geometry::{Geometry, Unit, UnitKind};
use super::super::sections::Sections;
use super::super::testrig::{place, Place, Rig, Tenants};
use super::*;
use crate::mm::testutil::Storage;
use crate::mm::{cma_activate_area, cma_alloc, cma_init_reserved_mem, Watermarks, MAX_ORDER};
use crate::util::size::MIB;

const BASE: Pfn = 0x40000;
/// One MAX_ORDER block per span.
const SPAN: usize = 1 << MAX_ORDER;
const NR: usize = 8;
/// Firmware image at the start of span 0.
const FIRMWARE: Range<Pfn> = BASE..BASE + 16;

/// 2 dies x 8 banks of 2 MiB, interleaved every 64 KiB: 8 spans of 4 MiB.
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

fn at(span: usize, offset: usize) -> Pfn {
    BASE + span * SPAN + offset
}

/// The zone (RAM everywhere, the firmware reserved), PASR attached in `mode`, the rig.
fn setup(s: &mut Storage, mode: PasrMode) -> (Zone<'_>, Rig) {
    let mut z = s.zone();
    z.free_range(BASE..BASE + NR * SPAN).unwrap();
    z.reserve_range(FIRMWARE).unwrap();
    z.set_watermarks(Watermarks::from_min(8));
    let g = geometry();
    let mut sections = Sections::from_geometry(&g).unwrap();
    sections.attach(&mut z, mode).unwrap();
    let rig = Rig::new(g, sections, Tenants::new(BASE, NR * SPAN));
    (z, rig)
}

fn anon(pfn: Pfn) -> Place {
    Place::new(pfn, 0, OwnerKind::Anon)
}

fn span_of(pfn: Pfn) -> usize {
    (pfn - BASE) / SPAN
}

/// Spans in which live objects lie.
fn occupied(rig: &Rig) -> u64 {
    rig.tenants
        .objects
        .values()
        .fold(0, |b, o| b | 1 << span_of(o.pfn))
}

fn check(z: &Zone<'_>, rig: &Rig) {
    if let Err(e) = rig.check(z) {
        panic!("{e}");
    }
    rig.tenants.verify().unwrap();
}

/// Span 1: anonymous pages (one of order 2); span 2: clean and dirty page cache; span 3: a
/// kernel page; span 4: a pinned page; span 5: 600 anonymous pages; spans 6, 7 free.
fn mixed_layout() -> Vec<Place> {
    let mut l = vec![
        anon(at(1, 5)),
        anon(at(1, 300)),
        anon(at(1, 1000)),
        Place::new(at(1, 64), 2, OwnerKind::Anon),
        Place::clean_cache(at(2, 7)),
        Place::new(at(2, 900), 0, OwnerKind::PageCache),
        Place::new(at(3, 512), 0, OwnerKind::Kernel),
        Place::new(at(4, 3), 0, OwnerKind::Pinned),
    ];
    l.extend((0..600).map(|i| anon(at(5, i + i / 3))));
    l
}

#[test]
fn nearly_empty_movable_spans_are_emptied_and_masked() {
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    place(&mut z, &mut rig.tenants, &mixed_layout(), 1);
    rig.after_op(&mut z);
    check(&z, &rig);
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.already_free, 0b1100_0000);
    assert_eq!(r.vacated, 0b0010_0110);
    assert_eq!(
        r.skipped,
        [
            SpanSkip {
                span: 0,
                reason: SkipReason::Unmanaged { pfn: BASE }
            },
            SpanSkip {
                span: 3,
                reason: SkipReason::Unmovable {
                    pfn: at(3, 512),
                    kind: OwnerKind::Kernel
                }
            },
            SpanSkip {
                span: 4,
                reason: SkipReason::Unmovable {
                    pfn: at(4, 3),
                    kind: OwnerKind::Pinned
                }
            },
        ]
    );
    assert_eq!((r.pages_migrated, r.pages_dropped), (3 + 4 + 1 + 600, 1));
    assert_eq!(r.budget_used, 609);
    // Both dies mask banks 1, 2, 5, 6, 7.
    assert_eq!(r.masks.per_die(), [0xe6, 0xe6]);
    assert_eq!(rig.hw, r.masks);
    // Everything moved lives in the spans that stay refreshed.
    assert_eq!(occupied(&rig) & !0b0001_1001, 0);
    assert_eq!(rig.tenants.objects.len(), mixed_layout().len() - 1);
}

#[test]
fn the_budget_stops_the_pass_before_a_span_it_cannot_finish() {
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    place(&mut z, &mut rig.tenants, &mixed_layout(), 1);
    rig.after_op(&mut z);
    // Emptiest first: span 2 (2 pages) fits in 8, span 1 (7 more) does not.
    let r = rig.suspend(&mut z, 8);
    check(&z, &rig);
    assert_eq!(r.vacated, 0b100);
    assert_eq!(r.budget_used, 2);
    assert!(r.budget_used <= r.budget_pages);
    let reasons: Vec<_> = r.skipped.iter().map(|s| (s.span, s.reason)).collect();
    assert!(reasons.contains(&(1, SkipReason::Budget { needed: 7, left: 6 })));
    assert!(reasons.contains(&(
        5,
        SkipReason::Budget {
            needed: 600,
            left: 6
        }
    )));
    assert!(occupied(&rig) & 0b10 != 0, "span 1 untouched");
}

#[test]
fn spans_are_emptied_only_while_the_refreshed_ones_can_hold_the_data() {
    // Spans 1..=5 hold 700 anonymous pages each: the other spans (span 0 and whatever is
    // kept) can absorb two of them, not three.
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    let layout: Vec<Place> = (1..=5)
        .flat_map(|span| (0..700).map(move |i| anon(at(span, i))))
        .collect();
    place(&mut z, &mut rig.tenants, &layout, 1);
    rig.after_op(&mut z);
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.vacated.count_ones(), 2);
    assert_eq!(r.pages_migrated, 1400);
    assert_eq!(
        r.skipped
            .iter()
            .filter(|s| matches!(s.reason, SkipReason::NoRoom { .. }))
            .count(),
        3
    );
    assert_eq!(
        r.masks.count(),
        2 * 4,
        "two vacated plus two free spans, two dies"
    );
    assert_eq!(rig.tenants.live_pages(), 3500);
}

#[test]
fn cma_tenants_move_out_and_cma_stays_cma() {
    // Spans 6 and 7 are a CMA area: span 6 lends pages to anonymous memory, span 7 holds a
    // contiguous allocation (pinned by definition).
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    let mut area = cma_init_reserved_mem(at(6, 0), 2 * SPAN, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    // A contiguous allocation at the start of span 7 (span 6 taken meanwhile).
    let filler = cma_alloc(&mut area, &mut z, &mut rig.tenants, SPAN, 0).unwrap();
    let second = cma_alloc(&mut area, &mut z, &mut rig.tenants, 8, 0).unwrap();
    assert!(crate::mm::cma_release(&mut area, &mut z, filler, SPAN));
    assert_eq!(span_of(second), 7);
    let layout = [
        anon(at(6, 10)),
        anon(at(6, 11)),
        Place::new(at(0, 100), 0, OwnerKind::Kernel),
    ];
    place(&mut z, &mut rig.tenants, &layout, 1);
    rig.tenants.add(99, second, 8, OwnerKind::Contig, false);
    rig.after_op(&mut z);
    check(&z, &rig);
    let cma_before = z.counters().cma_pages;
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.vacated, 1 << 6);
    assert_eq!(r.pages_migrated, 2);
    let reasons: Vec<_> = r.skipped.iter().map(|s| (s.span, s.reason)).collect();
    assert!(reasons.contains(&(
        7,
        SkipReason::Unmovable {
            pfn: second,
            kind: OwnerKind::Contig
        }
    )));
    assert!(rig
        .tenants
        .objects
        .values()
        .all(|o| o.kind == OwnerKind::Contig || span_of(o.pfn) < 6));
    // The area's pageblocks are still CMA and its free pages are on the CMA lists.
    assert_eq!(z.counters().cma_pages, cma_before);
    assert!((at(6, 0)..at(8, 0))
        .step_by(crate::mm::PAGEBLOCK_NR_PAGES)
        .all(|pb| z.pageblock_migratetype(pb) == Some(MigrateType::Cma)));
    assert_eq!(z.counters().free_cma_pages, 2 * SPAN - 8);
}

#[test]
fn targets_never_land_in_spans_the_pass_is_emptying() {
    // Span 0 is full; spans 1 and 2 are nearly empty; span 3 has room. Steering prefers the
    // lowest busy span, which would be span 2 for span 1's pages if span 2 were not
    // isolated first: each page must move once, into span 3.
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    let mut layout: Vec<Place> = (FIRMWARE.end - BASE..SPAN)
        .map(|i| Place::new(at(0, i), 0, OwnerKind::Kernel))
        .collect();
    layout.extend((0..3).map(|i| anon(at(1, 100 + i))));
    layout.extend((0..3).map(|i| anon(at(2, 100 + i))));
    layout.push(Place::new(at(3, 0), 0, OwnerKind::Kernel));
    place(&mut z, &mut rig.tenants, &layout, 1);
    rig.after_op(&mut z);
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.vacated, 0b110);
    assert_eq!(r.pages_migrated, 6);
    assert!(rig
        .tenants
        .objects
        .values()
        .filter(|o| o.kind == OwnerKind::Anon)
        .all(|o| span_of(o.pfn) == 3));
}

#[test]
fn persistent_transient_failures_skip_the_span_without_losing_data() {
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    let layout = [
        anon(at(1, 1)),
        anon(at(1, 2)),
        Place::new(at(0, 100), 0, OwnerKind::Kernel),
    ];
    place(&mut z, &mut rig.tenants, &layout, 1);
    rig.tenants.again = usize::MAX;
    rig.after_op(&mut z);
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.vacated, 0);
    assert!(matches!(
        r.skipped.iter().find(|s| s.span == 1).map(|s| s.reason),
        Some(SkipReason::Failed(ContigError::GaveUp { .. }))
    ));
    assert_eq!(r.masks.per_die(), [0xfc, 0xfc], "every other span is free");
    // Once the owner cooperates the next pass empties it.
    rig.tenants.again = 0;
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.vacated, 0b10);
}

#[test]
fn a_pair_is_emptied_together_or_not_at_all() {
    // Hand-made pairing over the same spans: unit (0, s) is paired with (1, 7 - s), so spans
    // s and 7 - s must be free together. Span 1 has a kernel page: span 6 (anonymous pages)
    // is not worth emptying. Span 2 (anonymous) pairs with span 5 (free): emptied.
    let mut s = Storage::new(BASE, NR * SPAN);
    let mut z = s.zone();
    z.free_range(BASE..BASE + NR * SPAN).unwrap();
    let spans = crate::mm::PasrSpans::new(BASE, SPAN, NR).unwrap();
    let unit_span: Vec<usize> = (0..16).map(|i| i % 8).collect();
    let pairs: Vec<(Unit, Unit)> = (0..8u8)
        .map(|s| {
            (
                Unit { die: 0, index: s },
                Unit {
                    die: 1,
                    index: 7 - s,
                },
            )
        })
        .collect();
    let mut sections =
        Sections::with_layout(spans, UnitKind::Bank, 2, 8, &unit_span, &pairs).unwrap();
    sections.attach(&mut z, PasrMode::Steering).unwrap();
    let mut tenants = Tenants::new(BASE, NR * SPAN);
    let mut layout = vec![
        Place::new(at(1, 0), 0, OwnerKind::Kernel),
        anon(at(2, 9)),
        anon(at(6, 9)),
    ];
    // Spans 0, 3, 4, 7 busy with kernel pages (and room).
    layout.extend([0, 3, 4, 7].map(|s| Place::new(at(s, 500), 0, OwnerKind::Kernel)));
    place(&mut z, &mut tenants, &layout, 1);
    let _ = sections.unmask_touched(&mut z);
    let r = vacate_and_mask(&mut z, &mut sections, &mut tenants, usize::MAX).unwrap();
    sections.check_invariants(&z).unwrap();
    tenants.verify().unwrap();
    assert_eq!(r.vacated, 1 << 2);
    assert_eq!(r.already_free, 1 << 5);
    let reasons: Vec<_> = r.skipped.iter().map(|s| (s.span, s.reason)).collect();
    assert!(reasons.contains(&(6, SkipReason::Partner { span: 1 })));
    // (0, 2) with (1, 5), and (0, 5) with (1, 2): spans 2 and 5 on both dies.
    assert_eq!(r.masks.per_die(), [0b0010_0100, 0b0010_0100]);
    assert!(tenants.objects.values().any(|o| span_of(o.pfn) == 6));
}

#[test]
fn the_baseline_only_masks_what_happens_to_be_free() {
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Baseline2012);
    place(&mut z, &mut rig.tenants, &mixed_layout(), 1);
    rig.after_op(&mut z);
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!((r.vacated, r.pages_migrated, r.pages_dropped), (0, 0, 0));
    assert_eq!(r.masks.per_die(), [0xc0, 0xc0]);
    // Not attached (other spans, or none): refused.
    let other = Sections::with_layout(
        crate::mm::PasrSpans::new(BASE, SPAN, 2).unwrap(),
        UnitKind::Bank,
        1,
        2,
        &[0, 1],
        &[],
    )
    .unwrap();
    let mut other = other;
    assert_eq!(
        prepare_for_sleep(&mut z, &mut other, &mut rig.tenants, 0).unwrap_err(),
        VacateError::NotAttached
    );
}

#[test]
fn a_block_is_moved_only_where_a_free_block_of_its_order_is_left() {
    // Spans 0 and 1 hold kernel pages on every other frame: plenty of free pages, none in
    // a block larger than one page. Span 2 holds an order-3 anonymous block, span 3 three
    // anonymous pages; spans 4..=7 are free (and stay free). Counted in pages span 2 fits;
    // its block has nowhere to go, so the pass must leave it alone rather than fail half
    // way, and still empty span 3.
    let mut s = Storage::new(BASE, NR * SPAN);
    let (mut z, mut rig) = setup(&mut s, PasrMode::Steering);
    let mut layout: Vec<Place> = (FIRMWARE.end - BASE..2 * SPAN)
        .step_by(2)
        .map(|i| Place::new(BASE + i, 0, OwnerKind::Kernel))
        .collect();
    layout.push(Place::new(at(2, 64), 3, OwnerKind::Anon));
    layout.extend((0..3).map(|i| anon(at(3, 10 + i))));
    place(&mut z, &mut rig.tenants, &layout, 1);
    rig.after_op(&mut z);
    let r = rig.suspend(&mut z, usize::MAX);
    check(&z, &rig);
    assert_eq!(r.vacated, 0b1000);
    assert_eq!((r.pages_migrated, r.pages_dropped), (3, 0));
    assert_eq!(
        r.skipped.iter().find(|s| s.span == 2).map(|s| s.reason),
        Some(SkipReason::Fragmented {
            order: 3,
            needed: 1,
            room: 0
        })
    );
    let block = rig.tenants.objects.values().find(|o| o.pages == 8).unwrap();
    assert_eq!(block.pfn, at(2, 64), "the block never moved");
    // The free spans are masked with the vacated one.
    assert_eq!(r.masks.per_die(), [0xf8, 0xf8]);
}
