//! Unit tests for the zone, isolation, alloc_contig_range, CMA and reports.
#![forbid(unsafe_code)]

use super::testutil::{FakeOwners, Storage};
use super::vmstat::{
    buddyinfo_string, meminfo_string, pagetypeinfo_string, zoneinfo_string, MemInfo,
};
use super::*;

const BASE: Pfn = 0x40000;
const MAX_BLOCK: usize = 1 << MAX_ORDER;

fn ok(zone: &Zone<'_>) {
    if let Err(e) = zone.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

#[test]
fn constants_match_arm64_linux() {
    assert_eq!(PAGE_SIZE, 4096);
    assert_eq!(NR_PAGE_ORDERS, 11);
    assert_eq!(pageblock_nr_pages(), 512);
    assert_eq!(pageblock_start_pfn(BASE + 700), BASE + 512);
    assert_eq!(pageblock_end_pfn(BASE + 700), BASE + 1024);
}

#[test]
fn metadata_size_counts_partial_pageblocks() {
    let m = zone_metadata_size(BASE + 100, 1000);
    assert_eq!(m.pages, 1000);
    assert_eq!(m.pageblocks, 3); // 100..612 spans blocks 0 and 1, up to 1100 spans block 2
    assert_eq!(m.page_bytes, 1000 * core::mem::size_of::<Page>());
    assert_eq!(m.total_bytes(), m.page_bytes + 3);
    assert_eq!(zone_metadata_size(0, 0).pageblocks, 0);
}

#[test]
fn zone_refuses_short_pageblock_metadata() {
    let mut pages = vec![Page::HOLE; 2048];
    let mut blocks = vec![0u8; 3];
    assert_eq!(
        Zone::new(BASE, &mut pages, &mut blocks).err(),
        Some(MmError::MetadataTooSmall { needed: 4, got: 3 })
    );
}

#[test]
fn free_range_builds_max_order_blocks_and_counts() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    assert_eq!(z.free_range(BASE..BASE + 4096), Ok(4096));
    ok(&z);
    let c = z.counters();
    assert_eq!(c.nr_free[MAX_ORDER], 4);
    assert_eq!(c.free_pages, 4096);
    assert_eq!(c.managed_pages, 4096);
    assert_eq!(c.present_pages, 4096);
    assert_eq!(
        z.free_range(BASE..BASE + 1),
        Err(MmError::AlreadyManaged { pfn: BASE })
    );
    assert_eq!(
        z.free_range(BASE + 4000..BASE + 5000),
        Err(MmError::OutOfZone { pfn: BASE + 4999 })
    );
}

#[test]
fn holes_and_reserved_frames_are_never_handed_out() {
    // Two banks with a hole in between, and a reserved firmware image in bank 0.
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 1500).unwrap();
    z.free_range(BASE + 2600..BASE + 4096).unwrap();
    assert_eq!(z.reserve_range(BASE + 10..BASE + 20), Ok(10));
    ok(&z);
    let mut got = Vec::new();
    while let Ok(pfn) = z.alloc_pages(0, Gfp::KERNEL) {
        got.push(pfn);
    }
    ok(&z);
    assert_eq!(got.len(), 1500 + 1496 - 10);
    assert!(
        got.iter()
            .all(|&p| !(BASE + 1500..BASE + 2600).contains(&p)
                && !(BASE + 10..BASE + 20).contains(&p))
    );
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "a frame was handed out twice");
    for p in got {
        z.free_pages(p, 0).unwrap();
    }
    ok(&z);
    assert_eq!(z.counters().free_pages, 1500 + 1496 - 10);
}

#[test]
fn alloc_free_round_trip_restores_the_free_areas() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let before = buddyinfo_string(&z);
    let mut held = Vec::new();
    for order in [0, 3, 0, 10, 5, 1, 9, 0] {
        held.push((z.alloc_pages(order, Gfp::MOVABLE).unwrap(), order));
        ok(&z);
    }
    for (pfn, order) in &held {
        assert_eq!(pfn % (1 << order), 0, "block not naturally aligned");
    }
    for (pfn, order) in held.into_iter().rev() {
        z.free_pages(pfn, order).unwrap();
        ok(&z);
    }
    assert_eq!(buddyinfo_string(&z), before);
}

