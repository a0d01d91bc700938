//! The board the controller models: its DRAM geometry, read from the same device tree the
//! firmware boots with (the `monolith,pasr-dram` binding, `monolith::pasr::geometry`), so
//! the device and the firmware cannot disagree about which bytes a bank holds.
#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use monolith::dt::DeviceTree;
use monolith::pasr::geometry::{Geometry, COMPATIBLE};

/// The firmware buddy allocator's largest block (4 KiB pages << `MAX_ORDER`): spans must be
/// whole numbers of it, as the firmware checks.
pub const MAX_BLOCK_BYTES: u64 = (monolith::mm::PAGE_SIZE as u64) << monolith::mm::MAX_ORDER;

/// Die temperatures the command line accepts, degrees C (LPDDR's widest, automotive, range
/// and some margin; the power model clamps to its datasheet's 45..85 C anyway).
pub const TEMPERATURE_RANGE_C: std::ops::RangeInclusive<i32> = -40..=125;

/// The geometry a DTB blob describes, or why there is none to model.
pub fn geometry_from_blob(blob: &[u8]) -> Result<Geometry> {
    let tree = DeviceTree::from_blob(blob).map_err(|e| anyhow!("not a usable device tree: {e}"))?;
    match Geometry::from_tree(&tree, MAX_BLOCK_BYTES) {
        Ok(Some(geometry)) => Ok(geometry),
        Ok(None) => {
            bail!("no (enabled) {COMPATIBLE} node: this board has no DRAM geometry to model")
        }
        Err(e) => bail!("the {COMPATIBLE} node is not usable: {e}"),
    }
}

/// [`geometry_from_blob`] of a file.
pub fn geometry_from_file(path: &Path) -> Result<Geometry> {
    let blob = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    geometry_from_blob(&blob).with_context(|| path.display().to_string())
}
