//! DMA-BUF heaps (`drivers/dma-buf/heaps/`, `/dev/dma_heap/<name>`): named allocators a
//! buffer is taken from by name and size.
//!
//! # Theory of operation
//!
//! [`Heaps::new`] builds the list Linux would register for this machine:
//! - `system` ([`system`]): order-0 pages one by one from the buddy, unmovable while the
//!   buffer lives (taken as long-term pins, never from CMA pageblocks); scattered, so a
//!   buffer has one segment per page.
//! - `default_cma_region` for the default CMA area (Linux 6.17+'s fixed name,
//!   `DEFAULT_CMA_NAME` in `cma_heap.c`), then one heap per CMA area named after the area
//!   (`cma_get_name`: the reserved-memory node name with unit address, or `reserved` for
//!   `cma=`), as `add_cma_heaps` does; the default area therefore appears twice, under its
//!   fixed and its own name, both over the same area. A name already taken is skipped, as
//!   `dma_heap_add` refuses duplicates ([`cma`]).
//! - one carveout heap per `no-map` `shared-dma-pool` region, named after the region
//!   ([`carveout`]; Linux mainline has none, ION had them): first fit inside it.
//!
//! Pages come through [`PageSource`], the one seam: the firmware implements it over kmem,
//! host tests over a real mm `Zone` with its `CmaArea`s. Every page a heap takes is given
//! back by [`Heaps::free`]; a failed allocation gives back what it took before failing.
#![forbid(unsafe_code)]

pub mod carveout;
pub mod cma;
pub mod system;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::Segment;
use crate::dt::reserved::ReservedMemoryPlan;
use crate::mm::{ChunkId, ChunkInfo, Pfn};

/// Name of the heap over the default CMA area.
pub const DEFAULT_CMA_HEAP: &str = "default_cma_region";
/// Name of the system heap.
pub const SYSTEM_HEAP: &str = "system";

/// Why the page source refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub String);

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where heaps get pages. Pages from `alloc_pages` must never move while allocated
/// (unmovable or long-term pinned, outside CMA pageblocks); `cma_alloc` ranges are taken
/// out of the buddy, which makes them unmovable too. A movable chunk
/// (`cma_alloc_movable`, `mm::cma::movable`) is the exception: the area may move it while
/// nobody holds a pin on it.
pub trait PageSource {
    fn alloc_pages(&mut self, order: usize) -> Result<Pfn, PageError>;
    fn free_pages(&mut self, pfn: Pfn, order: usize) -> Result<(), PageError>;
    fn cma_alloc(&mut self, area: &str, count: usize, align_order: u32) -> Result<Pfn, PageError>;
    fn cma_release(&mut self, area: &str, pfn: Pfn, count: usize) -> Result<(), PageError>;
    fn cma_alloc_movable(
        &mut self,
        area: &str,
        count: usize,
        align_order: u32,
    ) -> Result<ChunkInfo, PageError>;
    fn cma_pin(&mut self, area: &str, id: ChunkId) -> Result<ChunkInfo, PageError>;
    fn cma_unpin(&mut self, area: &str, id: ChunkId) -> Result<(), PageError>;
    fn cma_release_movable(&mut self, area: &str, id: ChunkId) -> Result<(), PageError>;
}

/// Why a heap allocation or free failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeapError {
    NoSuchHeap(String),
    ZeroSize,
    /// More than the heap could ever hold.
    TooLarge {
        heap: String,
        bytes: u64,
    },
    /// The page source refused (out of memory, CMA busy...).
    Pages {
        heap: String,
        error: PageError,
    },
    /// The carveout has no free run that large.
    CarveoutFull {
        heap: String,
        pages: usize,
    },
    /// A free that does not match what the heap handed out.
    NotAllocated {
        heap: String,
    },
    /// Only CMA heaps hand out movable buffers.
    NotMovable {
        heap: String,
    },
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::NoSuchHeap(name) => write!(f, "no dma heap '{name}'"),
            HeapError::ZeroSize => f.write_str("zero-byte allocation"),
            HeapError::TooLarge { heap, bytes } => {
                write!(f, "{heap}: {bytes} bytes is more than the heap holds")
            }
            HeapError::Pages { heap, error } => write!(f, "{heap}: {error}"),
            HeapError::CarveoutFull { heap, pages } => {
                write!(f, "{heap}: no free run of {pages} pages")
            }
            HeapError::NotAllocated { heap } => write!(f, "{heap}: buffer was not allocated here"),
            HeapError::NotMovable { heap } => write!(f, "{heap}: not a CMA heap, nothing moves"),
        }
    }
}

