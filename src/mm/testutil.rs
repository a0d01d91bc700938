//! Host-test helpers: zone storage in `Vec`s and a fake page owner that keeps per-frame data,
//! so tests can see that migration preserves contents.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use super::migrate::{MigrateError, Migrator};
use super::{zone_metadata_size, MigrateType, Owner, Page, PageState, Pfn, Zone};

/// Metadata storage for a zone; build the zone with [`Storage::zone`].
pub struct Storage {
    pub start_pfn: Pfn,
    pub pages: Vec<Page>,
    pub blocks: Vec<u8>,
}

impl Storage {
    pub fn new(start_pfn: Pfn, nr_pages: usize) -> Storage {
        let size = zone_metadata_size(start_pfn, nr_pages);
        Storage {
            start_pfn,
            pages: vec![Page::HOLE; size.pages],
            blocks: vec![0xee; size.pageblocks],
        }
    }

    pub fn zone(&mut self) -> Zone<'_> {
        Zone::new(self.start_pfn, &mut self.pages, &mut self.blocks)
            .expect("metadata sized by zone_metadata_size")
    }
}

/// What one frame is, as far as the zone's users can tell: its state, for block heads (free
/// or allocated) their order and migrate type, and for allocated ones their owner. Tails,
/// holes and the owner field of free blocks carry only what matters (the rest is stale by
/// design).
pub type FrameView = (PageState, usize, MigrateType, Owner);

/// [`FrameView`] of every frame of the zone, to check that an operation which must change
/// nothing (a failed, rolled-back call) left every frame as it found it. Free-list link
/// order is not compared: it is not observable through the buddy's answers.
pub fn frames(zone: &Zone<'_>) -> Vec<(Pfn, FrameView)> {
    (zone.start_pfn()..zone.end_pfn())
        .map(|pfn| {
            let page = zone.page(pfn).expect("pfn inside the zone");
            let view = match page.state() {
                PageState::Head => (page.state(), page.order(), page.migratetype(), page.owner()),
                PageState::Buddy => (page.state(), page.order(), page.migratetype(), Owner::NONE),
                state => (state, 0, MigrateType::Unmovable, Owner::NONE),
            };
            (pfn, view)
        })
        .collect()
}

/// A fake population of movable objects (anonymous memory and page cache). Each object owns
/// one block; `memory` simulates RAM contents per frame.
#[derive(Default)]
pub struct FakeOwners {
    pub memory: BTreeMap<Pfn, u64>,
    /// id -> (pfn, order, expected data seed)
    pub objects: BTreeMap<u64, (Pfn, usize, u64)>,
    /// Objects whose page cache is clean (reclaim drops them).
    pub clean: BTreeSet<u64>,
    /// Objects that refuse to move permanently.
    pub busy: BTreeSet<u64>,
    /// Number of upcoming migrations that fail transiently.
    pub again: usize,
    pub migrations: usize,
    pub reclaims: usize,
    /// Contract violations seen by the fake (the zone handing it inconsistent requests).
    pub errors: Vec<String>,
    /// Movable chunks copied by `move_chunk`, and whether the next one refuses.
    pub chunk_moves: usize,
    pub chunk_refuses: bool,
}

impl FakeOwners {
    /// Record a new object at `pfn` and fill its frames with data derived from `seed`.
    pub fn populate(&mut self, id: u64, pfn: Pfn, order: usize, seed: u64) {
        for i in 0..1 << order {
            self.memory
                .insert(pfn + i, seed.wrapping_mul(31).wrapping_add(i as u64));
        }
        self.objects.insert(id, (pfn, order, seed));
    }

    pub fn forget(&mut self, id: u64) -> Option<(Pfn, usize, u64)> {
        let obj = self.objects.remove(&id)?;
        for i in 0..1 << obj.1 {
            self.memory.remove(&(obj.0 + i));
        }
        self.clean.remove(&id);
        self.busy.remove(&id);
        Some(obj)
    }

    /// Every object's frames still hold its data.
    pub fn verify(&self) -> Result<(), String> {
        for (id, &(pfn, order, seed)) in &self.objects {
            for i in 0..1usize << order {
                let want = seed.wrapping_mul(31).wrapping_add(i as u64);
                if self.memory.get(&(pfn + i)) != Some(&want) {
                    return Err(format!("object {id} lost data at pfn {:#x}", pfn + i));
                }
            }
        }
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        Ok(())
    }
}

impl Migrator for FakeOwners {
    fn migrate(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MigrateError> {
        let id = owner.id();
        match self.objects.get(&id) {
            Some(&(pfn, o, _)) if pfn == src && o == order => {}
            other => {
                self.errors.push(format!(
                    "migrate {src:#x}->{dst:#x} order {order} for {id}: fake has {other:?}"
                ));
                return Err(MigrateError::Busy);
            }
        }
        if self.busy.contains(&id) {
            return Err(MigrateError::Busy);
        }
        if self.again > 0 {
            self.again -= 1;
            return Err(MigrateError::Again);
        }
        for i in 0..1 << order {
            if self.memory.contains_key(&(dst + i)) {
                self.errors.push(format!(
                    "migration target {:#x} already holds data",
                    dst + i
                ));
            }
            let v = self.memory.remove(&(src + i)).unwrap_or(0);
            self.memory.insert(dst + i, v);
        }
        self.objects.get_mut(&id).expect("checked above").0 = dst;
        self.migrations += 1;
        Ok(())
    }

    fn move_chunk(&mut self, src: Pfn, dst: Pfn, count: usize) -> Result<(), MigrateError> {
        if self.chunk_refuses {
            return Err(MigrateError::Busy);
        }
        for i in 0..count {
            if self.memory.contains_key(&(dst + i)) {
                self.errors
                    .push(format!("chunk target {:#x} already holds data", dst + i));
            }
            if let Some(v) = self.memory.remove(&(src + i)) {
                self.memory.insert(dst + i, v);
            }
        }
        self.chunk_moves += 1;
        Ok(())
    }

    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
        let id = owner.id();
        if !self.clean.contains(&id)
            || self.objects.get(&id).map(|o| (o.0, o.1)) != Some((pfn, order))
        {
            return false;
        }
        self.forget(id);
        self.reclaims += 1;
        true
    }
}
