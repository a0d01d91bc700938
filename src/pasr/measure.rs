//! What the in-guest PASR benchmark measures, as safe code: a loop of order-0 allocations
//! and frees through the buddy, in batches large enough to split and re-merge MAX_ORDER
//! blocks (where the PASR hooks are), so the instructions of one zone with PASR and one
//! without can be counted on the same work (it only does the work and returns a
//! checksum); and [`VacateCost`], the vacating pass's instructions per MiB moved against
//! a memcpy of the same bytes, with the one-line form the benchmark prints and
//! `cargo xtask bench` reads back.
#![forbid(unsafe_code)]

use core::fmt;

use crate::mm::{AllocError, Gfp, Pfn, Zone, PAGE_SIZE};

/// Pages in a MiB.
const PAGES_PER_MIB: u64 = (1 << 20) / PAGE_SIZE as u64;

/// One run of the vacating pass on a shaped workload, and a memcpy of the bytes it moved in
/// the same run (`crate::kmem::pasr::vacate_cost`). Instructions are guest instructions
/// (the PMU's INST_RETIRED under `-icount`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VacateCost {
    /// Pages migrated or dropped by the pass.
    pub pages_moved: u64,
    /// Units (banks or segments) the pass emptied.
    pub units_vacated: u32,
    /// Units masked after the pass, of `units`.
    pub units_masked: u32,
    pub units: u32,
    /// Workload pages that stayed where they were (in spans kept refreshed).
    pub pages_kept: u64,
    /// Instructions of the whole pass (survey, plan, isolation, evacuation, masking).
    pub vacate_instructions: u64,
    /// Instructions of one memcpy of `pages_moved` pages with migration's copy routine.
    pub memcpy_instructions: u64,
}

/// The prefix of [`VacateCost`]'s line (what `cargo xtask bench` looks for).
pub const VACATE_COST_TAG: &str = "vacate_cost:";

impl VacateCost {
    /// `instructions` per MiB moved; `None` when nothing moved.
    pub fn per_mib(&self, instructions: u64) -> Option<f64> {
        (self.pages_moved != 0)
            .then(|| instructions as f64 * PAGES_PER_MIB as f64 / self.pages_moved as f64)
    }

    /// The pass's instructions over the memcpy's; `None` when nothing moved or was copied.
    pub fn ratio(&self) -> Option<f64> {
        (self.pages_moved != 0 && self.memcpy_instructions != 0)
            .then(|| self.vacate_instructions as f64 / self.memcpy_instructions as f64)
    }

    /// The fields of [`VacateCost`]'s line, in order.
    pub const FIELDS: [&'static str; 7] = [
        "pages_moved",
        "units_vacated",
        "units_masked",
        "units",
        "pages_kept",
        "vacate_instructions",
        "memcpy_instructions",
    ];

    fn values(&self) -> [u64; 7] {
        [
            self.pages_moved,
            u64::from(self.units_vacated),
            u64::from(self.units_masked),
            u64::from(self.units),
            self.pages_kept,
            self.vacate_instructions,
            self.memcpy_instructions,
        ]
    }
}

