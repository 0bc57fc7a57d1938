//! One torture run: epochs of cycles until the time is up.
//!
//! An *epoch* is one lineage: its own settings ([`Settings`]: replica kind, checkpoint
//! thresholds, intervals, load shape), a new database (page size from the seed) and a new,
//! empty replica (a directory, or a key prefix in one S3 bucket reached through the fault
//! proxy), checked by one [`Oracle`]. After the server stops, an S3 replica is first let
//! settle ([`settle`]) before it is checked. Epochs keep long runs bounded (the log table only grows).
//!
//! A *cycle*: (sometimes first a divergence the harness causes on purpose) start the child
//! server, run the write load with faults injected at random moments, then stop the server
//! with SIGKILL or SIGTERM (or let a fault longer than the retry window stop it), sometimes
//! let the other process write while the server is down, and run the oracle. The last cycle
//! of a run ends with SIGTERM, so the strictest check (replica == database) always runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use replication::{ClientOptions, open_client};
use testkit::litestream::Litestream;
use testkit::proxy::{FaultProxy, NetFault};

use crate::faults::{Fault, ReplicaFault};
use crate::oracle::{Ending, Facts, Oracle, failed, with_suffix};
use crate::server::{Launch, Server, StartFailure, tail};
use crate::settings::{ReplicaChoice, Settings};
use crate::workload::{
    self, HealthPoll, Keys, Load, LoadContext, LoadShape, OpBook, Outcome, Writer,
};

/// With less time than this left, the next cycle is the last (of the run or the epoch).
const LAST_CYCLE: Duration = Duration::from_secs(14);

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub dir: PathBuf,
    pub replica: Option<ReplicaChoice>,
    pub epoch: Duration,
}

/// What a run did (printed at the end, also after a failure).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub cycles: u64,
    pub epochs: u64,
    pub faults: BTreeMap<String, u64>,
    pub kills: u64,
    pub terms: u64,
    pub outages: u64,
    pub divergences: u64,
    pub writes_while_down: u64,
    pub checks: u64,
    pub states: u64,
    pub restores: u64,
    pub superseded_compactions: u64,
    pub acked: u64,
    pub acked_cli: u64,
    pub refused: u64,
    pub unknown: u64,
    pub untagged: u64,
    pub cli_checkpoints: u64,
    pub obligations: u64,
    /// Synchronous writes answered 2xx (that changed something), each held to its TXID.
    pub synchronous: u64,
    pub server_checkpoints: u64,
    pub elapsed: Duration,
    /// The last epoch's settings.
    pub settings: String,
    /// Epochs by replica kind.
    pub replicas: BTreeMap<String, u64>,
}

impl Summary {
    pub fn print(&self) {
        let minutes = self.elapsed.as_secs_f64().max(1.0) / 60.0;
        let faults: u64 = self.faults.values().sum();
        println!("torture: last epoch's {}", self.settings);
        println!(
            "torture: {:.1} min, {} epochs {:?}, {} cycles ({:.1}/min): {} SIGKILL, {} SIGTERM, {} outages past the retry window, {} divergences caused, {} writes while down",
            minutes,
            self.epochs,
            self.replicas,
            self.cycles,
            self.cycles as f64 / minutes,
            self.kills,
            self.terms,
            self.outages,
            self.divergences,
            self.writes_while_down
        );
        println!(
            "torture: {faults} faults injected ({:.1}/min): {:?}",
            faults as f64 / minutes,
            self.faults
        );
        println!(
            "torture: {} checkpoints by the replicator ({:.0}/min)",
            self.server_checkpoints,
            self.server_checkpoints as f64 / minutes
        );
        println!(
            "torture: {} listings held a compaction file superseded by a redone one (an upload that failed on our side but landed)",
            self.superseded_compactions
        );
        println!(
            "torture: {} checks ({:.0}/min) over {} replicated states and {} restores; writes: {} acknowledged ({} by the sqlite3 CLI, {} synchronous), {} refused, {} unknown, {} untagged, {} checkpoints by the sqlite3 CLI; {} acknowledged writes bound to a TXID",
            self.checks,
            self.checks as f64 / minutes,
            self.states,
            self.restores,
            self.acked,
            self.acked_cli,
            self.synchronous,
            self.refused,
            self.unknown,
            self.untagged,
            self.cli_checkpoints,
            self.obligations
        );
    }
}

