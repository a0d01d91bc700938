//! Linux's text formats for the files of the virtual tree, and the debugfs `alloc`/`free`
//! bookkeeping.
//!
//! # Theory of operation
//!
//! Tools and people compare our files with a Linux machine's, so where Linux has the file
//! the bytes follow Linux's `seq_printf` formats:
//! - sysfs/debugfs numbers (`count`, `used`, `maxchunk`, `base_pfn`, `order_per_bit`,
//!   `alloc_pages_success`, ...): `"%llu\n"` ([`number_attr`]).
//! - debugfs `bitmap` (`debugfs_create_u32_array`): the bitmap read as 32-bit words,
//!   `"%u"` separated by spaces, newline at the end ([`u32_array`], [`bitmap_u32_words`]).
//! - `/proc/meminfo` (`fs/proc/meminfo.c`, `show_val_kb`): label padded to 16 columns,
//!   value right-aligned in 8, then `" kB"` ([`meminfo_line`]).
//! - `/proc/buddyinfo` and `/proc/pagetypeinfo` (`mm/vmstat.c`), including Linux's trailing
//!   blanks ([`buddyinfo_line`], [`pagetypeinfo`]).
//! - `/proc/iomem` (`kernel/resource.c`, `r_show`): two blanks of indent per nesting level,
//!   `start-end : name` with at least 8 hex digits ([`iomem`]).
//!
//! [`CmaDebugAllocations`] is `mm/cma_debug.c`'s list of test allocations: `alloc N`
//! remembers each allocation, `free N` releases N pages taking whole allocations from the
//! list and splitting the last one only when `order_per_bit` is 0, exactly like
//! `cma_free_mem`. The glue performs the releases it returns.
#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// `"%llu\n"`, the format of every numeric sysfs and debugfs attribute here.
pub fn number_attr(value: u64) -> String {
    format!("{}\n", value)
}

/// debugfs `u32_array` format: `"1 2 3\n"`; an empty array is a lone newline.
pub fn u32_array(words: &[u32]) -> String {
    let mut text = String::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{}", word);
    }
    text.push('\n');
    text
}

/// The CMA bitmap as debugfs shows it: `DIV_ROUND_UP(nbits, 32)` u32 words, each 64-bit
/// bitmap word contributing its low half first (arm64 is little-endian).
pub fn bitmap_u32_words(bitmap: &[u64], nbits: usize) -> Vec<u32> {
    let count = nbits.div_ceil(32);
    (0..count)
        .map(|i| {
            let long = bitmap.get(i / 2).copied().unwrap_or(0);
            let half = if i % 2 == 0 {
                long as u32
            } else {
                (long >> 32) as u32
            };
            // Bits past the end are not part of the area; Linux never sets them either.
            let valid = nbits - i * 32;
            if valid >= 32 {
                half
            } else {
                half & ((1u32 << valid) - 1)
            }
        })
        .collect()
}

fn bit(bitmap: &[u64], index: usize) -> bool {
    bitmap
        .get(index / 64)
        .is_some_and(|long| long >> (index % 64) & 1 == 1)
}

/// debugfs `used`: set bits times pages per bit.
pub fn cma_used_pages(bitmap: &[u64], nbits: usize, order_per_bit: u32) -> u64 {
    let set = (0..nbits).filter(|&i| bit(bitmap, i)).count() as u64;
    set << order_per_bit
}

/// debugfs `maxchunk`: the longest run of clear bits, in pages.
pub fn cma_maxchunk_pages(bitmap: &[u64], nbits: usize, order_per_bit: u32) -> u64 {
    let (mut best, mut run) = (0u64, 0u64);
    for i in 0..nbits {
        if bit(bitmap, i) {
            run = 0;
        } else {
            run += 1;
            best = best.max(run);
        }
    }
    best << order_per_bit
}

/// One `/proc/meminfo` line for a value in kB, e.g. `meminfo_line("CmaFree", 1024)`.
pub fn meminfo_line(label: &str, kb: u64) -> String {
    format!("{:<16}{:>8} kB\n", format!("{}:", label), kb)
}

