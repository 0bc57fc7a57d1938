//! Running a read plan on a connection: the optional count, the page query and shaping.
//!
//! When a count is asked for, the count and the page run inside one read transaction so they
//! see the same snapshot. Statements come from the connection's prepared-statement cache
//! (keyed by SQL text, which holds no values). The transaction is always closed before return,
//! also after an interrupt or an error.

use rusqlite::{Connection, Statement};

use crate::error::ApiError;
use crate::headers::{CountMethod, MediaType};
use crate::plan::{ReadNode, ReadPlan};
use crate::shape::{Shaper, content_range};
use crate::sql::{self, Sql};

/// Rows a read without a limit is expected to return, for sizing the body buffer.
const EXPECTED_ROWS: i64 = 16;
/// Never reserve room for more rows than this up front.
const MAX_RESERVE_ROWS: i64 = 1000;

/// The outcome of a read.
#[derive(Debug, Clone)]
pub struct ReadOutput {
    pub status: u16,
    /// Empty for HEAD.
    pub body: Vec<u8>,
    pub content_range: String,
    /// The count preference that was honoured (for `Preference-Applied`).
    pub count_applied: Option<CountMethod>,
    pub rows: usize,
}

/// Runs `plan` on `conn`. With `head`, rows are counted but not rendered. With a count, count
/// and page run in one transaction (the caller's, or one opened here).
pub fn execute_read(
    conn: &Connection,
    plan: &ReadPlan,
    head: bool,
) -> Result<ReadOutput, ApiError> {
    if plan.count.is_none() {
        return read_page(conn, plan, head, None);
    }
    if !conn.is_autocommit() {
        // The caller's transaction already gives count and page one snapshot.
        let total = total(conn, plan)?;
        return read_page(conn, plan, head, Some(total));
    }
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = (|| {
        let total = total(conn, plan)?;
        read_page(conn, plan, head, Some(total))
    })();
    if !conn.is_autocommit() {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = conn.prepare_cached(end).and_then(|mut s| s.execute([]))
            && result.is_ok()
        {
            return Err(e.into());
        }
    }
    result
}

fn bind(stmt: &mut Statement<'_>, sql: &Sql) -> rusqlite::Result<()> {
    for (i, v) in sql.params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, v)?;
    }
    Ok(())
}

fn scalar(conn: &Connection, sql: &Sql) -> Result<i64, ApiError> {
    let mut stmt = conn.prepare_cached(&sql.text)?;
    bind(&mut stmt, sql)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(r) => Ok(r.get(0)?),
        None => Ok(0),
    }
}

fn total(conn: &Connection, plan: &ReadPlan) -> Result<i64, ApiError> {
    let node = &plan.root;
    match plan.count {
        Some(CountMethod::Planned) => match planned(conn, node) {
            Some(n) => Ok(n),
            None => scalar(conn, &sql::count(node)),
        },
        Some(CountMethod::Estimated) => match plan.max_rows {
            Some(max) => {
                let n = scalar(conn, &sql::capped_count(node, max + 1))?;
                if n > max {
                    Ok(planned(conn, node).map_or(n, |p| p.max(n)))
                } else {
                    Ok(n)
                }
            }
            None => scalar(conn, &sql::count(node)),
        },
        _ => scalar(conn, &sql::count(node)),
    }
}

/// The planner's row estimate from `sqlite_stat1` (after ANALYZE), only for unfiltered reads.
fn planned(conn: &Connection, node: &ReadNode) -> Option<i64> {
    if !node.conditions.is_empty() {
        return None;
    }
    let stat: String = conn
        .prepare_cached(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 ORDER BY idx IS NULL DESC LIMIT 1",
        )
        .and_then(|mut s| s.query_row([&node.relation.name], |r| r.get(0)))
        .ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn read_page(
    conn: &Connection,
    plan: &ReadPlan,
    head: bool,
    total: Option<i64>,
) -> Result<ReadOutput, ApiError> {
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
    let sql = sql::select(node);
    let shaper = Shaper::new(&node.fields, plan.media);
    let mut body = Vec::with_capacity(if head { 0 } else { 256 });
    let mut n = 0usize;
    {
        let mut stmt = conn.prepare_cached(&sql.text)?;
        bind(&mut stmt, &sql)?;
        let mut rows = stmt.raw_query();
        if !head {
            shaper.begin(&mut body);
        }
        while let Some(row) = rows.next()? {
            if !head {
                let before = body.len();
                shaper.row(&mut body, row, n)?;
                if n == 0 {
                    // Size the buffer once from the first row instead of doubling it.
                    let expected = node
                        .limit
                        .unwrap_or(EXPECTED_ROWS)
                        .clamp(1, MAX_RESERVE_ROWS);
                    body.reserve((body.len() - before + 2) * (expected as usize - 1));
                }
            }
            n += 1;
        }
        if !head {
            shaper.finish(&mut body, n);
        }
    }
    if let MediaType::Singular { .. } = plan.media
        && n != 1
    {
        return Err(ApiError::singular(n));
    }
    let (status, range) = content_range(node.offset, n, total);
    Ok(ReadOutput {
        status: status.unwrap_or(416),
        body,
        content_range: range,
        count_applied: plan.count.filter(|_| total.is_some()),
        rows: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{Preferences, RequestHeaders};
    use crate::plan::{Limits, plan_read};
    use crate::query::QueryParams;
    use crate::schema::{Exposure, SchemaCache};

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
        let plan = plan_read(
            &cache,
            "p",
            &QueryParams::parse(q).unwrap(),
            &h,
            Limits::default(),
        )?;
        execute_read(c, &plan, false)
    }

    const JSON: MediaType = MediaType::Json { strip_nulls: false };

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
        assert_eq!(run(&c, "", one, None).unwrap_err().code, "PGRST116");
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
