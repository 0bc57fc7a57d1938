//! Start-up: restore before serving, new database/replica, continuing, catching up, and
//! refusing to start when the local database and the replica have diverged — never
//! overwriting either side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use replication::client::ListOptions;
use replication::level::Level;
use replication::plan::RestoreTarget;
use replication::restore::IntegrityCheck;
use replication::startup::{DivergenceKind, StartupError};
use replication::{CommitNotice, Replicator, StartAction, StartError};

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

    async fn replica_files(&self, level: Level) -> Vec<replication::level::LtxFileInfo> {
        let target = replication::url::parse_replica_url(&self.url).unwrap();
        let c = replication::client::open_client(&target, &Default::default())
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
