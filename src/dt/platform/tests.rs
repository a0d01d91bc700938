//! Host tests: QEMU's own tree, a two-bank tree with reserved memory, hand-built trees
//! for the corner cases, and corruption of every kind (which must be an error, never a
//! panic).

use super::*;
use crate::dt::reserved::{plan_reserved_memory, NodeOutcome, RegionKind};
use alloc::vec;
use proptest::prelude::*;

static QEMU_VIRT: &[u8] = include_bytes!("../testdata/qemu-virt-1g.dtb");
static TWO_BANKS: &[u8] = include_bytes!("../testdata/two-banks.dtb");

const GIB: u64 = 1 << 30;

fn be32_at(blob: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(blob[at..at + 4].try_into().unwrap())
}

fn set_be32(blob: &mut [u8], at: usize, value: u32) {
    blob[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn qemu_virt_memory_and_blob_range() {
    let p = Platform::parse(QEMU_VIRT, 0x4000_0000).unwrap();
    assert_eq!(p.memory, vec![0x4000_0000..0x4000_0000 + GIB]);
    assert_eq!(p.dtb, 0x4000_0000..0x4000_0000 + QEMU_VIRT.len() as u64);
    assert_eq!(p.model.as_deref(), Some("linux,dummy-virt"));
    assert!(p.mem_reserve.is_empty());
    assert_eq!(p.bootargs, None);
    assert_eq!(p.stdout_path.as_deref(), Some("/pl011@9000000"));
}

#[test]
fn qemu_virt_devices() {
    let p = Platform::parse(QEMU_VIRT, 0x4000_0000).unwrap();
    assert_eq!(
        p.uart,
        Some(Pl011Info {
            base: 0x0900_0000,
            size: 0x1000,
            intid: Some(33),
            clock_hz: Some(24_000_000)
        })
    );
    assert_eq!(
        p.gic,
        Some(GicInfo {
            version: 3,
            distributor: 0x0800_0000..0x0801_0000,
            redistributor: 0x080a_0000..0x0900_0000,
            cpu_interface: None,
        })
    );
    assert_eq!(p.psci, Some(PsciConduit::Hvc));
    assert_eq!(
        p.timer,
        Some(TimerInfo {
            phys_intid: 30,
            virt_intid: 27,
            secure_phys_intid: Some(29),
            hyp_intid: Some(26)
        })
    );
}

#[test]
fn qemu_virt_has_32_virtio_slots_with_their_spis() {
    let p = Platform::parse(QEMU_VIRT, 0).unwrap();
    assert_eq!(p.virtio_mmio.len(), 32);
    let mut slots: Vec<(u64, u64, Option<u32>)> = p
        .virtio_mmio
        .iter()
        .map(|d| (d.base, d.size, d.intid))
        .collect();
    slots.sort();
    for (i, (base, size, intid)) in slots.into_iter().enumerate() {
        assert_eq!(base, 0x0a00_0000 + 0x200 * i as u64);
        assert_eq!(size, 0x200);
        assert_eq!(intid, Some(48 + i as u32), "slot {i}");
    }
    assert!(p
        .virtio_mmio
        .iter()
        .all(|d| d.path.starts_with("/virtio_mmio@")));
}

#[test]
fn qemu_virt_mmio_windows_cover_devices_and_avoid_ram() {
    let p = Platform::parse(QEMU_VIRT, 0).unwrap();
    let covered = |addr: u64| p.mmio.iter().any(|w| w.contains(&addr));
    for addr in [
        0x0900_0000,
        0x0800_0000,
        0x080a_0000,
        0x0808_0000,
        0x0a00_0000,
        0x0a00_3e00,
        0x0902_0000,
        0,
        0x40_1000_0000,
    ] {
        assert!(covered(addr), "{addr:#x} not in {:x?}", p.mmio);
    }
    assert!(!covered(0x4000_0000));
    assert!(
        p.mmio.windows(2).all(|w| w[0].end < w[1].start),
        "sorted and merged: {:x?}",
        p.mmio
    );
}

#[test]
fn two_banks_three_ranges_sorted() {
    let p = Platform::parse(TWO_BANKS, 0x4000_0000).unwrap();
    assert_eq!(
        p.memory,
        vec![
            0x4000_0000..0x6000_0000,
            0x1_0000_0000..0x1_1000_0000,
            0x1_8000_0000..0x1_8800_0000
        ]
    );
    assert_eq!(p.mem_reserve, vec![0x4800_0000..0x4800_1000]);
    assert_eq!(p.bootargs.as_deref(), Some("cma=64M loglevel=7"));
    // stdout-path is an alias with options; it still selects the PL011.
    assert_eq!(p.stdout_path.as_deref(), Some("serial0:115200n8"));
    assert_eq!(p.uart.as_ref().map(|u| u.base), Some(0x0900_0000));
}

#[test]
fn touching_memory_nodes_stay_separate_banks_but_overlaps_merge() {
    assert_eq!(
        super::merge_overlapping(vec![
            0x8000_0000..0xc000_0000,
            0x4000_0000..0x8000_0000,
            0x4000_0000..0x5000_0000,
        ]),
        vec![0x4000_0000..0x8000_0000, 0x8000_0000..0xc000_0000]
    );
    // Device windows, by contrast, are mapped as one when they touch.
    assert_eq!(
        super::merge(vec![0x1000..0x2000, 0x2000..0x3000]),
        vec![0x1000..0x3000]
    );
}

#[test]
fn two_banks_reserved_memory_listing() {
    // The planner reads the same validated tree the platform came from.
    let tree = DeviceTree::from_blob(TWO_BANKS).unwrap();
    let p = Platform::from_tree(&tree, 0).unwrap();
    // The fixture's bootargs carry a cma=; without them the tree's own pool stands.
    let plan = plan_reserved_memory(&tree, &p.memory, &[], None);
    let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["linux,cma", "secure@5f000000"]);
    let region = |i: usize| match plan.nodes[i].outcome {
        NodeOutcome::Accepted(index) => &plan.regions[index],
        ref other => panic!("{}: {other:?}", plan.nodes[i].name),
    };
    let cma = region(0);
    assert!(cma.dynamic && cma.kind == RegionKind::Cma && cma.linux_cma_default);
    let placed = cma.primary();
    assert_eq!(placed.end - placed.start, 64 << 20);
    assert_eq!(placed.start % (4 << 20), 0, "alignment = 4 MiB");
    assert!(
        0x4000_0000 <= placed.start && placed.end <= 0x6000_0000,
        "alloc-ranges"
    );
    assert_eq!(cma.compatible, ["shared-dma-pool"]);
    let secure = region(1);
    assert_eq!(secure.ranges, vec![0x5f00_0000..0x5f10_0000]);
    assert!(secure.kind == RegionKind::NoMap && !secure.reusable && !secure.dynamic);
    // Reserved memory is RAM: never in the device windows.
    assert!(!p.mmio.iter().any(|w| w.contains(&0x5f00_0000)));
}

// ---- corruption: each defect has its own clear message ----

#[test]
fn bad_magic_is_refused_with_the_value() {
    let mut blob = QEMU_VIRT.to_vec();
    set_be32(&mut blob, 0, 0x1234_5678);
    let err = Platform::parse(&blob, 0).unwrap_err();
    assert_eq!(err, DtError::BadMagic(0x1234_5678));
    assert_eq!(
        err.to_string(),
        "bad magic 0x12345678 (expected 0xd00dfeed)"
    );
}

#[test]
fn truncated_blob_reports_both_sizes() {
    let err = Platform::parse(&QEMU_VIRT[..4096], 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "truncated: header says {} bytes, only 4096 available",
            QEMU_VIRT.len()
        )
    );
    let mut blob = QEMU_VIRT.to_vec();
    set_be32(&mut blob, 4, 1 << 20);
    assert_eq!(
        Platform::parse(&blob, 0).unwrap_err().to_string(),
        format!(
            "truncated: header says 1048576 bytes, only {} available",
            QEMU_VIRT.len()
        )
    );
    assert_eq!(
        Platform::parse(&[], 0).unwrap_err(),
        DtError::TooShort { available: 0 }
    );
    assert_eq!(
        Platform::parse(&QEMU_VIRT[..20], 0).unwrap_err(),
        DtError::TooShort { available: 20 }
    );
}

