//! `cargo xtask run`: build, then boot the firmware in QEMU on this terminal.
//!
//! Theory of operation
//! -------------------
//! The board (default `virt`) and the overrides become a [`Boot`]; QEMU then gets this
//! terminal (`-serial mon:stdio`: serial console and monitor multiplexed, Ctrl-A X quits,
//! as `-nographic` had it) and xtask exits with QEMU's status. The exact QEMU command is
//! printed first so a person can rerun or tweak it by hand.
//!
//! The screen ([`choose_screen`]): a board whose `extra_args` add a virtio-gpu device gets
//! a GTK window when there is a desktop session (`$DISPLAY` or `$WAYLAND_DISPLAY`) and
//! QEMU lists `gtk` among its display backends (the `ui-gtk` module of Debian's
//! `qemu-system-gui`); otherwise a VNC server on 127.0.0.1 at the first free display
//! number. A board without a GPU has no screen (`-display none`). Which one, and the VNC
//! address, is printed before QEMU starts.
//!
//! On a GPU board the boot arguments get `monolith.display=map` (unless they already
//! choose), so the screen shows the live memory map from boot on ([`show_map_at_boot`]);
//! with the decoder attached also `monolith.video=loop`, so the clip plays from boot on
//! until `video stop` brings the map back ([`play_video_at_boot`]).
//!
//! The virtio-video decoder: `run` asks for it as `--video auto` unless told otherwise,
//! so a board that may have it (`virt`) gets it when the patched QEMU is already built,
//! and the run says so when it is not (see [`crate::qemu::wants_video`]).
//!
//! Every run also opens a QMP server at [`qmp_socket`] (`target/qemu/qmp.sock`) for
//! `cargo xtask screendump`. A socket file left by a crashed run is removed; one a live
//! QEMU still answers on is refused (two runs would fight over it). The file is removed
//! when QEMU exits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::build::{self, Profile};
use crate::paths::host_target_dir;
use crate::qemu::{self, Boot, Console, Screen};
use crate::run_options::{RunOptions, VideoChoice};
use crate::setup::{self, Tools};

/// `cargo xtask run [options]`: the boot options, plus which build to boot.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
#[command(args_override_self = true)]
pub struct Args {
    #[command(flatten)]
    pub options: RunOptions,
    /// Boot the debug build
    #[arg(long)]
    pub debug: bool,
}

/// Where `run` puts its QMP socket.
pub fn qmp_socket() -> PathBuf {
    host_target_dir().join("qemu").join("qmp.sock")
}

/// `sun_path` holds 108 bytes including the terminating NUL (unix(7)).
const MAX_SOCKET_PATH: usize = 107;

/// `append` with `param=value` added, unless the user's arguments already set `param`
/// (theirs wins).
pub fn boot_default(append: Option<&str>, param: &str, value: &str) -> String {
    match append {
        Some(args)
            if args
                .split_whitespace()
                .any(|a| a == param || a.starts_with(&format!("{param}="))) =>
        {
            args.to_string()
        }
        Some(args) if !args.trim().is_empty() => format!("{args} {param}={value}"),
        _ => format!("{param}={value}"),
    }
}

/// The boot arguments of a run on a board with a GPU: the firmware shows the memory map
/// from boot on (`monolith.display=map`) unless the user's arguments already say what to
/// show.
pub fn show_map_at_boot(append: Option<&str>) -> String {
    boot_default(append, "monolith.display", "map")
}

/// The boot arguments of a run with the decoder attached: the clip plays in a loop from
/// boot on (`monolith.video=loop`; `video stop` ends it) unless the user's arguments say.
pub fn play_video_at_boot(append: Option<&str>) -> String {
    boot_default(append, "monolith.video", "loop")
}

/// Whether a board's extra QEMU arguments add a virtio-gpu device.
pub fn board_has_gpu(extra_args: &[String]) -> bool {
    extra_args.iter().any(|arg| arg.contains("virtio-gpu"))
}

/// A desktop session to open a window on: `$DISPLAY` (X11) or `$WAYLAND_DISPLAY` set.
pub fn desktop_session(var: impl Fn(&str) -> Option<String>) -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| var(name).is_some_and(|value| !value.is_empty()))
}

