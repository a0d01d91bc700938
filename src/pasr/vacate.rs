//! The vacating pass before sleep: empty nearly empty DRAM spans by migrating their movable
//! pages and dropping their clean page cache into spans that stay refreshed, then mask
//! every unit that is entirely free; and the pre-sleep step of either policy.
//!
//! # Theory of operation
//!
//! 1. **Survey** every span of the window (one walk over its blocks): free pages, used
//!    pages, and the first thing that can never be moved (an unmovable or pinned owner,
//!    such as a kernel page, a dma-buf or a contiguous CMA allocation; a hole or reserved
//!    frame; an isolated pageblock someone else holds).
//! 2. **Group** spans by the pair rule: spans that some unit needs free together (its own
//!    and its partners') are vacated together or not at all; vacating half a pair gains
//!    nothing.
//! 3. **Plan**, emptiest group first. Moving a group's used pages out needs that much room
//!    in spans that stay refreshed: the zone's free pages (isolated ones do not count),
//!    minus those of the entirely free spans (they must stay free), minus those of every
//!    group chosen so far (they are being emptied), minus the min watermark (the targets'
//!    allocations respect it). Since a span's used and free pages add up to the span, the
//!    rule amounts to "the spans kept refreshed must hold all the data": emptiest first
//!    chooses the most spans, and the least copying, that fit. Pages are not enough: a
//!    block moves whole, into a free block at least its size, so the same count is kept
//!    per order (the survey counts used and free blocks by order, the zone's lists give
//!    the rest), and a group whose blocks cannot all be placed, largest first, is skipped
//!    as fragmented before anything of it moves. (The order-0 target pool also splits
//!    blocks, so in a layout this tight a larger move can still find its block taken: the
//!    group then fails part way, as step 5 says.) A group is also skipped once the
//!    caller's page budget (pages migrated or dropped) cannot cover it: the pass never
//!    starts a group it cannot finish.
//! 4. **Isolate** every pageblock of the chosen spans and of the entirely free spans, each
//!    with its own type to restore (a CMA area's pageblocks stay CMA): migration targets
//!    can then only land in spans that stay refreshed.
//! 5. **Evacuate** each chosen span with `alloc_contig_range`'s machinery in its releasing
//!    variant ([`evacuate_isolated_range`]): clean page cache is dropped, other movable
//!    blocks migrate in batches, and the frames stay free. A failure (a page turned
//!    unmovable, transient failures that persist, no room) skips the group with the reason;
//!    whatever migrated stays migrated, nothing is lost.
//! 6. **Restore** the pageblock types (free memory merges back into MAX_ORDER blocks), then
//!    [`Sections::mask_free_units`].
//!
//! Masks from an earlier sleep are dropped first: every mask is recomputed at the end.
//! Cost: the survey is O(blocks in the window); isolation O(pageblocks of the spans
//! isolated); evacuation O(pages of the chosen spans) plus one copy per migrated page.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::sections::{PasrMasks, Sections};
use crate::mm::{
    evacuate_isolated_range, ContigError, MigrateError, MigrateType, Migrator, Move, Owner,
    OwnerKind, PageState, PasrMode, Pfn, Reclaim, Zone, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES,
};
use crate::util::bits::set_bits;

