//! Fences and reservation objects (`dma-fence.c`, `dma-resv.c`) and the job queue that
//! runs a consumer as soon as what it waits on is done.
//!
//! # Theory of operation
//!
//! A fence belongs to a context (a device's timeline: driver and timeline names, seqnos in
//! order) and ends exactly once: signalled, or failed. It fails when its device reports an
//! error or is reset ([`Fences::fail_context`] fails every pending fence of that context),
//! or when its deadline passes ([`Fences::poll`] with the current time: every fence is
//! created with a timeout, there is no fence without one).
//!
//! A buffer's [`Resv`] holds one exclusive (write) fence and shared (read) fences, the
//! pre-5.19 `dma_resv` model: adding a write fence replaces the exclusive one and drops
//! the shared ones (the new writer already waited for them, see [`Resv::waits_for`]).
//! Implicit sync: a writer waits on everything, a reader on the writer.
//!
//! A job ([`Fences::submit`]) names the fences it waits on and gets a new output fence on
//! its own context; it becomes runnable in the very call that ends its last dependency
//! (the seeds' dependency FIFO: no one has to come back and ask). A job whose dependency
//! failed does not run: it fails with that reason, and so does its output fence, which
//! carries the failure on to anyone waiting for it. Calls return [`Event`]s (run this job,
//! or it failed) instead of running anything, so the caller runs jobs with no lock held.
//!
//! # Why nothing can deadlock
//!
//! 1. No cycle: a job may wait only on fences that already exist when it is submitted,
//!    and its output fence is created by that same submission, after them, with a larger
//!    id. Every wait-for edge therefore goes from a larger fence id to a smaller one, so
//!    the wait-for graph is acyclic by construction; there is no way to name a fence that
//!    does not exist yet.
//! 2. No endless wait: every fence has a deadline, and [`Fences::poll`] (driven by the
//!    timer tick) fails it once the deadline has passed, so every fence ends in bounded
//!    time, signalled or failed, whatever its device does.
//! 3. No lost wake-up: whenever a fence ends, every parked job is re-examined until
//!    nothing changes (failures cascade through output fences in the same call), so a job
//!    whose last dependency just ended is released before the call returns.
//! 4. No lock re-entry: jobs are handed back as [`Event`]s and run by the caller after it
//!    lets go of the DMA state, so a job may signal fences or submit jobs itself.
//!
//! By 1 and 2 every fence ends; by 3 every job then runs or fails.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

pub type FenceId = u64;
pub type ContextId = u32;
pub type JobId = u64;

/// Why a fence failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceError {
    /// Its device reported an error.
    DeviceError { context: ContextId, reason: String },
    /// Its device was reset with the fence pending.
    Reset { context: ContextId },
    /// Not signalled by its deadline.
    Timeout { deadline: u64 },
    /// The job that would have signalled it did not run: `fence`, one of its
    /// dependencies, failed with `cause`.
    Dependency {
        fence: FenceId,
        cause: Box<FenceError>,
    },
}

impl fmt::Display for FenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceError::DeviceError { context, reason } => {
                write!(f, "device error on context {context}: {reason}")
            }
            FenceError::Reset { context } => write!(f, "context {context} was reset"),
            FenceError::Timeout { deadline } => write!(f, "timed out (deadline {deadline})"),
            FenceError::Dependency { fence, cause } => {
                write!(f, "dependency fence {fence} failed: {cause}")
            }
        }
    }
}

/// Misuse of the fence API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceOpError {
    NoSuchContext(ContextId),
    NoSuchFence(FenceId),
    /// Signalled or failed already: a fence ends once.
    AlreadyDone(FenceId),
    /// A timeout of 0 would make a fence that is late when born.
    ZeroTimeout,
}

impl fmt::Display for FenceOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceOpError::NoSuchContext(c) => write!(f, "no fence context {c}"),
            FenceOpError::NoSuchFence(id) => write!(f, "no fence {id}"),
            FenceOpError::AlreadyDone(id) => write!(f, "fence {id} already signalled or failed"),
            FenceOpError::ZeroTimeout => f.write_str("a fence needs a non-zero timeout"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceStatus {
    Pending,
    Signalled,
    Failed(FenceError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub id: FenceId,
    pub context: ContextId,
    pub seqno: u64,
    /// Fails with [`FenceError::Timeout`] when `poll(now)` sees `now >= deadline`.
    pub deadline: u64,
    pub status: FenceStatus,
}

/// A timeline (`dma_fence_context_alloc`) with the names `dma_fence_describe` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub driver: String,
    pub timeline: String,
    next_seqno: u64,
}

/// How a buffer uses a fence (`enum dma_resv_usage`'s names as bufinfo prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Write,
    Read,
}

