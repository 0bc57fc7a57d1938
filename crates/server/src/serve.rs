//! Start-up and shutdown of `serve` (and `demo`), as a sequence of clear steps.
//!
//! 1. replication (`--replication-enabled`), before anything opens the file: load the
//!    Litestream config, probe the replica, restore a missing database or check that the local
//!    one shares the replica's history ([`crate::embedded_replication::start`]); then replicate
//!    With `--replication-follow` instead, the follower restores or resumes the database and
//!    catches up with the replica ([`crate::follower::start`]); it polls beside the servers.
//! 2. open the database: the read-write connection (WAL; set up for who checkpoints: the
//!    replicator with replication, else SQLite's automatic checkpoint), the read pool, the
//!    schema cache; then start the single writer on the read-write connection; its commit
//!    notices wake replication at once
//!    and the RPC functions of `--rpc-dir` (a broken file refuses the start)
//! 3. authentication
//! 4. request state
//! 5. bind every listener (a busy port fails start-up before anything is served)
//! 6. run the API, admin and pprof servers as tasks sharing one [`Shutdown`]; replication
//!    runs beside them and reports to `/health`
//! 7. wait for SIGINT/SIGTERM, a task failing, the writer stopping, or replication failing for
//!    good; then cancel everything and wait for the tasks to drain (bounded); replication
//!    keeps running meanwhile, so writes waiting for the replica (`durability=replicated`)
//!    are answered once replicated, or 503 `SR001` when [`sync_write_grace`] has passed;
//!    the writer commits what is still queued and stops; the server's connections close;
//!    then replication's final sync (bounded by `shutdown-sync-timeout`). A replication
//!    failure, or a final sync that cannot finish, exits non-zero.

use std::sync::Arc;
use std::time::Duration;

use replication::Checkpointer;
use tokio::task::JoinSet;

use crate::admin::{self, HealthReport};
use crate::auth::Auth;
use crate::database::{Database, OpenOptions, Writer, WriterConfig};
use crate::embedded_replication;
use crate::http::durability::Durability;
use crate::http::{self, AppState, Cors};
use crate::metrics_registry::Metrics;
use crate::permissions::PermissionsRegistry;
use crate::pprof;
use crate::rpc_functions::RpcRegistry;
use crate::serve_config::ServeConfig;
use crate::shutdown::{self, Shutdown};

/// The longest the API's drain takes once shutdown begins (then queued writes commit and the
/// final sync runs, bounded by the config's `shutdown-sync-timeout`).
pub const DRAIN: Duration = Duration::from_secs(30);

/// Time the drain keeps for answering once synchronous writes stop waiting.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// How long, once shutdown begins, writes waiting for the replica keep waiting: the
/// replication config's `shutdown-sync-timeout` (the bound shutdown puts on reaching the
/// replica), within the drain's own bound so that every such write is answered (`SR001`)
/// before the drain gives up on its connection.
/// The database file `dsn` names when it is a file that does not exist yet (`None` for an
/// existing file and for in-memory databases).
fn missing_database_file(dsn: &str) -> Option<std::path::PathBuf> {
    let path = embedded_replication::db_path(dsn).ok()?;
    (!path.exists()).then_some(path)
}

fn sync_write_grace(shutdown_sync_timeout: Duration) -> Duration {
    shutdown_sync_timeout.min(DRAIN.saturating_sub(ANSWER_MARGIN))
}

/// What a program running the server as a library may add to it; the `sqlite-rest` binary
/// uses the default (nothing).
#[derive(Clone, Default)]
pub struct ServeHooks {
    /// Wraps the replica client ([`::replication::ReplicatorOptions::wrap_client`]), e.g. to
    /// inject replica faults in the torture harness.
    pub wrap_replica_client: Option<::replication::WrapClient>,
}

impl std::fmt::Debug for ServeHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeHooks")
            .field("wrap_replica_client", &self.wrap_replica_client.is_some())
            .finish()
    }
}

