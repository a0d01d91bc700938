//! Partial array self-refresh in the buddy: free MAX_ORDER blocks counted per DRAM span, and
//! placement that keeps allocations out of spans that are entirely free.
//!
//! # Theory of operation
//!
//! A *span* is one of `nr_spans` equal physical ranges from `base_pfn`, each a whole number
//! of MAX_ORDER blocks: the bytes one bank or segment index covers (see
//! `crate::pasr::geometry`). A span can be masked from refresh only when every frame of it
//! is free, and a fully free span is exactly a span all of whose MAX_ORDER blocks sit on
//! free lists (anything smaller than a MAX_ORDER block means its MAX_ORDER block has a busy
//! frame, or has a hole or reserved frame and can never merge). So, as in the 2012 Linux
//! framework (`pasr_put`/`pasr_get` hooked at max order only), the zone counts free
//! MAX_ORDER blocks per span where, and only where, such a block enters or leaves a free
//! list: `add_to_free_list`/`del_from_free_list` at `order == MAX_ORDER`. Below max order
//! the cost is that one compare, in a zone with PASR or without; a zone without PASR pays
//! one more test of an `Option` at max order.
//!
//! Every way memory leaves the free lists goes through `del_from_free_list` (allocation and
//! splitting, stealing, `take_free_range` for `alloc_contig_range` and `reserve_range`,
//! retyping a pageblock under a MAX_ORDER block), so no frame of a span can be handed out
//! without its count dropping first. When the span is *guarded* (some masked unit depends
//! on it, [`Zone::pasr_guard`]) the drop also sets its bit in *touched*, which the caller
//! reads after the operation ([`Zone::pasr_take_touched`], one load) to unmask before the
//! memory is used.
//!
//! Isolated free blocks do not count as free. Isolation means someone
//! (`alloc_contig_range`, the vacating pass) is about to take or rearrange the range, and
//! they take isolated blocks with `take_free_range`, not through an allocation: counting
//! the isolation itself as the block leaving means a masked span is flagged the moment it
//! is isolated, long before any frame of it is handed out, and a range being emptied never
//! looks maskable half way. (Linux's `NR_FREE_PAGES` excludes isolated pages for the same
//! reason.) Spans with holes or reserved frames never fill up, and neither do spans that
//! reach outside the zone.
//!
//! Placement ([`PasrMode::Steering`]): the MAX_ORDER free lists are split per span (plus
//! one list for blocks outside the PASR window) with, per migrate type, a bitmap of the
//! spans whose list is not empty. `free_area[MAX_ORDER].head[mt]`, which the buddy core,
//! the fallback and the migration-target code read, always holds the *preferred* block:
//! outside the window first, then the lowest span that is not entirely free
//! (`trailing_zeros` of `listed & !full`). Blocks of entirely free spans are hidden there
//! (the head is `NIL` when only such spans have one), so Linux's request sequence (CMA
//! balance, own type, CMA, stealing) runs over memory in busy spans first; only when it
//! fails are the entirely free spans revealed and the sequence run again, lowest span
//! first. One exception keeps Linux's grouping by mobility: a Movable request looks for
//! its own type and CMA in the free spans before it steals from kernel pageblocks (whose
//! free pages later kernel allocations need; without them those would pin new spans);
//! an Unmovable or Reclaimable request steals in busy spans before it opens a free span.
//! Every block below MAX_ORDER lies in a busy span by definition, so nothing else
//! changes. The heads are refreshed in O(1) on each MAX_ORDER list change: one type's head,
//! or all six when a span's "entirely free" state flipped.
//!
//! [`PasrMode::Baseline2012`] keeps the ordinary MAX_ORDER lists (no steering) and only
//! counts, the 2012 framework as posted, so both policies can be compared on one trace.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::Zone;
use crate::mm::migratetype::MIGRATE_TYPES;
use crate::mm::page::NIL;
use crate::mm::{MigrateType, PageState, Pfn, MAX_ORDER};

/// Most spans a zone tracks: span bits and the outside-window list share one `u64`.
pub const PASR_MAX_SPANS: usize = 63;

