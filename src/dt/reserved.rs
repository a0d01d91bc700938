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

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use fdt::node::FdtNode;
use fdt::Fdt;

use super::bootargs::{self, CmaRequest};

/// Granule of the page allocator: regions must start and end on it.
pub const PAGE_SIZE: u64 = 4096;
/// arm64 4 KiB pages: `pageblock_order` 9. CMA areas are whole pageblocks
/// (`CMA_MIN_ALIGNMENT_BYTES`).
pub const PAGEBLOCK_SIZE: u64 = 2 << 20;
/// arm64 places the `cma=` area below `arm64_dma_phys_limit`, the top of ZONE_DMA32.
const DMA32_LIMIT: u64 = 1 << 32;
/// Deeper trees than this are not walked (guards our recursion on hostile input).
const MAX_TREE_DEPTH: usize = 32;
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
    fdt: &Fdt<'_>,
    ram: &[Range<u64>],
    occupied: &[Range<u64>],
    bootargs: Option<&str>,
) -> ReservedMemoryPlan {
    let mut planner = Planner::new(ram, occupied);

    let cma_request = bootargs.and_then(|line| {
        let line = bootargs::parse_command_line(line);
        bootargs::cma_request(&line, &mut planner.messages)
    });
    let cma_request = planner.vet_cma_request(cma_request);

    let nodes = collect_nodes(fdt, &mut planner.messages);
    let outcomes = planner.plan_tree_regions(&nodes, cma_request);
    if let Some(request) = cma_request {
        planner.place_cmdline_area(request);
    }
    planner.finish(&nodes, &outcomes)
}

/// A node with its full path.
struct TreeNode<'b, 'a> {
    path: String,
    depth: usize,
    node: FdtNode<'b, 'a>,
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Every node in depth-first tree order with its path (the `fdt` crate only gives names).
fn collect_nodes<'b, 'a>(fdt: &'b Fdt<'a>, messages: &mut Vec<String>) -> Vec<TreeNode<'b, 'a>> {
    let mut out = Vec::new();
    let Some(root) = fdt.find_node("/") else {
        messages.push(String::from(
            "device tree has no root node; nothing reserved",
        ));
        return out;
    };
    let mut stack = alloc::vec![TreeNode {
        path: String::from("/"),
        depth: 0,
        node: root
    }];
    let mut too_deep = false;
    while let Some(entry) = stack.pop() {
        if entry.depth < MAX_TREE_DEPTH {
            let children: Vec<_> = entry.node.children().collect();
            for child in children.into_iter().rev() {
                stack.push(TreeNode {
                    path: child_path(&entry.path, child.name),
                    depth: entry.depth + 1,
                    node: child,
                });
            }
        } else if entry.node.children().next().is_some() {
            too_deep = true;
        }
        out.push(entry);
    }
    if too_deep {
        messages.push(format!(
            "device tree nested deeper than {MAX_TREE_DEPTH} levels; deeper nodes ignored"
        ));
    }
    out
}

fn property<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Option<&'a [u8]> {
    node.properties().find(|p| p.name == name).map(|p| p.value)
}

fn has_property(node: &FdtNode<'_, '_>, name: &str) -> bool {
    node.properties().any(|p| p.name == name)
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn u32_property(node: &FdtNode<'_, '_>, name: &str) -> Option<u32> {
    property(node, name).and_then(be_u32)
}

/// `of_device_is_available`: no `status`, or `okay`/`ok`.
fn is_available(node: &FdtNode<'_, '_>) -> bool {
    match property(node, "status") {
        None => true,
        Some(value) => {
            let text = value.split(|b| *b == 0).next().unwrap_or(&[]);
            text == b"okay" || text == b"ok"
        }
    }
}

fn phandle_of(node: &FdtNode<'_, '_>) -> Option<u32> {
    u32_property(node, "phandle")
        .or_else(|| u32_property(node, "linux,phandle"))
        .filter(|p| *p != 0 && *p != u32::MAX)
}

fn string_list(value: &[u8]) -> Vec<String> {
    value
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| core::str::from_utf8(s).ok())
        .map(String::from)
        .collect()
}

/// Read a number of `cells` (1 or 2) big-endian cells; the caller checked the length.
fn read_cells(bytes: &[u8], cells: usize) -> u64 {
    bytes.chunks_exact(4).take(cells).fold(0u64, |acc, cell| {
        (acc << 32) | u64::from(u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]))
    })
}

/// (address, size) pairs of a `reg`-shaped property; `None` unless the length is a
/// non-zero multiple of the pair size.
fn read_pairs(value: &[u8], address_cells: usize, size_cells: usize) -> Option<Vec<(u64, u64)>> {
    let pair_len = (address_cells + size_cells) * 4;
    if value.is_empty() || !value.len().is_multiple_of(pair_len) {
        return None;
    }
    Some(
        value
            .chunks_exact(pair_len)
            .map(|pair| {
                let (address, size) = pair.split_at(address_cells * 4);
                (
                    read_cells(address, address_cells),
                    read_cells(size, size_cells),
                )
            })
            .collect(),
    )
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

fn is_aligned(value: u64, align: u64) -> bool {
    value & (align - 1) == 0
}

/// `[0x40000000..0x44000000)`-style text for messages.
fn show(range: &Range<u64>) -> String {
    format!("[{:#x}..{:#x})", range.start, range.end)
}

fn show_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if bytes != 0 && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes != 0 && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes:#x} bytes")
    }
}

/// Sorted, merged, non-empty copy of `ranges`.
fn normalized(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    sorted.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

/// What became of one `/reserved-memory` child, for resolving `memory-region` later.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted(usize),
    Disabled,
    BypassedForCmdline,
    Refused,
}

struct RmemOutcome {
    path: String,
    name: String,
    phandle: Option<u32>,
    outcome: Outcome,
}

/// Properties of a child, read once.
struct RmemNode<'n, 'b, 'a> {
    name: &'n str,
    path: &'n str,
    node: &'n FdtNode<'b, 'a>,
    phandle: Option<u32>,
    compatible: Vec<String>,
    no_map: bool,
    reusable: bool,
    linux_cma_default: bool,
}

impl RmemNode<'_, '_, '_> {
    fn is_cma(&self) -> bool {
        self.reusable && !self.no_map && self.compatible.iter().any(|c| c == "shared-dma-pool")
    }

    fn kind(&self) -> RegionKind {
        if self.no_map {
            RegionKind::NoMap
        } else if self.is_cma() {
            RegionKind::Cma
        } else {
            RegionKind::Reserved
        }
    }

    fn region(&self, ranges: Vec<Range<u64>>, dynamic: bool) -> ReservedRegion {
        ReservedRegion {
            name: String::from(self.name),
            source: RegionSource::DeviceTree {
                path: String::from(self.path),
            },
            ranges,
            kind: self.kind(),
            dynamic,
            reusable: self.reusable,
            linux_cma_default: self.linux_cma_default,
            phandle: self.phandle,
            compatible: self.compatible.clone(),
        }
    }
}

