//! ELF to raw binary, the way a boot loader that takes a flat image wants it.
//!
//! Theory of operation
//! -------------------
//! A raw image is the file contents of every `PT_LOAD` segment, placed at its physical
//! address (`p_paddr`) relative to the lowest such address, gaps filled with zeros. Memory
//! beyond a segment's file size (`.bss`, the stack) is not stored: the boot code clears it.
//! Segments with no file bytes do not move the start, so a NOLOAD region below the image
//! cannot inflate the file. Only what the firmware is (ELF64, little-endian) is accepted;
//! anything else is an error naming the problem, never a panic on a short read.

use crate::Result;

const PT_LOAD: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSegment {
    pub paddr: u64,
    pub offset: u64,
    pub file_size: u64,
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("ELF truncated at byte {at}"))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
        .ok_or_else(|| format!("ELF truncated at byte {at}"))
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| format!("ELF truncated at byte {at}"))
}

/// The `PT_LOAD` segments that carry file bytes.
pub fn load_segments(elf: &[u8]) -> Result<Vec<LoadSegment>> {
    if elf.get(0..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file (bad magic)".to_string());
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF".to_string());
    }
    let phoff = usize::try_from(read_u64(elf, 0x20)?).map_err(|_| "bad e_phoff".to_string())?;
    let phentsize = usize::from(read_u16(elf, 0x36)?);
    let phnum = usize::from(read_u16(elf, 0x38)?);
    if phentsize < 0x38 {
        return Err(format!(
            "program header entries of {phentsize} bytes are too small"
        ));
    }
    let mut segments = Vec::new();
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        if read_u32(elf, header)? != PT_LOAD {
            continue;
        }
        let segment = LoadSegment {
            offset: read_u64(elf, header + 0x08)?,
            paddr: read_u64(elf, header + 0x18)?,
            file_size: read_u64(elf, header + 0x20)?,
        };
        if segment.file_size > 0 {
            segments.push(segment);
        }
    }
    Ok(segments)
}

/// The raw image and the physical address its first byte belongs at.
pub fn raw_binary(elf: &[u8]) -> Result<(u64, Vec<u8>)> {
    let mut segments = load_segments(elf)?;
    segments.sort_by_key(|s| s.paddr);
    let Some(base) = segments.first().map(|s| s.paddr) else {
        return Err("ELF has no loadable segment with contents".to_string());
    };
    let end = segments
        .iter()
        .map(|s| s.paddr.saturating_add(s.file_size))
        .max()
        .unwrap_or(base);
    // A sane firmware is a few MiB; refuse to allocate gigabytes for a stray segment.
    const LIMIT: u64 = 256 << 20;
    if end - base > LIMIT {
        return Err(format!(
            "loadable segments span {:#x}..{end:#x}, more than 256 MiB: check the linker script",
            base
        ));
    }
    let mut image = vec![0u8; (end - base) as usize];
    for segment in &segments {
        let source_start = usize::try_from(segment.offset).map_err(|_| "bad p_offset")?;
        let length = segment.file_size as usize;
        let source = elf
            .get(source_start..source_start + length)
            .ok_or_else(|| {
                format!(
                    "segment at {:#x} reads past the end of the file",
                    segment.paddr
                )
            })?;
        let destination = (segment.paddr - base) as usize;
        image[destination..destination + length].copy_from_slice(source);
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
        elf[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut headers = Vec::new();
        for (paddr, bytes, memsz) in segments {
            let offset = elf.len() as u64;
            elf.extend_from_slice(bytes);
            headers.push((PT_LOAD, offset, *paddr, bytes.len() as u64, *memsz));
        }
        headers.push((4, 0, 0x1000, 16, 16));
        for (index, (kind, offset, paddr, filesz, memsz)) in headers.into_iter().enumerate() {
            let at = phoff as usize + index * 0x38;
            elf[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            elf[at + 0x08..at + 0x10].copy_from_slice(&offset.to_le_bytes());
            elf[at + 0x10..at + 0x18]
                .copy_from_slice(&(paddr + 0xffff_0000_0000_0000).to_le_bytes());
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
        assert!(raw_binary(b"").is_err());
        assert!(raw_binary(b"\x7fELF\x01\x01")
            .unwrap_err()
            .contains("64-bit"));
        let mut truncated = elf_with(&[(0x4020_0000, b"TEXT", 4)]);
        truncated.truncate(100);
        assert!(raw_binary(&truncated).is_err());
        assert!(raw_binary(&elf_with(&[]))
            .unwrap_err()
            .contains("no loadable"));
        let huge = elf_with(&[(0x4000_0000, b"A", 1), (0x8000_0000, b"B", 1)]);
        assert!(raw_binary(&huge).unwrap_err().contains("256 MiB"));
    }
}
