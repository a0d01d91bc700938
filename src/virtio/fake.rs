//! A fake virtio-mmio device over fake DMA memory, so the transport, the queue, the
//! request helper and every driver run as host tests.
//!
//! # Theory of operation
//!
//! One [`Fake`] holds all the state: the register file of a modern virtio-mmio transport,
//! [`FakeMemory`] (pages at made-up physical addresses, which is where the driver's rings
//! and buffers live), and a device model ([`FakeDevice`]) that turns one request's bytes
//! into response bytes. [`FakeHal`] and [`FakeRegs`] are the driver's two views of it.
//!
//! The device is the driver's peer, not a mirror of it: it walks the available ring and
//! the descriptor chains from memory with the physical addresses it was given, the way a
//! device does, and writes used elements back. It runs when the driver waits
//! ([`Hal::wait_for_interrupt`]), each wait advancing the fake clock by 1 ms, so "not yet
//! answered" and timeouts are testable. It checks the driver's side of the protocol (the
//! status sequence of 3.1.1, queue set-up rules, readable-before-writable chains,
//! notifications only when live) and records every breach in [`Fake::violations`], which
//! tests assert empty. [`Misbehaviour`] makes it lie in the used ring, go silent or set
//! DEVICE_NEEDS_RESET.
//!
//! Deferred completion: a model sees each chain through [`FakeDevice::chain`] with a
//! [`ChainId`] and may answer [`Reply::Hold`]; the fake then keeps the chain's writable
//! buffers, and the model answers it later from [`FakeDevice::completions`], which runs
//! after every chain it is handed and on every device run (so a model can post to an
//! event queue whose buffers it holds). Every chain's shape (queue, readable and
//! writable descriptor lengths) is recorded in [`Fake::shapes`].
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{RefCell, RefMut};

use super::hal::{Barrier, DmaRegion, Hal, HalError};
use super::transport::{feature, reg, status, Registers, MAGIC, VERSION_MODERN};
use crate::util::size::PAGE_SIZE;

const PAGE: usize = PAGE_SIZE as usize;

/// Pages at fake physical addresses.
#[derive(Debug, Default)]
pub struct FakeMemory {
    regions: BTreeMap<u64, Vec<u8>>,
    next_paddr: u64,
    /// Refuse allocations once this many pages are out.
    pub limit_pages: Option<usize>,
}

impl FakeMemory {
    fn new() -> Self {
        FakeMemory {
            regions: BTreeMap::new(),
            next_paddr: 0x4800_0000,
            limit_pages: None,
        }
    }

    /// Pages handed out and not freed.
    pub fn outstanding_pages(&self) -> usize {
        self.regions.values().map(|r| r.len() / PAGE).sum()
    }

    fn alloc(&mut self, pages: usize) -> Result<u64, HalError> {
        if pages == 0
            || self
                .limit_pages
                .is_some_and(|l| self.outstanding_pages() + pages > l)
        {
            return Err(HalError::OutOfMemory { pages });
        }
        let paddr = self.next_paddr;
        // A gap page between regions, so an overrun never lands in a neighbour.
        self.next_paddr += ((pages + 1) * PAGE) as u64;
        self.regions.insert(paddr, vec![0; pages * PAGE]);
        Ok(paddr)
    }

    fn locate(&self, paddr: u64, len: usize) -> Option<(u64, usize)> {
        let (&base, bytes) = self.regions.range(..=paddr).next_back()?;
        let offset = usize::try_from(paddr - base).ok()?;
        (offset.checked_add(len)? <= bytes.len()).then_some((base, offset))
    }

    /// What the device reads at a physical address (`None`: not memory we handed out).
    pub fn read_phys(&self, paddr: u64, len: usize) -> Option<Vec<u8>> {
        let (base, offset) = self.locate(paddr, len)?;
        Some(self.regions[&base][offset..offset + len].to_vec())
    }

