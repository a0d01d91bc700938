//! `serve`: the socket's lifetime, for any backend. Create the listening socket (QEMU
//! connects as the front end), serve one connection, and exit when QEMU disconnects or on
//! SIGTERM/SIGINT; the socket file is removed in every case.
//!
//! The signal handler only sets an atomic flag (async-signal-safe); the main thread polls
//! it while waiting for QEMU to connect (epoll on the listener with a timeout) and a
//! watcher thread polls it while the connection runs, shutting the connection down so the
//! daemon's request loop returns.
#![deny(unsafe_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use log::info;
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackendMut, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::signal::register_signal_handler;

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Removes the socket file when `serve` returns, whichever way.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const POLL: Duration = Duration::from_millis(100);

/// Serve one QEMU connection on `socket` with `backend`; `name` names the daemon (and its
/// request thread). The backend must give its worker an exit event
/// ([`VhostUserBackendMut::exit_event`]), or the daemon cannot be stopped when QEMU leaves.
pub fn serve<B>(name: &str, socket: &Path, backend: B) -> Result<()>
where
    B: VhostUserBackendMut<Bitmap = ()> + 'static,
    B::Vring: Clone + Send + Sync,
{
    for signal in [libc::SIGTERM, libc::SIGINT] {
        register_signal_handler(signal, on_signal)
            .with_context(|| format!("installing the handler of signal {signal}"))?;
    }
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!("{}: the directory does not exist", parent.display());
        }
    }
    let mut listener = Listener::new(socket, true)
        .with_context(|| format!("creating the socket {}", socket.display()))?;
    let _file = SocketFile(socket.to_path_buf());
    info!("listening on {}", socket.display());

    // Wait for QEMU without blocking in accept, so a signal can end the wait.
    let epoll = Epoll::new().context("epoll")?;
    epoll
        .ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 0),
        )
        .context("epoll on the socket")?;
    let mut events = [EpollEvent::default(); 1];
    loop {
        if TERMINATE.load(Ordering::SeqCst) {
            info!("terminated before QEMU connected");
            return Ok(());
        }
        match epoll.wait(POLL.as_millis() as i32, &mut events) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for QEMU to connect"),
        }
    }

    let mut daemon = VhostUserDaemon::new(
        name.to_string(),
        Arc::new(RwLock::new(backend)),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(|e| anyhow::anyhow!("creating the vhost-user daemon: {e:?}"))?;
    daemon
        .start(&mut listener)
        .map_err(|e| anyhow::anyhow!("accepting QEMU's connection: {e:?}"))?;
    info!("QEMU connected");

    let done = Arc::new(AtomicBool::new(false));
    let watcher = daemon.shutdown_handle().map(|handle| {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if TERMINATE.load(Ordering::SeqCst) {
                    info!("terminating: closing the connection");
                    handle.shutdown();
                    return;
                }
                std::thread::sleep(POLL);
            }
        })
    });
    let result = daemon.wait();
    done.store(true, Ordering::SeqCst);
    if let Some(watcher) = watcher {
        let _ = watcher.join();
    }
    for handler in daemon.get_epoll_handlers() {
        handler.send_exit_event();
    }
    // Dropping the daemon joins its worker thread, which the exit event has stopped.
    drop(daemon);
    match result {
        Ok(()) => {
            info!("QEMU disconnected");
            Ok(())
        }
        Err(_) if TERMINATE.load(Ordering::SeqCst) => Ok(()),
        Err(vhost_user_backend::Error::HandleRequest(
            vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
        )) => {
            info!("QEMU disconnected");
            Ok(())
        }
        Err(e) => bail!("serving QEMU: {e:?}"),
    }
}
