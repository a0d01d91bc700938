//! The boot summary's `reserved-memory` block: one line per `/reserved-memory` child as the
//! planner left it (placed regions with their ranges and flags, the others with why they
//! were skipped), then the `cma=` area. What is printed is what was planned, so a region
//! the planner refused can never look reserved.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use super::{NodeOutcome, RegionKind, RegionSource, ReservedMemoryPlan, ReservedRegion};
use crate::util::size::ByteSize;

/// The lines, header first.
pub fn summary(plan: &ReservedMemoryPlan) -> Vec<String> {
    let mut lines = Vec::new();
    if plan.nodes.is_empty() {
        lines.push(String::from("reserved-memory: none"));
    } else {
        lines.push(format!("reserved-memory: {} region(s)", plan.nodes.len()));
    }
    for node in &plan.nodes {
        match &node.outcome {
            NodeOutcome::Accepted(index) => {
                lines.extend(region_lines(&node.name, &plan.regions[*index]));
            }
            NodeOutcome::Disabled => lines.push(format!("  {:<20} [disabled]", node.name)),
            NodeOutcome::BypassedForCmdline => lines.push(format!(
                "  {:<20} skipped: bypassed for the cma= boot argument",
                node.name
            )),
            NodeOutcome::Skipped(problem) => {
                lines.push(format!("  {:<20} skipped: {problem}", node.name));
            }
        }
    }
    for region in plan
        .regions
        .iter()
        .filter(|r| r.source == RegionSource::CommandLine)
    {
        lines.extend(region_lines(&region.name, region));
    }
    lines
}

/// One line per range: `name  start..end  size  compatible [flags]`.
fn region_lines(name: &str, region: &ReservedRegion) -> Vec<String> {
    let mut flags = Vec::new();
    if region.kind == RegionKind::NoMap {
        flags.push("no-map");
    }
    if region.reusable {
        flags.push("reusable");
    }
    if region.linux_cma_default {
        flags.push("linux,cma-default");
    }
    if region.dynamic {
        flags.push("dynamic");
    }
    let compatible = match (&region.source, region.compatible.first()) {
        (RegionSource::CommandLine, _) => "cma=",
        (_, Some(compatible)) => compatible.as_str(),
        (_, None) => "-",
    };
    region
        .ranges
        .iter()
        .map(|range| {
            format!(
                "  {:<20} {:#012x}..{:#012x}  {:<8} {compatible} [{}]",
                name,
                range.start,
                range.end,
                ByteSize(range.end - range.start).to_string(),
                flags.join(" ")
            )
        })
        .collect()
}
