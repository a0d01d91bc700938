//! Allocation traces: what `trace record` captures, the file it is stored in, and replay.
//!
//! # Theory of operation
//!
//! A trace is the sequence of allocation and release requests made at the console while
//! recording (`cma alloc`/`cma free`, `mem grow`/`mem shrink`), each stamped with the
//! microseconds since recording began. Replaying it issues the same requests again, so a
//! fragmentation pattern seen once can be reproduced and measured as often as needed.
//!
//! Allocations are named inside a trace by a trace-local id (1, 2, ...), never by the
//! console handle or the pfn they got: a replay gets other pfns and other handles, and
//! maps ids to whatever its own allocations returned. A free of an allocation made before
//! recording started cannot be replayed and is not recorded (the recorder counts it).
//!
//! A replay pass is self-contained: whatever it allocated and the trace did not free, and
//! whatever it grew the workload by net, is given back at the end of the pass. Replaying
//! N times is N identical passes and leaves memory as it found it.
//!
//! # File format (version 1, all integers little-endian)
//!
//! ```text
//! header, 24 bytes
//!   0  [u8; 8]  magic "MNLTRACE"
//!   8  u16      version = 1
//!  10  u16      header length = 24
//!  12  u32      number of events
//!  16  u32      payload length: bytes of events after the header
//!  20  u32      FNV-1a (32-bit) of the payload
//! event, 24 + name length bytes
//!   0  u8       kind: 1 cma alloc, 2 cma free, 3 mem grow, 4 mem shrink
//!   1  u8       alignment order (cma alloc; else 0)
//!   2  u8       area name length, at most 64 (cma alloc; else 0)
//!   3  u8       0
//!   4  u32      allocation id (cma alloc: a new id; cma free: the id it releases; else 0)
//!   8  u64      microseconds since recording began, never decreasing
//!  16  u64      pages (cma alloc, mem grow, mem shrink; cma free: 0)
//!  24  [u8]     area name, UTF-8
//! ```
//!
//! A whole file is at most [`MAX_TRACE_BYTES`] (1 MiB): it has to fit the gap between the
//! DTB and the image where QEMU's loader puts it (`cargo xtask run --trace FILE`). Decoding
//! checks every field and answers a [`TraceError`], never a panic, because the bytes may be
//! anything a user pointed the loader at.
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

pub const TRACE_MAGIC: [u8; 8] = *b"MNLTRACE";
pub const TRACE_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 24;
pub const EVENT_FIXED_LEN: usize = 24;
pub const MAX_AREA_NAME: usize = 64;
/// Largest trace file, header included.
pub const MAX_TRACE_BYTES: usize = 1 << 20;
/// Where `cargo xtask run --trace FILE` has QEMU load the file: the free 1 MiB between the
/// DTB (0x4000_0000) and the image (0x4020_0000), never handed to the page allocator.
pub const TRACE_LOAD_ADDR: u64 = 0x4010_0000;

const KIND_CMA_ALLOC: u8 = 1;
const KIND_CMA_FREE: u8 = 2;
const KIND_MEM_GROW: u8 = 3;
const KIND_MEM_SHRINK: u8 = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceOpKind {
    CmaAlloc {
        area: String,
        pages: u64,
        align_order: u8,
        id: u32,
    },
    CmaFree {
        id: u32,
    },
    MemGrow {
        pages: u64,
    },
    MemShrink {
        pages: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub time_us: u64,
    pub op: TraceOpKind,
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6}.{:06}  ",
            self.time_us / 1_000_000,
            self.time_us % 1_000_000
        )?;
        match &self.op {
            TraceOpKind::CmaAlloc {
                area,
                pages,
                align_order,
                id,
            } => write!(f, "cma alloc {} {} {} -> #{}", area, pages, align_order, id),
            TraceOpKind::CmaFree { id } => write!(f, "cma free #{}", id),
            TraceOpKind::MemGrow { pages } => write!(f, "mem grow {}", pages),
            TraceOpKind::MemShrink { pages } => write!(f, "mem shrink {}", pages),
        }
    }
}

