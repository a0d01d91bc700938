//! Contiguous Memory Allocator areas (`mm/cma.c`).
//!
//! # Theory of operation
//!
//! A CMA area is a pageblock-aligned range of RAM whose pageblocks are typed Cma: the buddy
//! lends them to Movable allocations only, so the area can always be emptied again by
//! migration. The area's bitmap (one bit per `1 << order_per_bit` pages) records which parts
//! are handed out by `cma_alloc`. Allocation finds a zero run in the bitmap that satisfies
//! the alignment, claims it, and asks [`alloc_contig_range`] to empty and take exactly those
//! frames; if that fails because something there is busy or its movable pages have nowhere
//! to go, the bits are released and the search continues past the failed run (the error
//! returned when every candidate failed is the last one's). Failed candidates still drop
//! the clean page cache they met; when that freed memory and some candidate was short of
//! it, the candidates are tried again. The bitmap is the area's own record; the zone's
//! per-frame state is the ground truth `cma_release` checks against, so releasing frames
//! that were not handed out is refused instead of corrupting the buddy.
//!
//! An idle area's memory is held back from the buddy's lists (`page_alloc/held.rs`): a
//! window of it is taken by rewriting its frames' metadata alone, and
//! [`cma_alloc_if_free`] tries the first window that way before a caller sets up a
//! migrator.
//!
//! An area may also hand out movable chunks (`movable`): device buffers that may be moved
//! while nobody has them pinned. When every candidate failed and such chunks exist, the
//! area defragments (`defrag`): it empties the cheapest window of them and takes it.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::contig::{
    alloc_contig_range, free_contig_range, take_contig_range_if_free, ContigError,
};
use super::migrate::Migrator;
use super::page_alloc::{MmError, Zone};
use super::{MigrateType, PageState, Pfn, PAGEBLOCK_NR_PAGES};

mod bitmap;
mod defrag;
mod fit;
mod movable;

use bitmap::{bitmap_set, bitmap_test};
pub use fit::CmaFit;
use fit::{BitRequest, Candidates};
use movable::MovableChunks;
pub use movable::{cma_alloc_movable, cma_pin, cma_release_movable, cma_unpin, ChunkId, ChunkInfo};

/// CMA failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmaError {
    /// Base or size not pageblock aligned, size zero, or size not a multiple of the bitmap
    /// granule.
    Misaligned,
    /// The area is not active yet (or activation failed).
    NotActive,
    AlreadyActive,
    /// Activation: the zone refused the range.
    Zone(MmError),
    /// Zero pages requested.
    ZeroCount,
    /// Alignment order beyond anything a bitmap of this area can express.
    InvalidAlign,
    /// No free run of the requested size and alignment in the bitmap.
    NoSpace,
    /// Every candidate run held frames that could not be moved (the last one tried did).
    Busy,
    /// Migration had nowhere to put the pages (of the last candidate run tried).
    NoMemory,
    /// No movable chunk with this id in the area.
    NoSuchChunk(ChunkId),
    /// The chunk is pinned (a device may be using it): it cannot be released.
    Pinned(ChunkId),
    /// Unpin of a chunk nobody has pinned.
    NotPinned(ChunkId),
    /// The chunk's pin count would overflow.
    PinOverflow(ChunkId),
}

impl fmt::Display for CmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmaError::Misaligned => f.write_str("CMA area must be pageblock aligned"),
            CmaError::NotActive => f.write_str("CMA area not active"),
            CmaError::AlreadyActive => f.write_str("CMA area already active"),
            CmaError::Zone(e) => write!(f, "zone refused CMA area: {e}"),
            CmaError::ZeroCount => f.write_str("zero pages requested"),
            CmaError::InvalidAlign => f.write_str("invalid alignment"),
            CmaError::NoSpace => f.write_str("no free range in CMA area"),
            CmaError::Busy => f.write_str("CMA ranges busy"),
            CmaError::NoMemory => f.write_str("no memory to migrate into"),
            CmaError::NoSuchChunk(id) => write!(f, "no movable {id} in this CMA area"),
            CmaError::Pinned(id) => write!(f, "{id} is pinned"),
            CmaError::NotPinned(id) => write!(f, "{id} is not pinned"),
            CmaError::PinOverflow(id) => write!(f, "{id}: too many pins"),
        }
    }
}

