//! The memory map screen: one cell per pageblock, coloured by migrate type and use.
//!
//! Theory of operation
//! -------------------
//! The input is plain data, a [`MemoryMapSnapshot`]: one [`PageblockCell`] per 2 MiB
//! pageblock (`pageblock_nr_pages` = 512 pages, Linux's `pageblock_order` 9) in physical
//! order, the CMA areas as [`AreaOutline`]s (a name and a range of pageblock indices), a
//! title and the totals. Whoever owns the zone fills it in; drawing is a pure function of
//! it and the screen size, so the host tests check pixels.
//!
//! Screen layout, top to bottom: a two-line header (title; total, free, pageblocks), the
//! grid, the legend ([`crate::display::legend`]). The grid uses the largest square cell
//! pitch (2 to 64 pixels) at which every pageblock fits in the space left; a cell is its
//! pitch minus a one-pixel gap, which is where area outlines are drawn, so an outline
//! never covers a cell's pixels. 1 GiB (512 pageblocks) on 1280x800 gets 30-pixel cells,
//! 8 GiB (4096) 11-pixel cells; if even a pitch of 2 is too big, the cells that fit are
//! drawn and the header says how many are not shown.
//!
//! Colour: hue by migrate type ([`type_colour`]: Unmovable red, Movable green,
//! Reclaimable orange, HighAtomic purple, CMA blue; an isolated pageblock, or one whose
//! type is Isolate, grey), brightness by use ([`BlockUse`]: all 512 pages free is dark,
//! partly used is middle, none free is full). Areas are outlined in a colour of their own
//! and named in the legend next to a swatch framed in that colour.
//!
//! Redraw: [`redraw_memory_map`] compares two snapshots of the same layout and repaints
//! only the header (when its numbers changed) and the cells whose state changed, and
//! returns those rectangles, so the GPU driver transfers and flushes only them. Anything
//! that moves the layout (the number of pageblocks, the areas) is a full redraw.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::{DrawTarget, Point, Size};
use embedded_graphics::primitives::Rectangle;
use embedded_graphics::text::{Baseline, Text};
use embedded_graphics::Drawable;

use crate::display::legend::{Entry, Legend, LINE_HEIGHT, TEXT_COLOUR};
use crate::mm::{MigrateType, PAGEBLOCK_NR_PAGES};
use crate::util::size::{format_size, PAGE_SIZE};

/// Margin around everything, in pixels.
const MARGIN: u32 = 4;
/// The header: two text lines below the top margin (the host-side console test relies on
/// nothing below this changing with the header's numbers).
pub const HEADER_HEIGHT: u32 = MARGIN + 2 * LINE_HEIGHT + MARGIN;
const MIN_PITCH: u32 = 2;
const MAX_PITCH: u32 = 64;
const BACKGROUND: Rgb888 = Rgb888::new(0, 0, 0);

/// How much of a pageblock is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockUse {
    /// All of its pages are free.
    Free,
    Partial,
    /// None of its pages are free.
    Used,
}

impl BlockUse {
    /// From the count of free pages; counts above 512 read as all free.
    pub fn of(free_pages: u32) -> BlockUse {
        match free_pages {
            0 => BlockUse::Used,
            n if n as usize >= PAGEBLOCK_NR_PAGES => BlockUse::Free,
            _ => BlockUse::Partial,
        }
    }
}

/// One pageblock's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageblockCell {
    pub migrate_type: MigrateType,
    /// Under page isolation (drawn as Isolate whatever its type).
    pub isolated: bool,
    /// Free pages out of the pageblock's 512.
    pub free_pages: u32,
    /// In a DRAM bank masked from self-refresh (PASR): drawn dimmed to a slate tint.
    pub masked: bool,
}

/// A named run of pageblocks (a CMA area) to outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaOutline {
    pub name: String,
    /// Indices into [`MemoryMapSnapshot::pageblocks`].
    pub pageblocks: Range<usize>,
}

/// Everything the memory map shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryMapSnapshot {
    pub title: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// In physical order, one per pageblock.
    pub pageblocks: Vec<PageblockCell>,
    pub areas: Vec<AreaOutline>,
    /// The board has PASR banks: the legend explains the masked shade.
    pub pasr: bool,
}

