//! Unit tests of the pcp (`pcp.rs`): hot reuse, the high mark, the Cma/Isolate rule, drains
//! wherever a range is taken or retyped, and the retry that keeps the pcp from failing an
//! allocation.

use super::super::testutil::Storage;
use super::*;
use crate::mm::{cma_activate_area, cma_alloc, cma_init_reserved_mem, NoMigrator};
use std::vec::Vec;

const BASE: Pfn = 0x40000;

fn ok(z: &Zone<'_>) {
    if let Err(e) = z.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

fn zone_with_pcp(s: &mut Storage, pages: usize, limits: PcpLimits) -> Zone<'_> {
    let mut z = s.zone();
    z.free_range(BASE..BASE + pages).unwrap();
    z.enable_pcp(limits);
    z
}

fn state(z: &Zone<'_>, pfn: Pfn) -> PageState {
    z.page(pfn).unwrap().state()
}

#[test]
fn a_freed_page_waits_on_the_pcp_and_is_the_next_one_handed_out() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = zone_with_pcp(&mut s, 4096, PcpLimits { batch: 8, high: 64 });
    let free_before = z.counters().free_pages;
    let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    // The first allocation refilled a batch: one handed out, the rest on the pcp, out of
    // the buddy's count (what the watermarks see) but still free memory in the reports.
    assert_eq!(z.pcp_pages(), 7);
    assert_eq!(z.free_pages_outside_cma(), free_before - 8);
    assert_eq!(z.counters().free_pages, free_before - 1);
    z.free_pages(p, 0).unwrap();
    assert_eq!(state(&z, p), PageState::Pcp);
    assert_eq!(z.pcp_pages(), 8);
    ok(&z);
    // The memory map shows pcp frames as free, like every report.
    let cell = z
        .pageblock_map()
        .into_iter()
        .find(|c| (c.start_pfn..c.start_pfn + PAGEBLOCK_NR_PAGES).contains(&p))
        .unwrap();
    assert_eq!(
        (cell.free, cell.allocated, cell.unmanaged),
        (PAGEBLOCK_NR_PAGES, 0, 0)
    );
    // A frame on the pcp is not allocated: freeing it again is refused.
    assert_eq!(z.free_pages(p, 0), Err(MmError::NotAllocated { pfn: p }));
    assert_eq!(z.allocated_block(p), None);
    // Hot first: the frame just freed comes back.
    assert_eq!(z.alloc_pages(0, Gfp::MOVABLE), Ok(p));
    assert_eq!(state(&z, p), PageState::Head);
    z.free_pages(p, 0).unwrap();
    let c = z.pcp_counters();
    assert!(c.enabled);
    assert_eq!(
        (
            c.count,
            c.by_type[MigrateType::Movable.index()],
            c.high,
            c.batch
        ),
        (8, 8, 64, 8)
    );
    // Off: everything back in the buddy, merged again.
    z.disable_pcp();
    assert_eq!(z.pcp_pages(), 0);
    assert_eq!(z.counters().free_pages, free_before);
    assert_eq!(z.nr_free_blocks(MAX_ORDER, MigrateType::Movable), 4);
    ok(&z);
}

#[test]
fn past_high_a_free_gives_a_batch_back_to_the_buddy() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = zone_with_pcp(&mut s, 4096, PcpLimits { batch: 8, high: 32 });
    let pages: Vec<Pfn> = (0..100)
        .map(|_| z.alloc_pages(0, Gfp::MOVABLE).unwrap())
        .collect();
    let mut most = 0;
    for &p in &pages {
        z.free_pages(p, 0).unwrap();
        most = most.max(z.pcp_pages());
        assert!(z.pcp_pages() <= 32, "{} on the pcp", z.pcp_pages());
        ok(&z);
    }
    assert!(most > 24, "the pcp never filled: {most}");
    let frames = (BASE..BASE + 4096)
        .filter(|&p| state(&z, p) == PageState::Pcp)
        .count();
    assert_eq!(frames, z.pcp_pages());
    assert_eq!(z.counters().free_pages, 4096);
    assert_eq!(z.free_pages_outside_cma() + z.pcp_pages(), 4096);
}

