//! Reading SQLite WAL files the way Litestream does, with no SQLite connection.
//!
//! This module owns the WAL byte format: the 32-byte header (both magics, checksum
//! verification), frame iteration along the cumulative checksum chain with salt checks,
//! committed-transaction detection, and resuming from a frame-aligned offset. What it returns
//! ([`WalScan`]) is what the replicator needs to build one L0 LTX file: the newest WAL frame
//! of every page committed in the scanned range, the database size after the last commit, the
//! salts, and the start and end offsets.
//!
//! It reads through [`ReadAt`] (positional reads), so the replicator can share one file
//! handle and read page images later by offset ([`read_page`]).
//!
//! End-of-WAL rules (as SQLite and Litestream): reading stops at the first frame that is
//! short, whose salts differ from the header's (a frame left over from before a WAL
//! restart), or whose checksum does not continue the chain (torn or corrupt write). Frames
//! after the last commit frame belong to a transaction that is not committed and are ignored.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;

/// Size of the WAL header.
pub const WAL_HEADER_SIZE: u64 = 32;
/// Size of a frame header (followed by one page).
pub const FRAME_HEADER_SIZE: u64 = 24;
/// WAL magic whose checksums use little-endian words.
pub const MAGIC_LE: u32 = 0x377f_0682;
/// WAL magic whose checksums use big-endian words.
pub const MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version SQLite writes.
pub const WAL_VERSION: u32 = 3_007_000;

/// Errors from reading a WAL file.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("reading WAL: {0}")]
    Io(#[from] io::Error),
    /// Fewer than 32 bytes: SQLite has not written a header yet. Litestream treats this as an
    /// empty WAL (see [`WalError::is_empty_wal`]).
    #[error("WAL is shorter than its 32-byte header")]
    ShortHeader,
    #[error("WAL header has an unknown magic {0:#010x} (expected 0x377f0682 or 0x377f0683)")]
    BadMagic(u32),
    #[error("WAL header checksum mismatch (header not fully written)")]
    HeaderChecksum,
    #[error("WAL header has unsupported format version {0} (expected 3007000)")]
    BadVersion(u32),
    #[error("WAL header has invalid page size {0}")]
    BadPageSize(u32),
    #[error(
        "WAL offset {offset} is not frame-aligned (frames start at 32 and are {frame_size} bytes)"
    )]
    UnalignedOffset { offset: u64, frame_size: u64 },
    /// Resuming at `offset` needs the frame just before it (to seed the checksum chain), and
    /// it could not be read in full. Litestream then starts again from offset 32.
    #[error("cannot resume WAL at offset {offset}: the frame before it is missing")]
    ResumeFrameMissing { offset: u64 },
    /// The frame before the resume offset carries other salts than expected: the WAL was
    /// restarted or overwritten since the previous read.
    #[error(
        "cannot resume WAL at offset {offset}: salts {found:?} differ from the expected {expected:?}"
    )]
    ResumeSaltMismatch {
        offset: u64,
        expected: Salt,
        found: Salt,
    },
    #[error("page buffer of {got} bytes does not match the WAL page size {want}")]
    PageBuffer { got: usize, want: u32 },
}

impl WalError {
    /// True for the header errors Litestream treats as "the WAL is empty": a short header or
    /// a header whose checksum does not match (SQLite was interrupted while writing it).
    pub fn is_empty_wal(&self) -> bool {
        matches!(self, WalError::ShortHeader | WalError::HeaderChecksum)
    }
}

/// Positional reads, so a WAL can be scanned and its pages fetched later through one handle.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Fills as much of `buf` from `offset` as the source holds; returns how many bytes were
    /// read (less than `buf.len()` only if the source ends first).
    fn read_most_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Fills `buf` from `offset`; `Ok(false)` if the source ends first.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        Ok(self.read_most_at(buf, offset)? == buf.len())
    }
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= self.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
}

/// The pair of salts a WAL header carries; every valid frame repeats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Salt {
    pub salt1: u32,
    pub salt2: u32,
}

