//! The video wire format against the sizes checked on rust-vmm's device
//! (`shared/reference/virtio.md`): a driver and a device that share one wrong layout would
//! agree with each other and with nobody else, so sizes and offsets are pinned here.

use alloc::vec;
use alloc::vec::Vec;

use super::wire::*;

fn frame_params() -> Params {
    let mut p = Params::new(QueueType::Output, Format::Nv12);
    p.frame_width = 1280;
    p.frame_height = 720;
    p.num_planes = 2;
    p.plane_formats[0] = PlaneFormat {
        plane_size: 1280 * 720,
        stride: 1280,
    };
    p.plane_formats[1] = PlaneFormat {
        plane_size: 1280 * 360,
        stride: 1280,
    };
    p.crop = Crop {
        left: 0,
        top: 0,
        width: 1280,
        height: 720,
    };
    p
}

#[test]
fn sizes_are_those_rust_vmm_checks() {
    assert_eq!(StreamCreate::SIZE, 88);
    assert_eq!(ResourceCreate::SIZE, 88);
    assert_eq!(ResourceQueue::SIZE, 64);
    assert_eq!(SetParams::SIZE, 128);
    assert_eq!(GetParamsResp::SIZE, 128);
    assert_eq!(QueryCapability::SIZE, 16);
    assert_eq!(ResourceQueueResp::SIZE, 24);
    assert_eq!(StreamDestroy::SIZE, 8);
    assert_eq!(StreamCreate::new(Format::H264, "x").encode(1).len(), 88);
    let mut w = Writer::default();
    frame_params().encode(&mut w);
    assert_eq!(w.len(), PARAMS_SIZE);
}

