//! Our checkpoints against another process (the sqlite3 CLI) that commits, holds the write
//! lock or runs any `PRAGMA wal_checkpoint` mode at the exact points of a checkpoint where a
//! commit could be lost or a snapshot mislabelled. The points are reached through the
//! syncer's test hook ([`SyncHook`]), so every race is forced, never left to timing. The
//! check is always the real outcome: the replica, restored by us and by the real Litestream,
//! holds exactly the database's committed rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ltx::TxId;
use replication::ReplicaClient;
use replication::internals::CheckpointMode::{self, Passive, Truncate};
use replication::internals::FileClient;
use replication::internals::Policy;
use replication::internals::{SyncHook, SyncPoint, SyncSettings, Syncer};
use replication::restore::IntegrityCheck;
use replication::restore::RestoreTarget;
use rusqlite::Connection;
use testkit::Tool;
use testkit::litestream::Litestream;

type Action = Box<dyn FnOnce() -> String + Send>;

/// Actions that run once, the first time a sync reaches their point, and what they said;
/// the database's contents after each one join the states it went through.
#[derive(Clone)]
struct Gaps {
    pending: Arc<Mutex<Vec<(SyncPoint, Action)>>>,
    log: Arc<Mutex<Vec<String>>>,
    states: States,
}

/// Every state (rows of `t`, `x`, `y`) the database went through, in commit order.
#[derive(Clone)]
struct States {
    db: PathBuf,
    seen: Arc<Mutex<Vec<Vec<String>>>>,
}

impl States {
    fn record(&self) {
        let now = contents(&self.db);
        let mut seen = self.seen.lock().unwrap();
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }

    fn position_of(&self, state: &[String]) -> Option<usize> {
        self.seen.lock().unwrap().iter().position(|s| s == state)
    }
}

impl Gaps {
    fn at(&self, point: SyncPoint, action: impl FnOnce() -> String + Send + 'static) {
        self.pending.lock().unwrap().push((point, Box::new(action)));
    }

    fn hook(&self) -> SyncHook {
        let gaps = self.clone();
        SyncHook(Arc::new(move |point| {
            let due: Vec<Action> = {
                let mut pending = gaps.pending.lock().unwrap();
                let (due, rest) = std::mem::take(&mut *pending)
                    .into_iter()
                    .partition(|(p, _)| *p == point);
                *pending = rest;
                due.into_iter().map(|(_, a)| a).collect()
            };
            for action in due {
                let said = action();
                gaps.states.record();
                gaps.log.lock().unwrap().push(format!("{point:?}: {said}"));
            }
        }))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Every action ran, and none of them failed.
    fn assert_all_ran_ok(&self) {
        assert!(
            self.pending.lock().unwrap().is_empty(),
            "some points were never reached; ran: {}",
            self.log()
        );
        let log = self.log();
        assert!(!log.contains("error"), "{log}");
    }
}

/// A database with tables `t`, `x` and `y`, its file replica, and the other process.
struct Scene {
    _t: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
    replica: PathBuf,
    sqlite3: PathBuf,
    ls: Litestream,
    /// The test's own writer connection (rows of `t`).
    conn: Connection,
    gaps: Gaps,
}

impl Scene {
    fn new(test: &str) -> Option<Scene> {
        init_logging();
        let ls = Litestream::require(test)?;
        let sqlite3 = testkit::require_tool(Tool::Sqlite3, test)?;
        let (t, dir) = tempdir();
        let db = dir.join("app.db");
        let conn = wal_db(&db);
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch(
            "CREATE TABLE x(id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE y(id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        let states = States {
            db: db.clone(),
            seen: Arc::default(),
        };
        let sc = Scene {
            _t: t,
            replica: dir.join("replica"),
            dir,
            db,
            sqlite3,
            ls,
            conn,
            gaps: Gaps {
                pending: Arc::default(),
                log: Arc::default(),
                states,
            },
        };
        sc.write(30, 700);
        Some(sc)
    }

    /// Commits `rows` rows of `size` bytes into `t` (and records the new state).
    fn write(&self, rows: i64, size: i64) {
        insert(&self.conn, rows, size);
        self.gaps.states.record();
    }

    fn syncer(&self, settings: SyncSettings) -> Syncer {
        syncer(
            &self.db,
            SyncSettings {
                hook: Some(self.gaps.hook()),
                ..settings
            },
        )
    }

    /// An action that runs `sql` in another process (the sqlite3 CLI, which does not wait
    /// for locks) and says how it went.
    fn other(&self, sql: &str) -> impl FnOnce() -> String + Send + 'static {
        let (sqlite3, db, sql) = (self.sqlite3.clone(), self.db.clone(), sql.to_string());
        move || other_process(&sqlite3, &db, &sql)
    }

