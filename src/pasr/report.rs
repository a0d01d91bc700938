//! PASR reports as text: the `pasr` shell listing and `/sys/kernel/debug/pasr/banks`, the
//! power file, and what `suspend` prints (also `/sys/kernel/debug/pasr/last_suspend`).
//!
//! # Theory of operation
//!
//! Pure functions from the policy's own values ([`UnitReport`], [`PasrMasks`],
//! [`VacateReport`], the controller's [`Counters`]) to text; the service calls them and
//! registers the files under the paths below. Every figure the power model gives is computed
//! with [`power::self_refresh_uw`] on the same mask bytes the controller is given, so the
//! listing says exactly what the controller model reports for those masks. Everything is
//! integer arithmetic, rounded down once (mW with 2 decimals from uW, mJ with 3 decimals from
//! nJ, seconds with 3 decimals from ns), as the power model is.
//!
//! The files and the `suspend` text are `key: value` lines (the key is everything before the
//! first `": "`), so tests and scripts can read them without guessing at a layout; the
//! `banks` listing is a table for people, with its two summary lines `key: value` too.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::controller::Counters;
use super::geometry::{Geometry, Unit, UnitKind, MAX_DIES};
use super::power;
use super::sections::{PasrMasks, Sections, UnitReport};
use super::vacate::{SpanSkip, VacateReport};
use crate::util::size::ByteSize;
use crate::util::PAGE_SHIFT;

/// The debugfs directory the PASR files live in.
pub const DEBUGFS_DIR: &str = "/sys/kernel/debug/pasr";
/// Per-unit listing, the same table as the `pasr` command.
pub const BANKS_FILE: &str = "/sys/kernel/debug/pasr/banks";
/// The modeled self-refresh power for the current masks ([`power`]).
pub const POWER_FILE: &str = "/sys/kernel/debug/pasr/power";
/// The last suspend's figures ([`stats`]).
pub const LAST_SUSPEND_FILE: &str = "/sys/kernel/debug/pasr/last_suspend";

