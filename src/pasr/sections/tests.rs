//! Unit tests of the sections: units and spans from both geometry shapes, the pair rule
//! (the geometry's trivial pairs and a hand-made crossing pairing), masks, the
//! after-allocation unmask, and the report.

use super::*;
use crate::mm::testutil::Storage;
use crate::mm::{Gfp, MAX_ORDER};
use crate::util::size::MIB;
use alloc::string::ToString;

const BLOCK: usize = 1 << MAX_ORDER;
const BASE_PHYS: u64 = 0x4000_0000;
const BASE: Pfn = (BASE_PHYS >> PAGE_SHIFT) as Pfn;

fn u(die: u8, index: u8) -> Unit {
    Unit { die, index }
}

/// 2 dies x 4 banks of 8 MiB, interleaved every 64 KiB: 4 spans of 16 MiB.
fn interleaved() -> Geometry {
    Geometry::new(
        BASE_PHYS,
        2,
        32 * MIB,
        4,
        UnitKind::Bank,
        Some(64 * 1024),
        4 * MIB,
    )
    .unwrap()
}

fn zone_over<'a>(s: &'a mut Storage, sections: &mut Sections, mode: PasrMode) -> Zone<'a> {
    let pages = s.pages.len();
    let mut z = s.zone();
    z.free_range(BASE..BASE + pages).unwrap();
    sections.attach(&mut z, mode).unwrap();
    z
}

fn ok(z: &Zone<'_>, s: &Sections) {
    z.check_invariants().unwrap();
    if let Err(e) = s.check_invariants(z) {
        panic!("sections invariant: {e}");
    }
}

/// Allocate every frame of span `span` (as kernel pages) and return them.
fn fill_span(z: &mut Zone<'_>, spans: PasrSpans, span: usize) -> Vec<Pfn> {
    let mut held = Vec::new();
    let mut others = Vec::new();
    let r = spans.span_range(span);
    while held.len() < r.len() {
        let p = z.alloc_pages(0, Gfp::KERNEL).unwrap();
        if r.contains(&p) {
            held.push(p);
        } else {
            others.push(p);
        }
    }
    for p in others {
        z.free_pages(p, 0).unwrap();
    }
    held
}

#[test]
fn interleaved_banks_pair_across_dies_in_one_span() {
    let g = interleaved();
    let mut s = Sections::from_geometry(&g).unwrap();
    assert_eq!(s.spans().nr_spans(), 4);
    assert_eq!(s.spans().span_pages(), 4096);
    assert_eq!(s.span_of_unit(u(1, 2)), Some(2));
    assert_eq!(s.partners(u(0, 2)), [u(1, 2)]);
    assert_eq!(s.guard_spans(u(0, 2)), 0b0100);
    assert_eq!(s.units_in(0b0100).collect::<Vec<_>>(), [u(0, 2), u(1, 2)]);
    let mut st = Storage::new(BASE, 4 * 4096);
    let mut z = zone_over(&mut st, &mut s, PasrMode::Steering);
    // Everything free: every bank maskable.
    assert_eq!(s.maskable(&z).per_die(), [0x0f, 0x0f]);
    // One page in span 0 (steering puts it in the lowest span) keeps both dies' bank 0.
    let p = z.alloc_pages(0, Gfp::KERNEL).unwrap();
    assert_eq!(s.spans().span_of(p), Some(0));
    let m = s.mask_free_units(&mut z);
    ok(&z, &s);
    assert_eq!(m.per_die(), [0x0e, 0x0e]);
    assert_eq!(m.mode_register(), 16);
    assert_eq!(m.count(), 6);
    assert!(m.contains(u(1, 3)) && !m.contains(u(1, 0)));
    assert_eq!(m.to_string(), "MR16 die0=0x0e die1=0x0e");
}

#[test]
fn plain_segments_have_no_partners() {
    let g = Geometry::new(BASE_PHYS, 2, 32 * MIB, 8, UnitKind::Segment, None, 4 * MIB).unwrap();
    let mut s = Sections::from_geometry(&g).unwrap();
    assert_eq!(s.spans().nr_spans(), 16);
    assert!(s.partners(u(1, 5)).is_empty());
    assert_eq!(s.span_of_unit(u(1, 5)), Some(13));
    let mut st = Storage::new(BASE, 16 * BLOCK);
    let mut z = zone_over(&mut st, &mut s, PasrMode::Steering);
    let _ = z.alloc_pages(0, Gfp::KERNEL).unwrap();
    let m = s.mask_free_units(&mut z);
    ok(&z, &s);
    assert_eq!((m.mode_register(), m.per_die()), (17, &[0xfe, 0xff][..]));
}

/// Four one-block spans, a unit each; die 0's bank 0 pairs with die 1's bank 1 and
/// die 0's bank 1 with die 1's bank 0, across spans (0, 3) and (1, 2).
fn crossing() -> Sections {
    let spans = PasrSpans::new(BASE, BLOCK, 4).unwrap();
    Sections::with_layout(
        spans,
        UnitKind::Bank,
        2,
        2,
        &[0, 1, 2, 3],
        &[(u(0, 0), u(1, 1)), (u(0, 1), u(1, 0))],
    )
    .unwrap()
}

