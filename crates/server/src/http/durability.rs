//! Durability and replication positions on the REST API: when a write is answered, which
//! position (`Sqlite-Rest-Txid`) a response carries, and reads that wait for a position
//! (`Prefer: min-txid`).
//!
//! Positions are replication TXIDs (16 hex digits, the names of the replica's LTX files), so
//! they exist only with `--replication-enabled`; without it no response carries one.
//!
//! - A write of `local` durability is answered at its COMMIT, without a position, unless the
//!   server runs with `--write-positions`: waiting for every write's local sync costs write
//!   throughput (with 32 clients, 0.2–0.5 × of answering at the commit on a 2-core machine,
//!   see the README's durability benchmark), and the position is only useful to clients that
//!   read their writes elsewhere.
//! - Otherwise a write that committed something is answered once the local LTX file holding
//!   its COMMIT exists (`ReplicationHandle::wait_commit_synced`), with that file's max TXID. That wait is
//!   bounded by the request's deadline: a local sync that keeps failing (local disk full)
//!   must not hold writes until the retry window ends, so a local-mode write whose TXID is
//!   not known by then is answered as usual, without the header (counted in
//!   `sqlite_rest_write_durability_total{outcome="timeout"}`).
//! - A write with `durability=replicated` (the request's `Prefer`, else
//!   `--write-durability`) then also waits until the replica holds that commit, at most
//!   `--write-durability-timeout-ms` from its COMMIT. Otherwise it is answered 503 `SR001`
//!   saying exactly what became of it: committed locally, not yet on the replica (it will be
//!   uploaded once the replica answers), with its TXID. The same answer comes when
//!   replication fails for good while it waits, and when shutdown's deadline for such waits
//!   passes (see [`Durability::shutdown_started`]).
//! - A write that committed nothing (rolled back on request, or changing no row) is answered
//!   at once with the current local position: a lower bound of what it saw.
//! - On a follower (`--replication-follow`) writes are refused: 405 `25006`, naming the
//!   primary when `--replication-primary-url` is given. Reads carry the follower's applied
//!   TXID, and `Prefer: min-txid` waits for it at most `--replication-follow-wait-ms`.
//! - A read carries the local position taken before its snapshot begins: it reflects every
//!   write answered with a TXID up to it. With `Prefer: min-txid=X` it is served once the
//!   local position reaches X (at once on the server that handed X out), else 503 `SR003`
//!   after min(durability timeout, request deadline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialect::{ApiError, Durability as Mode, ErrorCode, Preferences};
use ltx::TxId;
use replication::{FatalError, ReplicationHandle};
use tokio_util::sync::CancellationToken;

use crate::follower::FollowHandle;
use crate::metrics_registry::Metrics;

/// The response header carrying a replication position.
pub const TXID_HEADER: &str = "sqlite-rest-txid";

/// How writes are acknowledged and positions served; shared by every request.
pub struct Durability {
    /// `None`: replication is off (no positions).
    handle: Option<ReplicationHandle>,
    /// A follower's positions (`--replication-follow`; then `handle` is `None`).
    follow: Option<FollowHandle>,
    /// `--write-durability`.
    default: Mode,
    /// `--write-durability-timeout-ms`: the longest wait of a synchronous write for the
    /// replica, and of a `min-txid` read.
    timeout: Duration,
    /// `--write-positions`: local-mode writes wait for their TXID.
    local_positions: bool,
    /// Cancelled when shutdown's deadline for synchronous writes passes.
    shutdown_deadline: CancellationToken,
    metrics: Arc<Metrics>,
}

/// How one wait for a position ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The commit is in a local LTX file (local mode).
    Synced,
    /// The commit is on the replica (replicated mode).
    Replicated,
    /// The write committed nothing; answered with the current position.
    NoCommit,
    /// The bound passed first.
    Timeout,
    /// Shutdown's deadline passed first.
    Shutdown,
    /// Replication failed for good.
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Replicated => "replicated",
            Outcome::NoCommit => "no_commit",
            Outcome::Timeout => "timeout",
            Outcome::Shutdown => "shutdown",
            Outcome::Failed => "failed",
        }
    }
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Local => "local",
        Mode::Replicated => "replicated",
    }
}

/// Why a wait ended without its position.
enum Stop {
    Timeout,
    Shutdown,
    Failed(FatalError),
}

impl Stop {
    fn outcome(&self) -> Outcome {
        match self {
            Stop::Timeout => Outcome::Timeout,
            Stop::Shutdown => Outcome::Shutdown,
            Stop::Failed(_) => Outcome::Failed,
        }
    }
}

/// 400 `SR002`: a guarantee asked of a server without replication.
fn no_replication(what: &str) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::InvalidOwnPreference,
        format!("{what} needs replication, which this server does not run"),
    )
    .with_details("The server was started without --replication-enabled: it has no replica and no replication positions")
    .with_hint("Send the request without it, or enable replication on the server")
}