/// One `/proc/buddyinfo` line: free block counts per order for one zone.
pub fn buddyinfo_line(node: u32, zone: &str, nr_free: &[u64]) -> String {
    let mut line = format!("Node {}, zone {:>8} ", node, zone);
    for count in nr_free {
        let _ = write!(line, "{:>6} ", count);
    }
    line.push('\n');
    line
}

/// One zone's numbers for `/proc/pagetypeinfo`.
pub struct ZoneTypeInfo<'a> {
    pub node: u32,
    pub zone: &'a str,
    /// (migrate type name, free blocks per order).
    pub free: &'a [(&'a str, &'a [u64])],
    /// Pageblocks per migrate type, in the order of `PageTypeInfo::type_names`.
    pub blocks: &'a [u64],
}

pub struct PageTypeInfo<'a> {
    pub pageblock_order: u32,
    pub max_order: u32,
    pub type_names: &'a [&'a str],
    pub zones: &'a [ZoneTypeInfo<'a>],
}

/// `/proc/pagetypeinfo`.
pub fn pagetypeinfo(info: &PageTypeInfo<'_>) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "Page block order: {}", info.pageblock_order);
    let _ = writeln!(
        text,
        "Pages per block:  {}",
        1u64 << info.pageblock_order.min(63)
    );
    text.push('\n');
    let _ = write!(
        text,
        "{:<43} ",
        "Free pages count per migrate type at order"
    );
    for order in 0..=info.max_order {
        let _ = write!(text, "{:>6} ", order);
    }
    text.push('\n');
    for zone in info.zones {
        for (type_name, counts) in zone.free {
            let _ = write!(
                text,
                "Node {:>4}, zone {:>8}, type {:>12} ",
                zone.node, zone.zone, type_name
            );
            for count in counts.iter() {
                let _ = write!(text, "{:>6} ", count);
            }
            text.push('\n');
        }
    }
    let _ = write!(text, "\n{:<23}", "Number of blocks type ");
    for name in info.type_names {
        let _ = write!(text, "{:>12} ", name);
    }
    text.push('\n');
    for zone in info.zones {
        let _ = write!(text, "Node {}, zone {:>8} ", zone.node, zone.zone);
        for count in zone.blocks {
            let _ = write!(text, "{:>12} ", count);
        }
        text.push('\n');
    }
    text
}

/// One `/proc/iomem` resource; `depth` 0 is a child of the root.
pub struct IoResource<'a> {
    pub start: u64,
    /// Inclusive, as in `struct resource`.
    pub end: u64,
    pub name: &'a str,
    pub depth: usize,
}

/// `/proc/iomem` from resources listed in tree order (parents before children).
pub fn iomem(resources: &[IoResource<'_>]) -> String {
    let mut text = String::new();
    for resource in resources {
        let _ = writeln!(
            text,
            "{:indent$}{:08x}-{:08x} : {}",
            "",
            resource.start,
            resource.end,
            resource.name,
            indent = resource.depth * 2
        );
    }
    text
}

/// Which test allocation `free` takes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeOrder {
    /// `mm/cma_debug.c`: allocations go on the head of an hlist and `free` takes the head,
    /// so the most recent allocation is released first.
    NewestFirst,
    OldestFirst,
}

/// What `cma_free_mem` would do for one `echo N > free`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FreePlan {
    /// (first pfn, pages) to pass to `cma_release`, in order.
    pub releases: Vec<(u64, u64)>,
    /// Pages of the request that were not released (list empty, or a partial block with
    /// `order_per_bit != 0`).
    pub unreleased: u64,
}

/// The page count written to debugfs `free`: any `u64`, as `cma_free_write(void *data, u64
/// val)` takes it. 0 frees nothing; more than is allocated frees everything allocated
/// (`cma_free_mem` stops when its list runs dry and still returns 0). `None` for text that
/// is not a number (`simple_attr_write`'s -EINVAL).
pub fn debugfs_free_count(value: &str) -> Option<u64> {
    crate::shell::number::parse_u64(value.trim()).ok()
}