/// Pages in a MAX_ORDER block, the counting granule.
const BLOCK_PAGES: usize = 1 << MAX_ORDER;

/// The list (and bit) of MAX_ORDER blocks outside the PASR window; span `s` is `s + 1`.
const OUTSIDE: usize = 0;

/// The physical spans PASR masks: `nr_spans` equal ranges of `span_pages` frames from
/// `base_pfn`. Build it with [`PasrSpans::new`] (or `crate::pasr::sections` from a
/// geometry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasrSpans {
    base_pfn: Pfn,
    span_pages: usize,
    nr_spans: usize,
}

/// Why a span description or a PASR set-up was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasrSetupError {
    /// Zero spans.
    NoSpans,
    /// More than [`PASR_MAX_SPANS`].
    TooManySpans { spans: usize },
    /// A span is not a whole, non-zero number of MAX_ORDER blocks.
    SpanSize { span_pages: usize },
    /// The base is not aligned to a MAX_ORDER block.
    BaseAlignment { base_pfn: Pfn },
    /// The window does not fit in the pfn space.
    Overflow,
}

impl fmt::Display for PasrSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PasrSetupError::NoSpans => f.write_str("PASR needs at least one span"),
            PasrSetupError::TooManySpans { spans } => {
                write!(f, "{spans} PASR spans, at most {PASR_MAX_SPANS} supported")
            }
            PasrSetupError::SpanSize { span_pages } => write!(
                f,
                "a PASR span of {span_pages} pages is not a whole number of {BLOCK_PAGES}-page blocks"
            ),
            PasrSetupError::BaseAlignment { base_pfn } => write!(
                f,
                "PASR window base pfn {base_pfn:#x} is not aligned to a {BLOCK_PAGES}-page block"
            ),
            PasrSetupError::Overflow => f.write_str("PASR window overflows the pfn space"),
        }
    }
}

impl core::error::Error for PasrSetupError {}

impl PasrSpans {
    /// `nr_spans` spans of `span_pages` frames from `base_pfn`; refused unless every span is
    /// a whole number of MAX_ORDER blocks starting on a block boundary.
    pub fn new(
        base_pfn: Pfn,
        span_pages: usize,
        nr_spans: usize,
    ) -> Result<PasrSpans, PasrSetupError> {
        if nr_spans == 0 {
            return Err(PasrSetupError::NoSpans);
        }
        if nr_spans > PASR_MAX_SPANS {
            return Err(PasrSetupError::TooManySpans { spans: nr_spans });
        }
        if span_pages == 0 || !span_pages.is_multiple_of(BLOCK_PAGES) {
            return Err(PasrSetupError::SpanSize { span_pages });
        }
        if !base_pfn.is_multiple_of(BLOCK_PAGES) {
            return Err(PasrSetupError::BaseAlignment { base_pfn });
        }
        span_pages
            .checked_mul(nr_spans)
            .and_then(|n| base_pfn.checked_add(n))
            .ok_or(PasrSetupError::Overflow)?;
        Ok(PasrSpans {
            base_pfn,
            span_pages,
            nr_spans,
        })
    }

    pub fn base_pfn(&self) -> Pfn {
        self.base_pfn
    }

    pub fn span_pages(&self) -> usize {
        self.span_pages
    }

    pub fn nr_spans(&self) -> usize {
        self.nr_spans
    }

    /// MAX_ORDER blocks per span.
    pub fn blocks_per_span(&self) -> usize {
        self.span_pages / BLOCK_PAGES
    }

    /// One past the window's last frame.
    pub fn end_pfn(&self) -> Pfn {
        self.base_pfn + self.span_pages * self.nr_spans
    }

    /// The span holding `pfn`.
    pub fn span_of(&self, pfn: Pfn) -> Option<usize> {
        (pfn >= self.base_pfn && pfn < self.end_pfn())
            .then(|| (pfn - self.base_pfn) / self.span_pages)
    }

