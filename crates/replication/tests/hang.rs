//! Hangs are failures: a replica whose operations never finish (a file replica on a dead NFS
//! mount, whose reads and writes block a thread forever) makes replication fatal within the
//! retry window, exactly as a replica that answers with errors does (one that hangs while
//! idle at the next write: idle costs no request), and shutdown still finishes. The hang is injected by a wrapper around the real file client
//! ([`common::faulty`], installed through `ReplicatorOptions::wrap_client`); everything else
//! is real.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faulty::{Fault, Switch};
use common::*;
use replication::{CommitNotice, Replicator};

async fn start_on_a_mount(
    switch: &Arc<Switch>,
    window: Duration,
) -> (tempfile::TempDir, std::path::PathBuf, Replicator) {
    start_on_a_mount_with(switch, window, None).await
}

/// [`start_on_a_mount`], the replicator's metrics in `registry`.
async fn start_on_a_mount_with(
    switch: &Arc<Switch>,
    window: Duration,
    registry: Option<prometheus::Registry>,
) -> (tempfile::TempDir, std::path::PathBuf, Replicator) {
    let (t, dir) = tempdir();
    let db = dir.join("app.db");
    let yaml = fast_config(&db, &file_url(&dir.join("replica")), "");
    let mut options = replicator_options(&yaml, &db);
    options.retry_window = window;
    options.probe_interval = Duration::from_millis(200);
    options.network.operation_timeout = Duration::from_secs(1);
    options.wrap_client = Some(switch.wrapper());
    options.registry = registry;
    let r = Replicator::start(options).await.unwrap();
    r.sync_and_wait().await.unwrap();
    (t, db, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replica_whose_writes_block_is_fatal_within_the_window() {
    init_logging();
    let switch = Arc::new(Switch::default());
    let _guard = switch.guard();
    let window = Duration::from_secs(3);
    let (_t, db, r) = start_on_a_mount(&switch, window).await;

    // The mount dies; a commit has to be uploaded.
    switch.set(Fault::Block);
    let hung = Instant::now();
    insert(&wal_db(&db), 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let fatal = tokio::time::timeout(window + Duration::from_secs(15), r.failed())
        .await
        .expect("a hung replica never made replication fail");
    let took = hung.elapsed();
    // Counted from the start of the operation that hung, not from its deadline.
    assert!(took >= window, "fatal after {took:?}, before the window");
    assert!(
        took < window + Duration::from_secs(5),
        "fatal only after {took:?} (window {window:?})"
    );
    assert!(
        fatal.last_error.contains("no progress"),
        "the cause is the hang: {fatal}"
    );
    // Writes wait in vain: waiters see the failure.
    assert!(r.handle().wait_commit_replicated(1).await.is_err());
    // Shutdown does not wait for the hung threads.
    let stopped = tokio::time::timeout(Duration::from_secs(15), r.shutdown())
        .await
        .expect("shutdown hung on the dead mount");
    assert!(stopped.is_err(), "shutdown reports the failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_hangs_while_idle_is_noticed_at_the_next_write() {
    init_logging();
    let switch = Arc::new(Switch::default());
    let _guard = switch.guard();
    let window = Duration::from_secs(2);
    let registry = prometheus::Registry::new();
    let (_t, db, r) = start_on_a_mount_with(&switch, window, Some(registry.clone())).await;
    // The jobs catch up with the first write (the longest interval is 4 s), then idle.
    wait_quiet(
        &registry,
        Duration::from_millis(4500),
        Duration::from_secs(60),
    )
    .await;
    switch.set(Fault::Block);
    // Idle costs nothing, not even a probe: no operation starts, so none hangs.
    tokio::time::sleep(window * 2).await;
    assert!(r.handle().status().healthy, "{:?}", r.handle().status());
    // The next write's upload hangs, and that is fatal within the window.
    let hung = Instant::now();
    insert(&wal_db(&db), 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let fatal = tokio::time::timeout(window + Duration::from_secs(15), r.failed())
        .await
        .expect("a hung replica was never noticed after a write");
    assert!(
        hung.elapsed() < window + Duration::from_secs(5),
        "{:?}",
        hung.elapsed()
    );
    assert!(fatal.last_error.contains("no progress"), "{fatal}");
    let _ = tokio::time::timeout(Duration::from_secs(15), r.shutdown())
        .await
        .expect("shutdown hung on the dead mount");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_task_that_panics_is_fatal_not_silent() {
    // A bug that panics inside an upload must not end uploads without a word (the server
    // would keep acknowledging writes that never reach the replica): it is fatal.
    init_logging();
    let switch = Arc::new(Switch::default());
    let _guard = switch.guard();
    let (_t, db, r) = start_on_a_mount(&switch, Duration::from_secs(60)).await;
    switch.set(Fault::PanicOnWrite);
    insert(&wal_db(&db), 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let fatal = tokio::time::timeout(Duration::from_secs(20), r.failed())
        .await
        .expect("a panicked upload task went unnoticed");
    assert!(fatal.last_error.contains("panicked"), "{fatal}");
    assert!(
        fatal
            .last_error
            .contains("injected panic in a replica write"),
        "{fatal}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(15), r.shutdown())
        .await
        .expect("shutdown hung");
}
