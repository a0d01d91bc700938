//! The boot device tree as the shell shows it: `/proc/device-tree` and the `dt` command.
//!
//! # Theory of operation
//!
//! The blob is walked once into an owned tree ([`DeviceTree::parse`]); after that every
//! listing and read is a lookup, and the boot blob is not touched again. The blob was
//! already validated by the platform parser (`dt::platform::fdt_check`) before it got
//! here; this walk still never indexes past a property's bytes.
//!
//! `/proc/device-tree` has a directory per node (named with its unit address, as Linux
//! does) and a file per property, plus the `name` file Linux synthesises for every node
//! but the root. Where this differs from Linux: Linux's files hold the raw property bytes
//! (`cat compatible` prints NUL-separated strings, cells come out as binary). A serial
//! console cannot show those usefully, so [`property_text`] decodes them the way `dtc`
//! does when it decompiles: strings as text (one per line for a string list), anything
//! that is a whole number of cells as `<0x...>` cells, anything else as `[bytes]`.
//!
//! [`DeviceTree::device_windows`] is what Linux's platform-device probing would register
//! in `/proc/iomem`: one resource per `reg` entry of each enabled child of the root (and
//! of identity-mapped `simple-bus` nodes), named after the node (`pl011@9000000`) or its
//! `reg-names` entry. Memory nodes and interrupt controllers are left out: Linux does not
//! request the GIC's registers, and RAM is reported as "System RAM" instead.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::ops::Range;

/// Nesting deeper than this is not walked (a guard for our recursion, far above real trees).
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtNode {
    /// With unit address (`pl011@9000000`); empty for the root.
    pub name: String,
    pub properties: Vec<(String, Vec<u8>)>,
    pub children: Vec<DtNode>,
}

impl DtNode {
    pub fn property(&self, name: &str) -> Option<&[u8]> {
        self.properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_slice())
    }

    fn child(&self, name: &str) -> Option<&DtNode> {
        self.children.iter().find(|child| child.name == name)
    }

    fn u32_property(&self, name: &str) -> Option<u32> {
        let value = self.property(name)?;
        let bytes: [u8; 4] = value.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    fn enabled(&self) -> bool {
        match self.property("status") {
            None => true,
            Some(value) => matches!(c_string(value), Some("okay" | "ok")),
        }
    }
}

/// One entry of a `/proc/device-tree` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtEntry {
    Node(String),
    Property(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceTree {
    root: DtNode,
}

impl DeviceTree {
    /// Walks a (validated) blob into an owned tree.
    pub fn parse(blob: &[u8]) -> Result<DeviceTree, String> {
        let fdt = fdt::Fdt::new(blob).map_err(|e| format!("device tree: {:?}", e))?;
        let root = fdt
            .find_node("/")
            .ok_or_else(|| String::from("device tree: no root node"))?;
        Ok(DeviceTree {
            root: copy_node(root, 0),
        })
    }

    pub fn root(&self) -> &DtNode {
        &self.root
    }

    /// The node at `path` (`/`, `/pl011@9000000`, ...; `.`/`..`/repeated slashes allowed).
    pub fn node(&self, path: &str) -> Option<&DtNode> {
        let mut node = &self.root;
        for part in crate::shell::vfs::normalize(path)
            .split('/')
            .filter(|p| !p.is_empty())
        {
            node = node.child(part)?;
        }
        Some(node)
    }

    /// Directory entries of the node at `path`: its properties (and `name`), then its
    /// children. `None` if there is no such node.
    pub fn list(&self, path: &str) -> Option<Vec<DtEntry>> {
        let node = self.node(path)?;
        let mut entries: Vec<DtEntry> = node
            .properties
            .iter()
            .map(|(name, _)| DtEntry::Property(name.clone()))
            .collect();
        if !node.name.is_empty() && node.property("name").is_none() {
            entries.push(DtEntry::Property(String::from("name")));
        }
        entries.extend(node.children.iter().map(|c| DtEntry::Node(c.name.clone())));
        Some(entries)
    }

    /// Raw bytes of the property at `path` (`/node/.../property`), including the
    /// synthesised `name`.
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        let path = crate::shell::vfs::normalize(path);
        let (parent, name) = crate::shell::vfs::split_parent(&path)?;
        let node = self.node(parent)?;
        if let Some(value) = node.property(name) {
            return Some(value.to_vec());
        }
        if name == "name" && !node.name.is_empty() {
            let base = node.name.split('@').next().unwrap_or("");
            let mut value = Vec::from(base.as_bytes());
            value.push(0);
            return Some(value);
        }
        None
    }

    /// `dt [PATH]`: the node (all of it for `/`) in dts syntax.
    pub fn render(&self, path: &str) -> Option<String> {
        let node = self.node(path)?;
        let mut text = String::new();
        let normalized = crate::shell::vfs::normalize(path);
        render_node(node, &normalized, 0, &mut text);
        Some(text)
    }

    /// Register windows Linux would list in `/proc/iomem` for the tree's platform devices.
    pub fn device_windows(&self) -> Vec<(String, Range<u64>)> {
        let mut windows = Vec::new();
        collect_windows(&self.root, 0, &mut windows);
        windows
    }
}