    /// The frames of span `span` (empty past the last span).
    pub fn span_range(&self, span: usize) -> Range<Pfn> {
        if span >= self.nr_spans {
            return self.end_pfn()..self.end_pfn();
        }
        let start = self.base_pfn + span * self.span_pages;
        start..start + self.span_pages
    }

    /// Every span's bit, `(1 << nr_spans) - 1`.
    pub fn all_spans(&self) -> u64 {
        (1u64 << self.nr_spans) - 1
    }
}

/// How a zone with PASR places its MAX_ORDER blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasrMode {
    /// The 2012 framework: count free blocks per span, no steering.
    Baseline2012,
    /// Count, and keep allocations in spans that are busy anyway (see the module docs).
    Steering,
}

impl PasrMode {
    pub fn name(self) -> &'static str {
        match self {
            PasrMode::Baseline2012 => "baseline-2012",
            PasrMode::Steering => "steering",
        }
    }
}

/// The zone's PASR state (boxed, so a zone without PASR carries one pointer).
pub(super) struct PasrTracker {
    spans: PasrSpans,
    window_pages: usize,
    blocks_per_span: u32,
    mode: PasrMode,
    /// Free MAX_ORDER blocks on lists other than Isolate, per span.
    free_blocks: Vec<u32>,
    /// Bucket bits (span `s` is bit `s + 1`) of the entirely free spans.
    full: u64,
    /// Bucket bits of the spans some masked unit depends on.
    guarded: u64,
    /// Guarded bucket bits that lost a free block since the last `pasr_take_touched`.
    touched: u64,
    /// Steering only: list heads per bucket and migrate type (empty for the baseline).
    heads: Vec<[u32; MIGRATE_TYPES]>,
    /// Steering only: bucket bits whose list of that type is not empty.
    listed: [u64; MIGRATE_TYPES],
    /// Steering: blocks of entirely free spans are visible in the preferred heads.
    revealed: bool,
    /// Steering: a failed allocation retries with entirely free spans revealed.
    auto_reveal: bool,
}

impl PasrTracker {
    fn new(spans: PasrSpans, mode: PasrMode) -> PasrTracker {
        let buckets = spans.nr_spans + 1;
        PasrTracker {
            spans,
            window_pages: spans.span_pages * spans.nr_spans,
            blocks_per_span: spans.blocks_per_span() as u32,
            mode,
            free_blocks: vec![0; spans.nr_spans],
            full: 0,
            guarded: 0,
            touched: 0,
            heads: match mode {
                PasrMode::Steering => vec![[NIL; MIGRATE_TYPES]; buckets],
                PasrMode::Baseline2012 => Vec::new(),
            },
            listed: [0; MIGRATE_TYPES],
            revealed: false,
            auto_reveal: true,
        }
    }

    #[inline]
    fn bucket_of(&self, pfn: Pfn) -> usize {
        let offset = pfn.wrapping_sub(self.spans.base_pfn);
        if offset < self.window_pages {
            offset / self.spans.span_pages + 1
        } else {
            OUTSIDE
        }
    }

    /// A block joined a list: count it. Returns whether its span just became entirely free.
    #[inline]
    fn count_added(&mut self, bucket: usize, mt: MigrateType) -> bool {
        if bucket == OUTSIDE || mt == MigrateType::Isolate {
            return false;
        }
        let n = &mut self.free_blocks[bucket - 1];
        *n += 1;
        if *n == self.blocks_per_span {
            self.full |= 1 << bucket;
            return true;
        }
        false
    }

    /// A block left a list: count it, flag a guarded span. Returns whether its span was
    /// entirely free until now.
    #[inline]
    fn count_removed(&mut self, bucket: usize, mt: MigrateType) -> bool {
        if bucket == OUTSIDE || mt == MigrateType::Isolate {
            return false;
        }
        let bit = 1u64 << bucket;
        self.free_blocks[bucket - 1] -= 1;
        self.touched |= self.guarded & bit;
        let was_full = self.full & bit != 0;
        self.full &= !bit;
        was_full
    }

