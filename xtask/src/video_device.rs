//! The virtio-video decoder beside QEMU: our vhost-user device (`qemu/video-device`),
//! built, started before QEMU, and stopped when the boot ends.
//!
//! Theory of operation
//! -------------------
//! A vhost-user device is a second process: QEMU connects to its Unix socket at start-up
//! (`-chardev socket,path=...`, client side) and refuses to start if nobody listens, and
//! it shares guest RAM with it (`memory-backend-memfd,share=on`, see [`crate::board`]).
//! So [`Running::start`] spawns `monolith-video-device serve --socket S` first and waits
//! until `S` exists (the device binds and listens in one step; a short settle covers the
//! gap between the two system calls), and only then is QEMU spawned.
//!
//! Every socket is new: `$TMPDIR/monolith-video-<pid>-<n>.sock`, short enough for
//! `sun_path` whatever the work tree's path, and unique per boot so parallel tests never
//! meet. The device exits by itself when QEMU disconnects (QEMU quit, Ctrl-A X, a crash);
//! [`Running`]'s `Drop` covers everything else (a test timeout, an xtask error): it waits a
//! moment for that clean exit, then kills the device, and always removes the socket. Its
//! output goes to a log file next to the firmware build, printed on failure. A `SIGKILL`ed
//! xtask runs no `Drop`: the device (and QEMU) are armed to die with it
//! ([`crate::child`]), and the next run sweeps the socket files it left.
//!
//! Fault injection (`--video-fault SPEC`, see `qemu/video-device`) is passed through as the
//! device's own `--fault` arguments.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::paths::host_target_dir;
use crate::setup::host_cargo;

/// The device's Cargo package and binary name.
pub const PACKAGE: &str = "monolith-video-device";
/// virtio device id of a video decoder (virtio 1.x section 5, v3 draft).
pub const VIRTIO_ID_VIDEO_DECODER: u32 = 31;
/// `struct virtio_video_config` is 44 bytes.
const CONFIG_SIZE: u32 = 44;
/// How long the device may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a device whose QEMU has gone gets to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Builds the device (release) once per xtask run and returns its path.
pub fn binary() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build() -> Result<PathBuf> {
    let status = Command::new(host_cargo())
        .args(["build", "--release", "--quiet", "-p", PACKAGE])
        .current_dir(crate::paths::repo_root())
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run cargo to build {PACKAGE}"))?;
    if !status.success() {
        bail!("building the video decoder device ({PACKAGE}) failed ({status})");
    }
    let path = host_target_dir().join("release").join(PACKAGE);
    if !path.is_file() {
        bail!("cargo built {PACKAGE} but {} is missing", path.display());
    }
    Ok(path)
}

/// A fresh socket path for one boot.
pub fn new_socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    if n == 0 {
        // What a killed xtask left behind (its pid is in the name).
        crate::child::sweep_stale_sockets(&std::env::temp_dir(), "monolith-video");
    }
    std::env::temp_dir().join(format!("monolith-video-{}-{n}.sock", std::process::id()))
}

/// The QEMU arguments that connect the decoder on `socket` (after every other device, so
/// it takes the virtio-mmio slot below the GPU's: 0x0a003c00 on a board with a GPU).
pub fn qemu_args(socket: &Path) -> Vec<String> {
    let path = socket.display().to_string().replace(',', ",,");
    vec![
        "-chardev".into(),
        format!("socket,id=video,path={path}"),
        "-device".into(),
        format!(
            "vhost-user-device,chardev=video,virtio-id={VIRTIO_ID_VIDEO_DECODER},num_vqs=2,\
             config_size={CONFIG_SIZE},vq_size=256"
        ),
    ]
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

/// A started device; stopped and its socket removed on drop.
pub struct Running {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Running {
    pub fn start(binary: &Path, socket: &Path, faults: &[String]) -> Result<Running> {
        let _ = std::fs::remove_file(socket);
        let log = socket.with_extension("log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("creating the device log {}", log.display()))?;
        let mut command = Command::new(binary);
        crate::child::dies_with_xtask(&mut command);
        let child = command
            .args(serve_args(socket, faults))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut running = Running {
            child,
            socket: socket.to_path_buf(),
            log,
        };
        let started = Instant::now();
        while !socket.exists() {
            if let Some(status) = running.child.try_wait()? {
                bail!(
                    "the video decoder device exited ({status}) before listening on {}:\n{}",
                    socket.display(),
                    running.log_text()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the video decoder device did not create {} within {START_TIMEOUT:?}:\n{}",
                    socket.display(),
                    running.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // bind(2) creates the file, listen(2) follows at once: let it.
        std::thread::sleep(Duration::from_millis(20));
        Ok(running)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// What the device printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the device is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline && self.is_running() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
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

    #[test]
    fn sockets_are_new_and_short() {
        let a = new_socket_path();
        let b = new_socket_path();
        assert_ne!(a, b);
        assert!(a.as_os_str().len() < 107, "{}", a.display());
    }

    #[test]
    fn a_device_that_never_listens_is_reported_and_reaped() {
        // `false` exits at once without creating the socket.
        let socket = new_socket_path();
        let error = Running::start(Path::new("/bin/false"), &socket, &[])
            .err()
            .expect("must fail");
        assert!(format!("{error:#}").contains("exited"), "{error:#}");
        assert!(!socket.exists());
    }

    #[test]
    fn drop_kills_a_device_that_stays_and_removes_its_socket() {
        // A stand-in device: creates the socket path as a file, then sleeps.
        let socket = new_socket_path();
        let script = format!("touch '{}'; exec sleep 30", socket.display());
        let dir = std::env::temp_dir().join(format!("monolith-fake-device-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-device");
        std::fs::write(&fake, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut running = Running::start(&fake, &socket, &[]).unwrap();
        assert!(running.is_running());
        let pid = running.child.id();
        let started = Instant::now();
        drop(running);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!socket.exists(), "socket left behind");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(" Z "))
                    .unwrap_or(true),
            "device process {pid} left running"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
