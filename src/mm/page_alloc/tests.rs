//! Unit tests of the zone: the buddy core, fallback, pageblock retyping, invariants.

use super::super::testutil::{frames, Storage};
use super::pageblock::LISTED_BLOCKS_SCAN_LIMIT;
use super::*;
use std::vec::Vec;

const BASE: Pfn = 0x40000;
const SPAN: usize = 4 * PAGEBLOCK_NR_PAGES;
/// The pageblock under test: the upper half of the zone's first max-order block.
const P: Pfn = BASE + PAGEBLOCK_NR_PAGES;
const P_END: Pfn = P + PAGEBLOCK_NR_PAGES;

fn ok(z: &Zone<'_>) {
    if let Err(e) = z.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

/// Blocks listed on `mt`'s lists at orders up to pageblock order: what decides between
/// the list and the walk in `retype_pageblock`.
fn listed(z: &Zone<'_>, mt: MigrateType) -> usize {
    (0..=PAGEBLOCK_ORDER).map(|o| z.nr_free_blocks(o, mt)).sum()
}

/// Free blocks (head, order, list type) with a head in `[lo, hi)`.
fn free_blocks(z: &Zone<'_>, lo: Pfn, hi: Pfn) -> Vec<(Pfn, usize, MigrateType)> {
    let mut v = Vec::new();
    let mut pfn = lo;
    while pfn < hi {
        let b = z.block_at(pfn);
        if b.state == PageState::Buddy && b.head >= lo {
            v.push((b.head, b.order, z.pg(b.head).migratetype()));
        }
        pfn = b.end().max(pfn + 1);
    }
    v
}

/// Free frames of `[lo, hi)`, each with the list type of the block holding it.
fn free_frames(z: &Zone<'_>, lo: Pfn, hi: Pfn) -> Vec<(Pfn, MigrateType)> {
    (lo..hi)
        .filter_map(|p| {
            let b = z.block_at(p);
            (b.state == PageState::Buddy).then(|| (p, z.pg(b.head).migratetype()))
        })
        .collect()
}

/// Four Movable pageblocks, every frame an allocated order-0 anonymous page except the
/// frames at `p_free` (offsets into P) and `spread` single frames of the last two
/// pageblocks (every other frame, so none of them merge).
fn build<'a>(s: &'a mut Storage, p_free: &[core::ops::Range<usize>], spread: usize) -> Zone<'a> {
    let mut z = s.zone();
    z.free_range(BASE..BASE + SPAN).unwrap();
    let mut all = Vec::new();
    while let Ok(p) = z.alloc_pages(0, Gfp::MOVABLE) {
        z.set_owner(p, Owner::new(OwnerKind::Anon, (p - BASE) as u64 + 1))
            .unwrap();
        all.push(p);
    }
    assert_eq!(all.len(), SPAN);
    for r in p_free {
        for off in r.clone() {
            z.free_pages(P + off, 0).unwrap();
        }
    }
    assert!(spread <= PAGEBLOCK_NR_PAGES);
    for i in 0..spread {
        z.free_pages(BASE + 2 * PAGEBLOCK_NR_PAGES + 2 * i, 0)
            .unwrap();
    }
    ok(&z);
    assert_eq!(z.pageblock_counts()[MigrateType::Movable.index()], 4);
    z
}

/// A few free blocks of several orders, some of them adjacent without being buddies:
/// 4..64 (orders 2, 3, 4, 5), 100..102 (1), 131 (0), 256..512 (8): seven listed
/// blocks, 319 frames.
const SPARSE: [core::ops::Range<usize>; 4] = [4..64, 100..102, 131..132, 256..512];
const SPARSE_BLOCKS: usize = 7;
/// All of P free.
#[allow(clippy::single_range_in_vec_init)]
const WHOLE: [core::ops::Range<usize>; 1] = [0..PAGEBLOCK_NR_PAGES];

/// Retype P to `to` (with `start_isolate_page_range` for Isolate, else
/// `set_pageblock_migratetype`), check that exactly P's free frames moved to `to`'s
/// lists, nothing else changed, then retype back to Movable and check the zone is as
/// before. Returns P's free blocks while retyped.
fn round_trip(z: &mut Zone<'_>, to: MigrateType) -> Vec<(Pfn, usize, MigrateType)> {
    let before = z.counters();
    let frames_before = frames(z);
    let in_p = free_frames(z, P, P_END);
    let outside: Vec<_> = free_frames(z, BASE, P)
        .into_iter()
        .chain(free_frames(z, P_END, BASE + SPAN))
        .collect();
    let n = in_p.len();
    if to == MigrateType::Isolate {
        z.start_isolate_page_range(P, P_END, MigrateType::Movable)
            .unwrap();
    } else {
        z.set_pageblock_migratetype(P, to).unwrap();
    }
    ok(z);
    assert_eq!(z.pageblock_migratetype(P), Some(to));
    let c = z.counters();
    assert_eq!(c.free_by_migratetype[to.index()], n);
    assert_eq!(
        c.free_by_migratetype[MigrateType::Movable.index()],
        before.free_by_migratetype[MigrateType::Movable.index()] - n
    );
    // The same free frames, P's on `to`'s lists, the others where they were.
    let moved: Vec<_> = in_p.iter().map(|&(p, _)| (p, to)).collect();
    assert_eq!(free_frames(z, P, P_END), moved);
    let outside_now: Vec<_> = free_frames(z, BASE, P)
        .into_iter()
        .chain(free_frames(z, P_END, BASE + SPAN))
        .collect();
    assert_eq!(outside_now, outside);
    let retyped = free_blocks(z, P, P_END);
    if to == MigrateType::Isolate {
        z.undo_isolate_page_range(P, P_END, MigrateType::Movable);
    } else {
        z.set_pageblock_migratetype(P, MigrateType::Movable)
            .unwrap();
    }
    ok(z);
    assert_eq!(z.counters(), before);
    assert!(frames(z) == frames_before, "a frame changed");
    retyped
}

