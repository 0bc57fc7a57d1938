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
    // Every scheduled job runs once at start-up, the compactions first and the snapshot
    // last: once the snapshot is there, no start-up compaction into level 1 is still to
    // come. One that ran late, after a test's first commits were uploaded, compacted them
    // itself, and the test's `compact_now` then found nothing new.
    wait_for_the_start_up_snapshot(&dir.join("replica")).await;
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
    // Nothing of the other writer's went into level 1 (the scheduled compaction may have
    // compacted this server's own files before the other writer's appeared).
    let level1 = names(client.as_ref(), 1).await;
    assert!(
        level1.iter().all(|&(_, max)| max < at + 1),
        "level 1 holds the other writer's TXIDs: {level1:?}"
    );
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

/// What [`Race`] does to level-0 uploads.
#[derive(Debug, Clone, Default)]
enum RaceMode {
    #[default]
    Pass,
    /// Each upload waits (in flight) until the mode changes, then goes on as in the new mode
    /// had it not been stalled (it lands).
    Stall,
    /// Uploads are kept here and reported as landed: sent by a process that dies before the
    /// store commits them.
    Hold,
    /// The next upload first lands this file (a predecessor's upload the store commits late:
    /// after this replicator listed the replica at start-up, before its own first upload).
    LandFirst(ltx::FileName, bytes::Bytes),
}

#[derive(Debug, Default)]
struct RaceState {
    mode: std::sync::Mutex<RaceMode>,
    stalled: std::sync::atomic::AtomicUsize,
    held: std::sync::Mutex<Option<(ltx::FileName, bytes::Bytes)>>,
    /// Reads of this level-0 file fail (a network error) until cleared.
    fail_read: std::sync::Mutex<Option<ltx::FileName>>,
    /// Level-0 deletes fail (a network error) while set.
    fail_delete: std::sync::atomic::AtomicBool,
}

