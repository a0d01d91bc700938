//! Architecture half of [`crate::exception`]: the vector table, the saved context, the
//! dispatcher and the fatal report. See the parent module for the design.

use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::VBAR_EL1;
use tock_registers::interfaces::Writeable;

use super::syndrome;
use super::{write_report, ExceptionContext, FaultInfo};

core::arch::global_asm!(include_str!("exception.s"));

/// Size of the exception stack (SP_EL1). Handlers are short; the fatal report formats a
/// few lines, and IRQ handlers run here too.
pub const EXCEPTION_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
pub struct ExceptionStack([u8; EXCEPTION_STACK_SIZE]);

/// The stack exceptions run on; boot.s points SP_EL1 at its top. Nothing in Rust touches
/// it, the symbol only gives the memory a home in .bss.
#[no_mangle]
pub static mut __exception_stack: ExceptionStack = ExceptionStack([0; EXCEPTION_STACK_SIZE]);

extern "C" {
    static __exception_vectors: u8;
}

/// Install the vector table. Safe to call again; the table never changes.
pub fn init() {
    let vectors = &raw const __exception_vectors as u64;
    // VBAR_EL1 takes the address of our 2 KiB aligned, 16-entry table, whose entries only
    // save state on the exception stack and call `exception_dispatch`; the ISB makes the
    // next exception use it.
    VBAR_EL1.set(vectors);
    barrier::isb(barrier::SY);
}

static FAULT_EXPECTED: AtomicBool = AtomicBool::new(false);
static FAULT_SEEN: AtomicBool = AtomicBool::new(false);
static FAULT_ESR: AtomicU64 = AtomicU64::new(0);
static FAULT_FAR: AtomicU64 = AtomicU64::new(0);
static FAULT_ELR: AtomicU64 = AtomicU64::new(0);

/// Run `f`, catching the first synchronous abort it causes instead of stopping.
///
/// A data abort is recorded and the faulting instruction skipped (ELR + 4), so `f` goes on
/// as if the access had not happened; make the access with inline assembly so it is one
/// known instruction. An instruction abort (jumping to non-executable memory) returns to
/// the link register: provoke it with a branch-with-link to the bad address. Any later
/// fault, or any other kind of exception, is fatal as usual. Not reentrant.
pub fn expect_fault<F: FnOnce()>(f: F) -> Option<FaultInfo> {
    FAULT_SEEN.store(false, Ordering::SeqCst);
    FAULT_EXPECTED.store(true, Ordering::SeqCst);
    // The handler runs "inside" f from the compiler's point of view; keep f's accesses
    // between arming and reading the result.
    compiler_fence(Ordering::SeqCst);
    f();
    compiler_fence(Ordering::SeqCst);
    FAULT_EXPECTED.store(false, Ordering::SeqCst);
    FAULT_SEEN.load(Ordering::SeqCst).then(|| FaultInfo {
        esr: FAULT_ESR.load(Ordering::SeqCst),
        far: FAULT_FAR.load(Ordering::SeqCst),
        elr: FAULT_ELR.load(Ordering::SeqCst),
    })
}

/// Called for an armed [`expect_fault`]: true if the exception was consumed.
fn take_expected_fault(context: &mut ExceptionContext) -> bool {
    let ec = syndrome::exception_class(context.esr);
    let resume_at = match ec {
        syndrome::EC_DATA_ABORT_CURRENT_EL => context.elr + 4,
        syndrome::EC_INSTRUCTION_ABORT_CURRENT_EL => context.gpr[30],
        _ => return false,
    };
    if !FAULT_EXPECTED.swap(false, Ordering::SeqCst) {
        return false;
    }
    FAULT_ESR.store(context.esr, Ordering::SeqCst);
    FAULT_FAR.store(context.far, Ordering::SeqCst);
    FAULT_ELR.store(context.elr, Ordering::SeqCst);
    FAULT_SEEN.store(true, Ordering::SeqCst);
    context.elr = resume_at;
    true
}

/// The Rust side of every vector (called from exception.s).
#[no_mangle]
extern "C" fn exception_dispatch(context: &mut ExceptionContext, vector: u64) {
    match vector {
        // IRQ from the kernel or from a handler that unmasked IRQs.
        1 | 5 => crate::driver::handle_irq(),
        0 if take_expected_fault(context) => {}
        _ => report_and_stop(context, vector),
    }
}

struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        crate::print!("{s}");
        Ok(())
    }
}

fn report_and_stop(context: &ExceptionContext, vector: u64) -> ! {
    let frame_size = core::mem::size_of::<ExceptionContext>() as u64;
    let interrupted_sp = match vector / 4 {
        // Taken on SP_EL1 from SP_EL1: the frame was pushed right below the old SP.
        1 => context as *const ExceptionContext as u64 + frame_size,
        _ => context.sp_el0,
    };
    crate::println!();
    let _ = write_report(&mut Console, context, vector, interrupted_sp);
    crate::panic::stop_failure()
}