impl Durability {
    pub fn new(
        handle: Option<ReplicationHandle>,
        default: Mode,
        timeout: Duration,
        local_positions: bool,
        metrics: Arc<Metrics>,
    ) -> Durability {
        Durability {
            handle,
            follow: None,
            default,
            timeout,
            local_positions,
            shutdown_deadline: CancellationToken::new(),
            metrics,
        }
    }

    /// This server follows a replica: reads carry its applied TXID, writes are refused.
    pub fn with_follower(mut self, follow: FollowHandle) -> Durability {
        self.follow = Some(follow);
        self
    }

    /// The durability a write asks for (its `Prefer`, else the server's default); 400
    /// `SR002` for `durability=replicated` without replication, whatever `handling` says.
    /// On a follower every write is refused here, before anything runs: 405 `25006`.
    pub fn mode(&self, prefer: &Preferences) -> Result<Mode, ApiError> {
        if let Some(f) = &self.follow {
            return Err(read_only_follower(f));
        }
        let mode = prefer.durability.unwrap_or(self.default);
        if mode == Mode::Replicated && self.handle.is_none() {
            return Err(no_replication("Prefer: durability=replicated"));
        }
        Ok(mode)
    }

    /// Shutdown began: synchronous writes still waiting for the replica `within` from now
    /// are answered `SR001` then, so the HTTP drain ends with every request answered.
    pub fn shutdown_started(&self, within: Duration) {
        let token = self.shutdown_deadline.clone();
        tokio::spawn(async move {
            tokio::time::sleep(within).await;
            token.cancel();
        });
    }

    /// Waits until a write that committed `seq` (see `Writer::run_committed`) is as durable
    /// as `mode` asks; its TXID for `Sqlite-Rest-Txid` (`None`: no replication, a local
    /// write without `--write-positions`, or one whose TXID was not known by `deadline`). `SR001` when a replicated write's
    /// commit is not confirmed on the replica in time.
    pub async fn settle_write(
        &self,
        mode: Mode,
        seq: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<TxId>, ApiError> {
        let Some(handle) = &self.handle else {
            return Ok(None);
        };
        if mode == Mode::Local && !self.local_positions {
            return Ok(None);
        }
        let started = Instant::now();
        let Some(seq) = seq else {
            self.count(mode, Outcome::NoCommit, started);
            return Ok(Some(handle.positions().local_txid));
        };
        let bound = started + self.timeout;
        let synced_by = match mode {
            Mode::Local => deadline,
            Mode::Replicated => deadline.min(bound),
        };
        let synced = self
            .bounded(synced_by, async { handle.wait_commit_synced(seq).await })
            .await;
        let txid = match (mode, synced) {
            (_, Ok(txid)) => txid,
            (Mode::Local, Err(stop)) => {
                self.count(mode, stop.outcome(), started);
                if let Stop::Failed(f) = &stop {
                    tracing::warn!(error = %f, "a write was answered without its TXID: replication failed");
                } else {
                    tracing::warn!(
                        seq,
                        "a write was answered without its TXID: its commit was not in a local LTX file by the request's deadline"
                    );
                }
                return Ok(None);
            }
            (Mode::Replicated, Err(stop)) => {
                self.count(mode, stop.outcome(), started);
                return Err(self.not_replicated(handle, None, &stop, started));
            }
        };
        if mode == Mode::Local {
            self.count(mode, Outcome::Synced, started);
            return Ok(Some(txid));
        }
        let replicated = self
            .bounded(bound, async {
                handle.wait_commit_replicated(seq).await.map(|_| ())
            })
            .await;
        match replicated {
            Ok(()) => {
                self.count(mode, Outcome::Replicated, started);
                Ok(Some(txid))
            }
            Err(stop) => {
                self.count(mode, stop.outcome(), started);
                Err(self.not_replicated(handle, Some(txid), &stop, started))
            }
        }
    }

    /// Runs a replication wait until `by`, or until shutdown's deadline.
    async fn bounded<T>(
        &self,
        by: Instant,
        wait: impl Future<Output = Result<T, FatalError>>,
    ) -> Result<T, Stop> {
        // The wait first: a position already reached is never lost to a bound that passed.
        tokio::select! {
            biased;
            r = wait => r.map_err(Stop::Failed),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(by)) => Err(Stop::Timeout),
            _ = self.shutdown_deadline.cancelled() => Err(Stop::Shutdown),
        }
    }

    fn count(&self, mode: Mode, outcome: Outcome, started: Instant) {
        self.metrics
            .durability_wait(mode_label(mode), outcome.label(), started.elapsed());
    }

