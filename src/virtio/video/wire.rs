//! virtio-video wire format, v3 draft (the one rust-vmm's `vhost-device-video` and crosvm
//! speak; Linux's out-of-tree `include/uapi/linux/virtio_video.h`): one type per message,
//! little-endian encode and decode, shared by the firmware's driver and our vhost-user
//! decoder device under `qemu/` (as Linux drivers and device models share a uapi header).
//!
//! # Theory of operation
//!
//! Every request and response starts with the 8-byte [`Header`] `{type, stream_id}`.
//! Fixed-size messages implement [`Message`]: type code, exact size on the wire (header
//! included), body encode and decode. [`Message::decode`] insists on the exact size and the
//! expected type, so a short, long or mistyped message is a [`WireError`], never a misread.
//! Padding is written as zero and ignored on the way in.
//!
//! Two messages have a variable tail: RESOURCE_CREATE is followed by its memory entries
//! (`num_entries[plane]` of them per plane) and the QUERY_CAPABILITY response by format
//! descriptors, each with frames, each with frame rates. Their decoders bound every count
//! by the bytes actually present before allocating, so a hostile count cannot make either
//! side allocate more than the message it holds.
//!
//! The device side parses a whole request with [`Request::parse`] (the readable part of
//! a chain, concatenated); the driver side checks a response with [`Response::parse`],
//! which turns the spec's error codes (0x300-0x305) into [`ErrorCode`] and any other
//! unexpected type into [`WireError::Type`], because rust-vmm answers errors as
//! 0x206-0x20B and a driver must not take those for success.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::fmt;

pub use crate::virtio::bytes::{Reader, Writer};

/// Size of [`Header`] on the wire.
pub const HEADER_SIZE: usize = 8;
/// `VIRTIO_VIDEO_MAX_PLANES`.
pub const MAX_PLANES: usize = 8;
/// Size of the device configuration (`struct virtio_video_config`).
pub const CONFIG_SIZE: usize = 44;
/// Size of one event (`struct virtio_video_event`).
pub const EVENT_SIZE: usize = 8;
/// Size of one memory entry (`struct virtio_video_mem_entry`).
pub const MEM_ENTRY_SIZE: usize = 16;
/// Size of `struct virtio_video_params`.
pub const PARAMS_SIZE: usize = 120;

/// Feature bits (v3 5.19.3).
pub mod feature {
    /// Guest pages can back resources.
    pub const RESOURCE_GUEST_PAGES: u32 = 0;
    /// A plane may be several memory entries (scatter-gather). Not offered by ours.
    pub const RESOURCE_NON_CONTIG: u32 = 1;
    /// Objects exported by another virtio device can back resources.
    pub const RESOURCE_VIRTIO_OBJECT: u32 = 2;
}

/// Command types (`enum virtio_video_cmd_type`).
pub mod cmd {
    pub const QUERY_CAPABILITY: u32 = 0x100;
    pub const STREAM_CREATE: u32 = 0x101;
    pub const STREAM_DESTROY: u32 = 0x102;
    pub const STREAM_DRAIN: u32 = 0x103;
    pub const RESOURCE_CREATE: u32 = 0x104;
    pub const RESOURCE_QUEUE: u32 = 0x105;
    pub const RESOURCE_DESTROY_ALL: u32 = 0x106;
    pub const QUEUE_CLEAR: u32 = 0x107;
    /// Legacy GET/SET_PARAMS, replaced by the `_EXT` pair.
    pub const GET_PARAMS: u32 = 0x108;
    pub const SET_PARAMS: u32 = 0x109;
    pub const QUERY_CONTROL: u32 = 0x10A;
    pub const GET_CONTROL: u32 = 0x10B;
    pub const SET_CONTROL: u32 = 0x10C;
    pub const GET_PARAMS_EXT: u32 = 0x10D;
    pub const SET_PARAMS_EXT: u32 = 0x10E;
}

/// Response types (`enum virtio_video_resp_type`, OK half).
pub mod resp {
    pub const OK_NODATA: u32 = 0x200;
    pub const OK_QUERY_CAPABILITY: u32 = 0x201;
    pub const OK_RESOURCE_QUEUE: u32 = 0x202;
    pub const OK_GET_PARAMS: u32 = 0x203;
    pub const OK_QUERY_CONTROL: u32 = 0x204;
    pub const OK_GET_CONTROL: u32 = 0x205;
}

/// Event types (`enum virtio_video_event_type`).
pub mod event {
    pub const ERROR: u32 = 0x100;
    pub const DECODER_RESOLUTION_CHANGED: u32 = 0x200;
}

