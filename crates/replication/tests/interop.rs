//! Interoperability with the real Litestream 0.5.17, both directions, on file, S3
//! and Azure (Azurite) replicas: every TXID boundary and timestamps restore byte-identically with both tools,
//! listings agree (levels, TXIDs, sizes, timestamps), non-boundary TXIDs fail like the binary,
//! and each program takes over a replica (and metadata directory) the other one wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use ltx::TxId;
use replication::ListOptions;
use replication::restore::IntegrityCheck;
use replication::restore::RestoreTarget;
use replication::{CommitNotice, StartAction};
use testkit::litestream::{Litestream, Source};

/// Our restore into `out`: Ok(bytes) or Err(message).
async fn ours(replica: &Replica, out: &Path, target: RestoreTarget) -> Result<Vec<u8>, String> {
    let _ = std::fs::remove_file(out);
    restore_ours(&replica.client().await, target, out, IntegrityCheck::None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(std::fs::read(out).unwrap())
}

/// Litestream's restore into `out`: Ok(bytes) or Err(stderr).
fn theirs(
    ls: &Litestream,
    replica: &Replica,
    out: &Path,
    extra: &[&str],
) -> Result<Vec<u8>, String> {
    let _ = std::fs::remove_file(out);
    let res = ls.restore_of(replica.source(), out, extra);
    if res.status.success() {
        Ok(std::fs::read(out).unwrap())
    } else {
        Err(String::from_utf8_lossy(&res.stderr).into_owned())
    }
}

/// Both tools agree at every MaxTXID boundary the binary lists, at a TXID that is not a
/// boundary, at timestamps between files, and on the latest state. Returns the boundaries.
async fn agree_everywhere(ls: &Litestream, replica: &Replica, dir: &Path) -> Vec<u64> {
    let listing = ls.ltx_list_of(replica.source());
    // The listing is the same as ours (names, levels, sizes; timestamps to the second).
    let c = replica.client().await;
    let mut mine: Vec<_> = c
        .list_all(ListOptions::default())
        .await
        .unwrap()
        .iter()
        .map(info_key)
        .collect();
    let mut their: Vec<_> = listing.iter().map(entry_key).collect();
    mine.sort();
    their.sort();
    let strip =
        |v: &[(u8, u64, u64, u64, i64)]| v.iter().map(|k| (k.0, k.1, k.2, k.3)).collect::<Vec<_>>();
    assert_eq!(strip(&mine), strip(&their), "listings differ");

    let mut boundaries: Vec<u64> = listing
        .iter()
        .map(|e| u64::from_str_radix(&e.max_txid, 16).unwrap())
        .collect();
    boundaries.sort();
    boundaries.dedup();
    let (a, b) = (dir.join("ours.db"), dir.join("theirs.db"));
    for &t in &boundaries {
        let hex = format!("{t:016x}");
        let o = ours(replica, &a, RestoreTarget::TxId(TxId(t))).await;
        let th = theirs(ls, replica, &b, &["-txid", &hex]);
        match (&o, &th) {
            (Ok(x), Ok(y)) => assert!(x == y, "txid {hex}: restores differ"),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "txid {hex}: ours {:?} vs theirs {:?}",
                o.as_ref().err(),
                th.as_ref().err()
            ),
        }
    }
    // A TXID that is no boundary of any file fails in both.
    if let Some(gap) =
        (1..boundaries.last().copied().unwrap_or(1)).find(|t| !boundaries.contains(t))
    {
        let hex = format!("{gap:016x}");
        let o = ours(replica, &a, RestoreTarget::TxId(TxId(gap))).await;
        let th = theirs(ls, replica, &b, &["-txid", &hex]);
        assert!(
            o.is_err() && th.is_err(),
            "non-boundary {hex}: {o:?} / {th:?}"
        );
        assert!(
            th.unwrap_err()
                .contains("no matching backup files available")
        );
        assert!(
            o.unwrap_err()
                .contains("no matching backup files available")
        );
    }
    // Timestamps between distinct file times (precise CreatedAt).
    let precise = c
        .list_all(ListOptions {
            seek: None,
            precise_timestamps: true,
        })
        .await
        .unwrap();
    let mut times: Vec<DateTime<Utc>> = precise.iter().map(|f| f.created_at).collect();
    times.sort();
    times.dedup();
    let picks: Vec<DateTime<Utc>> = times
        .windows(2)
        .filter(|w| (w[1] - w[0]).num_milliseconds() >= 2)
        .map(|w| w[0] + (w[1] - w[0]) / 2)
        .step_by(3)
        .take(4)
        .collect();
    for ts in picks {
        let s = ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let o = ours(replica, &a, RestoreTarget::Timestamp(ts)).await;
        let th = theirs(ls, replica, &b, &["-timestamp", &s]);
        match (&o, &th) {
            (Ok(x), Ok(y)) => assert!(x == y, "timestamp {s}: restores differ"),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "timestamp {s}: ours {:?} vs theirs {:?}",
                o.as_ref().err(),
                th.as_ref().err()
            ),
        }
    }
    // Before the first file: both refuse.
    if let Some(first) = times.first() {
        let early = *first - chrono::Duration::hours(1);
        let s = early.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let th = theirs(ls, replica, &b, &["-timestamp", &s]).unwrap_err();
        // Litestream words this by entry point, not backend: "timestamp does not exist"
        // for `restore <url>`, "no matching backup files available" for `restore -config`.
        let expected = match replica.source() {
            Source::Url(_) => "timestamp does not exist",
            Source::Config { .. } => "no matching backup files available",
        };
        assert!(th.contains(expected), "{th}");
        let o = ours(replica, &a, RestoreTarget::Timestamp(early))
            .await
            .unwrap_err();
        assert!(o.contains("timestamp does not exist"), "{o}");
    }
    let o = ours(replica, &a, RestoreTarget::Latest).await.unwrap();
    let th = theirs(ls, replica, &b, &["-integrity-check", "full"]).unwrap();
    assert!(o == th, "latest restores differ");
    boundaries
}

