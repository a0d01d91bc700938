//! Host tests: the fit against the datasheet table, the temperature interpolation and clamp,
//! masks to refreshed units, and exact energy accumulation.

use super::*;

/// The least-squares line `(fixed, full_array)` in uA through the table's points at one
/// temperature, and the largest |residual|.
fn least_squares(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let mean_f = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_i = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_f) * (p.0 - mean_f)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_f) * (p.1 - mean_i)).sum();
    let slope = sxy / sxx;
    let fixed = mean_i - slope * mean_f;
    let worst = points
        .iter()
        .map(|p| (fixed + slope * p.0 - p.1).abs())
        .fold(0.0, f64::max);
    (fixed, slope, worst)
}

fn table(hot: bool) -> [(f64, f64); 5] {
    IDD6_TABLE.map(|p| {
        let ua = if hot { p.hot_ua } else { p.cool_ua };
        (1.0 / f64::from(p.fraction_denominator), f64::from(ua))
    })
}

#[test]
fn fit_constants_are_the_least_squares_line_of_the_table() {
    for (hot, fit, max_residual_ua) in [(true, FIT_HOT, 10.5), (false, FIT_COOL, 19.8)] {
        let (fixed, slope, worst) = least_squares(&table(hot));
        assert!(
            (fixed * 1000.0 - fit.fixed_na as f64).abs() <= 0.5,
            "fixed {fixed} uA against {fit:?}"
        );
        assert!(
            (slope * 1000.0 - fit.full_array_na as f64).abs() <= 0.5,
            "full array {slope} uA against {fit:?}"
        );
        // The residual the module header documents.
        assert!(
            (worst - max_residual_ua).abs() < 0.05,
            "worst residual {worst} uA"
        );
    }
}

#[test]
fn the_model_stays_close_to_every_table_point() {
    // f = 1, 1/2, 1/4, 1/8 on an 8-unit die (1/16 needs 16 units: take a 16th of 16).
    for p in IDD6_TABLE {
        let units = 16;
        let refreshed = units / p.fraction_denominator;
        for (t, ua, tolerance_ua) in [(HOT_C, p.hot_ua, 11), (COOL_C, p.cool_ua, 20)] {
            let model = die_current_na(refreshed, units, t) as i64;
            let table = i64::from(ua) * 1000;
            assert!(
                (model - table).abs() <= tolerance_ua * 1000,
                "1/{} at {t} C: model {model} nA, table {table} nA",
                p.fraction_denominator
            );
        }
    }
}

#[test]
fn known_currents() {
    assert_eq!(die_current_na(8, 8, 85), 475_000 + 529_032);
    assert_eq!(die_current_na(8, 8, 45), 330_417 + 179_570);
    assert_eq!(die_current_na(4, 8, 85), 475_000 + 529_032 / 2);
    assert_eq!(die_current_na(0, 8, 85), 475_000);
    // Midway in temperature: the mean of the two ends (rounded down once).
    assert_eq!(die_current_na(8, 8, 65), (1_004_032 + 509_987) / 2);
}

#[test]
fn temperature_is_clamped_to_the_datasheet_range() {
    assert_eq!(die_current_na(8, 8, 120), die_current_na(8, 8, 85));
    assert_eq!(die_current_na(3, 8, -40), die_current_na(3, 8, 45));
    assert_eq!(die_current_na(3, 8, i32::MIN), die_current_na(3, 8, 45));
    assert_eq!(die_current_na(3, 8, i32::MAX), die_current_na(3, 8, 85));
}

#[test]
fn current_grows_with_temperature_and_with_refreshed_units() {
    for t in 45..85 {
        assert!(
            die_current_na(8, 8, t) < die_current_na(8, 8, t + 1),
            "{t} C"
        );
    }
    for r in 0..8 {
        assert!(
            die_current_na(r, 8, 60) < die_current_na(r + 1, 8, 60),
            "{r}"
        );
    }
}

#[test]
fn the_model_depends_on_the_refreshed_fraction_only() {
    for t in [30, 45, 60, 85] {
        assert_eq!(die_current_na(1, 2, t), die_current_na(4, 8, t));
        assert_eq!(die_current_na(2, 4, t), die_current_na(4, 8, t));
    }
}

#[test]
fn masks_count_only_units_that_exist() {
    assert_eq!(refreshed_units(0x00, 8), 8);
    assert_eq!(refreshed_units(0xff, 8), 0);
    assert_eq!(refreshed_units(0b1010_0001, 8), 5);
    assert_eq!(
        refreshed_units(0xf0, 4),
        4,
        "bits 4..7 name no unit of a 4-unit die"
    );
    assert_eq!(refreshed_units(0x03, 4), 2);
    assert_eq!(refreshed_units(0x01, 1), 0);
}

#[test]
fn power_sums_the_dies_and_rounds_once() {
    // Two full dies at 85 C: 2 x 1004.032 uA x 1.8 V = 3614.5152 uW, rounded down in nW.
    assert_eq!(self_refresh_nw(8, &[0, 0], 85), 3_614_515);
    assert_eq!(self_refresh_uw(8, &[0, 0], 85), 3_614);
    // One die fully masked, the other half masked.
    let expected = (475_000u64 + 475_000 + 529_032 / 2) * 1800 / 1000;
    assert_eq!(self_refresh_nw(8, &[0xff, 0x0f], 85), expected);
    // Masking saves power, but nowhere near proportionally: with nothing refreshed a die
    // still draws the fixed term, 47 % of the full array at 85 C.
    let full = self_refresh_nw(8, &[0; 4], 85);
    let none = self_refresh_nw(8, &[0xff; 4], 85);
    assert!(
        none < full && none * 100 > full * 47,
        "{none} against {full}"
    );
    assert_eq!(self_refresh_nw(8, &[], 85), 0);
}

#[test]
fn energy_is_power_times_time() {
    // 1 mW for 1 s is 1 mJ.
    assert_eq!(energy_nj(1_000_000, 1_000_000_000), 1_000_000);
    assert_eq!(energy_nj(3_614_515, 2_500_000_000), 9_036_287);
    assert_eq!(energy_nj(0, u64::MAX), 0);
    assert_eq!(energy_nj(u64::MAX, u64::MAX), u64::MAX, "saturates");
}

#[test]
fn accumulated_energy_loses_nothing_to_per_interval_rounding() {
    let mut energy = Energy::default();
    energy.add(1, 999_999_999);
    energy.add(1, 999_999_999);
    assert_eq!(energy_nj(1, 999_999_999), 0);
    assert_eq!(energy.nanojoules(), 1);
    energy.add(1, 2);
    assert_eq!(energy.nanojoules(), 2);
}
