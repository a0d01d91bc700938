//! `/proc/iomem`: the resource tree Linux would build for this machine.
//!
//! # Theory of operation
//!
//! Linux builds `iomem_resource` in two places we mirror:
//! - arm64 `request_standard_resources()`: one top-level resource per memblock memory
//!   region, "System RAM", or "reserved" for `no-map` memory; inside it "Kernel code"
//!   (`_stext` to the end of read-only data) and "Kernel data" (`_sdata` to `_end`); then
//!   every memblock-reserved range inside RAM as "reserved", split around what is already
//!   there (`reserve_region_with_split`), so reserved pieces fill the gaps between the
//!   kernel resources instead of conflicting with them.
//! - platform-device probing: one resource per `reg` window, named after the node.
//!
//! [`build`] takes those inputs as plain ranges and inserts them with `kernel/resource.c`'s
//! rules: a resource inside an existing one becomes its child, one that contains existing
//! siblings adopts them (`insert_resource`), one that straddles a boundary conflicts and
//! is dropped, as `request_resource` would refuse it. Siblings are kept sorted by start.
//! The output is flat, in tree order with depths, for [`crate::shell::linuxfmt::iomem`].
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use crate::shell::linuxfmt::IoResource;
use crate::util::ranges::{contains, merge, overlaps, subtract_all};

/// Everything `/proc/iomem` is built from; ranges are half-open byte ranges.
#[derive(Clone, Debug, Default)]
pub struct IomemInput {
    pub ram: Vec<Range<u64>>,
    /// `no-map` memory: listed as top-level "reserved" instead of "System RAM".
    pub no_map: Vec<Range<u64>>,
    pub kernel_code: Range<u64>,
    pub kernel_data: Range<u64>,
    /// Memory kept from the page allocator or reserved at boot (DTB, `/memreserve/`,
    /// reserved-memory regions and CMA areas, the image, the trace window).
    pub reserved: Vec<Range<u64>>,
    /// (name, window) of the platform devices.
    pub devices: Vec<(String, Range<u64>)>,
}

/// One resource with its resolved place in the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub start: u64,
    /// Exclusive here; [`flatten`] converts to Linux's inclusive end.
    pub end: u64,
    pub name: String,
    pub children: Vec<Resource>,
}

impl Resource {
    fn new(range: Range<u64>, name: &str) -> Resource {
        Resource {
            start: range.start,
            end: range.end,
            name: String::from(name),
            children: Vec::new(),
        }
    }

    fn range(&self) -> Range<u64> {
        self.start..self.end
    }
}

/// Inserts `new` among `siblings`; `false` if it conflicts (and then nothing changed).
pub fn insert(siblings: &mut Vec<Resource>, mut new: Resource) -> bool {
    if new.start >= new.end {
        return false;
    }
    let range = new.start..new.end;
    for existing in siblings.iter_mut() {
        let inside = contains(&existing.range(), &range);
        let covers = contains(&range, &existing.range());
        if inside && !covers {
            return insert(&mut existing.children, new);
        }
    }
    // Whatever overlaps must now lie entirely inside `new` (adopted) or it is a conflict.
    let overlapping = |r: &Resource| overlaps(&r.range(), &range);
    let straddles = siblings
        .iter()
        .any(|r| overlapping(r) && !contains(&range, &r.range()));
    if straddles {
        return false;
    }
    let (adopted, kept): (Vec<Resource>, Vec<Resource>) = core::mem::take(siblings)
        .into_iter()
        .partition(|r| overlapping(r));
    *siblings = kept;
    for child in adopted {
        insert(&mut new.children, child);
    }
    let at = siblings.partition_point(|r| r.start < new.start);
    siblings.insert(at, new);
    true
}

