//! Litestream writes, we read (`docs/replication.md#interoperability-with-litestream`): the real
//! Litestream 0.5.17 binary replicates real SQLite databases to a file replica; our decoder must
//! verify every file it wrote, and for every TXID boundary our compactor, fed exactly the files of
//! Litestream's own restore plan, must rebuild a database byte-identical to `litestream restore
//! -txid` of that boundary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use ltx::{Compactor, Decoder, FileName, TxId};
use testkit::litestream::{Litestream, LtxEntry};

/// Every LTX file under `<replica>/ltx/<level>/`, verified by our decoder; returns how many.
fn verify_replica(replica: &Path, listing: &[LtxEntry]) -> usize {
    let mut n = 0;
    for level in std::fs::read_dir(replica.join("ltx")).unwrap() {
        let level = level.unwrap();
        let lvl: u32 = level.file_name().to_str().unwrap().parse().unwrap();
        for f in std::fs::read_dir(level.path()).unwrap() {
            let f = f.unwrap();
            let name: FileName = f.file_name().to_str().unwrap().parse().unwrap();
            let bytes = std::fs::read(f.path()).unwrap();
            let done =
                Decoder::verify(&bytes[..]).unwrap_or_else(|e| panic!("level {lvl} {name}: {e}"));
            let h = done.header;
            assert_eq!(h.file_name(), name, "header TXIDs match the name");
            assert!(h.no_checksum(), "Litestream writes NoChecksum files");
            assert_eq!(done.size, bytes.len() as u64);
            // The tail index parser agrees with the streamed one.
            assert_eq!(
                ltx::PageIndex::from_tail(&bytes, bytes.len() as u64).unwrap(),
                done.index
            );
            if lvl == 9 {
                assert!(h.is_snapshot());
            }
            let listed = listing
                .iter()
                .find(|e| {
                    e.level == lvl
                        && e.min_txid == name.min.to_string()
                        && e.max_txid == name.max.to_string()
                })
                .unwrap_or_else(|| panic!("level {lvl} {name} not in Litestream's listing"));
            assert_eq!(listed.size, bytes.len() as u64);
            n += 1;
        }
    }
    n
}

/// Our restore of `-txid B`, from exactly the files of Litestream's plan for B.
fn our_restore(ls: &Litestream, url: &str, replica: &Path, txid: Option<&str>) -> Vec<u8> {
    let plan = ls.restore_plan(url, txid);
    let files: Vec<Vec<u8>> = plan
        .files
        .iter()
        .map(|f| {
            let name = FileName::new(f.min_txid.parse().unwrap(), f.max_txid.parse().unwrap());
            if let Some(n) = &f.name {
                assert_eq!(n, &name.to_string());
            }
            std::fs::read(replica.join(format!("ltx/{}/{name}", f.level))).unwrap()
        })
        .collect();
    let decoders = files
        .iter()
        .map(|b| Decoder::new(&b[..]).unwrap())
        .collect();
    let restored = Compactor::new(decoders)
        .unwrap()
        .restore(Vec::new())
        .unwrap_or_else(|e| panic!("restore {txid:?}: {e}"));
    assert_eq!(restored.txid.to_string(), plan.max_txid);
    restored.writer
}

