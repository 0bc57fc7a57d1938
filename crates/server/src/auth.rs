//! Authentication: JWT bearer tokens checked against a key file, as the Go version does.
//!
//! The key decides the algorithm family, never the token: an HMAC secret file
//! (`--auth-token-file`) accepts HS256/384/512 only, an RSA public key PEM
//! (`--auth-rsa-public-key`) RS256/384/512 only; `alg=none` and any other algorithm are
//! rejected. The time claims `exp`, `nbf` and `iat` are read and checked here, by one function
//! ([`ClaimTimes`]) for a fresh token and for a cached one alike, with PostgREST's rules, 30 s
//! leeway and messages; a JSON number is taken as it is (`Date.now()/1000` issuers send
//! fractions), anything else but null is refused. The key file is re-read when it changes
//! (checked at most every [`RECHECK`]): another file renamed in its place (inode), new content
//! (size, modification and status-change times; the status-change time cannot be set back, so
//! a key rotated by a tool that keeps modification times, `cp -p` or `rsync -a`, is noticed). Verified tokens are
//! cached (bounded), each entry tagged with the generation of the key that verified it: an
//! entry of an older key never answers, even one inserted while the key was being replaced.
//! Errors use PostgREST's PGRST301/302/303 shapes. A request that passes gets its
//! [`Principal`] (role and claims), which every handler receives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dialect::{ApiError, ErrorCode};
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

/// What tells one version of the key file from another: device and inode, size, modification
/// time, status-change time (seconds and nanoseconds).
type Stamp = (u64, u64, u64, SystemTime, i64, i64);

struct KeyState {
    stamp: Option<Stamp>,
    key: Option<DecodingKey>,
    /// Which load of the key file this is: read together with the key (one atomic load), so
    /// a token is always tagged with the generation of the key that really verified it.
    generation: u64,
}

/// The time claims of a token, in seconds since the Unix epoch, as the token states them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ClaimTimes {
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
}

impl ClaimTimes {
    /// Reads `exp`, `nbf` and `iat`: absent or null is no claim, a JSON number (integer or
    /// not) is taken as it is, anything else is PostgREST's PGRST303 `The JWT '…' claim must
    /// be a number`.
    fn read(claims: &serde_json::Value) -> Result<ClaimTimes, ApiError> {
        let claim = |name: &str| match claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(unauthorized(
                ErrorCode::JwtClaims,
                &format!("The JWT '{name}' claim must be a number"),
            )),
        };
        Ok(ClaimTimes {
            exp: claim("exp")?,
            nbf: claim("nbf")?,
            iat: claim("iat")?,
        })
    }

    /// PostgREST's checks at `now` (whole seconds), in its order, with [`LEEWAY`]: expired
    /// when `now - leeway > exp`, not yet valid when `now + leeway < nbf`, issued in the
    /// future when `now + leeway < iat`.
    fn check(&self, now: i64) -> Result<(), ApiError> {
        let leeway = LEEWAY as i64;
        let past = now.saturating_sub(leeway) as f64;
        let future = now.saturating_add(leeway) as f64;
        if self.exp.is_some_and(|exp| past > exp) {
            return Err(unauthorized(ErrorCode::JwtClaims, "JWT expired"));
        }
        if self.nbf.is_some_and(|nbf| future < nbf) {
            return Err(unauthorized(ErrorCode::JwtClaims, "JWT not yet valid"));
        }
        if self.iat.is_some_and(|iat| future < iat) {
            return Err(unauthorized(ErrorCode::JwtClaims, "JWT issued at future"));
        }
        Ok(())
    }
}

/// A verified token: its time claims and the caller it describes.
#[derive(Debug)]
struct Verified {
    times: ClaimTimes,
    principal: Arc<Principal>,
}

/// A verified token in the cache and the key generation that verified it.
#[derive(Clone)]
struct CachedToken {
    generation: u64,
    verified: Arc<Verified>,
}

/// The last token this thread verified: clients send the same token again and again, and a
/// byte comparison is cheaper than hashing it into the shared cache.
struct LastToken {
    auth: u64,
    generation: u64,
    token: Box<str>,
    verified: Arc<Verified>,
}

thread_local! {
    static LAST: std::cell::RefCell<Option<LastToken>> = const { std::cell::RefCell::new(None) };
}