impl core::error::Error for HeapError {}

/// What a heap handed out: the pages, and how they must be given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The heap's name (dma-buf's `exp_name`).
    pub heap: String,
    pub bytes: u64,
    pub segments: Vec<Segment>,
    /// In the CPU's linear map (false for `no-map` carveouts: the CPU cannot touch them).
    pub cpu_mapped: bool,
    /// The CMA area, for `cma_release`.
    pub(crate) cma_area: Option<String>,
    /// A movable buffer's chunk and how often it had moved when last pinned: its segment
    /// is where the chunk was at that pin, valid for a device only while pinned.
    pub(crate) chunk: Option<(ChunkId, u32)>,
}

#[cfg(test)]
impl Allocation {
    /// A `system`-heap buffer of one page at each of `pfns`, for tests of what sits on top
    /// of the heaps (tables, brackets, reports).
    pub(crate) fn system_pages(pfns: &[Pfn]) -> Allocation {
        Allocation {
            heap: "system".into(),
            bytes: (pfns.len() * crate::mm::PAGE_SIZE) as u64,
            segments: pfns.iter().map(|&pfn| Segment { pfn, pages: 1 }).collect(),
            cpu_mapped: true,
            cma_area: None,
            chunk: None,
        }
    }
}

impl Allocation {
    /// The one (phys, len) of a physically contiguous buffer.
    pub fn contiguous(&self) -> Option<(u64, u64)> {
        match self.segments.as_slice() {
            [only] => Some((only.phys(), only.len())),
            _ => None,
        }
    }

    pub fn pages(&self) -> usize {
        self.segments.iter().map(|s| s.pages).sum()
    }

    /// Can the area move this buffer while it is unpinned?
    pub fn is_movable(&self) -> bool {
        self.chunk.is_some()
    }

    /// Pin a movable buffer where it is now and point the segment there; `true` when it
    /// moved since the last pin (a device's old address for it is stale). A buffer that
    /// is not movable never moves: `false`, nothing to pin.
    pub fn pin(&mut self, pages: &mut dyn PageSource) -> Result<bool, HeapError> {
        let (Some((id, moves)), Some(area)) = (self.chunk, self.cma_area.as_deref()) else {
            return Ok(false);
        };
        let info = pages.cma_pin(area, id).map_err(|error| HeapError::Pages {
            heap: self.heap.clone(),
            error,
        })?;
        self.segments = alloc::vec![Segment {
            pfn: info.pfn,
            pages: info.count,
        }];
        self.chunk = Some((id, info.moves));
        Ok(info.moves != moves)
    }

    /// Drop a pin taken by [`Allocation::pin`] (nothing for a buffer that is not movable).
    pub fn unpin(&mut self, pages: &mut dyn PageSource) -> Result<(), HeapError> {
        let (Some((id, _)), Some(area)) = (self.chunk, self.cma_area.as_deref()) else {
            return Ok(());
        };
        pages.cma_unpin(area, id).map_err(|error| HeapError::Pages {
            heap: self.heap.clone(),
            error,
        })
    }
}

enum Kind {
    System,
    Cma(cma::CmaHeap),
    Carveout(carveout::CarveoutHeap),
}

struct Heap {
    name: String,
    kind: Kind,
}

/// Every heap of the machine. See the module documentation.
pub struct Heaps {
    heaps: Vec<Heap>,
    /// System memory in pages (a system buffer may not exceed it: `totalram_pages()`).
    total_pages: usize,
}

