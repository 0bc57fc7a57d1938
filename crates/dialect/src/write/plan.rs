//! The write planner: resolves a POST, PATCH, PUT or DELETE against the schema cache into a
//! [`WritePlan`] — the one statement to run, what it returns, and how the response is made.
//!
//! Every name is checked first: the relation (PGRST205), the body's keys and `columns`
//! (PGRST204), `on_conflict` (PGRST204, then 42P10 unless it names a primary key or UNIQUE
//! index exactly), `select`/`order` through the read planner. PUT follows PostgREST's rules:
//! filters must be exactly the primary key with `eq` (405 PGRST105), no limit/offset (400
//! PGRST114), and the body must carry the same key (400 PGRST115). With safe updates on, a
//! PATCH or DELETE without any filter is refused (400 21000) before any SQL runs.
//!
//! Representations are re-read by key after the write (see [`crate::write::exec`]): the
//! statement returns the rowid (or the primary key of a `WITHOUT ROWID` table), and the
//! request's `select`/`order`/`limit` shape the re-read. Views written through INSTEAD OF
//! triggers have no key: their statement returns the selected fields directly.

use std::collections::HashMap;
use std::sync::Arc;

use crate::access::{Access, Grant, Privilege};
use crate::error::{ApiError, ErrorCode};
use crate::headers::{MediaType, Preferences, RequestHeaders, Resolution, ReturnPref};
use crate::query::{CmpOp, Comparison, Operation, QueryParams};
use crate::read::plan::{Condition, Limits, ReadNode, plan_read_as, resolve_relation};
use crate::read::sql;
use crate::schema_cache::{Column, RelKind, Relation, RowKey, SchemaCache};
use crate::sql::Sql;
use crate::write::body::{ColumnPaths, Layout, Payload};
use crate::write::sql::{self as dml, OnConflict, Returning};

/// The four writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// POST: insert, or upsert with `Prefer: resolution=…`.
    Insert,
    /// PATCH.
    Update,
    /// PUT: insert or replace the one row the filters name.
    Upsert,
    /// DELETE.
    Delete,
}

/// Everything a write takes from the request, parsed but not yet checked against the schema.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub mutation: Mutation,
    pub relation: String,
    pub query: QueryParams,
    pub media: MediaType,
    pub prefer: Preferences,
    /// The body (none for DELETE).
    pub payload: Option<Payload>,
}

/// Server settings that shape writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Refuse PATCH and DELETE without any filter (pg-safeupdate's rule).
    pub safe_update: bool,
    /// The largest representation (`return=representation`) a write may build, in bytes: it is
    /// built in memory, inside the write's transaction; past it the write is refused (400
    /// 54000) and rolled back.
    pub max_representation_bytes: usize,
}

/// The default of [`WriteOptions::max_representation_bytes`].
pub const MAX_REPRESENTATION_BYTES: usize = 16 << 20;

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            safe_update: true,
            max_representation_bytes: MAX_REPRESENTATION_BYTES,
        }
    }
}

/// How the representation (`return=representation`) is produced.
#[derive(Debug, Clone)]
pub enum Representation {
    /// Re-read the returned keys through this read node (its conditions are not used).
    Keyed(ReadNode),
    /// The statement returns the node's fields itself (views, where there is no key).
    Returned(ReadNode),
}

impl Representation {
    pub fn node(&self) -> &ReadNode {
        match self {
            Representation::Keyed(n) | Representation::Returned(n) => n,
        }
    }
}

/// A planned write.
#[derive(Debug, Clone)]
pub struct WritePlan {
    pub mutation: Mutation,
    pub relation: Arc<Relation>,
    /// The statement, `?1` being the body; `None` when there is nothing to write (an empty
    /// array, a PATCH with `{}`).
    pub statement: Option<Sql>,
    /// Instead of a statement: run `statement` this many times (objects without keys insert
    /// one row of defaults each).
    pub repeat: usize,
    /// The statement has no row loop to check the write's budget in (`DEFAULT VALUES`): the
    /// budget is checked before each run instead.
    pub budget_each_run: bool,
    /// The body parameter, when it differs from the request's payload (PUT keeps only the
    /// object that matches the URL).
    pub body: Option<String>,
    /// What the statement returns (empty for virtual tables, which cannot RETURN).
    pub returning: Returning,
    /// False when the relation cannot RETURN (virtual tables): rows are counted with
    /// `changes()`.
    pub uses_returning: bool,
    /// DELETE with a representation: read the rows (with their keys) before deleting them.
    pub pre_read: Option<Sql>,
    pub representation: Option<Representation>,
    pub media: MediaType,
    pub prefer: Preferences,
    /// Upserts whose status tells inserted (201) from updated (200) rows.
    pub counts_inserts: bool,
    /// The resolution preference applies (a conflict target exists).
    pub resolution_applied: bool,
    /// Primary key columns for `Location` (POST with `return=headers-only`).
    pub location_columns: Vec<String>,
    /// The largest representation this write may build ([`WriteOptions`]).
    pub max_representation_bytes: usize,
}

