//! The device behind the real, patched QEMU 10.0 (`MONOLITH_QEMU`, as `cargo xtask` uses it),
//! driven with QEMU's qtest protocol instead of a guest: 32-bit MMIO reads and writes to the
//! virtio-mmio slot, and guest-RAM reads, on `-M virt` with a memfd RAM backend. It checks
//! what the register layout relies on: QEMU accepts virtio id 6 with one queue and 112
//! bytes of config; config reads and writes reach the device (whole-space SET_CONFIG: an
//! unrelated write does not run a command again); the memory table arrives at DRIVER_OK; an
//! entry overwrites the masked bank in the RAM QEMU's guest sees; a 64-bit store reaches both
//! halves of a register pair.
//!
//! Without `MONOLITH_QEMU` the test says so and passes: stock QEMU cannot create
//! `vhost-user-device` (`cargo xtask qemu` builds the patched one).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dtb_file, tmp, wait_exit, Board};
use monolith::pasr::power;
use monolith::pasr::regs::{
    command, offset, status, Command as Cmd, Status, CONFIG_SIZE, MAGIC, NUM_QUEUES, POISON,
    VIRTIO_ID,
};

const MIB: u64 = 1 << 20;
const TEMPERATURE: i32 = 60;
/// virtio-mmio on `virt`: 32 slots of 0x200 from here; config space at +0x100.
const MMIO_BASE: u64 = 0x0a00_0000;
const MMIO_CONFIG: u64 = 0x100;
const MMIO_DEVICE_ID: u64 = 0x008;
const MMIO_DRIVER_FEATURES: u64 = 0x020;
const MMIO_DRIVER_FEATURES_SEL: u64 = 0x024;
const MMIO_STATUS: u64 = 0x070;

struct Qtest {
    qemu: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Qtest {
    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.input, "{line}").unwrap();
        self.input.flush().unwrap();
        loop {
            let mut reply = String::new();
            assert!(
                self.output.read_line(&mut reply).unwrap() > 0,
                "QEMU went away after `{line}`"
            );
            if reply.starts_with("OK") || reply.starts_with("FAIL") || reply.starts_with("ERR") {
                assert!(reply.starts_with("OK"), "`{line}`: {reply}");
                return reply.trim().to_string();
            }
        }
    }

    fn value(reply: &str) -> u64 {
        let hex = reply.split_whitespace().nth(1).unwrap();
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
    }

    fn readl(&mut self, addr: u64) -> u32 {
        Self::value(&self.cmd(&format!("readl {addr:#x}"))) as u32
    }

    fn readb(&mut self, addr: u64) -> u8 {
        Self::value(&self.cmd(&format!("readb {addr:#x}"))) as u8
    }

    fn writel(&mut self, addr: u64, value: u32) {
        self.cmd(&format!("writel {addr:#x} {value:#x}"));
    }
}

impl Drop for Qtest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

