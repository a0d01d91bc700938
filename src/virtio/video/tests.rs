//! Host tests of the virtio-video decoder driver against the fake decoder (`fake.rs`) on
//! the fake virtio device: the decoder sequence, drain, clear, every error path (each
//! must leave no DMA page behind), stalls and resets, and the chain shapes rust-vmm's
//! strict device demands.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::driver::{Completion, VideoDecoder, VideoError};
use super::fake::{Corrupt, FakeDecoder, FEATURES, INPUT_BUFFER_SIZE};
use super::wire::{cmd, feature, ErrorCode, Event, Format, Params, QueueType};
use crate::virtio::fake::{Fake, FakeHal, FakeRegs, Misbehaviour};
use crate::virtio::hal::{DmaRegion, Hal};
use crate::virtio::transport::feature::VERSION_1;
use crate::virtio::{id, VirtioError};

const WAIT: u64 = 50_000_000;

struct Rig {
    hal: FakeHal,
    fake: Rc<RefCell<Fake>>,
    dec: Rc<RefCell<FakeDecoder>>,
    driver: Option<VideoDecoder<FakeHal, FakeRegs>>,
    /// The caller's buffers (dma-bufs' stand-ins), by queue.
    buffers: Vec<(QueueType, DmaRegion)>,
    /// DMA pages out once the driver is up (its queues, command and event pages).
    baseline: usize,
}

impl Rig {
    fn new() -> Self {
        Self::with(FEATURES, |_| {})
    }

    fn with(features: u64, tweak: impl FnOnce(&mut FakeDecoder)) -> Self {
        let mut model = FakeDecoder::new(320, 240);
        tweak(&mut model);
        let config = model.config();
        let dec = Rc::new(RefCell::new(model));
        let (hal, regs, fake) = Fake::new(
            id::VIDEO_DECODER,
            features,
            2,
            256,
            config,
            Box::new(dec.clone()),
        );
        let driver = VideoDecoder::new(hal.clone(), regs).unwrap();
        let baseline = fake.borrow().memory.outstanding_pages();
        Rig {
            hal,
            fake,
            dec,
            driver: Some(driver),
            buffers: Vec::new(),
            baseline,
        }
    }

    fn d(&mut self) -> &mut VideoDecoder<FakeHal, FakeRegs> {
        self.driver.as_mut().unwrap()
    }

    fn pages(&self) -> usize {
        self.fake.borrow().memory.outstanding_pages()
    }

    /// DMA pages the driver holds beyond its baseline (the caller's buffers excluded).
    fn driver_pages(&self) -> usize {
        let callers: usize = self.buffers.iter().map(|(_, b)| b.pages()).sum();
        self.pages() - callers - self.baseline
    }

    /// A caller's buffer of at least `bytes` for `queue`.
    fn buffer(&mut self, queue: QueueType, bytes: u64) -> (u64, u64) {
        let region = self.hal.dma_alloc((bytes as usize).div_ceil(4096)).unwrap();
        let at = (region.paddr(), region.len() as u64);
        self.buffers.push((queue, region));
        at
    }

    fn free_buffers(&mut self, queue: QueueType) {
        let (gone, kept) = core::mem::take(&mut self.buffers)
            .into_iter()
            .partition(|(q, _)| *q == queue);
        self.buffers = kept;
        for (_, region) in gone {
            self.hal.dma_free(region).unwrap();
        }
    }