/// Our replicator writes (levels 0, 1, 2, 9 with retention) while rusqlite commits,
/// including a large transaction, DELETE + VACUUM and an external TRUNCATE checkpoint attempt.
async fn we_write(db: &Path, replica_entry: &str) {
    let yaml = fast_config_to(db, replica_entry, "");
    let r = start_replicator(&yaml, db).await.unwrap();
    let h = r.handle();
    let db2 = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = wal_db(&db2);
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        for seq in 1..=45u64 {
            match seq {
                10 => insert(&conn, 300, 120),
                20 => {
                    conn.execute("DELETE FROM t WHERE id % 2 = 0", []).unwrap();
                    conn.execute_batch("VACUUM").unwrap();
                }
                30 => {
                    // Another process tries to truncate the WAL; our read lock holds it off.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                }
                _ => insert(&conn, 2, 400),
            }
            h.notify_commit(CommitNotice { seq });
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
}

async fn we_write_they_read(ls: &Litestream, replica: &Replica, dir: &Path) {
    init_logging();
    let db = dir.join("src.db");
    we_write(&db, &replica.entry).await;
    let boundaries = agree_everywhere(ls, replica, dir).await;
    // 45 commits become fewer files (the sync batches commits, more of them per file on a
    // loaded machine), across compaction levels, a checkpoint and a VACUUM.
    assert!(boundaries.len() > 5, "{boundaries:?}");
    let out = dir.join("final.db");
    theirs(ls, replica, &out, &[]).unwrap();
    assert_eq!(rows(&out), rows(&db));
}

async fn they_write_we_read(ls: &Litestream, replica: &Replica, dir: &Path) {
    let db = dir.join("src.db");
    replicate_with_levels_to(ls, dir, &db, &replica.entry);
    let boundaries = agree_everywhere(ls, replica, dir).await;
    assert!(boundaries.len() > 3, "{boundaries:?}");
    let out = dir.join("final.db");
    ours(replica, &out, RestoreTarget::Latest).await.unwrap();
    assert_eq!(rows(&out), rows(&db));
}

/// One test per backend and direction: `name => direction(backend, bucket/container prefix)`.
macro_rules! both_directions {
    ($($name:ident => $direction:ident($backend:expr, $prefix:literal);)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let test = stringify!($name);
            if let Some((ls, _t, dir, replica)) =
                litestream_and_replica(test, $backend, $prefix, "src.db")
            {
                $direction(&ls, &replica, &dir).await;
            }
        }
    )*};
}

