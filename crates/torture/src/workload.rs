//! The write load and what it records.
//!
//! Every write that can be recognised in the database carries a unique operation id (the
//! `op` column, copied into the `log` table by triggers in the same transaction), and the
//! harness records when it was sent, whether it was acknowledged (and when), refused, or
//! its fate is unknown (the server died under it), and whether it changed anything. The
//! oracle ([`crate::oracle`]) holds the replica against that book.
//!
//! - HTTP writers (the server's single writer): single and bulk inserts, upserts (merge and
//!   ignore duplicates), PATCH updates, DELETEs; some of them synchronous
//!   (`Prefer: durability=replicated`: a 2xx promises the write is on the replica at the
//!   TXID its `Sqlite-Rest-Txid` names; a 503 `SR001` that it was committed locally only);
//! - a second process: the `sqlite3` CLI, one process per statement (inserts, updates,
//!   deletes, and `PRAGMA wal_checkpoint(PASSIVE|FULL|RESTART|TRUNCATE)` at random moments);
//! - long read transactions on another connection that hold checkpoints back;
//! - a writer that pounces the moment a checkpoint has copied the whole WAL ([`pouncer`]);
//! - a `/health` poller recording the replicator's local TXID over time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

/// The database schema: `items` is what clients change; `log` records every change in commit
/// order (AUTOINCREMENT: a restored prefix of history has seq 1..k without a gap); `spread`
/// ([`SPREAD_SLOTS`] rows, about eight a page) records the latest log row of each slot
/// `seq * SPREAD_STEP % SPREAD_SLOTS`, so consecutive commits change different pages and a
/// commit missing
/// from a replicated state shows even when the next commit rewrote every other page it
/// touched (the end of `items` and of `log`).
pub const SCHEMA: &str = "\
CREATE TABLE items (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL,
                    pad TEXT NOT NULL DEFAULT '', op INTEGER NOT NULL);
CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, op INTEGER NOT NULL,
                  kind TEXT NOT NULL, k TEXT NOT NULL, v INTEGER, pad INTEGER);
CREATE TRIGGER items_i AFTER INSERT ON items BEGIN
  INSERT INTO log(op, kind, k, v, pad) VALUES (NEW.op, 'I', NEW.k, NEW.v, length(NEW.pad)); END;
CREATE TRIGGER items_u AFTER UPDATE ON items BEGIN
  INSERT INTO log(op, kind, k, v, pad) VALUES (NEW.op, 'U', NEW.k, NEW.v, length(NEW.pad)); END;
CREATE TRIGGER items_d AFTER DELETE ON items BEGIN
  INSERT INTO log(op, kind, k, v, pad) VALUES (OLD.op, 'D', OLD.k, NULL, NULL); END;
CREATE TABLE spread (slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, pad TEXT NOT NULL);
CREATE TRIGGER log_spread AFTER INSERT ON log BEGIN
  UPDATE spread SET seq = NEW.seq WHERE slot = NEW.seq * 9 % 64; END;
";

/// Rows of `spread` and the step between the slots of consecutive log rows (the `64` and `9`
/// in [`SCHEMA`]): about eight rows fit a page, so consecutive rows land on different pages
/// and a transaction touches at most eight of them.
pub const SPREAD_SLOTS: i64 = 64;
pub const SPREAD_STEP: i64 = 9;

/// Creates the database with the schema, in WAL mode with `page_size`.
pub fn create_db(path: &Path, page_size: u32) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(&format!("PRAGMA page_size = {page_size};"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode is {mode}");
    conn.execute_batch(SCHEMA)?;
    // About eight rows a page.
    let pad = "s".repeat(page_size as usize / 10);
    for slot in 0..SPREAD_SLOTS {
        conn.execute(
            "INSERT INTO spread(slot, seq, pad) VALUES (?1, 0, ?2)",
            (slot, &pad),
        )?;
    }
    Ok(())
}

/// What an acknowledgement promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// Committed locally (asynchronous writes, the other process's).
    Local,
    /// On the replica, at the TXID of the response's `Sqlite-Rest-Txid` (`None`: the
    /// header was missing or malformed, which the oracle reports).
    Replicated { txid: Option<u64> },
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged (committed) at this moment; `effect`: it changed at least one row, so
    /// its id is in the log.
    Acked { at: Instant, effect: bool },
    /// Refused: it must never appear.
    Failed,
    /// The answer never came (the server died, a timeout): it may or may not appear.
    Unknown,
}

