//! Host-test rig for the PASR policy: a fake DRAM whose contents are real (a few words per
//! page), page owners that migrate by copying those words and checksum their data, a
//! model of the mask registers, and a self-refresh that really forgets what masked units
//! held.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use super::geometry::Geometry;
use super::sections::{PasrMasks, Sections};
use super::vacate::{prepare_for_sleep, VacateReport};
use crate::mm::{MigrateError, Migrator, Owner, OwnerKind, Pfn, Zone, PAGE_SHIFT};

/// Words of fake contents per page.
pub const WORDS: usize = 4;
/// What self-refresh leaves in a masked unit.
pub const POISON: u64 = 0xdead_beef_dead_beef;
/// What a freed or migrated-from page holds, so stale reads show.
pub const FREED: u64 = 0xf4ee_f4ee_f4ee_f4ee;
/// Largest object the rig keeps (a whole MAX_ORDER block or a few).
pub const MAX_OBJECT_PAGES: usize = 1 << 12;

/// One allocation the test keeps data in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obj {
    pub pfn: Pfn,
    /// Frames: `1 << order` for buddy allocations, any count for contiguous ones.
    pub pages: usize,
    pub kind: OwnerKind,
    /// Page cache only: clean (droppable) or dirty (must migrate).
    pub clean: bool,
    pub seed: u64,
    pub checksum: u64,
}

impl Obj {
    pub fn end(&self) -> Pfn {
        self.pfn + self.pages
    }
}

/// The page owners: fake RAM plus every live object.
pub struct Tenants {
    base: Pfn,
    ram: Vec<[u64; WORDS]>,
    pub objects: BTreeMap<u64, Obj>,
    /// Head pfn -> object id.
    by_pfn: BTreeMap<Pfn, u64>,
    pub migrated_pages: usize,
    pub dropped_pages: usize,
    /// Upcoming migrations that fail transiently.
    pub again: usize,
    /// Contract violations seen (the zone asked for something inconsistent).
    pub errors: Vec<String>,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Tenants {
    pub fn new(base: Pfn, pages: usize) -> Tenants {
        Tenants {
            base,
            ram: std::vec![[FREED; WORDS]; pages],
            objects: BTreeMap::new(),
            by_pfn: BTreeMap::new(),
            migrated_pages: 0,
            dropped_pages: 0,
            again: 0,
            errors: Vec::new(),
        }
    }

    fn page_mut(&mut self, pfn: Pfn) -> Option<&mut [u64; WORDS]> {
        self.ram.get_mut(pfn.wrapping_sub(self.base))
    }

    fn page(&self, pfn: Pfn) -> [u64; WORDS] {
        self.ram
            .get(pfn.wrapping_sub(self.base))
            .copied()
            .unwrap_or([POISON; WORDS])
    }

    /// Checksum of the words of `[pfn, pfn + pages)`.
    pub fn checksum(&self, pfn: Pfn, pages: usize) -> u64 {
        (pfn..pfn + pages).fold(0u64, |sum, p| {
            self.page(p)
                .iter()
                .fold(sum, |s, &w| mix(s ^ w).wrapping_add(1))
        })
    }

    /// A new object of `pages` frames at `pfn`: write its data and remember its checksum.
    pub fn add(&mut self, id: u64, pfn: Pfn, pages: usize, kind: OwnerKind, clean: bool) {
        assert!(pages <= MAX_OBJECT_PAGES);
        let seed = mix(id ^ 0x5eed);
        self.write(pfn, pages, seed);
        let checksum = self.checksum(pfn, pages);
        self.objects.insert(
            id,
            Obj {
                pfn,
                pages,
                kind,
                clean,
                seed,
                checksum,
            },
        );
        self.by_pfn.insert(pfn, id);
    }

    /// The owner wrote new data into object `id` (page cache: it is dirty now).
    pub fn rewrite(&mut self, id: u64) {
        let Some(o) = self.objects.get(&id).copied() else {
            return;
        };
        let seed = mix(o.seed);
        self.write(o.pfn, o.pages, seed);
        let checksum = self.checksum(o.pfn, o.pages);
        let o = self.objects.get_mut(&id).expect("looked up above");
        (o.seed, o.checksum, o.clean) = (seed, checksum, false);
    }

    fn write(&mut self, pfn: Pfn, pages: usize, seed: u64) {
        for i in 0..pages {
            if let Some(page) = self.page_mut(pfn + i) {
                for (w, word) in page.iter_mut().enumerate() {
                    *word = mix(seed ^ ((i as u64) << 8) ^ w as u64);
                }
            }
        }
    }

    /// Forget an object (it is being freed); its frames read as freed memory.
    pub fn remove(&mut self, id: u64) -> Option<Obj> {
        let obj = self.objects.remove(&id)?;
        self.by_pfn.remove(&obj.pfn);
        self.fill(obj.pfn, obj.pages, FREED);
        Some(obj)
    }

    fn fill(&mut self, pfn: Pfn, pages: usize, value: u64) {
        for p in pfn..pfn + pages {
            if let Some(page) = self.page_mut(p) {
                *page = [value; WORDS];
            }
        }
    }

    /// Self-refresh forgot `[pfn, pfn + pages)`.
    pub fn poison(&mut self, pfn: Pfn, pages: usize) {
        self.fill(pfn, pages, POISON);
    }

    /// A live object overlapping `[lo, hi)`: objects never overlap each other, so it is
    /// either the last one starting before `lo` or one starting inside.
    pub fn live_in(&self, lo: Pfn, hi: Pfn) -> Option<(u64, Obj)> {
        let before = self.by_pfn.range(..lo).next_back();
        let inside = self.by_pfn.range(lo..hi).next();
        before
            .into_iter()
            .chain(inside)
            .map(|(_, &id)| (id, self.objects[&id]))
            .find(|(_, o)| o.end() > lo && o.pfn < hi)
    }

    /// Every live object still holds exactly its data; no contract violation was seen.
    pub fn verify(&self) -> Result<(), String> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        for (id, o) in &self.objects {
            if self.checksum(o.pfn, o.pages) != o.checksum {
                return Err(format!("object {id} ({o:?}) lost data"));
            }
        }
        Ok(())
    }