#[test]
fn bad_frees_are_refused_without_damage() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let p = z.alloc_pages(2, Gfp::KERNEL).unwrap();
    assert_eq!(
        z.free_pages(p, 1),
        Err(MmError::OrderMismatch {
            pfn: p,
            allocated: 2,
            freed: 1
        })
    );
    assert_eq!(
        z.free_pages(p + 1, 0),
        Err(MmError::NotAllocated { pfn: p + 1 })
    );
    assert_eq!(
        z.free_pages(BASE - 1, 0),
        Err(MmError::OutOfZone { pfn: BASE - 1 })
    );
    assert_eq!(
        z.free_pages(p, 11),
        Err(MmError::InvalidOrder { order: 11 })
    );
    z.free_pages(p, 2).unwrap();
    assert_eq!(z.free_pages(p, 2), Err(MmError::NotAllocated { pfn: p }));
    ok(&z);
    assert_eq!(
        z.alloc_pages(11, Gfp::KERNEL),
        Err(AllocError::InvalidOrder)
    );
    let cma = Gfp {
        migratetype: MigrateType::Cma,
        flags: GfpFlags::NONE,
    };
    assert_eq!(z.alloc_pages(0, cma), Err(AllocError::InvalidMigratetype));
}

#[test]
fn watermark_min_holds_back_pages_except_for_memalloc() {
    let mut s = Storage::new(BASE, 1024);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 1024).unwrap();
    z.set_watermarks(Watermarks::from_min(100));
    let mut n = 0;
    while z.alloc_pages(0, Gfp::KERNEL).is_ok() {
        n += 1;
    }
    assert_eq!(n, 1024 - 100);
    assert_eq!(z.alloc_pages(0, Gfp::KERNEL), Err(AllocError::Watermark));
    assert!(z
        .alloc_pages(0, Gfp::KERNEL.with(GfpFlags::MEMALLOC))
        .is_ok());
    assert_eq!(z.counters().free_pages, 99);
    ok(&z);
}

#[test]
fn unmovable_request_claims_a_whole_movable_pageblock() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let p = z.alloc_pages(0, Gfp::KERNEL).unwrap();
    ok(&z);
    // The largest block was stolen; being >= pageblock order, all its pageblocks flip.
    assert_eq!(z.pageblock_migratetype(p), Some(MigrateType::Unmovable));
    let c = z.counters();
    assert!(c.free_by_migratetype[MigrateType::Unmovable.index()] >= 1023);
    // A second unmovable request is served from the claimed block, not by stealing again.
    let q = z.alloc_pages(0, Gfp::KERNEL).unwrap();
    assert_eq!(
        pageblock_start_pfn(q) & !(MAX_BLOCK - 1),
        pageblock_start_pfn(p) & !(MAX_BLOCK - 1)
    );
    assert_eq!(z.pageblock_counts()[MigrateType::Movable.index()], 2);
}

#[test]
fn movable_steal_claims_the_pageblock_only_past_half() {
    let mut s = Storage::new(BASE, 512);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 512).unwrap();
    z.set_pageblock_migratetype(BASE, MigrateType::Unmovable)
        .unwrap();
    ok(&z);
    let mut kernel: Vec<_> = (0..300)
        .map(|_| z.alloc_pages(0, Gfp::KERNEL).unwrap())
        .collect();
    // 212 free pages: less than half the block, so the movable request takes a page
    // without claiming the block.
    let m = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    ok(&z);
    assert_eq!(z.pageblock_migratetype(BASE), Some(MigrateType::Unmovable));
    assert_eq!(z.page(m).unwrap().migratetype(), MigrateType::Movable);
    assert_eq!(
        z.counters().free_by_migratetype[MigrateType::Movable.index()],
        0
    );
    // Free 100 more: 311 free + 1 movable >= 256, so the next movable request claims it.
    for p in kernel.drain(..100) {
        z.free_pages(p, 0).unwrap();
    }
    z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    ok(&z);
    assert_eq!(z.pageblock_migratetype(BASE), Some(MigrateType::Movable));
    assert_eq!(
        z.counters().free_by_migratetype[MigrateType::Unmovable.index()],
        0
    );
}

