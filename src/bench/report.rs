//! What the in-guest benchmarks measured, and its printed form: the latency table and the
//! churn success table. Pure data and formatting, so it builds and is tested on the host.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt::Write;

/// min / median / max of a set of counter deltas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

/// `min/median/max`, as every report prints a set of samples.
impl core::fmt::Display for Stats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}/{}", self.min, self.median, self.max)
    }
}

impl Stats {
    pub fn of(samples: &mut [u64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        Stats {
            min: samples[0],
            median: samples[samples.len() / 2],
            max: samples[samples.len() - 1],
        }
    }
}

/// One size of the latency table, in counter ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyRow {
    pub pages: usize,
    pub memcpy: Stats,
    pub idle: Stats,
    pub full: Stats,
    /// The area full of clean page cache: reclaimed (dropped), nothing copied.
    pub clean_cache: Stats,
    /// Pages migrated per allocation in the full case (median trial).
    pub migrated_per_alloc: u64,
    pub failures: usize,
}

/// `x / base` with two decimals, `-` when there is no base: every report's ratio column.
pub fn ratio(x: u64, base: u64) -> String {
    if base == 0 {
        String::from("-")
    } else {
        format!("{:.2}", x as f64 / base as f64)
    }
}

/// The latency table as printable text.
pub fn format_latency(area: &str, rows: &[LatencyRow], trials: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cma_alloc latency, area '{area}', {trials} trials per size; ticks of CNTVCT (min/median/max); ratio = cma_alloc median / memcpy median"
    );
    let _ = writeln!(
        out,
        "{:>6} {:>22} {:>22} {:>7} {:>22} {:>7} {:>9} {:>22} {:>7} {:>5}",
        "pages",
        "memcpy",
        "idle",
        "ratio",
        "full of anon",
        "ratio",
        "migr/alloc",
        "full of clean cache",
        "ratio",
        "fail"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>6} {:>22} {:>22} {:>7} {:>22} {:>7} {:>9} {:>22} {:>7} {:>5}",
            r.pages,
            r.memcpy.to_string(),
            r.idle.to_string(),
            ratio(r.idle.median, r.memcpy.median),
            r.full.to_string(),
            ratio(r.full.median, r.memcpy.median),
            r.migrated_per_alloc,
            r.clean_cache.to_string(),
            ratio(r.clean_cache.median, r.memcpy.median),
            r.failures
        );
    }
    out
}

/// How the churn loop asks for its large blocks, and where it pins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChurnMode {
    /// `cma_alloc` from the area.
    #[default]
    Cma,
    /// `cma_alloc` from the area, with pins on pages inside CMA too: long-term pins (they
    /// migrate the page out first) and short-term I/O pins (the page stays, unmovable
    /// until the I/O is done), next to the pins outside CMA every method has.
    CmaPinsInCma,
    /// `alloc_pages(order, Movable without CMA)`: the buddy alone, no migration.
    BuddyHighOrder,
    /// `alloc_contig_range` over Movable pageblocks outside CMA: migration without CMA.
    ContigMovable,
}

impl ChurnMode {
    /// The method column of the table.
    pub const fn label(self) -> &'static str {
        match self {
            ChurnMode::Cma => "cma_alloc",
            ChurnMode::CmaPinsInCma => "cma_alloc, pins in CMA",
            ChurnMode::BuddyHighOrder => "buddy alloc_pages",
            ChurnMode::ContigMovable => "contig over Movable",
        }
    }

    /// Whether the large blocks come from `cma_alloc`.
    pub const fn uses_cma(self) -> bool {
        matches!(self, ChurnMode::Cma | ChurnMode::CmaPinsInCma)
    }

    /// Whether pages inside CMA are pinned too.
    pub const fn pins_in_cma(self) -> bool {
        matches!(self, ChurnMode::CmaPinsInCma)
    }
}

