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
        "{:>6} {:>22} {:>22} {:>7} {:>22} {:>7} {:>9} {:>5}",
        "pages", "memcpy", "idle", "ratio", "full of anon", "ratio", "migr/alloc", "fail"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>6} {:>22} {:>22} {:>7} {:>22} {:>7} {:>9} {:>5}",
            r.pages,
            r.memcpy.to_string(),
            r.idle.to_string(),
            ratio(r.idle.median, r.memcpy.median),
            r.full.to_string(),
            ratio(r.full.median, r.memcpy.median),
            r.migrated_per_alloc,
            r.failures
        );
    }
    out
}

/// Outcome of one churn scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnResult {
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
    /// pageblocks never serve those requests).
    pub polluted_cma_pageblocks: usize,
}

/// The churn workload, in words, for the report.
pub const CHURN_WORKLOAD: &str = "\
workload per round (same seed, same sequence for every method):
  background: anonymous pages grown back until only 1/8 of memory is free after freeing a
    random 0..2047 of them, 0..511 page-cache reads (1 in 8 a write), occasional writeback;
  interleaved unmovable memory: 1..8 kernel-data allocations (Unmovable, order 0-1) and
    0..15 long-term DMA pins of random existing anonymous pages outside CMA (pinned in
    place, as pin_user_pages(FOLL_LONGTERM) does), each living 8..263 rounds;
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
        "{:<22} {:>8} {:>9} {:>8} {:>10} {:>8} {:>18} {:>10}",
        "method",
        "attempts",
        "succeeded",
        "rate",
        "avoidable",
        "pins",
        "polluted pb (non-CMA)",
        "in CMA"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>9} {:>7.1}% {:>10} {:>8} {:>12}/{:<8} {:>10}",
            r.label,
            r.attempts,
            r.successes,
            100.0 * r.successes as f64 / r.attempts.max(1) as f64,
            r.avoidable_failures,
            r.pins_taken,
            r.polluted_pageblocks,
            r.normal_pageblocks,
            r.polluted_cma_pageblocks
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
            label: String::from("cma_alloc"),
            attempts: 200,
            successes: 14,
            avoidable_failures: 3,
            pins_taken: 1000,
            polluted_pageblocks: 40,
            normal_pageblocks: 384,
            polluted_cma_pageblocks: 0,
        };
        let text = format_churn(1024, &[result]);
        assert!(text.starts_with("success rate of 1024-page allocations"));
        assert!(text.contains(CHURN_WORKLOAD));
        let last: vec::Vec<&str> = text.lines().last().unwrap().split_whitespace().collect();
        assert_eq!(
            last,
            ["cma_alloc", "200", "14", "7.0%", "3", "1000", "40/384", "0"]
        );
    }
}
