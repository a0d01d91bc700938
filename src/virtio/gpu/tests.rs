//! Host tests of the virtio-gpu driver against the fake GPU (`fake.rs`) on the fake
//! virtio device.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::fake::FakeGpu;
use super::wire::{cmd, resp, ErrorResponse, Format, Rect, TransferToHost2d};
use super::{GpuDriver, GpuError};
use crate::virtio::fake::{Fake, FakeHal, FakeRegs, Misbehaviour};
use crate::virtio::hal::{DmaRegion, Hal};
use crate::virtio::{id, TransportError, VirtioError};

struct Rig {
    hal: FakeHal,
    fake: Rc<RefCell<Fake>>,
    gpu: Rc<RefCell<FakeGpu>>,
    driver: Option<GpuDriver<FakeHal, FakeRegs>>,
    fb: Option<DmaRegion>,
}

impl Rig {
    fn new() -> Self {
        let gpu = Rc::new(RefCell::new(FakeGpu::new(1024, 768, 1)));
        let config = gpu.borrow().config();
        let (hal, regs, fake) = Fake::new(id::GPU, 1 << 1, 2, 256, config, Box::new(gpu.clone()));
        let driver = GpuDriver::new(hal.clone(), regs).unwrap();
        Rig {
            hal,
            fake,
            gpu,
            driver: Some(driver),
            fb: None,
        }
    }

    fn driver(&mut self) -> &mut GpuDriver<FakeHal, FakeRegs> {
        self.driver.as_mut().unwrap()
    }

    /// A framebuffer of `pages` pages in fake memory (the CMA dma-buf's stand-in).
    fn framebuffer(&mut self, pages: usize) -> (u64, u64) {
        if let Some(old) = self.fb.take() {
            self.hal.dma_free(old).unwrap();
        }
        let region = self.hal.dma_alloc(pages).unwrap();
        let at = (region.paddr(), region.len() as u64);
        self.fb = Some(region);
        at
    }

    fn attach(&mut self) -> Result<super::Framebuffer, GpuError> {
        let (paddr, len) = self.framebuffer(1); // 16 x 12 x 4 bytes fit one page
        self.driver()
            .attach_framebuffer(paddr, len, 16, 12, Format::B8G8R8X8)
    }

    fn commands(&self) -> Vec<u32> {
        self.gpu.borrow().commands.clone()
    }

    fn clear_commands(&self) {
        self.gpu.borrow_mut().commands.clear();
    }

    /// The driver spoke the protocol: no malformed request, no transport breach.
    fn check_clean(&self) {
        assert!(
            self.gpu.borrow().malformed.is_empty(),
            "{:?}",
            self.gpu.borrow().malformed
        );
        assert!(
            self.fake.borrow().violations.is_empty(),
            "{:?}",
            self.fake.borrow().violations
        );
    }

    /// Drop the driver and the framebuffer; every DMA page must be back.
    fn finish(mut self) {
        self.check_clean();
        self.driver = None;
        if let Some(fb) = self.fb.take() {
            self.hal.dma_free(fb).unwrap();
        }
        assert_eq!(
            self.fake.borrow().memory.outstanding_pages(),
            0,
            "DMA memory leaked"
        );
        assert!(self.gpu.borrow().resources.is_empty(), "resources leaked");
        assert_eq!(self.fake.borrow().status, 0, "device not reset");
    }
}

#[test]
fn display_info_reports_what_the_device_says() {
    let mut rig = Rig::new();
    assert_eq!(rig.driver().num_scanouts(), 1);
    let info = rig.driver().display_info().unwrap();
    assert_eq!(info.scanouts.len(), 1);
    let primary = info.primary().unwrap();
    assert_eq!(primary.rect, Rect::new(0, 0, 1024, 768));
    assert!(primary.enabled);
    // No device feature was accepted (EDID offered, not wanted): VERSION_1 only.
    assert_eq!(rig.fake.borrow().driver_features, 1 << 32);
    rig.finish();
}

