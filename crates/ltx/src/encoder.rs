//! The streaming LTX encoder: header, one compressed frame per page in ascending page order,
//! end marker, page index, index length and trailer, hashing as it goes so the file checksum
//! is ready when the last byte is written.

use std::io::Write;

use crate::checksum::Checksum;
use crate::error::{Error, Result, Section};
use crate::frame::{BlockCompressor, END_MARKER_SIZE, PageEncoding, PageHeader, legacy};
use crate::header::Header;
use crate::index::PageIndex;
use crate::tally::Tally;
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
/// Rules it enforces (`docs/ltx-and-replica-format.md#validation-rules`, `#the-lock-page`): pages
/// strictly ascending; no page beyond `commit`; never the lock page; a snapshot (MinTXID 1) holds
/// exactly pages `1..=commit` minus the lock page. Each page costs one `write_all` call (the frame
/// is assembled in a reused buffer), so an unbuffered writer is fine.
///
/// By default the header must have the NoChecksum flag and the trailer's post-apply checksum
/// is zero, as in every Litestream 0.5 file. A header without the flag makes a file with
/// database checksums: for a snapshot the encoder computes the post-apply checksum itself, for
/// other files the caller must supply it with [`Encoder::set_post_apply_checksum`].
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    encoding: PageEncoding,
    tally: Tally,
    lock_pgno: u32,
    compressor: BlockCompressor,
    frame: Vec<u8>,
    scratch: Vec<u8>,
    post_apply: Option<Checksum>,
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("offset", &self.tally.offset)
            .field("prev_pgno", &self.tally.prev_pgno())
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
        Ok(Encoder {
            w: writer,
            header,
            encoding,
            tally: Tally::new(&header, &bytes),
            lock_pgno: header.lock_page(),
            compressor: BlockCompressor::new(),
            frame: Vec::new(),
            scratch: Vec::new(),
            post_apply: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.tally.offset
    }

    /// Pages written so far.
    pub fn page_count(&self) -> usize {
        self.tally.entries().len()
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
            let expected = self.next_snapshot_page(self.tally.prev_pgno());
            if pgno != expected {
                return Err(Error::SnapshotIncomplete {
                    commit: h.commit,
                    expected,
                    found: Some(pgno),
                });
            }
        } else {
            self.tally.check_order(pgno)?;
        }

        let frame = &mut self.frame;
        frame.clear();
        let head = PageHeader {
            pgno,
            flags: self.encoding.flags(),
        }
        .to_bytes();
        frame.extend_from_slice(&head);
        let prefix = match self.encoding {
            PageEncoding::Block => {
                let n = self.compressor.compress(data, &mut self.scratch);
                // n <= max_compressed_size(65536) < u32::MAX
                let prefix = (n as u32).to_be_bytes();
                frame.extend_from_slice(&prefix);
                frame.extend_from_slice(&self.scratch[..n]);
                Some(prefix)
            }
            PageEncoding::LegacyFrame => {
                legacy::write_frame(data, &mut self.compressor, &mut self.scratch, frame);
                None
            }
        };
        self.w
            .write_all(frame)
            .map_err(|e| Error::io(Section::PageData, e))?;
        let size = frame.len() as u64;
        self.tally.page(pgno, &head, prefix.as_ref(), data, size);
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
            let expected = self.next_snapshot_page(self.tally.prev_pgno());
            if expected <= self.header.commit {
                return Err(Error::SnapshotIncomplete {
                    commit: self.header.commit,
                    expected,
                    found: None,
                });
            }
        }
        let post = match (self.tally.db_checksum(), self.post_apply) {
            (Some(computed), Some(given)) if computed != given => {
                return Err(Error::DatabaseChecksumMismatch {
                    stored: given,
                    computed,
                });
            }
            (Some(computed), _) => computed,
            (None, given) => given.unwrap_or(Checksum::ZERO),
        };
        validate_post_apply(&self.header, post)?;

        let mut tail = std::mem::take(&mut self.frame);
        tail.clear();
        tail.extend_from_slice(&[0u8; END_MARKER_SIZE]);
        let index = self.tally.take_index();
        index.encode(&mut tail);
        let index_len = (tail.len() - END_MARKER_SIZE) as u64;
        tail.extend_from_slice(&index_len.to_be_bytes());
        tail.extend_from_slice(&post.0.to_be_bytes());
        self.tally.hash.update(&tail);
        let trailer = Trailer {
            post_apply_checksum: post,
            file_checksum: self.tally.hash.checksum(),
        };
        tail.extend_from_slice(&trailer.file_checksum.0.to_be_bytes());
        self.w
            .write_all(&tail)
            .map_err(|e| Error::io(Section::Trailer, e))?;
        let size = self.tally.offset + tail.len() as u64;
        Ok(Encoded {
            writer: self.w,
            header: self.header,
            trailer,
            size,
            index,
        })
    }
}
