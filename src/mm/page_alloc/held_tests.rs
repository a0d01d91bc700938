//! Unit tests of held CMA pageblocks (`held.rs`): activation holds, small allocations from
//! an idle area touch no list, lending on demand (highest pageblock first), ranges that are
//! partly held and partly lent, the reports' counts, and PASR lending everything.

use super::super::testutil::{FakeOwners, Storage};
use super::*;
use crate::mm::{
    cma_activate_area, cma_alloc, cma_init_reserved_mem, cma_release, NoMigrator, PasrMode,
    PasrSpans,
};
use std::vec::Vec;

const BASE: Pfn = 0x40000;
const PB: usize = PAGEBLOCK_NR_PAGES;

fn ok(z: &Zone<'_>) {
    if let Err(e) = z.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

/// A zone of `total` frames whose top `cma` frames are an activated CMA area.
fn zone_with_area(s: &mut Storage, total: usize, cma: usize) -> (Zone<'_>, crate::mm::CmaArea) {
    let mut z = s.zone();
    z.free_range(BASE..BASE + total).unwrap();
    let mut area = cma_init_reserved_mem(BASE + total - cma, cma, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    ok(&z);
    (z, area)
}

fn cma_listed(z: &Zone<'_>) -> usize {
    (0..NR_PAGE_ORDERS)
        .map(|o| z.free_area[o].nr_by_type[MigrateType::Cma.index()] << o)
        .sum()
}

#[test]
fn activation_holds_the_area_and_every_report_counts_it_free() {
    let mut s = Storage::new(BASE, 8192);
    let (z, _area) = zone_with_area(&mut s, 8192, 4096);
    assert_eq!(z.held_pageblocks(), 4096 / PB);
    assert_eq!(z.held_free_pages(), 4096);
    assert_eq!(cma_listed(&z), 0, "nothing of the area is on a list");
    let c = z.counters();
    assert_eq!(c.free_pages, 8192);
    assert_eq!(c.free_cma_pages, 4096);
    assert_eq!(c.free_by_migratetype[MigrateType::Cma.index()], 4096);
    // As if listed: four MAX_ORDER blocks of CMA next to four of Movable.
    assert_eq!(c.nr_free[MAX_ORDER], 8);
    assert_eq!(z.nr_free_blocks(MAX_ORDER, MigrateType::Cma), 4);
    assert_eq!(z.free_pages_outside_cma(), 4096);
}

#[test]
fn one_page_from_an_idle_area_touches_no_list_and_comes_back_held() {
    let mut s = Storage::new(BASE, 8192);
    let (mut z, mut area) = zone_with_area(&mut s, 8192, 4096);
    let nr_free_before: Vec<usize> = z.free_area.iter().map(|a| a.nr_free).collect();
    let pfn = cma_alloc(&mut area, &mut z, &mut NoMigrator, 1, 0).unwrap();
    assert_eq!(pfn, BASE + 4096, "first fit: the area's first frame");
    let nr_free_after: Vec<usize> = z.free_area.iter().map(|a| a.nr_free).collect();
    assert_eq!(nr_free_before, nr_free_after, "no block split, none listed");
    let page = z.page(pfn).unwrap();
    assert_eq!(page.state(), PageState::Head);
    assert_eq!(page.migratetype(), MigrateType::Cma);
    assert_eq!(z.held_free_pages(), 4095);
    assert_eq!(z.counters().free_cma_pages, 4095);
    // The reports show the remainder as the buddy would have split it: orders 0..=8 of
    // the first pageblock, one order-9 block (its neighbour), and the area's three other
    // MAX_ORDER blocks next to the four outside it.
    let c = z.counters();
    for o in 0..PAGEBLOCK_ORDER {
        assert_eq!(c.nr_free[o], 1, "order {o}");
    }
    assert_eq!(c.nr_free[PAGEBLOCK_ORDER], 1);
    assert_eq!(c.nr_free[MAX_ORDER], 4 + 3);
    ok(&z);
    assert!(cma_release(&mut area, &mut z, pfn, 1));
    assert_eq!(z.page(pfn).unwrap().state(), PageState::Held);
    assert_eq!(z.held_free_pages(), 4096);
    assert_eq!(cma_listed(&z), 0);
    ok(&z);
}

#[test]
fn the_reports_count_held_memory_as_the_blocks_lending_lists() {
    let mut s = Storage::new(BASE, 8192);
    let (mut z, mut area) = zone_with_area(&mut s, 8192, 4096);
    let mut got = Vec::new();
    for (count, align) in [(3, 0), (100, 2), (1, 0), (700, 0), (64, 6), (5, 0)] {
        got.push((
            cma_alloc(&mut area, &mut z, &mut NoMigrator, count, align).unwrap(),
            count,
        ));
    }
    // Release some, leaving holes of odd sizes.
    for &(pfn, count) in [got[1], got[4]].iter() {
        assert!(cma_release(&mut area, &mut z, pfn, count));
    }
    ok(&z);
    let reported = z.counters();
    z.lend_all_held();
    ok(&z);
    assert_eq!(z.held_free_pages(), 0);
    assert_eq!(z.counters(), reported, "lending changes no report");
}

#[test]
fn a_movable_request_short_of_its_own_memory_lends_the_highest_held_pageblock() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, _area) = zone_with_area(&mut s, 4096, 2048);
    z.set_watermarks(Watermarks::from_min(0));
    // Outside CMA exhausted by kernel data.
    let mut kernel = Vec::new();
    while let Ok(p) = z.alloc_pages(0, Gfp::KERNEL) {
        kernel.push(p);
    }
    assert_eq!(
        kernel.len(),
        2048,
        "unmovable requests never see held CMA memory"
    );
    let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    assert_eq!(z.held_pageblocks(), 2048 / PB - 1);
    assert!(p >= BASE + 4096 - PB, "from the highest pageblock: {p:#x}");
    ok(&z);
    // Every frame of the area can be had this way, and then nothing more.
    let mut movable = vec![p];
    while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
        movable.push(p);
    }
    assert_eq!(movable.len(), 2048);
    assert_eq!(z.held_pageblocks(), 0);
    ok(&z);
    for p in movable.into_iter().chain(kernel) {
        z.free_pages(p, 0).unwrap();
    }
    assert_eq!(z.counters().free_pages, 4096);
    ok(&z);
}