/// The hue of a type at full brightness (a pageblock with no free page).
pub fn type_colour(migrate_type: MigrateType, isolated: bool) -> Rgb888 {
    if isolated {
        return Rgb888::new(0xB0, 0xB0, 0xB0);
    }
    match migrate_type {
        MigrateType::Unmovable => Rgb888::new(0xE8, 0x40, 0x40),
        MigrateType::Movable => Rgb888::new(0x40, 0xD0, 0x40),
        MigrateType::Reclaimable => Rgb888::new(0xF0, 0xA0, 0x20),
        MigrateType::HighAtomic => Rgb888::new(0xC0, 0x50, 0xE0),
        MigrateType::Cma => Rgb888::new(0x40, 0x90, 0xFF),
        MigrateType::Isolate => Rgb888::new(0xB0, 0xB0, 0xB0),
    }
}

/// `colour` scaled to the brightness of `use_`: free 30 %, partly used 60 %, used 100 %.
pub fn shade(colour: Rgb888, use_: BlockUse) -> Rgb888 {
    use embedded_graphics::pixelcolor::RgbColor;
    let tenths = match use_ {
        BlockUse::Free => 3,
        BlockUse::Partial => 6,
        BlockUse::Used => 10,
    };
    let scale = |c: u8| (u16::from(c) * tenths / 10) as u8;
    Rgb888::new(scale(colour.r()), scale(colour.g()), scale(colour.b()))
}

/// A cell in a masked bank: its colour at a fifth of its brightness, tinted slate blue,
/// so the type still shows but the bank reads as asleep.
pub fn masked_shade(colour: Rgb888) -> Rgb888 {
    use embedded_graphics::pixelcolor::RgbColor;
    let dim = |c: u8, tint: u8| (u16::from(c) / 5 + u16::from(tint)).min(255) as u8;
    Rgb888::new(
        dim(colour.r(), 0x18),
        dim(colour.g(), 0x18),
        dim(colour.b(), 0x40),
    )
}

/// The colour a cell is filled with.
pub fn cell_colour(cell: &PageblockCell) -> Rgb888 {
    let colour = shade(
        type_colour(cell.migrate_type, cell.isolated),
        BlockUse::of(cell.free_pages),
    );
    if cell.masked {
        masked_shade(colour)
    } else {
        colour
    }
}

/// Outline colours, one per area in order (repeating past the fourth).
pub const AREA_COLOURS: [Rgb888; 4] = [
    Rgb888::new(0xFF, 0xFF, 0xFF),
    Rgb888::new(0xFF, 0xFF, 0x00),
    Rgb888::new(0x00, 0xFF, 0xFF),
    Rgb888::new(0xFF, 0x00, 0xFF),
];

pub fn area_colour(index: usize) -> Rgb888 {
    AREA_COLOURS[index % AREA_COLOURS.len()]
}

/// The legend's entries for `snapshot`: the types, the uses, then each area.
pub fn legend_entries(snapshot: &MemoryMapSnapshot) -> Vec<Entry> {
    let swatch = |fill, label: &str| Entry {
        fill,
        outline: None,
        label: label.into(),
    };
    let mut entries = Vec::new();
    for (t, name) in [
        (MigrateType::Unmovable, "Unmovable"),
        (MigrateType::Movable, "Movable"),
        (MigrateType::Reclaimable, "Reclaimable"),
        (MigrateType::HighAtomic, "HighAtomic"),
        (MigrateType::Cma, "CMA"),
        (MigrateType::Isolate, "Isolated"),
    ] {
        entries.push(swatch(type_colour(t, false), name));
    }
    let grey = Rgb888::new(0xC0, 0xC0, 0xC0);
    entries.push(swatch(shade(grey, BlockUse::Free), "dark: all free"));
    entries.push(swatch(shade(grey, BlockUse::Partial), "mid: partly used"));
    entries.push(swatch(shade(grey, BlockUse::Used), "bright: none free"));
    if snapshot.pasr {
        entries.push(swatch(
            masked_shade(shade(grey, BlockUse::Free)),
            "slate: bank masked from self-refresh (PASR)",
        ));
    }
    for (i, area) in snapshot.areas.iter().enumerate() {
        let bytes = area.pageblocks.len() as u64 * PAGEBLOCK_NR_PAGES as u64 * PAGE_SIZE;
        entries.push(Entry {
            fill: BACKGROUND,
            outline: Some(area_colour(i)),
            label: format!(
                "{} (pageblocks {}..{}, {})",
                area.name,
                area.pageblocks.start,
                area.pageblocks.end,
                format_size(bytes)
            ),
        });
    }
    entries
}