/// Buffer flags in a RESOURCE_QUEUE response.
pub mod buffer_flag {
    pub const ERR: u32 = 1 << 0;
    pub const EOS: u32 = 1 << 1;
    pub const IFRAME: u32 = 1 << 2;
    pub const PFRAME: u32 = 1 << 3;
    pub const BFRAME: u32 = 1 << 4;
}

/// Planes layouts (`VIRTIO_VIDEO_PLANES_LAYOUT_*`).
pub mod planes_layout {
    /// All planes in one buffer, at `plane_offsets`.
    pub const SINGLE_BUFFER: u32 = 1 << 0;
    /// One buffer per plane.
    pub const PER_PLANE: u32 = 1 << 1;
}

/// The spec's error responses (0x300-0x305).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidOperation = 0x300,
    OutOfMemory = 0x301,
    InvalidStreamId = 0x302,
    InvalidResourceId = 0x303,
    InvalidParameter = 0x304,
    UnsupportedControl = 0x305,
}

impl ErrorCode {
    pub fn from_u32(v: u32) -> Option<ErrorCode> {
        use ErrorCode::*;
        [
            InvalidOperation,
            OutOfMemory,
            InvalidStreamId,
            InvalidResourceId,
            InvalidParameter,
            UnsupportedControl,
        ]
        .into_iter()
        .find(|e| *e as u32 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidOperation => "invalid operation",
            ErrorCode::OutOfMemory => "out of memory",
            ErrorCode::InvalidStreamId => "invalid stream id",
            ErrorCode::InvalidResourceId => "invalid resource id",
            ErrorCode::InvalidParameter => "invalid parameter",
            ErrorCode::UnsupportedControl => "unsupported control",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.name(), *self as u32)
    }
}

/// `enum virtio_video_queue_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueType {
    /// Bitstream in.
    Input = 0x100,
    /// Frames out.
    Output = 0x101,
}

impl QueueType {
    pub fn from_u32(v: u32) -> Option<QueueType> {
        match v {
            0x100 => Some(QueueType::Input),
            0x101 => Some(QueueType::Output),
            _ => None,
        }
    }
}

/// `enum virtio_video_mem_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemType {
    GuestPages = 0,
    VirtioObject = 1,
}

impl MemType {
    pub fn from_u32(v: u32) -> Option<MemType> {
        match v {
            0 => Some(MemType::GuestPages),
            1 => Some(MemType::VirtioObject),
            _ => None,
        }
    }
}

/// `enum virtio_video_format`: raw formats from 1, coded formats from 0x1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// Despite the name, bytes B, G, R, A in memory (what virtio-gpu calls B8G8R8A8);
    /// the v3 draft follows DRM's little-endian naming.
    Argb8888 = 1,
    Bgra8888 = 2,
    Nv12 = 3,
    Yuv420 = 4,
    Yvu420 = 5,
    Mpeg2 = 0x1000,
    Mpeg4 = 0x1001,
    H264 = 0x1002,
    Hevc = 0x1003,
    Vp8 = 0x1004,
    Vp9 = 0x1005,
}

impl Format {
    pub fn from_u32(v: u32) -> Option<Format> {
        use Format::*;
        [
            Argb8888, Bgra8888, Nv12, Yuv420, Yvu420, Mpeg2, Mpeg4, H264, Hevc, Vp8, Vp9,
        ]
        .into_iter()
        .find(|f| *f as u32 == v)
    }

    pub fn is_coded(self) -> bool {
        self as u32 >= 0x1000
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Argb8888 => "ARGB8888",
            Format::Bgra8888 => "BGRA8888",
            Format::Nv12 => "NV12",
            Format::Yuv420 => "YUV420",
            Format::Yvu420 => "YVU420",
            Format::Mpeg2 => "MPEG2",
            Format::Mpeg4 => "MPEG4",
            Format::H264 => "H264",
            Format::Hevc => "HEVC",
            Format::Vp8 => "VP8",
            Format::Vp9 => "VP9",
        }
    }
}

/// Why bytes did not decode as the message expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not the message's exact size (or shorter than its fixed part).
    Length { expected: usize, got: usize },
    /// Header type is not the message's.
    Type { expected: u32, got: u32 },
    /// A command type this format does not know.
    UnknownCommand(u32),
    /// A field holds a value outside its enumeration.
    Field { field: &'static str, value: u32 },
    /// A count larger than its array (planes, data sizes) or than the bytes present.
    Count { field: &'static str, value: u32 },
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
            WireError::UnknownCommand(t) => write!(f, "unknown command type {t:#x}"),
            WireError::Field { field, value } => write!(f, "{field} = {value:#x} is not valid"),
            WireError::Count { field, value } => write!(f, "{field} = {value} is out of range"),
        }
    }
}

impl core::error::Error for WireError {}

