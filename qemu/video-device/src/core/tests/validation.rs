//! Chain and wire validation: every malformed chain is answered (an error response when
//! one fits), nothing is written past a descriptor, and the device keeps working.

use monolith::virtio::video::wire::{
    cmd, ErrorCode, Header, MemEntry, Message, QueryCapability, QueueType,
};
use vm_memory::GuestAddress;

use super::harness::*;
use crate::core::{chain::MAX_REQUEST, Desc};

fn caps_request() -> Vec<u8> {
    QueryCapability {
        queue_type: QueueType::Input,
    }
    .encode(0)
}

/// The device still answers a good command.
fn still_works(t: &mut T) {
    let a = t.cmd(&caps_request());
    assert_eq!(
        a.type_(),
        monolith::virtio::video::wire::resp::OK_QUERY_CAPABILITY
    );
}

#[test]
fn a_request_split_over_several_readable_descriptors_is_accepted() {
    let mut t = T::fake();
    let req = caps_request();
    let head = t.send(&[&req[..3], &req[3..8], &req[8..]], &[4, 4, 200]);
    let a = t.take(head);
    assert_eq!(
        a.type_(),
        monolith::virtio::video::wire::resp::OK_QUERY_CAPABILITY
    );
    assert!(a.len > 8);
}

#[test]
fn unknown_type_gets_invalid_operation() {
    let mut t = T::fake();
    let mut w = monolith::virtio::video::wire::Writer::default();
    Header::new(0x1ff, 3).encode(&mut w);
    let a = t.cmd(&w.into_bytes());
    err(&a, ErrorCode::InvalidOperation);
    assert_eq!(
        Header::decode(&a.bytes).unwrap().stream_id,
        3,
        "the error names the request's stream"
    );
    still_works(&mut t);
}

#[test]
fn wrong_lengths_get_invalid_parameter() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    for bad in [
        [caps_request(), vec![0]].concat(),
        caps_request()[..12].to_vec(),
        stream_create(2)[..40].to_vec(),
        queue(1, QueueType::Input, 0, 0, 1)[..60].to_vec(),
    ] {
        err(&t.cmd(&bad), ErrorCode::InvalidParameter);
    }
    // Shorter than a header.
    err(&t.cmd(&[1, 2, 3]), ErrorCode::InvalidParameter);
    still_works(&mut t);
}

#[test]
fn bad_enumerations_get_invalid_parameter() {
    let mut t = T::fake();
    let mut req = caps_request();
    req[8] = 0x77; // queue_type
    err(&t.cmd(&req), ErrorCode::InvalidParameter);
}

fn input_resource(t: &mut T, entries: &[MemEntry], offsets: &[u32]) -> Answer {
    let (req, e) = resource_create(1, QueueType::Input, 1, offsets, entries);
    let head = t.send(&[&req, &e], &[RESP]);
    t.take(head)
}

#[test]
fn resource_create_refuses_two_entries() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let a = t.g.alloc(4096);
    let b = t.g.alloc(4096);
    err(
        &input_resource(
            &mut t,
            &[
                MemEntry {
                    addr: a.0,
                    length: 4096,
                },
                MemEntry {
                    addr: b.0,
                    length: 4096,
                },
            ],
            &[0],
        ),
        ErrorCode::InvalidParameter,
    );
    err(
        &input_resource(&mut t, &[], &[0]),
        ErrorCode::InvalidParameter,
    );
    ok(&input_resource(
        &mut t,
        &[MemEntry {
            addr: a.0,
            length: 4096,
        }],
        &[0],
    ));
}

#[test]
fn resource_create_refuses_ranges_outside_ram() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let end = RAM_BASE + RAM_SIZE as u64;
    for (addr, length) in [
        (0, 4096),            // below RAM
        (end - 100, 4096),    // straddles the end
        (end, 16),            // just past it
        (u64::MAX - 8, 4096), // wraps
        (RAM_BASE, 0),        // empty
    ] {
        err(
            &input_resource(&mut t, &[MemEntry { addr, length }], &[0]),
            ErrorCode::InvalidParameter,
        );
    }
    still_works(&mut t);
}

