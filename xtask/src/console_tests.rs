//! Console test scripts: boot the firmware, talk to its serial console, check the answers.
//!
//! Theory of operation
//! -------------------
//! Each entry of [`CONSOLE_TESTS`] names a script and the QEMU options it boots with, in the
//! same syntax as `cargo xtask run` (so `--board virt-2bank --append "..."` reads the same
//! everywhere). `cargo xtask test` boots a fresh QEMU per entry, hands the script a
//! [`Console`], and counts it passed when the script returns `Ok`. To add a test, write a
//! `fn(&mut Console) -> Result<(), ExpectError>` and list it here; the shell's tests send
//! commands with [`Console::send_line`] and `expect` the replies.
//!
//! Patterns are regular expressions matched against the console output with CR removed,
//! in the order the boot summary prints its blocks (banner, memory, reserved-memory,
//! devices). Addresses accept any zero padding (`0x40000000`, `0x0040000000`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::expect::{Console, ExpectError};

/// DMA-BUF heaps, dma-bufs and their files.
mod buffers;
/// The display's scripts (`gpu pattern`, `gpu map`), not listed below until the firmware
/// has its `gpu` command.
pub mod display;
/// The debug shell's scripts: every command, bad input, Linux file formats, random lines.
mod shell;
/// Video: the clip decoded by our vhost-user device and shown on the GPU.
mod video;

pub struct ConsoleTest {
    pub name: &'static str,
    /// QEMU options, `cargo xtask run` syntax.
    pub qemu: &'static str,
    pub script: fn(&mut Console) -> Result<(), ExpectError>,
}

pub const CONSOLE_TESTS: &[ConsoleTest] = &[
    ConsoleTest {
        name: "video_plays_every_frame",
        qemu: "--board virt-video",
        script: video::plays_every_frame,
    },
    ConsoleTest {
        name: "video_resolution_change",
        qemu: "--board virt-video --clip generated:640x360:20,320x240:20",
        script: video::resolution_change,
    },
    ConsoleTest {
        name: "video_fault_error_response",
        qemu: "--board virt-video --clip generated:320x240:30 \
               --video-fault error-response=resource-queue@5",
        script: video::error_response,
    },
    ConsoleTest {
        name: "video_fault_error_event",
        qemu: "--board virt-video --clip generated:320x240:30 --video-fault error-event@10",
        script: video::error_event,
    },
    ConsoleTest {
        name: "video_fault_stalled_queue",
        qemu: "--board virt-video --clip generated:320x240:30 --video-fault stall@10",
        script: video::stalled_queue,
    },
    ConsoleTest {
        name: "video_plays_at_boot",
        qemu: "--board virt --video on --clip generated:320x240:30 \
               --append \"monolith.display=map monolith.video=loop\"",
        script: video::plays_at_boot,
    },
    ConsoleTest {
        name: "video_two_banks",
        qemu: "--board virt-2bank --video on --clip generated:320x240:30",
        script: video::two_banks,
    },
    ConsoleTest {
        name: "video_stop_mid_play",
        qemu: "--board virt-video --clip generated:320x240:30",
        script: video::stop_mid_play,
    },
    ConsoleTest {
        name: "video_without_decoder",
        qemu: "",
        script: video::without_decoder,
    },
    ConsoleTest {
        name: "shell_heaps_and_buffers",
        qemu: "",
        script: buffers::heaps_and_buffers,
    },
    ConsoleTest {
        name: "display_test_pattern",
        qemu: "",
        script: display::test_pattern,
    },
    ConsoleTest {
        name: "display_pattern_at_boot",
        qemu: "--append \"monolith.display=pattern\"",
        script: display::pattern_at_boot,
    },
    ConsoleTest {
        name: "display_memory_map_changes",
        qemu: "",
        script: display::memory_map_changes,
    },
    ConsoleTest {
        name: "boot_banner",
        qemu: "",
        script: boot_banner,
    },
    ConsoleTest {
        name: "boot_summary",
        qemu: "",
        script: boot_summary,
    },
    ConsoleTest {
        // 1.2 MB of valid tree (QEMU's, padded with `dtc -S`): too big for QEMU to place
        // below the image, so the firmware finds no device tree at boot.
        name: "boot_without_device_tree_stops_cleanly",
        qemu: "--dtb src/dt/testdata/oversized-1200k.dtb",
        script: boot_without_device_tree_stops_cleanly,
    },
    ConsoleTest {
        // The default board's tree with one property turned into FDT_NOP words.
        name: "boot_nop_tree",
        qemu: "--dtb src/dt/testdata/variants/virt-board.nop.dtb",
        script: boot_legal_variant,
    },
    ConsoleTest {
        // The default board's tree as `dtc -V 16` writes it.
        name: "boot_version_16_tree",
        qemu: "--dtb src/dt/testdata/variants/virt-board.v16.dtb",
        script: boot_legal_variant,
    },
    ConsoleTest {
        name: "boot_summary_two_banks",
        qemu: "--board virt-2bank",
        script: boot_summary_two_banks,
    },
    ConsoleTest {
        name: "shell_commands",
        qemu: "",
        script: shell::commands,
    },
    ConsoleTest {
        name: "shell_linux_formats",
        qemu: "",
        script: shell::linux_formats,
    },
    ConsoleTest {
        name: "shell_bad_input",
        qemu: "",
        script: shell::bad_input,
    },
    ConsoleTest {
        name: "shell_cma_mem_trace",
        qemu: "",
        script: shell::cma_mem_trace,
    },
    ConsoleTest {
        name: "shell_trace_file",
        qemu: "--trace src/shell_service/testdata/sample.trace",
        script: shell::trace_file,
    },
    ConsoleTest {
        name: "shell_random_lines",
        qemu: "",
        script: shell::random_lines,
    },
    ConsoleTest {
        name: "shell_bench",
        qemu: "",
        script: shell::bench,
    },
    ConsoleTest {
        name: "shell_reboot",
        qemu: "",
        script: shell::reboot,
    },
];

