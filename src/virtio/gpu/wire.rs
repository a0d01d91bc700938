//! virtio-gpu 2D wire format (virtio 1.x section 5.7.6, Linux
//! `include/uapi/linux/virtio_gpu.h`): one type per message, little-endian encode and
//! decode, shared by the driver and the host tests' fake device.
//!
//! # Theory of operation
//!
//! Every request and response starts with the 24-byte [`CtrlHeader`] (type, flags,
//! fence_id, ctx_id, ring_idx, 3 bytes padding; 5.7.6.7). Each message type implements
//! [`Message`]: its type code, its exact size on the wire (header included) and how to
//! write and read its body. [`Message::decode`] insists on the exact size and the
//! expected type, so a short, long or mistyped message is a [`WireError`], never a
//! misread. Padding fields are written as zero and not checked on the way in.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

pub use crate::virtio::bytes::{Reader, Writer};

/// Size of [`CtrlHeader`] on the wire.
pub const HEADER_SIZE: usize = 24;
/// `VIRTIO_GPU_MAX_SCANOUTS`: entries in the display-info response.
pub const MAX_SCANOUTS: usize = 16;
/// `VIRTIO_GPU_FLAG_FENCE`.
pub const FLAG_FENCE: u32 = 1;

/// Command types (`enum virtio_gpu_ctrl_type`, 2D subset).
pub mod cmd {
    pub const GET_DISPLAY_INFO: u32 = 0x0100;
    pub const RESOURCE_CREATE_2D: u32 = 0x0101;
    pub const RESOURCE_UNREF: u32 = 0x0102;
    pub const SET_SCANOUT: u32 = 0x0103;
    pub const RESOURCE_FLUSH: u32 = 0x0104;
    pub const TRANSFER_TO_HOST_2D: u32 = 0x0105;
    pub const RESOURCE_ATTACH_BACKING: u32 = 0x0106;
    pub const RESOURCE_DETACH_BACKING: u32 = 0x0107;
}

/// Response types.
pub mod resp {
    pub const OK_NODATA: u32 = 0x1100;
    pub const OK_DISPLAY_INFO: u32 = 0x1101;
    pub const ERR_UNSPEC: u32 = 0x1200;
    pub const ERR_OUT_OF_MEMORY: u32 = 0x1201;
    pub const ERR_INVALID_SCANOUT_ID: u32 = 0x1202;
    pub const ERR_INVALID_RESOURCE_ID: u32 = 0x1203;
    pub const ERR_INVALID_CONTEXT_ID: u32 = 0x1204;
    pub const ERR_INVALID_PARAMETER: u32 = 0x1205;
}

/// `enum virtio_gpu_formats`: the byte order in memory is the name's (B8G8R8A8: bytes
/// B, G, R, A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    B8G8R8A8 = 1,
    B8G8R8X8 = 2,
    A8R8G8B8 = 3,
    X8R8G8B8 = 4,
    R8G8B8A8 = 67,
    X8B8G8R8 = 68,
    A8B8G8R8 = 121,
    R8G8B8X8 = 134,
}

impl Format {
    pub fn from_u32(v: u32) -> Option<Format> {
        use Format::*;
        [
            B8G8R8A8, B8G8R8X8, A8R8G8B8, X8R8G8B8, R8G8B8A8, X8B8G8R8, A8B8G8R8, R8G8B8X8,
        ]
        .into_iter()
        .find(|f| *f as u32 == v)
    }

    /// All of these are 4 bytes a pixel.
    pub const BYTES_PER_PIXEL: u32 = 4;
}

/// Why bytes did not decode as the message expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not the message's exact size.
    Length { expected: usize, got: usize },
    /// Header type is not the message's.
    Type { expected: u32, got: u32 },
    /// ATTACH_BACKING with other than one entry (we only ever send one).
    EntryCount(u32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Length { expected, got } => {
                write!(f, "message of {got} bytes, expected {expected}")
            }
            WireError::Type { expected, got } => {
                write!(f, "message type {got:#x}, expected {expected:#x}")
            }
            WireError::EntryCount(n) => write!(f, "{n} backing entries, expected 1"),
        }
    }
}

/// `struct virtio_gpu_ctrl_hdr` (5.7.6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtrlHeader {
    pub type_: u32,
    pub flags: u32,
    pub fence_id: u64,
    pub ctx_id: u32,
    pub ring_idx: u8,
}

impl CtrlHeader {
    pub fn new(type_: u32) -> Self {
        CtrlHeader {
            type_,
            ..CtrlHeader::default()
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.type_);
        w.u32(self.flags);
        w.u64(self.fence_id);
        w.u32(self.ctx_id);
        w.u8(self.ring_idx);
        w.zeros(3);
    }

