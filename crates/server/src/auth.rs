//! Authentication: who the caller is, from a JWT bearer token checked against the key files.
//!
//! The key decides the algorithms, never the token: an HMAC secret file (`--auth-token-file`)
//! accepts HS256/384/512 only, an RSA public key PEM (`--auth-rsa-public-key`)
//! RS256/384/512 only, each key of a JWK set file (`--auth-jwks-file`) the algorithms its JWK
//! fixes (see [`keys`]); `alg=none` and any other algorithm are rejected. The time claims
//! `exp`, `nbf` and `iat` are read and checked here, by one function ([`ClaimTimes`]) for a
//! fresh token and for a cached one alike, with PostgREST's rules, 30 s leeway and messages;
//! a JSON number is taken as it is (`Date.now()/1000` issuers send fractions), anything else
//! but null is refused. `aud`, when present, must be a string or an array of strings, and with
//! `--auth-jwt-aud` name that audience (absent, null or `[]` is every audience, as PostgREST).
//!
//! The caller is a [`Principal`]: the role is the value at `--auth-role-claim-key` in the
//! claims (see [`claim_path`]), else `--auth-anon-role`; a request without `Authorization`
//! gets the anonymous role, or PostgREST's 401 PGRST302 without one. When roles are in force
//! (a permissions file: [`AuthConfig::roles_required`]), a caller left without a role (a
//! token naming none, no anonymous role) is PGRST302 too, as PostgREST answers; whether the
//! role exists is the permissions' to say. Without roles in force any role, or none, passes.
//!
//! The key files are re-read when they change, by the server's reload poller (`watch.rs`,
//! with the permissions file and the RPC functions; [`Auth`] is [`crate::watch::Watched`]) and
//! on SIGUSR1, never on the request path: a request neither stats nor reads a file. A change
//! is another file renamed in its place (inode) or new content (size, modification and
//! status-change times; the status-change time cannot be set back, so a key rotated by a tool
//! that keeps modification times, `cp -p` or `rsync -a`, is noticed). A file that no longer loads gives
//! no keys until it is fixed (a token it verified fails; never an old key kept). Verified
//! tokens are cached (bounded), each entry tagged with the generation of the keys that
//! verified it: an entry of older keys never answers, even one inserted while the keys were
//! being replaced. Errors use PostgREST's PGRST300/301/302/303 shapes.

mod claim_path;
mod keys;

use crate::config_file::{Stamp, stamp};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use dialect::{ApiError, ErrorCode};
use jsonwebtoken::errors::ErrorKind;
use parking_lot::Mutex;

pub use claim_path::ClaimPath;
use keys::VerifyKey;

/// Clock skew allowed on `exp`/`nbf`, as PostgREST.
pub const LEEWAY: u64 = 30;
const CACHE_MAX: usize = 4096;

/// A key file, and what its content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// HS256/384/512 with the file's bytes as the secret.
    HmacSecretFile(PathBuf),
    /// RS256/384/512 with the file's PEM public key.
    RsaPublicKeyFile(PathBuf),
    /// A JWK set (or one JWK): each key with its own algorithms, selected by `kid`.
    Jwks(PathBuf),
}

impl KeySource {
    fn path(&self) -> &Path {
        match self {
            KeySource::HmacSecretFile(p) | KeySource::RsaPublicKeyFile(p) | KeySource::Jwks(p) => p,
        }
    }
}

/// The configured authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    /// The key files tokens are verified with. None: authentication is disabled (only by an
    /// explicit flag; logged loudly at start-up) and every request is anonymous.
    pub keys: Vec<KeySource>,
    /// Where the role is in the claims (`--auth-role-claim-key`).
    pub role_claim_key: ClaimPath,
    /// The role of requests without a token, and of tokens naming none (`--auth-anon-role`).
    pub anon_role: Option<String>,
    /// The audience a token's `aud` must name when it has one (`--auth-jwt-aud`).
    pub audience: Option<String>,
    /// Every caller needs a role (roles are in force: `--permissions`): one left without is
    /// PGRST302.
    pub roles_required: bool,
}

