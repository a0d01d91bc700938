//! `/sys/kernel/debug/dma_buf/bufinfo` in Linux 6.1's format (`dma_buf_debug_show`,
//! `dma_resv_describe`, `dma_fence_describe`), and the `/dev/dma_heap` listing.
//!
//! Per buffer: `%08zu\t%08x\t%08x\t%08ld\t%s\t%08lu\t%s` (size, `f_flags`, `f_mode`,
//! `file_count`, `exp_name`, inode number, name or `<none>`); one line per fence,
//! `\t<usage> fence:<driver> <timeline> seq <seqno> [un]signalled` (a failed fence is
//! signalled with an error, which Linux does not print); `\tAttached Devices:`, one
//! `\t<dev_name>` per attachment, `Total N devices attached` and a blank line. Then
//! `\nTotal N objects, M bytes`.
#![forbid(unsafe_code)]

use alloc::string::String;
use core::fmt::Write;

use super::buf::BufTable;
use super::fence::{FenceStatus, Fences};

/// The whole file.
pub fn bufinfo<T>(bufs: &BufTable, fences: &Fences<T>) -> String {
    let mut s = String::new();
    s.push_str("\nDma-buf Objects:\n");
    let _ = writeln!(
        s,
        "{:<8}\t{:<8}\t{:<8}\t{:<8}\texp_name\t{:<8}\tname",
        "size", "flags", "mode", "count", "ino"
    );
    let (mut count, mut size) = (0usize, 0u64);
    for b in bufs.iter() {
        let _ = writeln!(
            s,
            "{:08}\t{:08x}\t{:08x}\t{:08}\t{}\t{:08}\t{}",
            b.size,
            b.flags,
            b.mode,
            b.count(),
            b.exp_name,
            b.ino,
            b.name.as_deref().unwrap_or("<none>")
        );
        for (usage, id) in b.resv.fences() {
            let Some(fence) = fences.fence(id) else {
                continue;
            };
            let Some(ctx) = fences.context(fence.context) else {
                continue;
            };
            let _ = writeln!(
                s,
                "\t{} fence:{} {} seq {} {}signalled",
                usage.name(),
                ctx.driver,
                ctx.timeline,
                fence.seqno,
                if fence.status == FenceStatus::Pending {
                    "un"
                } else {
                    ""
                }
            );
        }
        s.push_str("\tAttached Devices:\n");
        for a in b.attachments() {
            let _ = writeln!(s, "\t{}", a.device.name);
        }
        let _ = write!(s, "Total {} devices attached\n\n", b.attachments().len());
        count += 1;
        size += b.size;
    }
    let _ = writeln!(s, "\nTotal {count} objects, {size} bytes");
    s
}