fn check_len(expected: usize, got: usize) -> Result<(), WireError> {
    if expected == got {
        Ok(())
    } else {
        Err(WireError::Length { expected, got })
    }
}

/// `struct virtio_video_cmd_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub type_: u32,
    pub stream_id: u32,
}

impl Header {
    pub fn new(type_: u32, stream_id: u32) -> Self {
        Header { type_, stream_id }
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.type_);
        w.u32(self.stream_id);
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
        Ok(Header {
            type_: r.u32(),
            stream_id: r.u32(),
        })
    }
}

/// One fixed-size message type.
pub trait Message: Sized {
    /// Its header type.
    const TYPE: u32;
    /// Its exact size on the wire, header included.
    const SIZE: usize;
    fn encode_body(&self, w: &mut Writer);
    fn decode_body(r: &mut Reader) -> Result<Self, WireError>;

    /// Header (type [`Message::TYPE`]) and body.
    fn encode(&self, stream_id: u32) -> Vec<u8> {
        let mut w = Writer::default();
        Header::new(Self::TYPE, stream_id).encode(&mut w);
        self.encode_body(&mut w);
        w.into_bytes()
    }

    /// Exact size, then the header type, then the body. Returns the stream id.
    fn decode(bytes: &[u8]) -> Result<(u32, Self), WireError> {
        check_len(Self::SIZE, bytes.len())?;
        let header = Header::decode(bytes)?;
        if header.type_ != Self::TYPE {
            return Err(WireError::Type {
                expected: Self::TYPE,
                got: header.type_,
            });
        }
        let mut r = Reader::new(&bytes[HEADER_SIZE..]);
        Ok((header.stream_id, Self::decode_body(&mut r)?))
    }
}

fn queue_type(r: &mut Reader, field: &'static str) -> Result<QueueType, WireError> {
    let value = r.u32();
    QueueType::from_u32(value).ok_or(WireError::Field { field, value })
}

/// A message that is a header plus `{queue_type u32, padding u32}`.
macro_rules! queue_message {
    ($(#[$doc:meta])* $name:ident, $type:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            pub queue_type: QueueType,
        }

        impl Message for $name {
            const TYPE: u32 = $type;
            const SIZE: usize = HEADER_SIZE + 8;
            fn encode_body(&self, w: &mut Writer) {
                w.u32(self.queue_type as u32);
                w.zeros(4);
            }
            fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
                let queue_type = queue_type(r, "queue_type")?;
                Ok($name { queue_type })
            }
        }
    };
}

/// A message that is the header alone.
macro_rules! header_message {
    ($(#[$doc:meta])* $name:ident, $type:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;

        impl Message for $name {
            const TYPE: u32 = $type;
            const SIZE: usize = HEADER_SIZE;
            fn encode_body(&self, _w: &mut Writer) {}
            fn decode_body(_r: &mut Reader) -> Result<Self, WireError> {
                Ok($name)
            }
        }
    };
}

queue_message!(
    /// `struct virtio_video_query_capability`.
    QueryCapability,
    cmd::QUERY_CAPABILITY
);
queue_message!(
    /// `struct virtio_video_resource_destroy_all`: every resource of one queue.
    ResourceDestroyAll,
    cmd::RESOURCE_DESTROY_ALL
);
queue_message!(
    /// `struct virtio_video_queue_clear`: give back every queued buffer, flagged ERR.
    QueueClear,
    cmd::QUEUE_CLEAR
);
queue_message!(
    /// `struct virtio_video_get_params` (the `_EXT` command).
    GetParams,
    cmd::GET_PARAMS_EXT
);
header_message!(
    /// `struct virtio_video_stream_destroy`.
    StreamDestroy,
    cmd::STREAM_DESTROY
);
header_message!(
    /// `struct virtio_video_stream_drain`: decode what is queued, end with an EOS buffer.
    StreamDrain,
    cmd::STREAM_DRAIN
);
header_message!(
    /// `VIRTIO_VIDEO_RESP_OK_NODATA`.
    NoData,
    resp::OK_NODATA
);

/// `struct virtio_video_stream_create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCreate {
    pub in_mem_type: MemType,
    pub out_mem_type: MemType,
    pub coded_format: Format,
    /// A name for debugging, NUL-padded.
    pub tag: [u8; 64],
}

impl StreamCreate {
    /// A stream with `tag` (cut at 63 bytes so a NUL always ends it).
    pub fn new(coded_format: Format, tag: &str) -> Self {
        let mut bytes = [0u8; 64];
        let n = tag.len().min(63);
        bytes[..n].copy_from_slice(&tag.as_bytes()[..n]);
        StreamCreate {
            in_mem_type: MemType::GuestPages,
            out_mem_type: MemType::GuestPages,
            coded_format,
            tag: bytes,
        }
    }
}