    /// The preferred block of type `mt` (zone-relative index, or `NIL`): outside the window,
    /// then the lowest busy span, then (revealed only) the lowest entirely free span.
    #[inline]
    fn pick(&self, mt: usize) -> u32 {
        let listed = self.listed[mt];
        let busy = listed & !self.full;
        let bucket = if busy != 0 {
            busy.trailing_zeros()
        } else if self.revealed && listed != 0 {
            listed.trailing_zeros()
        } else {
            return NIL;
        };
        self.heads[bucket as usize][mt]
    }

    /// Rewrite the preferred heads: `mt`'s, or every type's when `all`.
    #[inline]
    fn refresh_heads(&self, heads: &mut [u32; MIGRATE_TYPES], all: bool, mt: usize) {
        if all {
            for (m, head) in heads.iter_mut().enumerate() {
                *head = self.pick(m);
            }
        } else {
            heads[mt] = self.pick(mt);
        }
    }

    /// Blocks of entirely free spans that the preferred heads hide now.
    fn hides_blocks(&self) -> bool {
        !self.revealed && self.listed.iter().any(|&l| l & self.full != 0)
    }
}

/// Counters and state of one span, for reports (the `pasr` shell listing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasrSpanState {
    pub span: usize,
    pub pfns: Range<Pfn>,
    /// Free MAX_ORDER blocks (not isolated) in the span.
    pub free_blocks: usize,
    pub blocks: usize,
    /// Every frame of the span is free.
    pub entirely_free: bool,
    /// A masked unit depends on the span being free.
    pub guarded: bool,
}

