//! Running a write plan on a connection, inside the caller's transaction (the writer's
//! savepoint): the statement, the checks that may undo it, the representation, and the
//! response PostgREST gives.
//!
//! The statement returns each touched row's key; the count of returned rows is the number of
//! affected rows. Then, in PostgREST's order: a singular response (`Accept:
//! application/vnd.pgrst.object+json`) needs exactly one row (406 PGRST116), `handling=strict`
//! with `max-affected=n` refuses more than n rows on PATCH/DELETE (400 PGRST124), PUT must
//! touch exactly one row (400 PGRST115). An error leaves the caller to roll the savepoint
//! back, so nothing of a refused write remains. The representation is read inside the same
//! savepoint: rows are re-read by key in the order the statement returned them (or by
//! `order=`), so `select` shapes them exactly as a GET would; DELETE reads its rows before
//! removing them. Every statement that scans rows checks the write's budget on each of them
//! (`pgrst_budget()`), and objects without keys check it before each `DEFAULT VALUES` insert.

use std::collections::HashSet;

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::error::{ApiError, ErrorCode};
use crate::functions::{BUDGET_CHECK_SQL, InsertCounter};
use crate::headers::{Applied, CountMethod, MediaType, PreferenceApplied, Resolution, ReturnPref};
use crate::read::plan::{ReadNode, distinct_exprs};
use crate::read::sql;
use crate::schema_cache::RowKey;
use crate::shape::{Shaper, Spill};
use crate::sql::Sql;
use crate::write::plan::{Mutation, Representation, WritePlan};

/// The outcome of a write, ready to become a response.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutput {
    pub status: u16,
    /// The representation; `None` means no body (and no `Content-Type`).
    pub body: Option<Vec<u8>>,
    pub content_range: Option<String>,
    pub location: Option<String>,
    pub preference_applied: PreferenceApplied,
    /// Rows the write touched.
    pub affected: usize,
    /// False when the write must be rolled back after answering (`Prefer: tx=rollback`).
    pub commit: bool,
}

fn owned(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// The rows one statement returned.
#[derive(Default)]
struct Returned {
    rows: Vec<Vec<Value>>,
    changes: usize,
}

fn run_statement(
    conn: &Connection,
    sql: &Sql,
    body: &str,
    uses_returning: bool,
    out: &mut Returned,
) -> Result<(), ApiError> {
    let mut stmt = crate::sql::prepare_cached(conn, &sql.text)?;
    sql.bind_to(&mut stmt, Some(body))?;
    if !uses_returning {
        out.changes += stmt.raw_execute()?;
        return Ok(());
    }
    let n = stmt.column_count();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(owned(row.get_ref(i)?));
        }
        out.rows.push(values);
    }
    out.changes += out.rows.len();
    Ok(())
}

/// A key's values as JSON (for re-reading by key, and as a set member).
fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(t) => t.clone().into(),
        Value::Blob(b) => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into(),
    }
}

fn key_json(key: &RowKey, values: &[Value]) -> serde_json::Value {
    match key {
        RowKey::Rowid(_) => values.first().map_or(serde_json::Value::Null, json_value),
        _ => serde_json::Value::Array(values.iter().map(json_value).collect()),
    }
}

/// Refuses a representation past its size limit.
struct Capped(usize);

impl Spill for Capped {
    #[inline]
    fn spill(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if out.len() <= self.0 {
            return Ok(());
        }
        Err(ApiError::new(
            400,
            ErrorCode::ProgramLimitExceeded,
            "The representation of the write is too large",
        )
        .with_details(format!(
            "It would exceed {} bytes; nothing was written.",
            self.0
        ))
        .with_hint("Ask for fewer rows or columns (select, limit), or for Prefer: return=minimal"))
    }
}

