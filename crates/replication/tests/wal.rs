//! The WAL reader against real WAL files written by SQLite (rusqlite, bundled), with
//! autocheckpoint off: page images we extract equal the database after a checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use replication::wal::{
    ByteOrder, MAGIC_BE, Salt, StopReason, WalError, WalHeader, WalReader, checksum_update,
    read_page,
};
use rusqlite::Connection;

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        Db {
            _dir: dir,
            path,
            conn,
        }
    }

    fn insert(&self, rows: usize, size: usize) {
        self.conn
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
                 INSERT INTO t(v) SELECT randomblob(?1) FROM n",
                (size as i64, rows as i64),
            )
            .unwrap();
    }

    fn wal(&self) -> Vec<u8> {
        std::fs::read(wal_path(&self.path)).unwrap()
    }

    /// Checkpoints everything into the database file and returns its bytes.
    fn checkpoint_and_read(&self) -> Vec<u8> {
        let (busy, _, _): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0);
        std::fs::read(&self.path).unwrap()
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Every page image the scan points at equals the database page after a checkpoint, and the
/// database has exactly `commit` pages.
fn assert_pages_match(wal: &[u8], scan: &replication::wal::WalScan, db: &[u8]) {
    let header = WalHeader::read(wal).unwrap();
    let ps = scan.page_size as usize;
    assert_eq!(db.len(), scan.commit.unwrap() as usize * ps);
    let mut page = vec![0; ps];
    for (&pgno, &off) in &scan.pages {
        read_page(wal, &header, off, &mut page).unwrap();
        let at = (pgno as usize - 1) * ps;
        assert!(page == db[at..at + ps], "page {pgno} differs");
    }
}

#[test]
fn several_transactions_match_checkpointed_database() {
    let db = Db::new();
    db.insert(10, 100);
    db.insert(50, 500);
    db.conn
        .execute("UPDATE t SET v = randomblob(200) WHERE id % 3 = 0", [])
        .unwrap();
    let wal = db.wal();
    let mut reader = WalReader::open(wal.as_slice()).unwrap();
    assert_eq!(reader.header().byte_order, ByteOrder::Little);
    let scan = reader.read_committed(None).unwrap();
    // CREATE TABLE plus three statements, each its own transaction.
    assert_eq!(scan.transactions, 4);
    assert_eq!(scan.start_offset, 32);
    assert_eq!(scan.end_offset, wal.len() as u64);
    assert_eq!(scan.stop, StopReason::EndOfFile);
    assert_eq!(scan.page_size, 4096);
    assert!(scan.pages.contains_key(&1));
    let frame = reader.header().frame_size();
    assert_eq!(scan.last_commit_frame, Some(scan.end_offset - frame));
    // The newest version of a page wins: every offset is the last frame for that page.
    for (&pgno, &off) in &scan.pages {
        let later = (off + frame..scan.end_offset)
            .step_by(frame as usize)
            .any(|o| {
                u32::from_be_bytes(wal[o as usize..o as usize + 4].try_into().unwrap()) == pgno
            });
        assert!(!later, "page {pgno} has a newer frame after {off}");
    }
    let file = db.checkpoint_and_read();
    assert_pages_match(&wal, &scan, &file);
}

#[test]
fn uncommitted_tail_is_ignored() {
    let db = Db::new();
    db.insert(20, 300);
    // A large transaction with a tiny cache spills uncommitted frames into the WAL.
    db.conn
        .execute_batch("PRAGMA cache_size=2; BEGIN;")
        .unwrap();
    db.insert(400, 3000);
    let wal_open = db.wal();
    let committed = WalReader::open(wal_open.as_slice())
        .unwrap()
        .read_committed(None)
        .unwrap();
    assert!(
        (wal_open.len() as u64) > committed.end_offset + 4096,
        "the open transaction spilled frames into the WAL"
    );
    assert_eq!(committed.transactions, 2);
    db.conn.execute_batch("COMMIT").unwrap();

    // The same reader, called again after the commit, picks up the tail.
    let wal = db.wal();
    let mut reader =
        WalReader::resume(wal.as_slice(), committed.end_offset, committed.salt).unwrap();
    let rest = reader.read_committed(None).unwrap();
    assert_eq!(rest.start_offset, committed.end_offset);
    assert_eq!(rest.transactions, 1);
    assert_eq!(rest.end_offset, wal.len() as u64);

    // A crafted tail: drop the final commit frame, so the last transaction has no commit.
    let frame = WalHeader::read(wal.as_slice()).unwrap().frame_size() as usize;
    let cut = &wal[..wal.len() - frame];
    let scan = WalReader::open(cut).unwrap().read_committed(None).unwrap();
    assert_eq!(scan.end_offset, committed.end_offset);
    assert_eq!(scan.pages, committed.pages);
}

