//! The shell service: the serial-console shell running over the real firmware.
//!
//! # Theory of operation
//!
//! Hubris style: the shell's policy lives in the library ([`crate::shell`]: line editing,
//! parsing, error wording, Linux file formats) and knows nothing about hardware; this
//! service is the thin part that owns the state the shell talks about and runs the console
//! loop. It is split the same way inside:
//! - safe, host-tested pieces that only turn data into data: [`trace`] (the allocation
//!   trace format, recorder and replay), [`iomem`] (the `/proc/iomem` resource tree),
//!   [`devtree`] (`/proc/device-tree` and `dt` from the boot blob);
//! - the firmware glue (bare metal only): the [`crate::shell::Backend`] implementation over
//!   `kmem`, the device tree and the platform, the CMA handle table, and [`run`], the loop
//!   that feeds console bytes to the shell and carries out power-off and reboot.

pub mod devtree;
pub mod iomem;
pub mod trace;

#[cfg(target_os = "none")]
mod buffers;
#[cfg(target_os = "none")]
mod firmware;
#[cfg(target_os = "none")]
mod pasr;
#[cfg(target_os = "none")]
pub use firmware::{run, FirmwareBackend};
