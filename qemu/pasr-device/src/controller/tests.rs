//! The core against a mock guest memory, driven the way QEMU 10.0 drives it: every read
//! refreshes QEMU's copy of the whole config space, every write sends the whole copy back.

use super::*;
use monolith::pasr::regs::{offset, read_u32, read_u64};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MIB: u64 = 1 << 20;
const BASE: u64 = 0x4000_0000;
const DIE: u64 = 32 * MIB;
const MAX_BLOCK: u64 = 4 * MIB;

/// Two dies of eight 4 MiB banks at BASE.
fn plain() -> Geometry {
    Geometry::new(BASE, 2, DIE, 8, UnitKind::Bank, None, MAX_BLOCK).unwrap()
}

fn interleaved() -> Geometry {
    Geometry::new(BASE, 2, DIE, 8, UnitKind::Bank, Some(4096), MAX_BLOCK).unwrap()
}

/// Guest RAM: a low page (not in the window) and the whole window.
fn ram() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x1000),
        (GuestAddress(BASE), 2 * DIE as usize),
    ])
    .unwrap()
}

/// What page `addr` held before anything was overwritten: never POISON (0x5a is even).
fn page_pattern(addr: u64) -> u8 {
    ((addr >> 12) as u8) | 1
}

fn fill(mem: &GuestMemoryMmap, range: Range<u64>) {
    let mut page = vec![0u8; 4096];
    let mut at = range.start;
    while at < range.end {
        page.fill(page_pattern(at));
        mem.write_slice(&page, GuestAddress(at)).unwrap();
        at += 4096;
    }
}

/// Plays QEMU and a driver: QEMU's config copy, and the driver's command sequence.
struct Guest {
    controller: Controller,
    mem: Option<GuestMemoryMmap>,
    copy: [u8; CONFIG_SIZE],
    sequence: u16,
}

impl Guest {
    fn new(geometry: Geometry, temperature_c: i32, mem: Option<GuestMemoryMmap>) -> Guest {
        Guest {
            controller: Controller::new(geometry, temperature_c),
            mem,
            copy: [0; CONFIG_SIZE],
            sequence: 0,
        }
    }

    /// `virtio_config_modern_readl`: GET_CONFIG of everything, then the word.
    fn read32(&mut self, at: usize) -> u32 {
        let all = self.controller.read(0, CONFIG_SIZE as u32).unwrap();
        self.copy.copy_from_slice(&all);
        read_u32(&self.copy, at)
    }

    fn read64(&mut self, at: usize) -> u64 {
        u64::from(self.read32(at)) | (u64::from(self.read32(at + 4)) << 32)
    }

