//! Authentication: JWT bearer tokens checked against a key file, as the Go version does.
//!
//! The key decides the algorithm family, never the token: an HMAC secret file
//! (`--auth-token-file`) accepts HS256/384/512 only, an RSA public key PEM
//! (`--auth-rsa-public-key`) RS256/384/512 only; `alg=none` and any other algorithm are
//! rejected. `exp` and `nbf` are enforced with PostgREST's 30 s leeway. The key file is
//! re-read when its modification time or size changes (checked at most every
//! [`RECHECK`]). Verified tokens are cached (bounded) until their `exp`; the cache is dropped
//! whenever the key changes. Errors use PostgREST's PGRST301/302/303 shapes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dialect::ApiError;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;

/// How often the key file's metadata is looked at.
pub const RECHECK: Duration = Duration::from_millis(250);
/// Clock skew allowed on `exp`/`nbf`, as PostgREST.
pub const LEEWAY: u64 = 30;
const CACHE_MAX: usize = 4096;

/// Which key file, and therefore which algorithm family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// HS256/384/512 with the file's bytes as the secret.
    HmacSecretFile(PathBuf),
    /// RS256/384/512 with the file's PEM public key.
    RsaPublicKeyFile(PathBuf),
}

/// The configured authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    Jwt(KeySource),
    /// Every request is let in. Only by an explicit flag; logged loudly at start-up.
    Disabled,
}

struct KeyState {
    stamp: Option<(SystemTime, u64)>,
    key: Option<DecodingKey>,
}

#[derive(Clone, Copy)]
struct CachedToken {
    exp: Option<i64>,
    nbf: Option<i64>,
}

/// The last token this thread verified: clients send the same token again and again, and a
/// byte comparison is cheaper than hashing it into the shared cache.
struct LastToken {
    auth: u64,
    generation: u64,
    token: Box<str>,
    times: CachedToken,
}

thread_local! {
    static LAST: std::cell::RefCell<Option<LastToken>> = const { std::cell::RefCell::new(None) };
}

/// Checks `Authorization` headers.
pub struct Auth {
    source: Option<KeySource>,
    validation: Validation,
    state: ArcSwap<KeyState>,
    last_check: Mutex<Instant>,
    cache: Mutex<HashMap<Box<str>, CachedToken>>,
    /// Tells this instance's entries in [`LAST`] apart from other instances'.
    id: u64,
    /// Bumped whenever the key changes; older [`LAST`] entries are ignored.
    generation: AtomicU64,
}

