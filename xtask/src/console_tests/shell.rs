//! Console scripts for the debug shell (src/shell, src/shell_service).
//!
//! Theory of operation
//! -------------------
//! Each script boots the default board (one 1 GiB bank, the 256 MiB default CMA area
//! `linux,cma@50000000`), waits for the first prompt, and then talks to the shell one line
//! at a time: [`run`] types a line, waits for the next prompt and returns what the command
//! printed, after checking that the line was echoed exactly once. Waiting for the prompt
//! after every line is also the flow control: the UART never gets more than one line
//! ahead of the shell.
//!
//! The file formats are checked the way the tools that read them on Linux parse them
//! (procps for meminfo, the `Node N, zone Z` + per-order counts of buddyinfo, the
//! `start-end : name` lines of iomem), and cross-checked against each other: buddyinfo's
//! free pages add up to meminfo's MemFree, pagetypeinfo's per-type counts add up to
//! buddyinfo. Bad input must leave the memory numbers exactly as they were.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::expect::{Console, ExpectError};

pub(super) const PROMPT: &str = "monolith> ";
pub(super) const BOOT: Duration = Duration::from_secs(30);
pub(super) const REPLY: Duration = Duration::from_secs(20);
/// The default board's CMA area.
pub(super) const AREA: &str = "linux,cma@50000000";
const AREA_BASE_PFN: u64 = 0x50000;
const AREA_PAGES: u64 = 65536;
/// 1 GiB of RAM in pages: the shell's page limit.
const RAM_PAGES: u64 = 262_144;

type Result<T> = std::result::Result<T, ExpectError>;

pub(super) fn boot(console: &mut Console) -> Result<()> {
    console.expect(&regex::escape(PROMPT), BOOT).map(|_| ())
}

/// Types `line`, returns the command's output (without the echoed line and the prompt).
pub(super) fn run(console: &mut Console, line: &str) -> Result<String> {
    run_with(console, line, REPLY)
}

pub(super) fn run_with(console: &mut Console, line: &str, timeout: Duration) -> Result<String> {
    console.send_line(line)?;
    let captured = console.expect(&regex::escape(PROMPT), timeout)?;
    let body = captured.strip_suffix(PROMPT).unwrap_or(&captured);
    let (echo, output) = body.split_once('\n').unwrap_or((body, ""));
    if echo != line {
        return Err(console.error(format!(
            "`{line}` was echoed as `{echo}` (echo must be exact, once)"
        )));
    }
    Ok(output.to_string())
}

/// Runs `line` and checks its output against `pattern` (a regex).
pub(super) fn expect_output(console: &mut Console, line: &str, pattern: &str) -> Result<String> {
    let output = run(console, line)?;
    let regex = Regex::new(pattern).map_err(|e| console.error(format!("bad pattern: {e}")))?;
    if !regex.is_match(&output) {
        return Err(console.error(format!(
            "`{line}` printed {output:?}, which does not match `{pattern}`"
        )));
    }
    Ok(output)
}

/// Exactly this output.
pub(super) fn expect_exact(console: &mut Console, line: &str, expected: &str) -> Result<()> {
    let output = run(console, line)?;
    if output != expected {
        return Err(console.error(format!(
            "`{line}` printed {output:?}, expected {expected:?}"
        )));
    }
    Ok(())
}

pub(super) fn number_file(console: &mut Console, path: &str) -> Result<u64> {
    let output = run(console, &format!("cat {path}"))?;
    let Some(value) = output.strip_suffix('\n').and_then(|v| v.parse().ok()) else {
        return Err(console.error(format!("{path}: {output:?} is not `%llu\\n`")));
    };
    Ok(value)
}

/// A numeric file must hold `expected`.
fn expect_number(console: &mut Console, path: &str, expected: u64) -> Result<()> {
    let value = number_file(console, path)?;
    check(console, value == expected, || {
        format!("{path} holds {value}, expected {expected}")
    })
}

pub(super) fn debugfs(attr: &str) -> String {
    format!("/sys/kernel/debug/cma/{AREA}/{attr}")
}

fn sysfs(attr: &str) -> String {
    format!("/sys/kernel/mm/cma/{AREA}/{attr}")
}

/// `/proc/meminfo` as procps reads it: `Key: value [kB]` per line, every line.
pub(super) fn meminfo(console: &mut Console) -> Result<BTreeMap<String, u64>> {
    let text = run(console, "cat /proc/meminfo")?;
    parse_meminfo(&text).map_err(|e| console.error(e))
}

fn parse_meminfo(text: &str) -> std::result::Result<BTreeMap<String, u64>, String> {
    let line_re = Regex::new(r"^([A-Za-z0-9_()]+):\s+(\d+)( kB)?$").unwrap();
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let captures = line_re
            .captures(line)
            .ok_or_else(|| format!("meminfo line {line:?} is not `Key:  N kB`"))?;
        values.insert(captures[1].to_string(), captures[2].parse().unwrap_or(0));
    }
    for key in ["MemTotal", "MemFree", "CmaTotal", "CmaFree"] {
        if !values.contains_key(key) {
            return Err(format!("meminfo has no {key}:\n{text}"));
        }
    }
    Ok(values)
}

/// `/proc/buddyinfo`: per zone, the 11 free-block counts (orders 0..=10).
fn parse_buddyinfo(text: &str) -> std::result::Result<Vec<(String, Vec<u64>)>, String> {
    let line_re = Regex::new(r"^Node (\d+), zone\s+(\S+)((?:\s+\d+){11})\s*$").unwrap();
    let mut zones = Vec::new();
    for line in text.lines() {
        let captures = line_re.captures(line).ok_or_else(|| {
            format!("buddyinfo line {line:?} is not `Node N, zone Z` + 11 counts")
        })?;
        let counts = captures[3]
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        zones.push((captures[2].to_string(), counts));
    }
    if zones.is_empty() {
        return Err("buddyinfo is empty".into());
    }
    Ok(zones)
}

