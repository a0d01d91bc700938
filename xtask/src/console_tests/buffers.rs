//! Console script for DMA-BUF heaps and dma-bufs: `heap`, `dmabuf`, `/dev/dma_heap` and
//! `/sys/kernel/debug/dma_buf/bufinfo`.
//!
//! Theory of operation
//! -------------------
//! [`heaps_and_buffers`] boots the default board, notes MemFree and the CMA area's `used`,
//! exports buffers from every kind of heap, and checks each against what Linux would show:
//! a system buffer is scattered (one segment per page) and costs no CMA page, a CMA buffer
//! is one contiguous range inside its area and raises `used` by its pages; bufinfo parses
//! the way a script parses Linux's (the header, one tab-separated line per buffer, its
//! attached devices, the totals line) and its numbers agree with what was allocated. The
//! display's framebuffer shows up as a buffer attached to the GPU that the shell may not
//! free. Freeing everything must bring MemFree and `used` back exactly (measured after the
//! GPU driver's first use, whose rings stay for the driver's life).

use regex::Regex;

use super::shell::{
    boot, check, debugfs, expect_exact, expect_output, meminfo, number_file, run, AREA,
};
use crate::expect::{Console, ExpectError};

type Result<T> = std::result::Result<T, ExpectError>;

/// One buffer line of bufinfo: `%08zu\t%08x\t%08x\t%08ld\t%s\t%08lu\t%s`.
#[derive(Debug, PartialEq, Eq)]
pub struct BufinfoObject {
    pub size: u64,
    pub count: u64,
    pub exp_name: String,
    pub ino: u64,
    pub name: String,
    pub devices: Vec<String>,
}

/// bufinfo as Linux 6.1 prints it (`dma_buf_debug_show`): the objects and the totals
/// line's (objects, bytes).
pub fn parse_bufinfo(text: &str) -> std::result::Result<(Vec<BufinfoObject>, (u64, u64)), String> {
    let header =
        "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n";
    let body = text
        .strip_prefix(header)
        .ok_or_else(|| format!("bufinfo does not start with Linux's header: {text:?}"))?;
    let object =
        Regex::new(r"^(\d{8,})\t([0-9a-f]{8})\t([0-9a-f]{8})\t(\d{8,})\t(\S+)\t(\d{8,})\t(.*)$")
            .unwrap();
    let totals = Regex::new(r"^Total (\d+) objects, (\d+) bytes$").unwrap();
    let attached = Regex::new(r"^Total (\d+) devices attached$").unwrap();
    let mut objects: Vec<BufinfoObject> = Vec::new();
    let mut lines = body.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(c) = object.captures(line) {
            objects.push(BufinfoObject {
                size: c[1].parse().unwrap(),
                count: c[4].parse().unwrap(),
                exp_name: c[5].to_string(),
                ino: c[6].parse().unwrap(),
                name: c[7].to_string(),
                devices: Vec::new(),
            });
            // Fence lines (`\t<kind> fence: ...`) until the device list.
            while lines
                .peek()
                .is_some_and(|l| l.starts_with('\t') && !l.starts_with("\tAttached"))
            {
                lines.next();
            }
            if lines.next() != Some("\tAttached Devices:") {
                return Err(format!("no `Attached Devices:` after {line:?}"));
            }
            let last = objects.last_mut().unwrap();
            loop {
                match lines.next() {
                    Some(device) if device.starts_with('\t') => last
                        .devices
                        .push(device.trim_start_matches('\t').to_string()),
                    Some(total) => match attached.captures(total) {
                        Some(n) if n[1].parse::<usize>().unwrap() == last.devices.len() => break,
                        _ => return Err(format!("bad device total {total:?} for {line:?}")),
                    },
                    None => return Err(format!("bufinfo ends inside {line:?}")),
                }
            }
        } else if let Some(c) = totals.captures(line) {
            return Ok((objects, (c[1].parse().unwrap(), c[2].parse().unwrap())));
        } else if !line.is_empty() {
            return Err(format!("unexpected bufinfo line {line:?}"));
        }
    }
    Err(String::from("bufinfo has no totals line"))
}

/// `dmabuf N: ...` from `heap alloc`.
fn buffer_id(console: &Console, output: &str) -> Result<u64> {
    let re = Regex::new(r"^dmabuf (\d+): ").unwrap();
    re.captures(output)
        .map(|c| c[1].parse().unwrap())
        .ok_or_else(|| console.error(format!("`heap alloc` printed {output:?}")))
}