/// Give console test `name`'s QEMU a QMP socket of its own
/// (`$TMPDIR/monolith-<pid>-<hash of name>.sock`, so tests running side by side never
/// share one); returns its path.
pub fn add_qmp(command: &mut Command, name: &str) -> anyhow::Result<PathBuf> {
    // Short and outside the work tree: a Unix socket address holds about 108 bytes, and a
    // clone's path (CI's, say) may already use most of them. Unique per test and per run.
    let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let socket = std::env::temp_dir().join(format!(
        "monolith-{}-{:08x}.sock",
        std::process::id(),
        name_hash as u32
    ));
    crate::run::prepare_socket(&socket)?;
    command.args(crate::qemu::qmp_args(&socket));
    Ok(socket)
}

const BOOT: Duration = Duration::from_secs(30);

const BANNER: &str = r"Monolith \d+\.\d+\.\d+";
const MEMORY_HEADER: &str = r"(?m)^memory: \d+ bank\(s\)";
const RESERVED_HEADER: &str = r"(?m)^reserved-memory: \d+ region\(s\)";
const DEVICES_HEADER: &str = r"(?m)^devices:";
const UART_LINE: &str = r"(?m)^\s*uart\s+pl011 @ 0x0*9000000\b";

/// One line of a block listing `start..end` in hex, any zero padding.
fn range_line(start: u64, end: u64) -> String {
    format!(r"(?m)^\s*.*0x0*{start:x}\.\.0x0*{end:x}\b.*$")
}

/// A reserved-memory entry: its node name and its range on one line.
fn region_line(name: &str, start: u64, end: u64) -> String {
    format!(
        r"(?m)^\s*{}\s+0x0*{start:x}\.\.0x0*{end:x}\b.*reusable.*$",
        regex::escape(name)
    )
}

/// Wait for `until`, then check that the text before it matches every pattern, in any
/// order (the tree, and so the summary, need not list regions in address order).
fn expect_block(
    console: &mut Console,
    until: &str,
    patterns: &[String],
) -> Result<(), ExpectError> {
    let block = console.expect(until, BOOT)?;
    for pattern in patterns {
        let regex =
            regex::Regex::new(pattern).map_err(|e| console.error(format!("bad pattern: {e}")))?;
        if !regex.is_match(&block) {
            return Err(console.error(format!("`{pattern}` missing before `{until}`")));
        }
    }
    Ok(())
}