/// Where everything goes on a `width` x `height` screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLayout {
    pub header: Rectangle,
    /// Top-left corner of the grid (the first gap pixel).
    pub grid_origin: Point,
    /// Cell size plus the one-pixel gap.
    pub pitch: u32,
    pub columns: u32,
    /// How many pageblocks have a cell (all of them unless the screen is too small).
    pub shown: usize,
    pub legend_origin: Point,
    pub legend_width: u32,
}

impl MapLayout {
    pub fn new(width: u32, height: u32, snapshot: &MemoryMapSnapshot) -> MapLayout {
        let inner_width = width.saturating_sub(2 * MARGIN);
        let entries = legend_entries(snapshot);
        let legend_height = Legend::new(&entries).height(inner_width);
        let legend_top = height.saturating_sub(MARGIN + legend_height);
        let grid_top = HEADER_HEIGHT;
        let grid_height = legend_top.saturating_sub(grid_top + MARGIN);
        let n = snapshot.pageblocks.len().max(1) as u64;
        // Cells in a pitch: one gap pixel on the left of each plus the closing one.
        let fits = |pitch: u32| {
            let columns = u64::from(inner_width.saturating_sub(1) / pitch);
            let rows = u64::from(grid_height.saturating_sub(1) / pitch);
            (columns, columns * rows)
        };
        let pitch = (MIN_PITCH..=MAX_PITCH)
            .rev()
            .find(|&p| fits(p).1 >= n)
            .unwrap_or(MIN_PITCH);
        let (columns, capacity) = fits(pitch);
        let columns = columns.clamp(1, n) as u32;
        MapLayout {
            header: Rectangle::new(Point::zero(), Size::new(width, HEADER_HEIGHT)),
            grid_origin: Point::new(MARGIN as i32, grid_top as i32),
            pitch,
            columns,
            shown: (snapshot.pageblocks.len() as u64).min(capacity) as usize,
            legend_origin: Point::new(MARGIN as i32, legend_top as i32),
            legend_width: inner_width,
        }
    }

    /// Column and row of pageblock `index`.
    fn place(&self, index: usize) -> (i32, i32) {
        let columns = self.columns as usize;
        ((index % columns) as i32, (index / columns) as i32)
    }

    /// The pixels pageblock `index` fills; `None` if it has no cell.
    pub fn cell(&self, index: usize) -> Option<Rectangle> {
        if index >= self.shown {
            return None;
        }
        let (c, r) = self.place(index);
        let p = self.pitch as i32;
        Some(Rectangle::new(
            self.grid_origin + Point::new(c * p + 1, r * p + 1),
            Size::new(self.pitch - 1, self.pitch - 1),
        ))
    }

    /// The whole grid, gaps included.
    pub fn grid(&self) -> Rectangle {
        let rows = (self.shown as u32).div_ceil(self.columns);
        Rectangle::new(
            self.grid_origin,
            Size::new(self.columns * self.pitch + 1, rows * self.pitch + 1),
        )
    }

    /// The gap-pixel lines around the cells of `range` that border a cell outside it (or
    /// the grid's edge): the outline of any run of cells, however it wraps.
    pub fn outline(&self, range: &Range<usize>) -> Vec<Rectangle> {
        let inside = |i: i64| i >= range.start as i64 && i < range.end as i64;
        let columns = i64::from(self.columns);
        let p = self.pitch as i32;
        let mut edges = Vec::new();
        for index in range.start..range.end.min(self.shown) {
            let (c, r) = self.place(index);
            let corner = self.grid_origin + Point::new(c * p, r * p);
            let i = index as i64;
            let vertical =
                |x: i32| Rectangle::new(corner + Point::new(x, 0), Size::new(1, self.pitch + 1));
            let horizontal =
                |y: i32| Rectangle::new(corner + Point::new(0, y), Size::new(self.pitch + 1, 1));
            if c == 0 || !inside(i - 1) {
                edges.push(vertical(0));
            }
            if i64::from(c) == columns - 1 || !inside(i + 1) {
                edges.push(vertical(p));
            }
            if !inside(i - columns) {
                edges.push(horizontal(0));
            }
            if !inside(i + columns) {
                edges.push(horizontal(p));
            }
        }
        edges
    }
}

