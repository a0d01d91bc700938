//! Movable chunks and defragmentation: pins, releases, and a fragmented area that only
//! moving chunks can serve.
#![forbid(unsafe_code)]

use std::vec::Vec;

use super::*;
use crate::mm::testutil::{frames, FakeOwners, Storage};
use crate::mm::NoMigrator;

const BASE: Pfn = 0x40000;
const ZONE_PAGES: usize = 8192;
const AREA_BASE: Pfn = BASE + 4096;
const AREA_PAGES: usize = 4096;
const CHUNK: usize = 64;

fn ok(zone: &Zone<'_>) {
    if let Err(e) = zone.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

/// The data a chunk's frame `i` holds (the fake's RAM), whatever its address.
fn word(id: ChunkId, i: usize) -> u64 {
    u64::from(id.0) * 100_000 + i as u64
}

fn fill(owners: &mut FakeOwners, chunk: &ChunkInfo) {
    for i in 0..chunk.count {
        owners.memory.insert(chunk.pfn + i, word(chunk.id, i));
    }
}

/// Every live chunk holds its own data at the address the registry gives.
fn check_chunks(area: &CmaArea, owners: &FakeOwners) {
    for chunk in area.chunks() {
        for i in 0..chunk.count {
            assert_eq!(
                owners.memory.get(&(chunk.pfn + i)),
                Some(&word(chunk.id, i)),
                "{} lost its data at frame {i}",
                chunk.id
            );
        }
    }
    owners.verify().unwrap();
}

/// An area filled with 64-page movable chunks, every other one released again: half the
/// area is free, in 64-page holes only.
fn fragmented(s: &mut Storage) -> (Zone<'_>, CmaArea, FakeOwners, Vec<ChunkId>) {
    let mut z = s.zone();
    z.free_range(BASE..BASE + ZONE_PAGES).unwrap();
    let mut area = cma_init_reserved_mem(AREA_BASE, AREA_PAGES, 0, "frag").unwrap();
    cma_activate_area(&mut area, &mut z).unwrap();
    let mut owners = FakeOwners::default();
    let mut kept = Vec::new();
    let ids: Vec<ChunkId> = (0..AREA_PAGES / CHUNK)
        .map(|_| cma_alloc_movable(&mut area, &mut z, &mut owners, CHUNK, 6).unwrap())
        .collect();
    for (n, id) in ids.into_iter().enumerate() {
        if n % 2 == 0 {
            let chunk = area.chunk(id).unwrap();
            fill(&mut owners, &chunk);
            kept.push(id);
        } else {
            cma_release_movable(&mut area, &mut z, id).unwrap();
        }
    }
    assert_eq!(area.used_pages(), AREA_PAGES / 2);
    assert_eq!(area.maxchunk_pages(), CHUNK);
    (z, area, owners, kept)
}

#[test]
fn pins_and_releases_are_checked() {
    let mut s = Storage::new(BASE, ZONE_PAGES);
    let (mut z, mut area, _owners, kept) = fragmented(&mut s);
    let id = kept[0];
    let pinned = cma_pin(&mut area, id).unwrap();
    assert_eq!((pinned.pins, pinned.moves, pinned.count), (1, 0, CHUNK));
    assert_eq!(
        cma_release_movable(&mut area, &mut z, id),
        Err(CmaError::Pinned(id))
    );
    assert!(
        !cma_release(&mut area, &mut z, pinned.pfn, CHUNK),
        "a chunk's frames only go back through its id"
    );
    cma_unpin(&mut area, id).unwrap();
    assert_eq!(cma_unpin(&mut area, id), Err(CmaError::NotPinned(id)));
    let used = area.used_pages();
    cma_release_movable(&mut area, &mut z, id).unwrap();
    assert_eq!(area.used_pages(), used - CHUNK);
    assert_eq!(
        cma_release_movable(&mut area, &mut z, id),
        Err(CmaError::NoSuchChunk(id))
    );
    assert_eq!(cma_pin(&mut area, id), Err(CmaError::NoSuchChunk(id)));
    assert_eq!(area.state().movable_chunks, kept.len() - 1);
    ok(&z);
}

#[test]
fn a_fragmented_area_serves_a_large_request_by_moving_unpinned_chunks() {
    let mut s = Storage::new(BASE, ZONE_PAGES);
    let (mut z, mut area, mut owners, kept) = fragmented(&mut s);

    area.set_defrag(false);
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 1024, 8),
        Err(CmaError::NoSpace),
        "plain CMA cannot cross device buffers"
    );
    assert_eq!(owners.chunk_moves, 0);

    area.set_defrag(true);
    let pfn = cma_alloc(&mut area, &mut z, &mut owners, 1024, 8).unwrap();
    ok(&z);
    assert_eq!(pfn % 256, 0);
    // The cheapest window holds 8 chunks (every other 64-page slot of 1024 pages).
    assert_eq!(owners.chunk_moves, 8);
    assert_eq!(area.stats.chunks_moved, 8);
    assert_eq!(area.stats.chunk_pages_moved, 8 * CHUNK as u64);
    check_chunks(&area, &owners);
    let moved: Vec<ChunkInfo> = area.chunks().filter(|c| c.moves == 1).collect();
    assert_eq!(moved.len(), 8);
    for chunk in area.chunks() {
        assert!(
            chunk.pfn + chunk.count <= pfn || pfn + 1024 <= chunk.pfn,
            "{} overlaps the new allocation",
            chunk.id
        );
        assert!(chunk.pfn.is_multiple_of(CHUNK), "alignment kept");
    }
    assert_eq!(area.chunks().count(), kept.len());
    assert_eq!(area.used_pages(), AREA_PAGES / 2 + 1024);
    // The owner finds the new place at its next pin.
    let first = moved[0];
    assert_eq!(cma_pin(&mut area, first.id).unwrap().pfn, first.pfn);
}

