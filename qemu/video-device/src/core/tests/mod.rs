//! Unit tests of the protocol core on a `GuestMemoryMmap`, with a fake codec
//! ([`crate::fake_codec`]) or the real one. [`harness`] plays the driver: it lays chains out in guest
//! memory, hands them to the device and reads back what the device wrote.

mod commands;
mod decode;
mod faults;
mod harness;
mod validation;