/// Shapes `rows` (values of `node`'s fields first) as the negotiated media type, within
/// `max` bytes.
fn shape<'a>(
    node: &ReadNode,
    media: MediaType,
    max: usize,
    rows: impl Iterator<Item = &'a [Value]>,
) -> Result<Vec<u8>, ApiError> {
    let shaper = Shaper::new(&node.fields, media);
    let mut cap = Capped(max);
    let mut body = Vec::with_capacity(256);
    shaper.begin(&mut body);
    let mut n = 0;
    for row in rows {
        shaper.row(&mut body, row, n, &mut cap)?;
        n += 1;
    }
    shaper.finish(&mut body, n);
    Ok(body)
}

/// Re-reads the rows whose keys `keys` lists, shaped within `max` bytes.
fn reread(
    conn: &Connection,
    node: &ReadNode,
    key: &RowKey,
    keys: &str,
    media: MediaType,
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    let sql = sql::select_keyed(node, key);
    let shaper = Shaper::new(&node.fields, media);
    let mut cap = Capped(max);
    let mut body = Vec::with_capacity(256);
    let mut stmt = crate::sql::prepare_cached(conn, &sql.text)?;
    sql.bind_to(&mut stmt, Some(keys))?;
    let mut rows = stmt.raw_query();
    shaper.begin(&mut body);
    let mut n = 0;
    while let Some(row) = rows.next()? {
        shaper.row(&mut body, row, n, &mut cap)?;
        n += 1;
    }
    shaper.finish(&mut body, n);
    Ok(body)
}

/// Reads `sql` (fields, then the key) into owned rows.
fn read_rows(conn: &Connection, sql: &Sql) -> Result<Vec<Vec<Value>>, ApiError> {
    let mut stmt = crate::sql::prepare_cached(conn, &sql.text)?;
    sql.bind_to(&mut stmt, None)?;
    let n = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(owned(row.get_ref(i)?));
        }
        out.push(values);
    }
    Ok(out)
}

fn location_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        Value::Text(t) => Some(t.clone()),
        Value::Blob(b) => Some(format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )),
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

/// `/rel?pk=eq.v&…` for the one inserted row (a null key part is `is.null`).
fn location(plan: &WritePlan, values: &[Value]) -> String {
    let mut out = format!("/{}", encode(&plan.relation.name));
    for (i, (col, v)) in plan.location_columns.iter().zip(values).enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&encode(col));
        out.push('=');
        match location_value(v) {
            Some(v) => {
                out.push_str("eq.");
                out.push_str(&encode(&v));
            }
            None => out.push_str("is.null"),
        }
    }
    out
}

