//! The test driver: guest memory, chains laid out in it, requests built with the shared
//! wire types, and the device's answers read back.

use std::collections::HashMap;

use monolith::virtio::video::wire::{
    self, Event, Format, GetParams, Header, MemEntry, Message, Params, QueueType, ResourceCreate,
    ResourceQueue, ResourceQueueResp, SetParams, StreamCreate, MAX_PLANES,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::codec::DecoderFactory;
use crate::core::{Chain, Completion, Desc, Device, QueueIndex};
use crate::faults::Faults;

pub const RAM_BASE: u64 = 0x4000_0000;
pub const RAM_SIZE: usize = 64 << 20;
/// Writable bytes for a response unless a test says otherwise.
pub const RESP: u32 = 1024;

pub struct Guest {
    pub mem: GuestMemoryMmap,
    next: u64,
}

impl Guest {
    pub fn new() -> Guest {
        Guest {
            mem: GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(RAM_BASE), RAM_SIZE)]).unwrap(),
            next: RAM_BASE,
        }
    }

    /// A fresh range (aligned to 64 bytes), filled with 0xEE so untouched bytes show.
    pub fn alloc(&mut self, len: usize) -> GuestAddress {
        let addr = GuestAddress(self.next);
        self.next += (len as u64).div_ceil(64) * 64;
        assert!(
            self.next <= RAM_BASE + RAM_SIZE as u64,
            "test guest memory exhausted"
        );
        self.mem.write_slice(&vec![0xEE; len], addr).unwrap();
        addr
    }

    pub fn read(&self, addr: GuestAddress, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, addr).unwrap();
        v
    }
}

/// What came back for one chain.
#[derive(Debug, Clone)]
pub struct Answer {
    pub head: u16,
    pub queue: QueueIndex,
    pub len: u32,
    /// The first `len` bytes of the writable part.
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn type_(&self) -> u32 {
        Header::decode(&self.bytes).map(|h| h.type_).unwrap_or(0)
    }

    pub fn queue_resp(&self) -> ResourceQueueResp {
        ResourceQueueResp::decode(&self.bytes)
            .unwrap_or_else(|e| panic!("not a queue response ({e}): {:x?}", self.bytes))
            .1
    }

    pub fn event(&self) -> Event {
        Event::decode(&self.bytes).unwrap()
    }
}

pub struct T {
    pub dev: Device,
    pub g: Guest,
    next_head: u16,
    chains: HashMap<u16, Chain>,
    /// Answers that came while the test waited for another one.
    pub backlog: Vec<Answer>,
}

impl T {
    pub fn new(factory: Box<dyn DecoderFactory>, faults: Faults) -> T {
        T {
            dev: Device::new(factory, faults),
            g: Guest::new(),
            next_head: 0,
            chains: HashMap::new(),
            backlog: Vec::new(),
        }
    }

    pub fn fake() -> T {
        T::new(
            Box::new(crate::fake_codec::FakeFactory::default()),
            Faults::default(),
        )
    }

    /// A chain with raw descriptors (the caller placed their memory).
    pub fn raw_chain(&mut self, descs: Vec<Desc>) -> Chain {
        let head = self.next_head;
        self.next_head = self.next_head.wrapping_add(1);
        let chain = Chain { head, descs };
        self.chains.insert(head, chain.clone());
        chain
    }

    /// A chain: each readable part in its own descriptor, then writable descriptors.
    pub fn chain(&mut self, readable: &[&[u8]], writable: &[u32]) -> Chain {
        let mut descs = Vec::new();
        for part in readable {
            let addr = self.g.alloc(part.len().max(1));
            self.g.mem.write_slice(part, addr).unwrap();
            descs.push(Desc {
                addr,
                len: part.len() as u32,
                writable: false,
            });
        }
        for &len in writable {
            let addr = self.g.alloc(len as usize);
            descs.push(Desc {
                addr,
                len,
                writable: true,
            });
        }
        self.raw_chain(descs)
    }

    /// Send a command chain; returns its head.
    pub fn send(&mut self, readable: &[&[u8]], writable: &[u32]) -> u16 {
        let chain = self.chain(readable, writable);
        let head = chain.head;
        let mem = self.g.mem.clone();
        self.dev.command(&mem, chain);
        head
    }