/// The resource tree for `input` (see the module doc).
pub fn build(input: &IomemInput) -> Vec<Resource> {
    let mut top: Vec<Resource> = Vec::new();
    let no_map = merge(input.no_map.iter().cloned());
    for bank in merge(input.ram.iter().cloned()) {
        for piece in subtract_all(core::slice::from_ref(&bank), &no_map) {
            insert(&mut top, Resource::new(piece, "System RAM"));
        }
        for hole in &no_map {
            let start = hole.start.max(bank.start);
            let end = hole.end.min(bank.end);
            if start < end {
                insert(&mut top, Resource::new(start..end, "reserved"));
            }
        }
    }
    insert(
        &mut top,
        Resource::new(input.kernel_code.clone(), "Kernel code"),
    );
    insert(
        &mut top,
        Resource::new(input.kernel_data.clone(), "Kernel data"),
    );
    let reserved = merge(input.reserved.iter().cloned());
    for ram in top.iter_mut().filter(|r| r.name == "System RAM") {
        let taken: Vec<Range<u64>> = ram.children.iter().map(|c| c.start..c.end).collect();
        for range in &reserved {
            let start = range.start.max(ram.start);
            let end = range.end.min(ram.end);
            if start >= end {
                continue;
            }
            for piece in subtract_all(core::slice::from_ref(&(start..end)), &taken) {
                insert(&mut ram.children, Resource::new(piece, "reserved"));
            }
        }
    }
    for (name, window) in &input.devices {
        insert(&mut top, Resource::new(window.clone(), name));
    }
    top
}

/// Tree order with depths and inclusive ends, ready for `linuxfmt::iomem`.
pub fn flatten(tree: &[Resource]) -> Vec<IoResource<'_>> {
    fn walk<'a>(nodes: &'a [Resource], depth: usize, out: &mut Vec<IoResource<'a>>) {
        for node in nodes {
            out.push(IoResource {
                start: node.start,
                end: node.end - 1,
                name: &node.name,
                depth,
            });
            walk(&node.children, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    walk(tree, 0, &mut out);
    out
}

/// `/proc/iomem` text for `input`.
pub fn render(input: &IomemInput) -> String {
    let tree = build(input);
    crate::shell::linuxfmt::iomem(&flatten(&tree))
}

#[cfg(test)]
// One-element lists of address ranges are the data here (a single RAM bank, a single
// carveout), not a mistaken `collect` of a range.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use alloc::vec;

    fn virt() -> IomemInput {
        IomemInput {
            ram: vec![0x4000_0000..0x8000_0000],
            no_map: vec![],
            kernel_code: 0x4020_0000..0x4024_0000,
            kernel_data: 0x4025_0000..0x4030_0000,
            reserved: vec![
                0x4000_0000..0x4000_9000, // DTB
                0x4010_0000..0x4030_0000, // trace window + image
                0x5000_0000..0x6000_0000, // CMA area
            ],
            devices: vec![
                (String::from("virtio_mmio@a000000"), 0xa00_0000..0xa00_0200),
                (String::from("pl011@9000000"), 0x900_0000..0x900_1000),
            ],
        }
    }

    #[test]
    fn matches_the_arm64_layout() {
        assert_eq!(
            render(&virt()),
            "09000000-09000fff : pl011@9000000\n\
             0a000000-0a0001ff : virtio_mmio@a000000\n\
             40000000-7fffffff : System RAM\n\
             \x20 40000000-40008fff : reserved\n\
             \x20 40100000-401fffff : reserved\n\
             \x20 40200000-4023ffff : Kernel code\n\
             \x20 40240000-4024ffff : reserved\n\
             \x20 40250000-402fffff : Kernel data\n\
             \x20 50000000-5fffffff : reserved\n"
        );
    }

    #[test]
    fn no_map_splits_system_ram() {
        let mut input = virt();
        input.no_map = vec![0x6000_0000..0x6100_0000];
        input.devices.clear();
        let text = render(&input);
        assert!(text.contains("40000000-5fffffff : System RAM\n"), "{text}");
        assert!(text.contains("60000000-60ffffff : reserved\n"), "{text}");
        assert!(text.contains("61000000-7fffffff : System RAM\n"), "{text}");
    }

    #[test]
    fn insert_nests_adopts_and_refuses_conflicts() {
        let mut top = Vec::new();
        assert!(insert(&mut top, Resource::new(0x100..0x200, "a")));
        assert!(insert(&mut top, Resource::new(0x120..0x140, "inside a")));
        assert!(!insert(
            &mut top,
            Resource::new(0x1f0..0x210, "straddles a")
        ));
        assert!(insert(&mut top, Resource::new(0x300..0x310, "b")));
        assert!(insert(&mut top, Resource::new(0x2f0..0x400, "around b")));
        assert!(!insert(&mut top, Resource::new(0x10..0x10, "empty")));
        let flat = flatten(&top);
        let shape: Vec<(&str, usize)> = flat.iter().map(|r| (r.name, r.depth)).collect();
        assert_eq!(
            shape,
            vec![("a", 0), ("inside a", 1), ("around b", 0), ("b", 1)]
        );
    }
}
