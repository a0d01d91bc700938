//! The fuzzer's driver: arbitrary bytes become a sequence of guest-memory writes,
//! chains (raw descriptors anywhere, or well-formed requests with fuzzed fields), event
//! buffers, memory-table swaps and resets, fed to the protocol core with the fake codec.
//! After every step it checks the core's promises, so a broken one is a crash:
//! every completion is for a chain that is outstanding on that queue, each chain is
//! answered at most once, and no used length exceeds the chain's writable bytes. (Writes
//! outside the descriptors would show as vm-memory errors or a used length too long;
//! panics anywhere are crashes by themselves.)
//!
//! Used by `qemu/video-device/fuzz` (libFuzzer) and by the unit test below, which runs
//! the seeds [`seeds`] returns so a regression is caught without the fuzzer.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use monolith::virtio::video::wire::{
    self, Format, GetParams, Message, Params, QueryCapability, QueueClear, QueueType,
    ResourceCreate, ResourceDestroyAll, ResourceQueue, SetParams, StreamCreate, StreamDestroy,
    StreamDrain, MAX_PLANES,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::core::{Chain, Desc, Device, QueueIndex};
use crate::fake_codec::FakeFactory;
use crate::faults::{Fault, Faults};

/// Guest RAM of every run, and the smaller table some steps switch to.
pub const BASE: u64 = 0x1_0000;
pub const RAM: usize = 1 << 20;
pub const SMALL_RAM: usize = 64 << 10;
/// Where well-formed requests and their responses go.
const SCRATCH: u64 = BASE + 0xF_0000;
/// Steps per input at most (keeps each input's time bounded).
const MAX_STEPS: usize = 256;

struct Cursor<'a> {
    data: &'a [u8],
}

impl Cursor<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (now, rest) = self.data.split_at(n);
        self.data = rest;
        now
    }
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Chains handed to the device and not answered yet: head -> (queue, writable bytes).
#[derive(Default)]
struct Outstanding {
    chains: HashMap<u16, (QueueIndex, u64)>,
    next_head: u16,
}

impl Outstanding {
    fn chain(&mut self, queue: QueueIndex, descs: Vec<Desc>) -> Chain {
        let head = self.next_head;
        self.next_head = self.next_head.wrapping_add(1);
        let chain = Chain { head, descs };
        self.chains.insert(head, (queue, chain.writable_len()));
        chain
    }

    /// Check the completions; returns how many there were.
    fn check(&mut self, device: &mut Device) -> usize {
        let completions = device.take_completions();
        let n = completions.len();
        for c in completions {
            let Some((queue, writable)) = self.chains.remove(&c.head) else {
                panic!("completion for chain {} that is not outstanding", c.head);
            };
            assert_eq!(
                queue, c.queue,
                "chain {} answered on the wrong queue",
                c.head
            );
            assert!(
                u64::from(c.len) <= writable,
                "chain {}: used length {} over its {writable} writable bytes",
                c.head,
                c.len
            );
        }
        n
    }
}

fn raw_descs(r: &mut Cursor<'_>) -> Vec<Desc> {
    let n = 1 + usize::from(r.u8() % 4);
    (0..n)
        .map(|_| {
            let flags = r.u8();
            let addr = if flags & 1 != 0 {
                r.u64()
            } else {
                BASE + u64::from(r.u16()) * 16
            };
            let len = if flags & 2 != 0 {
                r.u32()
            } else {
                u32::from(r.u16())
            };
            Desc {
                addr: GuestAddress(addr),
                len,
                writable: flags & 4 != 0,
            }
        })
        .collect()
}

fn queue_type(r: &mut Cursor<'_>) -> QueueType {
    if r.u8() & 1 == 0 {
        QueueType::Input
    } else {
        QueueType::Output
    }
}

