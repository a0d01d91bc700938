//! ELF to raw binary, the way a boot loader that takes a flat image wants it.
//!
//! Theory of operation
//! -------------------
//! A raw image is the file contents of every `PT_LOAD` segment, placed at its physical
//! address (`p_paddr`) relative to the lowest such address, gaps filled with zeros. Memory
//! beyond a segment's file size (`.bss`, the stack) is not stored: the boot code clears it.
//! Segments with no file bytes do not move the start, so a NOLOAD region below the image
//! cannot inflate the file. The `object` crate reads the headers and bounds-checks every
//! table and segment against the file; only what the firmware is (ELF64, little-endian) is
//! accepted, and anything else is an error naming the problem, never a panic.

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use anyhow::{anyhow, bail, Context, Result};

/// The ELF header, read by the `object` crate, of the only kind of ELF the firmware is.
/// Also used for the symbol table by `profile.rs`.
pub fn elf64_header(elf: &[u8]) -> Result<&FileHeader64<LittleEndian>> {
    if elf.get(0..4) != Some(elf::ELFMAG.as_slice()) {
        bail!("not an ELF file (bad magic)");
    }
    if elf.get(4..6) != Some([elf::ELFCLASS64.0, elf::ELFDATA2LSB.0].as_slice()) {
        bail!("not a 64-bit little-endian ELF");
    }
    FileHeader64::<LittleEndian>::parse(elf).context("bad ELF header")
}

/// A `PT_LOAD` segment's physical address and its bytes in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSegment<'elf> {
    pub paddr: u64,
    pub data: &'elf [u8],
}

/// The `PT_LOAD` segments that carry file bytes.
pub fn load_segments(elf: &[u8]) -> Result<Vec<LoadSegment<'_>>> {
    let header = elf64_header(elf)?;
    let headers = header
        .program_headers(LittleEndian, elf)
        .context("reading the program headers")?;
    let mut segments = Vec::new();
    for program_header in headers {
        if program_header.p_type(LittleEndian) != elf::PT_LOAD
            || program_header.p_filesz(LittleEndian) == 0
        {
            continue;
        }
        let paddr = program_header.p_paddr(LittleEndian);
        let data = program_header
            .data(LittleEndian, elf)
            .map_err(|()| anyhow!("segment at {paddr:#x} reads past the end of the file"))?;
        segments.push(LoadSegment { paddr, data });
    }
    Ok(segments)
}

/// The raw image and the physical address its first byte belongs at.
pub fn raw_binary(elf: &[u8]) -> Result<(u64, Vec<u8>)> {
    let mut segments = load_segments(elf)?;
    segments.sort_by_key(|s| s.paddr);
    let Some(base) = segments.first().map(|s| s.paddr) else {
        bail!("ELF has no loadable segment with contents");
    };
    let mut end = base;
    for segment in &segments {
        let segment_end = segment
            .paddr
            .checked_add(segment.data.len() as u64)
            .with_context(|| {
                format!(
                    "segment at {:#x} runs past the end of the address space",
                    segment.paddr
                )
            })?;
        end = end.max(segment_end);
    }
    // A sane firmware is a few MiB; refuse to allocate gigabytes for a stray segment.
    const LIMIT: u64 = 256 << 20;
    if end - base > LIMIT {
        bail!(
            "loadable segments span {:#x}..{end:#x}, more than 256 MiB: check the linker script",
            base
        );
    }
    let mut image = vec![0u8; (end - base) as usize];
    for segment in &segments {
        let destination = (segment.paddr - base) as usize;
        image[destination..destination + segment.data.len()].copy_from_slice(segment.data);
    }
    Ok((base, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (paddr, file bytes, memsz) PT_LOAD segments, plus one
    /// PT_NOTE that must be ignored.
    fn elf_with(segments: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64u64;
        let phnum = segments.len() + 1;
        let data_start = phoff as usize + phnum * 0x38;
        let mut elf = vec![0u8; data_start];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[6] = 1; // EI_VERSION
        elf[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut headers = Vec::new();
        for (paddr, bytes, memsz) in segments {
            let offset = elf.len() as u64;
            elf.extend_from_slice(bytes);
            headers.push((elf::PT_LOAD.0, offset, *paddr, bytes.len() as u64, *memsz));
        }
        headers.push((4, 0, 0x1000, 16, 16));
        for (index, (kind, offset, paddr, filesz, memsz)) in headers.into_iter().enumerate() {
            let at = phoff as usize + index * 0x38;
            elf[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            elf[at + 0x08..at + 0x10].copy_from_slice(&offset.to_le_bytes());
            elf[at + 0x10..at + 0x18]
                .copy_from_slice(&paddr.wrapping_add(0xffff_0000_0000_0000).to_le_bytes());
            elf[at + 0x18..at + 0x20].copy_from_slice(&paddr.to_le_bytes());
            elf[at + 0x20..at + 0x28].copy_from_slice(&filesz.to_le_bytes());
            elf[at + 0x28..at + 0x30].copy_from_slice(&memsz.to_le_bytes());
        }
        elf
    }

    #[test]
    fn segments_are_placed_by_paddr_with_zero_gaps() {
        // Given out of order on purpose; the bss-only segment must not count.
        let elf = elf_with(&[
            (0x4020_2000, b"DATA", 0x100),
            (0x4020_0000, b"TEXT", 4),
            (0x5000_0000, b"", 0x1000),
        ]);
        let (base, image) = raw_binary(&elf).unwrap();
        assert_eq!(base, 0x4020_0000);
        assert_eq!(image.len(), 0x2004);
        assert_eq!(&image[0..4], b"TEXT");
        assert!(image[4..0x2000].iter().all(|&b| b == 0));
        assert_eq!(&image[0x2000..0x2004], b"DATA");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let error = |elf: &[u8]| format!("{:#}", raw_binary(elf).unwrap_err());
        assert!(raw_binary(b"").is_err());
        assert!(error(b"\x7fELF\x01\x01").contains("64-bit"));
        let mut truncated = elf_with(&[(0x4020_0000, b"TEXT", 4)]);
        truncated.truncate(100);
        assert!(raw_binary(&truncated).is_err());
        assert!(error(&elf_with(&[])).contains("no loadable"));
        let huge = elf_with(&[(0x4000_0000, b"A", 1), (0x8000_0000, b"B", 1)]);
        assert!(error(&huge).contains("256 MiB"));
        let wraps = elf_with(&[(u64::MAX - 1, b"TEXT", 4)]);
        assert!(error(&wraps).contains("address space"));
    }
}
