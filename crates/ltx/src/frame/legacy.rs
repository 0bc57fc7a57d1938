//! The legacy page payload of Litestream 0.5.0–0.5.15 (page flag 0): one complete LZ4 frame
//! per page, with no length prefix.
//!
//! We write what pierrec/lz4 v4 writes: magic `04 22 4D 18`, FLG `0x64` (version 1,
//! independent blocks, content checksum), BD `0x40` (64 KiB blocks), the header checksum, one
//! data block (stored raw with the high bit of its size set when compression does not help),
//! the end mark and the xxh32 content checksum. Litestream 0.5.17 requires the content checksum
//! and nothing after it.
//!
//! We read any LZ4 frame (v1): block or content checksums, a content size, linked or
//! independent blocks of any maximum size. The parser is our own rather than a general frame
//! reader so that it never reads past the frame's end (the next page header follows directly)
//! and never allocates more than a page, whatever the frame's fields say.

use xxhash_rust::xxh32::xxh32;

use super::{BlockCompressor, Source, max_compressed_size};
use crate::error::{Error, Lz4Error, Result, Section};

const MAGIC: u32 = 0x184D_2204;
/// FLG: version 01, block independence, content checksum.
const FLG: u8 = 0x64;
/// BD: 64 KiB maximum block size.
const BD: u8 = 0x40;
const FLG_VERSION_MASK: u8 = 0xC0;
const FLG_BLOCK_INDEPENDENT: u8 = 0x20;
const FLG_BLOCK_CHECKSUM: u8 = 0x10;
const FLG_CONTENT_SIZE: u8 = 0x08;
const FLG_CONTENT_CHECKSUM: u8 = 0x04;
const FLG_RESERVED: u8 = 0x02;
const FLG_DICT_ID: u8 = 0x01;
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;

fn header_checksum(descriptor: &[u8]) -> u8 {
    (xxh32(descriptor, 0) >> 8) as u8
}

