//! virtio-video (v3 draft, device ids 30/31): the wire format shared with our vhost-user
//! decoder device under `qemu/` ([`wire`]), and the decoder driver on our virtio layer
//! ([`driver`]; its fake device model and tests run on the host).
#![forbid(unsafe_code)]

pub mod driver;
pub mod wire;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;

pub use driver::{BufferFlags, Completion, VideoDecoder, VideoError};
