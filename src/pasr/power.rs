//! PASR self-refresh power model: the current a die draws in self-refresh as a function of how
//! much of it is still refreshed and of its temperature, and the energy that adds up to. One
//! definition for both sides: the firmware prints "power now / with nothing masked" from it,
//! and the controller model under `qemu/pasr-device` counts energy with it, so the two figures
//! always agree.
//!
//! # Theory of operation
//!
//! The numbers are IDD6 (self-refresh current) from Micron's "1Gb: x16, x32 Mobile LPDDR
//! SDRAM" datasheet (MT46H64M16LF, MT46H32M32LF/LG), Table 9 "IDD6 Specifications and
//! Conditions", low-power grade: the full array and 1/2, 1/4, 1/8 and 1/16 of it refreshed
//! (PASR), at 85 C and 45 C ([`IDD6_TABLE`]). Savings are far from proportional: part of
//! the current does not depend on how many rows are refreshed, so the model per die is a
//! fixed term plus a term proportional to the refreshed fraction:
//!
//! ```text
//!   I(f, T) = fixed(T) + full_array(T) * f,    f = refreshed_units / units_per_die
//! ```
//!
//! i.e. `fixed + per_unit * refreshed_units` with `per_unit = full_array / units_per_die`.
//! `fixed` and `full_array` are an ordinary least-squares line through the table's five
//! points at each temperature (`f` = 1, 1/2, 1/4, 1/8, 1/16):
//!
//! | T | fixed | full_array | residuals (fit - table) at f = 1 .. 1/16, uA | max, RMS |
//! |---|---|---|---|---|
//! | 85 C | 475.000 uA | 529.032 uA (16400/31) | +4.0, -10.5, +7.3, -8.9, +8.1 | 10.5, 8.0 uA |
//! | 45 C | 330.417 uA (3965/12) | 179.570 uA (16700/93) | +10.0, -19.8, -4.7, +2.9, +11.6 | 19.8, 11.5 uA |
//!
//! (At most 1.6 % of the table's value at 85 C, 4.5 % at 45 C; the test
//! `fit_constants_are_the_least_squares_line_of_the_table` recomputes the fit from the
//! table.) Between 45 C and 85 C both terms are linear in temperature; outside that range
//! they are clamped to the nearer end: the datasheet gives nothing beyond (its automotive
//! variant notes self refresh is supported only up to 85 C), and the model does not guess.
//!
//! Power is `I * VDD` with [`SUPPLY_MV`] = 1.8 V: the same datasheet's Features list
//! "VDD/VDDQ = 1.70-1.95V" and its Options "VDD/VDDQ 1.8V/1.8V" (Table 9 is specified over
//! that range). One die of the model stands for one such part, whatever its real density:
//! the fit is over the refreshed *fraction*, so it scales to any number of units per die.
//!
//! All arithmetic is integer (nA, mV, nW, ns, and energy in nW x ns = 1e-18 J), each result
//! rounded down once at the end, so the firmware (no_std, no FPU assumptions) and the host
//! device compute bit-identical figures, and energy repeats exactly under QEMU `-icount`.
#![forbid(unsafe_code)]

/// Supply voltage in millivolts: the MT46H32M32LG's nominal VDD (= VDDQ), 1.8 V (Micron
/// "1Gb: x16, x32 Mobile LPDDR SDRAM", Features and Options).
pub const SUPPLY_MV: u64 = 1800;

/// The datasheet temperatures the fit is for; outside them the model clamps.
pub const COOL_C: i32 = 45;
pub const HOT_C: i32 = 85;

/// One row of the datasheet table: the refreshed fraction `1 / denominator`, and IDD6 in uA
/// at 85 C and at 45 C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Idd6Point {
    pub fraction_denominator: u32,
    pub hot_ua: u32,
    pub cool_ua: u32,
}

/// Micron MT46H32M32LG (1 Gb Mobile LPDDR, low-power grade), IDD6 by refreshed fraction
/// (full, 1/2, 1/4, 1/8, 1/16) at 85 C and 45 C: the datasheet's Table 9.
pub const IDD6_TABLE: [Idd6Point; 5] = [
    Idd6Point {
        fraction_denominator: 1,
        hot_ua: 1000,
        cool_ua: 500,
    },
    Idd6Point {
        fraction_denominator: 2,
        hot_ua: 750,
        cool_ua: 440,
    },
    Idd6Point {
        fraction_denominator: 4,
        hot_ua: 600,
        cool_ua: 380,
    },
    Idd6Point {
        fraction_denominator: 8,
        hot_ua: 550,
        cool_ua: 350,
    },
    Idd6Point {
        fraction_denominator: 16,
        hot_ua: 500,
        cool_ua: 330,
    },
];

