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
//! The driver lives in a static, but a call takes it out for its duration and puts it
//! back after: commands sleep in WFI until the device's interrupt, which must be able to
//! run, so no IRQ-masking lock may be held across them. A second caller meanwhile gets
//! [`VideoServiceError::Busy`].
//!
//! The decoder's own API ([`VideoDecoder`]: stream, params, resources backed by bus
//! addresses from the DMA API, queueing, `poll`/`wait`, teardown) is used through
//! [`with`]; this file adds nothing to it but the instance.

use alloc::boxed::Box;
use alloc::string::String;

use crate::cpu::IrqSafeLock;
use crate::dt::platform::MmioDevice;
use crate::virtio::id;
use crate::virtio::video::{VideoDecoder, VideoError};

use super::virtio_mmio::{self, AttachError, KmemHal, MmioRegisters};
use super::virtio_probe;

/// The decoder as the firmware runs it.
pub type Decoder = VideoDecoder<KmemHal, MmioRegisters>;

enum Slot {
    /// Not looked for yet (or shut down).
    Unprobed,
    /// Boxed: the driver (queues, its Hal's DMA description, resources) is large.
    Ready(Box<Decoder>),
    /// Taken out by a call in progress.
    InUse,
}

static DECODER: IrqSafeLock<Slot> = IrqSafeLock::new(Slot::Unprobed);

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
    let state = DECODER.lock(|slot| match slot {
        Slot::Unprobed => {
            *slot = Slot::InUse;
            None
        }
        Slot::Ready(_) => Some(Ok(())),
        Slot::InUse => Some(Err(VideoServiceError::Busy)),
    });
    if let Some(result) = state {
        return result;
    }
    match bring_up() {
        Ok(decoder) => {
            DECODER.lock(|slot| *slot = Slot::Ready(Box::new(decoder)));
            Ok(())
        }
        Err(e) => {
            DECODER.lock(|slot| *slot = Slot::Unprobed);
            Err(e)
        }
    }
}

/// The `virtio,mmio` slots that hold a video decoder, in tree order.
fn decoder_slots() -> impl Iterator<Item = &'static MmioDevice> {
    crate::runtime::platform()
        .virtio_mmio
        .iter()
        .filter(|device| {
            // Safety: each window is a `virtio,mmio` node's `reg`, part of
            // `platform.mmio`, which the boot code identity-maps as device memory.
            let found = unsafe { virtio_probe::device_id(device.base) };
            found == Some(id::VIDEO_DECODER)
        })
}

/// The device-tree path of the decoder's slot (for its DMA description), if there is one.
pub fn device_path() -> Option<String> {
    decoder_slots().next().map(|device| device.path.clone())
}

fn bring_up() -> Result<Decoder, VideoServiceError> {
    let mut first_error = None;
    for device in decoder_slots() {
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
    probe()?;
    let taken = DECODER.lock(|slot| match core::mem::replace(slot, Slot::InUse) {
        Slot::Ready(decoder) => Ok(decoder),
        other => {
            let error = match other {
                Slot::Unprobed => VideoServiceError::NoDevice,
                _ => VideoServiceError::Busy,
            };
            *slot = other;
            Err(error)
        }
    });
    let mut decoder = taken?;
    let result = f(&mut decoder);
    DECODER.lock(|slot| *slot = Slot::Ready(decoder));
    Ok(result?)
}

/// Tear down any stream, release the driver and all its DMA memory; the next call probes
/// again.
pub fn shutdown() -> Result<(), VideoServiceError> {
    let taken = DECODER.lock(|slot| match core::mem::replace(slot, Slot::Unprobed) {
        Slot::Ready(decoder) => Ok(Some(decoder)),
        Slot::Unprobed => Ok(None),
        Slot::InUse => {
            *slot = Slot::InUse;
            Err(VideoServiceError::Busy)
        }
    })?;
    // Dropping tears the stream down, resets the device and frees its memory.
    drop(taken);
    Ok(())
}
