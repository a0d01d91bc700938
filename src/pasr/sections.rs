//! PASR sections: the maskable units (banks or segments of each die), the pair rule, and the
//! MR16/MR17 mask values, on top of the zone's per-span free counters.
//!
//! # Theory of operation
//!
//! The 2012 Linux framework kept a die table (mask register) and a section table (free
//! bytes, optional `pair`). Here a *unit* (die, bank or segment) lies in one *span* of the
//! zone's PASR window (`crate::mm::PasrSpans`); with interleaved dies every die's unit of
//! one index shares a span and holds `1/dies` of it. The zone counts free MAX_ORDER blocks
//! per span at max order only, so a unit's free bytes are its span's free blocks shared
//! evenly among the span's units: exact when whole interleave rounds fit in a MAX_ORDER
//! block, an estimate otherwise, and only ever used for reports. Masking decisions use whole
//! spans only: a unit is *maskable* when its span is entirely free and so is every
//! partner's span (the 2012 `pair`; for our interleave the partners share the span, but
//! the rule is implemented for any pairing, see [`Sections::with_layout`]).
//!
//! The invariant: a unit is masked only while it and its partners are entirely free, and
//! it is unmasked before any page in it is handed out. [`Sections::mask_free_units`]
//! (called before sleep) masks every maskable unit and tells the zone which spans those
//! masks depend on ([`Zone::pasr_guard`]); from then on any free block leaving one of those
//! spans (allocation, stealing, isolation, `alloc_contig_range`, reserving) flags it in the
//! zone, and [`Sections::unmask_touched`] (called after every allocation; one load and
//! compare when nothing happened) unmasks every unit depending on a flagged span and
//! returns the new mask values for the firmware to write before the memory is used. Masks
//! are software state until written: self-refresh, where masked units forget, happens only
//! after the firmware wrote the last values. [`Sections::maskable`] shows what would be
//! masked right now, without changing anything.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::geometry::{Geometry, Unit, UnitKind, MAX_DIES, MAX_UNITS_PER_DIE};
use crate::mm::{PasrMode, PasrSetupError, PasrSpans, Pfn, Zone, MAX_ORDER, PAGE_SHIFT};

/// Most units: 4 dies of 8 banks or segments (MR16/MR17 are 8 bits wide).
pub const MAX_UNITS: usize = (MAX_DIES * MAX_UNITS_PER_DIE) as usize;

/// Bytes of a MAX_ORDER block, the zone's counting granule.
const BLOCK_BYTES: u64 = 1 << (MAX_ORDER + PAGE_SHIFT);

/// Mask values, one byte per die (bit `i`: bank or segment `i` is not refreshed in
/// self-refresh), for the mode register of `kind` (MR16 banks, MR17 segments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasrMasks {
    kind: UnitKind,
    dies: u8,
    per_die: [u8; MAX_DIES as usize],
}

impl PasrMasks {
    /// No unit masked.
    pub fn none(kind: UnitKind, dies: u8) -> PasrMasks {
        PasrMasks {
            kind,
            dies: dies.min(MAX_DIES as u8),
            per_die: [0; MAX_DIES as usize],
        }
    }

    pub fn kind(&self) -> UnitKind {
        self.kind
    }

    /// The mode register these values go to (16 or 17).
    pub fn mode_register(&self) -> u8 {
        self.kind.mode_register()
    }

    pub fn dies(&self) -> u8 {
        self.dies
    }

    /// The mask value of die `die` (0 past the last die).
    pub fn die(&self, die: u8) -> u8 {
        if die < self.dies {
            self.per_die[die as usize]
        } else {
            0
        }
    }

    /// One value per die.
    pub fn per_die(&self) -> &[u8] {
        &self.per_die[..self.dies as usize]
    }

    pub fn contains(&self, unit: Unit) -> bool {
        unit.index < 8 && self.die(unit.die) & (1 << unit.index) != 0
    }

    /// The masked units, die-major.
    pub fn units(&self) -> impl Iterator<Item = Unit> + '_ {
        (0..self.dies).flat_map(move |die| {
            (0..8u8)
                .filter(move |&index| self.per_die[die as usize] & (1 << index) != 0)
                .map(move |index| Unit { die, index })
        })
    }

    /// Number of masked units.
    pub fn count(&self) -> usize {
        self.per_die().iter().map(|m| m.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

impl fmt::Display for PasrMasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MR{}", self.mode_register())?;
        for (die, mask) in self.per_die().iter().enumerate() {
            write!(f, " die{die}={mask:#04x}")?;
        }
        Ok(())
    }
}

