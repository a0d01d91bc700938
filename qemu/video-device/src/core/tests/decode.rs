//! Decoding flows: a [`Player`] drives the device as a driver would (inputs in turn,
//! output buffers recreated on every resolution change, frames read back from guest
//! memory), with the fake codec for the state machine and openh264 for real frames.

use std::collections::HashMap;

use monolith::virtio::video::wire::{
    self, buffer_flag, event, Event, Format, MemEntry, Message, QueueClear, QueueType,
    ResourceDestroyAll, StreamDestroy, StreamDrain,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::harness::*;
use crate::core::QueueIndex;
use crate::encode::{encode_clip, Segment};
use crate::fake_codec::{self as fake, nal};
use crate::frame::OutputFormat;
use crate::openh264_codec::{OpenH264, OpenH264Factory};
use crate::reference;

/// One frame as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub width: u32,
    pub height: u32,
    pub crc: u32,
    pub timestamp: u64,
    pub resource: u32,
}

pub struct Player {
    pub t: T,
    pub id: u32,
    inputs: HashMap<u32, GuestAddress>,
    free_inputs: Vec<u32>,
    input_heads: HashMap<u16, u32>,
    /// Output resource -> (address, bytes, width, height).
    outputs: HashMap<u32, (GuestAddress, usize, u32, u32)>,
    output_heads: HashMap<u16, u32>,
    next_output_id: u32,
    pub n_outputs: usize,
    pub auto_reconfigure: bool,
    pub frames: Vec<Seen>,
    pub events: Vec<Event>,
    /// Output buffers that came back flagged ERR, by resource.
    pub errored: Vec<u32>,
    pub input_errors: usize,
    pub eos: usize,
    /// Output RESOURCE_QUEUE commands answered with an error, by resource.
    pub refused: Vec<u32>,
}

pub const INPUT_SIZE: usize = 256 << 10;

impl Player {
    pub fn new(t: T, format: Format, n_inputs: u32) -> Player {
        let mut p = Player {
            t,
            id: 1,
            inputs: HashMap::new(),
            free_inputs: Vec::new(),
            input_heads: HashMap::new(),
            outputs: HashMap::new(),
            output_heads: HashMap::new(),
            next_output_id: 100,
            n_outputs: 3,
            auto_reconfigure: true,
            frames: Vec::new(),
            events: Vec::new(),
            errored: Vec::new(),
            input_errors: 0,
            eos: 0,
            refused: Vec::new(),
        };
        p.t.post_event_buffers(4);
        ok(&p.t.cmd(&stream_create(p.id)));
        ok(&p.t.cmd(&set_output_format(p.id, format)));
        for res in 0..n_inputs {
            let addr = p.t.g.alloc(INPUT_SIZE);
            let (req, e) = resource_create(
                p.id,
                QueueType::Input,
                res,
                &[0],
                &[MemEntry {
                    addr: addr.0,
                    length: INPUT_SIZE as u32,
                }],
            );
            ok(&p.t.cmd(&[req, e].concat()));
            p.inputs.insert(res, addr);
            p.free_inputs.push(res);
        }
        p
    }

    pub fn fake(format: Format) -> Player {
        Player::new(T::fake(), format, 2)
    }

    /// Queue one input buffer holding `bytes` (waiting for a free one first).
    pub fn feed(&mut self, bytes: &[u8], timestamp: u64) {
        self.process();
        let res = self
            .free_inputs
            .pop()
            .expect("no input buffer came back: the device stopped consuming");
        let addr = self.inputs[&res];
        self.t.g.mem.write_slice(bytes, addr).unwrap();
        let head = self.t.send(
            &[&queue(
                self.id,
                QueueType::Input,
                res,
                timestamp,
                bytes.len() as u32,
            )],
            &[RESP],
        );
        self.input_heads.insert(head, res);
        self.process();
    }

    /// Handle every answer so far, until nothing new comes.
    pub fn process(&mut self) {
        loop {
            let answers = self.t.drain_backlog();
            if answers.is_empty() {
                return;
            }
            for a in answers {
                self.handle(a);
            }
        }
    }

