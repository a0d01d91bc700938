//! Tests of the report texts on small real section tables (a zone over fake storage): the
//! unit table's ranges, states and partners for both geometry shapes, power figures that are
//! the power model's for the same masks (and one worked by hand), and the suspend summary's
//! figures from the counters' difference.

use super::*;
use crate::mm::testutil::Storage;
use crate::mm::{Gfp, PasrMode, Pfn, Zone, MAX_ORDER};
use crate::pasr::vacate::SkipReason;
use crate::util::size::MIB;
use alloc::vec;

const BASE_PHYS: u64 = 0x4000_0000;
const BASE: Pfn = (BASE_PHYS >> PAGE_SHIFT) as Pfn;
/// Both geometries: 2 dies x 4 banks of 8 MiB.
const PAGES: usize = ((64 * MIB) >> PAGE_SHIFT) as usize;

fn plain() -> Geometry {
    Geometry::new(BASE_PHYS, 2, 32 * MIB, 4, UnitKind::Bank, None, 4 * MIB).unwrap()
}

/// Dies alternate every 64 KiB: 4 spans of 16 MiB, banks of one index paired.
fn interleaved() -> Geometry {
    Geometry::new(
        BASE_PHYS,
        2,
        32 * MIB,
        4,
        UnitKind::Bank,
        Some(64 * 1024),
        4 * MIB,
    )
    .unwrap()
}

fn zone_over<'a>(storage: &'a mut Storage, sections: &mut Sections) -> Zone<'a> {
    let mut z = storage.zone();
    z.free_range(BASE..BASE + PAGES).unwrap();
    sections.attach(&mut z, PasrMode::Steering).unwrap();
    z
}

/// The value of the first `key: value` line with this key.
fn value<'t>(text: &'t str, key: &str) -> &'t str {
    text.lines()
        .find_map(|line| line.split_once(": ").filter(|(k, _)| *k == key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no `{key}` in:\n{text}"))
}

/// The cells of the table row for `die`/`index` (cells are separated by 2+ spaces).
fn row(text: &str, die: u8, index: u8) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|cells| {
            cells.len() >= 2 && cells[0] == die.to_string() && cells[1] == index.to_string()
        })
        .unwrap_or_else(|| panic!("no row {die}/{index} in:\n{text}"))
}

fn mw(uw: u64) -> String {
    format!("{}", Milliwatts(uw))
}

#[test]
fn plain_listing_shows_ranges_states_and_the_models_power() {
    let g = plain();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, PAGES);
    let mut z = zone_over(&mut st, &mut s);
    // Fill span 0 (two MAX_ORDER blocks), then one page lands in span 1.
    let a = z.alloc_pages(MAX_ORDER, Gfp::MOVABLE).unwrap();
    let b = z.alloc_pages(MAX_ORDER, Gfp::MOVABLE).unwrap();
    let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    assert!(a < BASE + 2048 && b < BASE + 2048 && (BASE + 2048..BASE + 4096).contains(&p));
    let masks = s.mask_free_units(&mut z);
    assert_eq!(masks.per_die(), [0x0c, 0x0f]);
    // Span 1 is entirely free again, but stays unmasked until the next masking.
    z.free_pages(p, 0).unwrap();
    let _ = s.unmask_touched(&mut z);
    let text = banks(&g, &s.report(&z), 45);

    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["die", "bank", "range", "free", "state", "pair"]);
    assert_eq!(
        row(&text, 0, 0),
        ["0", "0", "0x40000000-0x407fffff", "0 B", "busy", "-"]
    );
    assert_eq!(
        row(&text, 0, 1),
        ["0", "1", "0x40800000-0x40ffffff", "8 MiB", "free", "-"]
    );
    assert_eq!(
        row(&text, 1, 2),
        ["1", "2", "0x43000000-0x437fffff", "8 MiB", "masked", "-"]
    );
    // Every row's range is exactly the bytes the geometry gives the unit.
    for unit in g.units() {
        let r = g.unit_extents(unit).next().unwrap();
        let cells = row(&text, unit.die, unit.index);
        assert_eq!(cells[2], format!("{:#x}-{:#x}", r.start, r.end - 1));
    }
    assert_eq!(text.lines().count(), 1 + 8 + 2);

    let now = power::self_refresh_uw(4, &[0x0c, 0x0f], 45);
    let full = power::self_refresh_uw(4, &[0, 0], 45);
    assert!(now < full);
    assert_eq!(
        value(&text, "self-refresh now"),
        format!("{} (6 of 8 banks masked, at 45 C)", mw(now))
    );
    let saving = (full - now) * 1000 / full;
    assert_eq!(
        value(&text, "self-refresh unmasked"),
        format!("{} (saving {}.{} %)", mw(full), saving / 10, saving % 10)
    );
}

