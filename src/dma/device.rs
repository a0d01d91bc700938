//! A device's DMA description, read from the device tree the way Linux's
//! `of_dma_configure` reads it.
//!
//! # Theory of operation
//!
//! - CMA area: the device's `memory-region` entry 0 if it is a CMA area
//!   (`of_reserved_mem_device_init` sets `dev->cma_area`), else the default area
//!   (`dev_get_cma_area`); the reserved-memory plan already decides this
//!   ([`ReservedMemoryPlan::cma_area_for_device`]).
//! - Coherency: `of_dma_is_coherent`: `dma-coherent` on the node or any ancestor. arm64
//!   devices without it are non-coherent: the CPU must clean and invalidate around DMA.
//! - Addressing: `of_dma_get_range`: the nearest node, from the device up, whose
//!   `dma-ranges` is non-empty; an empty `dma-ranges` on the way means identity. Each
//!   entry is (bus address in that node's `#address-cells`, CPU address in its parent's,
//!   size in its `#size-cells`) and gives `offset = cpu - bus` (`bus_dma_region`). No
//!   `dma-ranges` anywhere: the 64-bit identity. The address limit is the highest bus
//!   address any entry reaches. The CPU side of an entry is taken as a CPU physical address
//!   (buses nested under further translating buses are not supported).
//! - `dev_name`: `of_device_make_bus_id` for a top-level node: `<reg address hex>.<node
//!   name>` (`a003e00.virtio_mmio`), or the node's full name when it has no `reg`.
//!
//! [`DmaConstraints`] also carries what only the driver knows (the DT has no property for
//! it): `max_segments` (1 for a device that cannot scatter-gather, Linux's
//! `dma_parms.max_segment_count`) and the alignment its buffers need.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::dt::cells::read_cells;
use crate::dt::reserved::ReservedMemoryPlan;
use crate::dt::tree::{DeviceTree, NodeId};
use crate::util::PAGE_SIZE;

/// One `dma-ranges` entry (`struct bus_dma_region`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaRange {
    pub cpu_start: u64,
    pub bus_start: u64,
    pub size: u64,
}

impl DmaRange {
    /// `cpu - bus`, as Linux's `offset` (wrapping: a bus above its CPU window is legal).
    pub fn offset(&self) -> u64 {
        self.cpu_start.wrapping_sub(self.bus_start)
    }
}

/// What an attachment must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaConstraints {
    /// Highest bus address the device can reach (inclusive), `u64::MAX` for 64-bit.
    pub addr_limit: u64,
    /// Every segment's start must be a multiple of this (a power of two, at least a page).
    pub alignment: u64,
    /// Most segments one mapping may have; 1 for a device that cannot scatter-gather.
    pub max_segments: usize,
    /// `dma-coherent`: no cache maintenance needed.
    pub coherent: bool,
}

impl Default for DmaConstraints {
    fn default() -> Self {
        DmaConstraints {
            addr_limit: u64::MAX,
            alignment: PAGE_SIZE,
            max_segments: usize::MAX,
            coherent: false,
        }
    }
}

/// A device as the DMA layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDma {
    /// Node path (`/video-codec`).
    pub path: String,
    /// Linux's `dev_name`, what bufinfo lists under "Attached Devices".
    pub name: String,
    /// The CMA area `dma_alloc_coherent` tries first.
    pub cma_area: Option<String>,
    /// `dma-ranges` windows; empty for the identity.
    pub ranges: Vec<DmaRange>,
    pub constraints: DmaConstraints,
}

/// Why a device's DMA description could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceError {
    NoSuchNode(String),
    /// A `dma-ranges` that is not a whole number of entries, or with cells over 2.
    BadDmaRanges {
        node: String,
        reason: &'static str,
    },
    /// `alignment` not a power of two of at least a page, or `max_segments` 0.
    BadConstraint {
        what: &'static str,
        value: u64,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NoSuchNode(p) => write!(f, "no device-tree node {p}"),
            DeviceError::BadDmaRanges { node, reason } => write!(f, "{node}: dma-ranges {reason}"),
            DeviceError::BadConstraint { what, value } => write!(f, "bad {what} {value:#x}"),
        }
    }
}

impl core::error::Error for DeviceError {}

impl DeviceDma {
    /// A device outside the tree (tests, software devices): identity addressing, default
    /// area, non-coherent, page alignment, any number of segments.
    pub fn new(name: &str, cma_area: Option<&str>) -> DeviceDma {
        DeviceDma {
            path: String::new(),
            name: name.to_string(),
            cma_area: cma_area.map(str::to_string),
            ranges: Vec::new(),
            constraints: DmaConstraints::default(),
        }
    }