    /// `virtio_config_modern_writel`: into the copy, then SET_CONFIG of the whole copy.
    fn write32(&mut self, at: usize, value: u32) {
        self.copy[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let copy = self.copy;
        self.controller.write(self.mem.as_ref(), 0, &copy).unwrap();
    }

    fn set_mask(&mut self, die: usize, mask: u8) {
        self.write32(offset::mr16(die), u32::from(mask));
    }

    /// What a driver does: the timestamp (two 32-bit halves), then COMMAND with the next
    /// sequence; the STATUS that follows.
    fn command(&mut self, opcode: u8, now_ns: u64) -> Status {
        self.write32(offset::TIMESTAMP, now_ns as u32);
        self.write32(offset::TIMESTAMP + 4, (now_ns >> 32) as u32);
        self.sequence = self.sequence.wrapping_add(1);
        let c = Command {
            opcode,
            sequence: self.sequence,
        };
        self.write32(offset::COMMAND, c.encode());
        let s = Status::decode(self.read32(offset::STATUS));
        assert_eq!(s.sequence, self.sequence, "the command was taken");
        s
    }

    fn mem(&self) -> &GuestMemoryMmap {
        self.mem.as_ref().unwrap()
    }
}

/// Every page of the window: POISON throughout where `lost(page)`, its own pattern
/// throughout elsewhere.
fn check_pages(mem: &GuestMemoryMmap, lost: impl Fn(u64) -> bool) {
    let mut page = vec![0u8; 4096];
    for at in (BASE..BASE + 2 * DIE).step_by(4096) {
        mem.read_slice(&mut page, GuestAddress(at)).unwrap();
        let want = if lost(at) { POISON } else { page_pattern(at) };
        assert!(
            page.iter().all(|&b| b == want),
            "page {at:#x}: want {want:#04x}, found {:#04x}",
            page.iter().find(|&&b| b != want).unwrap()
        );
    }
}

fn unit(die: u8, index: u8) -> Unit {
    Unit { die, index }
}

#[test]
fn entering_overwrites_exactly_the_masked_banks_plain() {
    let mem = ram();
    fill(&mem, BASE..BASE + 2 * DIE);
    mem.write_slice(&[0x77; 0x1000], GuestAddress(0)).unwrap();
    let mut g = Guest::new(plain(), 85, Some(mem));
    g.set_mask(0, 0b0000_0001);
    g.set_mask(1, 0b1000_1000);
    let s = g.command(command::ENTER, 1_000);
    assert_eq!((s.self_refresh, s.errors), (true, 0));
    let geometry = plain();
    let masked = [unit(0, 0), unit(1, 3), unit(1, 7)];
    check_pages(g.mem(), |at| {
        masked.contains(&geometry.unit_of(at).unwrap())
    });
    let mut low = [0u8; 0x1000];
    g.mem().read_slice(&mut low, GuestAddress(0)).unwrap();
    assert!(
        low.iter().all(|&b| b == 0x77),
        "RAM outside the window is untouched"
    );
    assert_eq!(g.read64(offset::BYTES_LOST), 3 * 4 * MIB);
    assert_eq!(g.read64(offset::SR_ENTRIES), 1);
}

#[test]
fn entering_overwrites_exactly_the_masked_banks_interleaved() {
    let mem = ram();
    fill(&mem, BASE..BASE + 2 * DIE);
    let mut g = Guest::new(interleaved(), 85, Some(mem));
    // Die 0's bank 2 alone: every other page of span 2, its partner's pages kept; and both
    // dies' bank 5: the whole of span 5.
    g.set_mask(0, 0b0010_0100);
    g.set_mask(1, 0b0010_0000);
    assert_eq!(g.command(command::ENTER, 0).errors, 0);
    let geometry = interleaved();
    let masked = [unit(0, 2), unit(0, 5), unit(1, 5)];
    check_pages(g.mem(), |at| {
        masked.contains(&geometry.unit_of(at).unwrap())
    });
    // Spot-check the interleave itself: span 2 starts at BASE + 2 * 8 MiB.
    let span2 = BASE + 16 * MIB;
    let mut b = [0u8; 1];
    g.mem().read_slice(&mut b, GuestAddress(span2)).unwrap();
    assert_eq!(b[0], POISON);
    g.mem()
        .read_slice(&mut b, GuestAddress(span2 + 4096))
        .unwrap();
    assert_eq!(b[0], page_pattern(span2 + 4096));
    assert_eq!(g.read64(offset::BYTES_LOST), 3 * 4 * MIB);
}

#[test]
fn energy_for_a_known_duration_is_the_models() {
    for temperature in [-10, 45, 63, 85, 100] {
        let mut g = Guest::new(plain(), temperature, Some(ram()));
        g.set_mask(0, 0xf0);
        g.set_mask(1, 0x01);
        let now = g.read32(offset::POWER_NOW_UW);
        let full = g.read32(offset::POWER_FULL_UW);
        assert_eq!(
            u64::from(now),
            power::self_refresh_uw(8, &[0xf0, 0x01], temperature)
        );
        assert_eq!(
            u64::from(full),
            power::self_refresh_uw(8, &[0, 0], temperature)
        );
        assert!(now < full);
        let entry = 5_000_000_123;
        let stay = 2_500_000_777;
        assert_eq!(g.command(command::ENTER, entry).errors, 0);
        assert_eq!(g.command(command::EXIT, entry + stay).errors, 0);
        let model = power::energy_nj(power::self_refresh_nw(8, &[0xf0, 0x01], temperature), stay);
        assert!(model > 0);
        assert_eq!(g.read64(offset::SR_ENERGY_NJ), model, "{temperature} C");
        assert_eq!(g.read64(offset::SR_TIME_NS), stay);
        assert_eq!(g.read32(offset::TEMPERATURE) as i32, temperature);
    }
}

#[test]
fn energy_uses_the_masks_in_force_at_entry_and_adds_up_exactly() {
    let mut g = Guest::new(plain(), 70, Some(ram()));
    let mut expected = Energy::default();
    for (i, mask) in [0x00u8, 0xff, 0x0f].into_iter().enumerate() {
        g.set_mask(0, mask);
        let t = 10_000_000_000 * (i as u64 + 1);
        assert_eq!(g.command(command::ENTER, t).errors, 0);
        assert_eq!(g.command(command::EXIT, t + 333_333_333).errors, 0);
        expected.add(power::self_refresh_nw(8, &[mask, 0], 70), 333_333_333);
    }
    assert_eq!(g.read64(offset::SR_ENERGY_NJ), expected.nanojoules());
    assert_eq!(g.read64(offset::SR_ENTRIES), 3);
    assert_eq!(g.read64(offset::SR_TIME_NS), 3 * 333_333_333);
}

#[test]
fn commands_out_of_order_are_refused_and_change_nothing() {
    let mem = ram();
    fill(&mem, BASE..BASE + 2 * DIE);
    let mut g = Guest::new(plain(), 85, Some(mem));
    let before = g.controller.registers();

    let s = g.command(command::EXIT, 10);
    assert_eq!((s.self_refresh, s.errors), (false, status::ERR_STATE));
    let s = g.command(0x7f, 20);
    assert_eq!(s.errors, status::ERR_UNKNOWN_COMMAND);
    let after = g.controller.registers();
    assert_eq!(
        (
            after.sr_entries,
            after.sr_time_ns,
            after.sr_energy_nj,
            after.bytes_lost
        ),
        (
            before.sr_entries,
            before.sr_time_ns,
            before.sr_energy_nj,
            before.bytes_lost
        )
    );

    g.set_mask(0, 0x01);
    assert_eq!(
        g.command(command::ENTER, 1_000).errors,
        0,
        "a good command clears the errors"
    );
    let lost = g.read64(offset::BYTES_LOST);
    // Entering twice: refused, nothing overwritten again, still one entry.
    let s = g.command(command::ENTER, 2_000);
    assert_eq!((s.self_refresh, s.errors), (true, status::ERR_STATE));
    assert_eq!(g.read64(offset::BYTES_LOST), lost);
    assert_eq!(g.read64(offset::SR_ENTRIES), 1);
    // Exit before entry: refused, still in self-refresh.
    let s = g.command(command::EXIT, 999);
    assert_eq!((s.self_refresh, s.errors), (true, status::ERR_TIME));
    assert_eq!(g.read64(offset::SR_TIME_NS), 0);
    // The real exit counts from the first, accepted entry.
    let s = g.command(command::EXIT, 4_000);
    assert_eq!((s.self_refresh, s.errors), (false, 0));
    assert_eq!(g.read64(offset::SR_TIME_NS), 3_000);
}

#[test]
fn masks_naming_missing_units_are_refused() {
    let mem = ram();
    fill(&mem, BASE..BASE + 2 * DIE);
    let four_banks = Geometry::new(BASE, 2, DIE, 4, UnitKind::Bank, None, MAX_BLOCK).unwrap();
    let mut g = Guest::new(four_banks, 85, Some(mem));
    // Bank 4 of a four-bank die.
    g.set_mask(0, 0b0001_0001);
    assert_eq!(
        g.command(command::ENTER, 0).errors,
        status::ERR_NO_SUCH_UNIT
    );
    // Die 2 of two.
    g.set_mask(0, 0);
    g.set_mask(2, 0x01);
    assert_eq!(
        g.command(command::ENTER, 0).errors,
        status::ERR_NO_SUCH_UNIT
    );
    // A segment mask on a bank geometry.
    g.set_mask(2, 0);
    g.write32(offset::mr17(0), 0x01);
    let s = g.command(command::ENTER, 0);
    assert_eq!(
        (s.self_refresh, s.errors),
        (false, status::ERR_NO_SUCH_UNIT)
    );
    check_pages(g.mem(), |_| false);
    assert_eq!(g.read64(offset::BYTES_LOST), 0);
    // Put right, it enters.
    g.write32(offset::mr17(0), 0);
    g.set_mask(1, 0b1000);
    assert_eq!(g.command(command::ENTER, 0).errors, 0);
    assert_eq!(g.read64(offset::BYTES_LOST), 8 * MIB);
}

#[test]
fn a_segment_geometry_takes_mr17() {
    let geometry = Geometry::new(BASE, 1, DIE, 8, UnitKind::Segment, None, MAX_BLOCK).unwrap();
    let mut g = Guest::new(geometry, 85, Some(ram()));
    assert_eq!(g.read32(offset::UNIT_KIND), 17);
    g.set_mask(0, 0x01);
    assert_eq!(
        g.command(command::ENTER, 0).errors,
        status::ERR_NO_SUCH_UNIT,
        "MR16 on segments"
    );
    g.set_mask(0, 0);
    g.write32(offset::mr17(0), 0x80);
    assert_eq!(g.command(command::ENTER, 0).errors, 0);
    assert_eq!(g.read64(offset::BYTES_LOST), 4 * MIB);
}

#[test]
fn a_masked_unit_outside_guest_ram_is_an_error_bit() {
    // RAM covers die 0 only.
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(BASE), DIE as usize)]).unwrap();
    fill(&mem, BASE..BASE + DIE);
    let mut g = Guest::new(plain(), 85, Some(mem));
    g.set_mask(0, 0x01);
    g.set_mask(1, 0x01);
    let s = g.command(command::ENTER, 0);
    assert_eq!((s.self_refresh, s.errors), (false, status::ERR_NOT_IN_RAM));
    // Die 0's bank 0, in RAM, was not overwritten either: a refused entry changes no byte.
    let mut b = vec![0u8; 4 * MIB as usize];
    g.mem().read_slice(&mut b, GuestAddress(BASE)).unwrap();
    assert!(b
        .iter()
        .enumerate()
        .all(|(i, &x)| x == page_pattern(BASE + i as u64)));
    g.set_mask(1, 0);
    assert_eq!(g.command(command::ENTER, 0).errors, 0);
}

