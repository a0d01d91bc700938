//! What the device-tree fuzz target runs on every input: the one entry point from raw bytes
//! ([`DeviceTree::from_blob`]) and every reader of the tree it returns, as boot and the
//! shell would use them. Host only; shared by `fuzz/` (libFuzzer) and the host tests so
//! both exercise exactly the same paths.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use crate::dt::platform::Platform;
use crate::dt::reserved::plan_reserved_memory;
use crate::dt::tree::DeviceTree;
use crate::shell_service::devtree::DtView;

/// Where boot pretends the blob and the firmware image are (the `virt` layout).
const BLOB_ADDRESS: u64 = 0x4000_0000;
const FIRMWARE: Range<u64> = 0x4000_0000..0x4100_0000;

/// Run `blob` through every reader. Returns how many nodes the tree had (0 if refused),
/// so callers can tell accepted inputs from refused ones. Must never panic.
pub fn exercise(blob: &[u8]) -> usize {
    let Ok(tree) = DeviceTree::from_blob(blob) else {
        return 0;
    };
    let platform = Platform::from_tree(&tree, BLOB_ADDRESS);
    let (ram, bootargs) = match &platform {
        Ok(p) => (p.memory.clone(), p.bootargs.clone()),
        Err(_) => (alloc::vec![0x4000_0000..0x8000_0000], None),
    };
    let mut occupied: Vec<Range<u64>> = alloc::vec![FIRMWARE];
    occupied.extend(tree.mem_reserve().iter().cloned());
    let plan = plan_reserved_memory(&tree, &ram, &occupied, bootargs.as_deref());
    for device in &plan.device_regions {
        let _ = plan.cma_area_for_device(&device.device_path);
    }
    let _ = (plan.kept_from_buddy(), plan.not_mapped());

    let view = DtView::new(&tree);
    let _ = view.device_windows();
    let _ = view.render("/");
    // Every node's listing, and the files of a sample of properties: enough to reach every
    // lookup path without making big trees slow to fuzz.
    for (_, node) in tree.nodes().take(256) {
        let _ = view.list(node.path());
        for property in node.properties().iter().take(2) {
            let path = alloc::format!("{}/{}", node.path(), property.name);
            if let Some(value) = view.property(&path) {
                let _ = crate::shell_service::devtree::property_text(&value);
            }
        }
    }
    tree.len()
}
