//! End to end over the socket, with the vhost crate's front end playing QEMU 10.0 as it
//! really forwards config space (GET_CONFIG of the whole block before each read, SET_CONFIG
//! of the whole block after each write): feature and config negotiation, a refused entry
//! before the memory table, the memory table (a file both sides map, as QEMU's memfd),
//! a self-refresh entry that overwrites the masked bank in that shared memory, the exit's
//! time and energy against the power model, odd accesses that leave the connection up, and
//! a disconnect that ends `serve`.

mod common;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{dtb_file, tmp, wait_exit, Board};
use monolith::pasr::power;
use monolith::pasr::regs::{
    command, offset, read_u32, status, Command as Cmd, Status, CONFIG_SIZE, MAGIC, POISON,
};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const MIB: u64 = 1 << 20;
const TEMPERATURE: i32 = 60;

/// QEMU's side of config space: its copy of the block, refreshed on reads, sent on writes.
struct Qemu {
    frontend: Frontend,
    copy: Vec<u8>,
    sequence: u16,
}

impl Qemu {
    fn read32(&mut self, at: usize) -> u32 {
        let (_, all) = self
            .frontend
            .get_config(
                0,
                CONFIG_SIZE as u32,
                VhostUserConfigFlags::WRITABLE,
                &[0; CONFIG_SIZE],
            )
            .unwrap();
        self.copy = all;
        read_u32(&self.copy, at)
    }

    fn read64(&mut self, at: usize) -> u64 {
        u64::from(self.read32(at)) | (u64::from(self.read32(at + 4)) << 32)
    }

    fn write32(&mut self, at: usize, value: u32) {
        self.copy[at..at + 4].copy_from_slice(&value.to_le_bytes());
        // VHOST_SET_CONFIG_TYPE_FRONTEND: flags 0.
        self.frontend
            .set_config(0, VhostUserConfigFlags::empty(), &self.copy)
            .unwrap();
    }

    fn command(&mut self, opcode: u8, now_ns: u64) -> Status {
        self.write32(offset::TIMESTAMP, now_ns as u32);
        self.write32(offset::TIMESTAMP + 4, (now_ns >> 32) as u32);
        self.sequence += 1;
        self.write32(
            offset::COMMAND,
            Cmd {
                opcode,
                sequence: self.sequence,
            }
            .encode(),
        );
        let s = Status::decode(self.read32(offset::STATUS));
        assert_eq!(s.sequence, self.sequence);
        s
    }
}

#[test]
fn a_front_end_masks_a_bank_and_the_bank_is_really_forgotten() {
    let board = Board::small();
    let base = board.base;
    let window = board.total_bytes();
    let dtb = dtb_file("e2e.dtb", &board);
    let socket = tmp("pasr.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_monolith-pasr-device"))
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

    // Guest RAM: the DRAM window, in a file both processes map shared.
    let path = tmp("ram");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(window).unwrap();
    let fd = file.try_clone().unwrap();
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(base),
        window as usize,
        Some(FileOffset::new(file, 0)),
    )])
    .unwrap();
    let pattern = vec![0x11u8; MIB as usize];
    for at in (base..base + window).step_by(MIB as usize) {
        mem.write_slice(&pattern, GuestAddress(at)).unwrap();
    }

    let mut frontend = Frontend::connect(&socket, 1).unwrap();
    frontend.set_owner().unwrap();
    let features = frontend.get_features().unwrap();
    frontend.set_features(features).unwrap();
    let protocol = frontend.get_protocol_features().unwrap();
    assert!(
        protocol.contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::REPLY_ACK)
    );
    frontend
        .set_protocol_features(
            protocol
                & (VhostUserProtocolFeatures::CONFIG
                    | VhostUserProtocolFeatures::REPLY_ACK
                    | VhostUserProtocolFeatures::RESET_DEVICE),
        )
        .unwrap();
    let mut qemu = Qemu {
        frontend,
        copy: vec![0; CONFIG_SIZE],
        sequence: 0,
    };
    assert_eq!(qemu.read32(offset::MAGIC), MAGIC);
    assert_eq!(qemu.read32(offset::DIES), 2);
    assert_eq!(qemu.read32(offset::UNITS_PER_DIE), 8);
    assert_eq!(qemu.read32(offset::UNIT_KIND), 16);
    assert_eq!(qemu.read32(offset::TEMPERATURE) as i32, TEMPERATURE);

    // Die 1's bank 2 masked, before DRIVER_OK (no memory table): refused, nothing lost.
    qemu.write32(offset::mr16(1), 1 << 2);
    let s = qemu.command(command::ENTER, 1_000);
    assert_eq!((s.self_refresh, s.errors), (false, status::ERR_NOT_IN_RAM));

    // DRIVER_OK: QEMU sends the memory table.
    let host = mem.get_host_address(GuestAddress(base)).unwrap() as u64;
    qemu.frontend
        .set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: base,
            memory_size: window,
            userspace_addr: host,
            mmap_offset: 0,
            mmap_handle: fd.as_raw_fd(),
        }])
        .unwrap();

    let entry = 2_000_000_000;
    let s = qemu.command(command::ENTER, entry);
    assert_eq!((s.self_refresh, s.errors), (true, 0));
    let bank = base + 32 * MIB + 2 * 4 * MIB..base + 32 * MIB + 3 * 4 * MIB;
    let mut chunk = vec![0u8; MIB as usize];
    for at in (base..base + window).step_by(MIB as usize) {
        mem.read_slice(&mut chunk, GuestAddress(at)).unwrap();
        let want = if bank.contains(&at) { POISON } else { 0x11 };
        assert!(
            chunk.iter().all(|&b| b == want),
            "MiB at {at:#x}: want {want:#04x}"
        );
    }
    assert_eq!(qemu.read64(offset::BYTES_LOST), 4 * MIB);
    assert_eq!(qemu.read64(offset::SR_ENTRIES), 1);
    let masks = [0u8, 1 << 2];
    assert_eq!(
        u64::from(qemu.read32(offset::POWER_NOW_UW)),
        power::self_refresh_uw(8, &masks, TEMPERATURE)
    );

    // An odd SET_CONFIG (past the end) is acknowledged, ignored, and the connection stays
    // up. (An odd GET_CONFIG gets a zero-size reply, which QEMU's `vhost_user_read` takes
    // as an error; the vhost crate's front end would wait for the full payload instead, so
    // that case is tested at the glue, `vhost::tests`.)
    qemu.frontend
        .set_config(
            CONFIG_SIZE as u32 - 2,
            VhostUserConfigFlags::empty(),
            &[0xff; 8],
        )
        .unwrap();
    assert!(Status::decode(qemu.read32(offset::STATUS)).self_refresh);

    let stay = 1_234_567_891;
    let s = qemu.command(command::EXIT, entry + stay);
    assert_eq!((s.self_refresh, s.errors), (false, 0));
    assert_eq!(qemu.read64(offset::SR_TIME_NS), stay);
    assert_eq!(
        qemu.read64(offset::SR_ENERGY_NJ),
        power::energy_nj(power::self_refresh_nw(8, &masks, TEMPERATURE), stay)
    );
    let s = qemu.command(command::EXIT, entry + stay + 1);
    assert_eq!(s.errors, status::ERR_STATE, "exit while active");

    // QEMU goes away: serve exits 0 and removes its socket.
    drop(qemu);
    let status = wait_exit(
        &mut child,
        Duration::from_secs(10),
        "serve did not exit after the disconnect",
    );
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
    let _ = std::fs::remove_file(&path);
}
