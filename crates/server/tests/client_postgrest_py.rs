//! Client conformance: the real postgrest-py client (PyPI `postgrest`, pinned in
//! scripts/lib/tools.sh) against the real server, reads and writes, each on a fresh fixture.
//! The Python scripts assert every answer and exit non-zero on a mismatch; these tests check
//! their exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Server;
use testkit::{Tool, require_tool};

async fn run_script(test: &str, script: &str) {
    let Some(python) = require_tool(Tool::Python, test) else {
        return;
    };
    let s = Server::start().await;
    let script = testkit::workspace_root()
        .join("tests/clients/py")
        .join(script);
    let base = s.base.clone();
    let token = s.token().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(base)
            .arg(token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "postgrest-py {script} failed ({}):\n{stdout}\n{stderr}",
        out.status,
        script = test
    );
    assert!(stdout.contains("passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn postgrest_py_reads_through_sqlite_rest() {
    run_script("postgrest_py_reads_through_sqlite_rest", "conformance.py").await;
}

#[tokio::test]
async fn postgrest_py_writes_through_sqlite_rest() {
    run_script("postgrest_py_writes_through_sqlite_rest", "writes.py").await;
}
