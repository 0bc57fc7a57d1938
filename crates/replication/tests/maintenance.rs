//! Compaction and retention on a real replica: L0 retention deletes only files
//! already compacted into L1 and old enough, never the newest L0 file, locally too;
//! `retention.enabled: false` keeps every remote file; snapshot retention never deletes the
//! newest snapshot and trims the compaction levels below the prior snapshot's TXID.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use replication::Level;
use replication::{CommitNotice, Replicator};
use replication::{ListOptions, ReplicaClient};

/// Schedules far away (jobs run only when the test asks), short retentions.
fn config(db: &Path, url: &str, top: &str) -> String {
    format!(
        "levels:\n  - interval: 1h\n  - interval: 2h\nsnapshot:\n  interval: 24h\n  retention: 1s\n\
         l0-retention: 1s\nl0-retention-check-interval: 1h\n{top}\
         dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n",
        db.display()
    )
}

/// A replicator (config [`config`] with `top`) on a new database `<dir>/app.db` with a
/// file replica at `url`, and a client of that replica.
async fn setup(
    top: &str,
) -> (
    tempfile::TempDir,
    PathBuf,
    PathBuf,
    String,
    Replicator,
    Arc<dyn ReplicaClient>,
) {
    let (t, dir) = tempdir();
    let db = dir.join("app.db");
    let url = file_url(&dir.join("replica"));
    let r = start_replicator(&config(&db, &url, top), &db)
        .await
        .unwrap();
    let client = open_url(&url).await;
    (t, dir, db, url, r, client)
}

async fn names(c: &dyn ReplicaClient, level: u8) -> Vec<(u64, u64)> {
    c.list(Level::new(level).unwrap(), ListOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|f| (f.name.min.get(), f.name.max.get()))
        .collect()
}

async fn commits(r: &Replicator, db: &Path, n: u64) {
    let conn = wal_db(db);
    for seq in 1..=n {
        insert(&conn, 1, 100);
        r.handle().notify_commit(CommitNotice { seq });
        r.sync_and_wait().await.unwrap();
    }
}