#[test]
fn header_fields_out_of_range() {
    let total = QEMU_VIRT.len() as u32;
    let with = |at: usize, value: u32| {
        let mut blob = QEMU_VIRT.to_vec();
        set_be32(&mut blob, at, value);
        Platform::parse(&blob, 0).unwrap_err()
    };
    assert_eq!(with(4, 12), DtError::TotalSizeTooSmall(12));
    assert!(matches!(
        with(8, total),
        DtError::BlockOutOfRange {
            block: "structure",
            ..
        }
    ));
    assert!(matches!(
        with(36, total),
        DtError::BlockOutOfRange {
            block: "structure",
            ..
        }
    ));
    assert!(matches!(
        with(12, total - 2),
        DtError::BlockOutOfRange {
            block: "strings",
            ..
        }
    ));
    assert!(matches!(
        with(32, u32::MAX),
        DtError::BlockOutOfRange {
            block: "strings",
            ..
        }
    ));
    assert!(matches!(
        with(16, total + 8),
        DtError::BlockOutOfRange {
            block: "memory reservation",
            ..
        }
    ));
    assert!(matches!(
        with(8, 0x3a),
        DtError::Misaligned {
            block: "structure",
            offset: 0x3a
        }
    ));
    assert_eq!(
        with(20, 15),
        DtError::UnsupportedVersion {
            version: 15,
            last_comp_version: 16
        }
    );
    assert!(with(24, 18).to_string().contains("last_comp_version <= 17"));
    let msg = with(8, total).to_string();
    assert!(msg.starts_with("structure block at offset"), "{msg}");
}