/// Whether `qemu -display help` output lists the GTK backend (it lists loadable UI
/// modules only when their file is installed).
pub fn lists_gtk(display_help: &str) -> bool {
    display_help.lines().any(|line| line.trim() == "gtk")
}

fn gtk_available(tools: &Tools) -> bool {
    std::process::Command::new(&tools.qemu)
        .args(["-display", "help"])
        .output()
        .map(|out| lists_gtk(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or(false)
}

/// The first VNC display number whose port (5900 + N) is free on 127.0.0.1.
fn free_vnc_display() -> Option<u16> {
    (0..100u16).find(|n| std::net::TcpListener::bind(("127.0.0.1", 5900 + n)).is_ok())
}

/// Where the guest's screen goes (see the module header).
pub fn choose_screen(
    has_gpu: bool,
    desktop: bool,
    gtk: bool,
    free_vnc: impl FnOnce() -> Option<u16>,
) -> Result<Screen> {
    Ok(match (has_gpu, desktop && gtk) {
        (false, _) => Screen::None,
        (true, true) => Screen::Gtk,
        (true, false) => match free_vnc() {
            Some(display) => Screen::Vnc { display },
            None => bail!("no free VNC port on 127.0.0.1 (5900..5999) for the display"),
        },
    })
}

/// What `run` says about the screen before QEMU starts.
pub fn describe_screen(screen: Screen, desktop: bool) -> String {
    match screen {
        Screen::None => "display: none (the board has no GPU)".to_string(),
        Screen::Gtk => "display: a GTK window".to_string(),
        Screen::Vnc { display } => format!(
            "display: VNC server at 127.0.0.1:{} (display :{display}; e.g. `vncviewer 127.0.0.1:{display}`){}",
            5900 + u32::from(display),
            if desktop {
                " - QEMU's GTK UI is not installed (`cargo xtask setup` installs qemu-system-gui)"
            } else {
                ""
            }
        ),
    }
}

/// Make `path` ready for a new QMP server: its directory exists, a stale socket file is
/// gone, and no live QEMU is listening there.
pub fn prepare_socket(path: &Path) -> Result<()> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "QMP socket path {} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket \
             address holds (use a shorter CARGO_TARGET_DIR)",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "a QEMU is already serving QMP at {} (another `cargo xtask run`?); quit it first",
            path.display()
        );
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing stale {}", path.display())),
    }
}

