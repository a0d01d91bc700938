//! What the screen shows: pure drawing over a B8G8R8A8 framebuffer.
//!
//! Theory of operation
//! -------------------
//! The virtio-gpu driver owns the scanout memory and hands this module a byte slice with
//! its width, height and stride; [`framebuffer::FrameBuffer`] makes it an
//! `embedded-graphics` draw target (bytes B, G, R, A per pixel). On it the firmware draws
//! one of two screens, both pure functions of plain data, host-tested pixel by pixel:
//! - [`pattern::draw_test_pattern`]: eight colour bars, the display path's end-to-end check
//!   (the console test `display_test_pattern` compares QEMU's screendump with the rule);
//! - [`memory_map::draw_memory_map`]: a cell per pageblock coloured by migrate type and
//!   use, CMA areas outlined, a header and a [`legend`]; [`memory_map::redraw_memory_map`]
//!   repaints only what changed between two snapshots, for live redraws;
//!   [`snapshot::zone_snapshot`] reads one from the buddy allocator's zone.
//!
//! [`boot::boot_screen`] reads which of them to show from boot on (`monolith.display=`).
#![forbid(unsafe_code)]

pub mod boot;
pub mod framebuffer;
pub mod legend;
pub mod memory_map;
pub mod pattern;
pub mod snapshot;

pub use framebuffer::{FrameBuffer, FrameBufferError};
pub use memory_map::{
    draw_memory_map, redraw_memory_map, AreaOutline, MemoryMapSnapshot, PageblockCell,
};
pub use pattern::draw_test_pattern;
pub use snapshot::zone_snapshot;
