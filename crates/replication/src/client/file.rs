//! The file replica: a directory holding `ltx/<level>/<min>-<max>.ltx`
//! (`docs/ltx-and-replica-format.md#file-replicas`, `#file-timestamps`).
//!
//! Writes are atomic and durable as Litestream's: `<name>.tmp` in the level directory,
//! fsync, rename, fsync of the directory, then the mtime and atime are set to the LTX
//! header timestamp (CreatedAt of a file replica is its mtime). New directories and files
//! copy the mode and owner of the database's directory and file when the client knows the
//! database ([`FileClient::with_modes_from`]).

use std::fs::{self, FileTimes, OpenOptions};
use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ltx::FileName;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{
    ByteStream, ClientError, DirEntry, EntryKind, ListOptions, ReadRange, ReplicaClient, WriteBody,
    finish_listing, relative_parts,
};
use crate::level::{Level, LtxFileInfo};
use crate::meta::fsync_dir;
use crate::target::ReplicaKind;

/// Mode and owner to give new replica directories and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Modes {
    dir_mode: u32,
    file_mode: u32,
    uid: u32,
    gid: u32,
}

/// A replica in a local directory.
#[derive(Debug, Clone)]
pub struct FileClient {
    root: PathBuf,
    modes: Option<Modes>,
}

impl FileClient {
    /// A client for the replica directory `root` (absolute).
    pub fn new(root: impl Into<PathBuf>) -> FileClient {
        FileClient {
            root: root.into(),
            modes: None,
        }
    }

    /// New directories copy the mode/owner of the database's directory, new files those of
    /// the database file (if it exists now).
    pub fn with_modes_from(mut self, db_path: &Path) -> FileClient {
        let file = fs::metadata(db_path).ok();
        let dir = db_path.parent().and_then(|d| fs::metadata(d).ok());
        if let (Some(file), Some(dir)) = (file, dir) {
            self.modes = Some(Modes {
                dir_mode: dir.permissions().mode() & 0o7777,
                file_mode: file.permissions().mode() & 0o7777,
                uid: file.uid(),
                gid: file.gid(),
            });
        }
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
    pub fn file_path(&self, level: Level, name: FileName) -> PathBuf {
        self.level_dir(level).join(name.to_string())
    }

    fn io(&self, operation: &'static str, path: &Path, source: std::io::Error) -> ClientError {
        if source.kind() == ErrorKind::NotFound && operation == "open" {
            return ClientError::NotFound {
                replica: self.describe(),
                what: path.display().to_string(),
            };
        }
        ClientError::Io {
            replica: self.describe(),
            operation,
            path: path.to_path_buf(),
            source,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        path: &Path,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, ClientError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r.map_err(|e| self.io(operation, path, e)),
            Err(e) => Err(self.io(operation, path, std::io::Error::other(e.to_string()))),
        }
    }

    /// Writes `<name>.tmp`, fsyncs it and publishes it under its name (see [`Publish`]).
    async fn write_file(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
        publish: Publish,
    ) -> Result<LtxFileInfo, ClientError> {
        let dir = self.level_dir(level);
        let path = self.file_path(level, name);
        let tmp = match publish {
            Publish::Replace => dir.join(format!("{name}.tmp")),
            // Two writers of the same name (two primaries) must not share a temp file; one
            // process has one upload of a name in flight at a time.
            Publish::Create => dir.join(format!("{name}.{}.tmp", std::process::id())),
        };
        let modes = self.modes;
        let result = async {
            let d = dir.clone();
            self.blocking("mkdir", &dir, move || mkdir_all(&d, modes))
                .await?;
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| self.io("create", &tmp, e))?;
            let mut body = WriteBody::new(body);
            while let Some(chunk) = body.chunk().await? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| self.io("write", &tmp, e))?;
            }
            // tokio's `File` writes in the background: the last write's error (ENOSPC on a
            // full disk) is reported by `flush`, never by `sync_all`, which would let a
            // truncated file be renamed into place.
            file.flush().await.map_err(|e| self.io("write", &tmp, e))?;
            file.sync_all()
                .await
                .map_err(|e| self.io("fsync", &tmp, e))?;
            drop(file);
            let (t, p, d) = (tmp.clone(), path.clone(), dir.clone());
            let when = SystemTime::from(created_at);
            self.blocking("rename", &path, move || {
                if let Some(m) = modes {
                    fs::set_permissions(&t, fs::Permissions::from_mode(m.file_mode))?;
                    let _ = std::os::unix::fs::chown(&t, Some(m.uid), Some(m.gid));
                }
                match publish {
                    Publish::Replace => fs::rename(&t, &p)?,
                    // A hard link fails when the name exists; the temp name then goes.
                    Publish::Create => {
                        fs::hard_link(&t, &p)?;
                        fs::remove_file(&t)?;
                    }
                }
                fsync_dir(&d)?;
                let f = OpenOptions::new().write(true).open(&p)?;
                f.set_times(FileTimes::new().set_accessed(when).set_modified(when))?;
                Ok(())
            })
            .await
            .map_err(|e| match e {
                ClientError::Io { source, .. } if source.kind() == ErrorKind::AlreadyExists => {
                    ClientError::AlreadyExists {
                        replica: self.describe(),
                        what: path.display().to_string(),
                    }
                }
                e => e,
            })?;
            Ok::<_, ClientError>(body.taken())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        Ok(LtxFileInfo {
            level,
            name,
            size: result?,
            created_at,
        })
    }

    /// The entries of `dir`; none when it does not exist.
    async fn read_dir(&self, dir: &Path) -> Result<Vec<tokio::fs::DirEntry>, ClientError> {
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("list", dir, e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.io("list", dir, e))?
        {
            out.push(entry);
        }
        Ok(out)
    }

    /// The bytes of an open file (or part of it) as a stream.
    fn stream(
        &self,
        reader: impl tokio::io::AsyncRead + Send + 'static,
        path: PathBuf,
    ) -> ByteStream {
        let replica = self.describe();
        ReaderStream::with_capacity(reader, 256 * 1024)
            .map(move |r| {
                r.map_err(|e| ClientError::Io {
                    replica: replica.clone(),
                    operation: "read",
                    path: path.clone(),
                    source: e,
                })
            })
            .boxed()
    }

    /// `<root>/<rel>`, for a `/`-separated relative path of plain segments.
    fn relative(&self, rel: &str) -> Result<PathBuf, ClientError> {
        let mut path = self.root.clone();
        for part in relative_parts(rel)? {
            path.push(part);
        }
        Ok(path)
    }

    async fn entries_of(&self, dir: &Path) -> Result<Vec<DirEntry>, ClientError> {
        let mut out = Vec::new();
        for entry in self.read_dir(dir).await? {
            let path = entry.path();
            // Follows symbolic links: a linked directory is a directory.
            let meta = match tokio::fs::metadata(&path).await {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("stat", &path, e)),
            };
            out.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: if meta.is_dir() {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                },
                size: if meta.is_dir() { 0 } else { meta.len() },
                created_at: meta.modified().ok().map(DateTime::<Utc>::from),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn list_level(&self, level: Level) -> Result<Vec<LtxFileInfo>, ClientError> {
        let mut out = Vec::new();
        for entry in self.read_dir(&self.level_dir(level)).await? {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<FileName>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let meta = match tokio::fs::metadata(&path).await {
                Ok(m) => m,
                // Deleted between readdir and stat (retention running concurrently).
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("stat", &path, e)),
            };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().map_err(|e| self.io("stat", &path, e))?;
            out.push(LtxFileInfo {
                level,
                name,
                size: meta.len(),
                created_at: DateTime::<Utc>::from(mtime),
            });
        }
        Ok(out)
    }
}