/// Tools and services a run needs.
struct Env {
    exe: PathBuf,
    sqlite3: PathBuf,
    litestream: Litestream,
    s3: Option<S3Env>,
}

struct S3Env {
    s3: testkit::S3,
    bucket: String,
    proxy: FaultProxy,
}

/// The tools, and the S3 server behind a new fault proxy for `ReplicaChoice::S3`.
fn tools(replica: ReplicaChoice) -> anyhow::Result<Env> {
    let need = |t: testkit::Tool| {
        testkit::tool(t).with_context(|| {
            format!("{t:?} is not installed (run scripts/torture, which installs the pinned tools)")
        })
    };
    let s3 = match replica {
        ReplicaChoice::S3 => {
            let s3 = testkit::require_s3("torture")
                .context("an S3 replica needs the local S3 server (scripts/torture starts it)")?;
            let proxy = FaultProxy::start(s3.host_port())?;
            let bucket = s3.create_bucket("torture");
            Some(S3Env { s3, bucket, proxy })
        }
        ReplicaChoice::File => None,
    };
    Ok(Env {
        exe: std::env::current_exe()?,
        sqlite3: need(testkit::Tool::Sqlite3)?,
        litestream: Litestream {
            bin: need(testkit::Tool::Litestream)?,
        },
        s3,
    })
}

