//! The virtio-mmio transport, modern layout (virtio 1.x section 4.2.2), over a
//! register-access trait so it runs against real MMIO and against a fake alike.
//!
//! # Theory of operation
//!
//! [`Transport::probe`] accepts a window only if MagicValue reads "virt" and Version is 2;
//! a legacy (version 1, section 4.2.4) device is refused with a message saying how to get
//! the modern one from QEMU, and DeviceID 0 (an empty slot) is its own error.
//! [`Transport::negotiate`] runs the first half of the initialisation of section 3.1.1:
//! reset (and wait for Status to read 0, 2.4.1), ACKNOWLEDGE, DRIVER, read the 64 device
//! feature bits through DeviceFeaturesSel 0/1 (2.2), write the accepted subset (which
//! must include VIRTIO_F_VERSION_1, bit 32: without it a device speaks the legacy
//! interface), set FEATURES_OK and read it back: a device that clears it refused the
//! subset. Then the driver sets up its queues ([`Transport::setup_queue`], 4.2.3.2) and
//! calls [`Transport::driver_ok`]. Any failure on the way sets FAILED (2.1.2).
//!
//! Configuration space (4.2.2.2, 2.5.1): reads go through [`Transport::read_config`],
//! which repeats the caller's reads until ConfigGeneration is the same before and after,
//! so a multi-field read is never torn by a concurrent change.
//!
//! Every register is 32 bits; offsets and bit values are the spec's, and the firmware's
//! `register_structs!` block (`driver/virtio_mmio_regs.rs`) is checked against them at
//! compile time.
#![forbid(unsafe_code)]

use core::fmt;

/// Register offsets (section 4.2.2, Table "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC_VALUE: usize = 0x000;
    pub const VERSION: usize = 0x004;
    pub const DEVICE_ID: usize = 0x008;
    pub const VENDOR_ID: usize = 0x00c;
    pub const DEVICE_FEATURES: usize = 0x010;
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    pub const DRIVER_FEATURES: usize = 0x020;
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    pub const QUEUE_SEL: usize = 0x030;
    pub const QUEUE_NUM_MAX: usize = 0x034;
    pub const QUEUE_NUM: usize = 0x038;
    pub const QUEUE_READY: usize = 0x044;
    pub const QUEUE_NOTIFY: usize = 0x050;
    pub const INTERRUPT_STATUS: usize = 0x060;
    pub const INTERRUPT_ACK: usize = 0x064;
    pub const STATUS: usize = 0x070;
    pub const QUEUE_DESC_LOW: usize = 0x080;
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    pub const CONFIG_GENERATION: usize = 0x0fc;
    /// Start of the device-specific configuration space.
    pub const CONFIG: usize = 0x100;
}

/// MagicValue: "virt" little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// Version of the modern interface; 1 is legacy (4.2.4).
pub const VERSION_MODERN: u32 = 2;
pub const VERSION_LEGACY: u32 = 1;

/// Device status bits (section 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Reserved feature bits (section 6).
pub mod feature {
    /// The device conforms to virtio 1.x (not legacy).
    pub const VERSION_1: u64 = 1 << 32;
}

