//! What the device says about itself: the configuration space, the QUERY_CAPABILITY
//! answers, and the default parameters of a new stream's queues.
//!
//! Input: H.264 in one buffer. Output: ARGB8888 and NV12, one buffer each (planes at their
//! offsets), 16..=1920 x 16..=1088 in steps of 2 (openh264 decodes any size a level allows;
//! the range is what the device promises and tests), 1..=60 frames per second. Every
//! descriptor's `mask` names the formats of the other queue it works with: all of them.
#![forbid(unsafe_code)]

use monolith::virtio::video::wire::{
    planes_layout, Config, Format, FormatDesc, FormatFrame, FormatRange, GetParamsResp, Message,
    QueryCapabilityResp, QueueType,
};

/// The configuration space's device name.
pub const DEVICE_NAME: &str = "monolith-h264";

/// Decoded sizes the device accepts.
pub const WIDTH: FormatRange = FormatRange {
    min: 16,
    max: 1920,
    step: 2,
};
pub const HEIGHT: FormatRange = FormatRange {
    min: 16,
    max: 1088,
    step: 2,
};

fn frame() -> FormatFrame {
    FormatFrame {
        width: WIDTH,
        height: HEIGHT,
        frame_rates: vec![FormatRange {
            min: 1,
            max: 60,
            step: 1,
        }],
    }
}

fn desc(format: Format, other_formats: u32) -> FormatDesc {
    FormatDesc {
        mask: (1u64 << other_formats) - 1,
        format: format as u32,
        planes_layout: planes_layout::SINGLE_BUFFER,
        plane_align: 1,
        frames: vec![frame()],
    }
}

/// The QUERY_CAPABILITY answer for one queue.
pub fn capabilities(queue: QueueType) -> QueryCapabilityResp {
    match queue {
        QueueType::Input => QueryCapabilityResp {
            descs: vec![desc(Format::H264, 2)],
        },
        QueueType::Output => QueryCapabilityResp {
            descs: vec![desc(Format::Argb8888, 1), desc(Format::Nv12, 1)],
        },
    }
}

/// `struct virtio_video_config`: the largest answers, so the driver sizes its buffers.
pub fn config() -> Config {
    let caps = [QueueType::Input, QueueType::Output]
        .into_iter()
        .map(|q| capabilities(q).encode(0).len())
        .max()
        .unwrap_or(0);
    let mut device_name = [0u8; 32];
    device_name[..DEVICE_NAME.len()].copy_from_slice(DEVICE_NAME.as_bytes());
    Config {
        version: 0,
        max_caps_length: caps as u32,
        max_resp_length: GetParamsResp::SIZE as u32,
        device_name,
    }
}