fn boot_banner(console: &mut Console) -> Result<(), ExpectError> {
    console.expect(BANNER, BOOT).map(|_| ())
}

/// No device tree where QEMU puts one: one clear FATAL line naming what was looked at, then
/// PSCI SYSTEM_OFF (QEMU exits with status 0); no exception dump, no banner, no hang.
fn boot_without_device_tree_stops_cleanly(console: &mut Console) -> Result<(), ExpectError> {
    console.expect(r"FATAL: device tree: [^\n]*0x40000000", BOOT)?;
    match console.expect_exit(BOOT)? {
        Some(0) => {}
        other => {
            return Err(console.error(format!(
                "QEMU exit status {other:?}, expected 0 (PSCI SYSTEM_OFF)"
            )))
        }
    }
    let transcript = console.transcript();
    if transcript.contains("*** Unhandled exception") || transcript.matches("FATAL:").count() != 1 {
        return Err(console.error("expected exactly one FATAL line and no exception dump".into()));
    }
    Ok(())
}

/// Default board: one 1 GiB bank, the overlay's default CMA area, the PL011.
fn boot_summary(console: &mut Console) -> Result<(), ExpectError> {
    console.expect(BANNER, BOOT)?;
    console.expect(MEMORY_HEADER, BOOT)?;
    expect_block(
        console,
        RESERVED_HEADER,
        &[range_line(0x4000_0000, 0x8000_0000)],
    )?;
    expect_block(
        console,
        DEVICES_HEADER,
        &[region_line("linux,cma@50000000", 0x5000_0000, 0x6000_0000)],
    )?;
    console.expect(UART_LINE, BOOT).map(|_| ())
}

/// A legal variant of the default board's tree: the same summary as the clean tree, then a
/// shell that serves the same CMA area.
fn boot_legal_variant(console: &mut Console) -> Result<(), ExpectError> {
    boot_summary(console)?;
    shell::legal_tree_variant(console)
}

/// `virt-2bank`: 2 GiB from QEMU's two NUMA banks (the firmware may list adjacent banks
/// merged), one video region in each bank.
fn boot_summary_two_banks(console: &mut Console) -> Result<(), ExpectError> {
    console.expect(BANNER, BOOT)?;
    console.expect(r"(?m)^memory: 2 bank\(s\), 2 GiB total", BOOT)?;
    console.expect(&range_line(0x4000_0000, 0x8000_0000), BOOT)?;
    console.expect(&range_line(0x8000_0000, 0xc000_0000), BOOT)?;
    console.expect(RESERVED_HEADER, BOOT)?;
    expect_block(
        console,
        DEVICES_HEADER,
        &[
            region_line("video@50000000", 0x5000_0000, 0x6000_0000),
            region_line("video@90000000", 0x9000_0000, 0xa000_0000),
        ],
    )?;
    console.expect(UART_LINE, BOOT).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_options::{split_words, RunOptions};

    #[test]
    fn names_are_unique_and_options_parse() {
        let mut names: Vec<&str> = CONSOLE_TESTS.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CONSOLE_TESTS.len());
        for test in CONSOLE_TESTS {
            RunOptions::from_words(&split_words(test.qemu).unwrap()).unwrap();
        }
    }

    /// The summary as the firmware printed it on the default board (captured from a run).
    const SUMMARY: &str = "
Monolith 0.1.0 - contiguous memory for devices that cannot scatter-gather
  running at EL1
  dtb       0x40000000..0x40008d50 (36176 B)
memory: 1 bank(s), 1 GiB total
  0x0040000000..0x0080000000  1 GiB
reserved-memory: 1 region(s)
  linux,cma@50000000   0x0050000000..0x0060000000  256 MiB shared-dma-pool [reusable linux,cma-default]
devices:
  uart      pl011 @ 0x9000000, intid 33, 24000000 Hz clock, rx by interrupt
