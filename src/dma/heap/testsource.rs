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
    self, CmaArea, Gfp, GfpFlags, NoMigrator, Owner, OwnerKind, Pfn, Zone, PAGE_SHIFT,
};

pub(crate) struct MmPages {
    pub zone: Zone<'static>,
    pub areas: Vec<CmaArea>,
    /// Refuse every `alloc_pages` after this many more (to test unwinding).
    pub fail_after: Option<usize>,
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
        }
    }

    pub(crate) fn area(&self, name: &str) -> &CmaArea {
        self.areas.iter().find(|a| a.name() == name).unwrap()
    }
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
            &mut NoMigrator,
            count,
            align_order as usize,
        )
        .map_err(|e| PageError(format!("{e}")))
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