/// `/proc/zoneinfo`'s numbers by name (`pages free`, `min`, ..., `start_pfn`) for one zone;
/// the pageset's lines (indented 14 spaces) as `pcp count`, `pcp high`, `pcp batch`.
fn parse_zoneinfo(text: &str) -> std::result::Result<BTreeMap<String, u64>, String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if !Regex::new(r"^Node 0, zone\s+\S+$")
        .unwrap()
        .is_match(header)
    {
        return Err(format!("zoneinfo starts with {header:?}"));
    }
    let field = Regex::new(r"^(\s+)(pages free|[a-z_]+):?\s+(\d+)$").unwrap();
    let mut values = BTreeMap::new();
    for line in lines {
        if let Some(c) = field.captures(line) {
            let name = if c[1].len() == 14 {
                format!("pcp {}", &c[2])
            } else {
                c[2].to_string()
            };
            values.insert(name, c[3].parse().unwrap_or(0));
        }
    }
    for key in [
        "pages free",
        "min",
        "low",
        "high",
        "managed",
        "cma",
        "pcp count",
        "pcp high",
        "pcp batch",
        "start_pfn",
    ] {
        if !values.contains_key(key) {
            return Err(format!("zoneinfo has no {key}:\n{text}"));
        }
    }
    Ok(values)
}

/// A `/proc/iomem` line: indent (2 per level), `start-end : name`, at least 8 hex digits.
fn parse_iomem(text: &str) -> std::result::Result<Vec<(usize, u64, u64, String)>, String> {
    let line_re = Regex::new(r"^((?:  )*)([0-9a-f]{8,})-([0-9a-f]{8,}) : (\S.*)$").unwrap();
    let mut entries: Vec<(usize, u64, u64, String)> = Vec::new();
    for line in text.lines() {
        let c = line_re
            .captures(line)
            .ok_or_else(|| format!("iomem line {line:?} does not match `%08llx-%08llx : name`"))?;
        let depth = c[1].len() / 2;
        let start = u64::from_str_radix(&c[2], 16).unwrap_or(0);
        let end = u64::from_str_radix(&c[3], 16).unwrap_or(0);
        if start > end {
            return Err(format!("iomem line {line:?}: start after end"));
        }
        // A child lies inside the nearest shallower line above it.
        if depth > 0 {
            let parent = entries
                .iter()
                .rev()
                .find(|e| e.0 == depth - 1)
                .ok_or_else(|| format!("iomem line {line:?} has no parent"))?;
            if !(parent.1 <= start && end <= parent.2) {
                return Err(format!(
                    "iomem line {line:?} is outside its parent {}",
                    parent.3
                ));
            }
        }
        entries.push((depth, start, end, c[4].to_string()));
    }
    Ok(entries)
}

/// `handle N pfn 0x...`: the handle and the pfn.
pub(super) fn parse_handle(console: &Console, output: &str) -> Result<(u64, u64)> {
    let re = Regex::new(r"handle (\d+) pfn 0x([0-9a-f]+)").unwrap();
    let captures = re
        .captures(output)
        .ok_or_else(|| console.error(format!("no `handle N pfn 0x..` in {output:?}")))?;
    Ok((
        captures[1].parse().unwrap_or(0),
        u64::from_str_radix(&captures[2], 16).unwrap_or(0),
    ))
}

pub(super) fn check(console: &Console, ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(console.error(what()))
    }
}

