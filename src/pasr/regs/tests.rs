//! Host tests: the layout pinned byte by byte, round trips, and refusals.

use super::*;
use alloc::vec;
use alloc::vec::Vec;

fn sample() -> Registers {
    Registers {
        dies: 2,
        units_per_die: 8,
        unit_kind: 16,
        temperature_c: -5,
        status: Status {
            self_refresh: true,
            errors: status::ERR_TIME,
            sequence: 0xbeef,
        }
        .encode(),
        command: Command {
            opcode: command::EXIT,
            sequence: 0xbeef,
        }
        .encode(),
        timestamp_ns: 0x1122_3344_5566_7788,
        mr16: [0x81, 0x42, 0x24, 0x18],
        mr17: [0x01, 0x02, 0x03, 0x04],
        sr_entries: 0x0102_0304_0506_0708,
        sr_time_ns: 0x1000_0000_0000_0001,
        sr_energy_nj: 0x2000_0000_0000_0002,
        bytes_lost: 0x3000_0000_0000_0003,
        power_now_uw: 0xaabb_ccdd,
        power_full_uw: 0x0bad_f00d,
    }
}

#[test]
fn the_layout_is_pinned() {
    let image = sample().encode();
    let word = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
    assert_eq!(&image[0..4], b"PASR");
    assert_eq!(word(0x04), 1);
    assert_eq!(word(0x08), 2);
    assert_eq!(word(0x0c), 8);
    assert_eq!(word(0x10), 16);
    assert_eq!(word(0x14), (-5i32) as u32);
    assert_eq!(word(0x18), 0xbeef_1001);
    assert_eq!(word(0x1c), 0xbeef_0002);
    assert_eq!((word(0x20), word(0x24)), (0x5566_7788, 0x1122_3344));
    assert_eq!(
        [word(0x28), word(0x30), word(0x38), word(0x40)],
        [0x81, 0x42, 0x24, 0x18]
    );
    assert_eq!(
        [word(0x2c), word(0x34), word(0x3c), word(0x44)],
        [1, 2, 3, 4]
    );
    assert_eq!((word(0x48), word(0x4c)), (0x0506_0708, 0x0102_0304));
    assert_eq!((word(0x50), word(0x54)), (1, 0x1000_0000));
    assert_eq!((word(0x58), word(0x5c)), (2, 0x2000_0000));
    assert_eq!((word(0x60), word(0x64)), (3, 0x3000_0000));
    assert_eq!(word(0x68), 0xaabb_ccdd);
    assert_eq!(word(0x6c), 0x0bad_f00d);
    assert_eq!(CONFIG_SIZE, 0x70);
}

#[test]
fn registers_tile_the_block_without_overlap() {
    let mut words: Vec<(usize, usize)> = vec![
        (offset::MAGIC, 4),
        (offset::VERSION, 4),
        (offset::DIES, 4),
        (offset::UNITS_PER_DIE, 4),
        (offset::UNIT_KIND, 4),
        (offset::TEMPERATURE, 4),
        (offset::STATUS, 4),
        (offset::COMMAND, 4),
        (offset::TIMESTAMP, 8),
        (offset::SR_ENTRIES, 8),
        (offset::SR_TIME_NS, 8),
        (offset::SR_ENERGY_NJ, 8),
        (offset::BYTES_LOST, 8),
        (offset::POWER_NOW_UW, 4),
        (offset::POWER_FULL_UW, 4),
    ];
    for die in 0..MAX_DIES {
        words.push((offset::mr16(die), 4));
        words.push((offset::mr17(die), 4));
    }
    words.sort();
    let mut at = 0;
    for (offset, size) in words {
        assert_eq!(offset, at, "gap or overlap at {offset:#x}");
        assert_eq!(offset % size, 0, "{offset:#x} is not {size}-aligned");
        at += size;
    }
    assert_eq!(at, CONFIG_SIZE);
}

#[test]
fn a_block_round_trips() {
    let regs = sample();
    assert_eq!(Registers::decode(&regs.encode()), Ok(regs));
}

#[test]
fn a_foreign_block_is_refused() {
    let image = sample().encode();
    assert_eq!(Registers::decode(&image[..8]), Err(RegsError::Size(8)));
    let mut bad = image;
    bad[0] = b'X';
    assert!(matches!(Registers::decode(&bad), Err(RegsError::Magic(_))));
    let mut bad = image;
    bad[offset::VERSION] = 2;
    assert_eq!(Registers::decode(&bad), Err(RegsError::Version(2)));
    let shown = alloc::format!("{}", RegsError::Version(2));
    assert!(shown.contains("version 2"), "{shown}");
}

#[test]
fn only_the_writable_registers_are_taken_from_an_image() {
    let mut image = sample().encode();
    // Bits 31:8 of a mask register are reserved: dropped.
    image[offset::mr16(1) + 1] = 0xff;
    let w = GuestWritable::from_image(&image);
    assert_eq!(w.command, sample().command);
    assert_eq!(w.timestamp_ns, 0x1122_3344_5566_7788);
    assert_eq!(w.mr16, [0x81, 0x42, 0x24, 0x18]);
    assert_eq!(w.mr17, [1, 2, 3, 4]);
    // A short image reads as zeros where it has no bytes.
    let w = GuestWritable::from_image(&image[..offset::TIMESTAMP + 4]);
    assert_eq!(w.timestamp_ns, 0x5566_7788);
    assert_eq!(w.mr17, [0; MAX_DIES]);
}

#[test]
fn command_and_status_fields() {
    let c = Command {
        opcode: command::ENTER,
        sequence: 7,
    };
    assert_eq!(c.encode(), 0x0007_0001);
    assert_eq!(
        Command::decode(0xffff_00ff),
        Command {
            opcode: 0xff,
            sequence: 0xffff
        }
    );
    let s = Status::decode(0x0003_0901);
    assert!(s.self_refresh);
    assert_eq!(s.errors, status::ERR_STATE | status::ERR_NOT_IN_RAM);
    assert_eq!(s.sequence, 3);
    assert_eq!(Status::decode(s.encode()), s);
    let names: Vec<_> = s.error_names().collect();
    assert_eq!(
        names,
        vec!["command out of order", "a masked unit is not in guest RAM"]
    );
    // Error bits outside ERRORS cannot be encoded.
    let odd = Status {
        self_refresh: false,
        errors: 0x1,
        sequence: 0,
    };
    assert_eq!(odd.encode(), 0);
}
