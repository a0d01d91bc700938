//! Platform description from the flattened device tree (safe; host-tested).
//!
//! Theory of operation: boot hands us a byte slice it found in memory. [`Platform::parse`]
//! first proves the blob well-formed ([`fdt_check`]: header, block bounds, a full token
//! walk), because the `fdt` crate we parse with panics on malformed input and a panic at
//! boot is a silent hang. Only then does the crate walk the tree; we copy every node's
//! path and raw properties into a flat table and interpret that table ourselves, since the
//! crate's typed helpers (`memory()`, `chosen()`, `reg()`, `interrupts()`) either `expect`
//! nodes to exist or ignore `#address-cells` above the immediate parent, `ranges`
//! translation and three-cell GIC interrupt specifiers.
//!
//! The interpretation follows Linux's `of_address`/`of_irq` rules in the small: a node's
//! `reg` is decoded with its parent's `#address-cells`/`#size-cells` and translated up
//! through every ancestor's `ranges` (no `ranges` = not CPU-addressable, empty = identity);
//! an `interrupts` specifier is decoded with its (possibly inherited) `interrupt-parent`'s
//! `#interrupt-cells`, and a GIC specifier `<type number flags>` becomes an INTID (SPI n ->
//! 32 + n, PPI n -> 16 + n). Malformed properties of the nodes we rely on (memory, UART,
//! GIC, timer, PSCI, virtio, reserved memory) are errors; those of other devices only drop
//! that device from the MMIO list.
#![forbid(unsafe_code)]