/// Runs until `options.duration` has passed or a check fails.
pub async fn run(options: &Options, summary: &mut Summary) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let end = started + options.duration;
    let mut epoch = 0;
    // Each kind's tools, made when an epoch first needs them.
    let mut envs: BTreeMap<String, Env> = BTreeMap::new();
    let result = async {
        // A new lineage only if a cycle still fits.
        while epoch == 0 || end.saturating_duration_since(Instant::now()) >= LAST_CYCLE {
            epoch += 1;
            summary.epochs += 1;
            // Every epoch draws its own settings (replica kind, thresholds, intervals), so a
            // long run covers many.
            let settings = Settings::random(&mut rng, options.replica);
            summary.settings = format!("{settings:?}");
            *summary
                .replicas
                .entry(settings.replica.to_string())
                .or_default() += 1;
            println!("torture: epoch {epoch}: settings {settings:?}");
            let kind = settings.replica.to_string();
            if !envs.contains_key(&kind) {
                envs.insert(kind.clone(), tools(settings.replica)?);
            }
            let Some(env) = envs.get(&kind) else {
                anyhow::bail!("no tools for the {kind} replica");
            };
            let epoch_end = (Instant::now() + options.epoch).min(end);
            run_epoch(
                env, &settings, options, &mut rng, epoch, epoch_end, end, summary,
            )
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    summary.elapsed = started.elapsed();
    result
}

/// One lineage.
#[allow(clippy::too_many_arguments)]
async fn run_epoch(
    env: &Env,
    settings: &Settings,
    options: &Options,
    rng: &mut StdRng,
    epoch: u64,
    epoch_end: Instant,
    run_end: Instant,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let dir = options.dir.join(format!("epoch-{epoch}"));
    std::fs::create_dir_all(dir.join("logs"))?;
    let db = dir.join("app.db");
    let page_size = [1024, 4096, 4096, 8192][rng.random_range(0..4)];
    workload::create_db(&db, page_size)?;
    let (child_url, direct_url) = match &env.s3 {
        Some(s) => {
            let prefix = format!("e{epoch}");
            (
                format!(
                    "s3://{}/{prefix}?endpoint={}&region={}",
                    s.bucket,
                    s.proxy.host_port(),
                    s.s3.region
                ),
                s.s3.replica_url(&s.bucket, &prefix),
            )
        }
        None => {
            let url = format!("file://{}", dir.join("replica").display());
            (url.clone(), url)
        }
    };
    let config = dir.join("litestream.yml");
    std::fs::write(&config, settings.yaml(&db, &child_url))?;
    let target = replication::parse_replica_url(&direct_url)?;
    let client = open_client(&target, &ClientOptions::default()).await?;
    let mut oracle = Oracle::new(
        client,
        direct_url,
        dir.join("oracle"),
        env.exe.clone(),
        env.litestream.clone(),
    )?;
    let launch = Launch {
        exe: env.exe.clone(),
        db: db.clone(),
        config,
        retry_window: settings.retry_window,
        operation_timeout: settings.operation_timeout,
    };
    let book = Arc::new(OpBook::default());
    let ctx = LoadContext {
        book: book.clone(),
        keys: Arc::new(Keys::default()),
        db: db.clone(),
        sqlite3: env.sqlite3.clone(),
        max_pad: settings.max_pad,
        max_bulk: settings.max_bulk,
    };
    let mut processes: Vec<Vec<HealthPoll>> = Vec::new();
    let base = Writes::of(summary);
    let obligations_base = summary.obligations;
    let synchronous_base = summary.synchronous;
    println!(
        "torture: epoch {epoch}: {} (page size {page_size}), replica {}",
        db.display(),
        settings.replica
    );
    let mut cycle_in_epoch = 0u64;
    loop {
        let now = Instant::now();
        if now >= epoch_end {
            break;
        }
        cycle_in_epoch += 1;
        summary.cycles += 1;
        // The last cycle of the run ends with SIGTERM (the strictest check).
        let last = run_end.saturating_duration_since(now) < LAST_CYCLE
            || epoch_end.saturating_duration_since(now) < LAST_CYCLE;
        // An outage takes the retry window and more: not in a short run's first cycles, where
        // the data-loss races are looked for.
        let allow_outage = summary.cycles > 2
            && run_end.saturating_duration_since(now) > settings.retry_window + LAST_CYCLE * 2;
        let plan = CyclePlan::random(
            rng,
            settings,
            env.s3.is_some(),
            cycle_in_epoch > 1,
            last,
            allow_outage,
        );
        let cycle = Cycle {
            env,
            settings,
            launch: &launch,
            ctx: &ctx,
            db: &db,
            dir: &dir,
            number: summary.cycles,
        };
        let ending = cycle
            .run(&plan, rng, &mut oracle, &mut processes, summary)
            .await
            .with_context(|| format!("epoch {epoch}, cycle {} ({plan})", summary.cycles))?;
        let facts = Facts::new(&book.snapshot(), &processes);
        summary.obligations = obligations_base + facts.obligations() as u64;
        summary.synchronous = synchronous_base + facts.synchronous() as u64;
        summary.server_checkpoints += processes
            .last()
            .and_then(|p| p.last())
            .map_or(0, |h| h.checkpoints);
        let reported = processes
            .last()
            .and_then(|p| p.iter().map(|h| h.replicated_txid).max())
            .unwrap_or(0);
        let checked = match &env.s3 {
            Some(s3) => settle(s3, &oracle).await,
            None => Ok(()),
        };
        let checked = match checked {
            Ok(()) => oracle.check_cycle(&facts, &db, ending, reported).await,
            Err(e) => Err(e),
        };
        summary.checks += oracle.stats.checks;
        summary.states += oracle.stats.states;
        summary.restores += oracle.stats.restores;
        summary.superseded_compactions += oracle.stats.superseded_compactions;
        oracle.stats = Default::default();
        tally(summary, &base, &book);
        checked.with_context(|| {
            format!(
                "epoch {epoch}, cycle {} ({plan}), replica checked up to TXID {:016x}",
                summary.cycles,
                oracle.applied()
            )
        })?;
        tally(summary, &base, &book);
        let (rows, items) = oracle.replica_rows();
        println!(
            "torture: cycle {} ok ({plan}): replica at TXID {:016x}, {rows} log rows, {items} items",
            summary.cycles,
            oracle.applied()
        );
        if last {
            break;
        }
    }
    Ok(())
}

/// After the server stopped, waits until what it had in flight has landed: a request the
/// proxy still held (under a delay) reaches the S3 server after a SIGKILL, as it can on a
/// real network, so the replica may change just after the stop. The proxy drains first
/// (closed after 30 s), then the listing must hold still.
async fn settle(s3: &S3Env, oracle: &Oracle) -> anyhow::Result<()> {
    let drained = Instant::now() + Duration::from_secs(30);
    while s3.proxy.open_connections() > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s3.proxy.close_all();
    let mut last = oracle.listing().await?;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = oracle.listing().await?;
        if now == last {
            return Ok(());
        }
        last = now;
    }
    Err(failed(
        "the replica holds still once the server has stopped",
        "its listing still changed 20 s after the stop".to_string(),
    ))
}