fn unauthorized(code: &str, message: &str) -> ApiError {
    ApiError::new(401, code, message).with_header(
        "WWW-Authenticate",
        format!("Bearer error=\"invalid_token\", error_description=\"{message}\""),
    )
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Auth {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let (source, algs) = match config {
            AuthConfig::Disabled => (None, vec![Algorithm::HS256]),
            AuthConfig::Jwt(s @ KeySource::HmacSecretFile(_)) => (
                Some(s.clone()),
                vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            ),
            AuthConfig::Jwt(s @ KeySource::RsaPublicKeyFile(_)) => (
                Some(s.clone()),
                vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
            ),
        };
        let mut validation = Validation::new(algs[0]);
        validation.algorithms = algs;
        validation.required_spec_claims.clear();
        validation.leeway = LEEWAY;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let auth = Auth {
            source,
            validation,
            state: ArcSwap::from_pointee(KeyState {
                stamp: None,
                key: None,
            }),
            last_check: Mutex::new(Instant::now()),
            cache: Mutex::new(HashMap::new()),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            generation: AtomicU64::new(0),
        };
        if let Some(src) = &auth.source {
            let state = load_key(src)?;
            auth.state.store(Arc::new(state));
        }
        Ok(auth)
    }

    pub fn enabled(&self) -> bool {
        self.source.is_some()
    }

    /// Re-reads the key when the file changed (rate-limited to [`RECHECK`]).
    fn refresh(&self) {
        let Some(src) = &self.source else { return };
        {
            let Some(mut last) = self.last_check.try_lock() else {
                return;
            };
            if last.elapsed() < RECHECK {
                return;
            }
            *last = Instant::now();
        }
        let path = match src {
            KeySource::HmacSecretFile(p) | KeySource::RsaPublicKeyFile(p) => p,
        };
        if stamp(path) == self.state.load().stamp {
            return;
        }
        match load_key(src) {
            Ok(state) => {
                tracing::info!(path = %path.display(), "auth key file changed; reloaded");
                self.state.store(Arc::new(state));
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "auth key file unreadable");
                self.state.store(Arc::new(KeyState {
                    stamp: stamp(path),
                    key: None,
                }));
            }
        }
        self.cache.lock().clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Checks the request's `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), ApiError> {
        if self.source.is_none() {
            return Ok(());
        }
        self.refresh();
        let Some(header) = header else {
            return Err(
                ApiError::new(401, "PGRST302", "Anonymous access is disabled")
                    .with_header("WWW-Authenticate", "Bearer"),
            );
        };
        let header = std::str::from_utf8(header)
            .map_err(|_| unauthorized("PGRST301", "Unsupported token type"))?
            .trim();
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized("PGRST301", "Unsupported token type"));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(unauthorized(
                "PGRST301",
                "Empty JWT is sent in Authorization header",
            ));
        }
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(unauthorized(
                "PGRST301",
                &format!("Expected 3 parts in JWT; got {parts}"),
            ));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let last = LAST.with(|l| {
            l.borrow()
                .as_ref()
                .filter(|t| t.auth == self.id && t.generation == generation && &*t.token == token)
                .map(|t| t.times)
        });
        if let Some(hit) = last {
            return check_times(hit.exp, hit.nbf);
        }
        let shared = self.cache.lock().get(token).copied();
        if let Some(hit) = shared {
            self.remember(generation, token, hit);
            return check_times(hit.exp, hit.nbf);
        }
        let state = self.state.load();
        let Some(key) = &state.key else {
            return Err(ApiError::new(500, "PGRST300", "Server lacks JWT secret"));
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("PGRST301", "Wrong or unsupported encoding algorithm"))?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(unauthorized(
                "PGRST301",
                "Wrong or unsupported encoding algorithm",
            ));
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => unauthorized("PGRST303", "JWT expired"),
                ErrorKind::ImmatureSignature => unauthorized("PGRST303", "JWT not yet valid"),
                ErrorKind::InvalidSignature => {
                    unauthorized("PGRST301", "No suitable key or wrong key type")
                        .with_details("None of the keys was able to decode the JWT")
                }
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    unauthorized("PGRST301", "Wrong or unsupported encoding algorithm")
                }
                ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                    unauthorized("PGRST303", "Parsing claims failed")
                }
                _ => unauthorized("PGRST301", "JWT cryptographic operation failed"),
            })?;
        let claim = |name: &str| data.claims.get(name).and_then(serde_json::Value::as_i64);
        let times = CachedToken {
            exp: claim("exp"),
            nbf: claim("nbf"),
        };
        {
            let mut cache = self.cache.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(token.into(), times);
        }
        self.remember(generation, token, times);
        Ok(())
    }

    fn remember(&self, generation: u64, token: &str, times: CachedToken) {
        LAST.with(|l| {
            *l.borrow_mut() = Some(LastToken {
                auth: self.id,
                generation,
                token: token.into(),
                times,
            })
        });
    }
}

fn check_times(exp: Option<i64>, nbf: Option<i64>) -> Result<(), ApiError> {
    let now = now_secs();
    let leeway = LEEWAY as i64;
    if exp.is_some_and(|e| now - leeway >= e) {
        return Err(unauthorized("PGRST303", "JWT expired"));
    }
    if nbf.is_some_and(|n| now + leeway < n) {
        return Err(unauthorized("PGRST303", "JWT not yet valid"));
    }
    Ok(())
}

fn load_key(src: &KeySource) -> anyhow::Result<KeyState> {
    let (path, rsa) = match src {
        KeySource::HmacSecretFile(p) => (p, false),
        KeySource::RsaPublicKeyFile(p) => (p, true),
    };
    let before = stamp(path);
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let key = if rsa {
        DecodingKey::from_rsa_pem(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not an RSA public key PEM: {e}", path.display()))?
    } else {
        if bytes.is_empty() {
            anyhow::bail!("{} is empty", path.display());
        }
        DecodingKey::from_secret(&bytes)
    };
    Ok(KeyState {
        stamp: before,
        key: Some(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn token(secret: &[u8], alg: Algorithm, claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn hmac_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"a-secret-of-at-least-32-characters!!").unwrap();
        let auth = Auth::new(&AuthConfig::Jwt(KeySource::HmacSecretFile(path))).unwrap();
        let good = token(
            b"a-secret-of-at-least-32-characters!!",
            Algorithm::HS384,
            json!({"role":"x"}),
        );
        let bearer = format!("Bearer {good}");
        assert!(auth.check(Some(bearer.as_bytes())).is_ok());
        assert!(auth.check(Some(bearer.as_bytes())).is_ok()); // cached
        assert_eq!(auth.check(None).unwrap_err().code, "PGRST302");
        let bad = format!("Bearer {}", token(b"wrong", Algorithm::HS256, json!({})));
        assert_eq!(
            auth.check(Some(bad.as_bytes())).unwrap_err().code,
            "PGRST301"
        );
        let old = format!(
            "Bearer {}",
            token(
                b"a-secret-of-at-least-32-characters!!",
                Algorithm::HS256,
                json!({"exp": now_secs() - 3600})
            )
        );
        let e = auth.check(Some(old.as_bytes())).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("PGRST303", "JWT expired")
        );
        let e = auth.check(Some(b"Bearer a.b")).unwrap_err();
        assert_eq!(e.message, "Expected 3 parts in JWT; got 2");
    }
}
