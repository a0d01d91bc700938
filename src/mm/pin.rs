//! Long-term pins (`pin_user_pages(FOLL_LONGTERM)`): a page about to be pinned for good is
//! first migrated out of CMA, so a pin never blocks a CMA area.
//!
//! # Theory of operation
//!
//! A pin turns a movable block into one that will never move again. Inside a Cma pageblock
//! that would break the promise CMA rests on (a Cma pageblock holds only what can be
//! migrated away), so [`pin_longterm`] does what Linux's `check_and_migrate_movable_pages`
//! does: a block that touches a Cma pageblock gets a target from the buddy outside every
//! CMA area (`Movable` with `NO_CMA`, which may steal from the other types but never takes
//! a Cma frame), the owner's [`Migrator`] copies the data and re-points its mapping, the zone
//! moves the owner record to the target and frees the source; only then is the pin's owner
//! recorded. A block already outside CMA is pinned where it is. Any failure (no frame
//! outside CMA, the owner refusing to move) leaves the zone and the block as they were.
#![forbid(unsafe_code)]

use core::fmt;

use super::{Gfp, GfpFlags, MigrateError, Migrator, MmError, Owner, Pfn, Zone};

/// Why [`pin_longterm`] did not pin. The zone and the block are as before in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinError {
    /// `pfn` is not the head of an allocated block with a movable owner, or the pin's owner
    /// is movable (a pin must be an owner that stays put).
    NotPinnable { pfn: Pfn },
    /// The block is in CMA and no free frame outside every CMA area can take it.
    NoMemoryOutsideCma { pfn: Pfn, order: usize },
    /// The block is in CMA and its owner could not move it out.
    Migrate { pfn: Pfn, error: MigrateError },
    /// The zone refused its bookkeeping (a contract violation, reported rather than hidden).
    Zone(MmError),
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PinError::NotPinnable { pfn } => {
                write!(
                    f,
                    "pfn {pfn:#x} is not a movable allocated block that can be pinned"
                )
            }
            PinError::NoMemoryOutsideCma { pfn, order } => write!(
                f,
                "pfn {pfn:#x} is in CMA and no free order-{order} block outside CMA can take it"
            ),
            PinError::Migrate { pfn, error } => {
                write!(f, "pfn {pfn:#x} could not be migrated out of CMA: {error}")
            }
            PinError::Zone(e) => write!(f, "zone refused the pin's bookkeeping: {e}"),
        }
    }
}

impl core::error::Error for PinError {}

