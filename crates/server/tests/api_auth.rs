//! Authentication over real HTTP: HS and RS keys, expiry, wrong keys, `alg=none`, algorithm
//! confusion, key rotation by rewriting the key file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Options, SECRET, Server, hs_token, now, rs_token};
use jsonwebtoken::Algorithm;
use serde_json::json;

async fn status_and_code(s: &Server, auth: Option<&str>) -> (u16, String, Option<String>) {
    let mut req = s.client.get(format!("{}/clients", s.base));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let v: serde_json::Value = r.json().await.unwrap();
    if status != 200 {
        common::assert_error_shape(&v, v["code"].as_str().unwrap());
    }
    (status, v["code"].as_str().unwrap_or("").to_string(), www)
}

fn unsigned(alg: &str, claims: serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(json!({"alg": alg, "typ": "JWT"}).to_string()),
        b64.encode(claims.to_string())
    )
}

#[tokio::test]
async fn hmac_tokens_are_checked() {
    let s = Server::start().await;
    let before = s.snapshot();
    let bearer = |t: String| format!("Bearer {t}");
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = bearer(hs_token(
            SECRET,
            alg,
            json!({"role": "x", "exp": now() + 60}),
        ));
        assert_eq!(status_and_code(&s, Some(&t)).await.0, 200, "{alg:?}");
    }
    let lower = format!("bearer {}", hs_token(SECRET, Algorithm::HS256, json!({})));
    assert_eq!(status_and_code(&s, Some(&lower)).await.0, 200);

    let (st, code, www) = status_and_code(&s, None).await;
    assert_eq!(
        (st, code.as_str(), www.as_deref()),
        (401, "PGRST302", Some("Bearer"))
    );

    let cases = [
        (
            bearer(hs_token(
                SECRET,
                Algorithm::HS256,
                json!({"exp": now() - 3600}),
            )),
            "PGRST303",
        ),
        (
            bearer(hs_token(
                SECRET,
                Algorithm::HS256,
                json!({"nbf": now() + 3600}),
            )),
            "PGRST303",
        ),
        (
            bearer(hs_token(
                b"another-secret-of-at-least-32-bytes!!",
                Algorithm::HS256,
                json!({}),
            )),
            "PGRST301",
        ),
        (
            bearer(unsigned("none", json!({"role": "admin"}))),
            "PGRST301",
        ),
        (
            bearer(unsigned("HS256", json!({"role": "admin"}))),
            "PGRST301",
        ),
        (
            bearer(rs_token("rsa_private.pem", Algorithm::RS256, json!({}))),
            "PGRST301",
        ),
        ("Bearer a.b".to_string(), "PGRST301"),
        ("Bearer ".to_string(), "PGRST301"),
        ("Bearer not-a-jwt".to_string(), "PGRST301"),
        ("Bearer !!.@@.##".to_string(), "PGRST301"),
        (
            format!("Basic {}", hs_token(SECRET, Algorithm::HS256, json!({}))),
            "PGRST301",
        ),
    ];
    for (auth, code) in cases {
        let (st, got, www) = status_and_code(&s, Some(&auth)).await;
        assert_eq!((st, got.as_str()), (401, code), "{auth}");
        assert!(www.unwrap().starts_with("Bearer"), "{auth}");
    }
    // Within the 30 s leeway, as PostgREST.
    let t = bearer(hs_token(
        SECRET,
        Algorithm::HS256,
        json!({"exp": now() - 5}),
    ));
    assert_eq!(status_and_code(&s, Some(&t)).await.0, 200);
    let metrics = s.metrics().await;
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("sqlite_rest_auth_failed_requests_total "))
        .unwrap();
    assert_eq!(failed, "sqlite_rest_auth_failed_requests_total 12");
    assert_eq!(s.snapshot(), before);
}

#[tokio::test]
async fn rsa_keys_accept_only_rs_algorithms() {
    let s = Server::start_with(Options {
        rsa: true,
        ..Options::default()
    })
    .await;
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let t = format!(
            "Bearer {}",
            rs_token("rsa_private.pem", alg, json!({"exp": now() + 60}))
        );
        assert_eq!(status_and_code(&s, Some(&t)).await.0, 200, "{alg:?}");
    }
    let other = format!(
        "Bearer {}",
        rs_token("rsa_other_private.pem", Algorithm::RS256, json!({}))
    );
    assert_eq!(status_and_code(&s, Some(&other)).await.1, "PGRST301");
    // Algorithm confusion: an HS256 token "signed" with the public key as the HMAC secret.
    let public = std::fs::read(common::fixtures().join("rsa_public.pem")).unwrap();
    let confused = format!(
        "Bearer {}",
        hs_token(&public, Algorithm::HS256, json!({"role": "admin"}))
    );
    let (st, code, _) = status_and_code(&s, Some(&confused)).await;
    assert_eq!((st, code.as_str()), (401, "PGRST301"));
    let none = format!("Bearer {}", unsigned("none", json!({})));
    assert_eq!(status_and_code(&s, Some(&none)).await.0, 401);
    let expired = format!(
        "Bearer {}",
        rs_token(
            "rsa_private.pem",
            Algorithm::RS256,
            json!({"exp": now() - 3600})
        )
    );
    assert_eq!(status_and_code(&s, Some(&expired)).await.1, "PGRST303");
}

#[tokio::test]
async fn the_key_file_is_reread_when_it_changes() {
    let s = Server::start().await;
    let old = format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, json!({})));
    assert_eq!(status_and_code(&s, Some(&old)).await.0, 200);
    let new_secret = b"a-brand-new-secret-also-32-bytes-or-more";
    std::fs::write(s.dir.path().join("secret"), new_secret).unwrap();
    let new = format!(
        "Bearer {}",
        hs_token(new_secret, Algorithm::HS256, json!({}))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a, b) = (
            status_and_code(&s, Some(&old)).await.0,
            status_and_code(&s, Some(&new)).await.0,
        );
        if (a, b) == (401, 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "key change not picked up: old {a}, new {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