/// The allocations made through debugfs `alloc`, per area.
#[derive(Debug)]
pub struct CmaDebugAllocations {
    order: FreeOrder,
    /// Oldest at the front.
    allocations: VecDeque<(u64, u64)>,
}

impl CmaDebugAllocations {
    pub fn new(order: FreeOrder) -> Self {
        CmaDebugAllocations {
            order,
            allocations: VecDeque::new(),
        }
    }

    /// Remember a successful `alloc` of `pages` starting at `pfn`.
    pub fn record(&mut self, pfn: u64, pages: u64) {
        if pages > 0 {
            self.allocations.push_back((pfn, pages));
        }
    }

    pub fn pages(&self) -> u64 {
        self.allocations.iter().map(|(_, pages)| pages).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// Takes up to `pages` pages off the list and says what to release.
    pub fn free(&mut self, mut pages: u64, order_per_bit: u32) -> FreePlan {
        let mut plan = FreePlan::default();
        while pages > 0 {
            let next = match self.order {
                FreeOrder::NewestFirst => self.allocations.pop_back(),
                FreeOrder::OldestFirst => self.allocations.pop_front(),
            };
            let Some((pfn, count)) = next else {
                break;
            };
            if count <= pages {
                plan.releases.push((pfn, count));
                pages -= count;
            } else if order_per_bit == 0 {
                plan.releases.push((pfn, pages));
                self.put_back((pfn + pages, count - pages));
                pages = 0;
            } else {
                // A bit covers more than one page: a partial release would corrupt it.
                self.put_back((pfn, count));
                break;
            }
        }
        plan.unreleased = pages;
        plan
    }

    fn put_back(&mut self, allocation: (u64, u64)) {
        match self.order {
            FreeOrder::NewestFirst => self.allocations.push_back(allocation),
            FreeOrder::OldestFirst => self.allocations.push_front(allocation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn numbers_and_arrays() {
        assert_eq!(number_attr(4096), "4096\n");
        assert_eq!(u32_array(&[1, 0, 4294967295]), "1 0 4294967295\n");
        assert_eq!(u32_array(&[]), "\n");
    }

    #[test]
    fn bitmap_words_little_endian_and_trimmed() {
        let bitmap = [0x0000_0002_0000_0001u64, 0xffff_ffff_ffff_ffff];
        assert_eq!(
            bitmap_u32_words(&bitmap, 128),
            vec![1, 2, u32::MAX, u32::MAX]
        );
        assert_eq!(bitmap_u32_words(&bitmap, 70), vec![1, 2, 0x3f]);
        assert_eq!(bitmap_u32_words(&bitmap, 0), Vec::<u32>::new());
    }

    #[test]
    fn used_and_maxchunk() {
        // bits 0,1 used, 2..=5 free, 6 used, 7..=9 free
        let bitmap = [0b100_0011u64];
        assert_eq!(cma_used_pages(&bitmap, 10, 0), 3);
        assert_eq!(cma_used_pages(&bitmap, 10, 2), 12);
        assert_eq!(cma_maxchunk_pages(&bitmap, 10, 0), 4);
        assert_eq!(cma_maxchunk_pages(&bitmap, 10, 1), 8);
        assert_eq!(cma_maxchunk_pages(&[u64::MAX], 64, 0), 0);
    }

    #[test]
    fn meminfo_matches_show_val_kb() {
        assert_eq!(
            meminfo_line("MemTotal", 1048576),
            "MemTotal:        1048576 kB\n"
        );
        assert_eq!(meminfo_line("CmaFree", 0), "CmaFree:               0 kB\n");
    }

    #[test]
    fn buddyinfo_matches_vmstat() {
        assert_eq!(
            buddyinfo_line(0, "DMA", &[1, 22, 333]),
            "Node 0, zone      DMA      1     22    333 \n"
        );
    }

    #[test]
    fn pagetypeinfo_layout() {
        let zones = [ZoneTypeInfo {
            node: 0,
            zone: "DMA",
            free: &[("Unmovable", &[0, 1]), ("Movable", &[2, 3])],
            blocks: &[4, 500],
        }];
        let text = pagetypeinfo(&PageTypeInfo {
            pageblock_order: 9,
            max_order: 1,
            type_names: &["Unmovable", "Movable"],
            zones: &zones,
        });
        let expected = "Page block order: 9\n\
            Pages per block:  512\n\
            \n\
            Free pages count per migrate type at order       0      1 \n\
            Node    0, zone      DMA, type    Unmovable      0      1 \n\
            Node    0, zone      DMA, type      Movable      2      3 \n\
            \n\
            Number of blocks type     Unmovable      Movable \n\
            Node 0, zone      DMA            4          500 \n";
        assert_eq!(text, expected);
    }

    #[test]
    fn iomem_nesting() {
        let text = iomem(&[
            IoResource {
                start: 0x0900_0000,
                end: 0x0900_0fff,
                name: "pl011@9000000",
                depth: 0,
            },
            IoResource {
                start: 0x4000_0000,
                end: 0x7fff_ffff,
                name: "System RAM",
                depth: 0,
            },
            IoResource {
                start: 0x4020_0000,
                end: 0x40ff_ffff,
                name: "Kernel code",
                depth: 1,
            },
            IoResource {
                start: 0x1_0000_0000,
                end: 0x1_0000_0fff,
                name: "high",
                depth: 0,
            },
        ]);
        assert_eq!(
            text,
            "09000000-09000fff : pl011@9000000\n\
             40000000-7fffffff : System RAM\n  \
             40200000-40ffffff : Kernel code\n\
             100000000-100000fff : high\n"
        );
    }

    #[test]
    fn debug_free_newest_first_like_cma_debug() {
        let mut list = CmaDebugAllocations::new(FreeOrder::NewestFirst);
        list.record(100, 4);
        list.record(200, 8);
        let plan = list.free(10, 0);
        assert_eq!(plan.releases, vec![(200, 8), (100, 2)]);
        assert_eq!(plan.unreleased, 0);
        assert_eq!(list.pages(), 2);
        let plan = list.free(5, 0);
        assert_eq!(plan.releases, vec![(102, 2)]);
        assert_eq!(plan.unreleased, 3);
        assert!(list.is_empty());
    }

    #[test]
    fn debug_free_oldest_first_and_partial_blocks() {
        let mut list = CmaDebugAllocations::new(FreeOrder::OldestFirst);
        list.record(100, 4);
        list.record(200, 8);
        assert_eq!(list.free(5, 0).releases, vec![(100, 4), (200, 1)]);
        assert_eq!(list.pages(), 7);
        // With 2 pages per bit a partial release is refused and nothing changes.
        let plan = list.free(3, 1);
        assert_eq!(plan.releases, vec![]);
        assert_eq!(plan.unreleased, 3);
        assert_eq!(list.pages(), 7);
    }

    /// Linux's `mm/cma_debug.c`: `cma_free_write` hands any u64 to `cma_free_mem`, which
    /// frees allocations until the count or the list runs out, and never fails for a
    /// count that is too large.
    #[test]
    fn debugfs_free_takes_any_count_and_frees_at_most_what_is_allocated() {
        assert_eq!(debugfs_free_count("0"), Some(0));
        assert_eq!(debugfs_free_count(" 64\n"), Some(64));
        assert_eq!(debugfs_free_count("99999999999"), Some(99_999_999_999));
        assert_eq!(debugfs_free_count("x"), None);
        let mut list = CmaDebugAllocations::new(FreeOrder::NewestFirst);
        list.record(100, 4);
        list.record(200, 2);
        let plan = list.free(debugfs_free_count("1000000").unwrap(), 0);
        assert_eq!(plan.releases, vec![(200, 2), (100, 4)]);
        assert!(list.is_empty());
        assert_eq!(
            list.free(debugfs_free_count("0").unwrap(), 0).releases,
            vec![]
        );
    }
}