impl RaceState {
    fn set(&self, mode: RaceMode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// A real replica client that lets a test run the race of a restarted primary with its
/// predecessor's last upload (see [`RaceMode`]); everything else goes straight through.
#[derive(Debug)]
struct Race {
    inner: Arc<dyn ReplicaClient>,
    state: Arc<RaceState>,
}

#[async_trait::async_trait]
impl ReplicaClient for Race {
    fn kind(&self) -> replication::ReplicaKind {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn local_path(&self, level: Level, name: ltx::FileName) -> Option<PathBuf> {
        self.inner.local_path(level, name)
    }
    async fn levels(&self) -> Result<Vec<Level>, replication::ClientError> {
        self.inner.levels().await
    }
    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<replication::LtxFileInfo>, replication::ClientError> {
        self.inner.list(level, options).await
    }
    async fn open(
        &self,
        level: Level,
        name: ltx::FileName,
        range: replication::ReadRange,
    ) -> Result<replication::ByteStream, replication::ClientError> {
        if level == Level::L0
            && self
                .state
                .fail_read
                .lock()
                .unwrap()
                .is_some_and(|n| n == name)
        {
            return Err(replication::ClientError::Backend {
                replica: self.inner.describe(),
                operation: "get",
                code: "Unknown",
                message: "injected read failure".into(),
            });
        }
        self.inner.open(level, name, range).await
    }
    async fn write(
        &self,
        level: Level,
        name: ltx::FileName,
        body: replication::ByteStream,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<replication::LtxFileInfo, replication::ClientError> {
        self.inner.write(level, name, body, created_at).await
    }
    async fn create_bytes(
        &self,
        level: Level,
        name: ltx::FileName,
        data: bytes::Bytes,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<replication::LtxFileInfo, replication::ClientError> {
        if level == Level::L0 {
            let mut stalled = false;
            while matches!(*self.state.mode.lock().unwrap(), RaceMode::Stall) {
                if !stalled {
                    stalled = true;
                    self.state
                        .stalled
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let first = {
                let mut mode = self.state.mode.lock().unwrap();
                match &*mode {
                    RaceMode::Hold if !stalled => {
                        *self.state.held.lock().unwrap() = Some((name, data.clone()));
                        return Ok(replication::LtxFileInfo {
                            level,
                            name,
                            size: data.len() as u64,
                            created_at,
                        });
                    }
                    RaceMode::LandFirst(n, b) => {
                        let first = (*n, b.clone());
                        *mode = RaceMode::Pass;
                        Some(first)
                    }
                    _ => None,
                }
            };
            if let Some((n, b)) = first {
                self.inner.create_bytes(level, n, b, created_at).await?;
            }
        }
        self.inner.create_bytes(level, name, data, created_at).await
    }
    async fn delete(
        &self,
        level: Level,
        names: &[ltx::FileName],
    ) -> Result<(), replication::ClientError> {
        if level == Level::L0
            && self
                .state
                .fail_delete
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(replication::ClientError::Backend {
                replica: self.inner.describe(),
                operation: "delete",
                code: "Unknown",
                message: "injected delete failure".into(),
            });
        }
        self.inner.delete(level, names).await
    }
    async fn probe(&self) -> Result<(), replication::ClientError> {
        self.inner.probe().await
    }
    async fn list_dir(
        &self,
        dir: &str,
    ) -> Result<Vec<replication::DirEntry>, replication::ClientError> {
        self.inner.list_dir(dir).await
    }
    async fn open_path(
        &self,
        path: &str,
    ) -> Result<replication::ByteStream, replication::ClientError> {
        self.inner.open_path(path).await
    }
}

/// A replicator of `db` (config `yaml`) whose replica client is behind [`Race`].
async fn start_racing(yaml: &str, db: &Path, state: &Arc<RaceState>) -> Replicator {
    let mut options = replicator_options(yaml, db);
    let s = state.clone();
    options.wrap_client = Some(Arc::new(move |inner| {
        Arc::new(Race {
            inner,
            state: s.clone(),
        })
    }));
    Replicator::start(options).await.unwrap()
}

/// Waits (generously) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The predecessor's file with the image of one page changed and everything else (header,
/// WAL salts, timestamps) kept: a second primary that started from the same position and
/// committed other transactions.
fn other_history(ltx_bytes: &[u8]) -> bytes::Bytes {
    let mut dec = ltx::Decoder::new(ltx_bytes).unwrap();
    let header = *dec.header();
    let mut enc = ltx::Encoder::new(Vec::new(), header).unwrap();
    let mut page = vec![0u8; header.page_size as usize];
    let mut changed = false;
    while let Some(pgno) = dec.next_page(&mut page).unwrap() {
        if !changed && pgno > 1 {
            let last = page.len() - 1;
            page[last] ^= 0x5a;
            changed = true;
        }
        enc.write_page(pgno, &page).unwrap();
    }
    assert!(changed, "the file holds a page to change");
    bytes::Bytes::from(enc.finish().unwrap().writer)
}

/// The configuration of [`restart_racing_the_last_upload`]'s primaries.
fn racing_yaml(replica: &Replica, db: &Path) -> String {
    format!(
        "levels:\n  - interval: 1h\nsnapshot:\n  interval: 24h\n\
         dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n{}",
        db.display(),
        replica.entry
    )
}

/// A primary restarted after its predecessor died with an upload sent but not yet committed
/// by the store: the predecessor had replicated TXIDs up to P and sent P+1..P+2 (one merged
/// file), and the store commits it after the new process listed the replica (at P) and
/// before its own first upload, which merges the same TXIDs and the next one into P+1..P+3.
/// `other`: the late file holds other transactions instead (a second primary at the same
/// position). Returns the new replicator, the late file's name, P and the race's switch.
async fn restart_racing_the_last_upload(
    replica: &Replica,
    db: &Path,
    other: bool,
) -> (Replicator, ltx::FileName, u64, Arc<RaceState>) {
    let (yaml, state, late, bytes, p) = a_predecessor_dies_uploading(replica, db).await;
    let bytes = if other { other_history(&bytes) } else { bytes };
    state.set(RaceMode::LandFirst(late, bytes));
    let new = start_racing(&yaml, db, &state).await;
    new.sync_and_wait().await.unwrap();
    let client = replica.client().await;
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.contains(&(p + 1, p + 2)) && l0.contains(&(p + 1, p + 3)),
        "the race did not happen: level 0 is {l0:?}"
    );
    (new, late, p, state)
}

/// The first half of [`restart_racing_the_last_upload`]: the predecessor replicated up to P,
/// sent P+1..P+2 (held, not landed) and died; one more commit it never synced. Returns the
/// configuration, the switch, the held file and P.
async fn a_predecessor_dies_uploading(
    replica: &Replica,
    db: &Path,
) -> (String, Arc<RaceState>, ltx::FileName, bytes::Bytes, u64) {
    let yaml = racing_yaml(replica, db);
    let state = Arc::new(RaceState::default());
    let old = start_racing(&yaml, db, &state).await;
    let conn = wal_db(db);
    let mut seq = 0;
    let mut commit = |r: &Replicator| {
        insert(&conn, 1, 100);
        seq += 1;
        r.handle().notify_commit(CommitNotice { seq });
        seq
    };
    for _ in 0..3 {
        commit(&old);
        old.sync_and_wait().await.unwrap();
    }
    // Level 1 is new, so the next replicator's start-up compaction finds it too early.
    old.compact_now(Level::new(1).unwrap()).await.unwrap();
    state.set(RaceMode::Stall);
    let s = commit(&old);
    let p = old.handle().wait_commit_synced(s).await.unwrap().get();
    until("the upload of P stalls", || {
        state.stalled.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    for _ in 0..2 {
        let s = commit(&old);
        old.handle().wait_commit_synced(s).await.unwrap();
    }
    // P lands; P+1..P+2 goes up as one file that the store does not commit yet.
    state.set(RaceMode::Hold);
    until("the predecessor's last upload is sent", || {
        state.held.lock().unwrap().is_some()
    })
    .await;
    let _ = old.shutdown().await;
    let (late, bytes) = state.held.lock().unwrap().take().unwrap();
    assert_eq!(
        (late.min.get(), late.max.get()),
        (p + 1, p + 2),
        "the predecessor's last upload"
    );
    // A commit the predecessor did not sync before it died.
    insert(&conn, 1, 100);
    (yaml, state, late, bytes, p)
}

/// The restarted primary's next compaction into level 1 finds the predecessor's late file
/// (the same TXIDs as its own first upload, batched differently). It is the same history, so
/// it is no second primary: level 0 is one chain again, replication goes on, and Litestream
/// restores the database's rows from the replica.
async fn a_restart_racing_its_predecessors_last_upload(test: &str, backend: Backend) {
    let Some((ls, _t, dir, replica)) = litestream_and_replica(test, backend, "race", "app.db")
    else {
        return;
    };
    let db = dir.join("app.db");
    let (r, late, p, state) = restart_racing_the_last_upload(&replica, &db, false).await;
    // A failed read while comparing is retried, not taken for another primary.
    *state.fail_read.lock().unwrap() = Some(late);
    let failed = r.compact_now(Level::new(1).unwrap()).await;
    assert!(
        matches!(&failed, Err(e) if !e.to_string().contains("another writer")),
        "{failed:?}"
    );
    *state.fail_read.lock().unwrap() = None;
    let compacted = r.compact_now(Level::new(1).unwrap()).await;
    assert!(
        compacted.is_ok(),
        "the predecessor's file was taken for another primary's: {compacted:?}"
    );
    // The predecessor's file stays (a follower may have applied it); ours that overlapped it
    // is replaced by the TXID after it.
    let client = replica.client().await;
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.contains(&(late.min.get(), late.max.get()))
            && l0.contains(&(p + 3, p + 3))
            && !l0.contains(&(p + 1, p + 3)),
        "level 0 after settling: {l0:?}"
    );
    assert!(
        l0.windows(2).all(|w| w[1].0 == w[0].1 + 1),
        "level 0 overlaps or has gaps: {l0:?}"
    );
    assert!(names(client.as_ref(), 1).await.iter().any(|f| f.1 >= p + 3));
    // Replication goes on.
    commits(&r, &db, 2).await;
    r.shutdown().await.unwrap();
    let out = dir.join("restored.db");
    restore_from(&ls, replica.source(), &out, &[]);
    assert_eq!(rows(&out), rows(&db), "Litestream's restore of the replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_racing_its_predecessors_last_upload_is_no_second_primary() {
    a_restart_racing_its_predecessors_last_upload(
        "a_restart_racing_its_predecessors_last_upload_is_no_second_primary",
        Backend::File,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_racing_its_predecessors_last_upload_on_s3_is_no_second_primary() {
    a_restart_racing_its_predecessors_last_upload(
        "a_restart_racing_its_predecessors_last_upload_on_s3_is_no_second_primary",
        Backend::S3,
    )
    .await;
}

/// The same race, but the late file holds other transactions from the same position (a
/// second primary whose file looks like a predecessor's in every other way): still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_primary_at_the_restart_position_is_still_refused() {
    let (_t, dir) = tempdir();
    let replica = Replica::url(&file_url(&dir.join("replica")));
    let (r, late, _, _) = restart_racing_the_last_upload(&replica, &dir.join("app.db"), true).await;
    let result = r.compact_now(Level::new(1).unwrap()).await;
    assert!(
        result.is_err(),
        "compacted another writer's file: {result:?}"
    );
    let message = fails_with_another_writer(&r).await;
    assert!(message.contains(&late.to_string()), "{message}");
    let client = replica.client().await;
    assert!(
        names(client.as_ref(), 0)
            .await
            .contains(&(late.min.get(), late.max.get())),
        "another primary's file is left for the operator"
    );
}

/// The restarted primary settles the race (the TXIDs after the predecessor's file go up as
/// one new file) but dies before it deletes its own overlapping upload (here: the delete
/// fails and the process is stopped before the next compaction retries it; a kill -9
/// between the two steps leaves the same replica). Level 0 then holds the predecessor's
/// file, our overlapping upload and the replacement, all before the next run's start, so
/// nothing judges them again: the next run must still compact into level 1 (else
/// replication fails for good after the retry window, at every restart), and Litestream
/// must still restore the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_replacement_upload_but_before_the_delete_still_compacts() {
    let Some((ls, _t, dir, replica)) = litestream_and_replica(
        "a_restart_after_the_replacement_upload_but_before_the_delete_still_compacts",
        Backend::File,
        "race",
        "app.db",
    ) else {
        return;
    };
    let db = dir.join("app.db");
    let (r, late, p, state) = restart_racing_the_last_upload(&replica, &db, false).await;
    state
        .fail_delete
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = r.compact_now(Level::new(1).unwrap()).await;
    assert!(failed.is_err(), "the delete was to fail: {failed:?}");
    let client = replica.client().await;
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.contains(&(late.min.get(), late.max.get()))
            && l0.contains(&(p + 1, p + 3))
            && l0.contains(&(p + 3, p + 3)),
        "the replacement went up, the delete did not happen: {l0:?}"
    );
    // The process stops here.
    let _ = r.shutdown().await;
    state
        .fail_delete
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let next = start_racing(&racing_yaml(&replica, &db), &db, &state).await;
    let compacted = next.compact_now(Level::new(1).unwrap()).await;
    assert!(
        compacted.is_ok(),
        "the next run cannot compact level 0 {l0:?} into level 1: {compacted:?}"
    );
    commits(&next, &db, 2).await;
    next.shutdown().await.unwrap();
    let out = dir.join("restored.db");
    restore_from(&ls, replica.source(), &out, &[]);
    assert_eq!(rows(&out), rows(&db), "Litestream's restore of the replica");
}

/// The race happened (the predecessor's file and our overlapping upload are both on level
/// 0) and the restarted primary is restarted again before its first compaction into level 1
/// settled it (a deploy, a crash: any time within one level-1 interval). The next run
/// started after both files, so it does not judge them; it must still compact them (one
/// history), or replication fails for good after the retry window, at every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_before_the_race_is_settled_still_compacts() {
    let (_t, dir) = tempdir();
    let replica = Replica::url(&file_url(&dir.join("replica")));
    let db = dir.join("app.db");
    let (r, _late, _p, state) = restart_racing_the_last_upload(&replica, &db, false).await;
    r.shutdown().await.unwrap();
    let next = start_racing(&racing_yaml(&replica, &db), &db, &state).await;
    let client = replica.client().await;
    let l0 = names(client.as_ref(), 0).await;
    let compacted = next.compact_now(Level::new(1).unwrap()).await;
    assert!(
        compacted.is_ok(),
        "the next run cannot compact level 0 {l0:?} into level 1: {compacted:?}"
    );
    next.shutdown().await.unwrap();
}

/// The same race, with the restarted primary's compaction into level 1 listing level 0
/// after the predecessor's file landed and while its own first upload is still in flight
/// (at start-up every compaction job runs at once, and level 1 is due whenever a boundary
/// passed since the predecessor's last compaction). The predecessor's file is then not yet
/// covered by a listed upload of ours: that is no proof of a second primary, so the
/// compaction must not stop replication for good; it may wait and settle later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_while_the_first_upload_is_in_flight_is_no_false_stop() {
    let (_t, dir) = tempdir();
    let replica = Replica::url(&file_url(&dir.join("replica")));
    let db = dir.join("app.db");
    let (yaml, state, late, bytes, p) = a_predecessor_dies_uploading(&replica, &db).await;
    state.set(RaceMode::Stall);
    let new = start_racing(&yaml, &db, &state).await;
    until("the first upload is in flight", || {
        state.stalled.load(std::sync::atomic::Ordering::SeqCst) > 1
    })
    .await;
    // The store commits the predecessor's upload now.
    let client = replica.client().await;
    client
        .create_bytes(Level::L0, late, bytes, chrono::Utc::now())
        .await
        .unwrap();
    let compacted = new.compact_now(Level::new(1).unwrap()).await;
    state.set(RaceMode::Pass);
    assert!(
        !matches!(&compacted, Err(e) if e.to_string().contains("another")),
        "a false stop: {compacted:?}"
    );
    new.sync_and_wait().await.unwrap();
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.contains(&(p + 1, p + 2)),
        "the predecessor's file: {l0:?}"
    );
    let settled = new.compact_now(Level::new(1).unwrap()).await;
    assert!(settled.is_ok(), "{settled:?}");
    new.shutdown().await.unwrap();
}

/// [`a_predecessor_dies_uploading`], then the restarted primary, with the predecessor's
/// configuration changed by `config`, started as the store commits the predecessor's file
/// (before its own first upload). Returns it, the late file's name and P.
async fn restarted_as_the_late_upload_lands(
    replica: &Replica,
    db: &Path,
    config: impl FnOnce(String) -> String,
) -> (Replicator, ltx::FileName, u64) {
    let (yaml, state, late, bytes, p) = a_predecessor_dies_uploading(replica, db).await;
    state.set(RaceMode::LandFirst(late, bytes));
    let new = start_racing(&config(yaml), db, &state).await;
    new.sync_and_wait().await.unwrap();
    (new, late, p)
}

/// With `retention.enabled: false` no remote file is deleted (the replica's credentials may
/// not even allow it), not even the upload that settling a restart race replaces: settling
/// still keeps the predecessor's file and uploads the TXIDs after it, and compaction goes on
/// over the three files of one history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_a_restart_race_deletes_nothing_with_retention_disabled() {
    let (_t, dir) = tempdir();
    let replica = Replica::url(&file_url(&dir.join("replica")));
    let db = dir.join("app.db");
    let (new, late, p) = restarted_as_the_late_upload_lands(&replica, &db, |y| {
        format!("retention:\n  enabled: false\n{y}")
    })
    .await;
    let compacted = new.compact_now(Level::new(1).unwrap()).await;
    assert!(compacted.is_ok(), "{compacted:?}");
    let client = replica.client().await;
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.contains(&(late.min.get(), late.max.get()))
            && l0.contains(&(p + 1, p + 3))
            && l0.contains(&(p + 3, p + 3)),
        "a remote file was deleted although retention is disabled: {l0:?}"
    );
    commits(&new, &db, 2).await;
    let again = new.compact_now(Level::new(1).unwrap()).await;
    assert!(again.is_ok(), "{again:?}");
    new.shutdown().await.unwrap();
}

/// The same race after `max-sync-ltx-files` was lowered across the restart (here to 1): the
/// restarted primary's first upload must still reach beyond its predecessor's late file,
/// never end inside it. Split (`P+1` then `P+2`, against the predecessor's `P+1..P+2`),
/// settling would delete the upload a follower may have applied, and that follower would find
/// the kept file crossing its TXID: another lineage, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_max_sync_ltx_files_does_not_split_the_predecessors_last_upload() {
    let (_t, dir) = tempdir();
    let replica = Replica::url(&file_url(&dir.join("replica")));
    let db = dir.join("app.db");
    // The replica entry comes last: the key goes into it.
    let (new, late, p) = restarted_as_the_late_upload_lands(&replica, &db, |y| {
        format!("{y}      max-sync-ltx-files: 1\n")
    })
    .await;
    let client = replica.client().await;
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.contains(&(late.min.get(), late.max.get())),
        "the race did not happen: level 0 is {l0:?}"
    );
    let (min, max) = (late.min.get(), late.max.get());
    assert!(
        !l0.iter()
            .any(|&(a, b)| (a, b) != (min, max) && a <= max && b >= min && b < max),
        "an upload of the restarted primary ends inside its predecessor's file {late}: {l0:?}"
    );
    assert!(l0.contains(&(p + 1, p + 3)), "{l0:?}");
    let compacted = new.compact_now(Level::new(1).unwrap()).await;
    assert!(compacted.is_ok(), "{compacted:?}");
    let l0 = names(client.as_ref(), 0).await;
    assert!(
        l0.windows(2).all(|w| w[1].0 == w[0].1 + 1),
        "level 0 overlaps or has gaps after settling: {l0:?}"
    );
    commits(&new, &db, 2).await;
    new.shutdown().await.unwrap();
}

