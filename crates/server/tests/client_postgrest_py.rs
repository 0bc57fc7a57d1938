//! Client conformance: the real postgrest-py client (PyPI `postgrest`, pinned in
//! scripts/lib/tools.sh) against the real server, reads and writes, each on a fresh fixture.
//! The Python scripts (sharing tests/clients/py/harness.py) assert every answer and exit
//! non-zero on a mismatch; these tests check their exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Options, Server, fixtures};
use testkit::{Tool, require_tool};

async fn run_script(test: &str, script: &str) {
    let Some(python) = require_tool(Tool::Python, test) else {
        return;
    };
    // RPC calls go to the functions of fixtures/rpc; aggregates on: the scripts drive them too.
    let s = Server::start_with(Options {
        args: vec![
            "--rpc-dir".into(),
            fixtures().join("rpc").display().to_string(),
            "--aggregates-enabled".into(),
        ],
        ..Options::default()
    })
    .await;
    s.run_client_script(
        &format!("postgrest-py {test}"),
        python,
        &format!("tests/clients/py/{script}"),
        &[],
    )
    .await;
}

#[tokio::test]
async fn postgrest_py_reads_through_sqlite_rest() {
    run_script("postgrest_py_reads_through_sqlite_rest", "conformance.py").await;
}

#[tokio::test]
async fn postgrest_py_writes_through_sqlite_rest() {
    run_script("postgrest_py_writes_through_sqlite_rest", "writes.py").await;
}
