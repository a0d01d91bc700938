//! Host tests: both board shapes from real trees, every refusal, and the address mapping
//! checked against a byte-by-byte reference.

use super::*;
use crate::util::size::MIB;
use alloc::vec;
use vm_fdt::FdtWriter;

const MAX_BLOCK: u64 = 4 * MIB;

struct Binding<'a> {
    reg: &'a [u64],
    densities: &'a [u32],
    unit: &'a str,
    units_per_die: Option<u32>,
    interleave: Option<u32>,
    controller: bool,
}

const PLAIN: Binding<'static> = Binding {
    reg: &[0x4000_0000, 0x4000_0000],
    densities: &[4096, 4096],
    unit: "bank",
    units_per_die: Some(8),
    interleave: None,
    controller: true,
};

fn blob(b: &Binding<'_>) -> Vec<u8> {
    let mut f = FdtWriter::new().unwrap();
    let root = f.begin_node("").unwrap();
    f.property_u32("#address-cells", 2).unwrap();
    f.property_u32("#size-cells", 2).unwrap();
    let ch = f.begin_node("lpddr-channel0").unwrap();
    f.property_string("compatible", "jedec,lpddr-channel")
        .unwrap();
    f.property_u32("#address-cells", 1).unwrap();
    f.property_u32("#size-cells", 0).unwrap();
    for (i, density) in b.densities.iter().enumerate() {
        let rank = f.begin_node(&alloc::format!("rank@{i}")).unwrap();
        f.property_string("compatible", "jedec,lpddr4").unwrap();
        f.property_u32("reg", i as u32).unwrap();
        f.property_u32("density", *density).unwrap();
        f.property_u32("io-width", 16).unwrap();
        f.property_u32("phandle", 10 + i as u32).unwrap();
        f.end_node(rank).unwrap();
    }
    f.end_node(ch).unwrap();
    let ctrl = f.begin_node("virtio_mmio@a003a00").unwrap();
    f.property_string("compatible", "virtio,mmio").unwrap();
    f.property_u32("phandle", 20).unwrap();
    f.end_node(ctrl).unwrap();
    let dram = f.begin_node("dram@40000000").unwrap();
    f.property_string("compatible", COMPATIBLE).unwrap();
    f.property_array_u64("reg", b.reg).unwrap();
    let phandles: Vec<u32> = (0..b.densities.len() as u32).map(|i| 10 + i).collect();
    f.property_array_u32("monolith,dies", &phandles).unwrap();
    f.property_string("monolith,pasr-unit", b.unit).unwrap();
    if let Some(n) = b.units_per_die {
        f.property_u32("monolith,units-per-die", n).unwrap();
    }
    if let Some(g) = b.interleave {
        f.property_u32("monolith,interleave-bytes", g).unwrap();
    }
    if b.controller {
        f.property_u32("monolith,controller", 20).unwrap();
    }
    f.end_node(dram).unwrap();
    f.end_node(root).unwrap();
    f.finish().unwrap()
}

fn parse(b: &Binding<'_>) -> Result<Option<Geometry>, GeometryError> {
    let bytes = blob(b);
    let tree = DeviceTree::from_blob(&bytes).unwrap();
    Geometry::from_tree(&tree, MAX_BLOCK)
}

fn unit(die: u8, index: u8) -> Unit {
    Unit { die, index }
}

#[test]
fn plain_board_two_dies_of_eight_banks() {
    let g = parse(&PLAIN).unwrap().unwrap();
    assert_eq!(g.window(), 0x4000_0000..0x8000_0000);
    assert_eq!(
        (g.dies(), g.units_per_die(), g.kind()),
        (2, 8, UnitKind::Bank)
    );
    assert_eq!(g.unit_bytes(), 64 * MIB);
    assert_eq!((g.span_bytes(), g.nr_spans()), (64 * MIB, 16));
    assert!(g.controller().is_some());
    // Die 1 starts half way; bank 3 of die 1 is span 11.
    assert_eq!(g.unit_of(0x6000_0000), Some(unit(1, 0)));
    assert_eq!(g.span_of_unit(unit(1, 3)), 11);
    let extents: Vec<_> = g.unit_extents(unit(1, 3)).collect();
    assert_eq!(extents, vec![0x6c00_0000..0x7000_0000]);
    assert_eq!(g.partners(unit(1, 3)).count(), 0);
    assert_eq!(g.units().count(), 16);
}

#[test]
fn interleaved_board_pairs_each_bank_with_the_other_die() {
    let g = parse(&Binding {
        interleave: Some(4096),
        ..PLAIN
    })
    .unwrap()
    .unwrap();
    assert_eq!((g.span_bytes(), g.nr_spans()), (128 * MIB, 8));
    assert_eq!(g.unit_of(0x4000_0000), Some(unit(0, 0)));
    assert_eq!(g.unit_of(0x4000_1000), Some(unit(1, 0)));
    assert_eq!(g.unit_of(0x4800_0000), Some(unit(0, 1)));
    assert_eq!(g.partners(unit(0, 5)).collect::<Vec<_>>(), vec![unit(1, 5)]);
    assert_eq!(
        g.units_in_span(5).collect::<Vec<_>>(),
        vec![unit(0, 5), unit(1, 5)]
    );
    let extents: Vec<_> = g.unit_extents(unit(1, 0)).take(2).collect();
    assert_eq!(
        extents,
        vec![0x4000_1000..0x4000_2000, 0x4000_3000..0x4000_4000]
    );
    assert_eq!(g.unit_extents(unit(1, 0)).count() as u64, 64 * MIB / 4096);
    // A 4 MiB block gives each die half its bytes.
    let block = 0x4040_0000..0x4080_0000;
    assert_eq!(g.unit_bytes_in(unit(0, 0), block.clone()), 2 * MIB);
    assert_eq!(g.unit_bytes_in(unit(1, 0), block.clone()), 2 * MIB);
    assert_eq!(g.unit_bytes_in(unit(0, 1), block), 0);
}

