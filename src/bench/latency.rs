//! `cma_alloc` latency per size, with the area idle, full of anonymous pages and full of
//! clean page cache, against a memcpy of the same bytes (see [`super`] for the method).

use alloc::string::String;
use alloc::vec::Vec;

use super::report::{LatencyRow, Stats};
use super::{fill_cma_with_anon, fill_cma_with_clean_cache, not_cma, now, BenchError};
use crate::kmem::{self, AreaId, KmemError, KmemState};
use crate::mm::{CmaBalance, PAGE_SHIFT, PAGE_SIZE};

/// `cma_alloc` latency per size, idle, full of anonymous pages and full of clean page
/// cache, against a memcpy of the same size. Sizes larger than half the area (the memcpy needs two buffers) are skipped.
pub fn cma_latency(
    area: Option<&str>,
    sizes: &[usize],
    trials: usize,
) -> Result<(String, Vec<LatencyRow>), BenchError> {
    let measured = kmem::with_state(|s| -> Result<_, KmemError> {
        let a = s.area(area)?;
        let name = String::from(s.area_name(a));
        let area_pages = s.area_pages(a);
        let sizes: Vec<usize> = sizes
            .iter()
            .copied()
            .filter(|&n| n > 0 && 2 * n <= area_pages)
            .collect();
        let trials = trials.max(1);
        let mut rows: Vec<LatencyRow> = sizes
            .iter()
            .map(|&pages| LatencyRow {
                pages,
                ..LatencyRow::default()
            })
            .collect();
        let max = sizes.iter().copied().max().unwrap_or(0);
        if max == 0 {
            return Ok((name, rows));
        }

        // memcpy baseline: two contiguous buffers from the idle area.
        let src = s.cma_alloc(a, max, 0)?;
        let dst = match s.cma_alloc(a, max, 0) {
            Ok(p) => p,
            Err(e) => {
                s.cma_release(a, src, max);
                return Err(e);
            }
        };
        let mut samples = Vec::with_capacity(trials);
        for row in rows.iter_mut() {
            samples.clear();
            for _ in 0..trials {
                let t0 = now();
                // Safety: both buffers are CMA allocations this function holds, identity-
                // mapped RAM of `max` pages each, disjoint, nobody else touches them.
                unsafe {
                    kmem::copy_bytes(
                        (dst << PAGE_SHIFT) as *mut u8,
                        (src << PAGE_SHIFT) as *const u8,
                        row.pages * PAGE_SIZE,
                    )
                };
                samples.push(now() - t0);
            }
            row.memcpy = Stats::of(&mut samples);
        }
        s.cma_release(a, src, max);
        s.cma_release(a, dst, max);

        // Idle area.
        for row in rows.iter_mut() {
            row.idle = time_allocs(s, a, row, trials, &mut samples, |_| Ok(()))?;
        }

        // Full of anonymous pages.
        let balance = s.cma_balance();
        s.set_cma_balance(CmaBalance::new(0, 1).unwrap_or(CmaBalance::LINUX));
        s.anon_start();
        let baseline_pages = s.anon_pages();
        let result = (|| -> Result<(), KmemError> {
            fill_cma_with_anon(s)?;
            let mut migrated = Vec::with_capacity(trials);
            for row in rows.iter_mut() {
                samples.clear();
                migrated.clear();
                for _ in 0..trials {
                    let before = s.migrations();
                    let t0 = now();
                    let got = s.cma_alloc(a, row.pages, 0);
                    let dt = now() - t0;
                    match got {
                        Ok(pfn) => {
                            samples.push(dt);
                            migrated.push(s.migrations() - before);
                            s.cma_release(a, pfn, row.pages);
                        }
                        Err(_) => row.failures += 1,
                    }
                    // Refill the hole and drop as many pages outside CMA, so the next trial
                    // meets a full area and the same free memory.
                    let added = fill_cma_with_anon(s)?;
                    s.anon_shrink_where(added, not_cma);
                }
                row.full = Stats::of(&mut samples);
                row.migrated_per_alloc = Stats::of(&mut migrated).median;
            }
            Ok(())
        })();
        let extra = s.anon_pages().saturating_sub(baseline_pages);
        s.anon_shrink(extra);

        // Full of clean page cache: the allocation drops what is in the way, copies nothing.
        let mut next_block = 0;
        let result = result.and_then(|()| {
            fill_cma_with_clean_cache(s, &mut next_block)?;
            for row in rows.iter_mut() {
                row.clean_cache = time_allocs(s, a, row, trials, &mut samples, |s| {
                    fill_cma_with_clean_cache(s, &mut next_block)
                })?;
            }
            Ok(())
        });
        s.set_cma_balance(balance);
        s.cache_drop_clean();
        result.map(|()| (name, rows))
    })?;
    Ok(measured?)
}

/// `trials` `cma_alloc`s of `row.pages` pages, each released at once and followed by
/// `after` (which refills the area); failures are counted in the row. The times of the
/// successful ones.
fn time_allocs(
    s: &mut KmemState,
    a: AreaId,
    row: &mut LatencyRow,
    trials: usize,
    samples: &mut Vec<u64>,
    mut after: impl FnMut(&mut KmemState) -> Result<(), KmemError>,
) -> Result<Stats, KmemError> {
    samples.clear();
    for _ in 0..trials {
        let t0 = now();
        let got = s.cma_alloc(a, row.pages, 0);
        let dt = now() - t0;
        match got {
            Ok(pfn) => {
                samples.push(dt);
                s.cma_release(a, pfn, row.pages);
            }
            Err(_) => row.failures += 1,
        }
        after(s)?;
    }
    Ok(Stats::of(samples))
}
