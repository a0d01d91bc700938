//! `cargo xtask bench`'s PASR figures: modeled self-refresh power saved against no PASR,
//! with memory a quarter, half and three quarters in use, for our policy (steering and
//! vacating) and for the 2012 rule, on the same workload in the same run.
//!
//! Theory of operation
//! -------------------
//! Each cell is one boot of `virt-pasr` (1 GiB as 2 dies x 8 banks, the controller model
//! beside QEMU) with `monolith.pasr=steering` or `monolith.pasr=2012`: the anonymous
//! workload grows to the share of RAM asked (`mem grow`, every page patterned), `suspend 1`
//! vacates (our policy only) and masks, and the report's `masked` units and the model's
//! counters are read back; `mem verify` must still find every page intact. The power saved
//! is `1 - P(masks) / P(none)` from the one power model (`monolith::pasr::power`), at 45 C
//! (the model's default temperature, what the counters measured) and at 85 C (the
//! datasheet's other column), where refresh is a larger part of the current.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use monolith::pasr::power;
use regex::Regex;

use crate::build::{self, Profile};
use crate::expect::Console;
use crate::qemu::{self, Boot};
use crate::run_options::RunOptions;
use crate::setup::Tools;

const PROMPT: &str = "monolith> ";
/// The board's RAM in pages, and its units.
const RAM_PAGES: u64 = (1 << 30) / 4096;
const DIES: usize = 2;
const UNITS_PER_DIE: u32 = 8;
/// Shares of RAM in use, in percent.
const SHARES: [u64; 3] = [25, 50, 75];

/// One cell: what a suspend masked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cell {
    masks: [u8; DIES],
    masked: u32,
    migrated: u64,
}

/// `masks: MR16 die0=0xec die1=0xff` into the per-die masks.
fn parse_masks(report: &str) -> Option<[u8; DIES]> {
    let re = Regex::new(r"(?m)^masks: MR1[67] die0=0x([0-9a-f]+) die1=0x([0-9a-f]+)").ok()?;
    let c = re.captures(report)?;
    Some([
        u8::from_str_radix(&c[1], 16).ok()?,
        u8::from_str_radix(&c[2], 16).ok()?,
    ])
}

fn number(report: &str, key: &str) -> Option<u64> {
    let re = Regex::new(&format!(r"(?m)^{key}: (\d+)")).ok()?;
    re.captures(report)?[1].parse().ok()
}

/// Percent of self-refresh power saved by `masks` at `temperature_c`.
fn saving_percent(masks: &[u8; DIES], temperature_c: i32) -> f64 {
    let now = power::self_refresh_nw(UNITS_PER_DIE, masks, temperature_c) as f64;
    let full = power::self_refresh_nw(UNITS_PER_DIE, &[0; DIES], temperature_c) as f64;
    100.0 * (1.0 - now / full)
}

fn cell(tools: &Tools, kernel: &Path, policy: &str, share: u64) -> Result<Cell> {
    let options = RunOptions::from_words(&[
        "--board".into(),
        "virt-pasr".into(),
        "--append".into(),
        format!("monolith.pasr={policy}"),
    ])?;
    let boot = Boot::resolve(&options, tools)?;
    let launch = boot.launch(kernel, qemu::Console::Pipes, false)?;
    let _beside = launch.beside;
    let mut console = Console::spawn(launch.command).map_err(|e| anyhow::anyhow!("{e}"))?;
    console
        .expect(&regex::escape(PROMPT), Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut run = |line: &str, timeout: u64| -> Result<String> {
        console
            .send_line(line)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        console
            .expect(&regex::escape(PROMPT), Duration::from_secs(timeout))
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    run("mem start", 10)?;
    let pages = RAM_PAGES * share / 100;
    let grown = run(&format!("mem grow {pages}"), 300)?;
    if !grown.contains(&format!("grew by {pages} pages")) {
        bail!("{policy} at {share}%: the workload did not grow: {grown}");
    }
    let report = run("suspend 1", 300)?;
    let verified = run("mem verify", 300)?;
    if !verified.contains("all intact") {
        bail!("{policy} at {share}%: pages lost after suspend: {verified}");
    }
    let masks = parse_masks(&report).with_context(|| format!("no masks in: {report}"))?;
    Ok(Cell {
        masks,
        masked: masks.iter().map(|m| m.count_ones()).sum(),
        migrated: number(&report, "pages_migrated").unwrap_or(0),
    })
}

/// Prints the PASR section of `cargo xtask bench`.
pub fn run(tools: &Tools) -> Result<()> {
    println!(
        "\n== PASR (board virt-pasr: 1 GiB as 2 dies x 8 banks; anonymous workload, `suspend 1`)"
    );
    let firmware = build::firmware(tools, Profile::Release)?;
    println!("| in use | policy | banks masked | pages migrated | saved at 45 C | saved at 85 C |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for share in SHARES {
        for (policy, name) in [
            ("steering", "ours (steering + vacating)"),
            ("2012", "2012 rule"),
        ] {
            let c = cell(tools, &firmware.elf, policy, share)?;
            println!(
                "| {share}% | {name} | {} of 16 | {} | {:.1}% | {:.1}% |",
                c.masked,
                c.migrated,
                saving_percent(&c.masks, 45),
                saving_percent(&c.masks, 85)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_savings_come_from_the_report_and_the_model() {
        let report =
            "masked: 13 of 16 banks (...)\nmasks: MR16 die0=0xec die1=0xff\npages_migrated: 12\n";
        assert_eq!(parse_masks(report), Some([0xec, 0xff]));
        assert_eq!(number(report, "pages_migrated"), Some(12));
        assert_eq!(saving_percent(&[0, 0], 45), 0.0);
        // Everything masked at 85 C: 1 - 1710/3614 (the model's figures).
        let all = saving_percent(&[0xff, 0xff], 85);
        assert!((all - 52.68).abs() < 0.05, "{all}");
        assert!(saving_percent(&[0xff, 0xff], 45) < all);
    }
}
