//! The virtio-video decoder beside QEMU: our vhost-user device (`qemu/video-device`),
//! started before QEMU and stopped when the boot ends by [`crate::vhost_device`]; this
//! file adds the decoder's QEMU arguments and command line.
//!
//! Fault injection (`--video-fault SPEC`, see `qemu/video-device`) is passed through as the
//! device's own `--fault` arguments.

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use crate::vhost_device::Running;

/// The device's Cargo package and binary name.
pub const PACKAGE: &str = "monolith-video-device";
/// virtio device id of a video decoder (virtio 1.x section 5, v3 draft).
pub const VIRTIO_ID_VIDEO_DECODER: u32 = 31;
/// `struct virtio_video_config` is 44 bytes.
const CONFIG_SIZE: u32 = 44;

/// Builds the device (release) once per xtask run and returns its path.
pub fn binary() -> Result<PathBuf> {
    crate::vhost_device::binary(PACKAGE, "video decoder")
}

/// A fresh socket path for one boot.
pub fn new_socket_path() -> PathBuf {
    crate::vhost_device::new_socket_path("video")
}

/// The QEMU arguments that connect the decoder on `socket` (after every other device, so
/// it takes the virtio-mmio slot below the GPU's: 0x0a003c00 on a board with a GPU).
pub fn qemu_args(socket: &Path) -> Vec<String> {
    crate::vhost_device::qemu_args("video", socket, VIRTIO_ID_VIDEO_DECODER, 2, CONFIG_SIZE)
}

/// The device's command line for one boot.
pub fn serve_args(socket: &Path, faults: &[String]) -> Vec<String> {
    let mut args = vec!["serve".to_string(), "--socket".to_string()];
    args.push(socket.display().to_string());
    for fault in faults {
        args.push("--fault".into());
        args.push(fault.clone());
    }
    args
}

/// Starts the decoder on `socket` with `faults` injected.
pub fn start(binary: &Path, socket: &Path, faults: &[String]) -> Result<Running> {
    Running::start(binary, socket, &serve_args(socket, faults), "video decoder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_and_device_arguments() {
        let socket = Path::new("/tmp/a,b.sock");
        let args = qemu_args(socket).join(" ");
        assert!(
            args.contains("socket,id=video,path=/tmp/a,,b.sock"),
            "{args}"
        );
        assert!(
            args.contains("vhost-user-device,chardev=video,virtio-id=31,num_vqs=2"),
            "{args}"
        );
        assert!(args.contains("config_size=44"), "{args}");
        let serve = serve_args(Path::new("/tmp/s"), &["stall@3".into()]);
        assert_eq!(serve, ["serve", "--socket", "/tmp/s", "--fault", "stall@3"]);
    }
}
