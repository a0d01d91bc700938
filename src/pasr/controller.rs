//! The driver core for the PASR DRAM controller (safe, host-tested): identify the model,
//! program the mode registers, enter and leave self-refresh, read the counters.
//!
//! # Theory of operation
//!
//! The registers ([`crate::pasr::regs`]) live in the controller model's virtio config
//! space; the hardware layer (`crate::driver::pasr_ctrl`) reaches them through a
//! `register_structs!` block and lends them to this core as a [`ControllerPort`], so
//! everything here runs against a fake on the host.
//!
//! - [`Controller::new`] checks MAGIC and VERSION and that the model's dies, units per die
//!   and unit kind are the device tree's ([`Geometry`]): a model that describes other DRAM
//!   than the firmware's tree would mask the wrong bytes, so it is refused.
//! - A command is: TIMESTAMP (the guest's clock, so energy repeats under `-icount`), then
//!   COMMAND with a fresh sequence number, then STATUS, whose sequence field must echo it
//!   (the command was taken) and whose error bits say why it was refused. QEMU resends the
//!   whole config space on every write, which is why the device only acts on a new sequence.
//! - Masks are written only while active (the model latches them at ENTER and refuses
//!   writes in self-refresh); only the register of the geometry's kind is used, the other
//!   stays 0.
#![forbid(unsafe_code)]

use core::fmt;

use super::geometry::{Geometry, UnitKind};
use super::regs::{self, command, status, Command, Status};

/// Everything the controller's counters say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub temperature_c: i32,
    pub sr_entries: u64,
    pub sr_time_ns: u64,
    pub sr_energy_nj: u64,
    pub bytes_lost: u64,
    pub power_now_uw: u32,
    pub power_full_uw: u32,
}

/// The identification registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub magic: u32,
    pub version: u32,
    pub dies: u32,
    pub units_per_die: u32,
    pub unit_kind: u32,
}

/// The register block as the hardware layer exposes it (named registers, no offsets).
pub trait ControllerPort {
    fn identity(&self) -> Identity;
    fn status(&self) -> u32;
    fn set_command(&self, value: u32);
    fn set_timestamp(&self, ns: u64);
    fn set_mr16(&self, die: usize, mask: u8);
    fn set_mr17(&self, die: usize, mask: u8);
    fn counters(&self) -> Counters;
}

/// Why the controller refused or could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerError {
    /// MAGIC or VERSION are not ours.
    NotAController { magic: u32, version: u32 },
    /// The model describes other DRAM than the device tree.
    GeometryMismatch {
        model: (u32, u32, u32),
        tree: (u32, u32, u32),
    },
    /// STATUS did not echo the command's sequence: the device did not take it.
    NotTaken { sequence: u16, status: u32 },
    /// The device took the command and refused it.
    Refused { what: &'static str, errors: u32 },
    /// More dies than the register block has mode registers for.
    TooManyDies(usize),
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerError::NotAController { magic, version } => write!(
                f,
                "not a PASR controller (magic {magic:#010x}, version {version}; expected {:#010x}, {})",
                regs::MAGIC,
                regs::LAYOUT_VERSION
            ),
            ControllerError::GeometryMismatch { model, tree } => write!(
                f,
                "the controller has {} dies x {} units (MR{}), the device tree {} x {} (MR{}): refusing to mask",
                model.0, model.1, model.2, tree.0, tree.1, tree.2
            ),
            ControllerError::NotTaken { sequence, status } => write!(
                f,
                "the controller did not take command {sequence} (status {status:#010x})"
            ),
            ControllerError::Refused { what, errors } => {
                write!(f, "the controller refused {what}:")?;
                let status = Status {
                    self_refresh: false,
                    errors: *errors,
                    sequence: 0,
                };
                for name in status.error_names() {
                    write!(f, " {name};")?;
                }
                Ok(())
            }
            ControllerError::TooManyDies(n) => write!(
                f,
                "{n} dies of masks, the register block has {}",
                regs::MAX_DIES
            ),
        }
    }
}

/// The controller, checked against the device tree.
pub struct Controller<P: ControllerPort> {
    port: P,
    kind: UnitKind,
    dies: usize,
    sequence: u16,
    in_self_refresh: bool,
}

impl<P: ControllerPort> Controller<P> {
    pub fn new(port: P, geometry: &Geometry) -> Result<Controller<P>, ControllerError> {
        let id = port.identity();
        if id.magic != regs::MAGIC || id.version != regs::LAYOUT_VERSION {
            return Err(ControllerError::NotAController {
                magic: id.magic,
                version: id.version,
            });
        }
        let tree = (
            geometry.dies(),
            geometry.units_per_die(),
            u32::from(geometry.kind().mode_register()),
        );
        let model = (id.dies, id.units_per_die, id.unit_kind);
        if model != tree {
            return Err(ControllerError::GeometryMismatch { model, tree });
        }
        let status = Status::decode(port.status());
        Ok(Controller {
            port,
            kind: geometry.kind(),
            dies: geometry.dies() as usize,
            // Go on from whatever the device took last, so the first command is new.
            sequence: status.sequence,
            in_self_refresh: status.self_refresh,
        })
    }

    pub fn port(&self) -> &P {
        &self.port
    }

    pub fn in_self_refresh(&self) -> bool {
        self.in_self_refresh
    }

    /// Write the mode registers of the geometry's kind: `masks[d]` for die `d` (a set bit
    /// is a unit NOT refreshed), the other kind's registers 0.
    pub fn set_masks(&mut self, masks: &[u8]) -> Result<(), ControllerError> {
        if masks.len() > regs::MAX_DIES {
            return Err(ControllerError::TooManyDies(masks.len()));
        }
        for die in 0..self.dies.max(masks.len()) {
            let mask = masks.get(die).copied().unwrap_or(0);
            match self.kind {
                UnitKind::Bank => {
                    self.port.set_mr16(die, mask);
                    self.port.set_mr17(die, 0);
                }
                UnitKind::Segment => {
                    self.port.set_mr17(die, mask);
                    self.port.set_mr16(die, 0);
                }
            }
        }
        Ok(())
    }

    /// Enter self-refresh at guest time `now_ns`: the model overwrites every masked unit.
    pub fn enter(&mut self, now_ns: u64) -> Result<(), ControllerError> {
        self.run(command::ENTER, now_ns, "self-refresh entry")?;
        self.in_self_refresh = true;
        Ok(())
    }

    /// Leave self-refresh at guest time `now_ns`.
    pub fn exit(&mut self, now_ns: u64) -> Result<(), ControllerError> {
        self.run(command::EXIT, now_ns, "self-refresh exit")?;
        self.in_self_refresh = false;
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        self.port.counters()
    }

    fn run(&mut self, opcode: u8, now_ns: u64, what: &'static str) -> Result<(), ControllerError> {
        self.sequence = self.sequence.wrapping_add(1);
        self.port.set_timestamp(now_ns);
        self.port.set_command(
            Command {
                opcode,
                sequence: self.sequence,
            }
            .encode(),
        );
        let raw = self.port.status();
        let status = Status::decode(raw);
        if status.sequence != self.sequence {
            return Err(ControllerError::NotTaken {
                sequence: self.sequence,
                status: raw,
            });
        }
        if status.errors & status::ERRORS != 0 {
            return Err(ControllerError::Refused {
                what,
                errors: status.errors,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
