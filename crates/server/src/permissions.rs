//! The permissions file (`--permissions FILE`): what each role may read and write, and the
//! API keys that stand for a role (see `docs/postgrest-dialect.md`).
//!
//! ```yaml
//! roles:
//!   anon:
//!     books:
//!       read: { columns: [id, title], filter: "or=(public.is.true,owner_id.eq.{sub})" }
//!   author:
//!     books:
//!       read: {}
//!       insert: { filter: "owner_id=eq.{sub}" }
//!       update: { columns: [title, price], filter: "owner_id=eq.{sub}" }
//!       delete: { filter: "owner_id=eq.{sub}" }
//! api_keys:
//!   # SHA-256 of the key, in hex → the role a request with `apikey: <key>` runs as
//!   "5e8848…": anon
//! ```
//!
//! Unknown keys are errors naming their path; every role's relations, columns and filters are
//! checked against the database's schema at load. At start-up a bad file refuses the start;
//! later it is reloaded when it changes (polled, `watch.rs`) and on SIGUSR1, and a reload
//! that fails keeps the previous file and logs why. The grants themselves are the dialect's
//! ([`dialect::RoleGrants`]); this file owns the format, loading and the per-role schema
//! caches (a relation the role has no grant on is not in its cache, so it answers like a
//! missing one).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use dialect::{
    Access, ApiError, ErrorCode, Exposure, Grant, Privilege, RelationGrants, RoleFilters,
    RoleGrants, RowFilter, SchemaCache,
};
use parking_lot::Mutex;
use serde::Deserialize;

use crate::auth::Principal;
use crate::database::authorizer::{RoleRules, as_role};
use crate::database::{OpenOptions, open};