";

    fn matches_in_order(text: &str, patterns: &[String]) -> bool {
        let mut rest = text;
        for pattern in patterns {
            match regex::Regex::new(pattern).unwrap().find(rest) {
                Some(found) => rest = &rest[found.end()..],
                None => return false,
            }
        }
        true
    }

    #[test]
    fn summary_patterns_match_the_real_summary_and_reject_others() {
        let default_board = [
            BANNER.to_string(),
            MEMORY_HEADER.to_string(),
            range_line(0x4000_0000, 0x8000_0000),
            RESERVED_HEADER.to_string(),
            region_line("linux,cma@50000000", 0x5000_0000, 0x6000_0000),
            DEVICES_HEADER.to_string(),
            UART_LINE.to_string(),
        ];
        assert!(matches_in_order(SUMMARY, &default_board));
        // The dtb line is not a memory bank: the bank must come after the memory header.
        let no_bank = SUMMARY.replace("  0x0040000000..0x0080000000  1 GiB\n", "");
        assert!(!matches_in_order(&no_bank, &default_board));
        let wrong_end = SUMMARY.replace("0x0080000000  1 GiB", "0x0800000000  1 GiB");
        assert!(!matches_in_order(&wrong_end, &default_board));
        let not_reusable = SUMMARY.replace("[reusable linux,cma-default]", "[linux,cma-default]");
        assert!(!matches_in_order(&not_reusable, &default_board));
        let no_uart = SUMMARY.replace("pl011 @ 0x9000000", "none (early console)");
        assert!(!matches_in_order(&no_uart, &default_board));
    }

    /// A console that prints `text` and ends, standing in for QEMU.
    fn fake_console(text: &str) -> Console {
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "printf '%s' \"$1\"", "sh", text]);
        Console::spawn(command).unwrap()
    }

    const TWO_BANKS: &str = "
Monolith 0.1.0 - contiguous memory for devices that cannot scatter-gather
memory: 2 bank(s), 2 GiB total
  0x0040000000..0x0080000000  1 GiB
  0x0080000000..0x00c0000000  1 GiB
reserved-memory: 2 region(s)
  video@90000000       0x0090000000..0x00a0000000  256 MiB shared-dma-pool [reusable]
  video@50000000       0x0050000000..0x0060000000  256 MiB shared-dma-pool [reusable]
devices:
  uart      pl011 @ 0x9000000, intid 33, 24000000 Hz clock, rx by interrupt
";

    #[test]
    fn scripts_pass_on_real_summaries_in_any_region_order() {
        boot_banner(&mut fake_console(SUMMARY)).unwrap();
        boot_summary(&mut fake_console(SUMMARY)).unwrap();
        boot_summary_two_banks(&mut fake_console(TWO_BANKS)).unwrap();
    }

    #[test]
    fn scripts_fail_with_the_transcript_when_something_is_missing() {
        let error = boot_summary(&mut fake_console(
            &SUMMARY.replace("linux,cma@50000000", "other@1"),
        ))
        .unwrap_err();
        assert!(error.message.contains("missing"), "{error}");
        assert!(error.transcript.contains("reserved-memory: 1 region(s)"));
        let one_region = TWO_BANKS.replace("  video@90000000       0x0090000000..0x00a0000000  256 MiB shared-dma-pool [reusable]\n", "");
        assert!(boot_summary_two_banks(&mut fake_console(&one_region)).is_err());
        let merged_banks = TWO_BANKS.replace(
            "memory: 2 bank(s), 2 GiB total\n  0x0040000000..0x0080000000  1 GiB\n  0x0080000000..0x00c0000000  1 GiB\n",
            "memory: 1 bank(s), 2 GiB total\n  0x0040000000..0x00c0000000  2 GiB\n",
        );
        assert_ne!(merged_banks, TWO_BANKS);
        assert!(
            boot_summary_two_banks(&mut fake_console(&merged_banks)).is_err(),
            "two /memory nodes must not be reported as one bank"
        );
        assert!(
            boot_summary_two_banks(&mut fake_console(SUMMARY)).is_err(),
            "1 GiB is not the 2-bank board"
        );
    }
}
