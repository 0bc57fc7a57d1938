//! The oracle: after every cycle (the server stopped), the replica is held against the
//! write book ([`crate::workload`]) and against the local database.
//!
//! - **Listing**: per level, TXID ranges are contiguous with no duplicates or overlaps
//!   (snapshots excepted; in L1..L8 one overlap is allowed: a compaction output superseded by
//!   a redone one that starts at the same TXID, counted in the summary), no level runs past L0, an L0 file never changes once uploaded,
//!   and the real Litestream lists exactly the same files.
//! - **Every state**: the L0 files are applied one by one to a replay image, and after each
//!   TXID the image must pass `PRAGMA quick_check`, its `log` must be `1..k` with no gap and
//!   unchanged below the previous TXID's `k` (a prefix of the commit order), and `items` must
//!   equal the replay of the log. Writes: a refused write never appears; when a write is
//!   present, every write acknowledged before it was sent is present too; and a write
//!   acknowledged before the replicator's local TXID advanced twice (two syncs that both
//!   started after the acknowledgement) is present at that TXID. A synchronous write
//!   (`Prefer: durability=replicated`) answered 2xx names its TXID (`Sqlite-Rest-Txid`), and
//!   is present in the state of that TXID and every later one: whatever the fault (SIGKILL,
//!   outages, cut uploads), the replica, and so what it restores, holds every synchronous
//!   2xx.
//! - **Restores**: `sqlite-rest restore` (the same code, run as `torture child restore`) and
//!   the real `litestream restore` of the replica are byte-identical to each other and to the
//!   replay image, and pass `PRAGMA integrity_check`.
//! - **Local database**: intact, its log without gaps and equal to its data, every
//!   acknowledged write present (the server's own durability), the replica's history a
//!   prefix of it, and after a clean SIGTERM exactly equal to the replica.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ltx::FileName;
use replication::{Level, LtxFileInfo};
use replication::{ListOptions, ReadRange, ReplicaClient};
use rusqlite::{Connection, OpenFlags};
use testkit::litestream::Litestream;

use crate::workload::{HealthPoll, Op, Outcome, Promise, SPREAD_SLOTS, SPREAD_STEP};

/// A failed check: what was checked, and what was found.
#[derive(Debug)]
pub struct CheckFailed {
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check failed: {}: {}", self.check, self.detail)
    }
}

impl std::error::Error for CheckFailed {}

/// A [`CheckFailed`] as an error.
pub fn failed(check: &'static str, detail: impl Into<String>) -> anyhow::Error {
    CheckFailed {
        check,
        detail: detail.into(),
    }
    .into()
}

/// What the write book and the position polls say must hold.
#[derive(Debug, Default)]
pub struct Facts {
    /// Acknowledged writes that changed something, by acknowledgement time.
    acked: Vec<(Instant, u64)>,
    sent: HashMap<u64, Instant>,
    refused: HashSet<u64>,
    /// TXID → writes that must be present from that TXID on.
    obligations: BTreeMap<u64, Vec<u64>>,
    /// TXID → synchronous writes answered 2xx with it: on the replica from that TXID on.
    synchronous: BTreeMap<u64, Vec<u64>>,
    /// Synchronous writes answered 2xx without a valid `Sqlite-Rest-Txid`.
    synchronous_without_txid: Vec<u64>,
}

impl Facts {
    /// From every write so far and the position polls of each server process.
    pub fn new(ops: &[Op], processes: &[Vec<HealthPoll>]) -> Facts {
        let mut f = Facts::default();
        // For each process, the TXID two strict increases after each poll.
        let bounds: Vec<Vec<Option<u64>>> = processes.iter().map(|p| two_increases(p)).collect();
        for op in ops {
            f.sent.insert(op.id, op.sent);
            match op.outcome {
                Outcome::Acked { at, effect } => {
                    match op.promise {
                        Promise::Replicated { txid: Some(t) } => {
                            if effect {
                                f.synchronous.entry(t).or_default().push(op.id);
                            }
                        }
                        Promise::Replicated { txid: None } => {
                            f.synchronous_without_txid.push(op.id);
                        }
                        Promise::Local => {}
                    }
                    if !effect {
                        continue;
                    }
                    f.acked.push((at, op.id));
                    if let Some(bound) = bound_after(processes, &bounds, at) {
                        f.obligations.entry(bound).or_default().push(op.id);
                    }
                }
                Outcome::Failed => {
                    f.refused.insert(op.id);
                }
                _ => {}
            }
        }
        f.acked.sort();
        f
    }