mod fdt_check;
#[cfg(test)]
mod tests;

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
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
    /// UARTCLK, from the first `clocks` phandle's `clock-frequency`, if the tree says.
    pub clock_hz: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GicInfo {
    /// 2 or 3.
    pub version: u8,
    pub distributor: Range<u64>,
    /// GICv3 redistributor region(s). Empty (`0..0`) on a GICv2.
    pub redistributor: Range<u64>,
    /// GICv2 CPU interface (GICC); `None` on a GICv3, whose CPU interface is system registers.
    pub cpu_interface: Option<Range<u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerInfo {
    /// INTIDs of the EL1 physical and virtual timers (PPI n -> 16 + n).
    pub phys_intid: u32,
    pub virt_intid: u32,
    /// Secure EL1 physical timer (first entry of `interrupts`).
    pub secure_phys_intid: Option<u32>,
    /// EL2 (hypervisor) physical timer (fourth entry).
    pub hyp_intid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmioDevice {
    pub path: String,
    pub base: u64,
    pub size: u64,
    pub intid: Option<u32>,
}

/// A `/reserved-memory` child as written in the tree (interpretation lives in `reserved`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReservedNode {
    pub name: String,
    pub reg: Vec<Range<u64>>,
    pub size: Option<u64>,
    pub compatible: Option<String>,
    pub no_map: bool,
    pub reusable: bool,
    /// `alignment` of a dynamically placed region (one with `size` and no `reg`).
    pub alignment: Option<u64>,
    /// `alloc-ranges`: where a dynamically placed region may go.
    pub alloc_ranges: Vec<Range<u64>>,
    /// `linux,cma-default`: this pool is the default CMA area.
    pub cma_default: bool,
    /// `status` is absent, "okay" or "ok".
    pub enabled: bool,
    /// Why the node's properties could not be read, if they could not. A broken
    /// reserved-memory node is listed with its problem and skipped by the planner; it
    /// never stops the boot (the rest of the tree is fine).
    pub malformed: Option<String>,
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
    /// Every device register window to map as Device-nGnRE, sorted, overlaps merged.
    pub mmio: Vec<Range<u64>>,
    /// Root `model` string.
    pub model: Option<String>,
    /// `/memreserve/` entries of the blob header (memory the OS must not touch).
    pub mem_reserve: Vec<Range<u64>>,
}

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtError {
    /// Fewer bytes than an FDT header.
    TooShort {
        available: usize,
    },
    /// The first word is not 0xd00dfeed.
    BadMagic(u32),
    /// `totalsize` is smaller than the header itself.
    TotalSizeTooSmall(u32),
    /// `totalsize` claims more bytes than were handed to us.
    Truncated {
        header: u32,
        available: usize,
    },
    UnsupportedVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// A block (structure, strings, memory reservation) reaches outside `totalsize`.
    BlockOutOfRange {
        block: &'static str,
        offset: u32,
        size: u32,
        totalsize: u32,
    },
    Misaligned {
        block: &'static str,
        offset: u32,
    },
    /// The token stream is broken; `offset` is from the start of the blob.
    Malformed {
        offset: usize,
        reason: &'static str,
    },
    /// A property we depend on cannot be decoded.
    BadProperty {
        path: String,
        property: &'static str,
        reason: &'static str,
    },
    /// No `/memory` node describes any RAM.
    NoMemory,
    /// Neither x0 nor the start of RAM holds a blob (`ram_word` is what RAM base held).
    NotFound {
        x0: u64,
        ram_base: u64,
        ram_word: u32,
    },
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::TooShort { available } => write!(
                f,
                "truncated: {available} bytes cannot hold the {}-byte FDT header",
                fdt_check::HEADER_LEN
            ),
            DtError::BadMagic(magic) => {
                write!(
                    f,
                    "bad magic {magic:#010x} (expected {:#010x})",
                    fdt_check::FDT_MAGIC
                )
            }
            DtError::TotalSizeTooSmall(size) => write!(
                f,
                "header totalsize {size} is smaller than the {}-byte FDT header",
                fdt_check::HEADER_LEN
            ),
            DtError::Truncated { header, available } => {
                write!(
                    f,
                    "truncated: header says {header} bytes, only {available} available"
                )
            }
            DtError::UnsupportedVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "unsupported FDT version {version} (last compatible {last_comp_version}): \
                 need version >= 16 and last_comp_version <= 17"
            ),
            DtError::BlockOutOfRange {
                block,
                offset,
                size,
                totalsize,
            } => write!(
                f,
                "{block} block at offset {offset:#x} ({size} bytes) lies outside the \
                 {totalsize}-byte blob"
            ),
            DtError::Misaligned { block, offset } => {
                write!(f, "{block} block offset {offset:#x} is misaligned")
            }
            DtError::Malformed { offset, reason } => {
                write!(
                    f,
                    "malformed structure block at offset {offset:#x}: {reason}"
                )
            }
            DtError::BadProperty {
                path,
                property,
                reason,
            } => {
                write!(f, "{path}: bad `{property}` property: {reason}")
            }
            DtError::NoMemory => write!(f, "no /memory node describes any RAM"),
            DtError::NotFound {
                x0,
                ram_base,
                ram_word,
            } => write!(
                f,
                "no device tree: x0 is {x0:#x} and RAM base {ram_base:#x} holds {ram_word:#010x}, \
                 not the magic {:#010x}",
                fdt_check::FDT_MAGIC
            ),
        }
    }
}

/// A node copied out of the tree: its path and raw properties.
struct Node<'a> {
    path: String,
    name: &'a str,
    parent: Option<usize>,
    props: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Node<'a> {
    fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.props.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn has(&self, name: &str) -> bool {
        self.prop(name).is_some()
    }

    /// The `compatible` strings.
    fn compatible(&self) -> impl Iterator<Item = &'a str> {
        self.prop("compatible")
            .unwrap_or(&[])
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    fn is_compatible(&self, with: &[&str]) -> bool {
        self.compatible().any(|c| with.contains(&c))
    }

    /// A one-cell property.
    fn u32_prop(&self, name: &str) -> Option<u32> {
        let v = self.prop(name)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// Child `#address-cells` / `#size-cells`, with the specification's defaults.
    fn child_cells(&self) -> (u32, u32) {
        (
            self.u32_prop("#address-cells").unwrap_or(2),
            self.u32_prop("#size-cells").unwrap_or(1),
        )
    }

    fn enabled(&self) -> bool {
        matches!(self.string("status"), None | Some("okay") | Some("ok"))
    }

    /// A string property (NUL-terminated in the blob); `None` if absent or not UTF-8.
    fn string(&self, name: &str) -> Option<&'a str> {
        let v = self.prop(name)?;
        let v = v.strip_suffix(&[0]).unwrap_or(v);
        core::str::from_utf8(v).ok()
    }

    fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }
}

