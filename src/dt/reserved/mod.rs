//! Reserved memory: from `/reserved-memory`, `memory-region` phandles and `cma=` to a plan.
//!
//! # Theory of operation
//!
//! [`plan_reserved_memory`] is a pure function: it reads the device tree, the RAM banks, the
//! ranges already in use (firmware image, DTB, `/memreserve/` entries if the caller wants them
//! honoured) and the command line, and returns a [`ReservedMemoryPlan`]. Nothing is reserved
//! or mapped here; the boot code applies the plan (keep [`ReservedMemoryPlan::kept_from_buddy`]
//! out of the page allocator, leave [`ReservedMemoryPlan::not_mapped`] out of the linear map,
//! hand each [`CmaAreaSpec`] to CMA).
//!
//! The order and the rules are Linux's (`drivers/of/of_reserved_mem.c`,
//! `kernel/dma/contiguous.c`, `mm/cma.c`):
//!
//! 1. `/reserved-memory` must carry `#address-cells`, `#size-cells` and `ranges`
//!    (`__fdt_reserved_mem_check_root`); otherwise the whole node is ignored. Its own cell
//!    counts are used for `reg`, `size`, `alignment` and `alloc-ranges`. Only an empty
//!    (identity) `ranges` is supported.
//! 2. Children with `status` other than `okay`/`ok` are ignored, as `of_device_is_available`
//!    would. A child with both `no-map` and `reusable` is refused (`rmem_cma_setup` rejects
//!    it and Linux gives the memory back).
//! 3. Static regions (`reg`, any number of entries) are accepted first, in tree order; then
//!    dynamic ones (`size`, `alignment`, `alloc-ranges`) are placed, in tree order, so a
//!    dynamic region never lands on a static one. Placement is memblock's: top-down, or
//!    bottom-up inside an `alloc-ranges` window whose start touches an existing region and
//!    whose end does not (`__reserved_mem_alloc_in_range`). Free space is RAM minus the
//!    occupied ranges minus every region accepted so far.
//! 4. `compatible = "shared-dma-pool"` + `reusable` makes a CMA area named after the node
//!    (with its unit address, as `rmem->name`). Its base and size must be 2 MiB (pageblock)
//!    aligned, or `rmem_cma_setup` refuses it; dynamic CMA regions get their alignment raised
//!    to 2 MiB before placement. Like Linux, only the first `reg` entry becomes the area;
//!    further entries stay reserved. `no-map` makes a carveout. Anything else is plain
//!    reserved memory: mapped, but never handed to the page allocator.
//! 5. A command-line `cma=` replaces the tree's `linux,cma-default` region (that node is
//!    bypassed, "using cmdline CMA params instead") and is placed after all tree regions, as
//!    `dma_contiguous_reserve()` runs after the tree scan on arm64: size rounded up to 2 MiB,
//!    start rounded up, end rounded down; `size@start` alone asks for exactly `start`;
//!    otherwise top-down below `end` (or the 32-bit DMA limit, as arm64 passes
//!    `arm64_dma_phys_limit`). It is named `reserved` and is the default area. `cma=0`
//!    means no default area at all, as in Linux.
//! 6. `memory-region` lists in any enabled node map that device to regions, every index.
//!
//! Every refused or adjusted item produces exactly one message in
//! [`ReservedMemoryPlan::messages`]; the rest of the tree is still planned. Differences from
//! Linux, each on purpose: overlapping or out-of-RAM static regions are refused (Linux only
//! prints "OVERLAP DETECTED" or reserves nothing useful); page-unaligned regions are refused
//! (we manage whole pages); a `cma=` that is garbage or bigger than RAM is ignored and the
//! tree's default area stands (Linux would read garbage as 0 and lose the default area).
//!
//! Nothing here panics on property contents: every length is checked and all arithmetic is
//! checked. (Structural corruption of the blob itself is for the DTB validator to catch:
//! the `fdt` crate panics on some broken structure blocks.)
#![forbid(unsafe_code)]

mod cmdline;
mod place;
mod summary;
#[cfg(test)]
mod tests;
mod tree;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

pub use summary::summary;

use super::bootargs;
use super::tree::DeviceTree;
use crate::mm::CmaFit;
use crate::util::ranges::merge;

/// arm64 4 KiB pages: `pageblock_order` 9. CMA areas are whole pageblocks
/// (`CMA_MIN_ALIGNMENT_BYTES`).
pub const PAGEBLOCK_SIZE: u64 = 2 << 20;
/// arm64 places the `cma=` area below `arm64_dma_phys_limit`, the top of ZONE_DMA32.
const DMA32_LIMIT: u64 = 1 << 32;
/// Name Linux gives the command-line area (`dma_contiguous_reserve_area`).
pub const CMDLINE_CMA_NAME: &str = "reserved";