impl Message for StreamCreate {
    const TYPE: u32 = cmd::STREAM_CREATE;
    const SIZE: usize = HEADER_SIZE + 16 + 64;
    fn encode_body(&self, w: &mut Writer) {
        w.u32(self.in_mem_type as u32);
        w.u32(self.out_mem_type as u32);
        w.u32(self.coded_format as u32);
        w.zeros(4);
        w.bytes(&self.tag);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let mem = |r: &mut Reader, field| {
            let value = r.u32();
            MemType::from_u32(value).ok_or(WireError::Field { field, value })
        };
        let in_mem_type = mem(r, "in_mem_type")?;
        let out_mem_type = mem(r, "out_mem_type")?;
        let value = r.u32();
        let coded_format = Format::from_u32(value).ok_or(WireError::Field {
            field: "coded_format",
            value,
        })?;
        r.skip(4);
        Ok(StreamCreate {
            in_mem_type,
            out_mem_type,
            coded_format,
            tag: r.array(),
        })
    }
}

/// `struct virtio_video_mem_entry`: one guest-physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemEntry {
    pub addr: u64,
    pub length: u32,
}

impl MemEntry {
    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.addr);
        w.u32(self.length);
        w.zeros(4);
    }
    fn decode(r: &mut Reader) -> Self {
        let entry = MemEntry {
            addr: r.u64(),
            length: r.u32(),
        };
        r.skip(4);
        entry
    }
}

/// `struct virtio_video_resource_create` (88 bytes), sent with its memory entries after
/// it: `num_entries[p]` entries for each plane `p < num_planes` (per-plane layout), or
/// `num_entries[0]` for the whole buffer (single-buffer layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceCreate {
    pub queue_type: QueueType,
    pub resource_id: u32,
    pub planes_layout: u32,
    pub num_planes: u32,
    pub plane_offsets: [u32; MAX_PLANES],
    pub num_entries: [u32; MAX_PLANES],
}

impl ResourceCreate {
    /// Entries that follow the fixed part: a sum over the planes the layout uses.
    pub fn entry_count(&self) -> u64 {
        let planes = if self.planes_layout == planes_layout::PER_PLANE {
            self.num_planes as usize
        } else {
            1
        };
        self.num_entries[..planes.min(MAX_PLANES)]
            .iter()
            .map(|&n| u64::from(n))
            .sum()
    }

    /// Fixed part then entries, as one byte string (the device's view of the readable
    /// descriptors; the driver sends the two parts as separate descriptors).
    pub fn encode_with_entries(&self, stream_id: u32, entries: &[MemEntry]) -> Vec<u8> {
        let mut bytes = self.encode(stream_id);
        bytes.extend_from_slice(&encode_entries(entries));
        bytes
    }

    /// Fixed part and entries from one byte string, the entry count matching exactly.
    pub fn decode_with_entries(bytes: &[u8]) -> Result<(u32, Self, Vec<MemEntry>), WireError> {
        if bytes.len() < Self::SIZE {
            return Err(WireError::Length {
                expected: Self::SIZE,
                got: bytes.len(),
            });
        }
        let (stream_id, create) = Self::decode(&bytes[..Self::SIZE])?;
        let tail = &bytes[Self::SIZE..];
        let count = create.entry_count();
        let expected = count.saturating_mul(MEM_ENTRY_SIZE as u64);
        if expected != tail.len() as u64 {
            return Err(WireError::Length {
                expected: Self::SIZE
                    .saturating_add(usize::try_from(expected).unwrap_or(usize::MAX)),
                got: bytes.len(),
            });
        }
        let mut r = Reader::new(tail);
        let entries = (0..count).map(|_| MemEntry::decode(&mut r)).collect();
        Ok((stream_id, create, entries))
    }
}

/// Memory entries as the bytes of their own descriptor.
pub fn encode_entries(entries: &[MemEntry]) -> Vec<u8> {
    let mut w = Writer::default();
    for entry in entries {
        entry.encode(&mut w);
    }
    w.into_bytes()
}

fn u32_array<const N: usize>(r: &mut Reader) -> [u32; N] {
    let mut out = [0u32; N];
    for v in &mut out {
        *v = r.u32();
    }
    out
}

