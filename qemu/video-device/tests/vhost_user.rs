//! End to end over the socket, with the vhost crate's front end playing QEMU: feature and
//! config negotiation, a shared memory table (a file both sides map), two vrings, a
//! kick, and the answer on the used ring; then a disconnect ends `serve`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use monolith::virtio::video::wire::{self, Message, QueryCapability, QueueType, StreamCreate};
use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const MEM: usize = 4 << 20;
const SIZE: u16 = 16;

fn desc(addr: u64, len: u32, flags: u32, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, next))
}

fn used_idx(mem: &GuestMemoryMmap, q: &MockSplitQueue<'_, GuestMemoryMmap>) -> u16 {
    mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap()
}

fn used(mem: &GuestMemoryMmap, q: &MockSplitQueue<'_, GuestMemoryMmap>, i: u64) -> (u32, u32) {
    let at = q.used_addr().0 + 4 + 8 * i;
    (
        mem.read_obj(GuestAddress(at)).unwrap(),
        mem.read_obj(GuestAddress(at + 4)).unwrap(),
    )
}

fn wait_used(mem: &GuestMemoryMmap, q: &MockSplitQueue<'_, GuestMemoryMmap>, n: u16) {
    let start = Instant::now();
    while used_idx(mem, q) < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the device did not answer"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_front_end_negotiates_kicks_and_gets_answers() {
    let dir = std::env::temp_dir().join(format!("mvd-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket: PathBuf = dir.join("video.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_monolith-video-device"))
        .args(["serve", "--socket", socket.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }

    // Guest RAM: a file both processes map shared (QEMU's memory-backend-memfd).
    let path = dir.join("ram");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(MEM as u64).unwrap();
    let fd = file.try_clone().unwrap();
    let mem: GuestMemoryMmap = GuestMemoryMmap::from_ranges_with_files([(
        GuestAddress(0),
        MEM,
        Some(FileOffset::new(file, 0)),
    )])
    .unwrap();
    let host = |gpa: u64| mem.get_host_address(GuestAddress(gpa)).unwrap() as u64;

    let mut frontend = Frontend::connect(&socket, 2).unwrap();
    frontend.set_owner().unwrap();
    let features = frontend.get_features().unwrap();
    assert_ne!(features & (1 << wire::feature::RESOURCE_GUEST_PAGES), 0);
    assert_eq!(features & (1 << wire::feature::RESOURCE_NON_CONTIG), 0);
    frontend.set_features(features).unwrap();
    let protocol = frontend.get_protocol_features().unwrap();
    assert!(protocol.contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ));
    frontend
        .set_protocol_features(
            protocol
                & (VhostUserProtocolFeatures::CONFIG
                    | VhostUserProtocolFeatures::MQ
                    | VhostUserProtocolFeatures::REPLY_ACK
                    | VhostUserProtocolFeatures::RESET_DEVICE),
        )
        .unwrap();
    assert_eq!(frontend.get_queue_num().unwrap(), 2);
    let (_, config) = frontend
        .get_config(
            0,
            wire::CONFIG_SIZE as u32,
            VhostUserConfigFlags::WRITABLE,
            &[0; wire::CONFIG_SIZE],
        )
        .unwrap();
    assert_eq!(
        wire::Config::decode(&config).unwrap().name(),
        "monolith-h264"
    );

    frontend
        .set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM as u64,
            userspace_addr: host(0),
            mmap_offset: 0,
            mmap_handle: fd.as_raw_fd(),
        }])
        .unwrap();

    let q0 = MockSplitQueue::create(&mem, GuestAddress(0), SIZE);
    let q1 = MockSplitQueue::create(&mem, GuestAddress(0x4000), SIZE);
    let mut kicks = Vec::new();
    let mut calls = Vec::new();
    for (index, q) in [&q0, &q1].into_iter().enumerate() {
        frontend.set_vring_num(index, SIZE).unwrap();
        frontend
            .set_vring_addr(
                index,
                &VringConfigData {
                    queue_max_size: SIZE,
                    queue_size: SIZE,
                    flags: 0,
                    desc_table_addr: host(q.desc_table_addr().0),
                    used_ring_addr: host(q.used_addr().0),
                    avail_ring_addr: host(q.avail_addr().0),
                    log_addr: None,
                },
            )
            .unwrap();
        frontend.set_vring_base(index, 0).unwrap();
        let call = EventFd::new(0).unwrap();
        let kick = EventFd::new(0).unwrap();
        frontend.set_vring_call(index, &call).unwrap();
        frontend.set_vring_kick(index, &kick).unwrap();
        frontend.set_vring_enable(index, true).unwrap();
        kicks.push(kick);
        calls.push(call);
    }

    // QUERY_CAPABILITY(output), request split in two descriptors.
    let req = QueryCapability {
        queue_type: QueueType::Output,
    }
    .encode(0);
    mem.write_slice(&req, GuestAddress(0x10_0000)).unwrap();
    q0.add_desc_chains(
        &[
            desc(0x10_0000, 8, VRING_DESC_F_NEXT, 1),
            desc(0x10_0008, 8, VRING_DESC_F_NEXT, 2),
            desc(0x20_0000, 1024, VRING_DESC_F_WRITE, 0),
        ],
        0,
    )
    .unwrap();
    kicks[0].write(1).unwrap();
    wait_used(&mem, &q0, 1);
    let (id, len) = used(&mem, &q0, 0);
    assert_eq!(id, 0);
    let mut resp = vec![0u8; len as usize];
    mem.read_slice(&mut resp, GuestAddress(0x20_0000)).unwrap();
    let wire::Response::Ok(caps) = wire::parse_capability(&resp).unwrap() else {
        panic!("error response {resp:x?}")
    };
    assert_eq!(caps.descs.len(), 2);
    assert_eq!(
        calls[0].read().unwrap(),
        1,
        "the device signalled the used ring"
    );

    // STREAM_CREATE, answered 0x200.
    let req = StreamCreate::new(wire::Format::H264, "e2e").encode(3);
    mem.write_slice(&req, GuestAddress(0x11_0000)).unwrap();
    q0.add_desc_chains(
        &[
            desc(0x11_0000, req.len() as u32, VRING_DESC_F_NEXT, 4),
            desc(0x21_0000, 64, VRING_DESC_F_WRITE, 0),
        ],
        3,
    )
    .unwrap();
    kicks[0].write(1).unwrap();
    wait_used(&mem, &q0, 2);
    assert_eq!(used(&mem, &q0, 1), (3, 8));
    let mut ok = [0u8; 8];
    mem.read_slice(&mut ok, GuestAddress(0x21_0000)).unwrap();
    assert_eq!(
        wire::Header::decode(&ok).unwrap().type_,
        wire::resp::OK_NODATA
    );

    // QEMU goes away: serve exits 0 and removes its socket.
    drop(frontend);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("serve did not exit after the disconnect");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}