/// Why a span was not vacated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A hole, a reserved frame (firmware image, no-map carveout), or a part of the span
    /// outside the zone: never free.
    Unmanaged { pfn: Pfn },
    /// An allocation that cannot move: a kernel page, a pinned or dma-buf buffer, a
    /// contiguous (CMA) allocation, or one whose owner was never recorded.
    Unmovable { pfn: Pfn, kind: OwnerKind },
    /// A pageblock someone else holds isolated.
    Isolated { pfn: Pfn },
    /// A span this one must be masked together with cannot be emptied.
    Partner { span: usize },
    /// The spans that stay refreshed cannot hold this span's pages (`needed`) as well.
    NoRoom { needed: usize, room: usize },
    /// The spans that stay refreshed have the pages free but not in blocks this large:
    /// `needed` blocks of `order` to move (this group's and those of the groups chosen
    /// before it, which it would take room from), free room for `room` of them.
    Fragmented {
        order: usize,
        needed: usize,
        room: usize,
    },
    /// The page budget left cannot cover this span's pages.
    Budget { needed: usize, left: usize },
    /// Emptying failed part way (what moved stays moved).
    Failed(ContigError),
    /// No unit lies in this span: emptying it would mask nothing.
    NoUnit,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SkipReason::Unmanaged { pfn } => {
                write!(f, "pfn {pfn:#x} is a hole, reserved or outside the zone")
            }
            SkipReason::Unmovable { pfn, kind } => {
                write!(f, "pfn {pfn:#x} holds an unmovable {kind:?} allocation")
            }
            SkipReason::Isolated { pfn } => {
                write!(f, "pageblock {pfn:#x} is isolated by someone else")
            }
            SkipReason::Partner { span } => write!(f, "partner span {span} cannot be emptied"),
            SkipReason::NoRoom { needed, room } => {
                write!(
                    f,
                    "{needed} pages to move, room for {room} in refreshed spans"
                )
            }
            SkipReason::Fragmented {
                order,
                needed,
                room,
            } => write!(
                f,
                "{needed} blocks of order {order} to move, free blocks for {room} in refreshed spans"
            ),
            SkipReason::Budget { needed, left } => {
                write!(f, "{needed} pages to move, budget left {left}")
            }
            SkipReason::Failed(e) => write!(f, "emptying failed: {e}"),
            SkipReason::NoUnit => f.write_str("no bank or segment lies in this span"),
        }
    }
}

/// A span the pass left as it was, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanSkip {
    pub span: usize,
    pub reason: SkipReason,
}

/// What a pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VacateReport {
    /// Span bits of the spans this pass emptied.
    pub vacated: u64,
    /// Span bits of the spans that were entirely free already.
    pub already_free: u64,
    pub pages_migrated: usize,
    pub pages_dropped: usize,
    /// Spans neither free nor emptied, in span order.
    pub skipped: Vec<SpanSkip>,
    pub budget_pages: usize,
    /// Pages migrated or dropped.
    pub budget_used: usize,
    /// The masks to write before self-refresh.
    pub masks: PasrMasks,
}

/// Why no pass ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VacateError {
    /// The zone tracks other spans than these sections (or none): attach them first.
    NotAttached,
}

impl fmt::Display for VacateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VacateError::NotAttached => f.write_str("PASR is not attached to this zone"),
        }
    }
}

impl core::error::Error for VacateError {}

/// Blocks per order (index = order).
type BlockCounts = [usize; NR_PAGE_ORDERS];
const NO_BLOCKS: BlockCounts = [0; NR_PAGE_ORDERS];

/// `into += more`, order by order.
fn add_blocks(into: &mut BlockCounts, more: &BlockCounts) {
    for (a, b) in into.iter_mut().zip(more) {
        *a += b;
    }
}

/// One span as the survey found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpanUse {
    /// Entirely free: its free blocks.
    Free(BlockCounts),
    /// Pages of movable allocations and free pages, and the same as blocks per order.
    Movable {
        used: usize,
        free: usize,
        used_blocks: BlockCounts,
        free_blocks: BlockCounts,
    },
    Blocked(SkipReason),
}

/// What the spans that stay refreshed must take in: the used blocks of every group chosen so
/// far (per order), and the free blocks that stop counting as room (those of the entirely
/// free spans and of every chosen group).
#[derive(Clone, Copy)]
struct Demand {
    pages: usize,
    blocks: BlockCounts,
    lost_free: BlockCounts,
}

impl Demand {
    fn with(mut self, used: usize, used_blocks: &BlockCounts, free_blocks: &BlockCounts) -> Demand {
        self.pages += used;
        add_blocks(&mut self.blocks, used_blocks);
        add_blocks(&mut self.lost_free, free_blocks);
        self
    }
}

