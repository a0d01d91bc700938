//! The real decoder: Cisco's openh264 (through the `openh264` crate) behind
//! [`crate::codec::Decoder`].
//!
//! Single-threaded on purpose: the crate documents its decoder threading option as
//! unsafe, so each stream's decoder runs with the default (no worker threads) and every
//! call comes from the device's one vhost-user worker thread (or the `decode` command).
//! The decoder never flushes on its own (`Flush::NoFlush`): Constrained Baseline has no
//! reordering, so `decode_frame_no_delay` returns each picture as its last slice arrives,
//! and the stream's end is an explicit [`Decoder::flush`].
// Not `forbid(unsafe_code)`: the crate's decoder config marks its threading knob unsafe,
// and we only need to state that we do not call it.
#![deny(unsafe_code)]

use openh264::decoder::{DecodedYUV, Decoder as H264Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;
use openh264::OpenH264API;

use crate::codec::{CodecError, Decoder, DecoderFactory};
use crate::frame::Picture;

/// A stream's openh264 decoder.
pub struct OpenH264 {
    decoder: H264Decoder,
}

fn picture<'a>(yuv: &'a DecodedYUV<'_>) -> Picture<'a> {
    let (width, height) = yuv.dimensions();
    let (y_stride, uv_stride, _) = yuv.strides();
    Picture {
        width,
        height,
        y: yuv.y(),
        u: yuv.u(),
        v: yuv.v(),
        y_stride,
        uv_stride,
    }
}

impl OpenH264 {
    pub fn new() -> Result<Self, CodecError> {
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = H264Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError(format!("openh264 decoder: {e}")))?;
        Ok(OpenH264 { decoder })
    }
}

impl Decoder for OpenH264 {
    fn decode(&mut self, nal: &[u8], out: &mut dyn FnMut(&Picture<'_>)) -> Result<(), CodecError> {
        match self.decoder.decode(nal) {
            Ok(Some(yuv)) => out(&picture(&yuv)),
            Ok(None) => {}
            Err(e) => return Err(CodecError(format!("openh264: {e}"))),
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn FnMut(&Picture<'_>)) -> Result<(), CodecError> {
        let frames = self
            .decoder
            .flush_remaining()
            .map_err(|e| CodecError(format!("openh264 flush: {e}")))?;
        for yuv in &frames {
            out(&picture(yuv));
        }
        Ok(())
    }
}

/// Makes an [`OpenH264`] per stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenH264Factory;

impl DecoderFactory for OpenH264Factory {
    fn create(&self) -> Result<Box<dyn Decoder>, CodecError> {
        Ok(Box::new(OpenH264::new()?))
    }
}