/// Removes the socket file when dropped (QEMU leaves it behind).
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn verb(args: &Args) -> Result<ExitCode> {
    let tools = setup::ensure()?;
    let profile = if args.debug {
        Profile::Debug
    } else {
        Profile::Release
    };
    // The board first: a typo in --board should not cost a firmware build.
    // A person running the default board sees video when the patched QEMU is built.
    let mut options = args.options.clone();
    options.video.get_or_insert(VideoChoice::Auto);
    let mut boot = Boot::resolve(&options, &tools)?;
    let firmware = build::firmware(&tools, profile)?;
    let desktop = desktop_session(|name| std::env::var(name).ok());
    let has_gpu = board_has_gpu(&boot.machine.board.file.extra_args);
    if has_gpu {
        boot.append = Some(show_map_at_boot(boot.append.as_deref()));
    }
    if has_gpu && boot.video.is_some() {
        boot.append = Some(play_video_at_boot(boot.append.as_deref()));
    }
    let screen = choose_screen(
        has_gpu,
        desktop,
        has_gpu && gtk_available(&tools),
        free_vnc_display,
    )?;
    let socket = qmp_socket();
    prepare_socket(&socket)?;
    let launch = boot.launch(&firmware.elf, Console::Terminal(screen), false)?;
    let mut command = launch.command;
    let _beside = launch.beside;
    command.args(qemu::qmp_args(&socket));
    println!("== run: board {}", boot.machine.board.name);
    println!("{}", qemu::describe(&command));
    println!("{}", describe_screen(screen, desktop));
    println!(
        "QMP: {} (`cargo xtask screendump FILE.png` saves the screen)",
        socket.display()
    );
    println!("(QEMU owns this terminal now: press Ctrl-A then X to quit, Ctrl-A H for help)");
    let _remove_socket = SocketFile(socket);
    let status = command.status().context("cannot start QEMU")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_runs_show_the_map_unless_told_otherwise() {
        assert_eq!(show_map_at_boot(None), "monolith.display=map");
        assert_eq!(
            show_map_at_boot(Some("cma=64M")),
            "cma=64M monolith.display=map"
        );
        assert_eq!(
            show_map_at_boot(Some("monolith.display=off")),
            "monolith.display=off"
        );
    }

    #[test]
    fn decoder_runs_play_the_clip_unless_told_otherwise() {
        assert_eq!(
            play_video_at_boot(Some("monolith.display=map")),
            "monolith.display=map monolith.video=loop"
        );
        assert_eq!(
            play_video_at_boot(Some("monolith.video=off cma=64M")),
            "monolith.video=off cma=64M"
        );
        // A bare flag is the user's choice too; a longer name is not the same parameter.
        assert_eq!(play_video_at_boot(Some("monolith.video")), "monolith.video");
        assert_eq!(
            play_video_at_boot(Some("monolith.videox=1")),
            "monolith.videox=1 monolith.video=loop"
        );
        assert_eq!(play_video_at_boot(None), "monolith.video=loop");
    }

    #[test]
    fn gpu_boards_get_a_window_on_a_desktop_else_vnc() {
        let gpu = board_has_gpu(&["-device".into(), "virtio-gpu-device".into()]);
        assert!(gpu);
        assert!(!board_has_gpu(&[
            "-device".into(),
            "virtio-rng-device".into()
        ]));
        assert!(!board_has_gpu(&[]));
        let never = || -> Option<u16> { panic!("no VNC port wanted") };
        assert_eq!(
            choose_screen(false, true, true, never).unwrap(),
            Screen::None
        );
        assert_eq!(choose_screen(true, true, true, never).unwrap(), Screen::Gtk);
        assert_eq!(
            choose_screen(true, true, false, || Some(2)).unwrap(),
            Screen::Vnc { display: 2 },
            "a desktop without QEMU's GTK module"
        );
        assert_eq!(
            choose_screen(true, false, true, || Some(0)).unwrap(),
            Screen::Vnc { display: 0 },
            "no desktop session"
        );
        assert!(choose_screen(true, false, false, || None).is_err());
    }

    #[test]
    fn desktop_and_gtk_detection() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(desktop_session(env(&[("DISPLAY", ":0")])));
        assert!(desktop_session(env(&[("WAYLAND_DISPLAY", "wayland-0")])));
        assert!(!desktop_session(env(&[("DISPLAY", "")])));
        assert!(!desktop_session(env(&[("TERM", "xterm")])));
        // `qemu-system-aarch64 -display help` with and without the ui-gtk module.
        let without = "Available display backend types:\nnone\ncurses\n\nSome display backends support suboptions\n";
        let with = "Available display backend types:\nnone\ngtk\ncurses\n";
        assert!(!lists_gtk(without));
        assert!(lists_gtk(with));
        assert!(describe_screen(Screen::Vnc { display: 1 }, false).contains("127.0.0.1:5901"));
    }

    #[test]
    fn sockets_stale_live_and_too_long() {
        let dir = std::env::temp_dir().join(format!("xtask-run-{}", std::process::id()));
        let path = dir.join("sub").join("qmp.sock");
        prepare_socket(&path).unwrap();
        assert!(path.parent().unwrap().is_dir());
        // A live listener: refused.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let error = prepare_socket(&path).unwrap_err();
        assert!(
            format!("{error:#}").contains("already serving"),
            "{error:#}"
        );
        // The listener gone, its file left behind: removed.
        drop(listener);
        assert!(path.exists());
        prepare_socket(&path).unwrap();
        assert!(!path.exists());
        drop(SocketFile(path.clone()));
        let long = dir.join("x".repeat(120));
        assert!(format!("{:#}", prepare_socket(&long).unwrap_err()).contains("longer than"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