fn draw_header<D>(
    target: &mut D,
    layout: &MapLayout,
    snapshot: &MemoryMapSnapshot,
) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    target.fill_solid(&layout.header, BACKGROUND)?;
    let style = MonoTextStyle::new(&FONT_6X10, TEXT_COLOUR);
    let mut stats = format!(
        "{} total, {} free, {} pageblocks of {}",
        format_size(snapshot.total_bytes),
        format_size(snapshot.free_bytes),
        snapshot.pageblocks.len(),
        format_size(PAGEBLOCK_NR_PAGES as u64 * PAGE_SIZE)
    );
    let hidden = snapshot.pageblocks.len() - layout.shown;
    if hidden > 0 {
        stats.push_str(&format!(" ({hidden} not shown: screen too small)"));
    }
    let m = MARGIN as i32;
    Text::with_baseline(&snapshot.title, Point::new(m, m), style, Baseline::Top).draw(target)?;
    Text::with_baseline(
        &stats,
        Point::new(m, m + LINE_HEIGHT as i32),
        style,
        Baseline::Top,
    )
    .draw(target)?;
    Ok(())
}

/// Draw the whole memory map screen.
pub fn draw_memory_map<D>(target: &mut D, snapshot: &MemoryMapSnapshot) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let size = target.bounding_box().size;
    let layout = MapLayout::new(size.width, size.height, snapshot);
    target.clear(BACKGROUND)?;
    draw_header(target, &layout, snapshot)?;
    for (index, cell) in snapshot.pageblocks.iter().enumerate().take(layout.shown) {
        if let Some(rect) = layout.cell(index) {
            target.fill_solid(&rect, cell_colour(cell))?;
        }
    }
    for (i, area) in snapshot.areas.iter().enumerate() {
        for edge in layout.outline(&area.pageblocks) {
            target.fill_solid(&edge, area_colour(i))?;
        }
    }
    let entries = legend_entries(snapshot);
    Legend::new(&entries).draw(target, layout.legend_origin, layout.legend_width)
}

/// Bring a screen showing `previous` up to `current`, repainting only what changed;
/// returns the rectangles repainted (the whole screen when the layout changed).
pub fn redraw_memory_map<D>(
    target: &mut D,
    previous: &MemoryMapSnapshot,
    current: &MemoryMapSnapshot,
) -> Result<Vec<Rectangle>, D::Error>
where
    D: DrawTarget<Color = Rgb888>,
{
    let screen = target.bounding_box();
    if previous.pageblocks.len() != current.pageblocks.len() || previous.areas != current.areas {
        draw_memory_map(target, current)?;
        return Ok(alloc::vec![screen]);
    }
    let layout = MapLayout::new(screen.size.width, screen.size.height, current);
    let mut damage = Vec::new();
    if (&previous.title, previous.total_bytes, previous.free_bytes)
        != (&current.title, current.total_bytes, current.free_bytes)
    {
        draw_header(target, &layout, current)?;
        damage.push(layout.header);
    }
    let changed = previous
        .pageblocks
        .iter()
        .zip(&current.pageblocks)
        .enumerate();
    for (index, (before, now)) in changed.take(layout.shown) {
        if cell_colour(before) != cell_colour(now) {
            if let Some(rect) = layout.cell(index) {
                target.fill_solid(&rect, cell_colour(now))?;
                damage.push(rect);
            }
        }
    }
    Ok(damage)
}

