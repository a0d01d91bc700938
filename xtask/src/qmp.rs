//! A minimal QMP (QEMU Machine Protocol) client over a Unix socket.
//!
//! Theory of operation
//! -------------------
//! QMP (QEMU's `docs/interop/qmp-spec.rst`) is JSON objects over a byte stream, one per
//! line. On connect the server sends a greeting `{"QMP": {"version": ..,
//! "capabilities": [..]}}` and accepts nothing but `qmp_capabilities` until capability
//! negotiation is done. Then each `{"execute": NAME, "arguments": {..}}` gets exactly one
//! reply, `{"return": ..}` or `{"error": {"class": .., "desc": ..}}`; asynchronous
//! `{"event": ..}` messages may arrive in between and are skipped. Every read has a
//! deadline, so a wedged QEMU is an error, not a hang.
//!
//! `screendump` (`qapi/ui.json`) makes QEMU write the console's current surface to a file
//! *QEMU* opens: the path must be absolute (QEMU's working directory is not ours).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// How long one reply may take (a screendump of a large screen writes a PNG).
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connect to the socket at `path`, retrying until `wait` has passed (QEMU creates it
    /// at start-up), then negotiate capabilities.
    pub fn connect(path: &Path, wait: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() >= deadline => {
                    return Err(error)
                        .with_context(|| format!("cannot connect to QMP at {}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        Qmp::handshake(stream).with_context(|| format!("QMP at {}", path.display()))
    }

    /// Read the greeting and leave capability negotiation mode.
    pub fn handshake(stream: UnixStream) -> Result<Qmp> {
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .context("setting the QMP read timeout")?;
        let writer = stream.try_clone().context("cloning the QMP socket")?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("expected the QMP greeting, got {greeting}");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .context("reading from QMP (no reply in time?)")?;
            if n == 0 {
                bail!("QMP connection closed by QEMU");
            }
            if !line.trim().is_empty() {
                return serde_json::from_str(line.trim())
                    .with_context(|| format!("QMP sent something that is not JSON: {line:?}"));
            }
        }
    }

    /// Run `command` with `arguments`; its `return` value, or QEMU's error as an error.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut text = request.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.flush())
            .with_context(|| format!("sending QMP `{command}`"))?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                let class = error.get("class").and_then(Value::as_str).unwrap_or("?");
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("");
                return Err(anyhow!("QMP `{command}` failed: {class}: {desc}"));
            }
            bail!("QMP `{command}`: unexpected reply {reply}");
        }
    }

    /// Save what the display shows as a PNG at `file` (made absolute here).
    pub fn screendump(&mut self, file: &Path) -> Result<()> {
        let file =
            std::path::absolute(file).with_context(|| format!("resolving {}", file.display()))?;
        let filename = file
            .to_str()
            .ok_or_else(|| anyhow!("{} is not UTF-8, QMP cannot carry it", file.display()))?;
        self.execute(
            "screendump",
            Some(json!({ "filename": filename, "format": "png" })),
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A fake QMP server on the other end of a socket pair: sends `script`'s lines in
    /// order, reading one request line before each line marked with a leading `>`.
    /// Returns the requests it read.
    fn fake_server(
        script: &'static [&'static str],
    ) -> (UnixStream, std::thread::JoinHandle<Vec<String>>) {
        let (client, server) = UnixStream::pair().unwrap();
        let handle = std::thread::spawn(move || {
            let mut reader = BufReader::new(server.try_clone().unwrap());
            let mut writer = server;
            let mut requests = Vec::new();
            for line in script {
                let line = match line.strip_prefix('>') {
                    Some(reply) => {
                        let mut request = String::new();
                        reader.read_line(&mut request).unwrap();
                        requests.push(request.trim().to_string());
                        reply
                    }
                    None => line,
                };
                writer.write_all(line.as_bytes()).unwrap();
                writer.write_all(b"\r\n").unwrap();
            }
            // Nothing more to say: the client sees the end of the stream; drain until it
            // hangs up.
            let _ = writer.shutdown(std::net::Shutdown::Write);
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            requests
        });
        (client, handle)
    }

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}}, "capabilities": ["oob"]}}"#;

    #[test]
    fn handshake_then_commands_skipping_events() {
        let (client, server) = fake_server(&[
            GREETING,
            r#">{"return": {}}"#,
            r#">{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}"#,
            r#"{"return": {"status": "running", "running": true}}"#,
            r#">{"return": {}}"#,
        ]);
        let mut qmp = Qmp::handshake(client).unwrap();
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        qmp.screendump(Path::new("/tmp/x.png")).unwrap();
        drop(qmp);
        let requests: Vec<Value> = server
            .join()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(requests[0], json!({"execute": "qmp_capabilities"}));
        assert_eq!(requests[1], json!({"execute": "query-status"}));
        assert_eq!(
            requests[2],
            json!({"execute": "screendump", "arguments": {"filename": "/tmp/x.png", "format": "png"}})
        );
    }

    #[test]
    fn errors_are_reported_with_class_and_description() {
        let (client, _server) = fake_server(&[
            GREETING,
            r#">{"return": {}}"#,
            r#">{"error": {"class": "GenericError", "desc": "no surface"}}"#,
        ]);
        let mut qmp = Qmp::handshake(client).unwrap();
        let error = qmp.screendump(Path::new("/tmp/y.png")).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "QMP `screendump` failed: GenericError: no surface"
        );
    }

    #[test]
    fn a_server_that_is_not_qmp_is_refused() {
        let (client, _server) = fake_server(&[r#"{"hello": 1}"#]);
        let error = Qmp::handshake(client).err().unwrap();
        assert!(
            format!("{error:#}").contains("expected the QMP greeting"),
            "{error:#}"
        );
        let (client, _server) = fake_server(&["not json"]);
        let error = Qmp::handshake(client).err().unwrap();
        assert!(format!("{error:#}").contains("not JSON"), "{error:#}");
        let (client, _server) = fake_server(&[]);
        let error = Qmp::handshake(client).err().unwrap();
        assert!(format!("{error:#}").contains("closed"), "{error:#}");
    }

    #[test]
    fn connect_retries_until_the_socket_appears_and_gives_up_with_the_path() {
        let dir = std::env::temp_dir().join(format!("xtask-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.sock");
        let _ = std::fs::remove_file(&path);
        let error = Qmp::connect(&path, Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("q.sock"), "{error:#}");
        let listen_path = path.clone();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let listener = std::os::unix::net::UnixListener::bind(&listen_path).unwrap();
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .write_all(format!("{GREETING}\r\n").as_bytes())
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            stream.write_all(b"{\"return\": {}}\r\n").unwrap();
            request
        });
        Qmp::connect(&path, Duration::from_secs(10)).unwrap();
        assert!(server.join().unwrap().contains("qmp_capabilities"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
