//! The DMA layer: Linux's DMA API for one device (`kernel/dma/`), DMA-BUF heaps
//! (`drivers/dma-buf/heaps/`), dma-buf objects (`drivers/dma-buf/dma-buf.c`), CPU-access
//! brackets and `dma_resv` fences, as safe policy code that builds and tests on the host.
//!
//! # Theory of operation
//!
//! - [`device`] reads what a device can reach from the device tree, as `of_dma_configure`
//!   does: its CMA area, `dma-coherent`, the bus's `dma-ranges`; [`DmaConstraints`] is what
//!   an attachment is checked against.
//! - [`heap`] hands out pages: `system` (order-0 pages, scattered), one CMA heap per CMA
//!   area, one carveout heap per `no-map` `shared-dma-pool` region. Pages come through the
//!   [`heap::PageSource`] seam (kmem in the firmware, a real mm `Zone` + `CmaArea` or a fake
//!   on the host); everything handed out stays unmovable while it lives.
//! - [`buf`] turns an allocation into a reference-counted dma-buf with attachments and
//!   mappings; [`access`] does `begin_cpu_access`/`end_cpu_access` through the
//!   [`access::CacheMaintenance`] seam; [`fence`] is the reservation object and the job
//!   queue; [`bufinfo`] prints debugfs `bufinfo` in Linux's format.
//! - [`pool`] sizes and runs the coherent atomic pool for callers that cannot wait.
//!
//! The firmware glue (`crate::dma_service`) holds one set of these under
//! a lock; nothing here touches hardware.
#![forbid(unsafe_code)]

pub mod access;
pub mod buf;
pub mod bufinfo;
pub mod device;
pub mod fence;
mod firstfit;
pub mod heap;
pub mod pool;

pub use device::{DeviceDma, DmaConstraints, DmaRange};

use crate::mm::{Pfn, PAGE_SHIFT};

/// One physically contiguous run of pages of a buffer (a scatterlist entry before mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub pfn: Pfn,
    pub pages: usize,
}

impl Segment {
    /// CPU physical address of the first byte.
    pub fn phys(&self) -> u64 {
        (self.pfn as u64) << PAGE_SHIFT
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        (self.pages as u64) << PAGE_SHIFT
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }
}

/// Pages needed for `bytes` (`PAGE_ALIGN(len) >> PAGE_SHIFT`), `None` on overflow.
pub fn pages_for(bytes: u64) -> Option<usize> {
    let pages = bytes.checked_add((1 << PAGE_SHIFT) - 1)? >> PAGE_SHIFT;
    usize::try_from(pages).ok()
}

/// Linux's `get_order(size)`: the smallest order whose block holds `bytes`.
pub fn get_order(bytes: u64) -> u32 {
    let pages = pages_for(bytes).unwrap_or(usize::MAX).max(1);
    usize::BITS - (pages - 1).leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_page_counts_follow_linux() {
        assert_eq!(pages_for(0), Some(0));
        assert_eq!(pages_for(1), Some(1));
        assert_eq!(pages_for(4096), Some(1));
        assert_eq!(pages_for(4097), Some(2));
        assert_eq!(get_order(1), 0);
        assert_eq!(get_order(4096), 0);
        assert_eq!(get_order(8192), 1);
        assert_eq!(get_order(12288), 2);
        assert_eq!(get_order(4 << 20), 10);
        let s = Segment {
            pfn: 0x40000,
            pages: 2,
        };
        assert_eq!((s.phys(), s.len()), (0x4000_0000, 8192));
    }
}