/// A well-formed request with fuzzed fields.
fn template(r: &mut Cursor<'_>) -> Vec<u8> {
    let kind = r.u8() % 11;
    let stream = u32::from(r.u8() % 4);
    match kind {
        0 => QueryCapability {
            queue_type: queue_type(r),
        }
        .encode(stream),
        1 => StreamCreate::new(Format::H264, "fuzz").encode(stream),
        2 => StreamDestroy.encode(stream),
        3 => StreamDrain.encode(stream),
        4 => {
            let queue_type = queue_type(r);
            let num_planes = 1 + u32::from(r.u8() % 2);
            let mut plane_offsets = [0; MAX_PLANES];
            plane_offsets[1] = u32::from(r.u16());
            let entries = 1 + usize::from(r.u8() % 2);
            let mut num_entries = [0; MAX_PLANES];
            num_entries[0] = entries as u32;
            let create = ResourceCreate {
                queue_type,
                resource_id: u32::from(r.u8() % 40),
                planes_layout: wire::planes_layout::SINGLE_BUFFER,
                num_planes,
                plane_offsets,
                num_entries,
            };
            let entries: Vec<wire::MemEntry> = (0..entries)
                .map(|_| wire::MemEntry {
                    addr: BASE + u64::from(r.u16()) * 16,
                    length: u32::from(r.u16()) * 4,
                })
                .collect();
            create.encode_with_entries(stream, &entries)
        }
        5 => {
            let mut data_sizes = [0; MAX_PLANES];
            data_sizes[0] = u32::from(r.u16());
            ResourceQueue {
                queue_type: queue_type(r),
                resource_id: u32::from(r.u8() % 40),
                timestamp: u64::from(r.u8()),
                num_data_sizes: 1,
                data_sizes,
            }
            .encode(stream)
        }
        6 => ResourceDestroyAll {
            queue_type: queue_type(r),
        }
        .encode(stream),
        7 => QueueClear {
            queue_type: queue_type(r),
        }
        .encode(stream),
        8 => GetParams {
            queue_type: queue_type(r),
        }
        .encode(stream),
        9 => {
            let queue_type = queue_type(r);
            let format = [Format::H264, Format::Nv12, Format::Argb8888, Format::Vp8]
                [usize::from(r.u8() % 4)];
            let mut params = Params::new(queue_type, format);
            params.plane_formats[0].plane_size = u32::from(r.u16()) * 64;
            SetParams { params }.encode(stream)
        }
        _ => {
            // A fake NAL unit for the bitstream: where the next resource-queue may find it.
            Vec::new()
        }
    }
}

/// What one input made the device do (for the seeds' test: a seed that decodes nothing
/// would start the fuzzer far from the decode paths).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub completions: usize,
    /// Most frames any stream had delivered at some point.
    pub frames: u64,
}

/// Run one fuzz input (see the module header).
pub fn exercise(data: &[u8]) -> Summary {
    let mut summary = Summary::default();
    let Ok(big) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), RAM)]) else {
        return summary;
    };
    let Ok(small) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), SMALL_RAM)]) else {
        return summary;
    };
    let mut r = Cursor { data };
    // The first byte picks faults, so their paths are fuzzed too.
    let faults = match r.u8() % 4 {
        1 => vec![Fault::Stall { frame: 2 }],
        2 => vec![Fault::ErrorEvent { frame: 1 }],
        3 => vec![Fault::ErrorResponse {
            command: wire::cmd::RESOURCE_QUEUE,
            nth: 2,
            code: wire::ErrorCode::InvalidParameter,
        }],
        _ => Vec::new(),
    };
    let mut device = Device::new(Box::new(FakeFactory { max_dim: 96 }), Faults::new(faults));
    let mut out = Outstanding::default();
    let mut use_small = false;
    for step in 0..MAX_STEPS {
        if r.is_empty() {
            break;
        }
        let mem = if use_small { &small } else { &big };
        match r.u8() % 8 {
            0 => {
                let offset = u64::from(r.u16()) * 16;
                let n = usize::from(r.u8());
                let bytes = r.take(n).to_vec();
                let _ = mem.write_slice(&bytes, GuestAddress(BASE + offset));
            }
            1 => {
                let chain = out.chain(QueueIndex::Command, raw_descs(&mut r));
                device.command(mem, chain);
            }
            2 => {
                let chain = out.chain(QueueIndex::Event, raw_descs(&mut r));
                device.event_buffer(mem, chain);
            }
            3 | 6 => {
                let request = template(&mut r);
                let slot = SCRATCH + (step as u64 % 16) * 0x1000;
                if request.is_empty() {
                    // A fake NAL unit (kind, size) at a fuzzed place.
                    let nal = crate::fake_codec::nal(
                        [
                            crate::fake_codec::NOW,
                            crate::fake_codec::ON_FLUSH,
                            crate::fake_codec::BROKEN,
                        ][usize::from(r.u8() % 3)],
                        r.u16(),
                        r.u16(),
                        r.u8(),
                    );
                    let _ = mem.write_slice(&nal, GuestAddress(BASE + u64::from(r.u16()) * 16));
                    continue;
                }
                let _ = mem.write_slice(&request, GuestAddress(slot));
                // Split the request over up to three descriptors.
                let cut1 = usize::from(r.u8()) % (request.len() + 1);
                let cut2 = cut1 + usize::from(r.u8()) % (request.len() - cut1 + 1);
                let mut descs = Vec::new();
                for (start, end) in [(0, cut1), (cut1, cut2), (cut2, request.len())] {
                    if end > start {
                        descs.push(Desc {
                            addr: GuestAddress(slot + start as u64),
                            len: (end - start) as u32,
                            writable: false,
                        });
                    }
                }
                let resp_len = if r.u8().is_multiple_of(8) {
                    u32::from(r.u8())
                } else {
                    1024
                };
                descs.push(Desc {
                    addr: GuestAddress(slot + 0x800),
                    len: resp_len,
                    writable: true,
                });
                let chain = out.chain(QueueIndex::Command, descs);
                device.command(mem, chain);
            }
            4 => {
                for i in 0..=(r.u8() % 4) {
                    let chain = out.chain(
                        QueueIndex::Event,
                        vec![Desc {
                            addr: GuestAddress(SCRATCH - 0x100 + u64::from(i) * 8),
                            len: wire::EVENT_SIZE as u32,
                            writable: true,
                        }],
                    );
                    device.event_buffer(mem, chain);
                }
            }
            5 => {
                if r.u8().is_multiple_of(4) {
                    device.reset();
                    // The rings are gone with whatever they held.
                    out.chains.clear();
                }
            }
            _ => use_small = !use_small,
        }
        summary.completions += out.check(&mut device);
        for id in 0..4 {
            if let Some(stream) = device.stream(id) {
                summary.frames = summary.frames.max(stream.delivered());
            }
        }
    }
    summary
}

