//! QEMU command lines, and running QEMU with a deadline.
//!
//! Theory of operation
//! -------------------
//! [`Boot::resolve`] turns [`RunOptions`] into everything one boot needs: the board with
//! overrides, the DTB (the user's `--dtb` as is, else the board's generated one, else none
//! so QEMU passes its own), and the boot arguments. [`Boot::command`] then adds the parts
//! that depend on who watches the serial line ([`Console`]):
//! - `Terminal`: `-nographic`, the serial port and QEMU's monitor multiplexed on this
//!   terminal (Ctrl-A X quits), for a person;
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

use crate::args::RunOptions;
use crate::board::{load_board, MachineConfig, DEFAULT_BOARD};
use crate::build::repo_relative;
use crate::setup::Tools;
use crate::Result;

/// A `-dtb` needs room for about twice its size (+10 kB) below the image at 0x4020_0000
/// (shared/reference/qemu-virt.md): larger files are silently dropped by QEMU.
const DTB_ROOM: u64 = 2 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    Terminal,
    Pipes,
}

#[derive(Debug, Clone)]
pub struct Boot {
    pub machine: MachineConfig,
    pub dtb: Option<PathBuf>,
    pub append: Option<String>,
}

impl Boot {
    pub fn resolve(options: &RunOptions, tools: &Tools) -> Result<Boot> {
        let board = load_board(options.board.as_deref().unwrap_or(DEFAULT_BOARD))?;
        let append = options.append.clone().or_else(|| board.file.append.clone());
        let machine = MachineConfig::new(board, options)?;
        let dtb = match &options.dtb {
            Some(user_dtb) => {
                let path = repo_relative(user_dtb);
                let size = std::fs::metadata(&path)
                    .map_err(|e| format!("--dtb {}: {e}", path.display()))?
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
        Ok(Boot {
            machine,
            dtb,
            append,
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
            Console::Terminal => {
                command.arg("-nographic");
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
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
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
        match child
            .try_wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?
        {
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
