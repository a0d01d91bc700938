//! The one hardware seam of the virtio layer, like rcore virtio-drivers' `Hal`: DMA memory
//! (allocation, its physical address, safe byte and little-endian access), memory
//! barriers, and waiting for the device's interrupt with a clock for timeouts.
//!
//! # Theory of operation
//!
//! DMA memory is handed out in whole pages as a [`DmaRegion`]: its physical address (what
//! goes into descriptors and queue registers) and its length. The driver never holds a
//! pointer into it; every access goes through the Hal with a region and an offset, and the
//! Hal checks the range, so a bad offset is an error, never a stray write. Ring indices
//! are read and written with [`Hal::read_u16`] / [`Hal::write_u16`], single accesses, so
//! the device never sees half an index (virtio 1.x section 2.7.13). Wider fields use the
//! byte copies with little-endian helpers (virtio is little-endian, section 1.4).
//!
//! Waiting: [`Hal::interrupt_count`] counts the device's interrupts. A waiter reads it,
//! checks the used ring, and only then calls [`Hal::wait_for_interrupt`] with the count it
//! read, which returns at once if an interrupt came in between: no lost wake-up. The wait
//! may also return early (a timer tick); callers loop and check [`Hal::now_ns`].
//!
//! The firmware implementation is `crate::driver::virtio_mmio::KmemHal` (coherent buffers from
//! the DMA API, identity-mapped, WFI); the host one is `crate::virtio::fake`.
#![forbid(unsafe_code)]

use core::fmt;

use crate::util::size::PAGE_SIZE;

/// A block of DMA memory from [`Hal::dma_alloc`]: whole pages, physically contiguous,
/// zeroed when handed out. Give it back with [`Hal::dma_free`].
#[derive(Debug, PartialEq, Eq)]
pub struct DmaRegion {
    paddr: u64,
    pages: usize,
}

impl DmaRegion {
    /// For Hal implementations: describe pages they handed out.
    pub fn new(paddr: u64, pages: usize) -> Self {
        DmaRegion { paddr, pages }
    }

    /// Physical (bus) address of the first byte.
    pub fn paddr(&self) -> u64 {
        self.paddr
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE as usize
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// Whether `[offset, offset + len)` lies inside the region (for Hal implementations).
    pub fn check(&self, offset: usize, len: usize) -> Result<(), HalError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(HalError::OutOfBounds {
                offset,
                len,
                size: self.len(),
            }),
        }
    }
}

/// Memory-ordering points the virtqueue needs (section 2.7.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barrier {
    /// Earlier stores to DMA memory are seen before later ones (descriptors and ring entry
    /// before the available index).
    Write,
    /// Later loads from DMA memory see what the device wrote before the loads already done
    /// (the used index before the used element).
    Read,
    /// Everything before, loads and stores, before everything after, including the MMIO
    /// write of a notification.
    Full,
}

/// Why a Hal operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HalError {
    /// No physically contiguous run of `pages` pages was free.
    OutOfMemory { pages: usize },
    /// An access outside a region.
    OutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    /// A region this Hal did not hand out (or already freed).
    NotOurs { paddr: u64 },
    /// A 16-bit access at an odd offset.
    Misaligned { offset: usize },
}

impl fmt::Display for HalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HalError::OutOfMemory { pages } => write!(f, "no {pages} contiguous page(s) for DMA"),
            HalError::OutOfBounds { offset, len, size } => write!(
                f,
                "DMA access of {len} byte(s) at offset {offset:#x} outside a {size:#x}-byte region"
            ),
            HalError::NotOurs { paddr } => write!(f, "DMA region at {paddr:#x} was not handed out"),
            HalError::Misaligned { offset } => {
                write!(f, "16-bit DMA access at odd offset {offset:#x}")
            }
        }
    }
}

/// The hardware seam: one instance per device (its interrupt count is that device's).
pub trait Hal {
    /// `pages` zeroed, physically contiguous pages the device may read and write.
    fn dma_alloc(&self, pages: usize) -> Result<DmaRegion, HalError>;
    /// Give back a region from [`Hal::dma_alloc`].
    fn dma_free(&self, region: DmaRegion) -> Result<(), HalError>;
    /// Copy `buf.len()` bytes out of the region from `offset`.
    fn read(&self, region: &DmaRegion, offset: usize, buf: &mut [u8]) -> Result<(), HalError>;
    /// Copy `data` into the region at `offset`.
    fn write(&self, region: &DmaRegion, offset: usize, data: &[u8]) -> Result<(), HalError>;
    /// One single-copy-atomic little-endian 16-bit load (`offset` even).
    fn read_u16(&self, region: &DmaRegion, offset: usize) -> Result<u16, HalError>;
    /// One single-copy-atomic little-endian 16-bit store (`offset` even).
    fn write_u16(&self, region: &DmaRegion, offset: usize, value: u16) -> Result<(), HalError>;
    fn barrier(&self, kind: Barrier);
    /// Interrupts taken from this device so far.
    fn interrupt_count(&self) -> u64;
    /// Sleep until the interrupt count differs from `seen` (at once if it already does);
    /// may return early, so callers loop.
    fn wait_for_interrupt(&self, seen: u64);
    /// A monotonic clock in nanoseconds, for timeouts.
    fn now_ns(&self) -> u64;

    fn read_u32(&self, region: &DmaRegion, offset: usize) -> Result<u32, HalError> {
        let mut b = [0u8; 4];
        self.read(region, offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write_u32(&self, region: &DmaRegion, offset: usize, value: u32) -> Result<(), HalError> {
        self.write(region, offset, &value.to_le_bytes())
    }

    fn write_u64(&self, region: &DmaRegion, offset: usize, value: u64) -> Result<(), HalError> {
        self.write(region, offset, &value.to_le_bytes())
    }
}
