//! Access units, the clip header, and the player against a fake decoder, fake buffers and
//! a fake screen that check the protocol the player must keep.

use alloc::collections::BTreeMap;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use super::annexb::{access_units, nal_units, next_nal};
use super::clip::{bitstream, ClipError};
use super::player::*;

/// A NAL with a 4-byte start code: `nal_type`, then `body`.
fn nal(nal_type: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0x60 | nal_type];
    v.extend_from_slice(body);
    v
}

/// SPS, PPS, IDR (first_mb 0), then `p` P pictures of two slices each.
fn stream(p: usize) -> Vec<u8> {
    let mut s = nal(7, &[0x42, 0x00, 0x1f]);
    s.extend(nal(8, &[0xce]));
    s.extend(nal(5, &[0x88, 0x84]));
    for _ in 0..p {
        s.extend(nal(1, &[0x9a, 0x01])); // first_mb_in_slice 0: a new picture
        s.extend(nal(1, &[0x40, 0x02])); // first_mb_in_slice != 0: same picture
    }
    s
}

#[test]
fn nal_units_are_found_with_either_start_code() {
    let mut s = vec![0xff]; // garbage before the first start code is not a NAL
    s.extend_from_slice(&[0, 0, 1, 0x67, 0x42]);
    s.extend(nal(8, &[0xce, 0x00])); // a trailing zero belongs to the next start code
    let nals = nal_units(&s);
    assert_eq!(nals.len(), 2);
    assert_eq!(nals[0].nal_type, 7);
    assert_eq!(&s[nals[0].payload.clone()], &[0x67, 0x42]);
    assert_eq!(nals[1].nal_type, 8);
    assert_eq!(&s[nals[1].payload.clone()], &[0x68, 0xce]);
    assert!(nal_units(&[0, 0, 0, 0]).is_empty());
    assert!(nal_units(&[]).is_empty());
}

#[test]
fn next_nal_walks_the_stream_one_unit_at_a_time() {
    let mut s = stream(2);
    s.extend_from_slice(&[0, 0, 1, 0, 0, 0, 1]); // an empty NAL, then a bare start code
    s.extend(nal(1, &[0x9a]));
    let all = nal_units(&s);
    assert_eq!(all.len(), 8);
    let mut from = 0;
    let mut walked = Vec::new();
    while let Some(nal) = next_nal(&s, from) {
        assert!(nal.start >= from && nal.payload.end > nal.start);
        from = nal.payload.end;
        walked.push(nal);
    }
    assert_eq!(walked, all);
    // The first NAL's 4-byte start code starts at 0; from a later offset the search
    // never reaches back before it.
    assert_eq!(all[0].start, 0);
    assert_eq!(
        next_nal(&s, all[1].payload.start).map(|n| n.start),
        Some(all[2].start)
    );
    assert_eq!(next_nal(&s, s.len()), None);
    assert_eq!(next_nal(&s, usize::MAX - 1), None);
}

#[test]
fn access_units_group_parameter_sets_with_their_picture_and_slices_by_first_mb() {
    let s = stream(3);
    let units = access_units(&s);
    assert_eq!(units.len(), 4, "{units:?}");
    // The first unit: SPS + PPS + IDR, from the very first byte.
    assert_eq!(units[0].start, 0);
    assert_eq!(nal_units(&s[units[0].clone()]).len(), 3);
    // Each P picture: two slices.
    for unit in &units[1..] {
        let nals = nal_units(&s[unit.clone()]);
        assert_eq!(nals.iter().map(|n| n.nal_type).collect::<Vec<_>>(), [1, 1]);
    }
    // Units tile the stream.
    for pair in units.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert_eq!(units.last().unwrap().end, s.len());
    // A new SPS after pictures starts a unit (a resolution change midway).
    let mut two = stream(1);
    let first_len = two.len();
    two.extend(stream(1));
    let units = access_units(&two);
    assert_eq!(units.len(), 4);
    assert_eq!(units[2].start, first_len);
}