fn unknown_column(rel: &str, col: &str) -> ApiError {
    ApiError::new(
        400,
        ErrorCode::UnknownPayloadColumn,
        format!("Could not find the '{col}' column of '{rel}' in the schema cache"),
    )
}

fn put_filters_error() -> ApiError {
    ApiError::new(
        405,
        ErrorCode::InvalidPut,
        "Filters must include all and only primary key columns with 'eq' operators",
    )
}

fn put_mismatch() -> ApiError {
    ApiError::new(
        400,
        ErrorCode::PutKeyMismatch,
        "Payload values do not match URL in primary key column(s)",
    )
}

fn not_writable(rel: &Relation, verb: &str, trigger: &str) -> ApiError {
    ApiError::new(
        405,
        ErrorCode::ObjectNotInPrerequisiteState,
        format!("cannot {verb} view \"{}\"", rel.name),
    )
    .with_details(format!(
        "Views are writable only through an INSTEAD OF {trigger} trigger."
    ))
}

/// Resolves `names` to columns of `rel` (each once, in order).
fn resolve_columns<'a>(rel: &'a Relation, names: &[String]) -> Result<Vec<&'a Column>, ApiError> {
    let mut out: Vec<&Column> = Vec::with_capacity(names.len());
    for n in names {
        let col = rel.column(n).ok_or_else(|| unknown_column(&rel.name, n))?;
        if !out.iter().any(|c| c.name == col.name) {
            out.push(col);
        }
    }
    Ok(out)
}

/// Checks that `relation` is exposed and has every column in `columns`: what a caller does with
/// a CSV body's header before the rows are built (PGRST205, PGRST204).
pub fn check_names(
    cache: &SchemaCache,
    relation: &str,
    columns: &[String],
) -> Result<(), ApiError> {
    let rel = resolve_relation(cache, relation)?;
    resolve_columns(rel, columns).map(|_| ())
}

/// The conflict target of an upsert: `on_conflict` (checked) or the primary key.
fn conflict_target(
    rel: &Relation,
    on_conflict: Option<&Vec<String>>,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(names) = on_conflict else {
        return Ok((!rel.primary_key.is_empty()).then(|| rel.primary_key.clone()));
    };
    let cols = resolve_columns(rel, names)?;
    let mut wanted: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    wanted.sort_unstable();
    let matches = rel.unique_keys.iter().any(|k| {
        let mut k: Vec<&str> = k.iter().map(String::as_str).collect();
        k.sort_unstable();
        k == wanted
    });
    if !matches {
        return Err(ApiError::new(
            400,
            ErrorCode::InvalidColumnReference,
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
        )
        .with_hint(format!(
            "'on_conflict' must name the columns of the primary key or of a UNIQUE index of '{}'",
            rel.name
        )));
    }
    Ok(Some(cols.iter().map(|c| c.name.clone()).collect()))
}

/// PUT: the URL must filter every primary key column with `eq` and nothing else; returns the
/// key values by column.
fn put_key(rel: &Relation, query: &QueryParams) -> Result<Vec<(String, String)>, ApiError> {
    if rel.primary_key.is_empty() || !query.logic.is_empty() {
        return Err(put_filters_error());
    }
    let mut key = Vec::new();
    for (path, f) in &query.filters {
        let value = match (
            &f.operation,
            f.negated,
            path.is_empty(),
            f.field.path.is_empty(),
        ) {
            (
                Operation::Compare {
                    op: CmpOp::Compare(Comparison::Eq),
                    value,
                },
                false,
                true,
                true,
            ) => value,
            _ => return Err(put_filters_error()),
        };
        if !rel.primary_key.contains(&f.field.name)
            || key
                .iter()
                .any(|(c, _): &(String, String)| *c == f.field.name)
        {
            return Err(put_filters_error());
        }
        key.push((f.field.name.clone(), value.clone()));
    }
    if key.len() != rel.primary_key.len() {
        return Err(put_filters_error());
    }
    Ok(key)
}

