//! Pins on the anonymous workload's pages, as Linux's `pin_user_pages` takes them: the
//! rules a pinned page follows while it sits in (or comes from) a CMA pageblock.
//!
//! # Theory of operation
//!
//! - A **long-term pin** (`FOLL_LONGTERM`: a device keeps DMAing into the page) goes through
//!   [`crate::mm::pin_longterm`]: a page in a Cma pageblock is first migrated out by the
//!   workload's own migrator (which copies it and re-points the slot's mapping, so the
//!   anonymous mapping learns the new address), and only then is the pin's owner recorded.
//!   The page then leaves the workload (the pin holds its frame until it is freed), so a
//!   long-term pin never blocks a CMA area. That glue lives with the workload (`anon.rs`);
//!   this file has no part in it beyond the name.
//! - A **short-term pin** (I/O in flight on the page) leaves the page where it is, CMA or
//!   not, and mapped. While it is held, [`IoPins::check`] makes the page's migrator answer
//!   [`MigrateError::Again`] (busy, try again), so `alloc_contig_range` retries its pass
//!   and, after its pass budget, gives the range up (`GaveUp`) with everything restored;
//!   `cma_alloc` then tries the area's other ranges (around the pin). A page under I/O is
//!   never freed by the workload either: shrinking skips it.
//! - A short-term pin is released by [`IoPins::unpin`] (the caller's I/O is done) or, for
//!   I/O whose completion time is known, by the clock: [`IoPins::complete_due`] drops every
//!   pin whose time has come. An allocation that failed only because of short-term pins in
//!   its area waits with [`IoBackoff`] (bounded exponential back-off, woken at the next
//!   completion time rather than at the end of its step) and retries, so it never fails at
//!   once and never waits past its budget.
//!
//! Pure bookkeeping over slots, frames and counter values: built and unit-tested on the
//! host; the workload, the clock and the wait are the bare-metal side's.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::mm::{MigrateError, Owner, OwnerKind, Pfn};

/// Why a short-term pin was not taken or released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPinError {
    /// The slot already has I/O in flight (one pin per page: a second one would be
    /// released by the first one's completion).
    AlreadyPinned { slot: usize },
    /// The slot holds no short-term pin (never taken, already released, or its I/O
    /// completed).
    NotPinned { slot: usize },
    /// No room for another pin record.
    NoRoom,
}

impl fmt::Display for IoPinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IoPinError::AlreadyPinned { slot } => {
                write!(f, "anonymous slot {slot} already has I/O in flight")
            }
            IoPinError::NotPinned { slot } => {
                write!(f, "anonymous slot {slot} holds no short-term pin")
            }
            IoPinError::NoRoom => f.write_str("no room for another short-term pin"),
        }
    }
}

impl core::error::Error for IoPinError {}

/// One short-term pin: I/O in flight on the page of `slot`, at frame `pfn` (a pinned page
/// does not move, so the frame stays right), done at counter value `completes_at` if that
/// is known, else when [`IoPins::unpin`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPin {
    pub slot: usize,
    pub pfn: Pfn,
    pub completes_at: Option<u64>,
}

/// The short-term pins of the anonymous workload, sorted by slot (the migrator looks a
/// slot up for every page it is asked to move while any pin is held; with none held, the
/// check is one comparison).
#[derive(Debug, Default)]
pub struct IoPins {
    pins: Vec<IoPin>,
    /// Pins released by the clock (their I/O completed), since boot.
    pub completed: u64,
    /// Waits an allocation made for short-term pins ([`IoBackoff`] steps), since boot.
    pub waits: u64,
}

impl IoPins {
    pub const fn new() -> IoPins {
        IoPins {
            pins: Vec::new(),
            completed: 0,
            waits: 0,
        }
    }