    /// 503 `SR001`: committed locally, not confirmed on the replica.
    fn not_replicated(
        &self,
        handle: &ReplicationHandle,
        txid: Option<TxId>,
        stop: &Stop,
        started: Instant,
    ) -> ApiError {
        // The details say what happened in terms a client can act on; the replica's address
        // and the errors' own text stay in the server's log (they name endpoints and buckets).
        let waited = started.elapsed().as_millis();
        let at = txid.map_or_else(
            || "a TXID not known yet (its local LTX file had not been written)".to_string(),
            |t| format!("TXID {t}"),
        );
        let why = match stop {
            Stop::Timeout => format!(
                "the replica did not confirm it within {waited} ms (--write-durability-timeout-ms {})",
                self.timeout.as_millis()
            ),
            Stop::Shutdown => format!(
                "the server is shutting down and the replica had not confirmed it after {waited} ms; the final sync keeps uploading until the process exits"
            ),
            Stop::Failed(f) => {
                tracing::warn!(replica = %handle.replica(), error = %f, "a synchronous write was answered SR001: replication failed");
                format!(
                    "replication failed for good while the write waited ({} failing for {} s); the server is stopping",
                    f.component,
                    f.failing_for.as_secs()
                )
            }
        };
        let mut e = ApiError::new(
            503,
            ErrorCode::NotReplicated,
            "The transaction was committed locally but is not yet confirmed on the replica",
        )
        .with_details(format!("Committed locally at {at}; {why}"))
        .with_hint(match txid {
            Some(t) => format!(
                "It is uploaded once the replica is reachable. Do not blindly retry a write that is not idempotent: check first, with a read sending Prefer: min-txid={t}, or on the replica"
            ),
            None => "It is uploaded once the replica is reachable. Do not blindly retry a write that is not idempotent: read first to check whether it is there".to_string(),
        })
        .with_header("Retry-After", "1");
        if let Some(t) = txid {
            e = e.with_header(TXID_HEADER, t.to_string());
        }
        e
    }

    /// The position a read is served at (`None` without replication), taken before its
    /// snapshot begins. With `min_txid`, waits until the local position reaches it, at most
    /// min(durability timeout, `deadline`): then 503 `SR003`. `SR002` for `min-txid`
    /// without replication.
    pub async fn read_position(
        &self,
        min_txid: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<TxId>, ApiError> {
        if let Some(f) = &self.follow {
            return follower_position(f, min_txid, deadline).await.map(Some);
        }
        let Some(handle) = &self.handle else {
            return match min_txid {
                Some(_) => Err(no_replication("Prefer: min-txid")),
                None => Ok(None),
            };
        };
        let Some(min) = min_txid.map(TxId) else {
            return Ok(Some(handle.positions().local_txid));
        };
        let mut positions = handle.subscribe();
        let by = tokio::time::Instant::from_std(deadline.min(Instant::now() + self.timeout));
        let reached = tokio::time::timeout_at(by, async {
            positions
                .wait_for(|p| p.local_txid >= min)
                .await
                .map(|p| p.local_txid)
        })
        .await;
        match reached {
            Ok(Ok(txid)) => Ok(Some(txid)),
            // Timed out, or replication stopped: the position will not move.
            Ok(Err(_)) | Err(_) => {
                let current = handle.positions().local_txid;
                Err(ApiError::new(
                    503,
                    ErrorCode::PositionNotReached,
                    "The requested replication position has not been reached",
                )
                .with_details(format!(
                    "Prefer: min-txid={min} was requested; this server's database is at TXID {current}"
                ))
                .with_hint("Retry later, or send the read to the server that answered the write")
                .with_header("Retry-After", "1")
                .with_header(TXID_HEADER, current.to_string()))
            }
        }
    }
}

/// 405 `25006`: a write sent to a follower.
fn read_only_follower(f: &FollowHandle) -> ApiError {
    let e = ApiError::new(
        405,
        ErrorCode::ReadOnlyTransaction,
        "cannot execute a write on a read replica",
    );
    match &f.primary_url {
        Some(url) => e
            .with_details(format!(
                "This server follows the replica of the primary at {url} (--replication-follow) and takes no writes"
            ))
            .with_hint(format!("Send writes to the primary: {url}")),
        None => e
            .with_details(
                "This server follows a replica (--replication-follow) and takes no writes",
            )
            .with_hint("Send writes to the primary server"),
    }
}

/// A follower's position for a read: its applied TXID, once it reaches `min_txid`, waiting at
/// most min(`--replication-follow-wait-ms`, `deadline`); else 503 `SR003`.
async fn follower_position(
    f: &FollowHandle,
    min_txid: Option<u64>,
    deadline: Instant,
) -> Result<TxId, ApiError> {
    let Some(min) = min_txid.map(TxId) else {
        return Ok(f.applied());
    };
    let mut applied = f.subscribe();
    let by = tokio::time::Instant::from_std(deadline.min(Instant::now() + f.wait));
    let reached = tokio::time::timeout_at(by, async {
        applied.wait_for(|t| *t >= min).await.map(|t| *t)
    })
    .await;
    match reached {
        Ok(Ok(txid)) => Ok(txid),
        Ok(Err(_)) | Err(_) => {
            let current = f.applied();
            Err(ApiError::new(
                503,
                ErrorCode::PositionNotReached,
                "The requested replication position has not been reached",
            )
            .with_details(format!(
                "Prefer: min-txid={min} was requested; this follower's database is at TXID {current} (waited up to {} ms, --replication-follow-wait-ms)",
                f.wait.as_millis()
            ))
            .with_hint("Retry later, or read from the primary")
            .with_header("Retry-After", "1")
            .with_header(TXID_HEADER, current.to_string()))
        }
    }
}
