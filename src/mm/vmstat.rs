//! Reports in Linux's formats: `/proc/buddyinfo`, `/proc/pagetypeinfo`, `/proc/zoneinfo`
//! (`mm/vmstat.c`) and the memory lines of `/proc/meminfo` (`fs/proc/meminfo.c`).
//!
//! # Theory of operation
//!
//! Each report writes into any `core::fmt::Write` so the firmware can stream it to the UART
//! without allocating; `*_string` variants collect into a `String` for the shell and tests.
//! Layouts copy Linux's format strings so existing tools and eyes parse them unchanged.
#![forbid(unsafe_code)]

use alloc::string::String;
use core::fmt::{self, Write};

use super::migratetype::MIGRATETYPE_NAMES;
use super::page_alloc::Zone;
use super::{
    pages_to_kb, MigrateType, OwnerKind, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
};

/// Linux caps per-list counting in pagetypeinfo at this many blocks.
const PAGETYPEINFO_FREECOUNT_CAP: usize = 100_000;

/// `/proc/buddyinfo`: free blocks per order.
pub fn buddyinfo(zone: &Zone<'_>, out: &mut impl Write) -> fmt::Result {
    write!(out, "Node 0, zone {:>8} ", zone.name())?;
    for n in zone.counters().nr_free {
        write!(out, "{n:6} ")?;
    }
    out.write_char('\n')
}

/// `/proc/pagetypeinfo` without the page-owner section.
pub fn pagetypeinfo(zone: &Zone<'_>, out: &mut impl Write) -> fmt::Result {
    writeln!(out, "Page block order: {PAGEBLOCK_ORDER}")?;
    writeln!(out, "Pages per block:  {PAGEBLOCK_NR_PAGES}")?;
    out.write_char('\n')?;
    write!(out, "{:<43} ", "Free pages count per migrate type at order")?;
    for order in 0..NR_PAGE_ORDERS {
        write!(out, "{order:6} ")?;
    }
    out.write_char('\n')?;
    for mt in MigrateType::ALL {
        write!(
            out,
            "Node {:4}, zone {:>8}, type {:>12} ",
            0,
            zone.name(),
            mt.name()
        )?;
        for order in 0..NR_PAGE_ORDERS {
            let n = zone.nr_free_blocks(order, mt);
            if n >= PAGETYPEINFO_FREECOUNT_CAP {
                write!(out, ">{PAGETYPEINFO_FREECOUNT_CAP:6} ")?;
            } else {
                write!(out, "{n:6} ")?;
            }
        }
        out.write_char('\n')?;
    }
    write!(out, "\n{:<23}", "Number of blocks type ")?;
    for name in MIGRATETYPE_NAMES {
        write!(out, "{name:>12} ")?;
    }
    out.write_char('\n')?;
    write!(out, "Node 0, zone {:>8} ", zone.name())?;
    for n in zone.pageblock_counts() {
        write!(out, "{n:12} ")?;
    }
    out.write_char('\n')
}

/// `/proc/zoneinfo` (`zoneinfo_show_print`) for our one zone, with the zone counters we
/// keep: no LRU lists, NUMA or reclaim state, so of the per-zone stats only the free ones.
/// As in Linux, `pages free` is the buddy's (`NR_FREE_PAGES`), without the pcp's frames,
/// which `pagesets` counts; there is one pageset (the memory lock is global), shown as
/// cpu 0. Protection is one zone's: `(0)`.
pub fn zoneinfo(zone: &Zone<'_>, out: &mut impl Write) -> fmt::Result {
    let c = zone.counters();
    let pcp = zone.pcp_counters();
    let buddy_free = c.free_pages - pcp.count;
    write!(out, "Node 0, zone {:>8}", zone.name())?;
    for (label, value) in [
        ("  pages free     ", buddy_free),
        ("        boost    ", 0),
        ("        min      ", c.watermarks.min),
        ("        low      ", c.watermarks.low),
        ("        high     ", c.watermarks.high),
        ("        spanned  ", c.spanned_pages),
        ("        present  ", c.present_pages),
        ("        managed  ", c.managed_pages),
        ("        cma      ", c.cma_pages),
    ] {
        write!(out, "\n{label}{value}")?;
    }
    write!(out, "\n        protection: (0)")?;
    for (name, value) in [
        ("nr_free_pages", buddy_free),
        ("nr_free_cma", c.free_cma_pages),
    ] {
        write!(out, "\n      {name:<12} {value}")?;
    }
    write!(
        out,
        "\n  pagesets\n    cpu: 0\n              count: {}\n              high:  {}\n              batch: {}",
        pcp.count, pcp.high, pcp.batch
    )?;
    write!(out, "\n  vm stats threshold: 0")?;
    write!(
        out,
        "\n  node_unreclaimable:  0\n  start_pfn:           {}\n",
        zone.start_pfn()
    )
}

/// The memory fields of `/proc/meminfo`, in kB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    pub mem_total: usize,
    pub mem_free: usize,
    pub mem_available: usize,
    pub cma_total: usize,
    pub cma_free: usize,
}

impl MemInfo {
    /// `si_mem_available`, with page cache counted from owner records: free pages beyond the
    /// high watermark, plus the page cache that could be dropped without thrashing.
    pub fn of(zone: &Zone<'_>) -> MemInfo {
        let c = zone.counters();
        let wmark = c.watermarks;
        let pagecache = zone.allocated_pages_of_kind(OwnerKind::PageCache);
        let pagecache = pagecache - (pagecache / 2).min(wmark.low);
        let available = c.free_pages.saturating_sub(wmark.high) + pagecache;
        MemInfo {
            mem_total: pages_to_kb(c.managed_pages),
            mem_free: pages_to_kb(c.free_pages),
            mem_available: pages_to_kb(available),
            cma_total: pages_to_kb(c.cma_pages),
            cma_free: pages_to_kb(c.free_cma_pages),
        }
    }
}

impl fmt::Display for MemInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, kb) in [
            ("MemTotal:", self.mem_total),
            ("MemFree:", self.mem_free),
            ("MemAvailable:", self.mem_available),
            ("CmaTotal:", self.cma_total),
            ("CmaFree:", self.cma_free),
        ] {
            writeln!(f, "{name:<16}{kb:>8} kB")?;
        }
        Ok(())
    }
}

pub fn meminfo(zone: &Zone<'_>, out: &mut impl Write) -> fmt::Result {
    write!(out, "{}", MemInfo::of(zone))
}

pub fn buddyinfo_string(zone: &Zone<'_>) -> String {
    let mut s = String::new();
    let _ = buddyinfo(zone, &mut s);
    s
}

pub fn pagetypeinfo_string(zone: &Zone<'_>) -> String {
    let mut s = String::new();
    let _ = pagetypeinfo(zone, &mut s);
    s
}

pub fn zoneinfo_string(zone: &Zone<'_>) -> String {
    let mut s = String::new();
    let _ = zoneinfo(zone, &mut s);
    s
}

pub fn meminfo_string(zone: &Zone<'_>) -> String {
    let mut s = String::new();
    let _ = meminfo(zone, &mut s);
    s
}