fn bad(path: &str, property: &'static str, reason: &'static str) -> DtError {
    DtError::BadProperty {
        path: path.to_owned(),
        property,
        reason,
    }
}

/// Read `cells` big-endian cells (0..=2) from the front of `bytes`.
fn read_cells(bytes: &[u8], cells: u32) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => Some(u64::from(u32::from_be_bytes(
            bytes.get(..4)?.try_into().ok()?,
        ))),
        2 => Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// Split a property into `(address, size)` pairs of the given cell counts.
fn pairs(
    value: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<Vec<(u64, u64)>, &'static str> {
    if address_cells > 2 || size_cells > 2 {
        return Err("more than two address or size cells");
    }
    let entry = ((address_cells + size_cells) * 4) as usize;
    if entry == 0 || !value.len().is_multiple_of(entry) {
        return Err("length is not a whole number of entries");
    }
    Ok(value
        .chunks_exact(entry)
        .filter_map(|chunk| {
            let split = (address_cells * 4) as usize;
            Some((
                read_cells(chunk, address_cells)?,
                read_cells(&chunk[split..], size_cells)?,
            ))
        })
        .collect())
}

struct Tree<'a> {
    nodes: Vec<Node<'a>>,
}

impl<'a> Tree<'a> {
    fn collect(fdt: &fdt::Fdt<'a>) -> Tree<'a> {
        fn visit<'b, 'a>(
            node: fdt::node::FdtNode<'b, 'a>,
            parent: Option<usize>,
            path: String,
            out: &mut Vec<Node<'a>>,
        ) {
            let index = out.len();
            out.push(Node {
                path: path.clone(),
                name: node.name,
                parent,
                props: node.properties().map(|p| (p.name, p.value)).collect(),
            });
            for child in node.children() {
                let child_path = if path == "/" {
                    format!("/{}", child.name)
                } else {
                    format!("{path}/{}", child.name)
                };
                visit(child, Some(index), child_path, out);
            }
        }
        let mut nodes = Vec::new();
        if let Some(root) = fdt.all_nodes().next() {
            visit(root, None, String::from("/"), &mut nodes);
        }
        Tree { nodes }
    }

    fn root(&self) -> Option<&Node<'a>> {
        self.nodes.first()
    }