    pub fn handle(&mut self, a: Answer) {
        if a.queue == QueueIndex::Event {
            let e = a.event();
            self.events.push(e);
            self.t.post_event_buffers(1);
            if e.event_type == event::DECODER_RESOLUTION_CHANGED && self.auto_reconfigure {
                self.reconfigure();
            }
            return;
        }
        if let Some(res) = self.input_heads.remove(&a.head) {
            self.free_inputs.push(res);
            if a.type_() != wire::resp::OK_RESOURCE_QUEUE {
                self.input_errors += 1;
                return;
            }
            let r = a.queue_resp();
            if r.flags & buffer_flag::ERR != 0 {
                self.input_errors += 1;
            }
            return;
        }
        if let Some(res) = self.output_heads.remove(&a.head) {
            if a.type_() != wire::resp::OK_RESOURCE_QUEUE {
                // Refused (a fault, a failed stream): the buffer is not on the device.
                self.refused.push(res);
                return;
            }
            let r = a.queue_resp();
            if r.flags & buffer_flag::ERR != 0 {
                self.errored.push(res);
                return;
            }
            if r.flags & buffer_flag::EOS != 0 {
                self.eos += 1;
            } else {
                let (addr, len, w, h) = self.outputs[&res];
                let crc = crc32fast::hash(&self.t.g.read(addr, len));
                self.frames.push(Seen {
                    width: w,
                    height: h,
                    crc,
                    timestamp: r.timestamp,
                    resource: res,
                });
            }
            self.queue_output(res);
        }
        // Answers to commands sent with `send` and not waited for: nothing to do.
    }

    fn queue_output(&mut self, res: u32) {
        if !self.outputs.contains_key(&res) {
            return;
        }
        let head = self
            .t
            .send(&[&queue(self.id, QueueType::Output, res, 0, 0)], &[RESP]);
        self.output_heads.insert(head, res);
    }

    /// The driver's side of a resolution change: clear and destroy the old output
    /// buffers, create new ones from GET_PARAMS(output), queue them all.
    pub fn reconfigure(&mut self) {
        ok(&self.t.cmd(
            &QueueClear {
                queue_type: QueueType::Output,
            }
            .encode(self.id),
        ));
        ok(&self.t.cmd(
            &ResourceDestroyAll {
                queue_type: QueueType::Output,
            }
            .encode(self.id),
        ));
        self.outputs.clear();
        let p = params_of(&self.t.cmd(&get_params(self.id, QueueType::Output)));
        let planes = &p.plane_formats[..p.num_planes as usize];
        let total: u32 = planes.iter().map(|pl| pl.plane_size).sum();
        let mut offsets = Vec::new();
        let mut at = 0;
        for pl in planes {
            offsets.push(at);
            at += pl.plane_size;
        }
        let mut ids = Vec::new();
        for _ in 0..self.n_outputs {
            let res = self.next_output_id;
            self.next_output_id += 1;
            let addr = self.t.g.alloc(total as usize);
            let (req, e) = resource_create(
                self.id,
                QueueType::Output,
                res,
                &offsets,
                &[MemEntry {
                    addr: addr.0,
                    length: total,
                }],
            );
            ok(&self.t.cmd(&[req, e].concat()));
            self.outputs
                .insert(res, (addr, total as usize, p.frame_width, p.frame_height));
            ids.push(res);
        }
        for res in ids {
            self.queue_output(res);
        }
    }

    pub fn drain(&mut self) {
        ok(&self.t.cmd(&StreamDrain.encode(self.id)));
        self.process();
    }

    pub fn resolution_events(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.event_type == event::DECODER_RESOLUTION_CHANGED)
            .count()
    }
}

fn sizes(frames: &[Seen]) -> Vec<(u32, u32)> {
    frames.iter().map(|f| (f.width, f.height)).collect()
}

