//! Authentication over real HTTP: HS and RS keys, expiry, wrong keys, `alg=none`, algorithm
//! confusion, key rotation by rewriting the key file; JWK sets with each key type, `kid`
//! selection and rotation; `aud`; the anonymous role, alone and with a permissions file; the
//! role claim key in each of its forms, read through a permissions file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{Options, SECRET, Server, hs_token, now, rs_token};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
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

/// A key file replaced by a FIFO (which blocks a reader until a writer comes) is refused
/// at once when the change is noticed: requests keep being answered (without a usable key),
/// and the next real file is read.
#[tokio::test]
async fn a_fifo_in_place_of_the_key_file_does_not_hang_requests() {
    let s = Server::start().await;
    let token = format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, json!({})));
    assert_eq!(status_and_code(&s, Some(&token)).await.0, 200);
    let secret = s.dir.path().join("secret");
    std::fs::remove_file(&secret).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&secret)
        .status()
        .unwrap();
    assert!(made.success());
    // Requests spanning several re-checks of the key file: each one is answered.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let answered =
            tokio::time::timeout(Duration::from_secs(20), status_and_code(&s, Some(&token))).await;
        answered.expect("a request hung on the key file");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(&secret).unwrap();
    std::fs::write(&secret, SECRET).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_and_code(&s, Some(&token)).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the restored key file was not read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test key: its private half, to sign, and its algorithm.
struct TestKey {
    encoding: EncodingKey,
    alg: Algorithm,
}

impl TestKey {
    fn load(file: &str, alg: Algorithm) -> TestKey {
        let pem = std::fs::read(common::fixtures().join(file)).unwrap();
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap();
        TestKey { encoding, alg }
    }

    /// The public JWK: with `kid`, and with its `alg` stated or left to the key type.
    fn jwk(&self, kid: Option<&str>, state_alg: bool) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = kid.map(str::to_string);
        if !state_alg {
            jwk.common.key_algorithm = None;
        }
        jwk
    }

    /// `Bearer <token>` signed with this key as `alg`, the header naming `kid`.
    fn bearer_as(&self, alg: Algorithm, kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        format!(
            "Bearer {}",
            encode(&header, &claims, &self.encoding).unwrap()
        )
    }

    fn bearer(&self, kid: Option<&str>, claims: serde_json::Value) -> String {
        self.bearer_as(self.alg, kid, claims)
    }
}

