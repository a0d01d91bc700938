//! Placement, memblock's way: static ranges checked against RAM, memory in use and every
//! earlier region; dynamic regions (`size`, `alignment`, `alloc-ranges`) placed top-down,
//! or bottom-up in a window that starts at an existing region.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::tree::{Cells, RmemNode};
use super::{show, Planner, PAGEBLOCK_SIZE};
use crate::dt::cells;
use crate::util::ranges::{align_down, align_up, is_aligned, overlaps};
use crate::util::size::format_size;
use crate::util::PAGE_SIZE;

/// A number `cells` cells wide; the caller checked the length (so the fallback is unused).
fn read_cells(bytes: &[u8], cells: usize) -> u64 {
    cells::read_cells(bytes, cells as u32).unwrap_or(0)
}

/// (address, size) pairs of a `reg`-shaped property; `None` unless the length is a
/// non-zero multiple of the pair size.
fn read_pairs(value: &[u8], address_cells: usize, size_cells: usize) -> Option<Vec<(u64, u64)>> {
    if value.is_empty() {
        return None;
    }
    cells::pairs(value, address_cells as u32, size_cells as u32).ok()
}

impl Planner {
    /// Check one static range against RAM, the occupied ranges and earlier regions.
    pub(super) fn check_static(
        &self,
        base: u64,
        size: u64,
        alignment: u64,
        same_node: &[Range<u64>],
    ) -> Result<Range<u64>, String> {
        if size == 0 {
            return Err(String::from("has zero size"));
        }
        let Some(end) = base.checked_add(size) else {
            return Err(format!(
                "{base:#x} + {size:#x} wraps past the end of the address space"
            ));
        };
        let range = base..end;
        if size > self.ram_total {
            return Err(format!(
                "{} ({}) is bigger than all RAM ({})",
                show(&range),
                format_size(size),
                format_size(self.ram_total)
            ));
        }
        if !is_aligned(base | size, alignment) {
            return Err(if alignment == PAGEBLOCK_SIZE {
                format!(
                    "{} is a reusable CMA region whose base or size is not 2 MiB (pageblock) aligned; refused as Linux's rmem_cma_setup refuses it",
                    show(&range)
                )
            } else {
                format!(
                    "{} is not aligned to {} pages",
                    show(&range),
                    format_size(alignment)
                )
            });
        }
        if !self.in_ram(&range) {
            return Err(format!("{} lies outside RAM", show(&range)));
        }
        if let Some(used) = self.occupied.iter().find(|o| overlaps(o, &range)) {
            return Err(format!(
                "{} overlaps memory already in use {} (firmware image, DTB)",
                show(&range),
                show(used)
            ));
        }
        for region in &self.regions {
            if let Some(other) = region.ranges.iter().find(|r| overlaps(r, &range)) {
                return Err(format!(
                    "{} overlaps region {} {}",
                    show(&range),
                    region.name,
                    show(other)
                ));
            }
        }
        if let Some(other) = same_node.iter().find(|r| overlaps(r, &range)) {
            return Err(format!(
                "{} overlaps {} of the same node",
                show(&range),
                show(other)
            ));
        }
        Ok(range)
    }

    pub(super) fn accept_static(
        &mut self,
        rmem: &RmemNode<'_, '_>,
        reg: &[u8],
        cells: Cells,
    ) -> Option<usize> {
        let pair_len = (cells.address + cells.size) * 4;
        let Some(pairs) = read_pairs(reg, cells.address, cells.size) else {
            self.note(format!(
                "reserved-memory/{}: reg is {} bytes, not a non-zero multiple of {pair_len} (#address-cells {} + #size-cells {}); skipped",
                rmem.name,
                reg.len(),
                cells.address,
                cells.size
            ));
            return None;
        };
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for (index, (base, size)) in pairs.iter().copied().enumerate() {
            // Only the first entry becomes the CMA area (of_address_to_resource(node, 0)).
            let alignment = if rmem.is_cma() && index == 0 {
                PAGEBLOCK_SIZE
            } else {
                PAGE_SIZE
            };
            match self.check_static(base, size, alignment, &ranges) {
                Ok(range) => ranges.push(range),
                Err(problem) => {
                    let entry = if pairs.len() > 1 {
                        format!(" reg entry {index}")
                    } else {
                        String::new()
                    };
                    if rmem.is_cma() && index == 0 {
                        self.note(format!(
                            "reserved-memory/{}{entry}: {problem}; skipped",
                            rmem.name
                        ));
                        return None;
                    }
                    let consequence = if pairs.len() > 1 {
                        "entry skipped"
                    } else {
                        "skipped"
                    };
                    self.note(format!(
                        "reserved-memory/{}{entry}: {problem}; {consequence}",
                        rmem.name
                    ));
                }
            }
        }
        if ranges.is_empty() {
            return None;
        }
        if rmem.is_cma() && ranges.len() > 1 {
            self.note(format!(
                "reserved-memory/{}: only the first reg entry becomes the CMA area; the other {} stay reserved, as in Linux",
                rmem.name,
                ranges.len() - 1
            ));
        }
        self.regions.push(rmem.region(ranges, false));
        Some(self.regions.len() - 1)
    }

