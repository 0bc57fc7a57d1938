//! The benchmark's baseline and data generator (used by `scripts/bench`).
//!
//! `bench_baseline generate <db>` writes the 100,000-row `books` table (id, title, author,
//! price, published; index on author; WAL; 1,000 authors with 100 consecutive books each). `bench_baseline serve <db> <addr>` is the ceiling
//! we compare against: a minimal axum endpoint that runs the same SELECTs with rusqlite on the
//! async worker thread (one connection per thread with the server's reader pragmas, cached
//! statements) and serializes the rows
//! with serde — no PostgREST parsing, planning, auth or metrics.
//!
//! - `GET /books/{id}` ≙ `GET /books?id=eq.{id}`
//! - `GET /by_author/{author}` ≙ `GET /books?author=eq.{author}&limit=100`
//!
//! For the embedding benchmark, `bench_baseline generate-store <db>` writes a bookstore
//! (`authors`, `books` with a foreign key to its author, `reviews` with one to its book, 0 to
//! 15 per book), and the baseline serves `GET /store/{from}` ≙ `GET /books?select=id,title,
//! price,author:authors(id,name),reviews(id,stars,body)&reviews.order=id&reviews.limit=10&
//! id=gte.{from}&order=id&limit=100`: the same JSON, built whole by one hand-written SQL
//! statement through rusqlite.
//!
//! For the write benchmark, `bench_baseline create-events <db>` creates the `events` table
//! both sides insert into, and `bench_baseline insert <db> <seconds>` is the naive baseline:
//! one rusqlite connection inserting the same kind of row in a loop, one transaction (one
//! fsync, `synchronous=FULL`, WAL) per row, for `seconds`; it prints the inserts per second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

/// The same allocator as the server, so the ratio measures our code, not the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const ROWS: i64 = 100_000;
pub const AUTHORS: i64 = 1_000;

#[derive(Serialize)]
struct Book {
    id: i64,
    title: String,
    author: String,
    price: f64,
    published: String,
}

thread_local! {
    static CONN: RefCell<Option<Connection>> = const { RefCell::new(None) };
}