#[test]
fn clip_header_is_checked_against_its_region() {
    let mut region = vec![0u8; 64];
    assert_eq!(bitstream(&region), Err(ClipError::NoClip));
    region[..8].copy_from_slice(b"MNLCLIP1");
    region[8..16].copy_from_slice(&10u64.to_le_bytes());
    assert_eq!(bitstream(&region), Ok(16..26));
    region[8..16].copy_from_slice(&49u64.to_le_bytes());
    assert_eq!(
        bitstream(&region),
        Err(ClipError::TooLong { len: 49, room: 48 })
    );
    region[8..16].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(bitstream(&region), Err(ClipError::Empty));
}

// ---- the player against fakes -------------------------------------------------------

const W: u32 = 64;

/// A decoder model: frames come out in input order; unit `change_at` (if any) changes the
/// size; it checks the order of the v3 sequence and panics on a breach (a test failure).
struct FakeDecoder {
    started: bool,
    inputs: BTreeMap<u32, Slot>,
    outputs: BTreeMap<u32, (Slot, FrameFormat)>,
    queued_inputs: VecDeque<(u32, u64)>,
    queued_outputs: VecDeque<u32>,
    events: VecDeque<DecoderEvent>,
    height: u32,
    change_at: Option<u64>,
    new_height: u32,
    /// Pictures waiting for output buffers of the right size.
    waiting: VecDeque<u64>,
    drain_requested: bool,
    fail_on_poll: Option<usize>,
    polls: usize,
    error_event_after: Option<u64>,
    frames_out: u64,
    stopped: usize,
    next_output: u32,
}

impl FakeDecoder {
    fn new() -> Self {
        FakeDecoder {
            started: false,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            queued_inputs: VecDeque::new(),
            queued_outputs: VecDeque::new(),
            events: VecDeque::new(),
            height: 32,
            change_at: None,
            new_height: 48,
            waiting: VecDeque::new(),
            drain_requested: false,
            fail_on_poll: None,
            polls: 0,
            error_event_after: None,
            frames_out: 0,
            stopped: 0,
            next_output: 100,
        }
    }

    fn format(&self) -> FrameFormat {
        FrameFormat {
            width: W,
            height: self.height,
            stride: W * 4,
            size: u64::from(W * self.height * 4),
        }
    }

    /// The device's work between polls.
    fn run(&mut self) {
        while let Some((resource, ts)) = self.queued_inputs.pop_front() {
            if ts == 0 && self.outputs.is_empty() || Some(ts) == self.change_at {
                if Some(ts) == self.change_at {
                    self.height = self.new_height;
                }
                self.events.push_back(DecoderEvent::ResolutionChanged);
            }
            self.waiting.push_back(ts);
            self.events.push_back(DecoderEvent::InputDone { resource });
        }
        let size = self.format();
        while let Some(&ts) = self.waiting.front() {
            let Some(pos) = self
                .queued_outputs
                .iter()
                .position(|r| self.outputs[r].1 == size)
            else {
                break;
            };
            let resource = self.queued_outputs.remove(pos).unwrap();
            self.waiting.pop_front();
            self.frames_out += 1;
            self.events.push_back(DecoderEvent::Frame {
                resource,
                timestamp: ts,
                eos: false,
                error: false,
            });
            if Some(self.frames_out) == self.error_event_after {
                self.events.push_back(DecoderEvent::Error);
            }
        }
        if self.drain_requested && self.waiting.is_empty() {
            if let Some(resource) = self.queued_outputs.pop_front() {
                self.drain_requested = false;
                self.events.push_back(DecoderEvent::Frame {
                    resource,
                    timestamp: 0,
                    eos: true,
                    error: false,
                });
            }
        }
    }
}