impl Message for ResourceCreate {
    const TYPE: u32 = cmd::RESOURCE_CREATE;
    const SIZE: usize = HEADER_SIZE + 16 + 4 * MAX_PLANES * 2;
    fn encode_body(&self, w: &mut Writer) {
        w.u32(self.queue_type as u32);
        w.u32(self.resource_id);
        w.u32(self.planes_layout);
        w.u32(self.num_planes);
        self.plane_offsets.iter().for_each(|&v| w.u32(v));
        self.num_entries.iter().for_each(|&v| w.u32(v));
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let queue_type = queue_type(r, "queue_type")?;
        let resource_id = r.u32();
        let planes_layout = r.u32();
        if planes_layout != planes_layout::SINGLE_BUFFER
            && planes_layout != planes_layout::PER_PLANE
        {
            return Err(WireError::Field {
                field: "planes_layout",
                value: planes_layout,
            });
        }
        let num_planes = r.u32();
        if num_planes == 0 || num_planes as usize > MAX_PLANES {
            return Err(WireError::Count {
                field: "num_planes",
                value: num_planes,
            });
        }
        Ok(ResourceCreate {
            queue_type,
            resource_id,
            planes_layout,
            num_planes,
            plane_offsets: u32_array(r),
            num_entries: u32_array(r),
        })
    }
}

/// `struct virtio_video_resource_queue`: hand a resource to the device (bitstream with
/// `data_sizes[0]` bytes, or an empty frame buffer to fill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceQueue {
    pub queue_type: QueueType,
    pub resource_id: u32,
    /// Nanoseconds; the device copies it to the frame decoded from this bitstream.
    pub timestamp: u64,
    pub num_data_sizes: u32,
    pub data_sizes: [u32; MAX_PLANES],
}

impl Message for ResourceQueue {
    const TYPE: u32 = cmd::RESOURCE_QUEUE;
    const SIZE: usize = HEADER_SIZE + 16 + 4 + 4 * MAX_PLANES + 4;
    fn encode_body(&self, w: &mut Writer) {
        w.u32(self.queue_type as u32);
        w.u32(self.resource_id);
        w.u64(self.timestamp);
        w.u32(self.num_data_sizes);
        self.data_sizes.iter().for_each(|&v| w.u32(v));
        w.zeros(4);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        let queue_type = queue_type(r, "queue_type")?;
        let resource_id = r.u32();
        let timestamp = r.u64();
        let num_data_sizes = r.u32();
        if num_data_sizes as usize > MAX_PLANES {
            return Err(WireError::Count {
                field: "num_data_sizes",
                value: num_data_sizes,
            });
        }
        Ok(ResourceQueue {
            queue_type,
            resource_id,
            timestamp,
            num_data_sizes,
            data_sizes: u32_array(r),
        })
    }
}

/// `struct virtio_video_resource_queue_resp`: sent when the device is done with the
/// buffer (for a frame: decoded into it, or flagged ERR by a clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceQueueResp {
    pub timestamp: u64,
    pub flags: u32,
    /// Bytes written (encoder only; zero from a decoder).
    pub size: u32,
}

impl Message for ResourceQueueResp {
    const TYPE: u32 = resp::OK_RESOURCE_QUEUE;
    const SIZE: usize = HEADER_SIZE + 16;
    fn encode_body(&self, w: &mut Writer) {
        w.u64(self.timestamp);
        w.u32(self.flags);
        w.u32(self.size);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        Ok(ResourceQueueResp {
            timestamp: r.u64(),
            flags: r.u32(),
            size: r.u32(),
        })
    }
}

/// `struct virtio_video_crop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crop {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

/// `struct virtio_video_plane_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaneFormat {
    pub plane_size: u32,
    pub stride: u32,
}

/// `struct virtio_video_params` (120 bytes): one queue's format and geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub queue_type: QueueType,
    /// A [`Format`] code; kept raw so a device can answer "invalid parameter" to an
    /// unknown one rather than the wire refusing it.
    pub format: u32,
    pub frame_width: u32,
    pub frame_height: u32,
    pub min_buffers: u32,
    pub max_buffers: u32,
    pub crop: Crop,
    pub frame_rate: u32,
    pub num_planes: u32,
    pub plane_formats: [PlaneFormat; MAX_PLANES],
    pub resource_type: u32,
}

impl Params {
    /// Parameters with only the queue and format set.
    pub fn new(queue_type: QueueType, format: Format) -> Self {
        Params {
            queue_type,
            format: format as u32,
            frame_width: 0,
            frame_height: 0,
            min_buffers: 0,
            max_buffers: 0,
            crop: Crop::default(),
            frame_rate: 0,
            num_planes: 0,
            plane_formats: [PlaneFormat::default(); MAX_PLANES],
            resource_type: MemType::GuestPages as u32,
        }
    }

