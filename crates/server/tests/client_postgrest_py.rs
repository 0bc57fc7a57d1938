//! Client conformance: the real postgrest-py client (PyPI `postgrest`, pinned in
//! scripts/lib/tools.sh) against the real server. The Python script asserts every answer and
//! exits non-zero on a mismatch; this test checks its exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Server;
use testkit::{Tool, require_tool};

#[tokio::test]
async fn postgrest_py_reads_through_sqlite_rest() {
    let Some(python) = require_tool(Tool::Python, "postgrest_py_reads_through_sqlite_rest") else {
        return;
    };
    let s = Server::start().await;
    let script = testkit::workspace_root().join("tests/clients/py/conformance.py");
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
        "postgrest-py conformance failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("passed, 0 failed"), "{stdout}");
}