#[test]
fn cma_pageblocks_only_serve_movable_and_never_merge_with_others() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 512, 512, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    ok(&z);
    let c = z.counters();
    assert_eq!(c.cma_pages, 512);
    assert_eq!(c.free_cma_pages, 512);
    // The Movable block at BASE is order 9 now: its buddy is CMA, so no order-10 merge.
    assert_eq!(z.nr_free_blocks(9, MigrateType::Movable), 1);
    assert_eq!(z.nr_free_blocks(9, MigrateType::Cma), 1);
    assert_eq!(z.nr_free_blocks(10, MigrateType::Movable), 1);
    // Drain everything unmovable: never a CMA frame.
    let mut kernel = Vec::new();
    while let Ok(p) = z.alloc_pages(0, Gfp::KERNEL) {
        assert!(
            !area.contains(p),
            "unmovable allocation landed in CMA at {p:#x}"
        );
        kernel.push(p);
    }
    assert_eq!(kernel.len(), 1536);
    assert_eq!(z.pageblock_migratetype(BASE + 512), Some(MigrateType::Cma));
    // Movable may use CMA.
    let m = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    assert!(area.contains(m));
    ok(&z);
    assert_eq!(
        z.set_owner(m, Owner::new(OwnerKind::Pinned, 1)),
        Err(MmError::PinInCma { pfn: m })
    );
    z.set_owner(m, Owner::new(OwnerKind::Anon, 1)).unwrap();
    assert_eq!(z.owner(m), Some(Owner::new(OwnerKind::Anon, 1)));
}

#[test]
fn cma_balance_decides_when_movable_prefers_cma() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 1024, 1024, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    // Free CMA (1024) is exactly half of free (2048): not more than half, so own lists first.
    assert!(!area.contains(z.alloc_pages(0, Gfp::MOVABLE).unwrap()));
    // Now CMA holds more than half of what is free: CMA first.
    assert!(area.contains(z.alloc_pages(0, Gfp::MOVABLE).unwrap()));
    // Raspberry Pi's 12/16 needs a bigger CMA share: own lists again.
    z.set_cma_balance(CmaBalance::RASPBERRY_PI);
    assert!(!area.contains(z.alloc_pages(0, Gfp::MOVABLE).unwrap()));
    // NO_CMA never touches CMA even when it is the only memory with room.
    z.set_cma_balance(CmaBalance::NEVER);
    assert!(!area.contains(
        z.alloc_pages(0, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
            .unwrap()
    ));
    assert_eq!(CmaBalance::new(3, 2), None);
    assert_eq!(CmaBalance::new(1, 0), None);
    ok(&z);
}

#[test]
fn isolated_pageblocks_keep_their_frees_and_hand_nothing_out() {
    let mut s = Storage::new(BASE, 1024);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 1024).unwrap();
    let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    z.set_owner(p, Owner::new(OwnerKind::Anon, 7)).unwrap();
    let block = pageblock_start_pfn(p);
    z.start_isolate_page_range(block, block + 512, MigrateType::Movable)
        .unwrap();
    ok(&z);
    assert_eq!(
        z.counters().free_pages,
        512,
        "isolated free pages are not NR_FREE_PAGES"
    );
    for _ in 0..512 {
        let q = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
        assert_ne!(pageblock_start_pfn(q), block);
    }
    assert_eq!(z.alloc_pages(0, Gfp::MOVABLE), Err(AllocError::NoMemory));
    // A second isolation of the same block is refused.
    assert_eq!(
        z.start_isolate_page_range(block, block + 1, MigrateType::Movable),
        Err(MmError::Busy { pfn: block })
    );
    z.free_pages(p, 0).unwrap();
    assert_eq!(z.nr_free_blocks(9, MigrateType::Isolate), 1);
    assert!(z.test_pages_isolated(block, block + 512));
    z.undo_isolate_page_range(block, block + 512, MigrateType::Movable);
    ok(&z);
    assert_eq!(z.nr_free_blocks(9, MigrateType::Movable), 1);
    assert_eq!(z.counters().free_pages, 512);
}