#[test]
fn fields_sit_at_the_v3_offsets() {
    let q = ResourceQueue {
        queue_type: QueueType::Input,
        resource_id: 7,
        timestamp: 0x1122_3344_5566_7788,
        num_data_sizes: 1,
        data_sizes: [4096, 0, 0, 0, 0, 0, 0, 0],
    };
    let b = q.encode(3);
    assert_eq!(&b[0..4], &cmd::RESOURCE_QUEUE.to_le_bytes());
    assert_eq!(&b[4..8], &3u32.to_le_bytes());
    assert_eq!(&b[8..12], &0x100u32.to_le_bytes());
    assert_eq!(&b[12..16], &7u32.to_le_bytes());
    assert_eq!(&b[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(&b[24..28], &1u32.to_le_bytes());
    assert_eq!(&b[28..32], &4096u32.to_le_bytes());
    let p = frame_params();
    let b = SetParams { params: p }.encode(1);
    // frame_width at 8+8, num_planes at 8+44, plane 1's size at 8+48+8.
    assert_eq!(&b[16..20], &1280u32.to_le_bytes());
    assert_eq!(&b[52..56], &2u32.to_le_bytes());
    assert_eq!(&b[64..68], &(1280u32 * 360).to_le_bytes());
}

#[test]
fn every_fixed_message_round_trips() {
    let sc = StreamCreate::new(Format::H264, "clip");
    assert_eq!(StreamCreate::decode(&sc.encode(9)).unwrap(), (9, sc));
    let p = SetParams {
        params: frame_params(),
    };
    assert_eq!(SetParams::decode(&p.encode(2)).unwrap(), (2, p));
    let r = ResourceQueueResp {
        timestamp: 5,
        flags: buffer_flag::EOS,
        size: 0,
    };
    assert_eq!(ResourceQueueResp::decode(&r.encode(1)).unwrap(), (1, r));
    let c = QueueClear {
        queue_type: QueueType::Output,
    };
    assert_eq!(QueueClear::decode(&c.encode(4)).unwrap(), (4, c));
}

#[test]
fn resource_create_carries_exactly_its_entries() {
    let create = ResourceCreate {
        queue_type: QueueType::Output,
        resource_id: 1,
        planes_layout: planes_layout::SINGLE_BUFFER,
        num_planes: 2,
        plane_offsets: [0, 921_600, 0, 0, 0, 0, 0, 0],
        num_entries: [1, 0, 0, 0, 0, 0, 0, 0],
    };
    let entry = MemEntry {
        addr: 0x5000_0000,
        length: 1_382_400,
    };
    let bytes = create.encode_with_entries(1, &[entry]);
    assert_eq!(bytes.len(), 88 + 16);
    let (stream, back, entries) = ResourceCreate::decode_with_entries(&bytes).unwrap();
    assert_eq!((stream, back, entries), (1, create, vec![entry]));
    // One entry short, one too many: both refused by length.
    assert!(matches!(
        ResourceCreate::decode_with_entries(&bytes[..bytes.len() - 16]),
        Err(WireError::Length { .. })
    ));
    let mut long = bytes.clone();
    long.extend_from_slice(&encode_entries(&[entry]));
    assert!(matches!(
        ResourceCreate::decode_with_entries(&long),
        Err(WireError::Length { .. })
    ));
    // A per-plane layout counts every plane's entries.
    let per_plane = ResourceCreate {
        planes_layout: planes_layout::PER_PLANE,
        num_entries: [1, 2, 0, 0, 0, 0, 0, 0],
        ..create
    };
    assert_eq!(per_plane.entry_count(), 3);
}

#[test]
fn hostile_counts_are_refused_before_any_allocation() {
    let mut create = ResourceCreate {
        queue_type: QueueType::Input,
        resource_id: 1,
        planes_layout: planes_layout::PER_PLANE,
        num_planes: 8,
        plane_offsets: [0; MAX_PLANES],
        num_entries: [u32::MAX; MAX_PLANES],
    }
    .encode(1);
    assert!(ResourceCreate::decode_with_entries(&create).is_err());
    // num_planes 9.
    create[20..24].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(
        ResourceCreate::decode(&create),
        Err(WireError::Count {
            field: "num_planes",
            value: 9
        })
    );
    // A capability response claiming 2^32-1 descriptors in 16 bytes.
    let mut w = Writer::default();
    Header::new(resp::OK_QUERY_CAPABILITY, 0).encode(&mut w);
    w.u32(u32::MAX);
    w.u32(0);
    assert!(matches!(
        QueryCapabilityResp::decode(&w.into_bytes()),
        Err(WireError::Count {
            field: "num_descs",
            ..
        })
    ));
    // data sizes beyond the array.
    let mut q = ResourceQueue {
        queue_type: QueueType::Input,
        resource_id: 1,
        timestamp: 0,
        num_data_sizes: 1,
        data_sizes: [0; MAX_PLANES],
    }
    .encode(1);
    q[24..28].copy_from_slice(&9u32.to_le_bytes());
    assert!(matches!(
        ResourceQueue::decode(&q),
        Err(WireError::Count { .. })
    ));
}

#[test]
fn capability_response_round_trips_and_must_end_exactly() {
    let caps = QueryCapabilityResp {
        descs: vec![FormatDesc {
            mask: 0b11,
            format: Format::H264 as u32,
            planes_layout: planes_layout::SINGLE_BUFFER,
            plane_align: 1,
            frames: vec![FormatFrame {
                width: FormatRange {
                    min: 16,
                    max: 1920,
                    step: 16,
                },
                height: FormatRange {
                    min: 16,
                    max: 1088,
                    step: 16,
                },
                frame_rates: vec![FormatRange {
                    min: 1,
                    max: 60,
                    step: 1,
                }],
            }],
        }],
    };
    let bytes = caps.encode(0);
    assert_eq!(bytes.len(), 16 + 24 + 40 + 16);
    assert_eq!(QueryCapabilityResp::decode(&bytes).unwrap(), caps);
    let mut long = bytes.clone();
    long.push(0);
    assert!(QueryCapabilityResp::decode(&long).is_err());
    assert!(QueryCapabilityResp::decode(&bytes[..bytes.len() - 1]).is_err());
    assert!(caps.descs[0].frames[0].width.contains(1280));
    assert!(!caps.descs[0].frames[0].width.contains(1281));
}

#[test]
fn spec_errors_parse_as_errors_and_rust_vmm_codes_do_not_pass() {
    let err = encode_error(ErrorCode::InvalidResourceId, 1);
    assert_eq!(
        Response::<NoData>::parse(&err).unwrap(),
        Response::Error(ErrorCode::InvalidResourceId)
    );
    // rust-vmm's "invalid parameter" is 0x20A: not a success, not a spec error.
    let mut w = Writer::default();
    Header::new(0x20A, 1).encode(&mut w);
    assert_eq!(
        Response::<NoData>::parse(&w.into_bytes()),
        Err(WireError::Type {
            expected: resp::OK_NODATA,
            got: 0x20A
        })
    );
    let ok = NoData.encode(1);
    assert_eq!(
        Response::<NoData>::parse(&ok).unwrap(),
        Response::Ok(NoData)
    );
    assert_eq!(
        parse_capability(&encode_error(ErrorCode::InvalidParameter, 0)).unwrap(),
        Response::Error(ErrorCode::InvalidParameter)
    );
}

#[test]
fn requests_parse_by_type_and_refuse_garbage() {
    let q = ResourceQueue {
        queue_type: QueueType::Output,
        resource_id: 2,
        timestamp: 0,
        num_data_sizes: 0,
        data_sizes: [0; MAX_PLANES],
    };
    assert_eq!(
        Request::parse(&q.encode(5)).unwrap(),
        (5, Request::ResourceQueue(q))
    );
    assert_eq!(
        Request::parse(&StreamDrain.encode(5)).unwrap(),
        (5, Request::StreamDrain(StreamDrain))
    );
    let mut w = Writer::default();
    Header::new(cmd::SET_CONTROL, 1).encode(&mut w);
    w.u32(1);
    assert_eq!(
        Request::parse(&w.into_bytes()).unwrap(),
        (1, Request::Unsupported(cmd::SET_CONTROL))
    );
    assert_eq!(
        Request::parse(&[1, 2, 3]),
        Err(WireError::Length {
            expected: 8,
            got: 3
        })
    );
    let mut w = Writer::default();
    Header::new(0x999, 1).encode(&mut w);
    assert_eq!(
        Request::parse(&w.into_bytes()),
        Err(WireError::UnknownCommand(0x999))
    );
    // A request one byte long is refused, not zero-extended.
    let mut long: Vec<u8> = StreamDrain.encode(1);
    long.push(0);
    assert!(Request::parse(&long).is_err());
    // An unknown queue type is a field error.
    let mut bad = QueueClear {
        queue_type: QueueType::Input,
    }
    .encode(1);
    bad[8..12].copy_from_slice(&0x102u32.to_le_bytes());
    assert_eq!(
        Request::parse(&bad),
        Err(WireError::Field {
            field: "queue_type",
            value: 0x102
        })
    );
}

#[test]
fn config_and_event_round_trip() {
    let mut name = [0u8; 32];
    name[..8].copy_from_slice(b"monolith");
    let c = Config {
        version: 0,
        max_caps_length: 4096,
        max_resp_length: 512,
        device_name: name,
    };
    let bytes = c.encode();
    assert_eq!(Config::decode(&bytes).unwrap(), c);
    assert_eq!(c.name(), "monolith");
    let e = Event {
        event_type: event::DECODER_RESOLUTION_CHANGED,
        stream_id: 3,
    };
    assert_eq!(Event::decode(&e.encode()).unwrap(), e);
    assert!(Event::decode(&[0; 7]).is_err());
}

#[test]
fn params_buffer_size_sums_planes() {
    assert_eq!(frame_params().buffer_size(), Some(1280 * 720 * 3 / 2));
    let mut p = frame_params();
    p.num_planes = 9;
    assert_eq!(p.buffer_size(), None);
}