/// The hooks: MAX_ORDER list changes with PASR on (`free_area.rs` calls these).
impl Zone<'_> {
    /// Push a MAX_ORDER block on its list with PASR on; `false` (nothing done) without.
    #[inline]
    pub(super) fn pasr_add_max_block(&mut self, pfn: Pfn, mt: MigrateType) -> bool {
        let Some(t) = self.pasr.as_deref_mut() else {
            return false;
        };
        let i = (pfn - self.start_pfn) as u32;
        let m = mt.index();
        let bucket = t.bucket_of(pfn);
        let area = &mut self.free_area[MAX_ORDER];
        area.nr_free += 1;
        area.nr_by_type[m] += 1;
        self.free_by_type[m] += BLOCK_PAGES;
        let slot = match t.mode {
            PasrMode::Steering => &mut t.heads[bucket][m],
            PasrMode::Baseline2012 => &mut area.head[m],
        };
        let head = core::mem::replace(slot, i);
        if head != NIL {
            self.pages[head as usize].set_prev(i);
        }
        let page = &mut self.pages[i as usize];
        page.set(PageState::Buddy, MAX_ORDER, mt);
        page.set_links(NIL, head);
        let flipped = t.count_added(bucket, mt);
        if t.mode == PasrMode::Steering {
            t.listed[m] |= 1 << bucket;
            t.refresh_heads(&mut area.head, flipped, m);
        }
        true
    }

    /// Unlink a MAX_ORDER block with PASR on; `false` (nothing done) without.
    #[inline]
    pub(super) fn pasr_del_max_block(&mut self, pfn: Pfn, mt: MigrateType) -> bool {
        let Some(t) = self.pasr.as_deref_mut() else {
            return false;
        };
        let i = pfn - self.start_pfn;
        let m = mt.index();
        let bucket = t.bucket_of(pfn);
        let (prev, next) = (self.pages[i].prev(), self.pages[i].next());
        let area = &mut self.free_area[MAX_ORDER];
        if prev != NIL {
            self.pages[prev as usize].set_next(next);
        } else {
            match t.mode {
                PasrMode::Steering => t.heads[bucket][m] = next,
                PasrMode::Baseline2012 => area.head[m] = next,
            }
        }
        if next != NIL {
            self.pages[next as usize].set_prev(prev);
        }
        area.nr_free -= 1;
        area.nr_by_type[m] -= 1;
        self.free_by_type[m] -= BLOCK_PAGES;
        let flipped = t.count_removed(bucket, mt);
        if t.mode == PasrMode::Steering {
            if t.heads[bucket][m] == NIL {
                t.listed[m] &= !(1 << bucket);
            }
            t.refresh_heads(&mut area.head, flipped, m);
        }
        true
    }

    /// Steering: show (or hide again) the blocks of entirely free spans in the preferred
    /// heads.
    fn pasr_set_revealed(&mut self, revealed: bool) {
        if let Some(t) = self.pasr.as_deref_mut() {
            if t.mode == PasrMode::Steering && t.revealed != revealed {
                t.revealed = revealed;
                t.refresh_heads(&mut self.free_area[MAX_ORDER].head, true, 0);
            }
        }
    }

    /// Steering: a Movable request whose own type and Cma found nothing in busy spans
    /// does not steal yet; it first looks in the entirely free spans (see
    /// `rmqueue_in_free_spans`). Reached only on the way to stealing.
    #[inline]
    pub(super) fn pasr_defers_stealing(&self, mt: MigrateType) -> bool {
        mt == MigrateType::Movable
            && self
                .pasr
                .as_deref()
                .is_some_and(|t| t.mode == PasrMode::Steering && t.hides_blocks())
    }

    /// Whether a failed request should be retried with entirely free spans revealed.
    #[inline]
    pub(super) fn pasr_may_reveal(&self) -> bool {
        self.pasr
            .as_deref()
            .is_some_and(|t| t.mode == PasrMode::Steering && t.auto_reveal && t.hides_blocks())
    }

    /// Run `request` with entirely free spans revealed (the last resort of a request that
    /// failed over the busy spans), then hide them again.
    pub(super) fn with_free_spans_revealed<R>(
        &mut self,
        request: impl FnOnce(&mut Self) -> R,
    ) -> R {
        self.pasr_set_revealed(true);
        let r = request(self);
        self.pasr_set_revealed(false);
        r
    }

    /// Busy spans first, for a request made of several allocation attempts (migration
    /// targets: Movable lists, stealing, then CMA): `request` runs once with entirely free
    /// spans hidden and no attempt inside revealing them, and only if it yields nothing
    /// once more with them revealed. Without steering it simply runs once.
    pub(in crate::mm) fn busy_spans_first<R>(
        &mut self,
        mut request: impl FnMut(&mut Self) -> Option<R>,
    ) -> Option<R> {
        let Some(t) = self
            .pasr
            .as_deref_mut()
            .filter(|t| t.mode == PasrMode::Steering)
        else {
            return request(self);
        };
        let saved = core::mem::replace(&mut t.auto_reveal, false);
        let mut r = request(self);
        if r.is_none() && self.pasr.as_deref().is_some_and(PasrTracker::hides_blocks) {
            r = self.with_free_spans_revealed(&mut request);
        }
        if let Some(t) = self.pasr.as_deref_mut() {
            t.auto_reveal = saved;
        }
        r
    }

    /// Every MAX_ORDER free block (head pfn and list type), found by stepping through the
    /// aligned frames: a MAX_ORDER block always starts on one.
    fn max_order_free_blocks(&self) -> impl Iterator<Item = (Pfn, MigrateType)> + '_ {
        let first = self.start_pfn.next_multiple_of(BLOCK_PAGES);
        (first..self.end_pfn)
            .step_by(BLOCK_PAGES)
            .filter_map(|pfn| {
                let page = self.pg(pfn);
                (page.state() == PageState::Buddy && page.order() == MAX_ORDER)
                    .then(|| (pfn, page.migratetype()))
            })
    }

    /// Move every MAX_ORDER free block from the lists of the current set-up to those of
    /// `tracker` (`None`: no PASR). Counters are rebuilt on the way.
    fn relink_max_order_blocks(&mut self, tracker: Option<Box<PasrTracker>>) {
        let blocks: Vec<(Pfn, MigrateType)> = self.max_order_free_blocks().collect();
        for &(pfn, mt) in &blocks {
            self.del_from_free_list(pfn, MAX_ORDER, mt);
        }
        self.pasr = tracker;
        for &(pfn, mt) in &blocks {
            self.add_to_free_list(pfn, MAX_ORDER, mt);
        }
    }
}

