//! In-QEMU test harness for test images (`tests/*.rs`, built with `--features qemu-test`).
//!
//! # Theory of operation
//!
//! A test image is a whole firmware image whose `kernel_init` calls [`run_tests`] after the
//! normal boot (exceptions, heap, device tree, MMU, drivers). Output imitates libtest so a
//! runner can read it: `running N tests`, one `test NAME ... ok` or
//! `test NAME ... FAILED: reason` line each, then exactly `P passed, F failed`. The verdict
//! leaves QEMU through semihosting (`-semihosting` on the QEMU command line): exit status
//! 0 when every test passed, 1 otherwise. A panic or an unexpected exception in a test
//! build also exits with status 1, so a broken test never hangs the runner.

use alloc::string::String;

#[doc(hidden)]
pub use alloc::format as __format;
use qemu_exit::QEMUExit;

/// One in-QEMU test.
pub struct TestCase {
    pub name: &'static str,
    pub run: fn() -> Result<(), String>,
}

/// Leave QEMU with exit status 0.
pub fn exit_success() -> ! {
    qemu_exit::AArch64::new().exit_success()
}

/// Leave QEMU with exit status 1.
pub fn exit_failure() -> ! {
    qemu_exit::AArch64::new().exit_failure()
}

/// Run `tests` in order, report, and exit QEMU with the verdict.
pub fn run_tests(image: &str, tests: &[TestCase]) -> ! {
    crate::println!("test image {image}");
    crate::println!("running {} tests", tests.len());
    let mut failed = 0;
    for test in tests {
        crate::print!("test {} ... ", test.name);
        match (test.run)() {
            Ok(()) => crate::println!("ok"),
            Err(reason) => {
                failed += 1;
                crate::println!("FAILED: {reason}");
            }
        }
    }
    crate::println!("{} passed, {} failed", tests.len() - failed, failed);
    if failed == 0 {
        exit_success()
    } else {
        exit_failure()
    }
}

/// `return Err(..)` from a test unless the condition holds.
#[macro_export]
macro_rules! qemu_ensure {
    ($condition:expr) => {
        if !$condition {
            return Err($crate::test_harness::__format!("{}:{}: condition failed: {}", file!(), line!(), stringify!($condition)));
        }
    };
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::test_harness::__format!("{}:{}: {}", file!(), line!(), $crate::test_harness::__format!($($message)+)));
        }
    };
}

/// `return Err(..)` from a test unless both sides are equal.
#[macro_export]
macro_rules! qemu_ensure_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err($crate::test_harness::__format!(
                        "{}:{}: {} != {}: {:?} vs {:?}",
                        file!(),
                        line!(),
                        stringify!($left),
                        stringify!($right),
                        left,
                        right
                    ));
                }
            }
        }
    };
}
