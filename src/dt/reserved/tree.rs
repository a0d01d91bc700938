//! The reserved-memory tree walk: `/reserved-memory` and its children read once, the
//! static pass, the queue of dynamic regions, and resolving devices' `memory-region`
//! phandles and the default CMA area once everything is placed.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::{
    Carveout, CmaAreaSpec, DeviceRegion, DeviceRegionRef, NodeOutcome, Planner, RegionKind,
    RegionSource, ReservedMemoryPlan, ReservedNodeReport, ReservedRegion,
};
use crate::dt::bootargs::CmaRequest;
use crate::dt::cells;
use crate::dt::tree::{DeviceTree, Node};
use crate::mm::CmaFit;

/// Our property choosing a CMA area's placement policy (`first-fit` or `best-fit`).
pub const CMA_FIT_PROPERTY: &str = "monolith,cma-fit";

/// A CMA-style string list property as owned strings.
pub(super) fn owned_strings(value: Option<&[u8]>) -> Vec<String> {
    value
        .map(|v| cells::string_list(v).map(String::from).collect())
        .unwrap_or_default()
}

/// Properties of a child, read once.
pub(super) struct RmemNode<'n, 'a> {
    pub(super) name: &'n str,
    pub(super) path: &'n str,
    pub(super) node: &'n Node<'a>,
    pub(super) phandle: Option<u32>,
    pub(super) compatible: Vec<String>,
    pub(super) no_map: bool,
    pub(super) reusable: bool,
    pub(super) linux_cma_default: bool,
    pub(super) cma_fit: Option<CmaFit>,
}

impl RmemNode<'_, '_> {
    pub(super) fn is_cma(&self) -> bool {
        self.reusable && !self.no_map && self.compatible.iter().any(|c| c == "shared-dma-pool")
    }

    pub(super) fn kind(&self) -> RegionKind {
        if self.no_map {
            RegionKind::NoMap
        } else if self.is_cma() {
            RegionKind::Cma
        } else {
            RegionKind::Reserved
        }
    }

    pub(super) fn region(&self, ranges: Vec<Range<u64>>, dynamic: bool) -> ReservedRegion {
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
            cma_fit: self.cma_fit,
            phandle: self.phandle,
            compatible: self.compatible.clone(),
        }
    }
}

/// Cell counts of `/reserved-memory`.
#[derive(Clone, Copy)]
pub(super) struct Cells {
    pub(super) address: usize,
    pub(super) size: usize,
}