    fn by_path(&self, path: &str) -> Option<&Node<'a>> {
        self.nodes.iter().find(|n| n.path == path)
    }

    fn by_phandle(&self, phandle: u32) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.u32_prop("phandle") == Some(phandle) || n.u32_prop("linux,phandle") == Some(phandle)
        })
    }

    /// Child cells of the node's parent: the cells its own `reg` is written in.
    fn reg_cells(&self, index: usize) -> (u32, u32) {
        self.nodes[index]
            .parent
            .map_or((2, 1), |p| self.nodes[p].child_cells())
    }

    /// Translate a bus address of node `index` up to a CPU physical address.
    fn translate(&self, index: usize, mut address: u64) -> Option<u64> {
        let mut bus = self.nodes[index].parent?;
        while let Some(grandparent) = self.nodes[bus].parent {
            let node = &self.nodes[bus];
            let ranges = node.prop("ranges")?;
            if !ranges.is_empty() {
                let (child_ac, size_cells) = node.child_cells();
                let (parent_ac, _) = self.nodes[grandparent].child_cells();
                if child_ac > 2 || parent_ac > 2 || size_cells > 2 {
                    return None;
                }
                let entry = ((child_ac + parent_ac + size_cells) * 4) as usize;
                if ranges.len() % entry != 0 {
                    return None;
                }
                address = ranges.chunks_exact(entry).find_map(|chunk| {
                    let child = read_cells(chunk, child_ac)?;
                    let parent = read_cells(&chunk[(child_ac * 4) as usize..], parent_ac)?;
                    let size =
                        read_cells(&chunk[((child_ac + parent_ac) * 4) as usize..], size_cells)?;
                    let offset = address.checked_sub(child)?;
                    (offset < size)
                        .then(|| parent.checked_add(offset))
                        .flatten()
                })?;
            }
            bus = grandparent;
        }
        Some(address)
    }

    /// The node's `reg` windows as CPU physical ranges; `Ok(empty)` when it has no `reg`.
    fn reg(&self, index: usize) -> Result<Vec<Range<u64>>, DtError> {
        let node = &self.nodes[index];
        let Some(value) = node.prop("reg") else {
            return Ok(Vec::new());
        };
        let (ac, sc) = self.reg_cells(index);
        let entries = pairs(value, ac, sc).map_err(|reason| bad(&node.path, "reg", reason))?;
        entries
            .into_iter()
            .map(|(address, size)| {
                let base = self.translate(index, address).ok_or_else(|| {
                    bad(
                        &node.path,
                        "reg",
                        "address not reachable through the parents' ranges",
                    )
                })?;
                let end = base
                    .checked_add(size)
                    .ok_or_else(|| bad(&node.path, "reg", "window wraps around"))?;
                Ok(base..end)
            })
            .collect()
    }

    /// The `interrupt-parent` in force for the node (its own, else inherited).
    fn interrupt_parent(&self, mut index: usize) -> Option<usize> {
        loop {
            if let Some(phandle) = self.nodes[index].u32_prop("interrupt-parent") {
                return self.by_phandle(phandle);
            }
            index = self.nodes[index].parent?;
        }
    }

    /// Every `interrupts` entry of the node as a GIC INTID (`None` for entries that are not
    /// GIC SPIs/PPIs).
    fn intids(&self, index: usize) -> Result<Vec<Option<u32>>, DtError> {
        let node = &self.nodes[index];
        let Some(value) = node.prop("interrupts") else {
            return Ok(Vec::new());
        };
        let controller = self
            .interrupt_parent(index)
            .ok_or_else(|| bad(&node.path, "interrupts", "no interrupt-parent"))?;
        let controller = &self.nodes[controller];
        let cells = controller.u32_prop("#interrupt-cells").ok_or_else(|| {
            bad(
                &node.path,
                "interrupts",
                "interrupt parent has no #interrupt-cells",
            )
        })?;
        let entry = (cells as usize).saturating_mul(4);
        if entry == 0 || !value.len().is_multiple_of(entry) {
            return Err(bad(
                &node.path,
                "interrupts",
                "length is not a whole number of specifiers",
            ));
        }
        let is_gic = controller.is_compatible(GIC_V3) || controller.is_compatible(GIC_V2);
        Ok(value
            .chunks_exact(entry)
            .map(|spec| {
                if !is_gic || cells < 2 {
                    return None;
                }
                let kind = read_cells(spec, 1)? as u32;
                let number = read_cells(&spec[4..], 1)? as u32;
                gic_intid(kind, number)
            })
            .collect())
    }

    fn first_intid(&self, index: usize) -> Result<Option<u32>, DtError> {
        Ok(self.intids(index)?.first().copied().flatten())
    }
}

const GIC_V3: &[&str] = &["arm,gic-v3"];
const GIC_V2: &[&str] = &[
    "arm,cortex-a15-gic",
    "arm,gic-400",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
];

