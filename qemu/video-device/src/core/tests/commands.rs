//! Every command's happy path (and its own refusals) with the fake codec.

use monolith::virtio::video::wire::{
    self, cmd, parse_capability, ErrorCode, Format, Header, MemEntry, Message, QueryCapability,
    QueueClear, QueueType, ResourceDestroyAll, Response, StreamDestroy, StreamDrain,
};

use super::harness::*;
use crate::core::caps;
use crate::core::MAX_STREAMS;

#[test]
fn query_capability_lists_h264_in_and_two_frame_formats_out() {
    let mut t = T::fake();
    let a = t.cmd(
        &QueryCapability {
            queue_type: QueueType::Input,
        }
        .encode(0),
    );
    let Response::Ok(caps) = parse_capability(&a.bytes).unwrap() else {
        panic!()
    };
    assert_eq!(caps.descs.len(), 1);
    assert_eq!(caps.descs[0].format, Format::H264 as u32);
    assert_eq!(caps.descs[0].mask, 0b11);
    assert_eq!(
        caps.descs[0].planes_layout,
        wire::planes_layout::SINGLE_BUFFER
    );
    let a = t.cmd(
        &QueryCapability {
            queue_type: QueueType::Output,
        }
        .encode(0),
    );
    let Response::Ok(out) = parse_capability(&a.bytes).unwrap() else {
        panic!()
    };
    let formats: Vec<u32> = out.descs.iter().map(|d| d.format).collect();
    assert_eq!(formats, vec![Format::Argb8888 as u32, Format::Nv12 as u32]);
    let frame = &out.descs[1].frames[0];
    assert_eq!(
        (frame.width.min, frame.width.max, frame.width.step),
        (16, 1920, 2)
    );
    assert_eq!(
        (frame.height.min, frame.height.max, frame.height.step),
        (16, 1088, 2)
    );
    assert!(a.len as usize <= t.dev.config().max_caps_length as usize);
}

#[test]
fn config_names_the_device_and_bounds_responses() {
    let t = T::fake();
    let c = t.dev.config();
    assert_eq!(c.version, 0);
    assert_eq!(c.name(), caps::DEVICE_NAME);
    assert_eq!(c.max_resp_length as usize, wire::GetParamsResp::SIZE);
    assert_eq!(wire::Config::decode(&c.encode()).unwrap(), c);
}

#[test]
fn stream_create_and_destroy() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(7)));
    assert!(t.dev.stream(7).is_some());
    err(&t.cmd(&stream_create(7)), ErrorCode::InvalidOperation);
    ok(&t.cmd(&StreamDestroy.encode(7)));
    assert!(t.dev.stream(7).is_none());
    err(&t.cmd(&StreamDestroy.encode(7)), ErrorCode::InvalidStreamId);
}

#[test]
fn stream_create_refuses_other_codecs_and_memory_types() {
    let mut t = T::fake();
    err(
        &t.cmd(&wire::StreamCreate::new(Format::Vp8, "x").encode(1)),
        ErrorCode::InvalidParameter,
    );
    let mut create = wire::StreamCreate::new(Format::H264, "x");
    create.in_mem_type = wire::MemType::VirtioObject;
    err(&t.cmd(&create.encode(1)), ErrorCode::InvalidParameter);
}

#[test]
fn the_stream_table_is_bounded() {
    let mut t = T::fake();
    for id in 0..MAX_STREAMS as u32 {
        ok(&t.cmd(&stream_create(id)));
    }
    err(&t.cmd(&stream_create(99)), ErrorCode::OutOfMemory);
    ok(&t.cmd(&StreamDestroy.encode(3)));
    ok(&t.cmd(&stream_create(99)));
}

#[test]
fn params_input_and_output() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let p = params_of(&t.cmd(&get_params(1, QueueType::Input)));
    assert_eq!(p.format, Format::H264 as u32);
    assert_eq!(p.num_planes, 1);
    assert_eq!(
        p.plane_formats[0].plane_size,
        crate::core::stream::DEFAULT_INPUT_SIZE
    );
    let mut set = p;
    set.plane_formats[0].plane_size = 65536;
    ok(&t.cmd(&wire::SetParams { params: set }.encode(1)));
    assert_eq!(
        params_of(&t.cmd(&get_params(1, QueueType::Input))).plane_formats[0].plane_size,
        65536
    );
    set.plane_formats[0].plane_size = 16;
    err(
        &t.cmd(&wire::SetParams { params: set }.encode(1)),
        ErrorCode::InvalidParameter,
    );
    set.format = Format::Vp9 as u32;
    set.plane_formats[0].plane_size = 0;
    err(
        &t.cmd(&wire::SetParams { params: set }.encode(1)),
        ErrorCode::InvalidParameter,
    );

    let out = params_of(&t.cmd(&get_params(1, QueueType::Output)));
    assert_eq!(
        out.format,
        Format::Nv12 as u32,
        "NV12 until the driver picks"
    );
    assert_eq!(
        (out.frame_width, out.frame_height),
        (0, 0),
        "size unknown before the first picture"
    );
    ok(&t.cmd(&set_output_format(1, Format::Argb8888)));
    let out = params_of(&t.cmd(&get_params(1, QueueType::Output)));
    assert_eq!((out.format, out.num_planes), (Format::Argb8888 as u32, 1));
    err(
        &t.cmd(&set_output_format(1, Format::Yuv420)),
        ErrorCode::InvalidParameter,
    );
    err(
        &t.cmd(&get_params(2, QueueType::Output)),
        ErrorCode::InvalidStreamId,
    );
}