/// Which word order the WAL checksums use (given by the magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// The 32-byte WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub byte_order: ByteOrder,
    pub version: u32,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt: Salt,
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Parses and verifies a header (magic, version, page size, checksum).
    pub fn parse(buf: &[u8; 32]) -> Result<WalHeader, WalError> {
        let magic = be32(buf, 0);
        let byte_order = match magic {
            MAGIC_LE => ByteOrder::Little,
            MAGIC_BE => ByteOrder::Big,
            m => return Err(WalError::BadMagic(m)),
        };
        let checksum = (be32(buf, 24), be32(buf, 28));
        if checksum_update(byte_order, (0, 0), &buf[..24]) != checksum {
            return Err(WalError::HeaderChecksum);
        }
        let version = be32(buf, 4);
        if version != WAL_VERSION {
            return Err(WalError::BadVersion(version));
        }
        let page_size = be32(buf, 8);
        if !ltx::is_valid_page_size(page_size) {
            return Err(WalError::BadPageSize(page_size));
        }
        Ok(WalHeader {
            byte_order,
            version,
            page_size,
            checkpoint_seq: be32(buf, 12),
            salt: Salt {
                salt1: be32(buf, 16),
                salt2: be32(buf, 20),
            },
            checksum,
        })
    }

    /// Reads and verifies the header at the start of `src`.
    pub fn read<R: ReadAt + ?Sized>(src: &R) -> Result<WalHeader, WalError> {
        let mut buf = [0u8; 32];
        if !src.read_full_at(&mut buf, 0)? {
            return Err(WalError::ShortHeader);
        }
        WalHeader::parse(&buf)
    }

    /// Bytes of one frame: 24-byte frame header plus one page.
    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE + u64::from(self.page_size)
    }

    /// The offset of frame number `index` (0-based).
    pub fn frame_offset(&self, index: u64) -> u64 {
        WAL_HEADER_SIZE + index * self.frame_size()
    }
}

/// The 24-byte header of one WAL frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub pgno: u32,
    /// Database size in pages after the transaction; non-zero only on its last (commit) frame.
    pub commit: u32,
    pub salt: Salt,
    pub checksum: (u32, u32),
}

impl FrameHeader {
    pub fn parse(buf: &[u8; 24]) -> FrameHeader {
        FrameHeader {
            pgno: be32(buf, 0),
            commit: be32(buf, 4),
            salt: Salt {
                salt1: be32(buf, 8),
                salt2: be32(buf, 12),
            },
            checksum: (be32(buf, 16), be32(buf, 20)),
        }
    }

    pub fn is_commit(&self) -> bool {
        self.commit != 0
    }
}

/// One verified frame, as returned by [`WalReader::next_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset of the frame header in the WAL (the page follows 24 bytes later).
    pub offset: u64,
    pub header: FrameHeader,
}

/// Why a scan stopped reading frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The file ends (possibly in the middle of a frame: a short frame).
    EndOfFile,
    /// A frame carries other salts than the header: it predates a WAL restart.
    SaltMismatch,
    /// A frame's checksum does not continue the chain: torn or corrupt write.
    ChecksumMismatch,
    /// The byte limit was reached at a commit boundary; more committed frames may follow.
    ByteLimit,
}

/// The committed transactions found by one [`WalReader::read_committed`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalScan {
    pub page_size: u32,
    /// Salts of the WAL header (and of every frame read).
    pub salt: Salt,
    /// Where this scan started reading (frame-aligned; 32 for a fresh WAL).
    pub start_offset: u64,
    /// End of the last committed frame read; equals `start_offset` when nothing was committed.
    pub end_offset: u64,
    /// Database size in pages after the last commit read, if any commit frame was read.
    pub commit: Option<u32>,
    /// Page number → offset of the frame holding its newest committed version (pages beyond
    /// the final commit size removed). Ascending by page number.
    pub pages: BTreeMap<u32, u64>,
    /// Number of commit frames read.
    pub transactions: u64,
    /// Offset of the last committed frame, if any (the frame Litestream verifies on the next
    /// sync).
    pub last_commit_frame: Option<u64>,
    pub stop: StopReason,
}

impl WalScan {
    /// Bytes of WAL covered (the LTX header's WALSize).
    pub fn wal_size(&self) -> u64 {
        self.end_offset - self.start_offset
    }

    /// True when no committed frame was found.
    pub fn is_empty(&self) -> bool {
        self.transactions == 0
    }
}

/// Bytes read ahead at once when scanning frames (whole frames; at least one).
const READ_AHEAD: usize = 1 << 20;

/// A verified, forward-only reader over the frames of one WAL. Frames are read ahead in
/// chunks of about 1 MiB (one `pread` per chunk, not per frame); a frame cut off at the end
/// of a chunk is read again with the next chunk.
#[derive(Debug)]
pub struct WalReader<R> {
    src: R,
    header: WalHeader,
    /// Offset of the next frame to read.
    offset: u64,
    /// Running checksum after the last verified frame.
    chain: (u32, u32),
    /// Read-ahead buffer holding the bytes at `buf_offset..buf_offset + buf_len`.
    buf: Vec<u8>,
    buf_offset: u64,
    buf_len: usize,
    /// Start of the last returned frame within `buf`.
    last: usize,
    /// Chunks read so far (the first ones are small: most scans read a few new frames).
    refills: u32,
}