#[test]
fn isolation_refuses_unmovable_frames_and_restores_types() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let k = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    z.set_owner(k, Owner::new(OwnerKind::Kernel, 1)).unwrap();
    let err = z.start_isolate_page_range(BASE, BASE + 2048, MigrateType::Movable);
    assert_eq!(err, Err(MmError::Busy { pfn: k }));
    ok(&z);
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
    assert_eq!(z.has_unmovable_pages(BASE, BASE + 2048), Some(k));
}

#[test]
fn alloc_contig_range_migrates_reclaims_and_preserves_data() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 2048, 2048, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap()); // always CMA first: fill the area
    let mut owners = FakeOwners::default();
    let mut ids = 0;
    for order in [0, 0, 3, 1, 0, 2, 5] {
        for _ in 0..6 {
            let p = z.alloc_pages(order, Gfp::MOVABLE).unwrap();
            ids += 1;
            let kind = if ids % 3 == 0 {
                OwnerKind::PageCache
            } else {
                OwnerKind::Anon
            };
            z.set_owner(p, Owner::new(kind, ids)).unwrap();
            owners.populate(ids, p, order, ids * 1000);
            if ids % 6 == 0 {
                owners.clean.insert(ids);
            }
        }
    }
    assert!(owners.objects.values().all(|o| area.contains(o.0)));
    ok(&z);
    owners.again = 3; // a few transient failures along the way
    alloc_contig_range(
        &mut z,
        &mut owners,
        BASE + 2048,
        BASE + 4096,
        MigrateType::Cma,
    )
    .unwrap();
    ok(&z);
    owners.verify().unwrap();
    assert!(owners.reclaims > 0 && owners.migrations > 0);
    let call = z.owner(BASE + 2048).unwrap();
    assert_eq!(call.kind(), OwnerKind::Contig);
    for p in BASE + 2048..BASE + 4096 {
        assert_eq!(z.owner(p), Some(call), "one owner for the whole range");
        assert!(
            !owners.memory.contains_key(&p),
            "an object still lives in the range at {p:#x}"
        );
    }
    // Migration targets prefer non-CMA memory.
    assert!(owners.objects.values().all(|o| o.0 < BASE + 2048));
    assert_eq!(z.pageblock_counts()[MigrateType::Cma.index()], 4);
    free_contig_range(&mut z, BASE + 2048, 2048).unwrap();
    assert_eq!(z.counters().free_cma_pages, 2048);
    ok(&z);
    assert_eq!(
        free_contig_range(&mut z, BASE + 2048, 1),
        Err(MmError::NotAllocated { pfn: BASE + 2048 })
    );
}

#[test]
fn alloc_contig_range_fails_cleanly() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut owners = FakeOwners::default();
    let a = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    z.set_owner(a, Owner::new(OwnerKind::Anon, 1)).unwrap();
    owners.populate(1, a, 0, 5);
    let free_before = z.counters().free_pages;
    // Transient failures forever: give up after the bounded number of passes.
    owners.again = usize::MAX;
    let r = alloc_contig_range(&mut z, &mut owners, a, a + 16, MigrateType::Movable);
    assert_eq!(r, Err(ContigError::GaveUp { pfn: a }));
    ok(&z);
    assert_eq!(z.counters().free_pages, free_before);
    assert_eq!(z.pageblock_counts()[MigrateType::Isolate.index()], 0);
    // Permanent refusal.
    owners.again = 0;
    owners.busy.insert(1);
    assert_eq!(
        alloc_contig_range(&mut z, &mut owners, a, a + 16, MigrateType::Movable),
        Err(ContigError::Busy { pfn: a })
    );
    ok(&z);
    owners.verify().unwrap();
    // Holes, bad types and bad ranges are errors, not panics.
    assert!(matches!(
        alloc_contig_range(&mut z, &mut owners, a + 5, a + 5, MigrateType::Movable),
        Err(ContigError::Invalid(_))
    ));
    assert!(matches!(
        alloc_contig_range(&mut z, &mut owners, a, a + 5, MigrateType::Unmovable),
        Err(ContigError::Invalid(_))
    ));
    assert!(matches!(
        alloc_contig_range(&mut z, &mut owners, BASE, BASE + 4096, MigrateType::Movable),
        Err(ContigError::Invalid(_))
    ));
    assert_eq!(z.counters().free_pages, free_before);
    // And once the owner lets go, the same range succeeds.
    owners.busy.clear();
    alloc_contig_range(&mut z, &mut owners, a, a + 16, MigrateType::Movable).unwrap();
    ok(&z);
    owners.verify().unwrap();
}

