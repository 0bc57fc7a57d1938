//! Full-text filters through the dialect (parse → plan → SQL → execution) on a 200,000-row
//! table with an external-content FTS5 index, searching selective words (~0.2% of rows each):
//!
//! - `fts`: a top-level `body=fts.w17`, a plain `IN` that lets SQLite look rows up by the
//!   index's matches;
//! - `fts-in-tree`: the same filter inside `or=(…)`, also a plain `IN` (no NOT above it);
//! - `fts-in-tree-three-valued`: the same plan forced into the three-valued `CASE` form that
//!   a NOT above it needs (a scan of the table probing the matches): the baseline;
//! - `fts-or-two`: `or=(body.fts.w17,body.fts.w18)`, two index lookups (MULTI-INDEX OR);
//! - `like-scan`: the same word through `like` (no index; what a client would do without
//!   FTS), for scale.
//!
//! Compare them in the same run. `cargo bench -p dialect --bench full_text`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use dialect::{
    Condition, Exposure, Limits, MediaType, Predicate, Preferences, QueryParams, RequestHeaders,
    SchemaCache, execute_read, plan_read,
};
use rusqlite::Connection;

const ROWS: i64 = 200_000;

fn database() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    dialect::register_functions(&conn).unwrap();
    conn.execute_batch(
        "CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
         CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');",
    )
    .unwrap();
    let mut x: u64 = 1;
    let mut word = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!("w{}", x % 5000)
    };
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut stmt = tx.prepare("INSERT INTO docs VALUES (?1, ?2)").unwrap();
        for id in 0..ROWS {
            let body: Vec<String> = (0..12).map(|_| word()).collect();
            stmt.execute((id, body.join(" "))).unwrap();
        }
    }
    tx.execute_batch("INSERT INTO docs_fts(docs_fts) VALUES ('rebuild')")
        .unwrap();
    tx.commit().unwrap();
    conn
}

/// Forces every full-text filter of `c` into the three-valued form.
fn three_valued(c: &mut Condition) {
    match c {
        Condition::Pred {
            pred: Predicate::FullText { three_valued, .. },
            ..
        } => *three_valued = true,
        Condition::Pred { .. } | Condition::Exists { .. } => {}
        Condition::Tree { children, .. } => children.iter_mut().for_each(three_valued),
    }
}

fn main() {
    let conn = database();
    let cache = SchemaCache::load(&conn, &Exposure::All).unwrap();
    let headers = RequestHeaders {
        media: MediaType::Json { strip_nulls: false },
        prefer: Preferences::default(),
        range: None,
        profile_sent: false,
    };
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("full-text");
    for (name, query, force_three_valued) in [
        ("fts", "select=id&body=fts.w17", false),
        ("fts-in-tree", "select=id&or=(body.fts.w17)", false),
        (
            "fts-in-tree-three-valued",
            "select=id&or=(body.fts.w17)",
            true,
        ),
        (
            "fts-or-two",
            "select=id&or=(body.fts.w17,body.fts.w18)",
            false,
        ),
        (
            "like-scan",
            "select=id&or=(body.eq.w17,body.like.w17%20*,body.like.*%20w17,body.like.*%20w17%20*)",
            false,
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let q = QueryParams::parse(query).unwrap();
                let mut plan = plan_read(&cache, "docs", &q, &headers, Limits::default()).unwrap();
                if force_three_valued {
                    plan.root.conditions.iter_mut().for_each(three_valued);
                }
                black_box(execute_read(&conn, &plan, false).unwrap().rows)
            })
        });
    }
    g.finish();
    c.final_summary();
}
