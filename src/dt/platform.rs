//! Platform description from the validated device tree (safe; host-tested).
//!
//! Theory of operation: [`Platform::from_tree`] reads the one validated tree
//! ([`DeviceTree`]) and copies out what the boot code needs: RAM banks, `/chosen`, PSCI,
//! the console UART, the GIC, the timer, virtio-mmio slots, and every device register
//! window to map. It interprets the tree itself rather than through a crate's typed
//! helpers, which either `expect` nodes to exist or ignore `#address-cells` above the
//! immediate parent, `ranges` translation and three-cell GIC interrupt specifiers.
//!
//! The interpretation follows Linux's `of_address`/`of_irq` rules in the small: a node's
//! `reg` is decoded with its parent's cells and translated up through every ancestor's
//! `ranges` ([`DeviceTree::reg`]); an `interrupts` specifier is decoded with its (possibly
//! inherited) `interrupt-parent`'s `#interrupt-cells`, and a GIC specifier
//! `<type number flags>` becomes an INTID (SPI n -> 32 + n, PPI n -> 16 + n). Malformed
//! properties of the nodes we rely on (memory, UART, GIC, timer, PSCI, virtio) are errors;
//! those of other devices only drop that device from the MMIO list. Reserved memory is the
//! planner's ([`crate::dt::reserved`]), which reads the same tree.
#![forbid(unsafe_code)]

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::cells::read_cells;
use super::tree::{DeviceTree, Node, NodeId};
use crate::util::ranges::{merge, merge_overlapping, overlaps};

pub use super::error::DtError;

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
    /// Every device register window to map as Device-nGnRE, sorted, overlaps merged.
    pub mmio: Vec<Range<u64>>,
    /// Root `model` string.
    pub model: Option<String>,
    /// `/memreserve/` entries of the blob header (memory the OS must not touch).
    pub mem_reserve: Vec<Range<u64>>,
}

fn bad(path: &str, property: &'static str, reason: &'static str) -> DtError {
    DtError::bad_property(path, property, reason)
}

/// Interrupt and register reading for the nodes the firmware depends on: errors name the
/// node and the property.
struct Reader<'t, 'a> {
    tree: &'t DeviceTree<'a>,
}

impl<'t, 'a> Reader<'t, 'a> {
    fn node(&self, id: NodeId) -> &'t Node<'a> {
        self.tree.node(id)
    }

    /// The node's `reg` windows as CPU physical ranges; `Ok(empty)` when it has no `reg`.
    fn reg(&self, id: NodeId) -> Result<Vec<Range<u64>>, DtError> {
        self.tree
            .reg(id)
            .map_err(|e| bad(self.node(id).path(), "reg", e.reason()))
    }

    /// The `interrupt-parent` in force for the node (its own, else inherited).
    fn interrupt_parent(&self, mut id: NodeId) -> Option<NodeId> {
        loop {
            if let Some(phandle) = self.node(id).u32("interrupt-parent") {
                return self.tree.by_phandle(phandle);
            }
            id = self.node(id).parent()?;
        }
    }