fn local_l0(db: &Path) -> Vec<String> {
    let dir = db.with_file_name(".app.db-litestream/ltx/0");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l0_retention_deletes_compacted_old_files_but_never_the_newest() {
    for retention_enabled in [true, false] {
        let top = if retention_enabled {
            ""
        } else {
            "retention:\n  enabled: false\n"
        };
        let (_t, _, db, _, r, client) = setup(top).await;
        commits(&r, &db, 3).await;
        // L1 covers everything so far; then two more files that are not compacted.
        let l1 = r
            .compact_now(Level::new(1).unwrap())
            .await
            .unwrap()
            .unwrap();
        commits(&r, &db, 2).await;
        let l0_before = names(client.as_ref(), 0).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        r.retention_now().await.unwrap();
        let l0_after = names(client.as_ref(), 0).await;
        let local = local_l0(&db);
        let max_l1 = l1.name.max.get();
        if retention_enabled {
            // Only compacted files went; the uncompacted ones stay.
            assert!(
                l0_after.iter().all(|&(_, max)| max > max_l1),
                "{l0_after:?}"
            );
            assert!(l0_after.len() >= 2, "{l0_after:?}");
        } else {
            assert_eq!(
                l0_after, l0_before,
                "retention disabled: nothing deleted remotely"
            );
        }
        // Local copies of compacted files are cleaned up either way.
        assert!(
            local
                .iter()
                .all(|n| n.parse::<ltx::FileName>().unwrap().max.get() > max_l1),
            "{local:?}"
        );
        r.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_l0_file_survives_even_when_everything_is_compacted() {
    let (_t, dir, db, url, r, client) = setup("").await;
    commits(&r, &db, 3).await;
    r.compact_now(Level::new(1).unwrap())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.retention_now().await.unwrap();
    let l0 = names(client.as_ref(), 0).await;
    let newest = r.handle().positions().replicated_txid.get();
    assert_eq!(
        l0,
        vec![(newest, newest)],
        "only the newest L0 file is left"
    );
    assert_eq!(local_l0(&db).len(), 1);
    r.shutdown().await.unwrap();
    // Litestream can still take over: it needs that newest L0 file.
    if let Some(ls) = testkit::litestream::Litestream::require("newest_l0") {
        let out = dir.join("out.db");
        restore(&ls, &url, &out, &[]);
        assert_eq!(rows(&out), rows(&db));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_retention_keeps_the_newest_snapshot_and_trims_levels_below_the_floor() {
    let (_t, dir, db, url, r, client) = setup("").await;
    let l1 = Level::new(1).unwrap();
    commits(&r, &db, 2).await;
    r.compact_now(l1).await.unwrap().unwrap();
    let s1 = r.snapshot_now().await.unwrap();
    commits(&r, &db, 2).await;
    r.compact_now(l1).await.unwrap().unwrap();
    let s2 = r.snapshot_now().await.unwrap();
    commits(&r, &db, 2).await;
    r.compact_now(l1).await.unwrap().unwrap();
    let s3 = r.snapshot_now().await.unwrap();
    assert!(s1.name.max < s2.name.max && s2.name.max < s3.name.max);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.retention_now().await.unwrap();
    let snaps = names(client.as_ref(), 9).await;
    // Every snapshot is older than the retention; the newest stays.
    assert_eq!(snaps, vec![(1, s3.name.max.get())], "{snaps:?}");
    // L1 files below the floor (the MaxTXID of the snapshot before the first retained one,
    // s2) are gone; the newest L1 file always stays.
    let l1_files = names(client.as_ref(), 1).await;
    assert!(
        l1_files.iter().all(|&(_, max)| max >= s2.name.max.get()),
        "{l1_files:?}"
    );
    assert!(!l1_files.is_empty());
    r.shutdown().await.unwrap();
    if let Some(ls) = testkit::litestream::Litestream::require("snapshot_retention") {
        let out = dir.join("out.db");
        restore(&ls, &url, &out, &[]);
        assert_eq!(rows(&out), rows(&db));
    }
}

/// Another writer's level-0 file on the replica, after what this replicator started from:
/// bytes that are not ours, under `name`.
async fn foreign_l0(client: &dyn ReplicaClient, min: u64, max: u64) -> ltx::FileName {
    let name = ltx::FileName::new(ltx::TxId(min), ltx::TxId(max));
    client
        .write_bytes(
            Level::L0,
            name,
            bytes::Bytes::from_static(b"another primary's level-0 file"),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    name
}

/// Replication failed for good within a bounded time, saying another primary writes.
async fn fails_with_another_writer(r: &Replicator) -> String {
    let fatal = tokio::time::timeout(Duration::from_secs(60), r.failed())
        .await
        .expect("replication did not stop after another writer's file appeared");
    let message = fatal.to_string();
    assert!(
        message.contains("another primary is writing to the replica")
            && message.contains("sqlite-rest restore --force"),
        "{message}"
    );
    message
}

/// Two primaries whose files never share a name (their batches merge different TXID ranges):
/// compaction into level 1, which lists level 0 after level 1's end anyway, finds a file ending
/// after this replicator's start that it did not write, and replication stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_refuses_a_level0_file_another_primary_wrote() {
    let (_t, _, db, _, r, client) = setup("").await;
    commits(&r, &db, 2).await;
    let at = r.handle().positions().replicated_txid.get();
    let name = foreign_l0(client.as_ref(), at + 1, at + 3).await;
    commits(&r, &db, 1).await;
    let result = r.compact_now(Level::new(1).unwrap()).await;
    assert!(
        result.is_err(),
        "compacted another writer's file: {result:?}"
    );
    let message = fails_with_another_writer(&r).await;
    assert!(message.contains(&name.to_string()), "{message}");
    // Nothing of the other writer's went into level 1.
    assert!(names(client.as_ref(), 1).await.is_empty());
}

/// Two primaries writing the same level-0 name: the upload is a conditional create, so the
/// file already there is never replaced, and replication stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_never_replaces_another_primarys_level0_file() {
    let (_t, _, db, _, r, client) = setup("").await;
    commits(&r, &db, 1).await;
    let at = r.handle().positions().replicated_txid.get();
    let name = foreign_l0(client.as_ref(), at + 1, at + 1).await;
    let conn = wal_db(&db);
    insert(&conn, 1, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let message = fails_with_another_writer(&r).await;
    assert!(message.contains(&name.to_string()), "{message}");
    let there = client
        .read(Level::L0, name, replication::ReadRange::Full)
        .await
        .unwrap();
    assert_eq!(&there[..], b"another primary's level-0 file");
}

/// Without compaction levels (`levels: []`) no compaction ever lists level 0, so nothing ever
/// asks whether a level-0 file is ours: the uploads are not remembered either (a server that
/// uploads for months would otherwise keep one name per upload), while compaction into level 1
/// forgets the names it has covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_remembered_only_until_level_one_covers_them() {
    let (t, dir) = tempdir();
    let db = dir.join("app.db");
    let url = file_url(&dir.join("replica"));
    let yaml = format!(
        "levels: []\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n",
        db.display()
    );
    let r = start_replicator(&yaml, &db).await.unwrap();
    commits(&r, &db, 5).await;
    assert!(r.handle().positions().replicated_txid.get() >= 5);
    assert_eq!(
        r.tracked_uploads(),
        0,
        "no compaction level: nothing to remember"
    );
    // A compaction run on demand has nothing to compare with, so it does not judge.
    r.compact_now(Level::new(1).unwrap())
        .await
        .unwrap()
        .unwrap();
    r.shutdown().await.unwrap();
    drop(t);

    let (_t, _, db, _, r, _) = setup("").await;
    commits(&r, &db, 3).await;
    assert!(r.tracked_uploads() >= 1);
    r.compact_now(Level::new(1).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.tracked_uploads(), 0, "level 1 covers every upload");
    r.shutdown().await.unwrap();
}
