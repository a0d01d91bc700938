//! Host tests of the transport, the split queue and the request helper against the fake
//! device (`fake.rs`).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::fake::{Deferred, Echo, Fake, FakeHal, FakeRegs, Misbehaviour};
use super::hal::Hal;
use super::queue::{Buffer, QueueError, SplitQueue};
use super::transport::{status, Transport, TransportError};
use super::{Device, VirtioError};

const ID: u32 = 31; // a video decoder: an id virtio-drivers refuses
const FEATURE_A: u64 = 1 << 1;
const FEATURE_B: u64 = 1 << 3;

fn echo_device() -> (FakeHal, FakeRegs, alloc::rc::Rc<core::cell::RefCell<Fake>>) {
    Fake::new(ID, FEATURE_A, 2, 256, vec![0; 44], Box::new(Echo))
}

fn buffer(hal: &FakeHal, bytes: &[u8]) -> (super::DmaRegion, Buffer) {
    let region = hal.dma_alloc(1).unwrap();
    hal.write(&region, 0, bytes).unwrap();
    let b = Buffer {
        paddr: region.paddr(),
        len: bytes.len() as u32,
    };
    (region, b)
}

#[test]
fn probe_refuses_legacy_empty_and_foreign_windows() {
    let (_, regs, fake) = echo_device();
    fake.borrow_mut().version = 1;
    let err = Transport::probe(regs.clone()).err().unwrap();
    assert_eq!(err, TransportError::Legacy);
    assert!(err.to_string().contains("force-legacy=false"));
    fake.borrow_mut().version = 2;
    fake.borrow_mut().device_id = 0;
    assert_eq!(
        Transport::probe(regs.clone()).err(),
        Some(TransportError::NoDevice)
    );
    fake.borrow_mut().device_id = ID;
    let t = Transport::probe(regs).unwrap();
    assert_eq!(t.device_id(), ID);
}

#[test]
fn negotiation_follows_3_1_1_and_accepts_only_offered_bits() {
    let (_, regs, fake) = echo_device();
    let mut t = Transport::probe(regs).unwrap();
    let accepted = t.negotiate(FEATURE_A | FEATURE_B).unwrap();
    assert_eq!(accepted, super::transport::feature::VERSION_1 | FEATURE_A);
    let f = fake.borrow();
    assert_eq!(f.driver_features, accepted);
    assert_eq!(
        f.status,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK
    );
    assert_eq!(f.resets, 1, "negotiation starts with a reset");
    assert!(f.violations.is_empty(), "{:?}", f.violations);
}

#[test]
fn device_without_version_1_or_refusing_features_gets_failed() {
    let (_, regs, fake) = echo_device();
    fake.borrow_mut().device_features = FEATURE_A;
    let mut t = Transport::probe(regs.clone()).unwrap();
    assert!(matches!(
        t.negotiate(0),
        Err(TransportError::NoVersion1 { .. })
    ));
    assert_ne!(fake.borrow().status & status::FAILED, 0);

    let (_, regs, fake) = echo_device();
    fake.borrow_mut().refuse_features = true;
    let mut t = Transport::probe(regs).unwrap();
    assert!(matches!(
        t.negotiate(0),
        Err(TransportError::FeaturesRefused { .. })
    ));
    assert_ne!(fake.borrow().status & status::FAILED, 0);
}

#[test]
fn reset_that_never_completes_is_an_error() {
    let (_, regs, fake) = echo_device();
    fake.borrow_mut().stuck_status = Some(status::DRIVER_OK);
    let mut t = Transport::probe(regs).unwrap();
    assert_eq!(
        t.reset(),
        Err(TransportError::ResetStuck {
            status: status::DRIVER_OK
        })
    );
}

#[test]
fn config_reads_retry_on_generation_change_and_give_up_eventually() {
    let (_, regs, fake) = echo_device();
    fake.borrow_mut().config[..8].copy_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    let t = Transport::probe(regs).unwrap();
    fake.borrow_mut().tear_config_reads = 3;
    let pair = t.read_config(|c| Ok((c.u32(0)?, c.u32(4)?))).unwrap();
    assert_eq!(pair, (1, 2));
    assert_eq!(
        fake.borrow().tear_config_reads,
        0,
        "torn reads were retried"
    );
    fake.borrow_mut().tear_config_reads = 1000;
    assert_eq!(
        t.read_config(|c| c.u32(0)),
        Err(TransportError::ConfigUnstable)
    );
    fake.borrow_mut().tear_config_reads = 0;
    assert_eq!(
        t.read_config(|c| c.u32(44)),
        Err(TransportError::ConfigOutOfRange { offset: 44 })
    );
}