/// Appends the LZ4 frame for `page` (whose size is at most 64 KiB) to `out`.
pub(crate) fn write_frame(
    page: &[u8],
    compressor: &mut BlockCompressor,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[FLG, BD, header_checksum(&[FLG, BD])]);
    let n = compressor.compress(page, scratch);
    if n < page.len() {
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&scratch[..n]);
    } else {
        out.extend_from_slice(&(page.len() as u32 | BLOCK_UNCOMPRESSED).to_le_bytes());
        out.extend_from_slice(page);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&xxh32(page, 0).to_le_bytes());
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads one LZ4 frame from `src` that must decode to exactly `out.len()` bytes; returns the
/// number of bytes the frame occupied.
pub(crate) fn read_frame<S: Source>(src: &mut S, pgno: u32, out: &mut [u8]) -> Result<usize> {
    let err = |source| Error::Lz4 { pgno, source };
    let page_size = out.len();
    let mut used = 0usize;

    let magic = le_u32(src.take(4, Section::PageData)?);
    used += 4;
    if magic != MAGIC {
        return Err(err(Lz4Error::FrameMagic(magic)));
    }
    let mut descriptor = [0u8; 15];
    descriptor[..2].copy_from_slice(src.take(2, Section::PageData)?);
    used += 2;
    let (flg, bd) = (descriptor[0], descriptor[1]);
    if flg & FLG_VERSION_MASK != 0x40 {
        return Err(err(Lz4Error::FrameDescriptor("version is not 01")));
    }
    if flg & FLG_RESERVED != 0 || bd & 0x8F != 0 {
        return Err(err(Lz4Error::FrameDescriptor("reserved bits set")));
    }
    if flg & FLG_DICT_ID != 0 {
        return Err(err(Lz4Error::FrameDescriptor("dictionary id")));
    }
    let max_block: u32 = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Err(err(Lz4Error::FrameDescriptor("block maximum size"))),
    };
    let mut dlen = 2;
    if flg & FLG_CONTENT_SIZE != 0 {
        descriptor[2..10].copy_from_slice(src.take(8, Section::PageData)?);
        used += 8;
        dlen = 10;
        let mut a = [0u8; 8];
        a.copy_from_slice(&descriptor[2..10]);
        let content_size = u64::from_le_bytes(a);
        if content_size != page_size as u64 {
            return Err(Error::DecompressedSize {
                pgno,
                expected: page_size as u32,
                actual: content_size,
            });
        }
    }
    let hc = src.take(1, Section::PageData)?[0];
    used += 1;
    let computed = header_checksum(&descriptor[..dlen]);
    if hc != computed {
        return Err(err(Lz4Error::FrameHeaderChecksum {
            stored: hc,
            computed,
        }));
    }

    let linked = flg & FLG_BLOCK_INDEPENDENT == 0;
    let mut produced = 0usize;
    loop {
        let word = le_u32(src.take(4, Section::PageData)?);
        used += 4;
        if word == 0 {
            break;
        }
        let raw = word & BLOCK_UNCOMPRESSED != 0;
        let size = word & !BLOCK_UNCOMPRESSED;
        if size > max_block {
            return Err(err(Lz4Error::BlockTooLarge {
                size,
                max: max_block,
            }));
        }
        let remaining = page_size - produced;
        let size_us = size as usize;
        // Bound what we read by what the page can still hold.
        let limit = if raw {
            remaining
        } else {
            max_compressed_size(remaining)
        };
        if size_us > limit {
            return Err(Error::DecompressedTooLarge {
                pgno,
                expected: page_size as u32,
            });
        }
        let data = src.take(size_us, Section::PageData)?;
        used += size_us;
        let block_crc = (flg & FLG_BLOCK_CHECKSUM != 0).then(|| xxh32(data, 0));
        if raw {
            out[produced..produced + size_us].copy_from_slice(data);
            produced += size_us;
        } else {
            let (dict, dst) = out.split_at_mut(produced);
            let n = if linked && !dict.is_empty() {
                lz4_flex::block::decompress_into_with_dict(data, dst, dict)
            } else {
                lz4_flex::block::decompress_into(data, dst)
            };
            match n {
                Ok(n) => produced += n,
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                    return Err(Error::DecompressedTooLarge {
                        pgno,
                        expected: page_size as u32,
                    });
                }
                Err(e) => return Err(err(Lz4Error::Block(e.to_string()))),
            }
        }
        if let Some(computed) = block_crc {
            let stored = le_u32(src.take(4, Section::PageData)?);
            used += 4;
            if stored != computed {
                return Err(err(Lz4Error::BlockChecksum));
            }
        }
    }
    if produced != page_size {
        return Err(Error::DecompressedSize {
            pgno,
            expected: page_size as u32,
            actual: produced as u64,
        });
    }
    if flg & FLG_CONTENT_CHECKSUM != 0 {
        let stored = le_u32(src.take(4, Section::PageData)?);
        used += 4;
        let computed = xxh32(out, 0);
        if stored != computed {
            return Err(err(Lz4Error::ContentChecksum { stored, computed }));
        }
    }
    Ok(used)
}