/// Whether a body value equals a URL value, leniently typed as PostgreSQL would cast both to
/// the column type (`4` matches `"4"`, `true` matches `1`).
fn same_key_value(body: &serde_json::Value, url: &str) -> bool {
    match body {
        serde_json::Value::String(s) => s == url,
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                url.trim().parse::<i64>() == Ok(i)
            } else {
                n.as_f64()
                    .is_some_and(|f| url.trim().parse::<f64>() == Ok(f))
            }
        }
        serde_json::Value::Bool(b) => matches!(
            (b, url.to_ascii_lowercase().as_str()),
            (true, "true" | "t" | "1") | (false, "false" | "f" | "0")
        ),
        serde_json::Value::Null => false,
        _ => false,
    }
}

/// PUT's body: the first row whose primary key equals the URL's (PGRST115 when none), as one
/// object; its JSON and keys.
fn put_body(
    payload: &Payload,
    key: &[(String, String)],
) -> Result<(String, Vec<String>), ApiError> {
    type Object = serde_json::Map<String, serde_json::Value>;
    fn matches<'a>(
        key: &[(String, String)],
        get: impl Fn(&str) -> Option<&'a serde_json::Value>,
    ) -> bool {
        key.iter()
            .all(|(col, url)| get(col).is_some_and(|v| same_key_value(v, url)))
    }
    let row: Option<Object> = match payload.layout {
        Layout::Objects => {
            let rows: Vec<Object> =
                serde_json::from_str(&payload.json).map_err(|_| put_mismatch())?;
            rows.into_iter().find(|row| matches(key, |c| row.get(c)))
        }
        Layout::Arrays => {
            // A repeated header name means its last position, as in an object.
            let at: HashMap<&str, usize> = payload
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect();
            let rows: Vec<Vec<serde_json::Value>> =
                serde_json::from_str(&payload.json).map_err(|_| put_mismatch())?;
            rows.into_iter()
                .find(|row| matches(key, |c| at.get(c).and_then(|&i| row.get(i))))
                .map(|row| payload.keys.iter().cloned().zip(row).collect())
        }
    };
    let row = row.ok_or_else(put_mismatch)?;
    let keys = row.keys().cloned().collect();
    let one = serde_json::Value::Array(vec![serde_json::Value::Object(row)]);
    Ok((one.to_string(), keys))
}

/// Plans `req` against `cache`.
pub fn plan_write(
    cache: &SchemaCache,
    req: &WriteRequest,
    opts: &WriteOptions,
) -> Result<WritePlan, ApiError> {
    plan_write_as(cache, req, opts, None)
}

/// What a role's grants add to a write besides the rows it may touch (which join the read
/// plan's conditions): the check its written rows must pass (WITH CHECK), and the check an
/// upsert's existing row must pass.
#[derive(Default)]
struct Guards {
    check: Vec<Condition>,
    conflict: Vec<Condition>,
}

/// 42501 unless `grant` covers every one of `cols`.
fn check_written(
    access: &Access<'_>,
    rel: &Relation,
    grant: &Grant,
    cols: &[&Column],
) -> Result<(), ApiError> {
    match cols.iter().find(|c| !grant.allows_column(&c.name)) {
        Some(_) => Err(access.denied(rel)),
        None => Ok(()),
    }
}

/// The privileges a write needs on its relation: an insert (an upsert that merges also
/// updates), an update, or a delete.
fn privileges(req: &WriteRequest) -> &'static [Privilege] {
    match req.mutation {
        Mutation::Insert if req.prefer.resolution == Some(Resolution::MergeDuplicates) => {
            &[Privilege::Insert, Privilege::Update]
        }
        Mutation::Insert => &[Privilege::Insert],
        Mutation::Upsert => &[Privilege::Insert, Privilege::Update],
        Mutation::Update => &[Privilege::Update],
        Mutation::Delete => &[Privilege::Delete],
    }
}

