//! The firmware's PASR DRAM-controller instance (hardware layer): the controller model's
//! register block in its virtio-mmio config space, reached through a `register_structs!`
//! block, lent to the safe driver core ([`crate::pasr::controller`]) as its port.
//!
//! # Theory of operation
//!
//! The model is a virtio device (id [`regs::VIRTIO_ID`]) whose only interface is its
//! config space (virtio-mmio offset 0x100 on). [`probe`] finds it among the tree's
//! `virtio,mmio` slots, brings it up to DRIVER_OK on our transport (3.1.1: reset,
//! ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK, DRIVER_OK; no queue: the model has one it
//! never uses) because only then does QEMU hand the model the guest memory table it needs
//! to overwrite masked banks, and checks it against the tree's geometry. Every register
//! access is one aligned 32-bit volatile access, as virtio-mmio config space wants; QEMU
//! forwards each one to the model (GET_CONFIG / SET_CONFIG). The instance lives in a
//! [`DriverSlot`].

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use crate::pasr::controller::{Controller, ControllerError, ControllerPort, Counters, Identity};
use crate::pasr::geometry::Geometry;
use crate::pasr::regs::{self, offset};
use crate::virtio::transport::{feature, Transport, TransportError};

use super::slot::{DriverSlot, Unavailable};
use super::virtio_mmio::MmioRegisters;
use super::virtio_probe;

register_structs! {
    /// The controller's registers (`crate::pasr::regs`), from config-space offset 0.
    pub PasrRegisterBlock {
        (0x00 => magic: ReadOnly<u32>),
        (0x04 => version: ReadOnly<u32>),
        (0x08 => dies: ReadOnly<u32>),
        (0x0c => units_per_die: ReadOnly<u32>),
        (0x10 => unit_kind: ReadOnly<u32>),
        (0x14 => temperature: ReadOnly<u32>),
        (0x18 => status: ReadOnly<u32>),
        (0x1c => command: ReadWrite<u32>),
        (0x20 => timestamp_lo: ReadWrite<u32>),
        (0x24 => timestamp_hi: ReadWrite<u32>),
        /// MR16 of die d at index 2d, MR17 at 2d + 1.
        (0x28 => mode_registers: [ReadWrite<u32>; 8]),
        (0x48 => sr_entries: [ReadOnly<u32>; 2]),
        (0x50 => sr_time_ns: [ReadOnly<u32>; 2]),
        (0x58 => sr_energy_nj: [ReadOnly<u32>; 2]),
        (0x60 => bytes_lost: [ReadOnly<u32>; 2]),
        (0x68 => power_now_uw: ReadOnly<u32>),
        (0x6c => power_full_uw: ReadOnly<u32>),
        (0x70 => @END),
    }
}

// The block and the shared layout must agree register by register.
const _: () = {
    assert!(core::mem::size_of::<PasrRegisterBlock>() == regs::CONFIG_SIZE);
    assert!(core::mem::offset_of!(PasrRegisterBlock, status) == offset::STATUS);
    assert!(core::mem::offset_of!(PasrRegisterBlock, command) == offset::COMMAND);
    assert!(core::mem::offset_of!(PasrRegisterBlock, timestamp_lo) == offset::TIMESTAMP);
    assert!(core::mem::offset_of!(PasrRegisterBlock, mode_registers) == offset::mr16(0));
    assert!(offset::mr17(0) == offset::mr16(0) + 4 && offset::mr16(1) == offset::mr16(0) + 8);
    assert!(core::mem::offset_of!(PasrRegisterBlock, temperature) == offset::TEMPERATURE);
    assert!(core::mem::offset_of!(PasrRegisterBlock, sr_entries) == offset::SR_ENTRIES);
    assert!(core::mem::offset_of!(PasrRegisterBlock, sr_time_ns) == offset::SR_TIME_NS);
    assert!(core::mem::offset_of!(PasrRegisterBlock, sr_energy_nj) == offset::SR_ENERGY_NJ);
    assert!(core::mem::offset_of!(PasrRegisterBlock, bytes_lost) == offset::BYTES_LOST);
    assert!(core::mem::offset_of!(PasrRegisterBlock, power_now_uw) == offset::POWER_NOW_UW);
    assert!(core::mem::offset_of!(PasrRegisterBlock, power_full_uw) == offset::POWER_FULL_UW);
    assert!(core::mem::offset_of!(PasrRegisterBlock, unit_kind) == offset::UNIT_KIND);
};

/// Where virtio-mmio's device-specific config space starts (4.2.2).
const CONFIG_OFFSET: u64 = 0x100;

/// The register block of one controller, with its transport (kept for the reset at
/// shutdown).
pub struct MmioPort {
    /// Address of the register block (the window's base + 0x100), checked by [`bring_up`].
    block: usize,
    transport: Transport<MmioRegisters>,
}

impl MmioPort {
    fn block(&self) -> &PasrRegisterBlock {
        // Safety: `bring_up` checked that the window holds config space from offset 0x100
        // for at least CONFIG_SIZE bytes; it is identity-mapped device memory for good; the
        // block is `repr(C)` with the layout's offsets (asserted above) and volatile cells.
        unsafe { &*(self.block as *const PasrRegisterBlock) }
    }
}

