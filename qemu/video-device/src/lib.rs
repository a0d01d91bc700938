//! `monolith-video-device`: a vhost-user virtio-video (v3 draft) H.264 decoder device for
//! Monolith under QEMU, and the offline tools its tests use (clip encoder, reference
//! decoder, stream probe).
//!
//! Layers, each testable alone: [`core`] (the protocol: chains, streams, resources,
//! events, faults) over [`codec`] (the decoder seam; [`openh264_codec`] is the real one)
//! and [`frame`] (the one I420 -> ARGB8888/NV12 conversion); [`vhost`] is the vhost-user
//! glue and [`serve`] starts it (the socket's lifetime is
//! `monolith-vhost-common`'s). [`annexb`], [`encode`] and [`reference`]
//! serve the `probe`, `encode` and `decode` subcommands.

pub mod annexb;
pub mod codec;
pub mod core;
pub mod encode;
pub mod fake_codec;
pub mod faults;
pub mod frame;
pub mod fuzzing;
pub mod openh264_codec;
pub mod reference;
pub mod serve;
pub mod vhost;