impl Decoder for FakeDecoder {
    fn start(&mut self, input_bytes: u64) -> Result<(), PlayError> {
        assert!(!self.started, "start twice");
        assert!(input_bytes > 0 && input_bytes.is_multiple_of(4096));
        self.started = true;
        Ok(())
    }
    fn add_input(&mut self, slot: &Slot) -> Result<u32, PlayError> {
        assert!(self.started);
        let resource = 1 + self.inputs.len() as u32;
        self.inputs.insert(resource, *slot);
        Ok(resource)
    }
    fn queue_input(&mut self, resource: u32, timestamp: u64, bytes: u32) -> Result<(), PlayError> {
        let slot = self
            .inputs
            .get(&resource)
            .expect("queue of an unknown input");
        assert!(u64::from(bytes) <= slot.len);
        assert!(
            !self.queued_inputs.iter().any(|(r, _)| *r == resource),
            "input {resource} queued twice"
        );
        self.queued_inputs.push_back((resource, timestamp));
        Ok(())
    }
    fn output_format(&mut self) -> Result<FrameFormat, PlayError> {
        Ok(self.format())
    }
    fn add_output(&mut self, slot: &Slot, format: &FrameFormat) -> Result<u32, PlayError> {
        assert!(slot.len >= format.size);
        self.next_output += 1;
        self.outputs.insert(self.next_output, (*slot, *format));
        Ok(self.next_output)
    }
    fn queue_output(&mut self, resource: u32) -> Result<(), PlayError> {
        assert!(
            self.outputs.contains_key(&resource),
            "queue of unknown output {resource}"
        );
        assert!(
            !self.queued_outputs.contains(&resource),
            "output {resource} queued twice"
        );
        self.queued_outputs.push_back(resource);
        Ok(())
    }
    fn poll(&mut self) -> Result<Option<DecoderEvent>, PlayError> {
        self.polls += 1;
        if Some(self.polls) == self.fail_on_poll {
            return Err(PlayError::new("resource queue", "error response 0x300"));
        }
        self.run();
        Ok(self.events.pop_front())
    }
    fn drain(&mut self) -> Result<(), PlayError> {
        self.drain_requested = true;
        Ok(())
    }
    fn drop_outputs(&mut self) -> Result<(), PlayError> {
        for resource in self.queued_outputs.drain(..) {
            self.events.push_front(DecoderEvent::Frame {
                resource,
                timestamp: 0,
                eos: false,
                error: true,
            });
        }
        self.outputs.clear();
        // The flagged buffers are gone with their resources: drop the events too.
        self.events
            .retain(|e| !matches!(e, DecoderEvent::Frame { error: true, .. }));
        Ok(())
    }
    fn stop(&mut self) {
        self.stopped += 1;
        self.inputs.clear();
        self.outputs.clear();
        self.queued_inputs.clear();
        self.queued_outputs.clear();
        self.events.clear();
        self.started = false;
    }
}

#[derive(Default)]
struct FakeBuffers {
    next: u32,
    live: BTreeMap<u32, Slot>,
    fills: usize,
    fail_frame_alloc: bool,
}

impl Buffers for FakeBuffers {
    fn alloc(&mut self, kind: BufferKind, bytes: u64) -> Result<Slot, PlayError> {
        if kind == BufferKind::Frame && self.fail_frame_alloc {
            return Err(PlayError::new("frame buffer", "out of CMA"));
        }
        self.next += 1;
        let bus = 0x5000_0000 + u64::from(self.next) * 0x10_0000;
        let slot = Slot {
            handle: self.next,
            bus,
            len: bytes,
            display_bus: (kind == BufferKind::Frame).then_some(bus),
        };
        self.live.insert(self.next, slot);
        Ok(slot)
    }
    fn fill(&mut self, slot: &Slot, bytes: &[u8]) -> Result<(), PlayError> {
        assert!(
            self.live.contains_key(&slot.handle),
            "fill of a freed buffer"
        );
        assert!(bytes.len() as u64 <= slot.len);
        self.fills += 1;
        Ok(())
    }
    fn free(&mut self, slot: Slot) {
        assert!(
            self.live.remove(&slot.handle).is_some(),
            "double free of {}",
            slot.handle
        );
    }
}

#[derive(Default)]
struct FakeScreen {
    resources: BTreeMap<usize, (Slot, FrameFormat)>,
    shown: Vec<(usize, u32)>,
}

impl Screen for FakeScreen {
    fn add(&mut self, index: usize, slot: &Slot, format: &FrameFormat) -> Result<(), PlayError> {
        assert!(self.resources.insert(index, (*slot, *format)).is_none());
        Ok(())
    }
    fn show(&mut self, index: usize, format: &FrameFormat) -> Result<(), PlayError> {
        let (_, made_for) = self
            .resources
            .get(&index)
            .expect("show of a resource never added");
        assert_eq!(made_for, format, "shown at another size than its resource");
        self.shown.push((index, format.height));
        Ok(())
    }
    fn remove_all(&mut self) {
        self.resources.clear();
    }
    fn keep_only(&mut self, index: usize) {
        self.resources.retain(|&i, _| i == index);
    }
}