    pub fn write_phys(&mut self, paddr: u64, data: &[u8]) -> Option<()> {
        let (base, offset) = self.locate(paddr, data.len())?;
        self.regions.get_mut(&base)?[offset..offset + data.len()].copy_from_slice(data);
        Some(())
    }

    fn u16_at(&self, paddr: u64) -> Option<u16> {
        let b = self.read_phys(paddr, 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }
}

/// Names one chain the fake handed to its model, unique for the fake's life.
pub type ChainId = u64;

/// One chain as the model sees it.
#[derive(Debug)]
pub struct Chain<'a> {
    pub id: ChainId,
    pub queue: u16,
    /// The readable descriptors' bytes, concatenated.
    pub request: &'a [u8],
    /// Bytes of writable space the chain offers.
    pub writable: u32,
}

/// What a model does with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer now with these bytes.
    Now(Vec<u8>),
    /// Keep it; answer later through [`FakeDevice::completions`].
    Hold,
}

/// Queue, readable lengths and writable lengths of one chain, in descriptor order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainShape {
    pub queue: u16,
    pub readable: Vec<u32>,
    pub writable: Vec<u32>,
}

/// A device model: one request's readable bytes in, the response bytes out.
pub trait FakeDevice {
    fn handle(&mut self, queue: u16, request: &[u8]) -> Vec<u8>;
    /// A chain; by default answered at once by [`FakeDevice::handle`].
    fn chain(&mut self, chain: &Chain) -> Reply {
        Reply::Now(self.handle(chain.queue, chain.request))
    }
    /// Held chains the model answers now, in the order the device uses them.
    fn completions(&mut self) -> Vec<(ChainId, Vec<u8>)> {
        Vec::new()
    }
    /// The transport was reset: forget everything, as a device does.
    fn reset(&mut self) {}
}

impl<T: FakeDevice> FakeDevice for Rc<RefCell<T>> {
    fn handle(&mut self, queue: u16, request: &[u8]) -> Vec<u8> {
        self.borrow_mut().handle(queue, request)
    }
    fn chain(&mut self, chain: &Chain) -> Reply {
        self.borrow_mut().chain(chain)
    }
    fn completions(&mut self) -> Vec<(ChainId, Vec<u8>)> {
        self.borrow_mut().completions()
    }
    fn reset(&mut self) {
        self.borrow_mut().reset();
    }
}

/// A device that answers every request with its own bytes (for queue tests).
pub struct Echo;

impl FakeDevice for Echo {
    fn handle(&mut self, _queue: u16, request: &[u8]) -> Vec<u8> {
        request.to_vec()
    }
}

/// A device that echoes chains whose request starts with `b'H'` only when told to
/// ([`Deferred::release`]), holds every chain of queue 1 as an event buffer
/// ([`Deferred::post`] fills the oldest), and echoes everything else at once.
#[derive(Debug, Default)]
pub struct Deferred {
    /// Held request chains: id and request bytes.
    pub held: Vec<(ChainId, Vec<u8>)>,
    /// Posted event buffers, oldest first.
    pub events: Vec<ChainId>,
    ready: Vec<(ChainId, Vec<u8>)>,
}

impl Deferred {
    /// Answer the held chain whose request is `request` (echo).
    pub fn release(&mut self, request: &[u8]) {
        if let Some(at) = self.held.iter().position(|(_, r)| r == request) {
            let (id, bytes) = self.held.remove(at);
            self.ready.push((id, bytes));
        }
    }

    /// Fill the oldest posted event buffer with `event`.
    pub fn post(&mut self, event: &[u8]) {
        if !self.events.is_empty() {
            let id = self.events.remove(0);
            self.ready.push((id, event.to_vec()));
        }
    }
}