/// Whether `need` blocks fit into the free blocks `listed` less `lost` (per order): largest
/// first, every free block left over split into halves for the next order, as the buddy
/// can serve them. Packing blocks of powers of two into free blocks of powers of two this
/// way is exact: a smaller block never needs a larger one's place. (The page count, and the
/// watermark's pages, are the caller's rule.) `Err((order, needed, room))` names the first
/// order that does not fit: blocks needed and free blocks of that order left.
fn blocks_fit(
    need: &BlockCounts,
    listed: &BlockCounts,
    lost: &BlockCounts,
) -> Result<(), (usize, usize, usize)> {
    let mut room = 0usize;
    for o in (0..NR_PAGE_ORDERS).rev() {
        room = room
            .saturating_mul(2)
            .saturating_add(listed[o].saturating_sub(lost[o]));
        if room < need[o] {
            return Err((o, need[o], room));
        }
        room -= need[o];
    }
    Ok(())
}

/// The pre-sleep step of the zone's policy: with [`PasrMode::Steering`] the vacating pass
/// ([`vacate_and_mask`]); with [`PasrMode::Baseline2012`] only masking what happens to be
/// free, as the 2012 framework did. Either way the report's `masks` are what to write.
pub fn prepare_for_sleep<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    sections: &mut Sections,
    migrator: &mut M,
    budget_pages: usize,
) -> Result<VacateReport, VacateError> {
    match zone.pasr_mode() {
        Some(PasrMode::Steering) if zone.pasr_spans() == Some(sections.spans()) => {
            vacate_and_mask(zone, sections, migrator, budget_pages)
        }
        Some(PasrMode::Baseline2012) if zone.pasr_spans() == Some(sections.spans()) => {
            // Free frames on the pcp are free memory too: the buddy must see them.
            zone.drain_pcp();
            let masks = sections.mask_free_units(zone);
            Ok(VacateReport {
                vacated: 0,
                already_free: zone.pasr_free_spans(),
                pages_migrated: 0,
                pages_dropped: 0,
                skipped: Vec::new(),
                budget_pages,
                budget_used: 0,
                masks,
            })
        }
        _ => Err(VacateError::NotAttached),
    }
}