#[test]
fn truncated_struct_block_is_malformed() {
    let mut blob = QEMU_VIRT.to_vec();
    // Cut the structure block to half its size: the walk runs out before FDT_END.
    let half = be32_at(&blob, 36) / 2;
    set_be32(&mut blob, 36, half);
    let err = Platform::parse(&blob, 0).unwrap_err();
    assert!(matches!(err, DtError::Malformed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("malformed structure block at offset"),
        "{err}"
    );
}

#[test]
fn broken_tokens_and_names_are_malformed() {
    let off_struct = be32_at(QEMU_VIRT, 8) as usize;
    // The root's first property (the tree starts with BEGIN_NODE "" then FDT_PROP).
    let first_prop = off_struct + 8;
    assert_eq!(be32_at(QEMU_VIRT, first_prop), 3);
    let with = |at: usize, value: u32| {
        let mut blob = QEMU_VIRT.to_vec();
        set_be32(&mut blob, at, value);
        Platform::parse(&blob, 0).unwrap_err()
    };
    let reason = |e: DtError| match e {
        DtError::Malformed { reason, .. } => reason,
        other => panic!("expected Malformed, got {other:?}"),
    };
    assert_eq!(reason(with(first_prop, 7)), "unknown structure token");
    assert_eq!(
        reason(with(first_prop + 4, 0x10_0000)),
        "property value runs past the structure block"
    );
    assert_eq!(
        reason(with(first_prop + 8, 0xffff)),
        "property name offset outside the strings block"
    );
    assert_eq!(
        reason(with(off_struct, 2)),
        "FDT_END_NODE without an open node"
    );
}

// ---- hand-built trees ----

/// A minimal FDT writer for the cases dtc will not produce.
struct Builder {
    structs: Vec<u8>,
    strings: Vec<u8>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            structs: Vec::new(),
            strings: Vec::new(),
        }
    }
    fn word(&mut self, w: u32) -> &mut Self {
        self.structs.extend_from_slice(&w.to_be_bytes());
        self
    }
    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }
    fn begin(&mut self, name: &str) -> &mut Self {
        self.word(1);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self
    }
    fn end(&mut self) -> &mut Self {
        self.word(2)
    }
    fn nop(&mut self) -> &mut Self {
        self.word(4)
    }
    fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.word(3).word(value.len() as u32).word(offset);
        self.structs.extend_from_slice(value);
        self.pad();
        self
    }
    fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &bytes)
    }
    fn finish(&mut self, version: u32) -> Vec<u8> {
        self.word(9);
        let header_len = 40;
        let rsvmap = [0u8; 16];
        let off_struct = header_len + rsvmap.len();
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut out = Vec::new();
        for w in [
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            40,
            version,
            16,
            0,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            out.extend_from_slice(&u32::to_be_bytes(w));
        }
        out.extend_from_slice(&rsvmap);
        out.extend_from_slice(&self.structs);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A small tree: two /memory nodes with one-cell addresses, a UART under a translating bus.
fn small_tree(b: &mut Builder, nops: bool) -> Vec<u8> {
    b.begin("")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1]);
    if nops {
        b.nop();
    }
    b.begin("memory@80000000")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0x8000_0000, 0x1000_0000])
        .end();
    if nops {
        // What libfdt's fdt_nop_node leaves of a deleted node.
        b.nop().nop().nop();
    }
    b.begin("memory@40000000")
        .cells("reg", &[0x4000_0000, 0x100_0000, 0x5000_0000, 0x100_0000]);
    if nops {
        b.nop();
    }
    b.end();
    b.begin("bus")
        .prop("compatible", b"simple-bus\0")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1]);
    b.cells("ranges", &[0, 0x1c00_0000, 0x10_0000]);
    if nops {
        // Between the properties and the first child: the fdt crate asserts here.
        b.nop();
    }
    b.begin("serial@9000")
        .prop("compatible", b"arm,pl011\0arm,primecell\0")
        .cells("reg", &[0x9000, 0x1000])
        .end();
    b.end();
    b.end().finish(17)
}

