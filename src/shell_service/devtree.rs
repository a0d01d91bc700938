//! The boot device tree as the shell shows it: `/proc/device-tree` and the `dt` command.
//!
//! # Theory of operation
//!
//! [`DtView`] reads the one validated boot tree ([`crate::dt::tree::DeviceTree`], the
//! same tree the platform and reserved-memory readers use); every listing and read is a
//! lookup in it, and the raw blob is never touched here.
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

use crate::dt::cells::{self, printable_string_list as string_list};
use crate::dt::tree::{DeviceTree, Node, NodeId, MAX_DEPTH};

/// One entry of a `/proc/device-tree` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtEntry {
    Node(String),
    Property(String),
}

/// The shell's view of the boot tree: paths as the shell writes them, Linux's synthesised
/// `name` files, dts rendering.
#[derive(Clone, Copy, Debug)]
pub struct DtView<'t, 'a> {
    tree: &'t DeviceTree<'a>,
}

impl<'t, 'a> DtView<'t, 'a> {
    pub fn new(tree: &'t DeviceTree<'a>) -> Self {
        DtView { tree }
    }

    /// The node at `path` (`/`, `/pl011@9000000`, ...; `.`/`..`/repeated slashes allowed).
    pub fn node(&self, path: &str) -> Option<&'t Node<'a>> {
        self.node_id(path).map(|id| self.tree.node(id))
    }

    fn node_id(&self, path: &str) -> Option<NodeId> {
        let mut id = 0;
        for part in crate::shell::vfs::normalize(path)
            .split('/')
            .filter(|p| !p.is_empty())
        {
            id = self.tree.child(id, part)?;
        }
        Some(id)
    }

    /// Directory entries of the node at `path`: its properties (and `name`), then its
    /// children. `None` if there is no such node.
    pub fn list(&self, path: &str) -> Option<Vec<DtEntry>> {
        let node = self.node(path)?;
        let mut entries: Vec<DtEntry> = node
            .properties()
            .iter()
            .map(|p| DtEntry::Property(String::from(p.name)))
            .collect();
        if !node.name().is_empty() && !node.has("name") {
            entries.push(DtEntry::Property(String::from("name")));
        }
        entries.extend(
            node.children()
                .iter()
                .map(|&c| DtEntry::Node(String::from(self.tree.node(c).name()))),
        );
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
        if name == "name" && !node.name().is_empty() {
            let mut value = Vec::from(node.base_name().as_bytes());
            value.push(0);
            return Some(value);
        }
        None
    }

    /// `dt [PATH]`: the node (all of it for `/`) in dts syntax.
    pub fn render(&self, path: &str) -> Option<String> {
        let id = self.node_id(path)?;
        let mut text = String::new();
        let normalized = crate::shell::vfs::normalize(path);
        self.render_node(id, &normalized, 0, &mut text);
        Some(text)
    }

    /// Register windows Linux would list in `/proc/iomem` for the tree's platform devices.
    pub fn device_windows(&self) -> Vec<(String, Range<u64>)> {
        let mut windows = Vec::new();
        collect_windows(self.tree, 0, &mut windows);
        windows
    }

    fn render_node(&self, id: NodeId, path: &str, depth: usize, out: &mut String) {
        let node = self.tree.node(id);
        let indent = depth * 4;
        let title = if depth == 0 { path } else { node.name() };
        let _ = writeln!(out, "{:indent$}{} {{", "", title, indent = indent);
        for p in node.properties() {
            let _ = writeln!(
                out,
                "{:indent$}{}",
                "",
                property_dts(p.name, p.value),
                indent = indent + 4
            );
        }
        for &child in node.children() {
            self.render_node(child, path, depth + 1, out);
        }
        let _ = writeln!(out, "{:indent$}}};", "", indent = indent);
    }
}

fn collect_windows(tree: &DeviceTree<'_>, bus: NodeId, out: &mut Vec<(String, Range<u64>)>) {
    let bus_node = tree.node(bus);
    let (address_cells, size_cells) = bus_node.child_cells();
    for &id in bus_node.children() {
        let child = tree.node(id);
        if !child.is_available()
            || child.has("interrupt-controller")
            || child.base_name() == "memory"
            || child.name() == "reserved-memory"
        {
            continue;
        }
        let is_identity_bus = child.is_compatible(&["simple-bus"])
            && child.property("ranges").is_some_and(|r| r.is_empty());
        if is_identity_bus && child.depth() < MAX_DEPTH {
            collect_windows(tree, id, out);
        }
        let Some(reg) = child.property("reg") else {
            continue;
        };
        let Ok(entries) = cells::pairs(reg, address_cells, size_cells) else {
            continue;
        };
        let names = child.property("reg-names").and_then(string_list);
        for (index, (start, size)) in entries.into_iter().enumerate() {
            if size == 0 {
                continue;
            }
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            let name = names
                .as_ref()
                .and_then(|names| names.get(index))
                .map_or_else(|| String::from(child.name()), |name| String::from(*name));
            out.push((name, start..end));
        }
    }
}

fn cells_text(value: &[u8]) -> String {
    let mut text = String::from("<");
    for (i, cell) in cells::cell_list(value).enumerate() {
        if i > 0 {
            text.push(' ');
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const QEMU_VIRT: &[u8] = include_bytes!("../dt/testdata/qemu-virt-1g.dtb");

    #[test]
    fn walks_the_qemu_tree() {
        let parsed = DeviceTree::from_blob(QEMU_VIRT).unwrap();
        let tree = DtView::new(&parsed);
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
        let parsed = DeviceTree::from_blob(QEMU_VIRT).unwrap();
        let tree = DtView::new(&parsed);
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
        let parsed = DeviceTree::from_blob(QEMU_VIRT).unwrap();
        let tree = DtView::new(&parsed);
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
}