/// InterruptStatus bits (4.2.2).
pub mod interrupt {
    /// The device used a buffer in at least one queue.
    pub const USED_BUFFER: u32 = 1;
    /// The configuration space changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// How many times a torn configuration read is retried before giving up.
const CONFIG_RETRIES: usize = 16;
/// Reads of Status after a reset before it must read 0.
const RESET_POLLS: usize = 1000;

/// Access to one virtio-mmio register window. Control registers are 32-bit; the
/// configuration space (offsets relative to [`reg::CONFIG`]) is read with the width of the
/// field (4.2.2.2). Configuration accesses outside the window return `None`.
pub trait Registers {
    fn read32(&self, offset: usize) -> u32;
    fn write32(&self, offset: usize, value: u32);
    fn config_read8(&self, offset: usize) -> Option<u8>;
    fn config_read16(&self, offset: usize) -> Option<u16>;
    fn config_read32(&self, offset: usize) -> Option<u32>;
    fn config_write32(&self, offset: usize, value: u32) -> Option<()>;
}

/// Why the transport refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// MagicValue was not "virt".
    BadMagic(u32),
    /// A version 1 (legacy) transport.
    Legacy,
    /// A Version other than 1 or 2.
    UnknownVersion(u32),
    /// DeviceID 0: an empty slot.
    NoDevice,
    /// A device of another type than the driver expects.
    WrongDevice {
        expected: u32,
        found: u32,
    },
    /// Status did not read 0 after a reset.
    ResetStuck {
        status: u32,
    },
    /// The device does not offer VIRTIO_F_VERSION_1.
    NoVersion1 {
        offered: u64,
    },
    /// The device cleared FEATURES_OK: it does not accept these features.
    FeaturesRefused {
        accepted: u64,
    },
    /// The queue does not exist (QueueNumMax 0) or is already live.
    QueueUnavailable {
        queue: u16,
    },
    QueueAlreadyReady {
        queue: u16,
    },
    /// The configuration space kept changing under the read.
    ConfigUnstable,
    /// A configuration access outside the register window.
    ConfigOutOfRange {
        offset: usize,
    },
    /// Status has DEVICE_NEEDS_RESET (2.1.1).
    NeedsReset,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::BadMagic(m) => {
                write!(f, "no virtio-mmio transport (MagicValue {m:#x})")
            }
            TransportError::Legacy => write!(
                f,
                "legacy transport (version 1); boot with -global virtio-mmio.force-legacy=false"
            ),
            TransportError::UnknownVersion(v) => write!(f, "unknown virtio-mmio version {v}"),
            TransportError::NoDevice => write!(f, "no device in this slot (DeviceID 0)"),
            TransportError::WrongDevice { expected, found } => {
                write!(f, "device id {found}, expected {expected}")
            }
            TransportError::ResetStuck { status } => {
                write!(f, "status reads {status:#x} after reset, not 0")
            }
            TransportError::NoVersion1 { offered } => write!(
                f,
                "device does not offer VIRTIO_F_VERSION_1 (features {offered:#x})"
            ),
            TransportError::FeaturesRefused { accepted } => {
                write!(f, "device cleared FEATURES_OK for features {accepted:#x}")
            }
            TransportError::QueueUnavailable { queue } => write!(f, "queue {queue} does not exist"),
            TransportError::QueueAlreadyReady { queue } => {
                write!(f, "queue {queue} is already live")
            }
            TransportError::ConfigUnstable => write!(f, "configuration space kept changing"),
            TransportError::ConfigOutOfRange { offset } => {
                write!(f, "configuration offset {offset:#x} outside the window")
            }
            TransportError::NeedsReset => write!(f, "device set DEVICE_NEEDS_RESET"),
        }
    }
}

/// Where a queue's three parts live (physical addresses, section 2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueAddresses {
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

/// One modern virtio-mmio transport.
pub struct Transport<R: Registers> {
    regs: R,
    device_id: u32,
    vendor_id: u32,
    features: u64,
}

/// Configuration-space reader handed to [`Transport::read_config`]'s closure.
pub struct Config<'a, R: Registers>(&'a R);

impl<R: Registers> Config<'_, R> {
    pub fn u8(&self, offset: usize) -> Result<u8, TransportError> {
        self.0
            .config_read8(offset)
            .ok_or(TransportError::ConfigOutOfRange { offset })
    }
    pub fn u16(&self, offset: usize) -> Result<u16, TransportError> {
        self.0
            .config_read16(offset)
            .ok_or(TransportError::ConfigOutOfRange { offset })
    }
    pub fn u32(&self, offset: usize) -> Result<u32, TransportError> {
        self.0
            .config_read32(offset)
            .ok_or(TransportError::ConfigOutOfRange { offset })
    }
    /// A 64-bit field: two 32-bit reads, low word first (4.2.2.2).
    pub fn u64(&self, offset: usize) -> Result<u64, TransportError> {
        let low = self.u32(offset)?;
        let high = self.u32(offset + 4)?;
        Ok(u64::from(high) << 32 | u64::from(low))
    }
}