#[test]
fn a_unit_is_maskable_only_with_every_partner_free() {
    let mut s = crossing();
    assert_eq!(s.guard_spans(u(0, 0)), 0b1001);
    assert_eq!(s.guard_spans(u(1, 0)), 0b0110);
    let mut st = Storage::new(BASE, 4 * BLOCK);
    let mut z = zone_over(&mut st, &mut s, PasrMode::Steering);
    let held = fill_span(&mut z, s.spans(), 3);
    // Span 3 busy: its unit (die 1 bank 1) and its partner in span 0 stay refreshed.
    let m = s.mask_free_units(&mut z);
    ok(&z, &s);
    assert_eq!(m.units().collect::<Vec<_>>(), [u(0, 1), u(1, 0)]);
    for p in held {
        z.free_pages(p, 0).unwrap();
    }
    assert_eq!(s.maskable(&z).count(), 4);
    assert_eq!(s.masks().count(), 2, "maskable() changes nothing");
    // The zone now says nothing touched the masked spans: no unmask, no register write.
    assert_eq!(s.unmask_touched(&mut z), None);
    ok(&z, &s);
}

#[test]
fn touching_a_masked_span_unmasks_the_unit_and_its_partners_before_use() {
    let mut s = crossing();
    let mut st = Storage::new(BASE, 4 * BLOCK);
    let mut z = zone_over(&mut st, &mut s, PasrMode::Steering);
    assert_eq!(s.mask_free_units(&mut z).count(), 4);
    ok(&z, &s);
    // Steering takes the lowest free span (0) when every span is free.
    let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    assert_eq!(s.spans().span_of(p), Some(0));
    assert!(s.check_invariants(&z).is_err(), "a touch is pending");
    let m = s.unmask_touched(&mut z).expect("span 0 was guarded");
    // Die 0 bank 0 lies in span 0; die 1 bank 1 is its partner.
    assert_eq!(m.units().collect::<Vec<_>>(), [u(0, 1), u(1, 0)]);
    ok(&z, &s);
    // More use of span 0 touches nothing guarded.
    let q = z.alloc_pages(3, Gfp::MOVABLE).unwrap();
    assert_eq!(s.spans().span_of(q), Some(0));
    assert_eq!(s.unmask_touched(&mut z), None);
    // Freeing never unmasks; re-masking after the free masks all four again.
    z.free_pages(p, 0).unwrap();
    z.free_pages(q, 3).unwrap();
    assert_eq!(s.unmask_touched(&mut z), None);
    assert_eq!(s.mask_free_units(&mut z).count(), 4);
    ok(&z, &s);
    assert_eq!(s.unmask_all(&mut z).count(), 0);
    ok(&z, &s);
}

#[test]
fn the_report_lists_each_units_share_and_state() {
    let g = interleaved();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, 4 * 4096);
    let mut z = zone_over(&mut st, &mut s, PasrMode::Steering);
    let _ = z.alloc_pages(MAX_ORDER, Gfp::MOVABLE).unwrap();
    s.mask_free_units(&mut z);
    let r = s.report(&z);
    assert_eq!(r.len(), 8);
    let bank0 = &r[0];
    assert_eq!((bank0.unit, bank0.span), (u(0, 0), 0));
    assert_eq!(bank0.bytes, 8 * MIB);
    // Three of span 0's four blocks are free, shared by two dies: 6 MiB each.
    assert_eq!((bank0.span_free_blocks, bank0.span_blocks), (3, 4));
    assert_eq!(bank0.free_bytes, 6 * MIB);
    assert!(!bank0.maskable && !bank0.masked);
    assert_eq!(bank0.partners, [u(1, 0)]);
    let die1_bank3 = &r[7];
    assert_eq!(die1_bank3.unit, u(1, 3));
    assert!(die1_bank3.maskable && die1_bank3.masked);
    assert_eq!(die1_bank3.free_bytes, 8 * MIB);
    assert_eq!(die1_bank3.span_pfns, BASE + 3 * 4096..BASE + 4 * 4096);
}

#[test]
fn bad_layouts_are_refused_with_a_reason() {
    let spans = PasrSpans::new(BASE, BLOCK, 4).unwrap();
    let layout = |dies, upd, unit_span: &[usize], pairs: &[(Unit, Unit)]| {
        Sections::with_layout(spans, UnitKind::Bank, dies, upd, unit_span, pairs).unwrap_err()
    };
    assert_eq!(layout(0, 2, &[], &[]), SectionsError::Shape);
    assert_eq!(layout(5, 1, &[0; 5], &[]), SectionsError::Shape);
    assert_eq!(layout(1, 9, &[0; 9], &[]), SectionsError::Shape);
    assert_eq!(layout(1, 2, &[0], &[]), SectionsError::UnitSpan);
    assert_eq!(layout(1, 2, &[0, 4], &[]), SectionsError::UnitSpan);
    assert_eq!(
        layout(1, 2, &[0, 1], &[(u(0, 0), u(0, 0))]),
        SectionsError::Pair
    );
    assert_eq!(
        layout(1, 2, &[0, 1], &[(u(0, 0), u(1, 0))]),
        SectionsError::Pair
    );
    assert!(SectionsError::UnitSpan.to_string().contains("span"));
    // A geometry whose spans are not whole MAX_ORDER blocks is refused by the zone's rule.
    let g = Geometry::new(BASE_PHYS, 1, 8 * MIB, 4, UnitKind::Segment, None, 2 * MIB).unwrap();
    assert!(matches!(
        Sections::from_geometry(&g),
        Err(SectionsError::Spans(PasrSetupError::SpanSize { .. }))
    ));
}

#[test]
fn masks_value_type_behaves() {
    let mut m = PasrMasks::none(UnitKind::Segment, 3);
    assert!(m.is_empty());
    m.per_die[2] = 0x81;
    assert_eq!(m.units().collect::<Vec<_>>(), [u(2, 0), u(2, 7)]);
    assert_eq!(m.die(2), 0x81);
    assert_eq!(m.die(3), 0, "past the last die");
    assert!(!m.contains(u(2, 9)));
    assert_eq!(m.to_string(), "MR17 die0=0x00 die1=0x00 die2=0x81");
}
