//! What the boot identity map contains, decided from the platform and the linked image.
//!
//! # Theory of operation
//!
//! The identity map is a list of disjoint, page-aligned [`Region`]s, each with one set of
//! [`Attributes`]; the hardware layer maps them one by one and the translation-table code
//! picks block sizes. Deciding the list is pure policy, so it lives here where the host test
//! suite can check it against made-up platforms:
//!
//! - The kernel image is carved into text (read-only, executable), rodata (read-only),
//!   data+bss (read-write) and the boot stack (read-write). The stack guard page below the
//!   stack is left out so an overflow faults instead of corrupting bss. Nothing writable is
//!   executable, which is what SCTLR_EL1.WXN enforces anyway.
//! - RAM banks from `/memory` are mapped read-write, never executable, minus the image.
//! - Device windows (every `platform.mmio` range, the UART, GIC and virtio-mmio windows and
//!   the early console UART) are widened to whole pages, merged, and mapped Device-nGnRE.
//!   If the platform names no device window at all, everything below the lowest RAM bank is
//!   mapped as device so the console and interrupt controller keep working.
//! - The movable window is not part of the identity map; anything that would land in it
//!   is refused, as is a device window overlapping RAM (mapping one physical page with two
//!   memory types is architecturally unpredictable).
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::ops::Range;

use super::translation_table::{Attributes, VA_BITS};
use crate::dt::platform::Platform;
use crate::util::ranges::{align_down, align_up_saturating, merge, overlaps, subtract};
use crate::util::PAGE_SIZE;

/// Where the linker put the parts of the image (all page aligned, see linker.ld).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    pub text: Range<u64>,
    pub rodata: Range<u64>,
    /// `.data` and `.bss`.
    pub data: Range<u64>,
    /// The unmapped page below the boot stack.
    pub stack_guard: Range<u64>,
    pub stack: Range<u64>,
}

impl ImageLayout {
    /// From the first byte of text to the top of the stack.
    pub fn whole(&self) -> Range<u64> {
        self.text.start..self.stack.end
    }
}

/// One identity-mapped range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: &'static str,
    pub range: Range<u64>,
    pub attributes: Attributes,
}

/// Why no identity map could be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The linker symbols are out of order or not page aligned.
    BadImageLayout,
    /// A device window overlaps RAM or the kernel image.
    DeviceOverlapsMemory {
        device: Range<u64>,
        memory: Range<u64>,
    },
    /// A region reaches into the movable window or past the translated address space.
    CollidesWithWindow { region: Range<u64> },
    /// The platform lists no RAM.
    NoMemory,
}

/// Every device window the platform describes, plus the early console UART page.
fn device_windows(platform: &Platform, early_uart: u64) -> Vec<Range<u64>> {
    let mut windows: Vec<Range<u64>> = platform.mmio.clone();
    if let Some(uart) = &platform.uart {
        windows.push(uart.base..uart.base.saturating_add(uart.size));
    }
    if let Some(gic) = &platform.gic {
        windows.push(gic.distributor.clone());
        windows.push(gic.redistributor.clone());
    }
    for device in &platform.virtio_mmio {
        windows.push(device.base..device.base.saturating_add(device.size));
    }
    let described_any = !windows.is_empty();
    windows.push(early_uart..early_uart + PAGE_SIZE);
    if !described_any {
        if let Some(lowest_ram) = platform.memory.iter().map(|bank| bank.start).min() {
            windows.push(0..align_down(lowest_ram, PAGE_SIZE));
        }
    }
    merge(
        windows
            .into_iter()
            .map(|w| align_down(w.start, PAGE_SIZE)..align_up_saturating(w.end, PAGE_SIZE)),
    )
}

/// Plan the identity map. `movable_window` is kept free for on-demand mappings.
pub fn identity_map_plan(
    platform: &Platform,
    image: &ImageLayout,
    early_uart: u64,
    movable_window: &Range<u64>,
) -> Result<Vec<Region>, LayoutError> {
    identity_map_plan_excluding(platform, image, early_uart, movable_window, &[])
}