/// The two terms of the model at one temperature, in nanoamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Drawn whatever is refreshed.
    pub fixed_na: u64,
    /// Added when the whole die is refreshed (scaled by the refreshed fraction).
    pub full_array_na: u64,
}

/// The least-squares fit at 85 C (see the module header).
pub const FIT_HOT: Fit = Fit {
    fixed_na: 475_000,
    full_array_na: 529_032,
};

/// The least-squares fit at 45 C.
pub const FIT_COOL: Fit = Fit {
    fixed_na: 330_417,
    full_array_na: 179_570,
};

/// `T` clamped to the fit's range, as the weights of the hot and cool fits out of
/// `HOT_C - COOL_C`.
fn temperature_weights(temperature_c: i32) -> (u64, u64) {
    let t = temperature_c.clamp(COOL_C, HOT_C);
    ((t - COOL_C) as u64, (HOT_C - t) as u64)
}

const SPAN_C: u64 = (HOT_C - COOL_C) as u64;

/// One die's self-refresh current, scaled by `SPAN_C * units_per_die` so nothing is rounded
/// yet. `refreshed` is clamped to `units_per_die`; `units_per_die` 0 counts as 1.
fn die_current_scaled(refreshed: u32, units_per_die: u32, temperature_c: i32) -> (u128, u128) {
    let units = u64::from(units_per_die.max(1));
    let refreshed = u64::from(refreshed).min(units);
    let (hot, cool) = temperature_weights(temperature_c);
    let fixed = FIT_HOT.fixed_na * hot + FIT_COOL.fixed_na * cool;
    let full = FIT_HOT.full_array_na * hot + FIT_COOL.full_array_na * cool;
    let numerator =
        u128::from(fixed) * u128::from(units) + u128::from(full) * u128::from(refreshed);
    (numerator, u128::from(SPAN_C * units))
}

/// One die's self-refresh current in nA with `refreshed` of its `units_per_die` units
/// refreshed, at `temperature_c`.
pub fn die_current_na(refreshed: u32, units_per_die: u32, temperature_c: i32) -> u64 {
    let (numerator, denominator) = die_current_scaled(refreshed, units_per_die, temperature_c);
    (numerator / denominator) as u64
}

/// Units of a die left refreshed by `mask` (a set bit is a unit NOT refreshed; bits at or
/// above `units_per_die` name no unit and are ignored).
pub fn refreshed_units(mask: u8, units_per_die: u32) -> u32 {
    let units = units_per_die.min(8);
    let valid = if units >= 8 { 0xff } else { (1u8 << units) - 1 };
    units - (mask & valid).count_ones()
}

/// Self-refresh power in nW of dies of `units_per_die` units each, die `d` masked by
/// `masks[d]` (one die per entry), at `temperature_c`.
pub fn self_refresh_nw(units_per_die: u32, masks: &[u8], temperature_c: i32) -> u64 {
    let mut numerator = 0u128;
    let mut denominator = 1u128;
    for &mask in masks {
        let (n, d) = die_current_scaled(
            refreshed_units(mask, units_per_die),
            units_per_die,
            temperature_c,
        );
        // Every die has the same denominator (SPAN_C * units): sum numerators exactly.
        numerator += n;
        denominator = d;
    }
    // nA * mV = pW; one rounding, down, to nW.
    (numerator * u128::from(SUPPLY_MV) / (denominator * 1000)) as u64
}

/// [`self_refresh_nw`] in uW, rounded down (what the register block and the shell show).
pub fn self_refresh_uw(units_per_die: u32, masks: &[u8], temperature_c: i32) -> u64 {
    self_refresh_nw(units_per_die, masks, temperature_c) / 1000
}

/// Energy in nJ of `power_nw` held for `duration_ns`, rounded down.
pub fn energy_nj(power_nw: u64, duration_ns: u64) -> u64 {
    let mut energy = Energy::default();
    energy.add(power_nw, duration_ns);
    energy.nanojoules()
}

/// An energy total kept exactly (in nW x ns = 1e-18 J) over many intervals, so the sum of
/// many short stays in self-refresh loses nothing to per-interval rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Energy {
    nw_ns: u128,
}

impl Energy {
    /// Add `power_nw` held for `duration_ns` (saturating; u128 holds ~1e20 J).
    pub fn add(&mut self, power_nw: u64, duration_ns: u64) {
        self.nw_ns = self
            .nw_ns
            .saturating_add(u128::from(power_nw) * u128::from(duration_ns));
    }

    /// The total in nJ, rounded down (saturating at `u64::MAX`).
    pub fn nanojoules(&self) -> u64 {
        u64::try_from(self.nw_ns / 1_000_000_000).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests;