    /// Bytes one buffer of this queue needs: the planes' sizes summed (single-buffer
    /// layout), or `None` when a count or a sum does not fit.
    pub fn buffer_size(&self) -> Option<u64> {
        let planes = usize::try_from(self.num_planes).ok()?;
        if planes > MAX_PLANES {
            return None;
        }
        Some(
            self.plane_formats[..planes]
                .iter()
                .map(|p| u64::from(p.plane_size))
                .sum(),
        )
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.queue_type as u32);
        w.u32(self.format);
        w.u32(self.frame_width);
        w.u32(self.frame_height);
        w.u32(self.min_buffers);
        w.u32(self.max_buffers);
        w.u32(self.crop.left);
        w.u32(self.crop.top);
        w.u32(self.crop.width);
        w.u32(self.crop.height);
        w.u32(self.frame_rate);
        w.u32(self.num_planes);
        for plane in &self.plane_formats {
            w.u32(plane.plane_size);
            w.u32(plane.stride);
        }
        w.u32(self.resource_type);
        w.zeros(4);
    }

    pub fn decode(r: &mut Reader) -> Result<Self, WireError> {
        let queue_type = queue_type(r, "params.queue_type")?;
        let format = r.u32();
        let frame_width = r.u32();
        let frame_height = r.u32();
        let min_buffers = r.u32();
        let max_buffers = r.u32();
        let crop = Crop {
            left: r.u32(),
            top: r.u32(),
            width: r.u32(),
            height: r.u32(),
        };
        let frame_rate = r.u32();
        let num_planes = r.u32();
        if num_planes as usize > MAX_PLANES {
            return Err(WireError::Count {
                field: "params.num_planes",
                value: num_planes,
            });
        }
        let mut plane_formats = [PlaneFormat::default(); MAX_PLANES];
        for plane in &mut plane_formats {
            plane.plane_size = r.u32();
            plane.stride = r.u32();
        }
        let resource_type = r.u32();
        r.skip(4);
        Ok(Params {
            queue_type,
            format,
            frame_width,
            frame_height,
            min_buffers,
            max_buffers,
            crop,
            frame_rate,
            num_planes,
            plane_formats,
            resource_type,
        })
    }
}

/// `struct virtio_video_set_params` (the `_EXT` command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetParams {
    pub params: Params,
}

impl Message for SetParams {
    const TYPE: u32 = cmd::SET_PARAMS_EXT;
    const SIZE: usize = HEADER_SIZE + PARAMS_SIZE;
    fn encode_body(&self, w: &mut Writer) {
        self.params.encode(w);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        Ok(SetParams {
            params: Params::decode(r)?,
        })
    }
}

/// `struct virtio_video_get_params_resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetParamsResp {
    pub params: Params,
}

impl Message for GetParamsResp {
    const TYPE: u32 = resp::OK_GET_PARAMS;
    const SIZE: usize = HEADER_SIZE + PARAMS_SIZE;
    fn encode_body(&self, w: &mut Writer) {
        self.params.encode(w);
    }
    fn decode_body(r: &mut Reader) -> Result<Self, WireError> {
        Ok(GetParamsResp {
            params: Params::decode(r)?,
        })
    }
}

/// `struct virtio_video_format_range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatRange {
    pub min: u32,
    pub max: u32,
    pub step: u32,
}

impl FormatRange {
    pub const SIZE: usize = 16;

    pub fn contains(&self, v: u32) -> bool {
        v >= self.min
            && v <= self.max
            && (self.step == 0 || (v - self.min).is_multiple_of(self.step))
    }
    fn encode(&self, w: &mut Writer) {
        w.u32(self.min);
        w.u32(self.max);
        w.u32(self.step);
        w.zeros(4);
    }
    fn decode(r: &mut Reader) -> Self {
        let range = FormatRange {
            min: r.u32(),
            max: r.u32(),
            step: r.u32(),
        };
        r.skip(4);
        range
    }
}

/// `struct virtio_video_format_frame` and its frame rates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormatFrame {
    pub width: FormatRange,
    pub height: FormatRange,
    pub frame_rates: Vec<FormatRange>,
}

impl FormatFrame {
    const FIXED: usize = 2 * FormatRange::SIZE + 8;
}

/// `struct virtio_video_format_desc` and its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDesc {
    /// Bit `i`: compatible with format descriptor `i` of the other queue.
    pub mask: u64,
    /// A [`Format`] code, raw (a device may list formats we do not know).
    pub format: u32,
    pub planes_layout: u32,
    pub plane_align: u32,
    pub frames: Vec<FormatFrame>,
}

impl FormatDesc {
    const FIXED: usize = 24;
}

/// `struct virtio_video_query_capability_resp` and its descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryCapabilityResp {
    pub descs: Vec<FormatDesc>,
}

