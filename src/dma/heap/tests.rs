//! Host tests of the heaps over a real mm zone built from the test tree's plan.

use super::testsource::MmPages;
use super::*;
use crate::dma::device::tests::{test_blob, test_plan};
use crate::dt::tree::DeviceTree;
use crate::mm::{MigrateType, OwnerKind};
use alloc::vec;

const RAM: core::ops::Range<u64> = 0x4000_0000..0x8000_0000;

fn setup() -> (Heaps, MmPages) {
    let blob = test_blob();
    let tree = DeviceTree::from_blob(&blob).unwrap();
    let plan = test_plan(&tree);
    let pages = MmPages::new(&plan, RAM);
    let active: Vec<String> = pages.areas.iter().map(|a| String::from(a.name())).collect();
    let total = pages.zone.counters().managed_pages;
    (Heaps::new(&plan, &active, total), pages)
}

#[test]
fn heap_names_are_linuxs() {
    let (heaps, _) = setup();
    assert_eq!(
        heaps.names(),
        vec![
            "system",
            "default_cma_region",
            "linux,cma@50000000",
            "video@52000000",
            "framebuffer@53000000"
        ]
    );
}

#[test]
fn an_inactive_area_gets_no_heap() {
    let blob = test_blob();
    let tree = DeviceTree::from_blob(&blob).unwrap();
    let plan = test_plan(&tree);
    let heaps = Heaps::new(&plan, &[String::from("video@52000000")], 1000);
    assert_eq!(
        heaps.names(),
        vec!["system", "video@52000000", "framebuffer@53000000"]
    );
}

#[test]
fn system_buffers_are_scattered_pinned_pages_all_returned() {
    let (mut heaps, mut pages) = setup();
    let free_before = pages.zone.counters().free_pages;
    let a = heaps.allocate("system", 10 * 4096 + 1, &mut pages).unwrap();
    assert_eq!(a.segments.len(), 11, "one segment per page");
    assert!(a.segments.iter().all(|s| s.pages == 1));
    assert_eq!(a.contiguous(), None);
    assert!(a.cpu_mapped);
    for s in &a.segments {
        assert_eq!(
            pages.zone.owner(s.pfn).map(|o| o.kind()),
            Some(OwnerKind::Pinned)
        );
        assert_ne!(
            pages.zone.pageblock_migratetype(s.pfn),
            Some(MigrateType::Cma)
        );
    }
    assert_eq!(pages.zone.counters().free_pages, free_before - 11);
    heaps.free(&a, &mut pages).unwrap();
    assert_eq!(pages.zone.counters().free_pages, free_before);
    pages.zone.check_invariants().unwrap();
}

#[test]
fn a_failed_system_allocation_gives_back_what_it_took() {
    let (mut heaps, mut pages) = setup();
    let free_before = pages.zone.counters().free_pages;
    pages.fail_after = Some(5);
    let err = heaps.allocate("system", 8 * 4096, &mut pages).unwrap_err();
    assert!(matches!(err, HeapError::Pages { .. }), "{err}");
    assert_eq!(
        pages.zone.counters().free_pages,
        free_before,
        "no page leaked"
    );
}

#[test]
fn cma_heaps_take_one_aligned_run_from_their_area_and_release_it() {
    let (mut heaps, mut pages) = setup();
    let a = heaps
        .allocate("default_cma_region", 64 * 1024, &mut pages)
        .unwrap();
    let (phys, len) = a.contiguous().unwrap();
    assert_eq!(len, 64 * 1024);
    assert!(
        (0x5000_0000..0x5100_0000).contains(&phys),
        "from the default area: {phys:#x}"
    );
    assert_eq!(phys % (64 * 1024), 0, "aligned to get_order(len)");
    assert_eq!(pages.area("linux,cma@50000000").used_pages(), 16);
    let b = heaps
        .allocate("video@52000000", 3 << 20, &mut pages)
        .unwrap();
    assert!((0x5200_0000..0x5240_0000).contains(&b.segments[0].phys()));
    assert_eq!(
        b.segments[0].phys() % (1 << 20),
        0,
        "alignment capped at order 8 (1 MiB)"
    );
    assert_eq!(pages.area("video@52000000").used_pages(), 768);
    heaps.free(&a, &mut pages).unwrap();
    heaps.free(&b, &mut pages).unwrap();
    assert_eq!(pages.area("linux,cma@50000000").used_pages(), 0);
    assert_eq!(pages.area("video@52000000").used_pages(), 0);
    assert!(matches!(
        heaps.allocate("video@52000000", 5 << 20, &mut pages),
        Err(HeapError::TooLarge { .. })
    ));
    pages.zone.check_invariants().unwrap();
}