/// Counters of earlier epochs.
#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    acked: u64,
    acked_cli: u64,
    refused: u64,
    unknown: u64,
    untagged: u64,
    cli_checkpoints: u64,
}

impl Writes {
    fn of(summary: &Summary) -> Writes {
        Writes {
            acked: summary.acked,
            acked_cli: summary.acked_cli,
            refused: summary.refused,
            unknown: summary.unknown,
            untagged: summary.untagged,
            cli_checkpoints: summary.cli_checkpoints,
        }
    }
}

/// The write counters: earlier epochs' plus this epoch's book.
fn tally(summary: &mut Summary, base: &Writes, book: &OpBook) {
    let mut w = *base;
    for op in book.snapshot() {
        match op.outcome {
            Outcome::Acked { .. } => {
                w.acked += 1;
                if op.writer == Writer::Cli {
                    w.acked_cli += 1;
                }
            }
            Outcome::Failed => w.refused += 1,
            Outcome::Unknown => w.unknown += 1,
        }
    }
    w.untagged += book.untagged.load(std::sync::atomic::Ordering::Relaxed);
    w.cli_checkpoints += book.checkpoints.load(std::sync::atomic::Ordering::Relaxed);
    summary.acked = w.acked;
    summary.acked_cli = w.acked_cli;
    summary.refused = w.refused;
    summary.unknown = w.unknown;
    summary.untagged = w.untagged;
    summary.cli_checkpoints = w.cli_checkpoints;
}

/// How a cycle stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

/// What one cycle does, drawn from the seed.
#[derive(Debug, Clone)]
struct CyclePlan {
    length: Duration,
    shape: LoadShape,
    /// (after, fault, for how long)
    faults: Vec<(Duration, Fault, Duration)>,
    /// A fault that outlasts the retry window, from this moment: the server must exit.
    outage: Option<(Duration, Fault)>,
    stop: Stop,
    diverge: bool,
    writes_while_down: usize,
}

impl std::fmt::Display for CyclePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}s, {} http writers ({} synchronous, size {:.2}), cli {}, readers {}, pouncer {}, stop {:?}",
            self.length.as_secs_f64(),
            self.shape.http_writers,
            self.shape.sync_writers,
            self.shape.size,
            self.shape.cli,
            self.shape.long_readers,
            self.shape.pouncer,
            self.stop
        )?;
        for (at, fault, for_) in &self.faults {
            write!(
                f,
                ", {fault} at {:.1}s for {:.1}s",
                at.as_secs_f64(),
                for_.as_secs_f64()
            )?;
        }
        if let Some((at, fault)) = &self.outage {
            write!(f, ", outage {fault} at {:.1}s", at.as_secs_f64())?;
        }
        if self.diverge {
            write!(f, ", divergence first")?;
        }
        if self.writes_while_down > 0 {
            write!(f, ", {} writes while down", self.writes_while_down)?;
        }
        Ok(())
    }
}