    /// Publishes the local L0 files and restores the replica: at every TXID (with us) a state
    /// the database went through, never going back; the latest (with us and with Litestream)
    /// the database's rows now.
    fn check(&self, s: &Syncer) {
        publish(s, &self.replica);
        let expected = contents(&self.db);
        let last = s.position().txid;
        let mut previous = 0;
        for txid in 1..=last.get() {
            let out = self.dir.join(format!("ours-{txid}.db"));
            restore_file_replica(&self.replica, &out, Some(TxId(txid)));
            let got = contents(&out);
            let Some(at) = self.gaps.states.position_of(&got) else {
                let states: Vec<String> = self
                    .gaps
                    .states
                    .seen
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| summary(s))
                    .collect();
                panic!(
                    "the replica at TXID {txid} holds a state the database never had: {}\n\
                     the database's states: {states:#?}\nthe other process: {}",
                    summary(&got),
                    self.gaps.log()
                );
            };
            assert!(
                at >= previous,
                "the replica went back in time at TXID {txid}"
            );
            previous = at;
        }
        let ours = self.dir.join(format!("ours-{}.db", last.get()));
        let theirs = self.dir.join(format!("theirs-{last}.db"));
        restore(&self.ls, &file_url(&self.replica), &theirs, &[]);
        let got = contents(&ours);
        assert!(
            got == expected,
            "the latest state on the replica: {}\nthe database: {}\nthe other process: {}",
            summary(&got),
            summary(&expected),
            self.gaps.log()
        );
        assert_eq!(
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
            "Litestream's restore differs from ours"
        );
    }
}

/// Runs `sql` with the sqlite3 CLI (another process, busy timeout 0): `ok …` or `error …`.
fn other_process(sqlite3: &Path, db: &Path, sql: &str) -> String {
    let out = std::process::Command::new(sqlite3)
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().replace('\n', " ");
    if out.status.success() {
        format!("ok {sql} -> {}", text(&out.stdout))
    } else {
        format!("error {sql} -> {}", text(&out.stderr))
    }
}

