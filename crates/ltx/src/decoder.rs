//! The streaming LTX decoder: validates the header, yields pages one at a time into the
//! caller's buffer (either page encoding), and at the end marker verifies the page index
//! against the frames it saw, the index length, the trailer rules, the file checksum and, for
//! snapshots that carry database checksums, the post-apply checksum.
//!
//! Memory is bounded by the page size: one read buffer of about two maximum frames, reused for
//! every page, plus 24 bytes per page for the index it checks. No field of the file decides an
//! allocation.

use std::io::{ErrorKind, Read};

use crate::error::{Error, Result, Section};
use crate::frame::{
    END_MARKER_SIZE, LENGTH_PREFIX_SIZE, PAGE_HEADER_SIZE, PageEncoding, PageHeader, Source,
    legacy, read_block_payload,
};
use crate::header::{HEADER_SIZE, Header, be_u64};
use crate::index::{INDEX_LEN_SIZE, IndexEntry, PageIndex, VarintState};
use crate::tally::Tally;
use crate::trailer::{TRAILER_SIZE, Trailer};

/// A buffered reader that hands out contiguous slices of at most a frame.
struct BufSource<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl<R: Read> BufSource<R> {
    fn new(r: R, capacity: usize) -> Self {
        BufSource {
            r,
            buf: vec![0u8; capacity],
            pos: 0,
            len: 0,
        }
    }

    fn resize_for(&mut self, capacity: usize) {
        if self.buf.len() < capacity {
            self.buf.resize(capacity, 0);
        }
    }

    /// Reads more bytes; returns false at end of input.
    fn fill_some(&mut self, section: Section) -> Result<bool> {
        if self.len == self.buf.len() {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        loop {
            match self.r.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(section, e)),
            }
        }
    }

    fn ensure(&mut self, n: usize, section: Section) -> Result<()> {
        if self.len - self.pos >= n {
            return Ok(());
        }
        if self.buf.len() - self.pos < n {
            // Move the unread bytes to the front; grow only if one frame needs more room
            // (`n` is always bounded by a maximum frame block, see the callers).
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
            self.resize_for(n);
        }
        while self.len - self.pos < n {
            if !self.fill_some(section)? {
                return Err(Error::Truncated { section });
            }
        }
        Ok(())
    }

    fn read_byte(&mut self, section: Section) -> Result<u8> {
        self.ensure(1, section)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn at_eof(&mut self) -> Result<bool> {
        if self.pos < self.len {
            return Ok(false);
        }
        self.pos = 0;
        self.len = 0;
        Ok(!self.fill_some(Section::Trailer)?)
    }
}

impl<R: Read> Source for BufSource<R> {
    fn take(&mut self, n: usize, section: Section) -> Result<&[u8]> {
        self.ensure(n, section)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

/// What a fully verified file looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub header: Header,
    pub trailer: Trailer,
    /// The page index (verified to match the frames).
    pub index: PageIndex,
    /// File size in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pages,
    Done,
    Failed,
}

/// Reads one LTX file from `R`. See the module docs.
///
/// ```no_run
/// # fn f(bytes: &[u8]) -> ltx::Result<()> {
/// let mut dec = ltx::Decoder::new(bytes)?;
/// let mut page = vec![0u8; dec.header().page_size as usize];
/// while let Some(pgno) = dec.next_page(&mut page)? {
///     // use page `pgno`
/// #   let _ = pgno;
/// }
/// let verified = dec.finish()?; // trailer, index, size
/// # let _ = verified; Ok(()) }
/// ```
pub struct Decoder<R: Read> {
    src: BufSource<R>,
    header: Header,
    tally: Tally,
    state: State,
    done: Option<Decoded>,
    index_bytes: Vec<u8>,
}

impl<R: Read> std::fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("header", &self.header)
            .field("offset", &self.tally.offset)
            .field("prev_pgno", &self.tally.prev_pgno())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(reader: R) -> Result<Self> {
        let mut src = BufSource::new(reader, 4096);
        let mut hb = [0u8; HEADER_SIZE];
        hb.copy_from_slice(src.take(HEADER_SIZE, Section::Header)?);
        let header = Header::from_bytes(&hb)?;
        header.validate()?;
        // Room for two maximum frames (legacy frames are a little larger than blocks).
        src.resize_for(2 * legacy::max_frame_size(header.page_size as usize));
        Ok(Decoder {
            src,
            header,
            tally: Tally::new(&header, &hb),
            state: State::Pages,
            done: None,
            index_bytes: Vec::new(),
        })
    }

    /// Reads a whole file, verifying everything, discarding the pages.
    pub fn verify(reader: R) -> Result<Decoded> {
        Decoder::new(reader)?.finish()
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.tally.offset
    }