/// Serves until a signal or a failure (see the module docs), with `hooks` (none by default).
pub async fn run_with(config: ServeConfig, hooks: ServeHooks) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    // Metrics first: replication registers its families in the same registry.
    let metrics = Arc::new(Metrics::new()?);

    // A database file that does not exist is created (as the Go version's driver did):
    // said loudly, since a mistyped --db-dsn would otherwise serve an empty database, or
    // refused with --db-must-exist.
    let missing_db = missing_database_file(&config.dsn);
    let from_replica = config.replication.is_some() || config.follow.is_some();
    if let (Some(path), true, false) = (&missing_db, config.db_must_exist, from_replica) {
        anyhow::bail!(
            "the database {} does not exist (--db-must-exist): check --db-dsn, or leave out --db-must-exist to create a new, empty database",
            path.display()
        );
    }

    // Step 1: replication — restore / lineage check before anything opens the file.
    let (replicator, shutdown_sync_timeout) = match &config.replication {
        Some(settings) => {
            let started = embedded_replication::start(
                settings,
                &config.dsn,
                metrics.registry(),
                hooks.wrap_replica_client.clone(),
                !config.db_must_exist,
            )
            .await?;
            (Some(started.replicator), started.shutdown_sync_timeout)
        }
        None => (None, Duration::ZERO),
    };
    // A follower restores or resumes its database and catches up before it is opened.
    let follower = match &config.follow {
        Some(settings) => {
            Some(crate::follower::start(settings, &config.dsn, metrics.registry()).await?)
        }
        None => None,
    };
    if let Some(path) = &missing_db {
        // A follower's database comes from the replica, never new and empty.
        let created = follower.is_none()
            && replicator
                .as_ref()
                .is_none_or(|r| r.handle().start_action() == replication::StartAction::NewDatabase);
        if created {
            tracing::warn!(
                db = %path.display(),
                "the database file did not exist: created a new, empty database (a mistyped --db-dsn? --db-must-exist refuses to start instead)"
            );
        }
    }

    // Step 2: the database.
    if config.allow_tables.is_empty() && config.permissions.is_none() {
        tracing::warn!(
            "no --security-allow-table given: no table or view is exposed (as in the Go version)"
        );
    }
    let db = {
        let (dsn, exposure, budget) = (
            config.dsn.clone(),
            config.exposure(),
            config.request_timeout,
        );
        let writer_options = OpenOptions {
            synchronous: Some(config.writes.synchronous),
            busy_timeout: config.writes.busy_timeout,
            checkpointer: Checkpointer::for_replication(replicator.is_some()),
            ..OpenOptions::writer()
        };
        tokio::task::spawn_blocking(move || {
            Database::open_with(&dsn, exposure, budget, &writer_options)
        })
        .await??
    };
    let writer = {
        let conn = db
            .take_writer_connection()
            .ok_or_else(|| anyhow::anyhow!("the writer connection was already taken"))?;
        let m = metrics.clone();
        Arc::new(Writer::start(
            conn,
            db.schema.clone(),
            WriterConfig {
                max_batch_jobs: config.writes.batch_max,
                ..WriterConfig::default()
            },
            Some(Box::new(move |event| m.write_event(event))),
        )?)
    };
    tracing::info!(
        synchronous = config.writes.synchronous.as_str(),
        "writer started"
    );

    // The RPC functions, checked against the database: a broken file refuses the start.
    let rpc = {
        let (dir, dsn) = (config.rpc_dir.clone(), config.dsn.clone());
        Arc::new(tokio::task::spawn_blocking(move || RpcRegistry::open(dir, &dsn)).await??)
    };

    // The permissions file, checked against the database: a broken file refuses the start.
    let permissions = match config.permissions.clone() {
        Some(path) => {
            let dsn = config.dsn.clone();
            Some(Arc::new(
                tokio::task::spawn_blocking(move || PermissionsRegistry::open(path, &dsn))
                    .await??,
            ))
        }
        None => None,
    };

    // Step 3: authentication.
    if config.auth.disabled() {
        for _ in 0..3 {
            tracing::warn!(
                "AUTHENTICATION IS DISABLED (--insecure-disable-auth): every client can read every exposed table. Never do this outside local development."
            );
        }
    }
    let auth = Arc::new(Auth::new(&config.auth)?);

    // Step 4: request state.
    let state = Arc::new(AppState {
        db: db.clone(),
        auth: auth.clone(),
        cors: Cors::new(config.cors_allowed_origins.clone()),
        metrics: metrics.clone(),
        limits: config.http_limits,
        plan_limits: dialect::Limits {
            max_rows: config.max_rows,
            aggregates: config.aggregates,
        },
        writer: writer.clone(),
        rpc: rpc.clone(),
        permissions: permissions.clone(),
        plans: Arc::new(dialect::PlanCache::new()),
        write_options: dialect::WriteOptions {
            safe_update: config.writes.safe_update,
            // A representation is built in memory inside the write: room for what a body of
            // the largest size inserts, and more.
            max_representation_bytes: usize::try_from(config.http_limits.max_body_bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .max(dialect::MAX_REPRESENTATION_BYTES),
        },
        durability: {
            let d = Durability::new(
                replicator.as_ref().map(|r| r.handle()),
                config.writes.durability,
                config.writes.durability_timeout,
                config.writes.local_positions,
                metrics.clone(),
            );
            match &follower {
                Some(f) => d.with_follower(f.handle()),
                None => d,
            }
        },
        openapi: Default::default(),
    });
    let durability_state = state.clone();
    let health = Arc::new(HealthReport::default());

    // Step 5: listeners.
    let api_listener = listen(&config.http_addr).await?;
    let admin_listener = match &config.metrics_addr {
        Some(a) => Some(listen(a).await?),
        None => None,
    };
    let pprof_listener = match &config.pprof_addr {
        Some(a) => Some(listen(a).await?),
        None => None,
    };

    // Step 6: the servers.
    let mut tasks: JoinSet<(&'static str, std::io::Result<()>)> = JoinSet::new();
    tracing::info!(addr = %api_listener.local_addr()?, db = %config.dsn, "server started");
    let token = shutdown.token();
    let api = http::api(state);
    let limits = fit_connections(config.conn_limits);
    tasks.spawn(async move { ("api", http::serve(api_listener, api, limits, token).await) });
    if let Some(l) = admin_listener {
        tracing::info!(addr = %l.local_addr()?, "metrics server started");
        let token = shutdown.token();
        let router = http::router_handler(admin::router(metrics, db.clone(), health.clone()));
        let limits = limits.monitoring();
        tasks.spawn(async move { ("metrics", http::serve(l, router, limits, token).await) });
    }
    if let Some(l) = pprof_listener {
        tracing::warn!(addr = %l.local_addr()?, "pprof server started; make sure it is not exposed to the public internet");
        let token = shutdown.token();
        let limits = limits.monitoring();
        tasks.spawn(async move {
            (
                "pprof",
                http::serve(l, http::router_handler(pprof::router()), limits, token).await,
            )
        });
    }
    {
        let db = db.clone();
        let rpc = rpc.clone();
        let permissions = permissions.clone();
        let auth = auth.clone();
        tokio::spawn(shutdown::on_reload_signal(shutdown.clone(), move || {
            db.schema.invalidate();
            let rpc = rpc.clone();
            let permissions = permissions.clone();
            let auth = auth.clone();
            tokio::task::spawn_blocking(move || {
                auth.reload("SIGUSR1");
                rpc.reload_logged("SIGUSR1");
                if let Some(p) = permissions {
                    p.reload_logged("SIGUSR1");
                }
            });
        }));
    }
    if let Some(p) = &permissions {
        tokio::spawn(crate::watch::watch(p.clone(), shutdown.clone()));
    }
    if auth.required() {
        tokio::spawn(crate::watch::watch(auth.clone(), shutdown.clone()));
    }
    tokio::spawn(crate::watch::watch(rpc.clone(), shutdown.clone()));
    if let Some(f) = follower {
        tokio::spawn(f.run(health.clone(), shutdown.token()));
    }
    if let Some(r) = &replicator {
        tokio::spawn(embedded_replication::report_health(
            r.handle(),
            health.clone(),
            shutdown.token(),
        ));
        // Commits wake replication at once (other processes' writes are polled).
        tokio::spawn(embedded_replication::forward_commits(
            writer.subscribe_commits(),
            r.handle(),
        ));
    }

    // Step 7: wait, then stop everything together.
    let mut failure = None;
    let replication_failed = async {
        match &replicator {
            Some(r) => r.failed().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown::signal() => {}
        fatal = replication_failed => {
            // No degraded mode: stop taking requests (and writes), then exit non-zero.
            let msg = format!("{fatal}; stopping the server");
            tracing::error!("{msg}");
            failure = Some(msg);
        }
        _ = writer.stopped() => {
            let msg = "the writer stopped unexpectedly".to_string();
            tracing::error!("{msg}");
            failure = Some(msg);
        }
        Some(done) = tasks.join_next() => {
            let msg = match done {
                Ok((name, Ok(()))) => format!("{name} server stopped unexpectedly"),
                Ok((name, Err(e))) => format!("{name} server failed: {e}"),
                Err(e) => format!("a server task panicked: {e}"),
            };
            tracing::error!("{msg}");
            failure = Some(msg);
        }
    }
    shutdown.trigger();
    // Replication runs until the drain is over: synchronous writes still waiting for the
    // replica get until then, bounded so they are answered before the drain ends.
    durability_state
        .durability
        .shutdown_started(sync_write_grace(shutdown_sync_timeout));
    drop(durability_state);
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(done) = tasks.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::error!(server = name, error = %e, "server ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some servers did not drain within {DRAIN:?}");
    }
    // The API has drained: commit whatever writes are still queued, then stop the writer.
    writer.shutdown().await;
    // The server's connections close before replication's, which keeps the WAL; then the
    // final sync puts every acknowledged write on the replica.
    drop(writer);
    drop(db);
    if let Some(r) = replicator {
        match r.shutdown().await {
            Ok(report) => tracing::info!(
                txid = %report.positions.replicated_txid,
                took_ms = report.took.as_millis() as u64,
                "replication synced and stopped"
            ),
            Err(e) => {
                tracing::error!(error = %e, "replication did not finish");
                failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    tracing::info!("shut down");
    match failure {
        Some(msg) => Err(anyhow::anyhow!(msg)),
        None => Ok(()),
    }
}

async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    http::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {addr}: {e}"))
}

/// Descriptors kept for everything but the API's connections: the database and its WAL, read
/// connections, the monitoring listeners' connections, replication, logs.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Raises the soft open-file limit to the hard one (as Go's runtime does at start-up, so the
/// Go version never ran with the common soft default of 1024), then lowers the API's
/// connection cap if even that limit cannot hold it beside [`RESERVED_DESCRIPTORS`].
fn fit_connections(limits: http::ConnLimits) -> http::ConnLimits {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return limits;
        }
    };
    let fits =
        usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(16)).unwrap_or(usize::MAX);
    if limits.max_connections > fits {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_file_limit = soft,
            lowered_to = fits,
            "--max-connections does not fit the open-file limit; lowered"
        );
        return http::ConnLimits {
            max_connections: fits,
            ..limits
        };
    }
    limits
}
