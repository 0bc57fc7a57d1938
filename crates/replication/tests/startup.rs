//! Start-up: restore before serving, new database/replica, continuing, catching up, and
//! refusing to start when the local database and the replica have diverged — never
//! overwriting either side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::*;
use ltx::FileName;
use replication::Level;
use replication::LtxFileInfo;
use replication::ReplicaKind;
use replication::restore::IntegrityCheck;
use replication::restore::RestoreTarget;
use replication::{ByteStream, ClientError, DirEntry, ListOptions, ReadRange, ReplicaClient};
use replication::{CommitNotice, Replicator, StartAction, StartError};
use replication::{DivergenceKind, StartupError};

struct Env {
    _t: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
    url: String,
}

impl Env {
    fn new() -> Env {
        let (t, dir) = tempdir();
        let db = dir.join("app.db");
        let url = file_url(&dir.join("replica"));
        Env {
            _t: t,
            dir,
            db,
            url,
        }
    }

    fn yaml(&self) -> String {
        // No compaction during these tests (long intervals): start-up logic only.
        format!(
            "levels:\n  - interval: 1h\nsnapshot:\n  interval: 24h\nl0-retention: 1h\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: {}\n",
            self.db.display(),
            self.url
        )
    }

    async fn start(&self) -> Result<Replicator, StartError> {
        start_replicator(&self.yaml(), &self.db).await
    }

    fn meta(&self) -> PathBuf {
        self.dir.join(".app.db-litestream")
    }

    /// Starts, writes and syncs `n` times (at least `n` TXIDs), shuts down.
    async fn session(&self, n: u64) -> StartAction {
        let r = self.start().await.unwrap();
        let action = r.handle().start_action();
        for seq in 1..=n {
            write(&self.db, 1);
            r.handle().notify_commit(CommitNotice { seq });
            r.sync_and_wait().await.unwrap();
        }
        r.shutdown().await.unwrap();
        action
    }

    async fn replica_files(&self, level: Level) -> Vec<replication::LtxFileInfo> {
        let target = replication::parse_replica_url(&self.url).unwrap();
        let c = replication::open_client(&target, &Default::default())
            .await
            .unwrap();
        c.list(level, ListOptions::default()).await.unwrap()
    }
}