    /// Every `interrupts` entry of the node as a GIC INTID (`None` for entries that are not
    /// GIC SPIs/PPIs).
    fn intids(&self, id: NodeId) -> Result<Vec<Option<u32>>, DtError> {
        let node = self.node(id);
        let Some(value) = node.property("interrupts") else {
            return Ok(Vec::new());
        };
        let controller = self
            .interrupt_parent(id)
            .ok_or_else(|| bad(node.path(), "interrupts", "no interrupt-parent"))?;
        let controller = self.node(controller);
        let cells = controller.u32("#interrupt-cells").ok_or_else(|| {
            bad(
                node.path(),
                "interrupts",
                "interrupt parent has no #interrupt-cells",
            )
        })?;
        let entry = (cells as usize).saturating_mul(4);
        if entry == 0 || !value.len().is_multiple_of(entry) {
            return Err(bad(
                node.path(),
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

    fn first_intid(&self, id: NodeId) -> Result<Option<u32>, DtError> {
        Ok(self.intids(id)?.first().copied().flatten())
    }

    /// Ids of the available nodes compatible with any of `with`, in tree order.
    fn compatible(&self, with: &'t [&'t str]) -> impl Iterator<Item = NodeId> + 't {
        let tree = self.tree;
        tree.nodes()
            .filter(move |(_, n)| n.is_compatible(with) && n.is_available())
            .map(|(id, _)| id)
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

impl Platform {
    /// Validate `blob` and read the platform from it: [`DeviceTree::from_blob`] then
    /// [`Platform::from_tree`]. `blob_addr` is its physical address.
    pub fn parse(blob: &[u8], blob_addr: u64) -> Result<Platform, DtError> {
        Platform::from_tree(&DeviceTree::from_blob(blob)?, blob_addr)
    }

    /// Read the platform from the validated tree of the blob at `blob_addr`. Never
    /// panics: a property the firmware depends on that cannot be decoded is a
    /// [`DtError`].
    pub fn from_tree(tree: &DeviceTree<'_>, blob_addr: u64) -> Result<Platform, DtError> {
        let reader = Reader { tree };
        // Every address the firmware needs is written in the root's cells.
        for name in ["#address-cells", "#size-cells"] {
            if let Some(value) = tree.root().property(name) {
                if value.len() != 4 {
                    return Err(bad("/", name, "not one cell"));
                }
            }
        }
        let mut platform = Platform {
            dtb: blob_addr..blob_addr.saturating_add(u64::from(tree.totalsize())),
            mem_reserve: tree.mem_reserve().to_vec(),
            model: tree.root().string("model").map(String::from),
            ..Platform::default()
        };
        platform.memory = parse_memory(&reader)?;
        parse_chosen(&reader, &mut platform)?;
        platform.psci = parse_psci(&reader)?;
        platform.uart = parse_uart(&reader, platform.stdout_path.as_deref())?;
        platform.gic = parse_gic(&reader)?;
        platform.timer = parse_timer(&reader)?;
        for id in reader.compatible(&["virtio,mmio"]) {
            let window = reader
                .reg(id)?
                .into_iter()
                .next()
                .ok_or_else(|| bad(reader.node(id).path(), "reg", "missing"))?;
            platform.virtio_mmio.push(MmioDevice {
                path: String::from(reader.node(id).path()),
                base: window.start,
                size: window.end - window.start,
                intid: reader.first_intid(id)?,
            });
        }
        platform.mmio = device_windows(&reader, &platform.memory);
        Ok(platform)
    }
}

fn parse_memory(reader: &Reader) -> Result<Vec<Range<u64>>, DtError> {
    let mut banks = Vec::new();
    for (id, node) in reader.tree.nodes() {
        if node.depth() == 1 && node.is_memory() && node.is_available() {
            banks.extend(reader.reg(id)?);
        }
    }
    let banks = merge_overlapping(banks);
    if banks.is_empty() {
        return Err(DtError::NoMemory);
    }
    Ok(banks)
}

fn parse_chosen(reader: &Reader, platform: &mut Platform) -> Result<(), DtError> {
    let Some(chosen) = reader.tree.find("/chosen").map(|id| reader.node(id)) else {
        return Ok(());
    };
    let text = |property: &'static str| -> Result<Option<String>, DtError> {
        match chosen.property(property) {
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

fn parse_psci(reader: &Reader) -> Result<Option<PsciConduit>, DtError> {
    let Some(id) = reader
        .compatible(&["arm,psci", "arm,psci-0.2", "arm,psci-1.0"])
        .next()
    else {
        return Ok(None);
    };
    let node = reader.node(id);
    match node.string("method") {
        Some("hvc") => Ok(Some(PsciConduit::Hvc)),
        Some("smc") => Ok(Some(PsciConduit::Smc)),
        _ => Err(bad(node.path(), "method", "neither \"hvc\" nor \"smc\"")),
    }
}

/// The PL011 `stdout-path` names (through `/aliases` if it is an alias), else the first.
fn parse_uart(reader: &Reader, stdout_path: Option<&str>) -> Result<Option<Pl011Info>, DtError> {
    let tree = reader.tree;
    let uarts: Vec<NodeId> = reader.compatible(&["arm,pl011"]).collect();
    let stdout_node = stdout_path.and_then(|p| {
        let path = p.split(':').next().unwrap_or(p);
        let path = if path.starts_with('/') {
            path
        } else {
            reader.node(tree.find("/aliases")?).string(path)?
        };
        uarts
            .iter()
            .copied()
            .find(|&i| reader.node(i).path() == path)
    });
    let Some(id) = stdout_node.or(uarts.first().copied()) else {
        return Ok(None);
    };
    let node = reader.node(id);
    let window = reader
        .reg(id)?
        .into_iter()
        .next()
        .ok_or_else(|| bad(node.path(), "reg", "missing"))?;
    let clock_hz = node
        .u32("clocks")
        .and_then(|phandle| tree.by_phandle(phandle))
        .and_then(|clock| reader.node(clock).u32("clock-frequency"));
    Ok(Some(Pl011Info {
        base: window.start,
        size: window.end - window.start,
        intid: reader.first_intid(id)?,
        clock_hz,
    }))
}

fn parse_gic(reader: &Reader) -> Result<Option<GicInfo>, DtError> {
    let found = reader.tree.nodes().find_map(|(id, n)| {
        if !n.is_available() {
            None
        } else if n.is_compatible(GIC_V3) {
            Some((id, 3u8))
        } else if n.is_compatible(GIC_V2) {
            Some((id, 2u8))
        } else {
            None
        }
    });
    let Some((id, version)) = found else {
        return Ok(None);
    };
    let windows = reader.reg(id)?;
    if windows.len() < 2 {
        return Err(bad(
            reader.node(id).path(),
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

fn parse_timer(reader: &Reader) -> Result<Option<TimerInfo>, DtError> {
    let Some(id) = reader
        .compatible(&["arm,armv8-timer", "arm,armv7-timer"])
        .next()
    else {
        return Ok(None);
    };
    // Binding order: secure physical, non-secure physical, virtual, hypervisor.
    let intids = reader.intids(id)?;
    let (Some(Some(phys)), Some(Some(virt))) = (intids.get(1), intids.get(2)) else {
        return Err(bad(
            reader.node(id).path(),
            "interrupts",
            "fewer than three timer PPIs",
        ));
    };
    Ok(Some(TimerInfo {
        phys_intid: *phys,
        virt_intid: *virt,
        secure_phys_intid: intids.first().copied().flatten(),
        hyp_intid: intids.get(3).copied().flatten(),
    }))
}

/// Register windows of every device node: not RAM, not CPUs, not reserved memory.
fn device_windows(reader: &Reader, memory: &[Range<u64>]) -> Vec<Range<u64>> {
    let not_devices = ["/chosen", "/aliases", "/cpus", "/reserved-memory"];
    let mut windows = Vec::new();
    for (id, node) in reader.tree.nodes() {
        let under = |top: &&str| {
            node.path()
                .strip_prefix(top)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if id == 0 || node.is_memory() || not_devices.iter().any(under) {
            continue;
        }
        // A device whose `reg` cannot be decoded is skipped here; the nodes the firmware
        // depends on were decoded strictly above.
        if let Ok(regs) = reader.tree.reg(id) {
            windows.extend(
                regs.into_iter()
                    .filter(|w| !memory.iter().any(|m| overlaps(w, m))),
            );
        }
    }
    merge(windows)
}