/// What the memory of a region may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// Mapped as normal memory, never given to the page allocator.
    Reserved,
    /// `no-map`: neither mapped as normal memory nor given to the page allocator.
    NoMap,
    /// `reusable` `shared-dma-pool`: the first range is a CMA area (its pageblocks go to the
    /// buddy as MIGRATE_CMA); any further ranges behave as [`RegionKind::Reserved`].
    Cma,
}

/// Where a region was described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSource {
    /// Full path of the `/reserved-memory` child.
    DeviceTree { path: String },
    /// The `cma=` boot argument.
    CommandLine,
}

/// One accepted region with its final placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedRegion {
    /// Node name with unit address (`linux,cma`, `video@50000000`), or `reserved` for `cma=`.
    pub name: String,
    pub source: RegionSource,
    /// Accepted `reg` entries in tree order, or the single placed range of a dynamic region.
    /// Never empty.
    pub ranges: Vec<Range<u64>>,
    pub kind: RegionKind,
    /// Placed by us (`size`) rather than fixed by the tree (`reg`).
    pub dynamic: bool,
    /// The node carries `reusable` (a reusable node without `shared-dma-pool` is only
    /// reserved: nothing in this firmware knows how to lend it out).
    pub reusable: bool,
    /// The node carries `linux,cma-default` (whether it became the default is in
    /// [`CmaAreaSpec::is_default`]).
    pub linux_cma_default: bool,
    /// Our `monolith,cma-fit` property, when present and valid (see the README's binding).
    pub cma_fit: Option<CmaFit>,
    pub phandle: Option<u32>,
    pub compatible: Vec<String>,
}

impl ReservedRegion {
    /// The range a driver means when it says "this region": the first one.
    pub fn primary(&self) -> Range<u64> {
        self.ranges.first().cloned().unwrap_or(0..0)
    }
}

/// A CMA area to declare (`cma_init_reserved_mem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmaAreaSpec {
    pub name: String,
    pub base: u64,
    pub size: u64,
    /// The area devices without their own region allocate from (`dma_contiguous_default_area`).
    pub is_default: bool,
    /// Where the area places requests: the region's `monolith,cma-fit`, else the default.
    pub fit: CmaFit,
    pub phandle: Option<u32>,
    /// Paths of the devices whose `memory-region` lists this area.
    pub owners: Vec<String>,
    /// Index of the region in [`ReservedMemoryPlan::regions`].
    pub region_index: usize,
}

/// A `no-map` range: not in the buddy, not mapped as normal memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carveout {
    pub name: String,
    pub range: Range<u64>,
    pub phandle: Option<u32>,
    /// Paths of the devices whose `memory-region` lists this region.
    pub owners: Vec<String>,
    pub region_index: usize,
}

/// One `memory-region` entry of a device that resolved to an accepted region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRegionRef {
    /// Position in the device's `memory-region` list (`of_reserved_mem_device_init_by_idx`).
    pub index: usize,
    /// The matching `memory-region-names` entry, if the device names its regions.
    pub name: Option<String>,
    /// Name of the region ([`ReservedRegion::name`]).
    pub region: String,
    pub region_index: usize,
    /// The region's primary range.
    pub range: Range<u64>,
    pub kind: RegionKind,
}

/// The regions a device points at, in `memory-region` order (unresolved entries left out,
/// each with a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRegion {
    pub device_path: String,
    pub regions: Vec<DeviceRegionRef>,
}

/// What became of one `/reserved-memory` child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    /// Became [`ReservedMemoryPlan::regions`]`[index]`.
    Accepted(usize),
    /// `status` is neither `okay` nor `ok`.
    Disabled,
    /// A `linux,cma-default` pool set aside because `cma=` was given.
    BypassedForCmdline,
    /// Refused, and why (the same problem is in [`ReservedMemoryPlan::messages`]).
    Skipped(String),
}

/// One `/reserved-memory` child and its outcome, in tree order: what the boot summary
/// lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedNodeReport {
    /// Node name with unit address.
    pub name: String,
    pub path: String,
    pub phandle: Option<u32>,
    pub outcome: NodeOutcome,
}

/// Everything the boot code needs to set memory aside. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReservedMemoryPlan {
    /// Accepted regions: static ones in tree order, then dynamic ones in tree order, then
    /// the `cma=` area.
    pub regions: Vec<ReservedRegion>,
    /// One per [`RegionKind::Cma`] region, same order.
    pub cma_areas: Vec<CmaAreaSpec>,
    /// One per range of each [`RegionKind::NoMap`] region.
    pub carveouts: Vec<Carveout>,
    /// Devices with at least one resolved `memory-region`, in tree order.
    pub device_regions: Vec<DeviceRegion>,
    /// Every `/reserved-memory` child in tree order, with what became of it.
    pub nodes: Vec<ReservedNodeReport>,
    /// One line per refused or adjusted item.
    pub messages: Vec<String>,
}

impl ReservedMemoryPlan {
    /// The default CMA area, if any.
    pub fn default_cma_area(&self) -> Option<&CmaAreaSpec> {
        self.cma_areas.iter().find(|area| area.is_default)
    }

