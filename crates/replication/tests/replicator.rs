//! The replicator end to end on a database written by rusqlite: commits reach the replica
//! (file, S3 and Azure) quickly, compaction/snapshots/retention run on their schedules, restores by
//! us and by the real Litestream are byte-identical, and shutdown leaves nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use replication::Level;
use replication::ListOptions;
use replication::restore::IntegrityCheck;
use replication::restore::RestoreTarget;
use replication::{CommitNotice, Replicator, StartAction};
use testkit::litestream::Litestream;

async fn start(config_yaml: &str, db: &Path) -> Result<Replicator, replication::StartError> {
    let mut opts = replicator_options(config_yaml, db);
    opts.registry = Some(prometheus::Registry::new());
    Replicator::start(opts).await
}

async fn replicate_and_compare(test: &str, replica: &Replica, ls: &Litestream, dir: &Path) {
    init_logging();
    let db = dir.join("app.db");
    let yaml = fast_config_to(&db, &replica.entry, "");
    let r = start(&yaml, &db).await.unwrap();
    assert_eq!(r.handle().start_action(), StartAction::NewDatabase);
    let h = r.handle();
    let writer = {
        let db = db.clone();
        let h = h.clone();
        tokio::task::spawn_blocking(move || {
            let conn = wal_db(&db);
            conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
            let mut lags = Vec::new();
            for seq in 1..=60u64 {
                insert(&conn, 1 + (seq as i64 % 7), 300);
                h.notify_commit(CommitNotice { seq });
                if seq % 10 == 0 {
                    let t = Instant::now();
                    futures::executor::block_on(h.wait_commit_replicated(seq)).unwrap();
                    lags.push(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(60));
            }
            lags
        })
    };
    let lags = writer.await.unwrap();
    assert!(
        lags.iter().all(|l| *l < Duration::from_secs(2)),
        "{test}: slow replication {lags:?}"
    );
    let p = r.sync_and_wait().await.unwrap();
    assert!(p.replicated_txid >= p.local_txid);
    assert_eq!(h.lag(), Duration::ZERO);
    assert!(h.status().healthy, "{:?}", h.status());
    r.shutdown().await.unwrap();

    // Levels 1, 2 and 9 were written on their schedules.
    let client = replica.client().await;
    let levels = client.levels().await.unwrap();
    for l in [0, 1, 2, 9] {
        assert!(
            levels.contains(&Level::new(l).unwrap()),
            "{test}: level {l} missing: {levels:?}"
        );
    }
    let l0 = client
        .list(Level::L0, ListOptions::default())
        .await
        .unwrap();
    assert!(!l0.is_empty());

    let ours = dir.join("ours.db");
    let theirs = dir.join("theirs.db");
    restore_ours(&client, RestoreTarget::Latest, &ours, IntegrityCheck::Full)
        .await
        .unwrap();
    restore_from(ls, replica.source(), &theirs, &["-integrity-check", "full"]);
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap(),
        "{test}"
    );
    assert_eq!(rows(&ours), rows(&db), "{test}");
}

/// Replicates to `backend` and compares both tools' restores with the database.
async fn end_to_end(test: &str, backend: Backend) {
    if let Some((ls, _t, dir, replica)) =
        litestream_and_replica(test, backend, "repl-e2e", "app.db")
    {
        replicate_and_compare(test, &replica, &ls, &dir).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_replica_end_to_end() {
    end_to_end("file_replica_end_to_end", Backend::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_replica_end_to_end() {
    end_to_end("s3_replica_end_to_end", Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abs_replica_end_to_end() {
    end_to_end("abs_replica_end_to_end", Backend::Abs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_database_is_streamed_to_the_replica() {
    let test = "a_large_database_is_streamed_to_the_replica";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    let Some(url) = testkit::s3_replica_url(test, "repl-large", "big") else {
        return;
    };
    let (_t, dir) = tempdir();
    let db = dir.join("big.db");
    {
        let conn = wal_db(&db);
        // ~24 MB of incompressible rows: the first L0 file (and the snapshot) exceed the
        // in-memory upload limit and the 5 MiB multipart part size.
        insert(&conn, 6000, 4000);
    }
    let r = start(&fast_config(&db, &url, ""), &db).await.unwrap();
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    let client = open_url(&url).await;
    let l0 = client
        .list(Level::L0, ListOptions::default())
        .await
        .unwrap();
    assert!(l0.iter().any(|f| f.size > 20 << 20), "{l0:?}");
    let theirs = dir.join("theirs.db");
    restore(&ls, &url, &theirs, &[]);
    assert_eq!(rows(&theirs), rows(&db));
}
