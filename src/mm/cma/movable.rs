//! Movable device buffers: the seeds' `cma_pin()` / `cma_unpin()` chunks.
//!
//! # Theory of operation
//!
//! A device that cannot scatter-gather needs its buffer contiguous, but only while the
//! device (or the CPU) is using it. A movable chunk is a `cma_alloc` range registered with
//! its area, together with a pin count: the owner pins it before a transfer starts
//! ([`cma_pin`], which answers where the chunk is now and how often it has moved) and
//! unpins it when the transfer is over ([`cma_unpin`]). While nobody holds a pin the area
//! may move the chunk to another place inside itself to make room for a request that would
//! otherwise fail (`defrag`): the data is copied by [`Migrator::move_chunk`] and the
//! registry's record follows. The owner sees a changed `moves` count at its next pin and
//! re-points the device (the display re-attaches its backing); a device must never be given
//! an address it did not get from a pin it still holds.
//!
//! A chunk is released with [`cma_release_movable`] only when unpinned; the range-based
//! `cma_release` refuses frames that belong to a chunk, so the registry can never point at
//! memory the area gave back.
//!
//! [`Migrator::move_chunk`]: crate::mm::Migrator::move_chunk
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use super::{cma_alloc_inner, release_range, CmaArea, CmaError};
use crate::mm::migrate::Migrator;
use crate::mm::page_alloc::Zone;
use crate::mm::Pfn;

/// A movable device buffer of one area. Ids are never reused within an area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub u32);

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chunk {}", self.0)
    }
}

/// Where a chunk is and what holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    pub id: ChunkId,
    /// First frame, valid for a device only while the caller holds a pin.
    pub pfn: Pfn,
    pub count: usize,
    /// The alignment it was allocated with, kept wherever it moves.
    pub align_order: usize,
    pub pins: u32,
    /// How often the area has moved it (the owner compares this at each pin).
    pub moves: u32,
}

/// An area's registry of movable chunks, kept sorted by address.
#[derive(Clone, Debug, Default)]
pub(super) struct MovableChunks {
    chunks: Vec<ChunkInfo>,
    next_id: u32,
}

impl MovableChunks {
    pub(super) fn iter(&self) -> impl Iterator<Item = &ChunkInfo> {
        self.chunks.iter()
    }

    pub(super) fn get(&self, id: ChunkId) -> Option<&ChunkInfo> {
        self.chunks.iter().find(|c| c.id == id)
    }

    fn get_mut(&mut self, id: ChunkId) -> Option<&mut ChunkInfo> {
        self.chunks.iter_mut().find(|c| c.id == id)
    }

    /// Does any chunk hold a frame of `[start, end)`?
    pub(super) fn overlaps(&self, start: Pfn, end: Pfn) -> bool {
        self.chunks
            .iter()
            .any(|c| c.pfn < end && start < c.pfn + c.count)
    }

    fn insert(&mut self, pfn: Pfn, count: usize, align_order: usize) -> Option<ChunkId> {
        let id = ChunkId(self.next_id);
        self.next_id = self.next_id.checked_add(1)?;
        let info = ChunkInfo {
            id,
            pfn,
            count,
            align_order,
            pins: 0,
            moves: 0,
        };
        self.place(info);
        Some(id)
    }

    fn place(&mut self, info: ChunkInfo) {
        let at = self.chunks.partition_point(|c| c.pfn < info.pfn);
        self.chunks.insert(at, info);
    }

    fn remove(&mut self, id: ChunkId) -> Option<ChunkInfo> {
        let at = self.chunks.iter().position(|c| c.id == id)?;
        Some(self.chunks.remove(at))
    }

    /// Record that `id` now lives at `pfn` (keeps the list sorted).
    pub(super) fn moved(&mut self, id: ChunkId, pfn: Pfn) {
        if let Some(mut info) = self.remove(id) {
            info.pfn = pfn;
            info.moves = info.moves.wrapping_add(1);
            self.place(info);
        }
    }