/// Why bytes are not a trace. `Display` is one line for the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceError {
    NoMagic,
    Truncated { needed: usize, available: usize },
    BadVersion(u16),
    BadHeaderLength(u16),
    TooLarge(usize),
    Checksum { stored: u32, computed: u32 },
    BadEvent { index: usize, why: &'static str },
    CountMismatch { header: u32, found: usize },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::NoMagic => write!(f, "no trace magic \"MNLTRACE\""),
            TraceError::Truncated { needed, available } => write!(
                f,
                "truncated: needs {} bytes, {} available",
                needed, available
            ),
            TraceError::BadVersion(v) => write!(f, "unsupported trace version {}", v),
            TraceError::BadHeaderLength(n) => write!(f, "bad header length {}", n),
            TraceError::TooLarge(n) => {
                write!(f, "{} bytes is over the {} byte limit", n, MAX_TRACE_BYTES)
            }
            TraceError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {:#010x}, computed {:#010x})",
                stored, computed
            ),
            TraceError::BadEvent { index, why } => write!(f, "event {}: {}", index, why),
            TraceError::CountMismatch { header, found } => {
                write!(f, "header says {} events, payload holds {}", header, found)
            }
        }
    }
}

impl core::error::Error for TraceError {}

/// FNV-1a, 32 bit: enough to tell a stale or half-written file from a trace.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Encodes `events` as a trace file. Fails only if the result would break the format's
/// limits (a name over 64 bytes, a file over 1 MiB).
pub fn encode(events: &[TraceEvent]) -> Result<Vec<u8>, TraceError> {
    let mut payload = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let (kind, align, name, id, pages): (u8, u8, &str, u32, u64) = match &event.op {
            TraceOpKind::CmaAlloc {
                area,
                pages,
                align_order,
                id,
            } => (KIND_CMA_ALLOC, *align_order, area, *id, *pages),
            TraceOpKind::CmaFree { id } => (KIND_CMA_FREE, 0, "", *id, 0),
            TraceOpKind::MemGrow { pages } => (KIND_MEM_GROW, 0, "", 0, *pages),
            TraceOpKind::MemShrink { pages } => (KIND_MEM_SHRINK, 0, "", 0, *pages),
        };
        if name.len() > MAX_AREA_NAME {
            return Err(TraceError::BadEvent {
                index,
                why: "area name longer than 64 bytes",
            });
        }
        payload.extend_from_slice(&[kind, align, name.len() as u8, 0]);
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(&event.time_us.to_le_bytes());
        payload.extend_from_slice(&pages.to_le_bytes());
        payload.extend_from_slice(name.as_bytes());
        if HEADER_LEN + payload.len() > MAX_TRACE_BYTES {
            return Err(TraceError::TooLarge(HEADER_LEN + payload.len()));
        }
    }
    let mut file = Vec::with_capacity(HEADER_LEN + payload.len());
    file.extend_from_slice(&TRACE_MAGIC);
    file.extend_from_slice(&TRACE_VERSION.to_le_bytes());
    file.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    file.extend_from_slice(&(events.len() as u32).to_le_bytes());
    file.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    file.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    file.extend_from_slice(&payload);
    Ok(file)
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Whether `bytes` start like a trace; cheap, for probing memory at boot.
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.len() >= TRACE_MAGIC.len() && bytes[..TRACE_MAGIC.len()] == TRACE_MAGIC
}

/// Total file length a valid header announces (header + payload), checked against the
/// 1 MiB limit, so a loader knows how many bytes to read before calling [`decode`].
pub fn announced_len(header: &[u8]) -> Result<usize, TraceError> {
    if !has_magic(header) {
        return Err(TraceError::NoMagic);
    }
    if header.len() < HEADER_LEN {
        return Err(TraceError::Truncated {
            needed: HEADER_LEN,
            available: header.len(),
        });
    }
    let version = le_u16(header, 8);
    if version != TRACE_VERSION {
        return Err(TraceError::BadVersion(version));
    }
    let header_len = le_u16(header, 10);
    if usize::from(header_len) != HEADER_LEN {
        return Err(TraceError::BadHeaderLength(header_len));
    }
    let total = HEADER_LEN.saturating_add(le_u32(header, 16) as usize);
    if total > MAX_TRACE_BYTES {
        return Err(TraceError::TooLarge(total));
    }
    Ok(total)
}