    /// The regions `device_path` points at, if it points at any accepted one.
    pub fn regions_of(&self, device_path: &str) -> Option<&DeviceRegion> {
        self.device_regions
            .iter()
            .find(|d| d.device_path == device_path)
    }

    /// The CMA area a device allocates from, as Linux decides it: its `memory-region` entry 0
    /// if that is a CMA area (`of_reserved_mem_device_init` sets `dev->cma_area`), else the
    /// default area.
    pub fn cma_area_for_device(&self, device_path: &str) -> Option<&CmaAreaSpec> {
        let own = self
            .regions_of(device_path)
            .and_then(|d| d.regions.iter().find(|r| r.index == 0))
            .and_then(|r| {
                self.cma_areas
                    .iter()
                    .find(|a| a.region_index == r.region_index)
            });
        own.or_else(|| self.default_cma_area())
    }

    /// The CMA area `device_path` names `name` in `memory-region-names`
    /// (`of_reserved_mem_device_init_by_name`); `None` when no entry has that name or it
    /// is not a CMA area (the driver then falls back to [`Self::cma_area_for_device`]).
    pub fn cma_area_for_device_by_name(
        &self,
        device_path: &str,
        name: &str,
    ) -> Option<&CmaAreaSpec> {
        let entry = self
            .regions_of(device_path)?
            .regions
            .iter()
            .find(|r| r.name.as_deref() == Some(name))?;
        self.cma_areas
            .iter()
            .find(|a| a.region_index == entry.region_index)
    }

    /// Ranges the page allocator must not get as ordinary free memory: every region except
    /// the CMA areas themselves (those enter the buddy as MIGRATE_CMA pageblocks).
    pub fn kept_from_buddy(&self) -> Vec<Range<u64>> {
        let mut ranges = Vec::new();
        for region in &self.regions {
            let skip_first = region.kind == RegionKind::Cma;
            ranges.extend(region.ranges.iter().skip(usize::from(skip_first)).cloned());
        }
        ranges
    }

    /// Ranges that must stay out of the linear map (`no-map`).
    pub fn not_mapped(&self) -> Vec<Range<u64>> {
        self.carveouts.iter().map(|c| c.range.clone()).collect()
    }
}

/// Interpret `/reserved-memory`, `memory-region` phandles and the `cma=` boot argument.
///
/// - `ram`: the RAM banks (any order; overlaps and empty ranges are tolerated).
/// - `occupied`: memory already in use that no region may take (firmware image, DTB copy,
///   `/memreserve/` entries).
/// - `bootargs`: the kernel command line to honour (normally `/chosen/bootargs`); `None`
///   for none.
pub fn plan_reserved_memory(
    tree: &DeviceTree<'_>,
    ram: &[Range<u64>],
    occupied: &[Range<u64>],
    bootargs: Option<&str>,
) -> ReservedMemoryPlan {
    let mut planner = Planner::new(ram, occupied);

    let line = bootargs::parse_command_line(bootargs.unwrap_or(""));
    let cma_request = bootargs::cma_request(&line, &mut planner.messages);
    let cma_request = planner.vet_cma_request(cma_request);
    let fit_override = bootargs::cma_fit_request(&line, &mut planner.messages);

    let outcomes = planner.plan_tree_regions(tree, cma_request);
    if let Some(request) = cma_request {
        planner.place_cmdline_area(request);
    }
    let mut plan = planner.finish(tree, outcomes);
    // The command line is the user's last word: it overrides every area's property.
    if let Some(fit) = fit_override {
        for area in &mut plan.cma_areas {
            area.fit = fit;
        }
    }
    plan
}

/// `[0x40000000..0x44000000)`-style text for messages.
fn show(range: &Range<u64>) -> String {
    format!("[{:#x}..{:#x})", range.start, range.end)
}

struct Planner {
    ram: Vec<Range<u64>>,
    ram_total: u64,
    ram_end: u64,
    occupied: Vec<Range<u64>>,
    regions: Vec<ReservedRegion>,
    messages: Vec<String>,
}

impl Planner {
    fn new(ram: &[Range<u64>], occupied: &[Range<u64>]) -> Self {
        let ram = merge(ram.iter().cloned());
        let ram_total = ram
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.end - r.start));
        let ram_end = ram.last().map_or(0, |r| r.end);
        Planner {
            ram,
            ram_total,
            ram_end,
            occupied: merge(occupied.iter().cloned()),
            regions: Vec::new(),
            messages: Vec::new(),
        }
    }

    fn note(&mut self, message: String) {
        self.messages.push(message);
    }

    /// Everything a new region must avoid.
    fn busy(&self) -> Vec<Range<u64>> {
        let mut busy = self.occupied.clone();
        for region in &self.regions {
            busy.extend(region.ranges.iter().cloned());
        }
        merge(busy)
    }

    fn in_ram(&self, range: &Range<u64>) -> bool {
        self.ram
            .iter()
            .any(|r| r.start <= range.start && range.end <= r.end)
    }
}