#[test]
fn before_the_memory_table_only_an_unmasked_entry_works() {
    let mut g = Guest::new(plain(), 85, None);
    g.set_mask(0, 0x01);
    assert_eq!(g.command(command::ENTER, 0).errors, status::ERR_NOT_IN_RAM);
    g.set_mask(0, 0);
    assert_eq!(g.command(command::ENTER, 0).errors, 0);
    assert_eq!(g.command(command::EXIT, 10).errors, 0);
    assert_eq!(g.read64(offset::BYTES_LOST), 0);
}

#[test]
fn masks_are_latched_in_self_refresh() {
    let mut g = Guest::new(plain(), 85, Some(ram()));
    g.set_mask(0, 0x0f);
    assert_eq!(g.command(command::ENTER, 0).errors, 0);
    let power = g.read32(offset::POWER_NOW_UW);
    g.set_mask(0, 0xff);
    assert_eq!(
        Status::decode(g.read32(offset::STATUS)).errors,
        status::ERR_MASK_LOCKED
    );
    assert_eq!(g.read32(offset::mr16(0)), 0x0f, "the write was ignored");
    assert_eq!(g.read32(offset::POWER_NOW_UW), power);
    assert_eq!(g.command(command::EXIT, 100).errors, 0);
    g.set_mask(0, 0xff);
    assert_eq!(
        g.read32(offset::mr16(0)),
        0xff,
        "active again: masks are writable"
    );
}