fn copy_node(node: fdt::node::FdtNode<'_, '_>, depth: usize) -> DtNode {
    let name = if depth == 0 {
        String::new()
    } else {
        String::from(node.name)
    };
    let properties = node
        .properties()
        .map(|p| (String::from(p.name), p.value.to_vec()))
        .collect();
    let children = if depth >= MAX_DEPTH {
        Vec::new()
    } else {
        node.children().map(|c| copy_node(c, depth + 1)).collect()
    };
    DtNode {
        name,
        properties,
        children,
    }
}

fn collect_windows(bus: &DtNode, depth: usize, out: &mut Vec<(String, Range<u64>)>) {
    let address_cells = bus.u32_property("#address-cells").unwrap_or(2) as usize;
    let size_cells = bus.u32_property("#size-cells").unwrap_or(1) as usize;
    for child in &bus.children {
        if !child.enabled()
            || child.property("interrupt-controller").is_some()
            || child.name == "memory"
            || child.name.starts_with("memory@")
            || child.name == "reserved-memory"
        {
            continue;
        }
        let is_identity_bus = child
            .property("compatible")
            .is_some_and(|c| string_list(c).is_some_and(|l| l.contains(&"simple-bus")))
            && child.property("ranges").is_some_and(|r| r.is_empty());
        if is_identity_bus && depth < MAX_DEPTH {
            collect_windows(child, depth + 1, out);
        }
        let Some(reg) = child.property("reg") else {
            continue;
        };
        let names = child.property("reg-names").and_then(string_list);
        for (index, (start, size)) in reg_entries(reg, address_cells, size_cells)
            .into_iter()
            .enumerate()
        {
            if size == 0 {
                continue;
            }
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            let name = names
                .as_ref()
                .and_then(|names| names.get(index))
                .map_or_else(|| child.name.clone(), |name| String::from(*name));
            out.push((name, start..end));
        }
    }
}

/// `reg` as (address, size) pairs; cells beyond 64 bits or a ragged tail are skipped.
fn reg_entries(reg: &[u8], address_cells: usize, size_cells: usize) -> Vec<(u64, u64)> {
    let entry_cells = address_cells + size_cells;
    if entry_cells == 0 || address_cells > 2 || size_cells > 2 {
        return Vec::new();
    }
    let cells: Vec<u32> = reg
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let value = |cells: &[u32]| {
        cells
            .iter()
            .fold(0u64, |acc, &c| (acc << 32) | u64::from(c))
    };
    cells
        .chunks_exact(entry_cells)
        .map(|entry| {
            (
                value(&entry[..address_cells]),
                value(&entry[address_cells..]),
            )
        })
        .collect()
}

fn c_string(value: &[u8]) -> Option<&str> {
    let text = value.strip_suffix(&[0])?;
    if text.contains(&0) {
        return None;
    }
    core::str::from_utf8(text).ok()
}

/// The strings of a NUL-terminated string list, if the value is one (every string
/// non-empty and printable), as `dtc` decides.
pub fn string_list(value: &[u8]) -> Option<Vec<&str>> {
    let text = value.strip_suffix(&[0])?;
    if text.is_empty() {
        return None;
    }
    let mut strings = Vec::new();
    for part in text.split(|&b| b == 0) {
        if part.is_empty() || !part.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            return None;
        }
        strings.push(core::str::from_utf8(part).ok()?);
    }
    Some(strings)
}

fn cells_text(value: &[u8]) -> String {
    let mut text = String::from("<");
    for (i, cell) in value.chunks_exact(4).enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let cell = u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]);
        let _ = write!(text, "{:#x}", cell);
    }
    text.push('>');
    text
}

fn bytes_text(value: &[u8]) -> String {
    let mut text = String::from("[");
    for (i, byte) in value.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{:02x}", byte);
    }
    text.push(']');
    text
}

/// A property file's content (see the module doc for how this differs from Linux): an
/// empty (boolean) property is an empty file, strings are text lines, cells `<0x..>`.
pub fn property_text(value: &[u8]) -> String {
    if value.is_empty() {
        return String::new();
    }
    let mut text = match string_list(value) {
        Some(strings) => strings.join("\n"),
        None if value.len().is_multiple_of(4) => cells_text(value),
        None => bytes_text(value),
    };
    text.push('\n');
    text
}

/// One property in dts syntax: `name;`, `name = "a", "b";`, `name = <0x1 0x2>;`.
pub fn property_dts(name: &str, value: &[u8]) -> String {
    if value.is_empty() {
        return format!("{};", name);
    }
    let shown = match string_list(value) {
        Some(strings) => {
            let quoted: Vec<String> = strings.iter().map(|s| format!("\"{}\"", s)).collect();
            quoted.join(", ")
        }
        None if value.len().is_multiple_of(4) => cells_text(value),
        None => bytes_text(value),
    };
    format!("{} = {};", name, shown)
}