impl core::error::Error for CmaError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            CmaError::Zone(e) => Some(e),
            _ => None,
        }
    }
}

/// Page counters as in Linux's `/sys/kernel/mm/cma/<area>/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmaStats {
    pub alloc_pages_success: u64,
    pub alloc_pages_fail: u64,
    pub release_pages_success: u64,
    /// Movable chunks moved to make room (defragmentation), and their pages.
    pub chunks_moved: u64,
    pub chunk_pages_moved: u64,
}

/// A CMA area. Not tied to a zone: every operation takes the zone it lives in.
#[derive(Clone, Debug)]
pub struct CmaArea {
    name: String,
    base_pfn: Pfn,
    count: usize,
    order_per_bit: usize,
    bitmap: Vec<u64>,
    active: bool,
    fit: CmaFit,
    movable: MovableChunks,
    /// Move unpinned movable chunks when a request finds no room (on unless turned off).
    defrag: bool,
    pub stats: CmaStats,
}

/// Snapshot of an area for reports (`/sys/kernel/debug/cma/<area>/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmaState {
    pub name: String,
    pub base_pfn: Pfn,
    pub count: usize,
    pub order_per_bit: usize,
    /// Pages handed out.
    pub used: usize,
    /// Largest free run, in pages.
    pub maxchunk: usize,
    pub fit: CmaFit,
    /// Movable chunks in the area, and how many of them are pinned.
    pub movable_chunks: usize,
    pub pinned_chunks: usize,
    pub defrag: bool,
    pub stats: CmaStats,
}

impl fmt::Display for CmaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "name: {}", self.name)?;
        writeln!(f, "base_pfn: {:#x}", self.base_pfn)?;
        writeln!(f, "count: {}", self.count)?;
        writeln!(f, "order_per_bit: {}", self.order_per_bit)?;
        writeln!(f, "used: {}", self.used)?;
        writeln!(f, "maxchunk: {}", self.maxchunk)?;
        writeln!(f, "fit: {}", self.fit)?;
        writeln!(f, "defrag: {}", if self.defrag { "on" } else { "off" })?;
        writeln!(f, "movable_chunks: {}", self.movable_chunks)?;
        writeln!(f, "pinned_chunks: {}", self.pinned_chunks)?;
        writeln!(f, "alloc_pages_success: {}", self.stats.alloc_pages_success)?;
        writeln!(f, "alloc_pages_fail: {}", self.stats.alloc_pages_fail)?;
        writeln!(
            f,
            "release_pages_success: {}",
            self.stats.release_pages_success
        )?;
        writeln!(f, "chunks_moved: {}", self.stats.chunks_moved)?;
        writeln!(f, "chunk_pages_moved: {}", self.stats.chunk_pages_moved)
    }
}

/// Declare an area over `count` pages from `base_pfn` (`cma_init_reserved_mem`). Like Linux,
/// base and size must be pageblock aligned (a pageblock carries one migrate type) and the
/// size a multiple of the bitmap granule `1 << order_per_bit`.
pub fn cma_init_reserved_mem(
    base_pfn: Pfn,
    count: usize,
    order_per_bit: usize,
    name: &str,
) -> Result<CmaArea, CmaError> {
    if count == 0 || order_per_bit >= usize::BITS as usize {
        return Err(CmaError::Misaligned);
    }
    let granule = 1usize << order_per_bit;
    if !base_pfn.is_multiple_of(PAGEBLOCK_NR_PAGES)
        || !count.is_multiple_of(PAGEBLOCK_NR_PAGES)
        || !count.is_multiple_of(granule)
    {
        return Err(CmaError::Misaligned);
    }
    if base_pfn.checked_add(count).is_none() {
        return Err(CmaError::Misaligned);
    }
    let bits = count >> order_per_bit;
    Ok(CmaArea {
        name: String::from(name),
        base_pfn,
        count,
        order_per_bit,
        bitmap: vec![0; bits.div_ceil(64)],
        active: false,
        fit: CmaFit::default(),
        movable: MovableChunks::default(),
        defrag: true,
        stats: CmaStats::default(),
    })
}