impl CyclePlan {
    fn random(
        rng: &mut StdRng,
        settings: &Settings,
        network: bool,
        may_diverge: bool,
        last: bool,
        allow_outage: bool,
    ) -> CyclePlan {
        // Every draw happens whatever the conditions (which depend on timing), so a seed
        // gives every cycle the same plan on any machine.
        let length = Duration::from_millis(rng.random_range(3000..=9000));
        let http_writers = rng.random_range(1..=settings.http_writers);
        let think = Duration::from_millis(rng.random_range(1..=30));
        let no_think = rng.random_bool(0.7);
        let shape = LoadShape {
            http_writers,
            think: if no_think { Duration::ZERO } else { think },
            cli: rng.random_bool(0.8),
            cli_pause: Duration::from_millis(rng.random_range(2..=60)),
            cli_checkpoints: rng.random_bool(0.7),
            pouncer: rng.random_bool(0.9),
            size: rng.random_range(0.05..=1.0),
            long_readers: if rng.random_bool(0.65) {
                0
            } else {
                rng.random_range(1..=2)
            },
            sync_writers: rng.random_range(0..=http_writers),
        };
        let window = settings.retry_window;
        let mut faults = Vec::new();
        for _ in 0..rng.random_range(0..=3) {
            let at = length.mul_f64(rng.random_range(0.05..0.9));
            let for_ = window.mul_f64(rng.random_range(0.03..0.3));
            faults.push((at, Fault::random(rng, network), for_));
        }
        faults.sort_by_key(|f| f.0);
        let outage_roll = rng.random_bool(0.05);
        let outage_fault = match Fault::random(rng, network) {
            // Delays and resets do not stop a replica for good.
            Fault::Replica(ReplicaFault::Delay(_))
            | Fault::Net(NetFault::Delay(_) | NetFault::Reset) => {
                Fault::Replica(ReplicaFault::Error)
            }
            f => f,
        };
        let outage_at = length.mul_f64(rng.random_range(0.1..0.6));
        let term_roll = rng.random_bool(0.4);
        let diverge_roll = rng.random_bool(0.07);
        let down_roll = rng.random_bool(0.25);
        let down_writes = rng.random_range(1..=6);
        let stop = if last || term_roll {
            Stop::Term
        } else {
            Stop::Kill
        };
        CyclePlan {
            length,
            shape,
            faults,
            outage: (allow_outage && !last && outage_roll).then_some((outage_at, outage_fault)),
            stop,
            diverge: may_diverge && !last && diverge_roll,
            writes_while_down: if stop == Stop::Kill && down_roll {
                down_writes
            } else {
                0
            },
        }
    }
}

/// What a cycle works on.
struct Cycle<'a> {
    env: &'a Env,
    settings: &'a Settings,
    launch: &'a Launch,
    ctx: &'a LoadContext,
    db: &'a Path,
    dir: &'a Path,
    number: u64,
}

/// A moment of the cycle's schedule.
#[derive(Debug, Clone, Copy)]
enum Event {
    Start(Fault, Duration),
    End(Fault),
    Outage(Fault),
    Stop,
}