    /// Pages held by live objects.
    pub fn live_pages(&self) -> usize {
        self.objects.values().map(|o| o.pages).sum()
    }
}

impl Migrator for Tenants {
    fn migrate(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MigrateError> {
        let id = owner.id();
        let Some(&obj) = self.objects.get(&id) else {
            self.errors.push(format!("migrate of unknown object {id}"));
            return Err(MigrateError::Busy);
        };
        if obj.pfn != src || obj.pages != 1 << order || !obj.kind.is_movable() {
            self.errors.push(format!(
                "migrate {src:#x}->{dst:#x} order {order} of {id}, which is {obj:?}"
            ));
            return Err(MigrateError::Busy);
        }
        if self.again > 0 {
            self.again -= 1;
            return Err(MigrateError::Again);
        }
        if let Some((other, _)) = self.live_in(dst, dst + (1 << order)) {
            self.errors
                .push(format!("migration target {dst:#x} holds object {other}"));
            return Err(MigrateError::Busy);
        }
        for i in 0..1 << order {
            let data = self.page(src + i);
            if let Some(page) = self.page_mut(dst + i) {
                *page = data;
            }
        }
        self.fill(src, 1 << order, FREED);
        self.by_pfn.remove(&src);
        self.by_pfn.insert(dst, id);
        self.objects.get_mut(&id).expect("looked up above").pfn = dst;
        self.migrated_pages += 1 << order;
        Ok(())
    }

    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
        let id = owner.id();
        match self.objects.get(&id) {
            Some(o)
                if o.pfn == pfn
                    && o.pages == 1 << order
                    && o.kind == OwnerKind::PageCache
                    && o.clean =>
            {
                // Clean: the data is on disk; dropping loses nothing.
                self.remove(id);
                self.dropped_pages += 1 << order;
                true
            }
            _ => false,
        }
    }
}

/// The PASR side of a test: sections, tenants, the mask registers as last written, and how
/// often they were written.
pub struct Rig {
    pub geometry: Geometry,
    pub sections: Sections,
    pub tenants: Tenants,
    pub hw: PasrMasks,
    pub hw_writes: usize,
}

impl Rig {
    pub fn new(geometry: Geometry, sections: Sections, tenants: Tenants) -> Rig {
        let hw = PasrMasks::none(sections.kind(), sections.dies());
        Rig {
            geometry,
            sections,
            tenants,
            hw,
            hw_writes: 0,
        }
    }

