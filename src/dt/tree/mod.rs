//! The one validated device tree every reader shares.
//!
//! # Theory of operation
//!
//! [`DeviceTree::from_blob`] is the only entry point from raw bytes: it validates the blob
//! ([`blob`]: header, reservation map, a full token walk) and builds a flat table of nodes
//! in tree (depth-first) order, each with its path, parent, children and properties
//! borrowed from the blob. `FDT_NOP` tokens vanish in the walk and versions 16 and 17 read
//! alike, so every later reader sees one normalised tree and none of them touches the raw
//! blob again: the platform description ([`crate::dt::platform`]), the reserved-memory
//! planner ([`crate::dt::reserved`]) and the shell's `dt` and `/proc/device-tree` views.
//! Property values are decoded through [`crate::dt::cells`] only.
//!
//! Lookups follow the specification's and Linux's rules in the small: paths are matched
//! exactly (`/pl011@9000000`); phandles come from `phandle` or the older `linux,phandle`
//! (0 and `0xffffffff` are not phandles); a node is available when it has no `status` or
//! its status is `okay`/`ok` (`of_device_is_available`); `#address-cells` and
//! `#size-cells` default to 2 and 1 when a parent does not say.
#![forbid(unsafe_code)]

pub mod address;
pub(crate) mod blob;
pub mod format;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::cells;
use super::error::DtError;

pub use format::MAX_DEPTH;

/// Index of a node in [`DeviceTree::nodes`]; the root is 0.
pub type NodeId = usize;

/// One property, borrowed from the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

/// One node: name with unit address (empty for the root), path, family, properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    name: &'a str,
    path: String,
    parent: Option<NodeId>,
    children: Vec<NodeId>,
    depth: usize,
    properties: Vec<Property<'a>>,
}

impl<'a> Node<'a> {
    /// `pl011@9000000`; empty for the root.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The name without its unit address (`pl011`).
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    /// `/`, `/pl011@9000000`, `/reserved-memory/linux,cma@50000000`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn parent(&self) -> Option<NodeId> {
        self.parent
    }

    pub fn children(&self) -> &[NodeId] {
        &self.children
    }

    /// 0 for the root, 1 for its children, ...
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Properties in blob order.
    pub fn properties(&self) -> &[Property<'a>] {
        &self.properties
    }

    /// The value of the first property called `name`.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value)
    }

    pub fn has(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// The first cell of a property (`of_property_read_u32`: at least four bytes).
    pub fn u32(&self, name: &str) -> Option<u32> {
        self.property(name).and_then(|v| cells::be32(v, 0))
    }

    /// A string property (see [`cells::string`]).
    pub fn string(&self, name: &str) -> Option<&'a str> {
        self.property(name).and_then(cells::string)
    }

    /// The `compatible` strings, most specific first.
    pub fn compatible(&self) -> impl Iterator<Item = &'a str> {
        cells::string_list(self.property("compatible").unwrap_or(&[]))
    }

    pub fn is_compatible(&self, with: &[&str]) -> bool {
        self.compatible().any(|c| with.contains(&c))
    }

    /// `of_device_is_available`: no `status`, or `okay`/`ok`.
    pub fn is_available(&self) -> bool {
        match self.property("status") {
            None => true,
            Some(value) => matches!(cells::first_string(value), Some("okay" | "ok")),
        }
    }

    /// `phandle` (or `linux,phandle`), if it is a usable one.
    pub fn phandle(&self) -> Option<u32> {
        self.u32("phandle")
            .or_else(|| self.u32("linux,phandle"))
            .filter(|p| *p != 0 && *p != u32::MAX)
    }

    /// `#address-cells` / `#size-cells` this node gives its children, with the
    /// specification's defaults (2, 1).
    pub fn child_cells(&self) -> (u32, u32) {
        (
            self.u32("#address-cells").unwrap_or(2),
            self.u32("#size-cells").unwrap_or(1),
        )
    }

    /// `device_type = "memory"`, or named `memory` at the top level.
    pub fn is_memory(&self) -> bool {
        self.string("device_type") == Some("memory")
            || (self.depth == 1 && self.base_name() == "memory")
    }
}

