//! The PASR DRAM controller's register block, as it sits in the virtio config space of the
//! controller model (`qemu/pasr-device`, a vhost-user device): one definition shared by that
//! device and the firmware's driver, as [`crate::virtio::video::wire`] is for video.
//!
//! # Theory of operation
//!
//! QEMU has no DRAM controller, so the model is an out-of-process vhost-user backend behind
//! QEMU's generic `vhost-user-device` (virtio id [`VIRTIO_ID`], one unused queue,
//! `config_size` [`CONFIG_SIZE`]). It really forgets: entering self-refresh overwrites every
//! byte of every masked bank or segment in guest RAM with [`POISON`].
//!
//! ## Layout
//!
//! Little-endian 32-bit registers; 64-bit values are a lo/hi pair of them at an 8-aligned
//! offset (lo first). Read-only unless marked RW.
//!
//! | offset | name | meaning |
//! |---|---|---|
//! | 0x00 | MAGIC | [`MAGIC`], "PASR" in ASCII |
//! | 0x04 | VERSION | [`LAYOUT_VERSION`] |
//! | 0x08 | DIES | dies the controller drives (1..=4) |
//! | 0x0c | UNITS_PER_DIE | banks or segments per die (1..=8) |
//! | 0x10 | UNIT_KIND | the mode register that masks them: 16 banks (MR16), 17 segments (MR17) |
//! | 0x14 | TEMPERATURE | die temperature, degrees C, signed (the device's command line) |
//! | 0x18 | STATUS | bit 0 in self-refresh; bits 15:8 errors ([`status`]); bits 31:16 sequence of the last command taken |
//! | 0x1c | COMMAND (RW) | bits 7:0 opcode ([`command`]), bits 31:16 sequence |
//! | 0x20 | TIMESTAMP (RW, u64) | guest time in ns, written before each command |
//! | 0x28 + 8d | MR16\[d\] (RW) | die `d`'s bank mask, bits 7:0, set = NOT refreshed |
//! | 0x2c + 8d | MR17\[d\] (RW) | die `d`'s segment mask, bits 7:0, set = NOT refreshed |
//! | 0x48 | SR_ENTRIES (u64) | self-refresh entries |
//! | 0x50 | SR_TIME_NS (u64) | total time in self-refresh, ns |
//! | 0x58 | SR_ENERGY_NJ (u64) | energy in self-refresh, nJ |
//! | 0x60 | BYTES_LOST (u64) | bytes overwritten because they were masked |
//! | 0x68 | POWER_NOW_UW | modeled self-refresh power with the masks now set, uW |
//! | 0x6c | POWER_FULL_UW | the same with nothing masked, uW |
//!
//! MR16/MR17 are named after the JEDEC LPDDR4 mode registers (bank mask, segment mask); bits
//! 31:8 read as zero. Only the register matching UNIT_KIND may be non-zero, and only in bits
//! below UNITS_PER_DIE and for dies below DIES: ENTER refuses a mask naming a unit that does
//! not exist. The masks are latched at ENTER and cannot change in self-refresh.
//!
//! ## How QEMU 10.0 forwards config accesses (and why COMMAND has a sequence)
//!
//! - Every guest read of config space (`virtio_config_modern_readl` and friends in
//!   `hw/virtio/virtio-config-io.c`) first calls the device's `get_config`, which for
//!   `vhost-user-base` (`vub_get_config`) is a VHOST_USER_GET_CONFIG of the *whole* space
//!   into QEMU's copy, `vdev->config`; the read is then served from that copy.
//! - Every guest write stores its 1, 2 or 4 bytes into `vdev->config` and calls
//!   `set_config(vdev, vdev->config)`; `vub_set_config` sends VHOST_USER_SET_CONFIG with
//!   offset 0 and size `config_size`: the *whole* space again, not the bytes written. Every
//!   other register in it holds whatever the guest last read or wrote.
//! - With REPLY_ACK (the device offers it) QEMU waits for each SET_CONFIG's answer before
//!   the guest's store completes; either way the next read's GET_CONFIG is answered after
//!   the write on the same socket, so a STATUS read sees the command it follows.
//! - virtio-mmio's region (`virtio_mem_ops`) sets no access sizes, so QEMU's memory core
//!   splits an 8-byte access into two 4-byte ones, lower address first: a 64-bit store to
//!   TIMESTAMP is two SET_CONFIGs, lo then hi.
//!
//! So the device takes from each SET_CONFIG only the RW registers, ignores the read-only
//! ones (they come back stale), and executes COMMAND only when its sequence differs from the
//! last command's: a write to TIMESTAMP or a mask re-sends the previous COMMAND, which must
//! not run again. The driver increments the sequence for every command (wrapping is fine)
//! and then reads STATUS: its sequence field says the command was taken, its error bits why
//! it was refused. Writable registers read back what was written, so QEMU's copy never
//! disagrees with the device. A command's error bits replace the previous command's.
//!
//! ## Time comes from the guest
//!
//! Energy must repeat exactly under QEMU `-icount`, and a host-side device cannot see the
//! guest's virtual clock (its own clock is host time, different on every run). So the driver
//! writes TIMESTAMP (its counter, in ns) before ENTER and before EXIT; time in self-refresh
//! is EXIT's timestamp minus ENTER's, and energy is that time multiplied by the power of the
//! masks in force at ENTER ([`crate::pasr::power`]). Counters change only when the guest's
//! own command is taken, so a lo/hi pair read between commands never tears.
//!
//! ## The memory table
//!
//! QEMU sends the guest memory table (VHOST_USER_SET_MEM_TABLE) only when the device starts,
//! i.e. when the driver sets DRIVER_OK (`vub_set_status` -> `vhost_dev_start`); config space
//! works before that. ENTER with a mask set before DRIVER_OK is refused with
//! [`status::ERR_NOT_IN_RAM`]. `vhost-user-base` makes `num_vqs=0` one queue anyway
//! (`vub_device_realize`), so the device offers [`NUM_QUEUES`] = 1 queue the driver never
//! sets up (QEMU skips starting a queue without a descriptor address).
#![forbid(unsafe_code)]