fn write_jwks(path: &std::path::Path, keys: Vec<Jwk>) {
    // Written beside and renamed into place, as a key rotation tool does.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A server whose only keys are the JWK set at `jwks` (written by the caller), plus `args`.
async fn jwks_server(jwks: &std::path::Path, args: &[&str]) -> Server {
    let mut all = vec!["--auth-jwks-file".to_string(), jwks.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    Server::start_with(Options {
        own_keys: true,
        args: all,
        ..Options::default()
    })
    .await
}

/// Status, code, message and details of a GET with `auth`.
async fn answer(s: &Server, auth: Option<&str>) -> (u16, String, String, Option<String>) {
    let mut req = s.client.get(format!("{}/clients", s.base));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap();
    if status == 200 {
        return (200, String::new(), String::new(), None);
    }
    let code = v["code"].as_str().unwrap().to_string();
    common::assert_error_shape(&v, &code);
    (
        status,
        code,
        v["message"].as_str().unwrap().to_string(),
        v["details"].as_str().map(str::to_string),
    )
}

#[tokio::test]
async fn jwk_set_keys_of_each_type_verify_their_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let rs = TestKey::load("rsa_private.pem", Algorithm::RS256);
    let ps = TestKey::load("rsa_other_private.pem", Algorithm::PS256);
    let es256 = TestKey::load("ec_p256_private.pem", Algorithm::ES256);
    let es384 = TestKey::load("ec_p384_private.pem", Algorithm::ES384);
    let ed = TestKey::load("ed25519_private.pem", Algorithm::EdDSA);
    write_jwks(
        &jwks,
        vec![
            // `alg` stated for some keys, left to the key type for others.
            rs.jwk(Some("rs"), false),
            ps.jwk(Some("ps"), true),
            es256.jwk(Some("es256"), false),
            es384.jwk(Some("es384"), true),
            ed.jwk(Some("ed"), false),
        ],
    );
    let s = jwks_server(&jwks, &[]).await;
    let claims = || json!({"role": "r", "exp": now() + 600});
    // Each key type, selected by kid.
    for (key, kid) in [
        (&rs, "rs"),
        (&ps, "ps"),
        (&es256, "es256"),
        (&es384, "es384"),
        (&ed, "ed"),
    ] {
        let t = key.bearer(Some(kid), claims());
        assert_eq!(answer(&s, Some(&t)).await.0, 200, "{kid}");
        // Without a kid: every key whose algorithm fits is tried, as PostgREST.
        let t = key.bearer(None, claims());
        assert_eq!(answer(&s, Some(&t)).await.0, 200, "{kid} without kid");
    }
    // An RSA key without `alg` takes the whole PKCS#1 family.
    for alg in [Algorithm::RS384, Algorithm::RS512] {
        let t = rs.bearer_as(alg, Some("rs"), claims());
        assert_eq!(answer(&s, Some(&t)).await.0, 200, "{alg:?}");
    }

    let no_key = |details: &str| {
        (
            401,
            "PGRST301".to_string(),
            "No suitable key or wrong key type".to_string(),
            Some(details.to_string()),
        )
    };
    let none_found = no_key("No suitable key was found to decode the JWT");
    let none_verified = no_key("None of the keys was able to decode the JWT");
    // A kid the set does not have.
    let t = rs.bearer(Some("gone"), claims());
    assert_eq!(answer(&s, Some(&t)).await, none_found);
    // A kid naming another key: that key does not verify it.
    let t = rs.bearer(Some("ps"), claims());
    assert_eq!(
        answer(&s, Some(&t)).await,
        none_found,
        "RS256 for a PS256 key"
    );
    let t = es256.bearer(Some("ed"), claims());
    assert_eq!(
        answer(&s, Some(&t)).await,
        none_found,
        "ES256 for an EdDSA key"
    );
    let t = es256.bearer(Some("rs"), claims());
    assert_eq!(
        answer(&s, Some(&t)).await,
        none_found,
        "ES256 for an RSA key"
    );
    // The key fixes the algorithm: PSS with the PKCS#1 key, PKCS#1 with the PSS key.
    let t = rs.bearer_as(Algorithm::PS256, Some("rs"), claims());
    assert_eq!(
        answer(&s, Some(&t)).await,
        none_found,
        "PS256 with the rs key"
    );
    let t = ps.bearer_as(Algorithm::RS256, Some("ps"), claims());
    assert_eq!(
        answer(&s, Some(&t)).await,
        none_found,
        "RS256 with the ps key"
    );
    let t = ps.bearer_as(Algorithm::PS384, Some("ps"), claims());
    assert_eq!(
        answer(&s, Some(&t)).await,
        none_found,
        "PS384 with the PS256 key"
    );
    // The right kid and algorithm, signed by a key that is not in the set.
    let stranger = TestKey::load("rsa_private.pem", Algorithm::PS256);
    let t = stranger.bearer(Some("ps"), claims());
    assert_eq!(answer(&s, Some(&t)).await, none_verified);
    // Algorithm confusion: HS256 "signed" with a public key as the HMAC secret (its PEM,
    // its JWK's JSON, its modulus): no HMAC key exists, whatever the kid.
    let public_pem = std::fs::read(common::fixtures().join("rsa_public.pem")).unwrap();
    let jwk_json = serde_json::to_vec(&rs.jwk(Some("rs"), false)).unwrap();
    for secret in [public_pem.as_slice(), jwk_json.as_slice()] {
        for kid in [Some("rs"), None] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid.map(str::to_string);
            let t = encode(
                &header,
                &json!({"role": "admin"}),
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            let got = answer(&s, Some(&format!("Bearer {t}"))).await;
            assert_eq!(got, none_found, "HS256 confusion, kid {kid:?}");
        }
    }
    // alg=none, with and without a kid.
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "rs"}),
    ] {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = format!(
            "Bearer {}.{}.",
            b64.encode(header.to_string()),
            b64.encode(json!({"role": "admin"}).to_string())
        );
        assert_eq!(
            answer(&s, Some(&t)).await,
            (
                401,
                "PGRST301".to_string(),
                "Wrong or unsupported encoding algorithm".to_string(),
                Some("JWT is unsecured but expected 'alg' was not 'none'".to_string())
            ),
            "{header}"
        );
    }
    // The time claims hold for JWK set keys too.
    let t = ed.bearer(Some("ed"), json!({"exp": now() - 3600}));
    assert_eq!(answer(&s, Some(&t)).await.2, "JWT expired");
}

