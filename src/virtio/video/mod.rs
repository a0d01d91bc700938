//! virtio-video (v3 draft, device ids 30/31): the wire format shared with our vhost-user
//! decoder device under `qemu/`, and the decoder driver on our virtio layer.
#![forbid(unsafe_code)]

pub mod wire;

#[cfg(test)]
mod wire_tests;