#[test]
fn first_picture_raises_the_event_and_frames_carry_their_input_timestamp() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(0x67, 0, 0, 0), 5); // "SPS": no picture
    assert!(p.events.is_empty());
    for i in 0..4u64 {
        p.feed(&nal(fake::NOW, 32, 16, i as u8 + 40), 1000 + i);
    }
    assert_eq!(p.resolution_events(), 1);
    assert_eq!(p.events[0].stream_id, 1);
    assert_eq!(sizes(&p.frames), vec![(32, 16); 4]);
    let ts: Vec<u64> = p.frames.iter().map(|f| f.timestamp).collect();
    assert_eq!(ts, vec![1000, 1001, 1002, 1003]);
    // Frame bytes: Y = fill, then UV interleaved (128, fill/2), exactly the reference.
    let expected =
        reference::converted(&fake::picture(32, 16, 43).as_picture(), OutputFormat::Nv12);
    assert_eq!(p.frames[3].crc, crc32fast::hash(&expected));
    let params = params_of(&p.t.cmd(&get_params(1, QueueType::Output)));
    assert_eq!(
        (params.frame_width, params.frame_height, params.num_planes),
        (32, 16, 2)
    );
    assert_eq!((params.crop.width, params.crop.height), (32, 16));
    assert_eq!(
        (
            params.plane_formats[0].plane_size,
            params.plane_formats[0].stride
        ),
        (512, 32)
    );
    assert_eq!(
        (
            params.plane_formats[1].plane_size,
            params.plane_formats[1].stride
        ),
        (256, 32)
    );
    assert_eq!(p.input_errors, 0);
}

#[test]
fn several_nal_units_in_one_input_buffer() {
    let mut p = Player::fake(Format::Argb8888);
    let bytes = [
        nal(0x67, 0, 0, 0),
        nal(fake::NOW, 16, 16, 1),
        nal(fake::NOW, 16, 16, 2),
    ]
    .concat();
    p.feed(&bytes, 9);
    p.feed(&nal(fake::NOW, 16, 16, 3), 10);
    assert_eq!(sizes(&p.frames), vec![(16, 16); 3]);
    assert_eq!(
        p.frames.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
        vec![9, 9, 10]
    );
}

#[test]
fn resolution_change_midway_waits_for_new_buffers() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 32, 32, 1), 1);
    p.feed(&nal(fake::NOW, 32, 32, 2), 2);
    assert_eq!(p.frames.len(), 2);
    p.auto_reconfigure = false;
    let old: Vec<u32> = p.outputs.keys().copied().collect();
    let before: Vec<Vec<u8>> = old
        .iter()
        .map(|r| {
            let (a, l, _, _) = p.outputs[r];
            p.t.g.read(a, l)
        })
        .collect();
    p.feed(&nal(fake::NOW, 64, 48, 3), 3);
    assert_eq!(p.resolution_events(), 2);
    assert_eq!(p.frames.len(), 2, "the new-size frame waits");
    assert_eq!(p.t.dev.stream(1).unwrap().held(), 1);
    // The old buffers were not touched.
    for (r, b) in old.iter().zip(&before) {
        let (a, l, _, _) = p.outputs[r];
        assert_eq!(&p.t.g.read(a, l), b, "old-size buffer {r} written");
    }
    // Input keeps its back-pressure: the next buffer is consumed only once the frame left.
    p.reconfigure();
    p.process();
    assert!(
        old.iter().all(|r| p.errored.contains(r)),
        "the clear returned every old buffer flagged ERR"
    );
    assert_eq!(sizes(&p.frames), vec![(32, 32), (32, 32), (64, 48)]);
    assert_eq!(p.frames[2].timestamp, 3);
    assert!(!old.contains(&p.frames[2].resource));
    p.auto_reconfigure = true;
    p.feed(&nal(fake::NOW, 64, 48, 4), 4);
    assert_eq!(p.frames.len(), 4);
}

#[test]
fn a_format_change_by_the_driver_retires_old_buffers_too() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    ok(&p.t.cmd(&set_output_format(1, Format::Argb8888)));
    p.feed(&nal(fake::NOW, 16, 16, 2), 2);
    assert_eq!(p.frames.len(), 1, "NV12 buffers do not take an ARGB frame");
    p.reconfigure();
    p.process();
    assert_eq!(p.frames.len(), 2);
    let expected = reference::converted(
        &fake::picture(16, 16, 2).as_picture(),
        OutputFormat::Argb8888,
    );
    assert_eq!(p.frames[1].crc, crc32fast::hash(&expected));
}

