//! A fake virtio-video decoder (device id 31) for the host tests: a device model on the
//! fake virtio device (`crate::virtio::fake`) that speaks the v3 wire format as
//! rust-vmm's strict `vhost-device-video` does, and checks the driver against it.
//!
//! # Theory of operation
//!
//! Commands on queue 0 are parsed with [`Request::parse`] (exact sizes: a request
//! descriptor that is not the struct's size fails to parse and is recorded in
//! [`FakeDecoder::malformed`]). Synchronous commands are answered at once; a
//! RESOURCE_QUEUE chain is held ([`Reply::Hold`]) until its buffer is done. Queue 1
//! chains are event buffers, held until an event needs one; more than one posted at a
//! time is a breach (rust-vmm takes one).
//!
//! Decoding is a model, not a codec: each queued bitstream buffer becomes one frame in
//! the oldest queued output buffer, carrying the bitstream's timestamp. Before the first
//! frame, and whenever [`FakeDecoder::width`]/[`FakeDecoder::height`] change, the device
//! sends DECODER_RESOLUTION_CHANGED with the output params updated and decodes nothing
//! more until output resources of the new size exist (the driver clears the output
//! queue, destroys its resources and creates new ones). A drain ends with the next
//! output buffer flagged EOS; QUEUE_CLEAR, RESOURCE_DESTROY_ALL and STREAM_DESTROY give
//! every pending buffer of theirs back flagged ERR.
//!
//! Fault injection: [`FakeDecoder::fail`] answers the next command of a type with any
//! header-only response type (spec errors 0x300-0x305, rust-vmm's 0x206-0x20B);
//! [`FakeDecoder::corrupt`] sends the next response of a command type four bytes too
//! long or with the wrong stream id; [`FakeDecoder::raise_error`] queues an ERROR event.
#![forbid(unsafe_code)]

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::wire::{
    buffer_flag, event, feature, planes_layout, Config, ErrorCode, Event, FormatDesc, FormatFrame,
    FormatRange, GetParamsResp, Header, Message, NoData, Params, PlaneFormat, QueryCapabilityResp,
    QueueType, Request, ResourceQueueResp, Writer,
};
use super::wire::{Format, HEADER_SIZE};
use crate::virtio::fake::{Chain, ChainId, FakeDevice, Reply};

/// Bytes of one bitstream buffer the fake asks for.
pub const INPUT_BUFFER_SIZE: u32 = 16 * 1024;
/// `max_resp_length` in the fake's configuration.
pub const MAX_RESP_LENGTH: u32 = 256;

/// How to spoil the next response to a command type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// Four bytes too long.
    Length,
    /// Another stream's id.
    Stream,
}

/// A buffer the device holds.
#[derive(Debug, Clone, Copy)]
struct Queued {
    chain: ChainId,
    resource: u32,
    timestamp: u64,
}

/// The one stream the fake decodes.
#[derive(Debug, Clone)]
pub struct Stream {
    pub id: u32,
    pub coded_format: Format,
    pub params: BTreeMap<QueueType, Params>,
    /// Resources by queue and id: their one memory entry's length.
    pub resources: BTreeMap<(QueueType, u32), u32>,
    /// Queues a buffer was queued on since their last RESOURCE_DESTROY_ALL.
    pub streaming: BTreeSet<QueueType>,
    pub draining: bool,
    /// The resolution the output resources were made for.
    pub announced: Option<(u32, u32)>,
    /// DECODER_RESOLUTION_CHANGED sent, no output resource created since.
    pub change_sent: bool,
    queued: BTreeMap<QueueType, VecDeque<Queued>>,
}

impl Stream {
    fn queued(&mut self, q: QueueType) -> &mut VecDeque<Queued> {
        self.queued.entry(q).or_default()
    }
}

