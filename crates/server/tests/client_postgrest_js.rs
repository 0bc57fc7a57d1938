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

/// The permissions `supabase_auth.mjs` runs against: anon (the API key's role) reads some
/// columns of every article; an authenticated user reads them all and writes its own.
const SUPABASE_PERMISSIONS: &str = r#"
roles:
  anon:
    articles:
      read: { columns: [id, title, author] }
  authenticated:
    articles:
      read: {}
      insert: { filter: "author=eq.{sub}" }
      update: { columns: [title, body], filter: "author=eq.{sub}" }
      delete: { filter: "author=eq.{sub}" }
api_keys:
  "{key_hash}": anon
"#;

/// The key the app is configured with (the file stores its SHA-256).
const API_KEY: &str = "sb-publishable-key-0123456789";

#[tokio::test]
async fn postgrest_js_with_an_api_key_and_a_user_token_as_a_supabase_app_sends_them() {
    const TEST: &str = "postgrest_js_with_an_api_key_and_a_user_token_as_a_supabase_app_sends_them";
    let Some(node) = require_tool(Tool::Node, TEST) else {
        return;
    };
    let Some(modules) = require_tool(Tool::NodeModules, TEST) else {
        return;
    };
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("permissions.yaml");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, API_KEY.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&file, SUPABASE_PERMISSIONS.replace("{key_hash}", &hash)).unwrap();
    let s = Server::start_with(Options {
        allow: String::new(),
        // The key's role is the anonymous one, as in a Supabase project (`db-anon-role`):
        // its refusals are 401, a signed-in role's 403.
        args: vec![
            "--permissions".into(),
            file.display().to_string(),
            "--auth-anon-role".into(),
            "anon".into(),
        ],
        ..Options::default()
    })
    .await;
    let user = common::hs_token(
        common::SECRET,
        jsonwebtoken::Algorithm::HS256,
        serde_json::json!({"role": "authenticated", "sub": "Ann", "exp": common::now() + 3600}),
    );
    s.run_client_script(
        "postgrest-js as a supabase app",
        node,
        "tests/clients/js/supabase_auth.mjs",
        &[modules, API_KEY.into(), user.into()],
    )
    .await;
}