/// Pin the movable block headed at `pfn` for the long term, recording `pin` as its owner.
/// A block in CMA is migrated out first (see the module docs). Returns where the block is
/// now: `pfn` itself, or the frame outside CMA it moved to (its owner's mapping already
/// points there).
pub fn pin_longterm<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    migrator: &mut M,
    pfn: Pfn,
    pin: Owner,
) -> Result<Pfn, PinError> {
    let (head, order) = zone
        .allocated_block(pfn)
        .ok_or(PinError::NotPinnable { pfn })?;
    let owner = zone.owner(head).ok_or(PinError::NotPinnable { pfn })?;
    if head != pfn || !owner.is_movable() || pin.is_movable() {
        return Err(PinError::NotPinnable { pfn });
    }
    if !zone.block_touches_cma(pfn, order) {
        zone.set_owner(pfn, pin).map_err(PinError::Zone)?;
        return Ok(pfn);
    }
    let dst = zone
        .alloc_pages(order, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
        .map_err(|_| PinError::NoMemoryOutsideCma { pfn, order })?;
    // No check that `dst` is outside CMA: `NO_CMA` never takes a Cma frame (Cma blocks are
    // never stolen), and `set_owner` below refuses a pin in a Cma pageblock anyway.
    if let Err(error) = migrator.migrate(pfn, dst, order, owner) {
        zone.free_pages(dst, order).map_err(PinError::Zone)?;
        return Err(PinError::Migrate { pfn, error });
    }
    // The data is at `dst` and the owner maps it there: the zone follows, then the pin.
    zone.settle_migrated_block(pfn, dst, order, owner)
        .map_err(PinError::Zone)?;
    zone.set_owner(dst, pin).map_err(PinError::Zone)?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::testutil::{frames, FakeOwners, Storage};
    use crate::mm::{cma_activate_area, cma_alloc, cma_init_reserved_mem, OwnerKind};

    const BASE: Pfn = 0x40000;
    const PIN: Owner = Owner::new(OwnerKind::Pinned, 77);

    /// A 2048-page zone whose second half (two pageblocks) is a CMA area; every frame
    /// outside CMA is taken by kernel data, the returned `Vec`.
    fn zone_with_cma(s: &mut Storage) -> (Zone<'_>, crate::mm::CmaArea, Vec<Pfn>) {
        let mut z = s.zone();
        z.free_range(BASE..BASE + 2048).unwrap();
        let mut area = cma_init_reserved_mem(BASE + 1024, 1024, 0, "cma").unwrap();
        cma_activate_area(&mut area, &mut z).unwrap();
        let mut kernel = Vec::new();
        while let Ok(p) = z.alloc_pages(0, Gfp::KERNEL) {
            kernel.push(p);
        }
        (z, area, kernel)
    }

    fn anon_in_cma(z: &mut Zone<'_>, area: &crate::mm::CmaArea, fake: &mut FakeOwners) -> Pfn {
        let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
        assert!(area.contains(p));
        z.set_owner(p, Owner::new(OwnerKind::Anon, 5)).unwrap();
        fake.populate(5, p, 0, 0xfeed);
        p
    }

    #[test]
    fn longterm_pin_in_cma_migrates_out_first_and_never_blocks_the_area() {
        let mut s = Storage::new(BASE, 2048);
        let (mut z, mut area, mut kernel) = zone_with_cma(&mut s);
        let mut fake = FakeOwners::default();
        let p = anon_in_cma(&mut z, &area, &mut fake);
        // One frame outside CMA becomes free: the pin's target.
        let spare = kernel.pop().unwrap();
        z.free_pages(spare, 0).unwrap();
        let pinned = pin_longterm(&mut z, &mut fake, p, PIN).unwrap();
        assert_eq!(pinned, spare);
        assert!(!area.contains(pinned));
        assert_eq!(z.owner(pinned), Some(PIN));
        assert_eq!(z.allocated_block(p), None, "the CMA source is free again");
        assert_eq!(
            fake.objects[&5].0, pinned,
            "the owner's mapping points to the target"
        );
        fake.verify().unwrap();
        assert_eq!(fake.migrations, 1);
        z.check_invariants().unwrap();
        // The whole area can be allocated: the pin does not sit in it.
        let got = cma_alloc(&mut area, &mut z, &mut fake, 1024, 0).unwrap();
        assert_eq!(got, BASE + 1024);
    }

    #[test]
    fn longterm_pin_outside_cma_pins_in_place_without_copy() {
        let mut s = Storage::new(BASE, 2048);
        let (mut z, _area, mut kernel) = zone_with_cma(&mut s);
        let mut fake = FakeOwners::default();
        let spare = kernel.pop().unwrap();
        z.free_pages(spare, 0).unwrap();
        let p = z
            .alloc_pages(0, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
            .unwrap();
        z.set_owner(p, Owner::new(OwnerKind::Anon, 5)).unwrap();
        fake.populate(5, p, 0, 1);
        assert_eq!(pin_longterm(&mut z, &mut fake, p, PIN), Ok(p));
        assert_eq!(z.owner(p), Some(PIN));
        assert_eq!(fake.migrations, 0);
    }

    #[test]
    fn longterm_pin_without_memory_outside_cma_fails_and_changes_nothing() {
        let mut s = Storage::new(BASE, 2048);
        let (mut z, area, _kernel) = zone_with_cma(&mut s);
        let mut fake = FakeOwners::default();
        let p = anon_in_cma(&mut z, &area, &mut fake);
        let before = frames(&z);
        let err = pin_longterm(&mut z, &mut fake, p, PIN).unwrap_err();
        assert_eq!(err, PinError::NoMemoryOutsideCma { pfn: p, order: 0 });
        assert!(err.to_string().contains("outside CMA"));
        assert_eq!(frames(&z), before);
        assert_eq!(z.owner(p), Some(Owner::new(OwnerKind::Anon, 5)));
        assert_eq!(fake.migrations, 0);
        fake.verify().unwrap();
        z.check_invariants().unwrap();
    }

    #[test]
    fn longterm_pin_the_owner_cannot_move_fails_and_changes_nothing() {
        let mut s = Storage::new(BASE, 2048);
        let (mut z, area, mut kernel) = zone_with_cma(&mut s);
        let mut fake = FakeOwners::default();
        let p = anon_in_cma(&mut z, &area, &mut fake);
        z.free_pages(kernel.pop().unwrap(), 0).unwrap();
        fake.busy.insert(5);
        let before = frames(&z);
        assert_eq!(
            pin_longterm(&mut z, &mut fake, p, PIN),
            Err(PinError::Migrate {
                pfn: p,
                error: MigrateError::Busy
            })
        );
        assert_eq!(frames(&z), before);
        fake.verify().unwrap();
        z.check_invariants().unwrap();
    }

    #[test]
    fn longterm_pin_refuses_what_is_not_a_movable_block() {
        let mut s = Storage::new(BASE, 2048);
        let (mut z, _area, kernel) = zone_with_cma(&mut s);
        let mut fake = FakeOwners::default();
        let k = kernel[0];
        z.set_owner(k, Owner::new(OwnerKind::Kernel, 1)).unwrap();
        let before = frames(&z);
        assert_eq!(
            pin_longterm(&mut z, &mut fake, k, PIN),
            Err(PinError::NotPinnable { pfn: k })
        );
        assert_eq!(frames(&z), before);
        // A free frame, and a movable "pin" owner, are refused too.
        z.free_pages(kernel[1], 0).unwrap();
        let before_free = frames(&z);
        assert_eq!(
            pin_longterm(&mut z, &mut fake, kernel[1], PIN),
            Err(PinError::NotPinnable { pfn: kernel[1] })
        );
        assert_eq!(frames(&z), before_free);
        let p = z.alloc_pages(0, Gfp::MOVABLE).unwrap();
        z.set_owner(p, Owner::new(OwnerKind::Anon, 3)).unwrap();
        assert_eq!(
            pin_longterm(&mut z, &mut fake, p, Owner::new(OwnerKind::Anon, 4)),
            Err(PinError::NotPinnable { pfn: p })
        );
    }
}