    /// Every acknowledged write that changed something.
    pub fn acked(&self) -> impl Iterator<Item = u64> + '_ {
        self.acked.iter().map(|(_, id)| *id)
    }

    pub fn obligations(&self) -> usize {
        self.obligations.values().map(Vec::len).sum()
    }

    /// Synchronous writes acknowledged (that changed something).
    pub fn synchronous(&self) -> usize {
        self.synchronous.values().map(Vec::len).sum()
    }
}

/// For each poll i, the local TXID seen at the second strict increase after it (polls are
/// one process's, in time order; its local TXID never decreases).
fn two_increases(polls: &[HealthPoll]) -> Vec<Option<u64>> {
    let n = polls.len();
    // next[i]: first j > i whose TXID is greater than poll i's.
    let mut next = vec![None; n];
    let mut j = 0;
    for i in 0..n {
        if j <= i {
            j = i + 1;
        }
        while j < n && polls[j].local_txid <= polls[i].local_txid {
            j += 1;
        }
        next[i] = (j < n).then_some(j);
    }
    (0..n)
        .map(|i| {
            let a = next[i]?;
            let b = next[a]?;
            Some(polls[b].local_txid)
        })
        .collect()
}

/// The TXID by which a write acknowledged at `at` must be on the replica: the first poll
/// sent after `at` saw TXID L1; a later one saw L2 > L1, so the sync that made L2 ended after
/// `at`; the sync that made the next TXID seen, L3 > L2, started after that one ended, so
/// it read a WAL that held the write. The first process (in time) that saw that much
/// decides; `None` when none did.
fn bound_after(
    processes: &[Vec<HealthPoll>],
    bounds: &[Vec<Option<u64>>],
    at: Instant,
) -> Option<u64> {
    processes.iter().zip(bounds).find_map(|(polls, b)| {
        let i = polls.partition_point(|p| p.at <= at);
        b.get(i).copied().flatten()
    })
}

/// The check that synchronous writes hold their promise.
const SYNCHRONOUS: &str =
    "every synchronous 2xx is on the replica from the TXID it was answered with (after any fault)";

/// Counters for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub checks: u64,
    pub states: u64,
    pub restores: u64,
    /// Compaction outputs superseded by a redone compaction (see the listing check).
    pub superseded_compactions: u64,
}

/// The replay of the log: what `items` must hold, and a fingerprint of the log.
#[derive(Debug, Default, Clone)]
struct Model {
    log_rows: i64,
    fingerprint: i64,
    items: BTreeMap<String, (i64, i64, i64)>,
    seen: HashSet<u64>,
    /// The latest log row of each `spread` slot.
    spread: Vec<i64>,
}

/// One log row.
#[derive(Debug)]
struct LogRow {
    seq: i64,
    op: i64,
    kind: String,
    k: String,
    v: Option<i64>,
    pad: Option<i64>,
}

/// SQL computing the fingerprint of log rows up to `?1` (same formula as [`LogRow::print`]).
const FINGERPRINT_SQL: &str = "SELECT coalesce(sum(seq * 31 + op * 17 + coalesce(v, 0) * 7 \
     + length(k) * 3 + coalesce(pad, 0) + unicode(kind)), 0) FROM log WHERE seq <= ?1";

impl LogRow {
    fn print(&self) -> i64 {
        let kind = self.kind.chars().next().map_or(0, |c| c as i64);
        self.seq * 31
            + self.op * 17
            + self.v.unwrap_or(0) * 7
            + self.k.len() as i64 * 3
            + self.pad.unwrap_or(0)
            + kind
    }
}