/// Decodes and validates a whole trace file. Trailing bytes after the announced payload
/// are ignored (the loader's window is larger than the file).
pub fn decode(bytes: &[u8]) -> Result<Vec<TraceEvent>, TraceError> {
    let total = announced_len(bytes)?;
    if bytes.len() < total {
        return Err(TraceError::Truncated {
            needed: total,
            available: bytes.len(),
        });
    }
    let count = le_u32(bytes, 12);
    let stored = le_u32(bytes, 20);
    let payload = &bytes[HEADER_LEN..total];
    let computed = fnv1a(payload);
    if stored != computed {
        return Err(TraceError::Checksum { stored, computed });
    }
    let mut events = Vec::new();
    let mut live_ids: BTreeMap<u32, ()> = BTreeMap::new();
    let mut seen_ids: BTreeMap<u32, ()> = BTreeMap::new();
    let mut at = 0usize;
    let mut last_time = 0u64;
    while at < payload.len() {
        let index = events.len();
        let bad = |why| TraceError::BadEvent { index, why };
        if payload.len() - at < EVENT_FIXED_LEN {
            return Err(bad("cut short"));
        }
        let fixed = &payload[at..at + EVENT_FIXED_LEN];
        let (kind, align, name_len) = (fixed[0], fixed[1], usize::from(fixed[2]));
        if fixed[3] != 0 {
            return Err(bad("reserved byte is not zero"));
        }
        let id = le_u32(fixed, 4);
        let time_us = le_u64(fixed, 8);
        let pages = le_u64(fixed, 16);
        if name_len > MAX_AREA_NAME {
            return Err(bad("area name longer than 64 bytes"));
        }
        if payload.len() - at - EVENT_FIXED_LEN < name_len {
            return Err(bad("area name cut short"));
        }
        let name_bytes = &payload[at + EVENT_FIXED_LEN..at + EVENT_FIXED_LEN + name_len];
        if time_us < last_time {
            return Err(bad("time goes backwards"));
        }
        last_time = time_us;
        let plain = name_len == 0 && align == 0;
        let op = match kind {
            KIND_CMA_ALLOC => {
                let area =
                    core::str::from_utf8(name_bytes).map_err(|_| bad("area name is not UTF-8"))?;
                if area.is_empty() {
                    return Err(bad("cma alloc without an area name"));
                }
                if pages == 0 {
                    return Err(bad("cma alloc of 0 pages"));
                }
                if id == 0 || seen_ids.insert(id, ()).is_some() {
                    return Err(bad("cma alloc id is 0 or reused"));
                }
                live_ids.insert(id, ());
                TraceOpKind::CmaAlloc {
                    area: String::from(area),
                    pages,
                    align_order: align,
                    id,
                }
            }
            KIND_CMA_FREE if plain && pages == 0 => {
                if live_ids.remove(&id).is_none() {
                    return Err(bad("cma free of an id not allocated before"));
                }
                TraceOpKind::CmaFree { id }
            }
            KIND_MEM_GROW | KIND_MEM_SHRINK if plain && id == 0 => {
                if pages == 0 {
                    return Err(bad("mem grow/shrink of 0 pages"));
                }
                if kind == KIND_MEM_GROW {
                    TraceOpKind::MemGrow { pages }
                } else {
                    TraceOpKind::MemShrink { pages }
                }
            }
            KIND_CMA_FREE | KIND_MEM_GROW | KIND_MEM_SHRINK => {
                return Err(bad("fields set that this kind does not use"))
            }
            _ => return Err(bad("unknown event kind")),
        };
        events.push(TraceEvent { time_us, op });
        at += EVENT_FIXED_LEN + name_len;
    }
    if events.len() != count as usize {
        return Err(TraceError::CountMismatch {
            header: count,
            found: events.len(),
        });
    }
    Ok(events)
}

