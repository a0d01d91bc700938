//! Migrate types: what kind of allocation a pageblock is meant to hold.
//!
//! # Theory of operation
//!
//! Grouping pages by mobility keeps unmovable allocations from being sprinkled across all
//! of memory, so large contiguous ranges can later be recovered by migrating the movable
//! pages out. The numbering and names follow `include/linux/mmzone.h` so `/proc/pagetypeinfo`
//! reads the same as on Linux. `HighAtomic` exists only to keep Linux's numbering and report
//! layout; nothing here reserves high-atomic blocks.
#![forbid(unsafe_code)]

/// Migrate type of a pageblock (and of the free lists holding its free pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MigrateType {
    Unmovable = 0,
    Movable = 1,
    Reclaimable = 2,
    /// Kept for Linux numbering and report layout; never assigned by this allocator.
    HighAtomic = 3,
    /// Contiguous Memory Allocator blocks: serve Movable requests only, never retyped by the
    /// allocator itself.
    Cma = 4,
    /// Blocks being emptied (page isolation): nothing is handed out from them.
    Isolate = 5,
}

/// Number of migrate types (`MIGRATE_TYPES`).
pub const MIGRATE_TYPES: usize = 6;
/// Types that have per-request free lists and may steal from each other (`MIGRATE_PCPTYPES`).
pub const MIGRATE_PCPTYPES: usize = 3;

/// Linux's `migratetype_names[]`, as printed by `/proc/pagetypeinfo`.
pub const MIGRATETYPE_NAMES: [&str; MIGRATE_TYPES] = [
    "Unmovable",
    "Movable",
    "Reclaimable",
    "HighAtomic",
    "CMA",
    "Isolate",
];

/// Linux's `fallbacks[]`: where a request of a given type looks, in order, once its own lists
/// are empty. Cma and Isolate never appear: nobody steals from them.
pub const FALLBACKS: [[MigrateType; MIGRATE_PCPTYPES - 1]; MIGRATE_PCPTYPES] = [
    [MigrateType::Reclaimable, MigrateType::Movable],
    [MigrateType::Reclaimable, MigrateType::Unmovable],
    [MigrateType::Unmovable, MigrateType::Movable],
];

impl MigrateType {
    /// Every type, in Linux order.
    pub const ALL: [MigrateType; MIGRATE_TYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Cma,
        MigrateType::Isolate,
    ];

    /// Decode a stored pageblock byte; `None` for anything that is not a type.
    #[inline]
    pub const fn from_u8(v: u8) -> Option<MigrateType> {
        match v {
            0 => Some(MigrateType::Unmovable),
            1 => Some(MigrateType::Movable),
            2 => Some(MigrateType::Reclaimable),
            3 => Some(MigrateType::HighAtomic),
            4 => Some(MigrateType::Cma),
            5 => Some(MigrateType::Isolate),
            _ => None,
        }
    }

    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Linux's name for the type.
    pub const fn name(self) -> &'static str {
        MIGRATETYPE_NAMES[self as usize]
    }

    /// Request types a caller may ask [`crate::mm::Zone::alloc_pages`] for.
    #[inline]
    pub const fn is_pcptype(self) -> bool {
        (self as usize) < MIGRATE_PCPTYPES
    }

    /// `migratetype_is_mergeable()`: blocks of these types may merge with each other at
    /// pageblock order and above (the merged block takes the freeing side's type). Cma and
    /// Isolate only merge with their own kind, so CMA memory never leaks into the general
    /// pool and isolated ranges never swallow neighbours.
    #[inline]
    pub const fn is_mergeable(self) -> bool {
        self.is_pcptype()
    }
}