#[test]
fn an_unrelated_write_does_not_run_the_last_command_again() {
    let mut g = Guest::new(plain(), 85, Some(ram()));
    assert_eq!(g.command(command::ENTER, 100).errors, 0);
    // QEMU sends COMMAND = ENTER again with each of these.
    g.write32(offset::TIMESTAMP, 200);
    g.write32(offset::TIMESTAMP + 4, 0);
    g.write32(offset::SR_ENTRIES, 77);
    let s = Status::decode(g.read32(offset::STATUS));
    assert_eq!((s.self_refresh, s.errors), (true, 0));
    assert_eq!(
        g.read64(offset::SR_ENTRIES),
        1,
        "read-only registers ignore writes"
    );
    assert_eq!(
        g.read64(offset::TIMESTAMP),
        200,
        "writable registers read back"
    );
    assert_eq!(g.command(command::EXIT, 300).errors, 0);
    assert_eq!(g.read64(offset::SR_TIME_NS), 200);
}

#[test]
fn the_sequence_may_wrap() {
    let mut g = Guest::new(plain(), 85, Some(ram()));
    g.sequence = u16::MAX - 1;
    assert_eq!(g.command(command::ENTER, 0).errors, 0); // sequence 0xffff
    assert_eq!(g.command(command::EXIT, 5).errors, 0); // sequence 0
    assert_eq!(g.read64(offset::SR_ENTRIES), 1);
    assert_eq!(g.read64(offset::SR_TIME_NS), 5);
}