impl Heaps {
    /// The heaps for the CMA areas that are really active (`areas`, by name) and the
    /// plan's carveouts; `total_pages` bounds a system-heap buffer.
    pub fn new(plan: &ReservedMemoryPlan, active_areas: &[String], total_pages: usize) -> Heaps {
        let mut heaps = Heaps {
            heaps: Vec::new(),
            total_pages,
        };
        heaps.add(SYSTEM_HEAP, Kind::System);
        let area = |name: &str| {
            plan.cma_areas
                .iter()
                .find(|a| a.name == name && active_areas.contains(&a.name))
                .map(|a| cma::CmaHeap::new(&a.name, (a.size >> crate::mm::PAGE_SHIFT) as usize))
        };
        if let Some(default) = plan.default_cma_area().and_then(|d| area(&d.name)) {
            heaps.add(DEFAULT_CMA_HEAP, Kind::Cma(default));
        }
        for spec in &plan.cma_areas {
            if let Some(heap) = area(&spec.name) {
                heaps.add(&spec.name, Kind::Cma(heap));
            }
        }
        for c in carveout::carveouts_of(plan) {
            heaps.add(
                &c.name,
                Kind::Carveout(carveout::CarveoutHeap::new(&c.range)),
            );
        }
        heaps
    }

    /// `dma_heap_add`: a second heap with a taken name is refused (and left out).
    fn add(&mut self, name: &str, kind: Kind) -> bool {
        if self.heaps.iter().any(|h| h.name == name) {
            return false;
        }
        self.heaps.push(Heap {
            name: name.to_string(),
            kind,
        });
        true
    }

    /// `/dev/dma_heap` names, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.heaps.iter().map(|h| h.name.clone()).collect()
    }

    /// `DMA_HEAP_IOCTL_ALLOC`: `bytes` (rounded up to pages) from heap `name`.
    pub fn allocate(
        &mut self,
        name: &str,
        bytes: u64,
        pages: &mut dyn PageSource,
    ) -> Result<Allocation, HeapError> {
        self.allocate_as(name, bytes, false, pages)
    }

    /// A movable buffer from CMA heap `name`: one contiguous run the area may move while
    /// nobody has it pinned ([`Allocation::pin`]). Other heaps refuse.
    pub fn allocate_movable(
        &mut self,
        name: &str,
        bytes: u64,
        pages: &mut dyn PageSource,
    ) -> Result<Allocation, HeapError> {
        self.allocate_as(name, bytes, true, pages)
    }

    fn allocate_as(
        &mut self,
        name: &str,
        bytes: u64,
        movable: bool,
        pages: &mut dyn PageSource,
    ) -> Result<Allocation, HeapError> {
        let total = self.total_pages;
        let heap = self
            .heaps
            .iter_mut()
            .find(|h| h.name == name)
            .ok_or_else(|| HeapError::NoSuchHeap(name.to_string()))?;
        if bytes == 0 {
            return Err(HeapError::ZeroSize);
        }
        let too_large = || HeapError::TooLarge {
            heap: heap.name.clone(),
            bytes,
        };
        let count = super::pages_for(bytes).ok_or_else(too_large)?;
        let mut chunk = None;
        let (segments, cma_area, cpu_mapped) = match &mut heap.kind {
            Kind::Cma(c) if movable => {
                let info = c.allocate_movable(&heap.name, bytes, count, pages)?;
                chunk = Some((info.id, info.moves));
                let segment = Segment {
                    pfn: info.pfn,
                    pages: info.count,
                };
                (alloc::vec![segment], Some(c.area.clone()), true)
            }
            _ if movable => {
                return Err(HeapError::NotMovable {
                    heap: heap.name.clone(),
                })
            }
            Kind::System => {
                if count > total {
                    return Err(too_large());
                }
                (system::allocate(&heap.name, count, pages)?, None, true)
            }
            Kind::Cma(c) => (
                c.allocate(&heap.name, bytes, count, pages)?,
                Some(c.area.clone()),
                true,
            ),
            Kind::Carveout(c) => (c.allocate(&heap.name, count)?, None, false),
        };
        Ok(Allocation {
            heap: heap.name.clone(),
            bytes,
            segments,
            cpu_mapped,
            cma_area,
            chunk,
        })
    }

    /// Give every page of `allocation` back to where it came from.
    pub fn free(
        &mut self,
        allocation: &Allocation,
        pages: &mut dyn PageSource,
    ) -> Result<(), HeapError> {
        let heap = self
            .heaps
            .iter_mut()
            .find(|h| h.name == allocation.heap)
            .ok_or_else(|| HeapError::NoSuchHeap(allocation.heap.clone()))?;
        match &mut heap.kind {
            Kind::System => system::free(&heap.name, &allocation.segments, pages),
            Kind::Cma(c) => c.free(&heap.name, allocation, pages),
            Kind::Carveout(c) => c.free(&heap.name, &allocation.segments),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testsource;
