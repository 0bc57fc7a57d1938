//! The command line, run: what `main.rs` does with a parsed [`Cli`], shared with programs that
//! run the server as a library (the torture harness re-executes itself as the server and
//! installs [`ServeHooks`]).
//!
//! Every command runs on its own multi-threaded runtime, shut down with a bounded wait
//! ([`RUNTIME_SHUTDOWN_GRACE`]): a blocking thread stuck in a system call (a replica on a
//! dead NFS mount) must not keep the process from exiting once the command has finished.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{Cli, Command};
/// The longest the API's drain takes at shutdown, before the final sync: with the replication
/// config's `shutdown-sync-timeout` and [`RUNTIME_SHUTDOWN_GRACE`], the least time a
/// supervisor must give `serve` between SIGTERM and SIGKILL (`deploy/kubernetes`).
pub use crate::serve::DRAIN as SERVE_DRAIN;
pub use crate::serve::ServeHooks;
use crate::serve_config::ServeConfig;
use crate::{demo, logging, migrate, replica_command, restore_command, serve};

/// How long the runtime waits for its blocking threads once the command has finished.
pub const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs `fut` on a new multi-threaded runtime, then shuts the runtime down, abandoning
/// blocking threads still stuck after [`RUNTIME_SHUTDOWN_GRACE`].
pub fn block_on<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(fut);
    rt.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    Ok(out)
}

/// Runs a parsed command line: logging, then the command; the exit code says whether it
/// succeeded (errors are logged and printed to stderr).
pub fn run(cli: &Cli, hooks: ServeHooks) -> ExitCode {
    if let Err(e) = logging::init(&cli.log_level, cli.log_devel) {
        eprintln!("sqlite-rest: {e}");
        return ExitCode::FAILURE;
    }
    let config = match &cli.command {
        Command::Serve(args) => ServeConfig::from_args(args),
        Command::Demo(args) => demo::prepare(args),
        Command::Restore(args) => {
            let result = block_on(restore_command::run(args)).and_then(|r| r);
            return match result {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "restore failed");
                    eprintln!("sqlite-rest: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Replica(args) => {
            return match block_on(replica_command::run(args)).and_then(|r| r) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "replica command failed");
                    eprintln!("sqlite-rest: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Migrate(args) => {
            return match migrate::run_command(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "migration failed");
                    eprintln!("sqlite-rest: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let result = config.and_then(|config| block_on(serve::run_with(config, hooks)).and_then(|r| r));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sqlite-rest failed");
            eprintln!("sqlite-rest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