#[test]
fn drain_flushes_then_returns_an_eos_buffer() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    p.feed(&nal(fake::ON_FLUSH, 16, 16, 2), 2);
    assert_eq!(p.frames.len(), 1);
    p.drain();
    assert_eq!(p.frames.len(), 2, "the flushed picture comes before EOS");
    assert_eq!(p.frames[1].timestamp, 2);
    assert_eq!(p.eos, 1);
    // The stream goes on after a drain.
    p.feed(&nal(fake::NOW, 16, 16, 3), 3);
    assert_eq!(p.frames.len(), 3);
}

#[test]
fn drain_waits_for_queued_input_and_for_an_output_buffer() {
    let mut p = Player::fake(Format::Nv12);
    p.n_outputs = 1;
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    assert_eq!(p.frames.len(), 1);
    // Take the only output buffer's re-queue away by destroying the outputs: the drain
    // must wait for a buffer before its EOS.
    p.auto_reconfigure = false;
    ok(&p.t.cmd(
        &QueueClear {
            queue_type: QueueType::Output,
        }
        .encode(1),
    ));
    p.process();
    p.feed(&nal(fake::NOW, 16, 16, 2), 2);
    p.drain();
    assert_eq!(p.eos, 0);
    let res = *p.outputs.keys().next().unwrap();
    p.queue_output(res);
    let answers = p.t.drain_backlog();
    assert_eq!(
        answers.len(),
        1,
        "the one buffer takes the held frame, not the EOS"
    );
    assert_eq!(answers[0].queue_resp().flags, 0);
    for a in answers {
        p.handle(a); // records the frame, re-queues the buffer: that one gets the EOS
    }
    p.process();
    assert_eq!(p.frames.len(), 2);
    assert_eq!(p.eos, 1);
}

#[test]
fn queue_clear_returns_pending_buffers_flagged_err() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    let pending = p.output_heads.len();
    assert_eq!(pending, 3);
    p.auto_reconfigure = false;
    let head = p.t.send(
        &[&QueueClear {
            queue_type: QueueType::Output,
        }
        .encode(1)],
        &[RESP],
    );
    let answers = p.t.drain_backlog();
    let errs: Vec<_> = answers
        .iter()
        .filter(|a| p.output_heads.contains_key(&a.head))
        .collect();
    assert_eq!(errs.len(), 3);
    assert!(errs
        .iter()
        .all(|a| a.queue_resp().flags == buffer_flag::ERR));
    let pos_clear = answers.iter().position(|a| a.head == head).unwrap();
    assert_eq!(
        pos_clear,
        answers.len() - 1,
        "buffers come back before the clear's answer"
    );
    ok(&answers[pos_clear]);
}

#[test]
fn input_clear_returns_inputs_and_drops_held_pictures() {
    let mut p = Player::fake(Format::Nv12);
    p.auto_reconfigure = false;
    p.feed(&nal(fake::NOW, 16, 16, 1), 1); // held: no output buffers yet
    p.feed(&nal(fake::NOW, 16, 16, 2), 2); // not consumed: back-pressure
    assert_eq!(
        p.free_inputs.len(),
        1,
        "the first input is consumed, its picture held"
    );
    ok(&p.t.cmd(
        &QueueClear {
            queue_type: QueueType::Input,
        }
        .encode(1),
    ));
    p.process();
    assert_eq!(p.free_inputs.len(), 2);
    assert_eq!(
        p.input_errors, 1,
        "the unconsumed input came back flagged ERR"
    );
    assert_eq!(p.t.dev.stream(1).unwrap().held(), 0);
}

#[test]
fn stream_destroy_returns_every_pending_chain_first() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    let pending: Vec<u16> = p.output_heads.keys().copied().collect();
    let head = p.t.send(&[&StreamDestroy.encode(1)], &[RESP]);
    let answers = p.t.drain_backlog();
    for h in &pending {
        let a = answers
            .iter()
            .find(|a| a.head == *h)
            .expect("pending chain answered");
        assert_eq!(a.queue_resp().flags, buffer_flag::ERR);
    }
    assert_eq!(answers.last().unwrap().head, head);
    ok(answers.last().unwrap());
    assert!(p.t.dev.stream(1).is_none());
}

