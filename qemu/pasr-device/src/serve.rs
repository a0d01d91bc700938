//! `serve`: one QEMU connection with the controller model. The socket's lifetime (listen,
//! one connection, clean exit on disconnect or SIGTERM/SIGINT, the socket file removed) is
//! `monolith-vhost-common`'s, shared with the video device.
#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::{Context, Result};

use crate::controller::Controller;
use crate::vhost::PasrBackend;

/// Serve one QEMU connection on `socket` with `controller`.
pub fn serve(socket: &Path, controller: Controller) -> Result<()> {
    let backend = PasrBackend::new(controller).context("creating the backend's exit event")?;
    monolith_vhost_common::serve("monolith-pasr-device", socket, backend)
}