/// GIC binding interrupt type + number -> INTID.
fn gic_intid(kind: u32, number: u32) -> Option<u32> {
    match kind {
        0 if number < 988 => Some(32 + number),    // SPI
        1 if number < 16 => Some(16 + number),     // PPI
        2 if number < 1024 => Some(4096 + number), // extended SPI
        3 if number < 64 => Some(1056 + number),   // extended PPI
        _ => None,
    }
}

/// Sort and merge overlapping or touching windows.
fn merge(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    merge_where(ranges, |last, next| next.start <= last.end)
}

/// Sort memory banks and merge only overlapping ones: two `/memory` nodes that touch
/// are still two banks (NUMA nodes, dies), and per-bank policy (one CMA region per
/// bank, PASR) needs to see them apart.
fn merge_overlapping(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    merge_where(ranges, |last, next| next.start < last.end)
}

fn merge_where(
    mut ranges: Vec<Range<u64>>,
    joins: impl Fn(&Range<u64>, &Range<u64>) -> bool,
) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if joins(last, &r) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Platform {
    /// Validate the header of `blob` and parse it. `blob_addr` is its physical address.
    ///
    /// `blob` may be longer than the tree (a window of memory); only `totalsize` bytes are
    /// read. Never panics: any defect is a [`DtError`].
    pub fn parse(blob: &[u8], blob_addr: u64) -> Result<Platform, DtError> {
        let header = fdt_check::check_header(blob)?;
        let blob = &blob[..header.totalsize as usize];
        let structure = fdt_check::check_structure(blob, &header)?;
        let rewritten;
        let tree_bytes = if structure.has_nops || header.version < 17 {
            rewritten = fdt_check::rewrite_without_nops(blob, &header, &structure);
            &rewritten[..]
        } else {
            blob
        };
        // After the checks above `Fdt::new` cannot fail; the mapping keeps it panic-free anyway.
        let fdt = fdt::Fdt::new(tree_bytes).map_err(|_| DtError::Malformed {
            offset: 0,
            reason: "rejected by the fdt crate",
        })?;
        let tree = Tree::collect(&fdt);

        let mut platform = Platform {
            dtb: blob_addr..blob_addr.saturating_add(u64::from(header.totalsize)),
            mem_reserve: structure.mem_reserve,
            ..Platform::default()
        };
        let root = tree.root().ok_or(DtError::Malformed {
            offset: 0,
            reason: "no root node",
        })?;
        platform.model = root.string("model").map(String::from);

        platform.memory = parse_memory(&tree)?;
        parse_chosen(&tree, &mut platform)?;
        platform.psci = parse_psci(&tree)?;
        platform.uart = parse_uart(&tree, platform.stdout_path.as_deref())?;
        platform.gic = parse_gic(&tree)?;
        platform.timer = parse_timer(&tree)?;
        for (index, node) in tree.nodes.iter().enumerate() {
            if node.is_compatible(&["virtio,mmio"]) && node.enabled() {
                let window = tree
                    .reg(index)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad(&node.path, "reg", "missing"))?;
                platform.virtio_mmio.push(MmioDevice {
                    path: node.path.clone(),
                    base: window.start,
                    size: window.end - window.start,
                    intid: tree.first_intid(index)?,
                });
            }
        }
        platform.reserved = parse_reserved(&tree)?;
        platform.mmio = device_windows(&tree, &platform.memory);
        Ok(platform)
    }
}

fn parse_memory(tree: &Tree) -> Result<Vec<Range<u64>>, DtError> {
    let mut banks = Vec::new();
    for (index, node) in tree.nodes.iter().enumerate() {
        let top_level = node.parent == Some(0);
        let is_memory =
            node.string("device_type") == Some("memory") || node.base_name() == "memory";
        if top_level && is_memory && node.enabled() {
            banks.extend(tree.reg(index)?);
        }
    }
    let banks = merge_overlapping(banks);
    if banks.is_empty() {
        return Err(DtError::NoMemory);
    }
    Ok(banks)
}

