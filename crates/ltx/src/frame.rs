//! Page frames (`docs/ltx-and-replica-format.md#page-frames`): the 6-byte page header and the two
//! payload encodings — the current LZ4 block with a length prefix (flag 0x0001), and the legacy
//! per-page LZ4 frame of Litestream 0.5.0–0.5.15 (flag 0, see [`legacy`]). Also [`decode_frame`],
//! which decodes one frame fetched by a range read using the page index.

pub(crate) mod legacy;

use lz4_flex::block::{CompressTable, compress_into_with_table, decompress_into};

use crate::error::{Error, Lz4Error, Result, Section};
use crate::header::{be_u32, is_valid_page_size};

/// Size of a page header (`u32 pgno`, `u16 flags`).
pub(crate) const PAGE_HEADER_SIZE: usize = 6;
/// Size of the end marker closing the page block (a page header of zeros).
pub(crate) const END_MARKER_SIZE: usize = 6;
/// Size of the compressed-length prefix of block-encoded frames.
pub(crate) const LENGTH_PREFIX_SIZE: usize = 4;
/// Page header flag: a u32 compressed length and an LZ4 block follow.
pub(crate) const PAGE_FLAG_SIZE: u16 = 0x0001;

/// How a page's bytes are stored in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageEncoding {
    /// Flag 0x0001, u32 length, one LZ4 block (Litestream ≥ 0.5.16; what we write).
    #[default]
    Block,
    /// Flag 0, one complete LZ4 frame with a content checksum (Litestream 0.5.0–0.5.15).
    /// Litestream ≤ 0.5.15 can only read this encoding.
    LegacyFrame,
}

impl PageEncoding {
    /// The page header flags that announce this encoding.
    pub fn flags(self) -> u16 {
        match self {
            PageEncoding::Block => PAGE_FLAG_SIZE,
            PageEncoding::LegacyFrame => 0,
        }
    }
}

/// The header of one page frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct PageHeader {
    pub pgno: u32,
    pub flags: u16,
}

impl PageHeader {
    pub(crate) fn to_bytes(self) -> [u8; PAGE_HEADER_SIZE] {
        let mut b = [0u8; PAGE_HEADER_SIZE];
        b[..4].copy_from_slice(&self.pgno.to_be_bytes());
        b[4..].copy_from_slice(&self.flags.to_be_bytes());
        b
    }

    pub(crate) fn from_bytes(b: &[u8; PAGE_HEADER_SIZE]) -> PageHeader {
        PageHeader {
            pgno: be_u32(b, 0),
            flags: u16::from_be_bytes([b[4], b[5]]),
        }
    }

    /// True for the end marker (all zero).
    pub(crate) fn is_end(self) -> bool {
        self.pgno == 0 && self.flags == 0
    }

    /// Checks a (non-end-marker) page header and returns its encoding.
    pub(crate) fn validate(self) -> Result<PageEncoding> {
        if self.pgno == 0 {
            return Err(Error::ZeroPageNumber { flags: self.flags });
        }
        match self.flags {
            0 => Ok(PageEncoding::LegacyFrame),
            PAGE_FLAG_SIZE => Ok(PageEncoding::Block),
            flags => Err(Error::BadPageFlags {
                pgno: self.pgno,
                flags,
            }),
        }
    }
}

/// The largest LZ4 block that can decode to `len` bytes (and the largest we accept): an
/// incompressible page grows by about 1/255, never by 10 %.
pub(crate) fn max_compressed_size(len: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(len)
}

/// Reusable LZ4 block compressor: one hash table and output buffer for every page.
pub(crate) struct BlockCompressor {
    table: CompressTable,
}

impl BlockCompressor {
    pub(crate) fn new() -> Self {
        BlockCompressor {
            table: CompressTable::default(),
        }
    }

    /// Compresses `page` into `out` (cleared first) and returns the compressed length.
    pub(crate) fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) -> usize {
        out.clear();
        out.resize(max_compressed_size(page.len()), 0);
        // `out` has the maximum output size, so compression cannot run out of room; if it
        // ever did, store the page as a literal-only block instead.
        let n = compress_into_with_table(page, out, &mut self.table)
            .unwrap_or_else(|_| literal_block(page, out));
        out.truncate(n);
        n
    }
}

/// Writes `page` as an LZ4 block made of one literal run (valid for any input); returns its
/// length. `out` must hold `max_compressed_size(page.len())` bytes.
fn literal_block(page: &[u8], out: &mut [u8]) -> usize {
    let mut pos = 0;
    let len = page.len();
    if len < 15 {
        out[0] = (len as u8) << 4;
        pos = 1;
    } else {
        out[0] = 0xf0;
        pos += 1;
        let mut rest = len - 15;
        while rest >= 255 {
            out[pos] = 255;
            pos += 1;
            rest -= 255;
        }
        out[pos] = rest as u8;
        pos += 1;
    }
    out[pos..pos + len].copy_from_slice(page);
    pos + len
}

/// Decompresses one LZ4 block that must yield exactly `out.len()` bytes.
pub(crate) fn decompress_block(pgno: u32, compressed: &[u8], out: &mut [u8]) -> Result<()> {
    let expected = out.len() as u32;
    match decompress_into(compressed, out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => Err(Error::DecompressedSize {
            pgno,
            expected,
            actual: n as u64,
        }),
        Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
            Err(Error::DecompressedTooLarge { pgno, expected })
        }
        Err(e) => Err(Error::Lz4 {
            pgno,
            source: Lz4Error::Block(e.to_string()),
        }),
    }
}

