//! The vhost-user glue: the [`VhostUserBackendMut`] QEMU's `vhost-user-device` talks to,
//! turning virtqueue chains into core [`Chain`]s and core [`Completion`]s into used-ring
//! entries. No protocol logic lives here.
//!
//! # Theory of operation
//!
//! Two queues (0 commands, 1 events), 256 entries each, served by vhost-user-backend's one
//! worker thread (the default `queues_per_thread`: every queue on thread 0). That thread
//! is the device's only decoding thread: decoding happens inside command handling, so the
//! openh264 decoders are only ever called from it (the crate documents multi-threaded
//! decoding as unsafe). A kick pops every available chain, hands each to the core, then
//! puts the core's completions on the used rings and signals each ring that got one. With
//! EVENT_IDX the kick handler loops until no chain arrived while notifications were off.
//!
//! Features: VERSION_1, RESOURCE_GUEST_PAGES (bit 0), INDIRECT_DESC, EVENT_IDX, and
//! vhost-user's PROTOCOL_FEATURES. Protocol features: MQ (two queues), CONFIG (the 44-byte
//! `virtio_video_config`, read-only: writes are ignored), REPLY_ACK, RESET_DEVICE. Both a
//! RESET_DEVICE and a ring stopping (GET_VRING_BASE, which QEMU sends when the driver
//! resets the device) reset the core: every stream and kept chain is dropped with the
//! rings. The memory table is re-read at each kick, so a new table (SET_MEM_TABLE) is
//! what every later check and write sees.
#![deny(unsafe_code)]

use std::io;
use std::sync::Mutex;

