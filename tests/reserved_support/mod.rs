// Every image compiles this module on its own and uses only the checks its fixture needs.
#![allow(dead_code)]
//! Checks shared by the `reserved_*` test images: each image boots one reserved-memory
//! fixture and asserts the areas, carveouts and kept ranges the zone was built with.

use alloc::format;
use alloc::string::String;
use core::ops::Range;

use monolith::kmem::{self, KmemError};
use monolith::memory::mmu;
use monolith::mm::{MigrateType, PageState, PAGE_SHIFT};
use monolith::qemu_ensure;

pub fn e(err: KmemError) -> String {
    format!("{err}")
}

/// The area exists with this placement, is (not) the default, its pageblocks are Cma, and
/// it hands out its full size and takes it back.
pub fn expect_area(name: &str, base: u64, size: u64, default: bool) -> Result<(), String> {
    let st = kmem::cma_state(name).map_err(e)?;
    qemu_ensure!(
        (st.base_pfn as u64) << PAGE_SHIFT == base && (st.count as u64) << PAGE_SHIFT == size,
        "{name}: base {:#x} size {:#x}, expected {base:#x} {size:#x}",
        st.base_pfn << PAGE_SHIFT,
        st.count << PAGE_SHIFT
    );
    let plan = kmem::plan().ok_or("no plan")?;
    let is_default = plan.default_cma_area().is_some_and(|a| a.name == name);
    qemu_ensure!(is_default == default, "{name}: default is {is_default}");
    if default {
        qemu_ensure!(
            kmem::cma_area_names().first().map(String::as_str) == Some(name),
            "default area not listed first: {:?}",
            kmem::cma_area_names()
        );
    }
    let all_cma = kmem::with_zone(|z| {
        (st.base_pfn..st.base_pfn + st.count)
            .step_by(512)
            .all(|p| z.pageblock_migratetype(p) == Some(MigrateType::Cma))
    })
    .map_err(e)?;
    qemu_ensure!(all_cma, "{name}: pageblocks not all Cma");
    let pfn = kmem::cma_alloc(name, st.count, 0).map_err(e)?;
    qemu_ensure!(
        pfn == st.base_pfn,
        "{name}: whole-area allocation at {pfn:#x}"
    );
    kmem::cma_release(name, pfn, st.count).map_err(e)?;
    kmem::check_invariants().map_err(e)
}

/// Nothing in `range` belongs to the buddy: every frame is reserved.
pub fn not_in_buddy(range: Range<u64>) -> Result<(), String> {
    let (start, end) = (
        (range.start >> PAGE_SHIFT) as usize,
        (range.end >> PAGE_SHIFT) as usize,
    );
    let bad = kmem::with_zone(|z| {
        (start..end).find(|&p| z.page(p).is_none_or(|pg| pg.state() != PageState::Reserved))
    })
    .map_err(e)?;
    qemu_ensure!(
        bad.is_none(),
        "pfn {:#x} of {range:x?} is not reserved",
        bad.unwrap_or(0)
    );
    Ok(())
}

/// `range` is left out of the identity map, while the pages around it are mapped.
pub fn unmapped(range: Range<u64>) -> Result<(), String> {
    for pa in [
        range.start,
        range.end - 4096,
        ((range.start + range.end) / 2) & !4095,
    ] {
        qemu_ensure!(
            mmu::translate(pa as usize).is_none() && mmu::memory_kind(pa as usize).is_none(),
            "{pa:#x} in carveout {range:x?} is mapped"
        );
    }
    for pa in [range.start - 4096, range.end] {
        qemu_ensure!(
            mmu::memory_kind(pa as usize) == Some(mmu::MemoryKind::Normal),
            "{pa:#x} next to carveout {range:x?} is not normal memory"
        );
    }
    Ok(())
}

pub fn area_count(expected: usize) -> Result<(), String> {
    let names = kmem::cma_area_names();
    qemu_ensure!(
        names.len() == expected,
        "areas {names:?}, expected {expected}"
    );
    Ok(())
}

pub fn device_area(device: &str, expected: Option<&str>) -> Result<(), String> {
    let got = kmem::cma_area_for_device(device);
    qemu_ensure!(
        got.as_deref() == expected,
        "{device}: area {got:?}, expected {expected:?}"
    );
    Ok(())
}