    /// Reads the next page into `buf` (exactly the page size) and returns its page number, or
    /// `None` once the end marker was reached and everything after it verified. Pages come in
    /// strictly ascending order (anything else is [`Error::PagesOutOfOrder`]). After an error
    /// the decoder refuses to go on.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        match self.state {
            State::Done => return Ok(None),
            State::Failed => return Err(Error::DecoderFailed),
            State::Pages => {}
        }
        if buf.len() != self.header.page_size as usize {
            return Err(Error::PageSizeMismatch {
                expected: self.header.page_size,
                actual: buf.len(),
            });
        }
        match self.read_page(buf) {
            Ok(p) => Ok(p),
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn read_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        let mut hb = [0u8; PAGE_HEADER_SIZE];
        hb.copy_from_slice(self.src.take(PAGE_HEADER_SIZE, Section::PageHeader)?);
        let hdr = PageHeader::from_bytes(&hb);
        if hdr.is_end() {
            self.tally.hash.update(&hb);
            self.tally.offset += END_MARKER_SIZE as u64;
            self.read_tail()?;
            return Ok(None);
        }
        let encoding = hdr.validate()?;
        let pgno = hdr.pgno;
        self.tally.check_order(pgno)?;
        let (prefix, payload) = match encoding {
            PageEncoding::Block => {
                let (prefix, len) = read_block_payload(&mut self.src, pgno, buf)?;
                (Some(prefix), LENGTH_PREFIX_SIZE + len)
            }
            PageEncoding::LegacyFrame => (None, legacy::read_frame(&mut self.src, pgno, buf)?),
        };
        let size = (PAGE_HEADER_SIZE + payload) as u64;
        self.tally.page(pgno, &hb, prefix.as_ref(), buf, size);
        Ok(Some(pgno))
    }

    fn read_varint(&mut self) -> Result<u64> {
        let mut st = VarintState::default();
        loop {
            let b = self.src.read_byte(Section::PageIndex)?;
            self.index_bytes.push(b);
            if let Some(v) = st.push(b)? {
                return Ok(v);
            }
        }
    }

    /// Everything after the end marker.
    fn read_tail(&mut self) -> Result<()> {
        self.index_bytes.clear();
        let mut position = 0usize;
        loop {
            let pgno = self.read_varint()?;
            if pgno == 0 {
                break;
            }
            let offset = self.read_varint()?;
            let size = self.read_varint()?;
            let expected = self.tally.entries().get(position).copied();
            let matches = expected
                .is_some_and(|e| u64::from(e.pgno) == pgno && e.offset == offset && e.size == size);
            if !matches {
                return Err(Error::IndexMismatch {
                    position,
                    expected,
                    found: Some(IndexEntry {
                        pgno: u32::try_from(pgno).unwrap_or(u32::MAX),
                        offset,
                        size,
                    }),
                });
            }
            position += 1;
        }
        if position != self.tally.entries().len() {
            return Err(Error::IndexMismatch {
                position,
                expected: self.tally.entries().get(position).copied(),
                found: None,
            });
        }
        self.tally.hash.update(&self.index_bytes);
        let actual = self.index_bytes.len() as u64;
        let lb = self.src.take(INDEX_LEN_SIZE, Section::IndexLength)?;
        let stored = be_u64(lb, 0);
        self.tally.hash.update(lb);
        if stored != actual {
            return Err(Error::IndexLengthMismatch { stored, actual });
        }
        let mut tb = [0u8; TRAILER_SIZE];
        tb.copy_from_slice(self.src.take(TRAILER_SIZE, Section::Trailer)?);
        self.tally.hash.update(&tb[..8]);
        let trailer = Trailer::from_bytes(&tb);
        if !trailer.file_checksum.has_flag() {
            return Err(Error::BadFileChecksumFormat(trailer.file_checksum));
        }
        let computed = self.tally.hash.checksum();
        if computed != trailer.file_checksum {
            return Err(Error::ChecksumMismatch {
                stored: trailer.file_checksum,
                computed,
            });
        }
        trailer.validate(&self.header)?;
        if let Some(computed) = self.tally.db_checksum()
            && computed != trailer.post_apply_checksum
        {
            return Err(Error::DatabaseChecksumMismatch {
                stored: trailer.post_apply_checksum,
                computed,
            });
        }
        if !self.src.at_eof()? {
            return Err(Error::TrailingData);
        }
        self.tally.offset += actual + (INDEX_LEN_SIZE + TRAILER_SIZE) as u64;
        self.state = State::Done;
        self.done = Some(Decoded {
            header: self.header,
            trailer,
            index: self.tally.take_index(),
            size: self.tally.offset,
        });
        Ok(())
    }

    /// Reads any pages not yet read (discarding them), verifies the rest of the file and
    /// returns what it holds.
    pub fn finish(mut self) -> Result<Decoded> {
        if self.state == State::Pages {
            let mut page = vec![0u8; self.header.page_size as usize];
            while self.next_page(&mut page)?.is_some() {}
        }
        match self.done {
            Some(d) => Ok(d),
            None => Err(Error::DecoderFailed),
        }
    }
}