/// Reads a count and checks that `count * min_size` bytes can still follow, so a hostile
/// count never sizes an allocation.
fn bounded_count(r: &mut Reader, field: &'static str, min_size: usize) -> Result<usize, WireError> {
    let value = r.u32();
    let count = value as usize;
    if count.saturating_mul(min_size) > r.remaining() {
        return Err(WireError::Count { field, value });
    }
    Ok(count)
}

impl QueryCapabilityResp {
    pub fn encode(&self, stream_id: u32) -> Vec<u8> {
        let mut w = Writer::default();
        Header::new(resp::OK_QUERY_CAPABILITY, stream_id).encode(&mut w);
        w.u32(self.descs.len() as u32);
        w.zeros(4);
        for desc in &self.descs {
            w.u64(desc.mask);
            w.u32(desc.format);
            w.u32(desc.planes_layout);
            w.u32(desc.plane_align);
            w.u32(desc.frames.len() as u32);
            for frame in &desc.frames {
                frame.width.encode(&mut w);
                frame.height.encode(&mut w);
                w.u32(frame.frame_rates.len() as u32);
                w.zeros(4);
                for rate in &frame.frame_rates {
                    rate.encode(&mut w);
                }
            }
        }
        w.into_bytes()
    }

    /// The whole response, which must end exactly where its last descriptor does.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() < HEADER_SIZE + 8 {
            return Err(WireError::Length {
                expected: HEADER_SIZE + 8,
                got: bytes.len(),
            });
        }
        let header = Header::decode(bytes)?;
        if header.type_ != resp::OK_QUERY_CAPABILITY {
            return Err(WireError::Type {
                expected: resp::OK_QUERY_CAPABILITY,
                got: header.type_,
            });
        }
        let mut r = Reader::new(&bytes[HEADER_SIZE..]);
        let num_descs = r.u32();
        r.skip(4);
        if (num_descs as usize).saturating_mul(FormatDesc::FIXED) > r.remaining() {
            return Err(WireError::Count {
                field: "num_descs",
                value: num_descs,
            });
        }
        let mut descs = Vec::with_capacity(num_descs as usize);
        for _ in 0..num_descs {
            if r.remaining() < FormatDesc::FIXED {
                return Err(WireError::Length {
                    expected: bytes.len() + FormatDesc::FIXED - r.remaining(),
                    got: bytes.len(),
                });
            }
            let mask = r.u64();
            let format = r.u32();
            let planes_layout = r.u32();
            let plane_align = r.u32();
            let num_frames = bounded_count(&mut r, "num_frames", FormatFrame::FIXED)?;
            let mut frames = Vec::with_capacity(num_frames);
            for _ in 0..num_frames {
                if r.remaining() < FormatFrame::FIXED {
                    return Err(WireError::Count {
                        field: "num_frames",
                        value: num_frames as u32,
                    });
                }
                let width = FormatRange::decode(&mut r);
                let height = FormatRange::decode(&mut r);
                let num_rates = bounded_count(&mut r, "num_rates", FormatRange::SIZE)?;
                r.skip(4);
                if num_rates.saturating_mul(FormatRange::SIZE) > r.remaining() {
                    return Err(WireError::Count {
                        field: "num_rates",
                        value: num_rates as u32,
                    });
                }
                let frame_rates = (0..num_rates)
                    .map(|_| FormatRange::decode(&mut r))
                    .collect();
                frames.push(FormatFrame {
                    width,
                    height,
                    frame_rates,
                });
            }
            descs.push(FormatDesc {
                mask,
                format,
                planes_layout,
                plane_align,
                frames,
            });
        }
        if r.remaining() != 0 {
            return Err(WireError::Length {
                expected: bytes.len() - r.remaining(),
                got: bytes.len(),
            });
        }
        Ok(QueryCapabilityResp { descs })
    }
}

/// `struct virtio_video_event`, written by the device into an event-queue buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub event_type: u32,
    pub stream_id: u32,
}

impl Event {
    pub fn encode(&self) -> [u8; EVENT_SIZE] {
        let mut out = [0u8; EVENT_SIZE];
        out[..4].copy_from_slice(&self.event_type.to_le_bytes());
        out[4..].copy_from_slice(&self.stream_id.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_len(EVENT_SIZE, bytes.len())?;
        let mut r = Reader::new(bytes);
        Ok(Event {
            event_type: r.u32(),
            stream_id: r.u32(),
        })
    }
}

/// `struct virtio_video_config` (44 bytes of device configuration space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub version: u32,
    /// Largest QUERY_CAPABILITY response: the driver's response buffer size.
    pub max_caps_length: u32,
    /// Largest other response.
    pub max_resp_length: u32,
    pub device_name: [u8; 32],
}

