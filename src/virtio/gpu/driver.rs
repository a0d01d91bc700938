//! The virtio-gpu 2D driver (virtio 1.x section 5.7) over [`Device`]: display info, one
//! framebuffer resource backed by one physically contiguous range, scanout, transfer and
//! flush, teardown.
//!
//! # Theory of operation
//!
//! Commands go one at a time on the control queue (queue 0; the cursor queue is not
//! used). Each uses one DMA page of the driver's: the request is encoded at offset 0 and
//! handed to the device as one readable buffer, the response lands at
//! [`RESPONSE_OFFSET`] in one writable buffer sized for the expected response. The
//! response header decides: the expected type decodes (exact size), 0x1200..0x1205 become
//! [`GpuError::Device`], anything else [`GpuError::UnexpectedResponse`].
//!
//! [`GpuDriver::attach_framebuffer`] is three steps: RESOURCE_CREATE_2D, then
//! RESOURCE_ATTACH_BACKING with exactly one entry (the caller's range: a CMA dma-buf is
//! contiguous), then SET_SCANOUT. A failed step undoes the earlier ones in reverse
//! (DETACH_BACKING, RESOURCE_UNREF). [`GpuDriver::off`] is the same undo from the top:
//! SET_SCANOUT with resource 0, DETACH, UNREF. If an undo step fails too, the device is
//! reset (virtio-gpu forgets every resource on reset, 5.7.5), so in every outcome the
//! device holds no reference to the caller's memory once the call returns.
//! [`GpuDriver::flush`] is TRANSFER_TO_HOST_2D of the rectangle (offset: its first byte
//! in the backing) then RESOURCE_FLUSH. [`GpuDriver::move_backing`] follows a framebuffer
//! whose memory moved (a movable dma-buf the allocator relocated while it was unpinned):
//! DETACH_BACKING, then ATTACH_BACKING of the new range; the resource, its host-side copy
//! and the scanout stay, so the screen does not blink.
//!
//! Dropping the driver turns the scanout off, resets the device and frees its DMA page.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

use super::wire::{
    self, CtrlHeader, ErrorResponse, Format, GetDisplayInfo, Message, Rect, ResourceAttachBacking,
    ResourceCreate2d, ResourceDetachBacking, ResourceFlush, ResourceUnref, RespDisplayInfo,
    RespOkNodata, SetScanout, TransferToHost2d, WireError,
};
use crate::virtio::hal::{DmaRegion, Hal};
use crate::virtio::queue::Buffer;
use crate::virtio::transport::{Registers, TransportError};
use crate::virtio::{id, Device, VirtioError};

/// The control queue (5.7.2).
pub const CONTROLQ: u16 = 0;
/// Entries wanted for the control queue (one command at a time needs two).
const CONTROLQ_SIZE: u16 = 16;
/// Where responses land in the command page.
pub const RESPONSE_OFFSET: usize = 2048;
/// `struct virtio_gpu_config` (5.7.4): events_read, events_clear, num_scanouts,
/// num_capsets.
mod config {
    pub const NUM_SCANOUTS: usize = 8;
}

/// Why a GPU operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuError {
    /// Transport, queue, DMA or timeout trouble.
    Virtio(VirtioError),
    /// The device answered with an error response.
    Device { command: u32, error: ErrorResponse },
    /// The device answered with a type that is neither the expected one nor an error.
    UnexpectedResponse { command: u32, response: u32 },
    /// The response did not decode.
    Wire { command: u32, error: WireError },
    /// Width or height 0.
    EmptyFramebuffer,
    /// Not B8G8R8A8 or B8G8R8X8.
    UnsupportedFormat(Format),
    /// The range is smaller than width x height x 4, or longer than a backing entry can
    /// say (4 GiB).
    BadBacking { len: u64, needed: u64 },
    /// A framebuffer is already attached; `off` first.
    AlreadyAttached,
    /// No framebuffer is attached.
    NotAttached,
    /// A rectangle outside the framebuffer, or empty.
    BadRect(Rect),
    /// The device reports no scanout.
    NoScanout,
}