#[test]
fn cma_alloc_release_and_stats() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 1024, 2048, 1, "reserved").unwrap();
    let mut owners = FakeOwners::default();
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 4, 0),
        Err(CmaError::NotActive)
    );
    cma_activate_area(&mut area, &mut z).unwrap();
    assert_eq!(
        cma_activate_area(&mut area, &mut z),
        Err(CmaError::AlreadyActive)
    );
    let p = cma_alloc(&mut area, &mut z, &mut owners, 5, 0).unwrap();
    assert_eq!(p, BASE + 1024);
    let q = cma_alloc(&mut area, &mut z, &mut owners, 64, 6).unwrap();
    assert_eq!(q % 64, 0);
    assert!(q >= p + 6);
    ok(&z);
    let st = area.state();
    assert_eq!(st.used, 6 + 64);
    assert_eq!(st.stats.alloc_pages_success, 69);
    // A kernel allocation pinned inside? Impossible: Cma only serves Movable. Pin via owner:
    assert!(
        !cma_release(&mut area, &mut z, p + 6, 1),
        "never handed out"
    );
    assert!(!cma_release(&mut area, &mut z, BASE, 1), "outside the area");
    assert!(!cma_release(&mut area, &mut z, p, 0));
    assert!(cma_release(&mut area, &mut z, p, 5));
    assert!(!cma_release(&mut area, &mut z, p, 5), "double release");
    assert!(cma_release(&mut area, &mut z, q, 64));
    ok(&z);
    assert_eq!(area.used_pages(), 0);
    assert_eq!(area.maxchunk_pages(), 2048);
    assert_eq!(area.stats.release_pages_success, 69);
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 4096, 0),
        Err(CmaError::NoSpace)
    );
    assert_eq!(area.stats.alloc_pages_fail, 4 + 4096); // the NotActive attempt counts too
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 0, 0),
        Err(CmaError::ZeroCount)
    );
    assert_eq!(z.counters().free_cma_pages, 2048);
}

#[test]
fn cma_alloc_skips_busy_ranges() {
    let mut s = Storage::new(BASE, 2048);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut area = cma_init_reserved_mem(BASE, 1024, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    z.set_cma_balance(CmaBalance::new(0, 1).unwrap());
    let mut owners = FakeOwners::default();
    // A movable page in CMA whose owner refuses to move.
    let stuck = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    assert!(area.contains(stuck));
    z.set_owner(stuck, Owner::new(OwnerKind::Anon, 9)).unwrap();
    owners.populate(9, stuck, 0, 1);
    owners.busy.insert(9);
    let p = cma_alloc(&mut area, &mut z, &mut owners, 256, 8).unwrap();
    assert!(!(p..p + 256).contains(&stuck));
    assert_eq!(p % 256, 0);
    ok(&z);
    owners.verify().unwrap();
    // Everything else is free: the whole area minus the stuck run cannot be had.
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 1024, 0),
        Err(CmaError::NoSpace)
    );
}

/// A 2048-page zone whose upper half is a CMA area full of order-0 anonymous pages (ids
/// from 1) and whose lower half is all kernel data (it never lands in CMA): nothing free.
fn cma_full_of_anon_nothing_free(s: &mut Storage) -> (Zone<'_>, CmaArea, FakeOwners) {
    let mut z = s.zone();
    z.free_range(BASE..BASE + 2048).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 1024, 1024, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    while z.alloc_pages(0, Gfp::KERNEL).is_ok() {}
    let mut owners = FakeOwners::default();
    let mut id = 0;
    while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
        assert!(area.contains(p));
        id += 1;
        z.set_owner(p, Owner::new(OwnerKind::Anon, id)).unwrap();
        owners.populate(id, p, 0, id);
    }
    (z, area, owners)
}

