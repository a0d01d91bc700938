//! Playing a clip: bitstream in, every decoded frame on the screen, no frame byte touched
//! by the CPU.
//!
//! # Theory of operation
//!
//! The player is the policy between three seams, each a trait so it runs on the host
//! against fakes and on the board against the real drivers (`crate::video_service`):
//! - [`Decoder`]: a virtio-video decoder stream (create, resources, queue, poll, clear,
//!   destroy);
//! - [`Buffers`]: DMA buffers from the device's CMA area, one contiguous range each. A
//!   frame buffer is a dma-buf attached to both the decoder and the GPU, so the bus
//!   address the decoder writes is the one the GPU reads;
//! - [`Screen`]: one GPU resource per frame buffer, backed by that buffer's pages, and
//!   "show this one" (scan-out switch and flush, which waits for the buffer's write fence:
//!   the decoder's).
//!
//! The sequence is the v3 decoder's: start the stream, create every bitstream buffer,
//! queue the first access units, and wait for `DECODER_RESOLUTION_CHANGED`. Then read the
//! output parameters, create every frame buffer at that size, and queue them all. Each
//! decoded frame is shown at once. The frame shown before it goes back to the decoder,
//! because a buffer on screen must not be written. Each returned bitstream buffer is
//! refilled with the next access unit. After the last unit the stream is drained, and
//! the buffer flagged EOS ends the play, or starts it again from the first unit when
//! looping.
//!
//! A resolution change midway (a new SPS) is the same event again. The frame buffers are
//! taken back (`QUEUE_CLEAR`), removed from the screen, destroyed and freed, and new ones
//! are made at the new size. The decoder holds the new picture until they are queued.
//! Any error (a failed command, an `ERROR` event, a timeout) ends the play through the
//! same teardown as [`Player::stop`]: the stream is destroyed and every buffer freed, so
//! nothing is leaked whatever went wrong.
#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// Bitstream buffers in flight: enough that the decoder never waits for the CPU's refill.
pub const INPUT_BUFFERS: usize = 4;
/// Frame buffers: one on screen, one being decoded, and the rest queued.
pub const FRAME_BUFFERS: usize = 6;
/// Events one [`Player::step`] handles at most, so a long clip never keeps the console
/// (which calls it when idle) from reading a key.
pub const EVENTS_PER_STEP: usize = 32;

/// What kind of buffer to allocate: the two may come from different regions
/// (`memory-region-names = "bitstream", "frames"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    Bitstream,
    Frame,
}

/// One allocated DMA buffer, as the player sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The buffer's handle for [`Buffers`] (a dma-buf id on the board).
    pub handle: u32,
    /// Its one contiguous range, as the decoder addresses it.
    pub bus: u64,
    pub len: u64,
    /// A frame buffer's address for the display device (attached to it too).
    pub display_bus: Option<u64>,
}

/// The decoded frames' format, from the output queue's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFormat {
    pub width: u32,
    pub height: u32,
    /// Bytes per row of the first plane.
    pub stride: u32,
    /// Bytes of one frame (all planes).
    pub size: u64,
}

/// What the decoder reports from [`Decoder::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderEvent {
    /// A bitstream buffer is consumed and may be refilled.
    InputDone {
        resource: u32,
    },
    /// A frame buffer comes back, decoded (or flagged).
    Frame {
        resource: u32,
        timestamp: u64,
        eos: bool,
        error: bool,
    },
    ResolutionChanged,
    /// The device's `ERROR` event for the stream.
    Error,
}

/// Why playing failed: which step, and the driver's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayError {
    pub step: &'static str,
    pub reason: String,
}

impl PlayError {
    pub fn new(step: &'static str, reason: impl fmt::Display) -> Self {
        PlayError {
            step,
            reason: format!("{reason}"),
        }
    }
}

impl fmt::Display for PlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.reason)
    }
}

impl core::error::Error for PlayError {}

type Result<T> = core::result::Result<T, PlayError>;

/// A decoder stream (one at a time).
pub trait Decoder {
    /// Create the H.264 stream and set its input parameters: bitstream buffers of
    /// `input_bytes` each.
    fn start(&mut self, input_bytes: u64) -> Result<()>;
    /// Create a bitstream resource backed by `slot`; returns its resource id.
    fn add_input(&mut self, slot: &Slot) -> Result<u32>;
    fn queue_input(&mut self, resource: u32, timestamp: u64, bytes: u32) -> Result<()>;
    /// The output queue's parameters after a resolution change.
    fn output_format(&mut self) -> Result<FrameFormat>;
    /// Create a frame resource backed by `slot`; returns its resource id.
    fn add_output(&mut self, slot: &Slot, format: &FrameFormat) -> Result<u32>;
    fn queue_output(&mut self, resource: u32) -> Result<()>;
    /// The next event, if any, without waiting.
    fn poll(&mut self) -> Result<Option<DecoderEvent>>;
    fn drain(&mut self) -> Result<()>;
    /// Take back and destroy every frame buffer's resource (before new sizes).
    fn drop_outputs(&mut self) -> Result<()>;
    /// Destroy the stream and everything in it; after an error too (it must not fail to
    /// release what it holds on the guest side).
    fn stop(&mut self);
}

