//! Database errors as a client may see them: PostgreSQL's wording for constraint violations,
//! naming only exposed relations and their columns, and nothing that mentions a hidden one.
//!
//! SQLite's text names the table and columns where a constraint failed (`UNIQUE constraint
//! failed: audit.k`), which may be a table the allow-list hides, reached through a trigger of
//! an exposed one. [`ApiError::from_sqlite`] therefore words violations without any name and
//! keeps SQLite's text aside; [`ApiError::for_client`] then names the relation, columns and
//! constraint (PostgreSQL's default names: `{table}_pkey`, `{table}_{columns}_key`,
//! `{table}_{columns}_fkey`) when they belong to an exposed relation, and replaces any other
//! message that mentions a hidden relation with a plain one. Details give the columns only:
//! SQLite does not say which values conflicted.

use crate::error::{ApiError, ErrorCode};
use crate::schema_cache::{Relation, SchemaCache};
use crate::write::plan::Mutation;

impl ApiError {
    /// This error as the client of a request on `relation` (with `mutation` for a write) may
    /// see it, given what `cache` exposes.
    pub fn for_client(
        mut self,
        cache: &SchemaCache,
        relation: &str,
        mutation: Option<Mutation>,
    ) -> ApiError {
        let Some(raw) = self.sqlite.take() else {
            return self;
        };
        let target = cache.relation(relation).map(|r| r.as_ref());
        match self.code {
            ErrorCode::UniqueViolation => {
                if let Some((rel, cols)) = raw
                    .strip_prefix("UNIQUE constraint failed: ")
                    .and_then(|rest| qualified_columns(cache, target, rest))
                {
                    let name = if same_columns(&cols, &rel.primary_key) {
                        format!("{}_pkey", rel.name)
                    } else {
                        format!("{}_{}_key", rel.name, cols.join("_"))
                    };
                    self.message =
                        format!("duplicate key value violates unique constraint \"{name}\"");
                    self.details =
                        Some(format!("Key ({}) already exists.", cols.join(", ")).into());
                }
            }
            ErrorCode::NotNullViolation => {
                if let Some((rel, cols)) = raw
                    .strip_prefix("NOT NULL constraint failed: ")
                    .and_then(|rest| qualified_columns(cache, target, rest))
                    && let [col] = cols.as_slice()
                {
                    self.message = format!(
                        "null value in column \"{col}\" of relation \"{}\" violates not-null constraint",
                        rel.name
                    );
                }
            }
            ErrorCode::CheckViolation => {
                // SQLite names the constraint, or quotes its expression; which table it
                // belongs to, it does not say: only one written in the target's own schema
                // is named.
                if let (Some(rel), Some(check)) =
                    (target, raw.strip_prefix("CHECK constraint failed: "))
                    && !check.is_empty()
                    && rel.sql.contains(check)
                {
                    self.message = format!(
                        "new row for relation \"{}\" violates check constraint \"{check}\"",
                        rel.name
                    );
                }
            }
            ErrorCode::ForeignKeyViolation => {
                // SQLite does not say which key failed: the target is named, and the key
                // only when it has just one.
                if let Some(rel) = target {
                    let (message, details) = foreign_key(cache, rel, mutation);
                    self.message = message;
                    self.details = details.map(Into::into);
                }
            }
            ErrorCode::InvalidTextRepresentation if raw.starts_with("cannot store ") => {
                // `cannot store TEXT value in INTEGER column t.c`
                if raw
                    .rsplit_once(" column ")
                    .and_then(|(_, rest)| qualified_columns(cache, target, rest))
                    .is_some()
                {
                    self.message = raw;
                }
            }
            _ => {
                let mentions = |s: &str| cache.mentions_hidden(s);
                if mentions(&self.message)
                    || self
                        .details
                        .as_ref()
                        .and_then(|d| d.as_str())
                        .is_some_and(mentions)
                {
                    self.message = plain_message(self.code).to_string();
                    self.details = None;
                    self.hint = None;
                }
            }
        }
        self
    }
}

/// A message for `code` that names nothing.
fn plain_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UndefinedTable => "relation does not exist",
        ErrorCode::UndefinedColumn => "column does not exist",
        ErrorCode::UndefinedFunction => "function does not exist",
        ErrorCode::InvalidTextRepresentation => "invalid input value",
        _ => "the statement failed",
    }
}

/// `rest` read as `t.a, t.b, …` over columns of one exposed relation (the request's first):
/// that relation and the column names.
fn qualified_columns<'a>(
    cache: &'a SchemaCache,
    first: Option<&'a Relation>,
    rest: &'a str,
) -> Option<(&'a Relation, Vec<&'a str>)> {
    let parse = |rel: &'a Relation| -> Option<Vec<&'a str>> {
        let prefix = format!("{}.", rel.name);
        rest.split(", ")
            .map(|part| {
                part.strip_prefix(prefix.as_str())
                    .filter(|c| rel.column(c).is_some())
            })
            .collect()
    };
    first
        .into_iter()
        .chain(cache.relations().map(|r| r.as_ref()))
        .find_map(|rel| parse(rel).map(|cols| (rel, cols)))
}

fn same_columns(a: &[&str], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.iter().any(|k| k == c))
}