struct Rig {
    clip: Vec<u8>,
    decoder: FakeDecoder,
    buffers: FakeBuffers,
    screen: FakeScreen,
}

impl Rig {
    fn new(pictures: usize) -> Rig {
        Rig {
            clip: stream(pictures - 1),
            decoder: FakeDecoder::new(),
            buffers: FakeBuffers::default(),
            screen: FakeScreen::default(),
        }
    }
    fn start(&mut self, looping: bool) -> Result<Player, PlayError> {
        let units = access_units(&self.clip);
        Player::start(
            &self.clip,
            units,
            looping,
            &mut self.decoder,
            &mut self.buffers,
        )
    }
    fn step(&mut self, player: &mut Player, now: u64) -> Result<Vec<Shown>, PlayError> {
        player.step(
            &self.clip,
            now,
            &mut self.decoder,
            &mut self.buffers,
            &mut self.screen,
        )
    }
    fn run_to_end(&mut self, player: &mut Player, max_steps: usize) -> Vec<Shown> {
        let mut shown = Vec::new();
        for step in 0..max_steps {
            shown.extend(self.step(player, step as u64 * 33_000).unwrap());
            if player.is_over() {
                break;
            }
        }
        shown
    }
    /// A finished play keeps exactly its last frame on screen; stopping frees it.
    fn finish_and_stop(&mut self, player: &mut Player) {
        assert_eq!(player.state(), &State::Finished);
        assert_eq!(self.buffers.live.len(), 1, "only the last frame stays");
        assert_eq!(self.screen.resources.len(), 1);
        let (&index, _) = self.screen.resources.iter().next().unwrap();
        assert_eq!(
            self.screen.shown.last().map(|s| s.0),
            Some(index),
            "it is the last shown"
        );
        assert!(player.holds_buffers());
        player.stop(&mut self.decoder, &mut self.buffers, &mut self.screen);
        assert!(!player.holds_buffers());
        assert_eq!(
            player.state(),
            &State::Finished,
            "stopping a finished play keeps its verdict"
        );
        self.nothing_held();
    }

    fn nothing_held(&self) {
        assert!(
            self.buffers.live.is_empty(),
            "buffers leaked: {:?}",
            self.buffers.live
        );
        assert!(self.screen.resources.is_empty(), "screen resources left");
        assert!(
            self.decoder.stopped >= 1 && !self.decoder.started,
            "stream not destroyed"
        );
    }
}

#[test]
fn a_clip_plays_to_the_end_every_frame_shown_once_and_nothing_left() {
    let mut rig = Rig::new(20);
    let mut player = rig.start(false).unwrap();
    assert_eq!(player.state(), &State::WaitingForFormat);
    let shown = rig.run_to_end(&mut player, 200);
    assert_eq!(player.state(), &State::Finished);
    assert_eq!(shown.len(), 20);
    assert_eq!(player.stats().frames_shown, 20);
    assert!(shown.iter().enumerate().all(|(i, s)| s.number == i as u64));
    // The buffer on screen is never the one the decoder writes next: consecutive frames
    // are in different buffers.
    for pair in rig.screen.shown.windows(2) {
        assert_ne!(pair[0].0, pair[1].0);
    }
    assert_eq!(
        rig.buffers.fills, 20,
        "each access unit copied into a bitstream buffer once"
    );
    rig.finish_and_stop(&mut player);
}

#[test]
fn frame_rate_is_frames_between_first_and_last_over_the_time_between() {
    let stats = Stats {
        frames_shown: 31,
        first_frame_us: Some(1_000_000),
        last_frame_us: Some(2_000_000),
        ..Stats::default()
    };
    assert_eq!(stats.millifps(), Some(30_000));
    let one = Stats {
        frames_shown: 1,
        first_frame_us: Some(5),
        last_frame_us: Some(5),
        ..Stats::default()
    };
    assert_eq!(one.millifps(), None);
}

