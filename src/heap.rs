//! The kernel heap behind `alloc` (Vec, String, Box): a fixed region in BSS.
//!
//! Kernel objects are long-lived, unmovable data; they never come from the buddy
//! allocator's movable or CMA pageblocks, so a static region is the honest home for them.

use linked_list_allocator::LockedHeap;

/// Size of the kernel heap.
pub const KERNEL_HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; KERNEL_HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; KERNEL_HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// # Safety
/// Called once, before the first allocation.
pub unsafe fn init() {
    // Safety: HEAP_AREA is used by nothing else and lives for the whole run; init runs once.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_AREA) as *mut u8;
        ALLOCATOR.lock().init(start, KERNEL_HEAP_SIZE);
    }
}

/// Bytes in use and free, for meminfo-style reports.
pub fn usage() -> (usize, usize) {
    let heap = ALLOCATOR.lock();
    (heap.used(), heap.free())
}