impl<R: ReadAt> WalReader<R> {
    /// Opens a WAL at its first frame (offset 32).
    pub fn open(src: R) -> Result<WalReader<R>, WalError> {
        let header = WalHeader::read(&src)?;
        let frame = frame_len(&header);
        Ok(WalReader {
            buf: vec![0; (READ_AHEAD / frame).max(1) * frame],
            buf_offset: 0,
            buf_len: 0,
            last: 0,
            refills: 0,
            chain: header.checksum,
            offset: WAL_HEADER_SIZE,
            header,
            src,
        })
    }

    /// Opens a WAL to continue at the frame-aligned `offset` (the end offset of a previous
    /// scan), expecting the frames there to carry `salt` (the previous LTX file's salts).
    ///
    /// The frame just before `offset` is read without verification to seed the checksum
    /// chain; it must carry `salt`. At offset 32 the header itself must carry `salt`.
    pub fn resume(src: R, offset: u64, salt: Salt) -> Result<WalReader<R>, WalError> {
        WalReader::open(src)?.continue_at(offset, salt)
    }

    /// [`WalReader::resume`] on an opened reader.
    fn continue_at(mut self, offset: u64, salt: Salt) -> Result<WalReader<R>, WalError> {
        let frame_size = self.header.frame_size();
        if offset < WAL_HEADER_SIZE || !(offset - WAL_HEADER_SIZE).is_multiple_of(frame_size) {
            return Err(WalError::UnalignedOffset { offset, frame_size });
        }
        if offset == WAL_HEADER_SIZE {
            if self.header.salt != salt {
                return Err(WalError::ResumeSaltMismatch {
                    offset,
                    expected: salt,
                    found: self.header.salt,
                });
            }
            return Ok(self);
        }
        let prev = offset - frame_size;
        let Some(frame) = self.read_frame_header_at(prev)? else {
            return Err(WalError::ResumeFrameMissing { offset });
        };
        // The page of the seeding frame must be there too, or the frame was torn.
        let mut probe = [0u8; 1];
        if !self.src.read_full_at(&mut probe, offset - 1)? {
            return Err(WalError::ResumeFrameMissing { offset });
        }
        if frame.salt != salt {
            return Err(WalError::ResumeSaltMismatch {
                offset,
                expected: salt,
                found: frame.salt,
            });
        }
        self.chain = frame.checksum;
        self.offset = offset;
        Ok(self)
    }

    /// Like [`WalReader::resume`] at `offset` > 32, but reads the frames of the generation
    /// whose salts are `salt` even when the header has moved on to a newer generation (a
    /// restart shorter than that generation leaves its tail in the file).
    pub fn resume_generation(src: R, offset: u64, salt: Salt) -> Result<WalReader<R>, WalError> {
        let mut reader = WalReader::open(src)?;
        if offset <= WAL_HEADER_SIZE {
            return Err(WalError::ResumeFrameMissing { offset });
        }
        reader.header.salt = salt;
        reader.continue_at(offset, salt)
    }

    pub fn header(&self) -> &WalHeader {
        &self.header
    }

    /// Offset of the next frame to be read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The underlying source (to read pages by offset after a scan).
    pub fn source(&self) -> &R {
        &self.src
    }

    pub fn into_source(self) -> R {
        self.src
    }

    /// Reads a frame header at `offset` without verifying anything; `None` if short.
    pub fn read_frame_header_at(&self, offset: u64) -> Result<Option<FrameHeader>, WalError> {
        let mut hdr = [0u8; 24];
        if !self.src.read_full_at(&mut hdr, offset)? {
            return Ok(None);
        }
        Ok(Some(FrameHeader::parse(&hdr)))
    }

    /// Reads and verifies the next frame. `Ok(Err(reason))` marks the end of the valid WAL
    /// (the reader does not advance); the page image is available through
    /// [`WalReader::last_page`] until the next call.
    pub fn next_frame(&mut self) -> Result<Result<Frame, StopReason>, WalError> {
        let offset = self.offset;
        let len = frame_len(&self.header);
        let Some(at) = self.frame_in_buffer(offset, len)? else {
            return Ok(Err(StopReason::EndOfFile));
        };
        let frame = &self.buf[at..at + len];
        let mut hdr = [0u8; 24];
        hdr.copy_from_slice(&frame[..24]);
        let header = FrameHeader::parse(&hdr);
        if header.salt != self.header.salt {
            return Ok(Err(StopReason::SaltMismatch));
        }
        let order = self.header.byte_order;
        let chain = checksum_update(order, self.chain, &frame[..8]);
        let chain = checksum_update(order, chain, &frame[24..]);
        if chain != header.checksum {
            return Ok(Err(StopReason::ChecksumMismatch));
        }
        self.chain = chain;
        self.last = at;
        self.offset = offset + self.header.frame_size();
        Ok(Ok(Frame { offset, header }))
    }

