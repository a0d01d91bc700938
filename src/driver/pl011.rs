//! ARM PrimeCell UART (PL011), as on QEMU `virt`.
//!
//! Theory of operation: transmit is polled (wait while UARTFR.TXFF, then write UARTDR):
//! output must work from any context, including a fault dump with interrupts masked, and
//! a console is never fast enough for TX interrupts to matter. Receive is interrupt
//! driven: RX (FIFO at its trigger level) and RT (receive timeout: bytes sitting below the
//! trigger level) interrupts call [`Pl011::drain_rx`], which empties the FIFO into a
//! single-producer/single-consumer ring that [`crate::console`] reads. The ring is made of
//! atomics, so the IRQ side and the thread side need no lock; when it is full new bytes
//! are dropped and counted, as a terminal would drop typed-ahead input.
//!
//! Why not `heapless::spsc::Queue`: its `enqueue`/`dequeue` take `&mut` (the queue, or a
//! `Producer`/`Consumer` split from a `&'static mut` one), so sharing it between a `fn()`
//! IRQ handler and the reader needs a `static mut` plus unsafe, or a lock around each end;
//! [`ByteRing`] works through `&self` on a plain `static` with no unsafe and no lock. Its
//! capacity is also `N - 1`, so keeping exactly [`RX_RING_SIZE`] bytes would take a
//! non-power-of-two `N`, and the drop counter would still be ours.
//!
//! Register names follow the PL011 Technical Reference Manual (ARM DDI 0183).

// Register fields keep the datasheet names (UARTDR, GICD_CTLR, ...).
#![allow(non_snake_case)]

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    UARTDR [
        DATA OFFSET(0) NUMBITS(8) [],
        FE OFFSET(8) NUMBITS(1) [],
        PE OFFSET(9) NUMBITS(1) [],
        BE OFFSET(10) NUMBITS(1) [],
        OE OFFSET(11) NUMBITS(1) []
    ],
    UARTFR [
        BUSY OFFSET(3) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFF OFFSET(6) NUMBITS(1) [],
        TXFE OFFSET(7) NUMBITS(1) []
    ],
    UARTIBRD [
        BAUD_DIVINT OFFSET(0) NUMBITS(16) []
    ],
    UARTFBRD [
        BAUD_DIVFRAC OFFSET(0) NUMBITS(6) []
    ],
    UARTLCR_H [
        BRK OFFSET(0) NUMBITS(1) [],
        PEN OFFSET(1) NUMBITS(1) [],
        STP2 OFFSET(3) NUMBITS(1) [],
        FEN OFFSET(4) NUMBITS(1) [],
        WLEN OFFSET(5) NUMBITS(2) [
            FiveBit = 0b00,
            SixBit = 0b01,
            SevenBit = 0b10,
            EightBit = 0b11
        ]
    ],
    UARTCR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        RXE OFFSET(9) NUMBITS(1) []
    ],
    UARTIFLS [
        TXIFLSEL OFFSET(0) NUMBITS(3) [
            OneEighth = 0b000,
            OneHalf = 0b010
        ],
        RXIFLSEL OFFSET(3) NUMBITS(3) [
            OneEighth = 0b000,
            OneHalf = 0b010
        ]
    ],
    /// Shared layout of UARTIMSC, UARTRIS, UARTMIS and UARTICR.
    UARTINT [
        RXIM OFFSET(4) NUMBITS(1) [],
        TXIM OFFSET(5) NUMBITS(1) [],
        RTIM OFFSET(6) NUMBITS(1) [],
        FEIM OFFSET(7) NUMBITS(1) [],
        PEIM OFFSET(8) NUMBITS(1) [],
        BEIM OFFSET(9) NUMBITS(1) [],
        OEIM OFFSET(10) NUMBITS(1) [],
        ALL OFFSET(0) NUMBITS(11) []
    ]
}

