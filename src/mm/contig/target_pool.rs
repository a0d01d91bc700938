//! Migration targets: where the pages leaving the range go.
//!
//! # Theory of operation
//!
//! Order-0 targets come from a pool: one larger block taken from the buddy and split into
//! frames, so a batch costs one buddy allocation instead of one per page. Non-CMA memory is
//! used first (the Movable lists, then a single page the ordinary way, which may steal,
//! and only then CMA), so emptying one CMA range does not eat the others; the isolated range
//! itself is never handed out. Whatever the pool has left goes back when the range is done.
//! With PASR steering that whole sequence runs over busy spans first and only then over
//! entirely free ones (`Zone::busy_spans_first`), so migrated pages land where refresh
//! runs anyway.
#![forbid(unsafe_code)]

use super::ContigError;
use crate::mm::{AllocError, Gfp, GfpFlags, MigrateType, Pfn, Zone};

/// Order-0 migration targets taken from the buddy as one larger block and split
/// (`[next, end)` are allocated, ownerless, not yet used), so a batch costs one buddy
/// allocation instead of one per page. Whatever is left is freed when the range is done.
pub(super) struct TargetPool {
    pub(super) next: Pfn,
    pub(super) end: Pfn,
}

impl TargetPool {
    pub(super) const EMPTY: TargetPool = TargetPool { next: 0, end: 0 };

    /// A target for a block of `order`; `pages_left` (pages from the block to the end of
    /// the range) bounds how much the pool takes at once.
    pub(super) fn take(
        &mut self,
        zone: &mut Zone<'_>,
        order: usize,
        pages_left: usize,
    ) -> Result<Pfn, ContigError> {
        if order != 0 {
            return alloc_migration_target(zone, order);
        }
        if self.next == self.end {
            self.refill(zone, pages_left)?;
        }
        if self.next < self.end {
            let pfn = self.next;
            self.next += 1;
            return Ok(pfn);
        }
        alloc_migration_target(zone, 0)
    }

    /// Non-CMA memory first, as [`alloc_migration_target`]: a split block from the Movable
    /// lists, else a single page the ordinary way (which may steal), and only then CMA.
    /// Leaves the pool empty when the order-0 path should be used.
    fn refill(&mut self, zone: &mut Zone<'_>, pages_left: usize) -> Result<(), ContigError> {
        let max_order = (usize::BITS - 1 - pages_left.max(1).leading_zeros()) as usize;
        if max_order == 0 {
            return Ok(());
        }
        let block = zone.busy_spans_first(|zone| {
            zone.alloc_split_block(max_order, MigrateType::Movable)
                .or_else(|| {
                    zone.alloc_pages(0, Gfp::MOVABLE.with(GfpFlags::NO_CMA))
                        .ok()
                        .map(|pfn| (pfn, 0))
                })
                .or_else(|| zone.alloc_split_block(max_order, MigrateType::Cma))
        });
        if let Some((pfn, order)) = block {
            (self.next, self.end) = (pfn, pfn + (1 << order));
        }
        Ok(())
    }

    /// Give the unused targets back.
    pub(super) fn drain(&mut self, zone: &mut Zone<'_>) {
        if self.next < self.end {
            zone.free_order0_run(self.next, self.end);
        }
        *self = TargetPool::EMPTY;
    }
}

/// Non-CMA memory first, so emptying one CMA range does not eat the others; the isolated
/// range itself is never handed out.
fn alloc_migration_target(zone: &mut Zone<'_>, order: usize) -> Result<Pfn, ContigError> {
    zone.busy_spans_first(|zone| {
        match zone.alloc_pages(order, Gfp::MOVABLE.with(GfpFlags::NO_CMA)) {
            Ok(pfn) => Some(pfn),
            Err(AllocError::NoMemory | AllocError::Watermark) => zone.alloc_cma_pages(order).ok(),
            Err(_) => None,
        }
    })
    .ok_or(ContigError::NoMemory)
}