#[test]
fn resource_create_refuses_planes_the_entry_does_not_cover() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let a = t.g.alloc(4096);
    // Input: the data offset must lie inside the range; one plane.
    err(
        &input_resource(
            &mut t,
            &[MemEntry {
                addr: a.0,
                length: 4096,
            }],
            &[4096],
        ),
        ErrorCode::InvalidParameter,
    );
    err(
        &input_resource(
            &mut t,
            &[MemEntry {
                addr: a.0,
                length: 4096,
            }],
            &[0, 16],
        ),
        ErrorCode::InvalidParameter,
    );
    // Output, once the size is known (16x16 NV12: 256 + 128 bytes).
    let mut p = super::decode::Player::fake(monolith::virtio::video::wire::Format::Nv12);
    p.feed(
        &crate::fake_codec::nal(crate::fake_codec::NOW, 16, 16, 1),
        1,
    );
    let buf = p.t.g.alloc(4096);
    for (offsets, length) in [
        (&[0u32, 256][..], 383u32),
        (&[0, 300][..], 384),
        (&[0][..], 4096),
        (&[0, u32::MAX][..], 4096),
    ] {
        let (req, e) = resource_create(
            1,
            QueueType::Output,
            900,
            offsets,
            &[MemEntry {
                addr: buf.0,
                length,
            }],
        );
        let head = p.t.send(&[&req, &e], &[RESP]);
        err(&p.t.take(head), ErrorCode::InvalidParameter);
    }
    let (req, e) = resource_create(
        1,
        QueueType::Output,
        900,
        &[0, 256],
        &[MemEntry {
            addr: buf.0,
            length: 384,
        }],
    );
    let head = p.t.send(&[&req, &e], &[RESP]);
    ok(&p.t.take(head));
}

#[test]
fn per_plane_layout_is_refused() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let a = t.g.alloc(4096);
    let (mut req, e) = resource_create(
        1,
        QueueType::Input,
        1,
        &[0],
        &[MemEntry {
            addr: a.0,
            length: 4096,
        }],
    );
    req[16..20]
        .copy_from_slice(&monolith::virtio::video::wire::planes_layout::PER_PLANE.to_le_bytes());
    let head = t.send(&[&req, &e], &[RESP]);
    err(&t.take(head), ErrorCode::InvalidParameter);
}

#[test]
fn a_short_response_descriptor_gets_nothing_written_and_used_len_0() {
    let mut t = T::fake();
    let head = t.send(&[&caps_request()], &[16]);
    let a = t.take(head);
    assert_eq!(a.len, 0);
    // The 16 writable bytes are as the test left them (0xEE).
    let chain_desc = t.raw_chain(vec![]);
    let _ = chain_desc;
    still_works(&mut t);
    // Same for an 8-byte answer into 4 bytes.
    ok(&t.cmd(&stream_create(1)));
    let head = t.send(&[&stream_create(2)], &[4]);
    assert_eq!(t.take(head).len, 0);
    assert!(
        t.dev.stream(2).is_some(),
        "the command itself was carried out"
    );
}

#[test]
fn nothing_is_written_past_a_descriptor() {
    let mut t = T::fake();
    // A response spread over 3 writable descriptors with guard bytes between them.
    let req_addr = t.g.alloc(64);
    let req = caps_request();
    vm_memory::Bytes::write_slice(&t.g.mem, &req, req_addr).unwrap();
    let w1 = t.g.alloc(128); // 64 used, 64 guard
    let w2 = t.g.alloc(128);
    let w3 = t.g.alloc(1024);
    let chain = t.raw_chain(vec![
        Desc {
            addr: req_addr,
            len: req.len() as u32,
            writable: false,
        },
        Desc {
            addr: w1,
            len: 10,
            writable: true,
        },
        Desc {
            addr: w2,
            len: 7,
            writable: true,
        },
        Desc {
            addr: w3,
            len: 900,
            writable: true,
        },
    ]);
    let head = chain.head;
    let mem = t.g.mem.clone();
    t.dev.command(&mem, chain);
    let a = t.take(head);
    assert!(a.len > 17);
    assert!(t
        .g
        .read(GuestAddress(w1.0 + 10), 118)
        .iter()
        .all(|&b| b == 0xEE));
    assert!(t
        .g
        .read(GuestAddress(w2.0 + 7), 121)
        .iter()
        .all(|&b| b == 0xEE));
    let caps = crate::core::caps::capabilities(QueueType::Input).encode(0);
    assert_eq!(a.bytes, caps);
}