#[test]
fn a_range_partly_lent_and_partly_held_is_emptied_and_taken() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut area) = zone_with_area(&mut s, 4096, 2048);
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap());
    // Movable pages take the top pageblock of the area.
    let mut owners = FakeOwners::default();
    for id in 1..=200u64 {
        let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
        z.set_owner(p, Owner::new(crate::mm::OwnerKind::Anon, id))
            .unwrap();
        owners.populate(id, p, 0, id);
    }
    assert_eq!(z.held_pageblocks(), 3);
    z.set_cma_balance(CmaBalance::LINUX);
    // The whole area: three held pageblocks and one with movable pages in it.
    let pfn = cma_alloc(&mut area, &mut z, &mut owners, 2048, 0).unwrap();
    assert_eq!(pfn, BASE + 2048);
    assert_eq!(z.held_pageblocks(), 0, "isolation lent the rest");
    owners.verify().unwrap();
    assert!(owners.objects.values().all(|o| o.0 < BASE + 2048));
    ok(&z);
    assert!(cma_release(&mut area, &mut z, pfn, 2048));
    ok(&z);
    assert_eq!(z.counters().free_cma_pages, 2048);
}

#[test]
fn enabling_pasr_lends_every_held_pageblock_and_activation_under_it_holds_nothing() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut area) = zone_with_area(&mut s, 4096, 2048);
    let p = cma_alloc(&mut area, &mut z, &mut NoMigrator, 10, 0).unwrap();
    let free = z.counters();
    z.enable_pasr(
        PasrSpans::new(BASE, 1024, 4).unwrap(),
        PasrMode::Baseline2012,
    )
    .unwrap();
    assert_eq!(z.held_pageblocks(), 0);
    assert_eq!(z.counters(), free);
    ok(&z);
    assert!(cma_release(&mut area, &mut z, p, 10));
    ok(&z);

    let mut s2 = Storage::new(BASE, 4096);
    let mut z2 = s2.zone();
    z2.free_range(BASE..BASE + 4096).unwrap();
    z2.enable_pasr(
        PasrSpans::new(BASE, 1024, 4).unwrap(),
        PasrMode::Baseline2012,
    )
    .unwrap();
    let mut area2 = cma_init_reserved_mem(BASE + 2048, 2048, 0, "cma").unwrap();
    cma_activate_area(&mut area2, &mut z2).unwrap();
    assert_eq!(z2.held_pageblocks(), 0);
    assert_eq!(z2.nr_free_blocks(MAX_ORDER, MigrateType::Cma), 2);
    ok(&z2);
}

#[test]
fn releasing_frames_the_area_never_handed_out_is_refused_in_held_memory_too() {
    let mut s = Storage::new(BASE, 4096);
    let (mut z, mut area) = zone_with_area(&mut s, 4096, 2048);
    let p = cma_alloc(&mut area, &mut z, &mut NoMigrator, 4, 0).unwrap();
    assert!(
        !cma_release(&mut area, &mut z, p + 4, 4),
        "held, never handed out"
    );
    assert!(crate::mm::contig::free_contig_range(&mut z, p + 4, 1).is_err());
    assert!(cma_release(&mut area, &mut z, p, 4));
    assert!(!cma_release(&mut area, &mut z, p, 4), "released twice");
    assert_eq!(z.held_free_pages(), 2048);
    ok(&z);
}