use core::fmt;

/// The virtio device id the controller model answers to: 6, "ioMemory" in the virtio spec's
/// device id table. Why this one: QEMU 10.0's `virtio_init` names the device with
/// `virtio_id_to_name`, which asserts that the id is in `virtio_device_names[]` (an unknown
/// id such as 14, 15 or anything above 41 aborts QEMU), so the id must be one QEMU names.
/// Of those, ioMemory (`virtio-iomem`) has no device specification, no QEMU device model and
/// no Linux driver, and our firmware binds only the GPU (16) and the video decoder (31); so
/// no real driver on our board, nor a Linux guest, ever mistakes the controller for its
/// device. It is also a memory device in name, which is the nearest thing to a DRAM
/// controller in the table.
pub const VIRTIO_ID: u32 = 6;
// QEMU 10.0.2's virtio_device_names[] names ids 1..=13 and 16..=41 (anything else aborts in
// virtio_id_to_name); the firmware binds 16 (GPU) and 31 (video decoder).
const _: () = assert!(
    matches!(VIRTIO_ID, 1..=13 | 16..=41) && VIRTIO_ID != 16 && VIRTIO_ID != 31,
    "the controller's virtio id must be one QEMU names and no board driver binds"
);
/// Virtqueues the device offers (QEMU's `num_vqs`): one, never used.
pub const NUM_QUEUES: u32 = 1;
/// Bytes of config space (QEMU's `config_size`; `vhost-user` caps it at 256).
pub const CONFIG_SIZE: usize = 0x70;
// vhost-user.c: VHOST_USER_MAX_CONFIG_SIZE (256); `vhost_user_get_config` asserts it.
const _: () = assert!(
    CONFIG_SIZE <= 256,
    "QEMU's vhost-user config space is at most 256 bytes"
);
/// "PASR", read as a little-endian word.
pub const MAGIC: u32 = u32::from_le_bytes(*b"PASR");
/// This layout.
pub const LAYOUT_VERSION: u32 = 1;
/// Dies the block has mode registers for (`geometry::MAX_DIES`).
pub const MAX_DIES: usize = crate::pasr::geometry::MAX_DIES as usize;
/// What a masked unit holds after self-refresh: every byte overwritten with this.
pub const POISON: u8 = 0x5a;