#[test]
fn pinned_chunks_stay_and_the_only_window_without_pins_is_chosen() {
    let mut s = Storage::new(BASE, ZONE_PAGES);
    let (mut z, mut area, mut owners, kept) = fragmented(&mut s);
    for &id in &kept {
        cma_pin(&mut area, id).unwrap();
    }
    let bitmap = area.bitmap().to_vec();
    let before = frames(&z);
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 1024, 8),
        Err(CmaError::NoSpace)
    );
    assert_eq!(area.bitmap(), bitmap.as_slice());
    assert_eq!(frames(&z), before, "a refused request changes nothing");
    assert_eq!(owners.chunk_moves, 0);

    // Unpin the chunks of the last 1024 pages only: that window is the one possible.
    let last_window = AREA_BASE + AREA_PAGES - 1024;
    for chunk in area.chunks().collect::<Vec<_>>() {
        if chunk.pfn >= last_window {
            cma_unpin(&mut area, chunk.id).unwrap();
        }
    }
    let pfn = cma_alloc(&mut area, &mut z, &mut owners, 1024, 8).unwrap();
    assert_eq!(pfn, last_window);
    assert_eq!(owners.chunk_moves, 8);
    check_chunks(&area, &owners);
    for chunk in area.chunks() {
        assert_eq!(chunk.moves > 0, chunk.pins == 0, "{}", chunk.id);
    }
    ok(&z);
}

#[test]
fn a_refused_copy_restores_the_area() {
    let mut s = Storage::new(BASE, ZONE_PAGES);
    let (mut z, mut area, mut owners, _kept) = fragmented(&mut s);
    owners.chunk_refuses = true;
    let bitmap = area.bitmap().to_vec();
    let chunks: Vec<ChunkInfo> = area.chunks().collect();
    let free = z.counters().free_pages;
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 1024, 8),
        Err(CmaError::NoSpace)
    );
    assert_eq!(area.bitmap(), bitmap.as_slice());
    assert_eq!(area.chunks().collect::<Vec<_>>(), chunks);
    assert_eq!(z.counters().free_pages, free);
    assert_eq!(area.stats.chunks_moved, 0);
    check_chunks(&area, &owners);
    ok(&z);
}

#[test]
fn plain_allocations_block_their_window_and_a_full_area_fails_cleanly() {
    let mut s = Storage::new(BASE, ZONE_PAGES);
    let (mut z, mut area, mut owners, _kept) = fragmented(&mut s);
    // Fill every hole with plain allocations: nothing can be moved, nothing is free.
    while cma_alloc(&mut area, &mut z, &mut owners, CHUNK, 6).is_ok() {}
    assert_eq!(area.used_pages(), AREA_PAGES);
    let chunks: Vec<ChunkInfo> = area.chunks().collect();
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut owners, 256, 8),
        Err(CmaError::NoSpace)
    );
    assert_eq!(area.chunks().collect::<Vec<_>>(), chunks);
    assert_eq!(owners.chunk_moves, 0);
    check_chunks(&area, &owners);
    ok(&z);
}

#[test]
fn a_migrator_that_cannot_copy_never_loses_a_chunk() {
    let mut s = Storage::new(BASE, ZONE_PAGES);
    let (mut z, mut area, owners, _kept) = fragmented(&mut s);
    let chunks: Vec<ChunkInfo> = area.chunks().collect();
    assert_eq!(
        cma_alloc(&mut area, &mut z, &mut NoMigrator, 1024, 8),
        Err(CmaError::NoSpace)
    );
    assert_eq!(area.chunks().collect::<Vec<_>>(), chunks);
    check_chunks(&area, &owners);
    ok(&z);
}