/// A validated tree. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTree<'a> {
    nodes: Vec<Node<'a>>,
    /// `(phandle, node)` sorted by phandle, first node of a duplicated phandle first: a
    /// hostile tree with many `memory-region` or `interrupt-parent` references must not
    /// cost a scan of every node per reference.
    phandles: Vec<(u32, NodeId)>,
    mem_reserve: Vec<Range<u64>>,
    totalsize: u32,
    version: u32,
    boot_cpuid_phys: u32,
}

/// Builds the node table as the walk reports nodes.
struct Builder<'a> {
    nodes: Vec<Node<'a>>,
    open: Vec<NodeId>,
}

impl<'a> blob::Visitor<'a> for Builder<'a> {
    fn begin_node(&mut self, name: &'a str, depth: usize) {
        let id = self.nodes.len();
        let parent = self.open.last().copied();
        let path = match parent {
            None => String::from("/"),
            Some(p) => {
                let parent_path = &self.nodes[p].path;
                let mut path = String::with_capacity(parent_path.len() + 1 + name.len());
                if parent_path != "/" {
                    path.push_str(parent_path);
                }
                path.push('/');
                path.push_str(name);
                path
            }
        };
        if let Some(p) = parent {
            self.nodes[p].children.push(id);
        }
        self.nodes.push(Node {
            name,
            path,
            parent,
            children: Vec::new(),
            depth,
            properties: Vec::new(),
        });
        self.open.push(id);
    }

    fn property(&mut self, name: &'a str, value: &'a [u8]) {
        if let Some(&id) = self.open.last() {
            self.nodes[id].properties.push(Property { name, value });
        }
    }

    fn end_node(&mut self) {
        self.open.pop();
    }
}

impl<'a> DeviceTree<'a> {
    /// Validate `blob` (which may be longer than the tree: only `totalsize` bytes are
    /// read) and build the tree. Never panics: any defect is a [`DtError`].
    pub fn from_blob(blob: &'a [u8]) -> Result<DeviceTree<'a>, DtError> {
        let header = blob::check_header(blob)?;
        let blob = &blob[..header.totalsize as usize];
        let mem_reserve = blob::reservations(blob, &header)?;
        let mut builder = Builder {
            nodes: Vec::new(),
            open: Vec::new(),
        };
        blob::walk(blob, &header, &mut builder)?;
        let mut phandles: Vec<(u32, NodeId)> = builder
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, n)| Some((n.phandle()?, id)))
            .collect();
        phandles.sort_unstable();
        Ok(DeviceTree {
            nodes: builder.nodes,
            phandles,
            mem_reserve,
            totalsize: header.totalsize,
            version: header.version,
            boot_cpuid_phys: header.boot_cpuid_phys,
        })
    }

    /// The root node (a validated tree always has one).
    pub fn root(&self) -> &Node<'a> {
        &self.nodes[0]
    }

    pub fn node(&self, id: NodeId) -> &Node<'a> {
        &self.nodes[id]
    }

    /// Every node in depth-first tree order, with its id.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node<'a>)> {
        self.nodes.iter().enumerate()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node at exactly `path` (`/` for the root).
    pub fn find(&self, path: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.path == path)
    }

    /// The child of `parent` called exactly `name` (with unit address).
    pub fn child(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        self.nodes[parent]
            .children
            .iter()
            .copied()
            .find(|&c| self.nodes[c].name == name)
    }

    /// The node whose `phandle` (or `linux,phandle`) is `phandle`.
    pub fn by_phandle(&self, phandle: u32) -> Option<NodeId> {
        let first = self.phandles.partition_point(|&(p, _)| p < phandle);
        self.phandles
            .get(first)
            .filter(|&&(p, _)| p == phandle)
            .map(|&(_, id)| id)
    }

    /// The cells `node`'s own `reg` is written in: its parent's child cells.
    pub fn reg_cells(&self, node: NodeId) -> (u32, u32) {
        self.nodes[node]
            .parent
            .map_or((2, 1), |p| self.nodes[p].child_cells())
    }

    /// `/memreserve/` entries of the header, in blob order.
    pub fn mem_reserve(&self) -> &[Range<u64>] {
        &self.mem_reserve
    }

    /// Bytes of the blob the tree came from (its header's `totalsize`).
    pub fn totalsize(&self) -> u32 {
        self.totalsize
    }

    /// The blob's format version (16 or 17).
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn boot_cpuid_phys(&self) -> u32 {
        self.boot_cpuid_phys
    }
}

#[cfg(test)]
mod tests;