#[tokio::test]
async fn a_rotated_jwk_set_takes_effect_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let old = TestKey::load("ec_p256_private.pem", Algorithm::ES256);
    let new = TestKey::load("ed25519_private.pem", Algorithm::EdDSA);
    write_jwks(&jwks, vec![old.jwk(Some("2026-01"), true)]);
    let s = jwks_server(&jwks, &[]).await;
    let old_token = old.bearer(Some("2026-01"), json!({"role": "r"}));
    let new_token = new.bearer(Some("2026-02"), json!({"role": "r"}));
    assert_eq!(answer(&s, Some(&old_token)).await.0, 200);
    assert_eq!(answer(&s, Some(&new_token)).await.0, 401);

    // The provider publishes the new key next to the old one ...
    write_jwks(
        &jwks,
        vec![
            old.jwk(Some("2026-01"), true),
            new.jwk(Some("2026-02"), true),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while answer(&s, Some(&new_token)).await.0 != 200 {
        assert!(Instant::now() < deadline, "the new key was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&s, Some(&old_token)).await.0, 200);

    // ... then withdraws the old one, rewriting the file in place this time: its (cached)
    // tokens stop working.
    std::fs::write(
        &jwks,
        serde_json::to_vec(&JwkSet {
            keys: vec![new.jwk(Some("2026-02"), true)],
        })
        .unwrap(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = answer(&s, Some(&old_token)).await;
        if got.0 == 401 {
            assert_eq!(
                got.3.as_deref(),
                Some("No suitable key was found to decode the JWT")
            );
            break;
        }
        assert!(Instant::now() < deadline, "the removed key still verifies");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&s, Some(&new_token)).await.0, 200);
}

#[tokio::test]
async fn a_jwk_set_and_the_hmac_secret_work_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let ed = TestKey::load("ed25519_private.pem", Algorithm::EdDSA);
    write_jwks(&jwks, vec![ed.jwk(Some("ed"), true)]);
    let s = Server::start_with(Options {
        args: vec!["--auth-jwks-file".into(), jwks.display().to_string()],
        ..Options::default()
    })
    .await;
    let t = ed.bearer(Some("ed"), json!({}));
    assert_eq!(answer(&s, Some(&t)).await.0, 200);
    // A legacy HS256 token (no kid) of the secret file.
    let t = format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, json!({})));
    assert_eq!(answer(&s, Some(&t)).await.0, 200);
    // The secret file's key has no kid to match: a kid does not keep it from verifying.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("ed".into());
    let t = encode(&header, &json!({}), &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(answer(&s, Some(&format!("Bearer {t}"))).await.0, 200);
}

#[tokio::test]
async fn aud_must_name_the_configured_audience() {
    let s = Server::start_with(Options {
        args: vec!["--auth-jwt-aud".into(), "my-api".into()],
        ..Options::default()
    })
    .await;
    let with = |aud: serde_json::Value| {
        format!(
            "Bearer {}",
            hs_token(SECRET, Algorithm::HS256, json!({"role": "r", "aud": aud}))
        )
    };
    for aud in [
        json!("my-api"),
        json!(["other", "my-api"]),
        json!([]),
        json!(null),
    ] {
        assert_eq!(answer(&s, Some(&with(aud.clone()))).await.0, 200, "{aud}");
    }
    let t = format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, json!({})));
    assert_eq!(answer(&s, Some(&t)).await.0, 200, "no aud");
    for aud in [json!("other"), json!(["other"]), json!("MY-API")] {
        let got = answer(&s, Some(&with(aud.clone()))).await;
        assert_eq!(
            (got.0, got.1.as_str(), got.2.as_str()),
            (401, "PGRST303", "JWT not in audience"),
            "{aud}"
        );
    }
    for aud in [json!(1), json!(["my-api", 1]), json!({"my-api": true})] {
        let got = answer(&s, Some(&with(aud.clone()))).await;
        assert_eq!(
            (got.0, got.1.as_str(), got.2.as_str()),
            (
                401,
                "PGRST303",
                "The JWT 'aud' claim must be a string or an array of strings"
            ),
            "{aud}"
        );
    }
}

