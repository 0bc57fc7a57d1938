//! Idle costs nothing: a replicator over a database nobody writes makes no request to the
//! object store (no probe, no compaction, snapshot, retention or validation listing) over
//! many of their intervals, counted twice: by the replica operation metrics (the bill meter)
//! and by the connections a fault proxy in front of the real S3 server (moto) accepts. A
//! write afterwards still reaches the replica and wakes the maintenance again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ltx::TxId;
use replication::restore::{IntegrityCheck, RestoreTarget};
use replication::{CommitNotice, Level, ListOptions, ReplicaClient, Replicator};
use testkit::proxy::FaultProxy;

/// Every maintenance job on a short schedule (the longest is 2 s).
fn config(db: &std::path::Path, url: &str) -> String {
    format!(
        "levels:\n  - interval: 1s\n  - interval: 2s\nsnapshot:\n  interval: 2s\n  retention: 1s\n\
         l0-retention: 1s\nl0-retention-check-interval: 500ms\nvalidation:\n  interval: 1s\n\
         dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {url}\n",
        db.display()
    )
}

async fn newest(client: &Arc<dyn ReplicaClient>, level: u8) -> TxId {
    client
        .list(Level::new(level).unwrap(), ListOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|f| f.name.max)
        .max()
        .unwrap_or(TxId::ZERO)
}

/// Waits (up to 60 s) until the replica's L1, L2 and snapshot levels hold `txid` and L0
/// holds one file: the maintenance has caught up with the last write.
async fn wait_maintained(client: &Arc<dyn ReplicaClient>, txid: TxId) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l0 = client
            .list(Level::L0, ListOptions::default())
            .await
            .unwrap()
            .len();
        let (l1, l2, snap) = (
            newest(client, 1).await,
            newest(client, 2).await,
            newest(client, 9).await,
        );
        if l1 >= txid && l2 >= txid && snap >= txid && l0 == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "maintenance did not catch up with {txid}: L0 files {l0}, L1 {l1}, L2 {l2}, snapshot {snap}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replicator_makes_no_request_and_wakes_up_on_a_write() {
    init_logging();
    let test = "an_idle_replicator_makes_no_request_and_wakes_up_on_a_write";
    let Some(s3) = testkit::require_s3(test) else {
        return;
    };
    let bucket = s3.create_bucket("idle");
    let proxy = FaultProxy::start(s3.host_port()).unwrap();
    let via_proxy = format!(
        "s3://{bucket}/db?endpoint={}&region={}",
        proxy.host_port(),
        s3.region
    );
    // The test's own listings go straight to the server, past the proxy and the metrics.
    let direct = open_url(&s3.replica_url(&bucket, "db")).await;

    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let conn = wal_db(&db);
    insert(&conn, 20, 100);
    let registry = prometheus::Registry::new();
    let mut options = replicator_options(&config(&db, &via_proxy), &db);
    options.registry = Some(registry.clone());
    options.probe_interval = Duration::from_millis(200);
    let r = Replicator::start(options).await.unwrap();
    let first = r.sync_and_wait().await.unwrap().replicated_txid;
    wait_maintained(&direct, first).await;

    // The last runs of the jobs that saw the write may still be under way: wait until the
    // counter holds still for a little longer than the longest interval (bounded).
    wait_quiet(
        &registry,
        Duration::from_millis(2500),
        Duration::from_secs(30),
    )
    .await;

    // Idle for 8 s: 40 probe intervals, 8 L1 compactions, 4 L2 compactions and snapshots,
    // 16 L0 retention checks, 8 validations. Every open connection is closed first, so any
    // request would have to open a new one through the proxy.
    proxy.close_all();
    let (before, accepted) = (replica_requests(&registry), proxy.accepted());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let positions = r.handle().positions();
    assert_eq!(
        (replica_requests(&registry), proxy.accepted()),
        (before, accepted),
        "requests made while idle (positions {positions:?})"
    );
    assert_eq!(positions.local_txid, first, "nothing was written");
    assert!(r.handle().status().healthy, "{:?}", r.handle().status());

    // A write still reaches the replica, and the maintenance runs again for it.
    insert(&conn, 5, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let p = tokio::time::timeout(
        Duration::from_secs(30),
        r.handle().wait_commit_replicated(1),
    )
    .await
    .expect("the write did not reach the replica")
    .unwrap();
    assert!(p.replicated_txid > first, "{p:?}");
    assert!(replica_requests(&registry) > before);
    wait_maintained(&direct, p.replicated_txid).await;
    r.shutdown().await.unwrap();

    let out = dir.join("restored.db");
    restore_ours(&direct, RestoreTarget::Latest, &out, IntegrityCheck::Full)
        .await
        .unwrap();
    let n: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 25);
}
