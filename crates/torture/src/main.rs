//! `torture`: the replication torture harness (issue 9).
//!
//! For a bounded time and from one printed seed, it runs the real server (this binary
//! re-executed as `torture child serve …`, see [`child`]) over a real database and a real
//! replica (a directory, or the local S3 server through a fault-injecting proxy), under
//! write load from HTTP clients and from the `sqlite3` CLI (with checkpoints of every mode),
//! long read transactions, and faults at random moments: errors, delays, hangs and cut
//! transfers in the replica client, silences, delays, resets, cuts and refusals on the
//! network, SIGKILL, SIGTERM, outages longer than the retry window, writes while the server
//! is down, and divergences caused on purpose. After every cycle the oracle ([`oracle`])
//! checks every replicated state against what was acknowledged.
//!
//! ```text
//! torture [--seconds N] [--seed S] [--dir D] [--replica file|s3] [--epoch-seconds N] [--keep]
//! ```
//! `scripts/torture [MINUTES] [SEED]` installs the tools, starts the S3 server and runs it;
//! `scripts/test` runs it for 60 s with a random seed. A failure prints the failed check,
//! what was found, the command that repeats the run with the same seed, and keeps the work
//! directory (databases, replicas, every server log). The seed fixes every random choice
//! (settings, load, faults, their moments); the machine's timing does not repeat, so a race
//! may need a few repetitions to show again.

mod child;
mod faults;
mod oracle;
mod run;
mod server;
mod settings;
mod workload;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::settings::ReplicaChoice;

#[derive(Debug, Parser)]
#[command(
    name = "torture",
    about = "Replication torture harness (see scripts/torture)"
)]
struct Cli {
    /// How long to run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The seed (decimal or 0x hex); random when not given.
    #[arg(long)]
    seed: Option<String>,
    /// Work directory (default: a new one under the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Force the replica kind (default: drawn from the seed).
    #[arg(long, value_parser = ["file", "s3"])]
    replica: Option<String>,
    /// Longest lineage (a new database and replica after that).
    #[arg(long, default_value_t = 300)]
    epoch_seconds: u64,
    /// Keep the work directory after a successful run.
    #[arg(long)]
    keep: bool,
}

fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "child") {
        return child::main(&args[2..]);
    }
    let cli = Cli::parse();
    let seed = match cli.seed.as_deref().map(parse_seed) {
        Some(Some(s)) => s,
        Some(None) => {
            eprintln!("torture: --seed must be a decimal or 0x-prefixed hex number");
            return ExitCode::from(2);
        }
        None => rand::random::<u64>(),
    };
    let dir = match cli.dir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("torture-{seed:016x}-{}", std::process::id())),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("torture: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let minutes = cli.seconds.div_ceil(60).max(1);
    let reproduce = format!(
        "scripts/torture {minutes} 0x{seed:016x}{}",
        match &cli.replica {
            Some(r) => format!(
                "   (with --replica {r}: cargo run -p torture -- --seconds {} --seed 0x{seed:016x} --replica {r})",
                cli.seconds
            ),
            None => String::new(),
        }
    );
    println!(
        "torture: seed 0x{seed:016x}, {} s, work dir {}",
        cli.seconds,
        dir.display()
    );
    println!("torture: reproduce with: {reproduce}");
    let options = run::Options {
        duration: Duration::from_secs(cli.seconds),
        seed,
        dir: dir.clone(),
        replica: cli.replica.as_deref().map(|r| {
            if r == "s3" {
                ReplicaChoice::S3
            } else {
                ReplicaChoice::File
            }
        }),
        epoch: Duration::from_secs(cli.epoch_seconds.max(10)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("torture: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut summary = run::Summary::default();
    let result = runtime.block_on(run::run(&options, &mut summary));
    runtime.shutdown_timeout(Duration::from_secs(5));
    summary.print();
    match result {
        Ok(()) => {
            println!("torture: PASSED (seed 0x{seed:016x})");
            if !cli.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let kind = if e.chain().any(|c| c.is::<oracle::CheckFailed>()) {
                "FAILED"
            } else {
                "ERROR (the harness could not run)"
            };
            println!(
                "torture: {kind} (seed 0x{seed:016x}, after {:.0} s): {e:#}",
                summary.elapsed.as_secs_f64()
            );
            println!("torture: reproduce with: {reproduce}");
            println!("torture: work dir kept: {}", dir.display());
            ExitCode::FAILURE
        }
    }
}
