//! Host tests of the one tree: NOP-carrying and version-16 blobs read exactly as the clean
//! version-17 blob does, lookups, and the walk's refusals.

use super::*;

static QEMU_VIRT: &[u8] = include_bytes!("../testdata/qemu-virt-1g.dtb");
static BOARD_VIRT: &[u8] = include_bytes!("../testdata/reserved/static-cma.virt.dtb");

fn be32_at(blob: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(blob[at..at + 4].try_into().unwrap())
}

/// libfdt's `fdt_nop_property`: overwrite the first property called `name` (of any node)
/// with `FDT_NOP` words, header and value alike.
pub(crate) fn nop_property(blob: &[u8], name: &str) -> Vec<u8> {
    let mut out = blob.to_vec();
    let off_struct = be32_at(blob, 8) as usize;
    let off_strings = be32_at(blob, 12) as usize;
    let mut pos = off_struct;
    loop {
        match be32_at(blob, pos) {
            1 => {
                let name_len = blob[pos + 4..].iter().position(|&b| b == 0).unwrap();
                pos += (4 + name_len + 1 + 3) & !3;
            }
            3 => {
                let len = be32_at(blob, pos + 4) as usize;
                let name_at = off_strings + be32_at(blob, pos + 8) as usize;
                let end = (pos + 12 + len + 3) & !3;
                if blob[name_at..].starts_with(name.as_bytes()) && blob[name_at + name.len()] == 0 {
                    for word in (pos..end).step_by(4) {
                        out[word..word + 4].copy_from_slice(&4u32.to_be_bytes());
                    }
                    return out;
                }
                pos = end;
            }
            9 => panic!("no property {name}"),
            _ => pos += 4,
        }
    }
}

/// The same tree as a version-16 blob: header version 16, `size_dt_struct` cleared (a
/// v16 reader must not rely on it).
pub(crate) fn as_version_16(blob: &[u8]) -> Vec<u8> {
    let mut out = blob.to_vec();
    out[20..24].copy_from_slice(&16u32.to_be_bytes());
    out[36..40].copy_from_slice(&0u32.to_be_bytes());
    out
}

fn same_tree(a: &DeviceTree<'_>, b: &DeviceTree<'_>) {
    assert_eq!(a.len(), b.len());
    for ((_, x), (_, y)) in a.nodes().zip(b.nodes()) {
        assert_eq!(x, y, "node {} differs", x.path());
    }
    assert_eq!(a.mem_reserve(), b.mem_reserve());
}

#[test]
fn qemu_tree_paths_family_and_lookups() {
    let tree = DeviceTree::from_blob(QEMU_VIRT).unwrap();
    assert_eq!(tree.root().path(), "/");
    assert_eq!(tree.root().name(), "");
    let uart = tree.find("/pl011@9000000").expect("uart");
    let node = tree.node(uart);
    assert_eq!(node.base_name(), "pl011");
    assert_eq!(node.depth(), 1);
    assert_eq!(node.parent(), Some(0));
    assert!(node.is_compatible(&["arm,pl011"]));
    assert!(node.is_available());
    assert_eq!(tree.child(0, "pl011@9000000"), Some(uart));
    let clock = node.u32("clocks").and_then(|p| tree.by_phandle(p)).unwrap();
    assert_eq!(tree.node(clock).u32("clock-frequency"), Some(24_000_000));
    assert_eq!(tree.root().child_cells(), (2, 2));
    assert_eq!(tree.reg_cells(uart), (2, 2));
    assert_eq!(tree.version(), 17);
    assert_eq!(tree.totalsize() as usize, QEMU_VIRT.len());
    // Paths are unique and every child points back at its parent.
    for (id, n) in tree.nodes() {
        for &c in n.children() {
            assert_eq!(tree.node(c).parent(), Some(id));
            assert_eq!(tree.node(c).depth(), n.depth() + 1);
        }
        assert_eq!(tree.find(n.path()), Some(id));
    }
}