#[test]
fn one_cell_addresses_several_reg_entries_and_ranges() {
    let p = Platform::parse(&small_tree(&mut Builder::new(), false), 0).unwrap();
    assert_eq!(
        p.memory,
        vec![
            0x4000_0000..0x4100_0000,
            0x5000_0000..0x5100_0000,
            0x8000_0000..0x9000_0000
        ]
    );
    let uart = p.uart.unwrap();
    assert_eq!(
        (uart.base, uart.size, uart.intid),
        (0x1c00_9000, 0x1000, None)
    );
    assert_eq!(p.mmio, vec![0x1c00_9000..0x1c00_a000]);
    assert_eq!(p.gic, None);
    assert_eq!(p.timer, None);
}

#[test]
fn nops_anywhere_parse_like_the_clean_tree() {
    let clean = Platform::parse(&small_tree(&mut Builder::new(), false), 0).unwrap();
    let blob = small_tree(&mut Builder::new(), true);
    let with_nops = Platform::parse(&blob, 0).unwrap();
    assert_eq!(
        Platform {
            dtb: clean.dtb.clone(),
            ..with_nops
        },
        clean
    );
    assert_eq!(
        Platform::parse(&blob, 0x1000).unwrap().dtb,
        0x1000..0x1000 + blob.len() as u64,
        "dtb is the original blob, not the rewritten copy"
    );
}

#[test]
fn version_16_is_accepted() {
    let mut blob = small_tree(&mut Builder::new(), false);
    set_be32(&mut blob, 20, 16);
    set_be32(&mut blob, 36, 0xdead_beef); // not a v16 field: must be ignored
    let p = Platform::parse(&blob, 0).unwrap();
    assert_eq!(p.memory.len(), 3);
}

#[test]
fn no_memory_is_an_error() {
    let blob = Builder::new()
        .begin("")
        .begin("chosen")
        .end()
        .end()
        .finish(17);
    assert_eq!(Platform::parse(&blob, 0).unwrap_err(), DtError::NoMemory);
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut b = Builder::new();
    b.begin("");
    for _ in 0..80 {
        b.begin("n");
    }
    for _ in 0..80 {
        b.end();
    }
    let blob = b.end().finish(17);
    assert!(matches!(
        Platform::parse(&blob, 0),
        Err(DtError::Malformed {
            reason: "nodes nested too deeply",
            ..
        })
    ));
}

#[test]
fn short_cell_count_property_is_refused() {
    // Every address is written in the root's cells: two bytes of them is no tree at all.
    let blob = Builder::new()
        .begin("")
        .prop("#address-cells", &[0, 1])
        .end()
        .finish(17);
    assert!(matches!(
        Platform::parse(&blob, 0),
        Err(DtError::BadProperty {
            property: "#address-cells",
            ..
        })
    ));
}

#[test]
fn property_after_child_is_refused() {
    let blob = Builder::new()
        .begin("")
        .begin("a")
        .end()
        .cells("x", &[1])
        .end()
        .finish(17);
    assert!(matches!(
        Platform::parse(&blob, 0),
        Err(DtError::Malformed {
            reason: "property after a child node",
            ..
        })
    ));
}