/// Every command once, completion, and `poweroff` at the end.
pub fn commands(console: &mut Console) -> Result<()> {
    boot(console)?;
    let help = run(console, "help")?;
    for name in [
        "help", "echo", "ls", "cat", "dt", "mem", "cma", "gpu", "heap", "dmabuf", "trace", "bench",
        "log", "poweroff", "reboot",
    ] {
        let re = Regex::new(&format!(r"(?m)^{name}\b")).unwrap();
        check(console, re.is_match(&help), || {
            format!("help does not list {name}:\n{help}")
        })?;
    }
    expect_output(console, "help cma", r"^usage: cma list\|alloc AREA PAGES")?;
    expect_exact(console, "echo hello   world", "hello world\n")?;
    expect_exact(console, "echo 'quoted   words'", "quoted   words\n")?;
    expect_exact(console, "ls /", "dev/\nproc/\nsys/\n")?;
    expect_exact(
        console,
        "ls /proc",
        "buddyinfo\ndevice-tree/\niomem\nmeminfo\npagetypeinfo\nzoneinfo\n",
    )?;
    expect_exact(console, "ls /sys/kernel/mm/cma", &format!("{AREA}/\n"))?;
    expect_exact(
        console,
        &format!("ls /sys/kernel/debug/cma/{AREA}"),
        "alloc\nbase_pfn\nbitmap\ncount\nfree\nmaxchunk\norder_per_bit\nused\n",
    )?;
    // The device tree: dts syntax from `dt`, decoded properties under /proc/device-tree.
    expect_output(
        console,
        "dt /pl011@9000000",
        r#"(?m)^/pl011@9000000 \{\n(.*\n)*    compatible = "arm,pl011", "arm,primecell";$"#,
    )?;
    expect_output(
        console,
        "dt /pl011@9000000/reg",
        r"^reg = <0x0 0x9000000 0x0 0x1000>;\n$",
    )?;
    expect_output(console, "dt", r"(?m)^/ \{$(.*\n)*^    pl011@9000000 \{$")?;
    expect_exact(
        console,
        "cat /proc/device-tree/pl011@9000000/compatible",
        "arm,pl011\narm,primecell\n",
    )?;
    expect_exact(
        console,
        "cat /proc/device-tree/pl011@9000000/name",
        "pl011\n",
    )?;
    expect_exact(
        console,
        "cat /proc/device-tree/pl011@9000000/reg",
        "<0x0 0x9000000 0x0 0x1000>\n",
    )?;
    expect_output(
        console,
        "ls /proc/device-tree",
        r"(?m)^pl011@9000000/$(.*\n)*",
    )?;
    expect_output(
        console,
        "cat /proc/device-tree/reserved-memory/linux,cma@50000000/compatible",
        r"^shared-dma-pool\n$",
    )?;
    // Log level round trip.
    expect_exact(console, "log", "log level: info\n")?;
    expect_exact(console, "log warn", "")?;
    expect_exact(console, "log", "log level: warn\n")?;
    expect_exact(console, "log info", "")?;
    // The workload and CMA without allocating (the other scripts allocate).
    expect_output(console, "mem status", r"^workload: stopped, 0 pages")?;
    expect_output(
        console,
        "cma list",
        &format!(
            r"(?m)^{}\s+0x50000000\s+65536\s+0\s+65536\s+0$",
            regex::escape(AREA)
        ),
    )?;
    expect_exact(
        console,
        "trace show",
        "trace: no trace: 'trace record' one, or boot with 'cargo xtask run --trace FILE'\n",
    )?;
    expect_exact(
        console,
        "bench nosuch",
        "bench: unknown benchmark 'nosuch' (have: cma-latency, churn)\n",
    )?;
    // Tab completion of a command, of a subcommand and of a path, typed by a program.
    console.send_line("hel\tcm\t")?;
    let completed = console.expect(&regex::escape(PROMPT), REPLY)?;
    check(
        console,
        completed.starts_with("help cma ") && completed.contains("usage: cma"),
        || format!("completion of `hel<TAB> cm<TAB>` gave {completed:?}"),
    )?;
    console.send_line("cat /proc/memi\t")?;
    let completed = console.expect(&regex::escape(PROMPT), REPLY)?;
    check(
        console,
        completed.starts_with("cat /proc/meminfo ") && completed.contains("MemTotal:"),
        || format!("completion of `cat /proc/memi<TAB>` gave {completed:?}"),
    )?;
    // Line editing: Left twice, insert, Enter; Ctrl-U kills the line.
    console.send_line("echo helo\x1b[D\x1b[Dl")?;
    console.expect(r"(?m)^hello$", REPLY)?;
    console.expect(&regex::escape(PROMPT), REPLY)?;
    console.send_line("echo junk\x15echo clean")?;
    console.expect(r"(?m)^clean$", REPLY)?;
    console.expect(&regex::escape(PROMPT), REPLY)?;
    // poweroff ends QEMU.
    console.send_line("poweroff")?;
    console.expect("Powering off.", REPLY)?;
    console.expect_exit(REPLY)?;
    Ok(())
}