#[tokio::test]
async fn the_anonymous_role_lets_requests_without_a_token_in() {
    let s = Server::start_with(Options {
        args: vec!["--auth-anon-role".into(), "web_anon".into()],
        ..Options::default()
    })
    .await;
    assert_eq!(answer(&s, None).await.0, 200);
    // A token is still checked when one is sent.
    let bad = format!(
        "Bearer {}",
        hs_token(
            b"not-the-secret-but-32-bytes-long!!",
            Algorithm::HS256,
            json!({})
        )
    );
    assert_eq!(answer(&s, Some(&bad)).await.1, "PGRST301");
    let ok = format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, json!({})));
    assert_eq!(answer(&s, Some(&ok)).await.0, 200);
    // Off (the default): PGRST302, as before.
    let s = Server::start().await;
    let got = answer(&s, None).await;
    assert_eq!(
        (got.0, got.1.as_str(), got.2.as_str()),
        (401, "PGRST302", "Anonymous access is disabled")
    );
}

#[tokio::test]
async fn the_new_settings_have_environment_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let es = TestKey::load("ec_p384_private.pem", Algorithm::ES384);
    write_jwks(&jwks, vec![es.jwk(Some("k"), true)]);
    let s = Server::start_with(Options {
        own_keys: true,
        env: vec![
            (
                "SQLITEREST_AUTH_JWKS_FILE".into(),
                jwks.display().to_string(),
            ),
            ("SQLITEREST_AUTH_ANON_ROLE".into(), "web_anon".into()),
            ("SQLITEREST_AUTH_JWT_AUD".into(), "my-api".into()),
            (
                "SQLITEREST_AUTH_ROLE_CLAIM_KEY".into(),
                ".app_metadata.role".into(),
            ),
        ],
        ..Options::default()
    })
    .await;
    assert_eq!(answer(&s, None).await.0, 200, "anonymous role");
    let t = es.bearer(Some("k"), json!({"aud": "my-api"}));
    assert_eq!(answer(&s, Some(&t)).await.0, 200, "JWK set");
    let t = es.bearer(Some("k"), json!({"aud": "other"}));
    assert_eq!(answer(&s, Some(&t)).await.2, "JWT not in audience");
}

/// A permissions file in `dir`: `reader` may read clients, `web_anon` items.
fn reader_and_anon_permissions(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("permissions.yaml");
    let roles =
        "roles:\n  reader:\n    clients: { read: {} }\n  web_anon:\n    items: { read: {} }\n";
    std::fs::write(&path, roles).unwrap();
    path
}