    /// Everything the device answered since the last call.
    pub fn answers(&mut self) -> Vec<Answer> {
        self.dev
            .take_completions()
            .into_iter()
            .map(|c| self.answer(c))
            .collect()
    }

    fn answer(&mut self, c: Completion) -> Answer {
        let chain = self
            .chains
            .remove(&c.head)
            .expect("completion for a chain never sent (or answered twice)");
        let mut bytes = Vec::new();
        for d in chain.descs.iter().filter(|d| d.writable) {
            if bytes.len() >= c.len as usize {
                break;
            }
            let n = (d.len as usize).min(c.len as usize - bytes.len());
            bytes.extend(self.g.read(d.addr, n));
        }
        Answer {
            head: c.head,
            queue: c.queue,
            len: c.len,
            bytes,
        }
    }

    /// Send one request (one readable descriptor, [`RESP`] writable bytes) and return the
    /// answer to it, which must come at once; other answers go to `backlog`.
    pub fn cmd(&mut self, request: &[u8]) -> Answer {
        let head = self.send(&[request], &[RESP]);
        self.take(head)
    }

    /// The answer for `head` among what the device answered now; the rest is kept.
    pub fn take(&mut self, head: u16) -> Answer {
        let answers = self.answers();
        let mut found = None;
        for a in answers {
            if a.head == head && a.queue == QueueIndex::Command {
                found = Some(a);
            } else {
                self.backlog.push(a);
            }
        }
        found.unwrap_or_else(|| panic!("chain {head} was not answered"))
    }

    /// The backlog and whatever else the device answered since.
    pub fn drain_backlog(&mut self) -> Vec<Answer> {
        let mut all = std::mem::take(&mut self.backlog);
        all.extend(self.answers());
        all
    }

    pub fn post_event_buffers(&mut self, n: usize) {
        for _ in 0..n {
            let chain = self.chain(&[], &[wire::EVENT_SIZE as u32]);
            let mem = self.g.mem.clone();
            self.dev.event_buffer(&mem, chain);
        }
    }
}

pub fn ok(a: &Answer) {
    assert_eq!(
        a.type_(),
        wire::resp::OK_NODATA,
        "expected OK_NODATA, got {:x?}",
        a.bytes
    );
    assert_eq!(a.len, 8);
}

pub fn err(a: &Answer, code: wire::ErrorCode) {
    assert_eq!(
        a.type_(),
        code as u32,
        "expected {code}, got {:x?}",
        a.bytes
    );
    assert_eq!(a.len, 8);
}

pub fn stream_create(id: u32) -> Vec<u8> {
    StreamCreate::new(Format::H264, "test").encode(id)
}

pub fn get_params(id: u32, q: QueueType) -> Vec<u8> {
    GetParams { queue_type: q }.encode(id)
}

pub fn params_of(a: &Answer) -> Params {
    wire::GetParamsResp::decode(&a.bytes).unwrap().1.params
}

pub fn set_output_format(id: u32, format: Format) -> Vec<u8> {
    SetParams {
        params: Params::new(QueueType::Output, format),
    }
    .encode(id)
}

pub fn resource_create(
    id: u32,
    q: QueueType,
    res: u32,
    offsets: &[u32],
    entries: &[MemEntry],
) -> (Vec<u8>, Vec<u8>) {
    let mut plane_offsets = [0; MAX_PLANES];
    plane_offsets[..offsets.len()].copy_from_slice(offsets);
    let mut num_entries = [0; MAX_PLANES];
    num_entries[0] = entries.len() as u32;
    let create = ResourceCreate {
        queue_type: q,
        resource_id: res,
        planes_layout: wire::planes_layout::SINGLE_BUFFER,
        num_planes: offsets.len() as u32,
        plane_offsets,
        num_entries,
    };
    (create.encode(id), wire::encode_entries(entries))
}

pub fn queue(id: u32, q: QueueType, res: u32, timestamp: u64, size: u32) -> Vec<u8> {
    let mut data_sizes = [0; MAX_PLANES];
    data_sizes[0] = size;
    ResourceQueue {
        queue_type: q,
        resource_id: res,
        timestamp,
        num_data_sizes: 1,
        data_sizes,
    }
    .encode(id)
}
