//! `serve`: one QEMU connection with the video backend (openh264 decoding). The socket's
//! lifetime (listen, one connection, clean exit on disconnect or SIGTERM/SIGINT, the socket
//! file removed) is `monolith-vhost-common`'s, shared with the PASR controller model.
#![deny(unsafe_code)]

use std::path::Path;

use anyhow::{Context, Result};

use crate::core::Device;
use crate::faults::Faults;
use crate::openh264_codec::OpenH264Factory;
use crate::vhost::VideoBackend;

/// Serve one QEMU connection on `socket`.
pub fn serve(socket: &Path, faults: Faults) -> Result<()> {
    let device = Device::new(Box::new(OpenH264Factory), faults);
    let backend = VideoBackend::new(device).context("creating the backend's exit event")?;
    monolith_vhost_common::serve("monolith-video-device", socket, backend)
}