impl AuthConfig {
    /// Tokens verified with the key of `source`, the other settings their defaults.
    pub fn jwt(source: KeySource) -> AuthConfig {
        AuthConfig {
            keys: vec![source],
            ..AuthConfig::default()
        }
    }

    /// Whether every request is let in without a token.
    pub fn disabled(&self) -> bool {
        self.keys.is_empty()
    }
}

struct KeyState {
    /// Each key file's stamp as it was read (in the order of the sources).
    stamps: Vec<Option<Stamp>>,
    /// The keys of every file that loaded.
    keys: Vec<VerifyKey>,
    /// Which load of the key files this is: read together with the keys (one atomic load),
    /// so a token is always tagged with the generation of the keys that really verified it.
    generation: u64,
}

/// Who the caller is, as authentication established it: handed to every request handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The caller's role: the token's role claim, else the anonymous role; `None` when there
    /// is neither.
    pub role: Option<String>,
    /// The verified token's payload; `Value::Null` when there is no token.
    pub claims: serde_json::Value,
    /// The caller runs as the anonymous role (`--auth-anon-role`): without a token, or with
    /// a token or an API key whose role is that one. A refusal (42501) is then 401, and 403
    /// for every other role, as PostgREST decides it (by the role, `authRole /=
    /// db-anon-role`, not by whether a credential came): a caller an API key or a token
    /// identifies as another role is authenticated.
    pub anonymous: bool,
}

impl Principal {
    /// The caller of a server without authentication: no role, no claims.
    pub fn anonymous() -> Principal {
        Principal {
            role: None,
            claims: serde_json::Value::Null,
            anonymous: true,
        }
    }
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

/// Checks `Authorization` headers.
pub struct Auth {
    sources: Vec<KeySource>,
    role_claim_key: ClaimPath,
    anon_role: Option<String>,
    audience: Option<String>,
    roles_required: bool,
    state: ArcSwap<KeyState>,
    /// Held for a whole reload (the poller and SIGUSR1), so an older load never replaces a
    /// newer one.
    reloading: Mutex<()>,
    cache: Mutex<HashMap<Box<str>, CachedToken>>,
    /// Tells this instance's entries in [`LAST`] apart from other instances'.
    id: u64,
    /// The generation the next key load gets.
    next_generation: AtomicU64,
    /// The caller of a request without a token.
    anonymous: Arc<Principal>,
}

fn unauthorized(code: ErrorCode, message: &str) -> ApiError {
    ApiError::new(401, code, message).with_header(
        "WWW-Authenticate",
        format!("Bearer error=\"invalid_token\", error_description=\"{message}\""),
    )
}

/// PostgREST's 401 for a request that names no role while there is no anonymous role.
fn anonymous_disabled() -> ApiError {
    ApiError::new(
        401,
        ErrorCode::AnonymousDisabled,
        "Anonymous access is disabled",
    )
    .with_header("WWW-Authenticate", "Bearer")
}

/// PostgREST's answer for a header it cannot read: `alg` `none` (an unsecured token), an
/// algorithm nobody implements, or no JOSE header at all.
fn unreadable_header(token: &str) -> ApiError {
    let header = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok());
    match header.as_ref().and_then(|h| h.get("alg")) {
        Some(serde_json::Value::String(alg)) if alg.eq_ignore_ascii_case("none") => unauthorized(
            ErrorCode::JwtInvalid,
            "Wrong or unsupported encoding algorithm",
        )
        .with_details("JWT is unsecured but expected 'alg' was not 'none'"),
        Some(_) => unauthorized(
            ErrorCode::JwtInvalid,
            "Wrong or unsupported encoding algorithm",
        ),
        None => unauthorized(ErrorCode::JwtInvalid, "JWT cryptographic operation failed"),
    }
}