/// Outcome of one churn scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnResult {
    pub mode: ChurnMode,
    pub label: String,
    pub attempts: usize,
    pub successes: usize,
    /// Failures although free + movable memory in the candidate memory sufficed.
    pub avoidable_failures: usize,
    /// Long-lived unmovable allocations made during the run (kernel data + DMA pins).
    pub pins_taken: usize,
    /// Non-CMA pageblocks holding at least one unmovable or pinned frame at the end of the
    /// run, out of all non-CMA pageblocks (how far the pins spread).
    pub polluted_pageblocks: usize,
    pub normal_pageblocks: usize,
    /// CMA pageblocks holding an unmovable or pinned frame at the end (always 0: CMA
    /// pageblocks never serve those requests, and a long-term pin of a page in CMA moves
    /// it out first).
    pub polluted_cma_pageblocks: usize,
    /// Long-term pins taken of pages that sat in CMA (each moved out first).
    pub cma_longterm_pins: usize,
    /// Short-term (I/O) pins taken of pages in CMA (the page stays until the I/O is done).
    pub cma_io_pins: usize,
    /// Back-off waits `cma_alloc` made for short-term pins in its area.
    pub io_waits: u64,
}

impl ChurnResult {
    /// Successes out of attempts, in percent (0 without attempts).
    pub fn rate(&self) -> f64 {
        100.0 * self.successes as f64 / self.attempts.max(1) as f64
    }
}

/// The churn workload, in words, for the report.
pub const CHURN_WORKLOAD: &str = "\
workload per round (same seed, same sequence for every method):
  background: anonymous pages grown back until only 1/8 of memory is free after freeing a
    random 0..2047 of them, 0..511 page-cache reads (1 in 8 a write), occasional writeback;
  interleaved unmovable memory: 1..8 kernel-data allocations (Unmovable, order 0-1) and
    0..15 long-term DMA pins of random existing anonymous pages outside CMA (pinned in
    place, as pin_user_pages(FOLL_LONGTERM) does), each living 8..263 rounds;
  with pins in CMA (that method only, from its own random sequence so the rest of the
    workload stays the same): 0..3 long-term pins of random anonymous pages inside CMA
    (migrated out first, as FOLL_LONGTERM does; living 8..263 rounds) and 0..3 short-term
    I/O pins of pages inside CMA (the page stays and refuses to move; 3 in 4 complete
    0..2 ms later, the others only when released after 1..4 rounds); cma_alloc goes around
    them or waits for them (bounded back-off, at most 10 ms per allocation);
  then one large allocation by the method under test, up to `hold` of them held, a random
    one released when the limit is reached.
  Methods run one after the other in one boot, buddy first, so CMA meets the most aged
  memory. Kernel data lands wherever the buddy puts it (fallback stealing from Movable
  pageblocks when Unmovable ones run dry), pins wherever the pinned page was; nothing
  steers them.";

