//! The one error type of the crate: every way an LTX file, a page or a sequence of files can be
//! wrong, each variant naming what is wrong (never a bare "invalid file").

use std::fmt;

use crate::TxId;
use crate::checksum::Checksum;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The part of an LTX file a truncation or I/O failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Header,
    PageHeader,
    PageLength,
    PageData,
    PageIndex,
    IndexLength,
    Trailer,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::PageHeader => "page header",
            Section::PageLength => "page length prefix",
            Section::PageData => "page data",
            Section::PageIndex => "page index",
            Section::IndexLength => "page index length",
            Section::Trailer => "trailer",
        })
    }
}

/// Which rule a pre-/post-apply checksum field breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumRule {
    /// Must be zero: the file is a snapshot (pre-apply) or has the NoChecksum flag.
    NotAllowed,
    /// Must be present: the file tracks database checksums.
    Required,
    /// Present but without bit 63 set.
    MissingFlag,
}

impl fmt::Display for ChecksumRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChecksumRule::NotAllowed => "must be zero (snapshot or NoChecksum file)",
            ChecksumRule::Required => "is required (file tracks database checksums)",
            ChecksumRule::MissingFlag => "lacks bit 63",
        })
    }
}

/// What is wrong inside one page's LZ4 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lz4Error {
    /// The LZ4 block does not decode (`lz4_flex`'s reason).
    Block(String),
    /// A legacy frame does not start with the LZ4 frame magic.
    FrameMagic(u32),
    /// A legacy frame descriptor uses a version, flag or block size we cannot read.
    FrameDescriptor(&'static str),
    /// The legacy frame descriptor's header checksum byte is wrong.
    FrameHeaderChecksum { stored: u8, computed: u8 },
    /// A legacy frame block checksum is wrong.
    BlockChecksum,
    /// The legacy frame content checksum (xxh32 of the page) is wrong.
    ContentChecksum { stored: u32, computed: u32 },
    /// A legacy frame block is larger than its descriptor's maximum block size.
    BlockTooLarge { size: u32, max: u32 },
}

impl fmt::Display for Lz4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lz4Error::Block(e) => write!(f, "corrupt LZ4 block: {e}"),
            Lz4Error::FrameMagic(m) => write!(f, "legacy LZ4 frame has bad magic 0x{m:08x}"),
            Lz4Error::FrameDescriptor(what) => {
                write!(f, "unsupported LZ4 frame descriptor: {what}")
            }
            Lz4Error::FrameHeaderChecksum { stored, computed } => write!(
                f,
                "LZ4 frame header checksum 0x{stored:02x} != computed 0x{computed:02x}"
            ),
            Lz4Error::BlockChecksum => f.write_str("LZ4 frame block checksum mismatch"),
            Lz4Error::ContentChecksum { stored, computed } => write!(
                f,
                "LZ4 frame content checksum 0x{stored:08x} != computed 0x{computed:08x}"
            ),
            Lz4Error::BlockTooLarge { size, max } => {
                write!(
                    f,
                    "LZ4 frame block of {size} bytes exceeds its maximum {max}"
                )
            }
        }
    }
}

impl std::error::Error for Lz4Error {}