/// The procfs/sysfs/debugfs files against Linux's formats, and debugfs alloc/free.
pub fn linux_formats(console: &mut Console) -> Result<()> {
    boot(console)?;
    let mem = meminfo(console)?;
    check(console, mem["CmaTotal"] == AREA_PAGES * 4, || {
        format!(
            "CmaTotal {} kB, expected {} kB",
            mem["CmaTotal"],
            AREA_PAGES * 4
        )
    })?;
    check(
        console,
        mem["MemFree"] <= mem["MemTotal"] && mem["CmaFree"] <= mem["CmaTotal"],
        || format!("free above total: {mem:?}"),
    )?;
    let buddy_text = run(console, "cat /proc/buddyinfo")?;
    let zones = parse_buddyinfo(&buddy_text).map_err(|e| console.error(e))?;
    let buddy_free_kb: u64 = zones
        .iter()
        .flat_map(|(_, counts)| counts.iter().enumerate().map(|(order, n)| n << order))
        .sum::<u64>()
        * 4;
    check(console, buddy_free_kb == mem["MemFree"], || {
        format!(
            "buddyinfo adds up to {buddy_free_kb} kB free, meminfo says {} kB",
            mem["MemFree"]
        )
    })?;
    // zoneinfo: the buddy's free pages are buddyinfo's, and with the pcp's frames they are
    // MemFree; the watermarks are in order.
    let zoneinfo = run(console, "cat /proc/zoneinfo")?;
    let zi = parse_zoneinfo(&zoneinfo).map_err(|e| console.error(e))?;
    check(console, zi["pages free"] * 4 == buddy_free_kb, || {
        format!(
            "zoneinfo pages free {} != buddyinfo {buddy_free_kb} kB:\n{zoneinfo}",
            zi["pages free"]
        )
    })?;
    check(
        console,
        (zi["pages free"] + zi["pcp count"]) * 4 == mem["MemFree"]
            && zi["pcp count"] <= zi["pcp high"]
            && zi["min"] <= zi["low"]
            && zi["low"] <= zi["high"]
            && zi["cma"] * 4 == mem["CmaTotal"]
            && zi["managed"] * 4 == mem["MemTotal"],
        || format!("zoneinfo against meminfo {mem:?}:\n{zoneinfo}"),
    )?;
    // pagetypeinfo: headers, one line per type with 11 counts, and per order the types add
    // up to buddyinfo.
    let pti = run(console, "cat /proc/pagetypeinfo")?;
    let header = Regex::new(
        r"^Page block order: 9\nPages per block:  512\n\nFree pages count per migrate type at order(\s+\d+){11}\s*\n",
    )
    .unwrap();
    check(console, header.is_match(&pti), || {
        format!("pagetypeinfo header:\n{pti}")
    })?;
    let type_re =
        Regex::new(r"(?m)^Node\s+0, zone\s+(\S+), type\s+(\S+)((?:\s+\d+){11})\s*$").unwrap();
    let mut per_order = [0u64; 11];
    let mut types = Vec::new();
    for c in type_re.captures_iter(&pti) {
        types.push(c[2].to_string());
        for (order, n) in c[3].split_whitespace().enumerate() {
            per_order[order] += n.parse::<u64>().unwrap_or(0);
        }
    }
    check(
        console,
        types.iter().any(|t| t == "Movable") && types.iter().any(|t| t == "CMA"),
        || format!("pagetypeinfo types {types:?}"),
    )?;
    check(console, per_order.to_vec() == zones[0].1, || {
        format!(
            "pagetypeinfo per order {per_order:?} != buddyinfo {:?}",
            zones[0].1
        )
    })?;
    let blocks =
        Regex::new(r"(?m)^Number of blocks type\s+(\S+\s+)+\nNode 0, zone\s+\S+(\s+\d+)+\s*$")
            .unwrap();
    check(console, blocks.is_match(&pti), || {
        format!("pagetypeinfo block counts:\n{pti}")
    })?;
    // iomem.
    let iomem_text = run(console, "cat /proc/iomem")?;
    let iomem = parse_iomem(&iomem_text).map_err(|e| console.error(e))?;
    let has = |depth: usize, start: u64, end: u64, name: &str| {
        iomem
            .iter()
            .any(|e| *e == (depth, start, end, name.to_string()))
    };
    check(
        console,
        has(0, 0x0900_0000, 0x0900_0fff, "pl011@9000000"),
        || format!("no pl011 window:\n{iomem_text}"),
    )?;
    check(
        console,
        has(0, 0x4000_0000, 0x7fff_ffff, "System RAM"),
        || format!("no System RAM:\n{iomem_text}"),
    )?;
    check(
        console,
        has(1, 0x5000_0000, 0x5fff_ffff, "reserved"),
        || format!("the CMA area is not a reserved child of System RAM:\n{iomem_text}"),
    )?;
    for name in ["Kernel code", "Kernel data"] {
        check(
            console,
            iomem
                .iter()
                .any(|e| e.0 == 1 && e.1 >= 0x4020_0000 && e.3 == name),
            || format!("no {name} inside System RAM:\n{iomem_text}"),
        )?;
    }
    // sysfs and debugfs numbers.
    let success = number_file(console, &sysfs("alloc_pages_success"))?;
    number_file(console, &sysfs("alloc_pages_fail"))?;
    let released = number_file(console, &sysfs("release_pages_success"))?;
    expect_number(console, &debugfs("base_pfn"), AREA_BASE_PFN)?;
    expect_number(console, &debugfs("count"), AREA_PAGES)?;
    expect_number(console, &debugfs("order_per_bit"), 0)?;
    expect_number(console, &debugfs("used"), 0)?;
    expect_number(console, &debugfs("maxchunk"), AREA_PAGES)?;
    let bitmap = run(console, &format!("cat {}", debugfs("bitmap")))?;
    let words: Vec<&str> = bitmap.trim_end_matches('\n').split(' ').collect();
    check(
        console,
        words.len() as u64 == AREA_PAGES / 32 && words.iter().all(|w| *w == "0"),
        || format!("idle bitmap should be {} zero words", AREA_PAGES / 32),
    )?;
    // debugfs alloc/free change used, the bitmap, the stats and CmaFree.
    expect_exact(console, &format!("echo 64 > {}", debugfs("alloc")), "")?;
    expect_number(console, &debugfs("used"), 64)?;
    expect_number(console, &sysfs("alloc_pages_success"), success + 64)?;
    let bitmap = run(console, &format!("cat {}", debugfs("bitmap")))?;
    check(
        console,
        bitmap
            .split_whitespace()
            .map(|w| w.parse::<u32>().unwrap_or(0).count_ones())
            .sum::<u32>()
            == 64,
        || format!("bitmap after alloc 64 should have 64 bits set: {bitmap:?}"),
    )?;
    let after = meminfo(console)?;
    check(console, after["CmaFree"] == mem["CmaFree"] - 256, || {
        format!(
            "CmaFree {} kB after allocating 256 kB from {} kB",
            after["CmaFree"], mem["CmaFree"]
        )
    })?;
    expect_exact(console, &format!("echo 64 > {}", debugfs("free")), "")?;
    expect_number(console, &debugfs("used"), 0)?;
    expect_number(console, &sysfs("release_pages_success"), released + 64)?;
    // cma_debug frees newest first and splits an allocation when a bit is one page.
    expect_exact(console, &format!("echo 3 > {}", debugfs("alloc")), "")?;
    expect_exact(console, &format!("echo 3 > {}", debugfs("alloc")), "")?;
    expect_exact(console, &format!("echo 4 > {}", debugfs("free")), "")?;
    expect_number(console, &debugfs("used"), 2)?;
    expect_exact(console, &format!("echo 100 > {}", debugfs("free")), "")?;
    expect_number(console, &debugfs("used"), 0)?;
    // Linux's cma_free_write takes any u64: more pages than RAM frees all that is allocated,
    // and 0 frees nothing; neither is an error.
    expect_exact(console, &format!("echo 5 > {}", debugfs("alloc")), "")?;
    expect_exact(console, &format!("echo 0 > {}", debugfs("free")), "")?;
    expect_number(console, &debugfs("used"), 5)?;
    expect_exact(
        console,
        &format!("echo 99999999999 > {}", debugfs("free")),
        "",
    )?;
    expect_number(console, &debugfs("used"), 0)?;
    let end = meminfo(console)?;
    check(
        console,
        end["MemFree"] == mem["MemFree"] && end["CmaFree"] == mem["CmaFree"],
        || format!("meminfo did not return to {mem:?}: {end:?}"),
    )?;
    Ok(())
}

