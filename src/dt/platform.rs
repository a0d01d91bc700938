//! Platform description from the flattened device tree (safe; host-tested).
//!
//! (Skeleton: the struct is the agreed boundary between the DT parser and the boot code;
//! `parse` is to be implemented.)

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

/// How PSCI calls reach the firmware (`/psci` `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciConduit {
    Hvc,
    Smc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pl011Info {
    pub base: u64,
    pub size: u64,
    /// GIC INTID of the receive/transmit interrupt (SPI n -> 32 + n).
    pub intid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GicInfo {
    /// 2 or 3.
    pub version: u8,
    pub distributor: Range<u64>,
    /// GICv3 redistributor region(s).
    pub redistributor: Range<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerInfo {
    /// INTIDs of the EL1 physical and virtual timers (PPI n -> 16 + n).
    pub phys_intid: u32,
    pub virt_intid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmioDevice {
    pub path: String,
    pub base: u64,
    pub size: u64,
    pub intid: Option<u32>,
}

/// A `/reserved-memory` child as written in the tree (interpretation lives in `reserved`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedNode {
    pub name: String,
    pub reg: Vec<Range<u64>>,
    pub size: Option<u64>,
    pub compatible: Option<String>,
    pub no_map: bool,
    pub reusable: bool,
}

/// Everything the boot code needs from the device tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Platform {
    /// Where the blob itself lives (kept out of the page allocator).
    pub dtb: Range<u64>,
    /// `/memory` banks, sorted by base.
    pub memory: Vec<Range<u64>>,
    pub bootargs: Option<String>,
    pub stdout_path: Option<String>,
    pub psci: Option<PsciConduit>,
    pub uart: Option<Pl011Info>,
    pub gic: Option<GicInfo>,
    pub timer: Option<TimerInfo>,
    /// Every `virtio,mmio` node, in tree order.
    pub virtio_mmio: Vec<MmioDevice>,
    pub reserved: Vec<ReservedNode>,
    /// Every device register window to map as Device-nGnRE.
    pub mmio: Vec<Range<u64>>,
}

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtError {
    /// Placeholder until the parser lands.
    Unimplemented,
}

impl Platform {
    /// Validate the header of `blob` and parse it. `blob_addr` is its physical address.
    pub fn parse(_blob: &[u8], _blob_addr: u64) -> Result<Platform, DtError> {
        Err(DtError::Unimplemented)
    }
}
