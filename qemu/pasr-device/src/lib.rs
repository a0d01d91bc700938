//! `monolith-pasr-device`: a vhost-user model of a DRAM controller with partial array
//! self-refresh (PASR) for Monolith under QEMU. Its registers live in virtio config space
//! (layout: [`monolith::pasr::regs`]); entering self-refresh really overwrites the masked
//! banks or segments in guest RAM, and time and energy in self-refresh are counted with
//! [`monolith::pasr::power`], the model the firmware prints from.
//!
//! Layers, each testable alone: [`controller`] (registers and the state machine, no vhost)
//! over [`ram`] (checking and overwriting guest memory); [`vhost`] is the vhost-user glue,
//! [`serve`] the socket's lifetime, [`board`] the geometry read from the board's DTB.

pub mod board;
pub mod controller;
pub mod ram;
pub mod serve;
pub mod vhost;