fn parse_chosen(tree: &Tree, platform: &mut Platform) -> Result<(), DtError> {
    let Some(chosen) = tree.by_path("/chosen") else {
        return Ok(());
    };
    let text = |property: &'static str| -> Result<Option<String>, DtError> {
        match chosen.prop(property) {
            None => Ok(None),
            Some(_) => {
                let s = chosen
                    .string(property)
                    .ok_or_else(|| bad("/chosen", property, "not a UTF-8 string"))?;
                Ok((!s.is_empty()).then(|| String::from(s)))
            }
        }
    };
    platform.bootargs = text("bootargs")?;
    platform.stdout_path = text("stdout-path")?;
    Ok(())
}

fn parse_psci(tree: &Tree) -> Result<Option<PsciConduit>, DtError> {
    let Some(node) = tree
        .nodes
        .iter()
        .find(|n| n.is_compatible(&["arm,psci", "arm,psci-0.2", "arm,psci-1.0"]) && n.enabled())
    else {
        return Ok(None);
    };
    match node.string("method") {
        Some("hvc") => Ok(Some(PsciConduit::Hvc)),
        Some("smc") => Ok(Some(PsciConduit::Smc)),
        _ => Err(bad(&node.path, "method", "neither \"hvc\" nor \"smc\"")),
    }
}

/// The PL011 `stdout-path` names (through `/aliases` if it is an alias), else the first.
fn parse_uart(tree: &Tree, stdout_path: Option<&str>) -> Result<Option<Pl011Info>, DtError> {
    let uarts: Vec<usize> = (0..tree.nodes.len())
        .filter(|&i| tree.nodes[i].is_compatible(&["arm,pl011"]) && tree.nodes[i].enabled())
        .collect();
    let stdout_node = stdout_path.and_then(|p| {
        let path = p.split(':').next().unwrap_or(p);
        let path = if path.starts_with('/') {
            path
        } else {
            tree.by_path("/aliases")?.string(path)?
        };
        uarts.iter().copied().find(|&i| tree.nodes[i].path == path)
    });
    let Some(index) = stdout_node.or(uarts.first().copied()) else {
        return Ok(None);
    };
    let node = &tree.nodes[index];
    let window = tree
        .reg(index)?
        .into_iter()
        .next()
        .ok_or_else(|| bad(&node.path, "reg", "missing"))?;
    let clock_hz = node
        .u32_prop("clocks")
        .and_then(|phandle| tree.by_phandle(phandle))
        .and_then(|clock| tree.nodes[clock].u32_prop("clock-frequency"));
    Ok(Some(Pl011Info {
        base: window.start,
        size: window.end - window.start,
        intid: tree.first_intid(index)?,
        clock_hz,
    }))
}

fn parse_gic(tree: &Tree) -> Result<Option<GicInfo>, DtError> {
    let found = tree.nodes.iter().enumerate().find_map(|(i, n)| {
        if !n.enabled() {
            None
        } else if n.is_compatible(GIC_V3) {
            Some((i, 3u8))
        } else if n.is_compatible(GIC_V2) {
            Some((i, 2u8))
        } else {
            None
        }
    });
    let Some((index, version)) = found else {
        return Ok(None);
    };
    let node = &tree.nodes[index];
    let windows = tree.reg(index)?;
    if windows.len() < 2 {
        return Err(bad(
            &node.path,
            "reg",
            "a GIC needs distributor and redistributor/CPU interface windows",
        ));
    }
    Ok(Some(GicInfo {
        version,
        distributor: windows[0].clone(),
        redistributor: if version == 3 {
            windows[1].clone()
        } else {
            0..0
        },
        cpu_interface: (version == 2).then(|| windows[1].clone()),
    }))
}