    /// Read `path`'s description from the tree and the plan.
    pub fn from_tree(
        tree: &DeviceTree<'_>,
        plan: &ReservedMemoryPlan,
        path: &str,
    ) -> Result<DeviceDma, DeviceError> {
        let id = tree
            .find(path)
            .ok_or_else(|| DeviceError::NoSuchNode(path.to_string()))?;
        let ranges = dma_ranges(tree, id)?;
        let addr_limit = if ranges.is_empty() {
            u64::MAX
        } else {
            ranges
                .iter()
                .map(|r| r.bus_start.saturating_add(r.size.saturating_sub(1)))
                .max()
                .unwrap_or(u64::MAX)
        };
        Ok(DeviceDma {
            path: path.to_string(),
            name: dev_name(tree, id),
            cma_area: plan.cma_area_for_device(path).map(|a| a.name.clone()),
            ranges,
            constraints: DmaConstraints {
                addr_limit,
                coherent: is_coherent(tree, id),
                ..DmaConstraints::default()
            },
        })
    }

    /// The same device allocating from its `memory-region-names` entry `name` when that
    /// is a CMA area (a codec with bitstream and frame regions in different banks);
    /// otherwise unchanged (its first region or the default area), as Linux drivers fall
    /// back when `of_reserved_mem_device_init_by_name` fails.
    pub fn for_region_named(mut self, plan: &ReservedMemoryPlan, name: &str) -> DeviceDma {
        if let Some(area) = plan.cma_area_for_device_by_name(&self.path, name) {
            self.cma_area = Some(area.name.clone());
        }
        self
    }

    /// The driver's limit on segments per mapping (1: no scatter-gather).
    pub fn with_max_segments(mut self, max: usize) -> Result<DeviceDma, DeviceError> {
        if max == 0 {
            return Err(DeviceError::BadConstraint {
                what: "max_segments",
                value: 0,
            });
        }
        self.constraints.max_segments = max;
        Ok(self)
    }

    /// The alignment the driver needs for every segment.
    pub fn with_alignment(mut self, alignment: u64) -> Result<DeviceDma, DeviceError> {
        if !alignment.is_power_of_two() || alignment < PAGE_SIZE {
            return Err(DeviceError::BadConstraint {
                what: "alignment",
                value: alignment,
            });
        }
        self.constraints.alignment = alignment;
        Ok(self)
    }

    /// Bus address of CPU range `[phys, phys + len)` (`phys_to_dma`), `None` when no
    /// window holds all of it.
    pub fn bus_address(&self, phys: u64, len: u64) -> Option<u64> {
        if self.ranges.is_empty() {
            return Some(phys);
        }
        let end = phys.checked_add(len)?;
        self.ranges
            .iter()
            .find(|r| r.cpu_start <= phys && end <= r.cpu_start.saturating_add(r.size))
            .map(|r| phys.wrapping_sub(r.offset()))
    }
}

/// `of_dma_is_coherent`: the node or an ancestor says `dma-coherent`.
fn is_coherent(tree: &DeviceTree<'_>, mut id: NodeId) -> bool {
    loop {
        let node = tree.node(id);
        if node.has("dma-coherent") {
            return true;
        }
        match node.parent() {
            Some(parent) => id = parent,
            None => return false,
        }
    }
}

/// `of_device_make_bus_id` for a device directly under a bus that maps its `reg`.
fn dev_name(tree: &DeviceTree<'_>, id: NodeId) -> String {
    let node = tree.node(id);
    match tree.reg(id).ok().and_then(|r| r.first().cloned()) {
        Some(window) => format!("{:x}.{}", window.start, node.base_name()),
        None => node.name().to_string(),
    }
}

/// `of_dma_get_range`: the nearest non-empty `dma-ranges` from the node up.
fn dma_ranges(tree: &DeviceTree<'_>, id: NodeId) -> Result<Vec<DmaRange>, DeviceError> {
    let mut at = Some(id);
    while let Some(node_id) = at {
        let node = tree.node(node_id);
        match node.property("dma-ranges") {
            Some(value) if !value.is_empty() => return parse_dma_ranges(tree, node_id, value),
            _ => at = node.parent(),
        }
    }
    Ok(Vec::new())
}