#[test]
fn request_round_trips_through_the_device() {
    let (hal, regs, fake) = echo_device();
    let mut dev = Device::new(hal.clone(), regs, ID, FEATURE_A, &[16, 8]).unwrap();
    assert_eq!(dev.queue(0).unwrap().size(), 16);
    assert_eq!(dev.queue(1).unwrap().size(), 8);
    let (req_region, req) = buffer(&hal, b"hello virtio");
    let resp_region = hal.dma_alloc(1).unwrap();
    let resp = Buffer {
        paddr: resp_region.paddr(),
        len: 64,
    };
    for round in 0..40 {
        // More rounds than entries: the rings wrap and descriptors are reused.
        let written = dev.request(round % 2, &[req], &[resp]).unwrap();
        assert_eq!(written, 12);
    }
    let mut back = [0u8; 12];
    hal.read(&resp_region, 0, &mut back).unwrap();
    assert_eq!(&back, b"hello virtio");
    assert_eq!(dev.queue(0).unwrap().free_descriptors(), 16);
    let f = fake.borrow();
    assert_eq!(f.chains_served, 40);
    assert_eq!(f.notifications, 40);
    assert!(f.violations.is_empty(), "{:?}", f.violations);
    drop(f);
    hal.dma_free(req_region).unwrap();
    hal.dma_free(resp_region).unwrap();
    drop(dev);
    assert_eq!(
        fake.borrow().memory.outstanding_pages(),
        0,
        "queues freed on drop"
    );
    assert_eq!(fake.borrow().status, 0, "device reset on drop");
}

#[test]
fn queue_size_is_capped_by_the_device_and_rounded_to_a_power_of_two() {
    let (hal, regs, fake) = echo_device();
    fake.borrow_mut().queues[0].num_max = 100;
    let dev = Device::new(hal, regs, ID, 0, &[1024]).unwrap();
    assert_eq!(dev.queue(0).unwrap().size(), 64);
    assert!(fake.borrow().violations.is_empty());
}

#[test]
fn chains_of_several_buffers_keep_readable_before_writable() {
    let (hal, regs, fake) = echo_device();
    let mut dev = Device::new(hal.clone(), regs, ID, 0, &[8]).unwrap();
    let (r1, a) = buffer(&hal, b"abc");
    let (r2, b) = buffer(&hal, b"defg");
    let out = hal.dma_alloc(1).unwrap();
    let w1 = Buffer {
        paddr: out.paddr(),
        len: 2,
    };
    let w2 = Buffer {
        paddr: out.paddr() + 100,
        len: 10,
    };
    assert_eq!(dev.request(0, &[a, b], &[w1, w2]).unwrap(), 7);
    let mut first = [0u8; 2];
    let mut rest = [0u8; 5];
    hal.read(&out, 0, &mut first).unwrap();
    hal.read(&out, 100, &mut rest).unwrap();
    assert_eq!((&first, &rest), (b"ab", b"cdefg"));
    assert!(
        fake.borrow().violations.is_empty(),
        "{:?}",
        fake.borrow().violations
    );
    for r in [r1, r2, out] {
        hal.dma_free(r).unwrap();
    }
}

fn misbehaving(
    m: Misbehaviour,
) -> (
    VirtioError,
    Device<FakeHal, FakeRegs>,
    alloc::rc::Rc<core::cell::RefCell<Fake>>,
) {
    let (hal, regs, fake) = echo_device();
    let mut dev = Device::new(hal.clone(), regs, ID, 0, &[8]).unwrap();
    let (_r, req) = buffer(&hal, b"12345678");
    let out = hal.dma_alloc(1).unwrap();
    let resp = Buffer {
        paddr: out.paddr(),
        len: 8,
    };
    // One good round first, so the bad one is not at index 0.
    dev.request(0, &[req], &[resp]).unwrap();
    fake.borrow_mut().misbehave = Some(m);
    let err = dev.request(0, &[req], &[resp]).unwrap_err();
    (err, dev, fake)
}