    /// Pins held now.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    fn find(&self, slot: usize) -> Result<usize, usize> {
        self.pins.binary_search_by_key(&slot, |p| p.slot)
    }

    #[inline]
    pub fn is_pinned(&self, slot: usize) -> bool {
        !self.pins.is_empty() && self.find(slot).is_ok()
    }

    /// Start I/O on `slot`'s page at `pfn`; see [`IoPin`].
    pub fn pin(
        &mut self,
        slot: usize,
        pfn: Pfn,
        completes_at: Option<u64>,
    ) -> Result<(), IoPinError> {
        let at = match self.find(slot) {
            Ok(_) => return Err(IoPinError::AlreadyPinned { slot }),
            Err(at) => at,
        };
        self.pins.try_reserve(1).map_err(|_| IoPinError::NoRoom)?;
        self.pins.insert(
            at,
            IoPin {
                slot,
                pfn,
                completes_at,
            },
        );
        Ok(())
    }

    /// The I/O on `slot` is done: release its pin.
    pub fn unpin(&mut self, slot: usize) -> Result<IoPin, IoPinError> {
        let at = self
            .find(slot)
            .map_err(|_| IoPinError::NotPinned { slot })?;
        Ok(self.pins.remove(at))
    }

    /// What the migrator answers for a move of `owner`'s page: [`MigrateError::Again`] for
    /// an anonymous page under I/O (it will be movable once the I/O is done), `Ok` else.
    #[inline]
    pub fn check(&self, owner: Owner) -> Result<(), MigrateError> {
        if owner.is(OwnerKind::Anon) && self.is_pinned(owner.id() as usize) {
            Err(MigrateError::Again)
        } else {
            Ok(())
        }
    }

    /// Release every pin whose I/O completed by counter value `now`; how many.
    pub fn complete_due(&mut self, now: u64) -> usize {
        let before = self.pins.len();
        self.pins
            .retain(|p| p.completes_at.is_none_or(|at| at > now));
        let done = before - self.pins.len();
        self.completed += done as u64;
        done
    }

    /// Whether a pin is held on a frame in `range`.
    pub fn any_in(&self, range: Range<Pfn>) -> bool {
        self.pins.iter().any(|p| range.contains(&p.pfn))
    }

    /// The earliest known completion time of the pins on frames in `range`.
    pub fn next_completion_in(&self, range: Range<Pfn>) -> Option<u64> {
        self.pins
            .iter()
            .filter(|p| range.contains(&p.pfn))
            .filter_map(|p| p.completes_at)
            .min()
    }

    pub fn iter(&self) -> impl Iterator<Item = &IoPin> {
        self.pins.iter()
    }
}

/// Retries an allocation makes for short-term pins before it fails: each costs a whole
/// `alloc_contig_range` attempt, so they are counted as well as timed.
pub const IO_BACKOFF_MAX_RETRIES: u32 = 8;

/// Bounded exponential back-off for an allocation that short-term pins stopped: waits of
/// `first`, `2 * first`, ... counter ticks, each cut short at the next known completion
/// (the release wakes the waiter), never more than `budget` ticks in all nor more than
/// [`IO_BACKOFF_MAX_RETRIES`] waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoBackoff {
    step: u64,
    left: u64,
    retries: u32,
}

impl IoBackoff {
    pub fn new(first: u64, budget: u64) -> IoBackoff {
        IoBackoff {
            step: first.max(1),
            left: budget,
            retries: 0,
        }
    }

    /// How long to wait at counter value `now` before the next retry, given the earliest
    /// known completion of the pins in the way; `None`: the budget is spent, give up.
    pub fn next_wait(&mut self, now: u64, next_completion: Option<u64>) -> Option<u64> {
        if self.left == 0 || self.retries >= IO_BACKOFF_MAX_RETRIES {
            return None;
        }
        let until_release = next_completion.map_or(u64::MAX, |at| at.saturating_sub(now));
        let wait = self.step.min(until_release).min(self.left);
        self.left -= wait;
        self.step = self.step.saturating_mul(2);
        self.retries += 1;
        Some(wait)
    }

    /// Waits handed out so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testutil::{FakeOwners, Storage};
    use crate::mm::{
        alloc_contig_range, cma_activate_area, cma_alloc, cma_init_reserved_mem, pin_longterm,
        CmaError, ContigError, Gfp, MigrateType, Migrator, PinError, Zone,
    };

    const BASE: Pfn = 0x40000;

    fn anon(slot: u64) -> Owner {
        Owner::new(OwnerKind::Anon, slot)
    }

    #[test]
    fn pins_are_one_per_slot_and_release_once() {
        let mut pins = IoPins::new();
        assert!(pins.is_empty());
        pins.pin(9, BASE + 9, None).unwrap();
        pins.pin(2, BASE + 2, Some(100)).unwrap();
        pins.pin(5, BASE + 5, None).unwrap();
        assert_eq!(
            pins.pin(5, BASE + 5, None),
            Err(IoPinError::AlreadyPinned { slot: 5 })
        );
        let slots: Vec<usize> = pins.iter().map(|p| p.slot).collect();
        assert_eq!(slots, [2, 5, 9], "kept sorted for the migrator's lookup");
        assert!(pins.is_pinned(5) && !pins.is_pinned(6));
        assert_eq!(pins.unpin(5).unwrap().pfn, BASE + 5);
        let err = pins.unpin(5).unwrap_err();
        assert_eq!(err, IoPinError::NotPinned { slot: 5 });
        assert!(err.to_string().contains("no short-term pin"));
        assert_eq!(pins.len(), 2);
    }