/// Who wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Http,
    Cli,
    /// [`pouncer`]: writes the moment a checkpoint has copied the whole WAL.
    Pouncer,
}

/// One recorded write.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub id: u64,
    pub writer: Writer,
    pub sent: Instant,
    pub outcome: Outcome,
    /// What an acknowledgement promised (`Local` for anything not acknowledged).
    pub promise: Promise,
}

/// Every tagged write of a run.
#[derive(Debug, Default)]
pub struct OpBook {
    next: AtomicU64,
    ops: Mutex<Vec<Op>>,
    /// Untagged writes (deletes) and checkpoints, for the report.
    pub untagged: AtomicU64,
    pub checkpoints: AtomicU64,
}

impl OpBook {
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().push(op);
    }

    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }
}

/// Keys known to exist (a sample; may be stale).
#[derive(Debug, Default)]
pub struct Keys(Mutex<Vec<String>>);

const KEY_SAMPLE: usize = 4000;

impl Keys {
    fn add(&self, rng: &mut StdRng, k: String) {
        let mut keys = self.0.lock();
        if keys.len() < KEY_SAMPLE {
            keys.push(k);
        } else {
            let i = rng.random_range(0..keys.len());
            keys[i] = k;
        }
    }

    fn pick(&self, rng: &mut StdRng, n: usize) -> Vec<String> {
        let keys = self.0.lock();
        if keys.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> = (0..n)
            .map(|_| keys[rng.random_range(0..keys.len())].clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn remove(&self, gone: &[String]) {
        let gone: HashSet<&String> = gone.iter().collect();
        self.0.lock().retain(|k| !gone.contains(k));
    }

    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// What one poll of `/health` saw.
#[derive(Debug, Clone, Copy)]
pub struct HealthPoll {
    pub at: Instant,
    pub local_txid: u64,
    pub replicated_txid: u64,
    /// Checkpoints the server's replicator ran so far (all modes).
    pub checkpoints: u64,
}

/// Shared state of the load's tasks.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub book: Arc<OpBook>,
    pub keys: Arc<Keys>,
    pub db: PathBuf,
    pub sqlite3: PathBuf,
    pub max_pad: usize,
    pub max_bulk: usize,
}

impl LoadContext {
    /// Records a tagged write; the keys it wrote become known if it was acknowledged.
    fn record(&self, rng: &mut StdRng, op: Op, keys: impl IntoIterator<Item = String>) {
        if matches!(op.outcome, Outcome::Acked { .. }) {
            for k in keys {
                self.keys.add(rng, k);
            }
        }
        self.book.record(op);
    }
}

/// A running load; [`Load::stop`] ends it.
pub struct Load {
    stop: Arc<AtomicBool>,
    stop_cli: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cli: Option<tokio::task::JoinHandle<()>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub polls: Arc<Mutex<Vec<HealthPoll>>>,
}

/// How the load of one cycle looks.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub http_writers: usize,
    /// How many of the HTTP writers send `Prefer: durability=replicated`.
    pub sync_writers: usize,
    /// Pause between two HTTP writes of one writer (0: as fast as possible).
    pub think: Duration,
    pub cli: bool,
    /// Mean pause between two statements of the other process.
    pub cli_pause: Duration,
    pub cli_checkpoints: bool,
    pub long_readers: usize,
    /// Run the [`pouncer`].
    pub pouncer: bool,
    /// Scale (0..=1) of the run's largest pad and bulk size for this cycle: small writes make
    /// frequent syncs and checkpoints, large ones big WAL files and page splits.
    pub size: f64,
}

impl Load {
    /// Starts the load against the server at `api` (`admin` for `/health`).
    pub fn start(
        ctx: &LoadContext,
        shape: LoadShape,
        api: &str,
        admin: &str,
        seed: u64,
    ) -> anyhow::Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_cli = Arc::new(AtomicBool::new(false));
        let ctx = &LoadContext {
            max_pad: (ctx.max_pad as f64 * shape.size) as usize,
            max_bulk: ((ctx.max_bulk as f64 * shape.size) as usize).max(2),
            ..ctx.clone()
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut tasks = Vec::new();
        for w in 0..shape.http_writers {
            tasks.push(tokio::spawn(http_writer(
                ctx.clone(),
                http.clone(),
                api.to_string(),
                shape.think,
                w < shape.sync_writers,
                seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(w as u64 + 1)),
                stop.clone(),
            )));
        }
        let polls = Arc::new(Mutex::new(Vec::new()));
        tasks.push(tokio::spawn(poll_health(
            http.clone(),
            admin.to_string(),
            polls.clone(),
            stop.clone(),
        )));
        let cli = shape.cli.then(|| {
            tokio::spawn(cli_writer(
                ctx.clone(),
                shape.cli_checkpoints,
                shape.cli_pause,
                seed ^ 0x5151,
                stop_cli.clone(),
            ))
        });
        let mut readers = Vec::new();
        if shape.pouncer {
            let ctx = ctx.clone();
            let stop = stop_cli.clone();
            let seed = seed ^ 0x9090;
            readers.push(
                std::thread::Builder::new()
                    .name("pouncer".into())
                    .spawn(move || pouncer(&ctx, seed, &stop))?,
            );
        }
        for r in 0..shape.long_readers {
            let db = ctx.db.clone();
            let stop = stop_cli.clone();
            let seed = seed ^ (0x7777 + r as u64);
            readers.push(
                std::thread::Builder::new()
                    .name("long-reader".into())
                    .spawn(move || long_reader(&db, seed, &stop))?,
            );
        }
        Ok(Load {
            stop,
            stop_cli,
            tasks,
            cli,
            readers,
            polls,
        })
    }