static DB: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A read-only connection with the page cache and memory map sqlite-rest's readers use
/// (`PRAGMA cache_size` 8 MiB, `mmap_size` 1 GiB), as a careful hand-written endpoint would
/// set them: with SQLite's default 2 MB cache the 7.6 MB table does not fit, and a lookup by
/// key paid a `pread` system call most of the time (0.8 per request), which the server's
/// readers do not.
fn open_reader() -> Connection {
    let conn = Connection::open_with_flags(
        DB.get().unwrap(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    conn.execute_batch("PRAGMA cache_size = -8192; PRAGMA mmap_size = 1073741824;")
        .unwrap();
    conn
}

fn query(sql: &str, param: &dyn rusqlite::ToSql) -> Vec<u8> {
    CONN.with(|c| {
        let mut c = c.borrow_mut();
        let conn = c.get_or_insert_with(open_reader);
        let mut stmt = conn.prepare_cached(sql).unwrap();
        let rows: Vec<Book> = stmt
            .query_map([param], |r| {
                Ok(Book {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    author: r.get(2)?,
                    price: r.get(3)?,
                    published: r.get(4)?,
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        serde_json::to_vec(&rows).unwrap()
    })
}

async fn by_id(Path(id): Path<i64>) -> impl IntoResponse {
    let body = query(
        "SELECT id, title, author, price, published FROM books WHERE id = ?1",
        &id,
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The whole page of books with their author and first ten reviews, as SQLite builds it.
const STORE_SQL: &str = "SELECT json_group_array(json(j)) FROM (
  SELECT json_object('id', b.id, 'title', b.title, 'price', b.price,
    'author', json((SELECT json_object('id', a.id, 'name', a.name) FROM authors a WHERE a.id = b.author_id)),
    'reviews', json((SELECT json_group_array(json(r.j)) FROM (
      SELECT json_object('id', r.id, 'stars', r.stars, 'body', r.body) AS j FROM reviews r
      WHERE r.book_id = b.id ORDER BY r.id LIMIT 10) r))) AS j
  FROM books b WHERE b.id >= ?1 ORDER BY b.id LIMIT 100)";

async fn store(Path(from): Path<i64>) -> impl IntoResponse {
    let body = CONN.with(|c| {
        let mut c = c.borrow_mut();
        let conn = c.get_or_insert_with(open_reader);
        let mut stmt = conn.prepare_cached(STORE_SQL).unwrap();
        stmt.query_row([from], |r| r.get::<_, String>(0)).unwrap()
    });
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn by_author(Path(author): Path<String>) -> impl IntoResponse {
    let body = query(
        "SELECT id, title, author, price, published FROM books WHERE author = ?1 LIMIT 100",
        &author,
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

fn generate(path: &str) {
    let _ = std::fs::remove_file(path);
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author TEXT NOT NULL,
                             price REAL NOT NULL, published TEXT NOT NULL);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut ins = tx
            .prepare("INSERT INTO books VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for i in 1..=ROWS {
            // Each author's books were added together, as a bookstore would: 100 per author.
            let author = format!("author-{}", (i - 1) / (ROWS / AUTHORS));
            let price = ((i * 7919) % 5000) as f64 / 100.0 + 1.0;
            let published = format!("{}-{:02}-{:02}", 1900 + i % 125, 1 + i % 12, 1 + i % 28);
            ins.execute(rusqlite::params![
                i,
                format!("Book number {i}"),
                author,
                price,
                published
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("CREATE INDEX books_author ON books(author); ANALYZE;")
        .unwrap();
}

/// The bookstore of the embedding benchmark: 1,000 authors, 100,000 books, 0 to 15 reviews
/// per book (indexed by book).
fn generate_store(path: &str) {
    let _ = std::fs::remove_file(path);
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL, price REAL NOT NULL,
                             author_id INTEGER NOT NULL REFERENCES authors(id));
         CREATE TABLE reviews (id INTEGER PRIMARY KEY,
                               book_id INTEGER NOT NULL REFERENCES books(id),
                               stars INTEGER NOT NULL, body TEXT NOT NULL);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut a = tx.prepare("INSERT INTO authors VALUES (?1, ?2)").unwrap();
        for i in 1..=AUTHORS {
            a.execute(rusqlite::params![i, format!("Author number {i}")])
                .unwrap();
        }
        let mut b = tx
            .prepare("INSERT INTO books VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        let mut r = tx
            .prepare("INSERT INTO reviews (book_id, stars, body) VALUES (?1, ?2, ?3)")
            .unwrap();
        for i in 1..=ROWS {
            let price = ((i * 7919) % 5000) as f64 / 100.0 + 1.0;
            b.execute(rusqlite::params![
                i,
                format!("Book number {i}"),
                price,
                1 + (i * 31) % AUTHORS
            ])
            .unwrap();
            for k in 0..(i * 13) % 16 {
                r.execute(rusqlite::params![
                    i,
                    1 + (i + k) % 5,
                    format!("Review {k} of book {i}: worth reading")
                ])
                .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("CREATE INDEX reviews_book ON reviews(book_id); ANALYZE;")
        .unwrap();
}

/// The table of the write benchmark (one row per event, a text payload like a small JSON
/// document's field).
fn create_events(path: &str) {
    let _ = std::fs::remove_file(path);
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE events (id INTEGER PRIMARY KEY, source INTEGER NOT NULL,
                              seq INTEGER NOT NULL, payload TEXT NOT NULL);",
    )
    .unwrap();
}

/// One transaction per row with synchronous=FULL for `seconds`; prints inserts/s.
fn insert_loop(path: &str, seconds: f64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .unwrap();
    let mut stmt = conn
        .prepare("INSERT INTO events (source, seq, payload) VALUES (?1, ?2, ?3)")
        .unwrap();
    let start = std::time::Instant::now();
    let mut n: i64 = 0;
    while start.elapsed().as_secs_f64() < seconds {
        // Autocommit: every execute is its own transaction and its own WAL sync.
        stmt.execute(rusqlite::params![
            -1,
            n,
            format!("event number {n} from the baseline")
        ])
        .unwrap();
        n += 1;
    }
    println!("{:.0}", n as f64 / start.elapsed().as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") => generate(&args[2]),
        Some("generate-store") => generate_store(&args[2]),
        Some("create-events") => create_events(&args[2]),
        Some("insert") => insert_loop(&args[2], args[3].parse().unwrap()),
        Some("token") => {
            // A demo-style HS256 token for the benchmark's sqlite-rest instance.
            let secret = std::fs::read(&args[2]).unwrap();
            let claims = serde_json::json!({"role": "bench"});
            let t = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            println!("{t}");
        }
        Some("serve") => {
            DB.set(args[2].clone()).unwrap();
            let addr = args[3].clone();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let app = Router::new()
                        .route("/books/{id}", get(by_id))
                        .route("/by_author/{author}", get(by_author))
                        .route("/store/{from}", get(store));
                    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
                    axum::serve(l, app).await.unwrap();
                });
        }
        _ => {
            eprintln!(
                "usage: bench_baseline generate <db> | generate-store <db> | token <secret-file> | serve <db> <addr> | create-events <db> | insert <db> <seconds>"
            );
            std::process::exit(2);
        }
    }
}