/// A window whose movable pages have nowhere to go (`NoMemory`) says nothing about the
/// next window: one that needs no migration targets at all must still be tried.
#[test]
fn cma_alloc_tries_the_next_window_after_one_short_of_memory() {
    let mut s = Storage::new(BASE, 2048);
    let (mut z, mut area, mut owners) = cma_full_of_anon_nothing_free(&mut s);
    // Then the second quarter of the area freed again.
    let hole = BASE + 1024 + 256..BASE + 1024 + 512;
    let in_hole: Vec<u64> = owners
        .objects
        .iter()
        .filter(|(_, o)| hole.contains(&o.0))
        .map(|(&id, _)| id)
        .collect();
    assert_eq!(in_hole.len(), 256);
    for id in in_hole {
        let (pfn, order, _) = owners.forget(id).unwrap();
        z.free_pages(pfn, order).unwrap();
    }
    let objects_before = owners.objects.clone();
    // First fit tries the area's first 256 pages first: 256 anonymous pages and not one
    // free frame outside their pageblock. The next aligned window is the free hole.
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 256, 8),
        Ok(hole.start)
    );
    assert_eq!(owners.migrations, 0, "nothing could move, nothing did");
    assert_eq!(owners.objects, objects_before);
    owners.verify().unwrap();
    ok(&z);
    // With the hole taken, every window is short of memory: that failure is NoMemory.
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 256, 8),
        Err(CmaError::NoMemory)
    );
    owners.verify().unwrap();
    ok(&z);
}

/// A window that failed still dropped the clean cache it met; the memory that freed can be
/// what an earlier window was short of, so the candidates are tried again.
#[test]
fn cma_alloc_tries_again_after_failed_windows_freed_memory() {
    let mut s = Storage::new(BASE, 2048);
    let (mut z, mut area, mut owners) = cma_full_of_anon_nothing_free(&mut s);
    // First pageblock: 256 anonymous pages, 256 free frames. Second: 256 clean cache pages,
    // then 256 anonymous pages whose owner will not let them move.
    let (pb0, pb1) = (BASE + 1024, BASE + 1536);
    let all: Vec<(u64, Pfn)> = owners.objects.iter().map(|(&i, o)| (i, o.0)).collect();
    for (i, pfn) in all {
        if (pb0 + 256..pb1).contains(&pfn) {
            owners.forget(i);
            z.free_pages(pfn, 0).unwrap();
        } else if (pb1..pb1 + 256).contains(&pfn) {
            z.set_owner(pfn, Owner::new(OwnerKind::PageCache, i))
                .unwrap();
            owners.clean.insert(i);
        } else if pfn >= pb1 + 256 {
            owners.busy.insert(i);
        }
    }
    // The first window has 256 pages to move and no free frame outside its pageblock; the
    // second drops its cache, then meets the pinned pages. With the cache gone, the first
    // window's pages fit: the second pass takes it.
    assert_eq!(cma_alloc(&mut area, &mut z, &mut owners, 512, 9), Ok(pb0));
    assert_eq!(owners.reclaims, 256);
    assert_eq!(owners.migrations, 256);
    assert!(owners
        .objects
        .values()
        .all(|o| (pb1 + 256..BASE + 2048).contains(&o.0) || (pb1..pb1 + 256).contains(&o.0)));
    owners.verify().unwrap();
    ok(&z);
}

#[test]
fn reports_use_linux_layouts() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 2048, 1024, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    let p = z.alloc_pages(0, Gfp::KERNEL).unwrap();
    let b = buddyinfo_string(&z);
    assert_eq!(
        b,
        "Node 0, zone   Normal      1      1      1      1      1      1      1      1      1      1      3 \n"
    );
    let t = pagetypeinfo_string(&z);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0], "Page block order: 9");
    assert_eq!(lines[1], "Pages per block:  512");
    assert_eq!(lines[2], "");
    assert_eq!(
        lines[3],
        "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 "
    );
    assert_eq!(
        lines[4],
        "Node    0, zone   Normal, type    Unmovable      1      1      1      1      1      1      1      1      1      1      0 "
    );
    assert_eq!(
        lines[8],
        "Node    0, zone   Normal, type          CMA      0      0      0      0      0      0      0      0      0      0      1 "
    );
    assert_eq!(lines[10], "");
    assert_eq!(
        lines[11],
        "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate "
    );
    assert_eq!(
        lines[12],
        "Node 0, zone   Normal            2            4            0            0            2            0 "
    );
    let m = meminfo_string(&z);
    assert_eq!(
        m,
        "MemTotal:          16384 kB\nMemFree:           16380 kB\nMemAvailable:      16380 kB\nCmaTotal:           4096 kB\nCmaFree:            4096 kB\n"
    );
    let _ = p;
}