#[test]
fn framebuffer_lifecycle_sends_the_2d_sequence() {
    let mut rig = Rig::new();
    let fb = rig.attach().unwrap();
    assert_eq!(
        (fb.width, fb.height, fb.stride, fb.scanout),
        (16, 12, 64, 0)
    );
    {
        let g = rig.gpu.borrow();
        let r = &g.resources[&fb.resource_id];
        assert_eq!(r.backing, Some((fb.paddr, fb.len as u32)));
        assert_eq!(r.format, Format::B8G8R8X8);
        assert_eq!(g.scanouts[0], Some(fb.resource_id));
    }
    rig.driver().flush(Rect::new(2, 3, 4, 5)).unwrap();
    rig.driver().flush_all().unwrap();
    {
        let g = rig.gpu.borrow();
        assert_eq!(
            g.transfers,
            vec![
                TransferToHost2d {
                    rect: Rect::new(2, 3, 4, 5),
                    offset: 3 * 64 + 2 * 4,
                    resource_id: fb.resource_id
                },
                TransferToHost2d {
                    rect: Rect::new(0, 0, 16, 12),
                    offset: 0,
                    resource_id: fb.resource_id
                },
            ]
        );
        assert_eq!(g.flushes.len(), 2);
        assert_eq!(g.flushes[0].rect, Rect::new(2, 3, 4, 5));
    }
    rig.driver().off().unwrap();
    assert_eq!(
        rig.commands(),
        vec![
            cmd::RESOURCE_CREATE_2D,
            cmd::RESOURCE_ATTACH_BACKING,
            cmd::SET_SCANOUT,
            cmd::TRANSFER_TO_HOST_2D,
            cmd::RESOURCE_FLUSH,
            cmd::TRANSFER_TO_HOST_2D,
            cmd::RESOURCE_FLUSH,
            cmd::SET_SCANOUT,
            cmd::RESOURCE_DETACH_BACKING,
            cmd::RESOURCE_UNREF,
        ]
    );
    assert_eq!(rig.gpu.borrow().scanouts[0], None);
    assert!(rig.driver().framebuffer().is_none());
    // Off twice is nothing to do; a second framebuffer gets a new id.
    rig.driver().off().unwrap();
    let (paddr, len) = (fb.paddr, fb.len);
    let again = rig
        .driver()
        .attach_framebuffer(paddr, len, 16, 12, Format::B8G8R8A8)
        .unwrap();
    assert_ne!(again.resource_id, fb.resource_id);
    // Dropping the driver with a framebuffer attached takes it down too.
    rig.finish();
}

#[test]
fn every_error_response_is_typed() {
    let mut rig = Rig::new();
    for t in resp::ERR_UNSPEC..=resp::ERR_INVALID_PARAMETER {
        rig.gpu.borrow_mut().fail = Some((cmd::GET_DISPLAY_INFO, t));
        let err = rig.driver().display_info().unwrap_err();
        assert_eq!(
            err,
            GpuError::Device {
                command: cmd::GET_DISPLAY_INFO,
                error: ErrorResponse::from_type(t).unwrap()
            }
        );
    }
    rig.gpu.borrow_mut().fail = Some((cmd::GET_DISPLAY_INFO, resp::OK_NODATA));
    assert_eq!(
        rig.driver().display_info().unwrap_err(),
        GpuError::UnexpectedResponse {
            command: cmd::GET_DISPLAY_INFO,
            response: resp::OK_NODATA
        }
    );
    rig.gpu.borrow_mut().fail = Some((cmd::RESOURCE_FLUSH, 0x1300));
    assert!(matches!(
        rig.driver().resource_flush(1, Rect::new(0, 0, 1, 1)),
        Err(GpuError::UnexpectedResponse {
            response: 0x1300,
            ..
        })
    ));
    // The device still works afterwards.
    assert!(rig.driver().display_info().is_ok());
    rig.finish();
}

#[test]
fn attach_to_a_missing_resource_is_the_devices_error() {
    let mut rig = Rig::new();
    let (paddr, _) = rig.framebuffer(1);
    let err = rig.driver().attach_backing(77, paddr, 4096).unwrap_err();
    assert_eq!(
        err,
        GpuError::Device {
            command: cmd::RESOURCE_ATTACH_BACKING,
            error: ErrorResponse::InvalidResourceId
        }
    );
    assert!(err.to_string().contains("ERR_INVALID_RESOURCE_ID"));
    rig.finish();
}