/// Writes inputs in the format [`exercise`] reads, step by step (for the seeds).
struct SeedBuilder(Vec<u8>);

impl SeedBuilder {
    fn new(faults: u8) -> Self {
        SeedBuilder(vec![faults])
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    /// A template command (`kind`, stream 1, `fields`), in one descriptor, 1024-byte response.
    fn command(&mut self, kind: u8, fields: &[u8]) -> &mut Self {
        self.0.extend([3, kind, 1]);
        self.0.extend(fields);
        self.0.extend([0, 0, 1]);
        self
    }
    fn events(&mut self) -> &mut Self {
        self.0.extend([4, 3]);
        self
    }
    /// A fake picture NAL (NOW, `w`x`h`) at `BASE + at * 16`.
    fn nal(&mut self, w: u16, h: u16, at: u16) -> &mut Self {
        self.0.extend([3, 10, 1, 0]);
        self.u16(w).u16(h);
        self.0.push(7);
        self.u16(at)
    }
    fn resource(
        &mut self,
        output: bool,
        planes: u8,
        offset1: u16,
        id: u8,
        at: u16,
        len4: u16,
    ) -> &mut Self {
        let mut f = vec![u8::from(output), planes - 1];
        f.extend(offset1.to_le_bytes());
        f.extend([0, id]);
        f.extend(at.to_le_bytes());
        f.extend(len4.to_le_bytes());
        self.command(4, &f)
    }
    fn queue(&mut self, output: bool, id: u8, size: u16, timestamp: u8) -> &mut Self {
        let mut f = size.to_le_bytes().to_vec();
        f.extend([u8::from(output), id, timestamp]);
        self.command(5, &f)
    }
}

/// Inputs that walk the main paths: a stream, resources, bitstream, a frame into an
/// output buffer, a drain, a clear, a destroy (with each fault mode), and two odd ones.
pub fn seeds() -> Vec<Vec<u8>> {
    let walk = |faults: u8| {
        let mut b = SeedBuilder::new(faults);
        b.events()
            .command(1, &[])
            .resource(false, 1, 0, 0, 0x100, 1024)
            .nal(16, 16, 0x100)
            .queue(false, 0, 10, 1)
            // NV12 16x16: Y 256 bytes, UV 128 at offset 256.
            .resource(true, 2, 256, 1, 0x400, 96)
            .resource(true, 2, 256, 2, 0x500, 96)
            .queue(true, 1, 0, 0)
            .queue(true, 2, 0, 0)
            .queue(false, 0, 10, 2)
            .command(3, &[])
            .command(7, &[1])
            .command(6, &[1])
            .command(2, &[]);
        b.0
    };
    vec![
        walk(0),
        walk(1),
        walk(2),
        walk(3),
        // Raw chains: a request whose readable part is outside RAM, then an event chain.
        vec![
            0, 1, 2, 0x10, 0, 0x20, 0, 0x05, 0, 0x01, 0x40, 0, 2, 0, 4, 0, 0, 8, 0,
        ],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `qemu/video-device/fuzz/seeds/` holds [`seeds`] (what `cargo xtask fuzz --target
    /// video` starts from). `MONOLITH_WRITE_SEEDS=1 cargo test -p monolith-video-device
    /// committed_seeds` rewrites them after a change of the input format.
    #[test]
    fn committed_seeds_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (i, seed) in seeds().iter().enumerate() {
            let path = dir.join(format!("seed-{i:02}"));
            if std::env::var_os("MONOLITH_WRITE_SEEDS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (see this test's comment)", path.display()));
            assert_eq!(
                &committed,
                seed,
                "{} is stale (see this test's comment)",
                path.display()
            );
        }
    }

    #[test]
    fn seeds_and_junk_run_clean() {
        let summaries: Vec<Summary> = seeds().iter().map(|s| exercise(s)).collect();
        assert!(
            summaries[0].frames >= 1,
            "the first seed decodes a frame: {summaries:?}"
        );
        assert!(summaries.iter().all(|s| s.completions > 0), "{summaries:?}");
        for junk in [
            &[][..],
            &[0xff; 64],
            &[
                1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ] {
            exercise(junk);
        }
        // A pseudo-random walk: every byte string is an input.
        let mut x = 0x1234_5678u32;
        for _ in 0..200 {
            let input: Vec<u8> = (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            exercise(&input);
        }
    }
}
