//! Syncs at every commit with uploads decoupled and merged: a burst of commits during a
//! stalled upload reaches the replica as one merged L0 object (one PUT) that the real
//! Litestream restores; a restart at a merged tip continues; compaction and L0 retention
//! work over merged files; `wait_commit_synced` names the exact L0 file of a commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::faulty::{Fault, Switch};
use common::*;
use replication::restore::{IntegrityCheck, RestoreTarget};
use replication::{
    CommitNotice, Level, ListOptions, LtxFileInfo, ReplicaClient, Replicator, StartAction,
};

/// Maintenance that stays out of the way after start-up (so every PUT after it is an
/// upload), no `sync-interval` (no floor between uploads), and no polling for other
/// processes' writes: every sync is started by a commit notice.
fn quiet_config(db: &Path, replica_entry: &str) -> String {
    format!(
        "levels:\n  - interval: 1h\nsnapshot:\n  interval: 24h\n  retention: 24h\n\
         shutdown-sync-timeout: 10s\n\
         dbs:\n  - path: {}\n    monitor-interval: 1h\n    replica:\n{replica_entry}",
        db.display()
    )
}

async fn start_with(
    yaml: &str,
    db: &Path,
    switch: &Arc<Switch>,
    metrics: &replication::ReplicaMetrics,
) -> Replicator {
    let mut o = replicator_options(yaml, db);
    o.wrap_client = Some(switch.wrapper());
    o.replica_metrics = Some(metrics.clone());
    Replicator::start(o).await.unwrap()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_files(client: &Arc<dyn ReplicaClient>) -> Vec<LtxFileInfo> {
    let mut all = Vec::new();
    for level in Level::all() {
        all.extend(client.list(level, ListOptions::default()).await.unwrap());
    }
    all
}

async fn l0(client: &Arc<dyn ReplicaClient>) -> Vec<LtxFileInfo> {
    let mut files = client
        .list(Level::L0, ListOptions::default())
        .await
        .unwrap();
    files.sort_by_key(|f| f.name);
    files
}

/// Restores the replica with our restore and the real Litestream's: byte-identical,
/// integrity-checked, and holding the rows of `db`.
async fn assert_restores(
    ls: &testkit::litestream::Litestream,
    replica: &Replica,
    dir: &Path,
    db: &Path,
    tag: &str,
) {
    let client = replica.client().await;
    let ours = dir.join(format!("ours-{tag}.db"));
    let theirs = dir.join(format!("theirs-{tag}.db"));
    restore_ours(&client, RestoreTarget::Latest, &ours, IntegrityCheck::Full)
        .await
        .unwrap();
    restore_from(ls, replica.source(), &theirs, &["-integrity-check", "full"]);
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap(),
        "{tag}: our restore and Litestream's differ"
    );
    assert_eq!(rows(&theirs), rows(db), "{tag}: rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_during_a_stalled_upload_is_one_put_that_litestream_restores_and_a_restart_continues()
 {
    let test = "a_burst_during_a_stalled_upload_is_one_put_that_litestream_restores_and_a_restart_continues";
    init_logging();
    let Some((ls, _t, dir, replica)) =
        litestream_and_replica(test, Backend::S3, "merged-burst", "app.db")
    else {
        return;
    };
    let db = dir.join("app.db");
    let yaml = quiet_config(&db, &replica.entry);
    let switch = Arc::new(Switch::default());
    let _guard = switch.guard();
    let metrics = replication::ReplicaMetrics::unregistered().unwrap();
    let r = start_with(&yaml, &db, &switch, &metrics).await;
    let h = r.handle();
    let client = replica.client().await;
    let conn = wal_db(&db);
    // About 1 MB, so that a full L0 file is easy to tell from an incremental one.
    insert(&conn, 1000, 1000);
    h.notify_commit(CommitNotice { seq: 1 });
    h.wait_commit_replicated(1).await.unwrap();

    // Stall L0 uploads; the next commit's upload hangs in flight.
    switch.set(Fault::BlockL0Writes);
    insert(&conn, 1, 100);
    h.notify_commit(CommitNotice { seq: 2 });
    let stalled = h.wait_commit_synced(2).await.unwrap();
    wait_until("the stalled upload", async || switch.blocked() == 1).await;
    let before = all_files(&client).await;
    let puts_before = metrics.total("s3", "PUT");

    // A burst of commits: each one reaches a local L0 file while the upload is stalled
    // (syncs never wait for uploads).
    let mut synced = Vec::new();
    for seq in 3..=40u64 {
        insert(&conn, 1, 100);
        h.notify_commit(CommitNotice { seq });
        let txid = tokio::time::timeout(Duration::from_secs(60), h.wait_commit_synced(seq))
            .await
            .unwrap_or_else(|_| panic!("commit {seq} not synced while the upload is stalled"))
            .unwrap();
        synced.push(txid);
    }
    let last = *synced.last().unwrap();
    assert!(
        last.get() >= stalled.get() + 5,
        "the burst made too few syncs to test merging: {synced:?}"
    );
    assert_eq!(
        h.positions().replicated_seq,
        1,
        "nothing got past the stall"
    );

    switch.set(Fault::None);
    let p = h.wait_commit_replicated(40).await.unwrap();
    assert!(p.replicated_txid >= last, "{p:?}");
    let after = all_files(&client).await;
    let new: Vec<LtxFileInfo> = after
        .iter()
        .filter(|f| {
            !before
                .iter()
                .any(|b| b.level == f.level && b.name == f.name)
        })
        .copied()
        .collect();
    let new_l0: Vec<_> = new.iter().filter(|f| f.level == Level::L0).collect();
    // The stalled file, then everything synced during the stall as one object.
    assert_eq!(new_l0.len(), 2, "new L0 objects: {new_l0:?}");
    assert_eq!(new_l0[0].name.max, stalled);
    assert_eq!(new_l0[1].name.min.get(), stalled.get() + 1);
    assert!(new_l0[1].name.max >= last, "{new_l0:?}");
    // One PUT per new object (maintenance wrote none meanwhile, or it is counted here).
    assert_eq!(
        metrics.total("s3", "PUT") - puts_before,
        new.len() as u64,
        "PUTs vs new objects {new:?}"
    );
    assert!(h.status().healthy, "{:?}", h.status());
    r.shutdown().await.unwrap();
    let tip = *l0(&client).await.last().unwrap();
    assert!(tip.name.min < tip.name.max, "the tip is merged: {tip:?}");
    assert_restores(&ls, &replica, &dir, &db, "burst").await;

    // A restart with the merged file at the replica's tip continues from it.
    let switch = Arc::new(Switch::default());
    let r = start_with(&yaml, &db, &switch, &metrics).await;
    assert_eq!(
        r.handle().start_action(),
        StartAction::Continued {
            local: tip.name.max,
            replica: tip.name.max
        }
    );
    insert(&conn, 3, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    let p = r.handle().wait_commit_replicated(1).await.unwrap();
    let files = l0(&client).await;
    let next = *files.iter().find(|f| f.name.min > tip.name.max).unwrap();
    assert_eq!(next.name.min.get(), tip.name.max.get() + 1, "{files:?}");
    assert!(p.replicated_txid >= next.name.max);
    // Not a full file: only the pages of the new commit (the table has hundreds).
    assert!(
        next.size < 256 * 1024,
        "the restart wrote a full L0 file: {next:?}"
    );
    // Another stalled burst, so the replica's tip is a merged file again.
    let stalled = stalled_burst(&r, &switch, &conn, 2..=8).await;
    r.shutdown().await.unwrap();
    assert_restores(&ls, &replica, &dir, &db, "restart").await;
    let tip = *l0(&client).await.last().unwrap();
    assert_eq!(
        tip.name.min.get(),
        stalled.get() + 1,
        "the tip is merged: {tip:?}"
    );
    assert!(tip.name.min < tip.name.max, "the tip is merged: {tip:?}");

    // Without the local database: restored, and the merged tip adopted as the position.
    drop(conn);
    for p in [
        db.clone(),
        dir.join("app.db-wal"),
        dir.join("app.db-shm"),
        dir.join(".app.db-litestream"),
    ] {
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else if p.exists() {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let r = start_with(&yaml, &db, &switch, &metrics).await;
    assert_eq!(
        r.handle().start_action(),
        StartAction::Restored { txid: tip.name.max }
    );
    let conn = wal_db(&db);
    insert(&conn, 2, 100);
    r.handle().notify_commit(CommitNotice { seq: 1 });
    r.handle().wait_commit_replicated(1).await.unwrap();
    r.shutdown().await.unwrap();
    let files = l0(&client).await;
    let next = files.iter().find(|f| f.name.min > tip.name.max).unwrap();
    assert_eq!(next.name.min.get(), tip.name.max.get() + 1, "{files:?}");
    assert!(
        next.size < 256 * 1024,
        "no adoption, a full L0 file: {next:?}"
    );
    assert_restores(&ls, &replica, &dir, &db, "adopted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_that_landed_is_retried_as_the_same_object() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let yaml = quiet_config(&db, &url_entry(&file_url(&dir.join("replica"))));
    let switch = Arc::new(Switch::default());
    let _guard = switch.guard();
    let metrics = replication::ReplicaMetrics::unregistered().unwrap();
    let r = start_with(&yaml, &db, &switch, &metrics).await;
    let h = r.handle();
    let client = open_url(&file_url(&dir.join("replica"))).await;
    let conn = wal_db(&db);
    insert(&conn, 1, 100);
    h.notify_commit(CommitNotice { seq: 1 });
    h.wait_commit_replicated(1).await.unwrap();
    let before = l0(&client).await.len();
    // The next upload lands but reports a failure; more commits are synced before the retry.
    switch.set(Fault::FailL0WritesAfterLanding);
    insert(&conn, 1, 100);
    h.notify_commit(CommitNotice { seq: 2 });
    h.wait_commit_synced(2).await.unwrap();
    wait_until("the landed upload", async || {
        l0(&client).await.len() > before
    })
    .await;
    for seq in 3..=8 {
        insert(&conn, 1, 100);
        h.notify_commit(CommitNotice { seq });
        h.wait_commit_synced(seq).await.unwrap();
    }
    switch.set(Fault::None);
    h.wait_commit_replicated(8).await.unwrap();
    r.shutdown().await.unwrap();
    let files = l0(&client).await;
    assert!(
        files
            .windows(2)
            .all(|w| w[1].name.min.get() == w[0].name.max.get() + 1),
        "L0 objects overlap or leave a gap: {files:?}"
    );
}

/// Commits `seqs` (one row each) while L0 uploads are stalled, the first one's upload in
/// flight, then lets the uploads go and waits until the replica holds them all; returns the
/// TXID of the first (stalled) commit's file.
async fn stalled_burst(
    r: &Replicator,
    switch: &Arc<Switch>,
    conn: &rusqlite::Connection,
    seqs: std::ops::RangeInclusive<u64>,
) -> ltx::TxId {
    let h = r.handle();
    switch.set(Fault::BlockL0Writes);
    let mut stalled = None;
    for seq in seqs.clone() {
        insert(conn, 1, 100);
        h.notify_commit(CommitNotice { seq });
        let txid = h.wait_commit_synced(seq).await.unwrap();
        if stalled.is_none() {
            stalled = Some(txid);
            wait_until("the stalled upload", async || switch.blocked() == 1).await;
        }
    }
    switch.set(Fault::None);
    h.wait_commit_replicated(*seqs.end()).await.unwrap();
    stalled.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_l0_retention_work_over_merged_l0_files() {
    let test = "compaction_and_l0_retention_work_over_merged_l0_files";
    init_logging();
    let Some((ls, _t, dir, replica)) =
        litestream_and_replica(test, Backend::File, "merged-maint", "app.db")
    else {
        return;
    };
    let db = dir.join("app.db");
    // Levels 1s/3s, L0 retention 2s (see `fast_config`).
    let yaml = fast_config_to(&db, &replica.entry, "");
    let switch = Arc::new(Switch::default());
    let _guard = switch.guard();
    let metrics = replication::ReplicaMetrics::unregistered().unwrap();
    let r = start_with(&yaml, &db, &switch, &metrics).await;
    let h = r.handle();
    let client = replica.client().await;
    let conn = wal_db(&db);
    let mut seq = 0;
    let mut merged = Vec::new();
    for round in 0..3 {
        insert(&conn, 2, 200);
        seq += 1;
        h.notify_commit(CommitNotice { seq });
        h.wait_commit_replicated(seq).await.unwrap();
        switch.set(Fault::BlockL0Writes);
        insert(&conn, 1, 200);
        seq += 1;
        h.notify_commit(CommitNotice { seq });
        let stalled = h.wait_commit_synced(seq).await.unwrap();
        wait_until("the stalled upload", async || switch.blocked() == 1).await;
        for _ in 0..5 {
            insert(&conn, 1, 200);
            seq += 1;
            h.notify_commit(CommitNotice { seq });
            h.wait_commit_synced(seq).await.unwrap();
        }
        switch.set(Fault::None);
        h.wait_commit_replicated(seq).await.unwrap();
        let files = l0(&client).await;
        let batch = files
            .iter()
            .find(|f| f.name.min.get() == stalled.get() + 1)
            .copied()
            .unwrap_or_else(|| panic!("round {round}: no object after {stalled}: {files:?}"));
        assert!(batch.name.min < batch.name.max, "round {round}: {batch:?}");
        merged.push(batch);
    }
    // L1 compacts past every merged file, and L0 retention deletes them (never the newest).
    let newest_merged = merged.last().unwrap().name.max;
    wait_until("L1 past the merged files and L0 retention", async || {
        let l1 = client
            .list(Level::new(1).unwrap(), ListOptions::default())
            .await
            .unwrap();
        let l0 = l0(&client).await;
        l1.iter().any(|f| f.name.max >= newest_merged)
            && !l0
                .iter()
                .any(|f| merged[..2].iter().any(|m| m.name == f.name))
            && !l0.is_empty()
    })
    .await;
    // L1 is contiguous and covers the merged files' TXIDs.
    let mut l1 = client
        .list(Level::new(1).unwrap(), ListOptions::default())
        .await
        .unwrap();
    l1.sort_by_key(|f| f.name);
    assert!(
        l1.windows(2)
            .all(|w| w[1].name.min.get() <= w[0].name.max.get() + 1),
        "L1: {l1:?}"
    );
    // Local L0 files do not pile up: only what L1 has not compacted yet and the newest.
    let local = std::fs::read_dir(dir.join(".app.db-litestream/ltx/0"))
        .unwrap()
        .count();
    assert!(local <= 10, "{local} local L0 files left");
    r.shutdown().await.unwrap();
    assert_restores(&ls, &replica, &dir, &db, "compacted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_commit_synced_names_the_l0_file_that_first_holds_each_commit() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let yaml = quiet_config(&db, &url_entry(&file_url(&dir.join("replica"))));
    let r = start_replicator(&yaml, &db).await.unwrap();
    let h = r.handle();
    // A real writer connection commits rows 1..=N, one per commit, notifying each; waiters
    // run concurrently, some only after many more syncs.
    const N: u64 = 120;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, ltx::TxId)>();
    let writer = {
        let (db, h) = (db.clone(), h.clone());
        tokio::task::spawn_blocking(move || {
            let conn = wal_db(&db);
            conn.execute_batch("CREATE TABLE w(seq INTEGER PRIMARY KEY)")
                .unwrap();
            h.notify_commit(CommitNotice { seq: 1 });
            let mut before = Vec::new();
            for seq in 2..=N {
                if seq % 9 == 0 {
                    // An isolated commit: no sync runs when it lands (syncs start only on
                    // notices here), so the sync that covers it is the one that read it.
                    futures::executor::block_on(h.wait_commit_synced(seq - 1)).unwrap();
                }
                before.push((seq, h.positions().local_txid));
                conn.execute("INSERT INTO w(seq) VALUES (?1)", [seq as i64])
                    .unwrap();
                h.notify_commit(CommitNotice { seq });
                if seq % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
            before
        })
    };
    let mut waiters = Vec::new();
    for seq in 2..=N {
        let (h, tx) = (h.clone(), tx.clone());
        waiters.push(tokio::spawn(async move {
            if seq % 5 == 0 {
                // Looks only once everything is synced.
                let mut p = h.subscribe();
                p.wait_for(|p| p.synced_seq >= N).await.unwrap();
            }
            let txid = h.wait_commit_synced(seq).await.unwrap();
            assert!(txid <= h.positions().local_txid);
            tx.send((seq, txid)).unwrap();
        }));
    }
    let before = writer.await.unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    drop(tx);
    let mut got = std::collections::BTreeMap::new();
    while let Some((seq, txid)) = rx.recv().await {
        got.insert(seq, txid);
    }
    assert_eq!(got.len() as u64, N - 1);
    // Never earlier than a file that existed before the commit; monotonic.
    for (seq, local_before) in &before {
        assert!(
            got[seq] > *local_before,
            "commit {seq}: {:?} <= {local_before:?}",
            got[seq]
        );
    }
    let txids: Vec<ltx::TxId> = got.values().copied().collect();
    assert!(txids.windows(2).all(|w| w[0] <= w[1]), "{txids:?}");
    assert!(
        txids.windows(2).filter(|w| w[0] < w[1]).count() >= 3,
        "too few syncs for the test to mean anything: {txids:?}"
    );

    // Exact: the single-TXID L0 files (local ones are kept until L1 compacts them, which
    // this config does at most at start-up; the replica's for the first ones) restored up
    // to a commit's TXID hold its row, up to the TXID before do not.
    let combo = dir.join("combo");
    std::fs::create_dir_all(combo.join("ltx/0")).unwrap();
    for from in [
        dir.join("replica/ltx/0"),
        dir.join(".app.db-litestream/ltx/0"),
    ] {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let Ok(n) = name.parse::<ltx::FileName>() else {
                continue;
            };
            if n.min == n.max {
                std::fs::copy(e.path(), combo.join("ltx/0").join(&name)).unwrap();
            }
        }
    }
    let local = open_url(&file_url(&combo)).await;
    // (A commit that lands while a sync runs, just before that sync reads the newest notice,
    // is read by that sync but counted by the next one: its TXID is then later than the
    // file that holds it — a safe answer. Isolated commits have no such race.)
    let mut checked = 0;
    for (seq, txid) in got.iter().filter(|(s, _)| *s % 9 == 0 || *s % 9 == 4) {
        let at = dir.join(format!("at-{seq}.db"));
        restore_ours(
            &local,
            RestoreTarget::TxId(*txid),
            &at,
            IntegrityCheck::None,
        )
        .await
        .unwrap_or_else(|e| panic!("restore at {txid}: {e}"));
        assert!(has_row(&at, *seq), "commit {seq} missing at {txid}");
        let prev = ltx::TxId(txid.get() - 1);
        if *seq % 9 == 0 && prev.get() >= 2 {
            let at = dir.join(format!("before-{seq}.db"));
            restore_ours(&local, RestoreTarget::TxId(prev), &at, IntegrityCheck::None)
                .await
                .unwrap_or_else(|e| panic!("restore at {prev}: {e}"));
            assert!(!has_row(&at, *seq), "commit {seq} already at {prev}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked}");
    r.shutdown().await.unwrap();
}

fn has_row(db: &Path, seq: u64) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM w WHERE seq = ?1", [seq as i64], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap()
        == 1
}

/// Commits one row every 10 ms for 1.5 s under `replica_entry`, each notified (so each is
/// synced at once), waits until the replica holds the last one, and returns how many L0
/// objects the replica got meanwhile (every upload is one object) and the database's path.
async fn steady_commits(dir: &Path, replica_entry: &str) -> (usize, std::path::PathBuf) {
    let db = dir.join("app.db");
    let r = start_replicator(&quiet_config(&db, replica_entry), &db)
        .await
        .unwrap();
    let h = r.handle();
    let client = open_url(&file_url(&dir.join("replica"))).await;
    let before = l0(&client).await.len();
    let conn = wal_db(&db);
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        seq += 1;
        insert(&conn, 1, 100);
        h.notify_commit(CommitNotice { seq });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.wait_commit_replicated(seq).await.unwrap();
    let objects = l0(&client).await.len() - before;
    r.shutdown().await.unwrap();
    (objects, db)
}

/// A replica's `sync-interval`, when set, is the shortest time between the starts of two
/// uploads: the cap on the object-store bill that the default (an upload as soon as the last
/// one returned) does not have. At 100 commits a second for 1.5 s, 300 ms between uploads
/// allows 6 objects, 7 if the last commit just missed the sixth, 8 with a start-up upload
/// still landing when the load starts; without it every sync of a commit or two is its own
/// object. Every commit still reaches the replica, and the
/// real Litestream restores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_sync_interval_caps_the_uploads_and_every_commit_still_arrives() {
    init_logging();
    let test = "an_explicit_sync_interval_caps_the_uploads_and_every_commit_still_arrives";
    let Some(ls) = testkit::litestream::Litestream::require(test) else {
        return;
    };
    let (_t, dir) = tempdir();
    let capped_dir = dir.join("capped");
    let free_dir = dir.join("free");
    let url = |d: &Path| url_entry(&file_url(&d.join("replica")));
    let (capped, db) = steady_commits(
        &capped_dir,
        &format!("{}      sync-interval: 300ms\n", url(&capped_dir)),
    )
    .await;
    assert!(
        (1..=8).contains(&capped),
        "{capped} L0 objects in 1.5 s with uploads at least 300 ms apart"
    );
    let replica = Replica::url(&file_url(&capped_dir.join("replica")));
    assert_restores(&ls, &replica, &capped_dir, &db, "capped").await;
    let (free, _) = steady_commits(&free_dir, &url(&free_dir)).await;
    assert!(
        free >= 3 * capped,
        "without sync-interval: {free} L0 objects, with it {capped}: the cap made no difference"
    );
}