#[test]
fn a_failed_set_up_step_undoes_the_earlier_ones() {
    // Create refused: nothing to undo.
    let mut rig = Rig::new();
    rig.gpu.borrow_mut().fail = Some((cmd::RESOURCE_CREATE_2D, resp::ERR_OUT_OF_MEMORY));
    assert!(matches!(
        rig.attach(),
        Err(GpuError::Device {
            error: ErrorResponse::OutOfMemory,
            ..
        })
    ));
    assert_eq!(rig.commands(), vec![cmd::RESOURCE_CREATE_2D]);
    rig.finish();

    // Attach refused: unref.
    let mut rig = Rig::new();
    rig.gpu.borrow_mut().fail = Some((cmd::RESOURCE_ATTACH_BACKING, resp::ERR_UNSPEC));
    assert!(rig.attach().is_err());
    assert_eq!(
        rig.commands(),
        vec![
            cmd::RESOURCE_CREATE_2D,
            cmd::RESOURCE_ATTACH_BACKING,
            cmd::RESOURCE_UNREF
        ]
    );
    assert!(rig.gpu.borrow().resources.is_empty());
    assert!(rig.driver().framebuffer().is_none());
    rig.finish();

    // Scanout refused: detach, unref.
    let mut rig = Rig::new();
    rig.gpu.borrow_mut().fail = Some((cmd::SET_SCANOUT, resp::ERR_INVALID_SCANOUT_ID));
    assert!(rig.attach().is_err());
    assert_eq!(
        rig.commands(),
        vec![
            cmd::RESOURCE_CREATE_2D,
            cmd::RESOURCE_ATTACH_BACKING,
            cmd::SET_SCANOUT,
            cmd::RESOURCE_DETACH_BACKING,
            cmd::RESOURCE_UNREF
        ]
    );
    assert!(rig.gpu.borrow().resources.is_empty());
    // And a retry works.
    rig.clear_commands();
    let fb = rig.fb.take().unwrap();
    let (paddr, len) = (fb.paddr(), fb.len() as u64);
    rig.fb = Some(fb);
    rig.driver()
        .attach_framebuffer(paddr, len, 16, 12, Format::B8G8R8X8)
        .unwrap();
    rig.finish();
}

#[test]
fn a_refused_undo_resets_the_device_so_it_holds_nothing() {
    let mut rig = Rig::new();
    let resets = rig.fake.borrow().resets;
    // Scanout refused, then the detach of the undo refused too.
    rig.gpu.borrow_mut().fail = Some((cmd::SET_SCANOUT, resp::ERR_UNSPEC));
    assert!(rig.attach().is_err());
    rig.gpu.borrow_mut().fail = None;
    assert_eq!(rig.fake.borrow().resets, resets);
    rig.attach().unwrap();
    rig.gpu.borrow_mut().fail = Some((cmd::RESOURCE_DETACH_BACKING, resp::ERR_UNSPEC));
    let err = rig.driver().off().unwrap_err();
    assert!(matches!(
        err,
        GpuError::Device {
            command: cmd::RESOURCE_DETACH_BACKING,
            ..
        }
    ));
    assert_eq!(rig.fake.borrow().resets, resets + 1, "device reset");
    assert!(rig.gpu.borrow().resources.is_empty());
    assert!(rig.driver().framebuffer().is_none());
    // Up again after the reset.
    assert!(rig.driver().display_info().is_ok());
    rig.finish();
}

#[test]
fn bad_arguments_are_refused_before_the_device_sees_them() {
    let mut rig = Rig::new();
    let (paddr, len) = rig.framebuffer(1);
    let d = rig.driver();
    assert_eq!(
        d.attach_framebuffer(paddr, len, 64, 64, Format::B8G8R8A8),
        Err(GpuError::BadBacking {
            len: 4096,
            needed: 64 * 64 * 4
        })
    );
    assert_eq!(
        d.attach_framebuffer(paddr, 1 << 33, 64, 64, Format::B8G8R8A8),
        Err(GpuError::BadBacking {
            len: 1 << 33,
            needed: 64 * 64 * 4
        })
    );
    assert_eq!(
        d.attach_framebuffer(paddr, len, 8, 8, Format::R8G8B8A8),
        Err(GpuError::UnsupportedFormat(Format::R8G8B8A8))
    );
    assert_eq!(
        d.attach_framebuffer(paddr, len, 0, 8, Format::B8G8R8A8),
        Err(GpuError::EmptyFramebuffer)
    );
    assert_eq!(d.flush(Rect::new(0, 0, 1, 1)), Err(GpuError::NotAttached));
    d.attach_framebuffer(paddr, len, 8, 8, Format::B8G8R8A8)
        .unwrap();
    assert_eq!(
        d.attach_framebuffer(paddr, len, 8, 8, Format::B8G8R8A8),
        Err(GpuError::AlreadyAttached)
    );
    for bad in [
        Rect::new(0, 0, 9, 1),
        Rect::new(7, 7, 2, 1),
        Rect::new(0, 0, 0, 1),
        Rect::new(u32::MAX, 0, 2, 1),
    ] {
        assert_eq!(d.flush(bad), Err(GpuError::BadRect(bad)));
    }
    d.off().unwrap();
    assert_eq!(
        rig.commands(),
        vec![
            cmd::RESOURCE_CREATE_2D,
            cmd::RESOURCE_ATTACH_BACKING,
            cmd::SET_SCANOUT,
            cmd::SET_SCANOUT,
            cmd::RESOURCE_DETACH_BACKING,
            cmd::RESOURCE_UNREF
        ]
    );
    rig.finish();
}