/// One clear line per bad input, nothing changed, the shell goes on.
pub fn bad_input(console: &mut Console) -> Result<()> {
    boot(console)?;
    let before = meminfo(console)?;
    let success = number_file(console, &sysfs("alloc_pages_success"))?;
    let long_line = "a".repeat(300);
    let cases: Vec<(String, String)> = vec![
        (
            "frobnicate".into(),
            r"^unknown command: frobnicate \(try 'help'\)\n$".into(),
        ),
        (
            format!("cma alloc {AREA} 12x"),
            r"^cma: bad number: '12x'.*\n$".into(),
        ),
        (
            format!("cma alloc {AREA} 99999999"),
            r"^cma: 99999999 pages is over the limit of 262144 pages\n$".into(),
        ),
        (
            format!("cma alloc {AREA} 0"),
            r"^cma: page count must be at least 1\n$".into(),
        ),
        (
            format!("cma alloc {AREA} 4 99"),
            r"^cma: alignment order 99 is over the limit of 20\n$".into(),
        ),
        (
            "cma alloc nosuch 1".into(),
            r"^cma: no CMA area named 'nosuch'.*\n$".into(),
        ),
        (
            format!("cma alloc {AREA} 70000"),
            r"^cma: 70000 pages from 'linux,cma@50000000': .*\n$".into(),
        ),
        (
            "cma free 12345".into(),
            r"^cma: no allocation with handle 12345\n$".into(),
        ),
        ("cma free abc".into(), r"^cma: bad handle: .*\n$".into()),
        ("cma".into(), r"^cma: usage: .*\n$".into()),
        ("mem grow -5".into(), r"^mem: bad number: '-5'.*\n$".into()),
        (
            "mem grow 300000".into(),
            r"^mem: 300000 pages is over the limit of 262144 pages\n$".into(),
        ),
        (
            "mem frob".into(),
            r"^mem: unknown subcommand 'frob'.*\n$".into(),
        ),
        (
            "mem grow 10".into(),
            r"^mem: anon workload not started.*\n$".into(),
        ),
        (
            "echo 1 > /proc/meminfo".into(),
            r"^echo: /proc/meminfo: Permission denied \(read-only file\)\n$".into(),
        ),
        (
            format!("echo 1 > {}", sysfs("alloc_pages_success")),
            r"^echo: .*: Permission denied \(read-only file\)\n$".into(),
        ),
        (
            format!("cat {}", debugfs("alloc")),
            r"^cat: .*/alloc: Permission denied \(write-only file\)\n$".into(),
        ),
        (
            format!("echo abc > {}", debugfs("alloc")),
            r"^echo: .*/alloc: Invalid argument\n$".into(),
        ),
        (
            format!("echo 0 > {}", debugfs("alloc")),
            r"^echo: .*/alloc: Invalid argument\n$".into(),
        ),
        (
            format!("echo 99999999 > {}", debugfs("alloc")),
            r"^echo: .*/alloc: Invalid argument\n$".into(),
        ),
        (
            format!("echo 70000 > {}", debugfs("alloc")),
            r"^echo: .*/alloc: Cannot allocate memory\n$".into(),
        ),
        (
            format!("echo x > {}", debugfs("free")),
            r"^echo: .*/free: Invalid argument\n$".into(),
        ),
        (
            "echo 1 > /proc".into(),
            r"^echo: /proc: Is a directory\n$".into(),
        ),
        (
            "echo 1 > /nope".into(),
            r"^echo: /nope: No such file or directory\n$".into(),
        ),
        (
            "cat /nope".into(),
            r"^cat: /nope: No such file or directory\n$".into(),
        ),
        ("cat /proc".into(), r"^cat: /proc: Is a directory\n$".into()),
        (
            "ls /proc/meminfo/x".into(),
            r"^ls: cannot access '/proc/meminfo/x': Not a directory\n$".into(),
        ),
        (
            "cat /proc/device-tree/nope".into(),
            r"^cat: .*: No such file or directory\n$".into(),
        ),
        (
            "ls /proc/device-tree/pl011@9000000/reg/x".into(),
            r"^ls: cannot access .*: Not a directory\n$".into(),
        ),
        (
            "echo 'open".into(),
            r"^syntax error: unterminated ' quote\n$".into(),
        ),
        (
            "ls > /x".into(),
            r"^ls: '>' is only supported by echo\n$".into(),
        ),
        (
            "dt /nope".into(),
            r"^dt: /nope: no such node or property\n$".into(),
        ),
        ("trace stop".into(), r"^trace: not recording\n$".into()),
        ("trace replay".into(), r"^trace: no trace: .*\n$".into()),
        (
            "trace replay 0".into(),
            r"^trace: replay count must be at least 1\n$".into(),
        ),
        (
            "trace replay 5000".into(),
            r"^trace: replay count 5000 is over the limit of 1000\n$".into(),
        ),
        (
            "trace rewind".into(),
            r"^trace: unknown subcommand 'rewind'.*\n$".into(),
        ),
        ("log loud".into(), r"^log: unknown level 'loud'.*\n$".into()),
        (
            "help nosuch".into(),
            r"^help: no such command: nosuch\n$".into(),
        ),
        (
            "poweroff now".into(),
            r"^poweroff: too many arguments.*\n$".into(),
        ),
        (
            "reboot now".into(),
            r"^reboot: too many arguments.*\n$".into(),
        ),
        (
            "bench a b".into(),
            r"^bench: too many arguments.*\n$".into(),
        ),
    ];
    for (line, pattern) in &cases {
        let output = expect_output(console, line, pattern)?;
        check(console, output.lines().count() == 1, || {
            format!("`{line}` printed more than one line: {output:?}")
        })?;
    }
    // An over-long line is refused whole (and not echoed past the limit).
    console.send_line(&long_line)?;
    console.expect(
        r"line too long: the limit is 256 characters; nothing was run\n",
        REPLY,
    )?;
    console.expect(&regex::escape(PROMPT), REPLY)?;
    // Nothing changed, and the shell answers.
    let after = meminfo(console)?;
    check(
        console,
        after["MemFree"] == before["MemFree"] && after["CmaFree"] == before["CmaFree"],
        || format!("bad input changed meminfo: {before:?} -> {after:?}"),
    )?;
    expect_number(console, &debugfs("used"), 0)?;
    expect_number(console, &sysfs("alloc_pages_success"), success)?;
    expect_output(console, "mem status", r"^workload: stopped, 0 pages")?;
    expect_exact(console, "echo alive", "alive\n")
}