impl From<VirtioError> for GpuError {
    fn from(e: VirtioError) -> Self {
        GpuError::Virtio(e)
    }
}

impl From<TransportError> for GpuError {
    fn from(e: TransportError) -> Self {
        GpuError::Virtio(VirtioError::Transport(e))
    }
}

impl From<crate::virtio::HalError> for GpuError {
    fn from(e: crate::virtio::HalError) -> Self {
        GpuError::Virtio(VirtioError::Hal(e))
    }
}

/// The command's name for messages.
fn command_name(command: u32) -> &'static str {
    match command {
        wire::cmd::GET_DISPLAY_INFO => "GET_DISPLAY_INFO",
        wire::cmd::RESOURCE_CREATE_2D => "RESOURCE_CREATE_2D",
        wire::cmd::RESOURCE_UNREF => "RESOURCE_UNREF",
        wire::cmd::SET_SCANOUT => "SET_SCANOUT",
        wire::cmd::RESOURCE_FLUSH => "RESOURCE_FLUSH",
        wire::cmd::TRANSFER_TO_HOST_2D => "TRANSFER_TO_HOST_2D",
        wire::cmd::RESOURCE_ATTACH_BACKING => "RESOURCE_ATTACH_BACKING",
        wire::cmd::RESOURCE_DETACH_BACKING => "RESOURCE_DETACH_BACKING",
        _ => "command",
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::Virtio(e) => write!(f, "virtio-gpu: {e}"),
            GpuError::Device { command, error } => {
                write!(f, "virtio-gpu {} answered {error}", command_name(*command))
            }
            GpuError::UnexpectedResponse { command, response } => write!(
                f,
                "virtio-gpu {} answered unexpected type {response:#x}",
                command_name(*command)
            ),
            GpuError::Wire { command, error } => write!(
                f,
                "virtio-gpu {} response malformed: {error}",
                command_name(*command)
            ),
            GpuError::EmptyFramebuffer => {
                write!(f, "framebuffer width and height must be non-zero")
            }
            GpuError::UnsupportedFormat(format) => {
                write!(f, "format {format:?} not supported (B8G8R8A8 or B8G8R8X8)")
            }
            GpuError::BadBacking { len, needed } => write!(
                f,
                "backing of {len} bytes for a framebuffer of {needed} bytes (at most 4 GiB)"
            ),
            GpuError::AlreadyAttached => write!(f, "a framebuffer is already attached"),
            GpuError::NotAttached => write!(f, "no framebuffer attached"),
            GpuError::BadRect(r) => write!(
                f,
                "rectangle {}x{}+{}+{} is empty or outside the framebuffer",
                r.width, r.height, r.x, r.y
            ),
            GpuError::NoScanout => write!(f, "the device has no scanout"),
        }
    }
}

/// One scanout as GET_DISPLAY_INFO reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanout {
    pub index: u32,
    pub rect: Rect,
    pub enabled: bool,
    pub flags: u32,
}

/// What the device says about its displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayInfo {
    /// `num_scanouts` from the configuration space.
    pub num_scanouts: u32,
    /// The first `num_scanouts` entries of the response.
    pub scanouts: Vec<Scanout>,
}

impl DisplayInfo {
    /// The first enabled scanout, if any.
    pub fn primary(&self) -> Option<&Scanout> {
        self.scanouts.iter().find(|s| s.enabled)
    }
}

/// The framebuffer on scanout 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framebuffer {
    pub resource_id: u32,
    pub scanout: u32,
    pub paddr: u64,
    pub len: u64,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub format: Format,
}

/// A virtio-gpu device driven in 2D mode.
pub struct GpuDriver<H: Hal, R: Registers> {
    device: Device<H, R>,
    cmd: Option<DmaRegion>,
    num_scanouts: u32,
    next_resource_id: u32,
    framebuffer: Option<Framebuffer>,
}