pub fn heaps_and_buffers(console: &mut Console) -> Result<()> {
    boot(console)?;
    expect_exact(
        console,
        "ls /dev/dma_heap",
        &format!("default_cma_region\n{AREA}\nsystem\n"),
    )?;
    expect_exact(
        console,
        "heap list",
        &format!("system\ndefault_cma_region\n{AREA}\n"),
    )?;
    expect_output(
        console,
        "cat /dev/dma_heap/system",
        r"^cat: /dev/dma_heap/system: Invalid argument\n$",
    )?;
    // The GPU driver's rings live as long as the driver (from its first use on): probe it
    // before the baseline, so what is compared is the buffers alone.
    expect_output(console, "gpu info", r"(?m)^scanout 0: \d+x\d+")?;
    let free_before = meminfo(console)?["MemFree"];
    let used_before = number_file(console, &debugfs("used"))?;

    let system = run(console, "heap alloc system 64K")?;
    check(
        console,
        system.contains("64 KiB from system, 16 segments"),
        || format!("a 64 KiB system buffer should be 16 pages: {system:?}"),
    )?;
    let system = buffer_id(console, &system)?;
    let cma = run(console, &format!("heap alloc {AREA} 1M"))?;
    let contiguous = Regex::new(r"contiguous at 0x([0-9a-f]+)").unwrap();
    let Some(at) = contiguous.captures(&cma) else {
        return Err(console.error(format!("a CMA buffer must be contiguous: {cma:?}")));
    };
    let at = u64::from_str_radix(&at[1], 16).unwrap();
    check(
        console,
        (0x5000_0000..0x6000_0000 - 0x10_0000).contains(&at),
        || format!("the CMA buffer at {at:#x} is outside {AREA}"),
    )?;
    let cma = buffer_id(console, &cma)?;
    let default = run(console, "heap alloc default_cma_region 8K")?;
    let default = buffer_id(console, &default)?;
    let used = number_file(console, &debugfs("used"))?;
    check(console, used == used_before + 256 + 2, || {
        format!(
            "CMA `used` must grow by the two CMA buffers' pages (256 + 2): {used_before} -> {used}"
        )
    })?;

    let text = run(console, "cat /sys/kernel/debug/dma_buf/bufinfo")?;
    let (objects, (count, bytes)) = parse_bufinfo(&text).map_err(|e| console.error(e))?;
    let sizes: Vec<(u64, &str)> = objects
        .iter()
        .map(|o| (o.size, o.exp_name.as_str()))
        .collect();
    check(
        console,
        sizes
            == [
                (65536, "system"),
                (1 << 20, AREA),
                (8192, "default_cma_region"),
            ]
            && count == 3
            && bytes == 65536 + (1 << 20) + 8192
            && objects.iter().all(|o| o.count == 1 && o.devices.is_empty()),
        || format!("bufinfo disagrees with the three buffers: {objects:?}, totals {count} {bytes}"),
    )?;

    // The framebuffer: a CMA buffer attached to the GPU, not the shell's to free.
    let shown = run(console, "gpu pattern")?;
    let framebuffer = Regex::new(r"\(dma-buf (\d+)\)").unwrap();
    let Some(fb) = framebuffer.captures(&shown) else {
        return Err(console.error(format!("`gpu pattern` printed {shown:?}")));
    };
    let fb: u64 = fb[1].parse().unwrap();
    let text = run(console, "cat /sys/kernel/debug/dma_buf/bufinfo")?;
    let (objects, _) = parse_bufinfo(&text).map_err(|e| console.error(e))?;
    check(
        console,
        objects.iter().any(|o| {
            o.ino == fb
                && o.name == "framebuffer"
                && o.devices.len() == 1
                && o.devices[0].ends_with(".virtio_mmio")
        }),
        || format!("bufinfo should show the framebuffer attached to the GPU: {objects:?}"),
    )?;
    expect_output(
        console,
        &format!("dmabuf free {fb}"),
        r"^dmabuf: dma-buf \d+ was not allocated by 'heap alloc'",
    )?;
    expect_output(console, "gpu off", r"^display off after \d+ frame\(s\)")?;

    // Bad requests change nothing.
    expect_output(console, "heap alloc nosuch 4K", r"^heap: ")?;
    expect_output(
        console,
        "heap alloc system 0",
        r"^heap: size must be at least 1 byte\n$",
    )?;
    expect_output(
        console,
        "dmabuf free 999",
        r"^dmabuf: dma-buf 999 was not allocated",
    )?;
    for id in [system, cma, default] {
        expect_exact(console, &format!("dmabuf free {id}"), "")?;
    }
    expect_output(
        console,
        &format!("dmabuf free {cma}"),
        r"^dmabuf: dma-buf \d+ was not allocated",
    )?;
    expect_exact(
        console,
        "cat /sys/kernel/debug/dma_buf/bufinfo",
        "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\nTotal 0 objects, 0 bytes\n",
    )?;
    let used_after = number_file(console, &debugfs("used"))?;
    let free_after = meminfo(console)?["MemFree"];
    check(
        console,
        used_after == used_before && free_after == free_before,
        || {
            format!(
            "freeing every buffer must give every page back: used {used_before} -> {used_after}, \
             MemFree {free_before} -> {free_after} kB"
        )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bufinfo_parses_like_linuxs_and_refuses_other_text() {
        let text = "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
            01048576\t00000002\t00080007\t00000001\tsystem\t00000001\t<none>\n\
            \tAttached Devices:\nTotal 0 devices attached\n\n\
            04096000\t00000002\t00080007\t00000002\tlinux,cma@50000000\t00000002\tframebuffer\n\
            \tExclusive fence: display draw signalled\n\
            \tAttached Devices:\n\ta003e00.virtio_mmio\nTotal 1 devices attached\n\n\
            \nTotal 2 objects, 5144576 bytes\n";
        let (objects, totals) = parse_bufinfo(text).unwrap();
        assert_eq!(totals, (2, 5_144_576));
        assert_eq!(objects[1].devices, ["a003e00.virtio_mmio"]);
        assert_eq!(objects[1].name, "framebuffer");
        assert!(parse_bufinfo("Dma-buf Objects:\n").is_err());
        let wrong_total = text.replace("Total 1 devices", "Total 2 devices");
        assert!(parse_bufinfo(&wrong_total).is_err());
    }
}