/// `mem`, `cma` and `trace`: allocations, handles, record and replay.
pub fn cma_mem_trace(console: &mut Console) -> Result<()> {
    boot(console)?;
    let before = meminfo(console)?;
    expect_output(console, "mem start", r"^workload: running, 0 pages")?;
    expect_output(
        console,
        "mem grow 1000",
        r"^grew by 1000 pages; workload: running, 1000 pages",
    )?;
    expect_output(
        console,
        "mem verify",
        r"^verified 1000 pages: all intact\n$",
    )?;
    let output = expect_output(
        console,
        &format!("cma alloc {AREA} 256 4"),
        r"^handle 1 pfn 0x[0-9a-f]+ \(256 pages in ",
    )?;
    let (h1, pfn) = parse_handle(console, &output)?;
    check(
        console,
        pfn % 16 == 0 && (AREA_BASE_PFN..AREA_BASE_PFN + AREA_PAGES).contains(&pfn),
        || format!("pfn {pfn:#x} is not 16-page aligned inside the area"),
    )?;
    expect_output(
        console,
        "cma list",
        &format!(
            r"(?m)^  handle {h1} pfn {pfn:#x} 256 pages in {}$",
            regex::escape(AREA)
        ),
    )?;
    expect_number(console, &debugfs("used"), 256)?;
    // Record a sequence, then replay it: each pass leaves everything as it found it.
    expect_output(console, "trace record", r"^recording")?;
    let output = run(console, &format!("cma alloc {AREA} 128"))?;
    let (h2, _) = parse_handle(console, &output)?;
    expect_output(console, "mem grow 64", r"^grew by 64 pages")?;
    expect_exact(
        console,
        &format!("cma free {h2}"),
        &format!("freed handle {h2} (128 pages)\n"),
    )?;
    expect_output(console, "mem shrink 32", r"^shrank by 32 pages")?;
    expect_exact(
        console,
        "trace show",
        "recording: 4 events so far (trace stop ends it)\n",
    )?;
    expect_exact(console, "trace stop", "recorded 4 events\n")?;
    let shown = expect_output(
        console,
        "trace show",
        &format!(
            r"^trace \(recorded\): 4 events over \d+\.\d{{6}} s\n.* cma alloc {AREA} 128 0 -> #1\n.* mem grow 64\n.* cma free #1\n.* mem shrink 32\nfile: 138 bytes, hex:\n"
        ),
    )?;
    let hex: String = shown
        .lines()
        .skip_while(|l| !l.starts_with("file:"))
        .skip(1)
        .collect();
    check(console, hex.trim().starts_with("4d4e4c5452414345"), || {
        format!("the hex dump does not start with the magic: {hex}")
    })?;
    expect_output(
        console,
        "trace replay 3",
        r"^replayed 3 pass\(es\) of 12 events in \d+ us\n  cma alloc: 3 ok, 0 failed .*; cma free: 3 ok, 0 skipped\n  mem: 192 pages grown, 96 shrunk; cleanup: 0 allocation\(s\) freed, 96 pages shrunk\n$",
    )?;
    expect_number(console, &debugfs("used"), 256)?;
    expect_output(console, "mem status", r"^workload: running, 1032 pages")?;
    // A freed handle is gone for good.
    expect_exact(
        console,
        &format!("cma free {h1}"),
        &format!("freed handle {h1} (256 pages)\n"),
    )?;
    expect_exact(
        console,
        &format!("cma free {h1}"),
        &format!("cma: no allocation with handle {h1}\n"),
    )?;
    expect_output(
        console,
        "mem shrink 2000",
        r"^shrank by 1032 pages; workload: running, 0 pages",
    )?;
    expect_number(console, &debugfs("used"), 0)?;
    let after = meminfo(console)?;
    check(
        console,
        after["MemFree"] == before["MemFree"] && after["CmaFree"] == before["CmaFree"],
        || format!("meminfo did not balance: {before:?} -> {after:?}"),
    )?;
    Ok(())
}

/// `cargo xtask run --trace FILE`: the firmware finds the file and replays it.
pub fn trace_file(console: &mut Console) -> Result<()> {
    console.expect(r"trace: 5 events loaded at 0x40100000", BOOT)?;
    boot(console)?;
    expect_output(
        console,
        "trace show",
        r"^trace \(loaded at 0x40100000\): 5 events over 0\.004000 s\n +0\.000000  mem grow 256\n +0\.001000  cma alloc linux,cma@50000000 64 0 -> #1\n",
    )?;
    expect_output(
        console,
        "trace replay 2",
        r"^replayed 2 pass\(es\) of 10 events in \d+ us\n  cma alloc: 4 ok, 0 failed .*; cma free: 2 ok, 0 skipped\n  mem: 512 pages grown, 256 shrunk; cleanup: 2 allocation\(s\) freed, 256 pages shrunk\n$",
    )?;
    expect_number(console, &debugfs("used"), 0)?;
    expect_output(console, "mem status", r"^workload: running, 0 pages")?;
    Ok(())
}

/// A deterministic generator (SplitMix64), so a failing run can be reproduced exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

pub const RANDOM_SEED: u64 = 0x6d6f_6e6f_6c69_7468;
pub const RANDOM_LINES: usize = 3000;