/// The largest permissions file read.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    roles: BTreeMap<String, BTreeMap<String, RelationSpec>>,
    #[serde(default)]
    api_keys: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelationSpec {
    read: Option<GrantSpec>,
    insert: Option<GrantSpec>,
    update: Option<GrantSpec>,
    delete: Option<GrantSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantSpec {
    columns: Option<Vec<String>>,
    filter: Option<String>,
}

/// One role's view of one version of the schema: its schema cache (without what it may not
/// see), its row filters built against it (requests only bind their claims), and its grants
/// as the authorizer enforces them.
#[derive(Debug, Clone)]
pub struct RoleSchema {
    pub cache: Arc<SchemaCache>,
    pub filters: Arc<RoleFilters>,
    pub rules: Arc<RoleRules>,
}

/// A loaded, checked permissions file.
#[derive(Debug, Default)]
pub struct Permissions {
    roles: HashMap<String, Arc<RoleGrants>>,
    /// SHA-256 of a key (lower-case hex) → role.
    api_keys: HashMap<String, String>,
    /// Each role's schema cache and authorizer rules, for the schema version they were made
    /// from.
    views: Mutex<HashMap<String, RoleSchema>>,
}

impl Permissions {
    /// Parses `text` (the file at `origin`, for messages) and checks it against `cache`.
    pub fn parse(text: &str, cache: &SchemaCache) -> Result<Self, String> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let spec: FileSpec = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            if path == "." || inner.contains(&path) {
                inner
            } else {
                format!("{path}: {inner}")
            }
        })?;
        let mut roles = HashMap::new();
        for (role, relations) in spec.roles {
            let mut grants = RoleGrants::default();
            for (name, r) in relations {
                let mut rg = RelationGrants::default();
                for (p, g) in [
                    (Privilege::Read, r.read),
                    (Privilege::Insert, r.insert),
                    (Privilege::Update, r.update),
                    (Privilege::Delete, r.delete),
                ] {
                    let Some(g) = g else { continue };
                    let filter = g
                        .filter
                        .as_deref()
                        .map(RowFilter::parse)
                        .transpose()
                        .map_err(|e| format!("roles.{role}.{name}.{}.filter: {e}", p.name()))?;
                    rg.set(
                        p,
                        Grant {
                            columns: g.columns.map(|c| c.into_iter().collect::<HashSet<_>>()),
                            filter,
                        },
                    );
                }
                grants.relations.insert(name, rg);
            }
            grants.validate(cache, &format!("roles.{role}"))?;
            roles.insert(role, Arc::new(grants));
        }
        let mut api_keys = HashMap::new();
        for (hash, role) in spec.api_keys {
            let hex = hash.to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "api_keys.{hash}: a key is given as the hex SHA-256 of the key (64 hex digits)"
                ));
            }
            if !roles.contains_key(&role) {
                return Err(format!(
                    "api_keys.{hash}: the role \"{role}\" is not under roles"
                ));
            }
            api_keys.insert(hex, role);
        }
        Ok(Permissions {
            roles,
            api_keys,
            views: Mutex::default(),
        })
    }

    /// The role an `apikey` header's value stands for, if the file lists its hash.
    pub fn api_key_role(&self, key: &[u8]) -> Option<&str> {
        if self.api_keys.is_empty() {
            return None;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
        let mut hex = String::with_capacity(64);
        for b in digest.as_ref() {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        self.api_keys.get(&hex).map(String::as_str)
    }

    /// Whether any API key is configured.
    pub fn has_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// The grants of `principal`'s role: 401 22023 for a role the file does not name (as
    /// PostgREST answers a role the database lacks); a request without a role sees nothing.
    pub fn role_of(&self, principal: &Principal) -> Result<Arc<RoleGrants>, ApiError> {
        match &principal.role {
            None => Ok(Arc::new(RoleGrants::default())),
            Some(role) => self.roles.get(role).cloned().ok_or_else(|| {
                ApiError::new(
                    401,
                    ErrorCode::InvalidParameterValue,
                    format!("role \"{role}\" does not exist"),
                )
            }),
        }
    }

    /// `cache` as `role` sees it (made once per role and schema version).
    pub fn view(&self, role: &str, grants: &RoleGrants, cache: &SchemaCache) -> RoleSchema {
        let mut views = self.views.lock();
        if let Some(v) = views.get(role)
            && v.cache.version == cache.version
        {
            return v.clone();
        }
        let v = RoleSchema {
            cache: Arc::new(cache.restricted(&|n| grants.visible(n))),
            filters: Arc::new(grants.filters(cache)),
            rules: Arc::new(RoleRules::new(grants, cache)),
        };
        views.insert(role.to_string(), v.clone());
        v
    }
}

/// One request's role: its grants, claims and schema cache view.
pub struct RoleView {
    pub role: String,
    pub grants: Arc<RoleGrants>,
    pub claims: serde_json::Value,
    /// The caller runs as the anonymous role (see [`Principal::anonymous`]).
    pub anonymous: bool,
    permissions: Arc<Permissions>,
}

/// Runs `f` against `cache` as `role` sees it (`None`: unrestricted, the cache itself), with
/// SQLite's authorizer enforcing the role's grants on every statement `f` prepares (see
/// [`as_role`]).
pub fn run_as<T>(
    role: Option<&RoleView>,
    cache: &SchemaCache,
    f: impl FnOnce(&SchemaCache, Option<&Access<'_>>) -> T,
) -> T {
    match role {
        None => f(cache, None),
        Some(r) => {
            let view = r.schema(cache);
            let access = Access {
                filters: Some(&view.filters),
                ..r.access()
            };
            as_role(Some(&view.rules), || f(&view.cache, Some(&access)))
        }
    }
}

impl RoleView {
    /// An error as this role may see it: worded against its view of the schema, and a
    /// refusal (42501) is 401 for the anonymous role, 403 for any other, as PostgREST answers
    /// (the authorizer's refusals come without a status of their own).
    pub fn for_client(
        &self,
        e: ApiError,
        cache: &SchemaCache,
        relation: &str,
        mutation: Option<dialect::Mutation>,
    ) -> ApiError {
        let mut e = e.for_client(&self.cache(cache), relation, mutation);
        if e.code == ErrorCode::InsufficientPrivilege {
            e.status = if self.anonymous { 401 } else { 403 };
        }
        e
    }

    /// The permissions file load this role comes from.
    pub fn permissions(&self) -> &Arc<Permissions> {
        &self.permissions
    }

    /// `cache` as this role sees it.
    pub fn cache(&self, cache: &SchemaCache) -> Arc<SchemaCache> {
        self.schema(cache).cache
    }

    /// `cache` as this role sees it, and its rules for the authorizer.
    pub fn schema(&self, cache: &SchemaCache) -> RoleSchema {
        self.permissions.view(&self.role, &self.grants, cache)
    }

    /// The role's grants and claims (its row filters built when used: planning goes through
    /// [`run_as`], which has them built once).
    pub fn access(&self) -> Access<'_> {
        Access {
            grants: &self.grants,
            claims: &self.claims,
            anonymous: self.anonymous,
            filters: None,
        }
    }
}

/// The file, its current contents and what it looked like when last loaded.
pub struct PermissionsRegistry {
    path: PathBuf,
    dsn: String,
    current: ArcSwap<Permissions>,
    seen: Mutex<Option<crate::config_file::Stamp>>,
    reloading: Mutex<()>,
}

impl PermissionsRegistry {
    /// Loads and checks `path` against the database `dsn`; an error refuses the start.
    pub fn open(path: PathBuf, dsn: &str) -> anyhow::Result<Self> {
        let r = PermissionsRegistry {
            path,
            dsn: dsn.to_string(),
            current: ArcSwap::from_pointee(Permissions::default()),
            seen: Mutex::new(None),
            reloading: Mutex::new(()),
        };
        let n = r.reload()?;
        tracing::info!(roles = n, file = %r.path.display(), "permissions loaded");
        Ok(r)
    }

    /// The permissions now.
    pub fn current(&self) -> Arc<Permissions> {
        self.current.load_full()
    }

    /// Reads the file again; on success it replaces the previous one. Answers how many roles
    /// it names.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let _one = self.reloading.lock();
        *self.seen.lock() = crate::config_file::stamp(&self.path);
        let p = load(&self.path, &self.dsn)
            .map_err(|e| anyhow::anyhow!("permissions file {}: {e}", self.path.display()))?;
        let n = p.roles.len();
        self.current.store(Arc::new(p));
        Ok(n)
    }

    /// [`PermissionsRegistry::reload`], logging the outcome.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(n) => tracing::info!(roles = n, why, "permissions reloaded"),
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                why,
                "permissions not reloaded; the previous file stays"
            ),
        }
    }

    /// The role a request runs as: its grants and its view of the schema.
    pub fn role_view(&self, principal: &Principal) -> Result<RoleView, ApiError> {
        let permissions = self.current();
        let grants = permissions.role_of(principal)?;
        Ok(RoleView {
            role: principal.role.clone().unwrap_or_default(),
            grants,
            claims: principal.claims.clone(),
            anonymous: principal.anonymous,
            permissions,
        })
    }
}

