//! Reading a file the server loads and reloads while it runs (the permissions file, the JWT
//! key files, the RPC function files): only a regular file, and at most a bound. A FIFO or device put in its place
//! would block the reader (a reload thread, or the request that notices a key change)
//! until a writer comes, and a huge file would be read whole into memory; both are refused
//! with an error instead, and the caller keeps what it had.

use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;

/// What tells a changed file from the one loaded: device, inode, size, modification time and
/// change time (seconds, nanoseconds). A rotation that keeps the size and the modification
/// time (`cp -p`, `rsync -a`, a rename into place) still moves the inode or the change time.
pub type Stamp = (u64, u64, u64, SystemTime, i64, i64);

/// The [`Stamp`] of the file at `path`, if it can be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.len(),
        m.modified().ok()?,
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// The contents of the regular file at `path` (symbolic links followed), if it holds at
/// most `max` bytes.
pub fn read(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    // Non-blocking, in case a FIFO replaced the file since the look above: opening one for
    // reading would wait for a writer. A regular file ignores the flag.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?
    };
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut out = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(out)
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read(&f, 5).unwrap(), b"12345");
        assert!(
            read(&f, 4)
                .unwrap_err()
                .to_string()
                .contains("larger than 4")
        );
        assert!(
            read(dir.path(), 100)
                .unwrap_err()
                .to_string()
                .contains("regular")
        );
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(
            read(&fifo, 100)
                .unwrap_err()
                .to_string()
                .contains("regular")
        );
    }
}
