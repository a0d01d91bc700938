//! The profile markers `cargo xtask profile` counts instructions between, and the
//! profiled workload: one `cma_alloc` from an area idle, full of anonymous pages or full of
//! clean page cache.

use super::{fill_cma_with_anon, fill_cma_with_clean_cache, BenchError};
use crate::kmem::{self, KmemError};
use crate::mm::CmaBalance;

/// Start of a profiled region: `cargo xtask profile` counts the instructions
/// executed between a call to this and a call to [`monolith_profile_end`], by function.
#[inline(never)]
#[no_mangle]
pub extern "C" fn monolith_profile_begin() {
    core::hint::black_box(1u32);
}

/// End of a profiled region (see [`monolith_profile_begin`]).
#[inline(never)]
#[no_mangle]
pub extern "C" fn monolith_profile_end() {
    // A different body from `monolith_profile_begin`, so the linker cannot fold the two.
    core::hint::black_box(2u64);
}

/// What the profiled area holds when the allocation is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaFill {
    /// Nothing: the allocation is taken straight from the free lists.
    Idle,
    /// Anonymous pages in every frame: the allocation migrates what is in the way.
    FullOfAnon,
    /// Clean page cache in every frame: the allocation drops what is in the way.
    FullOfCleanCache,
}

/// One `cma_alloc` of `pages` from an area filled as `fill`, between the profile markers,
/// for an instruction profile by function. The allocation is released after.
pub fn profile_cma_alloc(
    area: Option<&str>,
    pages: usize,
    fill: AreaFill,
) -> Result<(), BenchError> {
    let profiled = kmem::with_state(|s| -> Result<(), KmemError> {
        let a = s.area(area)?;
        let balance = s.cma_balance();
        s.set_cma_balance(CmaBalance::new(0, 1).unwrap_or(CmaBalance::LINUX));
        s.anon_start();
        let result = (|| -> Result<(), KmemError> {
            match fill {
                AreaFill::Idle => {}
                AreaFill::FullOfAnon => {
                    fill_cma_with_anon(s)?;
                }
                AreaFill::FullOfCleanCache => fill_cma_with_clean_cache(s, &mut 0)?,
            }
            monolith_profile_begin();
            let got = s.cma_alloc(a, pages, 0);
            monolith_profile_end();
            let pfn = got?;
            s.cma_release(a, pfn, pages);
            Ok(())
        })();
        s.set_cma_balance(balance);
        if fill == AreaFill::FullOfCleanCache {
            s.cache_drop_clean();
        }
        result
    })?;
    Ok(profiled?)
}