register_structs! {
    pub Pl011Registers {
        (0x000 => UARTDR: ReadWrite<u32, UARTDR::Register>),
        (0x004 => UARTRSR_UARTECR: ReadWrite<u32>),
        (0x008 => _reserved0),
        (0x018 => UARTFR: ReadOnly<u32, UARTFR::Register>),
        (0x01c => _reserved1),
        (0x020 => UARTILPR: ReadWrite<u32>),
        (0x024 => UARTIBRD: ReadWrite<u32, UARTIBRD::Register>),
        (0x028 => UARTFBRD: ReadWrite<u32, UARTFBRD::Register>),
        (0x02c => UARTLCR_H: ReadWrite<u32, UARTLCR_H::Register>),
        (0x030 => UARTCR: ReadWrite<u32, UARTCR::Register>),
        (0x034 => UARTIFLS: ReadWrite<u32, UARTIFLS::Register>),
        (0x038 => UARTIMSC: ReadWrite<u32, UARTINT::Register>),
        (0x03c => UARTRIS: ReadOnly<u32, UARTINT::Register>),
        (0x040 => UARTMIS: ReadOnly<u32, UARTINT::Register>),
        (0x044 => UARTICR: WriteOnly<u32, UARTINT::Register>),
        (0x048 => UARTDMACR: ReadWrite<u32>),
        (0x04c => @END),
    }
}

/// UARTCLK on QEMU `virt` (the `apb-pclk` fixed clock) when the tree does not say.
pub const DEFAULT_UARTCLK_HZ: u32 = 24_000_000;
pub const BAUD_RATE: u32 = 115_200;
/// Upper bound on polling loops (TX FIFO space, BUSY): a stuck or absent UART must not
/// hang the firmware; losing a byte is the lesser evil.
const SPIN_LIMIT: u32 = 1_000_000;

/// Received bytes waiting for a reader.
pub const RX_RING_SIZE: usize = 1024;

/// Lock-free single-producer (IRQ handler) / single-consumer (reader) byte ring.
pub struct ByteRing {
    bytes: [AtomicU8; RX_RING_SIZE],
    /// Total bytes ever written; only the producer stores it.
    head: AtomicUsize,
    /// Total bytes ever read; only the consumer stores it.
    tail: AtomicUsize,
    dropped: AtomicUsize,
}