    fn write_hw(&mut self, masks: PasrMasks) {
        self.hw = masks;
        self.hw_writes += 1;
    }

    /// The firmware's step after every allocation: unmask what was touched.
    pub fn after_op(&mut self, zone: &mut Zone<'_>) {
        if let Some(m) = self.sections.unmask_touched(zone) {
            self.write_hw(m);
        }
    }

    /// The frames of the units the registers mask.
    pub fn masked_ranges(&self) -> Vec<(Pfn, Pfn)> {
        self.hw
            .units()
            .flat_map(|u| self.geometry.unit_extents(u).collect::<Vec<_>>())
            .map(|r| ((r.start >> PAGE_SHIFT) as Pfn, (r.end >> PAGE_SHIFT) as Pfn))
            .collect()
    }

    /// Every invariant: the zone's, PASR's, and that no live object lies in a unit the
    /// registers mask.
    pub fn check(&self, zone: &Zone<'_>) -> Result<(), String> {
        zone.check_invariants()?;
        self.sections.check_invariants(zone)?;
        if self.hw != self.sections.masks() {
            return Err(format!(
                "registers hold {} but the sections mask {}",
                self.hw,
                self.sections.masks()
            ));
        }
        for (lo, hi) in self.masked_ranges() {
            if let Some((id, o)) = self.tenants.live_in(lo, hi) {
                return Err(format!(
                    "object {id} ({o:?}) lives in masked memory {lo:#x}..{hi:#x}"
                ));
            }
        }
        Ok(())
    }

    /// Suspend and resume: the policy's pre-sleep step, the registers written, self-refresh
    /// forgetting every masked unit, and wake-up.
    pub fn suspend(&mut self, zone: &mut Zone<'_>, budget_pages: usize) -> VacateReport {
        let report = prepare_for_sleep(zone, &mut self.sections, &mut self.tenants, budget_pages)
            .expect("PASR attached");
        self.write_hw(report.masks);
        for (lo, hi) in self.masked_ranges() {
            self.tenants.poison(lo, hi - lo);
        }
        report
    }
}

/// One object of a hand-made layout: where, how large, whose.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    pub pfn: Pfn,
    pub order: usize,
    pub kind: OwnerKind,
    pub clean: bool,
}

impl Place {
    pub fn new(pfn: Pfn, order: usize, kind: OwnerKind) -> Place {
        Place {
            pfn,
            order,
            kind,
            clean: false,
        }
    }

    pub fn clean_cache(pfn: Pfn) -> Place {
        Place {
            pfn,
            order: 0,
            kind: OwnerKind::PageCache,
            clean: true,
        }
    }
}

/// Put objects exactly where `layout` says: fill every free frame, then free each object's
/// frames and allocate them again (the only free block), then free the filling. Object
/// ids are `first_id..`. Panics (a broken test set-up) if a frame is not free.
pub fn place(zone: &mut Zone<'_>, tenants: &mut Tenants, layout: &[Place], first_id: u64) {
    use crate::mm::{Gfp, GfpFlags};
    let saved = zone.watermarks();
    zone.set_watermarks(crate::mm::Watermarks::default());
    let mut filler = std::collections::BTreeSet::new();
    for gfp in [Gfp::KERNEL, Gfp::MOVABLE] {
        while let Ok(p) = zone.alloc_pages(0, gfp) {
            filler.insert(p);
        }
    }
    for (i, at) in layout.iter().enumerate() {
        for p in at.pfn..at.pfn + (1 << at.order) {
            assert!(filler.remove(&p), "layout frame {p:#x} is not free");
            zone.free_pages(p, 0).unwrap();
        }
        let gfp = if at.kind.is_movable() {
            Gfp::MOVABLE
        } else {
            Gfp::KERNEL.with(GfpFlags::NONE)
        };
        let got = zone.alloc_pages(at.order, gfp).unwrap();
        assert_eq!(got, at.pfn, "placing {at:?}");
        let id = first_id + i as u64;
        zone.set_owner(got, Owner::new(at.kind, id)).unwrap();
        tenants.add(id, got, 1 << at.order, at.kind, at.clean);
    }
    for p in filler {
        zone.free_pages(p, 0).unwrap();
    }
    zone.set_watermarks(saved);
}