    /// The header of any message at least [`HEADER_SIZE`] long.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() < HEADER_SIZE {
            return Err(WireError::Length {
                expected: HEADER_SIZE,
                got: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        let header = CtrlHeader {
            type_: r.u32(),
            flags: r.u32(),
            fence_id: r.u64(),
            ctx_id: r.u32(),
            ring_idx: r.u8(),
        };
        Ok(header)
    }
}

/// `struct virtio_gpu_rect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Rect {
            x,
            y,
            width,
            height,
        }
    }
    fn encode(&self, w: &mut Writer) {
        w.u32(self.x);
        w.u32(self.y);
        w.u32(self.width);
        w.u32(self.height);
    }
    fn decode(r: &mut Reader) -> Self {
        Rect {
            x: r.u32(),
            y: r.u32(),
            width: r.u32(),
            height: r.u32(),
        }
    }
    /// Whether the rectangle lies inside a `width` x `height` area (no overflow).
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        let right = self.x.checked_add(self.width);
        let bottom = self.y.checked_add(self.height);
        matches!((right, bottom), (Some(r), Some(b)) if r <= width && b <= height)
    }
}

/// One message type on the control queue.
pub trait Message: Sized {
    /// Its header type.
    const TYPE: u32;
    /// Its exact size on the wire, header included.
    const SIZE: usize;
    fn encode_body(&self, w: &mut Writer);
    fn decode_body(r: &mut Reader) -> Result<Self, WireError>;

    /// Header (type [`Message::TYPE`], no fence) and body.
    fn encode(&self) -> Vec<u8> {
        self.encode_with(CtrlHeader::new(Self::TYPE))
    }

    fn encode_with(&self, header: CtrlHeader) -> Vec<u8> {
        let mut w = Writer::default();
        header.encode(&mut w);
        self.encode_body(&mut w);
        w.into_bytes()
    }

    /// Exact size, then the header type, then the body.
    fn decode(bytes: &[u8]) -> Result<(CtrlHeader, Self), WireError> {
        if bytes.len() != Self::SIZE {
            return Err(WireError::Length {
                expected: Self::SIZE,
                got: bytes.len(),
            });
        }
        let header = CtrlHeader::decode(bytes)?;
        if header.type_ != Self::TYPE {
            return Err(WireError::Type {
                expected: Self::TYPE,
                got: header.type_,
            });
        }
        let mut r = Reader::new(&bytes[HEADER_SIZE..]);
        Ok((header, Self::decode_body(&mut r)?))
    }
}

/// Implements [`Message`] for a struct of u32 fields (plus optional padding words).
macro_rules! words_message {
    ($name:ident, $type:expr, pad $pad:expr, { $($field:ident),* }) => {
        impl Message for $name {
            const TYPE: u32 = $type;
            const SIZE: usize = HEADER_SIZE + 4 * (0 $(+ { let _ = stringify!($field); 1 })*) + 4 * $pad;
            fn encode_body(&self, w: &mut Writer) {
                $(w.u32(self.$field);)*
                w.zeros(4 * $pad);
            }
            fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
                let value = $name { $($field: r.u32()),* };
                r.skip(4 * $pad);
                Ok(value)
            }
        }
    };
}

/// VIRTIO_GPU_CMD_GET_DISPLAY_INFO: header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetDisplayInfo;
words_message!(GetDisplayInfo, cmd::GET_DISPLAY_INFO, pad 0, {});

/// `struct virtio_gpu_resource_create_2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceCreate2d {
    pub resource_id: u32,
    pub format: u32,
    pub width: u32,
    pub height: u32,
}
words_message!(ResourceCreate2d, cmd::RESOURCE_CREATE_2D, pad 0, { resource_id, format, width, height });

/// `struct virtio_gpu_resource_unref` (resource_id, padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceUnref {
    pub resource_id: u32,
}
words_message!(ResourceUnref, cmd::RESOURCE_UNREF, pad 1, { resource_id });

/// `struct virtio_gpu_resource_detach_backing` (resource_id, padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDetachBacking {
    pub resource_id: u32,
}
words_message!(ResourceDetachBacking, cmd::RESOURCE_DETACH_BACKING, pad 1, { resource_id });

/// `struct virtio_gpu_set_scanout`: resource 0 disables the scanout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetScanout {
    pub rect: Rect,
    pub scanout_id: u32,
    pub resource_id: u32,
}

impl Message for SetScanout {
    const TYPE: u32 = cmd::SET_SCANOUT;
    const SIZE: usize = HEADER_SIZE + 16 + 8;
    fn encode_body(&self, w: &mut Writer) {
        self.rect.encode(w);
        w.u32(self.scanout_id);
        w.u32(self.resource_id);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        Ok(SetScanout {
            rect: Rect::decode(r),
            scanout_id: r.u32(),
            resource_id: r.u32(),
        })
    }
}