#[test]
fn used_ring_lies_are_errors_and_stop_the_device() {
    let (err, dev, fake) = misbehaving(Misbehaviour::UsedId(9));
    assert_eq!(
        err,
        VirtioError::Queue(QueueError::UsedIdOutOfRange { id: 9, size: 8 })
    );
    assert!(dev.is_broken());
    assert_eq!(
        fake.borrow().status,
        0,
        "reset so it cannot touch the buffers"
    );

    // Descriptor 5 exists but heads no chain in flight (the chain in flight is 0, 1).
    let (err, _, _) = misbehaving(Misbehaviour::UsedId(5));
    assert_eq!(
        err,
        VirtioError::Queue(QueueError::UsedIdNotInFlight { id: 5 })
    );

    let (err, _, _) = misbehaving(Misbehaviour::UsedLen(9));
    assert_eq!(
        err,
        VirtioError::Queue(QueueError::UsedLengthTooLong {
            id: 0,
            len: 9,
            writable: 8
        })
    );

    let (err, _, _) = misbehaving(Misbehaviour::UsedIdxJump(9));
    assert!(matches!(
        err,
        VirtioError::Queue(QueueError::UsedIndexJump {
            last: 1,
            now: 10,
            size: 8
        })
    ));
}

#[test]
fn a_silent_device_times_out_and_reset_brings_it_back() {
    let (err, mut dev, fake) = misbehaving(Misbehaviour::Silent);
    assert!(
        matches!(
            err,
            VirtioError::Timeout {
                queue: 0,
                waited_ms: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.borrow().status, 0);
    let hal = dev.hal().clone();
    let (_r, req) = buffer(&hal, b"x");
    let out = hal.dma_alloc(1).unwrap();
    let resp = Buffer {
        paddr: out.paddr(),
        len: 8,
    };
    assert_eq!(dev.request(0, &[req], &[resp]), Err(VirtioError::Broken));
    fake.borrow_mut().misbehave = None;
    dev.reset().unwrap();
    assert_eq!(dev.request(0, &[req], &[resp]), Ok(1));
    assert!(
        fake.borrow().violations.is_empty(),
        "{:?}",
        fake.borrow().violations
    );
}

#[test]
fn device_needs_reset_is_surfaced() {
    let (err, dev, _) = misbehaving(Misbehaviour::NeedsReset);
    assert_eq!(err, VirtioError::NeedsReset);
    assert!(dev.is_broken());
}

#[test]
fn wrong_device_type_and_missing_queue_leak_nothing() {
    let (hal, regs, fake) = echo_device();
    let err = Device::new(hal.clone(), regs.clone(), 16, 0, &[8])
        .err()
        .unwrap();
    assert_eq!(
        err,
        VirtioError::Transport(TransportError::WrongDevice {
            expected: 16,
            found: ID
        })
    );
    // Three queues asked for, two exist: the two made are freed again.
    let err = Device::new(hal, regs, ID, 0, &[8, 8, 8]).err().unwrap();
    assert_eq!(
        err,
        VirtioError::Transport(TransportError::QueueUnavailable { queue: 2 })
    );
    let f = fake.borrow();
    assert_eq!(f.memory.outstanding_pages(), 0);
    assert_eq!(f.status, 0);
}

#[test]
fn queue_refuses_bad_chains_without_touching_state() {
    let (hal, _, _) = echo_device();
    assert_eq!(
        SplitQueue::new(&hal, 0, 12).err(),
        Some(QueueError::BadSize(12))
    );
    let mut q = SplitQueue::new(&hal, 0, 4).unwrap();
    let b = Buffer {
        paddr: 0x1000,
        len: 4,
    };
    assert_eq!(q.add(&hal, &[], &[]), Err(QueueError::EmptyChain));
    assert_eq!(
        q.add(&hal, &[b; 5], &[]),
        Err(QueueError::Full { needed: 5, free: 4 })
    );
    assert_eq!(
        q.add(&hal, &[Buffer { len: 0, ..b }], &[]),
        Err(QueueError::ZeroLength)
    );
    let big = Buffer {
        paddr: 0,
        len: u32::MAX,
    };
    assert_eq!(q.add(&hal, &[], &[big, big]), Err(QueueError::TooLong));
    assert_eq!(q.free_descriptors(), 4);
    let tokens: Vec<u16> = (0..2).map(|_| q.add(&hal, &[b], &[b]).unwrap()).collect();
    assert_eq!(tokens, vec![0, 2]);
    assert_eq!(
        q.add(&hal, &[b], &[]),
        Err(QueueError::Full { needed: 1, free: 0 })
    );
    assert_eq!(q.in_flight(), 2);
    assert_eq!(q.pop_used(&hal), Ok(None));
    q.free(&hal).unwrap();
}

#[test]
fn interrupt_status_reports_used_buffers_until_acknowledged() {
    let (hal, regs, fake) = echo_device();
    let mut dev = Device::new(hal.clone(), regs, ID, 0, &[8]).unwrap();
    assert_eq!(dev.transport().interrupt_status(), 0);
    let (_r, req) = buffer(&hal, b"ping");
    let out = hal.dma_alloc(1).unwrap();
    let before = hal.interrupt_count();
    dev.request(
        0,
        &[req],
        &[Buffer {
            paddr: out.paddr(),
            len: 4,
        }],
    )
    .unwrap();
    assert_eq!(hal.interrupt_count(), before + 1);
    let t = dev.transport();
    assert_eq!(
        t.interrupt_status(),
        super::transport::interrupt::USED_BUFFER
    );
    t.ack_interrupt(super::transport::interrupt::USED_BUFFER);
    assert_eq!(t.interrupt_status(), 0);
    assert!(fake.borrow().violations.is_empty());
}

type DeferredRig = (
    FakeHal,
    Device<FakeHal, FakeRegs>,
    alloc::rc::Rc<core::cell::RefCell<Fake>>,
    alloc::rc::Rc<core::cell::RefCell<Deferred>>,
    super::DmaRegion,
);

/// A device with the deferring model and one page holding requests at 0, 64, 128, ...
/// and responses at 2048 + the same offsets.
fn deferred_device() -> DeferredRig {
    let model = alloc::rc::Rc::new(core::cell::RefCell::new(Deferred::default()));
    let (hal, regs, fake) = Fake::new(ID, 0, 2, 256, vec![0; 44], Box::new(model.clone()));
    let dev = Device::new(hal.clone(), regs, ID, 0, &[16, 4]).unwrap();
    let page = hal.dma_alloc(1).unwrap();
    (hal, dev, fake, model, page)
}

/// Request `slot` of the page (its bytes written first) and its response buffer.
fn slot(hal: &FakeHal, page: &super::DmaRegion, n: u64, bytes: &[u8]) -> (Buffer, Buffer) {
    hal.write(page, 64 * n as usize, bytes).unwrap();
    (
        Buffer {
            paddr: page.paddr() + 64 * n,
            len: bytes.len() as u32,
        },
        Buffer {
            paddr: page.paddr() + 2048 + 64 * n,
            len: 32,
        },
    )
}

#[test]
fn chains_stay_outstanding_while_requests_run_and_are_stashed_for_pop_used() {
    let (hal, mut dev, fake, model, page) = deferred_device();
    let mut tokens = Vec::new();
    for (n, bytes) in [b"H-one", b"H-two", b"H-thr"].iter().enumerate() {
        let (req, resp) = slot(&hal, &page, n as u64, *bytes);
        tokens.push(dev.submit(0, &[req], &[resp]).unwrap());
    }
    assert_eq!(dev.outstanding(0), 3);
    // A synchronous command while three chains are held: it comes back, they do not.
    let (req, resp) = slot(&hal, &page, 5, b"sync");
    assert_eq!(dev.request(0, &[req], &[resp]).unwrap(), 4);
    assert_eq!(model.borrow().held.len(), 3);
    assert_eq!(dev.pop_used(0).unwrap(), None);
    // The device finishes two of them, out of order, while the next request waits.
    model.borrow_mut().release(b"H-thr");
    model.borrow_mut().release(b"H-one");
    assert_eq!(dev.request(0, &[req], &[resp]).unwrap(), 4);
    assert_eq!(
        dev.outstanding(0),
        3 - 2 + 2,
        "stashed chains still count until popped"
    );
    let first = dev.pop_used(0).unwrap().unwrap();
    let second = dev.pop_used(0).unwrap().unwrap();
    assert_eq!((first.token, second.token), (tokens[2], tokens[0]));
    assert_eq!(first.len, 5);
    assert_eq!(dev.pop_used(0).unwrap(), None);
    assert_eq!(dev.outstanding(0), 1);
    // The last one comes back through a plain wait.
    model.borrow_mut().release(b"H-two");
    fake.borrow_mut().run();
    assert!(dev.wait_used(1_000_000).unwrap());
    assert_eq!(dev.pop_used(0).unwrap().unwrap().token, tokens[1]);
    let mut back = [0u8; 5];
    hal.read(&page, 2048 + 64, &mut back).unwrap();
    assert_eq!(&back, b"H-two");
    assert_eq!(dev.outstanding(0), 0);
    assert_eq!(dev.queue(0).unwrap().free_descriptors(), 16);
    let f = fake.borrow();
    assert!(f.violations.is_empty(), "{:?}", f.violations);
    assert_eq!(f.shapes.len(), 5);
    assert_eq!(f.shapes[0].readable, vec![5]);
    assert_eq!(f.shapes[0].writable, vec![32]);
    drop(f);
    hal.dma_free(page).unwrap();
}

#[test]
fn event_buffers_complete_when_the_device_posts_and_waits_time_out_quietly() {
    let (hal, mut dev, fake, model, page) = deferred_device();
    let event = Buffer {
        paddr: page.paddr() + 1024,
        len: 8,
    };
    let token = dev.submit(1, &[], &[event]).unwrap();
    // Nothing to give back: the wait ends at its timeout without touching the device.
    assert!(!dev.wait_used(5_000_000).unwrap());
    assert!(!dev.is_broken());
    assert_eq!(
        model.borrow().events.len(),
        1,
        "the buffer reached the device"
    );
    model.borrow_mut().post(&[1, 0, 0, 0, 7, 0, 0, 0]);
    fake.borrow_mut().run();
    assert!(dev.wait_used(5_000_000).unwrap());
    assert_eq!(dev.pop_used(0).unwrap(), None);
    let used = dev.pop_used(1).unwrap().unwrap();
    assert_eq!((used.token, used.len), (token, 8));
    let mut back = [0u8; 8];
    hal.read(&page, 1024, &mut back).unwrap();
    assert_eq!(back, [1, 0, 0, 0, 7, 0, 0, 0]);
    assert!(fake.borrow().violations.is_empty());
    hal.dma_free(page).unwrap();
}

#[test]
fn a_reset_forgets_held_and_stashed_chains() {
    let (hal, mut dev, fake, model, page) = deferred_device();
    let (req, resp) = slot(&hal, &page, 0, b"H-held");
    dev.submit(0, &[req], &[resp]).unwrap();
    let (req, resp) = slot(&hal, &page, 1, b"H-done");
    dev.submit(0, &[req], &[resp]).unwrap();
    model.borrow_mut().release(b"H-done");
    let (sreq, sresp) = slot(&hal, &page, 2, b"sync");
    dev.request(0, &[sreq], &[sresp]).unwrap();
    assert_eq!(dev.outstanding(0), 2);
    // A used element naming a descriptor not in flight: the device is reset.
    fake.borrow_mut().misbehave = Some(Misbehaviour::UsedId(9));
    assert!(dev.request(0, &[sreq], &[sresp]).is_err());
    assert!(dev.is_broken());
    assert_eq!(dev.pop_used(0), Err(VirtioError::Broken));
    assert_eq!(fake.borrow().held_chains(), 0);
    dev.reset().unwrap();
    assert_eq!(
        dev.outstanding(0),
        0,
        "nothing stashed or in flight after a reset"
    );
    assert_eq!(dev.pop_used(0).unwrap(), None);
    assert_eq!(dev.request(0, &[sreq], &[sresp]).unwrap(), 4);
    assert!(fake.borrow().violations.is_empty());
    hal.dma_free(page).unwrap();
}

#[test]
fn waiting_for_chains_notices_device_needs_reset() {
    let (hal, mut dev, fake, _model, page) = deferred_device();
    let (req, resp) = slot(&hal, &page, 0, b"H-held");
    dev.submit(0, &[req], &[resp]).unwrap();
    fake.borrow_mut().misbehave = Some(Misbehaviour::NeedsReset);
    assert_eq!(dev.wait_used(10_000_000), Err(VirtioError::NeedsReset));
    assert!(dev.is_broken());
    assert_eq!(fake.borrow().status, 0, "reset at once");
    assert_eq!(dev.submit(0, &[req], &[resp]), Err(VirtioError::Broken));
    fake.borrow_mut().misbehave = None;
    dev.reset().unwrap();
    assert_eq!(dev.outstanding(0), 0);
    hal.dma_free(page).unwrap();
}
