//! Page size and human-readable sizes.

use alloc::format;
use alloc::string::String;

/// log2 of the page size: 4 KiB pages, the granule of the MMU and of the page allocator.
pub const PAGE_SHIFT: u32 = 12;
/// The one page size. The allocator's frame numbers, the device-tree planner's alignment
/// checks, the memory map and the translation tables all count in it.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// `256 MiB`, `64 KiB`, or `0x1234 bytes`: the largest unit (up to MiB, as Linux's boot
/// messages print CMA sizes) that divides `bytes` exactly, so the text never rounds a size
/// a reader might act on.
pub fn format_size(bytes: u64) -> String {
    if bytes != 0 && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes != 0 && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes:#x} bytes")
    }
}

/// A size for people reading a summary: whole GiB/MiB/KiB when exact, else one decimal
/// (`1.5 MiB`), else bytes (`36176 B`). Use [`format_size`] where the exact value matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl core::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{} {unit}", n >> shift);
            }
        }
        if n >= MIB {
            write!(f, "{:.1} MiB", n as f64 / MIB as f64)
        } else if n >= KIB {
            write!(f, "{:.1} KiB", n as f64 / KIB as f64)
        } else {
            write!(f, "{n} B")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_largest_exact_unit() {
        assert_eq!(format_size(256 * MIB), "256 MiB");
        assert_eq!(format_size(2 * GIB), "2048 MiB");
        assert_eq!(format_size(1536 * MIB), "1536 MiB");
        assert_eq!(format_size(12 * KIB), "12 KiB");
        assert_eq!(format_size(0x1234), "0x1234 bytes");
        assert_eq!(format_size(0), "0x0 bytes");
    }

    #[test]
    fn summary_sizes_round_only_when_inexact() {
        assert_eq!(format!("{}", ByteSize(GIB)), "1 GiB");
        assert_eq!(format!("{}", ByteSize(256 * MIB)), "256 MiB");
        assert_eq!(
            format!("{}", ByteSize(3 * MIB / 2)),
            "1536 KiB",
            "exact KiB stay exact"
        );
        assert_eq!(format!("{}", ByteSize(3 * MIB / 2 + 1)), "1.5 MiB");
        assert_eq!(format!("{}", ByteSize(36176)), "35.3 KiB");
        assert_eq!(format!("{}", ByteSize(1000)), "1000 B");
    }
}
