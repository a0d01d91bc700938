//! An expect-style driver for a serial console on pipes.
//!
//! Theory of operation
//! -------------------
//! [`Console::spawn`] starts a program (QEMU with `-serial stdio`) with stdin, stdout and
//! stderr piped: the terminal is never inherited, so tests run the same under CI with no
//! stdin. Two reader threads forward output chunks over a channel; the console appends
//! them to a transcript (carriage returns dropped, so patterns match `\n` line ends).
//! [`Console::expect`] waits until a regular expression matches the output not yet consumed,
//! and returns that text up to the end of the match; the next `expect` starts after it, so
//! a script reads like a conversation. A timeout or the program exiting first is an
//! [`ExpectError`] that carries the whole transcript: a failing console test shows exactly
//! what the firmware said. Dropping the console kills the program.
//!
//! A console may also see the program's screen ([`Console::with_display`]: QEMU's QMP
//! socket and the test's name): [`Console::screendump`] decodes what QEMU shows, and
//! [`Console::compare_screen`] fails with the mismatch and the paths of the actual and
//! expected PNGs it saved under `target/screens/`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::qmp::Qmp;
use crate::screen::{self, Image};

#[derive(Debug)]
pub struct ExpectError {
    pub message: String,
    pub transcript: String,
}

impl std::fmt::Display for ExpectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.message)?;
        writeln!(f, "----- console transcript -----")?;
        write!(f, "{}", self.transcript)?;
        if !self.transcript.ends_with('\n') {
            writeln!(f)?;
        }
        write!(f, "----- end of transcript -----")
    }
}

pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    chunks: Receiver<Vec<u8>>,
    transcript: String,
    /// Byte offset in `transcript` where the next `expect` starts looking.
    consumed: usize,
    /// Both output pipes closed: nothing more will come.
    closed: bool,
    /// What Enter sends: a serial terminal sends CR, so that is the default.
    line_ending: &'static str,
    display: Option<Display>,
}

/// The screen of the program a console drives.
struct Display {
    /// The test's name: saved screens are `target/screens/<name>.png`.
    name: String,
    qmp_socket: PathBuf,
    /// Connected on the first screendump.
    qmp: Option<Qmp>,
}

