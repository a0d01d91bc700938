//! The driver core against a fake port that keeps the model's rules: a command runs only
//! on a new sequence, ENTER and EXIT alternate, masks name only units that exist.

use core::cell::{Cell, RefCell};

use super::*;
use crate::util::size::MIB;

struct FakePort {
    identity: Identity,
    status: Cell<u32>,
    timestamp: Cell<u64>,
    mr16: RefCell<[u8; regs::MAX_DIES]>,
    mr17: RefCell<[u8; regs::MAX_DIES]>,
    /// (opcode, timestamp) of every command executed.
    executed: RefCell<alloc::vec::Vec<(u8, u64)>>,
    /// A device that never answers: STATUS never changes.
    deaf: bool,
}

impl FakePort {
    fn new(dies: u32, units: u32, kind: u32) -> FakePort {
        FakePort {
            identity: Identity {
                magic: regs::MAGIC,
                version: regs::LAYOUT_VERSION,
                dies,
                units_per_die: units,
                unit_kind: kind,
            },
            status: Cell::new(Status::default_active(7)),
            timestamp: Cell::new(0),
            mr16: RefCell::new([0; regs::MAX_DIES]),
            mr17: RefCell::new([0; regs::MAX_DIES]),
            executed: RefCell::new(alloc::vec::Vec::new()),
            deaf: false,
        }
    }
}

trait ActiveStatus {
    fn default_active(sequence: u16) -> u32;
}

impl ActiveStatus for Status {
    fn default_active(sequence: u16) -> u32 {
        Status {
            self_refresh: false,
            errors: 0,
            sequence,
        }
        .encode()
    }
}

impl ControllerPort for &FakePort {
    fn identity(&self) -> Identity {
        self.identity
    }
    fn status(&self) -> u32 {
        self.status.get()
    }
    fn set_command(&self, value: u32) {
        let cmd = Command::decode(value);
        let before = Status::decode(self.status.get());
        if self.deaf || cmd.sequence == before.sequence {
            return;
        }
        let units_valid = (1u32 << self.identity.units_per_die) - 1;
        let masks_ok = (0..regs::MAX_DIES).all(|d| {
            let (m16, m17) = (self.mr16.borrow()[d], self.mr17.borrow()[d]);
            let live = d < self.identity.dies as usize;
            (u32::from(m16 | m17) & !units_valid) == 0 && (live || (m16 | m17) == 0)
        });
        let (self_refresh, errors) = match (cmd.opcode, before.self_refresh) {
            (command::ENTER, false) if masks_ok => (true, 0),
            (command::ENTER, false) => (false, status::ERR_NO_SUCH_UNIT),
            (command::EXIT, true) => (false, 0),
            (command::ENTER | command::EXIT, now) => (now, status::ERR_STATE),
            (_, now) => (now, status::ERR_UNKNOWN_COMMAND),
        };
        if errors == 0 {
            self.executed
                .borrow_mut()
                .push((cmd.opcode, self.timestamp.get()));
        }
        self.status.set(
            Status {
                self_refresh,
                errors,
                sequence: cmd.sequence,
            }
            .encode(),
        );
    }
    fn set_timestamp(&self, ns: u64) {
        self.timestamp.set(ns);
    }
    fn set_mr16(&self, die: usize, mask: u8) {
        self.mr16.borrow_mut()[die] = mask;
    }
    fn set_mr17(&self, die: usize, mask: u8) {
        self.mr17.borrow_mut()[die] = mask;
    }
    fn counters(&self) -> Counters {
        Counters {
            sr_entries: self
                .executed
                .borrow()
                .iter()
                .filter(|(op, _)| *op == command::ENTER)
                .count() as u64,
            ..Counters::default()
        }
    }
}

fn banks() -> Geometry {
    Geometry::new(0x4000_0000, 2, 512 * MIB, 8, UnitKind::Bank, None, 4 * MIB).unwrap()
}

#[test]
fn a_suspend_writes_the_masks_then_enters_and_exits_with_the_guest_clock() {
    let port = FakePort::new(2, 8, 16);
    let mut c = Controller::new(&port, &banks()).unwrap();
    c.set_masks(&[0b1111_0000, 0xff]).unwrap();
    assert_eq!(port.mr16.borrow()[..2], [0b1111_0000, 0xff]);
    assert_eq!(port.mr17.borrow()[..2], [0, 0]);
    c.enter(1_000).unwrap();
    assert!(c.in_self_refresh());
    c.exit(6_000).unwrap();
    assert!(!c.in_self_refresh());
    assert_eq!(
        port.executed.borrow().as_slice(),
        [(command::ENTER, 1_000), (command::EXIT, 6_000)]
    );
    assert_eq!(c.counters().sr_entries, 1);
    // Sequences go on from what the device took last (7), so each command is new.
    assert_eq!(Status::decode(port.status.get()).sequence, 9);
}

#[test]
fn segments_use_mr17_and_leave_mr16_clear() {
    let g = Geometry::new(
        0x4000_0000,
        2,
        512 * MIB,
        8,
        UnitKind::Segment,
        None,
        4 * MIB,
    )
    .unwrap();
    let port = FakePort::new(2, 8, 17);
    *port.mr16.borrow_mut() = [0xff; regs::MAX_DIES];
    let mut c = Controller::new(&port, &g).unwrap();
    c.set_masks(&[0x0f, 0]).unwrap();
    assert_eq!(port.mr17.borrow()[..2], [0x0f, 0]);
    assert_eq!(port.mr16.borrow()[..2], [0, 0]);
}

#[test]
fn refusals_say_why_and_leave_the_state_as_the_device_says() {
    let port = FakePort::new(2, 8, 16);
    let mut c = Controller::new(&port, &banks()).unwrap();
    let exit = c.exit(5).unwrap_err();
    assert!(matches!(exit, ControllerError::Refused { errors, .. } if errors == status::ERR_STATE));
    assert!(
        alloc::format!("{exit}").contains("command out of order"),
        "{exit}"
    );
    assert!(!c.in_self_refresh());
    c.enter(10).unwrap();
    assert!(c.enter(11).is_err(), "entering twice is refused");
    assert!(c.in_self_refresh());
    c.exit(12).unwrap();
    assert!(c.set_masks(&[0; 5]).is_err());
}

#[test]
fn a_controller_that_does_not_take_commands_is_an_error_not_a_hang() {
    let mut port = FakePort::new(2, 8, 16);
    port.deaf = true;
    let mut c = Controller::new(&port, &banks()).unwrap();
    assert!(matches!(
        c.enter(1),
        Err(ControllerError::NotTaken { sequence: 8, .. })
    ));
    assert!(!c.in_self_refresh());
}

#[test]
fn a_model_of_other_dram_or_no_model_is_refused() {
    let other = FakePort::new(2, 4, 16);
    let e = Controller::new(&other, &banks()).err().unwrap();
    assert_eq!(
        e,
        ControllerError::GeometryMismatch {
            model: (2, 4, 16),
            tree: (2, 8, 16)
        }
    );
    assert!(alloc::format!("{e}").contains("refusing to mask"));
    let mut wrong = FakePort::new(2, 8, 16);
    wrong.identity.magic = 0;
    assert!(matches!(
        Controller::new(&wrong, &banks()),
        Err(ControllerError::NotAController { .. })
    ));
}