/// The `pasr` listing: a header, one line per unit (die, bank or segment, physical range,
/// free bytes, state, partners), then the modeled self-refresh power with the units masked
/// now and with none masked, at `temperature_c`.
///
/// State: `masked` (masked now), `free` (it and its partners are entirely free, so it could
/// be masked, but it is not), `busy` (it or a partner holds memory).
pub fn banks(geometry: &Geometry, units: &[UnitReport], temperature_c: i32) -> String {
    let kind = geometry.kind();
    let mut rows: Vec<[String; 6]> = Vec::with_capacity(units.len() + 1);
    rows.push([
        String::from("die"),
        String::from(kind.name()),
        String::from("range"),
        String::from("free"),
        String::from("state"),
        String::from("pair"),
    ]);
    for report in units {
        let state = if report.masked {
            "masked"
        } else if report.maskable {
            "free"
        } else {
            "busy"
        };
        rows.push([
            format!("{}", report.unit.die),
            format!("{}", report.unit.index),
            unit_range_text(geometry, report.unit),
            format!("{}", ByteSize(report.free_bytes)),
            String::from(state),
            partners_text(&report.partners),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row.iter()) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{:<width$}  ", cell, width = widths[i]);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }

    let mut masks = [0u8; MAX_DIES as usize];
    for report in units.iter().filter(|r| r.masked) {
        if let Some(mask) = masks.get_mut(report.unit.die as usize) {
            *mask |= 1u8.checked_shl(u32::from(report.unit.index)).unwrap_or(0);
        }
    }
    let figures = PowerFigures::new(geometry, &masks, temperature_c);
    let masked = units.iter().filter(|r| r.masked).count();
    let _ = writeln!(
        text,
        "self-refresh now: {} ({} of {} {}s masked, at {} C)",
        Milliwatts(figures.now_uw),
        masked,
        units.len(),
        kind.name(),
        temperature_c
    );
    let _ = writeln!(
        text,
        "self-refresh unmasked: {} (saving {} %)",
        Milliwatts(figures.full_uw),
        figures.saving()
    );
    text
}

/// The power file: `masked_units`, `units`, `masks`, `power_now_uw`, `power_full_uw`,
/// `temperature_c`, `saving_percent`, one `key: value` line each.
pub fn power(geometry: &Geometry, masks: &PasrMasks, temperature_c: i32) -> String {
    let per_die = die_masks(geometry, masks);
    let figures = PowerFigures::new(geometry, &per_die, temperature_c);
    let units = geometry.dies() * geometry.units_per_die();
    let mut text = String::new();
    let _ = writeln!(text, "masked_units: {}", masks.count());
    let _ = writeln!(text, "units: {units}");
    let _ = writeln!(text, "masks: {masks}");
    let _ = writeln!(text, "power_now_uw: {}", figures.now_uw);
    let _ = writeln!(text, "power_full_uw: {}", figures.full_uw);
    let _ = writeln!(text, "temperature_c: {temperature_c}");
    let _ = writeln!(text, "saving_percent: {}", figures.saving());
    text
}

/// What `suspend SECONDS` prints: see [`SuspendSummary`]'s `Display`.
pub fn suspend(
    report: &VacateReport,
    seconds_asked: u64,
    slept_ns: u64,
    before: &Counters,
    after: &Counters,
    sections: &Sections,
) -> String {
    SuspendSummary::new(report, seconds_asked, slept_ns, before, after, sections).to_string()
}

/// The last-suspend file: the last suspend's [`SuspendSummary`], or `suspends: 0` before the
/// first.
pub fn stats(last: Option<&SuspendSummary>) -> String {
    match last {
        Some(summary) => summary.to_string(),
        None => String::from("suspends: 0\n"),
    }
}

/// One suspend's figures, kept by the service for [`LAST_SUSPEND_FILE`]: what the vacating
/// pass did, how long the machine slept, and the controller counters' change over the sleep.
///
/// Counters are cumulative in the controller; a counter that went backwards (the model was
/// reset) counts as 0 rather than wrapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuspendSummary {
    pub report: VacateReport,
    pub seconds_asked: u64,
    pub slept_ns: u64,
    pub before: Counters,
    pub after: Counters,
    /// Units of the window (dies x units per die).
    pub units: usize,
    pub kind: UnitKind,
    /// Bytes the masked units hold: what self-refresh may overwrite.
    pub masked_bytes: u64,
}

impl SuspendSummary {
    pub fn new(
        report: &VacateReport,
        seconds_asked: u64,
        slept_ns: u64,
        before: &Counters,
        after: &Counters,
        sections: &Sections,
    ) -> SuspendSummary {
        let span_bytes = (sections.spans().span_pages() as u64) << PAGE_SHIFT;
        let masked_bytes = report
            .masks
            .units()
            .filter_map(|unit| sections.span_of_unit(unit))
            .map(|span| {
                let sharing = sections.units_in(1u64 << span).count().max(1) as u64;
                span_bytes / sharing
            })
            .sum();
        SuspendSummary {
            report: report.clone(),
            seconds_asked,
            slept_ns,
            before: *before,
            after: *after,
            units: sections.units().count(),
            kind: sections.kind(),
            masked_bytes,
        }
    }

    pub fn sr_entries(&self) -> u64 {
        self.after.sr_entries.saturating_sub(self.before.sr_entries)
    }

    pub fn sr_time_ns(&self) -> u64 {
        self.after.sr_time_ns.saturating_sub(self.before.sr_time_ns)
    }

    pub fn energy_nj(&self) -> u64 {
        self.after
            .sr_energy_nj
            .saturating_sub(self.before.sr_energy_nj)
    }

    /// The bytes the controller model overwrote in masked units during this sleep.
    pub fn bytes_lost(&self) -> u64 {
        self.after.bytes_lost.saturating_sub(self.before.bytes_lost)
    }

    /// Mean self-refresh power over the time in self-refresh, in uW (rounded down); `None`
    /// without time in self-refresh.
    pub fn mean_power_uw(&self) -> Option<u64> {
        let ns = self.sr_time_ns();
        // nJ / ns = W, so uW = nJ * 1e6 / ns.
        (ns != 0).then(|| {
            let uw = u128::from(self.energy_nj()) * 1_000_000 / u128::from(ns);
            u64::try_from(uw).unwrap_or(u64::MAX)
        })
    }
}

impl fmt::Display for SuspendSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        writeln!(f, "asked: {} s", self.seconds_asked)?;
        writeln!(f, "slept: {}", Seconds(self.slept_ns))?;
        writeln!(f, "vacated: {}", SpanList(r.vacated))?;
        writeln!(f, "already_free: {}", SpanList(r.already_free))?;
        writeln!(f, "pages_migrated: {}", r.pages_migrated)?;
        writeln!(f, "pages_dropped: {}", r.pages_dropped)?;
        writeln!(f, "budget: {} of {} pages", r.budget_used, r.budget_pages)?;
        let skipped = r.skipped.iter().fold(0u64, |bits, s| bits | bit(s.span));
        writeln!(f, "skipped: {}", SpanList(skipped))?;
        for SpanSkip { span, reason } in &r.skipped {
            writeln!(f, "skip span {span}: {reason}")?;
        }
        write!(
            f,
            "masked: {} of {} {}s (",
            r.masks.count(),
            self.units,
            self.kind.name()
        )?;
        for (i, unit) in r.masks.units().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}/{}", unit.die, unit.index)?;
        }
        writeln!(f, ")")?;
        writeln!(f, "masks: {}", r.masks)?;
        writeln!(
            f,
            "masked_bytes: {} ({})",
            self.masked_bytes,
            ByteSize(self.masked_bytes)
        )?;
        writeln!(f, "self_refresh: {}", Seconds(self.sr_time_ns()))?;
        writeln!(f, "self_refresh_entries: {}", self.sr_entries())?;
        writeln!(f, "energy: {}", Millijoules(self.energy_nj()))?;
        match self.mean_power_uw() {
            Some(uw) => writeln!(f, "mean_power: {}", Milliwatts(uw))?,
            None => writeln!(f, "mean_power: - (no time in self-refresh)")?,
        }
        writeln!(
            f,
            "bytes_lost: {} ({})",
            self.bytes_lost(),
            ByteSize(self.bytes_lost())
        )?;
        writeln!(f, "temperature_c: {}", self.after.temperature_c)
    }
}

