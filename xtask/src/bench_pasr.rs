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
//!
//! Then the vacating pass's cost: the `bench_pasr` image (run just before, under `-icount`)
//! prints a `vacate_cost:` line ([`monolith::pasr::measure::VacateCost`]'s form), which
//! [`parse_vacate_cost`] reads back into one row: instructions per MiB moved by the pass
//! and by a memcpy of the same bytes in the same run, their ratio, and what the pass did.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use monolith::pasr::measure::{VacateCost, VACATE_COST_TAG};
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

/// The `vacate_cost:` line of the `bench_pasr` image's output, every field present once.
fn parse_vacate_cost(output: &str) -> Result<VacateCost> {
    let line = output
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(VACATE_COST_TAG))
        .with_context(|| format!("no `{VACATE_COST_TAG}` line in the bench_pasr output"))?;
    let mut values: [Option<u64>; 7] = [None; 7];
    for word in line.split_whitespace() {
        let (key, value) = word
            .split_once('=')
            .with_context(|| format!("`{word}` is not KEY=VALUE in `{line}`"))?;
        let index = VacateCost::FIELDS
            .iter()
            .position(|f| *f == key)
            .with_context(|| format!("unknown field `{key}` in `{line}`"))?;
        if values[index].is_some() {
            bail!("field `{key}` twice in `{line}`");
        }
        values[index] = Some(
            value
                .parse()
                .with_context(|| format!("`{key}={value}` is not a count"))?,
        );
    }
    let mut v = [0u64; 7];
    for (i, (name, value)) in VacateCost::FIELDS.iter().zip(values).enumerate() {
        v[i] = value.with_context(|| format!("field `{name}` missing from `{line}`"))?;
    }
    let small = |v: u64| u32::try_from(v).context("a unit count past u32");
    Ok(VacateCost {
        pages_moved: v[0],
        units_vacated: small(v[1])?,
        units_masked: small(v[2])?,
        units: small(v[3])?,
        pages_kept: v[4],
        vacate_instructions: v[5],
        memcpy_instructions: v[6],
    })
}

/// The vacating pass's row, in the section's words.
fn vacate_row(cost: &VacateCost) -> Result<String> {
    let (Some(pass), Some(copy), Some(ratio)) = (
        cost.per_mib(cost.vacate_instructions),
        cost.per_mib(cost.memcpy_instructions),
        cost.ratio(),
    ) else {
        bail!("the vacating pass moved nothing: {cost}");
    };
    Ok(format!(
        "| {} | {} | {} of {} | {} | {} | {} | {ratio:.2}x |",
        cost.pages_moved,
        cost.units_vacated,
        cost.units_masked,
        cost.units,
        cost.pages_kept,
        thousands(pass.round() as u64),
        thousands(copy.round() as u64),
    ))
}

/// `1155266` as `1,155,266`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i != 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Prints the PASR section of `cargo xtask bench`; `image` is the `bench_pasr` image's
/// output, when it ran.
pub fn run(tools: &Tools, image: Option<&str>) -> Result<()> {
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
    println!(
        "\nThe vacating pass (tests/bench_pasr.rs under -icount: 384 MiB of anonymous pages, one in 64 kept outside the image's bank; instructions per MiB moved against a memcpy of the same bytes in the same run):"
    );
    println!("| pages moved | banks vacated | banks masked | pages kept | pass, instructions per MiB moved | memcpy, per MiB | ratio |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let image = image.context("the bench_pasr image did not run, so there is no vacating row")?;
    println!("{}", vacate_row(&parse_vacate_cost(image)?)?);
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

    fn sample() -> VacateCost {
        VacateCost {
            pages_moved: 1107,
            units_vacated: 5,
            units_masked: 15,
            units: 16,
            pages_kept: 7000,
            vacate_instructions: 4_995_000,
            memcpy_instructions: 159_400,
        }
    }

    #[test]
    fn the_vacate_line_reads_back_what_the_image_printed() {
        let cost = sample();
        let output = format!("test vacate_cost ... \nvacating pass: ...\n{cost}\nok\n");
        assert_eq!(parse_vacate_cost(&output).unwrap(), cost);
        // 4,995,000 x 256 / 1107 and 159,400 x 256 / 1107; 4,995,000 / 159,400.
        assert_eq!(
            vacate_row(&cost).unwrap(),
            "| 1107 | 5 | 15 of 16 | 7000 | 1,155,122 | 36,862 | 31.34x |"
        );
    }

    #[test]
    fn a_bad_vacate_line_is_an_error_naming_what_is_wrong() {
        let err = |text: &str| parse_vacate_cost(text).unwrap_err().to_string();
        assert!(err("no such line\n").contains("no `vacate_cost:` line"));
        let full = sample().to_string();
        let missing = full.replace(" pages_kept=7000", "");
        assert!(err(&missing).contains("`pages_kept` missing"), "{}", err(&missing));
        assert!(err(&format!("{full} pages_kept=1")).contains("`pages_kept` twice"));
        assert!(err(&format!("{full} bogus=1")).contains("unknown field `bogus`"));
        assert!(err(&full.replace("units=16", "units=sixteen")).contains("not a count"));
        assert!(err(&full.replace("units=16", "units16")).contains("not KEY=VALUE"));
        assert!(err(&full.replace("units=16", "units=99999999999")).contains("past u32"));
        // A pass that moved nothing has no cost per MiB.
        let idle = VacateCost {
            pages_moved: 0,
            ..sample()
        };
        assert!(vacate_row(&idle).unwrap_err().to_string().contains("moved nothing"));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(36871), "36,871");
        assert_eq!(thousands(1155266), "1,155,266");
    }
}
