//! The codec seam: what the protocol core needs from an H.264 decoder, so the core's
//! tests can run on a fake one and the real one ([`crate::openh264_codec`]) stays out of
//! the protocol code.
//!
//! A decoder takes one Annex-B NAL unit at a time (start code included) and passes every
//! picture that comes out to a callback while the decoder's own planes are borrowed: the
//! core converts straight from them into guest memory and copies only a picture that has
//! to wait for an output buffer.
#![forbid(unsafe_code)]

use std::fmt;

use crate::frame::Picture;

/// A decoder's complaint about the bitstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// One stream's decoder. `Send` so the device can live behind the vhost-user worker's
/// lock; it is only ever used from that one thread.
pub trait Decoder: Send {
    /// Decode one NAL unit; pictures that are ready go to `out`.
    fn decode(&mut self, nal: &[u8], out: &mut dyn FnMut(&Picture<'_>)) -> Result<(), CodecError>;
    /// End of stream: every picture still inside the decoder goes to `out`.
    fn flush(&mut self, out: &mut dyn FnMut(&Picture<'_>)) -> Result<(), CodecError>;
}

/// Makes a decoder for each new stream (and for a stream whose input is cleared).
pub trait DecoderFactory: Send {
    fn create(&self) -> Result<Box<dyn Decoder>, CodecError>;
}