/// Modeled self-refresh power for some masks and for none.
struct PowerFigures {
    now_uw: u64,
    full_uw: u64,
}

impl PowerFigures {
    /// `masks[d]` for die `d`; only the geometry's dies count.
    fn new(geometry: &Geometry, masks: &[u8], temperature_c: i32) -> PowerFigures {
        let dies = (geometry.dies() as usize).min(masks.len());
        let upd = geometry.units_per_die();
        let none = [0u8; MAX_DIES as usize];
        PowerFigures {
            now_uw: power::self_refresh_uw(upd, &masks[..dies], temperature_c),
            full_uw: power::self_refresh_uw(upd, &none[..dies], temperature_c),
        }
    }

    fn saving(&self) -> Tenths {
        let saved = self.full_uw.saturating_sub(self.now_uw);
        Tenths(
            u128::from(saved)
                .checked_mul(1000)
                .and_then(|n| n.checked_div(u128::from(self.full_uw)))
                .unwrap_or(0) as u64,
        )
    }
}

/// One mask byte per die of the geometry (dies the masks do not name: nothing masked).
fn die_masks(geometry: &Geometry, masks: &PasrMasks) -> [u8; MAX_DIES as usize] {
    let mut per_die = [0u8; MAX_DIES as usize];
    for (die, mask) in per_die
        .iter_mut()
        .enumerate()
        .take(geometry.dies() as usize)
    {
        *mask = masks.die(die as u8);
    }
    per_die
}

/// `0x40000000-0x407fffff` (inclusive, as `/proc/iomem` writes ranges); interleaved, the
/// span's range and which granules of it the unit holds:
/// `0x42000000-0x42ffffff every 2nd 64 KiB from 0x42010000`.
fn unit_range_text(geometry: &Geometry, unit: Unit) -> String {
    let span = geometry.span_range(geometry.span_of_unit(unit));
    match (geometry.interleave(), geometry.dies()) {
        (Some(granule), dies) if dies > 1 => {
            let first = geometry
                .unit_extents(unit)
                .next()
                .map_or(span.start, |r| r.start);
            format!(
                "{:#x}-{:#x} every {} {} from {:#x}",
                span.start,
                span.end - 1,
                Ordinal(dies),
                ByteSize(granule),
                first
            )
        }
        _ => {
            let extent = geometry.unit_extents(unit).next().unwrap_or(span);
            format!("{:#x}-{:#x}", extent.start, extent.end - 1)
        }
    }
}

/// `1/3,2/3` (die/index), `-` for none.
fn partners_text(partners: &[Unit]) -> String {
    if partners.is_empty() {
        return String::from("-");
    }
    let names: Vec<String> = partners
        .iter()
        .map(|p| format!("{}/{}", p.die, p.index))
        .collect();
    names.join(",")
}

fn bit(span: usize) -> u64 {
    1u64.checked_shl(span as u32).unwrap_or(0)
}

/// `3 spans (2 5 7)`, `1 span (4)`, `0 spans`.
struct SpanList(u64);

impl fmt::Display for SpanList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.count_ones();
        write!(f, "{n} span{}", if n == 1 { "" } else { "s" })?;
        if n == 0 {
            return Ok(());
        }
        f.write_str(" (")?;
        let mut first = true;
        for span in (0..64).filter(|&s| self.0 & (1u64 << s) != 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{span}")?;
        }
        f.write_str(")")
    }
}

/// uW as `1.23 mW` (rounded down).
struct Milliwatts(u64);

impl fmt::Display for Milliwatts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} mW", self.0 / 1000, self.0 % 1000 / 10)
    }
}

/// nJ as `12.345 mJ` (rounded down).
struct Millijoules(u64);

impl fmt::Display for Millijoules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uj = self.0 / 1000;
        write!(f, "{}.{:03} mJ", uj / 1000, uj % 1000)
    }
}

/// ns as `1.002 s` (rounded down).
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0 / 1_000_000;
        write!(f, "{}.{:03} s", ms / 1000, ms % 1000)
    }
}

/// Per mille as `73.4`.
struct Tenths(u64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// `2nd`, `3rd`, `4th`.
struct Ordinal(u32);

impl fmt::Display for Ordinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let suffix = match (n % 10, n % 100) {
            (_, 11..=13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        write!(f, "{n}{suffix}")
    }
}

#[cfg(test)]
mod tests;
