//! Console scripts for the display: what the firmware's `gpu` command puts on the screen,
//! checked through QEMU's screendump (QMP) against the host's own rules.
//!
//! Theory of operation
//! -------------------
//! Both scripts boot the default board (which must have a virtio-gpu device), talk to the
//! shell as [`super::shell`] does, and read the screen with [`Console::screendump`]. A
//! screen is read again for up to [`SETTLE`] until it shows what is expected, because the
//! shell's reply and QEMU's view of the scanout need not be the same instant.
//! - [`test_pattern`]: `gpu pattern`, then the screen must equal
//!   [`crate::screen::expected_test_pattern`] exactly, at whatever size the guest chose.
//! - [`pattern_at_boot`]: booted with `monolith.display=pattern`, the screen shows the
//!   pattern before any command is typed.
//! - [`memory_map_changes`]: `gpu map`, screen A; `cma alloc` of 4096 pages (eight
//!   pageblocks of the default CMA area), screen B must differ from A below the header
//!   (the grid: the legend never changes with an allocation), and only in CMA cells
//!   (blue hues before and after); `cma free`, and the grid must look as in A again.

use std::time::{Duration, Instant};

use super::shell::{boot, parse_handle, run, AREA};
use crate::expect::{Console, ExpectError};
use crate::screen::{diff_rows, expected_test_pattern, Image, Mismatch};

type Result<T> = std::result::Result<T, ExpectError>;

/// How long a screen may take to show what the shell said it drew.
const SETTLE: Duration = Duration::from_secs(5);
/// Rows of the memory map's header (`HEADER_HEIGHT` in src/display/memory_map.rs): the
/// only part above the grid, and the only part whose text changes with free memory.
pub const MAP_HEADER_ROWS: u32 = 32;

/// Run `line` and fail if the shell answered with an error.
fn gpu(console: &mut Console, line: &str) -> Result<String> {
    let output = run(console, line)?;
    if output.contains("unknown command") || output.starts_with("gpu:") {
        return Err(console.error(format!("`{line}` failed: {output:?}")));
    }
    Ok(output)
}

/// Screendumps until `done` holds for one (then it is returned) or [`SETTLE`] passes
/// (then the last one is).
fn settle(console: &mut Console, done: impl Fn(&Image) -> bool) -> Result<Image> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let image = console.screendump()?;
        if done(&image) || Instant::now() >= deadline {
            return Ok(image);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn test_pattern(console: &mut Console) -> Result<()> {
    boot(console)?;
    gpu(console, "gpu pattern")?;
    let matches = |image: &Image| {
        crate::screen::diff(image, &expected_test_pattern(image.width, image.height)).is_none()
    };
    let actual = settle(console, matches)?;
    let expected = expected_test_pattern(actual.width, actual.height);
    console.compare_screen(&actual, &expected)
}

/// Booted with `monolith.display=pattern`: the screen shows the pattern before any command.
pub fn pattern_at_boot(console: &mut Console) -> Result<()> {
    console.expect(
        r"(?m)^display: showing the test pattern on \d+x\d+",
        Duration::from_secs(30),
    )?;
    boot(console)?;
    let matches = |image: &Image| {
        crate::screen::diff(image, &expected_test_pattern(image.width, image.height)).is_none()
    };
    let actual = settle(console, matches)?;
    let expected = expected_test_pattern(actual.width, actual.height);
    console.compare_screen(&actual, &expected)
}

pub fn memory_map_changes(console: &mut Console) -> Result<()> {
    boot(console)?;
    gpu(console, "gpu map")?;
    let a = console.screendump()?;
    let grid = MAP_HEADER_ROWS..u32::MAX;
    let output = run(console, &format!("cma alloc {AREA} 4096"))?;
    let (handle, _pfn) = parse_handle(console, &output)?;
    let b = settle(console, |b| diff_rows(b, &a, grid.clone()).is_some())?;
    match diff_rows(&b, &a, grid.clone()) {
        Some(Mismatch::Pixels { .. }) => {}
        other => {
            let saved_a = console.save_screen(".before", &a)?;
            let saved_b = console.save_screen(".after", &b)?;
            return Err(console.error(format!(
                "allocating 4096 pages of {AREA} changed nothing below the header ({other:?}); \
                 saved {} and {}",
                saved_a.display(),
                saved_b.display()
            )));
        }
    }
    // Where it changed: only CMA cells (the firmware draws CMA pageblocks in blue hues,
    // every other type in other hues), before and after, so the change is where the
    // allocation landed and nowhere else.
    let blue = |p: [u8; 3]| p[2] > p[0] && p[2] > p[1];
    let outside_cma = (MAP_HEADER_ROWS..a.height.min(b.height))
        .flat_map(|y| (0..a.width.min(b.width)).map(move |x| (x, y)))
        .find(|&(x, y)| {
            let (before, after) = (a.pixel(x, y).unwrap(), b.pixel(x, y).unwrap());
            before != after && !(blue(before) && blue(after))
        });
    if let Some((x, y)) = outside_cma {
        let saved_a = console.save_screen(".before", &a)?;
        let saved_b = console.save_screen(".after", &b)?;
        return Err(console.error(format!(
            "allocating from {AREA} changed pixel ({x}, {y}), which is not a CMA cell \
             ({:?} -> {:?}); saved {} and {}",
            a.pixel(x, y),
            b.pixel(x, y),
            saved_a.display(),
            saved_b.display()
        )));
    }
    let freed = run(console, &format!("cma free {handle}"))?;
    if !freed.trim().is_empty() && freed.contains("no allocation") {
        return Err(console.error(format!("cma free {handle}: {freed:?}")));
    }
    let c = settle(console, |c| diff_rows(c, &a, grid.clone()).is_none())?;
    if let Some(mismatch) = diff_rows(&c, &a, grid) {
        let saved = console.save_screen(".after-free", &c)?;
        return Err(console.error(format!(
            "after `cma free` the map should look as before the allocation: {mismatch}; saved {}",
            saved.display()
        )));
    }
    Ok(())
}
