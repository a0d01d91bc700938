//! The `cma=` boot argument: vetted against RAM, then placed after every tree region as
//! arm64's `dma_contiguous_reserve` does.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{
    show, Planner, RegionKind, RegionSource, ReservedRegion, CMDLINE_CMA_NAME, DMA32_LIMIT,
    PAGEBLOCK_SIZE,
};
use crate::dt::bootargs::CmaRequest;
use crate::util::ranges::{align_down, align_up, is_aligned, overlaps};
use crate::util::size::format_size;

impl Planner {
    /// A `cma=` bigger than RAM cannot be honoured; treat it as absent so the tree's default
    /// area stands. `cma=0` is kept: it means "no default area".
    pub(super) fn vet_cma_request(&mut self, request: Option<CmaRequest>) -> Option<CmaRequest> {
        let request = request?;
        if request.size > self.ram_total {
            self.note(format!(
                "cma={}: bigger than all RAM ({}); ignored",
                format_size(request.size),
                format_size(self.ram_total)
            ));
            return None;
        }
        if request.size == 0 {
            self.note(String::from(
                "cma=0: no default CMA area (the tree's linux,cma-default region is bypassed too)",
            ));
        }
        Some(request)
    }
    /// `dma_contiguous_reserve` + `cma_declare_contiguous_nid` for the `cma=` area.
    pub(super) fn place_cmdline_area(&mut self, request: CmaRequest) {
        if request.size == 0 {
            return;
        }
        let align = PAGEBLOCK_SIZE;
        let shown = format!("cma={}", format_size(request.size));
        let fixed = request.is_fixed();
        if fixed && !is_aligned(request.base, align) {
            self.note(format!(
                "{shown}@{:#x}: the start must be 2 MiB aligned; no default CMA area",
                request.base
            ));
            return;
        }
        let (Some(base), Some(size)) =
            (align_up(request.base, align), align_up(request.size, align))
        else {
            self.note(format!(
                "{shown}: start or size overflows when aligned; no default CMA area"
            ));
            return;
        };
        if size != request.size {
            self.note(format!(
                "{shown}: size rounded up to {} (whole pageblocks), as Linux does",
                format_size(size)
            ));
        }
        // min_not_zero(limit_cmdline, arm64_dma_phys_limit), then aligned down.
        let dma_limit = match self.ram.first() {
            Some(first) if first.start < DMA32_LIMIT => DMA32_LIMIT.min(self.ram_end),
            _ => 0,
        };
        let limit = match (request.limit, dma_limit) {
            (0, l) | (l, 0) => l,
            (a, b) => a.min(b),
        };
        let mut limit = align_down(limit, align);
        if limit == 0 || limit > self.ram_end {
            limit = self.ram_end;
        }
        let fits_below_limit = base.checked_add(size).is_some_and(|end| end <= limit);
        if !fits_below_limit {
            self.note(format!(
                "{shown}: {} at {base:#x} does not fit below {limit:#x} (Linux rounds the size up and the end down to 2 MiB); no default CMA area",
                format_size(size)
            ));
            return;
        }
        let busy = self.busy();
        let placed = if fixed {
            let range = base..base + size;
            if !self.in_ram(&range) {
                self.note(format!(
                    "{shown}: {} lies outside RAM; no default CMA area",
                    show(&range)
                ));
                return;
            }
            if busy.iter().any(|b| overlaps(b, &range)) {
                self.note(format!(
                    "{shown}: {} is already in use; no default CMA area",
                    show(&range)
                ));
                return;
            }
            Some(base)
        } else {
            self.find_free(base..limit, size, align, false, &busy)
        };
        let Some(base) = placed else {
            self.note(format!(
                "{shown}: no free 2 MiB-aligned room of {} in {}; no default CMA area",
                format_size(size),
                show(&(base..limit))
            ));
            return;
        };
        self.regions.push(ReservedRegion {
            name: String::from(CMDLINE_CMA_NAME),
            source: RegionSource::CommandLine,
            ranges: alloc::vec![base..base + size],
            kind: RegionKind::Cma,
            dynamic: true,
            reusable: true,
            linux_cma_default: true,
            cma_fit: None,
            phandle: None,
            compatible: Vec::new(),
        });
    }
}