/// `struct virtio_gpu_resource_flush` (rect, resource_id, padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceFlush {
    pub rect: Rect,
    pub resource_id: u32,
}

impl Message for ResourceFlush {
    const TYPE: u32 = cmd::RESOURCE_FLUSH;
    const SIZE: usize = HEADER_SIZE + 16 + 8;
    fn encode_body(&self, w: &mut Writer) {
        self.rect.encode(w);
        w.u32(self.resource_id);
        w.zeros(4);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let value = ResourceFlush {
            rect: Rect::decode(r),
            resource_id: r.u32(),
        };
        r.skip(4);
        Ok(value)
    }
}

/// `struct virtio_gpu_transfer_to_host_2d` (rect, offset u64, resource_id, padding):
/// copy `rect` from the backing, starting `offset` bytes in, into the host resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferToHost2d {
    pub rect: Rect,
    pub offset: u64,
    pub resource_id: u32,
}

impl Message for TransferToHost2d {
    const TYPE: u32 = cmd::TRANSFER_TO_HOST_2D;
    const SIZE: usize = HEADER_SIZE + 16 + 8 + 8;
    fn encode_body(&self, w: &mut Writer) {
        self.rect.encode(w);
        w.u64(self.offset);
        w.u32(self.resource_id);
        w.zeros(4);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let value = TransferToHost2d {
            rect: Rect::decode(r),
            offset: r.u64(),
            resource_id: r.u32(),
        };
        r.skip(4);
        Ok(value)
    }
}

/// `struct virtio_gpu_resource_attach_backing` followed by exactly one
/// `struct virtio_gpu_mem_entry` {addr u64, length u32, padding}: one physically
/// contiguous range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceAttachBacking {
    pub resource_id: u32,
    pub addr: u64,
    pub length: u32,
}

impl Message for ResourceAttachBacking {
    const TYPE: u32 = cmd::RESOURCE_ATTACH_BACKING;
    const SIZE: usize = HEADER_SIZE + 8 + 16;
    fn encode_body(&self, w: &mut Writer) {
        w.u32(self.resource_id);
        w.u32(1);
        w.u64(self.addr);
        w.u32(self.length);
        w.zeros(4);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let resource_id = r.u32();
        let entries = r.u32();
        if entries != 1 {
            return Err(WireError::EntryCount(entries));
        }
        let value = ResourceAttachBacking {
            resource_id,
            addr: r.u64(),
            length: r.u32(),
        };
        r.skip(4);
        Ok(value)
    }
}

/// VIRTIO_GPU_RESP_OK_NODATA: header only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespOkNodata;
words_message!(RespOkNodata, resp::OK_NODATA, pad 0, {});

/// One `struct virtio_gpu_display_one`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DisplayOne {
    pub rect: Rect,
    pub enabled: u32,
    pub flags: u32,
}

/// `struct virtio_gpu_resp_display_info`: all 16 scanouts, whatever `num_scanouts` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RespDisplayInfo {
    pub pmodes: [DisplayOne; MAX_SCANOUTS],
}

impl Message for RespDisplayInfo {
    const TYPE: u32 = resp::OK_DISPLAY_INFO;
    const SIZE: usize = HEADER_SIZE + MAX_SCANOUTS * 24;
    fn encode_body(&self, w: &mut Writer) {
        for p in &self.pmodes {
            p.rect.encode(w);
            w.u32(p.enabled);
            w.u32(p.flags);
        }
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let mut value = RespDisplayInfo::default();
        for p in &mut value.pmodes {
            *p = DisplayOne {
                rect: Rect::decode(r),
                enabled: r.u32(),
                flags: r.u32(),
            };
        }
        Ok(value)
    }
}

/// The error response types the device may send, typed (5.7.6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorResponse {
    Unspec,
    OutOfMemory,
    InvalidScanoutId,
    InvalidResourceId,
    InvalidContextId,
    InvalidParameter,
}

impl ErrorResponse {
    pub fn from_type(type_: u32) -> Option<Self> {
        Some(match type_ {
            resp::ERR_UNSPEC => ErrorResponse::Unspec,
            resp::ERR_OUT_OF_MEMORY => ErrorResponse::OutOfMemory,
            resp::ERR_INVALID_SCANOUT_ID => ErrorResponse::InvalidScanoutId,
            resp::ERR_INVALID_RESOURCE_ID => ErrorResponse::InvalidResourceId,
            resp::ERR_INVALID_CONTEXT_ID => ErrorResponse::InvalidContextId,
            resp::ERR_INVALID_PARAMETER => ErrorResponse::InvalidParameter,
            _ => return None,
        })
    }