fn write(db: &Path, n: i64) {
    let conn = wal_db(db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    for _ in 0..n {
        insert(&conn, 3, 200);
    }
}

fn copy_db(from: &Path, to_dir: &Path) {
    std::fs::create_dir_all(to_dir).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let e = entry.unwrap();
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with("app.db") {
            std::fs::copy(e.path(), to_dir.join(&name)).unwrap();
        } else if n == ".app.db-litestream" {
            copy_dir(&e.path(), &to_dir.join(&name));
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Replaces the database files and metadata of `env` with those saved in `saved`.
fn put_back(env: &Env, saved: &Path) {
    for p in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(env.dir.join(p));
    }
    let _ = std::fs::remove_dir_all(env.meta());
    copy_db(saved, &env.dir);
}

fn divergence(e: StartError) -> (DivergenceKind, String) {
    let msg = e.to_string();
    match e {
        StartError::Startup(e) => match *e {
            StartupError::Diverged(d) => (d.kind, msg),
            other => panic!("expected a divergence, got: {other}"),
        },
        other => panic!("expected a divergence, got: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_missing_database_and_continues_incrementally() {
    init_logging();
    let env = Env::new();
    assert_eq!(env.session(5).await, StartAction::NewDatabase);
    let before = rows(&env.db);
    let l0_before = env.replica_files(Level::L0).await;
    for p in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(env.dir.join(p));
    }
    std::fs::remove_dir_all(env.meta()).unwrap();

    let r = env.start().await.unwrap();
    let txid = l0_before.iter().map(|f| f.name.max).max().unwrap();
    assert_eq!(r.handle().start_action(), StartAction::Restored { txid });
    assert_eq!(rows(&env.db), before);
    write(&env.db, 2);
    r.handle().wake();
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    // The position was adopted: the files after the restore are small increments, not a
    // full copy of the database.
    let db_size = std::fs::metadata(&env.db).unwrap().len();
    for f in env
        .replica_files(Level::L0)
        .await
        .iter()
        .filter(|f| f.name.min > txid)
    {
        assert!(
            f.size < db_size / 2,
            "{f:?} looks like a full snapshot ({db_size} bytes db)"
        );
    }
    let out = env.dir.join("check.db");
    let client = open_url(&env.url).await;
    restore_ours(&client, RestoreTarget::Latest, &out, IntegrityCheck::None)
        .await
        .unwrap();
    assert_eq!(rows(&out), rows(&env.db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continues_after_a_restart_and_after_writes_while_stopped() {
    let env = Env::new();
    env.session(3).await;
    // Writes while the replicator is not running (e.g. a migration) are picked up.
    write(&env.db, 4);
    let r = env.start().await.unwrap();
    assert!(
        matches!(r.handle().start_action(), StartAction::Continued { .. }),
        "{:?}",
        r.handle().start_action()
    );
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    let out = env.dir.join("check.db");
    let ls_ok = testkit::litestream::Litestream::require("continues_after_a_restart");
    if let Some(ls) = ls_ok {
        restore(&ls, &env.url, &out, &[]);
        assert_eq!(rows(&out), rows(&env.db));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_starts_a_new_empty_replica() {
    let env = Env::new();
    write(&env.db, 3);
    let r = env.start().await.unwrap();
    assert_eq!(r.handle().start_action(), StartAction::NewReplica);
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
    // A database with history pointed at a new, empty replica path starts it afresh.
    let env2 = Env {
        url: file_url(&env.dir.join("replica2")),
        ..Env::new()
    };
    let _ = env2;
    let fresh = file_url(&env.dir.join("replica2"));
    let yaml = env.yaml().replace(&env.url, &fresh);
    let r = start_replicator(&yaml, &env.db).await.unwrap();
    assert_eq!(r.handle().start_action(), StartAction::NewReplica);
    let p = r.sync_and_wait().await.unwrap();
    assert_eq!(p.replicated_txid.get(), 1, "a new replica starts at TXID 1");
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_database_without_history_is_refused() {
    let env = Env::new();
    env.session(3).await;
    for p in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(env.dir.join(p));
    }
    std::fs::remove_dir_all(env.meta()).unwrap();
    write(&env.db, 2); // another database at the same path
    let before = std::fs::read(&env.db).unwrap();
    let (kind, msg) = divergence(env.start().await.unwrap_err());
    assert!(
        matches!(kind, DivergenceKind::NoLocalHistory { .. }),
        "{kind:?}"
    );
    assert!(msg.contains("sqlite-rest restore --force"), "{msg}");
    assert!(msg.contains("new, empty replica path"), "{msg}");
    assert_eq!(
        std::fs::read(&env.db).unwrap(),
        before,
        "the local database is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_database_without_history_is_adopted() {
    let env = Env::new();
    env.session(3).await;
    // e.g. restored by hand with `litestream restore`, or the metadata directory was lost
    std::fs::remove_dir_all(env.meta()).unwrap();
    let r = env.start().await.unwrap();
    adopted_then_replicates_a_write(&env, r).await;
}

/// Asserts `r` adopted the replica's position, then writes, replicates and stops.
async fn adopted_then_replicates_a_write(env: &Env, r: Replicator) {
    assert!(
        matches!(r.handle().start_action(), StartAction::Adopted { .. }),
        "{:?}",
        r.handle().start_action()
    );
    write(&env.db, 1);
    r.handle().wake();
    r.sync_and_wait().await.unwrap();
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_behind_the_replica_catches_up_unless_it_has_its_own_changes() {
    init_logging();
    let env = Env::new();
    env.session(3).await;
    let saved = env.dir.join("saved");
    copy_db(&env.dir, &saved);
    env.session(4).await;
    let latest = rows(&env.db);

    // An older copy of the same history is brought up to date.
    put_back(&env, &saved);
    let r = env.start().await.unwrap();
    assert!(
        matches!(r.handle().start_action(), StartAction::CaughtUp { .. }),
        "{:?}",
        r.handle().start_action()
    );
    assert_eq!(rows(&env.db), latest);
    r.shutdown().await.unwrap();

    // An older copy with changes of its own (made without replication) is refused.
    put_back(&env, &saved);
    write(&env.db, 1);
    let before = std::fs::read(&env.db).unwrap();
    let (kind, msg) = divergence(env.start().await.unwrap_err());
    assert!(
        matches!(kind, DivergenceKind::LocalChangesAfter { .. }),
        "{kind:?}: {msg}"
    );
    assert_eq!(std::fs::read(&env.db).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_on_one_replica_are_refused() {
    let a = Env::new();
    a.session(3).await;
    // Database B has its own history on another replica, then is pointed at A's replica.
    let b = Env::new();
    b.session(2).await;
    let yaml = b.yaml().replace(&b.url, &a.url);
    let err = start_replicator(&yaml, &b.db).await.unwrap_err();
    let (kind, _) = divergence(err);
    assert!(
        matches!(
            kind,
            DivergenceKind::TxidDiffers { .. } | DivergenceKind::LocalChangesAfter { .. }
        ),
        "{kind:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_went_backwards_is_refused() {
    let env = Env::new();
    env.session(2).await;
    let replica = env.dir.join("replica");
    let saved_replica = env.dir.join("saved-replica");
    copy_dir(&replica, &saved_replica);
    env.session(3).await;
    // The replica is replaced by an older copy, and the local files after it are gone.
    std::fs::remove_dir_all(&replica).unwrap();
    copy_dir(&saved_replica, &replica);
    let newest_remote = env
        .replica_files(Level::L0)
        .await
        .iter()
        .map(|f| f.name.max)
        .max()
        .unwrap();
    let l0 = env.meta().join("ltx/0");
    for e in std::fs::read_dir(&l0).unwrap() {
        let e = e.unwrap();
        let name: ltx::FileName = e.file_name().to_string_lossy().parse().unwrap();
        if name.max.get() == newest_remote.get() + 1 {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let (kind, _) = divergence(env.start().await.unwrap_err());
    assert!(
        matches!(kind, DivergenceKind::ReplicaWentBack { .. }),
        "{kind:?}"
    );
    let _ = Duration::ZERO;
}

/// Makes the upload of every L0 object starting at `txid` fail on the file replica of `env`
/// (the temporary file paths of `<txid>-<txid + k>` for up to 64 merged files are taken by
/// directories), so everything from `txid` on stays local, as after a crash before the
/// upload. Returns what [`unblock_upload`] needs.
fn block_upload(env: &Env, txid: u64) -> Vec<PathBuf> {
    (0..64)
        .flat_map(|k| {
            let name = ltx::FileName::new(ltx::TxId(txid), ltx::TxId(txid + k));
            // The temp names of a plain write and of this process's conditional create.
            [
                format!("{name}.tmp"),
                format!("{name}.{}.tmp", std::process::id()),
            ]
        })
        .map(|tmp| {
            let blocker = env.dir.join("replica/ltx/0").join(tmp);
            std::fs::create_dir_all(&blocker).unwrap();
            blocker
        })
        .collect()
}

fn unblock_upload(blockers: &[PathBuf]) {
    for b in blockers {
        std::fs::remove_dir_all(b).unwrap();
    }
}

/// The newest TXID on the replica.
async fn replica_txid(env: &Env) -> u64 {
    env.replica_files(Level::L0)
        .await
        .iter()
        .map(|f| f.name.max.get())
        .max()
        .unwrap()
}

/// Restores the replica of `env` (integrity-checked) and asserts that it holds every row of
/// the database.
async fn assert_the_replica_has_the_database(env: &Env, context: &str) {
    let out = env.dir.join("check.db");
    let client = open_url(&env.url).await;
    restore_ours(&client, RestoreTarget::Latest, &out, IntegrityCheck::Full)
        .await
        .unwrap_or_else(|e| panic!("{context}: restoring the replica: {e}"));
    let ids = |rows: Vec<(i64, Vec<u8>)>| rows.into_iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(
        ids(rows(&out)),
        ids(rows(&env.db)),
        "{context}: the replica's rows (left) are not the database's"
    );
    assert!(
        rows(&out) == rows(&env.db),
        "{context}: the rows' values differ"
    );
    std::fs::remove_file(&out).unwrap();
}

/// The ways start-up comes to adopt the replica's newest L0 file as its position.
const ADOPTIONS: [&str; 3] = ["restored", "caught up", "adopted"];

/// Sets `env` (which has replicated a few TXIDs) up so that its next start adopts the
/// replica's position as `case` says: "restored" (the database is gone), "caught up" (an
/// older copy of the database and its metadata is put back after more was replicated),
/// "adopted" (the metadata is gone).
async fn set_up_adoption(env: &Env, case: &str) {
    match case {
        "restored" => {
            for p in ["app.db", "app.db-wal", "app.db-shm"] {
                let _ = std::fs::remove_file(env.dir.join(p));
            }
            std::fs::remove_dir_all(env.meta()).unwrap();
        }
        "caught up" => {
            let saved = env.dir.join("saved");
            copy_db(&env.dir, &saved);
            env.session(2).await;
            put_back(env, &saved);
        }
        _ => std::fs::remove_dir_all(env.meta()).unwrap(),
    }
}

/// True if `action` is how `case` of [`ADOPTIONS`] starts.
fn adopted_by(case: &str, action: StartAction) -> bool {
    match case {
        "restored" => matches!(action, StartAction::Restored { .. }),
        "caught up" => matches!(action, StartAction::CaughtUp { .. }),
        _ => matches!(action, StartAction::Adopted { .. }),
    }
}

/// A replicator that adopted the replica's newest L0 file at start-up (after a restore, a
/// catch-up or adopting an equal database) stops before anything after it reaches the
/// replica — its first files and later writes are only local, the upload of the next TXID
/// fails — as a crash would leave it. The next start must take it as the same lineage (no
/// false divergence), keep every local write and upload it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_right_after_adopting_the_replicas_position_restarts_as_the_same_lineage() {
    init_logging();
    for case in ADOPTIONS {
        let env = Env::new();
        env.session(3).await;
        set_up_adoption(&env, case).await;
        let adopted = replica_txid(&env).await;
        let blocker = block_upload(&env, adopted + 1);
        let yaml = env
            .yaml()
            .replace("dbs:\n", "shutdown-sync-timeout: 1s\ndbs:\n");
        let r = start_replicator(&yaml, &env.db).await.unwrap();
        let action = r.handle().start_action();
        assert!(adopted_by(case, action), "{case}: {action:?}");
        // Writes after the adoption reach local L0 files only.
        write(&env.db, 2);
        r.handle().notify_commit(CommitNotice { seq: 1 });
        let mut positions = r.handle().subscribe();
        let synced = *tokio::time::timeout(
            Duration::from_secs(120),
            positions.wait_for(|p| p.synced_seq >= 1),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: commit 1 never reached a local L0 file"))
        .unwrap();
        assert!(synced.local_txid.get() > adopted, "{case}: {synced:?}");
        assert!(
            r.shutdown().await.is_err(),
            "{case}: the upload should have failed"
        );
        assert_eq!(replica_txid(&env).await, adopted, "{case}");
        unblock_upload(&blocker);

        let r = env
            .start()
            .await
            .unwrap_or_else(|e| panic!("{case}: the restart after the adoption was refused: {e}"));
        assert!(
            matches!(r.handle().start_action(), StartAction::Continued { .. }),
            "{case}: {:?}",
            r.handle().start_action()
        );
        let p = r.sync_and_wait().await.unwrap();
        assert!(p.replicated_txid >= synced.local_txid, "{case}: {p:?}");
        r.shutdown().await.unwrap();
        assert_the_replica_has_the_database(&env, case).await;
    }
}

/// A catch-up replaces the database with the replica's latest state, then resets the local
/// position. Stopped in between (the database is the replica's state, the position still the
/// old one), the next start must see the database equals the replica and adopt it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_in_the_middle_of_a_catch_up_is_not_a_divergence() {
    init_logging();
    let env = Env::new();
    env.session(3).await;
    let saved = env.dir.join("saved");
    copy_db(&env.dir, &saved);
    env.session(2).await;
    put_back(&env, &saved);
    // The catch-up's database, swapped in; the metadata is not reset yet.
    let latest = env.dir.join("latest.db");
    let client = open_url(&env.url).await;
    restore_ours(
        &client,
        RestoreTarget::Latest,
        &latest,
        IntegrityCheck::None,
    )
    .await
    .unwrap();
    for p in ["app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(env.dir.join(p));
    }
    std::fs::rename(&latest, &env.db).unwrap();
    let expected = rows(&env.db);
    let r = env
        .start()
        .await
        .unwrap_or_else(|e| panic!("the interrupted catch-up was refused: {e}"));
    adopted_then_replicates_a_write(&env, r).await;
    assert_eq!(rows(&env.db).len(), expected.len() + 3);
    let out = env.dir.join("check.db");
    restore_ours(&client, RestoreTarget::Latest, &out, IntegrityCheck::Full)
        .await
        .unwrap();
    assert_eq!(rows(&out), rows(&env.db));
}

/// A real replica client that runs `hook` once, when the replica's newest L0 file is
/// downloaded for adoption: after the database was compared with (or restored from) the
/// replica, and before the replicator attaches to it. That download is told from the reads
/// of the comparison or restore (which reach `open` too, through the deadline wrapper) by
/// the `*.adopt.tmp` file it creates first in the metadata directory `meta`.
struct BeforeAdoption {
    inner: Arc<dyn ReplicaClient>,
    meta: PathBuf,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl BeforeAdoption {
    fn adopting(&self) -> bool {
        std::fs::read_dir(self.meta.join("ltx").join(Level::L0.to_string())).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".adopt.tmp"))
        })
    }
}

impl std::fmt::Debug for BeforeAdoption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeAdoption")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ReplicaClient for BeforeAdoption {
    fn kind(&self) -> ReplicaKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn local_path(&self, level: Level, name: FileName) -> Option<PathBuf> {
        self.inner.local_path(level, name)
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        self.inner.levels().await
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.inner.list(level, options).await
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        if level == Level::L0 && self.adopting() {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                tokio::task::spawn_blocking(hook).await.unwrap();
            }
        }
        self.inner.open(level, name, range).await
    }

    async fn read(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<Bytes, ClientError> {
        self.inner.read(level, name, range).await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        self.inner.list_dir(dir).await
    }

    async fn open_path(&self, path: &str) -> Result<ByteStream, ClientError> {
        self.inner.open_path(path).await
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        self.inner.write(level, name, body, created_at).await
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        self.inner.delete(level, names).await
    }

    async fn probe(&self) -> Result<(), ClientError> {
        self.inner.probe().await
    }
}

/// Start-up compares the local database with the replica (or restores it), then adopts the
/// replica's newest L0 file as its position: replication continues from the start of the
/// WAL. Another process that writes to the database in between and checkpoints the WAL
/// away (the sqlite3 shell, whose last connection checkpoints and deletes the WAL on close)
/// leaves a commit that is in the database file only: it must still reach the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_checkpointed_by_another_process_during_adoption_reaches_the_replica() {
    init_logging();
    let test = "a_commit_checkpointed_by_another_process_during_adoption_reaches_the_replica";
    let Some(sqlite3) = testkit::require_tool(testkit::Tool::Sqlite3, test) else {
        return;
    };
    for case in ADOPTIONS {
        let env = Env::new();
        env.session(3).await;
        set_up_adoption(&env, case).await;
        let mut options = replicator_options(&env.yaml(), &env.db);
        let (sqlite3, db, meta) = (sqlite3.clone(), env.db.clone(), env.meta());
        let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
            testkit::sqlite3_exec(
                &sqlite3,
                &db,
                "INSERT INTO t(v) VALUES (x'c0ffee'); PRAGMA wal_checkpoint(TRUNCATE);",
            );
        });
        let hook = Mutex::new(Some(hook));
        options.wrap_client = Some(Arc::new(move |inner| {
            Arc::new(BeforeAdoption {
                inner,
                meta: meta.clone(),
                hook: Mutex::new(hook.lock().unwrap().take()),
            }) as Arc<dyn ReplicaClient>
        }));
        let r = Replicator::start(options).await.unwrap();
        let action = r.handle().start_action();
        assert!(adopted_by(case, action), "{case}: {action:?}");
        assert!(
            rows(&env.db).iter().any(|(_, v)| v == &[0xc0, 0xff, 0xee]),
            "{case}: the other process's row is not in the database"
        );
        r.sync_and_wait().await.unwrap();
        r.shutdown().await.unwrap();
        assert_the_replica_has_the_database(&env, case).await;
    }
}

/// Re-encodes the LTX file at `path` with `header` and `page` applied to its header and to
/// each of its pages.
fn rewrite_ltx(path: &Path, header: impl Fn(&mut ltx::Header), page: impl Fn(u32, &mut [u8])) {
    let bytes = std::fs::read(path).unwrap();
    let mut dec = ltx::Decoder::new(&bytes[..]).unwrap();
    let mut h = *dec.header();
    header(&mut h);
    let mut enc = ltx::Encoder::new(Vec::new(), h).unwrap();
    let mut buf = vec![0u8; h.page_size as usize];
    while let Some(pgno) = dec.next_page(&mut buf).unwrap() {
        page(pgno, &mut buf);
        enc.write_page(pgno, &buf).unwrap();
    }
    dec.finish().unwrap();
    std::fs::write(path, enc.finish().unwrap().writer).unwrap();
}

/// Another writer's history on the replica path: its file of our newest TXID coincides with
/// ours in timestamp, commit and pages (a millisecond clash of two writers making the same
/// change), but was read from another WAL (other salts and offset) and the TXIDs before it
/// hold other bytes. Two histories, refused: only a copy adopted at start-up (re-headed to
/// the start of a WAL, with no WAL bytes) may differ from the replica's file in where it was
/// read from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coinciding_file_read_from_another_wal_is_another_history() {
    init_logging();
    let env = Env::new();
    env.session(3).await;
    let newest = replica_txid(&env).await;
    let other = env.dir.join("other");
    copy_dir(&env.dir.join("replica"), &other);
    let l0 = |t: u64| {
        let t = ltx::TxId(t);
        other.join("ltx/0").join(FileName::new(t, t).to_string())
    };
    rewrite_ltx(&l0(newest - 1), |_| {}, |_, p| p[p.len() - 1] ^= 0xff);
    rewrite_ltx(
        &l0(newest),
        |h| {
            h.wal_salt1 ^= 1;
            h.wal_offset += 4120;
        },
        |_, _| {},
    );
    let yaml = env.yaml().replace(&env.url, &file_url(&other));
    let before = std::fs::read(&env.db).unwrap();
    let result = start_replicator(&yaml, &env.db).await;
    let (kind, msg) = divergence(match result {
        Ok(r) => panic!("started: {:?}", r.handle().start_action()),
        Err(e) => e,
    });
    assert!(
        matches!(kind, DivergenceKind::TxidDiffers { txid } if txid.get() == newest),
        "{kind:?}: {msg}"
    );
    assert_eq!(std::fs::read(&env.db).unwrap(), before);
}

/// Like [`Env::session`], but the database's last connection does not checkpoint on close,
/// as after a crash: the committed (and replicated) frames stay in the WAL.
async fn session_leaving_the_wal(env: &Env, n: u64) {
    let r = env.start().await.unwrap();
    for seq in 1..=n {
        write(&env.db, 1);
        r.handle().notify_commit(CommitNotice { seq });
        r.sync_and_wait().await.unwrap();
    }
    let last = rusqlite::Connection::open(&env.db).unwrap();
    last.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    // A query opens its WAL and so makes it one of the database's connections.
    let _: i64 = last
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    r.shutdown().await.unwrap();
    drop(last);
}

/// A catch-up restores the replica's latest state next to the database, then removes the
/// database's `-wal`, `-shm` and `-journal` and renames the new file into place. Stopped in
/// between (here: the `-journal` is a directory the test put there, so removing it fails
/// after the WAL is gone), the next start must not take the database for diverged: it was
/// exactly at its replicated position, and that state must still be in the database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_that_fails_while_swapping_the_database_is_no_divergence() {
    init_logging();
    let env = Env::new();
    env.session(2).await;
    session_leaving_the_wal(&env, 2).await;
    let saved = env.dir.join("saved");
    copy_db(&env.dir, &saved);
    assert!(
        std::fs::metadata(saved.join("app.db-wal")).unwrap().len() > 32,
        "the saved WAL should hold frames"
    );
    env.session(2).await;
    put_back(&env, &saved);
    let _ = std::fs::remove_file(env.dir.join("app.db-shm"));
    let journal = env.dir.join("app.db-journal");
    std::fs::create_dir_all(journal.join("in-the-way")).unwrap();
    let failed = env.start().await;
    assert!(failed.is_err(), "the swap should have failed");
    std::fs::remove_dir_all(&journal).unwrap();

    let r = env
        .start()
        .await
        .unwrap_or_else(|e| panic!("refused after the interrupted catch-up: {e}"));
    assert!(
        matches!(r.handle().start_action(), StartAction::CaughtUp { .. }),
        "{:?}",
        r.handle().start_action()
    );
    r.shutdown().await.unwrap();
    assert_the_replica_has_the_database(&env, "after the catch-up").await;
}