fn their_restore(ls: &Litestream, url: &str, out: &Path, txid: Option<&str>) -> Vec<u8> {
    let _ = std::fs::remove_file(out);
    let mut extra = vec![];
    if let Some(t) = txid {
        extra = vec!["-txid", t];
    }
    let res = ls.restore(url, out, &extra);
    assert!(
        res.status.success(),
        "litestream restore {txid:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::read(out).unwrap()
}

/// For every MaxTXID boundary of the replica, and for "latest": ours == theirs.
fn compare_every_boundary(ls: &Litestream, url: &str, replica: &Path, scratch: &Path) -> usize {
    let listing = ls.ltx_list(url);
    let boundaries: BTreeSet<String> = listing.iter().map(|e| e.max_txid.clone()).collect();
    let out = scratch.join("theirs.db");
    for b in &boundaries {
        let ours = our_restore(ls, url, replica, Some(b));
        let theirs = their_restore(ls, url, &out, Some(b));
        assert!(
            ours == theirs,
            "txid {b}: our restore differs from litestream's"
        );
    }
    let ours = our_restore(ls, url, replica, None);
    let theirs = their_restore(ls, url, &out, None);
    assert!(
        ours == theirs,
        "latest: our restore differs from litestream's"
    );
    boundaries.len()
}

fn levels(listing: &[LtxEntry]) -> BTreeSet<u32> {
    listing.iter().map(|e| e.level).collect()
}

fn url_of(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[test]
fn litestream_replica_restores_identically_at_every_boundary() {
    let Some(ls) = Litestream::require("litestream_replica_restores_identically_at_every_boundary")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let replica = dir.path().join("replica");
    let url = url_of(&replica);
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, data BLOB);
         INSERT INTO t(name, data) VALUES ('first', randomblob(2000));",
    )
    .unwrap();

    // Short intervals so that compaction levels 1 and 2 and snapshots all appear in seconds.
    let config = dir.path().join("ls.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 1s\n  - interval: 2s\nsnapshot:\n  interval: 3s\n\
             l0-retention: 30s\nl0-retention-check-interval: 1s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 1s\n\
             \x20   replica:\n      path: {}\n      sync-interval: 100ms\n",
            src.display(),
            replica.display()
        ),
    )
    .unwrap();
    let run = ls.spawn_replicate(&config);
    let step = || std::thread::sleep(Duration::from_millis(120));
    let mut rng = Rng(11);
    for i in 0..12 {
        conn.execute(
            "INSERT INTO t(name, data) VALUES (?1, ?2)",
            (format!("row {i}"), rng.bytes(500 + 300 * i)),
        )
        .unwrap();
        step();
    }
    conn.execute(
        "UPDATE t SET name = name || ' updated' WHERE id % 2 = 0",
        [],
    )
    .unwrap();
    step();
    // A 300-row transaction.
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..300 {
        tx.execute(
            "INSERT INTO t(name, data) VALUES (?1, zeroblob(?2))",
            (format!("bulk {i}"), 40 + i),
        )
        .unwrap();
    }
    tx.commit().unwrap();
    step();
    // An external checkpoint attempt (Litestream's read lock keeps it from truncating).
    let other = rusqlite::Connection::open(&src).unwrap();
    let _: (i64, i64, i64) = other
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    drop(other);
    step();
    // Shrink: DELETE + VACUUM.
    conn.execute_batch("DELETE FROM t WHERE id > 100; VACUUM;")
        .unwrap();
    step();
    for i in 0..8 {
        conn.execute(
            "INSERT INTO t(name, data) VALUES (?1, randomblob(?2))",
            (format!("after vacuum {i}"), 3000 + i),
        )
        .unwrap();
        step();
    }
    // Wait (bounded) until the last write is replicated, then until compaction levels 1 and
    // 2 and a snapshot holding that write exist.
    let max_of = |listing: &[LtxEntry], level: u32| {
        listing
            .iter()
            .filter(|e| e.level == level)
            .map(|e| e.max_txid.parse::<TxId>().unwrap())
            .max()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_l0 = None;
    loop {
        let listing = ls.ltx_list(&url);
        let have = levels(&listing);
        let l0 = max_of(&listing, 0);
        let settled = l0.is_some() && l0 == last_l0;
        last_l0 = l0;
        if settled && have.is_superset(&BTreeSet::from([0, 1, 2, 9])) && max_of(&listing, 9) >= l0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "levels so far: {have:?}\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(conn);
    let log = run.stop();
    assert!(!log.contains("sync error"), "{log}");

    let listing = ls.ltx_list(&url);
    let verified = verify_replica(&replica, &listing);
    assert_eq!(verified, listing.len());
    // The local L0 copies (meta dir) are LTX files too.
    let meta = dir.path().join(".src.db-litestream/ltx/0");
    if let Ok(rd) = std::fs::read_dir(&meta) {
        for f in rd {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            Decoder::verify(&bytes[..]).unwrap();
        }
    }
    let boundaries = compare_every_boundary(&ls, &url, &replica, dir.path());
    assert!(boundaries >= 10, "only {boundaries} boundaries");
    eprintln!(
        "verified {verified} files on levels {:?}; {boundaries} boundaries restore identically",
        levels(&listing)
    );
}

fn replicate_once_and_compare(ls: &Litestream, db: &Path, dir: &Path) {
    let replica: PathBuf = dir.join("replica");
    let url = url_of(&replica);
    ls.replicate_once(db, &url, true);
    let listing = ls.ltx_list(&url);
    assert_eq!(levels(&listing), BTreeSet::from([0, 9]));
    assert_eq!(verify_replica(&replica, &listing), listing.len());
    compare_every_boundary(ls, &url, &replica, dir);
    // And the restore is the source database's content.
    let restored = our_restore(ls, &url, &replica, None);
    let out = dir.join("ours.db");
    std::fs::write(&out, &restored).unwrap();
    let a = rusqlite::Connection::open(&out).unwrap();
    let ok: String = a
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&a), count(&rusqlite::Connection::open(db).unwrap()));
}

#[test]
fn litestream_force_snapshot_small_pages() {
    let Some(ls) = Litestream::require("litestream_force_snapshot_small_pages") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA page_size = 512; PRAGMA journal_mode = WAL;
         CREATE TABLE t(x);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO t SELECT printf('%d %s', i, hex(randomblob(20))) FROM n;",
    )
    .unwrap();
    drop(conn);
    replicate_once_and_compare(&ls, &db, dir.path());
}

#[test]
fn litestream_64k_pages_with_incompressible_data() {
    let Some(ls) = Litestream::require("litestream_64k_pages_with_incompressible_data") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA page_size = 65536; PRAGMA journal_mode = WAL;
         CREATE TABLE t(x);
         INSERT INTO t VALUES (randomblob(200000)), (randomblob(70000)), ('small');",
    )
    .unwrap();
    drop(conn);
    replicate_once_and_compare(&ls, &db, dir.path());
    // Compressed random pages are larger than the page
    // (`docs/ltx-and-replica-format.md#block-encoding`).
    let snap = std::fs::read_dir(dir.path().join("replica/ltx/9"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(snap).unwrap();
    let done = Decoder::verify(&bytes[..]).unwrap();
    assert_eq!(done.header.page_size, 65536);
    assert!(done.index.entries().iter().any(|e| e.size > 65536 + 10));
    assert_eq!(done.header.min_txid, TxId(1));
}