    /// Stops the other process (sqlite3 CLI) and the long readers, and waits for them.
    pub async fn stop_others(&mut self) {
        self.stop_cli.store(true, Ordering::Relaxed);
        if let Some(cli) = self.cli.take() {
            let _ = cli.await;
        }
        for r in self.readers.drain(..) {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
    }

    /// Stops everything and waits for the writers' last answers.
    pub async fn stop(mut self) -> Vec<HealthPoll> {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_others().await;
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.polls.lock().clone()
    }
}

/// A random printable pad of up to `max` bytes.
fn pad(rng: &mut StdRng, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let n = rng.random_range(0..=max);
    (0..n)
        .map(|_| char::from(rng.random_range(b'a'..=b'z')))
        .collect()
}

fn row(rng: &mut StdRng, k: &str, op: u64, max_pad: usize) -> Value {
    json!({"k": k, "v": rng.random_range(0..1_000_000), "pad": pad(rng, max_pad), "op": op})
}

/// `in.(...)` of quoted keys, percent-encoded for a query string.
fn in_list(keys: &[String]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    let value = format!("in.({})", quoted.join(","));
    percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The TXID of a response's `Sqlite-Rest-Txid` (16 hex digits).
fn txid_header(r: &reqwest::Response) -> Option<u64> {
    let v = r.headers().get("sqlite-rest-txid")?.to_str().ok()?;
    (v.len() == 16)
        .then(|| u64::from_str_radix(v, 16).ok())
        .flatten()
}

/// `synchronous`: every write asks for `Prefer: durability=replicated`.
async fn http_writer(
    ctx: LoadContext,
    http: reqwest::Client,
    api: String,
    think: Duration,
    synchronous: bool,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let url = format!("{api}/items");
    while !stop.load(Ordering::Relaxed) {
        let id = ctx.book.next_id();
        let sent = Instant::now();
        let big = ctx.keys.len() > 2500;
        let choice = rng.random_range(0..100);
        let mut new_keys = Vec::new();
        let (tagged, request) = match choice {
            // One row.
            0..=29 => {
                let k = format!("h{id}");
                new_keys.push(k.clone());
                let body = row(&mut rng, &k, id, ctx.max_pad);
                (true, http.post(&url).json(&body))
            }
            // A bulk insert.
            30..=49 => {
                let n = rng.random_range(2..=ctx.max_bulk.max(2));
                let rows: Vec<Value> = (0..n)
                    .map(|i| {
                        let k = format!("h{id}-{i}");
                        new_keys.push(k.clone());
                        row(&mut rng, &k, id, ctx.max_pad)
                    })
                    .collect();
                (true, http.post(&url).json(&rows))
            }
            // An upsert: some existing keys, some new.
            50..=64 => {
                let mut keys = {
                    let n = rng.random_range(1..=8);
                    ctx.keys.pick(&mut rng, n)
                };
                for i in 0..rng.random_range(0..=3) {
                    keys.push(format!("h{id}-u{i}"));
                }
                new_keys.extend(keys.iter().cloned());
                let rows: Vec<Value> = keys
                    .iter()
                    .map(|k| row(&mut rng, k, id, ctx.max_pad))
                    .collect();
                let resolution = if rng.random_bool(0.7) {
                    "merge-duplicates"
                } else {
                    "ignore-duplicates"
                };
                (
                    true,
                    http.post(format!("{url}?on_conflict=k"))
                        .header("Prefer", format!("resolution={resolution}"))
                        .json(&rows),
                )
            }
            // An update of a few existing rows.
            65..=84 => {
                let keys = {
                    let n = rng.random_range(1..=10);
                    ctx.keys.pick(&mut rng, n)
                };
                if keys.is_empty() {
                    continue;
                }
                let body = json!({"v": rng.random_range(0..1_000_000), "op": id, "pad": pad(&mut rng, ctx.max_pad / 4)});
                (
                    true,
                    http.patch(format!("{url}?k={}", in_list(&keys)))
                        .json(&body),
                )
            }
            // A delete (more of them once the table is large).
            _ => {
                let n = if big { 40 } else { 6 };
                let keys = {
                    let n = rng.random_range(1..=n);
                    ctx.keys.pick(&mut rng, n)
                };
                if keys.is_empty() {
                    continue;
                }
                ctx.keys.remove(&keys);
                (false, http.delete(format!("{url}?k={}", in_list(&keys))))
            }
        };
        let mut request = request.header("Prefer", "return=representation");
        if synchronous {
            request = request.header("Prefer", "durability=replicated");
        }
        let mut promise = Promise::Local;
        let outcome = match request.send().await {
            Ok(r) if r.status().is_success() => {
                let at = Instant::now();
                if synchronous {
                    promise = Promise::Replicated {
                        txid: txid_header(&r),
                    };
                }
                let effect = match r.json::<Value>().await {
                    Ok(Value::Array(rows)) => !rows.is_empty(),
                    // The answer was cut: committed, but what it changed is unknown.
                    _ => true,
                };
                Outcome::Acked { at, effect }
            }
            // 503 SR001: committed locally, not confirmed on the replica (a synchronous
            // write that waited in vain): it may or may not reach the replica.
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                match r.json::<Value>().await {
                    Ok(body) if body["code"] == "SR001" => Outcome::Unknown,
                    _ => Outcome::Failed,
                }
            }
            Ok(_) => Outcome::Failed,
            Err(e) => {
                if e.is_connect() {
                    // The server is gone (or going): do not spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Outcome::Unknown
            }
        };
        if tagged {
            let op = Op {
                id,
                writer: Writer::Http,
                sent,
                outcome,
                promise,
            };
            ctx.record(&mut rng, op, new_keys);
        } else {
            ctx.book.untagged.fetch_add(1, Ordering::Relaxed);
        }
        if !think.is_zero() {
            tokio::time::sleep(think.mul_f64(rng.random_range(0.0..2.0))).await;
        }
    }
}

/// A running `sqlite3` shell fed statements on its stdin (`-bail`: it exits at the first
/// error, and is started again for the next statement), so the other process can write
/// often without a process start per statement.
pub struct Shell {
    sqlite3: PathBuf,
    db: PathBuf,
    running: Option<(
        tokio::process::Child,
        tokio::process::ChildStdin,
        tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    )>,
    marks: u64,
}

impl Shell {
    pub fn new(sqlite3: &Path, db: &Path) -> Shell {
        Shell {
            sqlite3: sqlite3.to_path_buf(),
            db: db.to_path_buf(),
            running: None,
            marks: 0,
        }
    }

    /// Ends the shell cleanly (its connection closes; if it is the database's last, SQLite
    /// checkpoints and removes the WAL). Dropping a shell kills it instead.
    pub async fn close(mut self) {
        if let Some((mut child, stdin, _)) = self.running.take() {
            drop(stdin);
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
    }

    /// Runs `sql`: `Ok(Some(output))` if it succeeded, `Ok(None)` if it failed, `Err` if
    /// its fate is unknown.
    pub async fn run(&mut self, sql: &str) -> Result<Option<String>, ()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        if self.running.is_none() {
            let mut child = tokio::process::Command::new(&self.sqlite3)
                .arg("-bail")
                .args(["-cmd", ".timeout 3000"])
                .arg(&self.db)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|_| ())?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(());
            };
            self.running = Some((child, stdin, tokio::io::BufReader::new(stdout).lines()));
        }
        let Some((_, stdin, lines)) = &mut self.running else {
            return Err(());
        };
        self.marks += 1;
        let mark = format!("done-{}", self.marks);
        let input = format!("{sql}\nSELECT '{mark}';\n");
        if stdin.write_all(input.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            self.running = None;
            return Ok(None);
        }
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) if line == mark => return true,
                    Ok(Some(line)) => out.push(line),
                    // Exited: the statement failed (-bail).
                    _ => return false,
                }
            }
        })
        .await;
        match read {
            Ok(true) => Ok(Some(out.join("\n"))),
            Ok(false) => {
                self.running = None;
                Ok(None)
            }
            Err(_) => {
                self.running = None;
                Err(())
            }
        }
    }
}

