//! The command line, compatible with the Go sqlite-rest: `serve` and `migrate` with the same
//! flags and the same boolean syntax (Go's pflag: `--flag`, `--flag=true`, `--flag=false`),
//! plus `demo`, `restore` and the operator commands `replica ls` / `replica status`. Every
//! flag can also be set through `SQLITEREST_<FLAG_IN_UPPER_SNAKE>`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Arg, ArgAction, Args, Parser, Subcommand};

/// `sqlite-rest --version`: the crate's version and the git commit it was built from (a short
/// hash, `-dirty` if the tree had uncommitted changes, `unknown` outside a git checkout; see
/// the build script).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SQLITE_REST_COMMIT"),
    ")"
);

/// The boolean flags' syntax of Go's pflag, which the Go sqlite-rest and its Helm chart use:
/// `--flag` alone is true, `--flag=true` / `--flag=false` set it explicitly. The value needs
/// the `=`, as in pflag, so `--flag` never swallows the next argument (`migrate --log-devel
/// DIR`). Values (and the environment variable's) are read as clap's "boolish" ones: true,
/// false, 1, 0, t, f, yes, no, on, off, any case — a superset of Go's `strconv.ParseBool`.
/// Applied in the derive with `#[arg(pflag_bool())]`, after the field's own attributes.
trait PflagBool {
    fn pflag_bool(self) -> Self;
}

impl PflagBool for Arg {
    fn pflag_bool(self) -> Self {
        let arg = if self.get_default_values().is_empty() {
            self.default_value("false")
        } else {
            self
        };
        arg.action(ArgAction::Set)
            .value_parser(BoolishValueParser::new())
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .value_name("BOOL")
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "sqlite-rest",
    version = VERSION,
    about = "Serve a PostgREST-compatible REST API from a SQLite database",
    long_about = "Serve a PostgREST-compatible REST API from a SQLite database.\n\n\
        Every flag can also be set with an environment variable named SQLITEREST_<FLAG>, \
        e.g. --db-dsn is SQLITEREST_DB_DSN."
)]
pub struct Cli {
    /// Log verbosity: the Go version's number (default 5; 8 or more is verbose) or a name
    /// (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "SQLITEREST_LOG_LEVEL", default_value = "5")]
    pub log_level: String,