/// Register offsets from the start of config space.
pub mod offset {
    pub const MAGIC: usize = 0x00;
    pub const VERSION: usize = 0x04;
    pub const DIES: usize = 0x08;
    pub const UNITS_PER_DIE: usize = 0x0c;
    pub const UNIT_KIND: usize = 0x10;
    pub const TEMPERATURE: usize = 0x14;
    pub const STATUS: usize = 0x18;
    pub const COMMAND: usize = 0x1c;
    /// u64: lo at 0x20, hi at 0x24.
    pub const TIMESTAMP: usize = 0x20;
    /// Die `die`'s MR16 (bank mask).
    pub const fn mr16(die: usize) -> usize {
        0x28 + 8 * die
    }
    /// Die `die`'s MR17 (segment mask).
    pub const fn mr17(die: usize) -> usize {
        0x2c + 8 * die
    }
    pub const SR_ENTRIES: usize = 0x48;
    pub const SR_TIME_NS: usize = 0x50;
    pub const SR_ENERGY_NJ: usize = 0x58;
    pub const BYTES_LOST: usize = 0x60;
    pub const POWER_NOW_UW: usize = 0x68;
    pub const POWER_FULL_UW: usize = 0x6c;
}

/// COMMAND opcodes (bits 7:0).
pub mod command {
    /// Enter self-refresh: latch the masks, overwrite the masked units, start the clock.
    pub const ENTER: u8 = 1;
    /// Exit self-refresh: add the time and energy since ENTER, back to active.
    pub const EXIT: u8 = 2;
}

/// STATUS bits.
pub mod status {
    /// In self-refresh (clear: active).
    pub const SELF_REFRESH: u32 = 1 << 0;
    /// ENTER while in self-refresh, or EXIT while active.
    pub const ERR_STATE: u32 = 1 << 8;
    /// The opcode is neither ENTER nor EXIT.
    pub const ERR_UNKNOWN_COMMAND: u32 = 1 << 9;
    /// ENTER with a mask naming a unit that does not exist: a bit at or above
    /// UNITS_PER_DIE, a die at or above DIES, or a bit in the register of the other kind.
    pub const ERR_NO_SUCH_UNIT: u32 = 1 << 10;
    /// ENTER with a masked unit that is not wholly in guest RAM (or before the memory table,
    /// which QEMU sends at DRIVER_OK).
    pub const ERR_NOT_IN_RAM: u32 = 1 << 11;
    /// EXIT with a timestamp before ENTER's.
    pub const ERR_TIME: u32 = 1 << 12;
    /// A mode register was written in self-refresh (ignored; they are latched at ENTER).
    pub const ERR_MASK_LOCKED: u32 = 1 << 13;
    /// Every error bit.
    pub const ERRORS: u32 = 0xff00;
    /// The sequence field (bits 31:16).
    pub const SEQUENCE_SHIFT: u32 = 16;

    /// Each error bit and what it means, for messages.
    pub const ERROR_NAMES: [(u32, &str); 6] = [
        (ERR_STATE, "command out of order"),
        (ERR_UNKNOWN_COMMAND, "unknown command"),
        (ERR_NO_SUCH_UNIT, "a mask names a unit that does not exist"),
        (ERR_NOT_IN_RAM, "a masked unit is not in guest RAM"),
        (ERR_TIME, "exit timestamp before entry"),
        (ERR_MASK_LOCKED, "mode register written in self-refresh"),
    ];
}

