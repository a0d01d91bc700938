//! libFuzzer target: any bytes through the video device's protocol core
//! (`monolith_video_device::fuzzing::exercise`: chains, guest memory, resets, with the
//! fake codec). A panic anywhere, or a broken completion invariant, is a crash. Each input
//! is timed by `monolith_fuzz_timing::measured` (thread CPU time, slow inputs saved for
//! `cargo xtask fuzz` to replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    monolith_fuzz_timing::measured(data, |data| {
        let _ = monolith_video_device::fuzzing::exercise(data);
    });
});