#[test]
fn interleaved_listing_names_the_granules_and_the_pairs() {
    let g = interleaved();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, PAGES);
    let mut z = zone_over(&mut st, &mut s);
    let _ = z.alloc_pages(MAX_ORDER, Gfp::MOVABLE).unwrap();
    s.mask_free_units(&mut z);
    let text = banks(&g, &s.report(&z), 85);

    // Span 0 has three of its four blocks free, shared by the two dies.
    assert_eq!(
        row(&text, 0, 0),
        [
            "0",
            "0",
            "0x40000000-0x40ffffff every 2nd 64 KiB from 0x40000000",
            "6 MiB",
            "busy",
            "1/0"
        ]
    );
    assert_eq!(
        row(&text, 1, 2),
        [
            "1",
            "2",
            "0x42000000-0x42ffffff every 2nd 64 KiB from 0x42010000",
            "8 MiB",
            "masked",
            "0/2"
        ]
    );
    // The note is the layout: the first granule named is the unit's, the next one is not.
    for unit in g.units() {
        let cells = row(&text, unit.die, unit.index);
        let from = cells[2].rsplit(' ').next().unwrap();
        let from = u64::from_str_radix(from.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(g.unit_of(from), Some(unit));
        assert_eq!(g.unit_of(from + 64 * 1024 * 2), Some(unit));
        assert_ne!(g.unit_of(from + 64 * 1024), Some(unit));
    }
    let now = power::self_refresh_uw(4, &[0x0e, 0x0e], 85);
    assert!(value(&text, "self-refresh now").starts_with(&format!("{} (6 of 8", mw(now))));
}

#[test]
fn power_file_is_the_power_model_for_the_masks() {
    let g = interleaved();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, PAGES);
    let mut z = zone_over(&mut st, &mut s);

    // Nothing masked, 85 C: two dies of (475000 + 529032) nA at 1.8 V = 3614.5152 mW.
    let none = s.masks();
    let text = power(&g, &none, 85);
    assert_eq!(value(&text, "masked_units"), "0");
    assert_eq!(value(&text, "units"), "8");
    assert_eq!(value(&text, "power_now_uw"), "3614");
    assert_eq!(value(&text, "power_full_uw"), "3614");
    assert_eq!(value(&text, "temperature_c"), "85");
    assert_eq!(value(&text, "saving_percent"), "0.0");

    // Everything masked: only the fixed 475000 nA per die, 1710 uW; saving 1904/3614.
    let all = s.mask_free_units(&mut z);
    assert_eq!(all.count(), 8);
    let text = power(&g, &all, 85);
    assert_eq!(value(&text, "masked_units"), "8");
    assert_eq!(value(&text, "masks"), "MR16 die0=0x0f die1=0x0f");
    assert_eq!(value(&text, "power_now_uw"), "1710");
    assert_eq!(value(&text, "saving_percent"), "52.6");

    // Some masked, at a temperature inside the fit: the model's figure exactly.
    let _ = s.unmask_all(&mut z);
    let _ = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    let some = s.mask_free_units(&mut z);
    let text = power(&g, &some, 60);
    assert_eq!(
        value(&text, "power_now_uw"),
        power::self_refresh_uw(4, some.per_die(), 60).to_string()
    );
    assert_eq!(
        value(&text, "power_full_uw"),
        power::self_refresh_uw(4, &[0, 0], 60).to_string()
    );
    // The listing's power line says the same.
    let listing = banks(&g, &s.report(&z), 60);
    let now: u64 = value(&text, "power_now_uw").parse().unwrap();
    assert!(value(&listing, "self-refresh now").starts_with(&mw(now)));
}

fn counters(time_ns: u64, energy_nj: u64, lost: u64, entries: u64) -> Counters {
    Counters {
        temperature_c: 45,
        sr_entries: entries,
        sr_time_ns: time_ns,
        sr_energy_nj: energy_nj,
        bytes_lost: lost,
        power_now_uw: 0,
        power_full_uw: 0,
    }
}

