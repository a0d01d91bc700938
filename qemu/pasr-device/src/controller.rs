//! The controller model's core: the register block of [`monolith::pasr::regs`] and the
//! self-refresh state machine behind it. It knows nothing of vhost: the glue hands it config
//! reads and writes (offset and bytes) and the guest memory, and serves what it answers.
//!
//! # Theory of operation
//!
//! The controller is *active* or *in self-refresh*. The guest programs MR16 (bank masks) or
//! MR17 (segment masks), whichever the geometry's unit kind is, writes TIMESTAMP, and then
//! COMMAND with a new sequence number:
//!
//! - ENTER (active only): the masks must name units that exist, and every masked unit's
//!   bytes must be in guest RAM; then every byte of every masked unit is overwritten with
//!   [`POISON`] (the cells were not refreshed: what they held is gone), BYTES_LOST grows by
//!   that many bytes, SR_ENTRIES by one, and the entry time and the power of the masks in
//!   force are latched.
//! - EXIT (in self-refresh only): EXIT's timestamp minus ENTER's is added to SR_TIME_NS, and
//!   that time at the latched power to SR_ENERGY_NJ (kept exactly, in nW x ns, and shown
//!   rounded down); back to active.
//!
//! A refused command changes nothing but STATUS: its error bits (which replace the previous
//! command's) and its sequence. Masks cannot change in self-refresh (ERR_MASK_LOCKED).
//!
//! A write is applied as QEMU means it: its bytes are laid over the current register image
//! and the writable registers taken from the result, masks first, then TIMESTAMP, then
//! COMMAND, which runs only when its sequence differs from the last one taken (QEMU sends
//! the whole config space on every write, so an unrelated write carries the old COMMAND
//! again; see [`monolith::pasr::regs`]). Read-only registers in a write are ignored. An
//! access outside the block is an [`AccessError`] and changes nothing.
//!
//! Nothing here reads a host clock: every figure follows from the guest's writes, so a run
//! under `-icount` repeats bit for bit.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::Range;

use log::{info, warn};
use monolith::pasr::geometry::{Geometry, Unit, UnitKind};
use monolith::pasr::power::{self, Energy};
use monolith::pasr::regs::{
    command, status, Command, GuestWritable, Registers, Status, CONFIG_SIZE, MAX_DIES, POISON,
};
use vm_memory::GuestMemory;

use crate::ram;

/// A config access the block cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// `[offset, offset + size)` is empty or not inside the block.
    OutOfRange { offset: u32, size: u64 },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::OutOfRange { offset, size } => write!(
                f,
                "config access of {size} bytes at {offset:#x} is outside the {CONFIG_SIZE}-byte register block"
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    SelfRefresh { entered_ns: u64, power_nw: u64 },
}

/// The controller model.
#[derive(Clone, Debug)]
pub struct Controller {
    geometry: Geometry,
    temperature_c: i32,
    /// The writable registers as last written (COMMAND, TIMESTAMP, MR16/MR17).
    written: GuestWritable,
    state: State,
    /// STATUS error bits.
    errors: u32,
    /// The sequence of the last command taken.
    sequence: u16,
    entries: u64,
    time_ns: u64,
    energy: Energy,
    bytes_lost: u64,
}

impl Controller {
    /// A controller for `geometry` at `temperature_c`, active, nothing masked, counters zero.
    pub fn new(geometry: Geometry, temperature_c: i32) -> Controller {
        Controller {
            geometry,
            temperature_c,
            written: GuestWritable::default(),
            state: State::Active,
            errors: 0,
            sequence: 0,
            entries: 0,
            time_ns: 0,
            energy: Energy::default(),
            bytes_lost: 0,
        }
    }