    /// Up to a stream with `inputs` bitstream resources; returns their ids.
    fn start(&mut self, inputs: usize) -> Result<Vec<u32>, VideoError> {
        let caps_in = self.d().query_capability(QueueType::Input)?;
        assert_eq!(caps_in[0].format, Format::H264 as u32);
        let caps_out = self.d().query_capability(QueueType::Output)?;
        assert_eq!(caps_out.len(), 2);
        let stream = self.d().stream_create(Format::H264)?;
        assert_eq!(self.d().stream_id(), Some(stream));
        let params = self
            .d()
            .set_params(Params::new(QueueType::Input, Format::H264))?;
        assert_eq!(params.plane_formats[0].plane_size, INPUT_BUFFER_SIZE);
        let mut ids = Vec::new();
        for _ in 0..inputs {
            let (paddr, len) = self.buffer(QueueType::Input, u64::from(INPUT_BUFFER_SIZE));
            ids.push(self.d().resource_create(QueueType::Input, paddr, len)?);
        }
        Ok(ids)
    }

    /// Output resources for `params`, all queued; returns their ids.
    fn outputs(&mut self, params: &Params, count: usize) -> Result<Vec<u32>, VideoError> {
        let size = params.buffer_size().unwrap();
        let mut ids = Vec::new();
        for _ in 0..count {
            let (paddr, len) = self.buffer(QueueType::Output, size);
            ids.push(self.d().resource_create(QueueType::Output, paddr, len)?);
        }
        for &id in &ids {
            self.d().queue_output(id)?;
        }
        Ok(ids)
    }

    /// Start, queue one bitstream, take the resolution change, queue 3 outputs: playing.
    fn playing(&mut self) -> Result<(Vec<u32>, Vec<u32>), VideoError> {
        let inputs = self.start(2)?;
        self.d().queue_input(inputs[0], 1000, 1_000)?;
        let params = match self.d().wait(WAIT)? {
            Some(Completion::ResolutionChanged(p)) => p,
            other => panic!("expected a resolution change, got {other:?}"),
        };
        let outputs = self.outputs(&params, 3)?;
        Ok((inputs, outputs))
    }

    /// Everything the driver sent was well-formed and shaped as rust-vmm wants.
    fn check_clean(&self) {
        let dec = self.dec.borrow();
        assert!(dec.malformed.is_empty(), "{:?}", dec.malformed);
        let fake = self.fake.borrow();
        assert!(fake.violations.is_empty(), "{:?}", fake.violations);
        assert!(
            dec.entry_counts.iter().all(|&n| n == 1),
            "{:?}",
            dec.entry_counts
        );
        // Each command chain against the command it carried: one readable descriptor of
        // exactly the request struct (RESOURCE_CREATE: and one 16-byte entry), one
        // writable descriptor.
        let commands = fake.shapes.iter().filter(|s| s.queue == 0);
        assert_eq!(commands.clone().count(), dec.commands.len());
        for (shape, &command) in commands.zip(&dec.commands) {
            let readable: &[u32] = match command {
                cmd::QUERY_CAPABILITY
                | cmd::RESOURCE_DESTROY_ALL
                | cmd::QUEUE_CLEAR
                | cmd::GET_PARAMS_EXT => &[16],
                cmd::STREAM_CREATE => &[88],
                cmd::STREAM_DESTROY | cmd::STREAM_DRAIN => &[8],
                cmd::RESOURCE_CREATE => &[88, 16],
                cmd::RESOURCE_QUEUE => &[64],
                cmd::SET_PARAMS_EXT => &[128],
                other => panic!("unexpected command {other:#x}"),
            };
            assert_eq!(shape.readable, readable, "{command:#x}: {shape:?}");
            assert_eq!(shape.writable.len(), 1, "{command:#x}: {shape:?}");
        }
        for shape in fake.shapes.iter().filter(|s| s.queue != 0) {
            assert_eq!(shape.queue, 1);
            assert!(shape.readable.is_empty(), "{shape:?}");
            assert_eq!(shape.writable, vec![8]);
        }
    }

    /// Nothing left on the device or in the driver beyond its baseline.
    fn check_empty(&self) {
        // Let the device see what was posted last (the event buffer after a reset).
        self.fake.borrow_mut().run();
        assert_eq!(self.driver_pages(), 0, "resource pages leaked");
        assert!(
            self.dec.borrow().stream.is_none(),
            "stream left on the device"
        );
        assert_eq!(
            self.fake.borrow().held_chains(),
            1,
            "only the event buffer stays with the device"
        );
    }