impl Planner {
    /// Static pass then dynamic pass over `/reserved-memory`'s children.
    pub(super) fn plan_tree_regions(
        &mut self,
        tree: &DeviceTree<'_>,
        cma_request: Option<CmaRequest>,
    ) -> Vec<ReservedNodeReport> {
        let mut outcomes = Vec::new();
        let Some(parent) = tree
            .nodes()
            .find(|(_, n)| n.depth() == 1 && n.base_name() == "reserved-memory")
            .map(|(_, n)| n)
        else {
            return outcomes;
        };
        let children = parent.children().iter().map(|&id| tree.node(id));
        let cells = match self.check_parent(parent) {
            Ok(cells) => Some(cells),
            Err(problem) => {
                self.note(format!("{}: {problem}; whole node ignored", parent.path()));
                None
            }
        };

        let mut dynamic = Vec::new();
        for node in children {
            let rmem = RmemNode {
                name: node.name(),
                path: node.path(),
                node,
                phandle: node.phandle(),
                compatible: owned_strings(node.property("compatible")),
                no_map: node.has("no-map"),
                reusable: node.has("reusable"),
                linux_cma_default: node.has("linux,cma-default"),
                cma_fit: self.cma_fit_property(node),
            };
            let record = |outcome| ReservedNodeReport {
                path: String::from(node.path()),
                name: String::from(node.name()),
                phandle: rmem.phandle,
                outcome,
            };
            let first_message = self.messages.len();
            let Some(cells) = cells else {
                outcomes.push(record(self.skipped(first_message.saturating_sub(1))));
                continue;
            };
            if !node.is_available() {
                outcomes.push(record(NodeOutcome::Disabled));
                continue;
            }
            if rmem.no_map && rmem.reusable {
                self.note(format!(
                    "reserved-memory/{}: has both no-map and reusable, which contradict each other; skipped",
                    rmem.name
                ));
                outcomes.push(record(self.skipped(first_message)));
                continue;
            }
            if rmem.is_cma() && rmem.linux_cma_default && cma_request.is_some() {
                self.note(format!(
                    "reserved-memory/{}: bypassed, using the cma= boot argument instead of this linux,cma-default region",
                    rmem.name
                ));
                outcomes.push(record(NodeOutcome::BypassedForCmdline));
                continue;
            }
            if let Some(reg) = node.property("reg") {
                let outcome = match self.accept_static(&rmem, reg, cells) {
                    Some(index) => NodeOutcome::Accepted(index),
                    None => self.skipped(first_message),
                };
                outcomes.push(record(outcome));
            } else if node.has("size") {
                // Placed after every static region; remember where its outcome goes.
                outcomes.push(record(NodeOutcome::Skipped(String::new())));
                dynamic.push((outcomes.len() - 1, rmem));
            } else {
                self.note(format!(
                    "reserved-memory/{}: has neither reg nor size; skipped",
                    rmem.name
                ));
                outcomes.push(record(self.skipped(first_message)));
            }
        }
        if let Some(cells) = cells {
            for (slot, rmem) in dynamic {
                let first_message = self.messages.len();
                outcomes[slot].outcome = match self.place_dynamic(&rmem, cells) {
                    Some(index) => NodeOutcome::Accepted(index),
                    None => self.skipped(first_message),
                };
            }
        }
        outcomes
    }

    /// A refusal, with the problem the planner noted for it (message `first` onwards) minus
    /// the node name in front and the consequence behind.
    fn skipped(&self, first: usize) -> NodeOutcome {
        let message = self.messages.get(first..).and_then(|m| m.last());
        let problem = message.map_or("refused", |m| {
            let m = m.split_once(": ").map_or(m.as_str(), |(_, rest)| rest);
            m.strip_suffix("; skipped")
                .or_else(|| m.strip_suffix("; whole node ignored"))
                .unwrap_or(m)
        });
        NodeOutcome::Skipped(String::from(problem))
    }

