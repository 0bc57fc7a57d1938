//! The streaming LTX encoder: header, one compressed frame per page in ascending page order,
//! end marker, page index, index length and trailer, hashing as it goes so the file checksum
//! is ready when the last byte is written.

use std::io::Write;

use crate::checksum::{Checksum, Crc64, DbChecksum};
use crate::error::{Error, Result, Section};
use crate::frame::{
    BlockCompressor, END_MARKER_SIZE, LENGTH_PREFIX_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
    PageEncoding, PageHeader, legacy,
};
use crate::header::{HEADER_SIZE, Header};
use crate::index::{IndexEntry, PageIndex};
use crate::trailer::{Trailer, validate_post_apply};

/// What [`Encoder::finish`] hands back.
#[derive(Debug)]
pub struct Encoded<W> {
    /// The writer, after the last byte (not flushed or synced: that is the caller's policy).
    pub writer: W,
    pub header: Header,
    pub trailer: Trailer,
    /// Total bytes written.
    pub size: u64,
    /// The page index that was written.
    pub index: PageIndex,
}

/// Writes one LTX file to `W`.
///
/// Rules it enforces (§2.2): pages strictly ascending; no page beyond `commit`; never the lock
/// page; a snapshot (MinTXID 1) holds exactly pages `1..=commit` minus the lock page. Each page
/// costs one `write_all` call (the frame is assembled in a reused buffer), so an unbuffered
/// writer is fine.
///
/// By default the header must have the NoChecksum flag and the trailer's post-apply checksum
/// is zero, as in every Litestream 0.5 file. A header without the flag makes a file with
/// database checksums: for a snapshot the encoder computes the post-apply checksum itself, for
/// other files the caller must supply it with [`Encoder::set_post_apply_checksum`].
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    encoding: PageEncoding,
    hash: Crc64,
    offset: u64,
    prev_pgno: u32,
    lock_pgno: u32,
    entries: Vec<IndexEntry>,
    compressor: BlockCompressor,
    frame: Vec<u8>,
    scratch: Vec<u8>,
    db_checksum: Option<DbChecksum>,
    post_apply: Option<Checksum>,
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("offset", &self.offset)
            .field("prev_pgno", &self.prev_pgno)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it. Pages use the block encoding.
    pub fn new(writer: W, header: Header) -> Result<Self> {
        Self::with_encoding(writer, header, PageEncoding::Block)
    }

    /// Like [`Encoder::new`], choosing the page encoding ([`PageEncoding::LegacyFrame`] makes a
    /// file that Litestream 0.5.0–0.5.15 can read too).
    pub fn with_encoding(mut writer: W, header: Header, encoding: PageEncoding) -> Result<Self> {
        header.validate()?;
        let bytes = header.to_bytes();
        writer
            .write_all(&bytes)
            .map_err(|e| Error::io(Section::Header, e))?;
        let mut hash = Crc64::new();
        hash.update(&bytes);
        let db_checksum = (!header.no_checksum() && header.is_snapshot())
            .then(|| DbChecksum::new(header.page_size));
        Ok(Encoder {
            w: writer,
            header,
            encoding,
            hash,
            offset: HEADER_SIZE as u64,
            prev_pgno: 0,
            lock_pgno: header.lock_page(),
            entries: Vec::new(),
            compressor: BlockCompressor::new(),
            frame: Vec::new(),
            scratch: Vec::new(),
            db_checksum,
            post_apply: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Pages written so far.
    pub fn page_count(&self) -> usize {
        self.entries.len()
    }

    /// The next page a snapshot expects after `prev` (skipping the lock page).
    fn next_snapshot_page(&self, prev: u32) -> u32 {
        let next = prev.saturating_add(1);
        if next == self.lock_pgno {
            next.saturating_add(1)
        } else {
            next
        }
    }

    /// Compresses and writes page `pgno`. `data.len()` must equal the page size.
    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        let h = &self.header;
        if data.len() != h.page_size as usize {
            return Err(Error::PageSizeMismatch {
                expected: h.page_size,
                actual: data.len(),
            });
        }
        if pgno == 0 {
            return Err(Error::ZeroPageNumber { flags: 0 });
        }
        if pgno > h.commit {
            return Err(Error::PageBeyondCommit {
                pgno,
                commit: h.commit,
            });
        }
        if pgno == self.lock_pgno {
            return Err(Error::LockPage { pgno });
        }
        if h.is_snapshot() {
            let expected = self.next_snapshot_page(self.prev_pgno);
            if pgno != expected {
                return Err(Error::SnapshotIncomplete {
                    commit: h.commit,
                    expected,
                    found: Some(pgno),
                });
            }
        } else if pgno <= self.prev_pgno {
            return Err(Error::PagesOutOfOrder {
                prev: self.prev_pgno,
                pgno,
            });
        }

        let frame = &mut self.frame;
        frame.clear();
        let hdr = match self.encoding {
            PageEncoding::Block => PageHeader {
                pgno,
                flags: PAGE_FLAG_SIZE,
            },
            PageEncoding::LegacyFrame => PageHeader { pgno, flags: 0 },
        };
        frame.extend_from_slice(&hdr.to_bytes());
        match self.encoding {
            PageEncoding::Block => {
                let n = self.compressor.compress(data, &mut self.scratch);
                // n <= max_compressed_size(65536) < u32::MAX
                frame.extend_from_slice(&(n as u32).to_be_bytes());
                self.hash
                    .update(&frame[..PAGE_HEADER_SIZE + LENGTH_PREFIX_SIZE]);
                frame.extend_from_slice(&self.scratch[..n]);
            }
            PageEncoding::LegacyFrame => {
                self.hash.update(&frame[..PAGE_HEADER_SIZE]);
                legacy::write_frame(data, &mut self.compressor, &mut self.scratch, frame);
            }
        }
        self.hash.update(data);
        self.w
            .write_all(frame)
            .map_err(|e| Error::io(Section::PageData, e))?;
        let size = frame.len() as u64;
        self.entries.push(IndexEntry {
            pgno,
            offset: self.offset,
            size,
        });
        self.offset += size;
        self.prev_pgno = pgno;
        if let Some(c) = &mut self.db_checksum {
            c.add_page(pgno, data);
        }
        Ok(())
    }

    /// Sets the post-apply database checksum for a file with database checksums (a header
    /// without the NoChecksum flag). For snapshots it must equal the computed one.
    pub fn set_post_apply_checksum(&mut self, checksum: Checksum) {
        self.post_apply = Some(checksum);
    }

    /// Writes the end marker, page index, index length and trailer; returns the writer and
    /// what was written. Fails if a snapshot is missing pages or a checksum rule is broken.
    pub fn finish(mut self) -> Result<Encoded<W>> {
        if self.header.is_snapshot() {
            let expected = self.next_snapshot_page(self.prev_pgno);
            if expected <= self.header.commit {
                return Err(Error::SnapshotIncomplete {
                    commit: self.header.commit,
                    expected,
                    found: None,
                });
            }
        }
        let post = match (self.db_checksum, self.post_apply) {
            (Some(computed), Some(given)) if computed.value() != given => {
                return Err(Error::DatabaseChecksumMismatch {
                    stored: given,
                    computed: computed.value(),
                });
            }
            (Some(computed), _) => computed.value(),
            (None, given) => given.unwrap_or(Checksum::ZERO),
        };
        validate_post_apply(&self.header, post)?;

        let mut tail = std::mem::take(&mut self.frame);
        tail.clear();
        tail.extend_from_slice(&[0u8; END_MARKER_SIZE]);
        let index = PageIndex::from_sorted(std::mem::take(&mut self.entries));
        index.encode(&mut tail);
        let index_len = (tail.len() - END_MARKER_SIZE) as u64;
        tail.extend_from_slice(&index_len.to_be_bytes());
        tail.extend_from_slice(&post.0.to_be_bytes());
        self.hash.update(&tail);
        let trailer = Trailer {
            post_apply_checksum: post,
            file_checksum: self.hash.checksum(),
        };
        tail.extend_from_slice(&trailer.file_checksum.0.to_be_bytes());
        self.w
            .write_all(&tail)
            .map_err(|e| Error::io(Section::Trailer, e))?;
        let size = self.offset + tail.len() as u64;
        Ok(Encoded {
            writer: self.w,
            header: self.header,
            trailer,
            size,
            index,
        })
    }
}