/// The PASR interface of the zone.
impl Zone<'_> {
    /// Start counting free MAX_ORDER blocks per span (and, with [`PasrMode::Steering`],
    /// steering allocations), at any time: the zone's current free blocks are counted
    /// and relinked (O(free MAX_ORDER blocks)). Replaces an earlier set-up, dropping its
    /// guarded and touched state. The window may extend past the zone or leave parts of it
    /// out: frames outside the zone keep their span from ever filling up, and blocks
    /// outside the window are placed first (they are never masked).
    pub fn enable_pasr(&mut self, spans: PasrSpans, mode: PasrMode) -> Result<(), PasrSetupError> {
        // Re-validate: the fields are private, but a copy of a value built elsewhere is
        // cheap to check again.
        let spans = PasrSpans::new(spans.base_pfn, spans.span_pages, spans.nr_spans)?;
        // PASR counts free blocks on lists: held CMA memory (`held.rs`) is lent first.
        self.lend_all_held();
        self.relink_max_order_blocks(Some(Box::new(PasrTracker::new(spans, mode))));
        Ok(())
    }

    /// Stop tracking; the MAX_ORDER blocks go back to the ordinary lists.
    pub fn disable_pasr(&mut self) {
        if self.pasr.is_some() {
            self.relink_max_order_blocks(None);
        }
    }

    pub fn pasr_spans(&self) -> Option<PasrSpans> {
        self.pasr.as_deref().map(|t| t.spans)
    }

    pub fn pasr_mode(&self) -> Option<PasrMode> {
        self.pasr.as_deref().map(|t| t.mode)
    }

    /// Span bits (bit `s`: span `s`) of the spans whose every frame is free (isolated
    /// frames do not count as free). 0 without PASR.
    #[inline]
    pub fn pasr_free_spans(&self) -> u64 {
        self.pasr.as_deref().map_or(0, |t| t.full >> 1)
    }

    /// Free MAX_ORDER blocks counted in span `span`.
    pub fn pasr_free_blocks(&self, span: usize) -> Option<usize> {
        self.pasr
            .as_deref()
            .and_then(|t| t.free_blocks.get(span))
            .map(|&n| n as usize)
    }

    /// Span `span`'s counters, for reports.
    pub fn pasr_span_state(&self, span: usize) -> Option<PasrSpanState> {
        let t = self.pasr.as_deref()?;
        let free_blocks = *t.free_blocks.get(span)? as usize;
        let bit = 1u64 << (span + 1);
        Some(PasrSpanState {
            span,
            pfns: t.spans.span_range(span),
            free_blocks,
            blocks: t.blocks_per_span as usize,
            entirely_free: t.full & bit != 0,
            guarded: t.guarded & bit != 0,
        })
    }

    /// Declare which spans must stay entirely free for the current masks (span bits), and
    /// forget earlier touches. From now on a free block leaving one of them sets its bit in
    /// [`Zone::pasr_take_touched`]. Bits past the last span are ignored.
    pub fn pasr_guard(&mut self, spans: u64) {
        if let Some(t) = self.pasr.as_deref_mut() {
            t.guarded = (spans & t.spans.all_spans()) << 1;
            t.touched = 0;
        }
    }

    /// Span bits of the guarded spans.
    pub fn pasr_guarded(&self) -> u64 {
        self.pasr.as_deref().map_or(0, |t| t.guarded >> 1)
    }

    /// Span bits of the guarded spans that lost a free block (memory in them may be handed
    /// out) since the last call; they stop being guarded. One load and compare when nothing
    /// happened: call it after every allocation, unmask every unit that depends on a span
    /// it names before using the memory, and guard what stays masked
    /// ([`Zone::pasr_guard`]).
    #[inline]
    pub fn pasr_take_touched(&mut self) -> u64 {
        match self.pasr.as_deref_mut() {
            Some(t) if t.touched != 0 => {
                let touched = core::mem::take(&mut t.touched);
                t.guarded &= !touched;
                touched >> 1
            }
            _ => 0,
        }
    }

    /// [`Zone::pasr_take_touched`] without clearing.
    pub fn pasr_touched(&self) -> u64 {
        self.pasr.as_deref().map_or(0, |t| t.touched >> 1)
    }
}