impl<R: Registers> Transport<R> {
    /// Check the window and read the device's identity (4.2.2; 4.2.3.1.1: the driver must
    /// check MagicValue and Version, and ignore a device with DeviceID 0).
    pub fn probe(regs: R) -> Result<Self, TransportError> {
        let magic = regs.read32(reg::MAGIC_VALUE);
        if magic != MAGIC {
            return Err(TransportError::BadMagic(magic));
        }
        match regs.read32(reg::VERSION) {
            VERSION_MODERN => {}
            VERSION_LEGACY => return Err(TransportError::Legacy),
            v => return Err(TransportError::UnknownVersion(v)),
        }
        let device_id = regs.read32(reg::DEVICE_ID);
        if device_id == 0 {
            return Err(TransportError::NoDevice);
        }
        let vendor_id = regs.read32(reg::VENDOR_ID);
        Ok(Transport {
            regs,
            device_id,
            vendor_id,
            features: 0,
        })
    }

    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    pub fn vendor_id(&self) -> u32 {
        self.vendor_id
    }

    /// The features accepted by the last [`Transport::negotiate`].
    pub fn features(&self) -> u64 {
        self.features
    }

    pub fn status(&self) -> u32 {
        self.regs.read32(reg::STATUS)
    }

    fn add_status(&self, bits: u32) {
        let now = self.status();
        self.regs.write32(reg::STATUS, now | bits);
    }

    /// Device reset (4.2.2 Status: writing 0; 2.4.1: wait until it reads back 0). After
    /// it the device uses no queue and no buffer.
    pub fn reset(&mut self) -> Result<(), TransportError> {
        self.regs.write32(reg::STATUS, 0);
        for _ in 0..RESET_POLLS {
            if self.status() == 0 {
                self.features = 0;
                return Ok(());
            }
        }
        Err(TransportError::ResetStuck {
            status: self.status(),
        })
    }

    /// Tell the device the driver gave up (2.1.2 FAILED).
    pub fn fail(&self) {
        self.add_status(status::FAILED);
    }

    /// The 64 feature bits the device offers (2.2; DeviceFeaturesSel selects the word).
    pub fn device_features(&self) -> u64 {
        self.regs.write32(reg::DEVICE_FEATURES_SEL, 0);
        let low = self.regs.read32(reg::DEVICE_FEATURES);
        self.regs.write32(reg::DEVICE_FEATURES_SEL, 1);
        let high = self.regs.read32(reg::DEVICE_FEATURES);
        u64::from(high) << 32 | u64::from(low)
    }

    /// Steps 1-6 of section 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.
    /// Accepts `wanted` (device-specific bits) intersected with the offer, plus
    /// VIRTIO_F_VERSION_1, which the device must offer. Returns the accepted set. On
    /// failure the device is left with FAILED set.
    pub fn negotiate(&mut self, wanted: u64) -> Result<u64, TransportError> {
        self.reset()?;
        self.add_status(status::ACKNOWLEDGE);
        self.add_status(status::DRIVER);
        let offered = self.device_features();
        if offered & feature::VERSION_1 == 0 {
            self.fail();
            return Err(TransportError::NoVersion1 { offered });
        }
        let accepted = (offered & wanted) | feature::VERSION_1;
        self.regs.write32(reg::DRIVER_FEATURES_SEL, 0);
        self.regs.write32(reg::DRIVER_FEATURES, accepted as u32);
        self.regs.write32(reg::DRIVER_FEATURES_SEL, 1);
        self.regs
            .write32(reg::DRIVER_FEATURES, (accepted >> 32) as u32);
        self.add_status(status::FEATURES_OK);
        // 3.1.1 step 6: re-read; a device that cannot work with the subset clears it.
        if self.status() & status::FEATURES_OK == 0 {
            self.fail();
            return Err(TransportError::FeaturesRefused { accepted });
        }
        self.features = accepted;
        Ok(accepted)
    }