/// One tagged CLI write: the SQL ends with `SELECT changes();`.
async fn cli_tagged(
    ctx: &LoadContext,
    shell: &mut Shell,
    rng: &mut StdRng,
    id: u64,
    sql: &str,
    keys: Vec<String>,
) {
    let sent = Instant::now();
    let outcome = match shell.run(sql).await {
        Ok(Some(out)) => Outcome::Acked {
            at: Instant::now(),
            effect: out.lines().last().is_some_and(|l| l.trim() != "0"),
        },
        Ok(None) => Outcome::Failed,
        Err(()) => Outcome::Unknown,
    };
    let op = Op {
        id,
        writer: Writer::Cli,
        sent,
        outcome,
        promise: Promise::Local,
    };
    ctx.record(rng, op, keys);
}

/// One random statement of the other process, a `PRAGMA wal_checkpoint` of a random mode
/// with probability `checkpoint`; returns what it was.
pub async fn cli_step(
    ctx: &LoadContext,
    shell: &mut Shell,
    rng: &mut StdRng,
    checkpoint: f64,
) -> &'static str {
    if rng.random_bool(checkpoint) {
        let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.random_range(0..4)];
        let _ = shell.run(&format!("PRAGMA wal_checkpoint({mode});")).await;
        ctx.book.checkpoints.fetch_add(1, Ordering::Relaxed);
        return "checkpoint";
    }
    let choice = rng.random_range(0..85);
    match choice {
        0..=54 => {
            let id = ctx.book.next_id();
            let k = format!("c{id}");
            let sql = format!(
                "INSERT INTO items(k, v, pad, op) VALUES ('{k}', {}, '{}', {id}); SELECT changes();",
                rng.random_range(0..1_000_000),
                pad(rng, ctx.max_pad.min(800))
            );
            cli_tagged(ctx, shell, rng, id, &sql, vec![k]).await;
            "insert"
        }
        55..=74 => {
            let Some(k) = ctx.keys.pick(rng, 1).pop() else {
                return "nothing";
            };
            let id = ctx.book.next_id();
            let sql = format!(
                "UPDATE items SET v = {}, op = {id} WHERE k = '{k}'; SELECT changes();",
                rng.random_range(0..1_000_000)
            );
            cli_tagged(ctx, shell, rng, id, &sql, Vec::new()).await;
            "update"
        }
        _ => {
            let Some(k) = ctx.keys.pick(rng, 1).pop() else {
                return "nothing";
            };
            ctx.keys.remove(std::slice::from_ref(&k));
            let _ = shell
                .run(&format!("DELETE FROM items WHERE k = '{k}';"))
                .await;
            ctx.book.untagged.fetch_add(1, Ordering::Relaxed);
            "delete"
        }
    }
}

