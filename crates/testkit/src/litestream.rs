//! Driving the real Litestream 0.5.17 binary from tests: replicate, restore, list.
//!
//! Every interoperability test goes through this one wrapper, so the binary is always run with
//! the same hygiene (no `AWS_CA_BUNDLE`, which breaks its S3 client; output captured; a failure
//! reported with its stderr).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::{Tool, require_tool};

/// The real `litestream` binary.
#[derive(Debug, Clone)]
pub struct Litestream {
    pub bin: PathBuf,
}

/// One row of `litestream ltx -level all -json` (also the `files` of a dry-run plan).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LtxEntry {
    pub level: u32,
    #[serde(default)]
    pub name: Option<String>,
    pub min_txid: String,
    pub max_txid: String,
    pub size: u64,
    /// RFC 3339, second precision in `ltx` listings.
    pub timestamp: String,
}

/// How a command finds a replica: its URL, or `-config <file> <database path>` (the only way
/// to reach a replica whose settings a URL cannot carry, such as an Azure endpoint).
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Url(&'a str),
    Config { config: &'a Path, db: &'a Path },
}

impl Source<'_> {
    fn args(&self) -> Vec<String> {
        match self {
            Source::Url(u) => vec![u.to_string()],
            Source::Config { config, db } => vec![
                "-config".to_string(),
                config.display().to_string(),
                db.display().to_string(),
            ],
        }
    }
}

/// `litestream restore -dry-run -json` output.
#[derive(Debug, Clone, Deserialize)]
pub struct RestorePlan {
    pub min_txid: String,
    pub max_txid: String,
    pub files: Vec<LtxEntry>,
}

impl Litestream {
    /// The binary, or `None` (skip) / panic (tools required).
    pub fn require(test: &str) -> Option<Litestream> {
        require_tool(Tool::Litestream, test).map(|bin| Litestream { bin })
    }

    /// A command for the binary with the environment cleaned up.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_remove("AWS_CA_BUNDLE");
        c
    }

    /// Runs `litestream <args>` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {:?}: {e}", self.bin))
    }

    /// Runs `litestream <args>`, panics with stderr unless it exits 0; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "litestream {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `litestream ltx -level all -json <url>`.
    pub fn ltx_list(&self, replica_url: &str) -> Vec<LtxEntry> {
        self.ltx_list_of(Source::Url(replica_url))
    }

    /// `litestream ltx -level all -json <source>`.
    pub fn ltx_list_of(&self, source: Source<'_>) -> Vec<LtxEntry> {
        let source = source.args();
        let mut args = vec!["ltx", "-level", "all", "-json"];
        args.extend(source.iter().map(String::as_str));
        let out = self.run_ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("parsing ltx listing: {e}\n{out}"))
    }

    /// `litestream restore -dry-run -json [-txid T] -o <output> <url>`.
    pub fn restore_plan(&self, replica_url: &str, txid: Option<&str>) -> RestorePlan {
        let mut args = vec!["restore", "-dry-run", "-json"];
        if let Some(t) = txid {
            args.extend(["-txid", t]);
        }
        args.extend(["-o", "/nonexistent/dry-run.db", replica_url]);
        let out = self.run_ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("parsing restore plan: {e}\n{out}"))
    }

    /// `litestream restore [extra...] -o <output> <url>`; returns the raw output.
    pub fn restore(&self, replica_url: &str, output: &Path, extra: &[&str]) -> Output {
        self.restore_of(Source::Url(replica_url), output, extra)
    }

    /// `litestream restore [extra...] -o <output> <source>`; returns the raw output.
    pub fn restore_of(&self, source: Source<'_>, output: &Path, extra: &[&str]) -> Output {
        let out = output.to_string_lossy();
        let source = source.args();
        let mut args = vec!["restore"];
        args.extend_from_slice(extra);
        args.extend(["-o", &out]);
        args.extend(source.iter().map(String::as_str));
        self.run(&args)
    }

    /// `litestream replicate -once [-force-snapshot] <db> <url>`.
    pub fn replicate_once(&self, db: &Path, replica_url: &str, force_snapshot: bool) {
        let db = db.to_string_lossy();
        let mut args = vec!["replicate", "-once"];
        if force_snapshot {
            args.push("-force-snapshot");
        }
        args.extend([&*db, replica_url]);
        self.run_ok(&args);
    }

    /// Starts `litestream replicate -config <config>` in the background; its log goes to
    /// `<config>.log`. Stop it with [`Replicating::stop`].
    pub fn spawn_replicate(&self, config: &Path) -> Replicating {
        Replicating::spawn(self.command(), config, false)
    }
}

/// A running `litestream replicate`. Dropping it kills the process.
#[derive(Debug)]
pub struct Replicating {
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl Replicating {
    /// Spawns `<litestream> replicate -config <config>` (any Litestream version) with its
    /// output in `<config>.log`, truncated or appended to.
    pub(crate) fn spawn(mut litestream: Command, config: &Path, append: bool) -> Replicating {
        let log_path = config.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&log_path)
            .unwrap();
        let child = litestream
            .args(["replicate", "-config"])
            .arg(config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning litestream replicate: {e}"));
        Replicating {
            child: Some(child),
            log_path,
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (polling every 50 ms, up to `deadline`) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM (Litestream then syncs and exits) and waits up to 30 s; returns the log.
    pub fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let start = Instant::now();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.log()
    }
}

impl Drop for Replicating {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