impl<H: Hal, R: Registers> GpuDriver<H, R> {
    /// Bring up the GPU behind `regs` (device id 16; no device-specific features).
    pub fn new(hal: H, regs: R) -> Result<Self, GpuError> {
        let device = Device::new(hal, regs, id::GPU, 0, &[CONTROLQ_SIZE])?;
        let num_scanouts = device
            .transport()
            .read_config(|c| c.u32(config::NUM_SCANOUTS))?;
        // If this fails, `device` drops: reset and queue memory freed.
        let cmd = device.hal().dma_alloc(1)?;
        Ok(GpuDriver {
            device,
            cmd: Some(cmd),
            num_scanouts,
            next_resource_id: 1,
            framebuffer: None,
        })
    }

    pub fn device(&self) -> &Device<H, R> {
        &self.device
    }

    /// Change the per-command timeout.
    pub fn set_timeout_ns(&mut self, timeout_ns: u64) {
        self.device.set_timeout_ns(timeout_ns);
    }

    pub fn num_scanouts(&self) -> u32 {
        self.num_scanouts
    }

    pub fn framebuffer(&self) -> Option<&Framebuffer> {
        self.framebuffer.as_ref()
    }

    /// Send `request`, expect a `Resp` (or an error response).
    pub fn command<Req: Message, Resp: Message>(
        &mut self,
        request: &Req,
    ) -> Result<Resp, GpuError> {
        let cmd = self
            .cmd
            .as_ref()
            .ok_or(GpuError::Virtio(VirtioError::Broken))?;
        let bytes = request.encode();
        self.device.hal().write(cmd, 0, &bytes)?;
        let readable = Buffer {
            paddr: cmd.paddr(),
            len: bytes.len() as u32,
        };
        let writable = Buffer {
            paddr: cmd.paddr() + RESPONSE_OFFSET as u64,
            len: Resp::SIZE as u32,
        };
        let written = self.device.request(CONTROLQ, &[readable], &[writable])? as usize;
        let mut response = alloc::vec![0u8; written];
        self.device
            .hal()
            .read(cmd, RESPONSE_OFFSET, &mut response)?;
        let wire = |error| GpuError::Wire {
            command: Req::TYPE,
            error,
        };
        let header = CtrlHeader::decode(&response).map_err(wire)?;
        if header.type_ != Resp::TYPE {
            return Err(match ErrorResponse::from_type(header.type_) {
                Some(error) => GpuError::Device {
                    command: Req::TYPE,
                    error,
                },
                None => GpuError::UnexpectedResponse {
                    command: Req::TYPE,
                    response: header.type_,
                },
            });
        }
        Ok(Resp::decode(&response).map_err(wire)?.1)
    }

    fn nodata<Req: Message>(&mut self, request: &Req) -> Result<(), GpuError> {
        self.command::<Req, RespOkNodata>(request).map(|_| ())
    }

    /// VIRTIO_GPU_CMD_GET_DISPLAY_INFO.
    pub fn display_info(&mut self) -> Result<DisplayInfo, GpuError> {
        let info: RespDisplayInfo = self.command(&GetDisplayInfo)?;
        let count = (self.num_scanouts as usize).min(wire::MAX_SCANOUTS);
        let scanouts = info.pmodes[..count]
            .iter()
            .enumerate()
            .map(|(i, p)| Scanout {
                index: i as u32,
                rect: p.rect,
                enabled: p.enabled != 0,
                flags: p.flags,
            })
            .collect();
        Ok(DisplayInfo {
            num_scanouts: self.num_scanouts,
            scanouts,
        })
    }

    pub fn resource_create_2d(
        &mut self,
        resource_id: u32,
        format: Format,
        width: u32,
        height: u32,
    ) -> Result<(), GpuError> {
        self.nodata(&ResourceCreate2d {
            resource_id,
            format: format as u32,
            width,
            height,
        })
    }