    /// Human-readable logs instead of JSON lines.
    #[arg(long, global = true, env = "SQLITEREST_LOG_DEVEL", pflag_bool())]
    pub log_devel: bool,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the database server.
    Serve(ServeArgs),
    /// Apply database migrations from a directory (golang-migrate layout, as the Go version).
    Migrate(MigrateArgs),
    /// Create a bookstore demo database (first run) and serve it with a printed demo token.
    Demo(DemoArgs),
    /// Restore a database from a Litestream-compatible replica (the options of
    /// `litestream restore`).
    Restore(RestoreArgs),
    /// Inspect a replica: `replica ls` lists its LTX files, `replica status` says where
    /// replication stands.
    Replica(ReplicaArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Database to migrate: a file path or a `file:` URI.
    #[arg(long, env = "SQLITEREST_DB_DSN")]
    pub db_dsn: String,

    /// `up` applies pending migrations, `down` reverts applied ones.
    #[arg(long, env = "SQLITEREST_DIRECTION", default_value = "up", value_parser = ["up", "down"])]
    pub direction: String,

    /// How many migrations to apply or revert; 0 means all.
    #[arg(long, env = "SQLITEREST_STEP", default_value_t = 0)]
    pub step: i64,

    /// Directory holding `{version}_{title}.up.sql` / `.down.sql` files.
    pub migrations_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Database to serve: a file path or a `file:` URI (e.g. `file:data.db?cache=shared`).
    #[arg(long, env = "SQLITEREST_DB_DSN")]
    pub db_dsn: String,

    /// Refuse to start when the database file does not exist, instead of creating a new,
    /// empty one (a mistyped --db-dsn). With replication, a database the replica can restore
    /// counts as existing.
    #[arg(long, env = "SQLITEREST_DB_MUST_EXIST", pflag_bool())]
    pub db_must_exist: bool,

    /// API listen address (`:8080` means every interface).
    #[arg(long, env = "SQLITEREST_HTTP_ADDR", default_value = ":8080")]
    pub http_addr: String,

    /// File holding the HMAC secret for HS256/HS384/HS512 tokens (re-read when it changes).
    #[arg(long, env = "SQLITEREST_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// PEM file holding the RSA public key for RS256/RS384/RS512 tokens (re-read when it
    /// changes).
    #[arg(long, env = "SQLITEREST_AUTH_RSA_PUBLIC_KEY")]
    pub auth_rsa_public_key: Option<PathBuf>,

    /// JWK set file (`{"keys": [...]}`, as identity providers publish at their JWKS URL)
    /// whose keys verify tokens: RSA (RS256/384/512, PS256/384/512), EC P-256/P-384
    /// (ES256/ES384) and Ed25519 (EdDSA), each key only with its own `alg` (or the algorithms
    /// its type implies), chosen by the token's `kid`. Re-read when it changes. May be
    /// combined with --auth-token-file or --auth-rsa-public-key.
    #[arg(long, env = "SQLITEREST_AUTH_JWKS_FILE")]
    pub auth_jwks_file: Option<PathBuf>,

    /// Where the caller's role is in the token's claims, in PostgREST's jwt-role-claim-key
    /// syntax: `.role`, `.app_metadata.role`, `."https://example.com/claims".role`,
    /// `.roles[0]`, `.roles[?(@ == "admin")]`, or its JSONPath form: `$.app_metadata.role`,
    /// `$['https://example.com/claims'].role`, `$.roles[?search(@, '^adm')]`.
    #[arg(long, env = "SQLITEREST_AUTH_ROLE_CLAIM_KEY", default_value = ".role")]
    pub auth_role_claim_key: String,

    /// Role of requests without a token, and of tokens whose claims name no role
    /// (PostgREST's db-anon-role). Without it a request without a token gets 401 PGRST302.
    #[arg(long, env = "SQLITEREST_AUTH_ANON_ROLE")]
    pub auth_anon_role: Option<String>,

    /// Audience a token's `aud` claim (a string or an array of strings) must name when the
    /// token has one (PostgREST's jwt-aud).
    #[arg(long, env = "SQLITEREST_AUTH_JWT_AUD")]
    pub auth_jwt_aud: Option<String>,

    /// Serve without any authentication. For local development only: every client gets in.
    #[arg(long, env = "SQLITEREST_INSECURE_DISABLE_AUTH", pflag_bool())]
    pub insecure_disable_auth: bool,

    /// Tables and views the API exposes (comma list, repeatable). Nothing else is visible:
    /// other names answer exactly like missing ones.
    #[arg(long, env = "SQLITEREST_SECURITY_ALLOW_TABLE", value_delimiter = ',')]
    pub security_allow_table: Vec<String>,

    /// Metrics/health listen address; empty disables it. `--metrics-server` is accepted too:
    /// the Go sqlite-rest's Helm chart passes that name (which the Go binary never had).
    #[arg(
        long,
        alias = "metrics-server",
        env = "SQLITEREST_METRICS_ADDR",
        default_value = ":8081"
    )]
    pub metrics_addr: String,

    /// pprof listen address (CPU profiles at /debug/pprof/profile); empty (default) disables it.
    #[arg(long, env = "SQLITEREST_PPROF_ADDR", default_value = "")]
    pub pprof_addr: String,

    /// Origins allowed by CORS (comma list, repeatable); all origins when empty.
    #[arg(long, env = "SQLITEREST_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Most rows one read returns (0: no cap).
    #[arg(long, env = "SQLITEREST_MAX_ROWS", default_value_t = 0)]
    pub max_rows: i64,

    /// Allow aggregate functions in `select` (`count()`, `amount.sum()`, `avg`, `min`, `max`,
    /// grouped by the other selected fields). Off by default, as PostgREST's
    /// db-aggregates-enabled: one request can make the database read every row of a table.
    #[arg(long, env = "SQLITEREST_AGGREGATES_ENABLED", pflag_bool())]
    pub aggregates_enabled: bool,

    /// Time budget of one request in milliseconds; longer queries are interrupted (504).
    #[arg(long, env = "SQLITEREST_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "SQLITEREST_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: u64,

    /// Longest time a client may take to send a request's line and headers, from its first
    /// byte (from the accept for a connection's first request), in milliseconds; then the
    /// connection is closed. Applies to every listener.
    #[arg(
        long,
        env = "SQLITEREST_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub header_read_timeout_ms: u64,

    /// Longest time a connection without a request in progress may stay silent (an idle
    /// keep-alive connection, or a client not reading its response), in milliseconds; then it
    /// is closed. Applies to every listener.
    #[arg(long, env = "SQLITEREST_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Most connections the API listener keeps open at once; further ones wait in the
    /// kernel's accept queue until one closes. The metrics and pprof listeners keep at most 64.
    #[arg(long, env = "SQLITEREST_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Replicate the database with embedded, Litestream-compatible replication (restore it
    /// from the replica at start-up if it is missing). Needs --replication-config.
    #[arg(long, env = "SQLITEREST_REPLICATION_ENABLED", pflag_bool())]
    pub replication_enabled: bool,

    /// Litestream's own YAML config file (`litestream.yml`) holding the replica of the
    /// database given by --db-dsn, and every replication setting.
    #[arg(long, env = "SQLITEREST_REPLICATION_CONFIG")]
    pub replication_config: Option<PathBuf>,
    /// Serve as a read replica that follows the replica of --replication-config: restore
    /// the latest state at start-up, then poll the replica for new LTX files and apply each
    /// one atomically between read transactions. Writes answer 405. Excludes
    /// --replication-enabled (one writer per replica).
    #[arg(long, env = "SQLITEREST_REPLICATION_FOLLOW", pflag_bool())]
    pub replication_follow: bool,

    /// With --replication-follow: the primary's URL, named in the 405 answer to writes.
    #[arg(long, env = "SQLITEREST_REPLICATION_PRIMARY_URL")]
    pub replication_primary_url: Option<String>,

    /// With --replication-follow: how long a read with `Prefer: min-txid` waits for the
    /// follower to reach that position before it is answered 503, in milliseconds.
    #[arg(
        long,
        env = "SQLITEREST_REPLICATION_FOLLOW_WAIT_MS",
        default_value_t = 5_000
    )]
    pub replication_follow_wait_ms: u64,

    /// With --replication-follow: `/ready` answers 503 while the follower's last successful
    /// look at the replica is older than this, in milliseconds (polling keeps failing).
    #[arg(
        long,
        env = "SQLITEREST_REPLICATION_FOLLOW_MAX_LAG_MS",
        default_value_t = 30_000
    )]
    pub replication_follow_max_lag_ms: u64,

    /// Durability of writes: `PRAGMA synchronous` of the writer (off, normal, full, extra).
    /// Default: the DSN's `_sync`/`_synchronous` parameter if present, else full (every
    /// committed write is on disk before it is answered; group commit amortizes the fsync).
    #[arg(long, env = "SQLITEREST_DB_SYNCHRONOUS")]
    pub db_synchronous: Option<String>,

    /// Refuse PATCH and DELETE requests without any filter (400), as pg-safeupdate does.
    #[arg(
        long,
        env = "SQLITEREST_SAFE_UPDATE",
        default_value_t = true,
        pflag_bool()
    )]
    pub safe_update: bool,

    /// How long a write waits for another process's lock on the database before it is
    /// answered 503 with Retry-After, in milliseconds.
    #[arg(long, env = "SQLITEREST_DB_BUSY_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_busy_timeout_ms: u64,

    /// Most write requests committed together in one transaction (group commit).
    #[arg(long, env = "SQLITEREST_WRITE_BATCH_MAX", default_value_t = 256)]
    pub write_batch_max: usize,

    /// When a write is answered: `local` once committed to the local database, `replicated`
    /// once it is on the replica too (needs --replication-enabled). A request chooses for
    /// itself with `Prefer: durability=local|replicated`.
    #[arg(
        long,
        env = "SQLITEREST_WRITE_DURABILITY",
        default_value = "local",
        value_parser = ["local", "replicated"]
    )]
    pub write_durability: String,

    /// How long a write asking for `replicated` durability waits for the replica after its
    /// commit, in milliseconds; then it is answered 503 SR001 (committed locally, not yet
    /// confirmed on the replica). Also bounds reads waiting for `Prefer: min-txid`.
    #[arg(
        long,
        env = "SQLITEREST_WRITE_DURABILITY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub write_durability_timeout_ms: u64,

    /// With replication, answer every write of `local` durability only once the local LTX
    /// file holding it exists, with its position in `Sqlite-Rest-Txid` (for `Prefer:
    /// min-txid` reads). Off by default: that wait costs write throughput (see the README's
    /// durability benchmark). Writes of `replicated` durability and every read always carry
    /// their position.
    #[arg(long, env = "SQLITEREST_WRITE_POSITIONS", pflag_bool())]
    pub write_positions: bool,

    /// Directory of RPC functions: `DIR/<name>.sql` (one SQL statement under a header
    /// comment) is `/rpc/<name>`. A broken file refuses the start; reloaded on SIGUSR1 and
    /// when the directory changes (a broken file then keeps the previous set).
    #[arg(long, env = "SQLITEREST_RPC_DIR")]
    pub rpc_dir: Option<PathBuf>,

    /// Permissions file (YAML): per role and table or view, which of read/insert/update/delete,
    /// on which columns and rows (a row filter with claim placeholders), and API keys mapped
    /// to roles. Exclusive with --security-allow-table. A broken file refuses the start;
    /// reloaded on SIGUSR1 and when it changes (a broken file then keeps the previous one).
    #[arg(long, env = "SQLITEREST_PERMISSIONS")]
    pub permissions: Option<PathBuf>,
}