#[test]
fn a_broken_nal_flags_its_input_and_decoding_goes_on() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::BROKEN, 0, 0, 0), 1);
    p.feed(&nal(fake::NOW, 16, 16, 1), 2);
    p.process();
    assert_eq!(p.input_errors, 1);
    assert_eq!(p.frames.len(), 1);
}

#[test]
fn a_picture_larger_than_offered_fails_the_stream_with_an_error_event() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 4000, 16, 1), 1);
    assert_eq!(p.events.last().map(|e| e.event_type), Some(event::ERROR));
    assert!(p.t.dev.stream(1).unwrap().failed());
    err(
        &p.t.cmd(&queue(1, QueueType::Input, 0, 0, 1)),
        wire::ErrorCode::InvalidOperation,
    );
}

#[test]
fn events_wait_for_buffers() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let buf = t.g.alloc(4096);
    let (req, e) = resource_create(
        1,
        QueueType::Input,
        0,
        &[0],
        &[MemEntry {
            addr: buf.0,
            length: 4096,
        }],
    );
    ok(&t.cmd(&[req, e].concat()));
    t.g.mem
        .write_slice(&nal(fake::NOW, 16, 16, 0), buf)
        .unwrap();
    let _ = t.send(&[&queue(1, QueueType::Input, 0, 0, 11)], &[RESP]);
    assert_eq!(t.dev.pending_events(), 1, "no buffer posted yet");
    let input = t.answers();
    assert_eq!(input.len(), 1, "only the input buffer came back");
    t.post_event_buffers(1);
    let answers = t.answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].event(),
        Event {
            event_type: event::DECODER_RESOLUTION_CHANGED,
            stream_id: 1
        }
    );
    assert_eq!(t.dev.pending_events(), 0);
    // A buffer that is readable or short goes straight back, unused.
    let chain = t.chain(&[b"12345678"], &[8]);
    let mem = t.g.mem.clone();
    t.dev.event_buffer(&mem, chain);
    let chain = t.chain(&[], &[4]);
    t.dev.event_buffer(&mem, chain);
    let answers = t.answers();
    assert_eq!(
        answers.iter().map(|a| a.len).collect::<Vec<_>>(),
        vec![0, 0]
    );
}

#[test]
fn a_changed_memory_table_is_what_every_write_checks() {
    let mut p = Player::fake(Format::Nv12);
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    assert_eq!(p.frames.len(), 1);
    // QEMU replaces the memory table with one that ends below the output buffers (and
    // below the chains that queued them). The input and a new chain are copied into it.
    let first_output = p.outputs.values().map(|o| o.0 .0).min().unwrap();
    let table = GuestMemoryMmap::<()>::from_ranges(&[(
        GuestAddress(RAM_BASE),
        (first_output - RAM_BASE) as usize,
    )])
    .unwrap();
    let bytes = nal(fake::NOW, 16, 16, 2);
    let res = p.free_inputs.pop().unwrap();
    table.write_slice(&bytes, p.inputs[&res]).unwrap();
    let request = queue(1, QueueType::Input, res, 2, bytes.len() as u32);
    let req_at = GuestAddress(first_output - 4096);
    let resp_at = GuestAddress(first_output - 2048);
    table.write_slice(&request, req_at).unwrap();
    let chain = p.t.raw_chain(vec![
        crate::core::Desc {
            addr: req_at,
            len: request.len() as u32,
            writable: false,
        },
        crate::core::Desc {
            addr: resp_at,
            len: 64,
            writable: true,
        },
    ]);
    let input_head = chain.head;
    let before: Vec<Vec<u8>> = p.outputs.values().map(|o| p.t.g.read(o.0, o.1)).collect();
    p.t.dev.command(&table, chain);
    let done = p.t.dev.take_completions();
    // The input was decoded and answered in the new table; the output buffer it would
    // have filled is outside it: not written, its chain back with nothing written.
    let input = done
        .iter()
        .find(|c| c.head == input_head)
        .expect("input answered");
    assert_eq!(input.len, 24);
    let output = done
        .iter()
        .find(|c| p.output_heads.contains_key(&c.head))
        .expect("output chain returned");
    assert_eq!(
        output.len, 0,
        "its response descriptor is outside the new table too"
    );
    let after: Vec<Vec<u8>> = p.outputs.values().map(|o| p.t.g.read(o.0, o.1)).collect();
    assert_eq!(before, after);
}