#[test]
fn cma_and_isolated_pageblocks_never_hold_pcp_frames() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 2048, 2048, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    z.enable_pcp(PcpLimits {
        batch: 4,
        high: 4096,
    });
    // CMA first: Movable order-0 requests go to the buddy (which takes Cma), not the pcp.
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap());
    let in_cma: Vec<Pfn> = (0..16)
        .map(|_| z.alloc_pages(0, Gfp::MOVABLE).unwrap())
        .collect();
    assert!(in_cma.iter().all(|&p| area.contains(p)));
    for &p in &in_cma {
        z.free_pages(p, 0).unwrap();
        assert_ne!(state(&z, p), PageState::Pcp, "Cma frame {p:#x} on the pcp");
    }
    assert_eq!(z.pcp_pages(), 0);
    // Own lists first: the pcp refills from Movable pageblocks only.
    z.set_cma_balance(CmaBalance::NEVER);
    let outside: Vec<Pfn> = (0..64)
        .map(|_| z.alloc_pages(0, Gfp::MOVABLE).unwrap())
        .collect();
    assert!(outside.iter().all(|&p| !area.contains(p)));
    for &p in &outside {
        z.free_pages(p, 0).unwrap();
    }
    let on_pcp = z.pcp_pages();
    assert!(on_pcp >= 64);
    ok(&z);
    // Isolating a pageblock that holds pcp frames gives them back first.
    let pb = pageblock_start_pfn(outside[0]);
    let in_pb = (pb..pb + PAGEBLOCK_NR_PAGES)
        .filter(|&p| state(&z, p) == PageState::Pcp)
        .count();
    assert!(in_pb > 0);
    z.start_isolate_page_range(pb, pb + PAGEBLOCK_NR_PAGES, MigrateType::Movable)
        .unwrap();
    assert!((pb..pb + PAGEBLOCK_NR_PAGES).all(|p| state(&z, p) != PageState::Pcp));
    assert_eq!(z.pcp_pages(), on_pcp - in_pb);
    ok(&z);
    // A frame freed into the isolated pageblock goes to the buddy too.
    z.undo_isolate_page_range(pb, pb + PAGEBLOCK_NR_PAGES, MigrateType::Movable);
    ok(&z);
    // A CMA allocation never needs the pcp drained: nothing of it is in the area.
    let before = z.pcp_pages();
    let got = cma_alloc(&mut area, &mut z, &mut NoMigrator, 1024, 0).unwrap();
    assert!(area.contains(got));
    assert_eq!(z.pcp_pages(), before);
    ok(&z);
}

#[test]
fn a_request_the_buddy_cannot_serve_drains_the_pcp_and_succeeds() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = zone_with_pcp(
        &mut s,
        2048,
        PcpLimits {
            batch: 16,
            high: 2048,
        },
    );
    let all: Vec<Pfn> = core::iter::from_fn(|| z.alloc_pages(0, Gfp::MOVABLE).ok()).collect();
    assert_eq!(all.len(), 2048);
    assert_eq!(z.counters().free_pages, 0);
    // Free an aligned order-3 run and more: all of it lands on the pcp.
    for &p in &all[..64] {
        z.free_pages(p, 0).unwrap();
    }
    assert_eq!(z.pcp_pages(), 64);
    assert_eq!(z.free_pages_outside_cma(), 0);
    assert_eq!(z.counters().free_pages, 64);
    // An order-3 request sees nothing in the buddy; the pcp goes back and merges.
    let big = z.alloc_pages(3, Gfp::MOVABLE).unwrap();
    assert_eq!(z.pcp_pages(), 0);
    assert_eq!(z.counters().free_pages, 56);
    ok(&z);
    // An Unmovable order-0 request finds the Movable list's frames once drained, too.
    for &p in &all[64..72] {
        z.free_pages(p, 0).unwrap();
    }
    z.free_pages(big, 3).unwrap();
    ok(&z);
    assert!(z.alloc_pages(0, Gfp::KERNEL).is_ok());
    ok(&z);
}

#[test]
fn reserving_a_range_takes_its_pcp_frames_too() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = zone_with_pcp(
        &mut s,
        2048,
        PcpLimits {
            batch: 8,
            high: 512,
        },
    );
    let pages: Vec<Pfn> = (0..32)
        .map(|_| z.alloc_pages(0, Gfp::MOVABLE).unwrap())
        .collect();
    for &p in &pages {
        z.free_pages(p, 0).unwrap();
    }
    let lo = *pages.iter().min().unwrap();
    let hi = *pages.iter().max().unwrap() + 1;
    let taken = z.reserve_range(lo..hi).unwrap();
    assert_eq!(taken, hi - lo);
    assert!((lo..hi).all(|p| state(&z, p) == PageState::Reserved));
    let rest: Vec<Pfn> = core::iter::from_fn(|| z.alloc_pages(0, Gfp::MOVABLE).ok()).collect();
    assert_eq!(rest.len(), 2048 - (hi - lo));
    assert!(rest.iter().all(|q| !(lo..hi).contains(q)));
    ok(&z);
}

#[test]
fn linux_sizing_for_a_gigabyte_and_for_tiny_zones() {
    assert_eq!(
        PcpLimits::for_zone(262_144),
        PcpLimits {
            batch: 63,
            high: 2048
        }
    );
    assert_eq!(
        PcpLimits::for_zone(8 * 262_144),
        PcpLimits {
            batch: 63,
            high: 4096
        }
    );
    let tiny = PcpLimits::for_zone(100);
    assert_eq!(tiny.batch, 1);
    assert_eq!(tiny.high, 4);
}
