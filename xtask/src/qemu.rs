//! QEMU command lines, and running QEMU with a deadline.
//!
//! Theory of operation
//! -------------------
//! [`Boot::resolve`] turns [`RunOptions`] into everything one boot needs: the board with
//! overrides, the DTB (the user's `--dtb` as is, else the board's generated one, else none
//! so QEMU passes its own), and the boot arguments. [`Boot::command`] then adds the parts
//! that depend on who watches the serial line ([`Console`]):
//! - `Terminal`: the serial port and QEMU's monitor multiplexed on this terminal
//!   (`-serial mon:stdio`: Ctrl-A X quits, Ctrl-A C the monitor), for a person; the
//!   guest's screen ([`Screen`]) nowhere (`-display none`, what `-nographic` did), in a
//!   GTK window, or on a VNC server on localhost;
//! - `Pipes`: `-display none -serial stdio -monitor none`, for programs (test images,
//!   [`crate::expect`]); the caller pipes stdin/stdout and never hands QEMU the terminal.
//!
//! The virtio-video decoder ([`wants_video`]): a board with `video = "always"` gets it on
//! every boot; `video = "when-built"` boards only when asked (`--video on`, or `auto`,
//! which `run` passes, and which attaches it only if the patched QEMU is already built).
//! With it, the boot runs the patched QEMU of `cargo xtask qemu` (built if needed), guest
//! RAM becomes a shared memfd, the tree gets `boards/video.dtso`, the clip is loaded
//! ([`crate::clip`]), and [`Boot::launch`] starts the device before QEMU and hands back a
//! [`Launch`] whose drop stops it ([`crate::video_device`]). Every caller spawns QEMU
//! through [`Boot::launch`], so no boot can forget the device it needs.
//!
//! [`run_captured`] runs a command with a timeout and returns its whole output; reader
//! threads drain the pipes so a chatty guest can never block on a full pipe.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::board::{load_board, MachineConfig, VideoMode, DEFAULT_BOARD};
use crate::build::repo_relative;
use crate::run_options::{RunOptions, VideoChoice};
use crate::setup::Tools;
use crate::{clip, pasr_device, qemu_build, video_device};

/// A `-dtb` needs room for about twice its size (+10 kB) below the image at 0x4020_0000
/// (shared/reference/qemu-virt.md): larger files are silently dropped by QEMU.
const DTB_ROOM: u64 = 2 << 20;

/// Where `--trace FILE` is loaded: the 1 MiB between QEMU's DTB (0x4000_0000, padded to
/// 1 MiB) and the image (0x4020_0000), which the firmware never gives to its allocator and
/// probes for a trace's magic at boot (src/shell_service/trace.rs has the format).
pub const TRACE_ADDR: u64 = 0x4010_0000;
/// The room there, and so the largest trace file.
pub const TRACE_MAX_BYTES: u64 = 1 << 20;
/// The first bytes of every trace file.
const TRACE_MAGIC: &[u8] = b"MNLTRACE";

/// Checks a `--trace` file before QEMU sees it: QEMU's loader would silently overwrite the
/// image if the file ran past the gap, and a file without the magic is certainly a mistake.
pub fn check_trace_file(path: &std::path::Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("--trace {}", path.display()))?;
    if bytes.len() as u64 > TRACE_MAX_BYTES {
        bail!(
            "--trace {}: {} bytes is over the 1 MiB ({TRACE_MAX_BYTES} bytes) that fit between \
             the DTB and the image at {TRACE_ADDR:#x}",
            path.display(),
            bytes.len()
        );
    }
    if !bytes.starts_with(TRACE_MAGIC) {
        bail!(
            "--trace {}: not a Monolith trace (it does not start with \"MNLTRACE\"); \
             save one from the shell's `trace show` hex dump",
            path.display()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Terminal(Screen),
    Pipes,
}

/// Where the guest's display goes when a person runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// No window: the board has no display device.
    None,
    /// A GTK window (QEMU's `ui-gtk` module, Debian `qemu-system-gui`).
    Gtk,
    /// A VNC server on 127.0.0.1, display number `display` (TCP port 5900 + display).
    Vnc { display: u16 },
}

impl Screen {
    pub fn qemu_args(self) -> Vec<String> {
        let display = match self {
            Screen::None => "none".to_string(),
            Screen::Gtk => "gtk".to_string(),
            Screen::Vnc { display } => format!("vnc=127.0.0.1:{display}"),
        };
        vec!["-display".into(), display]
    }
}