/// The demo's API address: loopback only, so trying the demo never exposes its database
/// (and a token-guarded write API) to the network. `serve` keeps the Go version's `:8080`.
pub const DEMO_HTTP_ADDR: &str = "127.0.0.1:8080";
/// The demo's admin (metrics, health) address, loopback only like [`DEMO_HTTP_ADDR`].
pub const DEMO_METRICS_ADDR: &str = "127.0.0.1:8081";

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Directory for the demo database and secret (created on first run).
    #[arg(long, env = "SQLITEREST_DEMO_DIR", default_value = "sqlite-rest-demo")]
    pub dir: PathBuf,

    /// API listen address: this machine only by default; `:8080` means every interface.
    #[arg(long, env = "SQLITEREST_HTTP_ADDR", default_value = DEMO_HTTP_ADDR)]
    pub http_addr: String,

    /// Metrics/health listen address (this machine only by default); empty disables it.
    #[arg(long, env = "SQLITEREST_METRICS_ADDR", default_value = DEMO_METRICS_ADDR)]
    pub metrics_addr: String,

    /// Serve the demo without replicating it to `<dir>/replica`.
    #[arg(long, env = "SQLITEREST_DEMO_NO_REPLICATION", pflag_bool())]
    pub no_replication: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// A database path listed in --config, or a replica URL (`file:///path`,
    /// `s3://bucket/prefix?endpoint=host:port&region=…`; needs --output).
    pub source: String,

    /// Where to write the restored database (default: the database path from the config).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,

    /// Litestream config file to find the database's replica in. Without it,
    /// SQLITEREST_REPLICATION_CONFIG is used, unless the source is a replica URL (the
    /// command line wins over the environment).
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long, pflag_bool())]
    pub no_expand_env: bool,

    /// Restore up to this transaction (inclusive): exactly 16 hex digits, a file boundary.
    #[arg(long)]
    pub txid: Option<String>,

    /// Restore the state as of this time (RFC 3339, e.g. 2026-01-02T15:04:05Z).
    #[arg(long)]
    pub timestamp: Option<String>,

    /// Do nothing (exit 0) if the output database already exists.
    #[arg(long, pflag_bool())]
    pub if_db_not_exists: bool,

    /// Do nothing (exit 0) if the replica has no matching backup.
    #[arg(long, pflag_bool())]
    pub if_replica_exists: bool,

    /// Replace an existing output database (and its -wal, -shm, -journal files).
    #[arg(long, pflag_bool())]
    pub force: bool,

    /// Print the restore plan and write nothing.
    #[arg(long, pflag_bool())]
    pub dry_run: bool,

    /// Print the plan (with --dry-run) or the result as JSON on stdout.
    #[arg(long, pflag_bool())]
    pub json: bool,

    /// Check run on the restored database before it replaces the output: none, quick
    /// (`PRAGMA quick_check`) or full (`PRAGMA integrity_check`).
    #[arg(long, default_value = "none", value_parser = ["none", "quick", "full"])]
    pub integrity_check: String,

    /// Parallel downloads.
    #[arg(long, default_value_t = 16)]
    pub parallelism: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ReplicaArgs {
    #[command(subcommand)]
    pub command: ReplicaCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ReplicaCommand {
    /// List the replica's LTX files per level: min/max TXID, size, time (`litestream ltx`).
    Ls(ReplicaLsArgs),
    /// Where replication stands: local vs replica TXID, lag, last snapshot, from a running
    /// server's admin port (--admin-addr) or from the files.
    Status(ReplicaStatusArgs),
}

/// Which replica: a database of `--replication-config`, or a replica URL.
#[derive(Debug, Clone, Args)]
pub struct ReplicaSource {
    /// A database path listed in --replication-config (optional when the config lists one
    /// database), or a replica URL: `file:///path`, `s3://bucket/prefix?endpoint=host:port&region=…`,
    /// `abs://account@container/path`.
    pub source: Option<String>,

    /// Litestream config file (the one `serve --replication-config` takes). Without it,
    /// SQLITEREST_REPLICATION_CONFIG is used, unless the source is a replica URL (the
    /// command line wins over the environment).
    #[arg(long, visible_alias = "config")]
    pub replication_config: Option<PathBuf>,

    /// Do not expand $VAR / ${VAR} in the config file.
    #[arg(long, pflag_bool())]
    pub no_expand_env: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReplicaLsArgs {
    #[command(flatten)]
    pub replica: ReplicaSource,

    /// The level to list (0-9) or `all`.
    #[arg(long, default_value = "all")]
    pub level: String,

    /// Print a JSON array (the fields of `litestream ltx -json`).
    #[arg(long, pflag_bool())]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReplicaStatusArgs {
    #[command(flatten)]
    pub replica: ReplicaSource,

    /// The running server's admin address (its --metrics-addr, e.g. `127.0.0.1:8081` or
    /// `http://host:8081`): positions and lag as the server sees them, from `/health`.
    #[arg(long, env = "SQLITEREST_ADMIN_ADDR")]
    pub admin_addr: Option<String>,

    /// Print a JSON object.
    #[arg(long, pflag_bool())]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `sqlite-rest serve --db-dsn x.db` with `extra` flags after it.
    fn serve(extra: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(
            ["sqlite-rest", "serve", "--db-dsn", "x.db"]
                .iter()
                .chain(extra),
        )
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn go_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "sqlite-rest",
            "serve",
            "--db-dsn",
            "file:x.db",
            "--auth-token-file",
            "t",
            "--security-allow-table",
            "a,b",
            "--security-allow-table",
            "c",
            "--log-level",
            "8",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert_eq!(s.security_allow_table, ["a", "b", "c"]);
        assert_eq!(s.http_addr, ":8080");
        assert_eq!(s.metrics_addr, ":8081");
        assert_eq!(s.pprof_addr, "");
        assert_eq!(cli.log_level, "8");
        assert!(s.safe_update);
        assert_eq!(s.db_synchronous, None);
        assert_eq!(
            (s.write_durability.as_str(), s.write_durability_timeout_ms),
            ("local", 10_000)
        );
        assert_eq!(
            (
                s.header_read_timeout_ms,
                s.idle_timeout_ms,
                s.max_connections
            ),
            (10_000, 60_000, 10_000)
        );
        let cli = serve(&[
            "--safe-update=false",
            "--db-synchronous",
            "normal",
            "--write-durability=replicated",
            "--write-durability-timeout-ms",
            "2500",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert!(!s.safe_update);
        assert!(!s.insecure_disable_auth && !s.replication_enabled && !s.write_positions);
        assert_eq!(s.db_synchronous.as_deref(), Some("normal"));
        assert_eq!(s.write_durability, "replicated");
        assert_eq!(s.write_durability_timeout_ms, 2500);
        assert!(serve(&["--write-durability", "remote"]).is_err());
        // Go's pflag booleans: bare, `=true`, `=false`; a value needs the `=`.
        let cli = serve(&[
            "--safe-update",
            "--aggregates-enabled=true",
            "--replication-enabled=false",
            "--write-positions",
            "--log-devel=false",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!()
        };
        assert!(s.safe_update && s.aggregates_enabled && s.write_positions);
        assert!(!s.replication_enabled && !cli.log_devel);
        assert!(serve(&["--safe-update", "false"]).is_err());
    }

    #[test]
    fn demo_is_local_and_serve_is_not() {
        let Command::Demo(d) = Cli::try_parse_from(["sqlite-rest", "demo"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            (d.http_addr.as_str(), d.metrics_addr.as_str()),
            ("127.0.0.1:8080", "127.0.0.1:8081")
        );
        let Command::Serve(s) = serve(&[]).unwrap().command else {
            panic!()
        };
        assert!(!s.db_must_exist);
        let Command::Serve(s) = serve(&["--db-must-exist"]).unwrap().command else {
            panic!()
        };
        assert!(s.db_must_exist);
    }

    #[test]
    fn replica_commands_parse() {
        let cli = Cli::try_parse_from([
            "sqlite-rest",
            "replica",
            "ls",
            "--config",
            "l.yml",
            "--level=9",
            "--json",
            "/data/app.db",
        ])
        .unwrap();
        let Command::Replica(ReplicaArgs {
            command: ReplicaCommand::Ls(ls),
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!(ls.replica.source.as_deref(), Some("/data/app.db"));
        assert_eq!(
            ls.replica.replication_config.as_deref(),
            Some(std::path::Path::new("l.yml"))
        );
        assert_eq!((ls.level.as_str(), ls.json), ("9", true));
        let cli =
            Cli::try_parse_from(["sqlite-rest", "replica", "status", "--admin-addr", ":8081"])
                .unwrap();
        let Command::Replica(ReplicaArgs {
            command: ReplicaCommand::Status(st),
        }) = cli.command
        else {
            panic!()
        };
        assert_eq!(st.admin_addr.as_deref(), Some(":8081"));
        assert!(st.replica.source.is_none() && !st.json);
    }
}