/// The vacating pass (see the module docs), within `budget_pages` pages migrated or
/// dropped, then [`Sections::mask_free_units`].
pub fn vacate_and_mask<M: Migrator + ?Sized>(
    zone: &mut Zone<'_>,
    sections: &mut Sections,
    migrator: &mut M,
    budget_pages: usize,
) -> Result<VacateReport, VacateError> {
    let spans = sections.spans();
    if zone.pasr_spans() != Some(spans) {
        return Err(VacateError::NotAttached);
    }
    sections.unmask_all(zone);
    // Free frames on the pcp go back to the buddy first: spans they kept from looking
    // free may be masked, and isolating the spans finds nothing to drain frame by frame.
    zone.drain_pcp();
    let nr = spans.nr_spans();
    let uses: Vec<SpanUse> = (0..nr).map(|s| survey(zone, spans.span_range(s))).collect();
    let mut skipped: Vec<SpanSkip> = Vec::new();
    let already_free = (0..nr)
        .filter(|&s| matches!(uses[s], SpanUse::Free(_)))
        .fold(0u64, |b, s| b | 1 << s);

    // Groups of spans that must be freed together.
    let groups = pair_groups(sections, nr);
    let covered = groups.iter().fold(0u64, |b, g| b | g);
    for s in (0..nr).filter(|s| covered & (1 << s) == 0 && already_free & (1 << s) == 0) {
        skipped.push(SpanSkip {
            span: s,
            reason: SkipReason::NoUnit,
        });
    }
    // (used pages, free pages, spans, used blocks, free blocks)
    let mut candidates: Vec<(usize, usize, u64, BlockCounts, BlockCounts)> = Vec::new();
    for &group in &groups {
        let members = || set_bits(group);
        if let Some(blocker) = members().find(|&s| matches!(uses[s], SpanUse::Blocked(_))) {
            for s in members() {
                let reason = match uses[s] {
                    SpanUse::Blocked(reason) => reason,
                    _ => SkipReason::Partner { span: blocker },
                };
                skipped.push(SpanSkip { span: s, reason });
            }
            continue;
        }
        let (mut used_blocks, mut free_blocks) = (NO_BLOCKS, NO_BLOCKS);
        let (mut used, mut free) = (0, 0);
        for s in members() {
            let (u, f, ub, fb) = match &uses[s] {
                SpanUse::Movable {
                    used,
                    free,
                    used_blocks,
                    free_blocks,
                } => (*used, *free, used_blocks, free_blocks),
                // Its free blocks are the free spans' already.
                SpanUse::Free(_) => (0, 0, &NO_BLOCKS, &NO_BLOCKS),
                SpanUse::Blocked(_) => unreachable!("blocked groups were skipped"),
            };
            used += u;
            free += f;
            add_blocks(&mut used_blocks, ub);
            add_blocks(&mut free_blocks, fb);
        }
        if used > 0 {
            candidates.push((used, free, group, used_blocks, free_blocks));
        }
    }
    candidates.sort_by_key(|&(used, _, group, _, _)| (used, group.trailing_zeros()));

    // Plan: emptiest first, while the refreshed spans can hold the data and the budget lasts.
    let free_of_free_spans = already_free.count_ones() as usize * spans.span_pages();
    let capacity = zone
        .counters()
        .free_pages
        .saturating_sub(free_of_free_spans)
        .saturating_sub(zone.watermarks().min);
    // The same in blocks: a block moves only into a free block at least its size.
    let listed = zone_free_blocks(zone);
    let free_spans_blocks = set_bits(already_free).fold(NO_BLOCKS, |mut b, s| {
        if let SpanUse::Free(fb) = &uses[s] {
            add_blocks(&mut b, fb);
        }
        b
    });
    let mut demand = Demand {
        pages: 0,
        blocks: NO_BLOCKS,
        lost_free: free_spans_blocks,
    };
    let mut emptied_free = 0usize;
    let mut chosen: Vec<(usize, u64)> = Vec::new();
    for (used, free, group, used_blocks, free_blocks) in &candidates {
        let (used, free, group) = (*used, *free, *group);
        let room = capacity.saturating_sub(demand.pages + emptied_free + free);
        let next = demand.with(used, used_blocks, free_blocks);
        let reason = if demand.pages + used > budget_pages {
            Some(SkipReason::Budget {
                needed: used,
                left: budget_pages - demand.pages,
            })
        } else if used > room {
            Some(SkipReason::NoRoom { needed: used, room })
        } else if let Err((order, needed, room)) =
            blocks_fit(&next.blocks, &listed, &next.lost_free)
        {
            Some(SkipReason::Fragmented {
                order,
                needed,
                room,
            })
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.extend(set_bits(group).map(|span| SpanSkip { span, reason })),
            None => {
                demand = next;
                emptied_free += free;
                chosen.push((used, group));
            }
        }
    }

    // Isolate the chosen spans and the free ones, so no target lands in either.
    let mut isolated: Vec<(Pfn, MigrateType)> = Vec::new();
    let isolate_set = chosen.iter().fold(already_free, |b, &(_, g)| b | g);
    let mut failed_isolation = 0u64;
    for s in set_bits(isolate_set) {
        let mark = isolated.len();
        if let Err(pfn) = isolate_span(zone, spans.span_range(s), &mut isolated) {
            for &(pb, mt) in &isolated[mark..] {
                zone.undo_isolate_page_range(pb, pb + PAGEBLOCK_NR_PAGES, mt);
            }
            isolated.truncate(mark);
            failed_isolation |= 1 << s;
            if already_free & (1 << s) == 0 {
                skipped.push(SpanSkip {
                    span: s,
                    reason: SkipReason::Failed(ContigError::Busy { pfn }),
                });
            }
        }
    }

    // Evacuate, group by group.
    let mut counting = Counting {
        inner: migrator,
        migrated: 0,
        dropped: 0,
    };
    let mut vacated_groups = 0u64;
    for &(used, group) in &chosen {
        if group & failed_isolation != 0 {
            for s in set_bits(group & !failed_isolation) {
                skipped.push(SpanSkip {
                    span: s,
                    reason: SkipReason::Partner {
                        span: (group & failed_isolation).trailing_zeros() as usize,
                    },
                });
            }
            continue;
        }
        let left = budget_pages.saturating_sub(counting.used());
        if used > left {
            skipped.extend(set_bits(group).map(|span| SpanSkip {
                span,
                reason: SkipReason::Budget { needed: used, left },
            }));
            continue;
        }
        let mut failure = None;
        for s in set_bits(group).filter(|&s| matches!(uses[s], SpanUse::Movable { .. })) {
            let r = spans.span_range(s);
            if let Err(e) = evacuate_isolated_range(zone, &mut counting, r.start, r.end) {
                failure = Some((s, e));
                break;
            }
        }
        match failure {
            None => vacated_groups |= group,
            Some((bad, e)) => {
                for s in set_bits(group) {
                    let reason = if s == bad {
                        SkipReason::Failed(e)
                    } else {
                        SkipReason::Partner { span: bad }
                    };
                    skipped.push(SpanSkip { span: s, reason });
                }
            }
        }
    }
    for &(pb, mt) in &isolated {
        zone.undo_isolate_page_range(pb, pb + PAGEBLOCK_NR_PAGES, mt);
    }

    let masks = sections.mask_free_units(zone);
    skipped.sort_by_key(|s| s.span);
    let (pages_migrated, pages_dropped) = (counting.migrated, counting.dropped);
    Ok(VacateReport {
        vacated: vacated_groups & !already_free & zone.pasr_free_spans(),
        already_free,
        pages_migrated,
        pages_dropped,
        skipped,
        budget_pages,
        budget_used: pages_migrated + pages_dropped,
        masks,
    })
}

