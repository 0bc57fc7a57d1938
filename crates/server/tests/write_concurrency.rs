//! Many clients writing at once through the single writer: N parallel clients each send M
//! write requests over HTTP — most valid, some designed to fail (duplicate key, CHECK
//! violation, a bulk insert with one bad row), some rolled back on purpose — while readers
//! poll. Afterwards exactly the rows of the successful requests exist, every response told
//! the truth (a 201 with a representation names rows that exist with those values; an error
//! or `tx=rollback` left nothing), readers never saw the table shrink, and the write metrics
//! account for every committed request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::Server;
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const REQUESTS: usize = 20;

/// What one request was designed to do.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Single,
    Bulk,
    Duplicate,
    Negative,
    BadBulk,
    Rollback,
}

fn kind(i: usize) -> Kind {
    match i % 10 {
        3 => Kind::Duplicate,
        5 => Kind::Negative,
        7 => Kind::Rollback,
        8 => Kind::BadBulk,
        9 => Kind::Bulk,
        _ => Kind::Single,
    }
}

struct Outcome {
    kind: Kind,
    status: u16,
    code: Option<String>,
    /// Rows (sku → qty) the request asked for.
    rows: Vec<(String, i64)>,
    /// The representation, when asked for and given.
    body: Option<Value>,
}

async fn client(s: Arc<Server>, c: usize) -> Vec<Outcome> {
    let mut out = Vec::new();
    for i in 0..REQUESTS {
        let kind = kind(i);
        let sku = |n: usize| format!("c{c}-r{i}-{n}");
        let qty = (c * 100 + i) as i64;
        let (rows, body): (Vec<(String, i64)>, Value) = match kind {
            Kind::Single | Kind::Rollback => {
                let r = vec![(sku(0), qty)];
                (r.clone(), json!({"sku": r[0].0, "qty": qty}))
            }
            Kind::Bulk => {
                let r: Vec<_> = (0..3).map(|n| (sku(n), qty + n as i64)).collect();
                let b = r.iter().map(|(s, q)| json!({"sku": s, "qty": q})).collect();
                (r, Value::Array(b))
            }
            Kind::Duplicate => (vec![("A-1".into(), qty)], json!({"sku": "A-1", "qty": qty})),
            Kind::Negative => (vec![(sku(0), -1)], json!({"sku": sku(0), "qty": -1})),
            Kind::BadBulk => {
                let r = vec![(sku(0), qty), (sku(0), qty + 1)];
                let b = r.iter().map(|(s, q)| json!({"sku": s, "qty": q})).collect();
                (r, Value::Array(b))
            }
        };
        let mut req = s
            .request(reqwest::Method::POST, "/stock?select=id,sku,qty")
            .header("Content-Type", "application/json")
            .header("Prefer", "return=representation");
        if kind == Kind::Rollback {
            req = req.header("Prefer", "tx=rollback");
        }
        let resp = req.body(body.to_string()).send().await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        let (code, body) = if status >= 400 {
            (v["code"].as_str().map(str::to_string), None)
        } else {
            (None, Some(v))
        };
        out.push(Outcome {
            kind,
            status,
            code,
            rows,
            body,
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_writers_get_exactly_what_they_were_told() {
    let s = Arc::new(Server::start().await);
    let done = Arc::new(AtomicBool::new(false));
    // Readers: the number of rows never goes down while only inserts run.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, done) = (s.clone(), done.clone());
            tokio::spawn(async move {
                let mut last = 0usize;
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let v = s.json("/stock?select=id", 200).await;
                    let n = v.as_array().unwrap().len();
                    assert!(n >= last, "a reader saw {n} rows after {last}");
                    last = n;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(s.clone(), c)))
        .collect();
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.extend(w.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }

    // Every response is the one its design calls for.
    let mut expected: BTreeMap<String, i64> = BTreeMap::from([("A-1".to_string(), 5)]);
    let mut committed_requests = 0u64;
    for o in &outcomes {
        match o.kind {
            Kind::Single | Kind::Bulk => {
                assert_eq!(o.status, 201, "{:?} {:?}", o.kind, o.code);
                let body = o.body.as_ref().unwrap().as_array().unwrap().clone();
                assert_eq!(body.len(), o.rows.len());
                for (row, (sku, qty)) in body.iter().zip(&o.rows) {
                    assert_eq!(row["sku"], sku.as_str());
                    assert_eq!(row["qty"], *qty);
                    assert!(row["id"].as_i64().unwrap() > 1);
                    expected.insert(sku.clone(), *qty);
                }
                committed_requests += 1;
            }
            Kind::Rollback => {
                assert_eq!(o.status, 201);
                assert_eq!(o.body.as_ref().unwrap()[0]["sku"], o.rows[0].0.as_str());
            }
            Kind::Duplicate | Kind::BadBulk => {
                assert_eq!((o.status, o.code.as_deref()), (409, Some("23505")));
            }
            Kind::Negative => {
                assert_eq!((o.status, o.code.as_deref()), (400, Some("23514")));
            }
        }
    }

    // The database holds exactly the rows the successful requests were told about.
    let c = s.sqlite();
    let actual: BTreeMap<String, i64> = c
        .prepare("SELECT sku, qty FROM stock")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actual.len(), expected.len());
    assert_eq!(actual, expected);
    // Ids the representations reported are the stored ones.
    for o in outcomes
        .iter()
        .filter(|o| matches!(o.kind, Kind::Single | Kind::Bulk))
    {
        for row in o.body.as_ref().unwrap().as_array().unwrap() {
            let id: i64 = c
                .query_row(
                    "SELECT id FROM stock WHERE sku = ?1",
                    [row["sku"].as_str().unwrap()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(row["id"], id);
        }
    }

    // The write metrics account for every committed request.
    let m = s.metrics().await;
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {name} in\n{m}"))
    };
    assert_eq!(
        value("sqlite_rest_write_batch_size_sum "),
        committed_requests as f64
    );
    let commits = value("sqlite_rest_write_commits_total ");
    assert_eq!(value("sqlite_rest_write_batch_size_count "), commits);
    assert!(commits >= 1.0 && commits <= committed_requests as f64);
    eprintln!(
        "{committed_requests} committed write requests in {commits} transactions ({} requests in all)",
        outcomes.len()
    );
}
