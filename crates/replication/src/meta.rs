//! The local metadata directory next to the database:
//! `<dir>/.<name>-litestream/ltx/0/<min>-<max>.ltx`, the L0 files exactly as they are (or will
//! be) uploaded. The replication position of the database is the newest of them. Litestream
//! uses the same directory, so either program can take over from the other. Beside `ltx/`,
//! one file of ours: [`NEXT_L0_FULL`], the mark that the next L0 file must be a full one.
//!
//! Writes are atomic and durable: `<name>.tmp`, fsync, rename, fsync of the directory. Stale
//! `*.tmp` files from a crash are removed at start-up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ltx::{FileName, TxId};

use crate::level::Level;

/// The mark "the next L0 file must be a full one" (see [`MetaDir::mark_next_full`]).
pub(crate) const NEXT_L0_FULL: &str = "sqlite-rest-next-l0-full";

/// The metadata directory of one database.
#[derive(Debug, Clone)]
pub struct MetaDir {
    root: PathBuf,
    /// Mode for new files (the database file's), if known.
    file_mode: Option<u32>,
}

impl MetaDir {
    /// The directory at `root` (e.g. `/data/.app.db-litestream`).
    pub fn new(root: impl Into<PathBuf>) -> MetaDir {
        MetaDir {
            root: root.into(),
            file_mode: None,
        }
    }

    /// New files get the mode of the database file (if it exists now).
    pub fn with_modes_from(mut self, db: &Path) -> MetaDir {
        self.file_mode = fs::metadata(db)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/ltx/<level>`.
    pub fn level_dir(&self, level: Level) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }

    /// `<root>/ltx/<level>/<name>`.
    pub fn path(&self, level: Level, name: FileName) -> PathBuf {
        self.level_dir(level).join(name.to_string())
    }

    /// The L0 file of one TXID.
    pub fn l0_path(&self, txid: TxId) -> PathBuf {
        self.path(Level::L0, FileName::new(txid, txid))
    }

    /// Creates `ltx/0` and removes leftover `*.tmp` files.
    pub fn prepare(&self) -> io::Result<()> {
        fs::create_dir_all(self.level_dir(Level::L0))?;
        self.remove_tmp_files()
    }

    /// Removes `*.tmp` files in every level directory.
    pub fn remove_tmp_files(&self) -> io::Result<()> {
        let ltx = self.root.join("ltx");
        let levels = match fs::read_dir(&ltx) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for level in levels {
            let level = level?;
            if !level.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(level.path())? {
                let entry = entry?;
                if entry.file_name().to_string_lossy().ends_with(".tmp") {
                    remove_if_exists(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// The LTX files of a level, sorted.
    pub fn list(&self, level: Level) -> io::Result<Vec<FileName>> {
        let dir = self.level_dir(level);
        let entries = match fs::read_dir(&dir) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<FileName>().ok())
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The L0 file with the highest MaxTXID.
    pub fn newest_l0(&self) -> io::Result<Option<FileName>> {
        Ok(self.list(Level::L0)?.into_iter().max_by_key(|n| n.max))
    }

    /// Reads a whole file.
    pub fn read(&self, level: Level, name: FileName) -> io::Result<Vec<u8>> {
        fs::read(self.path(level, name))
    }

    /// Opens a file for reading.
    pub fn open(&self, level: Level, name: FileName) -> io::Result<File> {
        File::open(self.path(level, name))
    }

    /// True if the file exists.
    pub fn exists(&self, level: Level, name: FileName) -> bool {
        self.path(level, name).is_file()
    }

    /// Writes a file atomically: `write` fills a buffered `<name>.tmp`; then fsync, rename,
    /// fsync of the directory. The temp file is removed on any failure. Returns what `write`
    /// returned and the file size.
    pub fn write_with<T, E>(
        &self,
        level: Level,
        name: FileName,
        write: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
    ) -> Result<(T, u64), MetaWriteError<E>> {
        let dir = self.level_dir(level);
        let path = dir.join(name.to_string());
        let tmp = dir.join(format!("{name}.tmp"));
        let io_err = |e| MetaWriteError::Io(e);
        fs::create_dir_all(&dir).map_err(io_err)?;
        let result = (|| {
            let mut opts = OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            if let Some(mode) = self.file_mode {
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
            }
            let file = opts.open(&tmp).map_err(io_err)?;
            let mut w = BufWriter::with_capacity(256 * 1024, file);
            let value = write(&mut w).map_err(MetaWriteError::Write)?;
            w.flush().map_err(io_err)?;
            let file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
            file.sync_all().map_err(io_err)?;
            let size = file.metadata().map_err(io_err)?.len();
            drop(file);
            fs::rename(&tmp, &path).map_err(io_err)?;
            fsync_dir(&dir).map_err(io_err)?;
            Ok((value, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes bytes atomically (see [`MetaDir::write_with`]).
    pub fn write_bytes(&self, level: Level, name: FileName, bytes: &[u8]) -> io::Result<u64> {
        self.write_with(level, name, |w| w.write_all(bytes))
            .map(|(_, size)| size)
            .map_err(|e| match e {
                MetaWriteError::Io(e) | MetaWriteError::Write(e) => e,
            })
    }

    /// Deletes files; missing ones are not an error.
    pub fn remove(&self, level: Level, names: &[FileName]) -> io::Result<()> {
        for &name in names {
            remove_if_exists(&self.path(level, name))?;
        }
        Ok(())
    }

    /// Removes every local LTX file and the `NEXT_L0_FULL` mark (a fresh start, or a
    /// position adopted from the replica).
    pub fn reset(&self) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join("ltx")) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.clear_next_full()
    }

    /// Durably marks that the next L0 file must be a full one (every page), with `reason` as
    /// the file's content: set before anything that may put pages into the database file
    /// that no L0 file holds, so that a failure or a crash before that full file exists
    /// still ends in one.
    pub fn mark_next_full(&self, reason: &str) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        let path = self.root.join(NEXT_L0_FULL);
        let mut file = File::create(&path)?;
        file.write_all(reason.as_bytes())?;
        file.sync_all()?;
        fsync_dir(&self.root)
    }

    /// Whether the `NEXT_L0_FULL` mark is set.
    pub fn next_full(&self) -> bool {
        self.root.join(NEXT_L0_FULL).exists()
    }

    /// Removes the `NEXT_L0_FULL` mark (durably; no-op if it is not set).
    pub fn clear_next_full(&self) -> io::Result<()> {
        let path = self.root.join(NEXT_L0_FULL);
        match fs::remove_file(&path) {
            Ok(()) => fsync_dir(&self.root),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A failed atomic write: the file system, or the caller's writer.
#[derive(Debug, thiserror::Error)]
pub enum MetaWriteError<E> {
    #[error("{0}")]
    Io(io::Error),
    #[error("{0}")]
    Write(E),
}

/// Removes a file; a missing one is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory so a rename in it is durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs the directory holding `path` (the current directory for a bare file name), so a
/// rename onto `path` is durable.
pub(crate) fn fsync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fsync_dir(dir),
        _ => fsync_dir(Path::new(".")),
    }
}
