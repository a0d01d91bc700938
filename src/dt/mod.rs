//! Device-tree interpretation (safe): one validated tree ([`tree`]) that every reader
//! shares, its value decoders ([`cells`]), and what the firmware reads from it: the
//! platform, reserved memory, boot arguments.
#![forbid(unsafe_code)]

pub mod bootargs;
pub mod cells;
pub mod error;
pub mod platform;
pub mod reserved;
pub mod tree;

pub use error::DtError;
pub use tree::DeviceTree;