#[test]
fn suspend_text_reports_the_pass_and_the_counters_difference() {
    let g = interleaved();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, PAGES);
    let mut z = zone_over(&mut st, &mut s);
    let _ = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
    let masks = s.mask_free_units(&mut z);
    let report = VacateReport {
        vacated: 0b0110,
        already_free: 0b1000,
        pages_migrated: 300,
        pages_dropped: 12,
        skipped: vec![SpanSkip {
            span: 0,
            reason: SkipReason::NoRoom {
                needed: 10,
                room: 5,
            },
        }],
        budget_pages: 65536,
        budget_used: 312,
        masks,
    };
    let before = counters(5_000_000_000, 9_000_000, 4096, 3);
    let after = counters(6_000_000_000, 9_000_000 + 1_234_567, 4096 + 48 * MIB, 4);
    let text = suspend(&report, 1, 1_002_500_000, &before, &after, &s);

    for line in text.lines() {
        assert!(line.contains(": "), "not key: value: {line:?}");
    }
    assert_eq!(value(&text, "asked"), "1 s");
    assert_eq!(value(&text, "slept"), "1.002 s");
    assert_eq!(value(&text, "vacated"), "2 spans (1 2)");
    assert_eq!(value(&text, "already_free"), "1 span (3)");
    assert_eq!(value(&text, "pages_migrated"), "300");
    assert_eq!(value(&text, "pages_dropped"), "12");
    assert_eq!(value(&text, "budget"), "312 of 65536 pages");
    assert_eq!(value(&text, "skipped"), "1 span (0)");
    assert_eq!(
        value(&text, "skip span 0"),
        "10 pages to move, room for 5 in refreshed spans"
    );
    assert_eq!(
        value(&text, "masked"),
        "6 of 8 banks (0/1 0/2 0/3 1/1 1/2 1/3)"
    );
    assert_eq!(value(&text, "masks"), "MR16 die0=0x0e die1=0x0e");
    // Six 8 MiB banks: what the model may overwrite, and (here) did.
    assert_eq!(value(&text, "masked_bytes"), "50331648 (48 MiB)");
    assert_eq!(value(&text, "bytes_lost"), "50331648 (48 MiB)");
    assert_eq!(value(&text, "self_refresh"), "1.000 s");
    assert_eq!(value(&text, "self_refresh_entries"), "1");
    assert_eq!(value(&text, "energy"), "1.234 mJ");
    // 1.234567 mJ over 1 s.
    assert_eq!(value(&text, "mean_power"), "1.23 mW");
    assert_eq!(value(&text, "temperature_c"), "45");

    // The last-suspend file is the same figures; before any suspend it says so.
    let summary = SuspendSummary::new(&report, 1, 1_002_500_000, &before, &after, &s);
    assert_eq!(summary.mean_power_uw(), Some(1234));
    assert_eq!(stats(Some(&summary)), text);
    assert_eq!(stats(None), "suspends: 0\n");
}

#[test]
fn suspend_without_self_refresh_time_or_with_reset_counters_says_so() {
    let g = plain();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, PAGES);
    let mut z = zone_over(&mut st, &mut s);
    let masks = s.mask_free_units(&mut z);
    let report = VacateReport {
        vacated: 0,
        already_free: 0xff,
        pages_migrated: 0,
        pages_dropped: 0,
        skipped: Vec::new(),
        budget_pages: 0,
        budget_used: 0,
        masks,
    };
    let before = counters(7, 100, 1000, 2);
    // The model was reset: every counter is below its old value.
    let after = counters(0, 0, 0, 0);
    let text = suspend(&report, 3600, 0, &before, &after, &s);
    assert_eq!(value(&text, "vacated"), "0 spans");
    assert_eq!(value(&text, "skipped"), "0 spans");
    assert!(!text.contains("skip span"));
    assert_eq!(value(&text, "asked"), "3600 s");
    assert_eq!(
        value(&text, "masked"),
        "8 of 8 banks (0/0 0/1 0/2 0/3 1/0 1/1 1/2 1/3)"
    );
    // Plain: a unit is its whole span.
    assert_eq!(value(&text, "masked_bytes"), "67108864 (64 MiB)");
    assert_eq!(value(&text, "bytes_lost"), "0 (0 B)");
    assert_eq!(value(&text, "energy"), "0.000 mJ");
    assert!(value(&text, "mean_power").starts_with("- "));
}

#[test]
fn segments_are_named_as_segments() {
    let g = Geometry::new(BASE_PHYS, 1, 64 * MIB, 8, UnitKind::Segment, None, 4 * MIB).unwrap();
    let mut s = Sections::from_geometry(&g).unwrap();
    let mut st = Storage::new(BASE, PAGES);
    let z = zone_over(&mut st, &mut s);
    let text = banks(&g, &s.report(&z), 45);
    assert_eq!(
        text.lines().next().unwrap().split_whitespace().nth(1),
        Some("segment")
    );
    assert_eq!(
        row(&text, 0, 7),
        ["0", "7", "0x43800000-0x43ffffff", "8 MiB", "free", "-"]
    );
    assert!(value(&text, "self-refresh now").contains("0 of 8 segments masked"));
    assert_eq!(value(&power(&g, &s.masks(), 45), "masks"), "MR17 die0=0x00");
}

#[test]
fn number_formats_round_down() {
    assert_eq!(Milliwatts(1_999).to_string(), "1.99 mW");
    assert_eq!(Milliwatts(5).to_string(), "0.00 mW");
    assert_eq!(Millijoules(12_345_999).to_string(), "12.345 mJ");
    assert_eq!(Seconds(999_999_999).to_string(), "0.999 s");
    assert_eq!(
        [1, 2, 3, 4, 11].map(|n| Ordinal(n).to_string()),
        ["1st", "2nd", "3rd", "4th", "11th"]
    );
}