    pub fn resource_unref(&mut self, resource_id: u32) -> Result<(), GpuError> {
        self.nodata(&ResourceUnref { resource_id })
    }

    /// RESOURCE_ATTACH_BACKING with one entry: `[paddr, paddr + len)`.
    pub fn attach_backing(
        &mut self,
        resource_id: u32,
        paddr: u64,
        len: u32,
    ) -> Result<(), GpuError> {
        self.nodata(&ResourceAttachBacking {
            resource_id,
            addr: paddr,
            length: len,
        })
    }

    pub fn detach_backing(&mut self, resource_id: u32) -> Result<(), GpuError> {
        self.nodata(&ResourceDetachBacking { resource_id })
    }

    /// SET_SCANOUT; resource 0 disables the scanout.
    pub fn set_scanout(
        &mut self,
        scanout_id: u32,
        resource_id: u32,
        rect: Rect,
    ) -> Result<(), GpuError> {
        self.nodata(&SetScanout {
            rect,
            scanout_id,
            resource_id,
        })
    }

    pub fn transfer_to_host_2d(
        &mut self,
        resource_id: u32,
        rect: Rect,
        offset: u64,
    ) -> Result<(), GpuError> {
        self.nodata(&TransferToHost2d {
            rect,
            offset,
            resource_id,
        })
    }

    pub fn resource_flush(&mut self, resource_id: u32, rect: Rect) -> Result<(), GpuError> {
        self.nodata(&ResourceFlush { rect, resource_id })
    }

