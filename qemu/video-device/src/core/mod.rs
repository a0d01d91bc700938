//! The device's protocol core: everything between a descriptor chain and a decoded frame
//! in guest memory, with no vhost-user in it, so it runs in unit tests and the fuzzer on
//! a `GuestMemoryMmap` and a fake codec.
//!
//! `chain` (the only code that touches a chain's memory), `resources` (bounded tables,
//! RESOURCE_CREATE checks), `stream` (one stream's state machine), `events` (the event
//! queue), `caps` (what the device offers), `device` (dispatch, faults, reset).
#![forbid(unsafe_code)]

pub mod caps;
pub mod chain;
pub mod device;
pub mod events;
pub mod resources;
pub mod stream;

pub use chain::{Chain, Completion, Desc, QueueIndex};
pub use device::{Device, MAX_STREAMS};

#[cfg(test)]
mod tests;
