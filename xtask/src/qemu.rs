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
//! [`run_captured`] runs a command with a timeout and returns its whole output; reader
//! threads drain the pipes so a chatty guest can never block on a full pipe.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::board::{load_board, MachineConfig, DEFAULT_BOARD};
use crate::build::repo_relative;
use crate::run_options::RunOptions;
use crate::setup::Tools;

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
}

impl Boot {
    pub fn resolve(options: &RunOptions, tools: &Tools) -> Result<Boot> {
        let board = load_board(options.board.as_deref().unwrap_or(DEFAULT_BOARD))?;
        let append = options.append.clone().or_else(|| board.file.append.clone());
        let machine = MachineConfig::new(board, options.mem_bytes, options.smp)?;
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
        })
    }

    /// QEMU booting `kernel`. `semihosting` lets a test image exit QEMU with its verdict.
    pub fn command(
        &self,
        tools: &Tools,
        kernel: &std::path::Path,
        console: Console,
        semihosting: bool,
    ) -> Result<Command> {
        let mut command = Command::new(&tools.qemu);
        command.args(self.machine.qemu_args()?);
        command.arg("-L").arg(&tools.qemu_data_dir);
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