impl crate::watch::Watched for PermissionsRegistry {
    fn what(&self) -> &'static str {
        "permissions"
    }

    fn reload_if_changed(&self) {
        if *self.seen.lock() != crate::config_file::stamp(&self.path) {
            self.reload_logged("the file changed");
        }
    }
}

fn load(path: &Path, dsn: &str) -> Result<Permissions, String> {
    let bytes = crate::config_file::read(path, MAX_FILE_BYTES).map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
    // An empty file grants nothing to anyone: far more likely a file caught while being
    // written than what was meant.
    if text.trim().is_empty() {
        return Err("the file is empty".into());
    }
    let conn = open(dsn, &OpenOptions::reader())
        .map_err(|e| format!("opening the database to check the file: {e}"))?;
    let cache = SchemaCache::load(&conn, &Exposure::All)
        .map_err(|e| format!("reading the database's schema: {e}"))?;
    Permissions::parse(&text, &cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> SchemaCache {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, owner TEXT)")
            .unwrap();
        SchemaCache::load(&c, &Exposure::All).unwrap()
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let cache = cache();
        let bad = |text: &str| Permissions::parse(text, &cache).unwrap_err();
        let e = bad("roles:\n  a:\n    books:\n      read: { colums: [id] }\n");
        assert!(
            e.contains("roles.a.books.read") && e.contains("colums"),
            "{e}"
        );
        let e = bad("rolez: {}\n");
        assert!(e.contains("rolez"), "{e}");
        let e = bad("roles:\n  a:\n    nope:\n      read: {}\n");
        assert!(e.contains("roles.a.nope") && e.contains("\"nope\""), "{e}");
        let e = bad("roles:\n  a:\n    books:\n      read: { columns: [id, secret] }\n");
        assert!(
            e.contains("roles.a.books.read.columns") && e.contains("secret"),
            "{e}"
        );
        let e = bad("roles:\n  a:\n    books:\n      read: { filter: \"secret=eq.{sub}\" }\n");
        assert!(
            e.contains("roles.a.books.read.filter") && e.contains("secret"),
            "{e}"
        );
        let e = bad("roles:\n  a:\n    books:\n      read: { filter: \"title=like.{sub}\" }\n");
        assert!(e.contains("roles.a.books.read.filter"), "{e}");
        let e = bad("roles: {}\napi_keys:\n  abc: a\n");
        assert!(e.contains("api_keys.abc"), "{e}");
    }

    #[test]
    fn api_keys_are_matched_by_their_hash() {
        let cache = cache();
        // sha256("secret-key")
        let text = "roles:\n  anon:\n    books:\n      read: {}\napi_keys:\n  \"1A4A1D1FEB9F8C7E5C0E31D3F6B8BC6EA1E1D1F8FDA2C3C8A1D9B9D0B0D3F4E2\": anon\n";
        // A made-up hash matches nothing; the real one of the key matches.
        let p = Permissions::parse(text, &cache).unwrap();
        assert_eq!(p.api_key_role(b"secret-key"), None);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"secret-key");
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        let text = format!(
            "roles:\n  anon:\n    books:\n      read: {{}}\napi_keys:\n  \"{hex}\": anon\n"
        );
        let p = Permissions::parse(&text, &cache).unwrap();
        assert_eq!(p.api_key_role(b"secret-key"), Some("anon"));
        assert_eq!(p.api_key_role(b"other"), None);
    }

    /// A request's statements are authorized as its role whatever its plan says: a plan made
    /// for a role with the grant, run on connections whose current role lacks it, reads and
    /// writes nothing — also when the very same statement was prepared (and cached) for the
    /// role that had the grant.
    #[test]
    fn the_authorizer_refuses_what_the_role_may_not_whatever_the_plan_says() {
        use crate::database::authorizer::{Authorizer, Policy, as_role};
        use dialect::{
            Limits, Method, ReadCall, ReadOutcome, Request, RequestHeaderValues, WriteCall,
            WriteOptions,
        };

        let dir = tempfile::tempdir().unwrap();
        let dsn = dir.path().join("a.db").to_str().unwrap().to_string();
        let mut writer = open(&dsn, &OpenOptions::writer()).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, secret TEXT);
                 INSERT INTO books VALUES (1, 'a', 'top secret'), (2, 'b', 'top secret');",
            )
            .unwrap();
        let counter = dialect::register_insert_counter(&writer).unwrap();
        let cache = SchemaCache::load(&writer, &Exposure::All).unwrap();
        let _w = Authorizer::install(&mut writer, Policy::Write).unwrap();
        let mut reader = open(&dsn, &OpenOptions::reader()).unwrap();
        let _r = Authorizer::install(&mut reader, Policy::Read).unwrap();
        let p = Permissions::parse(
            "roles:
  admin:
    books: { read: {}, delete: {} }
  reader:
    books:
      read: { columns: [id, title] }
",
            &cache,
        )
        .unwrap();
        let admin_grants = p.roles["admin"].clone();
        let admin = p.view("admin", &admin_grants, &cache);
        let reader_role = p.view("reader", &p.roles["reader"], &cache);
        let claims = serde_json::json!({"role": "admin"});
        let access = Access {
            grants: &admin_grants,
            claims: &claims,
            anonymous: false,
            filters: None,
        };
        let request = |method, query| Request {
            method,
            relation: "books",
            raw_segment: "books",
            query,
            headers: RequestHeaderValues::default(),
        };

        // Planned for admin, run on a read connection as each role.
        let (call, _) = ReadCall::prepare(&request(Method::Get, "select=id,secret")).unwrap();
        let read_as = |rules| {
            as_role(Some(rules), || {
                call.run(
                    &reader,
                    &admin.cache,
                    Limits::default(),
                    1 << 20,
                    None,
                    Some(&access),
                )
            })
        };
        match read_as(&admin.rules).unwrap() {
            ReadOutcome::Whole(out) => {
                assert!(String::from_utf8_lossy(&out.body).contains("top secret"))
            }
            other => panic!("{other:?}"),
        }
        match read_as(&reader_role.rules) {
            Err(e) => assert_eq!((e.status, e.code.as_str()), (403, "42501"), "{e:?}"),
            Ok(ReadOutcome::Whole(out)) => {
                panic!("the reader read: {}", String::from_utf8_lossy(&out.body))
            }
            Ok(other) => panic!("{other:?}"),
        }
        // What the reader may read, it reads.
        let (own, _) = ReadCall::prepare(&request(Method::Get, "select=id,title")).unwrap();
        let reader_access = Access {
            grants: &p.roles["reader"],
            claims: &claims,
            anonymous: false,
            filters: None,
        };
        let out = as_role(Some(&reader_role.rules), || {
            own.run(
                &reader,
                &reader_role.cache,
                Limits::default(),
                1 << 20,
                None,
                Some(&reader_access),
            )
        });
        assert!(matches!(out, Ok(ReadOutcome::Whole(o)) if o.rows == 2));

        // A delete planned for admin, run on the writer as the reader: nothing is deleted.
        let delete = WriteCall::prepare(&request(Method::Delete, "id=eq.1")).unwrap();
        let delete_as = |rules| {
            as_role(Some(rules), || {
                delete.run(
                    &writer,
                    &admin.cache,
                    &WriteOptions::default(),
                    &counter,
                    Some(&access),
                )
            })
        };
        let e = delete_as(&reader_role.rules).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (403, "42501"), "{e:?}");
        let count = |c: &rusqlite::Connection| -> i64 {
            c.query_row("SELECT count(*) FROM books", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&writer), 2);
        delete_as(&admin.rules).unwrap();
        assert_eq!(count(&writer), 1);
    }
}