both_directions! {
    we_write_litestream_reads_file => we_write_they_read(Backend::File, "interop-ours");
    we_write_litestream_reads_s3 => we_write_they_read(Backend::S3, "interop-ours");
    we_write_litestream_reads_abs => we_write_they_read(Backend::Abs, "interop-ours");
    litestream_writes_we_read_file => they_write_we_read(Backend::File, "interop-theirs");
    litestream_writes_we_read_s3 => they_write_we_read(Backend::S3, "interop-theirs");
    litestream_writes_we_read_abs => they_write_we_read(Backend::Abs, "interop-theirs");
}

/// Litestream config for one database and replica (debug logs for the hand-over checks).
fn ls_config(dir: &Path, db: &Path, url: &str) -> std::path::PathBuf {
    let config = dir.join("ls.yml");
    std::fs::write(
        &config,
        format!(
            "logging:\n  level: debug\nl0-retention: 1h\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n      sync-interval: 100ms\n",
            db.display()
        ),
    )
    .unwrap();
    config
}

/// Runs `litestream replicate` while writing `n` commits, stops it, returns its log.
fn litestream_session(ls: &Litestream, config: &Path, db: &Path, n: usize) -> String {
    let running = ls.spawn_replicate(config);
    let conn = wal_db(db);
    assert!(
        running.wait_for_log("replica sync", Duration::from_secs(20))
            || running.wait_for_log("sync", Duration::from_secs(5))
    );
    for _ in 0..n {
        insert(&conn, 2, 300);
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(conn);
    running.stop()
}

/// How Litestream finds our state when it takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takeover {
    /// Our metadata directory is there (it is Litestream's too).
    WithMeta,
    /// No metadata directory: Litestream fetches our newest L0 file, whose WAL range still
    /// matches the WAL, and continues incrementally.
    WithoutMeta,
    /// No metadata directory and the WAL was truncated while nothing ran: Litestream must
    /// write a full L0 file at the next TXID.
    WithoutMetaWalReset,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_litestream_takes_over_our_replica() {
    let test = "handover_litestream_takes_over_our_replica";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for case in [
        Takeover::WithMeta,
        Takeover::WithoutMeta,
        Takeover::WithoutMetaWalReset,
    ] {
        let (_t, dir) = tempdir();
        let db = dir.join("src.db");
        let url = file_url(&dir.join("replica"));
        let rep = Replica::url(&url);
        we_write(&db, &url_entry(&url)).await;
        if case != Takeover::WithMeta {
            std::fs::remove_dir_all(dir.join(".src.db-litestream")).unwrap();
        }
        if case == Takeover::WithoutMetaWalReset {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        let config = ls_config(&dir, &db, &url);
        let log = litestream_session(&ls, &config, &db, 5);
        assert!(!log.contains("sync error"), "{case:?}: {log}");
        let behind = log.contains("detected database behind replica");
        let snap = log.contains("snap=true");
        match case {
            Takeover::WithMeta => assert!(!behind && !snap, "{case:?}: {log}"),
            Takeover::WithoutMeta => assert!(behind && !snap, "{case:?}: {log}"),
            Takeover::WithoutMetaWalReset => assert!(behind && snap, "{case:?}: {log}"),
        }
        let out = dir.join("after.db");
        theirs(&ls, &rep, &out, &["-integrity-check", "full"]).unwrap();
        assert_eq!(rows(&out), rows(&db), "{case:?}");
        let mine = ours(&rep, &dir.join("ours.db"), RestoreTarget::Latest)
            .await
            .unwrap();
        assert!(mine == std::fs::read(&out).unwrap(), "{case:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_we_take_over_litestreams_replica() {
    init_logging();
    let test = "handover_we_take_over_litestreams_replica";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    for url_kind in ["file", "s3"] {
        let (_t, dir) = tempdir();
        let db = dir.join("src.db");
        let url = match url_kind {
            "file" => file_url(&dir.join("replica")),
            _ => {
                let Some(url) = testkit::s3_replica_url(test, "handover", "db") else {
                    return;
                };
                url
            }
        };
        let config = ls_config(&dir, &db, &url);
        let log = litestream_session(&ls, &config, &db, 6);
        assert!(!log.contains("sync error"), "{log}");
        let before = ls.ltx_list(&url);
        let yaml = fast_config(&db, &url, "");
        let r = start_replicator(&yaml, &db).await.unwrap();
        assert!(
            matches!(r.handle().start_action(), StartAction::Continued { .. }),
            "{url_kind}: {:?}",
            r.handle().start_action()
        );
        let conn = wal_db(&db);
        for seq in 1..=5u64 {
            insert(&conn, 2, 300);
            r.handle().notify_commit(CommitNotice { seq });
        }
        r.sync_and_wait().await.unwrap();
        drop(conn);
        r.shutdown().await.unwrap();
        // We continued Litestream's TXIDs incrementally: no full L0 file.
        let max_before = before
            .iter()
            .map(|e| u64::from_str_radix(&e.max_txid, 16).unwrap())
            .max()
            .unwrap();
        let db_size = std::fs::metadata(&db).unwrap().len();
        let after = ls.ltx_list(&url);
        let ours_l0: Vec<_> = after
            .iter()
            .filter(|e| e.level == 0 && u64::from_str_radix(&e.min_txid, 16).unwrap() > max_before)
            .collect();
        assert!(
            !ours_l0.is_empty(),
            "{url_kind}: nothing new after TXID {max_before}"
        );
        assert!(
            ours_l0.iter().all(|e| e.size < db_size / 2),
            "{url_kind}: {ours_l0:?}"
        );
        let rep = Replica::url(&url);
        agree_everywhere(&ls, &rep, &dir).await;
        let out = dir.join("final.db");
        theirs(&ls, &rep, &out, &[]).unwrap();
        assert_eq!(rows(&out), rows(&db), "{url_kind}");
    }
}

/// Litestream's `replicate -once -force-snapshot` (levels 0 and 9 only), with 4 KiB and
/// 64 KiB pages and incompressible rows, on file and S3: our restore equals Litestream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litestream_once_snapshots_and_64k_pages_restore_identically() {
    let test = "litestream_once_snapshots_and_64k_pages_restore_identically";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let s3 = testkit::require_s3(test);
    for page_size in [4096, 65536] {
        for backend in ["file", "s3"] {
            let (_t, dir) = tempdir();
            let db = dir.join("src.db");
            let url = match (backend, &s3) {
                ("file", _) => file_url(&dir.join("replica")),
                (_, Some(s3)) => {
                    let bucket = s3.create_bucket("once");
                    s3.replica_url(&bucket, "db")
                }
                _ => continue,
            };
            {
                let conn = rusqlite::Connection::open(&db).unwrap();
                conn.pragma_update(None, "page_size", page_size).unwrap();
                drop(conn);
                let conn = wal_db(&db);
                insert(&conn, 40, 30_000);
            }
            ls.replicate_once(&db, &url, true);
            let c = open_url(&url).await;
            let levels = c.levels().await.unwrap();
            assert_eq!(
                levels.iter().map(|l| l.get()).collect::<Vec<_>>(),
                [0, 9],
                "{backend}"
            );
            let rep = Replica::url(&url);
            let a = ours(&rep, &dir.join("ours.db"), RestoreTarget::Latest)
                .await
                .unwrap();
            let b = theirs(&ls, &rep, &dir.join("theirs.db"), &[]).unwrap();
            assert!(a == b, "{backend} {page_size}");
            assert_eq!(rows(&dir.join("ours.db")), rows(&db));
        }
    }
}

/// Our replicator on a 64 KiB-page database with incompressible pages (frames larger than the
/// page): Litestream restores it identically to us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_replicate_64k_pages() {
    let test = "we_replicate_64k_pages";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("big.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "page_size", 65536).unwrap();
        drop(conn);
        let conn = wal_db(&db);
        insert(&conn, 10, 50_000);
    }
    let url = file_url(&dir.join("replica"));
    let rep = Replica::url(&url);
    let r = start_replicator(&fast_config(&db, &url, ""), &db)
        .await
        .unwrap();
    let conn = wal_db(&db);
    for seq in 1..=5u64 {
        insert(&conn, 3, 70_000);
        r.handle().notify_commit(CommitNotice { seq });
        r.sync_and_wait().await.unwrap();
    }
    r.shutdown().await.unwrap();
    agree_everywhere(&ls, &rep, &dir).await;
    let out = dir.join("final.db");
    theirs(&ls, &rep, &out, &[]).unwrap();
    assert_eq!(rows(&out), rows(&db));
}

/// A missing file in the middle of L0 and a flipped byte fail in both tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replicas_fail_in_both_tools() {
    let test = "broken_replicas_fail_in_both_tools";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("src.db");
    let replica = dir.join("replica");
    let url = file_url(&replica);
    let rep = Replica::url(&url);
    // Only L0 (no compaction, no snapshot): long intervals.
    let yaml = format!(
        "levels:\n  - interval: 1h\nsnapshot:\n  interval: 24h\nl0-retention: 1h\n\
         dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n",
        db.display()
    );
    let r = start_replicator(&yaml, &db).await.unwrap();
    let conn = wal_db(&db);
    for seq in 1..=4u64 {
        insert(&conn, 2, 500);
        r.handle().notify_commit(CommitNotice { seq });
        r.sync_and_wait().await.unwrap();
    }
    r.shutdown().await.unwrap();
    // Remove the snapshot so the chain of L0 files is the only way.
    let _ = std::fs::remove_dir_all(replica.join("ltx/9"));
    let _ = std::fs::remove_dir_all(replica.join("ltx/1"));
    let l0 = replica.join("ltx/0");
    let mut names: Vec<_> = std::fs::read_dir(&l0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    // A flipped payload byte (in the LZ4 data: a decode or checksum error, depending on the
    // byte) fails both, naming the file in ours, and leaves no output.
    let victim = names[names.len() - 1].clone();
    let original = std::fs::read(&victim).unwrap();
    let mut bad = original.clone();
    bad[110] ^= 0xff;
    std::fs::write(&victim, &bad).unwrap();
    let o = ours(&rep, &dir.join("o.db"), RestoreTarget::Latest)
        .await
        .unwrap_err();
    let t = theirs(&ls, &rep, &dir.join("t.db"), &[]).unwrap_err();
    assert!(t.contains("decompress") || t.contains("checksum"), "{t}");
    let victim_name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(o.contains(&victim_name), "{o}");
    assert!(
        !dir.join("o.db").exists(),
        "a failed restore leaves no output"
    );
    assert!(!dir.join("o.db.tmp").exists(), "nor a temp file");
    // A byte of the page index: the file checksum no longer matches.
    let mut bad = original.clone();
    let n = bad.len();
    bad[n - 26] ^= 0x01;
    std::fs::write(&victim, &bad).unwrap();
    let o = ours(&rep, &dir.join("o.db"), RestoreTarget::Latest)
        .await
        .unwrap_err();
    let t = theirs(&ls, &rep, &dir.join("t.db"), &[]).unwrap_err();
    assert!(!t.is_empty() && o.contains(&victim_name), "{o} / {t}");
    std::fs::write(&victim, &original).unwrap();
    // A missing file in the middle: non-contiguous.
    std::fs::remove_file(&names[1]).unwrap();
    let o = ours(&rep, &dir.join("o.db"), RestoreTarget::Latest)
        .await
        .unwrap_err();
    let t = theirs(&ls, &rep, &dir.join("t.db"), &[]).unwrap_err();
    assert!(t.contains("non-contiguous"), "{t}");
    assert!(o.contains("non-contiguous"), "{o}");
}