/// Who the caller is, as authentication established it: handed to every request handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The caller's role: the token's role claim; `None` when authentication is disabled or
    /// the token names no role.
    pub role: Option<String>,
    /// The verified token's payload; `Value::Null` when there is no token.
    pub claims: serde_json::Value,
}

impl Principal {
    /// The caller of a server without authentication: no role, no claims.
    pub fn anonymous() -> Principal {
        Principal {
            role: None,
            claims: serde_json::Value::Null,
        }
    }

    /// The caller a verified token's `claims` describe.
    fn from_claims(claims: serde_json::Value) -> Principal {
        let role = claims
            .get("role")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        Principal { role, claims }
    }
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
    /// The generation the next key load gets.
    next_generation: AtomicU64,
    /// The caller when authentication is disabled.
    anonymous: Arc<Principal>,
}

fn unauthorized(code: ErrorCode, message: &str) -> ApiError {
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

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.len(),
        m.modified().ok()?,
        m.ctime(),
        m.ctime_nsec(),
    ))
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
        // The time claims are checked by `ClaimTimes`, for fresh and cached tokens alike.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let auth = Auth {
            source,
            validation,
            state: ArcSwap::from_pointee(KeyState {
                stamp: None,
                key: None,
                generation: 0,
            }),
            last_check: Mutex::new(Instant::now()),
            cache: Mutex::new(HashMap::new()),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            next_generation: AtomicU64::new(1),
            anonymous: Arc::new(Principal::anonymous()),
        };
        if let Some(src) = &auth.source {
            let state = load_key(src, auth.next_generation.fetch_add(1, Ordering::Relaxed))?;
            auth.state.store(Arc::new(state));
        }
        Ok(auth)
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
        if stamp(source_path(src)) == self.state.load().stamp {
            return;
        }
        self.reload(src);
    }

    /// Loads the key file again as a new generation: tokens verified by an older one are
    /// verified again.
    fn reload(&self, src: &KeySource) {
        let path = source_path(src);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        match load_key(src, generation) {
            Ok(state) => {
                tracing::info!(path = %path.display(), "auth key file changed; reloaded");
                self.state.store(Arc::new(state));
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "auth key file unreadable");
                self.state.store(Arc::new(KeyState {
                    stamp: stamp(path),
                    key: None,
                    generation,
                }));
            }
        }
        // Only to free memory: entries are matched against the generation anyway.
        self.cache.lock().clear();
    }

    /// True when requests need a bearer token (false only with authentication disabled).
    pub fn required(&self) -> bool {
        self.source.is_some()
    }

    /// Checks the request's `Authorization` header value: who the caller is, or PostgREST's
    /// 401 error.
    pub fn check(&self, header: Option<&[u8]>) -> Result<Arc<Principal>, ApiError> {
        if self.source.is_none() {
            return Ok(self.anonymous.clone());
        }
        self.refresh();
        let Some(header) = header else {
            return Err(ApiError::new(
                401,
                ErrorCode::AnonymousDisabled,
                "Anonymous access is disabled",
            )
            .with_header("WWW-Authenticate", "Bearer"));
        };
        let header = std::str::from_utf8(header)
            .map_err(|_| unauthorized(ErrorCode::JwtInvalid, "Unsupported token type"))?
            .trim();
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized(
                ErrorCode::JwtInvalid,
                "Unsupported token type",
            ));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(unauthorized(
                ErrorCode::JwtInvalid,
                "Empty JWT is sent in Authorization header",
            ));
        }
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(unauthorized(
                ErrorCode::JwtInvalid,
                &format!("Expected 3 parts in JWT; got {parts}"),
            ));
        }
        // The key and its generation come from one load: whatever reload happens meanwhile,
        // what this call caches is tagged with the key that verified it.
        let state = self.state.load();
        let now = now_secs();
        if let Some(verified) = self.cached(state.generation, token) {
            verified.times.check(now)?;
            return Ok(verified.principal.clone());
        }
        let verified = self.verify(&state, token)?;
        verified.times.check(now)?;
        let principal = verified.principal.clone();
        self.remember(state.generation, token, Arc::new(verified));
        Ok(principal)
    }

    /// What `token` was found to be when a key of `generation` verified it before.
    fn cached(&self, generation: u64, token: &str) -> Option<Arc<Verified>> {
        let last = LAST.with(|l| {
            l.borrow()
                .as_ref()
                .filter(|t| t.auth == self.id && t.generation == generation && &*t.token == token)
                .map(|t| t.verified.clone())
        });
        if last.is_some() {
            return last;
        }
        let shared = self
            .cache
            .lock()
            .get(token)
            .filter(|c| c.generation == generation)
            .map(|c| c.verified.clone())?;
        self.remember_here(generation, token, shared.clone());
        Some(shared)
    }

    /// Checks the signature and algorithm of `token` with `state`'s key; reads its claims.
    fn verify(&self, state: &KeyState, token: &str) -> Result<Verified, ApiError> {
        let Some(key) = &state.key else {
            return Err(ApiError::new(
                500,
                ErrorCode::JwtSecretMissing,
                "Server lacks JWT secret",
            ));
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            unauthorized(
                ErrorCode::JwtInvalid,
                "Wrong or unsupported encoding algorithm",
            )
        })?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(unauthorized(
                ErrorCode::JwtInvalid,
                "Wrong or unsupported encoding algorithm",
            ));
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => {
                    unauthorized(ErrorCode::JwtInvalid, "No suitable key or wrong key type")
                        .with_details("None of the keys was able to decode the JWT")
                }
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => unauthorized(
                    ErrorCode::JwtInvalid,
                    "Wrong or unsupported encoding algorithm",
                ),
                ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                    unauthorized(ErrorCode::JwtClaims, "Parsing claims failed")
                }
                _ => unauthorized(ErrorCode::JwtInvalid, "JWT cryptographic operation failed"),
            })?;
        if !data.claims.is_object() {
            return Err(unauthorized(ErrorCode::JwtClaims, "Parsing claims failed"));
        }
        let times = ClaimTimes::read(&data.claims)?;
        Ok(Verified {
            times,
            principal: Arc::new(Principal::from_claims(data.claims)),
        })
    }

    /// Caches a verified token (shared and for this thread).
    fn remember(&self, generation: u64, token: &str, verified: Arc<Verified>) {
        {
            let mut cache = self.cache.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                token.into(),
                CachedToken {
                    generation,
                    verified: verified.clone(),
                },
            );
        }
        self.remember_here(generation, token, verified);
    }

    fn remember_here(&self, generation: u64, token: &str, verified: Arc<Verified>) {
        LAST.with(|l| {
            *l.borrow_mut() = Some(LastToken {
                auth: self.id,
                generation,
                token: token.into(),
                verified,
            })
        });
    }
}