impl Usage {
    pub fn name(self) -> &'static str {
        match self {
            Usage::Write => "write",
            Usage::Read => "read",
        }
    }
}

/// A buffer's reservation object. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resv {
    pub write: Option<FenceId>,
    pub read: Vec<FenceId>,
}

impl Resv {
    /// `dma_resv_add_excl_fence`: the new writer replaces the writer and the readers.
    pub fn add_write(&mut self, fence: FenceId) {
        self.write = Some(fence);
        self.read.clear();
    }

    /// `dma_resv_add_shared_fence`.
    pub fn add_read(&mut self, fence: FenceId) {
        if !self.read.contains(&fence) {
            self.read.push(fence);
        }
    }

    /// What a new access must wait for: a writer everything, a reader the writer.
    pub fn waits_for(&self, write: bool) -> Vec<FenceId> {
        let mut waits: Vec<FenceId> = self.write.into_iter().collect();
        if write {
            waits.extend(self.read.iter().copied());
        }
        waits
    }

    /// Every fence with its usage, writer first (what bufinfo lists).
    pub fn fences(&self) -> impl Iterator<Item = (Usage, FenceId)> + '_ {
        self.write
            .map(|f| (Usage::Write, f))
            .into_iter()
            .chain(self.read.iter().map(|f| (Usage::Read, *f)))
    }
}

/// What the caller must do after a call that may have ended fences.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<T> {
    /// Every dependency signalled: run the job (its work signals `out`).
    Run {
        job: JobId,
        out: FenceId,
        payload: T,
    },
    /// A dependency failed; the job will never run and `out` failed with `reason`.
    Failed {
        job: JobId,
        out: FenceId,
        payload: T,
        reason: FenceError,
    },
}

struct Job<T> {
    id: JobId,
    waits: Vec<FenceId>,
    out: FenceId,
    payload: T,
}

/// Every fence and parked job. `T` is what a job carries for the caller to run.
pub struct Fences<T> {
    contexts: Vec<Context>,
    fences: BTreeMap<FenceId, Fence>,
    jobs: Vec<Job<T>>,
    next_fence: FenceId,
    next_job: JobId,
}

impl<T> Default for Fences<T> {
    fn default() -> Self {
        Fences {
            contexts: Vec::new(),
            fences: BTreeMap::new(),
            jobs: Vec::new(),
            next_fence: 1,
            next_job: 1,
        }
    }
}