/// Runs `plan` on `conn` (inside the caller's transaction). `body` is the request's payload
/// JSON (ignored when the plan carries its own); `counter` is the connection's `pgrst_ins`.
pub fn execute_write(
    conn: &Connection,
    plan: &WritePlan,
    body: &str,
    counter: &InsertCounter,
) -> Result<WriteOutput, ApiError> {
    let body = plan.body.as_deref().unwrap_or(body);
    let key = plan.returning.key.clone().unwrap_or(RowKey::None);
    let key_width = plan.returning.key_width();

    let pre_read = match &plan.pre_read {
        Some(sql) => Some(read_rows(conn, sql)?),
        None => None,
    };

    counter.reset();
    let mut returned = Returned::default();
    if let Some(sql) = &plan.statement {
        for _ in 0..plan.repeat {
            if plan.budget_each_run {
                crate::sql::prepare_cached(conn, BUDGET_CHECK_SQL)?.query_row([], |_| Ok(()))?;
            }
            run_statement(conn, sql, body, plan.uses_returning, &mut returned)?;
        }
    }
    let affected = returned.changes;

    if let MediaType::Singular { .. } = plan.media
        && affected != 1
    {
        return Err(ApiError::singular(affected));
    }
    if matches!(plan.mutation, Mutation::Update | Mutation::Delete)
        && plan.prefer.strict()
        && let Some(max) = plan.prefer.max_affected
        && affected as i64 > max
    {
        return Err(ApiError::new(
            400,
            ErrorCode::MaxAffected,
            "Query result exceeds max-affected preference constraint",
        )
        .with_details(format!("The query affects {affected} rows")));
    }
    if plan.mutation == Mutation::Upsert && affected != 1 {
        return Err(ApiError::new(
            400,
            ErrorCode::PutKeyMismatch,
            "Payload values do not match URL in primary key column(s)",
        ));
    }
    let inserted = counter.get();
    let max = plan.max_representation_bytes;

    let body_out = match &plan.representation {
        None => None,
        Some(Representation::Returned(node)) => Some(shape(
            node,
            plan.media,
            max,
            returned.rows.iter().map(|r| &r[..]),
        )?),
        Some(Representation::Keyed(node)) => match pre_read {
            Some(rows) => {
                // DELETE: keep the rows read before that the statement reports as deleted.
                let deleted: HashSet<String> = returned
                    .rows
                    .iter()
                    .map(|r| key_json(&key, &r[..key_width]).to_string())
                    .collect();
                let n_fields = distinct_exprs(&node.fields).0.len();
                let kept = rows.iter().filter(|r| {
                    deleted
                        .contains(&key_json(&key, &r[n_fields..n_fields + key_width]).to_string())
                });
                let offset = usize::try_from(node.offset).unwrap_or(0);
                let limit = node
                    .limit
                    .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(0));
                Some(shape(
                    node,
                    plan.media,
                    max,
                    kept.skip(offset).take(limit).map(|r| &r[..]),
                )?)
            }
            None if returned.rows.is_empty() => {
                Some(shape(node, plan.media, max, std::iter::empty())?)
            }
            None => {
                let keys = serde_json::Value::Array(
                    returned
                        .rows
                        .iter()
                        .map(|r| key_json(&key, &r[..key_width]))
                        .collect(),
                )
                .to_string();
                Some(reread(conn, node, &key, &keys, plan.media, max)?)
            }
        },
    };

    let representation = plan.prefer.return_ == Some(ReturnPref::Representation);
    let counted = matches!(
        plan.prefer.count,
        Some(CountMethod::Exact | CountMethod::Estimated)
    );
    let total = if counted {
        affected.to_string()
    } else {
        "*".to_string()
    };
    let (status, content_range, applied) = match plan.mutation {
        Mutation::Insert => {
            let status = if plan.counts_inserts
                && inserted <= 0
                && plan.prefer.resolution == Some(Resolution::MergeDuplicates)
            {
                200
            } else {
                201
            };
            (
                status,
                Some(format!("*/{total}")),
                Applied {
                    resolution: plan.resolution_applied,
                    missing: true,
                    ..Applied::WRITE
                },
            )
        }
        Mutation::Update | Mutation::Delete => {
            let range = if plan.mutation == Mutation::Update && affected > 0 {
                format!("0-{}/{total}", affected - 1)
            } else {
                format!("*/{total}")
            };
            (
                if representation { 200 } else { 204 },
                Some(range),
                Applied {
                    missing: plan.mutation == Mutation::Update,
                    max_affected: true,
                    ..Applied::WRITE
                },
            )
        }
        Mutation::Upsert => (
            match (representation, inserted > 0) {
                (false, _) => 204,
                (true, true) => 201,
                (true, false) => 200,
            },
            None,
            Applied::WRITE,
        ),
    };
    let location = (!plan.location_columns.is_empty() && affected == 1)
        .then(|| {
            let start = key_width + plan.returning.fields_width();
            returned.rows.first().map(|r| location(plan, &r[start..]))
        })
        .flatten();
    Ok(WriteOutput {
        status,
        body: if representation { body_out } else { None },
        content_range,
        location,
        preference_applied: plan.prefer.applied(applied),
        affected,
        commit: plan.prefer.tx_rollback != Some(true),
    })
}