#[test]
fn the_patched_qemu_forwards_config_space_and_shares_guest_ram() {
    let Some(qemu) = std::env::var_os("MONOLITH_QEMU") else {
        eprintln!("skipped: set MONOLITH_QEMU to a patched qemu-system-aarch64 (cargo xtask qemu)");
        return;
    };
    let board = Board::small();
    let dtb = dtb_file("qtest.dtb", &board);
    let socket = tmp("qtest.sock");
    let mut device = Command::new(env!("CARGO_BIN_EXE_monolith-pasr-device"))
        .args(["serve", "--socket", socket.to_str().unwrap(), "--dtb"])
        .arg(&dtb)
        .args(["--temperature", &TEMPERATURE.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut child = Command::new(qemu)
        .args(["-machine", "virt,memory-backend=mem", "-accel", "qtest", "-qtest", "stdio"])
        .args(["-display", "none", "-nodefaults", "-m", "1G"])
        .args(["-object", "memory-backend-memfd,id=mem,size=1G,share=on"])
        .args(["-global", "virtio-mmio.force-legacy=false"])
        .arg("-chardev")
        .arg(format!("socket,id=pasr,path={}", socket.display()))
        .arg("-device")
        .arg(format!(
            "vhost-user-device,chardev=pasr,virtio-id={VIRTIO_ID},num_vqs={NUM_QUEUES},config_size={CONFIG_SIZE}"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    let output = BufReader::new(child.stdout.take().unwrap());
    let mut q = Qtest {
        qemu: child,
        input,
        output,
    };

    let slot = (0..32)
        .map(|s| MMIO_BASE + s * 0x200)
        .find(|&b| q.readl(b + MMIO_DEVICE_ID) == VIRTIO_ID)
        .expect("no virtio-mmio slot with the controller's id");
    let reg = |at: usize| slot + MMIO_CONFIG + at as u64;
    assert_eq!(q.readl(reg(offset::MAGIC)), MAGIC);
    assert_eq!(q.readl(reg(offset::DIES)), 2);
    assert_eq!(q.readl(reg(offset::TEMPERATURE)) as i32, TEMPERATURE);

    let mut sequence = 0u16;
    let mut run = |q: &mut Qtest, opcode: u8, now_ns: u64| {
        q.writel(reg(offset::TIMESTAMP), now_ns as u32);
        q.writel(reg(offset::TIMESTAMP + 4), (now_ns >> 32) as u32);
        sequence += 1;
        q.writel(reg(offset::COMMAND), Cmd { opcode, sequence }.encode());
        let s = Status::decode(q.readl(reg(offset::STATUS)));
        assert_eq!(s.sequence, sequence, "the command reached the device");
        s
    };

    // Die 1's bank 2, before DRIVER_OK: no memory table yet.
    q.writel(reg(offset::mr16(1)), 1 << 2);
    let s = run(&mut q, command::ENTER, 1_000);
    assert_eq!((s.self_refresh, s.errors), (false, status::ERR_NOT_IN_RAM));

    // Driver start-up: ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK, DRIVER_OK.
    q.writel(slot + MMIO_STATUS, 1);
    q.writel(slot + MMIO_STATUS, 3);
    q.writel(slot + MMIO_DRIVER_FEATURES_SEL, 1);
    q.writel(slot + MMIO_DRIVER_FEATURES, 1);
    q.writel(slot + MMIO_DRIVER_FEATURES_SEL, 0);
    q.writel(slot + MMIO_DRIVER_FEATURES, 0);
    q.writel(slot + MMIO_STATUS, 0xb);
    assert_eq!(q.readl(slot + MMIO_STATUS), 0xb, "FEATURES_OK accepted");
    q.writel(slot + MMIO_STATUS, 0xf);

    let window = board.base..board.base + board.total_bytes();
    q.cmd(&format!(
        "memset {:#x} {:#x} 0x11",
        window.start,
        window.end - window.start
    ));
    let entry = 2_000_000_000;
    let s = run(&mut q, command::ENTER, entry);
    assert_eq!((s.self_refresh, s.errors), (true, 0));
    let bank = board.base + 32 * MIB + 8 * MIB..board.base + 32 * MIB + 12 * MIB;
    for at in [bank.start, bank.start + 12_345, bank.end - 1] {
        assert_eq!(q.readb(at), POISON, "{at:#x} was masked");
    }
    for at in [window.start, bank.start - 1, bank.end, window.end - 1] {
        assert_eq!(q.readb(at), 0x11, "{at:#x} was refreshed");
    }
    assert_eq!(q.readl(reg(offset::BYTES_LOST)), 4 << 20);

    // An unrelated write re-sends COMMAND = ENTER: not run again.
    q.writel(reg(offset::TIMESTAMP), 5);
    let s = Status::decode(q.readl(reg(offset::STATUS)));
    assert_eq!((s.self_refresh, s.errors), (true, 0));
    assert_eq!(q.readl(reg(offset::SR_ENTRIES)), 1);

    let stay = 1_234_567_891;
    let s = run(&mut q, command::EXIT, entry + stay);
    assert_eq!((s.self_refresh, s.errors), (false, 0));
    assert_eq!(q.readl(reg(offset::SR_TIME_NS)), stay as u32);
    let model = power::energy_nj(power::self_refresh_nw(8, &[0, 1 << 2], TEMPERATURE), stay);
    assert_eq!(u64::from(q.readl(reg(offset::SR_ENERGY_NJ))), model);

    // A 64-bit store: QEMU splits it into two 32-bit SET_CONFIGs, lo then hi.
    q.cmd(&format!(
        "writeq {:#x} 0x1122334455667788",
        reg(offset::TIMESTAMP)
    ));
    assert_eq!(q.readl(reg(offset::TIMESTAMP)), 0x5566_7788);
    assert_eq!(q.readl(reg(offset::TIMESTAMP + 4)), 0x1122_3344);

    drop(q);
    let status = wait_exit(
        &mut device,
        Duration::from_secs(20),
        "the device did not exit after QEMU did",
    );
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}
