//! A fake virtio-gpu device model for the host tests: decodes every request with the wire
//! types (exact sizes, so a malformed request is caught), keeps resources, backings and
//! scanouts as QEMU's `virtio-gpu` does, answers the same error responses, and can be
//! told to answer the next command of a type with any response type.
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::wire::{
    cmd, resp, CtrlHeader, DisplayOne, Format, GetDisplayInfo, Message, Rect,
    ResourceAttachBacking, ResourceCreate2d, ResourceDetachBacking, ResourceFlush, ResourceUnref,
    RespDisplayInfo, RespOkNodata, SetScanout, TransferToHost2d,
};
use crate::virtio::fake::FakeDevice;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub backing: Option<(u64, u32)>,
}

pub struct FakeGpu {
    pub width: u32,
    pub height: u32,
    pub num_scanouts: u32,
    pub resources: BTreeMap<u32, Resource>,
    pub scanouts: Vec<Option<u32>>,
    pub transfers: Vec<TransferToHost2d>,
    pub flushes: Vec<ResourceFlush>,
    /// Every command type received, in order.
    pub commands: Vec<u32>,
    /// Answer the next command of this type with this response type.
    pub fail: Option<(u32, u32)>,
    /// Requests that did not decode.
    pub malformed: Vec<String>,
}

impl FakeGpu {
    pub fn new(width: u32, height: u32, num_scanouts: u32) -> Self {
        FakeGpu {
            width,
            height,
            num_scanouts,
            resources: BTreeMap::new(),
            scanouts: vec![None; num_scanouts as usize],
            transfers: Vec::new(),
            flushes: Vec::new(),
            commands: Vec::new(),
            fail: None,
            malformed: Vec::new(),
        }
    }

    /// `struct virtio_gpu_config`: events_read, events_clear, num_scanouts, num_capsets.
    pub fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[8..12].copy_from_slice(&self.num_scanouts.to_le_bytes());
        c
    }

    fn decode<M: Message>(&mut self, request: &[u8]) -> Result<M, u32> {
        M::decode(request).map(|(_, m)| m).map_err(|e| {
            self.malformed.push(format!("{:#x}: {e}", M::TYPE));
            resp::ERR_UNSPEC
        })
    }

    fn resource(&mut self, id: u32) -> Result<&mut Resource, u32> {
        self.resources
            .get_mut(&id)
            .ok_or(resp::ERR_INVALID_RESOURCE_ID)
    }

    fn serve(&mut self, type_: u32, request: &[u8]) -> Result<Vec<u8>, u32> {
        let ok = || Ok(RespOkNodata.encode());
        match type_ {
            cmd::GET_DISPLAY_INFO => {
                self.decode::<GetDisplayInfo>(request)?;
                let mut info = RespDisplayInfo::default();
                for p in info.pmodes.iter_mut().take(self.num_scanouts as usize) {
                    *p = DisplayOne {
                        rect: Rect::new(0, 0, self.width, self.height),
                        enabled: 1,
                        flags: 0,
                    };
                }
                Ok(info.encode())
            }
            cmd::RESOURCE_CREATE_2D => {
                let m: ResourceCreate2d = self.decode(request)?;
                if m.resource_id == 0 || self.resources.contains_key(&m.resource_id) {
                    return Err(resp::ERR_INVALID_RESOURCE_ID);
                }
                let format = Format::from_u32(m.format).ok_or(resp::ERR_INVALID_PARAMETER)?;
                if m.width == 0 || m.height == 0 {
                    return Err(resp::ERR_INVALID_PARAMETER);
                }
                self.resources.insert(
                    m.resource_id,
                    Resource {
                        format,
                        width: m.width,
                        height: m.height,
                        backing: None,
                    },
                );
                ok()
            }
            cmd::RESOURCE_ATTACH_BACKING => {
                let m: ResourceAttachBacking = self.decode(request)?;
                let r = self.resource(m.resource_id)?;
                if r.backing.is_some() || m.length == 0 {
                    return Err(resp::ERR_UNSPEC);
                }
                r.backing = Some((m.addr, m.length));
                ok()
            }
            cmd::RESOURCE_DETACH_BACKING => {
                let m: ResourceDetachBacking = self.decode(request)?;
                let r = self.resource(m.resource_id)?;
                r.backing.take().ok_or(resp::ERR_UNSPEC)?;
                ok()
            }
            cmd::RESOURCE_UNREF => {
                let m: ResourceUnref = self.decode(request)?;
                self.resources
                    .remove(&m.resource_id)
                    .ok_or(resp::ERR_INVALID_RESOURCE_ID)?;
                for s in &mut self.scanouts {
                    if *s == Some(m.resource_id) {
                        *s = None;
                    }
                }
                ok()
            }
            cmd::SET_SCANOUT => {
                let m: SetScanout = self.decode(request)?;
                if m.scanout_id >= self.num_scanouts {
                    return Err(resp::ERR_INVALID_SCANOUT_ID);
                }
                if m.resource_id != 0 {
                    let r = self.resource(m.resource_id)?;
                    if !m.rect.fits_in(r.width, r.height) {
                        return Err(resp::ERR_INVALID_PARAMETER);
                    }
                }
                self.scanouts[m.scanout_id as usize] =
                    (m.resource_id != 0).then_some(m.resource_id);
                ok()
            }
            cmd::TRANSFER_TO_HOST_2D => {
                let m: TransferToHost2d = self.decode(request)?;
                let r = self.resource(m.resource_id)?;
                let (_, len) = r.backing.ok_or(resp::ERR_UNSPEC)?;
                let stride = u64::from(r.width) * 4;
                let last = u64::from(m.rect.height.saturating_sub(1)) * stride
                    + u64::from(m.rect.width) * 4;
                if !m.rect.fits_in(r.width, r.height) || m.offset + last > u64::from(len) {
                    return Err(resp::ERR_INVALID_PARAMETER);
                }
                self.transfers.push(m);
                ok()
            }
            cmd::RESOURCE_FLUSH => {
                let m: ResourceFlush = self.decode(request)?;
                let r = self.resource(m.resource_id)?;
                if !m.rect.fits_in(r.width, r.height) {
                    return Err(resp::ERR_INVALID_PARAMETER);
                }
                self.flushes.push(m);
                ok()
            }
            other => {
                self.malformed.push(format!("unknown command {other:#x}"));
                Err(resp::ERR_UNSPEC)
            }
        }
    }
}

impl FakeDevice for FakeGpu {
    fn handle(&mut self, queue: u16, request: &[u8]) -> Vec<u8> {
        let error = |t| RespOkNodata.encode_with(CtrlHeader::new(t));
        if queue != 0 {
            self.malformed.push(format!("request on queue {queue}"));
            return error(resp::ERR_UNSPEC);
        }
        let Ok(header) = CtrlHeader::decode(request) else {
            self.malformed
                .push(format!("request of {} bytes", request.len()));
            return error(resp::ERR_UNSPEC);
        };
        self.commands.push(header.type_);
        if let Some((command, answer)) = self.fail {
            if command == header.type_ {
                self.fail = None;
                return error(answer);
            }
        }
        self.serve(header.type_, request).unwrap_or_else(error)
    }

    /// 5.7.5: a reset device has no resources and no scanout.
    fn reset(&mut self) {
        self.resources.clear();
        self.scanouts.iter_mut().for_each(|s| *s = None);
    }
}
