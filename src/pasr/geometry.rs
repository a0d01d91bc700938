//! PASR geometry: which physical bytes each DRAM die's banks or segments hold, read from our
//! device-tree binding (`monolith,pasr-dram`, documented in the README).
//!
//! # Theory of operation
//!
//! LPDDR self-refresh can skip refreshing parts of a die: a bank (mode register MR16,
//! "bank-selective") or a segment of rows (MR17, "segment-selective"). A mask bit set means
//! that *unit* is not refreshed, and whatever it held is gone. To mask safely the firmware
//! has to know, for every unit, exactly which physical bytes it holds; that is this module.
//!
//! The binding describes one physical window (`reg`) backed by `N` equal dies (phandles of
//! Linux's `jedec,lpddr4` rank nodes, whose `density` in megabits gives each die's size),
//! each split into `units-per-die` equal units of one kind (`bank` or `segment`):
//!
//! - **Plain** (`monolith,interleave-bytes` absent or 0): die `d` backs
//!   `[base + d * die_bytes, +die_bytes)` and its unit `u` is the `u`-th `unit_bytes` of
//!   that. A unit is one contiguous physical range.
//! - **Interleaved** (`monolith,interleave-bytes = <G>`): the dies take turns every `G`
//!   bytes, so physical offset `o` lives in die `(o / G) % N` at die address
//!   `(o / (G * N)) * G + o % G`. Unit `u` of every die then covers the same physical
//!   *span* `[base + u * unit_bytes * N, +unit_bytes * N)`, each die holding every `N`-th
//!   granule of it. The units sharing a span are *partners* (with two dies, the 2012
//!   framework's "pair"): none of them may be masked unless all of them are free.
//!
//! Either way the window splits into equal spans, one per unit index (plain: one per
//! `(die, unit)`), and every span is a whole number of the buddy allocator's largest blocks
//! (checked here), so the allocator can count free memory per span with one shift.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use crate::dt::tree::NodeId;
use crate::dt::{cells, DeviceTree};

/// The binding's `compatible`.
pub const COMPATIBLE: &str = "monolith,pasr-dram";
/// Linux's LPDDR4 rank binding, whose `density` sizes a die.
pub const LPDDR4_COMPATIBLE: &str = "jedec,lpddr4";
/// MR16 and MR17 are 8 bits wide: at most 8 banks or 8 segments per die.
pub const MAX_UNITS_PER_DIE: u32 = 8;
/// Dies (ranks) one controller model drives.
pub const MAX_DIES: u32 = 4;

/// Which mode register masks a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    /// Bank-selective refresh, MR16.
    Bank,
    /// Segment-selective refresh, MR17.
    Segment,
}

impl UnitKind {
    pub fn name(self) -> &'static str {
        match self {
            UnitKind::Bank => "bank",
            UnitKind::Segment => "segment",
        }
    }

    /// The mode register that masks this kind of unit.
    pub fn mode_register(self) -> u8 {
        match self {
            UnitKind::Bank => 16,
            UnitKind::Segment => 17,
        }
    }
}

/// One maskable unit: a bank or segment of one die.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    pub die: u8,
    pub index: u8,
}

/// Why a `monolith,pasr-dram` node was not accepted. Nothing is masked on a board whose
/// geometry is refused: the firmware says why and runs with every bank refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// More than one `monolith,pasr-dram` node.
    SeveralNodes,
    /// `reg` missing, malformed or not exactly one window.
    Reg,
    /// `monolith,dies` missing, empty, too long, or naming something that is not an
    /// available `jedec,lpddr4` node with a one-cell `density`.
    Dies,
    /// The dies differ in density.
    UnequalDies,
    /// The dies' total size is not the `reg` window's size.
    SizeMismatch { dies_bytes: u64, window_bytes: u64 },
    /// `monolith,pasr-unit` is neither `bank` nor `segment`.
    UnitKind,
    /// `monolith,units-per-die` missing, 0, above 8, or not dividing the die evenly.
    UnitsPerDie,
    /// `monolith,interleave-bytes` not a power of two of at least a page, or not dividing
    /// a unit.
    Interleave,
    /// A span is not a whole number of the allocator's largest blocks.
    SpanAlignment { span_bytes: u64, block_bytes: u64 },
    /// The window's base is not aligned to a span.
    BaseAlignment,
}