    fn finish(mut self) {
        self.check_clean();
        self.driver = None;
        for (_, region) in core::mem::take(&mut self.buffers) {
            self.hal.dma_free(region).unwrap();
        }
        assert_eq!(self.pages(), 0, "DMA memory leaked");
        assert_eq!(self.fake.borrow().status, 0, "device not reset");
    }
}

fn frame(c: Option<Completion>) -> (u32, u64, super::BufferFlags) {
    match c {
        Some(Completion::Frame {
            resource,
            timestamp,
            flags,
        }) => (resource, timestamp, flags),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn input_done(c: Option<Completion>) -> (u32, u64, super::BufferFlags) {
    match c {
        Some(Completion::InputDone {
            resource,
            timestamp,
            flags,
        }) => (resource, timestamp, flags),
        other => panic!("expected an input buffer back, got {other:?}"),
    }
}

#[test]
fn decoder_sequence_with_a_resolution_change_recreates_the_outputs() {
    let mut rig = Rig::new();
    assert_eq!(rig.d().config().name(), "fake-vdec");
    assert_eq!(rig.fake.borrow().driver_features, VERSION_1 | FEATURES);
    let (inputs, outputs) = rig.playing().unwrap();
    let params = rig.d().cached_params(QueueType::Output).unwrap();
    assert_eq!((params.frame_width, params.frame_height), (320, 240));
    assert_eq!(params.buffer_size(), Some(320 * 240 * 3 / 2));
    // The first bitstream decodes into the first output buffer.
    assert_eq!(input_done(rig.d().wait(WAIT).unwrap()).0, inputs[0]);
    let (res, ts, flags) = frame(rig.d().wait(WAIT).unwrap());
    assert_eq!((res, ts), (outputs[0], 1_000));
    assert!(flags.keyframe() && !flags.err() && !flags.eos());
    rig.d().queue_input(inputs[1], 500, 2_000).unwrap();
    assert_eq!(
        input_done(rig.d().wait(WAIT).unwrap()),
        (inputs[1], 2_000, Default::default())
    );
    assert_eq!(frame(rig.d().wait(WAIT).unwrap()).1, 2_000);
    assert_eq!(
        rig.d().wait(WAIT).unwrap(),
        None,
        "nothing owed, nothing comes"
    );

    // The stream changes resolution mid-play.
    rig.dec.borrow_mut().width = 640;
    rig.dec.borrow_mut().height = 480;
    rig.d().queue_input(inputs[0], 700, 3_000).unwrap();
    let params = match rig.d().wait(WAIT).unwrap() {
        Some(Completion::ResolutionChanged(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!((params.frame_width, params.frame_height), (640, 480));
    // Creating more outputs now is refused: buffers were queued on the queue.
    let (paddr, len) = rig.buffer(QueueType::Output, 640 * 480 * 2);
    assert_eq!(
        rig.d().resource_create(QueueType::Output, paddr, len),
        Err(VideoError::TooLate(QueueType::Output))
    );
    rig.d().clear(QueueType::Output).unwrap();
    let (res, _, flags) = frame(rig.d().wait(WAIT).unwrap());
    assert_eq!(res, outputs[2]);
    assert!(flags.err());
    assert_eq!(rig.d().outstanding(QueueType::Output), 0);
    rig.d().destroy_resources(QueueType::Output).unwrap();
    rig.free_buffers(QueueType::Output);
    // An old-size buffer does not fit the new params.
    let (paddr, len) = rig.buffer(QueueType::Output, 320 * 240 * 3 / 2);
    assert!(matches!(
        rig.d().resource_create(QueueType::Output, paddr, len),
        Err(VideoError::BadBacking { .. })
    ));
    rig.free_buffers(QueueType::Output);
    let outputs = rig.outputs(&params, 2).unwrap();
    assert_eq!(input_done(rig.d().wait(WAIT).unwrap()).1, 3_000);
    let (res, ts, _) = frame(rig.d().wait(WAIT).unwrap());
    assert_eq!((res, ts), (outputs[0], 3_000));
    assert_eq!(rig.dec.borrow().frames_decoded, 3);

    // Drain: ends with the next output buffer flagged EOS.
    rig.d().drain().unwrap();
    let (res, _, flags) = frame(rig.d().wait(WAIT).unwrap());
    assert_eq!(res, outputs[1]);
    assert!(flags.eos() && !flags.err());
    rig.d().teardown().unwrap();
    rig.check_empty();
    let commands = rig.dec.borrow().commands.clone();
    assert_eq!(
        &commands[commands.len() - 3..],
        &[
            cmd::RESOURCE_DESTROY_ALL,
            cmd::RESOURCE_DESTROY_ALL,
            cmd::STREAM_DESTROY
        ]
    );
    // A second stream on the same device.
    rig.free_buffers(QueueType::Input);
    rig.free_buffers(QueueType::Output);
    rig.playing().unwrap();
    rig.finish();
}

#[test]
fn drain_ends_with_an_eos_buffer_and_then_nothing_is_owed() {
    let mut rig = Rig::new();
    let (_, outputs) = rig.playing().unwrap();
    rig.d().drain().unwrap();
    let mut seen = Vec::new();
    loop {
        match rig.d().wait(WAIT).unwrap() {
            Some(Completion::InputDone { .. }) => {}
            Some(Completion::Frame {
                resource, flags, ..
            }) => {
                seen.push(resource);
                if flags.eos() {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, vec![outputs[0], outputs[1]], "the frame, then EOS");
    assert_eq!(rig.d().wait(WAIT).unwrap(), None);
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn clear_returns_every_pending_buffer_flagged_err() {
    let mut rig = Rig::new();
    let inputs = rig.start(3).unwrap();
    for (n, &id) in inputs.iter().enumerate() {
        rig.d().queue_input(id, 100, n as u64).unwrap();
    }
    assert!(matches!(
        rig.d().wait(WAIT).unwrap(),
        Some(Completion::ResolutionChanged(_))
    ));
    // The device holds the bitstream until there are frame buffers; clear it.
    assert_eq!(rig.dec.borrow().queued(QueueType::Input), 3);
    assert_eq!(
        rig.d().queue_input(inputs[0], 100, 9),
        Err(VideoError::AlreadyQueued {
            queue: QueueType::Input,
            resource: inputs[0]
        })
    );
    rig.d().clear(QueueType::Input).unwrap();
    let mut back = Vec::new();
    while let Some(c) = rig.d().poll().unwrap() {
        let (id, _, flags) = input_done(Some(c));
        assert!(flags.err());
        back.push(id);
    }
    assert_eq!(back, inputs);
    assert_eq!(rig.d().outstanding(QueueType::Input), 0);
    assert_eq!(rig.d().wait(WAIT).unwrap(), None);
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}

/// The whole decoder life: start, play two frames, drain, teardown.
fn scenario(rig: &mut Rig) -> Result<(), VideoError> {
    let (inputs, _) = rig.playing()?;
    for _ in 0..2 {
        rig.d().wait(WAIT)?;
    }
    rig.d().queue_input(inputs[1], 10, 2)?;
    rig.d().drain()?;
    loop {
        match rig.d().wait(WAIT)? {
            Some(Completion::Frame { flags, .. }) if flags.eos() => break,
            Some(_) => {}
            None => panic!("the drain never ended"),
        }
    }
    rig.d().teardown()
}

const COMMANDS: [u32; 10] = [
    cmd::QUERY_CAPABILITY,
    cmd::STREAM_CREATE,
    cmd::SET_PARAMS_EXT,
    cmd::GET_PARAMS_EXT,
    cmd::RESOURCE_CREATE,
    cmd::RESOURCE_QUEUE,
    cmd::STREAM_DRAIN,
    cmd::QUEUE_CLEAR,
    cmd::RESOURCE_DESTROY_ALL,
    cmd::STREAM_DESTROY,
];

/// The error, unwrapped from a queued buffer's.
fn unwrap_buffer(e: VideoError) -> VideoError {
    match e {
        VideoError::Buffer { error, .. } => *error,
        e => e,
    }
}

#[test]
fn the_scenario_passes_clean() {
    let mut rig = Rig::new();
    scenario(&mut rig).unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn an_error_response_to_any_command_is_typed_and_leaks_nothing() {
    for (n, &command) in COMMANDS.iter().enumerate() {
        let code = ErrorCode::from_u32(0x300 + (n as u32 % 6)).unwrap();
        let mut rig = Rig::new();
        // QUEUE_CLEAR only goes out when buffers are queued at teardown.
        if command == cmd::QUEUE_CLEAR {
            let (inputs, _) = rig.playing().unwrap();
            rig.d().queue_input(inputs[1], 10, 2).unwrap();
        }
        rig.dec.borrow_mut().fail = Some((command, code as u32));
        let err = if command == cmd::QUEUE_CLEAR {
            rig.d().teardown().unwrap_err()
        } else {
            scenario(&mut rig).unwrap_err()
        };
        assert_eq!(
            unwrap_buffer(err.clone()),
            VideoError::Device { command, code },
            "{err}"
        );
        assert!(err
            .to_string()
            .contains(super::driver::command_name(command)));
        assert!(err.to_string().contains(code.name()), "{err}");
        rig.d().teardown().unwrap();
        rig.check_empty();
        // And the device works afterwards.
        rig.free_buffers(QueueType::Input);
        rig.free_buffers(QueueType::Output);
        scenario(&mut rig).unwrap();
        rig.check_empty();
        rig.finish();
    }
}

#[test]
fn rust_vmm_error_codes_are_errors_never_success() {
    for (n, response) in (0x206..=0x20B).enumerate() {
        let command = COMMANDS[n % 7];
        let mut rig = Rig::new();
        rig.dec.borrow_mut().fail = Some((command, response));
        let err = unwrap_buffer(scenario(&mut rig).unwrap_err());
        assert_eq!(err, VideoError::UnexpectedResponse { command, response });
        rig.d().teardown().unwrap();
        rig.check_empty();
        rig.finish();
    }
}

#[test]
fn a_response_of_the_wrong_length_or_stream_is_an_error() {
    let cases = [
        (cmd::STREAM_CREATE, Corrupt::Length),
        (cmd::GET_PARAMS_EXT, Corrupt::Length),
        (cmd::RESOURCE_QUEUE, Corrupt::Length),
        (cmd::QUERY_CAPABILITY, Corrupt::Stream),
        (cmd::SET_PARAMS_EXT, Corrupt::Stream),
        (cmd::RESOURCE_QUEUE, Corrupt::Stream),
        (cmd::STREAM_DRAIN, Corrupt::Stream),
    ];
    for (command, how) in cases {
        let mut rig = Rig::new();
        rig.dec.borrow_mut().corrupt = Some((command, how));
        let err = unwrap_buffer(scenario(&mut rig).unwrap_err());
        match how {
            Corrupt::Length => assert!(
                matches!(err, VideoError::Wire { command: c, .. } if c == command),
                "{err:?}"
            ),
            Corrupt::Stream => assert!(
                matches!(err, VideoError::WrongStream { command: c, .. } if c == command),
                "{err:?}"
            ),
        }
        rig.d().teardown().unwrap();
        rig.check_empty();
        rig.finish();
    }
}

#[test]
fn an_error_event_fails_the_stream_and_teardown_frees_everything() {
    let mut rig = Rig::new();
    let (inputs, _) = rig.playing().unwrap();
    rig.dec.borrow_mut().raise_error();
    let mut got_error = false;
    while let Some(c) = rig.d().wait(WAIT).unwrap() {
        if c == Completion::StreamError {
            got_error = true;
            break;
        }
    }
    assert!(got_error);
    assert_eq!(
        rig.d().queue_input(inputs[1], 10, 5),
        Err(VideoError::StreamFailed)
    );
    rig.fake.borrow_mut().run();
    assert_eq!(rig.dec.borrow().event_buffers(), 1, "event buffer reposted");
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn an_event_for_another_stream_is_an_error_and_the_buffer_is_reposted() {
    let mut rig = Rig::new();
    rig.start(1).unwrap();
    rig.dec.borrow_mut().push_event(Event {
        event_type: super::wire::event::ERROR,
        stream_id: 99,
    });
    let err = rig.d().wait(WAIT).unwrap_err();
    assert!(
        matches!(err, VideoError::WrongStream { got: 99, .. }),
        "{err:?}"
    );
    rig.dec.borrow_mut().push_event(Event {
        event_type: 0x777,
        stream_id: 1,
    });
    assert_eq!(rig.d().wait(WAIT), Err(VideoError::UnknownEvent(0x777)));
    rig.fake.borrow_mut().run();
    assert_eq!(rig.dec.borrow().event_buffers(), 1);
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn an_event_for_a_stream_destroyed_since_is_dropped_and_the_new_stream_goes_on() {
    let mut rig = Rig::new();
    rig.start(1).unwrap();
    rig.d().teardown().unwrap();
    rig.start(1).unwrap();
    let current = rig.d().stream_id().unwrap();
    assert!(current > 1);
    rig.dec.borrow_mut().push_event(Event {
        event_type: super::wire::event::ERROR,
        stream_id: current - 1,
    });
    assert_eq!(
        rig.d().wait(WAIT),
        Ok(None),
        "a stale event is no completion"
    );
    rig.fake.borrow_mut().run();
    assert_eq!(
        rig.dec.borrow().event_buffers(),
        1,
        "its buffer is posted again"
    );
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn a_stalled_queue_times_out_resets_and_a_fresh_stream_works() {
    let mut rig = Rig::new();
    let (inputs, _) = rig.playing().unwrap();
    for _ in 0..2 {
        rig.d().wait(WAIT).unwrap();
    }
    rig.fake.borrow_mut().misbehave = Some(Misbehaviour::Silent);
    rig.d().queue_input(inputs[1], 10, 2).unwrap();
    let resets = rig.fake.borrow().resets;
    let err = rig.d().wait(WAIT).unwrap_err();
    assert_eq!(
        err,
        VideoError::Virtio(VirtioError::Timeout {
            queue: 0,
            waited_ms: 50
        })
    );
    assert_eq!(rig.fake.borrow().resets, resets + 1, "device reset");
    assert_eq!(rig.d().stream_id(), None);
    assert_eq!(
        rig.driver_pages(),
        0,
        "resource pages freed after the reset"
    );
    assert_eq!(
        rig.d().stream_create(Format::H264),
        Err(VideoError::Virtio(VirtioError::Broken))
    );
    rig.fake.borrow_mut().misbehave = None;
    rig.d().reset().unwrap();
    rig.free_buffers(QueueType::Input);
    rig.free_buffers(QueueType::Output);
    scenario(&mut rig).unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn a_silent_command_times_out_and_nothing_leaks() {
    let mut rig = Rig::new();
    rig.d().set_timeout_ns(WAIT);
    rig.playing().unwrap();
    rig.fake.borrow_mut().misbehave = Some(Misbehaviour::Silent);
    let err = rig.d().drain().unwrap_err();
    assert!(matches!(
        err,
        VideoError::Virtio(VirtioError::Timeout { .. })
    ));
    assert_eq!(rig.driver_pages(), 0);
    // Teardown of a forgotten stream is nothing to do; the device comes back.
    rig.d().teardown().unwrap();
    rig.fake.borrow_mut().misbehave = None;
    rig.d().reset().unwrap();
    rig.fake.borrow_mut().run();
    assert_eq!(rig.dec.borrow().event_buffers(), 1);
    rig.finish();
}

#[test]
fn device_needs_reset_forgets_the_stream_and_frees_its_pages() {
    let mut rig = Rig::new();
    rig.playing().unwrap();
    rig.fake.borrow_mut().misbehave = Some(Misbehaviour::NeedsReset);
    assert_eq!(
        rig.d().drain(),
        Err(VideoError::Virtio(VirtioError::NeedsReset))
    );
    assert_eq!(rig.driver_pages(), 0);
    rig.fake.borrow_mut().misbehave = None;
    rig.d().reset().unwrap();
    rig.free_buffers(QueueType::Input);
    rig.free_buffers(QueueType::Output);
    scenario(&mut rig).unwrap();
    rig.finish();
}

#[test]
fn destroy_mid_play_frees_everything() {
    let mut rig = Rig::new();
    let (inputs, _) = rig.playing().unwrap();
    rig.d().queue_input(inputs[1], 10, 2).unwrap();
    assert!(rig.d().outstanding(QueueType::Output) > 0);
    assert_eq!(
        rig.d().destroy_resources(QueueType::Output),
        Err(VideoError::Busy {
            queue: QueueType::Output,
            outstanding: 3
        })
    );
    rig.d().teardown().unwrap();
    rig.check_empty();
    // Dropping the driver mid-play frees everything too.
    rig.free_buffers(QueueType::Input);
    rig.free_buffers(QueueType::Output);
    rig.playing().unwrap();
    rig.finish();
}

#[test]
fn a_device_offering_non_contig_still_gets_one_entry_per_resource() {
    let non_contig = 1u64 << feature::RESOURCE_NON_CONTIG;
    let mut rig = Rig::with(FEATURES | non_contig, |_| {});
    assert_eq!(rig.fake.borrow().driver_features & non_contig, 0);
    scenario(&mut rig).unwrap();
    let counts = rig.dec.borrow().entry_counts.clone();
    assert_eq!(counts, vec![1; 5], "2 inputs + 3 outputs, one entry each");
    rig.finish();
}

#[test]
fn chains_are_exactly_request_plus_response() {
    let mut rig = Rig::new();
    scenario(&mut rig).unwrap();
    rig.check_clean();
    let fake = rig.fake.borrow();
    let creates = fake
        .shapes
        .iter()
        .filter(|s| s.readable == vec![88, 16])
        .count();
    assert_eq!(creates, 5);
    // RESOURCE_QUEUE: the 64-byte struct and a response descriptor.
    let queues = fake
        .shapes
        .iter()
        .filter(|s| s.queue == 0 && s.readable == vec![64])
        .count();
    assert_eq!(queues, 3 + 2);
    assert!(fake
        .shapes
        .iter()
        .all(|s| s.readable.len() + s.writable.len() <= 3));
    drop(fake);
    rig.finish();
}

#[test]
fn probe_refuses_a_device_without_guest_pages_or_with_a_bad_config() {
    for (features, caps, expected) in [
        (0, 1024, VideoError::NoGuestPages),
        (
            FEATURES,
            0,
            VideoError::BadConfig {
                field: "max_caps_length",
                value: 0,
            },
        ),
        (
            FEATURES,
            1 << 20,
            VideoError::BadConfig {
                field: "max_caps_length",
                value: 1 << 20,
            },
        ),
    ] {
        let model = Rc::new(RefCell::new(FakeDecoder::new(320, 240)));
        model.borrow_mut().max_caps_length = caps;
        let config = model.borrow().config();
        let (hal, regs, fake) =
            Fake::new(id::VIDEO_DECODER, features, 2, 256, config, Box::new(model));
        let err = VideoDecoder::new(hal, regs).err().unwrap();
        assert_eq!(err, expected);
        assert_eq!(fake.borrow().memory.outstanding_pages(), 0);
        assert_eq!(fake.borrow().status, 0);
    }
    // Another device type is refused by the transport.
    let model = Rc::new(RefCell::new(FakeDecoder::new(320, 240)));
    let config = model.borrow().config();
    let (hal, regs, _) = Fake::new(id::GPU, FEATURES, 2, 256, config, Box::new(model));
    assert!(matches!(
        VideoDecoder::new(hal, regs),
        Err(VideoError::Virtio(VirtioError::Transport(_)))
    ));
}

#[test]
fn bad_arguments_are_refused_before_the_device_sees_them() {
    let mut rig = Rig::new();
    assert_eq!(rig.d().queue_output(1), Err(VideoError::NoStream));
    let inputs = rig.start(1).unwrap();
    assert_eq!(
        rig.d().stream_create(Format::H264),
        Err(VideoError::StreamExists)
    );
    let (paddr, _) = rig.buffer(QueueType::Output, 4096);
    assert_eq!(
        rig.d().resource_create(QueueType::Output, paddr, 4096),
        Err(VideoError::NoParams(QueueType::Output))
    );
    let (paddr, _) = rig.buffer(QueueType::Input, 4096);
    assert_eq!(
        rig.d().resource_create(QueueType::Input, paddr, 4096),
        Err(VideoError::BadBacking {
            len: 4096,
            needed: u64::from(INPUT_BUFFER_SIZE)
        })
    );
    assert_eq!(
        rig.d().queue_input(inputs[0], INPUT_BUFFER_SIZE + 1, 0),
        Err(VideoError::BadData {
            bytes: INPUT_BUFFER_SIZE + 1,
            len: INPUT_BUFFER_SIZE
        })
    );
    assert_eq!(
        rig.d().queue_input(inputs[0], 0, 0),
        Err(VideoError::BadData {
            bytes: 0,
            len: INPUT_BUFFER_SIZE
        })
    );
    assert_eq!(
        rig.d().queue_input(77, 1, 0),
        Err(VideoError::NoResource {
            queue: QueueType::Input,
            resource: 77
        })
    );
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}

#[test]
fn the_output_format_can_be_set_to_argb_for_the_gpu() {
    let mut rig = Rig::new();
    let inputs = rig.start(1).unwrap();
    rig.d().queue_input(inputs[0], 100, 42).unwrap();
    let Some(Completion::ResolutionChanged(mut params)) = rig.d().wait(WAIT).unwrap() else {
        panic!("no resolution change");
    };
    params.format = Format::Argb8888 as u32;
    let params = rig.d().set_params(params).unwrap();
    assert_eq!(params.format, Format::Argb8888 as u32);
    assert_eq!(params.num_planes, 1);
    assert_eq!(params.buffer_size(), Some(320 * 240 * 4));
    assert_eq!(rig.d().cached_params(QueueType::Output), Some(params));
    let outputs = rig.outputs(&params, 2).unwrap();
    input_done(rig.d().wait(WAIT).unwrap());
    assert_eq!(frame(rig.d().wait(WAIT).unwrap()).0, outputs[0]);
    // A format the device does not produce is its error, and nothing changes.
    let mut bad = params;
    bad.format = Format::Yvu420 as u32;
    assert_eq!(
        rig.d().set_params(bad),
        Err(VideoError::Device {
            command: cmd::SET_PARAMS_EXT,
            code: ErrorCode::InvalidParameter
        })
    );
    assert_eq!(rig.d().cached_params(QueueType::Output), Some(params));
    rig.d().teardown().unwrap();
    rig.check_empty();
    rig.finish();
}