/// Collects events while `trace record` is on.
#[derive(Debug, Default)]
pub struct TraceRecorder {
    recording: bool,
    started_us: u64,
    events: Vec<TraceEvent>,
    /// Console handle -> trace id, for allocations made while recording.
    ids: BTreeMap<u64, u32>,
    next_id: u32,
    /// Frees of allocations made before recording started: not replayable, not recorded.
    skipped_frees: u64,
}

impl TraceRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Starts a fresh recording (anything recorded before is dropped).
    pub fn start(&mut self, now_us: u64) {
        *self = TraceRecorder {
            recording: true,
            started_us: now_us,
            next_id: 1,
            ..TraceRecorder::default()
        };
    }

    /// Ends the recording and hands over its events.
    pub fn stop(&mut self) -> (Vec<TraceEvent>, u64) {
        self.recording = false;
        self.ids.clear();
        (
            core::mem::take(&mut self.events),
            core::mem::take(&mut self.skipped_frees),
        )
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn push(&mut self, now_us: u64, op: TraceOpKind) {
        let time_us = now_us.saturating_sub(self.started_us);
        // The clock is monotonic, but keep the file's promise even if a caller is not.
        let time_us = self
            .events
            .last()
            .map_or(time_us, |e| time_us.max(e.time_us));
        self.events.push(TraceEvent { time_us, op });
    }

    /// A successful `cma alloc` that the console gave `handle`.
    pub fn cma_alloc(
        &mut self,
        now_us: u64,
        area: &str,
        pages: u64,
        align_order: u32,
        handle: u64,
    ) {
        if !self.recording || area.len() > MAX_AREA_NAME || align_order > u32::from(u8::MAX) {
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.ids.insert(handle, id);
        self.push(
            now_us,
            TraceOpKind::CmaAlloc {
                area: String::from(area),
                pages,
                align_order: align_order as u8,
                id,
            },
        );
    }

    /// A successful `cma free HANDLE`.
    pub fn cma_free(&mut self, now_us: u64, handle: u64) {
        if !self.recording {
            return;
        }
        match self.ids.remove(&handle) {
            Some(id) => self.push(now_us, TraceOpKind::CmaFree { id }),
            None => self.skipped_frees += 1,
        }
    }

    pub fn mem_grow(&mut self, now_us: u64, pages: u64) {
        if self.recording && pages > 0 {
            self.push(now_us, TraceOpKind::MemGrow { pages });
        }
    }

    pub fn mem_shrink(&mut self, now_us: u64, pages: u64) {
        if self.recording && pages > 0 {
            self.push(now_us, TraceOpKind::MemShrink { pages });
        }
    }
}

/// What replay needs from the machine. `Token` is whatever identifies a live allocation.
pub trait ReplayTarget {
    type Token;
    fn now_us(&mut self) -> u64;
    fn cma_alloc(
        &mut self,
        area: &str,
        pages: u64,
        align_order: u32,
    ) -> Result<Self::Token, String>;
    fn cma_free(&mut self, token: Self::Token) -> Result<(), String>;
    /// Returns the pages actually added.
    fn mem_grow(&mut self, pages: u64) -> Result<u64, String>;
    /// Returns the pages actually given back.
    fn mem_shrink(&mut self, pages: u64) -> Result<u64, String>;
}

/// Totals over all passes of one `trace replay`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub passes: u64,
    pub events: u64,
    pub allocs_ok: u64,
    pub allocs_failed: u64,
    pub frees_ok: u64,
    /// Frees that failed, or whose allocation had failed (nothing to free).
    pub frees_skipped: u64,
    pub mem_grown: u64,
    pub mem_shrunk: u64,
    /// Allocations the trace left live, released at the end of a pass.
    pub cleanup_frees: u64,
    /// Net workload growth given back at the end of a pass.
    pub cleanup_shrunk: u64,
    pub alloc_us_total: u64,
    pub alloc_us_max: u64,
    pub elapsed_us: u64,
    /// First error text seen, for the one-line summary.
    pub first_error: Option<String>,
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} pass(es) of {} events in {} us",
            self.passes, self.events, self.elapsed_us
        )?;
        let avg = self.alloc_us_total.checked_div(self.allocs_ok).unwrap_or(0);
        writeln!(
            f,
            "  cma alloc: {} ok, {} failed (avg {} us, max {} us); cma free: {} ok, {} skipped",
            self.allocs_ok,
            self.allocs_failed,
            avg,
            self.alloc_us_max,
            self.frees_ok,
            self.frees_skipped
        )?;
        write!(
            f,
            "  mem: {} pages grown, {} shrunk; cleanup: {} allocation(s) freed, {} pages shrunk",
            self.mem_grown, self.mem_shrunk, self.cleanup_frees, self.cleanup_shrunk
        )?;
        if let Some(error) = &self.first_error {
            write!(f, "\n  first error: {}", error)?;
        }
        Ok(())
    }
}