/// PostgreSQL's wording of a foreign key violation by a write on `rel`: an insert or update
/// of a row that refers to a missing key, or the update or delete of a key still referred to.
fn foreign_key(
    cache: &SchemaCache,
    rel: &Relation,
    mutation: Option<Mutation>,
) -> (String, Option<String>) {
    let referring = match mutation {
        Some(Mutation::Insert | Mutation::Upsert) => true,
        Some(Mutation::Update) => !rel.foreign_keys.is_empty(),
        _ => false,
    };
    if !referring {
        return (
            format!(
                "update or delete on table \"{}\" violates foreign key constraint",
                rel.name
            ),
            None,
        );
    }
    match rel.foreign_keys.as_slice() {
        [fk] => (
            format!(
                "insert or update on table \"{}\" violates foreign key constraint \"{}\"",
                rel.name, fk.name
            ),
            cache.relation(&fk.target).map(|_| {
                format!(
                    "Key ({}) is not present in table \"{}\".",
                    fk.columns.join(", "),
                    fk.target
                )
            }),
        ),
        _ => (
            format!(
                "insert or update on table \"{}\" violates foreign key constraint",
                rel.name
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema_cache::Exposure;
    use rusqlite::Connection;

    fn setup() -> (Connection, SchemaCache) {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE owners (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
               a INT, b INT, UNIQUE (a, b));
             CREATE TABLE pets (id INTEGER PRIMARY KEY, owner_id INT REFERENCES owners(id),
               age INT CHECK (age >= 0));
             CREATE TABLE hidden (k TEXT UNIQUE NOT NULL, n INT CONSTRAINT small CHECK (n < 5));
             CREATE TABLE logged (id INTEGER PRIMARY KEY, k TEXT, n INT);
             CREATE TRIGGER logged_copy AFTER INSERT ON logged BEGIN
               INSERT INTO hidden VALUES (NEW.k, NEW.n);
             END;
             INSERT INTO owners VALUES (1, 'Ann', 1, 1);",
        )
        .unwrap();
        let exposed = ["owners", "pets", "logged"].map(String::from).into();
        let cache = SchemaCache::load(&c, &Exposure::Only(exposed)).unwrap();
        (c, cache)
    }

    fn fail(c: &Connection, cache: &SchemaCache, sql: &str, rel: &str, m: Mutation) -> ApiError {
        ApiError::from_sqlite(&c.execute(sql, []).unwrap_err()).for_client(cache, rel, Some(m))
    }

    #[test]
    fn exposed_names_are_worded_as_postgresql_does() {
        let (c, cache) = setup();
        let e = fail(
            &c,
            &cache,
            "INSERT INTO owners VALUES (1, 'x', 2, 2)",
            "owners",
            Mutation::Insert,
        );
        assert_eq!(
            e.message,
            r#"duplicate key value violates unique constraint "owners_pkey""#
        );
        assert_eq!(e.details, Some("Key (id) already exists.".into()));
        let e = fail(
            &c,
            &cache,
            "INSERT INTO owners VALUES (2, 'x', 1, 1)",
            "owners",
            Mutation::Insert,
        );
        assert_eq!(
            e.message,
            r#"duplicate key value violates unique constraint "owners_a_b_key""#
        );
        assert_eq!(e.details, Some("Key (a, b) already exists.".into()));
        let e = fail(
            &c,
            &cache,
            "INSERT INTO owners (id) VALUES (3)",
            "owners",
            Mutation::Insert,
        );
        assert_eq!(
            e.message,
            r#"null value in column "name" of relation "owners" violates not-null constraint"#
        );
        let e = fail(
            &c,
            &cache,
            "INSERT INTO pets VALUES (1, NULL, -1)",
            "pets",
            Mutation::Insert,
        );
        assert_eq!(
            e.message,
            r#"new row for relation "pets" violates check constraint "age >= 0""#
        );
        let e = fail(
            &c,
            &cache,
            "INSERT INTO pets VALUES (1, 7, 1)",
            "pets",
            Mutation::Insert,
        );
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                409,
                r#"insert or update on table "pets" violates foreign key constraint "pets_owner_id_fkey""#
            )
        );
        assert_eq!(
            e.details,
            Some(r#"Key (owner_id) is not present in table "owners"."#.into())
        );
        c.execute("INSERT INTO pets VALUES (1, 1, 1)", []).unwrap();
        let e = fail(&c, &cache, "DELETE FROM owners", "owners", Mutation::Delete);
        assert_eq!(
            e.message,
            r#"update or delete on table "owners" violates foreign key constraint"#
        );
    }

    #[test]
    fn hidden_names_never_leave() {
        let (c, cache) = setup();
        c.execute("INSERT INTO logged (k, n) VALUES ('a', 1)", [])
            .unwrap();
        for sql in [
            "INSERT INTO logged (k, n) VALUES ('a', 1)",
            "INSERT INTO logged (k, n) VALUES (NULL, 1)",
            "INSERT INTO logged (k, n) VALUES ('b', 9)",
        ] {
            let e = fail(&c, &cache, sql, "logged", Mutation::Insert);
            let body = String::from_utf8(e.body()).unwrap();
            assert!(
                !body.contains("hidden") && !body.contains("small"),
                "{sql}: {body}"
            );
        }
        // Any other text that mentions a hidden relation is replaced.
        let e = ApiError::from_sqlite(
            &c.execute("SELECT * FROM hidden WHERE nope", [])
                .unwrap_err(),
        )
        .for_client(&cache, "logged", None);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("42703", "no such column: nope")
        );
        let e = ApiError::from_sqlite(&c.execute("INSERT INTO hidden VALUES (1)", []).unwrap_err())
            .for_client(&cache, "logged", None);
        assert!(!e.message.contains("hidden"), "{e:?}");
        assert!(cache.mentions_hidden("x hidden_data") && cache.mentions_hidden("main.hidden"));
        assert!(!cache.mentions_hidden("unhidden"));
    }
}
