//! The server under test as a process: the harness binary re-executed as
//! `torture child serve …` (see [`crate::child`]) on free ports, its log in a file, replica
//! faults written to its stdin, stopped with SIGKILL or SIGTERM like a real server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How the child is started.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    pub db: PathBuf,
    pub config: PathBuf,
    pub retry_window: Duration,
    pub operation_timeout: Duration,
}

/// Why a start failed.
#[derive(Debug)]
pub enum StartFailure {
    /// The process exited before it was ready.
    Exited { status: ExitStatus, log: String },
    /// It never became ready.
    NotReady { log: String },
    /// The harness could not run it.
    Harness(anyhow::Error),
}

/// A running child server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:port` of the API and of the admin server.
    pub api: String,
    pub admin: String,
    pub log_path: PathBuf,
    pub exited: Option<ExitStatus>,
}

const READY_WITHIN: Duration = Duration::from_secs(120);

impl Server {
    /// Starts the child and waits until `/ready` answers (start-up includes restores and the
    /// lineage check). Retries with other ports when the chosen ones were taken.
    pub async fn start(launch: &Launch, log_path: &Path) -> Result<Server, StartFailure> {
        let http = reqwest::Client::new();
        let mut last = None;
        for _attempt in 0..3 {
            let (port, admin) = (testkit::free_port(), testkit::free_port());
            let log = std::fs::File::create(log_path)
                .with_context(|| format!("creating {}", log_path.display()))
                .map_err(StartFailure::Harness)?;
            let log2 = log
                .try_clone()
                .context("log file")
                .map_err(StartFailure::Harness)?;
            let mut cmd = Command::new(&launch.exe);
            cmd.arg("child")
                .arg("serve")
                .arg("--db-dsn")
                .arg(&launch.db)
                .args(["--http-addr", &format!("127.0.0.1:{port}")])
                .args(["--metrics-addr", &format!("127.0.0.1:{admin}")])
                .arg("--insecure-disable-auth")
                .args(["--security-allow-table", "items"])
                .args(["--db-busy-timeout-ms", "3000"])
                .args(["--request-timeout-ms", "20000"])
                .arg("--replication-enabled")
                .arg("--replication-config")
                .arg(&launch.config)
                .args(["--log-level", "info"])
                .env(
                    "SQLITEREST_REPLICATION_RETRY_WINDOW",
                    format!("{}ms", launch.retry_window.as_millis()),
                )
                .env(
                    "SQLITEREST_REPLICATION_OPERATION_TIMEOUT",
                    format!("{}ms", launch.operation_timeout.as_millis()),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2));
            let mut child = cmd
                .spawn()
                .context("spawning the child server")
                .map_err(StartFailure::Harness)?;
            let stdin = child.stdin.take();
            let mut server = Server {
                child,
                stdin,
                api: format!("http://127.0.0.1:{port}"),
                admin: format!("http://127.0.0.1:{admin}"),
                log_path: log_path.to_path_buf(),
                exited: None,
            };
            let deadline = Instant::now() + READY_WITHIN;
            loop {
                if let Some(status) = server.try_status() {
                    let log = server.log();
                    if log.contains("Address already in use") || log.contains("address in use") {
                        last = Some(StartFailure::Exited { status, log });
                        break;
                    }
                    return Err(StartFailure::Exited { status, log });
                }
                if let Ok(r) = http
                    .get(format!("{}/ready", server.admin))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    && r.status() == 200
                {
                    return Ok(server);
                }
                if Instant::now() > deadline {
                    server.kill();
                    return Err(StartFailure::NotReady { log: server.log() });
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Err(last.unwrap_or_else(|| {
            StartFailure::Harness(anyhow::anyhow!("the child server did not start"))
        }))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a fault line to the child (ignored once it has exited).
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin
            && writeln!(stdin, "{line}")
                .and_then(|()| stdin.flush())
                .is_err()
        {
            self.stdin = None;
        }
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none()
            && let Ok(Some(s)) = self.child.try_wait()
        {
            self.exited = Some(s);
        }
        self.exited
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.exited = Some(s);
            }
        }
    }

    /// SIGTERM (a graceful stop).
    pub fn term(&mut self) {
        if self.try_status().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
        }
    }

    /// Waits up to `within` for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The child's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