async fn cli_writer(
    ctx: LoadContext,
    checkpoints: bool,
    pause: Duration,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut shell = Shell::new(&ctx.sqlite3, &ctx.db);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(pause.mul_f64(rng.random_range(0.0..2.0))).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let chance = if checkpoints { 0.05 } else { 0.0 };
        cli_step(&ctx, &mut shell, &mut rng, chance).await;
    }
}

/// `mxFrame` (frames in the WAL) and `nBackfill` (frames copied into the database by
/// checkpoints) from SQLite's WAL index (the `-shm` file, native byte order): the header's
/// first copy holds mxFrame at byte 16, the checkpoint info after both copies holds nBackfill
/// at byte 96.
fn wal_index(shm: &std::fs::File) -> Option<(u32, u32)> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 100];
    shm.read_exact_at(&mut b, 0).ok()?;
    let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    (b[12] == 1).then(|| (word(16), word(96)))
}

/// Another process's writer at the worst moment: it watches the WAL index, and as soon as a
/// checkpoint has copied the whole WAL into the database it starts a write transaction (a
/// writer that starts then may restart the WAL from its beginning, overwriting frames),
/// holds it for a moment and commits one tagged row. Any commit the replicator had not yet
/// copied into an LTX file when it let that happen is then gone from the WAL.
fn pouncer(ctx: &LoadContext, seed: u64, stop: &AtomicBool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(conn) = rusqlite::Connection::open(&ctx.db) else {
        return;
    };
    let _ = conn.busy_timeout(Duration::from_secs(3));
    let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    let _ = conn.pragma_update(None, "wal_autocheckpoint", 0);
    let shm_path = {
        let mut p = ctx.db.as_os_str().to_os_string();
        p.push("-shm");
        PathBuf::from(p)
    };
    let mut shm = None;
    let mut was_backfilled = true;
    while !stop.load(Ordering::Relaxed) {
        if shm.is_none() {
            shm = std::fs::File::open(&shm_path).ok();
        }
        let backfilled = match shm.as_ref().and_then(wal_index) {
            Some((mx, backfill)) => mx > 0 && backfill == mx,
            None => false,
        };
        if backfilled && !was_backfilled {
            let id = ctx.book.next_id();
            let sent = Instant::now();
            let hold = Duration::from_micros(rng.random_range(200..=3000));
            let k = format!("p{id}");
            let result = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
                std::thread::sleep(hold);
                let r = conn.execute(
                    "INSERT INTO items(k, v, pad, op) VALUES (?1, ?2, '', ?3)",
                    (&k, rng.random_range(0..1_000_000i64), id as i64),
                );
                match r {
                    Ok(_) => conn.execute_batch("COMMIT"),
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        Err(e)
                    }
                }
            });
            let outcome = match result {
                Ok(()) => Outcome::Acked {
                    at: Instant::now(),
                    effect: true,
                },
                Err(_) => {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Outcome::Failed
                }
            };
            let op = Op {
                id,
                writer: Writer::Pouncer,
                sent,
                outcome,
                promise: Promise::Local,
            };
            ctx.record(&mut rng, op, [k]);
        }
        was_backfilled = backfilled;
        // The replicator's gap between a checkpoint and its write barrier lasts some tens of
        // microseconds: look often (one small read per look).
        std::thread::sleep(Duration::from_micros(40));
    }
}