#[test]
fn every_byte_belongs_to_the_unit_whose_extents_hold_it() {
    // A small geometry (4 KiB granules, 2 dies of 4 units of 32 KiB, spans of 64 KiB),
    // checked byte granule by granule against the extents and the byte counts.
    for interleave in [None, Some(4096)] {
        let g = Geometry::new(
            0x10_0000,
            2,
            128 * 1024,
            4,
            UnitKind::Segment,
            interleave,
            4096,
        )
        .unwrap();
        let mut owner = Vec::new();
        for at in g.window().step_by(4096) {
            owner.push(g.unit_of(at).unwrap());
        }
        for u in g.units().collect::<Vec<_>>() {
            let mut held = 0;
            for e in g.unit_extents(u) {
                for at in e.clone().step_by(4096) {
                    assert_eq!(g.unit_of(at), Some(u), "{interleave:?} {at:#x}");
                }
                held += e.end - e.start;
            }
            assert_eq!(held, g.unit_bytes());
            let counted = owner.iter().filter(|o| **o == u).count() as u64 * 4096;
            assert_eq!(counted, g.unit_bytes());
            // Ragged ranges: every range's bytes add up across units.
            for (lo, hi) in [
                (0x10_0800, 0x11_3000),
                (0x10_0000, 0x12_0000),
                (0x11_1000, 0x11_1800),
            ] {
                let by_units: u64 = g.units().map(|v| g.unit_bytes_in(v, lo..hi)).sum();
                assert_eq!(by_units, hi - lo);
            }
            assert!(g.units_in_span(g.span_of_unit(u)).any(|v| v == u));
        }
    }
}

#[test]
fn no_node_is_no_geometry() {
    let mut f = FdtWriter::new().unwrap();
    let root = f.begin_node("").unwrap();
    f.end_node(root).unwrap();
    let bytes = f.finish().unwrap();
    let tree = DeviceTree::from_blob(&bytes).unwrap();
    assert_eq!(Geometry::from_tree(&tree, MAX_BLOCK), Ok(None));
}

#[test]
fn every_bad_binding_is_refused_with_its_reason() {
    let cases: [(Binding<'_>, GeometryError); 9] = [
        (
            Binding {
                reg: &[0x4000_0000, 0x2000_0000, 0x6000_0000, 0x2000_0000],
                ..PLAIN
            },
            GeometryError::Reg,
        ),
        (
            Binding {
                densities: &[],
                ..PLAIN
            },
            GeometryError::Dies,
        ),
        (
            Binding {
                densities: &[4096, 2048],
                ..PLAIN
            },
            GeometryError::UnequalDies,
        ),
        (
            Binding {
                densities: &[2048, 2048],
                ..PLAIN
            },
            GeometryError::SizeMismatch {
                dies_bytes: 0x2000_0000,
                window_bytes: 0x4000_0000,
            },
        ),
        (
            Binding {
                unit: "rank",
                ..PLAIN
            },
            GeometryError::UnitKind,
        ),
        (
            Binding {
                units_per_die: Some(9),
                ..PLAIN
            },
            GeometryError::UnitsPerDie,
        ),
        (
            Binding {
                units_per_die: None,
                ..PLAIN
            },
            GeometryError::UnitsPerDie,
        ),
        (
            Binding {
                interleave: Some(3000),
                ..PLAIN
            },
            GeometryError::Interleave,
        ),
        (
            Binding {
                reg: &[0x4100_0000, 0x4000_0000],
                ..PLAIN
            },
            GeometryError::BaseAlignment,
        ),
    ];
    for (binding, expected) in cases {
        assert_eq!(parse(&binding), Err(expected));
        assert!(!expected.reason().is_empty());
    }
    // Units smaller than the allocator's largest block cannot be counted per block.
    assert_eq!(
        Geometry::new(0, 1, 16 * MIB, 8, UnitKind::Bank, None, MAX_BLOCK),
        Err(GeometryError::SpanAlignment {
            span_bytes: 2 * MIB,
            block_bytes: MAX_BLOCK
        })
    );
}

#[test]
fn a_disabled_node_is_ignored_and_two_nodes_are_refused() {
    let bytes = blob(&PLAIN);
    let tree = DeviceTree::from_blob(&bytes).unwrap();
    assert!(Geometry::from_tree(&tree, MAX_BLOCK).unwrap().is_some());
    let mut f = FdtWriter::new().unwrap();
    let root = f.begin_node("").unwrap();
    f.property_u32("#address-cells", 2).unwrap();
    f.property_u32("#size-cells", 2).unwrap();
    for at in [0x4000_0000u64, 0x8000_0000] {
        let n = f.begin_node(&alloc::format!("dram@{at:x}")).unwrap();
        f.property_string("compatible", COMPATIBLE).unwrap();
        f.property_array_u64("reg", &[at, 0x4000_0000]).unwrap();
        f.end_node(n).unwrap();
    }
    let off = f.begin_node("dram@c0000000").unwrap();
    f.property_string("compatible", COMPATIBLE).unwrap();
    f.property_string("status", "disabled").unwrap();
    f.end_node(off).unwrap();
    f.end_node(root).unwrap();
    let bytes = f.finish().unwrap();
    let tree = DeviceTree::from_blob(&bytes).unwrap();
    assert_eq!(
        Geometry::from_tree(&tree, MAX_BLOCK),
        Err(GeometryError::SeveralNodes)
    );
}