fn source_path(src: &KeySource) -> &Path {
    match src {
        KeySource::HmacSecretFile(p) | KeySource::RsaPublicKeyFile(p) => p,
    }
}

fn load_key(src: &KeySource, generation: u64) -> anyhow::Result<KeyState> {
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
        generation,
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
        let who = auth.check(Some(bearer.as_bytes())).unwrap();
        assert_eq!(who.role.as_deref(), Some("x"));
        assert_eq!(who.claims, json!({"role":"x"}));
        assert_eq!(auth.check(Some(bearer.as_bytes())).unwrap(), who); // cached
        assert_eq!(auth.check(None).unwrap_err().code.as_str(), "PGRST302");
        let bad = format!("Bearer {}", token(b"wrong", Algorithm::HS256, json!({})));
        assert_eq!(
            auth.check(Some(bad.as_bytes())).unwrap_err().code.as_str(),
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

    fn hmac_auth(dir: &tempfile::TempDir, secret: &[u8]) -> (Auth, PathBuf) {
        let path = dir.path().join("secret");
        std::fs::write(&path, secret).unwrap();
        let auth = Auth::new(&AuthConfig::Jwt(KeySource::HmacSecretFile(path.clone()))).unwrap();
        (auth, path)
    }

    const SECRET: &[u8] = b"a-secret-of-at-least-32-characters!!";

    #[test]
    fn fractional_time_claims_are_taken_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = hmac_auth(&dir, SECRET);
        let now = now_secs() as f64;
        // A `Date.now()/1000` issuer: fractions, inside and outside the leeway.
        let fresh = format!(
            "Bearer {}",
            token(
                SECRET,
                Algorithm::HS256,
                json!({"exp": now + 3600.25, "iat": now - 0.5})
            )
        );
        assert!(auth.check(Some(fresh.as_bytes())).is_ok());
        let expired = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"exp": now - 31.5}))
        );
        let e = auth.check(Some(expired.as_bytes())).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("PGRST303", "JWT expired")
        );
        let early = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"nbf": now + 40.5}))
        );
        let e = auth.check(Some(early.as_bytes())).unwrap_err();
        assert_eq!(e.message, "JWT not yet valid");
        let future = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"iat": now + 3600.5}))
        );
        assert_eq!(
            auth.check(Some(future.as_bytes())).unwrap_err().message,
            "JWT issued at future"
        );
        // Claims that are not numbers are refused as PostgREST refuses them; null is no claim.
        for (claims, message) in [
            (
                json!({"exp": "9999999999"}),
                "The JWT 'exp' claim must be a number",
            ),
            (json!({"nbf": true}), "The JWT 'nbf' claim must be a number"),
            (json!({"iat": [1]}), "The JWT 'iat' claim must be a number"),
        ] {
            let t = format!("Bearer {}", token(SECRET, Algorithm::HS256, claims));
            let e = auth.check(Some(t.as_bytes())).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str(), e.message.as_str()),
                (401, "PGRST303", message)
            );
        }
        let null = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"exp": null}))
        );
        assert!(auth.check(Some(null.as_bytes())).is_ok());
    }

    #[test]
    fn a_cached_token_expires_by_the_same_rule() {
        let times = ClaimTimes::read(&json!({"exp": 1000.5, "nbf": 10.25})).unwrap();
        assert_eq!(times.exp, Some(1000.5));
        // Valid through the leeway, expired the second after.
        assert!(times.check(1030).is_ok());
        assert_eq!(times.check(1031).unwrap_err().message, "JWT expired");
        assert_eq!(
            ClaimTimes::read(&json!({"nbf": 1040.5}))
                .unwrap()
                .check(1010)
                .unwrap_err()
                .message,
            "JWT not yet valid"
        );
        assert!(
            ClaimTimes::read(&json!({"nbf": 1040.5}))
                .unwrap()
                .check(1011)
                .is_ok()
        );
        // Huge and negative values neither overflow nor pass.
        assert!(
            ClaimTimes::read(&json!({"exp": 1e300}))
                .unwrap()
                .check(i64::MAX)
                .is_ok()
        );
        assert!(
            ClaimTimes::read(&json!({"exp": -1e300}))
                .unwrap()
                .check(i64::MIN)
                .is_err()
        );
    }

    #[test]
    fn a_token_verified_by_a_replaced_key_is_never_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, path) = hmac_auth(&dir, SECRET);
        let src = KeySource::HmacSecretFile(path.clone());
        let old = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"role": "x"}))
        );
        let raw = old.strip_prefix("Bearer ").unwrap();
        // A request verifies the token with the old key ...
        let before = auth.state.load_full();
        let verified = auth.verify(&before, raw).unwrap();
        // ... the key is replaced meanwhile ...
        std::fs::write(&path, b"another-secret-of-at-least-32-characters").unwrap();
        auth.reload(&src);
        // ... and only then does that request cache what it verified.
        auth.remember(before.generation, raw, Arc::new(verified));
        let e = auth.check(Some(old.as_bytes())).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("PGRST301", "No suitable key or wrong key type")
        );
        // On another thread too (no thread-local entry there).
        std::thread::scope(|s| {
            s.spawn(|| assert!(auth.check(Some(old.as_bytes())).is_err()));
        });
    }
    #[test]
    fn a_key_replaced_by_one_of_the_same_size_and_time_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, path) = hmac_auth(&dir, SECRET);
        let old = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"role": "x"}))
        );
        assert!(auth.check(Some(old.as_bytes())).is_ok());
        // The key is rotated to another of the same length, by a tool that keeps the file's
        // modification time (`cp -p`, `rsync -a`, an archive).
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let other = b"another-secret-of-at-least-32-chars!";
        assert_eq!(other.len(), SECRET.len());
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, other).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&fresh)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(100));
        let e = auth.check(Some(old.as_bytes())).unwrap_err();
        assert_eq!(
            e.code.as_str(),
            "PGRST301",
            "a token of the replaced key was let in"
        );
        let new = format!(
            "Bearer {}",
            token(other, Algorithm::HS256, json!({"role": "x"}))
        );
        assert!(auth.check(Some(new.as_bytes())).is_ok());
    }
}
