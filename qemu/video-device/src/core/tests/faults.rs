//! Each fault, through the core.

use monolith::virtio::video::wire::{
    event, ErrorCode, Format, MemEntry, Message, QueueType, StreamDestroy,
};

use super::decode::Player;
use super::harness::*;
use crate::fake_codec::{self as fake, nal};
use crate::faults::{Fault, Faults};

fn player(fault: &str) -> Player {
    let faults = Faults::new(vec![fault.parse::<Fault>().unwrap()]);
    Player::new(
        T::new(Box::new(fake::FakeFactory::default()), faults),
        Format::Nv12,
        2,
    )
}

#[test]
fn error_response_hits_the_nth_command_of_its_type_once() {
    let mut t = T::new(
        Box::new(fake::FakeFactory::default()),
        Faults::new(vec!["error-response=stream-create@2/0x301"
            .parse()
            .unwrap()]),
    );
    ok(&t.cmd(&stream_create(1)));
    err(&t.cmd(&stream_create(2)), ErrorCode::OutOfMemory);
    assert!(
        t.dev.stream(2).is_none(),
        "the faulted command was not carried out"
    );
    ok(&t.cmd(&stream_create(2)));
    t.dev.reset();
    ok(&t.cmd(&stream_create(2)));
}

#[test]
fn error_response_on_a_resource_queue() {
    // Player::new sends no RESOURCE_QUEUE; the 2nd is the first output buffer queued
    // after the first input.
    let mut p = player("error-response=resource-queue@2");
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    // The faulted queue was answered 0x300 at once (a plain command answer, not a
    // buffer), so one of the three output buffers never reached the device.
    assert_eq!(p.frames.len(), 1);
    assert_eq!(p.refused.len(), 1);
    p.feed(&nal(fake::NOW, 16, 16, 2), 2);
    p.feed(&nal(fake::NOW, 16, 16, 3), 3);
    assert_eq!(p.frames.len(), 3);
}

#[test]
fn error_event_after_frame_stops_the_stream() {
    let mut p = player("error-event@2");
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    p.feed(&nal(fake::NOW, 16, 16, 2), 2);
    assert_eq!(p.frames.len(), 2);
    assert_eq!(
        p.events.last().map(|e| (e.event_type, e.stream_id)),
        Some((event::ERROR, 1))
    );
    assert!(p.t.dev.stream(1).unwrap().failed());
    assert_eq!(
        p.refused.len(),
        1,
        "re-queueing on a failed stream is refused"
    );
    err(
        &p.t.cmd(&queue(1, QueueType::Input, 0, 3, 1)),
        ErrorCode::InvalidOperation,
    );
    // Recovery: destroy returns the pending buffers, a new stream decodes.
    ok(&p.t.cmd(&StreamDestroy.encode(1)));
    p.process();
    let mut q = Player::new(std::mem::replace(&mut p.t, T::fake()), Format::Nv12, 2);
    q.feed(&nal(fake::NOW, 16, 16, 1), 1);
    q.feed(&nal(fake::NOW, 16, 16, 2), 2);
    q.feed(&nal(fake::NOW, 16, 16, 3), 3);
    assert_eq!(q.frames.len(), 3, "the fault fired once");
}

#[test]
fn stall_after_frame_keeps_chains_until_reset() {
    let mut p = player("stall@1");
    p.feed(&nal(fake::NOW, 16, 16, 1), 1);
    assert_eq!(p.frames.len(), 1);
    assert!(p.t.dev.is_stalled());
    let head = p.t.send(&[&stream_create(5)], &[RESP]);
    assert!(
        p.t.drain_backlog().iter().all(|a| a.head != head),
        "stalled: not answered"
    );
    assert!(p.t.dev.unanswered() >= 1);
    p.t.dev.reset();
    assert!(!p.t.dev.is_stalled());
    assert!(p.t.dev.stream(1).is_none(), "reset forgets every stream");
    // The driver starts over; the fault does not fire again.
    let mut q = Player::new(std::mem::replace(&mut p.t, T::fake()), Format::Nv12, 2);
    q.feed(&nal(fake::NOW, 16, 16, 1), 1);
    q.feed(&nal(fake::NOW, 16, 16, 2), 2);
    assert_eq!(q.frames.len(), 2);
    let _ = MemEntry { addr: 0, length: 0 };
}
