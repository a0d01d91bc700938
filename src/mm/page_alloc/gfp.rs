//! Allocation requests (`include/linux/gfp_types.h`): the migrate type a request belongs to
//! ([`Gfp`]) and its modifiers ([`GfpFlags`]).
#![forbid(unsafe_code)]

use crate::mm::MigrateType;

/// Allocation modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GfpFlags(u32);

impl GfpFlags {
    pub const NONE: GfpFlags = GfpFlags(0);
    /// Ignore watermarks (`__GFP_MEMALLOC` / `ALLOC_NO_WATERMARKS`): the kernel's reserve.
    pub const MEMALLOC: GfpFlags = GfpFlags(1 << 0);
    /// Movable, but keep it out of CMA (it may be pinned long-term, or it is a migration
    /// target that should not eat CMA).
    pub const NO_CMA: GfpFlags = GfpFlags(1 << 1);

    #[inline]
    pub const fn contains(self, other: GfpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    pub const fn union(self, other: GfpFlags) -> GfpFlags {
        GfpFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for GfpFlags {
    type Output = GfpFlags;
    fn bitor(self, rhs: GfpFlags) -> GfpFlags {
        self.union(rhs)
    }
}

/// An allocation request: which free lists it belongs to and how hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gfp {
    pub migratetype: MigrateType,
    pub flags: GfpFlags,
}

impl Gfp {
    /// Kernel data structures: Unmovable, subject to watermarks.
    pub const KERNEL: Gfp = Gfp {
        migratetype: MigrateType::Unmovable,
        flags: GfpFlags::NONE,
    };
    /// `GFP_HIGHUSER_MOVABLE`: user/anonymous memory, may come from CMA.
    pub const MOVABLE: Gfp = Gfp {
        migratetype: MigrateType::Movable,
        flags: GfpFlags::NONE,
    };
    /// Reclaimable caches.
    pub const RECLAIMABLE: Gfp = Gfp {
        migratetype: MigrateType::Reclaimable,
        flags: GfpFlags::NONE,
    };

    #[inline]
    pub const fn with(self, flags: GfpFlags) -> Gfp {
        Gfp {
            migratetype: self.migratetype,
            flags: self.flags.union(flags),
        }
    }
}