/// Replays `events` `times` times (see the module doc for what a pass guarantees).
pub fn replay<T: ReplayTarget>(events: &[TraceEvent], times: u64, target: &mut T) -> ReplayReport {
    let mut report = ReplayReport::default();
    let started = target.now_us();
    let note = |report: &mut ReplayReport, error: String| {
        if report.first_error.is_none() {
            report.first_error = Some(error);
        }
    };
    for _ in 0..times {
        report.passes += 1;
        let mut live: BTreeMap<u32, T::Token> = BTreeMap::new();
        let mut net_grown: u64 = 0;
        for event in events {
            report.events += 1;
            match &event.op {
                TraceOpKind::CmaAlloc {
                    area,
                    pages,
                    align_order,
                    id,
                } => {
                    let before = target.now_us();
                    match target.cma_alloc(area, *pages, u32::from(*align_order)) {
                        Ok(token) => {
                            let took = target.now_us().saturating_sub(before);
                            report.allocs_ok += 1;
                            report.alloc_us_total += took;
                            report.alloc_us_max = report.alloc_us_max.max(took);
                            live.insert(*id, token);
                        }
                        Err(error) => {
                            report.allocs_failed += 1;
                            note(&mut report, error);
                        }
                    }
                }
                TraceOpKind::CmaFree { id } => match live.remove(id) {
                    Some(token) => match target.cma_free(token) {
                        Ok(()) => report.frees_ok += 1,
                        Err(error) => {
                            report.frees_skipped += 1;
                            note(&mut report, error);
                        }
                    },
                    None => report.frees_skipped += 1,
                },
                TraceOpKind::MemGrow { pages } => match target.mem_grow(*pages) {
                    Ok(added) => {
                        report.mem_grown += added;
                        net_grown += added;
                    }
                    Err(error) => note(&mut report, error),
                },
                TraceOpKind::MemShrink { pages } => {
                    // Never shrink below what this pass grew: the workload that was there
                    // before the replay is not the trace's to take.
                    let pages = (*pages).min(net_grown);
                    if pages == 0 {
                        continue;
                    }
                    match target.mem_shrink(pages) {
                        Ok(freed) => {
                            report.mem_shrunk += freed;
                            net_grown -= freed.min(net_grown);
                        }
                        Err(error) => note(&mut report, error),
                    }
                }
            }
        }
        for (_, token) in core::mem::take(&mut live) {
            match target.cma_free(token) {
                Ok(()) => report.cleanup_frees += 1,
                Err(error) => note(&mut report, error),
            }
        }
        if net_grown > 0 {
            match target.mem_shrink(net_grown) {
                Ok(freed) => report.cleanup_shrunk += freed,
                Err(error) => note(&mut report, error),
            }
        }
    }
    report.elapsed_us = target.now_us().saturating_sub(started);
    report
}

