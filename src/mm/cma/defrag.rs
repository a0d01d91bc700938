//! Defragmenting an area by moving its unpinned movable chunks out of the way.
//!
//! # Theory of operation
//!
//! Plain `cma_alloc` can only use runs the bitmap shows free: movable pages in them are
//! migrated, but a device buffer is a hole nobody can cross. When every candidate failed
//! and the area holds unpinned movable chunks ([`super::movable`]), one window is chosen
//! and emptied of them:
//!
//! 1. Plan. Every aligned window of the request's size is scored in one sweep: a window is
//!    possible when each used bit in it belongs to an unpinned chunk (a plain allocation or
//!    a pinned chunk cannot move) and the area's free bits outside it can hold the chunks
//!    it cuts; its cost is the pages of those chunks (a chunk that only overlaps the
//!    window's edge moves whole). Prefix counts per bitmap word make each window O(log n),
//!    so the sweep is linear in the area. The cheapest possible windows are tried in
//!    order, lowest first among equals, up to [`WINDOWS_TRIED`] of them (a window whose
//!    chunks find no new home, the free space outside being in pieces too small or
//!    misaligned for them, gives way to the next); windows with nothing to move are
//!    skipped (the ordinary passes already tried them and failed for other reasons).
//! 2. Reserve the window (its bits set), so no new home lands in it.
//! 3. Move each chunk: a new home from the ordinary allocator (same size and alignment,
//!    never recursing into defragmentation), [`Migrator::move_chunk`] copies the data, the
//!    old frames go back to the buddy and the registry points at the new place. The owner
//!    sees it at its next pin.
//! 4. Clear the reservation and allocate the window as an ordinary candidate (its movable
//!    tenants are migrated as usual).
//!
//! A step that fails restores the bitmap to what the registry says; chunks already moved
//! stay moved (as migrated pages stay migrated), which costs nothing but the copy.
//!
//! [`Migrator::move_chunk`]: crate::mm::Migrator::move_chunk
#![forbid(unsafe_code)]

use alloc::vec::Vec;

use super::bitmap::bitmap_set;
use super::fit::BitRequest;
use super::movable::{alloc_new_home, ChunkId, ChunkInfo};
use super::{try_bits, CmaArea, CmaError};
use crate::mm::contig::free_contig_range;
use crate::mm::migrate::Migrator;
use crate::mm::page_alloc::Zone;
use crate::mm::Pfn;

/// Windows tried per request before giving up.
pub(super) const WINDOWS_TRIED: usize = 4;

/// A window and the chunks that must leave it, lowest first.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) bit: usize,
    pub(super) chunks: Vec<ChunkId>,
}

/// Set bits of a bitmap, countable over any range in O(1).
struct BitCounts {
    map: Vec<u64>,
    /// `prefix[w]`: set bits in words `0..w`.
    prefix: Vec<usize>,
}

impl BitCounts {
    fn new(map: Vec<u64>) -> BitCounts {
        let mut prefix = Vec::with_capacity(map.len() + 1);
        let mut sum = 0;
        prefix.push(0);
        for w in &map {
            sum += w.count_ones() as usize;
            prefix.push(sum);
        }
        BitCounts { map, prefix }
    }

    fn before(&self, bit: usize) -> usize {
        let (word, shift) = (bit / 64, bit % 64);
        let partial = match self.map.get(word) {
            Some(w) if shift > 0 => (w & ((1u64 << shift) - 1)).count_ones() as usize,
            _ => 0,
        };
        self.prefix[word.min(self.map.len())] + partial
    }

    /// Set bits in `[start, end)`.
    fn ones(&self, start: usize, end: usize) -> usize {
        self.before(end) - self.before(start)
    }
}

/// A chunk's bits: `(first, count)`.
fn chunk_bits(area: &CmaArea, chunk: &ChunkInfo) -> (usize, usize) {
    let opb = area.order_per_bit;
    (
        (chunk.pfn - area.base_pfn) >> opb,
        chunk.count.div_ceil(1 << opb),
    )
}