    #[test]
    fn the_migrator_is_told_again_only_for_anonymous_pages_under_io() {
        let mut pins = IoPins::new();
        assert_eq!(pins.check(anon(3)), Ok(()));
        pins.pin(3, BASE, None).unwrap();
        assert_eq!(pins.check(anon(3)), Err(MigrateError::Again));
        assert_eq!(pins.check(anon(4)), Ok(()));
        assert_eq!(
            pins.check(Owner::new(OwnerKind::PageCache, 3)),
            Ok(()),
            "slot numbers are the anonymous workload's own"
        );
        pins.unpin(3).unwrap();
        assert_eq!(pins.check(anon(3)), Ok(()));
    }

    #[test]
    fn the_clock_releases_io_with_a_known_completion_only() {
        let mut pins = IoPins::new();
        pins.pin(1, BASE + 1, Some(50)).unwrap();
        pins.pin(2, BASE + 2, Some(80)).unwrap();
        pins.pin(3, BASE + 600, None).unwrap();
        assert_eq!(pins.next_completion_in(BASE..BASE + 512), Some(50));
        assert_eq!(
            pins.next_completion_in(BASE + 512..BASE + 1024),
            None,
            "held until unpinned"
        );
        assert!(pins.any_in(BASE + 512..BASE + 1024));
        assert!(!pins.any_in(BASE + 1024..BASE + 2048));
        assert_eq!(pins.complete_due(49), 0);
        assert_eq!(pins.complete_due(50), 1);
        assert_eq!(pins.next_completion_in(BASE..BASE + 512), Some(80));
        assert_eq!(pins.complete_due(u64::MAX), 1);
        assert_eq!(pins.completed, 2);
        assert!(
            pins.is_pinned(3),
            "no completion time: only unpin releases it"
        );
    }

    #[test]
    fn backoff_doubles_and_never_exceeds_its_budget() {
        let mut b = IoBackoff::new(10, 100);
        let mut waits = Vec::new();
        while let Some(w) = b.next_wait(0, None) {
            waits.push(w);
        }
        assert_eq!(
            waits,
            [10, 20, 40, 30],
            "the last step is cut to the budget"
        );
        assert_eq!(b.retries(), 4);
        assert_eq!(b.next_wait(0, Some(1)), None, "spent stays spent");
        // A huge budget is still bounded by the retry count.
        let mut b = IoBackoff::new(1, u64::MAX);
        let n = core::iter::from_fn(|| b.next_wait(0, None)).count();
        assert_eq!(n, IO_BACKOFF_MAX_RETRIES as usize);
    }

    #[test]
    fn backoff_wakes_at_the_release() {
        let mut b = IoBackoff::new(1000, 10_000);
        assert_eq!(b.next_wait(500, Some(620)), Some(120));
        assert_eq!(
            b.next_wait(700, Some(650)),
            Some(0),
            "a completion already due: retry at once"
        );
        assert_eq!(b.next_wait(700, None), Some(4000), "the doubling went on");
    }