use log::{debug, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackendMut, VringRwLock, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::QueueOwnedT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::core::{Chain, Completion, Desc, Device, QueueIndex};
use monolith::virtio::video::wire::{feature, CONFIG_SIZE};

/// Entries per virtqueue (QEMU's `vq_size=256`).
pub const QUEUE_SIZE: usize = 256;
/// Commands and events.
pub const NUM_QUEUES: usize = 2;

/// The backend.
pub struct VideoBackend {
    // A lock so the backend is `Sync` as vhost-user-backend requires; only the worker
    // thread and the vhost-user request thread (reset) ever take it.
    device: Mutex<Device>,
    mem: Option<GuestMemoryAtomic<GuestMemoryMmap>>,
    event_idx: bool,
    // The worker thread's exit event: without one vhost-user-backend cannot stop its
    // worker, and dropping the daemon (when QEMU disconnects) would wait forever.
    exit: (EventConsumer, EventNotifier),
}

impl VideoBackend {
    pub fn new(device: Device) -> io::Result<VideoBackend> {
        Ok(VideoBackend {
            device: Mutex::new(device),
            mem: None,
            event_idx: false,
            exit: new_event_consumer_and_notifier(EventFlag::NONBLOCK)?,
        })
    }

    fn device(&self) -> std::sync::MutexGuard<'_, Device> {
        // A panic while holding the lock would already have aborted (panic = "abort" in
        // release); take the state as it is rather than poison the device.
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pop every available chain of `queue` and give it to the core.
    fn process(&self, queue: QueueIndex, vrings: &[VringRwLock]) -> io::Result<()> {
        let Some(atomic) = &self.mem else {
            warn!("kick before the memory table; ignored");
            return Ok(());
        };
        let mem = atomic.memory();
        let Some(vring) = vrings.get(queue as usize) else {
            return Ok(());
        };
        loop {
            if self.event_idx {
                vring.disable_notification().map_err(io::Error::other)?;
            }
            let chains: Vec<_> = vring
                .get_mut()
                .get_queue_mut()
                .iter(mem.clone())
                .map_err(io::Error::other)?
                .collect();
            let mut device = self.device();
            for desc_chain in chains {
                let chain = Chain {
                    head: desc_chain.head_index(),
                    descs: desc_chain
                        .clone()
                        .map(|d| Desc {
                            addr: d.addr(),
                            len: d.len(),
                            writable: d.is_write_only(),
                        })
                        .collect(),
                };
                match queue {
                    QueueIndex::Command => device.command(&*mem, chain),
                    QueueIndex::Event => device.event_buffer(&*mem, chain),
                }
            }
            let completions = device.take_completions();
            drop(device);
            complete(vrings, &completions)?;
            if !self.event_idx || !vring.enable_notification().map_err(io::Error::other)? {
                return Ok(());
            }
        }
    }
}

/// Put completions on their used rings; signal each ring that got one.
fn complete(vrings: &[VringRwLock], completions: &[Completion]) -> io::Result<()> {
    let mut touched = [false; NUM_QUEUES];
    for c in completions {
        let Some(vring) = vrings.get(c.queue as usize) else {
            continue;
        };
        vring.add_used(c.head, c.len).map_err(io::Error::other)?;
        touched[c.queue as usize] = true;
    }
    for (index, touched) in touched.iter().enumerate() {
        if let (true, Some(vring)) = (*touched, vrings.get(index)) {
            vring.signal_used_queue()?;
        }
    }
    Ok(())
}

impl VhostUserBackendMut for VideoBackend {
    type Vring = VringRwLock;
    type Bitmap = ();

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << feature::RESOURCE_GUEST_PAGES)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn reset_device(&mut self) {
        debug!("RESET_DEVICE");
        self.device().reset();
    }

    fn set_event_idx(&mut self, enabled: bool) {
        self.event_idx = enabled;
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let config = self.device().config().encode();
        let start = (offset as usize).min(CONFIG_SIZE);
        let end = start.saturating_add(size as usize).min(CONFIG_SIZE);
        let mut bytes = config.get(start..end).unwrap_or_default().to_vec();
        bytes.resize(size as usize, 0);
        bytes
    }

    fn update_memory(&mut self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        self.mem = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        Some((self.exit.0.try_clone().ok()?, self.exit.1.try_clone().ok()?))
    }

    fn stop_vring(&mut self, queue_index: u32) -> io::Result<()> {
        if queue_index == QueueIndex::Command as u32 {
            debug!("command ring stopped: device reset");
            self.device().reset();
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            warn!("unexpected epoll event {evset:?} on {device_event}");
            return Ok(());
        }
        match device_event {
            0 => self.process(QueueIndex::Command, vrings),
            1 => self.process(QueueIndex::Event, vrings),
            other => {
                warn!("event for unknown queue {other}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_codec::FakeFactory;
    use crate::faults::Faults;
    use monolith::virtio::video::wire::{self, Message, QueryCapability, QueueType};
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const SIZE: u16 = 16;

    fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
    }

    fn vring(mem: &GuestMemoryMmap, q: &MockSplitQueue<'_, GuestMemoryMmap>) -> VringRwLock {
        let vring = VringRwLock::new(GuestMemoryAtomic::new(mem.clone()), SIZE).unwrap();
        vring.set_queue_size(SIZE);
        vring
            .set_queue_info(q.desc_table_addr().0, q.avail_addr().0, q.used_addr().0)
            .unwrap();
        vring.set_queue_ready(true);
        vring.set_enabled(true);
        vring
    }

    /// The used ring's entries `(id, len)`.
    fn used(mem: &GuestMemoryMmap, q: &MockSplitQueue<'_, GuestMemoryMmap>) -> Vec<(u32, u32)> {
        let base = q.used_addr().0;
        let idx: u16 = mem.read_obj(GuestAddress(base + 2)).unwrap();
        (0..u64::from(idx))
            .map(|i| {
                let at = base + 4 + 8 * i;
                (
                    mem.read_obj(GuestAddress(at)).unwrap(),
                    mem.read_obj(GuestAddress(at + 4)).unwrap(),
                )
            })
            .collect()
    }

    fn backend(mem: &GuestMemoryMmap) -> VideoBackend {
        let mut b = VideoBackend::new(Device::new(
            Box::new(FakeFactory::default()),
            Faults::default(),
        ))
        .unwrap();
        b.update_memory(GuestMemoryAtomic::new(mem.clone()))
            .unwrap();
        b
    }

    #[test]
    fn a_kick_answers_every_chain_on_the_used_ring() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let q0 = MockSplitQueue::create(&mem, GuestAddress(0), SIZE);
        let q1 = MockSplitQueue::create(&mem, GuestAddress(0x8000), SIZE);
        let req = QueryCapability {
            queue_type: QueueType::Output,
        }
        .encode(0);
        mem.write_slice(&req, GuestAddress(0x10_0000)).unwrap();
        q0.add_desc_chains(
            &[
                // A good chain: the request in two descriptors, then the response.
                desc(0x10_0000, 4, VRING_DESC_F_NEXT, 1),
                desc(0x10_0004, 12, VRING_DESC_F_NEXT, 2),
                desc(0x20_0000, 1024, VRING_DESC_F_WRITE, 0),
                // A malformed one: response first, then the request.
                desc(0x21_0000, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4),
                desc(0x10_0000, 16, 0, 0),
            ],
            0,
        )
        .unwrap();
        let vrings = [vring(&mem, &q0), vring(&mem, &q1)];
        let mut b = backend(&mem);
        b.handle_event(0, EventSet::IN, &vrings, 0).unwrap();
        let used = used(&mem, &q0);
        let caps = crate::core::caps::capabilities(QueueType::Output).encode(0);
        assert_eq!(used, vec![(0, caps.len() as u32), (3, 8)]);
        let mut got = vec![0u8; caps.len()];
        mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(got, caps);
        let mut err = [0u8; 8];
        mem.read_slice(&mut err, GuestAddress(0x21_0000)).unwrap();
        assert_eq!(
            wire::Header::decode(&err).unwrap().type_,
            wire::ErrorCode::InvalidOperation as u32
        );
    }

    #[test]
    fn config_features_and_reset() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut b = backend(&mem);
        let features = b.features();
        assert_ne!(features & (1 << VIRTIO_F_VERSION_1), 0);
        assert_ne!(features & (1 << feature::RESOURCE_GUEST_PAGES), 0);
        assert_eq!(features & (1 << feature::RESOURCE_NON_CONTIG), 0);
        assert!(b
            .protocol_features()
            .contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::RESET_DEVICE));
        let config = b.get_config(0, CONFIG_SIZE as u32);
        let decoded = wire::Config::decode(&config).unwrap();
        assert_eq!(decoded.name(), "monolith-h264");
        assert_eq!(b.get_config(12, 13), b"monolith-h264".to_vec());
        assert_eq!(
            b.get_config(40, 100).len(),
            100,
            "past the end reads as zeros"
        );
        assert_eq!(b.get_config(u32::MAX, 4), vec![0; 4]);
        b.reset_device();
    }
}
