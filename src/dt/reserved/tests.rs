//! Host tests of the planner. Each test builds a QEMU-virt-shaped tree in memory with `vm-fdt` (1 GiB of RAM at
//! 0x4000_0000, root #address-cells = #size-cells = 2, firmware and DTB occupying the
//! first 16 MiB) and checks the plan.
use super::*;
use crate::dt::tree::DeviceTree;
use crate::util::ranges::{is_aligned, overlaps};
use crate::util::PAGE_SIZE;
use alloc::string::ToString;
use alloc::vec;
use vm_fdt::FdtWriter;

const MIB: u64 = 1 << 20;
const RAM: Range<u64> = 0x4000_0000..0x8000_0000;
const FIRMWARE: Range<u64> = 0x4000_0000..0x4100_0000;

#[derive(Debug)]
enum Prop {
    Cells(Vec<u32>),
    Empty,
    Strings(Vec<&'static str>),
    Bytes(Vec<u8>),
}

struct Node {
    name: String,
    props: Vec<(&'static str, Prop)>,
    children: Vec<Node>,
}

fn node(name: &str, props: Vec<(&'static str, Prop)>) -> Node {
    Node {
        name: name.to_string(),
        props,
        children: Vec::new(),
    }
}

fn cells64(values: &[u64]) -> Prop {
    Prop::Cells(
        values
            .iter()
            .flat_map(|v| [(v >> 32) as u32, *v as u32])
            .collect(),
    )
}

fn reg(base: u64, size: u64) -> (&'static str, Prop) {
    ("reg", cells64(&[base, size]))
}

fn flag(name: &'static str) -> (&'static str, Prop) {
    (name, Prop::Empty)
}

fn phandle(value: u32) -> (&'static str, Prop) {
    ("phandle", Prop::Cells(vec![value]))
}

fn compatible(value: &'static str) -> (&'static str, Prop) {
    ("compatible", Prop::Strings(vec![value]))
}

fn cma_pool() -> Vec<(&'static str, Prop)> {
    vec![compatible("shared-dma-pool"), flag("reusable")]
}

fn with(
    mut base: Vec<(&'static str, Prop)>,
    more: Vec<(&'static str, Prop)>,
) -> Vec<(&'static str, Prop)> {
    base.extend(more);
    base
}

fn write(fdt: &mut FdtWriter, n: &Node) {
    let handle = fdt.begin_node(&n.name).unwrap();
    for (name, value) in &n.props {
        match value {
            Prop::Cells(cells) => fdt.property_array_u32(name, cells).unwrap(),
            Prop::Empty => fdt.property_null(name).unwrap(),
            Prop::Strings(list) => fdt
                .property_string_list(name, list.iter().map(|s| s.to_string()).collect())
                .unwrap(),
            Prop::Bytes(bytes) => fdt.property(name, bytes).unwrap(),
        }
    }
    for child in &n.children {
        write(fdt, child);
    }
    fdt.end_node(handle).unwrap();
}

/// A virt-like tree; `rmem_props` replaces the usual /reserved-memory properties.
fn tree_with(
    rmem_props: Vec<(&'static str, Prop)>,
    regions: Vec<Node>,
    devices: Vec<Node>,
) -> Vec<u8> {
    let mut reserved = node("reserved-memory", rmem_props);
    reserved.children = regions;
    let mut root = node(
        "",
        vec![
            ("#address-cells", Prop::Cells(vec![2])),
            ("#size-cells", Prop::Cells(vec![2])),
            compatible("linux,dummy-virt"),
        ],
    );
    root.children.push(node(
        "memory@40000000",
        vec![
            ("device_type", Prop::Strings(vec!["memory"])),
            reg(RAM.start, RAM.end - RAM.start),
        ],
    ));
    root.children.push(node("chosen", vec![]));
    root.children.push(reserved);
    root.children.extend(devices);
    let mut fdt = FdtWriter::new().unwrap();
    write(&mut fdt, &root);
    fdt.finish().unwrap()
}

fn standard_rmem_props() -> Vec<(&'static str, Prop)> {
    vec![
        ("#address-cells", Prop::Cells(vec![2])),
        ("#size-cells", Prop::Cells(vec![2])),
        flag("ranges"),
    ]
}

fn tree(regions: Vec<Node>, devices: Vec<Node>) -> Vec<u8> {
    tree_with(standard_rmem_props(), regions, devices)
}

fn plan_on(blob: &[u8], ram: &[Range<u64>], bootargs: Option<&str>) -> ReservedMemoryPlan {
    let tree = DeviceTree::from_blob(blob).expect("test blob parses");
    plan_reserved_memory(&tree, ram, &[FIRMWARE], bootargs)
}

fn plan_for(blob: &[u8], bootargs: Option<&str>) -> ReservedMemoryPlan {
    plan_on(blob, &[RAM], bootargs)
}

fn names(plan: &ReservedMemoryPlan) -> Vec<&str> {
    plan.regions.iter().map(|r| r.name.as_str()).collect()
}

/// The plan never breaks its own promises, whatever the input.
fn assert_consistent(plan: &ReservedMemoryPlan, ram: &[Range<u64>], occupied: &[Range<u64>]) {
    let all: Vec<(&str, Range<u64>)> = plan
        .regions
        .iter()
        .flat_map(|r| {
            r.ranges
                .iter()
                .map(move |range| (r.name.as_str(), range.clone()))
        })
        .collect();
    for (i, (name, range)) in all.iter().enumerate() {
        assert!(range.start < range.end, "{name} empty");
        assert!(
            is_aligned(range.start | range.end, PAGE_SIZE),
            "{name} {range:x?} unaligned"
        );
        assert!(
            ram.iter()
                .any(|r| r.start <= range.start && range.end <= r.end),
            "{name} {range:x?} outside RAM"
        );
        assert!(
            !occupied.iter().any(|o| overlaps(o, range)),
            "{name} {range:x?} on occupied memory"
        );
        for (other, other_range) in &all[i + 1..] {
            assert!(
                !overlaps(range, other_range),
                "{name} {range:x?} overlaps {other} {other_range:x?}"
            );
        }
    }
    for area in &plan.cma_areas {
        assert!(
            is_aligned(area.base | area.size, PAGEBLOCK_SIZE),
            "{} unaligned",
            area.name
        );
        assert!(area.size > 0);
    }
    assert!(plan.cma_areas.iter().filter(|a| a.is_default).count() <= 1);
}

// ---- the forms that must work ------------------------------------------------------

#[test]
fn static_cma_area() {
    let blob = tree(
        vec![node(
            "video@50000000",
            with(cma_pool(), vec![reg(0x5000_0000, 64 * MIB), phandle(1)]),
        )],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(names(&plan), ["video@50000000"]);
    let region = &plan.regions[0];
    assert_eq!(region.kind, RegionKind::Cma);
    assert!(!region.dynamic);
    assert_eq!(
        region.source,
        RegionSource::DeviceTree {
            path: "/reserved-memory/video@50000000".to_string()
        }
    );
    assert_eq!(
        plan.cma_areas,
        [CmaAreaSpec {
            name: "video@50000000".to_string(),
            base: 0x5000_0000,
            size: 64 * MIB,
            is_default: false,
            fit: CmaFit::FirstFit,
            phandle: Some(1),
            owners: vec![],
            region_index: 0,
        }]
    );
    assert!(
        plan.kept_from_buddy().is_empty(),
        "the CMA area itself goes to the buddy as CMA"
    );
    assert!(plan.default_cma_area().is_none());
}

#[test]
fn cma_fit_property_chooses_the_policy_and_bad_values_keep_the_default() {
    let fit = |value: Prop| ("monolith,cma-fit", value);
    let blob = tree(
        vec![
            node(
                "best@50000000",
                with(
                    cma_pool(),
                    vec![
                        reg(0x5000_0000, 32 * MIB),
                        fit(Prop::Strings(vec!["best-fit"])),
                    ],
                ),
            ),
            node(
                "first@52000000",
                with(
                    cma_pool(),
                    vec![
                        reg(0x5200_0000, 32 * MIB),
                        fit(Prop::Strings(vec!["first-fit"])),
                    ],
                ),
            ),
            node(
                "plain@54000000",
                with(cma_pool(), vec![reg(0x5400_0000, 32 * MIB)]),
            ),
            node(
                "typo@56000000",
                with(
                    cma_pool(),
                    vec![reg(0x5600_0000, 32 * MIB), fit(Prop::Strings(vec!["best"]))],
                ),
            ),
            node(
                "two@58000000",
                with(
                    cma_pool(),
                    vec![
                        reg(0x5800_0000, 32 * MIB),
                        fit(Prop::Strings(vec!["best-fit", "first-fit"])),
                    ],
                ),
            ),
            node(
                "cells@5a000000",
                with(
                    cma_pool(),
                    vec![reg(0x5a00_0000, 32 * MIB), fit(Prop::Cells(vec![1]))],
                ),
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    let fits: Vec<(&str, CmaFit)> = plan
        .cma_areas
        .iter()
        .map(|a| (a.name.as_str(), a.fit))
        .collect();
    assert_eq!(
        fits,
        [
            ("best@50000000", CmaFit::BestFit),
            ("first@52000000", CmaFit::FirstFit),
            ("plain@54000000", CmaFit::FirstFit),
            ("typo@56000000", CmaFit::FirstFit),
            ("two@58000000", CmaFit::FirstFit),
            ("cells@5a000000", CmaFit::FirstFit),
        ]
    );
    // Each bad value is named, once; the good and absent ones say nothing.
    assert_eq!(plan.messages.len(), 3, "{:?}", plan.messages);
    for name in ["typo@56000000", "two@58000000", "cells@5a000000"] {
        assert!(
            plan.messages.iter().any(|m| m.contains(name)
                && m.contains("monolith,cma-fit")
                && m.contains("using first-fit")),
            "{name}: {:?}",
            plan.messages
        );
    }
}

#[test]
fn cma_fit_boot_argument_overrides_every_area() {
    let blob = tree(
        vec![
            node(
                "a@50000000",
                with(
                    cma_pool(),
                    vec![
                        reg(0x5000_0000, 32 * MIB),
                        ("monolith,cma-fit", Prop::Strings(vec!["first-fit"])),
                    ],
                ),
            ),
            node(
                "b@52000000",
                with(cma_pool(), vec![reg(0x5200_0000, 32 * MIB)]),
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, Some("monolith.cma_fit=best-fit"));
    assert!(
        plan.cma_areas.iter().all(|a| a.fit == CmaFit::BestFit),
        "{:?}",
        plan.cma_areas
    );
    assert_eq!(plan.cma_areas.len(), 2);
    let plan = plan_for(&blob, Some("monolith.cma_fit=random"));
    assert!(plan.cma_areas.iter().all(|a| a.fit == CmaFit::FirstFit));
    assert!(
        plan.messages
            .iter()
            .any(|m| m.contains("monolith.cma_fit=random")),
        "{:?}",
        plan.messages
    );
}

#[test]
fn dynamic_cma_with_alignment_and_alloc_ranges() {
    let blob = tree(
        vec![node(
            "linux,cma",
            with(
                cma_pool(),
                vec![
                    ("size", cells64(&[64 * MIB])),
                    ("alignment", cells64(&[16 * MIB])),
                    ("alloc-ranges", cells64(&[0x4000_0000, 0x2180_0000])),
                    flag("linux,cma-default"),
                ],
            ),
        )],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    // Top-down in [0x40000000, 0x61800000): 0x5D800000 would fit, but the highest
    // 16 MiB-aligned base is 0x5D000000.
    let area = plan.default_cma_area().expect("default area");
    assert_eq!(
        (area.name.as_str(), area.base, area.size),
        ("linux,cma", 0x5D00_0000, 64 * MIB)
    );
    assert!(plan.regions[0].dynamic);
}

#[test]
fn dynamic_cma_alignment_is_raised_to_a_pageblock() {
    // Window [0x50000000, 0x50700000): with 1 MiB alignment the top-down fit would start
    // at 0x50100000; CMA needs 2 MiB, which leaves only 0x50000000.
    let blob = tree(
        vec![node(
            "pool",
            with(
                cma_pool(),
                vec![
                    ("size", cells64(&[6 * MIB])),
                    ("alignment", cells64(&[MIB])),
                    ("alloc-ranges", cells64(&[0x5000_0000, 7 * MIB])),
                ],
            ),
        )],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(plan.cma_areas[0].base, 0x5000_0000);

    // The same request without reusable keeps the 1 MiB alignment.
    let blob = tree(
        vec![node(
            "plain",
            vec![
                ("size", cells64(&[6 * MIB])),
                ("alignment", cells64(&[MIB])),
                ("alloc-ranges", cells64(&[0x5000_0000, 7 * MIB])),
            ],
        )],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert_eq!(plan.regions[0].ranges, vec![0x5010_0000..0x5070_0000]);
    assert_eq!(plan.regions[0].kind, RegionKind::Reserved);
    assert_eq!(plan.kept_from_buddy(), vec![0x5010_0000..0x5070_0000]);
}

#[test]
fn dynamic_without_alloc_ranges_goes_to_the_top_and_avoids_static_regions() {
    let blob = tree(
        vec![
            node(
                "dyn",
                with(cma_pool(), vec![("size", cells64(&[32 * MIB]))]),
            ),
            node(
                "top@7e000000",
                vec![reg(0x7E00_0000, 32 * MIB), flag("no-map")],
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    // Static first (even though later in the tree), then the dynamic one below it.
    assert_eq!(names(&plan), ["top@7e000000", "dyn"]);
    assert_eq!(plan.regions[1].ranges, vec![0x7C00_0000..0x7E00_0000]);
}

#[test]
fn alloc_range_starting_at_a_region_fills_bottom_up() {
    // Linux's __reserved_mem_alloc_in_range: the window starts at the end of fw@48000000
    // and ends in free memory, so the region is placed right after it.
    let blob = tree(
        vec![
            node(
                "fw@48000000",
                vec![reg(0x4800_0000, 16 * MIB), flag("no-map")],
            ),
            node(
                "next",
                vec![
                    ("size", cells64(&[8 * MIB])),
                    ("alloc-ranges", cells64(&[0x4900_0000, 0x1000_0000])),
                ],
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(plan.regions[1].ranges, vec![0x4900_0000..0x4980_0000]);
}

#[test]
fn no_map_carveout_with_several_reg_entries() {
    let blob = tree(
        vec![node(
            "firmware@60000000",
            vec![
                ("reg", cells64(&[0x6000_0000, 2 * MIB, 0x6100_0000, MIB])),
                flag("no-map"),
                phandle(7),
            ],
        )],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(plan.regions[0].kind, RegionKind::NoMap);
    assert_eq!(
        plan.not_mapped(),
        [0x6000_0000..0x6020_0000, 0x6100_0000..0x6110_0000]
    );
    assert_eq!(plan.kept_from_buddy(), plan.not_mapped());
    assert!(plan.cma_areas.is_empty());
    assert_eq!(plan.carveouts.len(), 2);
    assert_eq!(plan.carveouts[0].phandle, Some(7));
}

#[test]
fn cma_bootarg_creates_the_default_area() {
    let blob = tree(vec![], vec![]);
    let plan = plan_for(&blob, Some("console=ttyAMA0 cma=64M"));
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    let area = plan.default_cma_area().expect("cma= area");
    assert_eq!(
        (area.name.as_str(), area.base, area.size),
        ("reserved", 0x7C00_0000, 64 * MIB)
    );
    assert_eq!(plan.regions[0].source, RegionSource::CommandLine);
}

#[test]
fn cma_bootarg_overrides_the_tree_default() {
    let regions = || {
        vec![
            node(
                "linux,cma",
                with(
                    cma_pool(),
                    vec![
                        reg(0x5000_0000, 32 * MIB),
                        flag("linux,cma-default"),
                        phandle(3),
                    ],
                ),
            ),
            node(
                "video@60000000",
                with(cma_pool(), vec![reg(0x6000_0000, 16 * MIB), phandle(4)]),
            ),
        ]
    };
    let devices = vec![node("gpu", vec![("memory-region", Prop::Cells(vec![3]))])];
    let blob = tree(regions(), devices);

    let without = plan_for(&blob, None);
    assert!(without.messages.is_empty(), "{:?}", without.messages);
    assert_eq!(without.default_cma_area().unwrap().name, "linux,cma");
    assert_eq!(
        without.cma_area_for_device("/gpu").unwrap().name,
        "linux,cma"
    );

    let with_cmdline = plan_for(&blob, Some("cma=128M"));
    assert_eq!(names(&with_cmdline), ["video@60000000", "reserved"]);
    let area = with_cmdline.default_cma_area().unwrap();
    assert_eq!(
        (area.name.as_str(), area.base, area.size),
        ("reserved", 0x7800_0000, 128 * MIB)
    );
    // One message for the bypassed node, one for the device that pointed at it.
    assert_eq!(
        with_cmdline.messages.len(),
        2,
        "{:?}",
        with_cmdline.messages
    );
    assert!(with_cmdline.messages[0].contains("linux,cma: bypassed"));
    assert!(with_cmdline.messages[1].starts_with("/gpu: memory-region[0]"));
    assert_eq!(
        with_cmdline.cma_area_for_device("/gpu").unwrap().name,
        "reserved"
    );
    // A non-default pool is untouched by cma=.
    assert!(with_cmdline
        .cma_areas
        .iter()
        .any(|a| a.name == "video@60000000" && !a.is_default));
}

#[test]
fn cma_zero_disables_the_default_area() {
    let blob = tree(
        vec![node(
            "linux,cma",
            with(
                cma_pool(),
                vec![reg(0x5000_0000, 32 * MIB), flag("linux,cma-default")],
            ),
        )],
        vec![],
    );
    let plan = plan_for(&blob, Some("cma=0"));
    assert!(plan.regions.is_empty());
    assert!(plan.default_cma_area().is_none());
    assert_eq!(plan.messages.len(), 2, "{:?}", plan.messages);
}

/// `early_cma()`: `memparse("")` is 0, so an empty `cma=` is `cma=0`: no default area,
/// and `rmem_cma_setup` bypasses the tree's `linux,cma-default` pool because a command
/// line size was given.
#[test]
fn cma_with_an_empty_value_drops_the_default_area() {
    let blob = tree(
        vec![
            node(
                "linux,cma",
                with(
                    cma_pool(),
                    vec![reg(0x5000_0000, 32 * MIB), flag("linux,cma-default")],
                ),
            ),
            node(
                "other@60000000",
                with(cma_pool(), vec![reg(0x6000_0000, 32 * MIB)]),
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, Some("cma="));
    assert!(plan.default_cma_area().is_none(), "{:?}", plan.cma_areas);
    assert_eq!(
        names(&plan),
        ["other@60000000"],
        "only the non-default pool stays"
    );
    assert_eq!(plan.nodes[0].outcome, NodeOutcome::BypassedForCmdline);
    assert_eq!(
        plan,
        plan_for(&blob, Some("cma=0")),
        "the same plan as cma=0"
    );
}

#[test]
fn cma_bootarg_with_start_and_end() {
    let blob = tree(vec![], vec![]);
    let window = plan_for(&blob, Some("cma=64M@0x48000000-0x58000000"));
    assert!(window.messages.is_empty(), "{:?}", window.messages);
    assert_eq!(window.regions[0].ranges, vec![0x5400_0000..0x5800_0000]);

    let fixed = plan_for(&blob, Some("cma=64M@0x50000000"));
    assert!(fixed.messages.is_empty(), "{:?}", fixed.messages);
    assert_eq!(fixed.regions[0].ranges, vec![0x5000_0000..0x5400_0000]);

    // The window's end is rounded down and its start up to pageblocks.
    let rounded = plan_for(&blob, Some("cma=4M@0x48100000-0x48700000"));
    assert!(rounded.messages.is_empty(), "{:?}", rounded.messages);
    assert_eq!(rounded.regions[0].ranges, vec![0x4820_0000..0x4860_0000]);
}

#[test]
fn cma_bootarg_size_is_rounded_up_like_linux() {
    let blob = tree(vec![], vec![]);
    let plan_anywhere = plan_for(&blob, Some("cma=3M"));
    assert_eq!(plan_anywhere.default_cma_area().unwrap().size, 4 * MIB);
    assert_eq!(
        plan_anywhere.messages.len(),
        1,
        "{:?}",
        plan_anywhere.messages
    );
    assert!(plan_anywhere.messages[0].contains("rounded up to 4 MiB"));

    // Fixed form: Linux rounds the size up but the limit (start + 3M) down, so it fails.
    let fixed = plan_for(&blob, Some("cma=3M@0x50000000"));
    assert!(fixed.regions.is_empty());
    assert_eq!(fixed.messages.len(), 2, "{:?}", fixed.messages);
    assert!(fixed.messages[1].contains("does not fit below 0x50200000"));

    let unaligned_start = plan_for(&blob, Some("cma=4M@0x50100000"));
    assert!(unaligned_start.regions.is_empty());
    assert!(unaligned_start.messages[0].contains("must be 2 MiB aligned"));
}

#[test]
fn cma_bootarg_avoids_tree_regions_and_firmware() {
    let blob = tree(
        vec![node(
            "fw@60000000",
            vec![reg(0x6000_0000, 0x2000_0000), flag("no-map")],
        )],
        vec![],
    );
    let plan = plan_for(&blob, Some("cma=256M"));
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(plan.default_cma_area().unwrap().base, 0x5000_0000);

    let busy = plan_on(&blob, &[RAM], Some("cma=64M@0x60000000"));
    assert_eq!(busy.regions.len(), 1);
    assert!(
        busy.messages[0].contains("already in use"),
        "{:?}",
        busy.messages
    );

    let no_room = plan_on(&blob, &[RAM], Some("cma=512M"));
    assert_eq!(no_room.regions.len(), 1);
    assert!(
        no_room.messages[0].contains("no free 2 MiB-aligned room"),
        "{:?}",
        no_room.messages
    );
}

#[test]
fn garbage_or_oversized_cma_is_ignored_and_the_tree_default_stands() {
    let blob = tree(
        vec![node(
            "linux,cma",
            with(
                cma_pool(),
                vec![reg(0x5000_0000, 32 * MIB), flag("linux,cma-default")],
            ),
        )],
        vec![],
    );
    for args in ["cma=lots", "cma=2G", "cma=64M@", "cma"] {
        let plan = plan_for(&blob, Some(args));
        assert_eq!(plan.messages.len(), 1, "{args}: {:?}", plan.messages);
        assert!(
            plan.messages[0].contains("ignored"),
            "{args}: {:?}",
            plan.messages
        );
        assert_eq!(
            plan.default_cma_area().map(|a| a.name.as_str()),
            Some("linux,cma"),
            "{args}"
        );
    }
}

#[test]
fn per_device_regions_two_devices_and_one_with_two_banks() {
    let bank1: Range<u64> = 0x1_0000_0000..0x1_4000_0000;
    let blob = tree(
        vec![
            node(
                "codec-bank0@50000000",
                with(cma_pool(), vec![reg(0x5000_0000, 64 * MIB), phandle(0x10)]),
            ),
            node(
                "codec-bank1@100000000",
                with(
                    cma_pool(),
                    vec![reg(0x1_0000_0000, 64 * MIB), phandle(0x11)],
                ),
            ),
            node(
                "display@70000000",
                vec![reg(0x7000_0000, 8 * MIB), flag("no-map"), phandle(0x12)],
            ),
        ],
        vec![
            node(
                "video-codec@a000000",
                vec![
                    ("memory-region", Prop::Cells(vec![0x10, 0x11])),
                    ("memory-region-names", Prop::Strings(vec!["left", "right"])),
                ],
            ),
            node(
                "display-controller",
                vec![("memory-region", Prop::Cells(vec![0x12]))],
            ),
            node(
                "disabled-dev",
                vec![
                    ("memory-region", Prop::Cells(vec![0x10])),
                    ("status", Prop::Strings(vec!["disabled"])),
                ],
            ),
        ],
    );
    let plan = plan_on(&blob, &[RAM, bank1.clone()], None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_consistent(&plan, &[RAM, bank1], &[FIRMWARE]);
    assert_eq!(plan.device_regions.len(), 2);

    let codec = plan.regions_of("/video-codec@a000000").unwrap();
    let summary: Vec<(usize, Option<&str>, &str, Range<u64>)> = codec
        .regions
        .iter()
        .map(|r| {
            (
                r.index,
                r.name.as_deref(),
                r.region.as_str(),
                r.range.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                0,
                Some("left"),
                "codec-bank0@50000000",
                0x5000_0000..0x5400_0000
            ),
            (
                1,
                Some("right"),
                "codec-bank1@100000000",
                0x1_0000_0000..0x1_0400_0000
            ),
        ]
    );
    assert_eq!(
        plan.cma_area_for_device("/video-codec@a000000")
            .unwrap()
            .name,
        "codec-bank0@50000000"
    );
    assert_eq!(plan.cma_areas[0].owners, ["/video-codec@a000000"]);
    assert_eq!(plan.cma_areas[1].owners, ["/video-codec@a000000"]);
    // By name, as of_reserved_mem_device_init_by_name: each bank's own area.
    let by_name = |name| {
        plan.cma_area_for_device_by_name("/video-codec@a000000", name)
            .map(|a| a.name.as_str())
    };
    assert_eq!(by_name("right"), Some("codec-bank1@100000000"));
    assert_eq!(by_name("left"), Some("codec-bank0@50000000"));
    assert_eq!(by_name("middle"), None);
    assert_eq!(
        plan.cma_area_for_device_by_name("/display-controller", "left"),
        None
    );

    let display = plan.regions_of("/display-controller").unwrap();
    assert_eq!(display.regions[0].kind, RegionKind::NoMap);
    assert_eq!(plan.carveouts[0].owners, ["/display-controller"]);
    assert!(
        plan.cma_area_for_device("/display-controller").is_none(),
        "no default area here"
    );
}

/// Linux's `rmem_cma_setup` sets `dma_contiguous_default_area` for every
/// `linux,cma-default` pool it accepts, so the pool initialised last wins; static (`reg`)
/// pools are initialised in tree order by `fdt_scan_reserved_mem_reg_nodes`, after the
/// dynamic ones (initialised as `__reserved_mem_alloc_size` places them).
#[test]
fn several_tree_defaults_the_last_initialised_wins() {
    let default_pool = |name: &str, placement: (&'static str, Prop)| {
        node(
            name,
            with(cma_pool(), vec![placement, flag("linux,cma-default")]),
        )
    };
    let size = |bytes: u64| ("size", cells64(&[bytes]));
    // Two static pools: the later in tree order wins, whatever the bases.
    let blob = tree(
        vec![
            default_pool("high@60000000", reg(0x6000_0000, 32 * MIB)),
            default_pool("low@50000000", reg(0x5000_0000, 32 * MIB)),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert_eq!(plan.default_cma_area().unwrap().name, "low@50000000");
    assert_eq!(plan.messages.len(), 1, "{:?}", plan.messages);
    assert!(plan.messages[0].starts_with("reserved-memory/high@60000000: also marked"));

    // A static pool is initialised after a dynamic one, even one later in the tree.
    let blob = tree(
        vec![
            default_pool("fixed@50000000", reg(0x5000_0000, 32 * MIB)),
            default_pool("placed", size(32 * MIB)),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert_eq!(plan.default_cma_area().unwrap().name, "fixed@50000000");
    assert!(plan.messages[0].starts_with("reserved-memory/placed: also marked"));

    // Only dynamic pools: the later in tree order wins.
    let blob = tree(
        vec![
            default_pool("first", size(32 * MIB)),
            default_pool("second", size(32 * MIB)),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert_eq!(plan.default_cma_area().unwrap().name, "second");
    assert_eq!(
        plan.cma_areas.iter().filter(|a| a.is_default).count(),
        1,
        "exactly one default area"
    );
}

// ---- broken input: one message each, the rest goes on -----------------------------

/// A tree with one good region plus `broken`; the good one must survive.
fn check_broken(broken: Node, devices: Vec<Node>, expect: &str) -> ReservedMemoryPlan {
    let good = node(
        "good@78000000",
        with(cma_pool(), vec![reg(0x7800_0000, 32 * MIB), phandle(0x99)]),
    );
    let blob = tree(vec![good, broken], devices);
    let plan = plan_for(&blob, None);
    assert_eq!(plan.messages.len(), 1, "{:?}", plan.messages);
    assert!(
        plan.messages[0].contains(expect),
        "expected {expect:?} in {:?}",
        plan.messages
    );
    assert!(
        plan.regions.iter().any(|r| r.name == "good@78000000"),
        "good region lost"
    );
    assert_consistent(&plan, &[RAM], &[FIRMWARE]);
    plan
}

#[test]
fn overlapping_region_is_refused() {
    let plan = check_broken(
        node("overlap@79000000", vec![reg(0x7900_0000, 32 * MIB)]),
        vec![],
        "overlaps region good@78000000",
    );
    assert_eq!(plan.regions.len(), 1);
}

#[test]
fn region_on_firmware_is_refused() {
    check_broken(
        node("fw@40800000", vec![reg(0x4080_0000, MIB)]),
        vec![],
        "overlaps memory already in use",
    );
}

#[test]
fn region_outside_ram_is_refused() {
    check_broken(
        node("far@90000000", vec![reg(0x9000_0000, MIB), flag("no-map")]),
        vec![],
        "lies outside RAM",
    );
    check_broken(
        node("straddle@7f000000", vec![reg(0x7F00_0000, 32 * MIB)]),
        vec![],
        "lies outside RAM",
    );
}

#[test]
fn misaligned_reusable_region_is_refused() {
    check_broken(
        node(
            "cma@50100000",
            with(cma_pool(), vec![reg(0x5010_0000, 4 * MIB)]),
        ),
        vec![],
        "not 2 MiB (pageblock) aligned",
    );
    check_broken(
        node(
            "cma@50000000",
            with(cma_pool(), vec![reg(0x5000_0000, 3 * MIB)]),
        ),
        vec![],
        "not 2 MiB (pageblock) aligned",
    );
    check_broken(
        node("dyn", with(cma_pool(), vec![("size", cells64(&[3 * MIB]))])),
        vec![],
        "not a multiple of 2 MiB",
    );
    // A non-reusable region only needs whole pages.
    let blob = tree(
        vec![node("small@50100000", vec![reg(0x5010_0000, 3 * MIB)])],
        vec![],
    );
    assert!(plan_for(&blob, None).messages.is_empty());
    check_broken(
        node("odd@50000100", vec![reg(0x5000_0100, 0x1000)]),
        vec![],
        "not aligned to 4 KiB pages",
    );
}

#[test]
fn no_map_and_reusable_together_are_refused() {
    check_broken(
        node(
            "both@50000000",
            with(cma_pool(), vec![reg(0x5000_0000, 4 * MIB), flag("no-map")]),
        ),
        vec![],
        "both no-map and reusable",
    );
}

#[test]
fn bad_property_lengths_are_refused() {
    check_broken(
        node(
            "short@50000000",
            vec![("reg", Prop::Cells(vec![0, 0x5000_0000, 0]))],
        ),
        vec![],
        "reg is 12 bytes",
    );
    check_broken(
        node("emptyreg", vec![flag("reg")]),
        vec![],
        "reg is 0 bytes",
    );
    check_broken(
        node("dyn", vec![("size", Prop::Cells(vec![0x100_0000]))]),
        vec![],
        "size is 4 bytes, expected 8",
    );
    check_broken(
        node(
            "dyn",
            vec![
                ("size", cells64(&[MIB])),
                ("alignment", Prop::Cells(vec![1])),
            ],
        ),
        vec![],
        "alignment is 4 bytes",
    );
    check_broken(
        node(
            "dyn",
            vec![
                ("size", cells64(&[MIB])),
                ("alloc-ranges", Prop::Cells(vec![0, 1, 2])),
            ],
        ),
        vec![],
        "alloc-ranges is 12 bytes",
    );
    check_broken(
        node(
            "dyn",
            vec![("size", cells64(&[MIB])), ("alignment", cells64(&[0x3000]))],
        ),
        vec![],
        "not a power of two",
    );
    check_broken(
        node("nothing", vec![compatible("shared-dma-pool")]),
        vec![],
        "neither reg nor size",
    );
}

#[test]
fn zero_and_oversized_regions_are_refused() {
    check_broken(
        node("zero@50000000", vec![reg(0x5000_0000, 0)]),
        vec![],
        "zero size",
    );
    check_broken(
        node("dyn", vec![("size", cells64(&[0]))]),
        vec![],
        "zero size",
    );
    check_broken(
        node("huge@40000000", vec![reg(0x4000_0000, 2 << 30)]),
        vec![],
        "bigger than all RAM",
    );
    check_broken(
        node("dyn", vec![("size", cells64(&[2 << 30]))]),
        vec![],
        "bigger than all RAM",
    );
    check_broken(
        node("wrap", vec![reg(u64::MAX - 0xFFF, 0x2000)]),
        vec![],
        "wraps past the end",
    );
    check_broken(
        node(
            "tight",
            with(
                cma_pool(),
                vec![
                    ("size", cells64(&[64 * MIB])),
                    ("alloc-ranges", cells64(&[0x5000_0000, 32 * MIB])),
                ],
            ),
        ),
        vec![],
        "does not fit in its alloc-ranges",
    );
    // Everything above the firmware except the good region is free, but not 1 GiB - 16 MiB.
    check_broken(
        node("dyn", vec![("size", cells64(&[1008 * MIB]))]),
        vec![],
        "no free 4 KiB-aligned room",
    );
}

#[test]
fn one_bad_reg_entry_skips_only_that_entry() {
    let plan = check_broken(
        node(
            "multi@50000000",
            vec![(
                "reg",
                cells64(&[0x5000_0000, MIB, 0x9000_0000, MIB, 0x5100_0000, MIB]),
            )],
        ),
        vec![],
        "reg entry 1: [0x90000000..0x90100000) lies outside RAM; entry skipped",
    );
    let multi = plan
        .regions
        .iter()
        .find(|r| r.name == "multi@50000000")
        .unwrap();
    assert_eq!(
        multi.ranges,
        [0x5000_0000..0x5010_0000, 0x5100_0000..0x5110_0000]
    );
}

#[test]
fn dangling_and_foreign_phandles_are_reported() {
    let plan = check_broken(
        node("spare@50000000", vec![reg(0x5000_0000, MIB)]),
        vec![node(
            "dev",
            vec![("memory-region", Prop::Cells(vec![0x99, 0x4242]))],
        )],
        "/dev: memory-region[1] dangling phandle 0x4242",
    );
    assert_eq!(
        plan.regions_of("/dev").unwrap().regions.len(),
        1,
        "the good index still resolves"
    );

    let mut intc = node("intc", vec![phandle(0x55)]);
    intc.children.push(node(
        "dev",
        vec![("memory-region", Prop::Cells(vec![0x55]))],
    ));
    check_broken(
        node("spare@50000000", vec![reg(0x5000_0000, MIB)]),
        vec![intc],
        "/intc/dev: memory-region[0] points at /intc, which is not a /reserved-memory child",
    );

    check_broken(
        node("spare@50000000", vec![reg(0x5000_0000, MIB)]),
        vec![node(
            "dev",
            vec![("memory-region", Prop::Bytes(vec![0, 0, 0x99]))],
        )],
        "memory-region is 3 bytes",
    );
}

#[test]
fn device_pointing_at_a_refused_region_is_reported() {
    let blob = tree(
        vec![node(
            "bad@50100000",
            with(cma_pool(), vec![reg(0x5010_0000, 4 * MIB), phandle(0x20)]),
        )],
        vec![node(
            "dev",
            vec![("memory-region", Prop::Cells(vec![0x20]))],
        )],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.regions.is_empty());
    assert!(plan.device_regions.is_empty());
    assert_eq!(plan.messages.len(), 2, "{:?}", plan.messages);
    assert!(plan.messages[0].starts_with("reserved-memory/bad@50100000: "));
    assert_eq!(
        plan.messages[1],
        "/dev: memory-region[0] points at bad@50100000, which was not reserved (see its message)"
    );
}

#[test]
fn disabled_region_is_ignored_silently_but_its_users_are_told() {
    let blob = tree(
        vec![node(
            "off@50000000",
            vec![
                reg(0x5000_0000, MIB),
                ("status", Prop::Strings(vec!["disabled"])),
                phandle(5),
            ],
        )],
        vec![node("dev", vec![("memory-region", Prop::Cells(vec![5]))])],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.regions.is_empty());
    assert_eq!(
        plan.messages,
        ["/dev: memory-region[0] points at /reserved-memory/off@50000000, which is disabled"]
    );
}

#[test]
fn unusable_reserved_memory_node_is_ignored_whole() {
    let region = || vec![node("r@50000000", vec![reg(0x5000_0000, MIB)])];
    let cases: Vec<(Vec<(&'static str, Prop)>, &str)> = vec![
        (
            vec![
                ("#address-cells", Prop::Cells(vec![2])),
                ("#size-cells", Prop::Cells(vec![2])),
            ],
            "ranges missing",
        ),
        (
            vec![("#size-cells", Prop::Cells(vec![2])), flag("ranges")],
            "#address-cells missing",
        ),
        (
            vec![
                ("#address-cells", Prop::Cells(vec![3])),
                ("#size-cells", Prop::Cells(vec![2])),
                flag("ranges"),
            ],
            "#address-cells = 3",
        ),
        (
            vec![
                ("#address-cells", Prop::Bytes(vec![2])),
                ("#size-cells", Prop::Cells(vec![2])),
                flag("ranges"),
            ],
            "#address-cells is 1 bytes",
        ),
        (
            vec![
                ("#address-cells", Prop::Cells(vec![2])),
                ("#size-cells", Prop::Cells(vec![2])),
                ("ranges", cells64(&[0, 0x4000_0000, 0x4000_0000])),
            ],
            "non-empty ranges",
        ),
    ];
    for (props, expect) in cases {
        let blob = tree_with(props, region(), vec![]);
        let plan = plan_for(&blob, None);
        assert!(plan.regions.is_empty(), "{expect}");
        assert_eq!(plan.messages.len(), 1, "{expect}: {:?}", plan.messages);
        assert!(
            plan.messages[0].contains(expect),
            "{expect}: {:?}",
            plan.messages
        );
    }
}

#[test]
fn one_cell_addresses_are_honoured() {
    let props = vec![
        ("#address-cells", Prop::Cells(vec![1])),
        ("#size-cells", Prop::Cells(vec![1])),
        flag("ranges"),
    ];
    let blob = tree_with(
        props,
        vec![
            node(
                "a@50000000",
                with(
                    cma_pool(),
                    vec![("reg", Prop::Cells(vec![0x5000_0000, 0x200_0000]))],
                ),
            ),
            node(
                "b",
                vec![
                    ("size", Prop::Cells(vec![0x10_0000])),
                    ("alloc-ranges", Prop::Cells(vec![0x6000_0000, 0x100_0000])),
                ],
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(plan.regions[0].ranges, vec![0x5000_0000..0x5200_0000]);
    assert_eq!(plan.regions[1].ranges, vec![0x60F0_0000..0x6100_0000]);
}

#[test]
fn tree_without_reserved_memory_plans_nothing() {
    let mut root = node(
        "",
        vec![
            ("#address-cells", Prop::Cells(vec![2])),
            ("#size-cells", Prop::Cells(vec![2])),
        ],
    );
    root.children.push(node("chosen", vec![]));
    let mut fdt = FdtWriter::new().unwrap();
    write(&mut fdt, &root);
    let blob = fdt.finish().unwrap();
    let plan = plan_for(&blob, None);
    assert_eq!(plan, ReservedMemoryPlan::default());
}

#[test]
fn no_ram_refuses_everything_without_panicking() {
    let blob = tree(
        vec![
            node("r@50000000", vec![reg(0x5000_0000, MIB)]),
            node("d", vec![("size", cells64(&[MIB]))]),
        ],
        vec![],
    );
    let tree = DeviceTree::from_blob(&blob).unwrap();
    let plan = plan_reserved_memory(&tree, &[], &[], Some("cma=64M"));
    assert!(plan.regions.is_empty());
    assert_eq!(plan.messages.len(), 3, "{:?}", plan.messages);
}

/// The overlays in `testdata/reserved/*.dtso` applied to QEMU virt's own DTB (see
/// `regenerate.sh` there): the same forms, through the real machine's tree.
mod qemu_virt_overlays {
    use super::*;

    fn plan_virt(blob: &[u8]) -> ReservedMemoryPlan {
        let tree = DeviceTree::from_blob(blob).expect("merged blob parses");
        let platform = crate::dt::platform::Platform::from_tree(&tree, 0).unwrap();
        assert_eq!(
            platform.memory,
            vec![RAM],
            "fixture is the 1 GiB virt machine"
        );
        plan_reserved_memory(
            &tree,
            &platform.memory,
            &[FIRMWARE],
            platform.bootargs.as_deref(),
        )
    }

    #[test]
    fn static_cma() {
        let plan = plan_virt(include_bytes!("../testdata/reserved/static-cma.virt.dtb"));
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(plan.cma_areas.len(), 1);
        let area = &plan.cma_areas[0];
        assert_eq!(
            (area.name.as_str(), area.base, area.size, area.is_default),
            ("video@50000000", 0x5000_0000, 64 * MIB, false)
        );
        assert_eq!(area.owners, ["/video-codec"]);
    }

    #[test]
    fn dynamic_cma() {
        let plan = plan_virt(include_bytes!("../testdata/reserved/dynamic-cma.virt.dtb"));
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        let area = plan.default_cma_area().unwrap();
        assert_eq!(
            (area.name.as_str(), area.base, area.size),
            ("linux,cma", 0x5D00_0000, 64 * MIB)
        );
    }

    #[test]
    fn nomap_carveout() {
        let plan = plan_virt(include_bytes!(
            "../testdata/reserved/nomap-carveout.virt.dtb"
        ));
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        assert_eq!(
            plan.not_mapped(),
            vec![0x6000_0000..0x6020_0000, 0x6100_0000..0x6110_0000]
        );
        assert!(plan
            .carveouts
            .iter()
            .all(|c| c.owners == ["/secure-firmware"]));
    }

    #[test]
    fn cmdline_cma_overrides_the_tree_default() {
        let plan = plan_virt(include_bytes!("../testdata/reserved/cmdline-cma.virt.dtb"));
        assert_eq!(plan.messages.len(), 1, "{:?}", plan.messages);
        assert!(plan.messages[0].contains("linux,cma@70000000: bypassed"));
        let area = plan.default_cma_area().unwrap();
        assert_eq!(
            (area.name.as_str(), area.base, area.size),
            ("reserved", 0x5400_0000, 64 * MIB)
        );
        assert_eq!(names(&plan), ["camera@68000000", "reserved"]);
    }

    #[test]
    fn per_device_regions() {
        let plan = plan_virt(include_bytes!("../testdata/reserved/per-device.virt.dtb"));
        assert!(plan.messages.is_empty(), "{:?}", plan.messages);
        let codec = plan.regions_of("/video-codec").unwrap();
        let seen: Vec<(Option<&str>, &str, Range<u64>)> = codec
            .regions
            .iter()
            .map(|r| (r.name.as_deref(), r.region.as_str(), r.range.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("left"), "bank-low@48000000", 0x4800_0000..0x4A00_0000),
                (
                    Some("right"),
                    "bank-high@7c000000",
                    0x7C00_0000..0x7E00_0000
                ),
            ]
        );
        let display = plan.regions_of("/display").unwrap();
        assert_eq!(display.regions.len(), 1);
        assert_eq!(display.regions[0].kind, RegionKind::NoMap);
        assert_eq!(display.regions[0].range, 0x7780_0000..0x7800_0000);
    }

    #[test]
    fn broken_nodes() {
        let plan = plan_virt(include_bytes!("../testdata/reserved/broken.virt.dtb"));
        assert_eq!(names(&plan), ["good@78000000"]);
        let expected = [
            "overlap@79000000: [0x79000000..0x7b000000) overlaps region good@78000000",
            "far@90000000: [0x90000000..0x90100000) lies outside RAM",
            "misaligned@50100000: [0x50100000..0x50500000) is a reusable CMA region whose base or size is not 2 MiB",
            "both@52000000: has both no-map and reusable",
            "shortreg@54000000: reg is 12 bytes",
            "zero@56000000: has zero size",
            "huge: size 4096 MiB is bigger than all RAM",
            "tight: 64 MiB (2 MiB-aligned) does not fit in its alloc-ranges",
            "/user: memory-region[1] dangling phandle 0xdead",
        ];
        assert_eq!(plan.messages.len(), expected.len(), "{:#?}", plan.messages);
        for want in expected {
            assert!(
                plan.messages.iter().any(|m| m.contains(want)),
                "missing {want:?} in {:#?}",
                plan.messages
            );
        }
        assert_eq!(
            plan.regions_of("/user").unwrap().regions[0].region,
            "good@78000000"
        );
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Anything at all, including wrong lengths and non-cell bytes.
    fn wild_property() -> impl Strategy<Value = (&'static str, Prop)> {
        let names = prop::sample::select(vec![
            "reg",
            "size",
            "alignment",
            "alloc-ranges",
            "status",
            "phandle",
        ]);
        (names, prop::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(name, bytes)| (name, Prop::Bytes(bytes)))
    }

    /// A child that is often valid: `reg` or `size` from plausible values, some flags,
    /// sometimes an `alignment`/`alloc-ranges`, sometimes garbage on top.
    fn child() -> impl Strategy<Value = Vec<(&'static str, Prop)>> {
        let base = prop::sample::select(vec![
            0u64,
            0x4000_0000,
            0x4080_0000,
            0x4100_0000,
            0x5000_0000,
            0x5010_0000,
            0x5020_0000,
            0x7E00_0000,
            0x7FFF_F000,
            0x9000_0000,
            u64::MAX - 0xFFF,
        ]);
        let size = prop::sample::select(vec![
            0u64,
            0x1000,
            0x10_0000,
            0x20_0000,
            0x30_0000,
            0x200_0000,
            0x400_0000,
            0x1000_0000,
            0x4000_0000,
            0x8000_0000,
        ]);
        let align = prop::sample::select(vec![0u64, 0x1000, 0x3000, 0x10_0000, 0x100_0000]);
        (
            (prop::bool::ANY, base.clone(), size.clone()),
            (
                prop::bool::ANY,
                prop::bool::ANY,
                prop::bool::ANY,
                prop::bool::ANY,
            ),
            prop::option::of(align),
            prop::option::of((base, size)),
            prop::collection::vec(wild_property(), 0..2),
        )
            .prop_map(
                |((is_static, b, sz), (pool, no_map, reusable, default), align, window, wild)| {
                    let mut props = Vec::new();
                    if is_static {
                        props.push(reg(b, sz));
                    } else {
                        props.push(("size", cells64(&[sz])));
                    }
                    if pool {
                        props.push(compatible("shared-dma-pool"));
                    }
                    if no_map {
                        props.push(flag("no-map"));
                    }
                    if reusable {
                        props.push(flag("reusable"));
                    }
                    if default {
                        props.push(flag("linux,cma-default"));
                    }
                    if let Some(a) = align {
                        props.push(("alignment", cells64(&[a])));
                    }
                    if let Some((start, length)) = window {
                        props.push(("alloc-ranges", cells64(&[start, length])));
                    }
                    // A wild property with a name already present shadows nothing: the
                    // first occurrence wins, so put garbage first to let it take effect.
                    let mut all: Vec<(&'static str, Prop)> = wild;
                    all.extend(props);
                    all
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn any_reserved_memory_children_give_a_consistent_plan(
            children in prop::collection::vec(child(), 0..7),
            references in prop::collection::vec(0u32..9, 0..6),
            bootargs in prop::sample::select(vec!["", "cma=64M", "cma=0", "cma=3M@0x50000000", "cma=16M@0x41000000-0x50000000", "cma=xyz", "cma=64M@0x7c000000"]),
        ) {
            let regions: Vec<Node> = children
                .into_iter()
                .enumerate()
                .map(|(i, mut props)| {
                    props.push(phandle(i as u32 + 1));
                    node(&format!("r{i}"), props)
                })
                .collect();
            let device = node("dev", vec![("memory-region", Prop::Cells(references))]);
            let blob = tree(regions, vec![device]);
            let tree = DeviceTree::from_blob(&blob).unwrap();
            let plan = plan_reserved_memory(&tree, &[RAM], &[FIRMWARE], Some(bootargs));
            assert_consistent(&plan, &[RAM], &[FIRMWARE]);
            // Every device reference points at the region it names.
            for device in &plan.device_regions {
                for r in &device.regions {
                    prop_assert_eq!(&plan.regions[r.region_index].name, &r.region);
                    prop_assert_eq!(plan.regions[r.region_index].primary(), r.range.clone());
                }
            }
        }
    }
}

/// The default board's tree, the same tree with one property NOPed (libfdt's
/// `fdt_nop_property`), and the same tree written by `dtc -V 16`: one plan. (A version-16
/// blob used to lose every reserved region on the host.)
#[test]
fn nop_and_version_16_trees_plan_the_same_areas_as_the_clean_tree() {
    let plan_of = |blob: &[u8]| {
        let tree = DeviceTree::from_blob(blob).unwrap();
        let platform = crate::dt::platform::Platform::from_tree(&tree, 0x4000_0000).unwrap();
        plan_reserved_memory(
            &tree,
            &platform.memory,
            &[FIRMWARE],
            platform.bootargs.as_deref(),
        )
    };
    let clean = plan_of(include_bytes!("../testdata/variants/virt-board.dtb"));
    assert_eq!(clean.cma_areas.len(), 1, "{clean:?}");
    let area = &clean.cma_areas[0];
    assert_eq!(
        (area.name.as_str(), area.base, area.size, area.is_default),
        ("linux,cma@50000000", 0x5000_0000, 256 * MIB, true)
    );
    assert_eq!(
        clean,
        plan_of(include_bytes!("../testdata/variants/virt-board.nop.dtb"))
    );
    assert_eq!(
        clean,
        plan_of(include_bytes!("../testdata/variants/virt-board.v16.dtb"))
    );
}

// ---- the boot summary: what is printed is what was planned ----

/// TI AM62A's `tfa`/`optee` carveouts: static (`reg`) regions that also carry a one-cell
/// `alignment` under two-cell `#size-cells`. Linux's `__reserved_mem_reserve_reg` never
/// reads `alignment` (only `__reserved_mem_alloc_size`, for dynamic regions, does), so
/// they are plain reserved regions, and the summary lists them with their ranges.
#[test]
fn static_regions_with_alignment_are_reserved_and_listed() {
    let carveout = |name: &str, base: u64, size: u64| {
        node(
            name,
            vec![
                reg(base, size),
                ("alignment", Prop::Cells(vec![0x1000])),
                flag("no-map"),
            ],
        )
    };
    let blob = tree(
        vec![
            carveout("tfa-memory@7e780000", 0x7e78_0000, 0x8_0000),
            carveout("optee-memory@7e800000", 0x7e80_0000, 0x180_0000),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert!(plan.messages.is_empty(), "{:?}", plan.messages);
    assert_eq!(plan.carveouts.len(), 2);
    let lines = summary(&plan);
    assert_eq!(lines[0], "reserved-memory: 2 region(s)");
    assert!(
        lines[1].contains("tfa-memory@7e780000")
            && lines[1].contains("0x007e780000..0x007e800000")
            && lines[1].ends_with("[no-map]"),
        "{lines:?}"
    );
    assert!(lines[2].contains("0x007e800000..0x0080000000"), "{lines:?}");
    assert!(!lines
        .iter()
        .any(|l| l.contains("alignment") || l.contains("skipped")));
}

/// `__reserved_mem_alloc_size` checks a dynamic region's `alignment` against
/// `dt_root_addr_cells`, the address cells (`/reserved-memory`'s equal the root's, by
/// `__fdt_reserved_mem_check_root`), not the size cells.
#[test]
fn dynamic_alignment_is_address_cells_long() {
    let props = vec![
        ("#address-cells", Prop::Cells(vec![2])),
        ("#size-cells", Prop::Cells(vec![1])),
        flag("ranges"),
    ];
    let dynamic = |name: &str, alignment: Prop| {
        node(
            name,
            vec![
                ("size", Prop::Cells(vec![0x10_0000])),
                ("alignment", alignment),
            ],
        )
    };
    let blob = tree_with(
        props,
        vec![
            dynamic("two-cells", cells64(&[0x20_0000])),
            dynamic("one-cell", Prop::Cells(vec![0x20_0000])),
        ],
        vec![],
    );
    let plan = plan_for(&blob, None);
    assert_eq!(names(&plan), ["two-cells"]);
    assert_eq!(plan.regions[0].primary().start % 0x20_0000, 0);
    assert_eq!(plan.messages.len(), 1, "{:?}", plan.messages);
    assert!(
        plan.messages[0].contains("one-cell: alignment is 4 bytes, expected 8 (#address-cells 2)"),
        "{:?}",
        plan.messages
    );
}

/// Every child the planner refused shows as skipped, with the planner's reason; none of
/// them looks reserved.
#[test]
fn refused_regions_show_as_skipped_in_the_summary() {
    let blob = tree(
        vec![
            node(
                "good@50000000",
                with(cma_pool(), vec![reg(0x5000_0000, 32 * MIB)]),
            ),
            node("outside@90000000", vec![reg(0x9000_0000, MIB)]),
            node(
                "both",
                with(cma_pool(), vec![reg(0x6000_0000, 32 * MIB), flag("no-map")]),
            ),
            node(
                "off@70000000",
                vec![
                    reg(0x7000_0000, MIB),
                    ("status", Prop::Strings(vec!["disabled"])),
                ],
            ),
        ],
        vec![],
    );
    let plan = plan_for(&blob, Some("cma=16M"));
    let lines = summary(&plan);
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {lines:?}"))
    };
    assert!(line("good@50000000").contains("0x0050000000..0x0052000000"));
    assert!(line("outside@90000000").contains("skipped: [0x90000000..0x90100000) lies outside RAM"));
    assert!(line("both").contains("skipped: has both no-map and reusable"));
    assert!(line("off@70000000").ends_with("[disabled]"));
    assert!(line("reserved ").contains("cma= [reusable linux,cma-default dynamic]"));
    let skipped = plan
        .nodes
        .iter()
        .filter(|n| matches!(n.outcome, NodeOutcome::Skipped(_)))
        .count();
    assert_eq!(skipped, 2);
    assert_eq!(
        lines.iter().filter(|l| l.contains("skipped:")).count(),
        skipped
    );
}
