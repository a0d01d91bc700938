//! Why a kernel-memory request failed: one variant per refusal, with the data that explains
//! it. `Display` is one line for the console (the wording the shell has always printed).
#![forbid(unsafe_code)]

use alloc::string::String;
use core::fmt;

use super::anon_pins::IoPinError;
use crate::memory::mmu::MapError;
use crate::mm::{AllocError, CmaError, MmError, Pfn, PinError};
use crate::pasr::vacate::VacateError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmemError {
    NotInitialised,
    /// [`super::init`] ran twice.
    AlreadyInitialised,
    NoSuchArea(String),
    /// `/memory` describes no whole page of RAM.
    NoRam,
    /// No free 2 MiB-aligned piece of RAM can hold the memmap of this many bytes.
    NoRoomForMemmap {
        bytes: usize,
    },
    /// The zone refused its own metadata.
    ZoneSetup(MmError),
    /// The zone refused to reserve a RAM bank.
    ZoneReserve(MmError),
    /// The zone refused to take usable RAM.
    ZoneFree(MmError),
    /// The page tables could not be held for migration.
    PageTables(MapError),
    /// `cma_alloc` of zero pages.
    CmaZeroPages {
        area: String,
    },
    /// `cma_alloc` of more pages than the area has.
    CmaTooLarge {
        area: String,
        requested: usize,
        available: usize,
    },
    /// `cma_alloc` with an alignment no area can satisfy.
    CmaAlignTooLarge {
        area: String,
        align_order: u32,
    },
    /// `cma_alloc` was tried and failed.
    CmaAllocFailed {
        area: String,
        count: usize,
        error: CmaError,
    },
    /// A movable chunk operation was refused (unknown id, pinned, not pinned).
    CmaChunk {
        area: String,
        error: CmaError,
    },
    /// `cma_release` of pages the area did not hand out.
    CmaNotHandedOut {
        area: String,
        pfn: Pfn,
        count: usize,
    },
    /// The buddy refused a pinned allocation.
    AllocFailed {
        order: usize,
        error: AllocError,
    },
    /// The zone refused to record the owner of a pinned allocation.
    OwnerRefused {
        order: usize,
        error: MmError,
    },
    /// `free_pinned` of something `alloc_pinned` did not hand out.
    NotPinned {
        pfn: Pfn,
        order: usize,
    },
    /// The zone refused to free a pinned allocation.
    FreeFailed(MmError),
    /// The zone's invariant check failed; mm's description of what is broken.
    InvariantBroken(String),
    /// `mem grow` before `mem start`.
    AnonNotStarted,
    /// A measurement that shapes the anonymous workload itself found it already holding
    /// pages (someone ran `mem grow`): it would free them.
    AnonInUse {
        pages: usize,
    },
    /// A new anonymous page could not be owned or mapped.
    AnonGrow(PlaceError),
    /// No anonymous page matched a pin request (none mapped, or all under I/O).
    AnonNothingToPin,
    /// A long-term pin of an anonymous page was refused (the page is as before).
    AnonPin(PinError),
    /// A short-term (I/O) pin was refused or released twice.
    IoPin(IoPinError),
    /// A page-cache page could not be owned or mapped.
    CacheRead(PlaceError),
    /// A page-cache block number past the end of the store.
    BlockPastEnd {
        block: usize,
        blocks: usize,
    },
    /// The board's tree describes no DRAM banks (`monolith,pasr-dram`), or PASR is off.
    NoPasr,
    /// The vacating pass could not run.
    Vacate(VacateError),
}

/// Why a new movable page could not be put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceError {
    /// The zone refused the owner record.
    Owner(MmError),
    /// The movable window refused the mapping.
    Map(MapError),
}

impl fmt::Display for PlaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaceError::Owner(e) => write!(f, "{e}"),
            PlaceError::Map(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for PlaceError {}

impl fmt::Display for KmemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmemError::NotInitialised => write!(f, "memory manager not initialised"),
            KmemError::AlreadyInitialised => write!(f, "memory manager already initialised"),
            KmemError::NoSuchArea(name) => write!(f, "no CMA area named '{name}'"),
            KmemError::NoRam => write!(f, "no RAM in /memory"),
            KmemError::NoRoomForMemmap { bytes } => {
                write!(f, "no room for the memmap ({} KiB)", bytes / 1024)
            }
            KmemError::ZoneSetup(e) => write!(f, "zone: {e}"),
            KmemError::ZoneReserve(e) => write!(f, "zone reserve: {e}"),
            KmemError::ZoneFree(e) => write!(f, "zone free: {e}"),
            KmemError::PageTables(e) => write!(f, "cannot migrate pages: {e}"),
            KmemError::CmaZeroPages { area } => {
                write!(f, "cma_alloc from '{area}': zero pages requested")
            }
            KmemError::CmaTooLarge {
                area,
                requested,
                available,
            } => write!(
                f,
                "cma_alloc from '{area}': {requested} pages requested, the area has only {available}"
            ),
            KmemError::CmaAlignTooLarge { area, align_order } => write!(
                f,
                "cma_alloc from '{area}': alignment order {align_order} too large"
            ),
            KmemError::CmaAllocFailed { area, count, error } => {
                write!(f, "cma_alloc of {count} pages from '{area}' failed: {error}")
            }
            KmemError::CmaChunk { area, error } => write!(f, "cma area '{area}': {error}"),
            KmemError::CmaNotHandedOut { area, pfn, count } => write!(
                f,
                "cma_release: pfn {pfn:#x} +{count} was not handed out by area '{area}'"
            ),
            KmemError::AllocFailed { order, error } => write!(f, "alloc order {order}: {error:?}"),
            KmemError::OwnerRefused { order, error } => write!(f, "alloc order {order}: {error}"),
            KmemError::NotPinned { pfn, order } => {
                write!(f, "pfn {pfn:#x} order {order} is not a pinned allocation")
            }
            KmemError::FreeFailed(e) => write!(f, "free: {e}"),
            KmemError::InvariantBroken(what) => f.write_str(what),
            KmemError::AnonNotStarted => write!(f, "anon workload not started (anon start)"),
            KmemError::AnonInUse { pages } => write!(
                f,
                "the anonymous workload holds {pages} pages already (free them first: mem shrink)"
            ),
            KmemError::AnonGrow(why) => write!(f, "anon grow: {why}"),
            KmemError::AnonNothingToPin => write!(f, "no anonymous page to pin"),
            KmemError::AnonPin(e) => write!(f, "long-term pin: {e}"),
            KmemError::IoPin(e) => write!(f, "short-term pin: {e}"),
            KmemError::CacheRead(why) => write!(f, "page cache read: {why}"),
            KmemError::BlockPastEnd { block, blocks } => write!(
                f,
                "block {block} is past the end of the store ({blocks} blocks)"
            ),
            KmemError::NoPasr => write!(
                f,
                "no PASR on this board (no monolith,pasr-dram in the device tree, or monolith.pasr=off); boot --board virt-pasr"
            ),
            KmemError::Vacate(e) => write!(f, "vacating: {e}"),
        }
    }
}

impl core::error::Error for KmemError {}