/// `ls /dev/dma_heap`: one heap name a line.
pub fn heap_listing(names: &[String]) -> String {
    let mut s = String::new();
    for n in names {
        s.push_str(n);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::heap::Allocation;
    use crate::dma::{DeviceDma, Segment};
    use alloc::vec;
    use alloc::vec::Vec;

    /// What a script would pull out of one buffer block.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        size: u64,
        flags: u32,
        mode: u32,
        count: u64,
        exp_name: String,
        ino: u64,
        name: String,
        fences: Vec<String>,
        devices: Vec<String>,
    }

    /// Parse the file as a shell/awk script would: the header, tab-separated records,
    /// lines starting with a tab belong to the record above, then the totals line.
    fn parse(text: &str) -> (Vec<Parsed>, (u64, u64)) {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(""));
        assert_eq!(lines.next(), Some("Dma-buf Objects:"));
        assert_eq!(
            lines.next(),
            Some("size    \tflags   \tmode    \tcount   \texp_name\tino     \tname")
        );
        let mut out: Vec<Parsed> = Vec::new();
        let mut in_devices = false;
        for line in lines.by_ref() {
            if let Some(rest) = line.strip_prefix("Total ") {
                if let Some(n) = rest.strip_suffix(" devices attached") {
                    assert_eq!(
                        n.parse::<usize>().unwrap(),
                        out.last().unwrap().devices.len()
                    );
                    in_devices = false;
                    continue;
                }
                let (objects, bytes) = rest.split_once(" objects, ").unwrap();
                let bytes = bytes.strip_suffix(" bytes").unwrap();
                return (out, (objects.parse().unwrap(), bytes.parse().unwrap()));
            }
            if line.is_empty() {
                continue;
            }
            if let Some(inner) = line.strip_prefix('\t') {
                let last = out.last_mut().unwrap();
                if inner == "Attached Devices:" {
                    in_devices = true;
                } else if in_devices {
                    last.devices.push(inner.into());
                } else {
                    last.fences.push(inner.into());
                }
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 7, "{line:?}");
            assert!(
                f[0].len() >= 8
                    && f[1].len() == 8
                    && f[2].len() == 8
                    && f[3].len() >= 8
                    && f[5].len() >= 8,
                "{line:?}"
            );
            out.push(Parsed {
                size: f[0].parse().unwrap(),
                flags: u32::from_str_radix(f[1], 16).unwrap(),
                mode: u32::from_str_radix(f[2], 16).unwrap(),
                count: f[3].parse().unwrap(),
                exp_name: f[4].into(),
                ino: f[5].parse().unwrap(),
                name: f[6].into(),
                fences: vec![],
                devices: vec![],
            });
        }
        panic!("no totals line");
    }

    #[test]
    fn bufinfo_reads_back_like_linuxs() {
        let mut bufs = BufTable::new();
        let mut fences: Fences<()> = Fences::new();
        let _system = bufs.export(Allocation::system_pages(&[0x50000, 0x50003]));
        let b = bufs.export(Allocation {
            heap: "default_cma_region".into(),
            bytes: 1 << 20,
            segments: vec![Segment {
                pfn: 0x51000,
                pages: 256,
            }],
            cpu_mapped: true,
            cma_area: None,
            chunk: None,
        });
        bufs.set_name(b, "frame0").unwrap();
        bufs.attach(b, &DeviceDma::new("a003e00.virtio_mmio", None))
            .unwrap();
        bufs.attach(b, &DeviceDma::new("display", None)).unwrap();
        let ctx = fences.new_context("virtio_video", "dec0");
        let w = fences.create(ctx, 0, 10).unwrap();
        let r = fences.create(ctx, 0, 10).unwrap();
        fences.signal(w).unwrap();
        let resv = &mut bufs.buf_mut(b).unwrap().resv;
        resv.add_write(w);
        resv.add_read(r);

        let text = bufinfo(&bufs, &fences);
        assert!(
            text.contains("00008192\t00000002\t00080007\t00000001\tsystem\t00000001\t<none>\n"),
            "{text}"
        );
        let (parsed, totals) = parse(&text);
        assert_eq!(totals, (2, 8192 + (1 << 20)));
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            (parsed[0].size, parsed[0].count, parsed[0].exp_name.as_str()),
            (8192, 1, "system")
        );
        assert!(parsed[0].devices.is_empty() && parsed[0].fences.is_empty());
        let p = &parsed[1];
        assert_eq!(
            (p.size, p.flags, p.mode, p.count, p.ino),
            (1 << 20, 2, 0x80007, 3, 2)
        );
        assert_eq!(
            (p.exp_name.as_str(), p.name.as_str()),
            ("default_cma_region", "frame0")
        );
        assert_eq!(
            p.fences,
            vec![
                "write fence:virtio_video dec0 seq 1 signalled",
                "read fence:virtio_video dec0 seq 2 unsignalled"
            ]
        );
        assert_eq!(p.devices, vec!["a003e00.virtio_mmio", "display"]);
        assert!(text.ends_with("Total 2 devices attached\n\n\nTotal 2 objects, 1056768 bytes\n"));

        let empty = bufinfo(&BufTable::new(), &fences);
        assert_eq!(parse(&empty), (vec![], (0, 0)));
        assert_eq!(
            heap_listing(&["system".into(), "reserved".into()]),
            "system\nreserved\n"
        );
    }
}
