//! virtio-gpu (device id 16, virtio 1.x section 5.7), 2D only: [`wire`] holds one type per
//! message, [`driver`] the driver over the common virtio layer.
#![forbid(unsafe_code)]

pub mod driver;
pub mod wire;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use driver::{DisplayInfo, Framebuffer, GpuDriver, GpuError, Scanout};
pub use wire::{ErrorResponse, Format, Rect};