#[tokio::test]
async fn the_role_is_read_where_the_claim_key_points() {
    let dir = tempfile::tempdir().unwrap();
    let permissions = reader_and_anon_permissions(&dir);
    // Claims that hold `reader` (ROLE is replaced) at a top-level key, in an object, under a
    // key with dots and slashes, in an array.
    let top = json!({"role": "ROLE"});
    let nested = json!({"app_metadata": {"role": "ROLE"}});
    let url = json!({"https://example.com/claims": {"role": "ROLE"}});
    let list = json!({"roles": ["other", "ROLE"]});
    // Each form of the key, in both syntaxes, with claims that hold the role exactly there.
    let forms = [
        (".role", &top),
        (".app_metadata.role", &nested),
        (".\"https://example.com/claims\".role", &url),
        (".roles[1]", &list),
        (".roles[?(@ == \"ROLE\")]", &list),
        (".roles[?(@ ^== \"ROLE\")]", &list),
        ("$.app_metadata.role", &nested),
        ("$['https://example.com/claims'].role", &url),
        ("$.roles[-1]", &list),
        ("$.roles[?search(@, '^ROLE')]", &list),
    ];
    for (key, claims) in forms {
        let s = Server::start_with(Options {
            allow: String::new(),
            args: vec![
                "--permissions".into(),
                permissions.display().to_string(),
                "--auth-role-claim-key".into(),
                key.replace("ROLE", "reader"),
                "--auth-anon-role".into(),
                "web_anon".into(),
            ],
            ..Options::default()
        })
        .await;
        let as_role = |role: &str| {
            let claims: serde_json::Value =
                serde_json::from_str(&claims.to_string().replace("ROLE", role)).unwrap();
            format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, claims))
        };
        let get = |path: &str, auth: String| {
            s.client
                .get(format!("{}{path}", s.base))
                .header("Authorization", auth)
                .send()
        };
        let r = get("/clients", as_role("reader")).await.unwrap();
        assert_eq!(r.status(), 200, "{key}: {}", r.text().await.unwrap());
        // `reader` anywhere but at the key: the anonymous role, which may read items only.
        if key != ".role" {
            let elsewhere = format!(
                "Bearer {}",
                hs_token(SECRET, Algorithm::HS256, json!({"role": "reader"}))
            );
            assert_eq!(
                get("/clients", elsewhere.clone()).await.unwrap().status(),
                404,
                "{key}"
            );
            assert_eq!(
                get("/items", elsewhere).await.unwrap().status(),
                200,
                "{key}"
            );
        }
        let r = get("/clients", as_role("stranger")).await.unwrap();
        if key.contains('?') {
            // A filter looks for `reader`: no role found, so the anonymous role.
            assert_eq!(r.status(), 404, "{key}");
            continue;
        }
        // A role the permissions do not name, found at the key: PostgreSQL's 401.
        assert_eq!(r.status(), 401, "{key}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (v["code"].as_str(), v["message"].as_str()),
            (Some("22023"), Some("role \"stranger\" does not exist")),
            "{key}"
        );
    }
}

#[tokio::test]
async fn with_permissions_the_anonymous_role_has_its_grants() {
    let dir = tempfile::tempdir().unwrap();
    let permissions = reader_and_anon_permissions(&dir);
    let start = |anon: bool| {
        let mut args = vec![
            "--permissions".to_string(),
            permissions.display().to_string(),
        ];
        if anon {
            args.extend(["--auth-anon-role".to_string(), "web_anon".to_string()]);
        }
        Server::start_with(Options {
            allow: String::new(),
            args,
            ..Options::default()
        })
    };
    let bearer = |claims: serde_json::Value| {
        format!("Bearer {}", hs_token(SECRET, Algorithm::HS256, claims))
    };
    let status_of = |s: &Server, path: &str, auth: Option<String>| {
        let mut r = s.client.get(format!("{}{path}", s.base));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v["code"].as_str().unwrap_or("").to_string())
        }
    };
    let reader = || Some(bearer(json!({"role": "reader"})));
    let roleless = || Some(bearer(json!({"sub": "someone"})));

    let s = start(true).await;
    // No token, or a token naming no role: the anonymous role's grants, nothing more.
    for auth in [None, roleless()] {
        assert_eq!(status_of(&s, "/items", auth.clone()).await.0, 200);
        assert_eq!(
            status_of(&s, "/clients", auth).await,
            (404, "PGRST205".to_string())
        );
    }
    assert_eq!(status_of(&s, "/clients", reader()).await.0, 200);
    assert_eq!(
        status_of(&s, "/items", reader()).await,
        (404, "PGRST205".to_string())
    );

    // Without an anonymous role, a caller without a role is refused as PostgREST does.
    let s = start(false).await;
    for auth in [None, roleless()] {
        assert_eq!(
            status_of(&s, "/items", auth).await,
            (401, "PGRST302".to_string())
        );
    }
    assert_eq!(status_of(&s, "/clients", reader()).await.0, 200);
}
