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
}

impl VideoBackend {
    pub fn new(device: Device) -> VideoBackend {
        VideoBackend {
            device: Mutex::new(device),
            mem: None,
            event_idx: false,
        }
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
