//! The PASR DRAM-controller model beside QEMU: our vhost-user device (`qemu/pasr-device`),
//! started before QEMU and stopped when the boot ends by [`crate::vhost_device`]; this
//! file adds the model's QEMU arguments and command line.
//!
//! The model learns the dies, banks and interleaving from the same device tree the
//! firmware boots with (`serve --dtb`), so the two can never disagree about which bytes a
//! masked bank holds. Its register block, virtio id and config size come from the
//! firmware crate's `monolith::pasr::regs`, the one definition both sides share.

use std::path::{Path, PathBuf};

use anyhow::Result;
use monolith::pasr::regs;

pub use crate::vhost_device::Running;

/// The device's Cargo package and binary name.
pub const PACKAGE: &str = "monolith-pasr-device";

/// Builds the device (release) once per xtask run and returns its path.
pub fn binary() -> Result<PathBuf> {
    crate::vhost_device::binary(PACKAGE, "PASR controller")
}

/// The QEMU arguments that connect the controller on `socket`.
pub fn qemu_args(socket: &Path) -> Vec<String> {
    crate::vhost_device::qemu_args(
        "pasr",
        socket,
        regs::VIRTIO_ID,
        regs::NUM_QUEUES,
        regs::CONFIG_SIZE as u32,
    )
}

/// The device's command line for one boot: its socket and the boot's device tree.
pub fn serve_args(socket: &Path, dtb: &Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--socket".into(),
        socket.display().to_string(),
        "--dtb".into(),
        dtb.display().to_string(),
    ]
}

/// Starts the controller on a fresh socket for a boot with `dtb`.
pub fn start(binary: &Path, dtb: &Path) -> Result<Running> {
    let socket = crate::vhost_device::new_socket_path("pasr");
    Running::start(
        binary,
        &socket,
        &serve_args(&socket, dtb),
        "PASR controller",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_and_device_arguments() {
        let args = qemu_args(Path::new("/tmp/p.sock")).join(" ");
        assert!(
            args.contains(&format!(
                "vhost-user-device,chardev=pasr,virtio-id={},num_vqs={},config_size={}",
                regs::VIRTIO_ID,
                regs::NUM_QUEUES,
                regs::CONFIG_SIZE
            )),
            "{args}"
        );
        assert_eq!(
            serve_args(Path::new("/tmp/p.sock"), Path::new("/t/b.dtb")),
            ["serve", "--socket", "/tmp/p.sock", "--dtb", "/t/b.dtb"]
        );
    }
}