#[test]
fn restarted_wal_stops_at_frames_with_old_salts() {
    let db = Db::new();
    db.insert(100, 2000);
    let before = WalHeader::read(db.wal().as_slice()).unwrap();
    // A PASSIVE checkpoint with no readers lets the next writer restart the WAL from the top;
    // the old frames beyond the new ones stay in the file with the old salts.
    db.conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .unwrap();
    db.insert(1, 10);
    let wal = db.wal();
    let mut reader = WalReader::open(wal.as_slice()).unwrap();
    let after = *reader.header();
    assert_ne!(after.salt, before.salt);
    assert_eq!(after.salt.salt1, before.salt.salt1.wrapping_add(1));
    let scan = reader.read_committed(None).unwrap();
    assert_eq!(scan.stop, StopReason::SaltMismatch);
    assert_eq!(scan.transactions, 1);
    assert!((wal.len() as u64) > scan.end_offset);
    let file = db.checkpoint_and_read();
    assert_pages_match(&wal, &scan, &file);

    // Resuming with the old salts is refused: the WAL changed underneath.
    let err = WalReader::resume(wal.as_slice(), 32, before.salt).unwrap_err();
    assert!(matches!(err, WalError::ResumeSaltMismatch { .. }), "{err}");

    // The old generation's tail is still there: read as that generation, it holds the
    // commit of the 100 rows.
    let frame = after.frame_size();
    let tail_start = scan.end_offset + frame;
    let tail = WalReader::resume_generation(wal.as_slice(), tail_start, before.salt)
        .unwrap()
        .read_committed(None)
        .unwrap();
    assert_eq!(tail.salt, before.salt);
    assert!(tail.commit.is_some(), "{tail:?}");
    let as_new = WalReader::resume(wal.as_slice(), tail_start, before.salt)
        .unwrap()
        .read_committed(None)
        .unwrap();
    assert!(as_new.commit.is_none(), "{as_new:?}");
}

#[test]
fn corrupt_frame_breaks_the_chain() {
    let db = Db::new();
    db.insert(5, 100);
    let first = WalReader::open(db.wal().as_slice())
        .unwrap()
        .read_committed(None)
        .unwrap();
    db.insert(5, 100);
    db.insert(5, 100);
    let mut wal = db.wal();
    // Flip one byte in the page of the first frame after the first two transactions.
    let at = first.end_offset as usize + 24 + 100;
    wal[at] ^= 0xff;
    let scan = WalReader::open(wal.as_slice())
        .unwrap()
        .read_committed(None)
        .unwrap();
    assert_eq!(scan.stop, StopReason::ChecksumMismatch);
    assert_eq!(scan.end_offset, first.end_offset);
    assert_eq!(scan.transactions, first.transactions);

    // A torn frame (file cut in the middle of a frame) ends the WAL too.
    let wal = db.wal();
    let torn = &wal[..wal.len() - 100];
    let scan = WalReader::open(torn).unwrap().read_committed(None).unwrap();
    assert_eq!(scan.stop, StopReason::EndOfFile);
    assert!(scan.end_offset < torn.len() as u64);
}

#[test]
fn header_errors() {
    assert!(WalReader::open(&[0u8; 10][..]).unwrap_err().is_empty_wal());
    let db = Db::new();
    db.insert(1, 10);
    let mut wal = db.wal();
    wal[17] ^= 1; // salt byte: header checksum no longer matches
    let err = WalReader::open(wal.as_slice()).unwrap_err();
    assert!(err.is_empty_wal(), "{err}");
    wal[0] = 0;
    assert!(matches!(
        WalReader::open(wal.as_slice()).unwrap_err(),
        WalError::BadMagic(_)
    ));
}

/// Rewrites a little-endian WAL as SQLite would have on a big-endian machine (magic
/// 0x377f0683, checksums over big-endian words), up to `valid_end`.
fn to_big_endian(wal: &[u8], valid_end: usize) -> Vec<u8> {
    let mut out = wal[..valid_end].to_vec();
    out[0..4].copy_from_slice(&MAGIC_BE.to_be_bytes());
    let mut chain = checksum_update(ByteOrder::Big, (0, 0), &out[..24]);
    out[24..28].copy_from_slice(&chain.0.to_be_bytes());
    out[28..32].copy_from_slice(&chain.1.to_be_bytes());
    let ps = u32::from_be_bytes(out[8..12].try_into().unwrap()) as usize;
    let mut off = 32;
    while off + 24 + ps <= out.len() {
        chain = checksum_update(ByteOrder::Big, chain, &out[off..off + 8]);
        chain = checksum_update(ByteOrder::Big, chain, &out[off + 24..off + 24 + ps]);
        out[off + 16..off + 20].copy_from_slice(&chain.0.to_be_bytes());
        out[off + 20..off + 24].copy_from_slice(&chain.1.to_be_bytes());
        off += 24 + ps;
    }
    out
}