impl Model {
    /// Applies the log rows after `log_rows`, checking each against the state.
    fn apply(&mut self, conn: &Connection, context: &str) -> anyhow::Result<Vec<u64>> {
        let mut stmt =
            conn.prepare("SELECT seq, op, kind, k, v, pad FROM log WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt.query_map([self.log_rows], |r| {
            Ok(LogRow {
                seq: r.get(0)?,
                op: r.get(1)?,
                kind: r.get(2)?,
                k: r.get(3)?,
                v: r.get(4)?,
                pad: r.get(5)?,
            })
        })?;
        let mut new_ops = Vec::new();
        for row in rows {
            let row = row?;
            if row.seq != self.log_rows + 1 {
                return Err(failed(
                    "the log is 1..k without a gap (a prefix of the commit order)",
                    format!(
                        "{context}: log row {} follows row {}",
                        row.seq, self.log_rows
                    ),
                ));
            }
            self.log_rows = row.seq;
            self.fingerprint = self.fingerprint.wrapping_add(row.print());
            if self.spread.is_empty() {
                self.spread = vec![0; SPREAD_SLOTS as usize];
            }
            self.spread[(row.seq * SPREAD_STEP).rem_euclid(SPREAD_SLOTS) as usize] = row.seq;
            let present = self.items.contains_key(&row.k);
            let op = u64::try_from(row.op).unwrap_or(0);
            match row.kind.as_str() {
                "I" | "U" => {
                    if (row.kind == "I") == present {
                        return Err(failed(
                            "the log replays (inserts of new keys, updates of existing ones)",
                            format!(
                                "{context}: log row {} ({} of {}) {} an existing row",
                                row.seq,
                                row.kind,
                                row.k,
                                if present { "meets" } else { "misses" }
                            ),
                        ));
                    }
                    let entry = (row.v.unwrap_or(0), row.pad.unwrap_or(0), row.op);
                    self.items.insert(row.k.clone(), entry);
                    if self.seen.insert(op) {
                        new_ops.push(op);
                    }
                }
                "D" => {
                    if self.items.remove(&row.k).is_none() {
                        return Err(failed(
                            "the log replays (deletes of existing rows)",
                            format!(
                                "{context}: log row {} deletes {}, which is not there",
                                row.seq, row.k
                            ),
                        ));
                    }
                }
                other => {
                    return Err(failed(
                        "the log replays",
                        format!("{context}: log row {} has kind {other:?}", row.seq),
                    ));
                }
            }
        }
        Ok(new_ops)
    }

    /// `spread` holds the latest log row of each slot.
    fn check_spread(&self, conn: &Connection, context: &str) -> anyhow::Result<()> {
        let mut stmt = conn.prepare("SELECT slot, seq FROM spread ORDER BY slot")?;
        let got: Vec<(i64, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let want: Vec<(i64, i64)> = (0..SPREAD_SLOTS)
            .map(|slot| (slot, self.spread.get(slot as usize).copied().unwrap_or(0)))
            .collect();
        if got != want {
            let diff: Vec<String> = got
                .iter()
                .zip(&want)
                .filter(|(g, w)| g != w)
                .take(8)
                .map(|(g, w)| format!("slot {} holds log row {}, the log says {}", g.0, g.1, w.1))
                .collect();
            return Err(failed(
                "every commit is whole: each page it changed is in the state (spread slots)",
                format!(
                    "{context} ({} log rows): {}",
                    self.log_rows,
                    diff.join("; ")
                ),
            ));
        }
        Ok(())
    }

    /// `items` equals the replay.
    fn check_items(&self, conn: &Connection, context: &str) -> anyhow::Result<()> {
        let mut stmt = conn.prepare("SELECT k, v, length(pad), op FROM items ORDER BY k")?;
        let mut rows = stmt.query([])?;
        let mut expected = self.items.iter();
        loop {
            let got = match rows.next()? {
                Some(r) => Some((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
                None => None,
            };
            let want = expected.next();
            match (got, want) {
                (None, None) => return Ok(()),
                (Some((k, g)), Some((wk, w))) if k == *wk && g == *w => {}
                (got, want) => {
                    return Err(failed(
                        "the data equals the replay of the log",
                        format!(
                            "{context}: first difference: table has {got:?}, the log replays to {want:?} ({} rows expected)",
                            self.items.len()
                        ),
                    ));
                }
            }
        }
    }

    /// The log holds no gap, never shrank, and its first `log_rows` rows are unchanged.
    fn check_history(&self, conn: &Connection, context: &str) -> anyhow::Result<()> {
        let (count, max): (i64, Option<i64>) =
            conn.query_row("SELECT count(*), max(seq) FROM log", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        if count != max.unwrap_or(0) {
            return Err(failed(
                "the log is 1..k without a gap (a prefix of the commit order)",
                format!("{context}: {count} log rows, the largest seq is {max:?}"),
            ));
        }
        if count < self.log_rows {
            return Err(failed(
                "history never goes backwards",
                format!(
                    "{context}: {count} log rows, {} at the previous state",
                    self.log_rows
                ),
            ));
        }
        let print: i64 = conn.query_row(FINGERPRINT_SQL, [self.log_rows], |r| r.get(0))?;
        if print != self.fingerprint {
            return Err(failed(
                "earlier history is unchanged",
                format!(
                    "{context}: the first {} log rows differ from the previous state",
                    self.log_rows
                ),
            ));
        }
        Ok(())
    }
}

/// `PRAGMA quick_check` / `integrity_check` is `ok`.
fn integrity(
    conn: &Connection,
    pragma: &str,
    check: &'static str,
    context: &str,
) -> anyhow::Result<()> {
    let mut stmt = conn.prepare(&format!("PRAGMA {pragma}"))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if lines != ["ok"] {
        return Err(failed(
            check,
            format!(
                "{context}: {}",
                lines
                    .join(" / ")
                    .replace('\n', " / ")
                    .chars()
                    .take(600)
                    .collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Opens a database file that nothing else uses, read-only and without locks or WAL.
fn open_image(path: &Path) -> anyhow::Result<Connection> {
    let uri = format!("file:{}?immutable=1", path.display());
    Ok(Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// How a cycle ended, for the local-database checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM and exit 0: the replica must hold exactly what the database holds.
    Graceful,
    /// SIGKILL, or a failure the harness caused: the replica holds a prefix.
    Crash,
}

/// The oracle of one lineage (one database and its replica).
pub struct Oracle {
    client: Arc<dyn ReplicaClient>,
    /// The replica as restores reach it (not through the fault proxy).
    url: String,
    dir: PathBuf,
    image: PathBuf,
    exe: PathBuf,
    litestream: Litestream,
    /// The last TXID applied to the image.
    applied: u64,
    page_size: u32,
    uploaded: BTreeMap<u64, u64>,
    model: Model,
    pub stats: Stats,
}

impl Oracle {
    pub fn new(
        client: Arc<dyn ReplicaClient>,
        url: String,
        dir: PathBuf,
        exe: PathBuf,
        litestream: Litestream,
    ) -> anyhow::Result<Oracle> {
        std::fs::create_dir_all(&dir)?;
        let image = dir.join("replay.db");
        std::fs::write(&image, b"")?;
        Ok(Oracle {
            client,
            url,
            dir,
            image,
            exe,
            litestream,
            applied: 0,
            page_size: 0,
            uploaded: BTreeMap::new(),
            model: Model::default(),
            stats: Stats::default(),
        })
    }

    /// The last TXID checked.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Every check of one cycle; the server is stopped.
    /// `reported` is the highest TXID the server reported as replicated during the cycle.
    pub async fn check_cycle(
        &mut self,
        facts: &Facts,
        local_db: &Path,
        ending: Ending,
        reported: u64,
    ) -> anyhow::Result<()> {
        let files = self.client.list_all(ListOptions::default()).await?;
        self.check_listing(&files)?;
        self.replay(&files, facts).await?;
        self.check_synchronous(facts)?;
        // A snapshot (level 9) is taken from the local database and may be uploaded before the
        // L0 files up to its TXID (e.g. when the server was killed with uploads pending):
        // compare restores at the last replayed TXID then.
        let newest = files.iter().map(|f| f.name.max.get()).max().unwrap_or(0);
        let at = (newest > self.applied).then_some(self.applied);
        self.stats.checks += 1;
        if reported > self.applied {
            return Err(failed(
                "what the server reports as replicated is on the replica",
                format!(
                    "the server reported TXID {reported:016x} replicated; the replica ends at {:016x}",
                    self.applied
                ),
            ));
        }
        if self.applied > 0 {
            self.check_restores(at).await?;
        }
        self.check_local(local_db, facts, ending)
    }

    /// Every synchronous 2xx named its TXID, and the replica reaches it and holds the write
    /// (the states from that TXID on are checked in [`Oracle::replay`]; restores equal the
    /// last state).
    fn check_synchronous(&mut self, facts: &Facts) -> anyhow::Result<()> {
        self.stats.checks += 1;
        if let Some(id) = facts.synchronous_without_txid.first() {
            return Err(failed(
                "a synchronous 2xx names its TXID (Sqlite-Rest-Txid, 16 hex digits)",
                format!(
                    "write {id} and {} more",
                    facts.synchronous_without_txid.len() - 1
                ),
            ));
        }
        for (txid, ops) in &facts.synchronous {
            for id in ops {
                if *txid > self.applied || !self.model.seen.contains(id) {
                    return Err(failed(
                        SYNCHRONOUS,
                        format!(
                            "write {id} was answered 2xx as replicated at TXID {txid:016x}; the replica ends at {:016x} {} it",
                            self.applied,
                            if self.model.seen.contains(id) {
                                "with"
                            } else {
                                "without"
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_listing(&mut self, files: &[LtxFileInfo]) -> anyhow::Result<()> {
        self.stats.checks += 1;
        let mut by_level: BTreeMap<u8, Vec<LtxFileInfo>> = BTreeMap::new();
        for f in files {
            by_level.entry(f.level.get()).or_default().push(*f);
        }
        let l0_max = by_level
            .get(&0)
            .and_then(|l| l.iter().map(|f| f.name.max.get()).max())
            .unwrap_or(0);
        for (level, list) in &mut by_level {
            list.sort_by_key(|f| (f.name.min, f.name.max));
            let names = || {
                list.iter()
                    .map(|f| f.name.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            for f in list.iter() {
                // Compactions read L0 from the replica, so they never run past it; snapshots
                // are taken locally (see `check_cycle`).
                if f.name.min > f.name.max || (*level != 9 && f.name.max.get() > l0_max) {
                    return Err(failed(
                        "replica files are well formed and never run past L0",
                        format!("level {level}: {} (L0 ends at {l0_max})", f.name),
                    ));
                }
            }
            if *level == 9 {
                continue;
            }
            for w in list.windows(2) {
                let (prev, next) = (w[0].name, w[1].name);
                // A compaction whose upload timed out on our side but landed on the replica
                // is redone later with more input: the earlier file then ends inside the
                // later one, which starts at the same TXID. Both hold the same history, and
                // restores and later compactions read such overlaps as the format allows
                // (a gap never); retention removes the earlier one with the level. L0 files
                // are never redone, so they must follow each other exactly.
                let superseded = *level != 0 && next.min == prev.min && next.max > prev.max;
                if superseded {
                    self.stats.superseded_compactions += 1;
                }
                if next.min.get() != prev.max.get() + 1 && !superseded {
                    return Err(failed(
                        "the TXIDs on the replica are contiguous with no duplicates",
                        format!(
                            "level {level}: {} then {}; level: {}",
                            w[0].name,
                            w[1].name,
                            names()
                        ),
                    ));
                }
            }
        }
        // An L0 file never changes once uploaded.
        for f in by_level.get(&0).into_iter().flatten() {
            if let Some(size) = self.uploaded.get(&f.name.max.get())
                && *size != f.size
            {
                return Err(failed(
                    "an uploaded L0 file never changes",
                    format!(
                        "{}: {} bytes, {} when it was replayed",
                        f.name, f.size, size
                    ),
                ));
            }
        }
        // The real Litestream sees the same files.
        let theirs = self.litestream.ltx_list(&self.url);
        let mut ours: Vec<(u32, u64, u64, u64)> = files
            .iter()
            .map(|f| {
                (
                    u32::from(f.level.get()),
                    f.name.min.get(),
                    f.name.max.get(),
                    f.size,
                )
            })
            .collect();
        let mut listed: Vec<(u32, u64, u64, u64)> = theirs
            .iter()
            .map(|e| {
                (
                    e.level,
                    u64::from_str_radix(&e.min_txid, 16).unwrap_or(0),
                    u64::from_str_radix(&e.max_txid, 16).unwrap_or(0),
                    e.size,
                )
            })
            .collect();
        ours.sort_unstable();
        listed.sort_unstable();
        if ours != listed {
            return Err(failed(
                "Litestream lists the same replica files",
                format!("ours {ours:?}\nlitestream {listed:?}"),
            ));
        }
        Ok(())
    }

    /// Applies every new L0 file and checks every state.
    async fn replay(&mut self, files: &[LtxFileInfo], facts: &Facts) -> anyhow::Result<()> {
        let mut l0: Vec<&LtxFileInfo> = files
            .iter()
            .filter(|f| f.level == Level::L0 && f.name.max.get() > self.applied)
            .collect();
        l0.sort_by_key(|f| f.name);
        let mut causal = 0usize;
        let mut latest_sent: Option<Instant> = None;
        let first_new = self.applied;
        for f in l0 {
            if f.name.min.get() != self.applied + 1 {
                return Err(failed(
                    "the TXIDs on the replica are contiguous with no duplicates",
                    format!(
                        "L0 {} follows TXID {} (replay needs every L0 file)",
                        f.name, self.applied
                    ),
                ));
            }
            let bytes = self
                .client
                .read(Level::L0, f.name, ReadRange::Full)
                .await
                .with_context(|| format!("reading L0 {}", f.name))?;
            self.apply(f.name, &bytes)?;
            self.uploaded.insert(f.name.max.get(), f.size);
            self.applied = f.name.max.get();
            let context = format!("state at TXID {:016x}", self.applied);
            let conn = open_image(&self.image)?;
            integrity(
                &conn,
                "quick_check",
                "every replicated state is an intact database",
                &context,
            )?;
            self.model.check_history(&conn, &context)?;
            let new_ops = self.model.apply(&conn, &context)?;
            self.model.check_spread(&conn, &context)?;
            self.model.check_items(&conn, &context)?;
            self.stats.checks += 5;
            self.stats.states += 1;
            // Writes.
            for op in &new_ops {
                if facts.refused.contains(op) {
                    return Err(failed(
                        "a refused write never appears",
                        format!("{context}: write {op} was answered with an error"),
                    ));
                }
                if let Some(sent) = facts.sent.get(op) {
                    latest_sent = latest_sent.max(Some(*sent));
                }
            }
            if let Some(latest) = latest_sent {
                while causal < facts.acked.len() && facts.acked[causal].0 < latest {
                    let id = facts.acked[causal].1;
                    if !self.model.seen.contains(&id) {
                        return Err(failed(
                            "writes appear in order: a write acknowledged before another was sent is present with it",
                            format!("{context}: write {id} is missing, a later write is present"),
                        ));
                    }
                    causal += 1;
                }
            }
            for (txid, ops) in facts.synchronous.range(first_new + 1..=self.applied) {
                for id in ops {
                    if !self.model.seen.contains(id) {
                        return Err(failed(
                            SYNCHRONOUS,
                            format!(
                                "{context}: write {id} was answered 2xx as replicated at TXID {txid:016x} and is missing"
                            ),
                        ));
                    }
                }
            }
            for (bound, ops) in facts.obligations.range(first_new + 1..=self.applied) {
                for id in ops {
                    if !self.model.seen.contains(id) {
                        return Err(failed(
                            "every write acknowledged before the last synced TXID is on the replica",
                            format!(
                                "{context}: write {id} was acknowledged before the local TXID passed two syncs (to {bound:016x}) and is missing"
                            ),
                        ));
                    }
                }
            }
            self.stats.checks += 3;
        }
        Ok(())
    }

    /// Applies one L0 file to the replay image.
    fn apply(&mut self, name: FileName, bytes: &[u8]) -> anyhow::Result<()> {
        let mut dec = ltx::Decoder::new(bytes).with_context(|| format!("decoding {name}"))?;
        let header = *dec.header();
        if self.page_size == 0 {
            self.page_size = header.page_size;
        } else if self.page_size != header.page_size {
            return Err(failed(
                "the page size never changes",
                format!(
                    "{name}: page size {}, was {}",
                    header.page_size, self.page_size
                ),
            ));
        }
        let file = OpenOptions::new().write(true).open(&self.image)?;
        let page_size = u64::from(header.page_size);
        let mut page = vec![0u8; header.page_size as usize];
        while let Some(pgno) = dec
            .next_page(&mut page)
            .with_context(|| format!("decoding {name}"))?
        {
            file.write_all_at(&page, (u64::from(pgno) - 1) * page_size)?;
        }
        dec.finish().with_context(|| format!("verifying {name}"))?;
        file.set_len(u64::from(header.commit) * page_size)?;
        Ok(())
    }

    /// Restores with ours and with Litestream (at TXID `at`, else the latest); both must equal
    /// the replay image.
    async fn check_restores(&mut self, at: Option<u64>) -> anyhow::Result<()> {
        let txid = at.map(|t| format!("{t:016x}"));
        let ours = self.dir.join("restore-ours.db");
        let theirs = self.dir.join("restore-litestream.db");
        for p in [&ours, &theirs] {
            let _ = std::fs::remove_file(p);
        }
        let (exe, url, o) = (self.exe.clone(), self.url.clone(), ours.clone());
        let t = txid.clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(exe);
            cmd.args(["child", "restore", "--integrity-check", "full"]);
            if let Some(t) = t {
                cmd.args(["--txid", &t]);
            }
            cmd.arg("-o").arg(&o).arg(&url).output()
        })
        .await??;
        if !out.status.success() {
            return Err(failed(
                "sqlite-rest restore restores the replica",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let (ls, url, t) = (self.litestream.clone(), self.url.clone(), theirs.clone());
        let extra: Vec<String> = match &txid {
            Some(x) => vec!["-txid".into(), x.clone()],
            None => Vec::new(),
        };
        let out = tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            ls.restore(&url, &t, &extra)
        })
        .await?;
        if !out.status.success() {
            return Err(failed(
                "litestream restore restores the replica",
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        self.stats.restores += 2;
        let image = read(&self.image)?;
        let a = read(&ours)?;
        let b = read(&theirs)?;
        let at = format!("TXID {:016x}", self.applied);
        if a != b {
            return Err(failed(
                "sqlite-rest restore and litestream restore are byte-identical",
                format!(
                    "at {at}: {} and {} bytes, first difference at byte {:?}",
                    a.len(),
                    b.len(),
                    first_diff(&a, &b)
                ),
            ));
        }
        if a != image {
            return Err(failed(
                "a restore equals the replay of every L0 file",
                format!(
                    "at {at}: restore {} bytes, replay {} bytes, first difference at byte {:?}",
                    a.len(),
                    image.len(),
                    first_diff(&a, &image)
                ),
            ));
        }
        let conn = open_image(&ours)?;
        integrity(
            &conn,
            "integrity_check",
            "a restored database passes integrity_check",
            &at,
        )?;
        self.stats.checks += 4;
        Ok(())
    }

    /// The local database (a copy of it, so the check changes nothing).
    fn check_local(&mut self, db: &Path, facts: &Facts, ending: Ending) -> anyhow::Result<()> {
        let copy = self.dir.join("local-copy.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&copy, suffix));
        }
        std::fs::copy(db, &copy)?;
        let wal = with_suffix(db, "-wal");
        if wal.exists() {
            std::fs::copy(&wal, with_suffix(&copy, "-wal"))?;
        }
        let conn = Connection::open(&copy)?;
        let context = "local database";
        integrity(
            &conn,
            "quick_check",
            "the local database is intact",
            context,
        )?;
        let mut local = Model::default();
        local.check_history(&conn, context)?;
        local.apply(&conn, context)?;
        local.check_spread(&conn, context)?;
        local.check_items(&conn, context)?;
        self.stats.checks += 5;
        for id in facts.acked() {
            if !local.seen.contains(&id) {
                return Err(failed(
                    "every acknowledged write is in the local database",
                    format!("write {id} was acknowledged and is missing"),
                ));
            }
        }
        if let Some(id) = facts.refused.iter().find(|id| local.seen.contains(id)) {
            return Err(failed(
                "a refused write never appears",
                format!("write {id} was answered with an error and is in the local database"),
            ));
        }
        // The replica's history is a prefix of the local one.
        let print: i64 = conn.query_row(FINGERPRINT_SQL, [self.model.log_rows], |r| r.get(0))?;
        if local.log_rows < self.model.log_rows || print != self.model.fingerprint {
            return Err(failed(
                "the replica's history is a prefix of the local database's",
                format!(
                    "replica: {} log rows, local: {}; the first {} rows {}",
                    self.model.log_rows,
                    local.log_rows,
                    self.model.log_rows,
                    if print == self.model.fingerprint {
                        "match"
                    } else {
                        "differ"
                    }
                ),
            ));
        }
        self.stats.checks += 3;
        if ending == Ending::Graceful {
            if local.log_rows != self.model.log_rows || local.items != self.model.items {
                return Err(failed(
                    "after SIGTERM every write of the database is on the replica",
                    format!(
                        "replica at TXID {:016x}: {} log rows and {} items; local: {} log rows and {} items",
                        self.applied,
                        self.model.log_rows,
                        self.model.items.len(),
                        local.log_rows,
                        local.items.len()
                    ),
                ));
            }
            for id in facts.acked() {
                if !self.model.seen.contains(&id) {
                    return Err(failed(
                        "after SIGTERM every acknowledged write is on the replica",
                        format!("write {id} is missing"),
                    ));
                }
            }
            self.stats.checks += 2;
        }
        Ok(())
    }

    /// The replica's files (for the divergence check).
    pub async fn listing(&self) -> anyhow::Result<Vec<LtxFileInfo>> {
        Ok(self.client.list_all(ListOptions::default()).await?)
    }

    /// Log rows and items in the replica's latest state.
    pub fn replica_rows(&self) -> (i64, usize) {
        (self.model.log_rows, self.model.items.len())
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .with_context(|| path.display().to_string())?
        .read_to_end(&mut v)?;
    Ok(v)
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn polls(txids: &[u64]) -> (Instant, Vec<HealthPoll>) {
        let t0 = Instant::now();
        let polls = txids
            .iter()
            .enumerate()
            .map(|(i, &t)| HealthPoll {
                at: t0 + Duration::from_millis(100 * i as u64 + 100),
                local_txid: t,
                replicated_txid: 0,
                checkpoints: 0,
            })
            .collect();
        (t0, polls)
    }

    #[test]
    fn a_write_is_bound_to_the_txid_two_increases_after_it() {
        let (t0, p) = polls(&[3, 3, 4, 4, 4, 6, 7, 9]);
        assert_eq!(
            two_increases(&p),
            [
                Some(6),
                Some(6),
                Some(7),
                Some(7),
                Some(7),
                Some(9),
                None,
                None
            ]
        );
        let b = vec![two_increases(&p)];
        let processes = vec![p];
        // Acknowledged before the first poll: the first poll saw 3, then 4, then 6.
        assert_eq!(bound_after(&processes, &b, t0), Some(6));
        // Acknowledged after the poll that saw 4 (third): from the fourth poll (4) on.
        assert_eq!(
            bound_after(&processes, &b, t0 + Duration::from_millis(350)),
            Some(7)
        );
        // Too late for two more increases, or after every poll.
        assert_eq!(
            bound_after(&processes, &b, t0 + Duration::from_millis(650)),
            None
        );
        assert_eq!(
            bound_after(&processes, &b, t0 + Duration::from_secs(5)),
            None
        );
    }

    #[test]
    fn a_later_process_bounds_writes_its_predecessor_could_not() {
        let (t0, first) = polls(&[1, 2]);
        let second: Vec<HealthPoll> = polls(&[5, 6, 8])
            .1
            .into_iter()
            .map(|mut h| {
                h.at += Duration::from_secs(1);
                h
            })
            .collect();
        let processes = vec![first, second];
        let b: Vec<_> = processes.iter().map(|p| two_increases(p)).collect();
        // After the first process's last poll: the second process's polls bound it.
        assert_eq!(
            bound_after(&processes, &b, t0 + Duration::from_millis(250)),
            Some(8)
        );
        // During the first process, with too few increases left there: the next process.
        assert_eq!(bound_after(&processes, &b, t0), Some(8));
        // After every poll of both.
        assert_eq!(
            bound_after(&processes, &b, t0 + Duration::from_secs(9)),
            None
        );
    }
}
