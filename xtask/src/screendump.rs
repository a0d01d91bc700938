//! `cargo xtask screendump FILE.png`: save what the running firmware's screen shows.
//!
//! Theory of operation
//! -------------------
//! `cargo xtask run` serves QMP at [`crate::run::qmp_socket`]. This verb connects there,
//! asks QEMU for a `screendump` in PNG format into a temporary file beside the socket
//! (QEMU writes it, so the path must be one QEMU can open), checks that it decodes, and
//! moves it to FILE. No socket, or nobody answering on it, means nothing is running,
//! which is said plainly instead of as a socket error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::qmp::Qmp;
use crate::run::qmp_socket;
use crate::screen::Image;

/// `cargo xtask screendump FILE.png`
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where to save the PNG
    pub file: PathBuf,
}

pub fn verb(args: &Args) -> Result<ExitCode> {
    let socket = qmp_socket();
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        bail!(
            "nothing is running: no QEMU answers on {} (start the firmware with `cargo xtask run`)",
            socket.display()
        );
    }
    let mut qmp = Qmp::connect(&socket, Duration::from_secs(2))?;
    let image = dump(
        &mut qmp,
        &socket.with_extension(format!("{}.png", std::process::id())),
    )?;
    let out = std::path::absolute(&args.file).unwrap_or_else(|_| args.file.clone());
    image.save_png(&out)?;
    println!(
        "screendump: {}x{} saved to {}",
        image.width,
        image.height,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Ask QEMU for a PNG at `scratch`, read and decode it, remove it.
pub fn dump(qmp: &mut Qmp, scratch: &std::path::Path) -> Result<Image> {
    qmp.screendump(scratch)?;
    let bytes = std::fs::read(scratch).with_context(|| format!("reading {}", scratch.display()));
    let _ = std::fs::remove_file(scratch);
    Image::decode_png(&bytes?).context("QEMU's screendump")
}