/// PASR consistency, for tests and debug shells ([`Zone::check_pasr_invariants`]).
impl Zone<'_> {
    /// The list heads of one order and type: one ordinary list, or at MAX_ORDER with
    /// steering one per bucket.
    pub(super) fn list_heads(&self, order: usize, mt: MigrateType) -> Vec<u32> {
        match self.pasr.as_deref() {
            Some(t) if order == MAX_ORDER && t.mode == PasrMode::Steering => {
                t.heads.iter().map(|h| h[mt.index()]).collect()
            }
            _ => vec![self.free_area[order].head[mt.index()]],
        }
    }

    /// Verify the PASR state against the frames: per-span counts of free, non-isolated
    /// MAX_ORDER blocks, the entirely-free bits, that a guarded span which is not entirely
    /// free is flagged touched, and with steering that every MAX_ORDER block sits on its
    /// bucket's list, the non-empty bits, and that each preferred head is the right one.
    /// O(zone / MAX_ORDER block + free MAX_ORDER blocks). `Ok` without PASR.
    pub fn check_pasr_invariants(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        let Some(t) = self.pasr.as_deref() else {
            return Ok(());
        };
        let mut counted = vec![0u32; t.spans.nr_spans];
        for (pfn, mt) in self.max_order_free_blocks() {
            if let (Some(s), true) = (t.spans.span_of(pfn), mt != MigrateType::Isolate) {
                counted[s] += 1;
            }
        }
        if counted != t.free_blocks {
            return Err(format!(
                "PASR free blocks per span {:?} but the frames say {counted:?}",
                t.free_blocks
            ));
        }
        let full = counted
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n == t.blocks_per_span)
            .fold(0u64, |bits, (s, _)| bits | 1 << (s + 1));
        if full != t.full {
            return Err(format!(
                "PASR entirely free spans {:#x} but the counts say {full:#x}",
                t.full >> 1
            ));
        }
        if t.guarded & !t.full & !t.touched != 0 {
            return Err(format!(
                "PASR guarded spans {:#x} not entirely free and not flagged touched",
                (t.guarded & !t.full & !t.touched) >> 1
            ));
        }
        if t.revealed || !t.auto_reveal {
            return Err(format!(
                "PASR left revealed ({}) or without auto-reveal ({}) between calls",
                t.revealed, !t.auto_reveal
            ));
        }
        if t.mode == PasrMode::Baseline2012 {
            return if t.listed.iter().all(|&l| l == 0) && t.heads.is_empty() {
                Ok(())
            } else {
                Err(format!("PASR baseline has per-span lists {:?}", t.listed))
            };
        }
        for mt in MigrateType::ALL {
            let m = mt.index();
            let mut listed = 0u64;
            for (bucket, heads) in t.heads.iter().enumerate() {
                let mut cur = heads[m];
                if cur != NIL {
                    listed |= 1 << bucket;
                }
                let mut steps = 0;
                while cur != NIL {
                    let pfn = self.start_pfn + cur as usize;
                    if t.bucket_of(pfn) != bucket {
                        return Err(format!(
                            "MAX_ORDER block {pfn:#x} on bucket {bucket}'s {} list but belongs to bucket {}",
                            mt.name(),
                            t.bucket_of(pfn)
                        ));
                    }
                    steps += 1;
                    if steps > self.pages.len() {
                        return Err(format!("PASR list bucket {bucket} {} loops", mt.name()));
                    }
                    cur = self.pages[cur as usize].next();
                }
            }
            if listed != t.listed[m] {
                return Err(format!(
                    "PASR {} non-empty buckets {:#x} but lists say {listed:#x}",
                    mt.name(),
                    t.listed[m]
                ));
            }
            if self.free_area[MAX_ORDER].head[m] != t.pick(m) {
                return Err(format!(
                    "PASR preferred {} head {} but should be {}",
                    mt.name(),
                    self.free_area[MAX_ORDER].head[m],
                    t.pick(m)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