/// One random line: valid commands with random arguments, and all kinds of garbage.
fn random_line(rng: &mut Rng, handles: &[u64]) -> String {
    const WORDS: &[&str] = &[
        "help",
        "echo",
        "ls",
        "cat",
        "dt",
        "mem",
        "cma",
        "trace",
        "log",
        "bench",
        "frob",
        "",
        "/proc",
        "/sys",
        "alloc",
        "free",
        "grow",
        "shrink",
        "'",
        "\"",
        ">",
        ">>",
        "0x",
        "4K",
        "-1",
        "99999999999999999999",
        "status",
        "list",
        "show",
        "/proc/meminfo",
    ];
    const FILES: &[&str] = &[
        "/proc/meminfo",
        "/proc/buddyinfo",
        "/proc/pagetypeinfo",
        "/proc/zoneinfo",
        "/proc/iomem",
        "/nope",
        "/sys/kernel/mm/cma/linux,cma@50000000/alloc_pages_success",
        "/sys/kernel/debug/cma/linux,cma@50000000/used",
        "/sys/kernel/debug/cma/linux,cma@50000000/maxchunk",
        "/sys/kernel/debug/cma/linux,cma@50000000/alloc",
        "/proc/device-tree/pl011@9000000/compatible",
        "/proc/device-tree",
    ];
    const COUNTS: &[&str] = &[
        "1",
        "2",
        "7",
        "16",
        "64",
        "512",
        "0",
        "4K",
        "1M",
        "x",
        "-3",
        "0x20",
        "70000",
        "262145",
        "9999999999999",
    ];
    let count = rng.pick(COUNTS);
    match rng.below(16) {
        0 => format!("cma alloc {AREA} {count}"),
        1 => format!("cma alloc {AREA} {} {}", rng.pick(COUNTS), rng.below(12)),
        2 => match handles.get(rng.below(handles.len() as u64 + 2) as usize) {
            Some(handle) => format!("cma free {handle}"),
            None => format!("cma free {}", rng.pick(COUNTS)),
        },
        3 => format!("mem grow {count}"),
        4 => format!("mem shrink {count}"),
        5 => format!(
            "mem {}",
            rng.pick(&["start", "status", "verify", "stop", ""])
        ),
        6 => format!("cat {}", rng.pick(FILES)),
        7 => format!("ls {}", rng.pick(FILES)),
        8 => format!("echo {count} > {}", rng.pick(FILES)),
        9 => format!(
            "echo {count} > {}",
            debugfs(rng.pick(&["alloc", "free", "used"]))
        ),
        10 => format!(
            "trace {}",
            rng.pick(&["record", "stop", "show", "rewind", ""])
        ),
        11 => format!(
            "{} {}",
            rng.pick(&["log", "help", "dt"]),
            rng.pick(&["info", "warn", "cma", "/pl011@9000000", "nope", ""])
        ),
        12 | 13 => {
            let words = (0..rng.below(8))
                .map(|_| rng.pick(WORDS))
                .collect::<Vec<_>>();
            words.join(" ")
        }
        _ => {
            // Printable noise, within the line limit.
            let len = rng.below(250) as usize;
            (0..len)
                .map(|_| (0x20 + rng.below(0x5f) as u8) as char)
                .collect()
        }
    }
}

/// Thousands of seeded random lines, then the shell still answers and memory balances.
pub fn random_lines(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_output(console, "mem start", r"^workload: running")?;
    let before = meminfo(console)?;
    let used_before = number_file(console, &debugfs("used"))?;
    let mut rng = Rng(RANDOM_SEED);
    let mut handles: Vec<u64> = Vec::new();
    let alloc_re = Regex::new(r"^handle (\d+) pfn").unwrap();
    let freed_re = Regex::new(r"^freed handle (\d+)").unwrap();
    for index in 0..RANDOM_LINES {
        let line = random_line(&mut rng, &handles);
        let output = run(console, &line).map_err(|mut e| {
            e.message = format!(
                "random line {index} (seed {RANDOM_SEED:#x}) `{line}`: {}",
                e.message
            );
            e
        })?;
        if let Some(c) = alloc_re.captures(&output) {
            handles.push(c[1].parse().unwrap_or(0));
        }
        if let Some(c) = freed_re.captures(&output) {
            let freed: u64 = c[1].parse().unwrap_or(0);
            handles.retain(|h| *h != freed);
        }
    }
    expect_exact(console, "echo alive", "alive\n")?;
    // Give everything back: recording off, handles, debugfs allocations, the workload.
    let _ = run(console, "trace stop")?;
    for handle in &handles {
        expect_output(console, &format!("cma free {handle}"), r"^freed handle")?;
    }
    expect_exact(
        console,
        &format!("echo {RAM_PAGES} > {}", debugfs("free")),
        "",
    )?;
    expect_output(
        console,
        &format!("mem shrink {RAM_PAGES}"),
        r"workload: running, 0 pages",
    )?;
    expect_output(console, "mem verify", r"^verified 0 pages")?;
    let after = meminfo(console)?;
    expect_number(console, &debugfs("used"), used_before)?;
    check(
        console,
        after["MemFree"] == before["MemFree"] && after["CmaFree"] == before["CmaFree"],
        || {
            format!("meminfo did not balance after {RANDOM_LINES} random lines: {before:?} -> {after:?}")
        },
    )?;
    expect_output(
        console,
        "cma list",
        r"(?m)^linux,cma@50000000\s+0x50000000\s+65536\s+0\s+65536\s+0$",
    )?;
    Ok(())
}

