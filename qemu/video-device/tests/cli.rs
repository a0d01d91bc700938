//! The command line, end to end: `encode` / `probe` / `decode` on real files, and
//! `serve`'s lifetime (SIGTERM, a front end that connects and leaves, bad arguments).

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monolith-video-device"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).env("RUST_LOG", "error").output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn encode_probe_decode() {
    let clip = tmp("clip.h264");
    let c = clip.to_str().unwrap();
    let o = run(&[
        "encode",
        "--out",
        c,
        "--size",
        "96x64",
        "--frames",
        "4",
        "--then",
        "64x48",
        "--then-frames",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["probe", "--clip", c]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Constrained Baseline"), "{}", text(&o));
    assert!(text(&o).contains("96x64"), "{}", text(&o));
    let last = tmp("last.bin");
    let o = run(&[
        "decode",
        "--clip",
        c,
        "--format",
        "nv12",
        "--dump-last",
        last.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines[0].starts_with("frame 0 96x64 crc32 "), "{}", lines[0]);
    assert!(lines[5].starts_with("frame 5 64x48 crc32 "), "{}", lines[5]);
    let dumped = std::fs::read(&last).unwrap();
    assert_eq!(dumped.len(), 64 * 48 * 3 / 2);
    let crc = format!("{:08x}", crc32fast::hash(&dumped));
    assert!(
        lines[5].ends_with(&crc),
        "the dump is the last frame: {} vs {crc}",
        lines[5]
    );
    // The same arguments give the same clip.
    let again = tmp("again.h264");
    let o = run(&[
        "encode",
        "--out",
        again.to_str().unwrap(),
        "--size",
        "96x64",
        "--frames",
        "4",
        "--then",
        "64x48",
        "--then-frames",
        "2",
    ]);
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(&clip).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn probe_and_decode_refuse_what_is_not_baseline_h264() {
    let junk = tmp("junk.bin");
    std::fs::write(&junk, b"definitely not a video").unwrap();
    let o = run(&["probe", "--clip", junk.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not an Annex-B H.264 stream"),
        "{}",
        text(&o)
    );
    let high = tmp("high.h264");
    std::fs::write(
        &high,
        [
            0,
            0,
            0,
            1,
            0x67,
            100,
            0,
            30,
            0b1010_1100,
            0b1111_0111,
            0b1001_0000,
        ],
    )
    .unwrap();
    let o = run(&["probe", "--clip", high.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("High profile (100): the decoder supports Constrained Baseline only"),
        "{}",
        text(&o)
    );
    let o = run(&[
        "encode",
        "--out",
        tmp("x").to_str().unwrap(),
        "--size",
        "15x16",
        "--frames",
        "1",
    ]);
    assert!(!o.status.success());
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("serve did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(socket: &Path, extra: &[&str]) -> Child {
    bin()
        .args(["serve", "--socket", socket.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn serve_exits_cleanly_on_sigterm_and_removes_its_socket() {
    let socket = tmp("term.sock");
    let mut child = serve(&socket, &["--fault", "stall@3"]);
    wait_for(&socket);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}

#[test]
fn serve_exits_0_when_the_front_end_disconnects() {
    let socket = tmp("conn.sock");
    let mut child = serve(&socket, &[]);
    wait_for(&socket);
    let conn = UnixStream::connect(&socket).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(conn);
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}

#[test]
fn serve_refuses_bad_arguments_with_a_message() {
    let o = run(&[
        "serve",
        "--socket",
        tmp("x.sock").to_str().unwrap(),
        "--fault",
        "explode",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown fault"), "{}", text(&o));
    let o = run(&["serve", "--socket", "/nonexistent-dir/x.sock"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent-dir"), "{}", text(&o));
}