/// Cell counts of `/reserved-memory`.
#[derive(Clone, Copy)]
struct Cells {
    address: usize,
    size: usize,
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
        let ram = normalized(ram);
        let ram_total = ram
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.end - r.start));
        let ram_end = ram.last().map_or(0, |r| r.end);
        Planner {
            ram,
            ram_total,
            ram_end,
            occupied: normalized(occupied),
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
        normalized(&busy)
    }

    fn in_ram(&self, range: &Range<u64>) -> bool {
        self.ram
            .iter()
            .any(|r| r.start <= range.start && range.end <= r.end)
    }

    /// A `cma=` bigger than RAM cannot be honoured; treat it as absent so the tree's default
    /// area stands. `cma=0` is kept: it means "no default area".
    fn vet_cma_request(&mut self, request: Option<CmaRequest>) -> Option<CmaRequest> {
        let request = request?;
        if request.size > self.ram_total {
            self.note(format!(
                "cma={}: bigger than all RAM ({}); ignored",
                show_size(request.size),
                show_size(self.ram_total)
            ));
            return None;
        }
        if request.size == 0 {
            self.note(String::from(
                "cma=0: no default CMA area (the tree's linux,cma-default region is bypassed too)",
            ));
        }
        Some(request)
    }

    /// Static pass then dynamic pass over `/reserved-memory`'s children.
    fn plan_tree_regions(
        &mut self,
        nodes: &[TreeNode<'_, '_>],
        cma_request: Option<CmaRequest>,
    ) -> Vec<RmemOutcome> {
        let mut outcomes = Vec::new();
        let Some(parent) = nodes
            .iter()
            .find(|n| n.depth == 1 && n.node.name.split('@').next() == Some("reserved-memory"))
        else {
            return outcomes;
        };
        let children: Vec<&TreeNode<'_, '_>> = nodes
            .iter()
            .filter(|n| {
                n.depth == 2
                    && n.path
                        .strip_prefix(parent.path.as_str())
                        .and_then(|p| p.strip_prefix('/'))
                        == Some(n.node.name)
            })
            .collect();
        let cells = match self.check_parent(&parent.node) {
            Ok(cells) => Some(cells),
            Err(problem) => {
                self.note(format!("{}: {problem}; whole node ignored", parent.path));
                None
            }
        };

        let mut dynamic = Vec::new();
        for child in &children {
            let node = &child.node;
            let rmem = RmemNode {
                name: node.name,
                path: &child.path,
                node,
                phandle: phandle_of(node),
                compatible: property(node, "compatible")
                    .map(string_list)
                    .unwrap_or_default(),
                no_map: has_property(node, "no-map"),
                reusable: has_property(node, "reusable"),
                linux_cma_default: has_property(node, "linux,cma-default"),
            };
            let record = |outcome| RmemOutcome {
                path: child.path.clone(),
                name: String::from(node.name),
                phandle: rmem.phandle,
                outcome,
            };
            let Some(cells) = cells else {
                outcomes.push(record(Outcome::Refused));
                continue;
            };
            if !is_available(node) {
                outcomes.push(record(Outcome::Disabled));
                continue;
            }
            if rmem.no_map && rmem.reusable {
                self.note(format!(
                    "reserved-memory/{}: has both no-map and reusable, which contradict each other; skipped",
                    rmem.name
                ));
                outcomes.push(record(Outcome::Refused));
                continue;
            }
            if rmem.is_cma() && rmem.linux_cma_default && cma_request.is_some() {
                self.note(format!(
                    "reserved-memory/{}: bypassed, using the cma= boot argument instead of this linux,cma-default region",
                    rmem.name
                ));
                outcomes.push(record(Outcome::BypassedForCmdline));
                continue;
            }
            if let Some(reg) = property(node, "reg") {
                let outcome = match self.accept_static(&rmem, reg, cells) {
                    Some(index) => Outcome::Accepted(index),
                    None => Outcome::Refused,
                };
                outcomes.push(record(outcome));
            } else if has_property(node, "size") {
                // Placed after every static region; remember where its outcome goes.
                outcomes.push(record(Outcome::Refused));
                dynamic.push((outcomes.len() - 1, rmem));
            } else {
                self.note(format!(
                    "reserved-memory/{}: has neither reg nor size; skipped",
                    rmem.name
                ));
                outcomes.push(record(Outcome::Refused));
            }
        }
        if let Some(cells) = cells {
            for (slot, rmem) in dynamic {
                if let Some(index) = self.place_dynamic(&rmem, cells) {
                    outcomes[slot].outcome = Outcome::Accepted(index);
                }
            }
        }
        outcomes
    }

    /// `__fdt_reserved_mem_check_root`, with our cell limits.
    fn check_parent(&self, parent: &FdtNode<'_, '_>) -> Result<Cells, String> {
        let read = |name: &str| -> Result<usize, String> {
            match property(parent, name) {
                None => Err(format!("{name} missing (unsupported node format)")),
                Some(value) => match be_u32(value) {
                    Some(n @ 1..=2) => Ok(n as usize),
                    Some(n) => Err(format!("{name} = {n} is not supported (only 1 or 2)")),
                    None => Err(format!("{name} is {} bytes, expected 4", value.len())),
                },
            }
        };
        let address = read("#address-cells")?;
        let size = read("#size-cells")?;
        match property(parent, "ranges") {
            None => return Err(String::from("ranges missing (unsupported node format)")),
            Some(value) if !value.is_empty() => {
                return Err(String::from(
                    "non-empty ranges (address translation) is not supported",
                ))
            }
            Some(_) => {}
        }
        Ok(Cells { address, size })
    }

    /// Check one static range against RAM, the occupied ranges and earlier regions.
    fn check_static(
        &self,
        base: u64,
        size: u64,
        alignment: u64,
        same_node: &[Range<u64>],
    ) -> Result<Range<u64>, String> {
        if size == 0 {
            return Err(String::from("has zero size"));
        }
        let Some(end) = base.checked_add(size) else {
            return Err(format!(
                "{base:#x} + {size:#x} wraps past the end of the address space"
            ));
        };
        let range = base..end;
        if size > self.ram_total {
            return Err(format!(
                "{} ({}) is bigger than all RAM ({})",
                show(&range),
                show_size(size),
                show_size(self.ram_total)
            ));
        }
        if !is_aligned(base | size, alignment) {
            return Err(if alignment == PAGEBLOCK_SIZE {
                format!(
                    "{} is a reusable CMA region whose base or size is not 2 MiB (pageblock) aligned; refused as Linux's rmem_cma_setup refuses it",
                    show(&range)
                )
            } else {
                format!(
                    "{} is not aligned to {} pages",
                    show(&range),
                    show_size(alignment)
                )
            });
        }
        if !self.in_ram(&range) {
            return Err(format!("{} lies outside RAM", show(&range)));
        }
        if let Some(used) = self.occupied.iter().find(|o| overlaps(o, &range)) {
            return Err(format!(
                "{} overlaps memory already in use {} (firmware image, DTB)",
                show(&range),
                show(used)
            ));
        }
        for region in &self.regions {
            if let Some(other) = region.ranges.iter().find(|r| overlaps(r, &range)) {
                return Err(format!(
                    "{} overlaps region {} {}",
                    show(&range),
                    region.name,
                    show(other)
                ));
            }
        }
        if let Some(other) = same_node.iter().find(|r| overlaps(r, &range)) {
            return Err(format!(
                "{} overlaps {} of the same node",
                show(&range),
                show(other)
            ));
        }
        Ok(range)
    }

    fn accept_static(
        &mut self,
        rmem: &RmemNode<'_, '_, '_>,
        reg: &[u8],
        cells: Cells,
    ) -> Option<usize> {
        let pair_len = (cells.address + cells.size) * 4;
        let Some(pairs) = read_pairs(reg, cells.address, cells.size) else {
            self.note(format!(
                "reserved-memory/{}: reg is {} bytes, not a non-zero multiple of {pair_len} (#address-cells {} + #size-cells {}); skipped",
                rmem.name,
                reg.len(),
                cells.address,
                cells.size
            ));
            return None;
        };
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for (index, (base, size)) in pairs.iter().copied().enumerate() {
            // Only the first entry becomes the CMA area (of_address_to_resource(node, 0)).
            let alignment = if rmem.is_cma() && index == 0 {
                PAGEBLOCK_SIZE
            } else {
                PAGE_SIZE
            };
            match self.check_static(base, size, alignment, &ranges) {
                Ok(range) => ranges.push(range),
                Err(problem) => {
                    let entry = if pairs.len() > 1 {
                        format!(" reg entry {index}")
                    } else {
                        String::new()
                    };
                    if rmem.is_cma() && index == 0 {
                        self.note(format!(
                            "reserved-memory/{}{entry}: {problem}; skipped",
                            rmem.name
                        ));
                        return None;
                    }
                    let consequence = if pairs.len() > 1 {
                        "entry skipped"
                    } else {
                        "skipped"
                    };
                    self.note(format!(
                        "reserved-memory/{}{entry}: {problem}; {consequence}",
                        rmem.name
                    ));
                }
            }
        }
        if ranges.is_empty() {
            return None;
        }
        if rmem.is_cma() && ranges.len() > 1 {
            self.note(format!(
                "reserved-memory/{}: only the first reg entry becomes the CMA area; the other {} stay reserved, as in Linux",
                rmem.name,
                ranges.len() - 1
            ));
        }
        self.regions.push(rmem.region(ranges, false));
        Some(self.regions.len() - 1)
    }

    /// `__reserved_mem_alloc_size`.
    fn place_dynamic(&mut self, rmem: &RmemNode<'_, '_, '_>, cells: Cells) -> Option<usize> {
        let name = rmem.name;
        let node = rmem.node;
        let refuse = |planner: &mut Planner, problem: String| {
            planner.note(format!("reserved-memory/{name}: {problem}; skipped"));
            None
        };
        let size_bytes = property(node, "size").unwrap_or(&[]);
        if size_bytes.len() != cells.size * 4 {
            let problem = format!(
                "size is {} bytes, expected {} (#size-cells {})",
                size_bytes.len(),
                cells.size * 4,
                cells.size
            );
            return refuse(self, problem);
        }
        let size = read_cells(size_bytes, cells.size);
        let mut alignment = PAGE_SIZE;
        if let Some(value) = property(node, "alignment") {
            if value.len() != cells.address * 4 {
                let problem = format!(
                    "alignment is {} bytes, expected {} (#address-cells {})",
                    value.len(),
                    cells.address * 4,
                    cells.address
                );
                return refuse(self, problem);
            }
            let asked = read_cells(value, cells.address);
            if asked != 0 && !asked.is_power_of_two() {
                return refuse(self, format!("alignment {asked:#x} is not a power of two"));
            }
            alignment = alignment.max(asked);
        }
        let windows = match property(node, "alloc-ranges") {
            None => None,
            Some(value) => match read_pairs(value, cells.address, cells.size) {
                Some(pairs) => Some(pairs),
                None => {
                    let problem = format!(
                        "alloc-ranges is {} bytes, not a non-zero multiple of {}",
                        value.len(),
                        (cells.address + cells.size) * 4
                    );
                    return refuse(self, problem);
                }
            },
        };
        if size == 0 {
            return refuse(self, String::from("has zero size"));
        }
        if size > self.ram_total {
            let problem = format!(
                "size {} is bigger than all RAM ({})",
                show_size(size),
                show_size(self.ram_total)
            );
            return refuse(self, problem);
        }
        if rmem.is_cma() {
            if !is_aligned(size, PAGEBLOCK_SIZE) {
                let problem = format!(
                    "size {} of a reusable CMA region is not a multiple of 2 MiB (pageblock); refused as Linux's rmem_cma_setup refuses it",
                    show_size(size)
                );
                return refuse(self, problem);
            }
            alignment = alignment.max(PAGEBLOCK_SIZE);
        } else if !is_aligned(size, PAGE_SIZE) {
            return refuse(
                self,
                format!("size {size:#x} is not a whole number of pages"),
            );
        }

        let busy = self.busy();
        let placed = match &windows {
            None => self.find_free(0..u64::MAX, size, alignment, false, &busy),
            Some(pairs) => pairs.iter().find_map(|&(start, length)| {
                let window = start..start.saturating_add(length);
                let bottom_up = self.prefers_bottom_up(&window);
                self.find_free(window, size, alignment, bottom_up, &busy)
            }),
        };
        let Some(base) = placed else {
            let problem = match &windows {
                None => format!(
                    "no free {}-aligned room of {} left in RAM",
                    show_size(alignment),
                    show_size(size)
                ),
                Some(pairs) => {
                    let shown: Vec<String> = pairs
                        .iter()
                        .map(|&(s, l)| show(&(s..s.saturating_add(l))))
                        .collect();
                    format!(
                        "{} ({}-aligned) does not fit in its alloc-ranges {} (free RAM there is too small or taken)",
                        show_size(size),
                        show_size(alignment),
                        shown.join(", ")
                    )
                }
            };
            return refuse(self, problem);
        };
        self.regions
            .push(rmem.region(alloc::vec![base..base + size], true));
        Some(self.regions.len() - 1)
    }

    /// `__reserved_mem_alloc_in_range`: grow next to an existing region rather than leave a
    /// hole. A window whose start touches a region and whose end does not fills bottom-up.
    fn prefers_bottom_up(&self, window: &Range<u64>) -> bool {
        let touches = |at: u64| {
            self.regions
                .iter()
                .flat_map(|r| r.ranges.iter())
                .any(|r| r.start <= at && at <= r.end)
        };
        let bottom_up = touches(window.start);
        let top_down = touches(window.end);
        bottom_up && !top_down
    }

    /// memblock's search: the highest (or lowest) `align`-aligned `size` bytes of RAM inside
    /// `window` that avoid `busy`.
    fn find_free(
        &self,
        window: Range<u64>,
        size: u64,
        align: u64,
        bottom_up: bool,
        busy: &[Range<u64>],
    ) -> Option<u64> {
        let mut free = Vec::new();
        for bank in &self.ram {
            let start = bank.start.max(window.start);
            let end = bank.end.min(window.end);
            if start >= end {
                continue;
            }
            let mut cursor = start;
            for taken in busy {
                if taken.end <= cursor {
                    continue;
                }
                if taken.start >= end {
                    break;
                }
                if taken.start > cursor {
                    free.push(cursor..taken.start);
                }
                cursor = cursor.max(taken.end);
            }
            if cursor < end {
                free.push(cursor..end);
            }
        }
        let fits = |candidate: u64, hole: &Range<u64>| {
            candidate >= hole.start && candidate.checked_add(size).is_some_and(|e| e <= hole.end)
        };
        if bottom_up {
            free.iter()
                .find_map(|hole| align_up(hole.start, align).filter(|c| fits(*c, hole)))
        } else {
            free.iter().rev().find_map(|hole| {
                let candidate = align_down(hole.end.checked_sub(size)?, align);
                fits(candidate, hole).then_some(candidate)
            })
        }
    }

    /// `dma_contiguous_reserve` + `cma_declare_contiguous_nid` for the `cma=` area.
    fn place_cmdline_area(&mut self, request: CmaRequest) {
        if request.size == 0 {
            return;
        }
        let align = PAGEBLOCK_SIZE;
        let shown = format!("cma={}", show_size(request.size));
        let fixed = request.is_fixed();
        if fixed && !is_aligned(request.base, align) {
            self.note(format!(
                "{shown}@{:#x}: the start must be 2 MiB aligned; no default CMA area",
                request.base
            ));
            return;
        }
        let (Some(base), Some(size)) =
            (align_up(request.base, align), align_up(request.size, align))
        else {
            self.note(format!(
                "{shown}: start or size overflows when aligned; no default CMA area"
            ));
            return;
        };
        if size != request.size {
            self.note(format!(
                "{shown}: size rounded up to {} (whole pageblocks), as Linux does",
                show_size(size)
            ));
        }
        // min_not_zero(limit_cmdline, arm64_dma_phys_limit), then aligned down.
        let dma_limit = match self.ram.first() {
            Some(first) if first.start < DMA32_LIMIT => DMA32_LIMIT.min(self.ram_end),
            _ => 0,
        };
        let limit = match (request.limit, dma_limit) {
            (0, l) | (l, 0) => l,
            (a, b) => a.min(b),
        };
        let mut limit = align_down(limit, align);
        if limit == 0 || limit > self.ram_end {
            limit = self.ram_end;
        }
        let fits_below_limit = base.checked_add(size).is_some_and(|end| end <= limit);
        if !fits_below_limit {
            self.note(format!(
                "{shown}: {} at {base:#x} does not fit below {limit:#x} (Linux rounds the size up and the end down to 2 MiB); no default CMA area",
                show_size(size)
            ));
            return;
        }
        let busy = self.busy();
        let placed = if fixed {
            let range = base..base + size;
            if !self.in_ram(&range) {
                self.note(format!(
                    "{shown}: {} lies outside RAM; no default CMA area",
                    show(&range)
                ));
                return;
            }
            if busy.iter().any(|b| overlaps(b, &range)) {
                self.note(format!(
                    "{shown}: {} is already in use; no default CMA area",
                    show(&range)
                ));
                return;
            }
            Some(base)
        } else {
            self.find_free(base..limit, size, align, false, &busy)
        };
        let Some(base) = placed else {
            self.note(format!(
                "{shown}: no free 2 MiB-aligned room of {} in {}; no default CMA area",
                show_size(size),
                show(&(base..limit))
            ));
            return;
        };
        self.regions.push(ReservedRegion {
            name: String::from(CMDLINE_CMA_NAME),
            source: RegionSource::CommandLine,
            ranges: alloc::vec![base..base + size],
            kind: RegionKind::Cma,
            dynamic: true,
            reusable: true,
            linux_cma_default: true,
            phandle: None,
            compatible: Vec::new(),
        });
    }

    /// Pick the default area, resolve `memory-region`s, build the output lists.
    fn finish(
        mut self,
        nodes: &[TreeNode<'_, '_>],
        outcomes: &[RmemOutcome],
    ) -> ReservedMemoryPlan {
        let mut cma_areas: Vec<CmaAreaSpec> = Vec::new();
        let mut carveouts: Vec<Carveout> = Vec::new();
        for (index, region) in self.regions.iter().enumerate() {
            match region.kind {
                RegionKind::Cma => {
                    let primary = region.primary();
                    cma_areas.push(CmaAreaSpec {
                        name: region.name.clone(),
                        base: primary.start,
                        size: primary.end - primary.start,
                        is_default: false,
                        phandle: region.phandle,
                        owners: Vec::new(),
                        region_index: index,
                    });
                }
                RegionKind::NoMap => {
                    for range in &region.ranges {
                        carveouts.push(Carveout {
                            name: region.name.clone(),
                            range: range.clone(),
                            phandle: region.phandle,
                            owners: Vec::new(),
                            region_index: index,
                        });
                    }
                }
                RegionKind::Reserved => {}
            }
        }
        self.choose_default(&mut cma_areas);

        let mut device_regions = Vec::new();
        let phandles: Vec<(u32, &str)> = nodes
            .iter()
            .filter_map(|n| Some((phandle_of(&n.node)?, n.path.as_str())))
            .collect();
        for entry in nodes {
            let node = &entry.node;
            let Some(list) = property(node, "memory-region") else {
                continue;
            };
            if !is_available(node) {
                continue;
            }
            if list.is_empty() || !list.len().is_multiple_of(4) {
                self.note(format!(
                    "{}: memory-region is {} bytes, not a list of 4-byte phandles; ignored",
                    entry.path,
                    list.len()
                ));
                continue;
            }
            let names = property(node, "memory-region-names")
                .map(string_list)
                .unwrap_or_default();
            let mut refs = Vec::new();
            for (index, cell) in list.chunks_exact(4).enumerate() {
                let phandle = u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]);
                let owner = outcomes.iter().find(|o| o.phandle == Some(phandle));
                let problem = match owner.map(|o| (&o.outcome, o)) {
                    Some((Outcome::Accepted(region_index), _)) => {
                        let region = &self.regions[*region_index];
                        refs.push(DeviceRegionRef {
                            index,
                            name: names.get(index).cloned(),
                            region: region.name.clone(),
                            region_index: *region_index,
                            range: region.primary(),
                            kind: region.kind,
                        });
                        continue;
                    }
                    Some((Outcome::BypassedForCmdline, o)) => format!(
                        "points at {}, bypassed for cma=; the device will use the default CMA area",
                        o.name
                    ),
                    Some((Outcome::Disabled, o)) => {
                        format!("points at {}, which is disabled", o.path)
                    }
                    Some((Outcome::Refused, o)) => {
                        format!(
                            "points at {}, which was not reserved (see its message)",
                            o.name
                        )
                    }
                    None => match phandles.iter().find(|(p, _)| *p == phandle) {
                        Some((_, path)) => {
                            format!("points at {path}, which is not a /reserved-memory child")
                        }
                        None => format!("dangling phandle {phandle:#x} (no node has it)"),
                    },
                };
                self.note(format!("{}: memory-region[{index}] {problem}", entry.path));
            }
            if !refs.is_empty() {
                for r in &refs {
                    let owner = entry.path.clone();
                    if let Some(area) = cma_areas
                        .iter_mut()
                        .find(|a| a.region_index == r.region_index)
                    {
                        if !area.owners.contains(&owner) {
                            area.owners.push(owner.clone());
                        }
                    }
                    for carveout in carveouts
                        .iter_mut()
                        .filter(|c| c.region_index == r.region_index)
                    {
                        if !carveout.owners.contains(&owner) {
                            carveout.owners.push(owner.clone());
                        }
                    }
                }
                device_regions.push(DeviceRegion {
                    device_path: entry.path.clone(),
                    regions: refs,
                });
            }
        }

        ReservedMemoryPlan {
            regions: self.regions,
            cma_areas,
            carveouts,
            device_regions,
            messages: self.messages,
        }
    }

    /// The `cma=` area if there is one; otherwise the `linux,cma-default` area with the
    /// highest base (Linux walks regions sorted by base and the last assignment wins).
    fn choose_default(&mut self, cma_areas: &mut [CmaAreaSpec]) {
        let regions = &self.regions;
        let from_cmdline = cma_areas
            .iter()
            .position(|a| regions[a.region_index].source == RegionSource::CommandLine);
        let chosen = from_cmdline.or_else(|| {
            cma_areas
                .iter()
                .enumerate()
                .filter(|(_, a)| regions[a.region_index].linux_cma_default)
                .max_by_key(|(_, a)| a.base)
                .map(|(i, _)| i)
        });
        let Some(chosen) = chosen else { return };
        cma_areas[chosen].is_default = true;
        let winner = cma_areas[chosen].name.clone();
        for (i, area) in cma_areas.iter().enumerate() {
            if i != chosen && regions[area.region_index].linux_cma_default {
                self.messages.push(format!(
                    "reserved-memory/{}: also marked linux,cma-default; {winner} is the default area (Linux keeps the one with the highest base)",
                    area.name
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each test builds a QEMU-virt-shaped tree in memory with `vm-fdt` (1 GiB of RAM at
    //! 0x4000_0000, root #address-cells = #size-cells = 2, firmware and DTB occupying the
    //! first 16 MiB) and checks the plan.
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use vm_fdt::FdtWriter;

    const MIB: u64 = 1 << 20;
    const RAM: Range<u64> = 0x4000_0000..0x8000_0000;
    const FIRMWARE: Range<u64> = 0x4000_0000..0x4100_0000;

    #[derive(Debug)]
    enum Prop {
        Cells(Vec<u32>),
        Empty,
        Strings(Vec<&'static str>),
        Bytes(Vec<u8>),
    }

    struct Node {
        name: String,
        props: Vec<(&'static str, Prop)>,
        children: Vec<Node>,
    }

    fn node(name: &str, props: Vec<(&'static str, Prop)>) -> Node {
        Node {
            name: name.to_string(),
            props,
            children: Vec::new(),
        }
    }

    fn cells64(values: &[u64]) -> Prop {
        Prop::Cells(
            values
                .iter()
                .flat_map(|v| [(v >> 32) as u32, *v as u32])
                .collect(),
        )
    }

    fn reg(base: u64, size: u64) -> (&'static str, Prop) {
        ("reg", cells64(&[base, size]))
    }

    fn flag(name: &'static str) -> (&'static str, Prop) {
        (name, Prop::Empty)
    }

    fn phandle(value: u32) -> (&'static str, Prop) {
        ("phandle", Prop::Cells(vec![value]))
    }

    fn compatible(value: &'static str) -> (&'static str, Prop) {
        ("compatible", Prop::Strings(vec![value]))
    }

    fn cma_pool() -> Vec<(&'static str, Prop)> {
        vec![compatible("shared-dma-pool"), flag("reusable")]
    }

    fn with(
        mut base: Vec<(&'static str, Prop)>,
        more: Vec<(&'static str, Prop)>,
    ) -> Vec<(&'static str, Prop)> {
        base.extend(more);
        base
    }

    fn write(fdt: &mut FdtWriter, n: &Node) {
        let handle = fdt.begin_node(&n.name).unwrap();
        for (name, value) in &n.props {
            match value {
                Prop::Cells(cells) => fdt.property_array_u32(name, cells).unwrap(),
                Prop::Empty => fdt.property_null(name).unwrap(),
                Prop::Strings(list) => fdt
                    .property_string_list(name, list.iter().map(|s| s.to_string()).collect())
                    .unwrap(),
                Prop::Bytes(bytes) => fdt.property(name, bytes).unwrap(),
            }
        }
        for child in &n.children {
            write(fdt, child);
        }
        fdt.end_node(handle).unwrap();
    }

    /// A virt-like tree; `rmem_props` replaces the usual /reserved-memory properties.
    fn tree_with(
        rmem_props: Vec<(&'static str, Prop)>,
        regions: Vec<Node>,
        devices: Vec<Node>,
    ) -> Vec<u8> {
        let mut reserved = node("reserved-memory", rmem_props);
        reserved.children = regions;
        let mut root = node(
            "",
            vec![
                ("#address-cells", Prop::Cells(vec![2])),
                ("#size-cells", Prop::Cells(vec![2])),
                compatible("linux,dummy-virt"),
            ],
        );
        root.children.push(node(
            "memory@40000000",
            vec![
                ("device_type", Prop::Strings(vec!["memory"])),
                reg(RAM.start, RAM.end - RAM.start),
            ],
        ));
        root.children.push(node("chosen", vec![]));
        root.children.push(reserved);
        root.children.extend(devices);
        let mut fdt = FdtWriter::new().unwrap();
        write(&mut fdt, &root);
        fdt.finish().unwrap()
    }

    fn standard_rmem_props() -> Vec<(&'static str, Prop)> {
        vec![
            ("#address-cells", Prop::Cells(vec![2])),
            ("#size-cells", Prop::Cells(vec![2])),
            flag("ranges"),
        ]
    }

    fn tree(regions: Vec<Node>, devices: Vec<Node>) -> Vec<u8> {
        tree_with(standard_rmem_props(), regions, devices)
    }

    fn plan_on(blob: &[u8], ram: &[Range<u64>], bootargs: Option<&str>) -> ReservedMemoryPlan {
        let fdt = Fdt::new(blob).expect("test blob parses");
        plan_reserved_memory(&fdt, ram, &[FIRMWARE], bootargs)
    }

    fn plan_for(blob: &[u8], bootargs: Option<&str>) -> ReservedMemoryPlan {
        plan_on(blob, &[RAM], bootargs)
    }

    fn names(plan: &ReservedMemoryPlan) -> Vec<&str> {
        plan.regions.iter().map(|r| r.name.as_str()).collect()
    }

    /// The plan never breaks its own promises, whatever the input.
    fn assert_consistent(plan: &ReservedMemoryPlan, ram: &[Range<u64>], occupied: &[Range<u64>]) {
        let all: Vec<(&str, Range<u64>)> = plan
            .regions
            .iter()
            .flat_map(|r| {
                r.ranges
                    .iter()
                    .map(move |range| (r.name.as_str(), range.clone()))
            })
            .collect();
        for (i, (name, range)) in all.iter().enumerate() {
            assert!(range.start < range.end, "{name} empty");
            assert!(
                is_aligned(range.start | range.end, PAGE_SIZE),
                "{name} {range:x?} unaligned"
            );
            assert!(
                ram.iter()
                    .any(|r| r.start <= range.start && range.end <= r.end),
                "{name} {range:x?} outside RAM"
            );
            assert!(
                !occupied.iter().any(|o| overlaps(o, range)),
                "{name} {range:x?} on occupied memory"
            );
            for (other, other_range) in &all[i + 1..] {
                assert!(
                    !overlaps(range, other_range),
                    "{name} {range:x?} overlaps {other} {other_range:x?}"
                );
            }
        }
        for area in &plan.cma_areas {
            assert!(
                is_aligned(area.base | area.size, PAGEBLOCK_SIZE),
                "{} unaligned",
                area.name
            );
            assert!(area.size > 0);
        }
        assert!(plan.cma_areas.iter().filter(|a| a.is_default).count() <= 1);
    }

    // ---- the forms that must work ------------------------------------------------------

    #[test]
    fn static_cma_area() {
        let blob = tree(
            vec![node(
                "video@50000000",
                with(cma_pool(), vec![reg(0x5000_0000, 64 * MIB), phandle(1)]),
            )],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(names(&plan), ["video@50000000"]);
        let region = &plan.regions[0];
        assert_eq!(region.kind, RegionKind::Cma);
        assert!(!region.dynamic);
        assert_eq!(
            region.source,
            RegionSource::DeviceTree {
                path: "/reserved-memory/video@50000000".to_string()
            }
        );
        assert_eq!(
            plan.cma_areas,
            [CmaAreaSpec {
                name: "video@50000000".to_string(),
                base: 0x5000_0000,
                size: 64 * MIB,
                is_default: false,
                phandle: Some(1),
                owners: vec![],
                region_index: 0,
            }]
        );
        assert!(
            plan.kept_from_buddy().is_empty(),
            "the CMA area itself goes to the buddy as CMA"
        );
        assert!(plan.default_cma_area().is_none());
    }

    #[test]
    fn dynamic_cma_with_alignment_and_alloc_ranges() {
        let blob = tree(
            vec![node(
                "linux,cma",
                with(
                    cma_pool(),
                    vec![
                        ("size", cells64(&[64 * MIB])),
                        ("alignment", cells64(&[16 * MIB])),
                        ("alloc-ranges", cells64(&[0x4000_0000, 0x2180_0000])),
                        flag("linux,cma-default"),
                    ],
                ),
            )],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        // Top-down in [0x40000000, 0x61800000): 0x5D800000 would fit, but the highest
        // 16 MiB-aligned base is 0x5D000000.
        let area = plan.default_cma_area().expect("default area");
        assert_eq!(
            (area.name.as_str(), area.base, area.size),
            ("linux,cma", 0x5D00_0000, 64 * MIB)
        );
        assert!(plan.regions[0].dynamic);
    }

    #[test]
    fn dynamic_cma_alignment_is_raised_to_a_pageblock() {
        // Window [0x50000000, 0x50700000): with 1 MiB alignment the top-down fit would start
        // at 0x50100000; CMA needs 2 MiB, which leaves only 0x50000000.
        let blob = tree(
            vec![node(
                "pool",
                with(
                    cma_pool(),
                    vec![
                        ("size", cells64(&[6 * MIB])),
                        ("alignment", cells64(&[MIB])),
                        ("alloc-ranges", cells64(&[0x5000_0000, 7 * MIB])),
                    ],
                ),
            )],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(plan.cma_areas[0].base, 0x5000_0000);

        // The same request without reusable keeps the 1 MiB alignment.
        let blob = tree(
            vec![node(
                "plain",
                vec![
                    ("size", cells64(&[6 * MIB])),
                    ("alignment", cells64(&[MIB])),
                    ("alloc-ranges", cells64(&[0x5000_0000, 7 * MIB])),
                ],
            )],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert_eq!(plan.regions[0].ranges, vec![0x5010_0000..0x5070_0000]);
        assert_eq!(plan.regions[0].kind, RegionKind::Reserved);
        assert_eq!(plan.kept_from_buddy(), vec![0x5010_0000..0x5070_0000]);
    }

    #[test]
    fn dynamic_without_alloc_ranges_goes_to_the_top_and_avoids_static_regions() {
        let blob = tree(
            vec![
                node(
                    "dyn",
                    with(cma_pool(), vec![("size", cells64(&[32 * MIB]))]),
                ),
                node(
                    "top@7e000000",
                    vec![reg(0x7E00_0000, 32 * MIB), flag("no-map")],
                ),
            ],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        // Static first (even though later in the tree), then the dynamic one below it.
        assert_eq!(names(&plan), ["top@7e000000", "dyn"]);
        assert_eq!(plan.regions[1].ranges, vec![0x7C00_0000..0x7E00_0000]);
    }

    #[test]
    fn alloc_range_starting_at_a_region_fills_bottom_up() {
        // Linux's __reserved_mem_alloc_in_range: the window starts at the end of fw@48000000
        // and ends in free memory, so the region is placed right after it.
        let blob = tree(
            vec![
                node(
                    "fw@48000000",
                    vec![reg(0x4800_0000, 16 * MIB), flag("no-map")],
                ),
                node(
                    "next",
                    vec![
                        ("size", cells64(&[8 * MIB])),
                        ("alloc-ranges", cells64(&[0x4900_0000, 0x1000_0000])),
                    ],
                ),
            ],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(plan.regions[1].ranges, vec![0x4900_0000..0x4980_0000]);
    }

    #[test]
    fn no_map_carveout_with_several_reg_entries() {
        let blob = tree(
            vec![node(
                "firmware@60000000",
                vec![
                    ("reg", cells64(&[0x6000_0000, 2 * MIB, 0x6100_0000, MIB])),
                    flag("no-map"),
                    phandle(7),
                ],
            )],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(plan.regions[0].kind, RegionKind::NoMap);
        assert_eq!(
            plan.not_mapped(),
            [0x6000_0000..0x6020_0000, 0x6100_0000..0x6110_0000]
        );
        assert_eq!(plan.kept_from_buddy(), plan.not_mapped());
        assert!(plan.cma_areas.is_empty());
        assert_eq!(plan.carveouts.len(), 2);
        assert_eq!(plan.carveouts[0].phandle, Some(7));
    }

    #[test]
    fn cma_bootarg_creates_the_default_area() {
        let blob = tree(vec![], vec![]);
        let plan = plan_for(&blob, Some("console=ttyAMA0 cma=64M"));
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        let area = plan.default_cma_area().expect("cma= area");
        assert_eq!(
            (area.name.as_str(), area.base, area.size),
            ("reserved", 0x7C00_0000, 64 * MIB)
        );
        assert_eq!(plan.regions[0].source, RegionSource::CommandLine);
    }

    #[test]
    fn cma_bootarg_overrides_the_tree_default() {
        let regions = || {
            vec![
                node(
                    "linux,cma",
                    with(
                        cma_pool(),
                        vec![
                            reg(0x5000_0000, 32 * MIB),
                            flag("linux,cma-default"),
                            phandle(3),
                        ],
                    ),
                ),
                node(
                    "video@60000000",
                    with(cma_pool(), vec![reg(0x6000_0000, 16 * MIB), phandle(4)]),
                ),
            ]
        };
        let devices = vec![node("gpu", vec![("memory-region", Prop::Cells(vec![3]))])];
        let blob = tree(regions(), devices);

        let without = plan_for(&blob, None);
        assert!(without.messages.is_empty(), "{:?}", without.messages);
        assert_eq!(without.default_cma_area().unwrap().name, "linux,cma");
        assert_eq!(
            without.cma_area_for_device("/gpu").unwrap().name,
            "linux,cma"
        );

        let with_cmdline = plan_for(&blob, Some("cma=128M"));
        assert_eq!(names(&with_cmdline), ["video@60000000", "reserved"]);
        let area = with_cmdline.default_cma_area().unwrap();
        assert_eq!(
            (area.name.as_str(), area.base, area.size),
            ("reserved", 0x7800_0000, 128 * MIB)
        );
        // One message for the bypassed node, one for the device that pointed at it.
        assert_eq!(
            with_cmdline.messages.len(),
            2,
            "{:?}",
            with_cmdline.messages
        );
        assert!(with_cmdline.messages[0].contains("linux,cma: bypassed"));
        assert!(with_cmdline.messages[1].starts_with("/gpu: memory-region[0]"));
        assert_eq!(
            with_cmdline.cma_area_for_device("/gpu").unwrap().name,
            "reserved"
        );
        // A non-default pool is untouched by cma=.
        assert!(with_cmdline
            .cma_areas
            .iter()
            .any(|a| a.name == "video@60000000" && !a.is_default));
    }

    #[test]
    fn cma_zero_disables_the_default_area() {
        let blob = tree(
            vec![node(
                "linux,cma",
                with(
                    cma_pool(),
                    vec![reg(0x5000_0000, 32 * MIB), flag("linux,cma-default")],
                ),
            )],
            vec![],
        );
        let plan = plan_for(&blob, Some("cma=0"));
        assert!(plan.regions.is_empty());
        assert!(plan.default_cma_area().is_none());
        assert_eq!(plan.messages.len(), 2, "{:?}", plan.messages);
    }

    #[test]
    fn cma_bootarg_with_start_and_end() {
        let blob = tree(vec![], vec![]);
        let window = plan_for(&blob, Some("cma=64M@0x48000000-0x58000000"));
        assert!(window.messages.is_empty(), "{:?}", window.messages);
        assert_eq!(window.regions[0].ranges, vec![0x5400_0000..0x5800_0000]);

        let fixed = plan_for(&blob, Some("cma=64M@0x50000000"));
        assert!(fixed.messages.is_empty(), "{:?}", fixed.messages);
        assert_eq!(fixed.regions[0].ranges, vec![0x5000_0000..0x5400_0000]);

        // The window's end is rounded down and its start up to pageblocks.
        let rounded = plan_for(&blob, Some("cma=4M@0x48100000-0x48700000"));
        assert!(rounded.messages.is_empty(), "{:?}", rounded.messages);
        assert_eq!(rounded.regions[0].ranges, vec![0x4820_0000..0x4860_0000]);
    }

    #[test]
    fn cma_bootarg_size_is_rounded_up_like_linux() {
        let blob = tree(vec![], vec![]);
        let plan_anywhere = plan_for(&blob, Some("cma=3M"));
        assert_eq!(plan_anywhere.default_cma_area().unwrap().size, 4 * MIB);
        assert_eq!(
            plan_anywhere.messages.len(),
            1,
            "{:?}",
            plan_anywhere.messages
        );
        assert!(plan_anywhere.messages[0].contains("rounded up to 4 MiB"));

        // Fixed form: Linux rounds the size up but the limit (start + 3M) down, so it fails.
        let fixed = plan_for(&blob, Some("cma=3M@0x50000000"));
        assert!(fixed.regions.is_empty());
        assert_eq!(fixed.messages.len(), 2, "{:?}", fixed.messages);
        assert!(fixed.messages[1].contains("does not fit below 0x50200000"));

        let unaligned_start = plan_for(&blob, Some("cma=4M@0x50100000"));
        assert!(unaligned_start.regions.is_empty());
        assert!(unaligned_start.messages[0].contains("must be 2 MiB aligned"));
    }

    #[test]
    fn cma_bootarg_avoids_tree_regions_and_firmware() {
        let blob = tree(
            vec![node(
                "fw@60000000",
                vec![reg(0x6000_0000, 0x2000_0000), flag("no-map")],
            )],
            vec![],
        );
        let plan = plan_for(&blob, Some("cma=256M"));
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(plan.default_cma_area().unwrap().base, 0x5000_0000);

        let busy = plan_on(&blob, &[RAM], Some("cma=64M@0x60000000"));
        assert_eq!(busy.regions.len(), 1);
        assert!(
            busy.messages[0].contains("already in use"),
            "{:?}",
            busy.messages
        );

        let no_room = plan_on(&blob, &[RAM], Some("cma=512M"));
        assert_eq!(no_room.regions.len(), 1);
        assert!(
            no_room.messages[0].contains("no free 2 MiB-aligned room"),
            "{:?}",
            no_room.messages
        );
    }

    #[test]
    fn garbage_or_oversized_cma_is_ignored_and_the_tree_default_stands() {
        let blob = tree(
            vec![node(
                "linux,cma",
                with(
                    cma_pool(),
                    vec![reg(0x5000_0000, 32 * MIB), flag("linux,cma-default")],
                ),
            )],
            vec![],
        );
        for args in ["cma=lots", "cma=2G", "cma=64M@", "cma"] {
            let plan = plan_for(&blob, Some(args));
            assert_eq!(plan.messages.len(), 1, "{args}: {:?}", plan.messages);
            assert!(
                plan.messages[0].contains("ignored"),
                "{args}: {:?}",
                plan.messages
            );
            assert_eq!(
                plan.default_cma_area().map(|a| a.name.as_str()),
                Some("linux,cma"),
                "{args}"
            );
        }
    }

    #[test]
    fn per_device_regions_two_devices_and_one_with_two_banks() {
        let bank1: Range<u64> = 0x1_0000_0000..0x1_4000_0000;
        let blob = tree(
            vec![
                node(
                    "codec-bank0@50000000",
                    with(cma_pool(), vec![reg(0x5000_0000, 64 * MIB), phandle(0x10)]),
                ),
                node(
                    "codec-bank1@100000000",
                    with(
                        cma_pool(),
                        vec![reg(0x1_0000_0000, 64 * MIB), phandle(0x11)],
                    ),
                ),
                node(
                    "display@70000000",
                    vec![reg(0x7000_0000, 8 * MIB), flag("no-map"), phandle(0x12)],
                ),
            ],
            vec![
                node(
                    "video-codec@a000000",
                    vec![
                        ("memory-region", Prop::Cells(vec![0x10, 0x11])),
                        ("memory-region-names", Prop::Strings(vec!["left", "right"])),
                    ],
                ),
                node(
                    "display-controller",
                    vec![("memory-region", Prop::Cells(vec![0x12]))],
                ),
                node(
                    "disabled-dev",
                    vec![
                        ("memory-region", Prop::Cells(vec![0x10])),
                        ("status", Prop::Strings(vec!["disabled"])),
                    ],
                ),
            ],
        );
        let plan = plan_on(&blob, &[RAM, bank1.clone()], None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_consistent(&plan, &[RAM, bank1], &[FIRMWARE]);
        assert_eq!(plan.device_regions.len(), 2);

        let codec = plan.regions_of("/video-codec@a000000").unwrap();
        let summary: Vec<(usize, Option<&str>, &str, Range<u64>)> = codec
            .regions
            .iter()
            .map(|r| {
                (
                    r.index,
                    r.name.as_deref(),
                    r.region.as_str(),
                    r.range.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    0,
                    Some("left"),
                    "codec-bank0@50000000",
                    0x5000_0000..0x5400_0000
                ),
                (
                    1,
                    Some("right"),
                    "codec-bank1@100000000",
                    0x1_0000_0000..0x1_0400_0000
                ),
            ]
        );
        assert_eq!(
            plan.cma_area_for_device("/video-codec@a000000")
                .unwrap()
                .name,
            "codec-bank0@50000000"
        );
        assert_eq!(plan.cma_areas[0].owners, ["/video-codec@a000000"]);
        assert_eq!(plan.cma_areas[1].owners, ["/video-codec@a000000"]);

        let display = plan.regions_of("/display-controller").unwrap();
        assert_eq!(display.regions[0].kind, RegionKind::NoMap);
        assert_eq!(plan.carveouts[0].owners, ["/display-controller"]);
        assert!(
            plan.cma_area_for_device("/display-controller").is_none(),
            "no default area here"
        );
    }

    #[test]
    fn several_tree_defaults_the_highest_base_wins() {
        let blob = tree(
            vec![
                node(
                    "high@60000000",
                    with(
                        cma_pool(),
                        vec![reg(0x6000_0000, 32 * MIB), flag("linux,cma-default")],
                    ),
                ),
                node(
                    "low@50000000",
                    with(
                        cma_pool(),
                        vec![reg(0x5000_0000, 32 * MIB), flag("linux,cma-default")],
                    ),
                ),
            ],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert_eq!(plan.default_cma_area().unwrap().name, "high@60000000");
        assert_eq!(plan.messages.len(), 1);
        assert!(plan.messages[0].starts_with("reserved-memory/low@50000000: also marked"));
    }

    // ---- broken input: one message each, the rest goes on -----------------------------

    /// A tree with one good region plus `broken`; the good one must survive.
    fn check_broken(broken: Node, devices: Vec<Node>, expect: &str) -> ReservedMemoryPlan {
        let good = node(
            "good@78000000",
            with(cma_pool(), vec![reg(0x7800_0000, 32 * MIB), phandle(0x99)]),
        );
        let blob = tree(vec![good, broken], devices);
        let plan = plan_for(&blob, None);
        assert_eq!(plan.messages.len(), 1, "{:?}", plan.messages);
        assert!(
            plan.messages[0].contains(expect),
            "expected {expect:?} in {:?}",
            plan.messages
        );
        assert!(
            plan.regions.iter().any(|r| r.name == "good@78000000"),
            "good region lost"
        );
        assert_consistent(&plan, &[RAM], &[FIRMWARE]);
        plan
    }

    #[test]
    fn overlapping_region_is_refused() {
        let plan = check_broken(
            node("overlap@79000000", vec![reg(0x7900_0000, 32 * MIB)]),
            vec![],
            "overlaps region good@78000000",
        );
        assert_eq!(plan.regions.len(), 1);
    }

    #[test]
    fn region_on_firmware_is_refused() {
        check_broken(
            node("fw@40800000", vec![reg(0x4080_0000, MIB)]),
            vec![],
            "overlaps memory already in use",
        );
    }

    #[test]
    fn region_outside_ram_is_refused() {
        check_broken(
            node("far@90000000", vec![reg(0x9000_0000, MIB), flag("no-map")]),
            vec![],
            "lies outside RAM",
        );
        check_broken(
            node("straddle@7f000000", vec![reg(0x7F00_0000, 32 * MIB)]),
            vec![],
            "lies outside RAM",
        );
    }

    #[test]
    fn misaligned_reusable_region_is_refused() {
        check_broken(
            node(
                "cma@50100000",
                with(cma_pool(), vec![reg(0x5010_0000, 4 * MIB)]),
            ),
            vec![],
            "not 2 MiB (pageblock) aligned",
        );
        check_broken(
            node(
                "cma@50000000",
                with(cma_pool(), vec![reg(0x5000_0000, 3 * MIB)]),
            ),
            vec![],
            "not 2 MiB (pageblock) aligned",
        );
        check_broken(
            node("dyn", with(cma_pool(), vec![("size", cells64(&[3 * MIB]))])),
            vec![],
            "not a multiple of 2 MiB",
        );
        // A non-reusable region only needs whole pages.
        let blob = tree(
            vec![node("small@50100000", vec![reg(0x5010_0000, 3 * MIB)])],
            vec![],
        );
        assert!(plan_for(&blob, None).messages.is_empty());
        check_broken(
            node("odd@50000100", vec![reg(0x5000_0100, 0x1000)]),
            vec![],
            "not aligned to 4 KiB pages",
        );
    }

    #[test]
    fn no_map_and_reusable_together_are_refused() {
        check_broken(
            node(
                "both@50000000",
                with(cma_pool(), vec![reg(0x5000_0000, 4 * MIB), flag("no-map")]),
            ),
            vec![],
            "both no-map and reusable",
        );
    }

    #[test]
    fn bad_property_lengths_are_refused() {
        check_broken(
            node(
                "short@50000000",
                vec![("reg", Prop::Cells(vec![0, 0x5000_0000, 0]))],
            ),
            vec![],
            "reg is 12 bytes",
        );
        check_broken(
            node("emptyreg", vec![flag("reg")]),
            vec![],
            "reg is 0 bytes",
        );
        check_broken(
            node("dyn", vec![("size", Prop::Cells(vec![0x100_0000]))]),
            vec![],
            "size is 4 bytes, expected 8",
        );
        check_broken(
            node(
                "dyn",
                vec![
                    ("size", cells64(&[MIB])),
                    ("alignment", Prop::Cells(vec![1])),
                ],
            ),
            vec![],
            "alignment is 4 bytes",
        );
        check_broken(
            node(
                "dyn",
                vec![
                    ("size", cells64(&[MIB])),
                    ("alloc-ranges", Prop::Cells(vec![0, 1, 2])),
                ],
            ),
            vec![],
            "alloc-ranges is 12 bytes",
        );
        check_broken(
            node(
                "dyn",
                vec![("size", cells64(&[MIB])), ("alignment", cells64(&[0x3000]))],
            ),
            vec![],
            "not a power of two",
        );
        check_broken(
            node("nothing", vec![compatible("shared-dma-pool")]),
            vec![],
            "neither reg nor size",
        );
    }

    #[test]
    fn zero_and_oversized_regions_are_refused() {
        check_broken(
            node("zero@50000000", vec![reg(0x5000_0000, 0)]),
            vec![],
            "zero size",
        );
        check_broken(
            node("dyn", vec![("size", cells64(&[0]))]),
            vec![],
            "zero size",
        );
        check_broken(
            node("huge@40000000", vec![reg(0x4000_0000, 2 << 30)]),
            vec![],
            "bigger than all RAM",
        );
        check_broken(
            node("dyn", vec![("size", cells64(&[2 << 30]))]),
            vec![],
            "bigger than all RAM",
        );
        check_broken(
            node("wrap", vec![reg(u64::MAX - 0xFFF, 0x2000)]),
            vec![],
            "wraps past the end",
        );
        check_broken(
            node(
                "tight",
                with(
                    cma_pool(),
                    vec![
                        ("size", cells64(&[64 * MIB])),
                        ("alloc-ranges", cells64(&[0x5000_0000, 32 * MIB])),
                    ],
                ),
            ),
            vec![],
            "does not fit in its alloc-ranges",
        );
        // Everything above the firmware except the good region is free, but not 1 GiB - 16 MiB.
        check_broken(
            node("dyn", vec![("size", cells64(&[1008 * MIB]))]),
            vec![],
            "no free 4 KiB-aligned room",
        );
    }

    #[test]
    fn one_bad_reg_entry_skips_only_that_entry() {
        let plan = check_broken(
            node(
                "multi@50000000",
                vec![(
                    "reg",
                    cells64(&[0x5000_0000, MIB, 0x9000_0000, MIB, 0x5100_0000, MIB]),
                )],
            ),
            vec![],
            "reg entry 1: [0x90000000..0x90100000) lies outside RAM; entry skipped",
        );
        let multi = plan
            .regions
            .iter()
            .find(|r| r.name == "multi@50000000")
            .unwrap();
        assert_eq!(
            multi.ranges,
            [0x5000_0000..0x5010_0000, 0x5100_0000..0x5110_0000]
        );
    }

    #[test]
    fn dangling_and_foreign_phandles_are_reported() {
        let plan = check_broken(
            node("spare@50000000", vec![reg(0x5000_0000, MIB)]),
            vec![node(
                "dev",
                vec![("memory-region", Prop::Cells(vec![0x99, 0x4242]))],
            )],
            "/dev: memory-region[1] dangling phandle 0x4242",
        );
        assert_eq!(
            plan.regions_of("/dev").unwrap().regions.len(),
            1,
            "the good index still resolves"
        );

        let mut intc = node("intc", vec![phandle(0x55)]);
        intc.children.push(node(
            "dev",
            vec![("memory-region", Prop::Cells(vec![0x55]))],
        ));
        check_broken(
            node("spare@50000000", vec![reg(0x5000_0000, MIB)]),
            vec![intc],
            "/intc/dev: memory-region[0] points at /intc, which is not a /reserved-memory child",
        );

        check_broken(
            node("spare@50000000", vec![reg(0x5000_0000, MIB)]),
            vec![node(
                "dev",
                vec![("memory-region", Prop::Bytes(vec![0, 0, 0x99]))],
            )],
            "memory-region is 3 bytes",
        );
    }

    #[test]
    fn device_pointing_at_a_refused_region_is_reported() {
        let blob = tree(
            vec![node(
                "bad@50100000",
                with(cma_pool(), vec![reg(0x5010_0000, 4 * MIB), phandle(0x20)]),
            )],
            vec![node(
                "dev",
                vec![("memory-region", Prop::Cells(vec![0x20]))],
            )],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.regions.is_empty());
        assert!(plan.device_regions.is_empty());
        assert_eq!(plan.messages.len(), 2, "{:?}", plan.messages);
        assert!(plan.messages[0].starts_with("reserved-memory/bad@50100000: "));
        assert_eq!(plan.messages[1], "/dev: memory-region[0] points at bad@50100000, which was not reserved (see its message)");
    }

    #[test]
    fn disabled_region_is_ignored_silently_but_its_users_are_told() {
        let blob = tree(
            vec![node(
                "off@50000000",
                vec![
                    reg(0x5000_0000, MIB),
                    ("status", Prop::Strings(vec!["disabled"])),
                    phandle(5),
                ],
            )],
            vec![node("dev", vec![("memory-region", Prop::Cells(vec![5]))])],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.regions.is_empty());
        assert_eq!(
            plan.messages,
            ["/dev: memory-region[0] points at /reserved-memory/off@50000000, which is disabled"]
        );
    }

    #[test]
    fn unusable_reserved_memory_node_is_ignored_whole() {
        let region = || vec![node("r@50000000", vec![reg(0x5000_0000, MIB)])];
        let cases: Vec<(Vec<(&'static str, Prop)>, &str)> = vec![
            (
                vec![
                    ("#address-cells", Prop::Cells(vec![2])),
                    ("#size-cells", Prop::Cells(vec![2])),
                ],
                "ranges missing",
            ),
            (
                vec![("#size-cells", Prop::Cells(vec![2])), flag("ranges")],
                "#address-cells missing",
            ),
            (
                vec![
                    ("#address-cells", Prop::Cells(vec![3])),
                    ("#size-cells", Prop::Cells(vec![2])),
                    flag("ranges"),
                ],
                "#address-cells = 3",
            ),
            (
                vec![
                    ("#address-cells", Prop::Bytes(vec![2])),
                    ("#size-cells", Prop::Cells(vec![2])),
                    flag("ranges"),
                ],
                "#address-cells is 1 bytes",
            ),
            (
                vec![
                    ("#address-cells", Prop::Cells(vec![2])),
                    ("#size-cells", Prop::Cells(vec![2])),
                    ("ranges", cells64(&[0, 0x4000_0000, 0x4000_0000])),
                ],
                "non-empty ranges",
            ),
        ];
        for (props, expect) in cases {
            let blob = tree_with(props, region(), vec![]);
            let plan = plan_for(&blob, None);
            assert!(plan.regions.is_empty(), "{expect}");
            assert_eq!(plan.messages.len(), 1, "{expect}: {:?}", plan.messages);
            assert!(
                plan.messages[0].contains(expect),
                "{expect}: {:?}",
                plan.messages
            );
        }
    }

    #[test]
    fn one_cell_addresses_are_honoured() {
        let props = vec![
            ("#address-cells", Prop::Cells(vec![1])),
            ("#size-cells", Prop::Cells(vec![1])),
            flag("ranges"),
        ];
        let blob = tree_with(
            props,
            vec![
                node(
                    "a@50000000",
                    with(
                        cma_pool(),
                        vec![("reg", Prop::Cells(vec![0x5000_0000, 0x200_0000]))],
                    ),
                ),
                node(
                    "b",
                    vec![
                        ("size", Prop::Cells(vec![0x10_0000])),
                        ("alloc-ranges", Prop::Cells(vec![0x6000_0000, 0x100_0000])),
                    ],
                ),
            ],
            vec![],
        );
        let plan = plan_for(&blob, None);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(plan.regions[0].ranges, vec![0x5000_0000..0x5200_0000]);
        assert_eq!(plan.regions[1].ranges, vec![0x60F0_0000..0x6100_0000]);
    }

    #[test]
    fn tree_without_reserved_memory_plans_nothing() {
        let mut root = node(
            "",
            vec![
                ("#address-cells", Prop::Cells(vec![2])),
                ("#size-cells", Prop::Cells(vec![2])),
            ],
        );
        root.children.push(node("chosen", vec![]));
        let mut fdt = FdtWriter::new().unwrap();
        write(&mut fdt, &root);
        let blob = fdt.finish().unwrap();
        let plan = plan_for(&blob, None);
        assert_eq!(plan, ReservedMemoryPlan::default());
    }

    #[test]
    fn no_ram_refuses_everything_without_panicking() {
        let blob = tree(
            vec![
                node("r@50000000", vec![reg(0x5000_0000, MIB)]),
                node("d", vec![("size", cells64(&[MIB]))]),
            ],
            vec![],
        );
        let fdt = Fdt::new(&blob).unwrap();
        let plan = plan_reserved_memory(&fdt, &[], &[], Some("cma=64M"));
        assert!(plan.regions.is_empty());
        assert_eq!(plan.messages.len(), 3, "{:?}", plan.messages);
    }

    /// The overlays in `testdata/reserved/*.dtso` applied to QEMU virt's own DTB (see
    /// `regenerate.sh` there): the same forms, through the real machine's tree.
    mod qemu_virt_overlays {
        use super::*;

        fn plan_virt(blob: &[u8]) -> ReservedMemoryPlan {
            let fdt = Fdt::new(blob).expect("merged blob parses");
            let banks: Vec<Range<u64>> = fdt
                .memory()
                .regions()
                .map(|r| {
                    let start = r.starting_address as u64;
                    start..start + r.size.unwrap_or(0) as u64
                })
                .collect();
            assert_eq!(banks, vec![RAM], "fixture is the 1 GiB virt machine");
            plan_reserved_memory(&fdt, &banks, &[FIRMWARE], fdt.chosen().bootargs())
        }

        #[test]
        fn static_cma() {
            let plan = plan_virt(include_bytes!("testdata/reserved/static-cma.virt.dtb"));
            assert!(plan.messages.is_empty(), "{:?}", plan.messages);
            assert_eq!(plan.cma_areas.len(), 1);
            let area = &plan.cma_areas[0];
            assert_eq!(
                (area.name.as_str(), area.base, area.size, area.is_default),
                ("video@50000000", 0x5000_0000, 64 * MIB, false)
            );
            assert_eq!(area.owners, ["/video-codec"]);
        }

        #[test]
        fn dynamic_cma() {
            let plan = plan_virt(include_bytes!("testdata/reserved/dynamic-cma.virt.dtb"));
            assert!(plan.messages.is_empty(), "{:?}", plan.messages);
            let area = plan.default_cma_area().unwrap();
            assert_eq!(
                (area.name.as_str(), area.base, area.size),
                ("linux,cma", 0x5D00_0000, 64 * MIB)
            );
        }

        #[test]
        fn nomap_carveout() {
            let plan = plan_virt(include_bytes!("testdata/reserved/nomap-carveout.virt.dtb"));
            assert!(plan.messages.is_empty(), "{:?}", plan.messages);
            assert_eq!(
                plan.not_mapped(),
                vec![0x6000_0000..0x6020_0000, 0x6100_0000..0x6110_0000]
            );
            assert!(plan
                .carveouts
                .iter()
                .all(|c| c.owners == ["/secure-firmware"]));
        }

        #[test]
        fn cmdline_cma_overrides_the_tree_default() {
            let plan = plan_virt(include_bytes!("testdata/reserved/cmdline-cma.virt.dtb"));
            assert_eq!(plan.messages.len(), 1, "{:?}", plan.messages);
            assert!(plan.messages[0].contains("linux,cma@70000000: bypassed"));
            let area = plan.default_cma_area().unwrap();
            assert_eq!(
                (area.name.as_str(), area.base, area.size),
                ("reserved", 0x5400_0000, 64 * MIB)
            );
            assert_eq!(names(&plan), ["camera@68000000", "reserved"]);
        }

        #[test]
        fn per_device_regions() {
            let plan = plan_virt(include_bytes!("testdata/reserved/per-device.virt.dtb"));
            assert!(plan.messages.is_empty(), "{:?}", plan.messages);
            let codec = plan.regions_of("/video-codec").unwrap();
            let seen: Vec<(Option<&str>, &str, Range<u64>)> = codec
                .regions
                .iter()
                .map(|r| (r.name.as_deref(), r.region.as_str(), r.range.clone()))
                .collect();
            assert_eq!(
                seen,
                [
                    (Some("left"), "bank-low@48000000", 0x4800_0000..0x4A00_0000),
                    (
                        Some("right"),
                        "bank-high@7c000000",
                        0x7C00_0000..0x7E00_0000
                    ),
                ]
            );
            let display = plan.regions_of("/display").unwrap();
            assert_eq!(display.regions.len(), 1);
            assert_eq!(display.regions[0].kind, RegionKind::NoMap);
            assert_eq!(display.regions[0].range, 0x7780_0000..0x7800_0000);
        }

        #[test]
        fn broken_nodes() {
            let plan = plan_virt(include_bytes!("testdata/reserved/broken.virt.dtb"));
            assert_eq!(names(&plan), ["good@78000000"]);
            let expected = [
                "overlap@79000000: [0x79000000..0x7b000000) overlaps region good@78000000",
                "far@90000000: [0x90000000..0x90100000) lies outside RAM",
                "misaligned@50100000: [0x50100000..0x50500000) is a reusable CMA region whose base or size is not 2 MiB",
                "both@52000000: has both no-map and reusable",
                "shortreg@54000000: reg is 12 bytes",
                "zero@56000000: has zero size",
                "huge: size 4096 MiB is bigger than all RAM",
                "tight: 64 MiB (2 MiB-aligned) does not fit in its alloc-ranges",
                "/user: memory-region[1] dangling phandle 0xdead",
            ];
            assert_eq!(plan.messages.len(), expected.len(), "{:#?}", plan.messages);
            for want in expected {
                assert!(
                    plan.messages.iter().any(|m| m.contains(want)),
                    "missing {want:?} in {:#?}",
                    plan.messages
                );
            }
            assert_eq!(
                plan.regions_of("/user").unwrap().regions[0].region,
                "good@78000000"
            );
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Anything at all, including wrong lengths and non-cell bytes.
        fn wild_property() -> impl Strategy<Value = (&'static str, Prop)> {
            let names = prop::sample::select(vec![
                "reg",
                "size",
                "alignment",
                "alloc-ranges",
                "status",
                "phandle",
            ]);
            (names, prop::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(name, bytes)| (name, Prop::Bytes(bytes)))
        }

        /// A child that is often valid: `reg` or `size` from plausible values, some flags,
        /// sometimes an `alignment`/`alloc-ranges`, sometimes garbage on top.
        fn child() -> impl Strategy<Value = Vec<(&'static str, Prop)>> {
            let base = prop::sample::select(vec![
                0u64,
                0x4000_0000,
                0x4080_0000,
                0x4100_0000,
                0x5000_0000,
                0x5010_0000,
                0x5020_0000,
                0x7E00_0000,
                0x7FFF_F000,
                0x9000_0000,
                u64::MAX - 0xFFF,
            ]);
            let size = prop::sample::select(vec![
                0u64,
                0x1000,
                0x10_0000,
                0x20_0000,
                0x30_0000,
                0x200_0000,
                0x400_0000,
                0x1000_0000,
                0x4000_0000,
                0x8000_0000,
            ]);
            let align = prop::sample::select(vec![0u64, 0x1000, 0x3000, 0x10_0000, 0x100_0000]);
            (
                (prop::bool::ANY, base.clone(), size.clone()),
                (
                    prop::bool::ANY,
                    prop::bool::ANY,
                    prop::bool::ANY,
                    prop::bool::ANY,
                ),
                prop::option::of(align),
                prop::option::of((base, size)),
                prop::collection::vec(wild_property(), 0..2),
            )
                .prop_map(
                    |(
                        (is_static, b, sz),
                        (pool, no_map, reusable, default),
                        align,
                        window,
                        wild,
                    )| {
                        let mut props = Vec::new();
                        if is_static {
                            props.push(reg(b, sz));
                        } else {
                            props.push(("size", cells64(&[sz])));
                        }
                        if pool {
                            props.push(compatible("shared-dma-pool"));
                        }
                        if no_map {
                            props.push(flag("no-map"));
                        }
                        if reusable {
                            props.push(flag("reusable"));
                        }
                        if default {
                            props.push(flag("linux,cma-default"));
                        }
                        if let Some(a) = align {
                            props.push(("alignment", cells64(&[a])));
                        }
                        if let Some((start, length)) = window {
                            props.push(("alloc-ranges", cells64(&[start, length])));
                        }
                        // A wild property with a name already present shadows nothing: the
                        // first occurrence wins, so put garbage first to let it take effect.
                        let mut all: Vec<(&'static str, Prop)> = wild;
                        all.extend(props);
                        all
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn any_reserved_memory_children_give_a_consistent_plan(
                children in prop::collection::vec(child(), 0..7),
                references in prop::collection::vec(0u32..9, 0..6),
                bootargs in prop::sample::select(vec!["", "cma=64M", "cma=0", "cma=3M@0x50000000", "cma=16M@0x41000000-0x50000000", "cma=xyz", "cma=64M@0x7c000000"]),
            ) {
                let regions: Vec<Node> = children
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut props)| {
                        props.push(phandle(i as u32 + 1));
                        node(&format!("r{i}"), props)
                    })
                    .collect();
                let device = node("dev", vec![("memory-region", Prop::Cells(references))]);
                let blob = tree(regions, vec![device]);
                let fdt = Fdt::new(&blob).unwrap();
                let plan = plan_reserved_memory(&fdt, &[RAM], &[FIRMWARE], Some(bootargs));
                assert_consistent(&plan, &[RAM], &[FIRMWARE]);
                // Every device reference points at the region it names.
                for device in &plan.device_regions {
                    for r in &device.regions {
                        prop_assert_eq!(&plan.regions[r.region_index].name, &r.region);
                        prop_assert_eq!(plan.regions[r.region_index].primary(), r.range.clone());
                    }
                }
            }
        }
    }
}
