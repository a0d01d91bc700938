//! A fake decoder whose "NAL units" say what picture to make, so the core's tests and its
//! fuzzer need no real bitstream (and no openh264): after the start code, byte 0 is the
//! kind, then width and height (u16 LE each, clamped to the factory's `max_dim` so a
//! fuzzer cannot ask for giant pictures), a fill value and a closing `0x80` (a real NAL
//! ends in its rbsp stop bit, never in a zero byte, and the splitter relies on that).
//! - kind 0x65: a picture now; 0x66: a picture held until flush; 0x01: a decode error;
//!   anything else: no picture (like SPS/PPS).
#![forbid(unsafe_code)]

use crate::codec::{CodecError, Decoder, DecoderFactory};
use crate::frame::{chroma, OwnedPicture, Picture};

pub const NOW: u8 = 0x65;
pub const ON_FLUSH: u8 = 0x66;
pub const BROKEN: u8 = 0x01;

/// One fake NAL unit, start code included.
pub fn nal(kind: u8, w: u16, h: u16, fill: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, kind];
    v.extend_from_slice(&w.to_le_bytes());
    v.extend_from_slice(&h.to_le_bytes());
    v.push(fill);
    v.push(0x80);
    v
}

pub fn picture(w: usize, h: usize, fill: u8) -> OwnedPicture {
    OwnedPicture {
        width: w,
        height: h,
        y: vec![fill; w * h],
        u: vec![128; chroma(w) * chroma(h)],
        v: vec![fill / 2; chroma(w) * chroma(h)],
    }
}

/// Pictures a fake decoder holds until flush, at most (like a real decoder's DPB).
const MAX_DELAYED: usize = 16;

pub struct Fake {
    delayed: Vec<OwnedPicture>,
    max_dim: usize,
}

fn parse(nal: &[u8]) -> Option<(u8, usize, usize, u8)> {
    let body = nal
        .strip_prefix(&[0, 0, 0, 1][..])
        .or_else(|| nal.strip_prefix(&[0, 0, 1][..]))?;
    match body {
        [kind, w0, w1, h0, h1, fill, ..] => Some((
            *kind,
            usize::from(u16::from_le_bytes([*w0, *w1])),
            usize::from(u16::from_le_bytes([*h0, *h1])),
            *fill,
        )),
        _ => None,
    }
}

impl Decoder for Fake {
    fn decode(&mut self, nal: &[u8], out: &mut dyn FnMut(&Picture<'_>)) -> Result<(), CodecError> {
        let (m, n) = (self.max_dim, self.max_dim);
        match parse(nal) {
            Some((NOW, w, h, fill)) => out(&picture(w.min(m), h.min(n), fill).as_picture()),
            Some((ON_FLUSH, w, h, fill)) if self.delayed.len() < MAX_DELAYED => {
                self.delayed.push(picture(w.min(m), h.min(n), fill))
            }
            Some((BROKEN, ..)) => return Err(CodecError("fake: broken NAL".into())),
            _ => {}
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn FnMut(&Picture<'_>)) -> Result<(), CodecError> {
        for p in self.delayed.drain(..) {
            out(&p.as_picture());
        }
        Ok(())
    }
}

/// Makes fakes whose pictures are at most `max_dim` pixels wide and high.
pub struct FakeFactory {
    pub max_dim: usize,
}

impl Default for FakeFactory {
    fn default() -> Self {
        FakeFactory {
            max_dim: usize::from(u16::MAX),
        }
    }
}

impl DecoderFactory for FakeFactory {
    fn create(&self) -> Result<Box<dyn Decoder>, CodecError> {
        Ok(Box::new(Fake {
            delayed: Vec::new(),
            max_dim: self.max_dim,
        }))
    }
}