/// DMA buffers for the decoder (and the GPU, for frames).
pub trait Buffers {
    fn alloc(&mut self, kind: BufferKind, bytes: u64) -> Result<Slot>;
    /// Copy bitstream bytes into a bitstream buffer (bitstream, never frames).
    fn fill(&mut self, slot: &Slot, bytes: &[u8]) -> Result<()>;
    fn free(&mut self, slot: Slot);
}

/// The GPU side.
pub trait Screen {
    /// A scan-out resource backed by frame buffer `slot`.
    fn add(&mut self, index: usize, slot: &Slot, format: &FrameFormat) -> Result<()>;
    /// Scan out frame buffer `index` (after its producer's fence).
    fn show(&mut self, index: usize, format: &FrameFormat) -> Result<()>;
    /// Remove every resource [`Screen::add`] made, and give the screen back.
    fn remove_all(&mut self);
    /// Remove every resource but `index`'s, which stays on screen (the last frame of a
    /// finished play).
    fn keep_only(&mut self, index: usize);
}

/// A play whose decoder reports nothing for this long, while it holds bitstream and frame
/// buffers, has stalled: it fails (and the teardown resets a device that stopped
/// answering).
pub const STALL_US: u64 = 3_000_000;

/// Where the player is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Bitstream queued, no frame size yet.
    WaitingForFormat,
    Playing,
    /// Every access unit queued and the drain sent; waiting for EOS.
    Draining,
    /// EOS seen (not looping), torn down.
    Finished,
    Stopped,
    Failed(String),
}

/// Counters for `video info` and the bench.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_decoded: u64,
    pub frames_shown: u64,
    pub resolution_changes: u64,
    pub loops: u64,
    pub first_frame_us: Option<u64>,
    pub last_frame_us: Option<u64>,
}

impl Stats {
    /// Frames shown per second between the first and the last, in thousandths.
    pub fn millifps(&self) -> Option<u64> {
        let (first, last) = (self.first_frame_us?, self.last_frame_us?);
        let shown = self.frames_shown.checked_sub(1)?;
        let span = last.checked_sub(first).filter(|&s| s > 0)?;
        Some(shown * 1_000_000_000 / span)
    }
}

/// A frame just shown (for the caller's checks: CRCs in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Frames shown before this one since the play started.
    pub number: u64,
    pub slot: Slot,
    pub format: FrameFormat,
}

/// One play of one clip.
pub struct Player {
    units: Vec<Range<usize>>,
    next_unit: usize,
    looping: bool,
    state: State,
    /// Bitstream buffers and their resource ids.
    inputs: Vec<(u32, Slot)>,
    /// Bitstream buffers the decoder has given back.
    idle_inputs: Vec<u32>,
    /// Frame buffers and their resource ids; the index is the screen's.
    frames: Vec<(u32, Slot)>,
    format: Option<FrameFormat>,
    /// The frame buffer on screen (not queued to the decoder).
    on_screen: Option<u32>,
    stats: Stats,
    drained: bool,
    /// When the decoder last reported something.
    last_event_us: Option<u64>,
    /// A finished play's last frame, kept on screen until [`Player::stop`].
    still: Option<Slot>,
}

fn page_round(bytes: u64) -> u64 {
    bytes.div_ceil(4096) * 4096
}

impl Player {
    /// Starts playing `clip`, whose access units are `units` (ranges into `clip`).
    pub fn start(
        clip: &[u8],
        units: Vec<Range<usize>>,
        looping: bool,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
    ) -> Result<Player> {
        if units.is_empty() || units.iter().any(|u| u.end > clip.len() || u.is_empty()) {
            return Err(PlayError::new("clip", "no access unit to decode"));
        }
        let mut player = Player {
            units,
            next_unit: 0,
            looping,
            state: State::WaitingForFormat,
            inputs: Vec::new(),
            idle_inputs: Vec::new(),
            frames: Vec::new(),
            format: None,
            on_screen: None,
            stats: Stats::default(),
            drained: false,
            last_event_us: None,
            still: None,
        };
        let started = player.start_inner(clip, decoder, buffers);
        if let Err(e) = started {
            decoder.stop();
            player.free_all(buffers);
            return Err(e);
        }
        Ok(player)
    }