    /// `__reserved_mem_alloc_size`.
    pub(super) fn place_dynamic(&mut self, rmem: &RmemNode<'_, '_>, cells: Cells) -> Option<usize> {
        let name = rmem.name;
        let node = rmem.node;
        let refuse = |planner: &mut Planner, problem: String| {
            planner.note(format!("reserved-memory/{name}: {problem}; skipped"));
            None
        };
        let size_bytes = node.property("size").unwrap_or(&[]);
        if size_bytes.len() != cells.size * 4 {
            let problem = format!(
                "size is {} bytes, expected {} (#size-cells {})",
                size_bytes.len(),
                cells.size * 4,
                cells.size
            );
            return refuse(self, problem);
        }
        let size = read_cells(size_bytes, cells.size);
        let mut alignment = PAGE_SIZE;
        if let Some(value) = node.property("alignment") {
            if value.len() != cells.address * 4 {
                let problem = format!(
                    "alignment is {} bytes, expected {} (#address-cells {})",
                    value.len(),
                    cells.address * 4,
                    cells.address
                );
                return refuse(self, problem);
            }
            let asked = read_cells(value, cells.address);
            if asked != 0 && !asked.is_power_of_two() {
                return refuse(self, format!("alignment {asked:#x} is not a power of two"));
            }
            alignment = alignment.max(asked);
        }
        let windows = match node.property("alloc-ranges") {
            None => None,
            Some(value) => match read_pairs(value, cells.address, cells.size) {
                Some(pairs) => Some(pairs),
                None => {
                    let problem = format!(
                        "alloc-ranges is {} bytes, not a non-zero multiple of {}",
                        value.len(),
                        (cells.address + cells.size) * 4
                    );
                    return refuse(self, problem);
                }
            },
        };
        if size == 0 {
            return refuse(self, String::from("has zero size"));
        }
        if size > self.ram_total {
            let problem = format!(
                "size {} is bigger than all RAM ({})",
                format_size(size),
                format_size(self.ram_total)
            );
            return refuse(self, problem);
        }
        if rmem.is_cma() {
            if !is_aligned(size, PAGEBLOCK_SIZE) {
                let problem = format!(
                    "size {} of a reusable CMA region is not a multiple of 2 MiB (pageblock); refused as Linux's rmem_cma_setup refuses it",
                    format_size(size)
                );
                return refuse(self, problem);
            }
            alignment = alignment.max(PAGEBLOCK_SIZE);
        } else if !is_aligned(size, PAGE_SIZE) {
            return refuse(
                self,
                format!("size {size:#x} is not a whole number of pages"),
            );
        }

        let busy = self.busy();
        let placed = match &windows {
            None => self.find_free(0..u64::MAX, size, alignment, false, &busy),
            Some(pairs) => pairs.iter().find_map(|&(start, length)| {
                let window = start..start.saturating_add(length);
                let bottom_up = self.prefers_bottom_up(&window);
                self.find_free(window, size, alignment, bottom_up, &busy)
            }),
        };
        let Some(base) = placed else {
            let problem = match &windows {
                None => format!(
                    "no free {}-aligned room of {} left in RAM",
                    format_size(alignment),
                    format_size(size)
                ),
                Some(pairs) => {
                    let shown: Vec<String> = pairs
                        .iter()
                        .map(|&(s, l)| show(&(s..s.saturating_add(l))))
                        .collect();
                    format!(
                        "{} ({}-aligned) does not fit in its alloc-ranges {} (free RAM there is too small or taken)",
                        format_size(size),
                        format_size(alignment),
                        shown.join(", ")
                    )
                }
            };
            return refuse(self, problem);
        };
        self.regions
            .push(rmem.region(alloc::vec![base..base + size], true));
        Some(self.regions.len() - 1)
    }

    /// `__reserved_mem_alloc_in_range`: grow next to an existing region rather than leave a
    /// hole. A window whose start touches a region and whose end does not fills bottom-up.
    pub(super) fn prefers_bottom_up(&self, window: &Range<u64>) -> bool {
        let touches = |at: u64| {
            self.regions
                .iter()
                .flat_map(|r| r.ranges.iter())
                .any(|r| r.start <= at && at <= r.end)
        };
        let bottom_up = touches(window.start);
        let top_down = touches(window.end);
        bottom_up && !top_down
    }

    /// memblock's search: the highest (or lowest) `align`-aligned `size` bytes of RAM inside
    /// `window` that avoid `busy`.
    pub(super) fn find_free(
        &self,
        window: Range<u64>,
        size: u64,
        align: u64,
        bottom_up: bool,
        busy: &[Range<u64>],
    ) -> Option<u64> {
        let mut free = Vec::new();
        for bank in &self.ram {
            let start = bank.start.max(window.start);
            let end = bank.end.min(window.end);
            if start >= end {
                continue;
            }
            let mut cursor = start;
            for taken in busy {
                if taken.end <= cursor {
                    continue;
                }
                if taken.start >= end {
                    break;
                }
                if taken.start > cursor {
                    free.push(cursor..taken.start);
                }
                cursor = cursor.max(taken.end);
            }
            if cursor < end {
                free.push(cursor..end);
            }
        }
        let fits = |candidate: u64, hole: &Range<u64>| {
            candidate >= hole.start && candidate.checked_add(size).is_some_and(|e| e <= hole.end)
        };
        if bottom_up {
            free.iter()
                .find_map(|hole| align_up(hole.start, align).filter(|c| fits(*c, hole)))
        } else {
            free.iter().rev().find_map(|hole| {
                let candidate = align_down(hole.end.checked_sub(size)?, align);
                fits(candidate, hole).then_some(candidate)
            })
        }
    }
}