    /// The workload's migrator as far as pins go: [`IoPins::check`] first, then the owner.
    struct Pinned<'a> {
        pins: &'a IoPins,
        owners: &'a mut FakeOwners,
    }

    impl Migrator for Pinned<'_> {
        fn migrate(
            &mut self,
            src: Pfn,
            dst: Pfn,
            order: usize,
            owner: Owner,
        ) -> Result<(), MigrateError> {
            self.pins.check(owner)?;
            self.owners.migrate(src, dst, order, owner)
        }

        fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
            self.owners.reclaim(pfn, order, owner)
        }
    }

    /// 2048 pages, the second half a CMA area holding anonymous pages (slots 1..=64); the
    /// first half free. Returns the zone, the area and each slot's frame.
    fn area_with_anon<'s>(
        s: &'s mut Storage,
        owners: &mut FakeOwners,
    ) -> (Zone<'s>, crate::mm::CmaArea) {
        let mut z = s.zone();
        z.free_range(BASE..BASE + 2048).unwrap();
        let mut area = cma_init_reserved_mem(BASE + 1024, 1024, 0, "cma").unwrap();
        cma_activate_area(&mut area, &mut z).unwrap();
        z.set_cma_balance(crate::mm::CmaBalance::new(0, 1).unwrap());
        for slot in 1..=64 {
            let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
            assert!(area.contains(p));
            z.set_owner(p, anon(slot)).unwrap();
            owners.populate(slot, p, 0, slot * 7);
        }
        (z, area)
    }

    #[test]
    fn an_io_pin_in_cma_makes_contig_give_up_restored_and_its_release_lets_it_through() {
        let mut s = Storage::new(BASE, 2048);
        let mut owners = FakeOwners::default();
        let (mut z, mut area) = area_with_anon(&mut s, &mut owners);
        let mut pins = IoPins::new();
        let pinned = owners.objects[&7].0;
        pins.pin(7, pinned, None).unwrap();
        let free_before = z.counters().free_pages;
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        let err = alloc_contig_range(&mut z, &mut m, BASE + 1024, BASE + 2048, MigrateType::Cma)
            .unwrap_err();
        assert_eq!(err, ContigError::GaveUp { pfn: pinned });
        assert_eq!(z.owner(pinned), Some(anon(7)), "the page under I/O stayed");
        assert_eq!(z.counters().free_pages, free_before, "nothing leaked");
        for pb in (BASE + 1024..BASE + 2048).step_by(crate::mm::PAGEBLOCK_NR_PAGES) {
            assert_eq!(z.pageblock_migratetype(pb), Some(MigrateType::Cma));
        }
        owners.verify().unwrap();
        z.check_invariants().unwrap();
        // The whole area is the only candidate: cma_alloc fails as Busy (worth a retry).
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        assert_eq!(
            cma_alloc(&mut area, &mut z, &mut m, 1024, 0),
            Err(CmaError::Busy)
        );
        // A smaller request goes around the pin.
        let got = cma_alloc(&mut area, &mut z, &mut m, 256, 0).unwrap();
        assert!(!(got..got + 256).contains(&pinned));
        assert!(crate::mm::cma_release(&mut area, &mut z, got, 256));
        // The I/O completes: the same request succeeds and the page moved out of CMA.
        pins.unpin(7).unwrap();
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        assert_eq!(
            cma_alloc(&mut area, &mut z, &mut m, 1024, 0),
            Ok(BASE + 1024)
        );
        assert!(!area.contains(owners.objects[&7].0));
        owners.verify().unwrap();
        z.check_invariants().unwrap();
    }

    #[test]
    fn the_retry_after_a_backoff_that_woke_at_the_completion_succeeds() {
        // An I/O still in flight after the walk's pass budget: the call gives up, the
        // back-off waits until the known completion, the clock releases the pin, and the
        // retry (the same call) succeeds.
        let mut s = Storage::new(BASE, 2048);
        let mut owners = FakeOwners::default();
        let (mut z, _area) = area_with_anon(&mut s, &mut owners);
        let mut pins = IoPins::new();
        pins.pin(3, owners.objects[&3].0, Some(10)).unwrap();
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        assert!(matches!(
            alloc_contig_range(&mut z, &mut m, BASE + 1024, BASE + 2048, MigrateType::Cma),
            Err(ContigError::GaveUp { .. })
        ));
        let mut backoff = IoBackoff::new(4, 1000);
        let wait = backoff.next_wait(0, pins.next_completion_in(BASE + 1024..BASE + 2048));
        assert_eq!(wait, Some(4), "first step shorter than the I/O");
        let wait = backoff.next_wait(4, pins.next_completion_in(BASE + 1024..BASE + 2048));
        assert_eq!(wait, Some(6), "second step ends at the completion");
        assert_eq!(pins.complete_due(10), 1);
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        alloc_contig_range(&mut z, &mut m, BASE + 1024, BASE + 2048, MigrateType::Cma).unwrap();
        assert_eq!(owners.migrations, 64);
        owners.verify().unwrap();
        z.check_invariants().unwrap();
    }

    #[test]
    fn a_longterm_pin_of_a_page_under_io_in_cma_is_refused_until_the_io_is_done() {
        let mut s = Storage::new(BASE, 2048);
        let mut owners = FakeOwners::default();
        let (mut z, area) = area_with_anon(&mut s, &mut owners);
        let mut pins = IoPins::new();
        let p = owners.objects[&5].0;
        pins.pin(5, p, None).unwrap();
        let pin = Owner::new(OwnerKind::Pinned, 1);
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        assert_eq!(
            pin_longterm(&mut z, &mut m, p, pin),
            Err(PinError::Migrate {
                pfn: p,
                error: MigrateError::Again
            })
        );
        assert_eq!(z.owner(p), Some(anon(5)));
        pins.unpin(5).unwrap();
        let mut m = Pinned {
            pins: &pins,
            owners: &mut owners,
        };
        let moved = pin_longterm(&mut z, &mut m, p, pin).unwrap();
        assert!(!area.contains(moved));
        assert_eq!(z.owner(moved), Some(pin));
        assert_eq!(
            owners.objects[&5].0, moved,
            "the mapping learnt the new frame"
        );
        z.check_invariants().unwrap();
    }
}