    fn start_inner(
        &mut self,
        clip: &[u8],
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
    ) -> Result<()> {
        let largest = self.units.iter().map(|u| u.len()).max().unwrap_or(0) as u64;
        let input_bytes = page_round(largest);
        decoder.start(input_bytes)?;
        for _ in 0..INPUT_BUFFERS.min(self.units.len()) {
            let slot = buffers.alloc(BufferKind::Bitstream, input_bytes)?;
            // Owned before the device knows it, so a refused create still frees it.
            self.inputs.push((0, slot));
            let resource = decoder.add_input(&slot)?;
            if let Some(last) = self.inputs.last_mut() {
                last.0 = resource;
            }
            self.idle_inputs.push(resource);
        }
        self.refill(clip, decoder, buffers)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn format(&self) -> Option<FrameFormat> {
        self.format
    }

    /// Whether the player still holds a buffer (a finished play's last frame on screen).
    pub fn holds_buffers(&self) -> bool {
        self.still.is_some() || !self.inputs.is_empty() || !self.frames.is_empty()
    }

    /// Whether the play is over (finished, stopped or failed).
    pub fn is_over(&self) -> bool {
        matches!(
            self.state,
            State::Finished | State::Stopped | State::Failed(_)
        )
    }

    /// Queue the next access units into every idle bitstream buffer; drain after the last.
    fn refill(
        &mut self,
        clip: &[u8],
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
    ) -> Result<()> {
        while let Some(resource) = self.idle_inputs.pop() {
            if self.next_unit == self.units.len() {
                if self.looping {
                    self.next_unit = 0;
                    self.stats.loops += 1;
                } else {
                    self.idle_inputs.push(resource);
                    if !self.drained && self.idle_inputs.len() == self.inputs.len() {
                        decoder.drain()?;
                        self.drained = true;
                        if self.state == State::Playing {
                            self.state = State::Draining;
                        }
                    }
                    return Ok(());
                }
            }
            let unit = self.units[self.next_unit].clone();
            let slot = self.input_slot(resource).ok_or_else(|| {
                PlayError::new("player", format!("no bitstream buffer {resource}"))
            })?;
            buffers.fill(&slot, &clip[unit.clone()])?;
            decoder.queue_input(resource, self.next_unit as u64, unit.len() as u32)?;
            self.next_unit += 1;
        }
        Ok(())
    }

    /// Handles everything the decoder has reported; returns the frames shown. An error
    /// tears the play down and is returned once; afterwards the player is over.
    pub fn step(
        &mut self,
        clip: &[u8],
        now_us: u64,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
        screen: &mut impl Screen,
    ) -> Result<Vec<Shown>> {
        if self.is_over() {
            return Ok(Vec::new());
        }
        let mut shown = Vec::new();
        let outcome = self
            .step_inner(clip, now_us, decoder, buffers, screen, &mut shown)
            .and_then(|progressed| {
                let last = *self.last_event_us.get_or_insert(now_us);
                if progressed {
                    self.last_event_us = Some(now_us);
                } else if !self.is_over() && now_us.saturating_sub(last) > STALL_US {
                    return Err(PlayError::new(
                        "decoder",
                        format!(
                            "no progress for {} ms: the device stalled",
                            (now_us - last) / 1000
                        ),
                    ));
                }
                Ok(())
            });
        match outcome {
            Ok(()) => Ok(shown),
            Err(e) => {
                self.teardown(decoder, buffers, screen);
                self.state = State::Failed(format!("{e}"));
                Err(e)
            }
        }
    }

    fn step_inner(
        &mut self,
        clip: &[u8],
        now_us: u64,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
        screen: &mut impl Screen,
        shown: &mut Vec<Shown>,
    ) -> Result<bool> {
        let mut progressed = false;
        for _ in 0..EVENTS_PER_STEP {
            let Some(event) = decoder.poll()? else {
                break;
            };
            progressed = true;
            match event {
                DecoderEvent::InputDone { resource } => {
                    if !self.is_input(resource) {
                        return Err(PlayError::new(
                            "decoder",
                            format!("returned bitstream buffer {resource} it does not hold"),
                        ));
                    }
                    self.idle_inputs.push(resource);
                    self.refill(clip, decoder, buffers)?;
                }
                DecoderEvent::ResolutionChanged => {
                    self.new_frame_buffers(decoder, buffers, screen)?;
                }
                DecoderEvent::Frame {
                    resource,
                    eos,
                    error,
                    ..
                } => {
                    let Some(index) = self.frame_index(resource) else {
                        return Err(PlayError::new(
                            "decoder",
                            format!("returned frame buffer {resource} it does not hold"),
                        ));
                    };
                    if error {
                        // Given back by a clear: it is ours again, nothing to show.
                        continue;
                    }
                    let format = self
                        .format
                        .ok_or_else(|| PlayError::new("decoder", "a frame before any format"))?;
                    if eos {
                        // The drain's end marker carries no picture: the play is over.
                        self.finish(decoder, buffers, screen);
                        return Ok(true);
                    }
                    self.stats.frames_decoded += 1;
                    screen.show(index, &format)?;
                    self.stats.first_frame_us.get_or_insert(now_us);
                    self.stats.last_frame_us = Some(now_us);
                    shown.push(Shown {
                        number: self.stats.frames_shown,
                        slot: self.frames[index].1,
                        format,
                    });
                    self.stats.frames_shown += 1;
                    if let Some(previous) = self.on_screen.replace(resource) {
                        decoder.queue_output(previous)?;
                    }
                    if self.state == State::WaitingForFormat {
                        self.state = State::Playing;
                    }
                }
                DecoderEvent::Error => {
                    return Err(PlayError::new(
                        "decoder",
                        "the device reported an error on the stream",
                    ));
                }
            }
        }
        Ok(progressed)
    }

    /// End of stream: the stream goes, every buffer but the frame on screen is freed.
    fn finish(
        &mut self,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
        screen: &mut impl Screen,
    ) {
        decoder.stop();
        let shown = self
            .on_screen
            .take()
            .and_then(|resource| self.frame_index(resource));
        match shown {
            Some(index) => {
                screen.keep_only(index);
                let (_, still) = self.frames.remove(index);
                self.still = Some(still);
            }
            None => screen.remove_all(),
        }
        self.free_all(buffers);
        self.state = State::Finished;
    }

    fn input_slot(&self, resource: u32) -> Option<Slot> {
        self.inputs
            .iter()
            .find(|(r, _)| *r == resource)
            .map(|(_, s)| *s)
    }

    /// A bitstream buffer the decoder holds (queued, not yet given back).
    fn is_input(&self, resource: u32) -> bool {
        self.input_slot(resource).is_some() && !self.idle_inputs.contains(&resource)
    }

    fn frame_index(&self, resource: u32) -> Option<usize> {
        self.frames.iter().position(|(r, _)| *r == resource)
    }

    fn new_frame_buffers(
        &mut self,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
        screen: &mut impl Screen,
    ) -> Result<()> {
        if !self.frames.is_empty() {
            self.stats.resolution_changes += 1;
            decoder.drop_outputs()?;
            screen.remove_all();
            for (_, slot) in self.frames.drain(..) {
                buffers.free(slot);
            }
            self.on_screen = None;
        }
        let format = decoder.output_format()?;
        if format.width == 0 || format.height == 0 || format.size == 0 {
            return Err(PlayError::new(
                "decoder",
                format!(
                    "output format {}x{} of {} bytes",
                    format.width, format.height, format.size
                ),
            ));
        }
        self.format = Some(format);
        for index in 0..FRAME_BUFFERS {
            let slot = buffers.alloc(BufferKind::Frame, page_round(format.size))?;
            self.frames.push((0, slot));
            let resource = decoder.add_output(&slot, &format)?;
            self.frames[index].0 = resource;
            screen.add(index, &slot, &format)?;
        }
        for (resource, _) in self.frames.clone() {
            decoder.queue_output(resource)?;
        }
        Ok(())
    }

    /// Stops playing now: the stream destroyed, every buffer freed (a finished play's last
    /// frame too), the screen given back.
    pub fn stop(
        &mut self,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
        screen: &mut impl Screen,
    ) {
        if !self.is_over() {
            self.teardown(decoder, buffers, screen);
            self.state = State::Stopped;
        }
        if let Some(still) = self.still.take() {
            screen.remove_all();
            buffers.free(still);
        }
    }

    fn teardown(
        &mut self,
        decoder: &mut impl Decoder,
        buffers: &mut impl Buffers,
        screen: &mut impl Screen,
    ) {
        // The device first: after the stream is gone it writes no buffer, so freeing them
        // cannot hand a page the decoder still writes to someone else.
        decoder.stop();
        screen.remove_all();
        self.free_all(buffers);
    }

    fn free_all(&mut self, buffers: &mut impl Buffers) {
        for (_, slot) in self.inputs.drain(..).chain(self.frames.drain(..)) {
            buffers.free(slot);
        }
        self.idle_inputs.clear();
        self.on_screen = None;
    }
}
