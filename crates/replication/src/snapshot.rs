//! Database images read straight from the files, and snapshots (level-9 files) streamed from
//! them.
//!
//! [`DbImage`] is the database as of a point in its WAL: the database file overlaid with the
//! newest committed frame of each page from offset 32 up to that point. A snapshot at the
//! replication position is the image at the position's WAL end, every page `1..=commit`
//! except the lock page, written as `1-<txid>.ltx`. The caller holds the checkpoint lock's
//! read half meanwhile and takes the position the syncer published under it
//! ([`crate::sync::CheckpointLock`]), so the database file holds no page newer than that
//! position: no checkpoint of ours runs, and other processes cannot checkpoint past our read
//! transaction. If the WAL is restarted while the image is read anyway,
//! [`DbImage::check_unchanged`] fails and the snapshot is retried.
//!
//! Start-up uses [`DbImage::current`] (all committed frames) to compare a local database
//! with a replica's state page by page.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ltx::{Encoder, Header, TxId};

use crate::db_attachment::{read_db_page, shared_file, wal_path};
use crate::sync::Position;
use crate::wal::{
    self, FRAME_HEADER_SIZE, Salt, WAL_HEADER_SIZE, WalError, WalHeader, WalReader, WalScan,
};

/// Errors reading an image or writing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Wal { path: String, source: WalError },
    #[error("snapshot: {0}")]
    Ltx(#[from] ltx::Error),
    #[error("{path}: the WAL changed while the database was being read; retrying")]
    WalChanged { path: String },
    #[error("{path}: the WAL ends at offset {found} before the replication position {expected}")]
    WalShort {
        path: String,
        expected: u64,
        found: u64,
    },
    #[error("{path}: cannot determine the page size")]
    PageSize { path: String },
    #[error("no replication position yet")]
    NoPosition,
    #[error(
        "the database file may hold pages newer than the replication position (an unfinished checkpoint); the snapshot waits for the next sync"
    )]
    FileAhead,
}

/// A database as of one point of its WAL. See the module docs.
#[derive(Debug)]
pub(crate) struct DbImage {
    db: Arc<File>,
    wal: Option<File>,
    wal_header: Option<WalHeader>,
    wal_display: String,
    pages: BTreeMap<u32, u64>,
    page_size: u32,
    commit: u32,
    /// End of the WAL range used.
    end: u64,
}

impl DbImage {
    /// The image at WAL offset `end` with salts `salt` (pass `end == 32` for the database file
    /// alone). If the WAL now carries other salts, it was restarted after a complete
    /// checkpoint and the database file alone is the image. `commit` is the database size
    /// in pages at that point.
    pub(crate) fn at(
        db_path: &Path,
        page_size: u32,
        end: u64,
        salt: Salt,
        commit: u32,
    ) -> Result<DbImage, SnapshotError> {
        let mut image = DbImage::open(db_path, page_size)?;
        image.commit = commit;
        let wal_header = image.wal_header;
        let Some(wal_header) = wal_header else {
            return Ok(image);
        };
        if end <= WAL_HEADER_SIZE || wal_header.salt != salt {
            image.wal_header = None;
            return Ok(image);
        }
        let Some(scan) = image.scan_wal(Some(end - WAL_HEADER_SIZE))? else {
            return Ok(image);
        };
        if scan.end_offset != end {
            return Err(SnapshotError::WalShort {
                path: image.wal_display.clone(),
                expected: end,
                found: scan.end_offset,
            });
        }
        image.pages = scan.pages;
        image.end = scan.end_offset;
        Ok(image)
    }

    /// The database as SQLite would read it now: every committed frame of the WAL.
    pub(crate) fn current(db_path: &Path) -> Result<DbImage, SnapshotError> {
        let page_size = detect_page_size(db_path)?;
        let mut image = DbImage::open(db_path, page_size)?;
        let file_pages = image
            .db
            .metadata()
            .map_err(|source| SnapshotError::Io {
                path: db_path.display().to_string(),
                source,
            })?
            .len()
            / u64::from(page_size);
        image.commit = u32::try_from(file_pages).unwrap_or(u32::MAX);
        if image.wal_header.is_some()
            && let Some(scan) = image.scan_wal(None)?
        {
            if let Some(c) = scan.commit {
                image.commit = c;
            }
            image.pages = scan.pages;
            image.end = scan.end_offset;
        }
        Ok(image)
    }