/// Every row of `t`, `x` and `y` as `table id length hash` (the tables a database lacks
/// are left out: a restore at a TXID before they existed).
fn contents(db: &Path) -> Vec<String> {
    use std::hash::{Hash, Hasher};
    let conn = Connection::open(db).unwrap();
    let mut out = Vec::new();
    for table in ["t", "x", "y"] {
        let Ok(mut stmt) = conn.prepare(&format!("SELECT id, v FROM {table} ORDER BY id")) else {
            out.push(format!("{table} missing"));
            continue;
        };
        let rows = stmt
            .query_map([], |r| {
                let v: Vec<u8> = match r.get_ref(1)? {
                    rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => {
                        b.to_vec()
                    }
                    _ => Vec::new(),
                };
                let mut h = std::collections::hash_map::DefaultHasher::new();
                v.hash(&mut h);
                Ok(format!(
                    "{table} {} {} {:016x}",
                    r.get::<_, i64>(0)?,
                    v.len(),
                    h.finish()
                ))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

/// A short account of a state: the row ids of each table.
fn summary(state: &[String]) -> String {
    let mut out = String::new();
    for table in ["t", "x", "y"] {
        let ids: Vec<&str> = state
            .iter()
            .filter_map(|r| r.strip_prefix(table)?.strip_prefix(' '))
            .map(|r| r.split(' ').next().unwrap_or(""))
            .collect();
        out.push_str(&format!("{table}: [{}] ", ids.join(",")));
    }
    out
}

/// Our restore of a file replica (`txid`: that state, else the latest), fully checked.
fn restore_file_replica(replica: &Path, out: &Path, txid: Option<TxId>) {
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(replica));
    let target = txid.map_or(RestoreTarget::Latest, RestoreTarget::TxId);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(restore_ours(&client, target, out, IntegrityCheck::Full))
        .unwrap();
}

/// A PASSIVE checkpoint after every sync that reads the WAL to its end.
fn checkpoint_every_sync() -> SyncSettings {
    SyncSettings {
        checkpoints: Policy {
            min_checkpoint_page_count: 1,
            min_checkpoint_gap: Duration::ZERO,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Checkpoints only when asked ([`Syncer::force_checkpoint`]).
fn checkpoint_when_asked() -> SyncSettings {
    SyncSettings {
        checkpoints: Policy {
            min_checkpoint_page_count: 1_000_000,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Hazard: a threshold checkpoint right after a sync copied commits that had landed after
/// that sync into the database file (a PASSIVE checkpoint, outside the barrier), then let
/// its read transactions go before the barrier. With every frame backfilled and no read
/// mark left, the next writer restarted the WAL from the top; the sealed sync found the last
/// synced frame intact with its old salts, took it for an ordinary restart and synced from
/// offset 32. The commit in between was in no LTX file.
#[test]
fn a_commit_landing_after_the_sync_before_a_checkpoint_reaches_the_replica() {
    let Some(sc) =
        Scene::new("a_commit_landing_after_the_sync_before_a_checkpoint_reaches_the_replica")
    else {
        return;
    };
    let mut s = sc.syncer(checkpoint_every_sync());
    s.sync().unwrap();
    sc.write(20, 1000);
    // After the sync, before anything of the checkpoint: a commit no L0 file holds yet.
    sc.gaps.at(
        SyncPoint::CheckpointStart(Passive),
        sc.other("INSERT INTO x(v) VALUES ('committed after the sync')"),
    );
    // Before the barrier: a commit (two pages) that restarts the WAL if nothing of ours
    // holds it.
    sc.gaps.at(
        SyncPoint::BeforeBarrier(Passive),
        sc.other("INSERT INTO y(v) VALUES (printf('%.6000c', 'y'))"),
    );
    s.sync().unwrap();
    sc.gaps.assert_all_ran_ok();
    s.sync().unwrap();
    sc.check(&s);
}

/// Hazard: after a TRUNCATE checkpoint, whatever failed before the boundary file existed
/// (here: another process holding the write lock past the busy timeout, so the
/// `_litestream_seq` bump fails) left the syncer believing it had read the WAL to its end,
/// so the truncated WAL was taken for an expected truncation and synced incrementally from
/// offset 32; commits that slipped in between the last sync and the TRUNCATE were in no LTX
/// file. Also when the process dies in between (a new syncer continues).
#[test]
fn a_failure_right_after_a_truncate_checkpoint_leads_to_a_full_file_not_to_lost_commits() {
    let test =
        "a_failure_right_after_a_truncate_checkpoint_leads_to_a_full_file_not_to_lost_commits";
    for crash in [false, true] {
        let Some(sc) = Scene::new(test) else {
            return;
        };
        let mut s = sc.syncer(checkpoint_when_asked());
        s.sync().unwrap();
        sc.write(20, 1000);
        s.sync().unwrap();
        // Between the sync before the TRUNCATE and the TRUNCATE: the TRUNCATE copies this
        // commit into the database file and cuts it out of the WAL.
        sc.gaps.at(
            SyncPoint::BeforeCheckpoint(Truncate),
            sc.other("INSERT INTO x(v) VALUES ('slipped in before the truncate')"),
        );
        let locker = Arc::new(Mutex::new(Connection::open(&sc.db).unwrap()));
        {
            let locker = locker.clone();
            sc.gaps.at(SyncPoint::AfterCheckpoint(Truncate), move || {
                locker
                    .lock()
                    .unwrap()
                    .execute_batch("BEGIN IMMEDIATE")
                    .map(|()| "ok: the write lock is held".to_string())
                    .unwrap_or_else(|e| format!("error {e}"))
            });
        }
        let failed = s.force_checkpoint(Truncate);
        sc.gaps.assert_all_ran_ok();
        assert!(failed.is_err(), "the checkpoint went through: {failed:?}");
        locker.lock().unwrap().execute_batch("ROLLBACK").unwrap();
        if crash {
            drop(s);
            s = sc.syncer(checkpoint_when_asked());
        }
        let report = s.sync().unwrap();
        sc.check(&s);
        assert!(
            report.files.first().is_some_and(|f| f.full.is_some()),
            "crash: {crash}; the next file is not a full one: {:?}",
            report.files
        );
    }
}

/// Hazard (the same loss, with nothing of ours holding the WAL): while replication is
/// stopped, another process commits, checkpoints everything into the database file, and
/// commits again, which restarts the WAL from the top. The frame the position ends on is
/// still intact with its old salts, so the WAL looked restarted right after our last file,
/// and the commit in between was in no LTX file. The old generation going on after the
/// position now means a full file.
#[test]
fn commits_made_while_replication_is_stopped_survive_a_wal_restart() {
    let Some(sc) = Scene::new("commits_made_while_replication_is_stopped_survive_a_wal_restart")
    else {
        return;
    };
    let mut s = sc.syncer(checkpoint_when_asked());
    s.sync().unwrap();
    drop(s);
    // (The scene's own connection stays open, so the other process is not the last one and
    // leaves the WAL in place when it exits.)
    let said = other_process(
        &sc.sqlite3,
        &sc.db,
        "INSERT INTO x(v) VALUES ('while replication is stopped'); \
         PRAGMA wal_checkpoint(PASSIVE); \
         INSERT INTO y(v) VALUES ('restarts the WAL');",
    );
    assert!(said.starts_with("ok"), "{said}");
    sc.gaps.states.record();
    let mut s = sc.syncer(checkpoint_when_asked());
    s.sync().unwrap();
    sc.check(&s);
}

/// Hazard (found by the torture harness): while replication is stopped, another process
/// restarts the WAL twice, and the second generation overwrites every frame of the first
/// while staying short of the position. The frame the position ends on is intact with its
/// old salts, the old generation did not go on, and the frames before it hold only the
/// newest and the old salts: the WAL looked restarted once, right after our last file, and
/// the first restart's commit (a page the second one does not touch) was in no LTX file, only
/// in the database file. A header whose
/// salt-1 is not the old one plus one (SQLite adds one per restart) means a full file.
#[test]
fn two_wal_restarts_while_replication_is_stopped_lose_nothing() {
    let Some(sc) = Scene::new("two_wal_restarts_while_replication_is_stopped_lose_nothing") else {
        return;
    };
    let mut s = sc.syncer(checkpoint_when_asked());
    s.sync().unwrap();
    drop(s);
    let said = other_process(
        &sc.sqlite3,
        &sc.db,
        "PRAGMA wal_checkpoint(PASSIVE); \
         INSERT INTO y(v) VALUES ('first restart'); \
         PRAGMA wal_checkpoint(PASSIVE); \
         INSERT INTO x(v) VALUES ('second restart'); \
         INSERT INTO x(v) VALUES ('overwrites the first generation');",
    );
    assert!(said.starts_with("ok"), "{said}");
    sc.gaps.states.record();
    let mut s = sc.syncer(checkpoint_when_asked());
    let report = s.sync().unwrap();
    sc.check(&s);
    assert!(
        report.files.first().is_some_and(|f| f.full.is_some()),
        "the next file is not a full one: {:?}",
        report.files
    );
}

/// Another process commits, and checkpoints PASSIVE or TRUNCATE (the modes that copy, and the
/// one that also restarts and truncates; FULL and RESTART are between them), at every point
/// of our checkpoints (threshold PASSIVE after a sync, forced PASSIVE, forced TRUNCATE),
/// followed by a commit of ours: the replica restores, at every TXID, to a state the database
/// went through, and at the end to its rows.
#[test]
fn another_process_writing_and_checkpointing_at_any_point_of_our_checkpoints_loses_nothing() {
    let test =
        "another_process_writing_and_checkpointing_at_any_point_of_our_checkpoints_loses_nothing";
    // Each point, and the next one (where a commit of ours follows).
    let points = |mode| {
        [
            (
                SyncPoint::CheckpointStart(mode),
                SyncPoint::BeforeBarrier(mode),
            ),
            (
                SyncPoint::BeforeBarrier(mode),
                SyncPoint::BeforeCheckpoint(mode),
            ),
            (
                SyncPoint::BeforeCheckpoint(mode),
                SyncPoint::AfterCheckpoint(mode),
            ),
            (SyncPoint::AfterCheckpoint(mode), SyncPoint::SyncDone),
        ]
    };
    let others = [
        "INSERT INTO x(v) VALUES ('other')",
        "INSERT INTO x(v) VALUES ('other'); PRAGMA wal_checkpoint(PASSIVE);",
        "INSERT INTO x(v) VALUES ('other'); PRAGMA wal_checkpoint(TRUNCATE);",
        "PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO y(v) VALUES ('after its checkpoint');",
    ];
    #[derive(Debug, Clone, Copy)]
    enum Ours {
        Threshold,
        Forced(CheckpointMode),
    }
    for ours in [
        Ours::Threshold,
        Ours::Forced(Passive),
        Ours::Forced(Truncate),
    ] {
        let mode = match ours {
            Ours::Threshold => Passive,
            Ours::Forced(m) => m,
        };
        for (point, next) in points(mode) {
            for other in others {
                let Some(sc) = Scene::new(test) else {
                    return;
                };
                let settings = match ours {
                    Ours::Threshold => checkpoint_every_sync(),
                    Ours::Forced(_) => checkpoint_when_asked(),
                };
                let mut s = sc.syncer(settings);
                s.sync().unwrap();
                sc.write(20, 1000);
                sc.gaps.at(point, sc.other(other));
                // A commit of ours (two pages) at the next point: one that restarts the WAL
                // from the top if nothing holds it there.
                let db = sc.db.clone();
                sc.gaps.at(next, move || {
                    let c = Connection::open(&db).unwrap();
                    c.busy_timeout(Duration::ZERO).unwrap();
                    match c.execute("INSERT INTO y(v) VALUES (printf('%.6000c', 'o'))", []) {
                        Ok(_) => "ok our insert".into(),
                        Err(e) => format!("our insert refused: {e}"),
                    }
                });
                match ours {
                    Ours::Threshold => {
                        s.sync().unwrap();
                    }
                    Ours::Forced(m) => {
                        s.sync().unwrap();
                        // A checkpoint may fail (the other process holds a lock): the next
                        // sync must still bring everything.
                        let _ = s.force_checkpoint(m);
                    }
                }
                sc.write(3, 100);
                s.sync().unwrap();
                // (A commit at `SyncDone` comes after the sync that reached it.)
                s.sync().unwrap();
                let log = sc.gaps.log();
                eprintln!("{ours:?} at {point:?}: {log}");
                assert!(
                    sc.gaps.pending.lock().unwrap().is_empty(),
                    "{ours:?}: {point:?} or {next:?} never reached"
                );
                sc.check(&s);
            }
        }
    }
}

/// Hazard: a snapshot waiting for the checkpoint lock read the replicator's position before
/// the sync that had just checkpointed published its own, so it labelled the database file
/// — already holding that sync's pages — with the older TXID: `--txid` restores (and the
/// start-up comparison) at that TXID got a state it never had. Forced: the snapshot runs in
/// the moment between the checkpointing sync's end and the replicator's next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_right_after_a_checkpoint_holds_the_pages_of_its_txid() {
    let test = "a_snapshot_right_after_a_checkpoint_holds_the_pages_of_its_txid";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let conn = wal_db(&db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    insert(&conn, 20, 500);
    // Syncs only when asked (monitor-interval), a checkpoint whenever the WAL holds two frames
    // (truncate-page-n: PASSIVE first, which restarts the WAL), no scheduled snapshot.
    let yaml = format!(
        "snapshot:\n  interval: 24h\n  retention: 24h\n\
         dbs:\n  - path: {}\n    monitor-interval: 1h\n    truncate-page-n: 2\n    replica:\n      url: {}\n",
        db.display(),
        file_url(&replica)
    );
    let armed = Arc::new(AtomicBool::new(false));
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (resume_tx, resume) = std::sync::mpsc::channel::<()>();
    let resume = Mutex::new(resume);
    let mut options = replicator_options(&yaml, &db);
    {
        let armed = armed.clone();
        options.sync_hook = Some(SyncHook(Arc::new(move |point| {
            if point == SyncPoint::SyncDone && armed.swap(false, Ordering::SeqCst) {
                reached_tx.send(()).unwrap();
                resume.lock().unwrap().recv().unwrap();
            }
        })));
    }
    let r = replication::Replicator::start(options).await.unwrap();
    wait_for_the_start_up_snapshot(&replica).await;
    // A sync leaves the WAL past the threshold, so the next sync checkpoints.
    insert(&conn, 20, 500);
    r.sync_and_wait().await.unwrap();
    insert(&conn, 20, 500);
    armed.store(true, Ordering::SeqCst);
    let (synced, snapshot) = tokio::join!(r.sync_and_wait(), async {
        reached.recv().await.unwrap();
        let snapshot = r.snapshot_now().await;
        resume_tx.send(()).unwrap();
        snapshot
    });
    synced.unwrap();
    let snapshot = snapshot.unwrap();
    r.shutdown().await.unwrap();
    let txid = snapshot.name.max;

    // The snapshot alone, and the L0 files alone, restored at its TXID.
    let only = |level: &str, to: &Path| {
        let src = replica.join("ltx").join(level);
        let dst = to.join("ltx").join(level);
        std::fs::create_dir_all(&dst).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    };
    let (snap_replica, l0_replica) = (dir.join("only-snapshot"), dir.join("only-l0"));
    only("9", &snap_replica);
    only("0", &l0_replica);
    let from_snapshot = dir.join("from-snapshot.db");
    let from_l0 = dir.join("from-l0.db");
    let theirs = dir.join("theirs.db");
    // (No integrity check on the snapshot's restore: a mixed image may well be malformed,
    // and the comparison below says more.)
    for (replica, out, target, check) in [
        (
            &snap_replica,
            &from_snapshot,
            RestoreTarget::Latest,
            IntegrityCheck::None,
        ),
        (
            &l0_replica,
            &from_l0,
            RestoreTarget::TxId(txid),
            IntegrityCheck::Full,
        ),
    ] {
        let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(replica));
        restore_ours(&client, target, out, check).await.unwrap();
    }
    restore(
        &ls,
        &file_url(&replica),
        &theirs,
        &["-txid", &txid.to_string()],
    );
    assert!(
        std::fs::read(&from_snapshot).unwrap() == std::fs::read(&from_l0).unwrap(),
        "the snapshot labelled {txid} holds other pages than the L0 files up to {txid} ({} rows)",
        rows(&from_l0).len()
    );
    assert_eq!(
        std::fs::read(&theirs).unwrap(),
        std::fs::read(&from_l0).unwrap(),
        "Litestream's restore at {txid}"
    );
}

/// Hazard: a checkpoint that fails after its early copy (here: another process holds the
/// write lock past the busy timeout, so the barrier cannot be taken) leaves commits in the
/// database file that no L0 file holds yet; a snapshot taken before the next sync would
/// label that file with the older position. Such a snapshot must wait (or hold exactly the
/// pages of its TXID), and one taken after the next sync is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_after_a_checkpoint_that_failed_midway_holds_the_pages_of_its_txid() {
    let test = "a_snapshot_after_a_checkpoint_that_failed_midway_holds_the_pages_of_its_txid";
    let Some(ls) = Litestream::require(test) else {
        return;
    };
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let conn = wal_db(&db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    insert(&conn, 5, 500);
    // Table `x` lives in the database file only (no frame of it in the WAL), so a newer
    // version of its page there shows through any image of the file.
    conn.execute_batch("CREATE TABLE x(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    // Syncs only when asked, and the first threshold checkpoint is the one under test (the
    // WAL is below 30 frames until the big insert; one threshold checkpoint per hour).
    let yaml = format!(
        "snapshot:\n  interval: 24h\n  retention: 24h\n\
         dbs:\n  - path: {}\n    monitor-interval: 1h\n    busy-timeout: 1s\n    min-checkpoint-page-count: 30\n    replica:\n      url: {}\n",
        db.display(),
        file_url(&replica)
    );
    let gaps = Gaps {
        pending: Arc::default(),
        log: Arc::default(),
        states: States {
            db: db.clone(),
            seen: Arc::default(),
        },
    };
    // After the sync, before the checkpoint: a commit by another connection, which the
    // early copy takes into the database file.
    {
        let db = db.clone();
        gaps.at(SyncPoint::CheckpointStart(Passive), move || {
            let c = Connection::open(&db).unwrap();
            c.execute("INSERT INTO x(v) VALUES ('after the sync')", [])
                .unwrap();
            "ok committed after the sync".into()
        });
    }
    // Before the barrier: another connection takes the write lock and keeps it.
    let locker = Arc::new(Mutex::new(Connection::open(&db).unwrap()));
    {
        let locker = locker.clone();
        gaps.at(SyncPoint::BeforeBarrier(Passive), move || {
            locker
                .lock()
                .unwrap()
                .execute_batch("BEGIN IMMEDIATE")
                .unwrap();
            "ok the write lock is held".into()
        });
    }
    // At the end of that sync, a snapshot runs (before anything else of the replicator).
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (resume_tx, resume) = std::sync::mpsc::channel::<()>();
    let resume = Mutex::new(resume);
    let armed = Arc::new(AtomicBool::new(false));
    let mut options = replicator_options(&yaml, &db);
    {
        let (armed, inner) = (armed.clone(), gaps.hook());
        options.sync_hook = Some(SyncHook(Arc::new(move |point| {
            (inner.0)(point);
            if point == SyncPoint::SyncDone && armed.swap(false, Ordering::SeqCst) {
                reached_tx.send(()).unwrap();
                resume.lock().unwrap().recv().unwrap();
            }
        })));
    }
    let r = replication::Replicator::start(options).await.unwrap();
    wait_for_the_start_up_snapshot(&replica).await;
    insert(&conn, 100, 2000);
    armed.store(true, Ordering::SeqCst);
    let (synced, during) = tokio::join!(r.sync_and_wait(), async {
        reached.recv().await.unwrap();
        let snapshot = r.snapshot_now().await;
        resume_tx.send(()).unwrap();
        snapshot
    });
    synced.unwrap();
    gaps.assert_all_ran_ok();
    locker.lock().unwrap().execute_batch("ROLLBACK").unwrap();
    // The next sync has everything; a snapshot now is whole.
    r.sync_and_wait().await.unwrap();
    let after = r.snapshot_now().await.unwrap();
    r.shutdown().await.unwrap();

    let mut snapshots = vec![after];
    match during {
        Ok(info) => snapshots.push(info),
        Err(e) => eprintln!("the snapshot during the failed checkpoint waited: {e}"),
    }
    for (i, snapshot) in snapshots.iter().enumerate() {
        let txid = snapshot.name.max;
        let (from_snapshot, from_l0) = (
            dir.join(format!("snapshot-{i}.db")),
            dir.join(format!("l0-{i}.db")),
        );
        let one = dir.join(format!("one-snapshot-{i}"));
        std::fs::create_dir_all(one.join("ltx/9")).unwrap();
        std::fs::copy(
            replica.join("ltx/9").join(snapshot.name.to_string()),
            one.join("ltx/9").join(snapshot.name.to_string()),
        )
        .unwrap();
        let l0 = dir.join(format!("only-l0-{i}"));
        std::fs::create_dir_all(l0.join("ltx/0")).unwrap();
        for e in std::fs::read_dir(replica.join("ltx/0")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), l0.join("ltx/0").join(e.file_name())).unwrap();
        }
        for (src, out, target, check) in [
            (
                &one,
                &from_snapshot,
                RestoreTarget::Latest,
                IntegrityCheck::None,
            ),
            (
                &l0,
                &from_l0,
                RestoreTarget::TxId(txid),
                IntegrityCheck::Full,
            ),
        ] {
            let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(src));
            restore_ours(&client, target, out, check).await.unwrap();
        }
        assert!(
            std::fs::read(&from_snapshot).unwrap() == std::fs::read(&from_l0).unwrap(),
            "the snapshot labelled {txid} holds other pages than the L0 files up to {txid}"
        );
    }
    let theirs = dir.join("theirs.db");
    restore(&ls, &file_url(&replica), &theirs, &[]);
    assert_eq!(rows(&theirs), rows(&db));
}

/// Hazard: under the barrier, once the checkpoint proper had run, the reader could not take
/// its read transaction again, and the pin, taken only then to stand in for it, failed the
/// same way (the same read: here another process had dropped `_litestream_seq` just before
/// the barrier; an I/O error would do too). When the barrier ended nothing of ours held the
/// WAL, and the syncer still believed it had read the WAL to its end: another process
/// committed, truncated the WAL and committed again, the next sync took the short WAL for an
/// expected truncation and synced from offset 32, and the commit in between was in no LTX
/// file. The pin is now taken again before the reader lets go.
#[test]
fn the_wal_stays_held_when_the_reader_cannot_read_again_after_the_checkpoint() {
    let Some(sc) =
        Scene::new("the_wal_stays_held_when_the_reader_cannot_read_again_after_the_checkpoint")
    else {
        return;
    };
    let mut s = sc.syncer(checkpoint_when_asked());
    s.sync().unwrap();
    sc.write(20, 1000);
    s.sync().unwrap();
    sc.gaps.at(
        SyncPoint::BeforeBarrier(Passive),
        sc.other("DROP TABLE _litestream_seq"),
    );
    let failed = s.force_checkpoint(Passive);
    sc.gaps.assert_all_ran_ok();
    assert!(failed.is_err(), "the checkpoint went through: {failed:?}");
    // The table is back, so our reads work again; in between, nothing else of ours runs.
    let said = other_process(
        &sc.sqlite3,
        &sc.db,
        "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER); \
         INSERT INTO x(v) VALUES ('while nothing of ours holds the WAL'); \
         PRAGMA wal_checkpoint(TRUNCATE); \
         INSERT INTO y(v) VALUES ('after the truncation');",
    );
    assert!(said.starts_with("ok"), "{said}");
    sc.gaps.states.record();
    s.sync().unwrap();
    sc.check(&s);
}

/// Hazard (latency, not loss): a sync published its commits only once the checkpoint it ran
/// after writing their L0 file was over, so their upload — and a synchronous write waiting
/// for it — waited for the whole checkpoint (its WAL and database fsyncs). The checkpoint is
/// held at its start here until the commit is confirmed on the replica: confirmed, it was not
/// waited for. Then the replica, restored, holds the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reaches_the_replica_while_the_checkpoint_after_its_sync_runs() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let conn = wal_db(&db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    // Syncs only when a commit is notified (monitor-interval), and a checkpoint after every
    // sync that leaves two frames in the WAL (truncate-page-n: PASSIVE first).
    let yaml = format!(
        "snapshot:\n  interval: 24h\n  retention: 24h\n\
         dbs:\n  - path: {}\n    monitor-interval: 1h\n    truncate-page-n: 2\n    replica:\n      url: {}\n",
        db.display(),
        file_url(&replica)
    );
    let mut options = replicator_options(&yaml, &db);
    let (armed, mut reached, resume_tx) = hold_next_passive_checkpoint(&mut options);
    let r = replication::Replicator::start(options).await.unwrap();
    wait_for_the_start_up_snapshot(&replica).await;
    let handle = r.handle();
    // A sync leaves the WAL past the threshold, so the next sync checkpoints.
    insert(&conn, 20, 500);
    handle.notify_commit(replication::CommitNotice { seq: 1 });
    handle.wait_commit_replicated(1).await.unwrap();
    insert(&conn, 20, 500);
    armed.store(true, Ordering::SeqCst);
    handle.notify_commit(replication::CommitNotice { seq: 2 });
    tokio::time::timeout(Duration::from_secs(120), reached.recv())
        .await
        .expect("the sync after the commit did not checkpoint")
        .unwrap();
    // The checkpoint is under way (held at its start); the commit's file is written.
    let confirmed =
        tokio::time::timeout(Duration::from_secs(60), handle.wait_commit_replicated(2)).await;
    resume_tx.send(()).unwrap();
    let positions = confirmed
        .expect(
            "the commit was not confirmed on the replica while the checkpoint after its sync ran",
        )
        .unwrap();
    r.shutdown().await.unwrap();

    // The replica at the confirmed TXID holds the commit.
    let out = dir.join("restored.db");
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(&replica));
    restore_ours(
        &client,
        RestoreTarget::TxId(positions.replicated_txid),
        &out,
        IntegrityCheck::Full,
    )
    .await
    .unwrap();
    assert_eq!(rows(&out), rows(&db));
}

/// Cost (PUTs): with nobody waiting for a commit, a sync that checkpoints goes up as ONE
/// object, its file from before the checkpoint and the checkpoint's own together. Published
/// before its checkpoint (which only a synchronous waiter needs), its first file went up at
/// once and the checkpoint's in a second object: two PUTs per sync, and under a heavy write
/// load every sync checkpoints. The checkpoint is held at its start (up to 2 s, or until an
/// object shows up) so that an early upload has all the time it needs; the test never waits
/// through the handle (a waiter is what publishes early).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointing_sync_nobody_waits_for_is_one_object_on_the_replica() {
    init_logging();
    let (_t, dir) = tempdir();
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let conn = wal_db(&db);
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    // Syncs only when a commit is notified, a checkpoint once a sync starts with 100 frames in
    // the WAL, and no compaction into L1 while the test runs (the L0 objects stay).
    let yaml = format!(
        "levels:\n  - interval: 1h\nsnapshot:\n  interval: 24h\n  retention: 24h\n\
         dbs:\n  - path: {}\n    monitor-interval: 1h\n    truncate-page-n: 100\n    replica:\n      url: {}\n",
        db.display(),
        file_url(&replica)
    );
    let mut options = replicator_options(&yaml, &db);
    let (armed, mut reached, resume_tx) = hold_next_passive_checkpoint(&mut options);
    let r = replication::Replicator::start(options).await.unwrap();
    wait_for_the_start_up_snapshot(&replica).await;
    let handle = r.handle();
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(&replica));
    let l0 = async || {
        let mut names: Vec<_> = client
            .list(replication::Level::L0, Default::default())
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        names.sort();
        names
    };
    // A commit that takes the WAL past 100 frames, on the replica (the sync that finds a WAL
    // past the threshold as it starts checkpoints: the next one).
    insert(&conn, 500, 1000);
    handle.notify_commit(replication::CommitNotice { seq: 1 });
    let before = handle.wait_commit_replicated(1).await.unwrap().local_txid;
    let objects_before = l0().await.len();

    // Nobody waits: the sync after this commit writes its file, then checkpoints.
    insert(&conn, 1, 500);
    armed.store(true, Ordering::SeqCst);
    handle.notify_commit(replication::CommitNotice { seq: 2 });
    tokio::time::timeout(Duration::from_secs(120), reached.recv())
        .await
        .expect("the sync after the commit did not checkpoint")
        .unwrap();
    // A commit while the checkpoint is held: the checkpoint's sync (under its barrier)
    // writes a file for it.
    insert(&conn, 1, 500);
    let deadline = Instant::now() + Duration::from_secs(2);
    while l0().await.len() == objects_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = l0().await;
    resume_tx.send(()).unwrap();
    // The sync ends, and its files reach the replica.
    let deadline = Instant::now() + Duration::from_secs(60);
    let local = loop {
        let p = handle.positions();
        if p.local_txid > before && p.replicated_txid == p.local_txid {
            break p.local_txid;
        }
        assert!(Instant::now() < deadline, "not replicated: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let all = l0().await;
    r.shutdown().await.unwrap();

    assert_eq!(
        during.len(),
        objects_before,
        "an object went up while the checkpoint ran: {during:?}"
    );
    let new: Vec<_> = all.into_iter().filter(|n| n.min > before).collect();
    assert_eq!(
        new.len(),
        1,
        "the checkpointing sync (TXIDs {}..={}) went up as {new:?}",
        before.get() + 1,
        local.get()
    );
    assert!(
        new[0].min == TxId(before.get() + 1) && new[0].max == local && local > new[0].min,
        "one object, holding the sync's file and the checkpoint's: {new:?}"
    );
    // The replica holds the commits.
    let out = dir.join("restored.db");
    restore_ours(
        &client,
        RestoreTarget::TxId(local),
        &out,
        IntegrityCheck::Full,
    )
    .await
    .unwrap();
    assert_eq!(rows(&out), rows(&db));
}

/// A sync hook that, once `armed` is set, holds the next PASSIVE checkpoint at its start:
/// `reached` gets a message then, and the checkpoint goes on when `resume` is sent to (or
/// after 300 s, so a failing test ends).
fn hold_next_passive_checkpoint(
    options: &mut replication::ReplicatorOptions,
) -> (
    Arc<AtomicBool>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let armed = Arc::new(AtomicBool::new(false));
    let (reached_tx, reached) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (resume_tx, resume) = std::sync::mpsc::channel::<()>();
    let resume = Mutex::new(resume);
    let hook_armed = armed.clone();
    options.sync_hook = Some(SyncHook(Arc::new(move |point| {
        if point == SyncPoint::CheckpointStart(Passive) && hook_armed.swap(false, Ordering::SeqCst)
        {
            reached_tx.send(()).unwrap();
            let _ = resume
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(300));
        }
    })));
    (armed, reached, resume_tx)
}