impl FakeDevice for Deferred {
    fn handle(&mut self, _queue: u16, request: &[u8]) -> Vec<u8> {
        request.to_vec()
    }
    fn chain(&mut self, chain: &Chain) -> Reply {
        if chain.queue == 1 {
            self.events.push(chain.id);
            Reply::Hold
        } else if chain.request.first() == Some(&b'H') {
            self.held.push((chain.id, chain.request.to_vec()));
            Reply::Hold
        } else {
            Reply::Now(chain.request.to_vec())
        }
    }
    fn completions(&mut self) -> Vec<(ChainId, Vec<u8>)> {
        core::mem::take(&mut self.ready)
    }
    fn reset(&mut self) {
        self.held.clear();
        self.events.clear();
        self.ready.clear();
    }
}

/// Ways the fake device can misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Never answers.
    Silent,
    /// Puts this id in the next used element.
    UsedId(u32),
    /// Puts this length in the next used element.
    UsedLen(u32),
    /// Moves the used index by this much instead of 1.
    UsedIdxJump(u16),
    /// Sets DEVICE_NEEDS_RESET instead of answering.
    NeedsReset,
}

#[derive(Debug, Clone, Default)]
pub struct FakeQueue {
    pub num_max: u32,
    pub num: u32,
    pub ready: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    last_avail: u16,
    used_idx: u16,
}

/// A chain the model holds: its queue, head descriptor and writable buffers.
struct Held {
    queue: usize,
    head: u16,
    writable: Vec<(u64, u32)>,
}

/// The whole fake: registers, memory, device model, fault injection, protocol checks.
pub struct Fake {
    pub memory: FakeMemory,
    pub version: u32,
    pub device_id: u32,
    pub device_features: u64,
    pub driver_features: u64,
    device_features_sel: u32,
    driver_features_sel: u32,
    pub status: u32,
    queue_sel: u32,
    pub queues: Vec<FakeQueue>,
    pub interrupt_status: u32,
    pub interrupts: u64,
    pub now_ns: u64,
    pub config: Vec<u8>,
    pub config_generation: u32,
    /// Bump ConfigGeneration on this many of the next configuration reads.
    pub tear_config_reads: usize,
    /// Clear FEATURES_OK whatever the driver accepts.
    pub refuse_features: bool,
    /// Status keeps reading this instead of 0 after a reset.
    pub stuck_status: Option<u32>,
    pub misbehave: Option<Misbehaviour>,
    /// Protocol breaches by the driver.
    pub violations: Vec<String>,
    pub notifications: usize,
    pub resets: usize,
    pub chains_served: usize,
    /// Every chain the device walked, in order.
    pub shapes: Vec<ChainShape>,
    /// Chains the model holds.
    held: BTreeMap<ChainId, Held>,
    next_chain: ChainId,
    model: Box<dyn FakeDevice>,
}

/// The driver's DMA view of a [`Fake`].
#[derive(Clone)]
pub struct FakeHal(pub Rc<RefCell<Fake>>);

/// The driver's register view of a [`Fake`].
#[derive(Clone)]
pub struct FakeRegs(pub Rc<RefCell<Fake>>);