impl ByteRing {
    pub const fn new() -> Self {
        ByteRing {
            bytes: [const { AtomicU8::new(0) }; RX_RING_SIZE],
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    /// Producer side. Returns false (and counts) when the ring is full.
    pub fn push(&self, byte: u8) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) >= RX_RING_SIZE {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.bytes[head % RX_RING_SIZE].store(byte, Ordering::Relaxed);
        // Release: the byte is visible before the consumer sees the new head.
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer side.
    pub fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if tail == head {
            return None;
        }
        let byte = self.bytes[tail % RX_RING_SIZE].load(Ordering::Relaxed);
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(byte)
    }

    pub fn len(&self) -> usize {
        self.head
            .load(Ordering::Acquire)
            .wrapping_sub(self.tail.load(Ordering::Acquire))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Default for ByteRing {
    fn default() -> Self {
        Self::new()
    }
}

/// Receive errors reported in UARTDR (framing, parity, break, overrun).
static RX_ERRORS: AtomicUsize = AtomicUsize::new(0);

pub fn rx_errors() -> usize {
    RX_ERRORS.load(Ordering::Relaxed)
}

/// A PL011 at a known physical base, identity-mapped as device memory (or MMU off).
#[derive(Clone, Copy)]
pub struct Pl011 {
    regs: &'static Pl011Registers,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the (identity-mapped) address of a PL011 register block that stays
    /// mapped for the rest of the run.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 {
            // Safety: the caller guarantees a PL011 register block lives at `base`;
            // `Pl011Registers` is `repr(C)` with the datasheet offsets and its fields are
            // volatile cells, so shared references are sound.
            regs: unsafe { &*(base as *const Pl011Registers) },
        }
    }

    /// 8N1 at [`BAUD_RATE`], FIFOs on, RX and RX-timeout interrupts unmasked.
    pub fn init(&self, uartclk_hz: u32) {
        let regs = self.regs;
        // Let the early console's last bytes leave before reprogramming the line.
        self.flush();
        regs.UARTCR.set(0);
        // Clearing FEN flushes the transmit FIFO, as the TRM's programming sequence asks.
        regs.UARTLCR_H.modify(UARTLCR_H::FEN::CLEAR);
        // Divisor in 1/64ths, rounded: BAUDDIV = UARTCLK / (16 * baud).
        let div64 = (4 * u64::from(uartclk_hz) + u64::from(BAUD_RATE) / 2) / u64::from(BAUD_RATE);
        regs.UARTIBRD
            .write(UARTIBRD::BAUD_DIVINT.val(((div64 >> 6) as u32).clamp(1, 0xffff)));
        regs.UARTFBRD
            .write(UARTFBRD::BAUD_DIVFRAC.val((div64 & 0x3f) as u32));
        // UARTLCR_H must be written after the divisors: that write latches them.
        regs.UARTLCR_H
            .write(UARTLCR_H::WLEN::EightBit + UARTLCR_H::FEN::SET);
        regs.UARTIFLS
            .write(UARTIFLS::RXIFLSEL::OneEighth + UARTIFLS::TXIFLSEL::OneHalf);
        regs.UARTDMACR.set(0);
        regs.UARTICR.write(UARTINT::ALL.val(0x7ff));
        regs.UARTIMSC
            .write(UARTINT::RXIM::SET + UARTINT::RTIM::SET + UARTINT::OEIM::SET);
        regs.UARTCR
            .write(UARTCR::UARTEN::SET + UARTCR::TXE::SET + UARTCR::RXE::SET);
    }

    /// Blocking transmit of one byte (bounded wait for FIFO space).
    pub fn write_byte(&self, byte: u8) {
        let mut spins = 0;
        while self.regs.UARTFR.is_set(UARTFR::TXFF) && spins < SPIN_LIMIT {
            core::hint::spin_loop();
            spins += 1;
        }
        self.regs.UARTDR.set(u32::from(byte));
    }

    /// Wait until everything queued has left the shift register.
    pub fn flush(&self) {
        let mut spins = 0;
        while self.regs.UARTFR.is_set(UARTFR::BUSY) && spins < SPIN_LIMIT {
            core::hint::spin_loop();
            spins += 1;
        }
    }

    /// One byte from the receive FIFO, if any (polling; for use before interrupts).
    pub fn try_read_byte(&self) -> Option<u8> {
        if self.regs.UARTFR.is_set(UARTFR::RXFE) {
            return None;
        }
        let word = self.regs.UARTDR.extract();
        if word.matches_any(&[
            UARTDR::FE::SET,
            UARTDR::PE::SET,
            UARTDR::BE::SET,
            UARTDR::OE::SET,
        ]) {
            RX_ERRORS.fetch_add(1, Ordering::Relaxed);
            self.regs.UARTRSR_UARTECR.set(0);
            if !word.is_set(UARTDR::OE) {
                // The byte itself is damaged; an overrun only means earlier bytes were lost.
                return None;
            }
        }
        Some(word.read(UARTDR::DATA) as u8)
    }

    /// Interrupt handler body: move every received byte into `ring`, then acknowledge.
    pub fn drain_rx(&self, ring: &ByteRing) {
        // Acknowledge before draining, never after: a byte that lands between the last
        // FIFO read and a late clear would have its interrupt wiped while it sits in the
        // FIFO, and (QEMU raises RX when the FIFO goes from empty to one byte) input would
        // stall for good. Cleared first, such a byte is either drained by the loop below or
        // raises a fresh interrupt. Reading the FIFO empty clears RX; RT and OE need this.
        self.regs
            .UARTICR
            .write(UARTINT::RXIM::SET + UARTINT::RTIM::SET + UARTINT::OEIM::SET);
        while !self.regs.UARTFR.is_set(UARTFR::RXFE) {
            if let Some(byte) = self.try_read_byte() {
                ring.push(byte);
            }
        }
    }
}