#[test]
fn retype_finds_the_same_free_blocks_through_the_lists_and_by_walking() {
    let mut results = Vec::new();
    // Few listed blocks (the lists), exactly the limit (the lists), one more and many
    // more (the walk). Only the other pageblocks differ.
    let at_limit = LISTED_BLOCKS_SCAN_LIMIT - SPARSE_BLOCKS;
    for (spread, through_lists) in [
        (0, true),
        (at_limit, true),
        (at_limit + 1, false),
        (300, false),
    ] {
        let mut s = Storage::new(BASE, SPAN);
        let mut z = build(&mut s, &SPARSE, spread);
        assert_eq!(
            listed(&z, MigrateType::Movable) <= LISTED_BLOCKS_SCAN_LIMIT,
            through_lists,
            "spread {spread}"
        );
        let isolated = round_trip(&mut z, MigrateType::Isolate);
        assert_eq!(
            isolated,
            [
                (P + 4, 2, MigrateType::Isolate),
                (P + 8, 3, MigrateType::Isolate),
                (P + 16, 4, MigrateType::Isolate),
                (P + 32, 5, MigrateType::Isolate),
                (P + 100, 1, MigrateType::Isolate),
                (P + 131, 0, MigrateType::Isolate),
                (P + 256, 8, MigrateType::Isolate),
            ]
        );
        // Between two mergeable types too.
        let reclaimable = round_trip(&mut z, MigrateType::Reclaimable);
        assert!(reclaimable
            .iter()
            .all(|&(_, _, mt)| mt == MigrateType::Reclaimable));
        results.push((isolated, reclaimable));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn retype_of_a_fragmented_pageblock_walks_both_ways() {
    // 256 single free frames in P: more than the limit on the Movable lists when
    // isolating and on the Isolate lists when undoing.
    let every_other: Vec<_> = (0..PAGEBLOCK_NR_PAGES)
        .step_by(2)
        .map(|o| o..o + 1)
        .collect();
    let mut s = Storage::new(BASE, SPAN);
    let mut z = build(&mut s, &every_other, 0);
    assert!(listed(&z, MigrateType::Movable) > LISTED_BLOCKS_SCAN_LIMIT);
    let isolated = round_trip(&mut z, MigrateType::Isolate);
    assert_eq!(isolated.len(), 256);
    assert!(isolated
        .iter()
        .all(|&(p, o, mt)| (p - P).is_multiple_of(2) && o == 0 && mt == MigrateType::Isolate));
    round_trip(&mut z, MigrateType::Reclaimable);
}

#[test]
fn retype_splits_a_free_block_larger_than_the_pageblock_and_merges_it_back() {
    for (spread, to) in [
        (0, MigrateType::Isolate),
        (PAGEBLOCK_NR_PAGES, MigrateType::Isolate),
        (0, MigrateType::Cma),
        (PAGEBLOCK_NR_PAGES, MigrateType::Cma),
    ] {
        // P and the pageblock below it free: one order-10 block covering P.
        let mut s = Storage::new(BASE, SPAN);
        let mut z = build(&mut s, &WHOLE, spread);
        for p in BASE..P {
            z.free_pages(p, 0).unwrap();
        }
        assert_eq!(z.block_at(P).head, BASE);
        assert_eq!(z.block_at(P).order, MAX_ORDER);
        assert_eq!(
            listed(&z, MigrateType::Movable) <= LISTED_BLOCKS_SCAN_LIMIT,
            spread == 0
        );
        let retyped = round_trip(&mut z, to);
        assert_eq!(retyped, [(P, PAGEBLOCK_ORDER, to)]);
        assert_eq!(z.block_at(P).head, BASE);
        assert_eq!(z.block_at(P).order, MAX_ORDER);
    }
}

#[test]
fn retype_to_a_mergeable_type_takes_a_free_neighbour_pageblock_along() {
    // Not a "moves only P's frames" case: P's free order-9 block merges with its free
    // Movable buddy pageblock, and the merged block takes P's new type (the module's
    // rule, as Linux 6.10's `__free_one_page`), retyping the neighbour too. Going back
    // splits and merges again, restoring both.
    for spread in [0, PAGEBLOCK_NR_PAGES] {
        let mut s = Storage::new(BASE, SPAN);
        let mut z = build(&mut s, &WHOLE, spread);
        for p in BASE..P {
            z.free_pages(p, 0).unwrap();
        }
        let before = z.counters();
        let frames_before = frames(&z);
        z.set_pageblock_migratetype(P, MigrateType::Reclaimable)
            .unwrap();
        ok(&z);
        assert_eq!(
            free_blocks(&z, BASE, P_END),
            [(BASE, MAX_ORDER, MigrateType::Reclaimable)]
        );
        assert_eq!(
            z.pageblock_migratetype(BASE),
            Some(MigrateType::Reclaimable)
        );
        assert_eq!(
            z.counters().free_by_migratetype[MigrateType::Reclaimable.index()],
            1 << MAX_ORDER
        );
        z.set_pageblock_migratetype(P, MigrateType::Movable)
            .unwrap();
        ok(&z);
        assert_eq!(z.pageblock_migratetype(BASE), Some(MigrateType::Movable));
        assert_eq!(z.counters(), before);
        assert!(frames(&z) == frames_before, "a frame changed");
    }
}

#[test]
fn listed_blocks_give_up_untouched_past_the_limit() {
    let mut s = Storage::new(BASE, SPAN);
    let mut z = build(
        &mut s,
        &SPARSE,
        LISTED_BLOCKS_SCAN_LIMIT + 1 - SPARSE_BLOCKS,
    );
    assert_eq!(
        listed(&z, MigrateType::Movable),
        LISTED_BLOCKS_SCAN_LIMIT + 1
    );
    let before = frames(&z);
    let counters = z.counters();
    assert!(!z.move_listed_blocks(P..P_END, MigrateType::Movable, MigrateType::Isolate));
    assert!(frames(&z) == before);
    assert_eq!(z.counters(), counters);
    assert_eq!(z.pageblock_migratetype(P), Some(MigrateType::Movable));
}

#[test]
fn pageblock_map_counts_every_frame_of_every_pageblock() {
    // A zone that starts half a pageblock in: the first pageblock is half outside.
    let start = BASE + PAGEBLOCK_NR_PAGES / 2;
    let mut storage = Storage::new(start, 4 * PAGEBLOCK_NR_PAGES);
    let mut z = storage.zone();
    z.free_range(start..start + 4 * PAGEBLOCK_NR_PAGES).unwrap();
    let empty = z.pageblock_map();
    assert_eq!(empty.len(), 5);
    assert_eq!(empty[0].start_pfn, BASE);
    assert_eq!(empty[0].unmanaged, PAGEBLOCK_NR_PAGES / 2);
    assert_eq!(empty[0].free, PAGEBLOCK_NR_PAGES / 2);
    assert_eq!(empty[1].free, PAGEBLOCK_NR_PAGES);
    assert_eq!(empty[4].free, PAGEBLOCK_NR_PAGES / 2);
    // Take three pages and a whole pageblock; isolate another.
    let small: Vec<Pfn> = (0..3)
        .map(|_| z.alloc_pages(0, Gfp::KERNEL).unwrap())
        .collect();
    let big = z.alloc_pages(PAGEBLOCK_ORDER, Gfp::MOVABLE).unwrap();
    let used = z.pageblock_map();
    let cell_of = |pfn: Pfn| (pfn - BASE) / PAGEBLOCK_NR_PAGES;
    for cell in &used {
        assert_eq!(
            cell.free + cell.allocated + cell.unmanaged,
            PageblockUsage::FRAMES
        );
    }
    assert_eq!(used[cell_of(big)].allocated, PAGEBLOCK_NR_PAGES);
    let small_cells: usize = small.iter().map(|&p| used[cell_of(p)].allocated).sum();
    assert!(small_cells >= 3);
    let total_allocated: usize = used.iter().map(|c| c.allocated).sum();
    assert_eq!(total_allocated, 3 + PAGEBLOCK_NR_PAGES);
    let free_cell = (0..5)
        .find(|&i| used[i].allocated == 0 && used[i].unmanaged == 0)
        .expect("one pageblock is untouched");
    let free_pfn = BASE + free_cell * PAGEBLOCK_NR_PAGES;
    z.start_isolate_page_range(
        free_pfn,
        free_pfn + PAGEBLOCK_NR_PAGES,
        MigrateType::Movable,
    )
    .unwrap();
    let isolated = z.pageblock_map();
    assert!(isolated[free_cell].isolated());
    assert_eq!(isolated.iter().filter(|c| c.isolated()).count(), 1);
    assert_eq!(isolated[free_cell].free, PAGEBLOCK_NR_PAGES);
}