/// Step 1: the cheapest windows that moving unpinned chunks can free, cheapest first, at
/// most [`WINDOWS_TRIED`].
pub(super) fn plan(area: &CmaArea, request: &BitRequest) -> Vec<Plan> {
    let bits = area.bits();
    let movable: Vec<(usize, usize, ChunkId)> = area
        .movable
        .iter()
        .filter(|c| c.pins == 0)
        .map(|c| {
            let (start, n) = chunk_bits(area, c);
            (start, start + n, c.id)
        })
        .collect();
    if movable.is_empty() || request.nr > bits {
        return Vec::new();
    }
    let mut movable_map = alloc::vec![0u64; area.bitmap.len()];
    for &(start, end, _) in &movable {
        bitmap_set(&mut movable_map, start, end - start, true);
    }
    let blocking: Vec<u64> = area
        .bitmap
        .iter()
        .zip(&movable_map)
        .map(|(used, mov)| used & !mov)
        .collect();
    let used = BitCounts::new(area.bitmap.clone());
    let blocking = BitCounts::new(blocking);
    let free_total = bits - used.ones(0, bits);
    // Registry order is address order, so ends are sorted too.
    let mut size_prefix = Vec::with_capacity(movable.len() + 1);
    size_prefix.push(0usize);
    for &(start, end, _) in &movable {
        size_prefix.push(size_prefix.last().copied().unwrap_or(0) + (end - start));
    }

    let step = request.align_mask + 1;
    // (cost, bit, first chunk, end of chunks), kept sorted, at most WINDOWS_TRIED.
    let mut best: Vec<(usize, usize, usize, usize)> = Vec::with_capacity(WINDOWS_TRIED + 1);
    let Some(mut start) = request.align_up(0) else {
        return Vec::new();
    };
    while start.checked_add(request.nr).is_some_and(|end| end <= bits) {
        let end = start + request.nr;
        if blocking.ones(start, end) == 0 {
            let first = movable.partition_point(|&(_, e, _)| e <= start);
            let last = movable.partition_point(|&(s, _, _)| s < end);
            let cost = size_prefix[last] - size_prefix[first.min(last)];
            let free_outside = free_total - (request.nr - used.ones(start, end));
            let better = best.len() < WINDOWS_TRIED || best.last().is_some_and(|b| cost < b.0);
            if cost > 0 && free_outside >= cost && better {
                let at = best.partition_point(|b| b.0 <= cost);
                best.insert(at, (cost, start, first, last));
                best.truncate(WINDOWS_TRIED);
            }
        }
        let Some(next) = start.checked_add(step) else {
            break;
        };
        start = next;
    }
    best.into_iter()
        .map(|(_, bit, first, last)| Plan {
            bit,
            chunks: movable[first..last].iter().map(|c| c.2).collect(),
        })
        .collect()
}

/// Steps 2 to 4 for the cheapest window not tried yet, until one serves `count` pages or
/// [`WINDOWS_TRIED`] have failed. The plan is made again before each window: a failed
/// window's moves may have put chunks anywhere outside it, into the next one too.
pub(super) fn defragment<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    count: usize,
    request: &BitRequest,
) -> Result<Pfn, CmaError> {
    let mut last_error = CmaError::NoSpace;
    let mut tried: Vec<usize> = Vec::with_capacity(WINDOWS_TRIED);
    while tried.len() < WINDOWS_TRIED {
        let Some(next) = plan(area, request)
            .into_iter()
            .find(|p| !tried.contains(&p.bit))
        else {
            break;
        };
        tried.push(next.bit);
        match empty_and_take(area, zone, migrator, count, request, &next) {
            Ok(pfn) => return Ok(pfn),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

fn empty_and_take<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    count: usize,
    request: &BitRequest,
    plan: &Plan,
) -> Result<Pfn, CmaError> {
    let window = (plan.bit, request.nr);
    bitmap_set(&mut area.bitmap, window.0, window.1, true);
    for &id in &plan.chunks {
        if let Err(e) = move_out(area, zone, migrator, id, window) {
            restore(area, window);
            return Err(e);
        }
    }
    let opb = area.order_per_bit;
    let (w_pfn, w_end) = (
        area.base_pfn + (window.0 << opb),
        area.base_pfn + ((window.0 + window.1) << opb),
    );
    if area.movable.overlaps(w_pfn, w_end) {
        // Only the plan's chunks were in the window and each has left it; never clear bits
        // a chunk still holds.
        restore(area, window);
        return Err(CmaError::Busy);
    }
    bitmap_set(&mut area.bitmap, window.0, window.1, false);
    try_bits(area, zone, migrator, window.0, count, window.1)
}

/// Move one chunk out of the reserved `window`.
fn move_out<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    id: ChunkId,
    window: (usize, usize),
) -> Result<(), CmaError> {
    let chunk = *area.movable.get(id).ok_or(CmaError::NoSuchChunk(id))?;
    let new_pfn = alloc_new_home(area, zone, migrator, &chunk)?;
    if migrator
        .move_chunk(chunk.pfn, new_pfn, chunk.count)
        .is_err()
    {
        super::release_range(area, zone, new_pfn, chunk.count);
        return Err(CmaError::Busy);
    }
    if free_contig_range(zone, chunk.pfn, chunk.count).is_err() {
        // The registry said these frames were ours: keep both copies rather than free
        // something that is not.
        super::release_range(area, zone, new_pfn, chunk.count);
        return Err(CmaError::Busy);
    }
    let (bit, nbits) = chunk_bits(area, &chunk);
    bitmap_set(&mut area.bitmap, bit, nbits, false);
    let (w_start, w_end) = (window.0, window.0 + window.1);
    let (lo, hi) = (bit.max(w_start), (bit + nbits).min(w_end));
    if lo < hi {
        bitmap_set(&mut area.bitmap, lo, hi - lo, true);
    }
    area.movable.moved(id, new_pfn);
    area.stats.chunks_moved += 1;
    area.stats.chunk_pages_moved += chunk.count as u64;
    Ok(())
}

/// Undo the reservation: the window's bits are exactly the chunks still in it again.
fn restore(area: &mut CmaArea, window: (usize, usize)) {
    bitmap_set(&mut area.bitmap, window.0, window.1, false);
    let inside: Vec<(usize, usize)> = area
        .movable
        .iter()
        .map(|c| chunk_bits(area, c))
        .filter(|&(bit, n)| bit < window.0 + window.1 && window.0 < bit + n)
        .collect();
    for (bit, n) in inside {
        bitmap_set(&mut area.bitmap, bit, n, true);
    }
}