impl Fake {
    /// A modern device of type `device_id` offering VERSION_1 plus `features`, with
    /// `queues` queues of QueueNumMax `num_max`, configuration space `config`.
    pub fn new(
        device_id: u32,
        features: u64,
        queues: usize,
        num_max: u32,
        config: Vec<u8>,
        model: Box<dyn FakeDevice>,
    ) -> (FakeHal, FakeRegs, Rc<RefCell<Fake>>) {
        let fake = Rc::new(RefCell::new(Fake {
            memory: FakeMemory::new(),
            version: VERSION_MODERN,
            device_id,
            device_features: feature::VERSION_1 | features,
            driver_features: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            status: 0,
            queue_sel: 0,
            queues: vec![
                FakeQueue {
                    num_max,
                    ..FakeQueue::default()
                };
                queues
            ],
            interrupt_status: 0,
            interrupts: 0,
            now_ns: 0,
            config,
            config_generation: 0,
            tear_config_reads: 0,
            refuse_features: false,
            stuck_status: None,
            misbehave: None,
            violations: Vec::new(),
            notifications: 0,
            resets: 0,
            chains_served: 0,
            shapes: Vec::new(),
            held: BTreeMap::new(),
            next_chain: 0,
            model,
        }));
        (FakeHal(fake.clone()), FakeRegs(fake.clone()), fake)
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn selected_queue(&mut self) -> Option<&mut FakeQueue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.interrupt_status = 0;
        self.resets += 1;
        self.held.clear();
        self.model.reset();
        for q in &mut self.queues {
            *q = FakeQueue {
                num_max: q.num_max,
                ..FakeQueue::default()
            };
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        if value & self.status != self.status {
            self.violation(format!(
                "status {:#x} clears bits of {:#x}",
                value, self.status
            ));
        }
        let new = value & !self.status;
        let mut value = value;
        if new & status::DRIVER != 0 && value & status::ACKNOWLEDGE == 0 {
            self.violation(String::from("DRIVER before ACKNOWLEDGE"));
        }
        if new & status::FEATURES_OK != 0 {
            if value & status::DRIVER == 0 {
                self.violation(String::from("FEATURES_OK before DRIVER"));
            }
            let ok = !self.refuse_features
                && self.driver_features & feature::VERSION_1 != 0
                && self.driver_features & !self.device_features == 0;
            if !ok {
                value &= !status::FEATURES_OK;
            }
        }
        if new & status::DRIVER_OK != 0 && value & status::FEATURES_OK == 0 {
            self.violation(String::from("DRIVER_OK without FEATURES_OK"));
        }
        self.status = value;
    }

    fn queue_ready(&mut self) {
        let features_ok = self.status & status::FEATURES_OK != 0;
        let sel = self.queue_sel;
        let Some(q) = self.selected_queue() else {
            self.violation(format!("QueueReady on missing queue {sel}"));
            return;
        };
        let mut problems = Vec::new();
        if !q.num.is_power_of_two() || q.num > q.num_max {
            problems.push(format!("queue {sel}: size {} (max {})", q.num, q.num_max));
        }
        if q.desc % 16 != 0 || q.driver % 2 != 0 || q.device % 4 != 0 {
            problems.push(format!("queue {sel}: misaligned parts"));
        }
        if !features_ok {
            problems.push(format!("queue {sel} set up before FEATURES_OK"));
        }
        q.ready = true;
        for p in problems {
            self.violation(p);
        }
    }

    fn set_half(target: &mut u64, high: bool, value: u32) {
        *target = if high {
            (*target & 0xffff_ffff) | u64::from(value) << 32
        } else {
            (*target & !0xffff_ffff) | u64::from(value)
        };
    }

    fn config_access(&mut self, offset: usize, len: usize) -> Option<&[u8]> {
        if self.tear_config_reads > 0 {
            self.tear_config_reads -= 1;
            self.config_generation = self.config_generation.wrapping_add(1);
        }
        self.config.get(offset..offset.checked_add(len)?)
    }

    /// Serve every available chain of every live queue (what the device does between
    /// a notification and its interrupt).
    pub fn run(&mut self) {
        if self.status & status::DRIVER_OK == 0 {
            return;
        }
        match self.misbehave {
            Some(Misbehaviour::Silent) => return,
            Some(Misbehaviour::NeedsReset) => {
                self.status |= status::DEVICE_NEEDS_RESET;
                self.interrupt_status |= super::transport::interrupt::CONFIG_CHANGE;
                self.interrupts += 1;
                return;
            }
            _ => {}
        }
        let mut served = false;
        for index in 0..self.queues.len() {
            while self.serve_one(index) {
                served = true;
            }
        }
        served |= self.complete_held();
        if served {
            self.interrupt_status |= super::transport::interrupt::USED_BUFFER;
            self.interrupts += 1;
        }
    }

    fn serve_one(&mut self, index: usize) -> bool {
        let q = self.queues[index].clone();
        if !q.ready || q.num == 0 {
            return false;
        }
        let Some(avail_idx) = self.memory.u16_at(q.driver + 2) else {
            self.violation(format!("queue {index}: driver area not in memory"));
            return false;
        };
        if avail_idx == q.last_avail {
            return false;
        }
        let slot = u64::from(q.last_avail % q.num as u16);
        let Some(head) = self.memory.u16_at(q.driver + 4 + 2 * slot) else {
            return false;
        };
        // Walk the chain as a device would, bounded by the queue size.
        let mut request = Vec::new();
        let mut readable_lens = Vec::new();
        let mut writable: Vec<(u64, u32)> = Vec::new();
        let mut id = head;
        for step in 0.. {
            if u32::from(id) >= q.num || step >= q.num {
                self.violation(format!("queue {index}: bad chain from {head}"));
                return false;
            }
            let Some(d) = self.memory.read_phys(q.desc + 16 * u64::from(id), 16) else {
                return false;
            };
            let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & 2 != 0 {
                writable.push((addr, len));
            } else if !writable.is_empty() {
                self.violation(format!(
                    "queue {index}: readable descriptor after a writable one"
                ));
            } else {
                readable_lens.push(len);
                match self.memory.read_phys(addr, len as usize) {
                    Some(bytes) => request.extend_from_slice(&bytes),
                    None => {
                        self.violation(format!("queue {index}: buffer {addr:#x} not in memory"))
                    }
                }
            }
            if flags & 1 == 0 {
                break;
            }
            id = next;
        }
        let id = self.next_chain;
        self.next_chain += 1;
        self.queues[index].last_avail = q.last_avail.wrapping_add(1);
        self.shapes.push(ChainShape {
            queue: index as u16,
            readable: readable_lens,
            writable: writable.iter().map(|&(_, len)| len).collect(),
        });
        let offered = writable.iter().map(|&(_, len)| len).sum();
        let reply = self.model.chain(&Chain {
            id,
            queue: index as u16,
            request: &request,
            writable: offered,
        });
        match reply {
            Reply::Now(response) => self.complete(index, head, &writable, &response),
            Reply::Hold => {
                self.held.insert(
                    id,
                    Held {
                        queue: index,
                        head,
                        writable,
                    },
                );
            }
        }
        self.complete_held();
        true
    }

    /// Answer the held chains the model is done with; whether there was any.
    fn complete_held(&mut self) -> bool {
        let mut any = false;
        for (id, response) in self.model.completions() {
            match self.held.remove(&id) {
                Some(held) => {
                    self.complete(held.queue, held.head, &held.writable, &response);
                    any = true;
                }
                None => {
                    self.violation(format!("model answered chain {id}, which it does not hold"))
                }
            }
        }
        any
    }

    /// Write `response` into a chain's writable buffers and its used element.
    fn complete(&mut self, index: usize, head: u16, writable: &[(u64, u32)], response: &[u8]) {
        let q = self.queues[index].clone();
        let mut written = 0usize;
        for &(addr, len) in writable {
            let take = (response.len() - written).min(len as usize);
            if take > 0
                && self
                    .memory
                    .write_phys(addr, &response[written..written + take])
                    .is_none()
            {
                self.violation(format!(
                    "queue {index}: response buffer {addr:#x} not in memory"
                ));
            }
            written += take;
        }
        if written < response.len() {
            self.violation(format!(
                "queue {index}: response of {} bytes cut to {written}",
                response.len()
            ));
        }
        let (mut used_id, mut used_len, mut step) = (u32::from(head), written as u32, 1u16);
        match self.misbehave.take() {
            Some(Misbehaviour::UsedId(v)) => used_id = v,
            Some(Misbehaviour::UsedLen(v)) => used_len = v,
            Some(Misbehaviour::UsedIdxJump(v)) => step = v,
            other => self.misbehave = other,
        }
        let slot = u64::from(q.used_idx % q.num as u16);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&used_id.to_le_bytes());
        elem[4..].copy_from_slice(&used_len.to_le_bytes());
        let used_idx = q.used_idx.wrapping_add(step);
        let ok = self
            .memory
            .write_phys(q.device + 4 + 8 * slot, &elem)
            .is_some()
            && self
                .memory
                .write_phys(q.device + 2, &used_idx.to_le_bytes())
                .is_some();
        if !ok {
            self.violation(format!("queue {index}: device area not in memory"));
        }
        self.queues[index].used_idx = used_idx;
        self.chains_served += 1;
    }

