//! Host-test page source: a real mm [`Zone`] over the test plan's RAM with its CMA areas
//! activated, the way kmem builds the firmware's zone. System pages are taken as kmem's
//! long-term pins are (Movable with `NO_CMA`, owner Pinned), so tests can check they never
//! sit in CMA pageblocks; CMA runs go through `mm::cma_alloc`.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{PageError, PageSource};
use crate::dt::reserved::ReservedMemoryPlan;
use crate::mm::testutil::Storage;
use crate::mm::{
    self, ChunkId, ChunkInfo, CmaArea, Gfp, GfpFlags, MigrateError, Migrator, Owner, OwnerKind,
    Pfn, Zone, PAGE_SHIFT,
};

/// The test zone's only movable tenants are the heaps' movable chunks (host RAM is not
/// simulated, so a chunk's copy is a count): nothing else migrates or is reclaimed.
#[derive(Default)]
pub(crate) struct ChunkCopier {
    pub chunk_moves: usize,
}

impl Migrator for ChunkCopier {
    fn migrate(&mut self, _: Pfn, _: Pfn, _: usize, _: Owner) -> Result<(), MigrateError> {
        Err(MigrateError::Busy)
    }

    fn reclaim(&mut self, _: Pfn, _: usize, _: Owner) -> bool {
        false
    }

    fn move_chunk(&mut self, _: Pfn, _: Pfn, _: usize) -> Result<(), MigrateError> {
        self.chunk_moves += 1;
        Ok(())
    }
}

pub(crate) struct MmPages {
    pub zone: Zone<'static>,
    pub areas: Vec<CmaArea>,
    /// Refuse every `alloc_pages` after this many more (to test unwinding).
    pub fail_after: Option<usize>,
    pub copier: ChunkCopier,
}

fn pfn(addr: u64) -> Pfn {
    (addr >> PAGE_SHIFT) as Pfn
}

impl MmPages {
    /// A zone over `ram` minus the plan's carveouts, with the plan's CMA areas.
    pub(crate) fn new(plan: &ReservedMemoryPlan, ram: core::ops::Range<u64>) -> MmPages {
        let storage: &'static mut Storage = alloc::boxed::Box::leak(alloc::boxed::Box::new(
            Storage::new(pfn(ram.start), pfn(ram.end) - pfn(ram.start)),
        ));
        let mut zone = storage.zone();
        zone.reserve_range(pfn(ram.start)..pfn(ram.end)).unwrap();
        let usable = crate::util::ranges::subtract_all(&[ram], &plan.not_mapped());
        for r in usable {
            zone.free_range(pfn(r.start)..pfn(r.end)).unwrap();
        }
        let mut areas = Vec::new();
        for spec in &plan.cma_areas {
            let mut area =
                mm::cma_init_reserved_mem(pfn(spec.base), pfn(spec.size), 0, &spec.name).unwrap();
            mm::cma_activate_area(&mut area, &mut zone).unwrap();
            areas.push(area);
        }
        MmPages {
            zone,
            areas,
            fail_after: None,
            copier: ChunkCopier::default(),
        }
    }

    pub(crate) fn area(&self, name: &str) -> &CmaArea {
        self.areas.iter().find(|a| a.name() == name).unwrap()
    }

    fn area_mut(&mut self, name: &str) -> Result<&mut CmaArea, PageError> {
        self.areas
            .iter_mut()
            .find(|a| a.name() == name)
            .ok_or_else(|| PageError(format!("no CMA area {name}")))
    }
}

fn cma_error(e: mm::CmaError) -> PageError {
    PageError(format!("{e}"))
}

impl PageSource for MmPages {
    fn alloc_pages(&mut self, order: usize) -> Result<Pfn, PageError> {
        if let Some(left) = self.fail_after.as_mut() {
            if *left == 0 {
                return Err(PageError(String::from("test: out of pages")));
            }
            *left -= 1;
        }
        let pfn = self
            .zone
            .alloc_pages(order, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
            .map_err(|e| PageError(format!("{e}")))?;
        self.zone
            .set_owner(pfn, Owner::new(OwnerKind::Pinned, 0))
            .map_err(|e| PageError(format!("{e}")))?;
        Ok(pfn)
    }

    fn free_pages(&mut self, pfn: Pfn, order: usize) -> Result<(), PageError> {
        self.zone
            .free_pages(pfn, order)
            .map_err(|e| PageError(format!("{e}")))
    }

    fn cma_alloc(&mut self, area: &str, count: usize, align_order: u32) -> Result<Pfn, PageError> {
        let area = self
            .areas
            .iter_mut()
            .find(|a| a.name() == area)
            .ok_or_else(|| PageError(format!("no CMA area {area}")))?;
        mm::cma_alloc(
            area,
            &mut self.zone,
            &mut self.copier,
            count,
            align_order as usize,
        )
        .map_err(|e| PageError(format!("{e}")))
    }

    fn cma_alloc_movable(
        &mut self,
        area: &str,
        count: usize,
        align_order: u32,
    ) -> Result<ChunkInfo, PageError> {
        let index = self
            .areas
            .iter()
            .position(|a| a.name() == area)
            .ok_or_else(|| PageError(format!("no CMA area {area}")))?;
        let area = &mut self.areas[index];
        let id = mm::cma_alloc_movable(
            area,
            &mut self.zone,
            &mut self.copier,
            count,
            align_order as usize,
        )
        .map_err(cma_error)?;
        area.chunk(id)
            .ok_or_else(|| PageError(format!("{id} vanished")))
    }

    fn cma_pin(&mut self, area: &str, id: ChunkId) -> Result<ChunkInfo, PageError> {
        mm::cma_pin(self.area_mut(area)?, id).map_err(cma_error)
    }

    fn cma_unpin(&mut self, area: &str, id: ChunkId) -> Result<(), PageError> {
        mm::cma_unpin(self.area_mut(area)?, id).map_err(cma_error)
    }

    fn cma_release_movable(&mut self, area: &str, id: ChunkId) -> Result<(), PageError> {
        let index = self
            .areas
            .iter()
            .position(|a| a.name() == area)
            .ok_or_else(|| PageError(format!("no CMA area {area}")))?;
        mm::cma_release_movable(&mut self.areas[index], &mut self.zone, id).map_err(cma_error)
    }

    fn cma_release(&mut self, area: &str, pfn: Pfn, count: usize) -> Result<(), PageError> {
        let area = self
            .areas
            .iter_mut()
            .find(|a| a.name() == area)
            .ok_or_else(|| PageError(format!("no CMA area {area}")))?;
        if mm::cma_release(area, &mut self.zone, pfn, count) {
            Ok(())
        } else {
            Err(PageError(format!("cma_release {pfn:#x}+{count} refused")))
        }
    }
}