#[test]
fn malformed_config_accesses_are_refused_and_survived() {
    let mut c = Controller::new(plain(), 85);
    let none: Option<&GuestMemoryMmap> = None;
    let size = CONFIG_SIZE as u32;
    assert!(c.read(0, 0).is_err());
    assert!(c.read(size, 1).is_err());
    assert!(c.read(size - 2, 4).is_err());
    assert!(c.read(u32::MAX, u32::MAX).is_err());
    assert!(c.read(4, size).is_err());
    assert_eq!(c.read(0, 4).unwrap(), b"PASR");
    assert_eq!(c.read(size - 4, 4).unwrap().len(), 4);
    let before = c.registers();
    assert!(c.write(none, size, &[1]).is_err());
    assert!(c.write(none, size - 1, &[1, 2]).is_err());
    assert!(c.write(none, u32::MAX, &[1]).is_err());
    assert!(c.write(none, 0, &[]).is_err());
    assert!(c.write(none, 0, &[0xee; CONFIG_SIZE + 1]).is_err());
    assert_eq!(c.registers(), before, "refused writes change nothing");
    // A 2-byte write into the middle of TIMESTAMP merges with the rest.
    c.write(none, offset::TIMESTAMP as u32 + 2, &[0x34, 0x12])
        .unwrap();
    assert_eq!(c.registers().timestamp_ns, 0x1234_0000);
    // A lone byte write of a new sequence runs the command it completes.
    c.write(none, offset::COMMAND as u32, &[command::ENTER])
        .unwrap();
    assert!(!c.in_self_refresh(), "the sequence did not change yet");
    c.write(none, offset::COMMAND as u32 + 2, &[9]).unwrap();
    assert!(c.in_self_refresh());
    // A block of 0xff: sequence 0xffff, opcode 0xff (unknown), every mask set.
    c.write(none, 0, &[0xff; CONFIG_SIZE]).unwrap();
    let s = Status::decode(c.registers().status);
    assert!(s.self_refresh);
    assert_eq!(
        s.errors,
        status::ERR_UNKNOWN_COMMAND | status::ERR_MASK_LOCKED
    );
}