/// [`identity_map_plan`] with `no_map` ranges (reserved-memory `no-map` carveouts) left
/// out of the RAM mapping, widened to whole pages: a carveout may belong to a device or
/// secure firmware, and a cacheable alias of it could be speculatively read or written back.
pub fn identity_map_plan_excluding(
    platform: &Platform,
    image: &ImageLayout,
    early_uart: u64,
    movable_window: &Range<u64>,
    no_map: &[Range<u64>],
) -> Result<Vec<Region>, LayoutError> {
    let image_parts = [
        &image.text,
        &image.rodata,
        &image.data,
        &image.stack_guard,
        &image.stack,
    ];
    let aligned = image_parts
        .iter()
        .all(|r| r.start.is_multiple_of(PAGE_SIZE) && r.end.is_multiple_of(PAGE_SIZE));
    let ordered = image_parts
        .windows(2)
        .all(|w| w[0].start <= w[0].end && w[0].end <= w[1].start)
        && image.stack.start < image.stack.end;
    if !aligned || !ordered || image.text.start == image.text.end {
        return Err(LayoutError::BadImageLayout);
    }
    if platform.memory.is_empty() {
        return Err(LayoutError::NoMemory);
    }

    let mut regions = alloc::vec![
        Region {
            name: "kernel text",
            range: image.text.clone(),
            attributes: Attributes::KERNEL_TEXT
        },
        Region {
            name: "kernel rodata",
            range: image.rodata.clone(),
            attributes: Attributes::KERNEL_RODATA
        },
        Region {
            name: "kernel data+bss",
            range: image.data.clone(),
            attributes: Attributes::RAM
        },
        Region {
            name: "boot stack",
            range: image.stack.clone(),
            attributes: Attributes::RAM
        },
    ];
    regions.retain(|r| r.range.start < r.range.end);

    let ram =
        merge(platform.memory.iter().map(|bank| {
            align_up_saturating(bank.start, PAGE_SIZE)..align_down(bank.end, PAGE_SIZE)
        }));
    let holes: Vec<Range<u64>> = no_map
        .iter()
        .map(|r| align_down(r.start, PAGE_SIZE)..align_up_saturating(r.end, PAGE_SIZE))
        .collect();
    for bank in &ram {
        let mut pieces = subtract(bank, &image.whole());
        for hole in &holes {
            pieces = pieces.iter().flat_map(|p| subtract(p, hole)).collect();
        }
        for piece in pieces {
            regions.push(Region {
                name: "RAM",
                range: piece,
                attributes: Attributes::RAM,
            });
        }
    }

    for device in device_windows(platform, early_uart) {
        let image_range = image.whole();
        let memory_hit = ram
            .iter()
            .chain(core::iter::once(&image_range))
            .find(|m| overlaps(m, &device));
        if let Some(memory) = memory_hit {
            return Err(LayoutError::DeviceOverlapsMemory {
                device,
                memory: memory.clone(),
            });
        }
        regions.push(Region {
            name: "device",
            range: device,
            attributes: Attributes::DEVICE,
        });
    }

    for region in &regions {
        if overlaps(&region.range, movable_window) || region.range.end > 1 << VA_BITS {
            return Err(LayoutError::CollidesWithWindow {
                region: region.range.clone(),
            });
        }
    }
    regions.sort_by_key(|r| r.range.start);
    Ok(regions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::platform::{GicInfo, MmioDevice, Pl011Info};
    use crate::memory::mmu::translation_table::{MemoryKind, NotLive, TranslationTables};
    use alloc::string::String;

    const WINDOW: Range<u64> = 0x4000_0000_0000..0x4100_0000_0000;

    fn image() -> ImageLayout {
        ImageLayout {
            text: 0x4020_0000..0x4021_0000,
            rodata: 0x4021_0000..0x4021_4000,
            data: 0x4021_4000..0x40a2_0000,
            stack_guard: 0x40a2_0000..0x40a2_1000,
            stack: 0x40a2_1000..0x40a6_1000,
        }
    }

    fn qemu_virt() -> Platform {
        Platform {
            memory: alloc::vec![0x4000_0000..0x8000_0000],
            uart: Some(Pl011Info {
                base: 0x0900_0000,
                size: 0x1000,
                intid: Some(33),
                clock_hz: None,
            }),
            gic: Some(GicInfo {
                version: 3,
                distributor: 0x0800_0000..0x0801_0000,
                redistributor: 0x080a_0000..0x080e_0000,
                cpu_interface: None,
            }),
            virtio_mmio: (0..32)
                .map(|n| MmioDevice {
                    path: String::from("virtio_mmio"),
                    base: 0x0a00_0000 + n * 0x200,
                    size: 0x200,
                    intid: None,
                })
                .collect(),
            mmio: alloc::vec![0x0901_0000..0x0901_1000],
            ..Platform::default()
        }
    }

    fn build(regions: &[Region]) -> TranslationTables {
        let mut tables = TranslationTables::new().unwrap();
        for region in regions {
            let len = region.range.end - region.range.start;
            tables
                .map_range(
                    region.range.start,
                    region.range.start,
                    len,
                    region.attributes,
                    &NotLive,
                )
                .unwrap();
        }
        tables
    }

    #[test]
    fn image_parts_get_their_permissions_and_the_guard_is_a_hole() {
        let regions = identity_map_plan(&qemu_virt(), &image(), 0x0900_0000, &WINDOW).unwrap();
        let tables = build(&regions);
        let text = tables.walk(0x4020_0100).unwrap();
        assert_eq!((text.attributes, text.level), (Attributes::KERNEL_TEXT, 3));
        assert_eq!(
            tables.walk(0x4021_0000).unwrap().attributes,
            Attributes::KERNEL_RODATA
        );
        assert_eq!(
            tables.walk(0x4021_4000).unwrap().attributes,
            Attributes::RAM
        );
        assert_eq!(
            tables.walk(0x40a1_fff8).unwrap().attributes,
            Attributes::RAM
        );
        assert_eq!(tables.walk(0x40a2_0000), None);
        assert_eq!(tables.walk(0x40a2_0fff), None);
        assert_eq!(
            tables.walk(0x40a2_1000).unwrap().attributes,
            Attributes::RAM
        );
    }

    #[test]
    fn ram_around_the_image_uses_blocks_and_stays_non_executable() {
        let regions = identity_map_plan(&qemu_virt(), &image(), 0x0900_0000, &WINDOW).unwrap();
        let tables = build(&regions);
        // Below the image: the DTB's 2 MiB, one block.
        let dtb = tables.walk(0x4000_0000).unwrap();
        assert_eq!((dtb.level, dtb.attributes), (2, Attributes::RAM));
        // Just above the image: pages up to the next 2 MiB boundary, then blocks.
        assert_eq!(tables.walk(0x40a6_1000).unwrap().level, 3);
        assert_eq!(tables.walk(0x40c0_0000).unwrap().level, 2);
        assert_eq!(
            tables.walk(0x7fff_ffff).unwrap().attributes,
            Attributes::RAM
        );
        assert_eq!(tables.walk(0x8000_0000), None);
        assert!(regions
            .iter()
            .all(|r| !(r.attributes.writable && r.attributes.executable)));
    }

    #[test]
    fn device_windows_are_device_memory_and_widened_to_pages() {
        let regions = identity_map_plan(&qemu_virt(), &image(), 0x0900_0000, &WINDOW).unwrap();
        let tables = build(&regions);
        for address in [
            0x0900_0000,
            0x0800_0000,
            0x080d_fff8,
            0x0a00_3e00,
            0x0901_0000,
        ] {
            assert_eq!(
                tables.walk(address).unwrap().attributes.kind,
                MemoryKind::Device,
                "{address:#x}"
            );
        }
        // Not described, so not mapped (no blanket first-GiB mapping when windows exist).
        assert_eq!(tables.walk(0x0c00_0000), None);
        // 32 virtio windows of 0x200 merge into one 16 KiB region.
        assert!(regions
            .iter()
            .any(|r| r.range == (0x0a00_0000..0x0a00_4000)));
    }

    #[test]
    fn without_device_windows_everything_below_ram_is_device() {
        let platform = Platform {
            memory: alloc::vec![0x4000_0000..0x8000_0000],
            ..Platform::default()
        };
        let regions = identity_map_plan(&platform, &image(), 0x0900_0000, &WINDOW).unwrap();
        assert!(regions
            .iter()
            .any(|r| r.range == (0..0x4000_0000) && r.attributes == Attributes::DEVICE));
    }

    #[test]
    fn no_map_carveouts_are_left_out_of_ram() {
        let carveouts = [0x6000_0000..0x6020_0000, 0x6100_0800..0x6110_0000];
        let regions =
            identity_map_plan_excluding(&qemu_virt(), &image(), 0x0900_0000, &WINDOW, &carveouts)
                .unwrap();
        let tables = build(&regions);
        assert_eq!(tables.walk(0x6000_0000), None);
        assert_eq!(tables.walk(0x601f_fff8), None);
        assert_eq!(tables.walk(0x6100_0000), None, "widened to the page");
        assert_eq!(tables.walk(0x610f_f000), None);
        assert_eq!(
            tables.walk(0x5fff_f000).unwrap().attributes,
            Attributes::RAM
        );
        assert_eq!(
            tables.walk(0x6020_0000).unwrap().attributes,
            Attributes::RAM
        );
        assert_eq!(
            tables.walk(0x6110_0000).unwrap().attributes,
            Attributes::RAM
        );
    }

    #[test]
    fn device_over_ram_is_refused() {
        let mut platform = qemu_virt();
        platform.mmio.push(0x7fff_f000..0x8000_1000);
        assert_eq!(
            identity_map_plan(&platform, &image(), 0x0900_0000, &WINDOW),
            Err(LayoutError::DeviceOverlapsMemory {
                device: 0x7fff_f000..0x8000_1000,
                memory: 0x4000_0000..0x8000_0000
            })
        );
    }

    #[test]
    fn memory_in_the_movable_window_is_refused() {
        let mut platform = qemu_virt();
        platform.memory.push(0x4000_0000_0000..0x4000_4000_0000);
        assert!(matches!(
            identity_map_plan(&platform, &image(), 0x0900_0000, &WINDOW),
            Err(LayoutError::CollidesWithWindow { .. })
        ));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut broken = image();
        broken.rodata.start += 1;
        assert_eq!(
            identity_map_plan(&qemu_virt(), &broken, 0x0900_0000, &WINDOW),
            Err(LayoutError::BadImageLayout)
        );
        let mut swapped = image();
        core::mem::swap(&mut swapped.text, &mut swapped.stack);
        assert_eq!(
            identity_map_plan(&qemu_virt(), &swapped, 0x0900_0000, &WINDOW),
            Err(LayoutError::BadImageLayout)
        );
        assert_eq!(
            identity_map_plan(&Platform::default(), &image(), 0x0900_0000, &WINDOW),
            Err(LayoutError::NoMemory)
        );
    }

    #[test]
    fn merge_and_subtract() {
        assert_eq!(
            merge(alloc::vec![5..6, 0..2, 1..3, 3..4, 9..9]),
            alloc::vec![0..4, 5..6]
        );
        assert_eq!(subtract(&(0..10), &(2..4)), alloc::vec![0..2, 4..10]);
        assert_eq!(subtract(&(0..10), &(0..10)), alloc::vec![]);
        assert_eq!(subtract(&(0..10), &(10..12)), alloc::vec![0..10]);
    }
}