/// Holds read transactions open for up to 2.5 s at a time (checkpoints cannot pass them).
fn long_reader(db: &Path, seed: u64, stop: &AtomicBool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(conn) = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return;
    };
    let _ = conn.busy_timeout(Duration::from_secs(3));
    let pause = |ms: u64| {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if conn.execute_batch("BEGIN").is_ok() {
            let _ = conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0));
            pause(rng.random_range(100..=2500));
            let _ = conn.execute_batch("COMMIT");
        }
        pause(rng.random_range(0..=1000));
    }
}

/// Polls the replicator's positions every 100 ms, from `/metrics`: its gauges are read when
/// the request is served (`/health` is refreshed only every 250 ms), so a value seen by a poll
/// was true after the moment the poll was sent, which is the moment recorded.
async fn poll_health(
    http: reqwest::Client,
    admin: String,
    polls: Arc<Mutex<Vec<HealthPoll>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        if let Ok(r) = http
            .get(format!("{admin}/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && let Ok(text) = r.text().await
            && let (Some(local_txid), Some(replicated_txid)) = (
                gauge(&text, "sqlite_rest_replication_local_txid"),
                gauge(&text, "sqlite_rest_replication_replicated_txid"),
            )
        {
            let checkpoints = text
                .lines()
                .filter(|l| l.starts_with("litestream_checkpoint_count{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64;
            polls.lock().push(HealthPoll {
                at,
                local_txid,
                replicated_txid,
                checkpoints,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}
