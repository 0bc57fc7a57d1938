//! Running a read plan on a connection: the optional count, the page query and shaping.
//!
//! When a count is asked for, the count and the page run inside one read transaction so they
//! see the same snapshot. Statements come from the connection's prepared-statement cache
//! (keyed by SQL text, which holds no values). The transaction is always closed before return,
//! also after an interrupt or an error.
//!
//! The body is built in memory up to a limit the caller gives ([`read`]). Past it, the read
//! either stops ([`ReadOutcome::TooLarge`]: the caller runs it again with a stream) or goes on
//! as a stream: the response's head is fixed first — the page's row count comes from the
//! exact total, or from counting the page while its statement is still open, so both see the
//! same snapshot — then the body leaves in chunks of [`CHUNK_BYTES`]. So a read holds at most
//! the limit, a chunk and one value in memory, whatever the size of its response.

use rusqlite::Connection;

use crate::error::ApiError;
use crate::headers::{AppliedPreference, CountMethod, MediaType, PreferenceApplied};
use crate::read::plan::{ReadNode, ReadPlan};
use crate::read::sql;
use crate::shape::{Shaper, Spill, content_range};
use crate::sql::Sql;

/// Rows a read without a limit is expected to return, for sizing the body buffer.
const EXPECTED_ROWS: i64 = 16;
/// Never reserve more than this for a body up front.
const MAX_RESERVE_BYTES: usize = 1 << 20;
/// How much of a streamed body is sent at once.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// `Preference-Applied` of a read: the count method, when a total was counted.
fn counted(count: Option<CountMethod>, total: Option<i64>) -> PreferenceApplied {
    count
        .filter(|_| total.is_some())
        .map(AppliedPreference::Count)
        .into()
}

/// The outcome of a read whose body was kept whole.
#[derive(Debug, Clone)]
pub struct ReadOutput {
    pub status: u16,
    /// Empty for HEAD.
    pub body: Vec<u8>,
    pub content_range: String,
    /// The preferences honoured (the count).
    pub preference_applied: PreferenceApplied,
    pub rows: usize,
}

/// The status and headers of a streamed read, fixed before its body leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadHead {
    pub status: u16,
    pub content_range: String,
    pub preference_applied: PreferenceApplied,
    /// The rows the body will hold.
    pub rows: usize,
}

/// Where the body of a read goes once it outgrew its buffer.
pub trait BodyStream {
    /// Called once, with the response's head and the body so far.
    fn start(&mut self, head: ReadHead, first: Vec<u8>) -> Result<(), ApiError>;
    /// Every further part of the body, in order (the last one included).
    fn chunk(&mut self, bytes: Vec<u8>) -> Result<(), ApiError>;
}

/// How a read ended.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The body fit in the buffer.
    Whole(ReadOutput),
    /// The body outgrew the buffer and there was no stream: nothing was sent.
    TooLarge,
    /// The body went to the stream.
    Streamed,
}

/// Runs `plan` on `conn`, keeping the whole body in memory (for callers that bound the result
/// by other means, such as tests and benchmarks); see [`read`].
pub fn execute_read(
    conn: &Connection,
    plan: &ReadPlan,
    head: bool,
) -> Result<ReadOutput, ApiError> {
    match read(conn, plan, head, usize::MAX, None)? {
        ReadOutcome::Whole(out) => Ok(out),
        _ => Err(ApiError::internal(
            "an unbounded read did not keep its body",
        )),
    }
}

/// Runs `plan` on `conn`. With `head`, rows are counted but not rendered. With a count, count
/// and page run in one transaction (the caller's, or one opened here). A body of more than
/// `buffer_limit` bytes goes to `stream`, or, without one, ends the read as
/// [`ReadOutcome::TooLarge`].
pub fn read(
    conn: &Connection,
    plan: &ReadPlan,
    head: bool,
    buffer_limit: usize,
    stream: Option<&mut dyn BodyStream>,
) -> Result<ReadOutcome, ApiError> {
    read_with(conn, plan, head, buffer_limit, stream, None)
}

/// What a read takes from the plan cache (see `read/plan_cache.rs`): the page's statement and
/// shaper as built for its shape, and the request's own values for the plan's slots (every
/// statement built from a cached plan binds them in place of its slot markers).
pub(crate) struct Prebuilt<'a> {
    pub(crate) sql: &'a Sql,
    pub(crate) shaper: &'a Shaper,
    pub(crate) slots: &'a [rusqlite::types::Value],
}