/// An upper bound for a one-block frame of this page size (ours, pierrec's): it sizes the
/// decoder's read buffer. Frames split into several blocks may be longer in total, but each
/// read is one block, bounded by the page size, so the buffer never grows past this.
pub(crate) fn max_frame_size(page_size: usize) -> usize {
    // magic + descriptor (+ content size) + HC + block size + block + block checksum + end
    // mark + content checksum.
    4 + 2 + 8 + 1 + 4 + page_size.max(max_compressed_size(page_size)) + 4 + 4 + 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SliceSource;
    use crate::noise::Noise;
    use std::io::{Read, Write};

    fn page(n: usize, seed: u64) -> Vec<u8> {
        let mut noise = Noise::new(seed | 1);
        (0..n)
            .map(|i| {
                if i % 64 < 40 {
                    (i / 64) as u8
                } else {
                    noise.byte()
                }
            })
            .collect()
    }

    fn ours(p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(p, &mut BlockCompressor::new(), &mut Vec::new(), &mut out);
        out
    }

    fn read(bytes: &[u8], page_size: usize) -> Result<(Vec<u8>, usize)> {
        let mut out = vec![0u8; page_size];
        let mut src = SliceSource { bytes, pos: 0 };
        let used = read_frame(&mut src, 1, &mut out)?;
        Ok((out, used))
    }

    #[test]
    fn our_frames_are_standard_lz4_frames() {
        for size in [512usize, 4096, 65536] {
            let p = page(size, size as u64);
            let f = ours(&p);
            assert_eq!(&f[..7], &[0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, f[6]]);
            // lz4_flex's general frame decoder reads it, content checksum included.
            let mut back = Vec::new();
            lz4_flex::frame::FrameDecoder::new(&f[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, p);
            let (mine, used) = read(&f, size).unwrap();
            assert_eq!(mine, p);
            assert_eq!(used, f.len());
            assert!(f.len() <= max_frame_size(size));
        }
    }

    #[test]
    fn incompressible_page_is_stored_raw() {
        let p = Noise::new(7).bytes(65536);
        let f = ours(&p);
        assert_eq!(le_u32(&f[7..]), 65536 | BLOCK_UNCOMPRESSED);
        assert_eq!(read(&f, 65536).unwrap().0, p);
    }

    #[test]
    fn reads_general_frames() {
        // Frames from lz4_flex's encoder: linked blocks, block checksums, content size, and
        // several small blocks.
        let p = page(65536, 3);
        for (linked, block_ck, size) in [
            (true, true, true),
            (false, false, false),
            (true, false, true),
        ] {
            let mut info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .content_checksum(true)
                .block_checksums(block_ck);
            if linked {
                info = info.block_mode(lz4_flex::frame::BlockMode::Linked);
            }
            if size {
                info = info.content_size(Some(65536));
            }
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(&p).unwrap();
            let f = enc.finish().unwrap();
            let (back, used) = read(&f, 65536).unwrap();
            assert_eq!(back, p);
            assert_eq!(used, f.len());
        }
        // Several blocks per page: encoders cannot be asked for blocks below 64 KiB, so build
        // a frame of two raw 512-byte blocks by hand.
        let q = page(1024, 9);
        let mut f = Vec::new();
        f.extend_from_slice(&MAGIC.to_le_bytes());
        f.extend_from_slice(&[FLG, BD, header_checksum(&[FLG, BD])]);
        for half in q.chunks(512) {
            f.extend_from_slice(&(512u32 | BLOCK_UNCOMPRESSED).to_le_bytes());
            f.extend_from_slice(half);
        }
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&xxh32(&q, 0).to_le_bytes());
        assert_eq!(read(&f, 1024).unwrap().0, q);
    }

    #[test]
    fn every_frame_error_is_typed() {
        let p = page(4096, 5);
        let good = ours(&p);
        let lz4 = |r: Result<(Vec<u8>, usize)>| match r {
            Err(Error::Lz4 { source, .. }) => source,
            other => panic!("expected an LZ4 error, got {other:?}"),
        };
        let mut f = good.clone();
        f[0] ^= 1;
        assert!(matches!(lz4(read(&f, 4096)), Lz4Error::FrameMagic(_)));
        let mut f = good.clone();
        f[6] ^= 1;
        assert!(matches!(
            lz4(read(&f, 4096)),
            Lz4Error::FrameHeaderChecksum { .. }
        ));
        let mut f = good.clone();
        f[4] = 0x80;
        assert!(matches!(lz4(read(&f, 4096)), Lz4Error::FrameDescriptor(_)));
        let mut f = good.clone();
        f[4] |= FLG_DICT_ID;
        assert!(matches!(lz4(read(&f, 4096)), Lz4Error::FrameDescriptor(_)));
        let mut f = good.clone();
        let n = f.len();
        f[n - 1] ^= 1;
        assert!(matches!(
            lz4(read(&f, 4096)),
            Lz4Error::ContentChecksum { .. }
        ));
        // A block larger than the descriptor's maximum.
        let mut f = good.clone();
        f[7..11].copy_from_slice(&(70_000u32).to_le_bytes());
        assert!(matches!(
            lz4(read(&f, 4096)),
            Lz4Error::BlockTooLarge { .. }
        ));
        // A frame for a different page size.
        assert!(matches!(
            read(&good, 8192),
            Err(Error::DecompressedSize { actual: 4096, .. })
        ));
        assert!(matches!(
            read(&good, 2048),
            Err(Error::DecompressedTooLarge { .. })
        ));
        // Cut anywhere: truncated, never a panic.
        for cut in 0..good.len() {
            assert!(read(&good[..cut], 4096).is_err(), "cut at {cut}");
        }
    }
}