/// Turn the area's pageblocks into Cma pageblocks and hand its pages to the buddy
/// (`cma_activate_area`). The range must be RAM in `zone` that nobody holds (reserved or
/// free); free pages are simply retyped.
pub fn cma_activate_area(area: &mut CmaArea, zone: &mut Zone<'_>) -> Result<(), CmaError> {
    if area.active {
        return Err(CmaError::AlreadyActive);
    }
    zone.activate_cma_range(area.base_pfn, area.base_pfn + area.count)
        .map_err(CmaError::Zone)?;
    area.active = true;
    Ok(())
}

/// Allocate `count` contiguous pages aligned to `1 << align_order` pages from the area.
pub fn cma_alloc<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    count: usize,
    align_order: usize,
) -> Result<Pfn, CmaError> {
    let result = cma_alloc_inner(area, zone, migrator, count, align_order, true);
    match result {
        Ok(_) => area.stats.alloc_pages_success += count as u64,
        Err(_) => area.stats.alloc_pages_fail += count as u64,
    }
    result
}

/// [`cma_alloc`] when the first window the area's policy picks is free already, taken
/// straight off the zone (`alloc_contig_range`'s step 0). `None`, changing nothing, when
/// it is not, or when the request is invalid ([`cma_alloc`] then says why). It needs no
/// migrator, so a caller can try it before paying for one.
pub fn cma_alloc_if_free(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    count: usize,
    align_order: usize,
) -> Option<Pfn> {
    let request = bit_request(area, count, align_order).ok()?;
    let maxno = area.bits();
    let bitno = Candidates::first(area.fit, &area.bitmap, maxno, &request)?;
    let pfn = area.base_pfn + (bitno << area.order_per_bit);
    bitmap_set(&mut area.bitmap, bitno, request.nr, true);
    if !take_contig_range_if_free(zone, pfn, pfn + count, MigrateType::Cma) {
        bitmap_set(&mut area.bitmap, bitno, request.nr, false);
        return None;
    }
    area.stats.alloc_pages_success += count as u64;
    Some(pfn)
}

/// The bitmap request for `count` pages aligned to `align_order` in `area`.
fn bit_request(area: &CmaArea, count: usize, align_order: usize) -> Result<BitRequest, CmaError> {
    if !area.active {
        return Err(CmaError::NotActive);
    }
    if count == 0 {
        return Err(CmaError::ZeroCount);
    }
    if align_order >= usize::BITS as usize - 1 {
        return Err(CmaError::InvalidAlign);
    }
    let opb = area.order_per_bit;
    let mask = if align_order > opb {
        (1usize << (align_order - opb)) - 1
    } else {
        0
    };
    // Bits to skip so that base + index aligns, when the base itself is less aligned.
    let offset = (area.base_pfn & ((1usize << align_order) - 1)) >> opb;
    let nbits = count.div_ceil(1 << opb);
    if nbits > area.bits() {
        return Err(CmaError::NoSpace);
    }
    Ok(BitRequest {
        nr: nbits,
        align_mask: mask,
        align_offset: offset,
    })
}

/// `cma_alloc` without the statistics; `may_defrag: false` for the new homes of chunks that
/// are being moved (defragmentation never recurses).
fn cma_alloc_inner<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    count: usize,
    align_order: usize,
    may_defrag: bool,
) -> Result<Pfn, CmaError> {
    let request = bit_request(area, count, align_order)?;
    // A pass tries every candidate. Candidates that fail still drop the clean page cache
    // they met, so a window that was short of migration targets may have enough once the
    // pass is over: while a pass drops page cache (which a failed candidate gives back as
    // free memory) and some candidate was short of it, run another. Only so much page
    // cache exists, so this ends.
    loop {
        let dropped_before = zone.contig_reclaimed();
        let (result, short_of_memory) = cma_alloc_pass(area, zone, migrator, count, &request);
        match result {
            Err(CmaError::NoMemory | CmaError::Busy)
                if short_of_memory && zone.contig_reclaimed() > dropped_before => {}
            Err(error @ (CmaError::NoSpace | CmaError::Busy | CmaError::NoMemory))
                if may_defrag && area.defrag && area.movable.any_unpinned() =>
            {
                // The error worth reporting is the ordinary one: defragmentation only
                // failed to get round it.
                return defrag::defragment(area, zone, migrator, count, &request)
                    .map_err(|_| error);
            }
            result => return result,
        }
    }
}