/// [`read`], with the page's statement and shaper from the plan cache when `prebuilt` is given.
pub(crate) fn read_with(
    conn: &Connection,
    plan: &ReadPlan,
    head: bool,
    buffer_limit: usize,
    mut stream: Option<&mut dyn BodyStream>,
    prebuilt: Option<&Prebuilt<'_>>,
) -> Result<ReadOutcome, ApiError> {
    let slots = prebuilt.map(|p| p.slots);
    let mut page = |total| {
        read_page(
            conn,
            plan,
            head,
            total,
            buffer_limit,
            stream.take(),
            prebuilt,
        )
    };
    if plan.count.is_none() {
        return page(None);
    }
    if !conn.is_autocommit() {
        // The caller's transaction already gives count and page one snapshot.
        let total = total(conn, plan, slots)?;
        return page(Some(total));
    }
    crate::sql::prepare_cached(conn, "BEGIN")?.execute([])?;
    let result = total(conn, plan, slots).and_then(|t| page(Some(t)));
    if !conn.is_autocommit() {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = crate::sql::prepare_cached(conn, end).and_then(|mut s| s.execute([]))
            && result.is_ok()
        {
            return Err(e.into());
        }
    }
    result
}

/// The one statement that reads the plan's page (embeds included), for `EXPLAIN QUERY PLAN`.
pub fn read_sql(plan: &ReadPlan) -> Sql {
    sql::select(&plan.root)
}

fn scalar(
    conn: &Connection,
    sql: &Sql,
    slots: Option<&[rusqlite::types::Value]>,
) -> Result<i64, ApiError> {
    let mut stmt = crate::sql::prepare_cached(conn, &sql.text)?;
    sql.bind_slots(&mut stmt, slots)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(r) => Ok(r.get(0)?),
        None => Ok(0),
    }
}

fn total(
    conn: &Connection,
    plan: &ReadPlan,
    slots: Option<&[rusqlite::types::Value]>,
) -> Result<i64, ApiError> {
    let node = &plan.root;
    match plan.count {
        Some(CountMethod::Planned) => match planned(conn, node) {
            Some(n) => Ok(n),
            None => scalar(conn, &sql::count(node), slots),
        },
        Some(CountMethod::Estimated) => match plan.max_rows {
            Some(max) => {
                let n = scalar(conn, &sql::capped_count(node, max + 1), slots)?;
                if n > max {
                    Ok(planned(conn, node).map_or(n, |p| p.max(n)))
                } else {
                    Ok(n)
                }
            }
            None => scalar(conn, &sql::count(node), slots),
        },
        _ => scalar(conn, &sql::count(node), slots),
    }
}