/// Why a section table was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionsError {
    /// The spans do not suit the zone's counters.
    Spans(PasrSetupError),
    /// Dies or units per die out of range (1 to 4, 1 to 8).
    Shape,
    /// The unit-to-span table is not one entry per unit, or names a span past the last.
    UnitSpan,
    /// A pair names a unit that does not exist, or pairs a unit with itself.
    Pair,
}

impl fmt::Display for SectionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionsError::Spans(e) => write!(f, "PASR spans refused: {e}"),
            SectionsError::Shape => f.write_str("PASR layout needs 1 to 4 dies of 1 to 8 units"),
            SectionsError::UnitSpan => {
                f.write_str("PASR layout needs one span per unit, each inside the window")
            }
            SectionsError::Pair => {
                f.write_str("a PASR pair names a missing unit or the unit itself")
            }
        }
    }
}

impl core::error::Error for SectionsError {}

/// One unit as the `pasr` shell lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitReport {
    pub unit: Unit,
    pub span: usize,
    /// The frames of the unit's span.
    pub span_pfns: Range<Pfn>,
    /// Bytes the unit holds (its share of the span).
    pub bytes: u64,
    /// Its share of the span's free MAX_ORDER blocks (an estimate when interleave granules
    /// do not divide a block evenly among the dies).
    pub free_bytes: u64,
    pub span_free_blocks: usize,
    pub span_blocks: usize,
    /// The unit and its partners are entirely free now.
    pub maskable: bool,
    /// The unit is masked now.
    pub masked: bool,
    pub partners: Vec<Unit>,
}

/// The units of one PASR window, their spans and partners, and which are masked.
#[derive(Clone, Debug)]
pub struct Sections {
    kind: UnitKind,
    dies: u8,
    units_per_die: u8,
    spans: PasrSpans,
    /// Per unit (die-major index): its span.
    unit_span: [u8; MAX_UNITS],
    /// Per unit: the span bits that must be entirely free for it to be masked.
    guard: [u64; MAX_UNITS],
    /// Per unit: its partners' unit bits.
    partners: [u32; MAX_UNITS],
    /// Units per span.
    units_in_span: Vec<u8>,
    /// Masked unit bits.
    masked: u32,
}

impl Sections {
    /// The units of a geometry: spans as it lays them out, partners as its interleave pairs
    /// them.
    pub fn from_geometry(geometry: &Geometry) -> Result<Sections, SectionsError> {
        let page = 1u64 << PAGE_SHIFT;
        if !geometry.base().is_multiple_of(page) || !geometry.span_bytes().is_multiple_of(page) {
            return Err(SectionsError::Spans(PasrSetupError::SpanSize {
                span_pages: (geometry.span_bytes() >> PAGE_SHIFT) as usize,
            }));
        }
        let spans = PasrSpans::new(
            (geometry.base() >> PAGE_SHIFT) as Pfn,
            (geometry.span_bytes() >> PAGE_SHIFT) as usize,
            geometry.nr_spans(),
        )
        .map_err(SectionsError::Spans)?;
        let unit_span: Vec<usize> = geometry.units().map(|u| geometry.span_of_unit(u)).collect();
        let pairs: Vec<(Unit, Unit)> = geometry
            .units()
            .flat_map(|u| geometry.partners(u).map(move |p| (u, p)))
            .collect();
        Sections::with_layout(
            spans,
            geometry.kind(),
            geometry.dies() as u8,
            geometry.units_per_die() as u8,
            &unit_span,
            &pairs,
        )
    }

    /// Any layout: `unit_span[die * units_per_die + index]` is the span unit `(die, index)`
    /// lies in, and each `(a, b)` in `pairs` makes `a` and `b` partners (both ways): neither
    /// is masked unless both spans are entirely free. This is the 2012 framework's `pair`,
    /// general enough for controllers that interleave units from different address ranges.
    pub fn with_layout(
        spans: PasrSpans,
        kind: UnitKind,
        dies: u8,
        units_per_die: u8,
        unit_span: &[usize],
        pairs: &[(Unit, Unit)],
    ) -> Result<Sections, SectionsError> {
        if dies == 0
            || u32::from(dies) > MAX_DIES
            || units_per_die == 0
            || u32::from(units_per_die) > MAX_UNITS_PER_DIE
        {
            return Err(SectionsError::Shape);
        }
        let nr_units = dies as usize * units_per_die as usize;
        if unit_span.len() != nr_units || unit_span.iter().any(|&s| s >= spans.nr_spans()) {
            return Err(SectionsError::UnitSpan);
        }
        let index = |u: Unit| -> Option<usize> {
            (u.die < dies && u.index < units_per_die)
                .then(|| u.die as usize * units_per_die as usize + u.index as usize)
        };
        let mut partners = [0u32; MAX_UNITS];
        for &(a, b) in pairs {
            match (index(a), index(b)) {
                (Some(i), Some(j)) if i != j => {
                    partners[i] |= 1 << j;
                    partners[j] |= 1 << i;
                }
                _ => return Err(SectionsError::Pair),
            }
        }
        let mut table = [0u8; MAX_UNITS];
        let mut units_in_span = vec![0u8; spans.nr_spans()];
        for (i, &s) in unit_span.iter().enumerate() {
            table[i] = s as u8;
            units_in_span[s] += 1;
        }
        let mut guard = [0u64; MAX_UNITS];
        for i in 0..nr_units {
            guard[i] = bits(partners[i])
                .map(|j| 1u64 << table[j])
                .fold(1u64 << table[i], |g, b| g | b);
        }
        Ok(Sections {
            kind,
            dies,
            units_per_die,
            spans,
            unit_span: table,
            guard,
            partners,
            units_in_span,
            masked: 0,
        })
    }

