//! Our virtio layer: the modern virtio-mmio transport, the split virtqueue and the device
//! drivers on top (virtio 1.x; virtio-gpu 2D and the virtio-video decoder).
//!
//! # Theory of operation
//!
//! Three pieces, one job each, none of which knows which device it serves:
//! - [`transport`]: the virtio-mmio register protocol (section 4.2.2) over the
//!   [`transport::Registers`] trait: probe, reset, the initialisation sequence of
//!   section 3.1.1, 64-bit feature negotiation (2.2), queue set-up, notification,
//!   interrupt status, configuration space with the ConfigGeneration retry.
//! - [`queue`]: one split virtqueue (2.7) in DMA memory: descriptor table, available and
//!   used rings, a free-descriptor list kept in driver memory (the device never gets to
//!   steer it), and validation of everything the device writes back.
//! - [`hal`]: the one hardware seam ([`hal::Hal`], like rcore virtio-drivers' `Hal`): DMA
//!   memory and access to it, barriers, waiting for an interrupt, a clock for timeouts.
//!
//! [`device::Device`] puts them together for a driver: bring-up, one synchronous
//! `request` helper (add a chain, notify, wait for the interrupt until the used ring
//! advances, with a timeout), asynchronous chains beside it (`submit`, `pop_used`,
//! `wait_used`; completions `request` meets that are not its own are stashed, not
//! refused), the DEVICE_NEEDS_RESET and timeout paths, and teardown that frees every
//! byte of DMA memory. [`gpu`] (one command at a time) and [`video`] (many buffers
//! outstanding on its command queue, an event buffer always posted) are the drivers on it.
//!
//! We wrote our own rather than take `virtio-drivers`: its MMIO transport maps the
//! DeviceID through `DeviceType::try_from`, which knows no id above 25, so the
//! virtio-video devices (30, 31) are refused before any driver sees them.
//!
//! Everything here is safe Rust and runs on the host against [`fake`]: a fake device
//! (registers, a queue walker, a pluggable device model) over fake DMA memory. The
//! hardware half is `crate::driver::virtio_mmio`.
#![forbid(unsafe_code)]

pub mod bytes;
pub mod device;
pub mod gpu;
pub mod hal;
pub mod queue;
pub mod transport;
pub mod video;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod tests;

use core::fmt;

pub use device::Device;
pub use hal::{Barrier, DmaRegion, Hal, HalError};
pub use queue::QueueError;
pub use transport::{Registers, TransportError};

/// Device IDs (virtio 1.x section 5, Linux `include/uapi/linux/virtio_ids.h`).
pub mod id {
    pub const GPU: u32 = 16;
    pub const VIDEO_ENCODER: u32 = 30;
    pub const VIDEO_DECODER: u32 = 31;
}

/// Anything that can go wrong between a driver and its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioError {
    Transport(TransportError),
    Queue(QueueError),
    Hal(HalError),
    /// The used ring did not advance within the timeout; the device was reset and stays
    /// unusable until [`Device::reset`].
    Timeout {
        queue: u16,
        waited_ms: u64,
    },
    /// The device set DEVICE_NEEDS_RESET (status bit 0x40, section 2.1.1); nothing more
    /// goes to it until [`Device::reset`].
    NeedsReset,
    /// An earlier timeout or DEVICE_NEEDS_RESET left the device reset; call
    /// [`Device::reset`] first.
    Broken,
}

impl From<TransportError> for VirtioError {
    fn from(e: TransportError) -> Self {
        VirtioError::Transport(e)
    }
}

impl From<QueueError> for VirtioError {
    fn from(e: QueueError) -> Self {
        VirtioError::Queue(e)
    }
}

impl From<HalError> for VirtioError {
    fn from(e: HalError) -> Self {
        VirtioError::Hal(e)
    }
}

impl fmt::Display for VirtioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtioError::Transport(e) => write!(f, "virtio transport: {e}"),
            VirtioError::Queue(e) => write!(f, "virtqueue: {e}"),
            VirtioError::Hal(e) => write!(f, "virtio DMA: {e}"),
            VirtioError::Timeout { queue, waited_ms } => write!(
                f,
                "device did not answer on queue {queue} within {waited_ms} ms; it was reset"
            ),
            VirtioError::NeedsReset => write!(f, "device set DEVICE_NEEDS_RESET"),
            VirtioError::Broken => write!(
                f,
                "device is reset after an earlier failure; reset it first"
            ),
        }
    }
}
