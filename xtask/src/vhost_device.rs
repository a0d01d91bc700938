//! Our vhost-user devices beside QEMU (`qemu/*-device`): built, started before QEMU,
//! and stopped when the boot ends. The video decoder ([`crate::video_device`]) and the
//! PASR controller model (`crate::pasr_device`) add only their own arguments.
//!
//! Theory of operation
//! -------------------
//! A vhost-user device is a second process: QEMU connects to its Unix socket at start-up
//! (`-chardev socket,path=...`, client side) and refuses to start if nobody listens, and
//! it shares guest RAM with it (`memory-backend-memfd,share=on`, see [`crate::board`]).
//! So [`Running::start`] spawns the device first and waits until its socket exists (the
//! device binds and listens in one step; a short settle covers the gap between the two
//! system calls), and only then is QEMU spawned.
//!
//! Every socket is new: `$TMPDIR/monolith-<kind>-<pid>-<n>.sock`, short enough for
//! `sun_path` whatever the work tree's path, and unique per boot so parallel tests never
//! meet. A device exits by itself when QEMU disconnects (QEMU quit, Ctrl-A X, a crash);
//! [`Running`]'s `Drop` covers everything else (a test timeout, an xtask error): it waits a
//! moment for that clean exit, then kills the device, and always removes the socket. Its
//! output goes to a log file beside the socket, printed on failure. A `SIGKILL`ed xtask
//! runs no `Drop`: the device (and QEMU) are armed to die with it ([`crate::child`]), and
//! the next run sweeps the socket files it left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::paths::host_target_dir;
use crate::setup::host_cargo;

/// How long a device may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a device whose QEMU has gone gets to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Builds the device package (release) once per xtask run and returns its binary, named
/// like the package.
pub fn binary(package: &str, what: &str) -> Result<PathBuf> {
    static BUILT: Mutex<Option<HashMap<String, std::result::Result<PathBuf, String>>>> =
        Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    built
        .get_or_insert_with(HashMap::new)
        .entry(package.to_string())
        .or_insert_with(|| build(package, what).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build(package: &str, what: &str) -> Result<PathBuf> {
    let status = Command::new(host_cargo())
        .args(["build", "--release", "--quiet", "-p", package])
        .current_dir(crate::paths::repo_root())
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run cargo to build {package}"))?;
    if !status.success() {
        bail!("building the {what} device ({package}) failed ({status})");
    }
    let path = host_target_dir().join("release").join(package);
    if !path.is_file() {
        bail!("cargo built {package} but {} is missing", path.display());
    }
    Ok(path)
}

/// A fresh socket path for one boot's `kind` of device; the first call also sweeps what a
/// killed xtask left.
pub fn new_socket_path(kind: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let prefix = format!("monolith-{kind}");
    if n == 0 {
        crate::child::sweep_stale_sockets(&std::env::temp_dir(), "monolith-video");
        crate::child::sweep_stale_sockets(&std::env::temp_dir(), "monolith-pasr");
    }
    std::env::temp_dir().join(format!("{prefix}-{}-{n}.sock", std::process::id()))
}

/// The QEMU arguments that connect a generic `vhost-user-device` on `socket`.
pub fn qemu_args(
    id: &str,
    socket: &Path,
    virtio_id: u32,
    num_vqs: u32,
    config_size: u32,
) -> Vec<String> {
    let path = socket.display().to_string().replace(',', ",,");
    vec![
        "-chardev".into(),
        format!("socket,id={id},path={path}"),
        "-device".into(),
        format!(
            "vhost-user-device,chardev={id},virtio-id={virtio_id},num_vqs={num_vqs},\
             config_size={config_size},vq_size=256"
        ),
    ]
}

/// A started device; stopped and its socket removed on drop.
pub struct Running {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Running {
    pub fn start(binary: &Path, socket: &Path, args: &[String], what: &str) -> Result<Running> {
        let _ = std::fs::remove_file(socket);
        let log = socket.with_extension("log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("creating the device log {}", log.display()))?;
        let mut command = Command::new(binary);
        crate::child::dies_with_xtask(&mut command);
        let child = command
            .args(args)
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
                    "the {what} device exited ({status}) before listening on {}:\n{}",
                    socket.display(),
                    running.log_text()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "the {what} device did not create {} within {START_TIMEOUT:?}:\n{}",
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
    fn generic_device_arguments() {
        let args = qemu_args("pasr", Path::new("/tmp/a,b.sock"), 9, 1, 64).join(" ");
        assert!(
            args.contains("socket,id=pasr,path=/tmp/a,,b.sock"),
            "{args}"
        );
        assert!(
            args.contains("vhost-user-device,chardev=pasr,virtio-id=9,num_vqs=1,config_size=64"),
            "{args}"
        );
    }

    #[test]
    fn sockets_are_new_and_short() {
        let a = new_socket_path("test");
        let b = new_socket_path("test");
        assert_ne!(a, b);
        assert!(a.as_os_str().len() < 107, "{}", a.display());
    }

    #[test]
    fn a_device_that_never_listens_is_reported_and_reaped() {
        // `false` exits at once without creating the socket.
        let socket = new_socket_path("test");
        let error = Running::start(Path::new("/bin/false"), &socket, &[], "test")
            .err()
            .expect("must fail");
        assert!(format!("{error:#}").contains("exited"), "{error:#}");
        assert!(!socket.exists());
    }

    #[test]
    fn drop_kills_a_device_that_stays_and_removes_its_socket() {
        // A stand-in device: creates the socket path as a file, then sleeps.
        let socket = new_socket_path("test");
        let script = format!("touch '{}'; exec sleep 30", socket.display());
        let dir = std::env::temp_dir().join(format!("monolith-fake-device-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake-device");
        std::fs::write(&fake, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut running = Running::start(&fake, &socket, &[], "test").unwrap();
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