/// Everything that can go wrong reading, writing or merging LTX files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- I/O ----------------------------------------------------------------------------
    /// The underlying reader or writer failed (other than ending early).
    #[error("I/O error in LTX {section}: {source}")]
    Io {
        section: Section,
        #[source]
        source: std::io::Error,
    },
    /// The input ended inside `section`.
    #[error("truncated LTX file: it ends inside the {section}")]
    Truncated { section: Section },
    /// The decoder was used again after it had returned an error.
    #[error("the LTX decoder already failed; it cannot go on")]
    DecoderFailed,
    /// Bytes follow the trailer.
    #[error("unexpected data after the LTX trailer")]
    TrailingData,

    // ---- header (docs/ltx-and-replica-format.md#header, #validation-rules) ----------
    #[error("bad magic {0:02x?}: not an LTX v3 file (expected \"LTX1\")")]
    BadMagic([u8; 4]),
    #[error("invalid header flags 0x{0:08x}: only 0x00000002 (NoChecksum) is allowed")]
    BadFlags(u32),
    #[error("invalid page size {0}: must be a power of two in 512..=65536")]
    BadPageSize(u32),
    #[error("header {field} is zero; TXIDs start at 1")]
    ZeroTxId { field: &'static str },
    #[error("TXIDs out of order: MinTXID {min} > MaxTXID {max}")]
    TxIdOrder { min: TxId, max: TxId },
    #[error("header {field} is negative: {value}")]
    NegativeWalField { field: &'static str, value: i64 },
    #[error("header has WAL salts but WALOffset is zero")]
    WalSaltWithoutOffset,
    #[error("header has WALSize {0} but WALOffset is zero")]
    WalSizeWithoutOffset(i64),
    #[error("pre-apply checksum {value} {rule}")]
    BadPreApplyChecksum { value: Checksum, rule: ChecksumRule },

    // ---- page frames (docs/ltx-and-replica-format.md#page-frames, #validation-rules)
    #[error(
        "page header with page number 0 and flags 0x{flags:04x} (only the end marker has pgno 0)"
    )]
    ZeroPageNumber { flags: u16 },
    #[error("page {pgno}: invalid page header flags 0x{flags:04x} (only 0x0001 is allowed)")]
    BadPageFlags { pgno: u32, flags: u16 },
    #[error("page {pgno}: compressed length {len} exceeds the bound {max} for this page size")]
    CompressedTooLarge { pgno: u32, len: u64, max: u64 },
    #[error("page {pgno}: {source}")]
    Lz4 { pgno: u32, source: Lz4Error },
    #[error("page {pgno}: decompresses to {actual} bytes, expected the page size {expected}")]
    DecompressedSize {
        pgno: u32,
        expected: u32,
        actual: u64,
    },
    #[error("page {pgno}: decompresses to more than the page size {expected}")]
    DecompressedTooLarge { pgno: u32, expected: u32 },
    #[error("pages out of order: page {pgno} follows page {prev}")]
    PagesOutOfOrder { prev: u32, pgno: u32 },

    // ---- index, trailer, checksums (docs/ltx-and-replica-format.md#page-index, #trailer,
    // #checksums, #validation-rules) ---------------------------------------------------
    #[error("page index entry {position} is {found:?}, but the page frames say {expected:?}")]
    IndexMismatch {
        position: usize,
        expected: Option<crate::index::IndexEntry>,
        found: Option<crate::index::IndexEntry>,
    },
    #[error("page index length field says {stored} bytes, the index has {actual}")]
    IndexLengthMismatch { stored: u64, actual: u64 },
    #[error("page index entry for page {pgno}: {reason}")]
    BadIndexEntry { pgno: u64, reason: &'static str },
    #[error("malformed varint in the page index")]
    BadVarint,
    #[error("truncated page index: {0}")]
    TruncatedIndex(&'static str),
    #[error("page index is not in the file tail: need the last {needed} bytes, have {have}")]
    TailTooShort { needed: u64, have: u64 },
    #[error("file checksum {0} is zero or lacks bit 63")]
    BadFileChecksumFormat(Checksum),
    #[error("file checksum mismatch: trailer says {stored}, contents hash to {computed}")]
    ChecksumMismatch {
        stored: Checksum,
        computed: Checksum,
    },
    #[error("post-apply checksum {value} {rule}")]
    BadPostApplyChecksum { value: Checksum, rule: ChecksumRule },
    #[error(
        "post-apply checksum {stored} does not match the database checksum {computed} of this snapshot"
    )]
    DatabaseChecksumMismatch {
        stored: Checksum,
        computed: Checksum,
    },

    // ---- encoder rules ---------------------------------------------------------------------
    #[error("page buffer of {actual} bytes, expected the page size {expected}")]
    PageSizeMismatch { expected: u32, actual: usize },
    #[error("page {pgno} is beyond the commit size {commit}")]
    PageBeyondCommit { pgno: u32, commit: u32 },
    #[error("page {pgno} is the lock page (the page holding byte 1 GiB) and is never stored")]
    LockPage { pgno: u32 },
    #[error(
        "snapshot (MinTXID 1) must hold every page 1..={commit} except the lock page: expected page {expected}, got {found:?}"
    )]
    SnapshotIncomplete {
        commit: u32,
        expected: u32,
        found: Option<u32>,
    },

    // ---- sequences of files (docs/ltx-and-replica-format.md#validation-rules) ----------
    #[error("no input files to merge")]
    NoInputs,
    #[error("input files have different page sizes: {expected} then {found}")]
    InputPageSizeMismatch { expected: u32, found: u32 },
    #[error("non-contiguous input files: {prev_min}-{prev_max} then {next_min}-{next_max}")]
    NonContiguous {
        prev_min: TxId,
        prev_max: TxId,
        next_min: TxId,
        next_max: TxId,
    },
    #[error("restore must start from a snapshot (MinTXID 1), first file starts at {0}")]
    RestoreNeedsSnapshot(TxId),
    #[error("restored database misses page {pgno} (commit {commit})")]
    MissingPage { pgno: u32, commit: u32 },
    /// An error in one input of a merge; `index` is its position (0 = oldest).
    #[error("input file {index}: {source}")]
    Input {
        index: usize,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The error itself, or the wrapped one for [`Error::Input`] (recursively).
    pub fn innermost(&self) -> &Error {
        match self {
            Error::Input { source, .. } => source.innermost(),
            e => e,
        }
    }

    pub(crate) fn io(section: Section, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Truncated { section }
        } else {
            Error::Io { section, source }
        }
    }

    pub(crate) fn input(index: usize, e: Error) -> Error {
        Error::Input {
            index,
            source: Box::new(e),
        }
    }
}