/// A COMMAND register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub opcode: u8,
    pub sequence: u16,
}

impl Command {
    pub fn encode(self) -> u32 {
        u32::from(self.opcode) | (u32::from(self.sequence) << 16)
    }

    pub fn decode(value: u32) -> Command {
        Command {
            opcode: value as u8,
            sequence: (value >> 16) as u16,
        }
    }
}

/// A STATUS register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub self_refresh: bool,
    /// [`status`] error bits (within [`status::ERRORS`]).
    pub errors: u32,
    /// The sequence of the last command the device took (executed or refused).
    pub sequence: u16,
}

impl Status {
    pub fn encode(self) -> u32 {
        u32::from(self.self_refresh)
            | (self.errors & status::ERRORS)
            | (u32::from(self.sequence) << status::SEQUENCE_SHIFT)
    }

    pub fn decode(value: u32) -> Status {
        Status {
            self_refresh: value & status::SELF_REFRESH != 0,
            errors: value & status::ERRORS,
            sequence: (value >> status::SEQUENCE_SHIFT) as u16,
        }
    }

    /// What each set error bit means.
    pub fn error_names(self) -> impl Iterator<Item = &'static str> {
        status::ERROR_NAMES
            .into_iter()
            .filter(move |(bit, _)| self.errors & bit != 0)
            .map(|(_, name)| name)
    }
}

/// The whole register block (MAGIC and VERSION are constants, written by [`encode`]).
///
/// [`encode`]: Registers::encode
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    pub dies: u32,
    pub units_per_die: u32,
    /// 16 (banks, MR16) or 17 (segments, MR17).
    pub unit_kind: u32,
    pub temperature_c: i32,
    pub status: u32,
    pub command: u32,
    pub timestamp_ns: u64,
    pub mr16: [u8; MAX_DIES],
    pub mr17: [u8; MAX_DIES],
    pub sr_entries: u64,
    pub sr_time_ns: u64,
    pub sr_energy_nj: u64,
    pub bytes_lost: u64,
    pub power_now_uw: u32,
    pub power_full_uw: u32,
}

/// Why a register image was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegsError {
    /// Not [`CONFIG_SIZE`] bytes.
    Size(usize),
    /// MAGIC is not "PASR".
    Magic(u32),
    /// A layout this code does not know.
    Version(u32),
}

impl fmt::Display for RegsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RegsError::Size(n) => write!(f, "{n} bytes of registers, expected {CONFIG_SIZE}"),
            RegsError::Magic(m) => write!(f, "magic {m:#010x}, expected {MAGIC:#010x} (\"PASR\")"),
            RegsError::Version(v) => {
                write!(f, "register layout version {v}, expected {LAYOUT_VERSION}")
            }
        }
    }
}

/// The 32-bit register at `offset` of `image` (zero past its end).
pub fn read_u32(image: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(bytes) = image.get(offset..offset + 4) {
        word.copy_from_slice(bytes);
    }
    u32::from_le_bytes(word)
}

/// The 64-bit lo/hi pair at `offset` of `image`.
pub fn read_u64(image: &[u8], offset: usize) -> u64 {
    u64::from(read_u32(image, offset)) | (u64::from(read_u32(image, offset + 4)) << 32)
}