#[test]
fn carveout_heap_is_first_fit_not_cpu_mapped_and_refuses_foreign_frees() {
    let (mut heaps, mut pages) = setup();
    let a = heaps
        .allocate("framebuffer@53000000", 512 * 1024, &mut pages)
        .unwrap();
    assert_eq!(a.contiguous(), Some((0x5300_0000, 512 * 1024)));
    assert!(!a.cpu_mapped);
    let b = heaps
        .allocate("framebuffer@53000000", 512 * 1024, &mut pages)
        .unwrap();
    assert_eq!(b.segments[0].phys(), 0x5308_0000);
    assert!(matches!(
        heaps.allocate("framebuffer@53000000", 4096, &mut pages),
        Err(HeapError::CarveoutFull { .. })
    ));
    heaps.free(&a, &mut pages).unwrap();
    assert!(
        matches!(
            heaps.free(&a, &mut pages),
            Err(HeapError::NotAllocated { .. })
        ),
        "double free"
    );
    let c = heaps
        .allocate("framebuffer@53000000", 4096, &mut pages)
        .unwrap();
    assert_eq!(c.segments[0].phys(), 0x5300_0000, "first gap");
}

#[test]
fn bad_requests_get_typed_errors() {
    let (mut heaps, mut pages) = setup();
    assert_eq!(
        heaps.allocate("nope", 4096, &mut pages),
        Err(HeapError::NoSuchHeap("nope".into()))
    );
    assert_eq!(
        heaps.allocate("system", 0, &mut pages),
        Err(HeapError::ZeroSize)
    );
    assert!(matches!(
        heaps.allocate("system", 4 << 30, &mut pages),
        Err(HeapError::TooLarge { .. })
    ));
    assert!(matches!(
        heaps.allocate("system", u64::MAX, &mut pages),
        Err(HeapError::TooLarge { .. })
    ));
}

#[test]
fn movable_buffers_move_to_make_room_and_report_it_at_their_next_pin() {
    let (mut heaps, mut pages) = setup();
    let heap = "video@52000000";
    let area_pages = pages.area(heap).count();
    let used_before = pages.area(heap).used_pages();
    // Fill the area with 64-page movable buffers, then give every other one back: half the
    // area is free, in 64-page holes.
    let mut bufs = Vec::new();
    while let Ok(a) = heaps.allocate_movable(heap, 64 * 4096, &mut pages) {
        assert!(a.is_movable());
        bufs.push(a);
    }
    assert_eq!(bufs.len(), area_pages / 64);
    let mut kept = Vec::new();
    for (n, a) in bufs.into_iter().enumerate() {
        if n % 2 == 0 {
            kept.push(a);
        } else {
            heaps.free(&a, &mut pages).unwrap();
        }
    }
    // One stays pinned, as a device streaming into it would hold it.
    assert!(!kept[0].pin(&mut pages).unwrap(), "nothing has moved yet");
    let pinned_at = kept[0].segments.clone();

    let big = heaps
        .allocate(heap, (area_pages as u64 / 4) * 4096, &mut pages)
        .expect("defragmentation makes room");
    let (big_phys, big_len) = big.contiguous().unwrap();
    assert!(pages.copier.chunk_moves > 0);
    let mut moved = 0;
    for a in kept.iter_mut().skip(1) {
        let was = a.segments.clone();
        let this_moved = a.pin(&mut pages).unwrap();
        a.unpin(&mut pages).unwrap();
        assert_eq!(
            this_moved,
            was != a.segments,
            "a moved buffer's segment follows it"
        );
        moved += usize::from(this_moved);
    }
    for a in &kept {
        let (phys, len) = a.contiguous().unwrap();
        assert!(phys + len <= big_phys || big_phys + big_len <= phys);
    }
    assert_eq!(moved, pages.copier.chunk_moves);
    assert_eq!(kept[0].segments, pinned_at, "a pinned buffer never moves");
    assert!(matches!(
        heaps.free(&kept[0], &mut pages),
        Err(HeapError::Pages { .. })
    ));
    kept[0].unpin(&mut pages).unwrap();
    heaps.free(&big, &mut pages).unwrap();
    for a in &kept {
        heaps.free(a, &mut pages).unwrap();
    }
    assert_eq!(pages.area(heap).used_pages(), used_before);
    assert_eq!(
        heaps.allocate_movable("system", 4096, &mut pages),
        Err(HeapError::NotMovable {
            heap: String::from("system")
        })
    );
}