/// The real thing: a clip from the encoder, decoded through the core into guest memory,
/// every frame's CRC equal to the reference decode's.
fn real_decode(format: Format, segments: &[Segment]) {
    let clip = encode_clip(segments, 30.0).unwrap();
    let out_format = crate::frame::OutputFormat::from_wire(format as u32).unwrap();
    let (expected, _) =
        reference::decode_clip(&mut OpenH264::new().unwrap(), &clip, out_format).unwrap();
    let total: u32 = segments.iter().map(|s| s.frames).sum();
    assert_eq!(expected.len(), total as usize);

    let t = T::new(Box::new(OpenH264Factory), Default::default());
    let mut p = Player::new(t, format, 3);
    let mut from = 0;
    let mut n = 0;
    while let Some(nal) = crate::annexb::next_nal(&clip, from) {
        p.feed(&clip[nal.start..nal.payload.end], n * 33_333_333);
        from = nal.payload.end;
        n += 1;
    }
    p.drain();
    assert_eq!(p.eos, 1);
    let got: Vec<(usize, usize, u32)> = p
        .frames
        .iter()
        .map(|f| (f.width as usize, f.height as usize, f.crc))
        .collect();
    let want: Vec<(usize, usize, u32)> = expected
        .iter()
        .map(|f| (f.width, f.height, f.crc))
        .collect();
    assert_eq!(got, want);
    assert_eq!(p.resolution_events(), segments.len());
    assert_eq!(p.input_errors, 0);
}

#[test]
fn real_decode_argb8888_matches_the_reference() {
    real_decode(
        Format::Argb8888,
        &[Segment {
            width: 320,
            height: 240,
            frames: 10,
        }],
    );
}

#[test]
fn real_decode_nv12_with_a_resolution_change_matches_the_reference() {
    real_decode(
        Format::Nv12,
        &[
            Segment {
                width: 320,
                height: 240,
                frames: 6,
            },
            Segment {
                width: 176,
                height: 144,
                frames: 4,
            },
        ],
    );
}

#[test]
fn the_clip_encoder_is_deterministic_and_probes_as_constrained_baseline() {
    let seg = [Segment {
        width: 64,
        height: 48,
        frames: 3,
    }];
    let a = encode_clip(&seg, 30.0).unwrap();
    assert_eq!(a, encode_clip(&seg, 30.0).unwrap());
    let sps = reference::probe(&a).unwrap();
    assert_eq!((sps.profile_idc, sps.width, sps.height), (66, 64, 48));
    // The pattern moves: consecutive frames differ.
    let (frames, _) =
        reference::decode_clip(&mut OpenH264::new().unwrap(), &a, OutputFormat::Nv12).unwrap();
    assert_eq!(frames.len(), 3);
    assert_ne!(frames[0].crc, frames[1].crc);
}

#[test]
fn probe_names_a_profile_it_refuses() {
    // A High-profile SPS (profile_idc 100), 16x16: hand-assembled bits.
    // profile 100, flags 0, level 30, then ue: sps_id 0 (1), chroma 1 (010), depth 0 (1),
    // depth 0 (1), bypass 0, scaling 0, log2_max_frame_num 0 (1), poc type 0 (1),
    // log2_max_poc 0 (1), max_ref 0 (1), gaps 0, width 0 (1), height 0 (1), frame_mbs 1,
    // direct 1, crop 0, vui 0, stop bit.
    let sps = [
        0,
        0,
        0,
        1,
        0x67,
        100,
        0,
        30,
        0b1010_1100,
        0b1111_0111,
        0b1001_0000,
    ];
    let err = reference::probe(&sps).unwrap_err().to_string();
    assert!(err.contains("High profile (100)"), "{err}");
    assert!(err.contains("Constrained Baseline only"), "{err}");
    assert_eq!(crate::annexb::parse_sps(&sps[4..]).unwrap().width, 16);
    assert!(reference::probe(b"not h264 at all").is_err());
}