    /// Any chunk the area may move right now?
    pub(super) fn any_unpinned(&self) -> bool {
        self.chunks.iter().any(|c| c.pins == 0)
    }
}

/// Allocate `count` contiguous pages aligned to `1 << align_order` as a movable chunk,
/// unpinned: pin it before a device or the CPU touches it.
pub fn cma_alloc_movable<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    count: usize,
    align_order: usize,
) -> Result<ChunkId, CmaError> {
    let pfn = super::cma_alloc(area, zone, migrator, count, align_order)?;
    area.adopt_movable(pfn, count, align_order)
        .inspect_err(|_| {
            // Only an exhausted id space gets here: give the range back rather than reuse an
            // id an owner may still hold.
            release_range(area, zone, pfn, count);
        })
}

impl CmaArea {
    /// Make a range this area just handed out (`cma_alloc` of `count` pages at `pfn` with
    /// `align_order`) a movable chunk. Refused for anything else: pages not handed out,
    /// already part of a chunk, or a misaligned start.
    pub fn adopt_movable(
        &mut self,
        pfn: Pfn,
        count: usize,
        align_order: usize,
    ) -> Result<ChunkId, CmaError> {
        let end = pfn.checked_add(count).ok_or(CmaError::InvalidAlign)?;
        if count == 0 || !self.contains(pfn) || end > self.base_pfn + self.count {
            return Err(CmaError::NoSpace);
        }
        let opb = self.order_per_bit;
        let handed_out = ((pfn - self.base_pfn) >> opb..=(end - 1 - self.base_pfn) >> opb)
            .all(|b| super::bitmap::bitmap_test(&self.bitmap, b));
        let aligned = align_order < usize::BITS as usize && pfn.is_multiple_of(1 << align_order);
        if !handed_out || self.movable.overlaps(pfn, end) || !aligned {
            return Err(CmaError::NoSpace);
        }
        self.movable
            .insert(pfn, count, align_order)
            .ok_or(CmaError::NoSpace)
    }
}

/// Pin a chunk: until the matching [`cma_unpin`] it stays where the answer says.
pub fn cma_pin(area: &mut CmaArea, id: ChunkId) -> Result<ChunkInfo, CmaError> {
    let chunk = area.movable.get_mut(id).ok_or(CmaError::NoSuchChunk(id))?;
    chunk.pins = chunk.pins.checked_add(1).ok_or(CmaError::PinOverflow(id))?;
    Ok(*chunk)
}

/// Drop one pin; with none left the area may move the chunk again.
pub fn cma_unpin(area: &mut CmaArea, id: ChunkId) -> Result<(), CmaError> {
    let chunk = area.movable.get_mut(id).ok_or(CmaError::NoSuchChunk(id))?;
    chunk.pins = chunk.pins.checked_sub(1).ok_or(CmaError::NotPinned(id))?;
    Ok(())
}

/// Give a chunk back. Refused while it is pinned (a device may still be using it).
pub fn cma_release_movable(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    id: ChunkId,
) -> Result<(), CmaError> {
    let chunk = *area.movable.get(id).ok_or(CmaError::NoSuchChunk(id))?;
    if chunk.pins > 0 {
        return Err(CmaError::Pinned(id));
    }
    area.movable.remove(id);
    if !release_range(area, zone, chunk.pfn, chunk.count) {
        // The registry and the bitmap disagree: a bug, but keep the record so nothing is
        // handed out twice.
        area.movable.place(chunk);
        return Err(CmaError::NoSuchChunk(id));
    }
    area.stats.release_pages_success += chunk.count as u64;
    Ok(())
}

/// Allocate a new home for `count` pages aligned to `align_order` (never recursing into
/// defragmentation), used when a chunk moves.
pub(super) fn alloc_new_home<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    chunk: &ChunkInfo,
) -> Result<Pfn, CmaError> {
    cma_alloc_inner(area, zone, migrator, chunk.count, chunk.align_order, false)
}