/// `text` without the kernel log's `[    1.234567] LEVEL ...` lines.
fn without_log_lines(text: &str) -> String {
    let log_line = Regex::new(r"^\[\s*\d+\.\d{6}\] ").unwrap();
    text.lines()
        .filter(|line| !log_line.is_match(line))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `bench` runs kmem's in-guest benchmarks: each prints its table, then the shell goes on.
pub fn bench(console: &mut Console) -> Result<()> {
    boot(console)?;
    let slow = Duration::from_secs(120);
    // Benchmarks may log (kmem's own diagnostics): judge the tables, not the log lines.
    let output = without_log_lines(&run_with(console, "bench cma-latency", slow)?);
    let table = Regex::new(
        r"^cma_alloc latency, area 'linux,cma@50000000', 3 trials per size.*
 +pages +memcpy +idle .*
( +\d+ +\d+/\d+/\d+ .*
){4}$",
    )
    .unwrap();
    check(console, table.is_match(&output), || {
        format!("bench cma-latency printed:\n{output}")
    })?;
    let output = without_log_lines(&run_with(console, "bench", slow)?);
    let both = Regex::new(r"^== bench cma-latency\n(.*\n)+== bench churn\nsuccess rate of 512-page allocations.*\n(.*\n)*cma_alloc +16 +\d+ ").unwrap();
    check(console, both.is_match(&output), || {
        format!("bench printed:\n{output}")
    })?;
    expect_exact(console, "echo alive", "alive\n")
}

/// `reboot` resets the machine: the banner and a fresh prompt come back.
pub fn reboot(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_exact(console, &format!("echo 8 > {}", debugfs("alloc")), "")?;
    console.send_line("reboot")?;
    console.expect("Rebooting.", REPLY)?;
    console.expect(r"Monolith \d+\.\d+\.\d+", BOOT)?;
    boot(console)?;
    // A fresh boot: nothing allocated any more.
    expect_number(console, &debugfs("used"), 0)?;
    expect_exact(console, "echo back", "back\n")
}

/// A legal variant of the default board's tree (one property NOPed, or written by
/// `dtc -V 16`; see `src/dt/testdata/variants/`) boots to a working shell with the same
/// CMA area as the clean tree: listed, and a whole-area allocation and its release work.
pub fn legal_tree_variant(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_output(
        console,
        "cma list",
        &format!(
            r"(?m)^{}\s+0x50000000\s+{AREA_PAGES}\s+0\s+{AREA_PAGES}\s+0$",
            regex::escape(AREA)
        ),
    )?;
    expect_number(console, &debugfs("count"), AREA_PAGES)?;
    let output = expect_output(
        console,
        &format!("cma alloc {AREA} {AREA_PAGES}"),
        &format!(r"^handle \d+ pfn {AREA_BASE_PFN:#x} \({AREA_PAGES} pages in "),
    )?;
    let (handle, _) = parse_handle(console, &output)?;
    expect_exact(
        console,
        &format!("cma free {handle}"),
        &format!("freed handle {handle} ({AREA_PAGES} pages)\n"),
    )?;
    // The shell's device-tree view reads the same validated tree.
    expect_output(
        console,
        "ls /proc/device-tree/pl011@9000000",
        r"(?m)^compatible$",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_lines_are_reproducible_and_within_the_line_limit() {
        let mut a = Rng(RANDOM_SEED);
        let mut b = Rng(RANDOM_SEED);
        for _ in 0..RANDOM_LINES {
            let line = random_line(&mut a, &[1, 2]);
            assert_eq!(line, random_line(&mut b, &[1, 2]));
            assert!(line.len() <= 256, "{line}");
            assert!(line.bytes().all(|c| (0x20..0x7f).contains(&c)), "{line:?}");
            assert!(!line.contains("poweroff") && !line.contains("reboot"));
        }
    }

    #[test]
    fn parsers_accept_linux_output_and_reject_others() {
        let meminfo = "MemTotal:        1031480 kB\nMemFree:         1031480 kB\nCmaTotal:         262144 kB\nCmaFree:          262144 kB\nHugePages_Total:       0\n";
        let values = parse_meminfo(meminfo).unwrap();
        assert_eq!(values["CmaFree"], 262144);
        assert_eq!(values["HugePages_Total"], 0);
        assert!(parse_meminfo("MemTotal: lots\n").is_err());
        assert!(
            parse_meminfo("MemTotal:  1 kB\n").is_err(),
            "MemFree missing"
        );

        let buddy = "Node 0, zone   Normal      2      2      2      2      2      2      3      2      3      1    249 \n";
        assert_eq!(parse_buddyinfo(buddy).unwrap()[0].1[10], 249);
        assert!(parse_buddyinfo("Node 0, zone   Normal      2      2\n").is_err());

        let zoneinfo = "Node 0, zone   Normal\n  pages free     4089\n        boost    0\n        min      16\n        low      20\n        high     24\n        spanned  4096\n        present  4096\n        managed  4096\n        cma      1024\n        protection: (0)\n      nr_free_pages 4089\n      nr_free_cma  1024\n  pagesets\n    cpu: 0\n              count: 7\n              high:  64\n              batch: 7\n  vm stats threshold: 0\n  node_unreclaimable:  0\n  start_pfn:           262144\n";
        let zi = parse_zoneinfo(zoneinfo).unwrap();
        assert_eq!(
            (
                zi["pages free"],
                zi["high"],
                zi["pcp high"],
                zi["pcp count"]
            ),
            (4089, 24, 64, 7)
        );
        assert!(parse_zoneinfo("Node 0, zone   Normal\n  pages free     1\n").is_err());
        assert!(parse_zoneinfo(&zoneinfo.replace("Node 0", "Node x")).is_err());

        let iomem = "09000000-09000fff : pl011@9000000\n40000000-7fffffff : System RAM\n  40200000-40263fff : Kernel code\n100000000-100000fff : high\n";
        let entries = parse_iomem(iomem).unwrap();
        assert_eq!(
            entries[2],
            (1, 0x4020_0000, 0x4026_3fff, "Kernel code".to_string())
        );
        assert!(parse_iomem("9000000-9000fff : short\n").is_err());
        assert!(parse_iomem("40000000-4fffffff : a\n  50000000-50000fff : outside\n").is_err());
        assert!(parse_iomem(" 40000000-4fffffff : odd indent\n").is_err());

        assert_eq!(
            without_log_lines("[    0.272542] WARN  x: y\ntable\n[12.000001] INFO z\n"),
            "table\n"
        );
    }
}