impl GeometryError {
    pub fn reason(self) -> &'static str {
        match self {
            GeometryError::SeveralNodes => "more than one monolith,pasr-dram node",
            GeometryError::Reg => "reg must be exactly one (address, size) window",
            GeometryError::Dies => {
                "monolith,dies must list 1 to 4 phandles of available jedec,lpddr4 nodes, each with a one-cell density"
            }
            GeometryError::UnequalDies => "the dies in monolith,dies differ in density",
            GeometryError::SizeMismatch { .. } => {
                "the dies' densities do not add up to the reg window's size"
            }
            GeometryError::UnitKind => "monolith,pasr-unit must be \"bank\" or \"segment\"",
            GeometryError::UnitsPerDie => {
                "monolith,units-per-die must be 1 to 8 and divide a die into equal power-of-two units"
            }
            GeometryError::Interleave => {
                "monolith,interleave-bytes must be a power of two, at least 4096, dividing a unit (0 or absent: not interleaved)"
            }
            GeometryError::SpanAlignment { .. } => {
                "a bank or segment span is not a whole number of the allocator's largest blocks"
            }
            GeometryError::BaseAlignment => "the reg window's base is not aligned to a span",
        }
    }
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())?;
        match *self {
            GeometryError::SizeMismatch {
                dies_bytes,
                window_bytes,
            } => write!(f, " ({dies_bytes:#x} against {window_bytes:#x})"),
            GeometryError::SpanAlignment {
                span_bytes,
                block_bytes,
            } => write!(f, " ({span_bytes:#x} against {block_bytes:#x})"),
            _ => Ok(()),
        }
    }
}

/// Dies, units and their physical layout. Built by [`Geometry::from_tree`] or
/// [`Geometry::new`]; every accessor is total once built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    base: u64,
    dies: u32,
    die_bytes: u64,
    units_per_die: u32,
    kind: UnitKind,
    /// `None`: plain. `Some(g)`: dies alternate every `g` bytes.
    interleave: Option<u64>,
    /// The controller model's node (`monolith,controller`), when the tree names one.
    controller: Option<NodeId>,
}

impl Geometry {
    /// A geometry from its numbers, validated as [`Geometry::from_tree`] validates the
    /// tree's. `max_block_bytes` is the allocator's largest block (spans must be whole
    /// numbers of it).
    pub fn new(
        base: u64,
        dies: u32,
        die_bytes: u64,
        units_per_die: u32,
        kind: UnitKind,
        interleave: Option<u64>,
        max_block_bytes: u64,
    ) -> Result<Geometry, GeometryError> {
        if dies == 0 || dies > MAX_DIES {
            return Err(GeometryError::Dies);
        }
        if units_per_die == 0
            || units_per_die > MAX_UNITS_PER_DIE
            || die_bytes == 0
            || !die_bytes.is_multiple_of(u64::from(units_per_die))
            || !(die_bytes / u64::from(units_per_die)).is_power_of_two()
        {
            return Err(GeometryError::UnitsPerDie);
        }
        let unit_bytes = die_bytes / u64::from(units_per_die);
        let interleave = match interleave {
            None | Some(0) => None,
            Some(g) if g.is_power_of_two() && g >= 4096 && unit_bytes.is_multiple_of(g) => Some(g),
            Some(_) => return Err(GeometryError::Interleave),
        };
        let total = die_bytes
            .checked_mul(u64::from(dies))
            .ok_or(GeometryError::Reg)?;
        base.checked_add(total).ok_or(GeometryError::Reg)?;
        let geometry = Geometry {
            base,
            dies,
            die_bytes,
            units_per_die,
            kind,
            interleave,
            controller: None,
        };
        let span = geometry.span_bytes();
        if max_block_bytes == 0 || !span.is_multiple_of(max_block_bytes) {
            return Err(GeometryError::SpanAlignment {
                span_bytes: span,
                block_bytes: max_block_bytes,
            });
        }
        if !base.is_multiple_of(span) {
            return Err(GeometryError::BaseAlignment);
        }
        Ok(geometry)
    }