/// PostgREST's `aud` rules: absent or null is every audience; a string, or an array of
/// strings (`[]` is every audience), must name `audience` when one is configured; anything
/// else is refused even without one.
fn check_audience(claims: &serde_json::Value, audience: Option<&str>) -> Result<(), ApiError> {
    use serde_json::Value;
    let matches = |a: &str| audience.is_none_or(|want| a == want);
    let ok = match claims.get("aud") {
        None | Some(Value::Null) => true,
        Some(Value::String(a)) => matches(a),
        Some(Value::Array(all)) => {
            let mut strings = Vec::with_capacity(all.len());
            for a in all {
                match a.as_str() {
                    Some(a) => strings.push(a),
                    None => return Err(bad_aud()),
                }
            }
            strings.is_empty() || strings.into_iter().any(matches)
        }
        Some(_) => return Err(bad_aud()),
    };
    if ok {
        Ok(())
    } else {
        Err(unauthorized(ErrorCode::JwtClaims, "JWT not in audience"))
    }
}

fn bad_aud() -> ApiError {
    unauthorized(
        ErrorCode::JwtClaims,
        "The JWT 'aud' claim must be a string or an array of strings",
    )
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Auth {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let auth = Auth {
            sources: config.keys.clone(),
            role_claim_key: config.role_claim_key.clone(),
            anon_role: config.anon_role.clone(),
            audience: config.audience.clone(),
            roles_required: config.roles_required,
            state: ArcSwap::from_pointee(KeyState {
                stamps: Vec::new(),
                keys: Vec::new(),
                generation: 0,
            }),
            reloading: Mutex::new(()),
            cache: Mutex::new(HashMap::new()),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            next_generation: AtomicU64::new(1),
            anonymous: Arc::new(Principal {
                role: config.anon_role.clone(),
                ..Principal::anonymous()
            }),
        };
        if !auth.sources.is_empty() {
            let generation = auth.next_generation.fetch_add(1, Ordering::Relaxed);
            let (state, errors) = load_keys(&auth.sources, generation);
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
            auth.state.store(Arc::new(state));
        }
        Ok(auth)
    }

    /// Loads the key files again as a new generation: tokens verified by older keys are
    /// verified again. A file that fails to load contributes no key. Logs the outcome (`why`
    /// names the cause).
    pub fn reload(&self, why: &str) {
        if self.sources.is_empty() {
            return;
        }
        let _one = self.reloading.lock();
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let (state, errors) = load_keys(&self.sources, generation);
        for e in &errors {
            tracing::error!(error = %e, why, "auth key file unreadable; its keys are not used");
        }
        if errors.is_empty() {
            tracing::info!(keys = state.keys.len(), why, "auth key files reloaded");
        }
        self.state.store(Arc::new(state));
        // Only to free memory: entries are matched against the generation anyway.
        self.cache.lock().clear();
    }

    /// Whether `role` is the anonymous role (`--auth-anon-role`): a caller running as it is
    /// answered as an anonymous one (see [`Principal::anonymous`]).
    pub fn is_anon_role(&self, role: Option<&str>) -> bool {
        role.is_some() && role == self.anon_role.as_deref()
    }

    /// True when requests need a bearer token (false only with authentication disabled).
    pub fn required(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Checks the request's `Authorization` header value: who the caller is, or PostgREST's
    /// 401 error.
    pub fn check(&self, header: Option<&[u8]>) -> Result<Arc<Principal>, ApiError> {
        let principal = self.authenticate(header)?;
        if self.roles_required && principal.role.is_none() {
            return Err(anonymous_disabled());
        }
        Ok(principal)
    }

    fn authenticate(&self, header: Option<&[u8]>) -> Result<Arc<Principal>, ApiError> {
        if self.sources.is_empty() {
            return Ok(self.anonymous.clone());
        }
        let Some(header) = header else {
            if self.anon_role.is_some() {
                return Ok(self.anonymous.clone());
            }
            return Err(anonymous_disabled());
        };
        // The common case first: `Bearer <token>` with the token this thread verified last.
        // The parse below gives such a header the same outcome (a verified token is ASCII
        // without blanks), after checking its text and splitting it.
        if let Some(raw) = header.strip_prefix(b"Bearer ") {
            let state = self.state.load();
            if let Some(verified) = self.last_here(state.generation, raw) {
                verified.times.check(now_secs())?;
                return Ok(verified.principal.clone());
            }
        }
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
        // The keys and their generation come from one load: whatever reload happens
        // meanwhile, what this call caches is tagged with the keys that verified it.
        let state = self.state.load();
        let now = now_secs();
        // Only verified tokens are cached: a hit is a well-formed JWT.
        if let Some(verified) = self.cached(state.generation, token) {
            verified.times.check(now)?;
            return Ok(verified.principal.clone());
        }
        let parts = token.bytes().filter(|&b| b == b'.').count() + 1;
        if parts != 3 {
            return Err(unauthorized(
                ErrorCode::JwtInvalid,
                &format!("Expected 3 parts in JWT; got {parts}"),
            ));
        }
        let verified = self.verify(&state, token, now)?;
        let principal = verified.principal.clone();
        self.remember(state.generation, token, Arc::new(verified));
        Ok(principal)
    }

    /// What `token` was found to be when keys of `generation` verified it, if it is the
    /// token this thread verified last.
    fn last_here(&self, generation: u64, token: &[u8]) -> Option<Arc<Verified>> {
        LAST.with(|l| {
            l.borrow()
                .as_ref()
                .filter(|t| {
                    t.auth == self.id && t.generation == generation && t.token.as_bytes() == token
                })
                .map(|t| t.verified.clone())
        })
    }

    /// What `token` was found to be when keys of `generation` verified it before.
    fn cached(&self, generation: u64, token: &str) -> Option<Arc<Verified>> {
        let last = self.last_here(generation, token.as_bytes());
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

    /// Checks the signature of `token` with the keys of `state` that fit its header (by
    /// algorithm and `kid`), then its claims at `now`: times, `aud`, the role.
    fn verify(&self, state: &KeyState, token: &str, now: i64) -> Result<Verified, ApiError> {
        if state.keys.is_empty() {
            return Err(ApiError::new(
                500,
                ErrorCode::JwtSecretMissing,
                "Server lacks JWT secret",
            ));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unreadable_header(token))?;
        let mut fitting = state
            .keys
            .iter()
            .filter(|k| k.fits(header.alg, header.kid.as_deref()))
            .peekable();
        if fitting.peek().is_none() {
            return Err(
                unauthorized(ErrorCode::JwtInvalid, "No suitable key or wrong key type")
                    .with_details("No suitable key was found to decode the JWT"),
            );
        }
        let mut claims = None;
        for key in fitting {
            match jsonwebtoken::decode::<serde_json::Value>(token, key.key(), key.validation()) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                // The signature checked out; the payload is no JSON object.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_)
                    ) =>
                {
                    return Err(unauthorized(ErrorCode::JwtClaims, "Parsing claims failed"));
                }
                // This key does not verify it; the next one may.
                Err(_) => {}
            }
        }
        let Some(claims) = claims else {
            return Err(
                unauthorized(ErrorCode::JwtInvalid, "No suitable key or wrong key type")
                    .with_details("None of the keys was able to decode the JWT"),
            );
        };
        if !claims.is_object() {
            return Err(unauthorized(ErrorCode::JwtClaims, "Parsing claims failed"));
        }
        // PostgREST's order: the time claims, then the audience.
        let times = ClaimTimes::read(&claims)?;
        times.check(now)?;
        check_audience(&claims, self.audience.as_deref())?;
        let role = self
            .role_claim_key
            .role(&claims)
            .or_else(|| self.anon_role.clone());
        Ok(Verified {
            times,
            principal: Arc::new(Principal {
                anonymous: self.is_anon_role(role.as_deref()),
                role,
                claims,
            }),
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

impl crate::watch::Watched for Auth {
    fn what(&self) -> &'static str {
        "auth keys"
    }

    fn reload_if_changed(&self) {
        if self.sources.is_empty() {
            return;
        }
        let stamps: Vec<_> = self.sources.iter().map(|s| stamp(s.path())).collect();
        if stamps != self.state.load().stamps {
            self.reload("a key file changed");
        }
    }
}

/// The largest key file read (a JWK set of many keys is a few hundred KiB at most).
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Loads every key file as generation `generation`: the keys of those that load, and why the
/// others did not.
fn load_keys(sources: &[KeySource], generation: u64) -> (KeyState, Vec<anyhow::Error>) {
    let mut state = KeyState {
        stamps: Vec::with_capacity(sources.len()),
        keys: Vec::new(),
        generation,
    };
    let mut errors = Vec::new();
    for source in sources {
        let path = source.path();
        // Taken before the read: a change during the read is seen at the next check.
        state.stamps.push(stamp(path));
        let loaded = crate::config_file::read(path, MAX_KEY_FILE_BYTES)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
            .and_then(|bytes| match source {
                KeySource::HmacSecretFile(_) => keys::hmac_secret(path, &bytes),
                KeySource::RsaPublicKeyFile(_) => keys::rsa_pem(path, &bytes),
                KeySource::Jwks(_) => keys::jwk_set(path, &bytes),
            });
        match loaded {
            Ok(keys) => state.keys.extend(keys),
            Err(e) => errors.push(e),
        }
    }
    (state, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;
    use std::time::Duration;

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
        let auth = Auth::new(&AuthConfig::jwt(KeySource::HmacSecretFile(path))).unwrap();
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
        let auth = Auth::new(&AuthConfig::jwt(KeySource::HmacSecretFile(path.clone()))).unwrap();
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
        let old = format!(
            "Bearer {}",
            token(SECRET, Algorithm::HS256, json!({"role": "x"}))
        );
        let raw = old.strip_prefix("Bearer ").unwrap();
        // A request verifies the token with the old key ...
        let before = auth.state.load_full();
        let verified = auth.verify(&before, raw, now_secs()).unwrap();
        // ... the key is replaced meanwhile ...
        std::fs::write(&path, b"another-secret-of-at-least-32-characters").unwrap();
        auth.reload("test");
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
        use crate::watch::Watched;
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
        auth.reload_if_changed();
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

    /// A request never looks at a key file: a rotated key is taken up by the reload poller
    /// (`watch.rs`, through [`crate::watch::Watched`]) or by SIGUSR1, never by the requests
    /// that come after the rotation, however long after.
    #[test]
    fn requests_never_read_the_key_files() {
        use crate::watch::Watched;
        let dir = tempfile::tempdir().unwrap();
        let (auth, path) = hmac_auth(&dir, SECRET);
        let other = b"another-secret-of-at-least-32-characters";
        let old = format!("Bearer {}", token(SECRET, Algorithm::HS256, json!({})));
        let new = format!("Bearer {}", token(other, Algorithm::HS256, json!({})));
        assert!(auth.check(Some(old.as_bytes())).is_ok());
        std::fs::write(&path, other).unwrap();
        // Requests before and well after the change: the keys they are checked with stay
        // those of the last load.
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                auth.check(Some(old.as_bytes())).is_ok(),
                "a request reloaded the key file"
            );
            assert!(auth.check(Some(new.as_bytes())).is_err());
        }
        // The poller's look takes the new key up.
        auth.reload_if_changed();
        assert!(auth.check(Some(new.as_bytes())).is_ok());
        assert!(auth.check(Some(old.as_bytes())).is_err());
    }

    fn bearer(claims: serde_json::Value) -> String {
        format!("Bearer {}", token(SECRET, Algorithm::HS256, claims))
    }

    fn auth_with(dir: &tempfile::TempDir, config: impl FnOnce(&mut AuthConfig)) -> Auth {
        let path = dir.path().join("secret");
        std::fs::write(&path, SECRET).unwrap();
        let mut c = AuthConfig::jwt(KeySource::HmacSecretFile(path));
        config(&mut c);
        Auth::new(&c).unwrap()
    }

    fn role(auth: &Auth, header: Option<&str>) -> Result<Option<String>, (u16, String, String)> {
        auth.check(header.map(str::as_bytes))
            .map(|p| p.role.clone())
            .map_err(|e| (e.status, e.code.as_str().to_string(), e.message))
    }

    #[test]
    fn the_role_comes_from_the_claim_path_else_the_anonymous_role() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth_with(&dir, |c| {
            c.role_claim_key = ".app_metadata.roles[1]".parse().unwrap();
            c.anon_role = Some("web_anon".into());
        });
        let t = bearer(json!({"role": "ignored", "app_metadata": {"roles": ["a", "b"]}}));
        assert_eq!(role(&auth, Some(&t)), Ok(Some("b".into())));
        // No role at the path: the anonymous role, as PostgREST.
        assert_eq!(
            role(&auth, Some(&bearer(json!({"role": "x"})))),
            Ok(Some("web_anon".into()))
        );
        // No token at all: the anonymous role, no claims.
        let who = auth.check(None).unwrap();
        assert_eq!(
            *who,
            Principal {
                role: Some("web_anon".into()),
                claims: serde_json::Value::Null,
                anonymous: true,
            }
        );

        // Without an anonymous role: a token without a role passes with none while no roles
        // are known (the Go version's behaviour), no token is PGRST302.
        let auth = auth_with(&dir, |_| {});
        assert_eq!(role(&auth, Some(&bearer(json!({})))), Ok(None));
        assert_eq!(role(&auth, None).unwrap_err().1, "PGRST302");
    }

    #[test]
    fn with_roles_in_force_a_caller_without_a_role_is_postgrest_401() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth_with(&dir, |c| c.roles_required = true);
        let stranger = bearer(json!({"role": "stranger"}));
        let roleless = bearer(json!({"sub": "1"}));
        // Whether a role exists is the permissions' to say.
        assert_eq!(role(&auth, Some(&stranger)), Ok(Some("stranger".into())));
        let disabled = Err((
            401,
            "PGRST302".into(),
            "Anonymous access is disabled".into(),
        ));
        assert_eq!(role(&auth, Some(&roleless)), disabled);
        // Cached or not.
        assert_eq!(role(&auth, Some(&roleless)), disabled);
        assert_eq!(role(&auth, None), disabled);
        // The anonymous role fills in.
        let anon = auth_with(&dir, |c| {
            c.roles_required = true;
            c.anon_role = Some("nobody".into());
        });
        assert_eq!(role(&anon, Some(&roleless)), Ok(Some("nobody".into())));
        assert_eq!(role(&anon, None), Ok(Some("nobody".into())));
        // Authentication disabled: every caller is the anonymous one.
        let open = Auth::new(&AuthConfig {
            roles_required: true,
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(role(&open, None), disabled);
        let open = Auth::new(&AuthConfig {
            roles_required: true,
            anon_role: Some("dev".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        assert_eq!(role(&open, Some(&stranger)), Ok(Some("dev".into())));
    }

    #[test]
    fn aud_follows_postgrest() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth_with(&dir, |c| c.audience = Some("api".into()));
        let not_in = Err((401, "PGRST303".into(), "JWT not in audience".into()));
        let not_string = Err((
            401,
            "PGRST303".into(),
            "The JWT 'aud' claim must be a string or an array of strings".into(),
        ));
        for (aud, want) in [
            (json!("api"), Ok(Some("r".into()))),
            (json!(["web", "api"]), Ok(Some("r".into()))),
            (json!([]), Ok(Some("r".into()))),
            (json!(null), Ok(Some("r".into()))),
            (json!("web"), not_in.clone()),
            (json!(["web"]), not_in.clone()),
            (json!("API"), not_in),
            (json!(5), not_string.clone()),
            (json!(["api", 5]), not_string.clone()),
            (json!({"api": true}), not_string.clone()),
        ] {
            let t = bearer(json!({"role": "r", "aud": aud}));
            assert_eq!(role(&auth, Some(&t)), want, "{aud}");
        }
        assert_eq!(
            role(&auth, Some(&bearer(json!({"role": "r"})))),
            Ok(Some("r".into()))
        );
        // Without an audience configured, every audience passes, but not a malformed one.
        let any = auth_with(&dir, |_| {});
        let t = bearer(json!({"aud": "whatever"}));
        assert_eq!(role(&any, Some(&t)), Ok(None));
        let t = bearer(json!({"aud": 5}));
        assert_eq!(role(&any, Some(&t)), not_string);
    }
}