#[test]
fn zoneinfo_uses_linux_layout_and_counts_the_pcp_apart() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 2048, 1024, 0, "cma").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    z.set_watermarks(Watermarks::from_min(16));
    z.enable_pcp(PcpLimits { batch: 7, high: 64 });
    // One page out and back: the refill's other six frames and the freed one wait on the
    // pcp, and the buddy's count is short by those seven.
    let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    z.free_pages(p, 0).unwrap();
    assert_eq!(z.pcp_counters().count, 7);
    assert_eq!(
        zoneinfo_string(&z),
        "Node 0, zone   Normal\n  pages free     4089\n        boost    0\n        min      16\n        low      20\n        high     24\n        spanned  4096\n        present  4096\n        managed  4096\n        cma      1024\n        protection: (0)\n      nr_free_pages 4089\n      nr_free_cma  1024\n  pagesets\n    cpu: 0\n              count: 7\n              high:  64\n              batch: 7\n  vm stats threshold: 0\n  node_unreclaimable:  0\n  start_pfn:           262144\n"
    );
    // MemFree counts the pcp's frames: nothing is lost between the two reports.
    assert_eq!(MemInfo::of(&z).mem_free, 4096 * 4);
}

#[test]
fn cma_fit_policies_place_small_requests_differently() {
    let mut s = Storage::new(BASE, 4096);
    let mut z = s.zone();
    z.free_range(BASE..BASE + 4096).unwrap();
    let mut area = cma_init_reserved_mem(BASE + 1024, 1024, 0, "fit").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    assert_eq!(area.fit(), CmaFit::FirstFit, "the measured default");
    let mut owners = FakeOwners::default();
    // Holes [area, area+512) and [area+520, area+528), walls at +512 and +528.
    let big = cma_alloc(&mut area, &mut z, &mut owners, 512, 0).unwrap();
    let wall = cma_alloc(&mut area, &mut z, &mut owners, 8, 0).unwrap();
    let small_hole = cma_alloc(&mut area, &mut z, &mut owners, 8, 0).unwrap();
    let rest = cma_alloc(&mut area, &mut z, &mut owners, 1024 - 528, 0).unwrap();
    assert!(cma_release(&mut area, &mut z, big, 512));
    assert!(cma_release(&mut area, &mut z, small_hole, 8));
    assert_eq!((wall, rest), (BASE + 1024 + 512, BASE + 1024 + 528));

    let mut first_fit = area.clone();
    area.set_fit(CmaFit::BestFit);
    // Best fit puts 8 pages in the 8-page hole and keeps the 512-page hole whole.
    let p = cma_alloc(&mut area, &mut z, &mut owners, 8, 0).unwrap();
    assert_eq!(p, small_hole);
    assert_eq!(area.maxchunk_pages(), 512);
    assert_eq!(area.state().fit, CmaFit::BestFit);
    // A request the small hole cannot hold goes to the big one.
    let q = cma_alloc(&mut area, &mut z, &mut owners, 16, 0).unwrap();
    assert_eq!(q, BASE + 1024);
    assert!(cma_release(&mut area, &mut z, p, 8));
    assert!(cma_release(&mut area, &mut z, q, 16));
    ok(&z);
    // First fit on the same bitmap carves the big hole.
    let r = cma_alloc(&mut first_fit, &mut z, &mut owners, 8, 0).unwrap();
    assert_eq!(r, BASE + 1024);
    assert_eq!(first_fit.maxchunk_pages(), 512 - 8);
    ok(&z);
}
