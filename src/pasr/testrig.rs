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

#[inline(always)]
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
        // A plain loop over a slice: the long tests checksum all of RAM at every wake, and
        // the debug build does not flatten nested folds.
        let mut sum = 0u64;
        for p in pfn..pfn + pages {
            let page = match self.ram.get(p.wrapping_sub(self.base)) {
                Some(page) => page,
                None => &[POISON; WORDS],
            };
            for &w in page {
                sum = mix(sum ^ w).wrapping_add(1);
            }
        }
        sum
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

    /// Pages of the live objects whose data is not what their owner wrote.
    pub fn lost_pages(&self) -> usize {
        self.objects
            .values()
            .filter(|o| self.checksum(o.pfn, o.pages) != o.checksum)
            .map(|o| o.pages)
            .sum()
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
    /// Allocations handed out through [`Rig::handed_out`], and those of them that lay
    /// (partly) in a unit the registers still masked when the memory was handed over.
    pub handed_out: usize,
    pub handed_out_masked: usize,
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
            handed_out: 0,
            handed_out_masked: 0,
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

    /// The firmware's step after an allocation of `[pfn, pfn + pages)`, before its user
    /// touches it: unmask what was touched, then count the allocation, and count it again
    /// if any of its frames lies in a unit the registers still mask.
    pub fn handed_out(&mut self, zone: &mut Zone<'_>, pfn: Pfn, pages: usize) {
        self.after_op(zone);
        self.handed_out += 1;
        if self
            .masked_ranges()
            .iter()
            .any(|&(lo, hi)| pfn < hi && lo < pfn + pages)
        {
            self.handed_out_masked += 1;
        }
    }

    /// The frames of the units the registers mask, adjacent ranges merged (interleaved
    /// partners masked together make one range per span, not one per granule).
    pub fn masked_ranges(&self) -> Vec<(Pfn, Pfn)> {
        let mut ranges: Vec<(Pfn, Pfn)> = self
            .hw
            .units()
            .flat_map(|u| self.geometry.unit_extents(u).collect::<Vec<_>>())
            .map(|r| ((r.start >> PAGE_SHIFT) as Pfn, (r.end >> PAGE_SHIFT) as Pfn))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(Pfn, Pfn)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if last.1 >= lo => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
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

/// What the test's own model says a sleep could mask at best, computed without the policy:
/// the spans entirely free, how many more could be emptied, and which could be at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CouldEmpty {
    /// Span bits of the spans with no object and no unmanaged frame.
    pub free: u64,
    /// The most spans, besides the free ones, whose objects fit in the spans kept refreshed.
    pub best: usize,
    /// Span bits of the spans holding only movable objects (and some).
    pub emptiable: u64,
}

/// The independent answer, from the test's model only (objects, the set-up's reserved and
/// hole frames): per span its used and free pages and whether anything in it can never
/// move; then, by brute force over every subset of the emptiable spans, the largest one
/// whose pages fit in the free pages of the spans left refreshed, less `watermark_min`.
/// Spans are `span_pages` frames from `base`, `nr` of them (at most 16: the search is over
/// `2^nr` subsets, each summed from a smaller one).
pub fn could_be_emptied(
    base: Pfn,
    span_pages: usize,
    nr: usize,
    unmanaged: &[core::ops::Range<Pfn>],
    objects: &BTreeMap<u64, Obj>,
    watermark_min: usize,
) -> CouldEmpty {
    assert!(nr <= 16, "{nr} spans: too many subsets to search");
    let span_of = |p: Pfn| (p - base) / span_pages;
    let mut used = std::vec![0usize; nr];
    // A reserved or hole frame, or an unmovable object, keeps a span from emptying.
    let mut stuck = std::vec![false; nr];
    let mut unmanaged_pages = std::vec![0usize; nr];
    for p in unmanaged.iter().flat_map(|r| r.clone()) {
        unmanaged_pages[span_of(p)] += 1;
        stuck[span_of(p)] = true;
    }
    for o in objects.values() {
        for p in o.pfn..o.end() {
            used[span_of(p)] += 1;
            if !o.kind.is_movable() {
                stuck[span_of(p)] = true;
            }
        }
    }
    let free: Vec<usize> = (0..nr)
        .map(|s| span_pages - used[s] - unmanaged_pages[s])
        .collect();
    let entirely_free = (0..nr)
        .filter(|&s| used[s] == 0 && !stuck[s])
        .fold(0u64, |b, s| b | 1 << s);
    let emptiable = (0..nr)
        .filter(|&s| !stuck[s] && used[s] > 0)
        .fold(0u64, |b, s| b | 1 << s);
    let kept_room: usize = (0..nr)
        .filter(|s| entirely_free & (1 << s) == 0)
        .map(|s| free[s])
        .sum();
    // cost[subset]: the pages to move out of it plus the free room it takes away.
    let mut cost = std::vec![0usize; 1 << nr];
    let mut best = 0;
    for subset in 1usize..1 << nr {
        let low = subset.trailing_zeros() as usize;
        cost[subset] = cost[subset & (subset - 1)] + used[low] + free[low];
        if subset as u64 & !emptiable == 0 && cost[subset] + watermark_min <= kept_room {
            best = best.max(subset.count_ones() as usize);
        }
    }
    CouldEmpty {
        free: entirely_free,
        best,
        emptiable,
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