pub struct FakeDecoder {
    /// Resolution of the bitstream; change it mid-stream for a resolution change.
    pub width: u32,
    pub height: u32,
    pub max_caps_length: u32,
    pub stream: Option<Stream>,
    /// Every command type received, in order.
    pub commands: Vec<u32>,
    /// Entry counts of every RESOURCE_CREATE.
    pub entry_counts: Vec<u64>,
    /// Breaches of the protocol by the driver.
    pub malformed: Vec<String>,
    pub fail: Option<(u32, u32)>,
    pub corrupt: Option<(u32, Corrupt)>,
    pub frames_decoded: usize,
    event_buffers: Vec<ChainId>,
    events: VecDeque<Event>,
    ready: Vec<(ChainId, Vec<u8>)>,
}

/// Feature bits the fake offers by default (beyond VERSION_1).
pub const FEATURES: u64 = 1 << feature::RESOURCE_GUEST_PAGES;

impl FakeDecoder {
    pub fn new(width: u32, height: u32) -> Self {
        FakeDecoder {
            width,
            height,
            max_caps_length: 1024,
            stream: None,
            commands: Vec::new(),
            entry_counts: Vec::new(),
            malformed: Vec::new(),
            fail: None,
            corrupt: None,
            frames_decoded: 0,
            event_buffers: Vec::new(),
            events: VecDeque::new(),
            ready: Vec::new(),
        }
    }

    /// The 44 configuration bytes.
    pub fn config(&self) -> Vec<u8> {
        let mut name = [0u8; 32];
        name[..9].copy_from_slice(b"fake-vdec");
        Config {
            version: 0,
            max_caps_length: self.max_caps_length,
            max_resp_length: MAX_RESP_LENGTH,
            device_name: name,
        }
        .encode()
        .to_vec()
    }

    /// Event buffers posted and not yet used.
    pub fn event_buffers(&self) -> usize {
        self.event_buffers.len()
    }

    /// Buffers of `q` the device holds.
    pub fn queued(&self, q: QueueType) -> usize {
        self.stream
            .as_ref()
            .and_then(|s| s.queued.get(&q))
            .map_or(0, VecDeque::len)
    }

    /// Queue any event.
    pub fn push_event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// Queue an ERROR event for the stream.
    pub fn raise_error(&mut self) {
        let stream_id = self.stream.as_ref().map_or(0, |s| s.id);
        self.events.push_back(Event {
            event_type: event::ERROR,
            stream_id,
        });
    }

    fn output_params((w, h): (u32, u32), format: u32) -> Params {
        let mut p = Params::new(QueueType::Output, Format::Nv12);
        p.format = format;
        p.frame_width = w;
        p.frame_height = h;
        p.min_buffers = 2;
        p.max_buffers = 8;
        p.crop.width = w;
        p.crop.height = h;
        if format == Format::Argb8888 as u32 {
            p.num_planes = 1;
            p.plane_formats[0] = PlaneFormat {
                plane_size: w * h * 4,
                stride: w * 4,
            };
        } else {
            p.num_planes = 2;
            p.plane_formats[0] = PlaneFormat {
                plane_size: w * h,
                stride: w,
            };
            p.plane_formats[1] = PlaneFormat {
                plane_size: w * h / 2,
                stride: w,
            };
        }
        p
    }

    fn capabilities(queue: QueueType) -> QueryCapabilityResp {
        let frame = FormatFrame {
            width: FormatRange {
                min: 16,
                max: 4096,
                step: 16,
            },
            height: FormatRange {
                min: 16,
                max: 4096,
                step: 16,
            },
            frame_rates: vec![FormatRange {
                min: 1,
                max: 60,
                step: 1,
            }],
        };
        let desc = |format: Format, mask| FormatDesc {
            mask,
            format: format as u32,
            planes_layout: planes_layout::SINGLE_BUFFER,
            plane_align: 1,
            frames: vec![frame.clone()],
        };
        let descs = match queue {
            QueueType::Input => vec![desc(Format::H264, 0b11)],
            QueueType::Output => vec![desc(Format::Nv12, 1), desc(Format::Argb8888, 1)],
        };
        QueryCapabilityResp { descs }
    }

    /// A buffer response, spoiled if asked to.
    fn buffer_response(&mut self, stream_id: u32, timestamp: u64, flags: u32) -> Vec<u8> {
        let bytes = ResourceQueueResp {
            timestamp,
            flags,
            size: 0,
        }
        .encode(stream_id);
        self.spoil(super::wire::cmd::RESOURCE_QUEUE, bytes)
    }