    /// The tree's `monolith,pasr-dram` node as a geometry: `Ok(None)` when there is none
    /// (or it is disabled), an error naming what is wrong when it is not usable.
    pub fn from_tree(
        tree: &DeviceTree<'_>,
        max_block_bytes: u64,
    ) -> Result<Option<Geometry>, GeometryError> {
        let mut found = tree
            .nodes()
            .filter(|(_, n)| n.is_available() && n.is_compatible(&[COMPATIBLE]));
        let Some((id, node)) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(GeometryError::SeveralNodes);
        }
        let window = match tree.reg(id).as_deref() {
            Ok([window]) if window.end > window.start => window.clone(),
            _ => return Err(GeometryError::Reg),
        };
        let phandles: Vec<u32> = node
            .property("monolith,dies")
            .map(|v| cells::cell_list(v).collect())
            .unwrap_or_default();
        if phandles.is_empty() || phandles.len() > MAX_DIES as usize {
            return Err(GeometryError::Dies);
        }
        let mut die_bytes = None;
        for phandle in phandles.iter().copied() {
            let die = tree.by_phandle(phandle).map(|d| tree.node(d));
            let density_mbit = die
                .filter(|d| d.is_available() && d.is_compatible(&[LPDDR4_COMPATIBLE]))
                .and_then(|d| d.u32("density"))
                .filter(|&d| d != 0)
                .ok_or(GeometryError::Dies)?;
            let bytes = u64::from(density_mbit) << 17; // megabits to bytes: * 2^20 / 8
            match die_bytes {
                None => die_bytes = Some(bytes),
                Some(b) if b == bytes => {}
                Some(_) => return Err(GeometryError::UnequalDies),
            }
        }
        let die_bytes = die_bytes.ok_or(GeometryError::Dies)?;
        let dies = phandles.len() as u32;
        let window_bytes = window.end - window.start;
        if die_bytes.checked_mul(u64::from(dies)) != Some(window_bytes) {
            return Err(GeometryError::SizeMismatch {
                dies_bytes: die_bytes.saturating_mul(u64::from(dies)),
                window_bytes,
            });
        }
        let kind = match node.string("monolith,pasr-unit") {
            Some("bank") => UnitKind::Bank,
            Some("segment") => UnitKind::Segment,
            _ => return Err(GeometryError::UnitKind),
        };
        let units_per_die = node
            .u32("monolith,units-per-die")
            .ok_or(GeometryError::UnitsPerDie)?;
        let interleave = match node.property("monolith,interleave-bytes") {
            None => None,
            Some(v) => Some(u64::from(
                cells::u32_value(v).ok_or(GeometryError::Interleave)?,
            )),
        };
        let mut geometry = Geometry::new(
            window.start,
            dies,
            die_bytes,
            units_per_die,
            kind,
            interleave,
            max_block_bytes,
        )?;
        geometry.controller = node
            .u32("monolith,controller")
            .and_then(|p| tree.by_phandle(p));
        Ok(Some(geometry))
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    /// The whole window the dies back.
    pub fn window(&self) -> Range<u64> {
        self.base..self.base + self.total_bytes()
    }

    pub fn total_bytes(&self) -> u64 {
        self.die_bytes * u64::from(self.dies)
    }

    pub fn dies(&self) -> u32 {
        self.dies
    }

    pub fn die_bytes(&self) -> u64 {
        self.die_bytes
    }

    pub fn units_per_die(&self) -> u32 {
        self.units_per_die
    }

    pub fn kind(&self) -> UnitKind {
        self.kind
    }

    pub fn interleave(&self) -> Option<u64> {
        self.interleave
    }

    /// The controller model's device-tree node, if `monolith,controller` names one.
    pub fn controller(&self) -> Option<NodeId> {
        self.controller
    }

    /// Bytes one unit holds.
    pub fn unit_bytes(&self) -> u64 {
        self.die_bytes / u64::from(self.units_per_die)
    }