fn pair(words: &[ReadOnly<u32>; 2]) -> u64 {
    // Counters change only when a command is taken, never between these two reads.
    u64::from(words[0].get()) | (u64::from(words[1].get()) << 32)
}

impl ControllerPort for MmioPort {
    fn identity(&self) -> Identity {
        Identity {
            magic: self.block().magic.get(),
            version: self.block().version.get(),
            dies: self.block().dies.get(),
            units_per_die: self.block().units_per_die.get(),
            unit_kind: self.block().unit_kind.get(),
        }
    }

    fn status(&self) -> u32 {
        self.block().status.get()
    }

    fn set_command(&self, value: u32) {
        self.block().command.set(value);
    }

    fn set_timestamp(&self, ns: u64) {
        self.block().timestamp_lo.set(ns as u32);
        self.block().timestamp_hi.set((ns >> 32) as u32);
    }

    fn set_mr16(&self, die: usize, mask: u8) {
        if let Some(register) = self.block().mode_registers.get(2 * die) {
            register.set(u32::from(mask));
        }
    }

    fn set_mr17(&self, die: usize, mask: u8) {
        if let Some(register) = self.block().mode_registers.get(2 * die + 1) {
            register.set(u32::from(mask));
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            temperature_c: self.block().temperature.get() as i32,
            sr_entries: pair(&self.block().sr_entries),
            sr_time_ns: pair(&self.block().sr_time_ns),
            sr_energy_nj: pair(&self.block().sr_energy_nj),
            bytes_lost: pair(&self.block().bytes_lost),
            power_now_uw: self.block().power_now_uw.get(),
            power_full_uw: self.block().power_full_uw.get(),
        }
    }
}

impl Drop for MmioPort {
    fn drop(&mut self) {
        let _ = self.transport.reset();
    }
}

/// The controller as the firmware runs it.
pub type PasrController = Controller<MmioPort>;

static CONTROLLER: DriverSlot<PasrController> = DriverSlot::new();

/// Why the controller could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasrCtrlError {
    /// No `virtio,mmio` slot holds the controller model.
    NoDevice,
    Busy,
    /// The slot's window cannot hold the register block.
    BadWindow {
        base: u64,
        size: u64,
    },
    Transport(TransportError),
    Controller(ControllerError),
}

impl From<Unavailable> for PasrCtrlError {
    fn from(u: Unavailable) -> Self {
        match u {
            Unavailable::NoDevice => PasrCtrlError::NoDevice,
            Unavailable::Busy => PasrCtrlError::Busy,
        }
    }
}

impl core::fmt::Display for PasrCtrlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PasrCtrlError::NoDevice => write!(
                f,
                "no PASR controller (virtio device id {}) in any virtio,mmio slot (boot --board virt-pasr)",
                regs::VIRTIO_ID
            ),
            PasrCtrlError::Busy => write!(f, "the PASR controller is busy"),
            PasrCtrlError::BadWindow { base, size } => write!(
                f,
                "PASR controller window {base:#x}+{size:#x} cannot hold its registers"
            ),
            PasrCtrlError::Transport(e) => write!(f, "PASR controller: {e}"),
            PasrCtrlError::Controller(e) => write!(f, "{e}"),
        }
    }
}

fn bring_up(geometry: &Geometry) -> Result<PasrController, PasrCtrlError> {
    let device = virtio_probe::slots_with_id(regs::VIRTIO_ID)
        .next()
        .ok_or(PasrCtrlError::NoDevice)?;
    let bad_window = PasrCtrlError::BadWindow {
        base: device.base,
        size: device.size,
    };
    if device.size < CONFIG_OFFSET + regs::CONFIG_SIZE as u64 {
        return Err(bad_window);
    }
    // Safety: `device` is one of the platform's `virtio,mmio` nodes, whose windows are in
    // `platform.mmio`, identity-mapped as device memory by the boot code for good.
    let mmio = unsafe { MmioRegisters::new(device.base, device.size) }.ok_or(bad_window)?;
    let mut transport = Transport::probe(mmio).map_err(PasrCtrlError::Transport)?;
    transport.reset().map_err(PasrCtrlError::Transport)?;
    transport
        .negotiate(feature::VERSION_1)
        .map_err(PasrCtrlError::Transport)?;
    transport.driver_ok();
    let port = MmioPort {
        block: (device.base + CONFIG_OFFSET) as usize,
        transport,
    };
    log::info!(
        "pasr: controller model at {:#x} ({} dies x {} units)",
        device.base,
        port.block().dies.get(),
        port.block().units_per_die.get()
    );
    Controller::new(port, geometry).map_err(PasrCtrlError::Controller)
}

/// Find the controller and check it against `geometry` (once; later calls return at once).
pub fn probe(geometry: &Geometry) -> Result<(), PasrCtrlError> {
    CONTROLLER.probe(|| bring_up(geometry))
}

/// Run `f` on the controller (probing first if needed).
pub fn with<R>(
    geometry: &Geometry,
    f: impl FnOnce(&mut PasrController) -> Result<R, ControllerError>,
) -> Result<R, PasrCtrlError> {
    CONTROLLER
        .with(|| bring_up(geometry), f)?
        .map_err(PasrCtrlError::Controller)
}