#[test]
fn a_nop_property_is_gone_and_the_rest_reads_the_same() {
    let clean = DeviceTree::from_blob(BOARD_VIRT).unwrap();
    let blob = nop_property(BOARD_VIRT, "reusable");
    let nopped = DeviceTree::from_blob(&blob).expect("NOPs are legal");
    assert_eq!(clean.len(), nopped.len());
    let cma = clean
        .nodes()
        .find(|(_, n)| n.has("reusable"))
        .map(|(id, _)| id)
        .unwrap();
    assert!(!nopped.node(cma).has("reusable"));
    assert_eq!(
        nopped.node(cma).properties().len() + 1,
        clean.node(cma).properties().len()
    );
    for ((id, a), (_, b)) in clean.nodes().zip(nopped.nodes()) {
        if id != cma {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn version_16_reads_like_version_17() {
    for blob in [QEMU_VIRT, BOARD_VIRT] {
        let v17 = DeviceTree::from_blob(blob).unwrap();
        let v16_blob = as_version_16(blob);
        let v16 = DeviceTree::from_blob(&v16_blob).expect("v16 is supported");
        assert_eq!(v16.version(), 16);
        same_tree(&v17, &v16);
    }
}

#[test]
fn a_window_longer_than_the_tree_reads_only_totalsize() {
    let mut window = QEMU_VIRT.to_vec();
    window.extend_from_slice(&[0xff; 4096]);
    let tree = DeviceTree::from_blob(&window).unwrap();
    same_tree(&tree, &DeviceTree::from_blob(QEMU_VIRT).unwrap());
}

#[test]
fn every_prefix_and_every_single_word_edit_is_an_error_or_a_tree() {
    // Exhaustive over the structure block's first words: each must parse or be refused,
    // never panic, and a refusal must say where.
    let off_struct = be32_at(QEMU_VIRT, 8) as usize;
    for word in 0..256 {
        for value in [0u32, 1, 2, 3, 4, 9, 0xffff_ffff, 0x8000_0000] {
            let mut blob = QEMU_VIRT.to_vec();
            let at = off_struct + 4 * word;
            blob[at..at + 4].copy_from_slice(&value.to_be_bytes());
            if let Err(err) = DeviceTree::from_blob(&blob) {
                assert!(!alloc::format!("{err}").is_empty());
            }
        }
    }
    for cut in (0..QEMU_VIRT.len()).step_by(97) {
        assert!(DeviceTree::from_blob(&QEMU_VIRT[..cut]).is_err());
    }
}

#[test]
fn phandle_zero_and_all_ones_are_not_phandles() {
    let tree = DeviceTree::from_blob(QEMU_VIRT).unwrap();
    assert_eq!(tree.by_phandle(0), None);
    assert_eq!(tree.by_phandle(u32::MAX), None);
    let gic = tree.root().u32("interrupt-parent").unwrap();
    assert!(tree.by_phandle(gic).is_some());
}

// ---- the default board's tree and its legal variants (testdata/variants/regenerate.sh) ----

static BOARD: &[u8] = include_bytes!("../testdata/variants/virt-board.dtb");
static BOARD_NOP: &[u8] = include_bytes!("../testdata/variants/virt-board.nop.dtb");
static BOARD_V16: &[u8] = include_bytes!("../testdata/variants/virt-board.v16.dtb");

#[test]
fn dtc_version_16_blob_reads_like_the_clean_tree() {
    let clean = DeviceTree::from_blob(BOARD).unwrap();
    let v16 = DeviceTree::from_blob(BOARD_V16).expect("dtc -V 16 output is accepted");
    assert_eq!(v16.version(), 16);
    same_tree(&clean, &v16);
}

#[test]
fn fdt_nop_property_blob_reads_like_the_clean_tree_minus_that_property() {
    let clean = DeviceTree::from_blob(BOARD).unwrap();
    let nopped = DeviceTree::from_blob(BOARD_NOP).expect("NOPs are legal");
    assert_eq!(clean.len(), nopped.len());
    let mut differing = 0;
    for ((_, a), (_, b)) in clean.nodes().zip(nopped.nodes()) {
        assert_eq!((a.path(), a.children()), (b.path(), b.children()));
        if a != b {
            differing += 1;
            assert!(
                a.has("clock-names") && !b.has("clock-names"),
                "{}",
                a.path()
            );
            let kept: alloc::vec::Vec<_> = a
                .properties()
                .iter()
                .filter(|p| p.name != "clock-names")
                .collect();
            assert_eq!(kept, b.properties().iter().collect::<alloc::vec::Vec<_>>());
        }
    }
    assert_eq!(differing, 1, "exactly the one NOPed property is gone");
}