/// [`plan_write`] for a role ([`Access`]; `None` is unrestricted): 42501 for a privilege or
/// a column it lacks; its row filters bound into the statement (see `access.rs`).
pub fn plan_write_as(
    cache: &SchemaCache,
    req: &WriteRequest,
    opts: &WriteOptions,
    access: Option<&Access<'_>>,
) -> Result<WritePlan, ApiError> {
    let rel = resolve_relation(cache, &req.relation)?.clone();
    let mut grants: Vec<&Grant> = Vec::new();
    if let Some(access) = access {
        for p in privileges(req) {
            grants.push(access.grant(&rel, *p)?);
        }
    }
    match req.mutation {
        Mutation::Insert if !rel.insertable => {
            return Err(not_writable(&rel, "insert into", "INSERT"));
        }
        Mutation::Update if !rel.updatable => return Err(not_writable(&rel, "update", "UPDATE")),
        Mutation::Delete if !rel.deletable => {
            return Err(not_writable(&rel, "delete from", "DELETE"));
        }
        Mutation::Upsert if !(rel.insertable && rel.updatable) => {
            return Err(not_writable(
                &rel,
                "upsert into",
                "INSERT and an INSTEAD OF UPDATE",
            ));
        }
        _ => {}
    }
    if req.mutation == Mutation::Upsert
        && req
            .query
            .ranges
            .get(&Vec::new())
            .is_some_and(|r| r.limit.is_some() || r.offset.is_some())
    {
        return Err(ApiError::new(
            400,
            ErrorCode::PutLimitOffset,
            "limit/offset querystring parameters are not allowed for PUT",
        ));
    }
    // The read planner checks select, filters and order; its conditions drive PATCH/DELETE.
    let headers = RequestHeaders {
        media: req.media,
        prefer: Preferences::default(),
        range: None,
        profile_sent: false,
    };
    let mut read = plan_read_as(
        cache,
        &req.relation,
        &req.query,
        &headers,
        Limits::default(),
        access,
        true,
    )?
    .root;
    let representation_wanted = req.prefer.return_ == Some(ReturnPref::Representation);
    let location_wanted = req.mutation == Mutation::Insert
        && req.prefer.return_ == Some(ReturnPref::HeadersOnly)
        && !rel.primary_key.is_empty();
    let mut guards = Guards::default();
    if let Some(access) = access {
        let read_grant = access.get(&rel.name, Privilege::Read);
        if representation_wanted && read_grant.is_none() {
            return Err(access.denied(&rel));
        }
        // `Location` shows the new row's key: as PostgreSQL's RETURNING, it needs the read
        // grant on the key's columns (and the row must pass the read filter, below).
        if location_wanted
            && !read_grant.is_some_and(|g| rel.primary_key.iter().all(|c| g.allows_column(c)))
        {
            return Err(access.denied(&rel));
        }
        // The read filter on its own, built only where a guard below needs it (the read
        // plan above already holds it among its conditions): an upsert's conflicting row,
        // and written rows the answer shows.
        let touching = matches!(req.mutation, Mutation::Update | Mutation::Delete);
        let shown = (representation_wanted || location_wanted) && req.mutation != Mutation::Delete;
        let read_filter = if shown || (!touching && privileges(req).contains(&Privilege::Update)) {
            access.row_filter(&rel, Privilege::Read)?
        } else {
            None
        };
        for p in privileges(req) {
            let filter = access.row_filter(&rel, *p)?;
            match p {
                // The rows a PATCH or DELETE touches: what the role reads (the read plan's
                // conditions hold its read filter) and what this privilege allows.
                Privilege::Update | Privilege::Delete if touching => {
                    read.conditions.extend(filter.clone());
                    if *p == Privilege::Update {
                        guards.check.extend(filter);
                    }
                }
                // An upsert's existing row: read and updated only if the role could.
                Privilege::Update => {
                    guards.conflict.extend(read_filter.clone());
                    guards.conflict.extend(filter.clone());
                    guards.check.extend(filter);
                }
                _ => guards.check.extend(filter),
            }
        }
        // A representation (or a Location) shows the written rows: they must be rows the
        // role reads.
        if shown {
            guards.check.extend(read_filter);
        }
    }
    let conditions: Vec<Condition> = match req.mutation {
        Mutation::Update | Mutation::Delete => read.conditions.clone(),
        _ => Vec::new(),
    };
    if opts.safe_update
        && matches!(req.mutation, Mutation::Update | Mutation::Delete)
        && conditions.is_empty()
    {
        let verb = if req.mutation == Mutation::Update {
            "UPDATE"
        } else {
            "DELETE"
        };
        return Err(ApiError::new(400, ErrorCode::CardinalityViolation, format!("{verb} requires a WHERE clause"))
            .with_hint(
                "Add a filter to the request (e.g. ?id=gte.0 to include every row), or start the server with --safe-update=false",
            ));
    }

    let virtual_table = rel.kind == RelKind::Virtual;
    if virtual_table && !(guards.check.is_empty() && guards.conflict.is_empty()) {
        return Err(ApiError::not_implemented(format!(
            "'{}' is a virtual table: SQLite cannot check the rows a write leaves in it, so a role with a row filter cannot write to it",
            rel.name
        )));
    }
    if virtual_table && (representation_wanted || location_wanted) {
        return Err(ApiError::not_implemented(format!(
            "'{}' is a virtual table: SQLite cannot return the rows a write touched in it, so only return=minimal is available",
            rel.name
        )));
    }
    let key = rel.row_key();
    let mut representation = None;
    let mut pre_read = None;
    let mut returning = Returning::default();
    if representation_wanted {
        let mut node = read.clone();
        node.conditions = Vec::new();
        if key == RowKey::None {
            // RETURNING gives the written values only: nothing to follow a relationship from.
            if !node.children.is_empty() {
                return Err(ApiError::not_implemented(format!(
                    "'{}' has no key to read the written rows again by, so its representation cannot embed resources",
                    rel.name
                )));
            }
            returning.fields = node.fields.clone();
            representation = Some(Representation::Returned(node));
        } else {
            returning.key = Some(key.clone());
            if req.mutation == Mutation::Delete {
                pre_read = Some(sql::select_with_key(&read, &key));
            }
            representation = Some(Representation::Keyed(node));
        }
    } else if key != RowKey::None && !virtual_table {
        returning.key = Some(key.clone());
    } else {
        returning.count_only = !virtual_table;
    }
    if location_wanted {
        returning.columns = rel.primary_key.clone();
    }
    if virtual_table {
        returning = Returning::default();
    }
    returning.check = guards.check;
    // Written columns: covered by every privilege the write needs.
    let check_cols = |cols: &[&Column]| -> Result<(), ApiError> {
        if let Some(access) = access {
            for g in &grants {
                check_written(access, &rel, g, cols)?;
            }
        }
        Ok(())
    };

    let missing_default = req.prefer.missing_default();
    let empty = Payload::empty();
    let payload = req.payload.as_ref().unwrap_or(&empty);
    let mut counts_inserts = false;
    let mut resolution_applied = false;
    let mut body = None;
    let mut repeat = 1;
    let mut budget_each_run = false;
    let statement = match req.mutation {
        Mutation::Insert => {
            let names = req.query.columns.as_ref().unwrap_or(&payload.keys);
            let cols = resolve_columns(&rel, names)?;
            check_cols(&cols)?;
            let conflict = match req.prefer.resolution {
                None => OnConflict::Fail,
                Some(res) => match conflict_target(&rel, req.query.on_conflict.as_ref())? {
                    None => OnConflict::Fail,
                    Some(target) => {
                        resolution_applied = true;
                        match res {
                            Resolution::MergeDuplicates => {
                                counts_inserts = true;
                                OnConflict::Merge(target)
                            }
                            Resolution::IgnoreDuplicates => OnConflict::Ignore(target),
                        }
                    }
                },
            };
            if payload.rows == 0 {
                None
            } else if cols.is_empty() {
                // Objects without keys: one row of defaults each.
                repeat = payload.rows;
                budget_each_run = true;
                counts_inserts = false;
                Some(dml::insert_defaults(&rel, &returning))
            } else {
                Some(dml::insert(
                    &rel,
                    &cols,
                    &payload.paths(),
                    missing_default,
                    &conflict,
                    &guards.conflict,
                    counts_inserts,
                    &returning,
                ))
            }
        }
        Mutation::Upsert => {
            let key = put_key(&rel, &req.query)?;
            let (json, keys) = put_body(payload, &key)?;
            let cols = resolve_columns(&rel, &keys)?;
            check_cols(&cols)?;
            body = Some(json);
            counts_inserts = true;
            Some(dml::insert(
                &rel,
                &cols,
                &ColumnPaths::ByKey,
                false,
                &OnConflict::Merge(rel.primary_key.clone()),
                &guards.conflict,
                true,
                &returning,
            ))
        }
        Mutation::Update => {
            let names = req.query.columns.as_ref().unwrap_or(&payload.keys);
            let cols = resolve_columns(&rel, names)?;
            check_cols(&cols)?;
            if payload.rows == 0 || cols.is_empty() {
                None
            } else {
                Some(dml::update(
                    &rel,
                    &cols,
                    &payload.paths(),
                    missing_default,
                    &conditions,
                    &returning,
                ))
            }
        }
        Mutation::Delete => Some(dml::delete(&rel, &conditions, &returning)),
    };
    let rel_primary_key = rel.primary_key.clone();
    Ok(WritePlan {
        mutation: req.mutation,
        relation: rel,
        statement,
        repeat,
        budget_each_run,
        body,
        returning,
        uses_returning: !virtual_table,
        pre_read,
        representation,
        media: req.media,
        prefer: req.prefer.clone(),
        counts_inserts,
        resolution_applied,
        location_columns: if location_wanted {
            rel_primary_key
        } else {
            Vec::new()
        },
        max_representation_bytes: opts.max_representation_bytes,
    })
}