    pub fn spans(&self) -> PasrSpans {
        self.spans
    }

    pub fn kind(&self) -> UnitKind {
        self.kind
    }

    pub fn dies(&self) -> u8 {
        self.dies
    }

    pub fn units_per_die(&self) -> u8 {
        self.units_per_die
    }

    fn nr_units(&self) -> usize {
        self.dies as usize * self.units_per_die as usize
    }

    fn index(&self, unit: Unit) -> Option<usize> {
        (unit.die < self.dies && unit.index < self.units_per_die)
            .then(|| unit.die as usize * self.units_per_die as usize + unit.index as usize)
    }

    fn unit_at(&self, i: usize) -> Unit {
        Unit {
            die: (i / self.units_per_die as usize) as u8,
            index: (i % self.units_per_die as usize) as u8,
        }
    }

    /// Every unit, die-major.
    pub fn units(&self) -> impl Iterator<Item = Unit> + '_ {
        (0..self.nr_units()).map(|i| self.unit_at(i))
    }

    /// The span `unit` lies in.
    pub fn span_of_unit(&self, unit: Unit) -> Option<usize> {
        self.index(unit).map(|i| self.unit_span[i] as usize)
    }

    /// The units that must be free for `unit` to be masked.
    pub fn partners(&self, unit: Unit) -> Vec<Unit> {
        self.index(unit)
            .map(|i| bits(self.partners[i]).map(|j| self.unit_at(j)).collect())
            .unwrap_or_default()
    }

    /// Span bits that must all be entirely free for `unit` to be masked (its own span and
    /// its partners').
    pub fn guard_spans(&self, unit: Unit) -> u64 {
        self.index(unit).map_or(0, |i| self.guard[i])
    }

    /// The units lying in the spans of `spans` (span bits).
    pub fn units_in(&self, spans: u64) -> impl Iterator<Item = Unit> + '_ {
        (0..self.nr_units())
            .filter(move |&i| spans & (1 << self.unit_span[i]) != 0)
            .map(|i| self.unit_at(i))
    }

    /// Turn PASR on in `zone` for these spans (any earlier set-up and every mask dropped).
    pub fn attach(&mut self, zone: &mut Zone<'_>, mode: PasrMode) -> Result<(), PasrSetupError> {
        zone.enable_pasr(self.spans, mode)?;
        self.masked = 0;
        zone.pasr_guard(0);
        Ok(())
    }

    /// Unit bits of the units that may be masked now: their guard spans are all entirely free.
    fn maskable_bits(&self, zone: &Zone<'_>) -> u32 {
        let free = zone.pasr_free_spans();
        (0..self.nr_units())
            .filter(|&i| self.guard[i] & !free == 0)
            .fold(0, |m, i| m | 1 << i)
    }

    fn masks_of(&self, units: u32) -> PasrMasks {
        let mut masks = PasrMasks::none(self.kind, self.dies);
        for i in bits(units) {
            let u = self.unit_at(i);
            masks.per_die[u.die as usize] |= 1 << u.index;
        }
        masks
    }

    fn guard_of(&self, units: u32) -> u64 {
        bits(units).fold(0, |g, i| g | self.guard[i])
    }

    /// What [`Sections::mask_free_units`] would mask right now (changes nothing): for a live
    /// "would be maskable" display.
    pub fn maskable(&self, zone: &Zone<'_>) -> PasrMasks {
        self.masks_of(self.maskable_bits(zone))
    }

    /// The current masks.
    pub fn masks(&self) -> PasrMasks {
        self.masks_of(self.masked)
    }

    /// Mask every unit whose span and partners' spans are entirely free, and guard those
    /// spans in the zone. Returns the values to write (the firmware does so before entering
    /// self-refresh).
    pub fn mask_free_units(&mut self, zone: &mut Zone<'_>) -> PasrMasks {
        // What was touched since is moot: the masks are recomputed from the spans' state now.
        let _ = zone.pasr_take_touched();
        self.masked = self.maskable_bits(zone);
        zone.pasr_guard(self.guard_of(self.masked));
        self.masks()
    }

    /// The after-allocation check: if memory left a span that a masked unit depends on,
    /// unmask every such unit and return the new values, which the firmware writes before
    /// the memory is used. `None` (one load and compare in the zone) when nothing changed.
    #[inline]
    pub fn unmask_touched(&mut self, zone: &mut Zone<'_>) -> Option<PasrMasks> {
        let touched = zone.pasr_take_touched();
        if touched == 0 {
            return None;
        }
        Some(self.unmask_spans(zone, touched))
    }

    #[inline(never)]
    fn unmask_spans(&mut self, zone: &mut Zone<'_>, touched: u64) -> PasrMasks {
        for i in bits(self.masked) {
            if self.guard[i] & touched != 0 {
                self.masked &= !(1 << i);
            }
        }
        zone.pasr_guard(self.guard_of(self.masked));
        self.masks()
    }

    /// Unmask everything (before rearranging memory, or when PASR is switched off). Returns
    /// the values to write.
    pub fn unmask_all(&mut self, zone: &mut Zone<'_>) -> PasrMasks {
        let _ = zone.pasr_take_touched();
        self.masked = 0;
        zone.pasr_guard(0);
        self.masks()
    }

    /// `unit`'s share of its span's free MAX_ORDER blocks, in bytes.
    pub fn unit_free_bytes(&self, zone: &Zone<'_>, unit: Unit) -> u64 {
        let Some(span) = self.span_of_unit(unit) else {
            return 0;
        };
        let blocks = zone.pasr_free_blocks(span).unwrap_or(0) as u64;
        blocks * BLOCK_BYTES / u64::from(self.units_in_span[span].max(1))
    }

    /// Every unit's counters and state, for the `pasr` shell listing.
    pub fn report(&self, zone: &Zone<'_>) -> Vec<UnitReport> {
        let maskable = self.maskable_bits(zone);
        (0..self.nr_units())
            .map(|i| {
                let unit = self.unit_at(i);
                let span = self.unit_span[i] as usize;
                let state = zone.pasr_span_state(span);
                let share = u64::from(self.units_in_span[span].max(1));
                UnitReport {
                    unit,
                    span,
                    span_pfns: self.spans.span_range(span),
                    bytes: ((self.spans.span_pages() as u64) << PAGE_SHIFT) / share,
                    free_bytes: self.unit_free_bytes(zone, unit),
                    span_free_blocks: state.as_ref().map_or(0, |s| s.free_blocks),
                    span_blocks: self.spans.blocks_per_span(),
                    maskable: maskable & (1 << i) != 0,
                    masked: self.masked & (1 << i) != 0,
                    partners: self.partners(unit),
                }
            })
            .collect()
    }

    /// The invariant, checked against the zone: the zone's own PASR state is consistent,
    /// no touch is pending (call after [`Sections::unmask_touched`]), every masked unit's
    /// span and partners' spans are entirely free, and the zone guards exactly those spans.
    pub fn check_invariants(&self, zone: &Zone<'_>) -> Result<(), String> {
        zone.check_pasr_invariants()?;
        if zone.pasr_spans() != Some(self.spans) {
            return Err(format!(
                "zone PASR spans {:?} are not the sections' {:?}",
                zone.pasr_spans(),
                self.spans
            ));
        }
        if zone.pasr_touched() != 0 {
            return Err(format!(
                "spans {:#x} touched and not unmasked yet",
                zone.pasr_touched()
            ));
        }
        let free = zone.pasr_free_spans();
        if let Some(i) = bits(self.masked).find(|&i| self.guard[i] & !free != 0) {
            let u = self.unit_at(i);
            return Err(format!(
                "die {} {} {} is masked but spans {:#x} are not entirely free",
                u.die,
                self.kind.name(),
                u.index,
                self.guard[i] & !free
            ));
        }
        if zone.pasr_guarded() != self.guard_of(self.masked) {
            return Err(format!(
                "zone guards spans {:#x}, the masks need {:#x}",
                zone.pasr_guarded(),
                self.guard_of(self.masked)
            ));
        }
        Ok(())
    }
}

/// Indices of the set bits of a unit mask, lowest first.
fn bits(mask: u32) -> impl Iterator<Item = usize> {
    crate::util::bits::set_bits(u64::from(mask))
}

#[cfg(test)]
mod tests;