    /// Back to the power-on state (a virtio device reset).
    pub fn reset(&mut self) {
        *self = Controller::new(self.geometry.clone(), self.temperature_c);
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub fn in_self_refresh(&self) -> bool {
        matches!(self.state, State::SelfRefresh { .. })
    }

    /// Each die's mask in the mode register of the geometry's unit kind (dies that exist).
    fn masks(&self) -> Vec<u8> {
        let masks = match self.geometry.kind() {
            UnitKind::Bank => &self.written.mr16,
            UnitKind::Segment => &self.written.mr17,
        };
        masks[..self.geometry.dies() as usize].to_vec()
    }

    fn power_uw(&self, masks: &[u8]) -> u32 {
        let uw = power::self_refresh_uw(self.geometry.units_per_die(), masks, self.temperature_c);
        u32::try_from(uw).unwrap_or(u32::MAX)
    }

    /// The register block now.
    pub fn registers(&self) -> Registers {
        let nothing_masked = vec![0; self.geometry.dies() as usize];
        Registers {
            dies: self.geometry.dies(),
            units_per_die: self.geometry.units_per_die(),
            unit_kind: u32::from(self.geometry.kind().mode_register()),
            temperature_c: self.temperature_c,
            status: Status {
                self_refresh: self.in_self_refresh(),
                errors: self.errors,
                sequence: self.sequence,
            }
            .encode(),
            command: self.written.command,
            timestamp_ns: self.written.timestamp_ns,
            mr16: self.written.mr16,
            mr17: self.written.mr17,
            sr_entries: self.entries,
            sr_time_ns: self.time_ns,
            sr_energy_nj: self.energy.nanojoules(),
            bytes_lost: self.bytes_lost,
            power_now_uw: self.power_uw(&self.masks()),
            power_full_uw: self.power_uw(&nothing_masked),
        }
    }

    fn range(offset: u32, size: u64) -> Result<Range<usize>, AccessError> {
        let start = offset as usize;
        match usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
        {
            Some(end) if size > 0 && end <= CONFIG_SIZE => Ok(start..end),
            _ => Err(AccessError::OutOfRange { offset, size }),
        }
    }

    /// `size` bytes of the block from `offset` (a GET_CONFIG).
    pub fn read(&self, offset: u32, size: u32) -> Result<Vec<u8>, AccessError> {
        let range = Self::range(offset, u64::from(size))?;
        Ok(self.registers().encode()[range].to_vec())
    }

    /// `bytes` written at `offset` (a SET_CONFIG); `mem` is the guest memory table, if QEMU
    /// has sent one.
    pub fn write<M: GuestMemory>(
        &mut self,
        mem: Option<&M>,
        offset: u32,
        bytes: &[u8],
    ) -> Result<(), AccessError> {
        let range = Self::range(offset, bytes.len() as u64)?;
        let mut image = self.registers().encode();
        image[range].copy_from_slice(bytes);
        let new = GuestWritable::from_image(&image);

        let mut lock_error = 0;
        if (new.mr16, new.mr17) != (self.written.mr16, self.written.mr17) {
            if self.in_self_refresh() {
                warn!(
                    "mode register written in self-refresh: ignored (masks are latched at ENTER)"
                );
                lock_error = status::ERR_MASK_LOCKED;
            } else {
                self.written.mr16 = new.mr16;
                self.written.mr17 = new.mr17;
            }
        }
        self.written.timestamp_ns = new.timestamp_ns;
        self.written.command = new.command;
        let cmd = Command::decode(new.command);
        if cmd.sequence != self.sequence {
            self.sequence = cmd.sequence;
            self.errors = match self.execute(cmd.opcode, mem) {
                Ok(()) => 0,
                Err(bit) => {
                    let why: Vec<_> = Status {
                        self_refresh: false,
                        errors: bit,
                        sequence: 0,
                    }
                    .error_names()
                    .collect();
                    warn!(
                        "command {:#x} (sequence {}) refused: {}",
                        cmd.opcode,
                        cmd.sequence,
                        why.join(", ")
                    );
                    bit
                }
            };
        }
        self.errors |= lock_error;
        Ok(())
    }

    /// Run one command; `Err` is the STATUS error bit that refuses it.
    fn execute<M: GuestMemory>(&mut self, opcode: u8, mem: Option<&M>) -> Result<(), u32> {
        match opcode {
            command::ENTER => self.enter(mem),
            command::EXIT => self.exit(),
            _ => Err(status::ERR_UNKNOWN_COMMAND),
        }
    }

    /// The units the masks name, or ERR_NO_SUCH_UNIT if one of them does not exist.
    fn masked_units(&self) -> Result<Vec<Unit>, u32> {
        let (used, other) = match self.geometry.kind() {
            UnitKind::Bank => (&self.written.mr16, &self.written.mr17),
            UnitKind::Segment => (&self.written.mr17, &self.written.mr16),
        };
        if other.iter().any(|&m| m != 0) {
            return Err(status::ERR_NO_SUCH_UNIT);
        }
        let units = self.geometry.units_per_die();
        let mut masked = Vec::new();
        for (die, &mask) in used.iter().enumerate().take(MAX_DIES) {
            if mask == 0 {
                continue;
            }
            if die >= self.geometry.dies() as usize || (units < 8 && mask >> units != 0) {
                return Err(status::ERR_NO_SUCH_UNIT);
            }
            masked.extend(
                (0..units)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|index| Unit {
                        die: die as u8,
                        index: index as u8,
                    }),
            );
        }
        Ok(masked)
    }