fn render_node(node: &DtNode, path: &str, depth: usize, out: &mut String) {
    let indent = depth * 4;
    let title = if depth == 0 { path } else { node.name.as_str() };
    let _ = writeln!(out, "{:indent$}{} {{", "", title, indent = indent);
    for (name, value) in &node.properties {
        let _ = writeln!(
            out,
            "{:indent$}{}",
            "",
            property_dts(name, value),
            indent = indent + 4
        );
    }
    for child in &node.children {
        render_node(child, path, depth + 1, out);
    }
    let _ = writeln!(out, "{:indent$}}};", "", indent = indent);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const QEMU_VIRT: &[u8] = include_bytes!("../dt/testdata/qemu-virt-1g.dtb");

    #[test]
    fn walks_the_qemu_tree() {
        let tree = DeviceTree::parse(QEMU_VIRT).unwrap();
        let root = tree.list("/").unwrap();
        assert!(root.contains(&DtEntry::Property(String::from("compatible"))));
        assert!(root.contains(&DtEntry::Node(String::from("pl011@9000000"))));
        assert!(
            !root.contains(&DtEntry::Property(String::from("name"))),
            "the root has no name"
        );
        let uart = tree.list("/pl011@9000000").unwrap();
        assert!(uart.contains(&DtEntry::Property(String::from("name"))));
        assert!(uart.contains(&DtEntry::Property(String::from("reg"))));
        assert_eq!(tree.list("/nope"), None);
        assert_eq!(
            tree.list("/pl011@9000000/reg"),
            None,
            "a property is not a node"
        );
        assert_eq!(
            tree.property("/pl011@9000000/name").unwrap(),
            b"pl011\0".to_vec()
        );
        assert_eq!(
            property_text(&tree.property("//pl011@9000000/./compatible").unwrap()),
            "arm,pl011\narm,primecell\n"
        );
        assert_eq!(
            property_text(&tree.property("/pl011@9000000/reg").unwrap()),
            "<0x0 0x9000000 0x0 0x1000>\n"
        );
        assert_eq!(tree.property("/pl011@9000000/missing"), None);
    }

    #[test]
    fn device_windows_are_named_like_linux() {
        let tree = DeviceTree::parse(QEMU_VIRT).unwrap();
        let windows = tree.device_windows();
        assert!(windows.contains(&(String::from("pl011@9000000"), 0x900_0000..0x900_1000)));
        assert!(windows
            .iter()
            .any(|(name, range)| name == "virtio_mmio@a000000" && range.start == 0xa00_0000));
        assert!(
            !windows.iter().any(|(name, _)| name.starts_with("memory")),
            "RAM is not a device window"
        );
        assert!(
            !windows.iter().any(|(name, _)| name.starts_with("intc")),
            "Linux does not request the GIC's registers"
        );
    }

    #[test]
    fn render_is_dts_like() {
        let tree = DeviceTree::parse(QEMU_VIRT).unwrap();
        let text = tree.render("/pl011@9000000").unwrap();
        assert!(text.starts_with("/pl011@9000000 {\n"), "{text}");
        assert!(text.contains("    compatible = \"arm,pl011\", \"arm,primecell\";\n"));
        assert!(text.contains("    reg = <0x0 0x9000000 0x0 0x1000>;\n"));
        assert!(text.ends_with("};\n"));
        let all = tree.render("/").unwrap();
        assert!(all.contains("    pl011@9000000 {\n"));
        assert_eq!(tree.render("/missing"), None);
    }

    #[test]
    fn property_formats() {
        assert_eq!(property_text(b""), "");
        assert_eq!(property_text(b"okay\0"), "okay\n");
        assert_eq!(property_text(&[0, 0, 0x80, 0x01]), "<0x8001>\n");
        assert_eq!(property_text(&[1, 2, 3]), "[01 02 03]\n");
        // An empty string inside is not a string list: shown as cells.
        assert_eq!(property_text(b"a\0\0\0"), "<0x61000000>\n");
        assert_eq!(property_dts("dma-coherent", b""), "dma-coherent;");
        assert_eq!(property_dts("x", &[9, 9]), "x = [09 09];");
        assert_eq!(string_list(b"a\0bc\0"), Some(vec!["a", "bc"]));
        assert_eq!(string_list(b"\0"), None);
    }

    #[test]
    fn reg_entries_follow_cell_counts() {
        let reg = [0u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        assert_eq!(reg_entries(&reg, 2, 1), vec![((1 << 32) | 2, 3)]);
        assert_eq!(reg_entries(&reg, 1, 1), vec![(1, 2)], "ragged tail skipped");
        assert_eq!(reg_entries(&reg, 3, 1), vec![]);
    }
}