    /// Where the `len` bytes at `offset` start in the read-ahead buffer, reading a new chunk
    /// if they are not all there; `None` if the file ends first.
    fn frame_in_buffer(&mut self, offset: u64, len: usize) -> Result<Option<usize>, WalError> {
        let end = offset + len as u64;
        if offset >= self.buf_offset && end <= self.buf_offset + self.buf_len as u64 {
            return Ok(Some((offset - self.buf_offset) as usize));
        }
        // 64 KiB, then doubling up to the buffer (whole frames, at least one).
        let want = ((64usize << self.refills.min(8)) * 1024 / len).max(1) * len;
        let want = want.min(self.buf.len()).max(len);
        self.refills += 1;
        let filled = self.src.read_most_at(&mut self.buf[..want], offset)?;
        self.buf_offset = offset;
        self.buf_len = filled;
        Ok((filled >= len).then_some(0))
    }

    /// The page image of the frame last returned by [`WalReader::next_frame`].
    pub fn last_page(&self) -> &[u8] {
        let start = self.last + FRAME_HEADER_SIZE as usize;
        &self.buf[start..self.last + frame_len(&self.header)]
    }

    /// Reads frames up to the end of the valid WAL and returns the committed transactions.
    ///
    /// With `byte_limit`, stops at the first commit boundary at or beyond that many bytes
    /// from the start of this call (Litestream's `max-sync-wal-bytes`); call again to read
    /// the next batch. After the call the reader stands at the end of the last committed
    /// frame, so an uncommitted tail is read again (and picked up once it commits).
    pub fn read_committed(&mut self, byte_limit: Option<u64>) -> Result<WalScan, WalError> {
        let start_offset = self.offset;
        let mut committed = (self.offset, self.chain);
        let mut pages = BTreeMap::new();
        let mut staged: Vec<(u32, u64)> = Vec::new();
        let mut commit = None;
        let mut transactions = 0;
        let mut last_commit_frame = None;
        let stop = loop {
            let frame = match self.next_frame()? {
                Ok(frame) => frame,
                Err(reason) => break reason,
            };
            staged.push((frame.header.pgno, frame.offset));
            if !frame.header.is_commit() {
                continue;
            }
            pages.extend(staged.drain(..));
            commit = Some(frame.header.commit);
            transactions += 1;
            last_commit_frame = Some(frame.offset);
            committed = (self.offset, self.chain);
            if let Some(limit) = byte_limit
                && self.offset - start_offset >= limit
            {
                break StopReason::ByteLimit;
            }
        };
        (self.offset, self.chain) = committed;
        if let Some(size) = commit {
            pages.retain(|&pgno, _| pgno <= size);
        }
        Ok(WalScan {
            page_size: self.header.page_size,
            salt: self.header.salt,
            start_offset,
            end_offset: self.offset,
            commit,
            pages,
            transactions,
            last_commit_frame,
            stop,
        })
    }
}

/// Reads the page image of the frame at `frame_offset` (as recorded in [`WalScan::pages`])
/// into `page`, whose length must be the WAL's page size.
pub fn read_page<R: ReadAt + ?Sized>(
    src: &R,
    header: &WalHeader,
    frame_offset: u64,
    page: &mut [u8],
) -> Result<(), WalError> {
    if page.len() != header.page_size as usize {
        return Err(WalError::PageBuffer {
            got: page.len(),
            want: header.page_size,
        });
    }
    if !src.read_full_at(page, frame_offset + FRAME_HEADER_SIZE)? {
        return Err(WalError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("WAL ends inside the frame at offset {frame_offset}"),
        )));
    }
    Ok(())
}

/// SQLite's WAL checksum: over 8-byte units, `s0 += w0 + s1; s1 += w1 + s0` (wrapping), the
/// words read in the WAL's byte order. `data.len()` must be a multiple of 8.
pub fn checksum_update(order: ByteOrder, seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    for chunk in data.chunks_exact(8) {
        let (w0, w1) = match order {
            ByteOrder::Little => (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            ),
            ByteOrder::Big => (
                u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            ),
        };
        s0 = s0.wrapping_add(w0).wrapping_add(s1);
        s1 = s1.wrapping_add(w1).wrapping_add(s0);
    }
    (s0, s1)
}

fn frame_len(header: &WalHeader) -> usize {
    FRAME_HEADER_SIZE as usize + header.page_size as usize
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