/// One pass over the candidates of `request`: the first that `alloc_contig_range` takes,
/// or the last one's error; and whether any candidate failed short of memory.
fn cma_alloc_pass<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    count: usize,
    request: &BitRequest,
) -> (Result<Pfn, CmaError>, bool) {
    let (maxno, nbits) = (area.bits(), request.nr);
    let mut candidates = Candidates::new(area.fit, &area.bitmap, maxno, request);
    let mut last_error = CmaError::NoSpace;
    let mut short_of_memory = false;
    loop {
        let Some(bitno) = candidates.next(&area.bitmap, maxno, request) else {
            return (Err(last_error), short_of_memory);
        };
        match try_bits(area, zone, migrator, bitno, count, nbits) {
            Ok(pfn) => return (Ok(pfn), short_of_memory),
            // The bitmap is as the candidates saw it again: try the next one. Running out
            // of migration targets is no reason to stop either: it depends on how many
            // movable pages this window holds, and the next one may hold fewer (or none).
            // Linux's `cma_alloc` stops there; it would fail while memory exists.
            Err(CmaError::NoMemory) => {
                last_error = CmaError::NoMemory;
                short_of_memory = true;
            }
            Err(CmaError::Zone(e)) => return (Err(CmaError::Zone(e)), short_of_memory),
            Err(e) => last_error = e,
        }
    }
}

/// Claim bits `bitno..bitno + nbits` and have `alloc_contig_range` take the `count` frames
/// they start at; on failure the bits are free again.
fn try_bits<M: Migrator + ?Sized>(
    area: &mut CmaArea,
    zone: &mut Zone<'_>,
    migrator: &mut M,
    bitno: usize,
    count: usize,
    nbits: usize,
) -> Result<Pfn, CmaError> {
    let pfn = area.base_pfn + (bitno << area.order_per_bit);
    bitmap_set(&mut area.bitmap, bitno, nbits, true);
    alloc_contig_range(zone, migrator, pfn, pfn + count, MigrateType::Cma).map_err(|err| {
        bitmap_set(&mut area.bitmap, bitno, nbits, false);
        match err {
            ContigError::Busy { .. } | ContigError::GaveUp { .. } => CmaError::Busy,
            ContigError::NoMemory => CmaError::NoMemory,
            ContigError::Invalid(e) => CmaError::Zone(e),
        }
    })?;
    Ok(pfn)
}

/// Give back `count` pages from `pfn` (`cma_release`). Returns `false`, changing nothing,
/// if the pages are not inside the area, not currently handed out by it, or part of a
/// movable chunk (those go back with [`cma_release_movable`]).
pub fn cma_release(area: &mut CmaArea, zone: &mut Zone<'_>, pfn: Pfn, count: usize) -> bool {
    if area.movable.overlaps(pfn, pfn.saturating_add(count)) {
        return false;
    }
    if !release_range(area, zone, pfn, count) {
        return false;
    }
    area.stats.release_pages_success += count as u64;
    true
}