    /// A fresh resource id (never 0, which means "none").
    fn new_resource_id(&mut self) -> u32 {
        let id = self.next_resource_id;
        self.next_resource_id = self.next_resource_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Show `[paddr, paddr + len)` as a `width` x `height` framebuffer (4 bytes a pixel,
    /// rows packed) on scanout 0: create the resource, attach the range as its one
    /// backing entry, set the scanout. On failure nothing stays on the device.
    pub fn attach_framebuffer(
        &mut self,
        paddr: u64,
        len: u64,
        width: u32,
        height: u32,
        format: Format,
    ) -> Result<Framebuffer, GpuError> {
        if self.framebuffer.is_some() {
            return Err(GpuError::AlreadyAttached);
        }
        if !matches!(format, Format::B8G8R8A8 | Format::B8G8R8X8) {
            return Err(GpuError::UnsupportedFormat(format));
        }
        if width == 0 || height == 0 {
            return Err(GpuError::EmptyFramebuffer);
        }
        if self.num_scanouts == 0 {
            return Err(GpuError::NoScanout);
        }
        let stride = u64::from(width) * u64::from(Format::BYTES_PER_PIXEL);
        let needed = stride * u64::from(height);
        let entry_len = u32::try_from(len).ok().filter(|_| len >= needed);
        let (Some(entry_len), Ok(stride)) = (entry_len, u32::try_from(stride)) else {
            return Err(GpuError::BadBacking { len, needed });
        };
        let resource_id = self.new_resource_id();
        self.resource_create_2d(resource_id, format, width, height)?;
        if let Err(e) = self.attach_backing(resource_id, paddr, entry_len) {
            self.undo(resource_id, false);
            return Err(e);
        }
        if let Err(e) = self.set_scanout(0, resource_id, Rect::new(0, 0, width, height)) {
            self.undo(resource_id, true);
            return Err(e);
        }
        let fb = Framebuffer {
            resource_id,
            scanout: 0,
            paddr,
            len,
            width,
            height,
            stride,
            format,
        };
        self.framebuffer = Some(fb);
        Ok(fb)
    }

    /// The framebuffer's memory is now at `paddr` (same length): DETACH_BACKING, then
    /// ATTACH_BACKING of the new range. A 2D device reads backing only during a transfer,
    /// so between frames the old range may already be someone else's. If the device
    /// refuses the new backing, it is reset (it holds no reference to either range) and
    /// the framebuffer is gone: attach it again.
    pub fn move_backing(&mut self, paddr: u64) -> Result<Framebuffer, GpuError> {
        let mut fb = self.framebuffer.ok_or(GpuError::NotAttached)?;
        if fb.paddr == paddr {
            return Ok(fb);
        }
        let entry_len = u32::try_from(fb.len).map_err(|_| GpuError::BadBacking {
            len: fb.len,
            needed: fb.len,
        })?;
        let moved = self
            .detach_backing(fb.resource_id)
            .and_then(|()| self.attach_backing(fb.resource_id, paddr, entry_len));
        if let Err(e) = moved {
            self.reset_device();
            return Err(e);
        }
        fb.paddr = paddr;
        self.framebuffer = Some(fb);
        Ok(fb)
    }

    /// Take back what set-up did for `resource_id`; if the device refuses, reset it so it
    /// holds nothing.
    fn undo(&mut self, resource_id: u32, attached: bool) {
        let detached = !attached || self.detach_backing(resource_id).is_ok();
        let unrefd = detached && self.resource_unref(resource_id).is_ok();
        if !unrefd {
            self.reset_device();
        }
    }

    /// Reset the device and bring it up again (it forgets every resource).
    fn reset_device(&mut self) {
        self.framebuffer = None;
        if let Err(e) = self.device.reset() {
            log::warn!("virtio-gpu: reset after a failed teardown: {e}");
        }
    }

    /// Copy `rect` of the framebuffer to the host resource and show it
    /// (TRANSFER_TO_HOST_2D, RESOURCE_FLUSH).
    pub fn flush(&mut self, rect: Rect) -> Result<(), GpuError> {
        let fb = self.framebuffer.ok_or(GpuError::NotAttached)?;
        if rect.width == 0 || rect.height == 0 || !rect.fits_in(fb.width, fb.height) {
            return Err(GpuError::BadRect(rect));
        }
        let offset = u64::from(rect.y) * u64::from(fb.stride)
            + u64::from(rect.x) * u64::from(Format::BYTES_PER_PIXEL);
        self.transfer_to_host_2d(fb.resource_id, rect, offset)?;
        self.resource_flush(fb.resource_id, rect)
    }

    /// Flush the whole framebuffer.
    pub fn flush_all(&mut self) -> Result<(), GpuError> {
        let fb = self.framebuffer.ok_or(GpuError::NotAttached)?;
        self.flush(Rect::new(0, 0, fb.width, fb.height))
    }

    /// Turn the scanout off and drop the framebuffer resource: SET_SCANOUT with resource
    /// 0, DETACH_BACKING, RESOURCE_UNREF. Afterwards the device no longer references the
    /// framebuffer's memory, whatever the result (a refused step resets the device); the
    /// first error is returned. Nothing attached: nothing to do.
    pub fn off(&mut self) -> Result<(), GpuError> {
        let Some(fb) = self.framebuffer else {
            return Ok(());
        };
        let result = self
            .set_scanout(fb.scanout, 0, Rect::default())
            .and_then(|()| self.detach_backing(fb.resource_id))
            .and_then(|()| self.resource_unref(fb.resource_id));
        self.framebuffer = None;
        if result.is_err() {
            self.reset_device();
        }
        result
    }

    /// Reset the device and bring it up again (after a timeout or DEVICE_NEEDS_RESET).
    /// The device forgets every resource, so no framebuffer stays attached.
    pub fn reset(&mut self) -> Result<(), GpuError> {
        self.framebuffer = None;
        self.device.reset()?;
        Ok(())
    }
}

impl<H: Hal, R: Registers> Drop for GpuDriver<H, R> {
    fn drop(&mut self) {
        if self.framebuffer.is_some() && !self.device.is_broken() {
            let _ = self.off();
        }
        // The device must not write the command page once it is freed: reset it first
        // (the Device's own drop resets again and frees the queue).
        self.device.halt();
        if let Some(cmd) = self.cmd.take() {
            let _ = self.device.hal().dma_free(cmd);
        }
    }
}