    /// `__fdt_reserved_mem_check_root`, with our cell limits.
    pub(super) fn check_parent(&self, parent: &Node<'_>) -> Result<Cells, String> {
        let read = |name: &str| -> Result<usize, String> {
            match parent.property(name) {
                None => Err(format!("{name} missing (unsupported node format)")),
                Some(value) => match cells::u32_value(value) {
                    Some(n @ 1..=2) => Ok(n as usize),
                    Some(n) => Err(format!("{name} = {n} is not supported (only 1 or 2)")),
                    None => Err(format!("{name} is {} bytes, expected 4", value.len())),
                },
            }
        };
        let address = read("#address-cells")?;
        let size = read("#size-cells")?;
        match parent.property("ranges") {
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
    /// A child's `monolith,cma-fit`: `None` when absent; a value that is not one string
    /// naming a policy is a message and `None` (the area keeps the default).
    fn cma_fit_property(&mut self, node: &Node<'_>) -> Option<CmaFit> {
        let value = node.property(CMA_FIT_PROPERTY)?;
        let fit = match cells::printable_string_list(value).as_deref() {
            Some([name]) => CmaFit::parse(name),
            _ => None,
        };
        if fit.is_none() {
            self.note(format!(
                "reserved-memory/{}: {CMA_FIT_PROPERTY} is not \"first-fit\" or \"best-fit\"; using {}",
                node.name(),
                CmaFit::default()
            ));
        }
        fit
    }

    /// Pick the default area, resolve `memory-region`s, build the output lists.
    pub(super) fn finish(
        mut self,
        tree: &DeviceTree<'_>,
        outcomes: Vec<ReservedNodeReport>,
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
                        fit: region.cma_fit.unwrap_or_default(),
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
        for (_, node) in tree.nodes() {
            let Some(list) = node.property("memory-region") else {
                continue;
            };
            if !node.is_available() {
                continue;
            }
            if list.is_empty() || !list.len().is_multiple_of(4) {
                self.note(format!(
                    "{}: memory-region is {} bytes, not a list of 4-byte phandles; ignored",
                    node.path(),
                    list.len()
                ));
                continue;
            }
            let names = owned_strings(node.property("memory-region-names"));
            let mut refs = Vec::new();
            for (index, phandle) in cells::cell_list(list).enumerate() {
                let owner = outcomes.iter().find(|o| o.phandle == Some(phandle));
                let problem = match owner.map(|o| (&o.outcome, o)) {
                    Some((NodeOutcome::Accepted(region_index), _)) => {
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
                    Some((NodeOutcome::BypassedForCmdline, o)) => format!(
                        "points at {}, bypassed for cma=; the device will use the default CMA area",
                        o.name
                    ),
                    Some((NodeOutcome::Disabled, o)) => {
                        format!("points at {}, which is disabled", o.path)
                    }
                    Some((NodeOutcome::Skipped(_), o)) => {
                        format!(
                            "points at {}, which was not reserved (see its message)",
                            o.name
                        )
                    }
                    None => match tree.by_phandle(phandle).map(|id| tree.node(id).path()) {
                        Some(path) => {
                            format!("points at {path}, which is not a /reserved-memory child")
                        }
                        None => format!("dangling phandle {phandle:#x} (no node has it)"),
                    },
                };
                self.note(format!("{}: memory-region[{index}] {problem}", node.path()));
            }
            if !refs.is_empty() {
                for r in &refs {
                    let owner = String::from(node.path());
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
                    device_path: String::from(node.path()),
                    regions: refs,
                });
            }
        }

        ReservedMemoryPlan {
            regions: self.regions,
            cma_areas,
            carveouts,
            device_regions,
            nodes: outcomes,
            messages: self.messages,
        }
    }

    /// The `cma=` area if there is one (`dma_contiguous_reserve` sets it last); otherwise
    /// the `linux,cma-default` area initialised last. Linux's `rmem_cma_setup` sets
    /// `dma_contiguous_default_area` for every such pool it accepts, so the last one wins,
    /// and it initialises dynamic (`size`) regions as they are placed, during the early
    /// scan, but static (`reg`) ones afterwards, in `fdt_scan_reserved_mem_reg_nodes`:
    /// the last static pool in tree order wins, else the last dynamic one.
    pub(super) fn choose_default(&mut self, cma_areas: &mut [CmaAreaSpec]) {
        let regions = &self.regions;
        let from_cmdline = cma_areas
            .iter()
            .position(|a| regions[a.region_index].source == RegionSource::CommandLine);
        let initialised_last = |dynamic: bool| {
            cma_areas
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    let region = &regions[a.region_index];
                    region.linux_cma_default && region.dynamic == dynamic
                })
                .map(|(i, _)| i)
                .next_back()
        };
        let chosen =
            from_cmdline.or_else(|| initialised_last(false).or_else(|| initialised_last(true)));
        let Some(chosen) = chosen else { return };
        cma_areas[chosen].is_default = true;
        let winner = cma_areas[chosen].name.clone();
        for (i, area) in cma_areas.iter().enumerate() {
            if i != chosen && regions[area.region_index].linux_cma_default {
                self.messages.push(format!(
                    "reserved-memory/{}: also marked linux,cma-default; {winner} is the default area (Linux keeps the pool initialised last: static regions after dynamic ones, each in tree order)",
                    area.name
                ));
            }
        }
    }
}