/// One walk over a span's blocks (spans start on MAX_ORDER boundaries, so the walk meets
/// block heads only).
fn survey(zone: &Zone<'_>, range: Range<Pfn>) -> SpanUse {
    for pb in range.clone().step_by(PAGEBLOCK_NR_PAGES) {
        match zone.pageblock_migratetype(pb) {
            None => return SpanUse::Blocked(SkipReason::Unmanaged { pfn: pb }),
            Some(MigrateType::Isolate) => {
                return SpanUse::Blocked(SkipReason::Isolated { pfn: pb })
            }
            Some(_) => {}
        }
    }
    let (mut used, mut free) = (0, 0);
    let (mut used_blocks, mut free_blocks) = (NO_BLOCKS, NO_BLOCKS);
    let mut pfn = range.start;
    while pfn < range.end {
        let Some(page) = zone.page(pfn) else {
            return SpanUse::Blocked(SkipReason::Unmanaged { pfn });
        };
        let order = page.order();
        let pages = 1usize << order;
        match page.state() {
            PageState::Buddy => {
                free += pages;
                free_blocks[order] += 1;
            }
            // Free on the pcp: isolating the span's pageblocks gives it back to the buddy.
            // Held CMA frames (never in a zone with PASR) are free and lent the same way.
            PageState::Pcp | PageState::Held => {
                free += 1;
                free_blocks[0] += 1;
            }
            PageState::Head => {
                let kind = page.owner().kind();
                if !kind.is_movable() {
                    return SpanUse::Blocked(SkipReason::Unmovable { pfn, kind });
                }
                used += pages;
                used_blocks[order] += 1;
            }
            // A tail here would mean a block straddling the span's start, which alignment
            // rules out: read it as "not ours to move".
            PageState::Hole | PageState::Reserved | PageState::Tail => {
                return SpanUse::Blocked(SkipReason::Unmanaged { pfn })
            }
        }
        pfn += pages;
    }
    if used == 0 {
        SpanUse::Free(free_blocks)
    } else {
        SpanUse::Movable {
            used,
            free,
            used_blocks,
            free_blocks,
        }
    }
}

