//! Monolith: a bare-metal aarch64 firmware whose job is physically contiguous memory.
//!
//! The crate has two halves:
//! - Safe policy code that builds for the host too and is unit-tested there with `cargo
//!   test`: [`mm`] (buddy allocator, pageblocks, CMA), [`dt`] (the one validated device
//!   tree and what is read from it), [`shell`], [`util`] (ranges, sizes), the data-only
//!   parts of [`shell_service`] (trace, iomem, devtree) and of `kmem` (the memory map's
//!   placement, the page cache's policy), and the benchmarks' report formats. These
//!   modules carry `#![forbid(unsafe_code)]`.
//! - The thin hardware layer, only on the bare-metal target (`target_os = "none"`): boot,
//!   MMU, exceptions, GIC, timer, UART, PSCI, the heap, the rest of `kmem`, the in-guest
//!   benchmarks and the shell service's firmware glue. Every unsafe block there says why
//!   it is sound.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod display;
pub mod dma;
pub mod dt;
pub mod mm;
pub mod pasr;
pub mod shell;
pub mod shell_service;
pub mod util;
pub mod video;
pub mod virtio;

// The device-tree fuzz target's one entry point (host only; see `fuzz/`).
#[cfg(not(target_os = "none"))]
pub mod fuzz;
// Boot core: the table format, identity-map policy and fault decoding build on the host
// too; their hardware halves are bare-metal only.
pub mod exception;
pub mod memory;

#[cfg(target_os = "none")]
pub mod cpu;

#[cfg(target_os = "none")]
pub mod bsp;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod display_service;
#[cfg(target_os = "none")]
pub mod dma_service;
#[cfg(target_os = "none")]
pub mod driver;
#[cfg(target_os = "none")]
pub mod dtb;
#[cfg(target_os = "none")]
pub mod heap;
// kmem's pure parts (memmap placement, the page cache's block table) build on the host
// too; the rest of it is bare-metal only.
#[cfg_attr(not(target_os = "none"), path = "kmem/host.rs")]
pub mod kmem;
// The in-guest benchmarks: their report formats build on the host, the workloads (over
// kmem's public interface) are bare-metal only.
pub mod bench;
#[cfg(target_os = "none")]
pub mod logger;
#[cfg(target_os = "none")]
pub mod panic;
#[cfg(target_os = "none")]
pub mod pasr_service;
#[cfg(target_os = "none")]
pub mod psci;
#[cfg(target_os = "none")]
pub mod runtime;
#[cfg(all(target_os = "none", feature = "qemu-test"))]
pub mod test_harness;
#[cfg(target_os = "none")]
pub mod video_service;