/// A compaction into level 1 redone with another range (its first upload failed on our side
/// but landed, after level 2 had compacted it): level 1 holds `a-T1` and the redone `a-T2`,
/// and level 2 ends at T1, inside `a-T2`. The next compaction into level 2 must continue at
/// T1 + 1 through `a-T2`, not list level 1 from T1 + 1 on (where `a-T2` does not start)
/// and write a file after a gap (a torture run found `2d-2fb` then `2fe-40d` in level 2).
/// The replica, restored from its snapshot and level 2 alone, holds every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_continues_through_a_redone_file_across_the_next_levels_end() {
    init_logging();
    let (_t, dir, db, _url, r, client) = setup("").await;
    let (l1, l2) = (Level::new(1).unwrap(), Level::new(2).unwrap());
    commits(&r, &db, 3).await;
    r.compact_now(l1).await.unwrap().unwrap();
    let first_l1 = *client
        .list(l1, ListOptions::default())
        .await
        .unwrap()
        .iter()
        .max_by_key(|f| f.name.max)
        .unwrap();
    r.compact_now(l2).await.unwrap().unwrap();
    let t1 = names(client.as_ref(), 2)
        .await
        .iter()
        .map(|n| n.1)
        .max()
        .unwrap();
    assert_eq!(t1, first_l1.name.max.get());
    // The redone compaction into level 1: the first file and the level-0 files after it.
    commits(&r, &db, 3).await;
    let l0: Vec<_> = client
        .list(Level::L0, ListOptions::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.name.min.get() > t1)
        .collect();
    let mut inputs = vec![first_l1];
    inputs.extend(l0);
    let mut bytes = Vec::new();
    for f in &inputs {
        bytes.push(
            client
                .read(f.level, f.name, replication::ReadRange::Full)
                .await
                .unwrap(),
        );
    }
    let redone = ltx::Compactor::new(
        bytes
            .iter()
            .map(|b| ltx::Decoder::new(&b[..]).unwrap())
            .collect(),
    )
    .unwrap()
    .compact(Vec::new())
    .unwrap();
    let t2 = redone.header.max_txid;
    let redone_name = ltx::FileName::new(first_l1.name.min, t2);
    client
        .write_bytes(l1, redone_name, redone.writer.into(), chrono::Utc::now())
        .await
        .unwrap();
    // Then more commits, compacted into level 1 after `a-T2`, and into level 2.
    commits(&r, &db, 3).await;
    r.compact_now(l1).await.unwrap().unwrap();
    r.compact_now(l2).await.unwrap().unwrap();
    let level2 = names(client.as_ref(), 2).await;
    assert!(
        level2.windows(2).all(|w| w[1].0 == w[0].1 + 1),
        "level 2 has a gap or an overlap: {level2:?} (level 1: {:?}, redone {redone_name})",
        names(client.as_ref(), 1).await
    );
    r.shutdown().await.unwrap();
    // The snapshot and level 2 alone.
    let only = dir.join("only-l2");
    for level in ["2", "9"] {
        let (from, to) = (
            dir.join("replica/ltx").join(level),
            only.join("ltx").join(level),
        );
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let out = dir.join("restored.db");
    let c: Arc<dyn ReplicaClient> = Arc::new(replication::internals::FileClient::new(&only));
    restore_ours(
        &c,
        replication::restore::RestoreTarget::Latest,
        &out,
        replication::restore::IntegrityCheck::Full,
    )
    .await
    .unwrap();
    assert_eq!(rows(&out), rows(&db));
}