fn parse_dma_ranges(
    tree: &DeviceTree<'_>,
    id: NodeId,
    value: &[u8],
) -> Result<Vec<DmaRange>, DeviceError> {
    let node = tree.node(id);
    let bad = |reason| DeviceError::BadDmaRanges {
        node: node.path().to_string(),
        reason,
    };
    let (child_ac, size_cells) = node.child_cells();
    let parent_ac = node.parent().map_or(2, |p| tree.node(p).child_cells().0);
    if child_ac > 2 || parent_ac > 2 || size_cells > 2 {
        return Err(bad("has more than 2 cells per number"));
    }
    let entry = ((child_ac + parent_ac + size_cells) * 4) as usize;
    if entry == 0 || !value.len().is_multiple_of(entry) {
        return Err(bad("is not a whole number of entries"));
    }
    value
        .chunks_exact(entry)
        .map(|chunk| {
            let bus = read_cells(chunk, child_ac).ok_or(bad("entry too short"))?;
            let cpu = read_cells(&chunk[(child_ac * 4) as usize..], parent_ac)
                .ok_or(bad("entry too short"))?;
            let size = read_cells(&chunk[((child_ac + parent_ac) * 4) as usize..], size_cells)
                .ok_or(bad("entry too short"))?;
            if size == 0 || cpu.checked_add(size).is_none() || bus.checked_add(size - 1).is_none() {
                return Err(bad("entry wraps or is empty"));
            }
            Ok(DmaRange {
                cpu_start: cpu,
                bus_start: bus,
                size,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dt::reserved::plan_reserved_memory;
    use alloc::vec;
    use vm_fdt::FdtWriter;

    /// A QEMU-virt-shaped tree: 1 GiB at 0x4000_0000, a default CMA area and a per-device
    /// one, a no-map `shared-dma-pool`, a 32-bit bus with `dma-ranges` (bus 0 = CPU
    /// 0x4000_0000, 1 GiB), a coherent bus, and a device outside any bus.
    pub(crate) fn test_blob() -> Vec<u8> {
        let mut f = FdtWriter::new().unwrap();
        let root = f.begin_node("").unwrap();
        f.property_u32("#address-cells", 2).unwrap();
        f.property_u32("#size-cells", 2).unwrap();
        let mem = f.begin_node("memory@40000000").unwrap();
        f.property_string("device_type", "memory").unwrap();
        f.property_array_u64("reg", &[0x4000_0000, 0x4000_0000])
            .unwrap();
        f.end_node(mem).unwrap();
        let rm = f.begin_node("reserved-memory").unwrap();
        f.property_u32("#address-cells", 2).unwrap();
        f.property_u32("#size-cells", 2).unwrap();
        f.property_null("ranges").unwrap();
        let cma = f.begin_node("linux,cma@50000000").unwrap();
        f.property_string("compatible", "shared-dma-pool").unwrap();
        f.property_null("reusable").unwrap();
        f.property_null("linux,cma-default").unwrap();
        f.property_array_u64("reg", &[0x5000_0000, 0x0100_0000])
            .unwrap();
        f.end_node(cma).unwrap();
        let own = f.begin_node("video@52000000").unwrap();
        f.property_string("compatible", "shared-dma-pool").unwrap();
        f.property_null("reusable").unwrap();
        f.property_u32("phandle", 1).unwrap();
        f.property_array_u64("reg", &[0x5200_0000, 0x0040_0000])
            .unwrap();
        f.end_node(own).unwrap();
        let fb = f.begin_node("framebuffer@53000000").unwrap();
        f.property_string("compatible", "shared-dma-pool").unwrap();
        f.property_null("no-map").unwrap();
        f.property_array_u64("reg", &[0x5300_0000, 0x0010_0000])
            .unwrap();
        f.end_node(fb).unwrap();
        f.end_node(rm).unwrap();
        let bus = f.begin_node("soc32").unwrap();
        f.property_u32("#address-cells", 1).unwrap();
        f.property_u32("#size-cells", 1).unwrap();
        f.property_array_u32("ranges", &[0, 0, 0, 0x8000_0000])
            .unwrap();
        f.property_array_u32("dma-ranges", &[0, 0, 0x4000_0000, 0x4000_0000])
            .unwrap();
        let codec = f.begin_node("codec@a000000").unwrap();
        f.property_array_u32("reg", &[0x0a00_0000, 0x1000]).unwrap();
        f.property_array_u32("memory-region", &[1]).unwrap();
        f.end_node(codec).unwrap();
        f.end_node(bus).unwrap();
        let cbus = f.begin_node("coherent-bus").unwrap();
        f.property_null("dma-coherent").unwrap();
        f.property_u32("#address-cells", 2).unwrap();
        f.property_u32("#size-cells", 2).unwrap();
        f.property_null("ranges").unwrap();
        f.property_null("dma-ranges").unwrap();
        let gpu = f.begin_node("gpu@b000000").unwrap();
        f.property_array_u64("reg", &[0x0b00_0000, 0x1000]).unwrap();
        f.end_node(gpu).unwrap();
        f.end_node(cbus).unwrap();
        let plain = f.begin_node("display").unwrap();
        f.end_node(plain).unwrap();
        f.end_node(root).unwrap();
        f.finish().unwrap()
    }

    pub(crate) fn test_plan(tree: &DeviceTree<'_>) -> ReservedMemoryPlan {
        let (ram, firmware) = (0x4000_0000..0x8000_0000, 0x4000_0000..0x4100_0000);
        plan_reserved_memory(
            tree,
            core::slice::from_ref(&ram),
            core::slice::from_ref(&firmware),
            None,
        )
    }

    #[test]
    fn device_reads_area_coherency_and_dma_ranges_as_linux() {
        let blob = test_blob();
        let tree = DeviceTree::from_blob(&blob).unwrap();
        let plan = test_plan(&tree);
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);

        let codec = DeviceDma::from_tree(&tree, &plan, "/soc32/codec@a000000").unwrap();
        assert_eq!(codec.name, "a000000.codec");
        assert_eq!(codec.cma_area.as_deref(), Some("video@52000000"));
        assert!(!codec.constraints.coherent);
        assert_eq!(
            codec.ranges,
            vec![DmaRange {
                cpu_start: 0x4000_0000,
                bus_start: 0,
                size: 0x4000_0000
            }]
        );
        assert_eq!(codec.constraints.addr_limit, 0x3fff_ffff);
        assert_eq!(codec.bus_address(0x5000_0000, 0x1000), Some(0x1000_0000));
        assert_eq!(
            codec.bus_address(0x8000_0000, 0x1000),
            None,
            "outside every window"
        );
        assert_eq!(
            codec.bus_address(0x7fff_f000, 0x2000),
            None,
            "straddles the window end"
        );

        let gpu = DeviceDma::from_tree(&tree, &plan, "/coherent-bus/gpu@b000000").unwrap();
        assert!(
            gpu.constraints.coherent,
            "dma-coherent on an ancestor counts"
        );
        assert!(gpu.ranges.is_empty(), "empty dma-ranges is the identity");
        assert_eq!(
            gpu.cma_area.as_deref(),
            Some("linux,cma@50000000"),
            "default area"
        );

        let display = DeviceDma::from_tree(&tree, &plan, "/display").unwrap();
        assert_eq!(display.name, "display");
        assert_eq!(display.constraints.addr_limit, u64::MAX);
        assert_eq!(display.bus_address(0x4000_0000, 4096), Some(0x4000_0000));

        assert_eq!(
            DeviceDma::from_tree(&tree, &plan, "/nope"),
            Err(DeviceError::NoSuchNode("/nope".into()))
        );
        assert!(display.clone().with_max_segments(0).is_err());
        assert!(display.clone().with_alignment(0x1800).is_err());
        assert_eq!(
            display
                .with_alignment(1 << 20)
                .unwrap()
                .constraints
                .alignment,
            1 << 20
        );
    }

    #[test]
    fn qemus_own_virtio_nodes_are_coherent_with_identity_addressing() {
        let blob = include_bytes!("../dt/testdata/qemu-virt-1g.dtb");
        let tree = DeviceTree::from_blob(blob).unwrap();
        let d = DeviceDma::from_tree(
            &tree,
            &ReservedMemoryPlan::default(),
            "/virtio_mmio@a000000",
        )
        .unwrap();
        assert_eq!(d.name, "a000000.virtio_mmio");
        assert!(d.constraints.coherent);
        assert_eq!(
            (d.cma_area, d.ranges.len()),
            (None, 0),
            "no plan, no area; no dma-ranges"
        );
        let uart =
            DeviceDma::from_tree(&tree, &ReservedMemoryPlan::default(), "/pl011@9000000").unwrap();
        assert!(
            uart.constraints.coherent,
            "QEMU puts dma-coherent on the root: every device inherits it"
        );
    }

    #[test]
    fn broken_dma_ranges_is_a_message_not_a_panic() {
        let mut f = FdtWriter::new().unwrap();
        let root = f.begin_node("").unwrap();
        let bus = f.begin_node("bus").unwrap();
        f.property_u32("#address-cells", 1).unwrap();
        f.property_u32("#size-cells", 1).unwrap();
        f.property_array_u32("dma-ranges", &[0, 0, 0x4000_0000])
            .unwrap();
        let dev = f.begin_node("dev").unwrap();
        f.end_node(dev).unwrap();
        f.end_node(bus).unwrap();
        f.end_node(root).unwrap();
        let blob = f.finish().unwrap();
        let tree = DeviceTree::from_blob(&blob).unwrap();
        let err =
            DeviceDma::from_tree(&tree, &ReservedMemoryPlan::default(), "/bus/dev").unwrap_err();
        assert!(matches!(err, DeviceError::BadDmaRanges { .. }), "{err}");
        assert!(format!("{err}").contains("/bus: dma-ranges"));
    }
}