/// The smallest rectangle holding every one of `rects`; `None` for none.
pub fn bounding(rects: &[Rectangle]) -> Option<Rectangle> {
    let mut iter = rects
        .iter()
        .filter_map(|r| Some((r.top_left, r.bottom_right()?)));
    let (mut lo, mut hi) = iter.next()?;
    for (a, b) in iter {
        lo = Point::new(lo.x.min(a.x), lo.y.min(a.y));
        hi = Point::new(hi.x.max(b.x), hi.y.max(b.y));
    }
    Some(Rectangle::with_corners(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::framebuffer::FrameBuffer;
    use alloc::string::ToString;
    use alloc::vec;
    use embedded_graphics::prelude::Dimensions;

    const W: u32 = 640;
    const H: u32 = 480;

    fn free(migrate_type: MigrateType) -> PageblockCell {
        PageblockCell {
            migrate_type,
            isolated: false,
            free_pages: PAGEBLOCK_NR_PAGES as u32,
            masked: false,
        }
    }

    /// 1 GiB: 512 pageblocks, the first 8 Unmovable and used, 128 CMA at 128..256.
    fn one_gib() -> MemoryMapSnapshot {
        let mut pageblocks = vec![free(MigrateType::Movable); 512];
        for cell in &mut pageblocks[..8] {
            *cell = PageblockCell {
                migrate_type: MigrateType::Unmovable,
                isolated: false,
                free_pages: 0,
                masked: false,
            };
        }
        for cell in &mut pageblocks[128..256] {
            *cell = free(MigrateType::Cma);
        }
        MemoryMapSnapshot {
            title: "Monolith memory map".to_string(),
            total_bytes: 1 << 30,
            free_bytes: 1000 << 20,
            pageblocks,
            areas: vec![AreaOutline {
                name: "linux,cma@50000000".to_string(),
                pageblocks: 128..256,
            }],
            pasr: false,
        }
    }

    #[test]
    fn masked_banks_are_shaded_apart_and_explained_in_the_legend() {
        let mut snapshot = one_gib();
        snapshot.pasr = true;
        // A 64 MiB bank (32 pageblocks) masked: its cells darken and tint, keeping a trace
        // of the type (CMA cells stay bluer than Movable ones).
        for cell in &mut snapshot.pageblocks[224..288] {
            cell.masked = true;
        }
        let plain = cell_colour(&snapshot.pageblocks[300]);
        let masked_movable = cell_colour(&snapshot.pageblocks[260]);
        let masked_cma = cell_colour(&snapshot.pageblocks[230]);
        assert_ne!(plain, masked_movable);
        assert_eq!(masked_movable, masked_shade(plain));
        use embedded_graphics::pixelcolor::RgbColor;
        assert!(masked_movable.g() < plain.g());
        assert!(masked_cma.b() > masked_movable.b());
        let labels: Vec<String> = legend_entries(&snapshot)
            .into_iter()
            .map(|e| e.label)
            .collect();
        assert!(labels
            .iter()
            .any(|l| l.contains("masked from self-refresh")));
        snapshot.pasr = false;
        assert!(!legend_entries(&snapshot)
            .iter()
            .any(|e| e.label.contains("masked")));
        // Masking a bank repaints exactly its cells.
        let before = one_gib();
        let mut after = one_gib();
        for cell in &mut after.pageblocks[288..320] {
            cell.masked = true;
        }
        let mut fb_bytes = vec![0u8; (W * H * 4) as usize];
        let mut fb = FrameBuffer::new(&mut fb_bytes, W, H, (W * 4) as usize).unwrap();
        draw_memory_map(&mut fb, &before).unwrap();
        let damage = redraw_memory_map(&mut fb, &before, &after).unwrap();
        let layout = MapLayout::new(W, H, &after);
        assert_eq!(damage.len(), 32, "one rectangle per changed cell");
        assert!(damage.contains(&layout.cell(288).unwrap()));
    }

    fn screen(snapshot: &MemoryMapSnapshot) -> Vec<u8> {
        let mut bytes = vec![0u8; (W * H * 4) as usize];
        let mut fb = FrameBuffer::new(&mut bytes, W, H, W as usize * 4).unwrap();
        draw_memory_map(&mut fb, snapshot).unwrap();
        bytes
    }

    fn pixel(bytes: &[u8], x: u32, y: u32) -> Rgb888 {
        let at = ((y * W + x) * 4) as usize;
        Rgb888::new(bytes[at + 2], bytes[at + 1], bytes[at])
    }

    fn centre(rect: &Rectangle) -> (u32, u32) {
        let c = rect.center();
        (c.x as u32, c.y as u32)
    }

    #[test]
    fn use_and_colour_rules() {
        assert_eq!(BlockUse::of(0), BlockUse::Used);
        assert_eq!(BlockUse::of(1), BlockUse::Partial);
        assert_eq!(BlockUse::of(511), BlockUse::Partial);
        assert_eq!(BlockUse::of(512), BlockUse::Free);
        assert_eq!(BlockUse::of(9999), BlockUse::Free);
        let cma = type_colour(MigrateType::Cma, false);
        assert_eq!(shade(cma, BlockUse::Used), cma);
        assert_eq!(
            shade(Rgb888::new(100, 200, 250), BlockUse::Free),
            Rgb888::new(30, 60, 75)
        );
        // Isolation wins over the type; every type has its own hue.
        assert_eq!(
            type_colour(MigrateType::Movable, true),
            type_colour(MigrateType::Isolate, false)
        );
        let mut hues: Vec<_> = MigrateType::ALL
            .iter()
            .map(|&t| type_colour(t, false))
            .collect();
        hues.sort_by_key(|c| format!("{c:?}"));
        hues.dedup();
        assert_eq!(hues.len(), MigrateType::ALL.len());
    }

    #[test]
    fn grids_fill_the_screen_sensibly() {
        let mut snapshot = one_gib();
        let layout = MapLayout::new(W, H, &snapshot);
        assert_eq!(layout.shown, 512);
        assert!(
            layout.pitch >= 15,
            "1 GiB on 640x480: pitch {}",
            layout.pitch
        );
        let grid = layout.grid();
        assert!(grid.bottom_right().unwrap().x < W as i32);
        assert!(grid.bottom_right().unwrap().y < layout.legend_origin.y);
        assert!(grid.top_left.y >= HEADER_HEIGHT as i32);
        // 8 GiB: 4096 pageblocks still all get a cell of at least 4 pixels.
        snapshot.pageblocks = vec![free(MigrateType::Movable); 4096];
        let big = MapLayout::new(W, H, &snapshot);
        assert_eq!(big.shown, 4096);
        assert!(big.pitch >= 5, "pitch {}", big.pitch);
        assert!(big.grid().bottom_right().unwrap().y < big.legend_origin.y);
        // Cells never overlap and keep their gap.
        let a = big.cell(0).unwrap();
        let b = big.cell(1).unwrap();
        assert_eq!(b.top_left.x - a.top_left.x, big.pitch as i32);
        assert!(a.intersection(&b).is_zero_sized());
        // A tiny screen shows what fits and no more.
        let tiny = MapLayout::new(64, 100, &snapshot);
        assert!(tiny.shown < 4096);
        assert_eq!(tiny.cell(tiny.shown), None);
    }

    #[test]
    fn cells_have_their_state_colour() {
        let snapshot = one_gib();
        let bytes = screen(&snapshot);
        let layout = MapLayout::new(W, H, &snapshot);
        let at = |i| {
            let (x, y) = centre(&layout.cell(i).unwrap());
            pixel(&bytes, x, y)
        };
        assert_eq!(
            at(0),
            Rgb888::new(0xE8, 0x40, 0x40),
            "used Unmovable: full red"
        );
        assert_eq!(
            at(8),
            shade(type_colour(MigrateType::Movable, false), BlockUse::Free)
        );
        assert_eq!(
            at(200),
            shade(type_colour(MigrateType::Cma, false), BlockUse::Free)
        );
        // Every pixel of a cell, corner to corner.
        let cell = layout.cell(200).unwrap();
        let expected = cell_colour(&snapshot.pageblocks[200]);
        for p in embedded_graphics::prelude::PointsIter::points(&cell) {
            assert_eq!(pixel(&bytes, p.x as u32, p.y as u32), expected, "{p:?}");
        }
    }

    #[test]
    fn the_area_is_outlined_in_the_gaps_around_it() {
        let snapshot = one_gib();
        let bytes = screen(&snapshot);
        let layout = MapLayout::new(W, H, &snapshot);
        let white = area_colour(0);
        let gap_left_of = |i: usize| {
            let cell = layout.cell(i).unwrap();
            let (_, y) = centre(&cell);
            pixel(&bytes, cell.top_left.x as u32 - 1, y)
        };
        let gap_above = |i: usize| {
            let cell = layout.cell(i).unwrap();
            let (x, _) = centre(&cell);
            pixel(&bytes, x, cell.top_left.y as u32 - 1)
        };
        // The first area cell is bordered on the left and above, the inside has no lines.
        assert_eq!(gap_left_of(128), white);
        assert_eq!(gap_above(128), white);
        assert_eq!(gap_left_of(129), BACKGROUND);
        assert_eq!(gap_left_of(8), BACKGROUND, "no outline away from the area");
        // The cell just past the area has the area's closing edge on its left (same row).
        let (c_end, _) = layout.place(256);
        if c_end > 0 {
            assert_eq!(gap_left_of(256), white);
        }
        // Below the last row of the area: the cell under index 255 is outside.
        let below = 255 + layout.columns as usize;
        assert_eq!(gap_above(below), white);
        // Every cell in the area keeps its own colour (outlines only touch gaps).
        for i in 128..256 {
            let (x, y) = centre(&layout.cell(i).unwrap());
            assert_eq!(pixel(&bytes, x, y), cell_colour(&snapshot.pageblocks[i]));
        }
    }

    #[test]
    fn one_pageblock_change_touches_only_its_cell() {
        let before = one_gib();
        let mut after = before.clone();
        after.pageblocks[200].free_pages = 100;
        let (a, b) = (screen(&before), screen(&after));
        let cell = MapLayout::new(W, H, &after).cell(200).unwrap();
        let mut changed = 0;
        for y in 0..H {
            for x in 0..W {
                if pixel(&a, x, y) != pixel(&b, x, y) {
                    assert!(
                        cell.contains(Point::new(x as i32, y as i32)),
                        "({x},{y}) changed"
                    );
                    changed += 1;
                }
            }
        }
        assert_eq!(changed, cell.size.width * cell.size.height);
    }

    #[test]
    fn redraw_paints_only_changes_and_equals_a_full_draw() {
        let before = one_gib();
        let mut after = before.clone();
        after.pageblocks[130].free_pages = 0;
        after.pageblocks[300].isolated = true;
        after.pageblocks[301].free_pages = 512; // no change
        after.free_bytes -= 4 << 20;
        let mut bytes = screen(&before);
        let mut fb = FrameBuffer::new(&mut bytes, W, H, W as usize * 4).unwrap();
        let damage = redraw_memory_map(&mut fb, &before, &after).unwrap();
        let layout = MapLayout::new(W, H, &after);
        assert_eq!(
            damage,
            vec![
                layout.header,
                layout.cell(130).unwrap(),
                layout.cell(300).unwrap()
            ]
        );
        assert_eq!(bytes, screen(&after), "incremental equals full");
        // Same numbers, same cells: nothing to repaint.
        let mut fb = FrameBuffer::new(&mut bytes, W, H, W as usize * 4).unwrap();
        assert!(redraw_memory_map(&mut fb, &after, &after)
            .unwrap()
            .is_empty());
        // A new area moves the legend: full redraw.
        let mut moved = after.clone();
        moved.areas.push(AreaOutline {
            name: "video".to_string(),
            pageblocks: 300..310,
        });
        let damage = redraw_memory_map(&mut fb, &after, &moved).unwrap();
        assert_eq!(damage, vec![fb.bounding_box()]);
        assert_eq!(bytes, screen(&moved));
    }

    #[test]
    fn header_and_legend_have_text() {
        let snapshot = one_gib();
        let bytes = screen(&snapshot);
        let layout = MapLayout::new(W, H, &snapshot);
        let text_pixels = |ys: Range<u32>| {
            ys.flat_map(|y| (0..W).map(move |x| (x, y)))
                .filter(|&(x, y)| pixel(&bytes, x, y) == TEXT_COLOUR)
                .count()
        };
        assert!(text_pixels(0..HEADER_HEIGHT) > 100);
        assert!(text_pixels(layout.legend_origin.y as u32..H) > 100);
        let entries = legend_entries(&snapshot);
        assert!(entries
            .last()
            .unwrap()
            .label
            .starts_with("linux,cma@50000000 (pageblocks 128..256, 256 MiB"));
        assert_eq!(entries.last().unwrap().outline, Some(area_colour(0)));
    }

    #[test]
    fn bounding_box_of_damage() {
        let r = |x, y, w, h| Rectangle::new(Point::new(x, y), Size::new(w, h));
        assert_eq!(bounding(&[]), None);
        assert_eq!(
            bounding(&[r(5, 5, 2, 2), r(1, 8, 1, 1)]),
            Some(r(1, 5, 6, 4))
        );
    }
}