    /// Chains the model holds now.
    pub fn held_chains(&self) -> usize {
        self.held.len()
    }
}

impl Registers for FakeRegs {
    fn read32(&self, offset: usize) -> u32 {
        let mut f = self.0.borrow_mut();
        let sel = f.queue_sel as usize;
        let queue = f.queues.get(sel).cloned().unwrap_or_default();
        match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => f.version,
            reg::DEVICE_ID => f.device_id,
            reg::VENDOR_ID => 0x554d_4551,
            reg::DEVICE_FEATURES => match f.device_features_sel {
                0 => f.device_features as u32,
                1 => (f.device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => queue.num_max,
            reg::QUEUE_NUM => queue.num,
            reg::QUEUE_READY => u32::from(queue.ready),
            reg::INTERRUPT_STATUS => f.interrupt_status,
            reg::STATUS => match f.stuck_status {
                Some(s) if f.status == 0 => s,
                _ => f.status,
            },
            reg::CONFIG_GENERATION => f.config_generation,
            _ => {
                f.violation(format!(
                    "read of write-only or reserved register {offset:#x}"
                ));
                0
            }
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let mut f = self.0.borrow_mut();
        match offset {
            reg::DEVICE_FEATURES_SEL => f.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => f.driver_features_sel = value,
            reg::DRIVER_FEATURES => {
                let high = match f.driver_features_sel {
                    0 => false,
                    1 => true,
                    s => return f.violation(format!("DriverFeaturesSel {s}")),
                };
                Fake::set_half(&mut f.driver_features, high, value);
            }
            reg::QUEUE_SEL => f.queue_sel = value,
            reg::QUEUE_NUM => match f.selected_queue() {
                Some(q) => q.num = value,
                None => f.violation(format!("QueueNum {value} for a missing queue")),
            },
            reg::QUEUE_READY if value == 1 => f.queue_ready(),
            reg::QUEUE_READY => {
                if let Some(q) = f.selected_queue() {
                    q.ready = false;
                }
            }
            reg::QUEUE_DESC_LOW..=reg::QUEUE_DEVICE_HIGH if offset.is_multiple_of(4) => {
                let high = offset % 8 == 4;
                if f.queues.get(f.queue_sel as usize).is_some_and(|q| q.ready) {
                    // 4.2.2: addresses of a live queue must not change.
                    f.violation(format!("queue address write {offset:#x} to a live queue"));
                }
                let Some(q) = f.selected_queue() else {
                    return f.violation(String::from("queue address for a missing queue"));
                };
                let target = match offset & !7 {
                    reg::QUEUE_DESC_LOW => &mut q.desc,
                    reg::QUEUE_DRIVER_LOW => &mut q.driver,
                    reg::QUEUE_DEVICE_LOW => &mut q.device,
                    _ => return f.violation(format!("write of reserved register {offset:#x}")),
                };
                Fake::set_half(target, high, value);
            }
            reg::QUEUE_NOTIFY => {
                let live = f.status & status::DRIVER_OK != 0
                    && f.queues.get(value as usize).is_some_and(|q| q.ready);
                if !live {
                    f.violation(format!("notify of queue {value} before it is live"));
                }
                f.notifications += 1;
            }
            reg::INTERRUPT_ACK => f.interrupt_status &= !value,
            reg::STATUS => f.write_status(value),
            _ => f.violation(format!(
                "write of read-only or reserved register {offset:#x}"
            )),
        }
    }

    fn config_read8(&self, offset: usize) -> Option<u8> {
        Some(self.0.borrow_mut().config_access(offset, 1)?[0])
    }

    fn config_read16(&self, offset: usize) -> Option<u16> {
        let mut f = self.0.borrow_mut();
        let b = f.config_access(offset, 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn config_read32(&self, offset: usize) -> Option<u32> {
        let mut f = self.0.borrow_mut();
        let b = f.config_access(offset, 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn config_write32(&self, offset: usize, value: u32) -> Option<()> {
        let mut f = self.0.borrow_mut();
        let end = offset.checked_add(4)?;
        f.config
            .get_mut(offset..end)?
            .copy_from_slice(&value.to_le_bytes());
        Some(())
    }
}

impl FakeHal {
    fn fake(&self) -> RefMut<'_, Fake> {
        self.0.borrow_mut()
    }

    fn region_bytes(&self, region: &DmaRegion, offset: usize, len: usize) -> Result<u64, HalError> {
        region.check(offset, len)?;
        let f = self.0.borrow();
        match f.memory.regions.get(&region.paddr()) {
            Some(r) if r.len() == region.len() => Ok(region.paddr() + offset as u64),
            _ => Err(HalError::NotOurs {
                paddr: region.paddr(),
            }),
        }
    }
}

impl Hal for FakeHal {
    fn dma_alloc(&self, pages: usize) -> Result<DmaRegion, HalError> {
        let paddr = self.fake().memory.alloc(pages)?;
        Ok(DmaRegion::new(paddr, pages))
    }

    fn dma_free(&self, region: DmaRegion) -> Result<(), HalError> {
        let mut f = self.fake();
        match f.memory.regions.get(&region.paddr()) {
            Some(r) if r.len() == region.len() => {
                f.memory.regions.remove(&region.paddr());
                Ok(())
            }
            _ => Err(HalError::NotOurs {
                paddr: region.paddr(),
            }),
        }
    }

    fn read(&self, region: &DmaRegion, offset: usize, buf: &mut [u8]) -> Result<(), HalError> {
        let at = self.region_bytes(region, offset, buf.len())?;
        let bytes = self.0.borrow().memory.read_phys(at, buf.len());
        buf.copy_from_slice(&bytes.ok_or(HalError::NotOurs { paddr: at })?);
        Ok(())
    }

    fn write(&self, region: &DmaRegion, offset: usize, data: &[u8]) -> Result<(), HalError> {
        let at = self.region_bytes(region, offset, data.len())?;
        self.fake()
            .memory
            .write_phys(at, data)
            .ok_or(HalError::NotOurs { paddr: at })
    }

    fn read_u16(&self, region: &DmaRegion, offset: usize) -> Result<u16, HalError> {
        if !offset.is_multiple_of(2) {
            return Err(HalError::Misaligned { offset });
        }
        let mut b = [0u8; 2];
        self.read(region, offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn write_u16(&self, region: &DmaRegion, offset: usize, value: u16) -> Result<(), HalError> {
        if !offset.is_multiple_of(2) {
            return Err(HalError::Misaligned { offset });
        }
        self.write(region, offset, &value.to_le_bytes())
    }

    fn barrier(&self, _kind: Barrier) {}

    fn interrupt_count(&self) -> u64 {
        self.0.borrow().interrupts
    }

    fn wait_for_interrupt(&self, seen: u64) {
        let mut f = self.fake();
        f.now_ns += 1_000_000;
        if f.interrupts == seen {
            f.run();
        }
    }

    fn now_ns(&self) -> u64 {
        self.0.borrow().now_ns
    }
}