#[test]
fn readable_after_writable_gets_an_error_in_the_writable_part() {
    let mut t = T::fake();
    let req = caps_request();
    let r1 = t.g.alloc(64);
    let r2 = t.g.alloc(64);
    let w = t.g.alloc(64);
    vm_memory::Bytes::write_slice(&t.g.mem, &req, r1).unwrap();
    let chain = t.raw_chain(vec![
        Desc {
            addr: r1,
            len: 8,
            writable: false,
        },
        Desc {
            addr: w,
            len: 64,
            writable: true,
        },
        Desc {
            addr: r2,
            len: 8,
            writable: false,
        },
    ]);
    let head = chain.head;
    let mem = t.g.mem.clone();
    t.dev.command(&mem, chain);
    err(&t.take(head), ErrorCode::InvalidOperation);
    still_works(&mut t);
}

#[test]
fn chains_without_a_request_or_outside_ram_are_answered() {
    let mut t = T::fake();
    // Only writable.
    let head = t.send(&[], &[64]);
    err(&t.take(head), ErrorCode::InvalidOperation);
    // Readable descriptor outside RAM.
    let w = t.g.alloc(64);
    let chain = t.raw_chain(vec![
        Desc {
            addr: GuestAddress(0x1000),
            len: 16,
            writable: false,
        },
        Desc {
            addr: w,
            len: 64,
            writable: true,
        },
    ]);
    let head = chain.head;
    let mem = t.g.mem.clone();
    t.dev.command(&mem, chain);
    err(&t.take(head), ErrorCode::InvalidOperation);
    // Writable descriptor outside RAM: nothing written, chain returned.
    let r = t.g.alloc(64);
    vm_memory::Bytes::write_slice(&t.g.mem, &caps_request(), r).unwrap();
    let chain = t.raw_chain(vec![
        Desc {
            addr: r,
            len: 16,
            writable: false,
        },
        Desc {
            addr: GuestAddress(RAM_BASE + RAM_SIZE as u64 - 8),
            len: 512,
            writable: true,
        },
    ]);
    let head = chain.head;
    t.dev.command(&mem, chain);
    assert_eq!(t.take(head).len, 0);
    // No descriptors at all.
    let chain = t.raw_chain(vec![]);
    let head = chain.head;
    t.dev.command(&mem, chain);
    assert_eq!(t.take(head).len, 0);
    still_works(&mut t);
}

#[test]
fn a_huge_readable_part_is_refused_before_any_allocation() {
    let mut t = T::fake();
    let w = t.g.alloc(64);
    let chain = t.raw_chain(vec![
        Desc {
            addr: GuestAddress(RAM_BASE),
            len: u32::MAX,
            writable: false,
        },
        Desc {
            addr: GuestAddress(RAM_BASE),
            len: u32::MAX,
            writable: false,
        },
        Desc {
            addr: w,
            len: 64,
            writable: true,
        },
    ]);
    let head = chain.head;
    let mem = t.g.mem.clone();
    t.dev.command(&mem, chain);
    err(&t.take(head), ErrorCode::InvalidOperation);
    const { assert!(MAX_REQUEST < 1 << 20) };
}

#[test]
fn a_hostile_entry_count_is_refused() {
    let mut t = T::fake();
    ok(&t.cmd(&stream_create(1)));
    let (mut req, _) = resource_create(1, QueueType::Input, 1, &[0], &[]);
    // num_entries[0] = u32::MAX with no entries present.
    req[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
    err(&t.cmd(&req), ErrorCode::InvalidParameter);
    let _ = cmd::RESOURCE_CREATE;
    still_works(&mut t);
}