    fn spoil(&mut self, command: u32, mut bytes: Vec<u8>) -> Vec<u8> {
        match self.corrupt {
            Some((c, how)) if c == command => {
                self.corrupt = None;
                match how {
                    Corrupt::Length => bytes.extend_from_slice(&[0; 4]),
                    Corrupt::Stream => {
                        let stream = Header::decode(&bytes).map_or(0, |h| h.stream_id);
                        bytes[4..8].copy_from_slice(&stream.wrapping_add(1).to_le_bytes());
                    }
                }
                bytes
            }
            _ => bytes,
        }
    }

    /// Give back every buffer of `q` flagged ERR.
    fn flush_queue(&mut self, q: QueueType) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let id = stream.id;
        let pending: Vec<Queued> = stream.queued(q).drain(..).collect();
        for b in pending {
            let bytes = self.buffer_response(id, b.timestamp, buffer_flag::ERR);
            self.ready.push((b.chain, bytes));
        }
    }

    /// Decode what can be decoded, send what events can be sent.
    fn step(&mut self) {
        while let Some(stream) = self.stream.as_mut() {
            let id = stream.id;
            let size = (self.width, self.height);
            let have_input = !stream.queued(QueueType::Input).is_empty();
            let have_output = !stream.queued(QueueType::Output).is_empty();
            if have_input && stream.announced != Some(size) {
                if !stream.change_sent {
                    // Announce once, then wait for output resources of the new size.
                    stream.change_sent = true;
                    let format = stream.params[&QueueType::Output].format;
                    let params = Self::output_params(size, format);
                    stream.params.insert(QueueType::Output, params);
                    self.events.push_back(Event {
                        event_type: event::DECODER_RESOLUTION_CHANGED,
                        stream_id: id,
                    });
                }
                break;
            }
            if have_input && have_output {
                let input = stream.queued(QueueType::Input).pop_front();
                let output = stream.queued(QueueType::Output).pop_front();
                let (Some(input), Some(output)) = (input, output) else {
                    break;
                };
                let done = self.buffer_response(id, input.timestamp, 0);
                self.ready.push((input.chain, done));
                let frame = self.buffer_response(id, input.timestamp, buffer_flag::IFRAME);
                self.ready.push((output.chain, frame));
                self.frames_decoded += 1;
                continue;
            }
            if !have_input && stream.draining && have_output {
                stream.draining = false;
                let Some(output) = stream.queued(QueueType::Output).pop_front() else {
                    break;
                };
                let eos = self.buffer_response(id, 0, buffer_flag::EOS);
                self.ready.push((output.chain, eos));
            }
            break;
        }
        while !self.event_buffers.is_empty() && !self.events.is_empty() {
            let chain = self.event_buffers.remove(0);
            if let Some(e) = self.events.pop_front() {
                self.ready.push((chain, e.encode().to_vec()));
            }
        }
    }

    fn stream(&mut self, id: u32) -> Result<&mut Stream, ErrorCode> {
        match self.stream.as_mut() {
            Some(s) if s.id == id => Ok(s),
            _ => Err(ErrorCode::InvalidStreamId),
        }
    }

    /// Serve one command: `Ok(None)` holds the chain.
    fn serve(
        &mut self,
        chain: ChainId,
        stream_id: u32,
        request: Request,
    ) -> Result<Option<Vec<u8>>, ErrorCode> {
        let ok = || Ok(Some(NoData.encode(stream_id)));
        match request {
            Request::QueryCapability(q) => {
                let bytes = Self::capabilities(q.queue_type).encode(stream_id);
                if bytes.len() > self.max_caps_length as usize {
                    self.malformed
                        .push(String::from("capabilities longer than max_caps_length"));
                }
                Ok(Some(bytes))
            }
            Request::StreamCreate(c) => {
                if self.stream.is_some() {
                    return Err(ErrorCode::InvalidOperation);
                }
                if c.coded_format != Format::H264 {
                    return Err(ErrorCode::InvalidParameter);
                }
                let mut input = Params::new(QueueType::Input, c.coded_format);
                input.num_planes = 1;
                input.plane_formats[0].plane_size = INPUT_BUFFER_SIZE;
                input.min_buffers = 1;
                input.max_buffers = 32;
                let mut output = Params::new(QueueType::Output, Format::Nv12);
                output.num_planes = 0;
                let params = [(QueueType::Input, input), (QueueType::Output, output)];
                self.stream = Some(Stream {
                    id: stream_id,
                    coded_format: c.coded_format,
                    params: params.into_iter().collect(),
                    resources: BTreeMap::new(),
                    streaming: BTreeSet::new(),
                    draining: false,
                    announced: None,
                    change_sent: false,
                    queued: BTreeMap::new(),
                });
                ok()
            }
            Request::StreamDestroy(_) => {
                self.stream(stream_id)?;
                self.flush_queue(QueueType::Input);
                self.flush_queue(QueueType::Output);
                self.stream = None;
                ok()
            }
            Request::StreamDrain(_) => {
                let s = self.stream(stream_id)?;
                if s.draining {
                    return Err(ErrorCode::InvalidOperation);
                }
                s.draining = true;
                ok()
            }
            Request::ResourceCreate(c, entries) => {
                self.entry_counts.push(entries.len() as u64);
                let (w, h) = (self.width, self.height);
                let s = self.stream(stream_id)?;
                let q = c.queue_type;
                if s.streaming.contains(&q) {
                    self.malformed.push(format!(
                        "RESOURCE_CREATE on {q:?} after its first RESOURCE_QUEUE"
                    ));
                    return Err(ErrorCode::InvalidOperation);
                }
                if entries.len() != 1 || c.planes_layout != planes_layout::SINGLE_BUFFER {
                    return Err(ErrorCode::InvalidParameter);
                }
                if c.resource_id == 0 || s.resources.contains_key(&(q, c.resource_id)) {
                    return Err(ErrorCode::InvalidResourceId);
                }
                let params = s.params[&q];
                let needed = params.buffer_size().unwrap_or(u64::MAX);
                if u64::from(entries[0].length) < needed || c.num_planes != params.num_planes {
                    return Err(ErrorCode::InvalidParameter);
                }
                let mut offset = 0;
                for p in 0..params.num_planes as usize {
                    if c.plane_offsets[p] != offset {
                        return Err(ErrorCode::InvalidParameter);
                    }
                    offset += params.plane_formats[p].plane_size;
                }
                s.resources.insert((q, c.resource_id), entries[0].length);
                if q == QueueType::Output {
                    s.announced = Some((w, h));
                    s.change_sent = false;
                }
                ok()
            }
            Request::ResourceQueue(m) => {
                let s = self.stream(stream_id)?;
                let q = m.queue_type;
                let len = *s
                    .resources
                    .get(&(q, m.resource_id))
                    .ok_or(ErrorCode::InvalidResourceId)?;
                if s.queued(q).iter().any(|b| b.resource == m.resource_id) {
                    return Err(ErrorCode::InvalidOperation);
                }
                if q == QueueType::Input
                    && (m.num_data_sizes != 1 || m.data_sizes[0] == 0 || m.data_sizes[0] > len)
                {
                    return Err(ErrorCode::InvalidParameter);
                }
                s.streaming.insert(q);
                s.queued(q).push_back(Queued {
                    chain,
                    resource: m.resource_id,
                    timestamp: m.timestamp,
                });
                Ok(None)
            }
            Request::ResourceDestroyAll(m) => {
                self.stream(stream_id)?;
                self.flush_queue(m.queue_type);
                let s = self.stream(stream_id)?;
                s.resources.retain(|(q, _), _| *q != m.queue_type);
                s.streaming.remove(&m.queue_type);
                ok()
            }
            Request::QueueClear(m) => {
                self.stream(stream_id)?;
                self.flush_queue(m.queue_type);
                if m.queue_type == QueueType::Input {
                    self.stream(stream_id)?.draining = false;
                }
                ok()
            }
            Request::GetParams(m) => {
                let s = self.stream(stream_id)?;
                let params = s.params[&m.queue_type];
                Ok(Some(GetParamsResp { params }.encode(stream_id)))
            }
            Request::SetParams(m) => {
                let s = self.stream(stream_id)?;
                let p = m.params;
                match p.queue_type {
                    QueueType::Input => {
                        if p.format != s.coded_format as u32 {
                            return Err(ErrorCode::InvalidParameter);
                        }
                        let size = p.plane_formats[0].plane_size;
                        if size != 0 {
                            let input = s.params.get_mut(&QueueType::Input);
                            if let Some(input) = input {
                                input.plane_formats[0].plane_size = size.min(1 << 20);
                            }
                        }
                    }
                    QueueType::Output => {
                        if p.format != Format::Nv12 as u32 && p.format != Format::Argb8888 as u32 {
                            return Err(ErrorCode::InvalidParameter);
                        }
                        let announced = s.announced.is_some() || s.change_sent;
                        let mut params = Self::output_params((self.width, self.height), p.format);
                        if !announced {
                            params.num_planes = 0;
                            params.plane_formats = [PlaneFormat::default(); 8];
                        }
                        self.stream(stream_id)?
                            .params
                            .insert(QueueType::Output, params);
                    }
                }
                ok()
            }
            Request::Unsupported(_) => Err(ErrorCode::InvalidOperation),
        }
    }

    fn command(&mut self, chain: &Chain) -> Reply {
        let header = Header::decode(chain.request).unwrap_or_default();
        self.commands.push(header.type_);
        if let Some((command, answer)) = self.fail {
            if command == header.type_ {
                self.fail = None;
                let mut w = Writer::default();
                Header::new(answer, header.stream_id).encode(&mut w);
                return Reply::Now(w.into_bytes());
            }
        }
        let (stream_id, request) = match Request::parse(chain.request) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.malformed.push(format!(
                    "{:#x} of {} bytes: {e}",
                    header.type_,
                    chain.request.len()
                ));
                return Reply::Now(super::wire::encode_error(
                    ErrorCode::InvalidParameter,
                    header.stream_id,
                ));
            }
        };
        let reply = match self.serve(chain.id, stream_id, request) {
            Ok(Some(bytes)) => Reply::Now(self.spoil(header.type_, bytes)),
            Ok(None) => Reply::Hold,
            Err(code) => Reply::Now(super::wire::encode_error(code, stream_id)),
        };
        if let Reply::Now(bytes) = &reply {
            if bytes.len() > chain.writable as usize {
                self.malformed.push(format!(
                    "{:#x}: response of {} bytes, {} writable",
                    header.type_,
                    bytes.len(),
                    chain.writable
                ));
            }
        }
        reply
    }
}

impl FakeDevice for FakeDecoder {
    fn handle(&mut self, _queue: u16, _request: &[u8]) -> Vec<u8> {
        // Every chain goes through `chain`.
        Vec::new()
    }

    fn chain(&mut self, chain: &Chain) -> Reply {
        match chain.queue {
            0 => self.command(chain),
            1 => {
                if !chain.request.is_empty() || chain.writable != super::wire::EVENT_SIZE as u32 {
                    self.malformed.push(format!(
                        "event buffer with {} readable and {} writable bytes",
                        chain.request.len(),
                        chain.writable
                    ));
                }
                if !self.event_buffers.is_empty() {
                    self.malformed
                        .push(String::from("a second event buffer posted"));
                }
                self.event_buffers.push(chain.id);
                Reply::Hold
            }
            q => {
                self.malformed.push(format!("chain on queue {q}"));
                Reply::Now(vec![0; HEADER_SIZE])
            }
        }
    }

    fn completions(&mut self) -> Vec<(ChainId, Vec<u8>)> {
        self.step();
        core::mem::take(&mut self.ready)
    }

    fn reset(&mut self) {
        self.stream = None;
        self.event_buffers.clear();
        self.events.clear();
        self.ready.clear();
    }
}