impl Cycle<'_> {
    async fn run(
        &self,
        plan: &CyclePlan,
        rng: &mut StdRng,
        oracle: &mut Oracle,
        processes: &mut Vec<Vec<HealthPoll>>,
        summary: &mut Summary,
    ) -> anyhow::Result<Ending> {
        if plan.diverge {
            self.diverge(oracle).await?;
            summary.divergences += 1;
        }
        let log = self.dir.join(format!("logs/cycle-{}.log", self.number));
        let mut server = match Server::start(self.launch, &log).await {
            Ok(s) => s,
            Err(StartFailure::Exited { status, log }) if log.contains("have diverged") => {
                return Err(failed(
                    "a restart never reports a divergence the harness did not cause",
                    format!("exit {status}:\n{}", tail(&log, 20)),
                ));
            }
            Err(StartFailure::Exited { status, log }) => {
                return Err(failed(
                    "the server restarts",
                    format!("exit {status}:\n{}", tail(&log, 30)),
                ));
            }
            Err(StartFailure::NotReady { log }) => {
                return Err(failed(
                    "the server restarts",
                    format!("never ready:\n{}", tail(&log, 30)),
                ));
            }
            Err(StartFailure::Harness(e)) => return Err(e),
        };
        let mut load = Load::start(
            self.ctx,
            plan.shape,
            &server.api,
            &server.admin,
            rng.random::<u64>(),
        )?;
        // The schedule.
        let t0 = tokio::time::Instant::now();
        let mut events: Vec<(Duration, Event)> = Vec::new();
        for (at, fault, for_) in &plan.faults {
            events.push((*at, Event::Start(*fault, *for_)));
            events.push((*at + *for_, Event::End(*fault)));
        }
        if let Some((at, fault)) = plan.outage {
            events.push((at, Event::Outage(fault)));
        }
        events.push((plan.length, Event::Stop));
        events.sort_by_key(|e| e.0);
        let mut ending = Ending::Crash;
        for (at, event) in events {
            if let Some(status) = self.wait(&mut server, t0 + at).await {
                let _ = load.stop().await;
                return Err(failed(
                    "the server keeps running while the replica recovers within the retry window",
                    format!("it exited ({status}):\n{}", tail(&server.log(), 30)),
                ));
            }
            match event {
                Event::Start(fault, for_) => {
                    *summary.faults.entry(fault_name(fault)).or_default() += 1;
                    self.inject(&mut server, fault, for_);
                }
                Event::End(fault) => {
                    if let (Fault::Net(_), Some(s3)) = (fault, &self.env.s3) {
                        s3.proxy.set(NetFault::Pass);
                    }
                }
                Event::Outage(fault) => {
                    summary.outages += 1;
                    *summary
                        .faults
                        .entry(format!("outage {}", fault_name(fault)))
                        .or_default() += 1;
                    self.inject(&mut server, fault, Duration::from_secs(3600));
                    // The server must stop by itself within the window (plus the deadline
                    // of an operation that hangs, and shutdown).
                    let within = self.settings.retry_window
                        + self.settings.operation_timeout
                        + Duration::from_secs(20);
                    let status = server.wait_exit(within).await;
                    self.clear(&mut server);
                    processes.push(load.stop().await);
                    let log = server.log();
                    return match status {
                        Some(s) if !s.success() && log.contains("replication failed") => {
                            Ok(Ending::Crash)
                        }
                        Some(s) => Err(failed(
                            "a replica that stays broken past the retry window stops the server with a non-zero exit",
                            format!("exit {s}:\n{}", tail(&log, 30)),
                        )),
                        None => {
                            server.kill();
                            Err(failed(
                                "a replica that stays broken past the retry window stops the server with a non-zero exit",
                                format!(
                                    "still running {within:?} after the replica broke:\n{}",
                                    tail(&log, 30)
                                ),
                            ))
                        }
                    };
                }
                Event::Stop => {
                    self.clear(&mut server);
                    match plan.stop {
                        Stop::Kill => {
                            summary.kills += 1;
                            server.kill();
                        }
                        Stop::Term => {
                            summary.terms += 1;
                            // Only the server writes from now on: every acknowledged write
                            // must then reach the replica.
                            load.stop_others().await;
                            server.term();
                            let status = server.wait_exit(Duration::from_secs(90)).await;
                            match status {
                                Some(s) if s.success() => ending = Ending::Graceful,
                                Some(s) => {
                                    return Err(failed(
                                        "SIGTERM stops the server cleanly (final sync) with exit 0",
                                        format!("exit {s}:\n{}", tail(&server.log(), 30)),
                                    ));
                                }
                                None => {
                                    server.kill();
                                    return Err(failed(
                                        "SIGTERM stops the server cleanly (final sync) with exit 0",
                                        format!(
                                            "still running 90 s after SIGTERM:\n{}",
                                            tail(&server.log(), 30)
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                    break;
                }
            }
        }
        processes.push(load.stop().await);
        if plan.writes_while_down > 0 {
            let mut r = StdRng::seed_from_u64(rng.random::<u64>());
            let mut shell = workload::Shell::new(&self.ctx.sqlite3, &self.ctx.db);
            for _ in 0..plan.writes_while_down {
                // Often a checkpoint: with the replicator gone, a checkpoint then a write
                // restarts the WAL behind its back.
                workload::cli_step(self.ctx, &mut shell, &mut r, 0.35).await;
                summary.writes_while_down += 1;
            }
            if r.random_bool(0.5) {
                shell.close().await;
            }
        }
        Ok(ending)
    }

    /// Sleeps until `until`; returns early with the exit status if the server exits.
    async fn wait(
        &self,
        server: &mut Server,
        until: tokio::time::Instant,
    ) -> Option<std::process::ExitStatus> {
        loop {
            if let Some(s) = server.try_status() {
                return Some(s);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return None;
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(50))).await;
        }
    }

    fn inject(&self, server: &mut Server, fault: Fault, for_: Duration) {
        match fault {
            Fault::Replica(r) => server.send(&r.line(for_)),
            Fault::Net(n) => {
                if let Some(s3) = &self.env.s3 {
                    s3.proxy.set(n);
                    if n == NetFault::Reset {
                        // A reset is a moment, not a state.
                        s3.proxy.set(NetFault::Pass);
                    }
                }
            }
        }
    }

    fn clear(&self, server: &mut Server) {
        server.send(&ReplicaFault::None.line(Duration::ZERO));
        if let Some(s3) = &self.env.s3 {
            s3.proxy.set(NetFault::Pass);
        }
    }

    /// A divergence the harness causes: another database where the server's was. The server
    /// must refuse to start (non-zero, the divergence message) and change nothing, neither
    /// the replica nor the local file. Then the real database goes back.
    async fn diverge(&self, oracle: &Oracle) -> anyhow::Result<()> {
        let aside = self.dir.join("aside");
        std::fs::create_dir_all(&aside)?;
        let meta = meta_dir(self.db);
        let moved: Vec<(PathBuf, PathBuf)> = [
            self.db.to_path_buf(),
            with_suffix(self.db, "-wal"),
            with_suffix(self.db, "-shm"),
            meta.clone(),
        ]
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| {
            let to = aside.join(p.file_name().unwrap_or_default());
            (p, to)
        })
        .collect();
        for (from, to) in &moved {
            std::fs::rename(from, to)?;
        }
        let result = async {
            workload::create_db(self.db, 4096)?;
            let conn = rusqlite::Connection::open(self.db)?;
            conn.execute_batch(
                "INSERT INTO items(k, v, op) VALUES ('other-lineage', 1, 0); PRAGMA wal_checkpoint(TRUNCATE);",
            )?;
            drop(conn);
            let before_files = oracle.listing().await?;
            let before_db = std::fs::read(self.db)?;
            let log = self.dir.join(format!("logs/cycle-{}-diverged.log", self.number));
            match Server::start(self.launch, &log).await {
                Ok(mut s) => {
                    s.kill();
                    return Err(failed(
                        "a diverged database is refused at start-up",
                        format!("the server started on another database:\n{}", tail(&s.log(), 20)),
                    ));
                }
                Err(StartFailure::Exited { status, log }) => {
                    if status.success() || !log.contains("have diverged") {
                        return Err(failed(
                            "a diverged database is refused at start-up with the divergence message",
                            format!("exit {status}:\n{}", tail(&log, 20)),
                        ));
                    }
                }
                Err(StartFailure::NotReady { log }) => {
                    return Err(failed("a diverged database is refused at start-up", tail(&log, 20)));
                }
                Err(StartFailure::Harness(e)) => return Err(e),
            }
            let after_files = oracle.listing().await?;
            if before_files != after_files {
                return Err(failed(
                    "a refused start never overwrites the replica",
                    format!("before {before_files:?}\nafter {after_files:?}"),
                ));
            }
            if std::fs::read(self.db)? != before_db {
                return Err(failed(
                    "a refused start never overwrites the local database",
                    "the database file changed".to_string(),
                ));
            }
            anyhow::Ok(())
        }
        .await;
        for p in [
            self.db.to_path_buf(),
            with_suffix(self.db, "-wal"),
            with_suffix(self.db, "-shm"),
        ] {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all(&meta);
        for (from, to) in &moved {
            std::fs::rename(to, from)?;
        }
        result
    }
}

/// `.<name>-litestream` next to the database.
fn meta_dir(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}-litestream"))
}

fn fault_name(f: Fault) -> String {
    match f {
        Fault::Replica(ReplicaFault::Delay(_)) => "replica delay".into(),
        Fault::Net(NetFault::Delay(_)) => "network delay".into(),
        Fault::Net(NetFault::CutAfter(_)) => "network cut".into(),
        Fault::Replica(r) => format!("replica {r:?}").to_lowercase(),
        Fault::Net(n) => format!("network {n:?}").to_lowercase(),
    }
}
