//! The vhost-user glue: the [`VhostUserBackendMut`] QEMU's `vhost-user-device` talks to,
//! passing config reads and writes (GET_CONFIG/SET_CONFIG) and the memory table to the
//! [`Controller`]. No register or state logic lives here.
//!
//! # Theory of operation
//!
//! Features: VERSION_1 and vhost-user's PROTOCOL_FEATURES; protocol features CONFIG (the
//! register block), REPLY_ACK and RESET_DEVICE (which resets the controller). One queue,
//! because QEMU's `vhost-user-base` always has at least one (`num_vqs` 0 becomes 1 in
//! `vub_device_realize`) and would otherwise address a queue the backend does not have; the
//! driver never sets it up, and a kick on it is logged and ignored.
//!
//! Errors: vhost-user-backend ends the connection when `set_config` returns an error (the
//! vhost crate's request handler passes it up after the REPLY_ACK, and the daemon's loop
//! stops on it), which to the guest is a device that vanished. So a SET_CONFIG the block
//! cannot take is logged and answered with success, changing nothing. A GET_CONFIG outside
//! the block gets an empty answer, which the vhost crate sends as a zero-size reply, the
//! protocol's error reply: QEMU's `vhost_user_read` reads the header's size of payload and
//! `vhost_user_get_config` reports "Received bad msg size". QEMU itself only ever asks for
//! the whole block (offset 0, `config_size` bytes).
//!
//! Memory: QEMU sends the table when the driver sets DRIVER_OK; until then the controller
//! gets `None`. Each SET_CONFIG uses the table current at that moment.
#![deny(unsafe_code)]

use std::io;

use log::{debug, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackendMut, VringRwLock};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::controller::Controller;
use monolith::pasr::regs::NUM_QUEUES;

/// Entries of the unused queue (QEMU's default `vq_size`, 64).
pub const QUEUE_SIZE: usize = 64;

/// The backend.
pub struct PasrBackend {
    controller: Controller,
    mem: Option<GuestMemoryAtomic<GuestMemoryMmap>>,
    kick_logged: bool,
    // The worker thread's exit event: without one vhost-user-backend cannot stop its
    // worker, and dropping the daemon (when QEMU disconnects) would wait forever.
    exit: (EventConsumer, EventNotifier),
}

impl PasrBackend {
    pub fn new(controller: Controller) -> io::Result<PasrBackend> {
        Ok(PasrBackend {
            controller,
            mem: None,
            kick_logged: false,
            exit: new_event_consumer_and_notifier(EventFlag::NONBLOCK)?,
        })
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }
}

impl VhostUserBackendMut for PasrBackend {
    type Vring = VringRwLock;
    type Bitmap = ();

    fn num_queues(&self) -> usize {
        NUM_QUEUES as usize
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1) | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn reset_device(&mut self) {
        debug!("RESET_DEVICE");
        self.controller.reset();
    }

    fn set_event_idx(&mut self, _enabled: bool) {}

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.controller.read(offset, size).unwrap_or_else(|e| {
            warn!("GET_CONFIG refused: {e}");
            Vec::new()
        })
    }

    fn set_config(&mut self, offset: u32, buf: &[u8]) -> io::Result<()> {
        let guard = self.mem.as_ref().map(|m| m.memory());
        if let Err(e) = self.controller.write(guard.as_deref(), offset, buf) {
            warn!("SET_CONFIG ignored: {e}");
        }
        Ok(())
    }

    fn update_memory(&mut self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        debug!("memory table received");
        self.mem = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        Some((self.exit.0.try_clone().ok()?, self.exit.1.try_clone().ok()?))
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        _evset: EventSet,
        _vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if !self.kick_logged {
            warn!("kick on queue {device_event}, which the controller does not use: ignored");
            self.kick_logged = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monolith::pasr::geometry::{Geometry, UnitKind};
    use monolith::pasr::regs::{command, offset, read_u32, Command, Status, CONFIG_SIZE, POISON};
    use vm_memory::{Bytes, GuestAddress};

    const BASE: u64 = 0x4000_0000;

    fn backend() -> PasrBackend {
        let g = Geometry::new(BASE, 1, 8 << 20, 2, UnitKind::Bank, None, 4 << 20).unwrap();
        PasrBackend::new(Controller::new(g, 85)).unwrap()
    }

    #[test]
    fn features_offer_config_and_one_queue() {
        let b = backend();
        assert_ne!(b.features() & (1 << VIRTIO_F_VERSION_1), 0);
        assert!(b
            .protocol_features()
            .contains(VhostUserProtocolFeatures::CONFIG));
        assert!(!b
            .protocol_features()
            .contains(VhostUserProtocolFeatures::MQ));
        assert_eq!(b.num_queues(), 1);
    }

    #[test]
    fn config_round_trips_through_the_glue_and_odd_accesses_do_not_fail() {
        let mut b = backend();
        assert_eq!(b.get_config(0, 4), b"PASR");
        assert!(
            b.get_config(CONFIG_SIZE as u32, 4).is_empty(),
            "error reply"
        );
        assert!(
            b.set_config(CONFIG_SIZE as u32 - 2, &[0; 8]).is_ok(),
            "ignored, not an error"
        );
        let mut image = b.get_config(0, CONFIG_SIZE as u32);
        image[offset::COMMAND..offset::COMMAND + 4].copy_from_slice(
            &Command {
                opcode: command::ENTER,
                sequence: 1,
            }
            .encode()
            .to_le_bytes(),
        );
        b.set_config(0, &image).unwrap();
        let status = Status::decode(read_u32(
            &b.get_config(0, CONFIG_SIZE as u32),
            offset::STATUS,
        ));
        assert!(status.self_refresh);
        b.reset_device();
        assert!(!b.controller().in_self_refresh());
    }

    #[test]
    fn the_memory_table_is_what_entry_overwrites() {
        let mut b = backend();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), 8 << 20)]).unwrap();
        mem.write_slice(&[1; 16], GuestAddress(BASE + (4 << 20)))
            .unwrap();
        let mut image = b.get_config(0, CONFIG_SIZE as u32);
        image[offset::mr16(0)] = 0b10;
        image[offset::COMMAND] = command::ENTER;
        image[offset::COMMAND + 2] = 1;
        // Before the table: refused.
        b.set_config(0, &image).unwrap();
        assert!(!b.controller().in_self_refresh());
        b.update_memory(GuestMemoryAtomic::new(mem.clone()))
            .unwrap();
        image[offset::COMMAND + 2] = 2;
        b.set_config(0, &image).unwrap();
        assert!(b.controller().in_self_refresh());
        let mut got = [0u8; 16];
        mem.read_slice(&mut got, GuestAddress(BASE + (4 << 20)))
            .unwrap();
        assert_eq!(got, [POISON; 16]);
    }
}