fn put_u32(image: &mut [u8; CONFIG_SIZE], offset: usize, value: u32) {
    image[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(image: &mut [u8; CONFIG_SIZE], offset: usize, value: u64) {
    put_u32(image, offset, value as u32);
    put_u32(image, offset + 4, (value >> 32) as u32);
}

impl Registers {
    pub fn encode(&self) -> [u8; CONFIG_SIZE] {
        let mut image = [0u8; CONFIG_SIZE];
        put_u32(&mut image, offset::MAGIC, MAGIC);
        put_u32(&mut image, offset::VERSION, LAYOUT_VERSION);
        put_u32(&mut image, offset::DIES, self.dies);
        put_u32(&mut image, offset::UNITS_PER_DIE, self.units_per_die);
        put_u32(&mut image, offset::UNIT_KIND, self.unit_kind);
        put_u32(&mut image, offset::TEMPERATURE, self.temperature_c as u32);
        put_u32(&mut image, offset::STATUS, self.status);
        put_u32(&mut image, offset::COMMAND, self.command);
        put_u64(&mut image, offset::TIMESTAMP, self.timestamp_ns);
        for die in 0..MAX_DIES {
            put_u32(&mut image, offset::mr16(die), u32::from(self.mr16[die]));
            put_u32(&mut image, offset::mr17(die), u32::from(self.mr17[die]));
        }
        put_u64(&mut image, offset::SR_ENTRIES, self.sr_entries);
        put_u64(&mut image, offset::SR_TIME_NS, self.sr_time_ns);
        put_u64(&mut image, offset::SR_ENERGY_NJ, self.sr_energy_nj);
        put_u64(&mut image, offset::BYTES_LOST, self.bytes_lost);
        put_u32(&mut image, offset::POWER_NOW_UW, self.power_now_uw);
        put_u32(&mut image, offset::POWER_FULL_UW, self.power_full_uw);
        image
    }

    /// A whole block as read (by a driver that copies config space out), checked for size,
    /// magic and version.
    pub fn decode(image: &[u8]) -> Result<Registers, RegsError> {
        if image.len() != CONFIG_SIZE {
            return Err(RegsError::Size(image.len()));
        }
        let magic = read_u32(image, offset::MAGIC);
        if magic != MAGIC {
            return Err(RegsError::Magic(magic));
        }
        let version = read_u32(image, offset::VERSION);
        if version != LAYOUT_VERSION {
            return Err(RegsError::Version(version));
        }
        let writable = GuestWritable::from_image(image);
        Ok(Registers {
            dies: read_u32(image, offset::DIES),
            units_per_die: read_u32(image, offset::UNITS_PER_DIE),
            unit_kind: read_u32(image, offset::UNIT_KIND),
            temperature_c: read_u32(image, offset::TEMPERATURE) as i32,
            status: read_u32(image, offset::STATUS),
            command: writable.command,
            timestamp_ns: writable.timestamp_ns,
            mr16: writable.mr16,
            mr17: writable.mr17,
            sr_entries: read_u64(image, offset::SR_ENTRIES),
            sr_time_ns: read_u64(image, offset::SR_TIME_NS),
            sr_energy_nj: read_u64(image, offset::SR_ENERGY_NJ),
            bytes_lost: read_u64(image, offset::BYTES_LOST),
            power_now_uw: read_u32(image, offset::POWER_NOW_UW),
            power_full_uw: read_u32(image, offset::POWER_FULL_UW),
        })
    }
}

/// The registers the guest may write, as found in a config image (what the device takes
/// from a SET_CONFIG; everything else in it is ignored). Mask bits 31:8 are dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestWritable {
    pub command: u32,
    pub timestamp_ns: u64,
    pub mr16: [u8; MAX_DIES],
    pub mr17: [u8; MAX_DIES],
}

impl GuestWritable {
    /// The RW registers of `image` (missing bytes read as zero).
    pub fn from_image(image: &[u8]) -> GuestWritable {
        let mut w = GuestWritable {
            command: read_u32(image, offset::COMMAND),
            timestamp_ns: read_u64(image, offset::TIMESTAMP),
            ..GuestWritable::default()
        };
        for die in 0..MAX_DIES {
            w.mr16[die] = read_u32(image, offset::mr16(die)) as u8;
            w.mr17[die] = read_u32(image, offset::mr17(die)) as u8;
        }
        w
    }
}

#[cfg(test)]
mod tests;