#[test]
fn a_dead_gpu_times_out_and_reset_recovers() {
    let mut rig = Rig::new();
    rig.driver().set_timeout_ns(50_000_000);
    rig.fake.borrow_mut().misbehave = Some(Misbehaviour::Silent);
    assert_eq!(
        rig.driver().display_info(),
        Err(GpuError::Virtio(VirtioError::Timeout {
            queue: 0,
            waited_ms: 50
        }))
    );
    assert_eq!(
        rig.driver().display_info(),
        Err(GpuError::Virtio(VirtioError::Broken))
    );
    rig.fake.borrow_mut().misbehave = None;
    rig.driver().reset().unwrap();
    assert!(rig.driver().display_info().is_ok());
    rig.finish();
}

#[test]
fn probe_errors_leak_nothing() {
    let gpu = Rc::new(RefCell::new(FakeGpu::new(640, 480, 1)));
    let (hal, regs, fake) = Fake::new(id::GPU, 0, 2, 256, Vec::new(), Box::new(gpu));
    // No configuration space: num_scanouts cannot be read.
    let err = GpuDriver::new(hal.clone(), regs.clone()).err().unwrap();
    assert_eq!(
        err,
        GpuError::Virtio(VirtioError::Transport(TransportError::ConfigOutOfRange {
            offset: 8
        }))
    );
    assert_eq!(fake.borrow().memory.outstanding_pages(), 0);
    // DMA memory for the command page runs out: the queue is freed again.
    fake.borrow_mut().config = vec![0; 16];
    fake.borrow_mut().memory.limit_pages = Some(1);
    let err = GpuDriver::new(hal, regs).err().unwrap();
    assert!(
        matches!(err, GpuError::Virtio(VirtioError::Hal(_))),
        "{err:?}"
    );
    assert_eq!(fake.borrow().memory.outstanding_pages(), 0);
    assert_eq!(fake.borrow().status, 0);
}

#[test]
fn a_moved_framebuffer_is_re_attached_in_place() {
    let mut rig = Rig::new();
    let fb = rig.attach().unwrap();
    let old = rig.fb.take().unwrap();
    let (paddr, _) = rig.framebuffer(1);
    assert_ne!(paddr, fb.paddr);
    rig.clear_commands();
    let moved = rig.driver().move_backing(paddr).unwrap();
    assert_eq!(moved.paddr, paddr);
    assert_eq!(moved.resource_id, fb.resource_id);
    assert_eq!(
        rig.commands(),
        vec![cmd::RESOURCE_DETACH_BACKING, cmd::RESOURCE_ATTACH_BACKING]
    );
    {
        let g = rig.gpu.borrow();
        assert_eq!(
            g.resources[&fb.resource_id].backing,
            Some((paddr, fb.len as u32))
        );
        assert_eq!(g.scanouts[0], Some(fb.resource_id), "the scanout stays");
    }
    rig.clear_commands();
    assert_eq!(rig.driver().move_backing(paddr).unwrap(), moved);
    assert!(rig.commands().is_empty(), "nothing moved, nothing sent");
    rig.driver().flush_all().unwrap();
    rig.hal.dma_free(old).unwrap();
    rig.finish();
}

#[test]
fn a_refused_new_backing_resets_the_device_so_it_holds_neither_range() {
    let mut rig = Rig::new();
    rig.attach().unwrap();
    let old = rig.fb.take().unwrap();
    let (paddr, _) = rig.framebuffer(1);
    rig.gpu.borrow_mut().fail = Some((cmd::RESOURCE_ATTACH_BACKING, resp::ERR_UNSPEC));
    assert!(rig.driver().move_backing(paddr).is_err());
    assert!(rig.driver().framebuffer().is_none());
    assert!(
        rig.gpu.borrow().resources.is_empty(),
        "reset: no resource left"
    );
    assert_eq!(rig.driver().move_backing(paddr), Err(GpuError::NotAttached));
    rig.hal.dma_free(old).unwrap();
    rig.finish();
}
