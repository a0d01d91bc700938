//! libFuzzer target: any bytes through the device-tree entry point and every reader of the
//! tree (`monolith::fuzz::exercise`). A panic anywhere is a crash libFuzzer reports. Each
//! input is timed by `monolith_fuzz_timing::measured` (thread CPU time, slow inputs saved
//! for `cargo xtask fuzz` to replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    monolith_fuzz_timing::measured(data, |data| {
        std::hint::black_box(monolith::fuzz::exercise(data));
    });
});