/// `trace show`: a header line, one line per event, and the file as hex (so a trace seen
/// on the console can be saved and loaded again with `cargo xtask run --trace FILE`).
pub fn show(source: &str, events: &[TraceEvent], hex_limit: usize) -> String {
    let mut text = String::new();
    let duration = events.last().map_or(0, |e| e.time_us);
    let _ = writeln!(
        text,
        "trace ({}): {} events over {}.{:06} s",
        source,
        events.len(),
        duration / 1_000_000,
        duration % 1_000_000
    );
    for event in events {
        let _ = writeln!(text, "  {}", event);
    }
    match encode(events) {
        Ok(file) if file.len() <= hex_limit => {
            let _ = writeln!(text, "file: {} bytes, hex:", file.len());
            for chunk in file.chunks(32) {
                text.push_str("  ");
                for byte in chunk {
                    let _ = write!(text, "{:02x}", byte);
                }
                text.push('\n');
            }
        }
        Ok(file) => {
            let _ = writeln!(
                text,
                "file: {} bytes (over {} bytes: hex not shown)",
                file.len(),
                hex_limit
            );
        }
        Err(error) => {
            let _ = writeln!(text, "file: cannot encode: {}", error);
        }
    }
    text
}

/// Parses the hex lines `show` prints back into bytes (host tools and tests).
pub fn parse_hex_dump(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.len() % 2 != 0 {
            return Err(format!("odd number of hex digits in '{}'", line));
        }
        for pair in line.as_bytes().chunks(2) {
            let digits = core::str::from_utf8(pair).map_err(|_| String::from("not ASCII"))?;
            let byte =
                u8::from_str_radix(digits, 16).map_err(|_| format!("bad hex '{}'", digits))?;
            bytes.push(byte);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vec<TraceEvent> {
        vec![
            TraceEvent {
                time_us: 0,
                op: TraceOpKind::MemGrow { pages: 100 },
            },
            TraceEvent {
                time_us: 10,
                op: TraceOpKind::CmaAlloc {
                    area: String::from("reserved"),
                    pages: 16,
                    align_order: 2,
                    id: 1,
                },
            },
            TraceEvent {
                time_us: 25,
                op: TraceOpKind::CmaAlloc {
                    area: String::from("linux,cma@50000000"),
                    pages: 8,
                    align_order: 0,
                    id: 2,
                },
            },
            TraceEvent {
                time_us: 30,
                op: TraceOpKind::CmaFree { id: 1 },
            },
            TraceEvent {
                time_us: 1_000_040,
                op: TraceOpKind::MemShrink { pages: 40 },
            },
        ]
    }

    #[test]
    fn round_trip_and_layout() {
        let events = sample();
        let file = encode(&events).unwrap();
        assert_eq!(&file[..8], b"MNLTRACE");
        assert_eq!(le_u16(&file, 8), 1);
        assert_eq!(le_u32(&file, 12), 5);
        let names = "reserved".len() + "linux,cma@50000000".len();
        assert_eq!(file.len(), HEADER_LEN + 5 * EVENT_FIXED_LEN + names);
        assert_eq!(announced_len(&file[..HEADER_LEN]).unwrap(), file.len());
        assert_eq!(decode(&file).unwrap(), events);
        // Trailing garbage after the announced length is the loader window, not the trace.
        let mut padded = file.clone();
        padded.extend_from_slice(&[0xff; 100]);
        assert_eq!(decode(&padded).unwrap(), events);
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), vec![]);
    }

    #[test]
    fn decode_refuses_damage() {
        let file = encode(&sample()).unwrap();
        assert_eq!(decode(&[0u8; 64]), Err(TraceError::NoMagic));
        assert!(matches!(
            decode(&file[..file.len() - 1]),
            Err(TraceError::Truncated { .. })
        ));
        let mut flipped = file.clone();
        flipped[HEADER_LEN + 17] ^= 1;
        assert!(matches!(decode(&flipped), Err(TraceError::Checksum { .. })));
        let mut version = file.clone();
        version[8] = 2;
        assert_eq!(decode(&version), Err(TraceError::BadVersion(2)));
        let mut huge = file.clone();
        huge[16..20].copy_from_slice(&(2u32 << 20).to_le_bytes());
        assert!(matches!(decode(&huge), Err(TraceError::TooLarge(_))));
        let mut count = file.clone();
        count[12] = 4;
        assert!(matches!(
            decode(&count),
            Err(TraceError::CountMismatch {
                header: 4,
                found: 5
            })
        ));
    }

    /// Re-seal a hand-edited payload so only the semantic checks can object.
    fn reseal(mut file: Vec<u8>) -> Vec<u8> {
        let sum = fnv1a(&file[HEADER_LEN..]);
        file[20..24].copy_from_slice(&sum.to_le_bytes());
        file
    }

    #[test]
    fn decode_checks_meaning() {
        let free_unknown = vec![TraceEvent {
            time_us: 0,
            op: TraceOpKind::CmaFree { id: 9 },
        }];
        assert!(matches!(
            decode(&encode(&free_unknown).unwrap()),
            Err(TraceError::BadEvent { index: 0, .. })
        ));
        let mut events = sample();
        events[3].time_us = 5; // before event 2
        assert!(matches!(
            decode(&encode(&events).unwrap()),
            Err(TraceError::BadEvent { index: 3, .. })
        ));
        let mut kind = encode(&sample()).unwrap();
        kind[HEADER_LEN] = 9;
        assert!(matches!(
            decode(&reseal(kind)),
            Err(TraceError::BadEvent {
                index: 0,
                why: "unknown event kind"
            })
        ));
        let mut zero = encode(&sample()).unwrap();
        zero[HEADER_LEN + 16..HEADER_LEN + 24].fill(0);
        assert!(matches!(
            decode(&reseal(zero)),
            Err(TraceError::BadEvent { index: 0, .. })
        ));
    }

    #[test]
    fn recorder_maps_handles_to_ids_and_skips_foreign_frees() {
        let mut recorder = TraceRecorder::new();
        recorder.cma_alloc(5, "a", 1, 0, 1); // not recording yet
        assert!(recorder.is_empty());
        recorder.start(1_000);
        recorder.cma_alloc(1_010, "a", 4, 1, 77);
        recorder.cma_free(1_020, 3); // allocated before recording
        recorder.mem_grow(1_030, 10);
        recorder.cma_free(1_040, 77);
        recorder.mem_shrink(1_050, 0); // nothing happened: not recorded
        let (events, skipped) = recorder.stop();
        assert!(!recorder.is_recording());
        assert_eq!(skipped, 1);
        assert_eq!(
            events,
            vec![
                TraceEvent {
                    time_us: 10,
                    op: TraceOpKind::CmaAlloc {
                        area: String::from("a"),
                        pages: 4,
                        align_order: 1,
                        id: 1
                    }
                },
                TraceEvent {
                    time_us: 30,
                    op: TraceOpKind::MemGrow { pages: 10 }
                },
                TraceEvent {
                    time_us: 40,
                    op: TraceOpKind::CmaFree { id: 1 }
                },
            ]
        );
        assert_eq!(decode(&encode(&events).unwrap()).unwrap(), events);
    }

    /// A machine with a fixed number of CMA pages and a workload counter.
    struct FakeMachine {
        clock: u64,
        free_pages: u64,
        next_token: u64,
        live: BTreeMap<u64, u64>,
        workload: u64,
    }

    impl ReplayTarget for FakeMachine {
        type Token = u64;
        fn now_us(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }
        fn cma_alloc(&mut self, _area: &str, pages: u64, _align: u32) -> Result<u64, String> {
            if pages > self.free_pages {
                return Err(String::from("no memory"));
            }
            self.free_pages -= pages;
            self.next_token += 1;
            self.live.insert(self.next_token, pages);
            Ok(self.next_token)
        }
        fn cma_free(&mut self, token: u64) -> Result<(), String> {
            let pages = self.live.remove(&token).ok_or("unknown token")?;
            self.free_pages += pages;
            Ok(())
        }
        fn mem_grow(&mut self, pages: u64) -> Result<u64, String> {
            self.workload += pages;
            Ok(pages)
        }
        fn mem_shrink(&mut self, pages: u64) -> Result<u64, String> {
            let freed = pages.min(self.workload);
            self.workload -= freed;
            Ok(freed)
        }
    }

    #[test]
    fn replay_passes_leave_the_machine_as_found() {
        let mut machine = FakeMachine {
            clock: 0,
            free_pages: 24,
            next_token: 0,
            live: BTreeMap::new(),
            workload: 7,
        };
        let report = replay(&sample(), 3, &mut machine);
        assert_eq!(report.passes, 3);
        assert_eq!(report.events, 15);
        assert_eq!(report.allocs_ok, 6);
        assert_eq!(report.allocs_failed, 0);
        assert_eq!(report.frees_ok, 3);
        assert_eq!(report.cleanup_frees, 3, "id 2 is never freed by the trace");
        assert_eq!(report.mem_grown, 300);
        assert_eq!(report.mem_shrunk, 120);
        assert_eq!(report.cleanup_shrunk, 180);
        assert_eq!(machine.free_pages, 24);
        assert!(machine.live.is_empty());
        assert_eq!(
            machine.workload, 7,
            "the workload from before the replay stays"
        );
    }

    #[test]
    fn replay_counts_failures_and_skips_their_frees() {
        let mut machine = FakeMachine {
            clock: 0,
            free_pages: 10, // the 16-page alloc fails, the 8-page one fits
            next_token: 0,
            live: BTreeMap::new(),
            workload: 0,
        };
        let report = replay(&sample(), 1, &mut machine);
        assert_eq!(report.allocs_ok, 1);
        assert_eq!(report.allocs_failed, 1);
        assert_eq!(report.frees_skipped, 1);
        assert_eq!(report.first_error.as_deref(), Some("no memory"));
        assert_eq!(machine.free_pages, 10);
        assert!(report.to_string().contains("1 ok, 1 failed"));
    }

    /// The fixture `cargo xtask test` boots with `--trace`, written by an independent
    /// (Python) encoder: the format as documented, not just as this module writes it.
    #[test]
    fn fixture_file_decodes() {
        let file = include_bytes!("testdata/sample.trace");
        let events = decode(file).unwrap();
        let area = String::from("linux,cma@50000000");
        assert_eq!(
            events,
            vec![
                TraceEvent {
                    time_us: 0,
                    op: TraceOpKind::MemGrow { pages: 256 }
                },
                TraceEvent {
                    time_us: 1000,
                    op: TraceOpKind::CmaAlloc {
                        area: area.clone(),
                        pages: 64,
                        align_order: 0,
                        id: 1
                    }
                },
                TraceEvent {
                    time_us: 2000,
                    op: TraceOpKind::CmaAlloc {
                        area,
                        pages: 512,
                        align_order: 9,
                        id: 2
                    }
                },
                TraceEvent {
                    time_us: 3000,
                    op: TraceOpKind::CmaFree { id: 1 }
                },
                TraceEvent {
                    time_us: 4000,
                    op: TraceOpKind::MemShrink { pages: 128 }
                },
            ]
        );
        assert_eq!(encode(&events).unwrap(), file.to_vec());
    }

    #[test]
    fn show_prints_events_and_a_hex_dump_that_parses_back() {
        let text = show("recorded", &sample(), 4096);
        assert!(text.starts_with("trace (recorded): 5 events over 1.000040 s\n"));
        assert!(text.contains("  cma alloc reserved 16 2 -> #1\n"));
        assert!(text.contains("cma free #1"));
        let hex: String = text
            .lines()
            .skip_while(|line| !line.starts_with("file:"))
            .skip(1)
            .map(|line| alloc::format!("{}\n", line))
            .collect();
        let bytes = parse_hex_dump(&hex).unwrap();
        assert_eq!(decode(&bytes).unwrap(), sample());
        assert!(show("recorded", &sample(), 10).contains("hex not shown"));
        assert!(parse_hex_dump("abc").is_err());
    }
}
