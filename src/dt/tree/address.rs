//! `reg` decoding and bus address translation (devicetree specification 2.3.6 and 2.3.8;
//! Linux's `of_address.c` in the small).
//!
//! A node's `reg` is written in its parent's `#address-cells`/`#size-cells` and translated
//! up through every ancestor bus's `ranges`: no `ranges` means the bus is not
//! CPU-addressable, an empty one is the identity. Cell counts above two are refused (the
//! numbers would not fit in 64 bits), and no arithmetic wraps.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use super::{DeviceTree, NodeId};
use crate::dt::cells::{self, read_cells};

/// Why a `reg` could not become CPU physical ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegError {
    Shape(cells::PairsError),
    /// A parent bus has no `ranges`, or no entry of it covers the address.
    Unreachable,
    /// `address + size` passes the end of the address space.
    Wraps,
}

impl RegError {
    pub fn reason(self) -> &'static str {
        match self {
            RegError::Shape(shape) => shape.reason(),
            RegError::Unreachable => "address not reachable through the parents' ranges",
            RegError::Wraps => "window wraps around",
        }
    }
}

impl core::fmt::Display for RegError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

impl core::error::Error for RegError {}

impl DeviceTree<'_> {
    /// Translate a bus address of `node` (as written in its `reg`) to a CPU physical
    /// address; `None` when some ancestor bus does not map it.
    pub fn translate(&self, node: NodeId, mut address: u64) -> Option<u64> {
        let mut bus = self.node(node).parent()?;
        while let Some(grandparent) = self.node(bus).parent() {
            let bus_node = self.node(bus);
            let ranges = bus_node.property("ranges")?;
            if !ranges.is_empty() {
                let (child_ac, size_cells) = bus_node.child_cells();
                let (parent_ac, _) = self.node(grandparent).child_cells();
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

    /// `node`'s `reg` windows as CPU physical ranges, in `reg` order; empty when it has no
    /// `reg`.
    pub fn reg(&self, node: NodeId) -> Result<Vec<Range<u64>>, RegError> {
        let Some(value) = self.node(node).property("reg") else {
            return Ok(Vec::new());
        };
        let (ac, sc) = self.reg_cells(node);
        cells::pairs(value, ac, sc)
            .map_err(RegError::Shape)?
            .into_iter()
            .map(|(address, size)| {
                let base = self.translate(node, address).ok_or(RegError::Unreachable)?;
                let end = base.checked_add(size).ok_or(RegError::Wraps)?;
                Ok(base..end)
            })
            .collect()
    }
}