fn parse_timer(tree: &Tree) -> Result<Option<TimerInfo>, DtError> {
    let Some(index) = tree
        .nodes
        .iter()
        .position(|n| n.is_compatible(&["arm,armv8-timer", "arm,armv7-timer"]) && n.enabled())
    else {
        return Ok(None);
    };
    let path = &tree.nodes[index].path;
    // Binding order: secure physical, non-secure physical, virtual, hypervisor.
    let intids = tree.intids(index)?;
    let (Some(Some(phys)), Some(Some(virt))) = (intids.get(1), intids.get(2)) else {
        return Err(bad(path, "interrupts", "fewer than three timer PPIs"));
    };
    Ok(Some(TimerInfo {
        phys_intid: *phys,
        virt_intid: *virt,
        secure_phys_intid: intids.first().copied().flatten(),
        hyp_intid: intids.get(3).copied().flatten(),
    }))
}

fn parse_reserved(tree: &Tree) -> Result<Vec<ReservedNode>, DtError> {
    let Some(parent) = tree.nodes.iter().position(|n| n.path == "/reserved-memory") else {
        return Ok(Vec::new());
    };
    let (_, size_cells) = tree.nodes[parent].child_cells();
    let mut out = Vec::new();
    for (index, node) in tree
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.parent == Some(parent))
    {
        match reserved_node(tree, parent, index, size_cells) {
            Ok(reserved) => out.push(reserved),
            Err(err) => out.push(ReservedNode {
                name: String::from(node.name),
                enabled: node.enabled(),
                malformed: Some(format!("{err}")),
                ..ReservedNode::default()
            }),
        }
    }
    Ok(out)
}

fn reserved_node(
    tree: &Tree,
    parent: usize,
    index: usize,
    size_cells: u32,
) -> Result<ReservedNode, DtError> {
    let node = &tree.nodes[index];
    {
        let size = match node.prop("size") {
            None => None,
            Some(v) if v.len() == size_cells as usize * 4 => read_cells(v, size_cells),
            Some(_) => return Err(bad(&node.path, "size", "not #size-cells long")),
        };
        let alignment = match node.prop("alignment") {
            None => None,
            Some(v) if v.len() == size_cells as usize * 4 => read_cells(v, size_cells),
            Some(_) => return Err(bad(&node.path, "alignment", "not #size-cells long")),
        };
        let alloc_ranges = match node.prop("alloc-ranges") {
            None => Vec::new(),
            Some(v) => {
                let (ac, sc) = tree.nodes[parent].child_cells();
                pairs(v, ac, sc)
                    .map_err(|reason| bad(&node.path, "alloc-ranges", reason))?
                    .into_iter()
                    .map(|(base, len)| {
                        base.checked_add(len)
                            .map(|end| base..end)
                            .ok_or_else(|| bad(&node.path, "alloc-ranges", "range wraps around"))
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        Ok(ReservedNode {
            name: String::from(node.name),
            reg: tree.reg(index)?,
            size,
            compatible: node.compatible().next().map(String::from),
            no_map: node.has("no-map"),
            reusable: node.has("reusable"),
            alignment,
            alloc_ranges,
            cma_default: node.has("linux,cma-default"),
            enabled: node.enabled(),
            malformed: None,
        })
    }
}

/// Register windows of every device node: not RAM, not CPUs, not reserved memory.
fn device_windows(tree: &Tree, memory: &[Range<u64>]) -> Vec<Range<u64>> {
    let not_devices = ["/chosen", "/aliases", "/cpus", "/reserved-memory"];
    let mut windows = Vec::new();
    for (index, node) in tree.nodes.iter().enumerate() {
        let top = node.path.split('/').nth(1).unwrap_or("");
        let top_path = format!("/{top}");
        let is_memory = node.string("device_type") == Some("memory")
            || (node.parent == Some(0) && node.base_name() == "memory");
        if index == 0 || is_memory || not_devices.contains(&top_path.as_str()) {
            continue;
        }
        // A device whose `reg` cannot be decoded is skipped here; the nodes the firmware
        // depends on were decoded strictly above.
        if let Ok(regs) = tree.reg(index) {
            windows.extend(
                regs.into_iter()
                    .filter(|w| !memory.iter().any(|m| overlaps(w, m))),
            );
        }
    }
    merge(windows)
}