/// A contiguous byte source for frame payloads: the decoder's buffered reader or a slice.
pub(crate) trait Source {
    /// The next `n` bytes (`n` is bounded by the caller, at most a maximum frame block).
    fn take(&mut self, n: usize, section: Section) -> Result<&[u8]>;
}

/// A [`Source`] over a byte slice.
pub(crate) struct SliceSource<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl Source for SliceSource<'_> {
    fn take(&mut self, n: usize, section: Section) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(Error::Truncated { section })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

/// Reads a block-encoded payload (length prefix + block) into `out`; returns the length prefix
/// bytes (they are part of the file checksum) and the compressed length.
pub(crate) fn read_block_payload<S: Source>(
    src: &mut S,
    pgno: u32,
    out: &mut [u8],
) -> Result<([u8; LENGTH_PREFIX_SIZE], usize)> {
    let mut prefix = [0u8; LENGTH_PREFIX_SIZE];
    prefix.copy_from_slice(src.take(LENGTH_PREFIX_SIZE, Section::PageLength)?);
    let len = u32::from_be_bytes(prefix);
    let max = max_compressed_size(out.len());
    if len as usize > max {
        return Err(Error::CompressedTooLarge {
            pgno,
            len: u64::from(len),
            max: max as u64,
        });
    }
    let compressed = src.take(len as usize, Section::PageData)?;
    decompress_block(pgno, compressed, out)?;
    Ok((prefix, len as usize))
}

/// Decodes one complete frame — exactly the `size` bytes at `offset` named by a page index
/// entry — into `out` (`out.len()` is the page size). Returns the page number. Either encoding
/// is accepted; bytes left over after the payload are an error.
///
/// This checks the frame's own structure (and, for legacy frames, the LZ4 content checksum)
/// but not the file checksum, which covers the whole file.
pub fn decode_frame(frame: &[u8], out: &mut [u8]) -> Result<u32> {
    let page_size = u32::try_from(out.len()).unwrap_or(0);
    if !is_valid_page_size(page_size) {
        return Err(Error::BadPageSize(page_size));
    }
    let mut src = SliceSource {
        bytes: frame,
        pos: 0,
    };
    let mut hb = [0u8; PAGE_HEADER_SIZE];
    hb.copy_from_slice(src.take(PAGE_HEADER_SIZE, Section::PageHeader)?);
    let hdr = PageHeader::from_bytes(&hb);
    match hdr.validate()? {
        PageEncoding::Block => {
            read_block_payload(&mut src, hdr.pgno, out)?;
        }
        PageEncoding::LegacyFrame => {
            legacy::read_frame(&mut src, hdr.pgno, out)?;
        }
    }
    if src.pos != frame.len() {
        return Err(Error::BadIndexEntry {
            pgno: u64::from(hdr.pgno),
            reason: "frame size in the index is larger than the frame",
        });
    }
    Ok(hdr.pgno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Noise;

    #[test]
    fn page_header_rules() {
        assert!(PageHeader::default().is_end());
        let h = PageHeader { pgno: 3, flags: 1 };
        assert_eq!(h.to_bytes(), [0, 0, 0, 3, 0, 1]);
        assert_eq!(PageHeader::from_bytes(&h.to_bytes()), h);
        assert_eq!(h.validate().unwrap(), PageEncoding::Block);
        assert_eq!(
            PageHeader { pgno: 3, flags: 0 }.validate().unwrap(),
            PageEncoding::LegacyFrame
        );
        assert!(matches!(
            PageHeader { pgno: 3, flags: 2 }.validate(),
            Err(Error::BadPageFlags { pgno: 3, flags: 2 })
        ));
        assert!(matches!(
            PageHeader { pgno: 0, flags: 1 }.validate(),
            Err(Error::ZeroPageNumber { flags: 1 })
        ));
        for encoding in [PageEncoding::Block, PageEncoding::LegacyFrame] {
            let h = PageHeader {
                pgno: 3,
                flags: encoding.flags(),
            };
            assert_eq!(h.validate().unwrap(), encoding);
        }
    }

    #[test]
    fn literal_block_decodes() {
        for len in [0usize, 1, 14, 15, 16, 269, 270, 271, 4096] {
            let page: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut out = vec![0u8; max_compressed_size(len)];
            let n = literal_block(&page, &mut out);
            let mut back = vec![0u8; len];
            decompress_block(1, &out[..n], &mut back).unwrap();
            assert_eq!(back, page);
        }
    }

    #[test]
    fn block_size_errors() {
        let mut c = BlockCompressor::new();
        let mut buf = Vec::new();
        c.compress(&[5u8; 1024], &mut buf);
        let mut small = [0u8; 512];
        assert!(matches!(
            decompress_block(9, &buf, &mut small),
            Err(Error::DecompressedTooLarge {
                pgno: 9,
                expected: 512
            })
        ));
        let mut big = [0u8; 2048];
        assert!(matches!(
            decompress_block(9, &buf, &mut big),
            Err(Error::DecompressedSize {
                pgno: 9,
                expected: 2048,
                actual: 1024
            })
        ));
        assert!(matches!(
            decompress_block(9, &[0xf0, 0xff], &mut big),
            Err(Error::Lz4 { pgno: 9, .. })
        ));
    }

    #[test]
    fn random_page_grows_a_little() {
        // `docs/ltx-and-replica-format.md#block-encoding`: a 4096-byte random page becomes a
        // literal-only block of 4114 bytes.
        let page = Noise::new(0x9e37_79b9_7f4a_7c15).bytes(4096);
        let mut buf = Vec::new();
        let n = BlockCompressor::new().compress(&page, &mut buf);
        assert_eq!(n, 4096 + 1 + 16 + 1);
        assert!(n <= max_compressed_size(4096));
    }
}