/// The zone's listed free blocks per order, of every type but Isolate (what migration
/// targets can come from).
fn zone_free_blocks(zone: &Zone<'_>) -> BlockCounts {
    let mut blocks = NO_BLOCKS;
    for (o, b) in blocks.iter_mut().enumerate() {
        *b = MigrateType::ALL
            .iter()
            .filter(|&&mt| mt != MigrateType::Isolate)
            .map(|&mt| zone.nr_free_blocks(o, mt))
            .sum();
    }
    blocks
}

/// The groups of spans the pair rule ties together (span bits), lowest span first: spans in
/// one unit's guard set (its own and its partners') belong to one group. Spans no unit lies
/// in belong to none.
fn pair_groups(sections: &Sections, nr: usize) -> Vec<u64> {
    let mut group_of: Vec<u64> = (0..nr).map(|_| 0).collect();
    for unit in sections.units() {
        // Every span's entry is its whole group so far, so one union per member merges
        // every group this unit touches.
        let mut g = sections.guard_spans(unit);
        for s in set_bits(g) {
            g |= group_of[s];
        }
        for s in set_bits(g) {
            group_of[s] = g;
        }
    }
    let mut groups: Vec<u64> = Vec::new();
    for &g in &group_of {
        if g != 0 && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// Isolate every pageblock of `range`, recording each with its type to restore. `Err`
/// names the frame that refused (the caller undoes what was recorded).
fn isolate_span(
    zone: &mut Zone<'_>,
    range: Range<Pfn>,
    isolated: &mut Vec<(Pfn, MigrateType)>,
) -> Result<(), Pfn> {
    for pb in range.step_by(PAGEBLOCK_NR_PAGES) {
        let mt = zone.pageblock_migratetype(pb).ok_or(pb)?;
        match zone.start_isolate_page_range(pb, pb + PAGEBLOCK_NR_PAGES, mt) {
            Ok(()) => isolated.push((pb, mt)),
            Err(crate::mm::MmError::Busy { pfn }) => return Err(pfn),
            Err(_) => return Err(pb),
        }
    }
    Ok(())
}

/// The caller's migrator, counting the pages that moved or were dropped.
struct Counting<'m, M: ?Sized> {
    inner: &'m mut M,
    migrated: usize,
    dropped: usize,
}

impl<M: ?Sized> Counting<'_, M> {
    fn used(&self) -> usize {
        self.migrated + self.dropped
    }
}

impl<M: Migrator + ?Sized> Migrator for Counting<'_, M> {
    fn migrate(
        &mut self,
        src: Pfn,
        dst: Pfn,
        order: usize,
        owner: Owner,
    ) -> Result<(), MigrateError> {
        let r = self.inner.migrate(src, dst, order, owner);
        if r.is_ok() {
            self.migrated += 1 << order;
        }
        r
    }

    fn reclaim(&mut self, pfn: Pfn, order: usize, owner: Owner) -> bool {
        let dropped = self.inner.reclaim(pfn, order, owner);
        if dropped {
            self.dropped += 1 << order;
        }
        dropped
    }

    fn prepare_reclaim(&mut self, r: &mut Reclaim) -> bool {
        // The inner migrator's own `prepare_reclaim` does not come back through
        // `Counting::reclaim`: count here.
        let dropped = self.inner.prepare_reclaim(r);
        self.dropped += usize::from(dropped);
        dropped
    }

    fn finish_reclaim(&mut self, pages: &[Reclaim]) {
        self.inner.finish_reclaim(pages);
    }

    fn prepare(&mut self, m: &mut Move) -> Result<(), MigrateError> {
        self.inner.prepare(m)
    }

    fn migrate_batch(&mut self, moves: &mut [Move]) -> usize {
        // The inner batch does not come back through `Counting::migrate`: count here.
        let failed = self.inner.migrate_batch(moves);
        self.migrated += moves
            .iter()
            .filter(|m| m.result.is_ok())
            .map(|m| 1usize << m.order)
            .sum::<usize>();
        failed
    }

    fn cancel(&mut self, moves: &mut [Move]) {
        self.inner.cancel(moves);
    }
}

#[cfg(test)]
mod tests;
