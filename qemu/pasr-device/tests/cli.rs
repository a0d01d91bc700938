//! The command line, end to end: `serve` refuses a board it cannot model (no
//! `monolith,pasr-dram` node, a bad one, no device tree at all) before creating its socket,
//! with the reason; and its lifetime (SIGTERM, a front end that connects and leaves).

mod common;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{dtb_file, tmp, wait_exit, wait_for, Board};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monolith-pasr-device"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `serve` with `dtb`, expected to fail at once without leaving a socket; its output.
fn refused(name: &str, dtb: &Path, extra: &[&str]) -> String {
    let socket = tmp(&format!("{name}.sock"));
    let o = bin()
        .args(["serve", "--socket", socket.to_str().unwrap(), "--dtb"])
        .arg(dtb)
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{name}: {}", text(&o));
    assert!(!socket.exists(), "{name}: a refused board leaves no socket");
    text(&o)
}

#[test]
fn a_dtb_without_a_pasr_node_is_refused_plainly() {
    let dtb = dtb_file(
        "none.dtb",
        &Board {
            pasr_node: false,
            ..Board::small()
        },
    );
    let out = refused("none", &dtb, &[]);
    assert!(out.contains("none.dtb"), "{out}");
    assert!(
        out.contains("no (enabled) monolith,pasr-dram node"),
        "{out}"
    );
}

#[test]
fn a_bad_pasr_node_is_refused_with_the_geometry_error() {
    for (name, board, reason) in [
        (
            "units",
            Board {
                units_per_die: None,
                ..Board::small()
            },
            "monolith,units-per-die must be 1 to 8",
        ),
        (
            "kind",
            Board {
                unit: "row",
                ..Board::small()
            },
            "monolith,pasr-unit must be \"bank\" or \"segment\"",
        ),
        (
            "unequal",
            Board {
                densities: vec![256, 512],
                ..Board::small()
            },
            "the dies in monolith,dies differ in density",
        ),
        (
            "interleave",
            Board {
                interleave: Some(3000),
                ..Board::small()
            },
            "monolith,interleave-bytes must be a power of two",
        ),
        (
            "span",
            // 64 Mbit dies of 8 banks: 1 MiB banks, not whole 4 MiB blocks.
            Board {
                densities: vec![64, 64],
                ..Board::small()
            },
            "not a whole number of the allocator's largest blocks (0x100000 against 0x400000)",
        ),
    ] {
        let dtb = dtb_file(&format!("{name}.dtb"), &board);
        let out = refused(name, &dtb, &[]);
        assert!(
            out.contains("the monolith,pasr-dram node is not usable"),
            "{name}: {out}"
        );
        assert!(out.contains(reason), "{name}: {out}");
    }
}

#[test]
fn what_is_not_a_device_tree_is_refused() {
    let junk = tmp("junk.dtb");
    std::fs::write(&junk, b"not a device tree at all, just words").unwrap();
    let out = refused("junk", &junk, &[]);
    assert!(out.contains("not a usable device tree: bad magic"), "{out}");
    let out = refused("missing", &tmp("does-not-exist.dtb"), &[]);
    assert!(out.contains("reading"), "{out}");
    assert!(out.contains("does-not-exist.dtb"), "{out}");
}

#[test]
fn a_temperature_out_of_range_is_refused() {
    let dtb = dtb_file("hot.dtb", &Board::small());
    let out = refused("hot", &dtb, &["--temperature", "400"]);
    assert!(
        out.contains("--temperature 400: must be -40 to 125"),
        "{out}"
    );
    let out = refused("cold", &dtb, &["--temperature", "-41"]);
    assert!(out.contains("--temperature -41"), "{out}");
}

fn serve(socket: &Path, dtb: &Path) -> Child {
    bin()
        .args(["serve", "--socket", socket.to_str().unwrap(), "--dtb"])
        .arg(dtb)
        .args(["--temperature", "-5"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn serve_exits_cleanly_on_sigterm_and_removes_its_socket() {
    let dtb = dtb_file("term.dtb", &Board::small());
    let socket = tmp("term.sock");
    let mut child = serve(&socket, &dtb);
    wait_for(&socket);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child, Duration::from_secs(10), "serve did not exit");
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}

#[test]
fn serve_exits_0_when_the_front_end_disconnects() {
    let dtb = dtb_file("conn.dtb", &Board::small());
    let socket = tmp("conn.sock");
    let mut child = serve(&socket, &dtb);
    wait_for(&socket);
    let conn = UnixStream::connect(&socket).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(conn);
    let status = wait_exit(&mut child, Duration::from_secs(10), "serve did not exit");
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}