#[test]
fn resource_create_in_three_descriptors() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let buf = t.g.alloc(4096);
    let (req, entries) = resource_create(
        1,
        QueueType::Input,
        5,
        &[0],
        &[MemEntry {
            addr: buf.0,
            length: 4096,
        }],
    );
    let head = t.send(&[&req, &entries], &[8]);
    ok(&t.take(head));
    let (req, entries) = resource_create(
        1,
        QueueType::Input,
        5,
        &[0],
        &[MemEntry {
            addr: buf.0,
            length: 4096,
        }],
    );
    let head = t.send(&[&req, &entries], &[8]);
    err(&t.take(head), ErrorCode::InvalidResourceId);
}

#[test]
fn resource_tables_are_bounded() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let buf = t.g.alloc(4096);
    for id in 0..crate::core::resources::MAX_RESOURCES as u32 {
        let (req, e) = resource_create(
            1,
            QueueType::Input,
            id,
            &[0],
            &[MemEntry {
                addr: buf.0,
                length: 4096,
            }],
        );
        ok(&t.cmd(&[req, e].concat()));
    }
    let (req, e) = resource_create(
        1,
        QueueType::Input,
        100,
        &[0],
        &[MemEntry {
            addr: buf.0,
            length: 4096,
        }],
    );
    err(&t.cmd(&[req, e].concat()), ErrorCode::OutOfMemory);
    ok(&t.cmd(
        &ResourceDestroyAll {
            queue_type: QueueType::Input,
        }
        .encode(1),
    ));
    ok(&t.cmd(
        &[
            resource_create(
                1,
                QueueType::Input,
                100,
                &[0],
                &[MemEntry {
                    addr: buf.0,
                    length: 4096,
                }],
            )
            .0,
            wire::encode_entries(&[MemEntry {
                addr: buf.0,
                length: 4096,
            }]),
        ]
        .concat(),
    ));
}

#[test]
fn queue_refusals() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let buf = t.g.alloc(4096);
    let (req, e) = resource_create(
        1,
        QueueType::Input,
        1,
        &[0],
        &[MemEntry {
            addr: buf.0,
            length: 4096,
        }],
    );
    ok(&t.cmd(&[req, e].concat()));
    err(
        &t.cmd(&queue(1, QueueType::Input, 2, 0, 10)),
        ErrorCode::InvalidResourceId,
    );
    err(
        &t.cmd(&queue(2, QueueType::Input, 1, 0, 10)),
        ErrorCode::InvalidStreamId,
    );
    err(
        &t.cmd(&queue(1, QueueType::Input, 1, 0, 4097)),
        ErrorCode::InvalidParameter,
    );
    err(
        &t.cmd(&queue(1, QueueType::Output, 1, 0, 0)),
        ErrorCode::InvalidResourceId,
    );
    // A buffer with no NAL unit is consumed at once.
    let a = t.cmd(&queue(1, QueueType::Input, 1, 77, 0));
    assert_eq!(a.queue_resp().timestamp, 77);
    assert_eq!(a.queue_resp().flags, 0);
}

#[test]
fn controls_and_legacy_params_are_refused() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    for (type_, code) in [
        (cmd::QUERY_CONTROL, ErrorCode::UnsupportedControl),
        (cmd::GET_CONTROL, ErrorCode::UnsupportedControl),
        (cmd::SET_CONTROL, ErrorCode::UnsupportedControl),
        (cmd::GET_PARAMS, ErrorCode::InvalidOperation),
    ] {
        let mut w = wire::Writer::default();
        Header::new(type_, 1).encode(&mut w);
        w.zeros(16);
        err(&t.cmd(&w.into_bytes()), code);
    }
}

#[test]
fn drain_twice_is_an_invalid_operation() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    ok(&t.cmd(&StreamDrain.encode(1)));
    err(&t.cmd(&StreamDrain.encode(1)), ErrorCode::InvalidOperation);
    ok(&t.cmd(
        &QueueClear {
            queue_type: QueueType::Input,
        }
        .encode(1),
    ));
    ok(&t.cmd(&StreamDrain.encode(1)));
}