#[test]
fn bad_memory_reg_and_psci_method_are_property_errors() {
    let blob = Builder::new()
        .begin("")
        .begin("memory")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0x4000_0000])
        .end()
        .end()
        .finish(17);
    let err = Platform::parse(&blob, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/memory: bad `reg` property: length is not a whole number of entries"
    );

    let mut b = Builder::new();
    b.begin("")
        .begin("memory")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0, 0x4000_0000, 0x1000])
        .end();
    let blob = b
        .begin("psci")
        .prop("compatible", b"arm,psci-1.0\0")
        .prop("method", b"svc\0")
        .end()
        .end()
        .finish(17);
    assert!(matches!(
        Platform::parse(&blob, 0),
        Err(DtError::BadProperty {
            property: "method",
            ..
        })
    ));
}

#[test]
fn gicv2_and_spi_ppi_decoding() {
    let mut b = Builder::new();
    b.begin("")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[1])
        .cells("interrupt-parent", &[7]);
    b.begin("memory")
        .prop("device_type", b"memory\0")
        .cells("reg", &[0x4000_0000, 0x1000_0000])
        .end();
    b.begin("intc@2c001000")
        .prop("compatible", b"arm,cortex-a15-gic\0")
        .cells("#interrupt-cells", &[3]);
    b.cells("reg", &[0x2c00_1000, 0x1000, 0x2c00_2000, 0x2000])
        .cells("phandle", &[7])
        .end();
    b.begin("timer")
        .prop("compatible", b"arm,armv7-timer\0")
        .cells("interrupts", &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08])
        .end();
    b.begin("uart@1c090000")
        .prop("compatible", b"arm,pl011\0")
        .cells("reg", &[0x1c09_0000, 0x1000])
        .cells("interrupts", &[0, 5, 4])
        .end();
    let p = Platform::parse(&b.end().finish(17), 0).unwrap();
    let gic = p.gic.unwrap();
    assert_eq!(
        (gic.version, gic.distributor, gic.cpu_interface),
        (2, 0x2c00_1000..0x2c00_2000, Some(0x2c00_2000..0x2c00_4000))
    );
    assert_eq!(
        p.timer,
        Some(TimerInfo {
            phys_intid: 30,
            virt_intid: 27,
            secure_phys_intid: Some(29),
            hyp_intid: None
        })
    );
    assert_eq!(p.uart.unwrap().intid, Some(37));
}

// ---- fuzzing: the real blob, mutated and truncated, never panics ----

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_blob_never_panics(
        edits in proptest::collection::vec((0usize..8192, any::<u8>()), 1..24),
        cut in 0usize..9000,
    ) {
        let mut blob = QEMU_VIRT.to_vec();
        for (at, value) in edits {
            let at = at % blob.len();
            blob[at] = value;
        }
        blob.truncate(cut.max(1));
        let _ = Platform::parse(&blob, 0);
    }

    #[test]
    fn structure_word_edits_never_panic(
        edits in proptest::collection::vec((0usize..2048, 0u32..8), 1..6),
    ) {
        // Small token-sized values land on the parser's interesting paths far more often
        // than random bytes do.
        let mut blob = QEMU_VIRT.to_vec();
        let off_struct = be32_at(&blob, 8) as usize;
        let words = be32_at(&blob, 36) as usize / 4;
        for (word, value) in edits {
            set_be32(&mut blob, off_struct + 4 * (word % words), value);
        }
        let _ = Platform::parse(&blob, 0);
    }

    #[test]
    fn header_word_edits_never_panic(field in 1usize..10, value in any::<u32>()) {
        let mut blob = QEMU_VIRT.to_vec();
        set_be32(&mut blob, field * 4, value);
        let _ = Platform::parse(&blob, 0);
    }
}

#[test]
fn broken_reserved_node_is_listed_with_its_problem_and_the_boot_goes_on() {
    let blob = include_bytes!("../testdata/reserved/broken.virt.dtb");
    let tree = DeviceTree::from_blob(blob).unwrap();
    let p =
        Platform::from_tree(&tree, 0x4000_0000).expect("a bad reserved-memory child is not fatal");
    let plan = plan_reserved_memory(&tree, &p.memory, &[], None);
    let short = plan
        .nodes
        .iter()
        .find(|r| r.name == "shortreg@54000000")
        .expect("the broken node is listed");
    assert!(
        matches!(&short.outcome, NodeOutcome::Skipped(problem) if problem.contains("reg")),
        "{short:?}"
    );
    assert!(plan
        .nodes
        .iter()
        .any(|r| matches!(r.outcome, NodeOutcome::Accepted(_))));
}