    /// QueueNumMax of `queue` (0: no such queue).
    pub fn queue_max(&self, queue: u16) -> u32 {
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.read32(reg::QUEUE_NUM_MAX)
    }

    /// Section 4.2.3.2: select the queue, check it is not live and exists, set its size
    /// and the three addresses, then QueueReady.
    pub fn setup_queue(
        &mut self,
        queue: u16,
        size: u16,
        at: QueueAddresses,
    ) -> Result<(), TransportError> {
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        if self.regs.read32(reg::QUEUE_READY) != 0 {
            return Err(TransportError::QueueAlreadyReady { queue });
        }
        let max = self.regs.read32(reg::QUEUE_NUM_MAX);
        if max == 0 || u32::from(size) > max {
            return Err(TransportError::QueueUnavailable { queue });
        }
        self.regs.write32(reg::QUEUE_NUM, u32::from(size));
        let split = |v: u64| (v as u32, (v >> 32) as u32);
        for (low, high, addr) in [
            (reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, at.desc),
            (reg::QUEUE_DRIVER_LOW, reg::QUEUE_DRIVER_HIGH, at.driver),
            (reg::QUEUE_DEVICE_LOW, reg::QUEUE_DEVICE_HIGH, at.device),
        ] {
            let (l, h) = split(addr);
            self.regs.write32(low, l);
            self.regs.write32(high, h);
        }
        self.regs.write32(reg::QUEUE_READY, 1);
        Ok(())
    }

    /// Step 8 of 3.1.1: the driver is ready; the device may use the queues now.
    pub fn driver_ok(&self) {
        self.add_status(status::DRIVER_OK);
    }

    /// Available-buffer notification (4.2.3.3): the queue index into QueueNotify.
    pub fn notify(&self, queue: u16) {
        self.regs.write32(reg::QUEUE_NOTIFY, u32::from(queue));
    }

    /// InterruptStatus (4.2.2): [`interrupt::USED_BUFFER`], [`interrupt::CONFIG_CHANGE`].
    pub fn interrupt_status(&self) -> u32 {
        self.regs.read32(reg::INTERRUPT_STATUS)
    }

    /// Acknowledge the interrupt causes in `bits` (InterruptACK).
    pub fn ack_interrupt(&self, bits: u32) {
        self.regs.write32(reg::INTERRUPT_ACK, bits);
    }

    /// Read status and turn DEVICE_NEEDS_RESET into an error (2.1.1).
    pub fn check_needs_reset(&self) -> Result<(), TransportError> {
        if self.status() & status::DEVICE_NEEDS_RESET != 0 {
            Err(TransportError::NeedsReset)
        } else {
            Ok(())
        }
    }

    /// Run `read` over the configuration space until ConfigGeneration is unchanged across
    /// it (4.2.2, 2.5.1 "Driver Requirements: Device Configuration Space").
    pub fn read_config<T>(
        &self,
        read: impl Fn(&Config<'_, R>) -> Result<T, TransportError>,
    ) -> Result<T, TransportError> {
        for _ in 0..CONFIG_RETRIES {
            let before = self.regs.read32(reg::CONFIG_GENERATION);
            let value = read(&Config(&self.regs))?;
            if self.regs.read32(reg::CONFIG_GENERATION) == before {
                return Ok(value);
            }
        }
        Err(TransportError::ConfigUnstable)
    }

    /// Write a 32-bit configuration field (e.g. virtio-gpu `events_clear`).
    pub fn write_config32(&self, offset: usize, value: u32) -> Result<(), TransportError> {
        self.regs
            .config_write32(offset, value)
            .ok_or(TransportError::ConfigOutOfRange { offset })
    }
}