    pub fn type_(self) -> u32 {
        match self {
            ErrorResponse::Unspec => resp::ERR_UNSPEC,
            ErrorResponse::OutOfMemory => resp::ERR_OUT_OF_MEMORY,
            ErrorResponse::InvalidScanoutId => resp::ERR_INVALID_SCANOUT_ID,
            ErrorResponse::InvalidResourceId => resp::ERR_INVALID_RESOURCE_ID,
            ErrorResponse::InvalidContextId => resp::ERR_INVALID_CONTEXT_ID,
            ErrorResponse::InvalidParameter => resp::ERR_INVALID_PARAMETER,
        }
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorResponse::Unspec => "ERR_UNSPEC",
            ErrorResponse::OutOfMemory => "ERR_OUT_OF_MEMORY",
            ErrorResponse::InvalidScanoutId => "ERR_INVALID_SCANOUT_ID",
            ErrorResponse::InvalidResourceId => "ERR_INVALID_RESOURCE_ID",
            ErrorResponse::InvalidContextId => "ERR_INVALID_CONTEXT_ID",
            ErrorResponse::InvalidParameter => "ERR_INVALID_PARAMETER",
        };
        write!(f, "{name} ({:#x})", self.type_())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn sizes_match_the_c_structs() {
        assert_eq!(GetDisplayInfo::SIZE, 24);
        assert_eq!(ResourceCreate2d::SIZE, 40);
        assert_eq!(ResourceUnref::SIZE, 32);
        assert_eq!(ResourceDetachBacking::SIZE, 32);
        assert_eq!(SetScanout::SIZE, 48);
        assert_eq!(ResourceFlush::SIZE, 48);
        assert_eq!(TransferToHost2d::SIZE, 56);
        assert_eq!(ResourceAttachBacking::SIZE, 48);
        assert_eq!(RespDisplayInfo::SIZE, 408);
        assert_eq!(RespOkNodata::SIZE, 24);
    }

    #[test]
    fn encoding_is_little_endian_in_field_order() {
        let bytes = TransferToHost2d {
            rect: Rect::new(1, 2, 3, 4),
            offset: 0x1122_3344_5566_7788,
            resource_id: 0xaabbccdd,
        }
        .encode();
        let mut expected = vec![0x05, 0x01, 0, 0];
        expected.resize(24, 0);
        for v in [1u32, 2, 3, 4] {
            expected.extend_from_slice(&v.to_le_bytes());
        }
        expected.extend_from_slice(&[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        expected.extend_from_slice(&[0xdd, 0xcc, 0xbb, 0xaa, 0, 0, 0, 0]);
        assert_eq!(bytes, expected);

        let header = CtrlHeader {
            type_: 0x1100,
            flags: FLAG_FENCE,
            fence_id: 7,
            ctx_id: 9,
            ring_idx: 3,
        };
        let bytes = RespOkNodata.encode_with(header);
        assert_eq!(&bytes[..4], &[0, 0x11, 0, 0]);
        assert_eq!(bytes[20], 3);
        assert_eq!(CtrlHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn decode_round_trips_and_refuses_wrong_size_type_and_entry_count() {
        let m = ResourceAttachBacking {
            resource_id: 5,
            addr: 0x5000_0000,
            length: 4096,
        };
        let bytes = m.encode();
        assert_eq!(ResourceAttachBacking::decode(&bytes).unwrap().1, m);
        assert_eq!(
            ResourceAttachBacking::decode(&bytes[..40]),
            Err(WireError::Length {
                expected: 48,
                got: 40
            })
        );
        assert_eq!(
            ResourceDetachBacking::decode(&ResourceUnref { resource_id: 5 }.encode()),
            Err(WireError::Type {
                expected: cmd::RESOURCE_DETACH_BACKING,
                got: cmd::RESOURCE_UNREF
            })
        );
        let mut two = bytes.clone();
        two[28] = 2;
        assert_eq!(
            ResourceAttachBacking::decode(&two),
            Err(WireError::EntryCount(2))
        );

        let mut info = RespDisplayInfo::default();
        info.pmodes[0] = DisplayOne {
            rect: Rect::new(0, 0, 1280, 800),
            enabled: 1,
            flags: 0,
        };
        assert_eq!(RespDisplayInfo::decode(&info.encode()).unwrap().1, info);
    }

    #[test]
    fn rect_fit_checks_overflow() {
        assert!(Rect::new(0, 0, 1280, 800).fits_in(1280, 800));
        assert!(!Rect::new(1, 0, 1280, 800).fits_in(1280, 800));
        assert!(!Rect::new(u32::MAX, 0, 2, 1).fits_in(1280, 800));
    }

    #[test]
    fn error_types_are_typed_and_others_are_not() {
        for t in 0x1200..=0x1205 {
            assert_eq!(ErrorResponse::from_type(t).unwrap().type_(), t);
        }
        assert_eq!(ErrorResponse::from_type(0x1206), None);
        assert_eq!(ErrorResponse::from_type(resp::OK_NODATA), None);
    }
}