/// `cma_release` without the chunk check and the statistics.
fn release_range(area: &mut CmaArea, zone: &mut Zone<'_>, pfn: Pfn, count: usize) -> bool {
    if !area.active || count == 0 || pfn < area.base_pfn {
        return false;
    }
    let Some(end) = pfn.checked_add(count) else {
        return false;
    };
    if end > area.base_pfn + area.count {
        return false;
    }
    let opb = area.order_per_bit;
    let first = (pfn - area.base_pfn) >> opb;
    let last = (end - 1 - area.base_pfn) >> opb;
    if (first..=last).any(|b| !bitmap_test(&area.bitmap, b)) {
        return false;
    }
    let all_contig = (pfn..end).all(|p| {
        zone.page(p).is_some_and(|pg| {
            pg.state() == PageState::Head && pg.order() == 0 && pg.migratetype() == MigrateType::Cma
        })
    });
    if !all_contig || free_contig_range(zone, pfn, count).is_err() {
        return false;
    }
    // Only clear bits whose granule is now entirely released; a partial release of a
    // granule keeps it reserved until its last page comes back.
    for b in first..=last {
        let g_start = area.base_pfn + (b << opb);
        let g_end = g_start + (1 << opb);
        let still_used = (g_start..g_end).any(|p| {
            zone.page(p).is_some_and(|pg| {
                pg.state() == PageState::Head && pg.migratetype() == MigrateType::Cma
            })
        });
        if !still_used {
            bitmap_set(&mut area.bitmap, b, 1, false);
        }
    }
    true
}

impl CmaArea {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base_pfn(&self) -> Pfn {
        self.base_pfn
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn order_per_bit(&self) -> usize {
        self.order_per_bit
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Where requests are placed in the area.
    pub fn fit(&self) -> CmaFit {
        self.fit
    }

    /// Change the placement policy (only where later requests go; nothing moves).
    pub fn set_fit(&mut self, fit: CmaFit) {
        self.fit = fit;
    }

    /// Whether requests that find no room move unpinned movable chunks.
    pub fn defrag(&self) -> bool {
        self.defrag
    }

    /// Turn defragmentation on or off (off: movable chunks behave as plain allocations).
    pub fn set_defrag(&mut self, on: bool) {
        self.defrag = on;
    }

    /// A movable chunk's record.
    pub fn chunk(&self, id: ChunkId) -> Option<ChunkInfo> {
        self.movable.get(id).copied()
    }

    /// Every movable chunk, lowest address first.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkInfo> + '_ {
        self.movable.iter().copied()
    }

    /// The allocation bitmap, bit `i` of word `i / 64` covering pages
    /// `base_pfn + (i << order_per_bit)..`.
    pub fn bitmap(&self) -> &[u64] {
        &self.bitmap
    }

    fn bits(&self) -> usize {
        self.count >> self.order_per_bit
    }

    /// Does the area contain `pfn`?
    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn >= self.base_pfn && pfn < self.base_pfn + self.count
    }

    /// Pages handed out.
    pub fn used_pages(&self) -> usize {
        let set: usize = self.bitmap.iter().map(|w| w.count_ones() as usize).sum();
        set << self.order_per_bit
    }

    /// Largest free run, in pages.
    pub fn maxchunk_pages(&self) -> usize {
        let (mut best, mut run) = (0, 0);
        for i in 0..self.bits() {
            if bitmap_test(&self.bitmap, i) {
                run = 0;
            } else {
                run += 1;
                best = best.max(run);
            }
        }
        best << self.order_per_bit
    }

    pub fn state(&self) -> CmaState {
        CmaState {
            name: self.name.clone(),
            base_pfn: self.base_pfn,
            count: self.count,
            order_per_bit: self.order_per_bit,
            used: self.used_pages(),
            maxchunk: self.maxchunk_pages(),
            fit: self.fit,
            movable_chunks: self.movable.iter().count(),
            pinned_chunks: self.movable.iter().filter(|c| c.pins > 0).count(),
            defrag: self.defrag,
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod movable_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_unaligned_areas() {
        // Unaligned base, unaligned size, empty, size not a multiple of the granule.
        for (base, count, order_per_bit) in
            [(100, 512, 0), (512, 100, 0), (512, 0, 0), (512, 512, 10)]
        {
            assert_eq!(
                cma_init_reserved_mem(base, count, order_per_bit, "x").unwrap_err(),
                CmaError::Misaligned,
                "{base} {count} {order_per_bit}"
            );
        }
        let a = cma_init_reserved_mem(512, 1024, 2, "reserved").unwrap();
        assert_eq!(a.bits(), 256);
        assert_eq!(a.bitmap().len(), 4);
        assert_eq!(a.maxchunk_pages(), 1024);
        assert_eq!(a.used_pages(), 0);
    }
}