/// The planner's row estimate from `sqlite_stat1` (after ANALYZE), only for unfiltered reads
/// of rows (not of groups, which it cannot estimate).
fn planned(conn: &Connection, node: &ReadNode) -> Option<i64> {
    if !node.conditions.is_empty() || node.grouped() {
        return None;
    }
    let stat: String = crate::sql::prepare_cached(
        conn,
        "SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 ORDER BY idx IS NULL DESC LIMIT 1",
    )
    .and_then(|mut s| s.query_row([&node.relation.name], |r| r.get(0)))
    .ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Where the shaper's output goes while a page is read: kept up to the limit, then streamed
/// (or the read stops when there is no stream).
struct PageSink<'a, 's> {
    conn: &'a Connection,
    plan: &'a ReadPlan,
    total: Option<i64>,
    stream: Option<&'s mut dyn BodyStream>,
    /// The request's values for a cached plan's slots.
    slots: Option<&'a [rusqlite::types::Value]>,
    /// The buffer's length that calls for action: past `limit` while buffering, a chunk's
    /// size while streaming (one comparison per value on the hot path).
    next: usize,
    streaming: bool,
    too_large: bool,
}

impl PageSink<'_, '_> {
    /// The head of the response, before a single row has been sent.
    fn head(&self) -> Result<ReadHead, ApiError> {
        let node = &self.plan.root;
        let rows = match (self.plan.count, self.total) {
            // An exact total fixes the page: what lies past the offset, up to the limit.
            (Some(CountMethod::Exact), Some(t)) => t
                .saturating_sub(node.offset)
                .clamp(0, node.limit.unwrap_or(i64::MAX)),
            // Counted while the page's statement is open: the same snapshot.
            _ => scalar(self.conn, &sql::page_count(node), self.slots)?,
        };
        let rows = usize::try_from(rows).unwrap_or(0);
        if let MediaType::Singular { .. } = self.plan.media
            && rows != 1
        {
            return Err(ApiError::singular(rows));
        }
        let (status, content_range) = content_range(node.offset, rows, self.total);
        Ok(ReadHead {
            status: status.unwrap_or(416),
            content_range,
            preference_applied: counted(self.plan.count, self.total),
            rows,
        })
    }

    fn act(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if self.streaming {
            if let Some(stream) = self.stream.as_deref_mut() {
                stream.chunk(std::mem::replace(out, Vec::with_capacity(CHUNK_BYTES)))?;
            }
            return Ok(());
        }
        let head = match self.stream {
            Some(_) => self.head()?,
            None => {
                self.too_large = true;
                return Err(ApiError::internal("the body outgrew its buffer"));
            }
        };
        if let Some(stream) = self.stream.as_deref_mut() {
            stream.start(
                head,
                std::mem::replace(out, Vec::with_capacity(CHUNK_BYTES)),
            )?;
            self.streaming = true;
            self.next = CHUNK_BYTES - 1;
        }
        Ok(())
    }
}

impl Spill for PageSink<'_, '_> {
    #[inline]
    fn spill(&mut self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        if out.len() <= self.next {
            return Ok(());
        }
        self.act(out)
    }
}

fn read_page(
    conn: &Connection,
    plan: &ReadPlan,
    head: bool,
    total: Option<i64>,
    limit: usize,
    stream: Option<&mut dyn BodyStream>,
    prebuilt: Option<&Prebuilt<'_>>,
) -> Result<ReadOutcome, ApiError> {
    let node = &plan.root;
    if let Some(t) = total
        && node.offset > t
    {
        return Err(ApiError::range(format!(
            "An offset of {} was requested, but there are only {} rows.",
            node.offset, t
        ))
        .with_header("Content-Range", format!("*/{t}")));
    }
    let built;
    let (sql, shaper, slots) = match prebuilt {
        Some(p) => (p.sql, p.shaper, Some(p.slots)),
        None => {
            built = (sql::select(node), Shaper::new(&node.fields, plan.media));
            (&built.0, &built.1, None)
        }
    };
    let mut sink = PageSink {
        conn,
        plan,
        total,
        stream,
        slots,
        next: limit,
        streaming: false,
        too_large: false,
    };
    let mut body = Vec::with_capacity(if head { 0 } else { 256 });
    let mut n = 0usize;
    let rendered = (|| {
        let mut stmt = crate::sql::prepare_cached(conn, &sql.text)?;
        sql.bind_slots(&mut stmt, slots)?;
        let mut rows = stmt.raw_query();
        if !head {
            shaper.begin(&mut body);
        }
        let mut first_row = 0usize;
        while let Some(row) = rows.next()? {
            if !head {
                if n == 1 && !sink.streaming {
                    // A second row: size the buffer once from the first row instead of
                    // doubling it, within reason (the first row says little about the others).
                    // Not before: a lookup by key answers one row, which the initial
                    // capacity holds, and a reservation would only cost a reallocation.
                    let expected = node.limit.unwrap_or(EXPECTED_ROWS).clamp(2, 1000) as usize;
                    let want = (first_row + 2)
                        .saturating_mul(expected - 1)
                        .min(MAX_RESERVE_BYTES)
                        .min(limit.saturating_sub(body.len()));
                    body.reserve(want);
                }
                let before = body.len();
                shaper.row(&mut body, row, n, &mut sink)?;
                if n == 0 {
                    first_row = body.len().saturating_sub(before);
                }
            }
            n += 1;
        }
        if !head {
            shaper.finish(&mut body, n);
        }
        Ok::<_, ApiError>(())
    })();
    if sink.too_large {
        return Ok(ReadOutcome::TooLarge);
    }
    rendered?;
    if sink.streaming {
        if let Some(stream) = sink.stream {
            stream.chunk(body)?;
        }
        return Ok(ReadOutcome::Streamed);
    }
    if let MediaType::Singular { .. } = plan.media
        && n != 1
    {
        return Err(ApiError::singular(n));
    }
    let (status, range) = content_range(node.offset, n, total);
    Ok(ReadOutcome::Whole(ReadOutput {
        status: status.unwrap_or(416),
        body,
        content_range: range,
        preference_applied: counted(plan.count, total),
        rows: n,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{Preferences, RequestHeaders};
    use crate::query::QueryParams;
    use crate::read::plan::{Limits, plan_read};
    use crate::schema_cache::{Exposure, SchemaCache};

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        crate::functions::register(&c).unwrap();
        c.execute_batch(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT, active BOOLEAN, settings JSON, logo BLOB, budget REAL);
             INSERT INTO p VALUES (1,'Windows 7',1,'{\"a\":{\"b\":1},\"t\":[1,2]}',X'DEADBEEF',1500.5),
                                  (2,'IOS',0,NULL,NULL,NULL),(3,'OSX',1,'not json',NULL,99.99);",
        )
        .unwrap();
        c
    }

    fn run(
        c: &Connection,
        q: &str,
        media: MediaType,
        count: Option<CountMethod>,
    ) -> Result<ReadOutput, ApiError> {
        execute_read(c, &plan(c, q, media, count)?, false)
    }

    fn plan(
        c: &Connection,
        q: &str,
        media: MediaType,
        count: Option<CountMethod>,
    ) -> Result<ReadPlan, ApiError> {
        let cache = SchemaCache::load(c, &Exposure::All).unwrap();
        let h = RequestHeaders {
            media,
            prefer: Preferences {
                count,
                ..Default::default()
            },
            range: None,
            profile_sent: false,
        };
        plan_read(
            &cache,
            "p",
            &QueryParams::parse(q).unwrap(),
            &h,
            Limits::default(),
        )
    }

    /// Collects a streamed body.
    #[derive(Default)]
    struct Collect {
        head: Option<ReadHead>,
        body: Vec<u8>,
        chunks: usize,
        largest: usize,
    }

    impl BodyStream for Collect {
        fn start(&mut self, head: ReadHead, first: Vec<u8>) -> Result<(), ApiError> {
            assert!(self.head.is_none(), "started twice");
            self.head = Some(head);
            self.chunk(first)
        }
        fn chunk(&mut self, bytes: Vec<u8>) -> Result<(), ApiError> {
            assert!(self.head.is_some(), "a chunk before the head");
            self.chunks += 1;
            self.largest = self.largest.max(bytes.len());
            self.body.extend_from_slice(&bytes);
            Ok(())
        }
    }

    /// A table of `n` rows of `width`-byte text.
    fn wide_db(n: usize, width: usize) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        crate::functions::register(&c).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, t TEXT);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
             INSERT INTO p SELECT i, printf('%.{width}c', 'x') FROM s;"
        ))
        .unwrap();
        c
    }

    const JSON: MediaType = MediaType::Json { strip_nulls: false };

    #[test]
    fn a_body_past_the_buffer_stops_or_streams_the_same_bytes() {
        let c = wide_db(40, 3000);
        for (q, media, count, rows, range) in [
            ("order=id", JSON, None, 40, "0-39/*"),
            ("order=id.desc&offset=5&limit=30", JSON, None, 30, "5-34/*"),
            ("order=id&id=gt.2", MediaType::Csv, None, 38, "0-37/*"),
            (
                "order=id&limit=35",
                JSON,
                Some(CountMethod::Exact),
                35,
                "0-34/40",
            ),
            (
                "select=t,t,t,t,t,t,t,t,t,t,t,t&id=eq.3",
                MediaType::Singular { strip_nulls: false },
                None,
                1,
                "0-0/*",
            ),
        ] {
            let plan = plan(&c, q, media, count).unwrap();
            let whole = execute_read(&c, &plan, false).unwrap();
            assert!(whole.body.len() > 20_000, "{q}");
            // Without a stream, a read past its buffer stops.
            assert!(matches!(
                read(&c, &plan, false, 10_000, None).unwrap(),
                ReadOutcome::TooLarge
            ));
            // With one, the head comes first and the chunks add up to the same body.
            let mut out = Collect::default();
            let outcome = read(&c, &plan, false, 10_000, Some(&mut out)).unwrap();
            assert!(matches!(outcome, ReadOutcome::Streamed), "{q}");
            let head = out.head.unwrap();
            assert_eq!(
                (head.status, head.content_range.as_str(), head.rows),
                (whole.status, range, rows),
                "{q}"
            );
            assert_eq!(head.content_range, whole.content_range);
            assert_eq!(out.body, whole.body, "{q}");
            assert!(
                out.largest <= 10_000 + 3100 + CHUNK_BYTES,
                "{q}: {}",
                out.largest
            );
            assert!(c.is_autocommit());
        }
        // A singular read of many rows is refused before anything is sent.
        let plan = plan(&c, "", MediaType::Singular { strip_nulls: false }, None).unwrap();
        let mut out = Collect::default();
        let e = read(&c, &plan, false, 10, Some(&mut out)).unwrap_err();
        assert_eq!((e.code.as_str(), out.head.is_none()), ("PGRST116", true));
    }

    #[test]
    fn one_large_row_is_streamed_value_by_value() {
        // 60 copies of a 100 KB value: a 6 MB row is never held whole.
        let c = wide_db(2, 100_000);
        let select = vec!["t"; 60].join(",");
        let plan = plan(&c, &format!("select={select}&limit=1000"), JSON, None).unwrap();
        let mut out = Collect::default();
        read(&c, &plan, false, 1 << 20, Some(&mut out)).unwrap();
        assert_eq!(out.body.len(), 2 + 2 * (2 + 60 * (100_000 + 6) + 59) + 1);
        assert!(out.largest < (1 << 20) + 200_000, "{}", out.largest);
        assert!(out.chunks > 10);
    }

    #[test]
    fn a_second_statement_shares_an_open_statements_snapshot() {
        // What counting a page while its statement is open relies on: in autocommit mode, a
        // connection's read transaction lasts while any of its statements is active.
        let dir = std::env::temp_dir().join(format!("dialect-snapshot-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let a = Connection::open(&dir).unwrap();
        a.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        let b = Connection::open(&dir).unwrap();
        let mut page = a.prepare("SELECT x FROM t").unwrap();
        let mut rows = page.query([]).unwrap();
        assert!(rows.next().unwrap().is_some());
        b.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let n: i64 = a
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        drop(rows);
        let n: i64 = a
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        drop(page);
        drop((a, b));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", dir.display()));
        }
    }

    #[test]
    fn regular_expressions_compile_once_per_read_not_per_row() {
        let c = wide_db(400, 3);
        c.execute_batch("UPDATE p SET t = CASE WHEN id % 2 = 0 THEN 'abc' ELSE 'xyz' END")
            .unwrap();
        for (q, rows) in [
            ("t=match.^a", 200),
            ("t=imatch.^A", 200),
            ("t=match(any).{^a,^x}", 400),
            ("t=imatch(all).{^X,Z$}", 200),
            ("t=not.match(any).{^q,^r}&t=imatch(any).{B,Y}", 400),
            ("or=(t.match.^a,t.imatch(all).{^x,z})", 400),
        ] {
            // Planning checks the patterns (one compilation), running compiles each filter.
            let before = crate::functions::regex_compilations();
            let plan = plan(&c, &format!("select=id&{q}"), JSON, None).unwrap();
            let out = execute_read(&c, &plan, false).unwrap();
            let compiled = crate::functions::regex_compilations() - before;
            assert_eq!(out.rows, rows, "{q}");
            assert!(
                compiled <= 4,
                "{q}: {compiled} regular expressions compiled for one read"
            );
        }
    }

    #[test]
    fn repeated_fields_are_computed_once() {
        let c = db();
        let p = plan(
            &c,
            "select=name,id,n:name,name::text,name&order=name.desc",
            JSON,
            None,
        )
        .unwrap();
        let sql = sql::select(&p.root);
        assert_eq!(sql.text.matches("\"name\"").count(), 3, "{}", sql.text); // twice computed + order
        // A long select list (hashed rather than searched) too.
        let long = vec!["id,name"; 40].join(",");
        let plan40 = plan(&c, &format!("select={long}&id=eq.2"), JSON, None).unwrap();
        assert!(
            sql::select(&plan40.root)
                .text
                .starts_with("SELECT \"t0\".\"id\", \"t0\".\"name\" FROM")
        );
        let out = execute_read(&c, &plan40, false).unwrap();
        let body = String::from_utf8(out.body).unwrap();
        assert_eq!(body.matches(r#""id":2,"name":"IOS""#).count(), 40, "{body}");
        let out = execute_read(&c, &p, false).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"[{"name":"Windows 7","id":1,"n":"Windows 7","name":"Windows 7","name":"Windows 7"},{"name":"OSX","id":3,"n":"OSX","name":"OSX","name":"OSX"},{"name":"IOS","id":2,"n":"IOS","name":"IOS","name":"IOS"}]"#
        );
    }

    #[test]
    fn renders_types() {
        let c = db();
        let out = run(&c, "id=eq.1", JSON, None).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"[{"id":1,"name":"Windows 7","active":true,"settings":{"a":{"b":1},"t":[1,2]},"logo":"\\xdeadbeef","budget":1500.5}]"#
        );
        let out = run(&c, "id=eq.3&select=settings", JSON, None).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"[{"settings":"not json"}]"#
        );
    }

    #[test]
    fn counts_and_ranges() {
        let c = db();
        let out = run(&c, "limit=2&order=id", JSON, Some(CountMethod::Exact)).unwrap();
        assert_eq!((out.status, out.content_range.as_str()), (206, "0-1/3"));
        let e = run(&c, "offset=10", JSON, Some(CountMethod::Exact)).unwrap_err();
        assert_eq!(e.status, 416);
        assert!(c.is_autocommit());
        let out = run(&c, "", JSON, Some(CountMethod::Planned)).unwrap();
        assert_eq!(out.content_range, "0-2/3");
    }

    #[test]
    fn singular_and_csv() {
        let c = db();
        let one = MediaType::Singular { strip_nulls: false };
        let out = run(&c, "select=id,name&id=eq.2", one, None).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"{"id":2,"name":"IOS"}"#
        );
        assert_eq!(
            run(&c, "", one, None).unwrap_err().code.as_str(),
            "PGRST116"
        );
        let out = run(&c, "select=id,name,active&order=id", MediaType::Csv, None).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            "id,name,active\n1,\"Windows 7\",t\n2,IOS,f\n3,OSX,t"
        );
    }

    #[test]
    fn operators() {
        let c = db();
        let ids = |q: &str| -> Vec<i64> {
            let out = run(&c, &format!("select=id&order=id&{q}"), JSON, None).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(ids("name=like.*S"), vec![2]);
        assert_eq!(ids("name=ilike.*s"), vec![2]);
        assert_eq!(ids("name=like.*s"), Vec::<i64>::new());
        assert_eq!(ids("name=match.^O"), vec![3]);
        assert_eq!(ids("name=imatch.^o"), vec![3]);
        assert_eq!(ids("id=in.(1,3)"), vec![1, 3]);
        assert_eq!(ids("id=not.in.(1,3)"), vec![2]);
        assert_eq!(ids("budget=is.null"), vec![2]);
        assert_eq!(ids("active=is.false"), vec![2]);
        assert_eq!(ids("active=eq.true"), vec![1, 3]);
        assert_eq!(ids("budget=isdistinct.1500.5"), vec![2, 3]);
        assert_eq!(ids("id=gte.2&id=lte.3"), vec![2, 3]);
        assert_eq!(ids("name=like(any).{O*,I*}"), vec![2, 3]);
        assert_eq!(ids("name=like(all).{*O*,*S*}"), vec![2, 3]);
        assert_eq!(ids("settings->a->>b=eq.1"), vec![1]);
        assert_eq!(ids("settings->a->b=eq.1"), vec![1]);
        assert_eq!(ids("settings->t=eq.[1,2]"), vec![1]);
        assert_eq!(ids("or=(id.eq.1,and(id.gt.2,name.eq.OSX))"), vec![1, 3]);
        assert_eq!(ids("not.or=(id.eq.1,id.eq.2)"), vec![3]);
    }

    #[test]
    fn hostile_identifiers_are_quoted_end_to_end() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            r#"CREATE TABLE y (z);
               CREATE TABLE "x""; DROP TABLE y; --" ("a""b" TEXT, "c)--" INTEGER);
               INSERT INTO "x""; DROP TABLE y; --" VALUES ('v', 1), ('w', 2);"#,
        )
        .unwrap();
        let cache = SchemaCache::load(&c, &Exposure::All).unwrap();
        let h = RequestHeaders {
            media: JSON,
            prefer: Preferences::default(),
            range: None,
            profile_sent: false,
        };
        let q = QueryParams::parse(
            "select=%22a%5C%22b%22,%22c)--%22&%22c)--%22=lt.3&order=%22a%5C%22b%22.desc",
        )
        .unwrap();
        let plan = plan_read(&cache, "x\"; DROP TABLE y; --", &q, &h, Limits::default()).unwrap();
        let out = execute_read(&c, &plan, false).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"[{"a\"b":"w","c)--":2},{"a\"b":"v","c)--":1}]"#
        );
        let y: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'y'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(y, 1);
    }
}