    /// Every unit, die-major.
    pub fn units(&self) -> impl Iterator<Item = Unit> + '_ {
        (0..self.dies).flat_map(move |die| {
            (0..self.units_per_die).map(move |index| Unit {
                die: die as u8,
                index: index as u8,
            })
        })
    }

    /// Bytes of one span: the physical range one unit index covers (plain: one unit;
    /// interleaved: every die's unit of that index).
    pub fn span_bytes(&self) -> u64 {
        match self.interleave {
            None => self.unit_bytes(),
            Some(_) => self.unit_bytes() * u64::from(self.dies),
        }
    }

    /// Number of spans in the window.
    pub fn nr_spans(&self) -> usize {
        (self.total_bytes() / self.span_bytes()) as usize
    }

    /// The span holding physical byte `phys`.
    pub fn span_of(&self, phys: u64) -> Option<usize> {
        if !self.window().contains(&phys) {
            return None;
        }
        Some(((phys - self.base) / self.span_bytes()) as usize)
    }

    /// The physical range of span `span`.
    pub fn span_range(&self, span: usize) -> Range<u64> {
        let start = self.base + span as u64 * self.span_bytes();
        start..start + self.span_bytes()
    }

    /// The span a unit lies in.
    pub fn span_of_unit(&self, unit: Unit) -> usize {
        match self.interleave {
            None => unit.die as usize * self.units_per_die as usize + unit.index as usize,
            Some(_) => unit.index as usize,
        }
    }

    /// The units whose bytes lie in span `span` (one plain, every die's when interleaved).
    pub fn units_in_span(&self, span: usize) -> impl Iterator<Item = Unit> + '_ {
        let (dies, index) = match self.interleave {
            None => {
                let upd = self.units_per_die as usize;
                (span / upd..span / upd + 1, span % upd)
            }
            Some(_) => (0..self.dies as usize, span),
        };
        dies.map(move |die| Unit {
            die: die as u8,
            index: index as u8,
        })
    }

    /// The other units that must be free for `unit` to be masked: none plain, the other
    /// dies' unit of the same index when interleaved (the 2012 framework's `pair`).
    pub fn partners(&self, unit: Unit) -> impl Iterator<Item = Unit> + '_ {
        let span = self.span_of_unit(unit);
        self.units_in_span(span).filter(move |u| *u != unit)
    }

    /// The die and unit holding physical byte `phys`.
    pub fn unit_of(&self, phys: u64) -> Option<Unit> {
        if !self.window().contains(&phys) {
            return None;
        }
        let offset = phys - self.base;
        let (die, die_offset) = match self.interleave {
            None => (offset / self.die_bytes, offset % self.die_bytes),
            Some(g) => {
                let n = u64::from(self.dies);
                ((offset / g) % n, (offset / (g * n)) * g + offset % g)
            }
        };
        Some(Unit {
            die: die as u8,
            index: (die_offset / self.unit_bytes()) as u8,
        })
    }

    /// The physical ranges a unit holds, in address order: one range plain, every
    /// `dies`-th interleave granule of its span when interleaved. What the controller
    /// model overwrites when the unit is masked in self-refresh.
    pub fn unit_extents(&self, unit: Unit) -> impl Iterator<Item = Range<u64>> + '_ {
        let span = self.span_range(self.span_of_unit(unit));
        let (first, step, len, count) = match self.interleave {
            None => (
                self.base
                    + u64::from(unit.die) * self.die_bytes
                    + u64::from(unit.index) * self.unit_bytes(),
                0,
                self.unit_bytes(),
                1,
            ),
            Some(g) => (
                span.start + u64::from(unit.die) * g,
                g * u64::from(self.dies),
                g,
                self.unit_bytes() / g,
            ),
        };
        (0..count).map(move |i| {
            let start = first + i * step;
            start..start + len
        })
    }

    /// Bytes of `range` that `unit` holds (ranges outside the window hold none).
    pub fn unit_bytes_in(&self, unit: Unit, range: Range<u64>) -> u64 {
        let span = self.span_range(self.span_of_unit(unit));
        let lo = range.start.max(span.start);
        let hi = range.end.min(span.end);
        if lo >= hi {
            return 0;
        }
        match self.interleave {
            None => hi - lo,
            Some(g) => {
                // Count granule by granule only at the two ragged ends; whole rounds of
                // `dies` granules give each die exactly one granule.
                let round = g * u64::from(self.dies);
                let mut total = 0;
                let mut at = lo;
                while at < hi && !(at - span.start).is_multiple_of(round) {
                    let next = ((at / g) + 1) * g;
                    if self.unit_of(at) == Some(unit) {
                        total += next.min(hi) - at;
                    }
                    at = next.min(hi);
                }
                let whole = (hi - at) / round;
                total += whole * g;
                at += whole * round;
                while at < hi {
                    let next = ((at / g) + 1) * g;
                    if self.unit_of(at) == Some(unit) {
                        total += next.min(hi) - at;
                    }
                    at = next.min(hi);
                }
                total
            }
        }
    }
}

#[cfg(test)]
mod tests;