impl Console {
    pub fn spawn(mut command: Command) -> Result<Console, ExpectError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ExpectError {
                message: format!("cannot start {:?}: {e}", command.get_program()),
                transcript: String::new(),
            })?;
        let (sender, chunks) = mpsc::channel();
        let pipes: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut pipe in pipes {
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 || sender.send(chunk[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Console {
            child,
            stdin,
            chunks,
            transcript: String::new(),
            consumed: 0,
            closed: false,
            line_ending: "\r",
            display: None,
        })
    }

    /// This console's program serves QMP at `qmp_socket` (removed when the console is
    /// dropped); `name` names the screens saved on a mismatch.
    pub fn with_display(mut self, name: &str, qmp_socket: PathBuf) -> Console {
        self.display = Some(Display {
            name: name.to_string(),
            qmp_socket,
            qmp: None,
        });
        self
    }

    /// What the program's screen shows now.
    pub fn screendump(&mut self) -> Result<Image, ExpectError> {
        let Some(display) = self.display.as_mut() else {
            return Err(self.error("this console has no display (no QMP socket)".into()));
        };
        let scratch = display.qmp_socket.with_extension("dump.png");
        let result = (|| {
            if display.qmp.is_none() {
                display.qmp = Some(Qmp::connect(
                    &display.qmp_socket,
                    std::time::Duration::from_secs(5),
                )?);
            }
            let qmp = display
                .qmp
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("no QMP"))?;
            crate::screendump::dump(qmp, &scratch)
        })();
        result.map_err(|e| self.error(format!("screendump: {e:#}")))
    }

    /// Save `image` as `target/screens/<name><suffix>.png`; returns the path.
    pub fn save_screen(&self, suffix: &str, image: &Image) -> Result<PathBuf, ExpectError> {
        let name = self.display.as_ref().map_or("console", |d| d.name.as_str());
        let path = screen::screens_dir().join(format!("{name}{suffix}.png"));
        image
            .save_png(&path)
            .map(|()| path)
            .map_err(|e| self.error(format!("{e:#}")))
    }

    /// Fail unless `actual` is `expected` pixel for pixel; on failure both are saved
    /// (`target/screens/<name>.png`, `<name>.expected.png`) and the error names them.
    pub fn compare_screen(&self, actual: &Image, expected: &Image) -> Result<(), ExpectError> {
        let Some(mismatch) = screen::diff(actual, expected) else {
            return Ok(());
        };
        let name = self.display.as_ref().map_or("console", |d| d.name.as_str());
        let saved = match screen::save_mismatch(name, actual, Some(expected)) {
            Ok(paths) => paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("(could not save the screens: {e:#})"),
        };
        Err(self.error(format!("screen differs: {mismatch}; saved {saved}")))
    }

    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// An error carrying the transcript, for a script's own checks.
    pub fn error(&self, message: String) -> ExpectError {
        ExpectError {
            message,
            transcript: self.transcript.clone(),
        }
    }

    fn take_chunk(&mut self, chunk: Vec<u8>) {
        self.transcript
            .push_str(&String::from_utf8_lossy(&chunk).replace('\r', ""));
    }

    /// Wait for `pattern` (a regular expression) in the unread output; return the text from
    /// the last match up to and including this one.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String, ExpectError> {
        let regex =
            Regex::new(pattern).map_err(|e| self.error(format!("bad pattern `{pattern}`: {e}")))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = regex.find(&self.transcript[self.consumed..]) {
                let end = self.consumed + found.end();
                let captured = self.transcript[self.consumed..end].to_string();
                self.consumed = end;
                return Ok(captured);
            }
            if self.closed {
                return Err(self.error(format!("output ended before `{pattern}` appeared")));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.error(format!("`{pattern}` did not appear within {timeout:?}")));
            }
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.take_chunk(chunk),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Only the self-tests need another ending: a host shell's `read` waits for LF.
    #[cfg(test)]
    pub fn set_line_ending(&mut self, line_ending: &'static str) {
        self.line_ending = line_ending;
    }

    /// Type a line at the console, ended the way Enter ends it.
    pub fn send_line(&mut self, line: &str) -> Result<(), ExpectError> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(format!("{line}{}", self.line_ending).as_bytes())
                .and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        written.map_err(|e| self.error(format!("cannot send `{line}`: {e}")))
    }

    /// Wait for the program to end by itself (e.g. after a poweroff command); returns its
    /// exit code, or an error with the transcript if it is still running at the deadline.
    pub fn expect_exit(&mut self, timeout: Duration) -> Result<Option<i32>, ExpectError> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(chunk) = self.chunks.try_recv() {
                self.take_chunk(chunk);
            }
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status.code()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => return Err(self.error(format!("still running after {timeout:?}"))),
                Err(e) => return Err(self.error(format!("waiting for the program: {e}"))),
            }
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(display) = &self.display {
            let _ = std::fs::remove_file(&display.qmp_socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Console {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Console::spawn(command).unwrap()
    }

    #[test]
    fn expect_consumes_in_order_and_send_line_reaches_stdin() {
        let mut console =
            shell("printf 'banner\\r\\nprompt> '; read line; echo \"got:$line\"; echo done");
        assert_eq!(
            console.expect("banner\n", Duration::from_secs(5)).unwrap(),
            "banner\n"
        );
        console.expect("prompt> ", Duration::from_secs(5)).unwrap();
        console.set_line_ending("\n");
        console.send_line("hello").unwrap();
        let captured = console
            .expect(r"got:(\w+)", Duration::from_secs(5))
            .unwrap();
        assert_eq!(captured.trim(), "got:hello");
        // Already consumed text does not match again.
        let error = console
            .expect("banner", Duration::from_secs(5))
            .unwrap_err();
        assert!(error.message.contains("output ended"), "{error}");
        assert!(
            error.to_string().contains("prompt> "),
            "the transcript is shown: {error}"
        );
    }

    #[test]
    fn timeout_reports_the_transcript() {
        let mut console = shell("echo partial; exec sleep 30");
        let started = Instant::now();
        let error = console
            .expect("never", Duration::from_millis(300))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.message.contains("did not appear"), "{error}");
        assert!(error.transcript.contains("partial"));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let mut console = shell("true");
        assert!(console
            .expect("(", Duration::from_millis(10))
            .unwrap_err()
            .message
            .contains("bad pattern"));
    }

    #[test]
    fn exit_code_is_reported() {
        let mut console = shell("echo bye; exit 7");
        assert_eq!(
            console.expect_exit(Duration::from_secs(5)).unwrap(),
            Some(7)
        );
        assert!(
            console.transcript().contains("bye")
                || console.expect("bye", Duration::from_secs(1)).is_ok()
        );
    }
}
