//! `torture child <sqlite-rest arguments>`: the harness re-executed as the server under test.
//!
//! The child runs exactly what the `sqlite-rest` binary runs ([`sqlite_rest::entry::run`]
//! with the same command line), plus one thing the shipped binary never has: its replica
//! client is wrapped by [`Faulty`] through the general hook
//! [`sqlite_rest::entry::ServeHooks`], and the faults come as lines on its stdin
//! ([`ReplicaFault::line`]) from the harness, which also kills it with SIGKILL like a real
//! server. When stdin closes (the harness is gone) the child exits at once.
//!
//! Every fault ends by itself after its duration, so a child outlives a lost harness
//! command.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clap::Parser;
use futures::StreamExt;
use ltx::FileName;
use replication::ReplicaKind;
use replication::{ByteStream, ClientError, DirEntry, ListOptions, ReadRange, ReplicaClient};
use replication::{Level, LtxFileInfo};
use sqlite_rest::cli::Cli;
use sqlite_rest::entry::{self, ServeHooks};

use crate::faults::ReplicaFault;

/// Exit status of a child whose harness went away.
const ORPHANED: i32 = 70;

/// Runs the child with `args` (the `sqlite-rest` command line without the program name).
pub fn main(args: &[OsString]) -> ExitCode {
    let cli = match Cli::try_parse_from(
        std::iter::once(OsString::from("sqlite-rest")).chain(args.iter().cloned()),
    ) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let switch = Arc::new(Switch::default());
    let serving = matches!(cli.command, sqlite_rest::cli::Command::Serve(_));
    if serving {
        let s = switch.clone();
        let spawned = std::thread::Builder::new()
            .name("torture-faults".into())
            .spawn(move || read_faults(&s));
        if let Err(e) = spawned {
            eprintln!("torture child: cannot read faults: {e}");
            return ExitCode::FAILURE;
        }
    }
    let hooks = ServeHooks {
        wrap_replica_client: Some(Arc::new(move |inner| {
            Arc::new(Faulty {
                inner,
                switch: switch.clone(),
            })
        })),
    };
    entry::run(&cli, hooks)
}

/// Reads fault lines until stdin closes, then exits the process.
fn read_faults(switch: &Switch) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match ReplicaFault::parse(&line) {
            Some((fault, for_)) => {
                tracing::warn!(fault = ?fault, ms = for_.as_millis() as u64, "torture: replica fault injected");
                switch.set(fault, for_);
            }
            None => eprintln!("torture child: unknown command {line:?}"),
        }
    }
    std::process::exit(ORPHANED);
}

/// The fault in force and until when.
#[derive(Debug)]
struct Switch {
    state: Mutex<(ReplicaFault, Instant)>,
    changed: Condvar,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            state: Mutex::new((ReplicaFault::None, Instant::now())),
            changed: Condvar::new(),
        }
    }
}

impl Switch {
    fn set(&self, fault: ReplicaFault, for_: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = (fault, Instant::now() + for_);
        self.changed.notify_all();
    }

    /// The fault in force now.
    fn current(&self) -> ReplicaFault {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() < s.1 {
            s.0
        } else {
            ReplicaFault::None
        }
    }

    /// Blocks the calling thread while `fault` is in force.
    fn block_while(&self, fault: ReplicaFault) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            if s.0 != fault || now >= s.1 {
                return;
            }
            let wait = s.1 - now;
            s = match self.changed.wait_timeout(s, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// The real replica client behind the fault switch.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ReplicaClient>,
    switch: Arc<Switch>,
}

/// What an operation does after [`Faulty::enter`].
enum Then {
    Proceed,
    Cut,
}

impl Faulty {
    fn injected(&self, operation: &'static str) -> ClientError {
        ClientError::Backend {
            replica: self.inner.describe(),
            operation,
            code: "Unknown",
            message: "fault injected by the torture harness".into(),
        }
    }

    /// Applies the fault in force at the start of an operation.
    async fn enter(&self, operation: &'static str) -> Result<Then, ClientError> {
        match self.switch.current() {
            ReplicaFault::None => Ok(Then::Proceed),
            ReplicaFault::Error => Err(self.injected(operation)),
            ReplicaFault::Delay(d) => {
                tokio::time::sleep(d).await;
                Ok(Then::Proceed)
            }
            ReplicaFault::Hang => {
                while self.switch.current() == ReplicaFault::Hang {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(Then::Proceed)
            }
            ReplicaFault::Block => {
                let s = self.switch.clone();
                let _ =
                    tokio::task::spawn_blocking(move || s.block_while(ReplicaFault::Block)).await;
                Ok(Then::Proceed)
            }
            ReplicaFault::Cut => Ok(Then::Cut),
        }
    }

    /// `enter` for operations that have no middle to cut.
    async fn enter_whole(&self, operation: &'static str) -> Result<(), ClientError> {
        match self.enter(operation).await? {
            Then::Proceed => Ok(()),
            Then::Cut => Err(self.injected(operation)),
        }
    }
}

/// The first half of `stream`'s bytes, then `error` (a transfer cut in the middle).
async fn half_then_error(mut stream: ByteStream, error: ClientError) -> ByteStream {
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => all.extend_from_slice(&b),
            Err(e) => return futures::stream::iter([Err(e)]).boxed(),
        }
    }
    let half = all.len() / 2;
    let first = Bytes::from(all).slice(..half);
    futures::stream::iter([Ok(first), Err(error)]).boxed()
}

#[async_trait]
impl ReplicaClient for Faulty {
    fn kind(&self) -> ReplicaKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn local_path(&self, level: Level, name: FileName) -> Option<PathBuf> {
        self.inner.local_path(level, name)
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        self.enter_whole("list levels").await?;
        self.inner.levels().await
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        self.enter_whole("list").await?;
        self.inner.list(level, options).await
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        let then = self.enter("open").await?;
        let stream = self.inner.open(level, name, range).await?;
        Ok(match then {
            Then::Proceed => stream,
            Then::Cut => half_then_error(stream, self.injected("read")).await,
        })
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        match self.enter("write").await? {
            Then::Proceed => self.inner.write(level, name, body, created_at).await,
            Then::Cut => {
                let cut = half_then_error(body, self.injected("write")).await;
                self.inner.write(level, name, cut, created_at).await
            }
        }
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        self.enter_whole("delete").await?;
        self.inner.delete(level, names).await
    }

    async fn probe(&self) -> Result<(), ClientError> {
        self.enter_whole("probe").await?;
        self.inner.probe().await
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        self.enter_whole("list").await?;
        self.inner.list_dir(dir).await
    }

    async fn open_path(&self, path: &str) -> Result<ByteStream, ClientError> {
        let then = self.enter("open").await?;
        let stream = self.inner.open_path(path).await?;
        Ok(match then {
            Then::Proceed => stream,
            Then::Cut => half_then_error(stream, self.injected("read")).await,
        })
    }
}