/// The churn results as printable text.
pub fn format_churn(pages: usize, results: &[ChurnResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "success rate of {pages}-page allocations under movable churn with interleaved unmovable allocations"
    );
    let _ = writeln!(out, "{CHURN_WORKLOAD}");
    let _ = writeln!(
        out,
        "{:<22} {:>8} {:>9} {:>8} {:>10} {:>8} {:>18} {:>10} {:>14} {:>8}",
        "method",
        "attempts",
        "succeeded",
        "rate",
        "avoidable",
        "pins",
        "polluted pb (non-CMA)",
        "in CMA",
        "CMA pins l/io",
        "io waits"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>9} {:>7.1}% {:>10} {:>8} {:>12}/{:<8} {:>10} {:>14} {:>8}",
            r.label,
            r.attempts,
            r.successes,
            r.rate(),
            r.avoidable_failures,
            r.pins_taken,
            r.polluted_pageblocks,
            r.normal_pageblocks,
            r.polluted_cma_pageblocks,
            format!("{}/{}", r.cma_longterm_pins, r.cma_io_pins),
            r.io_waits
        );
    }
    let with = results.iter().find(|r| r.mode.pins_in_cma());
    let without = results
        .iter()
        .find(|r| r.mode.uses_cma() && !r.mode.pins_in_cma());
    if let (Some(with), Some(without)) = (with, without) {
        let _ = writeln!(
            out,
            "cma_alloc success with pins inside CMA: {:.1}% ({} long-term, {} short-term), without: {:.1}%",
            with.rate(),
            with.cma_longterm_pins,
            with.cma_io_pins,
            without.rate()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn stats_are_min_median_max() {
        assert_eq!(
            Stats::of(&mut [9, 1, 5, 7, 3]),
            Stats {
                min: 1,
                median: 5,
                max: 9
            }
        );
        assert_eq!(
            Stats::of(&mut [4, 2]).median,
            4,
            "upper median of an even count"
        );
        assert_eq!(Stats::of(&mut []), Stats::default());
    }

    #[test]
    fn latency_table_prints_ratios_to_memcpy() {
        let row = LatencyRow {
            pages: 64,
            memcpy: Stats {
                min: 90,
                median: 100,
                max: 110,
            },
            idle: Stats {
                min: 20,
                median: 28,
                max: 30,
            },
            full: Stats {
                min: 200,
                median: 211,
                max: 250,
            },
            clean_cache: Stats {
                min: 4,
                median: 5,
                max: 6,
            },
            migrated_per_alloc: 64,
            failures: 0,
        };
        let text = format_latency("reserved", &[row, LatencyRow::default()], 7);
        let lines: vec::Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("cma_alloc latency, area 'reserved', 7 trials per size"));
        assert_eq!(
            lines[2].split_whitespace().collect::<vec::Vec<_>>(),
            [
                "64",
                "90/100/110",
                "20/28/30",
                "0.28",
                "200/211/250",
                "2.11",
                "64",
                "4/5/6",
                "0.05",
                "0"
            ]
        );
        assert_eq!(
            lines[3].split_whitespace().nth(3),
            Some("-"),
            "no memcpy figure, no ratio"
        );
    }

    #[test]
    fn churn_table_prints_rates_and_the_workload() {
        let result = ChurnResult {
            mode: ChurnMode::Cma,
            label: String::from("cma_alloc"),
            attempts: 200,
            successes: 14,
            avoidable_failures: 3,
            pins_taken: 1000,
            polluted_pageblocks: 40,
            normal_pageblocks: 384,
            polluted_cma_pageblocks: 0,
            ..ChurnResult::default()
        };
        let text = format_churn(1024, &[result]);
        assert!(text.starts_with("success rate of 1024-page allocations"));
        assert!(text.contains(CHURN_WORKLOAD));
        let last: vec::Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(
            last,
            [
                "cma_alloc",
                "200",
                "14",
                "7.0%",
                "3",
                "1000",
                "40/384",
                "0",
                "0/0",
                "0"
            ]
        );
        assert!(
            !text.contains("with pins inside CMA:"),
            "no pins-in-CMA run, no comparison"
        );
    }

    #[test]
    fn churn_modes_name_their_method_and_pin_placement() {
        let modes = [
            ChurnMode::Cma,
            ChurnMode::CmaPinsInCma,
            ChurnMode::BuddyHighOrder,
            ChurnMode::ContigMovable,
        ];
        for (i, a) in modes.iter().enumerate() {
            for b in &modes[i + 1..] {
                assert_ne!(a.label(), b.label());
            }
        }
        assert_eq!(modes.map(ChurnMode::uses_cma), [true, true, false, false]);
        assert_eq!(
            modes.map(ChurnMode::pins_in_cma),
            [false, true, false, false]
        );
    }

    #[test]
    fn churn_table_reports_the_cma_success_rate_with_pins_inside_cma() {
        let without = ChurnResult {
            mode: ChurnMode::Cma,
            label: String::from(ChurnMode::Cma.label()),
            attempts: 200,
            successes: 200,
            ..ChurnResult::default()
        };
        let with = ChurnResult {
            mode: ChurnMode::CmaPinsInCma,
            label: String::from(ChurnMode::CmaPinsInCma.label()),
            attempts: 200,
            successes: 197,
            pins_taken: 900,
            cma_longterm_pins: 301,
            cma_io_pins: 288,
            io_waits: 5,
            ..ChurnResult::default()
        };
        let text = format_churn(1024, &[without, with]);
        let row: vec::Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("cma_alloc, pins in CMA"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            row[4..],
            ["200", "197", "98.5%", "0", "900", "0/0", "0", "301/288", "5"]
        );
        assert_eq!(
            text.lines().last(),
            Some(
                "cma_alloc success with pins inside CMA: 98.5% (301 long-term, 288 short-term), without: 100.0%"
            )
        );
    }
}