    fn open(db_path: &Path, page_size: u32) -> Result<DbImage, SnapshotError> {
        let db = shared_file(db_path).map_err(|source| SnapshotError::Io {
            path: db_path.display().to_string(),
            source,
        })?;
        let wal_p = wal_path(db_path);
        let wal_display = wal_p.display().to_string();
        let wal = match File::open(&wal_p) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SnapshotError::Io {
                    path: wal_display,
                    source,
                });
            }
        };
        let wal_header = match &wal {
            Some(f) => match WalHeader::read(f) {
                Ok(h) if h.page_size == page_size => Some(h),
                Ok(_) => None,
                Err(e) if e.is_empty_wal() => None,
                Err(source) => {
                    return Err(SnapshotError::Wal {
                        path: wal_display,
                        source,
                    });
                }
            },
            None => None,
        };
        Ok(DbImage {
            db,
            wal,
            wal_header,
            wal_display,
            pages: BTreeMap::new(),
            page_size,
            commit: 0,
            end: WAL_HEADER_SIZE,
        })
    }

    /// The committed frames of the WAL up to `byte_limit` bytes after its header (`None` if
    /// there is no WAL file).
    fn scan_wal(&self, byte_limit: Option<u64>) -> Result<Option<WalScan>, SnapshotError> {
        let Some(wal) = self.wal.as_ref() else {
            return Ok(None);
        };
        WalReader::open(wal)
            .and_then(|mut reader| reader.read_committed(byte_limit))
            .map(Some)
            .map_err(|source| SnapshotError::Wal {
                path: self.wal_display.clone(),
                source,
            })
    }

    pub(crate) fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Database size in pages.
    pub(crate) fn commit(&self) -> u32 {
        self.commit
    }

    /// End of the WAL range the image uses (32: the database file alone).
    pub(crate) fn wal_end(&self) -> u64 {
        self.end
    }

    /// Salts of the WAL range the image uses.
    pub(crate) fn wal_salt(&self) -> Salt {
        self.wal_header.map(|h| h.salt).unwrap_or_default()
    }

    /// Reads page `pgno` (WAL version if there is one, else the database file's).
    pub(crate) fn read_page(&self, pgno: u32, page: &mut [u8]) -> Result<(), SnapshotError> {
        match (self.pages.get(&pgno), &self.wal, &self.wal_header) {
            (Some(&offset), Some(wal), Some(h)) => {
                wal::read_page(wal, h, offset, page).map_err(|source| SnapshotError::Wal {
                    path: self.wal_display.clone(),
                    source,
                })
            }
            _ => read_db_page(self.db.as_ref(), self.page_size, pgno, page).map_err(|source| {
                SnapshotError::Io {
                    path: "database file".into(),
                    source,
                }
            }),
        }
    }

    /// Fails if the WAL was restarted since the image was opened (its pages may have been
    /// overwritten while they were read).
    pub(crate) fn check_unchanged(&self) -> Result<(), SnapshotError> {
        let (Some(wal), Some(h)) = (&self.wal, &self.wal_header) else {
            return Ok(());
        };
        if self.pages.is_empty() {
            return Ok(());
        }
        match WalHeader::read(wal) {
            Ok(now) if now.salt == h.salt => Ok(()),
            _ => Err(SnapshotError::WalChanged {
                path: self.wal_display.clone(),
            }),
        }
    }
}

/// The page size of a database: from its WAL header, else from the database header.
pub(crate) fn detect_page_size(db_path: &Path) -> Result<u32, SnapshotError> {
    if let Ok(f) = File::open(wal_path(db_path))
        && let Ok(h) = WalHeader::read(&f)
    {
        return Ok(h.page_size);
    }
    let f = shared_file(db_path).map_err(|source| SnapshotError::Io {
        path: db_path.display().to_string(),
        source,
    })?;
    let mut hdr = [0u8; 18];
    if !wal::ReadAt::read_full_at(f.as_ref(), &mut hdr, 0).unwrap_or(false) {
        return Err(SnapshotError::PageSize {
            path: db_path.display().to_string(),
        });
    }
    let raw = u32::from(u16::from_be_bytes([hdr[16], hdr[17]]));
    let page_size = if raw == 1 { 65536 } else { raw };
    if ltx::is_valid_page_size(page_size) {
        Ok(page_size)
    } else {
        Err(SnapshotError::PageSize {
            path: db_path.display().to_string(),
        })
    }
}

/// Writes the snapshot of `pos` (`1-<pos.txid>.ltx`, header timestamp `timestamp` ms) to
/// `w`; returns its header.
pub(crate) fn write_snapshot<W: Write>(
    db_path: &Path,
    page_size: u32,
    pos: Position,
    timestamp: i64,
    w: W,
) -> Result<Header, SnapshotError> {
    let Some(h) = pos.header else {
        return Err(SnapshotError::NoPosition);
    };
    if pos.txid == TxId::ZERO {
        return Err(SnapshotError::NoPosition);
    }
    let (end, salt) = pos.wal_end().unwrap_or_default();
    let image = DbImage::at(db_path, page_size, end, salt, h.commit)?;
    let frame_size = FRAME_HEADER_SIZE + u64::from(page_size);
    let max = image.wal_end();
    let (wal_offset, wal_size) = if max <= WAL_HEADER_SIZE {
        (WAL_HEADER_SIZE, 0)
    } else {
        let offset = max.saturating_sub(frame_size).max(WAL_HEADER_SIZE);
        (offset, max - offset)
    };
    let mut header = Header::new(page_size, h.commit, TxId(1), pos.txid, timestamp);
    header.wal_offset = wal_offset as i64;
    header.wal_size = wal_size as i64;
    let salt = image.wal_salt();
    header.wal_salt1 = salt.salt1;
    header.wal_salt2 = salt.salt2;
    let mut enc = Encoder::new(w, header)?;
    let lock = ltx::lock_page(page_size);
    let mut page = vec![0u8; page_size as usize];
    for pgno in 1..=h.commit {
        if pgno == lock {
            continue;
        }
        image.read_page(pgno, &mut page)?;
        enc.write_page(pgno, &page)?;
    }
    image.check_unchanged()?;
    let done = enc.finish()?;
    Ok(done.header)
}