/// Creates `dir` and missing parents, giving each new directory `modes`.
/// How a finished temp file takes its name.
#[derive(Debug, Clone, Copy)]
enum Publish {
    /// `rename`: replaces a file of that name.
    Replace,
    /// `link`: fails with `AlreadyExists` when the name exists (a conditional create).
    Create,
}

fn mkdir_all(dir: &Path, modes: Option<Modes>) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdir_all(parent, modes)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(m) = modes {
                fs::set_permissions(dir, fs::Permissions::from_mode(m.dir_mode))?;
                // Changing the owner needs privileges; without them the directory keeps ours.
                let _ = std::os::unix::fs::chown(dir, Some(m.uid), Some(m.gid));
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl ReplicaClient for FileClient {
    fn kind(&self) -> ReplicaKind {
        ReplicaKind::File
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn local_path(&self, level: Level, name: FileName) -> Option<PathBuf> {
        Some(self.file_path(level, name))
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        let entries = self.read_dir(&self.root.join("ltx")).await?;
        let mut levels = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            let Some(level) = name
                .to_str()
                .filter(|n| n.len() == 1)
                .and_then(|n| n.parse::<u8>().ok())
                .and_then(Level::new)
            else {
                continue;
            };
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                levels.push(level);
            }
        }
        levels.sort();
        Ok(levels)
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        let files = self.list_level(level).await?;
        Ok(finish_listing(files, options.seek))
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        let path = self.relative(dir)?;
        self.entries_of(&path).await
    }

    async fn open_path(&self, rel: &str) -> Result<ByteStream, ClientError> {
        let path = self.relative(rel)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.io("open", &path, e))?;
        Ok(self.stream(file, path))
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        let path = self.file_path(level, name);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.io("open", &path, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| self.io("stat", &path, e))?
            .len();
        let (start_at, end) = match range {
            ReadRange::Full => (0, size),
            ReadRange::From(s) => (s, size),
            ReadRange::Bounded { start, end } => (start, end.min(size)),
            ReadRange::Suffix(n) => (size.saturating_sub(n), size),
        };
        if start_at > end || start_at > size {
            return Err(ClientError::BadRange {
                replica: self.describe(),
                name: name.to_string(),
                range,
            });
        }
        file.seek(SeekFrom::Start(start_at))
            .await
            .map_err(|e| self.io("seek", &path, e))?;
        Ok(self.stream(file.take(end - start_at), path))
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        self.write_file(level, name, body, created_at, Publish::Replace)
            .await
    }

    async fn create_bytes(
        &self,
        level: Level,
        name: FileName,
        data: Bytes,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let body = futures::stream::once(async move { Ok(data) }).boxed();
        self.write_file(level, name, body, created_at, Publish::Create)
            .await
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        for &name in names {
            let path = self.file_path(level, name);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.io("delete", &path, e)),
            }
        }
        Ok(())
    }

    async fn probe(&self) -> Result<(), ClientError> {
        let root = self.root.clone();
        let modes = self.modes;
        let probe = root.join(format!(".sqlite-rest-probe-{}", std::process::id()));
        self.blocking("probe", &self.root, move || {
            mkdir_all(&root, modes)?;
            fs::write(&probe, b"probe")?;
            fs::File::open(&probe)?.sync_all()?;
            fs::read_dir(&root)?.count();
            fs::remove_file(&probe)?;
            Ok(())
        })
        .await
    }
}