    fn enter<M: GuestMemory>(&mut self, mem: Option<&M>) -> Result<(), u32> {
        if self.in_self_refresh() {
            return Err(status::ERR_STATE);
        }
        let units = self.masked_units()?;
        let mut extents: Vec<Range<u64>> = units
            .iter()
            .flat_map(|&u| self.geometry.unit_extents(u))
            .collect();
        extents.sort_by_key(|r| r.start);
        let extents = merge(extents);
        let lost = match mem {
            _ if extents.is_empty() => 0,
            Some(mem) if ram::all_in_ram(mem, &extents) => ram::overwrite(mem, &extents, POISON)
                .map_err(|e| {
                    warn!("overwriting masked units: {e}");
                    status::ERR_NOT_IN_RAM
                })?,
            Some(_) => return Err(status::ERR_NOT_IN_RAM),
            None => {
                warn!("ENTER with units masked before QEMU sent the memory table (DRIVER_OK)");
                return Err(status::ERR_NOT_IN_RAM);
            }
        };
        let masks = self.masks();
        let power_nw =
            power::self_refresh_nw(self.geometry.units_per_die(), &masks, self.temperature_c);
        self.bytes_lost = self.bytes_lost.saturating_add(lost);
        self.entries += 1;
        self.state = State::SelfRefresh {
            entered_ns: self.written.timestamp_ns,
            power_nw,
        };
        info!(
            "self-refresh entered at {} ns: {} {}s masked, {lost} bytes overwritten, {} uW",
            self.written.timestamp_ns,
            units.len(),
            self.geometry.kind().name(),
            power_nw / 1000
        );
        Ok(())
    }

    fn exit(&mut self) -> Result<(), u32> {
        let State::SelfRefresh {
            entered_ns,
            power_nw,
        } = self.state
        else {
            return Err(status::ERR_STATE);
        };
        let Some(duration) = self.written.timestamp_ns.checked_sub(entered_ns) else {
            return Err(status::ERR_TIME);
        };
        self.time_ns = self.time_ns.saturating_add(duration);
        self.energy.add(power_nw, duration);
        self.state = State::Active;
        info!(
            "self-refresh exited at {} ns after {duration} ns: {} nJ in all",
            self.written.timestamp_ns,
            self.energy.nanojoules()
        );
        Ok(())
    }
}

/// Sorted ranges with touching or overlapping neighbours joined (an interleaved unit's
/// granules, next to its partners', become one run).
fn merge(sorted: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests;