#[test]
fn random_accesses_never_panic() {
    // A fixed LCG: the same accesses every run.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (x >> 33) as u32
    };
    let mem = ram();
    for geometry in [plain(), interleaved()] {
        let mut c = Controller::new(geometry, 60);
        for _ in 0..20_000 {
            let offset = next() % (CONFIG_SIZE as u32 + 8);
            let len = (next() % 12) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Keep the expensive path rare: most random masks are refused anyway.
            let mem = (next() % 64 == 0).then_some(&mem);
            let _ = c.write(mem, offset, &bytes);
            let _ = c.read(next() % (CONFIG_SIZE as u32 + 8), next() % 12);
            let regs = c.registers();
            assert_eq!(
                Status::decode(regs.status).self_refresh,
                c.in_self_refresh()
            );
            assert!(regs.power_now_uw <= regs.power_full_uw);
        }
    }
}

/// A fixed script: masks, entries and exits, some refused.
fn script(g: &mut Guest) -> ([u8; CONFIG_SIZE], u64) {
    let mut t = 1_000_000;
    for round in 0..4u8 {
        g.set_mask(0, round.wrapping_mul(37));
        g.set_mask(1, 0x80 >> round);
        g.command(command::ENTER, t);
        t += 123_456_789 * u64::from(round + 1);
        g.command(command::EXIT, t);
        g.command(command::EXIT, t + 1);
        t += 7_000;
    }
    let image: [u8; CONFIG_SIZE] = g
        .controller
        .read(0, CONFIG_SIZE as u32)
        .unwrap()
        .try_into()
        .unwrap();
    // A digest of the window: FNV-1a over every 64th byte and both ends of each page.
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    let mut page = vec![0u8; 4096];
    for at in (BASE..BASE + 2 * DIE).step_by(4096) {
        g.mem().read_slice(&mut page, GuestAddress(at)).unwrap();
        for &b in page.iter().step_by(64).chain(page.last()) {
            digest = (digest ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    (image, digest)
}

#[test]
fn counters_and_memory_repeat_exactly() {
    let run = || {
        let mem = ram();
        fill(&mem, BASE..BASE + 2 * DIE);
        let mut g = Guest::new(interleaved(), 77, Some(mem));
        script(&mut g)
    };
    let (first, digest) = run();
    let (second, digest2) = run();
    assert_eq!(first, second);
    assert_eq!(digest, digest2);
    assert_eq!(read_u64(&first, offset::SR_ENTRIES), 4);
    assert!(read_u64(&first, offset::SR_ENERGY_NJ) > 0);
    assert!(read_u64(&first, offset::BYTES_LOST) > 0);
}

#[test]
fn reset_returns_to_power_on() {
    let mut g = Guest::new(plain(), 85, Some(ram()));
    g.set_mask(0, 0x03);
    g.command(command::ENTER, 10);
    g.controller.reset();
    assert_eq!(
        g.controller.registers(),
        Controller::new(plain(), 85).registers()
    );
}

#[test]
fn identification_registers() {
    let mut g = Guest::new(interleaved(), -20, None);
    assert_eq!(g.read32(offset::MAGIC), monolith::pasr::regs::MAGIC);
    assert_eq!(
        g.read32(offset::VERSION),
        monolith::pasr::regs::LAYOUT_VERSION
    );
    assert_eq!(g.read32(offset::DIES), 2);
    assert_eq!(g.read32(offset::UNITS_PER_DIE), 8);
    assert_eq!(g.read32(offset::UNIT_KIND), 16);
    assert_eq!(g.read32(offset::TEMPERATURE) as i32, -20);
    let regs = Registers::decode(&g.copy).unwrap();
    assert_eq!(regs, g.controller.registers());
}
