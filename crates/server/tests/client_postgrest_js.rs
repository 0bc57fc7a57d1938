//! Client conformance: the real postgrest-js client (npm `@supabase/postgrest-js`, pinned in
//! tests/clients/js/package-lock.json and installed by scripts/test) against the real server,
//! on a fresh fixture. The Node script asserts every answer and exits non-zero on a mismatch;
//! this test checks its exit status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Options, Server, fixtures};
use testkit::{Tool, require_tool};

#[tokio::test]
async fn postgrest_js_reads_and_writes_through_sqlite_rest() {
    const TEST: &str = "postgrest_js_reads_and_writes_through_sqlite_rest";
    let Some(node) = require_tool(Tool::Node, TEST) else {
        return;
    };
    let Some(modules) = require_tool(Tool::NodeModules, TEST) else {
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
        "postgrest-js conformance",
        node,
        "tests/clients/js/conformance.mjs",
        &[modules],
    )
    .await;
}