/// The machine-readable line: `vacate_cost: pages_moved=N units_vacated=N ...`, every field
/// of [`VacateCost::FIELDS`] once, in order, as a decimal integer.
impl fmt::Display for VacateCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(VACATE_COST_TAG)?;
        for (name, value) in Self::FIELDS.iter().zip(self.values()) {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

/// `rounds` times: allocate `scratch.len()` order-0 Movable pages (their pfns go into
/// `scratch`), then free them in the same order. With a batch of more than a MAX_ORDER block
/// (1024 pages) each round splits at least one MAX_ORDER block and merges it back, so the
/// PASR hooks run every round, as they would under churn. Allocates nothing else, and
/// (unless it runs out of memory, when stealing may retype pageblocks) leaves every frame
/// as it found it. Returns the sum of all pfns handed out (so the
/// work cannot be optimised away, and two runs can be compared). On an allocation failure
/// the pages of the current round are freed and the error returned.
pub fn order0_alloc_free_loop(
    zone: &mut Zone<'_>,
    scratch: &mut [Pfn],
    rounds: usize,
) -> Result<u64, AllocError> {
    let mut sum = 0u64;
    for _ in 0..rounds {
        for i in 0..scratch.len() {
            match zone.alloc_pages(0, Gfp::MOVABLE) {
                Ok(pfn) => {
                    scratch[i] = pfn;
                    sum = sum.wrapping_add(pfn as u64);
                }
                Err(e) => {
                    for &pfn in &scratch[..i] {
                        // Just allocated at order 0: freeing cannot be refused.
                        let _ = zone.free_pages(pfn, 0);
                    }
                    return Err(e);
                }
            }
        }
        for &pfn in scratch.iter() {
            let _ = zone.free_pages(pfn, 0);
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testutil::{frames, Storage};
    use crate::mm::{PasrMode, PasrSpans};

    const BASE: Pfn = 0x40000;
    const PAGES: usize = 8 * 1024;

    #[test]
    fn vacate_cost_per_mib_and_ratio() {
        let cost = VacateCost {
            pages_moved: 512,
            units_vacated: 2,
            units_masked: 15,
            units: 16,
            pages_kept: 100,
            vacate_instructions: 3_000_000,
            memcpy_instructions: 75_000,
        };
        // 512 pages are 2 MiB.
        assert_eq!(cost.per_mib(cost.vacate_instructions), Some(1_500_000.0));
        assert_eq!(cost.per_mib(cost.memcpy_instructions), Some(37_500.0));
        assert_eq!(cost.ratio(), Some(40.0));
        assert_eq!(
            std::format!("{cost}"),
            "vacate_cost: pages_moved=512 units_vacated=2 units_masked=15 units=16 \
             pages_kept=100 vacate_instructions=3000000 memcpy_instructions=75000"
        );
        // Nothing moved: no figure rather than a division by zero.
        let idle = VacateCost {
            pages_moved: 0,
            memcpy_instructions: 0,
            ..cost
        };
        assert_eq!(idle.per_mib(idle.vacate_instructions), None);
        assert_eq!(idle.ratio(), None);
        assert_eq!(
            VacateCost {
                memcpy_instructions: 0,
                ..cost
            }
            .ratio(),
            None
        );
    }

    #[test]
    fn the_loop_leaves_the_zone_as_it_found_it_with_or_without_pasr() {
        for mode in [None, Some(PasrMode::Baseline2012), Some(PasrMode::Steering)] {
            let mut s = Storage::new(BASE, PAGES);
            let mut z = s.zone();
            z.free_range(BASE..BASE + PAGES).unwrap();
            if let Some(mode) = mode {
                z.enable_pasr(PasrSpans::new(BASE, 2048, 4).unwrap(), mode)
                    .unwrap();
            }
            let _pinned = z.alloc_pages(0, Gfp::KERNEL).unwrap();
            let before = (frames(&z), z.counters());
            let mut scratch = [0; 1500];
            let first = order0_alloc_free_loop(&mut z, &mut scratch, 3).unwrap();
            z.check_invariants().unwrap();
            z.check_pasr_invariants().unwrap();
            assert!(
                before == (frames(&z), z.counters()),
                "{mode:?} changed the zone"
            );
            // 4500 pfns of the zone, the pinned one never among them.
            let n = 3 * scratch.len() as u64;
            assert!(first >= n * (BASE as u64 + 1) && first < n * (BASE + PAGES) as u64);
            // More than the zone holds: the round is undone and the error returned (running
            // dry made the last requests steal, so pageblock types may differ).
            let mut too_many = std::vec![0; PAGES];
            assert_eq!(
                order0_alloc_free_loop(&mut z, &mut too_many, 1),
                Err(AllocError::NoMemory)
            );
            z.check_invariants().unwrap();
            z.check_pasr_invariants().unwrap();
            assert_eq!(z.counters().free_pages, before.1.free_pages);
        }
    }
}
