//! The zone's error types: [`MmError`] for set-up and page-level operations, [`AllocError`]
//! for allocations.
#![forbid(unsafe_code)]

use core::fmt;

use crate::mm::Pfn;

/// Errors from zone set-up and page-level operations. Nothing in the zone panics on bad
/// input; it reports one of these and leaves the zone unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The borrowed metadata is smaller than the span needs.
    MetadataTooSmall {
        needed: usize,
        got: usize,
    },
    /// More frames than the 32-bit list links can address.
    SpanTooLarge {
        pages: usize,
    },
    /// A pfn outside the zone.
    OutOfZone {
        pfn: Pfn,
    },
    /// An empty, reversed or overflowing range.
    InvalidRange {
        start: Pfn,
        end: Pfn,
    },
    InvalidOrder {
        order: usize,
    },
    /// The pfn is not the head of an allocated block.
    NotAllocated {
        pfn: Pfn,
    },
    /// Freed with a different order than allocated.
    OrderMismatch {
        pfn: Pfn,
        allocated: usize,
        freed: usize,
    },
    /// A frame is in use (or a hole) where the operation needs it free or reserved.
    Busy {
        pfn: Pfn,
    },
    /// A frame is a hole where RAM is required.
    Hole {
        pfn: Pfn,
    },
    /// The frame is already managed by the buddy.
    AlreadyManaged {
        pfn: Pfn,
    },
    /// A non-movable owner was about to be recorded on a Movable allocation in a Cma
    /// pageblock: long-term pins must be placed outside CMA (allocate with
    /// [`GfpFlags::NO_CMA`](crate::mm::GfpFlags::NO_CMA)).
    PinInCma {
        pfn: Pfn,
    },
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmError::MetadataTooSmall { needed, got } => {
                write!(f, "metadata too small: need {needed} entries, got {got}")
            }
            MmError::SpanTooLarge { pages } => write!(f, "zone span of {pages} pages is too large"),
            MmError::OutOfZone { pfn } => write!(f, "pfn {pfn:#x} is outside the zone"),
            MmError::InvalidRange { start, end } => {
                write!(f, "invalid pfn range {start:#x}..{end:#x}")
            }
            MmError::InvalidOrder { order } => write!(f, "invalid order {order}"),
            MmError::NotAllocated { pfn } => {
                write!(f, "pfn {pfn:#x} is not an allocated block head")
            }
            MmError::OrderMismatch {
                pfn,
                allocated,
                freed,
            } => {
                write!(
                    f,
                    "pfn {pfn:#x} allocated with order {allocated}, freed with order {freed}"
                )
            }
            MmError::Busy { pfn } => write!(f, "pfn {pfn:#x} is in use"),
            MmError::Hole { pfn } => write!(f, "pfn {pfn:#x} is a hole"),
            MmError::AlreadyManaged { pfn } => {
                write!(f, "pfn {pfn:#x} is already managed by the buddy")
            }
            MmError::PinInCma { pfn } => {
                write!(f, "pfn {pfn:#x}: non-movable owner in a CMA pageblock")
            }
        }
    }
}

impl core::error::Error for MmError {}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    InvalidOrder,
    /// Only Unmovable, Movable and Reclaimable may be requested.
    InvalidMigratetype,
    /// Would drop usable free pages below the `min` watermark.
    Watermark,
    /// No free block large enough that this request may use.
    NoMemory,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocError::InvalidOrder => "invalid order",
            AllocError::InvalidMigratetype => {
                "only Unmovable, Movable and Reclaimable may be requested"
            }
            AllocError::Watermark => "allocation would cross the min watermark",
            AllocError::NoMemory => "no free block large enough",
        })
    }
}

impl core::error::Error for AllocError {}
