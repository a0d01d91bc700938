//! The firmware's virtio-video decoder instance: found on first use among the device
//! tree's `virtio,mmio` slots (DeviceID 31), kept for the whole run, called by the video
//! pipeline.
//!
//! # Theory of operation
//!
//! As the GPU's instance (`virtio_gpu.rs`): [`probe`] walks `platform.virtio_mmio` for
//! DeviceID 31 ([`crate::virtio::id::VIDEO_DECODER`]), attaches it
//! ([`super::virtio_mmio::attach`]: registers, the DMA description of its node, the
//! interrupt) and brings the driver up ([`VideoDecoder::new`]); its rings, command page,
//! event page and per-resource pages are `dma_alloc_coherent` buffers, given back when
//! resources are destroyed and by [`shutdown`]. A board without the device gets
//! [`VideoServiceError::NoDevice`] ("no virtio-video decoder"), nothing else happens.
//! The driver lives in a [`DriverSlot`], lent to one call at a time: a second caller
//! meanwhile gets [`VideoServiceError::Busy`].
//!
//! The decoder's own API ([`VideoDecoder`]: stream, params, resources backed by bus
//! addresses from the DMA API, queueing, `poll`/`wait`, teardown) is used through
//! [`with`]; this file adds nothing to it but the instance.

use alloc::string::String;

use crate::virtio::id;
use crate::virtio::video::{VideoDecoder, VideoError};

use super::slot::{DriverSlot, Unavailable};
use super::virtio_mmio::{self, AttachError, KmemHal, MmioRegisters};
use super::virtio_probe;

/// The decoder as the firmware runs it.
pub type Decoder = VideoDecoder<KmemHal, MmioRegisters>;

static DECODER: DriverSlot<Decoder> = DriverSlot::new();

/// Why the video service could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoServiceError {
    /// No `virtio,mmio` slot holds a decoder.
    NoDevice,
    /// Another call is using the decoder.
    Busy,
    Attach(AttachError),
    Video(VideoError),
}

impl From<Unavailable> for VideoServiceError {
    fn from(u: Unavailable) -> Self {
        match u {
            Unavailable::NoDevice => VideoServiceError::NoDevice,
            Unavailable::Busy => VideoServiceError::Busy,
        }
    }
}

impl From<VideoError> for VideoServiceError {
    fn from(e: VideoError) -> Self {
        VideoServiceError::Video(e)
    }
}

impl core::fmt::Display for VideoServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VideoServiceError::NoDevice => write!(
                f,
                "no virtio-video decoder (device id {}) in any virtio,mmio slot",
                id::VIDEO_DECODER
            ),
            VideoServiceError::Busy => write!(f, "virtio-video is busy"),
            VideoServiceError::Attach(e) => write!(f, "virtio-video: {e}"),
            VideoServiceError::Video(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for VideoServiceError {}

/// Find and bring up the decoder (once; later calls return at once).
pub fn probe() -> Result<(), VideoServiceError> {
    DECODER.probe(bring_up)
}

/// The device-tree path of the decoder's slot (for its DMA description), if there is one.
pub fn device_path() -> Option<String> {
    virtio_probe::slots_with_id(id::VIDEO_DECODER)
        .next()
        .map(|device| device.path.clone())
}

fn bring_up() -> Result<Decoder, VideoServiceError> {
    let mut first_error = None;
    for device in virtio_probe::slots_with_id(id::VIDEO_DECODER) {
        let (hal, regs) = virtio_mmio::attach(device).map_err(VideoServiceError::Attach)?;
        match VideoDecoder::new(hal, regs) {
            Ok(decoder) => {
                log::info!(
                    "virtio-video decoder at {:#x} ({})",
                    device.base,
                    decoder.config().name()
                );
                return Ok(decoder);
            }
            Err(e) => {
                log::warn!("virtio-video at {:#x}: {e}", device.base);
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.map_or(VideoServiceError::NoDevice, VideoServiceError::Video))
}

/// Run `f` on the decoder (probing first if needed), with interrupts as the caller has
/// them and no lock held.
pub fn with<T>(
    f: impl FnOnce(&mut Decoder) -> Result<T, VideoError>,
) -> Result<T, VideoServiceError> {
    DECODER.with(bring_up, f)?.map_err(VideoServiceError::from)
}

/// Tear down any stream, release the driver and all its DMA memory; the next call probes
/// again.
pub fn shutdown() -> Result<(), VideoServiceError> {
    // Dropping tears the stream down, resets the device and frees its memory.
    drop(DECODER.take()?);
    Ok(())
}