/// `-qmp` for a QMP server on the Unix socket `path` that does not wait for a client.
pub fn qmp_args(path: &std::path::Path) -> Vec<String> {
    // QEMU's option syntax doubles a comma inside a value.
    let path = path.display().to_string().replace(',', ",,");
    vec!["-qmp".into(), format!("unix:{path},server=on,wait=off")]
}

#[derive(Debug, Clone)]
pub struct Boot {
    pub machine: MachineConfig,
    pub dtb: Option<PathBuf>,
    pub append: Option<String>,
    pub trace: Option<PathBuf>,
    /// The QEMU to run: the stock one, or the patched build when the decoder is attached.
    pub qemu: PathBuf,
    pub qemu_data_dir: PathBuf,
    pub video: Option<VideoAttachment>,
    /// The PASR controller model's binary, on a board that has one.
    pub pasr: Option<PathBuf>,
}

/// The virtio-video decoder of one boot: the device to start and the clip to load.
#[derive(Debug, Clone)]
pub struct VideoAttachment {
    pub device: PathBuf,
    pub clip_image: PathBuf,
    pub faults: Vec<String>,
}

/// A QEMU command ready to spawn, and the processes it needs running beside it: keep
/// `beside` alive until QEMU has exited.
pub struct Launch {
    pub command: Command,
    pub beside: Beside,
}

/// The vhost-user devices of one boot, stopped (and their sockets removed) on drop.
#[derive(Default)]
#[allow(dead_code, reason = "held for their Drop, which stops the devices")]
pub struct Beside {
    pub video: Option<video_device::Running>,
    pub pasr: Option<pasr_device::Running>,
}