impl Config {
    pub fn encode(&self) -> [u8; CONFIG_SIZE] {
        let mut w = Writer::default();
        w.u32(self.version);
        w.u32(self.max_caps_length);
        w.u32(self.max_resp_length);
        w.bytes(&self.device_name);
        let mut out = [0u8; CONFIG_SIZE];
        out.copy_from_slice(&w.into_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_len(CONFIG_SIZE, bytes.len())?;
        let mut r = Reader::new(bytes);
        Ok(Config {
            version: r.u32(),
            max_caps_length: r.u32(),
            max_resp_length: r.u32(),
            device_name: r.array(),
        })
    }

    /// The device name up to its first NUL, if it is UTF-8.
    pub fn name(&self) -> &str {
        let end = self.device_name.iter().position(|&b| b == 0).unwrap_or(32);
        core::str::from_utf8(&self.device_name[..end]).unwrap_or("?")
    }
}

/// Every command, as the device reads it from the readable part of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    QueryCapability(QueryCapability),
    StreamCreate(StreamCreate),
    StreamDestroy(StreamDestroy),
    StreamDrain(StreamDrain),
    ResourceCreate(ResourceCreate, Vec<MemEntry>),
    ResourceQueue(ResourceQueue),
    ResourceDestroyAll(ResourceDestroyAll),
    QueueClear(QueueClear),
    GetParams(GetParams),
    SetParams(SetParams),
    /// A control command (0x10A-0x10C) or the legacy params pair (0x108/0x109): known
    /// types a decoder without controls answers with an error, whatever their body.
    Unsupported(u32),
}

impl Request {
    /// The stream id and the command, or why the bytes are not one.
    pub fn parse(bytes: &[u8]) -> Result<(u32, Request), WireError> {
        let header = Header::decode(bytes)?;
        fn with<M: Message>(
            bytes: &[u8],
            wrap: fn(M) -> Request,
        ) -> Result<(u32, Request), WireError> {
            M::decode(bytes).map(|(stream, m)| (stream, wrap(m)))
        }
        match header.type_ {
            cmd::QUERY_CAPABILITY => with(bytes, Request::QueryCapability),
            cmd::STREAM_CREATE => with(bytes, Request::StreamCreate),
            cmd::STREAM_DESTROY => with(bytes, Request::StreamDestroy),
            cmd::STREAM_DRAIN => with(bytes, Request::StreamDrain),
            cmd::RESOURCE_CREATE => {
                ResourceCreate::decode_with_entries(bytes).map(|(stream, create, entries)| {
                    (stream, Request::ResourceCreate(create, entries))
                })
            }
            cmd::RESOURCE_QUEUE => with(bytes, Request::ResourceQueue),
            cmd::RESOURCE_DESTROY_ALL => with(bytes, Request::ResourceDestroyAll),
            cmd::QUEUE_CLEAR => with(bytes, Request::QueueClear),
            cmd::GET_PARAMS_EXT => with(bytes, Request::GetParams),
            cmd::SET_PARAMS_EXT => with(bytes, Request::SetParams),
            cmd::GET_PARAMS
            | cmd::SET_PARAMS
            | cmd::QUERY_CONTROL
            | cmd::GET_CONTROL
            | cmd::SET_CONTROL => Ok((header.stream_id, Request::Unsupported(header.type_))),
            other => Err(WireError::UnknownCommand(other)),
        }
    }
}

/// An error response: the header alone, type 0x300-0x305.
pub fn encode_error(code: ErrorCode, stream_id: u32) -> Vec<u8> {
    let mut w = Writer::default();
    Header::new(code as u32, stream_id).encode(&mut w);
    w.into_bytes()
}

/// What a response turned out to be, on the driver's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<M> {
    Ok(M),
    /// One of the spec's error codes (a header-only message).
    Error(ErrorCode),
}

impl<M: Message> Response<M> {
    /// `bytes` (what the device wrote) as `M`, or as a spec error; anything else,
    /// including rust-vmm's 0x206-0x20B error codes, is a [`WireError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let header = Header::decode(bytes)?;
        if let Some(code) = ErrorCode::from_u32(header.type_) {
            check_len(HEADER_SIZE, bytes.len())?;
            return Ok(Response::Error(code));
        }
        M::decode(bytes).map(|(_, m)| Response::Ok(m))
    }
}

/// The QUERY_CAPABILITY response (variable length) as a descriptor list or a spec error.
pub fn parse_capability(bytes: &[u8]) -> Result<Response<QueryCapabilityResp>, WireError> {
    let header = Header::decode(bytes)?;
    if let Some(code) = ErrorCode::from_u32(header.type_) {
        check_len(HEADER_SIZE, bytes.len())?;
        return Ok(Response::Error(code));
    }
    QueryCapabilityResp::decode(bytes).map(Response::Ok)
}