impl<T> Fences<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// `dma_fence_context_alloc` with the names the fence reports.
    pub fn new_context(&mut self, driver: &str, timeline: &str) -> ContextId {
        self.contexts.push(Context {
            driver: driver.to_string(),
            timeline: timeline.to_string(),
            next_seqno: 1,
        });
        (self.contexts.len() - 1) as ContextId
    }

    pub fn context(&self, id: ContextId) -> Option<&Context> {
        self.contexts.get(id as usize)
    }

    pub fn fence(&self, id: FenceId) -> Option<&Fence> {
        self.fences.get(&id)
    }

    /// Jobs still waiting.
    pub fn parked(&self) -> usize {
        self.jobs.len()
    }

    /// A new pending fence on `context`, failing at `now + timeout` unless ended first.
    pub fn create(
        &mut self,
        context: ContextId,
        now: u64,
        timeout: u64,
    ) -> Result<FenceId, FenceOpError> {
        if timeout == 0 {
            return Err(FenceOpError::ZeroTimeout);
        }
        let ctx = self
            .contexts
            .get_mut(context as usize)
            .ok_or(FenceOpError::NoSuchContext(context))?;
        let seqno = ctx.next_seqno;
        ctx.next_seqno += 1;
        let id = self.next_fence;
        self.next_fence += 1;
        let deadline = now.saturating_add(timeout);
        self.fences.insert(
            id,
            Fence {
                id,
                context,
                seqno,
                deadline,
                status: FenceStatus::Pending,
            },
        );
        Ok(id)
    }

    fn end(&mut self, id: FenceId, status: FenceStatus) -> Result<(), FenceOpError> {
        let fence = self
            .fences
            .get_mut(&id)
            .ok_or(FenceOpError::NoSuchFence(id))?;
        if fence.status != FenceStatus::Pending {
            return Err(FenceOpError::AlreadyDone(id));
        }
        fence.status = status;
        Ok(())
    }

    /// `dma_fence_signal`.
    pub fn signal(&mut self, id: FenceId) -> Result<Vec<Event<T>>, FenceOpError> {
        self.end(id, FenceStatus::Signalled)?;
        Ok(self.settle())
    }

    /// The device behind `context` errored or was reset: every pending fence of it fails
    /// with `error` (`dma_fence_set_error` + signal, for the whole timeline).
    pub fn fail_context(&mut self, context: ContextId, error: FenceError) -> Vec<Event<T>> {
        for fence in self.fences.values_mut() {
            if fence.context == context && fence.status == FenceStatus::Pending {
                fence.status = FenceStatus::Failed(error.clone());
            }
        }
        self.settle()
    }

    /// Fail every pending fence whose deadline is `<= now`.
    pub fn poll(&mut self, now: u64) -> Vec<Event<T>> {
        for fence in self.fences.values_mut() {
            if fence.status == FenceStatus::Pending && fence.deadline <= now {
                fence.status = FenceStatus::Failed(FenceError::Timeout {
                    deadline: fence.deadline,
                });
            }
        }
        self.settle()
    }

    /// Queue a job waiting on `waits`; returns the job, its output fence (on `context`,
    /// timing out at `now + timeout`) and any events (the job itself may be runnable at
    /// once).
    pub fn submit(
        &mut self,
        context: ContextId,
        waits: &[FenceId],
        now: u64,
        timeout: u64,
        payload: T,
    ) -> Result<(JobId, FenceId, Vec<Event<T>>), FenceOpError> {
        if let Some(missing) = waits.iter().find(|f| !self.fences.contains_key(f)) {
            return Err(FenceOpError::NoSuchFence(*missing));
        }
        let out = self.create(context, now, timeout)?;
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.push(Job {
            id,
            waits: waits.to_vec(),
            out,
            payload,
        });
        Ok((id, out, self.settle()))
    }

    /// Release every parked job whose dependencies all ended, until nothing changes.
    fn settle(&mut self) -> Vec<Event<T>> {
        let mut events = Vec::new();
        loop {
            let ready = self.jobs.iter().position(|job| {
                job.waits.iter().all(|w| {
                    self.fences
                        .get(w)
                        .is_none_or(|f| f.status != FenceStatus::Pending)
                })
            });
            let Some(at) = ready else {
                return events;
            };
            let job = self.jobs.remove(at);
            let failed =
                job.waits
                    .iter()
                    .find_map(|w| match self.fences.get(w).map(|f| &f.status) {
                        Some(FenceStatus::Failed(cause)) => Some((*w, cause.clone())),
                        _ => None,
                    });
            match failed {
                None => events.push(Event::Run {
                    job: job.id,
                    out: job.out,
                    payload: job.payload,
                }),
                Some((fence, cause)) => {
                    let reason = FenceError::Dependency {
                        fence,
                        cause: Box::new(cause),
                    };
                    // The output fence is pending (nothing else could end it: only this job
                    // signals it, and it never ran); a deadline or reset may have, though.
                    let _ = self.end(job.out, FenceStatus::Failed(reason.clone()));
                    events.push(Event::Failed {
                        job: job.id,
                        out: job.out,
                        payload: job.payload,
                        reason,
                    });
                }
            }
        }
    }

    /// Forget ended fences no one refers to (`keep` says which the buffers' reservations
    /// still hold) and that no parked job waits on.
    pub fn retire(&mut self, keep: impl Fn(FenceId) -> bool) {
        let jobs = &self.jobs;
        self.fences.retain(|id, f| {
            f.status == FenceStatus::Pending
                || keep(*id)
                || jobs.iter().any(|j| j.waits.contains(id))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn ids(events: &[Event<&'static str>]) -> Vec<(&'static str, bool)> {
        events
            .iter()
            .map(|e| match e {
                Event::Run { payload, .. } => (*payload, true),
                Event::Failed { payload, .. } => (*payload, false),
            })
            .collect()
    }

    #[test]
    fn a_consumer_runs_in_the_call_that_signals_its_last_dependency() {
        let mut f = Fences::new();
        let gpu = f.new_context("virtio_gpu", "gpu0");
        let dec = f.new_context("virtio_video", "dec0");
        let frame = f.create(dec, 0, 100).unwrap();
        let blit = f.create(gpu, 0, 100).unwrap();
        let (_, out, ev) = f.submit(gpu, &[frame, blit], 0, 100, "scanout").unwrap();
        assert!(ev.is_empty());
        assert!(
            f.signal(frame).unwrap().is_empty(),
            "one dependency still pending"
        );
        let ev = f.signal(blit).unwrap();
        assert_eq!(ids(&ev), vec![("scanout", true)]);
        assert_eq!(f.parked(), 0);
        assert_eq!(f.fence(out).unwrap().seqno, 2, "seqnos run per context");
        assert_eq!(f.signal(blit), Err(FenceOpError::AlreadyDone(blit)));
        let (_, _, ev) = f.submit(gpu, &[frame], 0, 100, "again").unwrap();
        assert_eq!(
            ids(&ev),
            vec![("again", true)],
            "all already signalled: runs at once"
        );
        assert_eq!(
            f.submit(gpu, &[999], 0, 100, "x").unwrap_err(),
            FenceOpError::NoSuchFence(999)
        );
        assert_eq!(f.create(7, 0, 1), Err(FenceOpError::NoSuchContext(7)));
        assert_eq!(f.create(gpu, 0, 0), Err(FenceOpError::ZeroTimeout));
    }

    #[test]
    fn a_device_error_fails_its_pending_fences_and_cascades_through_jobs() {
        let mut f = Fences::new();
        let dec = f.new_context("virtio_video", "dec0");
        let gpu = f.new_context("virtio_gpu", "gpu0");
        let done = f.create(dec, 0, 100).unwrap();
        f.signal(done).unwrap();
        let a = f.create(dec, 0, 100).unwrap();
        let other = f.create(gpu, 0, 100).unwrap();
        let (_, out1, _) = f.submit(gpu, &[a], 0, 100, "first").unwrap();
        let (_, out2, _) = f.submit(gpu, &[out1, other], 0, 100, "second").unwrap();
        let err = FenceError::DeviceError {
            context: dec,
            reason: "bitstream error".into(),
        };
        let ev = f.fail_context(dec, err.clone());
        assert_eq!(
            ids(&ev),
            vec![("first", false)],
            "second still waits on `other`"
        );
        assert_eq!(
            f.fence(done).unwrap().status,
            FenceStatus::Signalled,
            "ended fences stay"
        );
        assert_eq!(f.fence(a).unwrap().status, FenceStatus::Failed(err.clone()));
        let ev = f.signal(other).unwrap();
        match &ev[..] {
            [Event::Failed {
                payload: "second",
                reason: FenceError::Dependency { fence, cause },
                ..
            }] => {
                assert_eq!(*fence, out1);
                assert!(matches!(**cause, FenceError::Dependency { fence, .. } if fence == a));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            f.fence(out2).unwrap().status,
            FenceStatus::Failed(FenceError::Dependency { .. })
        ));
        assert!(format!("{}", FenceError::Reset { context: 1 }).contains("reset"));
    }

    #[test]
    fn a_reset_fails_all_pending_fences_of_that_context_only() {
        let mut f: Fences<()> = Fences::new();
        let a = f.new_context("d", "a");
        let b = f.new_context("d", "b");
        let fa = f.create(a, 0, 10).unwrap();
        let fb = f.create(b, 0, 10).unwrap();
        f.fail_context(a, FenceError::Reset { context: a });
        assert_eq!(
            f.fence(fa).unwrap().status,
            FenceStatus::Failed(FenceError::Reset { context: a })
        );
        assert_eq!(f.fence(fb).unwrap().status, FenceStatus::Pending);
    }

    #[test]
    fn deadlines_fail_fences_and_their_waiters() {
        let mut f = Fences::new();
        let c = f.new_context("d", "t");
        let slow = f.create(c, 1000, 50).unwrap();
        let (_, out, _) = f.submit(c, &[slow], 1000, 500, "consumer").unwrap();
        assert!(f.poll(1049).is_empty());
        let ev = f.poll(1050);
        assert_eq!(ids(&ev), vec![("consumer", false)]);
        assert_eq!(
            f.fence(slow).unwrap().status,
            FenceStatus::Failed(FenceError::Timeout { deadline: 1050 })
        );
        assert!(matches!(
            f.fence(out).unwrap().status,
            FenceStatus::Failed(FenceError::Dependency { .. })
        ));
        assert_eq!(
            f.signal(slow),
            Err(FenceOpError::AlreadyDone(slow)),
            "a late signal is refused"
        );
    }

    #[test]
    fn resv_implicit_sync_and_retire() {
        let mut r = Resv::default();
        r.add_read(1);
        r.add_read(2);
        r.add_read(2);
        assert_eq!(r.waits_for(true), vec![1, 2]);
        assert_eq!(r.waits_for(false), Vec::<FenceId>::new());
        r.add_write(3);
        assert_eq!((r.write, r.read.clone()), (Some(3), vec![]));
        r.add_read(4);
        assert_eq!(r.waits_for(false), vec![3]);
        assert_eq!(
            r.fences().collect::<Vec<_>>(),
            vec![(Usage::Write, 3), (Usage::Read, 4)]
        );

        let mut f: Fences<()> = Fences::new();
        let c = f.new_context("d", "t");
        let x = f.create(c, 0, 9).unwrap();
        let y = f.create(c, 0, 9).unwrap();
        f.signal(x).unwrap();
        f.signal(y).unwrap();
        f.retire(|id| id == y);
        assert!(f.fence(x).is_none() && f.fence(y).is_some());
    }
}