#[test]
fn big_endian_magic_reads_the_same() {
    let db = Db::new();
    db.insert(30, 400);
    db.insert(3, 50);
    let wal = db.wal();
    let le = WalReader::open(wal.as_slice())
        .unwrap()
        .read_committed(None)
        .unwrap();
    let be_wal = to_big_endian(&wal, le.end_offset as usize);
    let mut reader = WalReader::open(be_wal.as_slice()).unwrap();
    assert_eq!(reader.header().byte_order, ByteOrder::Big);
    let be = reader.read_committed(None).unwrap();
    assert_eq!(be.pages, le.pages);
    assert_eq!(be.commit, le.commit);
    assert_eq!(be.end_offset, le.end_offset);
    // And the little-endian chain does not validate big-endian frames.
    let mut mixed = be_wal.clone();
    mixed[0..4].copy_from_slice(&replication::wal::MAGIC_LE.to_be_bytes());
    assert!(
        WalReader::open(mixed.as_slice())
            .unwrap_err()
            .is_empty_wal()
    );
}

#[test]
fn byte_limit_and_resume_cover_the_same_pages() {
    let db = Db::new();
    for i in 0..8 {
        db.insert(10 + i, 700);
    }
    let wal = db.wal();
    let full = WalReader::open(wal.as_slice())
        .unwrap()
        .read_committed(None)
        .unwrap();
    let frame = WalHeader::read(wal.as_slice()).unwrap().frame_size();

    // Batches of at least 5 frames, each ending at a commit boundary.
    let mut reader = WalReader::open(wal.as_slice()).unwrap();
    let mut merged = std::collections::BTreeMap::new();
    let mut batches = Vec::new();
    loop {
        let scan = reader.read_committed(Some(5 * frame)).unwrap();
        if scan.is_empty() {
            break;
        }
        assert!(scan.stop == StopReason::ByteLimit || scan.end_offset == full.end_offset);
        assert_eq!(scan.last_commit_frame, Some(scan.end_offset - frame));
        merged.extend(scan.pages.clone());
        batches.push(scan);
    }
    assert!(batches.len() > 1);
    assert_eq!(merged, full.pages);
    for pair in batches.windows(2) {
        assert_eq!(pair[0].end_offset, pair[1].start_offset);
    }

    // A fresh reader resumed at a batch boundary sees exactly the rest.
    let cut = &batches[0];
    let mut resumed = WalReader::resume(wal.as_slice(), cut.end_offset, cut.salt).unwrap();
    let rest = resumed.read_committed(None).unwrap();
    assert_eq!(rest.end_offset, full.end_offset);
    assert_eq!(rest.transactions + cut.transactions, full.transactions);

    // Resume errors: unaligned offsets, offsets past the end, wrong salts.
    assert!(matches!(
        WalReader::resume(wal.as_slice(), cut.end_offset + 1, cut.salt).unwrap_err(),
        WalError::UnalignedOffset { .. }
    ));
    assert!(matches!(
        WalReader::resume(wal.as_slice(), full.end_offset + 2 * frame, cut.salt).unwrap_err(),
        WalError::ResumeFrameMissing { .. }
    ));
    let other = Salt {
        salt1: cut.salt.salt1 ^ 1,
        salt2: cut.salt.salt2,
    };
    assert!(matches!(
        WalReader::resume(wal.as_slice(), cut.end_offset, other).unwrap_err(),
        WalError::ResumeSaltMismatch { .. }
    ));
}

#[test]
fn shrink_drops_pages_beyond_the_final_commit() {
    let db = Db::new();
    db.insert(200, 2000);
    db.conn.execute_batch("DELETE FROM t; VACUUM;").unwrap();
    let wal = db.wal();
    let scan = WalReader::open(std::fs::File::open(wal_path(&db.path)).unwrap())
        .unwrap()
        .read_committed(None)
        .unwrap();
    let commit = scan.commit.unwrap();
    assert!(commit < 10, "VACUUM shrank the database to {commit} pages");
    assert!(scan.pages.keys().all(|&p| p <= commit));
    let file = db.checkpoint_and_read();
    assert_pages_match(&wal, &scan, &file);
}