/// Whether this boot gets the decoder, from the user's choice and the board's mode.
/// `patched_built` is asked only when it matters (it looks at the build cache).
pub fn wants_video(
    board: &str,
    mode: Option<VideoMode>,
    choice: Option<VideoChoice>,
    patched_built: impl FnOnce() -> bool,
) -> Result<VideoDecision> {
    Ok(match (mode, choice) {
        (None, Some(VideoChoice::On)) => bail!(
            "board `{board}` has no virtio-video decoder (`video` in boards/{board}.toml); \
             try --board virt-video"
        ),
        (None, _) | (_, Some(VideoChoice::Off)) => VideoDecision::Without,
        (Some(_), Some(VideoChoice::On)) | (Some(VideoMode::Always), None) => VideoDecision::With,
        (Some(_), Some(VideoChoice::Auto)) => {
            if patched_built() {
                VideoDecision::With
            } else {
                VideoDecision::WithoutNotBuilt
            }
        }
        (Some(VideoMode::WhenBuilt), None) => VideoDecision::Without,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoDecision {
    With,
    Without,
    /// Wanted if available, and the patched QEMU is not built: boot without, and say so.
    WithoutNotBuilt,
}

impl Boot {
    pub fn resolve(options: &RunOptions, tools: &Tools) -> Result<Boot> {
        let board = load_board(options.board.as_deref().unwrap_or(DEFAULT_BOARD))?;
        let append = options.append.clone().or_else(|| board.file.append.clone());
        let decision = wants_video(&board.name, board.file.video, options.video, || {
            qemu_build::cached().is_some()
        })?;
        if decision == VideoDecision::WithoutNotBuilt {
            println!(
                "note: booting `{}` without the virtio-video decoder: it needs the patched \
                 QEMU, which is not built yet (`cargo xtask qemu` builds it, about 10 minutes)",
                board.name
            );
        }
        if decision != VideoDecision::With
            && (options.clip.is_some() || !options.video_faults.is_empty())
        {
            bail!("--clip and --video-fault need the virtio-video decoder (--video on on a board that has one)");
        }
        let machine = MachineConfig::new(board, options.mem_bytes, options.smp)?
            .with_video(decision == VideoDecision::With);
        let vhost_user = decision == VideoDecision::With || machine.board.file.pasr.is_some();
        let (qemu, qemu_data_dir) = if vhost_user {
            let patched = qemu_build::ensure()?;
            (patched.binary, patched.data_dir)
        } else {
            (tools.qemu.clone(), tools.qemu_data_dir.clone())
        };
        let pasr = match machine.board.file.pasr {
            Some(_) => Some(pasr_device::binary()?),
            None => None,
        };
        let video = if decision == VideoDecision::With {
            let device = video_device::binary()?;
            let clip_source = match &options.clip {
                Some(spec) => clip::source(&device, spec)?,
                None => clip::default_clip(&device)?,
            };
            let clip_image = clip::prepare(&device, &clip_source)?;
            Some(VideoAttachment {
                device,
                clip_image,
                faults: options.video_faults.clone(),
            })
        } else {
            None
        };
        let dtb = match &options.dtb {
            Some(user_dtb) => {
                let path = repo_relative(user_dtb);
                let size = std::fs::metadata(&path)
                    .with_context(|| format!("--dtb {}", path.display()))?
                    .len();
                if size * 2 + 10 * 1024 > DTB_ROOM {
                    eprintln!(
                        "warning: {} is {size} bytes; QEMU only places a DTB that fits twice \
                         below the image, so the firmware may find none (pack it with \
                         `dtc -I dtb -O dtb`)",
                        path.display()
                    );
                }
                Some(path)
            }
            None => machine.device_tree(tools)?,
        };
        let trace = match &options.trace {
            Some(file) => {
                let path = repo_relative(file);
                check_trace_file(&path)?;
                Some(path)
            }
            None => None,
        };
        Ok(Boot {
            machine,
            dtb,
            append,
            trace,
            qemu,
            qemu_data_dir,
            video,
            pasr,
        })
    }

    /// Starts what QEMU needs beside it (the decoder, the PASR controller), then gives
    /// the command.
    pub fn launch(
        &self,
        kernel: &std::path::Path,
        console: Console,
        semihosting: bool,
    ) -> Result<Launch> {
        let running = match &self.video {
            Some(video) => Some(video_device::start(
                &video.device,
                &video_device::new_socket_path(),
                &video.faults,
            )?),
            None => None,
        };
        let pasr = match (&self.pasr, &self.dtb) {
            (Some(device), Some(dtb)) => Some(pasr_device::start(device, dtb)?),
            (Some(_), None) => bail!(
                "the PASR controller needs the boot's device tree (the board's overlay), and this boot has none"
            ),
            (None, _) => None,
        };
        let socket = running.as_ref().map(|r| r.socket().to_path_buf());
        let mut command = self.command(kernel, console, semihosting, socket.as_deref())?;
        if let Some(controller) = &pasr {
            command.args(pasr_device::qemu_args(controller.socket()));
        }
        Ok(Launch {
            command,
            beside: Beside {
                video: running,
                pasr,
            },
        })
    }

    /// QEMU booting `kernel`. `semihosting` lets a test image exit QEMU with its verdict.
    fn command(
        &self,
        kernel: &std::path::Path,
        console: Console,
        semihosting: bool,
        video_socket: Option<&std::path::Path>,
    ) -> Result<Command> {
        let mut command = Command::new(&self.qemu);
        crate::child::dies_with_xtask(&mut command);
        command.args(self.machine.qemu_args()?);
        if let Some(socket) = video_socket {
            command.args(video_device::qemu_args(socket));
        }
        if let Some(video) = &self.video {
            command.args(clip::loader_args(&video.clip_image));
        }
        command.arg("-L").arg(&self.qemu_data_dir);
        match console {
            Console::Terminal(screen) => {
                command.args(screen.qemu_args());
                command.args(["-serial", "mon:stdio"]);
            }
            Console::Pipes => {
                command.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
            }
        }
        if semihosting {
            command.arg("-semihosting");
        }
        command.arg("-kernel").arg(kernel);
        if let Some(dtb) = &self.dtb {
            command.arg("-dtb").arg(dtb);
        }
        if let Some(append) = &self.append {
            command.arg("-append").arg(append);
        }
        if let Some(trace) = &self.trace {
            command.arg("-device").arg(format!(
                "loader,file={},addr={TRACE_ADDR:#x},force-raw=on",
                trace.display()
            ));
        }
        Ok(command)
    }
}

/// A command line as a person would paste it.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            if word.is_empty()
                || word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            {
                format!("'{}'", word.replace('\'', r"'\''"))
            } else {
                word.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug)]
pub struct Captured {
    /// stdout then stderr, as text.
    pub output: String,
    /// `None` when the deadline killed it.
    pub status: Option<ExitStatus>,
}

impl Captured {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }
}

/// Run with stdin closed, collecting output, killing the process after `timeout`.
pub fn run_captured(command: &mut Command, timeout: Duration) -> Result<Captured> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let handle = std::thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut sink) = sink.lock() {
                        sink.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        });
        (buffer, handle)
    };
    let (stdout, stdout_reader) = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let (stderr, stderr_reader) = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().context("waiting for QEMU")? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = stdout_reader.join();
    let _ = stderr_reader.join();
    let mut output =
        String::from_utf8_lossy(&stdout.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
    output.push_str(&String::from_utf8_lossy(
        &stderr.lock().map(|b| b.clone()).unwrap_or_default(),
    ));
    Ok(Captured {
        output: output.replace('\r', ""),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_gets_the_video_decoder() {
        use VideoChoice::*;
        use VideoDecision::*;
        let never = || -> bool { panic!("the build cache is asked only for auto") };
        let decide = |mode, choice, built: bool| {
            wants_video("b", mode, choice, || built).map_err(|e| format!("{e:#}"))
        };
        // A board that always has it, whatever is built, unless told off.
        assert_eq!(
            wants_video("b", Some(VideoMode::Always), None, never).unwrap(),
            With
        );
        assert_eq!(
            decide(Some(VideoMode::Always), Some(Off), true),
            Ok(Without)
        );
        // when-built: tests (no choice) never; run (auto) only when built.
        assert_eq!(
            wants_video("b", Some(VideoMode::WhenBuilt), None, never).unwrap(),
            Without
        );
        assert_eq!(
            decide(Some(VideoMode::WhenBuilt), Some(Auto), true),
            Ok(With)
        );
        assert_eq!(
            decide(Some(VideoMode::WhenBuilt), Some(Auto), false),
            Ok(WithoutNotBuilt)
        );
        assert_eq!(
            decide(Some(VideoMode::WhenBuilt), Some(On), false),
            Ok(With)
        );
        // A board without one: auto and off boot without; on is an error naming the board.
        assert_eq!(decide(None, Some(Auto), true), Ok(Without));
        let error = decide(None, Some(On), true).unwrap_err();
        assert!(
            error.contains("board `b` has no virtio-video decoder"),
            "{error}"
        );
    }

    #[test]
    fn describe_quotes_only_what_needs_it() {
        let mut command = Command::new("qemu");
        command.args(["-m", "1024M", "-append", "a b", "-x", "it's", ""]);
        assert_eq!(
            describe(&command),
            r"qemu -m 1024M -append 'a b' -x 'it'\''s' ''"
        );
    }

    #[test]
    fn screen_and_qmp_arguments() {
        assert_eq!(Screen::None.qemu_args(), ["-display", "none"]);
        assert_eq!(Screen::Gtk.qemu_args(), ["-display", "gtk"]);
        assert_eq!(
            Screen::Vnc { display: 3 }.qemu_args(),
            ["-display", "vnc=127.0.0.1:3"]
        );
        assert_eq!(
            qmp_args(std::path::Path::new("/t/a,b/qmp.sock")),
            ["-qmp", "unix:/t/a,,b/qmp.sock,server=on,wait=off"]
        );
    }

    #[test]
    fn trace_files_are_checked_for_size_and_magic() {
        let dir = std::env::temp_dir().join(format!("xtask-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.trace");
        std::fs::write(&good, b"MNLTRACE and the rest").unwrap();
        check_trace_file(&good).unwrap();
        let big = dir.join("big.trace");
        let mut bytes = TRACE_MAGIC.to_vec();
        bytes.resize((TRACE_MAX_BYTES + 1) as usize, 0);
        std::fs::write(&big, &bytes).unwrap();
        let error = format!("{:#}", check_trace_file(&big).unwrap_err());
        assert!(error.contains("over the 1 MiB"), "{error}");
        let other = dir.join("other.bin");
        std::fs::write(&other, b"\x7fELF").unwrap();
        assert!(
            format!("{:#}", check_trace_file(&other).unwrap_err()).contains("not a Monolith trace")
        );
        assert!(check_trace_file(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn captured_output_and_timeout() {
        let mut quick = Command::new("sh");
        quick.args(["-c", "echo out; echo err >&2; exit 3"]);
        let done = run_captured(&mut quick, Duration::from_secs(10)).unwrap();
        assert_eq!(done.status.and_then(|s| s.code()), Some(3));
        assert!(
            done.output.contains("out\n") && done.output.contains("err\n"),
            "{}",
            done.output
        );

        let mut slow = Command::new("sh");
        slow.args(["-c", "echo started; exec sleep 30"]);
        let started = Instant::now();
        let killed = run_captured(&mut slow, Duration::from_millis(300)).unwrap();
        assert!(killed.timed_out());
        assert!(killed.output.contains("started"));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