#[test]
fn a_resolution_change_midway_replaces_every_frame_buffer() {
    let mut rig = Rig::new(12);
    rig.decoder.change_at = Some(6);
    let mut player = rig.start(false).unwrap();
    let shown = rig.run_to_end(&mut player, 200);
    assert_eq!(player.state(), &State::Finished);
    assert_eq!(shown.len(), 12);
    assert_eq!(player.stats().resolution_changes, 1);
    let heights: Vec<u32> = shown.iter().map(|s| s.format.height).collect();
    assert_eq!(&heights[..6], &[32; 6]);
    assert_eq!(&heights[6..], &[48; 6]);
    assert!(shown[6..]
        .iter()
        .all(|s| s.slot.len >= u64::from(W * 48 * 4)));
    rig.finish_and_stop(&mut player);
}

#[test]
fn looping_restarts_from_the_first_unit_and_stop_frees_everything() {
    let mut rig = Rig::new(5);
    let mut player = rig.start(true).unwrap();
    let mut shown = 0;
    for step in 0..100 {
        shown += rig.step(&mut player, step).unwrap().len();
    }
    assert!(shown > 10, "looping showed {shown} frames");
    assert!(player.stats().loops >= 2);
    assert_eq!(player.state(), &State::Playing);
    player.stop(&mut rig.decoder, &mut rig.buffers, &mut rig.screen);
    assert_eq!(player.state(), &State::Stopped);
    rig.nothing_held();
    // Stopping twice is harmless.
    player.stop(&mut rig.decoder, &mut rig.buffers, &mut rig.screen);
}

#[test]
fn a_failed_command_or_an_error_event_ends_the_play_with_nothing_leaked() {
    let mut rig = Rig::new(10);
    rig.decoder.fail_on_poll = Some(7);
    let mut player = rig.start(false).unwrap();
    let mut error = None;
    for step in 0..50 {
        if let Err(e) = rig.step(&mut player, step) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the failure must surface");
    assert_eq!(error.step, "resource queue");
    assert!(matches!(player.state(), State::Failed(_)));
    rig.nothing_held();
    // After the failure the player does nothing more.
    assert_eq!(rig.step(&mut player, 99).unwrap(), vec![]);

    let mut rig = Rig::new(10);
    rig.decoder.error_event_after = Some(3);
    let mut player = rig.start(false).unwrap();
    let outcome: Result<Vec<_>, _> = (0..50).map(|s| rig.step(&mut player, s)).collect();
    assert!(outcome.unwrap_err().reason.contains("error"));
    rig.nothing_held();
}

#[test]
fn a_decoder_that_goes_silent_is_a_stall_and_the_play_fails_clean() {
    let mut rig = Rig::new(10);
    let mut player = rig.start(true).unwrap();
    for step in 0..3 {
        rig.step(&mut player, step).unwrap();
    }
    // From now on the device answers nothing: a fresh fake has nothing to report.
    let mut silent = FakeDecoder::new();
    silent.started = true;
    rig.decoder = silent;
    assert!(
        rig.step(&mut player, 1_000_000).unwrap().is_empty(),
        "silence under 3 s is fine"
    );
    let error = rig.step(&mut player, 5_000_000).unwrap_err();
    assert!(error.reason.contains("stalled"), "{error}");
    assert!(matches!(player.state(), State::Failed(_)));
    assert!(rig.buffers.live.is_empty(), "buffers leaked after a stall");
    assert!(rig.screen.resources.is_empty());
    assert_eq!(
        rig.decoder.stopped, 1,
        "the stream is torn down (a reset for a stalled device)"
    );
}

#[test]
fn a_frame_buffer_allocation_failure_frees_what_was_made() {
    let mut rig = Rig::new(4);
    rig.buffers.fail_frame_alloc = true;
    let mut player = rig.start(false).unwrap();
    let outcome: Result<Vec<_>, _> = (0..10).map(|s| rig.step(&mut player, s)).collect();
    assert_eq!(outcome.unwrap_err().step, "frame buffer");
    rig.nothing_held();
}

#[test]
fn an_empty_clip_is_refused_before_anything_is_made() {
    let mut rig = Rig::new(1);
    let error = Player::start(&[], vec![], false, &mut rig.decoder, &mut rig.buffers)
        .err()
        .unwrap();
    assert_eq!(error.step, "clip");
    assert!(!rig.decoder.started);
    assert!(rig.buffers.live.is_empty());
}
